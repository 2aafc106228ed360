//! The messages a supervisor's inbox carries: reports from its children's
//! runners, requests from `SupervisorRef`s, stop requests from its parent,
//! and its own retries. A leaf module: the runner, the supervisor, its
//! handle and the system all speak it.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::error::ControlError;
use crate::exit::ExitReason;
use crate::link::{Parent, Report};
use crate::observe::StartOutcome;
use crate::spec::ChildSpec;

/// Messages to a supervisor's inbox.
pub(crate) enum SupMsg {
    /// A runner's report about one child.
    Child(Report),
    Stop {
        generation: u64,
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
/// The answer to a request that starts a child: OTP's `{ok, Pid}` or
/// `{ok, undefined}`.
pub(crate) type StartAnswer = Sender<Result<StartOutcome, ControlError>>;

pub(crate) enum Control {
    Start(ChildSpec, StartAnswer),
    Terminate(String, Answer),
    Restart(String, StartAnswer),
    Delete(String, Answer),
}

/// Both ends of a supervisor's inbox. Builder clones share it, so a
/// `SupervisorRef` stays valid across the supervisor's restarts.
pub(crate) struct Inbox {
    pub(crate) tx: Sender<SupMsg>,
    pub(crate) rx: Receiver<SupMsg>,
    /// The same inbox as the children's runners see it. Its address also
    /// tells a runner thread which supervisor it belongs to.
    pub(crate) parent: Arc<dyn Parent>,
}

impl Inbox {
    pub(crate) fn new() -> Inbox {
        let (tx, rx) = crossbeam_channel::unbounded();
        Inbox { parent: Arc::new(tx.clone()), tx, rx }
    }
}

impl Parent for Sender<SupMsg> {
    fn report(&self, report: Report) -> bool {
        self.send(SupMsg::Child(report)).is_ok()
    }
}
