//! Health and readiness checks: `http` (GET answers 2xx, and a JSON body's `status`, when
//! present, is not `unhealthy`/`down`/`error`), `tcp` (a connection succeeds), `command`
//! (exits 0 within the timeout), `log_match` (a line matching the pattern was logged since
//! the service started).

use crate::logs::ServiceLog;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A resolved check.
#[derive(Clone)]
pub enum Check {
    Http {
        port: u16,
        path: String,
    },
    Tcp {
        port: u16,
    },
    Command {
        argv: Vec<String>,
        cwd: std::path::PathBuf,
        env: Vec<(String, String)>,
    },
    LogMatch {
        pattern: regex_lite::Regex,
    },
    /// Nothing to check (e.g. `dependencies_ready`).
    Always,
}

pub fn tcp_open(port: u16, timeout: Duration) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), timeout).is_ok()
}

/// Runs a check once.
pub fn run(check: &Check, timeout: Duration, log: &ServiceLog, since: u64) -> Result<(), String> {
    match check {
        Check::Always => Ok(()),
        Check::Tcp { port } => {
            if tcp_open(*port, timeout) {
                Ok(())
            } else {
                Err(format!("port {port} closed"))
            }
        }
        Check::Http { port, path } => {
            let url = format!("http://127.0.0.1:{port}{path}");
            let response =
                crate::http::get(&url, &[], timeout).map_err(|err| format!("GET {path}: {err}"))?;
            if !(200..300).contains(&response.status) {
                return Err(format!("GET {path}: HTTP {}", response.status));
            }
            if let Ok(body) = serde_json::from_slice::<serde_json::Value>(&response.body)
                && let Some(status) = body.get("status").and_then(|s| s.as_str())
                && matches!(status, "unhealthy" | "down" | "error")
            {
                return Err(format!("GET {path}: status {status}"));
            }
            Ok(())
        }
        Check::LogMatch { pattern } => {
            if log.matches_since(since, pattern) {
                Ok(())
            } else {
                Err(format!("no log line matches {pattern}"))
            }
        }
        Check::Command { argv, cwd, env } => {
            let Some((program, args)) = argv.split_first() else {
                return Err("empty command".into());
            };
            let program = if program.contains('/') && Path::new(program).is_relative() {
                cwd.join(program)
            } else {
                program.into()
            };
            let mut command = Command::new(&program);
            crate::process::with_clean_signals(&mut command);
            let mut child = command
                .args(args)
                .current_dir(cwd)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|err| format!("cannot run {}: {err}", program.display()))?;
            let deadline = Instant::now() + timeout;
            loop {
                if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                    return if status.success() {
                        Ok(())
                    } else {
                        Err(format!("check exited with {status}"))
                    };
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err("check timed out".into());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
