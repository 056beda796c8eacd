//! The generated JSON Schema is committed (`schema/bundle.schema.json`) so every change to it is
//! a reviewed diff. `UPDATE_SNAPSHOTS=1 cargo test -p manifest` rewrites it.

#[test]
fn schema_snapshot_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/bundle.schema.json");
    let mut generated = serde_json::to_string_pretty(&manifest::schema()).unwrap();
    generated.push('\n');
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|value| value == "1") {
        std::fs::write(path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    if committed != generated {
        let diff: Vec<String> = committed
            .lines()
            .zip(generated.lines())
            .enumerate()
            .filter(|(_, (old, new))| old != new)
            .take(20)
            .map(|(line, (old, new))| format!("line {}:\n  - {old}\n  + {new}", line + 1))
            .collect();
        panic!(
            "schema/bundle.schema.json is out of date ({} vs {} lines); first differences:\n{}\n\
             run `UPDATE_SNAPSHOTS=1 cargo test -p manifest` and review the diff",
            committed.lines().count(),
            generated.lines().count(),
            diff.join("\n")
        );
    }
}

#[test]
fn schema_accepts_the_corpus_examples() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/conformance/vrooli/bundle"
    );
    if !std::path::Path::new(dir).is_dir() {
        if std::env::var_os("XBUNDLE_REQUIRE_TOOLS").is_some_and(|value| value == "1") {
            panic!("conformance corpus missing at {dir} (XBUNDLE_REQUIRE_TOOLS=1)");
        }
        eprintln!("skipped: conformance corpus not found at {dir}");
        return;
    }
    let schema = manifest::schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for name in [
        "desktop-happy.json",
        "desktop-playwright.json",
        "desktop-with-build.json",
    ] {
        let value: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{dir}/{name}")).unwrap())
                .unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:#?}");
    }
}
