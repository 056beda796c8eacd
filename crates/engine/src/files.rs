//! Expanding a task's input and output globs into files.
//!
//! Globs are relative to the task's cwd and use `globset` syntax with `/` as a real separator:
//! `*` stays inside one directory, `**` crosses directories, a leading `!` excludes. A pattern
//! without glob characters names a file, or a whole directory (as `dir/**`). Walks start at the
//! longest literal directory prefix of each pattern, so `src/**` never reads outside `src/`.
//! Directories named `.git` and the engine's own state and cache directories are never entered.
//!
//! Walks go through [`crate::confine`]: the literal prefix is resolved without following links
//! (a link there is an error naming it) and no link to a directory is ever entered.
//!
//! **Links** matched by a pattern ([`Purpose`]): a link to a regular file inside the workspace
//! counts as that file (its content is hashed and stored; it is restored as a regular file); a
//! link leading outside the workspace is an error when read (an input, or an output being
//! stored), so nothing outside is read into a key or a cache silently; dangling links and links
//! to directories are left out of inputs and outputs. When old outputs are removed, every
//! matching link is removed itself, never its target.
//!
//! **Names that are not UTF-8** are never skipped silently: a matching one is an error naming it
//! escaped (`src/\xff.txt`); directories with such names are walked like any other.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::confine::{ConfineError, Dir, Kind, ListingCache, Walk, escape};
use crate::statcache::FileStat;

/// The most pattern lists [`Patterns::shared`] keeps compiled.
const SHARED_MAX: usize = 4096;

/// A set of compiled patterns.
#[derive(Debug)]
pub struct Patterns {
    sources: Vec<String>,
    include: GlobSet,
    exclude: GlobSet,
    /// Literal directory prefix of each include pattern ("" for the cwd itself).
    bases: Vec<String>,
    /// The bases of the include patterns that have a wildcard: a directory is expected there
    /// (a literal pattern's base is the pattern itself, a file as often as a directory).
    glob_bases: Vec<String>,
    /// Index into `sources` of each include glob.
    include_sources: Vec<usize>,
    /// The include and exclude globs as [`Simple`] matchers, in their sets' order, when every
    /// one of them has such a shape; `None` to match with the glob sets.
    simple: Option<(Vec<Simple>, Vec<Simple>)>,
}

/// A glob of one of the shapes most patterns have (`out/app.bin`, `src/*.rs`, `gen/**`, and the
/// `<pattern>/**` added for a literal or an exclude),
/// matched with a few byte comparisons. The glob sets match each path with regexes, whose
/// caches a shared set hands out to one thread quickly and to the others through a lock: the
/// walks of a no-op spent more time matching than listing their directories.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Simple {
    /// No glob character: that path.
    Exact(String),
    /// `<shape>/**` where `<shape>` is an [`Simple::Exact`] or a [`Simple::Name`]: any path
    /// below a directory that it matches.
    Below(Box<Simple>),
    /// `dir/head*tail` with `dir` literal (`""` for the working directory, else kept as
    /// `dir/`), `head` and `tail` literal: a name in `dir` that starts with `head` and ends
    /// with `tail`, apart (`*` matches any run of bytes but `/`, the empty one too).
    Name {
        dir: String,
        head: String,
        tail: String,
    },
}

impl Simple {
    /// The matcher of `pattern` (normalized, see [`Patterns::normalize`]), when it has one of
    /// the shapes above.
    fn parse(pattern: &str) -> Option<Simple> {
        if is_literal(pattern) {
            return Some(Simple::Exact(pattern.to_string()));
        }
        if let Some(directory) = pattern.strip_suffix("/**") {
            return match Simple::parse(directory)? {
                Simple::Below(_) => None,
                shape => Some(Simple::Below(Box::new(shape))),
            };
        }
        let (dir, name) = match pattern.rsplit_once('/') {
            Some((dir, name)) => (format!("{dir}/"), name),
            None => (String::new(), pattern),
        };
        let (head, tail) = name.split_once('*')?;
        (is_literal(&dir) && is_literal(head) && is_literal(tail)).then(|| Simple::Name {
            dir,
            head: head.to_string(),
            tail: tail.to_string(),
        })
    }

    fn matches(&self, path: &[u8]) -> bool {
        match self {
            Simple::Exact(exact) => same(path, exact.as_bytes()),
            // Below the directory that ends where one of the path's separators is.
            Simple::Below(directory) => path
                .iter()
                .enumerate()
                .any(|(at, &b)| b == b'/' && at + 1 < path.len() && directory.matches(&path[..at])),
            Simple::Name { dir, head, tail } => {
                let (dir, head, tail) = (dir.as_bytes(), head.as_bytes(), tail.as_bytes());
                path.len() >= dir.len() + head.len() + tail.len() && {
                    let (start, name) = path.split_at(dir.len());
                    same(start, dir)
                        && same(&name[..head.len()], head)
                        && same(&name[name.len() - tail.len()..], tail)
                        && !name.contains(&b'/')
                }
            }
        }
    }
}

/// Whether two byte strings are equal, compared here: the pieces matched are short (`src/`,
/// `.rs`), and a call to the C library's `memcmp` for each cost more than the comparing (4% of
/// a no-op's profile at 200 tasks x 100 files). Every byte is compared, no early exit, so the
/// loop stays a loop.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |differ, (x, y)| differ | (x ^ y)) == 0
}

#[derive(Clone, Debug, thiserror::Error)]
#[error("invalid glob `{pattern}`: {message}")]
pub struct PatternError {
    pub pattern: String,
    pub message: String,
}

/// Compiles one pattern with the options every match in the engine uses (`overlap` builds its
/// automata from the same globs).
pub(crate) fn compile(pattern: &str) -> Result<Glob, PatternError> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|err| PatternError {
            pattern: pattern.to_string(),
            message: err.kind().to_string(),
        })
}

/// A pattern (or component) without glob characters.
pub fn is_literal(pattern: &str) -> bool {
    !pattern.contains(['*', '?', '[', ']', '{', '}', '\\'])
}

/// Splits a leading `!` (an exclude) and trims a leading `./` and a trailing `/`.
pub(crate) fn split(raw: &str) -> (bool, &str) {
    let (negated, pattern) = match raw.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    (
        negated,
        pattern.trim_start_matches("./").trim_end_matches('/'),
    )
}

