//! The command line's surface, through the real binary (issue 11 items 4, 5 and 6):
//! - every argument that takes a name answers a near miss with exit 2 and "did you mean", and
//!   a scenario where a profile is expected (or the reverse) says so; no error suggests a flag
//!   the command does not take; `profile create` refuses what `check` would refuse;
//! - `--help` of every command and subcommand is a snapshot (`tests/snapshots/help/*.txt`,
//!   regenerated with `SNAPSHOTS=overwrite cargo test -p xtask --test integration cli_surface::`); usage
//!   says `cargo xtask`, positionals are described, long help has an example, `-j` is only on
//!   the commands that run tasks; `--message-format json` is the one JSON switch;
//! - `completions`: the bash script completes `cargo xtask bu` in a real bash without taking
//!   cargo's own completion away; the other scripts pass their shell's syntax check;
//! - `init` on a copy of the conformance corpus's layout writes a bundle.toml `check` accepts,
//!   and refuses (changing nothing) when a file it would write exists.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{BIN, Canary, Repo};

/// The project root: the demo repository (its bundle.toml, scenarios/, resources/,
/// platforms/, demo/).
fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ is in the project")
        .to_path_buf()
}

/// A copy of the demo repository's inputs (no state, no dist/).
fn demo() -> Repo {
    let repo = Repo::empty();
    let root = project_root();
    for dir in ["scenarios", "resources", "platforms", "demo"] {
        common::copy_tree(&root.join(dir), &repo.join(dir));
    }
    fs::copy(root.join("bundle.toml"), repo.join("bundle.toml")).expect("copy bundle.toml");
    repo
}

/// The long help of `words` (e.g. `["profile", "create"]`).
fn help(words: &[&str]) -> String {
    let output = Command::new(BIN)
        .args(words)
        .arg("--help")
        .env("NO_COLOR", "1")
        .output()
        .expect("run xtask");
    assert!(output.status.success(), "{words:?} --help failed");
    String::from_utf8(output.stdout).expect("help is UTF-8")
}

/// The flags `text` mentions outside backticked commands of their own (`cargo xtask profile
/// set … --swap …` names its command, so its flags are that command's).
fn flags_outside_commands(text: &str) -> Vec<String> {
    let mut plain = String::new();
    for (index, part) in text.split('`').enumerate() {
        if index % 2 == 1 && part.starts_with("cargo xtask ") {
            continue;
        }
        plain.push_str(part);
        plain.push(' ');
    }
    plain
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|word| word.starts_with("--") && word.len() > 2)
        .map(str::to_string)
        .collect()
}

/// The command words of `args` (up to the first argument that is not a subcommand).
fn command_words<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut words = Vec::new();
    for arg in args {
        let mut candidate = words.clone();
        candidate.push(*arg);
        let known = Command::new(BIN)
            .args(&candidate)
            .arg("--help")
            .output()
            .expect("run xtask")
            .status
            .success()
            && (words.is_empty() || help(&words).contains("\nCommands:\n"));
        if !known || arg.starts_with('-') {
            break;
        }
        words = candidate;
    }
    words
}

/// Runs `args` on `repo`: exit 2, `expected` in the help, and every flag the error mentions is
/// one the command takes.
fn assert_suggests(repo: &Repo, args: &[&str], expected: &str) {
    let run = repo.human(args);
    assert_eq!(run.code, 2, "{args:?}: exit 2 expected\n{run}");
    assert!(
        run.stderr.contains(expected),
        "{args:?}: expected {expected:?} in\n{run}"
    );
    assert_flags_exist(args, &run.stderr);
}

fn assert_flags_exist(args: &[&str], stderr: &str) {
    let words = command_words(args);
    let options = help(&words);
    for flag in flags_outside_commands(stderr) {
        assert!(
            options.contains(&flag),
            "{args:?}: the error suggests {flag}, which `cargo xtask {}` does not take:\n{stderr}",
            words.join(" ")
        );
    }
}

