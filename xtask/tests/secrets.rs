//! `cargo xtask secrets` through the real binary: the declared secrets of a scenario, the bundle
//! plan (`--bundle`, human and JSON, with its warnings), and `secrets classify` for resources and
//! scenarios.

use crate::common;

use std::path::Path;

use common::{Repo, copy_tree};
use serde_json::{Value, json};

/// A copy of this repository's definitions and bundle.toml.
fn demo() -> Repo {
    let repo = Repo::empty();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in ["scenarios", "resources", "platforms"] {
        copy_tree(&source.join(dir), &repo.join(dir));
    }
    repo.write(
        "bundle.toml",
        std::fs::read_to_string(source.join("bundle.toml")).unwrap(),
    );
    repo
}

/// Replaces `from` by `to` in a file of the repository (which must contain it).
fn edit(repo: &Repo, path: &str, from: &str, to: &str) {
    let text = repo.read(path);
    assert!(text.contains(from), "{path} has no {from:?}");
    repo.write(path, text.replacen(from, to, 1));
}

/// The payload of the command's one result event (`{"event": E, E: payload}`) in
/// `--message-format json` output.
fn document(run: &common::Run) -> Value {
    run.stdout
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|err| panic!("not JSON ({err}):\n{run}"))
        })
        .find_map(|event| {
            let kind = event["event"].as_str()?.to_string();
            event.get(&kind).cloned()
        })
        .unwrap_or_else(|| panic!("no result event:\n{run}"))
}

const SWAPS: [&str; 4] = ["--swap", "postgres=sqlite", "--swap", "redis=in-process"];

#[test]
fn secrets_lists_every_declared_secret_with_its_class_and_source() {
    let repo = demo();
    let run = repo.human(&["secrets", "picker-wheel"]);
    run.assert_code(0);
    let lines: Vec<Vec<&str>> = run
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        [
            vec![
                "session_secret",
                "per_install_generated",
                "declared",
                "scenario:picker-wheel"
            ],
            vec![
                "jwt_secret",
                "per_install_generated",
                "inferred",
                "scenario:picker-wheel"
            ],
            vec![
                "postgres_password",
                "infrastructure",
                "declared",
                "resource:postgres"
            ],
            vec![
                "postgres_user",
                "infrastructure",
                "declared",
                "resource:postgres"
            ],
            vec![
                "redis_password",
                "infrastructure",
                "declared",
                "resource:redis"
            ],
        ],
        "{run}"
    );
    assert!(run.stdout.starts_with(
        "  Classified picker-wheel on tier-2-desktop: 4 declared and 1 inferred secrets\n"
    ));

    let run = repo.human(&["secrets", "picker-wheel", "--message-format", "json"]);
    run.assert_code(0);
    let value = document(&run);
    assert_eq!(value["tier"], "tier-2-desktop");
    assert_eq!(
        value["secrets"][1],
        json!({"id": "jwt_secret", "owner": "scenario:picker-wheel", "bundled": true,
               "classification": {"class": "per_install_generated", "source": "inferred"},
               "target": {"type": "file", "name": "jwt.key"}})
    );
}

