//! Record encoding and batch bodies.
//!
//! A record is `{"seq":N,"ts":<unix ms>,"event":<event>}`, or an OTLP log
//! record (see [`crate::otlp`]). A batch body is the records framed by the
//! [`Encoding`]: one per line for NDJSON, a JSON array, or the
//! `logRecords` array of an OTLP `ExportLogsServiceRequest`. Bodies remember
//! where each record sits, so a batch the receiver finds too large can be
//! split without encoding anything again.

use std::io::Write;
use std::ops::Range;

use serde::Serialize;

use crate::otlp::{Envelope, OtlpLogs, SUFFIX};
use crate::sink::{Batch, Encoding};

/// An [`Encoding`] with what it needs to encode: the OTLP configuration and
/// the fixed start of its bodies.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Framing<'a> {
    Ndjson,
    JsonArray,
    Otlp(&'a OtlpLogs, &'a Envelope),
}

impl Framing<'_> {
    fn encoding(self) -> Encoding {
        match self {
            Framing::Ndjson => Encoding::Ndjson,
            Framing::JsonArray => Encoding::JsonArray,
            Framing::Otlp(..) => Encoding::OtlpLogsJson,
        }
    }

    /// What comes before the first record and after the last one.
    fn ends(self) -> (&'static [u8], &'static [u8]) {
        match self {
            Framing::Ndjson => (b"", b""),
            Framing::JsonArray => (b"[", b"]"),
            Framing::Otlp(..) => (b"", SUFFIX),
        }
    }
}

