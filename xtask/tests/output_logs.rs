//! Live, attributed task output (issue 11 item 3): a task's output streams while it runs, each
//! line prefixed with the task id; `--output-logs full|new-only|errors-only|none` chooses whose
//! output is shown; `--log-order grouped` prints each task's lines together (the default when
//! stderr is not a terminal), in GitHub Actions inside `::group::`; output replayed from the
//! cache is marked; an up-to-date task prints nothing; an interrupted run loses nothing.
//!
//! Synchronisation is through files the tasks wait for, never through sleeps.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::Repo;

/// Generous bound on waiting for one line, so a broken build fails instead of hanging.
const LINE_DEADLINE: Duration = Duration::from_secs(60);

/// The child's lines on one stream, read by a thread as they come.
fn lines_of(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads lines until one satisfies `wanted`; returns the lines read (the last one matched).
/// Before failing on the deadline, `unblock` lets the child finish.
fn read_until(
    lines: &mpsc::Receiver<String>,
    wanted: impl Fn(&str) -> bool,
    unblock: impl Fn(),
) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(LINE_DEADLINE) {
            Ok(line) => {
                let done = wanted(&line);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(_) => {
                unblock();
                panic!("the line never came while the task ran; read so far: {seen:#?}");
            }
        }
    }
}

fn finish(mut child: Child, lines: mpsc::Receiver<String>) -> (i32, Vec<String>) {
    let status = child.wait().expect("wait for xtask");
    let rest: Vec<String> = lines.iter().collect();
    (status.code().expect("exited"), rest)
}

const WAITER: &str = r#"
[tasks.x]
run = "echo first; while [ ! -e go ]; do sleep 0.05; done; echo second; echo done > x.out"
outputs = ["x.out"]
"#;

