//! The parse worker's confinement, proved from inside the real worker binary: after it has
//! confined itself (rlimits, Landlock) and parsed its input, it cannot open `/etc/hostname`, a
//! state directory or a file in it, cannot create a file, and does not see this process's
//! environment.
//!
//! One test in this binary on purpose: it sets environment variables in this process, which is
//! only sound while no other thread runs.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]

mod common;

use common::{fixture, read_fixture};
use ingest::sandbox::{Landlock, SelfCheckRequest, OPEN_FILES};
use ingest::{Format, Limits, Sandbox};
use std::path::{Path, PathBuf};

#[test]
fn the_worker_reads_nothing_but_its_input_and_sees_no_environment() {
    std::env::set_var("HEARTH_TEST_SECRET", "correct horse battery staple");
    std::env::set_var("HEARTH__SERVER__API_KEYS", "sk-test-secret");
    let state = tempfile::tempdir().unwrap();
    std::fs::write(
        state.path().join("secret.txt"),
        "a secret in the state directory",
    )
    .unwrap();
    let mut read: Vec<PathBuf> = vec![
        state.path().to_path_buf(),
        state.path().join("secret.txt"),
        fixture("three_pages.pdf"),
    ];
    if Path::new("/etc/hostname").exists() {
        read.insert(0, PathBuf::from("/etc/hostname"));
    }
    for path in &read {
        // This process can read each one: a denial in the worker is its confinement.
        std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let written = state.path().join("written.txt");
    let request = SelfCheckRequest {
        read,
        create: vec![written.clone()],
    };
    let sandbox = Sandbox::new(
        PathBuf::from(env!("CARGO_BIN_EXE_hearth-parse-worker")),
        Vec::new(),
        Limits::default(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = runtime
        .block_on(sandbox.self_check(request, read_fixture("three_pages.pdf"), Format::Pdf))
        .unwrap();
    eprintln!(
        "landlock: {}; environment: {:?}; attempts: {:#?}",
        report.landlock, report.environment, report.attempts
    );

    assert!(
        matches!(report.landlock, Landlock::Enforced { abi } if abi >= 1),
        "this kernel has Landlock (ABI >= 1 enforced is expected): {}",
        report.landlock
    );
    assert_eq!(report.attempts.len(), 5);
    for attempt in &report.attempts {
        let denied = attempt.denied.as_deref().unwrap_or_else(|| {
            panic!(
                "the confined worker could {:?} {}",
                attempt.access,
                attempt.path.display()
            )
        });
        assert!(denied.contains("Permission denied"), "{denied}");
    }
    assert!(!written.exists(), "the worker created a file");
    assert_eq!(
        report.environment,
        Vec::<String>::new(),
        "the worker sees the parent's environment"
    );
    // Under cargo, the jobserver's pipe is inherited (not close-on-exec): the worker closes it.
    eprintln!("closed inherited descriptors: {:?}", report.closed);
    assert_eq!(
        report.open,
        Vec::<String>::new(),
        "descriptors beyond stdio stayed open in the worker"
    );
    assert_eq!(report.open_files_limit, OPEN_FILES);
    assert_eq!(report.processes_limit, 0);
    // And it still parses the input it was handed.
    let doc = report.document.unwrap();
    assert_eq!(doc.pages.len(), 3);
    assert!(doc.pages[1].text.contains("ZEBRA-4817"));
}
