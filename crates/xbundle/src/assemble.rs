//! Assembly (the seed's deployment-manager, closing its Gap 1): a profile of bundle.toml becomes
//! a `bundle.json` (desktop v0.1), with the profile's swaps applied to the services themselves.
//!
//! Services, in dependency order:
//! - per required scenario with an API port: `<scenario>-api` (`api-binary`): its ports from
//!   service.json, health from `lifecycle.health` (the endpoint of the `api` port), readiness on
//!   health, env wiring its ports (`API_PORT=${<scenario>-api.api}`), its data directory, the
//!   environment each resource it uses *provides* (so `DATABASE_URL` points at postgres, or at a
//!   SQLite file once postgres is swapped for sqlite), the URLs of the scenarios it depends on,
//!   and the ids of the secrets it needs;
//! - for the root scenario with a `ui` port: `<scenario>-ui` (`ui-bundle`, served in-process by
//!   the runtime from `ui/<scenario>`, `/api` proxied to the API);
//! - per required resource shipped as a process (`deployment.bundle.mode = "service"`, the
//!   default, also for resources sized by the class table): a `resource` service with its port,
//!   health, data directories, migrations and secrets. Embedded and external resources (sqlite,
//!   an in-process cache, a hosted API) have no service: they exist only through the environment
//!   they provide.
//!
//! Binaries follow the staging layout `bin/<service>/<platform>/<name>[.exe]`; the compile and
//! stage tasks fill them. The output is deterministic: maps are sorted, nothing depends on time
//! or on the machine.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Value, json};

use crate::analysis::tier::Tier;
use crate::analysis::{Analysis, Catalog, Request, analyze};
use crate::config::{BundleConfig, Profile};
use crate::diagnostic::Diagnostic;
use crate::platform::Platform;
use crate::secrets::{self, Plan, SecretClass};
use crate::service::{BundleMode, ServiceDef, ServiceKind};

/// Defaults of the original system (REFERENCE.md).
const IPC_PORT: u16 = 39200;
const DEFAULT_RANGE: (u16, u16) = (20000, 24000);

/// A profile, resolved: what `check` validates and `assemble` writes.
#[derive(Debug)]
pub struct Assembly {
    pub profile: String,
    pub tier: Tier,
    pub analysis: Analysis,
    pub plan: Plan,
    pub manifest: manifest::Manifest,
    /// The exact bytes of bundle.json.
    pub json: String,
    /// Definition and platform files read (root-relative).
    pub files: Vec<String>,
}

/// Settings of a profile that enter the assembly's key (bundle.toml itself does not: editing
/// another profile must not re-assemble this one).
pub fn profile_fingerprint(profile: &Profile) -> String {
    #[derive(Serialize)]
    struct Fingerprint<'a> {
        scenario: &'a str,
        tier: &'a str,
        platforms: Vec<&'a str>,
        formats: Vec<&'a str>,
        swaps: BTreeMap<&'a str, &'a str>,
        min_fitness: Option<f64>,
        version: Option<&'a str>,
        env: BTreeMap<&'a str, &'a str>,
        secrets: BTreeMap<&'a str, String>,
    }
    let decl = &profile.decl;
    serde_json::to_string(&Fingerprint {
        scenario: decl.scenario.get_ref(),
        tier: decl.tier.get_ref(),
        platforms: decl
            .platforms
            .iter()
            .map(|p| p.get_ref().as_str())
            .collect(),
        formats: decl.formats.iter().map(|p| p.get_ref().as_str()).collect(),
        swaps: decl
            .swaps
            .iter()
            .map(|(k, v)| (k.get_ref().as_str(), v.get_ref().as_str()))
            .collect(),
        min_fitness: decl.min_fitness.as_ref().map(|m| *m.get_ref()),
        version: decl.version.as_ref().map(|v| v.get_ref().as_str()),
        env: decl
            .env
            .iter()
            .map(|(k, v)| (k.get_ref().as_str(), v.get_ref().as_str()))
            .collect(),
        secrets: decl
            .secrets
            .iter()
            .map(|(k, v)| (k.get_ref().as_str(), format!("{:?}", v.get_ref())))
            .collect(),
    })
    .expect("fingerprints serialize")
}

