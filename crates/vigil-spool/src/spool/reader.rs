//! Reading records back in order, and acknowledging them.

use super::*;

/// What [`SpoolReader::read_next`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A valid record.
    Record {
        /// Its sequence number.
        seq: u64,
        /// What was written.
        payload: Vec<u8>,
    },
    /// Records written in this run that failed their checksum when read
    /// back, or whose segment file vanished (damage found at [`open`] is
    /// counted in [`Recovery::corrupt`] instead). The rest of their segment
    /// is skipped.
    Damaged {
        /// How many records were lost.
        count: u64,
    },
}

/// Reads records back in order and acknowledges them. One per spool.
#[derive(Debug)]
pub struct SpoolReader {
    pub(super) inner: Arc<Inner>,
    /// The sequence number after the last one returned (or acknowledged at open).
    pub(super) next: u64,
    /// The segment being read: its first sequence number, file and offset.
    pub(super) at: Option<(u64, File, u64)>,
    pub(super) chunk: Vec<u8>,
    pub(super) chunk_off: u64,
    pub(super) cp: Checkpoint,
    pub(super) last_checkpoint: Option<Instant>,
}

impl SpoolReader {
    /// The next record, in sequence order; `None` when the reader has caught
    /// up with the writer.
    ///
    /// # Errors
    ///
    /// [`SpoolError::Io`] when a segment cannot be opened or read; the next
    /// call tries again.
    pub fn read_next(&mut self) -> Result<Option<Item>, SpoolError> {
        loop {
            let (seg_first, seg_path, len, end_seq, live, gap) = {
                let segs = self.inner.segs();
                let current = self.at.as_ref().map(|(first, _, _)| *first);
                let seg = match current {
                    // Acknowledged and deleted while read (its records were all read).
                    Some(first) => match segs.iter().find(|s| s.first == first) {
                        Some(seg) => Some(seg),
                        None => {
                            drop(segs);
                            self.at = None;
                            continue;
                        }
                    },
                    None => segs.iter().find(|s| s.end_seq > self.next || s.live),
                };
                let Some(seg) = seg else { return Ok(None) };
                let off = self.at.as_ref().map_or(0, |(_, _, off)| *off);
                let gap = seg.gaps.iter().find(|g| g.start == off).map(|g| g.end);
                (seg.first, seg.path.clone(), seg.len, seg.end_seq, seg.live, gap)
            };
            if self.at.is_none() {
                let file = match File::open(&seg_path) {
                    Ok(file) => file,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && !live => {
                        // Gone with its directory: its records are lost. (Numbers
                        // before its first were never written to disk.)
                        let count = end_seq.saturating_sub(self.next.max(seg_first));
                        log::error!(target: TARGET, "spool {}: segment {} vanished with {count} records", self.inner.config.dir.display(), seg_path.display());
                        self.next = self.next.max(end_seq);
                        self.inner.segs().retain(|s| s.first != seg_first);
                        self.inner.used.fetch_sub(len, Ordering::Relaxed);
                        if count == 0 {
                            continue;
                        }
                        return Ok(Some(Item::Damaged { count }));
                    }
                    Err(e) => return Err(SpoolError::io("open", &seg_path, &e)),
                };
                self.at = Some((seg_first, file, 0));
                self.chunk.clear();
                self.chunk_off = 0;
            }
            if let Some(end) = gap {
                if let Some((_, _, off)) = &mut self.at {
                    *off = end;
                }
                continue;
            }
            let off = self.at.as_ref().map_or(0, |(_, _, off)| *off);
            if off >= len {
                if live {
                    return Ok(None);
                }
                self.at = None;
                self.next = self.next.max(end_seq);
                continue;
            }
            match self.read_record(off, len)? {
                Some((seq, payload, end)) => {
                    if let Some((_, _, o)) = &mut self.at {
                        *o = end;
                    }
                    if seq < self.next {
                        continue; // acknowledged before the restart
                    }
                    self.next = seq + 1;
                    return Ok(Some(Item::Record { seq, payload }));
                }
                None => {
                    let count = end_seq.saturating_sub(self.next.max(seg_first)).max(1);
                    log::error!(target: TARGET, "spool {}: {count} records in segment {seg_first} failed their checksum when read back", self.inner.config.dir.display());
                    self.at = None;
                    self.next = self.next.max(end_seq);
                    // Not readable again: the reader moves on for good.
                    if let Some(seg) = self.inner.segs().iter_mut().find(|s| s.first == seg_first) {
                        seg.gaps.push(off..seg.len);
                    }
                    return Ok(Some(Item::Damaged { count }));
                }
            }
        }
    }

