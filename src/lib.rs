//! Vigil keeps synchronous services alive: actors on OS threads, supervisor
//! trees with Erlang/OTP semantics, and an event pipeline whose failures
//! never reach the threads serving requests.
//!
//! This facade only re-exports the workspace's crates:
//!
//! - [`core`] (`vigil-core`): actors, addresses, supervisors, the system.
//!   Its items are also re-exported at the top level.
//! - [`events`] (`vigil-events`): the never-blocking event buffer and the
//!   supervised batcher.
//! - [`https`] (`vigil-https`): the HTTPS sink that survives certificate
//!   rotation.
//! - [`collector`] (`vigil-collector`): a loopback HTTPS collector with fault
//!   injection, for tests, examples and local development.

pub use vigil_collector as collector;
pub use vigil_core as core;
pub use vigil_core::*;
pub use vigil_events as events;
pub use vigil_https as https;

/// The README's quick start, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
