//! Directory listings kept across runs: what a walk read from each directory (its entries'
//! names and kinds), with the directory's stat, so a directory that did not change is not read
//! again (a no-op run lists every input directory; on ext4 a listing costs two `getdents64`
//! and a hashed index built in the kernel, about a tenth of a no-op's time).
//!
//! **Why a listing can be trusted.** Creating, removing or renaming an entry of a directory
//! sets the directory's mtime and ctime to the current time. A listing is recorded with the
//! directory's stat taken *before* it was read, and only when that mtime is older than a
//! reading of the file system's clock also taken before the read (the stat cache's racy-clean
//! rule, see [`crate::statcache`]): any later change gives the directory an mtime at least that
//! reading, so a stat equal to the recorded one (inode, mtime and ctime) proves that no entry
//! was added, removed or renamed since. A change during the read leaves the directory newer
//! than the recorded stat: that listing is never used. What is in the entries (a file's bytes,
//! a subdirectory's own entries) is not part of a listing: files go through the stat cache,
//! subdirectories through their own listings.
//!
//! **File** (`state/listings`, rewritten whole, atomically, by a run that recorded something):
//! `xblist1\n`, then records of `u16` path length, the root-relative path of the directory,
//! `u64` inode, `i64` mtime and ctime (ns), `u32` length of the entries, then the entries, each a
//! `u16` name length, the name and a kind byte; then the `u64` record count and `xblist1E`.
//! Anything malformed is an empty cache (every directory is read). A name handed out is checked
//! first (not empty, no `/`, no NUL, not `.` or `..`), so even a damaged file never leads a walk
//! out of the directory it lists.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::confine::{Dir, Kind, Listed};
use crate::statcache::FileStat;

/// The file in the state directory.
pub const FILE: &str = "listings";
const MAGIC: &[u8; 8] = b"xblist1\n";
const MAGIC_END: &[u8; 8] = b"xblist1E";
/// The largest file read or written (a larger one is an empty cache; a save that would exceed it
/// keeps only this run's listings).
const MAX_BYTES: usize = 64 << 20;

/// A directory's identity and last change: what a listing is valid for.
type Identity = (u64, i64, i64);

/// A listing this run recorded: the directory's identity and its encoded entries.
type Recorded = (Identity, Vec<u8>);

fn identity(stat: &FileStat) -> Identity {
    (stat.inode, stat.mtime_ns, stat.ctime_ns)
}

/// The listings loaded from the state directory and those recorded by this run.
#[derive(Default)]
pub struct Listings {
    /// The file as loaded.
    bytes: Vec<u8>,
    /// Path -> (identity, range of its encoded entries in `bytes`).
    loaded: HashMap<Vec<u8>, (Identity, std::ops::Range<usize>)>,
    /// This run's: path -> (identity, encoded entries).
    recorded: RwLock<HashMap<Vec<u8>, Recorded>>,
    dirty: AtomicBool,
}

impl Listings {
    /// Loads `state/listings` from `dir`; anything unreadable or malformed is an empty cache.
    pub fn load(dir: &Dir) -> Listings {
        match dir.read_file(FILE, MAX_BYTES as u64) {
            Ok(Some(bytes)) => Listings::parse(bytes).unwrap_or_default(),
            _ => Listings::default(),
        }
    }

    fn parse(bytes: Vec<u8>) -> Option<Listings> {
        let body_end = bytes.len().checked_sub(16)?;
        if !bytes.starts_with(MAGIC) || &bytes[body_end + 8..] != MAGIC_END {
            return None;
        }
        let count = u64::from_le_bytes(bytes[body_end..body_end + 8].try_into().ok()?);
        let mut loaded = HashMap::new();
        let mut at = MAGIC.len();
        let mut reader = Reader {
            bytes: &bytes[..body_end],
            at: &mut at,
        };
        while *reader.at < body_end {
            let len = reader.u16()? as usize;
            let path = reader.take(len)?.to_vec();
            let identity = (reader.u64()?, reader.u64()? as i64, reader.u64()? as i64);
            let entries_len = reader.u32()? as usize;
            let start = *reader.at;
            reader.take(entries_len)?;
            loaded.insert(path, (identity, start..start + entries_len));
        }
        if loaded.len() as u64 != count {
            return None;
        }
        Some(Listings {
            bytes,
            loaded,
            ..Listings::default()
        })
    }

