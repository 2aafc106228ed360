//! A millisecond wall clock that costs one atomic load to read.
//!
//! Reading the system clock costs 20 ns or more — several times a lock-free
//! queue push — so `emit` does not do it. One background thread per process
//! (`vigil-events-clock`, started with the first pipeline) stores the Unix
//! time in milliseconds into an atomic every millisecond while events are
//! being emitted, and emitters read that.
//! When no thread has reserved a block of sequence numbers for a second, the
//! ticker goes idle (it checks ten times a second whether activity resumed)
//! and emitters read the system clock themselves, which is fine at that rate.
//!
//! The stamp can lag the real time by the ticker's scheduling latency: about a
//! millisecond, more on an overloaded machine. If the thread cannot be
//! spawned, emitters read the system clock.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::ledger::unix_ms;
use crate::local::seq_watermark;

static NOW_MS: AtomicU64 = AtomicU64::new(0);
static TICKING: AtomicBool = AtomicBool::new(false);
static START: Once = Once::new();

const TICK: Duration = Duration::from_millis(1);
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Ticks without activity before going idle.
const IDLE_AFTER: u32 = 1000;

/// Starts the ticker thread once per process.
pub(crate) fn start() {
    START.call_once(|| {
        let spawned = std::thread::Builder::new().name("vigil-events-clock".into()).spawn(tick);
        if let Err(e) = spawned {
            log::warn!(target: "vigil::events", "cannot start the coarse clock thread ({e}); emit reads the system clock");
        }
    });
}

/// The current Unix time in milliseconds, to within about a millisecond.
#[inline]
pub(crate) fn now_ms() -> u64 {
    if TICKING.load(Ordering::Acquire) { NOW_MS.load(Ordering::Relaxed) } else { unix_ms() }
}

fn tick() {
    let mut seen = seq_watermark();
    let mut quiet = 0u32;
    // A pipeline was just built: events are likely to follow.
    NOW_MS.store(unix_ms(), Ordering::Relaxed);
    TICKING.store(true, Ordering::Release);
    loop {
        let mark = seq_watermark();
        let active = mark != seen;
        seen = mark;
        if TICKING.load(Ordering::Relaxed) {
            NOW_MS.store(unix_ms(), Ordering::Relaxed);
            quiet = if active { 0 } else { quiet + 1 };
            if quiet >= IDLE_AFTER {
                TICKING.store(false, Ordering::Release);
                quiet = 0;
            }
            std::thread::sleep(TICK);
        } else if active {
            NOW_MS.store(unix_ms(), Ordering::Relaxed);
            TICKING.store(true, Ordering::Release);
        } else {
            std::thread::sleep(IDLE_POLL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_time_tracks_the_system_clock() {
        start();
        // Whether ticking or not, the stamp is close to the real time.
        for _ in 0..200 {
            crate::local::next_seq();
            let before = unix_ms();
            let t = now_ms();
            let after = unix_ms();
            // Generous: the ticker may be starved on a loaded machine.
            assert!(t + 1000 >= before && t <= after, "{before} <= {t} <= {after}");
        }
    }
}
