//! Opening and recovering a spool, its writer and its reader.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::checkpoint::{self, Checkpoint};
use crate::config::{SpoolConfig, SyncPolicy};
use crate::error::SpoolError;
use crate::record::{self, HEADER, MAX_RECORD_BYTES};

const TARGET: &str = "vigil::spool";
const LOCK_FILE: &str = "lock";
const ID_FILE: &str = "id";
const SEGMENT_EXT: &str = "seg";
/// How much the reader reads from a segment at a time.
const READ_CHUNK: usize = 256 * 1024;
/// How often the checkpoint is rewritten at most under [`SyncPolicy::Os`].
const OS_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// One segment file: records with sequence numbers from `first` on.
#[derive(Debug)]
struct Seg {
    first: u64,
    path: PathBuf,
    /// Bytes published: complete, valid records the reader may read.
    len: u64,
    /// The sequence number after the last published record.
    end_seq: u64,
    /// Byte ranges of damage found at recovery, skipped by the reader.
    gaps: Vec<Range<u64>>,
    /// Whether the writer still appends to it.
    live: bool,
}

#[derive(Debug)]
struct Inner {
    config: SpoolConfig,
    id: String,
    /// Held (with its `flock`) for as long as the spool is open.
    _lock: File,
    segs: Mutex<VecDeque<Seg>>,
    /// Bytes of all segments on disk.
    used: AtomicU64,
    /// Every record with a smaller sequence number is durable (or was never written).
    durable_end: AtomicU64,
    /// The writer's next sequence number.
    next_seq: AtomicU64,
}

impl Inner {
    fn segs(&self) -> MutexGuard<'_, VecDeque<Seg>> {
        // Nothing panics while holding it; a poisoned lock's data is still consistent.
        self.segs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn seg_path(&self, first: u64) -> PathBuf {
        self.config.dir.join(format!("{first:020}.{SEGMENT_EXT}"))
    }
}

/// What [`open`] found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// The spool's stable id: the same across restarts, unique per directory.
    pub id: String,
    /// Valid records not yet acknowledged: the reader returns them first.
    pub pending: u64,
    /// Records lost to damage (checksum mismatch, torn or garbled bytes),
    /// counted by the gap in sequence numbers, at least one per damaged region.
    pub corrupt: u64,
    /// Bytes of torn or damaged tails cut off the segments.
    pub truncated_bytes: u64,
    /// Segment files found.
    pub segments: usize,
    /// Every record with a smaller sequence number had been acknowledged.
    pub acked: u64,
    /// The sequence number the writer continues with.
    pub next_seq: u64,
    /// The counters stored with the last checkpoint (see [`SpoolReader::ack`]).
    pub counters: BTreeMap<String, u64>,
    /// The checkpoint was unreadable or failed its checksum: every record on
    /// disk is replayed and the counters start again from zero.
    pub checkpoint_damaged: bool,
    /// How long the scan took.
    pub elapsed: Duration,
}

/// Where a spool stands, readable from any thread.
#[derive(Debug, Clone)]
pub struct SpoolStatus {
    inner: Arc<Inner>,
}

impl SpoolStatus {
    /// The highest sequence number known durable under the sync policy, if any.
    pub fn durable_seq(&self) -> Option<u64> {
        self.inner.durable_end.load(Ordering::Acquire).checked_sub(1)
    }

    /// Bytes the segments take on disk.
    pub fn used_bytes(&self) -> u64 {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// The spool's stable id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Consumes `n` sequence numbers without writing anything, and returns
    /// them: for records kept in memory while the disk is unavailable, so that
    /// no number is given to two records in this run.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Instant;
    /// use vigil_spool::SpoolConfig;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = std::env::temp_dir().join(format!("vigil-spool-reserve-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let (mut writer, _reader, status, _) = vigil_spool::open(SpoolConfig::new(&dir))?;
    /// assert_eq!(status.reserve(2), 0..2);
    /// assert_eq!(writer.write([&b"x"[..]], Instant::now())?, 2..3);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn reserve(&self, n: u64) -> Range<u64> {
        let first = self.inner.next_seq.fetch_add(n, Ordering::Relaxed);
        first..first + n
    }

    /// Bytes that may still be written before the spool is at `max_bytes`.
    pub fn room(&self) -> u64 {
        self.inner.config.max_bytes.saturating_sub(self.used_bytes())
    }

    /// The settings it was opened with.
    pub fn config(&self) -> &SpoolConfig {
        &self.inner.config
    }
}

