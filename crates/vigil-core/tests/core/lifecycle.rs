//! Hooks, panics and messages across restarts.
use crate::support;

use std::sync::Arc;
use std::time::Duration;

use support::*;
use vigil_core::*;

#[test]
fn messages_queued_during_a_restart_are_delivered_to_the_next_incarnation() {
    let (tx, notes) = crossbeam_channel::unbounded();
    let spec = probe("w", &tx).backoff(Backoff::exponential(Duration::from_millis(50), Duration::from_millis(50)));
    let addr = spec.addr();
    let system = Supervisor::builder().child(spec).start().unwrap();
    let (release, blocked) = crossbeam_channel::bounded::<()>(0);
    addr.tell(Cmd::Block(blocked)).unwrap();
    addr.tell(Cmd::Panic).unwrap();
    for n in 0..5 {
        addr.tell(Cmd::Record(n)).unwrap();
    }
    drop(release);
    for n in 0..5 {
        expect(&notes, "queued message", |note| *note == Note::Handled("w", n));
    }
    assert_eq!(incarnation(&addr), 1);
    system.shutdown().unwrap();
}

#[test]
fn a_call_to_a_restarting_actor_is_answered_by_the_next_incarnation() {
    let (tx, _notes) = crossbeam_channel::unbounded();
    let spec = probe("w", &tx).backoff(Backoff::exponential(Duration::from_millis(100), Duration::from_millis(100)));
    let addr = spec.addr();
    let system = Supervisor::builder().child(spec).start().unwrap();
    let events = system.subscribe();
    addr.tell(Cmd::Panic).unwrap();
    expect(&events, "restart scheduled", |e| matches!(e, SupervisionEvent::Restarting { .. }));
    assert_eq!(addr.call(Cmd::Incarnation, DEADLINE), Ok(1));
    system.shutdown().unwrap();
}

#[test]
fn a_call_whose_handler_panics_fails_at_once_with_dropped() {
    struct Crash;
    impl Actor for Crash {
        type Msg = Reply<u32>;
        fn handle(&mut self, _reply: Reply<u32>, _: &mut Context<'_, Reply<u32>>) -> Result<(), BoxError> {
            panic!("crash while holding the reply");
        }
    }
    let spec = ChildSpec::worker("crash", || Crash);
    let addr = spec.addr();
    let system = Supervisor::builder().intensity(5, Duration::from_secs(60)).child(spec).start().unwrap();
    assert_eq!(addr.call(|r| r, Duration::from_secs(3600)), Err(CallError::Dropped));
    system.shutdown().unwrap();
}

#[test]
fn a_call_to_a_stopped_system_fails_at_once() {
    let (tx, _notes) = crossbeam_channel::unbounded();
    let spec = probe("w", &tx);
    let addr = spec.addr();
    Supervisor::builder().child(spec).start().unwrap().shutdown().unwrap();
    assert_eq!(addr.call(Cmd::Incarnation, Duration::from_secs(3600)), Err(CallError::Closed));
    assert!(matches!(addr.try_tell(Cmd::Record(1)), Err(TryTellError::Closed(_))));
}

