//! The stat cache: unchanged files are not re-hashed.
//!
//! Each entry maps a root-relative path to the `(size, mtime ns, ctime ns, inode)` seen when the
//! file was hashed, and the digest. A lookup whose stat matches returns the stored digest.
//!
//! Racy-clean rule (after git): at the start of every run the engine writes a byte to a clock
//! file and reads back its mtime, so the run knows "now" on the file system's own (possibly
//! coarse) clock. An entry is trusted only if the file's mtime is strictly older than the clock
//! of the run that hashed it. A file written in the same timestamp tick as the hashing could be
//! rewritten without its stat changing, so such an entry is stored untrusted and re-hashed on
//! the next lookup (and trusted once that later run sees it old enough).
//!
//! Known limit: a tool that rewrites a file and then resets its mtime, size, ctime and inode to
//! the old values is not detected (ctime cannot be set from user space, so this needs root).

use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::confine::{ConfineError, Dir};
use crate::digest::{Digest, hash_reader};

const FORMAT: u32 = 2;

/// The stat cache's file in the state directory.
pub const FILE: &str = "stat-cache";
/// The clock probe's file in the state directory.
pub const CLOCK: &str = "clock";
/// The largest stat cache read (about two million files); a larger one is an empty cache.
const MAX_BYTES: u64 = 256 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    pub executable: bool,
}

impl FileStat {
    pub fn of(metadata: &Metadata) -> FileStat {
        FileStat {
            size: metadata.len(),
            mtime_ns: metadata.mtime() * 1_000_000_000 + metadata.mtime_nsec(),
            ctime_ns: metadata.ctime() * 1_000_000_000 + metadata.ctime_nsec(),
            inode: metadata.ino(),
            executable: metadata.mode() & 0o111 != 0,
        }
    }

