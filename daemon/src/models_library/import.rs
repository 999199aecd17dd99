//! `hearth models import PATH`: what PATH is decides how its GGUF files are found, then they are
//! copied into a staging directory and published ([`super::Library::publish`]).
//!
//! - a GGUF file (its first bytes are `GGUF`); a shard named `*-00001-of-0000N.gguf` brings its
//!   sibling shards;
//! - an OCI image layout directory or an OCI archive of a ModelCar image ([`super::oci`]): the
//!   GGUF files under `/models` after the layers are applied;
//! - any other directory (a Hugging Face-style download, a directory of split GGUFs): its `*.gguf`
//!   files, up to three levels down.
//!
//! Among the GGUFs found, one model is taken: the only one, the one set of shards, or the one
//! `--file` names; otherwise the import stops and lists them. Safetensors without a GGUF are
//! refused with the files found: converting them is not supported (llama.cpp's
//! `convert_hf_to_gguf.py` does that).

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{name_from_file, oci, split_stem, Draft, Entry, Library, LibraryError};

/// What to import.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub path: PathBuf,
    /// The library name; default: from the file name.
    pub name: Option<String>,
    /// Which GGUF (file name or path inside the source) when the source holds several models.
    pub file: Option<String>,
}

/// The new entry and how long it took.
#[derive(Debug, Clone)]
pub struct Imported {
    pub entry: Entry,
    pub seconds: f64,
}

/// Import `request.path` into `library`.
pub fn import(library: &Library, request: &ImportRequest) -> Result<Imported, LibraryError> {
    let started = Instant::now();
    let path = &request.path;
    if !path.exists() {
        return Err(LibraryError::Invalid(format!("{} does not exist", path.display())));
    }
    let lock = library.lock()?;
    library.sweep(&lock);
    let staging = library.staging(&lock)?;
    let (source, root, found) = if path.is_dir() && oci::is_layout(path) {
        let got = oci::extract(path, staging.path())?;
        (format!("oci:{}", path.display()), staging.path().to_path_buf(), got.files)
    } else if path.is_dir() {
        (path.display().to_string(), path.clone(), walk(path, 3))
    } else if super::gguf::looks_like_gguf(path) {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let stem = file.strip_suffix(".gguf").unwrap_or(&file);
        let files = if split_stem(stem).is_some() { walk(&dir, 0) } else { vec![file.clone()] };
        let file_choice = request.file.clone().or(Some(file));
        let chosen = choose(&files, file_choice.as_deref(), path)?;
        return finish(library, lock, staging, request, path.display().to_string(), &dir, chosen, false, started);
    } else if oci::is_archive(path) {
        let got = oci::extract(path, staging.path())?;
        (format!("oci-archive:{}", path.display()), staging.path().to_path_buf(), got.files)
    } else {
        return Err(LibraryError::Invalid(format!(
            "{} is neither a GGUF file, a directory of GGUF files, an OCI image layout nor an OCI archive",
            path.display()
        )));
    };
    let chosen = choose(&found, request.file.as_deref(), path)?;
    let in_place = root == staging.path();
    finish(library, lock, staging, request, source, &root, chosen, in_place, started)
}

#[allow(clippy::too_many_arguments, reason = "the one place the import's pieces meet")]
fn finish(
    library: &Library,
    lock: super::WriteLock,
    staging: super::Staging,
    request: &ImportRequest,
    source: String,
    root: &Path,
    chosen: Vec<String>,
    in_place: bool,
    started: Instant,
) -> Result<Imported, LibraryError> {
    let mut files = Vec::new();
    for rel in &chosen {
        let flat = Path::new(rel).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let to = staging.path().join(&flat);
        if in_place {
            if Path::new(rel) != Path::new(&flat) {
                std::fs::rename(root.join(rel), &to).map_err(LibraryError::io(format!("cannot move {rel}")))?;
            }
        } else {
            copy_synced(&root.join(rel), &to)?;
        }
        files.push(flat);
    }
    if in_place {
        // What the image held besides the chosen model.
        let dir = staging.path().join("models");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(LibraryError::io(format!("cannot clean {}", dir.display())))?;
        }
    }
    let primary = files.first().cloned().ok_or_else(|| LibraryError::Invalid("no GGUF file was found".into()))?;
    let name = request.name.clone().unwrap_or_else(|| name_from_file(&primary));
    let draft = Draft { name, source, primary, files, expect_sha256: None, recipe: None };
    let entry = library.publish(&lock, staging, draft)?;
    Ok(Imported { entry, seconds: started.elapsed().as_secs_f64() })
}

