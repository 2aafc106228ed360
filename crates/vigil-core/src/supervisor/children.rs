//! Starting and stopping one child, synchronously, within its timeouts; a
//! child that does not stop in time is abandoned.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::run::Sup;
use crate::exit::ExitReason;
use crate::format::human;
use crate::link::{Link, Report};
use crate::observe::{ChildKind, ChildState, StartOutcome, SupervisionEvent};
use crate::protocol::SupMsg;
use crate::restart::{Restart, Strategy};
use crate::runner::{FastRestart, Runner};
use crate::spin;
use crate::watchdog::Pulse;

impl Sup {
    /// Starts a child and waits for its start hook, within its start
    /// timeout. A start that answers ignore is handled here (see
    /// [`Sup::ignored`]).
    pub(super) fn start_child(&mut self, key: u64) -> Result<StartOutcome, ExitReason> {
        self.start_child_then(key, None)
    }

    /// As [`Sup::start_child`], and while the child starts, spawns the
    /// runner thread of child `next`, the one to start after it (see
    /// [`Sup::prespawn`]).
    pub(super) fn start_child_then(&mut self, key: u64, next: Option<u64>) -> Result<StartOutcome, ExitReason> {
        self.fence();
        if let Some(poison) = &self.poison {
            return Err(poison.clone());
        }
        // Gone meanwhile (removed by a request or a strategy): nothing runs.
        let Some(i) = self.index(key) else { return Ok(StartOutcome::Ignored) };
        let child = &mut self.children[i];
        child.generation += 1;
        child.state = ChildState::Starting;
        let generation = child.generation;
        let incarnation = child.incarnations;
        child.incarnations += 1;
        let stop = Arc::new(AtomicBool::new(false));
        child.stop = Some(Arc::clone(&stop));
        child.spec.body.reopen();
        let fast = (self.strategy == Strategy::OneForOne
            && child.spec.common.backoff.is_none()
            && child.spec.common.restart != Restart::Temporary)
            .then(|| FastRestart {
                window: Arc::clone(&self.window),
                terminating: Arc::clone(&self.terminating),
                restart: child.spec.common.restart,
            });
        let mut started =
            child.runner.as_ref().is_some_and(|r| r.start(generation, incarnation, Arc::clone(&stop), fast.clone()));
        if !started {
            // No runner yet, or its thread is gone: spawn one.
            if let Err(error) = self.spawn_runner(i) {
                let child = &mut self.children[i];
                child.state = ChildState::Restarting;
                let reason = ExitReason::Spawn { error: error.to_string() };
                child.last_exit = Some(reason.clone());
                self.sync(i);
                return Err(reason);
            }
            started = self.children[i].runner.as_ref().is_some_and(|r| r.start(generation, incarnation, stop, fast));
        }
        if !started {
            let reason = ExitReason::Spawn { error: "the runner thread ended unexpectedly".to_owned() };
            self.children[i].state = ChildState::Restarting;
            return Err(reason);
        }
        if let Some(next) = next {
            self.prespawn(next);
        }
        let timeout = self.children[i].spec.common.start_timeout;
        match self.wait_for(key, generation, timeout, false) {
            Some(SupMsg::Child(Report::Started { .. })) => {
                let child = &mut self.children[i];
                child.state = ChildState::Running;
                child.since = Some(Instant::now());
                log::debug!(target: "vigil", "started {} (incarnation {incarnation})", child.path);
                let path = child.path.to_string();
                self.bus.publish(|| SupervisionEvent::Started { path, incarnation });
                self.sync(i);
                Ok(StartOutcome::Running)
            }
            Some(SupMsg::Child(Report::Exited { reason: ExitReason::Ignored, .. })) => {
                self.ignored(i);
                Ok(StartOutcome::Ignored)
            }
            Some(SupMsg::Child(Report::Exited { reason, .. })) => {
                let child = &mut self.children[i];
                child.state = ChildState::Restarting;
                child.last_exit = Some(reason.clone());
                self.sync(i);
                Err(reason)
            }
            _ => {
                self.abandon(i, timeout);
                self.children[i].state = ChildState::Restarting;
                let reason = ExitReason::StartTimeout { timeout };
                self.children[i].last_exit = Some(reason.clone());
                self.sync(i);
                Err(reason)
            }
        }
    }

