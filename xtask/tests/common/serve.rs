//! What the `serve` tests share: the small Go app their fixtures hold, and a running
//! `xtask serve` on a free port of 127.0.0.1, stopped when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The app's service.json: an API and a UI.
pub const SERVICE: &str = r#"{"service": {"name": "app", "version": "1.0.0", "type": "scenario"}, "ports": {"api": {"env_var": "API_PORT", "range": "15000-19999"}, "ui": {"env_var": "UI_PORT", "range": "35000-39999"}}}"#;

/// [`SERVICE`] needing postgres (so a swap has something to do).
pub const SERVICE_WITH_POSTGRES: &str = r#"{"service": {"name": "app", "version": "1.0.0", "type": "scenario"}, "ports": {"api": {"env_var": "API_PORT", "range": "15000-19999"}, "ui": {"env_var": "UI_PORT", "range": "35000-39999"}}, "dependencies": {"resources": {"postgres": {"type": "postgres", "enabled": true, "required": true}}}}"#;

/// The scenario `app`'s files with `service` as its service.json: a Go API that exits at once
/// and a static UI.
pub fn app_files(service: &str) -> [(&'static str, &str); 4] {
    [
        ("scenarios/app/.vrooli/service.json", service),
        (
            "scenarios/app/api/go.mod",
            "module example.com/app/api\n\ngo 1.19\n",
        ),
        (
            "scenarios/app/api/main.go",
            "package main\n\nimport \"os\"\n\nfunc main() { os.Exit(0) }\n",
        ),
        (
            "scenarios/app/ui/index.html",
            "<!doctype html><title>app</title>\n",
        ),
    ]
}

/// A running `xtask serve`; stopped on drop (with SIGTERM first when `graceful`, so a build
/// under way stops its commands, then SIGKILL).
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT`, without a trailing `/`.
    pub base: String,
    pub graceful: bool,
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.graceful && self.child.try_wait().is_ok_and(|status| status.is_none()) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            while std::time::Instant::now() < deadline
                && self.child.try_wait().is_ok_and(|status| status.is_none())
            {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command` (`repo.command()`) as `serve` on a free port with `extra` arguments, no
/// inherited token and `env`, and waits for its `serving` line.
pub fn start(mut command: Command, env: &[(&str, &str)], extra: &[&str]) -> Server {
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--message-format", "json"])
        .args(extra)
        .env_remove("XBUNDLE_SERVE_TOKEN")
        .envs(env.iter().copied())
        .stdout(Stdio::piped());
    let mut child = command.spawn().expect("start xtask serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("read the serving line");
    let event: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|err| panic!("not a JSON line: {line:?}: {err}"));
    assert_eq!(event["event"], "serving", "{line}");
    let base = event["url"]
        .as_str()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    Server {
        child,
        base,
        graceful: false,
    }
}
