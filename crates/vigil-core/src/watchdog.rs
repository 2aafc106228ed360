//! Hang detection: a runner publishes its progress, one watchdog thread per
//! [`System`](crate::System) samples it.
//!
//! The runner side costs no clock read. A runner's [`Pulse`] is one counter:
//! odd while a hook runs, even between hooks. Entering a hook is a plain
//! store, leaving it one atomic add, and a [heartbeat](crate::Context::heartbeat)
//! adds two (the parity stays odd). The watchdog reads the counter every
//! sampling period and remembers when it first saw each odd value: a value
//! that stays odd and unchanged for the child's hang timeout is a hang.
//!
//! Declaring a hang and the hook returning race, and exactly one wins: the
//! watchdog sets the fence bit with a compare-and-swap on the exact odd value
//! it sampled; the runner leaves the hook with an add that returns the value
//! before it. If that value carries the fence bit, the watchdog won: the
//! runner reads no more messages, runs no more hooks and reports nothing. If
//! not, the compare-and-swap failed and there was no hang.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;

use crate::exit::{ExitReason, Hook};

/// Set in a [`Pulse`] counter once its runner has been declared hung.
const FENCED: u64 = 1 << 63;

/// The shortest and longest sampling periods: a tenth of the smallest hang
/// timeout watched, within these bounds.
const MIN_PERIOD: Duration = Duration::from_millis(1);
const MAX_PERIOD: Duration = Duration::from_secs(1);

/// Cancels a pending call whose request a hung hook holds: its caller gets
/// [`CallError::Dropped`](crate::CallError::Dropped) at once.
pub(crate) trait Cancel: Send + Sync {
    fn cancel(&self);
}

/// What one runner thread publishes for the watchdog.
pub(crate) struct Pulse {
    counter: AtomicU64,
    hook: AtomicU8,
    /// The generation the runner serves, for the report to its supervisor.
    generation: AtomicU64,
    /// The pending call whose request is being handled, if any.
    in_flight: Mutex<Option<Arc<dyn Cancel>>>,
    message_type: Option<&'static str>,
    timeout: Duration,
}

impl std::fmt::Debug for Pulse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pulse").field("counter", &self.counter.load(Ordering::Relaxed)).finish()
    }
}

/// A hook entered, to be left with [`Pulse::leave`].
#[must_use]
pub(crate) struct InHook(());

impl Pulse {
    pub(crate) fn new(timeout: Duration, message_type: Option<&'static str>) -> Pulse {
        Pulse {
            counter: AtomicU64::new(0),
            hook: AtomicU8::new(0),
            generation: AtomicU64::new(0),
            in_flight: Mutex::new(None),
            message_type,
            timeout,
        }
    }

    pub(crate) fn set_generation(&self, generation: u64) {
        self.generation.store(generation, Ordering::Relaxed);
    }

    /// Marks the start of a hook. Only the runner thread calls it, between
    /// hooks, when nothing else writes the counter but a heartbeat from
    /// another thread, which may be lost here and is harmless to lose.
    pub(crate) fn enter(&self, hook: Hook) -> InHook {
        // The marker says `handle` unless another hook runs, so the message
        // path writes it only after `started` or `timeout`.
        let code = hook_code(hook);
        if self.hook.load(Ordering::Relaxed) != code {
            self.hook.store(code, Ordering::Relaxed);
        }
        let v = self.counter.load(Ordering::Relaxed) + 1;
        self.counter.store(v, Ordering::Release);
        InHook(())
    }

    /// Marks the end of a hook. False when the watchdog declared it hung
    /// first: the runner is fenced and must stop at once, quietly.
    pub(crate) fn leave(&self, _entered: InHook) -> bool {
        self.counter.fetch_add(1, Ordering::AcqRel) & FENCED == 0
    }

    /// Leaves a hook that unwound without [`leave`](Pulse::leave); false
    /// when fenced. A no-op between hooks.
    pub(crate) fn settle(&self) -> bool {
        let v = self.counter.load(Ordering::Acquire);
        if v & FENCED != 0 {
            return false;
        }
        if v & 1 == 0 {
            return true;
        }
        self.in_flight.lock().take();
        self.leave(InHook(()))
    }

    /// Says the current hook is alive.
    pub(crate) fn beat(&self) {
        // Adding two keeps the parity; from another thread between hooks
        // it changes nothing the watchdog looks at.
        self.counter.fetch_add(2, Ordering::Relaxed);
    }

    pub(crate) fn is_fenced(&self) -> bool {
        self.counter.load(Ordering::Acquire) & FENCED != 0
    }

    /// Records the pending call whose request the next hook handles.
    pub(crate) fn set_in_flight(&self, cancel: Option<Arc<dyn Cancel>>) {
        *self.in_flight.lock() = cancel;
    }
}

fn hook_code(hook: Hook) -> u8 {
    match hook {
        Hook::Start => 1,
        Hook::Timeout => 2,
        Hook::Supervisor => 3,
        _ => 0,
    }
}

fn code_hook(code: u8) -> Hook {
    match code {
        1 => Hook::Start,
        2 => Hook::Timeout,
        3 => Hook::Supervisor,
        _ => Hook::Handle,
    }
}

/// Tells a supervisor that the incarnation `generation` of its child hung.
pub(crate) type ReportHang = Box<dyn Fn(u64, ExitReason) + Send>;

/// A pulse to watch, and whom to tell.
struct Watch {
    pulse: Arc<Pulse>,
    report: ReportHang,
}

/// One pulse under watch.
struct Entry {
    pulse: Arc<Pulse>,
    seen: u64,
    since: Instant,
}

