//! The dashboard of `cargo xtask serve` in headless Chromium (Debian's `chromium`), driven
//! over the DevTools protocol on a pipe (`--remote-debugging-pipe`: NUL-terminated JSON on
//! fds 3 and 4, no extra crate): the profile list and the DAG render, a build started by
//! clicking the page's button finishes, its artifact link downloads the very file, and no
//! console error or exception happens on the way; with a token, the page asks for it and then
//! works the same. Screenshots are kept in the test's target directory
//! (`target/tmp/dashboard.png`, `dashboard-with-token.png`).
//!
//! Needs Go (the fixture's API) and Chromium: when missing, the test fails under
//! `XBUNDLE_REQUIRE_TOOLS=1` (CI) and skips otherwise.

use crate::common;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::serve::Server;
use common::{Repo, copy_tree};
use serde_json::{Value, json};

/// One scenario (a small Go API and a static UI) and one profile packaging it as tar.gz.
fn app() -> Repo {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let repo = Repo::new(
        "[workspace]\ndefault-profile = \"one\"\n\n[profiles.one]\nscenario = \"app\"\ntier = \"desktop\"\nplatforms = [\"linux-x64\"]\nformats = [\"tar.gz\"]\nswaps = { postgres = \"sqlite\" }\n\n[profiles.two]\nscenario = \"app\"\ntier = \"saas\"\nplatforms = [\"linux-x64\"]\nformats = [\"tar.gz\"]\n",
        &common::serve::app_files(common::serve::SERVICE_WITH_POSTGRES),
    );
    copy_tree(&source.join("platforms"), &repo.join("platforms"));
    copy_tree(&source.join("resources"), &repo.join("resources"));
    repo
}

fn serve(repo: &Repo, token: Option<&str>) -> Server {
    let env: Vec<(&str, &str)> = token
        .map(|t| ("XBUNDLE_SERVE_TOKEN", t))
        .into_iter()
        .collect();
    common::serve::start(repo.command(), &env, &[])
}

