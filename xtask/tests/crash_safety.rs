//! Crash safety: a build killed with SIGKILL at any moment leaves nothing that a later build
//! trusts wrongly (DESIGN.md §4.2).
//!
//! The fixture is `fixtures/pipeline` (ten tasks that each take a little time, several with more
//! than one output, one with a 300 kB output). Each iteration switches the inputs to one of three
//! variants (so tasks run, or are restored from the cache, or have stale outputs removed),
//! sometimes deletes an output or passes `--force`, starts a build, kills it after a random delay
//! spread over a clean build's duration, then runs a normal build. That build must succeed and
//! leave a tree byte-identical to a clean build of the same variant in a separate copy, and
//! `cache verify` must find nothing wrong (a `.tmp-*` file left by the kill is never trusted).
//!
//! Half of the kills hit every process of the build (its process group and the process groups
//! its task commands run in, as when a CI runner is killed); the others hit only the `xtask`
//! process, and the test waits for the orphaned task commands to finish before the next build
//! (as when the build tool alone dies). Task commands are found by their working directory,
//! inside the fixture repository.
//!
//! Two schedules: one kills only `--force` builds (every task of the killed build runs and
//! stores its results), the other kills any build, including ones restoring from the cache.
//!
//! Replay a failure with `XBUNDLE_TEST_SEED=<seed> cargo test -p xtask --test integration crash_safety::`.

use crate::common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{Repo, Rng, Snapshot, assert_same_tree};

const ITERATIONS: usize = 20;
const VARIANTS: u64 = 3;

/// Output files a variant's clean build has (before deletion by an iteration); `docs/html/extra.html`
/// exists only in variant 2.
const OUTPUTS: [&str; 16] = [
    "out/gen/a.txt",
    "out/gen/b.txt",
    "out/gen/c.txt",
    "out/big.bin",
    "out/upper.txt",
    "out/count.txt",
    "out/lib/sorted.txt",
    "out/lib/reversed.txt",
    "out/merge.txt",
    "out/big.sum",
    "docs/html/index.html",
    "docs/html/extra.html",
    "out/pkg/manifest.txt",
    "out/pkg/docs.html",
    "out/pkg/big.bin",
    "out/final.txt",
];

/// Writes the inputs of variant `variant` (0, 1 or 2) into the tree.
fn apply_variant(repo: &Repo, variant: u64) {
    let (seed, words, index, extra) = match variant {
        0 => ("alpha\n", "pear\napple\nfig\n", "# Home\nwelcome\n", None),
        1 => (
            "beta\ngamma\n",
            "pear\napple\nfig\n",
            "# Home\nwelcome\n",
            None,
        ),
        2 => (
            "alpha\n",
            "kiwi\nbanana\n",
            "# Home v2\nwelcome back\n",
            Some("# Extra\nmore\n"),
        ),
        _ => unreachable!(),
    };
    repo.write("src/seed.txt", seed);
    repo.write("src/lib/words.txt", words);
    repo.write("docs/index.md", index);
    match extra {
        Some(text) => repo.write("docs/extra.md", text),
        None => {
            if repo.exists("docs/extra.md") {
                repo.remove("docs/extra.md");
            }
        }
    }
}

/// Clean builds of each variant, each in its own copy of the fixture.
struct References {
    trees: Vec<Snapshot>,
    /// Wall time of the fastest clean build (every task runs).
    full_build: Duration,
    /// Wall time of a build that restores a variant from the cache.
    restore_build: Duration,
}

fn references() -> References {
    let mut trees = Vec::new();
    let mut full_build = Duration::MAX;
    let mut last = None;
    for variant in 0..VARIANTS {
        let repo = Repo::fixture("pipeline");
        apply_variant(&repo, variant);
        let started = Instant::now();
        let run = repo.json(&["task"]);
        full_build = full_build.min(started.elapsed());
        run.assert_code(0);
        assert_eq!(
            run.counts(),
            (10, 0, 0, 0),
            "clean build runs every task\n{run}"
        );
        trees.push(repo.snapshot());
        last = Some(repo);
    }
    assert!(
        trees[2].0.contains_key("docs/html/extra.html"),
        "variant 2 has an extra output"
    );
    assert_ne!(trees[0], trees[1]);
    assert_ne!(trees[0], trees[2]);
    // How long switching back to a variant the cache holds takes.
    let repo = last.expect("three variants");
    apply_variant(&repo, 0);
    repo.json(&["task"]).assert_code(0);
    apply_variant(&repo, 2);
    let started = Instant::now();
    let run = repo.json(&["task"]);
    let restore_build = started.elapsed();
    run.assert_code(0);
    assert_eq!(run.counts().0, 0, "switching back restores\n{run}");
    References {
        trees,
        full_build,
        restore_build,
    }
}

