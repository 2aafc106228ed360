//! Opening and recovering a spool. Its writer (`writer`) appends records,
//! its reader (`reader`) reads them back and acknowledges them.

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

mod reader;
mod syncer;
mod writer;

pub use reader::{Item, SpoolReader};
pub use writer::SpoolWriter;

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
    /// Every record with a smaller sequence number is durable (or was never
    /// written). Shared with the writer's sync thread, which advances it.
    durable_end: Arc<AtomicU64>,
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
        durable_end: Arc::new(AtomicU64::new(rec.next_seq)),
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
        syncer: None,
        syncer_tried: false,
        sync_error: None,
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
