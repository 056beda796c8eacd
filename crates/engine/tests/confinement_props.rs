//! Property (issue 8, acceptance): whatever the task definitions, the links in the tree and the
//! cache entries, a run never changes anything outside the repository's output set.
//!
//! Each case builds `<tmp>/root` (sources, `bundle.toml`, `.git/`) and `<tmp>/canary` beside it,
//! then plants random links (to directories and files inside the root and in the canary, dangling
//! ones, absolute ones; in place of the engine's own state and cache directories too), defines one task with a random cwd (possibly a link) and random output
//! patterns (`**`, `.git/**`, the engine's directory, `bundle.toml`, …: definitions the front end
//! would reject at load time are exactly what this defends against), and runs it. The task's
//! action is well behaved: it writes only paths of its output set, through the confined API.
//! Then a forged action result (random paths: `..`, absolute, `.git`, protected, sources;
//! random executable bits; unsorted or duplicated lists) is stored under the task's key, more
//! links may replace directories, and the task runs again (a cache hit).
//!
//! Checked after every case: the canary is unchanged (paths, contents, modes, link targets), and
//! every path of the root (outside the engine's `.xbundle/`) that changed is in the output set:
//! below the cwd, matching an output pattern, not in `.git`, not `bundle.toml`. Directories the
//! engine creates to hold outputs may appear (never inside `.git`).
//!
//! Seeded and reproducible: `XBUNDLE_TEST_SEED=<n>` replays another seed.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::confine::{ConfineError, Dir};
use engine::files::Patterns;
use engine::store::{ActionResult, OutputFile};
use engine::{
    Action, ActionContext, ActionFailure, ActionOutput, Engine, EngineConfig, Event, Reporter,
    TaskGraph, TaskId, TaskSpec,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

const CWDS: &[&str] = &[
    "", "", "web", "build", "src", "deep/er", "linked", "missing",
];
const OUTPUTS: &[&str] = &[
    "**",
    "build/**",
    "out/*.txt",
    ".git/**",
    ".git",
    "*.txt",
    "dist",
    "**/*.gen",
    "bundle.toml",
    "keep",
    "src/**",
    ".xbundle/**",
    "out/x.txt",
    "{build,out}/**",
    "*",
    "deep/**",
    "../x",
    "!out/keep.txt",
];
/// Where links may be planted (root-relative).
const LINK_AT: &[&str] = &[
    "build",
    "out",
    "web",
    "dist",
    "linked",
    "web/dist",
    "out/x.txt",
    "src/sub",
    "deep",
    "x.txt",
    // The engine's own directories (a repository can ship them as links).
    ".xbundle",
    ".xbundle/tmp",
    ".xbundle/state",
    ".xbundle/state/ledger",
    ".xbundle/cache",
    ".xbundle/cache/cas",
    ".xbundle/cache/ac",
];
/// What a link may point to (`@canary` is replaced by the canary's absolute path).
const LINK_TO: &[&str] = &[
    "../canary",
    "../canary/build",
    "@canary/precious.txt",
    "@canary",
    "src",
    "keep",
    "src/a.txt",
    "nowhere",
    ".git",
    "../../canary",
];
/// Files the action may write, relative to its cwd (only those in its output set).
const WRITES: &[&str] = &[
    "out/x.txt",
    "build/a.gen",
    "build/deep/b.txt",
    "dist/index.html",
    "x.txt",
    "deep/y.gen",
    "keep/new.txt",
    "out/keep.txt",
    "a.gen",
];
/// Paths a forged entry may name (root-relative; `@canary` as above).
const FORGED: &[&str] = &[
    "out/x.txt",
    "build/a.gen",
    "web/build/a.gen",
    "web/dist/index.html",
    "x.txt",
    "../canary/x",
    "@canary/precious.txt",
    ".git/hooks/pre-commit",
    ".git/config",
    "bundle.toml",
    "src/a.txt",
    "keep/x.txt",
    "linked/x.txt",
    "a//b",
    "./x",
    "x/../y",
    ".xbundle/state/clock",
    "build",
    "build/deep/b.txt",
    "deep/er/y.gen",
];

#[derive(Clone, Debug)]
struct Case {
    cwd: &'static str,
    outputs: Vec<&'static str>,
    links: Vec<(&'static str, &'static str)>,
    writes: Vec<&'static str>,
    forged: Vec<(&'static str, bool)>,
    keep_forged_order: bool,
    later_links: Vec<(&'static str, &'static str)>,
}

fn case() -> impl Strategy<Value = Case> {
    let link = (prop::sample::select(LINK_AT), prop::sample::select(LINK_TO));
    (
        prop::sample::select(CWDS),
        prop::collection::vec(prop::sample::select(OUTPUTS), 1..4),
        prop::collection::vec(link.clone(), 0..4),
        prop::collection::vec(prop::sample::select(WRITES), 0..5),
        prop::collection::vec((prop::sample::select(FORGED), any::<bool>()), 1..5),
        any::<bool>(),
        prop::collection::vec(link, 0..3),
    )
        .prop_map(
            |(cwd, outputs, links, writes, forged, keep_forged_order, later_links)| Case {
                cwd,
                outputs,
                links,
                writes,
                forged,
                keep_forged_order,
                later_links,
            },
        )
}

/// What a case may change in the root: below the cwd, matching the output patterns, never in
/// `.git`, `.xbundle` or `bundle.toml`.
struct OutputSet {
    cwd: String,
    patterns: Option<Patterns>,
}

impl OutputSet {
    fn new(case: &Case) -> OutputSet {
        let outputs: Vec<String> = case.outputs.iter().map(|p| p.to_string()).collect();
        OutputSet {
            cwd: case.cwd.to_string(),
            patterns: Patterns::new(&outputs).ok(),
        }
    }

    /// `path` is root-relative.
    fn contains(&self, path: &str) -> bool {
        let Some(patterns) = &self.patterns else {
            return false;
        };
        let relative = if self.cwd.is_empty() {
            Some(path)
        } else {
            path.strip_prefix(&self.cwd)
                .and_then(|rest| rest.strip_prefix('/'))
        };
        relative.is_some_and(|relative| patterns.matches(relative))
            && !path.split('/').any(|c| c == ".git")
            && !path.starts_with(".xbundle")
            && path != "bundle.toml"
            && !path.starts_with("bundle.toml/")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    File { bytes: Vec<u8>, mode: u32 },
    Dir { mode: u32 },
    Link { target: PathBuf },
}

fn snapshot(dir: &Path, skip_state: bool) -> BTreeMap<String, Node> {
    fn walk(root: &Path, dir: &Path, skip_state: bool, out: &mut BTreeMap<String, Node>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if skip_state && relative == ".xbundle" {
                continue;
            }
            let metadata = fs::symlink_metadata(&path).unwrap();
            let mode = metadata.permissions().mode() & 0o7777;
            if metadata.file_type().is_symlink() {
                out.insert(
                    relative,
                    Node::Link {
                        target: fs::read_link(&path).unwrap(),
                    },
                );
            } else if metadata.is_dir() {
                out.insert(relative, Node::Dir { mode });
                walk(root, &path, skip_state, out);
            } else {
                let bytes = fs::read(&path).unwrap();
                out.insert(relative, Node::File { bytes, mode });
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, skip_state, &mut out);
    out
}

/// Writes `files` (relative to the cwd) that are in the output set, through the confined API.
struct WellBehaved {
    cwd: String,
    files: Vec<String>,
}

impl Action for WellBehaved {
    fn run(&self, context: &ActionContext<'_>) -> Result<ActionOutput, ActionFailure> {
        let root = Dir::open_root(context.root).map_err(failure)?;
        for file in &self.files {
            let path = if self.cwd.is_empty() {
                file.clone()
            } else {
                format!("{}/{file}", self.cwd)
            };
            root.write_file::<ConfineError>(&path, 0o644, |out| {
                use std::io::Write;
                out.write_all(b"produced\n")
                    .map_err(|source| ConfineError::Io {
                        path: path.clone(),
                        source,
                    })
            })
            .map_err(failure)?;
        }
        Ok(ActionOutput::default())
    }
}

fn failure(err: ConfineError) -> ActionFailure {
    ActionFailure {
        message: err.to_string(),
        ..ActionFailure::default()
    }
}

struct Quiet;

impl Reporter for Quiet {
    fn report(&self, _: Event<'_>) {}
}

/// Plants a link at `at` unless something is there already or a parent is not a real
/// directory (the test itself never writes through a link).
fn plant_link(root: &Path, canary: &Path, at: &str, to: &str) {
    let mut prefix = PathBuf::new();
    for component in Path::new(at).parent().unwrap().components() {
        prefix.push(component);
        match fs::symlink_metadata(root.join(&prefix)) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => return,
            Err(_) => fs::create_dir(root.join(&prefix)).unwrap(),
        }
    }
    let target = to.replace("@canary", canary.to_str().unwrap());
    match fs::symlink_metadata(root.join(at)) {
        Err(_) => symlink(target, root.join(at)).unwrap(),
        // Replace a real directory (its contents go with it) or file by the link.
        Ok(metadata) if metadata.is_dir() => {
            fs::remove_dir_all(root.join(at)).unwrap();
            symlink(target, root.join(at)).unwrap();
        }
        Ok(metadata) if metadata.is_file() => {
            fs::remove_file(root.join(at)).unwrap();
            symlink(target, root.join(at)).unwrap();
        }
        Ok(_) => {}
    }
}

fn write(base: &Path, relative: &str, contents: &str, mode: u32) {
    let path = base.join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, contents).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
}

fn run_case(case: &Case) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let canary = dir.path().join("canary");
    for (path, contents, mode) in [
        ("precious.txt", "canary\n", 0o644),
        ("build/a.gen", "canary build\n", 0o644),
        ("build/deep/b.txt", "canary deep\n", 0o600),
        ("x", "canary x\n", 0o644),
        ("tool.sh", "#!/bin/sh\n", 0o755),
    ] {
        write(&canary, path, contents, mode);
    }
    symlink("precious.txt", canary.join("link")).unwrap();
    for (path, contents) in [
        ("bundle.toml", "[tasks.t]\n"),
        (".git/HEAD", "ref: refs/heads/main\n"),
        (".git/hooks/README", "hooks\n"),
        ("src/a.txt", "a\n"),
        ("src/b.txt", "b\n"),
        ("keep/x.txt", "keep\n"),
        ("web/index.src", "web\n"),
        ("out/keep.txt", "keep out\n"),
        ("deep/er/file", "deep\n"),
        ("linked/file", "linked\n"),
    ] {
        write(&root, path, contents, 0o644);
    }
    for (at, to) in &case.links {
        plant_link(&root, &canary, at, to);
    }
    let canary_before = snapshot(&canary, false);
    let root_before = snapshot(&root, true);
    let output_set = OutputSet::new(case);

    let mut config = EngineConfig::new(&root);
    config.jobs = 1;
    config.env = BTreeMap::new();
    config.protected = vec!["bundle.toml".to_string()];
    let spec = TaskSpec {
        id: TaskId::new("task:t"),
        kind: "test".into(),
        impl_version: 1,
        params: BTreeMap::new(),
        cwd: case.cwd.to_string(),
        inputs: vec!["src/**".into()],
        outputs: case.outputs.iter().map(|p| p.to_string()).collect(),
        env: Vec::new(),
        tools: BTreeMap::new(),
        deps: Vec::new(),
        action: Arc::new(WellBehaved {
            cwd: case.cwd.to_string(),
            files: case
                .writes
                .iter()
                .filter(|file| {
                    let path = if case.cwd.is_empty() {
                        file.to_string()
                    } else {
                        format!("{}/{file}", case.cwd)
                    };
                    output_set.contains(&path)
                })
                .map(|file| file.to_string())
                .collect(),
        }),
        description: None,
    };
    let graph = TaskGraph::new(vec![spec]).unwrap();
    let targets = [TaskId::new("task:t")];
    let engine = Engine::new(config);
    let _ = engine.run(&graph, &targets, &Quiet);

    // A forged entry under the task's key, then (maybe) more links, then a cache hit.
    if let Some(key) = engine
        .probe(&graph, &targets)
        .ok()
        .and_then(|probes| probes[0].key)
    {
        // (Not when the store itself refuses: a link where its directories are.)
        let outputs: Option<Vec<OutputFile>> = case
            .forged
            .iter()
            .map(|(path, executable)| {
                let contents = format!("forged {path}\n");
                let digest = engine.store().put_bytes(contents.as_bytes()).ok()?;
                Some(OutputFile {
                    path: path.replace("@canary", canary.to_str().unwrap()),
                    executable: *executable,
                    size: contents.len() as u64,
                    digest,
                })
            })
            .collect();
        let mut outputs = outputs.unwrap_or_default();
        if !case.keep_forged_order {
            outputs.sort_by(|a, b| a.path.cmp(&b.path));
            outputs.dedup_by(|a, b| a.path == b.path);
        }
        let forged = ActionResult {
            task: "task:t".into(),
            outputs,
            stdout: None,
            stderr: None,
            duration_ms: 1,
            tools: BTreeMap::new(),
            discovered: None,
        };
        let _ = engine.store().put_action(&key, &forged);
        for (at, to) in &case.later_links {
            plant_link(&root, &canary, at, to);
        }
        let _ = engine.run(&graph, &targets, &Quiet);
        // And once more, with whatever the second run left.
        let _ = engine.run(&graph, &targets, &Quiet);
    }

    prop_assert_eq!(
        snapshot(&canary, false),
        canary_before,
        "the canary changed"
    );
    let root_after = snapshot(&root, true);
    // Links planted after the first run are the test's own changes.
    let planted_later = |path: &str| {
        case.later_links
            .iter()
            .any(|(at, _)| path == *at || path.starts_with(&format!("{at}/")))
    };
    for (path, before) in &root_before {
        if root_after.get(path) != Some(before) && !planted_later(path) {
            prop_assert!(
                output_set.contains(path),
                "{} changed ({:?} -> {:?}) but is not in the output set",
                path,
                before,
                root_after.get(path)
            );
        }
    }
    for (path, after) in &root_after {
        if root_before.contains_key(path) || planted_later(path) {
            continue;
        }
        let allowed = match after {
            Node::Dir { .. } => !path.split('/').any(|c| c == ".git"),
            _ => output_set.contains(path),
        };
        prop_assert!(
            allowed,
            "{} appeared ({:?}) outside the output set",
            path,
            after
        );
    }
    Ok(())
}

#[test]
fn random_tasks_links_and_forged_entries_never_touch_anything_outside_the_output_set() {
    let seed: u64 = std::env::var("XBUNDLE_TEST_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0x0c0f_f1e5);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases: 64,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    if let Err(err) = runner.run(&case(), |case| run_case(&case)) {
        panic!("seed {seed}: {err}");
    }
}
