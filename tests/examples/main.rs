//! Every example runs and prints what it promises; the incident replay, the
//! main job, has a module of its own (`incident.rs`). One test binary for
//! everything that runs the workspace's examples.
mod incident;
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