/// Every argument that takes a profile, scenario, task, tier, resource, secret or platform
/// name, misspelled.
#[test]
fn every_misspelled_name_gets_did_you_mean() {
    let repo = demo();
    let before = repo.snapshot();
    let cases: &[(&[&str], &str)] = &[
        // Profiles.
        (&["bundle", "notes-desktp"], "did you mean `notes-desktop`?"),
        (&["run", "notes-desktp"], "did you mean `notes-desktop`?"),
        (&["export", "notes-desktp"], "did you mean `notes-desktop`?"),
        (
            &["assemble", "notes-desktp"],
            "did you mean `notes-desktop`?",
        ),
        (
            &["thin-client", "notes-desktp"],
            "did you mean `notes-desktop`?",
        ),
        (
            &["profile", "show", "notes-desktp"],
            "did you mean `notes-desktop`?",
        ),
        (
            &["profile", "set", "notes-desktp", "--platform", "linux-x64"],
            "did you mean `notes-desktop`?",
        ),
        // Scenarios.
        (&["analyze", "notes-ap"], "did you mean `notes-app`?"),
        (&["dag", "notes-ap"], "did you mean `notes-app`?"),
        (&["fitness", "notes-ap"], "did you mean `notes-app`?"),
        (&["secrets", "notes-ap"], "did you mean `notes-app`?"),
        (
            &[
                "profile",
                "create",
                "x",
                "--scenario",
                "notes-ap",
                "--tier",
                "2",
            ],
            "did you mean `notes-app`?",
        ),
        // Tiers.
        (
            &["analyze", "notes-app", "--tier", "desktp"],
            "did you mean `desktop`?",
        ),
        (
            &["fitness", "notes-app", "--tier", "desktp"],
            "did you mean `desktop`?",
        ),
        (
            &["secrets", "notes-app", "--tier", "desktp"],
            "did you mean `desktop`?",
        ),
        (
            &[
                "secrets",
                "classify",
                "postgres",
                "postgres_password",
                "--tier",
                "desktp",
            ],
            "did you mean `desktop`?",
        ),
        (
            &[
                "profile",
                "create",
                "x",
                "--scenario",
                "notes-app",
                "--tier",
                "desktp",
            ],
            "did you mean `desktop`?",
        ),
        // Resources (both sides of a swap) and secrets.
        (
            &["analyze", "notes-app", "--swap", "postgress=sqlite"],
            "did you mean `postgres`?",
        ),
        (
            &["analyze", "notes-app", "--swap", "postgres=sqlit"],
            "did you mean `sqlite`?",
        ),
        (
            &["dag", "notes-app", "--swap", "postgress=sqlite"],
            "did you mean `postgres`?",
        ),
        (
            &["fitness", "notes-app", "--swap", "postgres=sqlit"],
            "did you mean `sqlite`?",
        ),
        (
            &["secrets", "notes-app", "--swap", "postgress=sqlite"],
            "did you mean `postgres`?",
        ),
        (
            &[
                "profile",
                "set",
                "notes-desktop",
                "--swap",
                "postgres=sqlit",
            ],
            "did you mean `sqlite`?",
        ),
        (
            &[
                "secrets",
                "classify",
                "postgress",
                "postgres_password",
                "--tier",
                "2",
            ],
            "did you mean `postgres`?",
        ),
        (
            &[
                "secrets",
                "classify",
                "postgres",
                "postgres_pasword",
                "--tier",
                "2",
            ],
            "did you mean `postgres_password`?",
        ),
        // Tasks.
        (&["task", "greting"], "did you mean `task:greeting`?"),
        (&["explain", "greting"], "did you mean `task:greeting`?"),
        // Platforms.
        (
            &["bundle", "notes-desktop", "--platform", "linux-x46"],
            "did you mean `linux-x64`?",
        ),
        (
            &["profile", "set", "notes-desktop", "--platform", "linux-x46"],
            "did you mean `linux-x64`?",
        ),
        (
            &[
                "profile",
                "create",
                "x",
                "--scenario",
                "notes-app",
                "--tier",
                "2",
                "--platform",
                "linux-x46",
            ],
            "did you mean `linux-x64`?",
        ),
    ];
    for (args, expected) in cases {
        assert_suggests(&repo, args, expected);
    }
    common::assert_same_tree(&repo.snapshot(), &before, "misspellings change nothing");
}

