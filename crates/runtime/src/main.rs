//! `xbundle-runtime`: the supervisor shipped inside every bundle. It reads the bundle's
//! `bundle.json` and runs the app's services on the user's machine.
//!
//! ```text
//! xbundle-runtime --bundle DIR [--app-data DIR] [--dry-run] [--stop-timeout-ms N]
//!                 [--open-ui] [--no-browser]
//! ```
//!
//! `--open-ui` (what installed launchers pass) opens the UI's address in the user's browser
//! once the app is ready (`xdg-open`, `open` or `start`; `XBUNDLE_BROWSER` names another
//! program); `--no-browser` cancels it. Either way the address is printed when ready.
//!
//! Start-up: load and validate the manifest (errors name the file, the field and the
//! problem); lock the app data directory (one runtime per install); open telemetry; verify the
//! bundle's assets (SHA-256, size, tree digests: once, then only what changed, see `assets`; a
//! mismatch is exit code 2); load the migration state; load or generate secrets; write the
//! control API token (0600); bind the control API on loopback; allocate ports (stable across
//! runs); start the services in dependency order ([`supervisor`]). `remote_fetch` secrets are
//! not fetched during start-up: the supervisor fetches them on a thread of its own from its
//! first turn, and the services that need them wait for them. SIGTERM, SIGINT, SIGHUP or `POST /shutdown` stop
//! everything in reverse order. Exit codes: 0 after a normal stop, 1 when a critical service
//! failed, 2 for a bad bundle or command line (a path of bundle.json that would leave the
//! bundle or app data directory included: see `confine`), 3 for an I/O error at start-up.
//!
//! App data layout: `secrets/<id>` (0600), `runtime/{lock,ports.json,migrations.json,assets.json}`, the
//! token file and `ipc-port` beside it, `logs/<service>.log` (or the service's `log_dir`), the
//! telemetry file, the services' `data_dirs`. The runtime uses an app data directory only if
//! it is new, empty, or one it made (`runtime/lock`): another program's directory (the
//! default is named after `app.name`) is refused, exit code 2 (see `plan`).
//!
//! Platform support: Linux. (Process-tree handling uses `prctl`; other platforms are not
//! done yet, see `process`.)

mod assets;
mod confine;
mod control;
mod health;
mod http;
mod logs;
mod migrations;
mod plan;
mod ports;
mod process;
mod secrets;
mod supervisor;
mod telemetry;
mod ui;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const DEFAULT_HEALTH_INTERVAL_MS: u64 = 500;
pub const DEFAULT_HEALTH_TIMEOUT_MS: u64 = 2000;
pub const DEFAULT_HEALTH_RETRIES: u32 = 3;
pub const DEFAULT_READINESS_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_STOP_TIMEOUT_MS: u64 = 10_000;

const USAGE: &str = "usage: xbundle-runtime --bundle DIR [--app-data DIR] [--dry-run] [--stop-timeout-ms N] [--open-ui] [--no-browser]";

struct Args {
    bundle: PathBuf,
    app_data: Option<PathBuf>,
    dry_run: bool,
    stop_timeout: Duration,
    /// Open the UI in the browser when ready (`--open-ui`, unless `--no-browser`).
    open_ui: bool,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut bundle = None;
    let mut app_data = None;
    let mut dry_run = false;
    let (mut open_ui, mut no_browser) = (false, false);
    let mut stop_timeout = Duration::from_millis(DEFAULT_STOP_TIMEOUT_MS);
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| iter.next().cloned())
                .ok_or(format!("{name} needs a value"))
        };
        match flag {
            "--bundle" => bundle = Some(PathBuf::from(value("--bundle")?)),
            "--app-data" => app_data = Some(PathBuf::from(value("--app-data")?)),
            "--dry-run" => dry_run = true,
            "--open-ui" => open_ui = true,
            "--no-browser" => no_browser = true,
            "--stop-timeout-ms" => {
                let text = value("--stop-timeout-ms")?;
                stop_timeout = Duration::from_millis(
                    text.parse()
                        .map_err(|_| format!("--stop-timeout-ms: not a number: {text}"))?,
                );
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Args {
        bundle: bundle.ok_or("--bundle DIR is required")?,
        app_data,
        dry_run,
        stop_timeout,
        open_ui: open_ui && !no_browser,
    })
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("--shim") {
        process::shim_main(&argv[1..]);
    }
    if argv.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return;
    }
    if argv.iter().any(|a| a == "--version" || a == "-V") {
        println!(
            "xbundle-runtime {} (bundle.json {})",
            env!("CARGO_PKG_VERSION"),
            manifest::FORMAT_VERSION
        );
        return;
    }
    // Before any thread exists, so every thread inherits the mask.
    process::block_stop_signals();
    let started = Instant::now();
    let args = match parse_args(&argv) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("xbundle-runtime: error: {err}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let plan = match plan::Plan::load(&args.bundle, args.app_data.as_deref()) {
        Ok(plan) => plan,
        Err(err) => {
            eprintln!("xbundle-runtime: error: {err}");
            std::process::exit(2);
        }
    };
    if args.dry_run {
        print!("{}", plan.render());
        return;
    }
    for warning in &plan.warnings {
        eprintln!("xbundle-runtime: warning: {warning}");
    }
    match start(plan, started, args.stop_timeout, args.open_ui) {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("xbundle-runtime: error: {err}");
            std::process::exit(3);
        }
    }
}

