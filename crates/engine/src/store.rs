//! The local store: a content-addressed blob store (CAS) and an action cache (AC).
//!
//! Layout under the cache directory:
//!
//! ```text
//! cas/abcdef…      blob whose SHA-256 is abcdef…
//! ac/pack-<n>      action results, one after another, each a header line
//!                  "xbundle-ac-v3 <key> <sha256 of key, newline and body>" then the JSON body
//! ac/index         where each key's result is in the pack (see the `acpack` module)
//! ac/1234…         an action result in a file of its own, as earlier versions wrote them
//!                  (still read, and written when the pack cannot be appended to); v2 entries,
//!                  without discovered inputs, are still read
//! lock             the store lock
//! ```
//!
//! Invariants:
//! - Every file is published temp-then-rename ([`crate::confine::TempFile`]), or, for an
//!   output a task has just written, by a hard link to it ([`Store::put_output`]), so no entry
//!   is ever visible half-written; an action result appended to the pack is found only through
//!   an index line written after it, and read only whole and matching its checksum. A blob
//!   that is also a file of the work tree is damaged when that file is written into in place:
//!   like any damaged blob it is found by the digest check of every read (a miss, never a wrong
//!   output), and the engine recognizes the case (the output and the blob are one file) to say
//!   so.
//! - An action result is written only after every blob it names is in the CAS.
//! - The cache directory is a [`Place`]: `cas/` and `ac/` (and the cache itself when it lies
//!   inside the workspace) are reached without following a link, and every file of the store is
//!   opened with `O_NOFOLLOW` and used only if it is a regular file ([`Dir::open_file`]): a
//!   link, a FIFO or a device where the store expects a blob or an entry (put there by another
//!   user of a shared cache) is never followed, read or waited on. It is corrupt: reported,
//!   removed (the link itself), and a miss.
//! - Nothing read back is trusted: an action result whose body does not match its header digest,
//!   or that was written for another key (a file copied or renamed in the store), is corrupt; a
//!   blob is read only if its size is the one the entry gives, and no further, and is streamed
//!   through SHA-256 on every restore; a mismatch is an error. Corrupt entries are deleted and
//!   reported; the caller treats them as misses. An entry that parses is still untrusted: its
//!   paths are checked before anything is restored (see [`crate::guard`]); the body is parsed
//!   strictly (unknown fields are corruption) and bounded ([`MAX_ENTRY_BYTES`]).
//! - Maintenance removes only what the store created (`cas/<sha256>`, `ac/<key>`, the pack's
//!   `ac/pack-<n>` and `ac/index`, the shard directories of earlier versions, its temporary
//!   files ([`crate::confine::is_temp_name`]), then `cas/` and `ac/` when empty);
//!   never the cache directory itself, nor anything else a user keeps there. `verify` also
//!   removes what is at a store name but is not a regular file (a link is removed itself).
//! - Concurrency: the cache may be shared by several workspaces (`XBUNDLE_CACHE_DIR`), whose
//!   workspace locks are separate. The store has its own lock file, `lock`: every build holds it
//!   shared for its whole run, `gc`, `verify` and `clean` take it exclusively (waiting with a
//!   warning). A lock rather than a grace period for young blobs, because it is exact: a blob
//!   written a second before `gc` or restored an hour after it was written are both safe, and
//!   `gc` never has to guess how long a build takes. The cost is that `gc` waits for running
//!   builds to finish.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::acpack::{self, Pack, PackError};
use crate::confine::{ConfineError, Dir, Kind, Place, is_temp_name};
use crate::digest::{Digest, Hasher, hash_reader_expecting};
use crate::fsutil::{Durability, FileLock, LockMode, durability};
use crate::statcache::FileStat;

/// The header of the entries this version writes. v3 adds `discovered` (see
/// [`crate::discovered`]); versions that do not know it see another format (a plain miss) rather
/// than a body with an unknown field (corrupt, removed).
const AC_HEADER: &str = "xbundle-ac-v3";
/// The headers this version reads: its own, and v2 (the same body without `discovered`).
const AC_HEADERS_READ: [&str; 2] = [AC_HEADER, "xbundle-ac-v2"];

/// The largest action entry the store reads (a task with a million output files writes about a
/// third of this); anything larger is corrupt, and never read whole.
pub const MAX_ENTRY_BYTES: u64 = 256 << 20;

/// The most files the end of a run flushes one by one; more are flushed with one `syncfs(2)`
/// (see [`Store::sync_published`]).
const FLUSH_EACH_MAX: usize = 32;

/// Blobs are copied and replayed in pieces of this size.
const CHUNK: usize = 1 << 20;

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
    /// What the action discovered it read, as it was when the result was made (see
    /// [`crate::discovered`]); `None` for actions that report nothing (and v2 entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered: Option<crate::discovered::DiscoveredRecord>,
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

    /// Every blob the entry names (outputs, then the captured streams), with its size.
    pub fn blobs(&self) -> impl Iterator<Item = (Digest, u64)> + '_ {
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
    /// The cache's own directories refused (a link or a file where `cas/` or `ac/` should be).
    #[error("the cache: {0}")]
    Place(ConfineError),
    /// The run was cancelled while a blob was being copied.
    #[error("interrupted")]
    Interrupted,
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What [`Store::put_output`] stored.
#[derive(Clone, Copy, Debug)]
pub struct StoredOutput {
    pub digest: Digest,
    pub size: u64,
    /// The output's stat now (after a link, its new ctime).
    pub stat: FileStat,
    /// Whether the output itself became the blob (a hard link) rather than a copy.
    pub linked: bool,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Why [`Store::put_blob_from`] stored nothing.
#[derive(Debug)]
pub enum BlobFetchError<E> {
    /// The source failed.
    Source(E),
    /// The bytes are not the blob: too many, too few, or another digest.
    Mismatch(String),
    /// The store could not keep it.
    Store(StoreError),
}

/// A writer that hashes what passes and refuses anything past `limit` bytes.
struct BoundedWriter<'a> {
    out: &'a mut File,
    hasher: Hasher,
    written: u64,
    limit: u64,
}

impl Write for BoundedWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.written + bytes.len() as u64 > self.limit {
            // Counted, so the caller sees more than the limit arrived.
            self.written += bytes.len() as u64;
            return Err(io::Error::other(format!(
                "more than the {} bytes expected",
                self.limit
            )));
        }
        let written = self.out.write(bytes)?;
        self.hasher.update(&bytes[..written]);
        self.written += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The two areas of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Area {
    Cas,
    Ac,
}

impl Area {
    fn name(self) -> &'static str {
        match self {
            Area::Cas => "cas",
            Area::Ac => "ac",
        }
    }
}

/// A file of an area published, by its name; `None`: an entry appended to the pack.
type Published = (Area, Option<Digest>);

/// The on-disk CAS and action cache.
#[derive(Clone, Debug)]
pub struct Store {
    place: Place,
    cas: Place,
    ac: Place,
    /// The action cache's pack and index (see the `acpack` module).
    pack: Arc<Pack>,
    /// What this store published since the last [`Store::sync_published`] (kept only with
    /// [`Durability::EndOfRun`]).
    published: Arc<Mutex<Vec<Published>>>,
}

impl Store {
    /// The store in the directory `root`, trusted as given (links in its path are followed;
    /// nothing below it is).
    pub fn open(root: impl Into<PathBuf>) -> Store {
        let root = root.into();
        Store::at(Place::within(&root, &root))
    }

    /// The store at `place` (see [`Place`]: inside a workspace, no link below the root).
    pub fn at(place: Place) -> Store {
        let ac = place.join(Area::Ac.name());
        Store {
            cas: place.join(Area::Cas.name()),
            pack: Arc::new(Pack::new(ac.clone())),
            ac,
            place,
            published: Arc::default(),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.place.path()
    }

    /// The cache directory as a [`Place`].
    pub fn place(&self) -> &Place {
        &self.place
    }

    /// The places where the store keeps its files: the cache directory, `cas/` and `ac/`.
    pub fn places(&self) -> [Place; 3] {
        [self.place.clone(), self.cas.clone(), self.ac.clone()]
    }

    fn area_place(&self, area: Area) -> &Place {
        match area {
            Area::Cas => &self.cas,
            Area::Ac => &self.ac,
        }
    }

    /// `cas/<sha256>`. The directories are flat: no two-character shards, whose creation cost a
    /// cold build about 15% of its time (ext4 and its peers index large directories well).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root().join("cas").join(digest.to_hex())
    }

    /// `ac/<key>`.
    pub fn action_path(&self, key: &Digest) -> PathBuf {
        self.root().join("ac").join(key.to_hex())
    }

    /// An area of the store; `Ok(None)` when it does not exist yet.
    fn area(&self, area: Area) -> Result<Option<Arc<Dir>>, StoreError> {
        self.area_place(area).open().map_err(StoreError::Place)
    }

    /// An area of the store, created if needed.
    fn area_created(&self, area: Area) -> Result<Arc<Dir>, StoreError> {
        self.area_place(area).create().map_err(StoreError::Place)
    }

    /// Copies the file at `source` into the CAS, hashing it on the way. Returns its digest and
    /// size. The blob is published only under the digest of the bytes actually copied.
    pub fn put_file(&self, source: &Path) -> Result<(Digest, u64), StoreError> {
        let mut input = File::open(source).map_err(io_err(source))?;
        self.copy_in(&mut input, source)
    }

