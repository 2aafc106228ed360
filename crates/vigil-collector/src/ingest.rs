//! Batch decoding and the ledger of what was received.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::stats::CollectorStats;

/// One record of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) seq: u64,
    /// The record as one line of JSON, without the newline.
    pub(crate) json: Vec<u8>,
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// A `Content-Encoding` other than gzip or identity.
    UnsupportedEncoding(String),
    /// A `Content-Type` that is neither NDJSON nor JSON.
    UnsupportedContentType(String),
    /// The gzip stream is corrupt.
    Gzip(String),
    /// The decompressed body is larger than the limit.
    TooLarge { limit: usize },
    /// A record is not valid JSON.
    Json { record: usize, reason: String },
    /// A record is not a JSON object.
    NotAnObject { record: usize },
    /// A record has no `seq`, or it is not an unsigned 64-bit integer.
    BadSeq { record: usize },
    /// An OTLP body that does not match the `ExportLogsServiceRequest` schema.
    Otlp(crate::otlp::SchemaError),
}

impl BodyError {
    /// The status to answer with.
    pub(crate) fn status(&self) -> u16 {
        match self {
            BodyError::UnsupportedEncoding(_) | BodyError::UnsupportedContentType(_) => 415,
            BodyError::TooLarge { .. } => 413,
            BodyError::Gzip(_)
            | BodyError::Json { .. }
            | BodyError::NotAnObject { .. }
            | BodyError::BadSeq { .. }
            | BodyError::Otlp(_) => 400,
        }
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::UnsupportedEncoding(e) => write!(f, "unsupported content-encoding {e:?} (use gzip or none)"),
            BodyError::UnsupportedContentType(t) => {
                write!(f, "unsupported content-type {t:?} (use application/x-ndjson or application/json)")
            }
            BodyError::Gzip(reason) => write!(f, "body is not valid gzip: {reason}"),
            BodyError::TooLarge { limit } => write!(f, "decompressed body is larger than {limit} bytes"),
            BodyError::Json { record, reason } => write!(f, "record {record} is not valid JSON: {reason}"),
            BodyError::NotAnObject { record } => write!(f, "record {record} is not a JSON object"),
            BodyError::BadSeq { record } => {
                write!(f, "record {record} has no top-level \"seq\" that is an unsigned 64-bit integer")
            }
            BodyError::Otlp(e) => e.fmt(f),
        }
    }
}

/// Decodes a batch body into records.
///
/// `content_type` selects the layout: NDJSON (`application/x-ndjson`,
/// `application/ndjson`, `application/jsonl`) or a JSON array
/// (`application/json`, which also takes a single object). Without a content
/// type, a body starting with `[` is an array and anything else NDJSON.
pub(crate) fn decode(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
    limit: usize,
) -> Result<Vec<Record>, BodyError> {
    let body = decompress(content_encoding, body, limit)?;
    let body = &body[..];
    let media = media_type(content_type);
    let array = match media.as_deref() {
        Some("application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/x-jsonlines") => false,
        Some("application/json") => true,
        None | Some("") => body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'['),
        Some(other) => return Err(BodyError::UnsupportedContentType(other.to_owned())),
    };
    if array { decode_array(body) } else { decode_ndjson(body) }
}

/// Decodes an OTLP/HTTP logs export: JSON only (`application/json`, or no
/// content type), gzip or not, parsed strictly (see [`crate::otlp`]).
pub(crate) fn decode_otlp(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
    limit: usize,
) -> Result<Vec<Record>, BodyError> {
    let body = decompress(content_encoding, body, limit)?;
    match media_type(content_type).as_deref() {
        None | Some("" | "application/json") => crate::otlp::parse_logs_request(&body).map_err(BodyError::Otlp),
        Some(other) => Err(BodyError::UnsupportedContentType(other.to_owned())),
    }
}

/// The media type of a `Content-Type`, lowercase, without parameters.
fn media_type(content_type: Option<&str>) -> Option<String> {
    content_type.map(|t| t.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

/// The body with its `Content-Encoding` (gzip or none) undone, at most `limit` bytes.
fn decompress<'a>(content_encoding: Option<&str>, body: &'a [u8], limit: usize) -> Result<Cow<'a, [u8]>, BodyError> {
    match content_encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "identity") => Ok(Cow::Borrowed(body)),
        Some("gzip" | "x-gzip") => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(body)
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| BodyError::Gzip(e.to_string()))?;
            if out.len() > limit {
                return Err(BodyError::TooLarge { limit });
            }
            Ok(Cow::Owned(out))
        }
        Some(other) => Err(BodyError::UnsupportedEncoding(other.to_owned())),
    }
}

fn decode_ndjson(body: &[u8]) -> Result<Vec<Record>, BodyError> {
    let mut records = Vec::new();
    for line in body.split(|b| *b == b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let index = records.len();
        let value: serde_json::Value =
            serde_json::from_slice(line).map_err(|e| BodyError::Json { record: index, reason: e.to_string() })?;
        records.push(record(index, &value)?);
    }
    Ok(records)
}

