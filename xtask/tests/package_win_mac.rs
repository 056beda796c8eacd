//! The Windows and macOS installers through the real binary: a Go service cross-built for
//! win-x64 and darwin-arm64, a stand-in runtime for each (a `[runtime.<platform>]` file://
//! asset), then the msi (wixl) read back by `msiinfo` and the flat pkg read back by `bsdtar`;
//! two clean builds from two checkout paths give identical bytes; the msi without wixl is
//! reported with its fix, and `doctor` names wixl.
//!
//! Needs Go (golang-go), wixl and msiinfo (wixl, msitools) and bsdtar (libarchive-tools): when
//! missing, each test fails under `XBUNDLE_REQUIRE_TOOLS=1` (CI) and skips otherwise.

use crate::common;

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

const PKG: &str = "dist/app-desktop/packages/app-desktop-darwin-arm64.pkg";

/// One odc cpio entry: (name, mode, uid, gid, nlink, mtime, data).
type OdcEntry = (String, u32, u32, u32, u32, u64, Vec<u8>);

/// Reads an odc cpio archive by hand (an independent reader, not the writer's crate).
fn read_odc(bytes: &[u8]) -> Vec<OdcEntry> {
    let octal = |field: &[u8]| u64::from_str_radix(std::str::from_utf8(field).unwrap(), 8).unwrap();
    let mut entries = Vec::new();
    let mut at = 0;
    loop {
        let header = &bytes[at..at + 76];
        assert_eq!(&header[..6], b"070707", "odc magic at {at}");
        let mode = octal(&header[18..24]) as u32;
        let uid = octal(&header[24..30]) as u32;
        let gid = octal(&header[30..36]) as u32;
        let nlink = octal(&header[36..42]) as u32;
        let mtime = octal(&header[48..59]);
        let name_len = octal(&header[59..65]) as usize;
        let size = octal(&header[65..76]) as usize;
        let name = String::from_utf8(bytes[at + 76..at + 76 + name_len - 1].to_vec()).unwrap();
        let data = bytes[at + 76 + name_len..at + 76 + name_len + size].to_vec();
        at += 76 + name_len + size;
        if name == "TRAILER!!!" {
            assert!(bytes[at..].iter().all(|b| *b == 0), "zero padding");
            assert_eq!(bytes.len() % 512, 0, "padded to 512 bytes");
            return entries;
        }
        entries.push((name, mode, uid, gid, nlink, mtime, data));
    }
}

