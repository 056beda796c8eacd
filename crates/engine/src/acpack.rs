//! The action cache's pack: the entries builds store, appended to one file and found through an
//! index of fixed-width lines (after git's packs and ninja's `.ninja_log`), instead of one file
//! per entry.
//!
//! Files in `<cache>/ac/`:
//! - `pack-<n>`: entries one after another, each the bytes [`crate::store::Store::encode_action`]
//!   gives (header line with the key and a checksum, then the JSON body), then a newline.
//! - `index`: one line of [`LINE`] bytes per event, `<key> <pack> <offset> <length> <used>` (64,
//!   8, 16, 8 and 8 lowercase hex digits); the last line of a key wins. An entry stored (where it
//!   is, and when), used again (its place, a new time: at most once a day, for `gc`'s
//!   least-recently-used order), or forgotten (length 0, naming the place of the record found
//!   corrupt or unusable: a record of the key stored elsewhere meanwhile stays).
//!
//! One file per entry cost a cold build a new inode per task, whose allocation is most of the
//! cost of creating a file (on ext4 without a journal, a scan past every inode freed in the last
//! minute: about 90 ms of CPU, 6%, in a cold 200-task build right after the previous cache was
//! removed), and a no-op an `open` and a `close` per task. Now a cold build appends, and a
//! no-op reads the index once and each entry with one `pread` (after one `openat` that finds no
//! file of its own).
//!
//! Concurrency: builds sharing a cache (all holding the store lock shared) append at once. Both
//! files are opened `O_APPEND`, and each record and each line goes in with one `write`, which a
//! local file system places whole at the end of the file (NFS does not promise it: the checks
//! below then turn an interleaving into misses); where a record went is read back from the
//! descriptor after its write (`lseek`), never assumed. A build reads the index once (in pieces,
//! at most [`MAX_INDEX_BYTES`]), then again from where it stopped when a key is not there
//! (another build may have stored it since). A new run of the same engine opens everything
//! anew ([`Pack::reset`]).
//!
//! Nothing read is trusted: a line is used only when it parses whole (a longer piece, a torn
//! line followed by a whole one, is read from its last [`LINE`]` - 1` bytes); every record is
//! read to exactly its length, bounded, and checked by the store like a loose entry (its key
//! and checksum, then its body), so a line whose record never reached the disk, a pack cut
//! short, or a line pointing at another key's record is a miss with a warning, never a wrong
//! result; a record is read only if it lies within the pack as it is (no allocation for a
//! length an index line merely claims). Both files are opened without following links and used
//! only when regular, and appended to only when they have no other name
//! ([`Dir::open_append`]); when they cannot be, the store writes each entry to a file of its
//! own, as earlier versions did (`ac/<key>`), and reads such a file before the pack (whose
//! entry for the key it may not have been able to forget).
//!
//! Maintenance (`gc`, `verify`, under the exclusive store lock, so no build appends) rewrites:
//! the kept records to a new `pack-<m>` (past every name there, whatever it is) and a new index,
//! each temp-then-rename and flushed with their directory, then removes every other pack. A
//! kill between leaves the old index naming the old pack, or the new one naming the new pack; a
//! pack no index names is removed by the next rewrite or `cache clean`. An index that cannot be
//! read whole (an I/O error, over the size read) is an error for maintenance, which never
//! removes what it could not read.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Seek, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::confine::{ConfineError, Dir, Kind, Place};
use crate::digest::Digest;
use crate::fsutil::{Durability, durability};

/// The index's name.
pub(crate) const INDEX: &str = "index";

/// An index line's length, its newline included.
pub(crate) const LINE: usize = 109;

/// The largest index read (about 1.2 million lines); a larger one is not used (entries go to
/// files of their own) and `gc` and `verify` refuse it (`cache clean` removes it).
const MAX_INDEX_BYTES: u64 = 128 << 20;

/// The index is read in pieces of this size.
const INDEX_CHUNK: usize = 1 << 20;

/// How old an entry's last use may get before a hit records a new one.
const USED_EVERY_SECS: u64 = 86_400;

