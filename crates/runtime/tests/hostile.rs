//! The runtime treats the bundle as untrusted and the loopback as hostile (issue 8, items
//! 11-13). Every case runs the real `xbundle-runtime` on a fixture bundle in a temporary
//! directory, with a canary tree beside the bundle and the app data that must stay intact:
//!
//! - paths from bundle.json never leave the bundle or the app data, and a refused path stops
//!   the start with exit code 2 before anything is written or started; nor do writes reach
//!   elsewhere through a hard link or block on a FIFO at an appended file, an app data
//!   directory another program made, or one overlapping the bundle; the runtime's own state
//!   files are read bounded, and running out of descriptors does not stall the start;
//! - the UI server never serves a file outside its directory, answers only its own origin,
//!   and idle proxied connections never lock the app's requests out of its API;
//! - HTTP limits hold before authentication, on the control API and the UI port alike, and an
//!   authorised `/status` answers within 1 s under the stated attacks;
//! - a service's output is bounded (lines split at 64 KiB, rotation applies).

use crate::common;

use common::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The runtime's peak RSS must stay under this (kB), whatever a peer or a service sends.
const RSS_LIMIT_KB: u64 = 20 * 1024;

fn one_worker() -> Value {
    small_manifest(
        "1.0.0",
        json!([testsvc_service("svc", &["hang", "svc"], "svc hangs")]),
    )
}

/// A manifest edit (and file-system set-up) that must make the runtime refuse the bundle.
type Setup = fn(&Fixture, &Canary, &mut Value);

/// Runs one refused case: exit code 2, the message names `field`, nothing written or run.
fn assert_refused(name: &str, field: &str, setup: Setup) {
    let fixture = Fixture::new(&format!("confine-{name}"), &one_worker());
    let canary = Canary::plant(fixture.dir.join("canary"));
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.bundle.join("bundle.json")).unwrap())
            .unwrap();
    setup(&fixture, &canary, &mut manifest);
    fixture.write_manifest(&manifest);
    let app_data_existed = fixture.app_data.exists();
    let app_data_before = snapshot(&fixture.app_data);
    let bundle_before = snapshot(&fixture.bundle);

    let (code, stderr) = run_to_exit(&fixture, Duration::from_secs(5));

    assert_eq!(code, Some(2), "{name}: {stderr}");
    assert!(
        stderr.contains(field),
        "{name}: the error names {field}: {stderr}"
    );
    canary.assert_intact(name);
    assert!(!canary.marker().exists(), "{name}: the hostile script ran");
    if app_data_existed {
        assert_eq!(snapshot(&fixture.app_data), app_data_before, "{name}");
    } else {
        assert!(!fixture.app_data.exists(), "{name}: app data written");
    }
    assert_eq!(snapshot(&fixture.bundle), bundle_before, "{name}");
}

fn abs(path: &Path) -> Value {
    Value::from(path.to_str().unwrap())
}

