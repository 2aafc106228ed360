//! The crate's one error type.

use std::fmt;

/// What can go wrong setting up health reporting.
#[derive(Debug)]
#[non_exhaustive]
pub enum HealthError {
    /// A setting was refused; `why` says what it accepts.
    InvalidConfig {
        /// The setting's name.
        setting: &'static str,
        /// What it must be.
        why: &'static str,
    },
    /// A thread (the monitor's or the notifier's) could not be spawned.
    Spawn(std::io::Error),
    /// The HTTP endpoint could not listen on its address.
    Bind {
        /// The address asked for.
        addr: String,
        /// Why, as the server said it.
        error: String,
    },
}

impl fmt::Display for HealthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthError::InvalidConfig { setting, why } => write!(f, "health setting `{setting}` {why}"),
            HealthError::Spawn(e) => write!(f, "cannot spawn the health thread: {e}"),
            HealthError::Bind { addr, error } => {
                write!(f, "the health endpoint cannot listen on {addr}: {error} (give a free HOST:PORT)")
            }
        }
    }
}

impl std::error::Error for HealthError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HealthError::Spawn(e) => Some(e),
            _ => None,
        }
    }
}
