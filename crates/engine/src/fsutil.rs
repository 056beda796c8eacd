//! Crash safety of the engine's own files, and file locks.
//!
//! Invariant: every file the engine publishes (CAS blob, action-cache entry, stat cache, ledger
//! entry, restored output) is written to a temporary file, then renamed over the destination
//! (through [`crate::confine::TempFile`], never through a link). A reader sees the old file or
//! the new one, never half of one, even if the process is killed with SIGKILL at any
//! instruction. See [`Durability`] for power loss. [`temp_beside`] and [`persist`] do the same
//! for a file a front end names by path (`bundle.toml`, edited by `profile` commands).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::confine::Dir;

/// How hard the engine works to make cache writes survive a power loss (`XBUNDLE_FSYNC`).
///
/// Crash safety against a killed process needs no fsync at all: every write is a rename of a
/// complete temporary file, and the page cache survives the process. Against power loss, the
/// default makes a run's cache writes durable at its end (`Store::sync_published`: a few blobs
/// and entries flushed one by one with their directories, not a `syncfs(2)`, which would also
/// wait for every other program's writes; many, one `syncfs`); an entry torn by a power cut before that
/// is still never trusted, because every read verifies content against its digest (see
/// `store`). `file` fsyncs each file before its rename; `0` never syncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    Never,
    EndOfRun,
    EveryFile,
}

pub fn durability() -> Durability {
    static MODE: std::sync::OnceLock<Durability> = std::sync::OnceLock::new();
    *MODE.get_or_init(|| match std::env::var("XBUNDLE_FSYNC").as_deref() {
        Ok("0") | Ok("never") => Durability::Never,
        Ok("file") | Ok("always") => Durability::EveryFile,
        _ => Durability::EndOfRun,
    })
}

/// Flushes the file system holding the open file or directory `fd` to disk (`syncfs(2)`;
/// elsewhere an fsync of `fd`).
#[cfg(target_os = "linux")]
pub(crate) fn sync_filesystem(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs takes a valid open descriptor, which `fd` borrows for the call.
    if unsafe { libc::syncfs(fd.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn sync_filesystem(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    rustix::fs::fsync(fd).map_err(io::Error::from)
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
    if durability() == Durability::EveryFile {
        temp.as_file().sync_data()?;
    }
    temp.persist(destination).map_err(|err| err.error)?;
    Ok(())
}

/// How a [`FileLock`] is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// Several holders at once (builds sharing a cache).
    Shared,
    /// One holder (a build in its workspace, cache maintenance).
    Exclusive,
}

/// An advisory lock on a file (`flock`), released on drop (and by the OS if the process dies).
#[derive(Debug)]
pub struct FileLock {
    _file: File,
    pub path: PathBuf,
}

/// The workspace lock is a [`FileLock`] held exclusively on `<state>/lock`.
pub type WorkspaceLock = FileLock;

impl FileLock {
    /// Takes the lock on the file `name` of the directory `dir` in `mode`, calling `on_wait`
    /// once if another process holds it in a conflicting mode; while waiting, `cancelled` is
    /// polled and ends the wait with an [`io::ErrorKind::Interrupted`] error. The lock file is
    /// created if needed, never through a link and only as a regular file (see
    /// [`crate::confine::Dir::open_lock_file`]), and never removed: removing a lock file that
    /// others wait on would let two holders in.
    pub fn acquire_in(
        dir: &Dir,
        name: &str,
        mode: LockMode,
        on_wait: impl FnOnce(),
        cancelled: &dyn Fn() -> bool,
    ) -> io::Result<FileLock> {
        let file = dir.open_lock_file(name).map_err(io::Error::other)?;
        FileLock::lock(file, dir.join(name), mode, on_wait, cancelled)
    }

    fn lock(
        file: File,
        path: PathBuf,
        mode: LockMode,
        on_wait: impl FnOnce(),
        cancelled: &dyn Fn() -> bool,
    ) -> io::Result<FileLock> {
        let try_lock = |file: &File| match mode {
            LockMode::Shared => file.try_lock_shared(),
            LockMode::Exclusive => file.try_lock(),
        };
        match try_lock(&file) {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                on_wait();
                loop {
                    if cancelled() {
                        return Err(io::Error::new(
                            io::ErrorKind::Interrupted,
                            "interrupted while waiting for a lock",
                        ));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    match try_lock(&file) {
                        Ok(()) => break,
                        Err(fs::TryLockError::WouldBlock) => continue,
                        Err(fs::TryLockError::Error(err)) => return Err(err),
                    }
                }
            }
            Err(fs::TryLockError::Error(err)) => return Err(err),
        }
        Ok(FileLock { _file: file, path })
    }
}

/// Makes `destination` (a new, empty file) hold what `source` holds from its current offset:
/// a reflink (`FICLONE`, shared extents on btrfs, XFS and the like) where the file system
/// allows it, a copy otherwise. Returns whether it was a reflink.
pub fn clone_or_copy(destination: &mut File, source: &mut File) -> io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        use std::io::Seek;
        if source.stream_position()? == 0
            && rustix::fs::ioctl_ficlone(&*destination, &*source).is_ok()
        {
            destination.seek(io::SeekFrom::End(0))?;
            return Ok(true);
        }
    }
    io::copy(source, destination)?;
    Ok(false)
}
