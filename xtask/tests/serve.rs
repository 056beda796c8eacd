//! `cargo xtask serve` over HTTP, through the real binary on a copy of this repository's
//! pipeline: answers byte-identical to the command line's JSON payloads, errors as JSON with
//! their 4xx status and field, the token, and the OpenAPI document listing what is served.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

use common::{Repo, copy_tree};
use serde_json::Value;

/// A copy of this repository's pipeline: bundle.toml, scenarios, resources, platforms.
fn demo() -> Repo {
    let repo = Repo::empty();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in ["scenarios", "resources", "platforms", "demo"] {
        copy_tree(&source.join(dir), &repo.join(dir));
    }
    repo.write(
        "bundle.toml",
        std::fs::read_to_string(source.join("bundle.toml")).unwrap(),
    );
    repo
}

/// A running `xtask serve` on a free port; killed on drop.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(repo: &Repo, env: &[(&str, &str)], extra: &[&str]) -> Server {
    let mut command = repo.command();
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--message-format", "json"])
        .args(extra)
        .env_remove("XBUNDLE_SERVE_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("start xtask serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("read the serving line");
    let event: Value = serde_json::from_str(&line)
        .unwrap_or_else(|err| panic!("not a JSON line: {line:?}: {err}"));
    assert_eq!(event["event"], "serving", "{line}");
    let base = event["url"]
        .as_str()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    Server { child, base }
}

struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!("not JSON ({err}): {}", String::from_utf8_lossy(&self.body))
        })
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

impl Server {
    fn get(&self, path: &str) -> Answer {
        self.get_with(path, None)
    }

    fn get_with(&self, path: &str, token: Option<&str>) -> Answer {
        let mut request = agent().get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let mut response = request.call().expect("the server answers");
        Answer {
            status: response.status().as_u16(),
            body: response.body_mut().read_to_vec().unwrap(),
        }
    }

    fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Answer {
        let mut response = agent()
            .post(format!("{}{path}", self.base))
            .header("Content-Type", content_type)
            .send(body)
            .expect("the server answers");
        Answer {
            status: response.status().as_u16(),
            body: response.body_mut().read_to_vec().unwrap(),
        }
    }
}

