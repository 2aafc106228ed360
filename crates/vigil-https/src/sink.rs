//! [`HttpsSink`]: delivering one batch per request and classifying the outcome.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use ureq::unversioned::transport::{ConnectProxyConnector, Connector, TcpConnector};
use vigil_events::{Batch, Delivery, Sink};

use crate::config::{HttpsSinkConfig, Secret, bounded};
use crate::error::{HttpsError, Phase};
use crate::pem::{ClientIdentity, FileStamp, TrustSet, load_identity, load_trust};
use crate::proxy::Route;
use crate::resolve::CachingResolver;
use crate::retry_after::parse_retry_after;
use crate::stats::HttpsStats;
use crate::tls::{TlsParts, VigilConnector, client_config, tls_error};

/// At most this much of an error response's body goes into [`HttpsError::Status`].
const BODY_EXCERPT: usize = 256;
/// At most this much of any response body is read (and discarded).
const BODY_LIMIT: u64 = 1024 * 1024;

/// A [`Sink`] that POSTs each batch to an HTTPS endpoint with ureq and rustls
/// (ring provider).
///
/// Built by [`HttpsSinkConfig::build`]. See the [crate documentation](crate)
/// for how it fits with the batcher.
///
/// # About threads
///
/// A sink lives on the batcher's thread and handles one batch at a time. It
/// keeps one pooled connection to the endpoint between deliveries. Trust and
/// identity files are checked at the start of a delivery, at most once per
/// [poll interval](HttpsSinkConfig::trust_poll_interval); a changed, valid
/// set replaces the old one (and drops the pooled connection, so the next
/// request handshakes against the new set). A bad file is refused and the
/// last good set stays.
pub struct HttpsSink {
    config: HttpsSinkConfig,
    /// The `Authorization` value, checked and trimmed.
    authorization: Option<Secret>,
    /// The proxy chosen at build, if any.
    route: Option<Route>,
    provider: Arc<CryptoProvider>,
    https: bool,
    agent: ureq::Agent,
    trust: Option<TrustSet>,
    identity: Option<ClientIdentity>,
    stamps: Vec<(PathBuf, FileStamp)>,
    last_poll: Instant,
    /// The trust watcher's generation when the files were last loaded.
    seen_generation: u64,
}

/// What a load of the PEM files produces.
struct Material {
    trust: Option<TrustSet>,
    identity: Option<ClientIdentity>,
    agent: ureq::Agent,
}

impl HttpsSink {
    pub(crate) fn new(config: HttpsSinkConfig, https: bool) -> Result<HttpsSink, HttpsError> {
        let authorization = config.authorization.as_ref().map(|raw| raw.checked(&config.endpoint)).transpose()?;
        let uri: ureq::http::Uri = config.target.parse().map_err(|e: ureq::http::uri::InvalidUri| {
            HttpsError::InvalidEndpoint { endpoint: config.endpoint.clone(), reason: format!("not a URL: {e}") }
        })?;
        let route = config.proxy.route(&uri, &config.endpoint)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let seen_generation = config.watch.generation();
        let stamps = watched_files(&config).into_iter().map(|p| (p.clone(), FileStamp::of(&p))).collect();
        let material = load_material(&config, &provider, https, route.as_ref())?;
        if let Some(trust) = &material.trust {
            log::info!(
                target: "vigil::https",
                "sink for {}: trusting {}",
                config.endpoint,
                trust.describe()
            );
        }
        if let Some(route) = &route {
            log::info!(
                target: "vigil::https",
                "sink for {}: connecting through proxy {} (from {})",
                config.endpoint,
                route.shown,
                route.origin
            );
        }
        log_identity(&config, material.identity.as_ref());
        config.stats.sink_built(
            material.trust.as_ref().map_or(0, TrustSet::file_certificates),
            route.as_ref().map(|r| r.shown.clone()),
        );
        Ok(HttpsSink {
            authorization,
            route,
            provider,
            https,
            agent: material.agent,
            trust: material.trust,
            identity: material.identity,
            stamps,
            last_poll: Instant::now(),
            seen_generation,
            config,
        })
    }

