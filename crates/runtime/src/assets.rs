//! The bundle's assets, verified before anything starts.
//!
//! Every asset of every service in bundle.json (`services[].assets[]`) is checked beneath the
//! bundle directory, through its confined handle (no link followed, only regular files read):
//!
//! - a file: its SHA-256 and its size, as bundle.json gives them;
//! - an unpacked directory (`"unpacked": true`): the tree digest of `manifest::tree` over the
//!   regular files found below it (their paths, modes, sizes and SHA-256s), and their total
//!   size. Anything else below it (a link, a FIFO, a device) is refused;
//! - an asset without a `sha256`: its size when given, else that it exists.
//!
//! A `sha256` that is not 64 lowercase hex digits (the corpus has placeholders), a missing
//! asset, or any difference refuses the start, exit code 2 (a bad bundle), with a message that
//! names the asset, the expected and the found digest; nothing is started, and the telemetry
//! records `asset_checksum_mismatch`.
//!
//! **Verified once:** hashing a large asset on every start would cost seconds, so what was
//! verified is recorded in app data (`runtime/assets.json`): per asset, its path, its digest
//! and a fingerprint of the `lstat` of each of its files (path, size, mtime, ctime, device,
//! inode, mode), for this bundle directory. A later start lists the files again (cheap) and
//! hashes only the assets whose fingerprint changed: rewriting a file changes its ctime,
//! which no unprivileged process can set back. `assets_verified` in the telemetry says how
//! many were hashed and how many were known.
//!
//! **Invariant:** nothing of the bundle is written; the record is replaced atomically through
//! the app data directory's handle.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::confine::{Dir, Kind, RelPath};
use crate::secrets::hex;

/// Where the record of verified assets lives, in `runtime/`.
pub const STATE_FILE: &str = "assets.json";
/// The largest record read (a few hundred bytes per asset).
const STATE_LIMIT: u64 = 4 << 20;
/// Files an unpacked asset may hold (the pipeline's unpacker allows 100 000 entries).
const MAX_FILES: usize = 200_000;
/// Directory depth of an unpacked asset.
const MAX_DEPTH: usize = 128;

/// What a start found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Assets hashed now.
    pub hashed: usize,
    /// Assets whose files had not changed since they were verified.
    pub known: usize,
}

/// A refused asset.
#[derive(Debug)]
pub struct Refusal {
    pub service: String,
    pub path: String,
    pub expected: String,
    pub found: String,
    pub message: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    bundle: String,
    /// By asset path.
    assets: BTreeMap<String, Known>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Known {
    sha256: String,
    stats: String,
}

/// One regular file of an asset: where, and its `lstat`.
struct Found {
    /// Relative to the asset (empty for a file asset).
    path: String,
    stat: libc::stat,
}

fn sha256(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// The fingerprint of the files' stats (what a later start compares).
fn fingerprint(files: &[Found]) -> String {
    let mut text = String::new();
    for file in files {
        let st = &file.stat;
        text.push_str(&format!(
            "{}\0{} {}.{} {}.{} {} {} {:o}\n",
            file.path,
            st.st_size,
            st.st_mtime,
            st.st_mtime_nsec,
            st.st_ctime,
            st.st_ctime_nsec,
            st.st_dev,
            st.st_ino,
            st.st_mode
        ));
    }
    sha256(text.as_bytes())
}

fn is_regular(stat: &libc::stat) -> bool {
    stat.st_mode & libc::S_IFMT == libc::S_IFREG
}

fn kind_words(stat: &libc::stat) -> &'static str {
    match stat.st_mode & libc::S_IFMT {
        libc::S_IFLNK => "a symbolic link",
        libc::S_IFDIR => "a directory",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFSOCK => "a socket",
        libc::S_IFCHR | libc::S_IFBLK => "a device",
        _ => "not a regular file",
    }
}

/// Every regular file below `dir`, sorted by path; anything else is an error.
fn walk(dir: &Dir, prefix: &str, depth: usize, out: &mut Vec<Found>) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("`{prefix}` is nested too deeply"));
    }
    for (name, stat) in dir.list().map_err(|err| err.to_string())? {
        let Ok(name) = String::from_utf8(name) else {
            return Err(format!("`{prefix}` holds a name that is not UTF-8"));
        };
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        match stat.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                let child = dir
                    .child_dir(name.as_bytes(), false)
                    .map_err(|err| err.to_string())?;
                walk(&child, &path, depth + 1, out)?;
            }
            libc::S_IFREG => {
                out.push(Found { path, stat });
                if out.len() > MAX_FILES {
                    return Err(format!("more than {MAX_FILES} files"));
                }
            }
            _ => return Err(format!("`{path}` is {}", kind_words(&stat))),
        }
    }
    Ok(())
}

