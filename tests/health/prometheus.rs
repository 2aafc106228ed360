//! A real Prometheus scrapes a running tree's /metrics, and promtool checks
//! the exposition. Both are Debian's `prometheus` package, which `.ci/run`
//! installs; on a machine without it these tests are ignored.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vigil::{ChildSpec, Supervisor};
use vigil_health::{HealthEndpoint, HealthMonitor, report_channel};
use vigil_testkit::{TempDir, poll, wait_until};

use crate::support::{Cmd, INTERVAL, Worker, get, get_text};

/// Restarts the test causes.
const RESTARTS: u64 = 3;

/// Kills the Prometheus this test started (by its own handle) on the way out.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A tree with the endpoint and a worker `flaky` restarted `RESTARTS`
/// times; returns the system, the monitor and the endpoint's address.
fn tree_with_restarts() -> (vigil::System, HealthMonitor, std::net::SocketAddr) {
    let (publisher, watch) = report_channel();
    let endpoint = HealthEndpoint::bind("127.0.0.1:0", watch).unwrap();
    let flaky = ChildSpec::worker("flaky", || Worker);
    let addr = flaky.addr();
    let system = Supervisor::builder()
        .intensity(10, Duration::from_secs(60))
        .child(endpoint.child_spec())
        .child(flaky)
        .start()
        .unwrap();
    let monitor = HealthMonitor::builder(system.observer())
        .publisher(publisher)
        .config(vigil_health::HealthConfig::new().interval(INTERVAL))
        .start()
        .unwrap();
    for n in 1..=RESTARTS {
        addr.tell(Cmd::Fail).unwrap();
        wait_until("the restart", || system.stats().find("root/flaky").is_some_and(|c| c.restarts_total == n));
    }
    let watch = monitor.watch();
    wait_until("the report counts the restarts", || {
        watch.get().restarts.iter().map(|r| r.count).sum::<u64>() == RESTARTS
    });
    (system, monitor, endpoint.local_addr())
}

#[test]
#[ignore = "needs prometheus: .ci/run installs it"]
fn a_real_prometheus_scrapes_the_restarts_the_test_caused() {
    let (system, monitor, endpoint) = tree_with_restarts();
    let dir = TempDir::new("prometheus");
    let config = dir.write(
        "prometheus.yml",
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: vigil\n    \
             static_configs:\n      - targets: ['{endpoint}']\n"
        ),
    );
    let port = free_port();
    let log = std::fs::File::create(dir.path("prometheus.log")).unwrap();
    let prometheus = Running(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus (Debian package `prometheus`)"),
    );

    let query = |q: &str| {
        let url = format!(
            "http://127.0.0.1:{port}/api/v1/query?query={}",
            q.replace('"', "%22").replace('{', "%7B").replace('}', "%7D")
        );
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        let (status, body) = get(&url);
        (status == 200).then(|| body["data"]["result"][0]["value"][1].as_str().map(str::to_owned)).flatten()
    };
    // Prometheus starts, scrapes every second: a minute is ample on a loaded machine.
    let mut total = None;
    poll(Duration::from_secs(120), || {
        total = query("sum(vigil_restarts_total)");
        total.is_some()
    });
    let log = std::fs::read_to_string(dir.path("prometheus.log")).unwrap_or_default();
    assert_eq!(total.as_deref(), Some("3"), "Prometheus's log:\n{log}");
    let by_label = query(r#"vigil_restarts_total{path="root/flaky",reason="failed"}"#);
    assert_eq!(by_label.as_deref(), Some("3"));
    let up = query(r#"up{job="vigil"}"#);
    assert_eq!(up.as_deref(), Some("1"));

    drop(prometheus);
    system.shutdown().unwrap();
    monitor.stop();
}

#[test]
#[ignore = "needs promtool (Debian package prometheus): .ci/run installs it"]
fn the_exposition_passes_promtool_check_metrics() {
    let (system, monitor, endpoint) = tree_with_restarts();
    // promtool 2.x reads the classic text format, which /metrics serves to
    // a client that does not ask for OpenMetrics (Prometheus does ask).
    let (status, text) = get_text(&format!("http://{endpoint}/metrics"));
    assert_eq!(status, 200);
    assert!(text.contains(r#"vigil_restarts_total{path="root/flaky",reason="failed"} 3"#), "{text}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (Debian package `prometheus`)");
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{text}");
    system.shutdown().unwrap();
    monitor.stop();
}
