//! Makefile-style depfiles (gcc and clang `-MD`/`-MMD`, rustc and cargo `.d` dep-info, ninja's
//! format), read after a [`crate::CommandAction`] with a `depfile` succeeds, and turned into
//! discovered files (see [`crate::discovered`]).
//!
//! Syntax accepted ([`parse`]): rules `target…: dependency…`, one or several, each ending at an
//! unescaped newline; a backslash before a newline continues the line; `\ ` is a space in a
//! name, `\#` a `#`, `\:` a `:` and `$$` a `$` (any other backslash is kept, as in Windows-style
//! names); a `:` ends the targets only when whitespace or the end of a line follows it (so
//! `C:/x` stays one name); `#` at the start of a word begins a comment to the end of the line
//! (rustc's `# env-dep:` lines); rules without dependencies (`-MP`'s phony `header.h:`) are
//! fine. Targets are ignored: every dependency of every rule is reported. A line with names but
//! no `:` is an error naming the depfile and the line.
//!
//! Paths ([`dependencies`]): a relative dependency is relative to the task's cwd, normalized
//! lexically (`./`, `a/../b`); an absolute one inside the workspace root becomes root-relative;
//! anything leading outside the root (a compiler's system headers, `~/.cargo/registry`) is
//! ignored. A name that is not UTF-8 fails the task, named escaped. Known limit: `..` is
//! resolved lexically, as the compiler's own output writes it; a `dir/link/../x` whose `link` is a
//! symbolic link is taken as `dir/x`.
//!
//! Bounds: a depfile of more than [`MAX_BYTES`] is refused; the discovered list is bounded by
//! [`crate::discovered::MAX_FILES`].

use std::path::Path;

use crate::confine::escape;
use crate::task::{ActionContext, Discovered};

/// The largest depfile read.
pub const MAX_BYTES: u64 = 64 << 20;

/// One parsed rule: its targets and dependencies, as raw bytes (unescaped).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rule {
    pub targets: Vec<Vec<u8>>,
    pub dependencies: Vec<Vec<u8>>,
}

