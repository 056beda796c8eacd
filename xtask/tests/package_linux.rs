//! deb and rpm installers through the real binary, read back by Debian's and Red Hat's own
//! tools: `dpkg-deb --info`/`--contents` and `lintian` accept the deb, `rpm -qip`/`-qlp`/`-K`
//! the rpm; the deb extracted with `dpkg -x` runs the app through its launcher (the runtime
//! serves the UI and the Go API over HTTP, then stops cleanly on SIGTERM); two clean builds
//! give the same bytes and `SOURCE_DATE_EPOCH` sets the dates; installer settings are checked
//! at load time; a format is planned only where it applies.
//!
//! Needs Go (Debian: golang-go), dpkg-deb (dpkg), lintian and rpm: when missing, each test
//! fails under `XBUNDLE_REQUIRE_TOOLS=1` (CI) and skips otherwise.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Repo;

const SERVICE: &str = r#"{
  "service": {"name": "app", "version": "1.2.0-beta", "type": "scenario"},
  "ports": {"api": {"env_var": "API_PORT", "range": "15000-19999"}, "ui": {"env_var": "UI_PORT", "range": "35000-39999"}}
}"#;

const GO_MOD: &str = "module example.com/app/api\n\ngo 1.19\n";

/// The demo API: a health check and a greeting under `/api` (the UI proxies `/api/…`, path
/// unchanged).
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
	http.HandleFunc("/api/hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"greeting":"hello from the packaged api"}`)
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("API_PORT"), nil); err != nil {
		os.Exit(1)
	}
}
"#;

const INDEX_HTML: &str = "<!doctype html><title>App</title><h1>the packaged ui</h1>\n";

/// A UI file whose installed path is longer than a tar header's 100 bytes.
const LONG_UI_FILE: &str = "assets/a-directory-name-long-enough-to-need-a-gnu-long-name-entry-in-the-tar-stream/and-a-script-too.js";

const EPOCH: &str = "1700000000"; // 2023-11-14T22:13:20Z

const DEB: &str = "dist/app-desktop/packages/app-desktop-linux-x64.deb";
const RPM: &str = "dist/app-desktop/packages/app-desktop-linux-x64.rpm";

/// The installer settings the acceptance tests use.
const INSTALLER: &str = "[profiles.app-desktop.installer]\nname = \"notes-app\"\ndisplay-name = \"Notes\"\ndescription = \"Take notes on this computer. Everything stays local.\"\nmaintainer = \"Notes team <notes@example.org>\"\nvendor = \"Example Org\"\nhomepage = \"https://example.org/notes\"\nlicense = \"MIT\"\ncategory = \"Office;\"\ndepends = [\"xdg-utils\"]\nrequires = [\"xdg-utils >= 1.1\"]\n";

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

/// A repository at `<sandbox>/repo` with one scenario `app` (a Go API and a static UI) and the
/// profile `app-desktop` for `platforms`, with `profile_extra` lines (formats…) and `tail`
/// (more tables) in bundle.toml.
fn app_repo(platforms: &[&str], profile_extra: &str, tail: &str) -> Repo {
    let list: Vec<String> = platforms.iter().map(|p| format!("\"{p}\"")).collect();
    let bundle = format!(
        "[workspace]\ndefault-profile = \"app-desktop\"\n\n[profiles.app-desktop]\nscenario = \"app\"\ntier = \"desktop\"\nplatforms = [{}]\n{profile_extra}\n{tail}",
        list.join(", ")
    );
    let mut files = platform_files();
    for (path, text) in [
        ("scenarios/app/.vrooli/service.json", SERVICE),
        ("scenarios/app/api/go.mod", GO_MOD),
        ("scenarios/app/api/main.go", MAIN_GO),
        ("scenarios/app/ui/index.html", INDEX_HTML),
        (
            &format!("scenarios/app/ui/{LONG_UI_FILE}"),
            "console.log(\"long\");\n",
        ),
    ] {
        files.push((path.into(), text.into()));
    }
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    Repo::in_sandbox(&bundle, &borrowed)
}

