//! What a supervisor does when a child exits: the restart rule
//! (`crate::restart`), the intensity, the strategy's group, backoff timers,
//! retries through the inbox, and giving up.

use std::time::{Duration, Instant};

use super::MAX_INTENSITY;
use super::run::{Sup, Timer};
use crate::exit::ExitReason;
use crate::format::human;
use crate::intensity::Verdict;
use crate::observe::{ChildKind, ChildState, SupervisionEvent};
use crate::protocol::SupMsg;
use crate::restart::{self, AutoShutdown, Decision, Restart, decide};

impl Sup {
    pub(super) fn on_exit(&mut self, key: u64, generation: u64, reason: ExitReason) -> Result<(), ExitReason> {
        let Some(i) = self.index(key) else { return Ok(()) };
        let child = &mut self.children[i];
        if child.generation != generation || !matches!(child.state, ChildState::Running | ChildState::Starting) {
            return Ok(());
        }
        if reason == ExitReason::Ignored {
            // A restart in place whose start answered ignore: not an exit
            // of a running child, so neither a restart nor an auto shutdown.
            self.ignored(i);
            return Ok(());
        }
        let uptime = child.since.take().map(|since| since.elapsed());
        child.last_exit = Some(reason.clone());
        let path = child.path.to_string();
        self.bus.publish(|| SupervisionEvent::Exited { path, reason: reason.clone() });
        if let ExitReason::HungSupervisor { supervisor, .. } = &reason {
            log::warn!(target: "vigil", "{} exited: {supervisor} hung; {} gives up", child.path, self.path);
            return Err(self.unrecoverable(i, reason));
        }
        let restart = child.spec.common.restart;
        let decision = decide(restart, &reason, self.dynamic);
        if decision == Decision::Restart {
            // The restart line that follows names the reason.
            log::debug!(target: "vigil", "{} exited: {reason}", child.path);
        } else if reason.is_normal() {
            log::info!(target: "vigil", "{} exited: {reason} ({restart:?}, not restarted)", child.path);
        } else {
            log::warn!(target: "vigil", "{} exited: {reason} ({restart:?}, not restarted)", child.path);
        }
        let (significant, ended) = (child.spec.common.significant, child.path.to_string());
        match decision {
            Decision::Remove => {
                self.remove(i);
                return self.auto_shutdown_after(significant, &ended);
            }
            Decision::Keep => {
                self.keep_stopped(i);
                return self.auto_shutdown_after(significant, &ended);
            }
            Decision::Restart => {}
        }
        if let (Some(backoff), Some(uptime)) = (&child.spec.common.backoff, uptime)
            && uptime >= backoff.reset_uptime()
        {
            child.attempt = 0;
        }
        child.state = ChildState::Restarting;
        self.sync(i);
        let group = self.group(i);
        self.restart(key, reason, group)
    }

    /// A child ended for good (it exited and is not restarted): if it was
    /// significant and this supervisor's `auto_shutdown` condition now
    /// holds, stop every child in reverse order and end with `Shutdown`, as
    /// OTP's `do_auto_shutdown`. A child waiting for its restart still
    /// counts as alive, as OTP's `{restarting, Pid}`.
    fn auto_shutdown_after(&mut self, significant: bool, path: &str) -> Result<(), ExitReason> {
        let met = significant
            && match self.auto_shutdown {
                AutoShutdown::Never => false,
                AutoShutdown::AnySignificant => true,
                AutoShutdown::AllSignificant => {
                    !self.children.iter().any(|c| c.spec.common.significant && c.state != ChildState::Stopped)
                }
            };
        if !met {
            return Ok(());
        }
        log::info!(
            target: "vigil",
            "{} shuts down: significant child {path} ended (auto_shutdown {:?})",
            self.path,
            self.auto_shutdown
        );
        self.stop_all();
        Err(ExitReason::Shutdown)
    }

