//! One incarnation of a supervisor: it starts its children in order, then
//! serves its inbox (children's reports, requests, its parent's stop, its
//! own retries and backoff timers) until it stops or gives up.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use super::builder::SupervisorBuilder;
use super::next_key;
use super::node::{Node, Row};
use crate::backoff::Jitter;
use crate::exit::{ExitReason, Hook};
use crate::intensity::RestartWindow;
use crate::link::{Link, Parent, Report};
use crate::observe::{Bus, ChildState};
use crate::panic;
use crate::protocol::SupMsg;
use crate::restart::{AutoShutdown, Strategy};
use crate::runner::{Incarnate, Runner};
use crate::spec::ChildSpec;
use crate::watchdog::{InHook, Pulse};

pub(super) struct SupervisorBody {
    pub(super) builder: SupervisorBuilder,
}

impl Incarnate for SupervisorBody {
    fn run(&mut self, link: &Link, generation: u64, _incarnation: u64, _stop: &AtomicBool) -> (ExitReason, bool) {
        let builder = &self.builder;
        let window = Arc::new(parking_lot::Mutex::new(RestartWindow::new(builder.intensity, builder.period)));
        let mut sup = Sup {
            path: Arc::clone(&link.path),
            strategy: builder.strategy,
            auto_shutdown: builder.auto_shutdown,
            max_children: builder.max_children,
            dynamic: builder.dynamic,
            inbox: builder.inbox.rx.clone(),
            self_tx: builder.inbox.tx.clone(),
            as_parent: Arc::clone(&builder.inbox.parent),
            window: Arc::clone(&window),
            terminating: Arc::new(AtomicBool::new(false)),
            started: false,
            children: Vec::new(),
            deferred: VecDeque::new(),
            timers: Vec::new(),
            jitter: Jitter::seeded(),
            bus: Arc::clone(&link.bus),
            node: Arc::clone(&builder.node),
            pulse: link.pulse.clone(),
            entered: None,
            poison: None,
        };
        sup.busy();
        {
            let mut node = sup.node.inner.lock();
            node.path = link.path.to_string();
            node.strategy = builder.strategy;
            node.intensity = builder.intensity;
            node.period = builder.period;
            node.window = Some(window);
            node.restarts_total = 0;
            node.rows.clear();
            node.running = true;
        }
        let outcome = match catch_unwind(AssertUnwindSafe(|| sup.run(link, generation, &builder.children))) {
            // Declared hung, then resumed: its parent was told and gave up
            // on it. It touches nothing and reports nothing (`run_loop`
            // counts the late return).
            _ if link.fenced() => return (ExitReason::Shutdown, sup.started),
            Ok(outcome) => outcome,
            Err(payload) => {
                let reason = panic::panicked(Hook::Supervisor, payload, None);
                log::error!(target: "vigil", "{}: supervisor failed: {reason}; stopping its children", sup.path);
                sup.stop_after_panic();
                (reason, sup.started)
            }
        };
        if link.fenced() {
            return (ExitReason::Shutdown, sup.started);
        }
        // Requests that arrived too late are dropped, so their callers get an
        // answer at once instead of waiting for a next incarnation; requests
        // made from now on are refused (see `SupervisorRef::request`).
        sup.node.inner.lock().running = false;
        for msg in sup.deferred.drain(..).chain(sup.inbox.try_iter()) {
            if let Err(panic) = panic::drop_guarded(msg) {
                log::warn!(target: "vigil", "{}: dropping a late request panicked: {panic}", sup.path);
            }
        }
        if let (Some(pulse), Some(entered)) = (&sup.pulse, sup.entered.take()) {
            // Fenced while dropping late requests: the report is the
            // watchdog's, and `run_loop` sends nothing.
            let _ = pulse.leave(entered);
        }
        outcome
    }
}

pub(super) struct Child {
    pub(super) key: u64,
    pub(super) spec: ChildSpec,
    pub(super) path: Arc<str>,
    pub(super) runner: Option<Runner>,
    pub(super) generation: u64,
    pub(super) incarnations: u64,
    pub(super) stop: Option<Arc<AtomicBool>>,
    pub(super) state: ChildState,
    pub(super) since: Option<Instant>,
    pub(super) attempt: u32,
    pub(super) restarts: VecDeque<Instant>,
    pub(super) restarts_total: u64,
    pub(super) last_exit: Option<ExitReason>,
}

pub(super) struct Timer {
    /// `None` for a backoff too long to represent: the timer never fires.
    pub(super) at: Option<Instant>,
    pub(super) group: Vec<u64>,
}