/// Where the walk for an include pattern starts: the whole pattern when it is a literal (a file
/// or a directory), else its longest literal directory prefix ("" for the cwd itself).
pub(crate) fn walk_base(pattern: &str) -> String {
    if is_literal(pattern) {
        return pattern.to_string();
    }
    pattern
        .split('/')
        .take_while(|component| is_literal(component))
        .collect::<Vec<_>>()
        .join("/")
}

impl Patterns {
    /// Splits a leading `!` and checks the pattern stays inside the task's directory.
    pub(crate) fn normalize(raw: &str) -> Result<(bool, &str), PatternError> {
        let (negated, pattern) = split(raw);
        if pattern.is_empty() || pattern.starts_with('/') || pattern.split('/').any(|c| c == "..") {
            return Err(PatternError {
                pattern: raw.to_string(),
                message: "patterns must be relative paths inside the task's directory".into(),
            });
        }
        // A walk never produces such a path, and a literal one could never be resolved
        // ([`crate::confine`] refuses it): refused here, where `check` sees it.
        if pattern.split('/').any(|c| c.is_empty() || c == ".") {
            return Err(PatternError {
                pattern: raw.to_string(),
                message: "patterns are normalized paths: no empty (`//`) or `.` components".into(),
            });
        }
        Ok((negated, pattern))
    }

    pub fn new(patterns: &[String]) -> Result<Patterns, PatternError> {
        #[cfg(test)]
        tests::COMPILED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(patterns.to_vec());
        let mut include = GlobSetBuilder::new();
        let mut exclude = GlobSetBuilder::new();
        let mut bases = Vec::new();
        let mut glob_bases = Vec::new();
        let mut include_sources = Vec::new();
        // Each glob added to a set, added to its list of simple matchers too (`None` for one
        // without a simple shape: the lists are then not used).
        let (mut simple_include, mut simple_exclude) = (Vec::new(), Vec::new());
        for (index, raw) in patterns.iter().enumerate() {
            let (negated, pattern) = Patterns::normalize(raw)?;
            if negated {
                exclude.add(compile(pattern)?);
                simple_exclude.push(Simple::parse(pattern));
                // `!dir` also excludes everything below it.
                let below = format!("{pattern}/**");
                exclude.add(compile(&below)?);
                simple_exclude.push(Simple::parse(&below));
                continue;
            }
            include.add(compile(pattern)?);
            simple_include.push(Simple::parse(pattern));
            include_sources.push(index);
            let base = walk_base(pattern);
            if is_literal(pattern) {
                // A literal names a file or a directory: allow everything below it too.
                let below = format!("{pattern}/**");
                include.add(compile(&below)?);
                simple_include.push(Simple::parse(&below));
                include_sources.push(index);
            } else {
                glob_bases.push(base.clone());
            }
            bases.push(base);
        }
        let simple = simple_include
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .zip(simple_exclude.into_iter().collect::<Option<Vec<_>>>());
        let build = |builder: GlobSetBuilder| {
            builder.build().map_err(|err| PatternError {
                pattern: patterns.join(", "),
                message: err.to_string(),
            })
        };
        Ok(Patterns {
            sources: patterns.to_vec(),
            include: build(include)?,
            exclude: build(exclude)?,
            bases,
            glob_bases,
            include_sources,
            simple,
        })
    }

    /// [`Patterns::new`], compiled once per process for each distinct list: tasks of a
    /// generated or repetitive graph share their patterns (`src/*.txt`), and compiling a glob
    /// set (regexes, Aho-Corasick automata) costs far more than matching with it. A list is
    /// compiled by the first thread that asks for it, outside the cache's lock; threads asking
    /// for the same list meanwhile wait for that compilation instead of repeating it (a run's
    /// first tasks start together and often share their lists: each worker compiled its own
    /// copy, and all but one were thrown away). The cache holds at most [`SHARED_MAX`] lists
    /// (cleared whole when full); an error is not cached.
    pub fn shared(patterns: &[String]) -> Result<Arc<Patterns>, PatternError> {
        type Slot = Arc<OnceLock<Option<Arc<Patterns>>>>;
        static SHARED: Mutex<Option<HashMap<Vec<String>, Slot>>> = Mutex::new(None);
        let slot = {
            let mut cache = SHARED.lock().unwrap_or_else(|e| e.into_inner());
            let cache = cache.get_or_insert_with(HashMap::new);
            match cache.get(patterns) {
                Some(slot) => Arc::clone(slot),
                None => {
                    if cache.len() >= SHARED_MAX {
                        cache.clear();
                    }
                    let slot = Slot::default();
                    cache.insert(patterns.to_vec(), Arc::clone(&slot));
                    slot
                }
            }
        };
        let mut error = None;
        let compiled = slot.get_or_init(|| match Patterns::new(patterns) {
            Ok(compiled) => Some(Arc::new(compiled)),
            Err(err) => {
                error = Some(err);
                None
            }
        });
        if let Some(compiled) = compiled {
            return Ok(Arc::clone(compiled));
        }
        // Failed, here or in the thread that compiled it: not kept (unless replaced since).
        {
            let mut cache = SHARED.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(cache) = cache.as_mut()
                && cache
                    .get(patterns)
                    .is_some_and(|found| Arc::ptr_eq(found, &slot))
            {
                cache.remove(patterns);
            }
        }
        match error {
            Some(err) => Err(err),
            // Another thread's compilation failed: the same error, compiled again here.
            None => Patterns::new(patterns).map(Arc::new),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bases.is_empty()
    }

    pub fn matches(&self, relative: &str) -> bool {
        self.matches_bytes(relative.as_bytes())
    }

    fn matches_bytes(&self, relative: &[u8]) -> bool {
        match &self.simple {
            Some((include, exclude)) => {
                include.iter().any(|glob| glob.matches(relative))
                    && !exclude.iter().any(|glob| glob.matches(relative))
            }
            None => {
                let candidate = globset::Candidate::new(Path::new(OsStr::from_bytes(relative)));
                self.include.is_match_candidate(&candidate)
                    && !self.exclude.is_match_candidate(&candidate)
            }
        }
    }

    /// Whether `relative` matches, and the include globs (indexes in the include set) that
    /// match it in `hits` (cleared first; left empty when it does not match).
    fn matching(&self, relative: &[u8], hits: &mut Vec<usize>) -> bool {
        hits.clear();
        match &self.simple {
            Some((include, exclude)) => {
                hits.extend(
                    include
                        .iter()
                        .enumerate()
                        .filter(|(_, glob)| glob.matches(relative))
                        .map(|(index, _)| index),
                );
                if !hits.is_empty() && exclude.iter().any(|glob| glob.matches(relative)) {
                    hits.clear();
                }
            }
            None => {
                let candidate = globset::Candidate::new(Path::new(OsStr::from_bytes(relative)));
                self.include.matches_candidate_into(&candidate, hits);
                if !hits.is_empty() && self.exclude.is_match_candidate(&candidate) {
                    hits.clear();
                }
            }
        }
        !hits.is_empty()
    }

    /// The first include pattern (as written) that matches `relative`, if it is not excluded.
    pub fn source_matching(&self, relative: &str) -> Option<&str> {
        if self.exclude.is_match(relative) {
            return None;
        }
        let hits = self.include.matches(relative);
        hits.first()
            .map(|&hit| self.sources[self.include_sources[hit]].as_str())
    }

    /// Every include pattern (what matched nothing when nothing was looked at).
    pub fn includes(&self) -> Vec<String> {
        self.unmatched(&vec![false; self.sources.len()])
    }

    /// The include patterns not marked in `matched`.
    fn unmatched(&self, matched: &[bool]) -> Vec<String> {
        self.sources
            .iter()
            .enumerate()
            .filter(|(index, source)| !source.starts_with('!') && !matched[*index])
            .map(|(_, source)| source.clone())
            .collect()
    }
}

/// What a walk may see: the confined workspace root and what it never enters.
pub struct Tree<'a> {
    /// The workspace root.
    pub root: &'a Dir,
    /// The root's canonical path: a link counts as the file it points to only when that file is
    /// below it.
    pub canonical_root: &'a Path,
    /// Root-relative directories never entered (the engine's state and cache directories when
    /// they are inside the root). Directories named `.git` are never entered either.
    pub never_enter: &'a [String],
    /// Directory listings kept across runs, used by walks when given (see
    /// [`crate::listings`]).
    pub listings: Option<&'a dyn ListingCache>,
    /// Files found for [`Purpose::Read`] are not stat'ed by the walk ([`Found::stat`] is
    /// `None`): the reader opens each and stats the open file (see
    /// [`crate::StatCache::digest_opened`]), one path lookup instead of two. For walks whose
    /// every file is read anyway (nothing recorded vouches for any).
    pub stat_when_opened: bool,
    /// Bytes each [`Found::relative`] has room for before its path, so that its owner can
    /// prefix it in place (the task's cwd: one allocation a file instead of two).
    pub room_before: usize,
}

