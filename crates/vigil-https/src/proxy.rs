//! [`Proxy`]: whether the sink connects through an HTTP CONNECT proxy, and
//! the curl-compatible reading of the proxy environment variables.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ureq::http::Uri;

use crate::error::HttpsError;
use crate::redact::redact_url;

/// Which HTTP CONNECT proxy, if any, the sink connects through.
///
/// The default, [`Proxy::from_env`], reads the environment the way curl
/// does. [`Proxy::none`] and [`Proxy::url`] ignore the environment.
///
/// Through a proxy the sink sends `CONNECT host:port` and then runs the TLS
/// handshake with the endpoint inside the tunnel, with the same verifier as
/// without a proxy: the proxy sees neither the batches nor the
/// `Authorization` header, and cannot stand in for the endpoint. Only
/// `http://` proxies are supported (the tunnel itself is TLS); a `socks*://`
/// or `https://` proxy makes [`build`](crate::HttpsSinkConfig::build) fail
/// with [`HttpsError::InvalidProxy`].
///
/// The choice is made on every [`build`](crate::HttpsSinkConfig::build), so
/// a restarted sink sees a changed environment.
///
/// # Examples
///
/// ```
/// use vigil_https::{HttpsSinkConfig, Proxy};
///
/// // As curl: HTTPS_PROXY / https_proxy, then ALL_PROXY / all_proxy, unless NO_PROXY matches.
/// let from_env = HttpsSinkConfig::new("https://collector.internal/ingest").proxy(Proxy::from_env());
/// // Always this proxy, whatever the environment says.
/// let fixed = HttpsSinkConfig::new("https://collector.internal/ingest").proxy(Proxy::url("http://proxy.corp:3128"));
/// // Never a proxy, whatever the environment says.
/// let direct = HttpsSinkConfig::new("https://collector.internal/ingest").proxy(Proxy::none());
/// // The environment rules, applied to these variables instead of the process's.
/// let injected = HttpsSinkConfig::new("https://collector.internal/ingest")
///     .proxy(Proxy::from_vars([("HTTPS_PROXY", "http://proxy.corp:3128"), ("NO_PROXY", ".internal")]));
/// # drop((from_env, fixed, direct, injected));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy(Setting);

#[derive(Clone, PartialEq, Eq)]
enum Setting {
    /// The environment rules over the process environment (`None`) or these variables.
    Env(Option<Arc<Vec<(String, String)>>>),
    /// Connect directly.
    Direct,
    /// Always this proxy.
    Url(String),
}

impl Proxy {
    /// Reads the proxy from the process environment at every build, as curl
    /// does for an `https://` URL:
    ///
    /// - the proxy is the first non-empty one of `https_proxy`, `HTTPS_PROXY`,
    ///   `all_proxy`, `ALL_PROXY` (for a loopback `http://` endpoint:
    ///   `http_proxy`, `all_proxy`, `ALL_PROXY`; curl ignores upper-case
    ///   `HTTP_PROXY`). `HTTP_PROXY` never applies to an `https://` endpoint.
    /// - a value without a scheme is an `http://` proxy; without a port, port 1080.
    /// - `no_proxy` (or else `NO_PROXY`) lists hosts reached directly,
    ///   separated by commas or spaces: `*` (everything), a host name (which
    ///   also matches its subdomains; a leading `.` or `*.` is ignored), an IP
    ///   address, or a CIDR block such as `10.0.0.0/8`; each may end in
    ///   `:port` to match that port only.
    ///
    /// This is the default.
    pub fn from_env() -> Proxy {
        Proxy(Setting::Env(None))
    }

