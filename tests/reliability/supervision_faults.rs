//! Reliability rows for panics in user code, supervision limits, a hung
//! handler and shutdown with events still buffered.
//!
//! Every test runs a whole service: a supervision tree with a real HTTPS event
//! pipeline shipping to a loopback collector, an API actor, and plain request
//! threads that call the API and emit an event on every request while the
//! fault happens elsewhere in the tree. Each test asserts that no request
//! failed, counts the restarts, accounts for every event, measures the time
//! to recover, and prints its row for `docs/reliability.md` (run with
//! `--nocapture` to see them).
use crate::rig;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use parking_lot::Mutex;
use rig::*;
use vigil::events::{Config, DropReason, Dropped};
use vigil::{
    Actor, BoxError, ChildSpec, Context, ExitReason, Hook, Strategy, SupervisionEvent, Supervisor, SupervisorBuilder,
    System, exit_code,
};
use vigil_collector::Fault;

/// Builds the service tree: the event pipeline, the API, and a `chaos`
/// supervisor holding the misbehaving children.
fn service(pipeline: &Pipeline, api: impl Into<ChildSpec>, chaos: SupervisorBuilder) -> System {
    Supervisor::builder()
        .strategy(Strategy::OneForOne)
        .intensity(3, Duration::from_secs(10))
        .child(pipeline.spec.clone())
        .child(api)
        .child(ChildSpec::supervisor("chaos", chaos))
        .start()
        .expect("start the service tree")
}

/// The supervision events received so far.
fn drain(events: &Receiver<SupervisionEvent>) -> Vec<SupervisionEvent> {
    events.try_iter().collect()
}

/// The supervision events, once `path` has `n` restarts among them. A
/// restart done in place is reported after the new incarnation started, so
/// the events can trail what the actor itself saw.
fn after_restarts(events: &Receiver<SupervisionEvent>, path: &str, n: usize) -> Vec<SupervisionEvent> {
    let mut seen = Vec::new();
    wait_until(&format!("{n} restarts of {path} are published"), || {
        seen.extend(events.try_iter());
        restarts_of(&seen, path) >= n
    });
    seen
}