#[test]
fn paths_from_bundle_json_never_leave_the_bundle_or_the_app_data() {
    let cases: &[(&str, &str, Setup)] = &[
        // The findings.
        ("token-absolute", "ipc.auth_token_path", |_, canary, m| {
            m["ipc"]["auth_token_path"] = abs(&canary.dir.join("victim.txt"));
        }),
        ("telemetry-absolute", "telemetry.file", |_, canary, m| {
            m["telemetry"]["file"] = abs(&canary.dir.join("events.jsonl"));
        }),
        ("service-id-escape", "services[0].id", |_, _, m| {
            m["services"][0]["id"] = "../../canary/svc".into();
        }),
        ("service-id-issue", "services[0].id", |_, _, m| {
            m["services"][0]["id"] = "../../../../x/svc".into();
        }),
        (
            "ui-escape",
            "services[0].binaries.universal.path",
            |_, _, m| {
                // Served the control token unauthenticated on the UI port.
                m["services"][0] = json!({
                    "id": "ui", "type": "ui-bundle",
                    "binaries": {"universal": {"path": "../app-data/runtime"}},
                    "ports": {"requested": [{"name": "http", "range": {"min": 1024, "max": 65535}}]},
                    "health": {"type": "tcp", "port_name": "http"},
                    "readiness": {"type": "dependencies_ready"}
                });
            },
        ),
        (
            "binary-escape",
            "services[0].binaries.linux-x64.path",
            |_, _, m| {
                m["services"][0]["binaries"]["linux-x64"]["path"] = "../canary/x/evil.sh".into();
            },
        ),
        (
            "binary-absolute",
            "services[0].binaries.linux-x64.path",
            |_, canary, m| {
                m["services"][0]["binaries"]["linux-x64"]["path"] =
                    abs(&canary.dir.join("x/evil.sh"));
            },
        ),
        (
            "binary-backslash",
            "services[0].binaries.linux-x64.path",
            |_, _, m| {
                m["services"][0]["binaries"]["linux-x64"]["path"] = "..\\canary\\x\\evil.sh".into();
            },
        ),
        (
            "bin-symlink",
            "services[0].binaries.linux-x64.path",
            |fixture, canary, _| {
                // `bin/` is a link to a directory outside the bundle holding a `testsvc`.
                std::fs::remove_dir_all(fixture.bundle.join("bin")).unwrap();
                std::os::unix::fs::symlink(canary.dir.join("x"), fixture.bundle.join("bin"))
                    .unwrap();
            },
        ),
        (
            "binary-symlink",
            "services[0].binaries.linux-x64.path",
            |fixture, canary, _| {
                std::fs::remove_file(fixture.bundle.join("bin/testsvc")).unwrap();
                std::os::unix::fs::symlink(
                    canary.dir.join("x/testsvc"),
                    fixture.bundle.join("bin/testsvc"),
                )
                .unwrap();
            },
        ),
        (
            "ui-dir-symlink",
            "services[0].binaries.universal.path",
            |fixture, canary, m| {
                // A UI directory that is a link to a directory outside the bundle.
                std::os::unix::fs::symlink(&canary.dir, fixture.bundle.join("site")).unwrap();
                m["services"][0] = json!({
                    "id": "ui", "type": "ui-bundle",
                    "binaries": {"universal": {"path": "site"}},
                    "ports": {"requested": [{"name": "http", "range": {"min": 1024, "max": 65535}}]},
                    "health": {"type": "tcp", "port_name": "http"},
                    "readiness": {"type": "dependencies_ready"}
                });
            },
        ),
        ("service-id-dotdot", "services[0].id", |_, _, m| {
            m["services"][0]["id"] = "..".into();
        }),
        (
            "cwd-escape",
            "services[0].binaries.linux-x64.cwd",
            |_, _, m| {
                m["services"][0]["binaries"]["linux-x64"]["cwd"] = "bin/../../canary".into();
            },
        ),
        (
            "migration-escape",
            "services[0].migrations[0].command",
            |_, _, m| {
                m["services"][0]["migrations"] =
                    json!([{"version": "1", "command": ["../../canary/x/evil.sh"]}]);
            },
        ),
        (
            "health-command-escape",
            "services[0].health.command",
            |_, _, m| {
                m["services"][0]["health"]["command"] = json!(["../../canary/x/evil.sh"]);
            },
        ),
        ("asset-escape", "services[0].assets[0].path", |_, _, m| {
            m["services"][0]["assets"] = json!([{"path": "../canary/victim.txt"}]);
        }),
        ("log-dir-escape", "services[0].log_dir", |_, _, m| {
            m["services"][0]["log_dir"] = "logs/../../canary".into();
        }),
        ("log-dir-absolute", "services[0].log_dir", |_, canary, m| {
            m["services"][0]["log_dir"] = abs(&canary.dir);
        }),
        ("data-dir-escape", "services[0].data_dirs[0]", |_, _, m| {
            m["services"][0]["data_dirs"] = json!(["../canary/data"]);
        }),
        ("token-in-secrets", "ipc.auth_token_path", |_, _, m| {
            // Would replace a secret's value by the control token (and delete it on exit).
            m["ipc"]["auth_token_path"] = "secrets/token".into();
        }),
        ("telemetry-over-state", "telemetry.file", |_, _, m| {
            m["telemetry"]["file"] = "runtime/ports.json".into();
        }),
        // Symlinks already in the app data: the runtime writes nothing through them.
        ("app-data-logs-symlink", "logs", |fixture, canary, _| {
            std::fs::create_dir_all(&fixture.app_data).unwrap();
            std::os::unix::fs::symlink(&canary.dir, fixture.app_data.join("logs")).unwrap();
        }),
        (
            "app-data-runtime-symlink",
            "runtime",
            |fixture, canary, _| {
                std::fs::create_dir_all(&fixture.app_data).unwrap();
                std::os::unix::fs::symlink(&canary.dir, fixture.app_data.join("runtime")).unwrap();
            },
        ),
        (
            "app-data-telemetry-symlink",
            "telemetry",
            |fixture, canary, _| {
                std::fs::create_dir_all(fixture.app_data.join("telemetry")).unwrap();
                std::os::unix::fs::symlink(
                    canary.dir.join("victim.txt"),
                    fixture.app_data.join("telemetry/events.jsonl"),
                )
                .unwrap();
            },
        ),
        (
            "app-data-ports-symlink",
            "runtime/ports.json",
            |fixture, canary, _| {
                std::fs::create_dir_all(fixture.app_data.join("runtime")).unwrap();
                std::os::unix::fs::symlink(
                    canary.dir.join("victim.txt"),
                    fixture.app_data.join("runtime/ports.json"),
                )
                .unwrap();
            },
        ),
        // Files the runtime appends to: a hard link there would carry the service's output
        // into the file's other name (the canary's), a FIFO would block the start for good
        // (with the stop signals not yet taken).
        (
            "app-data-log-hard-link",
            "services[0] (its log file)",
            |fixture, canary, _| {
                own_app_data(fixture);
                std::fs::create_dir_all(fixture.app_data.join("logs")).unwrap();
                std::fs::hard_link(
                    canary.dir.join("victim.txt"),
                    fixture.app_data.join("logs/svc.log"),
                )
                .unwrap();
            },
        ),
        (
            "app-data-telemetry-fifo",
            "telemetry.file",
            |fixture, _, _| {
                own_app_data(fixture);
                std::fs::create_dir_all(fixture.app_data.join("telemetry")).unwrap();
                mkfifo(&fixture.app_data.join("telemetry/events.jsonl"));
            },
        ),
        (
            "app-data-lock-hard-link",
            "app data",
            |fixture, canary, _| {
                std::fs::create_dir_all(fixture.app_data.join("runtime")).unwrap();
                std::fs::hard_link(
                    canary.dir.join("victim.txt"),
                    fixture.app_data.join("runtime/lock"),
                )
                .unwrap();
            },
        ),
        // An app data directory that is another program's (two apps named alike, as the
        // default `~/.local/share/<app.name>` makes easy): the runtime replaced, then deleted
        // on exit, a file of its choosing there (a GNOME keyring, with app.name `keyrings`).
        ("app-data-foreign", "app data", |fixture, _, m| {
            std::fs::create_dir_all(&fixture.app_data).unwrap();
            std::fs::write(fixture.app_data.join("login.keyring"), "precious").unwrap();
            m["ipc"]["auth_token_path"] = "login.keyring".into();
        }),
    ];
    for (name, field, setup) in cases {
        assert_refused(name, field, *setup);
    }
}

