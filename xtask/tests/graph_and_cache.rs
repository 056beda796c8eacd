//! `graph --format json|dot|mermaid`, and the cache maintenance commands `cache stats`,
//! `cache gc --max-size`, `cache verify`, `cache clean` (DESIGN.md §4.2, §10).

use crate::common;

use common::{Canary, Repo};
use serde_json::json;

/// A diamond: gen -> left, right -> join. Each task writes one distinct two-byte file and prints
/// nothing, so the cache holds exactly 4 action results and 4 blobs of 2 bytes.
const DIAMOND: &str = r#"
[tasks.gen]
description = "Generate the seed"
run = "mkdir -p out && echo g > out/gen.txt"
outputs = ["out/gen.txt"]

[tasks.left]
run = "echo l > out/left.txt"
outputs = ["out/left.txt"]
deps = ["gen"]

[tasks.right]
run = "echo r > out/right.txt"
outputs = ["out/right.txt"]
deps = ["task:gen"]

[tasks.join]
run = "echo j > out/join.txt"
outputs = ["out/join.txt"]
deps = ["right", "left"]
"#;

const IDS: [&str; 4] = ["task:gen", "task:join", "task:left", "task:right"];

fn graph(repo: &Repo, format: &str) -> String {
    let run = repo.human(&["graph", "--format", format]);
    run.assert_code(0);
    assert!(run.stderr.is_empty(), "{run}");
    run.stdout.clone()
}

#[test]
fn graph_renders_every_task_and_edge() {
    let repo = Repo::new(DIAMOND, &[]);

    let text = graph(&repo, "json");
    let value: serde_json::Value = serde_json::from_str(&text).expect("graph json parses");
    assert_eq!(
        value,
        json!({"tasks": [
            {"id": "task:gen", "kind": "shell", "deps": [], "description": "Generate the seed"},
            {"id": "task:join", "kind": "shell", "deps": ["task:left", "task:right"]},
            {"id": "task:left", "kind": "shell", "deps": ["task:gen"]},
            {"id": "task:right", "kind": "shell", "deps": ["task:gen"]},
        ]})
    );

    assert_eq!(
        graph(&repo, "dot"),
        r#"digraph tasks {
  rankdir=LR;
  node [shape=box];
  "task:gen";
  "task:join";
  "task:left";
  "task:right";
  "task:left" -> "task:join";
  "task:right" -> "task:join";
  "task:gen" -> "task:left";
  "task:gen" -> "task:right";
}
"#
    );
    // dot is the default.
    let run = repo.human(&["graph"]);
    assert_eq!(run.stdout, graph(&repo, "dot"));

    assert_eq!(
        graph(&repo, "mermaid"),
        r#"graph LR
  n0["task:gen"]
  n1["task:join"]
  n2["task:left"]
  n3["task:right"]
  n2 --> n1
  n3 --> n1
  n0 --> n2
  n0 --> n3
"#
    );

    // Planning never executes: nothing was built or stored.
    assert!(!repo.exists("out"));
    assert!(!repo.exists(".xbundle/cache"));

    let bad = repo.human(&["graph", "--format", "svgz"]);
    bad.assert_code(2);
}

#[test]
fn graph_with_json_messages_prints_json_lines_only() {
    let repo = Repo::new(DIAMOND, &[]);
    // Run::parse_json panics unless every stdout line is a JSON object with an `event`.
    let run = repo.json(&["graph", "--format", "json"]);
    run.assert_code(0);
    assert_eq!(run.events.len(), 1, "{run}");
    let event = &run.events[0];
    assert_eq!(event["event"], "graph");
    assert_eq!(event["format"], "json");
    let human: serde_json::Value =
        serde_json::from_str(&graph(&repo, "json")).expect("graph json parses");
    assert_eq!(
        event["tasks"], human["tasks"],
        "the same graph as in human mode"
    );

    for format in ["dot", "mermaid"] {
        let run = repo.json(&["graph", "--format", format]);
        run.assert_code(0);
        assert_eq!(run.events.len(), 1, "{run}");
        let event = &run.events[0];
        assert_eq!(event["event"], "graph");
        assert_eq!(event["format"], format);
        assert_eq!(event["text"].as_str(), Some(graph(&repo, format).as_str()));
    }
}

