//! The stat cache: unchanged files are not re-hashed.
//!
//! Each entry maps a root-relative path to the `(size, mtime ns, ctime ns, inode)` seen when the
//! file was hashed, and the digest. A lookup whose stat matches returns the stored digest.
//!
//! Racy-clean rule (after git): a digest is trusted only if the file's mtime is strictly older
//! than a reading of the file system's own (possibly coarse) clock taken **before the read that
//! computed it** began. A later write to the file then gets an mtime at least that clock, so its
//! stat differs; a file written in the same timestamp tick as its hashing could be rewritten
//! without its stat changing, so such an entry is stored untrusted and re-hashed on the next
//! lookup (and trusted once a later read sees it old enough).
//!
//! The clock ([`Clock`]) is read by writing a byte to a probe file in the state directory and
//! reading back its mtime, the file's times queried before the write. With multigrain
//! timestamps (Linux 6.13 and later: ext4, xfs, btrfs, tmpfs), a change is stamped with the
//! coarse clock (or the latest fine-grained time handed out, if later) unless that would not
//! change the file's times and they were queried since: such a reading equals the mtime of a
//! file written in the same tick before it (measured: 1902 of 2000 tries), which is then
//! untrusted. For a task's outputs, once its command has exited
//! ([`StatCache::clock_after_writers`]), the probe is queried and written a second time: that
//! write, in the same tick, is stamped with a fine-grained time, later than the outputs (2000 of
//! 2000 tries) and a floor for every stamp after it, so they are trusted at once instead of read
//! again at the end of the run. Not for other files: a write is stamped before its bytes are
//! copied, and a file still being written could be stamped before such a reading and read half
//! done. Without multigrain timestamps, both writes get the coarse time. The probe file is
//! created once per run, when
//! first needed (a temporary name, `.tmp-xbundle-…-clock`: removed when the cache is dropped,
//! or by the next run's cleanup after a kill), so reading the clock allocates no inode (new
//! inodes are costly on ext4 after many deletions). It is read lazily, when a file must be hashed and no reading yet is newer
//! than its mtime: a no-op run, which hashes nothing, writes nothing at all (no clock, no cache).
//! A digest computed elsewhere ([`StatCache::record`]) is trusted only against a [`Clock`] its
//! caller took before that read.
//!
//! On disk (`stat-cache`, format 3): the magic `xbstat3\n`, then one record per path in strictly
//! ascending byte order (`u16` path length, the path, `size`, `mtime ns`, `ctime ns`, `inode` as
//! little-endian 64-bit numbers, a flags byte: 1 executable, 2 trusted, the 32 raw digest bytes),
//! then the record count (`u64`) and `xbstat3E`. The file is loaded with one read and searched in
//! place (an index of record offsets; no allocation per entry), and written by streaming the
//! merge of the loaded records and this run's changes into a temporary file renamed over it.
//! A file that is not exactly this (another format, truncated, unsorted, oversized, not a regular
//! file) is an empty cache: every file is hashed again, nothing is trusted wrongly.
//!
//! A run that changed a few entries (an edit) does not rewrite the whole file (megabytes for
//! 100,000 files, and a rename over an existing file makes ext4 flush it at once): it writes
//! `stat-cache-delta` (magic `xbsdel1\n`, the identity of the full file it extends: its inode,
//! size, mtime and ctime; the records of every run since, in any order; the record count and
//! `xbsdel1E`), atomically like the full file, while it stays small (64 KiB, or 1/16 of the full
//! file). Lookups see this run's records, then the delta's, then the full file's. A delta whose
//! identity is not the full file's as loaded (written before another full rewrite, by a version
//! that knows no delta) or that is malformed is ignored, and the next save rewrites the full file
//! (merging the delta only when it was valid), then removes the delta. A version that ignores the
//! delta reads the full file alone: older digests whose stat no longer matches, re-hashed.
//!
//! What a run records is kept in memory as records too, in a compact encoding (the ctime left
//! out when it is the mtime, size and inode as LEB128), in 256 KiB chunks with a table of their
//! positions (see [`Overlay`]): about 70 bytes a file, so a cold run over 100,000 files does not
//! hold 100,000 owned paths.
//!
//! Known limit: a tool that rewrites a file and then resets its mtime, size, ctime and inode to
//! the old values is not detected (ctime cannot be set from user space, so this needs root).

use std::fs::{self, Metadata};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::confine::{ConfineError, Dir, Kind, Listed, ListingCache};
use crate::digest::{Digest, hash_many, hash_reader_expecting, read_if_cached, start_reading};
use crate::fsutil::BootMark;
use crate::listings::Listings;

/// The stat cache's file in the state directory.
pub const FILE: &str = "stat-cache";
/// What runs changed since [`FILE`] was last written whole (see the module docs).
pub const DELTA: &str = "stat-cache-delta";
/// The clock probe's file in the state directory (written by older versions; removed by
/// `clean_state`).
pub const CLOCK: &str = "clock";
/// The largest stat cache read (about two million files); a larger one is an empty cache.
const MAX_BYTES: u64 = 256 << 20;
const MAGIC: &[u8; 8] = b"xbstat3\n";
const MAGIC_END: &[u8; 8] = b"xbstat3E";
const DELTA_MAGIC: &[u8; 8] = b"xbsdel1\n";
const DELTA_MAGIC_END: &[u8; 8] = b"xbsdel1E";
/// A delta is written while it stays under this (or 1/16 of the full file, if larger); beyond,
/// the full file is rewritten and the delta removed.
const DELTA_MIN_LIMIT: usize = 64 << 10;
/// A record without its path: length, size, mtime, ctime, inode, flags, digest.
const FIXED: usize = 2 + 8 * 4 + 1 + 32;
const EXECUTABLE: u8 = 1;
const TRUSTED: u8 = 2;
/// How long a clock reading is reused for a file at least as new, before reading it again.
const REREAD_AFTER: Duration = Duration::from_millis(2);

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

#[derive(Clone, Copy, Debug)]
struct Entry {
    stat: FileStat,
    /// Raw SHA-256.
    digest: [u8; 32],
    trusted: bool,
}

/// A reading of the file system's clock (ns): every file written after it was taken has an
/// mtime at least this.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Clock(i64);

impl Clock {
    /// Trusts nothing.
    pub const NEVER: Clock = Clock(i64::MIN);

    pub fn ns(self) -> i64 {
        self.0
    }
}

/// The loaded file: its bytes, the offset of each record in path order, and an open-addressing
/// hash table of record indices (`u32::MAX`: empty slot; a power of two, at least twice the
/// record count), so a lookup reads one or two records instead of a binary search's twenty.
#[derive(Default)]
struct Base {
    bytes: Vec<u8>,
    offsets: Vec<u32>,
    table: Vec<u32>,
}

/// Whether a file (or directory) of mtime `mtime_ns` is older than the clock reading `clock_ns`
/// in the sense of the racy-clean rule: every later change to it gives it a newer mtime. The
/// clock is read on the state directory's file system, in nanoseconds; a file on a file system
/// with whole-second timestamps (ext4 with 128-byte inodes, ext3, HFS+, FAT's two seconds, many
/// network and FUSE file systems) keeps its mtime for changes later in the same second or two,
/// so a whole-second mtime must be two seconds older than the reading. (A fine-grained mtime
/// that happens to fall on a whole second only waits longer.)
pub(crate) fn older_than(mtime_ns: i64, clock_ns: i64) -> bool {
    const SECOND: i64 = 1_000_000_000;
    if mtime_ns.rem_euclid(SECOND) == 0 {
        mtime_ns.saturating_add(2 * SECOND) <= clock_ns
    } else {
        mtime_ns < clock_ns
    }
}

/// FNV-1a, 64 bits: paths are short, and the table only needs a spread, not a defence (a
/// collision costs a comparison, never a wrong answer).
fn hash(path: &[u8]) -> u64 {
    path.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Base {
    /// Parses a whole file; `None` unless it is exactly format 3 with sorted, unique paths.
    fn parse(bytes: Vec<u8>) -> Option<Base> {
        let body_end = bytes.len().checked_sub(16)?;
        if bytes.len() > u32::MAX as usize
            || !bytes.starts_with(MAGIC)
            || &bytes[body_end + 8..] != MAGIC_END
        {
            return None;
        }
        let count = u64::from_le_bytes(bytes[body_end..body_end + 8].try_into().ok()?);
        let mut offsets = Vec::with_capacity(count.min(bytes.len() as u64 / FIXED as u64) as usize);
        let mut at = MAGIC.len();
        let mut previous: Option<&[u8]> = None;
        while at < body_end {
            let len = u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?) as usize;
            let end = at.checked_add(FIXED + len)?;
            if end > body_end {
                return None;
            }
            let path = &bytes[at + 2..at + 2 + len];
            if previous.is_some_and(|previous| previous >= path) {
                return None;
            }
            previous = Some(path);
            offsets.push(at as u32);
            at = end;
        }
        if at != body_end || offsets.len() as u64 != count {
            return None;
        }
        let mut base = Base {
            bytes,
            offsets,
            table: Vec::new(),
        };
        base.table = vec![u32::MAX; (base.offsets.len() * 2).next_power_of_two()];
        let mask = base.table.len() - 1;
        for (index, &offset) in base.offsets.iter().enumerate() {
            let mut slot = hash(base.path(offset)) as usize & mask;
            while base.table[slot] != u32::MAX {
                slot = (slot + 1) & mask;
            }
            base.table[slot] = index as u32;
        }
        Some(base)
    }

    fn path(&self, offset: u32) -> &[u8] {
        record_path(&self.bytes, offset as usize)
    }

    fn entry(&self, offset: u32) -> Entry {
        record_entry(&self.bytes, offset as usize)
    }

    /// The record of `relative`. Lookups mostly come in path order, as the records are stored
    /// (a walk lists each directory sorted): the record after this thread's last hit is tried
    /// first, so a run reads the records in sequence instead of hashing each path and reaching
    /// two random places of a file of megabytes. Any other path goes through the hash table.
    fn lookup(&self, relative: &str) -> Option<Entry> {
        thread_local! {
            /// (the [`Base`] it was found in, by address; the index after the last hit)
            static NEXT: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, 0)) };
        }
        if self.table.is_empty() {
            return None;
        }
        let me = self as *const Base as usize;
        let path = relative.as_bytes();
        let hit = |index: usize| -> Entry {
            NEXT.with(|next| next.set((me, index + 1)));
            self.entry(self.offsets[index])
        };
        // A stale address (another base since) costs a comparison, never a wrong answer.
        let (owner, next) = NEXT.with(std::cell::Cell::get);
        if owner == me
            && let Some(&offset) = self.offsets.get(next)
            && self.path(offset) == path
        {
            return Some(hit(next));
        }
        let mask = self.table.len() - 1;
        let mut slot = hash(path) as usize & mask;
        loop {
            let index = self.table[slot];
            if index == u32::MAX {
                return None;
            }
            if self.path(self.offsets[index as usize]) == path {
                return Some(hit(index as usize));
            }
            slot = (slot + 1) & mask;
        }
    }
}

/// The path of the record at `at` in `bytes` (a well-formed record: see [`Base::parse`]).
fn record_path(bytes: &[u8], at: usize) -> &[u8] {
    let len = u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
    &bytes[at + 2..at + 2 + len]
}

