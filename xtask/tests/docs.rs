//! Tidy tests of the documentation (issue 11 item 10), in the spirit of rust-analyzer's: the
//! paths ARCHITECTURE.md and README.md name exist, and ARCHITECTURE.md's code map names every
//! module of every crate (and no module that is gone).
//!
//! **Which backticked tokens are path claims.** A token (between single backticks, no
//! whitespace, not a URL with `://`, not an HTTP route or absolute path starting with `/`) is
//! checked when
//! 1. its first component is a top-level entry of the repository (`crates/…`, `xtask/…`,
//!    `docs/…`, `platforms/*.toml`, `bundle.toml`, …; entries `.gitignore` names, such as
//!    `target/`, `dist/` and `.xbundle/`, are build products and not entries): resolved from
//!    the root;
//! 2. in a crate's section of the code map (`` ### `crates/engine` ``, `` ### `xtask` ``), it
//!    starts with `src/`, `tests/`, `examples/`, `benches/` or `schema/`: resolved from that
//!    crate's directory;
//! 3. otherwise, it ends in `.rs`: it must be the tail (whole components) of a file of the
//!    section's crate (of the repository outside crate sections), as `package/msi.rs` is of
//!    `crates/xbundle/src/package/msi.rs`;
//! 4. it starts with `../shared/`: resolved beside the repository when the conformance
//!    corpus is there (see README), skipped otherwise.
//!
//! Other tokens (file names inside a bundle or a scenario such as `bundle.json` or
//! `.vrooli/service.json`, paths under `<out>` or `.xbundle/` that builds create) are not
//! claims about the repository. In a claim, `<name>` is a placeholder for one component and
//! `*`, `**`, `{a,b}` are globs as in bundle.toml; such a claim must match at least one
//! existing path. A trailing `/` claims a directory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The repository root (the workspace holding `xtask/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent")
        .to_path_buf()
}

/// Every file and directory of the repository, root-relative (`/`-separated), without `.git`
/// and the ignored build products.
struct Tree {
    root: PathBuf,
    ignored: BTreeSet<String>,
    /// Path -> is a directory.
    entries: BTreeMap<String, bool>,
}

impl Tree {
    fn load() -> Tree {
        let root = root();
        let gitignore = std::fs::read_to_string(root.join(".gitignore")).unwrap_or_default();
        let mut ignored: BTreeSet<String> = gitignore
            .lines()
            .map(|line| line.trim().trim_matches('/').to_string())
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .collect();
        ignored.insert(".git".into());
        let mut entries = BTreeMap::new();
        walk(&root, "", &ignored, &mut entries);
        Tree {
            root,
            ignored,
            entries,
        }
    }

    fn top_level(&self) -> BTreeSet<&str> {
        self.entries
            .keys()
            .filter(|path| !path.contains('/'))
            .map(String::as_str)
            .collect()
    }

    /// Whether `claim` (root-relative, maybe with placeholders and globs) names something.
    fn exists(&self, claim: &str) -> bool {
        let want_dir = claim.ends_with('/');
        let claim = claim.trim_end_matches('/');
        let pattern = placeholders_to_globs(claim);
        if engine::files::is_literal(&pattern) {
            return self.entries.get(claim).is_some_and(|&dir| dir || !want_dir)
                || (!self.ignored.contains(claim.split('/').next().unwrap_or(""))
                    && self.root.join(claim).exists()
                    && (!want_dir || self.root.join(claim).is_dir()));
        }
        // The engine's own glob semantics (those of bundle.toml).
        let glob = engine::files::Patterns::new(&[pattern])
            .unwrap_or_else(|err| panic!("`{claim}` is not a valid glob: {err}"));
        self.entries
            .iter()
            .any(|(path, &dir)| glob.matches(path) && (dir || !want_dir))
    }

    /// Files whose path ends with the components of `tail`, under `within` ("" for all).
    fn has_tail(&self, within: &str, tail: &str) -> bool {
        self.entries.iter().any(|(path, &dir)| {
            !dir && (within.is_empty() || path.starts_with(&format!("{within}/")))
                && (path == tail || path.ends_with(&format!("/{tail}")))
        })
    }
}

fn walk(dir: &Path, prefix: &str, ignored: &BTreeSet<String>, out: &mut BTreeMap<String, bool>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if prefix.is_empty() && ignored.contains(&name) || name == ".git" || name == "node_modules"
        {
            continue;
        }
        let relative = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
        out.insert(relative.clone(), is_dir);
        if is_dir {
            walk(&entry.path(), &relative, ignored, out);
        }
    }
}

