//! The JSON Schema of bundle.toml is committed (`schema/bundle-toml.schema.json`) so editors can
//! complete the file and every change to it is a reviewed diff.
//! `UPDATE_SNAPSHOTS=1 cargo test -p xbundle --test integration bundle_toml_schema::` rewrites it.
//! The schema must accept the repository's own bundle.toml and reject what
//! `BundleConfig::parse` rejects for unknown keys.

use serde_json::Value;

const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/schema/bundle-toml.schema.json"
);
const REPOSITORY_BUNDLE_TOML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bundle.toml");

#[test]
fn schema_snapshot_is_current() {
    let mut generated = serde_json::to_string_pretty(&xbundle::config::json_schema()).unwrap();
    generated.push('\n');
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|value| value == "1") {
        std::fs::create_dir_all(std::path::Path::new(SCHEMA).parent().unwrap()).unwrap();
        std::fs::write(SCHEMA, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(SCHEMA).unwrap_or_default();
    if committed != generated {
        let diff: Vec<String> = committed
            .lines()
            .map(Some)
            .chain(std::iter::repeat(None))
            .zip(generated.lines().map(Some).chain(std::iter::repeat(None)))
            .take_while(|(old, new)| old.is_some() || new.is_some())
            .enumerate()
            .filter(|(_, (old, new))| old != new)
            .take(20)
            .map(|(line, (old, new))| {
                format!(
                    "line {}:\n  - {}\n  + {}",
                    line + 1,
                    old.unwrap_or("(end of file)"),
                    new.unwrap_or("(end of file)")
                )
            })
            .collect();
        panic!(
            "crates/xbundle/schema/bundle-toml.schema.json is out of date ({} committed vs {} \
             generated lines); first differences:\n{}\n\
             run `UPDATE_SNAPSHOTS=1 cargo test -p xbundle --test integration \
             bundle_toml_schema::` and review the diff",
            committed.lines().count(),
            generated.lines().count(),
            diff.join("\n")
        );
    }
}

/// bundle.toml text as the JSON value a TOML-aware editor validates.
fn as_json(toml_text: &str) -> Value {
    toml::from_str(toml_text).expect("valid TOML")
}

fn errors(instance: &Value) -> Vec<String> {
    let schema = xbundle::config::json_schema();
    let validator = jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema");
    validator
        .iter_errors(instance)
        .map(|error| format!("{}: {error}", error.instance_path()))
        .collect()
}

#[test]
fn repository_bundle_toml_is_valid() {
    let text = std::fs::read_to_string(REPOSITORY_BUNDLE_TOML).unwrap();
    let found = errors(&as_json(&text));
    assert!(
        found.is_empty(),
        "bundle.toml against the schema: {found:#?}"
    );
}

#[test]
fn every_section_is_valid() {
    let text = r#"
[workspace]
scenarios = "apps"
resources = "res"
out = "dist"
default-profile = "p"

[cache]
dir = ".cache"

[profiles.p]
scenario = "picker-wheel"
tier = "desktop"
platforms = ["linux-x64"]
formats = ["tar.gz"]
swaps = { postgres = "sqlite" }
min-fitness = 0.5
version = "1.0.0"
env = { LOG_LEVEL = "info" }

[profiles.p.secrets]
key = { class = "per_install_generated", generator = { type = "hex", length = 32 }, target = { type = "env", name = "KEY" } }

[tasks.a]
argv = ["true"]
inputs = ["src/**"]
outputs = ["out/**"]
deps = ["b"]
env = ["X"]
"#;
    xbundle::config::BundleConfig::parse(text, camino::Utf8Path::new("bundle.toml"))
        .expect("the sample is a valid bundle.toml");
    let found = errors(&as_json(text));
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn unknown_keys_and_bad_values_are_rejected() {
    for (text, what) in [
        ("[tasks.a]\nrun = \"true\"\ninptus = [\"x\"]\n", "inptus"),
        ("[workspace]\nscenario = \"s\"\n", "scenario"),
        (
            "[profiles.p]\nscenario = \"s\"\ntier = \"2\"\nswap = {}\n",
            "swap",
        ),
        ("[profiles.p]\nscenario = \"s\"\n", "tier"),
        (
            "[profiles.p]\nscenario = \"s\"\ntier = \"2\"\nmin-fitness = 1.5\n",
            "1.5",
        ),
        (
            "[profiles.p]\nscenario = \"s\"\ntier = \"2\"\n[profiles.p.secrets.k]\nclas = \"x\"\n",
            "clas",
        ),
        ("[unknown]\n", "unknown"),
        // The remote cache's settings have types.
        ("[cache]\nremote-read-only = \"yes\"\n", "yes"),
        // An asset needs a url and a sha256.
        ("[[assets]]\nid = \"chromium\"\n", "assets"),
        // A profile's scenario is a name.
        ("[profiles.p]\nscenario = \"../x\"\ntier = \"2\"\n", "../x"),
    ] {
        let found = errors(&as_json(text));
        assert!(!found.is_empty(), "the schema accepts {what}:\n{text}");
        assert!(
            found.iter().any(|error| error.contains(what)),
            "errors for {what} do not name it: {found:#?}"
        );
        // The parser agrees.
        assert!(
            xbundle::config::BundleConfig::parse(text, camino::Utf8Path::new("bundle.toml"))
                .is_err(),
            "BundleConfig::parse accepts {what}"
        );
    }
}
