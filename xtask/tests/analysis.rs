//! `analyze`, `dag`, `fitness` and the `analyze:<scenario>` task, through the real binary.

use crate::common;

use common::Repo;
use serde_json::Value;

fn scenario(resources: &[(&str, bool)], scenarios: &[(&str, bool)]) -> String {
    let resources: Vec<String> = resources
        .iter()
        .map(|(name, required)| {
            format!(
                "\"{name}\": {{\"type\": \"{name}\", \"enabled\": true, \"required\": {required}}}"
            )
        })
        .collect();
    let scenarios: Vec<String> = scenarios
        .iter()
        .map(|(name, required)| format!("\"{name}\": {{\"required\": {required}}}"))
        .collect();
    format!(
        "{{\n  \"service\": {{\"name\": \"x\", \"type\": \"scenario\"}},\n  \"dependencies\": {{\n    \"resources\": {{{}}},\n    \"scenarios\": {{{}}}\n  }}\n}}\n",
        resources.join(", "),
        scenarios.join(", ")
    )
}

fn resource(name: &str, desktop: f64, swaps: &[&str]) -> String {
    let swaps: Vec<String> = swaps
        .iter()
        .map(|id| format!("{{\"id\": \"{id}\"}}"))
        .collect();
    format!(
        "{{\"service\": {{\"name\": \"{name}\", \"type\": \"resource\"}}, \"deployment\": {{\"footprint\": {{\"ram_mb\": 100, \"disk_mb\": 10, \"cpu_cores\": 1}}, \"platform_support\": {{\"tier-2-desktop\": {{\"supported\": true, \"fitness_score\": {desktop}}}}}, \"swappable_with\": [{}]}}}}\n",
        swaps.join(", ")
    )
}

/// app -> lib (scenario), app -> db (resource, swappable for lite), lib -> db; other -> cache.
fn repo() -> Repo {
    Repo::new(
        "[workspace]\n",
        &[
            (
                "scenarios/app/.vrooli/service.json",
                &scenario(&[("db", true)], &[("lib", true)]),
            ),
            (
                "scenarios/lib/.vrooli/service.json",
                &scenario(&[("db", true)], &[]),
            ),
            (
                "scenarios/other/.vrooli/service.json",
                &scenario(&[("cache", true)], &[]),
            ),
            (
                "resources/db/.vrooli/service.json",
                &resource("db", 0.5, &["lite"]),
            ),
            (
                "resources/lite/.vrooli/service.json",
                &resource("lite", 0.9, &[]),
            ),
        ],
    )
}

fn analysis(repo: &Repo, args: &[&str]) -> Value {
    let mut full = vec!["analyze"];
    full.extend_from_slice(args);
    let run = repo.json(&full);
    run.assert_code(0);
    run.events("analysis")[0]["analysis"].clone()
}

#[test]
fn analyze_prints_the_seed_contract_and_the_dag() {
    let repo = repo();
    let result = analysis(&repo, &["app"]);
    assert_eq!(result["scenario"], "app");
    assert_eq!(
        result["dependencies"]["resources"],
        serde_json::json!(["db"])
    );
    assert_eq!(
        result["dependencies"]["scenarios"],
        serde_json::json!(["lib"])
    );
    // db counted once although both scenarios use it; two scenario-app footprints (128 MB each).
    assert_eq!(result["requirements"]["ram_mb"], 100 + 2 * 128);
    assert_eq!(result["fitness"]["tier-2-desktop"], 0.5);
    let swap = &result["swaps"][0];
    assert_eq!(
        (
            swap["from"].as_str(),
            swap["to"].as_str(),
            swap["impact"].as_str()
        ),
        (Some("db"), Some("lite"), Some("+40"))
    );
    assert_eq!(result["dag"]["edges"].as_array().unwrap().len(), 3);
    assert!(result["tiers"]["tier-2-desktop"]["blockers"][0]["node"] == "resource:db");

    // The human summary says the same.
    let human = repo.human(&["analyze", "app", "--tier", "desktop"]);
    human.assert_code(0);
    assert!(
        human.stdout.contains("tier-2-desktop     0.50"),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("db -> lite  +0.40"),
        "{}",
        human.stdout
    );
}

#[test]
fn a_suggested_swap_moves_the_score_by_its_impact() {
    let repo = repo();
    let before = analysis(&repo, &["app", "--tier", "2"]);
    let after = analysis(&repo, &["app", "--tier", "2", "--swap", "db=lite"]);
    let points = |v: &Value| v["tiers"]["tier-2-desktop"]["points"].as_i64().unwrap();
    assert_eq!(
        points(&after) - points(&before),
        before["swaps"][0]["impact_points"].as_i64().unwrap()
    );
    assert_eq!(
        after["dependencies"]["resources"],
        serde_json::json!(["lite"])
    );
    assert_eq!(after["applied_swaps"][0]["to"], "lite");
    let fitness = repo.json(&["fitness", "app", "--swap", "db=lite", "--tier", "desktop"]);
    fitness.assert_code(0);
    assert_eq!(
        fitness.events("fitness")[0]["fitness"]["fitness"]["tier-2-desktop"],
        0.9
    );
}

