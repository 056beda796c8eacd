//! Attacks on the remote cache, as a hostile or broken server and a hostile teammate with write
//! access to it would make them: an entry replayed under another key (signed with the team's
//! key), a blob broken off mid-stream, a body that trickles and never ends, an upload broken off
//! (what nginx keeps of it), and a build killed while its uploads are in flight. Each case checks
//! that the build is correct, the local store sound, and a failing server one warning.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use common::remote::{
    BUNDLE, Fake, HMAC_KEY, Nginx, assert_correct, assert_degraded, assert_local_store_sound,
    build, response, uploaded, workspace,
};
use common::{Repo, sha256_hex};

/// A hostile teammate copies the signed entry of key K to key K': its signature is valid, but
/// it was written for another key, so it is a miss (a replay must never restore K's outputs
/// for K').
#[test]
fn a_signed_entry_replayed_under_another_key_is_a_miss() {
    let Some(nginx) = Nginx::start() else { return };
    let a = workspace("one\n");
    let run = build(&a, &nginx.url(), &[], &[HMAC_KEY]);
    run.assert_code(0);
    assert_eq!(uploaded(&run), 2, "{run}");
    let k1 = run.task("task:gen")["key"].as_str().unwrap().to_string();
    // The key of gen for "two\n", from a build without the remote cache.
    let probe = workspace("two\n");
    let k2 = probe.json(&["task"]).task("task:gen")["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(k1, k2);
    std::fs::copy(nginx.area("ac").join(&k1), nginx.area("ac").join(&k2)).unwrap();

    let b = workspace("two\n");
    let run = build(&b, &nginx.url(), &[], &[HMAC_KEY]);
    assert_degraded(&run, &b, "two\n", &nginx.url(), "unusable entry");
}

/// Serves what nginx holds for A's build, but every blob breaks off after half its bytes (the
/// connection closed under a `Content-Length` of the whole): one warning, nothing of the half
/// blob kept; then the same blobs from nginx, whole, restore B.
#[test]
fn a_blob_broken_off_mid_stream_is_never_kept() {
    let Some(nginx) = Nginx::start() else { return };
    let a = workspace("half\n");
    let run = build(&a, &nginx.url(), &[], &[]);
    assert_eq!(uploaded(&run), 2, "{run}");
    let root = nginx.cache_root();
    let fake = Fake::start(move |method, path| {
        let file = root.join(path.trim_start_matches("/cache/"));
        Some(match (method, std::fs::read(&file)) {
            ("GET", Ok(bytes)) if path.contains("/cas/") => {
                let mut answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    bytes.len()
                )
                .into_bytes();
                answer.extend_from_slice(&bytes[..bytes.len() / 2]);
                answer
            }
            ("GET", Ok(bytes)) => response("200 OK", &bytes),
            _ => response("404 Not Found", b""),
        })
    });
    let b = workspace("half\n");
    let run = build(&b, &fake.url(), &["--remote-cache-read-only"], &[]);
    assert_degraded(&run, &b, "half\n", &fake.url(), "broke off");

    // A clone with an empty store gets the same blobs whole from nginx.
    let c = workspace("half\n");
    let run = build(&c, &nginx.url(), &[], &[]);
    run.assert_code(0);
    assert_eq!(run.counts().0, 0, "nothing ran\n{run}");
    assert!(run.warnings().is_empty(), "{run}");
    assert_correct(&c, "half\n");
    assert_local_store_sound(&c);
}

/// A server that answers an entry with a chunked body that trickles a byte at a time and never
/// ends: every read is within the read timeout, but the whole must still be bounded. The run
/// ends with one warning and a correct build.
#[test]
fn a_body_that_trickles_forever_is_bounded() {
    let fake = Fake::start_raw(|method, path, stream| {
        if method == "GET" && path.contains("/ac/") {
            let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
            if stream.write_all(head.as_bytes()).is_err() {
                return false;
            }
            // One byte every 0.2 s (the remote-timeout is 2 s), until the client hangs up.
            while stream.write_all(b"1\r\nx\r\n").is_ok() {
                std::thread::sleep(Duration::from_millis(200));
            }
            false
        } else {
            stream.write_all(&response("404 Not Found", b"")).is_ok()
        }
    });
    let repo = workspace("slow\n");
    let run = build(&repo, &fake.url(), &["--remote-cache-read-only"], &[]);
    assert_degraded(&run, &repo, "slow\n", &fake.url(), "too slow");
}

