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

use super::{Captured, run_captured};

/// The largest request body accepted (the API's bodies are small JSON objects).
pub(super) const BODY_LIMIT: usize = 64 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub(super) struct State {
    root: Arc<Utf8PathBuf>,
    token: Option<Arc<str>>,
}

impl State {
    pub(super) fn new(root: Utf8PathBuf, token: Option<String>) -> State {
        State {
            root: Arc::new(root),
            token: token.map(Arc::from),
        }
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
    let root = Arc::clone(&state.root);
    let Arguments { args, fields } = arguments;
    let captured = tokio::task::spawn_blocking(move || run_captured(&root, &args)).await;
    let captured = match captured {
        Ok(captured) => captured,
        Err(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the command panicked",
                None,
                None,
            );
        }
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
    let status = if unknown && matches!(field, Some("scenario" | "profile" | "id")) {
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
) -> Answer {
    let arguments = Arguments::new(&["dag"])
        .options("swap", "--swap", &query_values(&query, "swap"))
        .positionals(&[("scenario", &scenario)]);
    answer(&state, arguments, "dag", "dag").await
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
    serde_json::from_slice(body).map_err(|err| {
        let field = err.to_string().split('`').nth(1).map(str::to_string);
        let answer = error(
            StatusCode::BAD_REQUEST,
            &format!("malformed JSON body: {err}"),
            None,
            None,
        );
        match field {
            Some(field) => error(
                StatusCode::BAD_REQUEST,
                &format!("malformed JSON body: {err}"),
                Some(&field),
                None,
            ),
            None => answer,
        }
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
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return rejected(rejection.status(), &rejection.body_text()),
    };
    let request: ClassifyRequest = match json_body(&headers, &body) {
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

async fn openapi() -> Answer {
    Answer {
        status: StatusCode::OK,
        body: serde_json::to_vec_pretty(&document()).expect("the document serializes"),
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
    /// The statuses it may answer besides 200, each with the error body.
    errors: &'static [u16],
}

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
            errors: &[400, 404],
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/dag/{scenario}",
            summary: "A scenario's dependency graph",
            parameters: &[SCENARIO, SWAP],
            request: None,
            route: || get(dag),
            errors: &[400, 404],
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/fitness/score",
            summary: "A scenario's fitness per tier",
            parameters: &[("scenario", "query", true, "a scenario name"), TIER, SWAP],
            request: None,
            route: || get(fitness),
            errors: &[400, 404],
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/secrets/{scenario}",
            summary: "Every secret of a scenario's graph with its class for a tier",
            parameters: &[SCENARIO, TIER, SWAP],
            request: None,
            route: || get(secrets),
            errors: &[400, 404],
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/secrets/{scenario}/bundle",
            summary: "The bundle-safe secret plan: {secrets, excluded}",
            parameters: &[SCENARIO, TIER, SWAP],
            request: None,
            route: || get(secrets_bundle),
            errors: &[400, 404],
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/secrets/classify",
            summary: "The class of one declared secret for a tier",
            parameters: &[],
            request: Some(|generator| generator.subschema_for::<ClassifyRequest>()),
            route: || post(classify),
            errors: &[400, 404, 413, 415],
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/profiles",
            summary: "The profiles of bundle.toml",
            parameters: &[],
            request: None,
            route: || get(list_profiles),
            errors: &[],
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/profiles/{id}",
            summary: "One profile",
            parameters: &[("id", "path", true, "a profile name")],
            request: None,
            route: || get(show_profile),
            errors: &[400, 404],
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/openapi.json",
            summary: "This document",
            parameters: &[],
            request: None,
            route: || get(openapi),
            errors: &[],
        },
    ]
}

/// The OpenAPI 3.1 document of [`endpoints`].
pub(super) fn document() -> Value {
    let mut generator = schemars::generate::SchemaSettings::draft2020_12()
        .with(|settings| settings.definitions_path = "/components/schemas".into())
        .into_generator();
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
                let schema = if *name == "swap" {
                    json!({"type": "array", "items": {"type": "string"}})
                } else {
                    json!({"type": "string"})
                };
                json!({"name": name, "in": place, "required": required, "description": description, "schema": schema})
            })
            .collect();
        let mut responses = serde_json::Map::new();
        responses.insert(
            "200".into(),
            json!({"description": "the result", "content": {"application/json": {"schema": {}}}}),
        );
        for status in endpoint.errors {
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
                "content": {"application/json": {"schema": request(&mut generator)}},
            });
        }
        let method = endpoint.method.as_str().to_ascii_lowercase();
        paths
            .entry(endpoint.path.to_string())
            .or_insert_with(|| json!({}))[method] = operation;
    }
    let mut schemas: BTreeMap<String, Value> =
        generator.take_definitions(true).into_iter().collect();
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
    if let Some(token) = &state.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
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

pub(super) fn router(state: State) -> axum::Router {
    let mut router = axum::Router::new();
    for endpoint in endpoints() {
        router = router.route(endpoint.path, (endpoint.route)());
    }
    router
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
}
