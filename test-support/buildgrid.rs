//! A BuildGrid server for tests: cache services only (CAS, ActionCache, ByteStream) on disk
//! storage in a temporary directory, on a free 127.0.0.1 port. Include it in a test crate with
//! `#[path = "…/test-support/buildgrid.rs"] mod buildgrid;` (it needs `tempfile`).
//!
//! Invariants:
//! - `bgd` is found through `XBUNDLE_BGD`, then `/opt/bgd-venv/bin/bgd`, then `PATH`; when it is
//!   missing a test fails naming the package (`buildgrid (pip)`) under
//!   `XBUNDLE_REQUIRE_TOOLS=1`, and otherwise prints that it skipped.
//! - The server is never left behind: it runs under a small `sh` supervisor whose standard
//!   input is a pipe held by the test process. When the pipe closes (the [`BuildGrid`] is
//!   dropped, or the test process exits or is killed, even with SIGKILL), the supervisor kills
//!   the server, waits for it and removes the server's temporary directory (which the harness
//!   created). So a server shared by a whole test binary ([`shared`]) dies with it.
//! - [`BuildGrid::start`] returns only once the server answers a Capabilities call (`bgd
//!   capabilities`); it fails within a bounded wait with the server's log in the message.
#![allow(dead_code)]

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a server may take to answer its first Capabilities call (it takes about 4–10 s).
const START_BOUND: Duration = Duration::from_secs(90);

/// The instance names every server of this harness serves.
pub const INSTANCES: [&str; 2] = ["", "main"];

/// The `bgd` program, or `None` (after printing that the test skipped) when it is missing.
pub fn bgd() -> Option<PathBuf> {
    let candidates = std::env::var_os("XBUNDLE_BGD")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("/opt/bgd-venv/bin/bgd")])
        .chain(
            std::env::var_os("PATH")
                .map(|path| {
                    std::env::split_paths(&path)
                        .map(|dir| dir.join("bgd"))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        );
    for candidate in candidates {
        if std::fs::metadata(&candidate).is_ok_and(|meta| {
            use std::os::unix::fs::PermissionsExt;
            meta.is_file() && meta.permissions().mode() & 0o111 != 0
        }) {
            return Some(candidate);
        }
    }
    assert!(
        std::env::var("XBUNDLE_REQUIRE_TOOLS").as_deref() != Ok("1"),
        "`bgd` is required for this test (XBUNDLE_REQUIRE_TOOLS=1): install buildgrid (pip) in a \
         virtual environment (`.ci/run` does) and point XBUNDLE_BGD at its bin/bgd"
    );
    eprintln!("skipped: `bgd` is not installed (buildgrid (pip); set XBUNDLE_BGD)");
    None
}

/// One server for the whole test binary, started on first use; `None` when `bgd` is missing.
pub fn shared() -> Option<&'static BuildGrid> {
    static SHARED: OnceLock<Option<BuildGrid>> = OnceLock::new();
    SHARED
        .get_or_init(|| bgd().map(|program| BuildGrid::start(&program)))
        .as_ref()
}

/// A running BuildGrid server; killed on drop.
pub struct BuildGrid {
    pub bgd: PathBuf,
    pub port: u16,
    dir: PathBuf,
    log: PathBuf,
    supervisor: Child,
    /// Closing this ends the server.
    lifeline: Option<ChildStdin>,
}

impl BuildGrid {
    /// Starts a server with the cache services for [`INSTANCES`], and waits until it answers.
    pub fn start(bgd: &Path) -> BuildGrid {
        BuildGrid::start_with(bgd, config_text)
    }

    /// Starts a server that also executes (Execution service, an SQL scheduler on the
    /// PostgreSQL database at `sql_url`, which must be migrated already: [`migrate`]) for the
    /// default instance `""` only, and waits until it answers.
    pub fn start_execution(bgd: &Path, sql_url: &str) -> BuildGrid {
        BuildGrid::start_with(bgd, |port, storage| {
            execution_config_text(port, storage, sql_url)
        })
    }

