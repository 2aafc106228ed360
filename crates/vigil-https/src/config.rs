//! The builder for [`HttpsSink`].

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::HttpsError;
use crate::proxy::Proxy;
use crate::redact::redact_url;
use crate::rotation::{Announced, Announcement, NewCa, RotationDate};
use crate::sink::HttpsSink;
use crate::stats::HttpsStats;
use crate::watch::{Plan, TrustWatch};

/// An `Authorization` header value: never logged, redacted in `Debug`.
#[derive(Clone)]
pub(crate) struct Secret(Arc<str>);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// The value as it will be sent: trailing line breaks trimmed, then
    /// checked to be a non-empty, visible-ASCII header value. The error never
    /// contains the value.
    pub(crate) fn checked(&self, endpoint: &str) -> Result<Secret, HttpsError> {
        let invalid = |reason: String| HttpsError::InvalidAuthorization { endpoint: endpoint.to_string(), reason };
        let value = self.0.trim_end_matches(['\r', '\n']);
        if value.trim().is_empty() {
            return Err(invalid("is empty".to_string()));
        }
        if let Some((at, c)) = value.char_indices().find(|(_, c)| !(c.is_ascii_graphic() || *c == ' ' || *c == '\t')) {
            let what = if c.is_ascii_control() { "a control character" } else { "a non-ASCII character" };
            return Err(invalid(format!("holds {what} (U+{:04X}) at byte {at}", u32::from(c))));
        }
        Ok(Secret(Arc::from(value)))
    }
}

/// The longest timeout handed to ureq: longer ones (up to `Duration::MAX`)
/// saturate here, about 100 years, which is no limit in practice. ureq adds
/// timeouts to instants without checking for overflow.
pub(crate) const TIMEOUT_CEILING: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `timeout`, saturated at [`TIMEOUT_CEILING`].
pub(crate) fn bounded(timeout: Option<Duration>) -> Option<Duration> {
    timeout.map(|t| t.min(TIMEOUT_CEILING))
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Configuration of an [`HttpsSink`], and the factory that builds it.
///
/// The batcher's child factory calls [`build`](HttpsSinkConfig::build) on
/// every (re)start. Building reads the PEM files anew, so a restart picks up
/// an updated trust bundle or client identity without restarting the process.
///
/// # About cloning
///
/// A clone shares the [stats](HttpsSinkConfig::stats) with the original; all
/// other settings are copied. Cloning is cheap (a few paths and strings, no
/// file I/O, no TLS state).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use vigil_https::HttpsSinkConfig;
///
/// let config = HttpsSinkConfig::new("https://collector.internal:8443/ingest")
///     // Old and new CA during a rotation window.
///     .trust_file("/etc/vigil/collector-ca.pem")
///     .trust_file("/etc/vigil/collector-ca-next.pem")
///     .client_identity("/etc/vigil/client-chain.pem", "/etc/vigil/client-key.pem")
///     .timeout_connect(Some(Duration::from_secs(5)))
///     .authorization("Bearer s3cr3t")
///     .gzip(true);
/// let stats = config.stats();
/// let sink = config.build()?;
/// # drop((sink, stats));
/// # Ok::<_, vigil_https::HttpsError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct HttpsSinkConfig {
    /// The URL requests go to, credentials and all. Never shown.
    pub(crate) target: String,
    /// The endpoint as shown everywhere: userinfo and query values redacted.
    pub(crate) endpoint: String,
    pub(crate) trust_files: Vec<PathBuf>,
    pub(crate) webpki_roots: bool,
    pub(crate) client_identity: Option<(PathBuf, PathBuf)>,
    pub(crate) allow_http: bool,
    pub(crate) timeout_connect: Option<Duration>,
    pub(crate) timeout_global: Option<Duration>,
    pub(crate) trust_poll_interval: Duration,
    pub(crate) expiry_warning: Duration,
    pub(crate) authorization: Option<Secret>,
    pub(crate) gzip: bool,
    pub(crate) proxy: Proxy,
    pub(crate) announcements: Vec<Announcement>,
    pub(crate) rotation_alarm: Duration,
    pub(crate) stats: HttpsStats,
    pub(crate) watch: TrustWatch,
}

