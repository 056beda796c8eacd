//! Confined paths: every write and delete the engine makes in a work tree goes through here.
//!
//! A [`Dir`] is an open directory handle (the workspace root, or a directory below it reached
//! through this module). Paths given to its methods are relative to it, `/`-separated, and
//! resolved **one component at a time** with `openat(O_NOFOLLOW | O_DIRECTORY)`, so a symbolic
//! link is never followed on the way: a link where a directory is expected is an error that names
//! the path ([`ConfineError::Symlink`]), never a detour into the link's target. The last
//! component is acted on relative to its parent's handle (`unlinkat`, `renameat`, `mkdirat`,
//! `fstatat(AT_SYMLINK_NOFOLLOW)`), so removing or replacing a link removes or replaces the link
//! itself, never what it points to.
//!
//! **Invariant:** for any tree contents, including links that are created, swapped or removed
//! while an operation runs, an operation of a [`Dir`] opened at `root` only ever creates,
//! replaces or removes directory entries whose parent directory is `root` or a real directory
//! reached from it without following a link. Nothing outside `root` is written or deleted.
//!
//! Paths are refused before any system call when they are absolute, hold an empty, `.` or `..`
//! component, a NUL byte, or (given as bytes) are not valid UTF-8 ([`check_relative`],
//! [`check_relative_bytes`]). Names that are not UTF-8 are reported escaped (`src/\xff.txt`, see
//! [`escape`]).
//!
//! Reading: a task's input files are opened beneath its working directory without following a
//! link ([`Dir::open_to_read`]; an input that is a link to a file inside the tree is read
//! through it, as the walk checked); outputs are read through ordinary paths. What the walk
//! ([`Dir::walk`]) reports never includes anything reached through a link to a directory.

use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::statcache::FileStat;

/// A path this module refuses, or an operation that failed; every variant names the path
/// (relative to the root the [`Dir`] was opened at).
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("`{path}` is not a relative path inside the workspace ({reason})")]
    Invalid { path: String, reason: &'static str },
    #[error(
        "`{path}` is a symbolic link where a directory is expected; xbundle never follows a link to a directory in a task's paths (replace the link by a directory, or change the task's paths)"
    )]
    Symlink { path: String },
    #[error("`{path}` is not a directory")]
    NotDirectory { path: String },
    #[error("`{path}` is a directory, not a file")]
    IsDirectory { path: String },
    #[error("`{path}` is {what}, not a regular file")]
    NotRegular { path: String, what: &'static str },
    #[error("`{path}` holds more than {limit} bytes")]
    TooLarge { path: String, limit: u64 },
    #[error("`{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl ConfineError {
    fn io(path: &str, errno: Errno) -> ConfineError {
        ConfineError::Io {
            path: path.to_string(),
            source: errno.into(),
        }
    }

    /// The path the error names.
    pub fn path(&self) -> &str {
        match self {
            ConfineError::Invalid { path, .. }
            | ConfineError::Symlink { path }
            | ConfineError::NotDirectory { path }
            | ConfineError::IsDirectory { path }
            | ConfineError::NotRegular { path, .. }
            | ConfineError::TooLarge { path, .. }
            | ConfineError::Io { path, .. } => path,
        }
    }

    /// The same error naming `path(self.path())` instead.
    fn renamed(mut self, rename: impl FnOnce(&str) -> String) -> ConfineError {
        let new = rename(self.path());
        match &mut self {
            ConfineError::Invalid { path, .. }
            | ConfineError::Symlink { path }
            | ConfineError::NotDirectory { path }
            | ConfineError::IsDirectory { path }
            | ConfineError::NotRegular { path, .. }
            | ConfineError::TooLarge { path, .. }
            | ConfineError::Io { path, .. } => *path = new,
        }
        self
    }
}

/// What a file type is, in words (for [`ConfineError::NotRegular`]).
fn kind_words(file_type: FileType) -> &'static str {
    match file_type {
        FileType::Symlink => "a symbolic link",
        FileType::Directory => "a directory",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice | FileType::BlockDevice => "a device",
        _ => "not a file",
    }
}

/// Checks that `path` is a normalized relative path: not empty, not absolute, no empty, `.` or
/// `..` component, no NUL byte.
pub fn check_relative(path: &str) -> Result<(), ConfineError> {
    let reason = if path.is_empty() {
        Some("empty path")
    } else if path.starts_with('/') {
        Some("absolute path")
    } else if path.contains('\0') {
        Some("NUL byte")
    } else {
        path.split('/').find_map(|component| match component {
            "" => Some("empty component"),
            "." => Some("`.` component"),
            ".." => Some("`..` component"),
            _ => None,
        })
    };
    match reason {
        Some(reason) => Err(ConfineError::Invalid {
            path: path.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// [`check_relative`] for a path given as bytes; a path that is not UTF-8 is refused (escaped in
/// the error).
pub fn check_relative_bytes(path: &[u8]) -> Result<&str, ConfineError> {
    let text = std::str::from_utf8(path).map_err(|_| ConfineError::Invalid {
        path: escape(path),
        reason: "not valid UTF-8",
    })?;
    check_relative(text)?;
    Ok(text)
}

/// Whether `name` is a temporary file's name this engine gives ([`Dir::temp_file`]:
/// `.tmp-xbundle-…`) or earlier versions gave (`.tmp-` and six letters or digits): cleaning up
/// removes only those, never another file that merely starts with `.tmp-`.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with(".tmp-xbundle-")
        || (name.len() == 11
            && name
                .strip_prefix(".tmp-")
                .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_alphanumeric())))
}

/// A path for messages: valid UTF-8 as is, every other byte as `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        for byte in chunk.invalid() {
            text.push_str(&format!("\\x{byte:02x}"));
        }
    }
    text
}

/// What a directory entry is, as seen without following it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A socket, fifo or device.
    Other,
}

impl Kind {
    fn of(file_type: FileType) -> Option<Kind> {
        Some(match file_type {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            FileType::Unknown => return None,
            _ => Kind::Other,
        })
    }
}

/// One entry met by [`Dir::walk`].
pub struct Entry<'a> {
    /// Relative to the directory the walk was called on (raw bytes: names need not be UTF-8).
    pub relative: &'a [u8],
    pub kind: Kind,
    parent: BorrowedFd<'a>,
    name: &'a CStr,
}

impl Entry<'_> {
    /// `fstatat` of the entry relative to its (already open) directory, not following a link.
    /// An entry that is no longer of the kind it was listed as (replaced since its directory
    /// was read, or a listing kept across runs that is not the directory's) is an error, never
    /// a stat of something else (a link's own stat taken for a file's).
    pub fn stat(&self) -> io::Result<FileStat> {
        let stat = rustix::fs::statat(self.parent, self.name, AtFlags::SYMLINK_NOFOLLOW)?;
        let found = Kind::of(FileType::from_raw_mode(stat.st_mode)).unwrap_or(Kind::Other);
        if found != self.kind {
            return Err(io::Error::other(format!(
                "it is {}, not what its directory listed; run again (if this repeats, remove \
                 .xbundle/state/listings)",
                kind_words(FileType::from_raw_mode(stat.st_mode))
            )));
        }
        Ok(FileStat::from_stat(&stat))
    }

    /// The relative path as a `Path` (for glob matching on raw bytes).
    pub fn relative_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(self.relative))
    }
}

/// Whether [`Dir::walk`] enters a directory it met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    Enter,
    Skip,
}

/// How [`Dir::link_open_file`] names the open file to link.
#[derive(Clone, Copy, Debug)]
enum LinkFrom {
    /// The handle itself (`AT_EMPTY_PATH`).
    Handle,
    /// Its `/proc/self/fd` entry, followed.
    Proc,
}

/// The directory holding a path's last component: this one, or one opened below it.
enum Parent<'a> {
    This(&'a Dir),
    Opened(Dir),
}

impl std::ops::Deref for Parent<'_> {
    type Target = Dir;

    fn deref(&self) -> &Dir {
        match self {
            Parent::This(dir) => dir,
            Parent::Opened(dir) => dir,
        }
    }
}

/// An open directory, the anchor of confined operations (see the module docs).
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    /// Relative to the root this handle was reached from ("" for the root itself).
    relative: String,
    /// Absolute path, for reading and for messages.
    path: PathBuf,
}