/// What the files found are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Hashing (inputs, produced outputs): a link to a file inside the root counts as that file,
    /// a link leading outside the root is an error, other links (dangling, to a directory) are
    /// left out.
    Read,
    /// Removing (stale outputs): every matching file and link is listed; a link is removed
    /// itself, never its target, and [`Found::stat`] is set only for a link to a file inside the
    /// root.
    Remove,
}

/// A file found by [`expand`].
#[derive(Debug)]
pub struct Found {
    /// Relative to the cwd.
    pub relative: String,
    /// The file's stat (a link's target's for a link to a file inside the root); `None` for a
    /// link listed only to be removed, and for a file (not a link) found to be read by a walk
    /// told to leave the stat to the reader ([`Tree::stat_when_opened`]).
    pub stat: Option<FileStat>,
    /// The entry is a symbolic link.
    pub link: bool,
}

impl Found {
    /// Opens the file for reading. A file that was no link when the walk found it is opened
    /// below `cwd` (the directory `expand` was given) with no link followed at any component
    /// ([`Dir::open_to_read`]): a link swapped in since is refused, never read through. A link
    /// is read through, to the file inside the root the walk found it leads to.
    pub fn open_to_read(&self, cwd: &Dir) -> std::io::Result<std::fs::File> {
        if self.link {
            return std::fs::File::open(self.absolute(cwd));
        }
        cwd.open_to_read(&self.relative)
            .map_err(std::io::Error::other)?
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }

    /// Its absolute path, `cwd` being the directory `expand` was given (for reading and
    /// messages; writes and deletes go through [`crate::confine`]). Made when asked for, not
    /// kept: most files found are never read by path.
    pub fn absolute(&self, cwd: &Dir) -> PathBuf {
        cwd.join(&self.relative)
    }
}

/// Why a pattern could not be expanded.
#[derive(Debug, thiserror::Error)]
pub enum ExpandError {
    #[error(transparent)]
    Confine(#[from] ConfineError),
    #[error(
        "`{path}` matches a pattern of this task but its name is not valid UTF-8; rename it (xbundle keys, stores and restores UTF-8 paths only)"
    )]
    NotUtf8 { path: String },
    #[error(
        "`{path}` is a symbolic link to `{target}`, outside the workspace; a task's inputs and outputs must be inside it"
    )]
    LinkOutside { path: String, target: String },
}

/// Opens the files a walk found below `cwd` for reading ([`Found::open_to_read`]), each by its
/// name through a handle on its directory ([`Dir::open_entry_to_read`]). The handles from `cwd`
/// down to the last file's directory are kept: [`expand`] gives the files sorted by path, so a
/// directory's files come together or around those of its subdirectories, and each directory
/// is opened once, from its parent's handle.
pub struct Opener<'a> {
    cwd: &'a Dir,
    /// Each directory (relative to `cwd`) inside the one before it, with its handle.
    held: Vec<(String, Dir)>,
    /// Directories opened so far (for tests).
    opened: usize,
}

