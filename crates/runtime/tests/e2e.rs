//! End-to-end: the real `xbundle-runtime` binary on a fixture bundle of small real services
//! (the `testsvc` example), driven through its control API.

use crate::common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const SECRET: &str = "Sup3rS3cretValue0123456789";

fn status_of<'a>(status: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap()
}

fn bundle_pids(fixture: &Fixture, runtime: &Runtime) -> Vec<i32> {
    let status = runtime.json("/status");
    let mut pids = Vec::new();
    for service in status["services"].as_array().unwrap() {
        for key in ["pid", "shim_pid"] {
            if let Some(pid) = service[key].as_i64() {
                pids.push(pid as i32);
            }
        }
    }
    for name in [
        "api",
        "api-child",
        "worker",
        "worker-child",
        "indie",
        "indie-child",
    ] {
        pids.extend(fixture.pid_file(name));
    }
    pids
}

/// The local addresses of the listening TCP sockets on `port` (from `/proc/net/tcp{,6}`).
fn listen_addresses(port: u16) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            let Some((addr, hex_port)) = local.split_once(':') else {
                continue;
            };
            if *state != "0A" || u16::from_str_radix(hex_port, 16) != Ok(port) {
                continue;
            }
            found.push(if addr.len() == 8 {
                let n = u32::from_str_radix(addr, 16).unwrap();
                std::net::Ipv4Addr::from(n.to_le_bytes()).to_string()
            } else {
                format!("ipv6 {addr}")
            });
        }
    }
    found
}

