//! Issue 10: the holes in the promise that an adversarial user found in
//! vigil-core. Each test is named after what it protects, and each one failed
//! (or hung, or aborted the process) before its fix.
use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use support::*;
use vigil_core::*;

/// Runs `f` on another thread and gives its result, or panics if it does not
/// return within the deadline: a hang fails the test instead of hanging it.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(DEADLINE).unwrap_or_else(|_| panic!("{what} did not return within {DEADLINE:?}"))
}

fn exited(path: &'static str) -> impl FnMut(&SupervisionEvent) -> bool {
    move |e| matches!(e, SupervisionEvent::Exited { path: p, .. } if p == path)
}

/// A value whose `Drop` panics while `armed` is set.
struct Bomb(&'static str, Arc<AtomicBool>);

impl Drop for Bomb {
    fn drop(&mut self) {
        if self.1.load(Ordering::SeqCst) {
            panic!("{} exploded in drop", self.0);
        }
    }
}

/// An actor whose `Drop` panics; `Fail` ends the incarnation.
struct DropPanics {
    _bomb: Bomb,
}

enum Msg {
    Fail,
    Ping(Reply<()>),
}

impl Actor for DropPanics {
    type Msg = Msg;
    fn handle(&mut self, msg: Msg, _: &mut Context<'_, Msg>) -> Result<(), BoxError> {
        match msg {
            Msg::Fail => Err("told to fail".into()),
            Msg::Ping(reply) => {
                let _ = reply.send(());
                Ok(())
            }
        }
    }
}

// ---- 1. A panic outside a hook still reaches the supervisor ----

#[test]
fn a_panic_in_an_actors_drop_reaches_the_supervisor() {
    let armed = Arc::new(AtomicBool::new(true));
    let spec = ChildSpec::worker("w", {
        let armed = Arc::clone(&armed);
        move || DropPanics { _bomb: Bomb("actor", Arc::clone(&armed)) }
    });
    let addr = spec.addr();
    let system = Supervisor::builder().intensity(5, Duration::from_secs(60)).child(spec).start().unwrap();
    let events = system.subscribe();
    addr.tell(Msg::Fail).unwrap();
    let restarted = expect(
        &events,
        "the restart after a drop panic",
        |e| matches!(e, SupervisionEvent::Restarting { path, .. } if path == "root/w"),
    );
    // The handler's error is the cause; the drop panic is logged beside it.
    assert!(
        matches!(
            &restarted,
            SupervisionEvent::Restarting { reason: ExitReason::Failed { hook: Hook::Handle, .. }, .. }
        ),
        "{restarted:?}"
    );
    assert_eq!(addr.call(Msg::Ping, DEADLINE), Ok(()));

    // Shutdown drops the last incarnation, whose drop panics too.
    let report = within("shutdown", move || system.shutdown());
    assert!(report.unwrap().is_clean());
}

#[test]
fn a_drop_panic_after_a_clean_stop_is_the_exit_reason() {
    struct Quits(#[allow(dead_code)] Bomb);
    impl Actor for Quits {
        type Msg = ();
        fn handle(&mut self, _: (), ctx: &mut Context<'_, ()>) -> Result<(), BoxError> {
            ctx.stop();
            Ok(())
        }
    }
    let armed = Arc::new(AtomicBool::new(true));
    let spec = ChildSpec::worker("q", {
        let armed = Arc::clone(&armed);
        move || Quits(Bomb("quits", Arc::clone(&armed)))
    })
    .restart(Restart::Transient);
    let addr = spec.addr();
    let system = Supervisor::builder().intensity(5, Duration::from_secs(60)).child(spec).start().unwrap();
    let events = system.subscribe();
    addr.tell(()).unwrap();
    let exit = expect(&events, "the exit of q", exited("root/q"));
    match exit {
        SupervisionEvent::Exited { reason: ExitReason::Panicked { hook: Hook::Drop, message, .. }, .. } => {
            assert_eq!(message, "quits exploded in drop");
        }
        other => panic!("expected a drop panic, got {other:?}"),
    }
    armed.store(false, Ordering::SeqCst);
    expect(&events, "q restarted", started("root/q", 1));
    system.shutdown().unwrap();
}

#[test]
fn a_panic_payload_whose_drop_panics_reaches_the_supervisor() {
    struct Thrower(Arc<AtomicBool>);
    impl Actor for Thrower {
        type Msg = Msg;
        fn handle(&mut self, msg: Msg, _: &mut Context<'_, Msg>) -> Result<(), BoxError> {
            match msg {
                Msg::Fail => std::panic::panic_any(Bomb("payload", Arc::clone(&self.0))),
                Msg::Ping(reply) => {
                    let _ = reply.send(());
                    Ok(())
                }
            }
        }
    }
    let armed = Arc::new(AtomicBool::new(true));
    let spec = ChildSpec::worker("t", {
        let armed = Arc::clone(&armed);
        move || Thrower(Arc::clone(&armed))
    });
    let addr = spec.addr();
    let system = Supervisor::builder().intensity(5, Duration::from_secs(60)).child(spec).start().unwrap();
    let events = system.subscribe();
    addr.tell(Msg::Fail).unwrap();
    let exit = expect(&events, "the exit of t", exited("root/t"));
    assert!(
        matches!(&exit, SupervisionEvent::Exited { reason: ExitReason::Panicked { hook: Hook::Handle, .. }, .. }),
        "{exit:?}"
    );
    assert_eq!(addr.call(Msg::Ping, DEADLINE), Ok(()));
    within("shutdown", move || system.shutdown()).unwrap();
}

/// An error whose `Display` or `source()` misbehaves.
#[derive(Debug)]
enum Nasty {
    DisplayPanics,
    SourcePanics,
    /// `source()` returns itself: an endless chain.
    Loop,
}

impl std::fmt::Display for Nasty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Nasty::DisplayPanics => panic!("Display of the error panicked"),
            Nasty::SourcePanics => f.write_str("source panics"),
            Nasty::Loop => f.write_str("loop"),
        }
    }
}