    /// [`Store::put_file`] from the open `input`, read from its current position.
    fn copy_in(&self, input: &mut File, source: &Path) -> Result<(Digest, u64), StoreError> {
        let cas = self.area_created(Area::Cas)?;
        let mut temp = cas.temp_file().map_err(StoreError::Place)?;
        let mut hasher = Hasher::new();
        let mut size = 0u64;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = input.read(&mut buffer).map_err(io_err(source))?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            temp.file()
                .write_all(&buffer[..read])
                .map_err(io_err(cas.path()))?;
            size += read as u64;
        }
        let digest = hasher.finish();
        // The output itself too: the flush at the end of a large run would wait for it.
        write_back_early(input);
        self.publish_blob(&cas, temp, &digest, size)?;
        Ok((digest, size))
    }

    /// Stores the output a task has just written at `source`, opened by the caller (`input`,
    /// never through a link it did not find there: [`crate::files::Found::open_to_read`]),
    /// whose stat the caller took (`before`) after the task ended. When `may_link` (the engine
    /// removed the task's old outputs before it ran, so this file is new and no later run
    /// writes into it), the file becomes its own blob: it is hashed, then hard-linked into the
    /// CAS ([`Dir::link_open_file`]), so nothing is copied nor written twice (a cold build's
    /// outputs were written once by their tasks and once more into the CAS).
    ///
    /// The link is made only for a regular file with no other name, readable by all and
    /// writable by its owner only (as a copied blob is), that did not change while it was
    /// hashed (same stat before, after the read and after the link; else the link is undone).
    /// Anything else, and every failure to link (another file system, no `/proc`), falls back
    /// to the copy of [`Store::put_file`]. A blob that shares its file with the work tree is
    /// damaged if someone later writes into that file in place; that costs a miss, never a
    /// wrong output, since every read of a blob verifies its digest (restores, replays,
    /// uploads) and a damaged blob is removed.
    ///
    /// Returns the file's stat as it now is (the link changes its ctime; the stat cache must
    /// record this one, or the next run would hash the output again).
    pub fn put_output(
        &self,
        mut input: File,
        source: &Path,
        before: FileStat,
        may_link: bool,
    ) -> Result<StoredOutput, StoreError> {
        let copied = |input: &mut File| -> Result<StoredOutput, StoreError> {
            input.rewind().map_err(io_err(source))?;
            let (digest, size) = self.copy_in(input, source)?;
            Ok(StoredOutput {
                digest,
                size,
                stat: before,
                linked: false,
            })
        };
        let single = |input: &File| -> io::Result<bool> {
            let stat = rustix::fs::fstat(input)?;
            let regular = rustix::fs::FileType::from_raw_mode(stat.st_mode)
                == rustix::fs::FileType::RegularFile;
            // Readable by all and writable by its owner only, as a copied blob is (0644): a
            // cache shared by several users stays readable, and no one else can damage it.
            let mode = stat.st_mode & 0o777;
            let shareable = mode & 0o444 == 0o444 && mode & 0o022 == 0;
            Ok(regular && shareable && stat.st_nlink == 1 && FileStat::from_stat(&stat) == before)
        };
        if !may_link || !single(&input).map_err(io_err(source))? {
            return copied(&mut input);
        }
        // Its stat is taken again once it is read: unchanged, or it is copied after all.
        let (digest, size, _) =
            hash_reader_expecting(&mut &input, before.size).map_err(io_err(source))?;
        let unchanged = single(&input).map_err(io_err(source))?;
        if size != before.size || !unchanged {
            // Written to while it was read: a copy keeps what it reads.
            return copied(&mut input);
        }
        let cas = self.area_created(Area::Cas)?;
        let present = StoredOutput {
            digest,
            size,
            stat: before,
            linked: false,
        };
        if durability() == Durability::EveryFile {
            // Flushed before it gets its name in the store, unless that blob is there already.
            // Otherwise no look first: the link finds a blob stored already by its name.
            if blob_present(&cas, &digest, size) {
                return Ok(present);
            }
            input.sync_data().map_err(io_err(source))?;
        }
        let name = digest.to_hex();
        match cas.link_open_file(&input, &name) {
            Ok(true) => {}
            // Stored meanwhile (another build sharing the cache).
            Ok(false) => return Ok(present),
            Err(_) => return copied(&mut input),
        }
        let linked = rustix::fs::fstat(&input)
            .map(|stat| FileStat::from_stat(&stat))
            .map_err(|e| io_err(source)(e.into()));
        let unchanged = |now: &FileStat| {
            (now.size, now.mtime_ns, now.inode) == (before.size, before.mtime_ns, before.inode)
        };
        let linked = match linked {
            Ok(stat) if unchanged(&stat) => stat,
            _ => {
                // Changed between the read and the link: the name is taken back (only if it is
                // still this file) and the bytes copied as they are now.
                let _ = cas.unlink_if_inode(&name, before.inode);
                return copied(&mut input);
            }
        };
        if durability() == Durability::EveryFile {
            rustix::fs::fsync(cas.as_fd()).map_err(|e| io_err(cas.path())(e.into()))?;
        }
        write_back_early(&input);
        self.note_published(Area::Cas, Some(digest));
        Ok(StoredOutput {
            digest,
            size,
            stat: linked,
            linked: true,
        })
    }

    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let digest = Digest::of_bytes(bytes);
        let cas = self.area_created(Area::Cas)?;
        if blob_present(&cas, &digest, bytes.len() as u64) {
            return Ok(digest);
        }
        let mut temp = cas.temp_file().map_err(StoreError::Place)?;
        temp.file().write_all(bytes).map_err(io_err(cas.path()))?;
        self.publish_blob(&cas, temp, &digest, bytes.len() as u64)?;
        Ok(digest)
    }

    /// Renames a finished temporary file to `cas/<digest>`, unless that blob is already there.
    fn publish_blob(
        &self,
        cas: &Dir,
        mut temp: crate::confine::TempFile<'_>,
        digest: &Digest,
        size: u64,
    ) -> Result<(), StoreError> {
        if blob_present(cas, digest, size) {
            return Ok(());
        }
        temp.finish(0o644).map_err(io_err(cas.path()))?;
        write_back_early(temp.file());
        temp.publish_into(cas, &digest.to_hex())
            .map_err(StoreError::Place)?;
        self.note_published(Area::Cas, Some(*digest));
        Ok(())
    }

    fn note_published(&self, area: Area, name: Option<Digest>) {
        if durability() == Durability::EndOfRun {
            let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
            published.push((area, name));
        }
    }

    /// Makes what this store published since the last call durable (the end of a run, with
    /// [`Durability::EndOfRun`]: `XBUNDLE_FSYNC=end`, the default where the system names no
    /// boot; with the others, nothing was kept to flush).
    ///
    /// Up to [`FLUSH_EACH_MAX`] files (an edit's rebuild): writeback of every such file is
    /// started at once, then each is flushed (`fdatasync`: the first flush commits the file
    /// system's journal for all of them, the others find their metadata committed), then the
    /// directories holding them (`fsync`, for the renames): a `syncfs(2)` would also wait for
    /// every other program's unwritten data on the file system (seconds, on a machine that is
    /// compiling). More files (a cold build): one `syncfs` of the store's file system, since
    /// each `fdatasync` also flushes the disk's write cache and hundreds of them cost more than
    /// one flush of everything. Returns how many files were published.
    pub fn sync_published(&self) -> io::Result<usize> {
        let published =
            std::mem::take(&mut *self.published.lock().unwrap_or_else(|e| e.into_inner()));
        if published.len() > FLUSH_EACH_MAX {
            if let Some(dir) = self.place.open().map_err(io::Error::other)? {
                crate::fsutil::sync_filesystem(dir.as_fd())?;
            }
            self.pack.take_dirty();
            return Ok(published.len());
        }
        let mut flushed = 0;
        for area in [Area::Cas, Area::Ac] {
            let names: Vec<String> = published
                .iter()
                .filter(|(of, _)| *of == area)
                .filter_map(|(_, name)| name.map(|name| name.to_hex()))
                .collect();
            // Entries appended to the pack: its two files.
            let packed = area == Area::Ac && published.iter().any(|(_, name)| name.is_none());
            if names.is_empty() && !packed {
                continue;
            }
            let Some(dir) = self.area(area).map_err(io::Error::other)? else {
                continue;
            };
            // In batches, so a run that stored many files holds a bounded number open.
            for batch in names.chunks(256) {
                let mut files = Vec::with_capacity(batch.len());
                for name in batch {
                    // Gone since (removed as corrupt by this run): nothing to flush.
                    if let Some((file, _)) = dir.open_file(name).map_err(io::Error::other)? {
                        start_writeback(&file);
                        files.push(file);
                    }
                }
                for file in &files {
                    file.sync_data()?;
                }
                flushed += files.len();
            }
            if packed {
                flushed += self.pack.sync()?;
            }
            rustix::fs::fsync(&*dir).map_err(io::Error::from)?;
        }
        Ok(flushed)
    }

    /// Opens blob `digest`, which must be a regular file of `size` bytes.
    fn open_blob(&self, digest: &Digest, size: u64) -> Result<File, StoreError> {
        let missing = || StoreError::MissingBlob { digest: *digest };
        let cas = self.area(Area::Cas)?.ok_or_else(missing)?;
        let name = digest.to_hex();
        let (file, stat) = match cas.open_file(&name) {
            Ok(Some(found)) => found,
            Ok(None) => return Err(missing()),
            Err(ConfineError::NotRegular { what, .. }) => {
                // Not something the store made: never read, removed (a link itself).
                let _ = cas.remove_file(&name);
                return Err(StoreError::Corrupt {
                    path: self.blob_path(digest),
                    problem: format!("it is {what}, not a regular file"),
                });
            }
            Err(err) => return Err(StoreError::Place(err)),
        };
        if stat.size != size {
            // Damaged, or named by a lying entry: either way not read (it may be huge), and
            // removed (a blob of the right size is stored again by the next run that makes it).
            return Err(self.bad_blob(
                digest,
                format!("it holds {} bytes, the entry says {size}", stat.size),
            ));
        }
        Ok(file)
    }

    /// Reads a whole blob of `size` bytes, verifying its digest.
    #[cfg(test)]
    pub fn get_bytes(&self, digest: &Digest, size: u64) -> Result<Vec<u8>, StoreError> {
        let mut bytes = Vec::new();
        self.stream_bytes(digest, size, &mut |chunk| bytes.extend_from_slice(chunk))?;
        Ok(bytes)
    }

    /// Passes the blob `digest` of `size` bytes to `emit` in pieces of at most 1 MiB (cut after
    /// a newline where there is one), only after all of it was read and found to match its
    /// digest; memory stays bounded whatever the size. A blob of one piece is read once; a
    /// larger one is read again from the opened file for its pieces (a blob changed in place
    /// between the two reads is reported, after the fact).
    pub fn stream_bytes(
        &self,
        digest: &Digest,
        size: u64,
        emit: &mut dyn FnMut(&[u8]),
    ) -> Result<(), StoreError> {
        let path = self.blob_path(digest);
        let mut file = self.open_blob(digest, size)?;
        if size <= CHUNK as u64 {
            // One piece (what the loop below emits for it too): read and verified once.
            let mut bytes = Vec::with_capacity(size as usize);
            let found = copy_verified(&mut file, &mut bytes, size, &|| false)
                .map_err(|err| err.into_store(&path, None))?;
            if found != *digest {
                return Err(self.damaged(digest, found));
            }
            if !bytes.is_empty() {
                emit(&bytes);
            }
            return Ok(());
        }
        let found = copy_verified(&mut file, &mut io::sink(), size, &|| false)
            .map_err(|err| err.into_store(&path, None))?;
        if found != *digest {
            return Err(self.damaged(digest, found));
        }
        file.rewind().map_err(io_err(&path))?;
        let mut hasher = Hasher::new();
        let mut buffer = vec![0u8; CHUNK];
        let mut held = 0;
        let mut input = file.take(size);
        loop {
            let read = input.read(&mut buffer[held..]).map_err(io_err(&path))?;
            hasher.update(&buffer[held..held + read]);
            held += read;
            if read == 0 || held == buffer.len() {
                let cut = if read == 0 {
                    held
                } else {
                    buffer[..held]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(held, |at| at + 1)
                };
                if cut > 0 {
                    emit(&buffer[..cut]);
                }
                buffer.copy_within(cut..held, 0);
                held -= cut;
            }
            if read == 0 && held == 0 {
                break;
            }
        }
        if hasher.finish() != *digest {
            return Err(self.bad_blob(digest, "it changed while it was read".into()));
        }
        Ok(())
    }

    /// A blob whose content is not its name: removed.
    fn damaged(&self, digest: &Digest, found: Digest) -> StoreError {
        self.bad_blob(
            digest,
            format!(
                "content does not match its digest (sha256 {})",
                found.short()
            ),
        )
    }

    /// A blob that is not what its name or the entry says: removed, and reported corrupt.
    fn bad_blob(&self, digest: &Digest, problem: String) -> StoreError {
        if let Ok(Some(cas)) = self.area(Area::Cas) {
            let _ = cas.remove_file(&digest.to_hex());
        }
        StoreError::Corrupt {
            path: self.blob_path(digest),
            problem,
        }
    }

    /// Writes the blob `file.digest` to `relative` below `root` (atomically, through
    /// [`crate::confine`]: never through a link), verifying size and digest while copying, with
    /// mode 0755 or 0644. A mismatch deletes a damaged blob and leaves the destination
    /// untouched. `cancelled` is polled between pieces of a large blob. Returns the restored
    /// file's stat.
    ///
    /// The temporary copy is made in `staging` (a directory of the engine's, emptied at the start
    /// of every run, so a build killed mid-restore leaves nothing in the work tree), or in the
    /// destination's directory when there is none or it is on another file system.
    pub fn restore_file(
        &self,
        file: &OutputFile,
        root: &Dir,
        relative: &str,
        staging: Option<&Dir>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<FileStat, StoreError> {
        let mut blob = self.open_blob(&file.digest, file.size)?;
        let blob_path = self.blob_path(&file.digest);
        let mut copy = |out: &mut File| -> Result<(), StoreError> {
            // A reflink first where the file system has them: the copy shares the blob's
            // extents and costs no data written; what it holds is read back and verified as a
            // copy would be. Any failure (no support, another file system): a plain copy.
            if file.size > 0 {
                match reflink_verified(&blob, out, file.size, cancelled) {
                    Ok(Some(found)) if found == file.digest => return Ok(()),
                    Ok(Some(found)) => return Err(self.damaged(&file.digest, found)),
                    Err(CopyError::Interrupted) => return Err(StoreError::Interrupted),
                    Ok(None) | Err(_) => {
                        out.set_len(0).map_err(io_err(&blob_path))?;
                        out.rewind().map_err(io_err(&blob_path))?;
                    }
                }
            }
            // From the start: a second attempt (in place) reads the blob again.
            blob.rewind().map_err(io_err(&blob_path))?;
            let found = copy_verified(&mut blob, out, file.size, cancelled)
                .map_err(|err| err.into_store(&blob_path, Some(relative)))?;
            if found != file.digest {
                return Err(self.damaged(&file.digest, found));
            }
            Ok(())
        };
        let in_place = |copy: &mut dyn FnMut(&mut File) -> Result<(), StoreError>| {
            root.write_file(relative, mode_of(file), |out: &mut File| copy(out))
        };
        let Some(staging) = staging else {
            return in_place(&mut copy);
        };
        let mut temp = match staging.temp_file() {
            Ok(temp) => temp,
            Err(_) => return in_place(&mut copy),
        };
        copy(temp.file())?;
        temp.finish(mode_of(file)).map_err(io_err(staging.path()))?;
        match temp.publish_into(root, relative) {
            Ok(stat) => Ok(stat),
            Err(ConfineError::Io { source, .. })
                if source.kind() == io::ErrorKind::CrossesDevices =>
            {
                in_place(&mut copy)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// The bytes of the entry [`Store::put_action`] writes for `result` under `key` (what a
    /// remote cache stores too).
    pub fn encode_action(key: &Digest, result: &ActionResult) -> Vec<u8> {
        let body = serde_json::to_vec(result).expect("action results serialize");
        let mut bytes = format!("{AC_HEADER} {key} {}\n", entry_checksum(key, &body)).into_bytes();
        bytes.extend_from_slice(&body);
        bytes
    }

    /// Decodes entry bytes from elsewhere (a remote cache) with the rules of a local read: at
    /// most [`MAX_ENTRY_BYTES`], written for exactly `key`, the checksum, the strict body.
    /// `Ok(None)`: an entry of another format (a miss). The paths are not checked here (see
    /// [`crate::guard::check_entry`]).
    pub fn decode_action(bytes: &[u8], key: &Digest) -> Result<Option<ActionResult>, String> {
        if bytes.len() as u64 > MAX_ENTRY_BYTES {
            return Err(format!(
                "{} bytes, more than any entry the store writes",
                bytes.len()
            ));
        }
        if is_other_format(bytes) {
            return Ok(None);
        }
        parse_action(bytes, Some(key)).map(Some)
    }

    /// Removes blob `digest` if it is the file `inode`: an output stored as its own blob by
    /// [`Store::put_output`] that the caller found changed, so that the blob no longer holds
    /// `digest`. Whether it was.
    pub fn remove_blob_if_file(&self, digest: &Digest, inode: u64) -> bool {
        match self.area(Area::Cas) {
            Ok(Some(cas)) => matches!(cas.unlink_if_inode(&digest.to_hex(), inode), Ok(true)),
            _ => false,
        }
    }

    /// Whether the CAS holds blob `digest` as a regular file of `size` bytes.
    pub fn has_blob(&self, digest: &Digest, size: u64) -> bool {
        matches!(self.area(Area::Cas), Ok(Some(cas)) if blob_present(&cas, digest, size))
    }

    /// Opens blob `digest` of `size` bytes for reading (for uploads); the caller verifies what
    /// it reads (see [`crate::remote`]).
    pub fn open_blob_for_upload(&self, digest: &Digest, size: u64) -> Result<File, StoreError> {
        self.open_blob(digest, size)
    }

    /// Stores blob `digest` of `size` bytes from what `fill` writes (a download): the bytes go
    /// to a temporary file, hashed on the way, and more than `size` of them is refused as it
    /// comes; the blob is published only if exactly `size` bytes with that digest arrived.
    /// Anything else leaves nothing in the store. `fill` answers `Ok(false)` when the source
    /// does not have the blob.
    pub fn put_blob_from<E>(
        &self,
        digest: &Digest,
        size: u64,
        fill: impl FnOnce(&mut dyn Write) -> Result<bool, E>,
    ) -> Result<bool, BlobFetchError<E>> {
        let cas = self
            .area_created(Area::Cas)
            .map_err(BlobFetchError::Store)?;
        if blob_present(&cas, digest, size) {
            return Ok(true);
        }
        let mut temp = cas
            .temp_file()
            .map_err(|err| BlobFetchError::Store(StoreError::Place(err)))?;
        let mut out = BoundedWriter {
            out: temp.file(),
            hasher: Hasher::new(),
            written: 0,
            limit: size,
        };
        let found = fill(&mut out);
        let (written, found_digest) = (out.written, out.hasher.finish());
        if written > size {
            return Err(BlobFetchError::Mismatch(format!(
                "blob {} has more than the {size} bytes the entry says",
                digest.short()
            )));
        }
        match found {
            Ok(false) => return Ok(false),
            Ok(true) => {}
            Err(err) => return Err(BlobFetchError::Source(err)),
        }
        if written != size {
            return Err(BlobFetchError::Mismatch(format!(
                "blob {} has {written} bytes, the entry says {size}",
                digest.short()
            )));
        }
        if found_digest != *digest {
            return Err(BlobFetchError::Mismatch(format!(
                "blob {} does not match its digest (its bytes hash to {})",
                digest.short(),
                found_digest.short()
            )));
        }
        self.publish_blob(&cas, temp, digest, size)
            .map_err(BlobFetchError::Store)?;
        Ok(true)
    }

    /// Stores an action result under `key`. Call only after all its blobs are stored.
    ///
    /// It is appended to the pack (the `acpack` module); where the pack cannot be appended to (a
    /// link or a file with another name at its place, an oversized index), it is written to a
    /// file of its own, `ac/<key>`, as earlier versions did.
    pub fn put_action(&self, key: &Digest, result: &ActionResult) -> Result<(), StoreError> {
        let bytes = Store::encode_action(key, result);
        if bytes.len() as u64 > MAX_ENTRY_BYTES {
            return Err(StoreError::Io {
                path: self.root().join("ac"),
                source: io::Error::other(format!(
                    "the entry of key {} has {} bytes, more than any entry the store reads",
                    key.short(),
                    bytes.len()
                )),
            });
        }
        match self.pack.append(key, &bytes) {
            Ok(true) => {
                self.note_published(Area::Ac, None);
                return Ok(());
            }
            Ok(false) => {}
            Err(source) => {
                return Err(StoreError::Io {
                    path: self.root().join("ac"),
                    source,
                });
            }
        }
        let ac = self.area_created(Area::Ac)?;
        let path = self.action_path(key);
        ac.write_file(&key.to_hex(), 0o644, |out: &mut File| {
            out.write_all(&bytes).map_err(io_err(&path))?;
            write_back_early(out);
            Ok::<(), StoreError>(())
        })?;
        self.note_published(Area::Ac, Some(*key));
        Ok(())
    }

    /// Looks up the action result for `key`: in a file of its own (`ac/<key>`, as earlier
    /// versions wrote them), then in the pack. A corrupt entry is removed (forgotten by the
    /// index) and reported.
    pub fn get_action(&self, key: &Digest) -> Result<Option<ActionResult>, StoreError> {
        let Some(ac) = self.area(Area::Ac)? else {
            return Ok(None);
        };
        // A file of its own first: one exists only where the pack could not be appended to (or
        // from an earlier version), and the pack's entry for the key may then be one that could
        // not be forgotten.
        if let Some(result) = self.get_own_file(&ac, key)? {
            return Ok(Some(result));
        }
        match self.pack.get(key) {
            Ok(Some((bytes, slot))) => {
                if is_other_format(&bytes) {
                    return Ok(None);
                }
                match parse_action(&bytes, Some(key)) {
                    Ok(result) => {
                        self.pack.mark_used(key, &slot);
                        Ok(Some(result))
                    }
                    Err(problem) => Err(self.packed_corrupt(key, slot.pack, problem)),
                }
            }
            Ok(None) => Ok(None),
            Err(PackError::Corrupt(pack, problem)) => Err(self.packed_corrupt(key, pack, problem)),
            Err(PackError::Io(source)) => Err(StoreError::Io {
                path: self.root().join("ac"),
                source,
            }),
        }
    }

    /// The entry of `key` in a file of its own, `ac/<key>`; `Ok(None)` when there is none, or
    /// it is of another version (a plain miss, replaced on the next store).
    fn get_own_file(&self, ac: &Dir, key: &Digest) -> Result<Option<ActionResult>, StoreError> {
        // The path only for messages: made when one is (most lookups find no file here).
        let path = || self.action_path(key);
        let name = key.to_hex();
        let corrupt = |problem: String| {
            let _ = ac.remove_file(&name);
            StoreError::Corrupt {
                path: path(),
                problem,
            }
        };
        let (file, stat) = match ac.open_file(&name) {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(None),
            Err(ConfineError::NotRegular { what, .. }) => {
                return Err(corrupt(format!("it is {what}, not a regular file")));
            }
            Err(err) => return Err(StoreError::Place(err)),
        };
        if stat.size > MAX_ENTRY_BYTES {
            return Err(corrupt(format!(
                "{} bytes, more than any entry the store writes",
                stat.size
            )));
        }
        let mut bytes = Vec::with_capacity(stat.size as usize);
        (&file)
            .take(MAX_ENTRY_BYTES)
            .read_to_end(&mut bytes)
            .map_err(io_err(&path()))?;
        if is_other_format(&bytes) {
            return Ok(None);
        }
        match parse_action(&bytes, Some(key)) {
            Ok(result) => {
                mark_used(&file, &stat);
                Ok(Some(result))
            }
            Err(problem) => Err(corrupt(problem)),
        }
    }

    /// Forgets the action cache's index and the files it kept open (a new run: `gc` or `clean`
    /// may have rewritten or removed them since the last one).
    pub fn forget_handles(&self) {
        self.pack.reset();
    }

    /// The error for the corrupt entry of `key` in pack `pack`, which the index forgets.
    fn packed_corrupt(&self, key: &Digest, pack: u32, problem: String) -> StoreError {
        self.pack.forget(key);
        StoreError::Corrupt {
            path: self.root().join("ac").join(acpack::pack_name(pack)),
            problem: format!("the entry for key {}: {problem}", key.short()),
        }
    }

    /// Forgets the entry of `key` (found unusable): in the pack and in a file of its own.
    pub fn remove_action(&self, key: &Digest) {
        self.pack.forget(key);
        if let Ok(Some(ac)) = self.area(Area::Ac) {
            let _ = ac.remove_file(&key.to_hex());
        }
    }

    /// Counts and sizes of what the store holds.
    pub fn stats(&self) -> io::Result<StoreStats> {
        let mut stats = StoreStats::default();
        let ac = self.list(Area::Ac, false)?;
        for listed in &ac.files {
            stats.actions += 1;
            stats.action_bytes += listed.size;
        }
        // The pack: its live entries, and the bytes of its files (superseded records included,
        // until `gc` or `verify` rewrites it).
        if let Some(dir) = &ac.dir {
            for (_, size) in Pack::files(dir)?.0 {
                stats.action_bytes += size;
            }
            // A key both in a file of its own and in the pack is one entry.
            let own: HashSet<Digest> = ac.files.iter().filter_map(Listed::digest).collect();
            stats.actions += self
                .pack
                .live()?
                .iter()
                .filter(|(key, _)| !own.contains(key))
                .count() as u64;
        }
        for listed in self.list(Area::Cas, false)?.files {
            stats.blobs += 1;
            stats.blob_bytes += listed.size;
        }
        Ok(stats)
    }

    /// Checks every action result and blob; removes what is corrupt or unsafe (and what sits at
    /// a store name without being a regular file: a link is removed itself). `check` judges
    /// each readable action result as untrusted input (see [`crate::guard::check_entry`]);
    /// what it refuses is reported and removed like a corrupt entry.
    ///
    /// Call with the store locked exclusively ([`Store::lock`]).
    pub fn verify(
        &self,
        check: &dyn Fn(&ActionResult) -> Result<(), String>,
    ) -> io::Result<VerifyReport> {
        let mut report = VerifyReport::default();
        for area in [Area::Cas, Area::Ac] {
            let mut listing = self.list(area, true)?;
            if area == Area::Ac
                && let Some(dir) = &listing.dir
            {
                for (name, kind) in Pack::files(dir)?.1 {
                    listing.odd.push((name, kind_what(kind)));
                }
            }
            for (relative, what) in &listing.odd {
                remove_in(&listing.dir, relative)?;
                report.problems.push(format!(
                    "{} {} is {what}, not a regular file; removed",
                    match area {
                        Area::Cas => "blob",
                        Area::Ac => "action entry",
                    },
                    self.root().join(area.name()).join(relative).display(),
                ));
            }
        }
        let cas = self.list(Area::Cas, false)?;
        for listed in &cas.files {
            report.blobs_checked += 1;
            let path = self.root().join("cas").join(&listed.relative);
            let Some(dir) = &cas.dir else { break };
            let ok = match (listed.digest(), dir.open_file(&listed.relative)) {
                (Some(expected), Ok(Some((mut file, stat)))) => {
                    copy_verified(&mut file, &mut io::sink(), stat.size, &|| false)
                        .map_err(|err| err.into_store(&path, None))
                        .is_ok_and(|found| found == expected)
                }
                // Removed since it was listed.
                (_, Ok(None)) => continue,
                _ => false,
            };
            if !ok {
                remove_in(&cas.dir, &listed.relative)?;
                report.problems.push(format!(
                    "blob {} does not match its digest; removed",
                    path.display()
                ));
            }
        }
        let ac = self.list(Area::Ac, false)?;
        for listed in &ac.files {
            report.actions_checked += 1;
            let path = self.root().join("ac").join(&listed.relative);
            let Some(dir) = &ac.dir else { break };
            let problem = match dir.read_file(&listed.relative, MAX_ENTRY_BYTES) {
                Ok(None) => continue,
                // Another version's entry: never read by this one (a plain miss), left alone.
                Ok(Some(bytes)) if is_other_format(&bytes) => continue,
                Ok(Some(bytes)) => {
                    entry_problem(&bytes, listed.digest().as_ref(), check, cas.dir.as_deref())
                }
                Err(err) => Some(err.to_string()),
            };
            if let Some(problem) = problem {
                remove_in(&ac.dir, &listed.relative)?;
                report.problems.push(format!(
                    "action entry {} is unusable ({problem}); removed",
                    path.display()
                ));
            }
        }
        // The pack's entries, then the pack rewritten with only the usable ones.
        if ac.dir.is_some() {
            let mut kept = Vec::new();
            for (key, slot) in self.pack.live()? {
                report.actions_checked += 1;
                let problem = match self.pack.read(&slot) {
                    Ok(bytes) if is_other_format(&bytes) => None,
                    Ok(bytes) => entry_problem(&bytes, Some(&key), check, cas.dir.as_deref()),
                    Err(PackError::Corrupt(_, problem)) => Some(problem),
                    // Not read: nothing is judged, nothing removed.
                    Err(PackError::Io(err)) => return Err(err),
                };
                match problem {
                    None => kept.push((key, slot)),
                    Some(problem) => report.problems.push(format!(
                        "action entry {key} in {} is unusable ({problem}); removed",
                        self.root()
                            .join("ac")
                            .join(acpack::pack_name(slot.pack))
                            .display()
                    )),
                }
            }
            self.pack.rewrite(&kept)?;
        }
        Ok(report)
    }

    /// Removes everything the store created, and nothing else: `cas/<sha256>` blobs,
    /// `ac/<key>` entries, the same in the two-hex-digit shard directories of earlier versions
    /// (removed once empty), the store's temporary files (`.tmp-xbundle-*`), then `cas/` and `ac/` if
    /// nothing else is left in them. The cache directory itself, its lock file and any other
    /// file or directory in it stay. Returns how many files were removed.
    ///
    /// Call with the store locked exclusively ([`Store::lock`]).
    pub fn clean(&self) -> io::Result<u64> {
        let mut removed = 0;
        for area in [Area::Cas, Area::Ac] {
            let listing = self.list(area, false)?;
            let Some(dir) = &listing.dir else { continue };
            for listed in &listing.files {
                remove_in(&listing.dir, &listed.relative)?;
                removed += 1;
            }
            if area == Area::Ac {
                removed += remove_own_files(dir, &acpack::is_own_name)?;
                self.pack.reset();
            }
            removed += remove_own_files(dir, &is_temp_name)?;
            for (name, kind) in dir.entries().map_err(io::Error::other)? {
                let Ok(name) = String::from_utf8(name) else {
                    continue;
                };
                if kind == Kind::Dir && is_shard_name(&name) {
                    if let Some(shard) = dir.open_dir(&name).map_err(io::Error::other)? {
                        removed += remove_own_files(&shard, &is_temp_name)?;
                    }
                    dir.remove_empty_dir(&name).map_err(io::Error::other)?;
                }
            }
            if let Some(cache) = self.place.open().map_err(io::Error::other)? {
                cache
                    .remove_empty_dir(area.name())
                    .map_err(io::Error::other)?;
            }
            self.area_place(area).forget();
        }
        Ok(removed)
    }

    /// The store's lock file (`<cache>/lock`): builds hold it shared for their whole run,
    /// `gc`, `verify` and `clean` exclusively, so maintenance never removes a blob that a build
    /// in any workspace sharing this cache is writing or restoring.
    pub fn lock_path(&self) -> PathBuf {
        self.root().join("lock")
    }

    /// Takes the store's lock (see [`Store::lock_path`]), calling `on_wait` once if another
    /// process holds it in a conflicting mode, and polling `cancelled` while waiting.
    pub fn lock(
        &self,
        mode: LockMode,
        on_wait: impl FnOnce(),
        cancelled: &dyn Fn() -> bool,
    ) -> io::Result<FileLock> {
        let dir = self.place.create().map_err(io::Error::other)?;
        FileLock::acquire_in(&dir, "lock", mode, on_wait, cancelled)
    }

    /// Evicts least recently used action results until the store fits in `max_bytes`, then
    /// removes blobs no remaining action result names, and stray temporary files. Only files the
    /// store created are ever removed (see [`Store::clean`]).
    ///
    /// Call with the store locked exclusively ([`Store::lock`]): a blob that a build is writing
    /// is named by no action result yet, and would otherwise be removed under it.
    pub fn gc(&self, max_bytes: u64) -> io::Result<GcReport> {
        let listing = self.list(Area::Ac, true)?;
        /// An entry: a file of its own (by its place in the listing) or in the pack.
        enum Held {
            Own(usize),
            Packed(Digest, acpack::Slot),
        }
        let mut actions: Vec<(SystemTime, Held)> = listing
            .files
            .iter()
            .enumerate()
            .map(|(at, listed)| (listed.modified, Held::Own(at)))
            .collect();
        let packed = if listing.dir.is_some() {
            self.pack.live()?
        } else {
            Vec::new()
        };
        actions.extend(packed.iter().map(|(key, slot)| {
            (
                UNIX_EPOCH + Duration::from_secs(u64::from(slot.used)),
                Held::Packed(*key, *slot),
            )
        }));
        // Newest first.
        actions.sort_by_key(|(used, _)| std::cmp::Reverse(*used));
        let mut kept_blobs: HashSet<Digest> = HashSet::new();
        let mut kept_packed = Vec::new();
        let mut total = 0u64;
        let mut report = GcReport::default();
        for (_, held) in actions {
            let (bytes, size, key) = match &held {
                Held::Own(at) => {
                    let listed = &listing.files[*at];
                    let bytes = listing
                        .dir
                        .as_ref()
                        .and_then(|dir| dir.read_file(&listed.relative, MAX_ENTRY_BYTES).ok())
                        .flatten();
                    (bytes, listed.size, listed.digest())
                }
                Held::Packed(key, slot) => match self.pack.read(slot) {
                    Ok(bytes) => (
                        Some(bytes),
                        u64::from(slot.len) + 1 + acpack::LINE as u64,
                        Some(*key),
                    ),
                    Err(PackError::Corrupt(..)) => (None, 0, Some(*key)),
                    // Not read: nothing is judged, nothing removed.
                    Err(PackError::Io(err)) => return Err(err),
                },
            };
            let result = bytes.and_then(|bytes| parse_action(&bytes, key.as_ref()).ok());
            // An unreadable entry is removed; a readable one is kept while it fits.
            let with_size = result.map(|result| {
                let new_bytes = size
                    + result
                        .blobs()
                        .filter(|(digest, _)| !kept_blobs.contains(digest))
                        .map(|(_, size)| size)
                        .sum::<u64>();
                (result, new_bytes)
            });
            match with_size {
                Some((result, new_bytes)) if total + new_bytes <= max_bytes => {
                    total += new_bytes;
                    kept_blobs.extend(result.blobs().map(|(digest, _)| digest));
                    report.kept_actions += 1;
                    if let Held::Packed(key, slot) = held {
                        kept_packed.push((key, slot));
                    }
                }
                _ => {
                    if let Held::Own(at) = held {
                        remove_in(&listing.dir, &listing.files[at].relative)?;
                        report.freed_bytes += size;
                    }
                    report.removed_actions += 1;
                }
            }
        }
        if listing.dir.is_some() {
            // In the pack's order, which the rewrite keeps; what it frees is what its files
            // shrink by (superseded records and lines too).
            kept_packed.sort_by_key(|(_, slot): &(Digest, acpack::Slot)| (slot.pack, slot.offset));
            let (before, after) = self.pack.rewrite(&kept_packed)?;
            report.freed_bytes += before.saturating_sub(after);
        }
        let cas = self.list(Area::Cas, true)?;
        for listed in &cas.files {
            let keep = listed.digest().is_some_and(|d| kept_blobs.contains(&d));
            if !keep {
                remove_in(&cas.dir, &listed.relative)?;
                report.removed_blobs += 1;
                report.freed_bytes += listed.size;
            }
        }
        report.kept_bytes = total;
        Ok(report)
    }

    /// Every file the store created in `area` (`<64 hex>`, and `<2 hex>/<64 hex>` of the
    /// sharded layout of earlier versions, so `gc` and `verify` still see and clean such
    /// entries), with size and mtime; also what sits at such a name without being a regular file
    /// (`odd`). Other names and other directories are never listed: they are not the store's.
    /// Temporary files are skipped, and removed when `remove_stale_temp` and older than
    /// [`STALE_TEMP`]. An area that is missing (or not a directory reached without a link)
    /// holds nothing of the store's.
    fn list(&self, area: Area, remove_stale_temp: bool) -> io::Result<Listing> {
        let mut listing = Listing {
            dir: None,
            files: Vec::new(),
            odd: Vec::new(),
        };
        let dir = match self.area(area) {
            Ok(Some(dir)) => dir,
            Ok(None) | Err(StoreError::Place(_)) => return Ok(listing),
            Err(err) => return Err(io::Error::other(err)),
        };
        list_into(&dir, "", remove_stale_temp, true, &mut listing)?;
        listing.dir = Some(dir);
        Ok(listing)
    }
}

/// What [`Store::list`] found in an area.
struct Listing {
    /// The area, when it exists.
    dir: Option<Arc<Dir>>,
    files: Vec<Listed>,
    /// Relative paths at store names that are not regular files, and what they are.
    odd: Vec<(String, &'static str)>,
}

struct Listed {
    /// Relative to the area: `<hex>` or `<2 hex>/<hex>`.
    relative: String,
    size: u64,
    modified: SystemTime,
}

impl Listed {
    /// The digest its name gives (a blob's content, an entry's key).
    fn digest(&self) -> Option<Digest> {
        Digest::from_hex(self.relative.rsplit('/').next().unwrap_or_default())
    }
}

fn list_into(
    dir: &Dir,
    prefix: &str,
    remove_stale_temp: bool,
    descend: bool,
    listing: &mut Listing,
) -> io::Result<()> {
    for (name, kind) in dir.entries().map_err(io::Error::other)? {
        let Ok(name) = String::from_utf8(name) else {
            continue;
        };
        let relative = format!("{prefix}{name}");
        if kind == Kind::Dir {
            if descend
                && is_shard_name(&name)
                && let Some(shard) = dir.open_dir(&name).map_err(io::Error::other)?
            {
                list_into(
                    &shard,
                    &format!("{name}/"),
                    remove_stale_temp,
                    false,
                    listing,
                )?;
            }
            continue;
        }
        if is_temp_name(&name) {
            if remove_stale_temp && kind == Kind::File {
                let stale = dir.lstat(&name).ok().flatten().is_some_and(|(_, stat)| {
                    SystemTime::now()
                        .duration_since(modified(&stat))
                        .is_ok_and(|age| age > STALE_TEMP)
                });
                if stale {
                    let _ = dir.remove_file(&name);
                }
            }
            continue;
        }
        if !is_store_name(&name) {
            continue;
        }
        if kind != Kind::File {
            listing.odd.push((relative, kind_what(kind)));
            continue;
        }
        match dir.lstat(&name).map_err(io::Error::other)? {
            Some((Kind::File, stat)) => listing.files.push(Listed {
                relative,
                size: stat.size,
                modified: modified(&stat),
            }),
            // Renamed or removed by a concurrent build since the directory was read.
            _ => continue,
        }
    }
    Ok(())
}

/// What a [`Kind`] other than a regular file is, in words.
fn kind_what(kind: Kind) -> &'static str {
    match kind {
        Kind::Symlink => "a symbolic link",
        Kind::Dir => "a directory",
        _ => "a FIFO, socket or device",
    }
}

/// Removes `relative` from the listed area.
fn remove_in(dir: &Option<Arc<Dir>>, relative: &str) -> io::Result<()> {
    if let Some(dir) = dir {
        dir.remove_file(relative).map_err(io::Error::other)?;
    }
    Ok(())
}

fn modified(stat: &FileStat) -> SystemTime {
    u64::try_from(stat.mtime_ns).map_or(UNIX_EPOCH, |ns| UNIX_EPOCH + Duration::from_nanos(ns))
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
    bytes.starts_with(b"xbundle-ac-v")
        && !AC_HEADERS_READ
            .iter()
            .any(|header| bytes.starts_with(format!("{header} ").as_bytes()))
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
    if !fields
        .next()
        .is_some_and(|tag| AC_HEADERS_READ.contains(&tag))
    {
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

/// Why the action entry `bytes`, found under `key`, is unusable: corrupt, refused by `check`,
/// or naming a blob that `cas` does not hold intact.
fn entry_problem(
    bytes: &[u8],
    key: Option<&Digest>,
    check: &dyn Fn(&ActionResult) -> Result<(), String>,
    cas: Option<&Dir>,
) -> Option<String> {
    let result = match parse_action(bytes, key) {
        Ok(result) => result,
        Err(problem) => return Some(problem),
    };
    check(&result).err().or_else(|| {
        result
            .blobs()
            .find(|(digest, size)| !cas.is_some_and(|cas| blob_present(cas, digest, *size)))
            .map(|(digest, _)| format!("names missing or damaged blob {}", digest.short()))
    })
}

/// The only modes a restored file gets.
fn mode_of(file: &OutputFile) -> u32 {
    if file.executable { 0o755 } else { 0o644 }
}

/// Whether `cas/<digest>` is a regular file of `size` bytes (never following a link).
fn blob_present(cas: &Dir, digest: &Digest, size: u64) -> bool {
    matches!(cas.lstat(&digest.to_hex()), Ok(Some((Kind::File, stat))) if stat.size == size)
}

/// Marks an action result as recently used (for `gc`), at most once an hour, on the already
/// open entry (`futimens`; it fails harmlessly on an entry of another user).
fn mark_used(open: &File, stat: &FileStat) {
    let now = SystemTime::now();
    let stale = now
        .duration_since(modified(stat))
        .is_ok_and(|age| age > Duration::from_secs(3600));
    if stale {
        let _ = open.set_modified(now);
    }
}

/// Why [`copy_verified`] stopped.
enum CopyError {
    Read(io::Error),
    Write(io::Error),
    /// The blob ended before `size` bytes.
    Short(u64),
    Interrupted,
}

impl CopyError {
    fn into_store(self, blob: &Path, destination: Option<&str>) -> StoreError {
        match self {
            CopyError::Short(read) => StoreError::Corrupt {
                path: blob.to_path_buf(),
                problem: format!("it ended after {read} bytes"),
            },
            CopyError::Read(source) => StoreError::Io {
                path: blob.to_path_buf(),
                source,
            },
            CopyError::Write(source) => StoreError::Io {
                path: destination.map_or_else(|| blob.to_path_buf(), PathBuf::from),
                source,
            },
            CopyError::Interrupted => StoreError::Interrupted,
        }
    }
}

/// Copies exactly `size` bytes of `input` to `out` (nothing beyond: a blob that grew is not
/// read further), hashing them, polling `cancelled` between pieces. Returns their digest.
fn copy_verified(
    input: &mut File,
    out: &mut dyn Write,
    size: u64,
    cancelled: &dyn Fn() -> bool,
) -> Result<Digest, CopyError> {
    let mut hasher = Hasher::new();
    let mut buffer = vec![0u8; (size as usize).clamp(1, CHUNK)];
    let mut left = size;
    while left > 0 {
        if cancelled() {
            return Err(CopyError::Interrupted);
        }
        let want = buffer
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        let read = input.read(&mut buffer[..want]).map_err(CopyError::Read)?;
        if read == 0 {
            return Err(CopyError::Short(size - left));
        }
        hasher.update(&buffer[..read]);
        out.write_all(&buffer[..read]).map_err(CopyError::Write)?;
        left -= read as u64;
    }
    Ok(hasher.finish())
}

/// Clones `blob` into `out` (`FICLONE`) and reads the clone back, hashing it: the digest of what
/// `out` now holds, or `None` when the file system cannot clone (then `out` is untouched, or
/// is emptied by the caller). The clone is read through `/proc/self/fd` (`out` is write-only).
#[cfg(target_os = "linux")]
fn reflink_verified(
    blob: &File,
    out: &File,
    size: u64,
    cancelled: &dyn Fn() -> bool,
) -> Result<Option<Digest>, CopyError> {
    use std::os::fd::AsRawFd;
    if rustix::fs::ioctl_ficlone(out, blob).is_err() {
        return Ok(None);
    }
    let Ok(mut clone) = File::open(format!("/proc/self/fd/{}", out.as_raw_fd())) else {
        return Ok(None);
    };
    copy_verified(&mut clone, &mut io::sink(), size, cancelled).map(Some)
}

#[cfg(not(target_os = "linux"))]
fn reflink_verified(
    _: &File,
    _: &File,
    _: u64,
    _: &dyn Fn() -> bool,
) -> Result<Option<Digest>, CopyError> {
    Ok(None)
}

/// Whether this file system clones files (`FICLONE`) in `dir`: for reports and tests.
#[cfg(test)]
pub fn reflinks_supported(dir: &Path) -> bool {
    let Ok(temp) = tempfile::tempdir_in(dir) else {
        return false;
    };
    let source = temp.path().join("a");
    if std::fs::write(&source, b"reflink probe").is_err() {
        return false;
    }
    let (Ok(source), Ok(target)) = (File::open(&source), File::create(temp.path().join("b")))
    else {
        return false;
    };
    #[cfg(target_os = "linux")]
    {
        rustix::fs::ioctl_ficlone(&target, &source).is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (source, target);
        false
    }
}

/// The store as actions see it ([`crate::task::BlobStore`]): reads through [`Dir::open_file`]
/// (no link, regular files only) verified against the digest while reading; puts copied into
/// a temporary file, re-hashed, and published under the digest only if it matches.
impl crate::task::BlobStore for Store {
    fn open(&self, digest: &Digest) -> io::Result<Option<Box<dyn Read + Send>>> {
        let Some(cas) = self.area(Area::Cas).map_err(io::Error::other)? else {
            return Ok(None);
        };
        let name = digest.to_hex();
        match cas.open_file(&name) {
            Ok(None) => Ok(None),
            Ok(Some((file, stat))) => Ok(Some(Box::new(VerifiedBlob {
                file: file.take(stat.size),
                size: stat.size,
                read: 0,
                hasher: Some(Hasher::new()),
                expected: *digest,
                cas,
            }))),
            Err(ConfineError::NotRegular { .. }) => {
                // Not something the store made: removed (a link itself), and not there.
                let _ = cas.remove_file(&name);
                Ok(None)
            }
            Err(err) => Err(io::Error::other(err)),
        }
    }

    fn put(&self, path: &Path, digest: &Digest) -> io::Result<()> {
        let mut input = File::open(path)?;
        let cas = self.area_created(Area::Cas).map_err(io::Error::other)?;
        let mut temp = cas.temp_file().map_err(io::Error::other)?;
        let mut hasher = Hasher::new();
        let mut size = 0u64;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = match input.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            hasher.update(&buffer[..read]);
            temp.file().write_all(&buffer[..read])?;
            size += read as u64;
        }
        let found = hasher.finish();
        if found != *digest {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} has sha256 {found}, not the expected {digest}; not stored",
                    path.display()
                ),
            ));
        }
        self.publish_blob(&cas, temp, digest, size)
            .map_err(io::Error::other)
    }
}

