//! The REAPI backend against a real BuildGrid server (one per test binary, started by the
//! harness in `test-support/buildgrid.rs` on 127.0.0.1): blobs both ways (batch and
//! ByteStream), FindMissingBlobs, action entries written and read back, instance names, and
//! BuildGrid's own CLI reading back an action result this crate wrote.

#[path = "../../../test-support/buildgrid.rs"]
mod buildgrid;

use std::time::Duration;

use engine::Digest;
use engine::remote::{RemoteBackend, RemoteError};
use engine::store::{ActionResult, OutputFile, Store, StoredStream};
use reapi::{ReapiBackend, ReapiOptions};

fn connect(server: &buildgrid::BuildGrid, instance: &str) -> ReapiBackend {
    ReapiBackend::connect(
        &server.url(),
        ReapiOptions {
            instance: instance.to_string(),
            call_timeout: Duration::from_secs(30),
            ..ReapiOptions::default()
        },
    )
    .unwrap_or_else(|error| {
        panic!(
            "connecting to {}: {error}\n{}",
            server.url(),
            server.log_text()
        )
    })
}

/// Bytes unique to this run and `label` (the server is shared by the tests of this binary).
fn unique(label: &str, len: usize) -> Vec<u8> {
    let seed = format!(
        "{label} {} {:?}",
        std::process::id(),
        std::time::SystemTime::now()
    );
    let mut out = Vec::with_capacity(len);
    let mut block = Digest::of_bytes(seed.as_bytes());
    while out.len() < len {
        out.extend_from_slice(block.as_bytes());
        block = Digest::of_bytes(block.as_bytes());
    }
    out.truncate(len);
    out
}

fn put(backend: &ReapiBackend, bytes: &[u8]) -> Digest {
    let digest = Digest::of_bytes(bytes);
    backend
        .put_blob(&digest, bytes.len() as u64, &mut &bytes[..])
        .unwrap();
    digest
}

fn get(backend: &ReapiBackend, digest: &Digest, size: u64) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    backend
        .get_blob(digest, size, &mut out)
        .unwrap()
        .then_some(out)
}

#[test]
fn blobs_round_trip_through_batches_and_bytestream() {
    let Some(server) = buildgrid::shared() else {
        return;
    };
    let backend = connect(server, "");
    assert!(backend.batch_limit() < 5 << 20);
    for (label, len) in [("small", 1000), ("large", 5 << 20)] {
        let bytes = unique(label, len);
        let digest = Digest::of_bytes(&bytes);
        assert_eq!(get(&backend, &digest, len as u64), None, "{label}: before");
        put(&backend, &bytes);
        assert_eq!(
            get(&backend, &digest, len as u64).as_deref(),
            Some(&bytes[..]),
            "{label}: after"
        );
    }
    // The empty blob is always there and never sent.
    assert_eq!(get(&backend, &Digest::EMPTY, 0), Some(Vec::new()));
    backend.put_blob(&Digest::EMPTY, 0, &mut &b""[..]).unwrap();
}

#[test]
fn find_missing_names_exactly_the_absent_blobs_across_chunks() {
    let Some(server) = buildgrid::shared() else {
        return;
    };
    let backend = connect(server, "");
    let present: Vec<Vec<u8>> = (0..3)
        .map(|i| unique(&format!("present {i}"), 100))
        .collect();
    let mut asked = Vec::new();
    for bytes in &present {
        asked.push((put(&backend, bytes), bytes.len() as u64));
    }
    // More than one FindMissingBlobs request's worth of absent blobs.
    let absent: Vec<(Digest, u64)> = (0..5000)
        .map(|i| (Digest::of_bytes(&unique(&format!("absent {i}"), 40)), 40))
        .collect();
    asked.extend(absent.iter().copied());
    let mut missing = backend.find_missing(&asked).unwrap();
    missing.sort();
    let mut expected: Vec<Digest> = absent.iter().map(|(digest, _)| *digest).collect();
    expected.sort();
    assert_eq!(missing, expected);
    assert_eq!(backend.find_missing(&[]).unwrap(), Vec::<Digest>::new());
}