    /// The entries of the directory `path` (root-relative) if a listing is known for its
    /// current stat `stat`.
    pub fn get(&self, path: &[u8], stat: &FileStat) -> Option<Listed> {
        let wanted = identity(stat);
        if self.dirty.load(Ordering::Acquire) {
            let recorded = self.recorded.read().unwrap_or_else(|e| e.into_inner());
            if let Some((identity, encoded)) = recorded.get(path) {
                return (*identity == wanted).then(|| decode(encoded)).flatten();
            }
        }
        let (identity, range) = self.loaded.get(path)?;
        (*identity == wanted)
            .then(|| decode(&self.bytes[range.clone()]))
            .flatten()
    }

    /// Records what the directory `path` held when its stat was `stat`, read after the clock
    /// reading `clock_ns`: kept only when the directory is older than that reading (see the
    /// module docs).
    pub fn record(&self, path: &[u8], stat: &FileStat, clock_ns: i64, entries: &Listed) {
        if !crate::statcache::older_than(stat.mtime_ns, clock_ns) || path.len() > u16::MAX as usize
        {
            return;
        }
        // Sized exactly: 20,000 recorded names are a noticeable part of a cold run's peak.
        let size = entries
            .iter()
            .map(|(name, _)| 3 + name.to_bytes().len())
            .sum();
        let mut encoded = Vec::with_capacity(size);
        for (name, kind) in entries.iter() {
            let name = name.to_bytes();
            let Ok(len) = u16::try_from(name.len()) else {
                return;
            };
            encoded.extend_from_slice(&len.to_le_bytes());
            encoded.extend_from_slice(name);
            encoded.push(kind_byte(kind));
        }
        let mut recorded = self.recorded.write().unwrap_or_else(|e| e.into_inner());
        recorded.insert(path.to_vec(), (identity(stat), encoded));
        self.dirty.store(true, Ordering::Release);
    }

    /// Writes the listings (those loaded and this run's, this run's winning) if this run
    /// recorded any.
    pub fn save(&self, dir: &Dir) -> std::io::Result<()> {
        if !self.dirty.load(Ordering::Acquire) {
            return Ok(());
        }
        let recorded = self.recorded.read().unwrap_or_else(|e| e.into_inner());
        let mut records: Vec<(&[u8], Identity, &[u8])> = recorded
            .iter()
            .map(|(path, (identity, encoded))| (path.as_slice(), *identity, encoded.as_slice()))
            .collect();
        let size = |records: &[(&[u8], Identity, &[u8])]| -> usize {
            records
                .iter()
                .map(|(p, _, e)| 2 + p.len() + 28 + e.len())
                .sum::<usize>()
                + 24
        };
        let mut total = size(&records);
        for (path, (identity, range)) in &self.loaded {
            let extra = 2 + path.len() + 28 + range.len();
            if !recorded.contains_key(path) && total + extra <= MAX_BYTES {
                records.push((path.as_slice(), *identity, &self.bytes[range.clone()]));
                total += extra;
            }
        }
        if total > MAX_BYTES {
            return Ok(());
        }
        records.sort_unstable_by(|a, b| a.0.cmp(b.0));
        // Streamed, not assembled first: a copy of every listing would add to the run's peak.
        dir.write_file(FILE, 0o644, |file| {
            use std::io::Write;
            let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
            let mut write = || -> std::io::Result<()> {
                out.write_all(MAGIC)?;
                for (path, (inode, mtime, ctime), encoded) in &records {
                    out.write_all(&(path.len() as u16).to_le_bytes())?;
                    out.write_all(path)?;
                    out.write_all(&inode.to_le_bytes())?;
                    out.write_all(&mtime.to_le_bytes())?;
                    out.write_all(&ctime.to_le_bytes())?;
                    out.write_all(&(encoded.len() as u32).to_le_bytes())?;
                    out.write_all(encoded)?;
                }
                out.write_all(&(records.len() as u64).to_le_bytes())?;
                out.write_all(MAGIC_END)?;
                out.flush()
            };
            write().map_err(|source| crate::confine::ConfineError::Io {
                path: FILE.to_string(),
                source,
            })
        })
        .map(|_| ())
        .map_err(std::io::Error::other)
    }
}

