//! ModelCar images: the model files of an OCI image, from an image layout directory (`oci-layout`,
//! `index.json`, `blobs/sha256/...`) or an OCI archive (the same layout in one tar file, as
//! `podman save --format oci-archive` and `skopeo copy ... oci-archive:` write it).
//!
//! `index.json` names the manifest (the first image manifest; a nested index is followed one level),
//! the manifest names the layers, and the layers are applied in order the way a container runtime
//! would: a file of a later layer replaces the earlier one, `.wh.NAME` deletes `NAME` of the lower
//! layers, `.wh..wh..opq` empties its directory of everything the lower layers put there. Only
//! regular files under `/models` are written out (into the caller's staging directory); links,
//! devices and paths with `..` are ignored. Every blob is read once, streamed through its
//! decompressor (tar, gzip or zstd, told apart by their first bytes rather than by media type) and
//! hashed on the way, and one whose sha256 differs from its digest fails the import.
//!
//! The layout's JSON is read into the few fields used here (serde, unknown fields allowed, as the
//! image spec requires of readers) rather than through the oci-spec crate and its builder macros.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::LibraryError;

/// index.json and manifests larger than this are not an image's.
const MAX_JSON: u64 = 4 << 20;
const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: u64,
}

#[derive(Debug, Deserialize)]
struct Index {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    layers: Vec<Descriptor>,
}

/// Where the blobs are.
enum Blobs {
    /// An image layout directory.
    Dir(PathBuf),
    /// An OCI archive: each blob's offset and size inside the tar file.
    Archive { file: PathBuf, entries: Vec<(String, u64, u64)> },
}

impl Blobs {
    fn open(&self, path: &str) -> Result<Box<dyn Read>, LibraryError> {
        match self {
            Blobs::Dir(root) => {
                let p = root.join(path);
                let f = File::open(&p).map_err(|e| LibraryError::Invalid(format!("the image names {path}, which cannot be opened: {e}")))?;
                Ok(Box::new(f))
            }
            Blobs::Archive { file, entries } => {
                let (_, offset, size) = entries
                    .iter()
                    .find(|(name, _, _)| name == path)
                    .ok_or_else(|| LibraryError::Invalid(format!("the archive {} has no {path}", file.display())))?;
                let mut f = File::open(file).map_err(LibraryError::io(format!("cannot open {}", file.display())))?;
                f.seek(SeekFrom::Start(*offset)).map_err(LibraryError::io(format!("cannot read {}", file.display())))?;
                Ok(Box::new(f.take(*size)))
            }
        }
    }

