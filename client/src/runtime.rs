//! The one way a client command runs its async work: a current-thread tokio runtime (a command
//! makes a handful of requests; `hearth bench` builds its own multi-threaded one), with a failure
//! printed once as `COMMAND: message` so every command reports errors the same way.

use std::fmt::Display;
use std::future::Future;

/// Run `work` to completion. `None` when the runtime could not start or `work` failed; the reason
/// has been printed to stderr, prefixed with `command` (for example `hearth eval`).
pub fn block_on<T, E: Display>(command: &str, work: impl Future<Output = Result<T, E>>) -> Option<T> {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{command}: cannot start the async runtime: {e}");
            return None;
        }
    };
    match runtime.block_on(work) {
        Ok(value) => Some(value),
        Err(e) => {
            eprintln!("{command}: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::block_on;

    #[test]
    fn returns_the_value_or_none_on_error() {
        assert_eq!(block_on("t", async { Ok::<_, String>(7) }), Some(7));
        assert_eq!(block_on("t", async { Err::<u8, _>("no".to_string()) }), None);
    }
}
