//! Test helper services for the runtime's end-to-end tests and benchmark (not shipped):
//!
//! - `api`: an HTTP API on 127.0.0.1:$PORT: `/health`, `/api/hello` (says whether its secrets
//!   arrived, never their values), `/api/ws` (answers an upgrade with 101, then echoes bytes).
//!   It starts a child process (`sleeper`) to test that whole trees are stopped.
//! - `worker`: logs "Worker started successfully" and starts a child that leaves its process
//!   group (`sleeper --setsid`).
//! - `migrate NAME`: appends NAME to `$APP_DATA_DIR/migrations.log`.
//! - `check`: exits 0 (a `command` health check). `crash`: exits 3 at once. `sleeper`: sleeps.
//! - `flaky`: crashes on runs 1-3 and 5, on run 4 after `FLAKY_STABLE_MS`, then stays up.
//! - `flood BYTES`: writes BYTES bytes without a newline, then `flood done`, then sleeps.
//! - `hang NAME`: writes `NAME.pid`, starts a child (`NAME-child.pid`) and never ends (a
//!   migration or check that hangs).
//!
//! Each long-running mode writes its pid to `$APP_DATA_DIR/<mode>.pid` and its child's to
//! `$APP_DATA_DIR/<mode>-child.pid`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn data_dir() -> PathBuf {
    PathBuf::from(std::env::var("APP_DATA_DIR").expect("APP_DATA_DIR"))
}

fn write_pid(name: &str, pid: u32) {
    std::fs::write(data_dir().join(format!("{name}.pid")), pid.to_string()).unwrap();
}

fn spawn_child(name: &str, setsid: bool) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.arg("sleeper");
    if setsid {
        command.arg("--setsid");
    }
    let child = command.spawn().unwrap();
    write_pid(&format!("{name}-child"), child.id());
    std::mem::forget(child);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("api") => api(),
        Some("worker") => {
            write_pid("worker", std::process::id());
            spawn_child("worker", true);
            println!("Worker started successfully");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Some("migrate") => {
            let name = args.get(1).cloned().unwrap_or_default();
            println!("migrating {name}");
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(data_dir().join("migrations.log"))
                .unwrap();
            writeln!(file, "{name}").unwrap();
            if std::env::var_os("MIGRATE_FAIL").is_some() {
                eprintln!("migration {name} failed on purpose");
                std::process::exit(1);
            }
        }
        Some("check") => {}
        Some("hang") => {
            // A migration or check that never ends (with a child in its group).
            let name = args.get(1).cloned().unwrap_or_else(|| "hang".into());
            write_pid(&name, std::process::id());
            spawn_child(&name, false);
            println!("{name} hangs");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Some("flaky") => {
            // Run n (counted in $APP_DATA_DIR/flaky.count): 1-3 and 5 crash at once, 4 crashes
            // after FLAKY_STABLE_MS, later ones stay up.
            let path = data_dir().join("flaky.count");
            let n: u32 = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0)
                + 1;
            std::fs::write(&path, n.to_string()).unwrap();
            match n {
                1..=3 | 5 => std::process::exit(3),
                4 => {
                    let ms = std::env::var("FLAKY_STABLE_MS")
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1000);
                    std::thread::sleep(Duration::from_millis(ms));
                    std::process::exit(3);
                }
                _ => {
                    println!("flaky up");
                    loop {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            }
        }
        Some("flood") => {
            // BYTES bytes without a newline on stdout, then `flood done` on a line of its own.
            let total: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1 << 20);
            let chunk = vec![b'x'; 1 << 16];
            let mut out = std::io::stdout().lock();
            let mut left = total;
            while left > 0 {
                let n = left.min(chunk.len());
                out.write_all(&chunk[..n]).unwrap();
                left -= n;
            }
            out.write_all(b"\nflood done\n").unwrap();
            out.flush().unwrap();
            drop(out);
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Some("crash") => {
            eprintln!("crashing on purpose");
            std::process::exit(3);
        }
        Some("sleeper") => {
            if args.get(1).map(String::as_str) == Some("--setsid") {
                // SAFETY: plain syscall.
                unsafe { libc::setsid() };
            }
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        other => {
            eprintln!("testsvc: unknown mode {other:?}");
            std::process::exit(2);
        }
    }
}

fn api() {
    let port: u16 = std::env::var("PORT")
        .expect("PORT")
        .parse()
        .expect("PORT is a number");
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|err| {
        eprintln!("api: cannot bind {port}: {err}");
        std::process::exit(1);
    });
    write_pid("api", std::process::id());
    spawn_child("api", false);
    println!("api listening on {port}");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = handle(stream);
        });
    }
}

fn handle(mut stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut upgrade = false;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line.to_ascii_lowercase().starts_with("upgrade:") {
            upgrade = true;
        }
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_owned();
    if path == "/api/ws" && upgrade {
        stream.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")?;
        let mut buffer = [0u8; 1024];
        loop {
            let read = reader.read(&mut buffer)?;
            if read == 0 {
                return Ok(());
            }
            stream.write_all(&buffer[..read])?;
        }
    }
    let (status, body) = match path.as_str() {
        "/health" => ("200 OK", "{\"status\":\"healthy\"}".to_owned()),
        "/api/hello" => {
            let secret_set = std::env::var("API_SECRET").is_ok_and(|v| !v.is_empty());
            // Whether `${secret.api_secret}` was substituted into AUTH_HEADER (never the value).
            let templated = match (std::env::var("AUTH_HEADER"), std::env::var("API_SECRET")) {
                (Ok(header), Ok(secret)) => header == format!("Bearer {secret}"),
                _ => false,
            };
            let token_file = std::env::var("SECRET_FILE_TOKEN")
                .ok()
                .and_then(|path| std::fs::read_to_string(path).ok())
                .is_some_and(|v| v.len() == 24);
            (
                "200 OK",
                format!(
                    "{{\"hello\":\"world\",\"pid\":{},\"secret_set\":{secret_set},\"token_file\":{token_file},\"templated_secret\":{templated}}}",
                    std::process::id()
                ),
            )
        }
        _ => ("404 Not Found", "{}".to_owned()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
