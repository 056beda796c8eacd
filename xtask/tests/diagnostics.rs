//! Bad input is a diagnostic: file, line, column and a help line, exit code 2, and nothing
//! built or cached (DESIGN.md §10). Also the run-time problems of a declaration: an input
//! glob that matches nothing, a declared output that is not produced.

use crate::common;

use common::Repo;
use serde_json::{Value, json};

/// Runs `args` on a repository holding `bundle`, in JSON and in human form; both must exit 2
/// and leave no cache behind. Returns (the diagnostic event, human stderr).
fn bad_input(bundle: &str, args: &[&str]) -> (Value, String) {
    let repo = Repo::new(bundle, &[]);
    let before = repo.snapshot();
    let json_run = repo.json(args);
    json_run.assert_code(2);
    assert_eq!(json_run.events.len(), 1, "only the diagnostic\n{json_run}");
    let diagnostic = json_run.diagnostic().clone();
    assert_eq!(diagnostic["level"], "error");
    let human = repo.human(args);
    human.assert_code(2);
    assert!(human.stdout.is_empty(), "{human}");
    assert!(!repo.exists(".xbundle/cache"), "nothing cached");
    common::assert_same_tree(&repo.snapshot(), &before, "nothing written");
    (diagnostic, human.stderr)
}

/// The located fields of a diagnostic event.
fn location(diagnostic: &Value) -> (Value, Value, Value) {
    (
        diagnostic["file"].clone(),
        diagnostic["line"].clone(),
        diagnostic["column"].clone(),
    )
}

#[test]
fn toml_syntax_error_points_at_line_and_column() {
    let bundle = "[tasks.a]\nrun = \"true\"\noutputs [\"x\"]\n";
    let (diagnostic, human) = bad_input(bundle, &["task"]);
    assert_eq!(
        location(&diagnostic),
        (json!("bundle.toml"), json!(3), json!(9))
    );
    assert_eq!(diagnostic["message"], "key with no value, expected `=`");
    assert_eq!(
        diagnostic["help"],
        "fix the TOML syntax at the marked position (https://toml.io)"
    );
    assert!(
        human.contains("bundle.toml:3:9: key with no value, expected `=`"),
        "{human}"
    );
    assert!(
        human.contains("help: fix the TOML syntax at the marked position"),
        "{human}"
    );
    assert!(human.contains("outputs [\"x\"]"), "shows the line\n{human}");

    let unterminated = "[tasks.a]\nrun = \"true\noutputs = [\"x\"]\n";
    let (diagnostic, human) = bad_input(unterminated, &["task"]);
    assert_eq!(
        location(&diagnostic),
        (json!("bundle.toml"), json!(2), json!(12))
    );
    assert!(human.contains("bundle.toml:2:12: "), "{human}");
}

#[test]
fn unknown_key_is_an_error_with_its_position() {
    let bundle = "[tasks.a]\nrun = \"true\"\ninptus = [\"src/**\"]\n";
    let (diagnostic, human) = bad_input(bundle, &["task"]);
    assert_eq!(
        location(&diagnostic),
        (json!("bundle.toml"), json!(3), json!(1))
    );
    let message = diagnostic["message"].as_str().unwrap();
    assert!(
        message.starts_with("unknown field `inptus`, expected one of ")
            && message.contains("`inputs`"),
        "{message}"
    );
    assert_eq!(
        diagnostic["help"],
        "check the spelling; the keys bundle.toml accepts are listed in README.md (\"bundle.toml\")"
    );
    assert!(
        human.contains("bundle.toml:3:1: unknown field `inptus`"),
        "{human}"
    );
    assert!(human.contains("help: check the spelling"), "{human}");

    // Indented, in the second table: the column and line follow.
    let bundle = "[tasks.a]\nrun = \"true\"\n\n[tasks.b]\nrun = \"true\"\n    outptus = []\n";
    let (diagnostic, _) = bad_input(bundle, &["task"]);
    assert_eq!(
        location(&diagnostic),
        (json!("bundle.toml"), json!(6), json!(5))
    );
}

#[test]
fn unknown_dependency_suggests_the_closest_task() {
    let bundle =
        "[tasks.build]\nrun = \"true\"\n\n[tasks.test]\nrun = \"true\"\ndeps = [\"biuld\"]\n";
    let (diagnostic, human) = bad_input(bundle, &["task"]);
    assert_eq!(
        location(&diagnostic),
        (json!("bundle.toml"), json!(6), json!(9))
    );
    assert_eq!(
        diagnostic["message"],
        "task `task:test` depends on unknown task `task:biuld`"
    );
    assert_eq!(diagnostic["help"], "did you mean `build`?");
    assert!(human.contains("help: did you mean `build`?"), "{human}");
    assert!(
        human.contains("bundle.toml:6:9: task `task:test` depends on unknown task `task:biuld`"),
        "{human}"
    );

    // Nothing close: the help lists the declared tasks.
    let bundle =
        "[tasks.build]\nrun = \"true\"\n\n[tasks.test]\nrun = \"true\"\ndeps = [\"zzzzzz\"]\n";
    let (diagnostic, _) = bad_input(bundle, &["task"]);
    assert_eq!(
        diagnostic["help"],
        "declare [tasks.zzzzzz] or remove it from deps; declared tasks: build, test"
    );
}

