//! The checkpoint: what has been acknowledged, and the counters kept with it.
//!
//! One small file, `checkpoint`: a line `VGSCP1 <crc32c of the rest, hex>`
//! and a JSON object. Replaced atomically (written to `checkpoint.tmp`,
//! synced unless the policy is `Os`, renamed over the old one).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::SpoolError;

const FILE: &str = "checkpoint";
const TMP: &str = "checkpoint.tmp";
const TAG: &str = "VGSCP1";

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Checkpoint {
    /// Every record numbered below this is resolved.
    pub(crate) acked: u64,
    /// The writer's next sequence number when this was written.
    pub(crate) next_seq: u64,
    pub(crate) counters: BTreeMap<String, u64>,
}

/// The checkpoint, `None` when there is none yet.
pub(crate) fn read(dir: &Path) -> Result<Option<Checkpoint>, String> {
    let text = match fs::read(dir.join(FILE)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let nl = text.iter().position(|&b| b == b'\n').ok_or("no header line")?;
    let head = std::str::from_utf8(&text[..nl]).map_err(|_| "header is not UTF-8")?;
    let crc = head.strip_prefix(TAG).map(str::trim).ok_or("unknown header")?;
    let crc = u32::from_str_radix(crc, 16).map_err(|_| "bad checksum field")?;
    let body = &text[nl + 1..];
    if crc32c::crc32c(body) != crc {
        return Err("checksum mismatch".into());
    }
    serde_json::from_slice(body).map(Some).map_err(|e| e.to_string())
}

pub(crate) fn write(dir: &Path, cp: &Checkpoint, durable: bool) -> Result<(), SpoolError> {
    let tmp = dir.join(TMP);
    let path = dir.join(FILE);
    let write = || -> std::io::Result<()> {
        let body = serde_json::to_vec(cp)?;
        let mut f = File::create(&tmp)?;
        f.write_all(format!("{TAG} {:08x}\n", crc32c::crc32c(&body)).as_bytes())?;
        f.write_all(&body)?;
        if durable {
            f.sync_data()?;
        }
        fs::rename(&tmp, &path)?;
        if durable {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| SpoolError::io("checkpoint", &path, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_damage() {
        let dir = std::env::temp_dir().join(format!("vigil-spool-cp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(read(&dir), Ok(None));
        let cp = Checkpoint { acked: 42, next_seq: 50, counters: [("delivered".to_owned(), 40)].into() };
        write(&dir, &cp, true).unwrap();
        assert_eq!(read(&dir), Ok(Some(cp)));
        let mut bytes = fs::read(dir.join(FILE)).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x01;
        fs::write(dir.join(FILE), bytes).unwrap();
        assert!(read(&dir).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