/// The runtime's own state files are read bounded: a `runtime/migrations.json` and a
/// `runtime/ports.json` planted with 16 MB of short strings each (JSON an attacker who can
/// write the app data makes in a moment) held 150 MB of the runtime's memory at start.
#[test]
fn the_runtimes_own_state_files_are_read_bounded() {
    let fixture = Fixture::new("state-files", &one_worker());
    own_app_data(&fixture);
    let versions: Vec<String> = (0..1_700_000).map(|n| n.to_string()).collect();
    std::fs::write(
        fixture.app_data.join("runtime/migrations.json"),
        json!({"applied": {"svc": versions}}).to_string(),
    )
    .unwrap();
    let ports: serde_json::Map<String, Value> = (0..800_000)
        .map(|n| (format!("s{n}"), json!({"p": 1})))
        .collect();
    std::fs::write(
        fixture.app_data.join("runtime/ports.json"),
        Value::Object(ports).to_string(),
    )
    .unwrap();
    let mut runtime = fixture.start();
    runtime.wait_ready(&fixture);
    let hwm = proc_status(runtime.child.id(), "VmHWM").unwrap();
    eprintln!("state files of 16 MB: peak RSS {hwm} kB");
    assert!(hwm < RSS_LIMIT_KB, "peak RSS {hwm} kB");
    assert_eq!(runtime.post("/shutdown", "").0, 202);
    assert_eq!(runtime.wait_exit(Duration::from_secs(20)), 0);
}

/// The bundle and the app data directory never overlap. With the bundle inside the app data
/// (a layout self-updating apps like), `ipc.auth_token_path: "bundle/ui/token.txt"` put the
/// control token where the UI served it to anyone on the loopback; with the app data inside
/// the UI directory, the UI served the secrets. Either is refused (exit 2) before anything is
/// written.
#[test]
fn the_bundle_and_the_app_data_never_overlap() {
    let fixture = Fixture::new("overlap", &one_worker());
    let canary = Canary::plant(fixture.dir.join("canary"));
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.bundle.join("bundle.json")).unwrap())
            .unwrap();
    manifest["ipc"]["auth_token_path"] = "bundle/ui/token.txt".into();
    fixture.write_manifest(&manifest);
    // The app data directory holding the bundle, used before (so it is the runtime's).
    std::fs::create_dir_all(fixture.dir.join("runtime")).unwrap();
    std::fs::write(fixture.dir.join("runtime/lock"), "").unwrap();
    for app_data in [fixture.dir.clone(), fixture.bundle.join("ui/data")] {
        let before = snapshot(&fixture.dir);
        let mut child = std::process::Command::new(RUNTIME)
            .arg("--bundle")
            .arg(&fixture.bundle)
            .arg("--app-data")
            .arg(&app_data)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let code = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status.code();
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(code, Some(2), "{}: {stderr}", app_data.display());
        assert!(stderr.contains("overlap"), "{stderr}");
        assert!(!fixture.bundle.join("ui/token.txt").exists());
        assert_eq!(snapshot(&fixture.dir), before, "{}", app_data.display());
        canary.assert_intact("overlapping app data");
    }
}

