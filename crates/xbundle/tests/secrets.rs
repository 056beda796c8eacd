//! Secrets at the library level: declarations (classes, strategies, generators, prompts,
//! fetches, targets), classification precedence, the bundle plan (its JSON shape, exclusion
//! reasons, infrastructure violations, duplicate ids, warnings) and profile overrides (their
//! effect, and their validation up front). Each test builds a small definition tree in a
//! temporary directory.

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};
use manifest::Charset;
use manifest::SecretTargetType::{Env, File};
use serde_json::{Value, json};
use tempfile::TempDir;
use xbundle::analysis::tier::Tier;
use xbundle::analysis::{Catalog, Layout, Request, analyze};
use xbundle::config::{BundleConfig, SecretOverride};
use xbundle::diagnostic::Diagnostic;
use xbundle::secrets::{
    self, ClassSource, Declaration, Generator, GeneratorType, Handling, Plan, SecretClass,
};
use xbundle::service::ServiceKind;

/// A definition tree: `scenarios/*/.vrooli/service.json`, `resources/*/.vrooli/service.json`.
struct Tree {
    dir: TempDir,
}

impl Tree {
    fn new() -> Tree {
        Tree {
            dir: tempfile::Builder::new()
                .prefix("xbundle-secrets-")
                .tempdir()
                .unwrap(),
        }
    }

    fn root(&self) -> Utf8PathBuf {
        Utf8Path::from_path(self.dir.path()).unwrap().to_path_buf()
    }

    fn write(&self, relative: &str, text: &str) {
        let path = self.dir.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// A resource shipped as a service, with `secrets` and the replacements it can swap to.
    fn resource(&self, name: &str, secrets: Value, swappable_with: &[&str]) -> &Tree {
        let swaps: Vec<Value> = swappable_with
            .iter()
            .map(|to| json!({"id": to, "relationship": "replacement"}))
            .collect();
        let def = json!({
            "service": {"name": name, "type": "resource", "version": "1.0.0"},
            "deployment": {
                "footprint": {"ram_mb": 64, "disk_mb": 64, "cpu_cores": 0.1, "gpu": "none"},
                "platform_support": {
                    "tier-2-desktop": {"supported": true, "fitness_score": 0.9},
                },
                "swappable_with": swaps,
                "secrets": secrets,
            }
        });
        self.write(
            &format!("resources/{name}/.vrooli/service.json"),
            &serde_json::to_string_pretty(&def).unwrap(),
        );
        self
    }

    /// A scenario using `resources` (name, required), declaring `secrets`.
    fn scenario(&self, name: &str, resources: &[(&str, bool)], secrets: Value) -> &Tree {
        let deps: serde_json::Map<String, Value> = resources
            .iter()
            .map(|(r, required)| {
                (
                    r.to_string(),
                    json!({"type": r, "enabled": true, "required": required}),
                )
            })
            .collect();
        let def = json!({
            "service": {"name": name, "type": "scenario", "version": "1.0.0"},
            "ports": {"api": {"env_var": "API_PORT", "range": "15000-15100"}},
            "dependencies": {"resources": deps, "scenarios": {}},
            "deployment": {"secrets": secrets},
        });
        self.write(
            &format!("scenarios/{name}/.vrooli/service.json"),
            &serde_json::to_string_pretty(&def).unwrap(),
        );
        self
    }

    fn catalog(&self) -> Catalog {
        Catalog::new(Layout {
            root: self.root(),
            scenarios: "scenarios".into(),
            resources: "resources".into(),
        })
    }

    /// The declarations of one definition.
    fn declarations(&self, kind: ServiceKind, name: &str) -> Result<Vec<Declaration>, Diagnostic> {
        let def = self.catalog().get(kind, name).unwrap().expect("defined");
        secrets::declarations(&def)
    }

    fn declaration(&self, kind: ServiceKind, name: &str, id: &str) -> Declaration {
        self.declarations(kind, name)
            .unwrap_or_else(|err| panic!("{err}"))
            .into_iter()
            .find(|d| d.id == id)
            .expect("declared")
    }

    /// The plan of `scenario` with `swaps` on `tier`, with the overrides of `[profiles.p.secrets]`
    /// written as TOML in `overrides`.
    fn plan(
        &self,
        scenario: &str,
        swaps: &[(&str, &str)],
        tier: Tier,
        overrides: &str,
    ) -> Result<Plan, Diagnostic> {
        let catalog = self.catalog();
        let analysis = analyze(
            &catalog,
            &Request {
                scenario: scenario.into(),
                swaps: swaps
                    .iter()
                    .map(|(f, t)| (f.to_string(), t.to_string()))
                    .collect(),
                tier: Some(tier),
            },
        )
        .unwrap_or_else(|err| panic!("analysis: {err}"));
        secrets::plan(&catalog, &analysis, tier, &overrides_of(overrides))
    }
}

/// `[profiles.p.secrets]` entries (TOML lines) as a profile file.
fn profile_toml(scenario: &str, secrets: &str) -> String {
    format!(
        "[profiles.p]\nscenario = \"{scenario}\"\ntier = \"desktop\"\n\n[profiles.p.secrets]\n{secrets}"
    )
}

fn overrides_of(secrets: &str) -> BTreeMap<String, SecretOverride> {
    let config =
        BundleConfig::parse(&profile_toml("app", secrets), Utf8Path::new("bundle.toml")).unwrap();
    config.profiles[0]
        .decl
        .secrets
        .iter()
        .map(|(k, v)| (k.get_ref().clone(), v.get_ref().clone()))
        .collect()
}

fn json_of(plan: &Plan) -> Value {
    serde_json::to_value(plan).unwrap()
}

fn secret<'a>(plan: &'a Plan, id: &str) -> &'a secrets::PlannedSecret {
    plan.secrets
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("`{id}` is not planned: {:#}", json_of(plan)))
}

