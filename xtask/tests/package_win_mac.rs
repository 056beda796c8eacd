//! The Windows and macOS installers through the real binary: a Go service cross-built for
//! win-x64 and darwin-arm64, a stand-in runtime for each (a `[runtime.<platform>]` file://
//! asset), then the msi (wixl) read back by `msiinfo` and the flat pkg read back by `bsdtar`;
//! two clean builds from two checkout paths give identical bytes; the msi without wixl is
//! reported with its fix, and `doctor` names wixl.
//!
//! Needs Go (golang-go), wixl and msiinfo (wixl, msitools) and bsdtar (libarchive-tools): when
//! missing, each test fails under `XBUNDLE_REQUIRE_TOOLS=1` (CI) and skips otherwise.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::Repo;

const SERVICE: &str = r#"{
  "service": {"name": "app", "version": "1.4.2-beta.1", "type": "scenario"},
  "ports": {"api": {"env_var": "API_PORT", "range": "15000-19999"}, "ui": {"env_var": "UI_PORT", "range": "35000-39999"}}
}"#;

const GO_MOD: &str = "module example.com/app/api\n\ngo 1.19\n";

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

const MSI: &str = "dist/app-desktop/packages/app-desktop-win-x64.msi";

fn platform_files() -> Vec<(String, String)> {
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

/// A repository whose profile ships `app` (a Go API, a static UI with an odd file name) for
/// win-x64 and darwin-arm64 as msi and pkg, with a stand-in runtime for each platform.
fn repo(installer: &str) -> Repo {
    let bundle = format!(
        "[workspace]\ndefault-profile = \"app-desktop\"\n\n[profiles.app-desktop]\nscenario = \"app\"\ntier = \"desktop\"\nplatforms = [\"win-x64\", \"darwin-arm64\"]\nformats = [\"msi\", \"pkg\"]\n\n[profiles.app-desktop.installer]\n{installer}\n"
    );
    let mut files = platform_files();
    for (path, text) in [
        ("scenarios/app/.vrooli/service.json", SERVICE),
        ("scenarios/app/api/go.mod", GO_MOD),
        ("scenarios/app/api/main.go", MAIN_GO),
        ("scenarios/app/ui/index.html", "<h1>app</h1>\n"),
        (
            "scenarios/app/ui/assets/$weird & (name) 'x'.txt",
            "odd but legal\n",
        ),
    ] {
        files.push((path.into(), text.into()));
    }
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let repo = Repo::in_sandbox(&bundle, &borrowed);
    let downloads = repo.sandbox().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let runtime = b"MZ a stand-in for the runtime\n".to_vec();
    std::fs::write(downloads.join("runtime"), &runtime).unwrap();
    let toml = repo.read("bundle.toml");
    let runtimes: String = ["win-x64", "darwin-arm64"]
        .iter()
        .map(|platform| {
            format!(
                "\n[runtime.{platform}]\nurl = \"file://{}\"\nsha256 = \"{}\"\n",
                downloads.join("runtime").display(),
                common::sha256_hex(&runtime)
            )
        })
        .collect();
    repo.write("bundle.toml", format!("{toml}{runtimes}"));
    repo
}

const INSTALLER: &str = "display-name = \"Notes & Co\"\nvendor = \"Example Corp\"\nidentifier = \"org.example.notes\"\ndescription = \"Takes notes\"\n";

fn tool(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("running {program}: {err}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// An `msiinfo export` table as rows of columns (the three header lines dropped).
fn table(msi: &Path, name: &str) -> Vec<Vec<String>> {
    tool("msiinfo", &["export", msi.to_str().unwrap(), name])
        .lines()
        .skip(3)
        .map(|line| line.split('\t').map(str::to_string).collect())
        .collect()
}

fn ran(run: &common::Run) -> Vec<String> {
    run.statuses()
        .into_iter()
        .filter(|(_, status)| status == "ran")
        .map(|(id, _)| id)
        .collect()
}

/// The msi lists its tables, the stage's files, the components and the Start-menu shortcut
/// that starts the runtime with `--open-ui`; its summary carries the epoch; the version is the
/// numeric form of the app's.
#[test]
fn the_msi_installs_the_stage_with_a_start_menu_shortcut() {
    if !common::have_tool("go", "golang-go")
        || !common::have_tool("wixl", "wixl")
        || !common::have_tool("msiinfo", "msitools")
    {
        return;
    }
    let repo = repo(INSTALLER);
    let run = repo.json_env(&["bundle"], &[("SOURCE_DATE_EPOCH", "1700000000")]);
    run.assert_code(0);
    assert_eq!(
        run.status("package:app-desktop@win-x64:msi"),
        "ran",
        "{run}"
    );
    let msi = repo.join(MSI);
    let tables = tool("msiinfo", &["tables", msi.to_str().unwrap()]);
    for name in [
        "File",
        "Component",
        "Directory",
        "Shortcut",
        "Feature",
        "Upgrade",
        "Media",
    ] {
        assert!(tables.lines().any(|l| l == name), "{name} in {tables}");
    }
    let files: BTreeMap<String, u64> = table(&msi, "File")
        .into_iter()
        .map(|row| (row[2].clone(), row[3].parse().unwrap()))
        .collect();
    let stage = "dist/app-desktop/stage/win-x64";
    for (name, path) in [
        ("bundle.json", "bundle.json"),
        ("xbundle-runtime.exe", "runtime/xbundle-runtime.exe"),
        ("app-api.exe", "bin/app-api/win-x64/app-api.exe"),
        ("index.html", "ui/app/index.html"),
        (
            "$weird & (name) 'x'.txt",
            "ui/app/assets/$weird & (name) 'x'.txt",
        ),
    ] {
        assert_eq!(
            files.get(name).copied(),
            Some(repo.read_bytes(&format!("{stage}/{path}")).len() as u64),
            "{name} in {files:?}"
        );
    }
    let components = table(&msi, "Component");
    assert_eq!(components.len(), files.len(), "{components:?}");
    let directories = table(&msi, "Directory");
    assert!(
        directories.iter().any(|row| row[0] == "INSTALLDIR"
            && row[1] == "ProgramFiles64Folder"
            && row[2] == "Notes & Co"),
        "{directories:?}"
    );
    let shortcuts = table(&msi, "Shortcut");
    assert_eq!(shortcuts.len(), 1, "{shortcuts:?}");
    let shortcut = &shortcuts[0];
    // Shortcut, Directory_, Name, Component_, Target, Arguments, …
    assert_eq!(shortcut[1], "ProgramMenuFolder", "{shortcut:?}");
    assert_eq!(shortcut[2], "Notes & Co", "{shortcut:?}");
    let runtime_file = table(&msi, "File")
        .into_iter()
        .find(|row| row[2] == "xbundle-runtime.exe")
        .unwrap();
    assert_eq!(shortcut[3], runtime_file[1], "the runtime's component");
    assert_eq!(
        shortcut[4],
        format!("[#{}]", runtime_file[0]),
        "{shortcut:?}"
    );
    assert_eq!(
        shortcut[5], "--bundle \"[INSTALLDIR].\" --open-ui",
        "{shortcut:?}"
    );
    let properties: BTreeMap<String, String> = table(&msi, "Property")
        .into_iter()
        .map(|row| (row[0].clone(), row[1].clone()))
        .collect();
    assert_eq!(properties["ProductVersion"], "1.4.2", "{properties:?}");
    assert_eq!(properties["Manufacturer"], "Example Corp");
    assert_eq!(properties["ProductName"], "Notes & Co");
    assert_eq!(properties["ALLUSERS"], "1");
    let upgrade = table(&msi, "Upgrade");
    assert!(
        upgrade
            .iter()
            .all(|row| row[0] == properties["UpgradeCode"]),
        "{upgrade:?}"
    );
    let summary = tool("msiinfo", &["suminfo", msi.to_str().unwrap()]);
    assert!(
        summary.contains("Created: Tue Nov 14 22:13:20 2023"),
        "{summary}"
    );
    assert!(summary.contains("Template: x64;1033"), "{summary}");
    // The package code is not wixl's random one: it is derived, so it is stable.
    let code = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("Revision number (UUID): "))
            .unwrap()
            .to_string()
    };
    let again = repo.copy_without_state();
    again
        .json_env(&["bundle"], &[("SOURCE_DATE_EPOCH", "1700000000")])
        .assert_code(0);
    let second = tool("msiinfo", &["suminfo", again.join(MSI).to_str().unwrap()]);
    assert_eq!(code(&summary), code(&second));
}

/// A PATH without wixl: planning does not fail, the platform is still staged and its other
/// formats made, and `bundle` reports the msi as unbuildable here with its fix; `doctor` lists
/// wixl and what it enables.
#[test]
fn without_wixl_the_msi_is_unbuildable_here_with_its_fix() {
    if !common::have_tool("go", "golang-go") {
        return;
    }
    let repo = repo(INSTALLER);
    let toml = repo.read("bundle.toml");
    repo.write(
        "bundle.toml",
        toml.replace(
            "formats = [\"msi\", \"pkg\"]",
            "formats = [\"msi\", \"zip\"]",
        ),
    );
    // A PATH of links to the tools the build needs, and no wixl.
    let bin = repo.sandbox().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for program in ["go", "cargo", "rustc", "sh", "git"] {
        if let Ok(output) = Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .output()
        {
            let found = String::from_utf8_lossy(&output.stdout).trim().to_string();
            if !found.is_empty() {
                std::os::unix::fs::symlink(found, bin.join(program)).unwrap();
            }
        }
    }
    let path = bin.display().to_string();
    let run = repo.json_env(&["bundle"], &[("PATH", &path)]);
    run.assert_code(0);
    let unbuildable = run.events("unbuildable");
    let msi = unbuildable
        .iter()
        .find(|event| event["platform"] == "win-x64")
        .unwrap_or_else(|| panic!("no unbuildable event for the msi: {run}"));
    assert_eq!(msi["staged"], true, "{run}");
    assert!(msi["what"].as_str().unwrap().contains("msi"), "{msi}");
    assert!(
        msi["fix"]
            .as_str()
            .unwrap()
            .contains("apt-get install wixl"),
        "{msi}"
    );
    assert_eq!(
        run.status("stage:app-desktop@win-x64"),
        "ran",
        "the platform is still staged: {run}"
    );
    assert_eq!(
        run.status("package:app-desktop@win-x64:zip"),
        "ran",
        "{run}"
    );
    assert!(!repo.exists(MSI));
    // Human output says the same, with the fix.
    let human = repo.human_env(&["bundle"], &[("PATH", &path)]);
    human.assert_code(0);
    assert!(
        human
            .stderr
            .contains("win-x64: the msi installer cannot be built here: `wixl` is not on PATH"),
        "{human}"
    );
    assert!(human.stderr.contains("apt-get install wixl"), "{human}");
    // doctor names wixl, what it enables, and the msi it cannot make here.
    let doctor = repo.json_env(&["doctor"], &[("PATH", &path)]);
    doctor.assert_code(0);
    let event = &doctor.events("doctor")[0];
    let wixl = event["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|tool| tool["name"] == "wixl")
        .unwrap_or_else(|| panic!("wixl in {doctor}"));
    assert_eq!(wixl["found"], false, "{doctor}");
    assert!(wixl["enables"].as_str().unwrap().contains(".msi"), "{wixl}");
    let windows = event["profiles"][0]["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["platform"] == "win-x64")
        .unwrap();
    assert_eq!(windows["stageable"], true, "{doctor}");
    assert!(
        windows["missing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["fix"].as_str().unwrap().contains("apt-get install wixl")),
        "{doctor}"
    );
    // With wixl back on PATH the msi is planned again (and made, when it is installed).
    if common::have_tool("wixl", "wixl") {
        let run = repo.json(&["bundle"]);
        run.assert_code(0);
        assert!(
            ran(&run).contains(&"package:app-desktop@win-x64:msi".to_string()),
            "{run}"
        );
        assert!(repo.exists(MSI));
    }
}