#[test]
fn a_scenario_where_a_profile_is_expected_says_so_and_the_reverse() {
    let repo = demo();
    for command in [
        &["bundle", "notes-app"][..],
        &["export", "notes-app"],
        &["assemble", "notes-app"],
        &["run", "notes-app"],
        &["thin-client", "notes-app"],
        &["profile", "show", "notes-app"],
    ] {
        let run = repo.human(command);
        assert_eq!(run.code, 2, "{run}");
        assert!(
            run.stderr
                .contains("`notes-app` is a scenario, not a profile"),
            "{run}"
        );
        assert!(run.stderr.contains("its profile: `notes-desktop`"), "{run}");
    }
    for command in [
        &["analyze", "notes-desktop"][..],
        &["dag", "notes-desktop"],
        &["fitness", "notes-desktop"],
        &["secrets", "notes-desktop"],
    ] {
        let run = repo.human(command);
        assert_eq!(run.code, 2, "{run}");
        assert!(
            run.stderr
                .contains("`notes-desktop` is a profile, not a scenario"),
            "{run}"
        );
        assert!(run.stderr.contains("its scenario: `notes-app`"), "{run}");
    }
}

/// `export notes-desktp` printed "Finished 0 ran, 0 cached" and "No such file or directory".
#[test]
fn export_of_an_unknown_profile_runs_nothing() {
    let repo = demo();
    let run = repo.human(&["export", "notes-desktp"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(!run.stderr.contains("Finished"), "{run}");
    assert!(!run.stderr.contains("os error"), "{run}");
    assert!(!repo.exists("dist"), "nothing written");
}

/// A profile that keeps an infrastructure secret: each command's error suggests only what
/// that command takes (the help named `--swap`, which `bundle` and `export` reject).
#[test]
fn errors_suggest_only_flags_the_command_takes() {
    let repo = demo();
    let toml = repo.read("bundle.toml").replace(
        "[tasks.greeting-words]",
        "[profiles.raw]\nscenario = \"notes-app\"\ntier = \"desktop\"\nplatforms = [\"linux-x64\"]\n\n[tasks.greeting-words]",
    );
    repo.write("bundle.toml", &toml);
    for args in [&["check"][..], &["assemble", "raw"], &["export", "raw"]] {
        let run = repo.human(args);
        assert_eq!(run.code, 2, "{run}");
        assert!(run.stderr.contains("is infrastructure"), "{run}");
        assert_flags_exist(args, &run.stderr);
    }
}

#[test]
fn profile_create_refuses_what_check_would_reject() {
    let repo = demo();
    let before = repo.read_bytes("bundle.toml");
    let run = repo.human(&[
        "profile",
        "create",
        "raw",
        "--scenario",
        "notes-app",
        "--tier",
        "desktop",
    ]);
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr
            .contains("would not pass `cargo xtask check` (nothing was written)"),
        "{run}"
    );
    assert_eq!(repo.read_bytes("bundle.toml"), before, "nothing written");
    assert_flags_exist(&["profile", "create"], &run.stderr);

    // With the swaps it needs, it is created, and `check` accepts the file.
    let run = repo.human(&[
        "profile",
        "create",
        "raw",
        "--scenario",
        "notes-app",
        "--tier",
        "desktop",
        "--swap",
        "postgres=sqlite",
        "--swap",
        "redis=in-process",
        "--swap",
        "qdrant=local-index",
        "--swap",
        "ollama=openrouter",
        "--platform",
        "linux-x64",
    ]);
    assert_eq!(run.code, 0, "{run}");
    assert!(repo.read("bundle.toml").contains("[profiles.raw]"));
    repo.human(&["check"]).assert_code(0);
}

// ---------------------------------------------------------------------------------------------
// Help text.

/// Every command path (`["bundle"]`, `["profile", "create"]`, …), from the help itself.
fn command_paths() -> Vec<Vec<String>> {
    fn commands_of(help: &str) -> Vec<String> {
        let Some(start) = help.find("\nCommands:\n") else {
            return Vec::new();
        };
        help[start + "\nCommands:\n".len()..]
            .lines()
            .take_while(|line| line.starts_with("  "))
            .filter_map(|line| line.split_whitespace().next())
            .filter(|name| *name != "help")
            .map(str::to_string)
            .collect()
    }
    let mut paths = Vec::new();
    let mut queue: Vec<Vec<String>> = commands_of(&help(&[]))
        .into_iter()
        .map(|c| vec![c])
        .collect();
    while let Some(path) = queue.pop() {
        let words: Vec<&str> = path.iter().map(String::as_str).collect();
        for sub in commands_of(&help(&words)) {
            let mut longer = path.clone();
            longer.push(sub);
            queue.push(longer);
        }
        paths.push(path);
    }
    paths.sort();
    paths
}

#[test]
fn help_of_every_command_is_a_snapshot() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/help");
    let assert = snapbox::Assert::new().action_env(snapbox::assert::DEFAULT_ACTION_ENV);
    let mut paths = command_paths();
    assert!(paths.len() > 20, "commands found: {paths:?}");
    paths.insert(0, Vec::new());
    for path in paths {
        let words: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&words);
        let name = if words.is_empty() {
            "cargo-xtask".to_string()
        } else {
            words.join("-")
        };
        assert.eq(
            text,
            snapbox::Data::read_from(&dir.join(format!("{name}.txt")), None),
        );
    }
}

