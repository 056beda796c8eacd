//! The whole conformance corpus: every one of the 138 real scenario definitions either analyzes
//! or yields a diagnostic naming its file, and none panics; every file that satisfies the
//! corpus's own JSON Schema analyzes cleanly.

use std::panic::{AssertUnwindSafe, catch_unwind};

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::{Value, json};
use xbundle::analysis::{Catalog, Layout, Request, analyze};

fn corpus() -> Option<Utf8PathBuf> {
    let path = Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/vrooli");
    if path.is_dir() {
        return Some(path);
    }
    if std::env::var_os("XBUNDLE_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
        panic!(
            "the conformance corpus is missing at {path} (it must sit at ../shared/conformance beside the repository)"
        );
    }
    eprintln!("skipped: the conformance corpus is not at {path}");
    None
}

/// service.schema.json with the schemas it refers to embedded under their `$id`s, so nothing is
/// fetched. `resource-definitions.json`, which the corpus never contained, is any object.
fn service_schema(corpus: &Utf8Path) -> jsonschema::Validator {
    let dir = corpus.join(".vrooli/schemas");
    let read = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
    };
    let mut root = read("service.schema.json");
    let definitions = root
        .as_object_mut()
        .unwrap()
        .entry("definitions")
        .or_insert_with(|| json!({}));
    for name in [
        "common.schema.json",
        "lifecycle.schema.json",
        "deployment.schema.json",
        "resources.schema.json",
        "scenarios.schema.json",
    ] {
        definitions[format!("__embedded_{name}")] = read(name);
    }
    definitions["__embedded_resource_definitions"] = json!({
        "$id": "https://vrooli.com/schemas/resource-definitions.json",
        "resourceCatalog": {"type": "object"}
    });
    jsonschema::validator_for(&root).expect("the corpus schema compiles")
}

#[test]
fn every_corpus_scenario_analyzes_or_names_its_file() {
    let Some(corpus) = corpus() else { return };
    let layout = Layout {
        root: corpus.clone(),
        scenarios: "scenarios".into(),
        resources: "resources".into(),
    };
    let names = layout.scenario_names();
    assert_eq!(names.len(), 138, "the corpus has 138 scenarios");
    let schema = service_schema(&corpus);
    let catalog = Catalog::new(layout.clone());
    let mut clean = 0;
    let mut schema_valid = 0;
    let mut failures = Vec::new();
    for name in &names {
        let file = layout.definition_path(xbundle::service::ServiceKind::Scenario, name);
        let request = Request {
            scenario: name.clone(),
            ..Request::default()
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| analyze(&catalog, &request)));
        let outcome = outcome.unwrap_or_else(|_| panic!("analysis of {file} panicked"));
        let document: Value =
            serde_json::from_str(&std::fs::read_to_string(corpus.join(&file)).unwrap()).unwrap();
        let valid = schema.is_valid(&document);
        schema_valid += usize::from(valid);
        match outcome {
            Ok(analysis) => {
                clean += 1;
                assert_eq!(analysis.scenario, *name);
                assert!(
                    analysis.files.contains(&file.to_string()),
                    "{file} is among the files read"
                );
            }
            Err(diagnostic) => {
                // The diagnostic names the file it is about (this one or a dependency's).
                let location = diagnostic.location().unwrap_or_default();
                assert!(
                    diagnostic.to_string().contains("service.json")
                        || location.contains("service.json"),
                    "diagnostic for {file} names no file: {diagnostic}"
                );
                assert!(
                    !valid,
                    "{file} satisfies the corpus schema but does not analyze: {diagnostic}"
                );
                failures.push(format!("{file}: {diagnostic}"));
            }
        }
    }
    println!(
        "corpus: {clean} of {} scenarios analyze cleanly; {schema_valid} satisfy the corpus schema; {} give diagnostics",
        names.len(),
        failures.len()
    );
    for failure in &failures {
        println!("  {failure}");
    }
    assert!(
        schema_valid >= 130,
        "the embedded schema should accept most of the corpus, got {schema_valid}"
    );
}

#[test]
fn broken_copies_of_corpus_files_give_located_diagnostics() {
    let Some(corpus) = corpus() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = Utf8Path::from_path(dir.path()).unwrap();
    let source =
        std::fs::read_to_string(corpus.join("scenarios/picker-wheel/.vrooli/service.json"))
            .unwrap();
    // Cut the file at many points, and corrupt a used value: never a panic, always a location.
    let mut cases: Vec<String> = (1..20)
        .map(|n| source[..source.len() * n / 20].to_string())
        .collect();
    cases.push(source.replacen("\"range\": \"15000-19999\"", "\"range\": 15000", 1));
    cases.push(source.replacen("\"required\": true", "\"required\": \"yes\"", 1));
    for (index, text) in cases.iter().enumerate() {
        let scenario = root.join("scenarios/broken/.vrooli");
        std::fs::create_dir_all(&scenario).unwrap();
        std::fs::write(scenario.join("service.json"), text).unwrap();
        let layout = Layout {
            root: root.to_path_buf(),
            scenarios: "scenarios".into(),
            resources: "resources".into(),
        };
        let catalog = Catalog::new(layout);
        let request = Request {
            scenario: "broken".into(),
            ..Request::default()
        };
        let err = catch_unwind(AssertUnwindSafe(|| analyze(&catalog, &request)))
            .unwrap_or_else(|_| panic!("case {index} panicked"))
            .expect_err("a broken file does not analyze");
        let location = err.location().unwrap_or_default();
        assert!(
            location.starts_with("scenarios/broken/.vrooli/service.json:"),
            "case {index}: {err} at {location:?}"
        );
    }
}
