//! Concurrent invocations on one workspace are safe (DESIGN.md §4.2).

use crate::common;

use std::process::{Child, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{Repo, Run, assert_same_tree};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

fn apply_variant(repo: &Repo, variant: usize) {
    repo.write("src/seed.txt", format!("seed {variant}\n"));
    repo.write(
        "src/lib/words.txt",
        ["pear\napple\n", "fig\nkiwi\n", "plum\n"][variant],
    );
}

fn spawn(repo: &Repo, jobs: &str) -> Child {
    repo.command()
        .args(["--message-format", "json", "task", "-j", jobs])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xtask")
}

fn finish(child: Child, jobs: &str) -> Run {
    let args = ["task", "-j", jobs];
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
    // The output has a second name (`data/big.bin`), so it is copied into the CAS, not linked:
    // the build then has a temporary file there for a while (what `stats` must step around).
    let bundle = r#"
[tasks.big]
run = "mkdir -p out data && yes stats | head -c 16000000 > data/big.bin && ln -f data/big.bin out/big.bin"
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

/// Issue 8 item 6: `gc` run from one workspace must not delete blobs that a build in another
/// workspace sharing the cache (`XBUNDLE_CACHE_DIR`) is writing or restoring.
#[test]
fn gc_in_a_loop_beside_builds_in_another_workspace_sharing_the_cache() {
    const TASKS: usize = 120;
    let mut bundle = String::new();
    for i in 0..TASKS {
        bundle.push_str(&format!(
            "[tasks.t{i}]\nrun = \"mkdir -p out && echo {i} > out/t{i}.txt\"\noutputs = [\"out/t{i}.txt\"]\n\n"
        ));
    }
    let shared = Repo::empty();
    let cache = shared.path().join("cache");
    let env = [("XBUNDLE_CACHE_DIR", cache.to_str().unwrap())];
    let builder = Repo::new(&bundle, &[]);
    let collector = Repo::new(&bundle, &[]);

    // gc loops in the collector's workspace while `build` runs in another workspace.
    let beside_gc = |max_size: &'static str, build: &dyn Fn() -> Run| -> (Run, usize) {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicUsize::new(0));
        let gc = {
            let (stop, rounds) = (Arc::clone(&stop), Arc::clone(&rounds));
            let mut command = collector.command();
            command.env("XBUNDLE_CACHE_DIR", &cache).args([
                "--message-format",
                "json",
                "cache",
                "gc",
                "--max-size",
                max_size,
            ]);
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let output = command.output().expect("run gc");
                    assert!(output.status.success(), "gc failed: {output:?}");
                    rounds.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        // Let gc get going before the build starts.
        while rounds.load(Ordering::SeqCst) == 0 {
            sleep(Duration::from_millis(5));
        }
        let run = build();
        stop.store(true, Ordering::SeqCst);
        gc.join().expect("the gc loop");
        (run, rounds.load(Ordering::SeqCst))
    };

    // Writing: every entry the build publishes names blobs that are there.
    let (run, rounds) = beside_gc("1G", &|| builder.json_env(&["task", "-j", "2"], &env));
    run.assert_code(0);
    assert_eq!(run.counts(), (TASKS as u64, 0, 0, 0), "{run}");
    assert!(rounds >= 2, "gc ran {rounds} time(s)");
    let verify = builder.json_env(&["cache", "verify"], &env);
    assert_eq!(
        verify.events("cache-verify")[0]["report"]["problems"],
        serde_json::json!([]),
        "{verify}"
    );
    verify.assert_code(0);

    // Restoring: a fresh checkout restores everything the build stored, even with gc looping.
    let checkout = Repo::new(&bundle, &[]);
    let (run, _) = beside_gc("1G", &|| checkout.json_env(&["task", "-j", "2"], &env));
    run.assert_code(0);
    assert_eq!(run.counts(), (0, TASKS as u64, 0, 0), "{run}");
    assert!(problems(&run).is_empty(), "{run}");
    assert_same_tree(
        &checkout.snapshot(),
        &builder.snapshot(),
        "restored outputs",
    );

    // Evicting everything beside restores: whatever gc removes, a build either restores
    // whole entries or runs the tasks; outputs are always right and nothing is reported broken.
    let second = Repo::new(&bundle, &[]);
    let (run, _) = beside_gc("0", &|| second.json_env(&["task", "-j", "2"], &env));
    run.assert_code(0);
    assert!(problems(&run).is_empty(), "{run}");
    assert_same_tree(
        &second.snapshot(),
        &builder.snapshot(),
        "outputs beside gc to 0",
    );
    builder.json_env(&["cache", "verify"], &env).assert_code(0);
}

#[test]
fn builds_in_two_workspaces_appending_to_one_cache_at_once_lose_nothing() {
    // Both append to the shared cache's pack and index at the same time (each holds the store
    // lock shared); a third workspace then restores every task of both.
    const TASKS: usize = 80;
    let bundle: String = (0..TASKS)
        .map(|i| {
            format!(
                "[tasks.t{i}]\nrun = \"mkdir -p out && cat src/seed.txt > out/t{i}.txt && echo {i} >> out/t{i}.txt\"\ninputs = [\"src/seed.txt\"]\noutputs = [\"out/t{i}.txt\"]\n\n"
            )
        })
        .collect();
    let shared = Repo::empty();
    let cache = shared.path().join("cache");
    let repos: Vec<Repo> = ["one\n", "two\n"]
        .iter()
        .map(|seed| Repo::new(&bundle, &[("src/seed.txt", seed)]))
        .collect();
    let children: Vec<Child> = repos
        .iter()
        .map(|repo| {
            repo.command()
                .env("XBUNDLE_CACHE_DIR", &cache)
                .args(["--message-format", "json", "task", "-j", "4"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn xtask")
        })
        .collect();
    for child in children {
        let run = finish(child, "4");
        run.assert_code(0);
        assert_eq!(run.counts(), (TASKS as u64, 0, 0, 0), "{run}");
    }
    let env = [("XBUNDLE_CACHE_DIR", cache.to_str().unwrap())];
    for (seed, built) in ["one\n", "two\n"].iter().zip(&repos) {
        let checkout = Repo::new(&bundle, &[("src/seed.txt", seed)]);
        let run = checkout.json_env(&["task"], &env);
        run.assert_code(0);
        assert_eq!(run.counts(), (0, TASKS as u64, 0, 0), "{run}");
        assert!(problems(&run).is_empty(), "{run}");
        assert_same_tree(&checkout.snapshot(), &built.snapshot(), "restored outputs");
    }
    let verify = repos[0].json_env(&["cache", "verify"], &env);
    verify.assert_code(0);
    assert_eq!(
        verify.events("cache-verify")[0]["report"]["actions_checked"],
        2 * TASKS as u64,
        "{verify}"
    );
}

/// The warnings of a run, but for waiting on a lock: waiting is what the locks are for.
fn problems(run: &Run) -> Vec<String> {
    run.warnings()
        .into_iter()
        .filter(|warning| !warning.starts_with("blocking: waiting"))
        .collect()
}
