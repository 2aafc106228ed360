//! Bounded adaptive spinning before a thread parks.
//!
//! On a virtual machine, waking a parked thread costs tens of microseconds
//! (a futex wake, an inter-processor interrupt, a halted vCPU resumed by the
//! hypervisor), while a round trip between two threads that stay awake costs
//! well under a microsecond. crossbeam-channel spins before it parks, but
//! briefly, and then calls `sched_yield` four times, which on a loaded
//! machine hands the core to another process for a whole time slice (see
//! docs/performance.md). A caller waiting for a reply, or a runner waiting
//! for its next request, often waits just longer than the spin, and the
//! other side then pays the wake-up.
//!
//! A [`Spinner`] polls for a bounded time before the blocking wait, and
//! adapts that time to what waiting recently cost, as glibc's adaptive mutex
//! and tokio's workers do:
//!
//! - it starts at zero, so a thread that waits long (an idle actor, one of
//!   10,000 in a tree) never spins;
//! - a blocking wait that ended soon ([`Outcome::Parked`] no longer than
//!   [`MAX_SPIN`]) shows that spinning that long would have saved the park:
//!   the limit grows to cover it;
//! - a long blocking wait halves the limit;
//! - a spin that ran out forgets the limit and stops spinning for a few
//!   waits, twice as many after each further failure (up to 64), so that a
//!   waiter whose answers stopped coming quickly soon parks at once again;
//! - a spin that was descheduled (the cores are contended: spinning only
//!   takes a core from the thread it waits for, and the scheduler takes it
//!   back for a whole time slice) fails the same way, and the spinner then
//!   does not spin again until it has waited [`QUIET_FACTOR`] times the time
//!   it lost, so that time lost to preemption while spinning stays below
//!   1/32 of the time spent waiting;
//! - a spin that found its value keeps the limit and ends the cool-downs.
//!
//! The limit never exceeds [`MAX_SPIN`], so a spinning thread wastes at most
//! that much CPU per wait, about the cost of the wake-up it tries to avoid.
//!
//! A spin never yields the core. crossbeam's backoff calls `sched_yield`,
//! and Linux's EEVDF scheduler answers a yield by pushing the thread's
//! deadline a whole slice back: with another runnable thread on the core,
//! the yielder is off the core for about a millisecond, whatever it waits
//! for. Yielding spins made `call_rtt_loaded` bimodal (6.5 µs or 17–62 µs
//! per call); see docs/performance.md.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};

/// The longest a [`Spinner`] spins before it parks: about what a wake-up
/// costs on a virtual machine, so spinning at most doubles a wait's cost.
pub(crate) const MAX_SPIN: Duration = Duration::from_micros(50);

/// The least a short park sets the limit to: a spin shorter than this
/// rarely outlasts the other side's work.
const MIN_SPIN: Duration = Duration::from_micros(2);

/// A gap between two clock readings while spinning longer than this means
/// the spinning thread was descheduled: the cores are contended.
const PREEMPTED: Duration = Duration::from_micros(20);

/// After a spin that was descheduled for a time `lost`, the spinner waits
/// without spinning for `QUIET_FACTOR × lost` (counted in time spent
/// waiting), so that preemptions while spinning cost at most 1/32 of the
/// time spent waiting on a machine whose cores stay contended.
const QUIET_FACTOR: u32 = 32;

/// The pause between polls doubles from one `spin_loop` hint up to this,
/// as crossbeam's `Backoff` does (a reply from another core is seen within
/// a fraction of a microsecond), and stays there until the time limit. A
/// [`Pace::Stream`] spin pauses this long from its first poll on.
const MAX_PAUSES: u32 = 64;

/// How soon a spin polls, and so how often it reads the cache line the
/// other side is writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pace {
    /// One answer is awaited: a reply, a report, the next request after a
    /// call. The first poll comes after one `spin_loop` hint and the pause
    /// doubles up to [`MAX_PAUSES`], as crossbeam's `Backoff` does, so the
    /// answer is seen within a fraction of a microsecond.
    Answer,
    /// The next message of a stream of `tell`s. Every poll comes after
    /// [`MAX_PAUSES`] hints. Each poll of an empty mailbox reads the slot and
    /// the tail the producer writes next, and takes their cache lines from
    /// its core. A runner that caught up with its producer and polled at
    /// once kept taking them, one message at a time. On this project's
    /// 2-vCPU test host that held `tell_throughput` at 3.9–5.7 M msg/s,
    /// against 12.3–14.7 M msg/s when polling every 64 hints
    /// (docs/performance.md, issue 18).
    Stream,
}