pub(super) struct Sup {
    pub(super) path: Arc<str>,
    pub(super) strategy: Strategy,
    pub(super) auto_shutdown: AutoShutdown,
    pub(super) max_children: Option<usize>,
    /// A dynamic supervisor forgets a child that stopped for good.
    pub(super) dynamic: bool,
    pub(super) inbox: Receiver<SupMsg>,
    pub(super) self_tx: Sender<SupMsg>,
    /// The inbox as the children's runners see it.
    pub(super) as_parent: Arc<dyn Parent>,
    pub(super) window: Arc<parking_lot::Mutex<RestartWindow>>,
    /// Set when this incarnation starts stopping all its children for good:
    /// from then on nothing is restarted, by the supervisor or in place.
    pub(super) terminating: Arc<AtomicBool>,
    /// Whether this incarnation reported its start.
    pub(super) started: bool,
    pub(super) children: Vec<Child>,
    pub(super) deferred: VecDeque<SupMsg>,
    pub(super) timers: Vec<Timer>,
    pub(super) jitter: Jitter,
    pub(super) bus: Arc<Bus>,
    pub(super) node: Arc<Node>,
    /// What the watchdog samples, when this supervisor has a hang timeout.
    pub(super) pulse: Option<Arc<Pulse>>,
    /// Set while the loop works (see [`Sup::busy`]).
    pub(super) entered: Option<InHook>,
    /// A nested supervisor hung while this one waited for it: nothing is
    /// started from now on, and this supervisor ends with that reason.
    pub(super) poison: Option<ExitReason>,
}

/// The payload that unwinds a fenced supervisor's loop to
/// `SupervisorBody::run`, which ends it quietly. Raised with
/// `resume_unwind`, so the panic hook does not log it.
struct Fenced;

impl Sup {
    pub(super) fn run(&mut self, link: &Link, generation: u64, specs: &[ChildSpec]) -> (ExitReason, bool) {
        for spec in specs {
            self.push_child(spec.clone());
        }
        // By key: a temporary child that answers ignore is removed.
        let keys: Vec<u64> = self.children.iter().map(|c| c.key).collect();
        for (n, &key) in keys.iter().enumerate() {
            if let Err(reason) = self.start_child_then(key, keys.get(n + 1).copied()) {
                if let Some(poison) = self.poison.take() {
                    self.stop_all();
                    return (poison, false);
                }
                let child = self.index(key).map(|i| self.children[i].path.to_string()).unwrap_or_default();
                log::error!(target: "vigil", "{child} failed to start: {reason}");
                self.stop_all();
                return (ExitReason::ChildStartFailed { child, cause: Box::new(reason) }, false);
            }
        }
        self.fence();
        link.started(generation);
        self.started = true;
        (self.serve(generation), true)
    }

    /// Marks the start of the loop's own work for the watchdog: from here
    /// until [`idle`](Sup::idle), the supervisor can be declared hung.
    pub(super) fn busy(&mut self) {
        if let (Some(pulse), None) = (&self.pulse, &self.entered) {
            self.entered = Some(pulse.enter(Hook::Supervisor));
        }
    }

    /// Marks a legitimate wait: for the inbox, or for a child's start or
    /// stop within its timeout. A supervisor the watchdog declared hung
    /// stops here.
    pub(super) fn idle(&mut self) {
        if let (Some(pulse), Some(entered)) = (&self.pulse, self.entered.take())
            && !pulse.leave(entered)
        {
            resume_unwind(Box::new(Fenced));
        }
    }

    /// Stops here if the watchdog declared this supervisor hung: called
    /// before anything that starts, stops or reports a child, or writes the
    /// node, so that a loop resuming after the fence does none of it.
    pub(super) fn fence(&self) {
        if self.pulse.as_ref().is_some_and(|pulse| pulse.is_fenced()) {
            resume_unwind(Box::new(Fenced));
        }
    }

    /// Stops the children after this supervisor's own code panicked, so none
    /// is left running unsupervised. If stopping in order panics too, every
    /// child is asked to stop and left to end on its own.
    pub(super) fn stop_after_panic(&mut self) {
        if catch_unwind(AssertUnwindSafe(|| self.stop_all())).is_ok()
            || self.pulse.as_ref().is_some_and(|p| p.is_fenced())
        {
            return;
        }
        for child in &mut self.children {
            if let Some(stop) = &child.stop {
                stop.store(true, Ordering::Relaxed);
            }
            child.spec.body.wake(child.generation);
            let thread = child.runner.take().and_then(Runner::abandon);
            self.bus.abandoned(&child.path, thread);
        }
    }

