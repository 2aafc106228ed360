//! OTP's lifecycle features, ported from `lib/stdlib/test/supervisor_SUITE.erl`:
//! significant children and `auto_shutdown` (the `significant` group), a
//! start that answers ignore (`sup_start_ignore_*`), a child that ends
//! itself with reason shutdown (`*_shutdown`), and `get_childspec`
//! (`sup_start_map`). (`lifecycle.rs` holds the hooks' own tests.)
//!
//! Where the suite waits a second to see that a supervisor did *not* exit,
//! these tests ask the supervisor something instead ([`alive`]): it answers
//! requests in order, so an answer after the exit was handled proves it
//! still runs, without a timed wait.
use crate::support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;
use vigil_core::*;

/// What the test tells a job.
enum Op {
    /// `ctx.stop()`: reason normal.
    Normal,
    /// `ctx.shutdown()`: reason shutdown.
    Shutdown,
    /// An `Err`: an abnormal exit.
    Crash,
}

/// A job that answers ignore at start while `ignore` is set, and records
/// its `stopped` hooks in `log`.
struct Job {
    id: &'static str,
    ignore: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<&'static str>>>,
}

impl Actor for Job {
    type Msg = Op;
    fn started(&mut self, ctx: &mut Context<'_, Op>) -> Result<(), BoxError> {
        if self.ignore.load(Ordering::SeqCst) {
            ctx.ignore();
        }
        Ok(())
    }
    fn handle(&mut self, op: Op, ctx: &mut Context<'_, Op>) -> Result<(), BoxError> {
        match op {
            Op::Normal => ctx.stop(),
            Op::Shutdown => ctx.shutdown(),
            Op::Crash => return Err(format!("{} was told to crash", self.id).into()),
        }
        Ok(())
    }
    fn stopped(&mut self, _: &ExitReason) {
        self.log.lock().unwrap().push(self.id);
    }
}

/// Builds jobs that share one stop log.
#[derive(Default)]
struct Jobs {
    log: Arc<Mutex<Vec<&'static str>>>,
}

impl Jobs {
    fn job(&self, id: &'static str, restart: Restart, significant: bool) -> WorkerSpec<Job> {
        self.switchable(id, restart, significant, &Arc::new(AtomicBool::new(false)))
    }

    fn ignoring(&self, id: &'static str, restart: Restart) -> WorkerSpec<Job> {
        self.switchable(id, restart, false, &Arc::new(AtomicBool::new(true)))
    }

    fn switchable(
        &self,
        id: &'static str,
        restart: Restart,
        significant: bool,
        ignore: &Arc<AtomicBool>,
    ) -> WorkerSpec<Job> {
        let (log, ignore) = (Arc::clone(&self.log), Arc::clone(ignore));
        ChildSpec::worker(id, move || Job { id, ignore: Arc::clone(&ignore), log: Arc::clone(&log) })
            .restart(restart)
            .significant(significant)
    }

    fn stopped(&self) -> Vec<&'static str> {
        self.log.lock().unwrap().clone()
    }
}

/// Whether the supervisor behind `sup` still runs: a request it answers in
/// order, after every exit it had been told of.
fn alive(sup: &SupervisorRef) -> bool {
    match sup.terminate_child("no-such-child") {
        Err(ControlError::NotFound(_)) => true,
        Err(ControlError::SupervisorGone) => false,
        other => panic!("unexpected answer {other:?}"),
    }
}

fn child(sup: &SupervisorRef, id: &str) -> Option<ChildStats> {
    sup.which_children().into_iter().find(|c| c.id == id)
}

fn state(sup: &SupervisorRef, id: &str) -> Option<ChildState> {
    child(sup, id).map(|c| c.state)
}

/// Waits until child `id` is stopped for good (or removed, when it is not kept).
fn wait_ended(sup: &SupervisorRef, id: &str) {
    wait_until(&format!("{id} ended"), || {
        !matches!(state(sup, id), Some(ChildState::Running | ChildState::Starting | ChildState::Restarting))
    });
}

