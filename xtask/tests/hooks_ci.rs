//! Item 4 of issue 12 through the real binary, in temporary git repositories: the pre-commit
//! hook on a real `git commit` (blocks a commit that breaks a profile, lets a good one
//! through), refusing a foreign hook or a link, the `.pre-commit-hooks.yaml` manifest, the
//! GitHub workflow (parsed with yaml-rust2; actionlint does not install here: no Debian
//! package and no network to GitHub, so the structure is checked instead), and `--affected`.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{Canary, Repo};
use yaml_rust2::{Yaml, YamlLoader};

const SCENARIO: &str = r#"{
  "service": { "name": "wheel-app", "displayName": "Wheel", "version": "1.0.0", "type": "scenario" },
  "ports": { "api": { "env_var": "API_PORT", "range": "15000-19999" } },
  "dependencies": { "resources": {}, "scenarios": {} }
}
"#;

const BUNDLE_TOML: &str = r#"[workspace]
default-profile = "wheel"

[profiles.wheel]
scenario = "wheel-app"
tier = "desktop"
platforms = ["linux-x64", "win-x64", "darwin-arm64"]
"#;

fn platform(id: &str, goos: &str) -> String {
    format!(
        "id = \"{id}\"\nrust-target = \"x86_64-unknown-{goos}\"\ngoos = \"{goos}\"\ngoarch = \"amd64\"\nexe-suffix = \"\"\nformats = [\"tar.gz\"]\n"
    )
}

fn git(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("run git")
}