/// Is any process of the group `pgid` still alive (running, not a zombie)? Read from `/proc`:
/// `kill(-pgid, 0)` also counts zombies, which the machine's init may take seconds to reap.
fn group_alive(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let is_pid = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid {
            return false;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" && fields[0] != "X"
    })
}

/// Live (not zombie) processes whose working directory is inside `dir`, with their process
/// groups: the task commands of a build of the repository at `dir`.
fn processes_in(dir: &Path) -> Vec<(i32, i32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let dir = dir.canonicalize().expect("repository path");
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cwd = std::fs::read_link(entry.path().join("cwd")).ok()?;
            if !cwd.starts_with(&dir) {
                return None;
            }
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.len() < 3 || fields[0] == "Z" || fields[0] == "X" {
                return None;
            }
            Some((pid, fields[2].parse().ok()?))
        })
        .collect()
}

/// Sends SIGKILL to the build, or to every process of it (its group and its commands' groups).
/// A build that already finished is no longer there to kill, which is fine.
fn kill(pid: i32, whole_build: bool, repo: &Path) {
    let mut targets = vec![if whole_build { -pid } else { pid }];
    if whole_build {
        targets.extend(processes_in(repo).into_iter().map(|(_, group)| -group));
    }
    for target in targets {
        // SAFETY: sends SIGKILL to a process (group) of the build this test spawned.
        let result = unsafe { libc::kill(target, libc::SIGKILL) };
        if result != 0 {
            let error = std::io::Error::last_os_error();
            assert_eq!(
                error.raw_os_error(),
                Some(libc::ESRCH),
                "kill({target}, SIGKILL): {error}"
            );
        }
    }
}

/// Whether anything of a killed build (its group, or a command in the repository) still runs.
fn build_alive(pid: i32, repo: &Path) -> bool {
    group_alive(pid) || !processes_in(repo).is_empty()
}

/// Kills only forced builds: every task of the killed build runs and stores its results (no
/// restore happens while a kill can land).
#[test]
fn sigkill_during_forced_rebuilds_never_leaves_a_wrong_tree() {
    crash_loop(common::seed(0xf0ce_d00d), true);
}

/// Kills any build: running, restoring from the cache, removing stale outputs.
#[test]
fn sigkill_at_random_moments_never_leaves_a_wrong_tree() {
    crash_loop(common::seed(0x5eed_c0de), false);
}

