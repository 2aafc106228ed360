//! The pieces of context an [`HttpsError`](super::HttpsError) carries: which
//! file role, what is wrong with a PEM file or a server certificate, and in
//! which phase of a request something failed.

use std::fmt;
use std::io;

/// What a PEM file was supposed to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PemRole {
    /// A trust bundle: one or more CA certificates.
    Trust,
    /// The client certificate chain, leaf first.
    ClientChain,
    /// The client private key.
    ClientKey,
    /// The new CA of an [announced rotation](crate::HttpsSinkConfig::announced_rotation).
    AnnouncedCa,
}

impl fmt::Display for PemRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PemRole::Trust => "trust file",
            PemRole::ClientChain => "client certificate chain",
            PemRole::ClientKey => "client key",
            PemRole::AnnouncedCa => "announced CA",
        })
    }
}

/// What is wrong with a PEM file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PemProblem {
    /// The file could not be read.
    Unreadable {
        /// The kind of the I/O error.
        kind: io::ErrorKind,
        /// The I/O error's message.
        reason: String,
    },
    /// The PEM syntax or base64 is broken.
    Malformed {
        /// What the PEM parser reported.
        reason: String,
    },
    /// The file holds no item of the wanted kind.
    Empty,
    /// The file holds an item that does not belong in it, such as a private
    /// key in a trust file.
    WrongItem {
        /// The kind of item found, e.g. `"private key"`.
        found: &'static str,
    },
    /// A certificate in the file is not a valid X.509 certificate.
    InvalidCertificate {
        /// Zero-based position of the certificate in the file.
        index: usize,
        /// What the parser reported.
        reason: String,
    },
    /// The key file holds more than one private key.
    SeveralKeys {
        /// How many.
        count: usize,
    },
    /// A certificate in a trust file is not a CA certificate (it lacks
    /// basicConstraints CA:TRUE): an end-entity certificate as a trust anchor
    /// would let its key vouch for any host name.
    NotACertificateAuthority {
        /// Zero-based position of the certificate in the file.
        index: usize,
        /// The certificate's subject.
        subject: String,
    },
    /// The certificate's notAfter has passed (checked for an announced CA).
    Expired {
        /// Zero-based position of the certificate in the file.
        index: usize,
        /// notAfter, RFC 3339 UTC.
        not_after: String,
    },
    /// The private key is not usable with the ring crypto provider.
    UnsupportedKey {
        /// What rustls reported.
        reason: String,
    },
}

impl fmt::Display for PemProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemProblem::Unreadable { reason, .. } => write!(f, "cannot be read: {reason}"),
            PemProblem::Malformed { reason } => write!(f, "is not valid PEM: {reason}"),
            PemProblem::Empty => f.write_str("contains no usable item"),
            PemProblem::WrongItem { found } => {
                write!(f, "contains a {found}, which does not belong there")
            }
            PemProblem::InvalidCertificate { index, reason } => {
                write!(f, "certificate #{index} is not a valid X.509 certificate: {reason}")
            }
            PemProblem::SeveralKeys { count } => {
                write!(f, "contains {count} private keys; exactly one is needed")
            }
            PemProblem::NotACertificateAuthority { index, subject } => write!(
                f,
                "certificate #{index} ({subject}) is not a CA certificate (no basicConstraints CA:TRUE); \
                 an end-entity certificate cannot be a trust anchor: list the CA that issued it"
            ),
            PemProblem::Expired { index, not_after } => {
                write!(f, "certificate #{index} expired at {not_after}")
            }
            PemProblem::UnsupportedKey { reason } => {
                write!(f, "holds a key that cannot be used: {reason}")
            }
        }
    }
}

/// What is wrong with a server certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateProblem {
    /// The certificate was not issued by any CA in the trust set.
    UnknownIssuer,
    /// The certificate's notAfter has passed.
    Expired {
        /// notAfter, seconds since the Unix epoch, when known.
        not_after: Option<u64>,
        /// The verification time, seconds since the Unix epoch, when known.
        now: Option<u64>,
    },
    /// The certificate's notBefore is still in the future.
    NotYetValid,
    /// The certificate does not name the endpoint's host.
    NotValidForName {
        /// The names the certificate presents, when known.
        presented: Vec<String>,
    },
    /// The certificate was revoked.
    Revoked,
    /// A signature in the chain does not verify.
    BadSignature,
    /// The certificate is not valid for TLS server authentication.
    InvalidPurpose,
    /// Any other certificate problem, as rustls reported it.
    Other(String),
}

impl fmt::Display for CertificateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertificateProblem::UnknownIssuer => f.write_str("not trusted: unknown issuer"),
            CertificateProblem::Expired { not_after, now } => {
                f.write_str("expired")?;
                if let Some(not_after) = not_after {
                    write!(f, ": notAfter {}", crate::cert::rfc3339(*not_after as i64))?;
                }
                if let Some(now) = now {
                    write!(f, " is before now ({})", crate::cert::rfc3339(*now as i64))?;
                }
                Ok(())
            }
            CertificateProblem::NotYetValid => f.write_str("not valid yet"),
            CertificateProblem::NotValidForName { presented } => {
                f.write_str("not valid for this name")?;
                if !presented.is_empty() {
                    write!(f, ": it names {}", presented.join(", "))?;
                }
                Ok(())
            }
            CertificateProblem::Revoked => f.write_str("revoked"),
            CertificateProblem::BadSignature => f.write_str("has a bad signature"),
            CertificateProblem::InvalidPurpose => f.write_str("not valid for TLS server authentication"),
            CertificateProblem::Other(reason) => write!(f, "rejected: {reason}"),
        }
    }
}

/// The phase of a request in which something failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Resolving the host name.
    Resolve,
    /// Opening the connection: TCP, and for a connect *timeout* also the TLS
    /// handshake, which the connect timeout covers.
    Connect,
    /// The TLS handshake.
    Handshake,
    /// Sending the request or receiving the response, on an open connection.
    Exchange,
    /// The request as a whole (the global timeout, capped by the batcher's budget).
    Request,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Resolve => "resolve",
            Phase::Connect => "connect",
            Phase::Handshake => "TLS handshake",
            Phase::Exchange => "request/response exchange",
            Phase::Request => "request",
        })
    }
}
