//! Record encoding and batch bodies.
//!
//! A record is `{"seq":N,"ts":<unix ms>,"event":<event>}`. A batch body is the
//! records framed by the [`Encoding`]: one per line for NDJSON, or a JSON
//! array. Bodies remember where each record sits, so a batch the receiver
//! finds too large can be split without encoding anything again.

use std::io::Write;
use std::ops::Range;

use serde::Serialize;

use crate::sink::{Batch, Encoding};

/// Appends one record to `out`. On error `out` is left as it was.
#[cfg(test)]
pub(crate) fn encode_record<E: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    seq: u64,
    ts_ms: u64,
    event: &E,
) -> Result<(), serde_json::Error> {
    let start = out.len();
    encode_head(out, seq, None);
    encode_tail(out, ts_ms, event).inspect_err(|_| out.truncate(start))
}

/// Appends the head of a record: `{"seq":N,`, and with a spool id
/// `{"seq":N,"id":"<spool id>-N",`. A spooled record's tail is written to
/// disk; the head is added when it is read back, once its number is known.
pub(crate) fn encode_head(out: &mut Vec<u8>, seq: u64, spool_id: Option<&str>) {
    // Writing into a Vec cannot fail.
    let _ = match spool_id {
        Some(id) => write!(out, "{{\"seq\":{seq},\"id\":\"{id}-{seq}\","),
        None => write!(out, "{{\"seq\":{seq},"),
    };
}

