//! How a runner reports to its supervisor: started, restarted in place,
//! exited.
//!
//! The runner sees its supervisor only through [`Parent`], so that it does
//! not depend on the supervisor's message protocol (which carries child
//! specs, which carry runners): `protocol` implements `Parent` for a
//! supervisor's inbox.

use std::cell::RefCell;
use std::sync::Arc;

use crate::exit::ExitReason;
use crate::observe::Bus;

/// What a runner tells its supervisor about one child.
#[derive(Debug)]
pub(crate) enum Report {
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
}

/// A supervisor, as its children's runners see it.
pub(crate) trait Parent: Send + Sync + 'static {
    /// Delivers a report; false once the supervisor is gone for good.
    fn report(&self, report: Report) -> bool;
}

/// Where a runner reports, and what it is called.
pub(crate) struct Link {
    pub(crate) parent: Arc<dyn Parent>,
    pub(crate) key: u64,
    pub(crate) path: Arc<str>,
    pub(crate) bus: Arc<Bus>,
    /// An in-place restart not yet reported: sent together with the start
    /// report of the new incarnation, so a restart costs the supervisor one
    /// wake-up, not two.
    pub(crate) restarted: RefCell<Option<(ExitReason, u32)>>,
}

impl Link {
    pub(crate) fn new(parent: Arc<dyn Parent>, key: u64, path: Arc<str>, bus: Arc<Bus>) -> Link {
        Link { parent, key, path, bus, restarted: RefCell::new(None) }
    }

    /// Reports that the incarnation `generation` has started.
    pub(crate) fn started(&self, generation: u64) {
        let report = match self.restarted.borrow_mut().take() {
            Some((reason, count)) => Report::Restarted { key: self.key, generation, reason, count, started: true },
            None => Report::Started { key: self.key, generation },
        };
        self.parent.report(report);
    }

    /// Reports an in-place restart whose new incarnation did not start.
    pub(crate) fn flush_restart(&self, generation: u64) {
        if let Some((reason, count)) = self.restarted.borrow_mut().take() {
            self.parent.report(Report::Restarted { key: self.key, generation, reason, count, started: false });
        }
    }

    /// Reports that the incarnation `generation` has ended; false once the
    /// supervisor is gone.
    pub(crate) fn exited(&self, generation: u64, reason: ExitReason) -> bool {
        self.parent.report(Report::Exited { key: self.key, generation, reason })
    }
}