fn decode_array(body: &[u8]) -> Result<Vec<Record>, BodyError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| BodyError::Json { record: 0, reason: e.to_string() })?;
    match value {
        serde_json::Value::Array(items) => items.iter().enumerate().map(|(i, v)| record(i, v)).collect(),
        single @ serde_json::Value::Object(_) => Ok(vec![record(0, &single)?]),
        _ => Err(BodyError::NotAnObject { record: 0 }),
    }
}

fn record(index: usize, value: &serde_json::Value) -> Result<Record, BodyError> {
    let object = value.as_object().ok_or(BodyError::NotAnObject { record: index })?;
    let seq = object.get("seq").and_then(serde_json::Value::as_u64).ok_or(BodyError::BadSeq { record: index })?;
    let json = serde_json::to_vec(value).map_err(|e| BodyError::Json { record: index, reason: e.to_string() })?;
    Ok(Record { seq, json })
}

/// What the ledger did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// First time this key was seen: `new` of the `events` records carried a
    /// sequence number not seen before.
    Accepted { events: usize, new: usize },
    /// The key had already been accepted; nothing was recorded.
    Duplicate { events: usize },
}

/// Everything the collector has recorded, behind one lock, with a condition
/// variable notified on every change.
#[derive(Debug)]
pub(crate) struct Ledger {
    inner: Mutex<LedgerInner>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct LedgerInner {
    keys: HashSet<String>,
    seqs: BTreeSet<u64>,
    stats: CollectorStats,
    log: Option<(PathBuf, File)>,
}

impl Ledger {
    pub(crate) fn new(log: Option<(PathBuf, File)>) -> Ledger {
        Ledger { inner: Mutex::new(LedgerInner { log, ..LedgerInner::default() }), changed: Condvar::new() }
    }

    /// Records a decoded batch under its idempotency key (if any).
    pub(crate) fn record(&self, key: Option<&str>, records: &[Record]) -> Outcome {
        self.record_with(key, records, |_| {})
    }

    /// Records the accepted part of an OTLP request, `records`, of which
    /// the collector refused another `rejected`.
    pub(crate) fn record_otlp(&self, key: Option<&str>, records: &[Record], rejected: u64) -> Outcome {
        self.record_with(key, records, |s| {
            s.otlp_records += records.len() as u64;
            s.otlp_rejected_records += rejected;
        })
    }

    /// Records a batch and, unless it is a duplicate, applies `count` to the
    /// counters under the same lock.
    fn record_with(&self, key: Option<&str>, records: &[Record], count: impl FnOnce(&mut CollectorStats)) -> Outcome {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        if let Some(key) = key {
            if inner.keys.contains(key) {
                inner.stats.duplicate_batches += 1;
                self.changed.notify_all();
                return Outcome::Duplicate { events: records.len() };
            }
            inner.keys.insert(key.to_owned());
        }
        let mut new = 0;
        let mut lines = Vec::new();
        for record in records {
            if inner.seqs.insert(record.seq) {
                new += 1;
                if inner.log.is_some() {
                    lines.extend_from_slice(&record.json);
                    lines.push(b'\n');
                }
            }
        }
        if let Some((path, file)) = &mut inner.log
            && let Err(e) = file.write_all(&lines).and_then(|()| file.flush())
        {
            log::warn!(target: crate::TARGET, "cannot append to the NDJSON log {}: {e}", path.display());
        }
        let stats = &mut inner.stats;
        stats.batches_accepted += 1;
        stats.events_received += records.len() as u64;
        stats.unique_events = inner.seqs.len() as u64;
        stats.duplicate_events += (records.len() - new) as u64;
        count(stats);
        self.changed.notify_all();
        Outcome::Accepted { events: records.len(), new }
    }

    /// Changes the counters and wakes waiters.
    pub(crate) fn update(&self, f: impl FnOnce(&mut CollectorStats)) {
        f(&mut self.inner.lock().stats);
        self.changed.notify_all();
    }

    pub(crate) fn stats(&self) -> CollectorStats {
        self.inner.lock().stats
    }

    pub(crate) fn seqs(&self) -> BTreeSet<u64> {
        self.inner.lock().seqs.clone()
    }

    /// Waits until `pred(stats, seqs)` holds or `deadline` passes; returns
    /// whether it holds.
    pub(crate) fn wait_until(
        &self,
        deadline: Instant,
        mut pred: impl FnMut(&CollectorStats, &BTreeSet<u64>) -> bool,
    ) -> bool {
        let mut inner = self.inner.lock();
        loop {
            if pred(&inner.stats, &inner.seqs) {
                return true;
            }
            if self.changed.wait_until(&mut inner, deadline).timed_out() {
                return pred(&inner.stats, &inner.seqs);
            }
        }
    }

