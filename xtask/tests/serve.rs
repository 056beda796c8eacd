//! `cargo xtask serve` over HTTP, through the real binary on a copy of this repository's
//! pipeline: answers byte-identical to the command line's JSON payloads, errors as JSON with
//! their 4xx status and field, the token, and the OpenAPI document listing what is served.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;

use common::serve::Server;
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

fn serve(repo: &Repo, env: &[(&str, &str)], extra: &[&str]) -> Server {
    common::serve::start(repo.command(), env, extra)
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
    // Over the 64 KiB limit, small enough to be sent whole before the answer comes.
    let huge = vec![b' '; 100 * 1024];
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

/// A workspace with one scenario (a small Go API and a static UI) and two profiles packaging
/// it as tar.gz for this machine.
fn app() -> Repo {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let repo = Repo::new(
        "[workspace]\ndefault-profile = \"one\"\n\n[profiles.one]\nscenario = \"app\"\ntier = \"desktop\"\nplatforms = [\"linux-x64\"]\nformats = [\"tar.gz\"]\n\n[profiles.two]\nscenario = \"app\"\ntier = \"desktop\"\nplatforms = [\"linux-x64\"]\nformats = [\"tar.gz\"]\n",
        &common::serve::app_files(common::serve::SERVICE),
    );
    copy_tree(&source.join("platforms"), &repo.join("platforms"));
    repo
}

/// Reads server-sent events from `path` until `end`: (event, data) pairs, and for each `log`
/// event the build's status at the moment it arrived (asked for at once).
fn events(server: &Server, path: &str, build: &str) -> Vec<(String, String, Option<String>)> {
    let response = agent()
        .get(format!("{}{path}", server.base))
        .call()
        .expect("the logs answer");
    assert_eq!(response.status().as_u16(), 200);
    let mut reader = BufReader::new(response.into_body().into_reader());
    let mut found = Vec::new();
    let (mut event, mut data) = (String::new(), String::new());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            return found;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(name) = line.strip_prefix("event: ") {
            event = name.to_string();
        } else if let Some(text) = line.strip_prefix("data: ") {
            data = text.to_string();
        } else if line.is_empty() && !event.is_empty() {
            let status = (event == "log").then(|| {
                server.get(&format!("/api/v1/builds/{build}")).json()["status"]
                    .as_str()
                    .unwrap()
                    .to_string()
            });
            let end = event == "end";
            found.push((
                std::mem::take(&mut event),
                std::mem::take(&mut data),
                status,
            ));
            if end {
                return found;
            }
        }
    }
}