/// Appends the rest of a record: `"ts":<unix ms>,"event":<event>}`. On error
/// `out` is left as it was.
pub(crate) fn encode_tail<E: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    ts_ms: u64,
    event: &E,
) -> Result<(), serde_json::Error> {
    let start = out.len();
    let _ = write!(out, "\"ts\":{ts_ms},\"event\":");
    match serde_json::to_writer(&mut *out, event) {
        Ok(()) => {
            out.push(b'}');
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// The size of a body holding `records` records of `raw` bytes in total.
pub(crate) fn framed_len(encoding: Encoding, records: usize, raw: usize) -> usize {
    match encoding {
        // A newline after each record.
        Encoding::Ndjson => raw + records,
        // Brackets plus a comma between records.
        Encoding::JsonArray => raw + records.saturating_sub(1) + 2,
    }
}

/// Frames records into a body; returns the body and each record's span in it.
pub(crate) fn frame<'a>(
    encoding: Encoding,
    records: impl ExactSizeIterator<Item = &'a [u8]>,
    raw_len: usize,
) -> (Vec<u8>, Vec<Range<usize>>) {
    let n = records.len();
    let mut body = Vec::with_capacity(framed_len(encoding, n, raw_len));
    let mut spans = Vec::with_capacity(n);
    if encoding == Encoding::JsonArray {
        body.push(b'[');
    }
    for (i, record) in records.enumerate() {
        if encoding == Encoding::JsonArray && i > 0 {
            body.push(b',');
        }
        let start = body.len();
        body.extend_from_slice(record);
        spans.push(start..body.len());
        if encoding == Encoding::Ndjson {
            body.push(b'\n');
        }
    }
    if encoding == Encoding::JsonArray {
        body.push(b']');
    }
    (body, spans)
}

/// The idempotency key of a batch: the pipeline's process-unique prefix and
/// the first and last sequence numbers. Sequence numbers are unique in the
/// process and every event is in one batch at a time, so no two batches share
/// a key; a retry reuses its batch's key.
pub(crate) fn batch_key(prefix: &str, seqs: &[u64]) -> String {
    let first = seqs.first().copied().unwrap_or(0);
    let last = seqs.last().copied().unwrap_or(0);
    format!("{prefix}-{first}-{last}")
}

/// A batch being assembled: encoded records, not yet framed.
#[derive(Debug, Default)]
pub(crate) struct Staging {
    raw: Vec<u8>,
    ends: Vec<usize>,
    seqs: Vec<u64>,
}

impl Staging {
    pub(crate) fn len(&self) -> usize {
        self.seqs.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// Whether one more record of `len` bytes keeps the body within `max`.
    pub(crate) fn fits(&self, encoding: Encoding, len: usize, max: usize) -> bool {
        framed_len(encoding, self.len() + 1, self.raw.len() + len) <= max
    }

    pub(crate) fn push(&mut self, seq: u64, record: &[u8]) {
        self.raw.extend_from_slice(record);
        self.ends.push(self.raw.len());
        self.seqs.push(seq);
    }

    /// Frames the staged records into a batch, leaving the staging empty.
    pub(crate) fn take(&mut self, prefix: &str, encoding: Encoding) -> (Batch, Vec<Range<usize>>) {
        let staged = std::mem::take(self);
        let mut start = 0;
        let records = staged.ends.iter().map(|&end| {
            let r = &staged.raw[start..end];
            start = end;
            r
        });
        let (body, spans) = frame(encoding, records, staged.raw.len());
        let key = batch_key(prefix, &staged.seqs);
        (Batch::new(key, encoding, staged.seqs, body), spans)
    }
}

/// Splits a framed batch into two halves (the first half gets the smaller
/// share). `spans` locate the records in `batch.body()`. Needs two records or
/// more.
pub(crate) fn split(prefix: &str, batch: &Batch, spans: &[Range<usize>]) -> [(Batch, Vec<Range<usize>>); 2] {
    debug_assert!(batch.len() >= 2 && spans.len() == batch.len());
    let mid = batch.len() / 2;
    let half = |range: Range<usize>| {
        let seqs = batch.seqs()[range.clone()].to_vec();
        let spans = &spans[range];
        let raw: usize = spans.iter().map(|s| s.len()).sum();
        let (body, spans) = frame(batch.encoding(), spans.iter().map(|s| &batch.body()[s.clone()]), raw);
        (Batch::new(batch_key(prefix, &seqs), batch.encoding(), seqs, body), spans)
    };
    [half(0..mid), half(mid..batch.len())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::collections::BTreeMap;

    fn record(seq: u64, event: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_record(&mut out, seq, 1_700_000_000_000, event).unwrap();
        out
    }

    fn stage(records: &[(u64, Value)]) -> Staging {
        let mut s = Staging::default();
        for (seq, ev) in records {
            s.push(*seq, &record(*seq, ev));
        }
        s
    }

    #[test]
    fn record_has_seq_ts_and_event() {
        let r = record(17, &json!({"a": [1, 2]}));
        let v: Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(v, json!({"seq": 17, "ts": 1_700_000_000_000u64, "event": {"a": [1, 2]}}));
    }

    #[test]
    fn a_spooled_record_is_its_head_and_tail() {
        let mut tail = Vec::new();
        encode_tail(&mut tail, 5, &json!({"a": 1})).unwrap();
        let mut out = Vec::new();
        encode_head(&mut out, 9, Some("abc"));
        out.extend_from_slice(&tail);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, json!({"seq": 9, "id": "abc-9", "ts": 5, "event": {"a": 1}}));
    }

    #[test]
    fn failed_serialization_leaves_buffer_untouched() {
        // A map with non-string keys cannot be JSON.
        let mut bad = BTreeMap::new();
        bad.insert(vec![1u8], 1);
        let mut out = b"previous".to_vec();
        assert!(encode_record(&mut out, 1, 2, &bad).is_err());
        assert_eq!(out, b"previous");
    }

    #[test]
    fn ndjson_and_array_bodies_parse_and_match_framed_len() {
        for encoding in [Encoding::Ndjson, Encoding::JsonArray] {
            let mut s = stage(&[(1, json!("a")), (2, json!({"b": 1})), (5, json!(null))]);
            let raw = s.raw.len();
            let (batch, spans) = s.take("p", encoding);
            assert!(s.is_empty());
            assert_eq!(batch.body().len(), framed_len(encoding, 3, raw));
            assert_eq!(batch.seqs(), &[1, 2, 5]);
            assert_eq!(batch.idempotency_key(), "p-1-5");
            let records: Vec<Value> = match encoding {
                Encoding::Ndjson => {
                    assert!(batch.body().ends_with(b"\n"));
                    batch
                        .body()
                        .split(|&b| b == b'\n')
                        .filter(|l| !l.is_empty())
                        .map(|l| serde_json::from_slice(l).unwrap())
                        .collect()
                }
                Encoding::JsonArray => serde_json::from_slice(batch.body()).unwrap(),
            };
            let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
            assert_eq!(seqs, vec![1, 2, 5]);
            for (span, rec) in spans.iter().zip(&records) {
                let v: Value = serde_json::from_slice(&batch.body()[span.clone()]).unwrap();
                assert_eq!(&v, rec);
            }
        }
    }

    #[test]
    fn fits_accounts_for_framing() {
        let r = record(1, &json!(1));
        let mut s = Staging::default();
        let exact_nd = framed_len(Encoding::Ndjson, 1, r.len());
        assert!(s.fits(Encoding::Ndjson, r.len(), exact_nd));
        assert!(!s.fits(Encoding::Ndjson, r.len(), exact_nd - 1));
        s.push(1, &r);
        let two = framed_len(Encoding::JsonArray, 2, 2 * r.len());
        assert!(s.fits(Encoding::JsonArray, r.len(), two));
        assert!(!s.fits(Encoding::JsonArray, r.len(), two - 1));
    }

    #[test]
    fn split_halves_keep_records_and_get_new_keys() {
        for encoding in [Encoding::Ndjson, Encoding::JsonArray] {
            let events: Vec<(u64, Value)> = (10..15).map(|i| (i, json!({"i": i}))).collect();
            let (batch, spans) = stage(&events).take("k", encoding);
            let [(a, sa), (b, sb)] = split("k", &batch, &spans);
            assert_eq!(a.seqs(), &[10, 11]);
            assert_eq!(b.seqs(), &[12, 13, 14]);
            assert_eq!(a.idempotency_key(), "k-10-11");
            assert_eq!(b.idempotency_key(), "k-12-14");
            for (half, spans) in [(&a, &sa), (&b, &sb)] {
                for (seq, span) in half.seqs().iter().zip(spans) {
                    let v: Value = serde_json::from_slice(&half.body()[span.clone()]).unwrap();
                    assert_eq!(v["seq"], *seq);
                    assert_eq!(v["event"]["i"], *seq);
                }
            }
            // Splitting again down to single records works too.
            let [(c, _), (d, _)] = split("k", &a, &sa);
            assert_eq!((c.seqs(), d.seqs()), (&[10][..], &[11][..]));
        }
    }
}