/// Exit reasons of `path`, in order.
fn exits_of(events: &[SupervisionEvent], path: &str) -> Vec<ExitReason> {
    events
        .iter()
        .filter_map(|e| match e {
            SupervisionEvent::Exited { path: p, reason } if p == path => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// Stops the requests, delivers every event, shuts the tree down, and checks
/// that nothing was lost. Returns the request summary and the event count.
fn finish(requests: Requests, pipeline: &Pipeline, system: System) -> (RequestSummary, u64) {
    finish_abandoning(requests, pipeline, system, &[])
}

/// [`finish`], for a tree that abandoned `abandoned` on the way (their
/// threads are still running, so the shutdown report names them).
fn finish_abandoning(
    requests: Requests,
    pipeline: &Pipeline,
    system: System,
    abandoned: &[&str],
) -> (RequestSummary, u64) {
    let summary = requests.stop();
    pipeline.flush_and_close();
    let report = system.shutdown().expect("the tree shuts down");
    assert_eq!(report.abandoned, abandoned, "{report:?}");
    assert_eq!(summary.failed, 0, "failed requests: {summary:?}");
    let events = pipeline.assert_nothing_lost();
    assert_eq!(events, summary.emitted, "every event a request emitted is accounted for");
    (summary, events)
}

// ---------------------------------------------------------------------------
// A scriptable misbehaving actor.

/// What the misbehaving actor is told.
enum Chaos {
    /// Handled normally; counted.
    Work,
    /// Panics in `handle`.
    Panic,
    /// Returns `Err` from `handle`.
    Fail,
    /// Stops normally (`Context::stop`).
    Stop,
}

/// Shared between the test and every incarnation.
#[derive(Default)]
struct Plan {
    /// Upcoming starts whose `started` hook panics.
    start_panics: AtomicU64,
    /// Whether the `stopped` hook panics.
    stopped_panics: AtomicBool,
    /// (incarnation, when `started` returned) of every successful start.
    starts: Mutex<Vec<(u64, Instant)>>,
    /// When each failure was raised.
    failures: Mutex<Vec<Instant>>,
    handled: AtomicU64,
}

struct Flaky {
    plan: Arc<Plan>,
}

impl Actor for Flaky {
    type Msg = Chaos;

    fn started(&mut self, ctx: &mut Context<'_, Chaos>) -> Result<(), BoxError> {
        let left = self.plan.start_panics.load(Ordering::SeqCst);
        if left > 0 {
            self.plan.start_panics.store(left - 1, Ordering::SeqCst);
            self.plan.failures.lock().push(Instant::now());
            panic!("flaky cannot start ({} more to go)", left - 1);
        }
        self.plan.starts.lock().push((ctx.incarnation(), Instant::now()));
        Ok(())
    }

    fn handle(&mut self, msg: Chaos, ctx: &mut Context<'_, Chaos>) -> Result<(), BoxError> {
        match msg {
            Chaos::Work => {
                self.plan.handled.fetch_add(1, Ordering::SeqCst);
            }
            Chaos::Panic => {
                self.plan.failures.lock().push(Instant::now());
                panic!("flaky was told to panic");
            }
            Chaos::Fail => {
                self.plan.failures.lock().push(Instant::now());
                return Err("flaky was told to fail".into());
            }
            Chaos::Stop => ctx.stop(),
        }
        Ok(())
    }

    fn stopped(&mut self, _: &ExitReason) {
        if self.plan.stopped_panics.load(Ordering::SeqCst) {
            panic!("flaky cannot clean up");
        }
    }
}

fn flaky(plan: &Arc<Plan>) -> vigil::WorkerSpec<Flaky> {
    let plan = Arc::clone(plan);
    ChildSpec::worker("flaky", move || Flaky { plan: Arc::clone(&plan) })
}

/// Starts a service with one `flaky` child under `chaos` and request threads.
fn flaky_service(plan: &Arc<Plan>, intensity: u32) -> (Pipeline, System, Requests, vigil::Addr<Chaos>) {
    let pipeline = Pipeline::start(fast_config());
    let (api_spec, api) = api();
    let spec = flaky(plan);
    let addr = spec.addr();
    let chaos = Supervisor::builder().intensity(intensity, Duration::from_secs(10)).child(spec);
    let system = service(&pipeline, api_spec, chaos);
    let requests = Requests::charging(3, api, pipeline.emitter.clone());
    requests.wait_for_more(100);
    (pipeline, system, requests, addr)
}

/// The time from the `n`-th failure to the first successful start after it.
fn recovery(plan: &Plan, n: usize) -> Duration {
    let failed_at = plan.failures.lock()[n];
    let started = plan.starts.lock().iter().map(|&(_, at)| at).find(|&at| at > failed_at);
    started.expect("a start after the failure").duration_since(failed_at)
}

// ---------------------------------------------------------------------------
// Panics in user code.

#[test]
fn panics_in_start_hooks_are_retried_until_a_start_succeeds() {
    let plan = Arc::new(Plan::default());
    let (pipeline, system, requests, flaky) = flaky_service(&plan, 5);
    let events = system.subscribe();

    // The running incarnation fails; its next three starts panic in `started`.
    plan.start_panics.store(3, Ordering::SeqCst);
    flaky.tell(Chaos::Fail).unwrap();
    wait_until("the fourth restart starts", || plan.starts.lock().len() == 2);
    let recover = recovery(&plan, 0);
    flaky.tell(Chaos::Work).unwrap();
    wait_until("the new incarnation works", || plan.handled.load(Ordering::SeqCst) == 1);
    requests.wait_for_more(100);

    let seen = after_restarts(&events, "root/chaos/flaky", 4);
    assert_eq!(restarts_of(&seen, "root/chaos/flaky"), 4, "one failure and three failed starts: {seen:#?}");
    let exits = exits_of(&seen, "root/chaos/flaky");
    assert!(
        matches!(&exits[0], ExitReason::Failed { hook: Hook::Handle, error, .. } if error == "flaky was told to fail")
    );
    for (n, reason) in exits[1..4].iter().enumerate() {
        match reason {
            ExitReason::Panicked { hook: Hook::Start, message, location, message_type: None } => {
                assert_eq!(message, &format!("flaky cannot start ({} more to go)", 2 - n));
                assert!(location.as_deref().is_some_and(|l| l.contains("supervision_faults.rs")), "{location:?}");
            }
            other => panic!("expected a panic in start, got {other:?}"),
        }
    }
    assert_eq!(plan.starts.lock()[1].0, 4, "incarnations 1-3 panicked, 4 started");
    assert_eq!(restarts_of(&seen, "root/chaos"), 0, "the limit was not reached");

    let (summary, events) = finish(requests, &pipeline, system);
    Row {
        fault: "panic in `started` (3 starts in a row)",
        requests: &summary,
        restarts: 4,
        events: format!("0 of {events}"),
        recover: ms(recover),
    }
    .print();
}

#[test]
fn panics_in_handle_lose_only_the_message_being_handled() {
    let plan = Arc::new(Plan::default());
    let (pipeline, system, requests, flaky) = flaky_service(&plan, 100);
    let events = system.subscribe();

    // 500 messages of work with a panic after every tenth, sent in one go:
    // the work queued behind each panic goes to the next incarnation.
    let panics = 50;
    for _ in 0..panics {
        for _ in 0..10 {
            flaky.tell(Chaos::Work).unwrap();
        }
        flaky.tell(Chaos::Panic).unwrap();
    }
    wait_until("all work handled", || plan.handled.load(Ordering::SeqCst) == 500);
    wait_until("the last restart started", || plan.starts.lock().len() == panics + 1);
    let slowest = (0..panics).map(|n| recovery(&plan, n)).max().unwrap();
    requests.wait_for_more(100);

    let seen = after_restarts(&events, "root/chaos/flaky", panics);
    assert_eq!(restarts_of(&seen, "root/chaos/flaky"), panics);
    let exits = exits_of(&seen, "root/chaos/flaky");
    assert_eq!(exits.len(), panics);
    for reason in &exits {
        match reason {
            ExitReason::Panicked { hook: Hook::Handle, message, message_type: Some(ty), .. } => {
                assert_eq!(message, "flaky was told to panic");
                assert!(ty.ends_with("Chaos"), "the dropped message's type is named: {ty}");
            }
            other => panic!("expected a panic in handle, got {other:?}"),
        }
    }
    assert_eq!(plan.handled.load(Ordering::SeqCst), 500, "no work lost across 50 restarts");

    let (summary, events) = finish(requests, &pipeline, system);
    Row {
        fault: "panic in `handle` (50 times)",
        requests: &summary,
        restarts: panics,
        events: format!("0 of {events}; 0 of 500 queued messages (only the 50 panicking ones)"),
        recover: format!("{} (slowest of 50)", ms(slowest)),
    }
    .print();
}

#[test]
fn a_panic_in_stopped_is_the_exit_reason_and_shutdown_still_completes() {
    let plan = Arc::new(Plan::default());
    let (pipeline, system, requests, flaky) = flaky_service(&plan, 5);
    let events = system.subscribe();
    plan.stopped_panics.store(true, Ordering::SeqCst);

    // A normal stop whose `stopped` hook panics: the panic is the exit reason,
    // so the permanent child is restarted.
    let stop_at = Instant::now();
    flaky.tell(Chaos::Stop).unwrap();
    wait_until("restarted after the stop", || plan.starts.lock().len() == 2);
    let recover = plan.starts.lock()[1].1.duration_since(stop_at);
    // A failure whose `stopped` hook panics too: the failure stays the reason.
    flaky.tell(Chaos::Fail).unwrap();
    wait_until("restarted after the failure", || plan.starts.lock().len() == 3);
    requests.wait_for_more(100);

    let seen = after_restarts(&events, "root/chaos/flaky", 2);
    let exits = exits_of(&seen, "root/chaos/flaky");
    assert!(
        matches!(&exits[0], ExitReason::Panicked { hook: Hook::Stopped, message, .. } if message == "flaky cannot clean up"),
        "{exits:#?}"
    );
    assert!(
        matches!(&exits[1], ExitReason::Failed { hook: Hook::Handle, error, .. } if error == "flaky was told to fail"),
        "{exits:#?}"
    );
    assert_eq!(restarts_of(&seen, "root/chaos/flaky"), 2);

    // The hook still panics at shutdown; the shutdown completes, clean.
    let started = Instant::now();
    let (summary, events) = finish(requests, &pipeline, system);
    let shutdown = started.elapsed();
    assert!(shutdown < Duration::from_secs(10), "{shutdown:?}");
    Row {
        fault: "panic in `stopped` (after a stop, a failure, and at shutdown)",
        requests: &summary,
        restarts: 2,
        events: format!("0 of {events}"),
        recover: format!("{}; flush + shutdown {}", ms(recover), ms(shutdown)),
    }
    .print();
}

/// What the factory does on each call, in order; `Ok` once the script ends.
#[derive(Clone, Copy, Debug)]
enum Build {
    Ok,
    Panic,
    Err,
}

#[test]
fn a_panicking_or_failing_factory_counts_as_a_failed_start() {
    let plan = Arc::new(Plan::default());
    let script = Arc::new(Mutex::new(vec![Build::Ok, Build::Panic, Build::Err, Build::Panic].into_iter()));
    let calls = Arc::new(AtomicU64::new(0));
    let spec = {
        let (plan, script, calls) = (Arc::clone(&plan), Arc::clone(&script), Arc::clone(&calls));
        ChildSpec::try_worker("built", move || {
            calls.fetch_add(1, Ordering::SeqCst);
            let next = script.lock().next().unwrap_or(Build::Ok);
            match next {
                Build::Ok => Ok(Flaky { plan: Arc::clone(&plan) }),
                Build::Panic => panic!("factory: the config file vanished"),
                Build::Err => Err(std::io::Error::other("factory: cannot open the database")),
            }
        })
    };
    let addr = spec.addr();
    let pipeline = Pipeline::start(fast_config());
    let (api_spec, api) = api();
    let system = service(&pipeline, api_spec, Supervisor::builder().intensity(5, Duration::from_secs(10)).child(spec));
    let events = system.subscribe();
    let requests = Requests::charging(3, api, pipeline.emitter.clone());
    requests.wait_for_more(100);

    addr.tell(Chaos::Fail).unwrap();
    wait_until("a start after three failed builds", || plan.starts.lock().len() == 2);
    let recover = recovery(&plan, 0);
    assert_eq!(calls.load(Ordering::SeqCst), 5, "the first build, three failed ones, the good one");
    addr.tell(Chaos::Work).unwrap();
    wait_until("the new incarnation works", || plan.handled.load(Ordering::SeqCst) == 1);
    requests.wait_for_more(100);

    let seen = after_restarts(&events, "root/chaos/built", 4);
    let exits = exits_of(&seen, "root/chaos/built");
    assert_eq!(exits.len(), 4, "{exits:#?}");
    assert!(
        matches!(&exits[1], ExitReason::Panicked { hook: Hook::Factory, message, .. } if message == "factory: the config file vanished")
    );
    assert!(
        matches!(&exits[2], ExitReason::Failed { hook: Hook::Factory, error, .. } if error == "factory: cannot open the database")
    );
    assert!(matches!(&exits[3], ExitReason::Panicked { hook: Hook::Factory, .. }));
    assert_eq!(restarts_of(&seen, "root/chaos/built"), 4);

    let (summary, events) = finish(requests, &pipeline, system);
    Row {
        fault: "panic (and `Err`) in a child factory (3 builds in a row)",
        requests: &summary,
        restarts: 4,
        events: format!("0 of {events}"),
        recover: ms(recover),
    }
    .print();
}

/// State that request threads and an actor share behind a parking_lot mutex.
#[derive(Default)]
struct Accounts {
    balance: i64,
    updates: u64,
}

struct Bookkeeper {
    accounts: Arc<Mutex<Accounts>>,
    plan: Arc<Plan>,
}

impl Actor for Bookkeeper {
    type Msg = Chaos;
    fn started(&mut self, ctx: &mut Context<'_, Chaos>) -> Result<(), BoxError> {
        self.plan.starts.lock().push((ctx.incarnation(), Instant::now()));
        Ok(())
    }
    fn handle(&mut self, msg: Chaos, _: &mut Context<'_, Chaos>) -> Result<(), BoxError> {
        let mut accounts = self.accounts.lock();
        accounts.updates += 1;
        if let Chaos::Panic = msg {
            self.plan.failures.lock().push(Instant::now());
            panic!("bookkeeper panicked holding the accounts lock");
        }
        self.plan.handled.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn a_panic_while_holding_a_parking_lot_lock_releases_it() {
    let plan = Arc::new(Plan::default());
    let accounts = Arc::new(Mutex::new(Accounts::default()));
    let spec = {
        let (plan, accounts) = (Arc::clone(&plan), Arc::clone(&accounts));
        ChildSpec::worker("bookkeeper", move || Bookkeeper { accounts: Arc::clone(&accounts), plan: Arc::clone(&plan) })
    };
    let addr = spec.addr();
    let pipeline = Pipeline::start(fast_config());
    let (api_spec, api) = api();
    let system =
        service(&pipeline, api_spec, Supervisor::builder().intensity(100, Duration::from_secs(10)).child(spec));
    let events = system.subscribe();
    // Every request takes the lock the panicking actor holds.
    let requests = {
        let (accounts, emitter) = (Arc::clone(&accounts), pipeline.emitter.clone());
        Requests::start(3, move |t, i, stats| {
            api.call(|reply| rig::ApiMsg::Charge(1, reply), Duration::from_secs(5))
                .map_err(|e| format!("api call failed: {e}"))?;
            let mut guard =
                accounts.try_lock_for(Duration::from_secs(5)).ok_or("the accounts lock stayed held for 5 s")?;
            guard.balance += 1;
            drop(guard);
            emit(&emitter, Ev { id: (t as u64) << 40 | i, thread: t }, stats);
            Ok(())
        })
    };
    requests.wait_for_more(100);

    let panics = 20;
    for _ in 0..panics {
        addr.tell(Chaos::Panic).unwrap();
        addr.tell(Chaos::Work).unwrap();
    }
    wait_until("all work handled", || plan.handled.load(Ordering::SeqCst) == panics);
    let slowest = (0..panics as usize).map(|n| recovery(&plan, n)).max().unwrap();
    requests.wait_for_more(100);
    assert!(accounts.try_lock_for(Duration::from_secs(1)).is_some(), "the lock is free");

    let seen = after_restarts(&events, "root/chaos/bookkeeper", panics as usize);
    assert_eq!(restarts_of(&seen, "root/chaos/bookkeeper"), panics as usize);
    let (summary, events) = finish(requests, &pipeline, system);
    assert!(summary.max_latency < Duration::from_secs(5), "{summary:?}");
    let accounts = accounts.lock();
    assert_eq!(accounts.updates, 2 * panics, "every update ran, the panicking ones included");
    assert_eq!(accounts.balance, summary.requests as i64, "no request lost its update");
    Row {
        fault: "panic while holding a parking_lot lock that requests use (20 times)",
        requests: &summary,
        restarts: panics as usize,
        events: format!("0 of {events}"),
        recover: format!("{} (slowest of 20)", ms(slowest)),
    }
    .print();
}

// ---------------------------------------------------------------------------
// Supervision limits.

/// Fails at once after every start: its receive timeout of zero runs
/// `timeout`, which returns an error.
struct Storm {
    starts: Arc<AtomicU64>,
}

impl Actor for Storm {
    type Msg = ();
    fn started(&mut self, ctx: &mut Context<'_, ()>) -> Result<(), BoxError> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        ctx.set_receive_timeout(Some(Duration::ZERO));
        Ok(())
    }
    fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> {
        Ok(())
    }
    fn timeout(&mut self, _: &mut Context<'_, ()>) -> Result<(), BoxError> {
        Err("the database is down".into())
    }
}

#[test]
fn a_restart_storm_escalates_to_main_which_decides() {
    // The API runs in a tree of its own; the storm takes down the other tree,
    // which holds the event pipeline.
    let (api_spec, api) = api();
    let api_system = Supervisor::builder().child(api_spec).start().unwrap();
    let pipeline = Pipeline::start(fast_config());
    let requests = Requests::charging(3, api, pipeline.emitter.clone());

    let starts = Arc::new(AtomicU64::new(0));
    let storm = {
        let starts = Arc::clone(&starts);
        ChildSpec::worker("storm", move || Storm { starts: Arc::clone(&starts) })
    };
    let period = Duration::from_secs(5);
    let chaos = Supervisor::builder().intensity(3, period).child(storm);
    let chaos_ref = chaos.handle();
    let began = Instant::now();
    let system = Supervisor::builder()
        .intensity(1, period)
        .child(pipeline.spec.clone())
        .child(ChildSpec::supervisor("chaos", chaos))
        .start()
        .expect("the storm tree starts: its child fails only after starting");
    let root_ref = system.root().clone();
    let outcome = system.wait();
    let ended = began.elapsed();

    // The intensity limits ended it within one period, twice over: chaos gave
    // up, root restarted it once, chaos gave up again, root gave up.
    assert!(ended < period, "the storm lasted {ended:?}");
    let error = outcome.expect_err("the root gave up");
    assert_eq!(exit_code(&Err(error.clone())), std::process::ExitCode::from(1));
    assert!(error.abandoned.is_empty(), "{error:?}");
    assert_eq!(
        error.to_string(),
        "the supervision tree gave up: root reached max restart intensity (1 in 5s) after root/chaos exited: \
         root/chaos reached max restart intensity (3 in 5s) after root/chaos/storm exited: \
         in the timeout hook: the database is down"
    );
    let chain = error.reason.chain();
    assert_eq!(chain.len(), 3);
    assert!(
        matches!(chain[0], ExitReason::Escalated { supervisor, intensity: 1, child, .. } if supervisor == "root" && child == "root/chaos")
    );
    assert!(
        matches!(chain[1], ExitReason::Escalated { supervisor, intensity: 3, child, .. } if supervisor == "root/chaos" && child == "root/chaos/storm")
    );
    assert!(matches!(chain[2], ExitReason::Failed { hook: Hook::Timeout, .. }));
    // Restarts seen: the storm child 3 times under each of chaos's two
    // incarnations, chaos once under root.
    assert_eq!(starts.load(Ordering::SeqCst), 8, "two incarnations of chaos, four starts each");
    assert_eq!(root_ref.stats().restarts_total, 1, "root restarted chaos once");
    let chaos_stats = chaos_ref.stats();
    assert_eq!(chaos_stats.restarts_total, 3, "the last chaos incarnation restarted storm 3 times: {chaos_stats:?}");
    assert!(
        matches!(&chaos_stats.children[0].last_exit, Some(ExitReason::Failed { hook: Hook::Timeout, error, .. }) if error == "the database is down"),
        "{chaos_stats:?}"
    );

    // The process keeps running: requests go on, events queue up.
    requests.wait_for_more(200);
    let queued = pipeline.ledger();
    assert!(queued.pending > 0 && queued.delivered < queued.accepted, "{queued}");

    // main decides: start the tree again without the broken child. The
    // pipeline's buffer outlived the old tree; the new batcher delivers it.
    let decided = Instant::now();
    let system = Supervisor::builder().child(pipeline.spec.clone()).start().expect("restart the pipeline");
    let backlog = queued.accepted;
    wait_until("the backlog is delivered", || pipeline.collector.seqs().len() as u64 >= backlog);
    let recover = decided.elapsed();
    requests.wait_for_more(100);

    let summary = requests.stop();
    pipeline.flush_and_close();
    assert!(system.shutdown().unwrap().is_clean());
    api_system.shutdown().unwrap();
    assert_eq!(summary.failed, 0, "{summary:?}");
    let events = pipeline.assert_nothing_lost();
    assert_eq!(events, summary.emitted);
    Row {
        fault: "restart storm: a child that fails at once on every start",
        requests: &summary,
        restarts: 7,
        events: format!("0 of {events}"),
        recover: format!(
            "escalated to `main` in {}; backlog delivered {} after `main` restarted the tree",
            ms(ended),
            ms(recover)
        ),
    }
    .print();
}

/// Blocks in `handle` until released, ignoring stop requests.
struct Stubborn {
    release: Receiver<()>,
    exited: Arc<AtomicBool>,
}

impl Actor for Stubborn {
    type Msg = ();
    fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> {
        let _ = self.release.recv();
        Ok(())
    }
}

impl Drop for Stubborn {
    fn drop(&mut self) {
        self.exited.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_child_that_ignores_stop_is_abandoned_and_shutdown_completes() {
    let (release, hold) = crossbeam_channel::bounded::<()>(0);
    let exited = Arc::new(AtomicBool::new(false));
    let timeout = Duration::from_millis(300);
    let spec = {
        let exited = Arc::clone(&exited);
        ChildSpec::worker("stubborn", move || Stubborn { release: hold.clone(), exited: Arc::clone(&exited) })
            .shutdown(timeout)
    };
    let addr = spec.addr();
    let pipeline = Pipeline::start(fast_config());
    let (api_spec, api) = api();
    let system = service(&pipeline, api_spec, Supervisor::builder().child(spec));
    let events = system.subscribe();
    let requests = Requests::charging(3, api, pipeline.emitter.clone());
    requests.wait_for_more(100);
    addr.tell(()).unwrap();
    wait_until("the stubborn handler is busy", || addr.is_empty());

    let summary = requests.stop();
    pipeline.flush_and_close();
    let started = Instant::now();
    let report = system.shutdown().expect("shutdown completes");
    let took = started.elapsed();
    assert_eq!(report.abandoned, ["root/chaos/stubborn"]);
    assert_eq!(exit_code(&Ok(report)), std::process::ExitCode::from(2));
    assert!(took >= timeout, "waited its shutdown timeout: {took:?}");
    assert!(took < timeout + Duration::from_secs(5), "then went on: {took:?}");
    let seen = drain(&events);
    assert!(seen.iter().any(|e| matches!(e, SupervisionEvent::Abandoned { path, timeout: t } if path == "root/chaos/stubborn" && *t == timeout)));
    assert_eq!(summary.failed, 0, "{summary:?}");
    let events = pipeline.assert_nothing_lost();

    // The abandoned thread was left running; it ends once its hook returns.
    assert!(!exited.load(Ordering::SeqCst));
    drop(release);
    wait_until("the abandoned incarnation ends", || exited.load(Ordering::SeqCst));
    Row {
        fault: "a child that ignores stop (shutdown timeout 300 ms)",
        requests: &summary,
        restarts: 0,
        events: format!("0 of {events}"),
        recover: format!("shutdown completed in {} (abandoned after 300 ms)", ms(took)),
    }
    .print();
}

/// Writes an audit line per message; one message hangs it for good.
enum AuditMsg {
    Line,
    /// Hangs the handler until the receiver yields, ignoring stop.
    Hang(Receiver<()>),
}

struct Audit {
    written: Arc<AtomicU64>,
    plan: Arc<Plan>,
    incarnation: Option<u64>,
    /// Incarnations whose actor value was dropped (their thread is done with it).
    ended: Arc<Mutex<Vec<u64>>>,
}

impl Drop for Audit {
    fn drop(&mut self) {
        if let Some(n) = self.incarnation {
            self.ended.lock().push(n);
        }
    }
}

impl Actor for Audit {
    type Msg = AuditMsg;
    fn started(&mut self, ctx: &mut Context<'_, AuditMsg>) -> Result<(), BoxError> {
        self.incarnation = Some(ctx.incarnation());
        self.plan.starts.lock().push((ctx.incarnation(), Instant::now()));
        Ok(())
    }
    fn handle(&mut self, msg: AuditMsg, _: &mut Context<'_, AuditMsg>) -> Result<(), BoxError> {
        match msg {
            AuditMsg::Line => {
                self.written.fetch_add(1, Ordering::SeqCst);
            }
            AuditMsg::Hang(until) => {
                let _ = until.recv();
            }
        }
        Ok(())
    }
}

#[test]
fn a_hung_handler_holds_up_no_request_and_is_replaced() {
    let plan = Arc::new(Plan::default());
    let written = Arc::new(AtomicU64::new(0));
    let ended = Arc::new(Mutex::new(Vec::new()));
    let spec = {
        let (plan, written, ended) = (Arc::clone(&plan), Arc::clone(&written), Arc::clone(&ended));
        ChildSpec::worker("audit", move || Audit {
            written: Arc::clone(&written),
            plan: Arc::clone(&plan),
            incarnation: None,
            ended: Arc::clone(&ended),
        })
        .mailbox(32)
        .shutdown(Duration::from_millis(200))
    };
    let audit = spec.addr();
    let pipeline = Pipeline::start(fast_config());
    let (api_spec, api) = api();
    let chaos = Supervisor::builder().child(spec);
    let chaos_ref = chaos.handle();
    let system = service(&pipeline, api_spec, chaos);
    let events = system.subscribe();
    let shed = Arc::new(AtomicU64::new(0));
    let requests = {
        let (audit, emitter, shed) = (audit.clone(), pipeline.emitter.clone(), Arc::clone(&shed));
        Requests::start(3, move |t, i, stats| {
            api.call(|reply| rig::ApiMsg::Charge(1, reply), Duration::from_secs(5))
                .map_err(|e| format!("api call failed: {e}"))?;
            // Auditing is best effort: a full mailbox sheds the line.
            if audit.try_tell(AuditMsg::Line).is_err() {
                shed.fetch_add(1, Ordering::Relaxed);
            }
            emit(&emitter, Ev { id: (t as u64) << 40 | i, thread: t }, stats);
            Ok(())
        })
    };
    requests.wait_for_more(100);

    // The audit handler hangs (a downstream call that never returns).
    let (release, hang) = crossbeam_channel::bounded::<()>(0);
    audit.tell(AuditMsg::Hang(hang)).unwrap();
    wait_until("the audit mailbox fills up", || audit.len() == audit.capacity());
    let shed_before = shed.load(Ordering::Relaxed);
    requests.wait_for_more(300);
    assert!(shed.load(Ordering::Relaxed) > shed_before, "requests shed audit lines instead of waiting");
    // A call to the hung actor does not hang its caller either.
    let asked = Instant::now();
    let answer = audit.call(|_: vigil::Reply<()>| AuditMsg::Line, Duration::from_millis(200));
    assert_eq!(answer, Err(vigil::CallError::Timeout));
    assert!(asked.elapsed() < Duration::from_secs(2), "{:?}", asked.elapsed());

    // The watchdog (here: main) replaces it: terminating abandons the hung
    // incarnation after its 200 ms shutdown timeout; restarting starts a
    // fresh one on a new thread.
    let replaced = Instant::now();
    chaos_ref.terminate_child("audit").expect("terminate the hung child");
    assert!(audit.is_closed(), "a terminated child's address is closed");
    chaos_ref.restart_child("audit").expect("restart it");
    let written_before = written.load(Ordering::SeqCst);
    wait_until("the new incarnation writes audit lines", || written.load(Ordering::SeqCst) > written_before);
    let recover = replaced.elapsed();
    assert_eq!(plan.starts.lock().last().map(|s| s.0), Some(1), "incarnation 1 serves");
    requests.wait_for_more(100);

    let seen = drain(&events);
    assert!(
        seen.iter().any(|e| matches!(e, SupervisionEvent::Abandoned { path, .. } if path == "root/chaos/audit")),
        "{seen:#?}"
    );
    assert_eq!(restarts_of(&seen, "root/chaos/audit"), 0, "replaced through the API, not by a failure");
    let stats = chaos_ref.stats();
    assert_eq!(stats.abandoned, 1, "{stats:?}");
    let (summary, events) = finish_abandoning(requests, &pipeline, system, &["root/chaos/audit"]);
    assert!(summary.max_latency < Duration::from_secs(5), "{summary:?}");

    // The abandoned incarnation ends when its call finally returns.
    assert_eq!(*ended.lock(), [1], "only the replacement has ended (at shutdown)");
    drop(release);
    wait_until("the abandoned incarnation ends", || ended.lock().contains(&0));
    Row {
        fault: "a hung handler (replaced by terminate + restart)",
        requests: &summary,
        restarts: 1,
        events: format!("0 of {events}; {} audit lines shed while hung", shed.load(Ordering::Relaxed)),
        recover: ms(recover),
    }
    .print();
}

// ---------------------------------------------------------------------------
// Shutdown with events still buffered.

/// A pipeline that ships only at shutdown: nothing is due before.
fn holding_config(shutdown: Duration) -> Config {
    Config::default()
        .capacity(200_000)
        .max_batch_events(100_000)
        .max_batch_bytes(64 << 20)
        .max_delay(Duration::from_secs(3600))
        .retry_backoff_min(Duration::from_millis(10))
        .retry_backoff_max(Duration::from_millis(200))
        .shutdown_timeout(shutdown)
}

/// Starts a service whose events stay buffered, runs requests, stops them.
fn buffered_service(config: Config) -> (Pipeline, System, RequestSummary) {
    let pipeline = Pipeline::start(config);
    let (api_spec, api) = api();
    let system = Supervisor::builder().child(pipeline.spec.clone()).child(api_spec).start().unwrap();
    // An empty flush makes the batcher note an empty buffer, from which it
    // times `max_delay` (an hour): nothing is shipped before the shutdown.
    pipeline.handle.flush(DEADLINE).expect("an empty flush");
    let requests = Requests::charging(3, api, pipeline.emitter.clone());
    requests.wait_for_more(300);
    let summary = requests.stop();
    assert_eq!(summary.failed, 0, "{summary:?}");
    let ledger = pipeline.ledger();
    assert_eq!((ledger.delivered, ledger.pending), (0, summary.emitted), "all still buffered: {ledger}");
    (pipeline, system, summary)
}

#[test]
fn shutdown_delivers_buffered_events_within_its_budget() {
    let budget = Duration::from_secs(5);
    let (pipeline, system, summary) = buffered_service(holding_config(budget));
    pipeline.handle.close();
    let started = Instant::now();
    assert!(system.shutdown().unwrap().is_clean());
    let took = started.elapsed();
    let report = pipeline.handle.final_report().expect("the final flush ran");
    assert_eq!((report.delivered, report.pending, report.dropped.total()), (summary.emitted, 0, 0), "{report}");
    assert!(took < budget + Duration::from_secs(2), "{took:?}");
    let events = pipeline.assert_nothing_lost();
    Row {
        fault: "shutdown with events buffered, collector healthy",
        requests: &summary,
        restarts: 0,
        events: format!("0 of {events}: all delivered by the final flush"),
        recover: format!("shutdown in {} (budget 5 s)", ms(took)),
    }
    .print();
}

#[test]
fn shutdown_reports_events_it_cannot_deliver_as_pending_and_a_new_tree_delivers_them() {
    let budget = Duration::from_secs(1);
    let (pipeline, system, summary) = buffered_service(holding_config(budget));
    pipeline.collector.set_fault(Fault::NeverAnswer);
    let started = Instant::now();
    assert!(system.shutdown().unwrap().is_clean(), "the batcher returned within budget + grace");
    let took = started.elapsed();
    assert!(took >= budget && took < budget + Duration::from_secs(3), "{took:?}");
    let report = pipeline.handle.final_report().expect("the final flush ran");
    assert_eq!((report.delivered, report.pending, report.dropped.total()), (0, summary.emitted, 0), "{report}");
    let ledger = pipeline.ledger();
    assert!(ledger.is_balanced() && ledger.pending == summary.emitted, "{ledger}");

    // Pending, not lost: a new tree with the same pipeline delivers them.
    pipeline.collector.set_fault(Fault::Healthy);
    let again = Instant::now();
    let system = Supervisor::builder().child(pipeline.spec.clone()).start().unwrap();
    pipeline.flush_and_close();
    let recover = again.elapsed();
    assert!(system.shutdown().unwrap().is_clean());
    let events = pipeline.assert_nothing_lost();
    Row {
        fault: "shutdown with events buffered, collector never answers (not closed)",
        requests: &summary,
        restarts: 0,
        events: format!("0 of {events}: {} reported pending, delivered by the next tree", summary.emitted),
        recover: format!("shutdown in {} (budget 1 s); next tree delivered in {}", ms(took), ms(recover)),
    }
    .print();
}

#[test]
fn shutdown_after_close_drops_what_it_cannot_deliver_with_reason_shutdown() {
    let budget = Duration::from_secs(1);
    let (pipeline, system, summary) = buffered_service(holding_config(budget));
    pipeline.collector.set_fault(Fault::RetryAfter { status: 503, value: "30".into() });
    pipeline.handle.close();
    let late = pipeline.emitter.emit(Ev { id: u64::MAX, thread: 99 });
    assert!(matches!(late, Err(Dropped::Closed(_))), "emit after close is refused");
    assert_eq!(late.unwrap_err().reason(), DropReason::Shutdown);
    let started = Instant::now();
    assert!(system.shutdown().unwrap().is_clean());
    let took = started.elapsed();
    assert!(took < budget + Duration::from_secs(3), "{took:?}");
    let report = pipeline.handle.final_report().expect("the final flush ran");
    assert_eq!((report.delivered, report.pending, report.dropped.shutdown), (0, 0, summary.emitted), "{report}");
    let ledger = pipeline.ledger();
    assert!(ledger.is_balanced(), "{ledger}");
    assert_eq!(ledger.accepted, summary.emitted + 1);
    assert_eq!(ledger.dropped.shutdown, summary.emitted + 1, "the late emit counts as well: {ledger}");
    assert_eq!((ledger.delivered, ledger.pending), (0, 0));
    assert!(pipeline.collector.seqs().is_empty());
    Row {
        fault: "shutdown after `close`, collector answers 503 Retry-After: 30",
        requests: &summary,
        restarts: 0,
        events: format!("{} + 1 emitted after close, dropped with reason `shutdown`", summary.emitted),
        recover: format!("shutdown in {} (budget 1 s)", ms(took)),
    }
    .print();
}
