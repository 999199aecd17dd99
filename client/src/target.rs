//! The server a client command talks to: `--target` (its base URL) and `--api-key` (a bearer
//! token), shared by every client subcommand so they read the same way.
//!
//! The base URL is kept without a trailing `/` or `/v1`, so paths are always written whole
//! (`/v1/models`, `/tokenize`, `/metrics`) and `http://host:port/v1` works as well as
//! `http://host:port`.
//!
//! Without `--target`, the `hearth` binary fills in the daemon's configured `server.listen` when it
//! can read the configuration (an unreadable `/etc/hearth/hearth.toml` is skipped, never an error)
//! and [`DEFAULT_TARGET`] otherwise; `--api-key` may come from `HEARTH_API_KEY` instead, so a key
//! stays off the command line (and out of `ps`).

use clap::Args;

/// The target when neither `--target` nor a readable configuration names one: hearth's default
/// listen address.
pub const DEFAULT_TARGET: &str = "http://127.0.0.1:8080";

/// `--target` and `--api-key`, flattened into a client command's arguments.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// The OpenAI-compatible server (`http://host:port`, with or without `/v1`); default: the
    /// configured `server.listen` where the configuration is readable, else http://127.0.0.1:8080.
    #[arg(long)]
    pub target: Option<String>,
    /// Bearer token for the target.
    #[arg(long, env = "HEARTH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

impl TargetArgs {
    /// Use `default` (a base URL) where `--target` was not given.
    pub fn or_default(&mut self, default: impl FnOnce() -> String) {
        if self.target.is_none() {
            self.target = Some(default());
        }
    }
}

/// Where requests go and the credential they carry.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port`, without a trailing `/` or `/v1`.
    base: String,
    /// The bearer token, if any.
    api_key: Option<String>,
}

impl Target {
    /// The target `args` name.
    pub fn new(args: &TargetArgs) -> Target {
        Target { base: normalize_base(args.target.as_deref().unwrap_or(DEFAULT_TARGET)), api_key: args.api_key.clone() }
    }

    /// The base URL, without `/v1`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The URL of `path` (which starts with `/`) on the target.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request to `path` with the bearer token, if any.
    pub fn request(&self, http: &reqwest::Client, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.authorize(http.request(method, self.url(path)))
    }

    /// `request` with the bearer token added, if there is one.
    pub fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }
}

/// `http://host:port/v1/` → `http://host:port`.
pub fn normalize_base(base: &str) -> String {
    let base = base.trim_end_matches('/');
    base.strip_suffix("/v1").unwrap_or(base).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_drops_slash_and_v1() {
        assert_eq!(normalize_base("http://h:1"), "http://h:1");
        assert_eq!(normalize_base("http://h:1/"), "http://h:1");
        assert_eq!(normalize_base("http://h:1/v1"), "http://h:1");
        assert_eq!(normalize_base("http://h:1/v1/"), "http://h:1");
        assert_eq!(normalize_base("http://h:1/api/v1"), "http://h:1/api");
    }

    #[test]
    fn url_joins_whole_paths() {
        let t = Target::new(&TargetArgs { target: Some("http://h:1/v1/".into()), api_key: None });
        assert_eq!(t.url("/v1/models"), "http://h:1/v1/models");
    }
}