impl std::error::Error for Nasty {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Nasty::DisplayPanics => None,
            Nasty::SourcePanics => panic!("source() of the error panicked"),
            Nasty::Loop => Some(self),
        }
    }
}

/// A tree whose child `c` builds fine once; its next start fails with
/// `error` from the factory (`in_started == false`) or from `started`.
fn failing_restart(error: fn() -> Nasty, in_started: bool) -> (System, Receiver<SupervisionEvent>) {
    struct Starter {
        fail: Option<Nasty>,
    }
    impl Actor for Starter {
        type Msg = Msg;
        fn started(&mut self, _: &mut Context<'_, Msg>) -> Result<(), BoxError> {
            match self.fail.take() {
                Some(e) => Err(Box::new(e)),
                None => Ok(()),
            }
        }
        fn handle(&mut self, _: Msg, _: &mut Context<'_, Msg>) -> Result<(), BoxError> {
            Err("told to fail".into())
        }
    }
    let builds = Counter::default();
    let spec = ChildSpec::try_worker("c", move || -> Result<Starter, Nasty> {
        if builds.bump() == 1 {
            return Ok(Starter { fail: None });
        }
        if in_started { Ok(Starter { fail: Some(error()) }) } else { Err(error()) }
    })
    // A runner that died silently would hold the supervisor for this long.
    .start_timeout(Duration::from_secs(3600));
    let addr = spec.addr();
    let system = Supervisor::builder().intensity(1, Duration::from_secs(3600)).child(spec).start().unwrap();
    let events = system.subscribe();
    addr.tell(Msg::Fail).unwrap();
    (system, events)
}

