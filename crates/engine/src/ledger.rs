//! The ledger: for each task, the components of its last key and why it last ran.
//!
//! Two append-only files under `<state>/ledger/`, after ninja's `.ninja_log`:
//! - `keys`: a header line `xbundle-ledger-v3 bodies-<n>` naming the bodies file, then one line
//!   per record, `<sha256 of the task id> <key> <offset> <length>`; the last line of an id
//!   wins. A run that only asks "is this the key I last saw?" reads this one small file, once.
//! - `bodies-<n>`: each record's body (components, reasons), at the offset its key line names;
//!   parsed only by `explain`, `--affected`, and on a miss (for its reasons). A body is the
//!   entry as one line of JSON without its inputs, then the inputs in binary, in path order:
//!   each path's length (4 bytes, little-endian), the path, its 32-byte digest. (v2 bodies were
//!   all JSON: the hex digests and the escaping of a hundred inputs were 4% of a cold build's
//!   CPU, where copying them is nothing.)
//!
//! A record is appended as its task finishes, its body first, then its key line, each with one
//! `write`: a run killed at any moment leaves whole records and at most a torn tail, which is
//! ignored (a key line without its newline, a body past the end of its file, or one that is not
//! the entry its key line names). No file is created per task and nothing is renamed while a
//! run goes (one file per task cost a new inode each on a cold build, an open per task on a
//! no-op, and an ext4 flush per rename over an existing file on an edit).
//!
//! When superseded lines and bodies outweigh the live ones, the end of a run compacts: the live
//! bodies go to a new `bodies-<n+1>`, a new `keys` naming it is renamed over the old one, then
//! the old bodies file is removed. Both files are opened without following links, and a file
//! appended to must be a regular file with no other name; a pair that is not (a link planted,
//! a copy made with `cp -al`) is replaced by a new one, written by temp-then-rename (the live
//! records that can still be read carried over), not given up. A record that could not be
//! appended is forgotten for the rest of the run too: the key read at its start is no longer
//! its task's.
//!
//! Earlier versions kept one file per task, named by the hex SHA-256 of its id
//! ([`is_legacy_name`]); runs remove them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::confine::{ConfineError, Dir, Place};
use crate::digest::Digest;
use crate::key::{DirtyReason, KeyComponents};
use crate::task::TaskId;

/// The largest ledger body read (the key components of a task with a million inputs fit).
const MAX_ENTRY_BYTES: u64 = 256 << 20;

/// The largest keys file read (about two million records).
const MAX_KEYS_BYTES: u64 = 256 << 20;

/// The keys file's name.
pub const KEYS: &str = "keys";

const HEADER: &str = "xbundle-ledger-v3";

/// Superseded key lines tolerated beyond the live ones before a run compacts.
const SLACK_LINES: usize = 256;

/// Superseded body bytes tolerated beyond the live ones before a run compacts.
const SLACK_BYTES: u64 = 4 << 20;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub id: TaskId,
    pub key: Digest,
    pub components: KeyComponents,
    /// "ran" or "cached": how the tree got these outputs.
    pub outcome: String,
    /// Why the task last ran or was restored.
    pub reasons: Vec<DirtyReason>,
    /// Seconds since the Unix epoch.
    pub at_unix: u64,
}

/// The ledger directory, a [`Place`] of the engine's: reached without following a link, its
/// files read only when they are regular files.
#[derive(Debug)]
pub struct Ledger {
    place: Place,
    state: Mutex<State>,
}

/// Where a record's body is, and its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Locator {
    key: Digest,
    offset: u64,
    len: u64,
}

#[derive(Debug, Default)]
struct State {
    loaded: bool,
    /// The bodies file the keys file names; `None` while no valid keys file was found.
    bodies: Option<String>,
    /// By the SHA-256 of the task id.
    records: HashMap<Digest, Locator>,
    /// Record lines in the keys file, superseded ones included.
    lines: usize,
    /// Open while this process appends (during a run).
    writer: Option<Writer>,
}

#[derive(Debug)]
struct Writer {
    keys: File,
    bodies: File,
    /// The bodies file's length: where the next body goes.
    end: u64,
}

