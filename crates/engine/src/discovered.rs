//! Discovered inputs: what an action found out it read, recorded with its result and re-checked
//! before that result is trusted again.
//!
//! A task's key covers what is known before it runs (see [`crate::key`]). An action may also
//! report, when it runs, the files it actually read or looked for and the directory listings it
//! depended on ([`Discovered`]; a compiler's depfile, `go list -deps`, the definition files an
//! analysis read). After a successful run the engine records ([`record`]):
//!
//! - each discovered **file**: its digest through the stat cache, read through
//!   [`crate::confine`] (a link to a file inside the workspace counts as that file; a link
//!   leading outside, or a link where a directory is expected, fails the task), or *absent*
//!   (missing, a directory, a dangling link, a FIFO: nothing a tool could have read as a file);
//! - each **listing** (all reported patterns as one set, `!` excludes, walked like input globs
//!   from the root, never through a link): the sorted set of matching paths;
//!
//! leaving out the task's declared inputs (already in the key) and its own outputs. The record
//! is stored with the action result ([`crate::store::ActionResult::discovered`]); an entry
//! without one behaves as before.
//!
//! **Lookup** ([`check`]): an entry found under the static key is a hit only if every recorded
//! file still has its digest (absent stays absent) and the listing still yields the same set;
//! otherwise it is a miss, and the typed reasons say which ([`DirtyReason::DiscoveredChanged`],
//! `…Appeared`, `…Disappeared`, `ListingAppeared`, `ListingDisappeared`). `run`, `--dry-run` and
//! `explain` ([`crate::Engine::probe`]) check the same way, so they tell the same story. One
//! entry per static key: a run after a discovered change replaces it (changing a file back runs
//! the task again).
//!
//! **Untrusted text** ([`validate`]): what an action reports comes from tools' output. Absolute
//! paths, `..`, `.` or empty components, NUL and other control characters, paths over
//! [`MAX_PATH`] bytes and lists over [`MAX_FILES`] / [`MAX_PATTERNS`] fail the task with a
//! message naming the path (escaped). A stored record is untrusted too ([`check_stored`], part
//! of [`crate::guard::check_entry`]).
//!
//! **Changed while the task ran:** before an action starts, the engine takes the file system's
//! clock (a probe file, like the stat cache's racy-clean rule). A discovered file whose mtime or
//! ctime is not older than that clock (or, for an absent file, whose nearest existing directory
//! changed since, unless the task wrote its own outputs below that directory) may have been
//! read in another version than the one digested afterwards. It is
//! recorded as *changed during the run*: the result is stored, the task warns, and the next
//! lookup is a miss ([`DirtyReason::DiscoveredChangedDuringRun`]), so a later run never trusts
//! such an entry. This errs on the safe side: a file written just before the task started, in
//! the same tick of a coarse file-system clock counts too, at the cost of one more run. Known
//! limits: a file the task read and someone deleted while it ran, from a directory the task
//! writes its outputs into, is recorded absent; a listing has no such check (a file added to a
//! listed directory while the task ran, and present when it ends, is in the recorded set).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::confine::{ConfineError, Dir, Kind};
use crate::digest::Digest;
use crate::files::{Patterns, Purpose, Tree, expand};
use crate::key::DirtyReason;
use crate::statcache::{FileStat, StatCache};
use crate::task::Discovered;

/// The most discovered files one result may record.
pub const MAX_FILES: usize = 100_000;
/// The most listing patterns one result may record.
pub const MAX_PATTERNS: usize = 1_000;
/// The most paths a listing may match.
pub const MAX_LISTED: usize = 200_000;
/// The longest discovered path or pattern, in bytes.
pub const MAX_PATH: usize = 4_096;

/// One discovered file as recorded after the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveredFile {
    /// Root-relative, `/`-separated.
    pub path: String,
    /// The content's digest when the run ended; `None`: absent.
    pub digest: Option<Digest>,
    /// It changed while the task ran: the result is never trusted for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub changed_during_run: bool,
}