impl<'a> Opener<'a> {
    pub fn new(cwd: &'a Dir) -> Opener<'a> {
        Opener {
            cwd,
            held: Vec::new(),
            opened: 0,
        }
    }

    /// Opens `found` for reading, as [`Found::open_to_read`] does.
    pub fn open(&mut self, found: &Found) -> std::io::Result<std::fs::File> {
        if found.link {
            return found.open_to_read(self.cwd);
        }
        let (parent, name) = found
            .relative
            .rsplit_once('/')
            .unwrap_or(("", &found.relative));
        match self.dir(parent).map(|dir| dir.open_entry_to_read(name)) {
            Some(Ok(Some(file))) => Ok(file),
            Some(Ok(None)) if parent.is_empty() => {
                Err(std::io::Error::from(std::io::ErrorKind::NotFound))
            }
            // Asked again from the working directory, which says what is in the way.
            Some(Err(_)) => found.open_to_read(self.cwd),
            // Not in a directory held, or a directory on the way not opened from one: the
            // handles may be stale (a generator's `rm -rf gen` and a new `gen`). Asked again
            // from the working directory, the handles opened again for the files after it.
            Some(Ok(None)) | None => {
                self.held.clear();
                found.open_to_read(self.cwd)
            }
        }
    }

    /// The handle on `parent` (relative to `cwd`), opened from the deepest handle held on a
    /// directory containing it; `None` when one of its components cannot be opened.
    fn dir(&mut self, parent: &str) -> Option<&Dir> {
        if parent.is_empty() {
            return Some(self.cwd);
        }
        while let Some((held, _)) = self.held.last() {
            let inside = parent
                .strip_prefix(held.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            if inside {
                break;
            }
            self.held.pop();
        }
        let done = self.held.last().map_or(0, |(held, _)| held.len() + 1);
        if done < parent.len() {
            let mut end = done;
            for component in parent[done..].split('/') {
                end += component.len();
                let base = self.held.last().map_or(self.cwd, |(_, dir)| dir);
                let dir = base.open_dir(component).ok().flatten()?;
                self.opened += 1;
                self.held.push((parent[..end].to_string(), dir));
                end += 1;
            }
        }
        self.held.last().map(|(_, dir)| dir)
    }
}

/// The files matching `patterns` below the directory `cwd`, sorted by path, minus those `skip`
/// matches; also the include patterns that matched nothing.
///
/// Walks start at the literal prefix of each pattern, resolved without following links (a link
/// there is an error naming it), and never descend through a link, into `.git` or into
/// `tree.never_enter`. A matching name that is not UTF-8 is an error ([`ExpandError::NotUtf8`]).
/// Links are handled as [`Purpose`] says.
///
/// Cost: one `readdir` per directory under each walk root and one `fstatat` per matching file
/// (none for files left to the reader: [`Tree::stat_when_opened`]), relative to the directory
/// being read (no path lookup from the root for each file).
pub fn expand(
    tree: &Tree<'_>,
    cwd: &Dir,
    patterns: &Patterns,
    skip: Option<&Patterns>,
    purpose: Purpose,
) -> Result<(Vec<Found>, Vec<String>), ExpandError> {
    let mut found: Vec<Found> = Vec::new();
    let mut matched = vec![false; patterns.sources.len()];
    let mut bases: Vec<&String> = patterns.bases.iter().collect();
    bases.sort();
    bases.dedup();
    // Drop bases inside another base.
    let mut roots: Vec<&String> = Vec::new();
    for base in bases {
        if !roots.iter().any(|outer| {
            outer.is_empty() || *outer == base || base.starts_with(&format!("{outer}/"))
        }) {
            roots.push(base);
        }
    }
    // The directories never entered, relative to `cwd`.
    let prefix = match cwd.relative() {
        "" => String::new(),
        relative => format!("{relative}/"),
    };
    let mut never_enter: Vec<&str> = Vec::new();
    for dir in tree.never_enter {
        if prefix.starts_with(&format!("{dir}/")) {
            // The cwd itself is inside the engine's own directories: nothing there is a task's.
            return Ok((Vec::new(), patterns.unmatched(&matched)));
        }
        if let Some(inside) = dir.strip_prefix(prefix.as_str()) {
            never_enter.push(inside);
        }
    }
    let entered = |relative: &[u8]| {
        let name = relative.rsplit(|&b| b == b'/').next().unwrap_or(relative);
        !name.eq_ignore_ascii_case(b".git")
            && !never_enter.iter().any(|dir| dir.as_bytes() == relative)
    };

    let mut hits = Vec::new();
    let mut consider = |relative: &[u8],
                        kind: Kind,
                        stat: &dyn Fn() -> std::io::Result<FileStat>|
     -> Result<(), ExpandError> {
        if !patterns.matching(relative, &mut hits) {
            return Ok(());
        }
        let Ok(relative) = std::str::from_utf8(relative) else {
            return Err(ExpandError::NotUtf8 {
                path: display(cwd, &escape(relative)),
            });
        };
        if !matches!(kind, Kind::File | Kind::Symlink) {
            return Ok(());
        }
        if skip.is_some_and(|skip| skip.matches_bytes(relative.as_bytes())) {
            // Left out (an input that is also an output): matched, never looked at.
            for &hit in &hits {
                matched[patterns.include_sources[hit]] = true;
            }
            return Ok(());
        }
        let (stat, link) = match kind {
            Kind::File if tree.stat_when_opened && purpose == Purpose::Read => (None, false),
            Kind::File => match stat() {
                Ok(stat) => (Some(stat), false),
                // Removed since the directory was read.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(source) => {
                    return Err(ConfineError::Io {
                        path: display(cwd, relative),
                        source,
                    }
                    .into());
                }
            },
            Kind::Symlink => match link_target(tree, &cwd.join(relative)) {
                Target::Inside(stat) => (Some(stat), true),
                Target::Outside(target) if purpose == Purpose::Read => {
                    return Err(ExpandError::LinkOutside {
                        path: display(cwd, relative),
                        target: target.display().to_string(),
                    });
                }
                Target::Outside(_) | Target::NotAFile if purpose == Purpose::Remove => (None, true),
                Target::Outside(_) | Target::NotAFile => return Ok(()),
            },
            Kind::Dir | Kind::Other => return Ok(()),
        };
        for &hit in &hits {
            matched[patterns.include_sources[hit]] = true;
        }
        let mut owned = String::with_capacity(tree.room_before + relative.len());
        owned.push_str(relative);
        found.push(Found {
            relative: owned,
            stat,
            link,
        });
        Ok(())
    };
    for base in roots {
        if base
            .split('/')
            .any(|component| component.eq_ignore_ascii_case(".git"))
        {
            continue;
        }
        if !base.is_empty()
            && never_enter
                .iter()
                .any(|dir| base.starts_with(&format!("{dir}/")) || *dir == base.as_str())
        {
            continue;
        }
        // The root of a pattern with a wildcard (`src` of `src/*.ts`) is a directory in the
        // usual case: opened at once (no link followed), what else is there asked only when
        // that fails. A literal pattern's (`package.json`) is asked first, as it may be a file.
        let opened = if base.is_empty() || !patterns.glob_bases.contains(base) {
            None
        } else {
            cwd.try_open_dir(base)
        };
        if !base.is_empty() && opened.is_none() {
            match cwd.lstat(base)? {
                None => continue,
                Some((Kind::Dir, _)) => {}
                Some((Kind::File, stat)) => {
                    consider(base.as_bytes(), Kind::File, &|| Ok(stat))?;
                    continue;
                }
                Some((Kind::Symlink, _)) => {
                    // A literal pattern naming a link: the link is the entry. Anything else
                    // expects a directory here, and links are not followed.
                    if patterns.include.is_match(base.as_str()) {
                        consider(base.as_bytes(), Kind::Symlink, &|| unreachable_stat())?;
                        continue;
                    }
                    return Err(ConfineError::Symlink {
                        path: display(cwd, base),
                    }
                    .into());
                }
                Some((Kind::Other, _)) => continue,
            }
        }
        cwd.walk_listed_from::<ExpandError>(opened, base, tree.listings, &mut |entry| {
            match entry.kind {
                Kind::Dir => {
                    return Ok(if entered(entry.relative) {
                        Walk::Enter
                    } else {
                        Walk::Skip
                    });
                }
                kind => consider(entry.relative, kind, &|| entry.stat())?,
            }
            Ok(Walk::Skip)
        })?;
    }
    found.sort_unstable_by(|a, b| a.relative.cmp(&b.relative));
    found.dedup_by(|a, b| a.relative == b.relative);
    Ok((found, patterns.unmatched(&matched)))
}

fn unreachable_stat() -> std::io::Result<FileStat> {
    Err(std::io::Error::other("a link has no stat of its own here"))
}

/// `relative` (below `cwd`) as a root-relative path for messages.
fn display(cwd: &Dir, relative: &str) -> String {
    match cwd.relative() {
        "" => relative.to_string(),
        prefix => format!("{prefix}/{relative}"),
    }
}

enum Target {
    /// A regular file below the root, with its stat.
    Inside(FileStat),
    /// Resolves outside the root.
    Outside(PathBuf),
    /// Dangling, or a directory or another non-file below the root.
    NotAFile,
}

/// Where the link at `absolute` leads (following every link on the way).
fn link_target(tree: &Tree<'_>, absolute: &Path) -> Target {
    let Ok(target) = std::fs::canonicalize(absolute) else {
        return Target::NotAFile;
    };
    if !target.starts_with(tree.canonical_root) {
        return Target::Outside(target);
    }
    match std::fs::metadata(&target) {
        Ok(metadata) if metadata.is_file() => Target::Inside(FileStat::of(&metadata)),
        _ => Target::NotAFile,
    }
}

/// Checks that `pattern` is a valid glob for [`Patterns`], without building a matcher. A
/// literal is valid once normalized; a glob is compiled once per process (globset builds a
/// regex's source for it, an allocation per character: configurations repeat their patterns,
/// `src/*.rs` in every package). At most [`SHARED_MAX`] valid globs are remembered.
pub fn validate(pattern: &str) -> Result<(), PatternError> {
    static VALID: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let (_, pattern) = Patterns::normalize(pattern)?;
    if is_literal(pattern) {
        return Ok(());
    }
    let known = |valid: &mut Option<HashSet<String>>| {
        valid.get_or_insert_with(HashSet::new).contains(pattern)
    };
    if known(&mut VALID.lock().unwrap_or_else(|e| e.into_inner())) {
        return Ok(());
    }
    compile(pattern)?;
    let mut valid = VALID.lock().unwrap_or_else(|e| e.into_inner());
    let valid = valid.get_or_insert_with(HashSet::new);
    if valid.len() >= SHARED_MAX {
        valid.clear();
    }
    valid.insert(pattern.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// What the glob sets say of `relative`: whether it matches, and which include globs do.
    fn by_glob_sets(patterns: &Patterns, relative: &str) -> (bool, Vec<usize>) {
        let candidate = globset::Candidate::new(Path::new(relative));
        let mut hits = Vec::new();
        patterns
            .include
            .matches_candidate_into(&candidate, &mut hits);
        if patterns.exclude.is_match_candidate(&candidate) {
            hits.clear();
        }
        (!hits.is_empty(), hits)
    }

    /// A component of a pattern, from a small alphabet so that patterns and paths meet often.
    fn pattern_component() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::prop_oneof![
            proptest::sample::select(vec![
                "a", "b", "ab", ".a", "a.b", "*", "**", "a*", "*b", "*.b", "a*b", ".*", "a?",
                "[ab]", "{a,b}"
            ])
            .prop_map(str::to_string),
            "[ab.]{1,3}",
        ]
    }

    fn path_component() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::prop_oneof![
            proptest::sample::select(vec![
                "a", "b", "ab", ".a", "a.b", "b.b", ".b", "aab", "ba", "*"
            ])
            .prop_map(str::to_string),
            "[ab.*]{1,4}",
        ]
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// The simple matchers say what the glob sets say, for every path, whenever every glob
        /// of a list has a simple shape (and the shapes are what they are meant to be).
        #[test]
        fn simple_matchers_agree_with_the_glob_sets(
            patterns in proptest::collection::vec(
                (proptest::bool::weighted(0.2), proptest::collection::vec(pattern_component(), 1..4)),
                1..4,
            ),
            paths in proptest::collection::vec(proptest::collection::vec(path_component(), 1..5), 1..24),
        ) {
            let patterns: Vec<String> = patterns
                .iter()
                .map(|(negated, parts)| format!("{}{}", if *negated { "!" } else { "" }, parts.join("/")))
                .collect();
            let Ok(compiled) = Patterns::new(&patterns) else {
                return Ok(());
            };
            let Some((include, exclude)) = &compiled.simple else {
                return Ok(());
            };
            proptest::prop_assert_eq!(include.len(), compiled.include.len());
            proptest::prop_assert_eq!(exclude.len(), compiled.exclude.len());
            for path in paths {
                let path = path.join("/");
                let mut hits = Vec::new();
                let simple = compiled.matching(path.as_bytes(), &mut hits);
                proptest::prop_assert_eq!(
                    (simple, hits),
                    by_glob_sets(&compiled, &path),
                    "patterns {:?}, path {:?}",
                    &patterns,
                    &path
                );
                proptest::prop_assert_eq!(compiled.matches(&path), simple);
            }
        }
    }