/// Whether `name` is a file of an earlier version's ledger (one file per task).
pub fn is_legacy_name(name: &str) -> bool {
    name.len() == 64 && Digest::from_hex(name).is_some()
}

/// Whether `name` is one of the ledger's own files (not counting temporary files).
pub fn is_own_name(name: &str) -> bool {
    name == KEYS || bodies_number(name).is_some() || is_legacy_name(name)
}

fn bodies_number(name: &str) -> Option<u64> {
    crate::fsutil::numbered_name(name, "bodies-")
}

fn id_name(id: &TaskId) -> Digest {
    Digest::of_bytes(id.as_str().as_bytes())
}

fn confine_io(path: String) -> impl FnOnce(io::Error) -> ConfineError {
    move |source| ConfineError::Io { path, source }
}

/// Parses a keys file: the bodies file it names, its records, and how many record lines it
/// has. `None` when its header is not this version's. Malformed lines and a last line without
/// its newline (torn by a kill) are skipped.
fn parse_keys(bytes: &[u8]) -> Option<(String, HashMap<Digest, Locator>, usize)> {
    let mut lines = bytes.split(|&b| b == b'\n');
    let header = std::str::from_utf8(lines.next()?).ok()?;
    let bodies = header.strip_prefix(HEADER)?.strip_prefix(' ')?;
    bodies_number(bodies)?;
    if !bytes.contains(&b'\n') {
        return None;
    }
    let mut records = HashMap::new();
    let mut count = 0;
    // `split` yields what follows the last newline as a final piece: torn or empty, never whole.
    let mut pieces: Vec<&[u8]> = lines.collect();
    pieces.pop();
    for line in pieces {
        count += 1;
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let mut fields = line.split(' ');
        let (Some(name), Some(key), Some(offset), Some(len), None) = (
            fields.next().and_then(Digest::from_hex),
            fields.next().and_then(Digest::from_hex),
            fields.next().and_then(|n| n.parse::<u64>().ok()),
            fields.next().and_then(|n| n.parse::<u64>().ok()),
            fields.next(),
        ) else {
            continue;
        };
        if len > MAX_ENTRY_BYTES {
            continue;
        }
        records.insert(name, Locator { key, offset, len });
    }
    Some((bodies.to_string(), records, count))
}

fn key_line(name: &Digest, locator: &Locator) -> String {
    format!(
        "{name} {} {} {}\n",
        locator.key, locator.offset, locator.len
    )
}

impl Ledger {
    pub fn open(place: Place) -> Ledger {
        Ledger {
            place,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.loaded {
            *state = self.load();
        }
        state
    }

    /// Reads the keys file again (the start of a run: another process may have written since).
    pub fn reload(&self) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = self.load();
    }

    fn load(&self) -> State {
        let mut state = State {
            loaded: true,
            ..State::default()
        };
        let Ok(Some(dir)) = self.place.open() else {
            return state;
        };
        let Ok(Some(bytes)) = dir.read_file(KEYS, MAX_KEYS_BYTES) else {
            return state;
        };
        if let Some((bodies, records, lines)) = parse_keys(&bytes) {
            state.bodies = Some(bodies);
            state.records = records;
            state.lines = lines;
        }
        state
    }

    /// The last key recorded for `id`.
    pub fn last_key(&self, id: &TaskId) -> Option<Digest> {
        self.state()
            .records
            .get(&id_name(id))
            .map(|found| found.key)
    }

    /// The last entry recorded for `id`, when its body is whole and is that entry: its id, and
    /// components whose key is the one its key line names (a body cut after a whole input,
    /// by a key line torn at its length and made whole by the next run's newline, names fewer
    /// inputs: another key).
    pub fn get(&self, id: &TaskId) -> Option<LedgerEntry> {
        let (bodies, locator) = {
            let state = self.state();
            (state.bodies.clone()?, *state.records.get(&id_name(id))?)
        };
        let dir = self.place.open().ok()??;
        let (file, _) = dir.open_file(&bodies).ok()??;
        let bytes = read_body(&file, &locator).ok()?;
        let entry = decode_body(&bytes)?;
        (entry.id == *id && entry.key == locator.key && entry.components.key() == locator.key)
            .then_some(entry)
    }

