//! The spool's one error type.

use std::fmt;
use std::path::PathBuf;

/// Why a spool operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpoolError {
    /// A setting that cannot work; names the field.
    Config {
        /// The setting.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Another process (or another spool in this one) holds the directory's lock.
    Locked {
        /// The spool directory.
        dir: PathBuf,
    },
    /// An I/O operation failed: a full disk, EIO, a read-only or vanished directory.
    Io {
        /// What was being done: `create_dir`, `lock`, `open`, `write`, `sync`, `read`, `checkpoint` ...
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error's kind.
        kind: std::io::ErrorKind,
        /// The OS error's message.
        message: String,
    },
    /// Writing would take the spool past its `max_bytes`.
    Full {
        /// The limit.
        max_bytes: u64,
        /// Bytes on disk now.
        used: u64,
    },
    /// One record is larger than [`MAX_RECORD_BYTES`](crate::MAX_RECORD_BYTES).
    RecordTooLarge {
        /// The payload's size.
        len: usize,
    },
}

impl SpoolError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, e: &std::io::Error) -> SpoolError {
        SpoolError::Io { op, path: path.into(), kind: e.kind(), message: e.to_string() }
    }

    /// A short name for the kind of failure, as the ledger and logs show it:
    /// `config`, `locked`, `io`, `full` or `record_too_large`.
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_spool::SpoolError;
    /// assert_eq!(SpoolError::Full { max_bytes: 10, used: 10 }.kind(), "full");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            SpoolError::Config { .. } => "config",
            SpoolError::Locked { .. } => "locked",
            SpoolError::Io { .. } => "io",
            SpoolError::Full { .. } => "full",
            SpoolError::RecordTooLarge { .. } => "record_too_large",
        }
    }
}

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpoolError::Config { field, reason } => write!(f, "spool: `{field}` {reason}"),
            SpoolError::Locked { dir } => {
                write!(f, "spool: {} is locked by another process (or another spool in this one)", dir.display())
            }
            SpoolError::Io { op, path, message, .. } => write!(f, "spool: {op} {}: {message}", path.display()),
            SpoolError::Full { max_bytes, used } => {
                write!(f, "spool: full ({used} bytes on disk, max_bytes {max_bytes})")
            }
            SpoolError::RecordTooLarge { len } => {
                write!(f, "spool: a record of {len} bytes is over the {} byte limit", crate::MAX_RECORD_BYTES)
            }
        }
    }
}

impl std::error::Error for SpoolError {}
