//! Secrets on the real binary: `remote_fetch` from a local HTTP server (127.0.0.1) that is
//! down at start, retried until it answers; its `file` target follows the fetched value;
//! https against the platform's roots; the entropy of generated values; values read and
//! written through no link; a silent vault; fetched values a process cannot carry.

use crate::common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::FileTypeExt;
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
    wait_state(&runtime, &fixture, "svc", "blocked");
    // The first fetch runs on a thread of its own from the start: its reason shows once it
    // failed.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = runtime.json("/status");
        let missing = status["services"][0]["missing_secrets"][0]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if missing.starts_with("remote (offline or unreachable (http://127.0.0.1:") {
            break;
        }
        assert!(
            missing == "remote (not fetched yet)" && std::time::Instant::now() < deadline,
            "{missing}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
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

/// A certificate authority made by the test, and server certificates it signs for
/// `127.0.0.1` and `localhost`.
struct Authority {
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Authority {
            cert,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A TLS server configuration with a certificate for the loopback host, signed by this CA.
    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .unwrap();
        params
            .extended_key_usages
            .push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        params.use_authority_key_identifier_extension = true;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone(), self.cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        Arc::new(config)
    }
}

/// Serves `value` over TLS on a fresh 127.0.0.1 port; counts the connections it accepts.
fn serve_tls(config: Arc<rustls::ServerConfig>, value: &str) -> (u16, Arc<Mutex<u32>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(Mutex::new(0));
    let counter = Arc::clone(&accepted);
    let value = value.to_owned();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            *counter.lock().unwrap() += 1;
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let connection = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
            let mut tls = rustls::StreamOwned::new(connection, stream);
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            // The handshake happens on the first read; a client that refuses the certificate
            // ends it here.
            while !head.ends_with(b"\r\n\r\n") && matches!(tls.read(&mut byte), Ok(1)) {
                head.push(byte[0]);
            }
            if head.ends_with(b"\r\n\r\n") {
                let _ = write!(
                    tls,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{value}",
                    value.len()
                );
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        }
    });
    (port, accepted)
}

/// Issue 8, item 15: `remote_fetch` over https, verified against the platform's roots
/// (`SSL_CERT_FILE` names them here); a server whose certificate no trusted root signed is
/// refused, retried, reported, and its value never used.
#[test]
fn https_fetches_trust_the_platform_roots_and_nothing_else() {
    let trusted = Authority::new("xbundle test root");
    let stranger = Authority::new("nobody trusts me");
    let (good_port, _) = serve_tls(trusted.server_config(), "value-over-tls");
    let (bad_port, bad_connections) = serve_tls(stranger.server_config(), "value-untrusted");

    let mut svc = testsvc_service("svc", &["worker"], "Worker started successfully");
    svc["secrets"] = serde_json::json!(["good"]);
    let mut held = testsvc_service("held", &["worker"], "Worker started successfully");
    held["secrets"] = serde_json::json!(["bad"]);
    held["readiness"] = serde_json::json!({"type": "dependencies_ready"});
    let mut manifest = small_manifest("1.0.0", serde_json::json!([svc, held]));
    manifest["secrets"] = serde_json::json!([
        {"id": "good", "class": "remote_fetch",
         "fetch": {"url": format!("https://127.0.0.1:{good_port}/v1/good?token=t0k3n"), "timeout_ms": 3000},
         "target": {"type": "file", "name": "GOOD_PATH"}},
        {"id": "bad", "class": "remote_fetch",
         "fetch": {"url": format!("https://localhost:{bad_port}/v1/bad"), "timeout_ms": 3000},
         "target": {"type": "file", "name": "BAD_PATH"}}
    ]);
    let fixture = Fixture::new("https-fetch", &manifest);
    let roots = fixture.dir.join("roots.pem");
    std::fs::write(&roots, trusted.cert.pem()).unwrap();
    let runtime = fixture.start_with(&[
        ("SSL_CERT_FILE", roots.to_str().unwrap()),
        ("SSL_CERT_DIR", ""),
    ]);

    // The trusted server's value arrives and its service starts.
    wait_state(&runtime, &fixture, "svc", "ready");
    assert_eq!(
        std::fs::read_to_string(fixture.app_data.join("secrets/good")).unwrap(),
        "value-over-tls"
    );
    // The stranger is tried again and again, never trusted.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while *bad_connections.lock().unwrap() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the fetch was not retried"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = wait_state(&runtime, &fixture, "held", "blocked");
    let held = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "held")
        .unwrap();
    let missing = held["missing_secrets"][0].as_str().unwrap();
    assert!(
        missing.starts_with("bad (offline or unreachable (https://localhost:")
            && missing.contains("TLS")
            && missing.to_ascii_lowercase().contains("certificate"),
        "{missing}"
    );
    assert!(!fixture.app_data.join("secrets/bad").exists());
    let telemetry =
        std::fs::read_to_string(fixture.app_data.join("telemetry/events.jsonl")).unwrap();
    assert!(
        telemetry.contains("\"secret_fetch_failed\"") && telemetry.contains("\"bad\""),
        "{telemetry}"
    );
    let everything = format!(
        "{telemetry}{status}{}{}",
        runtime.get("/secrets").1,
        fixture.stderr()
    );
    for needle in ["value-untrusted", "value-over-tls", "t0k3n"] {
        assert!(!everything.contains(needle), "{needle} in {everything}");
    }
}

