//! The remote-cache fixture the HTTP and REAPI tests share: a workspace of two declared tasks,
//! a build against a remote cache, and what a correct build leaves.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use super::{Repo, Run, sha256_hex};

/// Two tasks: `gen` (an input, a captured line of output) and `pack` (from gen's output, an
/// executable file). The remote-timeout is low so the stalled-server case ends quickly.
pub const BUNDLE: &str = r#"
[cache]
remote-timeout = 2

[tasks.gen]
run = "mkdir -p out && tr a-z A-Z < src/in.txt > out/data.txt && echo generated"
inputs = ["src/in.txt"]
outputs = ["out/data.txt"]

[tasks.pack]
run = "mkdir -p dist && cat out/data.txt out/data.txt > dist/pack.txt && chmod +x dist/pack.txt"
deps = ["gen"]
outputs = ["dist/pack.txt"]
"#;

pub const OUTPUTS: [&str; 2] = ["out/data.txt", "dist/pack.txt"];

pub const HMAC_KEY: (&str, &str) = ("XBUNDLE_REMOTE_CACHE_HMAC_KEY", "team secret");

pub fn workspace(input: &str) -> Repo {
    Repo::new(BUNDLE, &[("src/in.txt", input)])
}

/// A build of both tasks with the remote cache at `url`, and these extra arguments and
/// environment variables.
pub fn build(repo: &Repo, url: &str, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let mut args = vec!["task", "--remote-cache", url];
    args.extend_from_slice(extra);
    repo.json_env(&args, env)
}

pub fn source(run: &Run, id: &str) -> String {
    run.task(id)["source"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

pub fn uploaded(run: &Run) -> u64 {
    run.finished()["uploaded"].as_u64().expect("uploaded")
}

/// The outputs' contents and modes.
pub fn outputs(repo: &Repo) -> BTreeMap<String, (Vec<u8>, u32)> {
    OUTPUTS
        .iter()
        .map(|path| {
            let mode = std::fs::metadata(repo.join(path))
                .expect("output exists")
                .permissions()
                .mode()
                & 0o777;
            (path.to_string(), (repo.read_bytes(path), mode))
        })
        .collect()
}

/// What a correct build of `input` leaves.
pub fn assert_correct(repo: &Repo, input: &str) {
    let upper = input.to_uppercase();
    assert_eq!(repo.read("out/data.txt"), upper);
    assert_eq!(repo.read("dist/pack.txt"), format!("{upper}{upper}"));
    let mode = std::fs::metadata(repo.join("dist/pack.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "pack.txt is executable");
}

/// Every blob of the local store holds the bytes its name says.
pub fn assert_local_store_sound(repo: &Repo) {
    for blob in repo.state_files("cache/cas") {
        let name = blob.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&blob).unwrap();
        assert_eq!(
            sha256_hex(&bytes),
            name,
            "local blob {} is sound",
            blob.display()
        );
    }
}

/// A build of `input` with a failing remote cache: correct, every task run, and exactly one
/// warning, naming the server.
#[track_caller]
pub fn assert_degraded(run: &Run, repo: &Repo, input: &str, server: &str, why: &str) -> String {
    run.assert_code(0);
    let warnings = run.warnings();
    assert_eq!(warnings.len(), 1, "exactly one warning\n{run}");
    assert!(
        warnings[0].starts_with(&format!("remote cache {server}: "))
            && warnings[0].contains(why)
            && warnings[0]
                .ends_with("continuing with the local cache only for the rest of this run"),
        "{}",
        warnings[0]
    );
    assert_eq!(run.counts(), (2, 0, 0, 0), "{run}");
    assert_correct(repo, input);
    assert_local_store_sound(repo);
    warnings[0].clone()
}
