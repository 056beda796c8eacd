//! Nothing outside its box, for the engine's own files (DESIGN.md §4.8, issue 8 items 1, 4 and
//! 5): the state directory `.xbundle`, its `state/`, `state/ledger/` and staging `tmp/`, the
//! cache and its `cas/` and `ac/` are reached without following a symbolic link, and what the
//! cache holds is read as untrusted input: never through a link, never anything but a regular
//! file, never more than the entry says.
//!
//! A hostile repository can ship any of these directories as a link (git stores links), and a
//! co-user of a shared cache (`XBUNDLE_CACHE_DIR`) can put links and FIFOs in it. Every case
//! runs in a sandbox: the repository at `<tmp>/repo` and a canary tree beside it that must stay
//! byte for byte (and mode for mode, link for link) as it was.

use crate::common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Canary, Repo, Run};

const BUILD: &str = r#"
[tasks.gen]
run = "mkdir -p build && cp src/in.txt build/a.txt"
inputs = ["src/in.txt"]
outputs = ["build/**"]
"#;

/// A name the store would give a file (64 hex digits).
const STORE_NAME: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Files a confused engine would write over or delete in a directory it took for one of its
/// own: the state's files, a ledger entry, a blob, temporary files, a lock.
fn plant_victim(dir: &Path) -> Canary {
    Canary::plant(
        dir,
        &[
            ("tmp/.tmp-keep", "staging? no: mine\n"),
            ("state/clock", "mine\n"),
            ("state/stat-cache", "mine\n"),
            ("state/listings", "mine\n"),
            ("listings", "mine\n"),
            ("clock", "mine\n"),
            ("stat-cache", "mine\n"),
            ("lock", "mine\n"),
            (".tmp-keep", "mine\n"),
            (STORE_NAME, "mine\n"),
            ("cas/keep.txt", "mine\n"),
            ("ac/keep.txt", "mine\n"),
        ],
    )
}

/// Every command that opens the state or the cache.
const COMMANDS: &[&[&str]] = &[
    &["task"],
    &["task", "--dry-run"],
    &["explain", "gen"],
    &["check"],
    &["cache", "stats"],
    &["cache", "verify"],
    &["cache", "gc", "--max-size", "0"],
    &["cache", "clean"],
];

/// Each command exits 2 with one diagnostic naming `named` as a symbolic link, and the canary
/// is intact after each.
#[track_caller]
fn refused_everywhere(repo: &Repo, canary: &Canary, env: &[(&str, &str)], named: &str) {
    for args in COMMANDS {
        let run = repo.json_env(args, env);
        run.assert_code(2);
        let message = run.diagnostic()["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("`{named}` is a symbolic link")),
            "{args:?}: the diagnostic names `{named}`\n{run}"
        );
        assert!(
            run.diagnostic()["help"]
                .as_str()
                .is_some_and(|help| help.contains("remove the link")),
            "{run}"
        );
        canary.assert_intact(&format!("{args:?} with {named} linked"));
    }
}

#[test]
fn a_link_in_place_of_one_of_the_engines_directories_is_refused() {
    for position in [
        ".xbundle",
        ".xbundle/state",
        ".xbundle/state/ledger",
        ".xbundle/tmp",
        ".xbundle/cache",
        ".xbundle/cache/cas",
        ".xbundle/cache/ac",
    ] {
        let repo = Repo::in_sandbox(BUILD, &[("src/in.txt", "in\n")]);
        if position != ".xbundle" {
            // The real directories exist (a run restores through the staging area).
            repo.json(&["task"]).assert_code(0);
            repo.write("src/in.txt", "two\n");
            repo.json(&["task"]).assert_code(0);
            repo.write("src/in.txt", "in\n");
            fs::create_dir_all(repo.join(position)).unwrap();
            fs::remove_dir_all(repo.join(position)).unwrap();
        }
        let canary = plant_victim(&repo.sandbox().join("victim"));
        symlink(&canary.dir, repo.join(position)).unwrap();

        refused_everywhere(&repo, &canary, &[], position);

        // Without the link, the next build recreates the directory and works.
        fs::remove_file(repo.join(position)).unwrap();
        let run = repo.json(&["task"]);
        run.assert_code(0);
        assert_eq!(repo.read("build/a.txt"), "in\n", "{position}");
        canary.assert_intact(&format!("a build after {position} was a link"));
    }
}