/// Where an entry is, and when it was last stored or used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub pack: u32,
    pub offset: u64,
    /// The entry's length, without the newline that follows it; 0 in a line that forgets.
    pub len: u32,
    /// Seconds since the Unix epoch.
    pub used: u32,
}

/// Why a record could not be read.
#[derive(Debug)]
pub(crate) enum PackError {
    /// The record is not there whole: the entry is unusable. With the pack the index names.
    Corrupt(u32, String),
    Io(io::Error),
}

/// `pack-<n>`.
pub(crate) fn pack_name(number: u32) -> String {
    format!("pack-{number}")
}

/// The number of a pack's name, when it is one this module writes (`pack-007` is not).
pub(crate) fn pack_number(name: &str) -> Option<u32> {
    crate::fsutil::numbered_name(name, "pack-").and_then(|n| u32::try_from(n).ok())
}

/// Whether `name` is one of the pack's files (not counting temporary files).
pub(crate) fn is_own_name(name: &str) -> bool {
    name == INDEX || pack_number(name).is_some()
}

fn now_secs() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    u32::try_from(secs).unwrap_or(u32::MAX)
}

pub(crate) fn line(key: &Digest, slot: &Slot) -> String {
    format!(
        "{key} {:08x} {:016x} {:08x} {:08x}\n",
        slot.pack, slot.offset, slot.len, slot.used
    )
}