fn service_json(
    id: &str,
    kind: &str,
    description: Option<&str>,
    binaries: Value,
) -> serde_json::Map<String, Value> {
    let mut service = serde_json::Map::new();
    service.insert("id".into(), json!(id));
    service.insert("type".into(), json!(kind));
    if let Some(description) = description {
        service.insert("description".into(), json!(description));
    }
    service.insert("binaries".into(), binaries);
    service
}

fn binaries(platforms: &[Platform], service: &str, name: &str) -> Value {
    let mut map = serde_json::Map::new();
    for platform in platforms {
        map.insert(
            platform.id.clone(),
            json!({"path": format!("bin/{service}/{}/{name}{}", platform.id, platform.exe_suffix)}),
        );
    }
    Value::Object(map)
}

fn env_name(name: &str) -> String {
    name.to_ascii_uppercase().replace(['-', '.'], "_")
}

/// Build type guessed from the scenario's setup steps.
fn build_type(def: &ServiceDef) -> &'static str {
    let steps: String = def
        .setup_steps
        .iter()
        .map(|s| s.run.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    if steps.contains("cargo build") {
        "rust"
    } else if steps.contains("go build") || steps.is_empty() {
        "go"
    } else if steps.contains("npm ") || steps.contains("pnpm ") {
        "npm"
    } else if steps.contains("python") || steps.contains("pip ") {
        "python"
    } else {
        "custom"
    }
}

/// Scenarios of the analysis in dependency order (dependencies first), required ones only.
fn scenario_order(analysis: &Analysis) -> Vec<String> {
    let required: BTreeSet<&str> = analysis
        .dag
        .nodes
        .iter()
        .filter(|n| n.kind == ServiceKind::Scenario && n.required)
        .map(|n| n.name.as_str())
        .collect();
    let mut order: Vec<String> = Vec::new();
    let mut remaining: BTreeSet<&str> = required.clone();
    while !remaining.is_empty() {
        let ready: Vec<&str> = remaining
            .iter()
            .copied()
            .filter(|name| {
                analysis.dag.edges.iter().all(|edge| {
                    edge.from != format!("scenario:{name}")
                        || edge.optional
                        || !edge.to.starts_with("scenario:")
                        || order
                            .iter()
                            .any(|done| edge.to == format!("scenario:{done}"))
                        || !required.contains(edge.to.trim_start_matches("scenario:"))
                })
            })
            .collect();
        if ready.is_empty() {
            // The analysis rejects cycles; this is only a guard.
            order.extend(remaining.iter().map(|s| s.to_string()));
            break;
        }
        for name in ready {
            remaining.remove(name);
            order.push(name.to_string());
        }
    }
    order
}

