//! Cache behaviour seen from the command line: no-op runs, early cutoff, `--dry-run`,
//! `--force`, replay of captured output, declared environment variables.

use crate::common;

use std::collections::BTreeMap;
use std::time::SystemTime;

use common::{Repo, statuses};

/// Six tasks: two sources, a join, a fan-out, a task with glob outputs, one in a subdirectory.
const DAG: &str = r#"
[tasks.a]
run = "mkdir -p out && cat src/a.txt > out/a.txt"
inputs = ["src/a.txt"]
outputs = ["out/a.txt"]

[tasks.b]
run = "mkdir -p out && tr a-z A-Z < src/b.txt > out/b.txt"
inputs = ["src/b.txt"]
outputs = ["out/b.txt"]

[tasks.c]
run = "cat out/a.txt out/b.txt > out/c.txt"
inputs = ["out/a.txt", "out/b.txt"]
outputs = ["out/c.txt"]
deps = ["a", "b"]

[tasks.d]
run = "wc -c < out/a.txt > out/d.txt"
inputs = ["out/a.txt"]
outputs = ["out/d.txt"]
deps = ["a"]

[tasks.e]
run = "mkdir -p out/e && cat out/c.txt out/d.txt > out/e/all.txt && echo two > out/e/two.txt"
inputs = ["out/c.txt", "out/d.txt"]
outputs = ["out/e/**"]
deps = ["c", "d"]

[tasks.f]
cwd = "sub"
run = "sort ../out/e/all.txt > sorted.txt"
outputs = ["sorted.txt"]
deps = ["e"]
"#;

const DAG_TASKS: [&str; 6] = ["task:a", "task:b", "task:c", "task:d", "task:e", "task:f"];

fn mtimes(repo: &Repo, paths: &[&str]) -> BTreeMap<String, SystemTime> {
    paths
        .iter()
        .map(|path| {
            let modified = std::fs::metadata(repo.join(path))
                .and_then(|m| m.modified())
                .unwrap_or_else(|err| panic!("{path}: {err}"));
            (path.to_string(), modified)
        })
        .collect()
}

#[test]
fn second_and_third_runs_are_no_ops() {
    let repo = Repo::new(
        DAG,
        &[("src/a.txt", "banana\napple\n"), ("src/b.txt", "cherry\n")],
    );
    repo.write("sub/.keep", "");
    let first = repo.json(&["task"]);
    first.assert_code(0);
    assert_eq!(first.counts(), (6, 0, 0, 0), "{first}");
    for id in DAG_TASKS {
        assert_eq!(first.status(id), "ran", "{first}");
    }
    assert_eq!(repo.read("out/c.txt"), "banana\napple\nCHERRY\n");
    assert_eq!(repo.read("out/d.txt").trim(), "13");
    assert_eq!(repo.read("out/e/two.txt"), "two\n");
    assert_eq!(repo.read("sub/sorted.txt"), "13\nCHERRY\napple\nbanana\n");
    let outputs = [
        "out/a.txt",
        "out/b.txt",
        "out/c.txt",
        "out/d.txt",
        "out/e/all.txt",
        "out/e/two.txt",
        "sub/sorted.txt",
    ];
    let tree = repo.snapshot();
    let times = mtimes(&repo, &outputs);

    for args in [&["task"][..], &["bundle"][..]] {
        let again = repo.json(args);
        again.assert_code(0);
        assert_eq!(again.counts(), (0, 6, 0, 0), "{again}");
        assert_eq!(again.finished()["success"], true);
        assert!(again.started().is_empty(), "nothing starts\n{again}");
        assert!(again.warnings().is_empty(), "{again}");
        for id in DAG_TASKS {
            let report = again.task(id);
            assert_eq!(report["status"], "cached", "{again}");
            assert_eq!(report["restored"], 0, "{again}");
            assert_eq!(report["reasons"], serde_json::json!([]), "{again}");
            assert_eq!(report["reason"], "up to date", "{again}");
            assert_eq!(
                report["key"],
                first.task(id)["key"],
                "same key as the first run"
            );
            assert_eq!(report["output"], first.task(id)["output"]);
        }
        common::assert_same_tree(&repo.snapshot(), &tree, "a no-op run changes nothing");
        assert_eq!(
            mtimes(&repo, &outputs),
            times,
            "a no-op run rewrites nothing"
        );
    }

    let human = repo.human(&["task"]);
    human.assert_code(0);
    assert!(human.stderr.contains("Finished 0 ran, 6 cached"), "{human}");
    assert!(!human.stderr.contains("Running"), "{human}");
}

