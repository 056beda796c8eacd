//! Confined paths: every path the runtime takes from bundle.json is resolved beneath its root
//! (the bundle directory or the app data directory) one component at a time, never following
//! a symbolic link.
//!
//! Two layers, both applied to every such path:
//!
//! - **Lexical** ([`RelPath::parse`], [`check_file_name`]): the manifest crate's one rule
//!   ([`manifest::RelativePath`]): relative, normalized and `/`-separated; absolute paths,
//!   `..`, `.` and empty components, backslashes and control characters are refused. A service
//!   id, which names its log file, must be one plain file name. The runtime applies them itself
//!   where it resolves each path, not only through `manifest::validate` (defense in depth).
//! - **On the file system** ([`Dir`]): a directory handle (an fd) from which each component is
//!   opened with `openat(…, O_NOFOLLOW)`. A component that is a symlink is an error naming it,
//!   whatever it points to (inside or outside the root); nothing is ever resolved through one.
//!   Files are created with `O_NOFOLLOW` (temporaries with `O_EXCL` too) and replaced with
//!   `renameat` within the same handle, so a link planted where a file is expected is never
//!   written through. A file written in place (appended logs and telemetry, the lock:
//!   [`Dir::open_own`]) must be a regular file with no other hard link: a hard link would
//!   carry the writes to the file's other name, a FIFO would block the open; either is an
//!   error naming it, and nothing the runtime did not make is removed. Reads never block on a
//!   FIFO and take only regular files ([`Dir::read`]).
//! - Handles are held, not paths: what is written later (secrets, log rotation) goes through
//!   the directory handle opened at start-up, so a directory swapped for a link while the
//!   runtime runs is never written through.
//!
//! The roots themselves (`--bundle`, `--app-data`, the default app data directory) are the
//! user's choice and may be links; what is beneath them is not.
//!
//! **Invariant:** no path taken from bundle.json is opened, created, executed or served through
//! an absolute path, a `..` or a symlink; a refused path stops the start-up (exit code 2, see
//! `plan`) before anything is written or started.
//!
//! What remains: programs are executed by path (exec takes a path), checked at start-up. Whoever
//! swaps a component of the bundle for a link while the runtime runs could redirect a later
//! restart; that person can write the bundle, so could replace its programs anyway.

use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A validated relative path: plain components, no `..`, no separators inside one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct RelPath {
    parts: Vec<String>,
}

impl RelPath {
    /// Checks a path from bundle.json with the manifest's one rule ([`manifest::RelativePath`]:
    /// relative, normalized, `/`-separated, no `..`, `.`, empty component, backslash or
    /// control character), so the runtime and `manifest::validate` can never disagree.
    pub fn parse(text: &str) -> Result<RelPath, String> {
        let path = manifest::RelativePath::new(text).map_err(|err| err.to_string())?;
        Ok(RelPath {
            parts: path.components().map(str::to_owned).collect(),
        })
    }

    /// A path of fixed, known-good components (the runtime's own names).
    pub fn of(parts: &[&str]) -> RelPath {
        RelPath {
            parts: parts.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    pub fn is_root(&self) -> bool {
        self.parts.is_empty()
    }

    pub fn parts(&self) -> &[String] {
        &self.parts
    }

    pub fn join(&self, other: &RelPath) -> RelPath {
        let mut parts = self.parts.clone();
        parts.extend(other.parts.iter().cloned());
        RelPath { parts }
    }

    /// `self` plus one file name (checked by the caller).
    pub fn child(&self, name: &str) -> RelPath {
        let mut parts = self.parts.clone();
        parts.push(name.to_owned());
        RelPath { parts }
    }

    /// The directory part (the root for a single component).
    pub fn parent(&self) -> RelPath {
        RelPath {
            parts: self.parts[..self.parts.len().saturating_sub(1)].to_vec(),
        }
    }

    pub fn file_name(&self) -> Option<&str> {
        self.parts.last().map(String::as_str)
    }

    /// The absolute path beneath `root` (for display and for exec).
    pub fn under(&self, root: &Path) -> PathBuf {
        let mut path = root.to_path_buf();
        path.extend(&self.parts);
        path
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.parts.is_empty() {
            f.write_str(".")
        } else {
            f.write_str(&self.parts.join("/"))
        }
    }
}

/// Checks that `name` is one plain file name (a service id naming its log file), with the
/// manifest's rule ([`manifest::RelativePath::name`]).
pub fn check_file_name(name: &str) -> Result<(), String> {
    manifest::RelativePath::name(name)
        .map(drop)
        .map_err(|err| err.to_string())
}

/// What a path names, found without following links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Missing,
    Dir,
    File,
    Other,
}

/// An open directory: the handle every confined operation starts from.
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl fmt::Debug for Dir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dir({})", self.path.display())
    }
}