/// The acceptance repository: deb and rpm of `notes-app`, built with SOURCE_DATE_EPOCH.
fn built(epoch: &str) -> Repo {
    let repo = app_repo(&["linux-x64"], "formats = [\"deb\", \"rpm\"]\n", INSTALLER);
    let run = repo.json_env(&["bundle"], &[("SOURCE_DATE_EPOCH", epoch)]);
    run.assert_code(0);
    assert!(repo.exists(DEB) && repo.exists(RPM), "{run}");
    repo
}

/// Runs `program args` (the artifact path appended), which must succeed; its stdout.
#[track_caller]
fn tool(program: &str, args: &[&str], artifact: &Path) -> String {
    let output = Command::new(program)
        .args(args)
        .arg(artifact)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("run {program}: {err}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn have_deb_tools() -> bool {
    common::have_tool("go", "golang-go")
        && common::have_tool("dpkg-deb", "dpkg")
        && common::have_tool("lintian", "lintian")
}

/// One line of `dpkg-deb --contents`: mode, owner, size, date, name.
struct Listed {
    mode: String,
    owner: String,
    date: String,
    name: String,
}

fn contents(deb: &Path) -> Vec<Listed> {
    tool("dpkg-deb", &["--contents"], deb)
        .lines()
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            assert!(words.len() >= 6, "a contents line: {line}");
            Listed {
                mode: words[0].to_string(),
                owner: words[1].to_string(),
                date: words[3].to_string(),
                name: words[5..].join(" "),
            }
        })
        .collect()
}

