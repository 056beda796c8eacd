//! Attacks on `cargo xtask serve` (issue 13), each kept as a test: a token file that is no
//! small regular file (`/dev/zero`, a FIFO, a huge file); errors of the HTTP layer itself (a
//! path that is not UTF-8) that came as plain text; SIGTERM while a build runs, another waits
//! and clients hold its log or a slow body open (the server must stop the build's commands and
//! exit); log readers each holding a blocking thread; profile edits from two servers and the
//! command line at once (one was lost); the token's scheme in another case; and the queue's
//! bound under many requests at once (429, one build running); a command-line build waiting for
//! the server's build of the same workspace (the lock).

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::serve::Server;
use common::{Repo, copy_tree};
use serde_json::Value;

/// A running `xtask serve`, stopped with SIGTERM first on drop (a server killed outright
/// would leave a build's commands behind).
fn serve(repo: &Repo) -> Server {
    let mut server = common::serve::start(repo.command(), &[], &[]);
    server.graceful = true;
    server
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// A raw HTTP/1.1 GET of `path` (bytes as given, no encoding): status and body.
fn raw_get(server: &Server, path: &str) -> (u16, Vec<u8>, String) {
    let address = server.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete answer");
    let head = String::from_utf8_lossy(&answer[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, answer[split + 4..].to_vec(), head)
}

/// Waits at most `limit` for `child` to exit (a hang is the failure looked for, not a speed).
fn exited_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn a_token_file_that_is_no_small_regular_file_is_refused() {
    let repo = Repo::new("[workspace]\n", &[]);
    let fifo = repo.sandbox().join("token.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let huge = repo.sandbox().join("token.huge");
    std::fs::write(&huge, "a".repeat(1 << 20)).unwrap();
    let cases = [
        ("/dev/zero", "a device"),
        (fifo.to_str().unwrap(), "a FIFO"),
        (huge.to_str().unwrap(), "a 1 MiB file"),
    ];
    for (path, what) in cases {
        let mut child = repo
            .command()
            .args(["serve", "--addr", "127.0.0.1:0", "--token-file", path])
            .env_remove("XBUNDLE_SERVE_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Before: reading /dev/zero or the FIFO never ended; the 1 MiB file was a token.
        let status = exited_within(&mut child, Duration::from_secs(30));
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("--token-file {what}: the server neither refused it nor stopped");
        }
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(status.unwrap().code(), Some(2), "{what}: {stderr}");
        assert!(stderr.contains("--token-file"), "{what}: {stderr}");
    }
    // A link to a small regular file is the file (the operator named it).
    std::fs::write(repo.sandbox().join("token"), "0123456789abcdef0123\n").unwrap();
    std::os::unix::fs::symlink(
        repo.sandbox().join("token"),
        repo.sandbox().join("token.link"),
    )
    .unwrap();
    // It serves (`start` checks the `serving` line).
    let link = repo.sandbox().join("token.link");
    common::serve::start(
        repo.command(),
        &[],
        &["--token-file", link.to_str().unwrap()],
    );
}

#[test]
fn errors_of_the_http_layer_are_json_too() {
    let repo = Repo::new("[workspace]\n", &[]);
    let server = serve(&repo);
    // Not UTF-8 once decoded: axum's extractor refused it in plain text.
    for path in [
        "/api/v1/analyze/%ff",
        "/api/v1/secrets/%C3%28/bundle",
        "/api/v1/profiles/%80",
        "/api/v1/builds/%fe",
    ] {
        let (status, body, head) = raw_get(&server, path);
        assert_eq!(status, 400, "{path}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{path}: {head}"
        );
        let error: Value = serde_json::from_slice(&body).unwrap_or_else(|err| {
            panic!(
                "{path}: not JSON ({err}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        assert!(
            error["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{error}"
        );
    }
}

/// Live processes working in `repo` whose command line holds `marker`.
fn processes_with(repo: &Repo, marker: &str) -> Vec<String> {
    let dir = repo.path().canonicalize().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|entry| {
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let state = stat.rsplit_once(") ")?.1.split(' ').next()?.to_string();
            if state == "Z" || state == "X" {
                return None;
            }
            if !std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(&dir))
            {
                return None;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(marker).then_some(cmdline)
        })
        .collect()
}

/// Files under `dir` whose name marks them temporary (half-written).
fn temporaries(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            found.extend(temporaries(&path));
        } else {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.contains(".tmp") || name.starts_with(".xbundle-tmp") {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// A workspace with one profile packaging a small Go API as tar.gz, whose signer runs
/// `sleep` (a build of it is certainly running while the signer sleeps).
fn signing_app(sleep: &str) -> Repo {
    // `{in}` is the artifact, given to the sleep as a second, ignored argument.
    let toml = format!(
        "[workspace]\ndefault-profile = \"one\"\n\n[profiles.one]\nscenario = \"app\"\ntier = \"desktop\"\nplatforms = [\"linux-x64\"]\nformats = [\"tar.gz\"]\n\n[sign]\n\"tar.gz\" = \"sh -c '{sleep}' {{in}}\"\n"
    );
    let repo = Repo::in_sandbox(&toml, &common::serve::app_files(common::serve::SERVICE));
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    copy_tree(&source.join("platforms"), &repo.join("platforms"));
    repo
}

#[test]
fn sigterm_while_a_build_runs_and_clients_hold_connections_stops_the_build_and_the_server() {
    if !common::have_tool("go", "golang-go") {
        return;
    }
    let sleep = "sleep 3471";
    let repo = signing_app(sleep);
    let mut server = serve(&repo);
    let queue = || queue_package(&server);
    let build = queue();
    // A second build waits behind it; a client holds the waiting one's log open.
    let waiting = queue();
    let address = server.base.trim_start_matches("http://").to_string();
    let mut reader = TcpStream::connect(&address).unwrap();
    write!(
        reader,
        "GET {} HTTP/1.1\r\nHost: {address}\r\n\r\n",
        waiting["logs_url"].as_str().unwrap()
    )
    .unwrap();
    // And one sending a body very slowly (here: never finishing it).
    let mut slow = TcpStream::connect(&address).unwrap();
    write!(
        slow,
        "POST /api/v1/profiles HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"na"
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    while processes_with(&repo, sleep).is_empty() {
        assert!(Instant::now() < deadline, "the signer never started");
        let view: Value = serde_json::from_slice(
            &agent()
                .get(format!(
                    "{}/api/v1/builds/{}",
                    server.base,
                    build["build_id"].as_str().unwrap()
                ))
                .call()
                .unwrap()
                .body_mut()
                .read_to_vec()
                .unwrap(),
        )
        .unwrap();
        assert!(
            matches!(view["status"].as_str(), Some("queued" | "running")),
            "the build ended before its signer ran: {view}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = server.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    // Before: the open log kept the server waiting for its connections forever, the build
    // still running.
    let status = exited_within(&mut server.child, Duration::from_secs(60));
    assert!(
        status.is_some(),
        "SIGTERM: the server did not stop while clients held a build's log or a slow body open"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_with(&repo, sleep).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        processes_with(&repo, sleep),
        Vec::<String>::new(),
        "the build's commands outlived the server"
    );
    assert_eq!(temporaries(repo.path()), Vec::<String>::new());
    drop((reader, slow));
}

/// Queues a package build of profile `one` (signed); its view.
fn queue_package(server: &Server) -> Value {
    let mut response = agent()
        .post(format!("{}/api/v1/desktop/package", server.base))
        .header("Content-Type", "application/json")
        .send(br#"{"profile_id": "one", "sign": true}"#.as_slice())
        .unwrap();
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_vec().unwrap();
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice::<Value>(&body).unwrap()
}

/// Waits until a process whose command line holds `marker` works in `repo`.
fn wait_for_process(repo: &Repo, marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(240);
    while processes_with(repo, marker).is_empty() {
        assert!(Instant::now() < deadline, "`{marker}` never started");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn log_readers_hold_no_thread_of_the_server() {
    if !common::have_tool("go", "golang-go") {
        return;
    }
    let sleep = "sleep 3472";
    let repo = signing_app(sleep);
    let server = serve(&repo);
    queue_package(&server);
    let waiting = queue_package(&server);
    wait_for_process(&repo, sleep);
    let address = server.base.trim_start_matches("http://").to_string();
    let path = waiting["logs_url"].as_str().unwrap();
    // Readers of a build that waits: each answered (its head read), then silent.
    let readers: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut stream = TcpStream::connect(&address).unwrap();
            write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n").unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8];
            while !head.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).unwrap();
                head.push(byte[0]);
            }
            assert!(
                head.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&head)
            );
            stream
        })
        .collect();
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let threads: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Before: each reader waited on a thread of the blocking pool (512 of them stall every
    // request); now a reader is a connection and a task, no thread.
    assert!(
        threads < readers.len() / 2,
        "{threads} threads for {} readers of a build's log",
        readers.len()
    );
    drop(readers);
}

/// A copy of this repository's pipeline: bundle.toml, scenarios, resources, platforms.
fn demo() -> Repo {
    let repo = Repo::empty();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in ["scenarios", "resources", "platforms", "demo"] {
        copy_tree(&source.join(dir), &repo.join(dir));
    }
    repo.write(
        "bundle.toml",
        std::fs::read_to_string(source.join("bundle.toml")).unwrap(),
    );
    repo
}

#[test]
fn profile_edits_from_two_servers_and_the_command_line_at_once_are_all_kept() {
    let repo = demo();
    let servers = [serve(&repo), serve(&repo)];
    let scenario = "picker-wheel";
    let names: Vec<String> = (0..6).map(|i| format!("raced-{i}")).collect();
    std::thread::scope(|scope| {
        for (i, name) in names.iter().enumerate() {
            let server = &servers[i % 2];
            let repo = &repo;
            scope.spawn(move || {
                if i % 3 == 2 {
                    // The command line edits the same file meanwhile.
                    let run = repo.json(&[
                        "profile", "create", name, "--scenario", scenario, "--tier", "desktop",
                        "--swap", "postgres=sqlite", "--swap", "redis=in-process",
                    ]);
                    run.assert_code(0);
                    return;
                }
                let body = serde_json::json!({"name": name, "scenario": scenario, "tier": "desktop", "swaps": {"postgres": "sqlite", "redis": "in-process"}});
                let mut response = agent()
                    .post(format!("{}/api/v1/profiles", server.base))
                    .header("Content-Type", "application/json")
                    .send(body.to_string().as_bytes())
                    .unwrap();
                let status = response.status().as_u16();
                let body = response.body_mut().read_to_vec().unwrap();
                assert_eq!(status, 201, "{name}: {}", String::from_utf8_lossy(&body));
            });
        }
    });
    // Before: each edit read bundle.toml, then replaced it: a concurrent one was lost.
    let text = repo.read("bundle.toml");
    for name in &names {
        assert!(
            text.contains(&format!("[profiles.{name}]")),
            "profile {name} was lost:\n{text}"
        );
    }
}

#[test]
fn many_build_requests_at_once_fill_the_queue_then_get_429() {
    if !common::have_tool("go", "golang-go") {
        return;
    }
    let sleep = "sleep 3473";
    let repo = signing_app(sleep);
    let server = serve(&repo);
    queue_package(&server);
    wait_for_process(&repo, sleep);
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..30)
            .map(|_| {
                scope.spawn(|| {
                    let mut response = agent()
                        .post(format!("{}/api/v1/desktop/package", server.base))
                        .header("Content-Type", "application/json")
                        .send(br#"{"profile_id": "one", "sign": true}"#.as_slice())
                        .unwrap();
                    let status = response.status().as_u16();
                    let body = response.body_mut().read_to_vec().unwrap();
                    (status, serde_json::from_slice(&body).unwrap())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted = answers.iter().filter(|(status, _)| *status == 202).count();
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 429)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(accepted, 16, "{answers:?}");
    assert_eq!(refused.len(), 14, "{answers:?}");
    assert!(
        refused
            .iter()
            .all(|body| body["error"].is_string() && body["help"].is_string())
    );
    let builds = agent()
        .get(format!("{}/api/v1/builds", server.base))
        .call()
        .unwrap()
        .body_mut()
        .read_to_vec()
        .unwrap();
    let builds: Value = serde_json::from_slice(&builds).unwrap();
    let running = builds["builds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["status"] == "running")
        .count();
    assert_eq!(running, 1, "one build at a time: {builds}");
}

#[test]
fn the_token_scheme_is_case_insensitive_and_nothing_else_passes() {
    let repo = Repo::new("[workspace]\n", &[]);
    let token = "0123456789abcdef0123456789abcdef";
    let server = common::serve::start(repo.command(), &[("XBUNDLE_SERVE_TOKEN", token)], &[]);
    let status = |authorization: Option<&str>| {
        let mut request = agent().get(format!("{}/api/v1/profiles", server.base));
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        request.call().unwrap().status().as_u16()
    };
    // RFC 9110 §11.1: the scheme is case-insensitive (before: `bearer` was refused).
    for good in [
        format!("Bearer {token}"),
        format!("bearer {token}"),
        format!("BEARER {token}"),
    ] {
        assert_eq!(status(Some(&good)), 200, "{good}");
    }
    for bad in [
        None,
        Some(String::new()),
        Some(token.to_string()),
        Some(format!("Basic {token}")),
        Some(format!("Bearer {}", &token[..31])),
        Some(format!("Bearer {token}x")),
        Some(format!("Bearer {}", token.to_uppercase())),
        Some(format!("Bearer {token} {token}")),
        Some("Bearer".to_string()),
        Some(format!("Bearer\t{token}")),
        Some(format!("Bearer:{token}")),
    ] {
        assert_eq!(status(bad.as_deref()), 401, "{bad:?}");
    }
}

#[test]
fn malformed_bodies_are_400s_naming_the_field_at_fault() {
    let repo = demo();
    let before = repo.read("bundle.toml");
    let server = serve(&repo);
    let nested = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        // Before: a wrong type named its value (`1`), not its field.
        ("/api/v1/profiles", r#"{"name": 1, "scenario": "picker-wheel", "tier": "desktop"}"#.into(), Some("name")),
        ("/api/v1/profiles", r#"{"name": "x", "scenario": "picker-wheel", "tier": "desktop", "swaps": {"postgres": 5}}"#.into(), Some("swaps.postgres")),
        ("/api/v1/profiles", r#"{"name": "x", "scenario": "picker-wheel", "tier": "desktop", "platforms": [true]}"#.into(), Some("platforms[0]")),
        ("/api/v1/profiles", r#"{"name": "a", "name": "b", "scenario": "picker-wheel", "tier": "desktop"}"#.into(), Some("name")),
        ("/api/v1/profiles", r#"{"name": "x", "scenario": "picker-wheel", "tier": "desktop", "evil": 1}"#.into(), Some("evil")),
        ("/api/v1/profiles", r#"{"scenario": "picker-wheel", "tier": "desktop"}"#.into(), Some("name")),
        ("/api/v1/profiles", r#"{"name": "x", "scen"#.into(), None),
        ("/api/v1/profiles", nested, None),
        ("/api/v1/desktop/package", r#"{"profile_id": "notes-desktop", "sign": "yes"}"#.into(), Some("sign")),
        ("/api/v1/secrets/classify", r#"{"owner": "postgres", "secret": "x", "tier": ["desktop"]}"#.into(), Some("tier")),
        ("/api/v1/bundles/export", r#"{"profile_id": "notes-desktop"} trailing"#.into(), None),
    ];
    for (path, body, field) in cases {
        let mut response = agent()
            .post(format!("{}{path}", server.base))
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .unwrap();
        let status = response.status().as_u16();
        let answer: Value =
            serde_json::from_slice(&response.body_mut().read_to_vec().unwrap()).unwrap();
        let shown = &body[..body.len().min(80)];
        assert_eq!(status, 400, "{shown}: {answer}");
        assert_eq!(answer["field"].as_str(), field, "{shown}: {answer}");
    }
    assert_eq!(
        repo.read("bundle.toml"),
        before,
        "a refused body wrote nothing"
    );
}

#[test]
fn a_command_line_build_waits_for_the_servers_build_of_the_same_workspace() {
    if !common::have_tool("go", "golang-go") {
        return;
    }
    let sleep = "sleep 3474";
    let repo = signing_app(sleep);
    let server = serve(&repo);
    queue_package(&server);
    wait_for_process(&repo, sleep);
    let mut cli = repo
        .command()
        .args(["bundle", "one", "--message-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(cli.stdout.take().unwrap()).lines();
    let waiting = lines.by_ref().map_while(Result::ok).find(|line| {
        serde_json::from_str::<Value>(line).is_ok_and(|event| {
            event["event"] == "warning"
                && event["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("workspace lock"))
        })
    });
    // One signer: the command line's build has not started beside the server's.
    let running: Vec<String> = processes_with(&repo, sleep)
        .into_iter()
        .filter(|cmdline| cmdline.starts_with("sleep "))
        .collect();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &cli.id().to_string()])
        .status();
    let code = exited_within(&mut cli, Duration::from_secs(30));
    if code.is_none() {
        let _ = cli.kill();
        let _ = cli.wait();
    }
    assert!(
        waiting.is_some(),
        "the command line's build never waited for the lock"
    );
    assert_eq!(running.len(), 1, "{running:?}");
    assert!(code.is_some(), "the waiting build did not stop on SIGTERM");
}