    #[test]
    fn validation_remembers_only_valid_globs_and_still_refuses_bad_ones() {
        for _ in 0..2 {
            assert!(validate("src/*.validated").is_ok());
            assert!(validate("src/[a.validated").is_err());
            assert!(validate("src/{a,b.validated").is_err());
            assert!(validate("../escape").is_err());
            assert!(validate("a b,c/d.txt").is_ok());
            assert!(validate("!gen/x.validated").is_ok());
        }
    }

    #[test]
    fn the_usual_shapes_are_simple_and_the_others_are_left_to_the_glob_sets() {
        let simple = |patterns: &[&str]| {
            let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
            Patterns::new(&patterns).unwrap().simple.is_some()
        };
        assert!(simple(&["src/*.txt"]));
        assert!(simple(&[
            "out/app.bin",
            "gen/**",
            "!gen/tmp",
            "*.go",
            "!*_test.go",
            "lib*.a"
        ]));
        assert!(!simple(&["src/**/*.rs"]));
        assert!(!simple(&["src/*.txt", "a?.c"]));
        assert!(!simple(&["src/*.{c,h}"]));
        assert!(!simple(&["*/main.go"]));
        assert!(!simple(&["src/*_*.rs"]));
        assert!(!simple(&["src/\\*.txt"]));
    }