    /// Spawns child `i`'s runner thread, under the watchdog if the child
    /// has a hang timeout. The runner waits for its first `Cmd::Start`.
    fn spawn_runner(&mut self, i: usize) -> io::Result<()> {
        let child = &self.children[i];
        let key = child.key;
        let mut link = Link::new(Arc::clone(&self.as_parent), key, Arc::clone(&child.path), Arc::clone(&self.bus));
        if let Some(timeout) = child.spec.common.hang_timeout {
            let pulse = Arc::new(Pulse::new(timeout, child.spec.body.message_type()));
            link.pulse = Some(Arc::clone(&pulse));
            let parent = Arc::clone(&self.as_parent);
            self.bus.watchdog.watch(
                pulse,
                Box::new(move |generation, reason| {
                    parent.report(Report::Hung { key, generation, reason });
                }),
            )?;
        }
        let runner = Runner::spawn(child.spec.body.incarnation(), link, child.spec.common.stack_size)?;
        self.children[i].runner = Some(runner);
        Ok(())
    }

    /// Spawns the runner of child `key`, which is to start next, while the
    /// current child starts: creating a thread costs about as much as a
    /// start's round trip, and this way the two overlap. Nothing of the
    /// child runs before its own start, so OTP's order of starts holds. A
    /// child that is not waiting to start, or already has a runner, is left
    /// alone. A failed spawn is left for the child's own start to report.
    fn prespawn(&mut self, key: u64) {
        if self.poison.is_some() {
            return;
        }
        let Some(i) = self.index(key) else { return };
        let child = &self.children[i];
        if child.state == ChildState::Restarting && child.runner.is_none() {
            let _ = self.spawn_runner(i);
        }
    }

    /// Child `i`'s start answered ignore, as OTP's `{ok, undefined}`: it is
    /// not running and not restarted. Its spec is kept, stopped, for
    /// `restart_child`; a temporary child's, or any child's of a dynamic
    /// supervisor, is removed.
    pub(super) fn ignored(&mut self, i: usize) {
        let child = &mut self.children[i];
        child.state = ChildState::Stopped;
        child.since = None;
        child.last_exit = Some(ExitReason::Ignored);
        let path = child.path.to_string();
        let forget = self.dynamic || child.spec.common.restart == Restart::Temporary;
        log::info!(target: "vigil", "{path} ignored its start: not running{}", if forget { ", removed" } else { "" });
        self.bus.publish(|| SupervisionEvent::Exited { path, reason: ExitReason::Ignored });
        if forget {
            self.remove(i);
        } else {
            self.keep_stopped(i);
        }
    }

    /// Asks a running child to stop and waits for it, within its shutdown
    /// timeout; abandons it after that. Leaves it in `next` state.
    pub(super) fn stop_child(&mut self, i: usize, next: ChildState) {
        self.fence();
        let child = &mut self.children[i];
        // `Starting` here is an incarnation its runner restarted in place;
        // a synchronous start never overlaps a stop.
        if !matches!(child.state, ChildState::Running | ChildState::Starting) {
            child.state = next;
            return;
        }
        if let Some(stop) = &child.stop {
            stop.store(true, Ordering::Relaxed);
        }
        child.spec.body.wake(child.generation);
        let (key, generation, timeout) = (child.key, child.generation, child.spec.common.shutdown);
        match self.wait_for(key, generation, timeout, true) {
            Some(SupMsg::Child(Report::Exited { reason, .. })) => {
                let child = &mut self.children[i];
                log::debug!(target: "vigil", "stopped {}: {reason}", child.path);
                let path = child.path.to_string();
                child.last_exit = Some(reason.clone());
                self.bus.publish(|| SupervisionEvent::Exited { path, reason });
            }
            _ => self.abandon(i, timeout),
        }
        let child = &mut self.children[i];
        child.state = next;
        child.since = None;
        self.sync(i);
    }

    pub(super) fn abandon(&mut self, i: usize, timeout: Duration) {
        self.fence();
        let child = &mut self.children[i];
        if let Some(stop) = &child.stop {
            stop.store(true, Ordering::Relaxed);
        }
        child.spec.body.wake(child.generation);
        let thread = child.runner.take().and_then(Runner::abandon);
        child.since = None;
        log::warn!(
            target: "vigil",
            "abandoned {}: it did not stop within {}; its thread is left running",
            child.path,
            human(timeout)
        );
        let path = child.path.to_string();
        self.bus.abandoned(&path, thread);
        self.node.inner.lock().abandoned += 1;
        self.bus.publish(|| SupervisionEvent::Abandoned { path, timeout });
    }

