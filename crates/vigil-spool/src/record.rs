//! The record frame and the scanner that reads frames back, resynchronising
//! past damage.
//!
//! A record is a 20-byte header and a payload:
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `VGS1` |
//! | 4..8 | CRC-32C of bytes 8.. (length, sequence number and payload), u32 little-endian |
//! | 8..12 | payload length, u32 little-endian |
//! | 12..20 | sequence number, u64 little-endian |
//! | 20.. | payload |
//!
//! The checksum covers the length and the sequence number as well as the
//! payload, so a flipped bit anywhere but the magic is caught; a flipped
//! magic is caught by the magic. What it covers is contiguous, so it is
//! computed in one pass. Sequence numbers are contiguous in a spool,
//! so the scanner counts the records lost in a damaged region exactly when a
//! good record follows it.

use std::ops::Range;

/// The magic that opens every record.
pub(crate) const MAGIC: [u8; 4] = *b"VGS1";

/// The bytes a record takes on disk besides its payload: its header.
pub const RECORD_OVERHEAD: usize = 20;
pub(crate) const HEADER: usize = RECORD_OVERHEAD;

/// The largest payload a record may carry (64 MiB); a header claiming more is damage.
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// Where the checksummed bytes (length, sequence number, payload) start in a record.
const CHECKED: usize = 8;

/// The bytes a record of `payload_len` takes on disk.
pub(crate) fn framed_len(payload_len: usize) -> u64 {
    (HEADER + payload_len) as u64
}

/// Appends one framed record to `out`. `payload` must be at most
/// [`MAX_RECORD_BYTES`].
pub(crate) fn encode(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_RECORD_BYTES);
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start + CHECKED..]);
    out[start + 4..start + CHECKED].copy_from_slice(&crc.to_le_bytes());
}

/// A valid record found at `at` in a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) seq: u64,
    /// The payload's range in the buffer.
    pub(crate) payload: Range<usize>,
    /// Where the next record starts.
    pub(crate) end: usize,
}

/// Parses a record starting exactly at `at`, or `None` when the bytes there
/// are not a complete, valid record.
pub(crate) fn parse_at(buf: &[u8], at: usize) -> Option<Found> {
    let head = buf.get(at..at.checked_add(HEADER)?)?;
    if head[..4] != MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(head[4..8].try_into().ok()?);
    let len = u32::from_le_bytes(head[8..12].try_into().ok()?);
    let seq = u64::from_le_bytes(head[12..20].try_into().ok()?);
    if len as usize > MAX_RECORD_BYTES {
        return None;
    }
    let start = at + HEADER;
    let end = start.checked_add(len as usize)?;
    let checked = buf.get(at + CHECKED..end)?;
    (crc32c::crc32c(checked) == crc).then_some(Found { seq, payload: start..end, end })
}

/// What a scan of one segment's bytes found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Every valid record, in file order.
    pub(crate) records: Vec<Found>,
    /// Damaged regions between valid records: the records lost in each, by
    /// the gap in sequence numbers (at least one per region).
    pub(crate) damaged: u64,
    /// Where the valid data ends: everything after it is a torn or damaged tail.
    pub(crate) valid_len: usize,
    /// Damaged bytes after the last valid record, and an estimate of the
    /// records they held (magics found in them, at least one).
    pub(crate) tail_bytes: usize,
    pub(crate) tail_records: u64,
}

/// Scans a segment that should start with sequence number `first_seq`.
///
/// Valid records must carry increasing sequence numbers; a region that does
/// not parse is skipped by searching for the next magic that opens a valid
/// record, and counted by the gap in sequence numbers.
pub(crate) fn scan(buf: &[u8], first_seq: u64) -> Scan {
    let mut out = Scan::default();
    let mut at = 0;
    // The sequence number the next record should carry.
    let mut expect = first_seq;
    while at < buf.len() {
        if let Some(found) = parse_at(buf, at).filter(|f| f.seq >= expect) {
            out.damaged += found.seq - expect;
            expect = found.seq.saturating_add(1);
            at = found.end;
            out.valid_len = at;
            out.records.push(found);
            continue;
        }
        // Damage at `at`: look for the next valid record after it.
        match next_valid(buf, at + 1, expect) {
            Some(next) => {
                // At least one record was lost here, even if the numbers do not show it.
                out.damaged += (next.seq - expect).max(1);
                expect = next.seq.saturating_add(1);
                at = next.end;
                out.valid_len = at;
                out.records.push(next);
            }
            None => {
                let tail = &buf[at..];
                out.tail_bytes = tail.len();
                out.tail_records = (tail.windows(MAGIC.len()).filter(|w| *w == MAGIC).count() as u64).max(1);
                break;
            }
        }
    }
    out
}

fn next_valid(buf: &[u8], from: usize, expect: u64) -> Option<Found> {
    let mut at = from;
    while at + HEADER <= buf.len() {
        let rel = buf[at..].windows(MAGIC.len()).position(|w| w == MAGIC)?;
        at += rel;
        if let Some(found) = parse_at(buf, at).filter(|f| f.seq >= expect) {
            return Some(found);
        }
        at += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(first: u64, n: u64) -> (Vec<u8>, Vec<Range<usize>>) {
        let mut buf = Vec::new();
        let mut spans = Vec::new();
        for seq in first..first + n {
            let start = buf.len();
            encode(&mut buf, seq, format!("{{\"seq\":{seq}}}").as_bytes());
            spans.push(start..buf.len());
        }
        (buf, spans)
    }

    #[test]
    fn records_round_trip() {
        let (buf, _) = segment(7, 3);
        let scan = scan(&buf, 7);
        assert_eq!(scan.records.iter().map(|f| f.seq).collect::<Vec<_>>(), vec![7, 8, 9]);
        assert_eq!(&buf[scan.records[1].payload.clone()], b"{\"seq\":8}");
        assert_eq!((scan.damaged, scan.valid_len, scan.tail_bytes), (0, buf.len(), 0));
    }

    #[test]
    fn a_flipped_bit_anywhere_is_caught() {
        let (buf, _) = segment(0, 1);
        for bit in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(parse_at(&bad, 0), None, "bit {bit}");
        }
    }

    #[test]
    fn damage_in_the_middle_is_skipped_and_counted_by_the_gap() {
        let (mut buf, spans) = segment(100, 6);
        // Destroy records 101 and 102 (their lengths too).
        for b in &mut buf[spans[1].start..spans[2].end] {
            *b ^= 0x5a;
        }
        let scan = scan(&buf, 100);
        assert_eq!(scan.records.iter().map(|f| f.seq).collect::<Vec<_>>(), vec![100, 103, 104, 105]);
        assert_eq!(scan.damaged, 2);
        assert_eq!(scan.tail_bytes, 0);
    }

    #[test]
    fn a_torn_tail_is_measured() {
        let (buf, spans) = segment(0, 4);
        let cut = spans[3].start + 5;
        let scan = scan(&buf[..cut], 0);
        assert_eq!(scan.records.len(), 3);
        assert_eq!((scan.valid_len, scan.tail_bytes, scan.tail_records), (spans[3].start, 5, 1));
    }

    #[test]
    fn a_damaged_first_record_counts_from_the_segment_start() {
        let (mut buf, spans) = segment(50, 3);
        buf[spans[0].start + 10] ^= 1;
        let scan = scan(&buf, 50);
        assert_eq!(scan.records.iter().map(|f| f.seq).collect::<Vec<_>>(), vec![51, 52]);
        assert_eq!(scan.damaged, 1);
    }
}
