//! The endpoints: one table ([`ENDPOINTS`]) from which both the router and the OpenAPI
//! document are made, so a route can never be served without being described (or the
//! reverse). Each endpoint turns its request into command-line arguments and answers with the
//! payload of the command's result event ([`super::run_captured`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use camino::Utf8PathBuf;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::builds::{Artifact, BuildView, Builds, MAX_QUEUED, Refused};
use super::{Captured, run_captured};

/// The largest request body accepted (the API's bodies are small JSON objects).
pub(super) const BODY_LIMIT: usize = 64 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub(super) struct State {
    root: Arc<Utf8PathBuf>,
    token: Option<Arc<str>>,
    builds: Arc<Builds>,
    /// Held by the requests that write (profile edits, export): one at a time.
    edits: Arc<tokio::sync::Mutex<()>>,
}

impl State {
    pub(super) fn new(root: Utf8PathBuf, token: Option<String>) -> State {
        let root = Arc::new(root);
        State {
            builds: Builds::start(Arc::clone(&root), artifacts),
            root,
            token: token.map(Arc::from),
            edits: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The build queue (the server stops it when it stops).
    pub(super) fn builds(&self) -> Arc<Builds> {
        Arc::clone(&self.builds)
    }
}

/// An answer of the API: a status and a JSON body.
pub(super) struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// A client error: its status, message, the request field at fault, a hint.
fn error(status: StatusCode, message: &str, field: Option<&str>, help: Option<&str>) -> Answer {
    Answer {
        status,
        body: serde_json::to_vec(&json!({"error": message, "field": field, "help": help}))
            .expect("errors serialize"),
    }
}

/// A request axum's extractors refused (a body over [`BODY_LIMIT`]: 413), as a JSON error.
fn rejected(status: StatusCode, text: &str) -> Answer {
    let help = (status == StatusCode::PAYLOAD_TOO_LARGE)
        .then(|| format!("request bodies are limited to {BODY_LIMIT} bytes"));
    error(status, text, None, help.as_deref())
}

/// Which request field an argument came from, to name it in an error.
struct Arguments {
    args: Vec<String>,
    /// (field, value) of the request, checked before the command runs.
    fields: Vec<(&'static str, String)>,
}

impl Arguments {
    fn new(command: &[&str]) -> Arguments {
        Arguments {
            args: command.iter().map(|s| s.to_string()).collect(),
            fields: Vec::new(),
        }
    }

    fn option(mut self, field: &'static str, option: &str, value: Option<&str>) -> Arguments {
        if let Some(value) = value {
            self.args.push(option.to_string());
            self.args.push(value.to_string());
            self.fields.push((field, value.to_string()));
        }
        self
    }

    fn options(mut self, field: &'static str, option: &str, values: &[String]) -> Arguments {
        for value in values {
            self = self.option(field, option, Some(value));
        }
        self
    }

    fn flag(mut self, flag: &str) -> Arguments {
        self.args.push(flag.to_string());
        self
    }

    /// Positional values, after `--`: never read as options.
    fn positionals(mut self, values: &[(&'static str, &str)]) -> Arguments {
        self.args.push("--".into());
        for (field, value) in values {
            self.args.push(value.to_string());
            self.fields.push((field, value.to_string()));
        }
        self
    }
}

/// Runs `arguments` and answers with the payload `key` of its event `event`.
async fn answer(
    state: &State,
    arguments: Arguments,
    event: &'static str,
    key: &'static str,
) -> Answer {
    let Arguments { args, fields } = arguments;
    let captured = match run_blocking(state, args).await {
        Ok(captured) => captured,
        Err(answer) => return answer,
    };
    if captured.code == 0
        && let Some(payload) = captured.payload(event, key)
    {
        return Answer {
            status: StatusCode::OK,
            body: payload.into_bytes(),
        };
    }
    failure(&captured, &fields)
}

/// The error answer of a command that failed: 404 for an unknown scenario or profile, 400
/// for another bad value (naming its field when the message names its value), 422 for a
/// well-formed request the command refused, 500 for the server's own failures.
fn failure(captured: &Captured, fields: &[(&'static str, String)]) -> Answer {
    let diagnostic = captured.diagnostic().unwrap_or_default();
    let message = diagnostic["message"]
        .as_str()
        .unwrap_or("the command gave no result");
    let help = diagnostic["help"].as_str();
    if captured.code != 2 {
        let status = if captured.code == 1 {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        return error(status, message, None, help);
    }
    let field = fields
        .iter()
        .find(|(_, value)| !value.is_empty() && message.contains(&format!("`{value}`")))
        .or_else(|| fields.iter().find(|(field, _)| message.contains(*field)))
        .map(|(field, _)| *field);
    let unknown = message.contains("no scenario")
        || message.contains("unknown scenario")
        || message.contains("unknown profile")
        || message.contains("no profile");
    let status = if unknown && matches!(field, Some("scenario" | "profile_id" | "id" | "owner")) {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::BAD_REQUEST
    };
    error(status, message, field, help)
}

/// The values of `name` in a query string, in order (`swap=a=b&swap=c=d`).
fn query_values(query: &Option<String>, name: &str) -> Vec<String> {
    let Some(query) = query else {
        return Vec::new();
    };
    form_urlencoded::parse(query.as_bytes())
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .collect()
}

fn query_value(query: &Option<String>, name: &str) -> Option<String> {
    query_values(query, name).into_iter().next()
}

async fn analyze(
    axum::extract::State(state): axum::extract::State<State>,
    Path(scenario): Path<String>,
    RawQuery(query): RawQuery,
) -> Answer {
    let arguments = Arguments::new(&["analyze"])
        .option("tier", "--tier", query_value(&query, "tier").as_deref())
        .options("swap", "--swap", &query_values(&query, "swap"))
        .positionals(&[("scenario", &scenario)]);
    answer(&state, arguments, "analysis", "analysis").await
}

async fn dag(
    axum::extract::State(state): axum::extract::State<State>,
    Path(scenario): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let format = query_value(&query, "format");
    let content_type = match format.as_deref() {
        None | Some("json") => None,
        Some("svg") => Some("image/svg+xml"),
        Some("dot" | "mermaid") => Some("text/plain; charset=utf-8"),
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("unknown format `{other}`"),
                Some("format"),
                Some("json, svg, dot or mermaid"),
            )
            .into_response();
        }
    };
    let mut arguments =
        Arguments::new(&["dag"]).options("swap", "--swap", &query_values(&query, "swap"));
    if let (Some(format), Some(_)) = (&format, content_type) {
        arguments = arguments.option("format", "--format", Some(format));
    }
    let arguments = arguments.positionals(&[("scenario", &scenario)]);
    let Some(content_type) = content_type else {
        return answer(&state, arguments, "dag", "dag")
            .await
            .into_response();
    };
    // A rendering: the event's text, as the document it is.
    let Arguments { args, fields } = arguments;
    let captured = match run_blocking(&state, args).await {
        Ok(captured) => captured,
        Err(answer) => return answer.into_response(),
    };
    let text = captured
        .payload("dag", "text")
        .and_then(|raw| serde_json::from_str::<String>(&raw).ok());
    match text {
        Some(text) if captured.code == 0 => {
            let mut response = (StatusCode::OK, text).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            response
        }
        _ => failure(&captured, &fields).into_response(),
    }
}

async fn fitness(
    axum::extract::State(state): axum::extract::State<State>,
    RawQuery(query): RawQuery,
) -> Answer {
    let Some(scenario) = query_value(&query, "scenario") else {
        return error(
            StatusCode::BAD_REQUEST,
            "the query parameter `scenario` is required",
            Some("scenario"),
            Some("e.g. /api/v1/fitness/score?scenario=picker-wheel&tier=desktop"),
        );
    };
    let arguments = Arguments::new(&["fitness"])
        .option("tier", "--tier", query_value(&query, "tier").as_deref())
        .options("swap", "--swap", &query_values(&query, "swap"))
        .positionals(&[("scenario", &scenario)]);
    answer(&state, arguments, "fitness", "fitness").await
}

async fn secrets(
    axum::extract::State(state): axum::extract::State<State>,
    Path(scenario): Path<String>,
    RawQuery(query): RawQuery,
) -> Answer {
    let arguments = Arguments::new(&["secrets"])
        .option("tier", "--tier", query_value(&query, "tier").as_deref())
        .options("swap", "--swap", &query_values(&query, "swap"))
        .positionals(&[("scenario", &scenario)]);
    answer(&state, arguments, "secrets", "secrets").await
}

async fn secrets_bundle(
    axum::extract::State(state): axum::extract::State<State>,
    Path(scenario): Path<String>,
    RawQuery(query): RawQuery,
) -> Answer {
    let arguments = Arguments::new(&["secrets"])
        .flag("--bundle")
        .option("tier", "--tier", query_value(&query, "tier").as_deref())
        .options("swap", "--swap", &query_values(&query, "swap"))
        .positionals(&[("scenario", &scenario)]);
    answer(&state, arguments, "secrets", "secrets").await
}

/// [`json_body`] of a body axum read (or refused: over [`BODY_LIMIT`]).
fn body_of<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<T, Answer> {
    let body = body.map_err(|rejection| rejected(rejection.status(), &rejection.body_text()))?;
    json_body(headers, &body)
}

/// A JSON body of the expected shape, or the 4xx answer saying what is wrong with it.
fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, Answer> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().starts_with("application/json"));
    if !json {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON (Content-Type: application/json)",
            None,
            None,
        ));
    }
    // An array would be read as the struct's fields in order: only an object is a request.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "malformed JSON body: not a JSON object",
            None,
            Some("send one JSON object, as /api/v1/openapi.json describes it"),
        ));
    }
    serde_json::from_slice(body).map_err(|err| {
        // The field at fault, for a body of the wrong shape (not for broken JSON): where the
        // error is (`swaps.postgres`), else the one an unknown, duplicate or missing field
        // error names.
        let data = err.classify() == serde_json::error::Category::Data;
        let path = serde_path_to_error::deserialize::<_, T>(
            &mut serde_json::Deserializer::from_slice(body),
        )
        .err()
        .map(|err| err.path().to_string())
        .filter(|path| path != "." && !path.contains('?'));
        let message = err.to_string();
        let named = ["unknown field", "duplicate field", "missing field"]
            .iter()
            .any(|kind| message.starts_with(kind))
            .then(|| message.split('`').nth(1).map(str::to_string))
            .flatten();
        error(
            StatusCode::BAD_REQUEST,
            &format!("malformed JSON body: {err}"),
            path.or(named).filter(|_| data).as_deref(),
            None,
        )
    })
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ClassifyRequest {
    /// The resource or scenario declaring the secret.
    owner: String,
    /// The secret's id.
    secret: String,
    /// The tier to classify for.
    tier: String,
}

