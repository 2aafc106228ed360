//! The actor trait and the context its hooks receive.

use std::time::Duration;

use crate::addr::Addr;
use crate::error::BoxError;
use crate::exit::ExitReason;

/// A synchronous actor: state plus a typed message handler, run on its own OS
/// thread. Blocking inside a hook is fine; it only holds up this actor.
///
/// Every hook that returns `Result` fails the incarnation with `Err`, and a
/// panic in any hook fails it too. Either way the failure reaches the
/// supervisor as an [`ExitReason`]; it never unwinds into another thread.
///
/// The child spec's factory closure builds a fresh value on every (re)start,
/// so state that must survive a restart belongs outside the actor, for
/// example in an `Arc` that the factory closure captures.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use vigil_core::{Actor, BoxError, Context};
///
/// /// Counts messages and reports the total every second.
/// struct Meter { seen: u64 }
///
/// impl Actor for Meter {
///     type Msg = ();
///     fn started(&mut self, ctx: &mut Context<'_, ()>) -> Result<(), BoxError> {
///         ctx.set_receive_timeout(Some(Duration::from_secs(1)));
///         Ok(())
///     }
///     fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> {
///         self.seen += 1;
///         Ok(())
///     }
///     fn timeout(&mut self, _: &mut Context<'_, ()>) -> Result<(), BoxError> {
///         log::info!("seen {} messages", self.seen);
///         Ok(())
///     }
/// }
/// ```
pub trait Actor: Send + 'static {
    /// The messages this actor accepts.
    type Msg: Send + 'static;

    /// Runs once per incarnation, before any message. The supervisor's start
    /// of this child waits for it to return. `Err` or a panic fails the start.
    ///
    /// # Errors
    ///
    /// Return `Err` to fail the start.
    fn started(&mut self, ctx: &mut Context<'_, Self::Msg>) -> Result<(), BoxError> {
        let _ = ctx;
        Ok(())
    }

    /// Handles one message.
    ///
    /// # Errors
    ///
    /// Return `Err` to fail this incarnation. The message is dropped and its
    /// type is named in the exit reason.
    fn handle(&mut self, msg: Self::Msg, ctx: &mut Context<'_, Self::Msg>) -> Result<(), BoxError>;

    /// Runs when no message arrived within the receive timeout set with
    /// [`Context::set_receive_timeout`]. Use it for periodic work.
    ///
    /// # Errors
    ///
    /// Return `Err` to fail this incarnation.
    fn timeout(&mut self, ctx: &mut Context<'_, Self::Msg>) -> Result<(), BoxError> {
        let _ = ctx;
        Ok(())
    }

    /// Runs once when the incarnation ends after a successful start, whatever
    /// the reason: a normal stop, a shutdown, or a failure in `handle` or
    /// `timeout`. It does not run when the start failed. A panic here is
    /// reported as the exit reason in place of a normal one.
    fn stopped(&mut self, reason: &ExitReason) {
        let _ = reason;
    }
}

/// What an actor's hooks can see and change about their incarnation.
#[derive(Debug)]
pub struct Context<'a, M> {
    pub(crate) addr: &'a Addr<M>,
    pub(crate) path: &'a str,
    pub(crate) incarnation: u64,
    pub(crate) receive_timeout: Option<Duration>,
    pub(crate) stop: bool,
    pub(crate) stop_requested: &'a std::sync::atomic::AtomicBool,
}

impl<M> Context<'_, M> {
    /// This actor's own address.
    pub fn addr(&self) -> &Addr<M> {
        self.addr
    }

    /// The actor's path in the tree, for example `root/pool/worker-3`.
    pub fn path(&self) -> &str {
        self.path
    }

    /// How many times this child has been started before: 0 on the first
    /// start, 1 after the first restart, and so on.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Calls [`Actor::timeout`] whenever no message arrives for `timeout`.
    /// `None` turns it off. Defaults to `None`.
    pub fn set_receive_timeout(&mut self, timeout: Option<Duration>) {
        self.receive_timeout = timeout;
    }

    /// The receive timeout currently set.
    pub fn receive_timeout(&self) -> Option<Duration> {
        self.receive_timeout
    }

    /// Stops this actor normally after the current hook returns. A transient
    /// child is then not restarted; a permanent one is.
    pub fn stop(&mut self) {
        self.stop = true;
    }

    /// Whether the supervisor has asked this actor to stop. A long-running
    /// hook can check this and return early; the actor then stops with
    /// [`ExitReason::Shutdown`].
    pub fn stop_requested(&self) -> bool {
        self.stop_requested.load(std::sync::atomic::Ordering::Relaxed)
    }
}
