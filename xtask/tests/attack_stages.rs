//! Attacks on the build and staging pipeline that found something, kept as tests: a stale Go
//! binary after a build constraint was edited, Go code read from outside the repository through
//! a `replace` (stale and shipped), cargo writing through a link in its target directory, and
//! `run` making the app's data through a link. Each runs the real binary beside a canary tree.
//!
//! The Go cases need Go (Debian: golang-go): when it is missing they fail under
//! `XBUNDLE_REQUIRE_TOOLS=1` (CI) and skip otherwise.

use crate::common;

use std::path::Path;

use common::{Canary, Repo};

const SERVICE: &str = r#"{
  "service": {"name": "app", "version": "1.0.0", "type": "scenario"},
  "ports": {"api": {"env_var": "API_PORT", "range": "15000-19999"}, "ui": {"env_var": "UI_PORT", "range": "35000-39999"}}
}"#;

const BUNDLE: &str = "[workspace]\ndefault-profile = \"app-desktop\"\n\n[profiles.app-desktop]\nscenario = \"app\"\ntier = \"desktop\"\nplatforms = [\"linux-x64\"]\n";

const GO_MOD: &str = "module example.com/app/api\n\ngo 1.19\n";

const MAIN_GO: &str = "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/app/api/internal/greet\"\n)\n\nfunc main() { fmt.Println(greet.Hello()) }\n";

const GREET_GO: &str = "package greet\n\n// Hello is the greeting.\nfunc Hello() string { return \"hello\" + extra }\n\nvar extra = \"\"\n";

const COMPILE: &str = "compile:app-api@linux-x64";
const BINARY: &str = "dist/.build/bin/app-api/linux-x64/app-api";

fn go_available() -> bool {
    let found = std::process::Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("XBUNDLE_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "`go` is missing: install the Debian package golang-go"
        );
        eprintln!("skipped: `go` is not installed (Debian package golang-go)");
    }
    found
}

fn platform_files() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../platforms");
    std::fs::read_dir(&dir)
        .expect("the repository's platforms/")
        .map(|entry| {
            let path = entry.expect("an entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (
                format!("platforms/{name}"),
                std::fs::read_to_string(&path).expect("a platform file"),
            )
        })
        .collect()
}

