//! Assets (`[[assets]]`, `[runtime.<platform>]`, `fetch:` tasks) through the real binary,
//! against a server on 127.0.0.1 that misbehaves on command (`xtask/src/testserver.rs`): good
//! downloads, checksum mismatches, retries, cut and truncated bodies, stalls, redirects, resume
//! with `Range`, `--offline`, the CAS shared by profiles, platforms and runs, and hostile
//! archives. Each repository lives in a sandbox beside a canary tree that must stay intact.

use crate::common;
use crate::testserver;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Canary, Repo, Run};
use serde_json::Value;
use testserver::{Behaviour, Server};

const SCENARIO: &str = r#"{"service": {"name": "app", "type": "scenario", "version": "1.0.0"},
 "ports": {"api": {"env_var": "API_PORT", "range": "15000-15010"}}}"#;

/// Fast retries and timeouts: the tests' servers answer at once or never.
const PATIENCE: [(&str, &str); 3] = [
    ("XBUNDLE_FETCH_TIMEOUT_MS", "400"),
    ("XBUNDLE_FETCH_ATTEMPTS", "3"),
    ("XBUNDLE_FETCH_BACKOFF_MS", "10"),
];

fn sha256(bytes: &[u8]) -> String {
    use std::process::{Command, Stdio};
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// Bytes that do not compress and are not all alike.
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

/// A repository (in a sandbox, with a canary tree beside it) with a scenario, two platforms,
/// profile `p` (and `q`) on `linux-x64`, and `assets` (TOML) appended.
struct Fixture {
    repo: Repo,
    canary: Canary,
}

impl Fixture {
    fn new(assets: &str) -> Fixture {
        let bundle = format!(
            "[workspace]\ndefault-profile = \"p\"\n\n[profiles.p]\nscenario = \"app\"\ntier = \"desktop\"\nplatforms = [\"linux-x64\"]\n\n[profiles.q]\nscenario = \"app\"\ntier = \"desktop\"\nplatforms = [\"linux-x64\", \"win-x64\"]\n\n{assets}"
        );
        let platforms = Path::new(env!("CARGO_MANIFEST_DIR")).join("../platforms");
        let linux = std::fs::read_to_string(platforms.join("linux-x64.toml")).unwrap();
        let win = std::fs::read_to_string(platforms.join("win-x64.toml")).unwrap();
        let repo = Repo::in_sandbox(
            &bundle,
            &[
                ("scenarios/app/.vrooli/service.json", SCENARIO),
                ("platforms/linux-x64.toml", &linux),
                ("platforms/win-x64.toml", &win),
            ],
        );
        let canary = Canary::plant(&repo.sandbox().join("canary"), &[]);
        Fixture { repo, canary }
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = self.repo.command();
        command.env_remove("XBUNDLE_OFFLINE");
        for (name, value) in PATIENCE.iter().chain(env) {
            command.env(name, value);
        }
        command.args(["--message-format", "json"]).args(args);
        Run::parse_json(args, command.output().expect("run xtask"))
    }

    /// Every file below `dist/.build/assets/<id>` (relative to it).
    fn fetched_files(&self, id: &str) -> Vec<String> {
        let base = self.repo.join(&format!("dist/.build/assets/{id}"));
        let mut files = Vec::new();
        walk(&base, &base, &mut files);
        files.sort();
        files
    }

    fn entry(&self, id: &str, platform: &str) -> Value {
        serde_json::from_str(
            &self
                .repo
                .read(&format!("dist/.build/assets/{id}/{platform}/asset.json")),
        )
        .unwrap()
    }

    /// Whether any CAS blob holds exactly `bytes`.
    fn cached(&self, bytes: &[u8]) -> bool {
        self.repo
            .state_files("cache/cas")
            .iter()
            .any(|path| std::fs::read(path).is_ok_and(|held| held == bytes))
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            walk(root, &entry.path(), out);
        } else {
            out.push(
                entry
                    .path()
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
}

/// What `xbundle::assets::fetched` (the stage's reader) finds for `id` on linux-x64.
fn staged(fixture: &Fixture, id: &str) -> xbundle::assets::Fetched {
    let tree = engine::confine::Dir::open_root(fixture.repo.path()).unwrap();
    xbundle::assets::fetched(&tree, camino::Utf8Path::new("dist"), id, "linux-x64").unwrap()
}

/// The error message of a failed task.
fn error_of(run: &Run, id: &str) -> String {
    run.task(id)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn asset(id: &str, url: &str, sha: &str, extra: &str) -> String {
    format!("[[assets]]\nid = \"{id}\"\nurl = \"{url}\"\nsha256 = \"{sha}\"\n{extra}\n")
}

#[test]
fn a_good_download_lands_with_its_entry_and_is_cached() {
    let server = Server::start();
    let body = payload(300_000, 1);
    server.route("/model.bin", body.clone(), Behaviour::Serve);
    let fixture = Fixture::new(&asset(
        "model",
        &server.url("/model.bin"),
        &sha256(&body),
        "",
    ));
    let run = fixture.run(&["bundle", "p"], &[]);
    run.assert_code(0);
    assert_eq!(run.status("fetch:model@linux-x64"), "ran");
    assert_eq!(
        fixture
            .repo
            .read_bytes("dist/.build/assets/model/linux-x64/files/assets/model/model.bin"),
        body
    );
    let entry = fixture.entry("model", "linux-x64");
    assert_eq!(entry["path"], "assets/model/model.bin");
    assert_eq!(entry["sha256"], sha256(&body));
    assert_eq!(entry["size_bytes"], body.len());
    assert_eq!(entry["url"], server.url("/model.bin"));
    assert!(fixture.cached(&body), "the download is in the CAS");
    assert_eq!(server.count("/model.bin"), 1);
    // What staging reads back: the files' directory and the bundle.json entry.
    let fetched = staged(&fixture, "model");
    assert_eq!(
        fetched.files.as_str(),
        "dist/.build/assets/model/linux-x64/files"
    );
    assert_eq!(serde_json::to_value(&fetched.entry).unwrap(), entry);
    fixture.canary.assert_intact("a good download");
}

#[test]
fn a_checksum_mismatch_names_both_digests_and_keeps_nothing() {
    let server = Server::start();
    let body = payload(100_000, 2);
    server.route("/x.bin", body.clone(), Behaviour::Serve);
    let wrong = "ab".repeat(32);
    let fixture = Fixture::new(&asset("x", &server.url("/x.bin"), &wrong, ""));
    let run = fixture.run(&["bundle", "p"], &[]);
    run.assert_code(1);
    let error = error_of(&run, "fetch:x@linux-x64");
    assert!(error.contains(&wrong), "{error}");
    assert!(error.contains(&sha256(&body)), "{error}");
    assert_eq!(fixture.fetched_files("x"), Vec::<String>::new());
    assert!(
        !fixture.repo.exists("dist/.build/assets/x/linux-x64"),
        "the empty directories are gone too"
    );
    assert!(!fixture.cached(&body), "nothing entered the CAS");
    assert_eq!(
        server.count("/x.bin"),
        1,
        "a mismatch is not retried: the server would send the same bytes"
    );
    fixture.canary.assert_intact("a checksum mismatch");
}

#[test]
fn server_errors_are_retried_until_it_answers() {
    let server = Server::start();
    let body = payload(50_000, 3);
    server.route(
        "/flaky.bin",
        body.clone(),
        Behaviour::Status {
            code: 503,
            times: 2,
        },
    );
    server.route(
        "/gone.bin",
        body.clone(),
        Behaviour::Status {
            code: 404,
            times: u32::MAX,
        },
    );
    let fixture = Fixture::new(&format!(
        "{}{}",
        asset("flaky", &server.url("/flaky.bin"), &sha256(&body), ""),
        // Another digest: the same one would be found in the CAS, with no request at all.
        asset(
            "gone",
            &server.url("/gone.bin"),
            &"11".repeat(32),
            "dest = \"assets/gone.bin\""
        )
    ));
    // Nothing here stalls: a generous timeout, so a loaded machine cannot turn one of the
    // three attempts into a timeout (the test is about the status codes).
    let run = fixture.run(&["bundle", "p"], &[("XBUNDLE_FETCH_TIMEOUT_MS", "10000")]);
    run.assert_code(1);
    assert_eq!(run.status("fetch:flaky@linux-x64"), "ran", "{run}");
    assert_eq!(server.count("/flaky.bin"), 3, "two 503s, then the body");
    let error = error_of(&run, "fetch:gone@linux-x64");
    assert!(error.contains("404"), "{error}");
    assert_eq!(server.count("/gone.bin"), 1, "a 404 is not retried");
    assert_eq!(fixture.fetched_files("gone"), Vec::<String>::new());
}

#[test]
fn a_cut_body_is_resumed_with_range() {
    let server = Server::start();
    let body = payload(400_000, 4);
    server.route(
        "/big.bin",
        body.clone(),
        Behaviour::Cut {
            after: 150_000,
            times: 1,
        },
    );
    let fixture = Fixture::new(&asset("big", &server.url("/big.bin"), &sha256(&body), ""));
    let run = fixture.run(&["bundle", "p"], &[]);
    run.assert_code(0);
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].range, None);
    assert_eq!(
        seen[1].range.as_deref(),
        Some("bytes=150000-"),
        "the second request asks for the rest"
    );
    assert_eq!(
        fixture
            .repo
            .read_bytes("dist/.build/assets/big/linux-x64/files/assets/big/big.bin"),
        body
    );
}

#[test]
fn a_server_without_ranges_is_read_again_from_the_start() {
    let server = Server::start();
    let body = payload(300_000, 5);
    server.route_with(
        "/big.bin",
        body.clone(),
        Behaviour::Cut {
            after: 100_000,
            times: 1,
        },
        false,
    );
    let fixture = Fixture::new(&asset("big", &server.url("/big.bin"), &sha256(&body), ""));
    let run = fixture.run(&["bundle", "p"], &[]);
    run.assert_code(0);
    assert_eq!(server.count("/big.bin"), 2);
    assert_eq!(
        fixture
            .repo
            .read_bytes("dist/.build/assets/big/linux-x64/files/assets/big/big.bin"),
        body,
        "the second, whole body replaced the first's part (not appended to it)"
    );
}

#[test]
fn a_body_that_is_always_truncated_fails_and_leaves_nothing() {
    let server = Server::start();
    let body = payload(200_000, 6);
    server.route_with(
        "/short.bin",
        body.clone(),
        Behaviour::Cut {
            after: 50_000,
            times: u32::MAX,
        },
        false,
    );
    let fixture = Fixture::new(&asset(
        "short",
        &server.url("/short.bin"),
        &sha256(&body),
        "",
    ));
    let run = fixture.run(&["bundle", "p"], &[]);
    run.assert_code(1);
    let error = error_of(&run, "fetch:short@linux-x64");
    assert!(error.contains("3 attempts"), "{error}");
    assert!(
        error.contains("50000") && error.contains("200000"),
        "says how much arrived of what: {error}"
    );
    assert_eq!(server.count("/short.bin"), 3);
    assert_eq!(fixture.fetched_files("short"), Vec::<String>::new());
    assert!(!fixture.cached(&body[..50_000]));
    fixture.canary.assert_intact("a truncated body");
}

#[test]
fn a_stalled_server_times_out() {
    let server = Server::start();
    server.route("/stall.bin", vec![1; 10], Behaviour::Stall);
    let fixture = Fixture::new(&asset(
        "stall",
        &server.url("/stall.bin"),
        &"00".repeat(32),
        "",
    ));
    let run = fixture.run(&["bundle", "p"], &[("XBUNDLE_FETCH_ATTEMPTS", "2")]);
    run.assert_code(1);
    let error = error_of(&run, "fetch:stall@linux-x64");
    assert!(error.contains("timed out"), "{error}");
    assert!(error.contains("2 attempts"), "{error}");
    assert_eq!(server.count("/stall.bin"), 2);
    assert_eq!(fixture.fetched_files("stall"), Vec::<String>::new());
}

#[test]
fn redirects_are_followed_and_bounded() {
    let server = Server::start();
    let body = payload(20_000, 7);
    server.route("/real.bin", body.clone(), Behaviour::Serve);
    server.route(
        "/old.bin",
        Vec::new(),
        Behaviour::Redirect {
            to: "/real.bin".into(),
        },
    );
    server.route(
        "/loop.bin",
        Vec::new(),
        Behaviour::Redirect {
            to: "/loop.bin".into(),
        },
    );
    let fixture = Fixture::new(&format!(
        "{}{}",
        asset("moved", &server.url("/old.bin"), &sha256(&body), ""),
        asset("looping", &server.url("/loop.bin"), &"22".repeat(32), "")
    ));
    let run = fixture.run(&["bundle", "p"], &[]);
    run.assert_code(1);
    assert_eq!(run.status("fetch:moved@linux-x64"), "ran");
    assert_eq!(
        fixture
            .repo
            .read_bytes("dist/.build/assets/moved/linux-x64/files/assets/moved/old.bin"),
        body
    );
    assert_eq!(
        (server.count("/old.bin"), server.count("/real.bin")),
        (1, 1)
    );
    let error = error_of(&run, "fetch:looping@linux-x64");
    assert!(error.contains("redirects"), "{error}");
    assert!(
        server.count("/loop.bin") <= 7,
        "bounded: {}",
        server.count("/loop.bin")
    );
}

#[test]
fn offline_runs_use_the_cache_and_fail_clearly_without_it() {
    let server = Server::start();
    let body = payload(30_000, 8);
    server.route("/a.bin", body.clone(), Behaviour::Serve);
    let fixture = Fixture::new(&asset("a", &server.url("/a.bin"), &sha256(&body), ""));
    let cache = fixture.repo.sandbox().join("shared-cache");
    let cache = cache.to_str().unwrap();
    // Nothing cached: --offline refuses, and nothing reaches the server.
    let run = fixture.run(
        &["bundle", "p", "--offline"],
        &[("XBUNDLE_CACHE_DIR", cache)],
    );
    run.assert_code(1);
    let error = error_of(&run, "fetch:a@linux-x64");
    assert!(
        error.contains("not in the cache") && error.contains("offline"),
        "{error}"
    );
    let run = fixture.run(
        &["task", "fetch:a@linux-x64"],
        &[("XBUNDLE_CACHE_DIR", cache), ("XBUNDLE_OFFLINE", "1")],
    );
    run.assert_code(1);
    assert!(error_of(&run, "fetch:a@linux-x64").contains("offline"));
    assert_eq!(server.count("/a.bin"), 0);
    // Online once, then offline in another checkout sharing the cache: nothing downloaded.
    fixture
        .run(&["bundle", "p"], &[("XBUNDLE_CACHE_DIR", cache)])
        .assert_code(0);
    assert_eq!(server.count("/a.bin"), 1);
    let other = fixture.repo.copy_without_state();
    std::fs::remove_dir_all(other.join("dist")).unwrap();
    let mut command = other.command();
    command.env("XBUNDLE_CACHE_DIR", cache).args([
        "--message-format",
        "json",
        "bundle",
        "p",
        "--offline",
    ]);
    let run = Run::parse_json(&["bundle"], command.output().unwrap());
    run.assert_code(0);
    assert_eq!(
        other.read_bytes("dist/.build/assets/a/linux-x64/files/assets/a/a.bin"),
        body
    );
    assert_eq!(server.count("/a.bin"), 1);
}

#[test]
fn run_offline_downloads_nothing_either() {
    // `run` stages like `bundle` (here with a service and a runtime that come as assets), and
    // honours --offline the same way: with nothing cached, the fetches fail and nothing is
    // requested.
    let server = Server::start();
    let body = payload(30_000, 11);
    server.route("/a.bin", body.clone(), Behaviour::Serve);
    let extra = format!(
        "{}\n[profiles.p.builds.app-api]\ntype = \"none\"\n\n[runtime.linux-x64]\nurl = \"{}\"\nsha256 = \"{}\"\n",
        asset("a", &server.url("/a.bin"), &sha256(&body), ""),
        server.url("/runtime.bin"),
        sha256(b"not fetched"),
    );
    let fixture = Fixture::new(&extra);
    let run = fixture.run(&["run", "p", "--offline"], &[]);
    run.assert_code(1);
    assert!(
        error_of(&run, "fetch:a@linux-x64").contains("offline"),
        "{run}"
    );
    assert_eq!(server.count("/a.bin"), 0);
    assert_eq!(server.count("/runtime.bin"), 0);
}

#[test]
fn run_prints_every_json_line_before_it_becomes_the_runtime() {
    // `run` ends by `exec`ing the runtime, which no drop survives: the `timings` line, held
    // because it follows `build-finished` within milliseconds, is written before that.
    let server = Server::start();
    let runtime = b"#!/bin/sh\necho \"RUNTIME-STARTED\"\n".to_vec();
    let api = b"#!/bin/sh\nexit 0\n".to_vec();
    server.route("/runtime.bin", runtime.clone(), Behaviour::Serve);
    server.route("/api.bin", api.clone(), Behaviour::Serve);
    let extra = format!(
        "[profiles.p.builds.app-api]\ntype = \"none\"\n\n[runtime.linux-x64]\nurl = \"{}\"\nsha256 = \"{}\"\n\n{}",
        server.url("/runtime.bin"),
        sha256(&runtime),
        asset(
            "api",
            &server.url("/api.bin"),
            &sha256(&api),
            "platforms = [\"linux-x64\"]\ndest = \"bin/app-api/linux-x64/app-api\"",
        ),
    );
    let fixture = Fixture::new(&extra);
    let mut command = fixture.repo.command();
    for (name, value) in PATIENCE {
        command.env(name, value);
    }
    let output = command
        .args(["--message-format", "json", "run", "p", "--timings"])
        .output()
        .expect("run xtask");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let at = |wanted: &dyn Fn(&str) -> bool| lines.iter().position(|line| wanted(line));
    let finished = at(&|line| line.contains("\"event\":\"build-finished\""));
    let timings = at(&|line| line.contains("\"event\":\"timings\""));
    let runtime_started = at(&|line| line == "RUNTIME-STARTED");
    assert!(
        output.status.success()
            && finished.is_some()
            && timings > finished
            && runtime_started > timings,
        "{}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn other_profiles_platforms_and_runs_download_nothing() {
    let server = Server::start();
    let body = payload(100_000, 9);
    server.route("/shared.bin", body.clone(), Behaviour::Serve);
    let fixture = Fixture::new(&asset(
        "shared",
        &server.url("/shared.bin"),
        &sha256(&body),
        "",
    ));
    fixture.run(&["bundle", "p"], &[]).assert_code(0);
    assert_eq!(server.count("/shared.bin"), 1);
    // Profile q: the same file for linux-x64 (the same task) and win-x64 (from the CAS).
    let run = fixture.run(&["bundle", "q"], &[]);
    run.assert_code(0);
    assert_eq!(run.status("fetch:shared@win-x64"), "ran");
    assert_eq!(run.status("fetch:shared@linux-x64"), "cached");
    assert_eq!(server.count("/shared.bin"), 1, "{:?}", server.seen());
    // Everything again: nothing runs, nothing is downloaded.
    let run = fixture.run(&["bundle", "q"], &[]);
    run.assert_code(0);
    assert_eq!(run.counts().0, 0, "{run}");
    assert_eq!(server.count("/shared.bin"), 1);
    // The outputs removed: restored from the cache, still no request.
    std::fs::remove_dir_all(fixture.repo.join("dist/.build")).unwrap();
    fixture.run(&["bundle", "q"], &[]).assert_code(0);
    assert_eq!(
        fixture
            .repo
            .read_bytes("dist/.build/assets/shared/win-x64/files/assets/shared/shared.bin"),
        body
    );
    assert_eq!(server.count("/shared.bin"), 1);
}

#[test]
fn a_profile_takes_the_assets_it_names_on_its_platforms() {
    let server = Server::start();
    let body = payload(1000, 10);
    server.route("/a.bin", body.clone(), Behaviour::Serve);
    let sha = sha256(&body);
    let fixture = Fixture::new(&format!(
        "{}{}{}",
        asset("everywhere", &server.url("/a.bin"), &sha, ""),
        asset(
            "windows",
            &server.url("/a.bin"),
            &sha,
            "platforms = [\"win-x64\"]"
        ),
        asset("unnamed", &server.url("/a.bin"), &sha, "")
    ));
    // Restrict q to two of them.
    let toml = fixture.repo.read("bundle.toml").replace(
        "platforms = [\"linux-x64\", \"win-x64\"]\n",
        "platforms = [\"linux-x64\", \"win-x64\"]\nassets = [\"everywhere\", \"windows\"]\n",
    );
    fixture.repo.write("bundle.toml", toml);
    let run = fixture.run(&["bundle", "q"], &[]);
    run.assert_code(0);
    let fetched: Vec<String> = run
        .statuses()
        .into_keys()
        .filter(|id| id.starts_with("fetch:"))
        .collect();
    assert_eq!(
        fetched,
        [
            "fetch:everywhere@linux-x64",
            "fetch:everywhere@win-x64",
            "fetch:windows@win-x64"
        ]
    );
    let run = fixture.run(&["bundle", "p"], &[]);
    let fetched: Vec<String> = run
        .statuses()
        .into_keys()
        .filter(|id| id.starts_with("fetch:"))
        .collect();
    assert_eq!(
        fetched,
        ["fetch:everywhere@linux-x64", "fetch:unnamed@linux-x64"]
    );
}

#[test]
fn a_prebuilt_runtime_is_fetched_as_an_executable() {
    let server = Server::start();
    let body = b"#!/bin/sh\necho prebuilt runtime\n".to_vec();
    server.route("/xbundle-runtime.exe", body.clone(), Behaviour::Serve);
    let fixture = Fixture::new(&format!(
        "[runtime.win-x64]\nurl = \"{}\"\nsha256 = \"{}\"\n",
        server.url("/xbundle-runtime.exe"),
        sha256(&body)
    ));
    let run = fixture.run(&["task", "fetch:runtime@win-x64"], &[]);
    run.assert_code(0);
    let path = "dist/.build/assets/runtime/win-x64/files/xbundle-runtime.exe";
    assert_eq!(fixture.repo.read_bytes(path), body);
    let mode = std::fs::metadata(fixture.repo.join(path))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
}

#[test]
fn bad_asset_settings_are_located_errors() {
    let good = "0".repeat(64);
    for (assets, at, message) in [
        (
            format!(
                "[[assets]]\nid = \"Bad Id\"\nurl = \"https://e.org/x\"\nsha256 = \"{good}\"\n"
            ),
            (2, 6),
            "is not an asset id",
        ),
        (
            format!(
                "[[assets]]\nid = \"runtime\"\nurl = \"https://e.org/x\"\nsha256 = \"{good}\"\n"
            ),
            (2, 6),
            "reserved",
        ),
        (
            format!("[[assets]]\nid = \"x\"\nurl = \"ftp://e.org/x\"\nsha256 = \"{good}\"\n"),
            (3, 7),
            "only http://, https:// and file://",
        ),
        (
            format!(
                "[[assets]]\nid = \"x\"\nurl = \"https://e.org/x\"\nsha256 = \"{good}\"\ndest = \"../../etc/x\"\n"
            ),
            (5, 8),
            "dest `../../etc/x`",
        ),
        (
            format!(
                "[[assets]]\nid = \"x\"\nurl = \"https://e.org/x\"\nsha256 = \"{good}\"\nunpack = \"rar\"\n"
            ),
            (5, 10),
            "unpack `rar`",
        ),
        (
            format!(
                "[[assets]]\nid = \"x\"\nurl = \"https://e.org/x\"\nsha256 = \"{good}\"\nplatforms = [\"nowhere\"]\n"
            ),
            (5, 14),
            "unknown platform `nowhere`",
        ),
        (
            format!(
                "[[assets]]\nid = \"x\"\nurl = \"https://e.org/x\"\nsha256 = \"{good}\"\nmax-size = \"12Q\"\n"
            ),
            (5, 12),
            "max-size",
        ),
        (
            format!(
                "[[assets]]\nid = \"x\"\nurl = \"https://e.org/x\"\nsha256 = \"{good}\"\n[[assets]]\nid = \"y\"\nurl = \"https://e.org/y\"\nsha256 = \"{good}\"\ndest = \"assets/x/x\"\n"
            ),
            (9, 8),
            "overlapping paths",
        ),
        (
            format!("[runtime.\"../x\"]\nurl = \"https://e.org/x\"\nsha256 = \"{good}\"\n"),
            (1, 10),
            "is not a platform name",
        ),
    ] {
        let fixture = Fixture::new(&assets);
        let before = fixture.repo.snapshot();
        for command in [&["check"][..], &["bundle"], &["task"]] {
            let run = fixture.run(command, &[]);
            run.assert_code(2);
            let diagnostic = run.events("diagnostic")[0].clone();
            let text = diagnostic["message"].as_str().unwrap();
            assert!(text.contains(message), "{text}\n{assets}");
            assert_eq!(diagnostic["file"], "bundle.toml", "{diagnostic}");
            let header_lines = 13;
            assert_eq!(
                (
                    diagnostic["line"].as_u64().unwrap() - header_lines,
                    diagnostic["column"].as_u64().unwrap()
                ),
                (at.0, at.1),
                "{diagnostic}"
            );
            assert_eq!(
                fixture.repo.snapshot(),
                before,
                "{command:?} wrote something"
            );
        }
    }
    // A profile naming an asset nobody declared.
    let fixture = Fixture::new("");
    let toml = fixture.repo.read("bundle.toml").replace(
        "tier = \"desktop\"\nplatforms = [\"linux-x64\"]\n",
        "tier = \"desktop\"\nplatforms = [\"linux-x64\"]\nassets = [\"nope\"]\n",
    );
    fixture.repo.write("bundle.toml", toml);
    let run = fixture.run(&["check"], &[]);
    run.assert_code(2);
    assert!(
        run.events("diagnostic")[0]["message"]
            .as_str()
            .unwrap()
            .contains("unknown asset `nope`"),
        "{run}"
    );
}

#[test]
fn a_damaged_cache_blob_is_fetched_again_never_used() {
    let server = Server::start();
    let body = payload(64_000, 12);
    server.route("/a.bin", body.clone(), Behaviour::Serve);
    let fixture = Fixture::new(&asset("a", &server.url("/a.bin"), &sha256(&body), ""));
    fixture.run(&["bundle", "p"], &[]).assert_code(0);
    // The blob damaged in place (same size), then the task forced to run again.
    let blob = fixture.repo.blob_with(&body);
    let mut damaged = body.clone();
    damaged[100] ^= 0xff;
    std::fs::write(&blob, &damaged).unwrap();
    let run = fixture.run(&["task", "--force", "fetch:a@linux-x64"], &[]);
    run.assert_code(0);
    assert_eq!(server.count("/a.bin"), 2, "downloaded again");
    assert_eq!(
        fixture
            .repo
            .read_bytes("dist/.build/assets/a/linux-x64/files/assets/a/a.bin"),
        body
    );
    assert!(!fixture.cached(&damaged));
    assert!(fixture.cached(&body));
}

#[test]
fn a_fetch_killed_mid_download_leaves_nothing_the_next_run_trusts() {
    let server = Server::start();
    let body = payload(500_000, 11);
    server.route(
        "/slow.bin",
        body.clone(),
        Behaviour::Hang { after: 200_000 },
    );
    let fixture = Fixture::new(&asset("slow", &server.url("/slow.bin"), &sha256(&body), ""));
    let mut command = fixture.repo.command();
    command
        .env_remove("XBUNDLE_OFFLINE")
        .env("XBUNDLE_FETCH_TIMEOUT_MS", "60000")
        .args(["-q", "bundle", "p"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = command.spawn().unwrap();
    // Killed once the partial download is on disk.
    let dir = fixture.repo.join("dist/.build/assets/slow/linux-x64");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let partial = std::fs::read_dir(&dir).ok().and_then(|entries| {
            entries
                .flatten()
                .find(|entry| entry.metadata().is_ok_and(|m| m.len() >= 200_000))
        });
        if partial.is_some() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no partial download");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // SAFETY: a plain kill of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    assert!(!fixture.cached(&body[..200_000]));
    server.route("/slow.bin", body.clone(), Behaviour::Serve);
    let run = fixture.run(&["bundle", "p"], &[]);
    run.assert_code(0);
    assert_eq!(run.status("fetch:slow@linux-x64"), "ran");
    assert_eq!(
        fixture.fetched_files("slow"),
        [
            "linux-x64/asset.json",
            "linux-x64/files/assets/slow/slow.bin"
        ],
        "the partial download is gone"
    );
    assert_eq!(
        fixture
            .repo
            .read_bytes("dist/.build/assets/slow/linux-x64/files/assets/slow/slow.bin"),
        body
    );
    fixture.canary.assert_intact("a killed download");
}

// ---------------------------------------------------------------------------------------------
// Archives.

/// One entry of a hand-made tar: raw name, kind, data or link target, mode.
enum TarEntry<'a> {
    File(&'a [u8], &'a [u8], u32),
    Dir(&'a [u8]),
    Symlink(&'a [u8], &'a [u8]),
    HardLink(&'a [u8], &'a [u8]),
    Fifo(&'a [u8]),
    CharDevice(&'a [u8]),
}

/// A tar.gz written header by header (names and link targets as raw bytes: the `tar` crate's
/// builder refuses `..`, which is what these archives are for).
fn tar_gz(entries: &[TarEntry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        let (name, data, kind, link, mode): (&[u8], &[u8], tar::EntryType, &[u8], u32) = match entry
        {
            TarEntry::File(name, data, mode) => (name, data, tar::EntryType::Regular, b"", *mode),
            TarEntry::Dir(name) => (name, b"", tar::EntryType::Directory, b"", 0o755),
            TarEntry::Symlink(name, target) => (name, b"", tar::EntryType::Symlink, target, 0o777),
            TarEntry::HardLink(name, target) => (name, b"", tar::EntryType::Link, target, 0o644),
            TarEntry::Fifo(name) => (name, b"", tar::EntryType::Fifo, b"", 0o644),
            TarEntry::CharDevice(name) => (name, b"", tar::EntryType::Char, b"", 0o644),
        };
        {
            let gnu = header.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name);
            gnu.linkname[..link.len()].copy_from_slice(link);
        }
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// A zip of `(name, data, unix mode)` entries, deflated.
fn zip_of(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data, mode) in entries {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(*mode);
        if mode & 0o170000 == 0o120000 {
            writer
                .add_symlink(*name, std::str::from_utf8(data).unwrap(), options)
                .unwrap();
        } else {
            writer.start_file(*name, options).unwrap();
            writer.write_all(data).unwrap();
        }
    }
    writer.finish().unwrap().into_inner()
}

/// Serves `archive` as asset `id` (unpacked as `kind`) and runs `bundle p`.
fn unpack_run(archive: Vec<u8>, kind: &str, extra: &str) -> (Fixture, Run) {
    let server = Server::start();
    let sha = sha256(&archive);
    server.route("/archive", archive, Behaviour::Serve);
    let fixture = Fixture::new(&asset(
        "pack",
        &server.url("/archive"),
        &sha,
        &format!("unpack = \"{kind}\"\n{extra}"),
    ));
    let run = fixture.run(&["bundle", "p"], &[]);
    (fixture, run)
}

#[test]
fn archives_unpack_into_the_bundle_with_a_tree_digest() {
    let archive = tar_gz(&[
        TarEntry::Dir(b"./"),
        TarEntry::Dir(b"./bin/"),
        TarEntry::File(b"./bin/tool", b"#!/bin/sh\n", 0o755),
        TarEntry::File(b"./data/a.txt", b"alpha\n", 0o644),
        TarEntry::Symlink(b"./data/b.txt", b"a.txt"),
        TarEntry::HardLink(b"./c.txt", b"./data/a.txt"),
        TarEntry::Dir(b"./empty/"),
    ]);
    let (fixture, run) = unpack_run(archive, "tar.gz", "");
    run.assert_code(0);
    let base = "dist/.build/assets/pack/linux-x64/files/assets/pack";
    assert_eq!(
        fixture.fetched_files("pack"),
        [
            "linux-x64/asset.json",
            "linux-x64/files/assets/pack/bin/tool",
            "linux-x64/files/assets/pack/c.txt",
            "linux-x64/files/assets/pack/data/a.txt",
            "linux-x64/files/assets/pack/data/b.txt",
        ]
    );
    assert_eq!(fixture.repo.read(&format!("{base}/data/b.txt")), "alpha\n");
    let mode = |path: &str| {
        std::fs::metadata(fixture.repo.join(&format!("{base}/{path}")))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!((mode("bin/tool"), mode("c.txt")), (0o755, 0o644));
    // The entry's digest is the tree digest of manifest::tree, computed here independently.
    let line = |mode: &str, data: &[u8], path: &str| {
        format!("{mode} {} {} {path}\n", data.len(), sha256(data))
    };
    let listing = format!(
        "xbundle-tree-v1\n{}{}{}{}",
        line("755", b"#!/bin/sh\n", "bin/tool"),
        line("644", b"alpha\n", "c.txt"),
        line("644", b"alpha\n", "data/a.txt"),
        line("644", b"alpha\n", "data/b.txt"),
    );
    let entry = fixture.entry("pack", "linux-x64");
    assert_eq!(entry["path"], "assets/pack");
    assert_eq!(entry["unpacked"], true);
    assert_eq!(entry["sha256"], sha256(listing.as_bytes()));
    assert_eq!(entry["size_bytes"], 10 + 6 * 3);
    assert_eq!(staged(&fixture, "pack").entry.unpacked, Some(true));

    let archive = zip_of(&[
        ("bin/tool", b"#!/bin/sh\n", 0o100755),
        ("data/a.txt", b"alpha\n", 0o100644),
        ("data/b.txt", b"a.txt", 0o120777),
        ("c.txt", b"alpha\n", 0o100644),
    ]);
    let (fixture, run) = unpack_run(archive, "zip", "");
    run.assert_code(0);
    assert_eq!(
        fixture.entry("pack", "linux-x64")["sha256"],
        sha256(listing.as_bytes()),
        "the same files, the same tree digest"
    );
}

#[test]
fn hostile_archives_are_refused_and_leave_nothing() {
    let escape = b"../../../../../../../../../canary/evil.txt";
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "tar: ../ entry",
            tar_gz(&[
                TarEntry::File(b"good.txt", b"fine", 0o644),
                TarEntry::File(escape, b"evil", 0o644),
            ]),
            "tar.gz",
            "leaves its directory",
        ),
        (
            "tar: absolute entry",
            tar_gz(&[
                TarEntry::File(b"good.txt", b"fine", 0o644),
                TarEntry::File(b"/tmp/xbundle-evil.txt", b"evil", 0o644),
            ]),
            "tar.gz",
            "absolute path",
        ),
        (
            "tar: absolute symlink",
            tar_gz(&[
                TarEntry::File(b"good.txt", b"fine", 0o644),
                TarEntry::Symlink(b"passwd", b"/etc/passwd"),
            ]),
            "tar.gz",
            "leads to the absolute path",
        ),
        (
            "tar: escaping relative symlink",
            tar_gz(&[
                TarEntry::File(b"good.txt", b"fine", 0o644),
                TarEntry::Symlink(
                    b"sub/up",
                    b"../../../../../../../../../../canary/precious.txt",
                ),
            ]),
            "tar.gz",
            "leads out of its directory",
        ),
        (
            "tar: a file through an escaping directory link",
            tar_gz(&[
                TarEntry::Symlink(b"out", b"../../../../../../../../.."),
                TarEntry::File(b"out/canary/evil.txt", b"evil", 0o644),
            ]),
            "tar.gz",
            "leads out of its directory",
        ),
        (
            "tar: hard link out",
            tar_gz(&[
                TarEntry::File(b"good.txt", b"fine", 0o644),
                TarEntry::HardLink(b"h", b"../../../../../../../../../canary/precious.txt"),
            ]),
            "tar.gz",
            "leaves its directory",
        ),
        (
            "tar: FIFO",
            tar_gz(&[
                TarEntry::File(b"good.txt", b"fine", 0o644),
                TarEntry::Fifo(b"pipe"),
            ]),
            "tar.gz",
            "FIFO",
        ),
        (
            "tar: device",
            tar_gz(&[
                TarEntry::File(b"good.txt", b"fine", 0o644),
                TarEntry::CharDevice(b"null"),
            ]),
            "tar.gz",
            "device file",
        ),
        (
            "tar: .git",
            tar_gz(&[TarEntry::File(b".git/hooks/post-checkout", b"evil", 0o755)]),
            "tar.gz",
            "`.git`",
        ),
        (
            "zip: ../ entry",
            zip_of(&[
                ("good.txt", b"fine", 0o100644),
                (std::str::from_utf8(escape).unwrap(), b"evil", 0o100644),
            ]),
            "zip",
            "leaves its directory",
        ),
        (
            "zip: absolute symlink",
            zip_of(&[
                ("good.txt", b"fine", 0o100644),
                ("passwd", b"/etc/passwd", 0o120777),
            ]),
            "zip",
            "leads to the absolute path",
        ),
        (
            "zip: bomb (8 MiB of zeros, limit 1 MiB)",
            zip_of(&[
                ("good.txt", b"fine", 0o100644),
                ("zeros", &vec![0u8; 8 << 20], 0o100644),
            ]),
            "zip",
            "zip bomb",
        ),
        (
            "tar: bomb",
            tar_gz(&[
                TarEntry::File(b"good.txt", b"fine", 0o644),
                TarEntry::File(b"zeros", &vec![0u8; 4 << 20], 0o644),
            ]),
            "tar.gz",
            "zip bomb",
        ),
        (
            "tar: a link to a directory",
            tar_gz(&[
                TarEntry::File(b"d/good.txt", b"fine", 0o644),
                TarEntry::Symlink(b"l", b"d"),
            ]),
            "tar.gz",
            "directory",
        ),
        (
            "tar: twice the same name",
            tar_gz(&[
                TarEntry::File(b"a.txt", b"one", 0o644),
                TarEntry::File(b"./a.txt", b"two", 0o644),
            ]),
            "tar.gz",
            "appears twice",
        ),
        (
            "not an archive",
            b"just some bytes".to_vec(),
            "zip",
            "not a zip archive",
        ),
    ];
    for (what, archive, kind, message) in cases {
        let (fixture, run) = unpack_run(archive, kind, "max-unpacked-size = \"1M\"");
        run.assert_code(1);
        let error = error_of(&run, "fetch:pack@linux-x64");
        assert!(error.contains(message), "{what}: {error}");
        assert_eq!(
            fixture.fetched_files("pack"),
            Vec::<String>::new(),
            "{what}: nothing half-written"
        );
        assert!(
            !fixture.repo.exists("dist/.build/assets/pack"),
            "{what}: not even an empty directory"
        );
        fixture.canary.assert_intact(what);
        assert!(!Path::new("/tmp/xbundle-evil.txt").exists());
    }
}