#[track_caller]
fn git_ok(dir: &Path, args: &[&str]) {
    let output = git(dir, args);
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A repository with a profile on three platforms, `git init`ed and committed.
fn profile_repo() -> Repo {
    let repo = Repo::in_sandbox(
        BUNDLE_TOML,
        &[
            ("scenarios/wheel-app/.vrooli/service.json", SCENARIO),
            ("platforms/linux-x64.toml", &platform("linux-x64", "linux")),
            ("platforms/win-x64.toml", &platform("win-x64", "windows")),
            (
                "platforms/darwin-arm64.toml",
                &platform("darwin-arm64", "darwin"),
            ),
            (".gitignore", ".xbundle/\ndist/\nout/\n"),
        ],
    );
    init_git(repo.path());
    repo
}

fn init_git(dir: &Path) {
    git_ok(dir, &["init", "-q", "-b", "main"]);
    git_ok(dir, &["config", "user.name", "Test"]);
    git_ok(dir, &["config", "user.email", "test@example.org"]);
    git_ok(dir, &["add", "-A"]);
    git_ok(dir, &["commit", "-q", "-m", "initial"]);
}

/// `git commit -am` with the shim first on PATH: the hook's `cargo xtask` is the binary.
fn commit(repo: &Repo, message: &str) -> std::process::Output {
    let path = format!(
        "{}:{}",
        common::cargo_shim(repo.sandbox()).display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("git")
        .args(["commit", "-q", "-am", message])
        .current_dir(repo.path())
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env_remove("XBUNDLE_CACHE_DIR")
        .output()
        .expect("run git commit")
}

fn head(repo: &Repo) -> String {
    String::from_utf8(git(repo.path(), &["rev-parse", "HEAD"]).stdout).unwrap()
}

#[test]
fn the_installed_hook_blocks_a_commit_that_breaks_a_profile_and_lets_a_good_one_through() {
    let repo = profile_repo();
    let canary = Canary::plant(&repo.sandbox().join("canary"), &[]);
    repo.human(&["hooks", "install"]).assert_code(0);
    let hook = repo.join(".git/hooks/pre-commit");
    assert!(
        repo.read(".git/hooks/pre-commit")
            .contains("cargo xtask check")
    );
    assert_eq!(
        std::fs::metadata(&hook).unwrap().permissions().mode() & 0o111,
        0o111
    );

    // A profile naming an unknown scenario: the hook fails, the commit is not made.
    let before = head(&repo);
    repo.write(
        "bundle.toml",
        BUNDLE_TOML.replace("\"wheel-app\"", "\"no-such-app\""),
    );
    let blocked = commit(&repo, "break the profile");
    assert!(!blocked.status.success(), "the broken commit went through");
    assert!(
        String::from_utf8_lossy(&blocked.stderr).contains("no-such-app"),
        "the hook says what is wrong: {}",
        String::from_utf8_lossy(&blocked.stderr)
    );
    assert_eq!(head(&repo), before, "no commit was made");

    // Fixed: the hook passes and the commit is made.
    repo.write(
        "bundle.toml",
        BUNDLE_TOML.replace("tier = \"desktop\"", "tier = \"tier-2-desktop\""),
    );
    let good = commit(&repo, "a good change");
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert_ne!(head(&repo), before);

    // Re-installing over its own hook is fine; uninstall removes it.
    repo.human(&["hooks", "install"]).assert_code(0);
    repo.human(&["hooks", "uninstall"]).assert_code(0);
    assert!(!hook.exists());
    canary.assert_intact("hooks install, commits, uninstall");
}

#[test]
fn a_foreign_hook_or_a_link_is_refused_and_left_as_it_was() {
    let repo = profile_repo();
    let canary = Canary::plant(&repo.sandbox().join("canary"), &[]);
    let foreign = "#!/bin/sh\necho my own hook\n";
    repo.write(".git/hooks/pre-commit", foreign);
    for command in ["install", "uninstall"] {
        let run = repo.human(&["hooks", command]);
        run.assert_code(2);
        assert_eq!(repo.read(".git/hooks/pre-commit"), foreign, "{command}");
    }
    // A link to a file outside: never written through, never removed.
    repo.remove(".git/hooks/pre-commit");
    std::os::unix::fs::symlink(
        canary.dir.join("precious.txt"),
        repo.join(".git/hooks/pre-commit"),
    )
    .unwrap();
    repo.human(&["hooks", "install"]).assert_code(2);
    repo.human(&["hooks", "uninstall"]).assert_code(2);
    assert!(repo.join(".git/hooks/pre-commit").is_symlink());
    // core.hooksPath naming a link to a directory outside: refused, nothing written there.
    git_ok(repo.path(), &["config", "core.hooksPath", "linked-hooks"]);
    std::os::unix::fs::symlink(canary.dir.join("build"), repo.join("linked-hooks")).unwrap();
    repo.human(&["hooks", "install"]).assert_code(2);
    canary.assert_intact("hooks refused a foreign hook and links");
}

#[test]
fn the_hook_goes_where_core_hooks_path_says() {
    let repo = profile_repo();
    git_ok(repo.path(), &["config", "core.hooksPath", "my-hooks"]);
    repo.human(&["hooks", "install"]).assert_code(0);
    assert!(
        repo.read("my-hooks/pre-commit")
            .contains("cargo xtask check")
    );
    assert!(!repo.exists(".git/hooks/pre-commit"));
}

#[test]
fn the_pre_commit_framework_manifest_runs_check() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../.pre-commit-hooks.yaml"),
    )
    .expect("the manifest at the repository root");
    let docs = YamlLoader::load_from_str(&text).expect("valid YAML");
    let hooks = docs[0].as_vec().expect("a list of hooks");
    let hook = hooks
        .iter()
        .find(|h| h["id"].as_str() == Some("xbundle-check"))
        .expect("the xbundle-check hook");
    assert_eq!(hook["entry"].as_str(), Some("cargo xtask check"));
    assert_eq!(hook["language"].as_str(), Some("system"));
    assert_eq!(hook["pass_filenames"].as_bool(), Some(false));
    assert_eq!(hook["always_run"].as_bool(), Some(true));
    assert!(hook["name"].as_str().is_some());
}

fn steps_use(job: &Yaml, action: &str) -> Vec<Yaml> {
    job["steps"]
        .as_vec()
        .expect("steps")
        .iter()
        .filter(|s| s["uses"].as_str().is_some_and(|u| u.starts_with(action)))
        .cloned()
        .collect()
}