#[test]
fn two_package_requests_are_queued_built_one_at_a_time_and_downloadable() {
    if !common::have_tool("go", "golang-go") {
        return;
    }
    let repo = app();
    let server = serve(&repo, &[], &[]);
    let request = |profile: &str| {
        server.post(
            "/api/v1/desktop/package",
            "application/json",
            format!(r#"{{"profile_id": "{profile}", "platforms": ["linux-x64"], "compile_binaries": true, "sign": false}}"#)
                .as_bytes(),
        )
    };
    let (first, second) = std::thread::scope(|scope| {
        let first = scope.spawn(|| request("one"));
        let second = scope.spawn(|| request("two"));
        (first.join().unwrap(), second.join().unwrap())
    });
    let mut ids = Vec::new();
    for answer in [&first, &second] {
        let body = answer.json();
        assert_eq!(answer.status, 202, "{body}");
        assert_eq!(body["status"], "queued", "{body}");
        let id = body["build_id"].as_str().unwrap().to_string();
        assert_eq!(body["logs_url"], format!("/api/v1/builds/{id}/logs"));
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1]);
    // The log streams while the build runs: lines arrive with the build still running.
    let mut ends = Vec::new();
    let mut live = false;
    for id in &ids {
        let seen = events(&server, &format!("/api/v1/builds/{id}/logs"), id);
        let (last, data, _) = seen.last().expect("events");
        assert_eq!(last, "end", "{seen:?}");
        let end: Value = serde_json::from_str(data).unwrap();
        assert_eq!(end["status"], "succeeded", "{seen:?}");
        let logs: Vec<&(String, String, Option<String>)> =
            seen.iter().filter(|(event, _, _)| event == "log").collect();
        live |= logs
            .iter()
            .any(|(_, _, status)| status.as_deref() == Some("running"));
        assert!(
            logs.iter()
                .any(|(_, line, _)| line.contains("\"event\":\"build-finished\"")),
            "{seen:?}"
        );
        ends.push(end);
    }
    assert!(live, "no log line arrived while its build was running");
    // One at a time: the second started once the first had finished.
    let views: Vec<Value> = ids
        .iter()
        .map(|id| server.get(&format!("/api/v1/builds/{id}")).json())
        .collect();
    let (a, b) = if views[0]["started_at_ms"].as_u64() <= views[1]["started_at_ms"].as_u64() {
        (&views[0], &views[1])
    } else {
        (&views[1], &views[0])
    };
    assert!(
        b["started_at_ms"].as_u64().unwrap() >= a["finished_at_ms"].as_u64().unwrap(),
        "{a}\n{b}"
    );
    // Each build's artifact is its profile's tar.gz; the link downloads the very file.
    for (view, profile) in views.iter().zip(["one", "two"]) {
        let artifacts = view["artifacts"].as_array().unwrap();
        let names: Vec<&str> = artifacts
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        let archive = format!("{profile}-linux-x64.tar.gz");
        assert_eq!(names, ["SHA256SUMS", archive.as_str()], "{view}");
        let url = artifacts[1]["url"].as_str().unwrap();
        let download = server.get(url);
        assert_eq!(download.status, 200);
        let on_disk = repo.read_bytes(&format!(
            "dist/{profile}/packages/{profile}-linux-x64.tar.gz"
        ));
        assert!(download.body == on_disk, "{url} differs from the file");
        assert_eq!(artifacts[1]["size"].as_u64(), Some(on_disk.len() as u64));
        assert_eq!(&download.body[..2], b"\x1f\x8b", "a gzip stream");
    }
    let listed = server.get("/api/v1/desktop/packages").json();
    assert_eq!(listed["packages"].as_array().unwrap().len(), 4, "{listed}");
    // A request after a build is answered from the cache: nothing runs again.
    let again = request("one").json();
    let id = again["build_id"].as_str().unwrap();
    let seen = events(&server, &format!("/api/v1/builds/{id}/logs"), id);
    let finished = seen
        .iter()
        .find_map(|(event, line, _)| {
            let value: Value = serde_json::from_str(line).ok()?;
            (event == "log" && value["event"] == "build-finished").then_some(value)
        })
        .expect("a build-finished line");
    assert_eq!(finished["ran"], 0, "{finished}");
}