fn reasons(plan: &Plan) -> BTreeMap<String, String> {
    plan.excluded
        .iter()
        .map(|e| (e.id.clone(), e.reason.clone()))
        .collect()
}

#[track_caller]
fn assert_err_contains(result: Result<Plan, Diagnostic>, needles: &[&str]) -> Diagnostic {
    let err = result.expect_err("an error");
    for needle in needles {
        assert!(
            err.message.contains(needle) || err.help.as_deref().unwrap_or("").contains(needle),
            "expected {needle:?} in: {} (help: {:?})",
            err.message,
            err.help
        );
    }
    err
}

/// A world with a swappable database (infrastructure secrets), an optional model resource, and
/// a scenario declaring its own secrets.
fn world(app_secrets: Value) -> Tree {
    let tree = Tree::new();
    tree.resource(
        "db",
        json!([
            {"id": "db_password", "classification": "infrastructure"},
            {"id": "db_user", "classification": "infrastructure"},
        ]),
        &["lite"],
    )
    .resource("lite", json!([]), &[])
    .resource(
        "llm",
        json!([{"id": "llm_key", "prompt": {"label": "Model key"}}]),
        &[],
    )
    .scenario("app", &[("db", true), ("llm", false)], app_secrets);
    tree
}

// ---------------------------------------------------------------------------------------------
// Classification

#[test]
fn classification_precedence_profile_then_tier_then_declared_then_inferred() {
    let tree = Tree::new();
    tree.resource(
        "kit",
        json!([
            {"id": "layered", "classification": "infrastructure",
             "tiers": {"tier-2-desktop": "generate"},
             "generator": {"type": "hex", "length": 16},
             "prompt": {"label": "Layered"}},
            {"id": "gen", "generator": {"type": "uuid"}},
            {"id": "asked", "prompt": {"label": "Asked"}},
            {"id": "fetched", "fetch": {"url": "https://vault.local/v1/fetched"}},
            {"id": "bare"},
        ]),
        &[],
    );
    let layered = tree.declaration(ServiceKind::Resource, "kit", "layered");
    let user_prompt = SecretOverride {
        class: Some("user_prompt".into()),
        ..SecretOverride::default()
    };
    assert_eq!(
        layered.classify(Tier::Desktop, Some(&user_prompt)),
        Ok((
            Handling::Class(SecretClass::UserPrompt),
            ClassSource::Profile
        )),
        "the profile wins over tiers.<tier>"
    );
    assert_eq!(
        layered.classify(Tier::Desktop, None),
        Ok((
            Handling::Class(SecretClass::PerInstallGenerated),
            ClassSource::Tier
        )),
        "tiers.<tier> wins over classification"
    );
    assert_eq!(
        layered.classify(Tier::Local, None),
        Ok((
            Handling::Class(SecretClass::Infrastructure),
            ClassSource::Declared
        )),
        "classification applies on tiers it does not list"
    );
    // A profile override without a class leaves the declaration's class alone.
    let label_only = SecretOverride {
        label: Some("x".into()),
        ..SecretOverride::default()
    };
    assert_eq!(
        layered.classify(Tier::Local, Some(&label_only)).unwrap().1,
        ClassSource::Declared
    );
    for (id, class) in [
        ("gen", SecretClass::PerInstallGenerated),
        ("asked", SecretClass::UserPrompt),
        ("fetched", SecretClass::RemoteFetch),
        ("bare", SecretClass::Infrastructure),
    ] {
        assert_eq!(
            tree.declaration(ServiceKind::Resource, "kit", id)
                .classify(Tier::Desktop, None),
            Ok((Handling::Class(class), ClassSource::Inferred)),
            "{id}"
        );
    }
    // Sources are words.
    let words: Vec<String> = [
        ClassSource::Profile,
        ClassSource::Tier,
        ClassSource::Declared,
        ClassSource::Inferred,
    ]
    .iter()
    .map(|s| format!("{s} {}", serde_json::to_value(s).unwrap()))
    .collect();
    assert_eq!(
        words,
        [
            "profile \"profile\"",
            "per-tier \"per-tier\"",
            "declared \"declared\"",
            "inferred \"inferred\""
        ]
    );
}