#[test]
fn runs_a_bundle_end_to_end() {
    let mut manifest = fixture_manifest("1.0.0", true);
    // An independent service that needs no secret: the missing one must not hold it back.
    let mut indie = testsvc_service("indie", &["hang", "indie"], "indie hangs");
    indie["health"]["command"] = serde_json::json!(["./testsvc", "check"]);
    manifest["services"].as_array_mut().unwrap().push(indie);
    // The lowest port of the API's range is taken during the first start, so the API gets
    // another one; the second start finds the lowest free but must keep the API's port.
    let api_min = manifest["services"][1]["ports"]["requested"][0]["range"]["min"]
        .as_u64()
        .unwrap() as u16;
    let holder = std::net::TcpListener::bind(("127.0.0.1", api_min)).unwrap();
    let fixture = Fixture::new("e2e", &manifest);
    let mut responses = String::new();
    let mut runtime = fixture.start();

    // The control API listens on loopback only.
    assert_eq!(listen_addresses(runtime.port), ["127.0.0.1"]);

    // Idle connections hold no thread and cannot lock the API out: past 64 incomplete
    // connections, a new one evicts the oldest (which is answered 503), and requests are
    // served throughout.
    let mut idle: Vec<TcpStream> = Vec::new();
    for _ in 0..64 {
        idle.push(TcpStream::connect(("127.0.0.1", runtime.port)).unwrap());
        // One at a time, so they are accepted in this order.
        assert_eq!(request(runtime.port, "GET", "/healthz", None, None).0, 200);
    }
    let oldest = &mut idle[0];
    oldest
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    oldest.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    drop(idle);

    // Requests without the token are refused; /healthz is open.
    assert_eq!(request(runtime.port, "GET", "/healthz", None, None).0, 200);
    for path in [
        "/status",
        "/readyz",
        "/ports",
        "/secrets",
        "/logs/tail?service=api",
    ] {
        assert_eq!(
            request(runtime.port, "GET", path, None, None).0,
            401,
            "{path}"
        );
        assert_eq!(
            request(runtime.port, "GET", path, Some("wrong"), None).0,
            401,
            "{path}"
        );
    }
    assert_eq!(
        request(runtime.port, "POST", "/shutdown", None, Some("")).0,
        401
    );
    assert_eq!(
        request(
            runtime.port,
            "POST",
            "/secrets",
            None,
            Some(&format!(r#"{{"api_secret": "{SECRET}"}}"#))
        )
        .0,
        401
    );
    assert!(!fixture.app_data.join("secrets/api_secret").exists());

    // The required user_prompt secret holds back the API (and what depends on it).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = runtime.json("/status");
        if status_of(&status, "api")["state"] == "blocked" {
            assert_eq!(
                status_of(&status, "api")["missing_secrets"],
                serde_json::json!(["api_secret"])
            );
            assert_eq!(status_of(&status, "worker")["state"], "waiting");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Only the services that need the secret are held back: the independent one runs.
    let status = wait_state(&runtime, &fixture, "indie", "ready");
    assert_eq!(status_of(&status, "api")["state"], "blocked", "{status}");
    assert_eq!(runtime.get("/readyz").0, 503);
    let secrets = runtime.json("/secrets");
    responses.push_str(&secrets.to_string());
    let list = secrets["secrets"].as_array().unwrap();
    assert_eq!(
        list.iter().find(|s| s["id"] == "api_secret").unwrap()["set"],
        false
    );
    assert_eq!(
        list.iter().find(|s| s["id"] == "token").unwrap()["set"],
        true
    );
    let generated = std::fs::read_to_string(fixture.app_data.join("secrets/token")).unwrap();
    assert_eq!(generated.len(), 24);
    assert!(!secrets.to_string().contains(&generated));

    // A value not matching the format is rejected (and not echoed); a good one is accepted.
    let (code, body) = runtime.post("/secrets", r#"{"api_secret": "short!"}"#);
    assert_eq!(code, 400, "{body}");
    assert!(!body.contains("short!"));
    let (code, body) = runtime.post("/secrets", &format!(r#"{{"api_secret": "{SECRET}"}}"#));
    assert_eq!(code, 200, "{body}");
    responses.push_str(&body);
    runtime.wait_ready(&fixture);

    // Secret files are 0600.
    use std::os::unix::fs::PermissionsExt;
    for name in ["secrets/api_secret", "secrets/token", "runtime/auth-token"] {
        let mode = std::fs::metadata(fixture.app_data.join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }

    // The API answers through the UI's /api proxy; the UI is a single-page app.
    let ports = runtime.json("/ports");
    responses.push_str(&ports.to_string());
    let ui_port = ports["services"]["ui"]["http"].as_u64().unwrap() as u16;
    let (code, body) = request(ui_port, "GET", "/api/hello", None, None);
    assert_eq!(code, 200, "{body}");
    let hello: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(hello["secret_set"], true, "{body}");
    assert_eq!(hello["token_file"], true, "{body}");
    assert_eq!(
        hello["templated_secret"], true,
        "${{secret.api_secret}} substituted: {body}"
    );
    assert!(
        request(ui_port, "GET", "/", None, None)
            .1
            .contains("fixture ui")
    );
    assert!(
        request(ui_port, "GET", "/some/client/route", None, None)
            .1
            .contains("fixture ui")
    );
    assert_eq!(
        request(ui_port, "GET", "/assets/app.js", None, None).1,
        "console.log('hi')"
    );
    assert_eq!(request(ui_port, "GET", "/missing.css", None, None).0, 404);
    assert_eq!(
        request(ui_port, "GET", "/../bundle.json", None, None).0,
        400
    );

    // A WebSocket-style upgrade goes through the proxy and stays open both ways.
    let mut ws = TcpStream::connect(("127.0.0.1", ui_port)).unwrap();
    ws.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    ws.write_all(
        b"GET /api/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    )
    .unwrap();
    let mut buffer = [0u8; 256];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = ws.read(&mut buffer).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buffer[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 101"));
    ws.write_all(b"ping-frame").unwrap();
    let mut echo = [0u8; 10];
    ws.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"ping-frame");
    drop(ws);

    // Killing the API process leads to a restart and ready again.
    let status = runtime.json("/status");
    let api_pid = status_of(&status, "api")["pid"].as_i64().unwrap() as i32;
    assert_eq!(Some(api_pid), fixture.pid_file("api"));
    // SAFETY: plain syscall.
    unsafe { libc::kill(api_pid, libc::SIGKILL) };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = runtime.json("/status");
        let api = status_of(&status, "api");
        if api["restarts"].as_u64().unwrap() >= 1 && api["state"] == "ready" {
            assert_ne!(api["pid"].as_i64().unwrap() as i32, api_pid);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        std::thread::sleep(Duration::from_millis(20));
    }
    runtime.wait_ready(&fixture);
    assert!(!alive(api_pid));
    let tail = runtime.get("/logs/tail?service=api&lines=50");
    assert_eq!(tail.0, 200);
    assert!(tail.1.contains("api listening on"), "{}", tail.1);
    responses.push_str(&tail.1);
    responses.push_str(&runtime.get("/status").1);

    // SIGTERM to the runtime leaves no process of the bundle alive.
    let first_ports = runtime.json("/ports")["services"].clone();
    assert_ne!(first_ports["api"]["http"], api_min, "{first_ports}");
    let pids = bundle_pids(&fixture, &runtime);
    assert!(pids.len() >= 8, "{pids:?}");
    // SAFETY: plain syscall.
    unsafe { libc::kill(runtime.child.id() as i32, libc::SIGTERM) };
    assert_eq!(
        runtime.wait_exit(Duration::from_secs(30)),
        0,
        "{}",
        fixture.stderr()
    );
    assert_eq!(
        wait_gone(&pids, Duration::from_secs(10)),
        Vec::<i32>::new(),
        "{}",
        fixture.stderr()
    );
    assert!(!fixture.app_data.join("runtime/auth-token").exists());

    // The stop was graceful: the services died of the SIGTERM, not of the forced SIGKILL.
    let telemetry =
        std::fs::read_to_string(fixture.app_data.join("telemetry/events.jsonl")).unwrap();
    let exits: Vec<serde_json::Value> = telemetry
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|event| event["event"] == "service_exit")
        .collect();
    for id in ["api", "worker", "indie"] {
        let last = exits.iter().rev().find(|e| e["service"] == id).unwrap();
        assert_eq!(last["code"], 128 + 15, "{id}: {last}");
    }

    // The secret value appears in no log, telemetry line or API response.
    let everything =
        read_tree(&fixture.app_data.join("logs")) + &read_tree(&fixture.app_data.join("telemetry"));
    assert!(everything.contains("service_ready"));
    assert!(!everything.contains(SECRET) && !everything.contains(&generated));
    assert!(!responses.contains(SECRET) && !responses.contains(&generated));
    assert!(!fixture.stderr().contains(SECRET));
    let migrations = std::fs::read_to_string(fixture.app_data.join("migrations.log")).unwrap();
    assert_eq!(migrations, "first\nalways-2\n");

    // A second start reuses the generated secrets and the ports (the API's, although a lower
    // one of its range is free now), and runs no migration again.
    drop(holder);
    let mut runtime = fixture.start();
    runtime.wait_ready(&fixture);
    assert_eq!(runtime.json("/ports")["services"], first_ports);
    assert_eq!(
        std::fs::read_to_string(fixture.app_data.join("secrets/token")).unwrap(),
        generated
    );
    assert_eq!(
        std::fs::read_to_string(fixture.app_data.join("migrations.log")).unwrap(),
        "first\nalways-2\n"
    );

    // SIGKILL to the runtime also leaves none (the worker's child left its process group).
    let pids = bundle_pids(&fixture, &runtime);
    runtime.child.kill().unwrap();
    runtime.child.wait().unwrap();
    assert_eq!(wait_gone(&pids, Duration::from_secs(15)), Vec::<i32>::new());

    // A new app version runs the upgrade migration, once.
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.bundle.join("bundle.json")).unwrap())
            .unwrap();
    manifest["app"]["version"] = "1.1.0".into();
    fixture.write_manifest(&manifest);
    let mut runtime = fixture.start();
    runtime.wait_ready(&fixture);
    assert_eq!(
        std::fs::read_to_string(fixture.app_data.join("migrations.log")).unwrap(),
        "first\nalways-2\nupgrade-3\n"
    );
    let pids = bundle_pids(&fixture, &runtime);
    assert_eq!(runtime.post("/shutdown", "").0, 202);
    assert_eq!(runtime.wait_exit(Duration::from_secs(30)), 0);
    assert_eq!(wait_gone(&pids, Duration::from_secs(10)), Vec::<i32>::new());
    let mut runtime = fixture.start();
    runtime.wait_ready(&fixture);
    assert_eq!(
        std::fs::read_to_string(fixture.app_data.join("migrations.log")).unwrap(),
        "first\nalways-2\nupgrade-3\n"
    );
    assert_eq!(runtime.post("/shutdown", "").0, 202);
    assert_eq!(runtime.wait_exit(Duration::from_secs(30)), 0);
}

/// `POST /shutdown` is always answered, even when there is nothing to stop and the runtime
/// exits at once: the answer is written before the stop is asked for. Before, the stop could
/// win the race against the worker writing the 202, and the caller read an empty answer (seen
/// in CI, as status 0).
#[test]
fn a_shutdown_is_answered_even_when_the_runtime_exits_at_once() {
    // The user's secret is never set: the services that need it never start.
    let fixture = Fixture::new("shutdown-answered", &fixture_manifest("1.0.0", true));
    for round in 0..100 {
        let mut runtime = fixture.start();
        let (status, body) = runtime.post("/shutdown", "");
        assert_eq!(status, 202, "round {round}: {body:?}");
        assert!(body.contains("stopping"), "round {round}: {body}");
        assert_eq!(
            runtime.wait_exit(Duration::from_secs(30)),
            0,
            "round {round}"
        );
    }
}
