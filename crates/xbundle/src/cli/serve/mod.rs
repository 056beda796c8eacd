//! `cargo xtask serve`: the seed's HTTP API over the very code the command line runs.
//!
//! Every endpoint runs a command of this command line in-process ([`run_captured`]): the
//! request becomes the command's arguments (each a separate argument, after the options, so a
//! value is never read as an option), the command runs with a captured [`Shell`] whose JSON
//! lines are collected instead of printed, and the answer is the payload of the command's
//! result event, byte for byte what `--message-format json` prints. The command line and the
//! API cannot disagree: there is one implementation.
//!
//! **Invariants:**
//! - It listens on loopback unless told otherwise; any other address needs a token
//!   (`XBUNDLE_SERVE_TOKEN`, or `--token-file`), and with a token every request must carry it
//!   (`Authorization: Bearer …`), compared in constant time.
//! - Request bodies are bounded ([`api::BODY_LIMIT`]); errors are JSON (`{"error", "field",
//!   "help"}`) with a 4xx status for what the client got wrong, 5xx only for the server's own
//!   failures.
//! - No CORS headers are sent unless `--cors-origin` names origins.
//! - Ctrl-C or SIGTERM stops it: no build starts any more, waiting builds end as failed, the
//!   running one is cancelled and waited for (its commands stopped, as on the command line),
//!   and requests under way get [`SHUTDOWN_GRACE`], not forever (a slow client cannot keep
//!   the server alive).

mod api;
mod builds;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use camino::{Utf8Path, Utf8PathBuf};
use clap::{Args, Parser};

use super::{Cli, find_root};
use crate::diagnostic::Diagnostic;
use crate::shell::{GREEN, Shell, Sink};

/// The variable holding the token (the other way is `--token-file`).
pub(super) const TOKEN_VARIABLE: &str = "XBUNDLE_SERVE_TOKEN";

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Address to listen on (a port of 0 picks a free one; any address other than loopback
    /// needs a token)
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:7870")]
    addr: SocketAddr,
    /// Read the API token from this file (default: the XBUNDLE_SERVE_TOKEN variable); with a
    /// token, every request must send `Authorization: Bearer TOKEN`
    #[arg(long, value_name = "FILE")]
    token_file: Option<Utf8PathBuf>,
    /// Let pages from this origin (`https://dash.example.org`) call the API from a browser
    /// (CORS); repeatable. Without it, no CORS header is sent
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
}

/// What a command run in-process printed and how it ended.
#[derive(Debug)]
pub(crate) struct Captured {
    pub code: u8,
    /// Its JSON lines, in order.
    pub lines: Vec<String>,
}

impl Captured {
    /// The raw JSON text of `key` in the first line whose `event` is `event`.
    pub fn payload(&self, event: &str, key: &str) -> Option<String> {
        self.lines.iter().find_map(|line| {
            let fields: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
                serde_json::from_str(line).ok()?;
            let name: String = serde_json::from_str(fields.get("event")?.get()).ok()?;
            (name == event).then(|| fields.get(key).map(|raw| raw.get().to_string()))?
        })
    }

    /// The diagnostic the command ended with, if any.
    pub fn diagnostic(&self) -> Option<serde_json::Value> {
        self.lines.iter().rev().find_map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).ok()?;
            (value["event"] == "diagnostic").then_some(value)
        })
    }
}

/// Runs `cargo xtask --root ROOT --message-format json ARGS…` in-process with a captured shell.
pub(crate) fn run_captured(root: &Utf8Path, args: &[String]) -> Captured {
    run_captured_with(root, args, Arc::new(|_: &str| {}))
}

/// [`run_captured`], each line also given to `also` as it comes (a build's live log).
pub(crate) fn run_captured_with(root: &Utf8Path, args: &[String], also: Sink) -> Captured {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let shell = Shell::capture(Arc::new(move |line: &str| {
        also(line);
        sink.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line.to_string());
    }));
    let argv = [
        "cargo-xtask",
        "--root",
        root.as_str(),
        "--message-format",
        "json",
    ]
    .into_iter()
    .map(str::to_string)
    .chain(args.iter().cloned());
    let code = match Cli::try_parse_from(argv) {
        Ok(mut cli) => {
            cli.jobs = cli.command.run_args().and_then(|run| run.jobs);
            match super::run(cli, &shell) {
                Ok(code) => code,
                Err(diagnostic) => {
                    shell.error(&diagnostic);
                    diagnostic.exit_code
                }
            }
        }
        Err(err) => {
            let first = err.to_string();
            let message = first
                .lines()
                .next()
                .unwrap_or("bad request")
                .trim_start_matches("error: ");
            shell.error(&Diagnostic::error(message.to_string()));
            2
        }
    };
    drop(shell);
    let lines = std::mem::take(&mut *lines.lock().unwrap_or_else(|e| e.into_inner()));
    Captured { code, lines }
}

/// How long requests under way may still take once the server is stopping.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a cancelled build may take to stop its commands.
const BUILD_STOP_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Ctrl-C or SIGTERM.
async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(term) => { term.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// The token from `--token-file` or the environment; `None` when neither is set.
fn token(args: &ServeArgs) -> Result<Option<String>, Diagnostic> {
    let text = match &args.token_file {
        Some(path) => Some(read_token_file(path)?),
        None => std::env::var(TOKEN_VARIABLE).ok(),
    };
    let Some(text) = text else { return Ok(None) };
    let token = text.trim().to_string();
    if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Diagnostic::error(
            "the API token must be at least 16 characters, without spaces",
        )
        .help("generate one, e.g. `openssl rand -hex 32`"));
    }
    Ok(Some(token))
}