fn start(
    plan: plan::Plan,
    started: Instant,
    stop_grace: Duration,
    open_ui: bool,
) -> Result<i32, String> {
    let app_data = plan.app_data.clone();
    let manifest = &plan.manifest;
    let paths = &plan.paths;
    let io = |what: &std::path::Path, err: std::io::Error| format!("{}: {err}", what.display());
    // Everything below is written beneath the app data directory through `confine::Dir`:
    // never through a link, whatever is found there.
    let app = confine::Dir::create_root(&app_data).map_err(|e| io(&app_data, e))?;
    let runtime_rel = confine::RelPath::of(&["runtime"]);
    let runtime_dir = app
        .open_dir(&runtime_rel, true)
        .map_err(|e| io(&runtime_rel.under(&app_data), e))?;
    let lock = runtime_dir
        .open_rw("lock", 0o644)
        .map_err(|e| io(&runtime_dir.path().join("lock"), e))?;
    if lock.try_lock().is_err() {
        return Err(format!(
            "another xbundle-runtime is running for {}",
            app_data.display()
        ));
    }

    let telemetry = telemetry::Telemetry::open(&app, &paths.telemetry);
    telemetry.event(
        "runtime_start",
        serde_json::json!({"app": manifest.app.name, "version": manifest.app.version, "pid": std::process::id(), "platform": plan.platform}),
    );
    // The bundle's assets, before anything runs: a damaged bundle is refused (exit 2).
    match assets::verify(
        manifest,
        &paths.assets,
        &plan.bundle,
        &plan.bundle_dir,
        &runtime_dir,
    ) {
        Ok(report) => telemetry.event(
            "assets_verified",
            serde_json::json!({"hashed": report.hashed, "known": report.known}),
        ),
        Err(refusal) => {
            telemetry.event(
                "asset_checksum_mismatch",
                serde_json::json!({"service": refusal.service, "asset": refusal.path, "expected": refusal.expected, "found": refusal.found}),
            );
            eprintln!("xbundle-runtime: error: {}", refusal.message);
            return Ok(2);
        }
    }
    let migrations = migrations::Migrations::load(
        runtime_dir
            .try_clone()
            .map_err(|e| io(runtime_dir.path(), e))?,
        &manifest.app.version,
    );
    let secrets =
        secrets::Secrets::load(manifest, &app, &telemetry).map_err(|e| format!("secrets: {e}"))?;

    // The control API: token first, then the listener (the manifest's port, else any).
    let token = secrets::hex(&secrets::random_bytes(32));
    let token_dir = app
        .open_dir(&paths.token.parent(), true)
        .map_err(|e| io(&paths.token.parent().under(&app_data), e))?;
    let token_name = paths.token.file_name().unwrap_or("auth-token").to_owned();
    token_dir
        .replace(&token_name, token.as_bytes(), 0o600)
        .map_err(|e| io(&token_dir.path().join(&token_name), e))?;
    let host = if manifest.ipc.host == "localhost" {
        "127.0.0.1"
    } else {
        manifest.ipc.host.trim_matches(['[', ']'])
    };
    let listener = match TcpListener::bind((host, manifest.ipc.port)) {
        Ok(listener) => listener,
        Err(err) => {
            let listener = TcpListener::bind((host, 0)).map_err(|e| format!("control API: {e}"))?;
            let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
            eprintln!(
                "xbundle-runtime: warning: control port {} unavailable ({err}); using {port}",
                manifest.ipc.port
            );
            telemetry.event(
                "port_fallback",
                serde_json::json!({"wanted": manifest.ipc.port, "port": port}),
            );
            listener
        }
    };
    let control_port = listener
        .local_addr()
        .map_err(|e| format!("control API: {e}"))?
        .port();
    token_dir
        .replace(
            plan::PORT_FILE,
            format!("{control_port}\n").as_bytes(),
            0o644,
        )
        .map_err(|e| io(&token_dir.path().join(plan::PORT_FILE), e))?;

    // Service ports.
    let allocation = ports::allocate(manifest, &ports::load(&runtime_dir), control_port);
    ports::save(&runtime_dir, &allocation.ports)
        .map_err(|e| io(&runtime_dir.path().join(ports::FILE), e))?;

    let mut logs = Vec::new();
    let mut services = Vec::new();
    let mut held = allocation.held;
    for (service, log_dir) in manifest.services.iter().zip(&paths.log_dirs) {
        let name = format!("{}.log", service.id);
        let log = app
            .open_dir(log_dir, true)
            .and_then(|dir| logs::ServiceLog::open(dir, name.clone()))
            .map_err(|e| io(&log_dir.under(&app_data).join(&name), e))?;
        logs.push(log);
        let keys: Vec<(String, String)> = held
            .keys()
            .filter(|(id, _)| id == service.id.as_str())
            .cloned()
            .collect();
        let mine: BTreeMap<String, TcpListener> = keys
            .into_iter()
            .filter_map(|key| held.remove(&key).map(|listener| (key.1, listener)))
            .collect();
        let port_failures: Vec<&String> = allocation
            .failures
            .iter()
            .filter(|f| f.starts_with(&format!("{}.", service.id)))
            .collect();
        let (phase, detail) = if port_failures.is_empty() {
            (supervisor::Phase::Waiting, String::new())
        } else {
            let detail = port_failures
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            (supervisor::Phase::Failed, detail)
        };
        services.push(supervisor::ServiceState {
            phase,
            detail,
            shim_pid: None,
            generation: 0,
            restarts: 0,
            failures: 0,
            spawned_at: None,
            ready_after_ms: None,
            last_exit: None,
            backoff_until: None,
            migrated: false,
            migration_pid: None,
            missing_secrets: Vec::new(),
            held: mine,
        });
    }
    let critical_port_failure = manifest
        .services
        .iter()
        .zip(&services)
        .find(|(s, st)| s.is_critical() && st.phase == supervisor::Phase::Failed)
        .map(|(s, st)| format!("critical service `{}` failed: {}", s.id, st.detail));

    // `remote_fetch` secrets are fetched by the supervisor, on a thread of its own, from its
    // first turn: a slow vault holds up neither the start nor a stop signal.
    let fetch_retry = (!secrets.to_fetch(manifest).is_empty()).then(Instant::now);
    let (sender, receiver) = std::sync::mpsc::channel();
    let runtime = Arc::new(supervisor::Runtime {
        app,
        token,
        control_port,
        telemetry,
        logs,
        events: sender.clone(),
        started,
        stop_grace,
        open_ui,
        state: Mutex::new(supervisor::State {
            services,
            secrets,
            ports: allocation.ports,
            migrations,
            app_ready_ms: None,
            fetch_retry,
            fetch_failures: 0,
            fetching: false,
            shutting_down: false,
            fatal: critical_port_failure,
        }),
        plan,
    });
    control::serve(listener, Arc::clone(&runtime)).map_err(|e| format!("control API: {e}"))?;
    std::thread::spawn(move || {
        let signal = process::wait_for_stop_signal();
        let _ = sender.send(supervisor::Event::Shutdown(format!("signal {signal}")));
    });
    eprintln!(
        "xbundle-runtime: {} {} started; control API on 127.0.0.1:{control_port}",
        runtime.plan.manifest.app.name, runtime.plan.manifest.app.version
    );
    let code = supervisor::run(Arc::clone(&runtime), receiver);
    // The token is only good while this runtime runs.
    let _ = token_dir.remove_file(plan::PORT_FILE);
    let _ = token_dir.remove_file(&token_name);
    drop(lock);
    Ok(code)
}