/// Issue 8, item 14: what the runtime generates has the entropy its charset claims. Many
/// values per charset, through the real binary: every character belongs to the set, the
/// distinct characters seen approach the set's size, and the empirical entropy per character
/// is close to log2(size).
#[test]
fn generated_secrets_have_the_entropy_of_their_charset() {
    // (charset, its characters)
    let lower = "abcdefghijklmnopqrstuvwxyz";
    let upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let digits = "0123456789";
    let symbols = "!#$%&()*+,-./:;<=>?@[]^_{|}~";
    let sets: Vec<(&str, String)> = vec![
        ("alnum", format!("{upper}{lower}{digits}")),
        ("alpha", format!("{upper}{lower}")),
        ("lower", lower.to_string()),
        ("upper", upper.to_string()),
        ("numeric", digits.to_string()),
        ("hex", format!("{digits}abcdef")),
        ("base64", format!("{upper}{lower}{digits}+/")),
        ("base64url", format!("{upper}{lower}{digits}-_")),
        ("alnum_symbols", format!("{upper}{lower}{digits}{symbols}")),
        ("symbols", format!("{upper}{lower}{digits}{symbols}")),
        (
            "ABCDEFGHJKMNPQRSTVWXYZ23456789",
            "ABCDEFGHJKMNPQRSTVWXYZ23456789".into(),
        ),
    ];
    const PER_SET: usize = 12;
    const LENGTH: usize = 1024;
    let mut secrets = Vec::new();
    for (index, (charset, _)) in sets.iter().enumerate() {
        for n in 0..PER_SET {
            secrets.push(serde_json::json!({
                "id": format!("s{index}_{n}"), "class": "per_install_generated",
                "generator": {"type": "random", "length": LENGTH, "charset": charset},
                "target": {"type": "env", "name": format!("S{index}_{n}")}
            }));
        }
    }
    let mut manifest = small_manifest(
        "1.0.0",
        serde_json::json!([testsvc_service(
            "svc",
            &["worker"],
            "Worker started successfully"
        )]),
    );
    manifest["secrets"] = serde_json::Value::Array(secrets);
    let fixture = Fixture::new("entropy", &manifest);
    let mut runtime = fixture.start();
    runtime.wait_ready(&fixture);
    assert_eq!(runtime.post("/shutdown", "").0, 202);
    assert_eq!(runtime.wait_exit(Duration::from_secs(30)), 0);

    for (index, (charset, expected)) in sets.iter().enumerate() {
        let expected: std::collections::BTreeSet<char> = expected.chars().collect();
        let mut counts: std::collections::BTreeMap<char, usize> = Default::default();
        for n in 0..PER_SET {
            let value =
                std::fs::read_to_string(fixture.app_data.join(format!("secrets/s{index}_{n}")))
                    .unwrap();
            assert_eq!(value.chars().count(), LENGTH, "{charset}");
            for c in value.chars() {
                assert!(expected.contains(&c), "{charset}: `{c}` is not in the set");
                *counts.entry(c).or_default() += 1;
            }
        }
        let total = (PER_SET * LENGTH) as f64;
        let entropy: f64 = counts
            .values()
            .map(|&count| {
                let p = count as f64 / total;
                -p * p.log2()
            })
            .sum();
        let ideal = (expected.len() as f64).log2();
        assert_eq!(
            counts.len(),
            expected.len(),
            "{charset}: {} distinct characters drawn of {}",
            counts.len(),
            expected.len()
        );
        assert!(
            (ideal - entropy).abs() < 0.05,
            "{charset}: {entropy:.3} bits per character, expected {ideal:.3}"
        );
    }
}

