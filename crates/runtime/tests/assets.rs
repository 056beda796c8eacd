//! The bundle's assets, verified by the real runtime before anything starts: SHA-256 and size
//! of files, the tree digest (`manifest::tree`, computed here independently with `sha256sum`)
//! of unpacked directories, a refused start (exit 2, both digests named, nothing started) on
//! any difference, and the record that lets a later start skip the hashing until a file
//! changes.

use crate::common;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::{Fixture, events, run_to_exit, small_manifest, testsvc_service};
use serde_json::{Value, json};

fn sha256(bytes: &[u8]) -> String {
    use std::process::{Command, Stdio};
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()[..64].to_string()
}

const MODEL: &[u8] = b"model weights, pretend\n";
const TOOL: &[u8] = b"#!/bin/sh\necho tool\n";
const DATA: &[u8] = b"alpha\n";

/// The tree digest of the `assets/pack` directory the fixture writes, by the documented format.
fn pack_digest() -> String {
    let line = |mode: &str, data: &[u8], path: &str| {
        format!("{mode} {} {} {path}\n", data.len(), sha256(data))
    };
    sha256(
        format!(
            "xbundle-tree-v1\n{}{}",
            line("755", TOOL, "bin/tool"),
            line("644", DATA, "data/a.txt")
        )
        .as_bytes(),
    )
}

/// A bundle whose service carries a file asset and an unpacked directory.
fn fixture(name: &str, edit: impl FnOnce(&mut Value)) -> Fixture {
    let mut service = testsvc_service("svc", &["hang", "svc"], "svc hangs");
    service["assets"] = json!([
        {"path": "assets/model/model.bin", "sha256": sha256(MODEL), "size_bytes": MODEL.len(), "url": "https://example.org/model.bin"},
        {"path": "assets/pack", "sha256": pack_digest(), "size_bytes": TOOL.len() + DATA.len(), "unpacked": true}
    ]);
    let mut manifest = small_manifest("1.0.0", json!([service]));
    edit(&mut manifest);
    let fixture = Fixture::new(name, &manifest);
    let write = |path: &str, data: &[u8], mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        let path = fixture.bundle.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    write("assets/model/model.bin", MODEL, 0o644);
    write("assets/pack/bin/tool", TOOL, 0o755);
    write("assets/pack/data/a.txt", DATA, 0o644);
    fixture
}

fn start_and_stop(fixture: &Fixture) {
    let mut runtime = fixture.start();
    runtime.wait_ready(fixture);
    runtime.post("/shutdown", "");
    assert_eq!(runtime.wait_exit(Duration::from_secs(20)), 0);
}