/// The number a field of at most 16 lowercase hex digits gives.
fn hex_field(bytes: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(bytes).ok()?;
    if !crate::store::is_lower_hex(text, text.len()) {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// One index line without its newline. A longer piece is a torn line followed by a whole one:
/// its last `LINE - 1` bytes are read.
pub(crate) fn parse_line(piece: &[u8]) -> Option<(Digest, Slot)> {
    let whole = LINE - 1;
    if piece.len() < whole {
        return None;
    }
    let bytes = &piece[piece.len() - whole..];
    if [64, 73, 90, 99].iter().any(|&at| bytes[at] != b' ') {
        return None;
    }
    // Lowercase only, as `Digest::from_hex` reads it.
    let key = std::str::from_utf8(&bytes[..64])
        .ok()
        .and_then(Digest::from_hex)?;
    let slot = Slot {
        pack: u32::try_from(hex_field(&bytes[65..73])?).ok()?,
        offset: hex_field(&bytes[74..90])?,
        len: u32::try_from(hex_field(&bytes[91..99])?).ok()?,
        used: u32::try_from(hex_field(&bytes[100..108])?).ok()?,
    };
    Some((key, slot))
}

#[derive(Debug, Default)]
enum Writer {
    #[default]
    Closed,
    Open {
        index: File,
        pack: File,
        number: u32,
    },
    /// The files cannot be appended to (a link or another name where they are, another user's
    /// files, an oversized index): entries go to files of their own for the rest of the run.
    Refused,
}

/// A pack opened to read, with the size it was last seen to have.
#[derive(Debug)]
struct Reader {
    file: File,
    size: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    loaded: bool,
    /// The index, opened to read what this and other processes append.
    index: Option<File>,
    /// How far the index has been read (to the end of its last whole line).
    parsed: u64,
    /// The index is over [`MAX_INDEX_BYTES`].
    oversized: bool,
    /// Reading the index failed (an I/O error): what was read before is kept.
    unread: Option<String>,
    slots: HashMap<Digest, Slot>,
    /// The pack the last line read names: where this process appends.
    current: u32,
    readers: HashMap<u32, Arc<Reader>>,
    writer: Writer,
    /// Whether this process appended since the last [`Pack::sync`].
    dirty: bool,
}

/// The index and packs of a directory with their sizes, and the odd things at their names.
pub(crate) type PackFiles = (Vec<(String, u64)>, Vec<(String, Kind)>);

/// The pack and index of an action cache directory.
#[derive(Debug)]
pub(crate) struct Pack {
    place: Place,
    state: Mutex<State>,
}

impl Pack {
    pub(crate) fn new(place: Place) -> Pack {
        Pack {
            place,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.loaded {
            self.load(&mut state);
        }
        state
    }

    fn load(&self, state: &mut State) {
        *state = State {
            loaded: true,
            ..State::default()
        };
        self.open_index(state);
    }

    /// Opens the index to read, when there is one, and reads it.
    /// Anything but a missing index, or one that is not a regular file (never used), is an
    /// index that could not be read ([`State::unread`]): maintenance then removes nothing.
    fn open_index(&self, state: &mut State) {
        let dir = match self.place.open() {
            Ok(Some(dir)) => dir,
            Ok(None) => return,
            Err(err) => {
                state.unread = Some(err.to_string());
                return;
            }
        };
        match dir.open_file(INDEX) {
            Ok(Some((file, _))) => {
                state.index = Some(file);
                state.parsed = 0;
                read_more(state);
            }
            Ok(None) | Err(ConfineError::NotRegular { .. }) => {}
            Err(err) => state.unread = Some(err.to_string()),
        }
    }

    /// Forgets what was read and the files opened: the next use opens and reads them again (a
    /// new run: `gc` or `clean` may have rewritten or removed them since).
    pub(crate) fn reset(&self) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = State::default();
    }

    /// The entry stored under `key` (its bytes, unchecked) and where it is; `Ok(None)` when the
    /// index names none. A key not found is looked for again in what was appended to the index
    /// since it was read (another build sharing the cache may have stored it).
    pub(crate) fn get(&self, key: &Digest) -> Result<Option<(Vec<u8>, Slot)>, PackError> {
        let (slot, reader) = {
            let mut state = self.state();
            let slot = match state.slots.get(key) {
                Some(slot) => *slot,
                None => {
                    if state.index.is_some() {
                        read_more(&mut state);
                    } else if !state.oversized {
                        self.open_index(&mut state);
                    }
                    match state.slots.get(key) {
                        Some(slot) => *slot,
                        None => return Ok(None),
                    }
                }
            };
            (slot, self.reader(&mut state, slot.pack)?)
        };
        read_record(&reader, &slot).map(|bytes| Some((bytes, slot)))
    }

    /// The record at `slot` of a listing ([`Pack::live`]).
    pub(crate) fn read(&self, slot: &Slot) -> Result<Vec<u8>, PackError> {
        let reader = self.reader(&mut self.state(), slot.pack)?;
        read_record(&reader, slot)
    }

    fn reader(&self, state: &mut State, number: u32) -> Result<Arc<Reader>, PackError> {
        if let Some(reader) = state.readers.get(&number) {
            return Ok(reader.clone());
        }
        let name = pack_name(number);
        let dir = match self.place.open() {
            Ok(Some(dir)) => dir,
            Ok(None) => {
                return Err(PackError::Corrupt(
                    number,
                    "the action cache is gone".into(),
                ));
            }
            Err(err) => return Err(PackError::Io(io::Error::other(err))),
        };
        match dir.open_file(&name) {
            Ok(Some((file, stat))) => {
                let reader = Arc::new(Reader {
                    file,
                    size: AtomicU64::new(stat.size),
                });
                state.readers.insert(number, reader.clone());
                Ok(reader)
            }
            Ok(None) => Err(PackError::Corrupt(number, format!("{name} is missing"))),
            Err(err @ ConfineError::NotRegular { .. }) => {
                Err(PackError::Corrupt(number, err.to_string()))
            }
            Err(err) => Err(PackError::Io(io::Error::other(err))),
        }
    }

    /// Appends `entry` under `key`. `Ok(false)`: the pack cannot be appended to (the caller
    /// stores the entry some other way).
    pub(crate) fn append(&self, key: &Digest, entry: &[u8]) -> io::Result<bool> {
        let Ok(len) = u32::try_from(entry.len()) else {
            return Ok(false);
        };
        let mut record = Vec::with_capacity(entry.len() + 1);
        record.extend_from_slice(entry);
        record.push(b'\n');
        let mut state = self.state();
        let Some(number) = self.writer(&mut state) else {
            return Ok(false);
        };
        let Writer::Open { pack, .. } = &mut state.writer else {
            return Ok(false);
        };
        let end = write_whole(pack, &record, "the action cache's pack")?;
        crate::store::write_back_early(pack);
        if durability() == Durability::EveryFile {
            // The record before the line that names it.
            pack.sync_data()?;
        }
        let slot = Slot {
            pack: number,
            offset: end - record.len() as u64,
            len,
            used: now_secs(),
        };
        state.dirty = true;
        write_line(&mut state, key, slot)?;
        if durability() == Durability::EveryFile
            && let Writer::Open { index, .. } = &state.writer
        {
            index.sync_data()?;
        }
        state.slots.insert(*key, slot);
        Ok(true)
    }

    /// Records that the entry at `slot` was used, when its last use is more than a day old.
    pub(crate) fn mark_used(&self, key: &Digest, slot: &Slot) {
        let now = now_secs();
        if u64::from(now.saturating_sub(slot.used)) < USED_EVERY_SECS {
            return;
        }
        let mut state = self.state();
        if state.slots.get(key) != Some(slot) || self.writer(&mut state).is_none() {
            return;
        }
        let used = Slot { used: now, ..*slot };
        if write_line(&mut state, key, used).is_ok() {
            state.slots.insert(*key, used);
        }
    }

    /// Forgets the entry stored under `key` (found corrupt or unusable): a line of length 0
    /// naming its place, so an entry stored again meanwhile (elsewhere in a pack) stays.
    pub(crate) fn forget(&self, key: &Digest) {
        let mut state = self.state();
        let Some(slot) = state.slots.remove(key) else {
            return;
        };
        if self.writer(&mut state).is_some() {
            let forgotten = Slot {
                len: 0,
                used: now_secs(),
                ..slot
            };
            let _ = write_line(&mut state, key, forgotten);
        }
    }

    /// Opens both files to append, once; the number of the pack appended to, `None` when they
    /// cannot be.
    fn writer(&self, state: &mut State) -> Option<u32> {
        if matches!(state.writer, Writer::Closed) {
            state.writer = self.open_writer(state).unwrap_or(Writer::Refused);
        }
        match state.writer {
            Writer::Open { number, .. } => Some(number),
            _ => None,
        }
    }

    fn open_writer(&self, state: &mut State) -> Result<Writer, ConfineError> {
        if state.oversized || state.unread.is_some() {
            return Ok(Writer::Refused);
        }
        let dir = self.place.create()?;
        let (index, _) = dir.open_append(INDEX)?;
        if state.index.is_none() {
            // Created just now (by this process or another): read from its start.
            self.open_index(state);
        }
        let number = state.current;
        let (pack, _) = dir.open_append(&pack_name(number))?;
        Ok(Writer::Open {
            index,
            pack,
            number,
        })
    }

    /// Whether this process appended since the last flush, and counts it flushed (by a
    /// `syncfs` of the whole file system).
    pub(crate) fn take_dirty(&self) -> bool {
        std::mem::take(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()).dirty)
    }

    /// Makes what this process appended durable: both files flushed (`fdatasync`). Returns how
    /// many files it flushed.
    pub(crate) fn sync(&self) -> io::Result<usize> {
        if !self.take_dirty() {
            return Ok(0);
        }
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Writer::Open { index, pack, .. } = &state.writer else {
            return Ok(0);
        };
        crate::store::start_writeback(pack);
        crate::store::start_writeback(index);
        pack.sync_data()?;
        index.sync_data()?;
        Ok(2)
    }

    /// Every entry the index names, by pack and offset, read afresh (maintenance, with the
    /// store locked exclusively). An index that cannot be read whole is an error: maintenance
    /// never removes what it could not read.
    pub(crate) fn live(&self) -> io::Result<Vec<(Digest, Slot)>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.load(&mut state);
        if state.oversized {
            return Err(io::Error::other(format!(
                "{} is larger than {} MiB, more than this version reads; `cargo xtask cache clean` removes it",
                self.place.display(INDEX),
                MAX_INDEX_BYTES >> 20
            )));
        }
        if let Some(problem) = &state.unread {
            return Err(io::Error::other(format!(
                "{}: {problem}",
                self.place.display(INDEX)
            )));
        }
        let mut live: Vec<(Digest, Slot)> = state.slots.iter().map(|(k, s)| (*k, *s)).collect();
        live.sort_by_key(|(_, slot)| (slot.pack, slot.offset));
        Ok(live)
    }

    /// The index and packs present, with their sizes, and what sits at those names without
    /// being a regular file or a directory.
    pub(crate) fn files(dir: &Dir) -> io::Result<PackFiles> {
        let mut files = Vec::new();
        let mut odd = Vec::new();
        for (name, kind) in dir.entries().map_err(io::Error::other)? {
            let Ok(name) = String::from_utf8(name) else {
                continue;
            };
            if !is_own_name(&name) {
                continue;
            }
            match (kind, dir.lstat(&name).map_err(io::Error::other)?) {
                (Kind::File, Some((Kind::File, stat))) => files.push((name, stat.size)),
                // A directory is not the pack's to remove (the files are then not used).
                (_, Some((found, _))) if found != Kind::File && found != Kind::Dir => {
                    odd.push((name, found));
                }
                // Removed, or replaced, since the directory was read.
                _ => {}
            }
        }
        Ok((files, odd))
    }

    /// Rewrites the pack with only `kept` (from [`Pack::live`]), in that order: a new pack and
    /// index, flushed, then every other pack removed; with nothing kept, no pack and no index
    /// are left. Nothing is rewritten when the files hold exactly `kept` already. Records that
    /// cannot be read whole are dropped. Call with the store locked exclusively. Returns how
    /// many bytes the pack's files took before it and take after it.
    pub(crate) fn rewrite(&self, kept: &[(Digest, Slot)]) -> io::Result<(u64, u64)> {
        let Some(dir) = self.place.open().map_err(io::Error::other)? else {
            return Ok((0, 0));
        };
        let (present, _) = Pack::files(&dir)?;
        let before: u64 = present.iter().map(|(_, size)| size).sum();
        let record_bytes: u64 = kept.iter().map(|(_, slot)| u64::from(slot.len) + 1).sum();
        let index_bytes = (kept.len() * LINE) as u64;
        let size_of = |wanted: &str| {
            present
                .iter()
                .find(|(name, _)| name == wanted)
                .map(|(_, size)| *size)
        };
        if let Some((_, first)) = kept.first()
            && kept.iter().all(|(_, slot)| slot.pack == first.pack)
            && present.len() == 2
            && size_of(&pack_name(first.pack)) == Some(record_bytes)
            && size_of(INDEX) == Some(index_bytes)
        {
            return Ok((before, record_bytes + index_bytes));
        }
        let index_is_dir = matches!(
            dir.lstat(INDEX).map_err(io::Error::other)?,
            Some((Kind::Dir, _))
        );
        if index_is_dir && !kept.is_empty() {
            return Err(io::Error::other(format!(
                "{} is a directory, not the action cache's index; move it away",
                dir.display(INDEX)
            )));
        }
        let mut written = 0;
        let mut next = None;
        if !kept.is_empty() {
            // Past every name a pack could have here, whatever is at it (or, past the last
            // number, the first one free).
            let taken: Vec<u32> = dir
                .entries()
                .map_err(io::Error::other)?
                .iter()
                .filter_map(|(name, _)| std::str::from_utf8(name).ok().and_then(pack_number))
                .chain([self.state().current])
                .collect();
            let number = taken
                .iter()
                .max()
                .and_then(|n| n.checked_add(1))
                .or_else(|| (0..=u32::MAX).find(|n| !taken.contains(n)))
                .ok_or_else(|| io::Error::other("no pack number is free"))?;
            let name = pack_name(number);
            let flush = durability() != Durability::Never;
            let fail = |source| ConfineError::Io {
                path: dir.display(&name),
                source,
            };
            let mut lines = String::with_capacity(kept.len() * LINE);
            dir.write_file(&name, 0o644, |file| {
                let mut offset = 0;
                for (key, slot) in kept {
                    let mut record = match self.read(slot) {
                        Ok(record) => record,
                        // Not there whole: dropped with its line.
                        Err(PackError::Corrupt(..)) => continue,
                        // Not read: the rewrite stops, removing nothing.
                        Err(PackError::Io(source)) => return Err(fail(source)),
                    };
                    record.push(b'\n');
                    file.write_all(&record).map_err(fail)?;
                    lines.push_str(&line(
                        key,
                        &Slot {
                            pack: number,
                            offset,
                            ..*slot
                        },
                    ));
                    offset += record.len() as u64;
                }
                written += offset;
                if flush {
                    file.sync_data().map_err(fail)?;
                }
                Ok::<(), ConfineError>(())
            })
            .map_err(io::Error::other)?;
            let index = dir.write_file(INDEX, 0o644, |file| {
                file.write_all(lines.as_bytes())
                    .and_then(|()| if flush { file.sync_data() } else { Ok(()) })
                    .map_err(|source| ConfineError::Io {
                        path: dir.display(INDEX),
                        source,
                    })
            });
            // The new pack, named by no index if this failed, is removed by the next rewrite.
            index.map_err(io::Error::other)?;
            written += lines.len() as u64;
            if flush {
                // The renames, before the old packs go.
                rustix::fs::fsync(&*dir).map_err(io::Error::from)?;
            }
            next = Some(number);
        } else if !index_is_dir {
            dir.remove_file(INDEX).map_err(io::Error::other)?;
        }
        self.reset();
        crate::store::remove_own_files(&dir, &|name| {
            pack_number(name).is_some_and(|n| Some(n) != next)
        })?;
        Ok((before, written))
    }
}

