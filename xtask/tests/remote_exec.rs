//! Remote execution (`--remote-executor`) against a real BuildGrid with its Execution and Bots
//! services (PostgreSQL scheduler, started in a temporary cluster) and the test worker
//! (`test-support/reapi_worker.py`), one set per test binary: tasks declared `remote = true`
//! run on the worker and their outputs land byte-identical to a local build; an executor that
//! cannot be reached costs one warning and a correct local build; a worker naming an output
//! outside the repository or in `.git` is refused and touches nothing. Pipeline tasks by
//! default (`[cache] remote-execute`): a Go service compiled remotely and package tasks written
//! remotely are byte-identical to local builds; a worker whose Go is not the key's answers
//! "cannot run" (one warning, built here); signed packages stay here; the worker's hidden
//! package command refuses plans leading out of its root.

use crate::buildgrid;
use crate::common;
use crate::reapi_exec;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use common::{Canary, Repo, Run};

/// `gen` reads inputs in subdirectories and runs an executable input; `use` reads only its
/// dependency's outputs. Both may run remotely.
const BUNDLE: &str = r#"
[tasks.gen]
run = "mkdir -p out/sub && cat src/a.txt src/deep/b.txt > out/joined.txt && ./tools/mk.sh && echo built gen"
inputs = ["src/**", "tools/mk.sh"]
outputs = ["out/**"]
env = ["GREETING", "XBUNDLE_TEST_WORKER_HOSTILE"]
remote = true

[tasks.use]
run = "mkdir -p dist && cat out/joined.txt out/sub/greeting.txt > dist/final.txt && cp out/sub/mk-copy.sh dist/tool.sh"
deps = ["gen"]
outputs = ["dist/final.txt", "dist/tool.sh"]
remote = true
"#;

const OUTPUTS: [&str; 5] = [
    "out/joined.txt",
    "out/sub/greeting.txt",
    "out/sub/mk-copy.sh",
    "dist/final.txt",
    "dist/tool.sh",
];

