//! Name resolution for the sink's one endpoint.
//!
//! ureq resolves the host on every request, even when a pooled connection
//! carries it, and with a timeout set its default resolver spawns a thread for
//! every lookup. A sink talks to one endpoint, always with a timeout, so that
//! was a thread per batch. This resolver answers an IP literal without any
//! lookup, and remembers a name's addresses for [`TTL`], looking it up again
//! through ureq's resolver (timeout and all) after that.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a looked-up name's addresses are reused.
pub(crate) const TTL: Duration = Duration::from_secs(30);

/// Resolves IP literals directly and caches looked-up names for [`TTL`].
#[derive(Debug, Default)]
pub(crate) struct CachingResolver {
    lookup: DefaultResolver,
    cached: Mutex<Option<Cached>>,
}

#[derive(Debug)]
struct Cached {
    authority: String,
    at: Instant,
    addrs: ResolvedSocketAddrs,
}

impl Resolver for CachingResolver {
    fn resolve(&self, uri: &Uri, config: &Config, timeout: NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error> {
        if let Some(addr) = literal(uri) {
            let mut addrs = self.empty();
            addrs.push(addr);
            return Ok(addrs);
        }
        let authority = uri.authority().map(|a| a.as_str().to_owned()).unwrap_or_default();
        if let Some(cached) = self.cached.lock().as_ref()
            && cached.authority == authority
            && cached.at.elapsed() < TTL
        {
            return Ok(cached.addrs.clone());
        }
        let addrs = self.lookup.resolve(uri, config, timeout)?;
        *self.cached.lock() = Some(Cached { authority, at: Instant::now(), addrs: addrs.clone() });
        Ok(addrs)
    }
}

/// The socket address of a URI whose host is an IP literal.
fn literal(uri: &Uri) -> Option<SocketAddr> {
    let host = uri.host()?;
    let ip: IpAddr = host.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
    let port = uri.port_u16().or_else(|| match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    })?;
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_need_no_lookup() {
        let cases = [
            ("https://127.0.0.1:8443/ingest", "127.0.0.1:8443"),
            ("https://127.0.0.1/ingest", "127.0.0.1:443"),
            ("http://[::1]:8080/x", "[::1]:8080"),
        ];
        for (uri, addr) in cases {
            let uri: Uri = uri.parse().unwrap();
            assert_eq!(literal(&uri), Some(addr.parse().unwrap()), "{uri}");
        }
        assert_eq!(literal(&"https://localhost:8443/".parse().unwrap()), None);
    }

    #[test]
    fn names_are_looked_up_once_and_reused() {
        let resolver = CachingResolver::default();
        let uri: Uri = "https://localhost:8443/ingest".parse().unwrap();
        let config = Config::default();
        let first = resolver.resolve(&uri, &config, NextTimeout::default()).unwrap();
        assert!(first.iter().all(|a| a.ip().is_loopback() && a.port() == 8443), "{first:?}");
        let cached_at = resolver.cached.lock().as_ref().map(|c| c.at).unwrap();
        let second = resolver.resolve(&uri, &config, NextTimeout::default()).unwrap();
        assert_eq!(first, second);
        assert_eq!(resolver.cached.lock().as_ref().map(|c| c.at), Some(cached_at), "served from the cache");
    }
}
