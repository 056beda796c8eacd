//! Attacks on `watch`, `init`, `completions` and the did-you-mean answers (issue 11 items 4, 6,
//! 9), each kept because it found something (or guards a property an attack checked): a link
//! inside the root to a directory outside it, a directory moved into the root with its files,
//! writes that are not inputs postponing a round, Ctrl-C during a long debounce, the root
//! removed while watching; `init` through a `platforms` link; control characters in a name; the
//! zsh script sourced before `compinit`. The watch tests wait on the binary's JSON events (with
//! an overall bound), never on guessed sleeps, except where they check that nothing happens.

use crate::common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::watching::{Watching, changed};
use common::{BIN, Canary, Repo};

const ONE_TASK: &str = r#"
[tasks.a]
run = "cat in.txt > a.out"
inputs = ["in.txt"]
outputs = ["a.out"]
"#;

/// A link inside the root to a directory outside it is not followed: changes out there start
/// nothing (and the watch never walks what the link points to).
#[test]
fn watch_does_not_follow_a_link_out_of_the_root() {
    let repo = Repo::in_sandbox(ONE_TASK, &[("in.txt", "1\n")]);
    let outside = repo.sandbox().join("outside");
    std::fs::create_dir_all(outside.join("deep")).unwrap();
    std::fs::write(outside.join("deep/f.txt"), "0\n").unwrap();
    std::os::unix::fs::symlink("../outside", repo.join("ext")).unwrap();
    let canary = Canary::plant(&repo.sandbox().join("canary"), &[]);
    let mut watch = Watching::start(&repo, "50", &[]);
    let first = watch.next_round();
    assert_eq!(first.statuses["task:a"], "ran");

    std::fs::write(outside.join("deep/f.txt"), "1\n").unwrap();
    std::fs::write(outside.join("new.txt"), "1\n").unwrap();
    watch.assert_quiet("a change outside the root, behind a link");

    repo.write("in.txt", "2\n");
    let second = watch.next_round();
    assert_eq!(changed(&second), ["in.txt"]);
    let (code, _, stderr) = watch.stop(libc::SIGINT);
    assert_eq!(code, 130, "{stderr}");
    canary.assert_intact("watch with a link out of the root");
}

/// A directory moved into the root (or made and filled at once) brings files no event names:
/// they are changes all the same.
#[test]
fn watch_sees_the_files_of_a_directory_moved_into_the_root() {
    let bundle = r#"
[tasks.list]
run = "find src -type f | sort > list.out"
inputs = ["src/**"]
outputs = ["list.out"]
"#;
    let repo = Repo::in_sandbox(bundle, &[("src/one.txt", "1\n")]);
    let mut watch = Watching::start(&repo, "50", &[]);
    assert_eq!(watch.next_round().statuses["task:list"], "ran");

    let staging = repo.sandbox().join("staging");
    std::fs::create_dir_all(staging.join("new/deep")).unwrap();
    std::fs::write(staging.join("new/deep/two.txt"), "2\n").unwrap();
    std::fs::rename(staging.join("new"), repo.join("src/new")).unwrap();
    let second = watch.next_round();
    assert_eq!(changed(&second), ["src/new/deep/two.txt"]);
    assert_eq!(second.statuses["task:list"], "ran");
    assert_eq!(repo.read("list.out"), "src/new/deep/two.txt\nsrc/one.txt\n");

    // Made and filled at once: the file may be written before the watcher watches the new
    // directory.
    std::fs::create_dir_all(repo.join("src/made/deeper")).unwrap();
    std::fs::write(repo.join("src/made/deeper/three.txt"), "3\n").unwrap();
    let third = watch.next_round();
    assert!(
        changed(&third).contains(&"src/made/deeper/three.txt".to_string()),
        "{:?}",
        third.event
    );
    assert!(repo.read("list.out").contains("src/made/deeper/three.txt"));
    let (code, _, stderr) = watch.stop(libc::SIGTERM);
    assert_eq!(code, 143, "{stderr}");
}

