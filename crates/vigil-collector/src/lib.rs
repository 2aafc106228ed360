//! A loopback HTTPS ingestion server that misbehaves on request.
//!
//! [`Collector`] is a real HTTPS server on std threads (rustls with the
//! *ring* provider, certificates made at start-up with rcgen). It receives
//! event batches the way `vigil-https` sends them, keeps exactly one copy of
//! each, and can be told at run time to fail in the ways real servers fail:
//!
//! - [`Fault`]: how requests are answered (status codes, `Retry-After`,
//!   never, slowly, with a reset, cut off, or with garbage). Set one for
//!   every request with [`Collector::set_fault`], or for the next few with
//!   [`Collector::fail_next`].
//! - [`CertMode`] and [`Collector::rotate_ca`]: which certificate new
//!   connections get (valid, expired, for the wrong name, expiring soon) and
//!   which CA signs it. The CA is written to a PEM file
//!   ([`Collector::ca_pem_path`]) that clients load as their trust anchor.
//! - [`CollectorStats`], [`Collector::seqs`] and
//!   [`Collector::wait_for_events`]: what arrived, for assertions.
//! - [`Command`]: the same controls as text, for the `vigil-collector`
//!   binary's stdin and its optional `POST /control` endpoint.
//! - [`ConnectProxy`]: a real HTTP CONNECT proxy on loopback that records
//!   the targets it tunnels to, for testing clients behind a proxy.
//!
//! # The wire contract
//!
//! `POST /ingest` takes a batch as NDJSON (`application/x-ndjson`) or a JSON
//! array (`application/json`), optionally gzip'd (`Content-Encoding: gzip`).
//! Every record must be a JSON object with an unsigned integer `seq`. The
//! `Idempotency-Key` header names the batch: a key already accepted is
//! answered `200` with `"duplicate": true` and its events are not counted
//! again. A body that does not parse is answered `400` (`415` for an unknown
//! content type or encoding, `413` when larger than
//! [`max_body`](CollectorBuilder::max_body)). `GET /health` answers `200`.
//!
//! `POST /v1/logs` ([`Collector::otlp_endpoint`]) takes an OTLP/HTTP
//! `ExportLogsServiceRequest` in the OTLP JSON encoding, gzip'd or not, and
//! parses it strictly: a body off the schema (an unknown field, an enum
//! name, a malformed 64-bit integer, an `AnyValue` with two values, a log
//! record without a `vigil.seq` attribute…) is answered `400` with a
//! `google.rpc.Status` JSON body and counted in
//! [`bad_requests`](CollectorStats::bad_requests). Log records are
//! de-duplicated by `vigil.seq` like `/ingest` records by `seq`, and counted
//! in [`otlp_records`](CollectorStats::otlp_records). A success is answered
//! `{}`; the [`PartialSuccess`](Fault::PartialSuccess) fault answers a
//! `partialSuccess` instead.
//!
//! Connections are HTTP/1.1 keep-alive (`Connection: close` is honoured),
//! one thread each, at most [`max_connections`](CollectorBuilder::max_connections).
//!
//! With [`control_endpoints`](CollectorBuilder::control_endpoints) on (the
//! binary turns them on), `POST /control` takes a [`Command`] line and
//! `GET /stats` reports the counters as JSON.
//!
//! Everything is logged through `log` with target `vigil::collector`.
//!
//! # Features, and why this crate is published
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `cli` | yes | the `vigil-collector` binary (`cargo install vigil-collector`) and its own dependencies, clap and env_logger |
//!
//! A library that depends on the collector turns defaults off
//! (`default-features = false`) and gets the server alone.
//!
//! The crate is published, although it is a test tool: a service that ships
//! events with `vigil-https` should be able to test its own configuration
//! (trust anchors, timeouts, retries) against a server that rotates its CA
//! and fails on request, and the `vigil` facade offers exactly that behind
//! its off-by-default `collector` feature, which needs this crate on
//! crates.io. It belongs in `[dev-dependencies]`, and it is never a default
//! of the facade: a user who does not ask for it compiles no rcgen, no
//! socket2 and no server.
//!
//! # Design questions
//!
//! **When does a certificate change take effect?** For every connection
//! accepted after [`rotate_ca`](Collector::rotate_ca) or
//! [`serve`](Collector::serve) returns. By default the change also closes the
//! keep-alive connections opened under the old certificate (idle ones at
//! once, busy ones after their current response), the way a server reload
//! does, so a client with a connection pool sees the change on its next
//! request. [`close_on_cert_change(false)`](CollectorBuilder::close_on_cert_change)
//! keeps them instead.
//!
//! **What happens to a request in flight at shutdown?**
//! [`shutdown`](Collector::shutdown) closes every socket and wakes every
//! sleeping fault, then joins all threads. A request held by
//! [`Fault::NeverAnswer`] or [`Fault::Slow`] is dropped unanswered and, for
//! `Slow`, unrecorded. A batch is recorded entirely or not at all.
//!
//! **Why a thread per connection?** The collector is a test and development
//! tool: threads keep every fault a few lines of blocking code, and
//! [`max_connections`](CollectorBuilder::max_connections) bounds them.
//!
//! # Example
//!
//! A client that trusts the collector's CA delivers a batch, then sees a
//! `503` with `Retry-After`:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
//! use vigil_collector::{Collector, Fault};
//!
//! let collector = Collector::builder().start()?;
//!
//! let ca = Certificate::from_pem(&std::fs::read(collector.ca_pem_path())?)?;
//! let tls = TlsConfig::builder()
//!     .provider(TlsProvider::Rustls)
//!     .root_certs(RootCerts::new_with_certs(&[ca]))
//!     .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
//!     .build();
//! let agent = ureq::Agent::config_builder()
//!     .tls_config(tls)
//!     .http_status_as_error(false)
//!     .build()
//!     .new_agent();
//!
//! let send = |key: &str| {
//!     agent
//!         .post(&collector.endpoint())
//!         .header("Content-Type", "application/x-ndjson")
//!         .header("Idempotency-Key", key)
//!         .send("{\"seq\":1}\n{\"seq\":2}\n")
//! };
//! assert_eq!(send("batch-1")?.status(), 200);
//! assert!(collector.wait_for_events(2, Duration::from_secs(10)));
//!
//! collector.fail_next(1, Fault::RetryAfter { status: 503, value: "2".into() });
//! let refused = send("batch-2")?;
//! assert_eq!(refused.status(), 503);
//! assert_eq!(refused.headers()["retry-after"], "2");
//!
//! assert_eq!(collector.seqs().into_iter().collect::<Vec<_>>(), [1, 2]);
//! assert_eq!(collector.stats().faults_served, 1);
//! collector.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod certs;
mod control;
mod error;
mod fault;
mod http;
mod ingest;
mod otlp;
mod proxy;
mod server;
mod stats;

pub use control::{COMMAND_HELP, Command};
pub use error::{CollectorError, ParseCommandError};
pub use fault::{CertMode, Fault};
pub use proxy::ConnectProxy;
pub use server::{Collector, CollectorBuilder};
pub use stats::CollectorStats;

/// The `log` target of everything this crate logs.
pub(crate) const TARGET: &str = "vigil::collector";
