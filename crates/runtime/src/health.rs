//! Health and readiness checks: `http` (GET answers 2xx, and a JSON body's `status`, when
//! present, is not `unhealthy`/`down`/`error`), `tcp` (a connection succeeds), `command`
//! (exits 0 within the timeout; run under the shim in a process group of its own, the whole
//! tree killed on timeout), `log_match` (a line matching the pattern was logged since
//! the service started).

use crate::logs::ServiceLog;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

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
            // Under the shim, like a service: its own process group, killed with the runtime,
            // and the whole tree killed when it overruns the timeout.
            let mut child = crate::process::spawn(&crate::process::ShimCommand {
                program: &program,
                args,
                cwd,
                env,
                grace: Duration::ZERO,
                pass_fds: &[],
                capture: false,
            })
            .map_err(|err| format!("cannot run {}: {err}", program.display()))?;
            match crate::process::wait_bounded(&mut child, timeout, Duration::ZERO) {
                Some(0) => Ok(()),
                Some(127) => Err(format!("cannot run {}", program.display())),
                Some(code) => Err(format!("check exited with code {code}")),
                None => Err("check timed out".into()),
            }
        }
    }
}
