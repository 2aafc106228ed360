//! Appending records: segments, rotation and the sync policy.

use super::syncer::{Job, Syncer};
use super::*;

/// Appends records. One per spool; [`open`] returns it.
///
/// Sequence numbers are assigned in order, contiguous within a segment, and
/// continue across restarts. A failed write consumes the numbers it was
/// given, so they are never reused for other data.
///
/// # About threads
///
/// Under [`SyncPolicy::Interval`], [`maybe_sync`](Self::maybe_sync) hands
/// the `fdatasync`s to a thread of the writer's own (started at the first
/// one), so writing goes on while the disk flushes; the durable position
/// ([`SpoolStatus::durable_seq`]) advances when they return. One sync is in
/// flight at a time: when the next is due before the last has returned,
/// `maybe_sync` waits for it, so durability never falls more than one
/// interval and one sync behind. The thread holds no lock on the spool; it
/// ends after its last sync once the writer is dropped.
#[derive(Debug)]
pub struct SpoolWriter {
    pub(super) inner: Arc<Inner>,
    /// The segment being appended to: its file and first sequence number.
    pub(super) active: Option<(Arc<File>, u64)>,
    pub(super) last_sync: Instant,
    pub(super) unsynced: bool,
    pub(super) buf: Vec<u8>,
    /// The number after the last record written (not reserved).
    pub(super) written_end: u64,
    /// Sealed segments with data not yet synced: synced with the next sync.
    pub(super) sealed_unsynced: Vec<(Arc<File>, PathBuf)>,
    /// A segment was created since the last sync: the directory needs one too.
    pub(super) dir_dirty: bool,
    /// The sync thread, once started; `syncer_tried` once a start was tried.
    pub(super) syncer: Option<Syncer>,
    pub(super) syncer_tried: bool,
    /// A sync thread's error met while sealing, returned by the next sync.
    pub(super) sync_error: Option<SpoolError>,
}

