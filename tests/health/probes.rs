//! The probes over HTTP, with a real client, at the moments they change.

use std::time::Duration;

use vigil::{Actor, AutoShutdown, BoxError, ChildSpec, Context, Supervisor};
use vigil_health::{HealthConfig, HealthEndpoint, HealthMonitor, report_channel};
use vigil_testkit::wait_until;

use crate::support::{Cmd, INTERVAL, get, significant_main};

/// A child whose start waits for the test: the ordered start is under way
/// until it is released.
struct SlowStart {
    gate: crossbeam_channel::Receiver<()>,
}

impl Actor for SlowStart {
    type Msg = ();
    fn started(&mut self, _: &mut Context<'_, ()>) -> Result<(), BoxError> {
        let _ = self.gate.recv();
        Ok(())
    }
    fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> {
        Ok(())
    }
}

#[test]
fn the_probes_answer_200_and_503_at_the_right_moments() {
    let (publisher, watch) = report_channel();
    let endpoint = HealthEndpoint::bind("127.0.0.1:0", watch).unwrap();
    let base = format!("http://{}", endpoint.local_addr());
    let url = |path: &str| format!("{base}{path}");
    let (release, gate) = crossbeam_channel::bounded::<()>(0);
    let main = significant_main(Duration::from_millis(300));
    let addr = main.addr();
    let tree = Supervisor::builder()
        .auto_shutdown(AutoShutdown::AnySignificant)
        .intensity(10, Duration::from_secs(60))
        .child(endpoint.child_spec())
        .child(
            ChildSpec::worker("slow", move || SlowStart { gate: gate.clone() }).start_timeout(Duration::from_secs(120)),
        )
        .child(main);
    let starting = std::thread::spawn(move || tree.start());

    // The endpoint, first in the start order, answers while the rest starts.
    wait_until("/startupz answers", || std::net::TcpStream::connect(endpoint.local_addr()).is_ok());
    let (status, body) = get(&url("/startupz"));
    assert_eq!((status, &body["health"]["state"]), (503, &serde_json::json!("starting")));
    assert_eq!(get(&url("/readyz")).0, 503);
    assert_eq!(get(&url("/livez")).0, 200);

    release.send(()).unwrap();
    let system = starting.join().unwrap().unwrap();
    let monitor = HealthMonitor::builder(system.observer())
        .publisher(publisher)
        .config(HealthConfig::new().interval(INTERVAL).ready_when_degraded(false))
        .start()
        .unwrap();
    // The first report is published before `start` returns.
    assert_eq!(get(&url("/startupz")).0, 200);
    assert_eq!(get(&url("/readyz")).0, 200);

    // A significant child down: degraded, and (strict) not ready.
    system.root().terminate_child("main").unwrap();
    wait_until("/readyz 503 with the significant child down", || get(&url("/readyz")).0 == 503);
    let (_, body) = get(&url("/readyz"));
    assert_eq!(body["health"]["reasons"][0], serde_json::json!({"reason": "significant_down", "path": "root/main"}));
    assert_eq!(get(&url("/livez")).0, 200, "down is not dead");
    system.root().restart_child("main").unwrap();
    wait_until("/readyz 200 again", || get(&url("/readyz")).0 == 200);

    // A wedged significant child: not live until its hook returns.
    let (unwedge, gate) = crossbeam_channel::bounded::<()>(0);
    addr.tell(Cmd::Block(gate)).unwrap();
    wait_until("/livez 503 with the significant child hung", || get(&url("/livez")).0 == 503);
    let (_, body) = get(&url("/livez"));
    let reasons = body["health"]["reasons"].as_array().cloned().unwrap_or_default();
    assert!(reasons.contains(&serde_json::json!({"reason": "hung", "path": "root/main"})), "{body}");
    drop(unwedge);
    wait_until("/livez 200 after the hung hook returned", || get(&url("/livez")).0 == 200);

    let (status, stats) = get(&url("/stats"));
    assert_eq!(status, 200);
    assert_eq!(stats["tree"]["children"][2]["path"], "root/main");
    assert_eq!(stats["tree"]["hangs_total"], 1);
    assert_eq!(get(&url("/nowhere")).0, 404);

    system.shutdown().unwrap();
    assert_eq!(monitor.stop().health, vigil_health::Health::Stopped);
}