#[test]
fn strategies_and_class_names_map_to_classes() {
    for (text, handling) in [
        (
            "generate",
            Handling::Class(SecretClass::PerInstallGenerated),
        ),
        (
            "per_install_generated",
            Handling::Class(SecretClass::PerInstallGenerated),
        ),
        ("prompt", Handling::Class(SecretClass::UserPrompt)),
        ("user_prompt", Handling::Class(SecretClass::UserPrompt)),
        ("delegate", Handling::Class(SecretClass::RemoteFetch)),
        ("remote_fetch", Handling::Class(SecretClass::RemoteFetch)),
        (
            "infrastructure",
            Handling::Class(SecretClass::Infrastructure),
        ),
        ("strip", Handling::Strip),
        ("exclude", Handling::Strip),
    ] {
        assert_eq!(text.parse::<Handling>(), Ok(handling), "{text}");
    }
    let err = "vault".parse::<Handling>().unwrap_err();
    assert!(err.contains("unknown secret class `vault`"), "{err}");

    // Through a plan: one secret per strategy on tier-2-desktop.
    let tree = world(json!([
        {"id": "s_generate", "classification": "infrastructure", "tiers": {"tier-2-desktop": "generate"}},
        {"id": "s_prompt", "tiers": {"tier-2-desktop": "prompt"}},
        {"id": "s_delegate", "tiers": {"tier-2-desktop": "delegate"},
         "fetch": {"url": "https://vault.local/v1/s"}},
        {"id": "s_strip", "generator": {}, "tiers": {"tier-2-desktop": "strip"}},
    ]));
    let plan = tree
        .plan("app", &[("db", "lite")], Tier::Desktop, "")
        .unwrap();
    let classes: BTreeMap<&str, &str> = plan
        .secrets
        .iter()
        .map(|s| (s.id.as_str(), secrets::class_id(s.class)))
        .collect();
    assert_eq!(
        classes,
        BTreeMap::from([
            ("s_delegate", "remote_fetch"),
            ("s_generate", "per_install_generated"),
            ("s_prompt", "user_prompt"),
        ])
    );
    assert_eq!(
        reasons(&plan)["s_strip"],
        "stripped on tier-2-desktop by its declaration"
    );
    // A generated secret without a generator gets the default one; a prompt without a label
    // gets the id in words.
    assert_eq!(
        secret(&plan, "s_generate").generator,
        Some(Generator::default())
    );
    assert_eq!(
        secret(&plan, "s_prompt")
            .prompt
            .as_ref()
            .unwrap()
            .label
            .as_deref(),
        Some("s prompt")
    );
}

// ---------------------------------------------------------------------------------------------
// Generators, prompts, fetches, targets

#[test]
fn generators_of_every_type_and_the_defaults() {
    let tree = Tree::new();
    tree.resource(
        "kit",
        json!([
            {"id": "r", "generator": {"type": "random", "length": 20, "charset": "alnum_symbols"}},
            {"id": "r_literal", "generator": {"type": "random", "length": 12, "charset": "ABCDEFGHJKMNPQRSTVWXYZ23456789"}},
            {"id": "r_long", "generator": {"type": "random", "length": 50, "charset": "abcdef"}},
            {"id": "u", "generator": {"type": "uuid"}},
            {"id": "u36", "generator": {"type": "uuid", "length": 36}},
            {"id": "h", "generator": {"type": "hex", "length": 64}},
            {"id": "b", "generator": {"type": "base64", "length": 44}},
            {"id": "d", "generator": {}},
        ]),
        &[],
    );
    let generator = |id: &str| {
        tree.declaration(ServiceKind::Resource, "kit", id)
            .generator
            .unwrap()
    };
    let g = |kind, length, charset: Option<&str>| Generator {
        kind,
        length,
        charset: charset.map(|c| Charset::parse(c).unwrap()),
    };
    assert_eq!(
        generator("r"),
        g(GeneratorType::Random, 20, Some("alnum_symbols"))
    );
    assert_eq!(
        generator("r").charset.unwrap().chars().len(),
        90,
        "a named set, not the letters of its name"
    );
    assert_eq!(
        generator("r_literal"),
        g(
            GeneratorType::Random,
            12,
            Some("ABCDEFGHJKMNPQRSTVWXYZ23456789")
        )
    );
    assert_eq!(
        generator("r_long"),
        g(GeneratorType::Random, 50, Some("abcdef"))
    );
    assert_eq!(generator("u"), g(GeneratorType::Uuid, 36, None));
    assert_eq!(generator("u36"), g(GeneratorType::Uuid, 36, None));
    assert_eq!(generator("h"), g(GeneratorType::Hex, 64, None));
    assert_eq!(generator("b"), g(GeneratorType::Base64, 44, None));
    assert_eq!(generator("d"), g(GeneratorType::Random, 32, Some("alnum")));
    assert_eq!(Generator::default(), generator("d"));
    assert_eq!(
        serde_json::to_value(generator("d")).unwrap(),
        json!({"type": "random", "length": 32, "charset": "alnum"})
    );
    assert_eq!(
        serde_json::to_value(generator("u")).unwrap(),
        json!({"type": "uuid", "length": 36})
    );
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the file"))
        + 1
}