async fn classify(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Answer {
    let request: ClassifyRequest = match body_of(&headers, body) {
        Ok(request) => request,
        Err(answer) => return answer,
    };
    let arguments = Arguments::new(&["secrets", "classify"])
        .option("tier", "--tier", Some(&request.tier))
        .positionals(&[("owner", &request.owner), ("secret", &request.secret)]);
    answer(&state, arguments, "classification", "classification").await
}

/// The profile events of `profile list` / `profile show`, without their `event` field.
fn profiles_of(captured: &Captured) -> Vec<Value> {
    captured
        .lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|value| value["event"] == "profile")
        .map(|mut value| {
            if let Some(object) = value.as_object_mut() {
                object.remove("event");
            }
            value
        })
        .collect()
}

async fn run_blocking(state: &State, args: Vec<String>) -> Result<Captured, Answer> {
    let root = Arc::clone(&state.root);
    tokio::task::spawn_blocking(move || run_captured(&root, &args))
        .await
        .map_err(|_| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the command panicked",
                None,
                None,
            )
        })
}

async fn list_profiles(axum::extract::State(state): axum::extract::State<State>) -> Answer {
    let captured = match run_blocking(&state, vec!["profile".into(), "list".into()]).await {
        Ok(captured) => captured,
        Err(answer) => return answer,
    };
    if captured.code != 0 {
        return failure(&captured, &[]);
    }
    Answer {
        status: StatusCode::OK,
        body: serde_json::to_vec(&json!({"profiles": profiles_of(&captured)}))
            .expect("profiles serialize"),
    }
}

