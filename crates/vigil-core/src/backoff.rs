//! Exponential restart backoff with jitter, as a pure function.

use std::time::Duration;

/// Exponential backoff between restarts of one child.
///
/// The n-th consecutive restart (n = 0, 1, 2 …) waits
/// `min(max, min_delay * factor^n)`, then a random jitter of up to
/// `random_factor` of that delay is added, and the result is capped at `max`.
/// The counter resets once the child has stayed up for
/// [`reset_after`](Backoff::reset_after).
///
/// The delay is a timer on the supervisor: the supervisor keeps answering
/// queries and shutdown while it runs.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use vigil_core::Backoff;
///
/// let backoff = Backoff::exponential(Duration::from_millis(10), Duration::from_secs(1)).random_factor(0.0);
/// assert_eq!(backoff.delay(0, 0.5), Duration::from_millis(10));
/// assert_eq!(backoff.delay(3, 0.5), Duration::from_millis(80));
/// assert_eq!(backoff.delay(30, 0.5), Duration::from_secs(1));
/// ```
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    factor: f64,
    random_factor: f64,
    reset_after: Duration,
}

impl Backoff {
    /// Exponential backoff from `min` to `max`, doubling each time, with a
    /// random factor of 0.2 and a reset after 10 × `max` of healthy uptime.
    ///
    /// A `min` larger than `max` is reported by the supervisor builder's
    /// `start` as [`ConfigError::Backoff`](crate::ConfigError::Backoff).
    pub fn exponential(min: Duration, max: Duration) -> Backoff {
        Backoff { min, max, factor: 2.0, random_factor: 0.2, reset_after: max.saturating_mul(10) }
    }

    /// The multiplier between consecutive delays. Defaults to 2.0.
    pub fn factor(mut self, factor: f64) -> Backoff {
        self.factor = factor;
        self
    }

    /// The largest share of a delay added as random jitter, from 0.0 to 1.0.
    /// Defaults to 0.2.
    pub fn random_factor(mut self, random_factor: f64) -> Backoff {
        self.random_factor = random_factor;
        self
    }

    /// How long a child must stay up for its backoff counter to reset.
    /// Defaults to 10 × `max`.
    pub fn reset_after(mut self, uptime: Duration) -> Backoff {
        self.reset_after = uptime;
        self
    }

    /// The smallest delay.
    pub fn min(&self) -> Duration {
        self.min
    }

    /// The largest delay.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The uptime after which the counter resets.
    pub fn reset_uptime(&self) -> Duration {
        self.reset_after
    }

    /// The delay before restart number `attempt` (0-based) given a uniform
    /// random number `rand01` in `[0, 1)`. Always within `[min, max]`.
    ///
    /// An invalid backoff (`min > max`, or a factor below 1 or not finite) is
    /// refused by the supervisor builder's `start`; called directly, `delay`
    /// treats `max` as at least `min` and the factor as at least 1, and never
    /// panics.
    pub fn delay(&self, attempt: u32, rand01: f64) -> Duration {
        let min = self.min.as_secs_f64();
        let max = self.max.as_secs_f64().max(min);
        let factor = if self.factor.is_finite() { self.factor.max(1.0) } else { 1.0 };
        let base = (min * factor.powi(attempt.min(1024) as i32)).min(max);
        let random = if self.random_factor.is_nan() { 0.0 } else { self.random_factor.clamp(0.0, 1.0) };
        let rand01 = if rand01.is_nan() { 0.0 } else { rand01.clamp(0.0, 1.0) };
        let secs = (base + base * random * rand01).max(min).min(max);
        Duration::try_from_secs_f64(secs).unwrap_or(self.max.max(self.min))
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.min > self.max {
            return Err(format!("backoff min {:?} is greater than max {:?}", self.min, self.max));
        }
        if !(self.factor >= 1.0 && self.factor.is_finite()) {
            return Err(format!("backoff factor {} must be a finite number >= 1.0", self.factor));
        }
        if !(0.0..=1.0).contains(&self.random_factor) {
            return Err(format!("backoff random factor {} must be within 0.0..=1.0", self.random_factor));
        }
        Ok(())
    }
}

/// A small xorshift generator for jitter. Not for cryptography.
#[derive(Debug, Clone)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn seeded() -> Jitter {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0x9e37_79b9_7f4a_7c15);
        Jitter(hasher.finish() | 1)
    }

    pub(crate) fn next_f64(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grows_exponentially_then_caps() {
        let b = Backoff::exponential(Duration::from_millis(10), Duration::from_millis(100)).random_factor(0.0);
        let delays: Vec<u128> = (0..6).map(|n| b.delay(n, 0.9).as_millis()).collect();
        assert_eq!(delays, vec![10, 20, 40, 80, 100, 100]);
    }

    #[test]
    fn invalid_settings_are_named() {
        let b = Backoff::exponential(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(b.validate().unwrap_err(), "backoff min 2s is greater than max 1s");
        let b = Backoff::exponential(Duration::from_secs(1), Duration::from_secs(2)).factor(0.5);
        assert!(b.validate().unwrap_err().contains("factor 0.5"));
    }

    #[test]
    fn an_invalid_backoff_still_gives_a_delay_without_panicking() {
        let b = Backoff::exponential(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(b.delay(0, 0.5), Duration::from_secs(2));
        let b = Backoff::exponential(Duration::from_millis(1), Duration::from_secs(1))
            .factor(f64::NAN)
            .random_factor(f64::NAN);
        assert_eq!(b.delay(10, f64::NAN), Duration::from_millis(1));
    }

    #[test]
    fn jitter_is_in_unit_interval() {
        let mut j = Jitter::seeded();
        for _ in 0..10_000 {
            let x = j.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
    }

    proptest! {
        #[test]
        fn delay_stays_within_bounds(min_ms in 0u64..1000, extra in 0u64..100_000, factor in 1.0f64..10.0,
                                     random in 0.0f64..=1.0, attempt in 0u32..5000, r in 0.0f64..1.0) {
            let min = Duration::from_millis(min_ms);
            let max = Duration::from_millis(min_ms + extra);
            let b = Backoff::exponential(min, max).factor(factor).random_factor(random);
            let d = b.delay(attempt, r);
            prop_assert!(d >= min && d <= max, "{d:?} outside [{min:?}, {max:?}]");
        }

        #[test]
        fn delay_never_shrinks_as_attempts_grow(attempt in 0u32..60) {
            let b = Backoff::exponential(Duration::from_millis(1), Duration::from_secs(60)).random_factor(0.0);
            prop_assert!(b.delay(attempt + 1, 0.0) >= b.delay(attempt, 0.0));
        }
    }
}
