//! A failing task stops its dependents and lets independent tasks finish, or stops the run at
//! once with `--fail-fast`; the summary names what failed and why (DESIGN.md §4.4).

use crate::common;

use common::{Repo, statuses};

const BUNDLE: &str = r#"
[tasks.bad]
run = "echo 'about to fail' >&2; exit 3"

[tasks.child]
run = "mkdir -p out && echo child > out/child.txt"
outputs = ["out/child.txt"]
deps = ["bad"]

[tasks.grandchild]
run = "mkdir -p out && echo grandchild > out/grandchild.txt"
outputs = ["out/grandchild.txt"]
deps = ["child"]

[tasks.mixed]
run = "mkdir -p out && echo mixed > out/mixed.txt"
outputs = ["out/mixed.txt"]
deps = ["ok1", "bad"]

[tasks.ok1]
run = "sleep 0.05; mkdir -p out && echo ok1 > out/ok1.txt"
outputs = ["out/ok1.txt"]

[tasks.ok2]
run = "mkdir -p out && echo ok2 > out/ok2.txt"
outputs = ["out/ok2.txt"]
"#;

fn check_failed_run(jobs: &str) {
    let repo = Repo::new(BUNDLE, &[]);
    let run = repo.json(&["task", "-j", jobs]);
    run.assert_code(1);
    assert_eq!(
        run.statuses(),
        statuses(&[
            ("task:bad", "failed"),
            ("task:child", "skipped"),
            ("task:grandchild", "skipped"),
            ("task:mixed", "skipped"),
            ("task:ok1", "ran"),
            ("task:ok2", "ran"),
        ]),
        "-j {jobs}\n{run}"
    );
    assert_eq!(run.counts(), (2, 0, 1, 3), "-j {jobs}\n{run}");
    assert_eq!(run.finished()["success"], false);
    assert_eq!(
        run.task("task:bad")["error"],
        "command exited with exit status: 3"
    );
    for id in ["task:child", "task:grandchild", "task:mixed"] {
        assert_eq!(run.task(id)["error"], "a dependency failed", "{run}");
        assert_eq!(run.task(id)["key"], serde_json::Value::Null);
    }
    let started = run.started();
    assert!(
        !started
            .iter()
            .any(|id| ["task:child", "task:grandchild", "task:mixed"].contains(&id.as_str())),
        "dependents of a failure never start\n{run}"
    );
    // What the failing command printed is shown.
    let printed: Vec<_> = run
        .events("task-output")
        .into_iter()
        .filter(|e| e["id"] == "task:bad")
        .collect();
    assert_eq!(printed.len(), 1, "{run}");
    assert_eq!(printed[0]["stream"], "stderr");
    assert_eq!(printed[0]["text"], "about to fail\n");
    assert_eq!(repo.read("out/ok1.txt"), "ok1\n");
    assert_eq!(repo.read("out/ok2.txt"), "ok2\n");
    assert!(!repo.exists("out/child.txt"));
    assert!(!repo.exists("out/mixed.txt"));

    // A failure is never cached: it runs (and fails) again; the rest is cached.
    let again = repo.json(&["task", "-j", jobs]);
    again.assert_code(1);
    assert_eq!(again.status("task:bad"), "failed");
    assert_eq!(again.started(), ["task:bad"], "{again}");
    assert_eq!(again.counts(), (0, 2, 1, 3), "{again}");

    let human = repo.human(&["task", "-j", jobs]);
    human.assert_code(1);
    assert!(
        human
            .stderr
            .contains("error: task:bad failed: command exited with exit status: 3"),
        "{human}"
    );
    assert!(
        human
            .stderr
            .contains("error: build failed: 0 ran, 2 cached, 1 failed, 3 skipped in "),
        "{human}"
    );
    assert!(
        human
            .stderr
            .contains("; failed: task:bad (command exited with exit status: 3)"),
        "{human}"
    );
}

#[test]
fn failure_skips_dependents_and_finishes_independent_tasks_with_one_job() {
    check_failed_run("1");
}

#[test]
fn failure_skips_dependents_and_finishes_independent_tasks_with_two_jobs() {
    check_failed_run("2");
}

#[test]
fn naming_a_failing_target_fails_the_run() {
    let repo = Repo::new(BUNDLE, &[]);
    let run = repo.json(&["task", "grandchild"]);
    run.assert_code(1);
    assert_eq!(
        run.statuses(),
        statuses(&[
            ("task:bad", "failed"),
            ("task:child", "skipped"),
            ("task:grandchild", "skipped"),
        ]),
        "only the target and its dependencies\n{run}"
    );
    let ok = repo.json(&["task", "ok2"]);
    ok.assert_code(0);
    assert_eq!(ok.statuses(), statuses(&[("task:ok2", "ran")]));
}

/// With one job the run is sequential; the failing task comes first in the schedule (the test
/// checks that), so every independent task is still waiting when it fails.
const FAIL_FAST: &str = r#"
[tasks.a-ok]
run = "mkdir -p out && echo a > out/a.txt"
outputs = ["out/a.txt"]

