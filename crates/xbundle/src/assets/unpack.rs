//! Unpacking a downloaded archive (`tar.gz` with `tar` + `flate2`, `zip` with `zip`) into a
//! directory of the work tree, as untrusted input.
//!
//! Everything is written through the engine's confined tree ([`engine::confine::Dir`]: no link
//! followed at any component, each file written to a temporary name and renamed), below one
//! base directory. An entry is refused, and the whole unpacking with it, when:
//!
//! - its name is not a relative, normalized path (absolute, `..`, `.`, empty components,
//!   backslashes, control characters: bundle.json's path rule, [`manifest::RelativePath`]), is
//!   not UTF-8, reaches a `.git` component, or names a path twice;
//! - it is a symbolic link whose target is absolute or leaves the base directory (resolved
//!   lexically from the link's own directory), leads to no file of the archive, or to a
//!   directory; a hard link whose target is not a file of the archive;
//! - it is a device, a FIFO, a socket or a kind the unpacker does not know;
//! - the archive holds more than [`MAX_ENTRIES`] entries, or its files add up to more bytes
//!   than the limit: counted on the bytes actually written, whatever an entry declares (a zip
//!   bomb declaring small sizes is stopped at the limit).
//!
//! Links inside the base directory become copies of the file they lead to (as the engine's
//! cache restores them anyway), counted in the limit. Modes are 0755 for entries with an
//! executable bit, 0644 otherwise (the engine stores only those).
//!
//! **Invariant:** nothing is written outside the base directory, and a refused or broken
//! archive leaves nothing behind: every file written is removed again, then the directories
//! that held what the archive named, the base and its parents (below the tree given) when
//! empty: only empty directories, so nothing this unpacking did not write is removed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufReader, Read, Write};

use engine::Digest;
use engine::confine::{ConfineError, Dir};
use engine::digest::Hasher;

use super::config::Unpack;

/// Most entries an archive may hold (files, directories and links).
pub const MAX_ENTRIES: u64 = 100_000;
/// Hops through links to links before a link is refused.
const MAX_LINK_HOPS: usize = 16;
/// Longest symbolic link target read from a zip entry.
const MAX_LINK_TARGET: u64 = 4096;

/// A file written by unpacking, relative to the base directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    pub path: String,
    pub executable: bool,
    pub size: u64,
    pub digest: Digest,
}

/// Bounds of one unpacking.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Total bytes of the files written.
    pub max_bytes: u64,
    pub max_entries: u64,
}

/// Unpacks `archive` (`kind`) below `base` (relative to `tree`). Returns the files written,
/// sorted by path. On error nothing of it is left (module docs).
pub fn unpack(
    kind: Unpack,
    archive: File,
    tree: &Dir,
    base: &str,
    limits: Limits,
) -> Result<Vec<Unpacked>, String> {
    let mut writer = Writer {
        tree,
        base,
        limits,
        entries: 0,
        bytes: 0,
        files: BTreeMap::new(),
        dirs: BTreeSet::new(),
        links: BTreeMap::new(),
        written: Vec::new(),
        touched: Vec::new(),
    };
    let result = match kind {
        Unpack::TarGz => unpack_tar(archive, &mut writer),
        Unpack::Zip => unpack_zip(archive, &mut writer),
    }
    .and_then(|()| writer.resolve_links());
    match result {
        Ok(()) => {
            if writer.files.is_empty() {
                writer.roll_back();
                return Err("the archive holds no files".into());
            }
            Ok(writer.files.into_values().collect())
        }
        Err(err) => {
            writer.roll_back();
            Err(err)
        }
    }
}

struct Writer<'a> {
    tree: &'a Dir,
    base: &'a str,
    limits: Limits,
    entries: u64,
    bytes: u64,
    /// Files written, by path relative to the base.
    files: BTreeMap<String, Unpacked>,
    /// Directories named by the archive (relative to the base).
    dirs: BTreeSet<String>,
    /// Links to resolve once every file is written: where each is (relative to the base) ->
    /// what it leads to, resolved lexically (relative to the base).
    links: BTreeMap<String, String>,
    /// Every file written (root-relative), for the roll back.
    written: Vec<String>,
    /// Every path an entry named (relative to the base), written or not: the directories made
    /// for them are removed by the roll back when empty.
    touched: Vec<String>,
}