/// Reads little-endian numbers and byte runs, `None` past the end.
struct Reader<'a, 'b> {
    bytes: &'a [u8],
    at: &'b mut usize,
}

impl<'a> Reader<'a, '_> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(len)?;
        let taken = self.bytes.get(*self.at..end)?;
        *self.at = end;
        Some(taken)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

fn kind_byte(kind: Option<Kind>) -> u8 {
    match kind {
        None => 0,
        Some(Kind::File) => 1,
        Some(Kind::Dir) => 2,
        Some(Kind::Symlink) => 3,
        Some(Kind::Other) => 4,
    }
}

/// How many entries `encoded` holds and their names' bytes; `None` at an empty name or one
/// that runs past the end. A malformed listing is so refused before anything is allocated for
/// it, and what is allocated is at most what well-formed entries need (each takes 4 bytes
/// here at least; a forged file of zeros once made `decode` ask for 5 times its size). The
/// rest (names, kinds) is checked as it is decoded.
fn sizes(encoded: &[u8]) -> Option<(usize, usize)> {
    let mut at = 0;
    let mut reader = Reader {
        bytes: encoded,
        at: &mut at,
    };
    let (mut count, mut bytes) = (0, 0);
    while *reader.at < encoded.len() {
        let len = usize::from(reader.u16()?);
        // The name and its kind byte.
        if len == 0 || reader.take(len + 1).is_none() {
            return None;
        }
        (count, bytes) = (count + 1, bytes + len);
    }
    Some((count, bytes))
}