/// Opens (creating if needed) and recovers the spool in `config.dir()`.
///
/// Takes the directory's lock, reads the checkpoint, scans every segment,
/// cuts torn and damaged tails off, counts damaged records, and positions the
/// reader on the first record not acknowledged. Never panics on bad data.
///
/// # Errors
///
/// [`SpoolError::Config`] for settings that cannot work;
/// [`SpoolError::Locked`] when another process (or another open spool in this
/// one) holds the directory; [`SpoolError::Io`] when the directory cannot be
/// created, read or locked.
///
/// # Examples
///
/// ```
/// use std::time::Instant;
/// use vigil_spool::{Item, SpoolConfig};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("vigil-spool-doc-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// {
///     let (mut writer, _reader, _status, recovery) = vigil_spool::open(SpoolConfig::new(&dir))?;
///     assert_eq!(recovery.pending, 0);
///     writer.write([&b"hello"[..], b"world"], Instant::now())?;
///     writer.sync(Instant::now())?;
/// } // dropped without acknowledging: as after a crash
/// let (_writer, mut reader, _status, recovery) = vigil_spool::open(SpoolConfig::new(&dir))?;
/// assert_eq!(recovery.pending, 2);
/// let Some(Item::Record { seq, payload }) = reader.read_next()? else { panic!("expected a record") };
/// assert_eq!((seq, payload.as_slice()), (0, &b"hello"[..]));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
pub fn open(config: SpoolConfig) -> Result<(SpoolWriter, SpoolReader, SpoolStatus, Recovery), SpoolError> {
    config.validate()?;
    let started = Instant::now();
    let dir = config.dir.clone();
    fs::create_dir_all(&dir).map_err(|e| SpoolError::io("create_dir", &dir, &e))?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| SpoolError::io("open", &lock_path, &e))?;
    match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => return Err(SpoolError::Locked { dir }),
        Err(e) => return Err(SpoolError::io("lock", &lock_path, &e.into())),
    }
    let id = read_or_create_id(&dir)?;
    let (cp, checkpoint_damaged) = match checkpoint::read(&dir) {
        Ok(cp) => (cp.unwrap_or_default(), false),
        Err(why) => {
            log::error!(target: TARGET, "spool {}: the checkpoint is damaged ({why}); every record on disk is replayed", dir.display());
            (Checkpoint::default(), true)
        }
    };

    let mut firsts = Vec::new();
    let entries = fs::read_dir(&dir).map_err(|e| SpoolError::io("read_dir", &dir, &e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SpoolError::io("read_dir", &dir, &e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".seg") {
            let (first, end) = match stem.split_once('-') {
                Some((a, b)) => (a.parse::<u64>().ok(), b.parse::<u64>().ok()),
                None => (stem.parse::<u64>().ok(), None),
            };
            if let Some(first) = first {
                firsts.push((first, end, entry.path()));
            }
        }
    }
    firsts.sort_unstable();

    let mut rec = Recovery {
        id: id.clone(),
        pending: 0,
        corrupt: 0,
        truncated_bytes: 0,
        segments: firsts.len(),
        acked: cp.acked,
        next_seq: cp.next_seq.max(cp.acked),
        counters: cp.counters.clone(),
        checkpoint_damaged,
        elapsed: Duration::ZERO,
    };
    let mut segs = VecDeque::new();
    let mut used = 0;
    let count = firsts.len();
    for (i, (first, sealed_end, path)) in firsts.iter().cloned().enumerate() {
        // Where this segment's records end: its sealed name, else the next
        // segment's start, else (the live one at the crash) the writer's
        // number at the last checkpoint.
        let bound = sealed_end.or_else(|| firsts.get(i + 1).map(|n| n.0)).or((i + 1 == count).then_some(cp.next_seq));
        let bytes = fs::read(&path).map_err(|e| SpoolError::io("read", &path, &e))?;
        let scan = record::scan(&bytes, first);
        let end_seq = scan.records.last().map_or(first, |r| r.seq + 1);
        // Damage among records already acknowledged is history: not counted.
        let mut expect = first;
        let mut gaps = Vec::new();
        let mut prev_end = 0usize;
        for r in &scan.records {
            let start = r.payload.start - HEADER;
            if start > prev_end {
                gaps.push(prev_end as u64..start as u64);
                rec.corrupt +=
                    if expect >= cp.acked { (r.seq - expect).max(1) } else { r.seq.saturating_sub(cp.acked) };
            }
            if r.seq >= cp.acked {
                rec.pending += 1;
            }
            expect = r.seq + 1;
            prev_end = r.end;
        }
        // Records lost off the tail are numbered from `expect` on; those
        // below `acked` were resolved before.
        let lost_tail = match bound {
            Some(b) if b > expect => b - expect.max(cp.acked).min(b),
            _ if scan.tail_bytes > 0 => scan.tail_records.saturating_sub(cp.acked.saturating_sub(expect)),
            _ => 0,
        };
        rec.corrupt += lost_tail;
        if scan.tail_bytes > 0 {
            rec.truncated_bytes += scan.tail_bytes as u64;
            log::warn!(target: TARGET, "spool {}: cutting {} damaged bytes off {}", dir.display(), scan.tail_bytes, path.display());
            // Best effort: the reader stops at `valid_len` whatever the file holds.
            if let Ok(f) = OpenOptions::new().write(true).open(&path) {
                let _ = f.set_len(scan.valid_len as u64);
            }
        }
        rec.next_seq = rec.next_seq.max(end_seq).max(sealed_end.unwrap_or(0));
        if end_seq <= cp.acked {
            // Fully acknowledged: its deletion did not happen before the last stop.
            let _ = fs::remove_file(&path);
            continue;
        }
        used += scan.valid_len as u64;
        segs.push_back(Seg { first, path, len: scan.valid_len as u64, end_seq, gaps, live: false });
    }
    if rec.corrupt > 0 {
        log::error!(target: TARGET, "spool {}: {} records were damaged and are lost", dir.display(), rec.corrupt);
    }
    rec.elapsed = started.elapsed();
    let inner = Arc::new(Inner {
        config,
        id,
        _lock: lock,
        segs: Mutex::new(segs),
        used: AtomicU64::new(used),
        durable_end: AtomicU64::new(rec.next_seq),
        next_seq: AtomicU64::new(rec.next_seq),
    });
    let writer = SpoolWriter {
        inner: Arc::clone(&inner),
        active: None,
        last_sync: started,
        unsynced: false,
        buf: Vec::new(),
        written_end: rec.next_seq,
        sealed_unsynced: Vec::new(),
        dir_dirty: false,
    };
    let reader = SpoolReader {
        inner: Arc::clone(&inner),
        next: cp.acked,
        at: None,
        chunk: Vec::new(),
        chunk_off: 0,
        cp,
        last_checkpoint: None,
    };
    Ok((writer, reader, SpoolStatus { inner }, rec))
}