#[test]
fn help_says_cargo_xtask_describes_positionals_and_has_an_example() {
    let runs_tasks = ["bundle", "task", "run", "thin-client", "watch"];
    for path in command_paths() {
        let words: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&words);
        assert!(
            text.contains(&format!("Usage: cargo xtask {}", words.join(" "))),
            "{words:?}:\n{text}"
        );
        // `help <cmd>` is the same long help.
        let via_help = Command::new(BIN)
            .arg("help")
            .args(&words)
            .env("NO_COLOR", "1")
            .output()
            .expect("run xtask");
        assert_eq!(
            String::from_utf8_lossy(&via_help.stdout),
            text,
            "help {words:?}"
        );
        if path.len() == 1 && !text.contains("\nCommands:\n") {
            assert!(
                text.contains("Example"),
                "{words:?} has no example:\n{text}"
            );
        }
        // Every positional argument has a description (on its line or the next).
        if let Some(start) = text.find("\nArguments:\n") {
            let lines: Vec<&str> = text[start + 12..]
                .lines()
                .take_while(|line| line.is_empty() || line.starts_with("  "))
                .collect();
            for (index, line) in lines.iter().enumerate() {
                if line.starts_with("  <") || line.starts_with("  [") {
                    let next = lines.get(index + 1).copied().unwrap_or_default();
                    let same_line = line.trim().split_once("  ").is_some();
                    assert!(
                        same_line || (next.starts_with("          ") && !next.trim().is_empty()),
                        "{words:?}: positional {} has no description",
                        line.trim()
                    );
                }
            }
        }
        let has_jobs = text.contains("--jobs");
        assert_eq!(
            has_jobs,
            runs_tasks.contains(&words[0]) && path.len() == 1,
            "{words:?}: -j belongs to the commands that run tasks only"
        );
        // `watch` builds on every change: a plan-only option would be one it refuses.
        assert_eq!(
            text.contains("--dry-run"),
            has_jobs && words[0] != "watch",
            "{words:?}: --dry-run belongs to the commands that run tasks once"
        );
    }
}

