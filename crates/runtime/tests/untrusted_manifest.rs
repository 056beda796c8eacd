//! The runtime refuses what `manifest::validate` refuses (issue 8, items 11, 14, 15, 16): each
//! reproduction of the issue, and the other rules of the format, through the real binary,
//! with `--dry-run` and with a real start. A refused bundle exits 2 with the file and the
//! JSON path of the value, and writes nothing: not in its app data, not in a canary tree
//! beside it (compared byte for byte, with modes).

use crate::common;

use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Every entry below `dir`: relative path -> (mode, contents or link target).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (u32, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            let mode = meta.permissions().mode();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(
                    relative,
                    (mode, target.into_os_string().into_encoded_bytes()),
                );
            } else if meta.is_dir() {
                out.insert(relative, (mode, Vec::new()));
                walk(root, &path, out);
            } else {
                out.insert(relative, (mode, std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A temporary directory with `bundle/`, `canary/` beside it (a tree a hostile path would
/// reach: `canary/x/evil.sh`, `canary/x/svc`, a token file), and where app data would go.
struct World {
    dir: PathBuf,
}

impl World {
    fn new(name: &str) -> World {
        let dir = std::env::temp_dir().join(format!(
            "xbundle-rt-untrusted-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["bundle/bin", "bundle/ui", "canary/x/svc"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("bundle/ui/index.html"), "<title>ui</title>").unwrap();
        std::fs::write(dir.join("canary/x/evil.sh"), "#!/bin/sh\ntouch pwned\n").unwrap();
        std::fs::set_permissions(
            dir.join("canary/x/evil.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(dir.join("canary/x/token"), "keep me").unwrap();
        std::fs::write(dir.join("canary/x/svc/svc.log"), "old log").unwrap();
        World { dir }
    }

    fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }

    fn app_data(&self) -> PathBuf {
        self.dir.join("app-data")
    }

    /// Runs the runtime on `manifest` (with `--dry-run` or not); returns exit code and stderr.
    fn run(&self, manifest: &Value, dry_run: bool) -> (Option<i32>, String) {
        std::fs::write(self.bundle().join("bundle.json"), manifest.to_string()).unwrap();
        let mut command = Command::new(RUNTIME);
        command
            .arg("--bundle")
            .arg(self.bundle())
            .arg("--app-data")
            .arg(self.app_data());
        if dry_run {
            command.arg("--dry-run");
        }
        let mut child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A refused bundle exits at once; one accepted by mistake is stopped (and fails below).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A manifest whose paths reach into the canary when they escape: the bundle is
/// `<dir>/bundle`, app data `<dir>/app-data`, so `../canary/x` from either is the canary.
fn manifest() -> Value {
    let mut manifest = small_manifest(
        "1.0.0",
        json!([
            {"id": "ui", "type": "ui-bundle", "binaries": {"universal": {"path": "ui"}},
             "ports": {"requested": [{"name": "http", "range": {"min": 1, "max": 65535}}]},
             "health": {"type": "http", "path": "/", "port_name": "http"},
             "readiness": {"type": "dependencies_ready"}},
            testsvc_service("svc", &["worker"], "Worker started successfully"),
        ]),
    );
    // Port numbers are not the point here.
    manifest["services"][0]["ports"]["requested"][0]["range"] = json!({"min": 20000, "max": 20010});
    manifest
}

/// `manifest()` with the field at `pointer` set to `value` (added if absent).
fn with(pointer: &str, value: Value) -> Value {
    let mut manifest = manifest();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    match manifest.pointer_mut(parent).unwrap() {
        Value::Object(map) => {
            map.insert(key.to_owned(), value);
        }
        other => panic!("{parent} is {other}"),
    }
    manifest
}

/// Each case: the manifest, the JSON path the error must name, and a word of the reason.
fn cases(world: &World) -> Vec<(&'static str, Value, &'static str, &'static str)> {
    let canary = world.dir.join("canary/x");
    let canary = canary.to_str().unwrap();
    let mut fetched = manifest();
    fetched["secrets"] = json!([{"id": "remote", "class": "remote_fetch",
        "fetch": {"url": "http://vault.example/v1/secret"}, "target": {"type": "env", "name": "REMOTE"}}]);
    fetched["services"][1]["secrets"] = json!(["remote"]);
    let mut weak = manifest();
    weak["secrets"] = json!([{"id": "token", "class": "per_install_generated",
        "generator": {"type": "random", "length": 32, "charset": "alnum_sybmols"},
        "target": {"type": "env", "name": "TOKEN"}}]);
    let mut literal = weak.clone();
    literal["secrets"][0]["generator"]["charset"] = json!("0123456789");
    let mut format = manifest();
    format["secrets"] = json!([{"id": "key", "class": "user_prompt", "format": "(a{100}){100}",
        "target": {"type": "env", "name": "KEY"}}]);
    // Rules only one side applied: validate let these through, the runtime then failed the
    // service (a pattern it could not compile, a NUL exec refuses) or waited unbounded.
    let mut pattern = manifest();
    pattern["services"][1]["readiness"]["pattern"] = json!("Worker (started");
    let mut big_pattern = manifest();
    big_pattern["services"][1]["readiness"]["pattern"] = json!("(a{100}){100}");
    let mut escaped = format.clone();
    escaped["secrets"][0]["format"] = json!("[a-z]{16})|(?:.*");
    let mut slow = fetched.clone();
    slow["secrets"][0]["fetch"] =
        json!({"url": "https://vault.example/v1/secret", "timeout_ms": 18446744073709551615u64});
    vec![
        (
            "a log_match pattern that does not compile",
            pattern,
            "services[1].readiness.pattern",
            "not a valid regular expression",
        ),
        (
            "an oversized log_match pattern",
            big_pattern,
            "services[1].readiness.pattern",
            "compiles to more than",
        ),
        (
            "a NUL in an env value",
            with("/services/1/env", json!({"X": "a\u{0}b"})),
            "services[1].env.X",
            "NUL",
        ),
        (
            "a NUL in an argument",
            with(
                "/services/1/binaries/linux-x64/args",
                json!(["worker\u{0}"]),
            ),
            "services[1].binaries.linux-x64.args[0]",
            "NUL",
        ),
        (
            "a format that closes its anchoring group",
            escaped,
            "secrets[0].format",
            "not a valid regular expression",
        ),
        (
            "a fetch that may wait forever",
            slow,
            "secrets[0].fetch.timeout_ms",
            "at most 60000",
        ),
        (
            "absolute ipc.auth_token_path",
            with("/ipc/auth_token_path", json!(format!("{canary}/token"))),
            "ipc.auth_token_path",
            "absolute",
        ),
        (
            "escaping ipc.auth_token_path",
            with("/ipc/auth_token_path", json!("../canary/x/token")),
            "ipc.auth_token_path",
            "`..`",
        ),
        (
            "absolute telemetry.file",
            with("/telemetry/file", json!(format!("{canary}/events.jsonl"))),
            "telemetry.file",
            "absolute",
        ),
        (
            "service id with ..",
            with("/services/1/id", json!("../../../../x/svc")),
            "services[1].id",
            "is not an id",
        ),
        (
            "UI path outside the bundle",
            with("/services/0/binaries/universal/path", json!("../../../x")),
            "services[0].binaries.universal.path",
            "`..`",
        ),
        (
            "binary outside the bundle",
            with(
                "/services/1/binaries/linux-x64/path",
                json!("../../../x/evil.sh"),
            ),
            "services[1].binaries.linux-x64.path",
            "`..`",
        ),
        (
            "log_dir outside app data",
            with("/services/1/log_dir", json!("../canary/x/svc")),
            "services[1].log_dir",
            "`..`",
        ),
        (
            "absolute data dir",
            with("/services/1/data_dirs", json!([format!("{canary}/data")])),
            "services[1].data_dirs[0]",
            "absolute",
        ),
        (
            "health command outside the bundle",
            with(
                "/services/1/health/command",
                json!(["../../canary/x/evil.sh"]),
            ),
            "services[1].health.command[0]",
            "`..`",
        ),
        (
            "a health path that splits the request",
            with("/services/0/health/path", json!("/\r\nX-Injected: 1")),
            "services[0].health.path",
            "control character",
        ),
        (
            "plain http to another host",
            fetched,
            "secrets[0].fetch.url",
            "not loopback",
        ),
        (
            "a misspelled charset",
            weak,
            "secrets[0].generator.charset",
            "did you mean `alnum_symbols`?",
        ),
        (
            "a weak literal charset",
            literal,
            "secrets[0].generator.charset",
            "10 distinct characters",
        ),
        (
            "an oversized format",
            format,
            "secrets[0].format",
            "compiles to more than",
        ),
    ]
}

#[test]
fn the_runtime_refuses_what_validation_refuses_and_writes_nothing() {
    let world = World::new("refuse");
    // The same bundle with sane paths starts (so each refusal below is the rule's doing).
    let (code, stderr) = world.run(&manifest(), true);
    assert_eq!(code, Some(0), "{stderr}");
    let canary = snapshot(&world.dir.join("canary"));
    let bundle = snapshot(&world.bundle());
    for (name, manifest, path, reason) in cases(&world) {
        for dry_run in [true, false] {
            let (code, stderr) = world.run(&manifest, dry_run);
            assert_eq!(code, Some(2), "{name} (dry run: {dry_run}): {stderr}");
            assert!(
                stderr.contains("bundle.json: invalid bundle manifest")
                    && stderr
                        .lines()
                        .any(|line| line.trim_start().starts_with(&format!("{path}: "))
                            && line.contains(reason)),
                "{name} (dry run: {dry_run}): expected `{path}: …{reason}…` in {stderr}"
            );
            assert!(
                !world.app_data().exists(),
                "{name}: a refused bundle created its app data"
            );
            assert_eq!(snapshot(&world.dir.join("canary")), canary, "{name}");
            let mut now = snapshot(&world.bundle());
            now.remove(Path::new("bundle.json"));
            let mut before = bundle.clone();
            before.remove(Path::new("bundle.json"));
            assert_eq!(now, before, "{name}: the bundle changed");
        }
    }
}

/// The address space the runtime gets below: a `--dry-run` needs a fraction of it; reading a
/// 100 MB bundle.json whole (as it did) does not fit, and the allocation failure aborts it.
const ADDRESS_SPACE_LIMIT: u64 = 96 << 20;

/// Runs the runtime (`--dry-run`) on the bundle as it is (bundle.json not rewritten), with its
/// address space limited to [`ADDRESS_SPACE_LIMIT`], for at most 10 s: its exit code (`None`:
/// killed by a signal or the deadline) and stderr.
fn run_as_is(world: &World) -> (Option<i32>, String) {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(RUNTIME);
    command
        .arg("--bundle")
        .arg(world.bundle())
        .arg("--app-data")
        .arg(world.app_data())
        .arg("--dry-run")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: ADDRESS_SPACE_LIMIT,
                rlim_max: ADDRESS_SPACE_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bundle_json_is_read_bounded_and_never_through_a_link() {
    let world = World::new("manifest-file");
    let manifest_path = world.bundle().join("bundle.json");
    // The same bundle starts within the limit (so the refusals below are the rules' doing).
    std::fs::write(&manifest_path, manifest().to_string()).unwrap();
    let (code, stderr) = run_as_is(&world);
    assert_eq!(code, Some(0), "{stderr}");
    // 100 MB in one string (written in pieces: the test never holds it): refused before it is
    // read whole (the runtime held 200 MB for it).
    {
        let text = manifest().to_string();
        let (head, tail) = text.split_at(text.len() - 1);
        let mut file = std::io::BufWriter::new(std::fs::File::create(&manifest_path).unwrap());
        use std::io::Write;
        write!(file, "{head},\"filler\":\"").unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..100 {
            file.write_all(&chunk).unwrap();
        }
        write!(file, "\"{tail}").unwrap();
    }
    let (code, stderr) = run_as_is(&world);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("longer than the limit of 262144 bytes"),
        "{stderr}"
    );
    // A link to a manifest elsewhere (the canary's), and a FIFO (which no writer ever opens).
    std::fs::remove_file(&manifest_path).unwrap();
    std::fs::write(world.dir.join("canary/bundle.json"), manifest().to_string()).unwrap();
    let canary = snapshot(&world.dir.join("canary"));
    std::os::unix::fs::symlink(world.dir.join("canary/bundle.json"), &manifest_path).unwrap();
    let (code, stderr) = run_as_is(&world);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("symbolic link"), "{stderr}");
    std::fs::remove_file(&manifest_path).unwrap();
    let fifo = std::ffi::CString::new(manifest_path.to_str().unwrap()).unwrap();
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let (code, stderr) = run_as_is(&world);
    assert_eq!(code, Some(2), "a FIFO bundle.json: {stderr}");
    assert!(stderr.contains("not a regular file"), "{stderr}");
    assert_eq!(snapshot(&world.dir.join("canary")), canary);
    assert!(!world.app_data().exists());
}