impl Pace {
    /// The pause before the first poll, in `spin_loop` hints.
    const fn first_pauses(self) -> u32 {
        match self {
            Pace::Answer => 1,
            Pace::Stream => MAX_PAUSES,
        }
    }
}

/// A failed spin stops spinning for this many waits, doubled at each
/// further failure up to [`MAX_COOLDOWN`], and back to this after a spin
/// that paid off.
const COOLDOWN: u32 = 4;

/// The most waits a run of failed spins stops spinning for.
const MAX_COOLDOWN: u32 = 64;

/// How one wait ended, as [`Spinner::next`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The value came while spinning.
    Spun,
    /// The spin ran out: the other side was not about to answer.
    Failed,
    /// The thread was descheduled while spinning, and off the core for
    /// this long: the cores are contended.
    Preempted(Duration),
    /// The thread did not spin (the limit is zero, or it is cooling down
    /// after failed spins) and blocked for this long.
    Parked(Duration),
}

/// What a spin found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Spun<T> {
    /// The value.
    Ready(T),
    /// The thread did not spin.
    Skipped,
    /// The limit ran out.
    Expired,
    /// The thread was descheduled while spinning, and off the core for
    /// this long.
    Preempted(Duration),
}

/// One waiting thread's spin policy. Keep one per waiter (per caller
/// thread, per runner) so each adapts to its own waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spinner {
    /// How long the next spin may last.
    limit: Duration,
    /// Waits left before spinning again, after a failed spin.
    cooldown: u32,
    /// The cool-down the next failed spin starts.
    next_cooldown: u32,
    /// Time left to spend waiting before spinning again, after a spin that
    /// was descheduled.
    quiet: Duration,
}

impl Default for Spinner {
    fn default() -> Spinner {
        Spinner::new()
    }
}

impl Spinner {
    /// A spinner that does not spin until a short blocking wait shows it
    /// would pay off.
    pub(crate) const fn new() -> Spinner {
        Spinner { limit: Duration::ZERO, cooldown: 0, next_cooldown: COOLDOWN, quiet: Duration::ZERO }
    }

    /// The policy after a wait that ended with `outcome`. Pure, so that it
    /// is tested without threads.
    #[must_use]
    pub(crate) fn next(self, outcome: Outcome) -> Spinner {
        let mut next = self;
        match outcome {
            Outcome::Spun => next.next_cooldown = COOLDOWN,
            // Forget the limit: once the cool-down is over, the next park
            // measures afresh how long a spin would have needed.
            Outcome::Failed => {
                next.limit = Duration::ZERO;
                next.cooldown = self.next_cooldown;
                next.next_cooldown = self.next_cooldown.saturating_mul(2).min(MAX_COOLDOWN);
            }
            Outcome::Preempted(lost) => {
                next = self.next(Outcome::Failed);
                next.quiet = self.quiet.max(lost.saturating_mul(QUIET_FACTOR));
            }
            // Quiet after a preemption: the wait counts towards the quiet
            // time, and a short one teaches nothing.
            Outcome::Parked(waited) if !self.quiet.is_zero() => next.quiet = self.quiet.saturating_sub(waited),
            Outcome::Parked(_) if self.cooldown > 0 => next.cooldown = self.cooldown - 1,
            // Spinning for about this long would have saved the park (the
            // wait includes the wake-up, so this errs on the long side).
            Outcome::Parked(waited) if waited <= MAX_SPIN => {
                next.limit = self.limit.max(waited.saturating_mul(2)).clamp(MIN_SPIN, MAX_SPIN);
            }
            // A long wait: an idle actor, a slow answer. Spinning would
            // only have burnt a core.
            Outcome::Parked(_) => next.limit = self.limit / 2,
        }
        next
    }

    /// Whether the next wait spins, and for how long.
    fn budget(&self) -> Option<Duration> {
        (self.cooldown == 0 && self.quiet.is_zero() && !self.limit.is_zero()).then_some(self.limit)
    }