/// Opening a file to read: no link followed at the last component, never waiting on a FIFO.
const READ_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Names of temporary files made by [`Dir::write_file`] in the destination's directory.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Dir {
    /// Opens the root of a confined tree. `path` itself is trusted (it is the workspace the user
    /// chose), so links in it are followed; nothing below it is.
    pub fn open_root(path: &Path) -> Result<Dir, ConfineError> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| ConfineError::io(&path.display().to_string(), errno))?;
        Ok(Dir {
            fd,
            relative: String::new(),
            path: path.to_path_buf(),
        })
    }

    /// Absolute path of this directory (for reading and messages, never for writing).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Path of this directory relative to the root ("" for the root).
    pub fn relative(&self) -> &str {
        &self.relative
    }

    /// `relative` below this directory, as a root-relative path for messages.
    pub(crate) fn display(&self, relative: &str) -> String {
        match (self.relative.is_empty(), relative.is_empty()) {
            (true, _) => relative.to_string(),
            (false, true) => self.relative.clone(),
            (false, false) => format!("{}/{relative}", self.relative),
        }
    }

    /// The absolute path of `relative` below this directory (for reading only).
    pub fn join(&self, relative: &str) -> PathBuf {
        if relative.is_empty() {
            self.path.clone()
        } else {
            self.path.join(relative)
        }
    }

    fn child(&self, fd: OwnedFd, relative: &str) -> Dir {
        Dir {
            fd,
            relative: self.display(relative),
            path: self.join(relative),
        }
    }

    /// Opens the directory `relative` (the empty path is this directory). `Ok(None)` when it does
    /// not exist; an error when a component is a link or not a directory.
    pub fn open_dir(&self, relative: &str) -> Result<Option<Dir>, ConfineError> {
        Ok(self
            .open_dir_fd(relative)?
            .map(|fd| self.child(fd, relative)))
    }

    /// The directory `relative` (not empty) opened as [`Dir::open_dir`] opens it, when it is
    /// one; `None` when it is not, is missing or cannot be opened: nothing is asked about why
    /// (the caller asks what is there, as it would have without this try).
    pub fn try_open_dir(&self, relative: &str) -> Option<OpenDir> {
        check_relative(relative).ok()?;
        self.open_components(relative, |_, _, _, _| ())
            .ok()
            .flatten()
            .map(OpenDir)
    }

    /// [`Dir::open_dir`]'s handle alone.
    fn open_dir_fd(&self, relative: &str) -> Result<Option<OwnedFd>, ConfineError> {
        if relative.is_empty() {
            // A new open file description: a `dup` would share the read position of walks.
            let fd = rustix::fs::openat(&self.fd, ".", DIR_FLAGS, Mode::empty())
                .map_err(|errno| ConfineError::io(&self.relative, errno))?;
            return Ok(Some(fd));
        }
        check_relative(relative)?;
        self.open_components(relative, |parent, component, prefix, errno| {
            self.classify(parent, component, prefix, errno)
        })
    }

    /// Opens the checked, non-empty path `relative` as a directory, component by component
    /// with [`DIR_FLAGS`] (no link followed). `Ok(None)` when a component is missing; any
    /// other failure is what `failed` makes of it, given the parent, the component, the path
    /// up to it and the error.
    fn open_components<E>(
        &self,
        relative: &str,
        failed: impl FnOnce(BorrowedFd<'_>, &str, &str, Errno) -> E,
    ) -> Result<Option<OwnedFd>, E> {
        let mut current: Option<OwnedFd> = None;
        let mut end = 0;
        for component in relative.split('/') {
            end += component.len();
            let parent = current.as_ref().map_or(self.fd.as_fd(), AsFd::as_fd);
            match rustix::fs::openat(parent, component, DIR_FLAGS, Mode::empty()) {
                Ok(fd) => current = Some(fd),
                Err(Errno::NOENT) => return Ok(None),
                Err(errno) => return Err(failed(parent, component, &relative[..end], errno)),
            }
            end += 1;
        }
        Ok(Some(current.expect("a relative path has a component")))
    }

    /// Why opening `name` (reached as `prefix`) as a directory failed.
    fn classify(
        &self,
        parent: BorrowedFd<'_>,
        name: &str,
        prefix: &str,
        errno: Errno,
    ) -> ConfineError {
        let path = self.display(prefix);
        if errno == Errno::LOOP || errno == Errno::NOTDIR {
            match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink => {
                    return ConfineError::Symlink { path };
                }
                Ok(_) => return ConfineError::NotDirectory { path },
                Err(_) => {}
            }
        }
        ConfineError::io(&path, errno)
    }

    /// The directory holding `relative` and the last component's name; `Ok(None)` when the
    /// parent does not exist. A plain name's directory is this one (no new handle: `statat`,
    /// `openat` and `unlinkat` share no read position).
    fn parent_of<'s, 'p>(
        &'s self,
        relative: &'p str,
    ) -> Result<Option<(Parent<'s>, &'p str)>, ConfineError> {
        check_relative(relative)?;
        match relative.rsplit_once('/') {
            None => Ok(Some((Parent::This(self), relative))),
            Some((parent, name)) => Ok(self
                .open_dir(parent)?
                .map(|dir| (Parent::Opened(dir), name))),
        }
    }

    /// Creates the directory `relative` and its missing parents (never through a link) and opens
    /// it.
    pub fn create_dir_all(&self, relative: &str) -> Result<Dir, ConfineError> {
        if relative.is_empty() {
            return self
                .open_dir("")
                .map(|dir| dir.expect("this directory exists"));
        }
        check_relative(relative)?;
        let mut current: Option<OwnedFd> = None;
        let mut end = 0;
        for component in relative.split('/') {
            end += component.len();
            let parent = current.as_ref().map_or(self.fd.as_fd(), AsFd::as_fd);
            let opened = match rustix::fs::openat(parent, component, DIR_FLAGS, Mode::empty()) {
                Err(Errno::NOENT) => {
                    match rustix::fs::mkdirat(parent, component, Mode::from_raw_mode(0o777)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(errno) => {
                            return Err(ConfineError::io(&self.display(&relative[..end]), errno));
                        }
                    }
                    rustix::fs::openat(parent, component, DIR_FLAGS, Mode::empty())
                }
                other => other,
            };
            match opened {
                Ok(fd) => current = Some(fd),
                Err(errno) => {
                    return Err(self.classify(parent, component, &relative[..end], errno));
                }
            }
            end += 1;
        }
        let fd = current.expect("a relative path has a component");
        Ok(self.child(fd, relative))
    }

    /// What `relative` is, without following a link at any component; `Ok(None)` when it does
    /// not exist.
    pub fn lstat(&self, relative: &str) -> Result<Option<(Kind, FileStat)>, ConfineError> {
        let Some((parent, name)) = self.parent_of(relative)? else {
            return Ok(None);
        };
        match rustix::fs::statat(&parent.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => {
                let kind = Kind::of(FileType::from_raw_mode(stat.st_mode)).unwrap_or(Kind::Other);
                Ok(Some((kind, FileStat::from_stat(&stat))))
            }
            Err(Errno::NOENT) => Ok(None),
            Err(errno) => Err(ConfineError::io(&self.display(relative), errno)),
        }
    }

    /// Removes the file (or link, never its target) at `relative`. `Ok(false)` when it (or its
    /// directory) does not exist; a directory there is an error.
    pub fn remove_file(&self, relative: &str) -> Result<bool, ConfineError> {
        let Some((parent, name)) = self.parent_of(relative)? else {
            return Ok(false);
        };
        match rustix::fs::unlinkat(&parent.fd, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(Errno::ISDIR) | Err(Errno::PERM) if self.is_dir(&parent, name) => {
                Err(ConfineError::IsDirectory {
                    path: self.display(relative),
                })
            }
            Err(errno) => Err(ConfineError::io(&self.display(relative), errno)),
        }
    }

    /// Gives the open regular file `file` a second name, `name`, in this directory: a hard
    /// link made from the handle (`linkat` with `AT_EMPTY_PATH`: Linux 6.10 allows it to the
    /// process that opened the file, root always), else through `/proc/self/fd`, so the file
    /// that was opened (and read) is the one linked, whatever its path leads to by now. Nothing
    /// is replaced: `Ok(false)` when `name` exists already. Fails where hard links cannot be
    /// made (another file system, a file of another user under `protected_hardlinks`, neither
    /// way open).
    pub fn link_open_file(&self, file: &File, name: &str) -> Result<bool, ConfineError> {
        check_relative(name)?;
        if name.contains('/') {
            return Err(ConfineError::io(&self.display(name), Errno::INVAL));
        }
        // Refused by a kernel before 6.10 to a process without CAP_DAC_READ_SEARCH (ENOENT),
        // or not known to it (EINVAL): the path through /proc, which any kernel follows, and
        // from then on only that way once it worked where the handle did not (one failed call
        // per output otherwise). A file with no name left fails both ways (ENOENT).
        static HANDLE_REFUSED: std::sync::atomic::AtomicBool =
            std::sync::atomic::AtomicBool::new(false);
        let by_handle = if HANDLE_REFUSED.load(Ordering::Relaxed) {
            Err(Errno::NOENT)
        } else {
            self.link_by(LinkFrom::Handle, file, name)
        };
        match by_handle {
            Err(refused @ (Errno::NOENT | Errno::INVAL)) => {
                let by_proc = self.link_by(LinkFrom::Proc, file, name);
                if by_proc.is_ok() {
                    HANDLE_REFUSED.store(true, Ordering::Relaxed);
                }
                // Neither way: the handle's answer, unless /proc said more.
                by_proc.map_err(|errno| {
                    if errno == Errno::NOENT {
                        refused
                    } else {
                        errno
                    }
                })
            }
            done => done,
        }
        .map_err(|errno| ConfineError::io(&self.display(name), errno))
    }

    /// One way of [`Dir::link_open_file`]: `Ok(false)` when `name` exists.
    fn link_by(&self, from: LinkFrom, file: &File, name: &str) -> rustix::io::Result<bool> {
        use std::os::fd::AsRawFd;
        let result = match from {
            LinkFrom::Handle => rustix::fs::linkat(file, "", &self.fd, name, AtFlags::EMPTY_PATH),
            LinkFrom::Proc => rustix::fs::linkat(
                rustix::fs::CWD,
                format!("/proc/self/fd/{}", file.as_raw_fd()).as_str(),
                &self.fd,
                name,
                AtFlags::SYMLINK_FOLLOW,
            ),
        };
        match result {
            Ok(()) => Ok(true),
            Err(Errno::EXIST) => Ok(false),
            Err(errno) => Err(errno),
        }
    }

    /// Removes the name `name` of this directory if it is still the file `inode` (the undoing
    /// of a [`Dir::link_open_file`]); anything else there is left alone.
    pub fn unlink_if_inode(&self, name: &str, inode: u64) -> Result<bool, ConfineError> {
        match self.lstat(name)? {
            Some((Kind::File, stat)) if stat.inode == inode => self.remove_file(name),
            _ => Ok(false),
        }
    }

    /// Removes the directory `relative` if it is empty; `Ok(false)` when it is missing or not
    /// empty.
    pub fn remove_empty_dir(&self, relative: &str) -> Result<bool, ConfineError> {
        let Some((parent, name)) = self.parent_of(relative)? else {
            return Ok(false);
        };
        match rustix::fs::unlinkat(&parent.fd, name, AtFlags::REMOVEDIR) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) | Err(Errno::NOTEMPTY) | Err(Errno::EXIST) => Ok(false),
            Err(Errno::NOTDIR) => {
                Err(self.classify(parent.fd.as_fd(), name, relative, Errno::NOTDIR))
            }
            Err(errno) => Err(ConfineError::io(&self.display(relative), errno)),
        }
    }

    fn is_dir(&self, parent: &Dir, name: &str) -> bool {
        rustix::fs::statat(&parent.fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|stat| FileType::from_raw_mode(stat.st_mode) == FileType::Directory)
    }

    /// Moves the file `from_name` of the directory `from` (a directory of the caller's own, such
    /// as the engine's staging area) to `relative`, creating missing parent directories. A link
    /// at `relative` is replaced, never followed. Returns the file's stat in its new place.
    pub fn rename_from(
        &self,
        from: &Dir,
        from_name: &str,
        relative: &str,
    ) -> Result<FileStat, ConfineError> {
        check_relative(relative)?;
        let (parent, name) = relative.rsplit_once('/').unwrap_or(("", relative));
        let parent = self.create_dir_all(parent)?;
        rustix::fs::renameat(&from.fd, from_name, &parent.fd, name).map_err(|errno| {
            if errno == Errno::ISDIR || errno == Errno::NOTEMPTY || errno == Errno::EXIST {
                ConfineError::IsDirectory {
                    path: self.display(relative),
                }
            } else {
                ConfineError::io(&self.display(relative), errno)
            }
        })?;
        parent.stat_name(name, &self.display(relative))
    }

    /// Creates a new, empty temporary file in this directory (`.tmp-xbundle-<pid>-<n>`, created
    /// with `O_EXCL | O_NOFOLLOW`, mode 0600), removed again when the [`TempFile`] is dropped
    /// unless it was published.
    pub fn temp_file(&self) -> Result<TempFile<'_>, ConfineError> {
        loop {
            let name = format!(
                ".tmp-xbundle-{}-{}",
                std::process::id(),
                TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let flags =
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rustix::fs::openat(&self.fd, name.as_str(), flags, Mode::from_raw_mode(0o600)) {
                Ok(fd) => {
                    return Ok(TempFile {
                        dir: self,
                        name,
                        file: File::from(fd),
                        published: false,
                    });
                }
                Err(Errno::EXIST) => continue,
                Err(errno) => return Err(ConfineError::io(&self.display(""), errno)),
            }
        }
    }

    /// Writes a new file at `relative` atomically: `fill` writes a temporary file created (with
    /// `O_EXCL | O_NOFOLLOW`) in the confined parent directory, which is then renamed over
    /// `relative` with mode `mode`. If `fill` fails, the temporary file is removed and
    /// `relative` is untouched. Returns the stat of the published file.
    pub fn write_file<E: From<ConfineError>>(
        &self,
        relative: &str,
        mode: u32,
        fill: impl FnOnce(&mut File) -> Result<(), E>,
    ) -> Result<FileStat, E> {
        check_relative(relative)?;
        let (parent, name) = relative.rsplit_once('/').unwrap_or(("", relative));
        let parent = self.create_dir_all(parent)?;
        let display = self.display(relative);
        let mut temp = parent.temp_file()?;
        fill(temp.file())?;
        temp.finish(mode).map_err(|source| {
            E::from(ConfineError::Io {
                path: display.clone(),
                source,
            })
        })?;
        temp.publish_into(&parent, name)
            .map_err(|err| E::from(err.renamed(|_| display.clone())))
    }

    /// Creates the new regular file `relative` (`O_CREAT | O_EXCL | O_NOFOLLOW`, mode `mode`):
    /// never replacing anything, not even a dangling link, its directories made as
    /// [`Dir::create_dir_all`] makes them. `Ok(None)` when something is already at that name.
    pub fn create_new_file(&self, relative: &str, mode: u32) -> Result<Option<File>, ConfineError> {
        check_relative(relative)?;
        let (parent, name) = relative.rsplit_once('/').unwrap_or(("", relative));
        let parent = self.create_dir_all(parent)?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(&parent.fd, name, flags, Mode::from_raw_mode(mode)) {
            Ok(fd) => Ok(Some(File::from(fd))),
            Err(Errno::EXIST) => Ok(None),
            Err(errno) => Err(ConfineError::io(&self.display(relative), errno)),
        }
    }

    /// Opens the regular file `relative` for reading: no link is followed at any component, the
    /// last one included, and nothing but a regular file is opened for good (a FIFO is opened
    /// without waiting for a writer, then refused like a link, a device or a socket:
    /// [`ConfineError::NotRegular`]). `Ok(None)` when it (or its directory) does not exist.
    pub fn open_file(&self, relative: &str) -> Result<Option<(File, FileStat)>, ConfineError> {
        let Some((parent, name)) = self.parent_of(relative)? else {
            return Ok(None);
        };
        let display = || self.display(relative);
        let fd = match rustix::fs::openat(&parent.fd, name, READ_FLAGS, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(errno) => {
                // `O_NOFOLLOW` on a link fails (`ELOOP`, `EMLINK` on some systems): say what it is.
                return Err(
                    match rustix::fs::statat(&parent.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(stat)
                            if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile =>
                        {
                            ConfineError::NotRegular {
                                path: display(),
                                what: kind_words(FileType::from_raw_mode(stat.st_mode)),
                            }
                        }
                        _ => ConfineError::io(&display(), errno),
                    },
                );
            }
        };
        let stat = rustix::fs::fstat(&fd).map_err(|errno| ConfineError::io(&display(), errno))?;
        let file_type = FileType::from_raw_mode(stat.st_mode);
        if file_type != FileType::RegularFile {
            return Err(ConfineError::NotRegular {
                path: display(),
                what: kind_words(file_type),
            });
        }
        // Reading a regular file never blocks; the descriptor goes back to blocking mode.
        rustix::fs::fcntl_setfl(&fd, OFlags::empty())
            .map_err(|errno| ConfineError::io(&display(), errno))?;
        Ok(Some((File::from(fd), FileStat::from_stat(&stat))))
    }

    /// A handle on whatever is at `relative` (`O_PATH`: nothing is opened for reading or
    /// writing, so a FIFO's other end is not woken and a device's driver not called) and what
    /// it is, no link followed at any component, the last one included (a link there is
    /// [`Kind::Symlink`]). `Ok(None)` when nothing is there (or its directory does not exist).
    /// Reopening the handle through `/proc/self/fd` opens that very file.
    pub fn open_path(&self, relative: &str) -> Result<Option<(OwnedFd, Kind)>, ConfineError> {
        let Some((parent, name)) = self.parent_of(relative)? else {
            return Ok(None);
        };
        let display = || self.display(relative);
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&parent.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(errno) => return Err(ConfineError::io(&display(), errno)),
        };
        let stat = rustix::fs::fstat(&fd).map_err(|errno| ConfineError::io(&display(), errno))?;
        let kind = Kind::of(FileType::from_raw_mode(stat.st_mode)).unwrap_or(Kind::Other);
        Ok(Some((fd, kind)))
    }

    /// Creates the new regular file `relative` for writing (`O_CREAT | O_EXCL`, mode `mode`
    /// less the umask; appending with `append`), in a directory reached without a link, as a
    /// shell's `>` creates a missing file: no other flag on the descriptor, which a program may
    /// read back with `fcntl(F_GETFL)`; `O_EXCL` follows no link and replaces nothing. `Ok(None)`
    /// when its directory does not exist; an error when something is already there.
    pub fn create_exclusive(
        &self,
        relative: &str,
        append: bool,
        mode: u32,
    ) -> Result<Option<File>, ConfineError> {
        let Some((parent, name)) = self.parent_of(relative)? else {
            return Ok(None);
        };
        let mut flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
        if append {
            flags |= OFlags::APPEND;
        }
        rustix::fs::openat(&parent.fd, name, flags, Mode::from_raw_mode(mode))
            .map(|fd| Some(File::from(fd)))
            .map_err(|errno| ConfineError::io(&self.display(relative), errno))
    }

    /// Opens `relative` for reading as [`Dir::open_file`] does (no link followed at any
    /// component, never waiting on a FIFO), in one system call where the kernel can resolve a
    /// path beneath a directory that way (`openat2` with `RESOLVE_BENEATH |
    /// RESOLVE_NO_SYMLINKS`, Linux 5.6): for hashing the files a walk just found regular, which
    /// is most of what a cold build does besides running its commands. The descriptor is not
    /// checked to be a regular file (reading a directory or a FIFO swapped in since the walk
    /// fails, or hashes what it yields; a stat taken before decides what is trusted) and stays
    /// non-blocking (which reading a regular file ignores). Anything that call cannot settle
    /// (an older kernel, a filter refusing it, a concurrent rename, a link on the way) goes
    /// through [`Dir::open_file`], whose errors say what is there.
    pub fn open_to_read(&self, relative: &str) -> Result<Option<File>, ConfineError> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use rustix::fs::ResolveFlags;
            use std::sync::atomic::AtomicBool;
            /// Set once `openat2` is known to be unavailable (`ENOSYS`, or refused by a filter).
            static UNAVAILABLE: AtomicBool = AtomicBool::new(false);
            if !UNAVAILABLE.load(Ordering::Relaxed) {
                check_relative(relative)?;
                let resolve =
                    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
                match rustix::fs::openat2(&self.fd, relative, READ_FLAGS, Mode::empty(), resolve) {
                    Ok(fd) => return Ok(Some(File::from(fd))),
                    Err(Errno::NOENT) => return Ok(None),
                    Err(Errno::NOSYS | Errno::PERM | Errno::INVAL | Errno::TOOBIG) => {
                        UNAVAILABLE.store(true, Ordering::Relaxed);
                    }
                    // A link on the way, a race with a rename, anything else: asked again one
                    // component at a time, which says what is there.
                    Err(_) => {}
                }
            }
        }
        Ok(self.open_file(relative)?.map(|(file, _)| file))
    }

    /// Opens the entry `name` of this directory (one component) for reading as
    /// [`Dir::open_to_read`] does: one `openat` with `O_NOFOLLOW`, so a link there fails and
    /// nothing beyond this directory is resolved. For hashing the files a walk found through a
    /// handle on their directory (`files::Opener`): one lookup of one name each, where
    /// `openat2` from the working directory walks every component again and then checks the
    /// walk stayed beneath it (a quarter of a cold build's opening time). Anything that call
    /// cannot settle goes through [`Dir::open_file`], whose errors say what is there.
    pub fn open_entry_to_read(&self, name: &str) -> Result<Option<File>, ConfineError> {
        check_relative(name)?;
        if name.contains('/') {
            return self.open_to_read(name);
        }
        match rustix::fs::openat(&self.fd, name, READ_FLAGS, Mode::empty()) {
            Ok(fd) => Ok(Some(File::from(fd))),
            Err(Errno::NOENT) => Ok(None),
            Err(_) => Ok(self.open_file(name)?.map(|(file, _)| file)),
        }
    }

    /// The contents of the regular file `relative`, opened as [`Dir::open_file`] does; a file
    /// holding more than `limit` bytes is refused ([`ConfineError::TooLarge`]) before it is read
    /// whole. `Ok(None)` when it does not exist.
    pub fn read_file(&self, relative: &str, limit: u64) -> Result<Option<Vec<u8>>, ConfineError> {
        Ok(self
            .read_file_with_stat(relative, limit)?
            .map(|(bytes, _)| bytes))
    }

    /// [`Dir::read_file`], with the stat of the file read.
    pub fn read_file_with_stat(
        &self,
        relative: &str,
        limit: u64,
    ) -> Result<Option<(Vec<u8>, FileStat)>, ConfineError> {
        let Some((file, stat)) = self.open_file(relative)? else {
            return Ok(None);
        };
        let too_large = || ConfineError::TooLarge {
            path: self.display(relative),
            limit,
        };
        if stat.size > limit {
            return Err(too_large());
        }
        let mut bytes = Vec::with_capacity(stat.size as usize);
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| ConfineError::Io {
                path: self.display(relative),
                source,
            })?;
        if bytes.len() as u64 > limit {
            return Err(too_large());
        }
        Ok(Some((bytes, stat)))
    }

    /// Opens the file `name` of this directory for locking, creating it (mode 0644) if needed:
    /// never through a link, and only a regular file.
    pub fn open_lock_file(&self, name: &str) -> Result<File, ConfineError> {
        self.open_writable(name, OFlags::empty())
            .map(|(file, _)| file)
    }

    /// Opens the file `name` of this directory for appending (`O_APPEND`), creating it (mode
    /// 0644) if needed: never through a link, only a regular file, and only one with no other
    /// name (a hard link planted here would make the engine append to a file of someone
    /// else's: [`ConfineError::NotRegular`]). Returns it and its stat.
    pub fn open_append(&self, name: &str) -> Result<(File, FileStat), ConfineError> {
        let (file, stat) = self.open_writable(name, OFlags::APPEND)?;
        if stat.st_nlink != 1 {
            return Err(ConfineError::NotRegular {
                path: self.display(name),
                what: "a file with another name (a hard link)",
            });
        }
        Ok((file, FileStat::from_stat(&stat)))
    }

    fn open_writable(
        &self,
        name: &str,
        extra: OFlags,
    ) -> Result<(File, rustix::fs::Stat), ConfineError> {
        check_relative(name)?;
        let flags = OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::NOFOLLOW
            | OFlags::NONBLOCK
            | OFlags::NOCTTY
            | OFlags::CLOEXEC
            | extra;
        let display = || self.display(name);
        let fd = rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(0o644)).map_err(
            |errno| match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile => {
                    ConfineError::NotRegular {
                        path: display(),
                        what: kind_words(FileType::from_raw_mode(stat.st_mode)),
                    }
                }
                _ => ConfineError::io(&display(), errno),
            },
        )?;
        let stat = rustix::fs::fstat(&fd).map_err(|errno| ConfineError::io(&display(), errno))?;
        let file_type = FileType::from_raw_mode(stat.st_mode);
        if file_type != FileType::RegularFile {
            return Err(ConfineError::NotRegular {
                path: display(),
                what: kind_words(file_type),
            });
        }
        Ok((File::from(fd), stat))
    }

    /// The entries of this directory (raw names, without `.` and `..`) and what each is, as seen
    /// without following links; entries removed while listing are left out.
    pub fn entries(&self) -> Result<Vec<(Vec<u8>, Kind)>, ConfineError> {
        // A new open file description: reading entries moves the read position.
        let fd = rustix::fs::openat(&self.fd, ".", DIR_FLAGS, Mode::empty())
            .map_err(|errno| ConfineError::io(&self.relative, errno))?;
        let listed = match read_entries(&fd) {
            Ok(listed) => listed,
            Err(Errno::NOENT) => return Ok(Vec::new()),
            Err(errno) => return Err(ConfineError::io(&self.relative, errno)),
        };
        let mut entries = Vec::with_capacity(listed.len());
        for (name, kind) in listed.iter() {
            let kind = match kind {
                Some(kind) => kind,
                None => match rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(stat) => {
                        Kind::of(FileType::from_raw_mode(stat.st_mode)).unwrap_or(Kind::Other)
                    }
                    Err(Errno::NOENT) => continue,
                    Err(errno) => return Err(ConfineError::io(&self.relative, errno)),
                },
            };
            entries.push((name.to_bytes().to_vec(), kind));
        }
        Ok(entries)
    }

    fn stat_name(&self, name: &str, display: &str) -> Result<FileStat, ConfineError> {
        rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .map(|stat| FileStat::from_stat(&stat))
            .map_err(|errno| ConfineError::io(display, errno))
    }

    /// Walks the directory `base` (relative to this one; "" for this one) depth first, calling
    /// `visit` for every entry below it. Directories are entered when `visit` returns
    /// [`Walk::Enter`], links are reported and never followed. `base` itself must be a real
    /// directory: a link at any of its components is an error; when it is missing or not a
    /// directory the walk visits nothing.
    pub fn walk<E: From<ConfineError>>(
        &self,
        base: &str,
        visit: &mut dyn FnMut(&Entry<'_>) -> Result<Walk, E>,
    ) -> Result<(), E> {
        self.walk_listed(base, None, visit)
    }

    /// [`Dir::walk`], taking each directory's entries from `listings` when it knows them for
    /// the directory's current stat (an `fstat` of the open directory), and giving it those it
    /// reads.
    pub fn walk_listed<E: From<ConfineError>>(
        &self,
        base: &str,
        listings: Option<&dyn ListingCache>,
        visit: &mut dyn FnMut(&Entry<'_>) -> Result<Walk, E>,
    ) -> Result<(), E> {
        self.walk_listed_from(None, base, listings, visit)
    }

    /// [`Dir::walk_listed`], from `opened` when the caller already opened `base` with
    /// [`Dir::try_open_dir`] (one open of it, no look at what it is before).
    pub fn walk_listed_from<E: From<ConfineError>>(
        &self,
        opened: Option<OpenDir>,
        base: &str,
        listings: Option<&dyn ListingCache>,
        visit: &mut dyn FnMut(&Entry<'_>) -> Result<Walk, E>,
    ) -> Result<(), E> {
        let start = match opened {
            Some(OpenDir(fd)) => fd,
            None => match self.open_dir_fd(base) {
                Ok(Some(fd)) => fd,
                Ok(None) | Err(ConfineError::NotDirectory { .. }) => return Ok(()),
                Err(err) => return Err(err.into()),
            },
        };
        let mut relative = base.as_bytes().to_vec();
        walk_into(start, &mut relative, &self.relative, listings, visit)
    }
}

/// A directory [`Dir::try_open_dir`] opened, to walk with [`Dir::walk_listed_from`].
pub struct OpenDir(OwnedFd);

/// A temporary file made by [`Dir::temp_file`]: removed on drop unless published.
pub struct TempFile<'a> {
    dir: &'a Dir,
    name: String,
    file: File,
    published: bool,
}

impl TempFile<'_> {
    /// The open file, for writing.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Its name in its directory.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the mode the file is published with, and flushes it to disk first when
    /// [`crate::fsutil::durability`] asks for every file.
    pub fn finish(&mut self, mode: u32) -> io::Result<()> {
        rustix::fs::fchmod(&self.file, Mode::from_raw_mode(mode))?;
        self.file.flush()?;
        if crate::fsutil::durability() == crate::fsutil::Durability::EveryFile {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Renames the file to `relative` below `to` (see [`Dir::rename_from`]); on failure it is
    /// removed.
    pub fn publish_into(mut self, to: &Dir, relative: &str) -> Result<FileStat, ConfineError> {
        let stat = to.rename_from(self.dir, &self.name, relative)?;
        self.published = true;
        Ok(stat)
    }
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if !self.published {
            let _ = rustix::fs::unlinkat(&self.dir.fd, self.name.as_str(), AtFlags::empty());
        }
    }
}

/// A directory of the engine's own (the state directory, the cache, the areas in them), named
/// by a trusted **anchor** and a path below it that is resolved without following links.
///
/// The anchor is what the user chose (the workspace root, or a cache directory named by
/// `XBUNDLE_CACHE_DIR`): links in it are followed, as for [`Dir::open_root`]. Below it, every
/// component is opened with `O_NOFOLLOW`, so a link where one of the engine's directories is
/// expected (shipped by a repository, or put in a shared cache by another user) is an error
/// naming it, never a detour.
///
/// Once opened, the handle is kept (shared by the clones of this `Place`, not by places made
/// with [`Place::join`]) until [`Place::forget`]: later uses go through the directory that was
/// checked, whatever is swapped in at its path since; a run forgets its places when it starts.
#[derive(Clone, Debug)]
pub struct Place {
    anchor: PathBuf,
    /// Below the anchor ("" for the anchor itself).
    relative: String,
    /// Whether the anchor is the workspace root (errors then name root-relative paths; else
    /// absolute ones).
    in_root: bool,
    opened: Arc<Mutex<Option<Arc<Dir>>>>,
}

impl Place {
    /// `path` below `root` when it lies there lexically (every component below the root is then
    /// resolved without following links), else `path` itself as the anchor.
    pub fn within(root: &Path, path: &Path) -> Place {
        let relative = path.strip_prefix(root).ok().and_then(|relative| {
            let parts = relative
                .components()
                .map(|component| match component {
                    std::path::Component::Normal(name) => name.to_str(),
                    _ => None,
                })
                .collect::<Option<Vec<&str>>>()?;
            Some(parts.join("/"))
        });
        let (anchor, relative, in_root) = match relative {
            Some(relative) => (root.to_path_buf(), relative, true),
            None => (path.to_path_buf(), String::new(), false),
        };
        Place {
            anchor,
            relative,
            in_root,
            opened: Arc::default(),
        }
    }

    /// The directory `relative` below this one.
    pub fn join(&self, relative: &str) -> Place {
        Place {
            anchor: self.anchor.clone(),
            relative: if self.relative.is_empty() {
                relative.to_string()
            } else {
                format!("{}/{relative}", self.relative)
            },
            in_root: self.in_root,
            opened: Arc::default(),
        }
    }

    /// Its absolute path (for messages and for reading by callers that do not write).
    pub fn path(&self) -> PathBuf {
        if self.relative.is_empty() {
            self.anchor.clone()
        } else {
            self.anchor.join(&self.relative)
        }
    }

    /// Errors name a root-relative path inside the workspace, an absolute one elsewhere.
    fn name_error(&self, err: ConfineError) -> ConfineError {
        if self.in_root {
            err
        } else {
            let anchor = self.anchor.clone();
            err.renamed(|path| {
                if path.is_empty() {
                    anchor.display().to_string()
                } else {
                    anchor.join(path).display().to_string()
                }
            })
        }
    }

    /// How `name` in this directory is named in messages: root-relative inside the workspace,
    /// absolute elsewhere.
    pub fn display(&self, name: &str) -> String {
        let relative = match (self.relative.is_empty(), name.is_empty()) {
            (true, _) => name.to_string(),
            (false, true) => self.relative.clone(),
            (false, false) => format!("{}/{name}", self.relative),
        };
        if self.in_root {
            relative
        } else if relative.is_empty() {
            self.anchor.display().to_string()
        } else {
            self.anchor.join(relative).display().to_string()
        }
    }

    fn kept(&self) -> Option<Arc<Dir>> {
        self.opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn keep(&self, dir: Dir) -> Arc<Dir> {
        let dir = Arc::new(dir);
        *self.opened.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&dir));
        dir
    }

    /// Drops the kept handle: the next use opens the place again (after its directory was
    /// removed, or at the start of a run).
    pub fn forget(&self) {
        *self.opened.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Opens the directory; `Ok(None)` when it (or its anchor) does not exist, an error when a
    /// component below the anchor is a link or not a directory.
    pub fn open(&self) -> Result<Option<Arc<Dir>>, ConfineError> {
        if let Some(dir) = self.kept() {
            return Ok(Some(dir));
        }
        let anchor = match Dir::open_root(&self.anchor) {
            Ok(anchor) => anchor,
            Err(ConfineError::Io { ref source, .. })
                if source.kind() == io::ErrorKind::NotFound =>
            {
                return Ok(None);
            }
            Err(ConfineError::Io { ref source, .. })
                if source.kind() == io::ErrorKind::NotADirectory =>
            {
                return Err(ConfineError::NotDirectory {
                    path: self.anchor.display().to_string(),
                });
            }
            Err(err) => return Err(err),
        };
        match anchor.open_dir(&self.relative) {
            Ok(Some(dir)) => Ok(Some(self.keep(dir))),
            Ok(None) => Ok(None),
            Err(err) => Err(self.name_error(err)),
        }
    }

    /// Opens the directory, creating it and its missing parents first (the anchor with
    /// ordinary paths, everything below it without following links).
    pub fn create(&self) -> Result<Arc<Dir>, ConfineError> {
        if let Some(dir) = self.kept() {
            return Ok(dir);
        }
        if let Err(source) = std::fs::create_dir_all(&self.anchor) {
            return Err(ConfineError::Io {
                path: self.anchor.display().to_string(),
                source,
            });
        }
        let dir = Dir::open_root(&self.anchor)?
            .create_dir_all(&self.relative)
            .map_err(|err| self.name_error(err))?;
        Ok(self.keep(dir))
    }
}

fn walk_into<E: From<ConfineError>>(
    fd: OwnedFd,
    relative: &mut Vec<u8>,
    display_prefix: &str,
    listings: Option<&dyn ListingCache>,
    visit: &mut dyn FnMut(&Entry<'_>) -> Result<Walk, E>,
) -> Result<(), E> {
    let io_error = |relative: &[u8], source: io::Error| {
        let path = match display_prefix {
            "" => escape(relative),
            prefix => format!("{prefix}/{}", escape(relative)),
        };
        E::from(ConfineError::Io { path, source })
    };
    let (entries, from_listing) = match listed_entries(&fd, display_prefix, relative, listings) {
        Ok(entries) => entries,
        // Removed while we walked: nothing to see there.
        Err(Errno::NOENT) => return Ok(()),
        Err(errno) => return Err(io_error(relative, errno.into())),
    };
    let prefix_len = relative.len();
    for (name, kind) in entries.iter() {
        relative.truncate(prefix_len);
        if !relative.is_empty() {
            relative.push(b'/');
        }
        relative.extend_from_slice(name.to_bytes());
        let kind = match kind {
            Some(kind) => kind,
            None => match rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => Kind::of(FileType::from_raw_mode(stat.st_mode)).unwrap_or(Kind::Other),
                Err(Errno::NOENT) => continue,
                Err(errno) => return Err(io_error(relative, errno.into())),
            },
        };
        let decision = visit(&Entry {
            relative,
            kind,
            parent: fd.as_fd(),
            name,
        })?;
        if kind == Kind::Dir && decision == Walk::Enter {
            match rustix::fs::openat(&fd, name, DIR_FLAGS, Mode::empty()) {
                Ok(child) => walk_into(child, relative, display_prefix, listings, visit)?,
                // Not a directory, from a listing kept across runs for this very directory
                // state: that listing is not the directory's (damaged or forged): an error,
                // never a link left out in silence.
                Err(errno @ (Errno::LOOP | Errno::NOTDIR)) if from_listing => {
                    return Err(io_error(
                        relative,
                        io::Error::other(format!(
                            "{}; it is not the directory its parent's kept listing says \
                             (remove .xbundle/state/listings)",
                            io::Error::from(errno)
                        )),
                    ));
                }
                // Removed, or replaced by a link or a file, since it was listed: not entered.
                Err(Errno::NOENT) | Err(Errno::LOOP) | Err(Errno::NOTDIR) => {}
                Err(errno) => return Err(io_error(relative, errno.into())),
            }
        }
    }
    relative.truncate(prefix_len);
    Ok(())
}

/// A directory's entries as a walk reads them: names, and kinds when the file system gives them.
/// The names are kept one after the other in one buffer, each ending with its NUL (two
/// allocations a directory, where one per name was a fifth of a no-op's allocations).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listed {
    /// Every name followed by a NUL.
    names: Vec<u8>,
    /// Where each name starts in `names`, and its kind.
    entries: Vec<(usize, Option<Kind>)>,
}

