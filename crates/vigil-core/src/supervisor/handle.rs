//! [`SupervisorRef`]: the dynamic children API, and counts and snapshots
//! that never block on the supervisor.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;

use super::node::Node;
use crate::error::ControlError;
use crate::link::Parent;
use crate::observe::{ChildKind, ChildState, ChildStats, StartOutcome, SupervisorStats};
use crate::protocol::{Control, Inbox, SupMsg};
use crate::runner::{self, Caller};
use crate::spec::{ChildSpec, ChildSpecInfo};

/// Counts of a supervisor's children, as OTP's `count_children`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ChildCounts {
    /// All children, running or not.
    pub specs: usize,
    /// Running children.
    pub active: usize,
    /// Children that are supervisors.
    pub supervisors: usize,
    /// Children that are workers.
    pub workers: usize,
}

/// A handle to a running supervisor: start, terminate, restart and delete
/// children, list and count them. Cheap to clone; stays valid across the
/// supervisor's restarts.
///
/// Requests wait for the supervisor to answer, at most
/// [`timeout`](SupervisorRef::timeout) (30 s unless changed). A supervisor
/// that is starting or stopping a child answers when that is done. A
/// supervisor that is not running (stopped for good, or between two of its
/// incarnations) refuses requests at once with
/// [`ControlError::SupervisorGone`], as OTP's `noproc`.
///
/// A child may make requests of its own supervisor from `handle`, including
/// [`terminate_child`](SupervisorRef::terminate_child) of itself (answered
/// before the supervisor waits for it to stop). From its factory or `started`
/// hook, or from `stopped` while it is being stopped, a request would wait
/// for the caller itself, and fails at once with
/// [`ControlError::WouldDeadlock`].
#[derive(Clone)]
pub struct SupervisorRef {
    tx: Sender<SupMsg>,
    /// The supervisor's inbox as its runners see it: tells a request from
    /// one of its own children.
    parent: Arc<dyn Parent>,
    node: Arc<Node>,
    timeout: Duration,
}

impl fmt::Debug for SupervisorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorRef").field("node", &self.node).field("timeout", &self.timeout).finish()
    }
}

impl SupervisorRef {
    pub(super) fn new(inbox: &Inbox, node: Arc<Node>) -> SupervisorRef {
        SupervisorRef {
            tx: inbox.tx.clone(),
            parent: Arc::clone(&inbox.parent),
            node,
            timeout: Duration::from_secs(30),
        }
    }

    /// The same handle with another answer timeout. Defaults to 30 s.
    #[must_use]
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// # use std::time::Duration;
    /// let pool = Supervisor::dynamic();
    /// let pool_ref = pool.handle();
    /// let system = Supervisor::builder().child(ChildSpec::supervisor("pool", pool)).start()?;
    /// let quick = pool_ref.clone().timeout(Duration::from_secs(1));
    /// quick.start_child(ChildSpec::worker("w", || W)).unwrap();
    /// system.shutdown().unwrap();
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> SupervisorRef {
        self.timeout = timeout;
        self
    }

    /// Adds a child at the end of the start order and starts it. Answers
    /// [`StartOutcome::Ignored`] when its start hook answered
    /// [ignore](crate::Context::ignore), as OTP's `{ok, undefined}`: the
    /// child is then kept, stopped, unless it is temporary or this
    /// supervisor is dynamic.
    ///
    /// # Errors
    ///
    /// [`ControlError::AlreadyExists`], [`ControlError::MaxChildren`],
    /// [`ControlError::Config`] (including a significant child this
    /// supervisor's [`auto_shutdown`](crate::SupervisorBuilder::auto_shutdown)
    /// refuses), [`ControlError::Start`] if its start failed (the child is
    /// not kept), [`ControlError::SupervisorGone`] or [`ControlError::Timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let pool = Supervisor::dynamic();
    /// let pool_ref = pool.handle();
    /// let system = Supervisor::builder().child(ChildSpec::supervisor("pool", pool)).start()?;
    /// pool_ref.start_child(ChildSpec::worker("w1", || W)).unwrap();
    /// let again = pool_ref.start_child(ChildSpec::worker("w1", || W));
    /// assert_eq!(again, Err(ControlError::AlreadyExists("w1".into())));
    /// system.shutdown().unwrap();
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn start_child(&self, spec: impl Into<ChildSpec>) -> Result<StartOutcome, ControlError> {
        let spec = spec.into();
        self.request(|answer| Control::Start(spec, answer))
    }