/// A repository at `<tmp>/repo` with scenario `app` (a static UI and the given API files),
/// and a canary tree at `<tmp>/canary` (holding `outside` too).
fn sandbox(api: &[(&str, &str)], outside: &[(&str, &str)]) -> (Repo, Canary) {
    let mut files = platform_files();
    files.push(("scenarios/app/.vrooli/service.json".into(), SERVICE.into()));
    files.push((
        "scenarios/app/ui/index.html".into(),
        "<h1>app</h1>\n".into(),
    ));
    for (path, text) in api {
        files.push((format!("scenarios/app/api/{path}"), text.to_string()));
    }
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let repo = Repo::in_sandbox(BUNDLE, &borrowed);
    let canary = Canary::plant(&repo.sandbox().join("canary"), outside);
    (repo, canary)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// `go list` leaves a file out of `GoFiles` when a build constraint excludes it; removing
/// the constraint brings it into the build, so the edit must re-run the build (it left the
/// old binary in place, "up to date").
#[test]
fn editing_a_build_constraint_rebuilds_the_go_service() {
    if !go_available() {
        return;
    }
    let (repo, canary) = sandbox(
        &[
            ("go.mod", GO_MOD),
            ("main.go", MAIN_GO),
            ("internal/greet/greet.go", GREET_GO),
            (
                "internal/greet/extra.go",
                "//go:build ignore\n\npackage greet\n\nfunc init() { extra = \"-marker-from-extra\" }\n",
            ),
        ],
        &[],
    );
    repo.json(&["task", COMPILE]).assert_code(0);
    assert!(!contains(&repo.read_bytes(BINARY), "-marker-from-extra"));
    repo.json(&["task", COMPILE]).assert_code(0);

    repo.write(
        "scenarios/app/api/internal/greet/extra.go",
        "// no constraint any more\n\npackage greet\n\nfunc init() { extra = \"-marker-from-extra\" }\n",
    );
    let explain = repo.human(&["explain", COMPILE]);
    explain.assert_code(0);
    assert!(
        explain.stdout.contains("would run")
            && explain
                .stdout
                .contains("scenarios/app/api/internal/greet/extra.go"),
        "explain names the edited file\n{explain}"
    );
    let edited = repo.json(&["task", COMPILE]);
    edited.assert_code(0);
    assert_eq!(edited.status(COMPILE), "ran", "{edited}");
    assert!(
        contains(&repo.read_bytes(BINARY), "-marker-from-extra"),
        "the binary holds the file the constraint no longer excludes"
    );
    canary.assert_intact("after the builds");
}

/// A `replace` with a local path outside the repository: `go build` reads (and the bundle
/// ships) code no key covers, so an edit there left a stale binary. Refused, naming it.
#[test]
fn go_code_from_outside_the_repository_is_refused() {
    if !go_available() {
        return;
    }
    let (repo, canary) = sandbox(
        &[("main.go", MAIN_GO), ("internal/greet/greet.go", GREET_GO)],
        &[
            ("outmod/go.mod", "module example.com/outmod\n\ngo 1.19\n"),
            (
                "outmod/v.go",
                "package outmod\n\n// V is read from outside.\nfunc V() string { return \"outside\" }\n",
            ),
        ],
    );
    let outside = repo.sandbox().join("canary/outmod");
    repo.write(
        "scenarios/app/api/go.mod",
        format!(
            "{GO_MOD}\nrequire example.com/outmod v0.0.0\n\nreplace example.com/outmod => {}\n",
            outside.display()
        ),
    );
    repo.write(
        "scenarios/app/api/main.go",
        MAIN_GO
            .replace(
                "\"example.com/app/api/internal/greet\"",
                "\"example.com/app/api/internal/greet\"\n\t\"example.com/outmod\"",
            )
            .replace("greet.Hello()", "greet.Hello() + outmod.V()"),
    );
    let run = repo.human(&["task", COMPILE]);
    run.assert_code(1);
    assert!(
        run.stderr.contains("outside the repository")
            && run.stderr.contains(&outside.display().to_string())
            && run.stderr.contains("example.com/outmod"),
        "{run}"
    );
    canary.assert_intact("after the refused build");
}

/// cargo writes into its target directory, the package's `target/` inside the repository:
/// a link there (a repository can ship one) made it write outside. Refused before cargo runs.
#[test]
fn cargo_builds_in_a_target_directory_of_its_own_and_never_through_a_link() {
    let (repo, canary) = sandbox(
        &[
            (
                "Cargo.toml",
                "[package]\nname = \"app-api\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
            ),
            ("src/main.rs", "fn main() { println!(\"hello\"); }\n"),
        ],
        &[],
    );
    // Service builds use a target directory of xbundle's own (`.xbundle/cargo/<service>`):
    // a link there is refused.
    for link in [
        ".xbundle/cargo/app-api",
        ".xbundle/cargo/app-api/x86_64-unknown-linux-gnu",
    ] {
        let at = repo.join(link);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(repo.sandbox().join("canary/build"), &at).unwrap();
        let run = repo.human(&["task", COMPILE]);
        run.assert_code(1);
        assert!(
            run.stderr.contains(link) && run.stderr.contains("symbolic link"),
            "{link}\n{run}"
        );
        assert!(!repo.exists(BINARY), "{link}");
        canary.assert_intact(link);
        std::fs::remove_file(&at).unwrap();
    }
    // A `target/` the repository ships (here a link out of it) is never cargo's directory:
    // nothing planted there is built from or shipped, and nothing is written through it.
    let planted = repo.join("scenarios/app/api/target");
    std::os::unix::fs::symlink(repo.sandbox().join("canary/build"), &planted).unwrap();
    repo.json(&["task", COMPILE]).assert_code(0);
    canary.assert_intact("a planted target/");
    std::fs::remove_file(&planted).unwrap();
    std::fs::remove_dir_all(repo.join(".xbundle/cargo")).unwrap();
    // Without the link, it builds.
    repo.json(&["task", COMPILE]).assert_code(0);
    assert!(repo.exists(BINARY));
    canary.assert_intact("after the build");
}

/// `run` keeps the app's data in `.xbundle/run/<profile>/`; a link there (`.xbundle/run`
/// leading out of the repository) carried the data, secrets and logs the runtime writes out
/// of the repository. Refused before anything is built or started.
#[test]
fn run_never_makes_app_data_through_a_link() {
    let (repo, canary) = sandbox(&[], &[]);
    std::fs::create_dir_all(repo.join(".xbundle")).unwrap();
    std::os::unix::fs::symlink(
        repo.sandbox().join("canary/build"),
        repo.join(".xbundle/run"),
    )
    .unwrap();
    let run = repo.human(&["run"]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("app data") && run.stderr.contains("symbolic link"),
        "{run}"
    );
    canary.assert_intact("after the refused run");
}
