//! Hangs are failures too (issue 13): the per-child watchdog, and deadlock
//! detection for `call`.
//!
//! Every hang here is a handler blocked on a channel the test holds: real
//! threads, released (or not) by the test. Detection latency is measured by
//! the `hang_detection` bench, not asserted here; these tests assert what
//! happens, and that the reported hang lasted at least the timeout.
use crate::support;

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use support::*;
use vigil_core::*;

const HANG: Duration = Duration::from_millis(100);

fn hung(event: &SupervisionEvent) -> bool {
    matches!(event, SupervisionEvent::Hung { .. })
}

fn restarts(system: &System, path: &str) -> u64 {
    system.stats().find(path).expect("child").restarts_total
}

#[test]
fn a_blocked_handler_is_detected_replaced_and_the_next_message_served_by_the_new_incarnation() {
    let (tx, notes) = crossbeam_channel::unbounded();
    let spec = probe("w", &tx).hang_timeout(HANG);
    let addr = spec.addr();
    let system = Supervisor::builder().intensity(5, Duration::from_secs(60)).child(spec).start().unwrap();
    let events = system.subscribe();
    let (_never, blocked) = crossbeam_channel::bounded::<()>(0);
    addr.tell(Cmd::Block(blocked)).unwrap();
    addr.tell(Cmd::Record(7)).unwrap();

    let event = expect(&events, "a hang", hung);
    let SupervisionEvent::Hung { path, hook, message_type, elapsed, abandoned_threads } = event else { unreachable!() };
    assert_eq!((path.as_str(), hook, abandoned_threads), ("root/w", Hook::Handle, 1));
    assert!(message_type.is_some_and(|ty| ty.ends_with("Cmd")), "{message_type:?}");
    assert!(elapsed >= HANG, "declared hung after {elapsed:?}, before the timeout");
    expect(&events, "the replacement", started("root/w", 1));
    // The message queued behind the hung one is served by the replacement,
    // on a fresh thread, with the same mailbox.
    expect(&notes, "the queued message", |n| *n == Note::Handled("w", 7));
    assert_eq!(incarnation(&addr), 1);

    let stats = system.stats();
    let child = stats.find("root/w").unwrap();
    assert_eq!((child.state, child.restarts_total), (ChildState::Running, 1));
    assert!(matches!(child.last_exit, Some(ExitReason::Hung { hook: Hook::Handle, .. })), "{:?}", child.last_exit);
    assert_eq!((stats.hangs, stats.hangs_total, stats.late_returns), (1, 1, 0));
    assert_eq!(stats.abandoned_threads.len(), 1);
    assert!(stats.abandoned_threads[0].hung);
    assert_eq!(stats.abandoned_threads[0].path, "root/w");

    let report = system.shutdown().unwrap();
    assert_eq!(report.abandoned, vec!["root/w".to_owned()], "the stuck thread is reported, not hidden");
    assert!(!report.is_clean());
}

#[test]
fn the_old_thread_returning_later_changes_nothing() {
    let (tx, notes) = crossbeam_channel::unbounded();
    let spec = probe("w", &tx).hang_timeout(HANG);
    let addr = spec.addr();
    let system = Supervisor::builder().intensity(5, Duration::from_secs(60)).child(spec).start().unwrap();
    let events = system.subscribe();
    let (release, blocked) = crossbeam_channel::bounded::<()>(0);
    addr.tell(Cmd::Block(blocked)).unwrap();
    expect(&events, "the replacement", started("root/w", 1));
    assert_eq!(incarnation(&addr), 1, "the replacement answers");
    let before = system.stats();
    drain(&notes);

    // The hung hook returns now. Its thread must exit quietly.
    release.send(()).unwrap();
    wait_until("the late return", || system.stats().late_returns == 1);
    wait_until("the old thread to end", || system.stats().abandoned_threads.is_empty());

    // Nothing it could have done shows: no event, no note (its `stopped`
    // did not run), no restart, and it took nothing from the mailbox.
    for n in 0..20 {
        addr.tell(Cmd::Record(n)).unwrap();
    }
    for n in 0..20 {
        expect(&notes, "the replacement to handle every message", |note| *note == Note::Handled("w", n));
    }
    assert_eq!(incarnation(&addr), 1);
    assert_eq!(drain(&notes), Vec::new());
    assert_eq!(drain(&events), Vec::new());
    let after = system.stats();
    let (b, a) = (before.find("root/w").unwrap(), after.find("root/w").unwrap());
    assert_eq!((a.state, a.restarts_total, &a.last_exit), (b.state, b.restarts_total, &b.last_exit));
    assert_eq!((after.hangs, after.restarts_total), (before.hangs, before.restarts_total));
    assert!(system.shutdown().unwrap().is_clean(), "no thread left once it returned");
}