fn plant(repo: &Repo) {
    repo.write("src/a.txt", "alpha\n");
    repo.write("src/deep/b.txt", "beta\n");
    repo.write(
        "tools/mk.sh",
        "#!/bin/sh\nset -e\ncp tools/mk.sh out/sub/mk-copy.sh\necho \"$GREETING\" > out/sub/greeting.txt\n",
    );
    std::fs::set_permissions(
        repo.join("tools/mk.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
}

fn workspace() -> Repo {
    let repo = Repo::in_sandbox(BUNDLE, &[]);
    plant(&repo);
    repo
}

fn outputs(repo: &Repo) -> BTreeMap<String, (Vec<u8>, u32)> {
    OUTPUTS
        .iter()
        .map(|path| {
            let mode = std::fs::metadata(repo.join(path))
                .unwrap_or_else(|_| panic!("{path} exists"))
                .permissions()
                .mode()
                & 0o777;
            (path.to_string(), (repo.read_bytes(path), mode))
        })
        .collect()
}

/// What a local build of a fresh copy leaves.
fn local_outputs() -> BTreeMap<String, (Vec<u8>, u32)> {
    let repo = workspace();
    let run = repo.json_env(&["task"], &[("GREETING", "hello")]);
    run.assert_code(0);
    assert_eq!(run.task("task:gen")["executed"], "local", "{run}");
    outputs(&repo)
}

/// The tests sharing the worker take turns, so each can count the actions it ran.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|poison| poison.into_inner())
}

fn executed_lines(log: &str) -> usize {
    log.lines()
        .filter(|line| line.starts_with("executed "))
        .count()
}

fn build(repo: &Repo, url: &str, env: &[(&str, &str)]) -> Run {
    let mut all = vec![("GREETING", "hello")];
    all.extend_from_slice(env);
    repo.json_env(&["task", "-j", "8", "--remote-executor", url], &all)
}

#[test]
fn tasks_run_remotely_and_their_outputs_match_a_local_build() {
    let Some(server) = reapi_exec::shared() else {
        return;
    };
    let _turn = one_at_a_time();
    let repo = workspace();
    let before = executed_lines(&server.worker_log());
    let run = build(&repo, &server.url(), &[]);
    run.assert_code(0);
    for id in ["task:gen", "task:use"] {
        assert_eq!(run.status(id), "ran", "{run}");
        assert_eq!(run.task(id)["executed"], "remote", "{run}");
    }
    assert!(run.warnings().is_empty(), "{run}");
    assert_eq!(
        executed_lines(&server.worker_log()) - before,
        2,
        "the worker ran both tasks:\n{}",
        server.worker_log()
    );
    // What the command printed is shown as a local run shows it.
    let printed: String = run
        .events("task-output")
        .iter()
        .filter(|event| event["id"] == "task:gen" && event["replayed"] == false)
        .map(|event| event["text"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(printed.contains("built gen"), "{run}");
    assert_eq!(outputs(&repo), local_outputs());
    assert_eq!(outputs(&repo)["dist/tool.sh"].1 & 0o111, 0o111);
    // The result is in the local cache like any other: a second run is a no-op.
    let again = build(&repo, &server.url(), &[]);
    again.assert_code(0);
    assert_eq!(again.status("task:gen"), "cached", "{again}");
    assert_eq!(again.status("task:use"), "cached", "{again}");
}

#[test]
fn an_unreachable_executor_is_one_warning_and_a_local_build() {
    // A port nobody listens on.
    let url = format!("grpc://127.0.0.1:{}", buildgrid::free_port());
    let repo = workspace();
    let run = build(&repo, &url, &[]);
    run.assert_code(0);
    let warnings = run.warnings();
    assert_eq!(warnings.len(), 1, "{run}");
    assert!(warnings[0].contains("remote executor"), "{run}");
    for id in ["task:gen", "task:use"] {
        assert_eq!(run.status(id), "ran", "{run}");
        assert_eq!(run.task(id)["executed"], "local", "{run}");
    }
    assert_eq!(outputs(&repo), local_outputs());
}

#[test]
fn a_worker_naming_outputs_outside_the_repository_or_in_git_is_refused() {
    let Some(server) = reapi_exec::shared() else {
        return;
    };
    let _turn = one_at_a_time();
    for hostile in [
        "../canary/pwned.txt",
        "out/../../canary/x",
        ".git/hooks/pre-commit",
    ] {
        let repo = workspace();
        std::fs::create_dir_all(repo.join(".git/hooks")).unwrap();
        let canary = Canary::plant(&repo.sandbox().join("canary"), &[]);
        let run = build(
            &repo,
            &server.url(),
            &[("XBUNDLE_TEST_WORKER_HOSTILE", hostile)],
        );
        run.assert_code(0);
        let warnings = run.warnings();
        assert_eq!(warnings.len(), 1, "{hostile}: {run}");
        assert!(
            warnings[0].contains("remote executor") && warnings[0].contains("output"),
            "{run}"
        );
        assert_eq!(
            run.task("task:gen")["executed"],
            "local",
            "{hostile}: {run}"
        );
        canary.assert_intact(hostile);
        assert!(!repo.exists(".git/hooks/pre-commit"), "{hostile}");
        assert!(!repo.sandbox().join("pwned.txt").exists());
        assert_eq!(outputs(&repo), local_outputs(), "{hostile}");
    }
}

#[test]
fn remote_with_a_depfile_is_refused() {
    let repo = Repo::new(
        r#"
[tasks.cc]
run = "touch out.o out.d"
outputs = ["out.o", "out.d"]
depfile = "out.d"
remote = true
"#,
        &[],
    );
    let run = repo.json(&["task"]);
    run.assert_code(2);
    let message = run.diagnostic()["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        message.contains("depfile") && message.contains("remote"),
        "{run}"
    );
}

#[test]
fn a_command_failing_remotely_fails_the_task_with_its_stderr() {
    let Some(server) = reapi_exec::shared() else {
        return;
    };
    let _turn = one_at_a_time();
    let repo = Repo::new(
        r#"
[tasks.broken]
run = "mkdir -p out && echo half > out/x.txt && echo 'it broke remotely' >&2 && exit 4"
outputs = ["out/**"]
remote = true
"#,
        &[],
    );
    let before = executed_lines(&server.worker_log());
    let run = repo.json(&["task", "--remote-executor", &server.url()]);
    assert_ne!(run.code, 0, "{run}");
    assert_eq!(run.status("task:broken"), "failed", "{run}");
    let error = run.task("task:broken")["error"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(error.contains("exit status: 4"), "{run}");
    assert!(
        run.warnings().is_empty(),
        "a failing command is not an executor failure: {run}"
    );
    assert_eq!(executed_lines(&server.worker_log()) - before, 1);
    let stderr: String = run
        .events("task-output")
        .iter()
        .filter(|event| event["stream"] == "stderr")
        .map(|event| event["text"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(stderr.contains("it broke remotely"), "{run}");
    // Nothing of the failed run was put in the tree.
    assert!(!repo.exists("out/x.txt"));
}

// Go compile tasks: remote by default when an executor is set.

const GO_SERVICE: &str = r#"{
  "service": {"name": "app", "version": "1.0.0", "type": "scenario"},
  "ports": {"api": {"env_var": "API_PORT", "range": "15000-19999"}}
}"#;

const GO_MAIN: &str = r#"package main

import (
	"fmt"
	"net/http"
	"os"

	"example.com/app/api/internal/greet"
)

func main() {
	http.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, greet.Hello())
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("API_PORT"), nil); err != nil {
		os.Exit(1)
	}
}
"#;

const GO_GREET: &str = "package greet\n\nfunc Hello() string { return \"hello\" }\n";

const GO_COMPILE: &str = "compile:app-api@linux-x64";
const GO_BINARY: &str = "dist/.build/bin/app-api/linux-x64/app-api";

/// A repository with one scenario `app` whose API is a Go module (two packages), a profile on
/// linux-x64, and `cache` as its `[cache]` table's body.
fn go_repo(cache: &str) -> Repo {
    go_repo_with(cache, "")
}

/// [`go_repo`] with `profile_extra` lines in the profile's table.
fn go_repo_with(cache: &str, profile_extra: &str) -> Repo {
    let platform = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../platforms/linux-x64.toml"),
    )
    .expect("the repository's platforms/linux-x64.toml");
    let bundle = format!(
        "[workspace]\ndefault-profile = \"app-desktop\"\n\n[cache]\n{cache}\n\n[profiles.app-desktop]\nscenario = \"app\"\ntier = \"desktop\"\nplatforms = [\"linux-x64\"]\n{profile_extra}\n"
    );
    Repo::in_sandbox(
        &bundle,
        &[
            ("platforms/linux-x64.toml", &platform),
            ("scenarios/app/.vrooli/service.json", GO_SERVICE),
            (
                "scenarios/app/api/go.mod",
                "module example.com/app/api\n\ngo 1.19\n",
            ),
            ("scenarios/app/api/main.go", GO_MAIN),
            ("scenarios/app/api/internal/greet/greet.go", GO_GREET),
            ("scenarios/app/ui/index.html", "<h1>app</h1>\n"),
        ],
    )
}

/// The Go binary a local build (no executor) of a fresh repository gives.
fn go_local_binary(greeting: &str) -> Vec<u8> {
    let repo = go_repo("");
    repo.write(
        "scenarios/app/api/internal/greet/greet.go",
        GO_GREET.replace("hello", greeting),
    );
    let run = repo.json(&["task", GO_COMPILE]);
    run.assert_code(0);
    assert_eq!(run.task(GO_COMPILE)["executed"], "local", "{run}");
    repo.read_bytes(GO_BINARY)
}

#[test]
fn a_go_service_compiles_remotely_by_default_and_matches_a_local_build() {
    if !common::have_tool("go", "golang-go") {
        return;
    }
    let Some(server) = reapi_exec::shared() else {
        return;
    };
    let _turn = one_at_a_time();
    let repo = go_repo("");
    let before = executed_lines(&server.worker_log());
    let run = repo.json(&["task", GO_COMPILE, "--remote-executor", &server.url()]);
    run.assert_code(0);
    assert_eq!(run.status(GO_COMPILE), "ran", "{run}");
    assert_eq!(run.task(GO_COMPILE)["executed"], "remote", "{run}");
    assert!(run.warnings().is_empty(), "{run}");
    assert_eq!(
        executed_lines(&server.worker_log()) - before,
        1,
        "{}",
        server.worker_log()
    );
    let remote = repo.read_bytes(GO_BINARY);
    assert!(
        remote == go_local_binary("hello"),
        "the remote binary differs from a local build"
    );
    let mode = std::fs::metadata(repo.join(GO_BINARY))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "the binary is executable");

    // The discovered inputs were recorded: a no-op runs nothing, an imported package's edit
    // builds again (remotely), a file of a package the build does not use changes nothing.
    let again = repo.json(&["task", GO_COMPILE, "--remote-executor", &server.url()]);
    again.assert_code(0);
    assert_eq!(again.status(GO_COMPILE), "cached", "{again}");
    repo.write("scenarios/app/api/tools/unused.go", "package tools\n");
    let unused = repo.json(&["task", GO_COMPILE, "--remote-executor", &server.url()]);
    assert_eq!(unused.status(GO_COMPILE), "cached", "{unused}");
    repo.write(
        "scenarios/app/api/internal/greet/greet.go",
        GO_GREET.replace("hello", "hi"),
    );
    let edited = repo.json(&["task", GO_COMPILE, "--remote-executor", &server.url()]);
    edited.assert_code(0);
    assert_eq!(edited.status(GO_COMPILE), "ran", "{edited}");
    assert_eq!(edited.task(GO_COMPILE)["executed"], "remote", "{edited}");
    assert!(repo.read_bytes(GO_BINARY) == go_local_binary("hi"));
}

#[test]
fn remote_execute_empty_keeps_compile_tasks_local() {
    if !common::have_tool("go", "golang-go") {
        return;
    }
    let Some(server) = reapi_exec::shared() else {
        return;
    };
    let _turn = one_at_a_time();
    let repo = go_repo("remote-execute = []");
    let before = executed_lines(&server.worker_log());
    let run = repo.json(&["task", GO_COMPILE, "--remote-executor", &server.url()]);
    run.assert_code(0);
    assert_eq!(run.task(GO_COMPILE)["executed"], "local", "{run}");
    assert!(run.warnings().is_empty(), "{run}");
    assert_eq!(executed_lines(&server.worker_log()), before);
}

#[test]
fn an_unknown_remote_execute_kind_is_a_diagnostic_with_its_line() {
    let repo = go_repo("remote-execute = [\"compile\", \"ui\"]");
    let before = repo.snapshot();
    let run = repo.json(&["task", GO_COMPILE]);
    run.assert_code(2);
    let diagnostic = run.diagnostic();
    let message = diagnostic["message"].as_str().unwrap_or("");
    assert!(
        message.contains("remote-execute") && message.contains("`ui`"),
        "{run}"
    );
    assert_eq!(diagnostic["line"], 5, "{run}");
    common::assert_same_tree(&repo.snapshot(), &before, "a bad setting writes nothing");
}

/// PATH with a `program` first that answers `argument` with `line` (another version than the
/// worker's) and runs the real one otherwise: the key holds that version.
fn path_with_shim(sandbox: &std::path::Path, program: &str, argument: &str, line: &str) -> String {
    let path = std::env::var_os("PATH").unwrap();
    let real = std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{program} on PATH"));
    let dir = sandbox.join(format!("{program}-shim"));
    std::fs::create_dir_all(&dir).unwrap();
    let shim = dir.join(program);
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\nif [ \"$1\" = {argument} ]; then echo '{line}'; exit 0; fi\nexec '{}' \"$@\"\n",
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::env::join_paths(std::iter::once(dir).chain(std::env::split_paths(&path)))
        .unwrap()
        .into_string()
        .unwrap()
}

/// Builds `compile` with `path` (a shim first) against the worker: one warning quoting
/// `version`, a local build, and the worker asked once (its "cannot run" never cached).
fn another_toolchain_builds_here(
    repo: &Repo,
    server: &reapi_exec::Execution,
    compile: &str,
    path: &str,
    version: &str,
) {
    let before = executed_lines(&server.worker_log());
    let run = repo.json_env(
        &["task", compile, "--remote-executor", &server.url()],
        &[("PATH", path)],
    );
    run.assert_code(0);
    assert_eq!(run.status(compile), "ran", "{run}");
    assert_eq!(run.task(compile)["executed"], "local", "{run}");
    let warnings = run.warnings();
    assert_eq!(warnings.len(), 1, "{run}");
    assert!(
        warnings[0].contains("cannot run") && warnings[0].contains(version),
        "{run}"
    );
    assert_eq!(executed_lines(&server.worker_log()) - before, 1);
}

#[test]
fn a_worker_with_another_go_is_one_warning_and_a_local_build() {
    if !common::have_tool("go", "golang-go") {
        return;
    }
    let Some(server) = reapi_exec::shared() else {
        return;
    };
    let _turn = one_at_a_time();
    let repo = go_repo("");
    let path = path_with_shim(
        repo.sandbox(),
        "go",
        "version",
        "go version go1.99.9 linux/amd64",
    );
    another_toolchain_builds_here(&repo, server, GO_COMPILE, &path, "go1.99.9");
    assert!(repo.read_bytes(GO_BINARY) == go_local_binary("hello"));
}

// Package tasks: unsigned, non-msi formats remote by default, through xbundle's own binary.

const TAR_GZ: &str = "package:app-desktop@linux-x64:tar.gz";
const DEB: &str = "package:app-desktop@linux-x64:deb";
const TAR_GZ_FILE: &str = "dist/app-desktop/packages/app-desktop-linux-x64.tar.gz";
const DEB_FILE: &str = "dist/app-desktop/packages/app-desktop-linux-x64.deb";
const EPOCH: (&str, &str) = ("SOURCE_DATE_EPOCH", "1700000000");

fn package_repo(cache: &str, profile_extra: &str) -> Repo {
    go_repo_with(
        cache,
        &format!("formats = [\"tar.gz\", \"deb\"]\n{profile_extra}"),
    )
}

#[test]
fn package_tasks_run_remotely_and_match_a_local_build() {
    if !common::have_tool("go", "golang-go") {
        return;
    }
    let Some(server) = reapi_exec::shared() else {
        return;
    };
    let local = package_repo("", "");
    let run = local.json_env(&["task", TAR_GZ, DEB], &[EPOCH]);
    run.assert_code(0);
    assert_eq!(run.task(TAR_GZ)["executed"], "local", "{run}");

    let _turn = one_at_a_time();
    let repo = package_repo("", "");
    let before = executed_lines(&server.worker_log());
    let run = repo.json_env(
        &["task", TAR_GZ, DEB, "--remote-executor", &server.url()],
        &[EPOCH],
    );
    run.assert_code(0);
    assert!(run.warnings().is_empty(), "{run}");
    for id in [TAR_GZ, DEB, GO_COMPILE] {
        assert_eq!(run.status(id), "ran", "{run}");
        assert_eq!(run.task(id)["executed"], "remote", "{id}: {run}");
    }
    // The two packages ran on the worker (the compile may be an answer of the server's own
    // action cache, when another test sent the same action).
    assert!(
        executed_lines(&server.worker_log()) - before >= 2,
        "{}",
        server.worker_log()
    );
    for file in [TAR_GZ_FILE, DEB_FILE] {
        assert!(
            repo.read_bytes(file) == local.read_bytes(file),
            "{file}: the remote artifact differs from a local build"
        );
    }
    // Nothing of the worker's input root (the binary, the plan) lands in the tree.
    assert!(!repo.exists(".xbundle-remote"));
}

#[test]
fn signed_packages_stay_here_and_say_why() {
    let Some(server) = reapi_exec::shared() else {
        return;
    };
    if !common::have_tool("go", "golang-go") {
        return;
    }
    let _turn = one_at_a_time();
    let repo = package_repo("", "");
    let toml = repo.read("bundle.toml");
    repo.write(
        "bundle.toml",
        format!("{toml}\n[sign]\n\"tar.gz\" = \"cp {{in}} {{out}}\"\n"),
    );
    let run = repo.json_env(
        &["task", TAR_GZ, "--remote-executor", &server.url()],
        &[EPOCH],
    );
    run.assert_code(0);
    assert_eq!(run.task(TAR_GZ)["executed"], "local", "{run}");
    let warnings = run.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("signed") && w.contains("never leave")),
        "{run}"
    );
}