    /// The statistics shared with the [`HttpsSinkConfig`] this sink was built from.
    pub fn stats(&self) -> HttpsStats {
        self.config.stats.clone()
    }

    /// The endpoint batches are sent to, as it is shown in errors, logs and
    /// stats: userinfo and query values replaced by `***`.
    pub fn endpoint(&self) -> &str {
        &self.config.endpoint
    }

    /// Connects to the endpoint once without delivering anything: a `HEAD`
    /// request, whose TLS handshake records the served chain and the anchor
    /// that verified it for the [readiness report](HttpsStats::readiness).
    /// Returns the HTTP status, whatever it is: any answer means the chain
    /// was trusted. Polls the trust files first, as a delivery does.
    ///
    /// # Errors
    ///
    /// The [`HttpsError`] of the request: a [`Certificate`](HttpsError::Certificate)
    /// error when the chain is not trusted (the report then says why).
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_https::HttpsSinkConfig;
    ///
    /// let collector = vigil_collector::Collector::builder().start()?;
    /// let config = HttpsSinkConfig::new(collector.endpoint()).trust_file(collector.ca_pem_path());
    /// let mut sink = config.build()?;
    /// sink.probe()?;
    /// assert!(config.stats().readiness().ready);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn probe(&mut self) -> Result<u16, HttpsError> {
        self.poll_files();
        let timeout = bounded(self.config.timeout_global);
        let request = self.agent.head(self.config.target.as_str()).config().timeout_global(timeout).build();
        match request.call() {
            Ok(response) => Ok(response.status().as_u16()),
            Err(e) => {
                let error = self.classify(e, timeout);
                self.config.stats.probe_failed(&error);
                Err(error)
            }
        }
    }

    /// Polls the trust and identity files if the interval has passed, and
    /// swaps in a changed, valid set.
    fn poll_files(&mut self) {
        // The watcher saw a change: look now, not at the end of this sink's own interval.
        let generation = self.config.watch.generation();
        if self.stamps.is_empty()
            || (generation == self.seen_generation && self.last_poll.elapsed() < self.config.trust_poll_interval)
        {
            return;
        }
        self.seen_generation = generation;
        self.last_poll = Instant::now();
        let changed: Vec<&PathBuf> =
            self.stamps.iter().filter(|(path, stamp)| FileStamp::of(path) != *stamp).map(|(path, _)| path).collect();
        if changed.is_empty() {
            return;
        }
        let names: Vec<String> = changed.iter().map(|p| p.display().to_string()).collect();
        // Remember the new stamps whatever the outcome: a bad file is reported
        // once and retried when it changes again.
        for (path, stamp) in &mut self.stamps {
            *stamp = FileStamp::of(path);
        }
        match load_material(&self.config, &self.provider, self.https, self.route.as_ref()) {
            Ok(material) => {
                let trusted = material.trust.as_ref().map_or(0, TrustSet::file_certificates);
                if let Some(trust) = &material.trust {
                    log::info!(
                        target: "vigil::https",
                        "sink for {}: {} changed; now trusting {}",
                        self.config.endpoint,
                        names.join(", "),
                        trust.describe()
                    );
                }
                if self.config.client_identity.is_some() {
                    log_identity(&self.config, material.identity.as_ref());
                }
                self.trust = material.trust;
                self.identity = material.identity;
                self.agent = material.agent;
                self.config.stats.trust_reloaded(trusted);
            }
            Err(error) => {
                log::warn!(
                    target: "vigil::https",
                    "sink for {}: {} changed but cannot be used, keeping the last good trust set ({}): {error}",
                    self.config.endpoint,
                    names.join(", "),
                    self.trust.as_ref().map_or_else(|| "none".to_string(), TrustSet::describe),
                );
                self.config.stats.trust_reload_failed(&error);
            }
        }
    }

    /// Sends one batch; `Ok` when the server answered 2xx, with what an
    /// OTLP receiver said it refused.
    fn send(&self, batch: &Batch, budget: Option<Duration>) -> Result<PartialSuccess, HttpsError> {
        let endpoint = &self.config.endpoint;
        let timeout = match (bounded(self.config.timeout_global), bounded(budget)) {
            (Some(global), Some(budget)) => Some(global.min(budget)),
            (global, budget) => global.or(budget),
        };
        let body: Cow<'_, [u8]> = if self.config.gzip {
            Cow::Owned(gzip(batch.body()).map_err(|e| HttpsError::InvalidRequest {
                endpoint: endpoint.clone(),
                reason: format!("cannot gzip the body: {e}"),
            })?)
        } else {
            Cow::Borrowed(batch.body())
        };
        let mut request = self
            .agent
            .post(self.config.target.as_str())
            .header("Content-Type", batch.content_type())
            .header("Idempotency-Key", batch.idempotency_key());
        if self.config.gzip {
            request = request.header("Content-Encoding", "gzip");
        }
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth.expose());
        }
        let request = request.config().timeout_global(timeout).build();
        let mut response = match request.send(&body[..]) {
            Ok(response) => response,
            Err(e) => return Err(self.classify(e, timeout)),
        };
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            let mut reader = response.body_mut().with_config().limit(BODY_LIMIT).reader();
            let mut answer = Vec::new();
            let read = if batch.encoding().is_otlp() {
                reader.read_to_end(&mut answer).map(|_| ())
            } else {
                io::copy(&mut reader, &mut io::sink()).map(|_| ())
            };
            return match read {
                Ok(()) => Ok(PartialSuccess::parse(&answer)),
                // The server answered 2xx; a long body is its business.
                Err(e) if is_body_limit(&e) => Ok(PartialSuccess::default()),
                // Closed mid-response: retrying is safe, the idempotency key
                // lets the server drop the duplicate.
                Err(e) => Err(self.classify(ureq::Error::from(e), timeout)),
            };
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let mut excerpt = Vec::new();
        let mut reader = response.body_mut().with_config().limit(BODY_LIMIT).reader();
        // The body only adds detail to the message; failing to read it changes nothing.
        let _ = (&mut reader).take(BODY_EXCERPT as u64).read_to_end(&mut excerpt);
        let _ = io::copy(&mut reader, &mut io::sink());
        Err(HttpsError::Status {
            endpoint: endpoint.clone(),
            status,
            retry_after,
            body: String::from_utf8_lossy(&excerpt).trim().to_string(),
        })
    }

    /// Turns a ureq error into an [`HttpsError`].
    fn classify(&self, error: ureq::Error, timeout: Option<Duration>) -> HttpsError {
        classify(&self.config, self.route.as_ref(), error, timeout)
    }
}