fn copy_synced(from: &Path, to: &Path) -> Result<(), LibraryError> {
    std::fs::copy(from, to).map_err(LibraryError::io(format!("cannot copy {} to {}", from.display(), to.display())))?;
    std::fs::File::open(to).and_then(|f| f.sync_all()).map_err(LibraryError::io(format!("cannot sync {}", to.display())))
}

/// Files below `dir` (relative paths), `depth` directory levels down.
fn walk(dir: &Path, depth: u32) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() && depth > 0 {
            out.extend(walk(&e.path(), depth - 1).into_iter().map(|p| format!("{name}/{p}")));
        } else if kind.is_file() {
            out.push(name);
        }
    }
    out.sort();
    out
}

/// One model among `found` (relative paths): its files, the first shard first.
fn choose(found: &[String], wanted: Option<&str>, source: &Path) -> Result<Vec<String>, LibraryError> {
    let ggufs: Vec<&String> = found.iter().filter(|f| f.ends_with(".gguf")).collect();
    if ggufs.is_empty() {
        let safetensors: Vec<&String> = found.iter().filter(|f| f.ends_with(".safetensors")).collect();
        if !safetensors.is_empty() {
            return Err(LibraryError::Invalid(format!(
                "{} holds safetensors ({}) and no GGUF: converting safetensors is not supported; convert with llama.cpp's convert_hf_to_gguf.py and import the GGUF",
                source.display(),
                list(&safetensors)
            )));
        }
        let seen = if found.is_empty() { "nothing".to_owned() } else { list(&found.iter().collect::<Vec<_>>()) };
        return Err(LibraryError::Invalid(format!("{} holds no GGUF file under models/ or in the directory (found: {seen})", source.display())));
    }
    // Group shards by (directory, base name).
    let key = |f: &str| -> (String, Option<u32>) {
        let stem = f.strip_suffix(".gguf").unwrap_or(f);
        match split_stem(stem) {
            Some((base, _, total)) => (base.to_owned(), Some(total)),
            None => (stem.to_owned(), None),
        }
    };
    let mut groups: Vec<(String, Vec<&String>)> = Vec::new();
    for f in &ggufs {
        let (k, _) = key(f);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, members)) => members.push(f),
            None => groups.push((k, vec![f])),
        }
    }
    let group = match wanted {
        Some(w) => groups
            .iter()
            .find(|(_, members)| members.iter().any(|m| m.as_str() == w || Path::new(m.as_str()).file_name().is_some_and(|n| n == w)))
            .ok_or_else(|| LibraryError::Invalid(format!("{} has no GGUF named {w} (found: {})", source.display(), list(&ggufs))))?,
        None if groups.len() == 1 => &groups[0],
        None => {
            return Err(LibraryError::Invalid(format!(
                "{} holds several models ({}); pick one with --file",
                source.display(),
                list(&ggufs)
            )))
        }
    };
    let mut members: Vec<String> = group.1.iter().map(|s| (*s).clone()).collect();
    members.sort();
    if let Some(total) = key(&members[0]).1 {
        let have: Vec<u32> = members.iter().filter_map(|m| split_stem(m.strip_suffix(".gguf").unwrap_or(m)).map(|(_, i, _)| i)).collect();
        let missing: Vec<u32> = (1..=total).filter(|i| !have.contains(i)).collect();
        if !missing.is_empty() {
            return Err(LibraryError::Invalid(format!("{}: the split model {} lacks shard(s) {missing:?} of {total}", source.display(), group.0)));
        }
    }
    Ok(members)
}