#[test]
fn a_link_in_place_of_a_lock_file_is_refused() {
    for lock in [".xbundle/lock", ".xbundle/cache/lock"] {
        let repo = Repo::in_sandbox(BUILD, &[("src/in.txt", "in\n")]);
        repo.json(&["task"]).assert_code(0);
        let canary = plant_victim(&repo.sandbox().join("victim"));
        fs::remove_file(repo.join(lock)).unwrap();
        symlink(canary.dir.join("lock"), repo.join(lock)).unwrap();
        refused_everywhere(&repo, &canary, &[], lock);
    }
}

#[test]
fn a_link_in_place_of_a_configured_or_shared_caches_areas_is_refused() {
    // `[cache] dir` inside the repository: checked at load time up to the directory itself,
    // and by the engine below it.
    let bundle = format!("[cache]\ndir = \"c\"\n{BUILD}");
    for area in ["cas", "ac"] {
        let repo = Repo::in_sandbox(&bundle, &[("src/in.txt", "in\n")]);
        fs::create_dir_all(repo.join("c")).unwrap();
        let canary = plant_victim(&repo.sandbox().join("victim"));
        symlink(&canary.dir, repo.join(&format!("c/{area}"))).unwrap();
        refused_everywhere(&repo, &canary, &[], &format!("c/{area}"));
    }
    // A shared cache outside the repository, where another user put a link.
    for area in ["cas", "ac"] {
        let repo = Repo::in_sandbox(BUILD, &[("src/in.txt", "in\n")]);
        let shared = repo.sandbox().join("shared");
        fs::create_dir_all(&shared).unwrap();
        let canary = plant_victim(&repo.sandbox().join("victim"));
        symlink(&canary.dir, shared.join(area)).unwrap();
        let env = [("XBUNDLE_CACHE_DIR", shared.to_str().unwrap())];
        let named = shared.join(area);
        refused_everywhere(&repo, &canary, &env, named.to_str().unwrap());
    }
}