fn runs(job: &Yaml) -> Vec<String> {
    job["steps"]
        .as_vec()
        .expect("steps")
        .iter()
        .filter_map(|s| s["run"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn ci_github_writes_a_workflow_with_check_a_platform_matrix_and_publish() {
    let repo = profile_repo();
    repo.human(&["ci", "github"]).assert_code(0);
    let text = repo.read(".github/workflows/xbundle.yml");
    let docs = YamlLoader::load_from_str(&text).expect("the workflow is valid YAML");
    let workflow = &docs[0];
    let on = &workflow["on"];
    assert!(!on["pull_request"].is_badvalue(), "runs on pull requests");
    let jobs = &workflow["jobs"];
    let names: Vec<&str> = jobs
        .as_hash()
        .unwrap()
        .keys()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(names, ["check", "build", "publish"]);

    assert!(runs(&jobs["check"]).contains(&"cargo xtask check".to_string()));

    let build = &jobs["build"];
    assert_eq!(build["needs"].as_str(), Some("check"));
    assert_eq!(build["runs-on"].as_str(), Some("${{ matrix.os }}"));
    let mut matrix: Vec<(String, String, String)> = build["strategy"]["matrix"]["include"]
        .as_vec()
        .expect("a matrix")
        .iter()
        .map(|e| {
            (
                e["profile"].as_str().unwrap().to_string(),
                e["platform"].as_str().unwrap().to_string(),
                e["os"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    matrix.sort();
    let expected = [
        ("wheel", "darwin-arm64", "macos-latest"),
        ("wheel", "linux-x64", "ubuntu-latest"),
        ("wheel", "win-x64", "windows-latest"),
    ]
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
    assert_eq!(matrix, expected);
    assert!(
        runs(build)
            .iter()
            .any(|r| r.starts_with("cargo xtask bundle")
                && r.contains("matrix.profile")
                && r.contains("--platform"))
    );
    let upload = steps_use(build, "actions/upload-artifact");
    assert_eq!(
        upload[0]["with"]["path"].as_str(),
        Some("dist/${{ matrix.profile }}/packages")
    );
    assert!(
        text.contains("XBUNDLE_REMOTE_CACHE"),
        "the remote cache placeholder"
    );
    assert!(!workflow["env"]["XBUNDLE_REMOTE_CACHE"].is_badvalue());

    // Publish: every platform's packages by their exact artifact names into the profile's
    // packages directory, then `publish` (checksums, update manifests, release.json), then
    // the whole release as one artifact.
    let publish = &jobs["publish"];
    assert_eq!(publish["needs"].as_str(), Some("build"));
    let mut downloads: Vec<(String, String)> = steps_use(publish, "actions/download-artifact")
        .iter()
        .map(|step| {
            (
                step["with"]["name"].as_str().unwrap().to_string(),
                step["with"]["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    downloads.sort();
    let expected: Vec<(String, String)> = ["darwin-arm64", "linux-x64", "win-x64"]
        .iter()
        .map(|platform| {
            (
                format!("packages-wheel-{platform}"),
                "dist/wheel/packages".to_string(),
            )
        })
        .collect();
    assert_eq!(downloads, expected);
    let steps = publish["steps"].as_vec().unwrap();
    let published = steps
        .iter()
        .position(|step| step["run"].as_str() == Some("cargo xtask publish \"$PROFILE\""))
        .expect("a publish step");
    assert_eq!(steps[published]["env"]["PROFILE"].as_str(), Some("wheel"));
    assert!(
        steps[..published]
            .iter()
            .filter(|step| step["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/download-artifact")))
            .count()
            == 3,
        "the packages are downloaded before publishing"
    );
    assert!(steps_use(publish, "actions/checkout").len() == 1);
    let upload = steps_use(publish, "actions/upload-artifact");
    assert_eq!(upload.len(), 1);
    let paths: Vec<&str> = upload[0]["with"]["path"]
        .as_str()
        .unwrap()
        .lines()
        .collect();
    assert_eq!(paths, ["dist/wheel/release.json", "dist/wheel/packages"]);
    // Structure every job needs (actionlint's first checks).
    for name in names {
        let job = &jobs[name];
        assert!(job["runs-on"].as_str().is_some(), "{name}: runs-on");
        assert!(!job["steps"].as_vec().unwrap().is_empty(), "{name}: steps");
    }

    // Its own file is rewritten; a foreign one is refused unless --force.
    repo.human(&["ci", "github"]).assert_code(0);
    repo.write(".github/workflows/xbundle.yml", "name: mine\n");
    repo.human(&["ci", "github"]).assert_code(2);
    assert_eq!(repo.read(".github/workflows/xbundle.yml"), "name: mine\n");
    repo.human(&["ci", "github", "--force"]).assert_code(0);
    assert!(
        repo.read(".github/workflows/xbundle.yml")
            .contains("cargo xtask check")
    );
}

/// Two independent chains and a loner: a -> b, c -> d, e.
const CHAINS: &str = r#"[tasks.a]
run = "mkdir -p out; cat src/a.txt > out/a.txt"
inputs = ["src/a.txt"]
outputs = ["out/a.txt"]

[tasks.b]
run = "cat out/a.txt > out/b.txt"
inputs = ["out/a.txt"]
outputs = ["out/b.txt"]
deps = ["a"]

[tasks.c]
run = "mkdir -p out; cat src/c/*.txt > out/c.txt"
inputs = ["src/c/**"]
outputs = ["out/c.txt"]

[tasks.d]
run = "cat out/c.txt > out/d.txt"
inputs = ["out/c.txt"]
outputs = ["out/d.txt"]
deps = ["c"]

[tasks.e]
run = "mkdir -p out; cat src/e.txt > out/e.txt"
inputs = ["src/e.txt"]
outputs = ["out/e.txt"]
"#;

fn chains_repo() -> Repo {
    let repo = Repo::new(
        CHAINS,
        &[
            ("src/a.txt", "a\n"),
            ("src/c/one.txt", "c1\n"),
            ("src/e.txt", "e\n"),
            (".gitignore", ".xbundle/\n"),
        ],
    );
    init_git(repo.path());
    repo
}

#[test]
fn affected_runs_exactly_the_tasks_downstream_of_a_changed_file() {
    let repo = chains_repo();
    // Nothing changed since HEAD: nothing runs.
    let run = repo.json(&["task", "--affected"]);
    run.assert_code(0);
    assert!(run.started().is_empty(), "{:?}", run.started());

    // An uncommitted change to c's input, on an empty cache: c and d run, not a, b or e.
    repo.write("src/c/one.txt", "c1 changed\n");
    let run = repo.json(&["task", "--affected"]);
    run.assert_code(0);
    let mut started = run.started();
    started.sort();
    assert_eq!(started, ["task:c", "task:d"]);

    // A new untracked file under c's glob counts too; and a named target narrows the set.
    git_ok(repo.path(), &["commit", "-qam", "c changed"]);
    repo.write("src/c/two.txt", "c2\n");
    let mut started = repo.json(&["task", "--affected", "c"]).started();
    started.sort();
    assert_eq!(started, ["task:c"]);

    // --base: every change since that ref (the commit above and the new file).
    let mut started = repo
        .json(&["task", "--affected", "--base", "HEAD~1", "--force"])
        .started();
    started.sort();
    assert_eq!(started, ["task:c", "task:d"]);

    // A change to a's input: a and b (b's input is a's output, not a source change).
    repo.write("src/a.txt", "a changed\n");
    let mut started = repo.json(&["task", "--affected", "--force"]).started();
    started.sort();
    assert_eq!(started, ["task:a", "task:b", "task:c", "task:d"]);

    // A bad ref is bad input.
    repo.json(&["task", "--affected", "--base", "no-such-ref"])
        .assert_code(2);
}

#[test]
fn affected_needs_a_git_repository() {
    let repo = Repo::new(CHAINS, &[("src/a.txt", "a\n")]);
    let run = repo.json(&["task", "--affected"]);
    run.assert_code(2);
}