    /// Appends `entry` (see the module docs), replacing what was recorded for its task.
    pub fn put(&self, entry: LedgerEntry) -> io::Result<()> {
        let name = id_name(&entry.id);
        let key = entry.key;
        let mut body = encode_body(entry)?;
        body.push(b'\n');
        let mut state = self.state();
        let result = self.append(&mut state, &name, key, &body);
        if result.is_err() {
            // Where the files end is no longer known: opened (and measured) again next time.
            state.writer = None;
            // Nor is this task's last key: the one read at the start of the run is not its
            // outputs' any more (a dependent executed remotely would be given the old ones).
            state.records.remove(&name);
        }
        result
    }

    fn append(&self, state: &mut State, name: &Digest, key: Digest, body: &[u8]) -> io::Result<()> {
        if state.writer.is_none() {
            state.writer = Some(self.open_writer(state).map_err(io::Error::other)?);
        }
        let writer = state.writer.as_mut().expect("opened above");
        let locator = Locator {
            key,
            offset: writer.end,
            len: body.len() as u64 - 1,
        };
        writer.bodies.write_all(body)?;
        writer.end += body.len() as u64;
        writer.keys.write_all(key_line(name, &locator).as_bytes())?;
        state.records.insert(*name, locator);
        state.lines += 1;
        Ok(())
    }

    /// Opens both files for appending; starts a new pair when there is no valid one.
    fn open_writer(&self, state: &mut State) -> Result<Writer, ConfineError> {
        let dir = self.place.create()?;
        if let Some(bodies) = state.bodies.clone() {
            match Self::open_pair(&dir, &bodies) {
                Ok(Some(writer)) => return Ok(writer),
                Ok(None) => {}
                // A file of the pair that is a link, not a regular file, or has another name (a
                // copy made with `cp -al`) is never appended to; rather than give the ledger up
                // for good, both files are written anew in their places (renamed over them,
                // never written through), with the records still readable.
                Err(_) => {
                    if self.compact(state, &dir, &bodies).is_ok()
                        && let Some(now) = state.bodies.clone()
                        && now != bodies
                        && let Ok(Some(writer)) = Self::open_pair(&dir, &now)
                    {
                        return Ok(writer);
                    }
                }
            }
        }
        // No keys file, one of another version, or its bodies gone: a new pair, numbered past
        // the one it replaces.
        let next = state
            .bodies
            .as_deref()
            .and_then(bodies_number)
            .map_or(0, |n| n.wrapping_add(1));
        let bodies = format!("bodies-{next}");
        dir.write_file(&bodies, 0o644, |_| Ok::<(), ConfineError>(()))?;
        let header = format!("{HEADER} {bodies}\n");
        dir.write_file(KEYS, 0o644, |file| {
            file.write_all(header.as_bytes())
                .map_err(confine_io(dir.display(KEYS)))
        })?;
        state.bodies = Some(bodies.clone());
        state.records.clear();
        state.lines = 0;
        Self::open_pair(&dir, &bodies)?.ok_or_else(|| ConfineError::Io {
            path: dir.display(&bodies),
            source: io::ErrorKind::NotFound.into(),
        })
    }

    /// The keys file and `bodies`, opened to append; `None` when `bodies` is missing. A keys
    /// file torn by a kill (no newline at its end) gets one first, so the next line is whole.
    fn open_pair(dir: &Dir, bodies: &str) -> Result<Option<Writer>, ConfineError> {
        if dir.lstat(bodies)?.is_none() {
            return Ok(None);
        }
        let (mut keys, keys_stat) = dir.open_append(KEYS)?;
        let (bodies_file, bodies_stat) = dir.open_append(bodies)?;
        if keys_stat.size > 0 {
            // Opened write-only: the last byte is read through a read handle.
            let mut last = [0u8];
            if let Some((file, _)) = dir.open_file(KEYS)? {
                file.read_exact_at(&mut last, keys_stat.size - 1)
                    .map_err(confine_io(dir.display(KEYS)))?;
            }
            if last[0] != b'\n' {
                keys.write_all(b"\n")
                    .map_err(confine_io(dir.display(KEYS)))?;
            }
        }
        Ok(Some(Writer {
            keys,
            bodies: bodies_file,
            end: bodies_stat.size,
        }))
    }