/// What a result's discovered inputs were when it was made.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveredRecord {
    /// Sorted by path, unique.
    pub files: Vec<DiscoveredFile>,
    /// The listing patterns, one set, in the order reported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listings: Vec<String>,
    /// The root-relative paths they matched, sorted and unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listed: Vec<String>,
}

/// What the engine knows of the task whose discoveries are recorded or checked.
pub struct Context<'a> {
    pub tree: &'a Tree<'a>,
    pub stats: &'a StatCache,
    /// The task's cwd (root-relative) and output patterns: its own outputs are never recorded.
    pub cwd: &'a str,
    pub outputs: &'a Patterns,
}

impl Context<'_> {
    fn is_own_output(&self, path: &str) -> bool {
        let rest = if self.cwd.is_empty() {
            Some(path)
        } else {
            path.strip_prefix(self.cwd)
                .and_then(|rest| rest.strip_prefix('/'))
        };
        rest.is_some_and(|rest| self.outputs.matches(rest))
    }
}

/// A path for messages: control characters and quotes escaped.
fn shown(path: &str) -> String {
    let cut: String = path.chars().take(200).collect();
    let more = if cut.len() < path.len() { "…" } else { "" };
    format!("`{}{more}`", cut.escape_debug())
}

/// Why `path`, reported by an action or read from an entry, is refused.
fn path_problem(path: &str) -> Option<String> {
    if path.len() > MAX_PATH {
        return Some(format!("longer than {MAX_PATH} bytes"));
    }
    if path.chars().any(char::is_control) {
        return Some("holds a control character".into());
    }
    crate::confine::check_relative(path)
        .err()
        .map(|err| match err {
            ConfineError::Invalid { reason, .. } => {
                format!("not a relative path inside the workspace ({reason})")
            }
            other => other.to_string(),
        })
}

/// Checks what an action reported (see the module docs); the error names the first bad path.
pub fn validate(discovered: &Discovered) -> Result<(), String> {
    if discovered.files.len() > MAX_FILES {
        return Err(format!(
            "the task reported {} discovered files, more than {MAX_FILES}",
            discovered.files.len()
        ));
    }
    if discovered.listings.len() > MAX_PATTERNS {
        return Err(format!(
            "the task reported {} discovered listing patterns, more than {MAX_PATTERNS}",
            discovered.listings.len()
        ));
    }
    for path in &discovered.files {
        if let Some(problem) = path_problem(path) {
            return Err(format!(
                "discovered input {} is refused: {problem}",
                shown(path)
            ));
        }
    }
    for pattern in &discovered.listings {
        let (_, bare) = crate::files::split(pattern);
        let problem = if pattern.len() > MAX_PATH {
            Some(format!("longer than {MAX_PATH} bytes"))
        } else if pattern.chars().any(char::is_control) {
            Some("holds a control character".into())
        } else {
            crate::files::validate(pattern)
                .err()
                .map(|err| err.message)
                .or_else(|| bare.is_empty().then(|| "empty".to_string()))
        };
        if let Some(problem) = problem {
            return Err(format!(
                "discovered listing {} is refused: {problem}",
                shown(pattern)
            ));
        }
    }
    Ok(())
}

/// Checks a record read from the store (untrusted): bounded, paths normalized, sorted and
/// unique, patterns valid.
pub fn check_stored(record: &DiscoveredRecord) -> Result<(), String> {
    if record.files.len() > MAX_FILES
        || record.listings.len() > MAX_PATTERNS
        || record.listed.len() > MAX_LISTED
    {
        return Err("discovered inputs exceed the engine's bounds".into());
    }
    for list in [
        record
            .files
            .iter()
            .map(|f| f.path.as_str())
            .collect::<Vec<_>>(),
        record.listed.iter().map(String::as_str).collect(),
    ] {
        let mut previous: Option<&str> = None;
        for path in list {
            if let Some(problem) = path_problem(path) {
                return Err(format!("discovered path {}: {problem}", shown(path)));
            }
            if previous.is_some_and(|previous| previous >= path) {
                return Err(format!(
                    "discovered paths are not sorted and unique at {}",
                    shown(path)
                ));
            }
            previous = Some(path);
        }
    }
    if !record.listings.is_empty() {
        validate(&Discovered {
            files: Vec::new(),
            listings: record.listings.clone(),
        })?;
    }
    Ok(())
}

