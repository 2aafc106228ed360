//! A minimal HTTP/1.1 server side: request heads, bodies (Content-Length or
//! chunked) and responses. Enough for keep-alive POSTs from ureq and curl.

use std::fmt;
use std::io::{self, BufRead, Read, Write};

/// The longest request head (request line plus headers) accepted.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// The most headers accepted.
const MAX_HEADERS: usize = 100;

/// The HTTP version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    Http10,
    Http11,
}

/// A parsed request line and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestHead {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) version: Version,
    pub(crate) headers: Vec<(String, String)>,
}

/// How the body of a request is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

impl RequestHead {
    /// The first value of header `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The path part of the target, without the query.
    pub(crate) fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or("")
    }

    /// Whether the connection should stay open after this exchange.
    pub(crate) fn keep_alive(&self) -> bool {
        let tokens =
            self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("connection")).flat_map(|(_, v)| v.split(','));
        let mut close = false;
        let mut keep = false;
        for token in tokens {
            let token = token.trim();
            close |= token.eq_ignore_ascii_case("close");
            keep |= token.eq_ignore_ascii_case("keep-alive");
        }
        match self.version {
            Version::Http11 => !close,
            Version::Http10 => keep && !close,
        }
    }

    /// Whether the client waits for `100 Continue` before sending the body.
    pub(crate) fn expects_continue(&self) -> bool {
        self.header("expect").is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
    }

    /// How the body is framed.
    pub(crate) fn framing(&self) -> Result<Framing, HttpError> {
        let encodings: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        if !encodings.is_empty() {
            if self.version == Version::Http10 {
                return Err(HttpError::Malformed("transfer-encoding in an HTTP/1.0 request"));
            }
            return match encodings.as_slice() {
                [only] if only.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
                _ => Err(HttpError::UnsupportedTransferEncoding(encodings.join(", "))),
            };
        }
        let mut length: Option<u64> = None;
        for (_, value) in self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("content-length")) {
            for part in value.split(',') {
                let part = part.trim();
                if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(HttpError::Malformed("content-length is not a number"));
                }
                let n: u64 = part.parse().map_err(|_| HttpError::Malformed("content-length is too large"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(HttpError::Malformed("conflicting content-length values"));
                }
                length = Some(n);
            }
        }
        Ok(match length {
            None | Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
        })
    }
}

/// What went wrong reading a request.
#[derive(Debug)]
pub(crate) enum HttpError {
    /// The request is not valid HTTP/1.x; answer 400 and close.
    Malformed(&'static str),
    /// The head is longer than [`MAX_HEAD`]; answer 431 and close.
    HeadTooLarge,
    /// A version other than HTTP/1.0 or HTTP/1.1; answer 505 and close.
    UnsupportedVersion(String),
    /// A transfer coding other than `chunked`; answer 501 and close.
    UnsupportedTransferEncoding(String),
    /// The connection failed or timed out; close without answering.
    Io(io::Error),
}

impl HttpError {
    /// The status to answer with, or `None` when the connection is gone.
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            HttpError::Malformed(_) => Some(400),
            HttpError::HeadTooLarge => Some(431),
            HttpError::UnsupportedVersion(_) => Some(505),
            HttpError::UnsupportedTransferEncoding(_) => Some(501),
            HttpError::Io(_) => None,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Malformed(what) => write!(f, "malformed request: {what}"),
            HttpError::HeadTooLarge => write!(f, "request head longer than {MAX_HEAD} bytes"),
            HttpError::UnsupportedVersion(v) => write!(f, "unsupported HTTP version {v:?}"),
            HttpError::UnsupportedTransferEncoding(v) => write!(f, "unsupported transfer-encoding {v:?}"),
            HttpError::Io(e) => write!(f, "connection error: {e}"),
        }
    }
}

impl From<io::Error> for HttpError {
    fn from(e: io::Error) -> Self {
        HttpError::Io(e)
    }
}