    pub(super) fn serve(&mut self, generation: u64) -> ExitReason {
        loop {
            let msg = match self.deferred.pop_front() {
                Some(msg) => Some(msg),
                None => {
                    self.idle();
                    let msg = match self.timers.iter().filter_map(|t| t.at).min() {
                        Some(at) => self.inbox.recv_deadline(at).ok(),
                        None => self.inbox.recv().ok(),
                    };
                    self.busy();
                    msg
                }
            };
            let outcome = match msg {
                None => Ok(()),
                Some(SupMsg::Stop { generation: g }) if g == generation => {
                    self.stop_all();
                    // A nested supervisor that hung while stopping is not
                    // to be started again by whoever stops this one.
                    return self.poison.take().unwrap_or(ExitReason::Shutdown);
                }
                Some(SupMsg::Stop { .. }) => Ok(()),
                Some(SupMsg::Child(Report::Started { key, generation })) => {
                    self.on_started_in_place(key, generation);
                    Ok(())
                }
                Some(SupMsg::Child(Report::Exited { key, generation, reason })) => {
                    self.on_exit(key, generation, reason)
                }
                Some(SupMsg::Child(Report::Hung { key, generation, reason })) => self.on_hung(key, generation, reason),
                Some(SupMsg::Child(Report::Restarted { key, generation, reason, count, started })) => {
                    self.on_restarted_in_place(key, generation, reason, count);
                    if started {
                        self.on_started_in_place(key, generation);
                    }
                    Ok(())
                }
                Some(SupMsg::Retry { key, reason }) => self.on_retry(key, reason),
                Some(SupMsg::Control { control, caller }) => {
                    self.on_control(control, caller);
                    Ok(())
                }
            };
            self.fence();
            if let Err(escalation) = outcome {
                return escalation;
            }
            if let Some(poison) = self.poison.take() {
                return self.escalate(poison);
            }
            self.fire_timers();
        }
    }

    pub(super) fn index(&self, key: u64) -> Option<usize> {
        self.children.iter().position(|c| c.key == key)
    }

    pub(super) fn find(&self, id: &str) -> Option<usize> {
        self.children.iter().position(|c| c.spec.common.id == id)
    }

    pub(super) fn push_child(&mut self, spec: ChildSpec) {
        self.fence();
        let key = next_key();
        let path: Arc<str> = format!("{}/{}", self.path, spec.common.id).into();
        let child = Child {
            key,
            spec,
            path,
            runner: None,
            generation: 0,
            incarnations: 0,
            stop: None,
            state: ChildState::Restarting,
            since: None,
            attempt: 0,
            restarts: VecDeque::new(),
            restarts_total: 0,
            last_exit: None,
        };
        self.node.inner.lock().rows.push(row(&child));
        self.children.push(child);
    }

    pub(super) fn sync(&self, i: usize) {
        self.fence();
        let child = &self.children[i];
        let mut node = self.node.inner.lock();
        if let Some(slot) = node.rows.iter_mut().find(|r| r.key == child.key) {
            *slot = row(child);
        }
    }

    /// Keeps child `i`'s spec, stopped for good: its mailbox refuses
    /// messages and its runner's thread ends, until `restart_child`.
    pub(super) fn keep_stopped(&mut self, i: usize) {
        let child = &mut self.children[i];
        child.state = ChildState::Stopped;
        child.spec.body.close();
        if let Some(runner) = child.runner.take() {
            runner.quit();
        }
        self.sync(i);
    }

    pub(super) fn remove(&mut self, i: usize) {
        let mut child = self.children.remove(i);
        child.spec.body.close();
        if let Some(runner) = child.runner.take() {
            runner.quit();
        }
        self.fence();
        self.node.inner.lock().rows.retain(|r| r.key != child.key);
        for timer in &mut self.timers {
            timer.group.retain(|&k| k != child.key);
        }
    }
}

fn row(child: &Child) -> Row {
    Row {
        key: child.key,
        id: child.spec.common.id.clone(),
        path: child.path.to_string(),
        restart: child.spec.common.restart,
        significant: child.spec.common.significant,
        state: child.state,
        restarts: child.restarts.iter().copied().collect(),
        restarts_total: child.restarts_total,
        last_exit: child.last_exit.clone(),
        since: child.since,
        common: child.spec.common.clone(),
        body: Arc::clone(&child.spec.body),
    }
}