impl Listed {
    /// Sized for `entries` names of `bytes` bytes in all (their NULs not counted).
    pub fn with_capacity(entries: usize, bytes: usize) -> Listed {
        Listed {
            names: Vec::with_capacity(bytes + entries),
            entries: Vec::with_capacity(entries),
        }
    }

    /// Adds an entry; `None` (nothing added) for a name holding a NUL.
    pub fn push(&mut self, name: &[u8], kind: Option<Kind>) -> Option<()> {
        if name.contains(&0) {
            return None;
        }
        self.entries.push((self.names.len(), kind));
        self.names.extend_from_slice(name);
        self.names.push(0);
        Some(())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Puts the entries in byte order of their names, the order a walk then visits them in:
    /// a directory's files come out as sorted as the paths the stat cache keeps (its lookups
    /// then find each next file at the next record) and as the found files must be (their
    /// sort sees a sorted list at once).
    pub fn sort_by_name(&mut self) {
        let names = &self.names;
        // Each name ends with its NUL, which is below every byte a name holds: comparing the
        // rest of the buffer from each start orders the names themselves (no two are equal).
        self.entries
            .sort_unstable_by(|a, b| names[a.0..].cmp(&names[b.0..]));
    }

    /// The entries in their order: as added, or by name once [`Listed::sort_by_name`] ran
    /// (every listing read from a directory).
    pub fn iter(&self) -> impl Iterator<Item = (&CStr, Option<Kind>)> {
        self.entries.iter().map(|&(start, kind)| {
            let name = CStr::from_bytes_until_nul(&self.names[start..])
                .expect("every name is followed by its NUL");
            (name, kind)
        })
    }
}

/// Directory listings a walk may use instead of reading a directory again (see
/// [`crate::listings`], kept with the stat cache, whose clock they are trusted against).
pub trait ListingCache: Sync {
    /// The entries of the directory `path` (root-relative) if they are known for its stat.
    fn listed(&self, path: &[u8], stat: &FileStat) -> Option<Listed>;
    /// A reading of the file system's clock, taken before a directory of mtime `mtime_ns` is
    /// read (newer than that mtime when one can be had).
    fn clock_before_reading(&self, mtime_ns: i64) -> i64;
    /// What the directory `path` held when read after its stat `stat` and the reading
    /// `clock_ns` were taken.
    fn record_listing(&self, path: &[u8], stat: &FileStat, clock_ns: i64, entries: &Listed);
}

/// The entries of the open directory `fd` at `relative` below the directory `display_prefix`
/// (root-relative): from `listings` when it knows them for the directory's stat, else read
/// (and given to it); and whether they came from `listings`.
fn listed_entries(
    fd: &OwnedFd,
    display_prefix: &str,
    relative: &[u8],
    listings: Option<&dyn ListingCache>,
) -> Result<(Listed, bool), Errno> {
    let Some(listings) = listings else {
        return read_entries(fd).map(|entries| (entries, false));
    };
    let stat = FileStat::from_stat(&rustix::fs::fstat(fd)?);
    let mut path = display_prefix.as_bytes().to_vec();
    if !path.is_empty() && !relative.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(relative);
    if let Some(entries) = listings.listed(&path, &stat) {
        return Ok((entries, true));
    }
    // The stat, then the clock, then the read: any change after the read leaves the directory
    // with a newer mtime than the one recorded (see `crate::listings`).
    let clock = listings.clock_before_reading(stat.mtime_ns);
    let entries = read_entries(fd)?;
    listings.record_listing(&path, &stat, clock, &entries);
    Ok((entries, false))
}

/// The entries of the directory `fd` (without `.` and `..`), with their kinds when the file
/// system reports them.
fn read_entries(fd: &OwnedFd) -> Result<Listed, Errno> {
    let mut entries = Listed::default();
    let mut keep = |name: &CStr, file_type: FileType| {
        if !matches!(name.to_bytes(), b"." | b"..") {
            entries
                .push(name.to_bytes(), Kind::of(file_type))
                .expect("a C string holds no NUL");
        }
    };
    // Linux: one `getdents64` per 32 KiB of entries, as glibc's readdir does (rustix's `Dir`
    // starts with a buffer of 32 entries).
    #[cfg(target_os = "linux")]
    {
        let mut buffer: Vec<u8> = Vec::with_capacity(32 * 1024);
        let mut raw = rustix::fs::RawDir::new(fd, buffer.spare_capacity_mut());
        while let Some(entry) = raw.next() {
            let entry = entry?;
            keep(entry.file_name(), entry.file_type());
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let mut dir = rustix::fs::Dir::read_from(fd)?;
        while let Some(entry) = dir.read() {
            let entry = entry?;
            keep(entry.file_name(), entry.file_type());
        }
    }
    entries.sort_by_name();
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_listing_keeps_its_names_in_order_and_refuses_one_holding_a_nul() {
        let mut listed = Listed::with_capacity(2, 6);
        listed.push(b"b.txt", Some(Kind::File)).unwrap();
        listed.push(b"a", None).unwrap();
        assert!(listed.push(b"x\0y", Some(Kind::File)).is_none());
        let names: Vec<(Vec<u8>, Option<Kind>)> = listed
            .iter()
            .map(|(name, kind)| (name.to_bytes().to_vec(), kind))
            .collect();
        assert_eq!(
            names,
            vec![(b"b.txt".to_vec(), Some(Kind::File)), (b"a".to_vec(), None)]
        );
        assert_eq!(listed.len(), 2);
        assert!(!listed.is_empty());
    }

    /// Both ways of linking an open file name the file that was opened, even once its path
    /// leads to another file, and neither replaces a name that exists.
    #[test]
    fn an_open_file_is_linked_by_its_handle_or_through_proc_never_by_its_path() {
        let (_dir, root) = setup();
        let real = root.open_dir("real").unwrap().unwrap();
        for (way, from) in [("handle", LinkFrom::Handle), ("proc", LinkFrom::Proc)] {
            let path = real.path().join("out");
            fs::write(&path, format!("opened {way}")).unwrap();
            let file = File::open(&path).unwrap();
            // Its path now names another file (the opened one moved away, still linked: a
            // file with no name left cannot be given one).
            fs::rename(&path, real.path().join(format!("moved-{way}"))).unwrap();
            fs::write(&path, b"planted").unwrap();
            let name = format!("blob-{way}");
            match real.link_by(from, &file, &name) {
                Ok(linked) => assert!(linked, "{way}"),
                // The handle refused without CAP_DAC_READ_SEARCH on a kernel before 6.10 (root
                // has it: never skipped there).
                // SAFETY: geteuid(2) takes nothing and cannot fail.
                Err(Errno::NOENT)
                    if matches!(from, LinkFrom::Handle) && unsafe { libc::geteuid() } != 0 =>
                {
                    eprintln!("skipped the handle: this kernel refuses it here");
                    continue;
                }
                Err(errno) => panic!("{way}: {errno}"),
            }
            assert_eq!(
                fs::read_to_string(real.path().join(&name)).unwrap(),
                format!("opened {way}")
            );
            // A name that exists is left as it is.
            assert_eq!(
                real.link_by(from, &File::open(&path).unwrap(), &name),
                Ok(false)
            );
            assert_eq!(
                fs::read_to_string(real.path().join(&name)).unwrap(),
                format!("opened {way}")
            );
        }
        // The public entry point: linked, then `false` for the same name, and never a path.
        let path = real.path().join("again");
        fs::write(&path, b"again").unwrap();
        let file = File::open(&path).unwrap();
        assert!(real.link_open_file(&file, "stored").unwrap());
        assert!(!real.link_open_file(&file, "stored").unwrap());
        assert!(real.link_open_file(&file, "../escape").is_err());
        assert!(real.link_open_file(&file, "a/b").is_err());
        assert_eq!(fs::read(real.path().join("stored")).unwrap(), b"again");
    }

    use std::os::unix::fs::symlink;

    /// `root/` and a canary directory `outside/` beside it with a file in it.
    fn setup() -> (tempfile::TempDir, Dir) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("root/real")).unwrap();
        fs::create_dir_all(dir.path().join("outside")).unwrap();
        fs::write(dir.path().join("outside/victim"), b"keep").unwrap();
        symlink(dir.path().join("outside"), dir.path().join("root/link")).unwrap();
        symlink(
            dir.path().join("outside/victim"),
            dir.path().join("root/real/file-link"),
        )
        .unwrap();
        let root = Dir::open_root(&dir.path().join("root")).unwrap();
        (dir, root)
    }