/// The exact bytes of `key` in the command line's `event` line.
fn cli_payload(repo: &Repo, args: &[&str], event: &str, key: &str) -> Vec<u8> {
    let output = repo
        .command()
        .args(args)
        .args(["--message-format", "json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{args:?}: {output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    for line in stdout.lines() {
        let fields: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
            serde_json::from_str(line).unwrap();
        if fields.get("event").map(|raw| raw.get()) == Some(&format!("\"{event}\"")) {
            return fields[key].get().as_bytes().to_vec();
        }
    }
    panic!("no {event} event in {stdout}");
}

#[test]
fn answers_are_byte_identical_to_the_command_line() {
    let repo = demo();
    let server = serve(&repo, &[], &[]);
    let cases: [(&str, &[&str], &str); 4] = [
        (
            "/api/v1/analyze/picker-wheel?tier=desktop&swap=postgres=sqlite",
            &[
                "analyze",
                "picker-wheel",
                "--tier",
                "desktop",
                "--swap",
                "postgres=sqlite",
            ],
            "analysis",
        ),
        (
            "/api/v1/secrets/picker-wheel/bundle?tier=tier-2-desktop&swap=postgres%3Dsqlite&swap=redis=in-process",
            &[
                "secrets",
                "picker-wheel",
                "--bundle",
                "--tier",
                "tier-2-desktop",
                "--swap",
                "postgres=sqlite",
                "--swap",
                "redis=in-process",
            ],
            "secrets",
        ),
        (
            "/api/v1/fitness/score?scenario=notes-app&tier=desktop",
            &["fitness", "notes-app", "--tier", "desktop"],
            "fitness",
        ),
        (
            "/api/v1/secrets/notes-app",
            &["secrets", "notes-app"],
            "secrets",
        ),
    ];
    for (path, args, event) in cases {
        let answer = server.get(path);
        assert_eq!(
            answer.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        let expected = cli_payload(&repo, args, event, event);
        assert!(
            answer.body == expected,
            "{path} differs from `{}`:\n{}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&answer.body),
            String::from_utf8_lossy(&expected)
        );
    }
    // The seed's shape: {secrets, excluded}, infrastructure secrets excluded by the swaps.
    let plan = server
        .get("/api/v1/secrets/picker-wheel/bundle?tier=desktop&swap=postgres=sqlite&swap=redis=in-process")
        .json();
    assert!(
        plan["secrets"].is_array() && plan["excluded"].is_array(),
        "{plan}"
    );
    let dag = server.get("/api/v1/dag/picker-wheel").json();
    assert!(
        dag["nodes"].as_array().is_some_and(|n| !n.is_empty()),
        "{dag}"
    );
}

#[test]
fn bad_requests_are_json_errors_naming_what_is_wrong() {
    let repo = demo();
    let server = serve(&repo, &[], &[]);
    let cases: [(Answer, u16, Option<&str>, &str); 9] = [
        (
            server.get("/api/v1/analyze/no-such-app"),
            404,
            Some("scenario"),
            "no-such-app",
        ),
        (
            server.get("/api/v1/analyze/..%2F..%2Fetc"),
            400,
            Some("scenario"),
            "not a scenario name",
        ),
        (
            server.get("/api/v1/analyze/picker-wheel?tier=tier-9"),
            400,
            Some("tier"),
            "unknown tier",
        ),
        (
            server.get("/api/v1/analyze/picker-wheel?swap=postgres"),
            400,
            Some("swap"),
            "postgres",
        ),
        (
            server.get("/api/v1/fitness/score"),
            400,
            Some("scenario"),
            "scenario",
        ),
        (
            server.get("/api/v1/profiles/no-such-profile"),
            404,
            Some("id"),
            "no-such-profile",
        ),
        (
            server.get("/api/v1/no/such/endpoint"),
            404,
            None,
            "no such endpoint",
        ),
        (
            server.post(
                "/api/v1/secrets/classify",
                "application/json",
                b"{\"owner\": ",
            ),
            400,
            None,
            "malformed JSON",
        ),
        (
            server.post("/api/v1/secrets/classify", "text/plain", b"{}"),
            415,
            None,
            "must be JSON",
        ),
    ];
    for (answer, status, field, words) in cases {
        let body = answer.json();
        assert_eq!(answer.status, status, "{body}");
        assert_eq!(body["field"].as_str(), field, "{body}");
        assert!(body["error"].as_str().unwrap().contains(words), "{body}");
    }
    let huge = vec![b' '; 1024 * 1024];
    let answer = server.post("/api/v1/secrets/classify", "application/json", &huge);
    assert_eq!(answer.status, 413);
    assert!(answer.json()["help"].as_str().unwrap().contains("limited"));
    // A value starting with `-` is a value, never an option of the command.
    let answer = server.get("/api/v1/analyze/--help");
    assert_eq!(answer.status, 404, "{}", answer.json());
}

#[test]
fn a_token_guards_every_request_and_elsewhere_than_loopback_one_is_required() {
    let repo = demo();
    let refused = repo
        .command()
        .args(["serve", "--addr", "0.0.0.0:0"])
        .env_remove("XBUNDLE_SERVE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("needs a token"));

    let token = "0123456789abcdef0123456789abcdef";
    let server = serve(&repo, &[("XBUNDLE_SERVE_TOKEN", token)], &[]);
    for (given, status) in [
        (None, 401),
        (Some("0123456789abcdef0123456789abcdee"), 401),
        (Some("0123"), 401),
        (Some(token), 200),
    ] {
        let answer = server.get_with("/api/v1/profiles", given);
        assert_eq!(answer.status, status, "{given:?}");
    }
}

#[test]
fn the_openapi_document_describes_what_is_served() {
    let repo = demo();
    let server = serve(&repo, &[], &[]);
    let document = server.get("/api/v1/openapi.json").json();
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    for path in [
        "/api/v1/analyze/{scenario}",
        "/api/v1/dag/{scenario}",
        "/api/v1/fitness/score",
        "/api/v1/secrets/{scenario}",
        "/api/v1/secrets/{scenario}/bundle",
        "/api/v1/secrets/classify",
        "/api/v1/profiles",
        "/api/v1/profiles/{id}",
    ] {
        assert!(paths.contains_key(path), "{path} is not described");
    }
    let classify = &paths["/api/v1/secrets/classify"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    assert!(classify.is_object(), "{classify}");
    // Every described GET without a path parameter answers (nothing described is missing).
    for (path, item) in paths {
        if item.get("get").is_some() && !path.contains('{') && path != "/api/v1/fitness/score" {
            assert_eq!(server.get(path).status, 200, "{path}");
        }
    }
}