#[test]
fn malformed_generators_are_errors_naming_the_file_and_line() {
    let cases = [
        (json!({"type": "emoji"}), "unknown generator type `emoji`"),
        (
            json!({"length": 7}),
            "generator length 7 is outside 8..=4096",
        ),
        (
            json!({"type": "hex", "length": 4097}),
            "generator length 4097 is outside 8..=4096",
        ),
        (
            json!({"length": "long"}),
            "generator length must be a whole number",
        ),
        (
            json!({"type": "uuid", "length": 32}),
            "a uuid is 36 characters long, not 32",
        ),
        (
            json!({"type": "hex", "charset": "alnum"}),
            "charset applies to random generators only (this one is hex)",
        ),
        (
            json!({"type": "base64", "charset": "ab"}),
            "charset applies to random generators only (this one is base64)",
        ),
        (
            json!({"charset": "x"}),
            "charset `x` is neither a named set",
        ),
        (
            json!({"charset": "aaaa"}),
            "charset `aaaa` is not a named set, and not a literal set",
        ),
        (
            json!({"charset": "alnum_sybmols"}),
            "did you mean `alnum_symbols`?",
        ),
        (
            json!({"length": 32, "charset": "abcdef"}),
            "charset `abcdef` has 6 distinct characters: 32 of them give 83 bits of entropy",
        ),
        (json!("random"), "a generator must be an object"),
        (json!({"size": 12}), "unknown generator field `size`"),
    ];
    for (generator, message) in cases {
        // Written by hand: the id first, one key a line, as people write them.
        let tree = Tree::new();
        tree.write(
            "resources/kit/.vrooli/service.json",
            &format!(
                "{{\n  \"service\": {{\"name\": \"kit\", \"type\": \"resource\"}},\n  \"deployment\": {{\n    \"secrets\": [\n      {{\"id\": \"fine\", \"generator\": {{\"type\": \"hex\"}}}},\n      {{\n        \"id\": \"broken\",\n        \"description\": \"x\",\n        \"generator\": {generator}\n      }}\n    ]\n  }}\n}}\n"
            ),
        );
        let err = tree
            .declarations(ServiceKind::Resource, "kit")
            .expect_err(message);
        assert!(
            err.message.contains(message) && err.message.contains("`broken`"),
            "{generator}: expected {message:?}, got {}",
            err.message
        );
        let file = "resources/kit/.vrooli/service.json";
        assert_eq!(err.file.as_deref().map(|f| f.as_str()), Some(file));
        let text = std::fs::read_to_string(tree.root().join(file)).unwrap();
        // The generator of `broken`, not the one of `fine`.
        let after_broken = line_of(&text, "\"broken\"");
        let expected = after_broken
            + text
                .lines()
                .skip(after_broken)
                .position(|l| l.contains("\"generator\""))
                .unwrap()
            + 1;
        assert_eq!(
            err.line_col().map(|(line, _)| line),
            Some(expected),
            "{generator}: {err}"
        );
        assert!(
            err.to_string().starts_with(&format!("{file}:{expected}:")),
            "{err}"
        );
        assert!(err.help.is_some());
    }
}

#[test]
fn prompt_formats_must_be_regular_expressions() {
    let tree = Tree::new();
    tree.resource(
        "kit",
        json!([{"id": "key", "prompt": {"label": "Key", "description": "The key", "format": "^sk-[A-Za-z0-9]{8,}$"}}]),
        &[],
    );
    let declaration = tree.declaration(ServiceKind::Resource, "kit", "key");
    let prompt = declaration.prompt.unwrap();
    assert_eq!(prompt.label.as_deref(), Some("Key"));
    assert_eq!(prompt.description.as_deref(), Some("The key"));
    assert_eq!(prompt.format.as_deref(), Some("^sk-[A-Za-z0-9]{8,}$"));

    let tree = Tree::new();
    tree.resource(
        "kit",
        json!([{"id": "key", "prompt": {"label": "Key", "format": "^sk-[A-Z"}}]),
        &[],
    );
    let err = tree.declarations(ServiceKind::Resource, "kit").unwrap_err();
    assert!(
        err.message
            .contains("format is not a valid regular expression"),
        "{}",
        err.message
    );
    let text =
        std::fs::read_to_string(tree.root().join("resources/kit/.vrooli/service.json")).unwrap();
    assert_eq!(err.line_col().unwrap().0, line_of(&text, "\"format\""));
}