[tasks.b-ok]
run = "mkdir -p out && echo b > out/b.txt"
outputs = ["out/b.txt"]

[tasks.c-ok]
run = "mkdir -p out && echo c > out/c.txt"
outputs = ["out/c.txt"]

[tasks.d-after]
run = "mkdir -p out && echo d > out/d.txt"
outputs = ["out/d.txt"]
deps = ["z-fail"]

[tasks.z-fail]
run = "exit 1"
"#;

#[test]
fn fail_fast_with_one_job_starts_nothing_after_the_failure() {
    let repo = Repo::new(FAIL_FAST, &[]);
    let run = repo.json(&["task", "-j", "1", "--fail-fast"]);
    run.assert_code(1);
    let failure = run
        .events
        .iter()
        .position(|e| e["event"] == "task-finished" && e["id"] == "task:z-fail")
        .expect("the failing task finished");
    assert_eq!(run.events[failure]["status"], "failed");
    let started_before: Vec<&str> = run.events[..failure]
        .iter()
        .filter(|e| e["event"] == "task-started")
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert!(
        started_before.len() <= 2,
        "precondition: the failing task is scheduled early\n{run}"
    );
    let started_after: Vec<&str> = run.events[failure..]
        .iter()
        .filter(|e| e["event"] == "task-started")
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        started_after,
        Vec::<&str>::new(),
        "--fail-fast: nothing starts after the failure\n{run}"
    );
    for id in ["task:a-ok", "task:b-ok", "task:c-ok"] {
        if !started_before.contains(&id) {
            assert_eq!(run.status(id), "skipped", "{run}");
            assert_eq!(
                run.task(id)["error"],
                "not started: the run stopped at the first failure (--fail-fast)"
            );
        }
    }
    assert_eq!(run.status("task:d-after"), "skipped");
    let (ran, cached, failed, skipped) = run.counts();
    assert_eq!((cached, failed), (0, 1));
    assert_eq!(ran as usize, started_before.len() - 1, "{run}");
    assert_eq!(ran + skipped, 4, "{run}");
    assert_eq!(run.finished()["success"], false);
}

/// An `argv` program is found on PATH as `execvp` finds it: a directory of its name and a file
/// without an execute bit are passed over, and an executable script without a `#!` line runs
/// through `/bin/sh` (execvp's fallback, which a spawn of the found path alone loses: "Exec
/// format error").
#[test]
fn argv_programs_are_found_on_path_as_execvp_finds_them() {
    use std::os::unix::fs::PermissionsExt;
    let repo = Repo::in_sandbox(
        "[tasks.p]\nargv = [\"prog\", \"one\"]\noutputs = [\"out.txt\"]\n",
        &[],
    );
    let bin = repo.sandbox().join("bin");
    std::fs::create_dir_all(bin.join("a/prog")).unwrap();
    std::fs::create_dir_all(bin.join("b")).unwrap();
    std::fs::create_dir_all(bin.join("c")).unwrap();
    std::fs::write(bin.join("b/prog"), "#!/bin/sh\necho wrong > out.txt\n").unwrap();
    std::fs::set_permissions(bin.join("b/prog"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(bin.join("c/prog"), "echo \"c $1\" > out.txt\n").unwrap();
    std::fs::set_permissions(bin.join("c/prog"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}:{}:/usr/bin:/bin",
        bin.join("a").display(),
        bin.join("b").display(),
        bin.join("c").display()
    );
    let run = repo.json_env(&["task"], &[("PATH", &path)]);
    run.assert_code(0);
    assert_eq!(run.status("task:p"), "ran", "{run}");
    assert_eq!(repo.read("out.txt"), "c one\n");
}

/// The summary of a build in which many tasks failed names the first few and counts the others
/// (each failure has its own line as it happens), rather than all of them on one line.
#[test]
fn the_summary_of_many_failures_names_a_few_and_counts_the_rest() {
    let mut config = String::new();
    for i in 0..8 {
        config.push_str(&format!(
            "[tasks.bad{i}]\nrun = \"exit 3\"\noutputs = [\"out/{i}.txt\"]\n"
        ));
    }
    let repo = Repo::new(&config, &[]);
    let human = repo.human(&["task", "-j", "2"]);
    human.assert_code(1);
    let summary = human
        .stderr
        .lines()
        .find(|line| line.contains("error: build failed:"))
        .unwrap_or_else(|| panic!("no summary: {human}"));
    assert_eq!(
        summary
            .matches("(command exited with exit status: 3)")
            .count(),
        5,
        "{summary}"
    );
    assert!(
        summary.ends_with(", and 3 more (each named above)"),
        "{summary}"
    );
    for i in 0..8 {
        assert!(
            human
                .stderr
                .contains(&format!("error: task:bad{i} failed: ")),
            "{human}"
        );
    }
}