/// An entry name made a path relative to the base: `./` prefixes and a trailing `/` are
/// dropped; `None` for the archive's root itself (`.`, `./`).
fn entry_path(raw: &[u8]) -> Result<Option<String>, String> {
    let Ok(name) = std::str::from_utf8(raw) else {
        return Err(format!(
            "entry `{}` has a name that is not UTF-8",
            String::from_utf8_lossy(raw).escape_debug()
        ));
    };
    let mut path = name;
    while let Some(rest) = path.strip_prefix("./") {
        path = rest;
    }
    let path = path.strip_suffix('/').unwrap_or(path);
    if path.is_empty() || path == "." {
        return Ok(None);
    }
    let shown = name.escape_debug();
    if path.starts_with('/') {
        return Err(format!("entry `{shown}` is an absolute path"));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(format!("entry `{shown}` leaves its directory (`..`)"));
    }
    manifest::RelativePath::new(path)
        .map_err(|problem| format!("entry `{shown}` is not a plain relative path ({problem})"))?;
    if path.split('/').any(|c| c.eq_ignore_ascii_case(".git")) {
        return Err(format!("entry `{shown}` reaches into a `.git` directory"));
    }
    Ok(Some(path.to_string()))
}

/// The target of a symbolic link at `link` (relative to the base), resolved lexically from the
/// link's directory; an error when it is absolute or leaves the base.
fn link_target(link: &str, target: &[u8]) -> Result<String, String> {
    let Ok(text) = std::str::from_utf8(target) else {
        return Err(format!(
            "symbolic link `{link}` has a target that is not UTF-8"
        ));
    };
    let shown = text.escape_debug();
    if text.starts_with('/') {
        return Err(format!(
            "symbolic link `{link}` leads to the absolute path `{shown}`"
        ));
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for component in text.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!(
                        "symbolic link `{link}` leads out of its directory (`{shown}`)"
                    ));
                }
            }
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        return Err(format!(
            "symbolic link `{link}` leads to the archive's root directory"
        ));
    }
    let resolved = parts.join("/");
    entry_path(resolved.as_bytes())
        .map_err(|problem| format!("symbolic link `{link}`: {problem}"))?
        .ok_or_else(|| format!("symbolic link `{link}` leads to nothing"))
}

