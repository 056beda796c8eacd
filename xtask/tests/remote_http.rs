//! The HTTP remote cache (bazel-remote layout) against a real WebDAV server: nginx (Debian's
//! nginx-light) started on 127.0.0.1 by each test, and small hand-made servers for the failures
//! nginx does not produce (a stall, 500s, garbage). Every case checks that the build is correct
//! and that a failing server costs exactly one warning.

use crate::common;

use common::remote::{
    BUNDLE, Fake, HMAC_KEY, Nginx, assert_correct, assert_degraded, assert_local_store_sound,
    build, free_port, outputs, response, source, uploaded, workspace,
};
use common::{Canary, ForgedOutput, Repo, Run, forge_entry, sha256_hex};

#[test]
fn a_clean_workspace_builds_nothing_with_a_shared_cache() {
    let Some(nginx) = Nginx::start() else { return };
    let a = workspace("hello\n");
    let b = workspace("hello\n");

    let run = build(&a, &nginx.url(), &[], &[]);
    run.assert_code(0);
    assert_eq!(run.counts(), (2, 0, 0, 0), "{run}");
    assert!(run.warnings().is_empty(), "{run}");
    assert_eq!(uploaded(&run), 2, "both results uploaded\n{run}");
    // Two entries, and the blobs: both outputs and gen's captured line.
    let files = nginx.files();
    assert_eq!(
        files.iter().filter(|f| f.starts_with("ac/")).count(),
        2,
        "{files:?}"
    );
    assert_eq!(
        files.iter().filter(|f| f.starts_with("cas/")).count(),
        3,
        "{files:?}"
    );

    // B: an empty local cache; everything comes from the server.
    let run = build(&b, &nginx.url(), &["--timings"], &[]);
    run.assert_code(0);
    assert_eq!(run.counts(), (0, 2, 0, 0), "nothing ran\n{run}");
    assert!(run.started().is_empty(), "{run}");
    assert!(run.warnings().is_empty(), "{run}");
    assert_eq!(source(&run, "task:gen"), "http");
    assert_eq!(source(&run, "task:pack"), "http");
    assert_eq!(uploaded(&run), 0, "a hit is not uploaded again");
    assert_eq!(
        outputs(&b),
        outputs(&a),
        "byte-identical outputs, same modes"
    );
    // gen's captured output is replayed from the fetched blob.
    let replayed: Vec<&str> = run
        .events("task-output")
        .into_iter()
        .filter_map(|event| event["text"].as_str())
        .collect();
    assert_eq!(replayed, ["generated\n"], "{run}");
    assert_local_store_sound(&b);
    // The timings page says where each result came from.
    let html = b.read("dist/xbundle-timings/timings.html");
    let rows: Vec<&str> = html
        .lines()
        .filter(|line| line.starts_with("<tr data-status=\"cached\">"))
        .collect();
    assert_eq!(rows.len(), 2, "{html}");
    assert!(
        rows.iter().all(|row| row.contains("<td>http</td>")),
        "{rows:?}"
    );

    // The fetched result is now local: the next run is a no-op from the local store.
    let run = build(&b, &nginx.url(), &[], &[]);
    assert_eq!(run.counts(), (0, 2, 0, 0));
    assert_eq!(source(&run, "task:gen"), "local");
    // Without the remote, too.
    b.remove("dist/pack.txt");
    let run = b.json(&["task"]);
    assert_eq!(run.counts(), (0, 2, 0, 0), "{run}");
    assert_eq!(source(&run, "task:pack"), "local");
    assert_eq!(outputs(&b), outputs(&a));
}