fn expect_gave_up_with(system: System, events: &Receiver<SupervisionEvent>, hook: Hook, text: &str) {
    let gave_up = expect(events, "the supervisor gives up", |e| matches!(e, SupervisionEvent::GaveUp { .. }));
    let SupervisionEvent::GaveUp { reason, .. } = gave_up else { unreachable!() };
    let bottom = reason.chain().last().copied().cloned().unwrap();
    match &bottom {
        ExitReason::Failed { hook: h, error, .. } | ExitReason::Panicked { hook: h, message: error, .. } => {
            assert_eq!(*h, hook, "{bottom:?}");
            assert!(error.contains(text), "{error:?} should contain {text:?}");
            assert!(error.len() <= 16 * 1024, "the reason is bounded: {} bytes", error.len());
        }
        other => panic!("unexpected cause {other:?}"),
    }
    let outcome = within("wait", move || system.wait());
    assert!(outcome.is_err());
}

#[test]
fn a_factory_error_whose_display_panics_reaches_the_supervisor() {
    let (system, events) = failing_restart(|| Nasty::DisplayPanics, false);
    expect_gave_up_with(system, &events, Hook::Factory, "Display of the error panicked");
}

#[test]
fn a_start_error_whose_source_panics_reaches_the_supervisor() {
    let (system, events) = failing_restart(|| Nasty::SourcePanics, true);
    expect_gave_up_with(system, &events, Hook::Start, "source() of the error panicked");
}

#[test]
fn a_start_error_whose_source_chain_loops_is_cut_short() {
    let (system, events) = failing_restart(|| Nasty::Loop, true);
    expect_gave_up_with(system, &events, Hook::Start, "loop: loop: loop");
}

// ---- 2. A supervisor's own code cannot die silently ----

#[test]
fn a_backoff_of_duration_max_does_not_hang_shutdown() {
    let (tx, _notes) = crossbeam_channel::unbounded();
    let spec = probe("w", &tx).backoff(Backoff::exponential(Duration::MAX, Duration::MAX));
    let addr = spec.addr();
    let nested = Supervisor::builder().intensity(5, Duration::from_secs(60)).child(spec);
    let system = Supervisor::builder().child(ChildSpec::supervisor("inner", nested)).start().unwrap();
    let events = system.subscribe();
    addr.tell(Cmd::Panic).unwrap();
    let restarting = expect(
        &events,
        "a restart scheduled forever",
        |e| matches!(e, SupervisionEvent::Restarting { path, .. } if path == "root/inner/w"),
    );
    assert!(matches!(restarting, SupervisionEvent::Restarting { backoff: Duration::MAX, .. }), "{restarting:?}");
    let stats = system.stats();
    assert_eq!(stats.find("root/inner").unwrap().state, ChildState::Running, "the nested supervisor lives");
    let report = within("shutdown", move || system.shutdown()).unwrap();
    assert!(report.is_clean());
}

/// A worker that stops itself on any message; its factory closure holds a
/// `Bomb`, so removing the (temporary) child panics on the supervisor's
/// thread when the spec is dropped there.
struct Quitter;
impl Actor for Quitter {
    type Msg = ();
    fn handle(&mut self, _: (), ctx: &mut Context<'_, ()>) -> Result<(), BoxError> {
        ctx.stop();
        Ok(())
    }
}

fn quitter_with_bomb(armed: &Arc<AtomicBool>) -> WorkerSpec<Quitter> {
    let bomb = Bomb("the spec", Arc::clone(armed));
    ChildSpec::worker("quitter", move || {
        let _ = &bomb;
        Quitter
    })
    .restart(Restart::Temporary)
}

#[test]
fn a_panicking_supervisor_reports_to_its_parent() {
    let armed = Arc::new(AtomicBool::new(true));
    let pool = Supervisor::dynamic();
    let pool_ref = pool.handle();
    let system = Supervisor::builder()
        .intensity(5, Duration::from_secs(60))
        .child(ChildSpec::supervisor("pool", pool))
        .start()
        .unwrap();
    let events = system.subscribe();
    let spec = quitter_with_bomb(&armed);
    let addr = spec.addr();
    pool_ref.start_child(spec).unwrap();
    addr.tell(()).unwrap();
    let exit = expect(&events, "the pool's exit", exited("root/pool"));
    match exit {
        SupervisionEvent::Exited { reason: ExitReason::Panicked { hook: Hook::Supervisor, message, .. }, .. } => {
            assert_eq!(message, "the spec exploded in drop");
        }
        other => panic!("expected a supervisor panic, got {other:?}"),
    }
    armed.store(false, Ordering::SeqCst);
    expect(&events, "the pool restarted", started("root/pool", 1));
    assert_eq!(pool_ref.count_children().specs, 0);
    within("shutdown", move || system.shutdown()).unwrap();
}