/// Turns a ureq error into an [`HttpsError`] naming the endpoint (redacted)
/// and, for a failure to reach it, the proxy in use.
pub(crate) fn classify(
    config: &HttpsSinkConfig,
    route: Option<&Route>,
    error: ureq::Error,
    timeout: Option<Duration>,
) -> HttpsError {
    let endpoint = config.endpoint.clone();
    // ureq's messages may quote the URL it was given.
    let scrub = |reason: String| {
        if config.target == config.endpoint { reason } else { reason.replace(&config.target, &config.endpoint) }
    };
    match error {
        ureq::Error::Other(inner) => match inner.downcast::<HttpsError>() {
            Ok(https) => *https,
            Err(other) => HttpsError::Other { endpoint, reason: scrub(other.to_string()) },
        },
        ureq::Error::ConnectProxyFailed(reason) => match route {
            Some(route) => HttpsError::Proxy { endpoint, proxy: route.shown.clone(), reason },
            None => HttpsError::Other { endpoint, reason: format!("CONNECT proxy failed: {reason}") },
        },
        ureq::Error::Timeout(which) => {
            use ureq::Timeout as T;
            let (phase, limit) = match which {
                T::Resolve => (Phase::Resolve, None),
                T::Connect => (Phase::Connect, config.timeout_connect),
                T::Global | T::PerCall => (Phase::Request, timeout),
                _ => (Phase::Exchange, None),
            };
            HttpsError::Timeout { endpoint, phase, limit }
        }
        ureq::Error::HostNotFound => HttpsError::Dns { endpoint, reason: "host not found".to_string() },
        ureq::Error::Io(io) => {
            if let Some(tls) = io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
                return tls_error(&endpoint, &authority(&endpoint), Phase::Exchange, tls, None);
            }
            let phase = match io.kind() {
                io::ErrorKind::ConnectionRefused
                | io::ErrorKind::AddrNotAvailable
                | io::ErrorKind::HostUnreachable
                | io::ErrorKind::NetworkUnreachable => Phase::Connect,
                _ => Phase::Exchange,
            };
            match route {
                // Through a proxy, the only connection opened is the one to the proxy.
                Some(route) if phase == Phase::Connect => HttpsError::Proxy {
                    endpoint,
                    proxy: route.shown.clone(),
                    reason: format!("cannot connect to the proxy: {io}"),
                },
                _ => HttpsError::Io { endpoint, phase, kind: io.kind(), reason: io.to_string() },
            }
        }
        ureq::Error::Rustls(tls) => tls_error(&endpoint, &authority(&endpoint), Phase::Handshake, &tls, None),
        ureq::Error::Tls(reason) => HttpsError::Tls { endpoint, phase: Phase::Handshake, reason: reason.to_string() },
        ureq::Error::TlsRequired => {
            HttpsError::Tls { endpoint, phase: Phase::Handshake, reason: "no TLS connection could be made".to_string() }
        }
        ureq::Error::ConnectionFailed => HttpsError::Io {
            endpoint,
            phase: Phase::Connect,
            kind: io::ErrorKind::Other,
            reason: "connection failed".to_string(),
        },
        ureq::Error::Protocol(e) => HttpsError::Protocol { endpoint, reason: scrub(e.to_string()) },
        e @ (ureq::Error::LargeResponseHeader(..) | ureq::Error::Decompress(..) | ureq::Error::BodyStalled) => {
            HttpsError::Protocol { endpoint, reason: scrub(e.to_string()) }
        }
        ureq::Error::Http(e) => HttpsError::InvalidRequest { endpoint, reason: scrub(e.to_string()) },
        ureq::Error::BadUri(reason) => HttpsError::InvalidEndpoint { endpoint, reason: scrub(reason) },
        ureq::Error::RequireHttpsOnly(_) => HttpsError::InsecureEndpoint { endpoint },
        ureq::Error::StatusCode(status) => {
            HttpsError::Status { endpoint, status, retry_after: None, body: String::new() }
        }
        other => HttpsError::Other { endpoint, reason: scrub(other.to_string()) },
    }
}