/// The entry of the record at `at` in `bytes`.
fn record_entry(bytes: &[u8], at: usize) -> Entry {
    let len = u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
    let fields = &bytes[at + 2 + len..at + FIXED + len];
    let number =
        |i: usize| u64::from_le_bytes(fields[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    let flags = fields[32];
    Entry {
        stat: FileStat {
            size: number(0),
            mtime_ns: number(1) as i64,
            ctime_ns: number(2) as i64,
            inode: number(3),
            executable: flags & EXECUTABLE != 0,
        },
        digest: fields[33..65].try_into().expect("32 bytes"),
        trusted: flags & TRUSTED != 0,
    }
}

/// What this run recorded: records in a compact encoding of their own ([`encode_compact`]),
/// appended to buffers of [`CHUNK`] bytes, found through a table of their positions keyed by
/// the path's hash. No allocation per entry (about 70 bytes a file, where a map of owned paths
/// took about 170); a path recorded again is overwritten in place when its new record has the
/// same length, else appended anew (the old bytes are left unused: a path is recorded twice in
/// a run only when it changed or was settled). A path too long for a record (over 64 KiB) is
/// not kept: it is hashed again when looked up.
///
/// Chunks, not one growing buffer: a buffer grown by doubling is copied at each step, and below
/// glibc's mmap threshold (raised to the size of each large block freed, so soon above 512 KiB)
/// every copy left behind stays resident: 0.9 MiB at 20,000 files.
#[derive(Clone, Default)]
struct Overlay {
    chunks: Vec<Vec<u8>>,
    /// Positions as `u32` (half the table of `usize`s: 0.2 MiB at 20,000 files).
    table: hashbrown::HashTable<u32>,
    /// The bytes its records take in the file's encoding.
    file_bytes: usize,
    /// How many of its records are untrusted (none: [`StatCache::settle`] has nothing to do).
    untrusted: usize,
}

/// The size of an [`Overlay`]'s buffers; a record (at most 64 KiB and [`COMPACT_MAX`] bytes)
/// never straddles two. A position is `chunk * CHUNK + offset`, below 4 GiB (more records are
/// not kept: hashed again when looked up).
const CHUNK: usize = 256 << 10;

/// From how many records [`Overlay::sorted`] sorts on two threads (a thread costs about as much
/// as sorting a few thousand paths).
const SORT_IN_TWO_MIN: usize = 8192;

/// An overlay record's flag (never in a file): the ctime equals the mtime and is not stored,
/// as for a file last changed by a write (both set by it; a link or a rename since moves only
/// the ctime).
const SAME_CTIME: u8 = 4;

/// The largest compact record without its path: length, flags, digest, mtime, ctime, and size
/// and inode as LEB128 numbers of at most 10 bytes.
const COMPACT_MAX: usize = 2 + 1 + 32 + 8 + 8 + 10 + 10;

/// An overlay record: the `u16` path length, the path, flags, the digest, the mtime, the ctime
/// unless [`SAME_CTIME`], then size and inode as LEB128. A file of 2 KiB with an inode below
/// 2^21, last changed by a write, takes 19 bytes fewer than its record in the file (size and
/// inode 5 bytes instead of 16, no ctime): a cold run's inputs, over a fifth of their records.
/// An output stored by a hard link (its ctime moved) saves 11.
fn encode_compact(out: &mut Vec<u8>, path: &[u8], entry: &Entry) {
    let stat = &entry.stat;
    let same = stat.ctime_ns == stat.mtime_ns;
    out.extend_from_slice(&(path.len() as u16).to_le_bytes());
    out.extend_from_slice(path);
    out.push(flags(entry) | if same { SAME_CTIME } else { 0 });
    out.extend_from_slice(&entry.digest);
    out.extend_from_slice(&stat.mtime_ns.to_le_bytes());
    if !same {
        out.extend_from_slice(&stat.ctime_ns.to_le_bytes());
    }
    for mut number in [stat.size, stat.inode] {
        while number >= 0x80 {
            out.push(number as u8 | 0x80);
            number >>= 7;
        }
        out.push(number as u8);
    }
}

/// The entry of the compact record at `at` in `bytes` (written by [`encode_compact`]) and the
/// record's length.
fn decode_compact(bytes: &[u8], at: usize) -> (Entry, usize) {
    let path_len = u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
    let mut next = at + 2 + path_len;
    let flags = bytes[next];
    let digest: [u8; 32] = bytes[next + 1..next + 33].try_into().expect("32 bytes");
    next += 33;
    let mut fixed = || {
        let number = i64::from_le_bytes(bytes[next..next + 8].try_into().expect("8 bytes"));
        next += 8;
        number
    };
    let mtime_ns = fixed();
    let ctime_ns = if flags & SAME_CTIME != 0 {
        mtime_ns
    } else {
        fixed()
    };
    let mut leb128 = || {
        let (mut number, mut shift) = (0u64, 0);
        loop {
            let byte = bytes[next];
            next += 1;
            number |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return number;
            }
            shift += 7;
        }
    };
    let size = leb128();
    let inode = leb128();
    let entry = Entry {
        stat: FileStat {
            size,
            mtime_ns,
            ctime_ns,
            inode,
            executable: flags & EXECUTABLE != 0,
        },
        digest,
        trusted: flags & TRUSTED != 0,
    };
    (entry, next - at)
}

/// The chunk and the offset in it of an [`Overlay`] position.
fn located(at: u32) -> (usize, usize) {
    (at as usize / CHUNK, at as usize % CHUNK)
}

/// The path of the record at position `at` of `chunks`.
fn chunk_path(chunks: &[Vec<u8>], at: u32) -> &[u8] {
    let (chunk, offset) = located(at);
    record_path(&chunks[chunk], offset)
}

impl Overlay {
    fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    fn path(&self, at: u32) -> &[u8] {
        chunk_path(&self.chunks, at)
    }

    fn entry(&self, at: u32) -> Entry {
        let (chunk, offset) = located(at);
        decode_compact(&self.chunks[chunk], offset).0
    }

    /// The bytes its records take in the file's encoding.
    fn byte_len(&self) -> usize {
        self.file_bytes
    }

    fn find(&self, path: &[u8]) -> Option<u32> {
        self.table
            .find(hash(path), |&at| self.path(at) == path)
            .copied()
    }

    fn get(&self, path: &[u8]) -> Option<Entry> {
        self.find(path).map(|at| self.entry(at))
    }

    fn insert(&mut self, path: &[u8], entry: &Entry) {
        let path_hash = hash(path);
        let old = self.find_hashed(path_hash, path);
        self.put(path_hash, path, entry, old);
    }

    /// [`Overlay::find`] with the path's hash already computed.
    fn find_hashed(&self, path_hash: u64, path: &[u8]) -> Option<u32> {
        self.table
            .find(path_hash, |&at| self.path(at) == path)
            .copied()
    }

    /// Records `entry` for `path` (whose hash is `path_hash`), replacing the record at `old`,
    /// its current one ([`Overlay::find_hashed`]).
    fn put(&mut self, path_hash: u64, path: &[u8], entry: &Entry, old: Option<u32>) {
        if path.len() > u16::MAX as usize {
            return;
        }
        let untrusted = usize::from(!entry.trusted);
        if let Some(at) = old {
            let (chunk, offset) = located(at);
            let mut record = Vec::with_capacity(COMPACT_MAX + path.len());
            encode_compact(&mut record, path, entry);
            let (old_entry, old_len) = decode_compact(&self.chunks[chunk], offset);
            // The old record goes, whatever happens next.
            self.untrusted -= usize::from(!old_entry.trusted);
            if record.len() == old_len {
                self.chunks[chunk][offset..offset + old_len].copy_from_slice(&record);
                self.untrusted += untrusted;
                return;
            }
        }
        let chunk = match self.chunks.last() {
            Some(last) if last.len() + COMPACT_MAX + path.len() <= CHUNK => self.chunks.len() - 1,
            _ => self.chunks.len(),
        };
        let offset = self.chunks.get(chunk).map_or(0, Vec::len);
        let Ok(at) = u32::try_from(chunk * CHUNK + offset) else {
            // Not kept (past 4 GiB of records), and no longer the old record either.
            if let Some(old) = old
                && let Ok(found) = self.table.find_entry(path_hash, |&found| found == old)
            {
                found.remove();
                self.file_bytes -= FIXED + path.len();
            }
            return;
        };
        if chunk == self.chunks.len() {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        encode_compact(&mut self.chunks[chunk], path, entry);
        self.untrusted += untrusted;
        let Overlay { chunks, table, .. } = self;
        match old {
            // Recorded again at a new place: the table points there.
            Some(old) => {
                if let Some(slot) = table.find_mut(path_hash, |&found| found == old) {
                    *slot = at;
                }
            }
            None => {
                table.insert_unique(path_hash, at, |&at| hash(chunk_path(chunks, at)));
                self.file_bytes += FIXED + path.len();
            }
        }
    }

    /// The positions of the records in path order. Each record is compared first by the 16
    /// bytes after the prefix every path shares, taken out once as two numbers (a shorter path
    /// padded with zeros, which orders it as bytes do: before what it is a prefix of), and by
    /// its path, found in the chunks, only where those are equal: a cold build's 20,000 paths
    /// share a prefix (`tasks/t0`) that comparing paths walked again at each of 300,000 steps.
    /// Many records (a cold build's, at the end of the run, when the other cores have nothing
    /// left to do) are sorted in two halves on two threads, then merged.
    fn sorted(&self) -> Vec<u32> {
        let shared = {
            let mut positions = self.table.iter();
            positions.next().map_or(0, |&first| {
                let first = self.path(first);
                positions.fold(first.len(), |shared, &at| {
                    let same = first[..shared].iter().zip(self.path(at));
                    same.take_while(|(a, b)| a == b).count()
                })
            })
        };
        // 24 bytes a record, no more than a path's slice: a cold build's save is where the
        // run's memory peaks.
        let mut keyed: Vec<(u64, u64, u32)> = self
            .table
            .iter()
            .map(|&at| {
                let mut next = [0u8; 16];
                let after = &self.path(at)[shared..];
                let len = after.len().min(16);
                next[..len].copy_from_slice(&after[..len]);
                let key = u128::from_be_bytes(next);
                ((key >> 64) as u64, key as u64, at)
            })
            .collect();
        let order = |a: &(u64, u64, u32), b: &(u64, u64, u32)| {
            (a.0, a.1)
                .cmp(&(b.0, b.1))
                .then_with(|| self.path(a.2).cmp(self.path(b.2)))
        };
        let mid = keyed.len() / 2;
        let in_two = keyed.len() >= SORT_IN_TWO_MIN
            && std::thread::scope(|scope| {
                let (left, right) = keyed.split_at_mut(mid);
                let helper = std::thread::Builder::new()
                    .spawn_scoped(scope, move || left.sort_unstable_by(order));
                right.sort_unstable_by(order);
                helper.is_ok()
            });
        if !in_two {
            // Few records, or no thread could be made: all of it here.
            keyed.sort_unstable_by(order);
            return keyed.into_iter().map(|(_, _, at)| at).collect();
        }
        let (left, right) = keyed.split_at(mid);
        let mut merged = Vec::with_capacity(keyed.len());
        let (mut i, mut j) = (0, 0);
        while i < left.len() && j < right.len() {
            if order(&left[i], &right[j]).is_le() {
                merged.push(left[i].2);
                i += 1;
            } else {
                merged.push(right[j].2);
                j += 1;
            }
        }
        merged.extend(left[i..].iter().map(|(_, _, at)| *at));
        merged.extend(right[j..].iter().map(|(_, _, at)| *at));
        merged
    }
}

/// A record's flags byte (as in the file).
fn flags(entry: &Entry) -> u8 {
    let executable = if entry.stat.executable { EXECUTABLE } else { 0 };
    executable | if entry.trusted { TRUSTED } else { 0 }
}

fn write_record(out: &mut impl Write, path: &[u8], entry: &Entry) -> io::Result<()> {
    let Ok(len) = u16::try_from(path.len()) else {
        // Longer than any path a file system takes: not cached (hashed again next time).
        return Ok(());
    };
    out.write_all(&len.to_le_bytes())?;
    out.write_all(path)?;
    let stat = &entry.stat;
    for number in [
        stat.size,
        stat.mtime_ns as u64,
        stat.ctime_ns as u64,
        stat.inode,
    ] {
        out.write_all(&number.to_le_bytes())?;
    }
    out.write_all(&[flags(entry)])?;
    out.write_all(&entry.digest)
}

/// The clock's probe file, open, and its name in the state directory.
type Probe = (fs::File, String);

/// Opens a root-relative file for [`StatCache::settle`] (never through a link): the open file
/// and its stat, `None` when it is gone.
pub type OpenFile<'a> = dyn Fn(&str) -> io::Result<Option<(fs::File, FileStat)>> + 'a;

/// Path -> (stat, digest), shared by all worker threads of a run.
///
/// What was loaded stays in one buffer searched without locking; what this run records goes to
/// an overlay behind a read-write lock, which a no-op run only ever reads.
pub struct StatCache {
    base: Base,
    /// The identity of the full file loaded (inode, size, mtime, ctime), `None` without one.
    base_id: Option<[u64; 4]>,
    /// What earlier runs recorded since the full file was written (the delta file, read-only).
    delta: Overlay,
    /// Whether a delta file is there, so a full rewrite removes it; and whether it was valid
    /// (else the next save rewrites the full file).
    delta_found: bool,
    delta_valid: bool,
    overlay: RwLock<Overlay>,
    /// Where the clock is read (`None`: an ephemeral cache, which trusts nothing).
    dir: Option<Arc<Dir>>,
    /// The newest clock reading (`i64::MIN`: none yet).
    clock_ns: AtomicI64,
    /// When the newest reading was taken, and the open probe file with its name in `dir`.
    clock_read: Mutex<(Option<Instant>, Option<Probe>)>,
    dirty: AtomicBool,
    /// Directory listings, trusted against the same clock (see [`crate::listings`]).
    listings: Listings,
    /// What the directory's boot mark said when loaded: the cache and its listings were
    /// ignored if it named another boot (see [`crate::fsutil::Durability`]).
    boot: BootMark,
    /// Set when the mark could not be made this boot's: nothing is saved.
    unsaved: AtomicBool,
}

impl ListingCache for StatCache {
    fn listed(&self, path: &[u8], stat: &FileStat) -> Option<Listed> {
        self.listings.get(path, stat)
    }

    fn clock_before_reading(&self, mtime_ns: i64) -> i64 {
        self.clock_newer_than(mtime_ns).0
    }

    fn record_listing(&self, path: &[u8], stat: &FileStat, clock_ns: i64, entries: &Listed) {
        // An ephemeral cache's clock is `Clock::NEVER`: nothing is recorded against it.
        self.listings.record(path, stat, clock_ns, entries);
    }
}

/// Whether `file` may be kept open for a read started ahead: while its descriptor's number is
/// below a quarter of the descriptors the process may open (`RLIMIT_NOFILE`: 256 of the usual
/// 1,024). The kernel gives each new descriptor the lowest free number, so descriptors held so
/// are at most that many, and none is held once that many are in use: under a low limit, the
/// reads are not started ahead rather than take what commands, the store and connections need.
fn may_hold(file: &fs::File) -> bool {
    use std::os::fd::AsRawFd;
    static LIMIT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let limit = *LIMIT.get_or_init(|| {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `getrlimit` writes the one `rlimit` it is given. (Through libc, not rustix's
        // `process` feature: a feature changes the names of every dependent crate's symbols,
        // and the bench's build orders its code by those names; see the README.)
        let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
        if read && limit.rlim_cur != libc::RLIM_INFINITY {
            limit.rlim_cur
        } else {
            u64::MAX
        }
    });
    u64::try_from(file.as_raw_fd()).is_ok_and(|fd| fd < limit / 4)
}

/// What [`StatCache::start_digest`] (or [`StatCache::start_digest_opened`]) did.
#[derive(Debug)]
pub enum Reading {
    /// The digest, from the cache or a read that did not wait.
    Hashed(Hashed),
    /// The file is open and being read ahead: [`StatCache::finish_digest`] reads it.
    Started(Started),
    /// The file was read whole into the [`ReadBatch`] it was given: its digest comes with the
    /// batch's ([`StatCache::finish_batch`]).
    Batched,
}

/// Small files read whole (from the page cache, without waiting) and not hashed yet: hashed
/// together, a lane of a multi-buffer kernel each ([`hash_many`]), by
/// [`StatCache::finish_batch`], which records them as [`StatCache::finish_digest`] would have.
#[derive(Debug)]
pub struct ReadBatch {
    /// Every file's bytes, one after the other: the thread's buffer for them, taken while the
    /// batch lives (a task's batches would otherwise grow one anew, copying it each time).
    bytes: Vec<u8>,
    /// Every file's path as the cache knows it, one after the other.
    paths: String,
    files: Vec<BatchedFile>,
}

/// A file of a [`ReadBatch`]: the caller's place for it, its stat taken before the read, the
/// clock reading its digest is trusted against, and where its bytes and its path are in the
/// batch's.
#[derive(Debug)]
struct BatchedFile {
    at: usize,
    stat: FileStat,
    clock: Clock,
    bytes: std::ops::Range<usize>,
    path: std::ops::Range<usize>,
}

thread_local! {
    /// The buffer of the thread's last [`ReadBatch`], for its next one.
    static BATCH_BYTES: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

impl ReadBatch {
    /// Files hashed together at most (two passes of AVX-512's 16 lanes, eight groups of four
    /// SHA-NI streams).
    pub const FILES: usize = 32;
    /// Bytes from which the batch is full: it holds less than this and one more file (each
    /// smaller than a hashing buffer: see [`read_if_cached`]).
    pub const BYTES: usize = 256 * 1024;

    pub fn new() -> ReadBatch {
        let mut bytes = BATCH_BYTES.take();
        bytes.clear();
        ReadBatch {
            bytes,
            paths: String::new(),
            files: Vec::new(),
        }
    }

    /// Adds a file read whole: the bytes `read_if_cached` has just appended, from `start`.
    fn push(&mut self, at: usize, relative: &str, stat: FileStat, clock: Clock, start: usize) {
        let path_start = self.paths.len();
        self.paths.push_str(relative);
        self.files.push(BatchedFile {
            at,
            stat,
            clock,
            bytes: start..self.bytes.len(),
            path: path_start..self.paths.len(),
        });
    }

    /// Whether it holds [`ReadBatch::FILES`] files or [`ReadBatch::BYTES`] bytes: time to
    /// hash them.
    pub fn is_full(&self) -> bool {
        self.files.len() >= Self::FILES || self.bytes.len() >= Self::BYTES
    }
}

impl Default for ReadBatch {
    fn default() -> ReadBatch {
        ReadBatch::new()
    }
}

impl Drop for ReadBatch {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.bytes);
        bytes.clear();
        BATCH_BYTES.set(bytes);
    }
}

/// Where [`StatCache::start_digest_with`] puts a file it must read: `None`, left open for
/// [`StatCache::finish_reading`] (which waits for the disk); else read at once into the batch,
/// at the caller's place, when that does not wait, or its read started
/// ([`StatCache::start_digest`]).
type BatchPlace<'a> = Option<(&'a mut ReadBatch, usize)>;

/// A file [`StatCache::start_digest`] opened and left to read, with the stat taken before and
/// the clock reading its digest is trusted against.
#[derive(Debug)]
pub struct Started {
    file: fs::File,
    stat: FileStat,
    clock: Clock,
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
    /// file, or anything but a regular file, is an empty cache; so is every file of it when the
    /// directory's boot mark names another boot: see [`crate::fsutil::Durability`]). Writes
    /// nothing: the clock is read in `dir` when first needed.
    pub fn load(dir: &Arc<Dir>) -> io::Result<StatCache> {
        let boot = BootMark::read(dir);
        let trusted = boot.trusted();
        let (base, base_id) = match trusted
            .then(|| dir.read_file_with_stat(FILE, MAX_BYTES).ok().flatten())
            .flatten()
            .and_then(|(bytes, stat)| Some((Base::parse(bytes)?, stat)))
        {
            Some((base, stat)) => (base, Some(identity(&stat))),
            None => (Base::default(), None),
        };
        // No larger than a save writes one (1/16 of the largest full file, and its header).
        // Absent (`Ok(None)`: no second look on a no-op), or there but unusable (too large,
        // not a regular file: found, so a full rewrite removes it). Not read when the mark
        // names another boot: the run removes it (`mark_boot`).
        let delta_read = if trusted {
            dir.read_file_with_stat(DELTA, MAX_BYTES / 16 + 64)
        } else {
            Ok(None)
        };
        let delta_found = !matches!(delta_read, Ok(None));
        let parsed = match (delta_read, base_id) {
            (Ok(Some((bytes, _))), Some(id)) => parse_delta(&bytes, id),
            _ => None,
        };
        let delta_valid = parsed.is_some();
        let delta = parsed.unwrap_or_default();
        Ok(StatCache {
            base,
            base_id,
            delta,
            delta_found,
            delta_valid,
            overlay: RwLock::default(),
            dir: Some(Arc::clone(dir)),
            clock_ns: AtomicI64::new(i64::MIN),
            clock_read: Mutex::new((None, None)),
            dirty: AtomicBool::new(false),
            listings: if trusted {
                Listings::load(dir)
            } else {
                Listings::default()
            },
            boot,
            unsaved: AtomicBool::new(false),
        })
    }

    /// Makes the directory's boot mark name this boot before the run writes anything a later
    /// run would trust for its stat (see [`crate::fsutil::Durability`]). When what it recorded
    /// was not trusted, the files this cache ignored for it (the full file, the delta, the
    /// listings) are removed first, so that no later run of this boot trusts them; where no
    /// marks are kept, a mark found (another system's, or `XBUNDLE_FSYNC=0` after one) is
    /// removed too, so that later runs do not find it foreign again. On an error, nothing
    /// this cache records is saved (see [`StatCache::save`]): a failed mark never vouches for
    /// stats.
    pub fn mark_boot(&self) -> io::Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let marked = self.mark_boot_in(dir);
        if marked.is_err() {
            self.unsaved.store(true, Ordering::Release);
        }
        marked
    }

    fn mark_boot_in(&self, dir: &Dir) -> io::Result<()> {
        if !self.boot.trusted() {
            for name in [FILE, DELTA, crate::listings::FILE] {
                dir.remove_file(name).map_err(io::Error::other)?;
            }
        }
        if crate::fsutil::keeps_marks() {
            return self.boot.make_current(dir);
        }
        if self.boot == BootMark::Foreign {
            dir.remove_file(crate::fsutil::BOOT_MARK)
                .map_err(io::Error::other)?;
        }
        Ok(())
    }

    /// An empty cache that trusts nothing it records (for one-off hashing).
    pub fn ephemeral() -> StatCache {
        StatCache {
            base: Base::default(),
            base_id: None,
            delta: Overlay::default(),
            delta_found: false,
            delta_valid: false,
            overlay: RwLock::default(),
            dir: None,
            clock_ns: AtomicI64::new(i64::MIN),
            clock_read: Mutex::new((None, None)),
            dirty: AtomicBool::new(false),
            listings: Listings::default(),
            boot: BootMark::Absent,
            unsaved: AtomicBool::new(false),
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
        let reading = self.start_digest_with(relative, stat, open, None)?;
        self.finish_reading(relative, reading)
    }

    /// [`StatCache::digest_with`] that does not wait for the disk. A file to read is read at
    /// once when [`read_if_cached`] can (a small file whose bytes are in the page cache: its one
    /// read is the one that does not wait, no dearer than [`StatCache::digest_with`]'s), into
    /// `batch` at the caller's place `at` ([`Reading::Batched`]): its digest is the batch's,
    /// from [`StatCache::finish_batch`]. Any other file (not in the cache, 32 KiB or more or a
    /// multiple of 4 KiB, or where reads cannot be asked not to wait) comes back
    /// [`Reading::Started`] while the process may hold its descriptor ([`may_hold`]) and its
    /// read could be started ([`start_reading`]; else it is read here): open, the read of its
    /// first MiB started, for [`StatCache::finish_digest`] once the reads of the files after it
    /// are under way too. A file per system call, read one after the other, waits for the disk
    /// once per file (about 60 µs each here when the page cache has lost them); started
    /// together, their reads overlap and are merged (measured: 5,000 files of 2 KiB, 300 → 90
    /// ms, and 180 → 90 ms of CPU).
    pub fn start_digest(
        &self,
        relative: &str,
        stat: FileStat,
        open: &mut dyn FnMut() -> io::Result<fs::File>,
        batch: &mut ReadBatch,
        at: usize,
    ) -> io::Result<Reading> {
        self.start_digest_with(relative, stat, open, Some((batch, at)))
    }

    fn start_digest_with(
        &self,
        relative: &str,
        stat: FileStat,
        open: &mut dyn FnMut() -> io::Result<fs::File>,
        batch: BatchPlace<'_>,
    ) -> io::Result<Reading> {
        if let Some(entry) = self.lookup(relative)
            && entry.trusted
            && entry.stat == stat
        {
            return Ok(Reading::Hashed(Hashed {
                digest: Digest::from_raw(entry.digest),
                stat,
                from_cache: true,
            }));
        }
        // Read before the file is: its digest is trusted against this reading.
        let clock = self.clock_newer_than(stat.mtime_ns);
        let file = open()?;
        let started = Started { file, stat, clock };
        let Some((batch, at)) = batch else {
            return Ok(Reading::Started(started));
        };
        let start = batch.bytes.len();
        if read_if_cached(&started.file, stat.size, &mut batch.bytes) {
            batch.push(at, relative, stat, clock, start);
            return Ok(Reading::Batched);
        }
        // Held open only when its read could be started (not off Linux: nothing to gain).
        if may_hold(&started.file) && start_reading(&started.file) {
            return Ok(Reading::Started(started));
        }
        self.finish_digest(relative, started).map(Reading::Hashed)
    }

    /// The digest of a [`Reading`] left without a batch: a started one is finished here.
    fn finish_reading(&self, relative: &str, reading: Reading) -> io::Result<Hashed> {
        match reading {
            Reading::Hashed(hashed) => Ok(hashed),
            Reading::Started(started) => self.finish_digest(relative, started),
            Reading::Batched => unreachable!("a file read without a batch never joins one"),
        }
    }

    /// Hashes the files of `batch` and records each as [`StatCache::finish_digest`] would (the
    /// stat taken before its read; every one held exactly the bytes its stat said), under the
    /// path it was read by; its digest goes to its place `at` in `places`. Leaves the batch
    /// empty.
    ///
    /// Hashed in the order of their lengths in blocks: files side by side take the time of the
    /// longest (AVX-512's lanes), or are hashed side by side only when equally long (SHA-NI's
    /// streams), so neighbours of like lengths keep the lanes busy whatever the walk's order.
    pub fn finish_batch(&self, batch: &mut ReadBatch, places: &mut [(String, Digest)]) {
        if batch.files.is_empty() {
            return;
        }
        // A message's blocks: its bytes, the padding's 0x80 and the 8-byte length.
        let blocks = |file: &BatchedFile| (file.bytes.len() + 9).div_ceil(64);
        let mut order: Vec<usize> = (0..batch.files.len()).collect();
        order.sort_by_key(|&index| blocks(&batch.files[index]));
        let messages: Vec<&[u8]> = order
            .iter()
            .map(|&index| &batch.bytes[batch.files[index].bytes.clone()])
            .collect();
        for (&index, digest) in order.iter().zip(hash_many(&messages)) {
            let file = &batch.files[index];
            self.record(
                &batch.paths[file.path.clone()],
                file.stat,
                digest,
                Some(file.clock),
            );
            places[file.at].1 = digest;
        }
        batch.files.clear();
        batch.bytes.clear();
        batch.paths.clear();
    }

    /// Reads and records a file [`StatCache::start_digest`] left [`Reading::Started`].
    pub fn finish_digest(&self, relative: &str, started: Started) -> io::Result<Hashed> {
        // Recorded with the stat taken before the read, so no second stat is needed. Any change
        // the read may have missed (a write during or after it, a file swapped in since the
        // stat) gives the file an mtime at least `clock`, newer than the stat's when that is
        // trusted, so the stat no longer matches; a file that did not hold the bytes its stat
        // said is recorded untrusted. (A write between the stat and the read can keep the stat,
        // in the same timestamp tick, but then the read saw it.)
        let hashed = hash_reader_expecting(&mut &started.file, started.stat.size)?;
        Ok(self.record_read(relative, &started, hashed))
    }

    /// Records what a read of a [`Started`] file found.
    fn record_read(
        &self,
        relative: &str,
        started: &Started,
        (digest, _, exact): (Digest, u64, bool),
    ) -> Hashed {
        self.record(
            relative,
            started.stat,
            digest,
            exact.then_some(started.clock),
        );
        Hashed {
            digest,
            stat: started.stat,
            from_cache: false,
        }
    }

    /// Whether nothing loaded vouches for any file (no stat cache yet, or one ignored: another
    /// boot's, damaged): every file this run looks up is read, unless the run recorded it.
    pub fn loaded_nothing(&self) -> bool {
        self.base.offsets.is_empty() && self.delta.is_empty()
    }

    /// [`StatCache::digest_with`] for a file opened before it is stat'ed: the stat is the open
    /// file's (`fstat`, no second path lookup), taken before it is read, and anything but a
    /// regular file (a directory, fifo or device put there since its directory was listed) is
    /// refused, never read.
    pub fn digest_opened(&self, relative: &str, file: fs::File) -> io::Result<Hashed> {
        let reading = self.start_digest_opened_with(relative, file, None)?;
        self.finish_reading(relative, reading)
    }

    /// [`StatCache::digest_opened`] that does not wait for the disk, into `batch`, as
    /// [`StatCache::start_digest`].
    pub fn start_digest_opened(
        &self,
        relative: &str,
        file: fs::File,
        batch: &mut ReadBatch,
        at: usize,
    ) -> io::Result<Reading> {
        self.start_digest_opened_with(relative, file, Some((batch, at)))
    }

    fn start_digest_opened_with(
        &self,
        relative: &str,
        file: fs::File,
        batch: BatchPlace<'_>,
    ) -> io::Result<Reading> {
        let stat = rustix::fs::fstat(&file)?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(io::Error::other(
                "it is not a regular file (replaced since its directory was read?); run again (if this \
                 repeats, remove .xbundle/state/listings)",
            ));
        }
        let mut file = Some(file);
        self.start_digest_with(
            relative,
            FileStat::from_stat(&stat),
            &mut || {
                file.take()
                    .ok_or_else(|| io::Error::other("the file was opened once"))
            },
            batch,
        )
    }

    /// A new reading of the file system's clock ([`Clock::NEVER`] when it cannot be read, or
    /// for an ephemeral cache). Take it before reading a file whose digest is then
    /// [`StatCache::record`]ed.
    pub fn clock(&self) -> Clock {
        self.read_clock(1)
    }

    /// A reading for files no process is writing any more (a task's outputs once its command
    /// has exited): later than every file written before it where the file system has
    /// multigrain timestamps (a second write of the probe, see the module docs), so those
    /// files are trusted at once instead of read again at the end of the run. Not for files
    /// that may still be written: a write is stamped before its bytes are copied, so one still
    /// copying could be stamped before this reading and read half done (the first write's
    /// stamp, kept for every other use, equals such a stamp within a tick: untrusted).
    pub fn clock_after_writers(&self) -> Clock {
        self.read_clock(2)
    }

    /// Writes the probe `writes` times; keeps the first write's stamp as the run's newest
    /// reading and returns the last one.
    fn read_clock(&self, writes: usize) -> Clock {
        let Some(dir) = &self.dir else {
            return Clock::NEVER;
        };
        let mut read = self.clock_read.lock().unwrap_or_else(|e| e.into_inner());
        let (first, last) =
            file_system_now(dir, &mut read.1, writes).unwrap_or((i64::MIN, i64::MIN));
        read.0 = Some(Instant::now());
        let newest = self.clock_ns.fetch_max(first, Ordering::AcqRel).max(first);
        Clock(newest.max(last))
    }

    /// A reading newer than `mtime_ns` if one can be had: the newest one, or a new one (at most
    /// one every [`REREAD_AFTER`] for files newer than every reading, e.g. from the future).
    fn clock_newer_than(&self, mtime_ns: i64) -> Clock {
        let newest = self.clock_ns.load(Ordering::Acquire);
        if newest > mtime_ns || self.dir.is_none() {
            return Clock(newest);
        }
        let recent = self
            .clock_read
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .is_some_and(|at| at.elapsed() < REREAD_AFTER);
        if recent && newest != i64::MIN {
            return Clock(newest);
        }
        self.clock()
    }

    /// Records a digest computed elsewhere (e.g. while writing or storing the file); trusted
    /// only when `read_after` is a [`Clock`] taken before the read (or write) that computed it
    /// began and `stat` is older than it.
    pub fn record(
        &self,
        relative: &str,
        stat: FileStat,
        digest: Digest,
        read_after: Option<Clock>,
    ) {
        let entry = Entry {
            stat,
            digest: *digest.as_bytes(),
            trusted: read_after.is_some_and(|clock| older_than(stat.mtime_ns, clock.0)),
        };
        let same = |old: Entry| {
            old.stat == entry.stat && old.digest == entry.digest && old.trusted == entry.trusted
        };
        let path = relative.as_bytes();
        // Nothing recorded yet (a no-op re-recording what it loaded): no lock taken.
        if !self.dirty.load(Ordering::Acquire) && self.loaded(relative).is_some_and(same) {
            return;
        }
        // Else one hash of the path and one probe of the table, under the write lock.
        let path_hash = hash(path);
        let mut overlay = self.overlay.write().unwrap_or_else(|e| e.into_inner());
        let old = overlay.find_hashed(path_hash, path);
        let unchanged = match old {
            Some(at) => same(overlay.entry(at)),
            None => self.loaded(relative).is_some_and(same),
        };
        if !unchanged {
            overlay.put(path_hash, path, &entry, old);
            self.dirty.store(true, Ordering::Release);
        }
    }

    /// Re-hashes, at the end of a run, the files this run recorded untrusted because they were
    /// written in the same tick of the file system's clock as the reading their digest was
    /// trusted against (typically the outputs of the last tasks: the next run would re-hash
    /// them all, a cold build's first no-op about a quarter of its outputs). One new clock
    /// reading is taken first; only files whose mtime is older than it are read, each through
    /// `open` (e.g. confined, never through a link), and only if its stat still equals the
    /// recorded one, so this is exactly the re-hash the next lookup would do, done while the
    /// file is hot in the page cache: the racy-clean rule is unchanged (the clock reading comes
    /// before the read). No waiting: a file still in the current tick stays untrusted. At most
    /// `max_bytes` are read in all; a file that fails to open or read is left as it is.
    /// Returns how many files were settled.
    pub fn settle(&self, open: &OpenFile<'_>, max_bytes: u64) -> usize {
        if self.dir.is_none() {
            return 0;
        }
        let racy: Vec<(String, Entry)> = {
            let overlay = self.overlay.read().unwrap_or_else(|e| e.into_inner());
            if overlay.untrusted == 0 {
                return 0;
            }
            overlay
                .table
                .iter()
                .map(|&at| (overlay.path(at), overlay.entry(at)))
                .filter(|(_, entry)| !entry.trusted)
                .filter_map(|(path, entry)| {
                    Some((std::str::from_utf8(path).ok()?.to_string(), entry))
                })
                .collect()
        };
        if racy.is_empty() {
            return 0;
        }
        let clock = self.clock();
        let mut budget = max_bytes;
        let mut settled = 0;
        for (relative, entry) in racy {
            if !older_than(entry.stat.mtime_ns, clock.0) || entry.stat.size > budget {
                continue;
            }
            let Ok(Some((file, stat))) = open(&relative) else {
                continue;
            };
            if stat != entry.stat {
                // Changed since it was recorded: the next lookup sees a new stat anyway.
                continue;
            }
            budget -= stat.size;
            let mut file = Some(file);
            let mut reuse = || file.take().ok_or_else(|| io::Error::other("opened once"));
            if self
                .digest_with(&relative, stat, &mut reuse)
                .is_ok_and(|hashed| !hashed.from_cache)
                && self.lookup(&relative).is_some_and(|now| now.trusted)
            {
                settled += 1;
            }
        }
        settled
    }

    fn lookup(&self, relative: &str) -> Option<Entry> {
        // Nothing recorded yet (a whole no-op run): no lock taken at all, so the workers do not
        // contend for the lock's cache line on every file. A record racing with this lookup is
        // missed at worst: the loaded entry or a re-hash answers instead, never a wrong digest.
        if self.dirty.load(Ordering::Acquire) {
            let overlay = self.overlay.read().unwrap_or_else(|e| e.into_inner());
            if !overlay.is_empty()
                && let Some(entry) = overlay.get(relative.as_bytes())
            {
                return Some(entry);
            }
        }
        self.loaded(relative)
    }

    /// What was loaded for `relative`: the delta's record, else the full file's.
    fn loaded(&self, relative: &str) -> Option<Entry> {
        if !self.delta.is_empty()
            && let Some(entry) = self.delta.get(relative.as_bytes())
        {
            return Some(entry);
        }
        self.base.lookup(relative)
    }

    /// Writes what this run changed, if anything (atomically: a temporary file renamed over the
    /// destination): the delta when the full file is valid and the delta stays small, else the
    /// full file (the loaded one merged with the delta and this run's records), then the delta
    /// is removed.
    pub fn save(&self, dir: &Dir) -> io::Result<()> {
        if self.unsaved.load(Ordering::Acquire) {
            return Ok(());
        }
        // Writes nothing when this run recorded no listing (an ephemeral cache never does).
        let listings = self.listings.save(dir);
        self.save_within(dir, DELTA_MIN_LIMIT.max(self.base.bytes.len() / 16))?;
        listings
    }

    /// [`StatCache::save`] with a delta of at most `limit` bytes (0: the full file).
    fn save_within(&self, dir: &Dir, limit: usize) -> io::Result<()> {
        if !self.dirty.load(Ordering::Relaxed) {
            return Ok(());
        }
        let overlay = self.overlay.read().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = self.base_id
            && (self.delta_valid || !self.delta_found)
            && limit > 0
            && self.delta.byte_len() + overlay.byte_len() <= limit
        {
            // Every record since the full file was written: the delta's, then this run's.
            let mut changes = self.delta.clone();
            for &at in overlay.table.iter() {
                changes.insert(overlay.path(at), &overlay.entry(at));
            }
            return write_delta(dir, id, &changes);
        }
        // The full file: the loaded one merged with the delta's records and this run's (which
        // win), streamed in path order, nothing copied (a cold run records every file).
        let mut run = in_order(&overlay);
        let mut earlier = in_order(&self.delta);
        let mut changed = std::iter::from_fn(move || match (run.peek(), earlier.peek()) {
            (Some((new, _)), Some((old, _))) if new > old => earlier.next(),
            (Some((new, _)), Some((old, _))) if new == old => {
                earlier.next();
                run.next()
            }
            (Some(_), _) => run.next(),
            (None, _) => earlier.next(),
        })
        .peekable();
        let base = &self.base;
        dir.write_file(FILE, 0o644, |file: &mut fs::File| {
            let io = |source| ConfineError::Io {
                path: FILE.to_string(),
                source,
            };
            let mut out = BufWriter::with_capacity(1 << 16, file);
            out.write_all(MAGIC).map_err(io)?;
            let mut count = 0u64;
            let mut write = |out: &mut BufWriter<&mut fs::File>, path: &[u8], entry: &Entry| {
                count += u64::from(path.len() <= u16::MAX as usize);
                write_record(out, path, entry)
            };
            for &offset in &base.offsets {
                let path = base.path(offset);
                while let Some((new_path, entry)) = changed.next_if(|(new, _)| *new < path) {
                    write(&mut out, new_path, &entry).map_err(io)?;
                }
                match changed.next_if(|(new, _)| *new == path) {
                    Some((new_path, entry)) => write(&mut out, new_path, &entry).map_err(io)?,
                    None => write(&mut out, path, &base.entry(offset)).map_err(io)?,
                }
            }
            for (new_path, entry) in changed {
                write(&mut out, new_path, &entry).map_err(io)?;
            }
            out.write_all(&count.to_le_bytes()).map_err(io)?;
            out.write_all(MAGIC_END).map_err(io)?;
            out.flush().map_err(io)
        })
        .map_err(io::Error::other)?;
        // The delta described the file just replaced: its records are in the new one.
        if self.delta_found {
            dir.remove_file(DELTA).map_err(io::Error::other)?;
        }
        Ok(())
    }
}