    /// Waits for the start or exit report of one incarnation, keeping every
    /// other message for later. A hang report counts as the exit: the hung
    /// runner is abandoned here. A nested supervisor that hung, or that
    /// ended because one below it hung, poisons this one (see
    /// [`Sup::poison`]).
    pub(super) fn wait_for(&mut self, key: u64, generation: u64, timeout: Duration, exit_only: bool) -> Option<SupMsg> {
        let msg = self.wait_for_report(key, generation, timeout, exit_only)?;
        let (key, generation, reason) = match msg {
            SupMsg::Child(Report::Hung { key, generation, reason }) => (key, generation, reason),
            SupMsg::Child(Report::Exited { reason: ref reason @ ExitReason::HungSupervisor { .. }, .. }) => {
                self.poison.get_or_insert_with(|| reason.clone());
                return Some(msg);
            }
            msg => return Some(msg),
        };
        let Some(i) = self.index(key) else { return Some(SupMsg::Child(Report::Exited { key, generation, reason })) };
        let running = self.abandon_hung(i, &reason);
        let path = &self.children[i].path;
        if self.children[i].spec.body.kind() == ChildKind::Supervisor {
            log::warn!(target: "vigil", "{path} {reason}; not replaced while its children run: {} gives up ({running} abandoned threads still running)", self.path);
            let poison = ExitReason::HungSupervisor { supervisor: path.to_string(), cause: Box::new(reason.clone()) };
            self.poison.get_or_insert(poison);
        } else {
            log::warn!(target: "vigil", "{path} {reason} ({running} abandoned threads still running)");
        }
        Some(SupMsg::Child(Report::Exited { key, generation, reason }))
    }

    fn wait_for_report(&mut self, key: u64, generation: u64, timeout: Duration, exit_only: bool) -> Option<SupMsg> {
        let matches = |msg: &SupMsg| match msg {
            SupMsg::Child(Report::Started { key: k, generation: g }) => !exit_only && *k == key && *g == generation,
            SupMsg::Child(
                Report::Exited { key: k, generation: g, .. } | Report::Hung { key: k, generation: g, .. },
            ) => *k == key && *g == generation,
            _ => false,
        };
        if let Some(pos) = self.deferred.iter().position(matches) {
            return self.deferred.remove(pos);
        }
        let deadline = Instant::now().checked_add(timeout);
        loop {
            // Waiting for a child within its timeout is not the loop hanging.
            self.idle();
            // Spins first: a child's report often comes within microseconds.
            let msg = spin::recv(&self.inbox, deadline);
            self.busy();
            let msg = msg?;
            if matches(&msg) {
                return Some(msg);
            }
            self.deferred.push_back(msg);
        }
    }

    /// Abandons the runner of child `i`, which the watchdog fenced as hung,
    /// counts and publishes the hang. Returns how many abandoned threads
    /// are still running, this one included.
    pub(super) fn abandon_hung(&mut self, i: usize, reason: &ExitReason) -> usize {
        self.fence();
        let child = &mut self.children[i];
        let thread = child.runner.take().and_then(Runner::abandon);
        let path = child.path.to_string();
        let running = self.bus.hung(&path, thread);
        self.node.inner.lock().hangs += 1;
        if let ExitReason::Hung { hook, message_type, elapsed } = *reason {
            self.bus.publish(|| SupervisionEvent::Hung {
                path,
                hook,
                message_type,
                elapsed,
                abandoned_threads: running,
            });
        }
        running
    }

    /// Stops every child in reverse start order and ends their threads. This
    /// incarnation is terminating: nothing is restarted from here on, by the
    /// supervisor (it reads no more reports) or in place by a runner.
    pub(super) fn stop_all(&mut self) {
        self.terminating.store(true, Ordering::Release);
        // A runner decides an in-place restart under this lock after reading
        // the flag: once we hold it, every later decision sees the flag.
        drop(self.window.lock());
        self.timers.clear();
        for i in (0..self.children.len()).rev() {
            // Queued before the stop, the quit is waiting when the runner
            // has reported the exit, so its thread ends at once, without a
            // second wake-up, while the next child stops. Joined below.
            if let Some(runner) = &self.children[i].runner {
                runner.request_quit();
            }
            self.stop_child(i, ChildState::Stopped);
        }
        for child in &mut self.children {
            if let Some(runner) = child.runner.take() {
                runner.quit();
            }
        }
    }
}
