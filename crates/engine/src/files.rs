//! Expanding a task's input and output globs into files.
//!
//! Globs are relative to the task's cwd and use `globset` syntax with `/` as a real separator:
//! `*` stays inside one directory, `**` crosses directories, a leading `!` excludes. A pattern
//! without glob characters names a file, or a whole directory (as `dir/**`). Walks start at the
//! longest literal directory prefix of each pattern, so `src/**` never reads outside `src/`.
//! Directories named `.git` and the engine's own state directory are never entered.

use std::collections::BTreeMap;
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
    pub fn new(patterns: &[String]) -> Result<Patterns, PatternError> {
        let mut include = GlobSetBuilder::new();
        let mut exclude = GlobSetBuilder::new();
        let mut bases = Vec::new();
        let mut include_sources = Vec::new();
        for (index, raw) in patterns.iter().enumerate() {
            let (negated, pattern) = match raw.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, raw.as_str()),
            };
            let pattern = pattern.trim_start_matches("./").trim_end_matches('/');
            if pattern.is_empty()
                || pattern.starts_with('/')
                || pattern.split('/').any(|c| c == "..")
            {
                return Err(PatternError {
                    pattern: raw.clone(),
                    message: "patterns must be relative paths inside the task's directory".into(),
                });
            }
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
pub fn expand(
    cwd: &Path,
    patterns: &Patterns,
    skip: Option<&Patterns>,
    state_dir: &Path,
) -> io::Result<(Vec<Found>, Vec<String>)> {
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    let mut matched = vec![false; patterns.sources.len()];
    let mut bases: Vec<&String> = patterns.bases.iter().collect();
    bases.sort();
    bases.dedup();
    // Drop bases inside another base.
    let mut roots: Vec<&String> = Vec::new();
    for base in bases {
        if !roots.iter().any(|outer| {
            outer.is_empty() || base.starts_with(&format!("{outer}/")) || *outer == base
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
        found.insert(
            relative.clone(),
            Found {
                relative,
                absolute,
                metadata,
            },
        );
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
        let walker = walkdir::WalkDir::new(&start)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|entry| {
                !(entry.depth() > 0
                    && entry.file_type().is_dir()
                    && (entry.file_name() == ".git" || entry.path() == state_dir))
            });
        for entry in walker {
            let entry = entry.map_err(|err| {
                err.into_io_error()
                    .unwrap_or_else(|| io::Error::other("file system loop"))
            })?;
            if entry.file_type().is_dir() {
                continue;
            }
            let Ok(relative_path) = entry.path().strip_prefix(cwd) else {
                continue;
            };
            let Some(relative) = relative_path.to_str() else {
                continue;
            };
            let relative = relative.replace(std::path::MAIN_SEPARATOR, "/");
            // Symlinks count as what they point to; dangling ones are skipped.
            let metadata = match fs::metadata(entry.path()) {
                Ok(metadata) if metadata.is_file() => metadata,
                _ => continue,
            };
            consider(relative, entry.into_path(), metadata);
        }
    }
    let unmatched = patterns
        .sources
        .iter()
        .enumerate()
        .filter(|(index, source)| !source.starts_with('!') && !matched[*index])
        .map(|(_, source)| source.clone())
        .collect();
    Ok((found.into_values().collect(), unmatched))
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