    fn start_with(bgd: &Path, config_text: impl FnOnce(u16, &Path) -> String) -> BuildGrid {
        // One start at a time in this process: between `free_port` and the server's bind,
        // another server started at the same moment could be handed the same port (and gRPC
        // binds with SO_REUSEPORT, so both would seem to listen).
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = STARTING.lock().unwrap_or_else(|poison| poison.into_inner());
        let dir = tempfile::Builder::new()
            .prefix("xbundle-buildgrid-")
            .tempdir()
            .expect("a temporary directory for BuildGrid")
            .keep();
        let port = free_port();
        let storage = dir.join("cas");
        std::fs::create_dir(&storage).unwrap();
        let config = dir.join("server.yml");
        std::fs::write(&config, config_text(port, &storage)).unwrap();
        let log = dir.join("server.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let pid_file = dir.join("server.pid");
        // The supervisor: the server in the background, then wait for the lifeline to close.
        // A signal to the whole process group (Ctrl-C, a cancelled job) stops the server and the
        // tests but not the supervisor (ignored once the server has started, which must not
        // inherit that): the lifeline closes when the tests die, and it cleans up.
        let script = r#"
"$1" server start "$2" </dev/null &
pid=$!
trap '' HUP INT TERM
echo "$pid" > "$3"
read _ignored
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf -- "$4"
"#;
        let mut supervisor = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(bgd)
            .arg(&config)
            .arg(&pid_file)
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("sh, to supervise BuildGrid");
        let lifeline = supervisor.stdin.take();
        let server = BuildGrid {
            bgd: bgd.to_path_buf(),
            port,
            dir,
            log,
            supervisor,
            lifeline,
        };
        server.wait_ready(&pid_file);
        server
    }

    fn wait_ready(&self, pid_file: &Path) {
        let started = Instant::now();
        let address = format!("127.0.0.1:{}", self.port);
        loop {
            if started.elapsed() > START_BOUND {
                panic!(
                    "BuildGrid did not listen on {address} within {} s; its log:\n{}",
                    START_BOUND.as_secs(),
                    self.log_text()
                );
            }
            self.assert_running(pid_file);
            if TcpStream::connect(&address).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let instances: &[&str] = if std::fs::read_to_string(self.dir.join("server.yml"))
            .is_ok_and(|config| config.contains("!execution"))
        {
            &[""]
        } else {
            &INSTANCES
        };
        for &instance in instances {
            let output = self
                .bgd_command("capabilities", instance)
                .output()
                .expect("bgd capabilities");
            let text = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success() && text.contains("SHA256"),
                "BuildGrid does not answer Capabilities for instance {instance:?}: {}{}\nits log:\n{}",
                text,
                String::from_utf8_lossy(&output.stderr),
                self.log_text()
            );
        }
        self.assert_running(pid_file);
    }

    /// Fails, with the server's log, when the server this harness started is no longer running
    /// (so an answer on its port came from someone else).
    fn assert_running(&self, pid_file: &Path) {
        // A server that exited stays a zombie until its supervisor reaps it: dead too.
        let running = |pid: &str| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                let state = stat.rsplit(')').next().unwrap_or("").trim_start();
                !state.starts_with(['Z', 'X'])
            })
        };
        if let Ok(pid) = std::fs::read_to_string(pid_file)
            && !pid.trim().is_empty()
            && !running(pid.trim())
        {
            panic!(
                "BuildGrid exited while starting; its log:\n{}",
                self.log_text()
            );
        }
    }

    /// `grpc://127.0.0.1:PORT`, for the backend.
    /// Whether the server's CAS holds the blob whose SHA-256 is `hex` (BuildGrid's disk storage
    /// keeps it at `cas/cas/objects/<2 hex>/<62 hex>`).
    pub fn cas_holds(&self, hex: &str) -> bool {
        self.dir
            .join("cas/cas/objects")
            .join(&hex[..2])
            .join(&hex[2..])
            .is_file()
    }

    pub fn url(&self) -> String {
        format!("grpc://127.0.0.1:{}", self.port)
    }

    /// `bgd GROUP --remote … --instance-name INSTANCE`; add the subcommand and its arguments.
    pub fn bgd_command(&self, group: &str, instance: &str) -> Command {
        let mut command = Command::new(&self.bgd);
        command
            .arg(group)
            .arg("--remote")
            .arg(format!("http://127.0.0.1:{}", self.port))
            .arg("--instance-name")
            .arg(instance)
            .stdin(Stdio::null());
        command
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for BuildGrid {
    fn drop(&mut self) {
        if let Some(mut lifeline) = self.lifeline.take() {
            let _ = lifeline.write_all(b"\n");
        }
        let _ = self.supervisor.wait();
    }
}

/// A port nobody listens on now (the kernel's choice; released for the server to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// Applies BuildGrid's database migrations to the (empty) database at `sql_url`.
pub fn migrate(bgd: &Path, sql_url: &str) {
    let output = Command::new(bgd)
        .args(["migrate", "apply", sql_url])
        .stdin(Stdio::null())
        .output()
        .expect("bgd migrate apply");
    assert!(
        output.status.success(),
        "bgd migrate apply {sql_url} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn execution_config_text(port: u16, storage: &Path, sql_url: &str) -> String {
    format!(
        "server:\n  - !channel\n    address: \"127.0.0.1:{port}\"\n    insecure-mode: true\n\
         authorization:\n  method: none\n\
         connections:\n  - !sql-connection &sql\n    connection-string: {sql_url}\n\
         storages:\n  - !disk-storage &storage\n    path: \"{}\"\n\
         caches:\n  - !lru-action-cache &cache\n    storage: *storage\n    \
         max-cached-refs: 100000\n    allow-updates: true\n    cache-failed-actions: false\n\
         schedulers:\n  - !sql-scheduler &scheduler\n    sql: *sql\n    action-cache: *cache\n    \
         storage: *storage\n\
         instances:\n  - name: \"\"\n    services:\n      - !action-cache\n        cache: *cache\n      \
         - !execution\n        scheduler: *scheduler\n      - !cas\n        storage: *storage\n      \
         - !bytestream\n        storage: *storage\n",
        storage.display()
    )
}

fn config_text(port: u16, storage: &Path) -> String {
    // Each instance its own storage and action cache, so instance names are kept apart.
    let mut storages = String::new();
    let mut caches = String::new();
    let mut instances = String::new();
    for (index, instance) in INSTANCES.iter().enumerate() {
        let path = storage.join(format!("instance-{index}"));
        std::fs::create_dir_all(&path).unwrap();
        storages.push_str(&format!(
            "  - !disk-storage &storage{index}\n    path: \"{}\"\n",
            path.display()
        ));
        caches.push_str(&format!(
            "  - !lru-action-cache &cache{index}\n    storage: *storage{index}\n    \
             max-cached-refs: 100000\n    allow-updates: true\n    cache-failed-actions: true\n"
        ));
        instances.push_str(&format!(
            "  - name: \"{instance}\"\n    services:\n      - !action-cache\n        \
             cache: *cache{index}\n      - !cas\n        storage: *storage{index}\n      \
             - !bytestream\n        storage: *storage{index}\n"
        ));
    }
    format!(
        "server:\n  - !channel\n    address: \"127.0.0.1:{port}\"\n    insecure-mode: true\n\
         storages:\n{storages}caches:\n{caches}instances:\n{instances}"
    )
}

/// `test-support/reapi_worker.py`, found above the including crate's manifest directory.
pub fn worker_script() -> PathBuf {
    let mut dir = Some(Path::new(env!("CARGO_MANIFEST_DIR")));
    while let Some(here) = dir {
        let script = here.join("test-support/reapi_worker.py");
        if script.is_file() {
            return script;
        }
        dir = here.parent();
    }
    panic!(
        "test-support/reapi_worker.py not found above {}",
        env!("CARGO_MANIFEST_DIR")
    );
}

/// A process run under a `sh` supervisor holding a lifeline pipe: when the pipe closes (the
/// guard dropped, or the test process gone, even by SIGKILL), the supervisor kills the process
/// and runs `cleanup` (a shell line).
pub struct Supervised {
    supervisor: Child,
    lifeline: Option<ChildStdin>,
    pub log: PathBuf,
}

impl Supervised {
    /// Runs `program args…` with its output in `log`; `cleanup` runs after it is killed.
    pub fn spawn(
        program: &Path,
        args: &[&str],
        log: &Path,
        cleanup: &str,
        env: &[(&str, &str)],
    ) -> Supervised {
        let script = format!(
            "\"$@\" </dev/null &\npid=$!\ntrap '' HUP INT TERM\nread _ignored\nkill \"$pid\" 2>/dev/null\nwait \"$pid\" 2>/dev/null\n{cleanup}\n"
        );
        let log_file = std::fs::File::create(log).expect("a log file");
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut supervisor = command.spawn().expect("sh, to supervise a test process");
        let lifeline = supervisor.stdin.take();
        Supervised {
            supervisor,
            lifeline,
            log: log.to_path_buf(),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if let Some(mut lifeline) = self.lifeline.take() {
            let _ = lifeline.write_all(b"\n");
        }
        let _ = self.supervisor.wait();
    }
}

/// The test worker (`reapi_worker.py`, run by the Python of `bgd`'s venv) serving `server`
/// with the platform `OSFamily=linux`, `ISA=x86-64`; returns once it printed `worker ready`.
/// `cleanup` (a shell line) runs after the worker is killed.
pub fn start_worker(server: &BuildGrid, work_dir: &Path, cleanup: &str) -> Supervised {
    let python = server.bgd.with_file_name("python");
    let script = worker_script();
    let remote = format!("http://127.0.0.1:{}", server.port);
    let log = work_dir.join("worker.log");
    let worker = Supervised::spawn(
        &python,
        &[
            "-u",
            script.to_str().unwrap(),
            "--remote",
            &remote,
            "--property",
            "OSFamily=linux",
            "--property",
            "ISA=x86-64",
            "--work-dir",
            work_dir.to_str().unwrap(),
        ],
        &log,
        cleanup,
        &[],
    );
    let started = Instant::now();
    while !worker.log_text().contains("worker ready") {
        assert!(
            started.elapsed() < START_BOUND,
            "the test worker did not start; its log:\n{}\nthe server's log:\n{}",
            worker.log_text(),
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    worker
}
