//! The spool's settings.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::SpoolError;

/// When written records are made durable with `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SyncPolicy {
    /// After every write: nothing acknowledged as durable can be lost, even to
    /// a power cut, at the cost of one `fdatasync` per write.
    EveryWrite,
    /// At most this long after a write (the default: 100 ms). A process crash
    /// loses nothing that was written (the kernel has it); a power cut loses
    /// at most this window.
    Interval(Duration),
    /// Never: the kernel writes back when it likes. A process crash (`kill
    /// -9`, OOM, panic=abort) loses nothing that was written; a power cut may
    /// lose anything not yet written back.
    Os,
}

impl Default for SyncPolicy {
    fn default() -> SyncPolicy {
        SyncPolicy::Interval(Duration::from_millis(100))
    }
}

impl SyncPolicy {
    /// When the next `fdatasync` is due, given the last one at `last_sync`
    /// and unsynced data since; `None` when none is due ever (nothing
    /// unsynced, or [`SyncPolicy::Os`]). Pure: the writer passes its clock.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use vigil_spool::SyncPolicy;
    /// let t = Instant::now();
    /// let every = SyncPolicy::Interval(Duration::from_millis(100));
    /// assert_eq!(every.due(t, true), Some(t + Duration::from_millis(100)));
    /// assert_eq!(every.due(t, false), None);
    /// assert_eq!(SyncPolicy::EveryWrite.due(t, true), Some(t));
    /// assert_eq!(SyncPolicy::Os.due(t, true), None);
    /// ```
    pub fn due(self, last_sync: Instant, unsynced: bool) -> Option<Instant> {
        if !unsynced {
            return None;
        }
        match self {
            SyncPolicy::EveryWrite => Some(last_sync),
            SyncPolicy::Interval(d) => Some(crate::later(last_sync, d)),
            SyncPolicy::Os => None,
        }
    }
}

/// The default segment size: 32 MiB.
const DEFAULT_SEGMENT_BYTES: u64 = 32 * 1024 * 1024;

/// Where and how much to spool.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use vigil_spool::{SpoolConfig, SyncPolicy};
/// let config = SpoolConfig::new("/var/spool/my-service")
///     .max_bytes(1 << 30)
///     .segment_bytes(16 << 20)
///     .sync(SyncPolicy::Interval(Duration::from_millis(50)));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct SpoolConfig {
    pub(crate) dir: PathBuf,
    pub(crate) max_bytes: u64,
    /// `None`: the default, [`DEFAULT_SEGMENT_BYTES`] or `max_bytes` if smaller.
    pub(crate) segment_bytes: Option<u64>,
    pub(crate) sync: SyncPolicy,
}

impl SpoolConfig {
    /// A spool in `dir` (created if missing) with the default limits.
    pub fn new(dir: impl Into<PathBuf>) -> SpoolConfig {
        SpoolConfig { dir: dir.into(), max_bytes: 256 * 1024 * 1024, segment_bytes: None, sync: SyncPolicy::default() }
    }

    /// The most bytes the spool's segments may take on disk. A write past it
    /// fails with [`SpoolError::Full`] until delivered segments are deleted.
    ///
    /// Defaults to 256 MiB.
    pub fn max_bytes(mut self, max_bytes: u64) -> SpoolConfig {
        self.max_bytes = max_bytes;
        self
    }

    /// The size at which the writer starts a new segment file. Segments are
    /// deleted whole once every record in them is acknowledged, so smaller
    /// segments free space sooner; larger ones cost fewer syncs (each
    /// segment's `fdatasync` also writes its inode, and each new file the
    /// directory).
    ///
    /// Defaults to 32 MiB, or `max_bytes` when that is smaller.
    pub fn segment_bytes(mut self, segment_bytes: u64) -> SpoolConfig {
        self.segment_bytes = Some(segment_bytes);
        self
    }

    /// The segment size in effect (see [`segment_bytes`](Self::segment_bytes)).
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_spool::SpoolConfig;
    /// assert_eq!(SpoolConfig::new("/tmp/s").segment_bytes_limit(), 32 << 20);
    /// assert_eq!(SpoolConfig::new("/tmp/s").max_bytes(1 << 20).segment_bytes_limit(), 1 << 20);
    /// ```
    pub fn segment_bytes_limit(&self) -> u64 {
        self.segment_bytes.unwrap_or(DEFAULT_SEGMENT_BYTES.min(self.max_bytes))
    }

    /// When written records are synced to disk.
    ///
    /// Defaults to [`SyncPolicy::Interval`] of 100 ms.
    pub fn sync(mut self, sync: SyncPolicy) -> SpoolConfig {
        self.sync = sync;
        self
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The byte limit (see [`max_bytes`](Self::max_bytes)).
    pub fn max_bytes_limit(&self) -> u64 {
        self.max_bytes
    }

    /// The sync policy.
    pub fn sync_policy(&self) -> SyncPolicy {
        self.sync
    }

    /// Checks that the settings can work.
    ///
    /// # Errors
    ///
    /// [`SpoolError::Config`] naming the field: a zero `segment_bytes` or
    /// `max_bytes`, a `max_bytes` below `segment_bytes`, or a zero sync interval.
    pub fn validate(&self) -> Result<(), SpoolError> {
        let bad = |field, reason| Err(SpoolError::Config { field, reason });
        if self.max_bytes == 0 {
            return bad("max_bytes", "must be greater than zero");
        }
        if self.segment_bytes_limit() == 0 {
            return bad("segment_bytes", "must be greater than zero");
        }
        if self.max_bytes < self.segment_bytes_limit() {
            return bad("max_bytes", "must be at least segment_bytes");
        }
        if self.sync == SyncPolicy::Interval(Duration::ZERO) {
            return bad("sync", "interval must be greater than zero (use SyncPolicy::EveryWrite)");
        }
        if self.dir.as_os_str().is_empty() {
            return bad("dir", "must not be empty");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let c = SpoolConfig::new("x");
        assert!(c.validate().is_ok());
        assert_eq!(c.clone().segment_bytes(0).validate().unwrap_err().kind(), "config");
        assert!(matches!(
            c.clone().max_bytes(10).segment_bytes(11).validate(),
            Err(SpoolError::Config { field: "max_bytes", .. })
        ));
        assert!(matches!(
            c.clone().sync(SyncPolicy::Interval(Duration::ZERO)).validate(),
            Err(SpoolError::Config { field: "sync", .. })
        ));
        assert!(matches!(SpoolConfig::new("").validate(), Err(SpoolError::Config { field: "dir", .. })));
        // The default segment size follows a smaller byte limit.
        assert_eq!(c.segment_bytes_limit(), 32 << 20);
        assert_eq!(c.clone().max_bytes(1 << 20).segment_bytes_limit(), 1 << 20);
        assert!(c.clone().max_bytes(1 << 20).validate().is_ok());
        assert!(matches!(c.clone().max_bytes(0).validate(), Err(SpoolError::Config { field: "max_bytes", .. })));
    }

    #[test]
    fn sync_policy_due_times_with_an_injected_clock() {
        let t = Instant::now();
        let p = SyncPolicy::Interval(Duration::from_millis(100));
        assert_eq!(p.due(t, true), Some(t + Duration::from_millis(100)));
        assert_eq!(p.due(t, false), None);
        assert!(SyncPolicy::Interval(Duration::MAX).due(t, true).unwrap() > t + Duration::from_secs(3600));
        assert_eq!(SyncPolicy::EveryWrite.due(t, true), Some(t));
        assert_eq!(SyncPolicy::Os.due(t, true), None);
    }
}