#[test]
fn unchanged_dependency_output_cuts_off_dependents() {
    let bundle = r#"
[tasks.count]
run = "mkdir -p out && wc -l < src/lines.txt > out/count.txt"
inputs = ["src/lines.txt"]
outputs = ["out/count.txt"]

[tasks.report]
run = "sed 's/^ */lines: /' out/count.txt > out/report.txt"
outputs = ["out/report.txt"]
deps = ["count"]
"#;
    let repo = Repo::new(bundle, &[("src/lines.txt", "a\nb\nc\n")]);
    let first = repo.json(&["task"]);
    first.assert_code(0);
    assert_eq!(repo.read("out/report.txt"), "lines: 3\n");
    let report_time = mtimes(&repo, &["out/report.txt"]);

    // Same number of lines: `count` runs and produces the same bytes; `report` does not run.
    repo.write("src/lines.txt", "a\nchanged\nc\n");
    let run = repo.json(&["task"]);
    run.assert_code(0);
    assert_eq!(run.status("task:count"), "ran", "{run}");
    assert_eq!(run.reasons("task:count"), ["input src/lines.txt changed"]);
    assert_eq!(run.status("task:report"), "cached", "{run}");
    assert_eq!(run.restored("task:report"), 0, "{run}");
    assert_eq!(run.reasons("task:report"), Vec::<String>::new(), "{run}");
    assert_eq!(run.started(), ["task:count"], "{run}");
    assert_eq!(run.counts(), (1, 1, 0, 0));
    assert_eq!(mtimes(&repo, &["out/report.txt"]), report_time);
    assert_eq!(
        run.task("task:count")["output"],
        first.task("task:count")["output"],
        "same output digest: what dependents are keyed on"
    );
    assert_ne!(
        run.task("task:count")["key"],
        first.task("task:count")["key"]
    );
    assert_eq!(
        run.task("task:report")["key"],
        first.task("task:report")["key"]
    );

    // A relevant change does reach the dependent.
    repo.write("src/lines.txt", "a\nb\nc\nd\n");
    let run = repo.json(&["task"]);
    run.assert_code(0);
    assert_eq!(run.status("task:count"), "ran", "{run}");
    assert_eq!(run.status("task:report"), "ran", "{run}");
    assert_eq!(
        run.reasons("task:report"),
        ["dependency task:count output changed"]
    );
    assert_eq!(repo.read("out/report.txt"), "lines: 4\n");
}

