//! A supervisor spawns the next child's runner thread while the current child
//! starts, and queues each runner's quit before stopping it at shutdown
//! (issue 18, `tree_scale`). Neither may change what the user sees: the order
//! of hooks, where a failure is reported, the watchdog's verdicts, and that
//! every thread ends with its tree.
//!
//! Each test names its children uniquely, because the tests run in one
//! process and look for threads by name (`vigil:` and the child's name).
use crate::support;

use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use support::*;
use vigil_core::*;

/// An actor whose start hook says it began, then waits until the test
/// lets it go on, and fails if told so.
struct Gate {
    began: Sender<()>,
    go: Receiver<bool>,
}

impl Actor for Gate {
    type Msg = ();

    fn started(&mut self, _: &mut Context<'_, ()>) -> Result<(), BoxError> {
        let _ = self.began.send(());
        match self.go.recv_timeout(DEADLINE) {
            Ok(true) => Ok(()),
            Ok(false) => Err("told to fail".into()),
            Err(_) => Err("the test never answered".into()),
        }
    }

    fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> {
        Ok(())
    }
}

/// A gate child, and the handles to watch and release it.
fn gate(name: &'static str) -> (WorkerSpec<Gate>, Receiver<()>, Sender<bool>) {
    let (began_tx, began) = crossbeam_channel::unbounded();
    let (go, go_rx) = crossbeam_channel::unbounded();
    let spec = ChildSpec::worker(name, move || Gate { began: began_tx.clone(), go: go_rx.clone() });
    (spec, began, go)
}

/// A child whose factory counts its calls and records the order of starts.
fn counted(
    name: &'static str,
    made: &Counter,
    order: &std::sync::Arc<Mutex<Vec<&'static str>>>,
) -> impl Into<ChildSpec> {
    let (made, order) = (made.clone(), std::sync::Arc::clone(order));
    ChildSpec::worker(name, move || {
        made.bump();
        order.lock().unwrap().push(name);
        Idle
    })
}

struct Idle;

impl Actor for Idle {
    type Msg = ();
    fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> {
        Ok(())
    }
}

#[test]
fn the_next_childs_thread_exists_during_a_start_but_nothing_of_it_runs_until_its_turn() {
    let (first, began, go) = gate("ps1gate");
    let made = Counter::default();
    let order = std::sync::Arc::new(Mutex::new(Vec::new()));
    let builder = Supervisor::builder()
        .child(first)
        .child(counted("ps1next", &made, &order))
        .child(counted("ps1last", &made, &order));
    let starting = thread::spawn(move || builder.start());
    began.recv_timeout(DEADLINE).expect("the gate's start hook runs");
    // The gate's start hook is still running: the next child's runner thread
    // has been spawned, but its factory has not been called.
    wait_until("the next child's runner thread is spawned", || threads_named("vigil:ps1next") == 1);
    assert_eq!(made.get(), 0, "no hook of the next child runs before the gate's start returns");
    assert_eq!(threads_named("vigil:ps1last"), 0, "only the next child's runner is spawned ahead");
    go.send(true).unwrap();
    let system = starting.join().unwrap().expect("the tree starts");
    assert_eq!(*order.lock().unwrap(), ["ps1next", "ps1last"]);
    assert_eq!(made.get(), 2);
    assert!(system.shutdown().unwrap().is_clean());
    wait_until("every runner thread ends", || {
        threads_named("vigil:ps1gate") + threads_named("vigil:ps1next") + threads_named("vigil:ps1last") == 0
    });
}

#[test]
fn the_runner_spawned_for_a_child_that_never_starts_ends_with_the_failed_start() {
    let (first, began, go) = gate("ps2gate");
    let made = Counter::default();
    let order = std::sync::Arc::new(Mutex::new(Vec::new()));
    let builder = Supervisor::builder().child(first).child(counted("ps2next", &made, &order));
    let starting = thread::spawn(move || builder.start());
    began.recv_timeout(DEADLINE).expect("the gate's start hook runs");
    wait_until("the next child's runner thread is spawned", || threads_named("vigil:ps2next") == 1);
    go.send(false).unwrap();
    let error = starting.join().unwrap().expect_err("the gate's failed start fails the tree's");
    match error {
        StartError::Child { path, reason: ExitReason::Failed { hook, error, .. } } => {
            assert_eq!((path.as_str(), hook, error.as_str()), ("root/ps2gate", Hook::Start, "told to fail"));
        }
        other => panic!("expected the gate's start to fail the tree, got {other:?}"),
    }
    assert_eq!(made.get(), 0, "the next child never started");
    wait_until("its runner thread ends", || threads_named("vigil:ps2next") == 0);
}

