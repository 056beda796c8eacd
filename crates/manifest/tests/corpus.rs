//! The three real manifests of the conformance corpus: they parse, write back without losing a
//! field, and validate; manifests built from the types validate against the corpus's JSON
//! Schema; bad inputs give errors that name the field.

use manifest::{
    App, Binary, Health, HealthType, Ipc, IpcMode, Manifest, PortRange, PortRequest, Readiness,
    ReadinessType, SchemaVersion, Secret, SecretClass, SecretTarget, SecretTargetType, Service,
    ServicePorts, ServiceType, Target, Telemetry,
};
use std::path::PathBuf;

const EXAMPLES: [&str; 3] = [
    "desktop-happy.json",
    "desktop-playwright.json",
    "desktop-with-build.json",
];

/// The corpus directory, or `None` (with a note) when it is absent. Fails instead when
/// `XBUNDLE_REQUIRE_TOOLS=1`.
fn corpus() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/conformance/vrooli/bundle"
    ));
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var_os("XBUNDLE_REQUIRE_TOOLS").is_some_and(|value| value == "1") {
        panic!(
            "conformance corpus missing at {} (XBUNDLE_REQUIRE_TOOLS=1)",
            dir.display()
        );
    }
    eprintln!("skipped: conformance corpus not found at {}", dir.display());
    None
}

fn read(dir: &std::path::Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

#[test]
fn examples_round_trip_without_losing_fields() {
    let Some(dir) = corpus() else { return };
    for name in EXAMPLES {
        let text = read(&dir, name);
        let manifest = Manifest::from_json(&text).unwrap_or_else(|err| panic!("{name}: {err}"));
        let original: serde_json::Value = serde_json::from_str(&text).unwrap();
        let written = serde_json::to_value(&manifest).unwrap();
        assert_eq!(original, written, "{name}: round trip changed the document");
        // And the pretty form parses back to the same value.
        assert_eq!(
            Manifest::from_json(&manifest.to_json_pretty()).unwrap(),
            manifest
        );
    }
}

#[test]
fn examples_validate() {
    let Some(dir) = corpus() else { return };
    for name in EXAMPLES {
        let manifest = Manifest::from_json(&read(&dir, name)).unwrap();
        let problems = manifest.validate();
        let errors: Vec<_> = problems.iter().filter(|p| p.is_error()).collect();
        assert!(errors.is_empty(), "{name}: {errors:#?}");
    }
    // The playwright example has a dangling template, reported as a warning.
    let manifest = Manifest::from_json(&read(&dir, "desktop-playwright.json")).unwrap();
    let warnings: Vec<String> = manifest.validate().iter().map(|p| p.to_string()).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("services[1].env.PLAYWRIGHT_DRIVER_URL")
                && w.contains("no service `playwright`")),
        "{warnings:#?}"
    );
}

#[test]
fn unknown_fields_are_kept() {
    let Some(dir) = corpus() else { return };
    let mut value: serde_json::Value =
        serde_json::from_str(&read(&dir, "desktop-happy.json")).unwrap();
    value["services"][2]["assets"][0]["url"] = "https://example.org/seed.sql".into();
    value["services"][2]["assets"][0]["mirror"] = serde_json::json!({"a": [1, 2]});
    value["x-vendor"] = serde_json::json!({"built_by": "xbundle"});
    let manifest = Manifest::from_json(&value.to_string()).unwrap();
    assert_eq!(
        manifest.services[2].assets()[0].url.as_deref(),
        Some("https://example.org/seed.sql")
    );
    assert_eq!(serde_json::to_value(&manifest).unwrap(), value);
}

fn sample() -> Manifest {
    let port = |name: &str, min, max| PortRequest {
        name: name.into(),
        range: PortRange { min, max },
        requires_socket: None,
        extra: Default::default(),
    };
    let service = |id: &str, kind, deps: Vec<&str>| Service {
        id: id.into(),
        kind,
        description: None,
        binaries: [(
            "linux-x64".into(),
            Binary {
                path: format!("bin/{id}"),
                args: None,
                env: None,
                cwd: None,
                extra: Default::default(),
            },
        )]
        .into(),
        build: None,
        env: Some([("PORT".to_owned(), format!("${{{id}.http}}"))].into()),
        secrets: None,
        data_dirs: None,
        log_dir: None,
        ports: Some(ServicePorts {
            requested: vec![port("http", 20000, 20100)],
            extra: Default::default(),
        }),
        health: Health {
            kind: HealthType::Http,
            path: Some("/health".into()),
            port_name: Some("http".into()),
            command: None,
            pattern: None,
            interval_ms: Some(500),
            timeout_ms: Some(2000),
            retries: Some(3),
            extra: Default::default(),
        },
        readiness: Readiness {
            kind: ReadinessType::HealthSuccess,
            port_name: None,
            pattern: None,
            timeout_ms: Some(30000),
            extra: Default::default(),
        },
        dependencies: Some(deps.into_iter().map(Into::into).collect()),
        migrations: None,
        assets: None,
        gpu: None,
        critical: Some(true),
        metadata: None,
        extra: Default::default(),
    };
    let mut api = service("api", ServiceType::ApiBinary, vec![]);
    api.secrets = Some(vec!["token".into()]);
    Manifest {
        schema_version: SchemaVersion::V0_1,
        target: Target::Desktop,
        app: App {
            name: "demo".into(),
            version: "1.0.0".into(),
            description: None,
            extra: Default::default(),
        },
        ipc: Ipc {
            mode: IpcMode::LoopbackHttp,
            host: "127.0.0.1".into(),
            port: 39200,
            auth_token_path: "runtime/auth-token".into(),
            extra: Default::default(),
        },
        telemetry: Telemetry {
            file: "telemetry.jsonl".into(),
            upload_url: None,
            extra: Default::default(),
        },
        ports: None,
        swaps: None,
        secrets: Some(vec![Secret {
            id: "token".into(),
            class: SecretClass::PerInstallGenerated,
            description: None,
            format: None,
            required: None,
            prompt: None,
            generator: Some(Default::default()),
            fetch: None,
            target: SecretTarget {
                kind: SecretTargetType::File,
                name: "TOKEN_FILE".into(),
                extra: Default::default(),
            },
            extra: Default::default(),
        }]),
        services: vec![api, service("ui", ServiceType::UiBundle, vec!["api"])],
        code_signing: None,
        extra: Default::default(),
    }
}