#[test]
fn bundle_toml_names_the_cache_and_the_options_override_it() {
    let Some(nginx) = Nginx::start() else { return };
    let toml = BUNDLE.replace(
        "remote-timeout = 2",
        &format!("remote-timeout = 2\nremote = \"{}\"", nginx.url()),
    );
    let a = Repo::new(&toml, &[("src/in.txt", "one\n")]);
    let run = a.json(&["task"]);
    run.assert_code(0);
    assert_eq!(uploaded(&run), 2, "{run}");
    let check = a.json(&["check"]);
    check.assert_code(0);

    // --no-remote-cache: the server is not used.
    let b = Repo::new(&toml, &[("src/in.txt", "one\n")]);
    let run = b.json(&["task", "--no-remote-cache"]);
    assert_eq!(run.counts(), (2, 0, 0, 0), "{run}");
    assert_eq!(uploaded(&run), 0);
    // The configured cache.
    let c = Repo::new(&toml, &[("src/in.txt", "one\n")]);
    let run = c.json(&["task"]);
    assert_eq!(run.counts(), (0, 2, 0, 0), "{run}");
    // --remote-cache overrides it: a closed port, one warning, a local build.
    let d = Repo::new(&toml, &[("src/in.txt", "one\n")]);
    let closed = format!("http://127.0.0.1:{}", free_port());
    let run = d.json(&["task", "--remote-cache", &closed]);
    assert_degraded(&run, &d, "one\n", &closed, "");
}

#[test]
fn read_only_fetches_and_never_uploads() {
    let Some(nginx) = Nginx::start() else { return };
    let a = workspace("hello\n");
    build(&a, &nginx.url(), &[], &[]).assert_code(0);
    let before = nginx.files();
    assert_eq!(before.len(), 5, "{before:?}");

    let b = workspace("hello\n");
    let run = build(&b, &nginx.url(), &["--remote-cache-read-only"], &[]);
    assert_eq!(run.counts(), (0, 2, 0, 0), "read-only still reads\n{run}");
    b.write("src/in.txt", "changed\n");
    let run = build(&b, &nginx.url(), &["--remote-cache-read-only"], &[]);
    run.assert_code(0);
    assert_eq!(run.counts(), (2, 0, 0, 0), "{run}");
    assert_eq!(uploaded(&run), 0);
    assert_correct(&b, "changed\n");
    assert_eq!(nginx.files(), before, "nothing new on the server");

    // The same from bundle.toml.
    let toml = BUNDLE.replace(
        "remote-timeout = 2",
        "remote-timeout = 2\nremote-read-only = true",
    );
    let c = Repo::new(&toml, &[("src/in.txt", "other\n")]);
    let run = build(&c, &nginx.url(), &[], &[]);
    assert_eq!(run.counts(), (2, 0, 0, 0), "{run}");
    assert_eq!(uploaded(&run), 0);
    assert_eq!(nginx.files(), before, "nothing new on the server");
}

#[test]
fn a_server_that_is_down_costs_one_warning() {
    let url = format!("http://127.0.0.1:{}/cache", free_port());
    let repo = workspace("down\n");
    let run = build(&repo, &url, &[], &[]);
    assert_degraded(&run, &repo, "down\n", &url, "GET ");
    assert_eq!(uploaded(&run), 0);
}

#[test]
fn a_stalled_server_costs_one_warning_and_the_timeout() {
    let fake = Fake::start(|_, _| None);
    let repo = workspace("stalled\n");
    let run = build(&repo, &fake.url(), &[], &[]);
    assert_degraded(&run, &repo, "stalled\n", &fake.url(), "timed out");
    assert_eq!(fake.requests(), 1, "one request, then the tier is off");
}

#[test]
fn a_server_answering_500_costs_one_warning() {
    let fake = Fake::start(|_, _| Some(response("500 Internal Server Error", b"oops")));
    let repo = workspace("five hundred\n");
    let run = build(&repo, &fake.url(), &[], &[]);
    assert_degraded(&run, &repo, "five hundred\n", &fake.url(), "answered 500");
    // Uploads are not attempted once it is off.
    assert_eq!(fake.requests(), 1);
}