/// The largest token file read (a token is a line of a few dozen characters).
const TOKEN_FILE_LIMIT: u64 = 4096;

/// `--token-file`: a regular file (a link to one is the file the operator named) of at most
/// [`TOKEN_FILE_LIMIT`] bytes; a device, a FIFO or a huge file is refused, never read on and on.
fn read_token_file(path: &Utf8Path) -> Result<String, Diagnostic> {
    use std::io::Read as _;
    let refused = |why: String| {
        Diagnostic::error(format!("--token-file {path}: {why}"))
            .help("name a readable regular file holding the token (one line)")
    };
    // Checked before opening: opening a FIFO would wait for a writer.
    let regular = |metadata: &std::fs::Metadata| {
        if !metadata.is_file() {
            Err(refused("not a regular file".into()))
        } else if metadata.len() > TOKEN_FILE_LIMIT {
            Err(refused(format!(
                "{} bytes, more than a token ({TOKEN_FILE_LIMIT} at most)",
                metadata.len()
            )))
        } else {
            Ok(())
        }
    };
    regular(&std::fs::metadata(path).map_err(|err| refused(err.to_string()))?)?;
    let file = std::fs::File::open(path).map_err(|err| refused(err.to_string()))?;
    // And again on what was opened (the name may have been replaced in between).
    regular(&file.metadata().map_err(|err| refused(err.to_string()))?)?;
    let mut bytes = Vec::new();
    file.take(TOKEN_FILE_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| refused(err.to_string()))?;
    if bytes.len() as u64 > TOKEN_FILE_LIMIT {
        return Err(refused(format!("more than {TOKEN_FILE_LIMIT} bytes")));
    }
    String::from_utf8(bytes).map_err(|_| refused("not UTF-8 text".into()))
}

/// `--cors-origin` values: each an origin (`scheme://host[:port]`, nothing after it).
fn cors_origins(given: &[String]) -> Result<Vec<axum::http::HeaderValue>, Diagnostic> {
    given
        .iter()
        .map(|origin| {
            let (scheme, rest) = origin.split_once("://").unwrap_or(("", ""));
            let valid = matches!(scheme, "http" | "https")
                && !rest.is_empty()
                && !rest.contains(['/', '?', '#', '@', ' '])
                && origin.is_ascii();
            valid
                .then(|| axum::http::HeaderValue::from_str(origin).ok())
                .flatten()
                .ok_or_else(|| {
                    Diagnostic::error(format!("--cors-origin `{origin}` is not an origin"))
                        .help("give scheme, host and port only, e.g. https://dash.example.org")
                })
        })
        .collect()
}

pub(super) fn serve(cli: &Cli, args: &ServeArgs, shell: &Shell) -> Result<u8, Diagnostic> {
    let root = match &cli.root {
        Some(root) => find_root(Some(root))?,
        None => find_root(None)?,
    };
    let token = token(args)?;
    if token.is_none() && !is_loopback(&args.addr) {
        return Err(Diagnostic::error(format!(
            "serving on {} (not loopback) needs a token",
            args.addr
        ))
        .help(format!(
            "set {TOKEN_VARIABLE} or pass --token-file FILE; clients then send `Authorization: Bearer TOKEN`"
        )));
    }
    let origins = cors_origins(&args.cors_origins)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Diagnostic::from)?;
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .map_err(|err| {
                Diagnostic::error(format!("could not listen on {}: {err}", args.addr))
                    .help("choose another --addr (a port of 0 picks a free one)")
            })?;
        let local = listener.local_addr().map_err(Diagnostic::from)?;
        let state = api::State::new(root, token);
        let builds = state.builds();
        let app = api::router(state, &origins);
        if shell.is_json() {
            shell.json(&serde_json::json!({"event": "serving", "url": format!("http://{local}/")}));
        } else {
            shell.status("Serving", GREEN, &format!("http://{local}/ (Ctrl-C stops)"));
        }
        let (stopping, mut stopped) = tokio::sync::watch::channel(false);
        let server = axum::serve(listener, app).with_graceful_shutdown({
            let builds = std::sync::Arc::clone(&builds);
            async move {
                stop_signal().await;
                // Nothing new starts, the waiting builds end (their log streams too) and the
                // running one stops as a build on the command line does on Ctrl-C.
                builds.stop();
                let _ = stopping.send(true);
            }
        });
        // Requests under way get a grace period, not forever: a client sending its body a
        // byte a second, or holding a stream open, does not keep the server alive.
        tokio::select! {
            served = server => served.map_err(Diagnostic::from)?,
            _ = async {
                let _ = stopped.wait_for(|stopping| *stopping).await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => {}
        }
        // The running build's commands are stopped and waited for before the process ends.
        let idle = tokio::task::spawn_blocking(move || builds.wait_idle(BUILD_STOP_LIMIT))
            .await
            .unwrap_or(false);
        if !idle {
            shell.warn("the running build did not stop in time: the server exits anyway");
        }
        Ok::<(), Diagnostic>(())
    });
    // A request's command still running (past the grace period) does not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    served?;
    Ok(0)
}