/// Waits until child `id` has been restarted `n` times and runs again.
fn wait_restarted(sup: &SupervisorRef, id: &str, n: u64) {
    wait_until(&format!("{id} restarted"), || {
        child(sup, id).is_some_and(|c| c.restarts_total == n && c.state == ChildState::Running)
    });
}

/// Waits for the system to end by itself, as after a requested shutdown.
fn ends_by_itself(system: System) -> ShutdownReport {
    match system.wait_timeout(DEADLINE) {
        Ok(report) => report,
        Err(Ok(_)) => panic!("the tree did not shut itself down"),
        Err(Err(error)) => panic!("the tree failed instead of shutting down: {error}"),
    }
}

const MODES: [AutoShutdown; 3] = [AutoShutdown::Never, AutoShutdown::AnySignificant, AutoShutdown::AllSignificant];

// ---- significant children and auto_shutdown ----

#[test]
fn nonsignificant_exits_never_trigger_auto_shutdown() {
    // nonsignificant_temporary and nonsignificant_transient, in every mode.
    for mode in MODES {
        let jobs = Jobs::default();
        let (temporary, transient) =
            (jobs.job("temp", Restart::Temporary, false), jobs.job("trans", Restart::Transient, false));
        let (temp, trans) = (temporary.addr(), transient.addr());
        let system = Supervisor::builder()
            .intensity(5, Duration::from_secs(60))
            .auto_shutdown(mode)
            .child(jobs.job("keep", Restart::Permanent, false))
            .child(temporary)
            .child(transient)
            .start()
            .unwrap();
        let root = system.root().clone();
        // Terminated through the supervisor.
        root.terminate_child("trans").unwrap();
        assert!(alive(&root), "{mode:?}");
        root.restart_child("trans").unwrap();
        // Abnormal: the transient child is restarted, the temporary removed.
        trans.tell(Op::Crash).unwrap();
        wait_restarted(&root, "trans", 1);
        temp.tell(Op::Crash).unwrap();
        wait_ended(&root, "temp");
        assert!(alive(&root), "{mode:?}");
        // Normal.
        trans.tell(Op::Normal).unwrap();
        wait_ended(&root, "trans");
        assert!(alive(&root), "{mode:?}");
        assert_eq!(root.count_children(), ChildCounts { specs: 2, active: 1, supervisors: 0, workers: 2 });
        system.shutdown().unwrap();
    }
}

/// The suite's tree: `child1` and `child2` significant, `child3` not, all
/// `restart`; gives back the addresses of the two significant ones.
fn suite_tree(jobs: &Jobs, restart: Restart, mode: AutoShutdown) -> (System, Addr<Op>, Addr<Op>) {
    let (one, two) = (jobs.job("child1", restart, true), jobs.job("child2", restart, true));
    let (first, second) = (one.addr(), two.addr());
    let system = Supervisor::builder()
        .intensity(5, Duration::from_secs(60))
        .auto_shutdown(mode)
        .child(one)
        .child(two)
        .child(jobs.job("child3", restart, false))
        .start()
        .unwrap();
    (system, first, second)
}

/// all_significant: the end of `child1` does not shut the tree down, the end
/// of `child2` (by `last`), the last significant child, does. Gives back the
/// order in which the children stopped.
fn the_last_significant_end_triggers(restart: Restart, last: Op) -> Vec<&'static str> {
    let jobs = Jobs::default();
    let (system, first, second) = suite_tree(&jobs, restart, AutoShutdown::AllSignificant);
    let root = system.root().clone();
    first.tell(Op::Normal).unwrap();
    wait_ended(&root, "child1");
    assert!(alive(&root));
    second.tell(last).unwrap();
    ends_by_itself(system);
    jobs.stopped()
}

