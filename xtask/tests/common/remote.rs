//! The remote-cache fixture the HTTP and REAPI tests share: a workspace of two declared tasks,
//! a build against a remote cache, and what a correct build leaves; and the HTTP servers the
//! HTTP tests start on 127.0.0.1: nginx with WebDAV, and a hand-made one for what nginx never does.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{Repo, Run, sha256_hex};

/// Two tasks: `gen` (an input, a captured line of output) and `pack` (from gen's output, an
/// executable file). The remote-timeout is low so the stalled-server case ends quickly.
pub const BUNDLE: &str = r#"
[cache]
remote-timeout = 2

[tasks.gen]
run = "mkdir -p out && tr a-z A-Z < src/in.txt > out/data.txt && echo generated"
inputs = ["src/in.txt"]
outputs = ["out/data.txt"]

[tasks.pack]
run = "mkdir -p dist && cat out/data.txt out/data.txt > dist/pack.txt && chmod +x dist/pack.txt"
deps = ["gen"]
outputs = ["dist/pack.txt"]
"#;

pub const OUTPUTS: [&str; 2] = ["out/data.txt", "dist/pack.txt"];

pub const HMAC_KEY: (&str, &str) = ("XBUNDLE_REMOTE_CACHE_HMAC_KEY", "team secret");

pub fn workspace(input: &str) -> Repo {
    Repo::new(BUNDLE, &[("src/in.txt", input)])
}

/// A build of both tasks with the remote cache at `url`, and these extra arguments and
/// environment variables.
pub fn build(repo: &Repo, url: &str, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let mut args = vec!["task", "--remote-cache", url];
    args.extend_from_slice(extra);
    repo.json_env(&args, env)
}

