//! Concurrent invocations on one workspace are safe (DESIGN.md §4.2).

mod common;

use std::process::{Child, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{Repo, Run, assert_same_tree};

fn apply_variant(repo: &Repo, variant: usize) {
    repo.write("src/seed.txt", format!("seed {variant}\n"));
    repo.write(
        "src/lib/words.txt",
        ["pear\napple\n", "fig\nkiwi\n", "plum\n"][variant],
    );
}

fn spawn(repo: &Repo, jobs: &str) -> Child {
    repo.command()
        .args(["-j", jobs, "--message-format", "json", "task"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xtask")
}

fn finish(child: Child, jobs: &str) -> Run {
    let args = ["-j", jobs, "task"];
    Run::parse_json(&args, child.wait_with_output().expect("wait"))
}

#[test]
fn two_simultaneous_builds_both_succeed_with_clean_outputs() {
    let variants = [0, 1, 2, 0, 1];
    let references: Vec<common::Snapshot> = (0..3)
        .map(|variant| {
            let clean = Repo::fixture("pipeline");
            apply_variant(&clean, variant);
            clean.json(&["task"]).assert_code(0);
            clean.snapshot()
        })
        .collect();

    // Starts without any state: both processes create `.xbundle` at the same time.
    let repo = Repo::fixture("pipeline");
    for (round, &variant) in variants.iter().enumerate() {
        apply_variant(&repo, variant);
        let first = spawn(&repo, "2");
        let second = spawn(&repo, "1");
        let first = finish(first, "2");
        let second = finish(second, "1");
        for run in [&first, &second] {
            assert_eq!(run.code, 0, "round {round}\n{run}");
            assert_eq!(run.finished()["success"], true);
            let (ran, cached, failed, skipped) = run.counts();
            assert_eq!((ran + cached, failed, skipped), (10, 0, 0), "{run}");
        }
        // Whoever ran a task, both runs agree on what every task produced.
        for id in first.statuses().keys() {
            assert_eq!(
                first.task(id)["output"],
                second.task(id)["output"],
                "round {round}: {id}"
            );
        }
        assert_same_tree(
            &repo.snapshot(),
            &references[variant],
            &format!("round {round} (variant {variant})"),
        );
        repo.json(&["cache", "verify"]).assert_code(0);
    }
}

#[test]
fn cache_stats_during_a_build_does_not_break_it() {
    let bundle = r#"
[tasks.big]
run = "mkdir -p out && yes stats | head -c 16000000 > out/big.bin"
outputs = ["out/big.bin"]
"#;
    let repo = Repo::new(bundle, &[]);
    let build = spawn(&repo, "1");
    // Wait until the build is storing its output (a temporary file exists in the CAS).
    let cas = repo.join(".xbundle/cache/cas");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let storing = std::fs::read_dir(&cas).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        });
        if storing {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the build never stored its output"
        );
        sleep(Duration::from_micros(500));
    }
    let stats = repo.json(&["cache", "stats"]);
    stats.assert_code(0);
    let build = finish(build, "1");
    assert_eq!(build.code, 0, "{build}");
    assert_eq!(build.status("task:big"), "ran", "{build}");
    repo.json(&["cache", "verify"]).assert_code(0);
}
