//! Stats snapshots, subscriptions and the log lines a person reads.
mod support;

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use support::*;
use vigil_core::*;

/// Records every `vigil` log line in memory.
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if record.target() == "vigil" {
            self.0.lock().unwrap().push(format!("{} {}", record.level(), record.args()));
        }
    }
    fn flush(&self) {}
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(capture).unwrap();
        log::set_max_level(log::LevelFilter::Debug);
        capture
    })
}

#[test]
fn a_restart_is_logged_as_one_readable_line() {
    let logs = capture();
    let (tx, notes) = crossbeam_channel::unbounded();
    let spec = probe("events", &tx).backoff(Backoff::exponential(Duration::from_millis(40), Duration::from_millis(40)));
    let addr = spec.addr();
    let system = Supervisor::builder().intensity(3, Duration::from_secs(5)).child(spec).start().unwrap();
    addr.tell(Cmd::Panic).unwrap();
    expect(&notes, "restart", |n| *n == Note::Started("events", 1));
    let lines = logs.0.lock().unwrap().clone();
    let restart = lines.iter().find(|l| l.contains("restarting root/events")).expect("a restart line");
    assert!(restart.starts_with("WARN restarting root/events (1 of 3 in 5s, backoff 40ms): panicked at "), "{restart}");
    assert!(restart.contains(": events was told to panic"), "{restart}");
    assert!(lines.iter().any(|l| l.starts_with("DEBUG root/events exited: panicked at")), "{lines:#?}");
    system.shutdown().unwrap();
    let lines = logs.0.lock().unwrap().clone();
    assert!(lines.iter().any(|l| l == "INFO root shut down (0 abandoned)"), "{lines:#?}");
}

#[test]
fn an_unlimited_intensity_reads_no_limit_and_a_zero_backoff_reads_no_backoff() {
    let logs = capture();
    let (tx, notes) = crossbeam_channel::unbounded();
    let spec = probe("nolimit", &tx);
    let addr = spec.addr();
    let system = Supervisor::builder().intensity(MAX_INTENSITY, Duration::from_secs(1)).child(spec).start().unwrap();
    addr.tell(Cmd::Fail).unwrap();
    expect(&notes, "restart", |n| *n == Note::Started("nolimit", 1));
    // An in-place restart is announced by the supervisor after the fact.
    wait_until("the restart line", || logs.0.lock().unwrap().iter().any(|l| l.contains("restarting root/nolimit")));
    let lines = logs.0.lock().unwrap().clone();
    let restart = lines.iter().find(|l| l.contains("restarting root/nolimit")).expect("a restart line");
    assert!(
        restart.starts_with("WARN restarting root/nolimit (1 in 1s, no limit, no backoff): in the handle hook: "),
        "{restart}"
    );
    assert!(!restart.contains("1000000") && !restart.contains("0µs"), "{restart}");
    system.shutdown().unwrap();
}

#[test]
fn stats_serialise_the_whole_tree_as_json() {
    let (tx, notes) = crossbeam_channel::unbounded();
    let worker = probe("w", &tx).mailbox(8);
    let addr = worker.addr();
    let inner = Supervisor::builder().intensity(2, Duration::from_secs(10)).child(worker);
    let system = Supervisor::builder().child(ChildSpec::supervisor("inner", inner)).start().unwrap();
    let (release, blocked) = crossbeam_channel::bounded::<()>(0);
    addr.tell(Cmd::Panic).unwrap();
    expect(&notes, "restart", |n| *n == Note::Started("w", 1));
    addr.tell(Cmd::Block(blocked)).unwrap();
    addr.tell(Cmd::Record(1)).unwrap();
    addr.tell(Cmd::Record(2)).unwrap();
    wait_until("two queued", || addr.len() == 2);
    // The supervisor accounts for an in-place restart just after the new
    // incarnation starts: wait for the snapshot to show it.
    wait_until("the restart is accounted", || {
        system.stats().find("root/inner/w").is_some_and(|w| w.restarts_total == 1 && w.restarts_in_window == 1)
    });

    let json = serde_json::to_value(system.stats()).unwrap();
    let inner = &json["children"][0];
    assert_eq!(inner["path"], "root/inner");
    assert_eq!(inner["kind"], "supervisor");
    let w = &inner["supervisor"]["children"][0];
    assert_eq!(w["path"], "root/inner/w");
    assert_eq!(w["state"], "running");
    assert_eq!(w["restarts_total"], 1);
    assert_eq!(w["restarts_in_window"], 1);
    assert_eq!(w["mailbox_len"], 2);
    assert_eq!(w["last_exit"]["kind"], "panicked");
    assert_eq!(w["last_exit"]["hook"], "handle");
    assert!(w["uptime_ms"].is_u64());
    assert_eq!(inner["supervisor"]["intensity"], 2);
    assert_eq!(inner["supervisor"]["period_ms"], 10_000);
    drop(release);
    system.shutdown().unwrap();
}

#[test]
fn subscribers_see_every_lifecycle_event_in_order() {
    let (tx, _notes) = crossbeam_channel::unbounded();
    let spec = probe("w", &tx);
    let addr = spec.addr();
    let system = Supervisor::builder().intensity(1, Duration::from_secs(3600)).child(spec).start().unwrap();
    let events = system.subscribe();
    addr.tell(Cmd::Panic).unwrap();
    expect(&events, "restart", started("root/w", 1));
    addr.tell(Cmd::Panic).unwrap();
    let _ = system.wait();
    let rest: Vec<String> = events.try_iter().map(|e| serde_json::to_value(e).unwrap()["event"].to_string()).collect();
    assert_eq!(rest, ["\"exited\"", "\"gave_up\""]);
}
