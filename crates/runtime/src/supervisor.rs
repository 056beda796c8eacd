//! The supervisor: starts services in dependency order once their secrets are there, waits
//! for readiness, watches health, restarts crashes with capped exponential backoff, and stops
//! everything in reverse order.
//!
//! One thread (the caller of [`run`]) owns every decision; the other threads (process
//! waiters, readiness and health monitors, migration runners, the `remote_fetch` fetcher, the
//! control API, the signal watcher) only send it [`Event`]s. The state the control API reads is behind one mutex,
//! never held while a child process runs: a service's migrations run on a thread of their own
//! (the service stays `starting`, detail `running migration V`), and a stop signals the
//! running migration's tree like a service's.
//!
//! Restart policy (Docker's): a crashed service restarts after 100 ms, doubling up to 60 s;
//! a run of 10 s (`XBUNDLE_RUNTIME_STABLE_AFTER_MS`) resets the count. After [`MAX_CONSECUTIVE_FAILURES`] failures in a row a
//! `critical` service stops the whole app (exit code 1, `app_failed`), another is reported as
//! `failed` and left stopped. A service that fails its readiness check in time, or its health
//! check `retries` times in a row, is stopped and counts as a failure.

use crate::health::{self, Check};
use crate::logs::ServiceLog;
use crate::migrations::Migrations;
use crate::plan::{Launch, Plan, env_suffix};
use crate::ports::PortMap;
use crate::process;
use crate::secrets::{SecretState, Secrets};
use crate::telemetry::Telemetry;
use manifest::template::{self, Piece};
use manifest::{HealthType, ReadinessType, SecretTargetType};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const MAX_CONSECUTIVE_FAILURES: u32 = 5;
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(60);
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// How long a run must last to reset the failure count: [`STABLE_AFTER`], or
/// `XBUNDLE_RUNTIME_STABLE_AFTER_MS` (a knob for tests and tuning).
fn stable_after() -> Duration {
    static VALUE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *VALUE.get_or_init(|| {
        std::env::var("XBUNDLE_RUNTIME_STABLE_AFTER_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(STABLE_AFTER)
    })
}
const READINESS_POLL: Duration = Duration::from_millis(10);

/// What the supervisor thread is told.
pub enum Event {
    Exited {
        service: usize,
        generation: u64,
        code: i32,
    },
    Ready {
        service: usize,
        generation: u64,
    },
    NotReady {
        service: usize,
        generation: u64,
        reason: String,
    },
    Unhealthy {
        service: usize,
        generation: u64,
        reason: String,
    },
    /// A service's migrations finished (or one failed, or the runtime is stopping).
    Migrated {
        service: usize,
        result: Result<(), String>,
    },
    SecretsChanged,
    Shutdown(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Waiting,
    Blocked,
    Starting,
    Ready,
    Backoff,
    Stopping,
    Stopped,
    Failed,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Blocked => "blocked",
            Phase::Starting => "starting",
            Phase::Ready => "ready",
            Phase::Backoff => "backoff",
            Phase::Stopping => "stopping",
            Phase::Stopped => "stopped",
            Phase::Failed => "failed",
        }
    }
}

pub struct ServiceState {
    pub phase: Phase,
    pub detail: String,
    pub shim_pid: Option<u32>,
    pub generation: u64,
    pub restarts: u32,
    pub failures: u32,
    pub spawned_at: Option<Instant>,
    pub ready_after_ms: Option<u64>,
    pub last_exit: Option<i32>,
    pub backoff_until: Option<Instant>,
    pub migrated: bool,
    /// The shim of the migration running now.
    pub migration_pid: Option<u32>,
    pub missing_secrets: Vec<String>,
    pub held: BTreeMap<String, TcpListener>,
}

pub struct State {
    pub services: Vec<ServiceState>,
    pub secrets: Secrets,
    pub ports: PortMap,
    pub migrations: Migrations,
    pub app_ready_ms: Option<u64>,
    /// When to retry the failed `remote_fetch` secrets, and how many tries failed so far.
    pub fetch_retry: Option<Instant>,
    pub fetch_failures: u32,
    pub fetching: bool,
    pub shutting_down: bool,
    pub fatal: Option<String>,
}

/// Everything the threads share.
pub struct Runtime {
    pub plan: Plan,
    /// The app data directory, opened: data dirs are created beneath it (see `confine`).
    pub app: crate::confine::Dir,
    pub token: String,
    pub control_port: u16,
    pub telemetry: Telemetry,
    pub logs: Vec<Arc<ServiceLog>>,
    pub events: Sender<Event>,
    pub started: Instant,
    pub stop_grace: Duration,
    /// Open the UI in the user's browser once the app is ready.
    pub open_ui: bool,
    pub state: Mutex<State>,
}