/// Reads what was appended to the index since it was last read, up to its last newline, in
/// pieces of [`INDEX_CHUNK`].
fn read_more(state: &mut State) {
    let Some(file) = state.index.take() else {
        return;
    };
    let size = match file.metadata() {
        Ok(meta) => meta.len(),
        Err(err) => {
            state.unread = Some(err.to_string());
            state.index = Some(file);
            return;
        }
    };
    if size > MAX_INDEX_BYTES {
        state.oversized = true;
        state.slots.clear();
        return;
    }
    let mut at = state.parsed;
    let mut chunk = vec![0; INDEX_CHUNK.min(size.saturating_sub(at) as usize + LINE)];
    // Bytes of a line begun in the previous piece.
    let mut carried = 0;
    while at + (carried as u64) < size {
        let n = match file.read_at(&mut chunk[carried..], at + carried as u64) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                state.unread = Some(err.to_string());
                break;
            }
        };
        let filled = carried + n;
        // A line another process is still writing is read whole next time.
        let Some(end) = chunk[..filled].iter().rposition(|&b| b == b'\n') else {
            if filled == chunk.len() {
                // A whole piece with no newline: garbage, but for its last bytes, which may
                // begin a line.
                let keep = LINE - 1;
                chunk.copy_within(filled - keep..filled, 0);
                at += (filled - keep) as u64;
                carried = keep;
                continue;
            }
            carried = filled;
            continue;
        };
        for piece in chunk[..end].split(|&b| b == b'\n') {
            apply_line(state, piece);
        }
        at += end as u64 + 1;
        chunk.copy_within(end + 1..filled, 0);
        carried = filled - end - 1;
    }
    state.parsed = at;
    state.index = Some(file);
}

