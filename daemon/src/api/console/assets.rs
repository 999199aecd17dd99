//! The console's files, embedded at compile time from `daemon/console/` (cargo rebuilds the crate
//! when one changes). `index.html` names the others as `/console/{{version}}/NAME`; the placeholder
//! is replaced once with [`version`], the first 12 hex digits of a SHA-256 over every asset's name
//! and bytes, so an asset's URL changes whenever any asset does.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// One embedded file.
pub struct Asset {
    /// Its name under `/console/{version}/`.
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset { name: $name, content_type: $type, body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/console/", $name)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every asset but `index.html`.
static ASSETS: &[Asset] = &[
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("ask.js", JS),
    asset!("preview.js", JS),
    asset!("library.js", JS),
    asset!("models.js", JS),
    asset!("metrics.js", JS),
    asset!("prometheus.js", JS),
    asset!("reports.js", JS),
    asset!("icon.svg", "image/svg+xml"),
];

/// The page, with `{{version}}` placeholders.
const INDEX_TEMPLATE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/console/index.html"));

/// The asset called `name`.
pub fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// The digest of every asset (and the page), 12 hex digits.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hash = Sha256::new();
        for asset in ASSETS {
            hash.update(asset.name.as_bytes());
            hash.update((asset.body.len() as u64).to_le_bytes());
            hash.update(asset.body);
        }
        hash.update(INDEX_TEMPLATE.as_bytes());
        hex::encode(hash.finalize())[..12].to_owned()
    })
}

/// `index.html` with this build's asset URLs.
pub fn index_html() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| INDEX_TEMPLATE.replace("{{version}}", version()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_only_embedded_assets_of_this_version() {
        let page = index_html();
        assert!(!page.contains("{{"), "a placeholder is left");
        let prefix = format!("/console/{}/", version());
        let mut named = 0;
        for piece in page.split(['"', '\'']).filter(|p| p.starts_with("/console/")) {
            let name = piece.strip_prefix(&prefix).unwrap_or_else(|| panic!("{piece} is not of this version"));
            assert!(find(name).is_some(), "{name} is not embedded");
            named += 1;
        }
        assert!(named >= 2, "the page names its stylesheet and script: {page}");
    }

    #[test]
    fn modules_import_only_embedded_siblings() {
        for asset in ASSETS.iter().filter(|a| a.content_type == JS) {
            let text = std::str::from_utf8(asset.body).unwrap_or_else(|e| panic!("{}: {e}", asset.name));
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let target = line.rsplit(['"', '\'']).nth(1).unwrap_or_default();
                let name = target.strip_prefix("./").unwrap_or_else(|| panic!("{}: {line}: imports must be ./siblings", asset.name));
                assert!(find(name).is_some(), "{}: {name} is not embedded", asset.name);
            }
        }
    }

    #[test]
    fn the_version_is_stable_and_short() {
        assert_eq!(version().len(), 12);
        assert_eq!(version(), version());
        assert!(version().bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn the_console_stays_small() {
        let total: usize = ASSETS.iter().map(|a| a.body.len()).sum::<usize>() + INDEX_TEMPLATE.len();
        assert!(total < 300 * 1024, "{total} bytes of console assets");
    }
}
