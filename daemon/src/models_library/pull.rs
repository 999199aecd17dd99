//! `hearth models pull URL`: download a GGUF over HTTP(S) into the library.
//!
//! The bytes go to `<library>/.downloads/<sha256 of the URL>.partial`. A download that stops (a
//! cut connection, a killed process) is resumed from the partial file's length with a `Range`
//! request: up to [`ATTEMPTS`] times within one pull, and again by the next pull of the same URL.
//! A server that answers a range with a whole `200` restarts the file. When the server said how
//! long the file is (`Content-Length`, or the total of `Content-Range`), the download must reach
//! exactly that size. The finished file is moved into a staging directory and published with the
//! expected sha256 (when given): a mismatch deletes the download and publishes nothing, so a
//! corrupt file is neither served nor resumed.

use std::io::{Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::{Draft, Entry, Library, LibraryError};

/// Attempts within one pull (the first and the resumptions).
pub const ATTEMPTS: u32 = 5;

/// What to pull.
#[derive(Debug, Clone)]
pub struct PullRequest {
    pub url: String,
    pub sha256: Option<String>,
    pub name: Option<String>,
}

/// The new entry and what the download did.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub entry: Entry,
    pub seconds: f64,
    /// Bytes received in this pull (less than the size when an earlier pull left a partial file).
    pub received: u64,
    /// Range requests made (resumptions).
    pub resumed: u32,
}

/// Download `request.url` and publish it.
pub async fn pull(library: &Library, request: &PullRequest) -> Result<Pulled, LibraryError> {
    let started = Instant::now();
    let url = reqwest::Url::parse(&request.url).map_err(|e| LibraryError::Invalid(format!("{:?} is not a URL: {e}", request.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(LibraryError::Invalid(format!("{url}: only http and https URLs can be pulled")));
    }
    if let Some(sha) = &request.sha256 {
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(LibraryError::Invalid(format!("--sha256 {sha:?} is not 64 hexadecimal digits")));
        }
    }
    let file_name = url
        .path_segments()
        .and_then(|mut s| s.next_back().map(str::to_owned))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "model.gguf".into());
    let name = request.name.clone().unwrap_or_else(|| super::name_from_file(&file_name));
    super::check_name(&name)?;
    if library.list()?.iter().any(|e| e.name == name) {
        return Err(LibraryError::Exists(name));
    }
    let downloads = library.root().join(".downloads");
    std::fs::create_dir_all(&downloads).map_err(LibraryError::io(format!("cannot create {}", downloads.display())))?;
    let partial = downloads.join(format!("{}.partial", hex::encode(Sha256::digest(url.as_str().as_bytes()))));
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| LibraryError::Invalid(format!("cannot build an HTTP client: {e}")))?;
    let mut received = 0u64;
    let mut resumed = 0u32;
    let mut last_error = String::new();
    let mut done = false;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
        match fetch(&client, &url, &partial, &mut received, &mut resumed).await {
            Ok(()) => {
                done = true;
                break;
            }
            Err(Fetch::Fatal(e)) => return Err(e),
            Err(Fetch::Retry(e)) => {
                tracing::warn!(%url, attempt, error = %e, "Model download interrupted; resuming.");
                last_error = e;
            }
        }
    }
    if !done {
        return Err(LibraryError::Invalid(format!(
            "{url}: the download failed {ATTEMPTS} times (last: {last_error}); the partial file is kept and the next pull resumes it"
        )));
    }
    let lock = library.lock()?;
    library.sweep(&lock);
    let staging = library.staging(&lock)?;
    let staged = staging.path().join(&file_name);
    std::fs::rename(&partial, &staged).map_err(LibraryError::io(format!("cannot move {}", partial.display())))?;
    let draft = Draft { name, source: url.to_string(), primary: file_name.clone(), files: vec![file_name], expect_sha256: request.sha256.clone(), recipe: None };
    let entry = library.publish(&lock, staging, draft)?;
    Ok(Pulled { entry, seconds: started.elapsed().as_secs_f64(), received, resumed })
}

enum Fetch {
    /// Worth another attempt (a cut connection, a 5xx).
    Retry(String),
    /// Not (a 404, a wrong size, a local disk error).
    Fatal(LibraryError),
}

/// One attempt: continue `partial` from its length.
async fn fetch(client: &reqwest::Client, url: &reqwest::Url, partial: &Path, received: &mut u64, resumed: &mut u32) -> Result<(), Fetch> {
    let have = std::fs::metadata(partial).map_or(0, |m| m.len());
    let mut req = client.get(url.clone());
    if have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
        *resumed += 1;
    }
    let resp = req.send().await.map_err(|e| Fetch::Retry(e.to_string()))?;
    let status = resp.status();
    let (start, total) = match status.as_u16() {
        200 => (0, resp.content_length()),
        206 => {
            let range = resp.headers().get(reqwest::header::CONTENT_RANGE).and_then(|v| v.to_str().ok()).unwrap_or_default();
            let (start, total) = parse_content_range(range).ok_or_else(|| Fetch::Fatal(LibraryError::Invalid(format!("{url}: unreadable Content-Range {range:?}"))))?;
            if start != have {
                return Err(Fetch::Fatal(LibraryError::Invalid(format!("{url}: asked for bytes from {have}, the server sent from {start}"))));
            }
            (start, total)
        }
        416 => {
            // The partial file is as long as the resource or longer: start over.
            let _ = std::fs::remove_file(partial);
            return Err(Fetch::Retry(format!("{url}: the server refused the range from byte {have} (416); starting over")));
        }
        s if s >= 500 => return Err(Fetch::Retry(format!("{url}: the server answered {status}"))),
        _ => return Err(Fetch::Fatal(LibraryError::Invalid(format!("{url}: the server answered {status}")))),
    };
    let local = |e: std::io::Error| Fetch::Fatal(LibraryError::io(format!("cannot write {}", partial.display()))(e));
    let mut file = std::fs::OpenOptions::new().create(true).write(true).truncate(false).open(partial).map_err(local)?;
    file.set_len(start).map_err(local)?;
    file.seek(std::io::SeekFrom::Start(start)).map_err(local)?;
    let mut at = start;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                file.sync_all().map_err(local)?;
                return Err(Fetch::Retry(format!("the connection broke after {at} bytes: {e}")));
            }
        };
        file.write_all(&chunk).map_err(local)?;
        at += chunk.len() as u64;
        *received += chunk.len() as u64;
    }
    file.sync_all().map_err(local)?;
    if let Some(total) = total {
        if at < total {
            return Err(Fetch::Retry(format!("the connection closed after {at} of {total} bytes")));
        }
        if at > total {
            let _ = std::fs::remove_file(partial);
            return Err(Fetch::Fatal(LibraryError::Invalid(format!("{url}: received {at} bytes, more than the {total} announced; nothing was added"))));
        }
    }
    Ok(())
}

/// `bytes START-END/TOTAL` -> (START, Some(TOTAL)); `/*` -> None.
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    let total = if total == "*" { None } else { Some(total.parse().ok()?) };
    Some((start.parse().ok()?, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("bytes 100-199/200"), Some((100, Some(200))));
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }
}
