//! Attacks on live task output (issue 11 item 3), each kept as a test: a task that leaves a
//! background process holding its pipes, `-q` with a failing task, escape sequences and
//! invalid UTF-8 in a task's output, a task that closes stdout early.
//!
//! No sleeps synchronise anything here; the only waits are bounded safety nets.

use crate::common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Repo;

/// Generous bound on a run that must end, so a hang fails the test instead of the suite.
const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `command` to its end, or kills it and fails after [`DEADLINE`].
fn output_within_deadline(mut command: Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xtask");
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let read = |mut stream: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stream.read_to_end(&mut bytes);
            bytes
        })
    };
    let (out, err) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for xtask") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("xtask did not end within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Whether process `pid` is gone (or a zombie waiting to be reaped by whoever adopted it).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

#[test]
fn a_background_process_holding_the_pipes_does_not_hang_the_build() {
    // The shell exits at once; `sleep` keeps its stdout and stderr. cargo and ninja would wait
    // for it (they read to the end of the pipes); the build must end, say why, and not leave it.
    let repo = Repo::new(
        r#"
[tasks.bg]
run = "echo before; sleep 600 & echo bg=$!; echo after; echo x > bg.out"
outputs = ["bg.out"]
"#,
        &[],
    );
    let mut command = repo.command();
    command.args(["task", "--log-order", "stream"]);
    let output = output_within_deadline(command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("task:bg: before\n"), "{stderr}");
    assert!(stderr.contains("task:bg: after\n"), "{stderr}");
    assert!(
        stderr.contains("still held its output"),
        "the task's output says why it was cut: {stderr}"
    );
    let pid: u32 = stderr
        .lines()
        .find_map(|line| line.strip_prefix("task:bg: bg="))
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("{stderr}"));
    let started = Instant::now();
    while !gone(pid) {
        assert!(
            started.elapsed() < DEADLINE,
            "the background process {pid} outlived the task"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_background_process_that_keeps_printing_does_not_hang_the_build() {
    // The pipes never go quiet: the command's exit is still noticed (one thread reads both
    // pipes and checks on a clock, not only when they are quiet), the printer gets LINGER,
    // then its group is killed.
    let repo = Repo::new(
        r#"
[tasks.spam]
run = "(while true; do echo spam; echo maps >&2; done) & echo bg=$!; echo x > s.out"
outputs = ["s.out"]
"#,
        &[],
    );
    let mut command = repo.command();
    command.args(["task", "--log-order", "stream"]);
    let output = output_within_deadline(command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{}", tail(&stderr));
    assert!(
        stderr.contains("still held its output"),
        "the task's output says why it was cut: {}",
        tail(&stderr)
    );
    let pid: u32 = stderr
        .lines()
        .find_map(|line| line.strip_prefix("task:spam: bg="))
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("{}", tail(&stderr)));
    let started = Instant::now();
    while !gone(pid) {
        assert!(
            started.elapsed() < DEADLINE,
            "the background process {pid} outlived the task"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last lines of a long output.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[test]
fn a_background_process_that_redirected_its_output_is_left_alone() {
    let repo = Repo::new(
        r#"
[tasks.bg]
run = "sleep 600 >/dev/null 2>&1 & echo $! > bg.pid; echo done; echo x > bg.out"
outputs = ["bg.out", "bg.pid"]
"#,
        &[],
    );
    let mut command = repo.command();
    command.args(["task", "--log-order", "stream"]);
    let output = output_within_deadline(command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("still held its output"), "{stderr}");
    let pid: i32 = repo.read("bg.pid").trim().parse().unwrap();
    assert!(
        !gone(pid as u32),
        "a daemon that let go of the pipes keeps running"
    );
    // SAFETY: kill(2) on the pid the task reported; the test cleans up what it started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

const FAILING: &str = r#"
[tasks.fail]
run = "echo compiling; echo 'error: it broke at line 3' >&2; exit 1"
outputs = ["f.out"]

[tasks.fine]
run = "echo all-good; echo x > fine.out"
outputs = ["fine.out"]
"#;

#[test]
fn quiet_still_shows_why_a_task_failed() {
    // `-q` prints only errors: a failing task's output is the error a user needs (cargo -q
    // still shows rustc's diagnostics); a task that succeeded stays silent.
    for order in ["grouped", "stream"] {
        let repo = Repo::new(FAILING, &[]);
        let run = repo.human(&["-q", "task", "--log-order", order]);
        run.assert_code(1);
        assert!(
            run.stderr
                .contains("task:fail: error: it broke at line 3\n"),
            "{order}: {run}"
        );
        assert!(
            run.stderr.contains("task:fail: compiling\n"),
            "{order}: {run}"
        );
        assert!(!run.stderr.contains("all-good"), "{order}: {run}");
        assert!(!run.stderr.contains("Running"), "{order}: {run}");
        // `none` still means none.
        let repo = Repo::new(FAILING, &[]);
        let run = repo.human(&["-q", "task", "--log-order", order, "--output-logs", "none"]);
        run.assert_code(1);
        assert!(!run.stderr.contains("broke"), "{order}: {run}");
    }
}

#[test]
fn a_tasks_escape_sequences_do_not_leak_into_the_lines_after_it() {
    // `\e[8m` (concealed) left open would hide every status line after it, `\e[31m` would
    // colour them; a task's line that carries an escape sequence is reset at its end.
    for order in ["grouped", "stream"] {
        let repo = Repo::new(
            r#"
[tasks.esc]
run = "printf 'hidden \\033[8m\\n'; printf 'tail \\033[31m'; echo x > e.out"
outputs = ["e.out"]
"#,
            &[],
        );
        let run = repo.human(&["task", "--log-order", order]);
        run.assert_code(0);
        assert!(
            run.stderr.contains("task:esc: hidden \x1b[8m\x1b[0m\n"),
            "{order}: {run}"
        );
        assert!(
            run.stderr.contains("task:esc: tail \x1b[31m\x1b[0m\n"),
            "{order}: {run}"
        );
        let last_escape = run.stderr.rfind('\x1b').unwrap();
        assert!(
            run.stderr[last_escape..].starts_with("\x1b[0m"),
            "{order}: {run}"
        );
    }
}

#[test]
fn json_events_stay_json_whatever_a_task_prints() {
    let repo = Repo::new(
        r#"
[tasks.raw]
run = "printf 'bad \\377\\376 utf8\\n'; printf 'esc \\033[2J\\033]0;title\\007 bell\\n'; printf 'nul \\000 byte\\n' >&2; printf 'no-newline'; echo x > r.out"
outputs = ["r.out"]
"#,
        &[],
    );
    // `Run::parse_json` fails on any stdout line that is not JSON.
    let run = repo.json(&["task"]);
    run.assert_code(0);
    let text: String = run
        .events("task-output")
        .iter()
        .map(|event| event["text"].as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .concat();
    assert!(text.contains("bad \u{fffd}\u{fffd} utf8\n"), "{text:?}");
    assert!(
        text.contains("esc \x1b[2J\x1b]0;title\x07 bell\n"),
        "{text:?}"
    );
    assert!(text.contains("nul \0 byte\n"), "{text:?}");
    assert!(text.contains("no-newline"), "{text:?}");
}

#[test]
fn a_task_that_closes_stdout_early_still_shows_its_stderr() {
    let repo = Repo::new(
        r#"
[tasks.closes]
run = "echo o1; exec 1>&-; echo e1 >&2; echo e2 >&2; echo y > c.out"
outputs = ["c.out"]
"#,
        &[],
    );
    let mut command = repo.command();
    command.args(["task", "--log-order", "grouped"]);
    let output = output_within_deadline(command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    for line in [
        "task:closes: o1\n",
        "task:closes: e1\n",
        "task:closes: e2\n",
    ] {
        assert_eq!(stderr.matches(line).count(), 1, "{line:?} once: {stderr}");
    }
}

#[test]
fn many_parallel_tasks_flooding_short_lines_never_split_a_line() {
    // 8 tasks × 5000 lines at once, stream order: every line arrives whole, under its own
    // task's prefix, once.
    const TASKS: usize = 8;
    const LINES: usize = 5000;
    let mut toml = String::new();
    for t in 0..TASKS {
        toml.push_str(&format!(
            "[tasks.t{t}]\nrun = \"i=0; while [ $i -lt {LINES} ]; do echo t{t}-line-$i-abcdefghijklmnopqrstuvwxyz; i=$((i+1)); done; echo x > t{t}.out\"\noutputs = [\"t{t}.out\"]\n\n"
        ));
    }
    let repo = Repo::new(&toml, &[]);
    let mut command = repo.command();
    command.args(["task", "-j", "8", "--log-order", "stream"]);
    let output = output_within_deadline(command);
    let stderr = String::from_utf8(output.stderr).expect("UTF-8");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let mut seen = vec![0usize; TASKS];
    for line in stderr.lines() {
        let Some((prefix, text)) = line.split_once(": ") else {
            continue;
        };
        let Some(t) = prefix.strip_prefix("task:t") else {
            continue;
        };
        let t: usize = t.parse().unwrap_or_else(|_| panic!("{line:?}"));
        let expected = format!("t{t}-line-{}-abcdefghijklmnopqrstuvwxyz", seen[t]);
        assert_eq!(text, expected, "lines in order and whole");
        seen[t] += 1;
    }
    assert_eq!(seen, vec![LINES; TASKS]);
}

#[test]
fn sigterm_in_stream_order_prints_everything_once_with_the_unfinished_line() {
    let repo = Repo::new(
        r#"
[tasks.w]
run = "echo before; printf 'half a line'; touch started; while true; do sleep 0.05; done"
outputs = ["w.out"]
"#,
        &[],
    );
    let mut child = repo
        .command()
        .args(["task", "--log-order", "stream"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xtask");
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut { stderr }, &mut text).unwrap();
        text
    });
    let started = Instant::now();
    while !repo.exists("started") {
        assert!(child.try_wait().unwrap().is_none(), "xtask ended early");
        assert!(started.elapsed() < DEADLINE, "the task never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: signals the child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    let stderr = reader.join().unwrap();
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert_eq!(stderr.matches("task:w: before\n").count(), 1, "{stderr}");
    assert_eq!(
        stderr.matches("task:w: half a line\n").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("interrupted: 0 ran, 1 stopped"), "{stderr}");
}
