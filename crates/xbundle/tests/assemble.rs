//! Assembly of the repository's demo profiles into bundle.json: schema validity, a golden file,
//! determinism, and swaps that change exactly the services they should.
//!
//! Update the golden file with
//! `INSTA_UPDATE=always cargo test -p xbundle --test integration assemble::`.

use std::collections::BTreeSet;

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::Value;
use xbundle::analysis::Catalog;
use xbundle::config::BundleConfig;
use xbundle::stages::Context;

fn root() -> Utf8PathBuf {
    Utf8Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize_utf8()
        .unwrap()
}

fn context(bundle_toml: Option<&str>) -> Context {
    let root = root();
    match bundle_toml {
        None => Context::load(&root).unwrap(),
        Some(text) => Context::new(
            &root,
            BundleConfig::parse(text, Utf8Path::new("bundle.toml")).unwrap(),
        )
        .unwrap(),
    }
}

fn assemble(context: &Context, profile: &str) -> String {
    let catalog = Catalog::new(context.layout.clone());
    context
        .assemble(&catalog, profile)
        .unwrap_or_else(|err| panic!("{profile}: {err}"))
        .json
}

fn conformance_schema() -> Option<jsonschema::Validator> {
    let path = root().join("../shared/conformance/vrooli/bundle/bundle-schema.desktop.v0.1.json");
    if !path.is_file() {
        assert!(
            std::env::var("XBUNDLE_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "the conformance corpus is missing at {path}"
        );
        eprintln!("skipped: no conformance schema at {path}");
        return None;
    }
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    Some(jsonschema::validator_for(&schema).unwrap())
}

#[test]
fn every_demo_profile_validates_against_the_desktop_schema() {
    let Some(schema) = conformance_schema() else {
        return;
    };
    let context = context(None);
    assert!(context.config.profiles.len() >= 2);
    for profile in &context.config.profiles {
        let json: Value = serde_json::from_str(&assemble(&context, &profile.name)).unwrap();
        let errors: Vec<String> = schema
            .iter_errors(&json)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", profile.name);
    }
}

#[test]
fn golden_picker_wheel_desktop() {
    let context = context(None);
    insta::assert_snapshot!(
        "picker-wheel-desktop.bundle.json",
        assemble(&context, "picker-wheel-desktop")
    );
}

/// The other demo profile: a diamond of scenarios, four swaps, a prompted secret.
#[test]
fn golden_notes_desktop() {
    let context = context(None);
    insta::assert_snapshot!(
        "notes-desktop.bundle.json",
        assemble(&context, "notes-desktop")
    );
}

#[test]
fn assembly_is_deterministic() {
    let first = assemble(&context(None), "notes-desktop");
    let second = assemble(&context(None), "notes-desktop");
    assert_eq!(first, second);
}

const PROFILE: &str = r#"
[profiles.notes]
scenario = "notes-app"
tier = "tier-2-desktop"
platforms = ["linux-x64"]
swaps = { postgres = "sqlite", redis = "in-process", qdrant = "local-index", ollama = "OLLAMA_TARGET" }
"#;

fn services(json: &str) -> Vec<Value> {
    let document: Value = serde_json::from_str(json).unwrap();
    document["services"].as_array().unwrap().clone()
}

fn by_id(services: &[Value], id: &str) -> Option<Value> {
    services.iter().find(|s| s["id"] == id).cloned()
}

#[test]
fn a_swap_changes_exactly_the_services_it_should() {
    let with = |target: &str, extra: &str| {
        let text = format!("{}{extra}", PROFILE.replace("OLLAMA_TARGET", target));
        assemble(&context(Some(&text)), "notes")
    };
    let openrouter = with("openrouter", "");
    let packaged = with("packaged-models", "");
    let (a, b) = (services(&openrouter), services(&packaged));
    // Same services; only the API's LLM wiring and its secrets differ.
    let ids = |s: &[Value]| {
        s.iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(ids(&a), ids(&b));
    assert_eq!(
        ids(&a),
        BTreeSet::from(["auth-service-api", "notes-app-api", "notes-app-ui"].map(String::from))
    );
    let api_a = by_id(&a, "notes-app-api").unwrap();
    let api_b = by_id(&b, "notes-app-api").unwrap();
    assert_eq!(api_a["env"]["LLM_PROVIDER"], "openrouter");
    assert_eq!(api_b["env"]["LLM_PROVIDER"], "local");
    assert_eq!(api_b["env"]["LLM_MODEL_DIR"], "${bundle}/models");
    assert!(api_a["env"].get("LLM_MODEL_DIR").is_none());
    assert_eq!(api_a["secrets"], serde_json::json!(["openrouter_api_key"]));
    assert!(api_b.get("secrets").is_none());
    let mut stripped_a = api_a.clone();
    let mut stripped_b = api_b.clone();
    for api in [&mut stripped_a, &mut stripped_b] {
        let env = api["env"].as_object_mut().unwrap();
        env.retain(|key, _| !key.starts_with("LLM_"));
        api.as_object_mut().unwrap().remove("secrets");
    }
    assert_eq!(stripped_a, stripped_b, "nothing else about the API changes");
    assert_eq!(
        by_id(&a, "auth-service-api"),
        by_id(&b, "auth-service-api"),
        "the other scenario is untouched"
    );

    // Without the ollama swap, ollama becomes a service the API depends on, and the API's
    // environment points at it.
    let text = PROFILE.replace(", ollama = \"OLLAMA_TARGET\"", "");
    let kept = services(&assemble(&context(Some(&text)), "notes"));
    let ollama = by_id(&kept, "ollama").expect("an ollama service");
    assert_eq!(ollama["type"], "resource");
    assert_eq!(ollama["ports"]["requested"][0]["name"], "api");
    let api = by_id(&kept, "notes-app-api").unwrap();
    assert_eq!(api["env"]["LLM_BASE_URL"], "http://127.0.0.1:${ollama.api}");
    assert!(
        api["dependencies"]
            .as_array()
            .unwrap()
            .contains(&Value::from("ollama"))
    );
    // With postgres kept, its infrastructure secret makes the profile invalid, naming the swap.
    let text = PROFILE
        .replace("postgres = \"sqlite\", ", "")
        .replace("OLLAMA_TARGET", "openrouter");
    let context = context(Some(&text));
    let err = context
        .assemble(&Catalog::new(context.layout.clone()), "notes")
        .unwrap_err();
    assert!(
        err.message
            .contains("secret `postgres_password` of resource:postgres is infrastructure"),
        "{err}"
    );
    assert!(
        err.help.as_deref().unwrap().contains("postgres=sqlite"),
        "{:?}",
        err.help
    );
}

#[test]
fn sqlite_replaces_the_postgres_service_and_rewires_database_url() {
    let json = assemble(&context(None), "picker-wheel-desktop");
    let all = services(&json);
    assert!(
        by_id(&all, "postgres").is_none() && by_id(&all, "sqlite").is_none(),
        "sqlite is embedded: no service"
    );
    let api = by_id(&all, "picker-wheel-api").unwrap();
    assert_eq!(
        api["env"]["DATABASE_URL"],
        "sqlite://${data}/picker-wheel/db.sqlite3"
    );
    assert_eq!(api["env"]["CACHE_URL"], "memory://");
    assert!(api.get("dependencies").is_none());
    let document: Value = serde_json::from_str(&json).unwrap();
    let excluded_ids: Vec<&str> = document["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        excluded_ids,
        ["jwt_secret", "session_secret"],
        "postgres and redis secrets are gone with them"
    );
    assert_eq!(document["swaps"][0]["original"], "postgres");
}

/// A temporary tree: `app` depends on `lib` (required); both defined by the given JSON.
fn tree(app_ports: &str, lib_ports: &str) -> (tempfile::TempDir, Context) {
    let dir = tempfile::tempdir().unwrap();
    let root = Utf8Path::from_path(dir.path()).unwrap().to_path_buf();
    let write = |path: &str, text: String| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "scenarios/app/.vrooli/service.json",
        format!(
            "{{\"ports\": {app_ports}, \"dependencies\": {{\"scenarios\": {{\"lib\": {{\"required\": true}}}}}}}}"
        ),
    );
    write(
        "scenarios/lib/.vrooli/service.json",
        format!("{{\"ports\": {lib_ports}}}"),
    );
    write(
        "platforms/linux-x64.toml",
        std::fs::read_to_string(self::root().join("platforms/linux-x64.toml")).unwrap(),
    );
    let config = BundleConfig::parse(
        "[profiles.p]\nscenario = \"app\"\ntier = \"desktop\"\n",
        Utf8Path::new("bundle.toml"),
    )
    .unwrap();
    let context = Context::new(&root, config).unwrap();
    (dir, context)
}

#[test]
fn scenario_links_use_the_dependency_api_port_and_fail_without_one() {
    let (_dir, context) = tree(
        r#"{"api": {"range": "15000-15100"}}"#,
        r#"{"http": {"range": "16000-16100"}}"#,
    );
    let json = assemble(&context, "p");
    let app = by_id(&services(&json), "app-api").unwrap();
    assert_eq!(
        app["env"]["LIB_API_URL"],
        "http://127.0.0.1:${lib-api.http}"
    );
    assert!(
        app["dependencies"]
            .as_array()
            .unwrap()
            .contains(&Value::from("lib-api"))
    );

    let (_dir, context) = tree(
        r#"{"api": {"range": "15000-15100"}}"#,
        r#"{"ui": {"range": "16000-16100"}}"#,
    );
    let err = context
        .assemble(&Catalog::new(context.layout.clone()), "p")
        .unwrap_err();
    assert!(
        err.message
            .contains("requires scenario `lib`, which declares no API port"),
        "{err}"
    );
    assert!(
        err.location()
            .unwrap()
            .starts_with("scenarios/app/.vrooli/service.json:"),
        "{:?}",
        err.location()
    );

    let (_dir, context) = tree(
        r#"{"ui": {"range": "15000-15100"}}"#,
        r#"{"api": {"range": "16000-16100"}}"#,
    );
    let err = context
        .assemble(&Catalog::new(context.layout.clone()), "p")
        .unwrap_err();
    assert!(
        err.message.contains("scenario app declares no API port"),
        "{err}"
    );
}

#[test]
fn env_templates_may_embed_bundled_secrets() {
    let text = "[profiles.p]\nscenario = \"picker-wheel\"\ntier = \"desktop\"\nplatforms = [\"linux-x64\"]\nswaps = { postgres = \"sqlite\", redis = \"in-process\" }\nenv = { SESSION_HEADER = \"Session ${secret.session_secret}\" }\n";
    let json = assemble(&context(Some(text)), "p");
    let api = by_id(&services(&json), "picker-wheel-api").unwrap();
    assert_eq!(
        api["env"]["SESSION_HEADER"],
        "Session ${secret.session_secret}"
    );
    assert!(
        api["secrets"]
            .as_array()
            .unwrap()
            .contains(&Value::from("session_secret"))
    );
    // The manifest crate accepts it (and would reject it if the service did not list it).
    let manifest = manifest::Manifest::from_json(&json).unwrap();
    assert!(manifest.validate().iter().all(|p| !p.is_error()));
}