#[test]
fn garbage_entries_cost_one_warning() {
    let fake = Fake::start(|method, path| {
        Some(if method == "GET" && path.contains("/ac/") {
            response("200 OK", b"\x00\xffnot an entry at all\n{]")
        } else {
            response("404 Not Found", b"")
        })
    });
    let repo = workspace("junk\n");
    let run = build(&repo, &fake.url(), &[], &[]);
    assert_degraded(&run, &repo, "junk\n", &fake.url(), "unusable entry");
}

/// Uploads from a workspace of `input` to nginx; returns gen's key.
fn uploaded_by_a(nginx: &Nginx, input: &str, env: &[(&str, &str)]) -> String {
    let a = workspace(input);
    let run = build(&a, &nginx.url(), &[], env);
    run.assert_code(0);
    assert_eq!(uploaded(&run), 2, "{run}");
    run.task("task:gen")["key"].as_str().unwrap().to_string()
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_never_kept() {
    let Some(nginx) = Nginx::start() else { return };
    uploaded_by_a(&nginx, "blob\n", &[]);
    // The server's copy of gen's output: same size, other bytes.
    let blob = nginx.area("cas").join(sha256_hex(b"BLOB\n"));
    std::fs::write(&blob, b"EVIL\n").unwrap();

    let b = workspace("blob\n");
    let run = build(&b, &nginx.url(), &[], &[]);
    assert_degraded(
        &run,
        &b,
        "blob\n",
        &nginx.url(),
        "does not match its digest",
    );
    let kept: Vec<Vec<u8>> = b
        .state_files("cache/cas")
        .iter()
        .map(|path| std::fs::read(path).unwrap())
        .collect();
    assert!(
        !kept.contains(&b"EVIL\n".to_vec()),
        "the bad bytes were not kept"
    );
    // No temporary file left behind either.
    for path in b.state_files("cache") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.starts_with(".tmp"), "{}", path.display());
    }
}

#[test]
fn a_blob_longer_than_the_entry_says_is_refused() {
    let Some(nginx) = Nginx::start() else { return };
    uploaded_by_a(&nginx, "long\n", &[]);
    let blob = nginx.area("cas").join(sha256_hex(b"LONG\n"));
    std::fs::write(&blob, b"LONG\nand a great deal more after it\n").unwrap();
    let b = workspace("long\n");
    let run = build(&b, &nginx.url(), &[], &[]);
    assert_degraded(&run, &b, "long\n", &nginx.url(), "the entry says 5");

    // And without a Content-Length (the body ends when the connection closes): the extra bytes
    // are refused as they arrive.
    let root = nginx.cache_root();
    let fake = Fake::start(move |method, path| {
        let relative = path.strip_prefix("/cache/")?;
        let file = root.join(relative);
        if method != "GET" || !file.exists() {
            return Some(response("404 Not Found", b""));
        }
        let mut bytes = std::fs::read(&file).unwrap();
        if relative.starts_with("cas/") {
            bytes.extend_from_slice(&vec![b'x'; 1 << 20]);
            let mut raw = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
            raw.extend_from_slice(&bytes);
            return Some(raw);
        }
        Some(response("200 OK", &bytes))
    });
    let c = workspace("long\n");
    let run = build(&c, &fake.url(), &[], &[]);
    assert_degraded(&run, &c, "long\n", &fake.url(), "more than the");
}

#[test]
fn a_huge_content_length_is_refused_before_reading() {
    let fake = Fake::start(|method, path| {
        Some(if method == "GET" && path.contains("/ac/") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999999\r\n\r\nxbundle-ac-v3 ".to_vec()
        } else {
            response("404 Not Found", b"")
        })
    });
    let repo = workspace("huge\n");
    let run = build(&repo, &fake.url(), &[], &[]);
    assert_degraded(&run, &repo, "huge\n", &fake.url(), "more than any entry is");
}

