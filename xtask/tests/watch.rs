//! `cargo xtask watch` (issue 11 item 9): a first round, then one round per batch of input
//! changes, each running exactly the affected tasks; what the build writes (outputs, `.git`,
//! the engine's own state) starts nothing; changes during a round make exactly one next round;
//! a bad bundle.toml or a failing task fails a round, not the watch; SIGINT/SIGTERM end it
//! with 130/143. The tests wait on the binary's JSON events (with an overall bound), never on
//! guessed sleeps, except where they check that nothing happens.

use crate::common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::watching::{BOUND, Watching, changed};
use common::{Canary, Repo};
use serde_json::Value;

const BUNDLE: &str = r#"
[tasks.a]
run = "cat a/in.txt > a.out"
inputs = ["a/in.txt"]
outputs = ["a.out"]

[tasks.b]
run = "cat b/in.txt > b.out"
inputs = ["b/in.txt"]
outputs = ["b.out"]

[tasks.both]
run = "mkdir -p gen && cat a.out b.out > gen/both.out"
inputs = ["a.out", "b.out"]
outputs = ["gen/*.out"]
deps = ["a", "b"]

[tasks.unrelated]
run = "cat u/in.txt > u.out"
inputs = ["u/in.txt"]
outputs = ["u.out"]
"#;

fn statuses(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    common::statuses(pairs)
}