    /// Waits for a value: `poll` once, then `poll` while spinning for at
    /// most the current limit, then `park` (a blocking wait, which must poll
    /// again itself). Adapts the policy to how the wait went.
    pub(crate) fn wait<T>(&mut self, mut poll: impl FnMut() -> Option<T>, park: impl FnOnce() -> T) -> T {
        if let Some(value) = poll() {
            return value;
        }
        self.wait_polled(Pace::Answer, poll, park)
    }

    /// As [`Spinner::wait`], for a caller whose own poll just found
    /// nothing: spins at `pace`, then parks.
    pub(crate) fn wait_polled<T>(
        &mut self,
        pace: Pace,
        mut poll: impl FnMut() -> Option<T>,
        park: impl FnOnce() -> T,
    ) -> T {
        let start = Instant::now();
        match self.spin(start, pace, &mut poll, &mut Instant::now) {
            Spun::Ready(value) => {
                *self = self.next(Outcome::Spun);
                return value;
            }
            Spun::Expired => {
                *self = self.next(Outcome::Failed);
                return park();
            }
            Spun::Preempted(lost) => {
                *self = self.next(Outcome::Preempted(lost));
                return park();
            }
            Spun::Skipped => {}
        }
        let value = park();
        *self = self.next(Outcome::Parked(start.elapsed()));
        value
    }

    /// Polls at `pace` until a value comes, the limit (from `start`) runs
    /// out, or a gap between clock readings shows the thread was
    /// descheduled. `now` is the clock, injected for tests.
    pub(crate) fn spin<T>(
        &self,
        start: Instant,
        pace: Pace,
        poll: &mut impl FnMut() -> Option<T>,
        now: &mut impl FnMut() -> Instant,
    ) -> Spun<T> {
        let Some(limit) = self.budget() else {
            return Spun::Skipped;
        };
        let mut last = start;
        let mut pauses = pace.first_pauses();
        loop {
            for _ in 0..pauses {
                std::hint::spin_loop();
            }
            pauses = (pauses * 2).min(MAX_PAUSES);
            if let Some(value) = poll() {
                return Spun::Ready(value);
            }
            let t = now();
            let gap = t.saturating_duration_since(last);
            if gap > PREEMPTED {
                return Spun::Preempted(gap);
            }
            if t.saturating_duration_since(start) >= limit {
                return Spun::Expired;
            }
            last = t;
        }
    }
}

thread_local! {
    /// The spinner of the waits a thread makes on others: a caller's for
    /// its replies, a supervisor's for its children's reports.
    static THIS_THREAD: std::cell::Cell<Spinner> = const { std::cell::Cell::new(Spinner::new()) };
}

/// [`Spinner::wait`] with the current thread's own spinner, so that it
/// adapts across the thread's waits. From a thread-local destructor, where
/// that spinner is gone, it parks without spinning.
pub(crate) fn wait<T>(poll: impl FnMut() -> Option<T>, park: impl FnOnce() -> T) -> T {
    match THIS_THREAD.try_with(std::cell::Cell::get) {
        Ok(mut spinner) => {
            let value = spinner.wait(poll, park);
            let _ = THIS_THREAD.try_with(|cell| cell.set(spinner));
            value
        }
        Err(_) => park(),
    }
}