/// A manifest requesting more ports than the runtime has file descriptors (each port's
/// listener is held until its service spawns): once out of descriptors, every later request
/// tried the whole of its range, 64 000 binds each, while the start held the stop signals;
/// 1500 requests under a limit of 128 descriptors kept it there for minutes. Now the start
/// gives up at once with the system's reason (exit code 3).
#[test]
fn running_out_of_descriptors_does_not_stall_the_start() {
    use std::os::unix::process::CommandExt;
    let mut service = testsvc_service("svc", &["hang", "svc"], "svc hangs");
    service["ports"] = json!({"requested": (0..1500)
        .map(|n| json!({"name": format!("p{n}"), "range": {"min": 1024, "max": 65535}}))
        .collect::<Vec<_>>()});
    let fixture = Fixture::new("descriptors", &small_manifest("1.0.0", json!([service])));
    let mut command = std::process::Command::new(RUNTIME);
    command
        .arg("--bundle")
        .arg(&fixture.bundle)
        .arg("--app-data")
        .arg(&fixture.app_data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 128,
                rlim_max: 128,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    // Generous: the start gives up in milliseconds; stalled, it took minutes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("Too many open files"), "{stderr}");
}

/// Makes the fixture's app data directory look used by an earlier run (`runtime/lock`).
fn own_app_data(fixture: &Fixture) {
    std::fs::create_dir_all(fixture.app_data.join("runtime")).unwrap();
    std::fs::write(fixture.app_data.join("runtime/lock"), "").unwrap();
}

fn mkfifo(path: &Path) {
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0, "mkfifo");
}

#[test]
fn relative_slash_separated_paths_are_accepted() {
    // What the pipeline writes: `/`-separated, normalized relative paths.
    let mut service = testsvc_service("svc", &["hang", "svc"], "svc hangs");
    service["binaries"]["linux-x64"]["path"] = "bin/testsvc".into();
    service["binaries"]["linux-x64"]["cwd"] = "bin".into();
    service["log_dir"] = "logs/svc".into();
    service["data_dirs"] = json!(["data/svc"]);
    let fixture = Fixture::new("confine-ok", &small_manifest("1.0.0", json!([service])));
    let canary = Canary::plant(fixture.dir.join("canary"));
    let mut runtime = fixture.start();
    runtime.wait_ready(&fixture);
    assert!(fixture.app_data.join("logs/svc/svc.log").is_file());
    assert!(fixture.app_data.join("data/svc").is_dir());
    assert_eq!(runtime.post("/shutdown", "").0, 202);
    assert_eq!(runtime.wait_exit(Duration::from_secs(20)), 0);
    canary.assert_intact("accepted paths");
}

