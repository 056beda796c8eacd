//! The demo scenarios' code works with the toolchains the bundle pipeline uses, built the way
//! the pipeline builds it: the Go API (`scenarios/picker-wheel/api`) vets, passes its tests and
//! cross-compiles with `CGO_ENABLED=0` for linux/amd64, linux/arm64, windows/amd64 and
//! darwin/arm64 (each binary's header checked); the Rust APIs (`scenarios/notes-app/api`,
//! `scenarios/auth-service/api`, standalone packages sharing identical copies of their `http`
//! and `json` modules) pass their tests and build offline from their committed lock files; picker-wheel's npm UI installs offline and builds to byte-identical
//! `dist/` trees. Each API, started on a free loopback port with a temporary `DATA_DIR`, keeps
//! what was written through HTTP across a restart. The sources are left byte-for-byte as they
//! were (the builds write only to temporary directories).
//!
//! A missing tool (go, node, npm) skips its part with a message, or fails naming the Debian
//! package under `XBUNDLE_REQUIRE_TOOLS=1` (as CI runs).

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn source(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// Runs `command` to success, or fails with its command line and output.
fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `go` in `dir`, standard library only: no module proxy, no workspace file, no cgo.
fn go(dir: &Path) -> Command {
    let mut command = Command::new("go");
    command
        .current_dir(dir)
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=readonly")
        .env("GOWORK", "off")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .env_remove("GOOS")
        .env_remove("GOARCH");
    command
}

/// Every file below `dir` with its contents.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if fs::symlink_metadata(&path).expect("lstat").is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path.strip_prefix(root).expect("below root").to_path_buf();
                out.insert(relative, fs::read(&path).expect("read file"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn temp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("xbundle-demo-")
        .tempdir()
        .expect("create a temporary directory")
}

/// Checks an executable's header: its format and architecture are those of `goos`/`goarch`.
fn check_header(path: &Path, goos: &str, goarch: &str) {
    let bytes = fs::read(path).expect("read the binary");
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let what = format!("{} ({goos}/{goarch})", path.display());
    match goos {
        "linux" => {
            assert_eq!(&bytes[..4], b"\x7fELF", "{what}: not ELF");
            assert_eq!(bytes[4], 2, "{what}: not a 64-bit ELF");
            let machine = match goarch {
                "amd64" => 62,
                "arm64" => 183,
                other => panic!("unexpected arch {other}"),
            };
            assert_eq!(u16_at(18), machine, "{what}: ELF machine");
        }
        "windows" => {
            assert_eq!(&bytes[..2], b"MZ", "{what}: not PE");
            let pe = u32_at(0x3c) as usize;
            assert_eq!(&bytes[pe..pe + 4], b"PE\0\0", "{what}: no PE signature");
            assert_eq!(u16_at(pe + 4), 0x8664, "{what}: PE machine (x86-64)");
        }
        "darwin" => {
            assert_eq!(u32_at(0), 0xfeed_facf, "{what}: not a 64-bit Mach-O");
            assert_eq!(u32_at(4), 0x0100_000c, "{what}: Mach-O CPU type (arm64)");
        }
        other => panic!("unexpected OS {other}"),
    }
}

const PLATFORMS: [(&str, &str); 4] = [
    ("linux", "amd64"),
    ("linux", "arm64"),
    ("windows", "amd64"),
    ("darwin", "arm64"),
];

/// `go vet`, `go test`, the four cross builds (headers checked) and a build for this host,
/// whose path is returned.
fn check_go_api(dir: &Path, name: &str, out: &Path) -> PathBuf {
    run(go(dir).args(["vet", "./..."]));
    run(go(dir).args(["test", "./..."]));
    for (goos, goarch) in PLATFORMS {
        let exe = if goos == "windows" { ".exe" } else { "" };
        let binary = out.join(format!("{goos}-{goarch}/{name}{exe}"));
        run(go(dir)
            .env("GOOS", goos)
            .env("GOARCH", goarch)
            .args(["build", "-trimpath", "-buildvcs=false", "-o"])
            .arg(&binary)
            .arg("."));
        check_header(&binary, goos, goarch);
    }
    let host = out.join(format!("host/{name}"));
    run(go(dir)
        .args(["build", "-trimpath", "-buildvcs=false", "-o"])
        .arg(&host)
        .arg("."));
    host
}

/// A free loopback port (released for the server to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a free port")
        .port()
}

/// One HTTP/1.0 exchange (the server closes the connection after it): status and body.
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> std::io::Result<(u16, String)> {
    let addr = ("127.0.0.1", port);
    let mut stream = TcpStream::connect_timeout(
        &std::net::ToSocketAddrs::to_socket_addrs(&addr)?
            .next()
            .expect("an address"),
        Duration::from_secs(2),
    )?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
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

/// A started API: killed (and reaped) on drop.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    /// Starts `binary` with API_PORT (free), DATA_DIR and `env`, and waits (at most 30 s) for
    /// `GET /health` to answer 200.
    fn start(binary: &Path, data: &Path, env: &[(&str, &str)], log: PathBuf) -> Server {
        let port = free_port();
        let child = Command::new(binary)
            .env("API_PORT", port.to_string())
            .env("DATA_DIR", data)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).expect("create log"))
            .stderr(fs::File::create(log.with_extension("err")).expect("create log"))
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", binary.display()));
        let mut server = Server { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = http(port, "GET", "/health", None) {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("{} exited ({status}): {}", binary.display(), server.logs());
            }
            assert!(
                Instant::now() < deadline,
                "{} never answered /health: {}",
                binary.display(),
                server.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn logs(&self) -> String {
        let read = |path: &Path| fs::read_to_string(path).unwrap_or_default();
        format!(
            "{}{}",
            read(&self.log),
            read(&self.log.with_extension("err"))
        )
    }

    fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http(self.port, method, path, body)
            .unwrap_or_else(|err| panic!("{method} {path}: {err}; log: {}", self.logs()))
    }

    /// Sends SIGTERM and waits (at most 10 s) for the exit, which must be a success.
    fn terminate(mut self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(
                    status.success(),
                    "exit after SIGTERM: {status}; {}",
                    self.logs()
                );
                return;
            }
            assert!(Instant::now() < deadline, "no exit within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The string value of `"key":"..."` in a JSON text (the test needs nothing more).
fn field(json: &str, key: &str) -> String {
    let value: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|err| panic!("{err}: {json}"));
    match &value[key] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        other => panic!("{key} is {other} in {json}"),
    }
}

fn assert_only(data: &Path, names: &[&str]) {
    let mut found: Vec<String> = fs::read_dir(data)
        .expect("read the data dir")
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    found.sort();
    assert_eq!(found, names, "the data directory holds only the state");
}

#[test]
fn picker_wheel_go_api_builds_for_every_platform_and_keeps_its_wheels() {
    if !common::have_tool("go", "golang-go") {
        return;
    }
    let dir = source("scenarios/picker-wheel/api");
    let before = files(&dir);
    let tmp = temp();
    let binary = check_go_api(&dir, "picker-wheel-api", &tmp.path().join("bin"));
    let data = tmp.path().join("data");

    let server = Server::start(&binary, &data, &[], tmp.path().join("first.log"));
    let (status, created) = server.call(
        "POST",
        "/api/wheels",
        Some(r#"{"name":"Lunch","options":[{"label":"pizza","weight":2},{"label":"soup"}]}"#),
    );
    assert_eq!(status, 201, "{created}");
    let id = field(&created, "id");
    let (status, spun) = server.call("POST", &format!("/api/wheels/{id}/spin"), None);
    assert_eq!(status, 200, "{spun}");
    let label = field(&spun, "label");
    assert!(label == "pizza" || label == "soup", "{spun}");
    assert_eq!(server.call("POST", "/api/wheels", Some("{")).0, 400);
    server.terminate();
    assert_only(&data, &["wheels.json"]);

    let again = Server::start(&binary, &data, &[], tmp.path().join("second.log"));
    let (status, wheel) = again.call("GET", &format!("/api/wheels/{id}"), None);
    assert_eq!(status, 200, "{wheel}");
    assert_eq!(field(&wheel, "name"), "Lunch");
    let (status, history) = again.call("GET", "/api/history", None);
    assert_eq!(status, 200);
    let history: serde_json::Value = serde_json::from_str(&history).unwrap();
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history}");
    assert_eq!(history[0]["label"], label.as_str());
    again.terminate();

    assert!(
        before == files(&dir),
        "the build wrote into {}",
        dir.display()
    );
}

/// `cargo test`, then `cargo build --release` of the standalone package in `dir`, locked and
/// offline (it has no dependencies), into a temporary target directory; returns the binary.
fn check_rust_api(dir: &Path, name: &str, target: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = dir.join("Cargo.toml");
    let cargo = |args: &[&str]| {
        let mut command = Command::new(&cargo);
        command
            .args(args)
            .arg("--manifest-path")
            .arg(&manifest)
            .args(["--locked", "--offline", "--quiet"])
            .env("CARGO_TARGET_DIR", target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET");
        run(&mut command);
    };
    cargo(&["test"]);
    cargo(&["build", "--release"]);
    target.join("release").join(name)
}

#[test]
fn notes_app_rust_api_builds_offline_and_keeps_its_notes_across_a_kill() {
    let dir = source("scenarios/notes-app/api");
    let before = files(&dir);
    let tmp = temp();
    let binary = check_rust_api(&dir, "notes-app-api", &tmp.path().join("target"));
    let data = tmp.path().join("data");

    let server = Server::start(&binary, &data, &[], tmp.path().join("first.log"));
    let (status, note) = server.call(
        "POST",
        "/api/notes",
        Some(r#"{"title":"Kept","body":"through a kill"}"#),
    );
    assert_eq!(status, 201, "{note}");
    let id = field(&note, "id");
    assert_eq!(server.call("POST", "/api/notes", Some("[1]")).0, 400);
    // No signal handler: the API is killed outright; what it answered for is on disk.
    drop(server);
    assert_only(&data, &["notes.json"]);

    let again = Server::start(&binary, &data, &[], tmp.path().join("second.log"));
    let (status, note) = again.call("GET", &format!("/api/notes/{id}"), None);
    assert_eq!(status, 200, "{note}");
    assert_eq!(field(&note, "body"), "through a kill");
    assert_eq!(
        again.call("DELETE", &format!("/api/notes/{id}"), None).0,
        204
    );
    assert_eq!(again.call("GET", &format!("/api/notes/{id}"), None).0, 404);

    assert!(
        before == files(&dir),
        "the build wrote into {}",
        dir.display()
    );
}

#[test]
fn auth_service_rust_api_builds_offline_and_its_tokens_survive_a_restart() {
    let dir = source("scenarios/auth-service/api");
    let before = files(&dir);
    assert!(
        !dir.join("go.mod").exists(),
        "auth-service is a Rust package: a go.mod beside its Cargo.toml makes the build ambiguous"
    );
    let tmp = temp();
    let binary = check_rust_api(&dir, "auth-service-api", &tmp.path().join("target"));
    let data = tmp.path().join("data");

    let server = Server::start(&binary, &data, &[], tmp.path().join("first.log"));
    let (status, health) = server.call("GET", "/health", None);
    assert_eq!(
        (status, field(&health, "status").as_str()),
        (200, "healthy")
    );
    let (status, issued) = server.call(
        "POST",
        "/api/tokens",
        Some(r#"{"subject":"alice","ttl_seconds":600}"#),
    );
    assert_eq!(status, 201, "{issued}");
    let token = field(&issued, "token");
    assert_eq!(field(&issued, "subject"), "alice");
    let (status, short) = server.call(
        "POST",
        "/api/tokens",
        Some(r#"{"subject":"bob","ttl_seconds":1}"#),
    );
    assert_eq!(status, 201, "{short}");
    let short = field(&short, "token");
    assert_eq!(
        server
            .call("POST", "/api/tokens", Some(r#"{"ttl_seconds":5}"#))
            .0,
        400
    );
    // A second API on the same data directory would lose the first one's tokens: refused.
    let second = Command::new(&binary)
        .env("API_PORT", free_port().to_string())
        .env("DATA_DIR", &data)
        .stdin(Stdio::null())
        .output()
        .expect("start a second API");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success() && stderr.contains("another auth-service-api uses"),
        "{}: {stderr}",
        second.status
    );
    // No signal handler: killed outright, what it answered for is on disk.
    drop(server);
    assert_only(&data, &["tokens.json"]);
    // bob's one-second token expires while the API is down (expiry is in whole seconds).
    std::thread::sleep(Duration::from_millis(2100));

    let again = Server::start(&binary, &data, &[], tmp.path().join("second.log"));
    let verify = |token: &str| {
        again.call(
            "POST",
            "/api/tokens/verify",
            Some(&format!(r#"{{"token":"{token}"}}"#)),
        )
    };
    let (status, checked) = verify(&token);
    assert_eq!(status, 200, "{checked}");
    assert_eq!(field(&checked, "subject"), "alice");
    let (status, refused) = verify(&"0".repeat(64));
    assert_eq!(status, 401, "an unknown token: {refused}");
    assert_eq!(verify("not hex").0, 401);
    assert_eq!(verify(&short).0, 401, "an expired token");
    assert_eq!(
        again.call("GET", "/api/tokens/verify", None).0,
        405,
        "verify is a POST"
    );
    drop(again);

    assert!(
        before == files(&dir),
        "the build wrote into {}",
        dir.display()
    );
}

/// The two standalone Rust APIs carry the same `http` and `json` modules (copied, since they
/// share no crate): the copies are identical.
#[test]
fn the_rust_apis_copied_modules_are_identical() {
    for module in ["http.rs", "json.rs"] {
        let notes = fs::read(source("scenarios/notes-app/api/src").join(module)).unwrap();
        let auth = fs::read(source("scenarios/auth-service/api/src").join(module)).unwrap();
        assert!(notes == auth, "the two copies of {module} differ");
    }
}

/// Copies picker-wheel's UI sources (not a developer's `node_modules/` or `dist/`) to `to`.
fn copy_ui(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if ["node_modules", "dist", "dist.tmp"]
            .iter()
            .any(|n| name == *n)
        {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_ui(&entry.path(), &to.join(&name));
        } else {
            fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

#[test]
fn picker_wheel_ui_installs_offline_and_builds_the_same_bytes_twice() {
    if !common::have_tool("node", "nodejs") || !common::have_tool("npm", "npm") {
        return;
    }
    let dir = source("scenarios/picker-wheel/ui");
    let tmp = temp();
    let npm = |ui: &Path, args: &[&str]| {
        run(Command::new("npm")
            .args(args)
            .current_dir(ui)
            .env("npm_config_cache", tmp.path().join("npm-cache"))
            .env("npm_config_update_notifier", "false")
            .env("npm_config_fund", "false")
            .env("npm_config_audit", "false"));
    };
    let mut dists = Vec::new();
    for copy in ["a/ui", "b/ui"] {
        let ui = tmp.path().join(copy);
        copy_ui(&dir, &ui);
        npm(&ui, &["ci", "--offline"]);
        npm(&ui, &["run", "build"]);
        dists.push(files(&ui.join("dist")));
    }
    // A second build in the same place replaces dist/ with the same bytes.
    let a = tmp.path().join("a/ui");
    npm(&a, &["run", "build"]);
    dists.push(files(&a.join("dist")));

    let names: Vec<_> = dists[0].keys().map(|p| p.to_str().unwrap()).collect();
    assert_eq!(names, ["app.js", "index.html", "style.css"]);
    assert!(dists[1] == dists[0], "two builds in two directories differ");
    assert!(dists[2] == dists[0], "a rebuild differs");
    let page = String::from_utf8(dists[0][Path::new("index.html")].clone()).unwrap();
    assert!(page.contains(r#"src="app.js?v="#), "{page}");
    let script = String::from_utf8(dists[0][Path::new("app.js")].clone()).unwrap();
    assert!(script.contains("fetch(`/api${path}`"), "the UI calls /api");
    assert!(!a.join("dist.tmp").exists());
}