#[test]
fn significant_temporary_children_trigger_on_any_exit() {
    // significant_temporary. Terminating one through the supervisor does not
    // trigger auto_shutdown ...
    let jobs = Jobs::default();
    let (system, _, _) = suite_tree(&jobs, Restart::Temporary, AutoShutdown::AnySignificant);
    let root = system.root().clone();
    root.terminate_child("child1").unwrap();
    assert!(alive(&root));
    assert_eq!(root.count_children().active, 2);
    system.shutdown().unwrap();

    // ... a crash or a normal exit does: every other child is stopped, in
    // reverse start order, and the supervisor exits with shutdown.
    for op in [Op::Crash, Op::Normal] {
        let jobs = Jobs::default();
        let (system, first, _) = suite_tree(&jobs, Restart::Temporary, AutoShutdown::AnySignificant);
        first.tell(op).unwrap();
        assert!(ends_by_itself(system).is_clean());
        assert_eq!(jobs.stopped(), ["child1", "child3", "child2"]);
    }

    // all_significant: the first significant exit does not, the last does.
    assert_eq!(the_last_significant_end_triggers(Restart::Temporary, Op::Crash), ["child1", "child2", "child3"]);
}

#[test]
fn significant_transient_children_trigger_only_when_they_end() {
    // significant_transient, with any_significant.
    let jobs = Jobs::default();
    let (system, first, _) = suite_tree(&jobs, Restart::Transient, AutoShutdown::AnySignificant);
    let root = system.root().clone();
    let events = system.subscribe();
    // Terminated through the supervisor: no.
    root.terminate_child("child1").unwrap();
    assert!(alive(&root));
    root.restart_child("child1").unwrap();
    // An abnormal exit restarts it: no.
    first.tell(Op::Crash).unwrap();
    wait_restarted(&root, "child1", 1);
    assert!(alive(&root));
    expect(&events, "the restart", |e| matches!(e, SupervisionEvent::Restarting { path, .. } if path == "root/child1"));
    // A normal exit ends it: yes.
    first.tell(Op::Normal).unwrap();
    assert!(ends_by_itself(system).is_clean());
    assert_eq!(jobs.stopped(), ["child1", "child1", "child1", "child3", "child2"]);

    // all_significant: the last significant child to end triggers it; a
    // self-shutdown is a normal end too.
    assert_eq!(the_last_significant_end_triggers(Restart::Transient, Op::Shutdown), ["child1", "child2", "child3"]);
}

#[test]
fn a_dynamic_supervisor_shuts_down_when_its_significant_children_end() {
    // significant_simple: any_significant, then all_significant.
    let jobs = Jobs::default();
    let system = Supervisor::dynamic().auto_shutdown(AutoShutdown::AnySignificant).start().unwrap();
    let (one, two) = (jobs.job("child1", Restart::Temporary, true), jobs.job("child2", Restart::Temporary, true));
    let first = one.addr();
    assert_eq!(system.root().start_child(one), Ok(StartOutcome::Running));
    system.root().start_child(two).unwrap();
    first.tell(Op::Normal).unwrap();
    ends_by_itself(system);
    assert_eq!(jobs.stopped(), ["child1", "child2"]);

    let jobs = Jobs::default();
    let system = Supervisor::dynamic().auto_shutdown(AutoShutdown::AllSignificant).start().unwrap();
    let (one, two) = (jobs.job("child1", Restart::Temporary, true), jobs.job("child2", Restart::Temporary, true));
    let (first, second) = (one.addr(), two.addr());
    system.root().start_child(one).unwrap();
    system.root().start_child(two).unwrap();
    first.tell(Op::Normal).unwrap();
    let root = system.root().clone();
    wait_ended(&root, "child1");
    assert!(alive(&root));
    second.tell(Op::Normal).unwrap();
    ends_by_itself(system);
}

