//! Task keys: what goes into a task's cache key, how it is encoded, and why a key changed.
//!
//! A key is the SHA-256 of the canonical encoding of [`KeyComponents`]:
//!
//! | hashed                                   | how                                                   |
//! |------------------------------------------|-------------------------------------------------------|
//! | task kind and implementation version     | `kind`, `impl_version`                                |
//! | resolved parameters                      | sorted `name -> value` (e.g. the command line)        |
//! | each declared input file                 | sorted root-relative `/` path -> content SHA-256      |
//! | each dependency                          | dependency id -> its **output** digest (early cutoff) |
//! | declared environment variables           | name -> SHA-256 of the value, or "unset"              |
//! | identities of tools the task runs        | tool name -> identity string (e.g. `rustc -vV`)       |
//! | where the outputs land                   | the task's cwd and output patterns, in order          |
//!
//! **Discovered inputs** (see [`crate::discovered`]) are not in the key: an action reports them
//! when it runs (e.g. a depfile's dependencies, a Go package's files), so they are recorded with
//! the action result instead and checked on every lookup of that key:
//!
//! | recorded with the result, checked before a hit | how                                      |
//! |------------------------------------------------|------------------------------------------|
//! | each discovered file                           | root-relative path -> content SHA-256 through the stat cache, or *absent* |
//! | each discovered listing (one glob set)         | the sorted set of root-relative paths it matches (names only) |
//!
//! A difference is a miss with reasons naming the file or the listing's new or missing path;
//! the run then replaces the entry. Dependents still key on the task's output digests (early
//! cutoff is unchanged).
//!
//! Deliberately **not** hashed: modification times, absolute paths, the machine's name, the
//! dependencies' keys (only their outputs: a dependency rebuilt to identical bytes does not
//! invalidate its dependents), undeclared environment variables, and the values of declared
//! environment variables in clear (only their digests, so the ledger never stores a secret).
//!
//! Canonical encoding: a version tag, then each section as a one-byte tag, a u64 little-endian
//! entry count and the entries in sorted order; every string is a u64 little-endian length
//! followed by its UTF-8 bytes; digests are their 32 raw bytes. Changing this encoding changes
//! every key: bump [`ENCODING_VERSION`] and the golden hashes in the tests together.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};

/// Bumped whenever the canonical encoding changes.
pub const ENCODING_VERSION: &str = "xbundle-key-v2";

/// Everything that determines a task's result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyComponents {
    pub kind: String,
    pub impl_version: u32,
    pub params: BTreeMap<String, String>,
    /// Root-relative input path -> content digest.
    pub inputs: BTreeMap<String, Digest>,
    /// Dependency task id -> that dependency's output digest.
    pub deps: BTreeMap<String, Digest>,
    /// Declared variable -> digest of its value (`None`: unset).
    pub env: BTreeMap<String, Option<Digest>>,
    /// Tool name -> identity.
    pub tools: BTreeMap<String, String>,
    /// The task's cwd (root-relative) and output patterns: a cached result names root-relative
    /// paths, so the same work with its outputs elsewhere is another result (an entry for the
    /// old place is never looked up, nor refused and thrown away as naming foreign paths).
    #[serde(default)]
    pub cwd: String,
    #[serde(default)]
    pub outputs: Vec<String>,
}

impl KeyComponents {
    /// The canonical byte encoding documented in the module docs.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.inputs.len() * 80);
        put_str(&mut out, ENCODING_VERSION);
        put_str(&mut out, &self.kind);
        out.extend_from_slice(&u64::from(self.impl_version).to_le_bytes());
        section(&mut out, b'p', self.params.len());
        for (name, value) in &self.params {
            put_str(&mut out, name);
            put_str(&mut out, value);
        }
        section(&mut out, b'i', self.inputs.len());
        for (path, digest) in &self.inputs {
            put_str(&mut out, path);
            out.extend_from_slice(digest.as_bytes());
        }
        section(&mut out, b'd', self.deps.len());
        for (id, digest) in &self.deps {
            put_str(&mut out, id);
            out.extend_from_slice(digest.as_bytes());
        }
        section(&mut out, b'e', self.env.len());
        for (name, value) in &self.env {
            put_str(&mut out, name);
            match value {
                Some(digest) => {
                    out.push(1);
                    out.extend_from_slice(digest.as_bytes());
                }
                None => out.push(0),
            }
        }
        section(&mut out, b't', self.tools.len());
        for (name, identity) in &self.tools {
            put_str(&mut out, name);
            put_str(&mut out, identity);
        }
        section(&mut out, b'o', self.outputs.len());
        put_str(&mut out, &self.cwd);
        for pattern in &self.outputs {
            put_str(&mut out, pattern);
        }
        out
    }

    pub fn key(&self) -> Digest {
        let mut hasher = Hasher::new();
        hasher.update(&self.canonical_bytes());
        hasher.finish()
    }

    /// Why `self` (the new components) differs from `previous`, most specific reasons first.
    pub fn diff(&self, previous: &KeyComponents) -> Vec<DirtyReason> {
        let mut reasons = Vec::new();
        if self.kind != previous.kind || self.impl_version != previous.impl_version {
            reasons.push(DirtyReason::ImplementationChanged);
        }
        diff_maps(&previous.params, &self.params, |name, _| {
            reasons.push(DirtyReason::ParameterChanged(name.clone()))
        });
        if self.cwd != previous.cwd || self.outputs != previous.outputs {
            reasons.push(DirtyReason::OutputsChanged);
        }
        diff_maps(&previous.inputs, &self.inputs, |path, change| {
            reasons.push(match change {
                Change::Added => DirtyReason::InputAdded(path.clone()),
                Change::Removed => DirtyReason::InputRemoved(path.clone()),
                Change::Modified => DirtyReason::InputChanged(path.clone()),
            })
        });
        diff_maps(&previous.env, &self.env, |name, _| {
            reasons.push(DirtyReason::EnvChanged(name.clone()))
        });
        diff_maps(&previous.deps, &self.deps, |id, change| {
            reasons.push(match change {
                Change::Modified => DirtyReason::DependencyOutputChanged(id.clone()),
                Change::Added | Change::Removed => DirtyReason::DependenciesChanged(id.clone()),
            })
        });
        diff_maps(&previous.tools, &self.tools, |name, _| {
            reasons.push(DirtyReason::ToolChanged(name.clone()))
        });
        reasons
    }
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn section(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    out.extend_from_slice(&(len as u64).to_le_bytes());
}