/// What a discovered path is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Absent,
    Present(Digest, FileStat),
}

/// The current state of the root-relative `path` (see the module docs), digested through the
/// stat cache.
fn state(context: &Context<'_>, path: &str) -> Result<State, String> {
    let root = context.tree.root;
    let found = match root.lstat(path) {
        Ok(found) => found,
        // A file where a directory of the path should be: nothing can be read there.
        Err(ConfineError::NotDirectory { .. }) => return Ok(State::Absent),
        Err(err) => return Err(err.to_string()),
    };
    let (readable, stat) = match found {
        None | Some((Kind::Dir | Kind::Other, _)) => return Ok(State::Absent),
        Some((Kind::File, stat)) => (path.to_string(), stat),
        Some((Kind::Symlink, _)) => {
            let Ok(target) = std::fs::canonicalize(root.join(path)) else {
                return Ok(State::Absent); // dangling
            };
            let Some(inside) = target
                .strip_prefix(context.tree.canonical_root)
                .ok()
                .and_then(Path::to_str)
                .map(str::to_string)
            else {
                return Err(format!(
                    "{} is a symbolic link to `{}`, outside the workspace",
                    shown(path),
                    target.display()
                ));
            };
            match root.lstat(&inside) {
                Ok(Some((Kind::File, stat))) => (inside, stat),
                Ok(_) => return Ok(State::Absent),
                Err(err) => return Err(err.to_string()),
            }
        }
    };
    let hashed = context
        .stats
        .digest_with(path, stat, &mut || match root.open_file(&readable) {
            Ok(Some((file, _))) => Ok(file),
            Ok(None) => Err(std::io::ErrorKind::NotFound.into()),
            Err(err) => Err(std::io::Error::other(err)),
        });
    match hashed {
        Ok(hashed) => Ok(State::Present(hashed.digest, hashed.stat)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(State::Absent),
        Err(err) => Err(format!("{}: {err}", shown(path))),
    }
}

/// Whether `path` (absent) may have been removed while the task ran: its nearest existing
/// directory changed at or after `clock`, and not only because the task wrote its outputs there
/// (`output_dirs`: the directories holding them, and theirs up to the root).
fn absent_racy(root: &Dir, path: &str, clock: i64, output_dirs: &HashSet<String>) -> bool {
    // The nearest existing directory above `path`, with its stat (the root's own, `fstat`, when
    // nothing below it exists).
    let mut current = path;
    let (nearest, stat) = loop {
        let Some((parent, _)) = current.rsplit_once('/') else {
            match rustix::fs::fstat(root) {
                Ok(stat) => break ("", crate::statcache::FileStat::from_stat(&stat)),
                Err(_) => return true,
            }
        };
        match root.lstat(parent) {
            Ok(Some((Kind::Dir, stat))) => break (parent, stat),
            Ok(None) => current = parent,
            _ => return true,
        }
    };
    if output_dirs.contains(nearest) {
        return false;
    }
    stat.mtime_ns >= clock || stat.ctime_ns >= clock
}

/// The directories holding `outputs` (root-relative files) and their ancestors, the root ("")
/// included.
pub fn output_dirs<'a>(outputs: impl IntoIterator<Item = &'a str>) -> HashSet<String> {
    let mut dirs = HashSet::new();
    for path in outputs {
        let mut current = path;
        while let Some((parent, _)) = current.rsplit_once('/') {
            if !dirs.insert(parent.to_string()) {
                break;
            }
            current = parent;
        }
        dirs.insert(String::new());
    }
    dirs
}

