//! `cargo xtask profile list | show | create | set` through the real binary: the happy path of
//! each command, edits that leave every byte outside the edited entry as it was (comments,
//! blank lines, key order), and bad inputs that exit 2 with a message and leave bundle.toml
//! byte-identical.

use crate::common;

use std::os::unix::fs::PermissionsExt;

use common::Repo;

/// Comments, blank lines, aligned comments and a non-canonical tier alias: all must survive.
const BUNDLE_TOML: &str = r#"# Fixture: comments and layout must survive every edit.

[workspace]
default-profile = "wheel"   # the default

# The wheel, on the desktop.
[profiles.wheel]
scenario = "wheel-app"
tier = "desktop"            # an alias, kept as written
platforms = ["linux-x64"]
swaps = { postgres = "sqlite" }
min-fitness = 0.5

# A second profile, without swaps or platforms.
[profiles.bare]
scenario = "wheel-app"
tier = "tier-1-local"

# Tasks come last.
[tasks.hello]
run = "echo hi"   # keep me
"#;

const SCENARIO: &str = r#"{
  "service": { "name": "wheel-app", "displayName": "Wheel", "version": "1.0.0", "type": "scenario" },
  "ports": { "api": { "env_var": "API_PORT", "range": "15000-19999" } },
  "dependencies": {
    "resources": {
      "postgres": { "type": "postgres", "enabled": true, "required": true },
      "redis": { "type": "redis", "enabled": true, "required": true }
    },
    "scenarios": {}
  }
}
"#;

fn resource(name: &str, desktop: f64, swaps: &[&str]) -> String {
    let swappable: Vec<String> = swaps
        .iter()
        .map(|to| format!(r#"{{ "id": "{to}", "relationship": "replacement" }}"#))
        .collect();
    format!(
        r#"{{
  "service": {{ "name": "{name}", "version": "1.0.0", "type": "resource" }},
  "deployment": {{
    "footprint": {{ "ram_mb": 64, "disk_mb": 64, "cpu_cores": 0.5, "gpu": "none", "network": "offline" }},
    "platform_support": {{
      "tier-1-local": {{ "supported": true, "fitness_score": 1.0, "reason": "local" }},
      "tier-2-desktop": {{ "supported": true, "fitness_score": {desktop}, "reason": "desktop" }},
      "tier-3-mobile": {{ "supported": false, "reason": "no" }},
      "tier-4-saas": {{ "supported": true, "fitness_score": 0.9, "reason": "saas" }},
      "tier-5-enterprise": {{ "supported": true, "fitness_score": 1.0, "reason": "enterprise" }}
    }},
    "swappable_with": [{}],
    "secrets": []
  }}
}}
"#,
        swappable.join(", ")
    )
}

fn platform(id: &str, goos: &str) -> String {
    format!(
        "id = \"{id}\"\nrust-target = \"x86_64-unknown-{goos}\"\ngoos = \"{goos}\"\ngoarch = \"amd64\"\nexe-suffix = \"\"\nformats = [\"tar.gz\"]\n"
    )
}