#[test]
fn secrets_bundle_json_is_the_contract_for_picker_wheel_with_its_swaps() {
    let repo = demo();
    let mut args = vec![
        "secrets",
        "picker-wheel",
        "--bundle",
        "--message-format",
        "json",
    ];
    args.extend(SWAPS);
    let run = repo.human(&args);
    run.assert_code(0);
    assert_eq!(run.stderr, "", "no warnings");
    assert_eq!(
        document(&run),
        json!({
            "secrets": [
                {"id": "jwt_secret", "class": "per_install_generated", "owner": "scenario:picker-wheel",
                 "description": "Signs API tokens",
                 "generator": {"type": "hex", "length": 64},
                 "target": {"type": "file", "name": "jwt.key"}, "required": true},
                {"id": "session_secret", "class": "per_install_generated", "owner": "scenario:picker-wheel",
                 "description": "Signs session cookies",
                 "generator": {"type": "random", "length": 48, "charset": "alnum"},
                 "target": {"type": "env", "name": "SESSION_SECRET"}, "required": true},
            ],
            "excluded": [
                {"id": "postgres_password", "reason": "resource postgres is swapped for sqlite"},
                {"id": "postgres_user", "reason": "resource postgres is swapped for sqlite"},
                {"id": "redis_password", "reason": "resource redis is swapped for in-process"},
            ],
            "warnings": [],
        })
    );
    // The same through `--message-format json`, as one `secrets` event.
    let mut args = vec!["secrets", "picker-wheel", "--bundle"];
    args.extend(SWAPS);
    let events = repo.json(&args);
    events.assert_code(0);
    assert_eq!(events.events("secrets")[0]["secrets"], document(&run));
    // Human: one line per secret.
    let human = repo.human(&args);
    human.assert_code(0);
    assert!(
        human.stdout.starts_with(
            "     Planned picker-wheel on tier-2-desktop: 2 secrets ship, 3 excluded\n"
        ),
        "{human}"
    );
    assert!(
        human.stdout.contains(
            "redis_password           excluded: resource redis is swapped for in-process"
        ),
        "{human}"
    );

    // Without the swaps, the infrastructure secrets fail the plan, naming the swap.
    let run = repo.human(&["secrets", "picker-wheel", "--bundle"]);
    run.assert_code(2);
    for (secret, resource) in [
        ("postgres_password", "postgres"),
        ("postgres_user", "postgres"),
        ("redis_password", "redis"),
    ] {
        assert!(
            run.stderr.contains(&format!(
                "secret `{secret}` of resource:{resource} is infrastructure, but {resource} stays in the bundle"
            )),
            "{run}"
        );
    }
    assert!(run.stderr.contains("--swap postgres=sqlite"), "{run}");
}