#[test]
fn a_tasks_output_streams_while_it_runs_prefixed_with_its_id() {
    let repo = Repo::new(WAITER, &[]);
    let mut child = repo
        .command()
        .args(["task", "--log-order", "stream"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xtask");
    let lines = lines_of(child.stderr.take().unwrap());
    let go = || repo.write("go", "");
    // `first` arrives while the task still waits for `go`.
    let seen = read_until(&lines, |line| line == "task:x: first", go);
    assert!(!repo.exists("go"));
    assert!(
        !seen.iter().any(|line| line.contains("second")),
        "{seen:#?}"
    );
    go();
    let (code, rest) = finish(child, lines);
    assert_eq!(code, 0, "{rest:#?}");
    assert!(
        rest.iter().any(|line| line == "task:x: second"),
        "{rest:#?}"
    );
    assert!(
        !rest.iter().any(|line| line.ends_with(": first")),
        "nothing is printed twice: {rest:#?}"
    );
}

#[test]
fn json_output_events_are_emitted_live() {
    let repo = Repo::new(WAITER, &[]);
    let mut child = repo
        .command()
        .args(["--message-format", "json", "task"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn xtask");
    let lines = lines_of(child.stdout.take().unwrap());
    let is_output = |line: &str, text: &str| {
        let event: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        event["event"] == "task-output" && event["text"] == text
    };
    let seen = read_until(
        &lines,
        |line| is_output(line, "first\n"),
        || repo.write("go", ""),
    );
    let event: serde_json::Value = serde_json::from_str(seen.last().unwrap()).unwrap();
    assert_eq!(event["id"], "task:x");
    assert_eq!(event["stream"], "stdout");
    assert_eq!(event["replayed"], false);
    assert!(!seen.iter().any(|line| line.contains("task-finished")));
    repo.write("go", "");
    let (code, rest) = finish(child, lines);
    assert_eq!(code, 0);
    let outputs: Vec<&String> = rest
        .iter()
        .filter(|line| line.contains("\"task-output\""))
        .collect();
    assert_eq!(outputs.len(), 1, "only `second` is left, once: {rest:#?}");
    assert!(is_output(outputs[0], "second\n"), "{rest:#?}");
}

const TWO: &str = r#"
[tasks.ok]
run = "echo ok-line; echo ok-err >&2; echo x > ok.out"
outputs = ["ok.out"]

[tasks.bad]
run = "echo bad-line; echo bad-err >&2; exit 3"
outputs = ["bad.out"]
"#;

/// Which of the tasks' lines a run printed: (ok's lines, bad's lines, ok marked replayed).
fn shown(stderr: &str) -> (bool, bool, bool) {
    let ok = stderr.contains("task:ok: ok-line\n") && stderr.contains("task:ok: ok-err\n");
    let bad = stderr.contains("task:bad: bad-line\n") && stderr.contains("task:bad: bad-err\n");
    for partial in ["ok-line", "ok-err"] {
        assert_eq!(stderr.contains(partial), ok, "{partial}: {stderr}");
    }
    for partial in ["bad-line", "bad-err"] {
        assert_eq!(stderr.contains(partial), bad, "{partial}: {stderr}");
    }
    (
        ok,
        bad,
        stderr.contains("Replaying task:ok (cached output)\n"),
    )
}

#[test]
fn output_logs_modes_on_ran_restored_up_to_date_and_failed_tasks() {
    // (mode, first run: ok ran, bad failed), (ok restored from the cache, bad failed again),
    // (ok up to date, bad failed again): what is shown.
    type Seen = (bool, bool, bool);
    let cases: [(&str, Seen, Seen, Seen); 4] = [
        (
            "full",
            (true, true, false),
            (true, true, true),
            (false, true, false),
        ),
        (
            "new-only",
            (true, true, false),
            (false, true, false),
            (false, true, false),
        ),
        (
            "errors-only",
            (false, true, false),
            (false, true, false),
            (false, true, false),
        ),
        (
            "none",
            (false, false, false),
            (false, false, false),
            (false, false, false),
        ),
    ];
    for (mode, ran, restored, up_to_date) in cases {
        for order in ["grouped", "stream"] {
            let repo = Repo::new(TWO, &[]);
            let args = ["task", "--output-logs", mode, "--log-order", order];
            let run = repo.human(&args);
            run.assert_code(1);
            assert_eq!(run.stdout, "", "task output goes to stderr\n{run}");
            assert_eq!(shown(&run.stderr), ran, "{mode} {order}: ran\n{run}");

            repo.remove("ok.out");
            let run = repo.human(&args);
            run.assert_code(1);
            assert!(
                run.stderr.contains("Restored task:ok from cache (1 file)"),
                "{run}"
            );
            assert_eq!(
                shown(&run.stderr),
                restored,
                "{mode} {order}: restored\n{run}"
            );

            let run = repo.human(&args);
            run.assert_code(1);
            assert_eq!(
                shown(&run.stderr),
                up_to_date,
                "{mode} {order}: up to date\n{run}"
            );
        }
    }
}

#[test]
fn a_no_op_build_prints_no_task_output() {
    let repo = Repo::new(TWO.split("[tasks.bad]").next().unwrap(), &[]);
    repo.human(&["task"]).assert_code(0);
    let run = repo.human(&["task"]);
    run.assert_code(0);
    assert!(!run.stderr.contains("ok-"), "{run}");
    let json = repo.json(&["task"]);
    json.assert_code(0);
    assert!(json.events("task-output").is_empty(), "{json}");
}

/// `a` prints a1, then waits for `b` to have printed b1; `b` waits for a1 first: the two
/// tasks' lines are interleaved in time.
const INTERLEAVED: &str = r#"
[tasks.a]
run = "echo a1; touch a1.flag; while [ ! -e b1.flag ]; do sleep 0.02; done; echo a2; echo a > a.out"
outputs = ["a.out"]

[tasks.b]
run = "while [ ! -e a1.flag ]; do sleep 0.02; done; echo b1; touch b1.flag; echo b2; echo b > b.out"
outputs = ["b.out"]
"#;

/// The lines of `stderr` from `header` on: they must be the header then exactly `lines`.
fn assert_group(stderr: &str, header: &str, lines: &[&str]) {
    let all: Vec<&str> = stderr.lines().collect();
    let at = all
        .iter()
        .position(|line| *line == header)
        .unwrap_or_else(|| panic!("no `{header}` in\n{stderr}"));
    assert_eq!(&all[at + 1..at + 1 + lines.len()], lines, "{stderr}");
}

#[test]
fn grouped_order_keeps_each_tasks_lines_together() {
    // The default when stderr is not a terminal (here, a pipe) is grouped.
    for args in [
        &["task", "-j", "2"][..],
        &["task", "-j", "2", "--log-order", "grouped"],
    ] {
        let repo = Repo::new(INTERLEAVED, &[]);
        let mut command = repo.command();
        command.args(args).env_remove("GITHUB_ACTIONS");
        let output = command.output().expect("run xtask");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        assert_group(
            &stderr,
            "      Output task:a",
            &["task:a: a1", "task:a: a2"],
        );
        assert_group(
            &stderr,
            "      Output task:b",
            &["task:b: b1", "task:b: b2"],
        );
    }
}

#[test]
fn github_actions_groups_and_replays_are_marked() {
    let repo = Repo::new(TWO.split("[tasks.bad]").next().unwrap(), &[]);
    let env = [("GITHUB_ACTIONS", "true")];
    let run = repo.human_env(&["task"], &env);
    run.assert_code(0);
    let lines: Vec<&str> = run.stderr.lines().collect();
    let at = lines
        .iter()
        .position(|line| *line == "::group::task:ok")
        .unwrap_or_else(|| panic!("{run}"));
    let mut group = lines[at + 1..at + 3].to_vec();
    group.sort();
    assert_eq!(group, ["task:ok: ok-err", "task:ok: ok-line"], "{run}");
    assert_eq!(lines[at + 3], "::endgroup::", "{run}");

    repo.remove("ok.out");
    let run = repo.human_env(&["task"], &env);
    run.assert_code(0);
    assert!(
        run.stderr.contains(
            "::group::task:ok (cached output)\ntask:ok: ok-line\ntask:ok: ok-err\n::endgroup::\n"
        ),
        "{run}"
    );
}

#[test]
fn sigint_while_a_task_waits_prints_its_output_so_far() {
    for mode in ["full", "errors-only"] {
        let repo = Repo::new(
            r#"
[tasks.w]
run = "echo before; echo warned >&2; touch started; while true; do sleep 0.05; done"
outputs = ["w.out"]
"#,
            &[],
        );
        let mut child = repo
            .command()
            .args(["task", "--log-order", "grouped", "--output-logs", mode])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn xtask");
        let lines = lines_of(child.stderr.take().unwrap());
        read_until(&lines, |line| line.contains("Running task:w"), || {});
        while !repo.exists("started") {
            assert!(child.try_wait().unwrap().is_none(), "xtask ended early");
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: signals the child this test spawned and has not reaped.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
        let (code, rest) = finish(child, lines);
        assert_eq!(code, 130, "{rest:#?}");
        let at = rest
            .iter()
            .position(|line| line == "      Output task:w")
            .unwrap_or_else(|| panic!("{mode}: {rest:#?}"));
        let mut group = rest[at + 1..at + 3].to_vec();
        group.sort();
        assert_eq!(
            group,
            ["task:w: before", "task:w: warned"],
            "{mode}: {rest:#?}"
        );
        assert!(
            rest.iter()
                .any(|line| line == "interrupted: 0 ran, 1 stopped"),
            "{rest:#?}"
        );
    }
}

/// Runs the binary (human output, stderr to a file) and returns its exit code, its stderr file
/// and its peak resident memory in KiB.
fn run_measured(repo: &Repo, args: &[&str]) -> (i32, std::path::PathBuf, i64) {
    let stderr_path = repo.join("stderr.log");
    let mut command = repo.command();
    command.args(args);
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    let (code, peak_kib) = common::run_measured(&command, stderr.into());
    (code, stderr_path, peak_kib)
}

/// The bytes of task `id`'s lines in a stderr file, without their prefixes and newlines, and
/// the other lines.
fn task_bytes(path: &std::path::Path, id: &str) -> (u64, Vec<String>) {
    let prefix = format!("{id}: ");
    let mut bytes = 0;
    let mut other = Vec::new();
    for line in BufReader::new(std::fs::File::open(path).unwrap()).lines() {
        let line = line.unwrap();
        match line.strip_prefix(&prefix) {
            Some(text) => bytes += text.len() as u64,
            None => other.push(line),
        }
    }
    (bytes, other)
}

#[test]
fn a_flood_without_newlines_is_printed_whole_in_bounded_memory() {
    // 80 MiB on one line, grouped: held whole, this would take over 160 MiB (the shell's
    // copy and the cache's); it is printed in bounded pieces (groups marked "continued") and
    // the cache keeps a bounded part.
    const SIZE: u64 = 80 << 20;
    let repo = Repo::new(
        &format!(
            "[tasks.flood]\nrun = \"head -c {SIZE} /dev/zero | tr '\\\\0' x; echo x > flood.out\"\noutputs = [\"flood.out\"]\n"
        ),
        &[],
    );
    let (code, stderr, peak_kib) = run_measured(&repo, &["task", "--log-order", "grouped"]);
    let (bytes, other) = task_bytes(&stderr, "task:flood");
    assert_eq!(code, 0, "{other:#?}");
    assert_eq!(bytes, SIZE, "every byte is printed once");
    assert!(
        other
            .iter()
            .any(|line| line == "      Output task:flood (continued)"),
        "{other:#?}"
    );
    assert!(
        peak_kib < 64 << 10,
        "printing 80 MiB of output peaked at {peak_kib} KiB of memory"
    );
}

#[test]
fn errors_only_keeps_the_end_of_a_flood_from_a_failing_task() {
    const SIZE: u64 = 8 << 20;
    let repo = Repo::new(
        &format!(
            "[tasks.flood]\nrun = \"head -c {SIZE} /dev/zero | tr '\\\\0' '\\\\n'; echo the-error; exit 1\"\noutputs = [\"flood.out\"]\n"
        ),
        &[],
    );
    let (code, stderr, peak_kib) = run_measured(&repo, &["task", "--output-logs", "errors-only"]);
    assert_eq!(code, 1);
    let text = std::fs::read_to_string(&stderr).unwrap();
    assert!(text.contains("task:flood: the-error\n"), "the end is kept");
    assert!(
        text.contains("earlier line(s) not kept in memory]"),
        "what was left out is said"
    );
    assert!(text.contains("error: task:flood failed"));
    assert!(
        peak_kib < 64 << 10,
        "holding 8 Mi lines peaked at {peak_kib} KiB of memory"
    );
}