async fn show_profile(
    axum::extract::State(state): axum::extract::State<State>,
    Path(id): Path<String>,
) -> Answer {
    let args = ["profile", "show", "--", &id].map(str::to_string).to_vec();
    let captured = match run_blocking(&state, args).await {
        Ok(captured) => captured,
        Err(answer) => return answer,
    };
    match profiles_of(&captured).into_iter().next() {
        Some(profile) if captured.code == 0 => Answer {
            status: StatusCode::OK,
            body: serde_json::to_vec(&profile).expect("profiles serialize"),
        },
        _ => failure(&captured, &[("id", id)]),
    }
}

/// A profile as POST /profiles takes it (`profile create`).
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct NewProfile {
    /// The profile's name.
    #[serde(alias = "id")]
    name: String,
    scenario: String,
    tier: String,
    /// FROM -> TO.
    #[serde(default)]
    swaps: BTreeMap<String, String>,
    #[serde(default)]
    platforms: Vec<String>,
}

/// Changes to a profile (`profile set`): swaps added or changed, platforms added.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ProfileChanges {
    #[serde(default)]
    swaps: BTreeMap<String, String>,
    #[serde(default)]
    platforms: Vec<String>,
}

fn swap_args(swaps: &BTreeMap<String, String>) -> Vec<String> {
    swaps
        .iter()
        .map(|(from, to)| format!("{from}={to}"))
        .collect()
}

/// Runs an edit, then answers with the profile as `profile show` gives it.
async fn edit_profile(
    state: &State,
    arguments: Arguments,
    name: &str,
    status: StatusCode,
) -> Answer {
    let _edits = state.edits.lock().await;
    let Arguments { args, fields } = arguments;
    let captured = match run_blocking(state, args).await {
        Ok(captured) => captured,
        Err(answer) => return answer,
    };
    if captured.code != 0 {
        return failure(&captured, &fields);
    }
    let args = ["profile", "show", "--", name].map(str::to_string).to_vec();
    let shown = match run_blocking(state, args).await {
        Ok(captured) => captured,
        Err(answer) => return answer,
    };
    match profiles_of(&shown).into_iter().next() {
        Some(profile) => Answer {
            status,
            body: serde_json::to_vec(&profile).expect("profiles serialize"),
        },
        None => failure(&shown, &[("id", name.to_string())]),
    }
}

async fn create_profile(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Answer {
    let request: NewProfile = match body_of(&headers, body) {
        Ok(request) => request,
        Err(answer) => return answer,
    };
    let arguments = Arguments::new(&["profile", "create"])
        .option("scenario", "--scenario", Some(&request.scenario))
        .option("tier", "--tier", Some(&request.tier))
        .options("swaps", "--swap", &swap_args(&request.swaps))
        .options("platforms", "--platform", &request.platforms)
        .positionals(&[("name", &request.name)]);
    edit_profile(&state, arguments, &request.name, StatusCode::CREATED).await
}

async fn update_profile(
    axum::extract::State(state): axum::extract::State<State>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Answer {
    let request: ProfileChanges = match body_of(&headers, body) {
        Ok(request) => request,
        Err(answer) => return answer,
    };
    let arguments = Arguments::new(&["profile", "set"])
        .options("swaps", "--swap", &swap_args(&request.swaps))
        .options("platforms", "--platform", &request.platforms)
        .positionals(&[("id", &id)]);
    edit_profile(&state, arguments, &id, StatusCode::OK).await
}

/// A request naming a profile (the seed's Gap 1: assembly from a stored profile).
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ProfileRequest {
    profile_id: String,
}

async fn assemble(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Answer {
    let request: ProfileRequest = match body_of(&headers, body) {
        Ok(request) => request,
        Err(answer) => return answer,
    };
    let arguments =
        Arguments::new(&["assemble"]).positionals(&[("profile_id", &request.profile_id)]);
    answer(&state, arguments, "manifest", "manifest").await
}

async fn export(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Answer {
    let request: ProfileRequest = match body_of(&headers, body) {
        Ok(request) => request,
        Err(answer) => return answer,
    };
    let _edits = state.edits.lock().await;
    let args = vec![
        "export".to_string(),
        "--".into(),
        request.profile_id.clone(),
    ];
    let captured = match run_blocking(&state, args).await {
        Ok(captured) => captured,
        Err(answer) => return answer,
    };
    // The command line's `exported` line itself, byte for byte.
    let line = captured.lines.iter().find(|line| {
        serde_json::from_str::<Value>(line).is_ok_and(|value| value["event"] == "exported")
    });
    match line {
        Some(line) if captured.code == 0 => Answer {
            status: StatusCode::OK,
            body: line.clone().into_bytes(),
        },
        _ => failure(&captured, &[("profile_id", request.profile_id)]),
    }
}

/// The seed's future contract for a desktop build.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct PackageRequest {
    profile_id: String,
    /// Platforms of the profile to build (default: all of them).
    #[serde(default)]
    platforms: Vec<String>,
    /// Builds always compile the services for their platforms; `false` is refused.
    #[serde(default = "yes")]
    compile_binaries: bool,
    /// Sign the artifacts with the workspace's `[sign]` templates (they must exist); `false`
    /// is refused where the workspace signs (its artifacts are always signed).
    #[serde(default)]
    sign: bool,
    /// The profile's bundle.json (root-relative), if given: it must be the one the profile
    /// assembles (`<out>/<profile>/bundle.json`).
    #[serde(default)]
    manifest_path: Option<String>,
}

fn yes() -> bool {
    true
}

/// The thin client of a profile (`thin-client`).
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct QuickRequest {
    profile_id: String,
    /// The deployed app's URL (default: the profile's `[profiles.NAME.thin] url`).
    #[serde(default)]
    url: Option<String>,
}

/// The workspace's bundle.toml, read as the command line reads it.
fn load_config(
    root: &camino::Utf8Path,
) -> Result<crate::config::BundleConfig, crate::diagnostic::Diagnostic> {
    crate::config::BundleConfig::load(
        &root.join(crate::config::FILE_NAME),
        camino::Utf8Path::new(crate::config::FILE_NAME),
    )
}

/// The workspace's bundle.toml, for the checks a request needs before it is queued.
fn config_of(root: &camino::Utf8Path) -> Result<crate::config::BundleConfig, Answer> {
    load_config(root).map_err(|diagnostic| {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &diagnostic.message,
            None,
            diagnostic.help.as_deref(),
        )
    })
}

fn queued(
    state: &State,
    kind: &str,
    profile: &str,
    platforms: &[String],
    args: Vec<String>,
) -> Answer {
    match state.builds.queue(kind, profile, platforms, args) {
        Ok(view) => Answer {
            status: StatusCode::ACCEPTED,
            body: serde_json::to_vec(&view).expect("builds serialize"),
        },
        Err(Refused::Stopping) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is stopping",
            None,
            Some("queue the build again once the server is back"),
        ),
        Err(Refused::Full) => error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("{MAX_QUEUED} builds are waiting already"),
            None,
            Some("retry once one has finished (GET /api/v1/builds)"),
        ),
    }
}