impl Runtime {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn send(&self, event: Event) {
        let _ = self.events.send(event);
    }
    fn id(&self, index: usize) -> &str {
        self.plan.manifest.services[index].id.as_str()
    }
    /// Whether the app counts as ready: every service is ready, except non-critical ones
    /// the supervisor gave up on (see [`Runtime::given_up`]), which `/status` reports.
    pub fn all_ready(&self, state: &State) -> bool {
        (0..state.services.len())
            .all(|i| state.services[i].phase == Phase::Ready || self.ignorable(state, i))
    }

    /// A non-critical service that will not run in this session, so `/readyz` does not wait
    /// for it.
    pub fn ignorable(&self, state: &State, index: usize) -> bool {
        !self.plan.manifest.services[index].is_critical() && self.given_up(state, index)
    }

    /// A service that will not run in this session: `failed`, or held back by a dependency
    /// that will not run (directly or through other dependencies).
    pub fn given_up(&self, state: &State, index: usize) -> bool {
        fn visit(runtime: &Runtime, state: &State, index: usize, seen: &mut Vec<usize>) -> bool {
            match state.services[index].phase {
                Phase::Failed => true,
                Phase::Waiting | Phase::Blocked if !seen.contains(&index) => {
                    seen.push(index);
                    let manifest = &runtime.plan.manifest;
                    manifest.services[index].dependencies().iter().any(|dep| {
                        manifest
                            .services
                            .iter()
                            .position(|s| &s.id == dep)
                            .is_some_and(|d| visit(runtime, state, d, seen))
                    })
                }
                _ => false,
            }
        }
        visit(self, state, index, &mut Vec::new())
    }
}

pub fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(20);
    (BACKOFF_START * factor).min(BACKOFF_CAP)
}

/// Substitutes `${service.port}`, `${data}` and `${bundle}`; unknown templates (and
/// `${secret.ID}`, which only service env may use) stay as written.
pub fn expand(text: &str, runtime: &Runtime, ports: &PortMap) -> String {
    expand_with_secrets(text, runtime, ports, &|_| None)
}

/// [`expand`], also substituting `${secret.ID}` with what `secret` gives for ID.
pub fn expand_with_secrets(
    text: &str,
    runtime: &Runtime,
    ports: &PortMap,
    secret: &dyn Fn(&str) -> Option<String>,
) -> String {
    let mut out = String::new();
    for piece in template::parse(text) {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Data => out.push_str(&runtime.plan.app_data.to_string_lossy()),
            Piece::Bundle => out.push_str(&runtime.plan.bundle_dir.to_string_lossy()),
            Piece::Port { service, port } => match ports.get(service).and_then(|p| p.get(port)) {
                Some(number) => out.push_str(&number.to_string()),
                None => out.push_str(&format!("${{{service}.{port}}}")),
            },
            Piece::Secret(id) => match secret(id) {
                Some(value) => out.push_str(&value),
                None => out.push_str(&format!("${{secret.{id}}}")),
            },
            Piece::Unknown(raw) => out.push_str(raw),
        }
    }
    out
}

