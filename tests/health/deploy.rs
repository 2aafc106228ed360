//! The shipped deployment files: the systemd unit passes
//! `systemd-analyze verify`, and the unit and the Kubernetes manifest give
//! the same shutdown budget.

use std::path::{Path, PathBuf};
use std::process::Command;
use vigil_testkit::TempDir;

fn deploy_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deploy").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The value of the first line `key<sep>value`, trimmed of a unit suffix.
fn value(text: &str, key: &str) -> u64 {
    let line =
        text.lines().map(str::trim).find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key} in the file"));
    let digits: String = line[key.len()..].chars().filter(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| panic!("{line}: not a number"))
}

/// The incident example's binary, built by `cargo test` or on demand.
fn incident_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(Path::parent).unwrap();
    let path = profile.join("examples").join("incident");
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--example", "incident"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "building the incident example failed");
    }
    path
}

#[test]
#[ignore = "needs systemd-analyze (Debian package systemd): .ci/run installs it"]
fn the_unit_passes_systemd_analyze_verify() {
    let unit = deploy_file("vigil-incident.service");
    // verify checks that ExecStart's binary exists: point it at the example
    // this test suite built, in a copy.
    let exec = "ExecStart=/usr/local/bin/vigil-incident ";
    assert!(unit.contains(exec), "the unit's ExecStart changed: update this test");
    let copy = unit.replace(exec, &format!("ExecStart={} ", incident_binary().display()));
    let dir = TempDir::new("unit");
    let path = dir.write("vigil-incident.service", copy);
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("run systemd-analyze");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // A bad value is only a warning (exit 0): the output must be empty too.
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify:\n{said}");
}

#[test]
fn the_unit_and_the_manifest_give_the_same_shutdown_budget() {
    let unit = deploy_file("vigil-incident.service");
    let manifest = deploy_file("kubernetes.yaml");
    assert!(unit.contains("\nType=notify\n"));
    let stop = value(&unit, "TimeoutStopSec=");
    let watchdog = value(&unit, "WatchdogSec=");
    let grace = value(&manifest, "terminationGracePeriodSeconds:");
    let pre_stop = value(&manifest, "seconds:");
    assert_eq!(grace, pre_stop + stop, "terminationGracePeriodSeconds = preStop + TimeoutStopSec");
    assert!(watchdog >= 2, "WATCHDOG=1 comes every half of WatchdogSec");
    for probe in ["/livez", "/readyz", "/startupz"] {
        assert!(manifest.contains(&format!("path: {probe}")), "{probe} probe");
    }
}

#[test]
fn the_unit_covers_the_incident_trees_shutdown_budget() {
    // The replay logs System::shutdown_budget() once its tree runs, the
    // health endpoint (--health) included.
    let out = Command::new(incident_binary())
        .args(["--vigil-only", "--duration", "1", "--json", "--health", "127.0.0.1:0"])
        .env("RUST_LOG", "incident=info")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().find(|l| l.contains("shutdown budget ")).unwrap_or_else(|| panic!("{stderr}"));
    let ms: u64 = line
        .split("shutdown budget ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a bounded budget: {line}"));
    // The derivation written in the unit: 1 s + 9 x 5 s + 7 s, and a
    // little slack per child stopped.
    assert!((53_000..54_000).contains(&ms), "{line}");
    let unit = deploy_file("vigil-incident.service");
    let manifest = deploy_file("kubernetes.yaml");
    let stop_ms = value(&unit, "TimeoutStopSec=") * 1000;
    assert!(ms < stop_ms, "TimeoutStopSec must cover the budget: {line}");
    let grace_ms = (value(&manifest, "terminationGracePeriodSeconds:") - value(&manifest, "seconds:")) * 1000;
    assert!(ms < grace_ms, "terminationGracePeriodSeconds minus preStop must cover the budget: {line}");
    assert!(out.status.success(), "{stderr}");
}
