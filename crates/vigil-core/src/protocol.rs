//! The messages a supervisor's inbox carries: reports from its children's
//! runners, requests from `SupervisorRef`s, stop requests from its parent,
//! and its own retries. A leaf module: the runner, the supervisor, its
//! handle and the system all speak it.

use crossbeam_channel::{Receiver, Sender};

use crate::error::ControlError;
use crate::exit::ExitReason;
use crate::spec::ChildSpec;

/// Messages to a supervisor's inbox.
pub(crate) enum SupMsg {
    Started {
        key: u64,
        generation: u64,
    },
    Exited {
        key: u64,
        generation: u64,
        reason: ExitReason,
    },
    /// The runner already restarted its child in place (see `FastRestart`);
    /// `started` tells whether the new incarnation's start succeeded.
    Restarted {
        key: u64,
        generation: u64,
        reason: ExitReason,
        count: u32,
        started: bool,
    },
    Stop {
        generation: u64,
    },
    /// The watchdog declared an incarnation hung and fenced its runner: the
    /// supervisor abandons that runner and handles the exit.
    Hung {
        key: u64,
        generation: u64,
        reason: ExitReason,
    },
    /// Try again to restart a child whose restart failed, as OTP's
    /// `try_again_restart`: through the inbox, so that requests, other exits
    /// and a stop are served between attempts.
    Retry {
        key: u64,
        reason: ExitReason,
    },
    /// A request from a [`SupervisorRef`]; `caller` is the key of the child
    /// that made it from its own thread, if any.
    Control {
        control: Control,
        caller: Option<u64>,
    },
}

pub(crate) type Answer = Sender<Result<(), ControlError>>;

pub(crate) enum Control {
    Start(ChildSpec, Answer),
    Terminate(String, Answer),
    Restart(String, Answer),
    Delete(String, Answer),
}

/// Both ends of a supervisor's inbox. Builder clones share it, so a
/// `SupervisorRef` stays valid across the supervisor's restarts.
pub(crate) struct Inbox {
    pub(crate) tx: Sender<SupMsg>,
    pub(crate) rx: Receiver<SupMsg>,
}