    /// The watchdog declared child `key` hung and fenced its runner: abandon
    /// that thread, then handle the exit like any other, unless too many
    /// abandoned threads are running already, in which case give up.
    pub(super) fn on_hung(&mut self, key: u64, generation: u64, reason: ExitReason) -> Result<(), ExitReason> {
        let Some(i) = self.index(key) else { return Ok(()) };
        let child = &self.children[i];
        // A stale report: that runner was abandoned already.
        if child.generation != generation || !matches!(child.state, ChildState::Running | ChildState::Starting) {
            return Ok(());
        }
        let running = self.abandon_hung(i, &reason);
        let limit = self.bus.max_abandoned;
        let child = &mut self.children[i];
        let path = child.path.to_string();
        let hung = hung_line(&path, &reason);
        if child.spec.body.kind() == ChildKind::Supervisor {
            // Its children still run under it and own their mailboxes: a
            // replacement would start a second set on the same mailboxes.
            log::warn!(target: "vigil", "{hung}; not replaced while its children run: {} gives up ({running} abandoned threads still running)", self.path);
            let reason = ExitReason::HungSupervisor { supervisor: path.clone(), cause: Box::new(reason) };
            self.bus.publish(|| SupervisionEvent::Exited { path, reason: reason.clone() });
            return Err(self.unrecoverable(i, reason));
        }
        if running > limit {
            log::warn!(target: "vigil", "{hung}; not replaced: {running} abandoned threads still running, limit {limit}");
            child.since = None;
            child.last_exit = Some(reason.clone());
            child.state = ChildState::Restarting;
            self.sync(i);
            let published = path.clone();
            self.bus.publish(|| SupervisionEvent::Exited { path: published, reason: reason.clone() });
            let escalation = ExitReason::AbandonedLimit {
                supervisor: self.path.to_string(),
                limit,
                child: path,
                cause: Box::new(reason),
            };
            return Err(self.escalate(escalation));
        }
        let fate = if decide(child.spec.common.restart, &reason, self.dynamic) == Decision::Restart {
            "replaced on a new thread"
        } else {
            "not restarted"
        };
        log::warn!(target: "vigil", "{hung}; {fate} ({running} abandoned threads still running)");
        self.on_exit(key, generation, reason)
    }

    /// Child `i` ended with [`ExitReason::HungSupervisor`]: it is stopped
    /// for good, without waiting for it, and this supervisor gives up with
    /// the same reason, so that every supervisor up to the root does.
    fn unrecoverable(&mut self, i: usize, reason: ExitReason) -> ExitReason {
        let child = &mut self.children[i];
        child.since = None;
        child.last_exit = Some(reason.clone());
        child.state = ChildState::Stopped;
        self.sync(i);
        self.escalate(reason)
    }

    pub(super) fn limits(&self) -> (u32, Duration) {
        let window = self.window.lock();
        (window.intensity(), window.period())
    }

    /// Counts a restart in the totals. The window itself counts the restarts
    /// within the period, for the intensity rule and for `stats()` alike.
    pub(super) fn count_restart(&self) {
        self.node.inner.lock().restarts_total += 1;
    }

    /// Counts, logs and publishes one restart of child `i`.
    pub(super) fn announce_restart(
        &mut self,
        i: usize,
        now: Instant,
        count: u32,
        delay: Duration,
        reason: &ExitReason,
    ) {
        let (intensity, period) = self.limits();
        let child = &mut self.children[i];
        child.restarts_total += 1;
        child.restarts.push_back(now);
        if child.restarts.len() > 64 {
            child.restarts.pop_front();
        }
        // "no limit" and "no backoff" read better than 1000000 and 0µs.
        let limit = if intensity >= MAX_INTENSITY {
            format!("{count} in {}, no limit", human(period))
        } else {
            format!("{count} of {intensity} in {}", human(period))
        };
        let backoff = if delay.is_zero() { "no backoff".to_owned() } else { format!("backoff {}", human(delay)) };
        log::warn!(target: "vigil", "restarting {} ({limit}, {backoff}): {reason}", child.path);
        let path = child.path.to_string();
        self.sync(i);
        self.bus.publish(|| SupervisionEvent::Restarting {
            path,
            restarts: count,
            intensity,
            period,
            backoff: delay,
            reason: reason.clone(),
        });
    }