async fn package(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Answer {
    let request: PackageRequest = match body_of(&headers, body) {
        Ok(request) => request,
        Err(answer) => return answer,
    };
    let config = match config_of(&state.root) {
        Ok(config) => config,
        Err(answer) => return answer,
    };
    let Some(profile) = config.profile(&request.profile_id) else {
        let diagnostic = crate::names::unknown_profile(&config, &state.root, &request.profile_id);
        return error(
            StatusCode::NOT_FOUND,
            &diagnostic.message,
            Some("profile_id"),
            diagnostic.help.as_deref(),
        );
    };
    let declared: Vec<String> = profile
        .decl
        .platforms
        .iter()
        .map(|platform| platform.get_ref().clone())
        .collect();
    if let Some(unknown) = request
        .platforms
        .iter()
        .find(|platform| !declared.is_empty() && !declared.contains(platform))
    {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("profile `{}` has no platform `{unknown}`", profile.name),
            Some("platforms"),
            Some(&format!("its platforms: {}", declared.join(", "))),
        );
    }
    if !request.compile_binaries {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "xbundle always compiles a bundle's services for its platforms (from the cache when nothing changed)",
            Some("compile_binaries"),
            Some("leave compile_binaries out, or set it to true"),
        );
    }
    let signs = !config.sign.is_empty();
    if request.sign != signs {
        let message = if request.sign {
            "the workspace has no [sign] templates: nothing could sign the artifacts"
        } else {
            "the workspace signs its artifacts ([sign] in bundle.toml)"
        };
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            message,
            Some("sign"),
            Some("set sign to match bundle.toml's [sign] section"),
        );
    }
    if let Some(path) = &request.manifest_path {
        let expected =
            crate::stages::profile_dir(&config.workspace.out, &profile.name).join("bundle.json");
        if path.trim_start_matches("./") != expected.as_str() {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("the profile's bundle.json is {expected}, not {path}"),
                Some("manifest_path"),
                Some("leave manifest_path out: the build assembles the profile's own"),
            );
        }
    }
    let mut args = vec!["bundle".to_string()];
    for platform in &request.platforms {
        args.extend(["--platform".to_string(), platform.clone()]);
    }
    args.extend(["--".to_string(), profile.name.clone()]);
    queued(&state, "package", &profile.name, &request.platforms, args)
}

