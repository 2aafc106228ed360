//! The collector's error type.

use std::error::Error;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why starting or reconfiguring a [`Collector`](crate::Collector) failed.
///
/// Every variant says what the collector was doing and on what (the address,
/// the file, the certificate), so the message alone is enough to act on.
/// Errors from the certificate and TLS libraries are carried as text; their
/// types are not part of this crate's API.
#[derive(Debug)]
#[non_exhaustive]
pub enum CollectorError {
    /// The listening socket could not be bound.
    Bind {
        /// The address that was asked for, as given to
        /// [`listen`](crate::CollectorBuilder::listen).
        addr: String,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The certificate directory could not be created.
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A file (a CA PEM, the NDJSON log) could not be written or opened for writing.
    WriteFile {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A file (the client-auth CA bundle) could not be read.
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A certificate could not be generated or parsed.
    Certificate {
        /// Which certificate, e.g. `"CA generation 2"` or `"server leaf (expired)"`.
        what: String,
        /// What went wrong, in words.
        reason: String,
    },
    /// The TLS server configuration could not be built.
    Tls {
        /// What was being configured, e.g. `"server certificate"` or `"client verifier"`.
        phase: &'static str,
        /// What went wrong, in words.
        reason: String,
    },
    /// A thread could not be spawned.
    Spawn {
        /// Which thread, e.g. `"acceptor"`.
        what: &'static str,
        /// The operating system's reason.
        source: io::Error,
    },
}

impl fmt::Display for CollectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CollectorError::Bind { addr, source } => {
                write!(f, "collector: cannot listen on {addr}: {source}")
            }
            CollectorError::CreateDir { path, source } => {
                write!(f, "collector: cannot create directory {}: {source}", path.display())
            }
            CollectorError::WriteFile { path, source } => {
                write!(f, "collector: cannot write {}: {source}", path.display())
            }
            CollectorError::ReadFile { path, source } => {
                write!(f, "collector: cannot read {}: {source}", path.display())
            }
            CollectorError::Certificate { what, reason } => {
                write!(f, "collector: cannot build certificate ({what}): {reason}")
            }
            CollectorError::Tls { phase, reason } => {
                write!(f, "collector: cannot configure TLS ({phase}): {reason}")
            }
            CollectorError::Spawn { what, source } => {
                write!(f, "collector: cannot spawn the {what} thread: {source}")
            }
        }
    }
}

impl Error for CollectorError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            CollectorError::Bind { source, .. }
            | CollectorError::CreateDir { source, .. }
            | CollectorError::WriteFile { source, .. }
            | CollectorError::ReadFile { source, .. }
            | CollectorError::Spawn { source, .. } => Some(source),
            CollectorError::Certificate { .. } | CollectorError::Tls { .. } => None,
        }
    }
}

/// Why a control line (a [`Command`](crate::Command)), a [`Fault`](crate::Fault)
/// or a [`CertMode`](crate::CertMode) could not be parsed from text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseCommandError {
    input: String,
    reason: String,
}

impl ParseCommandError {
    pub(crate) fn new(input: &str, reason: impl Into<String>) -> ParseCommandError {
        ParseCommandError { input: input.to_owned(), reason: reason.into() }
    }

    /// The line that was refused.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Why, in words.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ParseCommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot parse control command {:?}: {}", self.input, self.reason)
    }
}

impl std::error::Error for ParseCommandError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_context() {
        let err = CollectorError::Bind {
            addr: "127.0.0.1:1".into(),
            source: io::Error::new(io::ErrorKind::AddrInUse, "in use"),
        };
        assert_eq!(err.to_string(), "collector: cannot listen on 127.0.0.1:1: in use");
        assert!(err.source().is_some());

        let err = CollectorError::Certificate { what: "CA generation 3".into(), reason: "bad".into() };
        assert!(err.to_string().contains("CA generation 3"));
        assert!(err.source().is_none());
    }
}