#[test]
fn remote_fetch_needs_a_url_and_warns_that_offline_start_is_impossible() {
    let tree = world(json!([
        {"id": "vault_token", "fetch": {"url": "https://robot:s3cr3t@vault.local:8200/v1/app/token?version=2&auth=abc", "timeout_ms": 2500}},
        {"id": "plain", "fetch": {"url": "https://vault.example/v1/plain"}},
    ]));
    let plan = tree
        .plan("app", &[("db", "lite")], Tier::Desktop, "")
        .unwrap();
    let token = secret(&plan, "vault_token");
    assert_eq!(token.class, SecretClass::RemoteFetch);
    let fetch = token.fetch.as_ref().unwrap();
    assert_eq!(fetch.timeout_ms, 2500);
    // bundle.json needs the URL as written; only output is redacted.
    assert!(fetch.url.starts_with("https://robot:s3cr3t@"));
    assert_eq!(
        secret(&plan, "plain").fetch.as_ref().unwrap().timeout_ms,
        5000
    );
    assert_eq!(
        plan.warnings,
        [
            "secret `plain` is fetched at run time from https://vault.example/v1/plain: the app cannot start offline",
            "secret `vault_token` is fetched at run time from https://vault.local:8200/v1/app/token: the app cannot start offline",
        ]
    );
    assert_eq!(json_of(&plan)["warnings"], json!(plan.warnings));
    assert_eq!(
        secrets::redact_url("https://u:p@h.example:1/a/b?q=1#f"),
        "https://h.example:1/a/b"
    );

    // A fetch block without a url, a bad url, a bad timeout: declaration errors.
    for (fetch, message) in [
        (json!({"timeout_ms": 100}), "a fetch block needs a `url`"),
        (
            json!({"url": "vault.local/x"}),
            "fetch url `vault.local/x`: no scheme",
        ),
        // A secret never crosses a network in clear; other schemes are refused.
        (
            json!({"url": "http://robot:s3cr3t@vault.local/x?k=abc"}),
            "fetch url `http://vault.local/x`: http:// sends the secret in clear to a host that is not loopback",
        ),
        (
            json!({"url": "ftp://vault.local/x"}),
            "the scheme `ftp` is not supported",
        ),
        (
            json!({"url": "https://vault.local/x", "timeout_ms": 0}),
            "timeout_ms must be at least 1",
        ),
        (
            json!({"url": "https://vault.local/x", "timeout_ms": "soon"}),
            "timeout_ms must be a whole number",
        ),
        (json!("https://vault.local/x"), "fetch must be an object"),
    ] {
        let tree = Tree::new();
        tree.resource("kit", json!([{"id": "t", "fetch": fetch}]), &[]);
        let err = tree.declarations(ServiceKind::Resource, "kit").unwrap_err();
        assert!(err.message.contains(message), "{}", err.message);
        assert!(
            !err.message.contains("s3cr3t") && !err.message.contains("abc"),
            "{}",
            err.message
        );
        assert!(
            err.location()
                .unwrap()
                .starts_with("resources/kit/.vrooli/service.json:")
        );
    }
    // Plain http to the machine itself is fine (a local vault agent).
    let tree = Tree::new();
    tree.resource(
        "kit",
        json!([{"id": "t", "fetch": {"url": "http://127.0.0.1:8200/v1/t"}}]),
        &[],
    );
    assert!(tree.declarations(ServiceKind::Resource, "kit").is_ok());

    // remote_fetch by strategy, with no fetch block anywhere: a plan error at the declaration.
    let tree = world(json!([{"id": "t", "tiers": {"tier-2-desktop": "delegate"}}]));
    let err = assert_err_contains(
        tree.plan("app", &[("db", "lite")], Tier::Desktop, ""),
        &["secret `t` is remote_fetch but has no url", "url = "],
    );
    assert!(
        err.location()
            .unwrap()
            .starts_with("scenarios/app/.vrooli/service.json:"),
        "{err}"
    );
    // ... which a profile can supply.
    let plan = tree
        .plan(
            "app",
            &[("db", "lite")],
            Tier::Desktop,
            "t = { url = \"https://vault.local/v1/t\", timeout-ms = 900 }\n",
        )
        .unwrap();
    assert_eq!(
        serde_json::to_value(secret(&plan, "t").fetch.as_ref().unwrap()).unwrap(),
        json!({"url": "https://vault.local/v1/t", "timeout_ms": 900})
    );
}

#[test]
fn the_default_target_is_env_upper_id() {
    let tree = Tree::new();
    tree.resource(
        "kit",
        json!([
            {"id": "api_token", "generator": {}},
            {"id": "web-hook-key", "generator": {}},
            {"id": "named", "generator": {}, "target": {"type": "file", "name": "named.key"}},
            {"id": "typed", "generator": {}, "target": {"type": "env"}},
        ]),
        &[],
    );
    let target = |id: &str| {
        let t = tree.declaration(ServiceKind::Resource, "kit", id).target;
        (t.kind, t.name)
    };
    assert_eq!(target("api_token"), (Env, "API_TOKEN".into()));
    assert_eq!(target("web-hook-key"), (Env, "WEB_HOOK_KEY".into()));
    assert_eq!(target("named"), (File, "named.key".into()));
    assert_eq!(target("typed"), (Env, "TYPED".into()));

    let tree = Tree::new();
    tree.resource(
        "kit",
        json!([{"id": "x", "target": {"type": "socket", "name": "X"}}]),
        &[],
    );
    let err = tree.declarations(ServiceKind::Resource, "kit").unwrap_err();
    assert!(
        err.message.contains("unknown target type `socket`"),
        "{}",
        err.message
    );
}

// ---------------------------------------------------------------------------------------------
// The plan

