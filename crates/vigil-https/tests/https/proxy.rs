//! Issue 10, item 18: the sink goes through an HTTP CONNECT proxy when the
//! environment or its configuration says so, with TLS verified end to end.
//!
//! The proxy is a real one on loopback ([`ConnectProxy`]). Tests of the
//! process environment run the sink in a child process (this test binary,
//! running one ignored test) with its own environment, so no test mutates
//! the environment of this process.

use std::process::Command;

use vigil_collector::{Collector, ConnectProxy};
use vigil_events::Sink;
use vigil_https::{CertificateProblem, ErrorClass, HttpsError, HttpsSinkConfig, Proxy};

use crate::support::*;

/// Every variable the sink (or curl) reads for proxies.
const PROXY_VARS: [&str; 10] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "REQUEST_METHOD",
    "CURL_HOME",
];

const CHILD_TEST: &str = "proxy::child_delivers_with_its_process_environment";
const RESULT_TAG: &str = "VIGIL-CHILD-RESULT";

/// Run in a child process by [`assert_child_delivers`]: builds a sink from the
/// `VIGIL_CHILD_*` variables and the process environment, delivers one
/// batch and prints the outcome.
#[test]
#[ignore = "run by the proxy tests in a child process with its own environment"]
fn child_delivers_with_its_process_environment() {
    let (Ok(endpoint), Ok(trust)) = (std::env::var("VIGIL_CHILD_ENDPOINT"), std::env::var("VIGIL_CHILD_TRUST")) else {
        return;
    };
    let mut config = HttpsSinkConfig::new(endpoint).trust_file(trust).timeout_global(Some(DEADLINE));
    match std::env::var("VIGIL_CHILD_PROXY").as_deref() {
        Ok("none") => config = config.proxy(Proxy::none()),
        Ok(url) if !url.is_empty() => config = config.proxy(Proxy::url(url)),
        _ => {}
    }
    let outcome = match config.build() {
        Ok(mut sink) => {
            let delivery = sink.deliver(&batch("child-0", 0..1), None);
            format!("{} {}", delivery.kind(), delivery.error().map(ToString::to_string).unwrap_or_default())
        }
        Err(e) => format!("build-failed {e}"),
    };
    println!("{RESULT_TAG} {outcome}");
}

