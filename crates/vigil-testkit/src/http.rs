//! A plain-HTTP GET for tests that probe an endpoint (health probes,
//! `/metrics`, the replay's service) as a real client would.

use std::time::Duration;

/// GETs `url` over plain HTTP with ureq and answers the status and the body.
/// Any status is an answer, not an error; the whole exchange has 10 s.
///
/// # Panics
///
/// When the request fails (no connection, a timeout) or the body is not
/// UTF-8: the test cannot go on.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use std::net::TcpListener;
///
/// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
/// let url = format!("http://{}/livez", listener.local_addr().unwrap());
/// let server = std::thread::spawn(move || {
///     let (mut stream, _) = listener.accept().unwrap();
///     let mut request = [0u8; 1024];
///     let _ = stream.read(&mut request).unwrap();
///     stream.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\nconnection: close\r\n\r\nhung").unwrap();
/// });
/// assert_eq!(vigil_testkit::http_get(&url), (503, "hung".to_owned()));
/// server.join().unwrap();
/// ```
pub fn http_get(url: &str) -> (u16, String) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let mut response = agent.get(url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_else(|e| panic!("GET {url}: body: {e}"));
    (status, body)
}