/// The records of `overlay` in path order, with their entries.
fn in_order(overlay: &Overlay) -> std::iter::Peekable<impl Iterator<Item = (&[u8], Entry)>> {
    overlay
        .sorted()
        .into_iter()
        .map(move |at| (overlay.path(at), overlay.entry(at)))
        .peekable()
}

/// What identifies one written full file: a rewrite is a new inode, with new times.
fn identity(stat: &FileStat) -> [u64; 4] {
    [
        stat.inode,
        stat.size,
        stat.mtime_ns as u64,
        stat.ctime_ns as u64,
    ]
}

/// The records of a delta file that extends the full file `id`; `None` unless it is exactly
/// one (magic, identity, well-formed records, their count, end magic).
fn parse_delta(bytes: &[u8], id: [u64; 4]) -> Option<Overlay> {
    let header = DELTA_MAGIC.len() + 32;
    let body_end = bytes.len().checked_sub(16)?;
    if body_end < header
        || !bytes.starts_with(DELTA_MAGIC)
        || &bytes[body_end + 8..] != DELTA_MAGIC_END
    {
        return None;
    }
    for (i, part) in id.iter().enumerate() {
        let at = DELTA_MAGIC.len() + i * 8;
        if u64::from_le_bytes(bytes[at..at + 8].try_into().ok()?) != *part {
            return None;
        }
    }
    let count = u64::from_le_bytes(bytes[body_end..body_end + 8].try_into().ok()?);
    let mut overlay = Overlay::default();
    let mut records = 0u64;
    let mut at = header;
    while at < body_end {
        let len = u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?) as usize;
        let end = at.checked_add(FIXED + len)?;
        if end > body_end {
            return None;
        }
        overlay.insert(record_path(bytes, at), &record_entry(bytes, at));
        records += 1;
        at = end;
    }
    (at == body_end && records == count).then_some(overlay)
}

