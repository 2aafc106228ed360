//! A small watch channel: the latest value and a change notification, for
//! threads (no async runtime).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

struct Slot<T> {
    value: T,
    version: u64,
    closed: bool,
}

struct Shared<T> {
    slot: Mutex<Slot<T>>,
    changed: Condvar,
}

/// Makes a watch channel holding `initial`: one [`Publisher`] that replaces
/// the value, any number of [`Watch`]es that read it and wait for changes.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let (publisher, mut watch) = vigil_health::watch(1);
/// let reader = std::thread::spawn(move || {
///     assert!(watch.changed(Duration::from_secs(30)));
///     watch.get()
/// });
/// publisher.publish(2);
/// assert_eq!(reader.join().unwrap(), 2);
/// ```
pub fn watch<T: Clone>(initial: T) -> (Publisher<T>, Watch<T>) {
    let shared = Arc::new(Shared {
        slot: Mutex::new(Slot { value: initial, version: 0, closed: false }),
        changed: Condvar::new(),
    });
    (Publisher { shared: Arc::clone(&shared) }, Watch { shared, seen: 0 })
}

/// The sending side of a [`watch`]: replaces the value and wakes the
/// watchers. Dropping it closes the channel (the last value stays readable).
pub struct Publisher<T> {
    shared: Arc<Shared<T>>,
}

impl<T> fmt::Debug for Publisher<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher").field("version", &self.shared.slot.lock().version).finish()
    }
}

impl<T: Clone> Publisher<T> {
    /// Replaces the value and wakes every watcher waiting in
    /// [`Watch::changed`].
    ///
    /// # Examples
    ///
    /// ```
    /// let (publisher, watch) = vigil_health::watch("starting");
    /// publisher.publish("ready");
    /// assert_eq!(watch.get(), "ready");
    /// ```
    pub fn publish(&self, value: T) {
        let mut slot = self.shared.slot.lock();
        slot.value = value;
        slot.version = slot.version.wrapping_add(1);
        drop(slot);
        self.shared.changed.notify_all();
    }

    /// A new watcher of this channel, which has seen the current value.
    ///
    /// # Examples
    ///
    /// ```
    /// let (publisher, _) = vigil_health::watch(0);
    /// publisher.publish(7);
    /// assert_eq!(publisher.subscribe().get(), 7);
    /// ```
    pub fn subscribe(&self) -> Watch<T> {
        let seen = self.shared.slot.lock().version;
        Watch { shared: Arc::clone(&self.shared), seen }
    }
}

impl<T> Drop for Publisher<T> {
    fn drop(&mut self) {
        self.shared.slot.lock().closed = true;
        self.shared.changed.notify_all();
    }
}

/// The reading side of a [`watch`]. Cheap to clone; each clone remembers
/// which version it has seen.
pub struct Watch<T> {
    shared: Arc<Shared<T>>,
    seen: u64,
}

impl<T> Clone for Watch<T> {
    fn clone(&self) -> Watch<T> {
        Watch { shared: Arc::clone(&self.shared), seen: self.seen }
    }
}

impl<T> fmt::Debug for Watch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch").field("seen", &self.seen).finish()
    }
}

impl<T: Clone> Watch<T> {
    /// The latest value, marked as seen.
    ///
    /// # Examples
    ///
    /// ```
    /// let (_publisher, watch) = vigil_health::watch(3);
    /// assert_eq!(watch.get(), 3);
    /// ```
    pub fn get(&self) -> T {
        self.shared.slot.lock().value.clone()
    }

    /// Waits at most `timeout` for a value newer than the last one this
    /// watcher saw through `changed`; true if there is one (read it with
    /// [`get`](Watch::get)). False on timeout, or at once when the publisher
    /// is gone and nothing newer is left. A `timeout` too large for the clock
    /// waits without a deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let (publisher, mut watch) = vigil_health::watch(0);
    /// assert!(!watch.changed(Duration::from_millis(1)));
    /// publisher.publish(1);
    /// assert!(watch.changed(Duration::ZERO));
    /// drop(publisher);
    /// assert!(!watch.changed(Duration::from_secs(30))); // closed: returns at once
    /// ```
    pub fn changed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut slot = self.shared.slot.lock();
        loop {
            if slot.version != self.seen {
                self.seen = slot.version;
                return true;
            }
            if slot.closed {
                return false;
            }
            match deadline {
                Some(deadline) => {
                    if self.shared.changed.wait_until(&mut slot, deadline).timed_out() && slot.version == self.seen {
                        return false;
                    }
                }
                None => self.shared.changed.wait(&mut slot),
            }
        }
    }

    /// Whether the publisher is gone: the value will not change again.
    ///
    /// # Examples
    ///
    /// ```
    /// let (publisher, watch) = vigil_health::watch(0);
    /// assert!(!watch.is_closed());
    /// drop(publisher);
    /// assert!(watch.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared.slot.lock().closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_from_another_thread_wakes_a_waiter() {
        let (publisher, mut watch) = watch(0u32);
        let waiter = std::thread::spawn(move || {
            let woke = watch.changed(Duration::from_secs(60));
            (woke, watch.get())
        });
        publisher.publish(5);
        assert_eq!(waiter.join().unwrap(), (true, 5));
    }

    #[test]
    fn changed_reports_each_version_once() {
        let (publisher, mut watch) = watch(0u32);
        publisher.publish(1);
        publisher.publish(2);
        assert!(watch.changed(Duration::ZERO));
        assert_eq!(watch.get(), 2);
        assert!(!watch.changed(Duration::ZERO));
    }

    #[test]
    fn a_huge_timeout_still_wakes_on_close() {
        let (publisher, mut watch) = watch(0u32);
        let waiter = std::thread::spawn(move || watch.changed(Duration::MAX));
        drop(publisher);
        assert!(!waiter.join().unwrap());
    }
}