    /// From an `fstatat` result (see [`crate::confine`]).
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)] // field types vary by target
    pub fn from_stat(stat: &rustix::fs::Stat) -> FileStat {
        FileStat {
            size: stat.st_size as u64,
            mtime_ns: stat.st_mtime as i64 * 1_000_000_000 + stat.st_mtime_nsec as i64,
            ctime_ns: stat.st_ctime as i64 * 1_000_000_000 + stat.st_ctime_nsec as i64,
            inode: stat.st_ino as u64,
            executable: stat.st_mode as u32 & 0o111 != 0,
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Entry {
    stat: FileStat,
    /// Raw SHA-256 (32 bytes on disk, not 64 hex characters).
    digest: [u8; 32],
    trusted: bool,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    format: u32,
    /// Sorted by path.
    entries: Vec<(String, Entry)>,
}

/// Path -> (stat, digest), shared by all worker threads of a run.
///
/// What was loaded stays in a sorted vector searched without locking; what this run records goes
/// to an overlay behind a read-write lock, which a no-op run only ever reads.
pub struct StatCache {
    base: Vec<(String, Entry)>,
    overlay: RwLock<HashMap<String, Entry>>,
    /// This run's clock, in ns, on the file system's clock.
    run_clock_ns: i64,
    dirty: AtomicBool,
}

/// What a lookup found.
#[derive(Clone, Copy, Debug)]
pub struct Hashed {
    pub digest: Digest,
    pub stat: FileStat,
    /// Whether the digest came from the cache (no read of the file).
    pub from_cache: bool,
}

impl StatCache {
    /// Loads the cache `stat-cache` of the directory `dir` (an unreadable, foreign or oversized
    /// file, or anything but a regular file, is an empty cache) and takes this run's clock by
    /// writing `clock` there.
    pub fn load(dir: &Dir) -> io::Result<StatCache> {
        let mut base: Vec<(String, Entry)> = dir
            .read_file(FILE, MAX_BYTES)
            .ok()
            .flatten()
            .and_then(|bytes| postcard::from_bytes::<OnDisk>(&bytes).ok())
            .filter(|on_disk| on_disk.format == FORMAT)
            .map(|on_disk| on_disk.entries)
            .unwrap_or_default();
        if !base.is_sorted_by(|a, b| a.0 < b.0) {
            base.sort_by(|a, b| a.0.cmp(&b.0));
            base.dedup_by(|a, b| a.0 == b.0);
        }
        Ok(StatCache {
            base,
            overlay: RwLock::new(HashMap::new()),
            run_clock_ns: file_system_now(dir)?,
            dirty: AtomicBool::new(false),
        })
    }

    /// An empty cache that trusts nothing it records (for one-off hashing).
    pub fn ephemeral() -> StatCache {
        StatCache {
            base: Vec::new(),
            overlay: RwLock::new(HashMap::new()),
            run_clock_ns: i64::MIN,
            dirty: AtomicBool::new(false),
        }
    }

    /// The digest of the file at `absolute` (known to the cache as `relative`), hashing it only
    /// when its stat changed or its entry is not trusted.
    pub fn digest(&self, relative: &str, absolute: &Path) -> io::Result<Hashed> {
        let metadata = fs::metadata(absolute)?;
        self.digest_with_stat(relative, absolute, FileStat::of(&metadata))
    }

    /// [`StatCache::digest`] with the stat already taken (by the walk that found the file).
    pub fn digest_with_stat(
        &self,
        relative: &str,
        absolute: &Path,
        stat: FileStat,
    ) -> io::Result<Hashed> {
        self.digest_with(relative, stat, &mut || fs::File::open(absolute))
    }

    /// [`StatCache::digest_with_stat`] where `open` opens the file when it must be read (e.g.
    /// through [`crate::confine`], never through a link).
    pub fn digest_with(
        &self,
        relative: &str,
        stat: FileStat,
        open: &mut dyn FnMut() -> io::Result<fs::File>,
    ) -> io::Result<Hashed> {
        if let Some(entry) = self.lookup(relative)
            && entry.trusted
            && entry.stat == stat
        {
            return Ok(Hashed {
                digest: Digest::from_raw(entry.digest),
                stat,
                from_cache: true,
            });
        }
        let mut file = open()?;
        let (digest, _) = hash_reader(&mut file)?;
        // Stat the open file again: if it changed while it was read, record nothing trusted.
        let after = FileStat::of(&file.metadata()?);
        let trusted = after == stat && stat.mtime_ns < self.run_clock_ns;
        self.record(relative, after, digest, trusted);
        Ok(Hashed {
            digest,
            stat: after,
            from_cache: false,
        })
    }

    /// This run's clock (ns, on the file system's clock): every file written during the run is
    /// at least this new.
    pub fn run_clock_ns(&self) -> i64 {
        self.run_clock_ns
    }

    /// Records a digest computed elsewhere (e.g. while writing the file).
    pub fn record(&self, relative: &str, stat: FileStat, digest: Digest, trusted: bool) {
        let entry = Entry {
            stat,
            digest: *digest.as_bytes(),
            trusted: trusted && stat.mtime_ns < self.run_clock_ns,
        };
        let unchanged = self.lookup(relative).is_some_and(|old| {
            old.stat == entry.stat && old.digest == entry.digest && old.trusted == entry.trusted
        });
        if !unchanged {
            let mut overlay = self.overlay.write().unwrap_or_else(|e| e.into_inner());
            overlay.insert(relative.to_string(), entry);
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    fn lookup(&self, relative: &str) -> Option<Entry> {
        {
            let overlay = self.overlay.read().unwrap_or_else(|e| e.into_inner());
            if !overlay.is_empty()
                && let Some(entry) = overlay.get(relative)
            {
                return Some(*entry);
            }
        }
        self.base
            .binary_search_by(|(path, _)| path.as_str().cmp(relative))
            .ok()
            .map(|index| self.base[index].1)
    }

    /// Writes the cache back to `stat-cache` in `dir` if anything changed.
    pub fn save(&self, dir: &Dir) -> io::Result<()> {
        if !self.dirty.load(Ordering::Relaxed) {
            return Ok(());
        }
        let overlay = self.overlay.read().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<(String, Entry)> = self
            .base
            .iter()
            .filter(|(path, _)| !overlay.contains_key(path))
            .cloned()
            .chain(overlay.iter().map(|(k, v)| (k.clone(), *v)))
            .collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        let bytes = postcard::to_stdvec(&OnDisk {
            format: FORMAT,
            entries: list,
        })
        .map_err(io::Error::other)?;
        write_in(dir, FILE, &bytes).map(|_| ())
    }
}

/// Writes `name` in `dir` atomically (mode 0644, never through a link).
fn write_in(dir: &Dir, name: &str, bytes: &[u8]) -> io::Result<FileStat> {
    dir.write_file(name, 0o644, |file: &mut fs::File| {
        file.write_all(bytes).map_err(|source| ConfineError::Io {
            path: name.to_string(),
            source,
        })
    })
    .map_err(io::Error::other)
}

/// "Now" on the file system's clock: write the file `clock` in `dir` and read back its mtime.
fn file_system_now(dir: &Dir) -> io::Result<i64> {
    Ok(write_in(dir, CLOCK, b"clock\n")?.mtime_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_file_is_not_rehashed_once_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.txt");
        fs::write(&file, b"hello").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let state = Dir::open_root(dir.path()).unwrap();
        let cache = StatCache::load(&state).unwrap();
        let first = cache.digest("a.txt", &file).unwrap();
        assert!(!first.from_cache);
        assert_eq!(first.digest, Digest::of_bytes(b"hello"));
        let second = cache.digest("a.txt", &file).unwrap();
        assert!(second.from_cache, "an old file is trusted after one hash");
        cache.save(&state).unwrap();
        let reloaded = StatCache::load(&state).unwrap();
        assert!(reloaded.digest("a.txt", &file).unwrap().from_cache);
    }

    #[test]
    fn racy_file_is_rehashed_and_change_detected() {
        let dir = tempfile::tempdir().unwrap();
        let state = Dir::open_root(dir.path()).unwrap();
        let cache = StatCache::load(&state).unwrap();
        // Written after the run's clock: racy, never trusted by this run.
        let file = dir.path().join("b.txt");
        fs::write(&file, b"one").unwrap();
        let first = cache.digest("b.txt", &file).unwrap();
        // Same size, possibly the same mtime tick: must still be seen.
        fs::write(&file, b"two").unwrap();
        let second = cache.digest("b.txt", &file).unwrap();
        assert!(!second.from_cache);
        assert_ne!(first.digest, second.digest);
        assert_eq!(second.digest, Digest::of_bytes(b"two"));
    }
}