fn verified(fixture: &Fixture) -> Vec<(u64, u64)> {
    events(fixture, "assets_verified")
        .iter()
        .map(|event| {
            (
                event["hashed"].as_u64().unwrap(),
                event["known"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Starts expecting a refusal: exit 2, the message, no service started.
fn refused(fixture: &Fixture, needles: &[&str]) -> String {
    let _ = std::fs::remove_file(fixture.app_data.join("svc.pid"));
    let (code, stderr) = run_to_exit(fixture, Duration::from_secs(20));
    assert_eq!(code, Some(2), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
    assert!(
        !Path::new(&fixture.app_data.join("svc.pid")).exists(),
        "a service started"
    );
    assert!(!events(fixture, "asset_checksum_mismatch").is_empty());
    stderr
}

#[test]
fn assets_are_hashed_on_the_first_start_only() {
    let fixture = fixture("assets-once", |_| {});
    start_and_stop(&fixture);
    assert_eq!(verified(&fixture), [(2, 0)]);
    start_and_stop(&fixture);
    assert_eq!(
        verified(&fixture),
        [(2, 0), (0, 2)],
        "the second start hashes nothing"
    );
    // One file of the tree rewritten with the same size: hashed again, and refused.
    std::fs::write(fixture.bundle.join("assets/pack/data/a.txt"), b"alphX\n").unwrap();
    refused(&fixture, &["assets/pack", &pack_digest(), "tree digest"]);
    std::fs::write(fixture.bundle.join("assets/pack/data/a.txt"), DATA).unwrap();
    start_and_stop(&fixture);
    assert_eq!(verified(&fixture).last(), Some(&(1, 1)));
    // The model rewritten in place, same size, its mtime set back: the ctime still tells.
    let path = fixture.bundle.join("assets/model/model.bin");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut changed = MODEL.to_vec();
    changed[0] ^= 1;
    std::fs::write(&path, &changed).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    refused(
        &fixture,
        &["assets/model/model.bin", &sha256(MODEL), &sha256(&changed)],
    );
}

/// A case: what, how bundle.json is edited, how the bundle is damaged, what the error says.
type Case = (
    &'static str,
    Box<dyn Fn(&mut Value)>,
    Box<dyn Fn(&Path)>,
    Vec<String>,
);

#[test]
fn a_damaged_bundle_is_refused_before_anything_starts() {
    let wrong = "ab".repeat(32);
    let cases: Vec<Case> = vec![
        (
            "wrong sha256",
            Box::new(|m: &mut Value| {
                m["services"][0]["assets"][0]["sha256"] = json!("ab".repeat(32));
            }),
            Box::new(|_: &Path| {}),
            vec![wrong.clone(), sha256(MODEL)],
        ),
        (
            "placeholder sha256",
            Box::new(|m: &mut Value| {
                m["services"][0]["assets"][0]["sha256"] = json!("PLACEHOLDER_HASH");
            }),
            Box::new(|_: &Path| {}),
            vec!["cannot be verified".into()],
        ),
        (
            "wrong size",
            Box::new(|m: &mut Value| {
                m["services"][0]["assets"][0]["size_bytes"] = json!(3);
            }),
            Box::new(|_: &Path| {}),
            vec!["bundle.json says 3".into()],
        ),
        (
            "missing",
            Box::new(|_: &mut Value| {}),
            Box::new(|bundle: &Path| {
                std::fs::remove_file(bundle.join("assets/model/model.bin")).unwrap();
            }),
            vec!["missing".into()],
        ),
        (
            "a file added to the tree",
            Box::new(|_: &mut Value| {}),
            Box::new(|bundle: &Path| {
                std::fs::write(bundle.join("assets/pack/extra.txt"), "").unwrap();
            }),
            vec!["tree digest".into(), pack_digest()],
        ),
        (
            "a link in the tree",
            Box::new(|_: &mut Value| {}),
            Box::new(|bundle: &Path| {
                std::os::unix::fs::symlink("/etc/passwd", bundle.join("assets/pack/data/p"))
                    .unwrap();
            }),
            vec!["symbolic link".into()],
        ),
        (
            "a FIFO in the tree",
            Box::new(|_: &mut Value| {}),
            Box::new(|bundle: &Path| {
                let status = std::process::Command::new("mkfifo")
                    .arg(bundle.join("assets/pack/fifo"))
                    .status()
                    .unwrap();
                assert!(status.success());
            }),
            vec!["FIFO".into()],
        ),
        (
            "a directory where a file is expected",
            Box::new(|m: &mut Value| {
                m["services"][0]["assets"][1]["unpacked"] = json!(false);
            }),
            Box::new(|_: &Path| {}),
            vec!["does not say it was unpacked".into()],
        ),
        (
            "the asset itself a link",
            Box::new(|_: &mut Value| {}),
            Box::new(|bundle: &Path| {
                let path = bundle.join("assets/model/model.bin");
                std::fs::remove_file(&path).unwrap();
                std::os::unix::fs::symlink("/etc/hostname", &path).unwrap();
            }),
            vec!["symbolic link".into()],
        ),
    ];
    for (index, (what, edit, damage, needles)) in cases.into_iter().enumerate() {
        let fixture = fixture(&format!("assets-bad-{index}"), |m| edit(m));
        damage(&fixture.bundle);
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        if what == "the asset itself a link" {
            // The plan refuses it before the start (exit 2 too), naming the link.
            let (code, stderr) = run_to_exit(&fixture, Duration::from_secs(20));
            assert_eq!(code, Some(2), "{what}: {stderr}");
            assert!(stderr.contains("symbolic link"), "{what}: {stderr}");
            continue;
        }
        let stderr = refused(&fixture, &needles);
        assert!(stderr.contains("reinstall"), "{what}: {stderr}");
    }
}