#[test]
fn message_format_json_is_the_one_json_switch() {
    let repo = demo();
    for args in [
        &["analyze", "notes-app"][..],
        &["fitness", "notes-app"],
        &["secrets", "notes-app"],
        &[
            "secrets",
            "classify",
            "postgres",
            "postgres_password",
            "--tier",
            "2",
        ],
        &["dag", "notes-app"],
        &["doctor"],
        &["profile", "list"],
        &["profile", "show", "notes-desktop"],
        &["cache", "stats"],
        &["check"],
        &["graph"],
        &["assemble"],
        &["completions", "bash"],
    ] {
        let run = repo.json(args);
        run.assert_code(0);
        assert!(!run.events.is_empty(), "{args:?}: no event\n{run}");
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let rejected = repo.human(&with_json);
        assert_eq!(
            rejected.code, 2,
            "{args:?} --json must be a usage error\n{rejected}"
        );
    }
    // An explicit --format is kept inside the JSON event, never dropped.
    let run = repo.json(&["dag", "notes-app", "--format", "dot"]);
    run.assert_code(0);
    let dag = &run.events("dag")[0];
    assert_eq!(dag["format"], "dot");
    assert!(dag["text"].as_str().unwrap().contains("digraph"), "{dag}");
    let run = repo.json(&["dag", "notes-app"]);
    assert!(run.events("dag")[0]["dag"]["nodes"].is_array());
    let run = repo.json(&["graph", "--format", "mermaid"]);
    assert_eq!(run.events("graph")[0]["format"], "mermaid");
}

// ---------------------------------------------------------------------------------------------
// Completions.

fn completion_script(shell: &str) -> String {
    let output = Command::new(BIN)
        .args(["completions", shell])
        .output()
        .expect("run xtask");
    assert!(output.status.success(), "completions {shell}");
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// Completes `line`'s last word in a real bash with the script loaded (after `setup`).
fn bash_complete(script: &Path, setup: &str, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "{setup}\nsource '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE='{}'\nCOMP_POINT=${{#COMP_LINE}}\n$(complete -p cargo | sed 's/.*-F \\([^ ]*\\) .*/\\1/') cargo '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words.len() - 1,
        words.join(" "),
        words[words.len() - 1],
        words[words.len().saturating_sub(2)],
    );
    let output = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("run bash");
    assert!(
        output.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .filter(|line| !line.is_empty())
        .collect()
}

#[test]
fn bash_completes_cargo_xtask_and_keeps_cargo_completion() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("cargo-xtask.bash");
    fs::write(&script, completion_script("bash")).unwrap();
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(syntax.success(), "bash -n");

    assert_eq!(
        bash_complete(&script, "", &["cargo", "xtask", "bu"]),
        ["bundle"]
    );
    assert_eq!(
        bash_complete(&script, "", &["cargo", "xtask", "bundle", "--pl"]),
        ["--platform"]
    );
    assert_eq!(
        bash_complete(&script, "", &["cargo", "xtask", "profile", "cr"]),
        ["create"]
    );
    // Cargo's own completion, registered before: still answers every other cargo command.
    let cargo = "_cargo() { COMPREPLY=(build-from-cargo); }\ncomplete -F _cargo cargo";
    assert_eq!(
        bash_complete(&script, cargo, &["cargo", "bu"]),
        ["build-from-cargo"]
    );
    assert_eq!(
        bash_complete(&script, cargo, &["cargo", "xtask", "bu"]),
        ["bundle"]
    );
}

#[test]
fn other_shells_scripts_are_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, program, args) in [
        ("zsh", "zsh", &["-n"][..]),
        ("fish", "fish", &["--no-execute"]),
    ] {
        let text = completion_script(shell);
        assert!(text.contains("xtask"), "{shell}");
        if !common::have_tool(program, program) {
            continue;
        }
        let path = dir.path().join(format!("script.{shell}"));
        fs::write(&path, &text).unwrap();
        let status = Command::new(program)
            .args(args)
            .arg(&path)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "{program} {args:?} rejects the {shell} script"
        );
    }
    let powershell = completion_script("powershell");
    assert!(powershell.contains("Register-ArgumentCompleter"));
    assert!(
        powershell.contains("'cargo;xtask;bundle'"),
        "subcommands of cargo xtask"
    );
}

// ---------------------------------------------------------------------------------------------
// init.

