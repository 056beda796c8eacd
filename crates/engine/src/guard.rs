//! What the engine may write or delete in a work tree, and which cache entries it may restore.
//!
//! Defense in depth behind the front end's load-time checks (which reject output patterns that
//! could match these paths with a located diagnostic): whatever a task definition or a cache
//! entry says, the engine itself never removes, restores or writes a **protected** path:
//! - a path with a `.git` component, in any case (the repository, a worktree's or submodule's
//!   `.git` file; `.GIT` is the same directory on a case-insensitive file system);
//! - a path inside the engine's state directory or its cache directory;
//! - a path matching one of [`EngineConfig::protected`](crate::exec::EngineConfig::protected)'s
//!   root-relative patterns (a literal protects a file or a whole directory, as in task globs).
//!
//! A cache entry is untrusted input ([`check_entry`]): its output paths must be valid UTF-8
//! (JSON strings are), normalized relative paths without backslashes, unique, sorted, no path
//! inside another's place, not protected, and, when the task that restores it is known, inside
//! that task's declared output patterns (below its cwd). Modes are not free: an entry only says
//! "executable or not", restored as 0755 or 0644. Links in the tree are refused by
//! [`crate::confine`] when the entry is restored.

use std::collections::HashSet;

use crate::confine::check_relative;
use crate::files::{PatternError, Patterns};
use crate::store::ActionResult;

/// The protected paths of one workspace.
#[derive(Debug)]
pub struct Guard {
    protected: Option<Patterns>,
    /// Root-relative directories of the engine (state, cache) inside the root.
    own_dirs: Vec<String>,
}

impl Guard {
    /// `protected`: root-relative globs; `own_dirs`: the engine's directories inside the root.
    pub fn new(protected: &[String], own_dirs: Vec<String>) -> Result<Guard, PatternError> {
        let protected = if protected.is_empty() {
            None
        } else {
            Some(Patterns::new(protected)?)
        };
        Ok(Guard {
            protected,
            own_dirs,
        })
    }

    /// The engine's own directories inside the root (never walked, never written by a task's
    /// clean-up or restore).
    pub fn own_dirs(&self) -> &[String] {
        &self.own_dirs
    }

    /// `Err` (saying why) when the engine must not write or delete the root-relative `path`.
    pub fn check(&self, path: &str) -> Result<(), String> {
        if path
            .split('/')
            .any(|component| component.eq_ignore_ascii_case(".git"))
        {
            return Err(format!("`{path}` is inside `.git`"));
        }
        if let Some(dir) = self
            .own_dirs
            .iter()
            .find(|dir| path == dir.as_str() || path.starts_with(&format!("{dir}/")))
        {
            return Err(format!("`{path}` is inside the engine's directory `{dir}`"));
        }
        if self
            .protected
            .as_ref()
            .is_some_and(|protected| protected.matches(path))
        {
            return Err(format!("`{path}` is a protected path"));
        }
        Ok(())
    }
}

/// The outputs a task declares: its cwd (root-relative, "" for the root) and output globs.
pub struct DeclaredOutputs<'a> {
    pub cwd: &'a str,
    pub outputs: &'a Patterns,
}

impl DeclaredOutputs<'_> {
    fn contains(&self, path: &str) -> bool {
        let inside = if self.cwd.is_empty() {
            Some(path)
        } else {
            path.strip_prefix(self.cwd)
                .and_then(|rest| rest.strip_prefix('/'))
        };
        inside.is_some_and(|relative| self.outputs.matches(relative))
    }
}

/// Checks a cache entry before anything of it is restored (see the module docs). `declared`:
/// the outputs of the task restoring it, when known.
pub fn check_entry(
    result: &ActionResult,
    guard: &Guard,
    declared: Option<&DeclaredOutputs<'_>>,
) -> Result<(), String> {
    let mut paths: HashSet<&str> = HashSet::with_capacity(result.outputs.len());
    let mut previous: Option<&str> = None;
    for file in &result.outputs {
        let path = file.path.as_str();
        check_relative(path).map_err(|err| format!("output path {err}"))?;
        if path.contains('\\') {
            return Err(format!("output path `{path}` holds a backslash"));
        }
        if previous.is_some_and(|previous| previous >= path) {
            return Err(format!(
                "output paths are not sorted and unique at `{path}`"
            ));
        }
        previous = Some(path);
        guard
            .check(path)
            .map_err(|why| format!("output {why}; it is never restored"))?;
        if let Some(declared) = declared
            && !declared.contains(path)
        {
            return Err(format!(
                "output `{path}` is not under the task's declared outputs"
            ));
        }
        paths.insert(path);
    }
    if let Some(record) = &result.discovered {
        crate::discovered::check_stored(record)?;
    }
    for file in &result.outputs {
        let mut path = file.path.as_str();
        while let Some((parent, _)) = path.rsplit_once('/') {
            if paths.contains(parent) {
                return Err(format!(
                    "output `{parent}` is a file and the directory of `{}`",
                    file.path
                ));
            }
            path = parent;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::store::OutputFile;
    use std::collections::BTreeMap;

    fn entry(paths: &[&str]) -> ActionResult {
        ActionResult {
            task: "task:t".into(),
            outputs: paths
                .iter()
                .map(|path| OutputFile {
                    path: path.to_string(),
                    executable: false,
                    size: 1,
                    digest: Digest::of_bytes(b"x"),
                })
                .collect(),
            stdout: None,
            stderr: None,
            duration_ms: 0,
            tools: BTreeMap::new(),
            discovered: None,
        }
    }

    #[test]
    fn entries_are_checked_structurally_and_against_the_task() {
        let guard = Guard::new(&["bundle.toml".into()], vec![".xbundle".into()]).unwrap();
        let outputs = Patterns::new(&["build/**".into()]).unwrap();
        let declared = DeclaredOutputs {
            cwd: "web",
            outputs: &outputs,
        };
        let check = |paths: &[&str]| check_entry(&entry(paths), &guard, Some(&declared));
        assert_eq!(check(&["web/build/a", "web/build/b/c"]), Ok(()));
        for (paths, problem) in [
            (&["../outside/x"][..], "`..` component"),
            (&["/etc/passwd"], "absolute path"),
            (&[".git/hooks/pre-commit"], "inside `.git`"),
            (&["web/build/./a"], "`.` component"),
            (&["web/build//a"], "empty component"),
            (&["web/build\\a"], "backslash"),
            (&["web/build/b", "web/build/a"], "not sorted"),
            (&["web/build/a", "web/build/a"], "not sorted and unique"),
            (&["bundle.toml"], "protected"),
            (&[".xbundle/state/clock"], "engine's directory"),
            (
                &["web/src/main.js"],
                "not under the task's declared outputs",
            ),
            (
                &["web/build/a", "web/build/a/b"],
                "is a file and the directory",
            ),
        ] {
            let err = check(paths).unwrap_err();
            assert!(err.contains(problem), "{paths:?}: {err}");
        }
        // Without the task, only the structural rules apply.
        assert_eq!(
            check_entry(&entry(&["web/src/main.js"]), &guard, None),
            Ok(())
        );
        assert!(check_entry(&entry(&["a/.git/config"]), &guard, None).is_err());
    }
}