#[test]
fn significant_children_stopped_by_a_siblings_restart_do_not_trigger() {
    // significant_bystander: a non-significant sibling is killed, every
    // strategy restarts whom it restarts, and nothing shuts down.
    for strategy in [Strategy::OneForOne, Strategy::OneForAll, Strategy::RestForOne] {
        for mode in [AutoShutdown::AnySignificant, AutoShutdown::AllSignificant] {
            let jobs = Jobs::default();
            let middle = jobs.job("child2", Restart::Transient, false);
            let addr = middle.addr();
            let system = Supervisor::builder()
                .strategy(strategy)
                .intensity(5, Duration::from_secs(60))
                .auto_shutdown(mode)
                .child(jobs.job("child1", Restart::Transient, true))
                .child(middle)
                .child(jobs.job("child3", Restart::Transient, true))
                .start()
                .unwrap();
            let root = system.root().clone();
            addr.tell(Op::Crash).unwrap();
            wait_restarted(&root, "child2", 1);
            wait_until("every child runs again", || root.count_children().active == 3);
            assert!(alive(&root), "{strategy:?} {mode:?}");
            system.shutdown().unwrap();
        }
    }
}

/// A: `other` (permanent) then B (transient, `significant`), with
/// any_significant; B: worker C (transient, significant), with
/// any_significant. Gives back C's address.
fn escalation_tree(jobs: &Jobs, significant: bool) -> (System, Addr<Op>) {
    let c = jobs.job("c", Restart::Transient, true);
    let addr = c.addr();
    let b = Supervisor::builder().auto_shutdown(AutoShutdown::AnySignificant).child(c);
    let system = Supervisor::builder()
        .auto_shutdown(AutoShutdown::AnySignificant)
        .child(jobs.job("other", Restart::Permanent, false))
        .child(ChildSpec::supervisor("b", b).restart(Restart::Transient).significant(significant))
        .start()
        .unwrap();
    (system, addr)
}

#[test]
fn auto_shutdown_escalates_through_significant_supervisors() {
    // significant_escalation: C ends, B (significant) shuts down, and A with it.
    let jobs = Jobs::default();
    let (system, c) = escalation_tree(&jobs, true);
    c.tell(Op::Normal).unwrap();
    assert!(ends_by_itself(system).is_clean());
    assert_eq!(jobs.stopped(), ["c", "other"]);

    // B not significant: B shuts down with reason shutdown, which its parent
    // sees as a normal exit of a transient child: A stays up.
    let jobs = Jobs::default();
    let (system, c) = escalation_tree(&jobs, false);
    let root = system.root().clone();
    c.tell(Op::Normal).unwrap();
    wait_ended(&root, "b");
    let b = child(&root, "b").unwrap();
    assert_eq!((b.state, b.last_exit, b.restarts_total), (ChildState::Stopped, Some(ExitReason::Shutdown), 0));
    assert!(alive(&root));
    system.shutdown().unwrap();
    assert_eq!(jobs.stopped(), ["c", "other"]);
}

#[test]
fn bad_combinations_of_significant_and_auto_shutdown_are_refused() {
    // child_specs_map's bad_combination cases, at start and at start_child.
    let jobs = Jobs::default();
    let refused = Supervisor::builder().child(jobs.job("w", Restart::Transient, true)).start().unwrap_err();
    assert_eq!(refused, StartError::Config(ConfigError::SignificantWithoutAutoShutdown { child: "root/w".into() }));
    // `never` is checked first, as OTP.
    let refused = Supervisor::builder().child(jobs.job("w", Restart::Permanent, true)).start().unwrap_err();
    assert_eq!(refused, StartError::Config(ConfigError::SignificantWithoutAutoShutdown { child: "root/w".into() }));
    for mode in [AutoShutdown::AnySignificant, AutoShutdown::AllSignificant] {
        let refused = Supervisor::builder()
            .auto_shutdown(mode)
            .child(jobs.job("w", Restart::Permanent, true))
            .start()
            .unwrap_err();
        assert_eq!(refused, StartError::Config(ConfigError::SignificantPermanent { child: "root/w".into() }));
        // A permanent significant supervisor, nested: the same rule.
        let nested = Supervisor::builder().child(jobs.job("x", Restart::Permanent, false));
        let refused = Supervisor::builder()
            .auto_shutdown(mode)
            .child(ChildSpec::supervisor("sup", nested).significant(true))
            .start()
            .unwrap_err();
        assert_eq!(refused, StartError::Config(ConfigError::SignificantPermanent { child: "root/sup".into() }));
    }
    // At run time, static and dynamic alike (significant_upgrade_never_any's first step).
    let pool = Supervisor::dynamic();
    let pool_ref = pool.handle();
    let system = Supervisor::builder()
        .child(jobs.job("w", Restart::Permanent, false))
        .child(ChildSpec::supervisor("pool", pool))
        .start()
        .unwrap();
    assert_eq!(
        system.root().start_child(jobs.job("s", Restart::Transient, true)),
        Err(ControlError::Config(ConfigError::SignificantWithoutAutoShutdown { child: "root/s".into() }))
    );
    assert_eq!(
        pool_ref.start_child(jobs.job("s", Restart::Temporary, true)),
        Err(ControlError::Config(ConfigError::SignificantWithoutAutoShutdown { child: "root/pool/s".into() }))
    );
    assert_eq!(system.root().count_children().specs, 2);
    system.shutdown().unwrap();
    let system = Supervisor::dynamic().auto_shutdown(AutoShutdown::AnySignificant).start().unwrap();
    assert_eq!(
        system.root().start_child(jobs.job("s", Restart::Permanent, true)),
        Err(ControlError::Config(ConfigError::SignificantPermanent { child: "root/s".into() }))
    );
    system.shutdown().unwrap();
}