#[test]
fn two_edits_make_two_rounds_of_exactly_the_affected_tasks() {
    let repo = Repo::in_sandbox(
        BUNDLE,
        &[
            ("a/in.txt", "a1\n"),
            ("b/in.txt", "b1\n"),
            ("u/in.txt", "u1\n"),
            (".git/HEAD", "ref: refs/heads/main\n"),
        ],
    );
    let canary = Canary::plant(&repo.sandbox().join("canary"), &[]);
    let mut watch = Watching::start(&repo, "50", &["both"]);

    let first = watch.next_round();
    assert_eq!(
        first.statuses,
        statuses(&[("task:a", "ran"), ("task:b", "ran"), ("task:both", "ran")]),
        "round 1 builds what `task both` builds, not task:unrelated"
    );
    assert_eq!(first.event["round"], 1);
    assert_eq!(first.event["success"], true);
    assert_eq!(first.event["ran"], 3);
    assert!(changed(&first).is_empty());
    assert_eq!(repo.read("gen/both.out"), "a1\nb1\n");

    repo.write("a/in.txt", "a2\n");
    let second = watch.next_round();
    assert_eq!(second.event["round"], 2);
    assert_eq!(changed(&second), ["a/in.txt"]);
    assert_eq!(
        second.statuses,
        statuses(&[
            ("task:a", "ran"),
            ("task:b", "cached"),
            ("task:both", "ran")
        ])
    );
    assert_eq!(
        (&second.event["ran"], &second.event["cached"]),
        (&2.into(), &1.into())
    );
    assert_eq!(repo.read("gen/both.out"), "a2\nb1\n");

    repo.write("b/in.txt", "b3\n");
    let third = watch.next_round();
    assert_eq!(third.event["round"], 3);
    assert_eq!(changed(&third), ["b/in.txt"]);
    assert_eq!(
        third.statuses,
        statuses(&[
            ("task:a", "cached"),
            ("task:b", "ran"),
            ("task:both", "ran")
        ])
    );
    assert_eq!(repo.read("gen/both.out"), "a2\nb3\n");

    // Between rounds the workspace lock is free: another build runs to its end.
    let mut other = repo
        .command()
        .args(["--message-format", "json", "task", "unrelated"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn another build");
    let deadline = Instant::now() + BOUND;
    while other.try_wait().expect("try_wait").is_none() {
        assert!(
            Instant::now() < deadline,
            "another build waited for the watch's lock between rounds"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let other = common::Run::parse_json(&["task"], other.wait_with_output().expect("output"));
    other.assert_code(0);
    assert_eq!(other.status("task:unrelated"), "ran");

    // What builds write starts nothing: outputs (a file, and a new one in an output
    // directory), the engine's state, `.git`.
    repo.write("gen/both.out", "edited by hand\n");
    repo.write("gen/extra.out", "new\n");
    repo.write("a.out", "edited by hand\n");
    repo.write(".xbundle/state/scratch", "x");
    repo.write(".git/index", "x");
    watch.assert_quiet("writes to outputs, .xbundle and .git");

    // An input of a task outside the watched closure is still an input: a round, with nothing
    // of the watched tasks to run but restoring the hand-edited outputs.
    repo.write("a/in.txt", "a4\n");
    let fourth = watch.next_round();
    assert_eq!(fourth.event["round"], 4, "no round for the writes above");
    assert_eq!(changed(&fourth), ["a/in.txt"]);
    assert_eq!(fourth.statuses["task:a"], "ran");
    assert_eq!(fourth.statuses["task:b"], "cached");
    assert_eq!(repo.read("gen/both.out"), "a4\nb3\n");

    let (code, rest, stderr) = watch.stop(libc::SIGINT);
    assert_eq!(code, 130, "{stderr}");
    assert!(
        rest.iter().all(|event| event["event"] != "watch-round"),
        "{rest:#?}"
    );
    canary.assert_intact("watch");
}

#[test]
fn changes_during_a_round_make_exactly_one_next_round_and_failures_do_not_stop_it() {
    // `slow` waits while the file `gate` beside the repository exists (outside the root: no
    // event), after saying it started.
    let bundle = r#"
[tasks.slow]
run = "if [ -f ../gate ]; then : > ../started; while [ -f ../gate ]; do sleep 0.02; done; fi; cat s/in.txt > s.out"
inputs = ["s/in.txt"]
outputs = ["s.out"]

[tasks.x]
run = "cat x/in.txt > x.out"
inputs = ["x/in.txt"]
outputs = ["x.out"]
"#;
    let repo = Repo::in_sandbox(bundle, &[("s/in.txt", "s1\n"), ("x/in.txt", "x1\n")]);
    let gate = repo.sandbox().join("gate");
    let started = repo.sandbox().join("started");
    let mut watch = Watching::start(&repo, "50", &[]);
    let first = watch.next_round();
    assert_eq!(
        first.statuses,
        statuses(&[("task:slow", "ran"), ("task:x", "ran")])
    );

    std::fs::write(&gate, "").unwrap();
    repo.write("s/in.txt", "s2\n");
    let deadline = Instant::now() + BOUND;
    while !started.exists() {
        assert!(Instant::now() < deadline, "round 2 never started slow");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Round 2 is running: two edits now, then let it finish.
    repo.write("x/in.txt", "x3\n");
    repo.write("s/in.txt", "s3\n");
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_file(&gate).unwrap();
    let second = watch.next_round();
    assert_eq!(changed(&second), ["s/in.txt"]);
    assert_eq!(second.statuses["task:slow"], "ran");
    let third = watch.next_round();
    assert_eq!(third.event["round"], 3);
    assert_eq!(changed(&third), ["s/in.txt", "x/in.txt"]);
    assert_eq!(
        third.statuses,
        statuses(&[("task:slow", "ran"), ("task:x", "ran")])
    );
    assert_eq!(repo.read("s.out"), "s3\n");
    watch.assert_quiet("one round for the changes made during round 2");

    // A bad bundle.toml: its diagnostic, a failed round, and the watch goes on.
    repo.write("bundle.toml", format!("{bundle}\n[tasks.broken\n"));
    let fourth = watch.next_round();
    assert_eq!(changed(&fourth), ["bundle.toml"]);
    assert_eq!(fourth.event["success"], false);
    assert_eq!(fourth.event["exit_code"], 2);
    assert!(
        watch
            .seen
            .iter()
            .any(|e| e["event"] == "diagnostic" && e["file"] == "bundle.toml"),
        "the diagnostic is reported: {:#?}",
        watch.seen
    );

    // A failing task fails its round only.
    repo.write(
        "bundle.toml",
        bundle.replace("cat x/in.txt > x.out", "exit 3"),
    );
    let fifth = watch.next_round();
    assert_eq!(fifth.event["success"], false);
    assert_eq!(fifth.statuses["task:x"], "failed");

    repo.write("bundle.toml", bundle);
    let sixth = watch.next_round();
    assert_eq!(sixth.event["success"], true);
    assert_eq!(sixth.statuses["task:x"], "cached");

    let (code, _, stderr) = watch.stop(libc::SIGTERM);
    assert_eq!(code, 143, "{stderr}");
}

#[test]
fn sigint_during_a_round_stops_it_like_bundle() {
    let bundle = r#"
[tasks.slow]
run = "if [ -f ../gate ]; then : > ../started; sleep 37.25; fi; cat s/in.txt > s.out"
inputs = ["s/in.txt"]
outputs = ["s.out"]
"#;
    let repo = Repo::in_sandbox(bundle, &[("s/in.txt", "s1\n")]);
    std::fs::write(repo.sandbox().join("gate"), "").unwrap();
    let watch = Watching::start(&repo, "50", &["slow"]);
    let deadline = Instant::now() + BOUND;
    while !repo.sandbox().join("started").exists() {
        assert!(Instant::now() < deadline, "slow never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (code, rest, stderr) = watch.stop(libc::SIGINT);
    assert_eq!(code, 130, "{stderr}");
    let interrupted: Vec<&Value> = rest
        .iter()
        .filter(|e| e["event"] == "interrupted")
        .collect();
    assert_eq!(interrupted.len(), 1, "{rest:#?}");
    assert_eq!(interrupted[0]["stopped"], 1);
    assert!(!repo.exists("s.out"));
}

#[test]
fn an_unknown_name_is_a_usage_error() {
    let repo = Repo::new(BUNDLE, &[("a/in.txt", "a\n")]);
    let run = repo.human(&["watch", "bothh"]);
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("`bothh` is neither a profile nor a task"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("both"), "{}", run.stderr);
}