#[test]
fn package_requests_are_checked_before_they_are_queued() {
    let repo = app();
    let server = serve(&repo, &[], &[]);
    let cases: [(&str, u16, &str); 6] = [
        (r#"{"profile_id": "nope"}"#, 404, "profile_id"),
        (
            r#"{"profile_id": "one", "platforms": ["win-x64"]}"#,
            400,
            "platforms",
        ),
        (
            r#"{"profile_id": "one", "compile_binaries": false}"#,
            422,
            "compile_binaries",
        ),
        (r#"{"profile_id": "one", "sign": true}"#, 422, "sign"),
        (
            r#"{"profile_id": "one", "manifest_path": "/etc/passwd"}"#,
            400,
            "manifest_path",
        ),
        (r#"{"profile_id": "one", "colour": "blue"}"#, 400, "colour"),
    ];
    for (body, status, field) in cases {
        let answer = server.post(
            "/api/v1/desktop/package",
            "application/json",
            body.as_bytes(),
        );
        let json = answer.json();
        assert_eq!(answer.status, status, "{body}: {json}");
        assert_eq!(json["field"], field, "{body}: {json}");
    }
    assert_eq!(
        server.get("/api/v1/builds").json()["builds"],
        serde_json::json!([])
    );
    assert_eq!(server.get("/api/v1/builds/build-9").status, 404);
    assert_eq!(server.get("/api/v1/builds/build-9/logs").status, 404);
    for path in [
        "/api/v1/desktop/packages/one/..%2F..%2Fbundle.toml",
        "/api/v1/desktop/packages/one/bundle.toml",
        "/api/v1/desktop/packages/..%2F..%2F/x",
    ] {
        assert_eq!(server.get(path).status, 404, "{path}");
    }
}

#[test]
fn profiles_are_created_and_changed_in_bundle_toml_keeping_its_comments() {
    let repo = demo();
    let server = serve(&repo, &[], &[]);
    let before = repo.read("bundle.toml");
    assert!(before.contains("# Profiles: what each bundle holds."));
    let created = server.post(
        "/api/v1/profiles",
        "application/json",
        br#"{"name": "wheel-api", "scenario": "picker-wheel", "tier": "desktop", "swaps": {"postgres": "sqlite", "redis": "in-process"}, "platforms": ["linux-x64"]}"#,
    );
    let body = created.json();
    assert_eq!(created.status, 201, "{body}");
    assert_eq!(body["name"], "wheel-api");
    assert_eq!(body["platforms"], serde_json::json!(["linux-x64"]));
    let after = repo.read("bundle.toml");
    assert!(
        after.starts_with(&before[..before.len() / 2]),
        "comments and layout kept"
    );
    assert!(after.contains("[profiles.wheel-api]"), "{after}");

    let mut response = agent()
        .put(format!("{}/api/v1/profiles/wheel-api", server.base))
        .header("Content-Type", "application/json")
        .send(br#"{"platforms": ["win-x64"]}"#.as_slice())
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let changed: Value =
        serde_json::from_slice(&response.body_mut().read_to_vec().unwrap()).unwrap();
    assert_eq!(
        changed["platforms"],
        serde_json::json!(["linux-x64", "win-x64"]),
        "{changed}"
    );
    assert_eq!(server.get("/api/v1/profiles/wheel-api").json(), changed);
    let listed = server.get("/api/v1/profiles").json();
    assert!(
        listed["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "wheel-api"),
        "{listed}"
    );
    // What `check` would refuse is refused, and nothing is written.
    let written = repo.read("bundle.toml");
    for (body, status, field) in [
        (
            r#"{"name": "bad", "scenario": "no-such-app", "tier": "desktop"}"#,
            404,
            "scenario",
        ),
        (
            r#"{"name": "bad", "scenario": "picker-wheel", "tier": "tier-9"}"#,
            400,
            "tier",
        ),
        (r#"{"name": "bad"}"#, 400, "scenario"),
    ] {
        let answer = server.post("/api/v1/profiles", "application/json", body.as_bytes());
        let json = answer.json();
        assert_eq!(answer.status, status, "{body}: {json}");
        assert_eq!(json["field"], field, "{body}: {json}");
    }
    assert_eq!(
        repo.read("bundle.toml"),
        written,
        "a refused edit wrote nothing"
    );
}

#[test]
fn assemble_and_export_answer_what_the_command_line_prints() {
    let repo = demo();
    let server = serve(&repo, &[], &[]);
    let assembled = server.post(
        "/api/v1/bundles/assemble",
        "application/json",
        br#"{"profile_id": "picker-wheel-desktop"}"#,
    );
    assert_eq!(assembled.status, 200);
    let expected = cli_payload(
        &repo,
        &["assemble", "picker-wheel-desktop"],
        "manifest",
        "manifest",
    );
    assert!(assembled.body == expected, "assemble differs");

    let exported = server.post(
        "/api/v1/bundles/export",
        "application/json",
        br#"{"profile_id": "picker-wheel-desktop"}"#,
    );
    assert_eq!(exported.status, 200, "{}", exported.json());
    let body = exported.json();
    assert_eq!(body["path"], "dist/picker-wheel-desktop/bundle.json");
    let written = repo.read_bytes("dist/picker-wheel-desktop/bundle.json");
    assert_eq!(body["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(
        body["manifest"],
        serde_json::from_slice::<Value>(&written).unwrap()
    );
    let output = repo
        .command()
        .args(["export", "picker-wheel-desktop", "--message-format", "json"])
        .output()
        .unwrap();
    let line = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .find(|line| line.contains("\"event\":\"exported\""))
        .unwrap()
        .to_string();
    assert!(
        exported.body == line.as_bytes(),
        "export differs from the command line"
    );
    let missing = server.post(
        "/api/v1/bundles/export",
        "application/json",
        br#"{"profile_id": "nope"}"#,
    );
    assert_eq!(missing.status, 404, "{}", missing.json());
}

/// Waits for `id` to finish (through its log's `end` event) and returns the build.
fn finished(server: &Server, id: &str) -> Value {
    let seen = events(server, &format!("/api/v1/builds/{id}/logs"), id);
    let (event, data, _) = seen.last().expect("events");
    assert_eq!(event, "end", "{seen:?}");
    serde_json::from_str(data).unwrap()
}

#[test]
fn the_thin_client_is_built_from_a_quick_request_and_listed_with_the_packages() {
    if !common::have_tool("go", "golang-go") {
        return;
    }
    let repo = app();
    let server = serve(&repo, &[], &[]);
    let queued = server.post(
        "/api/v1/desktop/generate/quick",
        "application/json",
        br#"{"profile_id": "one", "url": "https://app.example.org/"}"#,
    );
    assert_eq!(queued.status, 202, "{}", queued.json());
    let build = finished(&server, queued.json()["build_id"].as_str().unwrap());
    assert_eq!(build["status"], "succeeded", "{build}");
    assert_eq!(build["kind"], "thin-client");
    let names: Vec<&str> = build["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"one-thin-linux-x64.tar.gz"), "{build}");
    let download = server.get("/api/v1/desktop/packages/one/one-thin-linux-x64.tar.gz");
    assert_eq!(download.status, 200);
    assert!(download.body == repo.read_bytes("dist/one/thin/packages/one-thin-linux-x64.tar.gz"));
    for (body, status, field) in [
        (r#"{"profile_id": "one", "url": "ftp://x"}"#, 202, None),
        (r#"{"profile_id": "nope"}"#, 404, Some("profile_id")),
    ] {
        let answer = server.post(
            "/api/v1/desktop/generate/quick",
            "application/json",
            body.as_bytes(),
        );
        let json = answer.json();
        assert_eq!(answer.status, status, "{json}");
        if let Some(field) = field {
            assert_eq!(json["field"], field, "{json}");
        } else {
            // A bad URL is the command's own refusal: the build fails with its diagnostic.
            let build = finished(&server, json["build_id"].as_str().unwrap());
            assert_eq!(build["status"], "failed", "{build}");
            assert_eq!(build["exit_code"], 2, "{build}");
        }
    }
}

#[test]
fn a_link_among_the_packages_is_neither_listed_nor_served() {
    let repo = app();
    let secret = repo.sandbox().join("secret.txt");
    std::fs::write(&secret, "not for download\n").unwrap();
    std::fs::create_dir_all(repo.join("dist/one/packages")).unwrap();
    std::os::unix::fs::symlink(&secret, repo.join("dist/one/packages/one-linux-x64.tar.gz"))
        .unwrap();
    std::os::unix::fs::symlink(repo.sandbox(), repo.join("dist/two")).unwrap();
    repo.write("dist/one/packages/real.zip", "zip bytes");
    let server = serve(&repo, &[], &[]);
    let listed = server.get("/api/v1/desktop/packages").json();
    let names: Vec<&str> = listed["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["real.zip"], "{listed}");
    for path in [
        "/api/v1/desktop/packages/one/one-linux-x64.tar.gz",
        "/api/v1/desktop/packages/two/secret.txt",
        "/api/v1/desktop/packages/two/packages%2Fsecret.txt",
    ] {
        let answer = server.get(path);
        assert_eq!(answer.status, 404, "{path}");
        assert!(!String::from_utf8_lossy(&answer.body).contains("not for download"));
    }
    assert_eq!(
        server.get("/api/v1/desktop/packages/one/real.zip").body,
        b"zip bytes"
    );
}

#[test]
fn cors_headers_only_for_the_origins_named() {
    let repo = demo();
    let header = |server: &Server, origin: &str| {
        let response = agent()
            .get(format!("{}/api/v1/profiles", server.base))
            .header("Origin", origin)
            .call()
            .unwrap();
        response
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_string())
    };
    let closed = serve(&repo, &[], &[]);
    assert_eq!(header(&closed, "https://dash.example.org"), None);
    let token = "0123456789abcdef0123456789abcdef";
    let open = serve(
        &repo,
        &[("XBUNDLE_SERVE_TOKEN", token)],
        &["--cors-origin", "https://dash.example.org"],
    );
    // The preflight is answered without the token; the request itself still needs it.
    let preflight = agent()
        .options(format!("{}/api/v1/profiles", open.base))
        .header("Origin", "https://dash.example.org")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "authorization")
        .call()
        .unwrap();
    assert_eq!(preflight.status().as_u16(), 200);
    assert_eq!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .unwrap(),
        "https://dash.example.org"
    );
    assert_eq!(open.get("/api/v1/profiles").status, 401);
    let other = agent()
        .options(format!("{}/api/v1/profiles", open.base))
        .header("Origin", "https://evil.example.org")
        .header("Access-Control-Request-Method", "GET")
        .call()
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let refused = repo
        .command()
        .args(["serve", "--cors-origin", "https://dash.example.org/path"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
}

#[test]
fn classify_and_the_dag_renderings_answer_what_the_command_line_prints() {
    let repo = demo();
    let server = serve(&repo, &[], &[]);
    let classified = server.post(
        "/api/v1/secrets/classify",
        "application/json",
        br#"{"owner": "postgres", "secret": "postgres_password", "tier": "desktop"}"#,
    );
    assert_eq!(classified.status, 200, "{}", classified.json());
    let expected = cli_payload(
        &repo,
        &[
            "secrets",
            "classify",
            "postgres",
            "postgres_password",
            "--tier",
            "desktop",
        ],
        "classification",
        "classification",
    );
    assert!(
        classified.body == expected,
        "classify differs from the command line"
    );
    let unknown = server.post(
        "/api/v1/secrets/classify",
        "application/json",
        br#"{"owner": "postgres", "secret": "no_such_secret", "tier": "desktop"}"#,
    );
    assert!(matches!(unknown.status, 400 | 404), "{}", unknown.json());

    for (format, content_type, start) in [
        ("svg", "image/svg+xml", "<"),
        ("dot", "text/plain; charset=utf-8", "digraph"),
        ("mermaid", "text/plain; charset=utf-8", "graph LR"),
    ] {
        let mut response = agent()
            .get(format!(
                "{}/api/v1/dag/picker-wheel?format={format}",
                server.base
            ))
            .call()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{format}");
        assert_eq!(
            response.headers().get("content-type").unwrap(),
            content_type,
            "{format}"
        );
        let text = response.body_mut().read_to_string().unwrap();
        assert!(text.trim_start().starts_with(start), "{format}: {text}");
        let output = repo
            .command()
            .args(["dag", "picker-wheel", "--format", format])
            .output()
            .unwrap();
        assert_eq!(
            text.as_bytes(),
            output.stdout,
            "{format} differs from the command line"
        );
    }
    let bad = server.get("/api/v1/dag/picker-wheel?format=png");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["field"], "format");
}