#[test]
fn the_plan_has_the_contract_shape_and_exact_exclusion_reasons() {
    let tree = world(json!([
        {"id": "session_secret", "description": "Signs cookies", "classification": "per_install_generated",
         "generator": {"type": "random", "length": 48, "charset": "alnum"}},
        {"id": "admin_key", "prompt": {"label": "Admin key", "format": "^[a-z]{12}$"},
         "target": {"type": "file", "name": "ADMIN_KEY_FILE"}, "required": false},
        {"id": "telemetry_token", "generator": {"type": "hex"}, "tiers": {"tier-2-desktop": "strip"}},
    ]));
    let plan = tree
        .plan("app", &[("db", "lite")], Tier::Desktop, "")
        .unwrap();
    assert!(plan.violations.is_empty());
    assert!(plan.warnings.is_empty());
    let value = json_of(&plan);
    assert_eq!(
        value,
        json!({
            "scenario": "app",
            "tier": "tier-2-desktop",
            "secrets": [
                {"id": "admin_key", "class": "user_prompt", "owner": "scenario:app",
                 "prompt": {"label": "Admin key", "format": "^[a-z]{12}$"},
                 "target": {"type": "file", "name": "ADMIN_KEY_FILE"}, "required": false},
                {"id": "session_secret", "class": "per_install_generated", "owner": "scenario:app",
                 "description": "Signs cookies",
                 "generator": {"type": "random", "length": 48, "charset": "alnum"},
                 "target": {"type": "env", "name": "SESSION_SECRET"}, "required": true},
            ],
            "excluded": [
                {"id": "db_password", "reason": "resource db is swapped for lite"},
                {"id": "db_user", "reason": "resource db is swapped for lite"},
                {"id": "llm_key", "reason": "resource llm is optional and not bundled"},
                {"id": "telemetry_token", "reason": "stripped on tier-2-desktop by its declaration"},
            ],
        })
    );
    // On another tier the strip does not apply.
    let plan = tree
        .plan("app", &[("db", "lite")], Tier::Local, "")
        .unwrap();
    assert_eq!(
        secret(&plan, "telemetry_token").class,
        SecretClass::PerInstallGenerated
    );
}

#[test]
fn an_infrastructure_secret_whose_resource_stays_is_a_violation_naming_the_swap() {
    let tree = world(json!([]));
    let plan = tree.plan("app", &[], Tier::Desktop, "").unwrap();
    assert_eq!(plan.violations.len(), 2, "db_password and db_user");
    let first = &plan.violations[0];
    assert_eq!(
        first.message,
        "secret `db_password` of resource:db is infrastructure, but db stays in the bundle"
    );
    let help = first.help.as_deref().unwrap();
    assert!(
        help.contains("--swap db=lite") && help.contains("swaps = { db = \"lite\" }"),
        "{help}"
    );
    assert_eq!(
        reasons(&plan)["db_password"],
        "infrastructure: db must be swapped out"
    );
    assert!(plan.secrets.is_empty());

    // A resource with nowhere to swap to: the help says to remove it or reclassify.
    let tree = Tree::new();
    tree.resource("vaultd", json!([{"id": "root_token"}]), &[])
        .scenario("app", &[("vaultd", true)], json!([]));
    let plan = tree.plan("app", &[], Tier::Desktop, "").unwrap();
    assert_eq!(plan.violations.len(), 1);
    assert!(
        plan.violations[0]
            .help
            .as_deref()
            .unwrap()
            .contains("remove vaultd from the bundle"),
        "{:?}",
        plan.violations[0].help
    );
    // Reclassifying it in the profile makes the plan valid.
    let plan = tree
        .plan(
            "app",
            &[],
            Tier::Desktop,
            "root_token = { class = \"user_prompt\" }\n",
        )
        .unwrap();
    assert!(plan.violations.is_empty());
    assert_eq!(secret(&plan, "root_token").class, SecretClass::UserPrompt);
}

#[test]
fn duplicate_secret_ids_across_two_resources_are_an_error() {
    let tree = Tree::new();
    tree.resource("one", json!([{"id": "shared_key", "generator": {}}]), &[])
        .resource("two", json!([{"id": "shared_key", "generator": {}}]), &[])
        .scenario("app", &[("one", true), ("two", true)], json!([]));
    let err = assert_err_contains(
        tree.plan("app", &[], Tier::Desktop, ""),
        &["secret id `shared_key` is declared by both resource:one and resource:two"],
    );
    assert!(
        err.location()
            .unwrap()
            .starts_with("resources/two/.vrooli/service.json:"),
        "{err}"
    );
    // Also between a swapped-out resource and the scenario.
    let tree = world(json!([{"id": "db_user", "generator": {}}]));
    assert_err_contains(
        tree.plan("app", &[("db", "lite")], Tier::Desktop, ""),
        &["secret id `db_user` is declared by both"],
    );
}

// ---------------------------------------------------------------------------------------------
// Profile overrides

fn override_world() -> Tree {
    world(json!([
        {"id": "session_secret", "classification": "per_install_generated",
         "generator": {"type": "random", "length": 48, "charset": "alnum"}},
        {"id": "admin_key", "prompt": {"label": "Admin key", "format": "^[a-z]+$"}},
        {"id": "metrics_token", "fetch": {"url": "https://vault.local/v1/metrics"}},
    ]))
}

