//! The RPM as an installer would read it: `make test` builds it (`make rpm`, cargo-generate-rpm)
//! before the tests run, and this test inspects it with the real `rpm` tool.

use std::path::PathBuf;
use std::process::Command;

use hearth_tests::hearth_bin;

fn the_rpm() -> PathBuf {
    // target/<profile>/hearth -> target/rpm/hearth-<version>-1.<arch>.rpm
    let target = hearth_bin().parent().and_then(|p| p.parent()).map(|p| p.join("rpm")).unwrap_or_default();
    let found = std::fs::read_dir(&target)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("hearth-{}-", env!("CARGO_PKG_VERSION")))));
    found.unwrap_or_else(|| panic!("no hearth RPM in {}: run `make rpm` (make test does)", target.display()))
}

fn rpm_query(args: &[&str]) -> String {
    let out = Command::new("rpm").args(args).arg(the_rpm()).output().unwrap_or_else(|e| panic!("rpm: {e}"));
    assert!(out.status.success(), "rpm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_rpm_installs_the_binary_unit_user_and_config() {
    let files = rpm_query(&["-qlp"]);
    for path in [
        "/usr/bin/hearth",
        "/usr/lib/systemd/system/hearth.service",
        "/usr/lib/sysusers.d/hearth.conf",
        "/usr/lib/tmpfiles.d/hearth.conf",
        "/etc/hearth/hearth.toml",
        "/usr/lib64/hearth/libllama.so.0",
        "/usr/lib64/hearth/libggml.so.0",
        "/usr/lib64/hearth/libggml-base.so.0",
        "/usr/share/man/man1/hearth.1.gz",
        "/usr/share/bash-completion/completions/hearth",
        "/usr/share/zsh/site-functions/_hearth",
        "/usr/share/fish/vendor_completions.d/hearth.fish",
    ] {
        assert!(files.lines().any(|l| l == path), "{path} missing from the RPM:\n{files}");
    }
    // The CPU backends, one per instruction-set level, and no CUDA backend in the base package.
    let cpu_backends = files.lines().filter(|l| l.starts_with("/usr/lib64/hearth/backends/libggml-cpu-")).count();
    assert!(cpu_backends >= 4, "CPU backends missing from the RPM:\n{files}");
    assert!(!files.contains("libggml-cuda"), "{files}");
    // The operator's configuration survives upgrades.
    assert_eq!(rpm_query(&["-qp", "--configfiles"]).trim(), "/etc/hearth/hearth.toml");
    let scripts = rpm_query(&["-qp", "--scripts"]);
    assert!(scripts.contains("preinstall scriptlet") && scripts.contains("systemd-sysusers"), "{scripts}");
    assert!(scripts.contains("postinstall scriptlet") && scripts.contains("systemd-tmpfiles --create"), "{scripts}");
    let requires = rpm_query(&["-qp", "--requires"]);
    assert!(requires.lines().any(|l| l.starts_with("systemd")), "{requires}");
    // llama.cpp's libraries are private to the package: whatever of them the binary requires,
    // the package provides, or no package manager could install it.
    let provides = rpm_query(&["-qp", "--provides"]);
    for need in requires.lines().filter(|l| l.starts_with("libllama") || l.starts_with("libggml")) {
        assert!(provides.lines().any(|p| p.trim() == need.trim()), "{need} is required but not provided:\n{provides}");
    }
}

#[test]
fn the_packaged_binary_runs_and_finds_its_libraries_and_backends() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cpio = Command::new("sh")
        .arg("-c")
        .arg(format!("rpm2cpio {} | cpio -idm --quiet './usr/bin/hearth' './usr/lib64/hearth/*'", the_rpm().display()))
        .current_dir(dir.path())
        .status()
        .unwrap_or_else(|e| panic!("rpm2cpio: {e}"));
    assert!(cpio.success());
    let hearth = dir.path().join("usr/bin/hearth");
    let out = Command::new(&hearth).arg("--version").output().unwrap_or_else(|e| panic!("{e}"));
    // The first line; then the commit and the llama.cpp tree.
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().next(), Some(format!("hearth {}", env!("CARGO_PKG_VERSION")).as_str()), "{out:?}");
    // As installed: the run path finds ../lib64/hearth, and the backends are found in
    // ../lib64/hearth/backends without configuration.
    let out = Command::new(&hearth).arg("info").env_remove("HEARTH__ENGINE__BACKEND_DIR").output().unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("usr/lib64/hearth/backends") && text.contains("backends loaded:   CPU"), "{text}");
}

/// No container engine or registry is reachable here, so the images are not built in CI; this
/// keeps their build stage in step with the workspace: every member crate is copied into it.
#[test]
fn the_containerfiles_copy_every_workspace_member() {
    let manifest = std::fs::read_to_string(hearth_tests::repo_root().join("Cargo.toml")).unwrap_or_else(|e| panic!("{e}"));
    let members_line = manifest.lines().find(|l| l.trim_start().starts_with("members")).unwrap_or_else(|| panic!("no members in Cargo.toml"));
    let members: Vec<&str> = members_line.split('"').skip(1).step_by(2).collect();
    assert!(members.len() >= 4, "{members_line}");
    for file in ["packaging/Containerfile", "packaging/Containerfile.cuda"] {
        let text = std::fs::read_to_string(hearth_tests::repo_root().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        for member in &members {
            assert!(text.lines().any(|l| l.trim() == format!("COPY {member} {member}")), "{file} does not copy the workspace member `{member}`");
        }
    }
}

/// The Containerfiles' smoke steps (`RUN ["/usr/bin/hearth", ...]`, possibly behind
/// `/usr/bin/env K=V`) pass with the configuration the images ship, run here against this build.
/// The CPU image's `hearth info` step once failed in a real build: the container configuration
/// listens on 0.0.0.0 and the key only comes at run time.
#[test]
fn the_containerfiles_smoke_steps_pass_with_the_image_configuration() {
    let config = hearth_tests::repo_root().join("packaging/container/hearth.toml");
    let mut ran = 0;
    for file in ["packaging/Containerfile", "packaging/Containerfile.cuda"] {
        let text = std::fs::read_to_string(hearth_tests::repo_root().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let steps: Vec<Vec<String>> = text
            .lines()
            .filter_map(|l| l.strip_prefix("RUN ["))
            .filter_map(|rest| serde_json::from_str::<Vec<String>>(&format!("[{rest}")).ok())
            .filter(|argv| argv.iter().any(|a| a == "/usr/bin/hearth"))
            .collect();
        assert!(steps.iter().any(|argv| argv.contains(&"--version".to_owned())), "{file} has no `hearth --version` smoke step");
        for argv in steps {
            let at = argv.iter().position(|a| a == "/usr/bin/hearth").unwrap_or_default();
            let env: Vec<(&str, &str)> = match argv[..at].split_first() {
                None => Vec::new(),
                Some((program, assignments)) => {
                    assert_eq!(program, "/usr/bin/env", "{file}: {argv:?}");
                    assignments.iter().filter_map(|a| a.split_once('=')).collect()
                }
            };
            let out = hearth_tests::hearth_command()
                .arg("--config")
                .arg(&config)
                .args(&argv[at + 1..])
                .envs(env)
                .env_remove("HEARTH__ENGINE__BACKEND_DIR")
                .output()
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(out.status.success(), "{file}: {argv:?} fails with the image's configuration: {}", String::from_utf8_lossy(&out.stderr));
            ran += 1;
        }
    }
    assert!(ran >= 3, "smoke steps run: {ran}");
}