fn stats(repo: &Repo) -> serde_json::Value {
    let run = repo.json(&["cache", "stats"]);
    run.assert_code(0);
    let events = run.events("cache-stats");
    assert_eq!(events.len(), 1, "{run}");
    assert_eq!(
        events[0]["dir"],
        repo.join(".xbundle/cache").to_str().unwrap()
    );
    events[0]["stats"].clone()
}

#[test]
fn cache_stats_counts_entries_and_blobs() {
    let repo = Repo::new(DIAMOND, &[]);
    assert_eq!(
        stats(&repo),
        json!({"actions": 0, "action_bytes": 0, "blobs": 0, "blob_bytes": 0})
    );
    repo.json(&["task"]).assert_code(0);
    let after = stats(&repo);
    assert_eq!(after["actions"], 4);
    assert_eq!(after["blobs"], 4);
    assert_eq!(after["blob_bytes"], 8);
    let action_bytes = after["action_bytes"].as_u64().unwrap();
    let on_disk: u64 = repo
        .state_files("cache/ac")
        .iter()
        .map(|path| std::fs::metadata(path).unwrap().len())
        .sum();
    assert_eq!(action_bytes, on_disk);

    let human = repo.human(&["cache", "stats"]);
    human.assert_code(0);
    assert!(human.stdout.contains(": 4 action results ("), "{human}");
    assert!(human.stdout.contains(" and 4 blobs (8 B), "), "{human}");

    // A no-op run adds nothing.
    repo.json(&["task"]).assert_code(0);
    assert_eq!(stats(&repo), after);
}

#[test]
fn cache_gc_to_zero_then_build_runs_everything() {
    let repo = Repo::new(DIAMOND, &[]);
    repo.json(&["task"]).assert_code(0);
    let before = stats(&repo);
    let tree = repo.snapshot();

    // A budget that fits everything keeps everything.
    let run = repo.json(&["cache", "gc", "--max-size", "1G"]);
    run.assert_code(0);
    let report = &run.events("cache-gc")[0]["report"];
    assert_eq!(report["kept_actions"], 4);
    assert_eq!(report["removed_actions"], 0);
    assert_eq!(report["removed_blobs"], 0);
    assert_eq!(stats(&repo), before);

    let run = repo.json(&["cache", "gc", "--max-size", "0"]);
    run.assert_code(0);
    let report = &run.events("cache-gc")[0]["report"];
    assert_eq!(
        report,
        &json!({
            "kept_actions": 0,
            "removed_actions": 4,
            "removed_blobs": 4,
            "kept_bytes": 0,
            "freed_bytes": before["action_bytes"].as_u64().unwrap() + 8,
        })
    );
    assert_eq!(
        stats(&repo),
        json!({"actions": 0, "action_bytes": 0, "blobs": 0, "blob_bytes": 0})
    );
    common::assert_same_tree(&repo.snapshot(), &tree, "gc leaves the tree alone");

    let run = repo.json(&["task"]);
    run.assert_code(0);
    assert_eq!(run.counts(), (4, 0, 0, 0), "{run}");
    for id in IDS {
        assert_eq!(
            run.reasons(id),
            ["inputs unchanged but the cache entry is missing or unusable"],
            "{run}"
        );
    }
    common::assert_same_tree(&repo.snapshot(), &tree, "same outputs");
    // The same entries and blobs again. `action_bytes` is left out: an entry records the task's
    // duration, whose number of digits varies from run to run.
    let again = stats(&repo);
    for field in ["actions", "blobs", "blob_bytes"] {
        assert_eq!(again[field], before[field], "{field}");
    }

    let bad = repo.human(&["cache", "gc", "--max-size", "12 parsecs"]);
    bad.assert_code(2);
}

#[test]
fn cache_clean_removes_cache_and_state() {
    let repo = Repo::new(DIAMOND, &[]);
    repo.json(&["task"]).assert_code(0);
    let tree = repo.snapshot();
    assert!(repo.exists(".xbundle/cache/ac"));
    assert!(repo.exists(".xbundle/state/ledger"));

    let run = repo.human(&["cache", "clean"]);
    run.assert_code(0);
    assert!(run.stderr.contains("Removed cache entries in "), "{run}");
    // The store's entries and the build state are gone; the directories the user could have
    // named, and the lock files others may be waiting on, stay.
    assert!(!repo.exists(".xbundle/cache/cas"));
    assert!(!repo.exists(".xbundle/cache/ac"));
    assert_eq!(
        repo.state_files("cache"),
        [repo.join(".xbundle/cache/lock")]
    );
    assert!(!repo.exists(".xbundle/state"));
    common::assert_same_tree(&repo.snapshot(), &tree, "clean leaves the tree alone");

    let run = repo.json(&["task"]);
    run.assert_code(0);
    assert_eq!(run.counts(), (4, 0, 0, 0), "{run}");
    for id in IDS {
        assert_eq!(run.reasons(id), ["no previous run recorded"], "{run}");
    }
    common::assert_same_tree(&repo.snapshot(), &tree, "same outputs");

    // Cleaning twice is fine.
    repo.human(&["cache", "clean"]).assert_code(0);
    repo.human(&["cache", "clean"]).assert_code(0);
}