    /// Stops a child and keeps its spec, so it can be restarted with
    /// [`restart_child`](SupervisorRef::restart_child). A temporary child,
    /// and any child of a [dynamic](crate::Supervisor::dynamic) supervisor, is
    /// removed instead. Messages sent to a terminated child fail with
    /// `Closed`. A child may terminate itself from `handle`: the answer comes
    /// before the supervisor waits for it to stop.
    ///
    /// # Errors
    ///
    /// [`ControlError::NotFound`], [`ControlError::SupervisorGone`] or [`ControlError::Timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let spec = ChildSpec::worker("w", || W);
    /// let addr = spec.addr();
    /// let system = Supervisor::builder().child(spec).start()?;
    /// system.root().terminate_child("w").unwrap();
    /// assert!(addr.is_closed());
    /// assert_eq!(system.root().count_children().active, 0);
    /// system.shutdown().unwrap();
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn terminate_child(&self, id: &str) -> Result<(), ControlError> {
        let id = id.to_owned();
        self.request(|answer| Control::Terminate(id, answer))
    }

    /// Starts a child that was terminated, stopped normally, or whose start
    /// answered ignore. Answers [`StartOutcome::Ignored`] if it ignores again.
    ///
    /// # Errors
    ///
    /// [`ControlError::NotFound`], [`ControlError::Running`],
    /// [`ControlError::Start`], [`ControlError::SupervisorGone`] or [`ControlError::Timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let system = Supervisor::builder().child(ChildSpec::worker("w", || W)).start()?;
    /// let root = system.root();
    /// assert_eq!(root.restart_child("w"), Err(ControlError::Running("w".into())));
    /// root.terminate_child("w").unwrap();
    /// root.restart_child("w").unwrap();
    /// assert_eq!(root.count_children().active, 1);
    /// system.shutdown().unwrap();
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn restart_child(&self, id: &str) -> Result<StartOutcome, ControlError> {
        let id = id.to_owned();
        self.request(|answer| Control::Restart(id, answer))
    }

    /// Removes the spec of a child that is not running.
    ///
    /// # Errors
    ///
    /// [`ControlError::NotFound`], [`ControlError::Running`],
    /// [`ControlError::SupervisorGone`] or [`ControlError::Timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let system = Supervisor::builder().child(ChildSpec::worker("a", || W)).child(ChildSpec::worker("b", || W)).start()?;
    /// let root = system.root();
    /// root.terminate_child("b").unwrap();
    /// root.delete_child("b").unwrap();
    /// assert_eq!(root.count_children().specs, 1);
    /// system.shutdown().unwrap();
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn delete_child(&self, id: &str) -> Result<(), ControlError> {
        let id = id.to_owned();
        self.request(|answer| Control::Delete(id, answer))
    }

    /// The children with their state, in start order. Never blocks on the
    /// supervisor.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let system = Supervisor::builder().child(ChildSpec::worker("a", || W)).start()?;
    /// let children = system.root().which_children();
    /// assert_eq!(children[0].path, "root/a");
    /// assert_eq!(children[0].kind, ChildKind::Worker);
    /// system.shutdown().unwrap();
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn which_children(&self) -> Vec<ChildStats> {
        self.node.snapshot().children
    }