    /// The end of a run: stops appending, and compacts when superseded records outweigh the
    /// live ones (see the module docs).
    pub fn finish(&self) -> io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Only a run that appended can have tipped the balance (a no-op reads nothing more),
        // and its writer knows where the bodies end.
        let (Some(writer), Some(bodies)) = (state.writer.take(), state.bodies.clone()) else {
            return Ok(());
        };
        let live_lines = state.records.len();
        let live_bytes: u64 = state.records.values().map(|l| l.len + 1).sum();
        if state.lines <= live_lines * 2 + SLACK_LINES && writer.end <= live_bytes * 2 + SLACK_BYTES
        {
            return Ok(());
        }
        drop(writer);
        let Some(dir) = self.place.open().map_err(io::Error::other)? else {
            return Ok(());
        };
        self.compact(&mut state, &dir, &bodies)
            .map_err(io::Error::other)
    }

    fn compact(&self, state: &mut State, dir: &Dir, bodies: &str) -> Result<(), ConfineError> {
        let Some((old, _)) = dir.open_file(bodies)? else {
            return Ok(());
        };
        let next = format!(
            "bodies-{}",
            bodies_number(bodies).map_or(0, |n| n.wrapping_add(1))
        );
        let mut sorted: Vec<(Digest, Locator)> =
            state.records.iter().map(|(n, l)| (*n, *l)).collect();
        sorted.sort_by_key(|(_, locator)| locator.offset);
        let mut records = HashMap::with_capacity(sorted.len());
        let mut keys = format!("{HEADER} {next}\n");
        dir.write_file(&next, 0o644, |file| {
            let mut offset = 0;
            for (name, locator) in &sorted {
                // A body torn or lost is dropped with its record.
                let Ok(mut body) = read_body(&old, locator) else {
                    continue;
                };
                body.push(b'\n');
                file.write_all(&body)
                    .map_err(confine_io(dir.display(&next)))?;
                let moved = Locator {
                    key: locator.key,
                    offset,
                    len: locator.len,
                };
                keys.push_str(&key_line(name, &moved));
                records.insert(*name, moved);
                offset += body.len() as u64;
            }
            Ok::<(), ConfineError>(())
        })?;
        dir.write_file(KEYS, 0o644, |file| {
            file.write_all(keys.as_bytes())
                .map_err(confine_io(dir.display(KEYS)))
        })?;
        state.lines = records.len();
        state.records = records;
        state.bodies = Some(next.clone());
        // Every other bodies file is now named by no keys file (the old one, and any left by a
        // run killed while it compacted).
        crate::store::remove_own_files(dir, &|name| bodies_number(name).is_some() && name != next)
            .map_err(confine_io(dir.display("")))?;
        Ok(())
    }

    /// The ledger directory.
    pub fn place(&self) -> &Place {
        &self.place
    }
}

/// A body (see the module docs), without its newline.
fn encode_body(mut entry: LedgerEntry) -> io::Result<Vec<u8>> {
    let inputs = std::mem::take(&mut entry.components.inputs);
    let paths: usize = inputs.keys().map(String::len).sum();
    let mut body = Vec::with_capacity(512 + paths + inputs.len() * 36);
    serde_json::to_writer(&mut body, &entry).map_err(io::Error::other)?;
    body.push(b'\n');
    for (path, digest) in &inputs {
        let len = u32::try_from(path.len()).map_err(io::Error::other)?;
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(path.as_bytes());
        body.extend_from_slice(digest.as_bytes());
    }
    Ok(body)
}

/// The entry a body holds; `None` unless it is exactly one (its JSON line, then whole inputs in
/// strictly increasing path order, nothing after them).
fn decode_body(bytes: &[u8]) -> Option<LedgerEntry> {
    let end = bytes.iter().position(|&byte| byte == b'\n')?;
    let mut entry: LedgerEntry = serde_json::from_slice(&bytes[..end]).ok()?;
    if !entry.components.inputs.is_empty() {
        return None;
    }
    let mut rest = &bytes[end + 1..];
    let mut inputs: Vec<(String, Digest)> = Vec::new();
    while !rest.is_empty() {
        let (len, after) = rest.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
        let (path, after) = after.split_at_checked(len)?;
        let (digest, after) = after.split_first_chunk::<32>()?;
        let path = std::str::from_utf8(path).ok()?;
        if inputs.last().is_some_and(|(last, _)| last.as_str() >= path) {
            return None;
        }
        inputs.push((path.to_string(), Digest::from_raw(*digest)));
        rest = after;
    }
    entry.components.inputs = inputs.into_iter().collect();
    Some(entry)
}