#[test]
fn dry_run_shows_the_plan_and_runs_nothing_and_force_runs_everything() {
    let bundle = r#"
[tasks.gen]
run = "mkdir -p out && tr a-z A-Z < src/x.txt > out/gen.txt"
inputs = ["src/x.txt"]
outputs = ["out/gen.txt"]

[tasks.use]
run = "cat out/gen.txt out/gen.txt > out/use.txt"
outputs = ["out/use.txt"]
deps = ["gen"]

[tasks.other]
run = "mkdir -p out && cp src/o.txt out/other.txt"
inputs = ["src/o.txt"]
outputs = ["out/other.txt"]
"#;
    let repo = Repo::new(bundle, &[("src/x.txt", "x\n"), ("src/o.txt", "o\n")]);
    let before = repo.snapshot();

    let plan_of = |run: &common::Run| -> BTreeMap<String, (String, Vec<String>, Vec<String>)> {
        assert!(run.events("task-started").is_empty(), "{run}");
        assert!(run.events("task-finished").is_empty(), "{run}");
        run.events("plan")
            .into_iter()
            .map(|event| {
                (
                    event["id"].as_str().expect("id").to_string(),
                    (
                        event["expected"].as_str().expect("expected").to_string(),
                        common::strings(&event["reasons"]),
                        common::strings(&event["pending"]),
                    ),
                )
            })
            .collect()
    };
    let plan = |entries: &[(&str, &str, &[&str], &[&str])]| {
        entries
            .iter()
            .map(|(id, expected, reasons, pending)| {
                (
                    id.to_string(),
                    (
                        expected.to_string(),
                        reasons.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                        pending.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                    ),
                )
            })
            .collect::<BTreeMap<_, _>>()
    };

    // Fresh tree: everything would run; nothing is written.
    let dry = repo.json(&["task", "--dry-run"]);
    dry.assert_code(0);
    assert_eq!(
        plan_of(&dry),
        plan(&[
            ("task:gen", "run", &["no previous run recorded"], &[]),
            ("task:use", "depends-on-changes", &[], &["task:gen"]),
            ("task:other", "run", &["no previous run recorded"], &[]),
        ]),
        "{dry}"
    );
    common::assert_same_tree(&repo.snapshot(), &before, "a dry run writes nothing");
    assert!(!repo.exists(".xbundle/cache"), "a dry run stores nothing");
    let human = repo.human(&["task", "--dry-run"]);
    human.assert_code(0);
    assert!(
        human
            .stdout
            .contains("Plan: 3 tasks, nothing will run (--dry-run)"),
        "{human}"
    );
    assert!(
        human
            .stdout
            .contains("task:use    runs if task:gen changes its output"),
        "{human}"
    );
    assert!(!repo.exists("out"), "{human}");

    let build = repo.json(&["task"]);
    build.assert_code(0);
    assert_eq!(build.counts(), (3, 0, 0, 0));
    let built = repo.snapshot();

    let dry = repo.json(&["task", "--dry-run"]);
    assert_eq!(
        plan_of(&dry),
        plan(&[
            ("task:gen", "up-to-date", &[], &[]),
            ("task:use", "up-to-date", &[], &[]),
            ("task:other", "up-to-date", &[], &[]),
        ]),
        "{dry}"
    );

    // An input edit and a deleted output: the plan says so, and still nothing changes.
    repo.write("src/x.txt", "changed\n");
    repo.remove("out/other.txt");
    let edited = repo.snapshot();
    let dry = repo.json(&["task", "--dry-run"]);
    dry.assert_code(0);
    assert_eq!(
        plan_of(&dry),
        plan(&[
            ("task:gen", "run", &["input src/x.txt changed"], &[]),
            ("task:use", "depends-on-changes", &[], &["task:gen"]),
            ("task:other", "restore", &[], &[]),
        ]),
        "{dry}"
    );
    common::assert_same_tree(&repo.snapshot(), &edited, "a dry run writes nothing");

    // Back to the built state; --force runs everything again.
    repo.write("src/x.txt", "x\n");
    let forced = repo.json(&["task", "--force"]);
    forced.assert_code(0);
    assert_eq!(forced.counts(), (3, 0, 0, 0), "{forced}");
    for id in ["task:gen", "task:use", "task:other"] {
        assert_eq!(forced.status(id), "ran", "{forced}");
        assert_eq!(forced.reasons(id), ["--force given"], "{forced}");
    }
    assert_eq!(forced.started().len(), 3);
    common::assert_same_tree(
        &repo.snapshot(),
        &built,
        "a forced run rebuilds the same tree",
    );
    let after = repo.json(&["task"]);
    assert_eq!(after.counts(), (0, 3, 0, 0), "{after}");
}