/// Chromium driven over `--remote-debugging-pipe`.
struct Browser {
    child: Child,
    commands: std::fs::File,
    messages: mpsc::Receiver<Value>,
    /// Events received while waiting for answers.
    events: VecDeque<Value>,
    next: u64,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two new descriptors, owned from here on.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl Browser {
    fn start() -> Browser {
        use std::os::fd::AsRawFd;
        let profile = tempfile::tempdir().unwrap();
        let (command_read, command_write) = pipe();
        let (answer_read, answer_write) = pipe();
        let (to_child, from_child) = (command_read.as_raw_fd(), answer_write.as_raw_fd());
        let mut command = Command::new("chromium");
        command
            .args([
                "--headless",
                "--disable-gpu",
                "--no-sandbox",
                "--no-first-run",
                "--disable-extensions",
                "--remote-debugging-pipe",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .env("HOME", profile.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only dup2 (async-signal-safe) between fork and exec; the targets 3 and 4
        // are the descriptors Chromium reads commands from and writes answers to.
        unsafe {
            command.pre_exec(move || {
                // Moved above 10 first: either pipe end may already be 3 or 4 (and dup2 onto
                // itself would keep its close-on-exec flag).
                let high_in = libc::fcntl(to_child, libc::F_DUPFD, 10);
                let high_out = libc::fcntl(from_child, libc::F_DUPFD, 10);
                if high_in < 0
                    || high_out < 0
                    || libc::dup2(high_in, 3) < 0
                    || libc::dup2(high_out, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start chromium");
        drop((command_read, answer_write));
        let (sender, messages) = mpsc::channel();
        let mut answers = std::fs::File::from(answer_read);
        std::thread::spawn(move || {
            let mut buffer = Vec::new();
            let mut chunk = [0u8; 65536];
            while let Ok(n) = answers.read(&mut chunk) {
                if n == 0 {
                    return;
                }
                buffer.extend_from_slice(&chunk[..n]);
                while let Some(end) = buffer.iter().position(|&b| b == 0) {
                    let message: Vec<u8> = buffer.drain(..=end).collect();
                    if let Ok(value) = serde_json::from_slice(&message[..end])
                        && sender.send(value).is_err()
                    {
                        return;
                    }
                }
            }
        });
        Browser {
            child,
            commands: std::fs::File::from(command_write),
            messages,
            events: VecDeque::new(),
            next: 0,
            session: None,
            _profile: profile,
        }
    }

    /// Sends `method` (to the page's session once attached, unless `browser`), returns its result.
    fn call_on(&mut self, browser: bool, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let (false, Some(session)) = (browser, &self.session) {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands.write_all(&bytes).expect("write to chromium");
        loop {
            let message = self
                .messages
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("chromium did not answer {method}"));
            if message["id"] == id {
                assert!(message.get("error").is_none(), "{method}: {message}");
                return message["result"].clone();
            }
            self.events.push_back(message);
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.call_on(false, method, params)
    }

    fn evaluate(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Waits (bounded: a failure, not a timing assertion) until `expression` is true.
    fn wait_for(&mut self, expression: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            // While the page loads, the expression may throw (no body yet): not yet true.
            let result = self.call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            );
            if result.get("exceptionDetails").is_none() && result["result"]["value"] == json!(true)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let page = self.evaluate("document.body.innerText");
        panic!("{what} never happened; the page says:\n{page}");
    }

    /// The console errors, exceptions and error log entries seen so far.
    fn errors(&mut self) -> Vec<Value> {
        while let Ok(message) = self.messages.try_recv() {
            self.events.push_back(message);
        }
        self.events
            .iter()
            .filter(|event| match event["method"].as_str() {
                Some("Runtime.exceptionThrown") => true,
                Some("Runtime.consoleAPICalled") => event["params"]["type"] == "error",
                Some("Log.entryAdded") => event["params"]["entry"]["level"] == "error",
                _ => false,
            })
            .cloned()
            .collect()
    }
}

#[test]
fn the_dashboard_renders_builds_from_a_click_and_downloads_the_artifact() {
    if !common::have_tool("chromium", "chromium") || !common::have_tool("go", "golang-go") {
        return;
    }
    let repo = app();
    let server = serve(&repo, None);
    let downloads = tempfile::tempdir().unwrap();
    let mut browser = open(&server, &downloads);
    drive(&mut browser, &repo, &downloads, "dashboard.png");
    let errors = browser.errors();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

/// A browser on the dashboard of `server`, downloads going to `downloads`.
fn open(server: &Server, downloads: &tempfile::TempDir) -> Browser {
    let mut browser = Browser::start();
    let target = browser.call("Target.createTarget", json!({"url": "about:blank"}));
    let attached = browser.call(
        "Target.attachToTarget",
        json!({"targetId": target["targetId"], "flatten": true}),
    );
    browser.session = Some(attached["sessionId"].as_str().unwrap().to_string());
    for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
        browser.call(domain, json!({}));
    }
    browser.call_on(
        true,
        "Browser.setDownloadBehavior",
        json!({"behavior": "allow", "downloadPath": downloads.path(), "eventsEnabled": true}),
    );
    browser.call("Page.navigate", json!({"url": format!("{}/", server.base)}));
    browser
}

/// Checks the page's lists and DAG, builds from the button and downloads the artifact.
fn drive(browser: &mut Browser, repo: &Repo, downloads: &tempfile::TempDir, screenshot: &str) {
    // The profile list, the selected profile's fitness and secret plan, and the DAG.
    browser.wait_for(
        "document.body.dataset.loaded === 'true' && document.querySelectorAll('#profiles tbody tr').length === 2",
        "the profile list",
    );
    browser.wait_for(
        "(() => { const img = document.getElementById('dag'); return img.complete && img.naturalWidth > 0; })()",
        "the DAG image",
    );
    browser.wait_for(
        "document.querySelectorAll('#fitness tbody tr').length === 5",
        "the fitness table",
    );
    let profiles = browser.evaluate(
        "[...document.querySelectorAll('#profiles tbody tr')].map(tr => tr.dataset.profile)",
    );
    assert_eq!(profiles, json!(["one", "two"]));

    // A build started from the page, its log followed live, its artifact downloaded.
    browser.evaluate("document.querySelector('button[data-build=\"one\"]').click()");
    browser.wait_for(
        "document.querySelector('[data-build-status=\"succeeded\"]') !== null && document.querySelector('a.artifact[download$=\".tar.gz\"]') !== null",
        "a finished build with its artifact",
    );
    let log = browser.evaluate("document.getElementById('log').textContent");
    assert!(log.as_str().unwrap().contains("build-finished"), "{log}");
    browser.evaluate("document.querySelector('a.artifact[download$=\".tar.gz\"]').click()");
    let downloaded = downloads.path().join("one-linux-x64.tar.gz");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !downloaded.is_file() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let expected = repo.read_bytes("dist/one/packages/one-linux-x64.tar.gz");
    let mut got = std::fs::read(&downloaded).unwrap_or_default();
    while got.len() < expected.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        got = std::fs::read(&downloaded).unwrap_or_default();
    }
    assert!(
        got == expected,
        "the downloaded artifact differs from the built one"
    );

    let shot = browser.call("Page.captureScreenshot", json!({"format": "png"}));
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join(screenshot);
    std::fs::write(&kept, &png).unwrap();
    eprintln!("screenshot: {}", kept.display());
}

#[test]
fn with_a_token_the_dashboard_asks_for_it_and_then_works_the_same() {
    if !common::have_tool("chromium", "chromium") || !common::have_tool("go", "golang-go") {
        return;
    }
    let token = "0123456789abcdef0123456789abcdef";
    let repo = app();
    let server = serve(&repo, Some(token));
    let downloads = tempfile::tempdir().unwrap();
    let mut browser = open(&server, &downloads);
    browser.wait_for(
        "document.getElementById('token-form') !== null && !document.getElementById('token-form').hidden",
        "the token form",
    );
    // Nothing of the workspace is shown before the token is given.
    let shown = browser.evaluate("document.querySelectorAll('#profiles tbody tr').length");
    assert_eq!(shown, json!(0));
    browser.evaluate(&format!(
        "document.getElementById('token').value = '{token}'; document.querySelector('#token-form button').click()"
    ));
    drive(&mut browser, &repo, &downloads, "dashboard-with-token.png");
    // The only errors: the requests refused before the token was given.
    let errors: Vec<Value> = browser
        .errors()
        .into_iter()
        .filter(|event| {
            !(event["method"] == "Log.entryAdded"
                && event["params"]["entry"]["text"]
                    .as_str()
                    .is_some_and(|text| text.contains("status of 401")))
        })
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}