/// A real engine entry: output and log blobs, the entry bytes the local store writes for it.
struct Entry {
    key: Digest,
    result: ActionResult,
    bytes: Vec<u8>,
    blobs: Vec<Vec<u8>>,
}

fn real_entry(label: &str) -> Entry {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("cache"));
    let output = unique(&format!("{label} output"), 300);
    let log = unique(&format!("{label} stdout"), 20);
    let result = ActionResult {
        task: format!("compile-{label}"),
        outputs: vec![OutputFile {
            path: format!("target/{label}/app.bin"),
            executable: true,
            size: output.len() as u64,
            digest: store.put_bytes(&output).unwrap(),
        }],
        stdout: Some(StoredStream {
            size: log.len() as u64,
            digest: store.put_bytes(&log).unwrap(),
        }),
        stderr: None,
        duration_ms: 1234,
        tools: Default::default(),
        discovered: None,
    };
    let key = Digest::of_bytes(&unique(&format!("{label} key"), 32));
    store.put_action(&key, &result).unwrap();
    let bytes = Store::encode_action(&key, &result);
    assert_eq!(store.get_action(&key).unwrap(), Some(result.clone()));
    Entry {
        key,
        result,
        bytes,
        blobs: vec![output, log],
    }
}

/// What the engine does: the blobs first, then the entry.
fn upload(backend: &ReapiBackend, entry: &Entry) {
    for blob in &entry.blobs {
        put(backend, blob);
    }
    backend
        .put_action(&entry.key, &entry.bytes, &entry.result)
        .unwrap();
}

#[test]
fn action_entries_round_trip_and_absent_keys_are_none() {
    let Some(server) = buildgrid::shared() else {
        return;
    };
    let backend = connect(server, "");
    let entry = real_entry("round-trip");
    assert_eq!(backend.get_action(&entry.key, 1 << 20).unwrap(), None);
    upload(&backend, &entry);
    let got = backend.get_action(&entry.key, 1 << 20).unwrap();
    assert_eq!(got.as_deref(), Some(&entry.bytes[..]));
    // A second backend (another machine) sees it too.
    let other = connect(server, "");
    assert_eq!(
        other.get_action(&entry.key, 1 << 20).unwrap().as_deref(),
        Some(&entry.bytes[..])
    );
    // An entry larger than the caller's bound is refused, never read whole.
    let small = entry.bytes.len() as u64 - 1;
    assert!(matches!(
        backend.get_action(&entry.key, small),
        Err(RemoteError::Garbage(message)) if message.contains("more than")
    ));
    let absent = Digest::of_bytes(&unique("never written", 32));
    assert_eq!(backend.get_action(&absent, 1 << 20).unwrap(), None);
}

#[test]
fn an_entry_whose_outputs_are_not_in_the_cas_is_a_miss() {
    // BuildGrid hides, and drops, an action result whose output or log blobs it does not hold
    // (REAPI lets servers do so): the engine must upload the blobs before the entry.
    let Some(server) = buildgrid::shared() else {
        return;
    };
    let backend = connect(server, "");
    let entry = real_entry("outputs not uploaded");
    backend
        .put_action(&entry.key, &entry.bytes, &entry.result)
        .unwrap();
    assert_eq!(backend.get_action(&entry.key, 1 << 20).unwrap(), None);
    // That lookup dropped the entry: uploading the blobs now does not bring it back.
    for blob in &entry.blobs {
        put(&backend, blob);
    }
    assert_eq!(backend.get_action(&entry.key, 1 << 20).unwrap(), None);
    backend
        .put_action(&entry.key, &entry.bytes, &entry.result)
        .unwrap();
    assert_eq!(
        backend.get_action(&entry.key, 1 << 20).unwrap().as_deref(),
        Some(&entry.bytes[..])
    );
}