/// The pkg is a xar that bsdtar reads: Distribution, PackageInfo, Bom and a Payload listing the
/// app bundle (Info.plist, the launcher, the stage) with modes, owners 0:0 and the epoch; the
/// XML documents are well formed and name the identifier and version; the Bom lists the same
/// paths; the extracted launcher starts the runtime on the bundle with `--open-ui`.
#[test]
fn the_pkg_holds_an_app_bundle_that_bsdtar_reads() {
    if !common::have_tool("go", "golang-go") || !common::have_tool("bsdtar", "libarchive-tools") {
        return;
    }
    let repo = repo(INSTALLER);
    let run = repo.json_env(&["bundle"], &[("SOURCE_DATE_EPOCH", "1700000000")]);
    run.assert_code(0);
    assert_eq!(
        run.status("package:app-desktop@darwin-arm64:pkg"),
        "ran",
        "{run}"
    );
    let pkg = repo.join(PKG);
    let listing = tool("bsdtar", &["-tf", pkg.to_str().unwrap()]);
    let names: Vec<&str> = listing.lines().collect();
    for name in [
        "Distribution",
        "app.pkg/PackageInfo",
        "app.pkg/Bom",
        "app.pkg/Payload",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let out = repo.sandbox().join("expanded");
    std::fs::create_dir_all(&out).unwrap();
    tool(
        "bsdtar",
        &["-xf", pkg.to_str().unwrap(), "-C", out.to_str().unwrap()],
    );
    // PackageInfo and Distribution: well-formed XML naming the identifier and the version.
    for (file, root) in [
        ("app.pkg/PackageInfo", "pkg-info"),
        ("Distribution", "installer-gui-script"),
    ] {
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        let mut reader = quick_xml::Reader::from_str(&text);
        let mut elements = Vec::new();
        let mut attributes = Vec::new();
        loop {
            match reader
                .read_event()
                .unwrap_or_else(|err| panic!("{file}: {err}\n{text}"))
            {
                quick_xml::events::Event::Eof => break,
                quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                    elements.push(String::from_utf8(e.name().as_ref().to_vec()).unwrap());
                    for attribute in e.attributes() {
                        let attribute = attribute.unwrap();
                        attributes.push((
                            String::from_utf8(attribute.key.as_ref().to_vec()).unwrap(),
                            quick_xml::escape::unescape(
                                std::str::from_utf8(&attribute.value).unwrap(),
                            )
                            .unwrap()
                            .into_owned(),
                        ));
                    }
                }
                _ => {}
            }
        }
        assert_eq!(elements[0], root, "{file}");
        let has = |key: &str, value: &str| attributes.iter().any(|(k, v)| k == key && v == value);
        assert!(
            has("identifier", "org.example.notes") || has("id", "org.example.notes"),
            "{file}: {attributes:?}"
        );
        assert!(has("version", "1.4.2-beta.1"), "{file}: {attributes:?}");
    }
    let distribution = std::fs::read_to_string(out.join("Distribution")).unwrap();
    assert!(
        distribution.contains("<title>Notes &amp; Co</title>"),
        "{distribution}"
    );
    assert!(
        distribution.contains("hostArchitectures=\"arm64\""),
        "{distribution}"
    );
    let package_info = std::fs::read_to_string(out.join("app.pkg/PackageInfo")).unwrap();
    assert!(
        package_info.contains("install-location=\"/Applications\""),
        "{package_info}"
    );

    // The payload, through bsdtar: the expected files with their modes.
    let payload = out.join("app.pkg/Payload");
    let verbose = tool("bsdtar", &["-tvf", payload.to_str().unwrap()]);
    let app = "./Notes & Co.app/Contents";
    let stage = "dist/app-desktop/stage/darwin-arm64";
    for (path, mode) in [
        (format!("{app}/Info.plist"), "-rw-r--r--"),
        (format!("{app}/MacOS/app"), "-rwxr-xr-x"),
        (format!("{app}/Resources/app/bundle.json"), "-rw-r--r--"),
        (
            format!("{app}/Resources/app/runtime/xbundle-runtime"),
            "-rwxr-xr-x",
        ),
        (
            format!("{app}/Resources/app/bin/app-api/darwin-arm64/app-api"),
            "-rwxr-xr-x",
        ),
        (
            format!("{app}/Resources/app/ui/app/assets/$weird & (name) 'x'.txt"),
            "-rw-r--r--",
        ),
        (format!("{app}/Resources/app/ui"), "drwxr-xr-x"),
    ] {
        assert!(
            verbose
                .lines()
                .any(|line| line.starts_with(mode) && line.ends_with(&path)),
            "{path} ({mode}) in\n{verbose}"
        );
    }
    // The payload by hand: sorted, owners 0:0, every time the epoch, the bytes of the stage.
    let mut gz = flate2::read::GzDecoder::new(std::fs::File::open(&payload).unwrap());
    let mut cpio = Vec::new();
    std::io::Read::read_to_end(&mut gz, &mut cpio).unwrap();
    let entries = read_odc(&cpio);
    assert_eq!(entries[0].0, ".");
    let names: Vec<&String> = entries.iter().map(|e| &e.0).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "sorted entries");
    for (name, _, uid, gid, _, mtime, _) in &entries {
        assert_eq!((*uid, *gid, *mtime), (0, 0, 1_700_000_000), "{name}");
    }
    let bundle_json = entries
        .iter()
        .find(|e| e.0 == format!("{app}/Resources/app/bundle.json"))
        .unwrap();
    assert_eq!(
        bundle_json.6,
        repo.read_bytes(&format!("{stage}/bundle.json"))
    );
    assert_eq!(bundle_json.1, 0o100_644);
    let plist = entries
        .iter()
        .find(|e| e.0 == format!("{app}/Info.plist"))
        .unwrap();
    let plist = String::from_utf8(plist.6.clone()).unwrap();
    assert!(
        plist.contains("<key>CFBundleIdentifier</key>\n\t<string>org.example.notes</string>"),
        "{plist}"
    );
    assert!(
        plist.contains("<key>CFBundleExecutable</key>\n\t<string>app</string>"),
        "{plist}"
    );
    // The Bom lists the same paths, owned by 0:0, with the same modes.
    let bom = std::fs::read(out.join("app.pkg/Bom")).unwrap();
    let bom = apple_bom::ParsedBom::parse(&bom).unwrap();
    let paths: BTreeMap<String, (u16, u32, u32)> = bom
        .paths()
        .unwrap()
        .into_iter()
        .map(|p| {
            (
                p.path().to_string(),
                (p.file_mode(), p.user_id(), p.group_id()),
            )
        })
        .collect();
    for (name, mode, ..) in &entries {
        let mode = (*mode & 0o177_777) as u16;
        assert_eq!(
            paths.get(name.as_str()).copied(),
            Some((mode, 0, 0)),
            "{name} in the Bom: {paths:?}"
        );
    }
    // The launcher, extracted, finds the runtime inside the app bundle and passes --open-ui.
    let installed = repo.sandbox().join("Applications");
    std::fs::create_dir_all(&installed).unwrap();
    tool(
        "bsdtar",
        &[
            "-xf",
            payload.to_str().unwrap(),
            "-C",
            installed.to_str().unwrap(),
        ],
    );
    let resources = installed.join("Notes & Co.app/Contents/Resources/app");
    std::fs::write(
        resources.join("runtime/xbundle-runtime"),
        "#!/bin/sh\nprintf '%s\\n' \"$@\"\n",
    )
    .unwrap();
    let output = Command::new(installed.join("Notes & Co.app/Contents/MacOS/app"))
        .arg("--no-browser")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!(
            "--bundle\n{}\n--open-ui\n--no-browser\n",
            resources.canonicalize().unwrap().display()
        )
    );
}