#[test]
fn bad_requests_are_clear_errors() {
    let repo = repo();
    let cases: [(&[&str], &str); 4] = [
        (
            &["analyze", "app", "--swap", "db=nosuchthing"],
            "unknown swap target `nosuchthing` for `db`",
        ),
        (
            &["analyze", "app", "--tier", "tier-9"],
            "unknown tier `tier-9`",
        ),
        (
            &["analyze", "app", "--swap", "cache=lite"],
            "scenario `app` does not use resource `cache`",
        ),
        (&["analyze", "ap"], "unknown scenario `ap`"),
    ];
    for (args, message) in cases {
        let run = repo.human(args);
        run.assert_code(2);
        assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("help:"),
            "{args:?} has a help line: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty());
    }
}

#[test]
fn a_scenario_cycle_names_every_scenario_on_it() {
    let repo = repo();
    repo.write(
        "scenarios/lib/.vrooli/service.json",
        scenario(&[("db", true)], &[("app", true)]),
    );
    let run = repo.human(&["analyze", "app"]);
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("scenario dependency cycle: app -> lib -> app"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("scenarios/app/.vrooli/service.json")
            && run.stderr.contains("scenarios/lib/.vrooli/service.json"),
        "{}",
        run.stderr
    );
    let run = repo.json(&["dag", "lib"]);
    run.assert_code(2);
    assert!(
        run.events("diagnostic")[0]["message"]
            .as_str()
            .unwrap()
            .contains("lib -> app -> lib")
    );
}

#[test]
fn a_malformed_definition_names_file_and_line() {
    let repo = repo();
    repo.write(
        "resources/db/.vrooli/service.json",
        "{\n  \"deployment\": {\n    \"footprint\": {\"ram_mb\": \"lots\"}\n  }\n}\n",
    );
    let run = repo.json(&["analyze", "app"]);
    run.assert_code(2);
    let diagnostic = &run.events("diagnostic")[0];
    assert_eq!(diagnostic["file"], "resources/db/.vrooli/service.json");
    assert_eq!(diagnostic["line"], 3);
    assert!(
        diagnostic["message"]
            .as_str()
            .unwrap()
            .contains("deployment.footprint.ram_mb: must be a number")
    );
    repo.write("scenarios/app/.vrooli/service.json", "{\"service\": ");
    let run = repo.human(&["analyze", "app"]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("scenarios/app/.vrooli/service.json:1:"),
        "{}",
        run.stderr
    );
}

#[test]
fn works_on_a_tree_without_bundle_toml() {
    let repo = repo();
    repo.remove("bundle.toml");
    let run = repo.human(&["analyze", "other"]);
    run.assert_code(0);
    assert!(run.stdout.contains("resources: cache"), "{}", run.stdout);
    // `cache` has no definition: the class table sizes it.
    assert!(
        run.stdout.contains("256 MB RAM") || run.stdout.contains("384 MB RAM"),
        "{}",
        run.stdout
    );
}

