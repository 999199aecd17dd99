//! Zip containers (DOCX, PPTX, XLSX, ODT, ODS, EPUB) read within limits, so a zip bomb costs a
//! clear error instead of the worker's memory.
//!
//! - [`Archive::open`] refuses more than [`MAX_ENTRIES`] entries, then inflates every entry once,
//!   counting the bytes that actually come out (the sizes in the headers are the attacker's to
//!   choose), and refuses the file as soon as the total passes [`MAX_UNPACKED_BYTES`]. Only then
//!   does a format parser (or calamine, which reads the zip itself) touch it, so every later read
//!   is bounded by the same total.
//! - The limits sit well inside the worker's default 1 GiB address space: the unpacked parts are
//!   held at most once more while parsing.
//! - Names are looked up exactly as stored (the formats' paths are case-sensitive), with a leading
//!   `/` dropped.

use super::ParseError;
use std::io::{Cursor, Read};

/// Most entries a container may hold (a real office file has tens to a few thousand).
pub const MAX_ENTRIES: usize = 20_000;
/// Most bytes all entries may inflate to, together.
pub const MAX_UNPACKED_BYTES: u64 = 256 << 20;

/// An opened, checked zip container.
pub(super) struct Archive<'a> {
    zip: zip::ZipArchive<Cursor<&'a [u8]>>,
    what: &'static str,
}

impl<'a> Archive<'a> {
    /// Opens `bytes` as the zip container of a `what` file ("DOCX") and checks the limits.
    pub(super) fn open(bytes: &'a [u8], what: &'static str) -> Result<Self, ParseError> {
        let zip = zip::ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| ParseError::Malformed(format!("{what}: not a readable zip container ({e})")))?;
        let mut archive = Archive { zip, what };
        archive.check()?;
        Ok(archive)
    }

    fn check(&mut self) -> Result<(), ParseError> {
        let what = self.what;
        let entries = self.zip.len();
        if entries > MAX_ENTRIES {
            return Err(ParseError::Unsupported(format!(
                "{what} container has {entries} entries, more than the limit of {MAX_ENTRIES} (a zip bomb?)"
            )));
        }
        let mut total = 0u64;
        let mut sink = vec![0u8; 64 * 1024];
        for i in 0..entries {
            let mut entry = self
                .zip
                .by_index(i)
                .map_err(|e| ParseError::Malformed(format!("{what}: entry {i}: {e}")))?;
            loop {
                let n = entry
                    .read(&mut sink)
                    .map_err(|e| ParseError::Malformed(format!("{what}: entry {i}: {e}")))?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                if total > MAX_UNPACKED_BYTES {
                    return Err(ParseError::Unsupported(format!(
                        "{what} container unpacks to more than {} MiB, the limit (a zip bomb?)",
                        MAX_UNPACKED_BYTES >> 20
                    )));
                }
            }
        }
        Ok(())
    }

    /// The entry `name`'s bytes, or `None` if there is no such entry.
    pub(super) fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>, ParseError> {
        let name = name.trim_start_matches('/');
        let what = self.what;
        let mut entry = match self.zip.by_name(name) {
            Ok(entry) => entry,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(ParseError::Malformed(format!("{what}: {name}: {e}"))),
        };
        let mut out = Vec::new();
        entry
            .read_to_end(&mut out)
            .map_err(|e| ParseError::Malformed(format!("{what}: {name}: {e}")))?;
        Ok(Some(out))
    }

    /// The entry `name`'s bytes, or [`ParseError::Malformed`] saying it is missing.
    pub(super) fn require(&mut self, name: &str) -> Result<Vec<u8>, ParseError> {
        let what = self.what;
        self.read(name)?
            .ok_or_else(|| ParseError::Malformed(format!("{what}: the container has no {name}")))
    }

    /// Every entry name, in the container's order.
    pub(super) fn names(&self) -> Vec<String> {
        self.zip.file_names().filter_map(Result::ok).map(|n| n.into_owned()).collect()
    }
}

/// The `mimetype` entry of an ODF or EPUB container, if it is stored first as those formats
/// require (`PK\3\4`, a 30-byte header, the name `mimetype`, then the content uncompressed).
pub(super) fn leading_mimetype(head: &[u8]) -> Option<&str> {
    if !head.starts_with(b"PK\x03\x04") || head.len() < 38 || &head[30..38] != b"mimetype" {
        return None;
    }
    let method = u16::from_le_bytes([head[8], head[9]]);
    let size = u32::from_le_bytes([head[18], head[19], head[20], head[21]]) as usize;
    let extra = u16::from_le_bytes([head[28], head[29]]) as usize;
    let start = 38 + extra;
    if method != 0 || size > 100 || head.len() < start + size {
        return None;
    }
    std::str::from_utf8(&head[start..start + size]).ok()
}

#[cfg(test)]
pub(super) mod testing {
    //! Builds zip containers for the parsers' tests.
    use std::io::Write;
    use zip::write::SimpleFileOptions;

    /// A zip of `(name, content)` entries, deflated except `mimetype` (stored, as ODF/EPUB want).
    #[allow(clippy::unwrap_used, reason = "test helper")]
    pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, content) in entries {
            let method = if *name == "mimetype" {
                zip::CompressionMethod::Stored
            } else {
                zip::CompressionMethod::Deflated
            };
            w.start_file(*name, SimpleFileOptions::default().compression_method(method))
                .unwrap();
            w.write_all(content).unwrap();
        }
        w.finish().unwrap().into_inner()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::testing::zip_of;
    use super::*;

    #[test]
    fn reads_entries_and_reports_missing_ones() {
        let bytes = zip_of(&[("a/b.xml", b"<x/>")]);
        let mut a = Archive::open(&bytes, "DOCX").unwrap();
        assert_eq!(a.read("/a/b.xml").unwrap().unwrap(), b"<x/>");
        assert_eq!(a.read("nope").unwrap(), None);
        let err = a.require("word/document.xml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed DOCX: the container has no word/document.xml"
        );
        assert_eq!(a.names(), ["a/b.xml"]);
    }

    #[test]
    fn a_zip_bomb_is_refused() {
        // 300 MiB of zeros deflate to about 300 KiB.
        let zeros = vec![0u8; 300 << 20];
        let bytes = zip_of(&[("word/document.xml", &zeros)]);
        drop(zeros);
        assert!(bytes.len() < 2 << 20, "{}", bytes.len());
        let err = Archive::open(&bytes, "DOCX").err().unwrap();
        assert!(
            err.to_string().contains("unpacks to more than 256 MiB"),
            "{err}"
        );
    }

    #[test]
    fn not_a_zip_is_malformed() {
        let err = Archive::open(b"hello", "XLSX").err().unwrap();
        assert!(err.to_string().starts_with("malformed XLSX: not a readable zip"), "{err}");
    }

    #[test]
    fn mimetype_sniff() {
        let bytes = zip_of(&[("mimetype", b"application/epub+zip"), ("x", b"y")]);
        assert_eq!(leading_mimetype(&bytes), Some("application/epub+zip"));
        assert_eq!(leading_mimetype(&zip_of(&[("x", b"y")])), None);
    }
}
