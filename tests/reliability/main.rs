//! The workspace's reliability tests, in one test binary: the fault matrices
//! (`supervision_faults`, `delivery_faults`), the model-based ledger test, the
//! inputs that must get a typed error, and the chaos soak. `rig` is what they
//! share: a collector behind a real HTTPS pipeline, request threads, resource
//! readings, and the delivery-fault scenario.
//!
//! The soak measures the whole process (threads, file descriptors, RSS), so
//! it runs alone in a child process of this binary; see `soak.rs`.

mod rig;
#[path = "../../examples/incident/service.rs"]
mod service;

mod delivery_faults;
mod inputs;
mod ledger_model;
mod soak;
mod supervision_faults;