/// What an OTLP/HTTP receiver's `200` says it refused: the
/// `partialSuccess` of an `ExportLogsServiceResponse`. Empty for any other
/// answer, including one that is not JSON (it is a success all the same).
#[derive(Debug, Default, PartialEq, Eq)]
struct PartialSuccess {
    /// `rejectedLogRecords`; a negative or unreadable count is 0.
    rejected: u64,
    /// `errorMessage`.
    message: String,
}

impl PartialSuccess {
    fn parse(body: &[u8]) -> PartialSuccess {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return PartialSuccess::default();
        };
        let partial = &value["partialSuccess"];
        // An int64: a decimal string in the JSON mapping, though parsers
        // must take a number too.
        let rejected = match &partial["rejectedLogRecords"] {
            serde_json::Value::String(s) => s.trim().parse::<i64>().ok(),
            other => other.as_i64(),
        };
        PartialSuccess {
            rejected: rejected.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
            message: partial["errorMessage"].as_str().unwrap_or_default().to_string(),
        }
    }
}

/// `host:port` of an endpoint URL, for messages.
fn authority(endpoint: &str) -> String {
    match endpoint.parse::<ureq::http::Uri>() {
        Ok(uri) => {
            let default = if uri.scheme_str() == Some("http") { 80 } else { 443 };
            format!("{}:{}", uri.host().unwrap_or_default(), uri.port_u16().unwrap_or(default))
        }
        Err(_) => endpoint.to_string(),
    }
}

