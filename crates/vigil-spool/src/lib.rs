//! vigil-spool: a durable, checksummed, segmented on-disk spool for
//! synchronous services, with crash recovery.
//!
//! # How the pieces fit
//!
//! [`open`] locks a directory, recovers what is in it and returns four things:
//!
//! - a [`SpoolWriter`] that appends records (byte payloads) under contiguous
//!   sequence numbers that continue across restarts, and syncs them under a
//!   [`SyncPolicy`];
//! - a [`SpoolReader`] that reads them back in order and acknowledges the
//!   ones resolved, which writes the checkpoint and deletes segments whose
//!   records are all acknowledged;
//! - a [`SpoolStatus`] to see from any thread how far durability has reached;
//! - a [`Recovery`] report: records pending from before, records lost to
//!   damage, bytes cut off torn tails, and the counters kept with the last
//!   checkpoint.
//!
//! Writer and reader are plain values driven by the caller (vigil-events
//! drives the writer from a supervised actor and the reader from its
//! batcher). The one thread the spool starts is the writer's sync thread:
//! under the default [`SyncPolicy::Interval`] it runs the `fdatasync`s, so
//! that writing goes on while the disk flushes (see [`SpoolWriter`]).
//!
//! # On disk
//!
//! A directory holds:
//!
//! - `lock`: `flock`ed while the spool is open, so a second process gets
//!   [`SpoolError::Locked`]. The kernel releases it when the process dies,
//!   `kill -9` included.
//! - `id`: the spool's stable random id.
//! - `NNNNNNNNNNNNNNNNNNNN.seg`: append-only segment files named after the
//!   first sequence number they hold. A record is a 20-byte header (magic
//!   `VGS1`, CRC-32C of what follows it, payload length, sequence number)
//!   and the payload.
//! - `checkpoint`: the first sequence number not yet acknowledged, the next
//!   one to assign, and the caller's counters, with a CRC-32C; replaced
//!   atomically by rename.
//!
//! # What a crash can lose
//!
//! Nothing that [`SpoolWriter::write`] returned for, when the process dies
//! (the kernel holds the data). After a power cut, what was written since
//! the last sync: nothing under [`SyncPolicy::EveryWrite`], at most the
//! interval under [`SyncPolicy::Interval`]. Acknowledgements since the last
//! checkpoint are lost too, so those records are read again: delivery is at
//! least once, and a receiver de-duplicates by the spool id and sequence
//! number.
//!
//! # Recovery
//!
//! Every segment is scanned. A record whose checksum fails, or bytes that do
//! not parse, are skipped by searching for the next valid record; the
//! records lost are counted by the gap in sequence numbers (which are
//! contiguous), at least one per damaged region; a damaged tail is cut off
//! and counted by the record headers in it, at least one. Nothing panics on
//! bad data.

mod checkpoint;
mod config;
mod error;
mod record;
mod spool;

pub use config::{SpoolConfig, SyncPolicy};
pub use error::SpoolError;
pub use record::{MAX_RECORD_BYTES, RECORD_OVERHEAD};
pub use spool::{Item, Recovery, SpoolReader, SpoolStatus, SpoolWriter, open};

use std::time::{Duration, Instant};

/// `t + d`, or a century later when that overflows.
pub(crate) fn later(t: Instant, d: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    t.checked_add(d).or_else(|| t.checked_add(CENTURY)).unwrap_or(t)
}
