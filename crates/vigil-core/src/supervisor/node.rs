//! What a supervisor publishes about itself and its children: the rows that
//! `stats()`, `count_children()` and a tree's shutdown read. It outlives the
//! supervisor's incarnations.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::exit::ExitReason;
use crate::intensity::RestartWindow;
use crate::observe::{ChildState, ChildStats, SupervisorStats};
use crate::restart::{Restart, Strategy};
use crate::spec::{Body, Common};

/// One child's row in its supervisor's [`Node`].
#[derive(Clone)]
pub(crate) struct Row {
    pub(crate) key: u64,
    pub(crate) id: String,
    pub(crate) path: String,
    pub(crate) restart: Restart,
    pub(crate) significant: bool,
    pub(crate) state: ChildState,
    pub(crate) restarts: Vec<Instant>,
    pub(crate) restarts_total: u64,
    pub(crate) last_exit: Option<ExitReason>,
    pub(crate) since: Option<Instant>,
    /// The spec's settings, for `get_childspec` and the shutdown budget.
    pub(crate) common: Common,
    pub(crate) body: Arc<dyn Body>,
}

/// What a supervisor publishes about itself for `stats()`; outlives its
/// incarnations.
#[derive(Default)]
pub(crate) struct Node {
    pub(crate) inner: Mutex<NodeState>,
}

#[derive(Default)]
pub(crate) struct NodeState {
    pub(crate) path: String,
    pub(crate) strategy: Strategy,
    pub(crate) intensity: u32,
    pub(crate) period: Duration,
    /// The current incarnation's restart window, shared with the
    /// supervisor: `restarts_in_window` is read from it.
    pub(crate) window: Option<Arc<Mutex<RestartWindow>>>,
    /// Whether an incarnation is running and taking requests.
    pub(crate) running: bool,
    pub(crate) restarts_total: u64,
    pub(crate) abandoned: u64,
    pub(crate) hangs: u64,
    pub(crate) rows: Vec<Row>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("path", &self.inner.lock().path).finish()
    }
}

impl Node {
    pub(crate) fn snapshot(&self) -> SupervisorStats {
        let now = Instant::now();
        let state = self.inner.lock();
        let period = state.period;
        let in_window = |times: &mut dyn Iterator<Item = &Instant>| {
            times.filter(|&&t| now.saturating_duration_since(t) <= period).count() as u32
        };
        let rows: Vec<Row> = state.rows.clone();
        let stats = SupervisorStats {
            path: state.path.clone(),
            strategy: state.strategy,
            intensity: state.intensity,
            period: state.period,
            restarts_in_window: state.window.as_ref().map_or(0, |w| w.lock().count(now)),
            restarts_total: state.restarts_total,
            abandoned: state.abandoned,
            hangs: state.hangs,
            hangs_total: 0,
            late_returns: 0,
            abandoned_threads: Vec::new(),
            children: Vec::new(),
        };
        let children = rows
            .iter()
            .map(|row| ChildStats {
                id: row.id.clone(),
                path: row.path.clone(),
                kind: row.body.kind(),
                restart: row.restart,
                significant: row.significant,
                state: row.state,
                restarts_total: row.restarts_total,
                restarts_in_window: in_window(&mut row.restarts.iter()),
                last_exit: row.last_exit.clone(),
                uptime: row.since.map(|s| now.saturating_duration_since(s)),
                mailbox_len: row.body.mailbox_len(),
                supervisor: None,
            })
            .collect();
        drop(state);
        let mut stats = SupervisorStats { children, ..stats };
        // Nested snapshots are taken after this node's lock is released.
        for (child, row) in stats.children.iter_mut().zip(&rows) {
            child.supervisor = row.body.stats().map(Box::new);
        }
        stats
    }
}