/// A blob being read by an action: at most its size at open, hashed on the way; the end of
/// the data is an error if it does not match the digest (and the damaged blob is removed).
struct VerifiedBlob {
    file: io::Take<File>,
    size: u64,
    read: u64,
    hasher: Option<Hasher>,
    expected: Digest,
    cas: Arc<Dir>,
}

impl Read for VerifiedBlob {
    /// The digest is checked by the read that reaches the blob's size (or the end of a file
    /// shorter than it), before that read's bytes are given: a reader that takes exactly the
    /// size it was told (`read_exact`, `take(size)`) never gets a damaged blob whole.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let read = self.file.read(buf)?;
        self.read += read as u64;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..read]);
        }
        if read > 0 && self.read < self.size {
            return Ok(read);
        }
        let Some(hasher) = self.hasher.take() else {
            return Ok(read);
        };
        let found = hasher.finish();
        if self.read != self.size || found != self.expected {
            let _ = self.cas.remove_file(&self.expected.to_hex());
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "cache blob {} is damaged ({} of {} bytes, sha256 {}); it was removed",
                    self.expected.short(),
                    self.read,
                    self.size,
                    found.short()
                ),
            ));
        }
        Ok(read)
    }
}

/// Temporary files older than this are leftovers of a killed process: `gc` and `verify` remove
/// them. Younger ones may belong to a process of an earlier version that does not take the store
/// lock, so nothing else touches them (`clean` removes them all).
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// With [`Durability::EndOfRun`], starts writing `file` to disk now, in the
/// background, as the store publishes it: the flush at the end of the run (after a large build,
/// a `syncfs` that waits for every unwritten byte of the file system) then finds it written
/// instead of writing everything at once. At 1000 tasks of 100 inputs, that flush went from
/// 280-400 ms to about 20 ms, and the cold build from about 3.98 s to 3.7 s.
pub(crate) fn write_back_early(file: &File) {
    if durability() == Durability::EndOfRun {
        start_writeback(file);
    }
}