#[test]
fn built_manifest_validates_against_the_conformance_schema() {
    let Some(dir) = corpus() else { return };
    let schema: serde_json::Value =
        serde_json::from_str(&read(&dir, "bundle-schema.desktop.v0.1.json")).unwrap();
    let validator = jsonschema::draft7::new(&schema).unwrap();
    let manifest = sample();
    assert!(manifest.validate().is_empty(), "{:#?}", manifest.validate());
    let value = serde_json::to_value(&manifest).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // The corpus examples with binaries validate too (desktop-with-build has `binaries: {}`,
    // which the schema's minProperties rejects although the real system wrote it).
    for name in ["desktop-happy.json", "desktop-playwright.json"] {
        let manifest = Manifest::from_json(&read(&dir, name)).unwrap();
        let value = serde_json::to_value(&manifest).unwrap();
        assert!(validator.is_valid(&value), "{name}");
    }
}

#[track_caller]
fn parse_error(text: &str) -> String {
    Manifest::from_json(text).unwrap_err().to_string()
}

#[test]
fn bad_inputs_name_the_field() {
    let good = serde_json::to_value(sample()).unwrap();
    let with = |pointer: &str, new: serde_json::Value| {
        let mut value = good.clone();
        *value.pointer_mut(pointer).unwrap() = new;
        value.to_string()
    };
    let err = parse_error(&with("/services/1/health/type", "grpc".into()));
    assert!(
        err.starts_with("services[1].health.type: unknown variant `grpc`"),
        "{err}"
    );
    let err = parse_error(&with("/ipc/port", 70000.into()));
    assert!(err.starts_with("ipc.port: invalid value"), "{err}");
    let err = parse_error(&with("/schema_version", "v0.2".into()));
    assert!(
        err.starts_with("schema_version: unknown variant `v0.2`"),
        "{err}"
    );
    let err = parse_error(&with("/services/0/dependencies", "api".into()));
    assert!(
        err.starts_with("services[0].dependencies: invalid type: string"),
        "{err}"
    );
    let mut value = good.clone();
    value["services"][0]["readiness"]
        .as_object_mut()
        .unwrap()
        .remove("type");
    let err = parse_error(&value.to_string());
    assert!(
        err.starts_with("services[0].readiness: missing field `type`"),
        "{err}"
    );
    let err = parse_error("{\"schema_version\": \"v0.1\",");
    assert!(err.contains("EOF"), "{err}");
}

#[test]
fn semantic_problems_name_the_path() {
    let mut manifest = sample();
    manifest.services[0].dependencies = Some(vec!["ui".into(), "nope".into()]);
    manifest.services[1].secrets = Some(vec!["missing".into()]);
    manifest.services[1].ports.as_mut().unwrap().requested[0].range = PortRange {
        min: 30000,
        max: 20000,
    };
    manifest.services.push(manifest.services[1].clone());
    manifest.ipc.host = "0.0.0.0".into();
    manifest.secrets.as_mut().unwrap()[0].class = SecretClass::Infrastructure;
    let problems: Vec<String> = manifest
        .validate()
        .iter()
        .filter(|p| p.is_error())
        .map(|p| p.to_string())
        .collect();
    let expect = [
        "error: ipc.host: `0.0.0.0` is not a loopback address",
        "error: secrets[0].class: an `infrastructure` secret is never bundled",
        "error: services[2].id: duplicate service id `ui`",
        "error: services[0].dependencies[1]: unknown service `nope`",
        "error: services[1].secrets[0]: unknown secret `missing`",
        "error: services[1].ports.requested[0].range: min 30000 is greater than max 20000",
        "dependency cycle: api -> ui -> api",
    ];
    for needle in expect {
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "missing {needle:?} in {problems:#?}"
        );
    }
}

#[test]
fn secret_templates_need_a_listed_secret() {
    let mut manifest = sample();
    let secret_id = manifest.secrets.as_ref().unwrap()[0]
        .id
        .as_str()
        .to_string();
    let env = manifest.services[1]
        .env
        .get_or_insert_with(Default::default);
    env.insert("A".into(), "Bearer ${secret.nope}".into());
    env.insert("B".into(), format!("${{secret.{secret_id}}}"));
    manifest.services[1].secrets = Some(Vec::new());
    let problems: Vec<String> = manifest
        .validate()
        .iter()
        .filter(|p| p.is_error())
        .map(|p| p.to_string())
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("env.A") && p.contains("no secret `nope`")),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("env.B") && p.contains("does not list")),
        "{problems:#?}"
    );
    manifest.services[1].secrets = Some(vec![secret_id.as_str().into()]);
    manifest.services[1].env.as_mut().unwrap().remove("A");
    assert!(
        manifest
            .validate()
            .iter()
            .all(|p| !p.is_error() || !p.path.contains("env")),
        "a listed secret may be templated"
    );
}
