//! Vigil keeps synchronous services alive: actors on OS threads, supervisor
//! trees with Erlang/OTP semantics, and an event pipeline whose failures
//! never reach the threads serving requests.
//!
//! This facade only re-exports the workspace's crates:
//!
//! - [`core`] (`vigil-core`): actors, addresses, supervisors,
//!   the system. Its items are also re-exported at the top level, so
//!   `vigil::Supervisor` and `vigil::core::Supervisor` are the same type.
//! - [`events`] (`vigil-events`): the never-blocking event
//!   buffer and the supervised batcher.
//! - [`https`] (`vigil-https`): the HTTPS sink that survives
//!   certificate rotation.
//! - [`collector`] (`vigil-collector`): a loopback HTTPS
//!   collector with fault injection, for tests, examples and local
//!   development.
//!
//! # Examples
//!
//! A worker that fails on bad input is restarted by its
//! [`Supervisor`]; its [`Addr`] stays valid across the restart, and the
//! messages queued behind the failure are not lost.
//!
//! ```
//! use std::time::Duration;
//! use vigil::{Actor, BoxError, ChildSpec, Context, Reply, Supervisor};
//!
//! enum Msg {
//!     Charge(u64),
//!     Total(Reply<u64>),
//! }
//!
//! struct Ledger {
//!     total: u64,
//! }
//!
//! impl Actor for Ledger {
//!     type Msg = Msg;
//!     fn handle(&mut self, msg: Msg, _: &mut Context<'_, Msg>) -> Result<(), BoxError> {
//!         match msg {
//!             Msg::Charge(0) => return Err("zero charge".into()),
//!             Msg::Charge(n) => self.total += n,
//!             Msg::Total(reply) => {
//!                 let _ = reply.send(self.total);
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let ledger = ChildSpec::worker("ledger", || Ledger { total: 0 });
//! let addr = ledger.addr();
//! let system = Supervisor::builder().child(ledger).start()?;
//! addr.tell(Msg::Charge(0))?; // fails this incarnation; the supervisor restarts it
//! addr.tell(Msg::Charge(5))?; // handled by the next incarnation
//! assert_eq!(addr.call(Msg::Total, Duration::from_secs(5))?, 5);
//! system.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The event pipeline and the HTTPS sink are in [`events`]
//! and [`https`]; `examples/incident` puts them together with a
//! [`collector`].

#[doc(inline)]
pub use vigil_collector as collector;
#[doc(inline)]
pub use vigil_core as core;
pub use vigil_core::*;
#[doc(inline)]
pub use vigil_events as events;
#[doc(inline)]
pub use vigil_https as https;

/// The README's quick start, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