fn fixture() -> Repo {
    let postgres = resource("postgres", 0.6, &["sqlite"]);
    let sqlite = resource("sqlite", 0.95, &[]);
    let linux = platform("linux-x64", "linux");
    let windows = platform("win-x64", "windows");
    let repo = Repo::new(
        BUNDLE_TOML,
        &[
            ("scenarios/wheel-app/.vrooli/service.json", SCENARIO),
            ("resources/postgres/.vrooli/service.json", &postgres),
            ("resources/sqlite/.vrooli/service.json", &sqlite),
            ("platforms/linux-x64.toml", &linux),
            ("platforms/win-x64.toml", &windows),
        ],
    );
    std::fs::set_permissions(
        repo.join("bundle.toml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    repo
}

/// Runs a human-output command that must succeed and returns its stderr (status lines).
#[track_caller]
fn ok(repo: &Repo, args: &[&str]) -> String {
    let run = repo.human(args);
    run.assert_code(0);
    run.stderr
}

/// `BUNDLE_TOML` with `from` replaced by `to` (which must occur exactly once).
#[track_caller]
fn expected(from: &str, to: &str) -> String {
    assert_eq!(BUNDLE_TOML.matches(from).count(), 1, "{from:?}");
    BUNDLE_TOML.replacen(from, to, 1)
}

#[track_caller]
fn assert_text(repo: &Repo, want: &str) {
    let got = repo.read("bundle.toml");
    assert!(
        got == want,
        "bundle.toml differs\n--- got:\n{got}\n--- expected:\n{want}"
    );
}

#[test]
fn list_shows_every_profile_in_file_order() {
    let repo = fixture();
    let run = repo.human(&["profile", "list"]);
    run.assert_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{run}");
    assert!(lines[0].starts_with("NAME"), "{run}");
    let wheel: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        wheel,
        [
            "wheel",
            "(default)",
            "wheel-app",
            "tier-2-desktop",
            "1",
            "linux-x64"
        ],
        "{run}"
    );
    let bare: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        bare,
        ["bare", "wheel-app", "tier-1-local", "0", "-"],
        "{run}"
    );

    let run = repo.json(&["profile", "list"]);
    run.assert_code(0);
    let profiles = run.events("profile");
    assert_eq!(profiles.len(), 2, "{run}");
    assert_eq!(run.events.len(), 2, "only profile events: {run}");
    assert_eq!(profiles[0]["name"], "wheel");
    assert_eq!(profiles[0]["default"], true);
    assert_eq!(profiles[0]["tier"], "tier-2-desktop");
    assert_eq!(profiles[0]["swaps"]["postgres"], "sqlite");
    assert_eq!(common::strings(&profiles[0]["platforms"]), ["linux-x64"]);
    assert_eq!(profiles[0]["min_fitness"], 0.5);
    assert_eq!(profiles[1]["name"], "bare");
    assert_eq!(profiles[1]["default"], false);
}

#[test]
fn show_reports_settings_and_fitness_after_swaps() {
    let repo = fixture();
    let run = repo.human(&["profile", "show", "wheel"]);
    run.assert_code(0);
    for needle in [
        "wheel (default)",
        "scenario     wheel-app",
        "tier         tier-2-desktop",
        "swaps        postgres=sqlite",
        "for tier-2-desktop after swaps; meets min-fitness 0.50",
    ] {
        assert!(run.stdout.contains(needle), "missing {needle:?}\n{run}");
    }

    let run = repo.json(&["profile", "show", "wheel"]);
    run.assert_code(0);
    assert_eq!(run.events.len(), 1, "{run}");
    let event = &run.events("profile")[0];
    assert_eq!(event["name"], "wheel");
    let analysis = &event["analysis"];
    assert_eq!(analysis["tier"], "tier-2-desktop");
    assert_eq!(analysis["meets_min_fitness"], true, "{run}");
    let fitness = analysis["fitness"].as_f64().expect("a number");
    assert!((0.5..=1.0).contains(&fitness), "{run}");

    // The swap is what makes the difference: without it the fitness is lower.
    let bare = repo.json(&["profile", "show", "bare"]);
    bare.assert_code(0);
    assert_eq!(
        bare.events[0]["analysis"]["meets_min_fitness"],
        serde_json::Value::Null
    );
    assert_eq!(repo.read("bundle.toml"), BUNDLE_TOML, "show writes nothing");
}