/// What nginx (the WebDAV server the README recommends) does with an upload broken off: the
/// client sends half of a blob's `Content-Length` and hangs up (a build killed mid-upload, or
/// the engine's verifying reader refusing a damaged local blob). Nothing may be published under
/// the digest, or every clone would fetch a blob that fails its check.
#[test]
fn nginx_never_publishes_an_upload_broken_off() {
    let Some(nginx) = Nginx::start() else { return };
    let blob = vec![b'z'; 256 * 1024];
    let digest = sha256_hex(&blob);
    let mut stream = TcpStream::connect(("127.0.0.1", nginx.port)).unwrap();
    write!(
        stream,
        "PUT /cache/cas/{digest} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
        blob.len()
    )
    .unwrap();
    stream.write_all(&blob[..blob.len() / 2]).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    // nginx answers (or closes) once it sees the body end early.
    let _ = stream.read_to_end(&mut Vec::new());
    drop(stream);
    assert!(
        !nginx.area("cas").join(&digest).exists(),
        "nginx published a half upload: {:?}",
        nginx.files()
    );
    // Nor does a HEAD say it is there (the uploader's FindMissing).
    let mut stream = TcpStream::connect(("127.0.0.1", nginx.port)).unwrap();
    write!(
        stream,
        "HEAD /cache/cas/{digest} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
}

/// A build killed (SIGKILL) while its upload is in flight (the server takes the request and
/// never answers): the local store stays sound, and the next run, with the server gone, is
/// correct and runs nothing.
#[test]
fn a_build_killed_mid_upload_leaves_a_sound_store() {
    let fake = Fake::start(|method, _| match method {
        "PUT" => None,
        _ => Some(response("404 Not Found", b"")),
    });
    let repo = Repo::new(
        &BUNDLE.replace("remote-timeout = 2", "remote-timeout = 60"),
        &[("src/in.txt", "killed\n")],
    );
    let mut child = repo
        .command()
        .args(["task", "--remote-cache", &fake.url()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the first PUT to arrive (HEADs are counted too): at most 20 s.
    let mut waited = 0;
    while !repo.exists("dist/pack.txt") || fake.requests() < 2 {
        assert!(waited < 2000, "the upload never started");
        std::thread::sleep(Duration::from_millis(10));
        waited += 1;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_local_store_sound(&repo);
    let run = repo.json(&["task"]);
    run.assert_code(0);
    assert_correct(&repo, "killed\n");
    assert_local_store_sound(&repo);
}

/// SIGINT while an upload waits on a server that took the request and never answers (with the
/// longest remote-timeout there is): the build stops at once, as it does with no remote cache
/// (nothing is lost: the local store has everything before it is queued), and the next run is
/// correct.
#[test]
fn sigint_does_not_wait_for_a_stalled_upload() {
    let fake = Fake::start(|method, _| match method {
        "PUT" => None,
        _ => Some(response("404 Not Found", b"")),
    });
    let repo = Repo::new(
        &BUNDLE.replace("remote-timeout = 2", "remote-timeout = 3600"),
        &[("src/in.txt", "interrupted\n")],
    );
    let mut child = repo
        .command()
        .args(["task", "--remote-cache", &fake.url()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut waited = 0;
    while !repo.exists("dist/pack.txt") || fake.requests() < 2 {
        assert!(waited < 2000, "the upload never started");
        std::thread::sleep(Duration::from_millis(10));
        waited += 1;
    }
    std::thread::sleep(Duration::from_millis(100));
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    // Not a speed check: the alternative is an hour.
    let mut status = None;
    for _ in 0..2000 {
        status = child.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if status.is_none() {
        child.kill().unwrap();
        child.wait().unwrap();
        panic!("the build did not stop on SIGINT while an upload was stalled");
    }
    // 0 when every task had finished (only an upload was cut short), else 130.
    let code = status.unwrap().code();
    assert!(matches!(code, Some(0 | 130)), "{code:?}");
    assert_local_store_sound(&repo);
    let run = repo.json(&["task"]);
    run.assert_code(0);
    assert_correct(&repo, "interrupted\n");
}

/// A server that redirects every request (to another host, or to a `file://` URL): no redirect
/// is followed, so the credentials never reach the other host and no local file is read; one
/// warning naming the status, and a correct build.
#[test]
fn redirects_are_never_followed() {
    let elsewhere = Fake::start(|_, _| Some(response("404 Not Found", b"")));
    for target in [elsewhere.url(), "file:///etc".to_string()] {
        let fake = Fake::start(move |_, path| {
            Some(
                format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: {target}{}\r\n\
                     Content-Length: 0\r\n\r\n",
                    path.trim_start_matches("/cache")
                )
                .into_bytes(),
            )
        });
        let repo = workspace("moved\n");
        let run = build(
            &repo,
            &fake.url(),
            &[],
            &[("XBUNDLE_REMOTE_CACHE_TOKEN", "s3cr3t-token")],
        );
        assert_degraded(&run, &repo, "moved\n", &fake.url(), "answered 307");
        assert!(!format!("{run}").contains("s3cr3t"), "{run}");
    }
    assert_eq!(elsewhere.requests(), 0, "a redirect was followed");
}