async fn generate_quick(
    axum::extract::State(state): axum::extract::State<State>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Answer {
    let request: QuickRequest = match body_of(&headers, body) {
        Ok(request) => request,
        Err(answer) => return answer,
    };
    let config = match config_of(&state.root) {
        Ok(config) => config,
        Err(answer) => return answer,
    };
    if config.profile(&request.profile_id).is_none() {
        let diagnostic = crate::names::unknown_profile(&config, &state.root, &request.profile_id);
        return error(
            StatusCode::NOT_FOUND,
            &diagnostic.message,
            Some("profile_id"),
            diagnostic.help.as_deref(),
        );
    }
    let mut args = vec!["thin-client".to_string()];
    if let Some(url) = &request.url {
        args.extend(["--url".to_string(), url.clone()]);
    }
    args.extend(["--".to_string(), request.profile_id.clone()]);
    queued(&state, "thin-client", &request.profile_id, &[], args)
}

async fn list_builds(axum::extract::State(state): axum::extract::State<State>) -> Answer {
    Answer {
        status: StatusCode::OK,
        body: serde_json::to_vec(&json!({"builds": state.builds.list()}))
            .expect("builds serialize"),
    }
}

fn unknown_build(id: &str) -> Answer {
    error(
        StatusCode::NOT_FOUND,
        &format!("no build `{id}`"),
        Some("id"),
        Some("GET /api/v1/builds lists the builds this server remembers"),
    )
}

async fn show_build(
    axum::extract::State(state): axum::extract::State<State>,
    Path(id): Path<String>,
) -> Answer {
    match state.builds.view(&id) {
        Some(view) => Answer {
            status: StatusCode::OK,
            body: serde_json::to_vec(&view).expect("builds serialize"),
        },
        None => unknown_build(&id),
    }
}

/// The build's log as server-sent events: one `log` event per JSON line (those written so
/// far, then each as it comes), then one `end` event with the build's final state.
async fn build_logs(
    axum::extract::State(state): axum::extract::State<State>,
    Path(id): Path<String>,
) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures_util::StreamExt as _;
    if state.builds.view(&id).is_none() {
        return unknown_build(&id).into_response();
    }
    let builds = Arc::clone(&state.builds);
    // (next line, finished)
    let stream = futures_util::stream::unfold((0usize, false), move |(from, ended)| {
        let builds = Arc::clone(&builds);
        let id = id.clone();
        async move {
            if ended {
                return None;
            }
            let (lines, done) = builds
                .wait_lines(&id, from, std::time::Duration::from_secs(10))
                .await?;
            let next = from + lines.len();
            let mut events: Vec<Result<Event, std::convert::Infallible>> = lines
                .into_iter()
                .map(|line| Ok(Event::default().event("log").data(line)))
                .collect();
            if done {
                let view = builds.view(&id);
                events.push(Ok(Event::default()
                    .event("end")
                    .data(serde_json::to_string(&view).expect("builds serialize"))));
            }
            Some((futures_util::stream::iter(events), (next, done)))
        }
    })
    .flatten();
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Where a profile's packages are: its installers and archives, and its thin client's.
fn package_dirs(out: &camino::Utf8Path, profile: &str) -> [camino::Utf8PathBuf; 2] {
    [
        crate::publish::packages_dir(out, profile),
        crate::electron::thin::thin_dir(out, profile).join("packages"),
    ]
}

/// The packages of `only` (empty: every profile): regular files of `<out>/<profile>/packages/`,
/// listed through the confined tree (a link there is not a package).
fn artifacts(root: &camino::Utf8Path, only: &str) -> Vec<Artifact> {
    located(root, only)
        .map(|(_, found)| found.into_iter().map(|(artifact, _)| artifact).collect())
        .unwrap_or_default()
}

/// [`artifacts`], each with its root-relative path, and the confined tree they were found in.
fn located(
    root: &camino::Utf8Path,
    only: &str,
) -> Option<(engine::confine::Dir, Vec<(Artifact, camino::Utf8PathBuf)>)> {
    let config = load_config(root).ok()?;
    let tree = engine::confine::Dir::open_root(root.as_std_path()).ok()?;
    let mut found = Vec::new();
    for profile in &config.profiles {
        if !only.is_empty() && profile.name != only {
            continue;
        }
        for dir in package_dirs(&config.workspace.out, &profile.name) {
            let Ok(Some(packages)) = tree.open_dir(dir.as_str()) else {
                continue;
            };
            let Ok(entries) = packages.entries() else {
                continue;
            };
            for (name, kind) in entries {
                let Ok(name) = String::from_utf8(name) else {
                    continue;
                };
                if kind != engine::confine::Kind::File || engine::confine::is_temp_name(&name) {
                    continue;
                }
                let Ok(Some((engine::confine::Kind::File, stat))) = packages.lstat(&name) else {
                    continue;
                };
                let path = dir.join(&name);
                found.push((
                    Artifact {
                        url: format!("/api/v1/desktop/packages/{}/{name}", profile.name),
                        profile: profile.name.clone(),
                        name,
                        size: stat.size,
                    },
                    path,
                ));
            }
        }
    }
    found.sort_by(|(a, _), (b, _)| (&a.profile, &a.name).cmp(&(&b.profile, &b.name)));
    Some((tree, found))
}

async fn list_packages(axum::extract::State(state): axum::extract::State<State>) -> Answer {
    let root = Arc::clone(&state.root);
    let found = tokio::task::spawn_blocking(move || artifacts(&root, ""))
        .await
        .unwrap_or_default();
    Answer {
        status: StatusCode::OK,
        body: serde_json::to_vec(&json!({"packages": found})).expect("packages serialize"),
    }
}

/// One package file, opened through the confined tree (never through a link) and streamed.
async fn download_package(
    axum::extract::State(state): axum::extract::State<State>,
    Path((profile, name)): Path<(String, String)>,
) -> Response {
    let root = Arc::clone(&state.root);
    let opened = tokio::task::spawn_blocking(move || {
        let (tree, found) = located(&root, &profile)?;
        let (artifact, path) = found
            .into_iter()
            .find(|(artifact, _)| artifact.name == name)?;
        let (file, stat) = tree.open_file(path.as_str()).ok()??;
        Some((artifact.name, file, stat.size))
    })
    .await
    .ok()
    .flatten();
    let Some((name, file, size)) = opened else {
        return error(
            StatusCode::NOT_FOUND,
            "no such package",
            None,
            Some("GET /api/v1/desktop/packages lists them"),
        )
        .into_response();
    };
    // Read on a blocking thread, 64 KiB at a time, into the response as it is sent.
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = file.take(size);
        loop {
            let mut chunk = vec![0; 64 * 1024];
            match file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    chunk.truncate(n);
                    if sender.blocking_send(Ok(chunk)).is_err() {
                        break;
                    }
                }
                Err(err) => {
                    let _ = sender.blocking_send(Err(err));
                    break;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    let mut response = axum::body::Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

async fn openapi(axum::extract::State(state): axum::extract::State<State>) -> Answer {
    let root = Arc::clone(&state.root);
    let examples = tokio::task::spawn_blocking(move || Examples::of(&root))
        .await
        .unwrap_or_default();
    Answer {
        status: StatusCode::OK,
        body: serde_json::to_vec_pretty(&document(&examples)).expect("the document serializes"),
    }
}

/// This workspace's names, given as examples of the parameters that take them (so a client
/// generating requests from the document reaches real scenarios and profiles).
#[derive(Default)]
pub(super) struct Examples {
    scenarios: Vec<String>,
    profiles: Vec<String>,
}

impl Examples {
    fn of(root: &camino::Utf8Path) -> Examples {
        let Ok(config) = load_config(root) else {
            return Examples::default();
        };
        let layout = crate::names::layout(&config, root);
        Examples {
            scenarios: layout.scenario_names(),
            profiles: config.profiles.iter().map(|p| p.name.clone()).collect(),
        }
    }

    fn of_parameter(&self, name: &str) -> &[String] {
        match name {
            "scenario" => &self.scenarios,
            "id" | "profile" => &self.profiles,
            _ => &[],
        }
    }
}

async fn not_found() -> Answer {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint",
        None,
        Some("the endpoints are listed in /api/v1/openapi.json"),
    )
}

/// An endpoint's answer of `status` with a JSON body of `schema`.
macro_rules! json_answer {
    ($status:expr, $schema:expr) => {
        ($status, &[("application/json", $schema)])
    };
}

/// One endpoint: its route and its description.
struct Endpoint {
    method: Method,
    path: &'static str,
    summary: &'static str,
    /// (name, in, required, description)
    parameters: &'static [(&'static str, &'static str, bool, &'static str)],
    /// The request body's schema, for POST/PUT.
    request: Option<fn(&mut schemars::SchemaGenerator) -> schemars::Schema>,
    route: fn() -> MethodRouter<State>,
    /// Its success status and what it answers then: (content type, schema).
    success: (u16, &'static [(&'static str, Schema)]),
    /// The statuses it may answer besides its success, each with the error body.
    errors: &'static [u16],
}