/// Reads one request head. `Ok(None)` means the peer closed the connection
/// cleanly before sending anything (the end of a keep-alive connection).
pub(crate) fn read_head<R: BufRead>(reader: &mut R) -> Result<Option<RequestHead>, HttpError> {
    let mut head = Vec::with_capacity(512);
    loop {
        let budget = (MAX_HEAD + 1).saturating_sub(head.len()) as u64;
        let before = head.len();
        let n = reader.by_ref().take(budget).read_until(b'\n', &mut head)?;
        if n == 0 {
            if head.iter().all(|b| matches!(b, b'\r' | b'\n')) {
                return Ok(None);
            }
            return Err(HttpError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-request")));
        }
        if head.len() > MAX_HEAD {
            return Err(HttpError::HeadTooLarge);
        }
        if !head.ends_with(b"\n") {
            continue;
        }
        let line = &head[before..];
        let is_blank = line == b"\r\n" || line == b"\n";
        // Blank lines before the request line are allowed (RFC 9112 2.2).
        if is_blank && head[..before].iter().all(|b| matches!(b, b'\r' | b'\n')) {
            head.clear();
            continue;
        }
        if is_blank {
            return parse_head(&head).map(Some);
        }
    }
}

/// Parses a complete request head (everything up to and including the
/// blank line) with `httparse`, then checks what HTTP/1.1 asks of a server
/// and httparse leaves to it: a `Host` header, UTF-8 text, a body framing
/// that is not ambiguous.
pub(crate) fn parse_head(bytes: &[u8]) -> Result<RequestHead, HttpError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut slots);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HttpError::Malformed("incomplete request head")),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(httparse::Error::Version) => return Err(version_error(bytes)),
        Err(httparse::Error::Token) => return Err(HttpError::Malformed("request line is not `METHOD TARGET VERSION`")),
        Err(httparse::Error::HeaderName) => return Err(HttpError::Malformed("invalid header name or line")),
        Err(httparse::Error::HeaderValue) => return Err(HttpError::Malformed("invalid byte in a header value")),
        Err(httparse::Error::NewLine | httparse::Error::Status) => {
            return Err(HttpError::Malformed("request line is not `METHOD TARGET VERSION`"));
        }
    }
    let (Some(method), Some(target), Some(minor)) = (request.method, request.path, request.version) else {
        return Err(HttpError::Malformed("incomplete request line"));
    };
    let version = if minor == 0 { Version::Http10 } else { Version::Http11 };
    let mut headers = Vec::with_capacity(request.headers.len());
    for header in request.headers.iter() {
        let value = std::str::from_utf8(header.value).map_err(|_| HttpError::Malformed("header value is not UTF-8"))?;
        headers.push((header.name.to_owned(), value.trim_matches([' ', '\t']).to_owned()));
    }
    let head = RequestHead { method: method.to_owned(), target: target.to_owned(), version, headers };
    if head.version == Version::Http11 && head.header("host").is_none() {
        return Err(HttpError::Malformed("HTTP/1.1 request without a host header"));
    }
    head.framing()?;
    Ok(head)
}

/// The error for a request line whose version httparse refused: `505` for
/// an `HTTP/` version other than 1.0 and 1.1, `400` for anything else. The
/// raw bytes are needed here: httparse does not tell the two apart.
fn version_error(bytes: &[u8]) -> HttpError {
    let line = bytes.split(|&b| b == b'\n').find(|l| !l.is_empty() && *l != b"\r").unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(_), Some(_), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return HttpError::Malformed("request line is not `METHOD TARGET VERSION`");
    };
    if version.starts_with(b"HTTP/") {
        HttpError::UnsupportedVersion(String::from_utf8_lossy(version).into_owned())
    } else {
        HttpError::Malformed("invalid HTTP version")
    }
}

/// A request body, read up to a limit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Body {
    /// The whole body.
    Complete(Vec<u8>),
    /// The body was longer than the limit; it was read and discarded so the
    /// connection stays usable.
    TooLarge,
}

