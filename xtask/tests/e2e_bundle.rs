//! End to end: `cargo xtask bundle` on the demo `picker-wheel` (a Go API and an npm UI), then
//! the staged runtime on the host's stage: `/readyz` answers, the UI is served, the Go API
//! answers through the UI's `/api` proxy, and a wheel written through it survives a restart.
//!
//! Needs Go and npm (Debian: golang-go, npm): when missing, the test fails under
//! `XBUNDLE_REQUIRE_TOOLS=1` (CI) and skips otherwise.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Repo;

/// The demo repository's definitions, with one profile: picker-wheel for this machine.
fn demo() -> Repo {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let repo = Repo::new(
        "[workspace]\ndefault-profile = \"picker-wheel-desktop\"\n\n[profiles.picker-wheel-desktop]\nscenario = \"picker-wheel\"\ntier = \"tier-2-desktop\"\nplatforms = [\"linux-x64\"]\nswaps = { postgres = \"sqlite\", redis = \"in-process\" }\nmin-fitness = 0.75\n",
        &[],
    );
    for dir in ["scenarios", "resources", "platforms"] {
        common::copy_tree(&source.join(dir), &repo.join(dir));
    }
    // An asset the runtime verifies (sha256 and size) before it starts anything.
    let data = b"spin the wheel\n";
    let file = repo.sandbox().join("wheel-sounds.txt");
    std::fs::write(&file, data).unwrap();
    let digest = String::from_utf8_lossy(
        &Command::new("sha256sum")
            .arg(&file)
            .output()
            .expect("sha256sum")
            .stdout,
    )[..64]
        .to_string();
    let toml = repo.read("bundle.toml");
    repo.write(
        "bundle.toml",
        format!(
            "{toml}\n[[assets]]\nid = \"sounds\"\nurl = \"file://{}\"\nsha256 = \"{digest}\"\n",
            file.display()
        ),
    );
    // What a developer's earlier builds left in the sources is not part of the repository.
    for leftover in [
        "scenarios/picker-wheel/ui/node_modules",
        "scenarios/picker-wheel/ui/dist",
    ] {
        let _ = std::fs::remove_dir_all(repo.join(leftover));
    }
    repo
}