#[test]
fn a_failed_root_stops_its_workers_and_wait_returns_an_error() {
    let armed = Arc::new(AtomicBool::new(true));
    let (tx, notes) = crossbeam_channel::unbounded();
    let system = Supervisor::builder().child(probe("keeper", &tx)).start().unwrap();
    let spec = quitter_with_bomb(&armed);
    let addr = spec.addr();
    system.root().start_child(spec).unwrap();
    addr.tell(()).unwrap();
    let outcome = within("wait", move || system.wait());
    let error = outcome.expect_err("the root failed");
    assert!(
        matches!(&error.reason, ExitReason::Panicked { hook: Hook::Supervisor, message, .. } if message == "the spec exploded in drop"),
        "{error:?}"
    );
    // The worker was stopped, not left running unsupervised.
    expect(&notes, "keeper stopped", |n| matches!(n, Note::Stopped("keeper", _)));
    armed.store(false, Ordering::SeqCst);
}

// ---- 3. No restart during shutdown ----

/// Blocks in its handler until told, noticing the stop request first.
struct Staller {
    seen_stop: Sender<()>,
    release: Receiver<()>,
}

impl Actor for Staller {
    type Msg = ();
    fn handle(&mut self, _: (), ctx: &mut Context<'_, ()>) -> Result<(), BoxError> {
        wait_until("the stop request", || ctx.stop_requested());
        let _ = self.seen_stop.send(());
        let _ = self.release.recv();
        Ok(())
    }
}

#[test]
fn no_restart_during_shutdown() {
    let (tx, notes) = crossbeam_channel::unbounded();
    let (seen_tx, seen_stop) = crossbeam_channel::unbounded();
    let (release_tx, release) = crossbeam_channel::unbounded::<()>();
    let a = probe("a", &tx);
    let a_addr = a.addr();
    let staller =
        ChildSpec::worker("staller", move || Staller { seen_stop: seen_tx.clone(), release: release.clone() })
            .shutdown(Duration::from_secs(3600));
    let staller_addr = staller.addr();
    let system = Supervisor::builder().intensity(5, Duration::from_secs(60)).child(a).child(staller).start().unwrap();
    let events = system.subscribe();
    staller_addr.tell(()).unwrap();
    let shutdown = std::thread::spawn(move || system.shutdown());
    // The supervisor is now stopping `staller` (the last child) first.
    seen_stop.recv_timeout(DEADLINE).expect("staller sees the stop request");
    a_addr.tell(Cmd::Panic).unwrap();
    expect(&notes, "a's stopped hook", |n| matches!(n, Note::Stopped("a", _)));
    release_tx.send(()).unwrap();
    let report = within("shutdown", move || shutdown.join().unwrap()).unwrap();
    assert!(report.is_clean());
    let notes = drain(&notes);
    assert!(!notes.contains(&Note::Started("a", 1)), "a was restarted during shutdown: {notes:?}");
    let restarts: Vec<_> =
        drain(&events).into_iter().filter(|e| matches!(e, SupervisionEvent::Restarting { .. })).collect();
    assert!(restarts.is_empty(), "{restarts:?}");
}

// ---- 4. A restart loop never blocks the supervisor ----