#[test]
fn instance_names_keep_entries_and_blobs_apart() {
    let Some(server) = buildgrid::shared() else {
        return;
    };
    let main = connect(server, "main");
    let default = connect(server, "");
    assert!(
        main.describe().contains("instance main"),
        "{}",
        main.describe()
    );
    let entry = real_entry("instance");
    upload(&main, &entry);
    assert_eq!(
        main.get_action(&entry.key, 1 << 20).unwrap().as_deref(),
        Some(&entry.bytes[..])
    );
    assert_eq!(default.get_action(&entry.key, 1 << 20).unwrap(), None);
    let blob = &entry.blobs[0];
    let digest = Digest::of_bytes(blob);
    assert_eq!(get(&default, &digest, blob.len() as u64), None);
    assert_eq!(
        get(&main, &digest, blob.len() as u64).as_deref(),
        Some(&blob[..])
    );
    // ByteStream resource names carry the instance too.
    let large = unique("instance large", 5 << 20);
    let large_digest = put(&main, &large);
    assert_eq!(get(&default, &large_digest, large.len() as u64), None);
    assert_eq!(
        get(&main, &large_digest, large.len() as u64).as_deref(),
        Some(&large[..])
    );
}

#[test]
fn bgd_reads_back_an_action_result_we_wrote() {
    let Some(server) = buildgrid::shared() else {
        return;
    };
    let backend = connect(server, "main");
    let entry = real_entry("bgd");
    upload(&backend, &entry);
    let action = ReapiBackend::action_digest(&entry.key);
    let output = server
        .bgd_command("actioncache", "main")
        .args(["get", "--json", &action])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bgd actioncache get {action}: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let file = &entry.result.outputs[0];
    assert!(text.contains(&file.path), "{text}");
    assert!(text.contains(&file.digest.to_hex()), "{text}");
    let stdout = entry.result.stdout.as_ref().unwrap();
    assert!(text.contains(&stdout.digest.to_hex()), "{text}");

    // And downloads the output file by the digest it names.
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("app.bin");
    let digest = format!("{}/{}", file.digest, file.size);
    let download = server
        .bgd_command("cas", "main")
        .args(["download-file", &digest])
        .arg(&target)
        .output()
        .unwrap();
    assert!(
        download.status.success(),
        "bgd cas download-file: {}",
        String::from_utf8_lossy(&download.stderr)
    );
    assert_eq!(std::fs::read(&target).unwrap(), entry.blobs[0]);
}

#[test]
fn a_server_that_is_down_is_unavailable_within_the_timeout() {
    // Nothing listens on a port the kernel just handed out and took back.
    let port = buildgrid::free_port();
    let options = ReapiOptions {
        connect_timeout: Duration::from_millis(500),
        call_timeout: Duration::from_millis(500),
        ..ReapiOptions::default()
    };
    let started = std::time::Instant::now();
    let result = ReapiBackend::connect(&format!("grpc://127.0.0.1:{port}"), options.clone());
    assert!(
        matches!(&result, Err(RemoteError::Unavailable(message)) if message.contains(&port.to_string())),
        "{:?}",
        result.err()
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // A server that accepts connections and never answers: bounded by the timeouts too.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap();
    let started = std::time::Instant::now();
    let result = ReapiBackend::connect(&format!("grpc://{address}"), options);
    assert!(
        matches!(&result, Err(RemoteError::Unavailable(_))),
        "{:?}",
        result.err()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(silent);
}

#[test]
fn a_server_that_goes_down_makes_calls_unavailable() {
    let Some(program) = buildgrid::bgd() else {
        return;
    };
    let server = buildgrid::BuildGrid::start(&program);
    let backend = ReapiBackend::connect(
        &server.url(),
        ReapiOptions {
            connect_timeout: Duration::from_secs(2),
            call_timeout: Duration::from_secs(2),
            ..ReapiOptions::default()
        },
    )
    .unwrap();
    let entry = real_entry("down");
    upload(&backend, &entry);
    drop(server);
    let key = entry.key;
    for result in [
        backend.get_action(&key, 1 << 20).map(|_| ()),
        backend.find_missing(&[(key, 1)]).map(|_| ()),
        backend
            .put_action(&entry.key, &entry.bytes, &entry.result)
            .map(|_| ()),
    ] {
        assert!(
            matches!(&result, Err(RemoteError::Unavailable(_))),
            "{result:?}"
        );
    }
}