/// The next message of `rx` by `deadline` (`None`: no deadline), or `None`
/// once the deadline passed or every sender is gone: [`wait`] with a
/// `try_recv` poll and crossbeam's blocking receive.
pub(crate) fn recv<T>(rx: &Receiver<T>, deadline: Option<Instant>) -> Option<T> {
    let poll = || match rx.try_recv() {
        Ok(msg) => Some(Some(msg)),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Disconnected) => Some(None),
    };
    wait(poll, || match deadline {
        Some(deadline) => rx.recv_deadline(deadline).ok(),
        None => rx.recv().ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    fn spinning(limit: Duration) -> Spinner {
        Spinner { limit, ..Spinner::new() }
    }

    #[test]
    fn a_short_park_grows_the_limit_to_cover_it_up_to_the_maximum() {
        let zero = Spinner::new();
        assert_eq!(zero.next(Outcome::Parked(10 * US)).limit, 20 * US);
        assert_eq!(zero.next(Outcome::Parked(Duration::ZERO)).limit, MIN_SPIN);
        assert_eq!(zero.next(Outcome::Parked(40 * US)).limit, MAX_SPIN);
        assert_eq!(spinning(30 * US).next(Outcome::Parked(10 * US)).limit, 30 * US);
        assert_eq!(spinning(MAX_SPIN).next(Outcome::Parked(MAX_SPIN)).limit, MAX_SPIN);
    }

    #[test]
    fn a_long_park_halves_the_limit_and_repeated_ones_bring_it_to_zero() {
        assert_eq!(spinning(40 * US).next(Outcome::Parked(MAX_SPIN + US)).limit, 20 * US);
        let mut spinner = spinning(MAX_SPIN);
        for _ in 0..40 {
            spinner = spinner.next(Outcome::Parked(Duration::from_secs(3600)));
        }
        assert_eq!(spinner.limit, Duration::ZERO);
        assert_eq!(spinner.budget(), None);
    }

    #[test]
    fn a_spin_that_paid_off_keeps_the_limit_and_resets_the_cooldown() {
        let failed = spinning(20 * US).next(Outcome::Failed).next(Outcome::Failed);
        assert_eq!(failed.next_cooldown, 4 * COOLDOWN);
        let spun = spinning(20 * US).next(Outcome::Spun);
        assert_eq!((spun.limit, spun.budget()), (20 * US, Some(20 * US)));
        assert_eq!(failed.next(Outcome::Spun).next_cooldown, COOLDOWN);
    }

    #[test]
    fn a_failed_spin_forgets_the_limit_and_cools_down_for_longer_each_time() {
        let mut spinner = spinning(40 * US).next(Outcome::Failed);
        assert_eq!((spinner.limit, spinner.cooldown), (Duration::ZERO, COOLDOWN));
        // Cooling down: no spin, and short parks teach nothing.
        for _ in 0..COOLDOWN {
            assert_eq!(spinner.budget(), None);
            spinner = spinner.next(Outcome::Parked(US));
        }
        assert_eq!(spinner.budget(), None);
        // Then the next park sets the limit afresh.
        spinner = spinner.next(Outcome::Parked(5 * US));
        assert_eq!(spinner.budget(), Some(10 * US));
        // The next failure cools down twice as long, up to the maximum.
        spinner = spinner.next(Outcome::Failed);
        assert_eq!(spinner.cooldown, 2 * COOLDOWN);
        for _ in 0..20 {
            spinner = spinner.next(Outcome::Failed);
        }
        assert_eq!(spinner.cooldown, MAX_COOLDOWN);
    }

    #[test]
    fn a_preempted_spin_waits_out_32_times_the_time_it_lost_before_spinning_again() {
        let ms = Duration::from_millis(1);
        let mut spinner = spinning(40 * US).next(Outcome::Preempted(ms));
        assert_eq!((spinner.limit, spinner.cooldown, spinner.quiet), (Duration::ZERO, COOLDOWN, 32 * ms));
        // The quiet time is spent waiting; short parks teach nothing and do
        // not count down the cool-down meanwhile.
        for left in [22, 12, 2] {
            assert_eq!(spinner.budget(), None);
            spinner = spinner.next(Outcome::Parked(10 * ms));
            assert_eq!((spinner.quiet, spinner.cooldown), (left * ms, COOLDOWN));
        }
        spinner = spinner.next(Outcome::Parked(US)).next(Outcome::Parked(5 * ms));
        assert_eq!(spinner.quiet, Duration::ZERO);
        // Then the cool-down, then the next short park sets the limit afresh.
        for _ in 0..COOLDOWN {
            assert_eq!(spinner.budget(), None);
            spinner = spinner.next(Outcome::Parked(US));
        }
        spinner = spinner.next(Outcome::Parked(5 * US));
        assert_eq!(spinner.budget(), Some(10 * US));
        // A longer preemption never shortens a quiet time already running,
        // and a huge one saturates instead of overflowing.
        let quiet = spinning(MAX_SPIN).next(Outcome::Preempted(ms)).next(Outcome::Preempted(US)).quiet;
        assert_eq!(quiet, 32 * ms);
        assert_eq!(Spinner::new().next(Outcome::Preempted(Duration::MAX)).quiet, Duration::MAX);
    }

    /// A clock that advances by `step` at every reading.
    fn stepping(step: Duration) -> (Instant, impl FnMut() -> Instant) {
        let start = Instant::now();
        let mut t = start;
        (start, move || {
            t += step;
            t
        })
    }

    #[test]
    fn a_zero_limit_never_polls() {
        let (start, mut now) = stepping(US);
        let mut polls = 0;
        let mut poll = || {
            polls += 1;
            Some(())
        };
        assert_eq!(Spinner::new().spin(start, Pace::Answer, &mut poll, &mut now), Spun::Skipped);
        let cooling = spinning(MAX_SPIN).next(Outcome::Failed);
        assert_eq!(cooling.spin(start, Pace::Answer, &mut poll, &mut now), Spun::Skipped);
        assert_eq!(polls, 0);
    }

    /// Both paces poll the same way against the clock; they differ only in
    /// the pauses between polls, which the clock does not see.
    const PACES: [Pace; 2] = [Pace::Answer, Pace::Stream];

    #[test]
    fn the_spin_returns_the_value_it_polled() {
        for pace in PACES {
            let (start, mut now) = stepping(US);
            let mut polls = 0;
            let mut poll = || {
                polls += 1;
                (polls == 5).then_some(polls)
            };
            assert_eq!(spinning(10 * US).spin(start, pace, &mut poll, &mut now), Spun::Ready(5), "{pace:?}");
        }
    }

    #[test]
    fn the_spin_expires_at_its_limit() {
        for pace in PACES {
            let (start, mut now) = stepping(US);
            let mut polls = 0u32;
            let mut poll = || -> Option<()> {
                polls += 1;
                None
            };
            assert_eq!(spinning(10 * US).spin(start, pace, &mut poll, &mut now), Spun::Expired, "{pace:?}");
            // One poll per clock reading, one microsecond apart.
            assert_eq!(polls, 10, "{pace:?}");
        }
    }

    #[test]
    fn a_gap_in_the_clock_ends_the_spin_as_preempted() {
        for pace in PACES {
            let (start, mut now) = stepping(PREEMPTED + US);
            let spun = spinning(MAX_SPIN).spin::<()>(start, pace, &mut || None, &mut now);
            assert_eq!(spun, Spun::Preempted(PREEMPTED + US), "{pace:?}");
        }
    }

    #[test]
    fn a_stream_waits_the_longest_pause_before_its_first_poll_an_answer_the_shortest() {
        assert_eq!(Pace::Stream.first_pauses(), MAX_PAUSES);
        assert_eq!(Pace::Answer.first_pauses(), 1);
    }

    #[test]
    fn recv_takes_a_message_or_gives_up_at_the_deadline_or_a_hang_up() {
        let (tx, rx) = crossbeam_channel::unbounded();
        tx.send(1).unwrap();
        assert_eq!(recv(&rx, None), Some(1));
        let soon = Instant::now() + Duration::from_millis(5);
        assert_eq!(recv(&rx, Some(soon)), None);
        let sender = std::thread::spawn(move || tx.send(2).unwrap());
        assert_eq!(recv(&rx, Some(Instant::now() + Duration::from_secs(30))), Some(2));
        sender.join().unwrap();
        // Every sender is gone.
        assert_eq!(recv(&rx, None), None);
    }

    #[test]
    fn waiting_adapts_the_policy_to_how_the_wait_ended() {
        let mut spinner = Spinner::new();
        // Ready at once: nothing learned.
        assert_eq!(spinner.wait(|| Some(1), || 2), 1);
        assert_eq!(spinner, Spinner::new());
        // A park that ended at once (the blocking wait returns a value
        // immediately): the limit grows.
        assert_eq!(spinner.wait(|| None, || 3), 3);
        assert!(spinner.limit >= MIN_SPIN && spinner.limit <= MAX_SPIN);
        // A spin that finds nothing fails: the spinner forgets its limit
        // and cools down.
        assert_eq!(spinner.wait(|| None, || 4), 4);
        assert_eq!((spinner.limit, spinner.cooldown), (Duration::ZERO, COOLDOWN));
        // A value that comes while spinning is taken from the spin.
        let mut spinner = spinning(MAX_SPIN);
        let mut polls = 0;
        let value = spinner.wait(
            || {
                polls += 1;
                (polls == 3).then_some(5)
            },
            || 6,
        );
        // (6 if the spin was descheduled on a loaded machine.)
        assert!(value == 5 || value == 6);
    }
}
