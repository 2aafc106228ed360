//! The incident replay under the engines outside the process: as systemd
//! runs it (NOTIFY_SOCKET, WATCHDOG_USEC, SIGTERM to stop) with
//! `--health`, probed over HTTP.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vigil_testkit::http_get as get;
use vigil_testkit::{NotifyListener, TempDir, count_lines_after, first_line, poll, wait_until};

use crate::support;

/// Kills the replay (by its own handle) if the test fails before it exits.
struct Replay(Child);

impl Drop for Replay {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn under_systemd_the_replay_notifies_answers_probes_and_stops_in_order_on_sigterm() {
    let dir = TempDir::new("incident-notify");
    let socket = dir.path("notify.sock");
    let listener = NotifyListener::bind(&socket);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let mut replay = Replay(
        Command::new(support::example("incident"))
            .args([
                "--vigil-only",
                "--duration",
                "300",
                "--rps",
                "100",
                "--json",
                "--health",
                &format!("127.0.0.1:{port}"),
            ])
            .env("NOTIFY_SOCKET", &socket)
            .env("WATCHDOG_USEC", "1000000")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the incident replay"),
    );

    wait_until("READY=1 and two WATCHDOG=1 pings", || {
        let d = listener.datagrams();
        first_line(&d, "READY=1").is_some_and(|ready| count_lines_after(&d, ready, "WATCHDOG=1") >= 2)
    });
    for probe in ["/startupz", "/livez", "/readyz"] {
        let (status, body) = get(&format!("{base}{probe}"));
        assert_eq!(status, 200, "{probe}: {body}");
    }
    let (status, metrics) = get(&format!("{base}/metrics"));
    assert_eq!(status, 200);
    assert!(metrics.contains("vigil_events_accepted_total "), "{metrics}");
    assert!(metrics.contains(r#"vigil_child_state{path="root/events/batcher",state="running"} 1"#), "{metrics}");
    assert!(metrics.contains("vigil_certificate_days_left{"), "{metrics}");

    // What `systemctl stop` sends.
    let pid = replay.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert!(
        poll(Duration::from_secs(120), || replay.0.try_wait().ok().flatten().is_some()),
        "the replay did not exit after SIGTERM"
    );
    let mut stdout = String::new();
    replay.0.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("the JSON report: {e}\n{stdout}"));
    assert!(report["duration_s"].as_f64().unwrap() < 300.0, "ended early: {report:#}");
    let states: Vec<&str> =
        report["health_transitions"].as_array().unwrap().iter().map(|t| t["health"].as_str().unwrap()).collect();
    assert_eq!(states.last(), Some(&"stopped"), "{states:?}");
    assert!(states.contains(&"stopping"), "{states:?}");
    let d = listener.finish();
    let (ready, stopping) = (first_line(&d, "READY=1").unwrap(), first_line(&d, "STOPPING=1"));
    assert!(stopping.is_some_and(|s| s > ready), "{d:#?}");
}
