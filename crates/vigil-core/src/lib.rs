//! vigil-core: actors on OS threads and supervisor trees with Erlang/OTP
//! semantics, without an async runtime.
//!
//! # How the pieces fit
//!
//! - An [`Actor`] is plain state with a typed message handler. Each one runs
//!   on its own OS thread, so blocking code is fine.
//! - A [`ChildSpec`] says how to build a child (a factory closure called on
//!   every start), when to restart it ([`Restart`]), how long it may take to
//!   start and stop, and its [`Backoff`]. A worker's spec owns its mailbox;
//!   [`WorkerSpec::addr`] hands out an [`Addr`] that stays valid across
//!   restarts.
//! - A supervisor ([`Supervisor::builder`]) starts its children in order,
//!   restarts them by its [`Strategy`] within a restart intensity
//!   (OTP's sliding window, exactly), stops them in reverse order, and gives up (escalates
//!   to its parent) when the intensity is exceeded. Supervisors nest.
//! - The root runs as a [`System`] that `main` holds. A panic or an error
//!   anywhere in the tree reaches a supervisor as an [`ExitReason`]; it never
//!   aborts the process or unwinds into `main`. When the root gives up,
//!   [`System::wait`] returns a [`SystemError`] with the failure chain.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use vigil_core::*;
//!
//! enum Msg { Charge(u64), Total(Reply<u64>) }
//!
//! struct Ledger { total: u64 }
//! impl Actor for Ledger {
//!     type Msg = Msg;
//!     fn handle(&mut self, msg: Msg, _: &mut Context<'_, Msg>) -> Result<(), BoxError> {
//!         match msg {
//!             Msg::Charge(0) => panic!("zero charge"),
//!             Msg::Charge(n) => self.total += n,
//!             Msg::Total(reply) => { let _ = reply.send(self.total); }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let ledger = ChildSpec::worker("ledger", || Ledger { total: 0 })
//!     .backoff(Backoff::exponential(Duration::from_millis(1), Duration::from_millis(50)));
//! let addr = ledger.addr();
//! let system = Supervisor::builder().intensity(3, Duration::from_secs(5)).child(ledger).start()?;
//!
//! addr.tell(Msg::Charge(5)).unwrap();
//! addr.tell(Msg::Charge(0)).unwrap(); // panics; the supervisor restarts the ledger
//! addr.tell(Msg::Charge(7)).unwrap(); // queued across the restart, not lost
//! assert_eq!(addr.call(Msg::Total, Duration::from_secs(10)), Ok(7));
//! assert!(system.shutdown().unwrap().is_clean());
//! # Ok::<(), StartError>(())
//! ```
//!
//! # What survives a restart?
//!
//! The mailbox and everything queued in it: the supervisor owns the
//! receiving end and hands it to each incarnation. The actor value does not:
//! the factory builds a new one. The message being handled when the failure
//! happened is dropped, and its type is named in the exit reason.
//!
//! # Differences from OTP
//!
//! Threads cannot be killed, so there is no `brutal_kill`: a child that does
//! not stop within its shutdown timeout is *abandoned* (its thread is left
//! running, logged and counted) and shutdown goes on. See `docs/design.md`.
//!
//! # Dependencies and features
//!
//! vigil-core has no cargo features. Its dependencies are crossbeam-channel
//! (mailboxes), parking_lot, log, serde and signal-hook: about twenty crates
//! in all. Two were candidates for a feature, and stay unconditional:
//!
//! - **serde** (with `derive`): the stats, snapshots and supervision events
//!   ([`SupervisorStats`], [`ShutdownReport`], [`SupervisionEvent`] ...)
//!   implement `Serialize` so that a service can publish them as they are.
//!   vigil-events serialises every event with serde anyway, and almost every
//!   service already builds it. A feature would only make
//!   `Serialize` vanish from these types for the few that turn it off.
//! - **signal-hook** (two small crates, plus `errno`) backs
//!   [`System::shutdown_on_signals`], which the README's quick start calls.
//!   A feature would save little and make a documented method disappear.
//!
//! `serde_json` is only a dev-dependency: the examples print stats as JSON.

// The modules form layers, each using only those below it; `layers.rs`
// lists them and checks it.
mod actor;
mod addr;
mod backoff;
mod error;
mod exit;
mod format;
mod intensity;
mod link;
mod observe;
mod panic;
mod protocol;
mod restart;
mod runner;
mod spec;
mod spin;
mod supervisor;
mod system;
mod waitfor;
mod watchdog;

#[cfg(test)]
mod layers;

pub use actor::{Actor, Context};
pub use addr::{Addr, Reply};
pub use backoff::Backoff;
pub use error::{
    BoxError, CallError, ConfigError, ControlError, StartError, SystemError, TellError, TellTimeoutError, TryTellError,
};
pub use exit::{ExitReason, Hook};
pub use observe::{
    AbandonedThread, ChildKind, ChildState, ChildStats, DEFAULT_MAX_ABANDONED_THREADS, SUBSCRIPTION_CAPACITY,
    StartOutcome, SupervisionEvent, SupervisorStats,
};
pub use restart::{AutoShutdown, Restart, Strategy};
pub use spec::{
    ChildSpec, ChildSpecInfo, DEFAULT_MAILBOX, DEFAULT_SHUTDOWN, DEFAULT_START_TIMEOUT, MAX_MAILBOX, MAX_MAILBOX_BYTES,
    WorkerSpec,
};
pub use supervisor::{
    ChildCounts, MAX_INTENSITY, SHUTDOWN_SLACK_PER_CHILD, ShutdownBudget, Supervisor, SupervisorBuilder, SupervisorRef,
};
pub use system::{ShutdownHandle, ShutdownReport, System, SystemObserver, exit_code};