#[test]
fn dag_renders_every_format() {
    let repo = repo();
    let dot = repo.human(&["dag", "app", "--format", "dot"]);
    dot.assert_code(0);
    assert!(
        dot.stdout.contains("\"scenario:app\" -> \"scenario:lib\";"),
        "{}",
        dot.stdout
    );
    let mermaid = repo.human(&["dag", "app", "--format", "mermaid"]);
    assert!(
        mermaid.stdout.starts_with("graph LR\n"),
        "{}",
        mermaid.stdout
    );
    let json = repo.human(&["dag", "app", "--format", "json"]);
    let dag: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(dag["nodes"].as_array().unwrap().len(), 3);
    // With Graphviz's dot on PATH, and without it (xbundle's own layered drawing).
    let svg = repo.human(&["dag", "app", "--format", "svg"]);
    svg.assert_code(0);
    assert!(svg.stdout.contains("<svg"), "{}", svg.stdout);
    let without_dot = repo
        .command()
        .args(["dag", "app", "--format", "svg"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(without_dot.status.success(), "{without_dot:?}");
    let drawn = String::from_utf8(without_dot.stdout).unwrap();
    assert!(drawn.starts_with("<svg "), "{drawn}");
    assert_eq!(drawn.matches("class=\"node\"").count(), 3, "{drawn}");
}

#[test]
fn the_analyze_task_reads_exactly_the_definitions_of_its_graph() {
    let repo = repo();
    let first = repo.json(&["task", "analyze:app"]);
    first.assert_code(0);
    assert_eq!(first.status("analyze:app"), "ran");
    // The cached task's output is the analysis `analyze --json` prints.
    let written: Value = serde_json::from_str(&repo.read("dist/analysis/app.json")).unwrap();
    assert_eq!(written, analysis(&repo, &["app"]));

    // An unrelated scenario changes: still cached, nothing restored.
    repo.write(
        "scenarios/other/.vrooli/service.json",
        scenario(&[("cache", false)], &[]),
    );
    let unrelated = repo.json(&["task", "analyze:app"]);
    assert_eq!(unrelated.status("analyze:app"), "cached");
    assert_eq!(unrelated.restored("analyze:app"), 0);

    // A definition in its graph changes: it runs, and says which file.
    repo.write(
        "resources/db/.vrooli/service.json",
        resource("db", 0.6, &["lite"]),
    );
    let changed = repo.json(&["task", "analyze:app"]);
    assert_eq!(changed.status("analyze:app"), "ran");
    assert_eq!(
        changed.reasons("analyze:app"),
        ["discovered input resources/db/.vrooli/service.json changed"]
    );

    // Defining a resource it sized from the class table changes its inputs too.
    let other = repo.json(&["task", "analyze:other"]);
    assert_eq!(other.status("analyze:other"), "ran");
    repo.write(
        "resources/cache/.vrooli/service.json",
        resource("cache", 0.9, &[]),
    );
    let defined = repo.json(&["task", "analyze:other"]);
    assert_eq!(defined.status("analyze:other"), "ran");
    assert_eq!(
        defined.reasons("analyze:other"),
        ["discovered input resources/cache/.vrooli/service.json appeared"]
    );
    assert_eq!(
        repo.json(&["task", "analyze:other"])
            .status("analyze:other"),
        "cached"
    );
}

#[test]
fn only_declared_replacements_can_be_swapped_in() {
    let repo = repo();
    // `lite` is defined, but `cache` (sized by the class table) is not one of db's replacements.
    repo.write(
        "resources/cache/.vrooli/service.json",
        resource("cache", 0.9, &[]),
    );
    let run = repo.human(&["analyze", "app", "--swap", "db=cache"]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("unknown swap target `cache` for `db`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("`db` can be swapped for: lite"),
        "{}",
        run.stderr
    );
    // A resource that declares no replacements cannot be swapped at all.
    let run = repo.human(&["analyze", "app", "--swap", "db=lite", "--swap", "lite=db"]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("swap cycle: db -> lite -> db"),
        "{}",
        run.stderr
    );
}

#[test]
fn swap_chains_resolve_in_any_order() {
    let repo = repo();
    // db -> lite -> alpha: the second link's key sorts before the first's.
    repo.write(
        "resources/lite/.vrooli/service.json",
        resource("lite", 0.9, &["alpha"]),
    );
    repo.write(
        "resources/alpha/.vrooli/service.json",
        resource("alpha", 1.0, &[]),
    );
    let result = analysis(
        &repo,
        &[
            "app",
            "--swap",
            "lite=alpha",
            "--swap",
            "db=lite",
            "--tier",
            "desktop",
        ],
    );
    assert_eq!(
        result["dependencies"]["resources"],
        serde_json::json!(["alpha"])
    );
    assert_eq!(result["tiers"]["tier-2-desktop"]["points"], 100);
    let alpha = result["dag"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "resource:alpha")
        .unwrap()
        .clone();
    assert_eq!(alpha["replaces"], serde_json::json!(["db"]));
}

#[test]
fn bundle_with_a_bad_profile_is_bad_input_and_writes_no_bundle() {
    let repo = repo();
    repo.write(
        "bundle.toml",
        "[workspace]\ndefault-profile = \"p\"\n\n[profiles.p]\nscenario = \"app\"\ntier = \"desktop\"\nswaps = { db = \"nosuch\" }\n",
    );
    let run = repo.human(&["bundle"]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("unknown swap target `nosuch` for `db`"),
        "{}",
        run.stderr
    );
    // The profile is assembled by its task (once, when it runs): the analysis ran, no
    // secret plan, bundle.json or stage was written.
    assert!(!repo.exists("dist/p"), "no bundle written");
}

/// Planning does no pipeline work: it reads no resource definition and assembles nothing, so a
/// broken definition in a profile's graph leaves `--dry-run` and `graph` working; the profile's
/// tasks find it when they run (the one assembly of the run), and `check` refuses it.
#[test]
fn planning_assembles_nothing_and_the_tasks_find_a_broken_definition() {
    let repo = repo();
    repo.write(
        "bundle.toml",
        "[workspace]\ndefault-profile = \"p\"\n\n[profiles.p]\nscenario = \"app\"\ntier = \"desktop\"\n",
    );
    repo.write(
        "resources/db/.vrooli/service.json",
        "{\"service\": {\"name\": ",
    );
    let plan = repo.json(&["bundle", "--dry-run"]);
    plan.assert_code(0);
    assert!(!plan.events("plan").is_empty(), "{plan}");
    repo.json(&["graph", "--format", "json"]).assert_code(0);

    let run = repo.human(&["bundle"]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("resources/db/.vrooli/service.json"),
        "the task's failure names the file\n{}",
        run.stderr
    );
    assert!(!repo.exists("dist/p/bundle.json"));
    let check = repo.json(&["check"]);
    check.assert_code(2);
    assert!(!check.events("diagnostic").is_empty(), "{check}");
}