    /// What an open that must have found the file reads.
    fn text(opened: Result<Option<File>, ConfineError>) -> String {
        let mut read = String::new();
        opened.unwrap().unwrap().read_to_string(&mut read).unwrap();
        read
    }

    fn make_fifo(path: &Path) {
        let made = std::process::Command::new("mkfifo").arg(path).status();
        assert!(made.unwrap().success());
    }

    #[test]
    fn open_to_read_opens_files_below_and_never_through_a_link() {
        let (dir, root) = setup();
        fs::write(dir.path().join("root/real/data.txt"), b"data").unwrap();
        assert_eq!(text(root.open_to_read("real/data.txt")), "data");
        assert!(root.open_to_read("real/missing.txt").unwrap().is_none());
        // A link as the last component (to a file outside) or on the way: refused, saying so.
        assert!(matches!(
            root.open_to_read("real/file-link"),
            Err(ConfineError::NotRegular { .. })
        ));
        assert!(matches!(
            root.open_to_read("link/victim"),
            Err(ConfineError::Symlink { .. })
        ));
        for bad in [
            "../outside/victim",
            "/etc/passwd",
            "real/../../outside/victim",
        ] {
            assert!(
                matches!(root.open_to_read(bad), Err(ConfineError::Invalid { .. })),
                "{bad}"
            );
        }
        // A FIFO is not waited on (no writer ever comes).
        make_fifo(&dir.path().join("root/real/fifo"));
        assert!(root.open_to_read("real/fifo").is_ok());
    }

