//! The one error type of this crate, and how the batcher treats it. The
//! pieces of context it carries live in `detail.rs`.

mod detail;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub use detail::{CertificateProblem, PemProblem, PemRole, Phase};

use crate::cert::CertificateInfo;

/// Everything that can go wrong while building an [`HttpsSink`](crate::HttpsSink)
/// or delivering a batch with it.
///
/// Every variant names the endpoint or the file it is about, so a message in
/// a log line is enough to act on. Failed deliveries carry this error boxed in
/// the [`Delivery`](vigil_events::Delivery); get it back with
/// `error.downcast_ref::<HttpsError>()`.
///
/// Which [`Delivery`](vigil_events::Delivery) each variant turns into is told
/// by [`HttpsError::class`].
///
/// # Examples
///
/// ```
/// use vigil_https::{HttpsError, HttpsSinkConfig};
///
/// let err = HttpsSinkConfig::new("http://collector.example/ingest")
///     .build()
///     .unwrap_err();
/// assert!(matches!(err, HttpsError::InsecureEndpoint { .. }));
/// assert!(err.to_string().contains("http://collector.example/ingest"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpsError {
    /// The endpoint is not an absolute `https://` (or allowed `http://`) URL.
    InvalidEndpoint {
        /// The endpoint, userinfo and query values redacted.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The endpoint uses plain `http://` and
    /// [`allow_http`](crate::HttpsSinkConfig::allow_http) is off.
    InsecureEndpoint {
        /// The endpoint, userinfo and query values redacted.
        endpoint: String,
    },
    /// Neither a trust file nor the webpki roots were configured, so no
    /// server certificate could ever be trusted.
    NoTrustConfigured {
        /// The endpoint, userinfo and query values redacted.
        endpoint: String,
    },
    /// A PEM file (trust bundle, client chain or client key) could not be used.
    Pem {
        /// The file.
        path: PathBuf,
        /// What the file was supposed to hold.
        role: PemRole,
        /// What is wrong with it.
        problem: PemProblem,
    },
    /// An [announced rotation](crate::HttpsSinkConfig::announced_rotation)
    /// cannot be checked: its date is not `YYYY-MM-DD`, or its fingerprint is
    /// not a SHA-256 in hex. (A new-CA PEM that is not a valid, unexpired CA
    /// is a [`Pem`](HttpsError::Pem) error with the role
    /// [`AnnouncedCa`](PemRole::AnnouncedCa).)
    InvalidAnnouncement {
        /// The endpoint, userinfo and query values redacted.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The client key does not belong to the leaf certificate of the client chain.
    KeyMismatch {
        /// The certificate chain file.
        chain: PathBuf,
        /// The private key file.
        key: PathBuf,
    },
    /// The [`authorization`](crate::HttpsSinkConfig::authorization) value
    /// cannot be sent as a header: it is empty, or holds a control or
    /// non-ASCII character (a trailing newline is trimmed, not refused). The
    /// value itself is never shown.
    InvalidAuthorization {
        /// The endpoint, userinfo and query values redacted.
        endpoint: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// The proxy, from the [`proxy`](crate::HttpsSinkConfig::proxy) setting or
    /// the environment, cannot be used: not a URL, or not an `http://` proxy.
    InvalidProxy {
        /// The endpoint, userinfo and query values redacted.
        endpoint: String,
        /// The proxy URL, credentials redacted.
        proxy: String,
        /// Where the proxy came from: the environment variable, or `the proxy setting`.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the TLS client configuration (for example an unsupported
    /// key type for the client identity).
    TlsSetup {
        /// The endpoint, userinfo and query values redacted.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The server presented a certificate that is not acceptable: untrusted
    /// issuer, expired, not valid for the endpoint's name, and so on.
    Certificate {
        /// The endpoint, userinfo and query values redacted.
        endpoint: String,
        /// `host:port` of the server.
        authority: String,
        /// What is wrong with the certificate.
        problem: CertificateProblem,
        /// The leaf certificate the server presented, when it could be parsed.
        presented: Option<Box<CertificateInfo>>,
    },
    /// The TLS layer failed for a reason other than the server certificate:
    /// a handshake alert (for example the server refused the client
    /// certificate), a protocol mismatch or a corrupt record.
    Tls {
        /// The endpoint, userinfo and query values redacted.
        endpoint: String,
        /// In which phase of the request.
        phase: Phase,
        /// What rustls reported.
        reason: String,
    },
    /// The host name of the endpoint could not be resolved.
    Dns {
        /// The endpoint, userinfo and query values redacted.
        endpoint: String,
        /// What the resolver reported.
        reason: String,
    },
    /// A socket operation failed: connection refused, reset, closed early.
    Io {
        /// The endpoint, userinfo and query values redacted.
        endpoint: String,
        /// In which phase of the request.
        phase: Phase,
        /// The kind of the underlying I/O error.
        kind: io::ErrorKind,
        /// The underlying error's message.
        reason: String,
    },
    /// A timeout expired.
    Timeout {
        /// The endpoint, userinfo and query values redacted.
        endpoint: String,
        /// In which phase of the request.
        phase: Phase,
        /// The limit that applied, when known.
        limit: Option<Duration>,
    },
    /// The server's answer was not valid HTTP/1.1.
    Protocol {
        /// The endpoint, userinfo and query values redacted.
        endpoint: String,
        /// What was wrong with the answer.
        reason: String,
    },
    /// The request could not be formed from the batch (for example an
    /// idempotency key that is not a valid header value).
    InvalidRequest {
        /// The endpoint, userinfo and query values redacted.
        endpoint: String,
        /// What was wrong.
        reason: String,
    },
    /// The server answered with a status other than 2xx.
    Status {
        /// The endpoint, userinfo and query values redacted.
        endpoint: String,
        /// The HTTP status code.
        status: u16,
        /// The server's `Retry-After`, parsed and clamped to
        /// [`RETRY_AFTER_CAP`](crate::RETRY_AFTER_CAP); `None` when absent or malformed.
        retry_after: Option<Duration>,
        /// The first bytes of the response body (at most 256, lossy UTF-8),
        /// to see what the server complained about.
        body: String,
    },
    /// The proxy could not be reached, or did not open the tunnel (it
    /// answered the `CONNECT` with something other than 200, or not at all).
    Proxy {
        /// The endpoint, userinfo and query values redacted.
        endpoint: String,
        /// The proxy URL, credentials redacted.
        proxy: String,
        /// What went wrong.
        reason: String,
    },
    /// Any other transport failure reported by the HTTP client.
    Other {
        /// The endpoint, userinfo and query values redacted.
        endpoint: String,
        /// What happened.
        reason: String,
    },
}

/// How the batcher should treat a failure: the [`Delivery`](vigil_events::Delivery)
/// variant an [`HttpsError`] becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// Try again later ([`Delivery::Retryable`](vigil_events::Delivery::Retryable)).
    Retryable,
    /// Split the batch ([`Delivery::TooLarge`](vigil_events::Delivery::TooLarge)).
    TooLarge,
    /// Drop the batch ([`Delivery::Rejected`](vigil_events::Delivery::Rejected)).
    Rejected,
    /// Restart the sink ([`Delivery::Fatal`](vigil_events::Delivery::Fatal)).
    Fatal,
}

impl HttpsError {
    /// How the batcher should treat this error.
    ///
    /// | error | class |
    /// |---|---|
    /// | [`Certificate`](HttpsError::Certificate) (untrusted issuer, expired, wrong name, …), [`Tls`](HttpsError::Tls) | fatal |
    /// | [`Status`](HttpsError::Status) 401 or 403 | fatal |
    /// | [`Status`](HttpsError::Status) 1xx or 3xx (redirects are not followed) | fatal |
    /// | configuration errors (bad endpoint, authorization, proxy, announced rotation, PEM files, key mismatch, TLS setup) | fatal |
    /// | [`InvalidRequest`](HttpsError::InvalidRequest): the request could not be formed here, the receiver never saw it | fatal |
    /// | [`Dns`](HttpsError::Dns), [`Io`](HttpsError::Io) (refused, reset, closed early), [`Timeout`](HttpsError::Timeout), [`Protocol`](HttpsError::Protocol) (garbage), [`Proxy`](HttpsError::Proxy), [`Other`](HttpsError::Other) | retryable |
    /// | [`Status`](HttpsError::Status) 429 or 503, with or without `Retry-After` | retryable, honouring `Retry-After` |
    /// | [`Status`](HttpsError::Status) other 5xx | retryable |
    /// | [`Status`](HttpsError::Status) 413 | too large |
    /// | [`Status`](HttpsError::Status) other 4xx | rejected |
    ///
    /// Only the receiver rejects: a local problem is never
    /// [`Rejected`](ErrorClass::Rejected).
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_https::{ErrorClass, HttpsError};
    ///
    /// let err = HttpsError::Status {
    ///     endpoint: "https://127.0.0.1:8443/ingest".into(),
    ///     status: 413,
    ///     retry_after: None,
    ///     body: String::new(),
    /// };
    /// assert_eq!(err.class(), ErrorClass::TooLarge);
    /// ```
    pub fn class(&self) -> ErrorClass {
        match self {
            HttpsError::Status { status, .. } => match *status {
                413 => ErrorClass::TooLarge,
                401 | 403 => ErrorClass::Fatal,
                429 | 500..=599 => ErrorClass::Retryable,
                400..=499 => ErrorClass::Rejected,
                _ => ErrorClass::Fatal,
            },
            HttpsError::Dns { .. }
            | HttpsError::Io { .. }
            | HttpsError::Timeout { .. }
            | HttpsError::Protocol { .. }
            | HttpsError::Proxy { .. }
            | HttpsError::Other { .. } => ErrorClass::Retryable,
            HttpsError::InvalidRequest { .. }
            | HttpsError::InvalidAuthorization { .. }
            | HttpsError::InvalidProxy { .. }
            | HttpsError::InvalidAnnouncement { .. }
            | HttpsError::InvalidEndpoint { .. }
            | HttpsError::InsecureEndpoint { .. }
            | HttpsError::NoTrustConfigured { .. }
            | HttpsError::Pem { .. }
            | HttpsError::KeyMismatch { .. }
            | HttpsError::TlsSetup { .. }
            | HttpsError::Certificate { .. }
            | HttpsError::Tls { .. } => ErrorClass::Fatal,
        }
    }

    /// The `Retry-After` the server asked for, if this is a 429 or 503 that carried one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            HttpsError::Status { status: 429 | 503, retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether this is a TLS failure: a rejected server certificate or another
    /// TLS-layer error.
    pub fn is_tls(&self) -> bool {
        matches!(self, HttpsError::Certificate { .. } | HttpsError::Tls { .. })
    }

    /// The endpoint this error is about, if it is about one (PEM and key
    /// errors are about files).
    pub fn endpoint(&self) -> Option<&str> {
        match self {
            HttpsError::InvalidEndpoint { endpoint, .. }
            | HttpsError::InsecureEndpoint { endpoint }
            | HttpsError::NoTrustConfigured { endpoint }
            | HttpsError::TlsSetup { endpoint, .. }
            | HttpsError::Certificate { endpoint, .. }
            | HttpsError::Tls { endpoint, .. }
            | HttpsError::Dns { endpoint, .. }
            | HttpsError::Io { endpoint, .. }
            | HttpsError::Timeout { endpoint, .. }
            | HttpsError::Protocol { endpoint, .. }
            | HttpsError::InvalidRequest { endpoint, .. }
            | HttpsError::InvalidAuthorization { endpoint, .. }
            | HttpsError::InvalidProxy { endpoint, .. }
            | HttpsError::InvalidAnnouncement { endpoint, .. }
            | HttpsError::Proxy { endpoint, .. }
            | HttpsError::Status { endpoint, .. }
            | HttpsError::Other { endpoint, .. } => Some(endpoint),
            HttpsError::Pem { .. } | HttpsError::KeyMismatch { .. } => None,
        }
    }

    /// How the batcher should treat this error when the batch went to an
    /// OTLP/HTTP receiver ([`Encoding::OtlpLogsJson`](vigil_events::Encoding::OtlpLogsJson)):
    /// the OTLP specification's response rules, which differ from
    /// [`class`](HttpsError::class) for statuses only.
    ///
    /// | status | class |
    /// |---|---|
    /// | 429, 502, 503, 504 | retryable, honouring `Retry-After` |
    /// | 413 | too large |
    /// | 401, 403 | fatal (the spec says "not retryable"; Vigil rebuilds the sink, which re-reads its credentials and trust, and keeps the batch) |
    /// | any other 4xx or 5xx, 500 included | rejected |
    /// | 1xx, 3xx | fatal |
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_https::{ErrorClass, HttpsError};
    ///
    /// let status = |status| HttpsError::Status {
    ///     endpoint: "https://127.0.0.1:4318/v1/logs".into(),
    ///     status,
    ///     retry_after: None,
    ///     body: String::new(),
    /// };
    /// assert_eq!(status(500).class(), ErrorClass::Retryable);
    /// assert_eq!(status(500).otlp_class(), ErrorClass::Rejected);
    /// assert_eq!(status(502).otlp_class(), ErrorClass::Retryable);
    /// ```
    pub fn otlp_class(&self) -> ErrorClass {
        match self {
            HttpsError::Status { status, .. } => match *status {
                413 => ErrorClass::TooLarge,
                401 | 403 => ErrorClass::Fatal,
                429 | 502..=504 => ErrorClass::Retryable,
                400..=599 => ErrorClass::Rejected,
                _ => ErrorClass::Fatal,
            },
            other => other.class(),
        }
    }

    /// The `Retry-After` an OTLP/HTTP receiver asked for: on a 429, 502, 503
    /// or 504 that carried one.
    pub fn otlp_retry_after(&self) -> Option<Duration> {
        match self {
            HttpsError::Status { status: 429 | 502..=504, retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Turns this error into the [`Delivery`](vigil_events::Delivery) the
    /// batcher expects for a batch sent to an OTLP/HTTP receiver: as
    /// [`into_delivery`](HttpsError::into_delivery), by
    /// [`otlp_class`](HttpsError::otlp_class).
    pub fn into_otlp_delivery(self) -> vigil_events::Delivery {
        let (class, retry_after) = (self.otlp_class(), self.otlp_retry_after());
        self.delivery(class, retry_after)
    }

    /// Turns this error into the [`Delivery`](vigil_events::Delivery) the
    /// batcher expects, boxing it as the delivery's error.
    pub fn into_delivery(self) -> vigil_events::Delivery {
        let (class, retry_after) = (self.class(), self.retry_after());
        self.delivery(class, retry_after)
    }

    fn delivery(self, class: ErrorClass, retry_after: Option<Duration>) -> vigil_events::Delivery {
        use vigil_events::Delivery;
        let error: vigil_events::BoxError = Box::new(self);
        match class {
            ErrorClass::Retryable => Delivery::Retryable { error, retry_after },
            ErrorClass::TooLarge => Delivery::TooLarge { error },
            ErrorClass::Rejected => Delivery::Rejected { error },
            ErrorClass::Fatal => Delivery::Fatal { error },
        }
    }
}

impl fmt::Display for HttpsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpsError::InvalidEndpoint { endpoint, reason } => {
                write!(f, "invalid endpoint {endpoint:?}: {reason}")
            }
            HttpsError::InsecureEndpoint { endpoint } => {
                write!(f, "refusing plain http endpoint {endpoint}: use https, or allow_http(true) for loopback tests")
            }
            HttpsError::NoTrustConfigured { endpoint } => {
                write!(f, "no trust configured for {endpoint}: add a trust file or enable the webpki roots")
            }
            HttpsError::Pem { path, role, problem } => {
                write!(f, "{role} {} {problem}", path.display())
            }
            HttpsError::InvalidAnnouncement { endpoint, reason } => {
                write!(f, "announced rotation for {endpoint} cannot be checked: {reason}")
            }
            HttpsError::KeyMismatch { chain, key } => {
                write!(f, "client key {} does not match the leaf certificate of {}", key.display(), chain.display())
            }
            HttpsError::TlsSetup { endpoint, reason } => {
                write!(f, "cannot set up TLS for {endpoint}: {reason}")
            }
            HttpsError::Certificate { endpoint, authority, problem, presented } => {
                // The essential cause first; the presented certificate's
                // details only in the alternate form (`{:#}`), which the
                // sink logs at DEBUG.
                write!(f, "certificate for {authority} {problem}")?;
                if let Some(cert) = presented {
                    if matches!(problem, CertificateProblem::UnknownIssuer) {
                        write!(f, " {}", cert.issuer)?;
                    }
                    if f.alternate() {
                        return write!(
                            f,
                            " (endpoint {endpoint}; server presented subject {}, issuer {}, notAfter {}, sha256 {})",
                            cert.subject, cert.issuer, cert.not_after, cert.sha256
                        );
                    }
                }
                write!(f, " (endpoint {endpoint})")
            }
            HttpsError::Tls { endpoint, phase, reason } => {
                write!(f, "TLS failure with {endpoint} during {phase}: {reason}")
            }
            HttpsError::Dns { endpoint, reason } => {
                write!(f, "cannot resolve the host of {endpoint}: {reason}")
            }
            HttpsError::Io { endpoint, phase, reason, .. } => {
                write!(f, "I/O failure with {endpoint} during {phase}: {reason}")
            }
            HttpsError::Timeout { endpoint, phase, limit } => {
                write!(f, "{phase} timeout with {endpoint}")?;
                if let Some(limit) = limit {
                    write!(f, " after {limit:?}")?;
                }
                Ok(())
            }
            HttpsError::Protocol { endpoint, reason } => {
                write!(f, "invalid HTTP response from {endpoint}: {reason}")
            }
            HttpsError::InvalidRequest { endpoint, reason } => {
                write!(f, "cannot form a request to {endpoint}: {reason}")
            }
            HttpsError::Status { endpoint, status, retry_after, body } => {
                write!(f, "{endpoint} answered {status}")?;
                if let Some(retry_after) = retry_after {
                    write!(f, " (retry after {retry_after:?})")?;
                }
                if !body.is_empty() {
                    write!(f, ": {body}")?;
                }
                Ok(())
            }
            HttpsError::Other { endpoint, reason } => {
                write!(f, "request to {endpoint} failed: {reason}")
            }
            HttpsError::InvalidAuthorization { endpoint, reason } => {
                write!(f, "the authorization for {endpoint} cannot be sent: the value {reason}")
            }
            HttpsError::InvalidProxy { endpoint, proxy, origin, reason } => {
                write!(f, "cannot use proxy {proxy} (from {origin}) for {endpoint}: {reason}")
            }
            HttpsError::Proxy { endpoint, proxy, reason } => {
                write!(f, "proxy {proxy} failed for {endpoint}: {reason}")
            }
        }
    }
}

impl std::error::Error for HttpsError {}
