//! The Electron wrapper and the thin client through the real binary (issue items 3 and 4): the
//! generated project is reproducible and lists each platform's stage and the publish settings;
//! it type-checks with `tsc --noEmit`; its main-process logic (`src/runtime.ts`) passes its
//! unit tests (`fixtures/electron/runtime.test.js`, run by `node --test`) against a stub runtime
//! (`fixtures/electron/stub-runtime.js`); `thin-client` writes the project without runtime and
//! packages whose launcher opens the URL, and refuses other URLs with exit 2; `electron-dist`
//! runs electron-builder (here a stand-in that records what it was given) and fails naming
//! the fix when it is not installed.
//!
//! TypeScript and Electron's types come from `.ci/electron-types` (pinned, installed by
//! `.ci/run` with `npm ci`; nothing here reaches the network). Without them, or without node
//! or go, a test fails under `XBUNDLE_REQUIRE_TOOLS=1` naming what to install, else skips.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Canary, Repo};
use serde_json::{Value, json};

const SERVICE: &str = r#"{
  "service": {"name": "notes", "displayName": "Notes", "description": "Take notes", "version": "1.2.0", "type": "scenario"},
  "ports": {"api": {"env_var": "API_PORT", "range": "15000-19999"}, "ui": {"env_var": "UI_PORT", "range": "35000-39999"}}
}"#;

const MAIN_GO: &str = r#"package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"status":"healthy"}`)
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("API_PORT"), nil); err != nil {
		os.Exit(1)
	}
}
"#;

const BUNDLE_TOML: &str = r#"[workspace]
default-profile = "notes-desktop"

[profiles.notes-desktop]
scenario = "notes"
tier = "desktop"
platforms = ["linux-x64", "linux-arm64", "win-x64", "darwin-arm64"]
formats = ["tar.gz", "zip", "msi", "pkg"]

[profiles.notes-desktop.installer]
identifier = "org.example.notes"
display-name = "Notes"

[profiles.notes-desktop.publish]
url = "https://downloads.example.org/notes/"

[profiles.notes-local]
scenario = "notes"
tier = "desktop"
platforms = ["linux-x64"]
"#;

const PROFILE: &str = "notes-desktop";
const PROJECT: &str = "dist/notes-desktop/electron";
const THIN: &str = "dist/notes-desktop/thin";

fn platform_files() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../platforms");
    let mut files = Vec::new();
    for entry in fs::read_dir(&dir).expect("the repository's platforms/") {
        let path = entry.expect("an entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        files.push((
            format!("platforms/{name}"),
            fs::read_to_string(&path).expect("a platform file"),
        ));
    }
    files
}

fn files(bundle_toml: &str) -> (String, Vec<(String, String)>) {
    let mut files = platform_files();
    for (path, text) in [
        ("scenarios/notes/.vrooli/service.json", SERVICE),
        (
            "scenarios/notes/api/go.mod",
            "module example.com/notes/api\n\ngo 1.19\n",
        ),
        ("scenarios/notes/api/main.go", MAIN_GO),
        ("scenarios/notes/ui/index.html", "<h1>notes</h1>\n"),
    ] {
        files.push((path.into(), text.into()));
    }
    (bundle_toml.to_string(), files)
}

/// The fixture repository (`bundle_toml` over the notes scenario).
fn repo_with(bundle_toml: &str) -> Repo {
    let (toml, files) = files(bundle_toml);
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    Repo::new(&toml, &borrowed)
}

fn repo() -> Repo {
    repo_with(BUNDLE_TOML)
}

