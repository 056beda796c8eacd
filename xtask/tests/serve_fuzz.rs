//! A fuzzing pass of schemathesis (from the Python registry; `.ci/run` installs it and says
//! where through `XBUNDLE_SCHEMATHESIS`) against `cargo xtask serve`'s own OpenAPI document, on
//! a copy of this repository's pipeline: no request it generates may get a 5xx, a status the
//! document does not list, a content type it does not say, or a body its schema rejects.
//! Missing schemathesis fails the test under `XBUNDLE_REQUIRE_TOOLS=1` and skips otherwise.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{Repo, copy_tree};

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
    for (path, text) in common::serve::app_files(common::serve::SERVICE_WITH_POSTGRES) {
        repo.write(path, text);
    }
    let server = common::serve::start(repo.command(), &[], &[]);
    let base = &server.base;
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
    drop(server);
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