/// The paths `patterns` match below the root, minus the task's outputs, sorted and unique.
fn listing(context: &Context<'_>, patterns: &Patterns) -> Result<Vec<String>, String> {
    let (found, _) = expand(
        context.tree,
        context.tree.root,
        patterns,
        None,
        Purpose::Remove,
    )
    .map_err(|err| format!("discovered listing: {err}"))?;
    let listed: Vec<String> = found
        .into_iter()
        .map(|file| file.relative)
        .filter(|path| !context.is_own_output(path))
        .collect();
    if listed.len() > MAX_LISTED {
        return Err(format!(
            "the discovered listing matches {} paths, more than {MAX_LISTED}",
            listed.len()
        ));
    }
    Ok(listed)
}

/// What [`record`] made, and the files that changed while the task ran.
#[derive(Debug)]
pub struct Recorded {
    pub record: DiscoveredRecord,
    pub changed_during_run: Vec<String>,
}

/// Records `discovered` after a successful run that started at `clock` (the file system's
/// clock, ns). `declared` are the task's declared inputs (already in its key: left out);
/// `output_dirs` where it wrote its outputs ([`output_dirs`]).
pub fn record(
    context: &Context<'_>,
    discovered: &Discovered,
    declared: &BTreeMap<String, Digest>,
    clock: i64,
    output_dirs: &HashSet<String>,
) -> Result<Recorded, String> {
    validate(discovered)?;
    let paths: BTreeSet<&str> = discovered
        .files
        .iter()
        .map(String::as_str)
        .filter(|path| !declared.contains_key(*path) && !context.is_own_output(path))
        .collect();
    let mut files = Vec::with_capacity(paths.len());
    let mut changed_during_run = Vec::new();
    for path in paths {
        let state = state(context, path)
            .map_err(|why| format!("discovered input {}: {why}", shown(path)))?;
        let racy = match state {
            State::Absent => absent_racy(context.tree.root, path, clock, output_dirs),
            State::Present(_, stat) => stat.mtime_ns >= clock || stat.ctime_ns >= clock,
        };
        if racy {
            changed_during_run.push(path.to_string());
        }
        files.push(DiscoveredFile {
            path: path.to_string(),
            digest: match state {
                State::Absent => None,
                State::Present(digest, _) => Some(digest),
            },
            changed_during_run: racy,
        });
    }
    let listed = if discovered.listings.is_empty() {
        Vec::new()
    } else {
        let patterns = Patterns::new(&discovered.listings).map_err(|err| err.to_string())?;
        listing(context, &patterns)?
    };
    Ok(Recorded {
        record: DiscoveredRecord {
            files,
            listings: discovered.listings.clone(),
            listed,
        },
        changed_during_run,
    })
}