impl Entry {
    /// Samples the pulse at `now`; the exit reason when it is hung and the
    /// fence went up.
    fn sample(&mut self, now: Instant) -> Option<ExitReason> {
        let v = self.pulse.counter.load(Ordering::Acquire);
        if v != self.seen {
            self.seen = v;
            self.since = now;
            return None;
        }
        let elapsed = now.saturating_duration_since(self.since);
        if v & 1 == 0 || elapsed < self.pulse.timeout {
            return None;
        }
        self.pulse.counter.compare_exchange(v, v | FENCED, Ordering::AcqRel, Ordering::Relaxed).ok()?;
        let hook = code_hook(self.pulse.hook.load(Ordering::Relaxed));
        let message_type = if hook == Hook::Handle { self.pulse.message_type } else { None };
        Some(ExitReason::Hung { hook, message_type, elapsed })
    }
}

/// The handle on a system's watchdog thread, spawned on first use.
#[derive(Default)]
pub(crate) struct Watchdog {
    tx: Mutex<Option<Sender<Watch>>>,
    stopped: std::sync::atomic::AtomicBool,
}

impl Watchdog {
    /// Puts a pulse under watch, spawning the thread if needed; `report`
    /// runs on the watchdog's thread when it declares a hang.
    pub(crate) fn watch(&self, pulse: Arc<Pulse>, report: ReportHang) -> std::io::Result<()> {
        let mut tx = self.tx.lock();
        if self.stopped.load(Ordering::Relaxed) {
            return Ok(());
        }
        if tx.is_none() {
            let (sender, rx) = crossbeam_channel::unbounded();
            std::thread::Builder::new().name("vigil:watchdog".to_owned()).spawn(move || run(&rx))?;
            *tx = Some(sender);
        }
        if let Some(tx) = tx.as_ref() {
            let _ = tx.send(Watch { pulse, report });
        }
        Ok(())
    }

    /// Ends the thread (within one sampling period); nothing is watched
    /// from now on.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.tx.lock().take();
    }
}

/// The sampling period for the smallest timeout watched.
fn period(timeout: Duration) -> Duration {
    (timeout / 10).clamp(MIN_PERIOD, MAX_PERIOD)
}

fn run(rx: &Receiver<Watch>) {
    let mut entries: Vec<(Entry, ReportHang)> = Vec::new();
    loop {
        let next = match entries.iter().map(|(e, _)| e.pulse.timeout).min() {
            Some(smallest) => rx.recv_timeout(period(smallest)),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let now = Instant::now();
        match next {
            Ok(Watch { pulse, report }) => {
                let seen = pulse.counter.load(Ordering::Acquire);
                entries.push((Entry { pulse, seen, since: now }, report));
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        // A pulse only the watchdog holds belongs to a runner that ended.
        entries.retain_mut(|(entry, report)| {
            if Arc::strong_count(&entry.pulse) == 1 {
                return false;
            }
            let Some(reason) = entry.sample(now) else { return true };
            let pulse = &entry.pulse;
            if let Some(call) = pulse.in_flight.lock().take() {
                call.cancel();
            }
            report(pulse.generation.load(Ordering::Relaxed), reason);
            false
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pulse(timeout: Duration) -> Arc<Pulse> {
        Arc::new(Pulse::new(timeout, Some("Msg")))
    }

    #[test]
    fn a_hook_unchanged_for_the_timeout_is_hung_and_fenced() {
        let p = pulse(Duration::from_secs(1));
        let t0 = Instant::now();
        let mut entry = Entry { pulse: Arc::clone(&p), seen: 0, since: t0 };
        let entered = p.enter(Hook::Handle);
        assert_eq!(entry.sample(t0), None, "a new value restarts the clock");
        assert_eq!(entry.sample(t0 + Duration::from_millis(999)), None);
        let reason = entry.sample(t0 + Duration::from_secs(1)).expect("hung");
        assert_eq!(
            reason,
            ExitReason::Hung { hook: Hook::Handle, message_type: Some("Msg"), elapsed: Duration::from_secs(1) }
        );
        assert!(!p.leave(entered), "the runner loses the race");
        assert!(p.is_fenced());
    }

    #[test]
    fn a_heartbeat_or_an_idle_runner_is_never_hung() {
        let p = pulse(Duration::from_secs(1));
        let t0 = Instant::now();
        let mut entry = Entry { pulse: Arc::clone(&p), seen: 0, since: t0 };
        assert_eq!(entry.sample(t0 + Duration::from_secs(5)), None, "idle");
        let entered = p.enter(Hook::Timeout);
        assert_eq!(entry.sample(t0 + Duration::from_secs(5)), None);
        p.beat();
        assert_eq!(entry.sample(t0 + Duration::from_secs(9)), None, "beat");
        assert!(p.leave(entered));
        assert!(!p.is_fenced());
    }

    #[test]
    fn a_hook_that_returns_first_wins_the_race() {
        let p = pulse(Duration::from_secs(1));
        let t0 = Instant::now();
        let mut entry = Entry { pulse: Arc::clone(&p), seen: 0, since: t0 };
        let entered = p.enter(Hook::Start);
        assert_eq!(entry.sample(t0), None);
        assert!(p.leave(entered));
        // The watchdog's sample is now stale: no fence goes up.
        assert_eq!(entry.sample(t0 + Duration::from_secs(2)), None);
        assert!(!p.is_fenced());
    }

    #[test]
    fn the_period_is_a_tenth_of_the_timeout_within_bounds() {
        assert_eq!(period(Duration::from_millis(200)), Duration::from_millis(20));
        assert_eq!(period(Duration::from_micros(10)), MIN_PERIOD);
        assert_eq!(period(Duration::MAX), MAX_PERIOD);
    }
}