impl Writer<'_> {
    fn full(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    fn count(&mut self, path: &str) -> Result<(), String> {
        self.touched.push(path.to_string());
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(format!(
                "the archive holds more than {} entries (at `{path}`)",
                self.limits.max_entries
            ));
        }
        Ok(())
    }

    fn taken(&self, path: &str) -> Result<(), String> {
        if self.files.contains_key(path)
            || self.links.contains_key(path)
            || self.dirs.contains(path)
        {
            return Err(format!("entry `{path}` appears twice in the archive"));
        }
        Ok(())
    }

    fn dir(&mut self, path: &str) -> Result<(), String> {
        self.count(path)?;
        self.taken(path)?;
        self.tree
            .create_dir_all(&self.full(path))
            .map_err(|err| err.to_string())?;
        self.dirs.insert(path.to_string());
        Ok(())
    }

    /// Writes `path` from `input`, counting every byte against the limit.
    fn file(&mut self, path: &str, executable: bool, input: &mut dyn Read) -> Result<(), String> {
        self.count(path)?;
        self.taken(path)?;
        self.write(path, executable, input)
    }

    fn write(&mut self, path: &str, executable: bool, input: &mut dyn Read) -> Result<(), String> {
        let full = self.full(path);
        let left = self.limits.max_bytes - self.bytes;
        let mut hasher = Hasher::new();
        let mut size = 0u64;
        let mode = if executable { 0o755 } else { 0o644 };
        let limit = self.limits.max_bytes;
        let outcome: Result<_, WriteError> = self.tree.write_file(&full, mode, |out: &mut File| {
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let read = input.read(&mut buffer).map_err(|err| {
                    WriteError::Other(format!("reading entry `{path}` of the archive: {err}"))
                })?;
                if read == 0 {
                    return Ok(());
                }
                size += read as u64;
                if size > left {
                    return Err(WriteError::Other(format!(
                        "the archive unpacks to more than {limit} bytes (at `{path}`): refused as a possible zip bomb (raise max-unpacked-size if it is expected)"
                    )));
                }
                hasher.update(&buffer[..read]);
                out.write_all(&buffer[..read])
                    .map_err(|err| WriteError::Other(format!("writing `{path}`: {err}")))?;
            }
        });
        match outcome {
            Ok(_) => {}
            Err(WriteError::Confine(err)) => return Err(err.to_string()),
            Err(WriteError::Other(message)) => return Err(message),
        }
        self.written.push(full);
        self.bytes += size;
        self.files.insert(
            path.to_string(),
            Unpacked {
                path: path.to_string(),
                executable,
                size,
                digest: hasher.finish(),
            },
        );
        Ok(())
    }

    fn symlink(&mut self, path: &str, target: &[u8]) -> Result<(), String> {
        self.count(path)?;
        self.taken(path)?;
        let target = link_target(path, target)?;
        self.links.insert(path.to_string(), target);
        Ok(())
    }

    fn hard_link(&mut self, path: &str, target: &[u8]) -> Result<(), String> {
        self.count(path)?;
        self.taken(path)?;
        let target = match entry_path(target) {
            Ok(Some(target)) => target,
            Ok(None) => return Err(format!("hard link `{path}` leads to the archive's root")),
            Err(problem) => return Err(format!("hard link `{path}`: {problem}")),
        };
        if !self.files.contains_key(&target) {
            return Err(format!(
                "hard link `{path}` leads to `{target}`, which is not a file unpacked before it"
            ));
        }
        self.links.insert(path.to_string(), target);
        Ok(())
    }

    /// Every link becomes a copy of the file it leads to (through links, at most
    /// [`MAX_LINK_HOPS`]).
    fn resolve_links(&mut self) -> Result<(), String> {
        let links = std::mem::take(&mut self.links);
        for (path, target) in &links {
            let mut target = target.clone();
            let mut hops = 0;
            while let Some(next) = links.get(&target) {
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return Err(format!("link `{path}` goes through too many links"));
                }
                target = next.clone();
            }
            let Some(file) = self.files.get(&target) else {
                return Err(
                    if self.dirs.contains(&target)
                        || self
                            .files
                            .keys()
                            .any(|f| f.starts_with(&format!("{target}/")))
                    {
                        format!(
                            "link `{path}` leads to the directory `{target}`, which is not supported (only links to files are)"
                        )
                    } else {
                        format!(
                            "link `{path}` leads to `{target}`, which the archive does not hold"
                        )
                    },
                );
            };
            let executable = file.executable;
            let (mut input, _) = self
                .tree
                .open_file(&self.full(&target))
                .map_err(|err| err.to_string())?
                .ok_or_else(|| format!("`{target}` vanished while unpacking"))?;
            self.write(path, executable, &mut input)?;
        }
        Ok(())
    }

    /// Removes every file written, then the directories made for them when empty.
    fn roll_back(&mut self) {
        for path in self.written.drain(..) {
            let _ = self.tree.remove_file(&path);
        }
        let mut dirs: Vec<String> = self.dirs.iter().map(|dir| self.full(dir)).collect();
        for path in &self.touched {
            let mut parts: Vec<&str> = path.split('/').collect();
            while parts.len() > 1 {
                parts.pop();
                dirs.push(self.full(&parts.join("/")));
            }
        }
        // The base and the directories above it that were made for it.
        let mut parts: Vec<&str> = self.base.split('/').collect();
        while !parts.is_empty() {
            dirs.push(parts.join("/"));
            parts.pop();
        }
        // Deepest first; equal paths next to each other so each is tried once.
        dirs.sort_by(|a, b| {
            let depth = |dir: &String| dir.matches('/').count();
            depth(b).cmp(&depth(a)).then_with(|| a.cmp(b))
        });
        dirs.dedup();
        for dir in dirs {
            let _ = self.tree.remove_empty_dir(&dir);
        }
    }
}

