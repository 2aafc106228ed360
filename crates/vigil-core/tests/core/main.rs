//! Scenario tests for vigil-core: real threads and real panics, one module
//! per feature, in one test binary.
//!
//! Two tests keep a binary of their own, because they need the whole process:
//! `tests/observe.rs` (it installs the process's logger and asserts on lines
//! any test in the process could write) and `tests/signals.rs` (it raises
//! SIGTERM, which is process-wide).

// `support/mod.rs`, not `support.rs`: `lifecycle` asserts that a panic's
// location names that file.
mod support;

mod budget;
mod config;
mod dynamic;
mod hang;
mod intensity;
mod lifecycle;
mod otp_lifecycle;
mod panic_abort;
mod prespawn;
mod regressions;
mod shutdown;
mod strategies;