#[test]
fn cached_task_replays_its_captured_output() {
    let bundle = r#"
[tasks.hello]
run = "echo 'hello from the task'; echo 'a note on stderr' >&2; mkdir -p out && echo x > out/x.txt"
outputs = ["out/x.txt"]
"#;
    let repo = Repo::new(bundle, &[]);
    let output_events = |run: &common::Run| -> Vec<(String, bool, String)> {
        run.events("task-output")
            .into_iter()
            .map(|event| {
                assert_eq!(event["id"], "task:hello");
                (
                    event["stream"].as_str().expect("stream").to_string(),
                    event["replayed"].as_bool().expect("replayed"),
                    event["text"].as_str().expect("text").to_string(),
                )
            })
            .collect()
    };
    let first = repo.json(&["task"]);
    first.assert_code(0);
    assert_eq!(first.status("task:hello"), "ran");
    // The two streams are read concurrently: their relative order is the arrival order.
    let mut events = output_events(&first);
    events.sort();
    assert_eq!(
        events,
        [
            (
                "stderr".to_string(),
                false,
                "a note on stderr\n".to_string()
            ),
            (
                "stdout".to_string(),
                false,
                "hello from the task\n".to_string()
            ),
        ]
    );

    // Up to date (nothing restored): a true no-op prints nothing, as cargo and ninja.
    let second = repo.json(&["task"]);
    second.assert_code(0);
    assert_eq!(second.status("task:hello"), "cached");
    assert_eq!(output_events(&second), [], "{second}");

    // A restore replays it, marked as replayed.
    repo.remove("out/x.txt");
    let third = repo.json(&["task"]);
    third.assert_code(0);
    assert_eq!(third.status("task:hello"), "cached");
    assert_eq!(
        output_events(&third),
        [
            (
                "stdout".to_string(),
                true,
                "hello from the task\n".to_string()
            ),
            ("stderr".to_string(), true, "a note on stderr\n".to_string()),
        ]
    );

    // And so does human output: on stderr, each line prefixed with the task's id, under a
    // "Replaying" line.
    repo.remove("out/x.txt");
    let human = repo.human(&["task"]);
    human.assert_code(0);
    assert_eq!(human.stdout, "", "{human}");
    assert!(
        human
            .stderr
            .contains("Replaying task:hello (cached output)\ntask:hello: hello from the task\ntask:hello: a note on stderr\n"),
        "{human}"
    );
    assert!(
        human
            .stderr
            .contains("Restored task:hello from cache (1 file)"),
        "{human}"
    );
}

#[test]
fn declared_env_var_enters_the_key() {
    let bundle = r#"
[tasks.greet]
run = "mkdir -p out && echo \"value=$XB_TEST_FOO\" > out/greet.txt"
outputs = ["out/greet.txt"]
env = ["XB_TEST_FOO"]
"#;
    let repo = Repo::new(bundle, &[]);
    let foo = |value: &str| vec![("XB_TEST_FOO", value.to_string())];
    let run_with = |env: &[(&str, String)]| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let run = repo.json_env(&["task"], &env);
        run.assert_code(0);
        run
    };

    let run = run_with(&foo("one"));
    assert_eq!(run.status("task:greet"), "ran");
    assert_eq!(repo.read("out/greet.txt"), "value=one\n");

    let run = run_with(&foo("one"));
    assert_eq!(run.status("task:greet"), "cached");
    assert_eq!(run.restored("task:greet"), 0);

    // An undeclared variable does not matter.
    let run = run_with(&[
        ("XB_TEST_FOO", "one".to_string()),
        ("XB_TEST_OTHER", "anything".to_string()),
    ]);
    assert_eq!(run.status("task:greet"), "cached", "{run}");

    let run = run_with(&foo("two"));
    assert_eq!(run.status("task:greet"), "ran", "{run}");
    assert_eq!(run.reasons("task:greet"), ["env XB_TEST_FOO changed"]);
    assert_eq!(repo.read("out/greet.txt"), "value=two\n");

    // Back to a value seen before: a cache hit that restores the old output.
    let run = run_with(&foo("one"));
    assert_eq!(run.status("task:greet"), "cached", "{run}");
    assert_eq!(run.restored("task:greet"), 1, "{run}");
    assert_eq!(run.reasons("task:greet"), ["env XB_TEST_FOO changed"]);
    assert_eq!(repo.read("out/greet.txt"), "value=one\n");

    // Unset is a value of its own.
    let run = run_with(&[]);
    assert_eq!(run.status("task:greet"), "ran", "{run}");
    assert_eq!(run.reasons("task:greet"), ["env XB_TEST_FOO changed"]);
    assert_eq!(repo.read("out/greet.txt"), "value=\n");
    let run = run_with(&foo("two"));
    assert_eq!(run.status("task:greet"), "cached", "{run}");
    assert_eq!(run.restored("task:greet"), 1);
    assert_eq!(repo.read("out/greet.txt"), "value=two\n");

    assert_eq!(
        run.statuses(),
        statuses(&[("task:greet", "cached")]),
        "one task in this fixture"
    );
}

