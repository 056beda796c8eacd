//! Nothing outside its box, at load time (issue 8, items 2, 3, 4, 8 and 10): definitions that
//! would write where a task does not own, and configuration paths that leave the repository,
//! are refused before anything runs, by every command that plans, `check` and `bundle` alike.
//!
//! Every case runs in a sandbox: `repo/` (with a `.git`), and beside it `canary/` and `victim/`
//! trees a confused build could reach. A refused command exits 2 with a diagnostic located in
//! bundle.toml, and the whole sandbox (paths, contents, modes, links) is byte for byte what it
//! was before.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::Run;
use serde_json::Value;
use tempfile::TempDir;

/// The binary under test; `XBUNDLE_TEST_XTASK` points at another build of it (to watch these
/// tests fail on an older version).
fn binary() -> PathBuf {
    std::env::var_os("XBUNDLE_TEST_XTASK").map_or_else(|| PathBuf::from(common::BIN), PathBuf::from)
}

/// A scenario the pipeline can bundle (one API port, no dependencies).
const SCENARIO: &str = r#"{"service": {"name": "app", "version": "1.0.0", "type": "scenario"}, "ports": {"api": {"env_var": "API_PORT", "range": "15000-19999"}}}"#;

/// `repo/` with a bundle.toml and files, `canary/` and `victim/` beside it.
struct Sandbox {
    dir: TempDir,
}

impl Sandbox {
    fn new(bundle: &str, files: &[(&str, &str)]) -> Sandbox {
        let sandbox = Sandbox {
            dir: tempfile::Builder::new()
                .prefix("xbundle-confinement-")
                .tempdir()
                .expect("a temporary directory"),
        };
        sandbox.write("repo/bundle.toml", bundle);
        sandbox.write("repo/.git/HEAD", "ref: refs/heads/main\n");
        sandbox.write("repo/.git/config", "[core]\n");
        sandbox.write("repo/.git/hooks/pre-commit", "#!/bin/sh\nexit 0\n");
        sandbox.chmod("repo/.git/hooks/pre-commit", 0o755);
        sandbox.write("repo/src/main.txt", "the sources\n");
        for (path, contents) in files {
            sandbox.write(&format!("repo/{path}"), contents);
        }
        sandbox.write("canary/keep.txt", "canary\n");
        sandbox.write("canary/scenarios/app/.vrooli/service.json", SCENARIO);
        sandbox.write("canary/bin/tool", "#!/bin/sh\n");
        sandbox.chmod("canary/bin/tool", 0o755);
        sandbox.write("victim/precious.txt", "do not delete\n");
        sandbox.write("victim/cas/not-a-blob", "mine\n");
        sandbox
    }