impl HttpsSinkConfig {
    /// The default connect timeout: 10 seconds.
    pub const DEFAULT_TIMEOUT_CONNECT: Duration = Duration::from_secs(10);
    /// The default per-request timeout: 30 seconds.
    pub const DEFAULT_TIMEOUT_GLOBAL: Duration = Duration::from_secs(30);
    /// The default trust poll interval: 10 seconds.
    pub const DEFAULT_TRUST_POLL_INTERVAL: Duration = Duration::from_secs(10);
    /// The default expiry warning horizon: 30 days.
    pub const DEFAULT_EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);
    /// The default time before an announced rotation when a missing CA
    /// becomes an ERROR: 7 days.
    pub const DEFAULT_ROTATION_ALARM: Duration = Duration::from_secs(7 * 24 * 3600);

    /// A configuration that POSTs batches to `endpoint`, an absolute
    /// `https://` URL.
    ///
    /// Credentials in the URL (`https://user:pass@host/…`, `?api_key=…`) are
    /// sent but never shown: errors, logs, stats and `Debug` show the
    /// endpoint with its userinfo and query values replaced by `***`.
    ///
    /// The endpoint is checked by [`build`](HttpsSinkConfig::build). At least
    /// one [trust file](HttpsSinkConfig::trust_file) or the
    /// [webpki roots](HttpsSinkConfig::webpki_roots) are needed for https.
    pub fn new(endpoint: impl Into<String>) -> HttpsSinkConfig {
        let target = endpoint.into();
        let endpoint = redact_url(&target);
        let stats = HttpsStats::new(&endpoint);
        HttpsSinkConfig {
            target,
            endpoint,
            trust_files: Vec::new(),
            webpki_roots: false,
            client_identity: None,
            allow_http: false,
            timeout_connect: Some(Self::DEFAULT_TIMEOUT_CONNECT),
            timeout_global: Some(Self::DEFAULT_TIMEOUT_GLOBAL),
            trust_poll_interval: Self::DEFAULT_TRUST_POLL_INTERVAL,
            expiry_warning: Self::DEFAULT_EXPIRY_WARNING,
            authorization: None,
            gzip: false,
            proxy: Proxy::from_env(),
            announcements: Vec::new(),
            rotation_alarm: Self::DEFAULT_ROTATION_ALARM,
            stats,
            watch: TrustWatch::default(),
        }
    }

    /// Adds a PEM file of trusted CA certificates. Repeatable: during a CA
    /// rotation list the old and the new CA (or put both in one file).
    ///
    /// The files are read on every [`build`](HttpsSinkConfig::build) and
    /// polled while the sink runs (see
    /// [`trust_poll_interval`](HttpsSinkConfig::trust_poll_interval)).
    ///
    /// Defaults to no trust files.
    pub fn trust_file(mut self, path: impl Into<PathBuf>) -> HttpsSinkConfig {
        self.trust_files.push(path.into());
        self
    }

    /// Whether to trust the Mozilla roots of the `webpki-roots` crate as well
    /// as the trust files.
    ///
    /// Defaults to `false`.
    pub fn webpki_roots(mut self, enabled: bool) -> HttpsSinkConfig {
        self.webpki_roots = enabled;
        self
    }

    /// Presents a client certificate (mutual TLS): `chain` is a PEM file with
    /// the leaf first, `key` a PEM file with its private key (PKCS#8, PKCS#1
    /// or SEC1). The two may be the same file.
    ///
    /// [`build`](HttpsSinkConfig::build) checks that the key belongs to the
    /// leaf. Both files are polled and reloaded like the trust files.
    ///
    /// Defaults to no client certificate.
    pub fn client_identity(mut self, chain: impl Into<PathBuf>, key: impl Into<PathBuf>) -> HttpsSinkConfig {
        self.client_identity = Some((chain.into(), key.into()));
        self
    }

    /// Whether a plain `http://` endpoint is allowed. Only loopback hosts
    /// (`127.0.0.0/8`, `::1`, `localhost`) are ever allowed, and only for tests.
    ///
    /// Defaults to `false`.
    pub fn allow_http(mut self, allow: bool) -> HttpsSinkConfig {
        self.allow_http = allow;
        self
    }

    /// The most time to open a connection: resolving, TCP connect and the TLS
    /// handshake together (through a proxy: connecting to it and the `CONNECT`
    /// too). `None` waits as long as the per-request timeout allows. Values
    /// beyond about 100 years, up to `Duration::MAX`, saturate there.
    ///
    /// Defaults to 10 seconds.
    pub fn timeout_connect(mut self, timeout: Option<Duration>) -> HttpsSinkConfig {
        self.timeout_connect = timeout;
        self
    }

    /// The most time one delivery attempt may take, from connecting to reading
    /// the whole response. When the batcher passes a `budget` to
    /// [`deliver`](vigil_events::Sink::deliver) (on flush and shutdown), the
    /// smaller of the two applies. `None` means no limit other than the budget.
    /// Values beyond about 100 years, up to `Duration::MAX`, saturate there.
    ///
    /// Defaults to 30 seconds.
    pub fn timeout_global(mut self, timeout: Option<Duration>) -> HttpsSinkConfig {
        self.timeout_global = timeout;
        self
    }

    /// How often a running sink checks whether its trust or identity files
    /// changed (by modification time and size). The check happens at the start
    /// of a delivery, on the batcher's thread; no extra thread is started.
    ///
    /// Defaults to 10 seconds.
    pub fn trust_poll_interval(mut self, interval: Duration) -> HttpsSinkConfig {
        self.trust_poll_interval = interval;
        self
    }

    /// How long before the server certificate's notAfter to start warning.
    /// The sink warns once when the certificate comes within this horizon and
    /// once more within 7 days (when the horizon is longer than that).
    /// `Duration::ZERO` turns the warnings off.
    ///
    /// Defaults to 30 days.
    pub fn expiry_warning(mut self, horizon: Duration) -> HttpsSinkConfig {
        self.expiry_warning = horizon;
        self
    }

    /// The value of the `Authorization` header sent with every batch, for
    /// example `"Bearer …"`. It is never logged and is redacted in `Debug`.
    ///
    /// Trailing line breaks are trimmed (`"Bearer t\n"` and `"Bearer t\r\n"`,
    /// as `read_to_string` of a mounted secret returns them, send
    /// `Bearer t`). [`build`](HttpsSinkConfig::build) refuses a value that is
    /// still empty or holds a control or non-ASCII character.
    ///
    /// Defaults to no `Authorization` header.
    pub fn authorization(mut self, value: impl Into<String>) -> HttpsSinkConfig {
        self.authorization = Some(Secret(Arc::from(value.into())));
        self
    }

    /// Whether to gzip request bodies (`Content-Encoding: gzip`).
    ///
    /// Defaults to `false`.
    pub fn gzip(mut self, enabled: bool) -> HttpsSinkConfig {
        self.gzip = enabled;
        self
    }

    /// Which HTTP CONNECT proxy the sink goes through: see [`Proxy`].
    ///
    /// Defaults to [`Proxy::from_env`], which reads `HTTPS_PROXY`,
    /// `ALL_PROXY` and `NO_PROXY` as curl does.
    pub fn proxy(mut self, proxy: Proxy) -> HttpsSinkConfig {
        self.proxy = proxy;
        self
    }

    /// Tells this host about a certificate rotation the server's operator
    /// announced: the server will present a chain from `new_ca` by the date
    /// `by` (`"YYYY-MM-DD"`, UTC, or a [`SystemTime`](std::time::SystemTime):
    /// see [`RotationDate`]). May be called more than once.
    ///
    /// At build, and at every [trust poll](HttpsSinkConfig::trust_poll_interval),
    /// the sink checks whether the trust set holds the new CA (by its public
    /// key: the SHA-256 of its subjectPublicKeyInfo):
    ///
    /// - **missing**: a WARN once a day, naming the endpoint, the CA's subject
    ///   and fingerprint, the date and the days left; an ERROR from
    ///   [`rotation_alarm`](HttpsSinkConfig::rotation_alarm) before the date;
    ///   the [readiness report](HttpsStats::readiness) says *not ready*;
    /// - **present**: one INFO line, and the report says *ready*.
    ///
    /// `new_ca` is a PEM file path ([`NewCa::Pem`]) or a fingerprint
    /// ([`NewCa::SpkiSha256`]). Checked at [`build`](HttpsSinkConfig::build):
    /// a PEM that is not a CA certificate or has expired is an
    /// [`HttpsError::Pem`] with the role [`AnnouncedCa`](crate::PemRole::AnnouncedCa);
    /// a bad date or fingerprint is an [`HttpsError::InvalidAnnouncement`].
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_https::{HttpsError, HttpsSinkConfig, NewCa};
    ///
    /// let collector = vigil_collector::Collector::builder().start()?;
    /// let config = HttpsSinkConfig::new(collector.endpoint())
    ///     .trust_file(collector.ca_pem_path())
    ///     .announced_rotation(NewCa::SpkiSha256("ab".repeat(32)), "2017-10-05");
    /// config.build()?;
    /// let rotation = &config.stats().readiness().rotations[0];
    /// assert!(!rotation.ready, "the trust set lacks that key");
    ///
    /// let bad = config.clone().announced_rotation(NewCa::SpkiSha256("ab".repeat(32)), "Oct 5");
    /// assert!(matches!(bad.build(), Err(HttpsError::InvalidAnnouncement { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn announced_rotation(mut self, new_ca: impl Into<NewCa>, by: impl Into<RotationDate>) -> HttpsSinkConfig {
        self.announcements.push(Announcement { new_ca: new_ca.into(), by: by.into() });
        self
    }

    /// How long before an [announced rotation](HttpsSinkConfig::announced_rotation)
    /// a missing CA is logged as an ERROR rather than a WARN (rounded up to whole days).
    ///
    /// Defaults to [`DEFAULT_ROTATION_ALARM`](HttpsSinkConfig::DEFAULT_ROTATION_ALARM), 7 days.
    pub fn rotation_alarm(mut self, before: Duration) -> HttpsSinkConfig {
        self.rotation_alarm = before;
        self
    }

    /// Wakes `pipeline` whenever a trust or identity file changes, so that
    /// a batcher waiting out its restart backoff after a trust failure
    /// retries within one [poll interval](HttpsSinkConfig::trust_poll_interval)
    /// of the fix instead of at the end of the backoff (up to a minute). See
    /// [`EventsHandle::wake`](vigil_events::EventsHandle::wake).
    ///
    /// Takes `&self`: call it on any clone, after the config went into the
    /// sink factory and the pipeline was built. The watcher thread polls the
    /// files from the first [`build`](HttpsSinkConfig::build) on, and stops
    /// once every clone of the config is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_events::{Config, EventPipeline};
    /// use vigil_https::HttpsSinkConfig;
    ///
    /// let collector = vigil_collector::Collector::builder().start()?;
    /// let config = HttpsSinkConfig::new(collector.endpoint()).trust_file(collector.ca_pem_path());
    /// let factory = config.clone();
    /// let (emitter, events, handle) =
    ///     EventPipeline::builder(Config::default()).sink(move || factory.build()).build()?;
    /// config.wake_pipeline(&handle);
    /// let system = vigil_core::Supervisor::builder().child(events).start()?;
    /// emitter.emit(serde_json::json!({"seq": 1}))?;
    /// handle.flush(std::time::Duration::from_secs(10))?;
    /// system.shutdown()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wake_pipeline(&self, pipeline: &vigil_events::EventsHandle) {
        self.watch.wake(pipeline);
    }

    /// The endpoint batches are sent to, as it is shown in errors, logs and
    /// stats: userinfo and query values replaced by `***`.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = vigil_https::HttpsSinkConfig::new("https://u:pw@collector.internal/ingest?api_key=k");
    /// assert_eq!(config.endpoint(), "https://***@collector.internal/ingest?api_key=***");
    /// ```
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The statistics handle shared by this configuration, its clones and
    /// every sink built from them.
    pub fn stats(&self) -> HttpsStats {
        self.stats.clone()
    }

    /// Builds a sink: checks the endpoint, reads and validates the trust files
    /// and the client identity, and prepares the HTTP agent. No connection is
    /// opened until the first delivery.
    ///
    /// Logs (target `vigil::https`) how many certificates were loaded from
    /// which files.
    ///
    /// # Errors
    ///
    /// - [`HttpsError::InvalidEndpoint`] if the endpoint is not an absolute
    ///   http(s) URL with a host;
    /// - [`HttpsError::InsecureEndpoint`] for `http://` without
    ///   [`allow_http`](HttpsSinkConfig::allow_http) or with a non-loopback host;
    /// - [`HttpsError::NoTrustConfigured`] for https without trust files or webpki roots;
    /// - [`HttpsError::InvalidAuthorization`] if the
    ///   [`authorization`](HttpsSinkConfig::authorization) value cannot be sent as a header;
    /// - [`HttpsError::InvalidProxy`] if the [proxy](HttpsSinkConfig::proxy),
    ///   configured or from the environment, is not a usable `http://` URL;
    /// - [`HttpsError::Pem`] if a trust or identity file cannot be read, is not
    ///   PEM, holds no usable item or the wrong kind of item, or a trust file
    ///   holds a certificate that is not a CA
    ///   ([`PemProblem::NotACertificateAuthority`](crate::PemProblem::NotACertificateAuthority));
    /// - [`HttpsError::KeyMismatch`] if the client key does not belong to the
    ///   client certificate;
    /// - [`HttpsError::TlsSetup`] if rustls refuses the configuration;
    /// - [`HttpsError::InvalidAnnouncement`], or [`HttpsError::Pem`] with the
    ///   role [`AnnouncedCa`](crate::PemRole::AnnouncedCa), if an
    ///   [announced rotation](HttpsSinkConfig::announced_rotation) cannot be checked.
    ///
    /// The first build also starts the config's trust watcher (see
    /// [`wake_pipeline`](HttpsSinkConfig::wake_pipeline)).
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_https::{HttpsError, HttpsSinkConfig};
    ///
    /// let err = HttpsSinkConfig::new("https://127.0.0.1:8443/ingest")
    ///     .trust_file("/nonexistent/ca.pem")
    ///     .build()
    ///     .unwrap_err();
    /// assert!(matches!(err, HttpsError::Pem { .. }));
    /// assert!(err.to_string().starts_with("trust file /nonexistent/ca.pem cannot be read"));
    /// ```
    pub fn build(&self) -> Result<HttpsSink, HttpsError> {
        let result = self.check_endpoint().and_then(|https| {
            let announced = self.check_announcements()?;
            // Before the sink loads its files, so a change meanwhile is seen.
            self.watch.start(self.plan(announced));
            HttpsSink::new(self.clone(), https)
        });
        if let Err(e) = &result {
            self.stats.build_failed(e);
        }
        result
    }

    fn check_announcements(&self) -> Result<Vec<Announced>, HttpsError> {
        self.announcements.iter().map(|a| crate::rotation::check(&self.endpoint, a)).collect()
    }

    fn plan(&self, announced: Vec<Announced>) -> Plan {
        Plan {
            endpoint: self.endpoint.clone(),
            files: crate::sink::watched_files(self),
            trust_files: self.trust_files.clone(),
            webpki: self.webpki_roots,
            interval: self.trust_poll_interval,
            announced,
            alarm: self.rotation_alarm,
            stats: self.stats.clone(),
        }
    }

    /// Checks the endpoint; returns whether it is https.
    fn check_endpoint(&self) -> Result<bool, HttpsError> {
        let invalid =
            |reason: &str| HttpsError::InvalidEndpoint { endpoint: self.endpoint.clone(), reason: reason.to_string() };
        let uri: ureq::http::Uri =
            self.target.parse().map_err(|e: ureq::http::uri::InvalidUri| invalid(&format!("not a URL: {e}")))?;
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(|| invalid("no host"))?;
        match uri.scheme_str() {
            Some("https") => Ok(true),
            Some("http") => {
                if self.allow_http && is_loopback(host) {
                    Ok(false)
                } else {
                    Err(HttpsError::InsecureEndpoint { endpoint: self.endpoint.clone() })
                }
            }
            Some(other) => Err(invalid(&format!("unsupported scheme {other:?}; use https"))),
            None => Err(invalid("no scheme; use https://")),
        }
    }
}

