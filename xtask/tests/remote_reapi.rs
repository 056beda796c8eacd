//! The Remote Execution API cache (`grpc://`) end to end: the real `xtask` against a real
//! BuildGrid (test-support/buildgrid.rs, one server per test binary, cache services on disk):
//! a clean workspace builds nothing, BuildGrid's own CLI reads back what xbundle wrote, and a
//! server that is down or holds a forged entry costs one warning and never a wrong build.

use crate::common;

use crate::buildgrid;

use common::Repo;
use common::remote::{
    BUNDLE, HMAC_KEY, assert_correct, assert_degraded, assert_local_store_sound, build, outputs,
    source, uploaded, workspace,
};
use engine::Digest;

/// The task's key as its `task-finished` event gives it.
fn key(run: &common::Run, id: &str) -> Digest {
    let hex = run.task(id)["key"].as_str().expect("a key");
    Digest::from_hex(hex).expect("a hex digest")
}

#[test]
fn a_clean_workspace_builds_nothing_with_a_shared_reapi_cache() {
    let Some(server) = buildgrid::shared() else {
        return;
    };
    let url = server.url();
    let a = workspace("over grpc\n");
    let run = build(&a, &url, &[], &[]);
    run.assert_code(0);
    assert_eq!(run.counts(), (2, 0, 0, 0), "{run}");
    assert_eq!(uploaded(&run), 2, "{run}");
    assert!(run.warnings().is_empty(), "{run}");

    let b = workspace("over grpc\n");
    let run = build(&b, &url, &[], &[]);
    run.assert_code(0);
    assert_eq!(run.counts(), (0, 2, 0, 0), "zero tasks executed\n{run}");
    assert_eq!(source(&run, "task:gen"), "reapi");
    assert_eq!(source(&run, "task:pack"), "reapi");
    assert_eq!(uploaded(&run), 0, "{run}");
    assert_eq!(outputs(&b), outputs(&a), "byte-identical outputs and modes");
    assert_correct(&b, "over grpc\n");
    assert_local_store_sound(&b);
}

#[test]
fn bgd_reads_back_an_action_result_xbundle_wrote_under_an_instance_name() {
    let Some(server) = buildgrid::shared() else {
        return;
    };
    let toml = BUNDLE.replace(
        "remote-timeout = 2",
        &format!(
            "remote-timeout = 2\nremote = \"{}\"\nremote-instance = \"main\"",
            server.url()
        ),
    );
    let a = Repo::new(&toml, &[("src/in.txt", "read me back\n")]);
    let run = a.json(&["task"]);
    run.assert_code(0);
    assert_eq!(uploaded(&run), 2, "{run}");

    let action = reapi::ReapiBackend::action_digest(&key(&run, "task:gen"));
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
    let data = common::sha256_hex(a.read_bytes("out/data.txt").as_slice());
    assert!(text.contains("out/data.txt"), "{text}");
    assert!(text.contains(&data), "{text}");

    // The default instance does not hold it: instances keep entries apart.
    let b = workspace("read me back\n");
    let run = build(&b, &server.url(), &[], &[]);
    assert_eq!(run.counts(), (2, 0, 0, 0), "{run}");
    // The same instance does.
    let c = Repo::new(&toml, &[("src/in.txt", "read me back\n")]);
    let run = c.json(&["task"]);
    assert_eq!(run.counts(), (0, 2, 0, 0), "{run}");
    assert_eq!(outputs(&c), outputs(&a));
}

#[test]
fn a_server_that_is_down_costs_one_warning() {
    let port = buildgrid::free_port();
    let url = format!("grpc://127.0.0.1:{port}");
    let repo = workspace("down\n");
    let run = build(&repo, &url, &[], &[]);
    assert_degraded(&run, &repo, "down\n", &url, "");
}

#[test]
fn a_forged_entry_is_a_miss_with_one_warning_when_signing_is_on() {
    let Some(server) = buildgrid::shared() else {
        return;
    };
    let url = server.url();
    let input = "signed over grpc\n";
    let a = workspace(input);
    let run = build(&a, &url, &[], &[HMAC_KEY]);
    run.assert_code(0);
    assert_eq!(uploaded(&run), 2, "{run}");

    // Someone with write access replaces gen's entry with one signed by another key, naming
    // other contents: the same blobs, a different body.
    let gen_key = key(&run, "task:gen");
    let backend = reapi::ReapiBackend::connect(&url, reapi::ReapiOptions::default()).unwrap();
    use engine::remote::RemoteBackend as _;
    let entry = backend
        .get_action(&gen_key, 1 << 20)
        .unwrap()
        .expect("gen's entry is on the server");
    let text = String::from_utf8(entry).unwrap();
    let (signature, body) = text.split_once('\n').unwrap();
    assert!(signature.starts_with("xbundle-hmac-sha256 "), "{signature}");
    let forged = format!("xbundle-hmac-sha256 {}\n{body}", "0".repeat(64));
    let result = engine::store::Store::decode_action(body.as_bytes(), &gen_key)
        .unwrap()
        .expect("an entry of this version");
    backend
        .put_action(&gen_key, forged.as_bytes(), &result)
        .unwrap();

    let b = workspace(input);
    let run = build(&b, &url, &[], &[HMAC_KEY]);
    run.assert_code(0);
    let warnings = run.warnings();
    assert_eq!(warnings.len(), 1, "exactly one warning\n{run}");
    assert!(warnings[0].contains(&url), "{}", warnings[0]);
    assert_eq!(run.status("task:gen"), "ran", "{run}");
    assert_correct(&b, input);
    assert_local_store_sound(&b);
}

#[test]
fn bad_reapi_settings_are_diagnostics() {
    for (setting, problem, line) in [
        (
            "remote = \"grpc://127.0.0.1:1/main\"",
            "`[cache] remote` ",
            4,
        ),
        (
            "remote = \"grpc://127.0.0.1:1\"\nremote-instance = \"a/../b\"",
            "`[cache] remote-instance` ",
            5,
        ),
        (
            "remote = \"grpc://127.0.0.1:1\"\nremote-instance = \"main/blobs\"",
            "reserves",
            5,
        ),
    ] {
        let toml = BUNDLE.replace(
            "remote-timeout = 2",
            &format!("remote-timeout = 2\n{setting}"),
        );
        let repo = Repo::new(&toml, &[("src/in.txt", "x\n")]);
        for command in ["check", "task"] {
            let run = repo.json(&[command]);
            run.assert_code(2);
            let diagnostic = run.diagnostic();
            let message = diagnostic["message"].as_str().unwrap();
            assert!(message.contains(problem), "{run}");
            assert_eq!(diagnostic["line"], line, "{run}");
            assert!(!repo.exists("out"), "nothing ran");
        }
    }
}
