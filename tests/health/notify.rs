//! systemd's side of `Type=notify`: a datagram listener on a socket path
//! handed to the notifier (never through the process-wide NOTIFY_SOCKET,
//! which a multi-threaded test binary must not change).

use std::time::Duration;

use vigil::{AutoShutdown, Supervisor, exit_code};
use vigil_health::{HealthConfig, HealthMonitor, NotifierHandle, SystemdNotifier};
use vigil_testkit::{
    NotifyListener as Listener, TempDir, count_lines_after as count_after, first_line as first, has_line, wait_until,
};

use crate::support::{Cmd, INTERVAL, significant_main};

/// A scratch directory (keep it alive) with a listener on its notify socket.
fn listen(name: &str) -> (TempDir, std::path::PathBuf, Listener) {
    let dir = TempDir::new(name);
    let path = dir.path("notify.sock");
    let listener = Listener::bind(&path);
    (dir, path, listener)
}

/// A monitor of `system` looking every 50 ms, and a notifier to `path` with
/// a 200 ms watchdog (a ping every 100 ms while live).
fn watched(system: &vigil::System, path: &std::path::Path) -> (HealthMonitor, NotifierHandle) {
    let monitor =
        HealthMonitor::builder(system.observer()).config(HealthConfig::new().interval(INTERVAL)).start().unwrap();
    let notifier =
        SystemdNotifier::new(path).watchdog(Some(Duration::from_millis(200))).start(monitor.watch()).unwrap();
    (monitor, notifier)
}

#[test]
fn the_listener_sees_ready_then_watchdog_pings_then_stopping() {
    let (_dir, path, listener) = listen("health-notify");
    let system = Supervisor::builder()
        .auto_shutdown(AutoShutdown::AnySignificant)
        .child(significant_main(Duration::from_secs(30)))
        .start()
        .unwrap();
    let (monitor, notifier) = watched(&system, &path);

    wait_until("READY=1 and then three WATCHDOG=1 pings", || {
        let d = listener.datagrams();
        first(&d, "READY=1").is_some_and(|ready| count_after(&d, ready, "WATCHDOG=1") >= 3)
    });
    let report = system.shutdown().unwrap();
    assert_eq!(exit_code(&Ok(report)), std::process::ExitCode::SUCCESS);
    assert_eq!(monitor.stop().health, vigil_health::Health::Stopped);
    notifier.join();
    let d = listener.finish();

    let ready = first(&d, "READY=1").unwrap();
    let stopping = first(&d, "STOPPING=1").expect("STOPPING=1 at shutdown");
    assert!(ready < stopping, "{d:#?}");
    assert_eq!(d.iter().filter(|x| has_line(x, "READY=1")).count(), 1, "READY=1 once: {d:#?}");
    assert_eq!(d.iter().filter(|x| has_line(x, "STOPPING=1")).count(), 1, "STOPPING=1 once: {d:#?}");
    assert_eq!(count_after(&d, stopping + 1, "WATCHDOG=1"), 0, "no ping once stopping: {d:#?}");
    assert!(d[..ready].iter().all(|x| !has_line(x, "WATCHDOG=1")), "no ping before READY=1: {d:#?}");
    assert!(d[ready].lines().any(|l| l.starts_with("STATUS=ready; 1/1 children running")), "{d:#?}");
}

#[test]
fn a_wedged_significant_child_stops_the_watchdog_pings_until_it_returns() {
    let (_dir, path, listener) = listen("health-wedge");
    let main = significant_main(Duration::from_millis(300));
    let addr = main.addr();
    let system = Supervisor::builder()
        .auto_shutdown(AutoShutdown::AnySignificant)
        .intensity(10, Duration::from_secs(60))
        .child(main)
        .start()
        .unwrap();
    let (monitor, notifier) = watched(&system, &path);
    wait_until("READY=1 and a first ping", || {
        let d = listener.datagrams();
        first(&d, "READY=1").is_some_and(|ready| count_after(&d, ready, "WATCHDOG=1") >= 1)
    });

    // Wedge it: the watchdog declares it hung after 300 ms, its thread is
    // abandoned and still running, so the process is not live.
    let (release, gate) = crossbeam_channel::bounded::<()>(0);
    addr.tell(Cmd::Block(gate)).unwrap();
    let not_live =
        |d: &[String]| d.iter().position(|x| x.lines().any(|l| l.starts_with("STATUS=") && l.contains("(not live)")));
    wait_until("a STATUS= line saying not live", || not_live(&listener.datagrams()).is_some());
    // The absence of pings can only be seen over time: ten ping intervals.
    std::thread::sleep(Duration::from_millis(1000));
    let d = listener.datagrams();
    let wedged = not_live(&d).unwrap();
    assert_eq!(count_after(&d, wedged, "WATCHDOG=1"), 0, "pings while a significant child is wedged: {d:#?}");
    assert!(d[wedged].contains("degraded"), "{d:#?}");

    // Released, the hung hook returns late, the thread ends: live again,
    // and the pings resume.
    drop(release);
    wait_until("pings after the wedged thread returned", || {
        count_after(&listener.datagrams(), wedged, "WATCHDOG=1") >= 1
    });
    system.shutdown().unwrap();
    monitor.stop();
    notifier.join();
    let d = listener.finish();
    assert!(first(&d, "STOPPING=1").is_some(), "{d:#?}");
}