/// Whether `host` (as in a URI, IPv6 in brackets) is a loopback address or `localhost`.
fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl fmt::Debug for HttpsSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsSinkConfig")
            .field("endpoint", &self.endpoint)
            .field("trust_files", &self.trust_files)
            .field("webpki_roots", &self.webpki_roots)
            .field("client_identity", &self.client_identity)
            .field("allow_http", &self.allow_http)
            .field("timeout_connect", &self.timeout_connect)
            .field("timeout_global", &self.timeout_global)
            .field("trust_poll_interval", &self.trust_poll_interval)
            .field("expiry_warning", &self.expiry_warning)
            .field("authorization", &self.authorization)
            .field("gzip", &self.gzip)
            .field("proxy", &self.proxy)
            .field("announcements", &self.announcements)
            .field("rotation_alarm", &self.rotation_alarm)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_authorization() {
        let config = HttpsSinkConfig::new("https://127.0.0.1:1/ingest").authorization("Bearer very-secret-token");
        let debug = format!("{config:?}");
        assert!(!debug.contains("very-secret-token"), "{debug}");
        assert!(debug.contains("authorization: Some(<redacted>)"), "{debug}");
        let pretty = format!("{config:#?}");
        assert!(!pretty.contains("very-secret-token"), "{pretty}");
        // Without a header, Debug says so.
        let none = format!("{:?}", HttpsSinkConfig::new("https://127.0.0.1:1/"));
        assert!(none.contains("authorization: None"), "{none}");
    }

    #[test]
    fn authorization_is_trimmed_or_refused_without_quoting_it() {
        let secret = |v: &str| Secret(Arc::from(v)).checked("https://x/");
        assert_eq!(secret("Bearer t\n").unwrap().expose(), "Bearer t");
        assert_eq!(secret("Bearer t\r\n\n").unwrap().expose(), "Bearer t");
        assert_eq!(secret("Basic dTpw\t").unwrap().expose(), "Basic dTpw\t");
        for (value, reason) in [
            ("", "is empty"),
            (" \r\n", "is empty"),
            ("Bearer a\nb", "holds a control character (U+000A) at byte 8"),
            ("Bearer \u{7f}", "holds a control character (U+007F) at byte 7"),
            ("Bearer é", "holds a non-ASCII character (U+00E9) at byte 7"),
        ] {
            let err = secret(value).unwrap_err();
            assert_eq!(err, HttpsError::InvalidAuthorization { endpoint: "https://x/".into(), reason: reason.into() });
            assert!(!err.to_string().contains("Bearer"), "{err}");
        }
    }

    #[test]
    fn timeouts_saturate() {
        assert_eq!(bounded(Some(Duration::MAX)), Some(TIMEOUT_CEILING));
        assert_eq!(bounded(Some(Duration::from_secs(5))), Some(Duration::from_secs(5)));
        assert_eq!(bounded(None), None);
        assert!(std::time::Instant::now().checked_add(TIMEOUT_CEILING * 2).is_some());
    }

    #[test]
    fn plain_http_is_refused_by_default() {
        let err = HttpsSinkConfig::new("http://127.0.0.1:8080/ingest").build().unwrap_err();
        assert_eq!(err, HttpsError::InsecureEndpoint { endpoint: "http://127.0.0.1:8080/ingest".into() });
        assert!(err.to_string().contains("refusing plain http endpoint http://127.0.0.1:8080/ingest"));
    }

    #[test]
    fn plain_http_is_refused_for_remote_hosts_even_when_allowed() {
        for endpoint in ["http://collector.example/ingest", "http://10.0.0.1/", "http://[2001:db8::1]/"] {
            let err = HttpsSinkConfig::new(endpoint).allow_http(true).build().unwrap_err();
            assert_eq!(err, HttpsError::InsecureEndpoint { endpoint: endpoint.into() });
        }
    }

    #[test]
    fn plain_http_on_loopback_builds_when_allowed() {
        for endpoint in ["http://127.0.0.1:9/ingest", "http://localhost:9/", "http://[::1]:9/"] {
            HttpsSinkConfig::new(endpoint).allow_http(true).build().unwrap();
        }
    }

    #[test]
    fn bad_endpoints_are_named() {
        for (endpoint, needle) in [
            ("not a url", "not a URL"),
            ("/ingest", "no host"),
            ("ftp://127.0.0.1/", "unsupported scheme \"ftp\""),
            ("127.0.0.1:8443", "no scheme"),
        ] {
            let err = HttpsSinkConfig::new(endpoint).webpki_roots(true).build().unwrap_err();
            assert!(matches!(err, HttpsError::InvalidEndpoint { .. }), "{endpoint}: {err:?}");
            let text = err.to_string();
            assert!(text.contains(needle), "{endpoint}: {text}");
            assert!(text.contains(endpoint), "{endpoint}: {text}");
        }
    }

    #[test]
    fn https_needs_some_trust() {
        let err = HttpsSinkConfig::new("https://127.0.0.1:8443/").build().unwrap_err();
        assert_eq!(err, HttpsError::NoTrustConfigured { endpoint: "https://127.0.0.1:8443/".into() });
        HttpsSinkConfig::new("https://127.0.0.1:8443/").webpki_roots(true).build().unwrap();
    }

    #[test]
    fn clones_share_stats_and_build_failures_are_recorded() {
        let config = HttpsSinkConfig::new("https://127.0.0.1:8443/");
        let clone = config.clone().gzip(true);
        assert!(clone.build().is_err());
        let snap = config.stats().snapshot();
        assert!(snap.last_error.unwrap().contains("no trust configured"));
        assert_eq!(snap.sinks_built, 0);
        let ok = config.clone().webpki_roots(true);
        ok.build().unwrap();
        ok.build().unwrap();
        assert_eq!(config.stats().snapshot().sinks_built, 2);
    }

    #[test]
    fn defaults_are_as_documented() {
        let config = HttpsSinkConfig::new("https://x/");
        assert_eq!(config.timeout_connect, Some(Duration::from_secs(10)));
        assert_eq!(config.timeout_global, Some(Duration::from_secs(30)));
        assert_eq!(config.trust_poll_interval, Duration::from_secs(10));
        assert_eq!(config.expiry_warning, Duration::from_secs(30 * 86_400));
        assert!(!config.webpki_roots && !config.allow_http && !config.gzip);
        assert!(config.trust_files.is_empty() && config.client_identity.is_none());
        assert!(config.authorization.is_none());
        assert_eq!(config.endpoint(), "https://x/");
    }
}