enum WriteError {
    Confine(ConfineError),
    Other(String),
}

impl From<ConfineError> for WriteError {
    fn from(err: ConfineError) -> WriteError {
        WriteError::Confine(err)
    }
}

fn unpack_tar(archive: File, writer: &mut Writer<'_>) -> Result<(), String> {
    use tar::EntryType;
    let gzip = flate2::read::MultiGzDecoder::new(BufReader::with_capacity(256 * 1024, archive));
    let mut tar = tar::Archive::new(gzip);
    let entries = tar
        .entries()
        .map_err(|err| format!("not a tar.gz archive: {err}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|err| format!("reading the archive: {err}"))?;
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader) {
            continue;
        }
        let raw = entry.path_bytes().into_owned();
        let Some(path) = entry_path(&raw)? else {
            if kind.is_dir() {
                continue;
            }
            return Err("an entry of the archive names its root directory".into());
        };
        let executable = entry.header().mode().is_ok_and(|mode| mode & 0o111 != 0);
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                writer.file(&path, executable, &mut entry)?;
            }
            EntryType::Directory => writer.dir(&path)?,
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| format!("symbolic link `{path}` has no target"))?
                    .into_owned();
                writer.symlink(&path, &target)?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| format!("hard link `{path}` has no target"))?
                    .into_owned();
                writer.hard_link(&path, &target)?;
            }
            EntryType::Char | EntryType::Block => {
                return Err(format!("entry `{path}` is a device file, which is refused"));
            }
            EntryType::Fifo => {
                return Err(format!("entry `{path}` is a FIFO, which is refused"));
            }
            other => {
                return Err(format!(
                    "entry `{path}` is of a kind the unpacker refuses ({other:?})"
                ));
            }
        }
    }
    Ok(())
}