#[test]
fn a_panic_in_handle_names_the_message_type_and_location() {
    let (tx, _notes) = crossbeam_channel::unbounded();
    let spec = probe("w", &tx);
    let addr = spec.addr();
    let system = Supervisor::builder().child(spec).start().unwrap();
    let events = system.subscribe();
    addr.tell(Cmd::Panic).unwrap();
    let exited = expect(&events, "exit", |e| matches!(e, SupervisionEvent::Exited { .. }));
    let SupervisionEvent::Exited { path, reason } = exited else { unreachable!() };
    assert_eq!(path, "root/w");
    match &reason {
        ExitReason::Panicked { hook, message, location, message_type } => {
            assert_eq!(*hook, Hook::Handle);
            assert_eq!(message, "w was told to panic");
            assert!(location.as_deref().is_some_and(|l| l.contains("support/mod.rs")), "{location:?}");
            assert!(message_type.is_some_and(|t| t.ends_with("support::Cmd")), "{message_type:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(reason.to_string().starts_with("panicked at "), "{reason}");
    system.shutdown().unwrap();
}

#[test]
fn a_panic_in_start_fails_the_tree_start_and_names_the_child() {
    let (tx, notes) = crossbeam_channel::unbounded();
    let script = Script { panic_on_start: Some(u64::MAX), ..Script::default() };
    let result =
        Supervisor::builder().child(probe("a", &tx)).child(probe_with("b", &tx, script)).child(probe("c", &tx)).start();
    let Err(StartError::Child { path, reason }) = result else { panic!("expected a start error") };
    assert_eq!(path, "root/b");
    assert!(
        matches!(&reason, ExitReason::Panicked { hook: Hook::Start, message, .. } if message == "b refuses to start")
    );
    // `a` was started, then stopped; `c` never started.
    let seen = drain(&notes);
    assert_eq!(seen[0], Note::Started("a", 0));
    assert!(matches!(&seen[1], Note::Stopped("a", why) if why == "shutdown"), "{seen:?}");
    assert!(!seen.iter().any(|n| matches!(n, Note::Started("c", _))), "{seen:?}");
}

#[test]
fn an_error_from_start_in_a_nested_supervisor_names_the_deepest_child() {
    let (tx, _notes) = crossbeam_channel::unbounded();
    let script = Script { fail_on_start_incarnations: Some(u64::MAX), ..Script::default() };
    let inner = Supervisor::builder().child(probe("ok", &tx)).child(probe_with("db", &tx, script));
    let result = Supervisor::builder().child(ChildSpec::supervisor("pool", inner)).start();
    let error = result.unwrap_err();
    assert_eq!(error.to_string(), "child root/pool/db failed to start: in the start hook: db cannot start yet");
}

#[test]
fn a_restart_whose_start_fails_counts_and_retries() {
    let (tx, notes) = crossbeam_channel::unbounded();
    // Incarnations 1 and 2 fail in `started`; 3 succeeds.
    let script = Script { fail_on_start_incarnations: Some(3), ..Script::default() };
    let builds = Counter::default();
    let b = builds.clone();
    let spec = ChildSpec::worker("w", move || {
        let n = b.bump();
        let script = if n == 1 { Script::default() } else { script.clone() };
        Probe { name: "w", notes: tx.clone(), script, incarnation: 0 }
    });
    let addr = spec.addr();
    let system = Supervisor::builder().intensity(5, Duration::from_secs(3600)).child(spec).start().unwrap();
    addr.tell(Cmd::Panic).unwrap();
    expect(&notes, "third restart", |n| *n == Note::Started("w", 3));
    wait_until("three restarts counted", || system.stats().restarts_total == 3);
    system.shutdown().unwrap();
}

#[test]
fn a_panic_in_stopped_is_reported_and_shutdown_still_completes() {
    let (tx, notes) = crossbeam_channel::unbounded();
    let script = Script { panic_in_stopped: true, ..Script::default() };
    let system = Supervisor::builder().child(probe_with("w", &tx, script)).start().unwrap();
    let events = system.subscribe();
    let report = system.shutdown().unwrap();
    assert!(report.is_clean());
    expect(&notes, "stopped ran", |n| matches!(n, Note::Stopped("w", _)));
    let exited = expect(&events, "exit", |e| matches!(e, SupervisionEvent::Exited { .. }));
    assert!(
        matches!(exited, SupervisionEvent::Exited { reason: ExitReason::Panicked { hook: Hook::Stopped, .. }, .. }),
        "{exited:?}"
    );
}

#[test]
fn a_panic_while_holding_a_parking_lot_lock_releases_it() {
    struct Holder(Arc<parking_lot::Mutex<u64>>);
    impl Actor for Holder {
        type Msg = bool;
        fn handle(&mut self, panic: bool, _: &mut Context<'_, bool>) -> Result<(), BoxError> {
            let mut guard = self.0.lock();
            *guard += 1;
            if panic {
                panic!("panic with the lock held");
            }
            Ok(())
        }
    }
    let shared = Arc::new(parking_lot::Mutex::new(0));
    let s = Arc::clone(&shared);
    let spec = ChildSpec::worker("holder", move || Holder(Arc::clone(&s)));
    let addr = spec.addr();
    let system = Supervisor::builder().child(spec).start().unwrap();
    let events = system.subscribe();
    addr.tell(true).unwrap();
    expect(&events, "restart", |e| matches!(e, SupervisionEvent::Started { incarnation: 1, .. }));
    // The guard was dropped during unwinding: the main thread and the next
    // incarnation can both take the lock (parking_lot does not poison).
    assert_eq!(*shared.try_lock_for(DEADLINE).expect("lock released"), 1);
    addr.tell(false).unwrap();
    wait_until("next incarnation takes the lock", || *shared.lock() == 2);
    system.shutdown().unwrap();
}

#[test]
fn a_receive_timeout_runs_periodic_work() {
    struct Ticker(crossbeam_channel::Sender<u64>, u64);
    impl Actor for Ticker {
        type Msg = ();
        fn started(&mut self, ctx: &mut Context<'_, ()>) -> Result<(), BoxError> {
            ctx.set_receive_timeout(Some(Duration::from_millis(5)));
            Ok(())
        }
        fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> {
            Ok(())
        }
        fn timeout(&mut self, _: &mut Context<'_, ()>) -> Result<(), BoxError> {
            self.1 += 1;
            let _ = self.0.send(self.1);
            Ok(())
        }
    }
    let (tx, ticks) = crossbeam_channel::unbounded();
    let system =
        Supervisor::builder().child(ChildSpec::worker("ticker", move || Ticker(tx.clone(), 0))).start().unwrap();
    expect(&ticks, "three ticks", |&n| n == 3);
    system.shutdown().unwrap();
}

#[test]
fn each_actor_runs_on_its_own_named_thread_with_its_stack_size() {
    struct WhoAmI;
    impl Actor for WhoAmI {
        type Msg = Reply<(Option<String>, std::thread::ThreadId)>;
        fn handle(&mut self, reply: Self::Msg, _: &mut Context<'_, Self::Msg>) -> Result<(), BoxError> {
            // Deep enough recursion to need more than a tiny stack, if the size was ignored.
            let _ = reply.send((std::thread::current().name().map(str::to_owned), std::thread::current().id()));
            Ok(())
        }
    }
    let a = ChildSpec::worker("alpha", || WhoAmI).stack_size(256 * 1024);
    let b = ChildSpec::worker("beta", || WhoAmI).stack_size(8 * 1024 * 1024);
    let (a_addr, b_addr) = (a.addr(), b.addr());
    let system = Supervisor::builder().child(a).child(b).start().unwrap();
    let (a_name, a_thread) = a_addr.call(|r| r, DEADLINE).unwrap();
    let (b_name, b_thread) = b_addr.call(|r| r, DEADLINE).unwrap();
    assert_eq!(a_name.as_deref(), Some("vigil:alpha"));
    assert_eq!(b_name.as_deref(), Some("vigil:beta"));
    assert_ne!(a_thread, b_thread);
    assert_ne!(a_thread, std::thread::current().id());
    system.shutdown().unwrap();
}

#[test]
fn a_restart_reuses_the_runner_thread() {
    enum Msg {
        Thread(Reply<std::thread::ThreadId>),
        Panic,
    }
    struct Here;
    impl Actor for Here {
        type Msg = Msg;
        fn handle(&mut self, msg: Msg, _: &mut Context<'_, Msg>) -> Result<(), BoxError> {
            match msg {
                Msg::Thread(reply) => {
                    let _ = reply.send(std::thread::current().id());
                }
                Msg::Panic => panic!("restart me"),
            }
            Ok(())
        }
    }
    let spec = ChildSpec::worker("here", || Here);
    let addr = spec.addr();
    let system = Supervisor::builder().intensity(10, Duration::from_secs(60)).child(spec).start().unwrap();
    let before = addr.call(Msg::Thread, DEADLINE).unwrap();
    for _ in 0..3 {
        addr.tell(Msg::Panic).unwrap();
    }
    let after = addr.call(Msg::Thread, DEADLINE).unwrap();
    wait_until("three restarts counted", || system.stats().restarts_total == 3);
    assert_eq!(before, after, "restarts in place reuse the runner thread");
    system.shutdown().unwrap();
}