#[test]
fn a_restart_loop_does_not_block_the_supervisor() {
    struct Db;
    impl Actor for Db {
        type Msg = ();
        fn started(&mut self, _: &mut Context<'_, ()>) -> Result<(), BoxError> {
            Ok(())
        }
        fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> {
            Err("connection lost".into())
        }
    }
    let db_down = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicU64::new(0));
    let spec = ChildSpec::try_worker("db", {
        let (db_down, attempts) = (Arc::clone(&db_down), Arc::clone(&attempts));
        move || -> Result<Db, BoxError> {
            if db_down.load(Ordering::SeqCst) {
                attempts.fetch_add(1, Ordering::SeqCst);
                // A connect attempt that takes a while to fail.
                std::thread::sleep(Duration::from_millis(20));
                return Err("database unreachable".into());
            }
            Ok(Db)
        }
    });
    let db = spec.addr();
    let builder = Supervisor::builder().intensity(1_000_000, Duration::from_secs(3600)).child(spec);
    let root = builder.handle().timeout(Duration::from_secs(10));
    let system = builder.start().unwrap();
    db_down.store(true, Ordering::SeqCst);
    db.tell(()).unwrap();
    wait_until("a few failed restarts", || attempts.load(Ordering::SeqCst) >= 3);

    // Requests are served between attempts.
    let (tx, _notes) = crossbeam_channel::unbounded();
    root.start_child(probe("other", &tx)).expect("start_child is served during the restart loop");
    assert_eq!(root.count_children().active, 1, "only `other` runs");
    root.terminate_child("other").expect("terminate_child is served");
    let before = attempts.load(Ordering::SeqCst);
    wait_until("the loop goes on", || attempts.load(Ordering::SeqCst) > before);

    // And shutdown does not wait for the database.
    let report = within("shutdown", move || system.shutdown()).unwrap();
    assert!(report.is_clean());
}

// ---- 5. rest_for_one retries from the child that failed to start ----

/// `a`, `b`, `c` under `strategy`; `b`'s second build fails once.
fn group_with_flaky_b(strategy: Strategy) -> (System, Addr<Cmd>, Receiver<Note>) {
    let (tx, notes) = crossbeam_channel::unbounded();
    let a = probe("a", &tx);
    let a_addr = a.addr();
    let builds = Counter::default();
    let b_notes = tx.clone();
    let b = ChildSpec::try_worker("b", move || -> Result<Probe, BoxError> {
        if builds.bump() == 2 {
            return Err("b is not ready yet".into());
        }
        Ok(Probe { name: "b", notes: b_notes.clone(), script: Script::default(), incarnation: 0 })
    });
    let c = probe("c", &tx);
    let system = Supervisor::builder()
        .strategy(strategy)
        .intensity(10, Duration::from_secs(60))
        .child(a)
        .child(b)
        .child(c)
        .start()
        .unwrap();
    for name in ["a", "b", "c"] {
        expect(&notes, "first start", |n| *n == Note::Started(name, 0));
    }
    (system, a_addr, notes)
}

#[test]
fn rest_for_one_retries_from_the_child_that_failed_to_start() {
    let (system, a, notes) = group_with_flaky_b(Strategy::RestForOne);
    a.tell(Cmd::Panic).unwrap();
    expect(&notes, "c restarted after b's retry", |n| *n == Note::Started("c", 1));
    let seen: Vec<Note> = drain(&notes);
    assert!(!seen.contains(&Note::Started("a", 2)), "a was restarted again: {seen:?}");
    assert_eq!(incarnation(&a), 1);
    system.shutdown().unwrap();
}

#[test]
fn one_for_all_retries_the_whole_group() {
    let (system, a, notes) = group_with_flaky_b(Strategy::OneForAll);
    a.tell(Cmd::Panic).unwrap();
    expect(&notes, "a restarted for the retry", |n| *n == Note::Started("a", 2));
    expect(&notes, "c restarted", |n| *n == Note::Started("c", 1));
    system.shutdown().unwrap();
}

// ---- 6. Terminating a child of a dynamic supervisor removes it ----

#[test]
fn terminating_a_dynamic_child_removes_it() {
    let (tx, _notes) = crossbeam_channel::unbounded();
    let pool = Supervisor::dynamic();
    let pool_ref = pool.handle();
    let system = Supervisor::builder().child(ChildSpec::supervisor("pool", pool)).start().unwrap();
    let spec = probe("w", &tx);
    let addr = spec.addr();
    pool_ref.start_child(spec).unwrap();
    pool_ref.terminate_child("w").unwrap();
    assert_eq!(pool_ref.which_children().len(), 0, "{:?}", pool_ref.which_children());
    assert_eq!(pool_ref.count_children().specs, 0);
    assert!(matches!(addr.tell(Cmd::Record(1)), Err(TellError::Closed(_))));
    assert_eq!(pool_ref.restart_child("w"), Err(ControlError::NotFound("w".to_owned())));
    // The id is free again.
    pool_ref.start_child(probe("w", &tx)).unwrap();
    system.shutdown().unwrap();
}

