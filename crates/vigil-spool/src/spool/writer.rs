//! Appending records: segments, rotation and the sync policy.

use super::*;

/// Appends records. One per spool; [`open`] returns it.
///
/// Sequence numbers are assigned in order, contiguous within a segment, and
/// continue across restarts. A failed write consumes the numbers it was
/// given, so they are never reused for other data.
#[derive(Debug)]
pub struct SpoolWriter {
    pub(super) inner: Arc<Inner>,
    /// The segment being appended to: its file and first sequence number.
    pub(super) active: Option<(File, u64)>,
    pub(super) last_sync: Instant,
    pub(super) unsynced: bool,
    pub(super) buf: Vec<u8>,
    /// The number after the last record written (not reserved).
    pub(super) written_end: u64,
    /// Sealed segments with data not yet synced: synced with the next sync.
    pub(super) sealed_unsynced: Vec<File>,
    /// A segment was created since the last sync: the directory needs one too.
    pub(super) dir_dirty: bool,
}

impl SpoolWriter {
    /// The sequence number the next record written will carry.
    pub fn next_seq(&self) -> u64 {
        self.inner.next_seq.load(Ordering::Relaxed)
    }

    /// Appends `payloads` as records numbered from [`next_seq`](Self::next_seq)
    /// on, with one `write`, and returns their numbers. Under
    /// [`SyncPolicy::EveryWrite`] they are synced before it returns.
    ///
    /// # Errors
    ///
    /// [`SpoolError::RecordTooLarge`] or [`SpoolError::Full`]: nothing was
    /// written and no number consumed. [`SpoolError::Io`]: the numbers are
    /// consumed, nothing of this write is readable, and the next write starts
    /// a new segment.
    pub fn write<'a>(
        &mut self,
        payloads: impl IntoIterator<Item = &'a [u8]>,
        now: Instant,
    ) -> Result<Range<u64>, SpoolError> {
        let payloads: Vec<&[u8]> = payloads.into_iter().collect();
        let mut total = 0u64;
        for p in &payloads {
            if p.len() > MAX_RECORD_BYTES {
                return Err(SpoolError::RecordTooLarge { len: p.len() });
            }
            total += record::framed_len(p.len());
        }
        let used = self.inner.used.load(Ordering::Relaxed);
        if used.saturating_add(total) > self.inner.config.max_bytes {
            return Err(SpoolError::Full { max_bytes: self.inner.config.max_bytes, used });
        }
        let n = payloads.len() as u64;
        let first = self.inner.next_seq.fetch_add(n, Ordering::Relaxed);
        let seqs = first..first + n;
        if payloads.is_empty() {
            return Ok(seqs);
        }
        let result = self.append(&payloads, seqs.clone(), total, now);
        if result.is_err() {
            self.abandon_active();
        }
        result.map(|()| seqs)
    }

    pub(super) fn append(
        &mut self,
        payloads: &[&[u8]],
        seqs: Range<u64>,
        total: u64,
        now: Instant,
    ) -> Result<(), SpoolError> {
        let active_len = self.active.as_ref().map(|(_, first)| self.seg_len(*first));
        match active_len {
            Some(len) if len == 0 || len + total <= self.inner.config.segment_bytes => {}
            _ => self.rotate(seqs.start)?,
        }
        let Some((file, first)) = &mut self.active else { unreachable!("rotate opened a segment") };
        let first = *first;
        self.buf.clear();
        for (seq, p) in seqs.clone().zip(payloads) {
            record::encode(&mut self.buf, seq, p);
        }
        let path = self.inner.seg_path(first);
        file.write_all(&self.buf).map_err(|e| SpoolError::io("write", &path, &e))?;
        {
            let mut segs = self.inner.segs();
            if let Some(seg) = segs.iter_mut().rev().find(|s| s.first == first) {
                seg.len += total;
                seg.end_seq = seqs.end;
            }
        }
        self.inner.used.fetch_add(total, Ordering::Relaxed);
        self.unsynced = true;
        self.written_end = seqs.end;
        match self.inner.config.sync {
            SyncPolicy::EveryWrite => self.sync(now)?,
            SyncPolicy::Os => self.inner.durable_end.store(seqs.end, Ordering::Release),
            SyncPolicy::Interval(_) => {}
        }
        Ok(())
    }

    pub(super) fn seg_len(&self, first: u64) -> u64 {
        self.inner.segs().iter().rev().find(|s| s.first == first).map_or(0, |s| s.len)
    }

    /// Seals the active segment (its unsynced data is synced with the next
    /// sync) and opens a new one starting at `first`.
    pub(super) fn rotate(&mut self, first: u64) -> Result<(), SpoolError> {
        self.seal();
        let path = self.inner.seg_path(first);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| SpoolError::io("create", &path, &e))?;
        // The new name must survive a power cut too: the next sync syncs the directory.
        self.dir_dirty = self.inner.config.sync != SyncPolicy::Os;
        self.inner.segs().push_back(Seg { first, path, len: 0, end_seq: first, gaps: Vec::new(), live: true });
        self.active = Some((file, first));
        Ok(())
    }

    pub(super) fn seal(&mut self) {
        let Some((file, first)) = self.active.take() else { return };
        if self.unsynced && self.inner.config.sync != SyncPolicy::Os {
            self.sealed_unsynced.push(file);
        }
        if let Some(seg) = self.inner.segs().iter_mut().rev().find(|s| s.first == first) {
            seg.live = false;
            // The name records where the segment ends, so recovery can count
            // records lost off its tail exactly. Best effort: without it,
            // recovery bounds the segment by the next one.
            let sealed = self.inner.config.dir.join(format!("{first:020}-{:020}.{SEGMENT_EXT}", seg.end_seq));
            match fs::rename(&seg.path, &sealed) {
                Ok(()) => seg.path = sealed,
                Err(e) => log::debug!(target: TARGET, "cannot rename {} on sealing: {e}", seg.path.display()),
            }
        }
    }

    /// After a failed write: cut what may have reached the file back to the
    /// published length (best effort) and seal the segment.
    pub(super) fn abandon_active(&mut self) {
        if let Some((file, first)) = &self.active {
            let len = self.seg_len(*first);
            let _ = file.set_len(len);
        }
        self.seal();
        self.unsynced = false;
    }

    /// When the next sync is due under the policy, if one is.
    pub fn sync_due(&self) -> Option<Instant> {
        self.inner.config.sync.due(self.last_sync, self.unsynced)
    }

    /// Syncs if one is due at `now`.
    ///
    /// # Errors
    ///
    /// As [`sync`](Self::sync).
    pub fn maybe_sync(&mut self, now: Instant) -> Result<(), SpoolError> {
        match self.sync_due() {
            Some(at) if at <= now => self.sync(now),
            _ => Ok(()),
        }
    }

    /// `fdatasync`s the active segment: everything written so far becomes durable.
    ///
    /// # Errors
    ///
    /// [`SpoolError::Io`]; the active segment is sealed and the next write
    /// starts a new one (what it held stays readable and may be lost to a
    /// power cut).
    pub fn sync(&mut self, now: Instant) -> Result<(), SpoolError> {
        self.last_sync = now;
        for file in std::mem::take(&mut self.sealed_unsynced) {
            if let Err(e) = file.sync_data() {
                self.unsynced = false;
                return Err(SpoolError::io("sync", &self.inner.config.dir, &e));
            }
        }
        if std::mem::take(&mut self.dir_dirty)
            && let Err(e) = File::open(&self.inner.config.dir).and_then(|d| d.sync_all())
        {
            self.unsynced = false;
            return Err(SpoolError::io("sync", &self.inner.config.dir, &e));
        }
        if let Some((file, first)) = &self.active
            && let Err(e) = file.sync_data()
        {
            let path = self.inner.seg_path(*first);
            self.seal();
            self.unsynced = false;
            return Err(SpoolError::io("sync", path, &e));
        }
        self.unsynced = false;
        self.inner.durable_end.store(self.written_end, Ordering::Release);
        Ok(())
    }
}