/// Writes `changes` as the delta of the full file `id`.
fn write_delta(dir: &Dir, id: [u64; 4], changes: &Overlay) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(changes.byte_len() + 64);
    bytes.extend_from_slice(DELTA_MAGIC);
    for part in id {
        bytes.extend_from_slice(&part.to_le_bytes());
    }
    let sorted = changes.sorted();
    for &at in &sorted {
        write_record(&mut bytes, changes.path(at), &changes.entry(at))?;
    }
    bytes.extend_from_slice(&(sorted.len() as u64).to_le_bytes());
    bytes.extend_from_slice(DELTA_MAGIC_END);
    dir.write_file(DELTA, 0o644, |file: &mut fs::File| {
        file.write_all(&bytes).map_err(|source| ConfineError::Io {
            path: DELTA.to_string(),
            source,
        })
    })
    .map(|_| ())
    .map_err(io::Error::other)
}

/// A [`StatCache::load`] done ahead, on a thread of its own, while the front end reads its
/// configuration (a no-op's main thread otherwise loaded a cold build's 1.8 MB cache of 20,000
/// files alone, about 2.5 ms, before any worker started). It is read before the run's lock is
/// taken, so [`Preload::take`] hands it over only when, with the lock held, the directory is
/// the one it was read from and each file it read (the cache, its delta, the listings, the
/// boot mark) is the same file with the same size and times as when it started: a run that
/// finished meanwhile wrote new files (renamed into place: new inodes), so it is loaded again.
pub struct Preload(Option<std::thread::JoinHandle<Option<Preloaded>>>);