/// Works for `work` in steps, heartbeating between them, then answers.
struct Diligent {
    step: Duration,
}

impl Actor for Diligent {
    type Msg = (Duration, Reply<u64>);
    fn handle(&mut self, (work, reply): Self::Msg, ctx: &mut Context<'_, Self::Msg>) -> Result<(), BoxError> {
        let start = Instant::now();
        let (_tx, never) = crossbeam_channel::bounded::<()>(0);
        while start.elapsed() < work {
            ctx.heartbeat();
            let _ = never.recv_timeout(self.step); // one step of long work
        }
        let _ = reply.send(ctx.incarnation());
        Ok(())
    }
}

#[test]
fn a_heartbeating_long_handler_is_never_replaced() {
    let timeout = Duration::from_millis(300);
    let spec = ChildSpec::worker("diligent", || Diligent { step: Duration::from_millis(5) }).hang_timeout(timeout);
    let addr = spec.addr();
    let system = Supervisor::builder().intensity(5, Duration::from_secs(60)).child(spec).start().unwrap();
    let events = system.subscribe();
    // Five times the hang timeout, alive all along.
    assert_eq!(addr.call(|reply| (timeout * 5, reply), DEADLINE), Ok(0));
    assert_eq!(restarts(&system, "root/diligent"), 0);
    assert!(!drain(&events).iter().any(hung));
    assert_eq!(system.stats().hangs_total, 0);
    assert!(system.shutdown().unwrap().is_clean());
}

/// Holds the request it is given until `until` yields; answers `Ask` at once.
enum Stuck {
    Hold(Receiver<()>, Sender<()>, Reply<u64>),
    Ask(Reply<u64>),
}

struct Holder;

impl Actor for Holder {
    type Msg = Stuck;
    fn handle(&mut self, msg: Stuck, ctx: &mut Context<'_, Stuck>) -> Result<(), BoxError> {
        match msg {
            Stuck::Hold(until, holding, reply) => {
                let _ = holding.send(());
                let _ = until.recv();
                let _ = reply.send(u64::MAX);
            }
            Stuck::Ask(reply) => {
                let _ = reply.send(ctx.incarnation());
            }
        }
        Ok(())
    }
}

#[test]
fn a_call_in_flight_in_a_hung_hook_is_dropped_and_one_queued_behind_it_is_answered_by_the_replacement() {
    let spec = ChildSpec::worker("holder", || Holder).hang_timeout(HANG);
    let addr = spec.addr();
    let system = Supervisor::builder().intensity(5, Duration::from_secs(60)).child(spec).start().unwrap();
    let (release, until) = crossbeam_channel::bounded::<()>(0);
    let (holding, held) = crossbeam_channel::bounded::<()>(1);
    let in_flight = {
        let addr = addr.clone();
        std::thread::spawn(move || addr.call(|reply| Stuck::Hold(until, holding, reply), DEADLINE * 3))
    };
    held.recv_timeout(DEADLINE).expect("the handler holds the request");
    let queued = {
        let addr = addr.clone();
        std::thread::spawn(move || addr.call(Stuck::Ask, DEADLINE * 3))
    };
    // The in-flight request fails as soon as the watchdog replaces the hook,
    // not when the caller's timeout runs out; the queued one is served.
    assert_eq!(in_flight.join().unwrap(), Err(CallError::Dropped));
    assert_eq!(queued.join().unwrap(), Ok(1));
    // The hung hook's late answer goes nowhere.
    drop(release);
    wait_until("the late return", || system.stats().late_returns == 1);
    assert_eq!(addr.call(Stuck::Ask, DEADLINE), Ok(1));
    system.shutdown().unwrap();
}

/// Queues `n` messages that block their handler forever, then waits for
/// the root to give up. Gives back the senders that release the handlers.
fn block_until_the_root_gives_up(system: System, addr: &Addr<Cmd>, n: usize) -> (SystemError, Vec<Sender<()>>) {
    let mut releases = Vec::new();
    for _ in 0..n {
        let (release, blocked) = crossbeam_channel::bounded::<()>(0);
        releases.push(release);
        addr.tell(Cmd::Block(blocked)).unwrap();
    }
    (root_gave_up(system), releases)
}

