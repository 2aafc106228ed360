//! Ordered shutdown, abandonment of children that ignore it, and start timeouts.
use crate::support;

use std::time::Duration;

use support::*;
use vigil_core::*;

#[test]
fn children_stop_in_reverse_start_order() {
    let (tx, notes) = crossbeam_channel::unbounded();
    let system =
        Supervisor::builder().child(probe("a", &tx)).child(probe("b", &tx)).child(probe("c", &tx)).start().unwrap();
    drain(&notes);
    assert!(system.shutdown().unwrap().is_clean());
    let stopped: Vec<&str> = stopped_for_shutdown(&notes);
    assert_eq!(stopped, ["c", "b", "a"]);
}

#[test]
fn a_child_that_ignores_stop_is_abandoned_and_shutdown_completes() {
    let (tx, notes) = crossbeam_channel::unbounded();
    let stuck = probe("stuck", &tx).shutdown(Duration::from_millis(100));
    let stuck_addr = stuck.addr();
    let system = Supervisor::builder().child(probe("first", &tx)).child(stuck).start().unwrap();
    let (release, hang) = crossbeam_channel::bounded::<()>(0);
    stuck_addr.tell(Cmd::Hang(hang)).unwrap();
    // Make sure the handler is running before shutting down.
    stuck_addr.tell(Cmd::Record(0)).unwrap();
    wait_until("hang message taken", || stuck_addr.len() == 1);
    let report = system.shutdown().unwrap();
    assert_eq!(report.abandoned, ["root/stuck"]);
    assert_eq!(exit_code(&Ok(report)), std::process::ExitCode::from(2));
    // The sibling still stopped in order.
    assert!(drain(&notes).iter().any(|n| matches!(n, Note::Stopped("first", why) if why == "shutdown")));
    drop(release);
}

#[test]
fn a_start_that_takes_too_long_fails_with_start_timeout() {
    let (tx, _notes) = crossbeam_channel::unbounded();
    let script = Script { start_delay: Some(Duration::from_millis(500)), ..Script::default() };
    let spec = probe_with("slow", &tx, script).start_timeout(Duration::from_millis(20));
    let error = Supervisor::builder().child(spec).start().unwrap_err();
    assert_eq!(
        error,
        StartError::Child {
            path: "root/slow".into(),
            reason: ExitReason::StartTimeout { timeout: Duration::from_millis(20) }
        }
    );
}

#[test]
fn the_supervisor_answers_and_shuts_down_during_a_backoff() {
    let (tx, _notes) = crossbeam_channel::unbounded();
    let sleepy =
        probe("sleepy", &tx).backoff(Backoff::exponential(Duration::from_secs(3600), Duration::from_secs(3600)));
    let sleepy_addr = sleepy.addr();
    let system = Supervisor::builder().child(sleepy).child(probe("other", &tx)).start().unwrap();
    let events = system.subscribe();
    sleepy_addr.tell(Cmd::Panic).unwrap();
    expect(
        &events,
        "restart scheduled",
        |e| matches!(e, SupervisionEvent::Restarting { backoff, .. } if *backoff >= Duration::from_secs(3600)),
    );
    // Requests are answered while the hour-long backoff runs.
    system.root().terminate_child("other").unwrap();
    let stats = system.stats();
    assert_eq!(stats.children[0].state, ChildState::Restarting);
    assert_eq!(stats.children[1].state, ChildState::Stopped);
    // And shutdown does not wait for the timer.
    let (done, finished) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || done.send(system.shutdown()).unwrap());
    let report = finished.recv_timeout(DEADLINE).expect("shutdown completes during the backoff").unwrap();
    assert!(report.is_clean());
}

#[test]
fn a_shutdown_handle_stops_the_tree_from_another_thread() {
    let (tx, _notes) = crossbeam_channel::unbounded();
    let system = Supervisor::builder().child(probe("w", &tx)).start().unwrap();
    let handle = system.shutdown_handle();
    std::thread::spawn(move || handle.shutdown());
    assert!(system.wait().unwrap().is_clean());
}