#[test]
fn create_appends_after_the_last_profile() {
    let repo = fixture();
    let status = ok(
        &repo,
        &[
            "profile",
            "create",
            "wheel-saas",
            "--scenario",
            "wheel-app",
            "--tier",
            "saas",
        ],
    );
    assert!(
        status.contains("     Created profile wheel-saas: scenario wheel-app, tier tier-4-saas"),
        "{status}"
    );
    assert_text(
        &repo,
        &expected(
            "tier = \"tier-1-local\"\n\n# Tasks come last.",
            "tier = \"tier-1-local\"\n\n[profiles.wheel-saas]\nscenario = \"wheel-app\"\ntier = \"tier-4-saas\"\n\n# Tasks come last.",
        ),
    );
    let run = repo.json(&["profile", "show", "wheel-saas"]);
    run.assert_code(0);
    assert_eq!(run.events[0]["tier"], "tier-4-saas");
}

#[test]
fn set_swap_adds_replaces_and_removes_in_place() {
    let repo = fixture();
    let status = ok(
        &repo,
        &["profile", "set", "wheel", "--swap", "redis=in-process"],
    );
    assert!(
        status.contains("     Updated profile wheel: swap redis=in-process"),
        "{status}"
    );
    let added = expected(
        "swaps = { postgres = \"sqlite\" }",
        "swaps = { postgres = \"sqlite\", redis = \"in-process\" }",
    );
    assert_text(&repo, &added);

    // Removing the swap restores the original bytes.
    ok(&repo, &["profile", "set", "wheel", "--swap", "redis="]);
    assert_text(&repo, BUNDLE_TOML);

    // Replacing a value keeps its place.
    ok(
        &repo,
        &["profile", "set", "wheel", "--swap", "redis=in-process"],
    );
    ok(&repo, &["profile", "set", "wheel", "--swap", "postgres="]);
    assert_text(
        &repo,
        &expected(
            "swaps = { postgres = \"sqlite\" }",
            "swaps = { redis = \"in-process\" }",
        ),
    );
    // Removing the last swap removes the empty table.
    ok(&repo, &["profile", "set", "wheel", "--swap", "redis="]);
    assert_text(&repo, &expected("swaps = { postgres = \"sqlite\" }\n", ""));
}

#[test]
fn set_swap_creates_the_table_when_absent() {
    let repo = fixture();
    ok(
        &repo,
        &[
            "profile",
            "set",
            "bare",
            "--swap",
            "postgres=sqlite",
            "--swap",
            "redis=in-process",
        ],
    );
    assert_text(
        &repo,
        &expected(
            "tier = \"tier-1-local\"\n",
            "tier = \"tier-1-local\"\nswaps = { postgres = \"sqlite\", redis = \"in-process\" }\n",
        ),
    );
}