// ---- 7. A dead tree refuses messages ----

#[test]
fn a_dead_tree_refuses_messages() {
    let (tx, _notes) = crossbeam_channel::unbounded();
    let spec = probe("w", &tx);
    let addr = spec.addr();
    let inner_spec = probe("x", &tx);
    let inner_addr = inner_spec.addr();
    let inner = Supervisor::builder().child(inner_spec);
    let builder = Supervisor::builder().child(spec).child(ChildSpec::supervisor("inner", inner));
    let kept_builder = builder.clone();
    let root_ref = builder.handle();
    let system = builder.start().unwrap();
    system.shutdown().unwrap();
    for addr in [&addr, &inner_addr] {
        assert!(matches!(addr.tell(Cmd::Record(1)), Err(TellError::Closed(_))));
        let started = Instant::now();
        assert_eq!(addr.call(Cmd::Incarnation, Duration::from_secs(10)), Err(CallError::Closed));
        assert!(started.elapsed() < Duration::from_secs(5), "the call failed at once");
    }
    drop((kept_builder, root_ref));
}

// ---- 8. Requests to a terminated nested supervisor fail at once ----

#[test]
fn requests_to_a_terminated_nested_supervisor_fail_at_once() {
    let (tx, _notes) = crossbeam_channel::unbounded();
    let pool = Supervisor::dynamic();
    let pool_ref = pool.handle().timeout(Duration::from_secs(10));
    let system = Supervisor::builder().child(ChildSpec::supervisor("pool", pool)).start().unwrap();
    system.root().terminate_child("pool").unwrap();
    assert_eq!(pool_ref.start_child(probe("late", &tx)), Err(ControlError::SupervisorGone));
    system.root().restart_child("pool").unwrap();
    // The refused request is not executed by the next incarnation.
    assert_eq!(pool_ref.count_children().specs, 0);
    pool_ref.start_child(probe("w", &tx)).unwrap();
    assert_eq!(pool_ref.count_children().specs, 1);
    system.shutdown().unwrap();
}

// ---- 9. Re-entrant calls are safe or refused at once ----

#[test]
fn an_actor_terminating_itself_is_not_abandoned() {
    struct SelfStopper {
        sup: SupervisorRef,
        answers: Sender<Result<(), ControlError>>,
    }
    impl Actor for SelfStopper {
        type Msg = ();
        fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> {
            let _ = self.answers.send(self.sup.terminate_child("me"));
            Ok(())
        }
    }
    let builder = Supervisor::builder();
    let sup = builder.handle();
    let (answers_tx, answers) = crossbeam_channel::unbounded();
    let spec = ChildSpec::worker("me", move || SelfStopper { sup: sup.clone(), answers: answers_tx.clone() })
        .shutdown(Duration::from_secs(3600));
    let addr = spec.addr();
    let system = builder.child(spec).start().unwrap();
    let events = system.subscribe();
    addr.tell(()).unwrap();
    assert_eq!(answers.recv_timeout(DEADLINE), Ok(Ok(())));
    expect(&events, "me stopped", exited("root/me"));
    wait_until("me is listed as stopped", || system.stats().find("root/me").unwrap().state == ChildState::Stopped);
    let report = within("shutdown", move || system.shutdown()).unwrap();
    assert!(report.is_clean(), "{report:?}");
    let abandoned: Vec<_> =
        drain(&events).into_iter().filter(|e| matches!(e, SupervisionEvent::Abandoned { .. })).collect();
    assert!(abandoned.is_empty(), "{abandoned:?}");
}