fn is_body_limit(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<ureq::Error>())
        .is_some_and(|inner| matches!(inner, ureq::Error::BodyExceedsLimit(_)))
}

fn gzip(body: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder =
        flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4 + 64), flate2::Compression::fast());
    encoder.write_all(body)?;
    encoder.finish()
}

/// The files a running sink polls: trust files, then the identity files.
pub(crate) fn watched_files(config: &HttpsSinkConfig) -> Vec<PathBuf> {
    let mut files = config.trust_files.clone();
    if let Some((chain, key)) = &config.client_identity {
        files.push(chain.clone());
        if key != chain {
            files.push(key.clone());
        }
    }
    files
}

fn log_identity(config: &HttpsSinkConfig, identity: Option<&ClientIdentity>) {
    let leaf = identity.and_then(|i| i.chain.first()).and_then(|der| crate::cert::CertificateInfo::from_der(der).ok());
    config.stats.client_certificate(leaf);
    if let (Some((chain, key)), Some(identity)) = (&config.client_identity, identity) {
        log::info!(
            target: "vigil::https",
            "sink for {}: client identity {} ({} certificates) with key {}",
            config.endpoint,
            chain.display(),
            identity.chain.len(),
            key.display()
        );
    }
}

/// Reads the PEM files and builds the TLS configuration and HTTP agent.
fn load_material(
    config: &HttpsSinkConfig,
    provider: &Arc<CryptoProvider>,
    https: bool,
    route: Option<&Route>,
) -> Result<Material, HttpsError> {
    let trust = if !config.trust_files.is_empty() || config.webpki_roots {
        Some(load_trust(&config.trust_files, config.webpki_roots)?)
    } else if https {
        return Err(HttpsError::NoTrustConfigured { endpoint: config.endpoint.clone() });
    } else {
        None
    };
    let identity = match &config.client_identity {
        Some((chain, key)) => Some(load_identity(chain, key, provider)?),
        None => None,
    };
    let tls = match &trust {
        Some(trust) => {
            let (client, verifier) = client_config(&config.endpoint, provider, trust, identity.as_ref())?;
            Some(TlsParts {
                config: client,
                verifier,
                stats: config.stats.clone(),
                expiry_warning: config.expiry_warning,
                anchors: Arc::new(trust.anchors.clone()),
            })
        }
        None => None,
    };
    // Through a proxy: TCP to the proxy and CONNECT (ureq's connector, which
    // runs this whole chain again for the proxy's own plain connection), then
    // TLS with the endpoint inside the tunnel. Without one: TCP, then TLS.
    let connector = ConnectProxyConnector::default()
        .chain(TcpConnector::default())
        .chain(VigilConnector { endpoint: config.endpoint.clone(), tls });
    let agent_config = ureq::Agent::config_builder()
        // Always explicit: ureq would otherwise read the environment itself.
        .proxy(route.map(|r| r.proxy.clone()))
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(bounded(config.timeout_connect))
        .timeout_global(bounded(config.timeout_global))
        .user_agent(concat!("vigil-https/", env!("CARGO_PKG_VERSION")))
        .max_idle_connections(1)
        .max_idle_connections_per_host(1)
        .build();
    let agent = ureq::Agent::with_parts(agent_config, connector, CachingResolver::default());
    Ok(Material { trust, identity, agent })
}