/// Runs [`child_delivers_with_its_process_environment`] in a child process
/// whose proxy variables are exactly `env` (and whose proxy setting is
/// `proxy`: `none`, a URL, or the default), and asserts that it delivered.
fn assert_child_delivers(collector: &Collector, proxy: Option<&str>, env: &[(&str, &str)]) {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command.args(["--ignored", "--exact", CHILD_TEST, "--nocapture", "--test-threads=1"]);
    for var in PROXY_VARS {
        command.env_remove(var);
    }
    command.env("VIGIL_CHILD_ENDPOINT", collector.endpoint()).env("VIGIL_CHILD_TRUST", collector.ca_pem_path());
    command.env("VIGIL_CHILD_PROXY", proxy.unwrap_or_default());
    command.envs(env.iter().copied());
    // The child's own timeouts (DEADLINE) bound how long this takes.
    let output = command.output().expect("the child test runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let outcome = stdout
        .lines()
        .find_map(|l| l.split_once(RESULT_TAG).map(|(_, rest)| rest.trim()))
        .unwrap_or_else(|| panic!("no result from the child: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(outcome, "delivered", "proxy setting {proxy:?}, environment {env:?}");
}

/// A loopback URL nobody listens on.
fn dead_url() -> String {
    let addr = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    format!("http://{addr}")
}

fn proxy() -> ConnectProxy {
    capture_logs();
    ConnectProxy::start().expect("proxy starts")
}

/// `host:port` of the collector, as a CONNECT request names it.
fn target(collector: &Collector) -> String {
    collector.addr().to_string()
}

#[test]
fn the_process_proxy_variables_are_honoured() {
    let collector = collector();
    let proxy = proxy();
    let url = proxy.url();
    for (n, var) in ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"].into_iter().enumerate() {
        assert_child_delivers(&collector, None, &[(var, &url)]);
        assert_eq!(proxy.connects().len(), n + 1, "{var}: the request went through the proxy");
    }
    assert!(proxy.connects().iter().all(|c| *c == target(&collector)), "{:?}", proxy.connects());
    assert_eq!(collector.seqs().len(), 1, "the same batch each time");
}

#[test]
fn no_proxy_in_the_process_environment_bypasses_the_proxy() {
    let collector = collector();
    let proxy = proxy();
    let url = proxy.url();
    for no_proxy in ["127.0.0.1", "localhost, 127.0.0.1", "*", ".example.com,127.0.0.0/8"] {
        for var in ["NO_PROXY", "no_proxy"] {
            assert_child_delivers(&collector, None, &[("HTTPS_PROXY", &url), (var, no_proxy)]);
        }
    }
    assert!(proxy.connects().is_empty(), "{:?}", proxy.connects());
    // A NO_PROXY that does not match leaves the proxy in use.
    assert_child_delivers(&collector, None, &[("HTTPS_PROXY", &url), ("NO_PROXY", "10.0.0.1,.example.com")]);
    assert_eq!(proxy.connects(), vec![target(&collector)]);
}

#[test]
fn http_proxy_alone_does_not_apply_to_an_https_endpoint() {
    // As in curl: HTTP_PROXY and http_proxy are for http:// URLs.
    let collector = collector();
    let dead = dead_url();
    for var in ["HTTP_PROXY", "http_proxy"] {
        assert_child_delivers(&collector, None, &[(var, &dead)]);
    }
}

#[test]
fn an_explicit_proxy_setting_ignores_the_environment() {
    let collector = collector();
    let proxy = proxy();
    let dead = dead_url();
    // Explicitly no proxy, whatever HTTPS_PROXY says.
    assert_child_delivers(&collector, Some("none"), &[("HTTPS_PROXY", &dead)]);
    // Explicitly this proxy, whatever HTTPS_PROXY and NO_PROXY say.
    assert_child_delivers(&collector, Some(&proxy.url()), &[("HTTPS_PROXY", &dead), ("NO_PROXY", "*")]);
    assert_eq!(proxy.connects(), vec![target(&collector)]);
}

#[test]
fn an_injected_environment_routes_through_the_proxy() {
    let collector = collector();
    let proxy = proxy();
    let config = config_for(&collector, &collector.ca_pem_path())
        .proxy(Proxy::from_vars([("https_proxy", proxy.url().as_str()), ("NO_PROXY", ".example.com")]));
    let stats = config.stats();
    let mut sink = config.build().expect("sink builds");
    deliver_ok(&mut sink, &batch("px-0", 0..3));
    deliver_ok(&mut sink, &batch("px-1", 3..6));
    assert_eq!(proxy.connects(), vec![target(&collector)], "one tunnel, kept alive");
    assert_eq!(collector.seqs().len(), 6);
    let snap = stats.snapshot();
    assert_eq!(snap.proxy.as_deref(), Some(proxy.url().as_str()), "{snap:?}");
    assert_eq!(snap.handshakes, 1, "TLS with the collector, through the tunnel");
    assert!(snap.server_certificate.is_some());
    let logs = https_logs(&collector.endpoint());
    assert!(
        logs.iter().any(|r| r.message.contains(&format!("through proxy {} (from https_proxy)", proxy.url()))),
        "{logs:#?}"
    );

    // NO_PROXY in the injected environment bypasses it.
    let mut direct = config_for(&collector, &collector.ca_pem_path())
        .proxy(Proxy::from_vars([("HTTPS_PROXY", proxy.url().as_str()), ("no_proxy", "127.0.0.1")]))
        .build()
        .expect("sink builds");
    deliver_ok(&mut direct, &batch("px-2", 6..7));
    assert_eq!(proxy.connects().len(), 1, "not through the proxy");
}

#[test]
fn a_wrong_ca_through_the_proxy_is_still_a_trust_error() {
    let collector = collector();
    let proxy = proxy();
    let dir = TempDir::new("proxy-wrong-ca");
    let other = dir.write("other-ca.pem", TestCa::new("Some Other CA").cert.pem());
    let mut sink = config_for(&collector, &other).proxy(Proxy::url(proxy.url())).build().expect("sink builds");
    let delivery = sink.deliver(&batch("px-bad-ca", 0..1), None);
    assert_eq!(delivery.kind(), "fatal", "{delivery:?}");
    let err = https_error(&delivery);
    assert!(
        matches!(err, HttpsError::Certificate { problem: CertificateProblem::UnknownIssuer, .. }),
        "a TLS trust failure with the collector, not the proxy: {err:?}"
    );
    assert_eq!(proxy.connects(), vec![target(&collector)], "the CONNECT went through");
    assert!(collector.seqs().is_empty());
}

#[test]
fn proxy_failures_name_the_proxy_and_are_retryable() {
    let collector = collector();
    // A proxy nobody listens on.
    let dead = dead_url();
    let mut sink = config_for(&collector, &collector.ca_pem_path()).proxy(Proxy::url(&dead)).build().expect("builds");
    let delivery = sink.deliver(&batch("px-dead", 0..1), None);
    assert_eq!(delivery.kind(), "retryable", "{delivery:?}");
    let text = https_error(&delivery).to_string();
    assert!(text.contains(&dead), "{text}");

    // A proxy that cannot reach the target answers 502.
    let proxy = proxy();
    let gone = dead_url().replace("http://", "https://") + "/ingest";
    let mut sink = HttpsSinkConfig::new(&gone)
        .trust_file(collector.ca_pem_path())
        .timeout_global(Some(DEADLINE))
        .proxy(Proxy::url(proxy.url()))
        .build()
        .expect("builds");
    let delivery = sink.deliver(&batch("px-502", 0..1), None);
    assert_eq!(delivery.kind(), "retryable", "{delivery:?}");
    let err = https_error(&delivery);
    assert!(matches!(err, HttpsError::Proxy { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("502") && text.contains(&proxy.url()), "{text}");
}

#[test]
fn unusable_proxy_settings_fail_at_build() {
    let collector = collector();
    for (proxy, needle) in [
        (Proxy::url("socks5://127.0.0.1:1080"), "socks5"),
        (Proxy::url("https://127.0.0.1:3128"), "https"),
        (Proxy::url("http://"), "127"),
        (Proxy::from_vars([("HTTPS_PROXY", "socks5h://user:proxy-pw@127.0.0.1:1080")]), "HTTPS_PROXY"),
    ] {
        let err = config_for(&collector, &collector.ca_pem_path()).proxy(proxy).build().expect_err(needle);
        assert!(matches!(err, HttpsError::InvalidProxy { .. }), "{err:?}");
        assert_eq!(err.class(), ErrorClass::Fatal);
        let text = err.to_string();
        assert!(!text.contains("proxy-pw"), "proxy credentials are never shown: {text}");
    }
}