    /// Applies the [`from_env`](Proxy::from_env) rules to `vars` instead of
    /// the process environment: an injected environment, for tests and for
    /// applications that keep their settings elsewhere. Variables not listed
    /// are unset.
    pub fn from_vars<I, K, V>(vars: I) -> Proxy
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Proxy(Setting::Env(Some(Arc::new(vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect()))))
    }

    /// Connects directly, whatever the environment says.
    pub fn none() -> Proxy {
        Proxy(Setting::Direct)
    }

    /// Connects through this proxy, whatever the environment says (including
    /// `NO_PROXY`): `http://[user:password@]host[:port]`; without a scheme,
    /// `http://`; without a port, 1080. Credentials are sent as
    /// `Proxy-Authorization: Basic` and never shown.
    pub fn url(url: impl Into<String>) -> Proxy {
        Proxy(Setting::Url(url.into()))
    }
}

impl Default for Proxy {
    fn default() -> Proxy {
        Proxy::from_env()
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Setting::Env(None) => f.write_str("Proxy::from_env()"),
            Setting::Env(Some(vars)) => {
                let names: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
                write!(f, "Proxy::from_vars({names:?})")
            }
            Setting::Direct => f.write_str("Proxy::none()"),
            Setting::Url(url) => write!(f, "Proxy::url({:?})", redact_url(url)),
        }
    }
}

/// The proxy a sink goes through, decided at build.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    /// What ureq connects through.
    pub(crate) proxy: ureq::Proxy,
    /// The proxy URL for messages, credentials redacted.
    pub(crate) shown: String,
    /// Where it came from: a variable name, or `the proxy setting`.
    pub(crate) origin: String,
}

/// The curl default port for a proxy given without one.
const DEFAULT_PROXY_PORT: u16 = 1080;

impl Proxy {
    /// Decides the route to `endpoint` (already checked to be an absolute
    /// http(s) URL); `shown` is the redacted endpoint, for messages.
    pub(crate) fn route(&self, endpoint: &Uri, shown: &str) -> Result<Option<Route>, HttpsError> {
        let process = |name: &str| std::env::var(name).ok();
        match &self.0 {
            Setting::Direct => Ok(None),
            Setting::Url(url) => parse(url, "the proxy setting", shown).map(Some),
            Setting::Env(None) => from_vars(&process, endpoint, shown),
            Setting::Env(Some(vars)) => {
                let lookup = |name: &str| vars.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone());
                from_vars(&lookup, endpoint, shown)
            }
        }
    }
}

/// The curl rules over a variable lookup.
fn from_vars(var: &dyn Fn(&str) -> Option<String>, endpoint: &Uri, shown: &str) -> Result<Option<Route>, HttpsError> {
    let set = |name: &'static str| var(name).filter(|v| !v.trim().is_empty()).map(|v| (name, v));
    let https = endpoint.scheme_str() == Some("https");
    let candidates: &[&'static str] = if https {
        &["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
    } else {
        &["http_proxy", "all_proxy", "ALL_PROXY"]
    };
    let Some((origin, value)) = candidates.iter().find_map(|name| set(name)) else {
        if https && let Some((name, _)) = set("HTTP_PROXY").or_else(|| set("http_proxy")) {
            log::info!(
                target: "vigil::https",
                "sink for {shown}: {name} is set but applies to http:// URLs only (as in curl); connecting directly"
            );
        }
        return Ok(None);
    };
    let host = endpoint.host().unwrap_or_default();
    let port = endpoint.port_u16().unwrap_or(if https { 443 } else { 80 });
    if let Some((name, list)) = set("no_proxy").or_else(|| set("NO_PROXY"))
        && no_proxy_matches(&list, host, port)
    {
        log::info!(
            target: "vigil::https",
            "sink for {shown}: {origin} is set but {name} matches {host}; connecting directly"
        );
        return Ok(None);
    }
    parse(&value, origin, shown).map(Some)
}

/// Parses a proxy URL as curl reads it: `http://` when no scheme is given,
/// port 1080 when none is given.
fn parse(url: &str, origin: &str, endpoint: &str) -> Result<Route, HttpsError> {
    let url = url.trim();
    let shown = redact_url(url);
    let invalid = |reason: String| HttpsError::InvalidProxy {
        endpoint: endpoint.to_string(),
        proxy: shown.clone(),
        origin: origin.to_string(),
        reason,
    };
    let full = if url.contains("://") { url.to_string() } else { format!("http://{url}") };
    let uri: Uri = full.parse().map_err(|e| invalid(format!("not a URL: {e}")))?;
    match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("http") => {}
        Some(other) => {
            return Err(invalid(format!(
                "unsupported proxy scheme {other:?}: only http:// CONNECT proxies are supported"
            )));
        }
        None => return Err(invalid("no scheme".to_string())),
    }
    let authority = uri.authority().filter(|a| !a.host().is_empty()).ok_or_else(|| invalid("no host".to_string()))?;
    let with_port = match authority.port_u16() {
        Some(_) => format!("http://{authority}"),
        None => format!("http://{authority}:{DEFAULT_PROXY_PORT}"),
    };
    let proxy = ureq::Proxy::new(&with_port).map_err(|e| invalid(e.to_string()))?;
    Ok(Route { proxy, shown: redact_url(&with_port), origin: origin.to_string() })
}

