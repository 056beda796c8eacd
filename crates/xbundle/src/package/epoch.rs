//! The timestamp every artifact carries: `SOURCE_DATE_EPOCH` when it is set (the
//! reproducible-builds.org convention), else the time of the checkout's last commit, else
//! 1980-01-01 (the earliest a zip can say).
//!
//! **Invariant:** a `SOURCE_DATE_EPOCH` that is set is used or refused, never ignored: it must
//! be a whole number of seconds since 1970-01-01 UTC (ASCII digits, as `date +%s` prints it; no
//! sign, no spaces, not empty) no later than 9999-12-31T23:59:59Z ([`MAX_EPOCH`], so every date
//! format keeps a four-digit year). A bad value is a planning error naming the variable and what
//! to write ([`BadEpoch`]; the CLI reports it like any bad input, exit code 2).
//!
//! **Invariant:** the commit time costs no process on a no-op: the commit id is read from
//! `.git` (of the root or the nearest directory above it; HEAD, the branch's ref file or
//! `packed-refs`; a worktree's `.git` file and `commondir` are followed), and its time is cached in `.xbundle/tools/commit-time` beside it
//! (`<commit id> <seconds>`); only a new commit runs `git show -s --format=%ct <id>`, once.
//! Without git or a commit, the epoch is 1980-01-01 ([`DEFAULT_EPOCH`]).

use std::path::{Path, PathBuf};

use camino::Utf8Path;

use super::DEFAULT_EPOCH;

/// Where the commit time is cached, relative to the root.
const CACHE: &str = ".xbundle/tools/commit-time";

/// The variable.
pub const VARIABLE: &str = "SOURCE_DATE_EPOCH";

/// The latest epoch accepted: 9999-12-31T23:59:59Z.
pub const MAX_EPOCH: u64 = 253_402_300_799;

/// A `SOURCE_DATE_EPOCH` that cannot be used: what it holds (escaped) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEpoch {
    pub value: String,
    pub problem: &'static str,
}

impl std::fmt::Display for BadEpoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{VARIABLE}=\"{}\" {}", self.value, self.problem)
    }
}

impl BadEpoch {
    /// What to write instead.
    pub fn help(&self) -> String {
        format!(
            "set {VARIABLE} to a whole number of seconds since 1970-01-01 UTC, e.g. {VARIABLE}=$(git log -1 --format=%ct), or unset it to use the last commit's time"
        )
    }
}

/// Parses an explicit `SOURCE_DATE_EPOCH` (see the module docs).
pub fn parse_env(value: &std::ffi::OsStr) -> Result<u64, BadEpoch> {
    let shown = value.to_string_lossy().escape_debug().to_string();
    let bad = |problem| BadEpoch {
        value: shown.clone(),
        problem,
    };
    let text = value.to_str().ok_or_else(|| bad("is not text"))?;
    if text.is_empty() {
        return Err(bad("is empty"));
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(
            "is not a whole number of seconds since 1970 (only the digits 0-9)",
        ));
    }
    match text.parse::<u64>() {
        Ok(epoch) if epoch <= MAX_EPOCH => Ok(epoch),
        _ => Err(bad("is later than the year 9999")),
    }
}

/// The epoch of the artifacts built from `root` (see the module docs).
pub fn source_date_epoch(root: &Utf8Path) -> Result<u64, BadEpoch> {
    if let Some(value) = std::env::var_os(VARIABLE) {
        return parse_env(&value);
    }
    Ok(last_commit_time(root.as_std_path())
        .filter(|time| *time <= MAX_EPOCH)
        .unwrap_or(DEFAULT_EPOCH))
}

/// The most of a git file read (`packed-refs` of a large repository included).
const READ_LIMIT: u64 = 64 << 20;

/// A git file's text, trimmed: a regular file only (a FIFO is never waited on), at most
/// [`READ_LIMIT`] bytes.
fn read_trimmed(path: &Path) -> Option<String> {
    use std::io::Read;
    if !std::fs::metadata(path).ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(READ_LIMIT)
        .read_to_string(&mut text)
        .ok()?;
    Some(text.trim().to_string())
}

fn is_commit_id(text: &str) -> bool {
    (text.len() == 40 || text.len() == 64) && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// The checkout's git directory and common directory: the `.git` of the root or of the
/// nearest directory above it (bundle.toml may live in a subdirectory of a repository).
fn git_dirs(root: &Path) -> Option<(PathBuf, PathBuf)> {
    let (top, meta) = root.ancestors().find_map(|dir| {
        let meta = std::fs::symlink_metadata(dir.join(".git")).ok()?;
        Some((dir, meta))
    })?;
    let dot_git = top.join(".git");
    let git_dir = if meta.is_dir() {
        dot_git
    } else if meta.is_file() {
        let text = read_trimmed(&dot_git)?;
        let target = PathBuf::from(text.strip_prefix("gitdir:")?.trim());
        if target.is_absolute() {
            target
        } else {
            top.join(target)
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
    let packed = read_trimmed(&common.join("packed-refs"))?;
    packed.lines().find_map(|line| {
        let (id, name) = line.split_once(' ')?;
        (name == reference && is_commit_id(id)).then(|| id.to_string())
    })
}

fn last_commit_time(root: &Path) -> Option<u64> {
    let id = head_commit(root)?;
    // The cache is xbundle's own file: read through no link, a regular file, small.
    let dir = engine::confine::Dir::open_root(root).ok();
    if let Some(bytes) = dir
        .as_ref()
        .and_then(|dir| dir.read_file(CACHE, 256).ok().flatten())
        && let Ok(cached) = String::from_utf8(bytes)
        && let Some((cached_id, time)) = cached.trim().split_once(' ')
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
    if let Some(dir) = dir
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_epochs_are_digits_within_four_digit_years() {
        assert_eq!(parse_env("1700000000".as_ref()), Ok(1_700_000_000));
        assert_eq!(parse_env("0".as_ref()), Ok(0));
        assert_eq!(parse_env("253402300799".as_ref()), Ok(MAX_EPOCH));
        for (value, says) in [
            ("", "is empty"),
            ("yesterday", "only the digits"),
            ("-5", "only the digits"),
            ("+5", "only the digits"),
            ("1.5", "only the digits"),
            (" 17", "only the digits"),
            ("17\n", "only the digits"),
            ("253402300800", "year 9999"),
            ("99999999999999999999999", "year 9999"),
        ] {
            let err = parse_env(value.as_ref()).unwrap_err();
            assert!(err.problem.contains(says), "{value:?}: {err}");
            assert!(err.to_string().starts_with("SOURCE_DATE_EPOCH="), "{err}");
        }
        // Control characters are shown escaped, never written to a terminal.
        let err = parse_env("1\u{1b}[2J".as_ref()).unwrap_err();
        assert!(!err.to_string().contains('\u{1b}'), "{err}");
    }
}
