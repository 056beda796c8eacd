//! Interruption (issue 8 item 9): SIGINT or SIGTERM to `xtask` during a build stops every
//! running task's whole process tree, starts nothing new, caches and records nothing of the
//! stopped tasks, prints one summary line and exits 130 (SIGINT) or 143 (SIGTERM).

use crate::common;

use std::process::{Child, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::Repo;

/// `slow` and `tree` run side by side (`-j 2`) after `quick`; `tree`'s sleep is a grandchild
/// of the task's shell. Each test gives its sleeps unique durations, so it can find its own
/// processes in `/proc/*/cmdline`.
fn bundle(slow: &str, tree: &str) -> String {
    format!(
        r#"
[tasks.quick]
run = "echo q > quick.out"
outputs = ["quick.out"]

[tasks.slow]
run = "echo started > slow.marker; sleep {slow}; echo done > slow.out"
outputs = ["slow.out"]
deps = ["quick"]

[tasks.tree]
run = "echo started > tree.marker; sh -c 'sleep {tree} & wait'; echo done > tree.out"
outputs = ["tree.out"]
deps = ["quick"]

[tasks.after]
run = "echo a > after.out"
outputs = ["after.out"]
deps = ["slow"]
"#
    )
}

/// Live processes (pid, command line) working in `repo` whose command line holds one of
/// `markers`.
fn processes_with(repo: &Repo, markers: &[&str]) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let dir = repo.path().canonicalize().expect("repository path");
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_string();
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let state = stat.rsplit_once(") ")?.1.split(' ').next()?.to_string();
            if state == "Z" || state == "X" {
                return None;
            }
            if !std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(&dir))
            {
                return None;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            markers
                .iter()
                .any(|marker| cmdline.contains(marker))
                .then_some((name, cmdline))
        })
        .collect()
}

fn wait_for_markers(repo: &Repo, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(repo.exists("slow.marker") && repo.exists("tree.marker")) {
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "the build ended before both tasks started"
        );
        assert!(Instant::now() < deadline, "the tasks never started");
        sleep(Duration::from_millis(10));
    }
}

/// Runs the build, sends `signal` once both long tasks run, and checks everything the issue
/// asks for; returns the build's output.
fn interrupt(signal: i32, json: bool, slow: &str, tree: &str) -> (Repo, std::process::Output) {
    let repo = Repo::new(&bundle(slow, tree), &[]);
    let mut command = repo.command();
    if json {
        command.args(["--message-format", "json"]);
    }
    let mut child = command
        .args(["task", "-j", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xtask");
    wait_for_markers(&repo, &mut child);
    // The task shells, `tree`'s inner shell and both sleeps (the markers are written just
    // before the sleeps start).
    let sleepers = [format!("sleep {slow}"), format!("sleep {tree}")];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let running = processes_with(&repo, &[slow, tree]);
        let all = sleepers.iter().all(|sleeper| {
            running
                .iter()
                .any(|(_, cmdline)| cmdline.trim_end() == sleeper)
        });
        if all {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{sleepers:?} never all ran: {running:?}"
        );
        sleep(Duration::from_millis(10));
    }
    // SAFETY: signals the child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let output = child.wait_with_output().expect("wait for xtask");
    assert_eq!(
        output.status.code(),
        Some(128 + signal),
        "exit code\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Every process of both tasks is gone: the sleeps, and the shell between.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_with(&repo, &[slow, tree]);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still running: {left:?}");
        sleep(Duration::from_millis(20));
    }
    assert!(!repo.exists("slow.out") && !repo.exists("tree.out"));
    assert!(!repo.exists("after.out"), "nothing new started");

    // Nothing of the stopped tasks was cached or recorded: the next run runs them again.
    let plan = repo.json(&["task", "--dry-run"]);
    plan.assert_code(0);
    for event in plan.events("plan") {
        let expected = match event["id"].as_str().unwrap() {
            "task:quick" => "up-to-date",
            "task:after" => "depends-on-changes",
            _ => "run",
        };
        assert_eq!(event["expected"], expected, "{plan}");
        if expected == "run" {
            assert_eq!(
                common::strings(&event["reasons"]),
                ["no previous run recorded"],
                "{plan}"
            );
        }
    }
    (repo, output)
}

#[test]
fn sigint_stops_every_running_task_tree_and_exits_130() {
    let (_repo, output) = interrupt(libc::SIGINT, false, "30.5", "31.5");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .lines()
            .any(|line| line == "interrupted: 1 ran, 2 stopped"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Stopped task:slow (interrupted)"),
        "{stderr}"
    );
    assert!(!stderr.contains("Running task:after"), "{stderr}");
}

