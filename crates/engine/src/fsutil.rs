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

/// How hard the engine works to make its writes survive a power loss (`XBUNDLE_FSYNC`).
///
/// Crash safety against a killed process needs no flush at all: every write is a rename of a
/// complete temporary file, or an append to the action cache's pack that is found only through
/// an index line written after it and is checked when read (see the `acpack` module), and the
/// page cache survives the process. A power cut is different:
/// writes not yet on disk are lost, or torn (a file whose size and times were written but not
/// its bytes). Nothing torn is trusted in any mode but [`Durability::Never`]:
/// - every read of the cache verifies what it reads (an action entry against the digest in its
///   header, a blob against its name), so a torn entry or blob is a miss, never an output;
/// - what a workspace's state records about the stat of files (the stat cache and its
///   listings, which vouch for outputs and inputs without reading them) is trusted only if no
///   reboot came since it may have gone unflushed: the first run of each boot writes, before
///   it changes anything, a mark naming this boot in the state directory ([`BootMark`]); a run
///   that finds the mark of another boot, or stats with no mark at all, hashes everything again
///   instead of trusting the old stats. The mark itself needs no flush: only a run of this
///   boot can write this boot's name, and what a power cut can make of it (the mark of an
///   earlier boot, a torn one, none) is never this boot's after the reboot.
///
/// The modes differ in what survives a power cut, not in what is trusted after one:
/// - [`Durability::Boot`], the default where the system names its boots (Linux): nothing is
///   flushed (the writes reach the disk when the kernel writes them back, as ninja's and
///   cargo's do); after a reboot the first run re-hashes the work tree, and cache entries lost
///   or torn are misses.
/// - `end` ([`Durability::EndOfRun`], the default elsewhere): also makes a run's cache writes
///   durable at its end (`Store::sync_published`: a few blobs and entries flushed one by one
///   with their directories, not a `syncfs(2)`, which would also wait for every other
///   program's writes; many, one `syncfs`).
/// - `file` ([`Durability::EveryFile`]): fsyncs each file before its rename, and each entry
///   appended to the action cache's pack before the index line naming it, then that line.
/// - `0` ([`Durability::Never`]): no flush and no mark: for a machine whose disk does not
///   outlive a power cut (a CI runner); on any other, stats recorded before a power cut are
///   trusted after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    Never,
    Boot,
    EndOfRun,
    EveryFile,
}

pub fn durability() -> Durability {
    static MODE: std::sync::OnceLock<Durability> = std::sync::OnceLock::new();
    *MODE.get_or_init(|| match std::env::var("XBUNDLE_FSYNC").as_deref() {
        Ok("0") | Ok("never") => Durability::Never,
        Ok("file") | Ok("always") => Durability::EveryFile,
        Ok("end") => Durability::EndOfRun,
        _ if boot_id().is_some() => Durability::Boot,
        _ => Durability::EndOfRun,
    })
}

/// The name the kernel gave this boot of the machine (Linux: `/proc/sys/kernel/random/boot_id`,
/// a random UUID drawn at each boot; a container sees its host's, whose page cache it shares),
/// or `None` where there is none to read.
pub fn boot_id() -> Option<&'static str> {
    static ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let id = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let id = id.trim_end_matches('\n');
        let uuid = id.len() == 36
            && id
                .bytes()
                .all(|byte| byte == b'-' || byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
        uuid.then(|| id.to_string())
    })
    .as_deref()
}

/// The file of a state directory that names the last boot during which the engine wrote there
/// (and into the work tree it describes) without flushing: `xbundle-boot-v1 <boot id>`.
pub const BOOT_MARK: &str = "boot";

const BOOT_MARK_HEADER: &str = "xbundle-boot-v1 ";

/// Whether runs mark the boot they write in (see [`Durability`]): in every mode but
/// [`Durability::Never`], where the system names its boots.
pub fn keeps_marks() -> bool {
    durability() != Durability::Never && boot_id().is_some()
}

/// What a state directory's [`BOOT_MARK`] says, read once per run (see [`Durability`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootMark {
    /// This boot's: what the directory records is as this boot's writes left it.
    Current,
    /// Another boot's, or unreadable as a mark: its writes may have been lost or torn since.
    Foreign,
    /// None: a new directory, or one written by a version before marks or with
    /// [`Durability::Never`], or where the system names no boot.
    Absent,
}

impl BootMark {
    /// Reads the mark of the state directory `dir`.
    pub fn read(dir: &Dir) -> BootMark {
        match dir.read_file(BOOT_MARK, 256) {
            Ok(None) => BootMark::Absent,
            Ok(Some(bytes)) => {
                let current = boot_id().is_some_and(|id| {
                    bytes.strip_prefix(BOOT_MARK_HEADER.as_bytes()) == Some(id.as_bytes())
                });
                if current {
                    BootMark::Current
                } else {
                    BootMark::Foreign
                }
            }
            Err(_) => BootMark::Foreign,
        }
    }

    /// Whether the stats the directory records may be trusted: under this boot's mark; with
    /// no mark, only where no marks are kept ([`keeps_marks`]), since stats a version before
    /// marks (or `XBUNDLE_FSYNC=0`) recorded were never flushed.
    pub fn trusted(self) -> bool {
        match self {
            BootMark::Current => true,
            BootMark::Foreign => false,
            BootMark::Absent => !keeps_marks(),
        }
    }

    /// Makes the mark of `dir` name this boot, before the run writes anything that a later one
    /// would trust for its stat (see [`Durability`]): written to a temporary file and renamed,
    /// not flushed (see [`Durability`] for why none is needed). Nothing to do when it already
    /// does (every run of a boot but the first), with [`Durability::Never`], or with no boot to
    /// name.
    pub fn make_current(self, dir: &Dir) -> io::Result<()> {
        let Some(id) = boot_id() else {
            return Ok(());
        };
        if self == BootMark::Current || !keeps_marks() {
            return Ok(());
        }
        let mut temp = dir.temp_file().map_err(io::Error::other)?;
        {
            use std::io::Write;
            temp.file()
                .write_all(format!("{BOOT_MARK_HEADER}{id}").as_bytes())?;
        }
        temp.finish(0o644)?;
        temp.publish_into(dir, BOOT_MARK)
            .map_err(io::Error::other)?;
        Ok(())
    }
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

/// The number `n` of a name `<prefix><n>` when it is exactly as `format!("{prefix}{n}")` writes
/// it (`bodies-007` is not such a name, so it is never taken, or removed, as one).
pub(crate) fn numbered_name(name: &str, prefix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?;
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number: u64 = digits.parse().ok()?;
    (number.to_string() == digits).then_some(number)
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