enum Change {
    Added,
    Removed,
    Modified,
}

fn diff_maps<V: PartialEq>(
    old: &BTreeMap<String, V>,
    new: &BTreeMap<String, V>,
    mut report: impl FnMut(&String, Change),
) {
    for (name, value) in new {
        match old.get(name) {
            None => report(name, Change::Added),
            Some(previous) if previous != value => report(name, Change::Modified),
            Some(_) => {}
        }
    }
    for name in old.keys() {
        if !new.contains_key(name) {
            report(name, Change::Removed);
        }
    }
}

/// Why a task runs (or would run). Every cache miss has at least one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "subject", rename_all = "kebab-case")]
pub enum DirtyReason {
    /// Nothing is recorded for this task: it never ran here.
    NoPreviousRun,
    /// `--force` was given.
    Forced,
    /// The key equals the last one recorded, but its cache entry is gone or unusable.
    CacheEntryMissing,
    ImplementationChanged,
    ParameterChanged(String),
    /// The task's cwd or output patterns changed (its outputs land elsewhere).
    OutputsChanged,
    InputChanged(String),
    InputAdded(String),
    InputRemoved(String),
    EnvChanged(String),
    DependencyOutputChanged(String),
    DependenciesChanged(String),
    ToolChanged(String),
    /// A discovered input (see [`crate::discovered`]) has another digest than when the cached
    /// result was made.
    DiscoveredChanged(String),
    /// A discovered input that was absent is now there.
    DiscoveredAppeared(String),
    /// A discovered input that was there is now absent.
    DiscoveredDisappeared(String),
    /// A discovered input changed while the task that made the cached result ran.
    DiscoveredChangedDuringRun(String),
    /// A path matching a discovered listing is new.
    ListingAppeared {
        pattern: String,
        path: String,
    },
    /// A path a discovered listing matched is gone.
    ListingDisappeared {
        pattern: String,
        path: String,
    },
    /// A discovered listing could not be evaluated (a link leading outside, …).
    ListingUnreadable(String),
}

impl fmt::Display for DirtyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirtyReason::NoPreviousRun => f.write_str("no previous run recorded"),
            DirtyReason::Forced => f.write_str("--force given"),
            DirtyReason::CacheEntryMissing => {
                f.write_str("inputs unchanged but the cache entry is missing or unusable")
            }
            DirtyReason::ImplementationChanged => f.write_str("task implementation changed"),
            DirtyReason::ParameterChanged(name) => write!(f, "definition changed ({name})"),
            DirtyReason::OutputsChanged => f.write_str("declared outputs changed"),
            DirtyReason::InputChanged(path) => write!(f, "input {path} changed"),
            DirtyReason::InputAdded(path) => write!(f, "input {path} added"),
            DirtyReason::InputRemoved(path) => write!(f, "input {path} removed"),
            DirtyReason::EnvChanged(name) => write!(f, "env {name} changed"),
            DirtyReason::DependencyOutputChanged(id) => write!(f, "dependency {id} output changed"),
            DirtyReason::DependenciesChanged(id) => write!(f, "dependency list changed ({id})"),
            DirtyReason::ToolChanged(name) => write!(f, "tool {name} changed"),
            DirtyReason::DiscoveredChanged(path) => write!(f, "discovered input {path} changed"),
            DirtyReason::DiscoveredAppeared(path) => {
                write!(f, "discovered input {path} appeared")
            }
            DirtyReason::DiscoveredDisappeared(path) => {
                write!(f, "discovered input {path} disappeared")
            }
            DirtyReason::DiscoveredChangedDuringRun(path) => {
                write!(f, "discovered input {path} changed while the task last ran")
            }
            DirtyReason::ListingAppeared { pattern, path } => {
                write!(
                    f,
                    "a file matching discovered listing {pattern} appeared: {path}"
                )
            }
            DirtyReason::ListingDisappeared { pattern, path } => write!(
                f,
                "a file matching discovered listing {pattern} disappeared: {path}"
            ),
            DirtyReason::ListingUnreadable(why) => {
                write!(f, "a discovered listing could not be read ({why})")
            }
        }
    }
}

