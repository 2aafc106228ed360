//! Assembling batches: taking events from the buffer or the spool, encoding
//! each record once, and cutting a batch at the configured limits.

use super::*;

impl<E: Serialize> Shared<E> {
    /// Moves events into a new batch at the back of the in-flight queue,
    /// taking at most `budget` events: from the buffer or, with a spool, from
    /// disk, then from the spool writer's hand-off, then (while the disk is
    /// bypassed) from the buffer. Returns how many it took.
    pub(super) fn assemble(&self, st: &mut State, budget: &mut u64, now: Instant) -> u64 {
        let cfg = &self.config;
        // Emitters may wake the batcher again once a batch's worth is queued
        // anew. Not re-armed while a retry is pending, so a full buffer does
        // not turn into a stream of wake-ups. (With a spool they wake its writer.)
        if self.spool.is_none() {
            self.buffer.rearm();
        }
        if let Some((seq, record, disk)) = st.carry.take() {
            st.staging.push(seq, &record);
            st.staging_disk = Some(disk);
        }
        let mut taken = 0;
        while st.staging.len() < cfg.max_batch_events && *budget > 0 {
            let mut scratch = std::mem::take(&mut st.scratch);
            scratch.clear();
            let Some(next) = self.next_record(st, &mut scratch) else {
                st.scratch = scratch;
                break;
            };
            *budget -= 1;
            taken += 1;
            if let Some((seq, disk)) = next {
                self.buffer.observe_record(scratch.len());
                if framed_len(cfg.framing(), 1, scratch.len()) > cfg.max_batch_bytes {
                    log::debug!(target: TARGET, "event with seq {seq} is {} bytes encoded, over max_batch_bytes", scratch.len());
                    self.ledger.batcher_drop(DropReason::TooLarge, 1);
                } else if !st.staging.fits(cfg.framing(), scratch.len(), cfg.max_batch_bytes) {
                    st.carry = Some((seq, scratch.clone(), disk));
                    st.scratch = scratch;
                    break;
                } else {
                    st.staging.push(seq, &scratch);
                    st.staging_disk = Some(disk);
                }
            }
            st.scratch = scratch;
        }
        if !st.staging.is_empty() {
            let (batch, spans) = st.staging.take(self.prefix, cfg.framing());
            let ack = if st.staging_disk == Some(true) { batch.seqs().last().map(|&l| l + 1) } else { None };
            st.staging_disk = None;
            st.batches.push_back(InFlight {
                batch: Arc::new(batch),
                spans,
                created: now,
                attempts: 0,
                next_attempt: now,
                retry_after_until: None,
                tried_in_drain: false,
                ack,
            });
        }
        if self.backlog() == 0 && st.staged() == 0 {
            st.last_empty = Some(now);
        }
        self.publish(st);
        taken
    }

    /// Takes the next record and encodes it into `out`: `Some(Some((seq,
    /// from_disk)))`, `Some(None)` when the event taken failed to encode and
    /// was dropped, `None` when there is nothing to take now.
    pub(super) fn next_record(&self, st: &mut State, out: &mut Vec<u8>) -> Option<Option<(u64, bool)>> {
        let framing = self.config.framing();
        let mut bypass = None;
        if let Some(spool) = &self.spool {
            let id = Some(spool.id.as_str());
            let (seq, tail, from_disk) = match spool.take(&self.ledger, st.staging_disk) {
                Some(Taken::Disk { seq, tail }) => (seq, tail, true),
                Some(Taken::Memory { why, tail }) => {
                    why.count(&self.ledger, 1);
                    (spool.status.reserve(1).start, tail, false)
                }
                None => {
                    // The buffer is the spool writer's unless the disk is bypassed.
                    match spool.bypass() {
                        Some(why) if st.staging_disk != Some(true) => bypass = Some(why),
                        _ => return None,
                    }
                    (0, Vec::new(), false)
                }
            };
            if bypass.is_none() {
                return match encode_spooled(framing, out, seq, id, &tail) {
                    Ok(()) => Some(Some((seq, from_disk))),
                    Err(e) => {
                        self.drop_unencodable(out, seq, &e, DropReason::Corrupt);
                        Some(None)
                    }
                };
            }
        }
        let entry = self.buffer.pop()?;
        st.encoding = Some(entry.seq);
        self.publish(st);
        let (seq, id) = match (&self.spool, bypass) {
            (Some(spool), Some(why)) => {
                why.count(&self.ledger, 1);
                (spool.status.reserve(1).start, Some(spool.id.as_str()))
            }
            _ => (entry.seq, None),
        };
        let result = encode_record(framing, out, seq, id, entry.ts_ms, &entry.event);
        st.encoding = None;
        match result {
            Ok(()) => Some(Some((seq, false))),
            Err(e) => {
                self.drop_unencodable(out, seq, &e, DropReason::Encode);
                Some(None)
            }
        }
    }

    /// Drops a record that could not be encoded, with `reason`, and says why
    /// in the ledger's last error.
    pub(super) fn drop_unencodable(&self, out: &mut Vec<u8>, seq: u64, error: &serde_json::Error, reason: DropReason) {
        out.clear();
        let msg = format!("event with seq {seq} failed to serialize: {error}");
        log::debug!(target: TARGET, "{msg}");
        self.ledger.set_last_error("encode", msg);
        self.ledger.batcher_drop(reason, 1);
    }
}