struct Preloaded {
    cache: StatCache,
    /// The directory it was read from (device, inode).
    dir: (u64, u64),
    /// The files it read, as they were before it read them.
    files: LoadedFiles,
}

/// What each file a load reads was (`None`: absent): its kind and [`identity`].
type LoadedFiles = Vec<Option<(Kind, [u64; 4])>>;

/// Every file [`StatCache::load`] reads.
const LOADED_FILES: [&str; 4] = [crate::fsutil::BOOT_MARK, FILE, DELTA, crate::listings::FILE];

/// What each of [`LOADED_FILES`] in `dir` is (`None`: absent); `None` when one cannot be
/// looked at.
fn loaded_files(dir: &Dir) -> Option<LoadedFiles> {
    LOADED_FILES
        .iter()
        .map(|name| {
            let found = dir.lstat(name).ok()?;
            Some(found.map(|(kind, stat)| (kind, identity(&stat))))
        })
        .collect()
}

/// The device and inode of the directory `dir`.
#[allow(clippy::unnecessary_cast, clippy::useless_conversion)] // field types vary by target
fn dir_identity(dir: &Dir) -> Option<(u64, u64)> {
    let stat = rustix::fs::fstat(dir).ok()?;
    Some((stat.st_dev as u64, stat.st_ino as u64))
}

impl Preload {
    /// Starts loading the stat cache of `place` (which it opens, never creates) on a thread.
    pub fn start(place: crate::confine::Place) -> Preload {
        let load = move || {
            let dir = place.open().ok()??;
            let files = loaded_files(&dir)?;
            let cache = StatCache::load(&dir).ok()?;
            Some(Preloaded {
                cache,
                dir: dir_identity(&dir)?,
                files,
            })
        };
        // No thread: nothing loaded ahead (the run loads it).
        Preload(
            std::thread::Builder::new()
                .name("xbundle-stat-preload".into())
                .spawn(load)
                .ok(),
        )
    }

    /// What the load found, once it has ended.
    fn loaded(self) -> Option<Preloaded> {
        self.0?.join().ok().flatten()
    }

    /// The cache loaded ahead, to be used with the handle `dir` (opened by the run, under its
    /// lock), when `dir` is the directory it was read from and holds the very files it read;
    /// `None` otherwise (the caller loads it again).
    pub fn take(self, dir: &Arc<Dir>) -> Option<StatCache> {
        self.loaded()?.take(dir)
    }
}

impl Preloaded {
    /// [`Preload::take`], the load ended.
    fn take(self, dir: &Arc<Dir>) -> Option<StatCache> {
        if dir_identity(dir)? != self.dir || loaded_files(dir)? != self.files {
            return None;
        }
        let mut cache = self.cache;
        cache.dir = Some(Arc::clone(dir));
        Some(cache)
    }
}

impl Drop for StatCache {
    fn drop(&mut self) {
        let read = self.clock_read.get_mut().unwrap_or_else(|e| e.into_inner());
        if let (Some(dir), Some((_, name))) = (&self.dir, read.1.take()) {
            let _ = dir.remove_file(&name);
        }
    }
}