#[test]
fn profile_overrides_change_class_generator_prompt_target_and_exclusion() {
    let tree = override_world();
    let plan = tree
        .plan(
            "app",
            &[("db", "lite")],
            Tier::Desktop,
            concat!(
                "session_secret = { generator = { length = 64 }, target = { type = \"file\", name = \"SESSION_FILE\" } }\n",
                "admin_key = { label = \"Administrator key\", format = \"^[a-z0-9]{16}$\", description = \"For the admin page\", required = false }\n",
                "metrics_token = { class = \"exclude\" }\n",
            ),
        )
        .unwrap();
    let session = secret(&plan, "session_secret");
    assert_eq!(
        serde_json::to_value(session).unwrap(),
        json!({"id": "session_secret", "class": "per_install_generated", "owner": "scenario:app",
               "generator": {"type": "random", "length": 64, "charset": "alnum"},
               "target": {"type": "file", "name": "SESSION_FILE"}, "required": true})
    );
    let admin = secret(&plan, "admin_key");
    assert_eq!(
        serde_json::to_value(admin).unwrap(),
        json!({"id": "admin_key", "class": "user_prompt", "owner": "scenario:app",
               "description": "For the admin page",
               "prompt": {"label": "Administrator key", "description": "For the admin page", "format": "^[a-z0-9]{16}$"},
               "target": {"type": "env", "name": "ADMIN_KEY"}, "required": false})
    );
    assert_eq!(reasons(&plan)["metrics_token"], "excluded by the profile");
    assert!(
        plan.warnings.is_empty(),
        "an excluded fetch warns of nothing"
    );

    // A class change: the prompt becomes generated (default generator), the generated secret a
    // fetched one (url from the profile).
    let plan = tree
        .plan(
            "app",
            &[("db", "lite")],
            Tier::Desktop,
            concat!(
                "admin_key = { class = \"generate\" }\n",
                "session_secret = { class = \"remote_fetch\", url = \"https://vault.local/v1/s\" }\n",
            ),
        )
        .unwrap();
    assert_eq!(
        secret(&plan, "admin_key").generator,
        Some(Generator::default())
    );
    assert_eq!(secret(&plan, "admin_key").prompt, None);
    assert_eq!(
        secret(&plan, "session_secret").class,
        SecretClass::RemoteFetch
    );
    assert_eq!(secret(&plan, "session_secret").generator, None);
    assert_eq!(plan.warnings.len(), 2, "{:?}", plan.warnings);

    // A generator override that changes the type starts from the new type's defaults.
    let plan = tree
        .plan(
            "app",
            &[("db", "lite")],
            Tier::Desktop,
            "session_secret = { generator = { type = \"uuid\" } }\n",
        )
        .unwrap();
    assert_eq!(
        serde_json::to_value(secret(&plan, "session_secret").generator.as_ref().unwrap()).unwrap(),
        json!({"type": "uuid", "length": 36})
    );
    let plan = tree
        .plan(
            "app",
            &[("db", "lite")],
            Tier::Desktop,
            "session_secret = { generator = { type = \"hex\", length = 40 } }\n",
        )
        .unwrap();
    assert_eq!(
        serde_json::to_value(secret(&plan, "session_secret").generator.as_ref().unwrap()).unwrap(),
        json!({"type": "hex", "length": 40})
    );
}

#[test]
fn every_override_is_validated_up_front() {
    let tree = override_world();
    let cases: [(&str, &[&str]); 19] = [
        (
            "session_secret = { class = \"vaulted\" }\n",
            &[
                "override of secret `session_secret`",
                "unknown secret class `vaulted`",
            ],
        ),
        (
            "session_secret = { generator = { type = \"emoji\" } }\n",
            &[
                "override of secret `session_secret`",
                "unknown generator type `emoji`",
            ],
        ),
        (
            "session_secret = { generator = { length = 3 } }\n",
            &["generator length 3 is outside 8..=4096"],
        ),
        (
            "session_secret = { generator = { type = \"uuid\", length = 40 } }\n",
            &["a uuid is 36 characters long, not 40"],
        ),
        (
            "session_secret = { generator = { type = \"hex\", charset = \"abc\" } }\n",
            &["charset applies to random generators only (this one is hex)"],
        ),
        (
            "session_secret = { generator = { charset = \"z\" } }\n",
            &["charset `z` is neither a named set"],
        ),
        (
            "admin_key = { generator = { length = 16 } }\n",
            &[
                "`generator` applies to per_install_generated secrets only, but `admin_key` is user_prompt (inferred from its declaration)",
            ],
        ),
        (
            "session_secret = { label = \"Session\" }\n",
            &[
                "`label` applies to user_prompt secrets only, but `session_secret` is per_install_generated (from its declaration's classification)",
            ],
        ),
        (
            "session_secret = { class = \"user_prompt\", generator = { length = 16 } }\n",
            &[
                "`generator` applies to per_install_generated secrets only, but `session_secret` is user_prompt (as the override says)",
            ],
        ),
        (
            "session_secret = { url = \"https://vault.local/x\" }\n",
            &["`url` applies to remote_fetch secrets only"],
        ),
        (
            "admin_key = { timeout-ms = 100 }\n",
            &["`timeout-ms` applies to remote_fetch secrets only, but `admin_key` is user_prompt"],
        ),
        (
            "admin_key = { format = \"^[a-z\" }\n",
            &["format is not a valid regular expression"],
        ),
        (
            "metrics_token = { class = \"exclude\", url = \"https://vault.local/y\" }\n",
            &["`url` has no effect: `metrics_token` is excluded (as the override says)"],
        ),
        (
            "admin_key = { class = \"delegate\" }\n",
            &["`admin_key` is remote_fetch (as the override says) but has no url"],
        ),
        (
            "metrics_token = { url = \"http://vault.example/m\" }\n",
            &["http:// sends the secret in clear to a host that is not loopback"],
        ),
        (
            "session_secret = { generator = { charset = \"alnum_sybmols\" } }\n",
            &["did you mean `alnum_symbols`?"],
        ),
        (
            "session_secret = { generator = { length = 16, charset = \"0123456789\" } }\n",
            &["10 distinct characters: 16 of them give 53 bits"],
        ),
        (
            "admin_key = { format = \"(a{100}){100}\" }\n",
            &["format compiles to more than 256 KiB"],
        ),
        (
            "admin_key = { target = { type = \"file\", name = \"../../x\" } }\n",
            &["`../../x`: a `..` component"],
        ),
    ];
    for (toml, needles) in cases {
        let err = assert_err_contains(
            tree.plan("app", &[("db", "lite")], Tier::Desktop, toml),
            needles,
        );
        assert!(err.help.is_some(), "{toml}");
    }
    // Not a declared secret at all.
    assert_err_contains(
        tree.plan(
            "app",
            &[("db", "lite")],
            Tier::Desktop,
            "nope = { class = \"generate\" }\n",
        ),
        &[
            "the profile overrides secret `nope`, which nothing in app declares",
            "admin_key",
        ],
    );
    // Also an override that would not take effect (its resource is swapped out) is checked.
    assert_err_contains(
        tree.plan(
            "app",
            &[("db", "lite")],
            Tier::Desktop,
            "db_password = { class = \"generate\", label = \"Password\" }\n",
        ),
        &[
            "`label` applies to user_prompt secrets only, but `db_password` is per_install_generated",
        ],
    );
    assert_err_contains(
        tree.plan(
            "app",
            &[("db", "lite")],
            Tier::Desktop,
            "llm_key = { generator = { type = \"emoji\" } }\n",
        ),
        &["override of secret `llm_key`"],
    );
}