/// One HTTP/1.0 exchange: status and body.
fn http(port: u16, request: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(request.as_bytes())?;
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

fn get(port: u16, path: &str, extra: &str) -> (u16, String) {
    http(
        port,
        &format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n"),
    )
    .unwrap_or_else(|err| panic!("GET {path} on {port}: {err}"))
}

/// The runtime on a stage: stopped with SIGTERM and reaped on drop.
struct Runtime {
    child: Child,
    app_data: PathBuf,
}

impl Runtime {
    fn start(stage: &Path, app_data: &Path) -> Runtime {
        let child = Command::new(stage.join("runtime/xbundle-runtime"))
            .arg("--bundle")
            .arg(stage)
            .arg("--app-data")
            .arg(app_data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the staged runtime");
        Runtime {
            child,
            app_data: app_data.to_path_buf(),
        }
    }

    fn control(&self) -> (u16, String) {
        let port = std::fs::read_to_string(self.app_data.join("runtime/ipc-port"))
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0);
        let token =
            std::fs::read_to_string(self.app_data.join("runtime/auth-token")).unwrap_or_default();
        (port, token.trim().to_string())
    }

    /// Waits (at most 60 s) for `/readyz`, then returns the UI's port.
    fn ready(&mut self) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                self.child.try_wait().expect("poll the runtime").is_none(),
                "the runtime exited before it was ready"
            );
            let (port, token) = self.control();
            if port != 0 && !token.is_empty() {
                let auth = format!("Authorization: Bearer {token}\r\n");
                if let Ok((200, _)) = http(
                    port,
                    &format!("GET /readyz HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{auth}\r\n"),
                ) {
                    let (status, ports) = get(port, "/ports", &auth);
                    assert_eq!(status, 200, "{ports}");
                    let ports: serde_json::Value =
                        serde_json::from_str(&ports).expect("JSON ports");
                    return ports["services"]["picker-wheel-ui"]["ui"]
                        .as_u64()
                        .expect("the UI's port") as u16;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the runtime was not ready within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(mut self) {
        // SAFETY: kill(2) on the child this test started.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().expect("poll").is_none() {
            assert!(
                Instant::now() < deadline,
                "the runtime did not stop within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn bundle_then_runtime_serves_the_ui_and_the_go_api_and_keeps_a_wheel_across_a_restart() {
    if !common::have_tool("go", "golang-go") || !common::have_tool("npm", "npm") {
        return;
    }
    let repo = demo();
    let run = repo.json(&["bundle"]);
    run.assert_code(0);
    let stage = repo.join("dist/picker-wheel-desktop/stage/linux-x64");
    assert!(stage.join("bundle.json").is_file(), "{run}");
    let app_data = repo.sandbox().join("app-data");
    assert!(
        repo.read("dist/picker-wheel-desktop/stage/linux-x64/bundle.json")
            .contains("wheel-sounds.txt"),
        "the staged bundle.json lists the asset"
    );

    let mut runtime = Runtime::start(&stage, &app_data);
    let ui = runtime.ready();
    let (status, page) = get(ui, "/", "");
    assert_eq!(status, 200);
    assert!(
        page.contains("<html") || page.contains("<!doctype"),
        "{page}"
    );
    let origin = format!("Origin: http://127.0.0.1:{ui}\r\n");
    let body =
        r#"{"name":"lunch","options":[{"label":"soup","weight":1},{"label":"salad","weight":3}]}"#;
    let (status, created) = http(
        ui,
        &format!(
            "POST /api/wheels HTTP/1.0\r\nHost: 127.0.0.1:{ui}\r\n{origin}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .expect("POST through the proxy");
    assert!((200..300).contains(&status), "{status} {created}");
    let (status, list) = get(ui, "/api/wheels", &origin);
    assert_eq!(status, 200, "{list}");
    assert!(list.contains("lunch"), "{list}");
    runtime.stop();

    let mut again = Runtime::start(&stage, &app_data);
    let ui = again.ready();
    let origin = format!("Origin: http://127.0.0.1:{ui}\r\n");
    let (status, list) = get(ui, "/api/wheels", &origin);
    assert_eq!(status, 200, "{list}");
    assert!(
        list.contains("lunch"),
        "the wheel survives a restart: {list}"
    );
    again.stop();
}

/// A directory of links to every program of /usr/bin except Go's and Node's, for a `PATH` that
/// looks like a machine with only Rust installed.
fn only_rust_path(dir: &Path) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for entry in std::fs::read_dir("/usr/bin").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if ["go", "gofmt", "node", "nodejs", "npm", "npx", "corepack"].contains(&name.as_str()) {
            continue;
        }
        let _ = std::os::unix::fs::symlink(entry.path(), bin.join(&name));
    }
    // Rust: the directory of the cargo running these tests (its toolchain's, with rustc), and
    // rustup's proxies where they are.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let toolchain = Path::new(&cargo)
        .parent()
        .map(|dir| dir.display().to_string())
        .unwrap_or_default();
    let rustup = std::env::var("HOME")
        .map(|home| format!("{home}/.cargo/bin"))
        .unwrap_or_default();
    format!("{}:{toolchain}:{rustup}:/bin", bin.display())
}

/// The README's main job on a machine with only Rust: `cargo xtask bundle` builds the default
/// profile (notes-desktop: two Rust APIs and a static UI) completely, and `run` starts its host
/// stage, whose notes API answers through the UI, until Ctrl-C stops it.
#[test]
fn the_default_profile_builds_and_runs_with_only_rust() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let repo = Repo::new(
        &std::fs::read_to_string(source.join("bundle.toml")).unwrap(),
        &[],
    );
    for dir in ["scenarios", "resources", "platforms", "demo"] {
        common::copy_tree(&source.join(dir), &repo.join(dir));
    }
    for leftover in [
        "scenarios/picker-wheel/ui/node_modules",
        "scenarios/picker-wheel/ui/dist",
        "scenarios/notes-app/api/target",
        "scenarios/auth-service/api/target",
        "demo/greeting/build",
    ] {
        let _ = std::fs::remove_dir_all(repo.join(leftover));
    }
    let path = only_rust_path(repo.sandbox());
    let run = repo.json_env(&["bundle"], &[("PATH", &path)]);
    run.assert_code(0);
    let bundles = run.events("bundles");
    assert_eq!(bundles[0]["profile"], "notes-desktop", "{run}");
    assert_eq!(
        common::strings(&bundles[0]["staged"]),
        ["dist/notes-desktop/stage/linux-x64"],
        "{run}"
    );

    let mut child = repo
        .command()
        .arg("run")
        .env("PATH", &path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start `xtask run`");
    let app_data = repo.join(".xbundle/run/notes-desktop");
    let mut runtime = Runtime {
        child: Command::new("true").spawn().unwrap(),
        app_data: app_data.clone(),
    };
    // `run` becomes the runtime (the same process), so its readiness is the runtime's.
    let deadline = Instant::now() + Duration::from_secs(120);
    let ui = loop {
        assert!(child.try_wait().unwrap().is_none(), "`run` exited early");
        let (port, token) = runtime.control();
        if port != 0 && !token.is_empty() {
            let auth = format!("Authorization: Bearer {token}\r\n");
            if let Ok((200, _)) = http(
                port,
                &format!("GET /readyz HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{auth}\r\n"),
            ) {
                let (_, ports) = get(port, "/ports", &auth);
                let ports: serde_json::Value = serde_json::from_str(&ports).unwrap();
                break ports["services"]["notes-app-ui"]["ui"].as_u64().unwrap() as u16;
            }
        }
        assert!(Instant::now() < deadline, "not ready within 120 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    let origin = format!("Origin: http://127.0.0.1:{ui}\r\n");
    let body = r#"{"title":"groceries","body":"milk"}"#;
    let (status, created) = http(
        ui,
        &format!(
            "POST /api/notes HTTP/1.0\r\nHost: 127.0.0.1:{ui}\r\n{origin}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .unwrap();
    assert!((200..300).contains(&status), "{status} {created}");
    // Ctrl-C reaches the runtime, which stops its services and exits.
    // SAFETY: kill(2) on the child this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "`run` did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    }
    runtime.child.kill().ok();
}