/// Appends one record to `out`. On error `out` is left as it was.
pub(crate) fn encode_record<E: Serialize + ?Sized>(
    framing: Framing<'_>,
    out: &mut Vec<u8>,
    seq: u64,
    ts_ms: u64,
    event: &E,
) -> Result<(), serde_json::Error> {
    if let Framing::Otlp(otlp, _) = framing {
        return otlp.encode_record(out, seq, ts_ms, event);
    }
    let start = out.len();
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{{\"seq\":{seq},\"ts\":{ts_ms},\"event\":");
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
pub(crate) fn framed_len(framing: Framing<'_>, records: usize, raw: usize) -> usize {
    match framing {
        // A newline after each record.
        Framing::Ndjson => raw + records,
        // Brackets plus a comma between records.
        Framing::JsonArray => raw + records.saturating_sub(1) + 2,
        // The envelope plus a comma between records.
        Framing::Otlp(_, envelope) => envelope.prefix.len() + raw + records.saturating_sub(1) + SUFFIX.len(),
    }
}

/// Frames records into a body; returns the body and each record's span in it.
pub(crate) fn frame<'a>(
    framing: Framing<'_>,
    records: impl ExactSizeIterator<Item = &'a [u8]>,
    raw_len: usize,
) -> (Vec<u8>, Vec<Range<usize>>) {
    let n = records.len();
    let mut body = Vec::with_capacity(framed_len(framing, n, raw_len));
    let mut spans = Vec::with_capacity(n);
    let (open, close) = framing.ends();
    if let Framing::Otlp(_, envelope) = framing {
        body.extend_from_slice(&envelope.prefix);
    }
    body.extend_from_slice(open);
    for (i, record) in records.enumerate() {
        if !matches!(framing, Framing::Ndjson) && i > 0 {
            body.push(b',');
        }
        let start = body.len();
        body.extend_from_slice(record);
        spans.push(start..body.len());
        if matches!(framing, Framing::Ndjson) {
            body.push(b'\n');
        }
    }
    body.extend_from_slice(close);
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
    pub(crate) fn fits(&self, framing: Framing<'_>, len: usize, max: usize) -> bool {
        framed_len(framing, self.len() + 1, self.raw.len() + len) <= max
    }

    pub(crate) fn push(&mut self, seq: u64, record: &[u8]) {
        self.raw.extend_from_slice(record);
        self.ends.push(self.raw.len());
        self.seqs.push(seq);
    }

    /// Frames the staged records into a batch, leaving the staging empty.
    pub(crate) fn take(&mut self, prefix: &str, framing: Framing<'_>) -> (Batch, Vec<Range<usize>>) {
        let staged = std::mem::take(self);
        let mut start = 0;
        let records = staged.ends.iter().map(|&end| {
            let r = &staged.raw[start..end];
            start = end;
            r
        });
        let (body, spans) = frame(framing, records, staged.raw.len());
        let key = batch_key(prefix, &staged.seqs);
        (Batch::new(key, framing.encoding(), staged.seqs, body), spans)
    }
}

/// Splits a framed batch into two halves (the first half gets the smaller
/// share). `spans` locate the records in `batch.body()`. Needs two records or
/// more. `framing` is the one the batch was framed with.
pub(crate) fn split(
    prefix: &str,
    framing: Framing<'_>,
    batch: &Batch,
    spans: &[Range<usize>],
) -> [(Batch, Vec<Range<usize>>); 2] {
    debug_assert!(batch.len() >= 2 && spans.len() == batch.len());
    let mid = batch.len() / 2;
    let half = |range: Range<usize>| {
        let seqs = batch.seqs()[range.clone()].to_vec();
        let spans = &spans[range];
        let raw: usize = spans.iter().map(|s| s.len()).sum();
        let (body, spans) = frame(framing, spans.iter().map(|s| &batch.body()[s.clone()]), raw);
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
        record_in(Framing::Ndjson, seq, event)
    }

    fn record_in(framing: Framing<'_>, seq: u64, event: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_record(framing, &mut out, seq, 1_700_000_000_000, event).unwrap();
        out
    }

    fn stage(framing: Framing<'_>, records: &[(u64, Value)]) -> Staging {
        let mut s = Staging::default();
        for (seq, ev) in records {
            s.push(*seq, &record_in(framing, *seq, ev));
        }
        s
    }

    fn otlp() -> (OtlpLogs, Envelope) {
        let otlp = OtlpLogs::new().service_name("test");
        let envelope = otlp.envelope();
        (otlp, envelope)
    }

    /// The records of a body, as JSON, with their `seq`.
    fn records_of(framing: Framing<'_>, body: &[u8]) -> Vec<(u64, Value)> {
        let records: Vec<Value> = match framing {
            Framing::Ndjson => {
                assert!(body.ends_with(b"\n"));
                body.split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(|l| serde_json::from_slice(l).unwrap())
                    .collect()
            }
            Framing::JsonArray => serde_json::from_slice(body).unwrap(),
            Framing::Otlp(..) => {
                let v: Value = serde_json::from_slice(body).unwrap();
                v["resourceLogs"][0]["scopeLogs"][0]["logRecords"].as_array().unwrap().clone()
            }
        };
        records.into_iter().map(|r| (seq_of(&r), r)).collect()
    }

    fn seq_of(record: &Value) -> u64 {
        match record.get("seq") {
            Some(seq) => seq.as_u64().unwrap(),
            None => record["attributes"][0]["value"]["intValue"].as_str().unwrap().parse().unwrap(),
        }
    }

    #[test]
    fn record_has_seq_ts_and_event() {
        let r = record(17, &json!({"a": [1, 2]}));
        let v: Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(v, json!({"seq": 17, "ts": 1_700_000_000_000u64, "event": {"a": [1, 2]}}));
    }

    #[test]
    fn failed_serialization_leaves_buffer_untouched() {
        // A map with non-string keys cannot be JSON.
        let mut bad = BTreeMap::new();
        bad.insert(vec![1u8], 1);
        let mut out = b"previous".to_vec();
        assert!(encode_record(Framing::Ndjson, &mut out, 1, 2, &bad).is_err());
        assert_eq!(out, b"previous");
    }

    #[test]
    fn bodies_parse_and_match_framed_len() {
        let (o, e) = otlp();
        for framing in [Framing::Ndjson, Framing::JsonArray, Framing::Otlp(&o, &e)] {
            let mut s = stage(framing, &[(1, json!("a")), (2, json!({"b": 1})), (5, json!(null))]);
            let raw = s.raw.len();
            let (batch, spans) = s.take("p", framing);
            assert!(s.is_empty());
            assert_eq!(batch.encoding(), framing.encoding());
            assert_eq!(batch.body().len(), framed_len(framing, 3, raw));
            assert_eq!(batch.seqs(), &[1, 2, 5]);
            assert_eq!(batch.idempotency_key(), "p-1-5");
            let records = records_of(framing, batch.body());
            let seqs: Vec<u64> = records.iter().map(|r| r.0).collect();
            assert_eq!(seqs, vec![1, 2, 5]);
            for (span, rec) in spans.iter().zip(&records) {
                let v: Value = serde_json::from_slice(&batch.body()[span.clone()]).unwrap();
                assert_eq!(v, rec.1);
            }
        }
    }

    #[test]
    fn fits_accounts_for_framing() {
        let r = record(1, &json!(1));
        let mut s = Staging::default();
        let exact_nd = framed_len(Framing::Ndjson, 1, r.len());
        assert!(s.fits(Framing::Ndjson, r.len(), exact_nd));
        assert!(!s.fits(Framing::Ndjson, r.len(), exact_nd - 1));
        s.push(1, &r);
        let two = framed_len(Framing::JsonArray, 2, 2 * r.len());
        assert!(s.fits(Framing::JsonArray, r.len(), two));
        assert!(!s.fits(Framing::JsonArray, r.len(), two - 1));
        let (o, e) = otlp();
        let two = framed_len(Framing::Otlp(&o, &e), 2, 2 * r.len());
        assert!(s.fits(Framing::Otlp(&o, &e), r.len(), two));
        assert!(!s.fits(Framing::Otlp(&o, &e), r.len(), two - 1));
    }

    #[test]
    fn split_halves_keep_records_and_get_new_keys() {
        let (o, e) = otlp();
        for framing in [Framing::Ndjson, Framing::JsonArray, Framing::Otlp(&o, &e)] {
            let events: Vec<(u64, Value)> = (10..15).map(|i| (i, json!({"i": i}))).collect();
            let (batch, spans) = stage(framing, &events).take("k", framing);
            let [(a, sa), (b, sb)] = split("k", framing, &batch, &spans);
            assert_eq!(a.seqs(), &[10, 11]);
            assert_eq!(b.seqs(), &[12, 13, 14]);
            assert_eq!(a.idempotency_key(), "k-10-11");
            assert_eq!(b.idempotency_key(), "k-12-14");
            for (half, spans) in [(&a, &sa), (&b, &sb)] {
                let records = records_of(framing, half.body());
                assert_eq!(records.len(), half.len());
                for ((seq, span), (parsed_seq, parsed)) in half.seqs().iter().zip(spans).zip(&records) {
                    let v: Value = serde_json::from_slice(&half.body()[span.clone()]).unwrap();
                    assert_eq!((seq_of(&v), parsed_seq), (*seq, seq));
                    assert_eq!(&v, parsed);
                    assert_eq!(v, records_of(framing, batch.body()).into_iter().find(|r| r.0 == *seq).unwrap().1);
                }
            }
            // Splitting again down to single records works too.
            let [(c, _), (d, _)] = split("k", framing, &a, &sa);
            assert_eq!((c.seqs(), d.seqs()), (&[10][..], &[11][..]));
        }
    }
}
