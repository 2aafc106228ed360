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

pub use vigil_core::*;

#[cfg(feature = "collector")]
pub use vigil_collector as collector;
#[cfg(feature = "events")]
pub use vigil_events as events;
#[cfg(feature = "https")]
pub use vigil_https as https;

/// The README's quick start, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