fn unpack_zip(archive: File, writer: &mut Writer<'_>) -> Result<(), String> {
    let mut zip = zip::ZipArchive::new(BufReader::with_capacity(64 * 1024, archive))
        .map_err(|err| format!("not a zip archive: {err}"))?;
    if zip.len() as u64 > writer.limits.max_entries {
        return Err(format!(
            "the archive holds {} entries, more than {}",
            zip.len(),
            writer.limits.max_entries
        ));
    }
    for index in 0..zip.len() {
        let mut entry = zip
            .by_index(index)
            .map_err(|err| format!("reading entry {index} of the archive: {err}"))?;
        let raw = match entry.name() {
            Ok(name) => name.into_owned().into_bytes(),
            Err(_) => entry.name_raw().to_vec(),
        };
        let Some(path) = entry_path(&raw)? else {
            if entry.is_dir() {
                continue;
            }
            return Err("an entry of the archive names its root directory".into());
        };
        let mode = entry.unix_mode();
        let file_type = mode.map(|mode| mode & 0o170000);
        match file_type {
            Some(0o120000) => {
                let mut target = Vec::new();
                (&mut entry)
                    .take(MAX_LINK_TARGET + 1)
                    .read_to_end(&mut target)
                    .map_err(|err| format!("reading symbolic link `{path}`: {err}"))?;
                if target.len() as u64 > MAX_LINK_TARGET {
                    return Err(format!(
                        "symbolic link `{path}` has an absurdly long target"
                    ));
                }
                writer.symlink(&path, &target)?;
            }
            Some(0o020000) | Some(0o060000) => {
                return Err(format!("entry `{path}` is a device file, which is refused"));
            }
            Some(0o010000) => return Err(format!("entry `{path}` is a FIFO, which is refused")),
            Some(0o140000) => return Err(format!("entry `{path}` is a socket, which is refused")),
            _ if entry.is_dir() => writer.dir(&path)?,
            Some(0o100000) | Some(0) | None => {
                let executable = mode.is_some_and(|mode| mode & 0o111 != 0);
                writer.file(&path, executable, &mut entry)?;
            }
            Some(other) => {
                return Err(format!(
                    "entry `{path}` is of a kind the unpacker refuses (mode {other:o})"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names() {
        assert_eq!(entry_path(b"./a/b/").unwrap().as_deref(), Some("a/b"));
        assert_eq!(entry_path(b"./").unwrap(), None);
        assert_eq!(entry_path(b".").unwrap(), None);
        for bad in [
            &b"../x"[..],
            b"a/../../x",
            b"/etc/passwd",
            b"a//b",
            b"a\\b",
            b"a/\xff",
            b".git/hooks/pre-commit",
            b"x/.GIT/config",
            b"a\x1b[31m",
        ] {
            assert!(
                entry_path(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// A zip of stored entries, written with the zip crate's own writer.
    fn zip_of(entries: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let mut writer = zip::ZipWriter::new(file.as_file_mut());
        for (name, data) in entries {
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored);
            writer.start_file(*name, options).unwrap();
            writer.write_all(data).unwrap();
        }
        writer.finish().unwrap();
        file
    }

    fn run(
        archive: &tempfile::NamedTempFile,
        limits: Limits,
    ) -> (tempfile::TempDir, Result<Vec<Unpacked>, String>) {
        let root = tempfile::tempdir().unwrap();
        let tree = Dir::open_root(root.path()).unwrap();
        let result = unpack(
            Unpack::Zip,
            File::open(archive.path()).unwrap(),
            &tree,
            "out/files",
            limits,
        );
        (root, result)
    }

    fn files_below(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .flatten()
                .map(|entry| {
                    if entry.file_type().unwrap().is_dir() {
                        1 + files_below(&entry.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
    }

    #[test]
    fn bounds_count_entries_and_written_bytes() {
        let names: Vec<String> = (0..10).map(|n| format!("d{n}/f")).collect();
        let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
        let archive = zip_of(&entries);
        let (root, result) = run(
            &archive,
            Limits {
                max_bytes: 1000,
                max_entries: 9,
            },
        );
        assert!(
            result.unwrap_err().contains("more than 9"),
            "refused up front"
        );
        assert_eq!(files_below(root.path()), 0);
        let (_, result) = run(
            &archive,
            Limits {
                max_bytes: 1000,
                max_entries: 10,
            },
        );
        assert_eq!(result.unwrap().len(), 10);
        // Exactly at the byte limit is fine; one byte more is refused, and rolled back whole.
        let archive = zip_of(&[("a", &[1; 6]), ("b/c", &[2; 4])]);
        let (_, result) = run(
            &archive,
            Limits {
                max_bytes: 10,
                max_entries: 10,
            },
        );
        let files = result.unwrap();
        assert_eq!(files.iter().map(|f| f.size).sum::<u64>(), 10);
        assert_eq!(files[1].digest, Digest::of_bytes(&[2; 4]));
        let (root, result) = run(
            &archive,
            Limits {
                max_bytes: 9,
                max_entries: 10,
            },
        );
        assert!(result.unwrap_err().contains("more than 9 bytes"));
        assert_eq!(
            files_below(root.path()),
            0,
            "nothing left, not even directories"
        );
    }

    #[test]
    fn link_targets() {
        assert_eq!(link_target("a/b", b"c").unwrap(), "a/c");
        assert_eq!(link_target("a/b", b"../c").unwrap(), "c");
        assert_eq!(link_target("a/b", b"./d/../e").unwrap(), "a/e");
        assert!(link_target("a/b", b"../../c").is_err());
        assert!(link_target("b", b"../c").is_err());
        assert!(link_target("a/b", b"/etc/passwd").is_err());
        assert!(link_target("a/b", b"..").is_err());
    }
}
