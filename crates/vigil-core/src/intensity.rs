//! The restart-intensity rule, exactly as OTP's `supervisor:add_restart/1`.
//!
//! One sliding window of restart times per supervisor. On each restart
//! decision the supervisor adds `now`, drops the entries older than the
//! period, and gives up if more than `intensity` entries remain. The clock is
//! injected: callers pass `now`, so the rule is a pure function of its inputs.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What the window says about one restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The restart may go ahead. `count` restarts (this one included) fall in
    /// the current period.
    Restart {
        /// Restarts in the window, this one included.
        count: u32,
    },
    /// More than `intensity` restarts in the period: the supervisor gives up
    /// without doing this restart.
    GiveUp {
        /// Restarts in the window, this one included.
        count: u32,
    },
}

/// A sliding window of restart times: OTP's `add_restart`, exactly. The
/// unit tests below and a property test against a model of the OTP rule pin it.
#[derive(Debug, Clone)]
pub(crate) struct RestartWindow {
    intensity: u32,
    period: Duration,
    times: VecDeque<Instant>,
}

impl RestartWindow {
    /// A window allowing `intensity` restarts in any `period`.
    pub(crate) fn new(intensity: u32, period: Duration) -> RestartWindow {
        RestartWindow { intensity, period, times: VecDeque::new() }
    }

    /// Records a restart at `now` and says whether it may go ahead.
    ///
    /// Entries with `time < now - period` are dropped first (an entry exactly
    /// `period` old still counts, as in OTP).
    pub(crate) fn record(&mut self, now: Instant) -> Verdict {
        self.expire(now);
        self.times.push_back(now);
        let count = u32::try_from(self.times.len()).unwrap_or(u32::MAX);
        if count > self.intensity { Verdict::GiveUp { count } } else { Verdict::Restart { count } }
    }

    /// What [`record`](RestartWindow::record) would say at `now`, without
    /// recording anything.
    pub(crate) fn peek(&mut self, now: Instant) -> Verdict {
        self.expire(now);
        let count = u32::try_from(self.times.len() + 1).unwrap_or(u32::MAX);
        if count > self.intensity { Verdict::GiveUp { count } } else { Verdict::Restart { count } }
    }

    /// Records a restart at `now` only if the intensity allows it, and gives
    /// its count in the window; `None` leaves the window unchanged. A runner
    /// that restarts its child in place uses it, and leaves a restart that
    /// would break the limit to its supervisor, which gives up.
    pub(crate) fn admit(&mut self, now: Instant) -> Option<u32> {
        match self.peek(now) {
            Verdict::GiveUp { .. } => None,
            Verdict::Restart { count } => {
                self.times.push_back(now);
                Some(count)
            }
        }
    }

    /// The number of restarts within the period ending at `now`.
    pub(crate) fn count(&mut self, now: Instant) -> u32 {
        self.expire(now);
        u32::try_from(self.times.len()).unwrap_or(u32::MAX)
    }

    /// The configured intensity.
    pub(crate) fn intensity(&self) -> u32 {
        self.intensity
    }

    /// The configured period.
    pub(crate) fn period(&self) -> Duration {
        self.period
    }

    fn expire(&mut self, now: Instant) {
        // `checked_sub` fails only when `now` is closer to the clock's origin
        // than `period`; then nothing can be older than the period.
        let Some(threshold) = now.checked_sub(self.period) else { return };
        while self.times.front().is_some_and(|&t| t < threshold) {
            self.times.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The OTP rule written as directly as possible: keep every restart time
    /// ever seen, count the ones inside the period.
    fn model(intensity: u32, period: u64, history: &[u64], now: u64) -> bool {
        let in_window = history.iter().filter(|&&t| t + period >= now).count() + 1;
        in_window as u32 > intensity
    }

    #[test]
    fn exactly_intensity_restarts_pass_and_one_more_gives_up() {
        let t0 = Instant::now();
        let mut window = RestartWindow::new(3, Duration::from_secs(5));
        for n in 1..=3 {
            assert_eq!(window.record(t0 + Duration::from_millis(n)), Verdict::Restart { count: n as u32 });
        }
        assert_eq!(window.record(t0 + Duration::from_millis(4)), Verdict::GiveUp { count: 4 });
    }

    #[test]
    fn an_entry_exactly_one_period_old_still_counts() {
        let t0 = Instant::now();
        let mut window = RestartWindow::new(1, Duration::from_secs(5));
        window.record(t0);
        assert_eq!(window.record(t0 + Duration::from_secs(5)), Verdict::GiveUp { count: 2 });
        let mut window = RestartWindow::new(1, Duration::from_secs(5));
        window.record(t0);
        assert_eq!(window.record(t0 + Duration::from_secs(5) + Duration::from_nanos(1)), Verdict::Restart { count: 1 });
    }

    proptest! {
        #[test]
        fn matches_the_otp_model(intensity in 1u32..6, period in 1u64..50, gaps in proptest::collection::vec(0u64..20, 1..60)) {
            let t0 = Instant::now();
            let mut window = RestartWindow::new(intensity, Duration::from_millis(period));
            let mut history: Vec<u64> = Vec::new();
            let mut now = 0;
            for gap in gaps {
                now += gap;
                let expected_give_up = model(intensity, period, &history, now);
                let window_before = window.clone();
                let peeked = window.peek(t0 + Duration::from_millis(now));
                let verdict = window.record(t0 + Duration::from_millis(now));
                prop_assert_eq!(peeked, verdict);
                let mut admitted = window_before.clone();
                prop_assert_eq!(admitted.admit(t0 + Duration::from_millis(now)).is_some(), !expected_give_up);
                prop_assert_eq!(matches!(verdict, Verdict::GiveUp { .. }), expected_give_up);
                history.push(now);
                if expected_give_up {
                    // A supervisor that gives up is gone; start a fresh one.
                    window = RestartWindow::new(intensity, Duration::from_millis(period));
                    history.clear();
                }
            }
        }
    }
}
