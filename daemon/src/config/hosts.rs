//! `[server] allowed_hosts` and `allowed_origins` entries: what a valid one looks like and the
//! canonical form of an origin, as browsers send it in `Origin`. The configuration validates its
//! entries with these at load time; the Host/Origin guard (`api/guard.rs`) compares requests with
//! the canonical forms.

use std::net::IpAddr;

/// Check one `server.allowed_hosts` entry: `*`, a host name (`.lan.example` for a domain and its
/// subdomains) or an IP address, without scheme or port.
pub fn check_host_entry(entry: &str) -> Result<(), String> {
    let bare = entry.trim_start_matches('[').trim_end_matches(']');
    if entry == "*" || bare.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let name = entry.strip_prefix('.').unwrap_or(entry);
    let label_ok = |l: &str| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !name.is_empty() && name.trim_end_matches('.').split('.').all(label_ok) {
        return Ok(());
    }
    Err(format!("{entry:?} is not a host name or an address; write the name alone, like \"hearth.lan\" (no scheme, no port), \".lan\" for a domain, or \"*\" for any"))
}

/// The canonical form of one `server.allowed_origins` entry (`scheme://host[:port]`, lower case,
/// no default port), as browsers send it in `Origin`.
pub fn canonical_origin(entry: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(entry).map_err(|e| format!("{entry:?} is not an origin like \"https://app.example\": {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{entry:?} is not an http or https origin like \"https://app.example\""));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{entry:?} is not an origin: an origin is scheme://host[:port], without a path"));
    }
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_entries_and_origins_are_validated() {
        for ok in ["*", "hearth.lan", ".lan", "10.0.0.5", "::1", "[fd00::1]", "my-box"] {
            assert_eq!(check_host_entry(ok), Ok(()), "{ok}");
        }
        for bad in ["http://hearth.lan", "hearth.lan:8080", "", ".", "a..b", "hearth lan", "*.lan"] {
            assert!(check_host_entry(bad).is_err(), "{bad:?}");
        }
        assert_eq!(canonical_origin("https://App.Example"), Ok("https://app.example".to_owned()));
        assert_eq!(canonical_origin("http://app.example:80"), Ok("http://app.example".to_owned()));
        assert_eq!(canonical_origin("http://localhost:5173/"), Ok("http://localhost:5173".to_owned()));
        for bad in ["app.example", "https://app.example/ui", "null", "file:///tmp", "https://app.example?x=1", "*"] {
            assert!(canonical_origin(bad).is_err(), "{bad}");
        }
    }
}
