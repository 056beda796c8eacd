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
use std::fs::{self, Metadata, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, hash_file};
use crate::fsutil::write_atomic;

const FORMAT: u32 = 1;

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
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Entry {
    stat: FileStat,
    digest: Digest,
    trusted: bool,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    format: u32,
    entries: Vec<(String, Entry)>,
}

/// Path -> (stat, digest), shared by all worker threads of a run.
pub struct StatCache {
    entries: Mutex<HashMap<String, Entry>>,
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
    /// Loads the cache at `path` (an unreadable or foreign file is an empty cache) and takes this
    /// run's clock by writing to `clock_path`.
    pub fn load(path: &Path, clock_path: &Path) -> io::Result<StatCache> {
        let entries = fs::read(path)
            .ok()
            .and_then(|bytes| postcard::from_bytes::<OnDisk>(&bytes).ok())
            .filter(|on_disk| on_disk.format == FORMAT)
            .map(|on_disk| on_disk.entries.into_iter().collect())
            .unwrap_or_default();
        Ok(StatCache {
            entries: Mutex::new(entries),
            run_clock_ns: file_system_now(clock_path)?,
            dirty: AtomicBool::new(false),
        })
    }

    /// An empty cache that trusts nothing it records (for one-off hashing).
    pub fn ephemeral() -> StatCache {
        StatCache {
            entries: Mutex::new(HashMap::new()),
            run_clock_ns: i64::MIN,
            dirty: AtomicBool::new(false),
        }
    }

    /// The digest of the file at `absolute` (known to the cache as `relative`), hashing it only
    /// when its stat changed or its entry is not trusted.
    pub fn digest(&self, relative: &str, absolute: &Path) -> io::Result<Hashed> {
        let metadata = fs::metadata(absolute)?;
        self.digest_with_metadata(relative, absolute, &metadata)
    }

    pub fn digest_with_metadata(
        &self,
        relative: &str,
        absolute: &Path,
        metadata: &Metadata,
    ) -> io::Result<Hashed> {
        let stat = FileStat::of(metadata);
        if let Some(entry) = self.lookup(relative)
            && entry.trusted
            && entry.stat == stat
        {
            return Ok(Hashed {
                digest: entry.digest,
                stat,
                from_cache: true,
            });
        }
        let (digest, _) = hash_file(absolute)?;
        // Re-stat: if the file changed while it was read, record nothing trustworthy.
        let after = FileStat::of(&fs::metadata(absolute)?);
        let trusted = after == stat && stat.mtime_ns < self.run_clock_ns;
        self.record(relative, after, digest, trusted);
        Ok(Hashed {
            digest,
            stat: after,
            from_cache: false,
        })
    }

    /// Records a digest computed elsewhere (e.g. while writing the file).
    pub fn record(&self, relative: &str, stat: FileStat, digest: Digest, trusted: bool) {
        let entry = Entry {
            stat,
            digest,
            trusted: trusted && stat.mtime_ns < self.run_clock_ns,
        };
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let changed = entries
            .get(relative)
            .is_none_or(|old| old.stat != entry.stat || old.digest != digest || !old.trusted);
        if changed {
            entries.insert(relative.to_string(), entry);
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    fn lookup(&self, relative: &str) -> Option<Entry> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(relative).copied()
    }

    /// Writes the cache back if anything changed. Entries for files that no longer exist are
    /// dropped when `live` says so.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        if !self.dirty.load(Ordering::Relaxed) {
            return Ok(());
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<(String, Entry)> = entries.iter().map(|(k, v)| (k.clone(), *v)).collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        let bytes = postcard::to_stdvec(&OnDisk {
            format: FORMAT,
            entries: list,
        })
        .map_err(io::Error::other)?;
        write_atomic(path, &bytes)
    }
}

/// "Now" on the file system's clock: write to a file and read back its mtime.
fn file_system_now(clock_path: &Path) -> io::Result<i64> {
    if let Some(dir) = clock_path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(clock_path)?;
    file.write_all(b"clock\n")?;
    let metadata = file.metadata()?;
    Ok(FileStat::of(&metadata).mtime_ns)
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
        let cache_path = dir.path().join("stat");
        let clock = dir.path().join("clock");
        let cache = StatCache::load(&cache_path, &clock).unwrap();
        let first = cache.digest("a.txt", &file).unwrap();
        assert!(!first.from_cache);
        assert_eq!(first.digest, Digest::of_bytes(b"hello"));
        let second = cache.digest("a.txt", &file).unwrap();
        assert!(second.from_cache, "an old file is trusted after one hash");
        cache.save(&cache_path).unwrap();
        let reloaded = StatCache::load(&cache_path, &clock).unwrap();
        assert!(reloaded.digest("a.txt", &file).unwrap().from_cache);
    }

    #[test]
    fn racy_file_is_rehashed_and_change_detected() {
        let dir = tempfile::tempdir().unwrap();
        let cache_path = dir.path().join("stat");
        let clock = dir.path().join("clock");
        let cache = StatCache::load(&cache_path, &clock).unwrap();
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