/// Whether a `NO_PROXY` list matches `host` (as in a URI, IPv6 in brackets) and `port`.
pub(crate) fn no_proxy_matches(list: &str, host: &str, port: u16) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase();
    let host_ip: Option<IpAddr> = host.parse().ok();
    list.split(|c: char| c == ',' || c.is_whitespace()).filter(|e| !e.is_empty()).any(|entry| {
        if entry == "*" {
            return true;
        }
        let entry = entry.to_ascii_lowercase();
        let (name, entry_port) = split_port(&entry);
        if entry_port.is_some_and(|p| p != port) {
            return false;
        }
        if let Some((net, bits)) = name.split_once('/') {
            return match (host_ip, net.parse::<IpAddr>(), bits.parse::<u8>()) {
                (Some(ip), Ok(net), Ok(bits)) => in_cidr(ip, net, bits),
                _ => false,
            };
        }
        if let (Some(ip), Ok(entry_ip)) = (host_ip, name.parse::<IpAddr>()) {
            return ip == entry_ip;
        }
        let name = name.trim_start_matches("*.").trim_start_matches('.').trim_end_matches('.');
        !name.is_empty() && (host == name || host.strip_suffix(name).is_some_and(|head| head.ends_with('.')))
    })
}

/// Splits `host:port`, `[v6]:port`, `[v6]`, `v6` or `host` into the host and the port.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (rest, None),
        };
    }
    match entry.split_once(':') {
        // One colon: a port. More: a bare IPv6 address.
        Some((host, port)) if !port.contains(':') => (host, port.parse().ok()),
        _ => (entry, None),
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(vars: &[(&str, &str)], endpoint: &str) -> Option<String> {
        let uri: Uri = endpoint.parse().unwrap();
        Proxy::from_vars(vars.iter().copied())
            .route(&uri, endpoint)
            .unwrap()
            .map(|r| format!("{} {}", r.origin, r.shown))
    }

    #[test]
    fn curl_precedence_for_https() {
        let e = "https://collector.example:8443/ingest";
        assert_eq!(route(&[], e), None);
        assert_eq!(route(&[("HTTPS_PROXY", "http://a:1")], e).unwrap(), "HTTPS_PROXY http://a:1");
        assert_eq!(
            route(&[("HTTPS_PROXY", "http://a:1"), ("https_proxy", "http://b:2")], e).unwrap(),
            "https_proxy http://b:2"
        );
        assert_eq!(route(&[("ALL_PROXY", "c:3"), ("all_proxy", "d:4")], e).unwrap(), "all_proxy http://d:4");
        assert_eq!(route(&[("ALL_PROXY", "c:3"), ("HTTPS_PROXY", "a:1")], e).unwrap(), "HTTPS_PROXY http://a:1");
        // HTTP_PROXY is for http:// URLs; an empty value is unset.
        assert_eq!(route(&[("HTTP_PROXY", "h:5"), ("http_proxy", "h:6")], e), None);
        assert_eq!(route(&[("HTTPS_PROXY", ""), ("ALL_PROXY", "c:3")], e).unwrap(), "ALL_PROXY http://c:3");
        // No port: curl's 1080. Credentials: redacted.
        assert_eq!(route(&[("HTTPS_PROXY", "user:pw@proxy")], e).unwrap(), "HTTPS_PROXY http://***@proxy:1080");
    }

    #[test]
    fn curl_precedence_for_loopback_http() {
        let e = "http://127.0.0.1:9/ingest";
        assert_eq!(route(&[("HTTPS_PROXY", "a:1"), ("HTTP_PROXY", "b:2")], e), None);
        assert_eq!(route(&[("http_proxy", "b:2"), ("ALL_PROXY", "c:3")], e).unwrap(), "http_proxy http://b:2");
    }

    #[test]
    fn no_proxy_follows_curl() {
        let e = "https://api.collector.example:8443/ingest";
        let via = [("HTTPS_PROXY", "a:1")];
        for list in ["*", "collector.example", ".collector.example", "*.collector.example", "x, api.collector.example"]
        {
            let vars = [via[0], ("NO_PROXY", list)];
            assert_eq!(route(&vars, e), None, "{list}");
        }
        for list in ["other.example", "ector.example", "collector.example:443", "10.0.0.0/8"] {
            let vars = [via[0], ("no_proxy", list)];
            assert!(route(&vars, e).is_some(), "{list}");
        }
        // no_proxy wins over NO_PROXY.
        assert!(route(&[via[0], ("no_proxy", "other"), ("NO_PROXY", "*")], e).is_some());
    }

    #[test]
    fn no_proxy_matches_addresses_ports_and_blocks() {
        assert!(no_proxy_matches("127.0.0.1", "127.0.0.1", 1));
        assert!(no_proxy_matches("127.0.0.0/8", "127.0.0.1", 1));
        assert!(!no_proxy_matches("10.0.0.0/8", "127.0.0.1", 1));
        assert!(no_proxy_matches("127.0.0.1:8443", "127.0.0.1", 8443));
        assert!(!no_proxy_matches("127.0.0.1:8443", "127.0.0.1", 443));
        assert!(no_proxy_matches("::1", "[::1]", 1));
        assert!(no_proxy_matches("[::1]:5", "[::1]", 5));
        assert!(no_proxy_matches("0:0:0:0:0:0:0:1", "[::1]", 5));
        assert!(no_proxy_matches("::/0", "[::1]", 5));
        assert!(no_proxy_matches("0.0.0.0/0", "1.2.3.4", 5));
        assert!(no_proxy_matches("LOCALHOST", "localhost", 1));
        assert!(!no_proxy_matches("", "localhost", 1));
        assert!(!no_proxy_matches(".", "localhost", 1));
        assert!(!no_proxy_matches("host", "otherhost", 1));
    }

    #[test]
    fn only_http_proxies_are_accepted() {
        let uri: Uri = "https://h/".parse().unwrap();
        for url in ["socks5://p:1", "https://p:1", "http://", "ftp://p"] {
            let err = Proxy::url(url).route(&uri, "https://h/").unwrap_err();
            assert!(matches!(err, HttpsError::InvalidProxy { .. }), "{url}: {err:?}");
        }
        let err = Proxy::url("socks5://u:secret@p:1").route(&uri, "https://h/").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(Proxy::none().route(&uri, "https://h/").unwrap().is_none());
    }

    #[test]
    fn debug_hides_values() {
        let debug = format!("{:?}", Proxy::from_vars([("HTTPS_PROXY", "http://u:secret@p:1")]));
        assert_eq!(debug, "Proxy::from_vars([\"HTTPS_PROXY\"])");
        assert_eq!(format!("{:?}", Proxy::url("http://u:secret@p:1")), "Proxy::url(\"http://***@p:1\")");
        assert_eq!(format!("{:?}", Proxy::default()), "Proxy::from_env()");
    }
}