#[test]
fn a_root_that_gives_up_is_failed_not_live_and_stops_pinging() {
    let (_dir, path, listener) = listen("health-gave-up");
    let flaky = vigil::ChildSpec::worker("flaky", || crate::support::Worker);
    let addr = flaky.addr();
    let system = Supervisor::builder().intensity(1, Duration::from_secs(60)).child(flaky).start().unwrap();
    let (monitor, notifier) = watched(&system, &path);
    wait_until("READY=1", || listener.first("READY=1").is_some());

    // Two failures within the window: beyond an intensity of 1, the root gives up.
    addr.tell(Cmd::Fail).unwrap();
    wait_until("the first restart", || system.stats().restarts_total == 1);
    addr.tell(Cmd::Fail).unwrap();
    assert!(system.wait().is_err(), "the root gave up");
    let last = monitor.stop();
    assert_eq!(last.health, vigil_health::Health::Failed);
    assert!(!last.live && !last.ready);
    notifier.join();
    let d = listener.finish();
    let stopping = first(&d, "STOPPING=1").expect("STOPPING=1 when the tree ends");
    assert_eq!(count_after(&d, stopping, "WATCHDOG=1"), 0, "{d:#?}");
    assert!(d[stopping..].iter().any(|x| x.contains("STATUS=failed (not live)")), "{d:#?}");
}

/// Takes `STOP` to stop: a drain that moves one child at a time.
struct SlowStop;

const STOP: Duration = Duration::from_millis(1500);

impl vigil::Actor for SlowStop {
    type Msg = ();
    fn handle(&mut self, _: (), _: &mut vigil::Context<'_, ()>) -> Result<(), vigil::BoxError> {
        Ok(())
    }
    fn stopped(&mut self, _: &vigil::ExitReason) {
        // Stands in for draining work: the shutdown waits for it.
        std::thread::sleep(STOP);
    }
}

#[test]
fn a_shutdown_that_makes_progress_asks_systemd_for_more_time() {
    let (_dir, path, listener) = listen("health-extend");
    let system = Supervisor::builder()
        .children((0..3).map(|i| vigil::ChildSpec::worker(format!("slow-{i}"), || SlowStop)))
        .start()
        .unwrap();
    let (monitor, notifier) = watched(&system, &path);
    wait_until("READY=1", || listener.first("READY=1").is_some());
    // Three children stopping one after the other, 1.5 s each: each second
    // in which one of them finished extends the stop timeout.
    assert!(system.shutdown().unwrap().is_clean());
    monitor.stop();
    notifier.join();
    let d = listener.finish();
    let stopping = first(&d, "STOPPING=1").unwrap();
    let extended = count_after(&d, stopping, "EXTEND_TIMEOUT_USEC=10000000");
    assert!(extended >= 1, "no EXTEND_TIMEOUT_USEC during a 4.5 s drain that moved: {d:#?}");
}

#[test]
fn a_significant_child_that_finishes_ends_the_tree_as_stopped() {
    let (_dir, path, listener) = listen("health-auto-shutdown");
    let main = significant_main(Duration::from_secs(30));
    let addr = main.addr();
    let system = Supervisor::builder()
        .auto_shutdown(AutoShutdown::AnySignificant)
        .child(main)
        .child(vigil::ChildSpec::worker("side", || crate::support::Worker))
        .start()
        .unwrap();
    let (monitor, notifier) = watched(&system, &path);
    wait_until("READY=1", || listener.first("READY=1").is_some());
    // "The app ends when its main worker finishes": a normal end, not a failure.
    addr.tell(Cmd::Finish).unwrap();
    assert!(system.wait().is_ok(), "auto_shutdown is a normal exit");
    let last = monitor.stop();
    assert_eq!(last.health, vigil_health::Health::Stopped);
    assert!(last.live);
    notifier.join();
    let d = listener.finish();
    assert!(first(&d, "STOPPING=1").is_some(), "{d:#?}");
}
