//! The control API, on loopback only (the manifest's `ipc.host` must be a loopback address).
//!
//! Every route but `GET /healthz` needs `Authorization: Bearer <token>`, the token being
//! 32 random bytes (hex) written at each start to `<app data>/<ipc.auth_token_path>` with
//! mode 0600 (removed on exit); the port actually bound is written beside it in `ipc-port`
//! (the manifest's port, or any free one when that is taken).
//!
//! Requests are read by the HTTP reactor (`http::serve`): heads bounded while they are read,
//! a deadline per request, at most [`MAX_PENDING`] incomplete connections (the oldest is
//! evicted), a few workers for complete requests; so `/healthz`, `/status` and `/shutdown`
//! answer whatever idle, slow or oversized connections a local peer opens. A body is read
//! only for an authorised `POST`, at most 64 KiB.
//!
//! | route | answer |
//! |---|---|
//! | `GET /healthz` | `{"status":"ok"}`: the runtime is up |
//! | `GET /readyz` | 200 when every service is ready, else 503 with the services that are not; a non-critical service that failed (or waits on one that did) does not hold it back and is listed under `failed` |
//! | `GET /status` | app, uptime and per service: state, detail, pids, restarts, last exit, missing secrets |
//! | `GET /ports` | allocated ports per service, and the UI's URL |
//! | `GET /logs/tail?service=ID&lines=N` | the last N (default 100, at most 5000) lines of a service's log |
//! | `GET /secrets` | per secret: id, class, required, set, label, description, format; never a value |
//! | `POST /secrets` | `{"<id>": "<value>", ...}`: sets `user_prompt` secrets; all checked before any is stored |
//! | `POST /shutdown` | stops the app (202) |

use crate::http::{self, Handler, Request, Response};
use crate::supervisor::{Event, Runtime};
use manifest::SecretClass;
use serde_json::json;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

/// Incomplete connections held at once; past this, a new one evicts the oldest (503).
pub const MAX_PENDING: usize = 64;

struct Control {
    runtime: Arc<Runtime>,
}

impl Handler for Control {
    /// A body is read only for an authorised POST (`/secrets`): an unauthenticated peer
    /// cannot make the runtime hold one.
    fn body_limit(&self, request: &Request) -> usize {
        if request.method == "POST" && authorized(request, &self.runtime.token) {
            http::MAX_BODY
        } else {
            0
        }
    }

    /// The answer is written before the supervisor is told anything: it may stop the runtime
    /// at once (a shutdown, a secret that lets a critical service fail to start), and the
    /// caller must still get its answer (it got an empty one when the stop won the race
    /// against this worker).
    fn handle(&self, request: Request, stream: TcpStream) {
        let (response, then) = route(&request, &self.runtime);
        http::respond(&stream, &request, &response);
        if let Some(event) = then {
            self.runtime.send(event);
        }
    }
}

/// Serves the control API until the process exits (see `http::serve` for the design).
pub fn serve(listener: TcpListener, runtime: Arc<Runtime>) -> std::io::Result<()> {
    let config = http::ServerConfig {
        name: "control",
        workers: 4,
        queue: 32,
        max_pending: MAX_PENDING,
    };
    http::serve(listener, config, Arc::new(Control { runtime }))
}

/// Constant-time comparison of the presented token.
fn authorized(request: &Request, token: &str) -> bool {
    let Some(presented) = request
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let presented = presented.trim().as_bytes();
    let expected = token.as_bytes();
    presented.len() == expected.len()
        && presented
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The answer, and what to tell the supervisor once it is written.
fn route(request: &Request, runtime: &Runtime) -> (Response, Option<Event>) {
    let method = request.method.as_str();
    let path = request.path.trim_end_matches('/');
    if path == "/healthz" && method == "GET" {
        return (Response::json(200, &json!({ "status": "ok" })), None);
    }
    if !authorized(request, &runtime.token) {
        let mut response = Response::error(401, "missing or wrong bearer token");
        response
            .extra_headers
            .push(("WWW-Authenticate", "Bearer".into()));
        return (response, None);
    }
    let response = match (method, path) {
        ("GET", "/readyz") => readyz(runtime),
        ("GET", "/status") => status(runtime),
        ("GET", "/ports") => ports(runtime),
        ("GET", "/logs/tail") => logs_tail(request, runtime),
        ("GET", "/secrets") => secrets(runtime),
        ("POST", "/secrets") => return set_secrets(request, runtime),
        ("POST", "/shutdown") => {
            let event = Event::Shutdown("requested through the control API".into());
            return (
                Response::json(202, &json!({ "status": "stopping" })),
                Some(event),
            );
        }
        (_, "/readyz" | "/status" | "/ports" | "/logs/tail" | "/secrets" | "/shutdown") => {
            Response::error(405, "method not allowed")
        }
        _ => Response::error(404, "no such route"),
    };
    (response, None)
}

fn readyz(runtime: &Runtime) -> Response {
    let state = runtime.lock();
    let entry = |i: usize| {
        let s = &state.services[i];
        json!({"id": runtime.plan.manifest.services[i].id, "state": s.phase.name(), "detail": s.detail})
    };
    let mut not_ready = Vec::new();
    let mut given_up = Vec::new();
    for (i, s) in state.services.iter().enumerate() {
        if s.phase == crate::supervisor::Phase::Ready {
            continue;
        }
        if runtime.ignorable(&state, i) {
            given_up.push(entry(i));
        } else {
            not_ready.push(entry(i));
        }
    }
    if not_ready.is_empty() {
        Response::json(200, &json!({ "ready": true, "failed": given_up }))
    } else {
        Response::json(
            503,
            &json!({ "ready": false, "waiting": not_ready, "failed": given_up }),
        )
    }
}

fn status(runtime: &Runtime) -> Response {
    let state = runtime.lock();
    let manifest = &runtime.plan.manifest;
    let services: Vec<serde_json::Value> = state
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let service_pid = s
                .shim_pid
                .and_then(|shim| crate::process::children_of(shim).first().copied());
            json!({
                "id": manifest.services[i].id,
                "type": manifest.services[i].kind,
                "critical": manifest.services[i].is_critical(),
                "state": s.phase.name(),
                "detail": s.detail,
                "pid": service_pid,
                "shim_pid": s.shim_pid,
                "restarts": s.restarts,
                "last_exit": s.last_exit,
                "ready_after_ms": s.ready_after_ms,
                "missing_secrets": s.missing_secrets,
                "log": runtime.logs[i].path,
            })
        })
        .collect();
    Response::json(
        200,
        &json!({
            "app": {"name": manifest.app.name, "version": manifest.app.version},
            "pid": std::process::id(),
            "uptime_ms": runtime.started.elapsed().as_millis() as u64,
            "ready": runtime.all_ready(&state),
            "ready_after_ms": state.app_ready_ms,
            "error": state.fatal,
            "services": services,
        }),
    )
}