/// Takes one index line into `state`.
fn apply_line(state: &mut State, piece: &[u8]) {
    let Some((key, slot)) = parse_line(piece) else {
        return;
    };
    state.current = slot.pack;
    if slot.len > 0 {
        state.slots.insert(key, slot);
    } else if state
        .slots
        .get(&key)
        .is_some_and(|now| (now.pack, now.offset) == (slot.pack, slot.offset))
    {
        state.slots.remove(&key);
    }
}

/// Appends `line` for `key` to the index; when nothing else was appended since the index was
/// last read, the line counts as read (this process's own lines are not read back).
fn write_line(state: &mut State, key: &Digest, slot: Slot) -> io::Result<()> {
    let Writer::Open { index, .. } = &mut state.writer else {
        return Err(io::Error::other("the action cache's index is not open"));
    };
    let end = write_whole(
        index,
        line(key, &slot).as_bytes(),
        "the action cache's index",
    )?;
    if end - LINE as u64 == state.parsed {
        state.parsed = end;
    }
    Ok(())
}

/// Writes `bytes` with one `write` to `file`, opened to append, and returns where the file's
/// position is after it: the end of these bytes, wherever other appenders put theirs.
fn write_whole(file: &mut File, bytes: &[u8], what: &str) -> io::Result<u64> {
    let written = loop {
        match file.write(bytes) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            other => break other?,
        }
    };
    if written != bytes.len() {
        // Torn (a full disk): never indexed, and never read as whole.
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("{what}: wrote {written} of {} bytes", bytes.len()),
        ));
    }
    file.stream_position()
}