    /// A runner restarted its child in place: account for it as if this
    /// supervisor had done it.
    pub(super) fn on_restarted_in_place(&mut self, key: u64, generation: u64, reason: ExitReason, count: u32) {
        let Some(i) = self.index(key) else { return };
        let child = &mut self.children[i];
        if child.generation != generation || !matches!(child.state, ChildState::Running | ChildState::Starting) {
            return;
        }
        let now = Instant::now();
        child.since = None;
        child.state = ChildState::Starting;
        child.incarnations += 1;
        child.last_exit = Some(reason.clone());
        log::debug!(target: "vigil", "{} exited: {reason}", child.path);
        let path = child.path.to_string();
        self.bus.publish(|| SupervisionEvent::Exited { path, reason: reason.clone() });
        self.count_restart();
        self.announce_restart(i, now, count, Duration::ZERO, &reason);
    }

    /// The start report of an incarnation that its runner restarted in place.
    pub(super) fn on_started_in_place(&mut self, key: u64, generation: u64) {
        let Some(i) = self.index(key) else { return };
        let child = &mut self.children[i];
        if child.generation != generation || child.state != ChildState::Starting {
            return;
        }
        child.state = ChildState::Running;
        child.since = Some(Instant::now());
        let (path, incarnation) = (child.path.to_string(), child.incarnations - 1);
        self.sync(i);
        self.bus.publish(|| SupervisionEvent::Started { path, incarnation });
    }

    /// The keys of the children that restart with child `i`, in start order.
    pub(super) fn group(&self, i: usize) -> Vec<u64> {
        self.children[restart::group(self.strategy, i, self.children.len())].iter().map(|c| c.key).collect()
    }

    /// Applies the intensity rule and the strategy after `failed` exited, or
    /// after its restart failed. `Err` is the escalation when the supervisor
    /// gives up.
    pub(super) fn restart(&mut self, failed: u64, reason: ExitReason, mut group: Vec<u64>) -> Result<(), ExitReason> {
        let now = Instant::now();
        let verdict = self.window.lock().record(now);
        let count = match verdict {
            Verdict::GiveUp { .. } => return Err(self.give_up(failed, reason)),
            Verdict::Restart { count } => count,
        };
        self.count_restart();
        // Siblings stopped by the strategy do not count as restarts.
        for &key in group.iter().rev() {
            if key == failed {
                continue;
            }
            if let Some(j) = self.index(key) {
                self.stop_child(j, ChildState::Restarting);
                if self.children[j].spec.common.restart == Restart::Temporary {
                    self.remove(j);
                }
            }
        }
        group.retain(|&k| self.index(k).is_some());
        let Some(i) = self.index(failed) else { return Ok(()) };
        let child = &mut self.children[i];
        let delay = match child.spec.common.backoff {
            Some(backoff) => {
                let delay = backoff.delay(child.attempt, self.jitter.next_f64());
                child.attempt = child.attempt.saturating_add(1);
                delay
            }
            None => Duration::ZERO,
        };
        self.announce_restart(i, now, count, delay, &reason);
        if delay.is_zero() {
            self.start_group(&group);
        } else {
            for timer in &mut self.timers {
                timer.group.retain(|k| !group.contains(k));
            }
            self.timers.retain(|t| !t.group.is_empty());
            // A delay past the clock's range never fires: the child waits
            // until the supervisor stops.
            self.timers.push(Timer { at: now.checked_add(delay), group });
        }
        Ok(())
    }