/// The entries encoded in `encoded`; `None` if anything in it is malformed or a name is not a
/// plain name (the whole listing is then unused: the directory is read).
fn decode(encoded: &[u8]) -> Option<Listed> {
    let mut at = 0;
    let mut reader = Reader {
        bytes: encoded,
        at: &mut at,
    };
    // Sized exactly (counted first: one allocation each, not vectors grown entry by entry).
    let (count, bytes) = sizes(encoded)?;
    let mut entries = Listed::with_capacity(count, bytes);
    while *reader.at < encoded.len() {
        let len = reader.u16()? as usize;
        let name = reader.take(len)?;
        if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
            return None;
        }
        let kind = match reader.take(1)?[0] {
            0 => None,
            1 => Some(Kind::File),
            2 => Some(Kind::Dir),
            3 => Some(Kind::Symlink),
            4 => Some(Kind::Other),
            _ => return None,
        };
        entries.push(name, kind)?;
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn stat(inode: u64, mtime_ns: i64) -> FileStat {
        FileStat {
            size: 4096,
            mtime_ns,
            ctime_ns: mtime_ns,
            inode,
            executable: true,
        }
    }

    fn entries(names: &[&str]) -> Listed {
        entries_of(
            &names
                .iter()
                .map(|name| (*name, Some(Kind::File)))
                .collect::<Vec<_>>(),
        )
    }

    fn entries_of(names: &[(&str, Option<Kind>)]) -> Listed {
        let mut listed = Listed::default();
        for (name, kind) in names {
            listed.push(name.as_bytes(), *kind).unwrap();
        }
        listed
    }

    #[test]
    fn listings_round_trip_and_answer_only_for_the_same_directory_state() {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(Dir::open_root(dir.path()).unwrap());
        let listings = Listings::load(&state);
        let src = entries(&["a.txt", "b.txt"]);
        listings.record(b"tasks/t1/src", &stat(7, 100), 200, &src);
        // Changed in the clock's tick (mtime not older than the reading): not kept.
        listings.record(b"tasks/t2/src", &stat(8, 200), 200, &src);
        let odd = entries_of(&[
            ("deep", Some(Kind::Dir)),
            ("link", Some(Kind::Symlink)),
            ("unknown", None),
        ]);
        listings.record(b"", &stat(2, 50), 200, &odd);
        assert_eq!(
            listings.get(b"tasks/t1/src", &stat(7, 100)),
            Some(src.clone())
        );
        assert_eq!(listings.get(b"tasks/t2/src", &stat(8, 200)), None);
        listings.save(&state).unwrap();

        let loaded = Listings::load(&state);
        assert_eq!(loaded.get(b"tasks/t1/src", &stat(7, 100)), Some(src));
        assert_eq!(loaded.get(b"", &stat(2, 50)), Some(odd));
        // Another mtime, ctime or inode: the directory changed (or is another one).
        assert_eq!(loaded.get(b"tasks/t1/src", &stat(7, 101)), None);
        assert_eq!(loaded.get(b"tasks/t1/src", &stat(9, 100)), None);
        let mut touched = stat(7, 100);
        touched.ctime_ns += 1;
        assert_eq!(loaded.get(b"tasks/t1/src", &touched), None);
        assert_eq!(loaded.get(b"tasks/t2/src", &stat(8, 200)), None);
        // A run that records nothing writes nothing; one that records keeps the rest.
        loaded.save(&state).unwrap();
        loaded.record(b"other", &stat(3, 10), 20, &entries(&["x"]));
        loaded.save(&state).unwrap();
        let again = Listings::load(&state);
        assert!(again.get(b"tasks/t1/src", &stat(7, 100)).is_some());
        assert!(again.get(b"other", &stat(3, 10)).is_some());
    }

    #[test]
    fn a_listing_is_measured_before_it_is_decoded_and_a_malformed_one_allocates_nothing() {
        let good = [b"\x01\x00a\x01".as_slice(), b"\x03\x00abc\x02"].concat();
        assert_eq!(sizes(&good), Some((2, 4)));
        assert_eq!(sizes(&[]), Some((0, 0)));
        // Zero-length names (a forged file of zeros), a name past the end, half a length.
        assert_eq!(sizes(&vec![0u8; 3_000]), None);
        assert_eq!(sizes(&good[..good.len() - 1]), None);
        assert_eq!(sizes(&[good.as_slice(), b"\x01"].concat()), None);
        assert!(decode(&vec![0u8; 3_000]).is_none());
        assert_eq!(decode(&good).map(|listed| listed.len()), Some(2));
    }

    #[test]
    fn a_damaged_file_is_an_empty_cache_and_never_hands_out_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(Dir::open_root(dir.path()).unwrap());
        let listings = Listings::load(&state);
        listings.record(b"src", &stat(7, 100), 200, &entries(&["a.txt", "b.txt"]));
        listings.save(&state).unwrap();
        let good = std::fs::read(dir.path().join(FILE)).unwrap();
        // Truncated anywhere, or one byte flipped: empty, or the listing is whole and right.
        for cut in 0..good.len() {
            let loaded = Listings::parse(good[..cut].to_vec()).unwrap_or_default();
            assert_eq!(loaded.get(b"src", &stat(7, 100)), None, "cut at {cut}");
        }
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x5a;
            let loaded = Listings::parse(bad).unwrap_or_default();
            if let Some(found) = loaded.get(b"src", &stat(7, 100)) {
                for (name, _) in found.iter() {
                    let name = name.to_bytes();
                    assert!(!name.contains(&b'/') && name != b".." && name != b".");
                }
            }
        }
        // A name with a slash (a forged file): the listing is not used.
        let at = good.windows(5).position(|w| w == b"a.txt").unwrap();
        let mut forged = good.clone();
        forged[at..at + 5].copy_from_slice(b"../.x");
        let loaded = Listings::parse(forged).expect("well formed");
        assert_eq!(loaded.get(b"src", &stat(7, 100)), None);
    }
}