#[test]
fn dependency_cycle_prints_its_path() {
    let bundle =
        "[tasks.a]\nrun = \"true\"\ndeps = [\"b\"]\n\n[tasks.b]\nrun = \"true\"\ndeps = [\"a\"]\n";
    let (diagnostic, human) = bad_input(bundle, &["task"]);
    assert_eq!(
        diagnostic["message"],
        "dependency cycle: task:a -> task:b -> task:a"
    );
    assert_eq!(
        location(&diagnostic),
        (json!("bundle.toml"), json!(3), json!(9))
    );
    assert!(
        diagnostic["help"]
            .as_str()
            .unwrap()
            .starts_with("a task cannot depend on itself")
    );
    assert!(
        human.contains("dependency cycle: task:a -> task:b -> task:a"),
        "{human}"
    );

    let three = "[tasks.a]\nrun = \"true\"\ndeps = [\"b\"]\n[tasks.b]\nrun = \"true\"\ndeps = [\"c\"]\n[tasks.c]\nrun = \"true\"\ndeps = [\"a\"]\n[tasks.d]\nrun = \"true\"\n";
    let (diagnostic, _) = bad_input(three, &["task", "d"]);
    assert_eq!(
        diagnostic["message"],
        "dependency cycle: task:a -> task:b -> task:c -> task:a"
    );

    let itself = "[tasks.a]\nrun = \"true\"\ndeps = [\"a\"]\n";
    let (diagnostic, _) = bad_input(itself, &["graph"]);
    assert_eq!(diagnostic["message"], "dependency cycle: task:a -> task:a");
}

#[test]
fn unknown_task_on_the_command_line() {
    let bundle = "[tasks.build]\nrun = \"mkdir -p out && touch out/x\"\noutputs = [\"out/x\"]\n";
    let (diagnostic, human) = bad_input(bundle, &["task", "buld"]);
    assert_eq!(diagnostic["message"], "unknown task `buld`");
    assert_eq!(diagnostic["help"], "did you mean `task:build`?");
    assert_eq!(
        location(&diagnostic),
        (Value::Null, Value::Null, Value::Null)
    );
    assert!(human.contains("unknown task `buld`"), "{human}");
    assert!(
        human.contains("help: did you mean `task:build`?"),
        "{human}"
    );

    // A known task next to the unknown one does not run either.
    let (diagnostic, _) = bad_input(bundle, &["task", "build", "qqqqqqq"]);
    assert_eq!(diagnostic["message"], "unknown task `qqqqqqq`");
    assert_eq!(diagnostic["help"], "`cargo xtask graph` lists every task");
}

#[test]
fn usage_errors_and_missing_files_exit_2() {
    let repo = Repo::new("[tasks.a]\nrun = \"true\"\n", &[]);
    let run = repo.human(&["task", "--no-such-flag"]);
    run.assert_code(2);
    assert!(run.stderr.contains("--no-such-flag"), "{run}");

    let empty = Repo::empty();
    let run = empty.json(&["task"]);
    run.assert_code(2);
    let diagnostic = run.diagnostic();
    assert!(
        diagnostic["message"]
            .as_str()
            .unwrap()
            .starts_with("could not read bundle.toml"),
        "{run}"
    );
    assert!(!empty.exists(".xbundle"), "nothing created");

    let output = std::process::Command::new(common::BIN)
        .args(["--root", "/nonexistent/xbundle-test", "task"])
        .env("NO_COLOR", "1")
        .output()
        .expect("run xtask");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("--root /nonexistent/xbundle-test"),
        "{stderr}"
    );
    assert!(
        stderr.contains("help: pass an existing directory"),
        "{stderr}"
    );
}

#[test]
fn input_glob_matching_nothing_is_a_warning() {
    let bundle = r#"
[tasks.copy]
run = "mkdir -p out && cat src/*.txt > out/all.txt"
inputs = ["src/*.txt", "assets/**/*.png"]
outputs = ["out/all.txt"]
"#;
    let repo = Repo::new(bundle, &[("src/a.txt", "a\n")]);
    let run = repo.json(&["task"]);
    run.assert_code(0);
    assert_eq!(
        run.warnings(),
        ["task:copy: input pattern `assets/**/*.png` matches no file"],
        "{run}"
    );
    assert_eq!(run.status("task:copy"), "ran");
    assert_eq!(run.finished()["success"], true);
    assert_eq!(repo.read("out/all.txt"), "a\n");

    let human = repo.human(&["task"]);
    human.assert_code(0);
    assert!(
        human
            .stderr
            .contains("warning: task:copy: input pattern `assets/**/*.png` matches no file"),
        "{human}"
    );
}

