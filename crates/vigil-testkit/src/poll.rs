//! Waiting on a condition with a deadline.

use std::time::{Duration, Instant};

/// How long a test waits for something that should happen quickly. Generous:
/// it is only reached when a test fails, and the machine may be a loaded
/// 2-core one.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How often the helpers re-check their condition.
const INTERVAL: Duration = Duration::from_millis(2);

/// Polls `pred` every 2 ms until it holds or `deadline` passes; returns
/// whether it held. The deadline saturates, so `Duration::MAX` waits forever.
///
/// ```
/// use std::time::Duration;
/// let mut n = 0;
/// assert!(vigil_testkit::poll(Duration::from_secs(5), || { n += 1; n == 3 }));
/// assert!(!vigil_testkit::poll(Duration::ZERO, || false));
/// ```
pub fn poll(deadline: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    let end = start.checked_add(deadline);
    loop {
        if pred() {
            return true;
        }
        if end.is_some_and(|end| Instant::now() >= end) {
            return false;
        }
        std::thread::sleep(INTERVAL);
    }
}

/// [`poll`] with the [`DEADLINE`]: whether `pred` came to hold in time.
///
/// ```
/// let mut n = 0;
/// assert!(vigil_testkit::eventually(|| { n += 1; n == 2 }));
/// ```
pub fn eventually(pred: impl FnMut() -> bool) -> bool {
    poll(DEADLINE, pred)
}

/// Polls `pred` until it holds.
///
/// # Panics
///
/// Panics naming `what` if `pred` does not hold after [`DEADLINE`].
///
/// ```
/// let mut n = 0;
/// vigil_testkit::wait_until("the third look", || { n += 1; n == 3 });
/// ```
pub fn wait_until(what: &str, pred: impl FnMut() -> bool) {
    assert!(eventually(pred), "timed out after {DEADLINE:?} waiting until {what}");
}
