//! Vigil keeps synchronous services alive: actors on OS threads, supervisor
//! trees with Erlang/OTP semantics, and an event pipeline whose failures
//! never reach the threads serving requests.
//!
//! This facade only re-exports the workspace's crates. Supervision
//! (`vigil-core`) is always there, with its items at the top level
//! ([`Supervisor`], [`ChildSpec`], [`Addr`] ...); the rest are features:
//!
//! | feature | default | module | crate |
//! |---|---|---|---|
//! | `events` | yes | `events` | `vigil-events`: the never-blocking event buffer and the supervised batcher |
//! | `https` | yes | `https` | `vigil-https`: the HTTPS sink that survives certificate rotation (implies `events`) |
//! | `health` | no | `health` | `vigil-health`: one health model for systemd (`Type=notify`), Kubernetes probes and Prometheus `/metrics` (implies `https`) |
//! | `collector` | no | `collector` | `vigil-collector`: a loopback HTTPS collector with fault injection, for your own integration tests |
//!
//! With `default-features = false` you get supervision alone, with
//! vigil-core's few dependencies (crossbeam-channel, parking_lot, log, serde,
//! signal-hook). The collector is off by default because it is a test tool:
//! a TLS server that makes its certificates with rcgen. Turn it on in
//! `[dev-dependencies]`:
//!
//! ```toml
//! [dependencies]
//! vigil = "0.1"
//!
//! [dev-dependencies]
//! vigil = { version = "0.1", features = ["collector"] }
//! ```
//!
//! There is no `vigil::core` module: the top-level items are vigil-core's,
//! and a module of that name would clash with the built-in `core` crate for
//! anyone who writes `use vigil::*;`:
//!
//! ```
//! use vigil::*;
//! use core::mem;
//!
//! fn main() {
//!     let mut a = Strategy::OneForOne;
//!     let mut b = Strategy::OneForAll;
//!     mem::swap(&mut a, &mut b);
//!     assert_eq!(a, Strategy::OneForAll);
//! }
//! ```
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
//! The event pipeline and the HTTPS sink are in `vigil::events` and
//! `vigil::https`; `examples/incident` puts them together with the test
//! collector.

pub use vigil_core::*;

#[cfg(feature = "collector")]
#[doc(inline)]
pub use vigil_collector as collector;
#[cfg(feature = "events")]
#[doc(inline)]
pub use vigil_events as events;
#[cfg(feature = "health")]
#[doc(inline)]
pub use vigil_health as health;
#[cfg(feature = "https")]
#[doc(inline)]
pub use vigil_https as https;

/// The README's quick start, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
