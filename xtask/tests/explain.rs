//! `explain TASK` says exactly why a task would run, or why it last ran (DESIGN.md §4.5).

use crate::common;

use common::Repo;
use serde_json::Value;

const BUNDLE: &str = r#"
[tasks.gen]
run = "mkdir -p out && tr a-z A-Z < src/in.txt > out/gen.txt && echo \"$XB_TEST_FOO\" > out/env.txt"
inputs = ["src/in.txt"]
outputs = ["out/gen.txt", "out/env.txt"]
env = ["XB_TEST_FOO"]

[tasks.use]
run = "cat out/gen.txt out/gen.txt > out/use.txt"
outputs = ["out/use.txt"]
deps = ["gen"]
"#;

const FOO_A: [(&str, &str); 1] = [("XB_TEST_FOO", "a")];

/// Human `explain` output with `XB_TEST_FOO=a` unless `env` says otherwise.
fn explain_human(repo: &Repo, task: &str, env: &[(&str, &str)]) -> String {
    let run = repo.human_env(&["explain", task], env);
    run.assert_code(0);
    run.stdout.clone()
}

/// The one `explain` event.
fn explain_json(repo: &Repo, task: &str, env: &[(&str, &str)]) -> Value {
    let run = repo.json_env(&["explain", task], env);
    run.assert_code(0);
    let events = run.events("explain");
    assert_eq!(events.len(), 1, "{run}");
    assert_eq!(run.events.len(), 1, "only the explain event\n{run}");
    events[0].clone()
}

/// Asserts the `last ran …s ago because: …` line (the age varies).
#[track_caller]
fn assert_last(text: &str, verb: &str, because: &str) {
    let line = text
        .lines()
        .find(|line| line.starts_with("  last "))
        .unwrap_or_else(|| panic!("no `last` line in:\n{text}"));
    let prefix = format!("  last {verb} ");
    let suffix = format!(" ago because: {because}");
    assert!(
        line.starts_with(&prefix) && line.ends_with(&suffix),
        "expected `{prefix}…{suffix}`, got `{line}`"
    );
}