/// A response body's schema, from the type the command line serializes.
type Schema = fn(&mut schemars::SchemaGenerator) -> Value;

fn schema<T: schemars::JsonSchema>(generator: &mut schemars::SchemaGenerator) -> Value {
    generator.subschema_for::<T>().to_value()
}

/// `{"<key>": [T]}`.
fn list_of<T: schemars::JsonSchema>(key: &str, generator: &mut schemars::SchemaGenerator) -> Value {
    json!({"type": "object", "required": [key], "properties": {key: {"type": "array", "items": schema::<T>(generator)}}})
}

const JSON_OBJECT: Schema = |_| json!({"type": "object"});
const TEXT: Schema = |_| json!({"type": "string"});
/// One server-sent event of a build's log: `log` (a JSON line of the command) or `end`.
const SSE_EVENT: Schema = |_| json!({"type": "object", "required": ["event", "data"], "properties": {"event": {"enum": ["log", "end"]}, "data": {"type": "string"}}});
const SVG: &str = "image/svg+xml";

const SCENARIO: (&str, &str, bool, &str) = ("scenario", "path", true, "a scenario name");
const TIER: (&str, &str, bool, &str) = (
    "tier",
    "query",
    false,
    "a tier (tier-2-desktop, desktop, 2, …)",
);
const SWAP: (&str, &str, bool, &str) = ("swap", "query", false, "a swap FROM=TO; repeatable");

fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint {
            method: Method::GET,
            path: "/api/v1/analyze/{scenario}",
            summary: "A scenario's full dependency analysis (as `cargo xtask analyze --message-format json`)",
            parameters: &[SCENARIO, TIER, SWAP],
            request: None,
            route: || get(analyze),
            success: json_answer!(200, schema::<crate::analysis::Analysis>),
            errors: &[400, 404],
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/dag/{scenario}",
            summary: "A scenario's dependency graph (JSON), or its rendering (`format`: svg, dot, mermaid)",
            parameters: &[
                SCENARIO,
                SWAP,
                (
                    "format",
                    "query",
                    false,
                    "json (default), svg, dot or mermaid",
                ),
            ],
            request: None,
            route: || get(dag),
            success: (
                200,
                &[
                    ("application/json", schema::<crate::analysis::Dag>),
                    (SVG, TEXT),
                    ("text/plain", TEXT),
                ],
            ),
            errors: &[400, 404],
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/fitness/score",
            summary: "A scenario's fitness per tier",
            parameters: &[("scenario", "query", true, "a scenario name"), TIER, SWAP],
            request: None,
            route: || get(fitness),
            success: json_answer!(200, schema::<super::super::queries::FitnessView>),
            errors: &[400, 404],
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/secrets/{scenario}",
            summary: "Every secret of a scenario's graph with its class for a tier",
            parameters: &[SCENARIO, TIER, SWAP],
            request: None,
            route: || get(secrets),
            success: json_answer!(200, schema::<super::super::pipeline::SecretsView>),
            errors: &[400, 404],
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/secrets/{scenario}/bundle",
            summary: "The bundle-safe secret plan: {secrets, excluded}",
            parameters: &[SCENARIO, TIER, SWAP],
            request: None,
            route: || get(secrets_bundle),
            success: json_answer!(200, schema::<super::super::pipeline::BundlePlanView>),
            errors: &[400, 404],
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/secrets/classify",
            summary: "The class of one declared secret for a tier",
            parameters: &[],
            request: Some(|generator| generator.subschema_for::<ClassifyRequest>()),
            route: || post(classify),
            success: json_answer!(200, schema::<super::super::pipeline::ClassificationView>),
            errors: &[400, 404, 413, 415],
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/profiles",
            summary: "The profiles of bundle.toml",
            parameters: &[],
            request: None,
            route: || get(list_profiles),
            success: (
                200,
                &[("application/json", |g| {
                    list_of::<super::super::profile::ProfileView>("profiles", g)
                })],
            ),
            errors: &[],
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/profiles/{id}",
            summary: "One profile",
            parameters: &[("id", "path", true, "a profile name")],
            request: None,
            route: || get(show_profile),
            success: json_answer!(200, schema::<super::super::profile::ProfileView>),
            errors: &[400, 404],
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/profiles",
            summary: "Create a profile in bundle.toml (`profile create`; comments kept; refused if `check` would refuse it)",
            parameters: &[],
            request: Some(|generator| generator.subschema_for::<NewProfile>()),
            route: || post(create_profile),
            success: json_answer!(201, schema::<super::super::profile::ProfileView>),
            errors: &[400, 404, 413, 415],
        },
        Endpoint {
            method: Method::PUT,
            path: "/api/v1/profiles/{id}",
            summary: "Change a profile's swaps or platforms (`profile set`)",
            parameters: &[("id", "path", true, "a profile name")],
            request: Some(|generator| generator.subschema_for::<ProfileChanges>()),
            route: || axum::routing::put(update_profile),
            success: json_answer!(200, schema::<super::super::profile::ProfileView>),
            errors: &[400, 404, 413, 415],
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/bundles/assemble",
            summary: "A profile's bundle.json (`assemble`): swaps and settings from the profile",
            parameters: &[],
            request: Some(|generator| generator.subschema_for::<ProfileRequest>()),
            route: || post(assemble),
            success: json_answer!(200, schema::<manifest::Manifest>),
            errors: &[400, 404, 413, 415],
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/bundles/export",
            summary: "Write a profile's bundle.json and its checksum (`export`): the command line's `exported` line",
            parameters: &[],
            request: Some(|generator| generator.subschema_for::<ProfileRequest>()),
            route: || post(export),
            success: json_answer!(200, exported_schema),
            errors: &[400, 404, 413, 415, 422],
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/desktop/package",
            summary: "Queue a build of a profile's bundles and installers (`bundle`)",
            parameters: &[],
            request: Some(|generator| generator.subschema_for::<PackageRequest>()),
            route: || post(package),
            success: json_answer!(202, schema::<BuildView>),
            errors: &[400, 404, 413, 415, 422, 429, 503],
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/desktop/generate/quick",
            summary: "Queue a build of a profile's thin client (`thin-client`)",
            parameters: &[],
            request: Some(|generator| generator.subschema_for::<QuickRequest>()),
            route: || post(generate_quick),
            success: json_answer!(202, schema::<BuildView>),
            errors: &[400, 404, 413, 415, 422, 429, 503],
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/builds",
            summary: "The builds this server ran or queued, newest first",
            parameters: &[],
            request: None,
            route: || get(list_builds),
            success: (
                200,
                &[("application/json", |g| list_of::<BuildView>("builds", g))],
            ),
            errors: &[],
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/builds/{id}",
            summary: "One build: its status, exit code and artifacts",
            parameters: &[("id", "path", true, "a build id")],
            request: None,
            route: || get(show_build),
            success: json_answer!(200, schema::<BuildView>),
            errors: &[404],
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/builds/{id}/logs",
            summary: "A build's log as server-sent events (`log`: one JSON line each, while it runs; `end`: the build)",
            parameters: &[("id", "path", true, "a build id")],
            request: None,
            route: || get(build_logs),
            success: (200, &[("text/event-stream", SSE_EVENT)]),
            errors: &[404],
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/desktop/packages",
            summary: "The installers and archives built (every profile's packages)",
            parameters: &[],
            request: None,
            route: || get(list_packages),
            success: (
                200,
                &[("application/json", |g| list_of::<Artifact>("packages", g))],
            ),
            errors: &[],
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/desktop/packages/{profile}/{name}",
            summary: "Download one package",
            parameters: &[
                ("profile", "path", true, "a profile name"),
                ("name", "path", true, "the package's file name"),
            ],
            request: None,
            route: || get(download_package),
            success: (200, &[("application/octet-stream", TEXT)]),
            errors: &[404],
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/openapi.json",
            summary: "This document",
            parameters: &[],
            request: None,
            route: || get(openapi),
            success: json_answer!(200, JSON_OBJECT),
            errors: &[],
        },
    ]
}

/// The `exported` line of `export`: the command line's event, with the manifest written.
fn exported_schema(generator: &mut schemars::SchemaGenerator) -> Value {
    json!({
        "type": "object",
        "required": ["event", "profile", "path", "sha256", "manifest"],
        "properties": {
            "event": {"const": "exported"},
            "profile": {"type": "string"},
            "path": {"type": "string"},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "manifest": schema::<manifest::Manifest>(generator),
        },
    })
}