    /// Every list [`Patterns::new`] compiled in this test process.
    pub(super) static COMPILED: Mutex<Vec<Vec<String>>> = Mutex::new(Vec::new());

    fn compilations(list: &[String]) -> usize {
        let compiled = COMPILED.lock().unwrap_or_else(|e| e.into_inner());
        compiled
            .iter()
            .filter(|found| found.as_slice() == list)
            .count()
    }

    #[test]
    fn threads_asking_for_one_list_at_once_share_one_compilation_and_errors_are_not_kept() {
        let asked = |list: &[String]| {
            let barrier = std::sync::Barrier::new(8);
            std::thread::scope(|scope| {
                let threads: Vec<_> = (0..8)
                    .map(|_| {
                        scope.spawn(|| {
                            barrier.wait();
                            Patterns::shared(list)
                        })
                    })
                    .collect();
                threads
                    .into_iter()
                    .map(|thread| thread.join().unwrap())
                    .collect::<Vec<_>>()
            })
        };
        // A list no other test uses.
        let list = vec![
            "only-here-1/**/*.q".to_string(),
            "!only-here-1/x.q".to_string(),
        ];
        let found = asked(&list);
        let first = found[0].as_ref().expect("compiles");
        assert!(
            found
                .iter()
                .all(|f| Arc::ptr_eq(f.as_ref().unwrap(), first))
        );
        assert_eq!(compilations(&list), 1, "compiled once for 8 threads");
        assert!(Arc::ptr_eq(&Patterns::shared(&list).unwrap(), first));
        assert_eq!(compilations(&list), 1);
        // A bad list: an error for every thread, and asked again, compiled again (not kept).
        let bad = vec!["only-here-2/[".to_string()];
        assert!(asked(&bad).iter().all(Result::is_err));
        let before = compilations(&bad);
        assert!(Patterns::shared(&bad).is_err());
        assert_eq!(compilations(&bad), before + 1);
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in [
            "src/a.rs",
            "src/deep/b.rs",
            "src/c.txt",
            "README",
            "dist/out.js",
        ] {
            let path = dir.path().join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, file).unwrap();
        }
        dir
    }

    /// The directory opened as a confined root, and its canonical path.
    fn opened(dir: &Path) -> (Dir, PathBuf) {
        (Dir::open_root(dir).unwrap(), fs::canonicalize(dir).unwrap())
    }

    fn tree_over<'a>(root: &'a Dir, canonical: &'a Path, never_enter: &'a [String]) -> Tree<'a> {
        Tree {
            root,
            canonical_root: canonical,
            never_enter,
            listings: None,
            stat_when_opened: false,
            room_before: 0,
        }
    }

    fn try_names(
        dir: &Path,
        patterns: &[&str],
        skip: &[&str],
        purpose: Purpose,
    ) -> Result<(Vec<String>, Vec<String>), ExpandError> {
        let patterns =
            Patterns::new(&patterns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let skip = Patterns::new(&skip.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let (root, canonical) = opened(dir);
        let never_enter = [".xbundle".to_string()];
        let tree = tree_over(&root, &canonical, &never_enter);
        let (found, unmatched) = expand(&tree, &root, &patterns, Some(&skip), purpose)?;
        Ok((found.into_iter().map(|f| f.relative).collect(), unmatched))
    }

    fn names(dir: &Path, patterns: &[&str], skip: &[&str]) -> (Vec<String>, Vec<String>) {
        try_names(dir, patterns, skip, Purpose::Read).unwrap()
    }

    #[test]
    fn globs_literals_and_excludes() {
        let dir = tree();
        let (found, unmatched) = names(dir.path(), &["src/**/*.rs", "README", "missing/*.x"], &[]);
        assert_eq!(found, ["README", "src/a.rs", "src/deep/b.rs"]);
        assert_eq!(unmatched, ["missing/*.x"]);
        let (found, _) = names(dir.path(), &["src", "!src/deep"], &[]);
        assert_eq!(found, ["src/a.rs", "src/c.txt"]);
        let (found, _) = names(dir.path(), &["src/*"], &[]);
        assert_eq!(found, ["src/a.rs", "src/c.txt"], "* does not cross /");
    }

    #[test]
    fn a_directory_handle_walks_again_from_its_start() {
        // Each walk reads its own handle: a second walk from the same directory sees files
        // created since the first (a shared read position would see nothing).
        let dir = tree();
        let (root, canonical) = opened(dir.path());
        let tree = tree_over(&root, &canonical, &[]);
        let cwd = root.open_dir("").unwrap().unwrap();
        let patterns = Patterns::new(&["**/*.gen".to_string()]).unwrap();
        let (found, _) = expand(&tree, &cwd, &patterns, None, Purpose::Remove).unwrap();
        assert!(found.is_empty());
        fs::write(dir.path().join("src/x.gen"), "x").unwrap();
        let (found, unmatched) = expand(&tree, &cwd, &patterns, None, Purpose::Read).unwrap();
        assert_eq!(found.len(), 1);
        assert!(unmatched.is_empty());
    }

    #[test]
    fn a_found_file_is_opened_below_its_directory_and_never_through_a_link_swapped_in() {
        use std::io::Read;
        use std::os::unix::fs::symlink;
        let dir = tree();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "outside").unwrap();
        symlink("a.rs", dir.path().join("src/to-a")).unwrap();
        let (root, canonical) = opened(dir.path());
        let tree = tree_over(&root, &canonical, &[]);
        let cwd = root.open_dir("src").unwrap().unwrap();
        let patterns = Patterns::new(&["*".to_string()]).unwrap();
        let (found, _) = expand(&tree, &cwd, &patterns, None, Purpose::Read).unwrap();
        let read = |file: &Found| -> std::io::Result<String> {
            let mut text = String::new();
            file.open_to_read(&cwd)?.read_to_string(&mut text)?;
            Ok(text)
        };
        let by_name = |name: &str| found.iter().find(|f| f.relative == name).unwrap();
        assert_eq!(read(by_name("a.rs")).unwrap(), "src/a.rs");
        // A link the walk found (to a file inside the tree) is read through.
        assert!(by_name("to-a").link);
        assert_eq!(read(by_name("to-a")).unwrap(), "src/a.rs");
        // A file the walk found regular, replaced since by a link to a file outside (a task
        // or anyone else racing the engine): refused, naming the link, not read through.
        fs::remove_file(dir.path().join("src/c.txt")).unwrap();
        symlink(outside.path().join("secret"), dir.path().join("src/c.txt")).unwrap();
        let err = read(by_name("c.txt")).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        // Gone since the walk: not found.
        fs::remove_file(dir.path().join("src/a.rs")).unwrap();
        let err = read(by_name("a.rs")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }

    /// What `opener` reads of `file`.
    fn read_opened(opener: &mut Opener, file: &Found) -> std::io::Result<String> {
        use std::io::Read;
        let mut text = String::new();
        opener.open(file)?.read_to_string(&mut text)?;
        Ok(text)
    }

    /// An [`Opener`] reads the files of each directory through one handle on it, and is as
    /// confined as [`Found::open_to_read`]: a file or a directory replaced by a link since the
    /// walk is refused, never read through; a directory renamed away while its handle is held
    /// is read from where it went (still the directory the walk found), never from a link
    /// swapped in at its name.
    #[test]
    fn an_opener_reads_each_directory_through_one_handle_and_never_through_a_link() {
        use std::os::unix::fs::symlink;
        let dir = tree();
        let outside = tempfile::tempdir().unwrap();
        for name in ["secret", "c.txt", "b.rs"] {
            fs::write(outside.path().join(name), "outside").unwrap();
        }
        symlink("a.rs", dir.path().join("src/to-a")).unwrap();
        let (root, canonical) = opened(dir.path());
        let tree = tree_over(&root, &canonical, &[]);
        let patterns = Patterns::new(&["**".to_string()]).unwrap();
        let (found, _) = expand(&tree, &root, &patterns, None, Purpose::Read).unwrap();
        let names: Vec<&str> = found.iter().map(|f| f.relative.as_str()).collect();
        assert_eq!(
            names,
            [
                "README",
                "dist/out.js",
                "src/a.rs",
                "src/c.txt",
                "src/deep/b.rs",
                "src/to-a"
            ]
        );
        let by_name = |name: &str| found.iter().find(|f| f.relative == name).unwrap();
        let mut opener = Opener::new(&root);
        for file in &found {
            let expected = if file.link {
                "src/a.rs"
            } else {
                &file.relative
            };
            assert_eq!(read_opened(&mut opener, file).unwrap(), expected);
        }

        // A file replaced by a link to a file outside: refused, naming the link.
        fs::remove_file(dir.path().join("src/c.txt")).unwrap();
        symlink(outside.path().join("secret"), dir.path().join("src/c.txt")).unwrap();
        let mut opener = Opener::new(&root);
        assert_eq!(
            read_opened(&mut opener, by_name("src/a.rs")).unwrap(),
            "src/a.rs"
        );
        let err = read_opened(&mut opener, by_name("src/c.txt")).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        // A directory replaced by a link to a directory outside: refused.
        fs::rename(dir.path().join("src/deep"), dir.path().join("deep.old")).unwrap();
        symlink(outside.path(), dir.path().join("src/deep")).unwrap();
        let err = read_opened(&mut opener, by_name("src/deep/b.rs")).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        // Gone since the walk: not found.
        fs::remove_file(dir.path().join("README")).unwrap();
        let err = read_opened(&mut opener, by_name("README")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);

        // The directory renamed away while its handle is held, a link to outside put at its
        // name: the handle still reads the directory the walk found, never the link's target.
        let dir = self::tree();
        let (root, canonical) = opened(dir.path());
        let walked = tree_over(&root, &canonical, &[]);
        let (found, _) = expand(&walked, &root, &patterns, None, Purpose::Read).unwrap();
        let by_name = |name: &str| found.iter().find(|f| f.relative == name).unwrap();
        let mut opener = Opener::new(&root);
        assert_eq!(
            read_opened(&mut opener, by_name("src/a.rs")).unwrap(),
            "src/a.rs"
        );
        fs::rename(dir.path().join("src"), dir.path().join("src.old")).unwrap();
        symlink(outside.path(), dir.path().join("src")).unwrap();
        assert_eq!(
            read_opened(&mut opener, by_name("src/c.txt")).unwrap(),
            "src/c.txt"
        );
        // A new opener opens the directory again: refused at the link.
        let mut opener = Opener::new(&root);
        let err = read_opened(&mut opener, by_name("src/a.rs")).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }

    /// Each directory is opened once, from its parent's handle, even when its files come
    /// around those of its subdirectories (`foo.rs` < `foo/bar.rs` < `main.rs`); a directory
    /// replaced since its handle was opened is looked up again, not taken for empty.
    #[test]
    fn an_opener_opens_each_directory_once_and_again_when_it_was_replaced() {
        let dir = tempfile::tempdir().unwrap();
        for file in [
            "top.txt",
            "src/foo.rs",
            "src/foo/bar.rs",
            "src/foo/baz/q.rs",
            "src/main.rs",
        ] {
            let path = dir.path().join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, file).unwrap();
        }
        let (root, canonical) = opened(dir.path());
        let walked = tree_over(&root, &canonical, &[]);
        let patterns = Patterns::new(&["**".to_string()]).unwrap();
        let (found, _) = expand(&walked, &root, &patterns, None, Purpose::Read).unwrap();
        let names: Vec<&str> = found.iter().map(|f| f.relative.as_str()).collect();
        assert_eq!(
            names,
            [
                "src/foo.rs",
                "src/foo/bar.rs",
                "src/foo/baz/q.rs",
                "src/main.rs",
                "top.txt"
            ]
        );
        let mut opener = Opener::new(&root);
        for file in &found {
            assert_eq!(read_opened(&mut opener, file).unwrap(), file.relative);
        }
        assert_eq!(opener.opened, 3, "src, src/foo, src/foo/baz");

        // `src` removed and made again while its handle is held: its new files are found.
        let mut opener = Opener::new(&root);
        assert_eq!(read_opened(&mut opener, &found[0]).unwrap(), "src/foo.rs");
        fs::remove_dir_all(dir.path().join("src")).unwrap();
        fs::create_dir_all(dir.path().join("src/foo")).unwrap();
        fs::write(dir.path().join("src/foo/bar.rs"), "made again").unwrap();
        fs::write(dir.path().join("src/main.rs"), "made again").unwrap();
        // `src/main.rs` first: its directory is the one held (not one to open through it).
        assert_eq!(read_opened(&mut opener, &found[3]).unwrap(), "made again");
        assert_eq!(read_opened(&mut opener, &found[1]).unwrap(), "made again");
        let err = read_opened(&mut opener, &found[2]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn skip_removes_outputs_from_inputs() {
        let dir = tree();
        let (found, unmatched) = names(dir.path(), &["**"], &["dist/**"]);
        assert_eq!(found, ["README", "src/a.rs", "src/c.txt", "src/deep/b.rs"]);
        assert!(unmatched.is_empty());
    }

    #[test]
    fn links_non_utf8_names_and_own_directories() {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::symlink;
        let dir = tree();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), b"s").unwrap();
        fs::create_dir_all(dir.path().join(".xbundle/cache")).unwrap();
        fs::write(dir.path().join(".xbundle/cache/blob"), b"b").unwrap();
        fs::create_dir_all(dir.path().join(".git")).unwrap();
        fs::write(dir.path().join(".git/config"), b"c").unwrap();
        symlink("a.rs", dir.path().join("src/inside.rs")).unwrap();
        symlink(
            dir.path().join("src/deep"),
            dir.path().join("src/deep-link"),
        )
        .unwrap();
        symlink("missing", dir.path().join("src/dangling.rs")).unwrap();

        // Links to files inside count as the file; links to directories and dangling links are
        // left out; `.git` and the engine's directories are never entered.
        let (found, _) = names(dir.path(), &["**"], &[]);
        assert_eq!(
            found,
            [
                "README",
                "dist/out.js",
                "src/a.rs",
                "src/c.txt",
                "src/deep/b.rs",
                "src/inside.rs"
            ]
        );
        // Removing lists every link (removed itself, never followed).
        let (found, _) = try_names(dir.path(), &["src/*.rs"], &[], Purpose::Remove).unwrap();
        assert_eq!(found, ["src/a.rs", "src/dangling.rs", "src/inside.rs"]);
        // A link leading outside is an error when read, listed when removing.
        symlink(
            outside.path().join("secret"),
            dir.path().join("src/secret.rs"),
        )
        .unwrap();
        let err = try_names(dir.path(), &["src/**"], &[], Purpose::Read).unwrap_err();
        assert!(
            matches!(err, ExpandError::LinkOutside { ref path, .. } if path == "src/secret.rs"),
            "{err}"
        );
        assert!(try_names(dir.path(), &["src/**"], &[], Purpose::Remove).is_ok());
        // Left out of the inputs as an output: never looked at.
        let (found, _) =
            try_names(dir.path(), &["src/**"], &["src/secret.rs"], Purpose::Read).unwrap();
        assert!(!found.contains(&"src/secret.rs".to_string()));
        fs::remove_file(dir.path().join("src/secret.rs")).unwrap();

        // A link where a pattern expects a directory is an error naming it.
        symlink(outside.path(), dir.path().join("build")).unwrap();
        let err = try_names(dir.path(), &["build/**"], &[], Purpose::Remove).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`build` is a symbolic link where a directory is expected; xbundle never follows a link to a directory in a task's paths (replace the link by a directory, or change the task's paths)"
        );

        // A matching name that is not UTF-8 is an error naming it, in a non-UTF-8 directory too.
        let name = std::ffi::OsStr::from_bytes(b"\xff.txt");
        fs::write(dir.path().join("src").join(name), b"x").unwrap();
        let err = try_names(dir.path(), &["src/**"], &[], Purpose::Read).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("`src/\\xff.txt` matches a pattern"),
            "{err}"
        );
        fs::remove_file(dir.path().join("src").join(name)).unwrap();
        let weird = dir
            .path()
            .join("src")
            .join(std::ffi::OsStr::from_bytes(b"d\xfe"));
        fs::create_dir_all(&weird).unwrap();
        fs::write(weird.join("x.rs"), b"x").unwrap();
        let err = try_names(dir.path(), &["src/**/*.rs"], &[], Purpose::Read).unwrap_err();
        assert!(err.to_string().starts_with("`src/d\\xfe/x.rs`"), "{err}");
        // Not matched: no error.
        assert!(try_names(dir.path(), &["src/*.txt"], &[], Purpose::Read).is_ok());
    }

    #[test]
    fn escaping_patterns_are_rejected() {
        assert!(Patterns::new(&["../x".to_string()]).is_err());
        assert!(Patterns::new(&["/etc/passwd".to_string()]).is_err());
    }
}