    /// A repository with a bundlable scenario and profile `p` (the default) besides `bundle`.
    fn pipeline(bundle: &str) -> Sandbox {
        Sandbox::new(
            &format!(
                "[workspace]\ndefault-profile = \"p\"\n\n[profiles.p]\nscenario = \"app\"\ntier = \"desktop\"\n\n{bundle}"
            ),
            &[("scenarios/app/.vrooli/service.json", SCENARIO)],
        )
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn repo(&self) -> PathBuf {
        self.path("repo")
    }

    fn write(&self, relative: &str, contents: &str) {
        let path = self.path(relative);
        fs::create_dir_all(path.parent().expect("a parent")).expect("create dir");
        fs::write(path, contents).expect("write");
    }

    fn chmod(&self, relative: &str, mode: u32) {
        fs::set_permissions(self.path(relative), fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn link(&self, relative: &str, target: &str) {
        let path = self.path(relative);
        fs::create_dir_all(path.parent().expect("a parent")).expect("create dir");
        symlink(target, path).expect("symlink");
    }

    fn command(&self, args: &[&str], env: &[(&str, &Path)]) -> Command {
        let mut command = Command::new(binary());
        command
            .current_dir(self.repo())
            .arg("--root")
            .arg(self.repo())
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        for name in common::TEST_VARIABLES {
            command.env_remove(name);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        command
    }

    fn json(&self, args: &[&str], env: &[(&str, &Path)]) -> Run {
        let mut full = vec!["--message-format", "json"];
        full.extend_from_slice(args);
        let output = self.command(&full, env).output().expect("run xtask");
        Run::parse_json(args, output)
    }

    fn human(&self, args: &[&str], env: &[(&str, &Path)]) -> Run {
        let output = self.command(args, env).output().expect("run xtask");
        Run::parse_json(&[], output_without_stdout_check(output)).with_args(args)
    }

    /// Every entry of the sandbox: kind, bytes or link target, and mode.
    fn snapshot(&self) -> BTreeMap<String, String> {
        let mut entries = BTreeMap::new();
        walk(self.dir.path(), self.dir.path(), &mut entries);
        entries
    }
}

/// Human runs print text on stdout; keep it out of the JSON parser.
fn output_without_stdout_check(mut output: std::process::Output) -> std::process::Output {
    output.stderr.extend_from_slice(b"\n--- stdout:\n");
    output.stderr.append(&mut output.stdout);
    output
}

trait WithArgs {
    fn with_args(self, args: &[&str]) -> Run;
}

impl WithArgs for Run {
    fn with_args(mut self, args: &[&str]) -> Run {
        self.args = args.iter().map(|s| s.to_string()).collect();
        self
    }
}

fn walk(root: &Path, dir: &Path, entries: &mut BTreeMap<String, String>) {
    for entry in fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        let relative = path
            .strip_prefix(root)
            .expect("below root")
            .to_string_lossy()
            .into_owned();
        let metadata = fs::symlink_metadata(&path).expect("metadata");
        let mode = metadata.permissions().mode() & 0o7777;
        let value = if metadata.file_type().is_symlink() {
            format!("link -> {}", fs::read_link(&path).expect("link").display())
        } else if metadata.is_dir() {
            walk(root, &path, entries);
            format!("dir {mode:o}")
        } else {
            format!(
                "file {mode:o} {}",
                String::from_utf8_lossy(&fs::read(&path).expect("read"))
            )
        };
        entries.insert(relative, value);
    }
}

/// What a refusal must say: where (`None`: the diagnostic names no place in a file) and a
/// part of the message.
struct Refusal<'a> {
    at: Option<(u64, u64)>,
    message: &'a str,
}

/// Each command exits 2, in JSON and in human form, with one diagnostic at `refusal.at` in
/// bundle.toml (and a help line), and changes nothing anywhere in the sandbox.
#[track_caller]
fn refused(sandbox: &Sandbox, commands: &[&[&str]], env: &[(&str, &Path)], refusal: Refusal) {
    let before = sandbox.snapshot();
    for args in commands {
        let run = sandbox.json(args, env);
        run.assert_code(2);
        let diagnostics = run.events("diagnostic");
        assert_eq!(diagnostics.len(), 1, "one diagnostic\n{run}");
        let diagnostic = diagnostics[0];
        let message = diagnostic["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(refusal.message),
            "{args:?}: expected a message with {:?}\n{run}",
            refusal.message
        );
        assert!(
            diagnostic["help"].as_str().is_some_and(|h| !h.is_empty()),
            "a help line\n{run}"
        );
        match refusal.at {
            Some((line, column)) => {
                assert_eq!(diagnostic["file"], "bundle.toml", "{run}");
                assert_eq!(
                    (diagnostic["line"].as_u64(), diagnostic["column"].as_u64()),
                    (Some(line), Some(column)),
                    "{args:?}: location\n{run}"
                );
            }
            None => assert_eq!(diagnostic["line"], Value::Null, "{run}"),
        }
        let human = sandbox.human(args, env);
        human.assert_code(2);
        if let Some((line, column)) = refusal.at {
            assert!(
                human
                    .stderr
                    .contains(&format!("bundle.toml:{line}:{column}: ")),
                "{human}"
            );
        }
        assert!(human.stderr.contains("help: "), "{human}");
        let after = sandbox.snapshot();
        assert_eq!(
            after, before,
            "{args:?} changed the sandbox (repository, canary or victim)"
        );
    }
}

/// The commands that plan: all must refuse a bad definition.
const PLANNING: &[&[&str]] = &[
    &["check"],
    &["bundle"],
    &["task"],
    &["task", "--dry-run"],
    &["graph"],
];

fn task(name: &str, lines: &str) -> String {
    format!("[tasks.{name}]\nrun = \"mkdir -p build && echo {name} > build/{name}.txt\"\n{lines}\n")
}

#[test]
fn outputs_reaching_git_the_state_or_bundle_toml_are_refused() {
    for (bundle, at, message) in [
        (
            task("a", "outputs = [\".git\"]"),
            (3, 12),
            "task:a would write inside a `.git` directory: output `.git` reaches `.git`",
        ),
        (
            task("a", "outputs = [\".git/hooks/pre-commit\"]"),
            (3, 12),
            "inside a `.git` directory",
        ),
        (
            task(
                "a",
                "cwd = \"vendor/lib\"\noutputs = [\"build/**\", \".git/**\"]",
            ),
            (4, 24),
            "output `.git/**` reaches `vendor/lib/.git`",
        ),
        // In a git worktree or submodule, `.git` is a file a walk would not skip.
        (
            task("a", "outputs = [\".g*\"]"),
            (3, 12),
            "task:a would overwrite the repository's `.git`: output `.g*` matches `.git`",
        ),
        (
            task("a", "outputs = [\".xbundle/**\"]"),
            (3, 12),
            "inside xbundle's state directory `.xbundle`",
        ),
        (
            task("a", "outputs = [\"**\"]"),
            (3, 12),
            "task:a would overwrite `bundle.toml`: output `**` matches `bundle.toml`",
        ),
        (
            task("a", "outputs = [\"build/**\", \"*.toml\"]"),
            (3, 24),
            "output `*.toml` matches `bundle.toml`",
        ),
        (
            format!(
                "[cache]\ndir = \"cache\"\n\n{}",
                task("a", "outputs = [\"cache/**\"]")
            ),
            (6, 12),
            "task:a would write inside the cache directory `cache`: output `cache/**` reaches `cache`",
        ),
        // Any case of `.git`: the same directory on a case-insensitive file system, and what the
        // engine refuses at run time (so `check` must refuse it too).
        (
            task("a", "outputs = [\".GIT/**\"]"),
            (3, 12),
            "task:a would write inside a `.git` directory: output `.GIT/**` reaches `.GIT`",
        ),
        (
            task("a", "cwd = \"sub\"\noutputs = [\".Git\"]"),
            (4, 12),
            "output `.Git` reaches `sub/.Git`",
        ),
        (
            task("a", "outputs = [\"{.Git,x}\"]"),
            (3, 12),
            "task:a would overwrite the repository's `.git`: output `{.Git,x}` matches `.Git`",
        ),
    ] {
        let sandbox = Sandbox::new(&bundle, &[]);
        refused(
            &sandbox,
            PLANNING,
            &[],
            Refusal {
                at: Some(at),
                message,
            },
        );
    }
}

/// Patterns that could reach a protected path only below a file (`bundle.toml/x.o`) or inside
/// a directory no walk enters (`.git`, `.xbundle`, the cache) are ordinary definitions, not
/// overlaps: accepted by `check`, and their builds never touch those paths.
#[test]
fn outputs_that_cannot_reach_a_protected_path_are_accepted() {
    // Object files beside their sources (the classic C layout), with a cache in the repository.
    let bundle = "[cache]\ndir = \"cache\"\n\n[tasks.cc]\nrun = \"for f in src/*.c; do cp $f ${f%.c}.o; done\"\ninputs = [\"src/**/*.c\"]\noutputs = [\"**/*.o\"]\n\n[tasks.docs]\nrun = \"mkdir -p doc && echo docs > doc/index.html\"\noutputs = [\"[c-d]*/**/*.html\"]\n";
    let sandbox = Sandbox::new(
        bundle,
        &[
            ("src/a.c", "int a;\n"),
            ("src/b.c", "int b;\n"),
            // Files a walk of `**` would match, were it to enter their directories.
            (".git/stray.o", "git's\n"),
            (".xbundle/stray.o", "the state's\n"),
            ("cache/stray.o", "the cache's\n"),
            ("cache/x/stray.html", "the cache's\n"),
        ],
    );
    let check = sandbox.json(&["check"], &[]);
    check.assert_code(0);
    let run = sandbox.json(&["task"], &[]);
    run.assert_code(0);
    assert_eq!(
        fs::read_to_string(sandbox.path("repo/src/a.o")).unwrap(),
        "int a;\n"
    );
    // Outputs change: the old ones are removed, and only they.
    fs::remove_file(sandbox.path("repo/src/b.c")).unwrap();
    sandbox.json(&["task"], &[]).assert_code(0);
    assert!(!sandbox.path("repo/src/b.o").exists());
    for (path, contents) in [
        (".git/stray.o", "git's\n"),
        (".xbundle/stray.o", "the state's\n"),
        ("cache/stray.o", "the cache's\n"),
        ("cache/x/stray.html", "the cache's\n"),
        ("bundle.toml", bundle),
    ] {
        assert_eq!(
            fs::read_to_string(sandbox.path(&format!("repo/{path}"))).unwrap(),
            contents,
            "{path}"
        );
    }
}

#[test]
fn outputs_overlapping_the_tasks_own_inputs_are_refused() {
    // The issue's example: everything as output, the sources as input.
    let sandbox = Sandbox::new(
        &task(
            "a",
            "cwd = \"app\"\ninputs = [\"src/**\"]\noutputs = [\"**\"]",
        ),
        &[("app/src/a.txt", "a\n")],
    );
    refused(
        &sandbox,
        PLANNING,
        &[],
        Refusal {
            at: Some((5, 12)),
            message: "task:a reads what it writes: `app/src/a` matches its output `**` and its inputs",
        },
    );
    let sandbox = Sandbox::new(
        &task("a", "inputs = [\"src/**\"]\noutputs = [\"src/gen/**\"]"),
        &[],
    );
    let run = sandbox.json(&["check"], &[]);
    run.assert_code(2);
    assert_eq!(
        run.diagnostic()["help"],
        "a task may not write what it reads: exclude its outputs from its inputs, e.g. add \"!src/gen/**\" to `inputs`, or narrow `outputs`"
    );
    // With the exclusion the help suggests, it is accepted and runs.
    let fixed = Sandbox::new(
        "[tasks.a]\nrun = \"mkdir -p src/gen && cat src/main.txt > src/gen/copy.txt\"\ninputs = [\"src/**\", \"!src/gen/**\"]\noutputs = [\"src/gen/**\"]\n",
        &[],
    );
    fixed.json(&["check"], &[]).assert_code(0);
    fixed.json(&["task"], &[]).assert_code(0);
    // Reading a dependency's output is what dependencies are for.
    let chain = Sandbox::new(
        "[tasks.words]\nrun = \"mkdir -p build && cat src/main.txt > build/words.txt\"\ninputs = [\"src/*.txt\"]\noutputs = [\"build/words.txt\"]\n\n[tasks.count]\nrun = \"wc -l < build/words.txt > build/count.txt\"\ninputs = [\"build/words.txt\"]\noutputs = [\"build/count.txt\"]\ndeps = [\"words\"]\n",
        &[],
    );
    chain.json(&["check"], &[]).assert_code(0);
    let run = chain.json(&["task"], &[]);
    run.assert_code(0);
    assert_eq!(run.counts(), (2, 0, 0, 0));
}

#[test]
fn overlapping_outputs_of_two_tasks_are_refused() {
    for (bundle, at, message) in [
        // The issue's example: two tasks owning `build/**` undo each other's runs.
        (
            format!(
                "{}{}",
                task("a", "outputs = [\"build/**\"]"),
                task("b", "outputs = [\"build/**\"]")
            ),
            (6, 12),
            "task:b (output `build/**`) and task:a (output `build/**`) both write `build/a`",
        ),
        (
            format!(
                "{}{}",
                task("a", "outputs = [\"build/**\"]"),
                task("b", "outputs = [\"build/app/*.js\"]")
            ),
            (6, 12),
            "both write `build/app/.js`",
        ),
        // Different cwds, one directory.
        (
            format!(
                "{}{}",
                task("a", "cwd = \"web\"\noutputs = [\"dist/**\"]"),
                task("b", "outputs = [\"web/dist/app.js\"]")
            ),
            (7, 12),
            "task:b (output `web/dist/app.js`) and task:a (output `dist/**`) both write `web/dist/app.js`",
        ),
    ] {
        let sandbox = Sandbox::new(&bundle, &[]);
        refused(
            &sandbox,
            PLANNING,
            &[],
            Refusal {
                at: Some(at),
                message,
            },
        );
    }
    // Disjoint by the globs, not by their literal prefixes: accepted, and both run.
    for bundle in [
        format!(
            "{}{}",
            task("a", "outputs = [\"build/*.css\"]"),
            task("b", "outputs = [\"build/*.js\"]")
        ),
        format!(
            "{}{}",
            task("a", "outputs = [\"build/**\", \"!build/b.txt\"]"),
            task("b", "outputs = [\"build/b.txt\"]")
        ),
    ] {
        let bundle = bundle.replace("echo a > build/a.txt", "echo a > build/a.css");
        let bundle = bundle.replace("echo b > build/b.txt", "echo b > build/b.js");
        let sandbox = Sandbox::new(&bundle, &[]);
        sandbox.json(&["check"], &[]).assert_code(0);
    }
}

#[test]
fn declared_outputs_overlapping_the_pipelines_are_refused() {
    let sandbox = Sandbox::pipeline(&task("site", "outputs = [\"dist/**\"]"));
    refused(
        &sandbox,
        PLANNING,
        &[],
        Refusal {
            at: Some((10, 12)),
            message: "task:site (output `dist/**`) and analyze:app both write `dist/analysis/app.json`",
        },
    );
    let sandbox = Sandbox::pipeline(&task("site", "outputs = [\"dist/p/*.json\"]"));
    refused(
        &sandbox,
        PLANNING,
        &[],
        Refusal {
            at: Some((10, 12)),
            message: "and assemble:p both write `dist/p/bundle.json`",
        },
    );
    // The pipeline's outputs in the cache: located at the cache setting.
    let sandbox = Sandbox::pipeline("[cache]\ndir = \"dist\"\n");
    refused(
        &sandbox,
        PLANNING,
        &[],
        Refusal {
            at: Some((9, 7)),
            message: "analyze:app would write inside the cache directory `dist`: output `dist/analysis/app.json` reaches `dist/analysis/app.json`",
        },
    );
    // Next to the pipeline's directory is fine.
    let sandbox = Sandbox::pipeline(&task("site", "outputs = [\"build/**\"]"));
    sandbox.json(&["check"], &[]).assert_code(0);
    sandbox.json(&["bundle"], &[]).assert_code(0);
}

/// Commands that read `[cache] dir` and could delete it (the destructive ones first).
const CACHE_AND_PLANNING: &[&[&str]] = &[
    &["cache", "clean"],
    &["cache", "gc", "--max-size", "0"],
    &["check"],
    &["bundle"],
    &["task"],
];

#[test]
fn configured_paths_stay_inside_the_repository() {
    let sandbox = Sandbox::new("", &[]);
    let outside = sandbox.path("victim");
    let outside = outside.to_str().unwrap();
    for (section, key, value, message) in [
        (
            "workspace",
            "out",
            ".",
            "[workspace] out `.` is the repository root",
        ),
        ("workspace", "out", "..", "leaves the repository"),
        ("workspace", "out", "../canary", "leaves the repository"),
        (
            "workspace",
            "out",
            "dist/../../canary",
            "leaves the repository",
        ),
        ("workspace", "out", outside, "is an absolute path"),
        ("workspace", "out", "./dist", "is not a normalized path"),
        ("workspace", "out", "dist//x", "is not a normalized path"),
        ("workspace", "out", ".git/out", "is inside `.git`"),
        (
            "workspace",
            "out",
            ".xbundle/out",
            "is inside the state directory",
        ),
        (
            "workspace",
            "scenarios",
            "../canary/scenarios",
            "leaves the repository",
        ),
        ("workspace", "resources", outside, "is an absolute path"),
        (
            "cache",
            "dir",
            "../victim",
            "[cache] dir `../victim` leaves the repository",
        ),
        (
            "cache",
            "dir",
            ".",
            "[cache] dir `.` is the repository root",
        ),
        ("cache", "dir", outside, "is an absolute path"),
        ("cache", "dir", ".git/cache", "is inside `.git`"),
        (
            "cache",
            "dir",
            ".xbundle/tmp",
            "is inside the state directory",
        ),
    ] {
        sandbox.write(
            "repo/bundle.toml",
            &format!(
                "[{section}]\n{key} = \"{value}\"\n\n{}",
                task("a", "outputs = [\"build/a.txt\"]")
            ),
        );
        refused(
            &sandbox,
            CACHE_AND_PLANNING,
            &[],
            Refusal {
                at: Some((2, key.len() as u64 + 4)),
                message,
            },
        );
    }
}

#[test]
fn a_profile_names_its_scenario_and_swaps_never_paths() {
    for (scenario, swap, at, message) in [
        (
            "../../canary/scenarios/app",
            "",
            (5, 12),
            "scenario `../../canary/scenarios/app` is not a scenario name",
        ),
        ("/etc", "", (5, 12), "is not a scenario name"),
        ("..", "", (5, 12), "is not a scenario name"),
        (
            "app",
            "swaps = { \"../db\" = \"lite\" }\n",
            (7, 11),
            "swap `../db` is not a resource name",
        ),
        (
            "app",
            "swaps = { db = \"../../canary\" }\n",
            (7, 16),
            "swap `../../canary` is not a resource name",
        ),
    ] {
        let sandbox = Sandbox::new(
            &format!(
                "[workspace]\ndefault-profile = \"p\"\n\n[profiles.p]\nscenario = \"{scenario}\"\ntier = \"desktop\"\n{swap}"
            ),
            &[("scenarios/app/.vrooli/service.json", SCENARIO)],
        );
        refused(
            &sandbox,
            &[
                &["check"],
                &["bundle"],
                &["export"],
                &["assemble"],
                &["profile", "list"],
            ],
            &[],
            Refusal {
                at: Some(at),
                message,
            },
        );
    }
    // `profile create` refuses a path before editing anything.
    let sandbox = Sandbox::new("", &[("scenarios/app/.vrooli/service.json", SCENARIO)]);
    let before = sandbox.snapshot();
    let run = sandbox.json(
        &[
            "profile",
            "create",
            "x",
            "--scenario",
            "../../canary/scenarios/app",
            "--tier",
            "desktop",
        ],
        &[],
    );
    run.assert_code(2);
    assert!(
        run.diagnostic()["message"]
            .as_str()
            .unwrap()
            .contains("is not a scenario name"),
        "{run}"
    );
    assert_eq!(sandbox.snapshot(), before);
}

#[test]
fn scenario_arguments_are_names_never_paths() {
    let sandbox = Sandbox::new("", &[("scenarios/app/.vrooli/service.json", SCENARIO)]);
    let canary = sandbox.path("canary/scenarios/app");
    let canary = canary.to_str().unwrap();
    for scenario in [
        canary,
        "../canary/scenarios/app",
        "app/../../canary/scenarios/app",
    ] {
        for args in [
            vec!["analyze", scenario],
            vec!["dag", scenario],
            vec!["fitness", scenario],
            vec!["secrets", scenario],
            vec!["secrets", "classify", scenario, "key", "--tier", "desktop"],
        ] {
            let before = sandbox.snapshot();
            let run = sandbox.json(&args, &[]);
            run.assert_code(2);
            let diagnostic = run.diagnostic();
            assert!(
                diagnostic["message"]
                    .as_str()
                    .unwrap()
                    .ends_with("is not a scenario name")
                    || diagnostic["message"]
                        .as_str()
                        .unwrap()
                        .ends_with("is not a scenario or resource name"),
                "{run}"
            );
            assert!(
                !run.stdout.contains("\"analysis\""),
                "nothing analyzed\n{run}"
            );
            assert_eq!(sandbox.snapshot(), before);
        }
    }
    // A path whose last component is a scenario of this repository: did you mean it?
    let run = sandbox.json(&["analyze", "scenarios/app"], &[]);
    run.assert_code(2);
    assert_eq!(run.diagnostic()["help"], "did you mean `app`?");
    sandbox.json(&["analyze", "app"], &[]).assert_code(0);
}

#[test]
fn cache_dir_variable_never_covers_the_repository() {
    let sandbox = Sandbox::new(&task("a", "outputs = [\"build/a.txt\"]"), &[]);
    let repo = sandbox.repo();
    let parent = sandbox.path("");
    let git = sandbox.path("repo/.git/cache");
    let staging = sandbox.path("repo/.xbundle/tmp");
    let dotted = sandbox.path("repo/build/../.");
    for (value, message) in [
        (&repo, "is the repository root"),
        (&dotted, "is the repository root"),
        (&parent, "contains the repository"),
        (&git, "is inside a `.git` directory"),
        (&staging, "is inside the state directory"),
    ] {
        refused(
            &sandbox,
            CACHE_AND_PLANNING,
            &[("XBUNDLE_CACHE_DIR", value.as_path())],
            Refusal { at: None, message },
        );
    }
    // A shared cache outside the repository is what the variable is for.
    let shared = sandbox.path("shared-cache");
    let env = [("XBUNDLE_CACHE_DIR", shared.as_path())];
    sandbox.json(&["check"], &env).assert_code(0);
    let run = sandbox.json(&["task"], &env);
    run.assert_code(0);
    assert!(
        shared.join("cas").is_dir(),
        "the cache is where the variable says"
    );
}

#[test]
fn symlinked_configured_directories_are_refused() {
    // out (default `dist`) is a link to the canary: nothing may be written through it.
    let sandbox = Sandbox::pipeline("");
    sandbox.link("repo/dist", "../canary");
    refused(
        &sandbox,
        &[&["check"], &["bundle"], &["export"]],
        &[],
        Refusal {
            at: None,
            message: "[workspace] out `dist` goes through the symbolic link `dist`",
        },
    );
    // Written out: located at the value.
    let sandbox = Sandbox::pipeline("");
    sandbox.write(
        "repo/bundle.toml",
        "[workspace]\nout = \"out/bundles\"\ndefault-profile = \"p\"\n\n[profiles.p]\nscenario = \"app\"\ntier = \"desktop\"\n",
    );
    sandbox.link("repo/out", "../canary");
    refused(
        &sandbox,
        &[&["check"], &["bundle"]],
        &[],
        Refusal {
            at: Some((2, 7)),
            message: "goes through the symbolic link `out`",
        },
    );
    // The scenarios directory, a task's cwd, the cache directory.
    for (bundle, link, target, at) in [
        (
            "[workspace]\nscenarios = \"apps\"\n",
            "repo/apps",
            "../canary/scenarios",
            (2, 13),
        ),
        (
            "[tasks.a]\ncwd = \"web\"\nrun = \"true\"\noutputs = [\"x\"]\n",
            "repo/web",
            "../canary",
            (2, 7),
        ),
        (
            "[cache]\ndir = \"cache\"\n",
            "repo/cache",
            "../victim",
            (2, 7),
        ),
    ] {
        let sandbox = Sandbox::new(bundle, &[]);
        sandbox.link(link, target);
        refused(
            &sandbox,
            CACHE_AND_PLANNING,
            &[],
            Refusal {
                at: Some(at),
                message: "goes through the symbolic link",
            },
        );
    }
    // A scenario directory that is a link is not read.
    let sandbox = Sandbox::new("", &[]);
    sandbox.link("repo/scenarios/app", "../../canary/scenarios/app");
    let run = sandbox.json(&["analyze", "app"], &[]);
    run.assert_code(2);
    assert!(
        run.diagnostic()["message"]
            .as_str()
            .unwrap()
            .contains("goes through the symbolic link `scenarios/app`"),
        "{run}"
    );
}

#[test]
fn settings_no_stage_uses_are_errors_and_unbuilt_targets_warn() {
    for (bundle, at, message) in [
        (
            // A remote cache URL is checked (its scheme, no credentials in it).
            "[cache]\nremote = \"ftp://127.0.0.1:9092\"\n",
            (2, 10),
            "`[cache] remote` has the scheme `ftp`",
        ),
        // Assets are fetched now: a bad value is refused at its line.
        (
            "[workspace]\n\n[[assets]]\nid = \"chromium\"\nurl = \"https://example.org/c.zip\"\nsha256 = \"abc\"\n",
            (6, 10),
            "`abc` is not a SHA-256 (64 hex digits)",
        ),
    ] {
        let sandbox = Sandbox::new(bundle, &[]);
        refused(
            &sandbox,
            &[&["check"], &["bundle"], &["task"]],
            &[],
            Refusal {
                at: Some(at),
                message,
            },
        );
    }
    // Formats and platforms: one warning line per profile that names them.
    let sandbox = Sandbox::new(
        "[workspace]\ndefault-profile = \"p\"\n\n[profiles.p]\nscenario = \"app\"\ntier = \"desktop\"\nplatforms = [\"linux-x64\"]\nformats = [\"tar.gz\"]\n\n[profiles.q]\nscenario = \"app\"\ntier = \"desktop\"\nformats = [\"deb\"]\n\n[profiles.r]\nscenario = \"app\"\ntier = \"desktop\"\n",
        &[
            ("scenarios/app/.vrooli/service.json", SCENARIO),
            (
                "platforms/linux-x64.toml",
                "id = \"linux-x64\"\nrust-target = \"x86_64-unknown-linux-gnu\"\ngoos = \"linux\"\ngoarch = \"amd64\"\nexe-suffix = \"\"\nformats = [\"tar.gz\"]\n",
            ),
        ],
    );
    let run = sandbox.json(&["check"], &[]);
    run.assert_code(0);
    // Every known format is written now (deb included): no profile is warned about.
    assert!(run.warnings().is_empty(), "{run}");
    let run = sandbox.json(&["bundle"], &[]);
    run.assert_code(0);
    assert!(run.warnings().is_empty(), "{run}");
    let human = sandbox.human(&["bundle", "q"], &[]);
    human.assert_code(0);
    assert_eq!(
        human.stderr.matches("nothing builds its formats").count(),
        0,
        "{human}"
    );
    sandbox.json(&["bundle", "r"], &[]).assert_code(0);
    assert!(sandbox.json(&["bundle", "r"], &[]).warnings().is_empty());
}

/// One table of bad bundle.toml files, each run through `check` and through `bundle`: both refuse
/// every one (exit 2), so `check` is a faithful pre-commit gate.
#[test]
fn check_and_bundle_refuse_the_same_definitions() {
    let profile = "[workspace]\ndefault-profile = \"p\"\n\n[profiles.p]\nscenario = \"app\"\ntier = \"desktop\"\n\n";
    let cases: Vec<String> = vec![
        // The graph.
        task("a", "deps = [\"missing\"]"),
        format!(
            "{}{}",
            task("a", "deps = [\"b\"]"),
            task("b", "deps = [\"a\"]")
        ),
        "[tasks.\".hidden\"]\nrun = \"true\"\n".to_string(),
        // Ownership.
        task("a", "outputs = [\".git/hooks/pre-commit\"]"),
        task("a", "outputs = [\"**\"]"),
        task("a", "inputs = [\"build/**\"]\noutputs = [\"build/**\"]"),
        format!(
            "{}{}",
            task("a", "outputs = [\"build/**\"]"),
            task("b", "outputs = [\"build/x\"]")
        ),
        format!("{profile}{}", task("a", "outputs = [\"dist/**\"]")),
        task("a", "outputs = [\".GIT/**\"]"),
        // Patterns no walk could ever match, or no run resolve.
        task("a", "outputs = [\"build//x.txt\"]"),
        task("a", "outputs = [\"build/./x.txt\"]"),
        task("a", "inputs = [\"src//*.txt\"]"),
        // Paths.
        "[workspace]\nout = \".\"\n".to_string(),
        "[cache]\ndir = \"../victim\"\n".to_string(),
        profile.replace(
            "scenario = \"app\"",
            "scenario = \"../canary/scenarios/app\"",
        ),
        // Settings nothing could use.
        "[cache]\nremote = \"http://user:password@127.0.0.1:1\"\n".to_string(),
        "[[assets]]\nid = \"x\"\n".to_string(),
    ];
    for bundle in cases {
        let sandbox = Sandbox::new(&bundle, &[("scenarios/app/.vrooli/service.json", SCENARIO)]);
        let before = sandbox.snapshot();
        for command in ["check", "bundle"] {
            let run = sandbox.json(&[command], &[]);
            assert_eq!(run.code, 2, "`{command}` must refuse:\n{bundle}\n{run}");
            assert!(!run.events("diagnostic").is_empty(), "{run}");
            assert_eq!(
                sandbox.snapshot(),
                before,
                "{command} wrote something:\n{bundle}"
            );
        }
    }
    // Profiles are assembled by their tasks (planning assembles nothing): `check` refuses a bad
    // profile, default or not, and writes nothing; `bundle` refuses the bad profile it builds
    // (exit 2, the located problem in the task's failure) and writes no bundle for it.
    let cases = [
        (
            format!("{profile}[profiles.broken]\nscenario = \"nosuch\"\ntier = \"desktop\"\n"),
            "broken",
        ),
        (
            profile.replace(
                "tier = \"desktop\"",
                "tier = \"desktop\"\nswaps = { db = \"lite\" }",
            ),
            "p",
        ),
    ];
    for (bundle, bad) in cases {
        let sandbox = Sandbox::new(&bundle, &[("scenarios/app/.vrooli/service.json", SCENARIO)]);
        let before = sandbox.snapshot();
        let run = sandbox.json(&["check"], &[]);
        assert_eq!(run.code, 2, "`check` must refuse:\n{bundle}\n{run}");
        assert!(!run.events("diagnostic").is_empty(), "{run}");
        assert_eq!(
            sandbox.snapshot(),
            before,
            "check wrote something:\n{bundle}"
        );
        let run = sandbox.json(&["bundle", bad], &[]);
        assert_eq!(run.code, 2, "`bundle {bad}` must refuse:\n{bundle}\n{run}");
        let failed = run.task(&format!("secrets:{bad}"));
        assert_eq!(failed["status"], "failed", "{run}");
        assert!(
            !sandbox
                .path(&format!("repo/dist/{bad}/bundle.json"))
                .exists(),
            "{run}"
        );
    }
}
