//! Secrets on the real binary: `remote_fetch` from a local HTTP server (127.0.0.1) that is
//! down at start, retried until it answers; its `file` target follows the fetched value.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Serves `value` to requests carrying Basic auth `user:pw` (401 otherwise), on `listener`.
fn serve_secret(listener: TcpListener, value: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
            // base64("user:pw")
            let (status, body) = if head.contains("authorization: basic dxnlcjpwdw==") {
                ("200 OK", value.lock().unwrap().clone())
            } else {
                ("401 Unauthorized", String::new())
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
}

#[test]
fn a_remote_fetch_secret_is_retried_until_it_arrives_and_its_file_follows_the_value() {
    // A port with nothing listening (yet).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut svc = testsvc_service("svc", &["worker"], "Worker started successfully");
    svc["secrets"] = serde_json::json!(["remote"]);
    let indie = testsvc_service("indie", &["sleeper"], "never logged");
    let mut indie = indie;
    indie["readiness"] = serde_json::json!({"type": "dependencies_ready"});
    let mut manifest = small_manifest("1.0.0", serde_json::json!([svc, indie]));
    manifest["secrets"] = serde_json::json!([{
        "id": "remote", "class": "remote_fetch",
        "fetch": {"url": format!("http://user:pw@127.0.0.1:{port}/secret?key=k3y"), "timeout_ms": 2000},
        "target": {"type": "file", "name": "REMOTE_PATH"}
    }]);
    let fixture = Fixture::new("remote-fetch", &manifest);
    let secret_file = fixture.app_data.join("secrets/remote");

    // Offline at start: the service needing it waits with a clear status, the other runs.
    let mut runtime = fixture.start();
    let status = wait_state(&runtime, &fixture, "svc", "blocked");
    let svc = &status["services"][0];
    let missing = svc["missing_secrets"][0].as_str().unwrap();
    assert!(
        missing.starts_with("remote (offline or unreachable (http://127.0.0.1:"),
        "{missing}"
    );
    wait_state(&runtime, &fixture, "indie", "ready");
    assert!(!secret_file.exists());

    // The server comes up: the service starts, without a restart of the runtime.
    let value = Arc::new(Mutex::new("value-one".to_owned()));
    serve_secret(
        TcpListener::bind(("127.0.0.1", port)).unwrap(),
        Arc::clone(&value),
    );
    runtime.wait_ready(&fixture);
    assert_eq!(std::fs::read_to_string(&secret_file).unwrap(), "value-one");
    let status = runtime.get("/status").1 + &runtime.get("/secrets").1;
    assert_eq!(runtime.post("/shutdown", "").0, 202);
    assert_eq!(runtime.wait_exit(Duration::from_secs(30)), 0);

    // A new value on the next start is what the file holds.
    *value.lock().unwrap() = "value-two".to_owned();
    let mut runtime = fixture.start();
    runtime.wait_ready(&fixture);
    assert_eq!(std::fs::read_to_string(&secret_file).unwrap(), "value-two");
    assert_eq!(runtime.post("/shutdown", "").0, 202);
    assert_eq!(runtime.wait_exit(Duration::from_secs(30)), 0);

    // Neither the credentials of the URL nor a value reach telemetry, status or stderr.
    let telemetry =
        std::fs::read_to_string(fixture.app_data.join("telemetry/events.jsonl")).unwrap();
    assert!(telemetry.contains("\"secret_fetch_failed\""), "{telemetry}");
    assert!(telemetry.contains("\"secret_fetched\""), "{telemetry}");
    for text in [&telemetry, &status, &fixture.stderr()] {
        for needle in ["user:pw", "k3y", "value-one", "value-two"] {
            assert!(!text.contains(needle), "{needle} in {text}");
        }
    }
}