/// The supervisor loop; returns the process exit code.
pub fn run(runtime: Arc<Runtime>, events: Receiver<Event>) -> i32 {
    loop {
        let to_start = schedule(&runtime);
        for index in to_start {
            start(&runtime, index);
        }
        refetch(&runtime);
        let wait = {
            let state = runtime.lock();
            let now = Instant::now();
            state
                .services
                .iter()
                .filter_map(|s| s.backoff_until)
                .chain(state.fetch_retry.filter(|_| !state.fetching))
                .map(|until| until.saturating_duration_since(now))
                .min()
                .unwrap_or(Duration::from_secs(1))
        };
        match events.recv_timeout(wait) {
            Ok(Event::Shutdown(why)) => {
                eprintln!("xbundle-runtime: stopping ({why})");
                runtime
                    .telemetry
                    .event("runtime_stop", json!({ "reason": why }));
                break;
            }
            Ok(event) => handle(&runtime, event),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if let Some(fatal) = runtime.lock().fatal.clone() {
            eprintln!("xbundle-runtime: error: {fatal}");
            runtime
                .telemetry
                .event("app_failed", json!({ "reason": fatal }));
            break;
        }
    }
    shutdown(&runtime, &events);
    if runtime.lock().fatal.is_some() { 1 } else { 0 }
}

/// Retries the failed `remote_fetch` secrets when due, on a thread of its own (a fetch may
/// take its whole timeout); the services held back for them start on the next `schedule`.
fn refetch(runtime: &Arc<Runtime>) {
    {
        let mut state = runtime.lock();
        let due = state.fetch_retry.is_some_and(|at| at <= Instant::now());
        if !due || state.fetching || state.shutting_down {
            return;
        }
        state.fetching = true;
    }
    let runtime = Arc::clone(runtime);
    std::thread::spawn(move || {
        let manifest = &runtime.plan.manifest;
        let wanted = runtime.lock().secrets.to_fetch(manifest);
        let fetched: Vec<_> = wanted
            .into_iter()
            .map(|secret| (secret, crate::secrets::fetch(secret)))
            .collect();
        let mut state = runtime.lock();
        let mut left = 0;
        for (secret, fetched) in fetched {
            let id = secret.id.to_string();
            match &fetched {
                SecretState::Set(_) => runtime
                    .telemetry
                    .event("secret_fetched", json!({ "secret": id })),
                SecretState::Unavailable(why) => {
                    left += 1;
                    let same = matches!(state.secrets.states.get(&id), Some(SecretState::Unavailable(before)) if before == why);
                    if !same {
                        runtime
                            .telemetry
                            .event("secret_fetch_failed", json!({"secret": id, "reason": why}));
                    }
                }
                SecretState::Missing => left += 1,
            }
            state.secrets.states.insert(id, fetched);
        }
        state.fetching = false;
        if left == 0 {
            state.fetch_retry = None;
        } else {
            state.fetch_failures += 1;
            state.fetch_retry =
                Some(Instant::now() + crate::secrets::retry_delay(state.fetch_failures));
        }
        drop(state);
        runtime.send(Event::SecretsChanged);
    });
}

/// Decides which services can start now; marks them `starting`.
fn schedule(runtime: &Runtime) -> Vec<usize> {
    let mut state = runtime.lock();
    if state.shutting_down || state.fatal.is_some() {
        return Vec::new();
    }
    let manifest = &runtime.plan.manifest;
    let now = Instant::now();
    let mut to_start = Vec::new();
    for &index in &runtime.plan.order {
        let service = &manifest.services[index];
        match state.services[index].phase {
            Phase::Waiting | Phase::Blocked => {}
            Phase::Backoff
                if state.services[index]
                    .backoff_until
                    .is_some_and(|until| until <= now) =>
            {
                state.services[index].phase = Phase::Starting;
                to_start.push(index);
                continue;
            }
            _ => continue,
        }
        let mut waiting_for = Vec::new();
        let mut failed_deps = Vec::new();
        for dep in service.dependencies() {
            if let Some(dep_index) = manifest.services.iter().position(|s| &s.id == dep) {
                match state.services[dep_index].phase {
                    Phase::Ready => {}
                    Phase::Failed => failed_deps.push(dep.to_string()),
                    _ => waiting_for.push(dep.to_string()),
                }
            }
        }
        if !failed_deps.is_empty() {
            let entry = &mut state.services[index];
            entry.phase = Phase::Blocked;
            entry.detail = format!("dependency failed: {}", failed_deps.join(", "));
            continue;
        }
        if !waiting_for.is_empty() {
            let entry = &mut state.services[index];
            entry.phase = Phase::Waiting;
            entry.detail = format!("waiting for {}", waiting_for.join(", "));
            continue;
        }
        let mut missing = Vec::new();
        for id in service.secret_ids() {
            let Some(secret) = manifest.secret(id.as_str()) else {
                continue;
            };
            if !secret.is_required() {
                continue;
            }
            match state.secrets.states.get(id.as_str()) {
                Some(SecretState::Set(_)) => {}
                Some(SecretState::Unavailable(why)) => missing.push(format!("{id} ({why})")),
                _ => missing.push(id.to_string()),
            }
        }
        if !missing.is_empty() {
            let entry = &mut state.services[index];
            if entry.missing_secrets != missing {
                runtime.telemetry.event(
                    "secrets_missing",
                    json!({ "service": service.id, "secrets": missing }),
                );
                eprintln!(
                    "xbundle-runtime: {} waits for secrets: {}",
                    service.id,
                    missing.join(", ")
                );
            }
            entry.phase = Phase::Blocked;
            entry.detail = format!("missing secrets: {}", missing.join(", "));
            entry.missing_secrets = missing;
            continue;
        }
        let entry = &mut state.services[index];
        entry.missing_secrets.clear();
        entry.phase = Phase::Starting;
        to_start.push(index);
    }
    to_start
}

/// Records the first moment the app counts as ready (`app_ready`).
fn note_app_ready(runtime: &Runtime, state: &mut State) {
    if state.app_ready_ms.is_none() && state.fatal.is_none() && runtime.all_ready(state) {
        let ms = runtime.started.elapsed().as_millis() as u64;
        state.app_ready_ms = Some(ms);
        runtime
            .telemetry
            .event("app_ready", json!({ "after_ms": ms }));
        eprintln!("xbundle-runtime: ready after {ms} ms");
        if let Some(url) = crate::ui::ui_url(&runtime.plan.manifest, &state.ports) {
            eprintln!("xbundle-runtime: UI at {url}");
            if runtime.open_ui {
                crate::ui::open_in_browser(&url);
            }
        }
    }
}

fn fail(runtime: &Runtime, state: &mut State, index: usize, reason: String) {
    let service = &runtime.plan.manifest.services[index];
    eprintln!("xbundle-runtime: {} failed: {reason}", service.id);
    runtime.telemetry.event(
        "service_failed",
        json!({ "service": service.id, "reason": reason }),
    );
    let entry = &mut state.services[index];
    entry.phase = Phase::Failed;
    entry.detail = reason.clone();
    if service.is_critical() && state.fatal.is_none() {
        state.fatal = Some(format!(
            "critical service `{}` failed: {reason}",
            service.id
        ));
    }
    note_app_ready(runtime, state);
}

/// The environment of a service: `APP_DATA_DIR`, `BUNDLE_ROOT`, its env, its binary's env,
/// its secrets.
fn service_env(
    runtime: &Runtime,
    state: &State,
    index: usize,
    binary_env: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, String> {
    let service = &runtime.plan.manifest.services[index];
    let mut env = vec![
        (
            "APP_DATA_DIR".to_owned(),
            runtime.plan.app_data.to_string_lossy().into_owned(),
        ),
        (
            "BUNDLE_ROOT".to_owned(),
            runtime.plan.bundle_dir.to_string_lossy().into_owned(),
        ),
    ];
    // A service's env may embed the secrets it lists (`${secret.ID}`), never others.
    let own_secret = |id: &str| -> Option<String> {
        service
            .secret_ids()
            .iter()
            .any(|own| own.as_str() == id)
            .then(|| state.secrets.value(id).map(str::to_owned))
            .flatten()
    };
    for (key, value) in service.env.iter().flatten() {
        env.push((
            key.clone(),
            expand_with_secrets(value, runtime, &state.ports, &own_secret),
        ));
    }
    for (key, value) in binary_env {
        env.push((key.clone(), expand(value, runtime, &state.ports)));
    }
    for id in service.secret_ids() {
        let Some(secret) = runtime.plan.manifest.secret(id.as_str()) else {
            continue;
        };
        let Some(value) = state.secrets.value(id.as_str()) else {
            continue;
        };
        match secret.target.kind {
            SecretTargetType::Env => env.push((secret.target.name.clone(), value.to_owned())),
            SecretTargetType::File => {
                let path = state
                    .secrets
                    .file_for(id.as_str())
                    .map_err(|err| format!("secret file for {id}: {err}"))?;
                let path = path.to_string_lossy().into_owned();
                env.push((
                    format!("SECRET_FILE_{}", env_suffix(id.as_str())),
                    path.clone(),
                ));
                env.push((secret.target.name.clone(), path));
            }
        }
    }
    Ok(env)
}

/// Migrations, then the spawn (or the in-process UI), then a monitor thread.
fn start(runtime: &Arc<Runtime>, index: usize) {
    let service = &runtime.plan.manifest.services[index];
    let log = Arc::clone(&runtime.logs[index]);
    let launch = runtime.plan.launches[index].clone();
    let mut state = runtime.lock();
    if let Launch::Unavailable { reason } = &launch {
        fail(runtime, &mut state, index, reason.clone());
        return;
    }
    for dir in &runtime.plan.paths.data_dirs[index] {
        if let Err(err) = runtime.app.open_dir(dir, true) {
            let reason = format!("data dir {dir}: {err}");
            fail(runtime, &mut state, index, reason);
            return;
        }
    }
    // Assets were verified (digest and size, trees for unpacked ones) before anything
    // started: `assets::verify`.
    let (program, args, cwd, binary_env) = match &launch {
        Launch::Program {
            program,
            args,
            cwd,
            env,
        } => (
            Some(program.clone()),
            args.clone(),
            cwd.clone(),
            env.clone(),
        ),
        _ => (
            None,
            Vec::new(),
            runtime.plan.bundle_dir.clone(),
            BTreeMap::new(),
        ),
    };
    let env = match service_env(runtime, &state, index, &binary_env) {
        Ok(env) => env,
        Err(reason) => {
            fail(runtime, &mut state, index, reason);
            return;
        }
    };
    if !state.services[index].migrated {
        let due: Vec<manifest::Migration> = state
            .migrations
            .due(service.id.as_str(), service.migrations())
            .into_iter()
            .cloned()
            .collect();
        if !due.is_empty() {
            let jobs: Vec<MigrationJob> = due
                .into_iter()
                .map(|migration| {
                    let command = migration
                        .command
                        .iter()
                        .map(|part| expand(part, runtime, &state.ports))
                        .collect();
                    let mut env = env.clone();
                    for (key, value) in migration.env.iter().flatten() {
                        env.push((key.clone(), expand(value, runtime, &state.ports)));
                    }
                    MigrationJob {
                        migration,
                        command,
                        env,
                    }
                })
                .collect();
            state.services[index].detail = "running migrations".into();
            drop(state);
            migrate(Arc::clone(runtime), index, jobs, cwd);
            // `Event::Migrated` brings the service back to `schedule`.
            return;
        }
        state.services[index].migrated = true;
        let all = state.services.iter().all(|s| s.migrated);
        state.migrations.finish(service.id.as_str(), all);
    }

    // Take back ports released by an earlier run of this service.
    let wanted: Vec<(String, u16)> = state
        .ports
        .get(service.id.as_str())
        .map(|m| m.iter().map(|(n, p)| (n.clone(), *p)).collect())
        .unwrap_or_default();
    for (name, port) in wanted {
        if !state.services[index].held.contains_key(&name)
            && let Some(listener) = crate::ports::rebind(port)
        {
            state.services[index].held.insert(name, listener);
        }
    }
    let generation = state.services[index].generation + 1;
    let entry = &mut state.services[index];
    entry.generation = generation;
    entry.spawned_at = Some(Instant::now());
    entry.backoff_until = None;
    entry.detail = String::new();
    let mark = log.mark();

    match program {
        None => {
            // ui-bundle served in-process.
            let Launch::StaticUi { root, rel } = &launch else {
                return;
            };
            let root_dir = match runtime.plan.bundle.open_dir(rel, false) {
                Ok(dir) => dir,
                Err(err) => {
                    let reason = format!("UI directory {}: {err}", root.display());
                    fail(runtime, &mut state, index, reason);
                    return;
                }
            };
            let port_name = service
                .requested_ports()
                .first()
                .map(|p| p.name.to_string());
            let listener = port_name.and_then(|name| entry.held.remove(&name));
            let Some(listener) = listener else {
                fail(
                    runtime,
                    &mut state,
                    index,
                    "no port for the UI server".into(),
                );
                return;
            };
            let api_port = crate::ui::api_port(&runtime.plan.manifest, index, &state.ports);
            crate::ui::serve(listener, root_dir, api_port, Arc::clone(&log));
            log.line(&format!(
                "[xbundle-runtime] serving {} in-process",
                root.display()
            ));
        }
        Some(program) => {
            let requests_socket: Vec<String> = service
                .requested_ports()
                .iter()
                .filter(|r| r.requires_socket == Some(true))
                .map(|r| r.name.to_string())
                .collect();
            let mut env = env;
            let mut pass_fds = Vec::new();
            let mut passed = Vec::new();
            for (name, listener) in std::mem::take(&mut entry.held) {
                if requests_socket.contains(&name) {
                    use std::os::fd::AsRawFd;
                    env.push((
                        format!("XBUNDLE_LISTEN_FD_{}", env_suffix(&name)),
                        listener.as_raw_fd().to_string(),
                    ));
                    pass_fds.push(listener.as_raw_fd());
                    passed.push(listener);
                }
                // Other listeners are dropped here, just before the spawn.
            }
            let spawned = process::spawn(&process::ShimCommand {
                program: &program,
                args: &args
                    .iter()
                    .map(|a| expand(a, runtime, &state.ports))
                    .collect::<Vec<_>>(),
                cwd: &cwd,
                env: &env,
                grace: runtime.stop_grace,
                pass_fds: &pass_fds,
                capture: true,
            });
            drop(passed);
            let mut child = match spawned {
                Ok(child) => child,
                Err(err) => {
                    fail(
                        runtime,
                        &mut state,
                        index,
                        format!("cannot start {}: {err}", program.display()),
                    );
                    return;
                }
            };
            if let Some(stdout) = child.stdout.take() {
                log.pump(stdout);
            }
            if let Some(stderr) = child.stderr.take() {
                log.pump(stderr);
            }
            let pid = child.id();
            state.services[index].shim_pid = Some(pid);
            let waiter = Arc::clone(runtime);
            std::thread::spawn(move || {
                let code = match child.wait() {
                    Ok(status) => status.code().unwrap_or(128 + 9),
                    Err(_) => 1,
                };
                waiter.send(Event::Exited {
                    service: index,
                    generation,
                    code,
                });
            });
            runtime.telemetry.event(
                "service_start",
                json!({"service": service.id, "pid": pid, "generation": generation}),
            );
        }
    }
    drop(state);
    monitor(Arc::clone(runtime), index, generation, mark);
}

/// One due migration, its command and environment expanded.
struct MigrationJob {
    migration: manifest::Migration,
    command: Vec<String>,
    env: Vec<(String, String)>,
}

/// Runs a service's due migrations in order on a thread of their own (the supervisor thread
/// and the state lock stay free, so the control API answers and a stop is honoured), each
/// under the shim with its time limit; then sends [`Event::Migrated`]. Each applied version is
/// recorded as it completes.
fn migrate(runtime: Arc<Runtime>, index: usize, jobs: Vec<MigrationJob>, cwd: std::path::PathBuf) {
    std::thread::spawn(move || {
        let service = &runtime.plan.manifest.services[index];
        let log = Arc::clone(&runtime.logs[index]);
        let mut result = Ok(());
        for job in jobs {
            let version = &job.migration.version;
            {
                let mut state = runtime.lock();
                if state.shutting_down {
                    result = Err("stopped before its migrations finished".into());
                    break;
                }
                state.services[index].detail = format!("running migration {version}");
            }
            let outcome = crate::migrations::run(
                &job.migration,
                &job.command,
                &cwd,
                &job.env,
                &log,
                runtime.stop_grace,
                |pid| {
                    let mut state = runtime.lock();
                    state.services[index].migration_pid = Some(pid);
                    if state.shutting_down {
                        process::signal(pid, libc::SIGTERM);
                    }
                },
            );
            let mut state = runtime.lock();
            state.services[index].migration_pid = None;
            if state.shutting_down && outcome.is_err() {
                // Stopped by the shutdown, not failed: it runs again on the next start.
                log.line(&format!(
                    "[xbundle-runtime] migration {version} interrupted by the stop"
                ));
                result = Err("stopped before its migrations finished".into());
                break;
            }
            match outcome {
                Ok(()) => {
                    state.migrations.record(service.id.as_str(), version);
                    runtime.telemetry.event(
                        "migration_applied",
                        json!({"service": service.id, "version": version}),
                    );
                }
                Err(why) => {
                    runtime.telemetry.event(
                        "migration_failed",
                        json!({"service": service.id, "version": version, "reason": why}),
                    );
                    result = Err(format!(
                        "migration {version} {why} (output in {})",
                        log.path.display()
                    ));
                    break;
                }
            }
        }
        runtime.send(Event::Migrated {
            service: index,
            result,
        });
    });
}

fn check_for(runtime: &Runtime, index: usize, for_readiness: bool) -> Result<Check, String> {
    let service = &runtime.plan.manifest.services[index];
    let state = runtime.lock();
    let port = |name: Option<&manifest::PortName>| -> Option<u16> {
        let ports = state.ports.get(service.id.as_str())?;
        match name {
            Some(name) => ports.get(name.as_str()).copied(),
            None => ports.values().next().copied(),
        }
    };
    let regex = |pattern: &Option<String>| -> Result<regex_lite::Regex, String> {
        let pattern = pattern.as_deref().ok_or("no pattern")?;
        manifest::log_pattern_regex(pattern).map_err(|err| format!("bad {err}"))
    };
    if for_readiness {
        let readiness = &service.readiness;
        match readiness.kind {
            ReadinessType::DependenciesReady => return Ok(Check::Always),
            ReadinessType::LogMatch => {
                return Ok(Check::LogMatch {
                    pattern: regex(&readiness.pattern)?,
                });
            }
            ReadinessType::PortOpen => {
                let name = readiness
                    .port_name
                    .as_ref()
                    .or(service.health.port_name.as_ref());
                return Ok(Check::Tcp {
                    port: port(name).ok_or("no port to check")?,
                });
            }
            ReadinessType::HealthSuccess => {}
        }
    }
    let health = &service.health;
    Ok(match health.kind {
        HealthType::Http => Check::Http {
            port: port(health.port_name.as_ref()).ok_or("no port to check")?,
            path: health.path.clone().unwrap_or_else(|| "/health".into()),
        },
        HealthType::Tcp => Check::Tcp {
            port: port(health.port_name.as_ref()).ok_or("no port to check")?,
        },
        HealthType::LogMatch => Check::LogMatch {
            pattern: regex(&health.pattern)?,
        },
        HealthType::Command => {
            let cwd = match &runtime.plan.launches[index] {
                Launch::Program { cwd, .. } => cwd.clone(),
                _ => runtime.plan.bundle_dir.clone(),
            };
            let argv = health
                .command
                .iter()
                .flatten()
                .map(|a| expand(a, runtime, &state.ports))
                .collect();
            let env = vec![(
                "APP_DATA_DIR".to_owned(),
                runtime.plan.app_data.to_string_lossy().into_owned(),
            )];
            Check::Command { argv, cwd, env }
        }
    })
}

/// Readiness, then periodic health, for one generation of a service.
fn monitor(runtime: Arc<Runtime>, index: usize, generation: u64, mark: u64) {
    std::thread::spawn(move || {
        let service = &runtime.plan.manifest.services[index];
        let current = |runtime: &Runtime| runtime.lock().services[index].generation == generation;
        let log = Arc::clone(&runtime.logs[index]);
        let health = &service.health;
        let interval = Duration::from_millis(
            health
                .interval_ms
                .unwrap_or(crate::DEFAULT_HEALTH_INTERVAL_MS)
                .max(10),
        );
        let timeout = Duration::from_millis(
            health
                .timeout_ms
                .unwrap_or(crate::DEFAULT_HEALTH_TIMEOUT_MS)
                .max(10),
        );
        let retries = health
            .retries
            .unwrap_or(crate::DEFAULT_HEALTH_RETRIES)
            .max(1);
        let readiness_timeout = Duration::from_millis(
            service
                .readiness
                .timeout_ms
                .unwrap_or(crate::DEFAULT_READINESS_TIMEOUT_MS),
        );
        let deadline = Instant::now() + readiness_timeout;
        let readiness = match check_for(&runtime, index, true) {
            Ok(check) => check,
            Err(reason) => {
                runtime.send(Event::NotReady {
                    service: index,
                    generation,
                    reason,
                });
                return;
            }
        };
        let mut last_error;
        loop {
            if !current(&runtime) {
                return;
            }
            match health::run(&readiness, timeout, &log, mark) {
                Ok(()) => {
                    runtime.send(Event::Ready {
                        service: index,
                        generation,
                    });
                    break;
                }
                Err(why) => last_error = why,
            }
            if Instant::now() >= deadline {
                let reason = format!(
                    "not ready after {} ms: {last_error}",
                    readiness_timeout.as_millis()
                );
                runtime.send(Event::NotReady {
                    service: index,
                    generation,
                    reason,
                });
                return;
            }
            std::thread::sleep(READINESS_POLL);
        }
        let Ok(check) = check_for(&runtime, index, false) else {
            return;
        };
        let mut failures = 0;
        loop {
            std::thread::sleep(interval);
            if !current(&runtime) {
                return;
            }
            match health::run(&check, timeout, &log, mark) {
                Ok(()) => failures = 0,
                Err(why) => {
                    failures += 1;
                    if failures >= retries {
                        let reason = format!("health check failed {failures} times: {why}");
                        runtime.send(Event::Unhealthy {
                            service: index,
                            generation,
                            reason,
                        });
                        return;
                    }
                }
            }
        }
    });
}

fn handle(runtime: &Runtime, event: Event) {
    let mut state = runtime.lock();
    match event {
        Event::Exited {
            service: index,
            generation,
            code,
        } => {
            let shutting_down = state.shutting_down;
            let entry = &mut state.services[index];
            if entry.generation != generation {
                return;
            }
            entry.shim_pid = None;
            entry.last_exit = Some(code);
            let id = runtime.id(index).to_owned();
            runtime
                .telemetry
                .event("service_exit", json!({"service": id, "code": code}));
            if shutting_down || entry.phase == Phase::Stopping {
                entry.phase = Phase::Stopped;
                return;
            }
            if entry
                .spawned_at
                .is_some_and(|at| at.elapsed() >= stable_after())
            {
                entry.failures = 0;
            }
            entry.failures += 1;
            // Invalidate the monitor of the dead generation.
            entry.generation += 1;
            if entry.failures > MAX_CONSECUTIVE_FAILURES {
                let reason = format!(
                    "exited with code {code}; {} failures in a row",
                    entry.failures
                );
                fail(runtime, &mut state, index, reason);
                return;
            }
            let delay = backoff(entry.failures);
            entry.phase = Phase::Backoff;
            entry.backoff_until = Some(Instant::now() + delay);
            entry.restarts += 1;
            if entry.detail.is_empty() {
                entry.detail = format!("exited with code {code}");
            }
            eprintln!(
                "xbundle-runtime: {id} exited with code {code}; restarting in {} ms",
                delay.as_millis()
            );
            runtime.telemetry.event(
                "service_restart",
                json!({"service": id, "code": code, "delay_ms": delay.as_millis() as u64, "failures": entry.failures}),
            );
        }
        Event::Ready {
            service: index,
            generation,
        } => {
            let entry = &mut state.services[index];
            if entry.generation != generation || entry.phase != Phase::Starting {
                return;
            }
            entry.phase = Phase::Ready;
            entry.detail = String::new();
            let after = entry
                .spawned_at
                .map(|at| at.elapsed().as_millis() as u64)
                .unwrap_or(0);
            entry.ready_after_ms = Some(after);
            runtime.telemetry.event(
                "service_ready",
                json!({"service": runtime.id(index), "after_ms": after}),
            );
            note_app_ready(runtime, &mut state);
        }
        Event::NotReady {
            service: index,
            generation,
            reason,
        }
        | Event::Unhealthy {
            service: index,
            generation,
            reason,
        } => {
            let entry = &mut state.services[index];
            if entry.generation != generation {
                return;
            }
            let id = runtime.id(index).to_owned();
            eprintln!("xbundle-runtime: {id}: {reason}");
            runtime.telemetry.event(
                "service_unhealthy",
                json!({"service": id, "reason": reason}),
            );
            entry.detail = reason.clone();
            match entry.shim_pid {
                // The exit that follows goes through the restart policy.
                Some(pid) => process::signal(pid, libc::SIGTERM),
                None => fail(runtime, &mut state, index, reason),
            }
        }
        Event::Migrated {
            service: index,
            result,
        } => {
            if state.shutting_down {
                let entry = &mut state.services[index];
                if entry.phase != Phase::Failed {
                    entry.phase = Phase::Stopped;
                }
                return;
            }
            match result {
                Ok(()) => {
                    state.services[index].migrated = true;
                    let all = state.services.iter().all(|s| s.migrated);
                    state.migrations.finish(runtime.id(index), all);
                    // Back to `schedule`, which starts it (dependencies and secrets permitting).
                    let entry = &mut state.services[index];
                    entry.phase = Phase::Waiting;
                    entry.detail = String::new();
                }
                Err(reason) => fail(runtime, &mut state, index, reason),
            }
        }
        Event::SecretsChanged | Event::Shutdown(_) => {}
    }
}

/// Stops every service in reverse start order: SIGTERM to the shim (which signals the
/// service's group), then, after the grace period and a margin, SIGKILL to the whole tree.
fn shutdown(runtime: &Runtime, events: &Receiver<Event>) {
    runtime.lock().shutting_down = true;
    for &index in runtime.plan.order.iter().rev() {
        let pid = {
            let mut state = runtime.lock();
            let entry = &mut state.services[index];
            entry.held.clear();
            match entry.shim_pid.or(entry.migration_pid) {
                Some(pid) => {
                    entry.phase = Phase::Stopping;
                    pid
                }
                None => {
                    if entry.phase != Phase::Failed {
                        entry.phase = Phase::Stopped;
                    }
                    continue;
                }
            }
        };
        process::signal(pid, libc::SIGTERM);
        let deadline = Instant::now() + runtime.stop_grace + Duration::from_secs(2);
        loop {
            let running = {
                let state = runtime.lock();
                let entry = &state.services[index];
                entry.shim_pid.is_some() || entry.migration_pid.is_some()
            };
            if !running {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                eprintln!(
                    "xbundle-runtime: {} did not stop in time; killing it",
                    runtime.id(index)
                );
                process::force_kill_tree(pid);
                // Give the waiter a moment to reap it.
                let _ = events
                    .recv_timeout(Duration::from_millis(200))
                    .map(|event| handle(runtime, event));
                break;
            }
            if let Ok(event) = events.recv_timeout(left.min(Duration::from_millis(100))) {
                handle(runtime, event);
            }
        }
    }
}