fn list(files: &[&String]) -> String {
    let shown: Vec<&str> = files.iter().take(10).map(|s| s.as_str()).collect();
    let more = files.len().saturating_sub(10);
    if more > 0 {
        format!("{}, and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;
    use crate::models_library::gguf::tests::tiny_gguf;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn choosing_among_files() {
        let p = Path::new("src");
        assert_eq!(choose(&s(&["a.gguf", "README.md"]), None, p).unwrap(), s(&["a.gguf"]));
        let split = s(&["m-00002-of-00002.gguf", "m-00001-of-00002.gguf"]);
        assert_eq!(choose(&split, None, p).unwrap(), s(&["m-00001-of-00002.gguf", "m-00002-of-00002.gguf"]));
        let e = choose(&s(&["m-00001-of-00003.gguf", "m-00003-of-00003.gguf"]), None, p).unwrap_err().to_string();
        assert!(e.contains("lacks shard(s) [2]"), "{e}");
        let e = choose(&s(&["a.Q4_K_M.gguf", "a.Q8_0.gguf"]), None, p).unwrap_err().to_string();
        assert!(e.contains("--file"), "{e}");
        assert_eq!(choose(&s(&["a.Q4_K_M.gguf", "a.Q8_0.gguf"]), Some("a.Q8_0.gguf"), p).unwrap(), s(&["a.Q8_0.gguf"]));
        let e = choose(&s(&["model-00001-of-00002.safetensors", "config.json"]), None, p).unwrap_err().to_string();
        assert!(e.contains("converting safetensors is not supported") && e.contains("model-00001-of-00002.safetensors"), "{e}");
    }

    #[test]
    fn imports_a_file_a_split_directory_and_refuses_junk() {
        let dir = tempfile::tempdir().unwrap();
        let lib = Library::new(&dir.path().join("state"));
        let file = dir.path().join("tiny.gguf");
        std::fs::write(&file, tiny_gguf(&[("general.architecture", "llama")])).unwrap();
        let got = import(&lib, &ImportRequest { path: file.clone(), name: None, file: None }).unwrap();
        assert_eq!(got.entry.name, "tiny");
        let split = dir.path().join("split");
        std::fs::create_dir_all(&split).unwrap();
        for i in 1..=2 {
            std::fs::write(split.join(format!("big-0000{i}-of-00002.gguf")), tiny_gguf(&[("split.count", "2")])).unwrap();
        }
        let got = import(&lib, &ImportRequest { path: split.join("big-00001-of-00002.gguf"), name: None, file: None }).unwrap();
        assert_eq!((got.entry.name.as_str(), got.entry.files.len(), got.entry.file.as_str()), ("big", 2, "big-00001-of-00002.gguf"));
        let e = import(&lib, &ImportRequest { path: split, name: None, file: None }).unwrap_err();
        assert!(matches!(e, LibraryError::Exists(_)), "{e}");
        let junk = dir.path().join("junk.bin");
        std::fs::write(&junk, b"hello").unwrap();
        let e = import(&lib, &ImportRequest { path: junk, name: None, file: None }).unwrap_err().to_string();
        assert!(e.contains("neither a GGUF"), "{e}");
        assert_eq!(lib.list().unwrap().len(), 2);
    }

    #[test]
    fn imports_an_oci_layout() {
        let dir = tempfile::tempdir().unwrap();
        let lib = Library::new(&dir.path().join("state"));
        let layout = dir.path().join("img");
        let model = tiny_gguf(&[("general.architecture", "llama")]);
        let layer = oci::tests::tar_of(&[("models/model.gguf", &model), ("models/stale.gguf", b"GGUF")]);
        let whiteout = oci::tests::tar_of(&[("models/.wh.stale.gguf", b"")]);
        oci::tests::write_layout(&layout, &[("application/vnd.oci.image.layer.v1.tar", layer), ("application/vnd.oci.image.layer.v1.tar", whiteout)]);
        let got = import(&lib, &ImportRequest { path: layout, name: Some("car".into()), file: None }).unwrap();
        assert_eq!(got.entry.files.len(), 1);
        assert_eq!(std::fs::read(lib.model_path(&got.entry)).unwrap(), model);
        assert!(got.entry.source.starts_with("oci:"));
    }
}