/// The SHA-256 of one file of `dir`, opened without following a link; its stat must still be
/// the one listed (else the file changed while it was verified).
fn hash_file(dir: &Dir, name: &str, listed: &libc::stat) -> Result<String, String> {
    let mut file = dir
        .open_file_read(name.as_bytes())
        .map_err(|err| format!("`{name}`: {err}"))?;
    let metadata = file.metadata().map_err(|err| err.to_string())?;
    {
        use std::os::unix::fs::MetadataExt;
        if !metadata.is_file()
            || metadata.ino() != listed.st_ino
            || metadata.len() != listed.st_size as u64
        {
            return Err(format!("`{name}` changed while it was verified"));
        }
    }
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let read = file.read(&mut buffer).map_err(|err| err.to_string())?;
        if read == 0 {
            break;
        }
        context.update(&buffer[..read]);
    }
    Ok(hex(context.finish().as_ref()))
}

/// The directory holding `rel` and its last component.
fn parent_of(bundle: &Dir, rel: &RelPath) -> Result<(Dir, String), String> {
    let name = rel.file_name().ok_or("the bundle root is not an asset")?;
    let dir = bundle
        .open_dir(&rel.parent(), false)
        .map_err(|err| err.to_string())?;
    Ok((dir, name.to_string()))
}

/// One asset: its files' stats, and (unless `known` still matches them) its digest.
fn check(
    bundle: &Dir,
    rel: &RelPath,
    asset: &manifest::Asset,
    known: Option<&Known>,
) -> Result<(Known, bool), (String, String)> {
    let plain = |message: String| (String::new(), message);
    let unpacked = asset.unpacked == Some(true);
    let kind = bundle.probe(rel).map_err(|err| plain(err.to_string()))?;
    let (dir, files) = match (kind, unpacked) {
        (Kind::Missing, _) => return Err(plain("it is missing".into())),
        (Kind::File, false) => {
            let (dir, name) = parent_of(bundle, rel).map_err(plain)?;
            let stat = dir
                .lstat(name.as_bytes())
                .map_err(|err| plain(err.to_string()))?;
            if !is_regular(&stat) {
                return Err(plain(format!("it is {}", kind_words(&stat))));
            }
            (dir, vec![Found { path: name, stat }])
        }
        (Kind::Dir, true) => {
            let dir = bundle
                .open_dir(rel, false)
                .map_err(|err| plain(err.to_string()))?;
            let mut files = Vec::new();
            walk(&dir, "", 0, &mut files).map_err(plain)?;
            files.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
            (dir, files)
        }
        (Kind::Dir, false) => {
            return Err(plain(
                "it is a directory, and bundle.json does not say it was unpacked".into(),
            ));
        }
        (Kind::File, true) => {
            return Err(plain(
                "it is a file, and bundle.json says it is an unpacked directory".into(),
            ));
        }
        (Kind::Other, _) => return Err(plain("it is not a regular file".into())),
    };
    let size: u64 = files.iter().map(|file| file.stat.st_size as u64).sum();
    if let Some(expected) = asset.size_bytes
        && expected != size
    {
        return Err((
            format!("{expected} bytes"),
            format!("it holds {size} bytes, bundle.json says {expected}"),
        ));
    }
    let Some(expected) = &asset.sha256 else {
        return Ok((
            Known {
                sha256: String::new(),
                stats: String::new(),
            },
            false,
        ));
    };
    if !manifest::is_sha256(expected) {
        return Err(plain(format!(
            "bundle.json gives `{}` as its sha256, not a SHA-256 (64 lowercase hex digits), so it cannot be verified",
            expected.escape_debug()
        )));
    }
    let stats = fingerprint(&files);
    let now = Known {
        sha256: expected.clone(),
        stats,
    };
    if known == Some(&now) {
        return Ok((now, false));
    }
    let found = if unpacked {
        let mut listed = Vec::with_capacity(files.len());
        for file in &files {
            let (parent, name) = match file.path.rsplit_once('/') {
                Some((parent, name)) => (
                    dir.open_dir(
                        &RelPath::parse(parent)
                            .map_err(|err| plain(format!("`{parent}`: {err}")))?,
                        false,
                    )
                    .map_err(|err| plain(err.to_string()))?,
                    name,
                ),
                None => (
                    dir.try_clone().map_err(|err| plain(err.to_string()))?,
                    file.path.as_str(),
                ),
            };
            listed.push(manifest::tree::TreeFile {
                path: file.path.clone(),
                executable: file.stat.st_mode & 0o111 != 0,
                size: file.stat.st_size as u64,
                sha256: hash_file(&parent, name, &file.stat).map_err(plain)?,
            });
        }
        let text = manifest::tree::listing(&listed).map_err(plain)?;
        sha256(text.as_bytes())
    } else {
        hash_file(&dir, &files[0].path, &files[0].stat).map_err(plain)?
    };
    if &found != expected {
        return Err((
            found.clone(),
            format!(
                "its {} is {found}, bundle.json says {expected}",
                if unpacked { "tree digest" } else { "sha256" }
            ),
        ));
    }
    Ok((now, true))
}