#[test]
fn a_runner_that_cannot_be_spawned_fails_its_own_childs_start_not_the_one_before() {
    let (tx, notes) = crossbeam_channel::unbounded();
    // No system can give a thread half the address space.
    let huge = probe("ps3huge", &tx).stack_size(usize::MAX / 2);
    let error = Supervisor::builder().child(probe("ps3first", &tx)).child(huge).start().unwrap_err();
    match error {
        StartError::Child { path, reason: ExitReason::Spawn { error } } => {
            assert_eq!(path, "root/ps3huge");
            assert!(!error.is_empty());
        }
        other => panic!("expected root/ps3huge's spawn to fail, got {other:?}"),
    }
    // The child before it started, then stopped with the failed tree.
    expect(&notes, "ps3first starts", |n| *n == Note::Started("ps3first", 0));
    expect(&notes, "ps3first stops", |n| matches!(n, Note::Stopped("ps3first", _)));
    wait_until("ps3first's thread ends", || threads_named("vigil:ps3first") == 0);
}

#[test]
fn an_idle_runner_spawned_ahead_is_not_declared_hung() {
    let (tx, notes) = crossbeam_channel::unbounded();
    let (first, began, go) = gate("ps4gate");
    // The next child's runner waits for its turn far longer than its hang
    // timeout; waiting is not hanging.
    let watched = probe("ps4next", &tx).hang_timeout(Duration::from_millis(30));
    let builder = Supervisor::builder().child(first).child(watched);
    let starting = thread::spawn(move || builder.start());
    began.recv_timeout(DEADLINE).expect("the gate's start hook runs");
    wait_until("the next child's runner thread is spawned", || threads_named("vigil:ps4next") == 1);
    // Several hang timeouts pass while that runner idles. A wait on a
    // channel that nobody sends on, with a deadline, not a sleep that
    // waits for something to happen.
    let (_never, idle) = crossbeam_channel::bounded::<()>(0);
    let _ = idle.recv_timeout(Duration::from_millis(200));
    go.send(true).unwrap();
    let system = starting.join().unwrap().expect("the tree starts");
    expect(&notes, "ps4next starts once", |n| *n == Note::Started("ps4next", 0));
    let stats = system.stats();
    assert_eq!(stats.hangs_total, 0, "nothing was declared hung");
    let next = stats.children.iter().find(|c| c.id == "ps4next").expect("ps4next is a child");
    assert_eq!((next.state, next.restarts_total), (ChildState::Running, 0));
    assert!(system.shutdown().unwrap().is_clean());
}

#[test]
fn every_runner_of_a_nested_tree_ends_at_shutdown_each_child_after_the_one_started_after_it() {
    let (tx, notes) = crossbeam_channel::unbounded();
    let names: [[&'static str; 3]; 2] = [["ps5a0", "ps5a1", "ps5a2"], ["ps5b0", "ps5b1", "ps5b2"]];
    let sups = ["ps5sa", "ps5sb"];
    let root = Supervisor::builder().children(sups.iter().zip(names).map(|(sup, workers)| {
        let nested = Supervisor::builder().children(workers.map(|w| probe(w, &tx)));
        ChildSpec::supervisor(*sup, nested)
    }));
    let system = root.start().unwrap();
    let all: Vec<&str> = names.iter().flatten().copied().collect();
    let started: Vec<&str> = drain(&notes)
        .into_iter()
        .filter_map(|n| match n {
            Note::Started(name, 0) => Some(name),
            _ => None,
        })
        .collect();
    assert_eq!(started, all);
    assert!(system.shutdown().unwrap().is_clean());
    let stopped: Vec<&str> = stopped_for_shutdown(&notes);
    let reversed: Vec<&str> = all.iter().rev().copied().collect();
    assert_eq!(stopped, reversed);
    let threads = || all.iter().chain(&sups).map(|name| threads_named(&format!("vigil:{name}"))).sum::<usize>();
    wait_until("every runner thread ends", || threads() == 0);
}
