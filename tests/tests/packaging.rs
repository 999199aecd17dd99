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
    ] {
        assert!(files.lines().any(|l| l == path), "{path} missing from the RPM:\n{files}");
    }
    // The operator's configuration survives upgrades.
    assert_eq!(rpm_query(&["-qp", "--configfiles"]).trim(), "/etc/hearth/hearth.toml");
    let scripts = rpm_query(&["-qp", "--scripts"]);
    assert!(scripts.contains("preinstall scriptlet") && scripts.contains("systemd-sysusers"), "{scripts}");
    assert!(scripts.contains("postinstall scriptlet") && scripts.contains("systemd-tmpfiles --create"), "{scripts}");
    let requires = rpm_query(&["-qp", "--requires"]);
    assert!(requires.lines().any(|l| l.starts_with("systemd")), "{requires}");
}

#[test]
fn the_packaged_binary_runs() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cpio = Command::new("sh")
        .arg("-c")
        .arg(format!("rpm2cpio {} | cpio -idm --quiet ./usr/bin/hearth", the_rpm().display()))
        .current_dir(dir.path())
        .status()
        .unwrap_or_else(|e| panic!("rpm2cpio: {e}"));
    assert!(cpio.success());
    let out = Command::new(dir.path().join("usr/bin/hearth")).arg("--version").output().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("hearth {}", env!("CARGO_PKG_VERSION")));
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