fn ports(runtime: &Runtime) -> Response {
    let state = runtime.lock();
    let manifest = &runtime.plan.manifest;
    let ui = crate::ui::ui_url(manifest, &state.ports);
    Response::json(
        200,
        &json!({ "control": runtime.control_port, "services": state.ports, "ui_url": ui }),
    )
}

fn logs_tail(request: &Request, runtime: &Runtime) -> Response {
    let Some(id) = request.param("service") else {
        return Response::error(400, "missing ?service=");
    };
    let Some(index) = runtime
        .plan
        .manifest
        .services
        .iter()
        .position(|s| s.id.as_str() == id)
    else {
        return Response::error(404, "no such service");
    };
    let lines = request
        .param("lines")
        .and_then(|n| n.parse().ok())
        .unwrap_or(100usize)
        .min(5000);
    let mut text = runtime.logs[index].tail(lines).join("\n");
    text.push('\n');
    Response::text(200, text)
}

fn secrets(runtime: &Runtime) -> Response {
    let state = runtime.lock();
    let list: Vec<serde_json::Value> = runtime
        .plan
        .manifest
        .secrets
        .iter()
        .flatten()
        .map(|secret| {
            let (set, problem) = match state.secrets.states.get(secret.id.as_str()) {
                Some(crate::secrets::SecretState::Set(_)) => (true, None),
                Some(crate::secrets::SecretState::Unavailable(why)) => (false, Some(why.clone())),
                _ => (false, None),
            };
            json!({
                "id": secret.id,
                "class": secret.class,
                "required": secret.is_required(),
                "set": set,
                "problem": problem,
                "label": secret.prompt.as_ref().and_then(|p| p.label.clone()),
                "description": secret.prompt.as_ref().and_then(|p| p.description.clone()).or(secret.description.clone()),
                "format": secret.format,
            })
        })
        .collect();
    Response::json(200, &json!({ "secrets": list }))
}

/// Sets the secrets; tells the supervisor once anything was stored.
fn set_secrets(request: &Request, runtime: &Runtime) -> (Response, Option<Event>) {
    let Ok(serde_json::Value::Object(values)) =
        serde_json::from_slice::<serde_json::Value>(&request.body)
    else {
        let why = "expected a JSON object {\"<secret id>\": \"<value>\"}";
        return (Response::error(400, why), None);
    };
    let manifest = &runtime.plan.manifest;
    let mut problems = Vec::new();
    let mut accepted = Vec::new();
    for (id, value) in &values {
        let Some(secret) = manifest.secret(id) else {
            problems.push(json!({"id": id, "error": "no such secret"}));
            continue;
        };
        if secret.class != SecretClass::UserPrompt {
            problems.push(json!({"id": id, "error": "only user_prompt secrets can be set"}));
            continue;
        }
        let Some(value) = value.as_str() else {
            problems.push(json!({"id": id, "error": "the value must be a string"}));
            continue;
        };
        // The error names the format, never the value.
        if let Err(why) = crate::secrets::check_format(secret, value) {
            problems.push(json!({"id": id, "error": why}));
            continue;
        }
        accepted.push((secret, value));
    }
    if !problems.is_empty() {
        return (Response::json(400, &json!({ "errors": problems })), None);
    }
    let mut state = runtime.lock();
    let mut stored = Vec::new();
    for (secret, value) in accepted {
        if let Err(why) = state.secrets.set(secret, value) {
            // Those stored before it are told all the same.
            let changed = (!stored.is_empty()).then_some(Event::SecretsChanged);
            return (Response::error(500, &why), changed);
        }
        runtime
            .telemetry
            .event("secret_set", json!({ "secret": secret.id }));
        stored.push(secret.id.to_string());
    }
    drop(state);
    (
        Response::json(200, &json!({ "stored": stored })),
        Some(Event::SecretsChanged),
    )
}