/// Reads the body framed as `framing`, keeping at most `limit` bytes.
pub(crate) fn read_body<R: BufRead>(reader: &mut R, framing: Framing, limit: usize) -> Result<Body, HttpError> {
    let mut body = Vec::new();
    let mut too_large = false;
    let mut keep = |chunk: &[u8], body: &mut Vec<u8>| {
        if !too_large && body.len() + chunk.len() <= limit {
            body.extend_from_slice(chunk);
        } else {
            too_large = true;
            body.clear();
        }
    };
    match framing {
        Framing::Empty => {}
        Framing::Length(n) => copy_exact(reader, n, |c| keep(c, &mut body))?,
        Framing::Chunked => loop {
            let line = read_line(reader, 1024)?;
            let size = line.split(';').next().unwrap_or("").trim();
            if size.is_empty() || !size.bytes().all(|b| b.is_ascii_hexdigit()) || size.len() > 15 {
                return Err(HttpError::Malformed("invalid chunk size"));
            }
            let size = u64::from_str_radix(size, 16).map_err(|_| HttpError::Malformed("invalid chunk size"))?;
            if size == 0 {
                // Trailers, up to the blank line.
                let mut trailer_bytes = 0;
                loop {
                    let trailer = read_line(reader, MAX_HEAD)?;
                    trailer_bytes += trailer.len();
                    if trailer.is_empty() {
                        break;
                    }
                    if trailer_bytes > MAX_HEAD {
                        return Err(HttpError::HeadTooLarge);
                    }
                }
                break;
            }
            copy_exact(reader, size, |c| keep(c, &mut body))?;
            if !read_line(reader, 2)?.is_empty() {
                return Err(HttpError::Malformed("chunk data longer than its size"));
            }
        },
    }
    Ok(if too_large { Body::TooLarge } else { Body::Complete(body) })
}

/// Passes exactly `n` bytes from `reader` to `sink`, in pieces.
fn copy_exact<R: BufRead>(reader: &mut R, mut n: u64, mut sink: impl FnMut(&[u8])) -> Result<(), HttpError> {
    while n > 0 {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Err(HttpError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-body")));
        }
        let take = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        sink(&buf[..take]);
        reader.consume(take);
        n -= take as u64;
    }
    Ok(())
}

/// Reads one CRLF- (or LF-) terminated line of at most `max` bytes, without the terminator.
fn read_line<R: BufRead>(reader: &mut R, max: usize) -> Result<String, HttpError> {
    let mut line = Vec::new();
    reader.by_ref().take(max as u64 + 2).read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") {
        return Err(if line.len() > max {
            HttpError::Malformed("line too long in chunked body")
        } else {
            HttpError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-body"))
        });
    }
    line.pop();
    if line.ends_with(b"\r") {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| HttpError::Malformed("chunk line is not UTF-8"))
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// A response with a JSON body.
    pub(crate) fn json(status: u16, body: &serde_json::Value) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::to_vec(body).unwrap_or_default(),
        }
    }

    /// A response with a plain-text body.
    pub(crate) fn text(status: u16, body: impl Into<String>) -> Response {
        let mut body = body.into().into_bytes();
        if !body.ends_with(b"\n") {
            body.push(b'\n');
        }
        Response { status, headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())], body }
    }

    /// An error response: `{"error": message}`.
    pub(crate) fn error(status: u16, message: impl fmt::Display) -> Response {
        Response::json(status, &serde_json::json!({ "error": message.to_string(), "status": status }))
    }

    /// Adds a header.
    pub(crate) fn with_header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// The status line and headers, with `Content-Length` and `Connection`.
    pub(crate) fn head_bytes(&self, keep_alive: bool) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        out.push_str("Server: vigil-collector\r\n");
        for (name, value) in &self.headers {
            out.push_str(name);
            out.push_str(": ");
            // Values come from our own code or the control interface; never
            // let one break the framing.
            out.extend(value.chars().filter(|c| *c != '\r' && *c != '\n'));
            out.push_str("\r\n");
        }
        out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        out.push_str(if keep_alive { "Connection: keep-alive\r\n" } else { "Connection: close\r\n" });
        out.push_str("\r\n");
        out.into_bytes()
    }

    /// Writes the whole response and flushes.
    pub(crate) fn write_to<W: Write>(&self, w: &mut W, keep_alive: bool) -> io::Result<()> {
        let mut bytes = self.head_bytes(keep_alive);
        bytes.extend_from_slice(&self.body);
        w.write_all(&bytes)?;
        w.flush()
    }
}