    #[test]
    fn open_entry_to_read_opens_one_name_and_never_a_link() {
        let (dir, root) = setup();
        fs::write(dir.path().join("root/real/data.txt"), b"data").unwrap();
        let real = root.open_dir("real").unwrap().unwrap();
        assert_eq!(text(real.open_entry_to_read("data.txt")), "data");
        assert!(real.open_entry_to_read("missing.txt").unwrap().is_none());
        // A link (to a file outside, or to a directory outside): refused, saying so.
        assert!(matches!(
            real.open_entry_to_read("file-link"),
            Err(ConfineError::NotRegular { .. })
        ));
        assert!(matches!(
            root.open_entry_to_read("link"),
            Err(ConfineError::NotRegular { .. })
        ));
        // More than one name: resolved as `open_to_read` does, no link on the way.
        assert!(matches!(
            root.open_entry_to_read("link/victim"),
            Err(ConfineError::Symlink { .. })
        ));
        for bad in ["..", ".", "", "../outside/victim", "/etc/passwd"] {
            assert!(
                matches!(
                    real.open_entry_to_read(bad),
                    Err(ConfineError::Invalid { .. })
                ),
                "{bad}"
            );
        }
        // A FIFO is not waited on (no writer ever comes).
        make_fifo(&dir.path().join("root/real/fifo"));
        assert!(real.open_entry_to_read("fifo").is_ok());
    }