#[test]
fn a_hang_storm_escalates() {
    let (tx, _notes) = crossbeam_channel::unbounded();
    let spec = probe("w", &tx).hang_timeout(Duration::from_millis(30));
    let addr = spec.addr();
    let system = Supervisor::builder().intensity(2, Duration::from_secs(60)).child(spec).start().unwrap();
    let (error, releases) = block_until_the_root_gives_up(system, &addr, 3);
    let ExitReason::Escalated { intensity, cause, .. } = &error.reason else { panic!("{error}") };
    assert_eq!(*intensity, 2);
    assert!(matches!(**cause, ExitReason::Hung { hook: Hook::Handle, .. }), "{cause}");
    assert_eq!(error.abandoned.len(), 3, "three hung threads, each reported: {:?}", error.abandoned);
    drop(releases);
}

#[test]
fn the_abandoned_thread_limit_holds() {
    let (tx, _notes) = crossbeam_channel::unbounded();
    let spec = probe("w", &tx).hang_timeout(Duration::from_millis(30));
    let addr = spec.addr();
    let system = Supervisor::builder()
        .intensity(100, Duration::from_secs(60))
        .max_abandoned_threads(2)
        .child(spec)
        .start()
        .unwrap();
    let events = system.subscribe();
    let (error, releases) = block_until_the_root_gives_up(system, &addr, 5);
    let ExitReason::AbandonedLimit { limit, child, cause, .. } = &error.reason else { panic!("{error}") };
    assert_eq!((*limit, child.as_str()), (2, "root/w"));
    assert!(matches!(**cause, ExitReason::Hung { .. }), "{cause}");
    // The third hang broke the limit: no fourth thread was leaked.
    assert_eq!(error.abandoned.len(), 3, "{:?}", error.abandoned);
    let counts: Vec<usize> = drain(&events)
        .iter()
        .filter_map(|e| match e {
            SupervisionEvent::Hung { abandoned_threads, .. } => Some(*abandoned_threads),
            _ => None,
        })
        .collect();
    assert_eq!(counts, vec![1, 2, 3]);
    drop(releases);
}

/// Calls down a chain of actors: each calls the next with the rest.
struct Link;

struct Chain(Vec<Addr<Chain>>, Reply<Result<(), CallError>>);

impl Actor for Link {
    type Msg = Chain;
    fn handle(&mut self, Chain(mut rest, reply): Chain, _: &mut Context<'_, Chain>) -> Result<(), BoxError> {
        let result = if rest.is_empty() {
            Ok(())
        } else {
            let next = rest.remove(0);
            next.call(|reply| Chain(rest, reply), DEADLINE).and_then(|inner| inner)
        };
        let _ = reply.send(result);
        Ok(())
    }
}

