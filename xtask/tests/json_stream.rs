//! `--message-format json` as a stream: lines that follow each other closely are written
//! together (the shell's `lines` writer), and still reach a reader while the build runs, not
//! only when it ends (docs/json-events.md).

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::Repo;
use serde_json::Value;

/// Twenty quick tasks, then one that waits (10 s at most) for a file the reader creates once
/// it has read that task's `task-started` line.
fn bundle() -> String {
    let mut toml = String::new();
    for i in 0..20 {
        toml.push_str(&format!(
            "[tasks.q{i}]\nrun = \"mkdir -p out && echo {i} > out/q{i}.txt\"\noutputs = [\"out/q{i}.txt\"]\n\n"
        ));
    }
    let deps: Vec<String> = (0..20).map(|i| format!("\"q{i}\"")).collect();
    toml.push_str(&format!(
        "[tasks.wait]\nrun = \"i=0; while [ ! -e go ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; test -e go\"\ndeps = [{}]\n",
        deps.join(", ")
    ));
    toml
}

#[test]
fn a_line_held_in_a_burst_reaches_the_reader_while_the_build_runs() {
    let repo = Repo::new(&bundle(), &[]);
    let mut child = repo
        .command()
        .args(["--message-format", "json", "task", "-j", "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start xtask");
    let stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut seen_wait_started = None;
    let mut events = Vec::new();
    for line in stdout.lines() {
        let line = line.expect("read a line");
        let event: Value = serde_json::from_str(&line)
            .unwrap_or_else(|err| panic!("not one JSON object per line ({err}): {line}"));
        if event["event"] == "task-started" && event["id"] == "task:wait" {
            seen_wait_started = Some(events.len());
            repo.write("go", "");
        }
        events.push(event);
    }
    let status = child.wait().expect("wait for xtask");
    let kinds: Vec<&str> = events
        .iter()
        .map(|event| event["event"].as_str().unwrap_or(""))
        .collect();
    // The waiting task's start was read while it ran: it then saw the file and succeeded.
    assert!(
        seen_wait_started.is_some() && status.success(),
        "task-started of task:wait never came before the end ({status}): {kinds:?}"
    );
    // Every line once, in order: 21 starts and 21 ends, the build's end last.
    assert_eq!(kinds.iter().filter(|k| **k == "task-started").count(), 21);
    assert_eq!(kinds.iter().filter(|k| **k == "task-finished").count(), 21);
    assert_eq!(kinds.first(), Some(&"build-started"));
    assert_eq!(kinds.last(), Some(&"build-finished"));
}