    /// Reads the record at `off` (the segment's published length is `len`).
    pub(super) fn read_record(&mut self, off: u64, len: u64) -> Result<Option<(u64, Vec<u8>, u64)>, SpoolError> {
        self.ensure(off, HEADER, len)?;
        let rel = (off - self.chunk_off) as usize;
        let Some(head) = self.chunk.get(rel..rel + HEADER) else { return Ok(None) };
        let need = HEADER + u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
        if need > HEADER + MAX_RECORD_BYTES || off + need as u64 > len {
            return Ok(None);
        }
        self.ensure(off, need, len)?;
        let rel = (off - self.chunk_off) as usize;
        Ok(record::parse_at(&self.chunk, rel)
            .map(|f| (f.seq, self.chunk[f.payload].to_vec(), self.chunk_off + f.end as u64)))
    }

    /// Makes the chunk cover `[off, off + n)` (clamped to `len`).
    pub(super) fn ensure(&mut self, off: u64, n: usize, len: u64) -> Result<(), SpoolError> {
        let have_end = self.chunk_off + self.chunk.len() as u64;
        if off >= self.chunk_off && off + n as u64 <= have_end {
            return Ok(());
        }
        let want = (n.max(READ_CHUNK) as u64).min(len.saturating_sub(off)) as usize;
        self.chunk.resize(want, 0);
        self.chunk_off = off;
        let Some((first, file, _)) = &self.at else { return Ok(()) };
        let path = self.inner.config.dir.join(format!("{first:020}"));
        file.read_exact_at(&mut self.chunk, off).map_err(|e| {
            self.chunk.clear();
            SpoolError::io("read", path, &e)
        })
    }

    /// Records that every record numbered below `upto` is resolved
    /// (delivered or dropped), with `counters` to keep alongside. Writes the
    /// checkpoint when `force`, under [`SyncPolicy::EveryWrite`], or when
    /// the policy's interval has passed since the last one; then deletes
    /// segments whose records are all resolved. Returns whether it wrote.
    ///
    /// # Errors
    ///
    /// [`SpoolError::Io`] when the checkpoint cannot be written; the
    /// acknowledgement is kept and written with the next one.
    pub fn ack(
        &mut self,
        upto: u64,
        counters: &BTreeMap<String, u64>,
        now: Instant,
        force: bool,
    ) -> Result<bool, SpoolError> {
        self.cp.acked = self.cp.acked.max(upto);
        self.cp.counters.clone_from(counters);
        let interval = match self.inner.config.sync {
            SyncPolicy::EveryWrite => Duration::ZERO,
            SyncPolicy::Interval(d) => d,
            SyncPolicy::Os => OS_CHECKPOINT_INTERVAL,
        };
        let due = self.last_checkpoint.is_none_or(|t| now >= crate::later(t, interval));
        if !force && !due {
            return Ok(false);
        }
        self.cp.next_seq = self.inner.next_seq.load(Ordering::Relaxed);
        let durable = self.inner.config.sync != SyncPolicy::Os;
        checkpoint::write(&self.inner.config.dir, &self.cp, durable)?;
        self.last_checkpoint = Some(now);
        let mut freed = 0;
        self.inner.segs().retain(|s| {
            let done = !s.live && s.end_seq <= self.cp.acked;
            if done {
                // Forgotten either way: a file left behind is deleted at the next open.
                freed += s.len;
                if let Err(e) = fs::remove_file(&s.path) {
                    log::warn!(target: TARGET, "cannot delete {}: {e}", s.path.display());
                }
            }
            !done
        });
        self.inner.used.fetch_sub(freed, Ordering::Relaxed);
        Ok(true)
    }

    /// The sequence number the next record read will carry at least.
    pub fn position(&self) -> u64 {
        self.next
    }
}