fn links(ids: &[&'static str]) -> (System, Vec<Addr<Chain>>) {
    let specs: Vec<_> = ids.iter().map(|&id| ChildSpec::worker(id, || Link)).collect();
    let addrs = specs.iter().map(WorkerSpec::addr).collect();
    let system = specs.into_iter().fold(Supervisor::builder(), |b, s| b.child(s)).start().unwrap();
    (system, addrs)
}

fn cycle(paths: &[&str]) -> Result<Result<(), CallError>, CallError> {
    Ok(Err(CallError::Deadlock { cycle: paths.iter().map(|p| (*p).to_owned()).collect() }))
}

#[test]
fn two_and_three_actor_call_cycles_fail_at_once_with_the_cycle_named() {
    let (system, addrs) = links(&["a", "b", "c"]);
    let [a, b, c] = [&addrs[0], &addrs[1], &addrs[2]];
    // The timeouts are far longer than the test's deadline: a `Timeout`
    // could not come back in time, only the deadlock error can.
    let long = DEADLINE * 10;
    // a calls b; b, inside its handler, calls a.
    assert_eq!(a.call(|r| Chain(vec![b.clone(), a.clone()], r), long), cycle(&["root/b", "root/a"]));
    // a calls b calls c calls a.
    let three = a.call(|r| Chain(vec![b.clone(), c.clone(), a.clone()], r), long);
    assert_eq!(three, cycle(&["root/c", "root/a", "root/b"]));
    // An actor calling itself is a cycle of one.
    assert_eq!(b.call(|r| Chain(vec![b.clone()], r), long), cycle(&["root/b"]));
    // A chain without a cycle, and the same actors again: the graph forgot
    // the calls that returned.
    assert_eq!(a.call(|r| Chain(vec![b.clone(), c.clone()], r), long), Ok(Ok(())));
    assert_eq!(c.call(|r| Chain(vec![b.clone(), a.clone()], r), long), Ok(Ok(())));
    let message = CallError::Deadlock { cycle: vec!["root/a".into(), "root/b".into()] }.to_string();
    assert_eq!(message, "the call would deadlock: root/a -> root/b -> root/a");
    system.shutdown().unwrap();
}

#[test]
fn a_zero_hang_timeout_is_refused_before_anything_starts() {
    let (tx, _notes) = crossbeam_channel::unbounded();
    let refused = Supervisor::builder().child(probe("w", &tx).hang_timeout(Duration::ZERO)).start().err();
    assert_eq!(
        refused.map(|e| e.to_string()),
        Some(StartError::Config(ConfigError::ZeroTimeout { child: "root/w".into(), which: "hang" }).to_string())
    );
}

/// A message whose `Drop` blocks until the test releases it (or drops the
/// release), after saying so. The supervisor runs that `Drop` on its own
/// thread when it closes the mailbox of a child that stopped for good.
struct Sticky {
    dropping: Sender<()>,
    release: Receiver<()>,
}

impl Drop for Sticky {
    fn drop(&mut self) {
        let _ = self.dropping.send(());
        let _ = self.release.recv();
    }
}

enum Jam {
    /// Holds the handler until the test lets go, so what follows queues.
    Gate(Receiver<()>),
    Stop,
    /// Never handled: it is queued behind `Stop`.
    Sticky(#[allow(dead_code)] Sticky),
}

struct Jammer;

impl Actor for Jammer {
    type Msg = Jam;
    fn handle(&mut self, msg: Jam, ctx: &mut Context<'_, Jam>) -> Result<(), BoxError> {
        match msg {
            Jam::Gate(until) => {
                let _ = until.recv();
            }
            Jam::Stop => ctx.stop(),
            Jam::Sticky(_) => {}
        }
        Ok(())
    }
}

/// `root` with a worker `other` and a nested supervisor `mid` (hang
/// timeout `HANG`) over a transient `Jammer` `w`, whose factory counts.
struct StuckTree {
    system: System,
    events: Receiver<SupervisionEvent>,
    notes: Receiver<Note>,
    builds: Counter,
    /// Dropping it lets the stuck `Drop` return.
    release: Sender<()>,
}

/// Gets `root/mid`'s loop stuck in a queued message's `Drop`, which it runs
/// when it closes the mailbox of `root/mid/w` after `w` stopped normally
/// (transient: kept, not restarted).
fn stuck_supervisor() -> StuckTree {
    stuck(|w, tx| {
        let mid = Supervisor::builder().hang_timeout(HANG).child(w);
        Supervisor::builder()
            .intensity(5, Duration::from_secs(60))
            .child(probe("other", tx))
            .child(ChildSpec::supervisor("mid", mid))
    })
}

/// Builds the tree around the transient `w` and gets the loop of `w`'s
/// supervisor stuck as [`stuck_supervisor`] says.
fn stuck(tree: impl FnOnce(ChildSpec, &Sender<Note>) -> SupervisorBuilder) -> StuckTree {
    let (tx, notes) = crossbeam_channel::unbounded();
    let builds = Counter::default();
    let counted = builds.clone();
    let w = ChildSpec::worker("w", move || {
        counted.bump();
        Jammer
    })
    .restart(Restart::Transient);
    let addr = w.addr();
    let system = tree(w.into(), &tx).start().unwrap();
    let events = system.subscribe();
    let (gate, until) = crossbeam_channel::bounded::<()>(0);
    let (dropping, dropped) = crossbeam_channel::bounded::<()>(1);
    let (release, stuck) = crossbeam_channel::bounded::<()>(0);
    addr.tell(Jam::Gate(until)).unwrap();
    addr.tell(Jam::Stop).unwrap();
    addr.tell(Jam::Sticky(Sticky { dropping, release: stuck })).unwrap();
    drop(gate);
    dropped.recv_timeout(DEADLINE).expect("the supervisor drops the queued message");
    StuckTree { system, events, notes, builds, release }
}

fn root_gave_up(system: System) -> SystemError {
    match system.wait_timeout(DEADLINE) {
        Err(Err(error)) => error,
        Err(Ok(_)) => panic!("the root did not give up"),
        Ok(report) => panic!("the root shut down: {report:?}"),
    }
}

#[test]
fn a_stuck_supervisor_is_reported_hung_and_escalates_to_the_root_instead_of_being_replaced() {
    let StuckTree { system, events, notes, builds, release } = stuck_supervisor();

    let event = expect(&events, "the supervisor's hang", hung);
    let SupervisionEvent::Hung { path, hook, message_type, elapsed, abandoned_threads } = event else { unreachable!() };
    assert_eq!((path.as_str(), hook, message_type, abandoned_threads), ("root/mid", Hook::Supervisor, None, 1));
    assert!(elapsed >= HANG, "declared hung after {elapsed:?}, before the timeout");
    // The root stops its other children in order and gives up with the
    // hung supervisor named, without waiting for it (its shutdown timeout
    // is infinite) and without replacing it.
    expect(&notes, "the root to stop its other child", |n| matches!(n, Note::Stopped("other", _)));
    let error = root_gave_up(system);
    let ExitReason::HungSupervisor { supervisor, cause } = &error.reason else { panic!("{error}") };
    assert_eq!(supervisor, "root/mid");
    assert!(matches!(**cause, ExitReason::Hung { hook: Hook::Supervisor, message_type: None, .. }), "{cause}");
    assert!(error.to_string().contains("root/mid"), "{error}");
    assert_eq!(error.abandoned, vec!["root/mid".to_owned()], "the stuck thread is listed");
    assert!(!drain(&events).iter().any(|e| matches!(e, SupervisionEvent::Started { .. })), "nothing restarted");
    assert_eq!(builds.get(), 1);
    drop(release);
}

#[test]
fn a_hung_supervisor_resuming_later_starts_stops_and_reports_nothing() {
    let StuckTree { system, events, notes: _notes, builds, release } = stuck_supervisor();
    expect(&events, "the supervisor's hang", hung);
    // The root gave up and stopped `other`: nothing of the tree is left to
    // publish anything but the hung supervisor.
    wait_until("the root to stop its other child", || {
        system.stats().find("root/other").is_some_and(|c| c.state == ChildState::Stopped)
    });
    let before = system.stats();
    drain(&events);

    release.send(()).unwrap();
    wait_until("the late return", || system.stats().late_returns == 1);
    wait_until("the hung thread to end", || system.stats().abandoned_threads.is_empty());

    // Resumed, it did not touch its rows (`w` still reads as it did when the
    // loop got stuck), published nothing and built no new child.
    let after = system.stats();
    let (b, a) = (before.find("root/mid/w").unwrap(), after.find("root/mid/w").unwrap());
    assert_eq!((a.state, a.restarts_total, &a.last_exit), (b.state, b.restarts_total, &b.last_exit));
    assert_eq!(drain(&events), Vec::new());
    assert_eq!(builds.get(), 1);
    assert_eq!((after.hangs_total, after.late_returns), (1, 1));
    let error = root_gave_up(system);
    assert!(matches!(&error.reason, ExitReason::HungSupervisor { supervisor, .. } if supervisor == "root/mid"));
}

/// Takes `slow` in `started` and again in `stopped`: real work, not a wait.
struct Slow {
    slow: Duration,
}

impl Actor for Slow {
    type Msg = Cmd;
    fn started(&mut self, _: &mut Context<'_, Cmd>) -> Result<(), BoxError> {
        std::thread::sleep(self.slow); // a slow start hook
        Ok(())
    }
    fn handle(&mut self, cmd: Cmd, _: &mut Context<'_, Cmd>) -> Result<(), BoxError> {
        match cmd {
            Cmd::Fail => Err("told to fail".into()),
            _ => Ok(()),
        }
    }
    fn stopped(&mut self, _: &ExitReason) {
        std::thread::sleep(self.slow); // a slow stop
    }
}

#[test]
fn a_supervisor_waiting_on_a_slow_child_within_its_timeouts_is_not_hung() {
    // Longer than the loop's own work could take on a loaded machine;
    // each wait is twice as long.
    let timeout = Duration::from_millis(300);
    let slow = timeout * 2;
    let spec = ChildSpec::worker("slow", move || Slow { slow }).start_timeout(DEADLINE).shutdown(DEADLINE);
    let addr = spec.addr();
    // One-for-all: the supervisor itself restarts the child, and waits.
    let mid = Supervisor::builder()
        .hang_timeout(timeout)
        .strategy(Strategy::OneForAll)
        .intensity(5, Duration::from_secs(60))
        .child(spec);
    // Its start waits for the slow start.
    let system = Supervisor::builder().child(ChildSpec::supervisor("mid", mid)).start().unwrap();
    let events = system.subscribe();
    // A restart waits for the slow start.
    addr.tell(Cmd::Fail).unwrap();
    expect(&events, "the restart", started("root/mid/slow", 1));
    assert_eq!(system.stats().hangs_total, 0);
    // The shutdown waits for the slow stop.
    let report = system.shutdown().unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(!drain(&events).iter().any(hung));
}

#[test]
fn a_zero_supervisor_hang_timeout_is_refused_before_anything_starts() {
    let (tx, _notes) = crossbeam_channel::unbounded();
    let mid = Supervisor::builder().hang_timeout(Duration::ZERO).child(probe("w", &tx));
    let refused = Supervisor::builder().child(ChildSpec::supervisor("mid", mid)).start().err();
    assert_eq!(
        refused.map(|e| e.to_string()),
        Some(StartError::Config(ConfigError::ZeroTimeout { child: "root/mid".into(), which: "hang" }).to_string())
    );
}

#[test]
fn a_hung_supervisor_deeper_down_takes_every_supervisor_above_it_to_the_root() {
    let StuckTree { system, events, notes, builds, release } = stuck(|w, tx| {
        let mid = Supervisor::builder().hang_timeout(HANG).child(w);
        let top = Supervisor::builder().intensity(5, Duration::from_secs(60)).child(ChildSpec::supervisor("mid", mid));
        Supervisor::builder()
            .intensity(5, Duration::from_secs(60))
            .child(probe("other", tx))
            .child(ChildSpec::supervisor("top", top))
    });
    let event = expect(&events, "the supervisor's hang", hung);
    assert!(matches!(&event, SupervisionEvent::Hung { path, .. } if path == "root/top/mid"), "{event:?}");
    expect(&notes, "the root to stop its other child", |n| matches!(n, Note::Stopped("other", _)));
    // `top` ended with the same reason, and the root did not restart it.
    let error = root_gave_up(system);
    assert!(
        matches!(&error.reason, ExitReason::HungSupervisor { supervisor, .. } if supervisor == "root/top/mid"),
        "{error}"
    );
    assert_eq!(error.abandoned, vec!["root/top/mid".to_owned()]);
    assert!(!drain(&events).iter().any(|e| matches!(e, SupervisionEvent::Started { .. })), "nothing restarted");
    assert_eq!(builds.get(), 1);
    drop(release);
}

#[test]
fn a_hung_root_ends_the_system_with_its_name() {
    let StuckTree { system, events, builds, release, .. } =
        stuck(|w, _| Supervisor::builder().hang_timeout(HANG).child(w));
    // `System::wait` hears the root's hang (main waits there).
    let error = root_gave_up(system);
    let event = expect(&events, "the root's hang", hung);
    assert!(matches!(&event, SupervisionEvent::Hung { path, hook: Hook::Supervisor, .. } if path == "root"));
    let ExitReason::HungSupervisor { supervisor, cause } = &error.reason else { panic!("{error}") };
    assert_eq!(supervisor, "root");
    assert!(matches!(**cause, ExitReason::Hung { hook: Hook::Supervisor, .. }), "{cause}");
    assert_eq!(error.abandoned, vec!["root".to_owned()]);
    assert_eq!(builds.get(), 1);
    drop(release);
}

#[test]
fn a_shutdown_does_not_wait_forever_on_a_supervisor_that_hangs_and_lists_it() {
    // Long enough that the shutdown request reaches the root first: the
    // root then waits on `mid`'s stop (no shutdown timeout) until the
    // watchdog declares `mid` hung.
    let timeout = HANG * 30;
    let StuckTree { system, events, builds, release, .. } = stuck(|w, tx| {
        let mid = Supervisor::builder().hang_timeout(timeout).child(w);
        Supervisor::builder().child(probe("other", tx)).child(ChildSpec::supervisor("mid", mid))
    });
    let report = system.shutdown().expect("a requested shutdown completes");
    assert_eq!(report.abandoned, vec!["root/mid".to_owned()], "{report:?}");
    assert!(!report.is_clean());
    let event = expect(&events, "the supervisor's hang", hung);
    assert!(
        matches!(&event, SupervisionEvent::Hung { path, elapsed, .. } if path == "root/mid" && *elapsed >= timeout)
    );
    assert_eq!(builds.get(), 1);
    drop(release);
}