/// Two clean builds of the same profile from two checkout paths give byte-identical msi and
/// pkg files (wixl's random package code and clock times are rewritten), another epoch gives
/// other bytes, and a no-op `bundle` runs no `wixl` (its probe is cached).
#[test]
fn two_clean_builds_give_identical_msi_and_pkg_bytes() {
    if !common::have_tool("go", "golang-go") || !common::have_tool("wixl", "wixl") {
        return;
    }
    let one = repo(INSTALLER);
    // The second checkout lives at another, longer path.
    let two = {
        let repo = repo(INSTALLER);
        let moved = repo.sandbox().join("a much longer checkout path");
        std::fs::create_dir_all(&moved).unwrap();
        common::copy_tree(repo.path(), &moved);
        (repo, moved)
    };
    // A wixl that logs its calls before running the real one.
    let wrappers = one.sandbox().join("wrappers");
    std::fs::create_dir_all(&wrappers).unwrap();
    let log = one.sandbox().join("wixl.log");
    let real = Command::new("sh")
        .args(["-c", "command -v wixl"])
        .output()
        .unwrap();
    let real = String::from_utf8_lossy(&real.stdout).trim().to_string();
    let script = wrappers.join("wixl");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"wixl $*\" >> '{}'\nexec '{real}' \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", wrappers.display(), std::env::var("PATH").unwrap());
    let epoch = ("SOURCE_DATE_EPOCH", "1700000000");
    one.json_env(&["bundle"], &[epoch, ("PATH", &path)])
        .assert_code(0);
    let mut second = Command::new(common::BIN);
    second
        .current_dir(&two.1)
        .args([
            "--root",
            two.1.to_str().unwrap(),
            "--message-format",
            "json",
            "bundle",
        ])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("NO_COLOR", "1");
    let output = second.output().unwrap();
    assert!(output.status.success(), "{output:?}");
    for artifact in [MSI, PKG] {
        let (a, b) = (
            one.read_bytes(artifact),
            std::fs::read(two.1.join(artifact)).unwrap(),
        );
        assert!(!a.is_empty(), "{artifact}");
        assert!(a == b, "{artifact} differs between two checkouts");
    }
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls.lines().filter(|l| l.contains(" -o ")).count(),
        1,
        "{calls}"
    );
    // A no-op runs nothing and asks wixl nothing, not even its version.
    let noop = one.json_env(&["bundle"], &[epoch, ("PATH", &path)]);
    noop.assert_code(0);
    assert_eq!(ran(&noop), Vec::<String>::new(), "{noop}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        calls,
        "a no-op ran wixl"
    );
    // Another epoch is other bytes (the times are in the artifacts).
    let again = one.json_env(&["bundle"], &[("SOURCE_DATE_EPOCH", "1800000000")]);
    again.assert_code(0);
    for artifact in [MSI, PKG] {
        assert!(
            one.read_bytes(artifact) != std::fs::read(two.1.join(artifact)).unwrap(),
            "{artifact} ignores SOURCE_DATE_EPOCH"
        );
    }
}

/// What an msi cannot carry fails the msi task alone, naming it and what to do, and leaves no
/// msi; the pkg of the same profile (UTF-8 throughout) is still made.
#[test]
fn what_an_msi_cannot_carry_fails_the_msi_alone_with_the_reason() {
    if !common::have_tool("go", "golang-go") || !common::have_tool("wixl", "wixl") {
        return;
    }
    // A file name Windows cannot hold.
    let colon = repo(INSTALLER);
    colon.write("scenarios/app/ui/notes:today.txt", "colon\n");
    let run = colon.json(&["bundle"]);
    run.assert_code(1);
    assert_eq!(
        run.status("package:app-desktop@win-x64:msi"),
        "failed",
        "{run}"
    );
    let failure = run.task("package:app-desktop@win-x64:msi").to_string();
    assert!(failure.contains("notes:today.txt"), "{failure}");
    assert!(
        failure.contains("cannot be installed by an msi"),
        "{failure}"
    );
    assert!(!colon.exists(MSI));
    assert_eq!(
        run.status("package:app-desktop@darwin-arm64:pkg"),
        "ran",
        "{run}"
    );
    // A display name outside Windows-1252, and a version MSI cannot order.
    for (installer, expected) in [
        (INSTALLER.replace("Notes & Co", "ノート"), "Windows-1252"),
        (INSTALLER.to_string(), "cannot be an msi ProductVersion"),
    ] {
        let repo = repo(&installer);
        if expected.contains("ProductVersion") {
            let toml = repo.read("bundle.toml");
            repo.write(
                "bundle.toml",
                toml.replace(
                    "tier = \"desktop\"",
                    "tier = \"desktop\"\nversion = \"300.1.0\"",
                ),
            );
        }
        let run = repo.json(&["bundle"]);
        run.assert_code(1);
        let failure = run.task("package:app-desktop@win-x64:msi").to_string();
        assert!(failure.contains(expected), "{failure}");
        assert!(!repo.exists(MSI));
        assert_eq!(
            run.status("package:app-desktop@darwin-arm64:pkg"),
            "ran",
            "{run}"
        );
    }
}