/// Writes that start no round (here `.git`, written more often than the debounce) do not
/// postpone the round an input change started.
#[test]
fn watch_writes_that_are_not_inputs_do_not_postpone_a_round() {
    let repo = Repo::in_sandbox(ONE_TASK, &[("in.txt", "1\n"), (".git/HEAD", "x\n")]);
    let mut watch = Watching::start(&repo, "1500", &[]);
    watch.next_round();

    let stop = Arc::new(AtomicBool::new(false));
    let noise = {
        let stop = Arc::clone(&stop);
        let path = repo.join(".git/index");
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                std::fs::write(&path, n.to_string()).unwrap();
                // Pacing, not synchronisation: far more often than the debounce.
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    repo.write("in.txt", "2\n");
    let second = watch.next_round();
    stop.store(true, Ordering::Relaxed);
    noise.join().unwrap();
    assert_eq!(changed(&second), ["in.txt"]);
    assert_eq!(second.statuses["task:a"], "ran");
    let (code, _, stderr) = watch.stop(libc::SIGINT);
    assert_eq!(code, 130, "{stderr}");
}

/// Ctrl-C while a change waits out a long debounce ends the watch at once, not when the
/// debounce is over.
#[test]
fn watch_sigint_during_a_long_debounce_ends_it_at_once() {
    let repo = Repo::in_sandbox(ONE_TASK, &[("in.txt", "1\n")]);
    // Ten minutes: far beyond BOUND, so only a prompt answer passes.
    let mut watch = Watching::start(&repo, "600000", &[]);
    watch.next_round();
    repo.write("in.txt", "2\n");
    // Lets the watcher receive the change before the signal (if it has not, the test passes
    // without having checked anything, it cannot fail wrongly).
    std::thread::sleep(Duration::from_millis(300));
    let (code, rest, stderr) = watch.stop(libc::SIGINT);
    assert_eq!(code, 130, "{stderr}");
    assert!(
        rest.iter().all(|e| e["event"] != "watch-round"),
        "{rest:#?}"
    );
}

/// The root removed (here: renamed away) while watching: the watch says so and ends, rather
/// than waiting for changes that can never come.
#[test]
fn watch_ends_when_its_root_goes_away() {
    let repo = Repo::in_sandbox(ONE_TASK, &[("in.txt", "1\n")]);
    let canary = Canary::plant(&repo.sandbox().join("canary"), &[]);
    let mut watch = Watching::start(&repo, "50", &[]);
    watch.next_round();
    let moved = repo.sandbox().join("moved");
    std::fs::rename(repo.path(), &moved).unwrap();
    let (code, rest, stderr) = watch.wait_end();
    // Put back for the temporary directory's clean-up and the canary check.
    std::fs::rename(&moved, repo.path()).unwrap();
    assert_ne!(code, 0, "{stderr}");
    let said = rest.iter().any(|e| {
        e["event"] == "diagnostic" && e["message"].as_str().unwrap_or("").contains("no longer")
    });
    assert!(said, "{rest:#?}\n{stderr}");
    canary.assert_intact("watch with its root removed");
}

/// A repository laid out like Vrooli's (one scenario), without bundle.toml.
fn vrooli_like() -> (Repo, Canary) {
    let repo = Repo::in_sandbox("", &[]);
    repo.remove("bundle.toml");
    let project = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    common::copy_tree(
        &project.join("scenarios/picker-wheel"),
        &repo.join("scenarios/picker-wheel"),
    );
    common::copy_tree(&project.join("resources"), &repo.join("resources"));
    let canary = Canary::plant(&repo.sandbox().join("canary"), &[]);
    (repo, canary)
}

/// `platforms` is a link to a directory outside the repository: init refuses (exit 2) and
/// writes nothing there, nor anywhere.
#[test]
fn init_refuses_a_platforms_link_out_of_the_repository() {
    let (repo, canary) = vrooli_like();
    std::os::unix::fs::symlink("../canary/build", repo.join("platforms")).unwrap();
    let before = common::full_snapshot(repo.path());
    let run = repo.human(&["init"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("platforms"), "{run}");
    assert_eq!(
        common::full_snapshot(repo.path()),
        before,
        "nothing written"
    );
    canary.assert_intact("init through a platforms link");

    // A link to a directory inside the repository is refused alike (what it points to is not
    // platforms/).
    std::fs::remove_file(repo.join("platforms")).unwrap();
    std::fs::create_dir(repo.join("elsewhere")).unwrap();
    std::os::unix::fs::symlink("elsewhere", repo.join("platforms")).unwrap();
    let run = repo.human(&["init"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(!repo.exists("bundle.toml"), "{run}");
    assert_eq!(
        std::fs::read_dir(repo.join("elsewhere")).unwrap().count(),
        0
    );
}

/// A name holding escape sequences and control characters is shown escaped, on every command
/// that answers an unknown name (and in the list of known names, a scenario directory's).
#[test]
fn names_with_control_characters_never_reach_the_terminal_raw() {
    let (repo, _canary) = vrooli_like();
    repo.human(&["init"]).assert_code(0);
    let evil = "ev\u{1b}]0;PWN\u{7}\u{1b}[31mil\r";
    let scenario = repo.join(&format!("scenarios/{evil}/.vrooli"));
    std::fs::create_dir_all(&scenario).unwrap();
    std::fs::copy(
        repo.join("scenarios/picker-wheel/.vrooli/service.json"),
        scenario.join("service.json"),
    )
    .unwrap();
    let name = "nots\u{1b}[2J\u{1b}]8;;http://x\u{7}\u{8}\r";
    for args in [
        &["bundle", name][..],
        &["profile", "show", name],
        &["export", name],
        &["assemble", name],
        &["task", name],
        &["analyze", name],
        &["fitness", name],
        &["analyze", "zzzzzz"],
        &[
            "profile",
            "create",
            "p",
            "--scenario",
            name,
            "--tier",
            "desktop",
        ],
    ] {
        let run = repo.human(args);
        assert_eq!(run.code, 2, "{run}");
        let raw: Vec<char> = run
            .stderr
            .chars()
            .chain(run.stdout.chars())
            .filter(|c| c.is_control() && *c != '\n')
            .collect();
        assert!(raw.is_empty(), "raw control characters {raw:?}:\n{run}");
    }
}

/// The zsh script sourced before `compinit` (no `compdef` yet) loads without an error and
/// says what to do; after `compinit` it registers the completion of `cargo`.
#[test]
fn zsh_script_sourced_before_compinit_loads_without_error() {
    if !common::have_tool("zsh", "zsh") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("cargo-xtask.zsh");
    let output = Command::new(BIN)
        .args(["completions", "zsh"])
        .output()
        .unwrap();
    assert!(output.status.success());
    std::fs::write(&script, output.stdout).unwrap();
    let before = Command::new("zsh")
        .args(["-f", "-c", &format!("source '{}'", script.display())])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&before.stderr);
    assert!(before.status.success(), "{stderr}");
    assert!(!stderr.contains("command not found"), "{stderr}");
    assert!(stderr.contains("compinit"), "says what to do: {stderr}");
    let after = Command::new("zsh")
        .args([
            "-f",
            "-c",
            &format!(
                "autoload -U compinit; compinit -u; source '{}'; print -r -- ${{_comps[cargo]}}",
                script.display()
            ),
        ])
        .output()
        .unwrap();
    assert!(after.status.success());
    assert_eq!(
        String::from_utf8_lossy(&after.stdout).trim(),
        "_xbundle_cargo"
    );
}