impl Sink for HttpsSink {
    fn deliver(&mut self, batch: &Batch, budget: Option<Duration>) -> Delivery {
        self.poll_files();
        let stats = self.config.stats.clone();
        stats.check_expiry(self.config.expiry_warning);
        match self.send(batch, budget) {
            Ok(partial) if partial.rejected > 0 => {
                let rejected = partial.rejected.min(batch.len() as u64);
                let message = format!(
                    "{} refused {rejected} of the {} log records of batch {}: {}",
                    self.config.endpoint,
                    batch.len(),
                    batch.idempotency_key(),
                    if partial.message.is_empty() { "no errorMessage given" } else { &partial.message }
                );
                // Once per batch: the receiver answered once.
                log::warn!(target: "vigil::https", "{message}");
                stats.partially_rejected(batch.len() as u64 - rejected, rejected, &message);
                Delivery::PartiallyRejected { rejected, error: message.into() }
            }
            Ok(partial) => {
                if !partial.message.is_empty() {
                    log::warn!(
                        target: "vigil::https",
                        "{} accepted batch {} with a warning: {}",
                        self.config.endpoint,
                        batch.idempotency_key(),
                        partial.message
                    );
                }
                log::trace!(
                    target: "vigil::https",
                    "delivered batch {} ({} events, {} bytes) to {}",
                    batch.idempotency_key(),
                    batch.len(),
                    batch.body().len(),
                    self.config.endpoint
                );
                stats.delivered(batch.len());
                Delivery::Delivered
            }
            Err(error) => {
                let otlp = batch.encoding().is_otlp();
                if otlp {
                    stats.failed_as(&error, error.otlp_class());
                } else {
                    stats.failed(&error);
                }
                // DEBUG with the full detail (`{:#}`: the presented
                // certificate's issuer, notAfter, fingerprint). A fatal
                // failure is reported once at WARN, by the supervisor's
                // restart line for the batcher, with the short cause.
                log::debug!(target: "vigil::https", "batch {}: {error:#}", batch.idempotency_key());
                if error.is_tls() && self.config.watch.generation() != self.seen_generation {
                    // The trust files changed while this request was in
                    // flight: retry soon with the new set rather than fail
                    // into the restart backoff the watcher's wake just missed.
                    return Delivery::Retryable { error: Box::new(error), retry_after: None };
                }
                if otlp { error.into_otlp_delivery() } else { error.into_delivery() }
            }
        }
    }
}

