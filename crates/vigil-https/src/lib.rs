//! vigil-https: an HTTPS [`Sink`](vigil_events::Sink) for the vigil batcher
//! that keeps working through certificate rotations and shows them coming.
//!
//! # How the types fit together
//!
//! - [`HttpsSinkConfig`] is a cheap, cloneable builder: endpoint, trust files,
//!   optional client identity, timeouts. The batcher's child factory calls
//!   [`HttpsSinkConfig::build`] on every (re)start, and building reads the PEM
//!   files anew, so a supervisor restart picks up a new trust bundle.
//! - [`HttpsSink`] POSTs one [`Batch`](vigil_events::Batch) per request with
//!   ureq over rustls (*ring* provider, certificate verification always on)
//!   and answers with a [`Delivery`](vigil_events::Delivery). While running it
//!   polls its trust files and swaps in a changed, valid set; a bad file is
//!   refused and the last good set stays.
//! - [`Proxy`] says whether the sink goes through an HTTP CONNECT proxy:
//!   from the environment as curl reads it (`HTTPS_PROXY`, `ALL_PROXY`,
//!   `NO_PROXY`; the default), a fixed URL, none, or injected variables. TLS
//!   runs end to end inside the tunnel, with the same verifier.
//! - [`HttpsError`] says what went wrong, naming the endpoint or file and, for
//!   a rejected certificate, what was wrong with it. Its
//!   [`class`](HttpsError::class) decides the `Delivery`: TLS failures and
//!   401/403 are fatal (the supervisor restarts the sink, which reloads the
//!   trust set), network trouble and 5xx are retryable (honouring
//!   `Retry-After`), 413 is too large, other 4xx are rejected. A batch in
//!   the OTLP encoding ([`Encoding::OtlpLogsJson`](vigil_events::Encoding::OtlpLogsJson),
//!   POSTed to an OTLP/HTTP receiver's `/v1/logs`) is judged by the OTLP
//!   rules instead ([`otlp_class`](HttpsError::otlp_class)): only 429, 502,
//!   503 and 504 are retried, and a `200` whose `partialSuccess` rejects
//!   records becomes
//!   [`Delivery::PartiallyRejected`](vigil_events::Delivery::PartiallyRejected).
//! - [`HttpsStats`], obtained from the config, outlives the sinks: it holds the
//!   last server certificate seen ([`CertificateInfo`]: subject, issuer,
//!   notAfter, SHA-256 fingerprints), how many times it changed, TLS failures,
//!   deliveries by outcome and trust reloads; and
//!   [`readiness`](HttpsStats::readiness), a [`Readiness`] report of the
//!   served chain, the anchor, the trust set, the announced rotations and the
//!   client identity, with `ready` and its reasons.
//! - The config's **trust watcher**, a thread started by the first build and
//!   shared by every clone, polls the trust and identity files, checks the
//!   [announced rotations](HttpsSinkConfig::announced_rotation) against the
//!   trust set, and on a change wakes the pipeline given to
//!   [`wake_pipeline`](HttpsSinkConfig::wake_pipeline), ending the batcher's
//!   restart backoff.
//!
//! Logs go to the `log` target `vigil::https`: every trust load (how many
//! certificates from which files), `server certificate changed` with the old
//! and the new chain, a warning when a certificate comes within the
//! [expiry horizon](HttpsSinkConfig::expiry_warning) and again within 7 days
//! (the served leaf, every served intermediate, the trust anchor that
//! verified them and the client certificate, each named), and the announced
//! rotations (WARN daily while the new CA is missing, ERROR near the date,
//! INFO once when it is trusted).
//! The `Authorization` header is never logged, and credentials in the
//! endpoint URL (userinfo, query values) are shown as `***` in logs, errors
//! and stats.
//!
//! # Example
//!
//! Delivering to a local `vigil-collector` (a real HTTPS server on loopback)
//! that trusts nothing but the collector's CA file:
//!
//! ```
//! use std::time::Duration;
//! use vigil_events::{Batch, Delivery, Encoding, Sink};
//! use vigil_https::{HttpsError, HttpsSinkConfig};
//!
//! let collector = vigil_collector::Collector::builder().start()?;
//!
//! let config = HttpsSinkConfig::new(collector.endpoint())
//!     .trust_file(collector.ca_pem_path())
//!     .trust_poll_interval(Duration::from_secs(30))
//!     .authorization("Bearer s3cr3t");
//! let stats = config.stats();
//!
//! // What the batcher's child factory does on every (re)start:
//! let mut sink = config.build()?;
//!
//! let batch = Batch::new("batch-1", Encoding::Ndjson, vec![1, 2], b"{\"seq\":1}\n{\"seq\":2}\n".to_vec());
//! match sink.deliver(&batch, None) {
//!     Delivery::Delivered => {}
//!     Delivery::Fatal { error } => {
//!         // Untrusted certificate, 401/403, ...: the supervisor restarts the sink.
//!         let error = error.downcast_ref::<HttpsError>().expect("an HttpsError");
//!         panic!("restart needed: {error}");
//!     }
//!     other => panic!("{}: {:?}", other.kind(), other.error()),
//! }
//! assert!(collector.wait_for_events(2, Duration::from_secs(10)));
//!
//! // The leaf certificate from the handshake, for dashboards and alerts.
//! let cert = stats.snapshot().server_certificate.expect("seen in the handshake");
//! println!("{} expires {} (sha256 {})", cert.subject, cert.not_after, cert.sha256);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Certificate rotation
//!
//! List the old and the new CA during the rotation window (two
//! [`trust_file`](HttpsSinkConfig::trust_file)s, or both in one file). If the
//! server rotates to a CA the client does not trust yet, deliveries fail as
//! fatal with `certificate for HOST:PORT not trusted: unknown issuer …`; the
//! batcher keeps the events and the supervisor restarts the sink with backoff.
//! As soon as the new CA is written to a trust file, the trust watcher sees it
//! within one [poll interval](HttpsSinkConfig::trust_poll_interval) and, with
//! [`wake_pipeline`](HttpsSinkConfig::wake_pipeline), restarts the waiting
//! batcher at once, however long its backoff had grown; a running sink swaps
//! in the new set at its next delivery.
//!
//! The check happens in the handshake, so it applies to new connections. A
//! change of the trust set drops the sink's pooled connections, so every
//! later request is verified under the new set; otherwise a pooled connection
//! opened before the server rotated keeps working until it closes (ureq drops
//! idle pooled connections after 15 seconds). Session resumption is off, so
//! every new connection is verified in full.
//!
//! # Rotation readiness: the operator's workflow in five steps
//!
//! 1. **Announcement.** The server's operator announces a rotation to a new
//!    CA by a date. Configure it on every host:
//!    `config.announced_rotation(NewCa::Pem("new-ca.pem".into()), "2017-10-05")`
//!    ([`announced_rotation`](HttpsSinkConfig::announced_rotation); a PEM that
//!    is not a valid, unexpired CA is a typed error at build).
//! 2. **Check every host.** At build and every trust poll each host checks its
//!    trust set for the new CA: a WARN a day while it is missing, an ERROR from
//!    [`rotation_alarm`](HttpsSinkConfig::rotation_alarm) (7 days) before the
//!    date, and [`readiness`](HttpsStats::readiness) says *not ready*. The
//!    workspace's `rotation-check` example runs the same check once from the
//!    command line and exits 1 on a host that is not ready.
//! 3. **Prepare the trust.** Add the new CA beside the old one. Within one
//!    poll the sink uses the new set, the report says *ready*, one INFO line
//!    says so.
//! 4. **The rotation.** The server moves to the new chain; the change is
//!    logged with both chains and the expiry warnings follow the new
//!    certificates. A host that was missed fails as fatal and keeps its
//!    events; fixing its trust file resumes delivery within one poll.
//! 5. **Retirement.** When every host is ready and the old CA is retired,
//!    remove it and the announcement from the configuration.
//!
//! # What survives a restart?
//!
//! The supervisor drops a failed sink and the factory builds a new one from
//! the same [`HttpsSinkConfig`]. The new sink reads the trust and identity
//! files again and opens a new connection. What carries over lives in the
//! config's [`HttpsStats`]: the counters, the last server certificate (so a
//! certificate change across the restart is still noticed) and which expiry
//! warnings were already given (so a restart loop does not repeat them). The
//! batch in flight belongs to the batcher, which keeps it and offers it to the
//! new sink under the same idempotency key.
//!
//! # Why a custom TLS connector
//!
//! The real reason is the **recording certificate verifier**: to say which
//! certificate a server presented when a handshake fails (its subject,
//! issuer, expiry and fingerprint, in the error, the stats and the expiry
//! warnings), the verifier must see the leaf, and ureq has no hook for a
//! verifier of one's own: its TLS configuration takes root certificates only
//! (and may fall back to a process-wide crypto provider). So this crate plugs
//! its own connector into ureq's transport chain: ureq opens the TCP
//! connection (through a proxy: to the proxy, followed by a `CONNECT`), then
//! the connector runs the rustls handshake with a `ClientConfig` built on
//! `rustls::crypto::ring::default_provider()` whose verifier wraps webpki over
//! the current trust set and records the leaf it was shown. Session
//! resumption is off, so every new connection is verified against the
//! current trust set.

mod cert;
mod config;
mod error;
mod pem;
mod proxy;
mod readiness;
mod redact;
mod resolve;
mod retry_after;
mod rotation;
mod sink;
mod stats;
mod tls;
mod watch;

pub use cert::CertificateInfo;
pub use config::HttpsSinkConfig;
pub use error::{CertificateProblem, ErrorClass, HttpsError, PemProblem, PemRole, Phase};
pub use proxy::Proxy;
pub use readiness::{AnchorStatus, CertificateStatus, Readiness, RotationStatus, TrustStatus};
pub use retry_after::RETRY_AFTER_CAP;
pub use rotation::{NewCa, RotationDate};
pub use sink::HttpsSink;
pub use stats::{DeliveryCounts, HttpsStats, HttpsStatsSnapshot};