    /// The spec of child `id`, as OTP's `get_childspec`: its settings, from
    /// the spec the supervisor holds. Never blocks on the supervisor.
    ///
    /// # Errors
    ///
    /// [`ControlError::NotFound`] if no child has this id (a temporary or
    /// dynamic child that ended is not kept).
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # use std::time::Duration;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let system = Supervisor::builder().child(ChildSpec::worker("w", || W).restart(Restart::Transient)).start()?;
    /// let spec = system.root().get_childspec("w").unwrap();
    /// assert_eq!((spec.restart, spec.shutdown, spec.kind), (Restart::Transient, DEFAULT_SHUTDOWN, ChildKind::Worker));
    /// assert_eq!(system.root().get_childspec("nope"), Err(ControlError::NotFound("nope".into())));
    /// system.shutdown().unwrap();
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn get_childspec(&self, id: &str) -> Result<ChildSpecInfo, ControlError> {
        let state = self.node.inner.lock();
        let row = state.rows.iter().find(|row| row.id == id).ok_or_else(|| ControlError::NotFound(id.to_owned()))?;
        Ok(ChildSpecInfo::new(&row.common, row.body.as_ref()))
    }

    /// Counts the children. Never blocks on the supervisor.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let pool = Supervisor::dynamic();
    /// let pool_ref = pool.handle();
    /// let system = Supervisor::builder().child(ChildSpec::supervisor("pool", pool)).start()?;
    /// pool_ref.start_child(ChildSpec::worker("w", || W)).unwrap();
    /// assert_eq!(pool_ref.count_children(), ChildCounts { specs: 1, active: 1, supervisors: 0, workers: 1 });
    /// system.shutdown().unwrap();
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn count_children(&self) -> ChildCounts {
        let state = self.node.inner.lock();
        let mut counts = ChildCounts { specs: state.rows.len(), ..ChildCounts::default() };
        for row in &state.rows {
            if row.state == ChildState::Running {
                counts.active += 1;
            }
            if row.body.kind() == ChildKind::Supervisor {
                counts.supervisors += 1;
            } else {
                counts.workers += 1;
            }
        }
        counts
    }

    /// A snapshot of this supervisor and its subtree. Never blocks on the
    /// supervisor.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let pool = Supervisor::dynamic();
    /// let pool_ref = pool.handle();
    /// let system = Supervisor::builder().child(ChildSpec::supervisor("pool", pool)).start()?;
    /// pool_ref.start_child(ChildSpec::worker("w", || W)).unwrap();
    /// let stats = pool_ref.stats();
    /// assert_eq!(stats.path, "root/pool");
    /// assert_eq!(stats.children[0].state, ChildState::Running);
    /// system.shutdown().unwrap();
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn stats(&self) -> SupervisorStats {
        self.node.snapshot()
    }

    /// Whether an incarnation of this supervisor is running and taking
    /// requests.
    pub(crate) fn is_running(&self) -> bool {
        self.node.inner.lock().running
    }

    fn request<T>(
        &self,
        make: impl FnOnce(crossbeam_channel::Sender<Result<T, ControlError>>) -> Control,
    ) -> Result<T, ControlError> {
        let caller = match runner::caller(&self.parent) {
            Caller::Other => None,
            Caller::Child(key) => Some(key),
            Caller::Awaited(path) => return Err(ControlError::WouldDeadlock { caller: path.to_string() }),
        };
        let (answer, reply) = crossbeam_channel::bounded(1);
        {
            // Under the node's lock, which the supervisor takes to mark itself
            // stopped before it drops what is left in its inbox: a request is
            // either refused here or answered (or dropped) by this incarnation,
            // never left for a later one.
            let node = self.node.inner.lock();
            if !node.running {
                return Err(ControlError::SupervisorGone);
            }
            self.tx
                .send(SupMsg::Control { control: make(answer), caller })
                .map_err(|_| ControlError::SupervisorGone)?;
        }
        match reply.recv_timeout(self.timeout) {
            Ok(result) => result,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(ControlError::Timeout(self.timeout)),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(ControlError::SupervisorGone),
        }
    }
}