/// The OpenAPI 3.1 document of [`endpoints`].
pub(super) fn document(examples: &Examples) -> Value {
    // Requests as they are read (a defaulted field is optional), answers as they are written
    // (a field skipped when empty is optional).
    let settings = schemars::generate::SchemaSettings::draft2020_12()
        .with(|settings| settings.definitions_path = "/components/schemas".into());
    let mut requests = settings.clone().for_deserialize().into_generator();
    let mut generator = settings.for_serialize().into_generator();
    let error_schema = json!({
        "type": "object",
        "required": ["error", "field", "help"],
        "properties": {
            "error": {"type": "string"},
            "field": {"type": ["string", "null"]},
            "help": {"type": ["string", "null"]},
        },
    });
    let mut paths = serde_json::Map::new();
    for endpoint in endpoints() {
        let parameters: Vec<Value> = endpoint
            .parameters
            .iter()
            .map(|(name, place, required, description)| {
                let schema = match *name {
                    "swap" => json!({"type": "array", "items": {"type": "string"}}),
                    "tier" => json!({"type": "string", "enum": crate::analysis::tier::Tier::spellings()}),
                    "format" => json!({"type": "string", "enum": ["json", "svg", "dot", "mermaid"]}),
                    _ => json!({"type": "string"}),
                };
                let mut parameter = json!({"name": name, "in": place, "required": required, "description": description, "schema": schema});
                let known = examples.of_parameter(name);
                // A build's id is no profile's.
                let build_id = *name == "id" && endpoint.path.starts_with("/api/v1/builds");
                if !known.is_empty() && !build_id {
                    parameter["examples"] = known
                        .iter()
                        .map(|value| (value.clone(), json!({"value": value})))
                        .collect::<serde_json::Map<_, _>>()
                        .into();
                }
                parameter
            })
            .collect();
        let mut responses = serde_json::Map::new();
        let (status, bodies) = endpoint.success;
        let content: serde_json::Map<String, Value> = bodies
            .iter()
            .map(|(content_type, schema)| {
                (
                    content_type.to_string(),
                    json!({"schema": schema(&mut generator)}),
                )
            })
            .collect();
        responses.insert(
            status.to_string(),
            json!({"description": "the result", "content": content}),
        );
        // Any request may be refused for want of a token (when the server has one).
        for status in endpoint.errors.iter().chain(&[401]) {
            responses.insert(
                status.to_string(),
                json!({"description": "an error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
            );
        }
        let mut operation = json!({
            "summary": endpoint.summary,
            "parameters": parameters,
            "responses": responses,
        });
        if let Some(request) = endpoint.request {
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": request(&mut requests)}},
            });
        }
        let method = endpoint.method.as_str().to_ascii_lowercase();
        paths
            .entry(endpoint.path.to_string())
            .or_insert_with(|| json!({}))[method] = operation;
    }
    let mut schemas: BTreeMap<String, Value> =
        generator.take_definitions(true).into_iter().collect();
    for (name, schema) in requests.take_definitions(true) {
        let previous = schemas.insert(name.clone(), schema.clone());
        assert!(
            previous.is_none_or(|previous| previous == schema),
            "two schemas named {name}"
        );
    }
    schemas.insert("Error".into(), error_schema);
    json!({
        "openapi": "3.1.0",
        "info": {"title": "xbundle", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

async fn authorize(
    axum::extract::State(state): axum::extract::State<State>,
    request: Request,
    next: Next,
) -> Response {
    // The dashboard's own files hold no data: served without the token, which its script
    // then asks for and sends with every API request.
    let public = DASHBOARD
        .iter()
        .any(|(path, _, _)| *path == request.uri().path());
    if let Some(token) = state.token.as_ref().filter(|_| !public) {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| {
                // `Bearer TOKEN`, the scheme in any case (RFC 9110 §11.1), one space.
                let value = value.as_bytes();
                (value.len() > 7 && value[..7].eq_ignore_ascii_case(b"bearer "))
                    .then(|| &value[7..])
            })
            .unwrap_or_default();
        // Constant time over the token's length: a wrong guess says nothing of how close it was.
        if !bool::from(given.ct_eq(token.as_bytes())) {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "a valid token is required",
                None,
                Some("send `Authorization: Bearer TOKEN`"),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    next.run(request).await
}

/// Errors made below the handlers (axum's extractors: a path that is not UTF-8 once decoded, a
/// method not allowed) come as plain text: they are answered as JSON errors like every other.
async fn errors_as_json(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if json || !(response.status().is_client_error() || response.status().is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        parts
            .status
            .canonical_reason()
            .unwrap_or("bad request")
            .to_string()
    } else {
        text
    };
    let mut answer = error(parts.status, &message, None, None).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// The dashboard's files, embedded in the binary (no CDN, nothing fetched at run time).
const DASHBOARD: [(&str, &str, &str); 4] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("dashboard/index.html"),
    ),
    (
        "/assets/dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/dashboard.js"),
    ),
    (
        "/assets/dashboard.css",
        "text/css; charset=utf-8",
        include_str!("dashboard/dashboard.css"),
    ),
    (
        "/assets/favicon.svg",
        "image/svg+xml",
        include_str!("dashboard/favicon.svg"),
    ),
];

/// One of [`DASHBOARD`]'s files, under a policy allowing only this server's own scripts,
/// styles and images.
fn dashboard_file(content_type: &'static str, text: &'static str) -> Response {
    let mut response = (StatusCode::OK, text).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

pub(super) fn router(state: State, cors_origins: &[HeaderValue]) -> axum::Router {
    // One method router per path, every method of the table merged into it.
    let mut routes: BTreeMap<&'static str, MethodRouter<State>> = BTreeMap::new();
    for endpoint in endpoints() {
        let route = (endpoint.route)();
        let merged = match routes.remove(endpoint.path) {
            Some(existing) => existing.merge(route),
            None => route,
        };
        routes.insert(endpoint.path, merged);
    }
    let mut router = axum::Router::new();
    for (path, route) in routes {
        router = router.route(path, route);
    }
    for (path, content_type, text) in DASHBOARD {
        router = router.route(
            path,
            get(move || async move { dashboard_file(content_type, text) }),
        );
    }
    let router = router
        .fallback(not_found)
        .layer(middleware::from_fn(errors_as_json))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(state.clone(), authorize));
    // Outermost: a preflight is answered before the token check (browsers send none with it).
    let router = if cors_origins.is_empty() {
        router
    } else {
        router.layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(cors_origins.to_vec())
                .allow_methods([Method::GET, Method::POST, Method::PUT])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
        )
    };
    router.with_state(state)
}