// ---- ignore at start ----

#[test]
fn an_ignored_child_is_kept_stopped_and_not_restarted() {
    // sup_start_ignore_child: start_child answers ok with no child.
    let jobs = Jobs::default();
    let static_root = Supervisor::builder().child(jobs.job("keep", Restart::Permanent, false)).start().unwrap();
    let root = static_root.root().clone();
    let ignoring = jobs.ignoring("child1", Restart::Permanent);
    let addr = ignoring.addr();
    assert_eq!(root.start_child(ignoring), Ok(StartOutcome::Ignored));
    assert_eq!(root.start_child(jobs.job("child2", Restart::Permanent, false)), Ok(StartOutcome::Running));
    let ignored = child(&root, "child1").unwrap();
    assert_eq!(
        (ignored.state, ignored.last_exit, ignored.restarts_total),
        (ChildState::Stopped, Some(ExitReason::Ignored), 0)
    );
    assert_eq!(root.count_children(), ChildCounts { specs: 3, active: 2, supervisors: 0, workers: 3 });
    // Not running: its mailbox refuses messages, and it never ran `stopped`.
    assert!(matches!(addr.tell(Op::Normal), Err(TellError::Closed(_))));
    assert!(alive(&root));
    static_root.shutdown().unwrap();
    assert_eq!(jobs.stopped(), ["child2", "keep"]);
}

#[test]
fn an_ignored_temporary_child_is_not_kept() {
    // sup_start_ignore_temporary_child: in the start spec ...
    let jobs = Jobs::default();
    let system = Supervisor::builder()
        .child(jobs.ignoring("child1", Restart::Temporary))
        .child(jobs.job("child2", Restart::Temporary, false))
        .child(jobs.ignoring("child3", Restart::Transient))
        .start()
        .unwrap();
    let root = system.root().clone();
    let ids: Vec<String> = root.which_children().into_iter().map(|c| c.id).collect();
    assert_eq!(ids, ["child2", "child3"]);
    assert_eq!(root.count_children(), ChildCounts { specs: 2, active: 1, supervisors: 0, workers: 2 });
    // ... and through start_child (sup_start_ignore_temporary_child_start_child).
    assert_eq!(root.start_child(jobs.ignoring("child4", Restart::Temporary)), Ok(StartOutcome::Ignored));
    assert!(child(&root, "child4").is_none());
    assert_eq!(root.get_childspec("child4"), Err(ControlError::NotFound("child4".into())));
    system.shutdown().unwrap();
}