/// Resolves a profile into a manifest. `platforms` are all known platforms.
pub fn assemble(
    catalog: &Catalog,
    config: &BundleConfig,
    profile: &Profile,
    known_platforms: &[Platform],
) -> Result<Assembly, Diagnostic> {
    let decl = &profile.decl;
    let tier: Tier = decl
        .tier
        .get_ref()
        .parse()
        .map_err(|err: String| config.diagnostic(err, decl.tier.span(), "this tier"))?;
    // Platforms: named ones must exist; none named means every known platform.
    let mut platforms = Vec::new();
    for name in &decl.platforms {
        match known_platforms.iter().find(|p| &p.id == name.get_ref()) {
            Some(platform) => platforms.push(platform.clone()),
            None => {
                let known: Vec<&str> = known_platforms.iter().map(|p| p.id.as_str()).collect();
                return Err(config
                    .diagnostic(
                        format!(
                            "profile `{}`: unknown platform `{}`",
                            profile.name,
                            name.get_ref()
                        ),
                        name.span(),
                        "no platforms/<id>.toml for this",
                    )
                    .help(format!("platforms: {}", known.join(", "))));
            }
        }
    }
    if platforms.is_empty() {
        platforms = known_platforms.to_vec();
    }
    let swaps: BTreeMap<String, String> = decl
        .swaps
        .iter()
        .map(|(k, v)| (k.get_ref().clone(), v.get_ref().clone()))
        .collect();
    let request = Request {
        scenario: decl.scenario.get_ref().clone(),
        swaps,
        tier: Some(tier),
    };
    let analysis =
        analyze(catalog, &request).map_err(|err| locate_in_profile(config, profile, err))?;

    // The tier's fitness after swaps must reach min-fitness.
    let report = &analysis.tiers[&tier];
    if let Some(min) = &decl.min_fitness
        && report.score < *min.get_ref()
    {
        let better: Vec<String> = analysis
            .swaps
            .iter()
            .take(3)
            .map(|s| format!("{}={} ({})", s.from, s.to, s.impact))
            .collect();
        let blockers: Vec<String> = report.blockers.iter().map(|b| b.node.clone()).collect();
        return Err(config
            .diagnostic(
                format!(
                    "profile `{}`: {} fitness of {} is {:.2}, below min-fitness {:.2}",
                    profile.name,
                    tier,
                    analysis.scenario,
                    report.score,
                    min.get_ref()
                ),
                min.span(),
                "the threshold",
            )
            .help(if better.is_empty() {
                format!(
                    "blockers: {}; lower min-fitness or change the scenario's resources",
                    blockers.join(", ")
                )
            } else {
                format!(
                    "swaps that would help: {}; blockers: {}",
                    better.join(", "),
                    blockers.join(", ")
                )
            }));
    }

    let plan = secrets::plan_for_profile(catalog, &analysis, tier, config, profile)?;
    if let Some(first) = plan.violations.first() {
        let mut diagnostic = first.clone();
        diagnostic.message = format!("profile `{}`: {}", profile.name, diagnostic.message);
        if plan.violations.len() > 1 {
            diagnostic.message.push_str(&format!(
                " (and {} more such secrets)",
                plan.violations.len() - 1
            ));
        }
        return Err(diagnostic);
    }
    let excluded: BTreeMap<&str, &str> = plan
        .excluded
        .iter()
        .map(|e| (e.id.as_str(), e.reason.as_str()))
        .collect();
    let planned: BTreeSet<&str> = plan.secrets.iter().map(|s| s.id.as_str()).collect();

    // Resource nodes after swaps, with their definitions.
    let mut resources: BTreeMap<String, Option<std::rc::Rc<ServiceDef>>> = BTreeMap::new();
    for node in analysis
        .dag
        .nodes
        .iter()
        .filter(|n| n.kind == ServiceKind::Resource && n.required)
    {
        resources.insert(
            node.name.clone(),
            catalog.get(ServiceKind::Resource, &node.name)?,
        );
    }
    let mode_of = |name: &str| -> BundleMode {
        resources
            .get(name)
            .and_then(|d| d.as_ref())
            .and_then(|d| d.deployment.as_ref())
            .and_then(|d| d.bundle.as_ref())
            .map_or(BundleMode::Service, |b| b.mode)
    };
    // Which resources each scenario uses (after swaps).
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for edge in &analysis.dag.edges {
        if !edge.optional
            && let (Some(scenario), Some(resource)) = (
                edge.from.strip_prefix("scenario:"),
                edge.to.strip_prefix("resource:"),
            )
            && resources.contains_key(resource)
        {
            uses.entry(scenario.to_string())
                .or_default()
                .insert(resource.to_string());
        }
    }
    let secrets_of = |owner: &str| -> Vec<String> {
        plan.secrets
            .iter()
            .filter(|s| s.owner == owner)
            .map(|s| s.id.clone())
            .collect()
    };

    let mut services: Vec<Value> = Vec::new();
    let mut template_checks: Vec<(String, String, String)> = Vec::new(); // (service, key, template)
    // Resource services first: everything else depends on them.
    for (name, def) in &resources {
        if mode_of(name) != BundleMode::Service {
            continue;
        }
        let spec = def
            .as_ref()
            .and_then(|d| d.deployment.as_ref())
            .and_then(|d| d.bundle.clone())
            .unwrap_or_default();
        let binary = spec.binary.clone().unwrap_or_else(|| name.clone());
        let description = def
            .as_ref()
            .and_then(|d| d.description.clone())
            .unwrap_or_else(|| format!("{name} (sized by the built-in class table)"));
        let mut service = service_json(
            name,
            "resource",
            Some(&description),
            binaries(&platforms, name, &binary),
        );
        let (port_name, range) = spec.port.clone().unwrap_or(("main".into(), DEFAULT_RANGE));
        if !spec.args.is_empty() {
            for platform in &platforms {
                service["binaries"][&platform.id]["args"] = json!(spec.args);
            }
        }
        let mut env: BTreeMap<String, String> = spec.env.clone();
        env.entry(format!("{}_PORT", env_name(name)))
            .or_insert(format!("${{{name}.{port_name}}}"));
        for (key, template) in &env {
            template_checks.push((name.clone(), key.clone(), template.clone()));
        }
        service.insert("env".into(), json!(env));
        insert_secrets(
            &mut service,
            secrets_of(&format!("resource:{name}")),
            &env,
            &planned,
        );
        let data_dirs = if spec.data_dirs.is_empty() {
            vec![name.clone()]
        } else {
            spec.data_dirs.clone()
        };
        service.insert("data_dirs".into(), json!(data_dirs));
        service.insert(
            "ports".into(),
            json!({"requested": [{"name": port_name, "range": {"min": range.0, "max": range.1}}]}),
        );
        match spec.health.as_deref() {
            Some("http") => {
                service.insert("health".into(), json!({"type": "http", "path": spec.health_path.clone().unwrap_or("/health".into()), "port_name": port_name, "interval_ms": 500, "timeout_ms": 2000, "retries": 3}));
                service.insert(
                    "readiness".into(),
                    json!({"type": "health_success", "timeout_ms": 30000}),
                );
            }
            _ => {
                service.insert("health".into(), json!({"type": "tcp", "port_name": port_name, "interval_ms": 500, "timeout_ms": 2000, "retries": 3}));
                service.insert(
                    "readiness".into(),
                    json!({"type": "port_open", "port_name": port_name, "timeout_ms": 30000}),
                );
            }
        }
        if !spec.migrations.is_empty() {
            service.insert("migrations".into(), json!(spec.migrations));
        }
        service.insert("critical".into(), json!(true));
        services.push(Value::Object(service));
    }

    let root = analysis.scenario.clone();
    for scenario in scenario_order(&analysis) {
        let Some(def) = catalog.get(ServiceKind::Scenario, &scenario)? else {
            continue;
        };
        let api_ports: Vec<(&String, &crate::service::Port)> = def
            .ports
            .iter()
            .filter(|(name, _)| name.as_str() != "ui")
            .collect();
        let api_id = format!("{scenario}-api");
        let used: Vec<String> = uses
            .get(&scenario)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let scenario_deps: Vec<String> = analysis
            .dag
            .edges
            .iter()
            .filter(|e| !e.optional && e.from == format!("scenario:{scenario}"))
            .filter_map(|e| e.to.strip_prefix("scenario:"))
            .map(str::to_string)
            .collect();
        if !api_ports.is_empty() {
            let mut service = service_json(
                &api_id,
                "api-binary",
                def.description.as_deref(),
                binaries(&platforms, &api_id, &api_id),
            );
            service.insert("build".into(), json!({"type": build_type(&def), "source_dir": format!("{}/{scenario}/api", catalog.layout.scenarios), "output_pattern": api_id}));
            let mut env: BTreeMap<String, String> = BTreeMap::new();
            let mut requested = Vec::new();
            for (port_name, port) in &api_ports {
                let range = port
                    .range
                    .or(port.port.map(|p| (p, p)))
                    .unwrap_or(DEFAULT_RANGE);
                requested
                    .push(json!({"name": port_name, "range": {"min": range.0, "max": range.1}}));
                let variable = port
                    .env_var
                    .clone()
                    .unwrap_or_else(|| format!("{}_PORT", env_name(port_name)));
                env.insert(variable, format!("${{{api_id}.{port_name}}}"));
            }
            env.insert("DATA_DIR".into(), format!("${{data}}/{scenario}"));
            for resource in &used {
                let provides = resources
                    .get(resource)
                    .and_then(|d| d.as_ref())
                    .and_then(|d| d.deployment.as_ref())
                    .and_then(|d| d.bundle.as_ref())
                    .map(|b| b.provides.clone())
                    .unwrap_or_default();
                let provides = if provides.is_empty() && mode_of(resource) == BundleMode::Service {
                    BTreeMap::from([(
                        format!("{}_URL", env_name(resource)),
                        format!("tcp://127.0.0.1:${{{resource}.main}}"),
                    )])
                } else {
                    provides
                };
                for (key, template) in provides {
                    env.insert(key, template.replace("${scenario}", &scenario));
                }
            }
            for dep in &scenario_deps {
                let port = dependency_api_port(catalog, &def, dep)?;
                env.insert(
                    format!("{}_API_URL", env_name(dep)),
                    format!("http://127.0.0.1:${{{dep}-api.{port}}}"),
                );
            }
            if scenario == root {
                for (key, template) in &decl.env {
                    env.insert(key.get_ref().clone(), template.get_ref().clone());
                }
            }
            for (key, template) in &env {
                template_checks.push((api_id.clone(), key.clone(), template.clone()));
            }
            service.insert("env".into(), json!(env));
            // Secrets: its own and those of the resources it uses that are not services (an
            // embedded or external resource's key is used by the consumer itself).
            let mut secret_ids = secrets_of(&format!("scenario:{scenario}"));
            for resource in &used {
                if mode_of(resource) != BundleMode::Service {
                    secret_ids.extend(secrets_of(&format!("resource:{resource}")));
                }
            }
            insert_secrets(&mut service, secret_ids, &env, &planned);
            service.insert("data_dirs".into(), json!([scenario]));
            service.insert("log_dir".into(), json!(format!("logs/{api_id}")));
            service.insert("ports".into(), json!({"requested": requested}));
            let check = def.health.checks.iter().find(|c| {
                c.target.as_deref().is_some_and(|t| t.contains("API_PORT"))
                    || c.name.contains("api")
            });
            let path = def
                .health
                .endpoints
                .get("api")
                .cloned()
                .unwrap_or_else(|| "/health".into());
            let first_port = api_ports[0].0.clone();
            service.insert(
                "health".into(),
                json!({
                    "type": "http",
                    "path": path,
                    "port_name": first_port,
                    "interval_ms": check.and_then(|c| c.interval_ms).map_or(500, |i| i.min(5000)),
                    "timeout_ms": check.and_then(|c| c.timeout_ms).unwrap_or(2000),
                    "retries": 3,
                }),
            );
            service.insert("readiness".into(), json!({"type": "health_success", "timeout_ms": def.health.startup_grace_ms.map_or(30000, |g| g.max(30000))}));
            let mut dependencies: Vec<String> = used
                .iter()
                .filter(|r| mode_of(r) == BundleMode::Service)
                .cloned()
                .collect();
            dependencies.extend(scenario_deps.iter().map(|dep| format!("{dep}-api")));
            if !dependencies.is_empty() {
                service.insert("dependencies".into(), json!(dependencies));
            }
            service.insert("critical".into(), json!(true));
            services.push(Value::Object(service));
        }
        if scenario == root
            && let Some(ui) = def.ports.get("ui")
        {
            let ui_id = format!("{scenario}-ui");
            let mut paths = serde_json::Map::new();
            for platform in &platforms {
                paths.insert(
                    platform.id.clone(),
                    json!({"path": format!("ui/{scenario}")}),
                );
            }
            let mut service = service_json(
                &ui_id,
                "ui-bundle",
                Some("The scenario's UI, served by the runtime with /api proxied to the API"),
                Value::Object(paths),
            );
            let range = ui
                .range
                .or(ui.port.map(|p| (p, p)))
                .unwrap_or(DEFAULT_RANGE);
            service.insert(
                "ports".into(),
                json!({"requested": [{"name": "ui", "range": {"min": range.0, "max": range.1}}]}),
            );
            if !api_ports.is_empty() {
                service.insert("env".into(), json!({"API_URL": format!("http://127.0.0.1:${{{api_id}.{}}}", api_ports[0].0)}));
                service.insert("dependencies".into(), json!([api_id]));
            }
            let path = def
                .health
                .endpoints
                .get("ui")
                .cloned()
                .unwrap_or_else(|| "/".into());
            service.insert("health".into(), json!({"type": "http", "path": path, "port_name": "ui", "interval_ms": 500, "timeout_ms": 2000, "retries": 3}));
            service.insert(
                "readiness".into(),
                json!({"type": "dependencies_ready", "timeout_ms": 30000}),
            );
            service.insert("critical".into(), json!(false));
            services.push(Value::Object(service));
        }
    }
    let root_has_api = catalog
        .get(ServiceKind::Scenario, &root)?
        .is_some_and(|def| def.ports.keys().any(|name| name != "ui"));
    if !root_has_api {
        let def = catalog
            .get(ServiceKind::Scenario, &root)?
            .expect("the analysis read it");
        return Err(def.diagnostic(
            &["ports"],
            format!("profile `{}`: scenario {root} declares no API port, so the bundle would hold none of its code", profile.name),
            "declare the API's port in service.json, e.g. \"ports\": {\"api\": {\"env_var\": \"API_PORT\", \"range\": \"15000-19999\"}}",
        ));
    }
    if services.is_empty() {
        return Err(config
            .diagnostic(
                format!(
                    "profile `{}`: scenario {root} has nothing to run (no ports and no resources)",
                    profile.name
                ),
                decl.scenario.span(),
                "this scenario",
            )
            .help("declare the scenario's ports (api, ui) in its service.json"));
    }

    // Env templates may not use secrets the bundle leaves out.
    for (service, key, template) in &template_checks {
        for id in secrets::referenced_secrets(template) {
            if let Some(reason) = excluded.get(id) {
                return Err(Diagnostic::error(format!(
                    "profile `{}`: env {key} of service {service} refers to secret `{id}`, which the bundle excludes ({reason})",
                    profile.name
                ))
                .help("remove the reference, or keep the secret in the bundle (swap differently or reclassify it)"));
            }
            if !planned.contains(id) {
                return Err(Diagnostic::error(format!(
                    "profile `{}`: env {key} of service {service} refers to unknown secret `{id}`",
                    profile.name
                ))
                .help(format!(
                    "declared secrets in this bundle: {}",
                    planned.iter().copied().collect::<Vec<_>>().join(", ")
                )));
            }
        }
    }

    let manifest_secrets: Vec<Value> = plan
        .secrets
        .iter()
        .map(|secret| {
            let mut value = json!({"id": secret.id, "class": secrets::class_id(secret.class), "required": secret.required, "target": {"type": secret.target.kind, "name": secret.target.name}});
            if let Some(description) = &secret.description {
                value["description"] = json!(description);
            }
            if let Some(generator) = &secret.generator {
                value["generator"] = serde_json::to_value(generator).expect("generators serialize");
            }
            if let Some(prompt) = &secret.prompt {
                let mut p = json!({});
                if let Some(label) = &prompt.label { p["label"] = json!(label); }
                if let Some(description) = &prompt.description { p["description"] = json!(description); }
                value["prompt"] = p;
                if let Some(format) = &prompt.format { value["format"] = json!(format); }
            }
            if let Some(fetch) = &secret.fetch {
                value["fetch"] = json!({"url": fetch.url, "timeout_ms": fetch.timeout_ms});
            }
            debug_assert!(secret.class != SecretClass::Infrastructure);
            value
        })
        .collect();
    // Chains (postgres=sqlite, sqlite=local-index) appear once, from the resource the scenarios use
    // to what replaces it in the end.
    let mut final_swaps: Vec<crate::analysis::AppliedSwap> = analysis
        .dag
        .nodes
        .iter()
        .flat_map(|node| {
            node.replaces
                .iter()
                .map(move |original| crate::analysis::AppliedSwap {
                    from: original.clone(),
                    to: node.name.clone(),
                })
        })
        .collect();
    final_swaps.sort_by(|a, b| a.from.cmp(&b.from));
    let swaps: Vec<Value> = final_swaps
        .iter()
        .map(|swap| {
            let option = catalog
                .get(ServiceKind::Resource, &swap.from)
                .ok()
                .flatten()
                .and_then(|d| d.deployment.as_ref().and_then(|dep| dep.swappable_with.iter().find(|s| s.id == swap.to).cloned()));
            let mut value = json!({"original": swap.from, "replacement": swap.to, "reason": format!("profile {} targets {tier}", profile.name)});
            if let Some(option) = option {
                if let Some(relationship) = option.relationship { value["reason"] = json!(format!("{relationship} for {tier} (profile {})", profile.name)); }
                if let Some(notes) = option.notes { value["limitations"] = json!(notes); }
            }
            value
        })
        .collect();
    let root_def = catalog
        .get(ServiceKind::Scenario, &root)?
        .expect("the analysis read it");
    let mut document = json!({
        "schema_version": manifest::FORMAT_VERSION,
        "target": "desktop",
        "app": {"name": root, "version": decl.version.as_ref().map(|v| v.get_ref().clone()).or(root_def.version.clone()).unwrap_or_else(|| "0.1.0".into())},
        "ipc": {"mode": "loopback-http", "host": "127.0.0.1", "port": IPC_PORT, "auth_token_path": "runtime/auth-token"},
        "telemetry": {"file": "telemetry/events.jsonl"},
        "ports": {"default_range": {"min": DEFAULT_RANGE.0, "max": DEFAULT_RANGE.1}, "reserved": [IPC_PORT]},
        "services": services,
    });
    if let Some(description) = &root_def.description {
        document["app"]["description"] = json!(description);
    }
    if !swaps.is_empty() {
        document["swaps"] = json!(swaps);
    }
    if !manifest_secrets.is_empty() {
        document["secrets"] = json!(manifest_secrets);
    }
    let text = serde_json::to_string(&document).expect("documents serialize");
    let manifest = manifest::Manifest::from_json(&text).map_err(|err| {
        Diagnostic::internal(format!(
            "profile `{}`: the assembled manifest does not read back: {err}",
            profile.name
        ))
    })?;
    let problems: Vec<String> = manifest
        .validate()
        .into_iter()
        .filter(|p| p.is_error())
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect();
    if !problems.is_empty() {
        return Err(Diagnostic::error(format!(
            "profile `{}`: the assembled bundle.json is invalid: {}",
            profile.name,
            problems.join("; ")
        ))
        .help("this is a defect of the definitions it was assembled from; fix the named service"));
    }
    let json = manifest.to_json_pretty();
    let mut files = catalog.recorded();
    for platform in &platforms {
        files.push(format!("platforms/{}.toml", platform.id));
    }
    files.sort();
    files.dedup();
    Ok(Assembly {
        profile: profile.name.clone(),
        tier,
        analysis,
        plan,
        manifest,
        json,
        files,
    })
}