/// The kill loop; `forced_only` makes every killed build a `--force` build.
fn crash_loop(seed: u64, forced_only: bool) {
    let mut rng = Rng::new(seed);
    let references = references();

    let repo = Repo::fixture("pipeline");
    let mut killed_while_running = 0;
    let mut follow_up_ran = 0;
    let mut follow_up_cached = 0;
    let mut variant = 0;
    let mut built = [false; VARIANTS as usize];
    // Kill windows for a build that runs everything and for one that restores; measured on
    // clean builds, and shrunk whenever a build finished before its kill (the machine got
    // faster than when it was measured).
    let mut windows = [references.full_build, references.restore_build];
    for iteration in 0..ITERATIONS {
        // Always switch: the killed build has work to do (run, restore, remove stale outputs).
        variant = (variant + 1 + rng.below(VARIANTS - 1)) % VARIANTS;
        apply_variant(&repo, variant);
        let mut deleted = None;
        if rng.chance(30) {
            let path = OUTPUTS[rng.below(OUTPUTS.len() as u64) as usize];
            if repo.exists(path) {
                repo.remove(path);
                deleted = Some(path);
            }
        }
        let force = forced_only || rng.chance(40);
        let jobs = [1, 2, 4][rng.below(3) as usize].to_string();
        // Spread the kill over the expected duration of this build.
        // 0: everything runs (forced, or a variant this tree never built); 1: a restore.
        let kind = usize::from(!force && built[variant as usize]);
        let window_us = (windows[kind].as_micros() as u64 * 12 / 10).max(1000);
        let delay = Duration::from_micros(rng.below(window_us + 1));
        built[variant as usize] = true;
        let whole_group = rng.chance(50);
        let context = format!(
            "seed {seed} (forced only: {forced_only}) iteration {iteration}: variant {variant}, deleted {deleted:?}, \
             force {force}, -j {jobs}, kill after {delay:?}, whole group {whole_group}"
        );

        let mut command = repo.command();
        command
            .args(["--message-format", "json", "task", "-j", &jobs])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        if force {
            command.arg("--force");
        }
        let mut child = command.spawn().expect("spawn xtask");
        let pid = child.id() as i32;
        sleep(delay);
        if child.try_wait().expect("try_wait").is_none() {
            killed_while_running += 1;
        } else {
            windows[kind] = windows[kind] * 3 / 4;
        }
        kill(pid, whole_group, repo.path());
        child.wait().expect("reap the killed build");
        // Wait until no command of the killed build can still write into the tree.
        let deadline = Instant::now() + Duration::from_secs(20);
        while build_alive(pid, repo.path()) {
            assert!(
                Instant::now() < deadline,
                "{context}: task commands still running"
            );
            sleep(Duration::from_millis(5));
        }

        if iteration % 3 == 0 {
            // What a kill leaves is never corrupt: every entry is published whole.
            let verify = repo.json(&["cache", "verify"]);
            assert_eq!(
                verify.code, 0,
                "{context}: cache verify right after the kill\n{verify}"
            );
            let report = &verify.events("cache-verify")[0]["report"];
            assert_eq!(report["problems"], serde_json::json!([]), "{context}");
        }

        let follow_up = repo.json(&["task"]);
        assert_eq!(follow_up.code, 0, "{context}: follow-up build\n{follow_up}");
        assert_eq!(follow_up.finished()["success"], true, "{context}");
        let (ran, cached, failed, skipped) = follow_up.counts();
        assert_eq!((failed, skipped), (0, 0), "{context}\n{follow_up}");
        assert_eq!(ran + cached, 10, "{context}\n{follow_up}");
        follow_up_ran += ran;
        follow_up_cached += cached;
        for warning in follow_up.warnings() {
            assert!(
                !warning.contains("corrupt"),
                "{context}: a kill left a corrupt cache entry: {warning}"
            );
        }
        assert_same_tree(
            &repo.snapshot(),
            &references.trees[variant as usize],
            &format!("{context}: tree after the follow-up build"),
        );

        let verify = repo.json(&["cache", "verify"]);
        assert_eq!(verify.code, 0, "{context}: cache verify\n{verify}");
        let report = &verify.events("cache-verify")[0]["report"];
        assert_eq!(report["problems"], serde_json::json!([]), "{context}");
    }
    // The schedule must actually interrupt builds and exercise both outcomes of the follow-up.
    assert!(
        killed_while_running >= ITERATIONS / 3,
        "only {killed_while_running} of {ITERATIONS} kills hit a running build"
    );
    assert!(follow_up_ran > 0, "no follow-up build had work left");
    assert!(follow_up_cached > 0, "no follow-up build used the cache");
}

/// Every `.tmp-*` file under `dir` (the tree and `.xbundle`), as paths relative to `dir`.
fn temp_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                stack.push(path);
            } else if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                found.push(
                    path.strip_prefix(dir)
                        .expect("below dir")
                        .display()
                        .to_string(),
                );
            }
        }
    }
    found.sort();
    found
}

/// The focused, deterministic form of what the random test above finds: kill a build exactly
/// while it restores a large output from the cache (a temporary file of the restore exists),
/// then build again. The tree must end up as a clean build leaves it, with no temporary file.
#[test]
fn sigkill_during_a_restore_leaves_no_temporary_file_in_the_tree() {
    let bundle = r#"
[tasks.big]
run = "mkdir -p out && yes restore-me | head -c 16000000 > out/big.bin && echo small > out/small.txt"
outputs = ["out/big.bin", "out/small.txt"]
"#;
    let repo = Repo::new(bundle, &[]);
    repo.json(&["task"]).assert_code(0);
    let clean = repo.snapshot();
    assert!(temp_files(repo.path()).is_empty());

    repo.remove("out/big.bin");
    let mut child = repo
        .command()
        .args(["--message-format", "json", "task"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn xtask");
    let pid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(30);
    let caught = loop {
        let temps = temp_files(repo.path());
        if !temps.is_empty() {
            kill(pid, true, repo.path());
            break temps;
        }
        if child.try_wait().expect("try_wait").is_some() {
            panic!("the restore finished before a temporary file was seen");
        }
        assert!(Instant::now() < deadline, "no restore seen");
        sleep(Duration::from_micros(500));
    };
    child.wait().expect("reap the killed build");
    while build_alive(pid, repo.path()) {
        sleep(Duration::from_millis(5));
    }

    let follow_up = repo.json(&["task"]);
    follow_up.assert_code(0);
    assert_eq!(follow_up.status("task:big"), "cached", "{follow_up}");
    assert_same_tree(
        &repo.snapshot(),
        &clean,
        &format!("after a kill during the restore (temporary files then: {caught:?})"),
    );
    let verify = repo.json(&["cache", "verify"]);
    verify.assert_code(0);
    assert_eq!(temp_files(repo.path()), Vec::<String>::new());
}