/// Why `record` no longer holds in the tree (empty: the result may be used). Never fails: what
/// cannot be read is a change.
pub fn check(context: &Context<'_>, record: &DiscoveredRecord) -> Vec<DirtyReason> {
    let mut reasons = Vec::new();
    for file in &record.files {
        if file.changed_during_run {
            reasons.push(DirtyReason::DiscoveredChangedDuringRun(file.path.clone()));
            continue;
        }
        let now = match state(context, &file.path) {
            Ok(State::Absent) => None,
            Ok(State::Present(digest, _)) => Some(digest),
            Err(_) => {
                reasons.push(DirtyReason::DiscoveredChanged(file.path.clone()));
                continue;
            }
        };
        match (file.digest, now) {
            (None, Some(_)) => reasons.push(DirtyReason::DiscoveredAppeared(file.path.clone())),
            (Some(_), None) => reasons.push(DirtyReason::DiscoveredDisappeared(file.path.clone())),
            (Some(then), Some(now)) if then != now => {
                reasons.push(DirtyReason::DiscoveredChanged(file.path.clone()))
            }
            _ => {}
        }
    }
    if !record.listings.is_empty() {
        let patterns = match Patterns::new(&record.listings) {
            Ok(patterns) => patterns,
            Err(err) => {
                reasons.push(DirtyReason::ListingUnreadable(err.to_string()));
                return reasons;
            }
        };
        match listing(context, &patterns) {
            Ok(now) => {
                let then: BTreeSet<&String> = record.listed.iter().collect();
                let now_set: BTreeSet<&String> = now.iter().collect();
                let pattern_of = |path: &str| {
                    patterns
                        .source_matching(path)
                        .unwrap_or_default()
                        .to_string()
                };
                for path in now_set.difference(&then) {
                    reasons.push(DirtyReason::ListingAppeared {
                        pattern: pattern_of(path),
                        path: (*path).clone(),
                    });
                }
                for path in then.difference(&now_set) {
                    reasons.push(DirtyReason::ListingDisappeared {
                        pattern: pattern_of(path),
                        path: (*path).clone(),
                    });
                }
            }
            Err(why) => reasons.push(DirtyReason::ListingUnreadable(why)),
        }
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    struct Fixture {
        dir: tempfile::TempDir,
        root: Dir,
        canonical: std::path::PathBuf,
        stats: StatCache,
        outputs: Patterns,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let root = Dir::open_root(dir.path()).unwrap();
            let canonical = fs::canonicalize(dir.path()).unwrap();
            Fixture {
                dir,
                root,
                canonical,
                stats: StatCache::ephemeral(),
                outputs: Patterns::new(&["out/**".to_string()]).unwrap(),
            }
        }

        fn write(&self, path: &str, content: &str) {
            let path = self.dir.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }

        fn with<T>(&self, f: impl FnOnce(&Context<'_>) -> T) -> T {
            let never = [".xbundle".to_string()];
            let tree = Tree {
                root: &self.root,
                canonical_root: &self.canonical,
                never_enter: &never,
                listings: None,
                stat_when_opened: false,
                room_before: 0,
            };
            let context = Context {
                tree: &tree,
                stats: &self.stats,
                cwd: "pkg",
                outputs: &self.outputs,
            };
            f(&context)
        }

        fn record(&self, discovered: &Discovered) -> Result<Recorded, String> {
            // The task started after the end of time: nothing changed while it ran, unless a
            // test gives its own clock.
            self.with(|context| {
                record(
                    context,
                    discovered,
                    &BTreeMap::new(),
                    i64::MAX,
                    &HashSet::new(),
                )
            })
        }

        fn check(&self, record: &DiscoveredRecord) -> Vec<String> {
            self.with(|context| check(context, record))
                .iter()
                .map(ToString::to_string)
                .collect()
        }
    }

    fn files(paths: &[&str]) -> Discovered {
        Discovered {
            files: paths.iter().map(|p| p.to_string()).collect(),
            listings: Vec::new(),
        }
    }

    #[test]
    fn files_changed_appeared_and_disappeared() {
        let fx = Fixture::new();
        fx.write("inc/a.h", "a");
        fx.write("inc/b.h", "b");
        fx.write("pkg/out/x.o", "own output");
        let recorded = fx
            .record(&files(&[
                "inc/b.h",
                "inc/a.h",
                "inc/missing.h",
                "inc/a.h",
                "pkg/out/x.o",
            ]))
            .unwrap();
        let paths: Vec<_> = recorded
            .record
            .files
            .iter()
            .map(|f| f.path.as_str())
            .collect();
        assert_eq!(
            paths,
            ["inc/a.h", "inc/b.h", "inc/missing.h"],
            "sorted, unique, no outputs"
        );
        assert_eq!(recorded.record.files[2].digest, None);
        assert!(fx.check(&recorded.record).is_empty());
        fx.write("inc/a.h", "A");
        fs::remove_file(fx.dir.path().join("inc/b.h")).unwrap();
        fx.write("inc/missing.h", "now here");
        fx.write("inc/unrelated.h", "not discovered");
        assert_eq!(
            fx.check(&recorded.record),
            [
                "discovered input inc/a.h changed",
                "discovered input inc/b.h disappeared",
                "discovered input inc/missing.h appeared",
            ]
        );
    }

    #[test]
    fn listings_report_the_path_and_pattern() {
        let fx = Fixture::new();
        fx.write("api/main.go", "m");
        fx.write("api/main_test.go", "t");
        let discovered = Discovered {
            files: Vec::new(),
            listings: vec!["api/*.go".into(), "!api/*_test.go".into()],
        };
        let recorded = fx.record(&discovered).unwrap();
        assert_eq!(recorded.record.listed, ["api/main.go"]);
        fx.write("api/main.go", "content is not the listing's business");
        fx.write("api/other_test.go", "excluded");
        assert!(fx.check(&recorded.record).is_empty());
        fx.write("api/extra.go", "e");
        fs::remove_file(fx.dir.path().join("api/main.go")).unwrap();
        assert_eq!(
            fx.check(&recorded.record),
            [
                "a file matching discovered listing api/*.go appeared: api/extra.go",
                "a file matching discovered listing api/*.go disappeared: api/main.go",
            ]
        );
    }

    #[test]
    fn untrusted_paths_are_refused_by_name() {
        let fx = Fixture::new();
        for (path, why) in [
            ("/etc/passwd", "absolute path"),
            ("../outside", "`..` component"),
            ("a/../b", "`..` component"),
            ("a//b", "empty component"),
            ("./a", "`.` component"),
            ("a\u{1b}[31m", "control character"),
            ("", "empty path"),
        ] {
            let err = fx.record(&files(&[path])).expect_err(path);
            assert!(err.contains(why), "{path:?}: {err}");
            assert!(!err.contains('\u{1b}'), "escaped: {err}");
        }
        let long = "a/".repeat(3000);
        assert!(
            fx.record(&files(&[&long]))
                .unwrap_err()
                .contains("longer than")
        );
        let many = Discovered {
            files: vec!["a".to_string(); MAX_FILES + 1],
            listings: Vec::new(),
        };
        assert!(fx.record(&many).unwrap_err().contains("more than"));
        for pattern in ["../x/*", "/abs/*", "!"] {
            let discovered = Discovered {
                files: Vec::new(),
                listings: vec![pattern.into()],
            };
            assert!(fx.record(&discovered).is_err(), "{pattern}");
        }
    }

    #[test]
    fn links_inside_count_links_outside_fail() {
        use std::os::unix::fs::symlink;
        let fx = Fixture::new();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret.h"), "s").unwrap();
        fx.write("inc/real.h", "r");
        symlink("real.h", fx.dir.path().join("inc/alias.h")).unwrap();
        symlink(
            outside.path().join("secret.h"),
            fx.dir.path().join("inc/out.h"),
        )
        .unwrap();
        symlink(outside.path(), fx.dir.path().join("linkdir")).unwrap();
        symlink("nowhere", fx.dir.path().join("inc/dangling.h")).unwrap();
        let recorded = fx
            .record(&files(&["inc/alias.h", "inc/dangling.h"]))
            .unwrap();
        assert_eq!(
            recorded.record.files[0].digest,
            Some(Digest::of_bytes(b"r")),
            "a link inside counts as its file"
        );
        assert_eq!(recorded.record.files[1].digest, None, "dangling: absent");
        let err = fx.record(&files(&["inc/out.h"])).unwrap_err();
        assert!(err.contains("outside the workspace"), "{err}");
        let err = fx.record(&files(&["linkdir/secret.h"])).unwrap_err();
        assert!(
            err.contains("symbolic link where a directory is expected"),
            "{err}"
        );
        // At lookup, what cannot be read is a change, never an error or a hit.
        let mut record = recorded.record.clone();
        record.files[0].path = "linkdir/secret.h".into();
        assert_eq!(
            fx.check(&record),
            ["discovered input linkdir/secret.h changed"]
        );
    }

    #[test]
    fn an_absent_top_level_file_is_not_a_change_during_the_run() {
        let fx = Fixture::new();
        fx.write("inc/a.h", "a");
        // The root was last changed before the task started.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let probe = tempfile::NamedTempFile::new().unwrap();
        let clock = FileStat::of(&probe.as_file().metadata().unwrap()).mtime_ns;
        let recorded = fx
            .with(|context| {
                record(
                    context,
                    &files(&["config.txt"]),
                    &BTreeMap::new(),
                    clock,
                    &HashSet::new(),
                )
            })
            .unwrap();
        assert!(recorded.changed_during_run.is_empty(), "{recorded:?}");
        assert!(fx.check(&recorded.record).is_empty());
    }

    #[test]
    fn a_file_changed_while_the_task_ran_is_never_trusted() {
        let fx = Fixture::new();
        fx.write("inc/a.h", "old");
        fx.write("inc/b.h", "b");
        // The task starts: the clock is taken after b.h was written.
        let probe = fx.dir.path().join("probe");
        fs::write(&probe, "").unwrap();
        let clock = FileStat::of(&fs::metadata(&probe).unwrap()).mtime_ns;
        // While it runs, a.h is rewritten.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fx.write("inc/a.h", "new");
        let recorded = fx
            .with(|context| {
                record(
                    context,
                    &files(&["inc/a.h"]),
                    &BTreeMap::new(),
                    clock,
                    &HashSet::new(),
                )
            })
            .unwrap();
        assert_eq!(recorded.changed_during_run, ["inc/a.h"]);
        // Even though a.h now has the digest recorded, the entry is a miss.
        assert_eq!(
            fx.check(&recorded.record),
            ["discovered input inc/a.h changed while the task last ran"]
        );
        // An absent file whose directory changed during the run: the same.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&probe, "x").unwrap();
        let clock = FileStat::of(&fs::metadata(&probe).unwrap()).mtime_ns;
        fs::remove_file(fx.dir.path().join("inc/b.h")).unwrap();
        let recorded = fx
            .with(|context| {
                record(
                    context,
                    &files(&["inc/b.h"]),
                    &BTreeMap::new(),
                    clock,
                    &HashSet::new(),
                )
            })
            .unwrap();
        assert_eq!(recorded.changed_during_run, ["inc/b.h"]);
        // Unless the task's own outputs, written there, explain the directory's change.
        let recorded = fx
            .with(|context| {
                let dirs = output_dirs(["inc/gen/x.h"]);
                record(
                    context,
                    &files(&["inc/b.h"]),
                    &BTreeMap::new(),
                    clock,
                    &dirs,
                )
            })
            .unwrap();
        assert!(recorded.changed_during_run.is_empty());
    }

    #[test]
    fn stored_records_are_checked() {
        let good = DiscoveredRecord {
            files: vec![DiscoveredFile {
                path: "a".into(),
                digest: None,
                changed_during_run: false,
            }],
            listings: vec!["src/*.go".into()],
            listed: vec!["src/a.go".into()],
        };
        assert!(check_stored(&good).is_ok());
        let mut bad = good.clone();
        bad.files[0].path = "../../etc/passwd".into();
        assert!(check_stored(&bad).is_err());
        let mut bad = good.clone();
        bad.listed = vec!["b".into(), "a".into()];
        assert!(check_stored(&bad).is_err());
        let mut bad = good;
        bad.listings = vec!["/x".into()];
        assert!(check_stored(&bad).is_err());
    }
}