    fn has(&self, path: &str) -> bool {
        match self {
            Blobs::Dir(root) => root.join(path).is_file(),
            Blobs::Archive { entries, .. } => entries.iter().any(|(n, _, _)| n == path),
        }
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, LibraryError> {
        let mut bytes = Vec::new();
        self.open(path)?
            .take(MAX_JSON + 1)
            .read_to_end(&mut bytes)
            .map_err(LibraryError::io(format!("cannot read {path} of the image")))?;
        if bytes.len() as u64 > MAX_JSON {
            return Err(LibraryError::Invalid(format!("{path} of the image is larger than {MAX_JSON} bytes")));
        }
        serde_json::from_slice(&bytes).map_err(|e| LibraryError::Invalid(format!("{path} of the image is not valid: {e}")))
    }
}

/// True when `path` is an image layout directory.
pub fn is_layout(path: &Path) -> bool {
    path.join("index.json").is_file() && path.join("oci-layout").is_file()
}

/// True when `path` is a tar file holding an image layout.
pub fn is_archive(path: &Path) -> bool {
    archive_entries(path).is_ok_and(|e| e.iter().any(|(n, _, _)| n == "index.json"))
}

fn archive_entries(path: &Path) -> Result<Vec<(String, u64, u64)>, LibraryError> {
    let f = File::open(path).map_err(LibraryError::io(format!("cannot open {}", path.display())))?;
    let mut archive = tar::Archive::new(f);
    let mut out = Vec::new();
    let entries = archive.entries().map_err(|e| LibraryError::Invalid(format!("{} is not a tar archive: {e}", path.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| LibraryError::Invalid(format!("{} is not a readable tar archive: {e}", path.display())))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let Ok(name) = entry.path().map(|p| normalize(&p)) else { continue };
        if let Some(name) = name {
            out.push((name.to_string_lossy().into_owned(), entry.raw_file_position(), entry.size()));
        }
    }
    Ok(out)
}

/// What the image held: the files written (relative to the staging directory) and every other
/// regular file under `/models` (to say what was found when there is no GGUF).
#[derive(Debug, Default)]
pub struct Extracted {
    pub files: Vec<String>,
}

/// Write the files under `/models` of the image at `path` (a layout directory or an archive) into
/// `dest`, keeping their paths below `models/`.
pub fn extract(path: &Path, dest: &Path) -> Result<Extracted, LibraryError> {
    let blobs = if path.is_dir() {
        Blobs::Dir(path.to_path_buf())
    } else {
        Blobs::Archive { file: path.to_path_buf(), entries: archive_entries(path)? }
    };
    let index: Index = blobs.read_json("index.json")?;
    if index.schema_version != 2 {
        return Err(LibraryError::Invalid(format!("index.json has schemaVersion {}; OCI images have 2", index.schema_version)));
    }
    let manifest = find_manifest(&blobs, &index, 0)?;
    if manifest.schema_version != 2 {
        return Err(LibraryError::Invalid(format!("the manifest has schemaVersion {}; OCI images have 2", manifest.schema_version)));
    }
    let mut present: HashSet<PathBuf> = HashSet::new();
    for (i, layer) in manifest.layers.iter().enumerate() {
        apply_layer(&blobs, layer, i, dest, &mut present)?;
    }
    let mut files: Vec<String> = present.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    files.sort();
    Ok(Extracted { files })
}

fn find_manifest(blobs: &Blobs, index: &Index, depth: u32) -> Result<Manifest, LibraryError> {
    for d in &index.manifests {
        let path = blob_path(&d.digest)?;
        if !blobs.has(&path) {
            continue;
        }
        match d.media_type.as_str() {
            MEDIA_MANIFEST | DOCKER_MANIFEST | "" => return blobs.read_json(&path),
            MEDIA_INDEX if depth == 0 => {
                let nested: Index = blobs.read_json(&path)?;
                return find_manifest(blobs, &nested, 1);
            }
            _ => {}
        }
    }
    Err(LibraryError::Invalid("index.json names no image manifest present in the image".into()))
}

/// `sha256:HEX` -> `blobs/sha256/HEX`, refusing anything that is not a sha256 digest.
fn blob_path(digest: &str) -> Result<String, LibraryError> {
    let hex = digest.strip_prefix("sha256:").filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    hex.map(|h| format!("blobs/sha256/{h}")).ok_or_else(|| LibraryError::Invalid(format!("{digest:?} is not a sha256 digest")))
}

/// Reads through, hashing what passes.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

fn apply_layer(blobs: &Blobs, layer: &Descriptor, i: usize, dest: &Path, present: &mut HashSet<PathBuf>) -> Result<(), LibraryError> {
    let path = blob_path(&layer.digest)?;
    let what = format!("layer {} ({})", i + 1, layer.digest);
    let mut hashing = Hashing { inner: blobs.open(&path)?, hasher: Sha256::new(), read: 0 };
    {
        let mut buffered = BufReader::new(&mut hashing);
        let magic = buffered.fill_buf().map_err(LibraryError::io(format!("cannot read {what}")))?.to_vec();
        let reader: Box<dyn Read + '_> = if magic.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::GzDecoder::new(buffered))
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Box::new(ZstdFrames { decoder: ruzstd::decoding::FrameDecoder::new(), source: buffered, in_frame: false })
        } else {
            Box::new(buffered)
        };
        let mut archive = tar::Archive::new(reader);
        let mut this_layer: HashSet<PathBuf> = HashSet::new();
        let entries = archive.entries().map_err(|e| LibraryError::Invalid(format!("{what} is not a tar layer: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| LibraryError::Invalid(format!("{what} is not a readable tar layer: {e}")))?;
            let Ok(raw) = entry.path().map(|p| p.into_owned()) else { continue };
            let Some(rel) = normalize(&raw) else { continue };
            let Some(file_name) = rel.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
            let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
            if file_name == ".wh..wh..opq" {
                present.retain(|p| !p.starts_with(&parent) || this_layer.contains(p) || {
                    let _ = std::fs::remove_file(dest.join(p));
                    false
                });
                continue;
            }
            if let Some(hidden) = file_name.strip_prefix(".wh.") {
                let gone = parent.join(hidden);
                present.retain(|p| !p.starts_with(&gone) || {
                    let _ = std::fs::remove_file(dest.join(p));
                    false
                });
                continue;
            }
            if !entry.header().entry_type().is_file() || !rel.starts_with("models") {
                continue;
            }
            let out = dest.join(&rel);
            if let Some(dir) = out.parent() {
                std::fs::create_dir_all(dir).map_err(LibraryError::io(format!("cannot create {}", dir.display())))?;
            }
            let mut file = File::create(&out).map_err(LibraryError::io(format!("cannot create {}", out.display())))?;
            std::io::copy(&mut entry, &mut file).map_err(LibraryError::io(format!("cannot write {} from {what}", out.display())))?;
            file.sync_all().map_err(LibraryError::io(format!("cannot write {}", out.display())))?;
            this_layer.insert(rel.clone());
            present.insert(rel);
        }
        // The rest of the blob (tar padding) still counts for its digest.
        let mut rest = archive.into_inner();
        std::io::copy(&mut rest, &mut std::io::sink()).map_err(LibraryError::io(format!("cannot read {what}")))?;
    }
    let got = hex::encode(hashing.hasher.finalize());
    let want = layer.digest.trim_start_matches("sha256:");
    if got != want {
        return Err(LibraryError::Invalid(format!("{what}: its content has sha256 {got}, not the digest the manifest gives; the image is damaged")));
    }
    if layer.size != 0 && hashing.read != layer.size {
        return Err(LibraryError::Invalid(format!("{what}: {} bytes, the manifest says {}", hashing.read, layer.size)));
    }
    Ok(())
}

/// A zstd stream of one or more frames, skippable frames skipped (`zstd:chunked` layers have many
/// frames and a skippable one for their table of contents); ruzstd's own streaming reader stops
/// after the first frame.
struct ZstdFrames<R: BufRead> {
    decoder: ruzstd::decoding::FrameDecoder,
    source: R,
    in_frame: bool,
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if self.source.fill_buf()?.is_empty() {
                    return Ok(0);
                }
                match self.decoder.reset(&mut self.source) {
                    Ok(()) => self.in_frame = true,
                    Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame { length, .. })) => {
                        std::io::copy(&mut (&mut self.source).take(u64::from(length)), &mut std::io::sink())?;
                        continue;
                    }
                    Err(e) => return Err(std::io::Error::other(format!("invalid zstd: {e}"))),
                }
            }
            while self.decoder.can_collect() < buf.len() && !self.decoder.is_finished() {
                let more = buf.len() - self.decoder.can_collect();
                self.decoder
                    .decode_blocks(&mut self.source, ruzstd::decoding::BlockDecodingStrategy::UptoBytes(more))
                    .map_err(|e| std::io::Error::other(format!("invalid zstd: {e}")))?;
            }
            let n = self.decoder.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.decoder.is_finished() && self.decoder.can_collect() == 0 {
                self.in_frame = false;
            }
        }
    }
}