#[test]
fn start_child_from_inside_started_is_refused_at_once() {
    struct Spawner {
        sup: SupervisorRef,
        answers: Sender<Result<StartOutcome, ControlError>>,
    }
    impl Actor for Spawner {
        type Msg = ();
        fn started(&mut self, _: &mut Context<'_, ()>) -> Result<(), BoxError> {
            let (tx, _notes) = crossbeam_channel::unbounded();
            let _ = self.answers.send(self.sup.start_child(probe("late", &tx)));
            Ok(())
        }
        fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> {
            Ok(())
        }
    }
    let builder = Supervisor::builder();
    let sup = builder.handle();
    let (answers_tx, answers) = crossbeam_channel::unbounded();
    let system = builder
        .child(ChildSpec::worker("spawner", move || Spawner { sup: sup.clone(), answers: answers_tx.clone() }))
        .start()
        .expect("the tree starts");
    let answer = answers.recv_timeout(DEADLINE).unwrap();
    assert_eq!(answer, Err(ControlError::WouldDeadlock { caller: "root/spawner".to_owned() }));
    assert_eq!(system.root().count_children().specs, 1, "nothing was started behind the caller's back");
    system.shutdown().unwrap();
}

#[test]
fn a_call_to_self_fails_at_once() {
    enum Me {
        CallYourself,
        Echo(Reply<u32>),
    }
    struct Narcissus(Sender<Result<u32, CallError>>);
    impl Actor for Narcissus {
        type Msg = Me;
        fn handle(&mut self, msg: Me, ctx: &mut Context<'_, Me>) -> Result<(), BoxError> {
            match msg {
                Me::CallYourself => {
                    let _ = self.0.send(ctx.addr().call(Me::Echo, Duration::from_secs(10)));
                }
                Me::Echo(reply) => {
                    let _ = reply.send(7);
                }
            }
            Ok(())
        }
    }
    let (tx, answers) = crossbeam_channel::unbounded();
    let spec = ChildSpec::worker("n", move || Narcissus(tx.clone()));
    let addr = spec.addr();
    let system = Supervisor::builder().child(spec).start().unwrap();
    addr.tell(Me::CallYourself).unwrap();
    // A cycle of one: the caller alone, named by its path.
    assert_eq!(answers.recv_timeout(DEADLINE), Ok(Err(CallError::Deadlock { cycle: vec!["root/n".to_owned()] })));
    // A call from elsewhere still works.
    assert_eq!(addr.call(Me::Echo, DEADLINE), Ok(7));
    system.shutdown().unwrap();
}

// ---- 10. Bounded memory under any restart storm ----

#[test]
fn an_unread_subscription_stays_bounded() {
    let (tx, _notes) = crossbeam_channel::unbounded();
    let spec = probe("storm", &tx);
    let addr = spec.addr();
    let system = Supervisor::builder().intensity(100_000, Duration::from_secs(3600)).child(spec).start().unwrap();
    let unread = system.subscribe();
    // Each restart publishes three events: three times the capacity.
    let restarts = SUBSCRIPTION_CAPACITY as u64;
    for _ in 0..restarts {
        addr.tell(Cmd::Fail).unwrap();
    }
    wait_until("the storm has passed", || system.stats().restarts_total >= restarts);
    assert!(unread.len() <= SUBSCRIPTION_CAPACITY, "{} events queued", unread.len());
    let mut received = drain(&unread).len() as u64;
    assert_eq!(received, SUBSCRIPTION_CAPACITY as u64);

    // Once there is room again, the subscriber is told how many it missed:
    // every event is either received or counted.
    addr.tell(Cmd::Fail).unwrap();
    let mut missed = 0;
    loop {
        match unread.recv_timeout(DEADLINE).expect("events after the storm") {
            SupervisionEvent::Lagged { missed: m } => missed += m,
            SupervisionEvent::Started { incarnation, .. } if incarnation == restarts + 1 => {
                received += 1;
                break;
            }
            _ => received += 1,
        }
    }
    assert!(missed > 0);
    assert_eq!(received + missed, 3 * (restarts + 1));
    system.shutdown().unwrap();
}