/// Runs the binary, killing it if it has not finished after a minute (a build that hangs on
/// what a cache holds fails the test instead of hanging it).
fn run_bounded(repo: &Repo, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command: Command = repo.command();
    command
        .args(["--message-format", "json"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawn xtask");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let output = child.wait_with_output().expect("wait");
            panic!(
                "xtask {args:?} did not finish: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Run::parse_json(args, child.wait_with_output().expect("wait"))
}

#[test]
fn a_shared_cache_holding_links_and_fifos_is_read_as_untrusted() {
    let repo = Repo::in_sandbox(BUILD, &[("src/in.txt", "in\n")]);
    let shared = repo.sandbox().join("shared");
    let env = [("XBUNDLE_CACHE_DIR", shared.to_str().unwrap())];
    let run = repo.json_env(&["task"], &env);
    run.assert_code(0);
    let key = run.task("task:gen")["key"].as_str().unwrap().to_string();
    let blob = shared.join("cas").join(common::sha256_hex(b"in\n"));
    let entry = common::packed_entry(&shared, &key).expect("the entry, in the pack");
    assert!(blob.is_file() && entry.pack.is_file());
    // The canary holds a file with the very bytes of the output: a store that follows a link
    // to it would find the digest right.
    let canary = Canary::plant(&repo.sandbox().join("outside"), &[("same.txt", "in\n")]);

    // The blob is a link (to a file with the right content): never followed, a miss.
    fs::remove_file(&blob).unwrap();
    symlink(canary.dir.join("same.txt"), &blob).unwrap();
    let run = repo.json_env(&["cache", "verify"], &env);
    run.assert_code(1);
    let problems = common::strings(&run.events("cache-verify")[0]["report"]["problems"]);
    assert!(
        problems.len() == 2
            && problems[0].contains("is a symbolic link, not a regular file; removed")
            && problems[1].contains(&key)
            && problems[1].contains("names missing or damaged blob"),
        "verify reports the link, and the entry naming it: {problems:#?}"
    );
    assert!(fs::symlink_metadata(&blob).is_err(), "the link is removed");
    canary.assert_intact("verify with a linked blob");
    // Stored again by a run; then a build meets the link.
    fs::remove_file(repo.join("build/a.txt")).unwrap();
    repo.json_env(&["task"], &env).assert_code(0);
    fs::remove_file(&blob).unwrap();
    symlink(canary.dir.join("same.txt"), &blob).unwrap();
    fs::remove_file(repo.join("build/a.txt")).unwrap();
    let run = run_bounded(&repo, &["task"], &env);
    run.assert_code(0);
    assert_eq!(run.status("task:gen"), "ran", "{run}");
    assert!(
        run.warnings()
            .iter()
            .any(|w| w.contains("cached result unusable") && w.contains("not a regular file")),
        "{run}"
    );
    assert_eq!(repo.read("build/a.txt"), "in\n");
    canary.assert_intact("a build with a linked blob");

    // The pack is a FIFO: opening it must not wait for a writer, nor appending to it.
    let pack = common::packed_entry(&shared, &key)
        .expect("stored again")
        .pack;
    fs::remove_file(&pack).unwrap();
    let status = Command::new("mkfifo").arg(&pack).status().expect("mkfifo");
    assert!(status.success());
    fs::remove_file(repo.join("build/a.txt")).unwrap();
    let run = run_bounded(&repo, &["task"], &env);
    run.assert_code(0);
    assert!(
        run.warnings()
            .iter()
            .any(|w| w.contains("not a regular file")),
        "{run}"
    );
    assert_eq!(repo.read("build/a.txt"), "in\n");
    // The pack unusable, the entry went to a file of its own. A FIFO at another entry's name
    // and the pack's are found by verify, and the entry the pack held is gone with it.
    let entry = shared.join("ac").join(&key);
    assert!(entry.is_file());
    let fifo = shared.join("ac").join(STORE_NAME);
    let status = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(status.success());
    let run = run_bounded(&repo, &["cache", "verify"], &env);
    run.assert_code(1);
    let problems = common::strings(&run.events("cache-verify")[0]["report"]["problems"]);
    let pack_name = pack.file_name().unwrap().to_str().unwrap();
    assert!(
        problems.len() == 3
            && problems
                .iter()
                .any(|p| p.contains(STORE_NAME) && p.contains("FIFO"))
            && problems.iter().any(|p| p.ends_with(&format!(
                "{pack_name} is a FIFO, socket or device, not a regular file; removed"
            )))
            && problems
                .iter()
                .any(|p| p.contains(&key) && p.contains(&format!("{pack_name} is missing"))),
        "{problems:#?}"
    );
    assert!(fs::symlink_metadata(&fifo).is_err(), "the FIFO is removed");
    assert!(fs::symlink_metadata(&pack).is_err(), "the FIFO is removed");
    repo.json_env(&["cache", "verify"], &env).assert_code(0);

    // The entry, the pack and the index are links to files outside that hold a valid entry:
    // never read, never written.
    let text = fs::read_to_string(&entry).unwrap();
    let index_line = format!("{key} 00000000 {:016x} {:08x} 00000000\n", 0, text.len());
    let canary = Canary::plant(
        &repo.sandbox().join("outside2"),
        &[
            ("entry", &text),
            ("pack-0", &format!("{text}\n")),
            ("index", &index_line),
        ],
    );
    fs::remove_file(&entry).unwrap();
    symlink(canary.dir.join("entry"), &entry).unwrap();
    for name in ["pack-0", "index"] {
        symlink(canary.dir.join(name), shared.join("ac").join(name)).unwrap();
    }
    fs::remove_file(repo.join("build/a.txt")).unwrap();
    let run = run_bounded(&repo, &["task"], &env);
    run.assert_code(0);
    assert_eq!(run.status("task:gen"), "ran", "{run}");
    canary.assert_intact("a build with a linked action entry, pack and index");
}

/// Runs the binary quietly (human output, so nothing is printed) and returns its exit code, its
/// stderr and its peak resident memory in KiB.
fn run_measured(repo: &Repo, args: &[&str], env: &[(&str, &str)]) -> (i32, String, i64) {
    let stderr_path = repo.sandbox().join("stderr.txt");
    let mut command: Command = repo.command();
    command.arg("--quiet").args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    let stderr = fs::File::create(&stderr_path).expect("stderr file");
    let (code, peak_kib) = common::run_measured(&command, stderr.into());
    let stderr = fs::read_to_string(&stderr_path).expect("read stderr");
    (code, stderr, peak_kib)
}

#[test]
fn a_huge_captured_output_is_replayed_in_bounded_memory() {
    // An entry whose captured stdout is 48 MiB (a sparse file of zeros, under its real digest):
    // a legitimate entry could say as much, a forged one far more. Replaying it must not read
    // it whole into memory.
    const SIZE: u64 = 48 << 20;
    let repo = Repo::in_sandbox(BUILD, &[("src/in.txt", "in\n")]);
    let run = repo.json(&["task"]);
    run.assert_code(0);
    let key = run.task("task:gen")["key"].as_str().unwrap().to_string();
    // The same restore and replay with the entry as it is: what a run costs anyway (a debug
    // build's code alone is tens of MiB).
    repo.remove("build/a.txt");
    let (code, stderr, baseline_kib) = run_measured(&repo, &["task"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let output = Command::new("sh")
        .args(["-c", &format!("head -c {SIZE} /dev/zero | sha256sum")])
        .output()
        .expect("sha256sum");
    let digest = String::from_utf8(output.stdout).unwrap()[..64].to_string();
    let cache = repo.join(".xbundle/cache");
    fs::File::create(cache.join("cas").join(&digest))
        .unwrap()
        .set_len(SIZE)
        .unwrap();
    let text = repo.packed_entry(&key).expect("the entry").text();
    // Rewritten as a file of its own, which the store reads before the pack.
    let entry = cache.join("ac").join(&key);
    let (_, body) = text.split_once('\n').unwrap();
    let mut body: serde_json::Value = serde_json::from_str(body).unwrap();
    body["stdout"] = serde_json::json!({"size": SIZE, "digest": digest});
    let body = body.to_string();
    let checksum = common::sha256_hex(format!("{key}\n{body}").as_bytes());
    fs::write(&entry, format!("xbundle-ac-v2 {key} {checksum}\n{body}")).unwrap();
    // A restore replays the captured output (an up-to-date task prints nothing).
    repo.remove("build/a.txt");

    let (code, stderr, peak_kib) = run_measured(&repo, &["task"], &[]);
    assert_eq!(code, 0, "{stderr}");
    // Reading it whole would take 48 MiB more; pieces of at most 1 MiB (and what holds them)
    // take a few.
    assert!(
        peak_kib < baseline_kib + (16 << 10),
        "replaying 48 MiB of output peaked at {peak_kib} KiB of memory, {baseline_kib} KiB without"
    );
}

#[test]
fn a_file_where_the_engine_keeps_a_directory_is_bad_input() {
    // The cache directory named by the user is a file; an area of the cache is a file.
    let repo = Repo::in_sandbox(BUILD, &[("src/in.txt", "in\n")]);
    let canary = Canary::plant(&repo.sandbox().join("outside"), &[]);
    let file = canary.dir.join("precious.txt");
    let env = [("XBUNDLE_CACHE_DIR", file.to_str().unwrap())];
    for args in COMMANDS {
        let run = repo.json_env(args, &env);
        run.assert_code(2);
        let message = run.diagnostic()["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("`{}` is not a directory", file.display())),
            "{args:?}\n{run}"
        );
        canary.assert_intact(&format!("{args:?} with the cache dir a file"));
    }
    repo.write(".xbundle/cache/cas", "mine\n");
    for args in COMMANDS {
        let run = repo.json(args);
        run.assert_code(2);
        let message = run.diagnostic()["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("`.xbundle/cache/cas` is not a directory"),
            "{args:?}\n{run}"
        );
        assert_eq!(repo.read(".xbundle/cache/cas"), "mine\n");
    }
}

/// Runs `check` with a watchdog (see [`run_bounded`]).
fn check_bounded(repo: &Repo) -> Run {
    run_bounded(repo, &["check"], &[])
}

#[test]
fn definitions_that_are_fifos_or_huge_are_refused_not_waited_on() {
    // A repository is untrusted input too: bundle.toml, a scenario's service.json and a
    // platform file are read only as regular files of a sane size, never as a FIFO (which
    // would hang `check` until someone writes to it).
    let scenario = r#"{"service": {"name": "app", "version": "1.0.0", "type": "scenario"}, "ports": {"api": {"env_var": "API_PORT", "range": "15000-19999"}}}"#;
    let bundle = "[workspace]\ndefault-profile = \"p\"\n\n[profiles.p]\nscenario = \"app\"\ntier = \"desktop\"\n";
    let mkfifo = |path: &Path| {
        let _ = fs::remove_file(path);
        let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
        assert!(status.success());
    };
    for (fifo, named) in [
        (
            "scenarios/app/.vrooli/service.json",
            "scenarios/app/.vrooli/service.json",
        ),
        ("bundle.toml", "bundle.toml"),
        ("platforms/evil.toml", "platforms/evil.toml"),
    ] {
        let repo = Repo::in_sandbox(
            bundle,
            &[
                ("scenarios/app/.vrooli/service.json", scenario),
                (
                    "platforms/linux-x64.toml",
                    &fs::read_to_string(
                        Path::new(env!("CARGO_MANIFEST_DIR")).join("../platforms/linux-x64.toml"),
                    )
                    .unwrap(),
                ),
            ],
        );
        mkfifo(&repo.join(fifo));
        let run = check_bounded(&repo);
        run.assert_code(2);
        let message = run.diagnostic()["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(named) && message.contains("a FIFO, not a regular file"),
            "{fifo}\n{run}"
        );
    }
    // 17 MiB of comment: more than any definition needs; refused before it is parsed.
    let repo = Repo::in_sandbox(bundle, &[("scenarios/app/.vrooli/service.json", scenario)]);
    let mut huge = String::from(bundle);
    huge.push('#');
    huge.push_str(&"x".repeat(17 << 20));
    repo.write("bundle.toml", &huge);
    let run = check_bounded(&repo);
    run.assert_code(2);
    let message = run.diagnostic()["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("bundle.toml") && message.contains("more than"),
        "{run}"
    );
}

/// The ledger's files given another name (a backup made with `cp -al`), or its bodies file
/// replaced by a link: the engine never appends through them, and it does not give the ledger
/// up either (a warning for every task of every run, `explain` knowing no run from then on):
/// the next record starts a new pair of files in their place, keeping the records it can read.
#[test]
fn a_ledger_linked_elsewhere_is_replaced_not_written_through_nor_given_up() {
    let bundle = format!(
        "{BUILD}\n[tasks.other]\nrun = \"cp src/o.txt o.out\"\ninputs = [\"src/o.txt\"]\noutputs = [\"o.out\"]\n"
    );
    let repo = Repo::in_sandbox(&bundle, &[("src/in.txt", "1\n"), ("src/o.txt", "o\n")]);
    repo.json(&["task"]).assert_code(0);
    let ledger = repo.join(".xbundle/state/ledger");
    let backup = repo.sandbox().join("backup");
    fs::create_dir(&backup).unwrap();
    for entry in fs::read_dir(&ledger).unwrap() {
        let entry = entry.unwrap();
        fs::hard_link(entry.path(), backup.join(entry.file_name())).unwrap();
    }
    let canary = Canary::plant(&backup, &[("foreign.txt", "mine\n")]);
    let last = |id: &str| {
        let run = repo.json(&["explain", id]);
        run.assert_code(0);
        run.events("explain")[0]["last"].clone()
    };
    for (round, attack) in ["hard links", "a symbolic link"].into_iter().enumerate() {
        if round == 1 {
            let keys = fs::read_to_string(ledger.join("keys")).unwrap();
            let bodies = keys
                .lines()
                .next()
                .unwrap()
                .rsplit(' ')
                .next()
                .unwrap()
                .to_string();
            fs::remove_file(ledger.join(&bodies)).unwrap();
            symlink(backup.join("foreign.txt"), ledger.join(&bodies)).unwrap();
        }
        repo.write("src/in.txt", format!("{round} changed\n"));
        let run = repo.json(&["task"]);
        run.assert_code(0);
        assert_eq!(run.status("task:gen"), "ran", "{attack}: {run}");
        assert_eq!(run.warnings(), Vec::<String>::new(), "{attack}: {run}");
        canary.assert_intact(attack);
        // Recorded (after a link in place of the bodies, whose old records cannot be read,
        // as a first run).
        let recorded = last("task:gen");
        assert!(recorded.is_object(), "{attack}: no run recorded");
        if round == 0 {
            assert!(
                recorded["reasons"].to_string().contains("src/in.txt"),
                "{attack}: {recorded}"
            );
            // The other task's record was read from the old pair and kept.
            assert!(last("task:other").is_object(), "{attack}");
        }
    }
}