/// A package plan as the package task serializes it (`signed`: with a `[sign]` template).
fn package_plan(stage_dir: &str, out: &str, format: &str, signed: bool) -> String {
    serde_json::json!({
        "profile": "app-desktop",
        "platform": {"id": "linux-x64", "rust-target": "x86_64-unknown-linux-gnu", "goos": "linux",
                     "goarch": "amd64", "exe-suffix": "", "formats": ["tar.gz"]},
        "format": format,
        "out": out,
        "stage_dir": stage_dir,
        "stage": "stage:app-desktop@linux-x64",
        "installer": {},
        "epoch": 1700000000u64,
        "sign": if signed { serde_json::json!("cp {in} {out}") } else { serde_json::Value::Null },
        "thin": false,
    })
    .to_string()
}

#[test]
fn the_workers_package_command_refuses_plans_that_lead_out_of_its_root() {
    let sandbox = tempfile::tempdir().unwrap();
    let work = sandbox.path().join("work");
    std::fs::create_dir_all(work.join("stage")).unwrap();
    let canary = Canary::plant(&sandbox.path().join("canary"), &[]);
    std::fs::write(
        sandbox.path().join("outside.json"),
        package_plan("stage", "dist", "tar.gz", false),
    )
    .unwrap();
    std::os::unix::fs::symlink(sandbox.path().join("outside.json"), work.join("link.json"))
        .unwrap();
    let plant = |name: &str, text: String| std::fs::write(work.join(name), text).unwrap();
    plant(
        "up-stage.json",
        package_plan("../canary", "dist", "tar.gz", false),
    );
    plant(
        "up-out.json",
        package_plan("stage", "../canary", "tar.gz", false),
    );
    plant(
        "abs-out.json",
        package_plan("stage", "/tmp", "tar.gz", false),
    );
    plant("signed.json", package_plan("stage", "dist", "tar.gz", true));
    plant("msi.json", package_plan("stage", "dist", "msi", false));
    plant("garbage.json", "{\"profile\": 1}".into());
    let outside = sandbox.path().join("outside.json");
    let before = common::full_snapshot(&work);
    // (plan file, what the refusal must say)
    for (plan, why) in [
        ("../outside.json", "`..` component"),
        (outside.to_str().unwrap(), "not a relative path"),
        ("link.json", "link"),
        ("up-stage.json", "the plan names \"../canary\""),
        ("up-out.json", "the plan names \"../canary/"),
        ("abs-out.json", "the plan names \"/tmp/"),
        ("signed.json", "to sign is only built where the task runs"),
        ("msi.json", "msi package is only built where the task runs"),
        ("garbage.json", "is not a package plan"),
        ("missing.json", "does not exist"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("__package-remote")
            .arg(plan)
            .current_dir(&work)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{why}: {stderr}");
        assert!(stderr.contains(why), "{plan}: says {why:?}: {stderr}");
        assert!(
            common::full_snapshot(&work) == before,
            "{why}: nothing written"
        );
        canary.assert_intact(why);
    }
}

#[test]
fn an_unreachable_executor_builds_pipeline_tasks_here_with_one_warning() {
    if !common::have_tool("go", "golang-go") {
        return;
    }
    let url = format!("grpc://127.0.0.1:{}", buildgrid::free_port());
    let local = package_repo("", "");
    local.json_env(&["task", TAR_GZ], &[EPOCH]).assert_code(0);
    let repo = package_repo("", "");
    let run = repo.json_env(&["task", TAR_GZ, "--remote-executor", &url], &[EPOCH]);
    run.assert_code(0);
    let warnings = run.warnings();
    assert_eq!(warnings.len(), 1, "{run}");
    assert!(warnings[0].contains("remote executor"), "{run}");
    for id in [GO_COMPILE, TAR_GZ] {
        assert_eq!(run.status(id), "ran", "{run}");
        assert_eq!(run.task(id)["executed"], "local", "{id}: {run}");
    }
    assert!(repo.read_bytes(GO_BINARY) == local.read_bytes(GO_BINARY));
    assert!(repo.read_bytes(TAR_GZ_FILE) == local.read_bytes(TAR_GZ_FILE));
}

/// A module proxy in a directory (`GOPROXY=file://…`) serving `example.com/dep` v1.0.0.
fn module_proxy(dir: &std::path::Path) {
    use std::io::Write;
    let at = dir.join("example.com/dep/@v");
    std::fs::create_dir_all(&at).unwrap();
    let go_mod = "module example.com/dep\n\ngo 1.19\n";
    std::fs::write(at.join("list"), "v1.0.0\n").unwrap();
    std::fs::write(at.join("v1.0.0.info"), "{\"Version\":\"v1.0.0\"}\n").unwrap();
    std::fs::write(at.join("v1.0.0.mod"), go_mod).unwrap();
    let mut zip = zip::ZipWriter::new(std::fs::File::create(at.join("v1.0.0.zip")).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    for (name, text) in [
        ("go.mod", go_mod),
        (
            "dep.go",
            "package dep\n\nfunc Word() string { return \"dep\" }\n",
        ),
    ] {
        zip.start_file(format!("example.com/dep@v1.0.0/{name}"), options)
            .unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn a_go_build_using_the_module_cache_stays_here_and_says_why() {
    if !common::have_tool("go", "golang-go") {
        return;
    }
    let Some(server) = reapi_exec::shared() else {
        return;
    };
    let repo = go_repo("");
    let proxy = repo.sandbox().join("proxy");
    module_proxy(&proxy);
    let cache = repo.sandbox().join("modcache");
    repo.write(
        "scenarios/app/api/go.mod",
        "module example.com/app/api\n\ngo 1.19\n\nrequire example.com/dep v1.0.0\n",
    );
    repo.write(
        "scenarios/app/api/internal/greet/greet.go",
        "package greet\n\nimport \"example.com/dep\"\n\nfunc Hello() string { return dep.Word() }\n",
    );
    let proxy_url = format!("file://{}", proxy.display());
    let cache_dir = cache.to_str().unwrap();
    // go.sum, and the module in the (writable, so removable) module cache.
    let status = std::process::Command::new("go")
        .args(["mod", "download", "example.com/dep"])
        .current_dir(repo.join("scenarios/app/api"))
        .env("GOPROXY", &proxy_url)
        .env("GOSUMDB", "off")
        .env("GOMODCACHE", cache_dir)
        .env("GOFLAGS", "-modcacherw")
        .env("GOTOOLCHAIN", "local")
        .status()
        .unwrap();
    assert!(status.success());
    assert!(repo.exists("scenarios/app/api/go.sum"));
    let _turn = one_at_a_time();
    let before = executed_lines(&server.worker_log());
    let run = repo.json_env(
        &["task", GO_COMPILE, "--remote-executor", &server.url()],
        &[
            ("GOMODCACHE", cache_dir),
            ("GOPROXY", "off"),
            ("GOSUMDB", "off"),
            ("GOFLAGS", "-modcacherw"),
        ],
    );
    run.assert_code(0);
    assert_eq!(run.task(GO_COMPILE)["executed"], "local", "{run}");
    let warnings = run.warnings();
    assert_eq!(warnings.len(), 1, "{run}");
    assert!(
        warnings[0].contains("module cache") && warnings[0].contains("example.com/dep@v1.0.0"),
        "{run}"
    );
    assert_eq!(executed_lines(&server.worker_log()), before, "nothing sent");
}

// Rust services: compiled remotely by default, byte-identical to a local build.

const RUST_COMPILE: &str = "compile:app-api@linux-x64";
const RUST_BINARY: &str = "dist/.build/bin/app-api/linux-x64/app-api";

const RUST_MAIN: &str = "mod extra;\n\ncfg_if::cfg_if! {\n    if #[cfg(unix)] {\n        const OS: &str = \"unix\";\n    } else {\n        const OS: &str = \"other\";\n    }\n}\n\nfn main() {\n    let _v: serde_json::Value = serde_json::from_str(\"[1]\").unwrap();\n    println!(\"{} {} {}\", greet::hello(), extra::WORD, OS);\n}\n";

/// A repository with one scenario `app` whose API is a cargo package `app-api` using a path
/// dependency (`greet/`) and crates.io crates (`cfg-if`, and `serde_json` whose crates have
/// build scripts and code with panic locations; from cargo's download cache: xbundle's own
/// build downloaded them), its lockfile made offline, and an alias in `.cargo/config.toml`; `extra` is the text of `src/extra.rs`.
fn rust_repo(extra: &str) -> Repo {
    rust_repo_with(extra, true)
}

/// [`rust_repo`], with `serde_json` only when `serde` (the checks that do not compare binaries
/// build faster with `cfg-if` alone).
fn rust_repo_with(extra: &str, serde: bool) -> Repo {
    let main = if serde {
        RUST_MAIN.to_string()
    } else {
        RUST_MAIN.replace(
            "    let _v: serde_json::Value = serde_json::from_str(\"[1]\").unwrap();\n",
            "",
        )
    };
    let serde_dep = if serde { "serde_json = \"1\"\n" } else { "" };
    let platform = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../platforms/linux-x64.toml"),
    )
    .expect("the repository's platforms/linux-x64.toml");
    let bundle = "[workspace]\ndefault-profile = \"app-desktop\"\n\n[profiles.app-desktop]\nscenario = \"app\"\ntier = \"desktop\"\nplatforms = [\"linux-x64\"]\n";
    let repo = Repo::in_sandbox(
        bundle,
        &[
            ("platforms/linux-x64.toml", &platform),
            ("scenarios/app/.vrooli/service.json", GO_SERVICE),
            (
                "scenarios/app/api/Cargo.toml",
                &format!(
                    "[package]\nname = \"app-api\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\ngreet = {{ path = \"greet\" }}\ncfg-if = \"1\"\n{serde_dep}\n[workspace]\n"
                ),
            ),
            ("scenarios/app/api/src/main.rs", &main),
            (
                "scenarios/app/api/src/extra.rs",
                &format!("pub const WORD: &str = {extra:?};\n"),
            ),
            (
                "scenarios/app/api/greet/Cargo.toml",
                "[package]\nname = \"greet\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
            ),
            (
                "scenarios/app/api/greet/src/lib.rs",
                "pub fn hello() -> &'static str {\n    \"hello\"\n}\n",
            ),
            ("scenarios/app/ui/index.html", "<h1>app</h1>\n"),
            // Cargo reads the root's configuration here and on the worker alike.
            (
                ".cargo/config.toml",
                "[alias]\nxtask = \"run -p xtask --\"\n",
            ),
        ],
    );
    let lock = std::process::Command::new("cargo")
        .args(["generate-lockfile", "--offline"])
        .current_dir(repo.join("scenarios/app/api"))
        .output()
        .unwrap();
    assert!(
        lock.status.success(),
        "cargo generate-lockfile --offline: {}",
        String::from_utf8_lossy(&lock.stderr)
    );
    repo
}

/// The binary a local build (no executor) of a fresh repository gives.
fn rust_local_binary(extra: &str) -> Vec<u8> {
    rust_local_binary_with(extra, &[])
}

/// [`rust_local_binary`] with `env` (e.g. RUSTFLAGS) for the build.
fn rust_local_binary_with(extra: &str, env: &[(&str, &str)]) -> Vec<u8> {
    let repo = rust_repo(extra);
    let run = repo.json_env(&["task", RUST_COMPILE], env);
    run.assert_code(0);
    assert_eq!(run.task(RUST_COMPILE)["executed"], "local", "{run}");
    repo.read_bytes(RUST_BINARY)
}

#[test]
fn a_rust_service_compiles_remotely_by_default_and_matches_a_local_build() {
    let Some(server) = reapi_exec::shared() else {
        return;
    };
    let _turn = one_at_a_time();
    let repo = rust_repo("one");
    // A secret beside the sources, which must never leave this machine.
    let secret = format!("API_SECRET={}\n", std::process::id());
    repo.write("scenarios/app/api/.env", &secret);
    let before = executed_lines(&server.worker_log());
    let run = repo.json(&["task", RUST_COMPILE, "--remote-executor", &server.url()]);
    run.assert_code(0);
    assert_eq!(run.status(RUST_COMPILE), "ran", "{run}");
    assert!(
        server
            .server
            .cas_holds(&common::sha256_hex(RUST_MAIN.as_bytes())),
        "the sources were sent"
    );
    assert!(
        !server
            .server
            .cas_holds(&common::sha256_hex(secret.as_bytes())),
        "a dot-file was sent"
    );
    assert_eq!(run.task(RUST_COMPILE)["executed"], "remote", "{run}");
    assert!(run.warnings().is_empty(), "{run}");
    assert_eq!(
        executed_lines(&server.worker_log()) - before,
        1,
        "{}",
        server.worker_log()
    );
    assert!(
        repo.read_bytes(RUST_BINARY) == rust_local_binary("one"),
        "the remote binary differs from a local build"
    );
    let mode = std::fs::metadata(repo.join(RUST_BINARY))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "the binary is executable");
    let printed = std::process::Command::new(repo.join(RUST_BINARY))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&printed.stdout), "hello one unix\n");
    // Nothing of the plan's own (crates, dep-info) lands in the work tree.
    assert!(!repo.exists(".xbundle-remote"));

    // The sources the worker's dep-info named were recorded: a no-op runs nothing, a file the
    // build does not read changes nothing, a module's edit builds again (remotely), and so
    // does an edit of the path dependency.
    let again = repo.json(&["task", RUST_COMPILE, "--remote-executor", &server.url()]);
    assert_eq!(again.status(RUST_COMPILE), "cached", "{again}");
    repo.write("scenarios/app/api/src/unused.rs", "fn nothing() {}\n");
    repo.write("scenarios/app/api/NOTES.md", "notes\n");
    let unused = repo.json(&["task", RUST_COMPILE, "--remote-executor", &server.url()]);
    assert_eq!(unused.status(RUST_COMPILE), "cached", "{unused}");
    repo.write(
        "scenarios/app/api/src/extra.rs",
        "pub const WORD: &str = \"two\";\n",
    );
    let edited = repo.json(&["task", RUST_COMPILE, "--remote-executor", &server.url()]);
    edited.assert_code(0);
    assert_eq!(edited.status(RUST_COMPILE), "ran", "{edited}");
    assert_eq!(edited.task(RUST_COMPILE)["executed"], "remote", "{edited}");
    let printed = std::process::Command::new(repo.join(RUST_BINARY))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&printed.stdout), "hello two unix\n");
    let unflagged = repo.read_bytes(RUST_BINARY);
    repo.write(
        "scenarios/app/api/greet/src/lib.rs",
        "pub fn hello() -> &'static str {\n    \"hi\"\n}\n",
    );
    let dep = repo.json(&["task", RUST_COMPILE, "--remote-executor", &server.url()]);
    assert_eq!(dep.status(RUST_COMPILE), "ran", "{dep}");
    assert_eq!(dep.task(RUST_COMPILE)["executed"], "remote", "{dep}");
    let printed = std::process::Command::new(repo.join(RUST_BINARY))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&printed.stdout), "hi two unix\n");

    // The user's RUSTFLAGS (in the key) reach the worker, with the paths remapped as here.
    let flags = [("RUSTFLAGS", "-C debug-assertions=on")];
    repo.write(
        "scenarios/app/api/greet/src/lib.rs",
        "pub fn hello() -> &'static str {\n    \"hello\"\n}\n",
    );
    let flagged = repo.json_env(
        &["task", RUST_COMPILE, "--remote-executor", &server.url()],
        &flags,
    );
    assert_eq!(flagged.status(RUST_COMPILE), "ran", "{flagged}");
    assert_eq!(
        flagged.task(RUST_COMPILE)["executed"],
        "remote",
        "{flagged}"
    );
    assert!(
        repo.read_bytes(RUST_BINARY) == rust_local_binary_with("two", &flags),
        "with RUSTFLAGS, the remote binary differs from a local build"
    );
    assert!(repo.read_bytes(RUST_BINARY) != unflagged);
}

