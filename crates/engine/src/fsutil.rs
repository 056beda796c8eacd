//! Crash-safe file writes and the workspace lock.
//!
//! Invariant: every file the engine publishes (CAS blob, action-cache entry, stat cache, ledger
//! entry, restored output) is written to a temporary file in the destination's directory, then
//! renamed over the destination. A reader sees the old file or the new one, never half of one,
//! even if the process is killed with SIGKILL at any instruction.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// Whether `write_atomic` fsyncs file data before the rename. SIGKILL safety does not need it
/// (the page cache survives the process); power-loss durability does. On by default;
/// `XBUNDLE_FSYNC=0` turns it off (benchmarks, throwaway CI caches).
pub fn fsync_enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var_os("XBUNDLE_FSYNC").is_none_or(|value| value != "0"))
}

/// Creates a temporary file beside `destination` (creating the directory if needed).
pub fn temp_beside(destination: &Path) -> io::Result<NamedTempFile> {
    let dir = destination.parent().unwrap_or(Path::new("."));
    match tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir) {
        Ok(file) => Ok(file),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir)?;
            tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)
        }
        Err(err) => Err(err),
    }
}

/// Publishes a finished temporary file at `destination`.
pub fn persist(temp: NamedTempFile, destination: &Path) -> io::Result<()> {
    if fsync_enabled() {
        temp.as_file().sync_data()?;
    }
    temp.persist(destination).map_err(|err| err.error)?;
    Ok(())
}

/// Writes `bytes` to `destination` atomically.
pub fn write_atomic(destination: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut temp = temp_beside(destination)?;
    temp.write_all(bytes)?;
    persist(temp, destination)
}

/// Removes a file; a file that is already gone is not an error.
pub fn remove_file_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// An exclusive advisory lock on a file, released on drop (and by the OS if the process dies).
pub struct WorkspaceLock {
    _file: File,
    pub path: PathBuf,
}

impl WorkspaceLock {
    /// Takes the lock, calling `on_wait` once if another process holds it.
    pub fn acquire(path: &Path, on_wait: impl FnOnce()) -> io::Result<WorkspaceLock> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                on_wait();
                file.lock()?;
            }
            Err(fs::TryLockError::Error(err)) => return Err(err),
        }
        Ok(WorkspaceLock {
            _file: file,
            path: path.to_path_buf(),
        })
    }
}
