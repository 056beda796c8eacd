//! A fuzzing pass of schemathesis (from the Python registry; `.ci/run` installs it and says
//! where through `XBUNDLE_SCHEMATHESIS`) against `cargo xtask serve`'s own OpenAPI document, on
//! a copy of this repository's pipeline: no request it generates may get a 5xx, a status the
//! document does not list, a content type it does not say, or a body its schema rejects.
//! Missing schemathesis fails the test under `XBUNDLE_REQUIRE_TOOLS=1` and skips otherwise.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{Repo, copy_tree};
use serde_json::Value;

fn schemathesis() -> Option<String> {
    if let Ok(path) = std::env::var("XBUNDLE_SCHEMATHESIS") {
        return Some(path);
    }
    if common::have_tool("schemathesis", "schemathesis (pip install schemathesis)") {
        return Some("schemathesis".into());
    }
    None
}

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let Some(schemathesis) = schemathesis() else {
        return;
    };
    if !common::have_tool("go", "golang-go") {
        return;
    }
    // The demo's scenarios for the queries; profiles of a small Go app, so the builds the
    // fuzzer starts are quick and never need the network.
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let repo = Repo::new(
        "[workspace]\ndefault-profile = \"one\"\n\n[profiles.one]\nscenario = \"app\"\ntier = \"desktop\"\nplatforms = [\"linux-x64\"]\nformats = [\"tar.gz\"]\nswaps = { postgres = \"sqlite\" }\n\n[profiles.two]\nscenario = \"app\"\ntier = \"saas\"\nplatforms = [\"linux-x64\"]\nformats = [\"tar.gz\"]\n",
        &[],
    );
    for dir in ["scenarios", "resources", "platforms"] {
        copy_tree(&source.join(dir), &repo.join(dir));
    }
    for (path, text) in [
        (
            "scenarios/app/.vrooli/service.json",
            r#"{"service": {"name": "app", "version": "1.0.0", "type": "scenario"}, "ports": {"api": {"env_var": "API_PORT", "range": "15000-19999"}, "ui": {"env_var": "UI_PORT", "range": "35000-39999"}}, "dependencies": {"resources": {"postgres": {"type": "postgres", "enabled": true, "required": true}}}}"#,
        ),
        (
            "scenarios/app/api/go.mod",
            "module example.com/app/api\n\ngo 1.19\n",
        ),
        (
            "scenarios/app/api/main.go",
            "package main\n\nimport \"os\"\n\nfunc main() { os.Exit(0) }\n",
        ),
        (
            "scenarios/app/ui/index.html",
            "<!doctype html><title>app</title>\n",
        ),
    ] {
        repo.write(path, text);
    }
    let mut server = repo
        .command()
        .args(["serve", "--addr", "127.0.0.1:0", "--message-format", "json"])
        .env_remove("XBUNDLE_SERVE_TOKEN")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start xtask serve");
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let event: Value = serde_json::from_str(&line).expect("the serving line");
    let base = event["url"]
        .as_str()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let output = Command::new(&schemathesis)
        .args(["run", &format!("{base}/api/v1/openapi.json")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
            "--max-examples",
            "20",
            // A build's log streams until the build ends: time for a first build.
            "--request-timeout",
            "300",
            "--no-color",
        ])
        .current_dir(repo.sandbox())
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .unwrap_or_else(|err| panic!("run {schemathesis}: {err}"));
    let _ = server.kill();
    let _ = server.wait();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // It did test the API (every operation of the document), not an empty one.
    let count = |label: &str| {
        report
            .lines()
            .find_map(|line| line.trim().strip_prefix(label))
            .and_then(|rest| rest.split('/').next())
            .and_then(|n| n.trim().parse::<usize>().ok())
    };
    let tested = count("Tested:");
    assert!(tested.is_some_and(|n| n >= 19), "{report}");
    assert_eq!(tested, count("Selected:"), "{report}");
}