#[test]
fn secrets_bundle_warns_that_fetched_secrets_need_the_network_without_credentials() {
    let repo = demo();
    edit(
        &repo,
        "scenarios/picker-wheel/.vrooli/service.json",
        "\"secrets\": [",
        "\"secrets\": [\n      {\"id\": \"license_key\", \"fetch\": {\"url\": \"https://robot:hunter2@vault.local:8200/v1/license?token=abc123\", \"timeout_ms\": 3000}},",
    );
    let mut args = vec!["secrets", "picker-wheel", "--bundle"];
    args.extend(SWAPS);
    let warning = "secret `license_key` is fetched at run time from https://vault.local:8200/v1/license: the app cannot start offline";

    let human = repo.human(&args);
    human.assert_code(0);
    assert!(
        human.stderr.contains(&format!("warning: {warning}")),
        "{human}"
    );
    assert!(human.stdout.contains("license_key"), "{human}");

    let events = repo.json(&args);
    events.assert_code(0);
    assert_eq!(events.warnings(), [warning]);
    let plan = &events.events("secrets")[0]["secrets"];
    assert_eq!(plan["warnings"], json!([warning]));

    args.extend(["--message-format", "json"]);
    let pretty = repo.human(&args);
    pretty.assert_code(0);
    let value = document(&pretty);
    assert_eq!(value["warnings"], json!([warning]));
    let license = value["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "license_key")
        .unwrap();
    assert_eq!(
        license["fetch"],
        json!({"url": "https://vault.local:8200/v1/license", "timeout_ms": 3000})
    );
    assert_eq!(license["class"], "remote_fetch");

    for run in [&human, &events, &pretty] {
        for secret in ["hunter2", "robot", "abc123"] {
            assert!(
                !run.stdout.contains(secret) && !run.stderr.contains(secret),
                "`{secret}` printed:\n{run}"
            );
        }
    }
}

#[test]
fn secrets_classify_resources_and_scenarios_human_and_json() {
    let repo = demo();
    // A per-tier declaration: qdrant's key is prompted on desktops, infrastructure elsewhere.
    edit(
        &repo,
        "resources/qdrant/.vrooli/service.json",
        "\"classification\": \"infrastructure\",",
        "\"classification\": \"infrastructure\",\n        \"tiers\": {\"tier-2-desktop\": \"prompt\", \"tier-3-mobile\": \"strip\"},",
    );

    let run = repo.human(&[
        "secrets",
        "classify",
        "qdrant",
        "qdrant_api_key",
        "--tier",
        "desktop",
    ]);
    run.assert_code(0);
    assert_eq!(
        run.stdout,
        "  Classified qdrant_api_key (resource qdrant) on tier-2-desktop: user_prompt (per-tier)\n  prompt label: qdrant api key\n  prompt description: API key of the Qdrant server\n  target: env QDRANT_API_KEY\n"
    );
    let run = repo.human(&[
        "secrets",
        "classify",
        "qdrant",
        "qdrant_api_key",
        "--tier",
        "5",
    ]);
    run.assert_code(0);
    assert_eq!(
        run.stdout,
        "  Classified qdrant_api_key (resource qdrant) on tier-5-enterprise: infrastructure (declared)\n  target: env QDRANT_API_KEY\n"
    );
    let run = repo.human(&[
        "secrets",
        "classify",
        "qdrant",
        "qdrant_api_key",
        "--tier",
        "mobile",
        "--message-format",
        "json",
    ]);
    run.assert_code(0);
    assert_eq!(
        document(&run),
        json!({"owner": "resource:qdrant", "id": "qdrant_api_key", "tier": "tier-3-mobile",
               "class": "excluded", "source": "per-tier",
               "target": {"type": "env", "name": "QDRANT_API_KEY"}})
    );

    // A scenario's secret (no resource of that name): found in the scenario.
    let run = repo.human(&[
        "secrets",
        "classify",
        "picker-wheel",
        "session_secret",
        "--tier",
        "tier-2-desktop",
        "--message-format",
        "json",
    ]);
    run.assert_code(0);
    assert_eq!(
        document(&run),
        json!({"owner": "scenario:picker-wheel", "id": "session_secret", "tier": "tier-2-desktop",
               "class": "per_install_generated", "source": "declared",
               "generator": {"type": "random", "length": 48, "charset": "alnum"},
               "target": {"type": "env", "name": "SESSION_SECRET"}})
    );
    let run = repo.human(&[
        "secrets",
        "classify",
        "picker-wheel",
        "jwt_secret",
        "--tier",
        "2",
    ]);
    run.assert_code(0);
    assert_eq!(
        run.stdout,
        "  Classified jwt_secret (scenario picker-wheel) on tier-2-desktop: per_install_generated (inferred)\n  generator: hex, length 64\n  target: file jwt.key\n"
    );
    // `--message-format json`: one `classification` event.
    let events = repo.json(&[
        "secrets",
        "classify",
        "openrouter",
        "openrouter_api_key",
        "--tier",
        "2",
    ]);
    events.assert_code(0);
    let event = &events.events("classification")[0]["classification"];
    assert_eq!(event["class"], "user_prompt");
    assert_eq!(event["source"], "declared");
    assert_eq!(
        event["prompt"],
        json!({"label": "OpenRouter API key", "description": "OpenRouter API key", "format": "^sk-or-[A-Za-z0-9-]{16,}$"})
    );

    // An unknown secret: exit 2 with the owner's list.
    let run = repo.human(&["secrets", "classify", "postgres", "pg_root", "--tier", "2"]);
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("`postgres` declares no secret `pg_root`"),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("its secrets: postgres_password, postgres_user"),
        "{run}"
    );
    let events = repo.json(&["secrets", "classify", "postgres", "pg_root", "--tier", "2"]);
    events.assert_code(2);
    assert!(
        events.diagnostic()["help"]
            .as_str()
            .unwrap()
            .contains("postgres_password"),
        "{events}"
    );
    // An unknown owner, an unknown tier.
    let run = repo.human(&["secrets", "classify", "mongo", "x", "--tier", "2"]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("unknown resource or scenario `mongo`"),
        "{run}"
    );
    let run = repo.human(&[
        "secrets",
        "classify",
        "postgres",
        "postgres_user",
        "--tier",
        "9",
    ]);
    run.assert_code(2);
}