#[test]
fn signed_entries_are_accepted_with_the_key() {
    let Some(nginx) = Nginx::start() else { return };
    uploaded_by_a(&nginx, "signed\n", &[HMAC_KEY]);
    let entry = std::fs::read_to_string(
        nginx
            .area("ac")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap();
    assert!(entry.starts_with("xbundle-hmac-sha256 "), "{entry}");
    let b = workspace("signed\n");
    let run = build(&b, &nginx.url(), &[], &[HMAC_KEY]);
    assert_eq!(run.counts(), (0, 2, 0, 0), "{run}");
    assert!(run.warnings().is_empty(), "{run}");
    assert_correct(&b, "signed\n");
    // Another key: the signatures do not match.
    let c = workspace("signed\n");
    let run = build(&c, &nginx.url(), &[], &[(HMAC_KEY.0, "another key")]);
    assert_degraded(
        &run,
        &c,
        "signed\n",
        &nginx.url(),
        "signature does not match",
    );
}

#[test]
fn a_tampered_signed_entry_is_a_miss_with_one_warning() {
    let Some(nginx) = Nginx::start() else { return };
    let key = uploaded_by_a(&nginx, "tamper\n", &[HMAC_KEY]);
    // The attacker rewrites gen's entry to restore other bytes (a blob it planted, under its
    // real digest) and recomputes the entry's checksum; only the signature is left to fail.
    let path = nginx.area("ac").join(&key);
    let text = std::fs::read_to_string(&path).unwrap();
    let (signature, entry) = text.split_once('\n').unwrap();
    let (header, body) = entry.split_once('\n').unwrap();
    let evil = b"EVIL!!!\n";
    std::fs::write(nginx.area("cas").join(sha256_hex(evil)), evil).unwrap();
    let good = sha256_hex(b"TAMPER\n");
    let body = body
        .replace(&good, &sha256_hex(evil))
        .replace("\"size\":7", "\"size\":8");
    assert_ne!(body, entry.split_once('\n').unwrap().1, "the body changed");
    let tag = header.split(' ').next().unwrap();
    let checksum = sha256_hex(format!("{key}\n{body}").as_bytes());
    std::fs::write(
        &path,
        format!("{signature}\n{tag} {key} {checksum}\n{body}"),
    )
    .unwrap();

    let b = workspace("tamper\n");
    let run = build(&b, &nginx.url(), &[], &[HMAC_KEY]);
    assert_degraded(
        &run,
        &b,
        "tamper\n",
        &nginx.url(),
        "signature does not match",
    );
    // Without the key the tampered entry parses (the checksum was fixed): signing is what
    // catches it.
    let c = workspace("tamper\n");
    let run = build(&c, &nginx.url(), &[], &[]);
    assert_eq!(c.read("out/data.txt"), "EVIL!!!\n", "{run}");
}

#[test]
fn an_unsigned_entry_is_a_miss_when_signing_is_on() {
    let Some(nginx) = Nginx::start() else { return };
    uploaded_by_a(&nginx, "unsigned\n", &[]);
    let b = workspace("unsigned\n");
    let run = build(&b, &nginx.url(), &[], &[HMAC_KEY]);
    assert_degraded(&run, &b, "unsigned\n", &nginx.url(), "not signed");
}

/// An entry on the server for gen's key that restores `path`; the build must refuse it, run
/// gen, and touch nothing outside the repository.
fn hostile_entry(path: &str) {
    let Some(nginx) = Nginx::start() else { return };
    let key = uploaded_by_a(&nginx, "hostile\n", &[]);
    forge_entry(
        &nginx.cache_root(),
        &key,
        "task:gen",
        &[ForgedOutput {
            path,
            executable: true,
            contents: b"#!/bin/sh\necho owned\n",
        }],
    );
    let b = Repo::in_sandbox(BUNDLE, &[("src/in.txt", "hostile\n")]);
    std::fs::create_dir_all(b.join(".git/hooks")).unwrap();
    let canary = Canary::plant(&b.sandbox().join("canary"), &[]);
    let run = build(&b, &nginx.url(), &[], &[]);
    assert_degraded(&run, &b, "hostile\n", &nginx.url(), "unusable entry");
    canary.assert_intact(path);
    assert!(!b.exists(".git/hooks/pre-commit"), "{run}");
    assert!(!b.sandbox().join("escape").exists(), "{run}");
}

#[test]
fn an_entry_escaping_the_root_is_refused() {
    hostile_entry("../escape");
    hostile_entry("../canary/precious.txt");
}

#[test]
fn an_entry_writing_into_git_is_refused() {
    hostile_entry(".git/hooks/pre-commit");
}

#[test]
fn two_builds_uploading_at_once_leave_a_sound_cache() {
    let Some(nginx) = Nginx::start() else { return };
    // Two pairs: the same inputs (the same keys, uploaded twice at once) and other inputs.
    let inputs = ["same\n", "same\n", "first\n", "second\n"];
    let repos: Vec<Repo> = inputs.iter().map(|input| workspace(input)).collect();
    let url = nginx.url();
    let runs: Vec<Run> = std::thread::scope(|scope| {
        let handles: Vec<_> = repos
            .iter()
            .map(|repo| {
                let url = url.clone();
                scope.spawn(move || build(repo, &url, &[], &[]))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for run in &runs {
        run.assert_code(0);
        assert!(run.warnings().is_empty(), "{run}");
    }
    for (repo, input) in repos.iter().zip(inputs) {
        assert_correct(repo, input);
    }
    // Every blob on the server is whole, and fresh workspaces get every result from it.
    for blob in nginx.area("cas").read_dir().unwrap() {
        let blob = blob.unwrap();
        assert_eq!(
            sha256_hex(&std::fs::read(blob.path()).unwrap()),
            blob.file_name().to_string_lossy()
        );
    }
    for input in ["same\n", "first\n", "second\n"] {
        let fresh = workspace(input);
        let run = build(&fresh, &url, &[], &[]);
        assert_eq!(run.counts(), (0, 2, 0, 0), "{run}");
        assert_eq!(source(&run, "task:gen"), "http");
        assert_correct(&fresh, input);
    }
}

#[test]
fn dry_run_and_explain_never_reach_the_server() {
    let fake = Fake::start(|_, _| Some(response("404 Not Found", b"")));
    let toml = BUNDLE.replace(
        "remote-timeout = 2",
        &format!("remote-timeout = 2\nremote = \"{}\"", fake.url()),
    );
    let repo = Repo::new(&toml, &[("src/in.txt", "quiet\n")]);
    repo.json(&["task", "--dry-run"]).assert_code(0);
    repo.json(&["explain", "task:gen"]).assert_code(0);
    repo.json(&["check"]).assert_code(0);
    assert_eq!(fake.requests(), 0);
    // A real build does.
    repo.json(&["task"]).assert_code(0);
    assert!(fake.requests() > 0);
}

#[test]
fn bad_remote_settings_are_diagnostics() {
    for (value, problem) in [
        ("ftp://cache.example.com", "has the scheme `ftp`"),
        ("http://user:secret@cache.example.com", "holds credentials"),
        ("cache.example.com", "has no scheme"),
    ] {
        let toml = BUNDLE.replace(
            "remote-timeout = 2",
            &format!("remote-timeout = 2\nremote = \"{value}\""),
        );
        let repo = Repo::new(&toml, &[("src/in.txt", "x\n")]);
        for command in ["check", "task"] {
            let run = repo.json(&[command]);
            run.assert_code(2);
            let diagnostic = run.diagnostic();
            let message = diagnostic["message"].as_str().unwrap();
            assert!(
                message.starts_with("`[cache] remote` ") && message.contains(problem),
                "{run}"
            );
            assert_eq!(diagnostic["line"], 4, "{run}");
            assert!(!repo.exists("out"), "nothing ran");
        }
    }
    let repo = Repo::new(
        &BUNDLE.replace("remote-timeout = 2", "remote-timeout = 0"),
        &[("src/in.txt", "x\n")],
    );
    let run = repo.json(&["task"]);
    run.assert_code(2);
    assert_eq!(run.diagnostic()["line"], 3, "{run}");

    let repo = workspace("x\n");
    let run = repo.human(&["task", "--remote-cache", "http://user:secret@example.com"]);
    run.assert_code(2);
    assert!(run.stderr.contains("holds credentials"), "{run}");
}

#[test]
fn credentials_come_from_the_environment_and_are_never_printed() {
    // A server that refuses everything: the answer names the variables, never their values.
    let fake = Fake::start(|_, _| Some(response("401 Unauthorized", b"")));
    let repo = workspace("auth\n");
    let run = build(
        &repo,
        &fake.url(),
        &[],
        &[("XBUNDLE_REMOTE_CACHE_TOKEN", "s3cr3t-token")],
    );
    let warning = assert_degraded(&run, &repo, "auth\n", &fake.url(), "answered 401");
    assert!(warning.contains("XBUNDLE_REMOTE_CACHE_TOKEN"), "{warning}");
    assert!(
        !run.stdout.contains("s3cr3t") && !run.stderr.contains("s3cr3t"),
        "{run}"
    );
    assert_eq!(
        *fake.authorizations.lock().unwrap(),
        ["Bearer s3cr3t-token"]
    );

    let fake = Fake::start(|_, _| Some(response("404 Not Found", b"")));
    let repo = workspace("basic\n");
    let run = build(
        &repo,
        &fake.url(),
        &[],
        &[
            ("XBUNDLE_REMOTE_CACHE_USER", "ci"),
            ("XBUNDLE_REMOTE_CACHE_PASSWORD", "pa55"),
        ],
    );
    run.assert_code(0);
    let seen = fake.authorizations.lock().unwrap().clone();
    assert!(!seen.is_empty());
    // base64("ci:pa55")
    assert!(
        seen.iter().all(|value| value == "Basic Y2k6cGE1NQ=="),
        "{seen:?}"
    );
}

#[test]
fn the_url_may_come_from_the_environment() {
    let Some(nginx) = Nginx::start() else { return };
    let a = workspace("env\n");
    let run = a.json_env(&["task"], &[("XBUNDLE_REMOTE_CACHE", &nginx.url())]);
    run.assert_code(0);
    assert_eq!(uploaded(&run), 2, "{run}");
    let b = workspace("env\n");
    let run = b.json_env(&["task"], &[("XBUNDLE_REMOTE_CACHE", &nginx.url())]);
    assert_eq!(run.counts(), (0, 2, 0, 0), "{run}");
    // Empty: no remote cache (the generated CI workflow sets it from a variable that may be
    // unset).
    let c = workspace("env\n");
    let run = c.json_env(&["task"], &[("XBUNDLE_REMOTE_CACHE", "")]);
    assert_eq!(run.counts(), (2, 0, 0, 0), "{run}");
    // A bad value is refused, naming the variable.
    let d = workspace("env\n");
    let run = d.json_env(&["task"], &[("XBUNDLE_REMOTE_CACHE", "ftp://x")]);
    run.assert_code(2);
    assert!(
        run.diagnostic()["message"]
            .as_str()
            .unwrap()
            .starts_with("XBUNDLE_REMOTE_CACHE has the scheme `ftp`"),
        "{run}"
    );
    // --no-remote-cache wins over it.
    let run = d.json_env(
        &["task", "--no-remote-cache"],
        &[("XBUNDLE_REMOTE_CACHE", "ftp://x")],
    );
    run.assert_code(0);
}