/// `dpkg-deb --info` and `--contents` accept the deb: the control file says what bundle.toml
/// and bundle.json say, every entry is `./`-prefixed, sorted, owned by root with a fixed mode
/// and dated by SOURCE_DATE_EPOCH, and the layout is the app under /opt with a launcher, a
/// manual page, a desktop entry, an icon, a copyright file and a changelog; no maintainer
/// script. lintian reports no error.
#[test]
fn dpkg_deb_and_lintian_accept_the_deb() {
    if !have_deb_tools() {
        return;
    }
    let repo = built(EPOCH);
    let deb = repo.join(DEB);
    let info = tool("dpkg-deb", &["--info"], &deb);
    for line in [
        " Package: notes-app\n",
        // bundle.json's version, with the semver pre-release written the Debian way.
        " Version: 1.2.0~beta\n",
        " Architecture: amd64\n",
        " Maintainer: Notes team <notes@example.org>\n",
        " Section: text\n",
        " Priority: optional\n",
        " Homepage: https://example.org/notes\n",
        " Description: Take notes on this computer\n",
    ] {
        assert!(info.contains(line), "{line:?} in\n{info}");
    }
    let depends = info
        .lines()
        .find_map(|l| l.strip_prefix(" Depends: "))
        .unwrap_or_else(|| panic!("a Depends line in\n{info}"));
    // The profile's entry, and glibc because the staged runtime is linked against it.
    assert!(depends.starts_with("xdg-utils, libc6 (>= 2."), "{depends}");
    let size: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix(" Installed-Size: "))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("a numeric Installed-Size in\n{info}"));
    let stage_kib =
        std::fs::metadata(repo.join("dist/app-desktop/stage/linux-x64/runtime/xbundle-runtime"))
            .unwrap()
            .len()
            / 1024;
    assert!(size > stage_kib, "Installed-Size {size} KiB");
    // The control member holds the control file only: no maintainer scripts.
    let members: Vec<&str> = info
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()) && l.contains(" bytes,"))
        .collect();
    assert_eq!(
        members.len(),
        1,
        "one member in the control archive:\n{info}"
    );
    assert!(members[0].ends_with(" control"), "{info}");

    let listed = contents(&deb);
    let names: Vec<&str> = listed.iter().map(|l| l.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are sorted");
    assert_eq!(names[0], "./");
    for entry in &listed {
        assert!(entry.name.starts_with("./"), "{}", entry.name);
        assert_eq!(entry.owner, "root/root", "{}", entry.name);
        assert_eq!(entry.date, "2023-11-14", "{}", entry.name);
        let want = if entry.name.ends_with('/') {
            "drwxr-xr-x"
        } else if [
            "./usr/bin/notes-app",
            "./opt/notes-app/runtime/xbundle-runtime",
            "./opt/notes-app/bin/app-api/linux-x64/app-api",
        ]
        .contains(&entry.name.as_str())
        {
            "-rwxr-xr-x"
        } else {
            "-rw-r--r--"
        };
        assert_eq!(entry.mode, want, "{}", entry.name);
    }
    for expected in [
        "./opt/",
        "./opt/notes-app/",
        "./opt/notes-app/bundle.json",
        "./opt/notes-app/runtime/xbundle-runtime",
        "./opt/notes-app/bin/app-api/linux-x64/app-api",
        "./opt/notes-app/ui/app/index.html",
        "./usr/bin/notes-app",
        "./usr/share/applications/notes-app.desktop",
        "./usr/share/icons/hicolor/scalable/apps/notes-app.svg",
        "./usr/share/man/man1/notes-app.1.gz",
        "./usr/share/doc/notes-app/copyright",
        "./usr/share/doc/notes-app/changelog.gz",
        &format!("./opt/notes-app/ui/app/{LONG_UI_FILE}"),
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    // Directories once each.
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "no entry twice");

    // lintian: no error. (Warnings and the package's own overrides are allowed.)
    let output = Command::new("lintian")
        .arg("--allow-root")
        .arg(&deb)
        .stdin(Stdio::null())
        .output()
        .expect("run lintian");
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(
        errors.is_empty(),
        "lintian errors:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // lintian exits 0 when it found no error (and 2 when it could not read the package).
    assert!(output.status.success(), "lintian failed:\n{report}");
    assert!(
        !report.contains("malformed-deb-archive"),
        "lintian read the archive: {report}"
    );
}

/// `rpm -qip`, `-qlp` and `-K` accept the rpm: its metadata, every file with its mode and root
/// as owner, only the app's own directories, the profile's requires and glibc's.
#[test]
fn rpm_reads_the_rpm() {
    if !common::have_tool("go", "golang-go") || !common::have_tool("rpm", "rpm") {
        return;
    }
    let repo = built(EPOCH);
    let rpm = repo.join(RPM);
    let info = tool("rpm", &["-qip"], &rpm);
    for (field, value) in [
        ("Name", "notes-app"),
        ("Version", "1.2.0~beta"),
        ("Release", "1"),
        ("Architecture", "x86_64"),
        ("License", "MIT"),
        ("Vendor", "Example Org"),
        ("URL", "https://example.org/notes"),
        ("Packager", "Notes team <notes@example.org>"),
        ("Summary", "Take notes on this computer"),
        ("Build Date", "Tue Nov 14 22:13:20 2023"),
    ] {
        let found = info
            .lines()
            .find_map(|line| {
                let (key, rest) = line.split_once(':')?;
                (key.trim() == field).then(|| rest.trim().to_string())
            })
            .unwrap_or_else(|| panic!("{field} in\n{info}"));
        assert_eq!(found, value, "{field}\n{info}");
    }
    assert!(info.contains("Everything stays local."), "{info}");

    let listed = tool("rpm", &["-qlp"], &rpm);
    let files: Vec<&str> = listed.lines().collect();
    for expected in [
        "/opt/notes-app",
        "/opt/notes-app/bundle.json",
        "/opt/notes-app/runtime/xbundle-runtime",
        "/opt/notes-app/bin/app-api/linux-x64/app-api",
        "/opt/notes-app/ui/app/index.html",
        "/usr/bin/notes-app",
        "/usr/share/applications/notes-app.desktop",
        "/usr/share/icons/hicolor/scalable/apps/notes-app.svg",
        "/usr/share/man/man1/notes-app.1.gz",
        "/usr/share/doc/notes-app/copyright",
        &format!("/opt/notes-app/ui/app/{LONG_UI_FILE}"),
    ] {
        assert!(files.contains(&expected), "{expected} in {files:?}");
    }
    // The system's directories are not the package's.
    for system in ["/opt", "/usr", "/usr/bin", "/usr/share/applications"] {
        assert!(!files.contains(&system), "{system} is not owned: {files:?}");
    }

    let modes = tool(
        "rpm",
        &[
            "-qp",
            "--qf",
            "[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEMTIMES} %{FILENAMES}\n]",
        ],
        &rpm,
    );
    for line in modes.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (mode, owner, mtime, name) = (words[0], words[1], words[2], words[3]);
        assert_eq!(owner, "root:root", "{line}");
        assert_eq!(mtime, EPOCH, "{line}");
        let want = if mode.starts_with('d') {
            "drwxr-xr-x"
        } else if name == "/usr/bin/notes-app"
            || name.ends_with("/xbundle-runtime")
            || name.ends_with("/app-api")
        {
            "-rwxr-xr-x"
        } else {
            "-rw-r--r--"
        };
        assert_eq!(mode, want, "{line}");
    }

    // The manual page is documentation, the copyright file the license.
    assert_eq!(
        tool("rpm", &["-qdp"], &rpm).trim(),
        "/usr/share/man/man1/notes-app.1.gz"
    );
    assert_eq!(
        tool("rpm", &["-qLp"], &rpm).trim(),
        "/usr/share/doc/notes-app/copyright"
    );
    let requires = tool("rpm", &["-qp", "--requires"], &rpm);
    assert!(requires.contains("xdg-utils >= 1.1"), "{requires}");
    assert!(requires.contains("libc.so.6(GLIBC_2."), "{requires}");
    // The digests rpm keeps of the header and the payload hold.
    let checked = tool("rpm", &["-Kv"], &rpm);
    assert!(
        checked.contains("Header SHA256 digest: OK")
            && checked.contains("Payload SHA256 digest: OK"),
        "{checked}"
    );
}

