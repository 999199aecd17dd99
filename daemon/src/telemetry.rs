//! Logging: structured fields to journald when systemd started us (it sets `JOURNAL_STREAM`), to
//! the terminal otherwise. In the journal an event's fields carry an `F_` prefix
//! (`journalctl -u hearth F_MODEL=all-minilm-l6-v2`), beside `TARGET`, `CODE_FILE` and
//! `CODE_LINE`; levels map to syslog priorities as syslog means them (`info` is 6, not
//! tracing-journald's default 5, "notice"), so `journalctl -p notice` shows warnings and errors
//! without the routine lines. tracing-journald fails where there is no journal socket (containers),
//! and then the terminal formatter is used. `RUST_LOG` overrides the default filter. The
//! watchdog's test hook ([`crate::debug_hang`]) joins only when its environment variable is set.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// llama.cpp's own info lines (every tensor at load time) are noise at `info`.
const DEFAULT_FILTER: &str = "info,llama_cpp_2=warn";

/// Install the global subscriber. Safe to call once per process.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let registry = tracing_subscriber::registry().with(filter).with(crate::debug_hang::HangEngine::from_env());
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        if let Ok(journald) = tracing_journald::layer() {
            let priorities = tracing_journald::PriorityMappings {
                info: tracing_journald::Priority::Informational,
                debug: tracing_journald::Priority::Debug,
                ..tracing_journald::PriorityMappings::new()
            };
            let _ = registry.with(journald.with_syslog_identifier("hearth".into()).with_priority_mappings(priorities)).try_init();
            return;
        }
    }
    let _ = registry.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)).try_init();
}