impl fmt::Debug for HttpsSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsSink")
            .field("config", &self.config)
            .field("trust", &self.trust.as_ref().map(TrustSet::describe))
            .field("client_identity", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorClass;

    fn config() -> HttpsSinkConfig {
        HttpsSinkConfig::new("https://127.0.0.1:8443/ingest")
    }

    fn status(code: u16, retry_after: Option<Duration>) -> HttpsError {
        HttpsError::Status {
            endpoint: "https://127.0.0.1:8443/ingest".into(),
            status: code,
            retry_after,
            body: String::new(),
        }
    }

    #[test]
    fn status_classification_follows_the_table() {
        let table = [
            (400, ErrorClass::Rejected),
            (401, ErrorClass::Fatal),
            (403, ErrorClass::Fatal),
            (404, ErrorClass::Rejected),
            (409, ErrorClass::Rejected),
            (413, ErrorClass::TooLarge),
            (422, ErrorClass::Rejected),
            (429, ErrorClass::Retryable),
            (500, ErrorClass::Retryable),
            (502, ErrorClass::Retryable),
            (503, ErrorClass::Retryable),
            (504, ErrorClass::Retryable),
            (599, ErrorClass::Retryable),
            (301, ErrorClass::Fatal),
            (302, ErrorClass::Fatal),
            (101, ErrorClass::Fatal),
        ];
        for (code, class) in table {
            assert_eq!(status(code, None).class(), class, "status {code}");
        }
    }

    #[test]
    fn otlp_status_classification_follows_the_spec() {
        let table = [
            (400, ErrorClass::Rejected),
            (401, ErrorClass::Fatal),
            (403, ErrorClass::Fatal),
            (404, ErrorClass::Rejected),
            (413, ErrorClass::TooLarge),
            (429, ErrorClass::Retryable),
            (500, ErrorClass::Rejected),
            (501, ErrorClass::Rejected),
            (502, ErrorClass::Retryable),
            (503, ErrorClass::Retryable),
            (504, ErrorClass::Retryable),
            (505, ErrorClass::Rejected),
            (301, ErrorClass::Fatal),
        ];
        for (code, class) in table {
            assert_eq!(status(code, None).otlp_class(), class, "status {code}");
        }
        let wait = Some(Duration::from_secs(2));
        for code in [429, 502, 503, 504] {
            match status(code, wait).into_otlp_delivery() {
                Delivery::Retryable { retry_after, .. } => assert_eq!(retry_after, wait, "{code}"),
                other => panic!("{code}: {other:?}"),
            }
        }
        assert_eq!(status(500, wait).into_otlp_delivery().kind(), "rejected");
        // Transport failures classify as in the generic mode.
        let refused = HttpsError::Io {
            endpoint: "https://127.0.0.1:8443/v1/logs".into(),
            phase: Phase::Connect,
            kind: io::ErrorKind::ConnectionRefused,
            reason: "refused".into(),
        };
        assert_eq!(refused.otlp_class(), ErrorClass::Retryable);
    }

    #[test]
    fn partial_success_reads_the_response_message() {
        let parse = |s: &str| PartialSuccess::parse(s.as_bytes());
        assert_eq!(parse(""), PartialSuccess::default());
        assert_eq!(parse("{}"), PartialSuccess::default());
        assert_eq!(parse("not json"), PartialSuccess::default());
        assert_eq!(
            parse(r#"{"partialSuccess":{"rejectedLogRecords":"3","errorMessage":"bad body"}}"#),
            PartialSuccess { rejected: 3, message: "bad body".into() }
        );
        assert_eq!(parse(r#"{"partialSuccess":{"rejectedLogRecords":2}}"#).rejected, 2);
        assert_eq!(parse(r#"{"partialSuccess":{"rejectedLogRecords":"-4"}}"#).rejected, 0);
        assert_eq!(
            parse(r#"{"partialSuccess":{"errorMessage":"slow down"}}"#),
            PartialSuccess { rejected: 0, message: "slow down".into() }
        );
    }

    #[test]
    fn deliveries_carry_retry_after_and_a_downcastable_error() {
        let wait = Some(Duration::from_secs(3));
        for code in [429, 503] {
            match status(code, wait).into_delivery() {
                Delivery::Retryable { retry_after, error } => {
                    assert_eq!(retry_after, wait);
                    let https = error.downcast_ref::<HttpsError>().unwrap();
                    assert_eq!(https, &status(code, wait));
                }
                other => panic!("{code}: {other:?}"),
            }
        }
        // A Retry-After on another status is not honoured.
        match status(500, wait).into_delivery() {
            Delivery::Retryable { retry_after, .. } => assert_eq!(retry_after, None),
            other => panic!("{other:?}"),
        }
        assert_eq!(status(413, None).into_delivery().kind(), "too_large");
        assert_eq!(status(404, None).into_delivery().kind(), "rejected");
        assert_eq!(status(401, None).into_delivery().kind(), "fatal");
    }

    #[test]
    fn ureq_errors_classify() {
        let c = config();
        let cases: Vec<(ureq::Error, ErrorClass, &str)> = vec![
            (
                ureq::Error::Io(io::Error::from(io::ErrorKind::ConnectionRefused)),
                ErrorClass::Retryable,
                "I/O failure with https://127.0.0.1:8443/ingest during connect",
            ),
            (
                ureq::Error::Io(io::Error::from(io::ErrorKind::ConnectionReset)),
                ErrorClass::Retryable,
                "during request/response exchange",
            ),
            (
                ureq::Error::HostNotFound,
                ErrorClass::Retryable,
                "cannot resolve the host of https://127.0.0.1:8443/ingest",
            ),
            (
                ureq::Error::Timeout(ureq::Timeout::Connect),
                ErrorClass::Retryable,
                "connect timeout with https://127.0.0.1:8443/ingest after 10s",
            ),
            (
                ureq::Error::Timeout(ureq::Timeout::Global),
                ErrorClass::Retryable,
                "request timeout with https://127.0.0.1:8443/ingest after 2s",
            ),
            (
                ureq::Error::Timeout(ureq::Timeout::RecvResponse),
                ErrorClass::Retryable,
                "request/response exchange timeout",
            ),
            (
                ureq::Error::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
                )),
                ErrorClass::Fatal,
                "certificate for 127.0.0.1:8443 not trusted: unknown issuer",
            ),
            (
                ureq::Error::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
                )),
                ErrorClass::Fatal,
                "TLS failure with https://127.0.0.1:8443/ingest during request/response exchange",
            ),
            (
                ureq::Error::Other(Box::new(HttpsError::Io {
                    endpoint: "https://127.0.0.1:8443/ingest".into(),
                    phase: Phase::Handshake,
                    kind: io::ErrorKind::UnexpectedEof,
                    reason: "eof".into(),
                })),
                ErrorClass::Retryable,
                "during TLS handshake",
            ),
            (ureq::Error::ConnectionFailed, ErrorClass::Retryable, "connection failed"),
            (
                ureq::Error::Other("something odd".into()),
                ErrorClass::Retryable,
                "request to https://127.0.0.1:8443/ingest failed: something odd",
            ),
            (ureq::Error::BadUri("x".into()), ErrorClass::Fatal, "invalid endpoint"),
            (ureq::Error::Tls("boom"), ErrorClass::Fatal, "TLS failure"),
        ];
        for (error, class, needle) in cases {
            let described = format!("{error:?}");
            let https = classify(&c, None, error, Some(Duration::from_secs(2)));
            assert_eq!(https.class(), class, "{described} -> {https:?}");
            let text = https.to_string();
            assert!(text.contains(needle), "{described}: {text:?} lacks {needle:?}");
            assert_eq!(https.endpoint(), Some("https://127.0.0.1:8443/ingest"));
        }
    }

    #[test]
    fn sink_debug_redacts_the_authorization() {
        let sink = HttpsSinkConfig::new("http://127.0.0.1:9/ingest")
            .allow_http(true)
            .authorization("Bearer hunter2")
            .build()
            .unwrap();
        let debug = format!("{sink:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert!(debug.contains("http://127.0.0.1:9/ingest"), "{debug}");
    }

    #[test]
    fn authority_defaults_the_port() {
        assert_eq!(authority("https://a.example/x"), "a.example:443");
        assert_eq!(authority("http://a.example/x"), "a.example:80");
        assert_eq!(authority("https://127.0.0.1:8443/x"), "127.0.0.1:8443");
    }

    #[test]
    fn gzip_round_trips() {
        let body = b"{\"seq\":1}\n".repeat(100);
        let packed = gzip(&body).unwrap();
        assert!(packed.len() < body.len());
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&packed[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, body);
    }

    #[test]
    fn watched_files_include_identity_once() {
        let c = config().trust_file("/a").client_identity("/both", "/both");
        assert_eq!(watched_files(&c), vec![PathBuf::from("/a"), PathBuf::from("/both")]);
        let c = config().client_identity("/chain", "/key");
        assert_eq!(watched_files(&c), vec![PathBuf::from("/chain"), PathBuf::from("/key")]);
    }

    #[test]
    fn refused_connection_is_retryable_for_real() {
        // A port nobody listens on: bind, learn the port, close.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let endpoint = format!("http://127.0.0.1:{port}/ingest");
        let mut sink = HttpsSinkConfig::new(&endpoint).allow_http(true).build().unwrap();
        let batch = Batch::new("k1", vigil_events::Encoding::Ndjson, vec![1], b"{\"seq\":1}\n".to_vec());
        let delivery = sink.deliver(&batch, Some(Duration::from_secs(10)));
        let Delivery::Retryable { error, retry_after: None } = delivery else {
            panic!("expected retryable, got {delivery:?}");
        };
        let https = error.downcast_ref::<HttpsError>().unwrap();
        assert!(
            matches!(https, HttpsError::Io { phase: Phase::Connect, kind: io::ErrorKind::ConnectionRefused, .. }),
            "{https:?}"
        );
        assert!(https.to_string().contains(&endpoint));
        assert_eq!(sink.stats().snapshot().deliveries.retryable, 1);
    }
}
