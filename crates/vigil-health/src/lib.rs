//! vigil-health: one health model for a Vigil tree, told to the engines
//! outside the process. Vigil supervises threads inside the process;
//! systemd or Kubernetes supervise the process, and Prometheus records it.
//! This crate is how they see into the tree. (vigil-core knows nothing of
//! it: it reads the tree through [`SystemObserver`](vigil_core::SystemObserver).)
//!
//! # How the pieces fit
//!
//! - [`HealthMonitor`] watches a running tree (its events and snapshots,
//!   and optionally an event pipeline and HTTPS sinks) on a thread beside
//!   the tree, and publishes a [`HealthReport`] on a [`watch`] channel: a
//!   [`Health`] (`Starting`, `Ready`, `Degraded { reasons }`, `Stopping`,
//!   `Stopped`, `Failed`), liveness, readiness and the figures.
//!   Thresholds are in [`HealthConfig`].
//! - [`SystemdNotifier`] follows the reports and speaks systemd's
//!   `Type=notify`: `READY=1`, `STATUS=`, `WATCHDOG=1` only while live,
//!   `STOPPING=1`, `EXTEND_TIMEOUT_USEC=`. It does nothing outside systemd.
//! - `HealthEndpoint` (feature `http`) serves `/livez`, `/readyz`,
//!   `/startupz`, `/stats` and `/metrics` (OpenMetrics, by
//!   prometheus-client) as one supervised actor.
//!
//! Liveness is false only when the root gave up, or a significant child's
//! thread is hung (declared so by the hang watchdog, and still running):
//! then the process should be restarted by its own supervisor.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use vigil_core::*;
//! use vigil_health::{Health, HealthMonitor, SystemdNotifier, report_channel};
//!
//! struct Worker;
//! impl Actor for Worker {
//!     type Msg = ();
//!     fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) }
//! }
//!
//! let (publisher, watch) = report_channel(); // before the tree, for an endpoint in it
//! // `main` is significant: the app ends when it does (OTP's auto_shutdown).
//! let main = ChildSpec::worker("main", || Worker).significant(true).restart(Restart::Transient);
//! let system = Supervisor::builder().auto_shutdown(AutoShutdown::AnySignificant).child(main).start()?;
//! let monitor = HealthMonitor::builder(system.observer()).publisher(publisher).start()?;
//! let notifier = SystemdNotifier::from_env().start(watch.clone())?; // nothing outside systemd
//! assert_eq!(watch.get().health, Health::Ready);
//!
//! system.shutdown()?;
//! assert_eq!(monitor.stop().health, Health::Stopped);
//! notifier.join();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! | feature | adds |
//! |---|---|
//! | `events` | the event pipeline's ledger, and the outage reason |
//! | `https` | the HTTPS sinks' delivery counts and certificates, and the rotation reason |
//! | `http` | `HealthEndpoint`: probes, `/stats`, `/metrics` (tiny_http, prometheus-client, serde_json) |
//!
//! Without features it depends on vigil-core's own dependencies and
//! `sd-notify` (which brings only libc).

mod error;
#[cfg(feature = "http")]
mod http;
#[cfg(feature = "http")]
mod metrics;
mod model;
mod monitor;
mod systemd;
mod watch;

pub use error::HealthError;
#[cfg(feature = "http")]
pub use http::{EndpointActor, HealthEndpoint, OPENMETRICS, PROMETHEUS_TEXT};
pub use model::{Health, HealthConfig, Reason};
#[cfg(feature = "https")]
pub use monitor::HttpsFigures;
pub use monitor::{HealthMonitor, HealthMonitorBuilder, HealthReport, RestartCount, report_channel};
pub use systemd::{NotifierHandle, SystemdNotifier};
pub use watch::{Publisher, Watch, watch};