    /// Flushes the NDJSON log, if any.
    pub(crate) fn flush_log(&self) -> io::Result<()> {
        match &mut self.inner.lock().log {
            Some((_, file)) => file.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn seqs(records: &[Record]) -> Vec<u64> {
        records.iter().map(|r| r.seq).collect()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn decodes_ndjson_and_arrays() {
        let nd = b"{\"seq\":1,\"msg\":\"a\"}\n\n  {\"seq\":2}\r\n{\"seq\":3}";
        assert_eq!(seqs(&decode(Some("application/x-ndjson"), None, nd, 1024).unwrap()), [1, 2, 3]);
        let arr = b"[{\"seq\":4},{\"seq\":5,\"x\":[1,2]}]";
        assert_eq!(seqs(&decode(Some("application/json; charset=utf-8"), None, arr, 1024).unwrap()), [4, 5]);
        assert_eq!(seqs(&decode(None, None, arr, 1024).unwrap()), [4, 5]);
        assert_eq!(seqs(&decode(None, None, nd, 1024).unwrap()), [1, 2, 3]);
        assert_eq!(seqs(&decode(Some("application/json"), None, b"{\"seq\":9}", 1024).unwrap()), [9]);
        assert!(decode(Some("application/x-ndjson"), None, b"", 1024).unwrap().is_empty());
        let rec = &decode(None, None, b"{ \"seq\" : 1 }", 1024).unwrap()[0];
        assert_eq!(rec.json, b"{\"seq\":1}");
    }

    #[test]
    fn decodes_gzip() {
        let body = gzip(b"{\"seq\":10}\n{\"seq\":11}\n");
        assert_eq!(seqs(&decode(Some("application/x-ndjson"), Some("gzip"), &body, 1024).unwrap()), [10, 11]);
        assert_eq!(decode(None, Some("gzip"), &body, 5).unwrap_err(), BodyError::TooLarge { limit: 5 });
        let err = decode(None, Some("gzip"), b"not gzip", 1024).unwrap_err();
        assert_eq!(err.status(), 400, "{err}");
    }

    #[test]
    fn bad_bodies_name_the_problem() {
        type Case<'a> = (Option<&'a str>, Option<&'a str>, &'a [u8], u16, &'a str);
        let cases: &[Case<'_>] = &[
            (Some("application/x-ndjson"), None, b"{\"seq\":1}\nnot json", 400, "record 1 is not valid JSON"),
            (Some("application/x-ndjson"), None, b"[1]", 400, "record 0 is not a JSON object"),
            (Some("application/json"), None, b"[{\"seq\":1},2]", 400, "record 1 is not a JSON object"),
            (Some("application/json"), None, b"7", 400, "not a JSON object"),
            (Some("application/json"), None, b"[{\"seq\":-1}]", 400, "\"seq\""),
            (Some("application/json"), None, b"[{\"seq\":\"1\"}]", 400, "\"seq\""),
            (Some("application/json"), None, b"[{\"id\":1}]", 400, "\"seq\""),
            (Some("application/json"), None, b"[{\"seq\":1.5}]", 400, "\"seq\""),
            (Some("application/json"), None, b"[{\"seq\":1}", 400, "not valid JSON"),
            (Some("text/plain"), None, b"{\"seq\":1}", 415, "content-type"),
            (None, Some("br"), b"{\"seq\":1}", 415, "content-encoding"),
        ];
        for (ct, ce, body, status, words) in cases {
            let err = decode(*ct, *ce, body, 1024).unwrap_err();
            assert_eq!(err.status(), *status, "{err}");
            assert!(err.to_string().contains(words), "{err:?} should mention {words}");
        }
    }

    #[test]
    fn ledger_dedupes_keys_and_counts_seqs() {
        let ledger = Ledger::new(None);
        let batch = decode(None, None, b"{\"seq\":1}\n{\"seq\":2}", 1024).unwrap();
        assert_eq!(ledger.record(Some("k1"), &batch), Outcome::Accepted { events: 2, new: 2 });
        assert_eq!(ledger.record(Some("k1"), &batch), Outcome::Duplicate { events: 2 });
        assert_eq!(ledger.record(Some("k2"), &batch), Outcome::Accepted { events: 2, new: 0 });
        assert_eq!(ledger.record(None, &batch[..1]), Outcome::Accepted { events: 1, new: 0 });
        let stats = ledger.stats();
        assert_eq!(stats.batches_accepted, 3);
        assert_eq!(stats.duplicate_batches, 1);
        assert_eq!(stats.events_received, 5);
        assert_eq!(stats.unique_events, 2);
        assert_eq!(stats.duplicate_events, 3);
        assert_eq!(ledger.seqs().into_iter().collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn wait_until_wakes_on_a_change_from_another_thread() {
        let ledger = std::sync::Arc::new(Ledger::new(None));
        let writer = {
            let ledger = ledger.clone();
            std::thread::spawn(move || {
                for seq in 0..10 {
                    ledger.record(None, &[Record { seq, json: b"{}".to_vec() }]);
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        assert!(ledger.wait_until(deadline, |_, seqs| seqs.len() == 10));
        writer.join().unwrap();
        assert!(!ledger.wait_until(Instant::now(), |_, seqs| seqs.len() == 11));
    }
}