    /// Starts the waiting members of a group in order. When one fails to
    /// start, the ones started so far stay up and the failed one is retried
    /// through the inbox ([`SupMsg::Retry`]), as OTP's
    /// `restart_multiple_children` and `try_again_restart`: the retry restarts
    /// the failed child's own group again (for rest-for-one, from the failed
    /// child on; for one-for-all, everything).
    pub(super) fn start_group(&mut self, group: &[u64]) {
        for (n, &key) in group.iter().enumerate() {
            let Some(i) = self.index(key) else { continue };
            if self.children[i].state != ChildState::Restarting {
                continue;
            }
            if let Err(reason) = self.start_child_then(key, group.get(n + 1).copied()) {
                log::warn!(target: "vigil", "{} failed to restart: {reason}", self.children[i].path);
                let path = self.children[i].path.to_string();
                self.bus.publish(|| SupervisionEvent::Exited { path, reason: reason.clone() });
                let _ = self.self_tx.send(SupMsg::Retry { key, reason });
                return;
            }
        }
    }

    /// A retry of a failed restart comes round: restart the child's group
    /// again, counting toward the intensity, unless something else already
    /// restarted, stopped or removed the child meanwhile.
    pub(super) fn on_retry(&mut self, key: u64, reason: ExitReason) -> Result<(), ExitReason> {
        let Some(i) = self.index(key) else { return Ok(()) };
        if self.children[i].state != ChildState::Restarting {
            return Ok(());
        }
        let group = self.group(i);
        self.restart(key, reason, group)
    }

    pub(super) fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(pos) = self.timers.iter().position(|t| t.at.is_some_and(|at| at <= now)) {
            let timer = self.timers.swap_remove(pos);
            self.start_group(&timer.group);
        }
    }

    pub(super) fn give_up(&mut self, failed: u64, reason: ExitReason) -> ExitReason {
        let child = self.index(failed).map(|i| self.children[i].path.to_string()).unwrap_or_default();
        let (intensity, period) = self.limits();
        log::error!(
            target: "vigil",
            "{} giving up: more than {intensity} restarts in {}; last: {child}: {reason}",
            self.path,
            human(period),
        );
        let escalation = ExitReason::Escalated {
            supervisor: self.path.to_string(),
            intensity,
            period,
            child,
            cause: Box::new(reason),
        };
        self.escalate(escalation)
    }

    /// Gives up: publishes it, stops every child, and returns the exit to
    /// report to the parent.
    pub(super) fn escalate(&mut self, escalation: ExitReason) -> ExitReason {
        let path = self.path.to_string();
        self.bus.publish(|| SupervisionEvent::GaveUp { path, reason: escalation.clone() });
        self.stop_all();
        escalation
    }
}

/// `root/db/worker-2 hung in handle (message QueryMsg) for 30s`.
fn hung_line(path: &str, reason: &ExitReason) -> String {
    match reason {
        ExitReason::Hung { hook, message_type, elapsed } => {
            let message =
                message_type.map(|ty| format!(" (message {})", crate::exit::short_type(ty))).unwrap_or_default();
            format!("{path} hung in {hook}{message} for {}", human(*elapsed))
        }
        other => format!("{path}: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Hook;

    #[test]
    fn the_hang_line_names_the_child_the_hook_the_message_and_the_time() {
        let reason = ExitReason::Hung {
            hook: Hook::Handle,
            message_type: Some("app::db::QueryMsg"),
            elapsed: Duration::from_secs(30),
        };
        assert_eq!(
            hung_line("root/db/worker-2", &reason),
            "root/db/worker-2 hung in handle (message QueryMsg) for 30s"
        );
        let timeout =
            ExitReason::Hung { hook: Hook::Timeout, message_type: None, elapsed: Duration::from_millis(2500) };
        assert_eq!(hung_line("root/events/batcher", &timeout), "root/events/batcher hung in timeout for 2.5s");
    }
}