fn c_name(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// The error for a component that is a symlink.
pub fn symlink_error(path: &Path) -> io::Error {
    io::Error::other(format!(
        "{} is a symbolic link: the runtime follows none beneath the bundle and app data directories (put the file or directory itself there)",
        path.display()
    ))
}

/// Whether an error is [`symlink_error`]'s (or the kernel's refusal to follow one).
pub fn is_symlink_error(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::ELOOP) || err.to_string().contains("is a symbolic link")
}

/// The error for a name the runtime would write in place that is not a regular file of its
/// own.
fn not_own_error(path: &Path) -> io::Error {
    io::Error::other(format!(
        "{} is not a regular file of its own (a FIFO, socket or device, or a file with other hard links, which writing to would change elsewhere): the runtime writes only to files it alone names (remove it)",
        path.display()
    ))
}

/// A regular file with one name: what the runtime writes to in place.
fn is_own_file(stat: &libc::stat) -> bool {
    stat.st_mode & libc::S_IFMT == libc::S_IFREG && stat.st_nlink == 1
}

const DIR_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;

impl Dir {
    /// Opens a root directory. The root is the user's choice, so a link here is followed.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let c_path = c_name(path.as_os_str().as_bytes())?;
        // SAFETY: a valid NUL-terminated path.
        let fd = unsafe { libc::open(c_path.as_ptr(), DIR_FLAGS) };
        if fd < 0 {
            return Err(last_error());
        }
        Ok(Dir {
            // SAFETY: a fresh fd we own.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: path.to_path_buf(),
        })
    }

    /// Creates a root directory (and its parents) if needed, then opens it.
    pub fn create_root(path: &Path) -> io::Result<Dir> {
        std::fs::create_dir_all(path)?;
        Dir::open(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
        })
    }

    /// `fstatat` without following a link.
    pub(crate) fn lstat(&self, name: &[u8]) -> io::Result<libc::stat> {
        let c = c_name(name)?;
        // SAFETY: zeroed plain data, filled by the call.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid fd, name and out-pointer.
        let rc = unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                &mut stat,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc < 0 {
            return Err(last_error());
        }
        Ok(stat)
    }

    /// Turns a failed `O_NOFOLLOW` open of `name` into a clear error when `name` is a link.
    fn explain(&self, name: &[u8], err: io::Error) -> io::Error {
        let code = err.raw_os_error();
        if (code == Some(libc::ELOOP) || code == Some(libc::ENOTDIR))
            && self
                .lstat(name)
                .is_ok_and(|s| s.st_mode & libc::S_IFMT == libc::S_IFLNK)
        {
            return symlink_error(&self.path.join(std::ffi::OsStr::from_bytes(name)));
        }
        err
    }

    /// `openat(name, flags | O_NOFOLLOW | O_CLOEXEC)` for one component.
    fn open_raw(&self, name: &[u8], flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
        let c = c_name(name)?;
        // SAFETY: a valid fd and name.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(self.explain(name, last_error()));
        }
        // SAFETY: a fresh fd we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// One child directory, created (mode 0755) when `create` is set and it is missing.
    pub fn child_dir(&self, name: &[u8], create: bool) -> io::Result<Dir> {
        if create {
            let c = c_name(name)?;
            // SAFETY: a valid fd and name.
            let rc = unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), 0o755) };
            if rc < 0 {
                let err = last_error();
                if err.raw_os_error() != Some(libc::EEXIST) {
                    return Err(err);
                }
            }
        }
        let fd = self.open_raw(name, DIR_FLAGS, 0)?;
        Ok(Dir {
            fd,
            path: self.path.join(std::ffi::OsStr::from_bytes(name)),
        })
    }

    /// The directory at `rel` beneath this one (created with its parents when `create`).
    pub fn open_dir(&self, rel: &RelPath, create: bool) -> io::Result<Dir> {
        let mut dir = self.try_clone()?;
        for part in rel.parts() {
            dir = dir.child_dir(part.as_bytes(), create)?;
        }
        Ok(dir)
    }

    /// What `rel` names, without following links and without writing anything: an error
    /// when one of its components (the last included) is a symlink.
    pub fn probe(&self, rel: &RelPath) -> io::Result<Kind> {
        let Some((last, parents)) = rel.parts().split_last() else {
            return Ok(Kind::Dir);
        };
        let mut dir = self.try_clone()?;
        for part in parents {
            dir = match dir.child_dir(part.as_bytes(), false) {
                Ok(next) => next,
                Err(err) if is_symlink_error(&err) => return Err(err),
                Err(err)
                    if matches!(err.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) =>
                {
                    return Ok(Kind::Missing);
                }
                Err(err) => return Err(err),
            };
        }
        match dir.lstat(last.as_bytes()) {
            Ok(stat) => Ok(match stat.st_mode & libc::S_IFMT {
                libc::S_IFLNK => return Err(symlink_error(&dir.path.join(last))),
                libc::S_IFDIR => Kind::Dir,
                libc::S_IFREG => Kind::File,
                _ => Kind::Other,
            }),
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => Ok(Kind::Missing),
            Err(err) => Err(err),
        }
    }

    /// Opens the file at `rel` for reading; every component, the last included, must not be a
    /// link. Never blocks on a FIFO. (The runtime reads through handles it holds; tests use
    /// this to check the path rule.)
    #[cfg(test)]
    pub fn open_read(&self, rel: &RelPath) -> io::Result<File> {
        let Some((last, parents)) = rel.parts().split_last() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no file name"));
        };
        let parents = RelPath {
            parts: parents.to_vec(),
        };
        let dir = self.open_dir(&parents, false)?;
        dir.open_file_read(last.as_bytes())
    }

    /// Opens one file of this directory for reading (not a link; never blocks on a FIFO).
    pub fn open_file_read(&self, name: &[u8]) -> io::Result<File> {
        let fd = self.open_raw(name, libc::O_RDONLY | libc::O_NONBLOCK, 0)?;
        Ok(File::from(fd))
    }

    /// Opens (creating it with `mode` if needed) one file of this directory for appending.
    /// Only a regular file of this directory alone is written to: see [`Dir::open_own`].
    pub fn open_append(&self, name: &str, mode: libc::mode_t) -> io::Result<File> {
        self.open_own(name, libc::O_WRONLY | libc::O_APPEND, mode)
    }

    /// Opens (creating it if needed) one file of this directory for reading and writing,
    /// without truncating it (a lock file). See [`Dir::open_own`].
    pub fn open_rw(&self, name: &str, mode: libc::mode_t) -> io::Result<File> {
        self.open_own(name, libc::O_RDWR, mode)
    }

    /// Opens one file of this directory for writing in place (`flags`: the access mode and
    /// `O_APPEND`), creating it with `mode` if needed. Whatever is at the name must be a
    /// regular file with no other name: a FIFO, socket or device (a write open of a FIFO
    /// blocks until a reader comes; of a device, writes to it) or a file with other hard
    /// links (writing would change the file at those other names, outside this directory)
    /// is an error naming it, never opened; the runtime removes no entry it cannot prove it
    /// made. The file opened is checked again through its handle, so a swap in between is an
    /// error too, never a write elsewhere.
    pub fn open_own(&self, name: &str, flags: libc::c_int, mode: libc::mode_t) -> io::Result<File> {
        let bytes = name.as_bytes();
        match self.lstat(bytes) {
            Ok(stat) if stat.st_mode & libc::S_IFMT == libc::S_IFLNK => {
                return Err(symlink_error(&self.path.join(name)));
            }
            Ok(stat) if !is_own_file(&stat) => return Err(not_own_error(&self.path.join(name))),
            Ok(_) => {}
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {}
            Err(err) => return Err(err),
        }
        // O_NONBLOCK: should a FIFO be swapped in after the check, the open fails rather than
        // waits (ENXIO); on a regular file it changes nothing.
        let fd = self.open_raw(bytes, flags | libc::O_CREAT | libc::O_NONBLOCK, mode)?;
        let file = File::from(fd);
        // SAFETY: zeroed plain data, filled by the call.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid fd and out-pointer.
        if unsafe { libc::fstat(file.as_raw_fd(), &mut stat) } < 0 {
            return Err(last_error());
        }
        if !is_own_file(&stat) {
            return Err(not_own_error(&self.path.join(name)));
        }
        // SAFETY: a valid fd; clears O_NONBLOCK for ordinary blocking writes.
        unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & libc::O_APPEND) };
        Ok(file)
    }

    /// Whether the file at `rel` may be written in place by [`Dir::open_own`]: missing, or a
    /// regular file with no other name, reached through no link. Writes nothing.
    pub fn probe_own(&self, rel: &RelPath) -> io::Result<()> {
        match self.probe(rel)? {
            Kind::Missing => Ok(()),
            Kind::Dir => Err(io::Error::other(format!(
                "{} is a directory, where the runtime writes a file",
                rel.under(&self.path).display()
            ))),
            Kind::File | Kind::Other => {
                let (last, parents) = rel.parts().split_last().expect("not the root");
                let parent = self.open_dir(
                    &RelPath {
                        parts: parents.to_vec(),
                    },
                    false,
                )?;
                let stat = parent.lstat(last.as_bytes())?;
                if is_own_file(&stat) {
                    Ok(())
                } else {
                    Err(not_own_error(&rel.under(&self.path)))
                }
            }
        }
    }

    /// Sets this directory's permission bits (`fchmod` on the handle, never through a path).
    pub fn set_mode(&self, mode: libc::mode_t) -> io::Result<()> {
        // SAFETY: a valid fd.
        if unsafe { libc::fchmod(self.fd.as_raw_fd(), mode) } < 0 {
            return Err(last_error());
        }
        Ok(())
    }

    /// Reads one small regular file of this directory (not a link, not a FIFO or device), at
    /// most `limit` bytes.
    pub fn read(&self, name: &str, limit: u64) -> io::Result<Vec<u8>> {
        let file = self.open_file_read(name.as_bytes())?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::other(format!(
                "{} is not a regular file",
                self.path.join(name).display()
            )));
        }
        let mut bytes = Vec::new();
        file.take(limit).read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// Replaces one file of this directory with `contents` (mode `mode`): a fresh temporary
    /// (`O_EXCL`, never through a link), synced, then renamed over the name, so the file is
    /// either old or new and a link at the name is replaced, not followed.
    pub fn replace(&self, name: &str, contents: &[u8], mode: libc::mode_t) -> io::Result<()> {
        let temp = format!(".{name}.tmp{}", std::process::id());
        let _ = self.remove_file(&temp);
        let fd = self.open_raw(
            temp.as_bytes(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            mode,
        )?;
        let mut file = File::from(fd);
        let written = file.write_all(contents).and_then(|()| file.sync_all());
        if let Err(err) = written {
            let _ = self.remove_file(&temp);
            return Err(err);
        }
        self.rename(&temp, name)
    }

    /// The entries of this directory (without `.` and `..`), each with its `lstat` (links are
    /// reported as links, never followed); entries removed while listing are left out.
    pub fn list(&self) -> io::Result<Vec<(Vec<u8>, libc::stat)>> {
        // A new open file description: reading entries moves its position.
        let fd = self.open_raw(b".", DIR_FLAGS, 0)?;
        // SAFETY: a valid fd we own; fdopendir takes it over (closed by closedir).
        let stream = unsafe { libc::fdopendir(std::os::fd::IntoRawFd::into_raw_fd(fd)) };
        if stream.is_null() {
            return Err(last_error());
        }
        let mut names = Vec::new();
        loop {
            // SAFETY: a valid stream; the entry stays valid until the next readdir.
            let entry = unsafe { libc::readdir(stream) };
            if entry.is_null() {
                break;
            }
            // SAFETY: d_name is NUL-terminated.
            let name = unsafe { std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()) }.to_bytes();
            if name != b"." && name != b".." {
                names.push(name.to_vec());
            }
        }
        // SAFETY: a valid stream, closed once.
        unsafe { libc::closedir(stream) };
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            match self.lstat(&name) {
                Ok(stat) => entries.push((name, stat)),
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(entries)
    }

    /// `renameat` within this directory.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (c_name(from.as_bytes())?, c_name(to.as_bytes())?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: a valid fd and names.
        let rc = unsafe { libc::renameat(fd, from.as_ptr(), fd, to.as_ptr()) };
        if rc < 0 {
            return Err(last_error());
        }
        Ok(())
    }

    /// Removes one file (or link: the link itself) of this directory.
    pub fn remove_file(&self, name: &str) -> io::Result<()> {
        let c = c_name(name.as_bytes())?;
        // SAFETY: a valid fd and name.
        let rc = unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) };
        if rc < 0 {
            return Err(last_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_rules() {
        assert_eq!(RelPath::parse("bin/x").unwrap().to_string(), "bin/x");
        for bad in [
            "", "/etc/x", "a/../b", "..", "a\\b", "a\0b", "../x", ".", "./bin", "bin//x", "bin/",
        ] {
            assert!(RelPath::parse(bad).is_err(), "{bad:?}");
        }
        for bad in ["", ".", "..", "a/b", "a\\b", "a\0"] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_file_name("api-server_2.x").is_ok());
    }

    #[test]
    fn links_are_never_followed() {
        let root = std::env::temp_dir().join(format!("xbundle-confine-{}", std::process::id()));
        let outside = root.with_extension("outside");
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::remove_dir_all(&outside);
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("victim"), "v").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("linkdir")).unwrap();
        std::os::unix::fs::symlink(outside.join("victim"), root.join("real/linkfile")).unwrap();
        let dir = Dir::open(&root).unwrap();
        let rel = |t: &str| RelPath::parse(t).unwrap();

        assert_eq!(dir.probe(&rel("real")).unwrap(), Kind::Dir);
        assert_eq!(dir.probe(&rel("real/none/x")).unwrap(), Kind::Missing);
        for path in ["linkdir", "linkdir/victim", "real/linkfile"] {
            let err = dir.probe(&rel(path)).unwrap_err();
            assert!(is_symlink_error(&err), "{path}: {err}");
        }
        assert!(dir.open_dir(&rel("linkdir/new"), true).is_err());
        assert!(dir.open_read(&rel("real/linkfile")).is_err());
        let real = dir.open_dir(&rel("real"), false).unwrap();
        assert!(real.open_append("linkfile", 0o644).is_err());
        // A hard link to a file outside, a FIFO: neither is written to, nor removed.
        std::fs::hard_link(outside.join("victim"), root.join("real/hard")).unwrap();
        let fifo = c_name(root.join("real/fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        for name in ["hard", "fifo"] {
            let err = real.open_append(name, 0o644).unwrap_err();
            assert!(
                err.to_string().contains("not a regular file of its own"),
                "{err}"
            );
            assert!(real.open_rw(name, 0o644).is_err());
            assert!(dir.probe_own(&rel(&format!("real/{name}"))).is_err());
        }
        assert!(dir.probe_own(&rel("real/linkfile")).is_err());
        assert!(dir.probe_own(&rel("real/new")).is_ok());
        std::fs::remove_file(root.join("real/hard")).unwrap();
        std::fs::remove_file(root.join("real/fifo")).unwrap();
        // Replacing a link replaces the link, never its target.
        real.replace("linkfile", b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"v");
        assert_eq!(real.read("linkfile", 10).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&outside).unwrap();
    }
}