#[test]
fn tasks_never_see_what_cargo_run_says_of_xtask_but_do_see_the_users_variables() {
    // `cargo xtask` is `cargo run -p xtask`, which sets CARGO_MANIFEST_DIR, CARGO_PKG_* and
    // more for xtask. Passed on to a task's cargo build, they are tracked by some build
    // scripts (ring's), so builds started by hand and by xtask kept rebuilding each other.
    let bundle = r#"
[tasks.env]
run = "mkdir -p out && for v in CARGO_MANIFEST_DIR CARGO_MANIFEST_PATH CARGO_PKG_NAME CARGO_PKG_VERSION_MAJOR CARGO_CRATE_NAME CARGO_BIN_NAME CARGO_PRIMARY_PACKAGE CARGO_TARGET_TMPDIR CARGO_BIN_EXE_xtask CARGO XB_TEST_KEPT; do printenv $v >/dev/null && echo $v; done > out/env.txt"
outputs = ["out/env.txt"]
"#;
    let repo = Repo::new(bundle, &[]);
    let run = repo.json_env(
        &["task"],
        &[
            ("CARGO_MANIFEST_DIR", "/somewhere/xtask"),
            ("CARGO_MANIFEST_PATH", "/somewhere/xtask/Cargo.toml"),
            ("CARGO_PKG_NAME", "xtask"),
            ("CARGO_PKG_VERSION_MAJOR", "0"),
            ("CARGO_CRATE_NAME", "xtask"),
            ("CARGO_BIN_NAME", "xtask"),
            ("CARGO_PRIMARY_PACKAGE", "1"),
            ("CARGO_TARGET_TMPDIR", "/somewhere/tmp"),
            ("CARGO_BIN_EXE_xtask", "/somewhere/xtask"),
            ("CARGO", "/somewhere/cargo"),
            ("XB_TEST_KEPT", "yes"),
        ],
    );
    run.assert_code(0);
    assert_eq!(repo.read("out/env.txt"), "CARGO\nXB_TEST_KEPT\n");
}

