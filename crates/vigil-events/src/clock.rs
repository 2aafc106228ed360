//! Time as the batcher's state machine sees it, so tests can drive it.

use std::time::{Duration, Instant};

/// `t + d`, or a point a century later when that overflows `Instant` (a
/// `Duration::MAX` setting means "never").
pub(crate) fn later(t: Instant, d: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    t.checked_add(d).or_else(|| t.checked_add(CENTURY)).unwrap_or(t)
}

/// A source of `now` and a way to wait.
pub(crate) trait Clock {
    fn now(&self) -> Instant;
    fn sleep(&self, d: Duration);
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_saturates() {
        let now = Instant::now();
        assert_eq!(later(now, Duration::from_secs(1)), now + Duration::from_secs(1));
        assert!(later(now, Duration::MAX) > now + Duration::from_secs(365 * 24 * 3600));
    }
}

#[cfg(test)]
pub(crate) mod manual {
    use super::*;
    use parking_lot::Mutex;

    /// A clock that only moves when told to (or when something sleeps on it).
    #[derive(Debug)]
    pub(crate) struct ManualClock {
        now: Mutex<Instant>,
    }

    impl ManualClock {
        pub(crate) fn new() -> ManualClock {
            ManualClock { now: Mutex::new(Instant::now()) }
        }

        pub(crate) fn advance(&self, d: Duration) {
            *self.now.lock() += d;
        }
    }

    impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
        fn now(&self) -> Instant {
            (**self).now()
        }

        fn sleep(&self, d: Duration) {
            (**self).sleep(d);
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.now.lock()
        }

        fn sleep(&self, d: Duration) {
            self.advance(d);
        }
    }
}
