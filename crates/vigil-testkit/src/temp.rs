//! A scratch directory removed on drop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A directory under the system's temp dir, unique per process and call,
/// removed (with everything in it) on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Makes a fresh, empty directory whose name contains `name`.
    ///
    /// # Panics
    ///
    /// Panics if the directory cannot be made.
    ///
    /// ```
    /// let dir = vigil_testkit::TempDir::new("doc");
    /// assert!(dir.root().is_dir());
    /// ```
    pub fn new(name: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("vigil-test-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.0
    }

    /// The path of `name` inside the directory (not created).
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes the file `name` atomically (write a sibling, rename over it),
    /// so that a sink polling the file never sees it half written, and
    /// returns its path.
    ///
    /// # Panics
    ///
    /// Panics if the file cannot be written.
    ///
    /// ```
    /// let dir = vigil_testkit::TempDir::new("doc-write");
    /// let path = dir.write("a.txt", "hello");
    /// assert_eq!(std::fs::read_to_string(path).unwrap(), "hello");
    /// ```
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        write_atomically(&path, contents.as_ref());
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `path` atomically (write a sibling, rename over it), so that a
/// sink polling the file never sees it half written.
///
/// # Panics
///
/// Panics if the file cannot be written or renamed.
///
/// ```
/// let dir = vigil_testkit::TempDir::new("doc-atomic");
/// let path = dir.path("trust.pem");
/// vigil_testkit::write_atomically(&path, b"new");
/// assert_eq!(std::fs::read(&path).unwrap(), b"new");
/// ```
pub fn write_atomically(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename into place");
}
