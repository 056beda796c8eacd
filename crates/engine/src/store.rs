//! The local store: a content-addressed blob store (CAS) and an action cache (AC).
//!
//! Layout under the cache directory:
//!
//! ```text
//! cas/abcdef…      blob whose SHA-256 is abcdef…
//! ac/1234…         action result for task key 1234…: a header line
//!                  "xbundle-ac-v2 <key> <sha256 of key, newline and body>" then the JSON body
//! ```
//!
//! Invariants:
//! - Every file is published with [`write_atomic`](crate::fsutil::write_atomic) or an equivalent
//!   temp-then-rename, so no entry is ever visible half-written.
//! - An action result is written only after every blob it names is in the CAS.
//! - Nothing read back is trusted: an action result whose body does not match its header digest,
//!   or that was written for another key (a file copied or renamed in the store), is corrupt; a blob is streamed through SHA-256 on every restore and a mismatch is an error.
//!   Corrupt entries are deleted and reported; the caller treats them as misses. An entry that
//!   parses is still untrusted: its paths are checked before anything is restored (see
//!   [`crate::guard`]); the body is parsed strictly (unknown fields are corruption).
//! - Maintenance removes only what the store created (`cas/<sha256>`, `ac/<key>`, the shard
//!   directories of earlier versions, its `.tmp-*` files, then `cas/` and `ac/` when empty);
//!   never the cache directory itself, nor anything else a user keeps there.
//! - Concurrency: the cache may be shared by several workspaces (`XBUNDLE_CACHE_DIR`), whose
//!   workspace locks are separate. The store has its own lock file, `lock`: every build holds it
//!   shared for its whole run, `gc`, `verify` and `clean` take it exclusively (waiting with a
//!   warning). A lock rather than a grace period for young blobs, because it is exact: a blob
//!   written a second before `gc` or restored an hour after it was written are both safe, and
//!   `gc` never has to guess how long a build takes. The cost is that `gc` waits for running
//!   builds to finish.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::confine::{ConfineError, Dir};
use crate::digest::{Digest, Hasher, hash_reader};
use crate::fsutil::{
    FileLock, LockMode, persist, remove_file_if_exists, temp_beside, write_atomic,
};
use crate::statcache::FileStat;
use tempfile::NamedTempFile;

const AC_HEADER: &str = "xbundle-ac-v2";

/// One file of a task's output tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputFile {
    /// Root-relative, `/`-separated.
    pub path: String,
    pub executable: bool,
    pub size: u64,
    pub digest: Digest,
}

/// Captured output stream of a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredStream {
    pub size: u64,
    pub digest: Digest,
}

/// What a task produced, stored under its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionResult {
    pub task: String,
    /// Sorted by path.
    pub outputs: Vec<OutputFile>,
    pub stdout: Option<StoredStream>,
    pub stderr: Option<StoredStream>,
    pub duration_ms: u64,
    pub tools: BTreeMap<String, String>,
}

impl ActionResult {
    /// The digest dependents see: paths, executable bits and contents of the outputs (not the
    /// logs, not the duration).
    pub fn output_digest(&self) -> Digest {
        let mut hasher = Hasher::new();
        hasher.update(b"xbundle-outputs-v1");
        for file in &self.outputs {
            hasher.update(&(file.path.len() as u64).to_le_bytes());
            hasher.update(file.path.as_bytes());
            hasher.update(&[u8::from(file.executable)]);
            hasher.update(file.digest.as_bytes());
        }
        hasher.finish()
    }

    fn blobs(&self) -> impl Iterator<Item = (Digest, u64)> + '_ {
        self.outputs
            .iter()
            .map(|file| (file.digest, file.size))
            .chain(self.stdout.iter().map(|s| (s.digest, s.size)))
            .chain(self.stderr.iter().map(|s| (s.digest, s.size)))
    }
}