#[test]
fn shared_cache_dir_restores_into_another_workspace() {
    let shared = Repo::empty();
    let cache_dir = shared.path().join("cache");
    let cache = cache_dir.to_str().unwrap();
    let first = Repo::new(DIAMOND, &[]);
    let run = first.json_env(&["task"], &[("XBUNDLE_CACHE_DIR", cache)]);
    run.assert_code(0);
    assert_eq!(run.counts(), (4, 0, 0, 0));
    assert!(!first.exists(".xbundle/cache"), "the cache is elsewhere");

    // A fresh checkout of the same sources restores everything from the shared cache.
    let second = Repo::new(DIAMOND, &[]);
    let run = second.json_env(&["task"], &[("XBUNDLE_CACHE_DIR", cache)]);
    run.assert_code(0);
    assert_eq!(run.counts(), (0, 4, 0, 0), "{run}");
    for id in IDS {
        assert_eq!(run.restored(id), 1, "{run}");
        assert_eq!(run.reasons(id), ["no previous run recorded"]);
    }
    common::assert_same_tree(&second.snapshot(), &first.snapshot(), "same tree");
}

/// Issue 8 item 4: the cache directory is the user's; `cache gc` and `cache clean` remove only
/// the store's entries in it, and `cache clean` only the engine's files in the state directory.
#[test]
fn cache_clean_and_gc_remove_only_what_the_store_created() {
    let repo = Repo::in_sandbox(DIAMOND, &[]);
    let cache = repo.sandbox().join("my-cache");
    // What a user keeps in the directory they named, including names that look like the
    // store's layout.
    let canary = Canary::plant(
        &cache,
        &[
            ("cas/README", "mine\n"),
            ("cas/ab/keep.txt", "mine\n"),
            ("ac/notes.txt", "mine\n"),
            ("ac/0123abcd", "mine\n"),
            ("sub/dir/file", "mine\n"),
        ],
    );
    repo.write(".xbundle/notes.txt", "mine\n");
    repo.write(".xbundle/state/mine.txt", "mine\n");
    let env = [("XBUNDLE_CACHE_DIR", cache.to_str().unwrap())];
    let build = |expected: (u64, u64, u64, u64)| {
        let run = repo.json_env(&["task"], &env);
        run.assert_code(0);
        assert_eq!(run.counts(), expected, "{run}");
    };
    build((4, 0, 0, 0));

    let run = repo.json_env(&["cache", "gc", "--max-size", "0"], &env);
    run.assert_code(0);
    assert_eq!(
        run.events("cache-gc")[0]["report"]["removed_blobs"],
        4,
        "{run}"
    );
    // Only the store's lock file is new.
    canary.assert_intact_except(&["lock"], "after gc --max-size 0");

    build((4, 0, 0, 0));
    let run = repo.human_env(&["cache", "clean"], &env);
    run.assert_code(0);
    canary.assert_intact_except(&["lock"], "after cache clean");
    assert_eq!(repo.read(".xbundle/notes.txt"), "mine\n");
    assert_eq!(repo.read(".xbundle/state/mine.txt"), "mine\n");
    assert!(!repo.exists(".xbundle/state/stat-cache"));
    assert!(!repo.exists(".xbundle/state/ledger"));

    // The store works as before in a directory it shares.
    build((4, 0, 0, 0));
    let run = repo.json_env(&["cache", "verify"], &env);
    run.assert_code(0);
    build((0, 4, 0, 0));
    for mine in [
        "cas/README",
        "cas/ab/keep.txt",
        "ac/notes.txt",
        "ac/0123abcd",
    ] {
        let path = cache.join(mine);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine\n", "{mine}");
    }
}
