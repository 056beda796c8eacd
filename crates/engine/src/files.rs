//! Expanding a task's input and output globs into files.
//!
//! Globs are relative to the task's cwd and use `globset` syntax with `/` as a real separator:
//! `*` stays inside one directory, `**` crosses directories, a leading `!` excludes. A pattern
//! without glob characters names a file, or a whole directory (as `dir/**`). Walks start at the
//! longest literal directory prefix of each pattern, so `src/**` never reads outside `src/`.
//! Directories named `.git` and the engine's own state directory are never entered.

use std::fs::{self, Metadata};
use std::io;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// A set of compiled patterns.
#[derive(Debug)]
pub struct Patterns {
    sources: Vec<String>,
    include: GlobSet,
    exclude: GlobSet,
    /// Literal directory prefix of each include pattern ("" for the cwd itself).
    bases: Vec<String>,
    /// Index into `sources` of each include glob.
    include_sources: Vec<usize>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid glob `{pattern}`: {message}")]
pub struct PatternError {
    pub pattern: String,
    pub message: String,
}

fn compile(pattern: &str) -> Result<Glob, PatternError> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|err| PatternError {
            pattern: pattern.to_string(),
            message: err.kind().to_string(),
        })
}

fn is_literal(pattern: &str) -> bool {
    !pattern.contains(['*', '?', '[', ']', '{', '}', '\\'])
}

impl Patterns {
    /// Splits a leading `!` and checks the pattern stays inside the task's directory.
    fn normalize(raw: &str) -> Result<(bool, &str), PatternError> {
        let (negated, pattern) = match raw.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, raw),
        };
        let pattern = pattern.trim_start_matches("./").trim_end_matches('/');
        if pattern.is_empty() || pattern.starts_with('/') || pattern.split('/').any(|c| c == "..") {
            return Err(PatternError {
                pattern: raw.to_string(),
                message: "patterns must be relative paths inside the task's directory".into(),
            });
        }
        Ok((negated, pattern))
    }

    pub fn new(patterns: &[String]) -> Result<Patterns, PatternError> {
        let mut include = GlobSetBuilder::new();
        let mut exclude = GlobSetBuilder::new();
        let mut bases = Vec::new();
        let mut include_sources = Vec::new();
        for (index, raw) in patterns.iter().enumerate() {
            let (negated, pattern) = Patterns::normalize(raw)?;
            if negated {
                exclude.add(compile(pattern)?);
                // `!dir` also excludes everything below it.
                exclude.add(compile(&format!("{pattern}/**"))?);
                continue;
            }
            include.add(compile(pattern)?);
            include_sources.push(index);
            let literal_dirs: Vec<&str> = pattern
                .split('/')
                .take_while(|component| is_literal(component))
                .collect();
            if is_literal(pattern) {
                // A literal names a file or a directory: allow everything below it too.
                include.add(compile(&format!("{pattern}/**"))?);
                include_sources.push(index);
                bases.push(pattern.to_string());
            } else {
                bases.push(literal_dirs.join("/"));
            }
        }
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
            include_sources,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.bases.is_empty()
    }

    pub fn matches(&self, relative: &str) -> bool {
        self.include.is_match(relative) && !self.exclude.is_match(relative)
    }
}

/// A file found by [`expand`].
#[derive(Debug)]
pub struct Found {
    /// Relative to the cwd.
    pub relative: String,
    pub absolute: PathBuf,
    pub metadata: Metadata,
}

/// The files matching `patterns` below `cwd`, sorted by path, minus those `skip` matches;
/// also the include patterns that matched nothing.
///
/// Cost: one `readdir` per directory under each walk root and one `stat` per file, made
/// relative to the directory being read (no path lookup from the root for each file).
pub fn expand(
    cwd: &Path,
    patterns: &Patterns,
    skip: Option<&Patterns>,
    state_dir: &Path,
) -> io::Result<(Vec<Found>, Vec<String>)> {
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
    let mut hits = Vec::new();
    let mut consider = |relative: String, absolute: PathBuf, metadata: Metadata| {
        patterns.include.matches_into(relative.as_str(), &mut hits);
        if hits.is_empty() || patterns.exclude.is_match(relative.as_str()) {
            return;
        }
        for &hit in &hits {
            matched[patterns.include_sources[hit]] = true;
        }
        if skip.is_some_and(|skip| skip.matches(&relative)) {
            return;
        }
        found.push(Found {
            relative,
            absolute,
            metadata,
        });
    };
    for base in roots {
        let start = if base.is_empty() {
            cwd.to_path_buf()
        } else {
            cwd.join(base)
        };
        let metadata = match fs::metadata(&start) {
            Ok(metadata) => metadata,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        if metadata.is_file() {
            consider(base.clone(), start, metadata);
            continue;
        }
        if !metadata.is_dir() {
            continue;
        }
        let mut stack = vec![(start, base.clone())];
        while let Some((dir, relative_dir)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                // Removed while we walked: nothing to see there.
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let relative = if relative_dir.is_empty() {
                    name.to_string()
                } else {
                    format!("{relative_dir}/{name}")
                };
                let file_type = entry.file_type()?;
                if file_type.is_dir() {
                    let path = entry.path();
                    if name != ".git" && path != state_dir {
                        stack.push((path, relative));
                    }
                } else if file_type.is_file() {
                    // fstatat relative to the directory: no full path lookup.
                    match entry.metadata() {
                        Ok(metadata) => consider(relative, entry.path(), metadata),
                        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                        Err(err) => return Err(err),
                    }
                } else if file_type.is_symlink() {
                    // Symlinks count as the file they point to; dangling ones and links to
                    // directories are skipped.
                    let path = entry.path();
                    if let Ok(metadata) = fs::metadata(&path)
                        && metadata.is_file()
                    {
                        consider(relative, path, metadata);
                    }
                }
            }
        }
    }
    found.sort_unstable_by(|a, b| a.relative.cmp(&b.relative));
    found.dedup_by(|a, b| a.relative == b.relative);
    let unmatched = patterns
        .sources
        .iter()
        .enumerate()
        .filter(|(index, source)| !source.starts_with('!') && !matched[*index])
        .map(|(_, source)| source.clone())
        .collect();
    Ok((found, unmatched))
}

/// Checks that `pattern` is a valid glob for [`Patterns`], without building a matcher.
pub fn validate(pattern: &str) -> Result<(), PatternError> {
    Patterns::normalize(pattern).and_then(|(_, pattern)| compile(pattern).map(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn names(dir: &Path, patterns: &[&str], skip: &[&str]) -> (Vec<String>, Vec<String>) {
        let patterns =
            Patterns::new(&patterns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let skip = Patterns::new(&skip.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let (found, unmatched) =
            expand(dir, &patterns, Some(&skip), &dir.join(".xbundle")).unwrap();
        (found.into_iter().map(|f| f.relative).collect(), unmatched)
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
    fn skip_removes_outputs_from_inputs() {
        let dir = tree();
        let (found, unmatched) = names(dir.path(), &["**"], &["dist/**"]);
        assert_eq!(found, ["README", "src/a.rs", "src/c.txt", "src/deep/b.rs"]);
        assert!(unmatched.is_empty());
    }

    #[test]
    fn escaping_patterns_are_rejected() {
        assert!(Patterns::new(&["../x".to_string()]).is_err());
        assert!(Patterns::new(&["/etc/passwd".to_string()]).is_err());
    }
}