#[test]
fn a_dynamic_supervisor_keeps_no_ignored_child() {
    // sup_start_ignore_{temporary,permanent}_child_start_child_simple.
    for restart in [Restart::Temporary, Restart::Permanent] {
        let jobs = Jobs::default();
        let system = Supervisor::dynamic().start().unwrap();
        let root = system.root().clone();
        assert_eq!(root.start_child(jobs.ignoring("child1", restart)), Ok(StartOutcome::Ignored));
        assert_eq!(root.start_child(jobs.job("child2", restart, false)), Ok(StartOutcome::Running));
        let ids: Vec<String> = root.which_children().into_iter().map(|c| c.id).collect();
        assert_eq!(ids, ["child2"]);
        assert_eq!(root.count_children(), ChildCounts { specs: 1, active: 1, supervisors: 0, workers: 1 });
        // The id is free again, and the supervisor stops without error.
        assert_eq!(root.start_child(jobs.job("child1", restart, false)), Ok(StartOutcome::Running));
        assert!(system.shutdown().unwrap().is_clean());
    }
}

#[test]
fn restart_child_starts_an_ignored_child_again() {
    let jobs = Jobs::default();
    let ignore = Arc::new(AtomicBool::new(true));
    let spec = jobs.switchable("child1", Restart::Permanent, false, &ignore);
    let addr = spec.addr();
    let system = Supervisor::builder().child(spec).start().unwrap();
    let root = system.root().clone();
    assert_eq!(state(&root, "child1"), Some(ChildState::Stopped));
    // Still ignoring: answered as such, still kept.
    assert_eq!(root.restart_child("child1"), Ok(StartOutcome::Ignored));
    assert_eq!(state(&root, "child1"), Some(ChildState::Stopped));
    ignore.store(false, Ordering::SeqCst);
    assert_eq!(root.restart_child("child1"), Ok(StartOutcome::Running));
    assert_eq!(state(&root, "child1"), Some(ChildState::Running));
    // Its mailbox is open again: it handles messages, and stops normally.
    addr.tell(Op::Crash).unwrap();
    wait_restarted(&root, "child1", 1);
    system.shutdown().unwrap();
    assert_eq!(jobs.stopped(), ["child1", "child1"]);
}

#[test]
fn a_restart_that_answers_ignore_leaves_the_child_stopped() {
    // OTP's restart/2: a restart whose start returns ignore sets the pid to
    // undefined; nothing loops and no intensity is spent on it. One-for-one
    // without backoff restarts in place on the runner's thread; with backoff,
    // through the supervisor: both paths.
    for backoff in [false, true] {
        let jobs = Jobs::default();
        let ignore = Arc::new(AtomicBool::new(false));
        let spec = jobs.switchable("child1", Restart::Permanent, false, &ignore);
        let spec = if backoff {
            spec.backoff(Backoff::exponential(Duration::from_millis(1), Duration::from_millis(1)))
        } else {
            spec
        };
        let addr = spec.addr();
        let system = Supervisor::builder().intensity(1, Duration::from_secs(60)).child(spec).start().unwrap();
        let root = system.root().clone();
        ignore.store(true, Ordering::SeqCst);
        addr.tell(Op::Crash).unwrap();
        wait_until("the restart was ignored", || {
            child(&root, "child1").is_some_and(|c| c.last_exit == Some(ExitReason::Ignored))
        });
        assert_eq!(state(&root, "child1"), Some(ChildState::Stopped), "backoff {backoff}");
        assert!(alive(&root));
        ignore.store(false, Ordering::SeqCst);
        assert_eq!(root.restart_child("child1"), Ok(StartOutcome::Running));
        system.shutdown().unwrap();
    }
}

// ---- a child ends itself with reason shutdown ----

/// A tree of `keep` (permanent) and `child1` (`restart`), as the suite's
/// `*_shutdown` cases; gives back `child1`'s address.
fn with_child1(restart: Restart) -> (System, SupervisorRef, Addr<Op>) {
    let jobs = Jobs::default();
    let spec = jobs.job("child1", restart, false);
    let addr = spec.addr();
    let system = Supervisor::builder()
        .intensity(5, Duration::from_secs(60))
        .child(jobs.job("keep", Restart::Permanent, false))
        .child(spec)
        .start()
        .unwrap();
    let root = system.root().clone();
    (system, root, addr)
}