#[test]
fn a_valid_override_of_a_secret_the_bundle_leaves_out_is_harmless() {
    let tree = override_world();
    let overrides = concat!(
        "db_password = { class = \"generate\", generator = { type = \"hex\", length = 32 } }\n",
        "llm_key = { label = \"Model API key\" }\n",
    );
    let plan = tree
        .plan("app", &[("db", "lite")], Tier::Desktop, overrides)
        .unwrap();
    let without = tree
        .plan("app", &[("db", "lite")], Tier::Desktop, "")
        .unwrap();
    assert_eq!(plan.secrets, without.secrets, "no effect on what ships");
    assert_eq!(plan.excluded, without.excluded, "same reasons");
    assert_eq!(
        plan.warnings,
        [
            "the profile's override of secret `db_password` has no effect: resource db is swapped for lite",
            "the profile's override of secret `llm_key` has no effect: resource llm is optional and not bundled",
            "secret `metrics_token` is fetched at run time from https://vault.local/v1/metrics: the app cannot start offline",
        ],
        "warnings in the order of the secret ids"
    );
    // Without the swap, the same override takes effect (and the violation is gone for it).
    let plan = tree.plan("app", &[], Tier::Desktop, overrides).unwrap();
    assert_eq!(
        secret(&plan, "db_password").class,
        SecretClass::PerInstallGenerated
    );
    assert_eq!(plan.violations.len(), 1, "db_user is still infrastructure");
}

#[test]
fn profile_errors_name_the_profile_and_point_into_bundle_toml() {
    let tree = override_world();
    let toml = profile_toml(
        "app",
        "admin_key = { label = \"Admin\" }\nsession_secret = { label = \"Session\" }\n",
    )
    .replace(
        "tier = \"desktop\"",
        "tier = \"desktop\"\nswaps = { db = \"lite\" }",
    );
    let config = BundleConfig::parse(&toml, Utf8Path::new("bundle.toml")).unwrap();
    let profile = &config.profiles[0];
    let catalog = tree.catalog();
    let analysis = analyze(
        &catalog,
        &Request {
            scenario: "app".into(),
            swaps: BTreeMap::from([("db".to_string(), "lite".to_string())]),
            tier: Some(Tier::Desktop),
        },
    )
    .unwrap();
    let err = secrets::plan_for_profile(&catalog, &analysis, Tier::Desktop, &config, profile)
        .unwrap_err();
    assert!(
        err.message.starts_with("profile `p`: override of secret `session_secret`: `label` applies to user_prompt secrets only"),
        "{}",
        err.message
    );
    assert_eq!(err.file.as_deref().map(|f| f.as_str()), Some("bundle.toml"));
    assert_eq!(
        err.line_col().unwrap().0,
        line_of(&toml, "session_secret = "),
        "{err}"
    );
    assert!(err.help.is_some());
    // Fixed, the same call plans.
    let fixed = toml.replace("session_secret = { label = \"Session\" }\n", "");
    let config = BundleConfig::parse(&fixed, Utf8Path::new("bundle.toml")).unwrap();
    let plan = secrets::plan_for_profile(
        &catalog,
        &analysis,
        Tier::Desktop,
        &config,
        &config.profiles[0],
    )
    .unwrap();
    assert_eq!(
        secret(&plan, "admin_key")
            .prompt
            .as_ref()
            .unwrap()
            .label
            .as_deref(),
        Some("Admin")
    );
}