/// A store problem that the caller turns into a warning and a miss.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cache entry {path} is corrupt ({problem}); it was removed")]
    Corrupt { path: PathBuf, problem: String },
    #[error("cache blob {digest} is missing")]
    MissingBlob { digest: Digest },
    /// The work tree refused the restore (a link where a directory is expected, …): not the
    /// cache's fault.
    #[error(transparent)]
    Tree(#[from] ConfineError),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The on-disk CAS and action cache.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn open(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `cas/<sha256>`. The directories are flat: no two-character shards, whose creation cost a
    /// cold build about 15% of its time (ext4 and its peers index large directories well).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("cas").join(digest.to_hex())
    }

    /// `ac/<key>`.
    pub fn action_path(&self, key: &Digest) -> PathBuf {
        self.root.join("ac").join(key.to_hex())
    }

    /// Copies the file at `source` into the CAS, hashing it on the way. Returns its digest and
    /// size. The blob is published only under the digest of the bytes actually copied.
    pub fn put_file(&self, source: &Path) -> Result<(Digest, u64), StoreError> {
        let mut input = File::open(source).map_err(io_err(source))?;
        let staging = self.root.join("cas");
        let mut temp = temp_beside(&staging.join("x")).map_err(io_err(&staging))?;
        let mut hasher = Hasher::new();
        let mut size = 0u64;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = input.read(&mut buffer).map_err(io_err(source))?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            temp.write_all(&buffer[..read]).map_err(io_err(&staging))?;
            size += read as u64;
        }
        let digest = hasher.finish();
        let destination = self.blob_path(&digest);
        if blob_present(&destination, size) {
            return Ok((digest, size));
        }
        if let Some(dir) = destination.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        persist(temp, &destination).map_err(io_err(&destination))?;
        Ok((digest, size))
    }

    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let digest = Digest::of_bytes(bytes);
        let destination = self.blob_path(&digest);
        if !blob_present(&destination, bytes.len() as u64) {
            write_atomic(&destination, bytes).map_err(io_err(&destination))?;
        }
        Ok(digest)
    }

    /// Reads a whole blob, verifying its digest.
    pub fn get_bytes(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingBlob { digest: *digest });
            }
            Err(err) => return Err(io_err(&path)(err)),
        };
        if Digest::of_bytes(&bytes) != *digest {
            let _ = remove_file_if_exists(&path);
            return Err(StoreError::Corrupt {
                path,
                problem: "content does not match its digest".into(),
            });
        }
        Ok(bytes)
    }

    /// Writes the blob `file.digest` to `relative` below `root` (atomically, through
    /// [`crate::confine`]: never through a link), verifying size and digest while copying, with
    /// mode 0755 or 0644. A mismatch deletes the bad blob and leaves the destination untouched.
    /// Returns the restored file's stat.
    ///
    /// The temporary copy is made in `staging` (a directory of the engine's, emptied at the start
    /// of every run, so a build killed mid-restore leaves nothing in the work tree), or in the
    /// destination's directory when `staging` is unusable or on another file system.
    pub fn restore_file(
        &self,
        file: &OutputFile,
        root: &Dir,
        relative: &str,
        staging: &Path,
    ) -> Result<FileStat, StoreError> {
        let in_place = || {
            root.write_file(relative, mode_of(file), |out: &mut File| {
                self.verified_copy_into(file, out, Path::new(relative))
            })
        };
        let temp = match self.verified_copy(file, staging.join("x").as_path()) {
            Ok(temp) => temp,
            Err(StoreError::Io { .. }) => return in_place(),
            Err(err) => return Err(err),
        };
        match root.rename_into(temp.path(), relative) {
            Ok(stat) => {
                // Moved away: nothing left for the temporary file's drop to remove.
                let _ = temp.into_temp_path().keep();
                Ok(stat)
            }
            Err(ConfineError::Io { source, .. })
                if source.kind() == io::ErrorKind::CrossesDevices =>
            {
                drop(temp);
                in_place()
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Copies blob `file.digest` into a temporary file beside `near`, verifying size and digest.
    fn verified_copy(&self, file: &OutputFile, near: &Path) -> Result<NamedTempFile, StoreError> {
        let mut temp = temp_beside(near).map_err(io_err(near))?;
        self.verified_copy_into(file, temp.as_file_mut(), near)?;
        temp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode_of(file)))
            .map_err(io_err(near))?;
        Ok(temp)
    }

    /// Copies blob `file.digest` into `out`, verifying size and digest; a mismatch removes the
    /// blob.
    fn verified_copy_into(
        &self,
        file: &OutputFile,
        out: &mut File,
        out_path: &Path,
    ) -> Result<(), StoreError> {
        let blob = self.blob_path(&file.digest);
        let mut input = match File::open(&blob) {
            Ok(input) => input,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingBlob {
                    digest: file.digest,
                });
            }
            Err(err) => return Err(io_err(&blob)(err)),
        };
        let mut tee = Tee {
            reader: &mut input,
            writer: out,
        };
        let (digest, size) = hash_reader(&mut tee).map_err(|err| {
            // A read error is the blob's, a write error the destination's.
            io_err(out_path)(err)
        })?;
        if digest != file.digest || size != file.size {
            let _ = remove_file_if_exists(&blob);
            return Err(StoreError::Corrupt {
                path: blob,
                problem: format!(
                    "expected {} bytes with sha256 {}, found {size} bytes with sha256 {}",
                    file.size,
                    file.digest.short(),
                    digest.short()
                ),
            });
        }
        Ok(())
    }

    /// Stores an action result under `key`. Call only after all its blobs are stored.
    pub fn put_action(&self, key: &Digest, result: &ActionResult) -> Result<(), StoreError> {
        let body = serde_json::to_vec(result).expect("action results serialize");
        let mut bytes = format!("{AC_HEADER} {key} {}\n", entry_checksum(key, &body)).into_bytes();
        bytes.extend_from_slice(&body);
        let path = self.action_path(key);
        write_atomic(&path, &bytes).map_err(io_err(&path))
    }

    /// Looks up the action result for `key`. A corrupt entry is removed and reported.
    pub fn get_action(&self, key: &Digest) -> Result<Option<ActionResult>, StoreError> {
        let path = self.action_path(key);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(io_err(&path)(err)),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err(&path))?;
        if is_other_format(&bytes) {
            // Written by another version of xbundle: a plain miss, replaced on the next store.
            return Ok(None);
        }
        match parse_action(&bytes, Some(key)) {
            Ok(result) => {
                mark_used(&path, &file);
                Ok(Some(result))
            }
            Err(problem) => {
                let _ = remove_file_if_exists(&path);
                Err(StoreError::Corrupt { path, problem })
            }
        }
    }

    pub fn remove_action(&self, key: &Digest) {
        let _ = remove_file_if_exists(&self.action_path(key));
    }

    /// Counts and sizes of what the store holds.
    pub fn stats(&self) -> io::Result<StoreStats> {
        let mut stats = StoreStats::default();
        for (_, size, _) in list_files(&self.root.join("ac"), false)? {
            stats.actions += 1;
            stats.action_bytes += size;
        }
        for (_, size, _) in list_files(&self.root.join("cas"), false)? {
            stats.blobs += 1;
            stats.blob_bytes += size;
        }
        Ok(stats)
    }

    /// Checks every action result and blob; removes what is corrupt or unsafe. `check` judges
    /// each readable action result as untrusted input (see [`crate::guard::check_entry`]);
    /// what it refuses is reported and removed like a corrupt entry.
    ///
    /// Call with the store locked exclusively ([`Store::lock`]).
    pub fn verify(
        &self,
        check: &dyn Fn(&ActionResult) -> Result<(), String>,
    ) -> io::Result<VerifyReport> {
        let mut report = VerifyReport::default();
        for (path, _, _) in list_files(&self.root.join("cas"), true)? {
            report.blobs_checked += 1;
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let ok = match Digest::from_hex(name) {
                Some(expected) => {
                    let (digest, _) = hash_reader(&mut File::open(&path)?)?;
                    digest == expected
                }
                None => false,
            };
            if !ok {
                remove_file_if_exists(&path)?;
                report.problems.push(format!(
                    "blob {} does not match its digest; removed",
                    path.display()
                ));
            }
        }
        for (path, _, _) in list_files(&self.root.join("ac"), true)? {
            report.actions_checked += 1;
            let bytes = fs::read(&path)?;
            if is_other_format(&bytes) {
                // Another version's entry: never read by this one (a plain miss), left alone.
                continue;
            }
            let problem = match parse_action(&bytes, key_of(&path).as_ref()) {
                Err(problem) => Some(problem),
                Ok(result) => check(&result).err().or_else(|| {
                    result
                        .blobs()
                        .find(|(digest, size)| !blob_present(&self.blob_path(digest), *size))
                        .map(|(digest, _)| {
                            format!("names missing or damaged blob {}", digest.short())
                        })
                }),
            };
            if let Some(problem) = problem {
                remove_file_if_exists(&path)?;
                report.problems.push(format!(
                    "action entry {} is unusable ({problem}); removed",
                    path.display()
                ));
            }
        }
        Ok(report)
    }

    /// Removes everything the store created, and nothing else: `cas/<sha256>` blobs,
    /// `ac/<key>` entries, the same in the two-hex-digit shard directories of earlier versions
    /// (removed once empty), the store's temporary files (`.tmp-*`), then `cas/` and `ac/` if
    /// nothing else is left in them. The cache directory itself, its lock file and any other
    /// file or directory in it stay. Returns how many files were removed.
    ///
    /// Call with the store locked exclusively ([`Store::lock`]).
    pub fn clean(&self) -> io::Result<u64> {
        let mut removed = 0;
        for area in ["cas", "ac"] {
            let dir = self.root.join(area);
            if !fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                // Missing, or a link the store never made: nothing of ours in it.
                continue;
            }
            for (path, _, _) in list_files(&dir, false)? {
                remove_file_if_exists(&path)?;
                removed += 1;
            }
            removed += remove_temp_files(&dir)?;
            if let Ok(entries) = fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    if is_shard(&entry) {
                        removed += remove_temp_files(&entry.path())?;
                        remove_dir_if_empty(&entry.path())?;
                    }
                }
            }
            remove_dir_if_empty(&dir)?;
        }
        Ok(removed)
    }

    /// The store's lock file (`<cache>/lock`): builds hold it shared for their whole run,
    /// `gc`, `verify` and `clean` exclusively, so maintenance never removes a blob that a build
    /// in any workspace sharing this cache is writing or restoring.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// Takes the store's lock (see [`Store::lock_path`]), calling `on_wait` once if another
    /// process holds it in a conflicting mode, and polling `cancelled` while waiting.
    pub fn lock(
        &self,
        mode: LockMode,
        on_wait: impl FnOnce(),
        cancelled: &dyn Fn() -> bool,
    ) -> io::Result<FileLock> {
        FileLock::acquire(&self.lock_path(), mode, on_wait, cancelled)
    }

    /// Evicts least recently used action results until the store fits in `max_bytes`, then
    /// removes blobs no remaining action result names, and stray temporary files. Only files the
    /// store created are ever removed (see [`Store::clean`]).
    ///
    /// Call with the store locked exclusively ([`Store::lock`]): a blob that a build is writing
    /// is named by no action result yet, and would otherwise be removed under it.
    pub fn gc(&self, max_bytes: u64) -> io::Result<GcReport> {
        let mut actions = list_files(&self.root.join("ac"), true)?;
        // Newest first.
        actions.sort_by_key(|entry| std::cmp::Reverse(entry.2));
        let mut kept_blobs: HashSet<Digest> = HashSet::new();
        let mut total = 0u64;
        let mut report = GcReport::default();
        for (path, size, _) in actions {
            let result = fs::read(&path)
                .ok()
                .and_then(|bytes| parse_action(&bytes, key_of(&path).as_ref()).ok());
            let Some(result) = result else {
                remove_file_if_exists(&path)?;
                report.removed_actions += 1;
                report.freed_bytes += size;
                continue;
            };
            let new_bytes: u64 = size
                + result
                    .blobs()
                    .filter(|(digest, _)| !kept_blobs.contains(digest))
                    .map(|(_, size)| size)
                    .sum::<u64>();
            if total + new_bytes <= max_bytes {
                total += new_bytes;
                kept_blobs.extend(result.blobs().map(|(digest, _)| digest));
                report.kept_actions += 1;
            } else {
                remove_file_if_exists(&path)?;
                report.removed_actions += 1;
                report.freed_bytes += size;
            }
        }
        for (path, size, _) in list_files(&self.root.join("cas"), true)? {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let keep = Digest::from_hex(name).is_some_and(|d| kept_blobs.contains(&d));
            if !keep {
                remove_file_if_exists(&path)?;
                report.removed_blobs += 1;
                report.freed_bytes += size;
            }
        }
        report.kept_bytes = total;
        Ok(report)
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct StoreStats {
    pub actions: u64,
    pub action_bytes: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct VerifyReport {
    pub blobs_checked: u64,
    pub actions_checked: u64,
    pub problems: Vec<String>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct GcReport {
    pub kept_actions: u64,
    pub removed_actions: u64,
    pub removed_blobs: u64,
    pub freed_bytes: u64,
    pub kept_bytes: u64,
}

fn entry_checksum(key: &Digest, body: &[u8]) -> Digest {
    let mut hasher = Hasher::new();
    hasher.update(key.to_hex().as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    hasher.finish()
}

/// An entry in another (older or newer) entry format: not corrupt, just not ours to read.
fn is_other_format(bytes: &[u8]) -> bool {
    bytes.starts_with(b"xbundle-ac-v") && !bytes.starts_with(format!("{AC_HEADER} ").as_bytes())
}

/// The key an action-cache file is stored under (its name).
fn key_of(path: &Path) -> Option<Digest> {
    path.file_name()?.to_str().and_then(Digest::from_hex)
}

/// Parses and checks an action-cache entry; `expected` is the key it was looked up by (an entry
/// is corrupt unless written for exactly that key).
fn parse_action(bytes: &[u8], expected: Option<&Digest>) -> Result<ActionResult, String> {
    let newline = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("no header line")?;
    let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| "header is not UTF-8")?;
    let body = &bytes[newline + 1..];
    let mut fields = header.split(' ');
    if fields.next() != Some(AC_HEADER) {
        return Err("unknown header".into());
    }
    let key = fields
        .next()
        .and_then(Digest::from_hex)
        .ok_or("no key in header")?;
    let checksum = fields
        .next()
        .and_then(Digest::from_hex)
        .ok_or("no checksum in header")?;
    if expected.is_some_and(|expected| *expected != key) {
        return Err(format!(
            "written for key {}, found under another key",
            key.short()
        ));
    }
    if entry_checksum(&key, body) != checksum {
        return Err("body does not match its checksum".into());
    }
    serde_json::from_slice(body).map_err(|err| format!("unreadable body: {err}"))
}

/// The only modes a restored file gets.
fn mode_of(file: &OutputFile) -> u32 {
    if file.executable { 0o755 } else { 0o644 }
}

fn blob_present(path: &Path, size: u64) -> bool {
    fs::metadata(path).is_ok_and(|m| m.len() == size)
}

/// Marks an action result as recently used (for `gc`), at most once an hour: one `fstat` of
/// the already open entry on the common path.
fn mark_used(path: &Path, open: &File) {
    let stale = open
        .metadata()
        .and_then(|m| m.modified())
        .is_ok_and(|modified| {
            SystemTime::now()
                .duration_since(modified)
                .is_ok_and(|age| age > Duration::from_secs(3600))
        });
    if stale && let Ok(file) = File::options().write(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// Temporary files older than this are leftovers of a killed process: `gc` and `verify` remove
/// them. Younger ones may belong to a process of an earlier version that does not take the store
/// lock, so nothing else touches them (`clean` removes them all).
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// A name the store gives its files: 64 lowercase hex digits.
fn is_store_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A shard directory of earlier versions: two lowercase hex digits, a real directory.
fn is_shard(entry: &fs::DirEntry) -> bool {
    let name = entry.file_name();
    let name = name.to_str().unwrap_or("");
    name.len() == 2
        && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && entry.file_type().is_ok_and(|t| t.is_dir())
}

fn is_temp_name(name: &str) -> bool {
    name.starts_with(".tmp-")
}

/// Removes the store's temporary files directly in `dir`; returns how many.
fn remove_temp_files(dir: &Path) -> io::Result<u64> {
    remove_own_files(dir, &is_temp_name)
}

/// Removes the regular files (not links, not directories) directly in `dir` whose names `own`
/// accepts; returns how many. A `dir` that is a link or missing holds nothing of ours.
pub(crate) fn remove_own_files(dir: &Path, own: &dyn Fn(&str) -> bool) -> io::Result<u64> {
    if !fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        return Ok(0);
    }
    let mut removed = 0;
    for entry in fs::read_dir(dir)?.flatten() {
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && entry.file_name().to_str().is_some_and(own) {
            remove_file_if_exists(&entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn remove_dir_if_empty(dir: &Path) -> io::Result<()> {
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::DirectoryNotEmpty
            ) =>
        {
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// Every file the store created in `dir` (`dir/<64 hex>`, and `dir/<2 hex>/<64 hex>` of the
/// sharded layout of earlier versions, so `gc` and `verify` still see and clean such entries),
/// with size and mtime. Links, other names and other directories are never listed: they are
/// not the store's. Temporary files are skipped, and removed when `remove_stale_temp` and
/// older than [`STALE_TEMP`].
fn list_files(dir: &Path, remove_stale_temp: bool) -> io::Result<Vec<(PathBuf, u64, SystemTime)>> {
    let mut out = Vec::new();
    if !fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        // Missing, or a link the store never made.
        return Ok(out);
    }
    list_into(dir, remove_stale_temp, true, &mut out)?;
    Ok(out)
}

fn list_into(
    dir: &Path,
    remove_stale_temp: bool,
    descend: bool,
    out: &mut Vec<(PathBuf, u64, SystemTime)>,
) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if descend && is_shard(&entry) {
            list_into(&path, remove_stale_temp, false, out)?;
            continue;
        }
        // Not following links: a link is never a store file.
        let metadata = match entry.metadata() {
            Ok(metadata) => metadata,
            // Renamed or removed by a concurrent build since the directory was read.
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        if !metadata.is_file() {
            continue;
        }
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_temp_name(name) {
            let stale = metadata
                .modified()
                .ok()
                .and_then(|modified| SystemTime::now().duration_since(modified).ok())
                .is_some_and(|age| age > STALE_TEMP);
            if remove_stale_temp && stale {
                let _ = remove_file_if_exists(&path);
            }
            continue;
        }
        if is_store_name(name) {
            out.push((path, metadata.len(), metadata.modified()?));
        }
    }
    Ok(())
}

struct Tee<'a, R: Read, W: Write> {
    reader: &'a mut R,
    writer: &'a mut W,
}

impl<R: Read, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.reader.read(buf)?;
        self.writer.write_all(&buf[..read])?;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn result_with(store: &Store, dir: &Path, content: &[u8]) -> ActionResult {
        let file = dir.join("out.txt");
        fs::write(&file, content).unwrap();
        let (digest, size) = store.put_file(&file).unwrap();
        ActionResult {
            task: "task:t".into(),
            outputs: vec![OutputFile {
                path: "out.txt".into(),
                executable: false,
                size,
                digest,
            }],
            stdout: None,
            stderr: None,
            duration_ms: 1,
            tools: BTreeMap::new(),
        }
    }

    #[test]
    fn action_round_trip_and_tamper_detection() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("cache"));
        let result = result_with(&store, dir.path(), b"hello");
        let key = Digest::of_bytes(b"key");
        store.put_action(&key, &result).unwrap();
        assert_eq!(store.get_action(&key).unwrap(), Some(result.clone()));

        // An entry of another format version is a silent miss.
        let old = Digest::of_bytes(b"old format");
        fs::create_dir_all(store.action_path(&old).parent().unwrap()).unwrap();
        fs::write(store.action_path(&old), "xbundle-ac-v1 abc\n{}").unwrap();
        assert_eq!(store.get_action(&old).unwrap(), None);

        // A valid entry copied under another key is not that key's result.
        let other = Digest::of_bytes(b"other key");
        fs::create_dir_all(store.action_path(&other).parent().unwrap()).unwrap();
        fs::copy(store.action_path(&key), store.action_path(&other)).unwrap();
        assert!(matches!(
            store.get_action(&other),
            Err(StoreError::Corrupt { .. })
        ));

        // Flip one byte of the body: corrupt, removed, then a plain miss.
        let path = store.action_path(&key);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert!(matches!(
            store.get_action(&key),
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(store.get_action(&key).unwrap(), None);
    }

    #[test]
    fn restore_verifies_blob_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("cache"));
        let result = result_with(&store, dir.path(), b"hello");
        let root = Dir::open_root(dir.path()).unwrap();
        let destination = dir.path().join("restored.txt");
        let staging = dir.path().join("staging");
        fs::create_dir_all(&staging).unwrap();
        store
            .restore_file(&result.outputs[0], &root, "restored.txt", &staging)
            .unwrap();
        assert_eq!(fs::read(&destination).unwrap(), b"hello");
        assert_eq!(
            fs::metadata(&destination).unwrap().permissions().mode() & 0o777,
            0o644
        );
        // Without a usable staging directory, the copy is made beside the destination.
        fs::remove_file(&destination).unwrap();
        store
            .restore_file(
                &result.outputs[0],
                &root,
                "restored.txt",
                &dir.path().join("none"),
            )
            .unwrap();
        assert_eq!(fs::read(&destination).unwrap(), b"hello");

        fs::write(store.blob_path(&result.outputs[0].digest), b"jello").unwrap();
        fs::remove_file(&destination).unwrap();
        let err = store
            .restore_file(&result.outputs[0], &root, "restored.txt", &staging)
            .unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(!destination.exists(), "nothing half-restored");
        assert!(!store.blob_path(&result.outputs[0].digest).exists());
    }

    #[test]
    fn layout_is_flat_and_old_sharded_entries_are_still_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("cache"));
        let digest = Digest::of_bytes(b"x");
        assert_eq!(
            store.blob_path(&digest),
            dir.path().join("cache/cas").join(digest.to_hex())
        );
        // An entry of the earlier sharded layout: counted, and removed by gc (nothing names it).
        let legacy = dir
            .path()
            .join("cache/cas/2d")
            .join(Digest::of_bytes(b"old").to_hex());
        fs::create_dir_all(legacy.parent().unwrap()).unwrap();
        fs::write(&legacy, b"old").unwrap();
        assert_eq!(store.stats().unwrap().blobs, 1);
        assert_eq!(store.gc(1 << 30).unwrap().removed_blobs, 1);
        assert!(!legacy.exists());
    }

    #[test]
    fn gc_keeps_newest_within_budget() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("cache"));
        let old = result_with(&store, dir.path(), &[b'a'; 1000]);
        store.put_action(&Digest::of_bytes(b"old"), &old).unwrap();
        let old_time = SystemTime::now() - Duration::from_secs(100);
        File::options()
            .write(true)
            .open(store.action_path(&Digest::of_bytes(b"old")))
            .unwrap()
            .set_modified(old_time)
            .unwrap();
        let new = result_with(&store, dir.path(), &[b'b'; 1000]);
        store.put_action(&Digest::of_bytes(b"new"), &new).unwrap();
        let report = store.gc(1600).unwrap();
        assert_eq!(report.kept_actions, 1);
        assert_eq!(report.removed_actions, 1);
        assert_eq!(report.removed_blobs, 1);
        assert!(
            store
                .get_action(&Digest::of_bytes(b"new"))
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .get_action(&Digest::of_bytes(b"old"))
                .unwrap()
                .is_none()
        );
        assert!(store.verify(&|_| Ok(())).unwrap().problems.is_empty());
    }

    #[test]
    fn strict_bodies_and_verify_reports_refused_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("cache"));
        let result = result_with(&store, dir.path(), b"hello");
        let key = Digest::of_bytes(b"key");
        store.put_action(&key, &result).unwrap();
        // An unknown field (checksum recomputed): corrupt.
        let body = serde_json::to_string(&result)
            .unwrap()
            .replacen('{', r#"{"mode":511,"#, 1);
        let mut bytes = format!(
            "{AC_HEADER} {key} {}\n",
            entry_checksum(&key, body.as_bytes())
        );
        bytes.push_str(&body);
        fs::write(store.action_path(&key), bytes).unwrap();
        assert!(matches!(
            store.get_action(&key),
            Err(StoreError::Corrupt { .. })
        ));

        store.put_action(&key, &result).unwrap();
        let report = store.verify(&|_| Err("refused".into())).unwrap();
        assert_eq!(report.problems.len(), 1, "{report:?}");
        assert!(report.problems[0].contains("(refused)"), "{report:?}");
        assert!(!store.action_path(&key).exists());
    }

    #[test]
    fn clean_and_gc_remove_only_what_the_store_created() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let store = Store::open(&cache);
        let result = result_with(&store, dir.path(), b"hello");
        store.put_action(&Digest::of_bytes(b"k"), &result).unwrap();
        let legacy = cache.join("ac/ab").join(Digest::of_bytes(b"old").to_hex());
        fs::create_dir_all(legacy.parent().unwrap()).unwrap();
        fs::write(&legacy, b"old").unwrap();
        fs::write(cache.join("ac/ab/.tmp-123"), b"t").unwrap();
        // What a user keeps there.
        let mine = [
            "notes.txt",
            "cas/README",
            "cas/zz/file",
            "cas/ab/notes",
            "ac/0123",
            "sub/dir/file",
        ];
        for path in mine {
            fs::create_dir_all(cache.join(path).parent().unwrap()).unwrap();
            fs::write(cache.join(path), path).unwrap();
        }
        std::os::unix::fs::symlink(
            dir.path().join("out.txt"),
            cache.join("cas").join(Digest::of_bytes(b"l").to_hex()),
        )
        .unwrap();
        store.gc(0).unwrap();
        for path in mine {
            assert_eq!(
                fs::read_to_string(cache.join(path)).unwrap(),
                path,
                "gc kept {path}"
            );
        }
        assert!(!legacy.exists());
        let removed = store.clean().unwrap();
        assert_eq!(removed, 1, "the shard's temporary file");
        for path in mine {
            assert_eq!(
                fs::read_to_string(cache.join(path)).unwrap(),
                path,
                "clean kept {path}"
            );
        }
        assert!(!cache.join("ac/ab").exists(), "an emptied shard goes");
        assert!(
            dir.path().join("out.txt").exists(),
            "a link is not followed"
        );
        fs::remove_dir_all(cache.join("sub")).unwrap();
        for path in mine.iter().filter(|p| !p.starts_with("sub")) {
            fs::remove_file(cache.join(path)).unwrap();
        }
        fs::remove_file(cache.join("cas").join(Digest::of_bytes(b"l").to_hex())).unwrap();
        fs::remove_dir(cache.join("cas/zz")).unwrap();
        store.clean().unwrap();
        assert!(cache.exists(), "never the cache directory itself");
        assert!(!cache.join("cas").exists() && !cache.join("ac").exists());
    }
}