/// Joins reasons for one line of output: the first three, then a count.
pub fn summarize(reasons: &[DirtyReason]) -> String {
    let mut text = reasons
        .iter()
        .take(3)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if reasons.len() > 3 {
        text.push_str(&format!(" and {} more", reasons.len() - 3));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> KeyComponents {
        let mut components = KeyComponents {
            kind: "shell".into(),
            impl_version: 1,
            ..KeyComponents::default()
        };
        components
            .params
            .insert("run".into(), "cat a b > out".into());
        components
            .inputs
            .insert("src/a.txt".into(), Digest::of_bytes(b"a"));
        components
            .inputs
            .insert("src/b.txt".into(), Digest::of_bytes(b"b"));
        components
            .deps
            .insert("task:gen".into(), Digest::of_bytes(b"out"));
        components
            .env
            .insert("NODE_ENV".into(), Some(Digest::of_bytes(b"production")));
        components.env.insert("UNSET".into(), None);
        components.tools.insert("sh".into(), "dash".into());
        components.cwd = "web".into();
        components.outputs = vec!["dist/**".into(), "!dist/tmp".into()];
        components
    }

    #[test]
    fn golden_key_is_pinned() {
        // Changing this value means every user's cache is invalidated: bump ENCODING_VERSION.
        assert_eq!(
            sample().key().to_hex(),
            "f36c5d919223e9b90d9066d7b1a8881e600b7863b265243e08a4964e5430f142"
        );
        assert_eq!(
            KeyComponents::default().key().to_hex(),
            "e08c4ceaa44655092a0df16714fd584f0dd07ced5f971d1419e4955a4f3eb05e"
        );
    }

    #[test]
    fn insertion_order_does_not_matter() {
        let forward = sample();
        let mut backward = KeyComponents {
            kind: "shell".into(),
            impl_version: 1,
            ..KeyComponents::default()
        };
        backward.tools.insert("sh".into(), "dash".into());
        backward.env.insert("UNSET".into(), None);
        backward
            .env
            .insert("NODE_ENV".into(), Some(Digest::of_bytes(b"production")));
        backward
            .deps
            .insert("task:gen".into(), Digest::of_bytes(b"out"));
        backward
            .inputs
            .insert("src/b.txt".into(), Digest::of_bytes(b"b"));
        backward
            .inputs
            .insert("src/a.txt".into(), Digest::of_bytes(b"a"));
        backward.params.insert("run".into(), "cat a b > out".into());
        backward.cwd = "web".into();
        backward.outputs = vec!["dist/**".into(), "!dist/tmp".into()];
        assert_eq!(forward.key(), backward.key());
    }

    #[test]
    fn sections_cannot_be_confused() {
        // The same name and digest as an input or as a dependency must give different keys.
        let mut as_input = KeyComponents::default();
        as_input.inputs.insert("x".into(), Digest::EMPTY);
        let mut as_dep = KeyComponents::default();
        as_dep.deps.insert("x".into(), Digest::EMPTY);
        assert_ne!(as_input.key(), as_dep.key());
        // Length prefixes keep "ab"+"c" apart from "a"+"bc".
        let mut left = KeyComponents::default();
        left.params.insert("ab".into(), "c".into());
        let mut right = KeyComponents::default();
        right.params.insert("a".into(), "bc".into());
        assert_ne!(left.key(), right.key());
    }

    #[test]
    fn diff_names_every_change() {
        let old = sample();
        let mut new = sample();
        new.inputs
            .insert("src/a.txt".into(), Digest::of_bytes(b"A"));
        new.inputs.remove("src/b.txt");
        new.inputs.insert("src/c.txt".into(), Digest::EMPTY);
        new.env.insert("UNSET".into(), Some(Digest::EMPTY));
        new.deps.insert("task:gen".into(), Digest::EMPTY);
        new.params.insert("run".into(), "other".into());
        new.outputs = vec!["out/**".into()];
        let reasons = new.diff(&old);
        assert_eq!(
            reasons,
            vec![
                DirtyReason::ParameterChanged("run".into()),
                DirtyReason::OutputsChanged,
                DirtyReason::InputChanged("src/a.txt".into()),
                DirtyReason::InputAdded("src/c.txt".into()),
                DirtyReason::InputRemoved("src/b.txt".into()),
                DirtyReason::EnvChanged("UNSET".into()),
                DirtyReason::DependencyOutputChanged("task:gen".into()),
            ]
        );
        assert!(sample().diff(&sample()).is_empty());
    }
}