fn read_or_create_id(dir: &Path) -> Result<String, SpoolError> {
    let path = dir.join(ID_FILE);
    match fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(SpoolError::io("read", &path, &e)),
    }
    let id = random_id();
    let tmp = dir.join("id.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(id.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| SpoolError::io("write", &path, &e))?;
    Ok(id)
}

/// 128 random bits in hex, from the standard library's randomly seeded hasher.
fn random_id() -> String {
    let mut words = [0u64; 2];
    for (i, w) in words.iter_mut().enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_usize(i);
        if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(d.as_nanos());
        }
        *w = h.finish();
    }
    format!("{:016x}{:016x}", words[0], words[1])
}

/// Appends records. One per spool; [`open`] returns it.
///
/// Sequence numbers are assigned in order, contiguous within a segment, and
/// continue across restarts. A failed write consumes the numbers it was
/// given, so they are never reused for other data.
#[derive(Debug)]
pub struct SpoolWriter {
    inner: Arc<Inner>,
    /// The segment being appended to: its file and first sequence number.
    active: Option<(File, u64)>,
    last_sync: Instant,
    unsynced: bool,
    buf: Vec<u8>,
    /// The number after the last record written (not reserved).
    written_end: u64,
    /// Sealed segments with data not yet synced: synced with the next sync.
    sealed_unsynced: Vec<File>,
    /// A segment was created since the last sync: the directory needs one too.
    dir_dirty: bool,
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

    fn append(&mut self, payloads: &[&[u8]], seqs: Range<u64>, total: u64, now: Instant) -> Result<(), SpoolError> {
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

    fn seg_len(&self, first: u64) -> u64 {
        self.inner.segs().iter().rev().find(|s| s.first == first).map_or(0, |s| s.len)
    }

    /// Seals the active segment (its unsynced data is synced with the next
    /// sync) and opens a new one starting at `first`.
    fn rotate(&mut self, first: u64) -> Result<(), SpoolError> {
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

    fn seal(&mut self) {
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
    fn abandon_active(&mut self) {
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
    inner: Arc<Inner>,
    /// The sequence number after the last one returned (or acknowledged at open).
    next: u64,
    /// The segment being read: its first sequence number, file and offset.
    at: Option<(u64, File, u64)>,
    chunk: Vec<u8>,
    chunk_off: u64,
    cp: Checkpoint,
    last_checkpoint: Option<Instant>,
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
    fn read_record(&mut self, off: u64, len: u64) -> Result<Option<(u64, Vec<u8>, u64)>, SpoolError> {
        self.ensure(off, HEADER, len)?;
        let rel = (off - self.chunk_off) as usize;
        let Some(head) = self.chunk.get(rel..rel + HEADER) else { return Ok(None) };
        let need = HEADER + u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        if need > HEADER + MAX_RECORD_BYTES || off + need as u64 > len {
            return Ok(None);
        }
        self.ensure(off, need, len)?;
        let rel = (off - self.chunk_off) as usize;
        Ok(record::parse_at(&self.chunk, rel)
            .map(|f| (f.seq, self.chunk[f.payload].to_vec(), self.chunk_off + f.end as u64)))
    }

    /// Makes the chunk cover `[off, off + n)` (clamped to `len`).
    fn ensure(&mut self, off: u64, n: usize, len: u64) -> Result<(), SpoolError> {
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