    #[test]
    fn create_new_file_never_replaces_and_never_follows_a_link() {
        let (dir, root) = setup();
        // A new file, its directories made.
        let mut file = root
            .create_new_file("made/new.txt", 0o644)
            .unwrap()
            .unwrap();
        std::io::Write::write_all(&mut file, b"new").unwrap();
        assert_eq!(
            fs::read(dir.path().join("root/made/new.txt")).unwrap(),
            b"new"
        );
        // Something already there: a file, or a link (even to a file that exists outside).
        assert!(
            root.create_new_file("made/new.txt", 0o644)
                .unwrap()
                .is_none()
        );
        assert!(
            root.create_new_file("real/file-link", 0o644)
                .unwrap()
                .is_none()
        );
        // A link on the way: refused, nothing written outside.
        assert!(matches!(
            root.create_new_file("link/victim2", 0o644),
            Err(ConfineError::Symlink { .. })
        ));
        assert!(!dir.path().join("outside/victim2").exists());
        assert_eq!(
            fs::read(dir.path().join("outside/victim")).unwrap(),
            b"keep"
        );
    }

    #[test]
    fn bad_paths_are_refused_before_any_system_call() {
        for (path, reason) in [
            ("", "empty path"),
            ("/etc/passwd", "absolute path"),
            ("a/../b", "`..` component"),
            ("..", "`..` component"),
            ("a//b", "empty component"),
            ("a/", "empty component"),
            ("./a", "`.` component"),
            ("a\0b", "NUL byte"),
        ] {
            match check_relative(path) {
                Err(ConfineError::Invalid { reason: got, .. }) => {
                    assert_eq!(got, reason, "{path:?}")
                }
                other => panic!("{path:?}: {other:?}"),
            }
        }
        let err = check_relative_bytes(b"src/\xff.txt").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`src/\\xff.txt` is not a relative path inside the workspace (not valid UTF-8)"
        );
        assert!(check_relative("a/b.c/.hidden").is_ok());
    }

    #[test]
    fn links_are_never_followed_when_writing_or_deleting() {
        let (dir, root) = setup();
        let victim = dir.path().join("outside/victim");
        assert!(matches!(
            root.remove_file("link/victim"),
            Err(ConfineError::Symlink { ref path }) if path == "link"
        ));
        assert!(matches!(
            root.create_dir_all("link/sub"),
            Err(ConfineError::Symlink { .. })
        ));
        assert!(matches!(
            root.open_dir("link"),
            Err(ConfineError::Symlink { .. })
        ));
        let written = root.write_file::<ConfineError>("link/new", 0o644, |f| {
            f.write_all(b"x").map_err(|source| ConfineError::Io {
                path: "x".into(),
                source,
            })
        });
        assert!(matches!(written, Err(ConfineError::Symlink { .. })));
        let staging = root.create_dir_all("staging").unwrap();
        fs::write(dir.path().join("root/staging/staged"), b"new").unwrap();
        assert!(matches!(
            root.rename_from(&staging, "staged", "link/victim"),
            Err(ConfineError::Symlink { .. })
        ));
        // A link as the last component is replaced itself, never its target.
        root.rename_from(&staging, "staged", "real/file-link")
            .unwrap();
        assert_eq!(
            fs::read(dir.path().join("root/real/file-link")).unwrap(),
            b"new"
        );
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        // Removing a link removes the link.
        assert!(root.remove_file("link").unwrap());
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert!(!root.remove_file("missing/x").unwrap());
        assert!(matches!(
            root.remove_file("real"),
            Err(ConfineError::IsDirectory { .. })
        ));
    }

    #[test]
    fn try_open_dir_opens_only_a_real_directory_and_its_walk_is_the_same() {
        let (dir, root) = setup();
        fs::create_dir_all(dir.path().join("root/real/sub")).unwrap();
        fs::write(dir.path().join("root/real/sub/f"), b"").unwrap();
        fs::write(dir.path().join("root/file"), b"").unwrap();
        // A file, a link to a directory (last component or on the way), missing, escaping.
        for path in [
            "file",
            "link",
            "link/x",
            "missing",
            "real/missing",
            "..",
            "real/../real",
        ] {
            assert!(root.try_open_dir(path).is_none(), "{path}");
        }
        let walked = |opened: Option<OpenDir>| {
            let mut seen = Vec::new();
            root.walk_listed_from::<ConfineError>(opened, "real", None, &mut |entry| {
                seen.push(entry.relative.to_vec());
                Ok(Walk::Enter)
            })
            .unwrap();
            seen
        };
        let opened = root.try_open_dir("real");
        assert!(opened.is_some());
        assert_eq!(walked(opened), walked(None));
        assert_eq!(walked(None).len(), 3, "file-link, sub, sub/f");
    }

    #[test]
    fn a_walk_visits_each_directory_in_byte_order_of_names() {
        let (dir, root) = setup();
        // Created out of order, with names that are prefixes of one another and that differ
        // in case and punctuation: what a file system lists them in is its own order.
        let mut names: Vec<String> = (0..64u32)
            .map(|i| format!("f{:03}.txt", (i * 37) % 64))
            .collect();
        names.extend(["a", "a.b", "a0", "ab", "abc", "B", "_x", "z-", "z"].map(String::from));
        fs::create_dir_all(dir.path().join("root/d/sub")).unwrap();
        for name in &names {
            fs::write(dir.path().join("root/d").join(name), b"").unwrap();
        }
        fs::write(dir.path().join("root/d/sub/y"), b"").unwrap();
        let mut seen = Vec::new();
        root.walk::<ConfineError>("d", &mut |entry| {
            seen.push(String::from_utf8(entry.relative.to_vec()).unwrap());
            Ok(Walk::Enter)
        })
        .unwrap();
        names.push("sub".into());
        let mut expected: Vec<String> = names.iter().map(|name| format!("d/{name}")).collect();
        expected.sort();
        // Each entry, then (for `sub`) what is below it, right after it.
        let at = expected.iter().position(|p| p == "d/sub").unwrap();
        expected.insert(at + 1, "d/sub/y".into());
        assert_eq!(seen, expected);
    }

    #[test]
    fn write_file_is_atomic_and_cleans_up_on_failure() {
        let (dir, root) = setup();
        let stat = root
            .write_file::<ConfineError>("a/b/c.txt", 0o755, |f| {
                f.write_all(b"hello").map_err(|source| ConfineError::Io {
                    path: "c".into(),
                    source,
                })
            })
            .unwrap();
        assert!(stat.executable);
        assert_eq!(
            fs::read(dir.path().join("root/a/b/c.txt")).unwrap(),
            b"hello"
        );
        let failed = root.write_file::<ConfineError>("a/b/c.txt", 0o644, |_| {
            Err(ConfineError::Invalid {
                path: "c".into(),
                reason: "test",
            })
        });
        assert!(failed.is_err());
        assert_eq!(
            fs::read(dir.path().join("root/a/b/c.txt")).unwrap(),
            b"hello"
        );
        let names: Vec<_> = fs::read_dir(dir.path().join("root/a/b")).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
    }

    #[test]
    fn walk_reports_links_and_never_enters_them() {
        let (_dir, root) = setup();
        fs::write(root.join("real/x.txt"), b"x").unwrap();
        fs::write(root.join("real/\u{e9}.txt"), b"x").unwrap();
        let mut seen = Vec::new();
        root.walk::<ConfineError>("", &mut |entry| {
            seen.push((escape(entry.relative), entry.kind));
            Ok(Walk::Enter)
        })
        .unwrap();
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            seen,
            [
                ("link".to_string(), Kind::Symlink),
                ("real".to_string(), Kind::Dir),
                ("real/file-link".to_string(), Kind::Symlink),
                ("real/x.txt".to_string(), Kind::File),
                ("real/\u{e9}.txt".to_string(), Kind::File),
            ]
        );
        let err = root
            .walk::<ConfineError>("link", &mut |_| Ok(Walk::Enter))
            .unwrap_err();
        assert!(
            matches!(err, ConfineError::Symlink { ref path } if path == "link"),
            "{err}"
        );
        root.walk::<ConfineError>("missing/dir", &mut |_| panic!("nothing to visit"))
            .unwrap();
    }
}
