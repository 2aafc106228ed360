//! Every example runs and prints what it promises; the incident replay, the
//! main job, has a module of its own (`incident.rs`). One test binary for
//! everything that runs the workspace's examples.
mod incident;
mod incident_crash;
mod incident_health;
mod spool_crash;
mod support;

#[test]
fn the_supervision_example_restarts_its_worker_and_shuts_down_cleanly() {
    let output = support::run_example("supervision", &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("main thread served 30 requests"), "{stdout}");
    assert!(stdout.contains("shutdown: Ok(ShutdownReport { abandoned: []"), "{stdout}");
    // Work items 7, 14, 21 and 28 panic: four restarts, each one log line.
    assert_eq!(stderr.matches("restarting root/flaky").count(), 4, "{stderr}");
    assert!(stderr.contains("(1 of 5 in 1s, backoff "), "{stderr}");
    // The pretty-printed stats sit between a line "{" and a line "}".
    let stats_start = stdout.find("\n{\n").expect("stats JSON");
    let stats_end = stdout.find("\n}\n").expect("stats JSON");
    let stats: serde_json::Value = serde_json::from_str(&stdout[stats_start..stats_end + 2]).expect("stats parse");
    assert_eq!(stats["children"][0]["restarts_total"], 4);
}

/// Issue 14: the operator's check exits 0 when the host is ready for the
/// announced rotation and 1 when it is not, run as the real binary.
#[test]
fn rotation_check_exits_0_when_ready_and_1_when_not() {
    let collector = vigil_collector::Collector::builder().start().expect("collector starts");
    // Another collector's CA stands in for the announced new CA: a real CA certificate.
    let next = vigil_collector::Collector::builder().start().expect("second collector starts");
    let endpoint = collector.endpoint();
    let ca = collector.ca_pem_path();
    let ca = ca.to_str().expect("utf-8 path");
    let new_ca = next.ca_pem_path();
    let new_ca = new_ca.to_str().expect("utf-8 path");

    let ready = support::run_example("rotation-check", &["--endpoint", &endpoint, "--ca", ca]);
    let stdout = String::from_utf8_lossy(&ready.stdout);
    assert_eq!(ready.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&ready.stderr));
    assert!(stdout.contains(": READY"), "{stdout}");
    assert!(stdout.contains("served leaf: "), "{stdout}");

    let args = ["--endpoint", &endpoint, "--ca", ca, "--announced-ca", new_ca, "--by", "2099-10-05"];
    let missing = support::run_example("rotation-check", &args);
    let stdout = String::from_utf8_lossy(&missing.stdout);
    assert_eq!(missing.status.code(), Some(1), "{stdout}\n{}", String::from_utf8_lossy(&missing.stderr));
    assert!(stdout.contains("NOT READY"), "{stdout}");
    assert!(stdout.contains("announced for 2099-10-05: this host does not trust it yet"), "{stdout}");

    // Both CAs trusted: ready, and the JSON says so.
    let args =
        ["--endpoint", &endpoint, "--ca", ca, "--ca", new_ca, "--announced-ca", new_ca, "--by", "2099-10-05", "--json"];
    let both = support::run_example("rotation-check", &args);
    assert_eq!(both.status.code(), Some(0), "{}", String::from_utf8_lossy(&both.stderr));
    let report: serde_json::Value = serde_json::from_slice(&both.stdout).expect("JSON report");
    assert_eq!(report["ready"], true);
    assert_eq!(report["rotations"][0]["ready"], true);
    assert_eq!(report["rotations"][0]["trusted_in"], new_ca);

    // A check that cannot run is neither: 2.
    let bad = support::run_example("rotation-check", &["--endpoint", &endpoint, "--ca", "/nonexistent.pem"]);
    assert_eq!(bad.status.code(), Some(2));
}