/// "Now" on the file system's clock: a byte written `writes` times to the probe file `probe`
/// in `dir` (created on first use), each time after a query of its times; the mtimes after the
/// first and the last write (a second write is stamped with a fine-grained time by a kernel
/// with multigrain timestamps).
fn file_system_now(dir: &Dir, probe: &mut Option<Probe>, writes: usize) -> io::Result<(i64, i64)> {
    use std::os::unix::fs::FileExt;
    if probe.is_none() {
        static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let name = format!(
            ".tmp-xbundle-{}-{}-clock",
            std::process::id(),
            PROBES.fetch_add(1, Ordering::Relaxed)
        );
        let file = dir
            .create_new_file(&name, 0o600)
            .map_err(io::Error::other)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::AlreadyExists, name.clone()))?;
        *probe = Some((file, name));
    }
    let (file, _) = probe.as_ref().expect("created above");
    // Query, write, read back (which queries again): a second write is stamped with a
    // fine-grained time where the file system has multigrain timestamps (see the module docs).
    file.metadata()?;
    let stamp = || -> io::Result<i64> {
        file.write_at(b"c", 0)?;
        Ok(FileStat::of(&file.metadata()?).mtime_ns)
    };
    let first = stamp()?;
    let mut last = first;
    for _ in 1..writes {
        last = stamp()?;
    }
    Ok((first, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state directory as a run leaves it: marked as this boot's, so that what is saved there
    /// is trusted by the next load.
    fn marked(path: &Path) -> Arc<Dir> {
        let state = Arc::new(Dir::open_root(path).unwrap());
        BootMark::read(&state).make_current(&state).unwrap();
        state
    }

    /// A directory holding `a.txt` ("hello"), old enough to be trusted once hashed, marked as
    /// a run leaves it, and a cache loaded from it.
    fn an_old_file() -> (tempfile::TempDir, std::path::PathBuf, Arc<Dir>, StatCache) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.txt");
        fs::write(&file, b"hello").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let state = marked(dir.path());
        let cache = StatCache::load(&state).unwrap();
        (dir, file, state, cache)
    }

    #[test]
    fn unchanged_file_is_not_rehashed_once_trusted() {
        let (_dir, file, state, cache) = an_old_file();
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
        let state = marked(dir.path());
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

    /// Whether this file system stamps a queried file's change with a fine-grained time when
    /// the coarse one would not change it (multigrain timestamps): a scratch file written, then
    /// another written twice after queries, is strictly older than the second write, 20 times
    /// out of 20.
    fn multigrain(dir: &Path) -> bool {
        use std::os::unix::fs::FileExt;
        let scratch = dir.join("multigrain-probe");
        let probe = fs::File::create(&scratch).unwrap();
        let written = dir.join("multigrain-written");
        let mtime = |path: &Path| FileStat::of(&fs::metadata(path).unwrap()).mtime_ns;
        // Left in `dir`, a test's temporary directory, which goes with it.
        (0..20).all(|_| {
            fs::write(&written, b"x").unwrap();
            for _ in 0..2 {
                probe.metadata().unwrap();
                probe.write_at(b"c", 0).unwrap();
            }
            mtime(&written) < mtime(&scratch)
        })
    }

    #[test]
    fn a_reading_is_newer_than_a_file_written_just_before_it_where_times_are_fine_grained() {
        let dir = tempfile::tempdir().unwrap();
        if !multigrain(dir.path()) {
            eprintln!("skipped: this file system has no multigrain timestamps");
            return;
        }
        let state = marked(dir.path());
        let cache = StatCache::load(&state).unwrap();
        let file = dir.path().join("out.txt");
        // As an output: written, then a reading, then hashed and recorded against it. Written
        // twice with a query between (the hardest case): its second change is stamped
        // fine-grained, the latest time handed out (one write of the probe would get that same
        // time: measured, the test fails with it).
        for round in 0..50 {
            fs::write(&file, b"first").unwrap();
            fs::metadata(&file).unwrap();
            fs::write(&file, format!("round {round}")).unwrap();
            let clock = cache.clock_after_writers();
            let stat = FileStat::of(&fs::metadata(&file).unwrap());
            assert!(
                older_than(stat.mtime_ns, clock.ns()),
                "round {round}: written at {}, clock read at {}",
                stat.mtime_ns,
                clock.ns()
            );
            let digest = Digest::of_bytes(format!("round {round}").as_bytes());
            cache.record("out.txt", stat, digest, Some(clock));
            assert!(cache.lookup("out.txt").unwrap().trusted, "round {round}");
        }
        // A file written once, fresh, just before a reading: older than it too.
        for round in 0..50 {
            let fresh = dir.path().join(format!("fresh-{round}"));
            fs::write(&fresh, b"x").unwrap();
            let clock = cache.clock_after_writers();
            let stat = FileStat::of(&fs::metadata(&fresh).unwrap());
            assert!(older_than(stat.mtime_ns, clock.ns()), "fresh {round}");
        }
        // And a file written after a reading, of either kind, is never older than it.
        for round in 0..50 {
            let clock = if round % 2 == 0 {
                cache.clock()
            } else {
                cache.clock_after_writers()
            };
            fs::write(&file, format!("after {round}")).unwrap();
            let stat = FileStat::of(&fs::metadata(&file).unwrap());
            assert!(!older_than(stat.mtime_ns, clock.ns()), "after {round}");
        }
    }

    #[test]
    fn files_hashed_in_a_batch_are_recorded_as_files_hashed_alone() {
        let dir = tempfile::tempdir().unwrap();
        // Small files of every length in blocks, then files just under a hashing buffer (over
        // several pages) enough to fill a batch by its bytes, then small ones again.
        let names: Vec<String> = (0..70).map(|n| format!("f{n:02}.txt")).collect();
        for (n, name) in names.iter().enumerate() {
            let length = if (40..50).contains(&n) {
                32_000 + n
            } else {
                n * 37
            };
            fs::write(dir.path().join(name), vec![b'a' + (n % 26) as u8; length]).unwrap();
        }
        // Large (read as it always was), and not the size its stat says (grown since).
        fs::write(dir.path().join("large"), vec![7u8; 40_000]).unwrap();
        fs::write(dir.path().join("grown"), b"short").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let state = marked(dir.path());
        let batched = StatCache::load(&state).unwrap();
        let alone = StatCache::ephemeral();
        let stat_of = |name: &str| FileStat::of(&fs::metadata(dir.path().join(name)).unwrap());
        let grown_stat = stat_of("grown");
        fs::write(dir.path().join("grown"), b"longer now").unwrap();

        let mut places: Vec<(String, Digest)> = Vec::new();
        let mut batch = ReadBatch::default();
        let mut batched_count = 0;
        // Each flush: how many files it hashed.
        let mut flushes = Vec::new();
        let all = names.iter().map(String::as_str).chain(["large", "grown"]);
        for name in all {
            let path = dir.path().join(name);
            let stat = if name == "grown" {
                grown_stat
            } else {
                stat_of(name)
            };
            let at = places.len();
            let reading = batched
                .start_digest(name, stat, &mut || fs::File::open(&path), &mut batch, at)
                .unwrap();
            let digest = match reading {
                Reading::Batched => {
                    batched_count += 1;
                    Digest::EMPTY
                }
                Reading::Hashed(hashed) => hashed.digest,
                Reading::Started(started) => batched.finish_digest(name, started).unwrap().digest,
            };
            places.push((name.to_string(), digest));
            if batch.is_full() {
                flushes.push(batch.files.len());
                batched.finish_batch(&mut batch, &mut places);
            }
        }
        flushes.push(batch.files.len());
        batched.finish_batch(&mut batch, &mut places);
        if batched_count == 0 {
            eprintln!(
                "skipped: the temporary directory's file system reads no file without waiting"
            );
            return;
        }
        // Full by its files (32 small ones), then by its bytes (8 small and 8 large ones: about
        // 266 KB), then the rest.
        assert_eq!(flushes, [32, 16, 22], "{batched_count} batched");
        for (name, digest) in &places {
            let path = dir.path().join(name);
            // What the file holds, as hashing it alone finds; recorded with the same trust.
            let expected = alone.digest(name, &path).unwrap().digest;
            if name == "grown" {
                // Read for the stat taken before it grew: its digest, never trusted.
                assert_eq!(*digest, Digest::of_bytes(b"longer now"));
                assert!(!batched.lookup(name).unwrap().trusted);
                continue;
            }
            assert_eq!(*digest, expected, "{name}");
            let entry = batched.lookup(name).unwrap();
            assert_eq!(entry.digest, *expected.as_bytes(), "{name}");
            assert!(entry.trusted, "{name}: an old file, read after the clock");
            assert!(batched.digest(name, &path).unwrap().from_cache, "{name}");
        }
    }

    #[test]
    fn a_file_opened_first_is_stat_ed_through_its_handle_and_only_a_regular_one_is_read() {
        use std::os::unix::fs::OpenOptionsExt;
        let (dir, file, state, cache) = an_old_file();
        assert!(cache.loaded_nothing());
        let opened = cache
            .digest_opened("a.txt", fs::File::open(&file).unwrap())
            .unwrap();
        assert!(!opened.from_cache);
        assert_eq!(opened.digest, Digest::of_bytes(b"hello"));
        assert_eq!(opened.stat, FileStat::of(&fs::metadata(&file).unwrap()));
        // Recorded under the open file's stat, which is the path's: a lookup by path trusts it,
        // and so does the next file opened there.
        assert!(cache.digest("a.txt", &file).unwrap().from_cache);
        let again = cache
            .digest_opened("a.txt", fs::File::open(&file).unwrap())
            .unwrap();
        assert!(again.from_cache);
        cache.save(&state).unwrap();
        assert!(!StatCache::load(&state).unwrap().loaded_nothing());

        // A directory or a fifo where the walk listed a file: refused, never read or recorded.
        fs::create_dir(dir.path().join("d")).unwrap();
        let fifo = dir.path().join("f");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let opened_fifo = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        for (name, opened) in [
            ("d", fs::File::open(dir.path().join("d")).unwrap()),
            ("f", opened_fifo),
        ] {
            let err = cache.digest_opened(name, opened).unwrap_err();
            assert!(err.to_string().contains("not a regular file"), "{err}");
            assert!(cache.lookup(name).is_none(), "{name}");
        }
    }

    /// A state directory whose stat cache holds a digest its file does not have, under that
    /// file's real stat and trusted: what a power cut can leave (the cache written, the file's
    /// bytes torn while its size and times were kept). `mark` is written as the boot mark.
    fn torn(mark: Option<&str>) -> (tempfile::TempDir, Arc<Dir>, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.txt");
        fs::write(&file, b"what the file holds").unwrap();
        let state = Arc::new(Dir::open_root(dir.path()).unwrap());
        let cache = StatCache::load(&state).unwrap();
        let real = FileStat::of(&fs::metadata(&file).unwrap());
        cache.record(
            "a.txt",
            real,
            Digest::of_bytes(b"what the cache says"),
            Some(Clock(i64::MAX)),
        );
        // (Its contents do not matter here: only that the run removes it.)
        fs::write(dir.path().join(crate::listings::FILE), b"listings").unwrap();
        cache.save(&state).unwrap();
        if let Some(mark) = mark {
            fs::write(dir.path().join(crate::fsutil::BOOT_MARK), mark).unwrap();
        }
        (dir, state, file)
    }

    fn this_boot() -> Option<&'static str> {
        let id = crate::fsutil::boot_id();
        if id.is_none() {
            eprintln!("skipped: this system names no boot (no /proc/sys/kernel/random/boot_id)");
        }
        id
    }

    #[test]
    fn stats_recorded_in_this_boot_are_trusted_and_marking_it_again_writes_nothing() {
        let Some(id) = this_boot() else { return };
        let (dir, state, file) = torn(Some(&format!("xbundle-boot-v1 {id}")));
        let cache = StatCache::load(&state).unwrap();
        let hashed = cache.digest("a.txt", &file).unwrap();
        assert!(
            hashed.from_cache,
            "the page cache outlives no reboot here: trusted"
        );
        assert_eq!(hashed.digest, Digest::of_bytes(b"what the cache says"));
        let mark = dir.path().join(crate::fsutil::BOOT_MARK);
        let before = fs::metadata(&mark).unwrap().modified().unwrap();
        cache.mark_boot().unwrap();
        assert_eq!(fs::metadata(&mark).unwrap().modified().unwrap(), before);
        assert!(dir.path().join(FILE).exists());
    }

    #[test]
    fn stats_recorded_before_a_reboot_are_never_trusted_and_the_run_removes_them() {
        let Some(id) = this_boot() else { return };
        for mark in [
            "xbundle-boot-v1 00000000-0000-4000-8000-000000000000",
            "xbundle-boot-v1 ",
            "garbage",
            "",
        ] {
            let (dir, state, file) = torn(Some(mark));
            assert!(dir.path().join(crate::listings::FILE).exists());
            let cache = StatCache::load(&state).unwrap();
            let hashed = cache.digest("a.txt", &file).unwrap();
            assert!(
                !hashed.from_cache,
                "mark {mark:?}: the old stat must not be trusted"
            );
            assert_eq!(hashed.digest, Digest::of_bytes(b"what the file holds"));
            // The run marks this boot, after removing what it ignored: nothing of it is
            // trusted later in this boot either.
            cache.mark_boot().unwrap();
            assert!(!dir.path().join(FILE).exists(), "mark {mark:?}");
            assert!(!dir.path().join(crate::listings::FILE).exists());
            let mark_path = dir.path().join(crate::fsutil::BOOT_MARK);
            if crate::fsutil::durability() == crate::fsutil::Durability::Never {
                assert!(!mark_path.exists(), "XBUNDLE_FSYNC=0 keeps no mark");
            } else {
                let written = fs::read_to_string(mark_path).unwrap();
                assert_eq!(written, format!("xbundle-boot-v1 {id}"));
            }
            let again = StatCache::load(&state).unwrap();
            assert!(!again.digest("a.txt", &file).unwrap().from_cache);
        }
    }

    #[test]
    fn without_a_mark_recorded_stats_are_trusted_only_where_no_marks_are_kept() {
        let Some(id) = this_boot() else { return };
        // Stats a version before marks recorded (it never flushed them), or left by
        // `XBUNDLE_FSYNC=0`: hashed again once, by the run that marks this boot.
        let (dir, state, file) = torn(None);
        let cache = StatCache::load(&state).unwrap();
        let keeps = crate::fsutil::keeps_marks();
        assert_eq!(cache.digest("a.txt", &file).unwrap().from_cache, !keeps);
        cache.mark_boot().unwrap();
        let mark = dir.path().join(crate::fsutil::BOOT_MARK);
        if keeps {
            assert_eq!(
                fs::read_to_string(mark).unwrap(),
                format!("xbundle-boot-v1 {id}")
            );
            assert!(
                !dir.path().join(FILE).exists(),
                "untrusted stats are removed"
            );
        } else {
            assert!(!mark.exists(), "XBUNDLE_FSYNC=0 writes no mark");
            assert!(dir.path().join(FILE).exists(), "a trusted cache is kept");
        }
    }

    #[test]
    fn a_mark_that_cannot_be_made_this_boot_s_vouches_for_nothing_saved() {
        if this_boot().is_none() || !crate::fsutil::keeps_marks() {
            return;
        }
        let (dir, state, file) = torn(Some("xbundle-boot-v1 another"));
        // Something the run cannot remove where the delta goes.
        fs::create_dir(dir.path().join(DELTA)).unwrap();
        let cache = StatCache::load(&state).unwrap();
        assert!(!cache.digest("a.txt", &file).unwrap().from_cache);
        let err = cache.mark_boot().unwrap_err();
        assert!(err.to_string().contains(DELTA), "{err}");
        cache.save(&state).unwrap();
        assert!(
            !dir.path().join(FILE).exists(),
            "nothing saved under a foreign mark"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join(crate::fsutil::BOOT_MARK)).unwrap(),
            "xbundle-boot-v1 another"
        );
    }

    fn stat(n: u64) -> FileStat {
        FileStat {
            size: n,
            mtime_ns: n as i64 * 10,
            ctime_ns: n as i64 * 20,
            inode: n + 7,
            executable: n.is_multiple_of(2),
        }
    }

    /// A saved cache of `paths` (each trusted), and its bytes.
    fn saved(paths: &[&str]) -> (tempfile::TempDir, Arc<Dir>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let state = marked(dir.path());
        let cache = StatCache::load(&state).unwrap();
        for (n, path) in paths.iter().enumerate() {
            let digest = Digest::of_bytes(path.as_bytes());
            cache.record(path, stat(n as u64), digest, Some(Clock(i64::MAX)));
        }
        cache.save(&state).unwrap();
        let bytes = fs::read(dir.path().join(FILE)).unwrap();
        (dir, state, bytes)
    }

    #[test]
    fn a_cache_loaded_ahead_is_used_only_while_its_files_are_the_ones_it_read() {
        use crate::confine::Place;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let place = || Place::within(dir.path(), &path);
        // No state directory yet (a first build): nothing loaded ahead.
        let early = Preload::start(place()).loaded();
        fs::create_dir(&path).unwrap();
        let state = marked(&path);
        assert!(early.and_then(|loaded| loaded.take(&state)).is_none());

        // A record of `path` (trusted), as a run makes one.
        let record = |cache: &StatCache, path: &str, n: u64| {
            cache.record(
                path,
                stat(n),
                Digest::of_bytes(n.to_string().as_bytes()),
                Some(Clock(i64::MAX)),
            );
        };
        let cache = StatCache::load(&state).unwrap();
        record(&cache, "a/one", 1);
        cache.save(&state).unwrap();
        drop(cache);
        // The very files it read: handed over, with what they hold.
        let ahead = Preload::start(place()).take(&state).expect("unchanged");
        assert!(ahead.lookup("a/one").is_some_and(|entry| entry.trusted));

        // Loaded ahead, then a run that finished meanwhile saved what it recorded (a delta
        // beside the full file, then a full file): loaded again.
        let before_delta = Preload::start(place()).loaded();
        let other = StatCache::load(&state).unwrap();
        record(&other, "b/two", 2);
        other.save(&state).unwrap();
        assert!(path.join(DELTA).exists());
        assert!(
            before_delta
                .and_then(|loaded| loaded.take(&state))
                .is_none()
        );
        let before_full = Preload::start(place()).loaded();
        other.save_within(&state, 0).unwrap();
        assert!(before_full.and_then(|loaded| loaded.take(&state)).is_none());
        drop(other);
        assert!(Preload::start(place()).take(&state).is_some());

        // The boot mark made anew (where marks are kept), or the directory replaced by a copy
        // of it (new inodes, same bytes): loaded again.
        let mark = path.join(crate::fsutil::BOOT_MARK);
        if mark.exists() {
            let before_mark = Preload::start(place()).loaded();
            // Moved aside, not removed (the new mark cannot take its inode), then made anew.
            fs::rename(&mark, dir.path().join("old-mark")).unwrap();
            let state = marked(&path);
            assert!(mark.exists());
            assert!(before_mark.and_then(|loaded| loaded.take(&state)).is_none());
        }
        let before_copy = Preload::start(place()).loaded();
        let moved = dir.path().join("moved");
        fs::rename(&path, &moved).unwrap();
        fs::create_dir(&path).unwrap();
        for entry in fs::read_dir(&moved).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), path.join(entry.file_name())).unwrap();
        }
        let copy = Arc::new(Dir::open_root(&path).unwrap());
        assert!(before_copy.and_then(|loaded| loaded.take(&copy)).is_none());
        assert!(Preload::start(place()).take(&copy).is_some());
    }

    #[test]
    fn saved_entries_load_back_merged_with_changes_in_path_order() {
        let (dir, state, _) = saved(&["b/two", "a/one", "c/three"]);
        let cache = StatCache::load(&state).unwrap();
        let entry = cache.lookup("a/one").unwrap();
        assert_eq!(entry.stat, stat(1));
        assert!(entry.trusted);
        assert_eq!(entry.digest, *Digest::of_bytes(b"a/one").as_bytes());
        // Replace one, add two (before and after every loaded path), save, load again.
        cache.record("b/two", stat(9), Digest::of_bytes(b"new"), None);
        cache.record(
            "0first",
            stat(4),
            Digest::of_bytes(b"0"),
            Some(Clock(i64::MAX)),
        );
        cache.record(
            "z/last",
            stat(5),
            Digest::of_bytes(b"z"),
            Some(Clock(i64::MAX)),
        );
        // The full file rewritten (a small change would go to the delta: see below).
        cache.save_within(&state, 0).unwrap();
        let reloaded = StatCache::load(&state).unwrap();
        let paths: Vec<&[u8]> = reloaded
            .base
            .offsets
            .iter()
            .map(|&offset| reloaded.base.path(offset))
            .collect();
        assert_eq!(
            paths,
            [&b"0first"[..], b"a/one", b"b/two", b"c/three", b"z/last"]
        );
        let replaced = reloaded.lookup("b/two").unwrap();
        assert_eq!(replaced.stat, stat(9));
        assert!(!replaced.trusted, "recorded without a clock: not trusted");
        assert_eq!(replaced.digest, *Digest::of_bytes(b"new").as_bytes());
        assert_eq!(reloaded.lookup("c/three").unwrap().stat, stat(2));
        assert!(reloaded.lookup("c/thre").is_none());
        drop(dir);
    }

    #[test]
    fn a_compact_record_gives_back_every_value_and_is_shorter_for_a_common_file() {
        let entry = |size: u64, mtime_ns: i64, ctime_ns: i64, inode: u64, trusted: bool| Entry {
            stat: FileStat {
                size,
                mtime_ns,
                ctime_ns,
                inode,
                executable: !trusted,
            },
            digest: std::array::from_fn(|i| i as u8 ^ size as u8),
            trusted,
        };
        let extremes = [0, 1, 127, 128, 16_383, 16_384, u64::MAX >> 1, u64::MAX];
        let mut cases = Vec::new();
        for &number in &extremes {
            let time = number as i64;
            cases.push(entry(number, time, time, number, true));
            cases.push(entry(number, time, time.wrapping_neg(), !number, false));
            cases.push(entry(!number, i64::MIN, i64::MAX, number, number % 2 == 0));
        }
        let mut bytes = vec![7u8; 3]; // records at any offset
        let mut offsets = Vec::new();
        for (n, case) in cases.iter().enumerate() {
            offsets.push(bytes.len());
            encode_compact(&mut bytes, format!("d/{n}").as_bytes(), case);
        }
        offsets.push(bytes.len());
        for (n, case) in cases.iter().enumerate() {
            let (found, len) = decode_compact(&bytes, offsets[n]);
            assert_eq!(
                (found.stat, found.digest, found.trusted),
                (case.stat, case.digest, case.trusted),
                "record {n}"
            );
            assert_eq!(len, offsets[n + 1] - offsets[n], "record {n}'s length");
            assert_eq!(record_path(&bytes, offsets[n]), format!("d/{n}").as_bytes());
            assert!(len <= COMPACT_MAX + record_path(&bytes, offsets[n]).len());
        }
        // A 2 KiB file with a seven-digit inode, written once: 19 bytes fewer than on disk.
        let mut common = Vec::new();
        let now = 1_795_985_615_123_456_789;
        encode_compact(&mut common, b"p", &entry(2048, now, now, 1_234_567, true));
        assert_eq!(common.len(), FIXED + 1 - 19);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// The records come out in the order of their paths' bytes, whatever the paths share
        /// and however they differ: one a prefix of another, zero bytes, high bytes, a
        /// difference before, at or past the sixteenth byte after the shared prefix.
        #[test]
        fn records_come_out_in_byte_order(
            prefix in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..24),
            tails in proptest::collection::vec(
                proptest::collection::vec(proptest::sample::select(vec![0u8, 1, b'a', b'b', 0xff]), 0..40),
                1..200,
            ),
        ) {
            let mut overlay = Overlay::default();
            let entry = Entry { stat: FileStat { size: 1, mtime_ns: 1, ctime_ns: 1, inode: 1, executable: false }, digest: [0; 32], trusted: true };
            let paths: Vec<Vec<u8>> = tails.iter().map(|tail| [prefix.as_slice(), tail].concat()).collect();
            for path in &paths {
                overlay.insert(path, &entry);
            }
            let mut expected = paths.clone();
            expected.sort();
            expected.dedup();
            let sorted: Vec<&[u8]> = overlay.sorted().into_iter().map(|at| overlay.path(at)).collect();
            proptest::prop_assert_eq!(sorted, expected.iter().map(Vec::as_slice).collect::<Vec<_>>());
        }
    }

    #[test]
    fn records_equal_for_sixteen_bytes_past_the_shared_prefix_come_out_in_byte_order() {
        let entry = Entry {
            stat: stat(1),
            digest: [0; 32],
            trusted: true,
        };
        let mut overlay = Overlay::default();
        let paths = [
            "a/0123456789abcdefZ",
            "a/0123456789abcdef",
            "a/0123456789abcdef\0",
            "a/0123456789abcdefA",
            "a/0123456789abcdeg",
            "a/0123456789abcdefA/b",
            // Paths that share nothing with them, so that all of the above tie on 16 bytes.
            "b",
            "",
        ];
        for path in paths {
            overlay.insert(path.as_bytes(), &entry);
        }
        let mut expected: Vec<&[u8]> = paths.iter().map(|path| path.as_bytes()).collect();
        expected.sort();
        let sorted: Vec<&[u8]> = overlay
            .sorted()
            .into_iter()
            .map(|at| overlay.path(at))
            .collect();
        assert_eq!(sorted, expected);
    }

    #[test]
    fn an_overlay_spanning_many_chunks_finds_overwrites_and_orders_every_record() {
        let entry = |n: u64| Entry {
            stat: FileStat {
                size: n,
                mtime_ns: n as i64,
                ctime_ns: -(n as i64),
                inode: n * 7,
                executable: n.is_multiple_of(2),
            },
            digest: [n as u8; 32],
            trusted: n.is_multiple_of(3),
        };
        let mut overlay = Overlay::default();
        // About 1.5 MiB of records (six chunks and more, and enough to be sorted on two
        // threads), and paths of the largest length kept (which fill a chunk's tail or open a
        // new one) and one longer (not kept).
        let paths: Vec<Vec<u8>> = (0..9000u64)
            .map(|n| format!("dir-{:03}/{}-{n:05}.txt", n % 97, "p".repeat(90)).into_bytes())
            .chain((0..3u8).map(|n| vec![b'a' + n; u16::MAX as usize]))
            .collect();
        for (n, path) in paths.iter().enumerate() {
            overlay.insert(path, &entry(n as u64));
        }
        overlay.insert(&vec![b'z'; u16::MAX as usize + 1], &entry(1));
        // Every other one recorded again: overwritten in place where its record keeps its
        // length, moved to a new one where it does not (smaller numbers take fewer LEB128
        // bytes, and entry 0 alone has its ctime equal to its mtime).
        let before: usize = overlay.chunks.iter().map(Vec::len).sum();
        let mut rerecorded = 0;
        for (n, path) in paths.iter().enumerate().step_by(2) {
            let entry = entry(n as u64 + 1_000);
            let mut record = Vec::new();
            encode_compact(&mut record, path, &entry);
            rerecorded += record.len();
            overlay.insert(path, &entry);
        }
        let grown = overlay.chunks.iter().map(Vec::len).sum::<usize>() - before;
        assert!(grown > 0, "some records moved");
        assert!(grown < rerecorded / 2, "most were overwritten in place");
        assert!(overlay.chunks.len() >= 4, "{} chunks", overlay.chunks.len());
        assert!(overlay.chunks.iter().all(|chunk| chunk.len() <= CHUNK));
        let mut untrusted = 0;
        for (n, path) in paths.iter().enumerate() {
            let expected = entry(n as u64 + if n % 2 == 0 { 1_000 } else { 0 });
            untrusted += usize::from(!expected.trusted);
            let found = overlay.get(path).expect("recorded");
            assert_eq!(
                (found.stat, found.digest, found.trusted),
                (expected.stat, expected.digest, expected.trusted),
                "record {n}"
            );
        }
        assert!(overlay.get(&vec![b'z'; u16::MAX as usize + 1]).is_none());
        // Counted through overwrites in place and moves alike.
        assert_eq!(overlay.untrusted, untrusted);
        let mut expected = paths.clone();
        expected.sort();
        assert!(expected.len() >= SORT_IN_TWO_MIN);
        let sorted: Vec<&[u8]> = overlay
            .sorted()
            .into_iter()
            .map(|at| overlay.path(at))
            .collect();
        assert_eq!(
            sorted,
            expected.iter().map(Vec::as_slice).collect::<Vec<_>>()
        );
        let records: usize = paths.iter().map(|path| FIXED + path.len()).sum();
        assert_eq!(overlay.byte_len(), records);
    }

    #[test]
    fn lookups_in_any_order_and_from_two_caches_find_exactly_their_records() {
        let names: Vec<String> = (0..300)
            .map(|n| format!("d{}/f{n:03}.txt", n / 40))
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let (_dir, state, _) = saved(&refs);
        let (_other_dir, other_state, _) = saved(&refs[..7]);
        let cache = StatCache::load(&state).unwrap();
        let other = StatCache::load(&other_state).unwrap();
        let check = |cache: &StatCache, index: usize| {
            let entry = cache.lookup(&names[index]).expect("recorded");
            assert_eq!(entry.stat, stat(index as u64), "{}", names[index]);
            assert_eq!(
                entry.digest,
                *Digest::of_bytes(names[index].as_bytes()).as_bytes()
            );
        };
        // In order (the sequential path), backwards, strided, interleaved with misses (paths
        // next to recorded ones), and alternating between two caches on one thread.
        let mut order: Vec<usize> = (0..names.len()).collect();
        order.extend((0..names.len()).rev());
        order.extend((0..names.len()).step_by(7));
        for index in order {
            check(&cache, index);
            assert!(cache.lookup(&format!("{}x", names[index])).is_none());
            assert!(
                cache
                    .lookup(&names[index][..names[index].len() - 1])
                    .is_none()
            );
            if index < 7 {
                check(&other, index);
            } else {
                assert!(other.lookup(&names[index]).is_none());
            }
        }
        // From several threads at once, each in order.
        std::thread::scope(|scope| {
            for start in [0, 100, 200] {
                let check = &check;
                let cache = &cache;
                scope.spawn(move || (start..start + 100).for_each(|index| check(cache, index)));
            }
        });
    }

    #[test]
    fn the_in_run_table_keeps_the_last_record_of_each_path() {
        let dir = tempfile::tempdir().unwrap();
        let state = marked(dir.path());
        let cache = StatCache::load(&state).unwrap();
        let paths: Vec<String> = (0..5000).map(|n| format!("d{}/f{n}.txt", n % 7)).collect();
        for (n, path) in paths.iter().enumerate() {
            cache.record(path, stat(n as u64), Digest::of_bytes(b"first"), None);
        }
        // Every other path again: replaced in place, the others untouched.
        for (n, path) in paths.iter().enumerate().step_by(2) {
            let digest = Digest::of_bytes(path.as_bytes());
            cache.record(path, stat(n as u64 + 1), digest, Some(Clock(i64::MAX)));
        }
        let long = "x".repeat(u16::MAX as usize + 1);
        cache.record(&long, stat(1), Digest::of_bytes(b"long"), None);
        assert!(cache.lookup(&long).is_none(), "too long for a record");
        let check = |cache: &StatCache| {
            for (n, path) in paths.iter().enumerate() {
                let entry = cache.lookup(path).unwrap();
                if n % 2 == 0 {
                    assert_eq!(entry.stat, stat(n as u64 + 1), "{path}");
                    assert_eq!(entry.digest, *Digest::of_bytes(path.as_bytes()).as_bytes());
                    assert!(entry.trusted);
                } else {
                    assert_eq!(entry.stat, stat(n as u64), "{path}");
                    assert_eq!(entry.digest, *Digest::of_bytes(b"first").as_bytes());
                    assert!(!entry.trusted);
                }
            }
            assert!(cache.lookup("d0/f7.tx").is_none());
        };
        check(&cache);
        cache.save(&state).unwrap();
        let reloaded = StatCache::load(&state).unwrap();
        assert_eq!(reloaded.base.offsets.len(), paths.len());
        check(&reloaded);
    }

    #[test]
    fn anything_but_an_exact_file_is_an_empty_cache() {
        let (dir, state, bytes) = saved(&["a/one", "b/two"]);
        let path = dir.path().join(FILE);
        let empty = |bytes: &[u8], what: &str| {
            fs::write(&path, bytes).unwrap();
            let cache = StatCache::load(&state).unwrap();
            assert!(cache.base.offsets.is_empty(), "{what} was trusted");
            assert!(cache.lookup("a/one").is_none(), "{what}");
        };
        for len in 0..bytes.len() {
            empty(&bytes[..len], &format!("the first {len} bytes"));
        }
        let mut longer = bytes.clone();
        longer.insert(MAGIC.len(), 0);
        empty(&longer, "a stray byte");
        // The two records swapped: the order is checked.
        let first = MAGIC.len();
        let record = FIXED + "a/one".len();
        let mut swapped = bytes[..first].to_vec();
        swapped.extend_from_slice(&bytes[first + record..first + 2 * record]);
        swapped.extend_from_slice(&bytes[first..first + record]);
        swapped.extend_from_slice(&bytes[first + 2 * record..]);
        assert_eq!(swapped.len(), bytes.len());
        empty(&swapped, "unsorted records");
        // Format 2 (postcard: a varint 2, then the entries) and other formats.
        empty(&[2, 1, 5, b'a', b'/', b'o', b'n', b'e'], "format 2");
        empty(b"xbstat4\n", "another magic");
        // The real file still loads.
        fs::write(&path, &bytes).unwrap();
        assert!(StatCache::load(&state).unwrap().lookup("a/one").is_some());
    }

    #[test]
    fn lookups_that_hash_nothing_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.txt");
        fs::write(&file, b"hello").unwrap();
        // Older than any clock reading to come, on any kernel's timestamp granularity.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let state_path = dir.path().join("state");
        fs::create_dir(&state_path).unwrap();
        let state = marked(&state_path);
        let cache = StatCache::load(&state).unwrap();
        assert!(!cache.digest("a.txt", &file).unwrap().from_cache);
        cache.save(&state).unwrap();
        // Dropping the cache removes its clock probe.
        drop(cache);
        let listing = || {
            let mut names: Vec<_> = fs::read_dir(&state_path)
                .unwrap()
                .map(|entry| {
                    let entry = entry.unwrap();
                    (
                        entry.file_name(),
                        entry.metadata().unwrap().modified().unwrap(),
                    )
                })
                .collect();
            names.sort();
            names
        };
        let before = listing();
        let expected = 1 + usize::from(crate::fsutil::keeps_marks());
        assert_eq!(
            before.len(),
            expected,
            "the stat cache and the mark: {before:?}"
        );
        let again = StatCache::load(&state).unwrap();
        assert!(again.digest("a.txt", &file).unwrap().from_cache);
        again.save(&state).unwrap();
        drop(again);
        assert_eq!(
            listing(),
            before,
            "a run that hashed nothing wrote something"
        );
    }

    #[test]
    fn settling_rehashes_racy_files_whose_stat_held_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let root = Dir::open_root(dir.path()).unwrap();
        let state_path = dir.path().join("state");
        fs::create_dir(&state_path).unwrap();
        let state = marked(&state_path);
        let cache = StatCache::load(&state).unwrap();
        let stat_of = |name: &str| FileStat::of(&fs::metadata(dir.path().join(name)).unwrap());
        // Recorded untrusted (no clock: as if hashed in the tick it was written in), each with
        // a digest that is not its content, so a settle that trusted without reading shows.
        let wrong = Digest::of_bytes(b"not the content");
        for name in ["held.txt", "changed.txt", "future.txt"] {
            fs::write(dir.path().join(name), name).unwrap();
            cache.record(name, stat_of(name), wrong, None);
        }
        // Changed since it was recorded: left for the next lookup, which sees a new stat.
        fs::write(dir.path().join("changed.txt"), "changed, longer").unwrap();
        // An mtime ahead of any clock reading: still in (or after) the current tick.
        let future = std::time::SystemTime::now() + Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(dir.path().join("future.txt"))
            .unwrap()
            .set_modified(future)
            .unwrap();
        let future_stat = stat_of("future.txt");
        cache.record("future.txt", future_stat, wrong, None);
        // Past the file system's timestamp tick.
        std::thread::sleep(Duration::from_millis(20));
        let opened = Mutex::new(Vec::new());
        let open = |relative: &str| {
            opened.lock().unwrap().push(relative.to_string());
            root.open_file(relative).map_err(io::Error::other)
        };
        assert_eq!(cache.settle(&open, u64::MAX), 1);
        let held = cache.lookup("held.txt").unwrap();
        assert!(
            held.trusted,
            "a racy file whose stat held is trusted once read"
        );
        assert_eq!(Digest::from_raw(held.digest), Digest::of_bytes(b"held.txt"));
        let changed = cache.lookup("changed.txt").unwrap();
        assert!(!changed.trusted);
        assert_eq!(Digest::from_raw(changed.digest), wrong);
        let future = cache.lookup("future.txt").unwrap();
        assert!(!future.trusted);
        assert_eq!(future.stat, future_stat);
        let mut opened = std::mem::take(&mut *opened.lock().unwrap());
        opened.sort();
        // The future file is not even opened; the changed one is opened, stat'ed, not read.
        assert_eq!(opened, ["changed.txt", "held.txt"]);
        // A later lookup of the settled file reads nothing.
        let again = cache
            .digest("held.txt", &dir.path().join("held.txt"))
            .unwrap();
        assert!(again.from_cache);
        // The byte budget: nothing untrusted is left that fits in none.
        fs::write(dir.path().join("big.txt"), "0123456789").unwrap();
        cache.record("big.txt", stat_of("big.txt"), wrong, None);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(cache.settle(&open, 9), 0);
        assert!(!cache.lookup("big.txt").unwrap().trusted);
    }

    #[test]
    fn a_small_change_is_saved_as_a_delta_of_the_full_file() {
        let (dir, state, full) = saved(&["a/one", "b/two", "c/three"]);
        let cache = StatCache::load(&state).unwrap();
        cache.record(
            "b/two",
            stat(9),
            Digest::of_bytes(b"new"),
            Some(Clock(i64::MAX)),
        );
        cache.record("d/four", stat(4), Digest::of_bytes(b"4"), None);
        cache.save(&state).unwrap();
        // The full file is untouched (not rewritten for two records); the delta holds them.
        assert_eq!(fs::read(dir.path().join(FILE)).unwrap(), full);
        assert!(dir.path().join(DELTA).is_file());
        let reloaded = StatCache::load(&state).unwrap();
        let two = reloaded.lookup("b/two").unwrap();
        assert_eq!((two.stat, two.trusted), (stat(9), true));
        assert_eq!(Digest::from_raw(two.digest), Digest::of_bytes(b"new"));
        let four = reloaded.lookup("d/four").unwrap();
        assert_eq!((four.stat, four.trusted), (stat(4), false));
        assert_eq!(reloaded.lookup("a/one").unwrap().stat, stat(0));
        // A later run's records join the delta's.
        reloaded.record("a/one", stat(8), Digest::of_bytes(b"8"), None);
        reloaded.save(&state).unwrap();
        let again = StatCache::load(&state).unwrap();
        assert_eq!(again.lookup("a/one").unwrap().stat, stat(8));
        assert_eq!(again.lookup("b/two").unwrap().stat, stat(9));
        // Past the limit: the full file is rewritten with every record, the delta removed.
        again.record("e/five", stat(5), Digest::of_bytes(b"5"), None);
        // This run's record of a path the delta has wins.
        again.record("b/two", stat(6), Digest::of_bytes(b"6"), None);
        again.save_within(&state, 0).unwrap();
        assert!(!dir.path().join(DELTA).exists());
        let merged = StatCache::load(&state).unwrap();
        assert!(merged.delta.is_empty());
        for (path, n) in [
            ("a/one", 8),
            ("b/two", 6),
            ("c/three", 2),
            ("d/four", 4),
            ("e/five", 5),
        ] {
            assert_eq!(merged.base.lookup(path).unwrap().stat, stat(n), "{path}");
        }
    }

    #[test]
    fn a_delta_of_another_full_file_or_malformed_is_ignored() {
        let (dir, state, _) = saved(&["a/one", "b/two"]);
        let cache = StatCache::load(&state).unwrap();
        // Trusted, with a digest that is not the full file's: were it read, it would answer.
        cache.record(
            "a/one",
            stat(7),
            Digest::of_bytes(b"delta"),
            Some(Clock(i64::MAX)),
        );
        cache.save(&state).unwrap();
        let delta = fs::read(dir.path().join(DELTA)).unwrap();
        assert!(
            StatCache::load(&state)
                .unwrap()
                .lookup("a/one")
                .unwrap()
                .stat
                == stat(7)
        );
        // The full file rewritten by a version that knows no delta (a new inode): the delta
        // describes a file that is gone.
        let full = fs::read(dir.path().join(FILE)).unwrap();
        // Past the timestamp tick: a new inode may reuse the number, never the times too.
        std::thread::sleep(Duration::from_millis(20));
        fs::remove_file(dir.path().join(FILE)).unwrap();
        fs::write(dir.path().join(FILE), &full).unwrap();
        let stale = StatCache::load(&state).unwrap();
        assert_eq!(
            stale.lookup("a/one").unwrap().stat,
            stat(0),
            "a stale delta was read"
        );
        // Its next save rewrites the full file without the stale records and removes it.
        stale.record("c/three", stat(3), Digest::of_bytes(b"3"), None);
        stale.save(&state).unwrap();
        assert!(!dir.path().join(DELTA).exists());
        let rewritten = StatCache::load(&state).unwrap();
        assert_eq!(rewritten.base.lookup("a/one").unwrap().stat, stat(0));
        assert_eq!(rewritten.base.lookup("c/three").unwrap().stat, stat(3));
        // A truncated delta, or one with a bad count, is no delta either.
        let id = rewritten.base_id.unwrap();
        let mut good = Overlay::default();
        good.insert(b"a/one", &rewritten.base.lookup("a/one").unwrap());
        write_delta(&state, id, &good).unwrap();
        let bytes = fs::read(dir.path().join(DELTA)).unwrap();
        assert!(parse_delta(&bytes, id).is_some());
        assert!(parse_delta(&bytes[..bytes.len() - 1], id).is_none());
        assert!(parse_delta(&bytes[..bytes.len() - 20], id).is_none());
        let mut bad_count = bytes.clone();
        let at = bad_count.len() - 16;
        bad_count[at] = 2;
        assert!(parse_delta(&bad_count, id).is_none());
        assert!(
            parse_delta(&delta, id).is_none(),
            "another full file's delta"
        );
        fs::write(dir.path().join(DELTA), &bytes[..bytes.len() - 3]).unwrap();
        let torn = StatCache::load(&state).unwrap();
        assert!(torn.delta_found && !torn.delta_valid);
        torn.record("d/four", stat(4), Digest::of_bytes(b"4"), None);
        torn.save(&state).unwrap();
        assert!(
            !dir.path().join(DELTA).exists(),
            "a torn delta is replaced by a full write"
        );
    }
}
