//! The timestamp every artifact carries: `SOURCE_DATE_EPOCH` when it is set (the
//! reproducible-builds.org convention), else the time of the checkout's last commit, else
//! 1980-01-01 (the earliest a zip can say).
//!
//! The commit time costs no process on a no-op: the commit id is read from `.git` (HEAD, the
//! branch's ref file or `packed-refs`; a worktree's `.git` file and `commondir` are followed),
//! and its time is cached in `.xbundle/tools/commit-time` beside it; only a new commit runs
//! `git show -s --format=%ct <id>` once.

use std::path::{Path, PathBuf};

use camino::Utf8Path;

use super::DEFAULT_EPOCH;

/// Where the commit time is cached, relative to the root.
const CACHE: &str = ".xbundle/tools/commit-time";

/// Why an explicit `SOURCE_DATE_EPOCH` is refused.
pub fn parse_env(value: &std::ffi::OsStr) -> Result<u64, String> {
    value
        .to_str()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            format!(
                "SOURCE_DATE_EPOCH={} is not a number of seconds since 1970",
                value.to_string_lossy()
            )
        })
}

/// The epoch of the artifacts built from `root`.
pub fn source_date_epoch(root: &Utf8Path) -> u64 {
    if let Some(value) = std::env::var_os("SOURCE_DATE_EPOCH")
        && let Ok(epoch) = parse_env(&value)
    {
        return epoch;
    }
    last_commit_time(root.as_std_path()).unwrap_or(DEFAULT_EPOCH)
}

fn read_trimmed(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.trim().to_string())
}

fn is_commit_id(text: &str) -> bool {
    (text.len() == 40 || text.len() == 64) && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// The checkout's git directory and common directory.
fn git_dirs(root: &Path) -> Option<(PathBuf, PathBuf)> {
    let dot_git = root.join(".git");
    let meta = std::fs::symlink_metadata(&dot_git).ok()?;
    let git_dir = if meta.is_dir() {
        dot_git
    } else if meta.is_file() {
        let text = read_trimmed(&dot_git)?;
        let target = PathBuf::from(text.strip_prefix("gitdir:")?.trim());
        if target.is_absolute() {
            target
        } else {
            root.join(target)
        }
    } else {
        return None;
    };
    let common = match read_trimmed(&git_dir.join("commondir")) {
        Some(common) if Path::new(&common).is_absolute() => PathBuf::from(common),
        Some(common) => git_dir.join(common),
        None => git_dir.clone(),
    };
    Some((git_dir, common))
}

/// The commit HEAD names, read from the files (no process).
pub fn head_commit(root: &Path) -> Option<String> {
    let (git_dir, common) = git_dirs(root)?;
    let head = read_trimmed(&git_dir.join("HEAD"))?;
    if is_commit_id(&head) {
        return Some(head);
    }
    let reference = head.strip_prefix("ref:")?.trim();
    if reference
        .split('/')
        .any(|part| part == ".." || part.is_empty())
    {
        return None;
    }
    for dir in [&git_dir, &common] {
        if let Some(id) = read_trimmed(&dir.join(reference))
            && is_commit_id(&id)
        {
            return Some(id);
        }
    }
    let packed = std::fs::read_to_string(common.join("packed-refs")).ok()?;
    packed.lines().find_map(|line| {
        let (id, name) = line.split_once(' ')?;
        (name == reference && is_commit_id(id)).then(|| id.to_string())
    })
}

fn last_commit_time(root: &Path) -> Option<u64> {
    let id = head_commit(root)?;
    let cache = root.join(CACHE);
    if let Some(cached) = read_trimmed(&cache)
        && let Some((cached_id, time)) = cached.split_once(' ')
        && cached_id == id
        && let Ok(time) = time.parse::<u64>()
    {
        return Some(time);
    }
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["show", "-s", "--format=%ct", &id])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let time: u64 = String::from_utf8(output.stdout).ok()?.trim().parse().ok()?;
    // Best effort: a cache that cannot be written only costs one `git show` next time.
    if let Ok(dir) = engine::confine::Dir::open_root(root)
        && dir.create_dir_all(".xbundle/tools").is_ok()
    {
        let _ = dir.write_file(CACHE, 0o644, |file: &mut std::fs::File| {
            use std::io::Write;
            file.write_all(format!("{id} {time}\n").as_bytes())
                .map_err(|source| engine::confine::ConfineError::Io {
                    path: CACHE.to_string(),
                    source,
                })
        });
    }
    Some(time)
}