/// The conformance corpus's layout (scenarios/ and resources/), copied beside a canary.
fn vrooli_copy() -> Option<(Repo, Canary)> {
    let corpus = project_root().join("../shared/conformance/vrooli");
    if !corpus.join("scenarios").is_dir() {
        eprintln!("skipped: ../shared/conformance is not here");
        return None;
    }
    let repo = Repo::in_sandbox("", &[]);
    repo.remove("bundle.toml");
    common::copy_tree(&corpus.join("scenarios"), &repo.join("scenarios"));
    common::copy_tree(&corpus.join("resources"), &repo.join("resources"));
    let canary = Canary::plant(&repo.sandbox().join("canary"), &[]);
    Some((repo, canary))
}

#[test]
fn init_writes_a_bundle_toml_check_accepts_and_never_overwrites() {
    let Some((repo, canary)) = vrooli_copy() else {
        return;
    };
    let run = repo.human(&["init"]);
    run.assert_code(0);
    assert!(run.stderr.contains("Wrote bundle.toml"), "{run}");
    assert!(
        run.stdout.contains("cargo xtask check"),
        "says what to run next: {run}"
    );
    let toml = repo.read("bundle.toml");
    let scenarios = fs::read_dir(repo.join("scenarios")).unwrap().count();
    let profiles = toml.matches("\n[profiles.").count();
    let commented = toml.matches("\n# [profiles.").count();
    assert_eq!(profiles + commented, scenarios, "one profile per scenario");
    assert!(
        profiles > scenarios / 2,
        "most are usable: {profiles}/{scenarios}"
    );
    assert!(toml.contains("default-profile = "));
    // The platforms this project ships, the same values.
    for entry in fs::read_dir(project_root().join("platforms")).unwrap() {
        let entry = entry.unwrap();
        let ours: toml_value::Table = parse(&fs::read_to_string(entry.path()).unwrap());
        let written: toml_value::Table = parse(&repo.read(&format!(
            "platforms/{}",
            entry.file_name().to_string_lossy()
        )));
        assert_eq!(ours, written, "{:?}", entry.file_name());
    }
    let check = repo.human(&["check"]);
    check.assert_code(0);
    let listed = repo.json(&["profile", "list"]);
    assert_eq!(listed.events("profile").len(), profiles);

    // A second init refuses, names the file and changes nothing.
    let before = common::full_snapshot(repo.path());
    let again = repo.human(&["init"]);
    assert_eq!(again.code, 2, "{again}");
    assert!(again.stderr.contains("already exists"), "{again}");
    assert_eq!(
        common::full_snapshot(repo.path()),
        before,
        "nothing changed"
    );
    canary.assert_intact("init");
}

#[test]
fn init_refuses_when_any_file_it_would_write_is_there() {
    let Some((repo, canary)) = vrooli_copy() else {
        return;
    };
    // One platform file, and a dangling link where bundle.toml would go.
    repo.write("platforms/win-x64.toml", "# mine\n");
    let before = common::full_snapshot(repo.path());
    let run = repo.human(&["init"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("win-x64.toml already exists"), "{run}");
    assert_eq!(
        common::full_snapshot(repo.path()),
        before,
        "nothing written"
    );

    fs::remove_file(repo.join("platforms/win-x64.toml")).unwrap();
    std::os::unix::fs::symlink(
        repo.sandbox().join("canary/elsewhere.toml"),
        repo.join("bundle.toml"),
    )
    .unwrap();
    let before = common::full_snapshot(repo.path());
    let run = repo.human(&["init"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("bundle.toml already exists"), "{run}");
    assert_eq!(
        common::full_snapshot(repo.path()),
        before,
        "nothing written"
    );
    assert!(!repo.sandbox().join("canary/elsewhere.toml").exists());
    canary.assert_intact("init beside a link");
}

mod toml_value {
    pub type Table = std::collections::BTreeMap<String, String>;
}

/// `key = value` lines of a platform file (comments dropped), values as written.
fn parse(text: &str) -> toml_value::Table {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#') && line.contains('='))
        .map(|line| {
            let (key, value) = line.split_once('=').unwrap();
            (key.trim().to_string(), value.trim().to_string())
        })
        .collect()
}