/// Starts writing `file`'s dirty pages back without waiting for them (Linux; elsewhere the
/// flush that follows does it all).
pub(crate) fn start_writeback(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: sync_file_range on a descriptor `file` owns; no memory is passed. A failure
        // only means the later fdatasync does the work.
        unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// A name the store gives its files: 64 lowercase hex digits.
fn is_store_name(name: &str) -> bool {
    is_lower_hex(name, 64)
}

/// A shard directory name of earlier versions: two lowercase hex digits.
fn is_shard_name(name: &str) -> bool {
    is_lower_hex(name, 2)
}

pub(crate) fn is_lower_hex(name: &str, len: usize) -> bool {
    name.len() == len && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Removes the regular files (not links, not directories) directly in `dir` whose names `own`
/// accepts; returns how many.
pub(crate) fn remove_own_files(dir: &Dir, own: &dyn Fn(&str) -> bool) -> io::Result<u64> {
    let mut removed = 0;
    for (name, kind) in dir.entries().map_err(io::Error::other)? {
        let Ok(name) = String::from_utf8(name) else {
            continue;
        };
        if kind == Kind::File && own(&name) && dir.remove_file(&name).map_err(io::Error::other)? {
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_damaged_blob_read_up_to_its_size_is_an_error_never_its_bytes() {
        use crate::task::BlobStore;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("cache"));
        let digest = store.put_bytes(b"asset bytes").unwrap();
        let intact = |reader: &mut dyn Read| {
            let mut bytes = Vec::new();
            reader.take(11).read_to_end(&mut bytes).map(|_| bytes)
        };
        let mut reader = BlobStore::open(&store, &digest).unwrap().unwrap();
        assert_eq!(intact(&mut reader).unwrap(), b"asset bytes");
        // Torn as a power cut may leave it: the same size, other bytes. A reader that takes
        // exactly the size (a remote executor's upload) never reads past the end.
        fs::write(store.blob_path(&digest), b"asset BYTES").unwrap();
        let mut reader = BlobStore::open(&store, &digest).unwrap().unwrap();
        let err = intact(&mut reader).unwrap_err();
        assert!(err.to_string().contains("is damaged"), "{err}");
        assert!(
            !store.blob_path(&digest).exists(),
            "a damaged blob is removed"
        );
        fs::write(store.blob_path(&digest), b"asset BYTES").unwrap();
        let mut reader = BlobStore::open(&store, &digest).unwrap().unwrap();
        assert!(reader.read_exact(&mut [0u8; 11]).is_err());
    }

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
            discovered: None,
        }
    }

    /// Names of everything in `cas/` (temporary files included).
    fn cas_names(store: &Store) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(store.root().join("cas"))
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// `put_output` of a file written with `content` and `mode`, after `prepare` (a second
    /// name, say); the file's link count afterwards.
    fn put_output_of(
        store: &Store,
        dir: &Path,
        name: &str,
        mode: u32,
        prepare: &dyn Fn(&Path),
    ) -> (StoredOutput, u64) {
        use std::os::unix::fs::MetadataExt;
        let file = dir.join(name);
        fs::write(&file, name.as_bytes()).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
        prepare(&file);
        let before = FileStat::of(&fs::metadata(&file).unwrap());
        let stored = store
            .put_output(File::open(&file).unwrap(), &file, before, true)
            .unwrap();
        assert_eq!(stored.digest, Digest::of_bytes(name.as_bytes()));
        assert_eq!(
            store.get_bytes(&stored.digest, stored.size).unwrap(),
            name.as_bytes()
        );
        (stored, fs::metadata(&file).unwrap().nlink())
    }

    #[test]
    fn new_outputs_are_linked_as_their_blobs_and_anything_doubtful_is_copied() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("cache"));
        let none = |_: &Path| {};

        let (stored, links) = put_output_of(&store, dir.path(), "plain", 0o644, &none);
        assert!(stored.linked);
        assert_eq!(links, 2);
        let blob = store.blob_path(&stored.digest);
        assert_eq!(
            fs::metadata(&blob).unwrap().ino(),
            fs::metadata(dir.path().join("plain")).unwrap().ino()
        );
        // The stat given back is the file's now (the link changed its ctime), for the stat
        // cache; the rest of it is unchanged.
        let now = FileStat::of(&fs::metadata(dir.path().join("plain")).unwrap());
        assert_eq!(stored.stat, now);

        // The same content again: the blob is there, nothing is linked.
        let again = dir.path().join("again");
        fs::write(&again, b"plain").unwrap();
        let before = FileStat::of(&fs::metadata(&again).unwrap());
        let stored = store
            .put_output(File::open(&again).unwrap(), &again, before, true)
            .unwrap();
        assert!(!stored.linked);
        assert_eq!(fs::metadata(&again).unwrap().nlink(), 1);

        // A file with another name (an input, a file elsewhere), one others cannot read or may
        // write, or when linking is not allowed: copied, the file left as it was.
        let second = |file: &Path| fs::hard_link(file, file.with_extension("other")).unwrap();
        for (name, mode, prepare) in [
            ("second-name", 0o644, &second as &dyn Fn(&Path)),
            ("private", 0o600, &none),
            ("group-writable", 0o664, &none),
        ] {
            let (stored, links) = put_output_of(&store, dir.path(), name, mode, prepare);
            assert!(!stored.linked, "{name}");
            let expected = if name == "second-name" { 2 } else { 1 };
            assert_eq!(links, expected, "{name}");
            let blob = fs::metadata(store.blob_path(&stored.digest)).unwrap();
            assert_eq!(blob.nlink(), 1, "{name}");
            assert_eq!(blob.permissions().mode() & 0o777, 0o644, "{name}");
        }
        let file = dir.path().join("not-allowed");
        fs::write(&file, b"not-allowed").unwrap();
        let before = FileStat::of(&fs::metadata(&file).unwrap());
        assert!(
            !store
                .put_output(File::open(&file).unwrap(), &file, before, false)
                .unwrap()
                .linked
        );
        assert_eq!(fs::metadata(&file).unwrap().nlink(), 1);

        // A stat that is not the file's (it changed after the caller looked): copied.
        let file = dir.path().join("changed");
        fs::write(&file, b"changed").unwrap();
        let mut before = FileStat::of(&fs::metadata(&file).unwrap());
        before.mtime_ns -= 1;
        let stored = store
            .put_output(File::open(&file).unwrap(), &file, before, true)
            .unwrap();
        assert!(!stored.linked);
        assert_eq!(stored.digest, Digest::of_bytes(b"changed"));

        // A cache on another file system (tmpfs): copied.
        let shm = Path::new("/dev/shm");
        if shm.is_dir()
            && fs::metadata(shm).unwrap().dev() != fs::metadata(dir.path()).unwrap().dev()
        {
            let elsewhere = tempfile::tempdir_in(shm).unwrap();
            let store = Store::open(elsewhere.path().join("cache"));
            let (stored, links) = put_output_of(&store, dir.path(), "across", 0o644, &none);
            assert!(!stored.linked);
            assert_eq!(links, 1);
        }

        // A blob that is an output's own file is removed only by that file's inode.
        let (stored, _) = put_output_of(&store, dir.path(), "mine", 0o644, &none);
        let inode = fs::metadata(dir.path().join("mine")).unwrap().ino();
        assert!(!store.remove_blob_if_file(&stored.digest, inode + 1));
        assert!(store.remove_blob_if_file(&stored.digest, inode));
        assert!(!store.has_blob(&stored.digest, stored.size));
        assert_eq!(fs::read(dir.path().join("mine")).unwrap(), b"mine");
    }

    #[test]
    fn blobs_from_elsewhere_are_kept_only_when_exact() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("cache"));
        let digest = Digest::of_bytes(b"remote bytes");
        let fill = |bytes: &'static [u8]| {
            move |out: &mut dyn Write| -> Result<bool, io::Error> {
                // In two writes, as a download comes.
                let (a, b) = bytes.split_at(bytes.len() / 2);
                out.write_all(a)?;
                out.write_all(b)?;
                Ok(true)
            }
        };
        // Other bytes of the same size, fewer, more: nothing kept, no temporary file left.
        for (bytes, problem) in [
            (&b"remote BYTES"[..], "does not match its digest"),
            (&b"remote"[..], "has 6 bytes"),
            (&b"remote bytes and more"[..], "more than the 12 bytes"),
        ] {
            match store.put_blob_from(&digest, 12, fill(bytes)) {
                Err(BlobFetchError::Mismatch(found)) => assert!(found.contains(problem), "{found}"),
                other => panic!("{other:?}"),
            }
            assert!(cas_names(&store).is_empty(), "{:?}", cas_names(&store));
        }
        // Absent at the source: nothing kept.
        assert!(
            !store
                .put_blob_from(&digest, 12, |_| Ok::<_, io::Error>(false))
                .unwrap()
        );
        assert!(cas_names(&store).is_empty());
        // The source failing: its error, nothing kept.
        let failed = store.put_blob_from(&digest, 12, |out| {
            out.write_all(b"remo")?;
            Err(io::Error::other("connection reset"))
        });
        assert!(matches!(failed, Err(BlobFetchError::Source(_))));
        assert!(cas_names(&store).is_empty());
        // The exact bytes: kept under their digest, readable as any blob.
        assert!(
            store
                .put_blob_from(&digest, 12, fill(b"remote bytes"))
                .unwrap()
        );
        assert_eq!(cas_names(&store), [digest.to_hex()]);
        assert_eq!(store.get_bytes(&digest, 12).unwrap(), b"remote bytes");
        assert!(store.has_blob(&digest, 12));
    }

    #[test]
    fn decoded_entries_follow_the_local_rules() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("cache"));
        let result = result_with(&store, dir.path(), b"hello");
        let key = Digest::of_bytes(b"key");
        let bytes = Store::encode_action(&key, &result);
        assert_eq!(Store::decode_action(&bytes, &key).unwrap(), Some(result));
        // Under another key, with a body changed, in another format.
        assert!(Store::decode_action(&bytes, &Digest::of_bytes(b"other")).is_err());
        let mut changed = bytes.clone();
        *changed.last_mut().unwrap() = b' ';
        assert!(Store::decode_action(&changed, &key).is_err());
        assert_eq!(
            Store::decode_action(b"xbundle-ac-v9 whatever\n{}", &key).unwrap(),
            None
        );
    }

    #[test]
    fn action_round_trip_and_tamper_detection() {
        let (_dir, cache, store, result, key) = stored(b"hello");
        assert_eq!(store.get_action(&key).unwrap(), Some(result.clone()));
        // Appended to the pack, not written to a file of its own.
        assert!(!store.action_path(&key).exists());
        let (pack, slot) = packed(&store, &key);

        // An entry of another format version is a silent miss.
        let old = Digest::of_bytes(b"old format");
        fs::write(store.action_path(&old), "xbundle-ac-v1 abc\n{}").unwrap();
        assert_eq!(store.get_action(&old).unwrap(), None);

        // A valid entry under another key is not that key's result: a line naming another
        // key's record (forgotten: then a plain miss, for this store and a fresh one)...
        let other = Digest::of_bytes(b"other key");
        append_line(&store, &other, slot);
        assert!(matches!(
            store.get_action(&other),
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(store.get_action(&other).unwrap(), None);
        assert_eq!(Store::open(&cache).get_action(&other).unwrap(), None);
        // ... or a file of its own copied under another name (removed).
        fs::write(
            store.action_path(&other),
            Store::encode_action(&key, &result),
        )
        .unwrap();
        assert!(matches!(
            store.get_action(&other),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(!store.action_path(&other).exists());

        // Flip one byte of the record: corrupt, forgotten, then a plain miss.
        let mut bytes = fs::read(&pack).unwrap();
        bytes[slot.offset as usize + slot.len as usize - 3] ^= 1;
        fs::write(&pack, bytes).unwrap();
        let fresh = Store::open(&cache);
        assert!(matches!(
            fresh.get_action(&key),
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(fresh.get_action(&key).unwrap(), None);
        assert_eq!(Store::open(&cache).get_action(&key).unwrap(), None);

        // Stored again, then the pack cut short: the record is not there whole.
        store.put_action(&key, &result).unwrap();
        let (_, slot) = packed(&store, &key);
        File::options()
            .write(true)
            .open(&pack)
            .unwrap()
            .set_len(slot.offset + u64::from(slot.len) - 1)
            .unwrap();
        let error = Store::open(&cache)
            .get_action(&key)
            .unwrap_err()
            .to_string();
        assert!(error.contains("the pack ends before"), "{error}");
    }

    /// A store in a temporary directory holding one entry, under the key `key`, whose output
    /// holds `content`.
    fn stored(content: &[u8]) -> (tempfile::TempDir, PathBuf, Store, ActionResult, Digest) {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let store = Store::open(&cache);
        let result = result_with(&store, dir.path(), content);
        let key = Digest::of_bytes(b"key");
        store.put_action(&key, &result).unwrap();
        (dir, cache, store, result, key)
    }

    /// Where the index of `store` last put `key`: the pack's path and the slot.
    fn packed(store: &Store, key: &Digest) -> (PathBuf, acpack::Slot) {
        let index = fs::read(store.root().join("ac").join(acpack::INDEX)).unwrap();
        let slot = index
            .split(|&b| b == b'\n')
            .filter_map(acpack::parse_line)
            .filter(|(found, _)| found == key)
            .map(|(_, slot)| slot)
            .next_back()
            .expect("an index line for the key");
        let pack = store.root().join("ac").join(acpack::pack_name(slot.pack));
        (pack, slot)
    }

    /// Appends an index line as another process would.
    fn append_line(store: &Store, key: &Digest, slot: acpack::Slot) {
        let mut index = File::options()
            .append(true)
            .open(store.root().join("ac").join(acpack::INDEX))
            .unwrap();
        index
            .write_all(acpack::line(key, &slot).as_bytes())
            .unwrap();
    }

    #[test]
    fn stores_sharing_a_cache_see_each_others_entries_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let (one, two) = (Store::open(&cache), Store::open(&cache));
        let result = result_with(&one, dir.path(), b"hello");
        let keys: Vec<Digest> = (0..40u8).map(|n| Digest::of_bytes(&[n])).collect();
        // Both have read the (missing) index before the other stores anything.
        assert_eq!(one.get_action(&keys[0]).unwrap(), None);
        assert_eq!(two.get_action(&keys[1]).unwrap(), None);
        // Appending at once, from threads of both: every entry whole, seen by both.
        std::thread::scope(|scope| {
            for (at, key) in keys.iter().enumerate() {
                let store = if at % 2 == 0 { &one } else { &two };
                let result = &result;
                scope.spawn(move || store.put_action(key, result).unwrap());
            }
        });
        for key in &keys {
            assert_eq!(one.get_action(key).unwrap().as_ref(), Some(&result));
            assert_eq!(two.get_action(key).unwrap().as_ref(), Some(&result));
        }
        // A line torn by a kill (no newline), then garbage: the lines after them still count.
        let index = cache.join("ac").join(acpack::INDEX);
        let mut file = File::options().append(true).open(&index).unwrap();
        file.write_all(&acpack::line(&keys[0], &packed(&one, &keys[0]).1).as_bytes()[..50])
            .unwrap();
        let late = Digest::of_bytes(b"late");
        one.put_action(&late, &result).unwrap();
        file.write_all(b"garbage\n\n").unwrap();
        let later = Digest::of_bytes(b"later");
        two.put_action(&later, &result).unwrap();
        let fresh = Store::open(&cache);
        for key in keys.iter().chain([&late, &later]) {
            assert_eq!(fresh.get_action(key).unwrap().as_ref(), Some(&result));
        }
        assert_eq!(one.get_action(&later).unwrap().as_ref(), Some(&result));
        assert_eq!(fresh.stats().unwrap().actions, 42);
        // Everything in one pack; no file per entry.
        let names: Vec<String> = fs::read_dir(cache.join("ac"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.contains(&"pack-0".to_string()), "{names:?}");
    }

    #[test]
    fn a_link_or_another_name_at_the_pack_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let outside = dir.path().join("victim");
        fs::write(&outside, b"mine\n").unwrap();
        fs::create_dir_all(cache.join("ac")).unwrap();
        // A link at the index: entries go to files of their own; verify removes the link.
        std::os::unix::fs::symlink(&outside, cache.join("ac/index")).unwrap();
        let store = Store::open(&cache);
        let result = result_with(&store, dir.path(), b"hello");
        let key = Digest::of_bytes(b"key");
        store.put_action(&key, &result).unwrap();
        assert!(store.action_path(&key).is_file());
        assert_eq!(store.get_action(&key).unwrap(), Some(result.clone()));
        assert_eq!(fs::read(&outside).unwrap(), b"mine\n");
        let report = store.verify(&|_| Ok(())).unwrap();
        assert_eq!(report.problems.len(), 1, "{report:?}");
        assert!(report.problems[0].contains("symbolic link"), "{report:?}");
        assert!(fs::symlink_metadata(cache.join("ac/index")).is_err());
        assert_eq!(fs::read(&outside).unwrap(), b"mine\n");
        // A hard link at the pack (another name of someone else's file): never appended to.
        fs::hard_link(&outside, cache.join("ac/pack-0")).unwrap();
        let store = Store::open(&cache);
        let second = Digest::of_bytes(b"second");
        store.put_action(&second, &result).unwrap();
        assert!(store.action_path(&second).is_file());
        assert_eq!(fs::read(&outside).unwrap(), b"mine\n");
        assert_eq!(store.get_action(&second).unwrap(), Some(result));
    }

    #[test]
    fn maintenance_never_removes_what_it_could_not_read_and_skips_what_is_not_the_packs() {
        let (_dir, cache, _, result, key) = stored(b"hello");
        // An index too large to read (sparse): builds do not use it, gc and verify refuse.
        let index = cache.join("ac/index");
        let lines = fs::read(&index).unwrap();
        File::options()
            .write(true)
            .open(&index)
            .unwrap()
            .set_len(200 << 20)
            .unwrap();
        let fresh = Store::open(&cache);
        assert_eq!(fresh.get_action(&key).unwrap(), None);
        let other = Digest::of_bytes(b"other");
        fresh.put_action(&other, &result).unwrap();
        assert!(fresh.action_path(&other).is_file(), "a file of its own");
        for error in [
            fresh.gc(0).unwrap_err().to_string(),
            fresh.verify(&|_| Ok(())).unwrap_err().to_string(),
        ] {
            assert!(error.contains("cache clean"), "{error}");
        }
        assert!(cache.join("ac/pack-0").is_file());
        assert!(fresh.has_blob(&result.outputs[0].digest, 5));
        assert_eq!(fs::metadata(&index).unwrap().len(), 200 << 20);

        // A directory at the name the rewrite would take next is skipped; one at the index's
        // name leaves the pack unused (entries go to files of their own) and is left alone.
        fs::write(&index, &lines).unwrap();
        fs::remove_file(fresh.action_path(&other)).unwrap();
        let store = Store::open(&cache);
        store.put_action(&key, &result).unwrap();
        fs::create_dir(cache.join("ac/pack-1")).unwrap();
        store.gc(1 << 30).unwrap();
        assert!(cache.join("ac/pack-2").is_file());
        assert!(cache.join("ac/pack-1").is_dir());
        assert!(!cache.join("ac/pack-0").exists());
        assert_eq!(
            Store::open(&cache).get_action(&key).unwrap(),
            Some(result.clone())
        );
        fs::remove_file(&index).unwrap();
        fs::create_dir(&index).unwrap();
        let store = Store::open(&cache);
        assert_eq!(store.get_action(&key).unwrap(), None);
        store.put_action(&other, &result).unwrap();
        assert!(store.action_path(&other).is_file());
        assert_eq!(store.gc(1 << 30).unwrap().kept_actions, 1);
        assert!(index.is_dir() && cache.join("ac/pack-1").is_dir());
        assert!(
            !cache.join("ac/pack-2").exists(),
            "named by no index: removed"
        );
    }

    #[test]
    fn an_index_larger_than_a_piece_and_a_megabyte_without_a_newline_are_read_whole() {
        let (_dir, cache, store, result, key) = stored(b"hello");
        // More than 1 MiB of lines: some straddle the pieces the index is read in.
        let keys: Vec<Digest> = (0..11_000u32)
            .map(|n| Digest::of_bytes(&n.to_le_bytes()))
            .collect();
        for key in &keys {
            store.put_action(key, &result).unwrap();
        }
        // Then garbage with no newline that fills a whole piece but for the first 50 bytes of
        // the line after it (a piece starts right after the last newline read).
        let mut index = File::options()
            .append(true)
            .open(cache.join("ac/index"))
            .unwrap();
        index.write_all(&vec![b'x'; (1 << 20) - 50]).unwrap();
        let late = Digest::of_bytes(b"late");
        store.put_action(&late, &result).unwrap();
        let fresh = Store::open(&cache);
        for key in keys.iter().chain([&key, &late]) {
            assert_eq!(
                fresh.get_action(key).unwrap().as_ref(),
                Some(&result),
                "{key}"
            );
        }
    }

    #[test]
    fn a_rewrite_past_the_last_pack_number_takes_the_first_free_one() {
        let (_dir, cache, store, result, key) = stored(b"hello");
        store.put_action(&key, &result).unwrap();
        fs::write(cache.join("ac/pack-4294967295"), b"stray").unwrap();
        store.gc(1 << 30).unwrap();
        assert!(cache.join("ac/pack-1").is_file());
        assert!(!cache.join("ac/pack-0").exists());
        assert!(
            !cache.join("ac/pack-4294967295").exists(),
            "named by no index"
        );
        assert_eq!(Store::open(&cache).get_action(&key).unwrap(), Some(result));
    }

    #[test]
    fn an_entry_the_pack_cannot_forget_gives_way_to_the_one_stored_beside_it() {
        let (dir, cache, _, _, key) = stored(b"first");
        // The index gets another name (a `cp -al` snapshot): never appended to again.
        fs::hard_link(cache.join("ac/index"), dir.path().join("snapshot")).unwrap();
        let store = Store::open(&cache);
        store.remove_action(&key);
        let second = result_with(&store, dir.path(), b"second");
        store.put_action(&key, &second).unwrap();
        assert!(store.action_path(&key).is_file());
        assert_eq!(Store::open(&cache).get_action(&key).unwrap(), Some(second));
        assert_eq!(
            fs::read(dir.path().join("snapshot")).unwrap(),
            fs::read(cache.join("ac/index")).unwrap()
        );
    }

    #[test]
    fn a_new_run_sees_the_pack_a_gc_elsewhere_rewrote() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let (builds, maintains) = (Store::open(&cache), Store::open(&cache));
        let result = result_with(&builds, dir.path(), b"hello");
        let keys: Vec<Digest> = (0..3u8).map(|n| Digest::of_bytes(&[n])).collect();
        builds.put_action(&keys[0], &result).unwrap();
        maintains.put_action(&keys[1], &result).unwrap();
        maintains.remove_action(&keys[0]);
        maintains.gc(1 << 30).unwrap();
        assert!(cache.join("ac/pack-1").is_file() && !cache.join("ac/pack-0").exists());
        // The next run of the same engine forgets what it had open.
        builds.forget_handles();
        builds.put_action(&keys[2], &result).unwrap();
        let fresh = Store::open(&cache);
        assert_eq!(fresh.get_action(&keys[1]).unwrap().as_ref(), Some(&result));
        assert_eq!(fresh.get_action(&keys[2]).unwrap().as_ref(), Some(&result));
        assert_eq!(packed(&fresh, &keys[2]).1.pack, 1);
    }

    #[test]
    fn index_lines_out_of_bounds_are_corrupt_and_a_forget_line_forgets_only_its_place() {
        let (_dir, cache, store, result, key) = stored(b"hello");
        let (_, slot) = packed(&store, &key);
        // A forget line for another place (an older record of the key): the entry stays.
        append_line(
            &store,
            &key,
            acpack::Slot {
                offset: slot.offset + 1,
                len: 0,
                ..slot
            },
        );
        assert_eq!(
            Store::open(&cache).get_action(&key).unwrap(),
            Some(result.clone())
        );
        let lying = [
            (u64::MAX - 10, 100),
            (1 << 62, 100),
            (0, 0x0fff_0000),
            (0, 0x2000_0000),
        ];
        for (n, (offset, len)) in lying.into_iter().enumerate() {
            let key = Digest::of_bytes(&[n as u8, 7]);
            append_line(
                &store,
                &key,
                acpack::Slot {
                    offset,
                    len,
                    ..slot
                },
            );
            let error = Store::open(&cache).get_action(&key);
            assert!(
                matches!(error, Err(StoreError::Corrupt { .. })),
                "{offset} {len}: {error:?}"
            );
        }
        // Its forget line names that place: the entry stays forgotten.
        store.remove_action(&key);
        assert_eq!(Store::open(&cache).get_action(&key).unwrap(), None);
    }

    #[test]
    fn gc_and_verify_rewrite_the_pack_with_what_they_keep() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let store = Store::open(&cache);
        let result = result_with(&store, dir.path(), b"hello");
        let keys: Vec<Digest> = (0..3u8).map(|n| Digest::of_bytes(&[n])).collect();
        for key in &keys {
            store.put_action(key, &result).unwrap();
        }
        // Stored twice, and one forgotten: superseded bytes and lines.
        store.put_action(&keys[0], &result).unwrap();
        store.remove_action(&keys[1]);
        let before = fs::metadata(cache.join("ac/pack-0")).unwrap().len();
        let report = store.gc(1 << 30).unwrap();
        assert_eq!((report.kept_actions, report.removed_actions), (2, 0));
        let names: Vec<String> = fs::read_dir(cache.join("ac"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.contains(&"pack-1".to_string()), "{names:?}");
        assert_eq!(
            fs::metadata(cache.join("ac/pack-1")).unwrap().len() * 2,
            before,
            "two of four records kept"
        );
        let index = fs::read(cache.join("ac/index")).unwrap();
        assert_eq!(index.len(), 2 * acpack::LINE);
        for store in [&store, &Store::open(&cache)] {
            assert_eq!(store.get_action(&keys[0]).unwrap().as_ref(), Some(&result));
            assert_eq!(store.get_action(&keys[1]).unwrap(), None);
            assert_eq!(store.get_action(&keys[2]).unwrap().as_ref(), Some(&result));
        }
        // Appends after the rewrite go to the new pack.
        store.put_action(&keys[1], &result).unwrap();
        assert_eq!(packed(&store, &keys[1]).1.pack, 1);
        assert_eq!(
            Store::open(&cache).get_action(&keys[1]).unwrap(),
            Some(result.clone())
        );
        // A record damaged in place: verify reports it and drops it.
        let (pack, slot) = packed(&store, &keys[2]);
        let mut bytes = fs::read(&pack).unwrap();
        bytes[slot.offset as usize + 20] ^= 1;
        fs::write(&pack, bytes).unwrap();
        let report = store.verify(&|_| Ok(())).unwrap();
        assert_eq!(report.actions_checked, 3, "{report:?}");
        assert_eq!(report.problems.len(), 1, "{report:?}");
        assert!(report.problems[0].contains(&keys[2].short()), "{report:?}");
        let fresh = Store::open(&cache);
        assert_eq!(fresh.get_action(&keys[2]).unwrap(), None);
        assert_eq!(fresh.stats().unwrap().actions, 2);
        // Everything evicted: no pack, no index.
        assert_eq!(store.gc(0).unwrap().removed_actions, 2);
        assert_eq!(fs::read_dir(cache.join("ac")).unwrap().count(), 0);
        assert_eq!(Store::open(&cache).get_action(&keys[0]).unwrap(), None);
    }

    #[test]
    fn restore_verifies_blob_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("cache"));
        let result = result_with(&store, dir.path(), b"hello");
        let root = Dir::open_root(dir.path()).unwrap();
        let destination = dir.path().join("restored.txt");
        let staging = root.create_dir_all("staging").unwrap();
        let never = || false;
        store
            .restore_file(
                &result.outputs[0],
                &root,
                "restored.txt",
                Some(&staging),
                &never,
            )
            .unwrap();
        assert_eq!(fs::read(&destination).unwrap(), b"hello");
        assert_eq!(
            fs::metadata(&destination).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(fs::read_dir(staging.path()).unwrap().count(), 0);
        // Without a staging directory, the copy is made beside the destination.
        fs::remove_file(&destination).unwrap();
        store
            .restore_file(&result.outputs[0], &root, "restored.txt", None, &never)
            .unwrap();
        assert_eq!(fs::read(&destination).unwrap(), b"hello");

        fs::write(store.blob_path(&result.outputs[0].digest), b"jello").unwrap();
        fs::remove_file(&destination).unwrap();
        let err = store
            .restore_file(
                &result.outputs[0],
                &root,
                "restored.txt",
                Some(&staging),
                &never,
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(!destination.exists(), "nothing half-restored");
        assert!(!store.blob_path(&result.outputs[0].digest).exists());
        assert_eq!(fs::read_dir(staging.path()).unwrap().count(), 0);
    }

    #[test]
    fn blobs_are_read_only_as_regular_files_of_the_size_the_entry_says() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("cache"));
        let result = result_with(&store, dir.path(), b"hello");
        let root = Dir::open_root(dir.path()).unwrap();
        let blob = store.blob_path(&result.outputs[0].digest);
        let never = || false;
        let restore =
            |file: &OutputFile| store.restore_file(file, &root, "restored.txt", None, &never);
        // A blob larger than the entry says (a sparse file of a gigabyte): not read at all.
        let huge = fs::File::options().write(true).open(&blob).unwrap();
        huge.set_len(1 << 30).unwrap();
        drop(huge);
        let err = restore(&result.outputs[0]).unwrap_err();
        assert!(
            err.to_string()
                .contains("holds 1073741824 bytes, the entry says 5"),
            "{err}"
        );
        assert!(!blob.exists(), "removed");
        assert!(!dir.path().join("restored.txt").exists());
        // A link to a file with the right content: never followed, removed itself.
        fs::write(dir.path().join("same.txt"), b"hello").unwrap();
        std::os::unix::fs::symlink(dir.path().join("same.txt"), &blob).unwrap();
        let err = restore(&result.outputs[0]).unwrap_err();
        assert!(
            err.to_string()
                .contains("a symbolic link, not a regular file"),
            "{err}"
        );
        assert!(fs::symlink_metadata(&blob).is_err());
        assert_eq!(fs::read(dir.path().join("same.txt")).unwrap(), b"hello");
        // A FIFO: opened without waiting for a writer, refused.
        let status = std::process::Command::new("mkfifo")
            .arg(&blob)
            .status()
            .unwrap();
        assert!(status.success());
        let err = store.get_bytes(&result.outputs[0].digest, 5).unwrap_err();
        assert!(
            err.to_string().contains("a FIFO, not a regular file"),
            "{err}"
        );
        // Cancelled: stops between pieces, nothing is written.
        store.put_bytes(b"hello").unwrap();
        let err = store
            .restore_file(&result.outputs[0], &root, "restored.txt", None, &|| true)
            .unwrap_err();
        assert!(matches!(err, StoreError::Interrupted), "{err}");
        assert!(!dir.path().join("restored.txt").exists());
    }

    #[test]
    fn entries_of_the_previous_version_are_still_read() {
        // An entry written before discovered inputs existed: v2 header, no `discovered` field.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("cache"));
        let result = result_with(&store, dir.path(), b"hello");
        let key = Digest::of_bytes(b"v2 key");
        let body = serde_json::to_string(&result).unwrap();
        assert!(!body.contains("discovered"), "{body}");
        let entry = format!(
            "xbundle-ac-v2 {key} {}\n{body}",
            entry_checksum(&key, body.as_bytes())
        );
        fs::create_dir_all(store.action_path(&key).parent().unwrap()).unwrap();
        fs::write(store.action_path(&key), entry).unwrap();
        assert_eq!(store.get_action(&key).unwrap(), Some(result.clone()));
        // This version writes v3 to the pack, with the discovered inputs when there are some
        // (read once no file of its own is left).
        let mut with = result;
        with.discovered = Some(crate::discovered::DiscoveredRecord::default());
        store.put_action(&key, &with).unwrap();
        let (pack, slot) = packed(&store, &key);
        let bytes = fs::read(pack).unwrap();
        assert!(
            bytes[slot.offset as usize..].starts_with(b"xbundle-ac-v3 "),
            "{}",
            String::from_utf8_lossy(&bytes)
        );
        fs::remove_file(store.action_path(&key)).unwrap();
        assert_eq!(store.get_action(&key).unwrap(), Some(with));
    }

    #[test]
    fn blob_store_puts_verify_and_reads_are_verified() {
        use crate::task::BlobStore;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("cache"));
        let digest = Digest::of_bytes(b"asset bytes");
        assert!(BlobStore::open(&store, &digest).unwrap().is_none());
        let download = dir.path().join("download.tmp");
        fs::write(&download, b"asset bytes").unwrap();
        // A wrong digest: refused, nothing stored.
        let wrong = Digest::of_bytes(b"other");
        let err = store.put(&download, &wrong).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains(&digest.to_hex()), "{err}");
        assert!(!store.blob_path(&wrong).exists());
        // Stored, and again (idempotent).
        store.put(&download, &digest).unwrap();
        store.put(&download, &digest).unwrap();
        let mut read = Vec::new();
        BlobStore::open(&store, &digest)
            .unwrap()
            .unwrap()
            .read_to_end(&mut read)
            .unwrap();
        assert_eq!(read, b"asset bytes");
        assert_eq!(
            fs::read_dir(store.blob_path(&digest).parent().unwrap())
                .unwrap()
                .count(),
            1,
            "no temporary file left"
        );
        // Damaged in place (same size): the read ends in an error, and the blob is removed.
        fs::write(store.blob_path(&digest), b"asset BYTES").unwrap();
        let mut reader = BlobStore::open(&store, &digest).unwrap().unwrap();
        let err = reader.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(!store.blob_path(&digest).exists());
        // Truncated: the same.
        store.put(&download, &digest).unwrap();
        let mut reader = BlobStore::open(&store, &digest).unwrap().unwrap();
        File::options()
            .write(true)
            .open(store.blob_path(&digest))
            .unwrap()
            .set_len(3)
            .unwrap();
        assert!(reader.read_to_end(&mut Vec::new()).is_err());
        // A link at the blob's name: never followed, not there.
        store.put(&download, &digest).unwrap();
        fs::remove_file(store.blob_path(&digest)).unwrap();
        std::os::unix::fs::symlink(&download, store.blob_path(&digest)).unwrap();
        assert!(BlobStore::open(&store, &digest).unwrap().is_none());
        assert!(fs::symlink_metadata(store.blob_path(&digest)).is_err());
        assert!(download.exists());
    }

    #[test]
    fn restores_copy_where_reflinks_are_not_supported_and_verify_either_way() {
        // This machine's file system decides which path runs; both verify the content.
        let dir = tempfile::tempdir().unwrap();
        eprintln!(
            "reflinks supported here: {}",
            reflinks_supported(dir.path())
        );
        let store = Store::open(dir.path().join("cache"));
        let result = result_with(&store, dir.path(), &b"0123456789".repeat(10_000));
        let root = Dir::open_root(dir.path()).unwrap();
        let staging = root.create_dir_all("staging").unwrap();
        let never = || false;
        let file = &result.outputs[0];
        store
            .restore_file(file, &root, "restored.bin", Some(&staging), &never)
            .unwrap();
        assert_eq!(
            fs::read(dir.path().join("restored.bin")).unwrap(),
            b"0123456789".repeat(10_000)
        );
        // A damaged blob of the right size is refused (by the reflink's read-back or the copy).
        let mut damaged = b"0123456789".repeat(10_000);
        damaged[5] = b'x';
        fs::write(store.blob_path(&file.digest), &damaged).unwrap();
        let err = store
            .restore_file(file, &root, "again.bin", Some(&staging), &never)
            .unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(!dir.path().join("again.bin").exists());
        assert_eq!(fs::read_dir(staging.path()).unwrap().count(), 0);
    }

    #[test]
    fn streams_are_replayed_in_pieces_cut_after_a_newline() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("cache"));
        let line = "a line of a long log\n".repeat(1 << 16);
        let text = format!("{line}{line}no newline at the end");
        let digest = store.put_bytes(text.as_bytes()).unwrap();
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        store
            .stream_bytes(&digest, text.len() as u64, &mut |piece| {
                pieces.push(piece.to_vec())
            })
            .unwrap();
        assert!(pieces.len() > 1, "{} pieces", pieces.len());
        assert!(pieces.iter().all(|piece| piece.len() <= CHUNK));
        assert!(
            pieces[..pieces.len() - 1]
                .iter()
                .all(|p| p.ends_with(b"\n"))
        );
        assert_eq!(pieces.concat(), text.as_bytes());
        // The wrong size: refused before anything is passed on.
        let mut called = false;
        assert!(
            store
                .stream_bytes(&digest, 3, &mut |_| called = true)
                .is_err()
        );
        assert!(!called);
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
        let old_key = Digest::of_bytes(b"old");
        store.put_action(&old_key, &old).unwrap();
        // Last used 100 s ago.
        let (_, slot) = packed(&store, &old_key);
        append_line(
            &store,
            &old_key,
            acpack::Slot {
                used: slot.used - 100,
                ..slot
            },
        );
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
        // In a file of its own (the pack's records are the same bytes).
        store.remove_action(&key);
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
        assert_eq!(Store::open(store.root()).get_action(&key).unwrap(), None);
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
        fs::write(cache.join("ac/ab/.tmp-a1B2c3"), b"t").unwrap();
        // What a user keeps there.
        let mine = [
            "notes.txt",
            "cas/README",
            "cas/zz/file",
            "cas/ab/notes",
            "ac/0123",
            "ac/.tmp-notes.txt",
            "cas/.tmp-mine",
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