/// Sync jobs in flight at most: past it, the writer waits for the disk.
const MAX_IN_FLIGHT: usize = 4;

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
            Some(len) if len == 0 || len + total <= self.inner.config.segment_bytes_limit() => {}
            _ => self.rotate(seqs.start)?,
        }
        let Some((file, first)) = &mut self.active else { unreachable!("rotate opened a segment") };
        let first = *first;
        self.buf.clear();
        self.buf.reserve(usize::try_from(total).unwrap_or(0));
        for (seq, p) in seqs.clone().zip(payloads) {
            record::encode(&mut self.buf, seq, p);
        }
        let path = self.inner.seg_path(first);
        (&**file).write_all(&self.buf).map_err(|e| SpoolError::io("write", &path, &e))?;
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
        self.active = Some((Arc::new(file), first));
        Ok(())
    }

    pub(super) fn seal(&mut self) {
        let Some((file, first)) = self.active.take() else { return };
        let (path, end) = {
            let mut segs = self.inner.segs();
            match segs.iter_mut().rev().find(|s| s.first == first) {
                Some(seg) => {
                    seg.live = false;
                    // The name records where the segment ends, so recovery can count
                    // records lost off its tail exactly. Best effort: without it,
                    // recovery bounds the segment by the next one.
                    let sealed = self.inner.config.dir.join(format!("{first:020}-{:020}.{SEGMENT_EXT}", seg.end_seq));
                    match fs::rename(&seg.path, &sealed) {
                        Ok(()) => seg.path = sealed,
                        Err(e) => log::debug!(target: TARGET, "cannot rename {} on sealing: {e}", seg.path.display()),
                    }
                    (seg.path.clone(), seg.end_seq)
                }
                None => (self.inner.seg_path(first), self.written_end),
            }
        };
        if !self.unsynced || self.inner.config.sync == SyncPolicy::Os {
            return;
        }
        self.sealed_unsynced.push((file, path));
        // Under the interval policy the sync thread flushes it now (with any
        // sealed before it), while the writer fills the next segment.
        if matches!(self.inner.config.sync, SyncPolicy::Interval(_)) {
            let dir = Some(self.inner.config.dir.clone());
            if let Err(e) = self.hand_over(|files| Job { files, dir, end }) {
                self.sync_error.get_or_insert(e);
            }
        }
    }

    /// Hands the sealed segments not yet synced, and what `job` adds, to the
    /// sync thread (started at the first call), after waiting until fewer
    /// than [`MAX_IN_FLIGHT`] jobs are in flight. Without a thread, leaves
    /// them for [`sync`](Self::sync). The error is an earlier job's.
    fn hand_over(&mut self, job: impl FnOnce(Vec<(Arc<File>, PathBuf)>) -> Job) -> Result<bool, SpoolError> {
        if self.syncer.is_none() && !self.syncer_tried {
            self.syncer_tried = true;
            self.syncer = Syncer::start(Arc::clone(&self.inner.durable_end), self.inner.config.dir.clone());
        }
        let Some(syncer) = &mut self.syncer else { return Ok(false) };
        let earlier = syncer.collect(MAX_IN_FLIGHT - 1);
        match syncer.submit(job(std::mem::take(&mut self.sealed_unsynced))) {
            Ok(()) => earlier.map(|()| true),
            Err(job) => {
                // The thread is gone: the files wait for the next sync here.
                self.syncer = None;
                self.sealed_unsynced = job.files.into_iter().filter(|(f, _)| !self.is_active(f)).collect();
                self.dir_dirty |= job.dir.is_some();
                earlier.map(|()| false)
            }
        }
    }

    fn is_active(&self, file: &Arc<File>) -> bool {
        self.active.as_ref().is_some_and(|(a, _)| Arc::ptr_eq(a, file))
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

    /// Starts a sync if one is due at `now`. Under [`SyncPolicy::Interval`]
    /// it runs on the writer's sync thread (see "About threads"):
    /// [`SpoolStatus::durable_seq`] covers what was written before this call
    /// once it returns. Waits only when the previous sync has not returned yet.
    ///
    /// # Errors
    ///
    /// As [`sync`](Self::sync), for this sync or an earlier one that failed
    /// on the sync thread.
    pub fn maybe_sync(&mut self, now: Instant) -> Result<(), SpoolError> {
        self.collect(usize::MAX)?;
        match self.sync_due() {
            Some(at) if at <= now => {}
            _ => return Ok(()),
        }
        if !matches!(self.inner.config.sync, SyncPolicy::Interval(_)) {
            return self.sync(now);
        }
        let active = self.active.as_ref().map(|(file, first)| (Arc::clone(file), self.inner.seg_path(*first)));
        let (dir, end) = (self.dir_dirty.then(|| self.inner.config.dir.clone()), self.written_end);
        let handed = self.hand_over(|mut files| {
            files.extend(active);
            Job { files, dir, end }
        });
        match handed {
            Ok(true) => {
                self.dir_dirty = false;
                self.last_sync = now;
                self.unsynced = false;
                Ok(())
            }
            Ok(false) => self.sync(now),
            Err(e) => Err(self.sync_failed(e)),
        }
    }

    /// Collects the sync thread's outcomes, waiting until at most `keep`
    /// jobs are in flight; an error from any of them (or kept from a
    /// hand-over) is returned once.
    fn collect(&mut self, keep: usize) -> Result<(), SpoolError> {
        let outcome = self.syncer.as_mut().map_or(Ok(()), |s| s.collect(keep));
        match self.sync_error.take().map_or(outcome, Err) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.sync_failed(e)),
        }
    }

    /// After a sync failed: the active segment is sealed (the next write
    /// starts a new one); what it holds stays readable.
    fn sync_failed(&mut self, error: SpoolError) -> SpoolError {
        self.unsynced = false;
        self.seal();
        error
    }

    /// `fdatasync`s the active segment on the caller's thread (after the
    /// sync thread's sync in flight, if any): everything written so far is
    /// durable when it returns.
    ///
    /// # Errors
    ///
    /// [`SpoolError::Io`]; the active segment is sealed and the next write
    /// starts a new one (what it held stays readable and may be lost to a
    /// power cut).
    pub fn sync(&mut self, now: Instant) -> Result<(), SpoolError> {
        self.last_sync = now;
        self.collect(0)?;
        for (file, path) in std::mem::take(&mut self.sealed_unsynced) {
            if let Err(e) = file.sync_data() {
                self.unsynced = false;
                return Err(SpoolError::io("sync", path, &e));
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
        self.inner.durable_end.fetch_max(self.written_end, Ordering::AcqRel);
        Ok(())
    }
}
