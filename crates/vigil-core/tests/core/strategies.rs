//! Every strategy and every restart type, with real threads and real panics.
use crate::support;

use std::time::Duration;

use support::*;
use vigil_core::*;

fn three(strategy: Strategy, notes: &crossbeam_channel::Sender<Note>) -> (SupervisorBuilder, [Addr<Cmd>; 3]) {
    let (a, b, c) = (probe("a", notes), probe("b", notes), probe("c", notes));
    let addrs = [a.addr(), b.addr(), c.addr()];
    let builder =
        Supervisor::builder().strategy(strategy).intensity(10, Duration::from_secs(60)).child(a).child(b).child(c);
    (builder, addrs)
}

fn lifecycle(notes: &crossbeam_channel::Receiver<Note>, until: Note) -> Vec<Note> {
    let mut seen = Vec::new();
    expect(notes, &format!("{until:?}"), |n| {
        seen.push(n.clone());
        *n == until
    });
    seen.into_iter().filter(|n| !matches!(n, Note::Handled(..))).collect()
}

/// The starts and stops, in order, as "start b 1" and "stop c".
fn order(seen: &[Note]) -> Vec<String> {
    seen.iter()
        .filter_map(|n| match n {
            Note::Started(name, i) => Some(format!("start {name} {i}")),
            Note::Stopped(name, _) => Some(format!("stop {name}")),
            Note::Handled(..) => None,
        })
        .collect()
}

#[test]
fn one_for_one_restarts_only_the_failed_child() {
    let (tx, notes) = crossbeam_channel::unbounded();
    let (builder, [a, b, c]) = three(Strategy::OneForOne, &tx);
    let system = builder.start().unwrap();
    drain(&notes);
    b.tell(Cmd::Panic).unwrap();
    let seen = lifecycle(&notes, Note::Started("b", 1));
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(matches!(&seen[0], Note::Stopped("b", why) if why.contains("b was told to panic")), "{seen:?}");
    assert_eq!((incarnation(&a), incarnation(&b), incarnation(&c)), (0, 1, 0));
    system.shutdown().unwrap();
}

#[test]
fn one_for_all_stops_the_others_in_reverse_and_restarts_all_in_order() {
    let (tx, notes) = crossbeam_channel::unbounded();
    let (builder, [a, b, c]) = three(Strategy::OneForAll, &tx);
    let system = builder.start().unwrap();
    drain(&notes);
    b.tell(Cmd::Panic).unwrap();
    let seen = lifecycle(&notes, Note::Started("c", 1));
    assert_eq!(order(&seen), ["stop b", "stop c", "stop a", "start a 1", "start b 1", "start c 1"]);
    assert_eq!((incarnation(&a), incarnation(&b), incarnation(&c)), (1, 1, 1));
    // Siblings stopped by the strategy do not count: one restart in the window.
    assert_eq!(system.stats().restarts_in_window, 1);
    system.shutdown().unwrap();
}

#[test]
fn rest_for_one_restarts_the_failed_child_and_those_started_after_it() {
    let (tx, notes) = crossbeam_channel::unbounded();
    let (builder, [a, b, c]) = three(Strategy::RestForOne, &tx);
    let system = builder.start().unwrap();
    drain(&notes);
    b.tell(Cmd::Panic).unwrap();
    let seen = lifecycle(&notes, Note::Started("c", 1));
    assert_eq!(order(&seen), ["stop b", "stop c", "start b 1", "start c 1"]);
    assert_eq!((incarnation(&a), incarnation(&b), incarnation(&c)), (0, 1, 1));
    system.shutdown().unwrap();
}

#[test]
fn permanent_children_restart_even_after_a_normal_exit() {
    let (tx, notes) = crossbeam_channel::unbounded();
    let spec = probe("p", &tx).restart(Restart::Permanent);
    let addr = spec.addr();
    let system = Supervisor::builder().child(spec).start().unwrap();
    addr.tell(Cmd::Stop).unwrap();
    expect(&notes, "p restarted", |n| *n == Note::Started("p", 1));
    wait_until("normal exit recorded", || system.stats().children[0].last_exit == Some(ExitReason::Normal));
    system.shutdown().unwrap();
}

#[test]
fn transient_children_restart_only_after_an_abnormal_exit() {
    let (tx, notes) = crossbeam_channel::unbounded();
    let spec = probe("t", &tx).restart(Restart::Transient);
    let addr = spec.addr();
    let system = Supervisor::builder().intensity(5, Duration::from_secs(60)).child(spec).start().unwrap();
    addr.tell(Cmd::Fail).unwrap();
    expect(&notes, "t restarted after Err", |n| *n == Note::Started("t", 1));
    addr.tell(Cmd::Stop).unwrap();
    expect(&notes, "t stopped normally", |n| matches!(n, Note::Stopped("t", why) if why == "normal"));
    wait_until("t is stopped", || system.stats().children[0].state == ChildState::Stopped);
    // A stopped child's address refuses messages at once, and a call fails at once.
    assert_eq!(addr.tell(Cmd::Record(1)).map_err(|e| e.to_string()), Err("sending to a stopped actor".to_owned()));
    assert_eq!(addr.call(Cmd::Incarnation, Duration::from_secs(60)), Err(CallError::Closed));
    // A normal exit of a transient child does not count toward the intensity.
    assert_eq!(system.stats().restarts_total, 1);
    // It can be restarted through the API, and then takes messages again.
    system.root().restart_child("t").unwrap();
    assert_eq!(incarnation(&addr), 2);
    system.shutdown().unwrap();
}

#[test]
fn temporary_children_are_never_restarted_and_never_count() {
    let (tx, notes) = crossbeam_channel::unbounded();
    let temp = probe("temp", &tx).restart(Restart::Temporary);
    let temp_addr = temp.addr();
    let keep = probe("keep", &tx);
    let system = Supervisor::builder().child(keep).child(temp).start().unwrap();
    temp_addr.tell(Cmd::Panic).unwrap();
    wait_until("temp removed", || system.root().count_children().specs == 1);
    assert_eq!(temp_addr.call(Cmd::Incarnation, Duration::from_secs(60)), Err(CallError::Closed));
    let stats = system.stats();
    assert_eq!(stats.restarts_total, 0);
    assert_eq!(stats.children[0].id, "keep");
    assert!(!drain(&notes).contains(&Note::Started("temp", 1)));
    system.shutdown().unwrap();
}
