//! The REAPI executor against a real BuildGrid with its Execution and Bots services (a
//! PostgreSQL scheduler) and the test worker (`test-support/reapi_worker.py`): one server and
//! one worker for this binary. Commands with inputs in subdirectories, an executable bit, a
//! working directory, output files and directories, a failing command and a timeout.

#[path = "../../../test-support/buildgrid.rs"]
mod buildgrid;
#[path = "../../../test-support/postgres.rs"]
mod postgres;
#[path = "../../../test-support/reapi_exec.rs"]
mod reapi_exec;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use engine::Digest;
use engine::remote::RemoteBackend;
use engine::remote_exec::{BlobSource, ExecuteRequest, InputFile, RemoteExecutor};
use reapi::execute::ReapiExecutor;
use reapi::{ReapiBackend, ReapiOptions};

struct Blobs(HashMap<Digest, Vec<u8>>);

impl BlobSource for Blobs {
    fn open(&self, digest: &Digest, _size: u64) -> std::io::Result<Box<dyn Read + '_>> {
        let bytes = self.0.get(digest).ok_or(std::io::ErrorKind::NotFound)?;
        Ok(Box::new(bytes.as_slice()))
    }
}

fn inputs(files: &[(&str, &[u8], bool)]) -> (Vec<InputFile>, Blobs) {
    let mut list = Vec::new();
    let mut blobs = HashMap::new();
    for (path, bytes, executable) in files {
        let digest = Digest::of_bytes(bytes);
        blobs.insert(digest, bytes.to_vec());
        list.push(InputFile {
            path: path.to_string(),
            digest,
            size: bytes.len() as u64,
            executable: *executable,
        });
    }
    list.sort_by(|a, b| a.path.cmp(&b.path));
    (list, Blobs(blobs))
}

fn executor(server: &reapi_exec::Execution) -> ReapiExecutor {
    let backend = ReapiBackend::connect(
        &server.url(),
        ReapiOptions {
            call_timeout: Duration::from_secs(30),
            ..ReapiOptions::default()
        },
    )
    .unwrap();
    ReapiExecutor::new(Arc::new(backend)).unwrap()
}

fn fetch(executor: &ReapiExecutor, digest: &Digest, size: u64) -> Vec<u8> {
    let mut out = Vec::new();
    assert!(executor.backend().get_blob(digest, size, &mut out).unwrap());
    out
}

fn platform() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("ISA".to_string(), "x86-64".to_string()),
        ("OSFamily".to_string(), "linux".to_string()),
    ])
}

/// Unique to this run, so the server's action cache cannot answer.
fn nonce() -> String {
    format!("{} {:?}", std::process::id(), std::time::SystemTime::now())
}

#[test]
fn a_command_runs_remotely_with_its_inputs_and_outputs() {
    let Some(server) = reapi_exec::shared() else {
        return;
    };
    let executor = executor(server);
    let script = b"#!/bin/sh\nset -e\nmkdir -p out/dir/sub\ncat src/a/b.txt src/c.txt ../shared/data.txt > out/file.txt\necho \"$GREETING\" >> out/file.txt\necho nested > out/dir/sub/y.txt\ncp tools/run.sh out/dir/copy.sh\necho to-stdout\n";
    let nonce = nonce();
    let (files, blobs) = inputs(&[
        ("pkg/tools/run.sh", script, true),
        ("pkg/src/a/b.txt", b"bee\n", false),
        ("pkg/src/c.txt", nonce.as_bytes(), false),
        ("shared/data.txt", b"\ndata\n", false),
    ]);
    let argv = vec!["./tools/run.sh".to_string()];
    let env = BTreeMap::from([("GREETING".to_string(), "hello".to_string())]);
    let outputs = vec!["pkg/out/file.txt".to_string(), "pkg/out/dir".to_string()];
    let platform = platform();
    let request = ExecuteRequest {
        task: "remote-test",
        argv: &argv,
        env: &env,
        working_directory: "pkg",
        inputs: &files,
        output_paths: &outputs,
        platform: &platform,
        timeout: Some(Duration::from_secs(60)),
    };
    let response = executor.execute(&request, &blobs).unwrap_or_else(|error| {
        panic!(
            "{error}\nworker:\n{}\nserver:\n{}",
            server.worker_log(),
            server.server.log_text()
        )
    });
    assert_eq!(response.exit_code, 0, "worker:\n{}", server.worker_log());
    let paths: Vec<&str> = response.outputs.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "pkg/out/dir/copy.sh",
            "pkg/out/dir/sub/y.txt",
            "pkg/out/file.txt"
        ]
    );
    let by_path = |path: &str| response.outputs.iter().find(|f| f.path == path).unwrap();
    let file = by_path("pkg/out/file.txt");
    assert_eq!(
        String::from_utf8(fetch(&executor, &file.digest, file.size)).unwrap(),
        format!("bee\n{nonce}\ndata\nhello\n")
    );
    let copy = by_path("pkg/out/dir/copy.sh");
    assert!(copy.executable);
    assert_eq!(fetch(&executor, &copy.digest, copy.size), script);
    assert!(!by_path("pkg/out/dir/sub/y.txt").executable);
    let stdout = response.stdout.expect("stdout captured");
    assert_eq!(
        fetch(&executor, &stdout.digest, stdout.size),
        b"to-stdout\n"
    );
    assert!(server.worker_log().contains("executed"));
}