#[test]
fn explain_names_the_changed_input_env_or_dependency() {
    let repo = Repo::new(BUNDLE, &[("src/in.txt", "hello\n")]);

    // Never built.
    let text = explain_human(&repo, "gen", &FOO_A);
    assert_eq!(
        text,
        "task:gen\n  would run because:\n    - no previous run recorded\n  no run recorded for this task in this workspace\n"
    );
    let event = explain_json(&repo, "gen", &FOO_A);
    assert_eq!(event["id"], "task:gen");
    assert_eq!(event["expected"], "run");
    assert_eq!(event["last"], Value::Null);

    repo.json_env(&["task"], &FOO_A).assert_code(0);
    let built = repo.snapshot();

    // Unchanged: up to date.
    let text = explain_human(&repo, "gen", &FOO_A);
    assert!(
        text.starts_with(
            "task:gen\n  up to date: its inputs (declared and discovered), env, definition and dependencies are unchanged since the last run\n"
        ),
        "{text}"
    );
    assert_last(&text, "ran", "no previous run recorded");
    let event = explain_json(&repo, "task:use", &FOO_A);
    assert_eq!(event["id"], "task:use");
    assert_eq!(event["expected"], "up-to-date");
    assert_eq!(event["reasons"], serde_json::json!([]));
    assert_eq!(event["last"]["outcome"], "ran");
    assert_eq!(
        event["last"]["reasons"],
        serde_json::json!(["no previous run recorded"])
    );

    // An input file changed.
    repo.write("src/in.txt", "changed\n");
    let text = explain_human(&repo, "gen", &FOO_A);
    assert!(
        text.contains("  would run because:\n    - input src/in.txt changed\n"),
        "{text}"
    );
    let event = explain_json(&repo, "gen", &FOO_A);
    assert_eq!(event["expected"], "run");
    assert_eq!(
        event["reasons"],
        serde_json::json!(["input src/in.txt changed"])
    );
    // Its dependent waits for it.
    let text = explain_human(&repo, "use", &FOO_A);
    assert!(
        text.contains(
            "  would run if its dependencies produce different output; these will run first:\n    - task:gen: runs: input src/in.txt changed\n"
        ),
        "{text}"
    );
    let event = explain_json(&repo, "use", &FOO_A);
    assert_eq!(event["expected"], "depends-on-changes");
    assert_eq!(event["pending"], serde_json::json!(["task:gen"]));
    repo.write("src/in.txt", "hello\n");

    // A declared environment variable changed.
    let foo_b = [("XB_TEST_FOO", "b")];
    let text = explain_human(&repo, "gen", &foo_b);
    assert!(
        text.contains("  would run because:\n    - env XB_TEST_FOO changed\n"),
        "{text}"
    );
    let event = explain_json(&repo, "gen", &foo_b);
    assert_eq!(
        event["reasons"],
        serde_json::json!(["env XB_TEST_FOO changed"])
    );
    let event = explain_json(&repo, "gen", &[]);
    assert_eq!(
        event["reasons"],
        serde_json::json!(["env XB_TEST_FOO changed"]),
        "unset differs from `a` too"
    );

    // explain never changes the tree.
    common::assert_same_tree(&repo.snapshot(), &built, "explain writes nothing");

    // A dependency's output changed (it ran alone).
    repo.write("src/in.txt", "new content\n");
    let only_gen = repo.json_env(&["task", "gen"], &FOO_A);
    only_gen.assert_code(0);
    assert_eq!(only_gen.statuses().len(), 1, "{only_gen}");
    let text = explain_human(&repo, "use", &FOO_A);
    assert!(
        text.contains("  would run because:\n    - dependency task:gen output changed\n"),
        "{text}"
    );
    let event = explain_json(&repo, "use", &FOO_A);
    assert_eq!(event["expected"], "run");
    assert_eq!(
        event["reasons"],
        serde_json::json!(["dependency task:gen output changed"])
    );

    // After the run, explain says why it last ran.
    let run = repo.json_env(&["task"], &FOO_A);
    assert_eq!(run.status("task:use"), "ran", "{run}");
    let text = explain_human(&repo, "use", &FOO_A);
    assert!(text.contains("  up to date"), "{text}");
    assert_last(&text, "ran", "dependency task:gen output changed");
    let event = explain_json(&repo, "use", &FOO_A);
    assert_eq!(event["expected"], "up-to-date");
    assert_eq!(event["last"]["outcome"], "ran");
    assert_eq!(
        event["last"]["reasons"],
        serde_json::json!(["dependency task:gen output changed"])
    );
    assert_eq!(event["last"]["key"], run.task("task:use")["key"]);
    let text = explain_human(&repo, "gen", &FOO_A);
    assert_last(&text, "ran", "input src/in.txt changed");

    // Back to an earlier state: restored from the cache, and explain says so.
    repo.write("src/in.txt", "hello\n");
    let run = repo.json_env(&["task"], &FOO_A);
    assert_eq!(run.status("task:gen"), "cached", "{run}");
    let text = explain_human(&repo, "gen", &FOO_A);
    assert_last(
        &text,
        "was restored from the cache",
        "input src/in.txt changed",
    );
    let event = explain_json(&repo, "gen", &FOO_A);
    assert_eq!(event["last"]["outcome"], "cached");
}

#[test]
fn explain_of_an_unknown_task_is_bad_input() {
    let repo = Repo::new(BUNDLE, &[("src/in.txt", "hello\n")]);
    let run = repo.json(&["explain", "usee"]);
    run.assert_code(2);
    let diagnostic = run.diagnostic();
    assert_eq!(diagnostic["message"], "unknown task `usee`");
    assert_eq!(diagnostic["help"], "did you mean `task:use`?");
}

#[test]
fn verbose_run_says_why_each_task_runs() {
    let repo = Repo::new(BUNDLE, &[("src/in.txt", "hello\n")]);
    repo.json_env(&["task"], &FOO_A).assert_code(0);
    repo.write("src/in.txt", "other\n");
    let run = repo.human_env(&["-v", "task"], &FOO_A);
    run.assert_code(0);
    assert!(
        run.stderr
            .contains("Running task:gen (input src/in.txt changed)\n"),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("Running task:use (dependency task:gen output changed)\n"),
        "{run}"
    );
    assert!(run.stderr.contains("Finished 2 ran, 0 cached in "), "{run}");

    let run = repo.human_env(&["-v", "task"], &FOO_A);
    run.assert_code(0);
    assert!(run.stderr.contains("Fresh task:gen\n"), "{run}");
    assert!(run.stderr.contains("Fresh task:use\n"), "{run}");

    // Quiet: nothing but errors.
    repo.write("src/in.txt", "third\n");
    let run = repo.human_env(&["-q", "task"], &FOO_A);
    run.assert_code(0);
    assert_eq!(run.stderr, "", "{run}");
    assert_eq!(repo.read("out/use.txt"), "THIRD\nTHIRD\n");
}
