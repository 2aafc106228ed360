//! Stats snapshots, subscriptions and the log lines a person reads.
//!
//! A test binary of its own: it asserts on `vigil` log lines that any tree in
//! the same process could write.
#[path = "core/support/mod.rs"]
mod support;

use std::time::Duration;

use support::*;
use vigil_core::*;
use vigil_testkit::{capture_logs, captured_logs};

/// The `vigil` log lines kept so far, as `LEVEL message`.
fn vigil_lines() -> Vec<String> {
    captured_logs().into_iter().filter(|r| r.target == "vigil").map(|r| format!("{} {}", r.level, r.message)).collect()
}

#[test]
fn a_restart_is_logged_as_one_readable_line() {
    capture_logs();
    let (tx, notes) = crossbeam_channel::unbounded();
    let spec = probe("events", &tx).backoff(Backoff::exponential(Duration::from_millis(40), Duration::from_millis(40)));
    let addr = spec.addr();
    let system = Supervisor::builder().intensity(3, Duration::from_secs(5)).child(spec).start().unwrap();
    addr.tell(Cmd::Panic).unwrap();
    expect(&notes, "restart", |n| *n == Note::Started("events", 1));
    let lines = vigil_lines();
    let restart = lines.iter().find(|l| l.contains("restarting root/events")).expect("a restart line");
    assert!(restart.starts_with("WARN restarting root/events (1 of 3 in 5s, backoff 40ms): panicked at "), "{restart}");
    assert!(restart.contains(": events was told to panic"), "{restart}");
    assert!(lines.iter().any(|l| l.starts_with("DEBUG root/events exited: panicked at")), "{lines:#?}");
    system.shutdown().unwrap();
    let lines = vigil_lines();
    assert!(lines.iter().any(|l| l == "INFO root shut down (0 abandoned)"), "{lines:#?}");
}

#[test]
fn an_unlimited_intensity_reads_no_limit_and_a_zero_backoff_reads_no_backoff() {
    capture_logs();
    let (tx, notes) = crossbeam_channel::unbounded();
    let spec = probe("nolimit", &tx);
    let addr = spec.addr();
    let system = Supervisor::builder().intensity(MAX_INTENSITY, Duration::from_secs(1)).child(spec).start().unwrap();
    addr.tell(Cmd::Fail).unwrap();
    expect(&notes, "restart", |n| *n == Note::Started("nolimit", 1));
    // An in-place restart is announced by the supervisor after the fact.
    wait_until("the restart line", || vigil_lines().iter().any(|l| l.contains("restarting root/nolimit")));
    let lines = vigil_lines();
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

#[test]
fn the_shutdown_plan_is_logged_at_start() {
    capture_logs();
    let (tx, _notes) = crossbeam_channel::unbounded();
    let system =
        Supervisor::builder().child(probe("planned", &tx).shutdown(Duration::from_millis(1500))).start().unwrap();
    let lines = vigil_lines();
    assert!(
        lines.iter().any(|l| l == "DEBUG root: shutdown plan: worst case 1.5s (root/planned 1.5s, slack 2ms)"),
        "{lines:#?}"
    );
    system.shutdown().unwrap();
}

#[test]
fn a_self_shutdown_and_an_auto_shutdown_are_logged_as_normal_ends() {
    struct Done;
    impl Actor for Done {
        type Msg = ();
        fn handle(&mut self, _: (), ctx: &mut Context<'_, ()>) -> Result<(), BoxError> {
            ctx.shutdown();
            Ok(())
        }
    }
    capture_logs();
    let (tx, _notes) = crossbeam_channel::unbounded();
    let done = ChildSpec::worker("selfdone", || Done).restart(Restart::Transient).significant(true);
    let addr = done.addr();
    let system = Supervisor::builder()
        .auto_shutdown(AutoShutdown::AnySignificant)
        .child(probe("bystander", &tx))
        .child(done)
        .start()
        .unwrap();
    addr.tell(()).unwrap();
    assert!(system.wait_timeout(DEADLINE).is_ok_and(|report| report.is_clean()));
    let lines = vigil_lines();
    assert!(lines.iter().any(|l| l == "INFO root/selfdone exited: shutdown (Transient, not restarted)"), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l == "INFO root shuts down: significant child root/selfdone ended (auto_shutdown AnySignificant)"),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("selfdone") && (l.starts_with("WARN") || l.starts_with("ERROR"))),
        "{lines:#?}"
    );
}
