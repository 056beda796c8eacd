//! Shared helpers of the runtime's integration tests: fixture bundles of the `testsvc`
//! example services, a runtime process handle, a tiny HTTP client.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const RUNTIME: &str = env!("CARGO_BIN_EXE_xbundle-runtime");

/// The `testsvc` example, built on demand when `cargo test` did not build examples.
pub fn testsvc() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let path = profile_dir.join("examples/testsvc");
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        if !path.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let target_dir = profile_dir.parent().unwrap();
            let mut command = Command::new(cargo);
            command.args([
                "build",
                "-p",
                "runtime",
                "--example",
                "testsvc",
                "--target-dir",
            ]);
            command.arg(target_dir);
            if profile_dir.ends_with("release") {
                command.arg("--release");
            }
            let status = command.status().unwrap();
            assert!(status.success(), "building the testsvc example failed");
        }
    });
    assert!(path.exists(), "{} missing", path.display());
    path
}

/// Puts the `testsvc` example at `path` (a hard link when the file system allows, else a copy).
pub fn install_testsvc(path: &Path) {
    let source = testsvc();
    if std::fs::hard_link(&source, path).is_err() {
        std::fs::copy(&source, path).unwrap();
    }
}

/// `count` consecutive ports that are free now, in a range unlikely to be used.
pub fn free_range(count: u16) -> u16 {
    let seed = (std::process::id() as u64 * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64)
        % 20000;
    let mut base = 30000 + seed as u16;
    loop {
        if (base..base + count).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
        base = 30000 + (base - 30000 + 97) % 25000;
    }
}

pub struct Fixture {
    pub dir: PathBuf,
    pub bundle: PathBuf,
    pub app_data: PathBuf,
}