#[test]
fn restoring_an_older_state_removes_outputs_it_does_not_have() {
    let bundle = r#"
[tasks.pages]
cwd = "docs"
run = "mkdir -p html && for f in *.md; do cp \"$f\" \"html/${f%.md}.html\"; done"
inputs = ["*.md"]
outputs = ["html/**"]
"#;
    let repo = Repo::new(bundle, &[("docs/index.md", "# index\n")]);
    repo.json(&["task"]).assert_code(0);
    let one_page = repo.snapshot();

    repo.write("docs/extra.md", "# extra\n");
    let run = repo.json(&["task"]);
    assert_eq!(run.status("task:pages"), "ran");
    assert_eq!(repo.read("docs/html/extra.html"), "# extra\n");
    let two_pages = repo.snapshot();

    // Back to one page: restored from the cache, and the extra page is gone.
    repo.remove("docs/extra.md");
    let run = repo.json(&["task"]);
    run.assert_code(0);
    assert_eq!(run.status("task:pages"), "cached", "{run}");
    assert_eq!(run.restored("task:pages"), 1, "one file removed\n{run}");
    assert_eq!(run.reasons("task:pages"), ["input docs/extra.md removed"]);
    common::assert_same_tree(&repo.snapshot(), &one_page, "stale page removed");

    repo.write("docs/extra.md", "# extra\n");
    let run = repo.json(&["task"]);
    assert_eq!(run.status("task:pages"), "cached", "{run}");
    assert_eq!(run.restored("task:pages"), 1);
    assert_eq!(run.reasons("task:pages"), ["input docs/extra.md added"]);
    common::assert_same_tree(&repo.snapshot(), &two_pages, "page restored");
}

#[test]
fn same_size_edit_right_after_a_build_is_seen() {
    let bundle = r#"
[tasks.copy]
run = "mkdir -p out && cp src/in.txt out/copy.txt"
inputs = ["src/in.txt"]
outputs = ["out/copy.txt"]
"#;
    let repo = Repo::new(bundle, &[("src/in.txt", "value-00\n")]);
    repo.json(&["task"]).assert_code(0);
    // Every edit keeps the size and lands within moments of the previous build, possibly in
    // the same file-system timestamp tick (the racy-clean case of the stat cache).
    for round in 1..=10 {
        let content = format!("value-{round:02}\n");
        repo.write("src/in.txt", &content);
        let run = repo.json(&["task"]);
        run.assert_code(0);
        assert_eq!(run.status("task:copy"), "ran", "round {round}\n{run}");
        assert_eq!(repo.read("out/copy.txt"), content, "round {round}");
    }
}

/// Where a task's outputs land is part of its key: moving `[workspace] out` (which moves the
/// pipeline's outputs, not its inputs) and moving it back are a run and then a cache hit, never
/// a cached entry refused as naming paths outside the task's outputs (and thrown away).
#[test]
fn moving_the_outputs_is_a_new_key_and_moving_them_back_a_hit() {
    let scenario = r#"{"service": {"name": "app", "version": "1.0.0", "type": "scenario"}, "ports": {"api": {"env_var": "API_PORT", "range": "15000-19999"}}}"#;
    let bundle = |out: &str| {
        format!(
            "[workspace]\nout = \"{out}\"\ndefault-profile = \"p\"\n\n[profiles.p]\nscenario = \"app\"\ntier = \"desktop\"\n"
        )
    };
    let repo = Repo::new(
        &bundle("dist"),
        &[("scenarios/app/.vrooli/service.json", scenario)],
    );
    let first = repo.json(&["task"]);
    first.assert_code(0);
    assert_eq!(first.status("analyze:app"), "ran", "{first}");
    repo.write("bundle.toml", bundle("site"));
    let moved = repo.json(&["task"]);
    moved.assert_code(0);
    assert!(moved.warnings().is_empty(), "{moved}");
    assert_eq!(moved.status("analyze:app"), "ran", "{moved}");
    assert!(repo.exists("site/analysis/app.json"));
    repo.write("bundle.toml", bundle("dist"));
    std::fs::remove_dir_all(repo.join("dist")).unwrap();
    let back = repo.json(&["task"]);
    back.assert_code(0);
    assert!(back.warnings().is_empty(), "{back}");
    assert_eq!(back.status("analyze:app"), "cached", "{back}");
    assert_eq!(back.status("assemble:p"), "cached", "{back}");
    assert!(repo.exists("dist/analysis/app.json"));
}