#[test]
fn sigterm_stops_every_running_task_tree_and_exits_143() {
    let (repo, output) = interrupt(libc::SIGTERM, true, "30.6", "31.6");
    let run = common::Run::parse_json(&["task"], output);
    let finished = run.finished();
    assert_eq!(finished["interrupted"], true, "{run}");
    assert_eq!(finished["success"], false, "{run}");
    assert_eq!(run.counts(), (1, 0, 0, 1), "{run}");
    assert_eq!(finished["stopped"], 2, "{run}");
    let interrupted = run.events("interrupted");
    assert_eq!(interrupted.len(), 1, "{run}");
    assert_eq!(
        interrupted[0],
        &serde_json::json!({
            "event": "interrupted",
            "signal": "SIGTERM",
            "exit_code": 143,
            "ran": 1,
            "cached": 0,
            "stopped": 2,
        })
    );
    assert_eq!(run.status("task:slow"), "stopped");
    assert_eq!(run.status("task:tree"), "stopped");
    assert_eq!(run.status("task:after"), "skipped");
    assert_eq!(
        run.task("task:after")["error"],
        "not started: the run was interrupted"
    );

    // A second interrupted run: the cached task counts as cached in the summary line.
    std::fs::remove_file(repo.join("slow.marker")).unwrap();
    std::fs::remove_file(repo.join("tree.marker")).unwrap();
    let mut child = repo
        .command()
        .args(["task", "-j", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xtask");
    wait_for_markers(&repo, &mut child);
    // SAFETY: signals the child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let output = child.wait_with_output().expect("wait");
    assert_eq!(output.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .lines()
            .any(|line| line == "interrupted: 0 ran, 1 cached, 2 stopped"),
        "{stderr}"
    );
}

#[test]
fn sigterm_during_a_restore_stops_it_and_leaves_no_partial_output() {
    // A 96 MiB output: its restore takes long enough to be caught in the middle (the staging
    // area holds the partial copy meanwhile).
    let repo = Repo::new(
        "[tasks.big]\nrun = \"mkdir -p out && head -c 100663296 /dev/zero > out/big.bin\"\ninputs = [\"src/in.txt\"]\noutputs = [\"out/**\"]\n",
        &[("src/in.txt", "in\n")],
    );
    repo.json(&["task"]).assert_code(0);
    repo.remove("out/big.bin");
    let mut child = repo
        .command()
        .args(["--message-format", "json", "task"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xtask");
    let staging = repo.join(".xbundle/tmp");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let copying = std::fs::read_dir(&staging).is_ok_and(|mut entries| {
            entries.any(|entry| entry.is_ok_and(|e| e.metadata().is_ok_and(|m| m.len() > 0)))
        });
        if copying {
            break;
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the restore finished before it was seen"
        );
        assert!(Instant::now() < deadline, "no restore seen");
        sleep(Duration::from_millis(2));
    }
    // SAFETY: signals the child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let run = common::Run::parse_json(&["task"], child.wait_with_output().expect("wait"));
    run.assert_code(143);
    assert_eq!(run.status("task:big"), "stopped", "{run}");
    assert!(!repo.exists("out/big.bin"), "no partial output");
    assert_eq!(
        std::fs::read_dir(&staging).unwrap().count(),
        0,
        "the partial copy is removed"
    );
    // The next run restores it whole.
    let run = repo.json(&["task"]);
    run.assert_code(0);
    assert_eq!(run.status("task:big"), "cached", "{run}");
    assert_eq!(
        std::fs::metadata(repo.join("out/big.bin")).unwrap().len(),
        100663296
    );
}

/// SIGKILL leaves xtask no chance to stop anything: its reaper (see `engine::cancel`) does, for
/// every process of every running task (the grandchild sleep of `tree` included), whether only
/// `xtask` is killed or its whole process group (as a CI runner does).
#[test]
fn sigkill_of_xtask_takes_every_running_task_tree_with_it() {
    use std::os::unix::process::CommandExt;
    for (whole_group, slow, tree) in [(false, "61.31", "61.32"), (true, "61.33", "61.34")] {
        let repo = Repo::new(&bundle(slow, tree), &[]);
        let mut child = repo
            .command()
            .args(["task", "-j", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn xtask");
        wait_for_markers(&repo, &mut child);
        let sleepers = [format!("sleep {slow}"), format!("sleep {tree}")];
        let deadline = Instant::now() + Duration::from_secs(20);
        while !sleepers.iter().all(|sleeper| {
            processes_with(&repo, &[slow, tree])
                .iter()
                .any(|(_, cmdline)| cmdline.trim_end() == sleeper)
        }) {
            assert!(Instant::now() < deadline, "{sleepers:?} never all ran");
            sleep(Duration::from_millis(10));
        }
        let target = if whole_group {
            -(child.id() as i32)
        } else {
            child.id() as i32
        };
        // SAFETY: signals the child (or its group) this test spawned and has not reaped.
        assert_eq!(unsafe { libc::kill(target, libc::SIGKILL) }, 0);
        child.wait().expect("reap xtask");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = processes_with(&repo, &[slow, tree]);
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "whole group {whole_group}: still running after xtask was killed: {left:?}"
            );
            sleep(Duration::from_millis(20));
        }
    }
}
