//! Starting and stopping one child, synchronously, within its timeouts; a
//! child that does not stop in time is abandoned.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::run::Sup;
use crate::exit::ExitReason;
use crate::format::human;
use crate::link::{Link, Report};
use crate::observe::{ChildState, SupervisionEvent};
use crate::protocol::SupMsg;
use crate::restart::{Restart, Strategy};
use crate::runner::{FastRestart, Runner};

impl Sup {
    /// Starts a child and waits for its start hook, within its start timeout.
    pub(super) fn start_child(&mut self, key: u64) -> Result<(), ExitReason> {
        let Some(i) = self.index(key) else { return Ok(()) };
        let link =
            Link::new(Arc::clone(&self.as_parent), key, Arc::clone(&self.children[i].path), Arc::clone(&self.bus));
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
            match Runner::spawn(child.spec.body.incarnation(), link, child.spec.common.stack_size) {
                Ok(runner) => {
                    started = runner.start(generation, incarnation, stop, fast);
                    child.runner = Some(runner);
                }
                Err(error) => {
                    child.state = ChildState::Restarting;
                    let reason = ExitReason::Spawn { error: error.to_string() };
                    child.last_exit = Some(reason.clone());
                    self.sync(i);
                    return Err(reason);
                }
            }
        }
        if !started {
            let reason = ExitReason::Spawn { error: "the runner thread ended unexpectedly".to_owned() };
            self.children[i].state = ChildState::Restarting;
            return Err(reason);
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
                Ok(())
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

    /// Asks a running child to stop and waits for it, within its shutdown
    /// timeout; abandons it after that. Leaves it in `next` state.
    pub(super) fn stop_child(&mut self, i: usize, next: ChildState) {
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
    /// other message for later.
    pub(super) fn wait_for(&mut self, key: u64, generation: u64, timeout: Duration, exit_only: bool) -> Option<SupMsg> {
        let matches = |msg: &SupMsg| match msg {
            SupMsg::Child(Report::Started { key: k, generation: g }) => !exit_only && *k == key && *g == generation,
            SupMsg::Child(Report::Exited { key: k, generation: g, .. }) => *k == key && *g == generation,
            _ => false,
        };
        if let Some(pos) = self.deferred.iter().position(matches) {
            return self.deferred.remove(pos);
        }
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let msg = match deadline {
                Some(deadline) => self.inbox.recv_deadline(deadline).ok()?,
                None => self.inbox.recv().ok()?,
            };
            if matches(&msg) {
                return Some(msg);
            }
            self.deferred.push_back(msg);
        }
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
            self.stop_child(i, ChildState::Stopped);
            // Let each thread end while the next child stops; joined below.
            if let Some(runner) = &self.children[i].runner {
                runner.request_quit();
            }
        }
        for child in &mut self.children {
            if let Some(runner) = child.runner.take() {
                runner.quit();
            }
        }
    }
}