const MISSING_OUTPUT: &str = r#"
[tasks.half]
run = "mkdir -p out && echo present > out/present.txt"
outputs = ["out/present.txt", "out/missing.txt"]

[tasks.after]
run = "true"
deps = ["half"]
"#;

#[test]
fn declared_output_not_produced_fails_the_task_and_caches_nothing() {
    let repo = Repo::new(MISSING_OUTPUT, &[]);
    let run = repo.json(&["task"]);
    run.assert_code(1);
    assert_eq!(run.status("task:half"), "failed", "{run}");
    let error = run.task("task:half")["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("`out/missing.txt`")
            && error.contains("not produced")
            && !error.contains("present.txt"),
        "{error}"
    );
    assert_eq!(run.status("task:after"), "skipped");
    assert_eq!(run.counts(), (0, 0, 1, 1));
    assert_eq!(run.finished()["success"], false);
    assert!(
        repo.state_files("cache/ac").is_empty(),
        "no action result stored"
    );

    // Not cached: the next run runs it again, and fails again.
    let again = repo.json(&["task"]);
    again.assert_code(1);
    assert_eq!(again.started(), ["task:half"], "{again}");
    assert_eq!(again.status("task:half"), "failed");
    assert_eq!(again.task("task:half")["error"].as_str().unwrap(), error);

    let human = repo.human(&["task"]);
    human.assert_code(1);
    assert!(
        human.stderr.contains("error: task:half failed: ")
            && human.stderr.contains("`out/missing.txt`"),
        "{human}"
    );
}

#[test]
fn declared_output_not_produced_message_reads_correctly() {
    let repo = Repo::new(MISSING_OUTPUT, &[]);
    let run = repo.json(&["task", "half"]);
    assert_eq!(
        run.task("task:half")["error"],
        "declared output `out/missing.txt` was not produced; nothing was cached"
    );
    let two = MISSING_OUTPUT.replace(
        "\"out/present.txt\", ",
        "\"out/present.txt\", \"out/gone.txt\", ",
    );
    let repo = Repo::new(&two, &[]);
    let run = repo.json(&["task", "half"]);
    assert_eq!(
        run.task("task:half")["error"],
        "declared outputs `out/gone.txt`, `out/missing.txt` were not produced; nothing was cached"
    );
}

/// What a repository names (a file, a pattern) reaches the terminal written out, never as an
/// escape sequence, even where colors are on (`CLICOLOR_FORCE`, as on a terminal).
#[test]
fn control_characters_from_the_repository_are_written_out() {
    let bundle = "[tasks.gen]\nrun = \"mkdir -p build && printf x > \\\"build/$(printf 'a\\\\033]0;owned\\\\007b')\\\"\"\ninputs = [\"src/**\"]\noutputs = [\"build/**\"]\n";
    let repo = Repo::new(bundle, &[("src/in.txt", "in\n")]);
    let colored = [("CLICOLOR_FORCE", "1")];
    repo.human_env(&["task"], &colored).assert_code(0);
    let name = "a\u{1b}]0;owned\u{7}b";
    assert!(repo.exists(&format!("build/{name}")), "the task made it");
    // A restore warns about the deleted output, naming it.
    repo.remove(&format!("build/{name}"));
    let run = repo.human_env(&["task"], &colored);
    run.assert_code(0);
    assert!(run.stderr.contains("was deleted"), "{run}");
    assert!(
        !run.stderr.contains('\u{7}') && !run.stderr.contains("\u{1b}]0;"),
        "a raw escape sequence reached the terminal: {:?}",
        run.stderr
    );
    assert!(run.stderr.contains("a\\x1b]0;owned\\x07b"), "{run}");
    // A pattern holding one, in a diagnostic.
    let bundle = "[tasks.gen]\nrun = \"true\"\ninputs = [\"src/\\u001b]0;owned\\u0007[\"]\n";
    let repo = Repo::new(bundle, &[]);
    let run = repo.human_env(&["check"], &colored);
    run.assert_code(2);
    assert!(
        !run.stderr.contains('\u{7}') && !run.stderr.contains("\u{1b}]0;"),
        "{:?}",
        run.stderr
    );
    assert!(run.stderr.contains("\\x1b]0;owned\\x07"), "{run}");
}