#[test]
fn a_worker_with_another_cargo_is_one_warning_and_a_local_build() {
    let Some(server) = reapi_exec::shared() else {
        return;
    };
    let _turn = one_at_a_time();
    let repo = rust_repo_with("one", false);
    let path = path_with_shim(
        repo.sandbox(),
        "cargo",
        "-V",
        "cargo 1.0.0-shim (000000000 1999-01-01)",
    );
    another_toolchain_builds_here(&repo, server, RUST_COMPILE, &path, "1.0.0-shim");
    let printed = std::process::Command::new(repo.join(RUST_BINARY))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&printed.stdout), "hello one unix\n");
}

/// What a worker could not reproduce keeps the build here, with the reason, and sends
/// nothing: a link among the sources, a repository configuration naming where sources come
/// from, a package without a lockfile.
#[test]
fn a_rust_build_a_worker_could_not_reproduce_stays_here_and_says_why() {
    let Some(server) = reapi_exec::shared() else {
        return;
    };
    let _turn = one_at_a_time();
    let before = executed_lines(&server.worker_log());
    type Arrange<'a> = &'a dyn Fn(&Repo);
    let cases: [(&str, Arrange); 4] = [
        ("symbolic link", &|repo: &Repo| {
            std::os::unix::fs::symlink("extra.rs", repo.join("scenarios/app/api/src/alias.rs"))
                .unwrap();
        }),
        // A path dependency reached through a link (to a directory outside the repository):
        // never read, never sent.
        ("greet", &|repo: &Repo| {
            let outside = repo.sandbox().join("greet-outside");
            std::fs::rename(repo.join("scenarios/app/api/greet"), &outside).unwrap();
            std::os::unix::fs::symlink(&outside, repo.join("scenarios/app/api/greet")).unwrap();
        }),
        ("sets `source`", &|repo: &Repo| {
            repo.write(
                ".cargo/config.toml",
                "[source.mirror]\nregistry = \"sparse+https://mirror.invalid/index/\"\n",
            );
        }),
        ("lockfile", &|repo: &Repo| {
            // A package without dependencies, so the local build resolves offline.
            repo.write(
                "scenarios/app/api/Cargo.toml",
                "[package]\nname = \"app-api\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
            );
            repo.write("scenarios/app/api/src/main.rs", "fn main() {}\n");
            std::fs::remove_file(repo.join("scenarios/app/api/Cargo.lock")).unwrap();
        }),
    ];
    for (why, arrange) in cases {
        let repo = rust_repo_with("one", false);
        arrange(&repo);
        let run = repo.json(&["task", RUST_COMPILE, "--remote-executor", &server.url()]);
        if why == "greet" {
            // Built here, the engine refuses the linked directory among the discovered
            // inputs, as it does without an executor.
            run.assert_code(1);
            assert!(
                run.stdout
                    .contains("symbolic link where a directory is expected")
            );
        } else {
            run.assert_code(0);
            assert_eq!(run.task(RUST_COMPILE)["executed"], "local", "{why}: {run}");
        }
        let warnings = run.warnings();
        assert_eq!(warnings.len(), 1, "{why}: {run}");
        assert!(
            warnings[0].contains("cannot run remotely") && warnings[0].contains(why),
            "{why}: {run}"
        );
    }
    assert_eq!(executed_lines(&server.worker_log()), before, "nothing sent");
}