/// The `problem` `GET /secrets` gives for `id` (`None` when the secret is set).
fn secret_problem(runtime: &Runtime, id: &str) -> Option<String> {
    let list = runtime.json("/secrets");
    let entry = list["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap()
        .clone();
    if entry["set"] == true {
        None
    } else {
        Some(entry["problem"].as_str().unwrap_or("missing").to_owned())
    }
}

fn mkfifo(path: &std::path::Path) {
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0, "mkfifo");
}

/// Values live in `<app data>/secrets`, reached through no link: a link planted at a value's
/// name is never read (it was: the canary's text became the secret) and a FIFO never blocks
/// the start (it did, for good); a `secrets/` directory swapped for a link while the runtime
/// runs is never written through (a value set then landed in the link's target); a value a
/// process cannot carry (NUL) is refused rather than stored (the service then never started).
#[test]
fn secrets_are_read_and_written_through_no_link() {
    let fixture = Fixture::new("secrets-links", &fixture_manifest("1.0.0", true));
    let canary = Canary::plant(fixture.dir.join("canary"));
    let secrets = fixture.app_data.join("secrets");
    std::fs::create_dir_all(fixture.app_data.join("runtime")).unwrap();
    std::fs::write(fixture.app_data.join("runtime/lock"), "").unwrap();
    std::fs::create_dir_all(&secrets).unwrap();
    std::os::unix::fs::symlink(canary.dir.join("victim.txt"), secrets.join("api_secret")).unwrap();
    mkfifo(&secrets.join("token"));

    let mut runtime = fixture.start();
    let problem = secret_problem(&runtime, "api_secret").expect("read through a link");
    assert!(problem.contains("symbolic link"), "{problem}");
    let problem = secret_problem(&runtime, "token").expect("a FIFO is no value");
    assert!(problem.contains("not a regular file"), "{problem}");
    // Not regenerated over what is there: the FIFO is left alone.
    assert!(
        std::fs::symlink_metadata(secrets.join("token"))
            .unwrap()
            .file_type()
            .is_fifo()
    );

    // A value a process cannot carry is refused, and nothing is stored.
    let (status, body) = runtime.post("/secrets", r#"{"api_secret": "abcdefgh\u0000ijklmnopqrs"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("NUL"), "{body}");
    assert!(
        std::fs::symlink_metadata(secrets.join("api_secret"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // Setting the value replaces the link itself, never its target.
    let (status, body) = runtime.post("/secrets", r#"{"api_secret": "AAAAbbbbCCCCdddd1"}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        std::fs::read_to_string(secrets.join("api_secret")).unwrap(),
        "AAAAbbbbCCCCdddd1"
    );
    canary.assert_intact("a value set over a link");

    // The directory swapped for a link to the canary while the runtime runs.
    let moved = fixture.app_data.join("secrets.moved");
    std::fs::rename(&secrets, &moved).unwrap();
    std::os::unix::fs::symlink(&canary.dir, &secrets).unwrap();
    let (status, body) = runtime.post("/secrets", r#"{"api_secret": "EEEEffffGGGGhhhh2"}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        std::fs::read_to_string(moved.join("api_secret")).unwrap(),
        "EEEEffffGGGGhhhh2"
    );
    canary.assert_intact("a value set with secrets/ swapped for a link");

    assert_eq!(runtime.post("/shutdown", "").0, 202);
    assert_eq!(runtime.wait_exit(Duration::from_secs(30)), 0);
    canary.assert_intact("after the run");
    let stderr = fixture.stderr();
    for needle in ["AAAAbbbb", "EEEEffff", "canary: must stay"] {
        assert!(!stderr.contains(needle), "{needle} in {stderr}");
    }
}

/// A vault that accepts the connection and never answers, with the longest timeout allowed:
/// the start does not wait for it (the control API is up at once, the fetch runs on a thread
/// of its own) and a stop signal is obeyed at once. Before, the start waited for the whole
/// timeout (unbounded then) with SIGTERM blocked.
#[test]
fn a_silent_vault_holds_up_neither_the_start_nor_a_stop() {
    let vault = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = vault.local_addr().unwrap().port();
    // Accepts, reads nothing, answers nothing (connections held until the test ends).
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in vault.incoming().flatten() {
            held.push(stream);
        }
    });
    let mut svc = testsvc_service("svc", &["worker"], "Worker started successfully");
    svc["secrets"] = serde_json::json!(["remote"]);
    let mut indie = testsvc_service("indie", &["sleeper"], "never logged");
    indie["readiness"] = serde_json::json!({"type": "dependencies_ready"});
    let mut manifest = small_manifest("1.0.0", serde_json::json!([svc, indie]));
    manifest["secrets"] = serde_json::json!([{
        "id": "remote", "class": "remote_fetch",
        "fetch": {"url": format!("http://127.0.0.1:{port}/secret"), "timeout_ms": 60000},
        "target": {"type": "env", "name": "REMOTE"}
    }]);
    let fixture = Fixture::new("silent-vault", &manifest);
    let mut runtime = fixture.start();
    wait_state(&runtime, &fixture, "indie", "ready");
    let status = wait_state(&runtime, &fixture, "svc", "blocked");
    assert!(
        status["services"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("remote"),
        "{status}"
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(runtime.child.id() as i32, libc::SIGTERM) };
    assert_eq!(runtime.wait_exit(Duration::from_secs(20)), 0);
}

/// A fetched value is checked like a value set through the API: one holding NUL (which no
/// process environment can carry) or that is not UTF-8 is refused, never stored or altered.
#[test]
fn a_fetched_value_a_process_cannot_carry_is_refused() {
    for (name, body) in [("nul", &b"abc\0def"[..]), ("latin1", &b"caf\xe9-value"[..])] {
        let vault = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = vault.local_addr().unwrap().port();
        let body = body.to_vec();
        std::thread::spawn(move || {
            for mut stream in vault.incoming().flatten() {
                let mut head = [0u8; 1024];
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = stream.read(&mut head);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            }
        });
        let mut svc = testsvc_service("svc", &["worker"], "Worker started successfully");
        svc["secrets"] = serde_json::json!(["remote"]);
        let mut manifest = small_manifest("1.0.0", serde_json::json!([svc]));
        manifest["secrets"] = serde_json::json!([{
            "id": "remote", "class": "remote_fetch",
            "fetch": {"url": format!("http://127.0.0.1:{port}/secret"), "timeout_ms": 2000},
            "target": {"type": "file", "name": "REMOTE_PATH"}
        }]);
        let fixture = Fixture::new(&format!("fetched-{name}"), &manifest);
        let mut runtime = fixture.start();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let problem = loop {
            let problem = secret_problem(&runtime, "remote");
            if problem
                .as_deref()
                .is_none_or(|p| p.starts_with("fetched value rejected"))
            {
                break problem;
            }
            assert!(std::time::Instant::now() < deadline, "{problem:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let problem = problem.unwrap_or_else(|| panic!("{name}: the value was accepted"));
        assert!(
            problem.contains("NUL") || problem.contains("not UTF-8"),
            "{name}: {problem}"
        );
        assert!(!fixture.app_data.join("secrets/remote").exists(), "{name}");
        assert_eq!(runtime.post("/shutdown", "").0, 202);
        assert_eq!(runtime.wait_exit(Duration::from_secs(30)), 0);
    }
}