impl Fixture {
    /// A bundle dir holding `manifest` as bundle.json, `bin/testsvc`, and `ui/index.html`.
    pub fn new(name: &str, manifest: &serde_json::Value) -> Fixture {
        let dir = std::env::temp_dir().join(format!("xbundle-rt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let bundle = dir.join("bundle");
        std::fs::create_dir_all(bundle.join("bin")).unwrap();
        std::fs::create_dir_all(bundle.join("ui/assets")).unwrap();
        // A copy, not a symlink: the runtime refuses a binary path that crosses a symlink.
        install_testsvc(&bundle.join("bin/testsvc"));
        std::fs::write(
            bundle.join("ui/index.html"),
            "<!doctype html><title>fixture ui</title>",
        )
        .unwrap();
        std::fs::write(bundle.join("ui/assets/app.js"), "console.log('hi')").unwrap();
        let fixture = Fixture {
            app_data: dir.join("app-data"),
            bundle,
            dir,
        };
        fixture.write_manifest(manifest);
        fixture
    }

    pub fn write_manifest(&self, manifest: &serde_json::Value) {
        std::fs::write(
            self.bundle.join("bundle.json"),
            serde_json::to_string_pretty(manifest).unwrap(),
        )
        .unwrap();
    }

    pub fn start(&self) -> Runtime {
        self.start_with(&[])
    }

    /// Starts the runtime with extra environment variables.
    pub fn start_with(&self, env: &[(&str, &str)]) -> Runtime {
        self.start_args(&[], env)
    }

    /// Starts the runtime with extra arguments and environment variables.
    pub fn start_args(&self, args: &[&str], env: &[(&str, &str)]) -> Runtime {
        // A stale port file from an earlier run must not be mistaken for this one's.
        let _ = std::fs::remove_file(self.app_data.join("runtime/ipc-port"));
        let stderr = std::fs::File::create(self.dir.join("runtime.stderr")).unwrap();
        let mut child = Command::new(RUNTIME)
            .arg("--bundle")
            .arg(&self.bundle)
            .arg("--app-data")
            .arg(&self.app_data)
            .args(["--stop-timeout-ms", "3000"])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let port_file = self.app_data.join("runtime/ipc-port");
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                break port;
            }
            if Instant::now() >= deadline {
                // Not left running behind a failed test (a runtime stuck in its start-up).
                let _ = child.kill();
                let _ = child.wait();
                panic!("the runtime wrote no ipc-port: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let token = std::fs::read_to_string(self.app_data.join("runtime/auth-token")).unwrap();
        Runtime { child, port, token }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("runtime.stderr")).unwrap_or_default()
    }

    pub fn pid_file(&self, name: &str) -> Option<i32> {
        std::fs::read_to_string(self.app_data.join(format!("{name}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub struct Runtime {
    pub child: Child,
    pub port: u16,
    pub token: String,
}

impl Runtime {
    pub fn get(&self, path: &str) -> (u16, String) {
        request(self.port, "GET", path, Some(&self.token), None)
    }
    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        request(self.port, "POST", path, Some(&self.token), Some(body))
    }
    pub fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }
    /// Polls until `/readyz` answers 200.
    pub fn wait_ready(&self, fixture: &Fixture) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.get("/readyz").0 == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not ready: {} {}",
                self.get("/status").1,
                fixture.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    pub fn wait_exit(&mut self, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "the runtime did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One HTTP request; returns status and body.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let body = body.unwrap_or("");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Waits (bounded) until none of `pids` is alive; returns those still alive.
pub fn wait_gone(pids: &[i32], within: Duration) -> Vec<i32> {
    let deadline = Instant::now() + within;
    loop {
        let left: Vec<i32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn read_tree(dir: &Path) -> String {
    let mut all = String::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                all.push_str(&read_tree(&path));
            } else if let Ok(bytes) = std::fs::read(&path) {
                all.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    all
}

/// The fixture manifest: an API (user_prompt + generated secrets, migrations), a worker with
/// a grandchild that leaves its group, and a static UI proxying /api.
pub fn fixture_manifest(version: &str, user_secret: bool) -> serde_json::Value {
    let base = free_range(40);
    let secrets = if user_secret {
        serde_json::json!(["api_secret", "token"])
    } else {
        serde_json::json!(["token"])
    };
    // `${secret.ID}` in an env template: only for a secret the service lists.
    let api_env = if user_secret {
        serde_json::json!({"PORT": "${api.http}", "DB": "file:${data}/x.db", "AUTH_HEADER": "Bearer ${secret.api_secret}"})
    } else {
        serde_json::json!({"PORT": "${api.http}", "DB": "file:${data}/x.db"})
    };
    serde_json::json!({
        "schema_version": "v0.1",
        "target": "desktop",
        "app": {"name": "fixture", "version": version},
        "ipc": {"mode": "loopback-http", "host": "127.0.0.1", "port": base, "auth_token_path": "runtime/auth-token"},
        "telemetry": {"file": "telemetry/events.jsonl"},
        "ports": {"default_range": {"min": base + 1, "max": base + 39}, "reserved": [base + 10]},
        "secrets": [
            {"id": "api_secret", "class": "user_prompt", "format": "^[A-Za-z0-9]{16,}$",
             "prompt": {"label": "API secret"}, "target": {"type": "env", "name": "API_SECRET"}},
            {"id": "token", "class": "per_install_generated",
             "generator": {"type": "random", "length": 24, "charset": "hex"},
             "target": {"type": "file", "name": "TOKEN_PATH"}}
        ],
        "services": [
            {
                "id": "ui", "type": "ui-bundle",
                "binaries": {"universal": {"path": "ui"}},
                "ports": {"requested": [{"name": "http", "range": {"min": base + 10, "max": base + 19}}]},
                "health": {"type": "http", "path": "/", "port_name": "http", "interval_ms": 200},
                "readiness": {"type": "dependencies_ready"},
                "dependencies": ["api"]
            },
            {
                "id": "api", "type": "api-binary", "critical": true,
                "binaries": {"linux-x64": {"path": "bin/testsvc", "args": ["api"]}},
                "env": api_env,
                "secrets": secrets,
                "ports": {"requested": [{"name": "http", "range": {"min": base + 20, "max": base + 29}}]},
                "health": {"type": "http", "path": "/health", "port_name": "http", "interval_ms": 200, "retries": 3},
                "readiness": {"type": "health_success", "timeout_ms": 20000},
                "migrations": [
                    {"version": "1", "command": ["./testsvc", "migrate", "first"], "run_on": "first_install"},
                    {"version": "2", "command": ["./testsvc", "migrate", "always-2"]},
                    {"version": "3", "command": ["./testsvc", "migrate", "upgrade-3"], "run_on": "upgrade"}
                ]
            },
            {
                "id": "worker", "type": "worker",
                "binaries": {"linux-x64": {"path": "bin/testsvc", "args": ["worker"]}},
                "health": {"type": "command", "command": ["./testsvc", "check"], "interval_ms": 300},
                "readiness": {"type": "log_match", "pattern": "Worker started successfully"},
                "dependencies": ["api"]
            }
        ]
    })
}

/// A minimal manifest around `services` (control port and a port range from [`free_range`]).
pub fn small_manifest(version: &str, services: serde_json::Value) -> serde_json::Value {
    let base = free_range(20);
    serde_json::json!({
        "schema_version": "v0.1",
        "target": "desktop",
        "app": {"name": "small", "version": version},
        "ipc": {"mode": "loopback-http", "host": "127.0.0.1", "port": base, "auth_token_path": "runtime/auth-token"},
        "telemetry": {"file": "telemetry/events.jsonl"},
        "ports": {"default_range": {"min": base + 1, "max": base + 19}},
        "services": services
    })
}

/// A `testsvc` service (`args`) ready once it logs `ready_line`, with a `command` health check.
pub fn testsvc_service(id: &str, args: &[&str], ready_line: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id, "type": "worker",
        "binaries": {"linux-x64": {"path": "bin/testsvc", "args": args}},
        "health": {"type": "command", "command": ["./testsvc", "check"], "interval_ms": 300},
        "readiness": {"type": "log_match", "pattern": ready_line}
    })
}

/// Polls `/status` until `service` is in `state`; returns that status.
pub fn wait_state(
    runtime: &Runtime,
    fixture: &Fixture,
    service: &str,
    state: &str,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = runtime.json("/status");
        let entry = status["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == service)
            .unwrap()
            .clone();
        if entry["state"] == state {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{service} never {state}: {status} {}",
            fixture.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The telemetry events named `event`, in order.
pub fn events(fixture: &Fixture, event: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(fixture.app_data.join("telemetry/events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|e| e["event"] == event)
        .collect()
}

/// A tree of files beside a fixture's bundle and app data that no case may change: plain
/// files, an executable, a nested directory and a symlink. [`Canary::assert_intact`] compares
/// paths, kinds, modes, contents and link targets with the snapshot taken when it was planted.
pub struct Canary {
    pub dir: PathBuf,
    snapshot: std::collections::BTreeMap<PathBuf, String>,
}

impl Canary {
    pub fn plant(dir: PathBuf) -> Canary {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
        std::fs::write(dir.join("victim.txt"), "canary: must stay as it is\n").unwrap();
        std::fs::write(dir.join("sub/deeper/notes.txt"), "nested canary\n").unwrap();
        std::fs::write(dir.join("run.sh"), "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(dir.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::os::unix::fs::symlink("victim.txt", dir.join("link")).unwrap();
        // What a hostile bundle would like to run: it leaves a marker beside the canary.
        let marker = dir.parent().unwrap().join("pwned");
        let script = format!("#!/bin/sh\necho pwned > '{}'\nsleep 30\n", marker.display());
        std::fs::create_dir_all(dir.join("x")).unwrap();
        for name in ["evil.sh", "testsvc"] {
            std::fs::write(dir.join("x").join(name), &script).unwrap();
            std::fs::set_permissions(
                dir.join("x").join(name),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap();
        }
        let snapshot = snapshot(&dir);
        Canary { dir, snapshot }
    }

    pub fn assert_intact(&self, context: &str) {
        let now = snapshot(&self.dir);
        assert!(
            now == self.snapshot,
            "{context}: the canary tree changed:\nbefore {:#?}\nafter {now:#?}",
            self.snapshot
        );
    }

    /// The file the canary's `x/evil.sh` (and `x/testsvc`) would write if run.
    pub fn marker(&self) -> PathBuf {
        self.dir.parent().unwrap().join("pwned")
    }
}

/// Every entry under `dir` (not following symlinks): kind, mode, contents or link target.
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = std::collections::BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode();
        let description = if meta.file_type().is_symlink() {
            format!(
                "link {mode:o} -> {}",
                std::fs::read_link(&path).unwrap().display()
            )
        } else if meta.is_dir() {
            out.extend(snapshot(&path));
            format!("dir {mode:o}")
        } else if !meta.is_file() {
            // A FIFO or socket: never read (a FIFO would block).
            format!("special {mode:o}")
        } else {
            let bytes = std::fs::read(&path).unwrap_or_default();
            format!("file {mode:o} {}", String::from_utf8_lossy(&bytes))
        };
        out.insert(path, description);
    }
    out
}

/// Runs the runtime on `fixture` until it exits, for at most `within`: its exit code (`None`
/// when it was still running and had to be killed) and its stderr.
pub fn run_to_exit(fixture: &Fixture, within: Duration) -> (Option<i32>, String) {
    let stderr = std::fs::File::create(fixture.dir.join("runtime.stderr")).unwrap();
    let mut child = Command::new(RUNTIME)
        .arg("--bundle")
        .arg(&fixture.bundle)
        .arg("--app-data")
        .arg(&fixture.app_data)
        .args(["--stop-timeout-ms", "500"])
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + within;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (code, fixture.stderr())
}

/// A field of `/proc/<pid>/status` in its first unit (`VmHWM` in kB, `Threads`).
pub fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
