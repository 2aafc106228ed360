//! Scenario tests for vigil-events: the real batcher under a real supervisor
//! with a scriptable sink, one module per feature, in one test binary.
//!
//! `tests/logging.rs` keeps a binary of its own: it counts the pipeline's log
//! lines (`first event dropped …` exactly once), which any test in the same
//! process would also write.

mod support;

mod backpressure;
mod delivery;
mod flush;
mod incident;
mod overflow;
mod regressions;
mod restart;
mod spool;