/// One HTTP/1.0 GET: status and body.
fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no head end in {response:?}")))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    Ok((status, body.to_owned()))
}

/// The launcher's process, killed and reaped if the test fails before it stops it.
struct Launched(std::process::Child);

impl Drop for Launched {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The deb extracted with `dpkg -x` into a temporary root: its launcher, started with
/// `--no-browser` and a home in the sandbox, brings the app up; the UI is served and the Go
/// API answers through it; SIGTERM stops it cleanly, its services with it. The app's data is
/// in the sandbox's home. Installed with `dpkg -i --root` and removed with `dpkg -r`, the
/// package leaves nothing and the user's data stays. The canary beside the repository is
/// untouched.
#[test]
fn the_extracted_deb_runs_the_app_through_its_launcher() {
    if !have_deb_tools() || !common::have_tool("dpkg", "dpkg") {
        return;
    }
    let repo = built(EPOCH);
    let canary = common::Canary::plant(&repo.sandbox().join("canary"), &[]);
    let root = repo.sandbox().join("installed root");
    let home = repo.sandbox().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let extracted = Command::new("dpkg")
        .arg("-x")
        .arg(repo.join(DEB))
        .arg(&root)
        .output()
        .expect("run dpkg -x");
    assert!(extracted.status.success(), "{extracted:?}");
    let launcher = root.join("usr/bin/notes-app");
    let child = Command::new(&launcher)
        .arg("--no-browser")
        .env("HOME", &home)
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_STATE_HOME", home.join(".local/state"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env_remove("XBUNDLE_BROWSER")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the launcher");
    let mut launched = Launched(child);
    // Read the runtime's stderr in a thread (so it never blocks on a full pipe), passing on
    // the UI's address.
    let stderr = launched.0.stderr.take().expect("stderr");
    let (sender, receiver) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = sender.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    let port: u16 = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if let Some(url) = line.strip_prefix("xbundle-runtime: UI at http://127.0.0.1:") {
                    break url.trim_end_matches('/').parse().expect("a port");
                }
            }
            Err(_) => panic!("the runtime did not say where its UI is within 60 s:\n{seen}"),
        }
    };
    // dpkg read the long name whole.
    assert_eq!(
        std::fs::read_to_string(root.join(format!("opt/notes-app/ui/app/{LONG_UI_FILE}"))).unwrap(),
        "console.log(\"long\");\n"
    );
    let (status, page) = get(port, "/").expect("GET /");
    assert_eq!((status, page.as_str()), (200, INDEX_HTML));
    let (status, body) = get(port, "/api/hello").expect("GET /api/hello");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, r#"{"greeting":"hello from the packaged api"}"#);
    let ports: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(home.join(".local/share/app/runtime/ports.json"))
            .expect("the runtime's port file in the sandbox's home"),
    )
    .unwrap();
    let api_port = ports["app-api"]["api"].as_u64().expect("the API's port") as u16;

    // SIGTERM (what a desktop session or `kill` sends) stops the app and its services.
    // SAFETY: kill(2) on the child this test started (the launcher execs the runtime).
    unsafe {
        libc::kill(launched.0.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = launched.0.try_wait().expect("poll") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the app did not stop within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = reader.join().expect("the stderr reader");
    assert!(status.success(), "the app stopped with {status}:\n{log}");
    assert!(log.contains("stopping"), "{log}");
    assert!(
        TcpStream::connect(("127.0.0.1", api_port)).is_err(),
        "the API service stopped with the app"
    );
    canary.assert_intact("running the extracted package");

    // Installed and removed by dpkg in a root of its own: removing leaves nothing of the
    // package, and the user's data (in the home) stays.
    let dpkg_root = repo.sandbox().join("dpkg root");
    std::fs::create_dir_all(dpkg_root.join("var/lib/dpkg/info")).unwrap();
    std::fs::create_dir_all(dpkg_root.join("var/lib/dpkg/updates")).unwrap();
    std::fs::write(dpkg_root.join("var/lib/dpkg/status"), "").unwrap();
    let log = repo.sandbox().join("dpkg.log");
    let dpkg = |args: &[&str]| {
        let output = Command::new("dpkg")
            .arg("--root")
            .arg(&dpkg_root)
            .arg(format!("--log={}", log.display()))
            // The fake root has no libc6 to satisfy Depends.
            .arg("--force-depends")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run dpkg");
        assert!(output.status.success(), "dpkg {args:?}: {output:?}");
    };
    dpkg(&["-i", repo.join(DEB).to_str().unwrap()]);
    assert!(dpkg_root.join("usr/bin/notes-app").is_file());
    assert!(dpkg_root.join("opt/notes-app/bundle.json").is_file());
    let data = common::full_snapshot(&home);
    assert!(!data.is_empty(), "the app wrote its data in the home");
    dpkg(&["-r", "notes-app"]);
    for gone in [
        "opt/notes-app",
        "usr/bin/notes-app",
        "usr/share/doc/notes-app",
    ] {
        assert!(!dpkg_root.join(gone).exists(), "{gone} was removed");
    }
    assert_eq!(
        common::full_snapshot(&home),
        data,
        "the user's data is left alone"
    );
    canary.assert_intact("installing and removing the package");
}

/// Two clean builds of the same profile in two checkouts give the same deb and rpm, byte for
/// byte; another SOURCE_DATE_EPOCH re-packages with its dates (dpkg-deb shows them).
#[test]
fn packages_are_reproducible_and_dated_by_source_date_epoch() {
    if !have_deb_tools() {
        return;
    }
    let (one, two) = (built(EPOCH), built(EPOCH));
    for artifact in [DEB, RPM] {
        assert!(
            one.read_bytes(artifact) == two.read_bytes(artifact),
            "{artifact} differs between two clean builds"
        );
    }
    let dates = |repo: &Repo| -> Vec<String> {
        let mut dates: Vec<String> = contents(&repo.join(DEB))
            .into_iter()
            .map(|entry| entry.date)
            .collect();
        dates.dedup();
        dates
    };
    assert_eq!(dates(&one), ["2023-11-14"]);
    let later = one.json_env(&["bundle"], &[("SOURCE_DATE_EPOCH", "1750000000")]);
    later.assert_code(0);
    assert_eq!(
        later.status("package:app-desktop@linux-x64:deb"),
        "ran",
        "{later}"
    );
    assert_eq!(dates(&one), ["2025-06-15"]);
    assert!(one.read_bytes(DEB) != two.read_bytes(DEB));
    // A no-op after packaging runs nothing.
    let noop = one.json_env(&["bundle"], &[("SOURCE_DATE_EPOCH", "1750000000")]);
    noop.assert_code(0);
    assert_eq!(noop.counts().0, 0, "{noop}");
    // An epoch in the future: the rpm crate would put the clock's time in its place, so the
    // rpm is refused with the reason; the deb, which carries any epoch, is made.
    let future = one.json_env(&["bundle"], &[("SOURCE_DATE_EPOCH", "4000000000")]);
    assert_eq!(
        future.status("package:app-desktop@linux-x64:rpm"),
        "failed",
        "{future}"
    );
    assert_eq!(future.status("package:app-desktop@linux-x64:deb"), "ran");
    assert!(future.to_string().contains("in the future"), "{future}");
}

/// Bad installer settings are located diagnostics at load time (exit 2), and nothing is
/// built or written.
#[test]
fn bad_installer_settings_are_located_diagnostics() {
    for (setting, says) in [
        (
            "name = \"Notes App\"",
            "installer name `Notes App` is not a package name",
        ),
        (
            "requires = [\"glibc => 2.31\"]",
            "installer requires entry `glibc => 2.31`",
        ),
        (
            "depends = [\"libc6 >= 2.31\"]",
            "installer depends entry `libc6 >= 2.31` is not a Debian relation",
        ),
    ] {
        let repo = app_repo(
            &["linux-x64"],
            "formats = [\"deb\", \"rpm\"]\n",
            &format!("[profiles.app-desktop.installer]\n{setting}\n"),
        );
        let before = repo.snapshot();
        let run = repo.json(&["bundle"]);
        run.assert_code(2);
        let diagnostic = run.diagnostic();
        assert_eq!(diagnostic["file"], "bundle.toml", "{run}");
        let header = repo
            .read("bundle.toml")
            .lines()
            .position(|l| l == "[profiles.app-desktop.installer]")
            .expect("the installer table")
            + 1;
        assert_eq!(diagnostic["line"], header, "{run}");
        let message = diagnostic["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
        assert!(
            diagnostic["help"].as_str().is_some_and(|h| !h.is_empty()),
            "{run}"
        );
        common::assert_same_tree(&repo.snapshot(), &before, "nothing written");
        assert!(!repo.exists("dist"), "nothing built");
    }
}

/// deb and rpm are planned for Linux platforms only: a profile listing them for Linux and
/// Windows gets a deb, an rpm and a zip for Linux, and only the zip for Windows.
#[test]
fn installers_are_planned_only_where_they_apply() {
    if !common::have_tool("go", "golang-go") {
        return;
    }
    // A prebuilt runtime for Windows, so its stage is planned here.
    let runtime = b"MZ a stand-in for the Windows runtime\n";
    let repo = app_repo(
        &["linux-x64", "win-x64"],
        "formats = [\"deb\", \"rpm\", \"zip\"]\n",
        "",
    );
    let file = repo.sandbox().join("runtime.exe");
    std::fs::write(&file, runtime).unwrap();
    let toml = repo.read("bundle.toml");
    repo.write(
        "bundle.toml",
        format!(
            "{toml}\n[runtime.win-x64]\nurl = \"file://{}\"\nsha256 = \"{}\"\n",
            file.display(),
            common::sha256_hex(runtime)
        ),
    );
    let plan = repo.json(&["bundle", "--dry-run"]);
    plan.assert_code(0);
    let mut packages: Vec<String> = plan
        .events("plan")
        .into_iter()
        .filter_map(|event| event["id"].as_str())
        .filter(|id| id.starts_with("package:"))
        .map(str::to_string)
        .collect();
    packages.sort();
    assert_eq!(
        packages,
        [
            "package:app-desktop@linux-x64:deb",
            "package:app-desktop@linux-x64:rpm",
            "package:app-desktop@linux-x64:zip",
            "package:app-desktop@win-x64:zip",
        ],
        "{plan}"
    );
    assert!(
        plan.events("plan")
            .iter()
            .any(|event| event["id"] == "stage:app-desktop@win-x64"),
        "the Windows stage is planned\n{plan}"
    );
}