/// A path inside an archive, relative and without `.` or `..` (`None` for `..` or nothing left).
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
pub(crate) mod tests {
    use super::*;

    /// A tar holding `files` (path, bytes).
    pub(crate) fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, bytes) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            if path.contains("..") {
                // The tar crate refuses to write such names; a hostile archive has them anyway.
                h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
                h.set_cksum();
                b.append(&h, *bytes).unwrap();
            } else {
                h.set_cksum();
                b.append_data(&mut h, path, *bytes).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    fn put_blob(root: &Path, bytes: &[u8]) -> String {
        let hex = hex::encode(Sha256::digest(bytes));
        std::fs::create_dir_all(root.join("blobs/sha256")).unwrap();
        std::fs::write(root.join("blobs/sha256").join(&hex), bytes).unwrap();
        format!("sha256:{hex}")
    }

    /// An image layout at `root` with these layers (already encoded).
    pub(crate) fn write_layout(root: &Path, layers: &[(&str, Vec<u8>)]) {
        let descs: Vec<serde_json::Value> = layers
            .iter()
            .map(|(media, bytes)| serde_json::json!({"mediaType": media, "digest": put_blob(root, bytes), "size": bytes.len()}))
            .collect();
        let config = put_blob(root, b"{}");
        let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2}, "layers": descs});
        let mbytes = serde_json::to_vec(&manifest).unwrap();
        let mdigest = put_blob(root, &mbytes);
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": MEDIA_MANIFEST, "digest": mdigest, "size": mbytes.len()}]});
        std::fs::write(root.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
        std::fs::write(root.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    }

    #[test]
    fn layers_apply_in_order_with_whiteouts_across_compressions() {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("img");
        let one = tar_of(&[("models/a.gguf", b"first"), ("models/old.gguf", b"old"), ("models/sub/x.gguf", b"x"), ("etc/passwd", b"no")]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar_of(&[("./models/a.gguf", b"second"), ("models/.wh.old.gguf", b"")])).unwrap();
        let two = gz.finish().unwrap();
        let three = tar_of(&[("models/sub/.wh..wh..opq", b""), ("models/sub/y.gguf", b"y"), ("../evil.gguf", b"e")]);
        // Layer three as zstd in two frames with a skippable frame between, as zstd:chunked writes.
        let (a, b) = three.split_at(1024);
        let mut three_zst = ruzstd::encoding::compress_to_vec(a, ruzstd::encoding::CompressionLevel::Fastest);
        three_zst.extend(0x184D_2A50u32.to_le_bytes());
        three_zst.extend(3u32.to_le_bytes());
        three_zst.extend(b"toc");
        three_zst.extend(ruzstd::encoding::compress_to_vec(b, ruzstd::encoding::CompressionLevel::Fastest));
        let three = three_zst;
        write_layout(&layout, &[("application/vnd.oci.image.layer.v1.tar", one), ("application/vnd.oci.image.layer.v1.tar+gzip", two), ("application/vnd.oci.image.layer.v1.tar+zstd", three)]);
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        assert!(is_layout(&layout));
        let got = extract(&layout, &out).unwrap();
        assert_eq!(got.files, vec!["models/a.gguf", "models/sub/y.gguf"]);
        assert_eq!(std::fs::read(out.join("models/a.gguf")).unwrap(), b"second");
        assert!(!out.join("models/old.gguf").exists() && !out.join("models/sub/x.gguf").exists());
        assert!(!dir.path().join("evil.gguf").exists() && !out.join("etc").exists());

        // The same layout as an archive.
        let mut files = Vec::new();
        for e in walk(&layout) {
            files.push((e.strip_prefix(&layout).unwrap().to_string_lossy().into_owned(), std::fs::read(&e).unwrap()));
        }
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
        let archive = dir.path().join("img.tar");
        std::fs::write(&archive, tar_of(&refs)).unwrap();
        assert!(is_archive(&archive));
        let out2 = dir.path().join("out2");
        std::fs::create_dir_all(&out2).unwrap();
        assert_eq!(extract(&archive, &out2).unwrap().files, vec!["models/a.gguf", "models/sub/y.gguf"]);
    }

    #[test]
    fn a_damaged_layer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("img");
        write_layout(&layout, &[("application/vnd.oci.image.layer.v1.tar", tar_of(&[("models/a.gguf", b"a")]))]);
        for blob in walk(&layout.join("blobs")) {
            let bytes = std::fs::read(&blob).unwrap();
            if bytes.len() >= 1024 {
                let mut bytes = bytes;
                bytes[600] ^= 1;
                std::fs::write(&blob, bytes).unwrap();
            }
        }
        let e = extract(&layout, dir.path()).unwrap_err().to_string();
        assert!(e.contains("damaged"), "{e}");
    }

    pub(crate) fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }
}