#[test]
fn an_intensity_that_would_store_unbounded_restart_times_is_refused() {
    let (tx, _notes) = crossbeam_channel::unbounded();
    let outcome = Supervisor::builder().intensity(u32::MAX, Duration::from_secs(3600)).child(probe("w", &tx)).start();
    match outcome {
        Err(StartError::Config(ConfigError::IntensityTooLarge { supervisor, intensity, max })) => {
            assert_eq!((supervisor.as_str(), intensity, max), ("root", u32::MAX, MAX_INTENSITY));
        }
        other => panic!("expected IntensityTooLarge, got {other:?}"),
    }
    // The largest accepted intensity works.
    let system =
        Supervisor::builder().intensity(MAX_INTENSITY, Duration::from_secs(3600)).child(probe("w", &tx)).start();
    system.unwrap().shutdown().unwrap();
}

// ---- 11. Capacities that abort allocation are refused ----

#[test]
fn a_mailbox_that_would_allocate_gigabytes_is_refused() {
    struct Big;
    impl Actor for Big {
        type Msg = [u8; 1024];
        fn handle(&mut self, _: [u8; 1024], _: &mut Context<'_, [u8; 1024]>) -> Result<(), BoxError> {
            Ok(())
        }
    }
    let spec = ChildSpec::worker("big", || Big).mailbox(MAX_MAILBOX);
    let addr = spec.addr(); // allocates nothing large
    assert!(addr.capacity() < 1024, "a refused mailbox is a placeholder until start refuses it");
    match Supervisor::builder().child(spec).start() {
        Err(StartError::Config(ConfigError::MailboxTooLarge { child, capacity, bytes, max_bytes })) => {
            assert_eq!((child.as_str(), capacity, max_bytes), ("root/big", MAX_MAILBOX, MAX_MAILBOX_BYTES));
            assert!(bytes > MAX_MAILBOX_BYTES);
        }
        other => panic!("expected MailboxTooLarge, got {other:?}"),
    }
    // The same count of small messages is fine.
    let (tx, _notes) = crossbeam_channel::unbounded();
    let small = probe("small", &tx).mailbox(1 << 16);
    Supervisor::builder().child(small).start().unwrap().shutdown().unwrap();
}

// ---- 12. ShutdownReport::abandoned lists only threads still running ----

fn thread_running(name: &str) -> bool {
    threads_named(name) > 0
}

#[test]
fn shutdown_report_lists_only_threads_still_running() {
    let (tx, notes) = crossbeam_channel::unbounded();
    let spec = probe("hangs", &tx).shutdown(Duration::from_millis(50));
    let addr = spec.addr();
    let system = Supervisor::builder().child(spec).start().unwrap();
    let (release, hang) = crossbeam_channel::bounded::<()>(0);
    addr.tell(Cmd::Hang(hang)).unwrap();
    system.root().terminate_child("hangs").unwrap();
    assert!(thread_running("vigil:hangs"), "the abandoned thread still runs");
    drop(release);
    expect(&notes, "the abandoned incarnation ends", |n| matches!(n, Note::Stopped("hangs", _)));
    wait_until("the abandoned thread ends", || !thread_running("vigil:hangs"));
    let outcome = system.shutdown();
    assert_eq!(outcome.as_ref().map(|r| r.abandoned.clone()), Ok(Vec::new()));
    assert_eq!(exit_code(&outcome), std::process::ExitCode::SUCCESS);
}

#[test]
fn shutdown_report_still_lists_a_thread_that_runs_on() {
    let (tx, _notes) = crossbeam_channel::unbounded();
    let spec = probe("stuck", &tx).shutdown(Duration::from_millis(50));
    let addr = spec.addr();
    let system = Supervisor::builder().child(spec).start().unwrap();
    let (release, hang) = crossbeam_channel::bounded::<()>(0);
    addr.tell(Cmd::Hang(hang)).unwrap();
    let report = system.shutdown().unwrap();
    assert_eq!(report.abandoned, vec!["root/stuck".to_owned()]);
    drop(release);
}