#[test]
fn a_transient_child_that_shuts_itself_down_is_not_restarted() {
    // transient_shutdown.
    let (system, root, addr) = with_child1(Restart::Transient);
    let events = system.subscribe();
    addr.tell(Op::Shutdown).unwrap();
    wait_ended(&root, "child1");
    let ended = child(&root, "child1").unwrap();
    assert_eq!(
        (ended.state, ended.last_exit, ended.restarts_total),
        (ChildState::Stopped, Some(ExitReason::Shutdown), 0)
    );
    assert_eq!(root.count_children(), ChildCounts { specs: 2, active: 1, supervisors: 0, workers: 2 });
    assert_eq!(system.stats().restarts_total, 0);
    // Not a crash: no restart was announced.
    expect(&events, "its exit", |e| matches!(e, SupervisionEvent::Exited { reason: ExitReason::Shutdown, .. }));
    assert!(
        !drain(&events)
            .iter()
            .any(|e| matches!(e, SupervisionEvent::Restarting { .. } | SupervisionEvent::GaveUp { .. }))
    );
    // It can be started again, and end the same way again.
    assert_eq!(root.restart_child("child1"), Ok(StartOutcome::Running));
    addr.tell(Op::Shutdown).unwrap();
    wait_ended(&root, "child1");
    assert_eq!(root.count_children().active, 1);
    system.shutdown().unwrap();
}

#[test]
fn a_permanent_child_that_shuts_itself_down_is_restarted() {
    // permanent_shutdown.
    let (system, root, addr) = with_child1(Restart::Permanent);
    addr.tell(Op::Shutdown).unwrap();
    wait_restarted(&root, "child1", 1);
    assert_eq!(child(&root, "child1").unwrap().last_exit, Some(ExitReason::Shutdown));
    assert_eq!(root.count_children(), ChildCounts { specs: 2, active: 2, supervisors: 0, workers: 2 });
    system.shutdown().unwrap();
}

#[test]
fn a_temporary_child_that_shuts_itself_down_is_removed() {
    // temporary_shutdown.
    let (system, root, addr) = with_child1(Restart::Temporary);
    addr.tell(Op::Shutdown).unwrap();
    wait_until("child1 removed", || child(&root, "child1").is_none());
    assert_eq!(root.count_children(), ChildCounts { specs: 1, active: 1, supervisors: 0, workers: 1 });
    assert_eq!(root.start_child(Jobs::default().job("child1", Restart::Temporary, false)), Ok(StartOutcome::Running));
    system.shutdown().unwrap();
}

// ---- get_childspec ----

#[test]
fn get_childspec_returns_the_spec_with_its_defaults() {
    // sup_start_map: the defaults of a worker and of a supervisor, and not_found.
    let jobs = Jobs::default();
    let nested = Supervisor::dynamic();
    let system = Supervisor::builder()
        .auto_shutdown(AutoShutdown::AnySignificant)
        .child(jobs.job("child1", Restart::Permanent, false))
        .child(jobs.job("child2", Restart::Transient, true).shutdown(Duration::from_millis(250)))
        .child(ChildSpec::supervisor("child3", nested))
        .start()
        .unwrap();
    let root = system.root();
    let one = root.get_childspec("child1").unwrap();
    assert_eq!(
        (one.id.as_str(), one.kind, one.restart, one.significant),
        ("child1", ChildKind::Worker, Restart::Permanent, false)
    );
    assert_eq!((one.shutdown, one.start_timeout), (DEFAULT_SHUTDOWN, DEFAULT_START_TIMEOUT));
    assert!(one.message_type.is_some_and(|ty| ty.ends_with("Op")));
    let two = root.get_childspec("child2").unwrap();
    assert_eq!((two.restart, two.significant, two.shutdown), (Restart::Transient, true, Duration::from_millis(250)));
    let three = root.get_childspec("child3").unwrap();
    assert_eq!((three.kind, three.shutdown, three.message_type), (ChildKind::Supervisor, Duration::MAX, None));
    assert_eq!(root.get_childspec("child4"), Err(ControlError::NotFound("child4".into())));
    system.shutdown().unwrap();
}