#[test]
fn set_platform_appends_once() {
    let repo = fixture();
    let status = ok(&repo, &["profile", "set", "wheel", "--platform", "win-x64"]);
    assert!(
        status.contains("     Updated profile wheel: platform win-x64"),
        "{status}"
    );
    let want = expected(
        "platforms = [\"linux-x64\"]",
        "platforms = [\"linux-x64\", \"win-x64\"]",
    );
    assert_text(&repo, &want);
    // Already listed: nothing changes, and it says so.
    let status = ok(&repo, &["profile", "set", "wheel", "--platform", "win-x64"]);
    assert!(status.contains("Unchanged"), "{status}");
    assert_text(&repo, &want);

    ok(
        &repo,
        &["profile", "set", "bare", "--platform", "linux-x64"],
    );
    assert_text(
        &repo,
        &want.replacen(
            "tier = \"tier-1-local\"\n",
            "tier = \"tier-1-local\"\nplatforms = [\"linux-x64\"]\n",
            1,
        ),
    );
    let mode = std::fs::metadata(repo.join("bundle.toml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644, "the edit keeps the file's permissions");
}

#[test]
fn json_edits_report_one_event() {
    let repo = fixture();
    let run = repo.json(&["profile", "set", "wheel", "--swap", "redis=in-process"]);
    run.assert_code(0);
    let events = run.events("profile-updated");
    assert_eq!(events.len(), 1, "{run}");
    assert_eq!(events[0]["name"], "wheel");
    assert_eq!(events[0]["written"], true);
    assert_eq!(
        common::strings(&events[0]["changes"]),
        ["swap redis=in-process"]
    );
}

#[test]
fn bad_inputs_exit_2_and_write_nothing() {
    let cases: &[(&[&str], &str)] = &[
        // create
        (
            &[
                "profile",
                "create",
                "wheel",
                "--scenario",
                "wheel-app",
                "--tier",
                "2",
            ],
            "profile `wheel` already exists",
        ),
        (
            &[
                "profile",
                "create",
                "new",
                "--scenario",
                "wheel-ap",
                "--tier",
                "2",
            ],
            "did you mean `wheel-app`?",
        ),
        (
            &[
                "profile",
                "create",
                "new",
                "--scenario",
                "wheel-app",
                "--tier",
                "tier-9",
            ],
            "unknown tier `tier-9`",
        ),
        (
            &[
                "profile",
                "create",
                "new profile",
                "--scenario",
                "wheel-app",
                "--tier",
                "2",
            ],
            "invalid profile name `new profile`",
        ),
        (
            &[
                "profile",
                "create",
                "a]b",
                "--scenario",
                "wheel-app",
                "--tier",
                "2",
            ],
            "invalid profile name",
        ),
        // set --swap
        (
            &["profile", "set", "wheel", "--swap", "postgres=no-such-db"],
            "unknown swap target `no-such-db` for `postgres`",
        ),
        (
            &["profile", "set", "wheel", "--swap", "qdrant=local-index"],
            "does not use resource `qdrant`",
        ),
        (
            &["profile", "set", "wheel", "--swap", "postgres"],
            "`postgres` is not a swap",
        ),
        (
            &["profile", "set", "wheel", "--swap", "=sqlite"],
            "names no resource",
        ),
        (
            &["profile", "set", "wheel", "--swap", "redis="],
            "has no swap of `redis` to remove",
        ),
        (
            &[
                "profile",
                "set",
                "wheel",
                "--swap",
                "redis=in-process",
                "--swap",
                "redis=x",
            ],
            "`redis` is swapped twice",
        ),
        (
            &["profile", "set", "whee", "--swap", "redis=in-process"],
            "did you mean `wheel`?",
        ),
        // set --platform
        (
            &["profile", "set", "wheel", "--platform", "solaris-sparc"],
            "known platforms: linux-x64, win-x64",
        ),
        // A valid swap together with a bad platform changes nothing either.
        (
            &[
                "profile",
                "set",
                "wheel",
                "--swap",
                "redis=in-process",
                "--platform",
                "nope",
            ],
            "unknown platform `nope`",
        ),
        (&["profile", "set", "wheel"], "nothing to change"),
        (&["profile", "show", "nope"], "unknown profile `nope`"),
    ];
    let repo = fixture();
    for (args, message) in cases {
        let run = repo.human(args);
        run.assert_code(2);
        assert!(run.stderr.contains(message), "expected {message:?}\n{run}");
        assert_eq!(
            repo.read_bytes("bundle.toml"),
            BUNDLE_TOML.as_bytes(),
            "bundle.toml changed after {args:?}"
        );
        let json = repo.json(args);
        json.assert_code(2);
        let diagnostic = json.diagnostic();
        assert!(
            diagnostic["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{json}"
        );
    }
    // No temporary file was left beside it.
    let mut names: Vec<String> = std::fs::read_dir(repo.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["bundle.toml", "platforms", "resources", "scenarios"]
    );
}

#[test]
fn a_broken_bundle_toml_is_reported_not_edited() {
    let broken = format!("{BUNDLE_TOML}[profiles.wheel.oops\n");
    let repo = fixture();
    repo.write("bundle.toml", &broken);
    let run = repo.human(&["profile", "set", "wheel", "--platform", "win-x64"]);
    run.assert_code(2);
    assert!(run.stderr.contains("bundle.toml:"), "{run}");
    assert_eq!(repo.read("bundle.toml"), broken);
}