/// `<name>` → `*` (one component).
fn placeholders_to_globs(claim: &str) -> String {
    let mut out = String::new();
    let mut rest = claim;
    while let Some(start) = rest.find('<') {
        let Some(end) = rest[start..].find('>') else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push('*');
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// A markdown document split into (section heading, backticked tokens of its lines), outside
/// fenced code blocks.
fn tokens(text: &str) -> Vec<(String, usize, String)> {
    let mut section = String::new();
    let mut fenced = false;
    let mut out = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        if line.starts_with('#') {
            section = line.trim_start_matches('#').trim().to_string();
        }
        let mut parts = line.split('`');
        parts.next();
        while let (Some(inside), Some(_)) = (parts.next(), Some(())) {
            if !inside.is_empty() {
                out.push((section.clone(), number + 1, inside.to_string()));
            }
            if parts.next().is_none() {
                break;
            }
        }
    }
    out
}

/// The crate directory a code-map section is about (`crates/engine`, `xtask`), if any.
fn section_crate(section: &str) -> Option<String> {
    let name = section.strip_prefix('`')?.split('`').next()?;
    (name == "xtask" || name.starts_with("crates/")).then(|| name.to_string())
}

/// The path claims of a document that name nothing, as `line: token (rule)`.
fn missing_paths(document: &str) -> Vec<String> {
    let tree = Tree::load();
    let text = std::fs::read_to_string(tree.root.join(document))
        .unwrap_or_else(|err| panic!("read {document}: {err}"));
    let top = tree.top_level();
    let shared = tree.root.join("../shared");
    let mut missing = Vec::new();
    for (section, line, token) in tokens(&text) {
        if token.chars().any(char::is_whitespace)
            || token.contains("://")
            || token.starts_with('/')
            || token.starts_with('-')
        {
            continue;
        }
        let crate_dir = section_crate(&section);
        let first = token.split('/').next().unwrap_or("");
        let found = if let Some(rest) = token.strip_prefix("../shared/") {
            if !shared.is_dir() {
                continue;
            }
            shared.join(rest).exists()
        } else if top.contains(first) && (token.contains('/') || tree.entries.contains_key(&token))
        {
            tree.exists(&token)
        } else if let Some(dir) = crate_dir.as_deref().filter(|_| {
            ["src/", "tests/", "examples/", "benches/", "schema/"]
                .iter()
                .any(|prefix| token.starts_with(prefix))
        }) {
            tree.exists(&format!("{dir}/{token}"))
        } else if token.ends_with(".rs") && !token.contains(['<', '*', '{']) {
            tree.has_tail(crate_dir.as_deref().unwrap_or(""), &token)
        } else {
            continue;
        };
        if !found {
            let within = crate_dir
                .map(|dir| format!(" (in {dir})"))
                .unwrap_or_default();
            missing.push(format!("{document}:{line}: `{token}`{within}"));
        }
    }
    missing
}

#[test]
fn every_path_architecture_md_names_exists() {
    let missing = missing_paths("ARCHITECTURE.md");
    assert!(
        missing.is_empty(),
        "paths named in ARCHITECTURE.md that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_path_readme_names_exists() {
    let missing = missing_paths("README.md");
    assert!(
        missing.is_empty(),
        "paths named in README.md that do not exist:\n{}",
        missing.join("\n")
    );
}

/// The modules of a crate's `src/`: `x.rs` and `x/` (with `mod.rs`, or beside `x.rs`), without
/// the crate roots `lib` and `main`.
fn modules(src: &Path) -> BTreeSet<String> {
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(src).expect("read src").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let module = if path.is_dir() {
            (path.join("mod.rs").is_file() || src.join(format!("{name}.rs")).is_file())
                .then_some(name)
        } else {
            name.strip_suffix(".rs").map(str::to_string)
        };
        if let Some(module) = module.filter(|m| m != "lib" && m != "main") {
            modules.insert(module);
        }
    }
    modules
}

#[test]
fn the_code_map_names_every_module_and_no_other() {
    let root = root();
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut problems = Vec::new();
    let mut sections = 0;
    for krate in [
        "crates/engine",
        "crates/xbundle",
        "crates/manifest",
        "crates/runtime",
        "crates/reapi",
    ] {
        let heading = format!("### `{krate}`");
        let Some(start) = text.find(&heading) else {
            problems.push(format!("no section {heading}"));
            continue;
        };
        sections += 1;
        let body = &text[start + heading.len()..];
        let body = &body[..body.find("\n## ").unwrap_or(body.len())];
        let body = &body[..body.find("\n### ").unwrap_or(body.len())];
        let named: BTreeSet<String> = tokens(body).into_iter().map(|(_, _, t)| t).collect();
        let modules = modules(&root.join(krate).join("src"));
        for module in &modules {
            if !named.contains(module) {
                problems.push(format!("{krate}: module `{module}` is not in its section"));
            }
        }
        for line in body.lines() {
            let Some(rest) = line.strip_prefix("- `") else {
                continue;
            };
            let name = rest.split('`').next().unwrap_or("");
            let is_module_name = name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            if is_module_name && !modules.contains(name) && name != "lib" && name != "main" {
                problems.push(format!(
                    "{krate}: the code map lists `{name}`, which is no module"
                ));
            }
        }
    }
    assert_eq!(sections, 5);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_rules_catch_what_they_should() {
    // The checker itself: a stale path of each kind is reported.
    let tree = Tree::load();
    assert!(tree.exists("crates/engine/src/exec.rs"));
    assert!(!tree.exists("crates/xbundle/src/cli.rs"));
    assert!(tree.exists("xtask/tests/*.rs"));
    assert!(tree.exists("platforms/<platform>.toml"));
    assert!(!tree.exists("platforms/<platform>.yaml"));
    assert!(tree.exists("crates/engine/"));
    assert!(!tree.exists("bundle.toml/"));
    assert!(tree.has_tail("crates/xbundle", "package/msi.rs"));
    assert!(!tree.has_tail("crates/xbundle", "kage/msi.rs"));
    assert!(!tree.has_tail("crates/runtime", "package/msi.rs"));
    let found = tokens("## x\n- `a/b` and `c`, ``\n```\n`d`\n```\n");
    let found: Vec<&str> = found.iter().map(|(_, _, t)| t.as_str()).collect();
    assert_eq!(found, ["a/b", "c"]);
    assert_eq!(
        placeholders_to_globs("dist/<profile>/stage/<p>/"),
        "dist/*/stage/*/"
    );
}
