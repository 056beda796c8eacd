//! Builds and stages through the real binary: Go services cross-built for four platforms (their
//! headers read), only what changed rebuilt (discovered inputs: a `_test.go` or a package the
//! service does not import changes nothing), UI builds, byte-identical clean stagings, and
//! platforms that cannot be built here reported with their fix.
//!
//! Needs Go and npm (Debian: golang-go, npm): when missing, each test fails under
//! `XBUNDLE_REQUIRE_TOOLS=1` (CI) and skips otherwise.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;

use common::Repo;

const SERVICE: &str = r#"{
  "service": {"name": "app", "version": "1.0.0", "type": "scenario"},
  "ports": {"api": {"env_var": "API_PORT", "range": "15000-19999"}, "ui": {"env_var": "UI_PORT", "range": "35000-39999"}}
}"#;

const GO_MOD: &str = "module example.com/app/api\n\ngo 1.19\n";

const MAIN_GO: &str = r#"package main

import (
	"fmt"
	"net/http"
	"os"

	"example.com/app/api/internal/greet"
)

func main() {
	http.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"status":"healthy"}`)
	})
	http.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, greet.Hello())
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("API_PORT"), nil); err != nil {
		os.Exit(1)
	}
}
"#;

const GREET_GO: &str =
    "package greet\n\n// Hello is the greeting.\nfunc Hello() string { return \"hello\" }\n";
const GREET_TEST_GO: &str = "package greet\n\nimport \"testing\"\n\nfunc TestHello(t *testing.T) {\n\tif Hello() != \"hello\" {\n\t\tt.Fatal(Hello())\n\t}\n}\n";
const UNUSED_GO: &str =
    "package tools\n\n// Unused is imported by nothing.\nfunc Unused() int { return 1 }\n";

const PACKAGE_JSON: &str = r#"{"name": "app-ui", "version": "1.0.0", "private": true, "scripts": {"build": "node build.js"}}
"#;
const PACKAGE_LOCK: &str = r#"{"name": "app-ui", "version": "1.0.0", "lockfileVersion": 3, "requires": true, "packages": {"": {"name": "app-ui", "version": "1.0.0"}}}
"#;
const BUILD_JS: &str = r#"const fs = require("fs");
fs.mkdirSync("dist", { recursive: true });
const page = fs.readFileSync("src/index.html", "utf8");
fs.writeFileSync("dist/index.html", page.replace("{{title}}", "App"));
"#;

fn platforms() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../platforms");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("the repository's platforms/") {
        let path = entry.expect("an entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        files.push((
            format!("platforms/{name}"),
            std::fs::read_to_string(&path).expect("a platform file"),
        ));
    }
    files
}

/// A repository with one scenario `app`: a Go API (two packages, tests, an unused package) and
/// a UI (npm when `npm_ui`, else static), and a profile over `platforms`.
fn repo(platform_list: &[&str], npm_ui: bool) -> Repo {
    let list: Vec<String> = platform_list.iter().map(|p| format!("\"{p}\"")).collect();
    let bundle = format!(
        "[workspace]\ndefault-profile = \"app-desktop\"\n\n[profiles.app-desktop]\nscenario = \"app\"\ntier = \"desktop\"\nplatforms = [{}]\n",
        list.join(", ")
    );
    let mut files: Vec<(String, String)> = platforms();
    for (path, text) in [
        ("scenarios/app/.vrooli/service.json", SERVICE),
        ("scenarios/app/api/go.mod", GO_MOD),
        ("scenarios/app/api/main.go", MAIN_GO),
        ("scenarios/app/api/internal/greet/greet.go", GREET_GO),
        (
            "scenarios/app/api/internal/greet/greet_test.go",
            GREET_TEST_GO,
        ),
        ("scenarios/app/api/tools/unused.go", UNUSED_GO),
    ] {
        files.push((path.into(), text.into()));
    }
    if npm_ui {
        for (path, text) in [
            ("scenarios/app/ui/package.json", PACKAGE_JSON),
            ("scenarios/app/ui/package-lock.json", PACKAGE_LOCK),
            ("scenarios/app/ui/build.js", BUILD_JS),
            (
                "scenarios/app/ui/src/index.html",
                "<title>{{title}}</title>\n",
            ),
        ] {
            files.push((path.into(), text.into()));
        }
    } else {
        files.push((
            "scenarios/app/ui/index.html".into(),
            "<h1>app</h1>\n".into(),
        ));
    }
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    Repo::new(&bundle, &borrowed)
}

fn ran(run: &common::Run) -> BTreeSet<String> {
    run.statuses()
        .into_iter()
        .filter(|(_, status)| status == "ran")
        .map(|(id, _)| id)
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

const STAGE: &str = "dist/app-desktop/stage/linux-x64";

#[test]
fn go_services_are_cross_built_for_every_platform() {
    if !common::have_tool("go", "golang-go") {
        return;
    }
    let repo = repo(
        &["linux-x64", "linux-arm64", "win-x64", "darwin-arm64"],
        false,
    );
    let run = repo.json(&[
        "task",
        "compile:app-api@linux-x64",
        "compile:app-api@linux-arm64",
        "compile:app-api@win-x64",
        "compile:app-api@darwin-arm64",
    ]);
    run.assert_code(0);
    use object::{Architecture, BinaryFormat, Object};
    for (platform, name, format, arch) in [
        (
            "linux-x64",
            "app-api",
            BinaryFormat::Elf,
            Architecture::X86_64,
        ),
        (
            "linux-arm64",
            "app-api",
            BinaryFormat::Elf,
            Architecture::Aarch64,
        ),
        (
            "win-x64",
            "app-api.exe",
            BinaryFormat::Pe,
            Architecture::X86_64,
        ),
        (
            "darwin-arm64",
            "app-api",
            BinaryFormat::MachO,
            Architecture::Aarch64,
        ),
    ] {
        let path = format!("dist/.build/bin/app-api/{platform}/{name}");
        let bytes = repo.read_bytes(&path);
        let file = object::File::parse(&*bytes).unwrap_or_else(|err| panic!("{path}: {err}"));
        assert_eq!(file.format(), format, "{path}");
        assert_eq!(file.architecture(), arch, "{path}");
    }
}

#[test]
fn only_what_changed_is_rebuilt_and_a_no_op_runs_nothing() {
    if !common::have_tool("go", "golang-go") || !common::have_tool("npm", "npm") {
        return;
    }
    let repo = repo(&["linux-x64"], true);
    let first = repo.json(&["bundle"]);
    first.assert_code(0);
    for file in [
        "bundle.json",
        "bin/app-api/linux-x64/app-api",
        "ui/app/index.html",
        "runtime/xbundle-runtime",
    ] {
        assert!(repo.exists(&format!("{STAGE}/{file}")), "{file}\n{first}");
    }
    assert_eq!(
        repo.read(&format!("{STAGE}/ui/app/index.html")),
        "<title>App</title>\n"
    );
    let bundles = first.events("bundles");
    assert_eq!(common::strings(&bundles[0]["staged"]), [STAGE], "{first}");

    let noop = repo.json(&["bundle"]);
    noop.assert_code(0);
    assert_eq!(ran(&noop), set(&[]), "a no-op runs nothing\n{noop}");

    // An imported package: its service's build and the stage, nothing else.
    repo.write(
        "scenarios/app/api/internal/greet/greet.go",
        GREET_GO.replace("\"hello\"", "\"hi\""),
    );
    let edited = repo.json(&["bundle"]);
    edited.assert_code(0);
    assert_eq!(
        ran(&edited),
        set(&[
            "compile:app-api@linux-x64",
            "stage:app-desktop@linux-x64",
            "package:app-desktop@linux-x64:tar.gz",
            "package:app-desktop@linux-x64:deb",
            "package:app-desktop@linux-x64:rpm",
            "publish:app-desktop",
        ]),
        "{edited}"
    );
    assert!(
        edited
            .reasons("compile:app-api@linux-x64")
            .iter()
            .any(|r| r.contains("scenarios/app/api/internal/greet/greet.go")),
        "the reason names the discovered file\n{edited}"
    );

    // A test file and a package nothing imports: nothing.
    repo.write(
        "scenarios/app/api/internal/greet/greet_test.go",
        GREET_TEST_GO.replace("TestHello", "TestHelloAgain"),
    );
    repo.write(
        "scenarios/app/api/tools/unused.go",
        UNUSED_GO.replace("return 1", "return 2"),
    );
    let untouched = repo.json(&["bundle"]);
    untouched.assert_code(0);
    assert_eq!(ran(&untouched), set(&[]), "{untouched}");

    // A new file in an imported package re-runs its build (the package's file list changed).
    repo.write(
        "scenarios/app/api/internal/greet/more.go",
        "package greet\n\n// More is more.\nfunc More() string { return \"more\" }\n",
    );
    let added = repo.json(&["bundle"]);
    added.assert_code(0);
    assert!(
        ran(&added).contains("compile:app-api@linux-x64"),
        "a new file in a used package re-runs the build\n{added}"
    );

    // The UI: its build and the stage.
    repo.write(
        "scenarios/app/ui/src/index.html",
        "<title>{{title}}!</title>\n",
    );
    let ui = repo.json(&["bundle"]);
    ui.assert_code(0);
    assert_eq!(
        ran(&ui),
        set(&[
            "compile:app-ui",
            "stage:app-desktop@linux-x64",
            "package:app-desktop@linux-x64:tar.gz",
            "package:app-desktop@linux-x64:deb",
            "package:app-desktop@linux-x64:rpm",
            "publish:app-desktop",
        ]),
        "{ui}"
    );
    assert_eq!(
        repo.read(&format!("{STAGE}/ui/app/index.html")),
        "<title>App!</title>\n"
    );
}

fn stage_tree(repo: &Repo) -> Vec<(String, Vec<u8>, bool)> {
    let mut files = Vec::new();
    let root = repo.join(STAGE);
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("the stage") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                files.push((
                    path.strip_prefix(&root).unwrap().display().to_string(),
                    std::fs::read(&path).unwrap(),
                    mode & 0o111 != 0,
                ));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn two_clean_stagings_are_byte_identical() {
    if !common::have_tool("go", "golang-go") {
        return;
    }
    let one = repo(&["linux-x64"], false);
    let two = repo(&["linux-x64"], false);
    one.json(&["bundle"]).assert_code(0);
    two.json(&["bundle"]).assert_code(0);
    let (a, b) = (stage_tree(&one), stage_tree(&two));
    assert_eq!(
        a.iter().map(|f| (&f.0, f.2)).collect::<Vec<_>>(),
        b.iter().map(|f| (&f.0, f.2)).collect::<Vec<_>>()
    );
    for (x, y) in a.iter().zip(&b) {
        assert!(x.1 == y.1, "{} differs between two clean stagings", x.0);
    }
    // And after the stage is removed, it comes back from the cache, byte for byte.
    std::fs::remove_dir_all(one.join("dist")).unwrap();
    let restored = one.json(&["bundle"]);
    restored.assert_code(0);
    assert_eq!(ran(&restored), set(&[]), "{restored}");
    assert!(stage_tree(&one) == a, "the restored stage differs");
}

#[test]
fn platforms_that_cannot_be_built_here_are_reported_with_their_fix() {
    let repo = repo(&["linux-x64", "win-x64"], false);
    // No Go on PATH for this run: the API cannot be built anywhere.
    let run = repo.json_env(&["bundle"], &[("PATH", "/nonexistent")]);
    run.assert_code(0);
    let unbuildable = run.events("unbuildable");
    assert!(
        unbuildable
            .iter()
            .any(|e| e["platform"] == "linux-x64"
                && e["fix"].as_str().unwrap().contains("golang-go")),
        "{run}"
    );
    let human = repo.human_env(&["bundle"], &[("PATH", "/nonexistent")]);
    human.assert_code(0);
    assert!(
        human.stderr.contains("linux-x64 not staged")
            && human.stderr.contains("win-x64 not staged"),
        "{human}"
    );
    assert!(!repo.exists(STAGE));
    // With Go, the win-x64 runtime still names its fix (no Windows target installed here).
    if common::have_tool("go", "golang-go") {
        let run = repo.json(&["bundle"]);
        run.assert_code(0);
        let events = run.events("unbuildable");
        let windows = events
            .iter()
            .find(|e| e["platform"] == "win-x64")
            .unwrap_or_else(|| panic!("win-x64 is reported\n{run}"));
        assert!(
            windows["fix"]
                .as_str()
                .unwrap()
                .contains("rustup target add x86_64-pc-windows-msvc"),
            "{run}"
        );
        assert!(repo.exists(&format!("{STAGE}/bundle.json")), "{run}");
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    let output = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(bytes)?;
            child.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&output.stdout)[..64].to_string()
}

/// Four platforms, three with a prebuilt runtime named in bundle.toml, and an asset: every
/// stage is made; an edit of the Go service re-runs its build on each platform and every stage,
/// nothing else; the staged bundle.json lists the asset with its digest and size.
#[test]
fn every_platform_is_staged_with_its_assets_and_an_edit_rebuilds_each() {
    if !common::have_tool("go", "golang-go") {
        return;
    }
    let repo = repo(
        &["linux-x64", "linux-arm64", "win-x64", "darwin-arm64"],
        false,
    );
    let files = repo.sandbox().join("downloads");
    std::fs::create_dir_all(&files).unwrap();
    let runtime = b"#!/bin/sh\n# a stand-in for the arm64 runtime\n".to_vec();
    let data = b"the model weights\n".to_vec();
    std::fs::write(files.join("runtime-arm64"), &runtime).unwrap();
    std::fs::write(files.join("model.bin"), &data).unwrap();
    let toml = repo.read("bundle.toml");
    repo.write(
        "bundle.toml",
        format!(
            "{toml}\n[[assets]]\nid = \"model\"\nurl = \"file://{}\"\nsha256 = \"{}\"\n{}",
            files.join("model.bin").display(),
            sha256_hex(&data),
            ["linux-arm64", "win-x64", "darwin-arm64"]
                .iter()
                .map(|platform| format!(
                    "\n[runtime.{platform}]\nurl = \"file://{}\"\nsha256 = \"{}\"\n",
                    files.join("runtime-arm64").display(),
                    sha256_hex(&runtime)
                ))
                .collect::<String>(),
        ),
    );
    let first = repo.json(&["bundle"]);
    first.assert_code(0);
    let arm = "dist/app-desktop/stage/linux-arm64";
    let windows = "dist/app-desktop/stage/win-x64";
    let mac = "dist/app-desktop/stage/darwin-arm64";
    assert!(repo.exists(&format!("{windows}/bin/app-api/win-x64/app-api.exe")));
    assert!(repo.exists(&format!("{mac}/bin/app-api/darwin-arm64/app-api")));
    for stage in [STAGE, arm, windows, mac] {
        let manifest: serde_json::Value =
            serde_json::from_str(&repo.read(&format!("{stage}/bundle.json"))).unwrap();
        let api = manifest["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "app-api")
            .expect("the API service");
        let asset = &api["assets"][0];
        assert_eq!(asset["sha256"], sha256_hex(&data), "{stage}");
        assert_eq!(asset["size_bytes"], data.len() as u64, "{stage}");
        let path = asset["path"].as_str().unwrap();
        assert_eq!(repo.read_bytes(&format!("{stage}/{path}")), data);
    }
    assert_eq!(
        repo.read_bytes(&format!("{arm}/runtime/xbundle-runtime")),
        runtime
    );
    use object::{Architecture, Object};
    let arm_api = repo.read_bytes(&format!("{arm}/bin/app-api/linux-arm64/app-api"));
    assert_eq!(
        object::File::parse(&*arm_api).unwrap().architecture(),
        Architecture::Aarch64
    );

    repo.write(
        "scenarios/app/api/main.go",
        MAIN_GO.replace("healthy", "healthy\\n"),
    );
    let edited = repo.json(&["bundle"]);
    edited.assert_code(0);
    let mut expected = set(&[
        "compile:app-api@linux-x64",
        "compile:app-api@linux-arm64",
        "compile:app-api@win-x64",
        "compile:app-api@darwin-arm64",
        "stage:app-desktop@linux-x64",
        "stage:app-desktop@linux-arm64",
        "stage:app-desktop@win-x64",
        "stage:app-desktop@darwin-arm64",
        // Each platform's default formats (linux: tar.gz, deb, rpm; windows: zip; macOS: zip
        // and pkg).
        "package:app-desktop@linux-x64:tar.gz",
        "package:app-desktop@linux-x64:deb",
        "package:app-desktop@linux-x64:rpm",
        "package:app-desktop@linux-arm64:tar.gz",
        "package:app-desktop@linux-arm64:deb",
        "package:app-desktop@linux-arm64:rpm",
        "package:app-desktop@win-x64:zip",
        "package:app-desktop@darwin-arm64:zip",
        "package:app-desktop@darwin-arm64:pkg",
        // The release: checksums and update manifests of the new artifacts.
        "publish:app-desktop",
    ]);
    // win-x64's default formats hold the msi, made where wixl is installed.
    if common::have_tool("wixl", "wixl") {
        expected.insert("package:app-desktop@win-x64:msi".to_string());
    }
    assert_eq!(ran(&edited), expected, "{edited}");
}

/// A profile says how a service is built when its layout does not: another directory and a
/// main package below it; the build block of bundle.json records it. A bad override is a
/// located error.
#[test]
fn a_profile_overrides_how_a_service_is_built() {
    if !common::have_tool("go", "golang-go") {
        return;
    }
    let repo = repo(&["linux-x64"], false);
    // The module moves to server/, its main package to server/cmd/api.
    for (from, to) in [
        ("api/go.mod", "server/go.mod"),
        (
            "api/internal/greet/greet.go",
            "server/internal/greet/greet.go",
        ),
    ] {
        let text = repo.read(&format!("scenarios/app/{from}"));
        repo.write(&format!("scenarios/app/{to}"), text);
    }
    repo.write("scenarios/app/server/cmd/api/main.go", MAIN_GO);
    std::fs::remove_dir_all(repo.join("scenarios/app/api")).unwrap();
    let toml = repo.read("bundle.toml");
    repo.write(
        "bundle.toml",
        format!("{toml}\n[profiles.app-desktop.builds.app-api]\ntype = \"go\"\ndir = \"scenarios/app/server\"\npackage = \"./cmd/api\"\n"),
    );
    let run = repo.json(&["bundle"]);
    run.assert_code(0);
    assert!(
        repo.exists(&format!("{STAGE}/bin/app-api/linux-x64/app-api")),
        "{run}"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&repo.read(&format!("{STAGE}/bundle.json"))).unwrap();
    let build = &manifest["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "app-api")
        .unwrap()["build"];
    assert_eq!(build["type"], "go");
    assert_eq!(build["source_dir"], "scenarios/app/server");

    repo.write(
        "bundle.toml",
        format!("{toml}\n[profiles.app-desktop.builds.app-api]\ntype = \"java\"\n"),
    );
    let bad = repo.human(&["check"]);
    bad.assert_code(2);
    assert!(
        bad.stderr
            .contains("build type `java` of app-api is not go, rust or none")
            && bad.stderr.contains("bundle.toml:"),
        "{}",
        bad.stderr
    );
    repo.write(
        "bundle.toml",
        format!("{toml}\n[profiles.app-desktop.builds.app-api]\ndir = \"../elsewhere\"\n"),
    );
    repo.human(&["check"]).assert_code(2);
}

/// A no-op `bundle` invokes no toolchain: tool identities come from the probe cache, and every
/// task is a hit. Each tool here is a wrapper that logs its calls before running the real one.
#[test]
fn a_no_op_bundle_invokes_no_toolchain() {
    if !common::have_tool("go", "golang-go") || !common::have_tool("npm", "npm") {
        return;
    }
    let repo = repo(&["linux-x64"], true);
    let wrappers = repo.sandbox().join("wrappers");
    std::fs::create_dir_all(&wrappers).unwrap();
    let log = repo.sandbox().join("calls.log");
    let path = std::env::var("PATH").unwrap();
    for tool in ["go", "npm", "node", "cargo", "rustc"] {
        let real = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap();
        let real = String::from_utf8_lossy(&real.stdout).trim().to_string();
        if real.is_empty() {
            continue;
        }
        let script = wrappers.join(tool);
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"{tool} $*\" >> '{}'\nexec '{real}' \"$@\"\n",
                log.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let env_path = format!("{}:{path}", wrappers.display());
    repo.json_env(&["bundle"], &[("PATH", &env_path)])
        .assert_code(0);
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(calls.contains("go "), "the first build ran go:\n{calls}");
    let noop = repo.json_env(&["bundle"], &[("PATH", &env_path)]);
    noop.assert_code(0);
    assert_eq!(ran(&noop), set(&[]), "{noop}");
    let after = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(after, calls, "a no-op invoked a toolchain");
}

/// `doctor` says what this machine has and which platforms of each profile can be staged, and
/// why not with the fix; `--json` gives the same as one object.
#[test]
fn doctor_lists_toolchains_and_what_each_profile_can_stage_here() {
    let repo = repo(&["linux-x64", "win-x64"], false);
    let run = repo.json(&["doctor"]);
    run.assert_code(0);
    let doctor = &run.events("doctor")[0];
    assert_eq!(doctor["rust"]["found"], true, "{run}");
    let host = doctor["rust"]["host"].as_str().unwrap().to_string();
    assert!(
        common::strings(&doctor["rust"]["targets"]).contains(&host),
        "{run}"
    );
    assert!(
        doctor["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "dot"),
        "{run}"
    );
    let platforms = doctor["profiles"][0]["platforms"].as_array().unwrap();
    let windows = platforms
        .iter()
        .find(|p| p["platform"] == "win-x64")
        .unwrap();
    assert_eq!(windows["stageable"], false, "{run}");
    assert!(
        windows["missing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["fix"]
                .as_str()
                .unwrap()
                .contains("rustup target add x86_64-pc-windows-msvc")),
        "{run}"
    );
    if common::have_tool("go", "golang-go") {
        let linux = platforms
            .iter()
            .find(|p| p["platform"] == "linux-x64")
            .unwrap();
        assert_eq!(linux["stageable"], true, "{run}");
    }
    // Human: the same facts, one line each; `--json` is the JSON form.
    let human = repo.human(&["doctor"]);
    human.assert_code(0);
    assert!(human.stderr.contains("Found rust"), "{human}");
    assert!(
        human
            .stderr
            .contains("win-x64: the runtime cannot be built here"),
        "{human}"
    );
    let json = repo
        .command()
        .args(["doctor", "--message-format", "json"])
        .output()
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON object");
    assert_eq!(value["event"], "doctor");
}

/// Portable archives of a stage: tar.gz and zip with sorted entries, owners 0:0, modes 0755 or
/// 0644, every time SOURCE_DATE_EPOCH; two checkouts in different paths give the same bytes.
#[test]
fn stages_are_packaged_reproducibly_as_tar_gz_and_zip() {
    if !common::have_tool("go", "golang-go") {
        return;
    }
    let make = || {
        let repo = repo(&["linux-x64"], false);
        let toml = repo.read("bundle.toml");
        repo.write(
            "bundle.toml",
            toml.replace(
                "platforms = [",
                "formats = [\"tar.gz\", \"zip\"]\nplatforms = [",
            ),
        );
        repo
    };
    let (one, two) = (make(), make());
    let epoch = ("SOURCE_DATE_EPOCH", "1700000000");
    one.json_env(&["bundle"], &[epoch]).assert_code(0);
    two.json_env(&["bundle"], &[epoch]).assert_code(0);
    let tgz = "dist/app-desktop/packages/app-desktop-linux-x64.tar.gz";
    let zip = "dist/app-desktop/packages/app-desktop-linux-x64.zip";
    for archive in [tgz, zip] {
        assert!(
            one.read_bytes(archive) == two.read_bytes(archive),
            "{archive} differs between two checkouts"
        );
    }
    let bytes = one.read_bytes(tgz);
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header();
        let name = entry.path().unwrap().display().to_string();
        assert_eq!(header.mtime().unwrap(), 1_700_000_000, "{name}");
        assert_eq!(
            (header.uid().unwrap(), header.gid().unwrap()),
            (0, 0),
            "{name}"
        );
        let mode = header.mode().unwrap();
        if name.ends_with("bin/app-api/linux-x64/app-api")
            || name.ends_with("/runtime/xbundle-runtime")
        {
            assert_eq!(mode, 0o755, "{name}");
        } else if name.ends_with("bundle.json") {
            assert_eq!(mode, 0o644, "{name}");
        }
        names.push(name);
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are sorted");
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("app-desktop-linux-x64/")),
        "{names:?}"
    );
    assert!(
        names.contains(&"app-desktop-linux-x64/bundle.json".to_string()),
        "{names:?}"
    );
    // The zip says the same.
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(one.read_bytes(zip))).unwrap();
    let mut api = zip
        .by_name("app-desktop-linux-x64/bin/app-api/linux-x64/app-api")
        .unwrap();
    assert_eq!(api.unix_mode().map(|m| m & 0o777), Some(0o755));
    let time = api.last_modified().unwrap();
    assert_eq!((time.year(), time.month(), time.day()), (2023, 11, 14));
    let mut first = Vec::new();
    std::io::Read::read_to_end(&mut api, &mut first).unwrap();
    assert_eq!(
        first,
        one.read_bytes(&format!("{STAGE}/bin/app-api/linux-x64/app-api"))
    );
    drop(api);
    // Another SOURCE_DATE_EPOCH is another archive.
    let again = one.json_env(&["bundle"], &[("SOURCE_DATE_EPOCH", "1800000000")]);
    again.assert_code(0);
    assert!(
        ran(&again).contains("package:app-desktop@linux-x64:tar.gz"),
        "{again}"
    );
}

/// A link inside a UI directory is never followed into a bundle: the stage fails naming it, and
/// nothing of the link's target is shipped.
#[test]
fn a_link_inside_the_ui_is_refused_not_shipped() {
    if !common::have_tool("go", "golang-go") {
        return;
    }
    let repo = repo(&["linux-x64"], false);
    let secret = repo.sandbox().join("outside-secret.txt");
    std::fs::write(&secret, "not for the bundle\n").unwrap();
    std::os::unix::fs::symlink(&secret, repo.join("scenarios/app/ui/leak.txt")).unwrap();
    let run = repo.json(&["bundle"]);
    run.assert_code(1);
    let stage = run.task("stage:app-desktop@linux-x64");
    assert_eq!(stage["status"], "failed", "{run}");
    assert!(
        stage["error"]
            .as_str()
            .unwrap()
            .contains("scenarios/app/ui/leak.txt"),
        "{run}"
    );
    assert!(!repo.exists(&format!("{STAGE}/ui/app/leak.txt")));
}
