//! Scenario tests for vigil-collector: real rustls clients against the
//! collector on loopback, one module per feature, in one test binary.
//!
//! `binary` runs the `vigil-collector` executable, which exists only with the
//! `cli` feature: the module is compiled with that feature alone, so
//! `cargo test -p vigil-collector` without it still builds.

mod support;

#[cfg(feature = "cli")]
mod binary;
mod certs;
mod connections;
mod faults;
mod ingest;