pub fn source(run: &Run, id: &str) -> String {
    run.task(id)["source"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

pub fn uploaded(run: &Run) -> u64 {
    run.finished()["uploaded"].as_u64().expect("uploaded")
}

/// The outputs' contents and modes.
pub fn outputs(repo: &Repo) -> BTreeMap<String, (Vec<u8>, u32)> {
    OUTPUTS
        .iter()
        .map(|path| {
            let mode = std::fs::metadata(repo.join(path))
                .expect("output exists")
                .permissions()
                .mode()
                & 0o777;
            (path.to_string(), (repo.read_bytes(path), mode))
        })
        .collect()
}

/// What a correct build of `input` leaves.
pub fn assert_correct(repo: &Repo, input: &str) {
    let upper = input.to_uppercase();
    assert_eq!(repo.read("out/data.txt"), upper);
    assert_eq!(repo.read("dist/pack.txt"), format!("{upper}{upper}"));
    let mode = std::fs::metadata(repo.join("dist/pack.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "pack.txt is executable");
}

/// Every blob of the local store holds the bytes its name says.
pub fn assert_local_store_sound(repo: &Repo) {
    for blob in repo.state_files("cache/cas") {
        let name = blob.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&blob).unwrap();
        assert_eq!(
            sha256_hex(&bytes),
            name,
            "local blob {} is sound",
            blob.display()
        );
    }
}

/// A build of `input` with a failing remote cache: correct, every task run, and exactly one
/// warning, naming the server.
#[track_caller]
pub fn assert_degraded(run: &Run, repo: &Repo, input: &str, server: &str, why: &str) -> String {
    run.assert_code(0);
    let warnings = run.warnings();
    assert_eq!(warnings.len(), 1, "exactly one warning\n{run}");
    assert!(
        warnings[0].starts_with(&format!("remote cache {server}: "))
            && warnings[0].contains(why)
            && warnings[0]
                .ends_with("continuing with the local cache only for the rest of this run"),
        "{}",
        warnings[0]
    );
    assert_eq!(run.counts(), (2, 0, 0, 0), "{run}");
    assert_correct(repo, input);
    assert_local_store_sound(repo);
    warnings[0].clone()
}

/// A free port on 127.0.0.1 (nothing listens once this returns).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nginx serving a WebDAV root (PUT and GET), in a directory of its own; stopped on drop.
pub struct Nginx {
    pub child: Child,
    pub port: u16,
    pub dir: TempDir,
}

impl Nginx {
    /// `None` (the test skips) when nginx is not installed.
    pub fn start() -> Option<Nginx> {
        let program = Path::new("/usr/sbin/nginx");
        if !program.exists() && !super::have_tool("nginx", "nginx-light") {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("xbundle-nginx-")
            .tempdir()
            .unwrap();
        let path = dir.path();
        std::fs::create_dir(path.join("root")).unwrap();
        // A port picked now may be taken before nginx binds it: a few attempts.
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\npid {p}/nginx.pid;\n\
                 error_log {p}/error.log;\nevents {{ worker_connections 64; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {p}/body;\n\
                 proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fastcgi;\n\
                 uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n\
                 server {{\n    listen 127.0.0.1:{port};\n    root {p}/root;\n\
                 location / {{\n      dav_methods PUT;\n      create_full_put_path on;\n\
                 client_max_body_size 0;\n    }}\n  }}\n}}\n",
                p = path.display()
            );
            std::fs::write(path.join("nginx.conf"), config).unwrap();
            let mut child = Command::new(if program.exists() {
                program.as_os_str()
            } else {
                "nginx".as_ref()
            })
            .arg("-p")
            .arg(path)
            .arg("-c")
            .arg(path.join("nginx.conf"))
            .arg("-e")
            .arg(path.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(Nginx { child, port, dir });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "nginx did not start: {}",
            std::fs::read_to_string(path.join("error.log")).unwrap_or_default()
        );
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/cache", self.port)
    }

    /// The server's files for the cache (`ac/…`, `cas/…`), sorted.
    pub fn files(&self) -> Vec<String> {
        let mut found = Vec::new();
        for area in ["ac", "cas"] {
            if let Ok(entries) = std::fs::read_dir(self.area(area)) {
                for entry in entries {
                    let name = entry.unwrap().file_name().to_string_lossy().into_owned();
                    found.push(format!("{area}/{name}"));
                }
            }
        }
        found.sort();
        found
    }

    /// `<root>/cache/<area>`.
    pub fn area(&self, area: &str) -> PathBuf {
        self.dir.path().join("root/cache").join(area)
    }

    pub fn cache_root(&self) -> PathBuf {
        self.dir.path().join("root/cache")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A hand-made HTTP server on 127.0.0.1: `answer(method, path)` gives each response's raw
/// bytes (`None`: accept and never answer). Counts the requests.
pub struct Fake {
    pub port: u16,
    pub requests: Arc<AtomicUsize>,
    /// The `Authorization` headers received.
    pub authorizations: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    pub fn start(answer: impl Fn(&str, &str) -> Option<Vec<u8>> + Send + Sync + 'static) -> Fake {
        Fake::start_raw(move |method, path, stream| match answer(method, path) {
            Some(bytes) => {
                let close = bytes.windows(17).any(|w| w == b"Connection: close");
                stream.write_all(&bytes).is_ok() && !close
            }
            // A stall: hold the connection, answer nothing.
            None => {
                std::thread::sleep(Duration::from_secs(3600));
                false
            }
        })
    }

    /// A server whose `reply(method, path, stream)` writes each answer itself (slowly, in
    /// pieces, or not at all); `false` closes the connection.
    pub fn start_raw(
        reply: impl Fn(&str, &str, &mut TcpStream) -> bool + Send + Sync + 'static,
    ) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        let authorizations = Arc::new(Mutex::new(Vec::new()));
        let seen = authorizations.clone();
        let reply = Arc::new(reply);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let reply = reply.clone();
                let counted = counted.clone();
                let seen = seen.clone();
                held.push(stream.try_clone().unwrap());
                std::thread::spawn(move || serve(stream, &*reply, &counted, &seen));
            }
        });
        Fake {
            port,
            requests,
            authorizations,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/cache", self.port)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// One connection: requests one after another (keep-alive), each read whole (its body
/// discarded) and answered.
pub fn serve(
    stream: TcpStream,
    reply: &dyn Fn(&str, &str, &mut TcpStream) -> bool,
    counted: &AtomicUsize,
    seen: &Mutex<Vec<String>>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut words = line.split_whitespace();
        let method = words.next().unwrap_or("").to_string();
        let path = words.next().unwrap_or("").to_string();
        let mut length = 0u64;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
                if name.eq_ignore_ascii_case("authorization") {
                    seen.lock().unwrap().push(value.trim().to_string());
                }
            }
        }
        counted.fetch_add(1, Ordering::SeqCst);
        if std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink()).is_err() {
            return;
        }
        if !reply(&method, &path, &mut stream) {
            return;
        }
    }
}

pub fn response(status: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    bytes
}