/// The reason phrase for a status code.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Cursor};

    fn head(text: &str) -> Result<Option<RequestHead>, HttpError> {
        read_head(&mut BufReader::new(Cursor::new(text.as_bytes().to_vec())))
    }

    fn status_of(text: &str) -> Option<u16> {
        head(text).expect_err("should be rejected").status()
    }

    #[test]
    fn parses_a_post_with_headers() {
        let h = head(
            "POST /ingest?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nIdempotency-Key:  b-1 \r\n\r\nhello",
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.method, "POST");
        assert_eq!(h.path(), "/ingest");
        assert_eq!(h.version, Version::Http11);
        assert_eq!(h.header("idempotency-key"), Some("b-1"));
        assert_eq!(h.header("IDEMPOTENCY-KEY"), Some("b-1"));
        assert_eq!(h.framing().unwrap(), Framing::Length(5));
        assert!(h.keep_alive());
        assert!(!h.expects_continue());
    }

    #[test]
    fn bare_lf_and_leading_blank_lines_are_accepted() {
        let h = head("\r\n\nGET /health HTTP/1.1\nHost: x\n\n").unwrap().unwrap();
        assert_eq!(h.path(), "/health");
        assert_eq!(h.framing().unwrap(), Framing::Empty);
    }

    #[test]
    fn clean_eof_is_not_an_error() {
        assert!(head("").unwrap().is_none());
        assert!(head("\r\n").unwrap().is_none());
    }

    #[test]
    fn eof_mid_head_is_an_io_error() {
        assert!(matches!(head("POST /ingest HTTP/1.1\r\nHost: x\r\n"), Err(HttpError::Io(_))));
        assert_eq!(status_of("POST /ingest HTTP/1.1\r\nHost"), None);
    }

    #[test]
    fn connection_semantics_follow_the_version() {
        let close = head("GET / HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n").unwrap().unwrap();
        assert!(!close.keep_alive());
        let old = head("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!old.keep_alive());
        let old_keep = head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap().unwrap();
        assert!(old_keep.keep_alive());
        let multi = head("GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade, close\r\n\r\n").unwrap().unwrap();
        assert!(!multi.keep_alive());
    }

    #[test]
    fn malformed_heads_are_400_never_a_panic() {
        for bad in [
            "POST\r\n\r\n",
            "POST /ingest\r\n\r\n",
            "POST /ingest HTTP/1.1 extra\r\nHost: x\r\n\r\n",
            "POST  /ingest HTTP/1.1\r\nHost: x\r\n\r\n",
            "PO(ST /ingest HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /in gest HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /ingest FTP/1.1\r\nHost: x\r\n\r\n",
            "POST /ingest HTTP/1.1\r\n\r\n",
            "POST /ingest HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
            "POST /ingest HTTP/1.1\r\nHost: x\r\n: empty name\r\n\r\n",
            "POST /ingest HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
            "POST /ingest HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n",
            "POST /ingest HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
            "POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
            "POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            "POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST /ingest HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(status_of(bad), Some(400), "{bad:?}");
        }
        let not_utf8 = b"POST /\xff HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        let err = read_head(&mut BufReader::new(Cursor::new(not_utf8))).unwrap_err();
        assert_eq!(err.status(), Some(400));
    }

    #[test]
    fn other_rejections_have_their_own_status() {
        assert_eq!(status_of("GET / HTTP/2.0\r\nHost: x\r\n\r\n"), Some(505));
        assert_eq!(status_of("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), Some(501));
        let long = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(status_of(&long), Some(431));
        let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{}\r\n", "X-A: 1\r\n".repeat(MAX_HEADERS + 1));
        assert_eq!(status_of(&many), Some(431));
        // A line that never ends is bounded too.
        let endless = format!("GET /{} HTTP/1.1", "a".repeat(MAX_HEAD * 2));
        assert_eq!(status_of(&endless), Some(431));
    }

    #[test]
    fn only_an_http_version_gets_505() {
        assert_eq!(status_of("GET / HTTP/1.2\r\nHost: x\r\n\r\n"), Some(505));
        assert_eq!(status_of("GET / HTTP/3\r\nHost: x\r\n\r\n"), Some(505));
        assert_eq!(status_of("\r\nGET / HTTP/2.0\r\n\r\n"), Some(505));
        assert_eq!(status_of("GET / http/2.0\r\nHost: x\r\n\r\n"), Some(400));
        assert_eq!(status_of("GET / HTTP/2.0 x\r\nHost: x\r\n\r\n"), Some(400));
        let obs_text = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: \xff\r\n\r\n".to_vec();
        let err = read_head(&mut BufReader::new(Cursor::new(obs_text))).unwrap_err();
        assert_eq!(err.status(), Some(400));
    }

    #[test]
    fn identical_repeated_content_lengths_are_fine() {
        let h = head("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.framing().unwrap(), Framing::Length(3));
    }

    fn body(framing: Framing, bytes: &[u8], limit: usize) -> Result<Body, HttpError> {
        read_body(&mut BufReader::new(Cursor::new(bytes.to_vec())), framing, limit)
    }

    #[test]
    fn reads_length_framed_bodies() {
        assert_eq!(body(Framing::Length(5), b"helloEXTRA", 100).unwrap(), Body::Complete(b"hello".to_vec()));
        assert_eq!(body(Framing::Empty, b"ignored", 100).unwrap(), Body::Complete(Vec::new()));
        assert_eq!(body(Framing::Length(5), b"hello", 4).unwrap(), Body::TooLarge);
        assert!(matches!(body(Framing::Length(5), b"hel", 100), Err(HttpError::Io(_))));
    }

    #[test]
    fn reads_chunked_bodies() {
        let wire = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
        assert_eq!(body(Framing::Chunked, wire, 100).unwrap(), Body::Complete(b"hello, world".to_vec()));
        assert_eq!(body(Framing::Chunked, wire, 8).unwrap(), Body::TooLarge);
        for bad in [&b"zz\r\nhello\r\n0\r\n\r\n"[..], b"5\r\nhelloXX\r\n0\r\n\r\n", b"\r\n", b"fffffffffffffffff\r\n"] {
            assert_eq!(body(Framing::Chunked, bad, 100).unwrap_err().status(), Some(400), "{bad:?}");
        }
        assert!(matches!(body(Framing::Chunked, b"5\r\nhel", 100), Err(HttpError::Io(_))));
    }

    #[test]
    fn the_rest_of_the_stream_stays_readable_after_a_request() {
        let wire = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nokGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut reader = BufReader::new(Cursor::new(wire.to_vec()));
        let first = read_head(&mut reader).unwrap().unwrap();
        assert_eq!(read_body(&mut reader, first.framing().unwrap(), 10).unwrap(), Body::Complete(b"ok".to_vec()));
        let second = read_head(&mut reader).unwrap().unwrap();
        assert_eq!(second.path(), "/b");
        assert!(read_head(&mut reader).unwrap().is_none());
    }

    #[test]
    fn responses_carry_length_and_connection() {
        let resp = Response::text(503, "down").with_header("Retry-After", "2\r\nX-Injected: 1");
        let mut out = Vec::new();
        resp.write_to(&mut out, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{text}");
        assert!(text.contains("Retry-After: 2X-Injected: 1\r\n"), "{text}");
        assert!(text.contains("Content-Length: 5\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\ndown\n"), "{text}");
    }
}