/// Verifies every asset of `manifest` (paths already confined by the plan: `paths[service]`),
/// skipping those recorded as verified in `runtime_dir` with unchanged files; records the
/// result. `bundle_dir` keys the record.
pub fn verify(
    manifest: &manifest::Manifest,
    paths: &[Vec<RelPath>],
    bundle: &Dir,
    bundle_dir: &Path,
    runtime_dir: &Dir,
) -> Result<Report, Refusal> {
    let key = bundle_dir
        .canonicalize()
        .unwrap_or_else(|_| bundle_dir.to_path_buf())
        .to_string_lossy()
        .into_owned();
    let previous: State = runtime_dir
        .read(STATE_FILE, STATE_LIMIT)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .filter(|state: &State| state.bundle == key)
        .unwrap_or_default();
    let mut state = State {
        bundle: key,
        assets: BTreeMap::new(),
    };
    let mut report = Report::default();
    for (service, rels) in manifest.services.iter().zip(paths) {
        for (asset, rel) in service.assets().iter().zip(rels) {
            let path = rel.to_string();
            if state.assets.contains_key(&path) {
                continue;
            }
            match check(bundle, rel, asset, previous.assets.get(&path)) {
                Ok((known, hashed)) => {
                    if hashed {
                        report.hashed += 1;
                    } else if !known.sha256.is_empty() {
                        report.known += 1;
                    }
                    if !known.sha256.is_empty() {
                        state.assets.insert(path, known);
                    }
                }
                Err((found, problem)) => {
                    let expected = asset.sha256.clone().unwrap_or_default();
                    return Err(Refusal {
                        service: service.id.to_string(),
                        message: format!(
                            "asset `{path}` of service `{}` does not match bundle.json: {problem}; the bundle is damaged or was changed after it was built: reinstall it",
                            service.id
                        ),
                        path,
                        expected,
                        found,
                    });
                }
            }
        }
    }
    if state.assets != previous.assets || report.hashed > 0 {
        let text = serde_json::to_vec_pretty(&state).expect("the record serializes");
        // Not being able to record costs a re-hash at the next start, nothing else.
        let _ = runtime_dir.replace(STATE_FILE, &text, 0o644);
    }
    Ok(report)
}
