//! Per-thread state of the emit hot path: sequence numbers and counter stripes.
//!
//! Sequence numbers are unique in the process. They come from one global
//! `AtomicU64`, but a thread reserves them in blocks of [`SEQ_BLOCK`], so the
//! global counter is touched once per block instead of once per event and
//! does not become a contended cache line. The price: numbers increase per
//! thread, not across threads, and a thread that exits leaves a gap.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// How many sequence numbers a thread reserves at a time.
pub(crate) const SEQ_BLOCK: u64 = 64;

/// The number of counter stripes (a power of two).
pub(crate) const STRIPES: usize = 16;

static NEXT_SEQ_BLOCK: AtomicU64 = AtomicU64::new(0);
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

struct Local {
    next: Cell<u64>,
    end: Cell<u64>,
    stripe: Cell<usize>,
}

thread_local! {
    static LOCAL: Local = const {
        Local { next: Cell::new(0), end: Cell::new(0), stripe: Cell::new(usize::MAX) }
    };
}

fn reserve_block() -> u64 {
    NEXT_SEQ_BLOCK.fetch_add(SEQ_BLOCK, Ordering::Relaxed)
}

/// A value that changes whenever some thread reserves sequence numbers.
pub(crate) fn seq_watermark() -> u64 {
    NEXT_SEQ_BLOCK.load(Ordering::Relaxed)
}

/// The next process-unique sequence number.
pub(crate) fn next_seq() -> u64 {
    LOCAL
        .try_with(|l| {
            let next = l.next.get();
            if next < l.end.get() {
                l.next.set(next + 1);
                next
            } else {
                let start = reserve_block();
                l.next.set(start + 1);
                l.end.set(start + SEQ_BLOCK);
                start
            }
        })
        // Only reachable while the thread's locals are being torn down: take
        // a whole block for this one number rather than fail.
        .unwrap_or_else(|_| reserve_block())
}

/// This thread's counter stripe, in `0..STRIPES`.
pub(crate) fn stripe() -> usize {
    LOCAL
        .try_with(|l| {
            let s = l.stripe.get();
            if s != usize::MAX {
                s
            } else {
                let s = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
                l.stripe.set(s);
                s
            }
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn seqs_are_unique_across_threads_and_increase_per_thread() {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    let v: Vec<u64> = (0..1000).map(|_| next_seq()).collect();
                    assert!(v.windows(2).all(|w| w[0] < w[1]), "per-thread order");
                    v
                })
            })
            .collect();
        let mut all = HashSet::new();
        for h in handles {
            for s in h.join().unwrap() {
                assert!(all.insert(s), "duplicate seq {s}");
            }
        }
        assert_eq!(all.len(), 4000);
    }

    #[test]
    fn stripe_is_stable_per_thread_and_in_range() {
        let s = stripe();
        assert!(s < STRIPES);
        assert_eq!(stripe(), s);
    }
}