/// The body `locator` names, when the file holds all of it.
fn read_body(file: &File, locator: &Locator) -> io::Result<Vec<u8>> {
    if locator.len > MAX_ENTRY_BYTES {
        return Err(io::Error::other("ledger body too large"));
    }
    let mut body = vec![0u8; locator.len as usize];
    file.read_exact_at(&mut body, locator.offset)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;

    fn ledger_in(root: &Path) -> Ledger {
        Ledger::open(Place::within(root, &root.join("state/ledger")))
    }

    fn entry(id: &str, version: u32) -> LedgerEntry {
        let mut components = KeyComponents {
            kind: "command".into(),
            impl_version: version,
            ..KeyComponents::default()
        };
        components
            .inputs
            .insert(format!("src/{id}.txt"), Digest::of_bytes(id.as_bytes()));
        LedgerEntry {
            id: TaskId::new(id),
            key: components.key(),
            components,
            outcome: "ran".into(),
            reasons: vec![DirtyReason::NoPreviousRun],
            at_unix: 1,
        }
    }

    fn files(root: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(root.join("state/ledger"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn records_survive_a_reload_in_two_files_and_the_last_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(dir.path());
        assert_eq!(ledger.last_key(&TaskId::new("a")), None);
        for n in 0..50 {
            ledger.put(entry(&format!("t{n}"), 1)).unwrap();
        }
        ledger.put(entry("t7", 2)).unwrap();
        ledger.finish().unwrap();
        // Two files, whatever the number of tasks.
        assert_eq!(files(dir.path()), ["bodies-0", "keys"]);

        let again = ledger_in(dir.path());
        let t7 = again.get(&TaskId::new("t7")).expect("t7 recorded");
        assert_eq!(t7.components.impl_version, 2);
        assert_eq!(again.last_key(&TaskId::new("t7")), Some(entry("t7", 2).key));
        assert_eq!(again.last_key(&TaskId::new("t3")), Some(entry("t3", 1).key));
        assert_eq!(again.get(&TaskId::new("t3")).unwrap().id, TaskId::new("t3"));
        assert!(again.get(&TaskId::new("t50")).is_none());
    }

    #[test]
    fn a_torn_tail_loses_only_the_torn_record_and_the_next_append_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(dir.path());
        ledger.put(entry("a", 1)).unwrap();
        ledger.put(entry("b", 1)).unwrap();
        ledger.finish().unwrap();
        // A kill in the middle of b's key line, and in the middle of its body.
        let keys = dir.path().join("state/ledger/keys");
        let bytes = fs::read(&keys).unwrap();
        fs::write(&keys, &bytes[..bytes.len() - 20]).unwrap();
        let bodies = dir.path().join("state/ledger/bodies-0");
        let body = fs::read(&bodies).unwrap();
        fs::write(&bodies, &body[..body.len() - 30]).unwrap();

        let again = ledger_in(dir.path());
        assert_eq!(
            again.last_key(&TaskId::new("b")),
            None,
            "torn key line ignored"
        );
        assert_eq!(again.get(&TaskId::new("a")).unwrap().key, entry("a", 1).key);
        // The next record lands on a line of its own and reads back whole.
        again.put(entry("c", 1)).unwrap();
        again.finish().unwrap();
        let third = ledger_in(dir.path());
        assert_eq!(third.get(&TaskId::new("c")).unwrap().key, entry("c", 1).key);
        assert_eq!(third.get(&TaskId::new("a")).unwrap().key, entry("a", 1).key);
        assert_eq!(third.last_key(&TaskId::new("b")), None);

        // A key line naming a body past the end of its file, or another task's body: no entry.
        let keys_text = fs::read_to_string(&keys).unwrap();
        let name_a = id_name(&TaskId::new("a"));
        let line_c = keys_text
            .lines()
            .find(|line| line.starts_with(&id_name(&TaskId::new("c")).to_hex()))
            .unwrap();
        let forged = line_c.replacen(&id_name(&TaskId::new("c")).to_hex(), &name_a.to_hex(), 1);
        let beyond = format!(
            "{} {} 999999 10",
            id_name(&TaskId::new("d")),
            entry("d", 1).key
        );
        fs::write(&keys, format!("{keys_text}{forged}\n{beyond}\n")).unwrap();
        let fourth = ledger_in(dir.path());
        assert!(
            fourth.get(&TaskId::new("a")).is_none(),
            "c's body is not a's entry"
        );
        assert!(fourth.get(&TaskId::new("d")).is_none());
    }

    #[test]
    fn superseded_records_are_compacted_away_at_the_end_of_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(dir.path());
        for round in 0..(SLACK_LINES as u32 / 4 + 3) {
            for id in ["a", "b", "c", "d"] {
                ledger.put(entry(id, round)).unwrap();
            }
        }
        let last = SLACK_LINES as u32 / 4 + 2;
        ledger.finish().unwrap();
        assert_eq!(
            files(dir.path()),
            ["bodies-1", "keys"],
            "old bodies removed"
        );
        let keys = fs::read_to_string(dir.path().join("state/ledger/keys")).unwrap();
        assert_eq!(keys.lines().count(), 1 + 4, "header and the live records");
        let again = ledger_in(dir.path());
        for id in ["a", "b", "c", "d"] {
            let found = again.get(&TaskId::new(id)).unwrap();
            assert_eq!(found.components.impl_version, last);
        }
        // Appends go on in the compacted pair.
        again.put(entry("e", 1)).unwrap();
        assert_eq!(
            ledger_in(dir.path()).get(&TaskId::new("e")).unwrap().id,
            TaskId::new("e")
        );
    }

    #[test]
    fn another_versions_files_and_foreign_files_are_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let ledger_dir = dir.path().join("state/ledger");
        fs::create_dir_all(&ledger_dir).unwrap();
        // An earlier version's keys file (another header): replaced by a new pair.
        fs::write(ledger_dir.join("keys"), "xbundle-ledger-v9 bodies-0\n").unwrap();
        let ledger = ledger_in(dir.path());
        ledger.put(entry("a", 1)).unwrap();
        assert!(ledger_in(dir.path()).get(&TaskId::new("a")).is_some());

        // A hard link to someone else's file (which reads as a keys file) in the keys file's
        // place is not appended to: a new pair replaces it.
        let foreign = dir.path().join("foreign.txt");
        let theirs = format!("{HEADER} bodies-0\n");
        fs::write(&foreign, &theirs).unwrap();
        fs::write(ledger_dir.join("bodies-0"), "").unwrap();
        fs::remove_file(ledger_dir.join("keys")).unwrap();
        fs::hard_link(&foreign, ledger_dir.join("keys")).unwrap();
        let linked = ledger_in(dir.path());
        linked.put(entry("b", 1)).unwrap();
        assert_eq!(fs::read_to_string(&foreign).unwrap(), theirs);
        assert!(ledger_in(dir.path()).get(&TaskId::new("b")).is_some());

        // A symbolic link in the bodies file's place: not written through either.
        fs::remove_file(ledger_dir.join("keys")).unwrap();
        fs::write(ledger_dir.join("keys"), format!("{HEADER} bodies-5\n")).unwrap();
        std::os::unix::fs::symlink(&foreign, ledger_dir.join("bodies-5")).unwrap();
        ledger_in(dir.path()).put(entry("c", 1)).unwrap();
        assert_eq!(fs::read_to_string(&foreign).unwrap(), theirs);
        assert!(ledger_in(dir.path()).get(&TaskId::new("c")).is_some());

        // A directory in the place of both: the put fails, and the task's last key is
        // forgotten (not left at the one read when the run started).
        let ledger = ledger_in(dir.path());
        assert!(ledger.last_key(&TaskId::new("c")).is_some());
        fs::remove_dir_all(&ledger_dir).unwrap();
        fs::create_dir_all(ledger_dir.join("keys")).unwrap();
        assert!(ledger.put(entry("c", 2)).is_err());
        assert_eq!(ledger.last_key(&TaskId::new("c")), None);
    }

    #[test]
    fn a_body_gives_back_the_whole_entry_and_nothing_else_is_taken_for_one() {
        let mut full = entry("t", 3);
        for n in 0..300u32 {
            // Paths of every length up to 300 bytes, newlines and non-ASCII included.
            let path = format!("dir {n}/\n{}é", "x".repeat(n as usize));
            full.components
                .inputs
                .insert(path, Digest::of_bytes(&n.to_le_bytes()));
        }
        full.components
            .deps
            .insert("task:dep".into(), Digest::of_bytes(b"dep"));
        full.reasons = vec![DirtyReason::InputChanged("dir 7/\nxxxxxxxé".into())];
        full.key = full.components.key();
        let body = encode_body(full.clone()).unwrap();
        let back = decode_body(&body).expect("decodes");
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&full).unwrap()
        );
        assert_eq!(back.components.key(), full.key);
        // Cut anywhere inside an input, or with bytes after the last one: not an entry.
        let inputs_start = body.iter().position(|&b| b == b'\n').unwrap() + 1;
        for cut in [
            inputs_start + 1,
            inputs_start + 3,
            inputs_start + 10,
            body.len() - 1,
        ] {
            assert!(decode_body(&body[..cut]).is_none(), "cut at {cut}");
        }
        let mut longer = body.clone();
        longer.push(0);
        assert!(decode_body(&longer).is_none());
        // Inputs out of order or repeated (a body someone put together): not an entry.
        let first = inputs_start;
        let first_len = u32::from_le_bytes(body[first..first + 4].try_into().unwrap()) as usize;
        let second = first + 4 + first_len + 32;
        let mut swapped = body[..first].to_vec();
        swapped.extend_from_slice(&body[second..]);
        swapped.extend_from_slice(&body[first..second]);
        assert!(decode_body(&swapped).is_none(), "out of order");
        let mut twice = body.clone();
        twice.extend_from_slice(&body[first..second]);
        assert!(decode_body(&twice).is_none(), "repeated");
        // A JSON line that names inputs of its own is not one this version wrote.
        let mut named = serde_json::to_vec(&entry("t", 3)).unwrap();
        named.push(b'\n');
        assert!(decode_body(&named).is_none());
    }

    #[test]
    fn a_body_cut_after_a_whole_input_is_not_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(dir.path());
        let mut three = entry("a", 1);
        for n in 0..3 {
            three
                .components
                .inputs
                .insert(format!("z{n}"), Digest::of_bytes(&[n]));
        }
        three.key = three.components.key();
        ledger.put(three.clone()).unwrap();
        ledger.finish().unwrap();
        assert_eq!(
            ledger_in(dir.path()).get(&TaskId::new("a")).unwrap().key,
            three.key
        );
        // The key line's length torn to end at the last input but one (its id and key intact).
        let keys = dir.path().join("state/ledger/keys");
        let text = fs::read_to_string(&keys).unwrap();
        let (line, len) = text.lines().nth(1).unwrap().rsplit_once(' ').unwrap();
        let cut = len.parse::<usize>().unwrap() - (4 + 2 + 32);
        fs::write(
            &keys,
            format!("{}\n{line} {cut}\n", text.lines().next().unwrap()),
        )
        .unwrap();
        let body = fs::read(dir.path().join("state/ledger/bodies-0")).unwrap();
        let shorter = decode_body(&body[..cut]).expect("whole inputs decode");
        assert_eq!(
            shorter.components.inputs.len(),
            three.components.inputs.len() - 1
        );
        assert!(ledger_in(dir.path()).get(&TaskId::new("a")).is_none());
    }

    #[test]
    fn own_names() {
        assert!(is_own_name("keys"));
        assert!(is_own_name("bodies-0") && is_own_name("bodies-12"));
        assert!(!is_own_name("bodies-") && !is_own_name("bodies-1x") && !is_own_name("body"));
        assert!(
            !is_own_name("bodies-007") && !is_own_name("bodies-00") && !is_own_name("bodies-+1")
        );
        assert!(is_legacy_name(&Digest::of_bytes(b"t").to_hex()));
        assert!(!is_legacy_name("keys"));
    }
}