/// The record at `slot`, read to exactly its length: nothing is allocated or read for a
/// record that does not fit in the pack as it is.
fn read_record(reader: &Reader, slot: &Slot) -> Result<Vec<u8>, PackError> {
    let short = || {
        PackError::Corrupt(
            slot.pack,
            "the pack ends before the entry its index line names".into(),
        )
    };
    if u64::from(slot.len) > crate::store::MAX_ENTRY_BYTES {
        return Err(PackError::Corrupt(
            slot.pack,
            format!(
                "its index line gives {} bytes, more than any entry the store writes",
                slot.len
            ),
        ));
    }
    let end = slot
        .offset
        .checked_add(u64::from(slot.len))
        .ok_or_else(short)?;
    if end > reader.size.load(Ordering::Relaxed) {
        // Appended to since it was opened (by this process or another)?
        let size = reader.file.metadata().map_err(PackError::Io)?.len();
        reader.size.fetch_max(size, Ordering::Relaxed);
        if end > size {
            return Err(short());
        }
    }
    let mut bytes = vec![0; slot.len as usize];
    match reader.file.read_exact_at(&mut bytes, slot.offset) {
        Ok(()) => Ok(bytes),
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Err(short()),
        Err(err) => Err(PackError::Io(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(pack: u32, offset: u64, len: u32) -> Slot {
        Slot {
            pack,
            offset,
            len,
            used: 0x6000_0000,
        }
    }

    #[test]
    fn lines_are_fixed_width_and_a_torn_line_before_a_whole_one_gives_the_whole_one() {
        let key = Digest::of_bytes(b"k");
        let written = line(&key, &slot(3, u64::MAX, u32::MAX));
        assert_eq!(written.len(), LINE);
        let piece = &written.as_bytes()[..LINE - 1];
        assert_eq!(parse_line(piece), Some((key, slot(3, u64::MAX, u32::MAX))));
        let other = Digest::of_bytes(b"other");
        let torn = format!(
            "{}{}",
            &line(&other, &slot(0, 1, 2))[..40],
            &written[..LINE - 1]
        );
        assert_eq!(
            parse_line(torn.as_bytes()),
            Some((key, slot(3, u64::MAX, u32::MAX)))
        );
        // Short, upper case, a sign, a missing separator: nothing.
        assert_eq!(parse_line(&piece[1..]), None);
        let upper = written.to_uppercase();
        assert_eq!(parse_line(&upper.as_bytes()[..LINE - 1]), None);
        let signed = written.replacen(" 00000003 ", " +0000003 ", 1);
        assert_eq!(parse_line(&signed.as_bytes()[..LINE - 1]), None);
        let joined = written.replacen(' ', "0", 1);
        assert_eq!(parse_line(&joined.as_bytes()[..LINE - 1]), None);
    }

    #[test]
    fn pack_names_are_canonical() {
        assert_eq!(pack_number("pack-0"), Some(0));
        assert_eq!(pack_number("pack-12"), Some(12));
        for name in [
            "pack-",
            "pack-007",
            "pack-1a",
            "pack--1",
            "pack-99999999999",
            "index2",
        ] {
            assert_eq!(pack_number(name), None, "{name}");
        }
        assert!(is_own_name("index") && is_own_name(&pack_name(7)));
    }
}