/// Sets a service's `secrets`: `ids`, plus every planned secret its env embeds (`${secret.ID}`,
/// from the profile or from what a resource provides), which the runtime can substitute only for
/// secrets the service lists.
fn insert_secrets(
    service: &mut serde_json::Map<String, Value>,
    mut ids: Vec<String>,
    env: &BTreeMap<String, String>,
    planned: &BTreeSet<&str>,
) {
    for template in env.values() {
        ids.extend(
            secrets::referenced_secrets(template)
                .into_iter()
                .filter(|id| planned.contains(id))
                .map(str::to_string),
        );
    }
    ids.sort();
    ids.dedup();
    if !ids.is_empty() {
        service.insert("secrets".into(), json!(ids));
    }
}

/// The port another scenario's API is reached on (its first non-UI port). A required dependency
/// without a definition or without an API cannot be wired: an error in the depending file.
fn dependency_api_port(
    catalog: &Catalog,
    from: &ServiceDef,
    dep: &str,
) -> Result<String, Diagnostic> {
    let Some(dep_def) = catalog.get(ServiceKind::Scenario, dep)? else {
        return Err(from.diagnostic(
            &["dependencies", "scenarios", dep],
            format!(
                "{} requires scenario `{dep}`, which has no definition ({})",
                from.id,
                catalog.layout.definition_path(ServiceKind::Scenario, dep)
            ),
            "add the scenario, or mark the dependency \"required\": false",
        ));
    };
    dep_def
        .ports
        .keys()
        .find(|name| name.as_str() != "ui")
        .cloned()
        .ok_or_else(|| {
            from.diagnostic(
                &["dependencies", "scenarios", dep],
                format!(
                    "{} requires scenario `{dep}`, which declares no API port to reach it on",
                    from.id
                ),
                format!(
                    "declare an API port in {}, or mark the dependency \"required\": false",
                    dep_def.file
                ),
            )
        })
}

/// Puts an analysis error about a profile's scenario or swaps at the right place in bundle.toml.
fn locate_in_profile(config: &BundleConfig, profile: &Profile, err: Diagnostic) -> Diagnostic {
    let decl = &profile.decl;
    let span = if err.message.starts_with("unknown scenario") {
        Some(decl.scenario.span())
    } else {
        decl.swaps
            .iter()
            .find(|(from, to)| {
                err.message.contains(&format!("`{}`", from.get_ref()))
                    || err.message.contains(&format!("`{}`", to.get_ref()))
            })
            .map(|(_, to)| to.span())
    };
    if err.file.is_some() && !err.message.starts_with("unknown scenario") && span.is_none() {
        return err; // an error inside a definition file keeps its own location
    }
    let mut located = config.diagnostic(
        format!("profile `{}`: {}", profile.name, err.message),
        span.unwrap_or(profile.name_span.clone()),
        "here",
    );
    located.help = err.help.clone();
    located
}