/// Every file below `dir` (relative path → bytes).
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(relative, fs::read(&path).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `.ci/electron-types/node_modules` (TypeScript, Electron's types), or why the test cannot run.
fn electron_types() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/electron-types");
    let modules = dir.join("node_modules");
    if modules.join(".bin/tsc").is_file() && modules.join("electron/electron.d.ts").is_file() {
        return Some(modules.canonicalize().expect("canonical"));
    }
    let fix = format!(
        "TypeScript and Electron's types are not installed in {}: run `ELECTRON_SKIP_BINARY_DOWNLOAD=1 npm ci --prefix .ci/electron-types` (as .ci/run does)",
        dir.display()
    );
    assert!(
        std::env::var("XBUNDLE_REQUIRE_TOOLS").as_deref() != Ok("1"),
        "{fix}"
    );
    eprintln!("skipped: {fix}");
    None
}

/// Copies a generated project into a fresh directory with `node_modules` linked to the
/// pinned tools.
fn project_copy(from: &Path, modules: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    common::copy_tree(from, dir.path());
    std::os::unix::fs::symlink(modules, dir.path().join("node_modules")).expect("link");
    dir
}

fn run(command: &mut Command) -> std::process::Output {
    command
        .output()
        .unwrap_or_else(|err| panic!("{command:?}: {err}"))
}

#[track_caller]
fn assert_success(output: &std::process::Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_project_is_byte_identical_across_clean_runs_and_checkout_paths() {
    let first = repo();
    first
        .human(&["task", &format!("electron:{PROFILE}")])
        .assert_code(0);
    let generated = tree(&first.join(PROJECT));
    assert!(generated.contains_key("package.json") && generated.contains_key("src/main.ts"));
    // No absolute path or time leaks into it.
    let root = first.path().to_string_lossy().into_owned();
    for (path, bytes) in &generated {
        assert!(
            !String::from_utf8_lossy(bytes).contains(&root),
            "{path} names the checkout path"
        );
    }
    // A clean run in the same checkout.
    fs::remove_dir_all(first.join("dist")).unwrap();
    fs::remove_dir_all(first.join(".xbundle")).unwrap();
    first
        .human(&["task", &format!("electron:{PROFILE}")])
        .assert_code(0);
    assert_eq!(tree(&first.join(PROJECT)), generated, "a second clean run");
    // Another checkout at another path.
    let second = first.copy_without_state();
    fs::remove_dir_all(second.join("dist")).unwrap();
    assert_ne!(first.path(), second.path());
    second
        .human(&["task", &format!("electron:{PROFILE}")])
        .assert_code(0);
    assert_eq!(
        tree(&second.join(PROJECT)),
        generated,
        "another checkout path"
    );
}

#[test]
fn package_json_lists_each_platforms_stage_and_the_publish_settings() {
    let repo = repo();
    repo.human(&["task", "electron:notes-desktop", "electron:notes-local"])
        .assert_code(0);
    let package = read_json(&repo.join(PROJECT).join("package.json"));
    assert_eq!(package["name"], "notes");
    assert_eq!(package["version"], "1.2.0");
    assert_eq!(package["productName"], "Notes");
    assert_eq!(package["main"], "build/main.js");
    for (tool, version) in [
        ("electron", "45.5.0"),
        ("electron-builder", "26.17.0"),
        ("typescript", "7.0.2"),
    ] {
        assert_eq!(
            package["devDependencies"][tool], version,
            "{tool} is pinned"
        );
    }
    let build = &package["build"];
    assert_eq!(build["appId"], "org.example.notes");
    assert_eq!(build["productName"], "Notes");
    // Each system's stage, resolved from the project directory, is where staging puts it.
    for (os, from, arches, target) in [
        (
            "linux",
            "../stage/linux-${arch}",
            json!(["arm64", "x64"]),
            "AppImage",
        ),
        ("win", "../stage/win-x64", json!(["x64"]), "nsis"),
        ("mac", "../stage/darwin-arm64", json!(["arm64"]), "zip"),
    ] {
        assert_eq!(
            build[os]["extraResources"],
            json!([{ "from": from, "to": "bundle", "filter": ["**/*"] }]),
            "{os}"
        );
        assert_eq!(
            build[os]["target"],
            json!([{ "target": target, "arch": arches }]),
            "{os}"
        );
    }
    for platform in ["linux-x64", "linux-arm64"] {
        let arch = platform.strip_prefix("linux-").unwrap();
        let resolved = Path::new(PROJECT).join(
            build["linux"]["extraResources"][0]["from"]
                .as_str()
                .unwrap()
                .replace("${arch}", arch),
        );
        let normalized: PathBuf = resolved.components().fold(PathBuf::new(), |mut at, c| {
            match c {
                std::path::Component::ParentDir => {
                    at.pop();
                }
                other => at.push(other),
            }
            at
        });
        assert_eq!(
            normalized,
            Path::new("dist/notes-desktop/stage").join(platform)
        );
    }
    assert_eq!(
        build["publish"],
        json!([{ "provider": "generic", "url": "https://downloads.example.org/notes/" }])
    );
    // Without [publish], electron-builder publishes nothing.
    let local = read_json(&repo.join("dist/notes-local/electron/package.json"));
    assert_eq!(local["build"]["publish"], Value::Null);
    assert_eq!(
        local["build"]["linux"]["extraResources"][0]["from"],
        "../stage/linux-x64"
    );
    assert!(local["build"].get("win").is_none());
    assert_eq!(
        read_json(&repo.join(PROJECT).join("app.json")),
        json!({ "mode": "bundled", "productName": "Notes", "url": null })
    );
    // The windows' settings (the type check and the unit tests cover the logic).
    let main = repo.read(&format!("{PROJECT}/src/main.ts"));
    for setting in [
        "contextIsolation: true",
        "nodeIntegration: false",
        "sandbox: true",
        "app.requestSingleInstanceLock()",
    ] {
        assert!(main.contains(setting), "main.ts has {setting}");
    }
    assert!(!main.contains("@electron/remote") && !main.contains("enableRemoteModule"));
}

#[test]
fn the_generated_projects_type_check_with_tsc() {
    let Some(modules) = electron_types() else {
        return;
    };
    let repo = repo();
    repo.human(&["task", "electron:notes-desktop"])
        .assert_code(0);
    repo.human(&[
        "thin-client",
        PROFILE,
        "--url",
        "https://notes.example.org/",
    ])
    .assert_code(0);
    for project in [PROJECT, THIN] {
        let copy = project_copy(&repo.join(project), &modules);
        let output = run(Command::new(modules.join(".bin/tsc"))
            .args(["--noEmit", "-p", "."])
            .current_dir(copy.path()));
        assert_success(&output, &format!("tsc --noEmit in {project}"));
        // The check is strict: a type error in the runtime logic fails it.
        let runtime = copy.path().join("src/runtime.ts");
        let mut text = fs::read_to_string(&runtime).unwrap();
        text.push_str("\nexport function broken(value: string): number {\n  return value;\n}\n");
        fs::write(&runtime, text).unwrap();
        let output = run(Command::new(modules.join(".bin/tsc"))
            .args(["--noEmit", "-p", "."])
            .current_dir(copy.path()));
        assert!(!output.status.success(), "a planted type error is caught");
        assert!(String::from_utf8_lossy(&output.stdout).contains("TS2322"));
    }
}

#[test]
fn the_main_process_logic_passes_its_unit_tests_against_a_stub_runtime() {
    let Some(modules) = electron_types() else {
        return;
    };
    if !common::have_tool("node", "nodejs") {
        return;
    }
    let repo = repo();
    repo.human(&["task", "electron:notes-desktop"])
        .assert_code(0);
    let copy = project_copy(&repo.join(PROJECT), &modules);
    let out = tempfile::tempdir().unwrap();
    let output = run(Command::new(modules.join(".bin/tsc"))
        .args(["-p", ".", "--outDir"])
        .arg(out.path())
        .current_dir(copy.path()));
    assert_success(&output, "tsc");
    assert!(out.path().join("runtime.js").is_file());
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/electron");
    for name in ["runtime.test.js", "stub-runtime.js"] {
        fs::copy(fixtures.join(name), out.path().join(name)).unwrap();
    }
    fs::set_permissions(
        out.path().join("stub-runtime.js"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let output = run(Command::new("node")
        .args(["--test", "runtime.test.js"])
        .env_remove("NODE_OPTIONS")
        .current_dir(out.path()));
    assert_success(&output, "node --test runtime.test.js");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        report.contains("# pass 8") && report.contains("# fail 0"),
        "every unit test ran and passed:\n{report}"
    );
}

/// The file `name` inside a tar.gz, with its mode.
fn tar_entry(archive: &Path, name: &str) -> Option<(Vec<u8>, u32)> {
    let file = fs::File::open(archive).unwrap();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_string_lossy() == name {
            let mode = entry.header().mode().unwrap();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            return Some((bytes, mode));
        }
    }
    None
}

fn tar_names(archive: &Path) -> Vec<String> {
    let file = fs::File::open(archive).unwrap();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    tar.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn thin_client_writes_the_project_without_runtime_and_packages_whose_launcher_opens_the_url() {
    let repo = repo();
    let url = "https://notes.example.org/app?team=1&x=%20";
    let run = repo.human(&["thin-client", PROFILE, "--url", url]);
    run.assert_code(0);
    // It says what it wrote and where.
    for wrote in [
        format!("{THIN}/"),
        format!("{THIN}/stage/linux-x64/"),
        format!("{THIN}/packages/notes-desktop-thin-linux-x64.tar.gz"),
        format!("{THIN}/packages/notes-desktop-thin-win-x64.zip"),
    ] {
        assert!(
            run.stderr.contains(&wrote) || run.stdout.contains(&wrote),
            "names {wrote}\n{run}"
        );
    }
    // The project: thin mode, the URL, no runtime or services anywhere.
    assert_eq!(
        read_json(&repo.join(THIN).join("app.json")),
        json!({ "mode": "thin", "productName": "Notes (thin client)", "url": url })
    );
    let package = read_json(&repo.join(THIN).join("package.json"));
    assert_eq!(package["name"], "notes-thin");
    assert_eq!(package["build"]["appId"], "org.example.notes.thin");
    assert_eq!(package["build"]["publish"], Value::Null);
    assert!(!package.to_string().contains("extraResources"));
    let stage = tree(&repo.join(THIN).join("stage/linux-x64"));
    assert!(
        stage
            .keys()
            .all(|p| !p.starts_with("runtime/") && !p.starts_with("bin/"))
    );
    assert!(!stage.contains_key("bundle.json"));
    assert!(
        !repo.exists("dist/notes-desktop/stage"),
        "nothing was staged"
    );
    // The tar.gz: the launcher (executable) and the project, no runtime.
    let archive = repo
        .join(THIN)
        .join("packages/notes-desktop-thin-linux-x64.tar.gz");
    let names = tar_names(&archive);
    assert!(
        names.iter().all(|n| !n.contains("runtime/xbundle-runtime")),
        "{names:?}"
    );
    assert!(names.contains(&"notes-desktop-thin-linux-x64/electron/package.json".to_string()));
    let (launcher, mode) =
        tar_entry(&archive, "notes-desktop-thin-linux-x64/launch").expect("the launcher");
    assert_eq!(mode, 0o755);
    let (manifest, _) = tar_entry(&archive, "notes-desktop-thin-linux-x64/thin.json").unwrap();
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(manifest["url"], url);
    assert_eq!(manifest["app"]["name"], "notes-thin");
    // Run the launcher as extracted: it hands the URL to the browser.
    let dir = tempfile::tempdir().unwrap();
    let launch = dir.path().join("launch");
    fs::write(&launch, &launcher).unwrap();
    fs::set_permissions(&launch, fs::Permissions::from_mode(0o755)).unwrap();
    let seen = dir.path().join("seen");
    let browser = dir.path().join("browser");
    fs::write(
        &browser,
        format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\n", seen.display()),
    )
    .unwrap();
    fs::set_permissions(&browser, fs::Permissions::from_mode(0o755)).unwrap();
    let output = run_launcher(&launch, &browser);
    assert_success(&output, "the launcher");
    assert_eq!(fs::read_to_string(&seen).unwrap(), format!("{url}\n"));
    // Windows: a command file with the URL.
    let zip_file = fs::File::open(
        repo.join(THIN)
            .join("packages/notes-desktop-thin-win-x64.zip"),
    )
    .unwrap();
    let mut zip = zip::ZipArchive::new(zip_file).unwrap();
    let mut cmd = String::new();
    zip.by_name("notes-desktop-thin-win-x64/launch.cmd")
        .expect("launch.cmd")
        .read_to_string(&mut cmd)
        .unwrap();
    assert!(
        cmd.contains("start \"\" \"https://notes.example.org/app?team=1&x=%%20\""),
        "{cmd}"
    );
    // The msi's Start-menu shortcut starts launch.cmd, not a runtime (there is none).
    let msi = repo
        .join(THIN)
        .join("packages/notes-desktop-thin-win-x64.msi");
    if common::have_tool("wixl", "wixl") && common::have_tool("msiinfo", "msitools") {
        let export = |table: &str| {
            let output = Command::new("msiinfo")
                .args(["export"])
                .arg(&msi)
                .arg(table)
                .output()
                .unwrap();
            assert_success(&output, "msiinfo export");
            String::from_utf8(output.stdout).unwrap()
        };
        let files = export("File");
        let launch_id = files
            .lines()
            .find(|line| {
                line.split('\t')
                    .nth(2)
                    .is_some_and(|n| n.ends_with("launch.cmd"))
            })
            .and_then(|line| line.split('\t').next())
            .unwrap_or_else(|| panic!("launch.cmd in the msi's File table:\n{files}"));
        let shortcuts = export("Shortcut");
        let row = shortcuts
            .lines()
            .find(|line| line.starts_with("StartMenuShortcut"))
            .unwrap_or_else(|| panic!("a Start-menu shortcut:\n{shortcuts}"));
        assert!(row.contains(&format!("[#{launch_id}]")), "{row}");
        assert!(!row.contains("--bundle"), "{row}");
    }
    // The pkg's app launcher runs the payload's own launcher.
    let pkg = repo
        .join(THIN)
        .join("packages/notes-desktop-thin-darwin-arm64.pkg");
    if common::have_tool("bsdtar", "libarchive-tools") {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new("bsdtar")
            .arg("-xf")
            .arg(&pkg)
            .arg("-C")
            .arg(dir.path())
            .output()
            .unwrap();
        assert_success(&output, "bsdtar -xf pkg");
        let payload = dir.path().join("notes-thin.pkg/Payload");
        let unpacked = dir.path().join("payload");
        fs::create_dir(&unpacked).unwrap();
        let output = Command::new("bsdtar")
            .arg("-xf")
            .arg(&payload)
            .arg("-C")
            .arg(&unpacked)
            .output()
            .unwrap();
        assert_success(&output, "bsdtar -xf Payload");
        // The payload is relative to the install location, /Applications.
        let app = fs::read_dir(&unpacked)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|path| path.extension().is_some_and(|e| e == "app"))
            .expect("an app bundle in the payload");
        let launcher = fs::read_to_string(app.join("Contents/MacOS/notes-thin")).unwrap();
        assert!(launcher.contains("/launch"), "{launcher}");
        assert!(!launcher.contains("xbundle-runtime"), "{launcher}");
    }
    // Reproducible: another checkout gives the same package bytes.
    let other = repo.copy_without_state();
    fs::remove_dir_all(other.join("dist")).unwrap();
    other
        .human(&["thin-client", PROFILE, "--url", url])
        .assert_code(0);
    assert_eq!(
        tree(&other.join(THIN)),
        tree(&repo.join(THIN)),
        "the same thin client from another checkout path"
    );
}

fn run_launcher(launch: &Path, browser: &Path) -> std::process::Output {
    run(Command::new(launch).env("XBUNDLE_BROWSER", browser))
}

#[test]
fn thin_client_refuses_urls_that_are_not_http_with_exit_2_and_writes_nothing() {
    let (toml, files) = files(BUNDLE_TOML);
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let repo = Repo::in_sandbox(&toml, &borrowed);
    let canary = Canary::plant(&repo.sandbox().join("canary"), &[]);
    let before = repo.snapshot();
    for (url, says) in [
        ("ftp://notes.example.org/", "not an http(s) URL"),
        ("javascript:alert(1)", "not an http(s) URL"),
        ("../canary/precious.txt", "not an http(s) URL"),
        ("https://", "names no host"),
        (
            "https://notes.example.org/\"; rm -rf ../canary",
            "which a URL cannot hold",
        ),
    ] {
        let run = repo.json(&["thin-client", PROFILE, "--url", url]);
        run.assert_code(2);
        let message = run.diagnostic()["message"].as_str().unwrap().to_string();
        assert!(message.contains(says), "{url}: {message}");
        assert!(
            run.events("task-started").is_empty(),
            "nothing ran for {url}"
        );
        common::assert_same_tree(&repo.snapshot(), &before, url);
        canary.assert_intact(url);
    }
    // No URL at all: the fix is named.
    let run = repo.human(&["thin-client", PROFILE]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("--url") && run.stderr.contains("[profiles.notes-desktop.thin] url"),
        "{run}"
    );
    repo.human(&["thin-client", "nope", "--url", "https://x.org/"])
        .assert_code(2);
    common::assert_same_tree(&repo.snapshot(), &before, "no URL");
    canary.assert_intact("no URL");
    // In bundle.toml, the same rule, located.
    repo.write(
        "bundle.toml",
        format!("{BUNDLE_TOML}\n[profiles.notes-desktop.thin]\nurl = \"https://notes.example.org/\\\"x\"\n"),
    );
    let before = repo.snapshot();
    for args in [
        vec!["check"],
        vec!["thin-client", PROFILE],
        vec!["bundle", "--dry-run"],
    ] {
        let run = repo.json(&args);
        run.assert_code(2);
        let diagnostic = run.diagnostic();
        let message = diagnostic["message"].as_str().unwrap();
        assert!(
            message.contains("[thin] url") && message.contains("which a URL cannot hold"),
            "{run}"
        );
        assert_eq!(diagnostic["file"], "bundle.toml", "{run}");
        common::assert_same_tree(&repo.snapshot(), &before, "a bad URL in bundle.toml");
    }
    canary.assert_intact("a bad URL in bundle.toml");
}

#[test]
fn the_thin_clients_url_comes_from_bundle_toml_and_bundle_plans_its_packages() {
    let repo = repo_with(&BUNDLE_TOML.replace(
        "[profiles.notes-local]",
        "[profiles.notes-desktop.thin]\nurl = \"https://notes.example.org/\"\n\n[profiles.notes-local]",
    ));
    let run = repo.json(&["thin-client", PROFILE]);
    run.assert_code(0);
    let event = &run.events("thin-client")[0];
    assert_eq!(event["url"], "https://notes.example.org/");
    assert_eq!(event["project"], THIN);
    assert_eq!(
        read_json(&repo.join(THIN).join("app.json"))["url"],
        "https://notes.example.org/"
    );
    // --url overrides it (and re-generates).
    repo.human(&[
        "thin-client",
        PROFILE,
        "--url",
        "https://staging.example.org/",
    ])
    .assert_code(0);
    assert_eq!(
        read_json(&repo.join(THIN).join("app.json"))["url"],
        "https://staging.example.org/"
    );
    // `bundle` builds the Electron project and the thin client with the rest.
    let plan = repo.json(&["bundle", "--dry-run"]);
    plan.assert_code(0);
    let planned: Vec<&str> = plan
        .events("plan")
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    for id in [
        "electron:notes-desktop",
        "thin:notes-desktop",
        "package:notes-desktop-thin@linux-x64:tar.gz",
        "package:notes-desktop-thin@darwin-arm64:zip",
    ] {
        assert!(planned.contains(&id), "{id} in {planned:?}");
    }
}

#[test]
fn electron_dist_runs_electron_builder_offline_and_its_absence_is_a_clear_error() {
    if !common::have_tool("go", "golang-go") {
        return;
    }
    let Some(modules) = electron_types() else {
        return;
    };
    let repo = repo_with(&BUNDLE_TOML.replace(
        "tier = \"desktop\"\nplatforms = [\"linux-x64\"]",
        "tier = \"desktop\"\nplatforms = [\"linux-x64\"]\nelectron-dist = \"vendor/electron\"",
    ));
    repo.write("vendor/electron/version", "45.5.0\n");
    repo.write("vendor/electron/electron", "not really electron\n");
    let task = "package:notes-local@linux-x64:electron";
    // Not installed: the task fails naming what to install, and nothing is written.
    let run = repo.json(&["task", task]);
    run.assert_code(1);
    let failed = run.task(task);
    assert_eq!(failed["status"], "failed", "{run}");
    let message = failed["error"].as_str().unwrap_or_default().to_string();
    for needle in [
        "electron-builder is not installed",
        "node_modules/.bin/electron-builder",
        "npm install --save-dev electron-builder@26.17.0",
        "remove electron-dist",
    ] {
        assert!(message.contains(needle), "{needle}:\n{run}");
    }
    assert!(!repo.exists("dist/notes-local/packages/electron-linux-x64"));
    assert!(repo.exists("dist/notes-local/stage/linux-x64/bundle.json"));

    // Installed: TypeScript (the pinned one) and a stand-in for electron-builder that records
    // what it was given and writes what electron-builder writes.
    let bin = repo.join("node_modules/.bin");
    fs::create_dir_all(&bin).unwrap();
    for entry in fs::read_dir(&modules).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != ".bin" {
            std::os::unix::fs::symlink(
                entry.path(),
                repo.join("node_modules").join(entry.file_name()),
            )
            .unwrap();
        }
    }
    std::os::unix::fs::symlink("../typescript/bin/tsc", bin.join("tsc")).unwrap();
    repo.write(
        "node_modules/.bin/electron-builder",
        r#"#!/usr/bin/env node
const fs = require("fs"), path = require("path");
const args = process.argv.slice(2);
const at = (name) => args[args.indexOf(name) + 1];
const config = JSON.parse(fs.readFileSync(at("--config"), "utf8"));
const project = at("--projectDir");
const from = config.linux.extraResources[0].from;
const report = {
  args: args.filter((a) => a.startsWith("--")),
  skipDownload: process.env.ELECTRON_SKIP_BINARY_DOWNLOAD,
  electronDist: config.electronDist,
  distVersion: fs.readFileSync(path.join(config.electronDist, "version"), "utf8").trim(),
  electronVersion: config.electronVersion,
  from, to: config.linux.extraResources[0].to,
  stage: fs.readdirSync(from).sort(),
  compiled: fs.readdirSync(path.join(project, "build")).sort(),
  appId: config.appId, publish: config.publish,
};
const out = config.directories.output;
fs.mkdirSync(path.join(out, "linux-unpacked"), { recursive: true });
fs.writeFileSync(path.join(out, "linux-unpacked", "notes"), "the unpacked app");
fs.writeFileSync(path.join(out, "notes-1.2.0.AppImage"), JSON.stringify(report));
fs.writeFileSync(path.join(out, "latest-linux.yml"), "version: 1.2.0\n");
"#,
    );
    fs::set_permissions(
        bin.join("electron-builder"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let run = repo.json(&["task", task]);
    run.assert_code(0);
    let out = repo.join("dist/notes-local/packages/electron-linux-x64");
    let mut listed: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, ["latest-linux.yml", "notes-1.2.0.AppImage"]);
    let report = read_json(&out.join("notes-1.2.0.AppImage"));
    assert_eq!(
        report["args"],
        json!(["--projectDir", "--config", "--linux", "--x64", "--publish"])
    );
    assert_eq!(report["skipDownload"], "1");
    assert_eq!(
        report["electronDist"],
        repo.path()
            .canonicalize()
            .unwrap()
            .join("vendor/electron")
            .to_string_lossy()
            .as_ref()
    );
    assert_eq!(report["distVersion"], "45.5.0");
    assert_eq!(report["electronVersion"], "45.5.0");
    assert_eq!(report["to"], "bundle");
    assert_eq!(
        report["from"],
        repo.path()
            .canonicalize()
            .unwrap()
            .join("dist/notes-local/stage/linux-x64")
            .to_string_lossy()
            .as_ref()
    );
    let stage = common::strings(&report["stage"]);
    assert!(stage.contains(&"bundle.json".to_string()) && stage.contains(&"runtime".to_string()));
    assert_eq!(
        common::strings(&report["compiled"]),
        ["main.js", "preload.js", "prompt.js", "runtime.js"]
    );
    assert_eq!(report["appId"], "org.xbundle.notes");
    assert_eq!(report["publish"], Value::Null);
    // A no-op runs nothing.
    let again = repo.json(&["task", task]);
    again.assert_code(0);
    assert_ne!(again.status(task), "ran");
}
