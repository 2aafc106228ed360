//! Scenario tests for vigil-https: real TLS on loopback against the
//! `vigil-collector`, one module per feature.

mod support;

mod delivery;
mod expiry;
mod faults;
mod identity;
mod otlp;
mod pipeline;
mod proxy;
mod readiness;
mod regressions;
mod rotation;
mod trust_reload;