/// Sends raw bytes as a request; returns the status (0 when the connection closed without
/// an answer) and the body.
fn raw_request(port: u16, bytes: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

#[test]
fn the_ui_server_serves_nothing_outside_its_directory() {
    let fixture = Fixture::new("ui-confine", &fixture_manifest("1.0.0", false));
    let canary = Canary::plant(fixture.dir.join("canary"));
    // Links inside the UI directory pointing out of it.
    let ui = fixture.bundle.join("ui");
    std::os::unix::fs::symlink(canary.dir.join("victim.txt"), ui.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(&canary.dir, ui.join("leakdir")).unwrap();
    std::os::unix::fs::symlink(&canary.dir, ui.join("assets/up")).unwrap();
    let mut runtime = fixture.start();
    runtime.wait_ready(&fixture);
    let ui_port = runtime.json("/ports")["services"]["ui"]["http"]
        .as_u64()
        .unwrap() as u16;

    // What is inside is served (percent-encoding decoded).
    assert_eq!(
        request(ui_port, "GET", "/assets/app%2Ejs", None, None).1,
        "console.log('hi')"
    );
    assert!(
        request(ui_port, "GET", "/client/route", None, None)
            .1
            .contains("fixture ui")
    );

    let attempts: &[&[u8]] = &[
        b"/../bundle.json",
        b"/%2e%2e/bundle.json",
        b"/%2E%2E/bundle.json",
        b"/.%2e/bundle.json",
        b"/assets/%2e%2e/%2e%2e/bundle.json",
        b"/..%2fbundle.json",
        b"/%2e%2e%2f%2e%2e%2fapp-data%2fruntime%2fauth-token",
        b"/assets%2f..%2f..%2fbundle.json",
        b"/..%5c..%5cbundle.json",
        b"/..\\..\\bundle.json",
        b"/%2e%2e",
        b"/..",
        b"/%00",
        b"/index.html%00.js",
        b"/%2fetc%2fpasswd",
        b"/leak.txt",
        b"/leakdir",
        b"/leakdir/victim.txt",
        b"/leakdir/sub/deeper/notes.txt",
        b"/assets/up/victim.txt",
        b"/assets/up",
    ];
    let token = runtime.token.trim().to_owned();
    for path in attempts {
        let mut head = b"GET ".to_vec();
        head.extend_from_slice(path);
        head.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        let (status, body) = raw_request(ui_port, &head);
        let shown = String::from_utf8_lossy(path);
        assert!(
            status == 400 || status == 404,
            "{shown}: status {status}: {body}"
        );
        assert!(
            !body.contains("canary") && !body.contains(&token) && !body.contains("schema_version"),
            "{shown}: {body}"
        );
    }
    // A raw NUL in the request line.
    let (status, _) = raw_request(ui_port, b"GET /index.html\0 HTTP/1.1\r\n\r\n");
    assert!(status == 400 || status == 0, "NUL: {status}");

    assert_eq!(runtime.post("/shutdown", "").0, 202);
    assert_eq!(runtime.wait_exit(Duration::from_secs(20)), 0);
    canary.assert_intact("ui requests");
}

/// The UI server answers only requests for a loopback host, and proxies to the API only for
/// its own pages: a DNS-rebinding page (`Host: evil.example`, resolving to 127.0.0.1) could
/// otherwise read the UI and the app's API through it, and another site's page drive the API
/// with a cross-site POST or WebSocket, which the same-origin policy does not stop. Before,
/// all of these were answered, the API's replies included.
#[test]
fn the_ui_answers_its_own_origin_only() {
    let fixture = Fixture::new("ui-origin", &fixture_manifest("1.0.0", false));
    let mut runtime = fixture.start();
    runtime.wait_ready(&fixture);
    let ui_port = runtime.json("/ports")["services"]["ui"]["http"]
        .as_u64()
        .unwrap() as u16;
    let send = |head: String| raw_request(ui_port, head.as_bytes());
    let own = format!("http://127.0.0.1:{ui_port}");
    // What the UI's own pages (and clients without these headers) send is answered.
    for (path, host, origin) in [
        ("/", format!("127.0.0.1:{ui_port}"), None),
        ("/", format!("localhost:{ui_port}"), None),
        // Static files carry no API: any page may load them.
        (
            "/",
            format!("127.0.0.1:{ui_port}"),
            Some("https://any.example".to_owned()),
        ),
        (
            "/api/hello",
            format!("127.0.0.1:{ui_port}"),
            Some(own.clone()),
        ),
        (
            "/api/hello",
            format!("localhost:{ui_port}"),
            Some(format!("http://localhost:{ui_port}")),
        ),
    ] {
        let origin = origin
            .map(|o| format!("Origin: {o}\r\n"))
            .unwrap_or_default();
        let (status, body) = send(format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\n{origin}\r\n"
        ));
        assert_eq!(status, 200, "{path} for {host}: {body}");
    }
    assert_eq!(send("GET /api/hello HTTP/1.0\r\n\r\n".into()).0, 200);

    let refused = [
        // DNS rebinding: another name for 127.0.0.1.
        format!("GET / HTTP/1.1\r\nHost: evil.example:{ui_port}\r\n\r\n"),
        format!("GET /api/hello HTTP/1.1\r\nHost: evil.example:{ui_port}\r\n\r\n"),
        "GET /api/hello HTTP/1.1\r\nHost: 127.0.0.1.evil.example\r\n\r\n".to_string(),
        // Another site's page, through the browser of the user.
        format!(
            "POST /api/hello HTTP/1.1\r\nHost: 127.0.0.1:{ui_port}\r\nOrigin: https://evil.example\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
        ),
        format!(
            "GET /api/ws HTTP/1.1\r\nHost: 127.0.0.1:{ui_port}\r\nOrigin: https://evil.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        ),
        format!("GET /api/hello HTTP/1.1\r\nHost: 127.0.0.1:{ui_port}\r\nOrigin: null\r\n\r\n"),
        // An image or a link on another page (no Origin), another port of this host too.
        format!(
            "GET /api/hello HTTP/1.1\r\nHost: 127.0.0.1:{ui_port}\r\nSec-Fetch-Site: cross-site\r\n\r\n"
        ),
        format!(
            "GET /api/hello HTTP/1.1\r\nHost: 127.0.0.1:{ui_port}\r\nSec-Fetch-Site: same-site\r\n\r\n"
        ),
        format!(
            "GET /api/hello HTTP/1.1\r\nHost: 127.0.0.1:{ui_port}\r\nOrigin: http://127.0.0.1:{}\r\n\r\n",
            ui_port.wrapping_add(1)
        ),
    ];
    for head in refused {
        let (status, body) = send(head.clone());
        assert_eq!(status, 403, "{head}: {body}");
        assert!(!body.contains("hello"), "{head}: the API answered: {body}");
    }
    assert_eq!(runtime.post("/shutdown", "").0, 202);
    assert_eq!(runtime.wait_exit(Duration::from_secs(20)), 0);
}

/// Idle proxied connections (WebSockets opened and left silent) cannot keep the app's own
/// requests from its API: past the cap, the connection idle the longest is closed. Before,
/// 32 of them made every `/api` request a 503 for as long as they stayed open.
#[test]
fn idle_proxied_connections_never_lock_the_api_out() {
    let fixture = Fixture::new("proxy-idle", &fixture_manifest("1.0.0", false));
    let mut runtime = fixture.start();
    runtime.wait_ready(&fixture);
    let ui_port = runtime.json("/ports")["services"]["ui"]["http"]
        .as_u64()
        .unwrap() as u16;
    let upgrade = b"GET /api/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    let mut idle = Vec::new();
    for _ in 0..40 {
        let mut stream = TcpStream::connect(("127.0.0.1", ui_port)).unwrap();
        stream.write_all(upgrade).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        idle.push(stream);
    }
    // The app's own request is answered.
    let (status, body) = request(ui_port, "GET", "/api/hello", None, None);
    assert_eq!(status, 200, "{body}");
    // The oldest idle ones were closed to make room; at most the cap stay open.
    let mut open = 0;
    for stream in &mut idle {
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut byte = [0u8; 64];
        match stream.read(&mut byte) {
            Ok(0) => {}
            Err(err)
                if err.kind() == std::io::ErrorKind::WouldBlock
                    || err.kind() == std::io::ErrorKind::TimedOut =>
            {
                open += 1
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(open <= 32, "{open} idle proxied connections still open");
    let threads = proc_status(runtime.child.id(), "Threads").unwrap();
    assert!(threads < 100, "{threads} threads");
    assert_eq!(runtime.post("/shutdown", "").0, 202);
    assert_eq!(runtime.wait_exit(Duration::from_secs(20)), 0);
}

/// Trickles a request head that never ends, one byte every 50 ms, for at most `within`;
/// returns what the server answered once it closed the connection (None: it never did).
fn trickle_until_closed(port: u16, within: Duration) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let _ = stream.write_all(b"GET /status HTTP/1.1\r\nX-Slow: ");
    let deadline = Instant::now() + within;
    let mut answer = Vec::new();
    while Instant::now() < deadline {
        let mut buffer = [0u8; 512];
        match stream.read(&mut buffer) {
            Ok(0) => return Some(String::from_utf8_lossy(&answer).into_owned()),
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            Err(err)
                if err.kind() == std::io::ErrorKind::WouldBlock
                    || err.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(String::from_utf8_lossy(&answer).into_owned()),
        }
        if stream.write_all(b"a").is_err() {
            return Some(String::from_utf8_lossy(&answer).into_owned());
        }
    }
    None
}

#[test]
fn a_request_has_a_deadline_not_a_per_read_timeout() {
    let fixture = Fixture::new("deadline", &fixture_manifest("1.0.0", false));
    let mut runtime = fixture.start_with(&[("XBUNDLE_RUNTIME_REQUEST_DEADLINE_MS", "1000")]);
    runtime.wait_ready(&fixture);
    let ui_port = runtime.json("/ports")["services"]["ui"]["http"]
        .as_u64()
        .unwrap() as u16;
    for port in [runtime.port, ui_port] {
        // Bytes keep coming, so a per-read timeout would never fire: the deadline does.
        let answer = trickle_until_closed(port, Duration::from_secs(8))
            .unwrap_or_else(|| panic!("port {port}: a trickled head was never cut off"));
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
    }
    assert_eq!(runtime.post("/shutdown", "").0, 202);
    assert_eq!(runtime.wait_exit(Duration::from_secs(20)), 0);
}

/// One attacker: opens connections to `port` and misbehaves on them until `stop`.
fn attacker(
    port: u16,
    kind: &'static str,
    token: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let connect = || {
            let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
            stream
                .set_write_timeout(Some(Duration::from_millis(500)))
                .ok()?;
            Some(stream)
        };
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ port as u64;
        let mut random = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pause = || std::thread::sleep(Duration::from_millis(20));
        while !stop.load(Ordering::Relaxed) {
            match kind {
                // Holds a connection open and sends nothing.
                "idle" => {
                    let _held = connect();
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
                // A head that never ends, one byte every 200 ms.
                "slowloris" => {
                    let Some(mut stream) = connect() else {
                        pause();
                        continue;
                    };
                    let _ = stream.write_all(b"GET /status HTTP/1.1\r\n");
                    while !stop.load(Ordering::Relaxed) && stream.write_all(b"X").is_ok() {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
                // One header line without a newline, as long as the server takes it.
                "huge-line" => {
                    let Some(mut stream) = connect() else {
                        pause();
                        continue;
                    };
                    let chunk = vec![b'a'; 1 << 20];
                    let _ = stream.write_all(b"GET / HTTP/1.1\r\nX-Big: ");
                    for _ in 0..64 {
                        if stop.load(Ordering::Relaxed) || stream.write_all(&chunk).is_err() {
                            break;
                        }
                    }
                    pause();
                }
                // A body far over the limit, unauthenticated and authenticated.
                "big-body" => {
                    let Some(mut stream) = connect() else {
                        pause();
                        continue;
                    };
                    let auth = if random() % 2 == 0 {
                        format!("Authorization: Bearer {token}\r\n")
                    } else {
                        String::new()
                    };
                    let head = format!(
                        "POST /secrets HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: 1000000000\r\n\r\n"
                    );
                    let _ = stream.write_all(head.as_bytes());
                    let chunk = vec![b'{'; 1 << 20];
                    for _ in 0..64 {
                        if stop.load(Ordering::Relaxed) || stream.write_all(&chunk).is_err() {
                            break;
                        }
                    }
                    pause();
                }
                // Random bytes, with line ends now and then.
                _ => {
                    let Some(mut stream) = connect() else {
                        pause();
                        continue;
                    };
                    let mut chunk = vec![0u8; 16 * 1024];
                    for byte in chunk.iter_mut() {
                        *byte = match random() % 64 {
                            0 => b'\n',
                            1 => b'\r',
                            n => (n * 4 + random() % 4) as u8,
                        };
                    }
                    for _ in 0..16 {
                        if stop.load(Ordering::Relaxed) || stream.write_all(&chunk).is_err() {
                            break;
                        }
                    }
                    let mut sink = [0u8; 1024];
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                    let _ = stream.read(&mut sink);
                    pause();
                }
            }
        }
    })
}

/// A request with a timeout; the status (0 on any failure).
fn timed_get(port: u16, path: &str, token: Option<&str>) -> (u16, Duration) {
    let started = Instant::now();
    let status = (|| {
        let mut stream =
            TcpStream::connect_timeout(&(([127, 0, 0, 1], port).into()), Duration::from_secs(2))
                .ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n"
        )
        .ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).ok()?;
        String::from_utf8_lossy(&raw)
            .split(' ')
            .nth(1)?
            .parse()
            .ok()
    })()
    .unwrap_or(0);
    (status, started.elapsed())
}

#[test]
fn the_runtime_holds_under_the_stated_attacks() {
    let fixture = Fixture::new("attacks", &fixture_manifest("1.0.0", false));
    let mut runtime = fixture.start();
    runtime.wait_ready(&fixture);
    let pid = runtime.child.id();
    let ui_port = runtime.json("/ports")["services"]["ui"]["http"]
        .as_u64()
        .unwrap() as u16;
    let service_pids: Vec<i32> = runtime.json("/status")["services"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| [s["pid"].as_i64(), s["shim_pid"].as_i64()])
        .flatten()
        .map(|p| p as i32)
        .collect();
    let token = runtime.token.trim().to_owned();

    // At most 2 x (30 + 30 + 2 + 2 + 2) = 132 connections at once, 127.0.0.1 only.
    let stop = Arc::new(AtomicBool::new(false));
    // Whatever fails below, the attackers stop with the test.
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _stop_guard = StopOnDrop(Arc::clone(&stop));
    let mut attackers = Vec::new();
    for port in [runtime.port, ui_port] {
        for (kind, count) in [
            ("idle", 30),
            ("slowloris", 30),
            ("huge-line", 2),
            ("big-body", 2),
            ("garbage", 2),
        ] {
            for _ in 0..count {
                attackers.push(attacker(port, kind, token.clone(), Arc::clone(&stop)));
            }
        }
    }

    let attack = Duration::from_secs(15);
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    let mut polls = 0;
    let mut max_threads = 0;
    while started.elapsed() < attack {
        let (status, latency) = timed_get(runtime.port, "/status", Some(&token));
        assert_eq!(status, 200, "an authorised /status failed under attack");
        assert!(
            latency < Duration::from_secs(1),
            "/status took {latency:?} under attack"
        );
        worst = worst.max(latency);
        polls += 1;
        assert_eq!(timed_get(runtime.port, "/healthz", None).0, 200);
        assert_eq!(timed_get(ui_port, "/", None).0, 200, "the UI under attack");
        let hwm = proc_status(pid, "VmHWM").unwrap();
        assert!(hwm < RSS_LIMIT_KB, "peak RSS {hwm} kB under attack");
        max_threads = max_threads.max(proc_status(pid, "Threads").unwrap());
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        attacker.join().unwrap();
    }
    let hwm = proc_status(pid, "VmHWM").unwrap();
    eprintln!(
        "attacks: {polls} polls of /status, worst {worst:?}; peak RSS {hwm} kB; at most {max_threads} threads"
    );
    assert!(hwm < RSS_LIMIT_KB, "peak RSS {hwm} kB");
    // A thread per connection would show here (the idle and slow ones alone are 120).
    assert!(max_threads < 64, "{max_threads} threads");

    assert_eq!(runtime.post("/shutdown", "").0, 202);
    assert_eq!(runtime.wait_exit(Duration::from_secs(20)), 0);
    assert_eq!(
        wait_gone(&service_pids, Duration::from_secs(10)),
        Vec::<i32>::new()
    );
}

#[test]
fn a_service_flooding_its_output_without_newlines_stays_bounded() {
    const LINE_LIMIT: usize = 64 * 1024;
    let mut service = testsvc_service("flood", &["flood", "52428800"], "^flood done$");
    service["readiness"]["timeout_ms"] = 60_000.into();
    let fixture = Fixture::new("flood", &small_manifest("1.0.0", json!([service])));
    let mut runtime = fixture.start_with(&[("XBUNDLE_LOG_MAX_BYTES", "4194304")]);
    // `log_match` readiness sees the line after 50 MB without a newline.
    wait_state(&runtime, &fixture, "flood", "ready");
    let hwm = proc_status(runtime.child.id(), "VmHWM").unwrap();
    assert!(hwm < RSS_LIMIT_KB, "peak RSS {hwm} kB after a 50 MB line");

    let log = fixture.app_data.join("logs/flood.log");
    let mut total = 0;
    for suffix in ["", ".1", ".2", ".3"] {
        let path = format!("{}{suffix}", log.display());
        let text = std::fs::read(&path).unwrap_or_else(|_| panic!("{path}: rotated away?"));
        assert!(
            text.len() <= 4 * 1024 * 1024,
            "{path}: {} bytes",
            text.len()
        );
        for line in text.split(|&b| b == b'\n') {
            assert!(line.len() <= LINE_LIMIT, "{path}: a line of {}", line.len());
        }
        total += text.len();
    }
    // Three rotated files and the current one: the older pieces were dropped.
    assert!(total > 8 * 1024 * 1024, "{total}");
    assert!(!Path::new(&format!("{}.4", log.display())).exists());

    let (status, tail) = runtime.get("/logs/tail?service=flood&lines=3");
    assert_eq!(status, 200);
    let lines: Vec<&str> = tail.lines().collect();
    assert_eq!(lines.len(), 3, "{}", tail.len());
    assert_eq!(lines[2], "flood done");
    assert!(lines.iter().all(|l| l.len() <= LINE_LIMIT));
    assert!(lines[0].bytes().all(|b| b == b'x'));
    let hwm = proc_status(runtime.child.id(), "VmHWM").unwrap();
    eprintln!("flood: peak RSS {hwm} kB after 50 MB without a newline and /logs/tail");
    assert!(hwm < RSS_LIMIT_KB, "peak RSS {hwm} kB after /logs/tail");

    assert_eq!(runtime.post("/shutdown", "").0, 202);
    assert_eq!(runtime.wait_exit(Duration::from_secs(20)), 0);
}