/// Parses a depfile (see the module docs). The error says which line is malformed.
pub fn parse(text: &[u8]) -> Result<Vec<Rule>, String> {
    let mut rules = Vec::new();
    let mut rule = Rule::default();
    let mut word: Vec<u8> = Vec::new();
    let mut in_word = false;
    let mut after_colon = false;
    let mut line = 1usize;
    let mut rule_line = 1usize;
    let mut i = 0;
    let at_break = |i: usize| i >= text.len() || matches!(text[i], b' ' | b'\t' | b'\n' | b'\r');

    // Ends the current word, if any.
    fn flush(word: &mut Vec<u8>, in_word: &mut bool, rule: &mut Rule, after_colon: bool) {
        if *in_word {
            let taken = std::mem::take(word);
            if after_colon {
                rule.dependencies.push(taken);
            } else {
                rule.targets.push(taken);
            }
            *in_word = false;
        }
    }

    while i < text.len() {
        let byte = text[i];
        match byte {
            b'\\' => match text.get(i + 1) {
                Some(b'\n') => {
                    flush(&mut word, &mut in_word, &mut rule, after_colon);
                    line += 1;
                    i += 2;
                    continue;
                }
                Some(b'\r') if text.get(i + 2) == Some(&b'\n') => {
                    flush(&mut word, &mut in_word, &mut rule, after_colon);
                    line += 1;
                    i += 3;
                    continue;
                }
                Some(&escaped @ (b' ' | b'#' | b':')) => {
                    word.push(escaped);
                    in_word = true;
                    i += 2;
                    continue;
                }
                _ => {
                    word.push(b'\\');
                    in_word = true;
                }
            },
            b'$' if text.get(i + 1) == Some(&b'$') => {
                word.push(b'$');
                in_word = true;
                i += 2;
                continue;
            }
            b'#' if !in_word => {
                while i < text.len() && text[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b' ' | b'\t' | b'\r' => flush(&mut word, &mut in_word, &mut rule, after_colon),
            b'\n' => {
                flush(&mut word, &mut in_word, &mut rule, after_colon);
                if !after_colon && !rule.targets.is_empty() {
                    return Err(format!(
                        "line {rule_line}: expected `target: dependencies`, found no `:`"
                    ));
                }
                if after_colon {
                    rules.push(std::mem::take(&mut rule));
                }
                after_colon = false;
                line += 1;
                rule_line = line;
            }
            b':' if !after_colon && at_break(i + 1) => {
                flush(&mut word, &mut in_word, &mut rule, after_colon);
                if rule.targets.is_empty() {
                    return Err(format!("line {line}: a rule without a target"));
                }
                after_colon = true;
            }
            b':' if after_colon && at_break(i + 1) => {
                return Err(format!(
                    "line {line}: a second `:` in one rule (dependencies cannot have dependencies)"
                ));
            }
            _ => {
                word.push(byte);
                in_word = true;
            }
        }
        i += 1;
    }
    flush(&mut word, &mut in_word, &mut rule, after_colon);
    if after_colon {
        rules.push(rule);
    } else if !rule.targets.is_empty() {
        return Err(format!(
            "line {rule_line}: expected `target: dependencies`, found no `:`"
        ));
    }
    Ok(rules)
}

/// Lexically normalized, root-relative form of `cwd`/`path`; `None` when it leads outside the
/// root (or is the root itself).
fn normalize(cwd: &str, path: &str) -> Option<String> {
    let mut parts: Vec<&str> = if path.starts_with('/') {
        Vec::new()
    } else {
        cwd.split('/').filter(|c| !c.is_empty()).collect()
    };
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The dependencies of `rules` as root-relative paths (sorted, unique): `cwd` is the task's
/// root-relative cwd, `roots` the absolute spellings of the workspace root (as given, and
/// canonical).
pub fn dependencies(rules: &[Rule], cwd: &str, roots: &[&Path]) -> Result<Vec<String>, String> {
    let mut found = std::collections::BTreeSet::new();
    for dependency in rules.iter().flat_map(|rule| &rule.dependencies) {
        let Ok(text) = std::str::from_utf8(dependency) else {
            return Err(format!(
                "dependency `{}` is not valid UTF-8 (xbundle keys UTF-8 paths only)",
                escape(dependency)
            ));
        };
        let relative = if text.starts_with('/') {
            let inside = roots.iter().find_map(|root| {
                Path::new(text)
                    .strip_prefix(root)
                    .ok()
                    .and_then(Path::to_str)
                    .map(str::to_string)
            });
            match inside {
                Some(inside) => normalize("", &inside),
                // Outside the workspace: a system header, a registry source.
                None => None,
            }
        } else {
            normalize(cwd, text)
        };
        if let Some(relative) = relative {
            found.insert(relative);
        }
    }
    if found.len() > crate::discovered::MAX_FILES {
        return Err(format!(
            "lists {} dependencies, more than {}",
            found.len(),
            crate::discovered::MAX_FILES
        ));
    }
    Ok(found.into_iter().collect())
}

/// Reads the depfile `depfile` (relative to the action's cwd) after a successful run and
/// reports its dependencies. Errors name the depfile.
pub fn discover(context: &ActionContext<'_>, depfile: &str) -> Result<Discovered, String> {
    let cwd = context
        .cwd
        .strip_prefix(context.root)
        .ok()
        .and_then(Path::to_str)
        .ok_or_else(|| "the task's cwd is not below the workspace root".to_string())?;
    let relative = normalize(cwd, depfile)
        .filter(|relative| crate::confine::check_relative(relative).is_ok())
        .ok_or_else(|| {
            format!(
                "depfile `{}` is not inside the workspace",
                depfile.escape_debug()
            )
        })?;
    let bytes = context
        .tree
        .read_file(&relative, MAX_BYTES)
        .map_err(|err| format!("reading the depfile: {err}"))?
        .ok_or_else(|| {
            format!("the command succeeded but did not write its depfile `{relative}`")
        })?;
    let rules = parse(&bytes).map_err(|why| format!("depfile `{relative}`, {why}"))?;
    let canonical = std::fs::canonicalize(context.root).ok();
    let mut roots = vec![context.root];
    if let Some(canonical) = &canonical {
        roots.push(canonical);
    }
    let files =
        dependencies(&rules, cwd, &roots).map_err(|why| format!("depfile `{relative}`: {why}"))?;
    Ok(Discovered {
        files,
        listings: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps(text: &str) -> Vec<String> {
        parse(text.as_bytes())
            .unwrap()
            .iter()
            .flat_map(|rule| &rule.dependencies)
            .map(|dep| String::from_utf8(dep.clone()).unwrap())
            .collect()
    }

    #[test]
    fn gcc_style_with_continuations_and_phony_rules() {
        let text = "out/main.o: src/main.c include/a.h \\\n  include/b\\ c.h \\\r\n include/d.h\n\ninclude/a.h:\ninclude/b\\ c.h:\n";
        assert_eq!(
            deps(text),
            ["src/main.c", "include/a.h", "include/b c.h", "include/d.h"]
        );
        let rules = parse(text.as_bytes()).unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0].targets, [b"out/main.o".to_vec()]);
    }

    #[test]
    fn rustc_dep_info_with_comments() {
        let text = "/w/target/debug/app: src/main.rs src/lib.rs\n\n/w/target/debug/app.d: src/main.rs src/lib.rs\n\nsrc/main.rs:\nsrc/lib.rs:\n\n# env-dep:CARGO_PKG_NAME=app\n";
        assert_eq!(
            deps(text),
            ["src/main.rs", "src/lib.rs", "src/main.rs", "src/lib.rs"]
        );
    }

    #[test]
    fn ninja_escapes_and_several_targets() {
        assert_eq!(
            deps("a.o b.o: x$$y.h c\\#d.h e\\:f.h C:/w/g.h\n"),
            ["x$y.h", "c#d.h", "e:f.h", "C:/w/g.h"]
        );
        assert_eq!(deps("a.o: b.h"), ["b.h"], "no final newline");
        assert_eq!(deps(""), Vec::<String>::new());
        assert_eq!(deps("a.o:\n"), Vec::<String>::new());
    }

    #[test]
    fn malformed_depfiles_name_the_line() {
        for (text, line) in [
            ("a.o: b.h\njunk without colon\n", "line 2"),
            (": b.h\n", "line 1"),
            ("a.o: b.h: c.h\n", "line 1"),
            ("a.o: b.h\nc.o d.o", "line 2"),
        ] {
            let err = parse(text.as_bytes()).unwrap_err();
            assert!(err.starts_with(line), "{text:?}: {err}");
        }
    }

    #[test]
    fn paths_become_root_relative_and_outside_ones_are_ignored() {
        let rules = parse(
            b"out/x.o: ../include/a.h ./src/x.c /work/repo/gen/b.h /usr/include/stdio.h \
              ../../../etc/passwd /work/repository/c.h src/./y/../z.h\n",
        )
        .unwrap();
        let roots = [Path::new("/work/repo")];
        assert_eq!(
            dependencies(&rules, "pkg/app", &roots).unwrap(),
            [
                "gen/b.h",
                "pkg/app/src/x.c",
                "pkg/app/src/z.h",
                "pkg/include/a.h"
            ]
        );
        let rules = parse(b"x: \xff.h\n").unwrap();
        let err = dependencies(&rules, "", &roots).unwrap_err();
        assert!(err.contains("`\\xff.h` is not valid UTF-8"), "{err}");
    }
}