#[test]
fn a_failing_command_is_its_exit_code_and_stderr() {
    let Some(server) = reapi_exec::shared() else {
        return;
    };
    let executor = executor(server);
    let argv = vec![
        "sh".to_string(),
        "-c".to_string(),
        format!("echo 'it broke {}' >&2; exit 3", nonce()),
    ];
    let env = BTreeMap::new();
    let platform = platform();
    let request = ExecuteRequest {
        task: "fails",
        argv: &argv,
        env: &env,
        working_directory: "",
        inputs: &[],
        output_paths: &["out.txt".to_string()],
        platform: &platform,
        timeout: Some(Duration::from_secs(60)),
    };
    let response = executor.execute(&request, &Blobs(HashMap::new())).unwrap();
    assert_eq!(response.exit_code, 3);
    assert!(response.outputs.is_empty());
    let stderr = response.stderr.expect("stderr captured");
    let text = String::from_utf8(fetch(&executor, &stderr.digest, stderr.size)).unwrap();
    assert!(text.starts_with("it broke "), "{text}");
}

#[test]
fn a_command_past_its_timeout_is_an_error() {
    let Some(server) = reapi_exec::shared() else {
        return;
    };
    let executor = executor(server);
    let argv = vec![
        "sh".to_string(),
        "-c".to_string(),
        format!("sleep 30 # {}", nonce()),
    ];
    let env = BTreeMap::new();
    let platform = platform();
    let request = ExecuteRequest {
        task: "slow",
        argv: &argv,
        env: &env,
        working_directory: "",
        inputs: &[],
        output_paths: &[],
        platform: &platform,
        timeout: Some(Duration::from_secs(1)),
    };
    let error = executor
        .execute(&request, &Blobs(HashMap::new()))
        .unwrap_err();
    // The server's status (the worker stopped the command at the action's timeout): the engine
    // then runs the task locally.
    assert!(
        matches!(&error, engine::remote::RemoteError::Unavailable(message) if message.contains("did not run")),
        "{error}"
    );
}

#[test]
fn bad_input_paths_are_refused_before_anything_is_sent() {
    let Some(server) = reapi_exec::shared() else {
        return;
    };
    let executor = executor(server);
    let argv = vec!["true".to_string()];
    let env = BTreeMap::new();
    let platform = platform();
    for bad in ["../escape", "/etc/passwd", "a//b"] {
        let (files, blobs) = inputs(&[(bad, b"x", false)]);
        let request = ExecuteRequest {
            task: "bad",
            argv: &argv,
            env: &env,
            working_directory: "",
            inputs: &files,
            output_paths: &[],
            platform: &platform,
            timeout: Some(Duration::from_secs(10)),
        };
        let error = executor.execute(&request, &blobs).unwrap_err();
        assert!(error.to_string().contains("cannot run remotely"), "{error}");
    }
}
