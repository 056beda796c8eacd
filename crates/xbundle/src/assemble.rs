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
//!
//! The manifest is built as a typed [`manifest::Manifest`], never as JSON text. Every value that
//! comes from a definition or from bundle.toml (service and port names, binary names, data
//! directories, migrations, health paths, env names, the profile's env and secret overrides)
//! passes the `manifest` crate's rule for it where it enters, so that a bad value is an error at
//! its file and line; [`manifest::Manifest::validate`] on the result is the safety net, and an
//! error there is a defect of this module. **Invariant:** no rule of the format is restated
//! here.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::rc::Rc;

use manifest::{
    App, Binary, Build, BuildType, EnvMap, Health, HealthType, Ipc, IpcMode, Manifest, Migration,
    PlatformKey, PortRange, PortRequest, Ports, Readiness, ReadinessType, RelativePath,
    RemoteFetch, SchemaVersion, Secret, SecretId, SecretPrompt, Service, ServicePorts, ServiceType,
    Swap, Telemetry,
};
use serde::Serialize;

use crate::analysis::tier::Tier;
use crate::analysis::{Analysis, AppliedSwap, Catalog, Request, analyze};
use crate::config::{BundleConfig, Profile};
use crate::diagnostic::Diagnostic;
use crate::platform::Platform;
use crate::secrets::{self, Plan, PlannedSecret};
use crate::service::{BundleMode, BundleSpec, Port, ServiceDef, ServiceKind};

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
        builds: BTreeMap<&'a str, &'a crate::config::BuildOverride>,
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
        builds: decl
            .builds
            .iter()
            .map(|(k, v)| (k.get_ref().as_str(), v.get_ref()))
            .collect(),
    })
    .expect("fingerprints serialize")
}

fn env_name(name: &str) -> String {
    name.to_ascii_uppercase().replace(['-', '.'], "_")
}

/// Build type guessed from the scenario's setup steps, for a scenario whose `api/` holds no
/// code the pipeline builds (its layout decides otherwise: [`crate::builds::detect_api`]).
fn build_type(def: &ServiceDef) -> BuildType {
    let steps: String = def
        .setup_steps
        .iter()
        .map(|s| s.run.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    if steps.contains("cargo build") {
        BuildType::Rust
    } else if steps.contains("go build") || steps.is_empty() {
        BuildType::Go
    } else if steps.contains("npm ") || steps.contains("pnpm ") {
        BuildType::Npm
    } else if steps.contains("python") || steps.contains("pip ") {
        BuildType::Python
    } else {
        BuildType::Custom
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
    let tier = profile_tier(config, profile)?;
    let platforms = profile_platforms(config, profile, known_platforms)?;
    let request = Request {
        scenario: profile.decl.scenario.get_ref().clone(),
        swaps: profile
            .decl
            .swaps
            .iter()
            .map(|(k, v)| (k.get_ref().clone(), v.get_ref().clone()))
            .collect(),
        tier: Some(tier),
    };
    let analysis =
        analyze(catalog, &request).map_err(|err| locate_in_profile(config, profile, err))?;
    check_min_fitness(config, profile, &analysis, tier)?;
    let plan = secret_plan(catalog, config, profile, &analysis, tier)?;

    let graph = Graph::new(catalog, &analysis)?;
    let mut builder = Builder {
        catalog,
        config,
        profile,
        platforms: &platforms,
        plan: &plan,
        planned: plan.secrets.iter().map(|s| s.id.as_str()).collect(),
        graph: &graph,
        analysis: &analysis,
        templates: Vec::new(),
    };
    let services = builder.services()?;
    builder.check_templates()?;

    let root = &analysis.scenario;
    let root_def = catalog
        .get(ServiceKind::Scenario, root)?
        .expect("the analysis read it");
    let swaps = applied_swaps(catalog, &analysis, profile, tier);
    let secrets: Vec<Secret> = plan.secrets.iter().map(manifest_secret).collect();
    let manifest = Manifest {
        schema_version: SchemaVersion::V0_1,
        target: manifest::Target::Desktop,
        app: App {
            name: root.clone(),
            version: profile
                .decl
                .version
                .as_ref()
                .map(|v| v.get_ref().clone())
                .or(root_def.version.clone())
                .unwrap_or_else(|| "0.1.0".into()),
            description: root_def.description.clone(),
            extra: Default::default(),
        },
        ipc: Ipc {
            mode: IpcMode::LoopbackHttp,
            host: "127.0.0.1".into(),
            port: IPC_PORT,
            auth_token_path: "runtime/auth-token".into(),
            extra: Default::default(),
        },
        telemetry: Telemetry {
            file: "telemetry/events.jsonl".into(),
            upload_url: None,
            extra: Default::default(),
        },
        ports: Some(Ports {
            default_range: Some(port_range(DEFAULT_RANGE)),
            reserved: Some(vec![IPC_PORT]),
            extra: Default::default(),
        }),
        swaps: (!swaps.is_empty()).then_some(swaps),
        secrets: (!secrets.is_empty()).then_some(secrets),
        services,
        code_signing: None,
        extra: Default::default(),
    };
    check_valid(&manifest, profile)?;
    let json = manifest.to_json_pretty();
    if json.len() > manifest::MAX_MANIFEST_BYTES {
        return Err(Diagnostic::error(format!(
            "profile `{}`: the assembled bundle.json is {} bytes long, over the {} the runtime reads",
            profile.name,
            json.len(),
            manifest::MAX_MANIFEST_BYTES
        ))
        .help("bundle fewer services or assets in this profile"));
    }
    let mut files = catalog.recorded();
    // What decides each shipped scenario's build type (`build.type` in bundle.json).
    for scenario in scenario_order(&analysis) {
        let dir = catalog.layout.scenarios.join(&scenario);
        files.extend(
            crate::builds::probed_files(&dir)
                .iter()
                .map(ToString::to_string),
        );
    }
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

fn profile_tier(config: &BundleConfig, profile: &Profile) -> Result<Tier, Diagnostic> {
    let tier = &profile.decl.tier;
    tier.get_ref()
        .parse()
        .map_err(|err: String| config.diagnostic(err, tier.span(), "this tier"))
}

/// The profile's platforms: named ones must exist; none named means every known platform.
pub fn profile_platforms(
    config: &BundleConfig,
    profile: &Profile,
    known_platforms: &[Platform],
) -> Result<Vec<Platform>, Diagnostic> {
    let mut platforms = Vec::new();
    for name in &profile.decl.platforms {
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
    Ok(platforms)
}

/// The tier's fitness after swaps must reach min-fitness.
fn check_min_fitness(
    config: &BundleConfig,
    profile: &Profile,
    analysis: &Analysis,
    tier: Tier,
) -> Result<(), Diagnostic> {
    let report = &analysis.tiers[&tier];
    let Some(min) = &profile.decl.min_fitness else {
        return Ok(());
    };
    if report.score >= *min.get_ref() {
        return Ok(());
    }
    let better: Vec<String> = analysis
        .swaps
        .iter()
        .take(3)
        .map(|s| {
            format!(
                "{}={} ({})",
                s.from,
                s.to,
                crate::units::impact(s.impact_points)
            )
        })
        .collect();
    let blockers: Vec<String> = report.blockers.iter().map(|b| b.node.clone()).collect();
    Err(config
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
        }))
}

/// The secret plan of `profile` alone (what `secrets:<profile>` writes): the analysis with the
/// profile's swaps, its fitness gate and the plan, without building the manifest. Returns the
/// plan and the files read (or looked for).
pub fn profile_secret_plan(
    catalog: &Catalog,
    config: &BundleConfig,
    profile: &Profile,
) -> Result<(Plan, Vec<String>), Diagnostic> {
    let tier = profile_tier(config, profile)?;
    let request = Request {
        scenario: profile.decl.scenario.get_ref().clone(),
        swaps: profile
            .decl
            .swaps
            .iter()
            .map(|(k, v)| (k.get_ref().clone(), v.get_ref().clone()))
            .collect(),
        tier: Some(tier),
    };
    let analysis =
        analyze(catalog, &request).map_err(|err| locate_in_profile(config, profile, err))?;
    check_min_fitness(config, profile, &analysis, tier)?;
    let plan = secret_plan(catalog, config, profile, &analysis, tier)?;
    Ok((plan, catalog.recorded()))
}

/// The profile's secret plan; an infrastructure secret that would ship is an error.
fn secret_plan(
    catalog: &Catalog,
    config: &BundleConfig,
    profile: &Profile,
    analysis: &Analysis,
    tier: Tier,
) -> Result<Plan, Diagnostic> {
    let plan = secrets::plan_for_profile(catalog, analysis, tier, config, profile)?;
    let context = format!("profile `{}`", profile.name);
    if let Some(diagnostic) = secrets::violations_error(&plan.violations, Some(&context)) {
        return Err(diagnostic);
    }
    Ok(plan)
}

/// The required resources after swaps, with their definitions, and which scenario uses which.
struct Graph {
    resources: BTreeMap<String, Option<Rc<ServiceDef>>>,
    uses: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    fn new(catalog: &Catalog, analysis: &Analysis) -> Result<Graph, Diagnostic> {
        let mut resources = BTreeMap::new();
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
        Ok(Graph { resources, uses })
    }

    /// How a resource ships (`deployment.bundle`), when its definition says.
    fn spec(&self, name: &str) -> Option<&BundleSpec> {
        self.resources
            .get(name)
            .and_then(|d| d.as_ref())
            .and_then(|d| d.deployment.as_ref())
            .and_then(|d| d.bundle.as_ref())
    }

    fn mode_of(&self, name: &str) -> BundleMode {
        self.spec(name).map_or(BundleMode::Service, |b| b.mode)
    }
}

/// An env template to check against the secret plan, and where it was written.
struct Template {
    service: String,
    key: String,
    value: String,
    /// Set when the template comes from the profile (bundle.toml).
    span: Option<Range<usize>>,
}

/// Builds the services of one profile, each value checked by the manifest's rules where it
/// enters (a definition file or bundle.toml), so that a bad value is a located error.
struct Builder<'a> {
    catalog: &'a Catalog,
    config: &'a BundleConfig,
    profile: &'a Profile,
    platforms: &'a [Platform],
    plan: &'a Plan,
    planned: BTreeSet<&'a str>,
    graph: &'a Graph,
    analysis: &'a Analysis,
    templates: Vec<Template>,
}

impl Builder<'_> {
    /// Every service, in dependency order: resource services first (everything else depends on
    /// them), then per scenario its API, and the root's UI.
    fn services(&mut self) -> Result<Vec<Service>, Diagnostic> {
        let mut services = Vec::new();
        for (name, def) in &self.graph.resources {
            if self.graph.mode_of(name) == BundleMode::Service {
                services.push(self.resource_service(name, def.as_deref())?);
            }
        }
        let root = self.analysis.scenario.clone();
        for scenario in scenario_order(self.analysis) {
            let Some(def) = self.catalog.get(ServiceKind::Scenario, &scenario)? else {
                continue;
            };
            let api_ports: Vec<(&String, &Port)> = def
                .ports
                .iter()
                .filter(|(name, _)| name.as_str() != "ui")
                .collect();
            if !api_ports.is_empty() {
                services.push(self.api_service(&scenario, &def, &api_ports)?);
            }
            if scenario == root
                && let Some(ui) = def.ports.get("ui")
            {
                services.push(self.ui_service(&scenario, &def, ui, api_ports.first().copied())?);
            }
        }
        let root_def = self
            .catalog
            .get(ServiceKind::Scenario, &root)?
            .expect("the analysis read it");
        if !root_def.ports.keys().any(|name| name != "ui") {
            return Err(root_def.diagnostic(
                &["ports"],
                format!("profile `{}`: scenario {root} declares no API port, so the bundle would hold none of its code", self.profile.name),
                "declare the API's port in service.json, e.g. \"ports\": {\"api\": {\"env_var\": \"API_PORT\", \"range\": \"15000-19999\"}}",
            ));
        }
        if services.is_empty() {
            return Err(self
                .config
                .diagnostic(
                    format!(
                        "profile `{}`: scenario {root} has nothing to run (no ports and no resources)",
                        self.profile.name
                    ),
                    self.profile.decl.scenario.span(),
                    "this scenario",
                )
                .help("declare the scenario's ports (api, ui) in its service.json"));
        }
        Ok(services)
    }

    /// A service id derived from a scenario or resource name must be a manifest id. The error
    /// points at the profile's scenario, or at the definition that requires the node.
    fn service_id(&self, node: &str, id: String) -> Result<String, Diagnostic> {
        let Err(err) = manifest::check_id(&id) else {
            return Ok(id);
        };
        let message = format!(
            "profile `{}`: `{node}` cannot become service `{id}` of the bundle: {err}",
            self.profile.name
        );
        let help = "scenario and resource names become service ids, file names and template names in the bundle: rename it";
        if node == format!("scenario:{}", self.analysis.scenario) {
            return Err(self
                .config
                .diagnostic(message, self.profile.decl.scenario.span(), "this scenario")
                .help(help));
        }
        let (kind, name) = node.split_once(':').unwrap_or(("", node));
        let requirer = self
            .analysis
            .dag
            .edges
            .iter()
            .find(|edge| edge.to == node)
            .and_then(|edge| edge.from.strip_prefix("scenario:"));
        if let Some(requirer) = requirer
            && let Ok(Some(def)) = self.catalog.get(ServiceKind::Scenario, requirer)
        {
            let section = if kind == "resource" {
                "resources"
            } else {
                "scenarios"
            };
            return Err(def.diagnostic(&["dependencies", section, name], message, help));
        }
        Err(Diagnostic::error(message).help(help))
    }

    fn binaries(&self, service: &str, name: &str) -> BTreeMap<PlatformKey, Binary> {
        self.platforms
            .iter()
            .map(|platform| {
                (
                    PlatformKey::new(platform.id.clone()),
                    binary(format!(
                        "bin/{service}/{}/{name}{}",
                        platform.id, platform.exe_suffix
                    )),
                )
            })
            .collect()
    }

    fn secrets_of(&self, owner: &str) -> Vec<String> {
        self.plan
            .secrets
            .iter()
            .filter(|s| s.owner == owner)
            .map(|s| s.id.clone())
            .collect()
    }

    /// A service's `secrets`: `ids`, plus every planned secret its env embeds (`${secret.ID}`,
    /// from the profile or from what a resource provides), which the runtime can substitute
    /// only for secrets the service lists.
    fn service_secrets(&self, mut ids: Vec<String>, env: &EnvMap) -> Option<Vec<SecretId>> {
        for template in env.values() {
            ids.extend(
                secrets::referenced_secrets(template)
                    .into_iter()
                    .filter(|id| self.planned.contains(id))
                    .map(str::to_string),
            );
        }
        ids.sort();
        ids.dedup();
        (!ids.is_empty()).then(|| ids.into_iter().map(SecretId::new).collect())
    }

    fn remember_templates(&mut self, service: &str, env: &EnvMap) {
        for (key, value) in env {
            self.templates.push(Template {
                service: service.to_owned(),
                key: key.clone(),
                value: value.clone(),
                span: None,
            });
        }
    }

    /// A resource shipped as a process (`deployment.bundle.mode = "service"`, the default).
    fn resource_service(
        &mut self,
        name: &str,
        def: Option<&ServiceDef>,
    ) -> Result<Service, Diagnostic> {
        let id = self.service_id(&format!("resource:{name}"), name.to_owned())?;
        let spec = self.graph.spec(name).cloned().unwrap_or_default();
        let located = |path: &[&str], message: String, help: &str| match def {
            Some(def) => def.diagnostic(path, message, help),
            None => Diagnostic::error(message).help(help),
        };
        let binary_name = spec.binary.clone().unwrap_or_else(|| name.to_owned());
        RelativePath::name(&binary_name).map_err(|err| {
            located(
                &["deployment", "bundle", "binary"],
                format!("resource {name}: binary `{binary_name}`: {err}"),
                "the binary is a file name inside the bundle's bin/<service>/<platform>/",
            )
        })?;
        let (port_name, range) = spec.port.clone().unwrap_or(("main".into(), DEFAULT_RANGE));
        manifest::check_id(&port_name).map_err(|err| {
            located(
                &["deployment", "bundle", "port"],
                format!("resource {name}: port name: {err}"),
                "port names appear in templates (${service.port}) and must be ids",
            )
        })?;
        let data_dirs = if spec.data_dirs.is_empty() {
            vec![name.to_owned()]
        } else {
            spec.data_dirs.clone()
        };
        for dir in &data_dirs {
            RelativePath::new(dir).map_err(|err| {
                located(
                    &["deployment", "bundle", "data_dirs"],
                    format!("resource {name}: data directory `{dir}`: {err}"),
                    "data directories are relative to the app data directory",
                )
            })?;
        }
        let mut env: EnvMap = spec.env.clone();
        env.entry(format!("{}_PORT", env_name(name)))
            .or_insert(format!("${{{name}.{port_name}}}"));
        for key in env.keys().chain(spec.provides.keys()) {
            manifest::ident::check_env_name(key).map_err(|err| {
                located(
                    &["deployment", "bundle"],
                    format!("resource {name}: {err}"),
                    "environment variable names may not be empty or hold `=`",
                )
            })?;
        }
        for (key, value) in env.iter().chain(&spec.provides) {
            manifest::ident::check_exec_text(value).map_err(|err| {
                located(
                    &["deployment", "bundle"],
                    format!("resource {name}: the value of {key}: {err}"),
                    "remove the NUL (\\u0000) from the value",
                )
            })?;
        }
        for arg in &spec.args {
            manifest::ident::check_exec_text(arg).map_err(|err| {
                located(
                    &["deployment", "bundle", "args"],
                    format!("resource {name}: an argument {err}"),
                    "remove the NUL (\\u0000) from the argument",
                )
            })?;
        }
        let migrations = spec
            .migrations
            .iter()
            .map(|value| {
                let migration: Migration = serde_json::from_value(value.clone()).map_err(|err| {
                    located(
                        &["deployment", "bundle", "migrations"],
                        format!("resource {name}: a migration is not a bundle.json migration: {err}"),
                        "write {\"version\": \"1\", \"command\": [\"./tool\", \"migrate\"], \"run_on\": \"always\"}",
                    )
                })?;
                if let Some(program) = migration.command.first()
                    && let Err(err) = manifest::path::check_program(program)
                {
                    return Err(located(
                        &["deployment", "bundle", "migrations"],
                        format!("resource {name}: migration program `{program}`: {err}"),
                        "a program is a name on PATH or a path inside the bundle (./tool)",
                    ));
                }
                let texts = migration
                    .command
                    .iter()
                    .chain(migration.env.iter().flatten().map(|(_, value)| value));
                for text in texts {
                    manifest::ident::check_exec_text(text).map_err(|err| {
                        located(
                            &["deployment", "bundle", "migrations"],
                            format!("resource {name}: migration {}: {err}", migration.version),
                            "remove the NUL (\\u0000) from its command and env",
                        )
                    })?;
                }
                Ok(migration)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.remember_templates(name, &env);
        let secrets = self.service_secrets(self.secrets_of(&format!("resource:{name}")), &env);
        let mut binaries = self.binaries(name, &binary_name);
        if !spec.args.is_empty() {
            for binary in binaries.values_mut() {
                binary.args = Some(spec.args.clone());
            }
        }
        let http_path = spec.health_path.clone().unwrap_or("/health".into());
        manifest::url::check_http_path(&http_path).map_err(|err| {
            located(
                &["deployment", "bundle", "health"],
                format!("resource {name}: health path `{http_path}`: {err}"),
                "write a path such as \"/health\"",
            )
        })?;
        let (health, readiness) = match spec.health.as_deref() {
            Some("http") => (
                Health {
                    path: Some(http_path),
                    ..check(HealthType::Http, &port_name)
                },
                readiness(ReadinessType::HealthSuccess, None, 30000),
            ),
            _ => (
                check(HealthType::Tcp, &port_name),
                readiness(ReadinessType::PortOpen, Some(&port_name), 30000),
            ),
        };
        Ok(Service {
            description: Some(
                def.and_then(|d| d.description.clone())
                    .unwrap_or_else(|| format!("{name} (sized by the built-in class table)")),
            ),
            binaries,
            env: Some(env),
            secrets,
            data_dirs: Some(data_dirs),
            ports: Some(requested(vec![(port_name.clone(), range)])),
            health,
            readiness,
            migrations: (!migrations.is_empty()).then_some(migrations),
            critical: Some(true),
            ..service(id, ServiceType::Resource)
        })
    }

    /// A scenario's API (`<scenario>-api`): its ports, data directory, the environment the
    /// resources it uses provide, the URLs of the scenarios it depends on, its secrets.
    fn api_service(
        &mut self,
        scenario: &str,
        def: &ServiceDef,
        api_ports: &[(&String, &Port)],
    ) -> Result<Service, Diagnostic> {
        let id = self.service_id(&format!("scenario:{scenario}"), format!("{scenario}-api"))?;
        let root = scenario == self.analysis.scenario;
        let used: Vec<String> = self
            .graph
            .uses
            .get(scenario)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let scenario_deps: Vec<String> = self
            .analysis
            .dag
            .edges
            .iter()
            .filter(|e| !e.optional && e.from == format!("scenario:{scenario}"))
            .filter_map(|e| e.to.strip_prefix("scenario:"))
            .map(str::to_string)
            .collect();
        let mut env = EnvMap::new();
        let mut ports = Vec::new();
        for (port_name, port) in api_ports {
            manifest::check_id(port_name).map_err(|err| {
                def.diagnostic(
                    &["ports", port_name.as_str()],
                    format!("port name of {scenario}: {err}"),
                    "port names appear in templates (${service.port}) and must be ids",
                )
            })?;
            let range = port
                .range
                .or(port.port.map(|p| (p, p)))
                .unwrap_or(DEFAULT_RANGE);
            ports.push((port_name.to_string(), range));
            let variable = port
                .env_var
                .clone()
                .unwrap_or_else(|| format!("{}_PORT", env_name(port_name)));
            env.insert(variable, format!("${{{id}.{port_name}}}"));
        }
        env.insert("DATA_DIR".into(), format!("${{data}}/{scenario}"));
        for resource in &used {
            let provides = self
                .graph
                .spec(resource)
                .map(|b| b.provides.clone())
                .unwrap_or_default();
            let provides =
                if provides.is_empty() && self.graph.mode_of(resource) == BundleMode::Service {
                    BTreeMap::from([(
                        format!("{}_URL", env_name(resource)),
                        format!("tcp://127.0.0.1:${{{resource}.main}}"),
                    )])
                } else {
                    provides
                };
            for (key, template) in provides {
                env.insert(key, template.replace("${scenario}", scenario));
            }
        }
        for dep in &scenario_deps {
            let port = dependency_api_port(self.catalog, def, dep)?;
            env.insert(
                format!("{}_API_URL", env_name(dep)),
                format!("http://127.0.0.1:${{{dep}-api.{port}}}"),
            );
        }
        self.remember_templates(&id, &env);
        if root {
            for (key, template) in &self.profile.decl.env {
                manifest::ident::check_env_name(key.get_ref()).map_err(|err| {
                    self.config
                        .diagnostic(
                            format!("profile `{}`: env: {err}", self.profile.name),
                            key.span(),
                            "this variable",
                        )
                        .help("environment variable names may not be empty or hold `=` or NUL")
                })?;
                manifest::ident::check_exec_text(template.get_ref()).map_err(|err| {
                    self.config
                        .diagnostic(
                            format!(
                                "profile `{}`: env {}: {err}",
                                self.profile.name,
                                key.get_ref()
                            ),
                            template.span(),
                            "this value",
                        )
                        .help("remove the NUL from the value")
                })?;
                env.insert(key.get_ref().clone(), template.get_ref().clone());
                self.templates.push(Template {
                    service: id.clone(),
                    key: key.get_ref().clone(),
                    value: template.get_ref().clone(),
                    span: Some(template.span()),
                });
            }
        }
        // Secrets: its own and those of the resources it uses that are not services (an
        // embedded or external resource's key is used by the consumer itself).
        let mut secret_ids = self.secrets_of(&format!("scenario:{scenario}"));
        for resource in &used {
            if self.graph.mode_of(resource) != BundleMode::Service {
                secret_ids.extend(self.secrets_of(&format!("resource:{resource}")));
            }
        }
        let secrets = self.service_secrets(secret_ids, &env);
        let check_settings = def.health.checks.iter().find(|c| {
            c.target.as_deref().is_some_and(|t| t.contains("API_PORT")) || c.name.contains("api")
        });
        let path = health_path(def, "api", "/health")?;
        let mut dependencies: Vec<manifest::ServiceId> = used
            .iter()
            .filter(|r| self.graph.mode_of(r) == BundleMode::Service)
            .map(|r| r.as_str().into())
            .collect();
        dependencies.extend(
            scenario_deps
                .iter()
                .map(|dep| manifest::ServiceId::new(format!("{dep}-api"))),
        );
        Ok(Service {
            description: def.description.clone(),
            binaries: self.binaries(&id, &id),
            build: {
                let chosen = crate::bundles::build_of(
                    &self.catalog.layout.root,
                    &self.catalog.layout.scenarios.join(scenario),
                    self.profile,
                    &id,
                );
                let kind = match chosen.kind {
                    Some(crate::builds::ApiBuild::Go) => Some(BuildType::Go),
                    Some(crate::builds::ApiBuild::Rust) => Some(BuildType::Rust),
                    None if chosen.none => None,
                    None => Some(build_type(def)),
                };
                kind.map(|kind| Build {
                    kind,
                    source_dir: chosen.dir.to_string(),
                    entry_point: chosen.package.clone().or(chosen.bin.clone()),
                    output_pattern: Some(id.clone()),
                    args: None,
                    env: None,
                    extra: Default::default(),
                })
            },
            env: Some(env),
            secrets,
            data_dirs: Some(vec![scenario.to_owned()]),
            log_dir: Some(format!("logs/{id}")),
            ports: Some(requested(ports)),
            health: Health {
                path: Some(path),
                interval_ms: Some(
                    check_settings
                        .and_then(|c| c.interval_ms)
                        .map_or(500, |i| i.min(5000)),
                ),
                timeout_ms: Some(check_settings.and_then(|c| c.timeout_ms).unwrap_or(2000)),
                ..check(HealthType::Http, api_ports[0].0)
            },
            readiness: readiness(
                ReadinessType::HealthSuccess,
                None,
                def.health.startup_grace_ms.map_or(30000, |g| g.max(30000)),
            ),
            dependencies: (!dependencies.is_empty()).then_some(dependencies),
            critical: Some(true),
            ..service(id, ServiceType::ApiBinary)
        })
    }

    /// The root scenario's UI (`<scenario>-ui`): served in-process by the runtime from
    /// `ui/<scenario>`, `/api` proxied to the API.
    fn ui_service(
        &mut self,
        scenario: &str,
        def: &ServiceDef,
        ui: &Port,
        api_port: Option<(&String, &Port)>,
    ) -> Result<Service, Diagnostic> {
        let id = self.service_id(&format!("scenario:{scenario}"), format!("{scenario}-ui"))?;
        let api_id = format!("{scenario}-api");
        let range = ui
            .range
            .or(ui.port.map(|p| (p, p)))
            .unwrap_or(DEFAULT_RANGE);
        let path = health_path(def, "ui", "/")?;
        let api = api_port.map(|(port, _)| {
            (
                EnvMap::from([(
                    "API_URL".to_string(),
                    format!("http://127.0.0.1:${{{api_id}.{port}}}"),
                )]),
                vec![manifest::ServiceId::new(api_id.clone())],
            )
        });
        let (env, dependencies) = match api {
            Some((env, dependencies)) => (Some(env), Some(dependencies)),
            None => (None, None),
        };
        Ok(Service {
            description: Some(
                "The scenario's UI, served by the runtime with /api proxied to the API".into(),
            ),
            binaries: self
                .platforms
                .iter()
                .map(|platform| {
                    (
                        PlatformKey::new(platform.id.clone()),
                        binary(format!("ui/{scenario}")),
                    )
                })
                .collect(),
            env,
            ports: Some(requested(vec![("ui".into(), range)])),
            health: Health {
                path: Some(path),
                ..check(HealthType::Http, "ui")
            },
            readiness: readiness(ReadinessType::DependenciesReady, None, 30000),
            dependencies,
            critical: Some(false),
            ..service(id, ServiceType::UiBundle)
        })
    }

    /// Env templates may not use secrets the bundle leaves out. A template of the profile's
    /// `env` is pointed at in bundle.toml.
    fn check_templates(&self) -> Result<(), Diagnostic> {
        let excluded: BTreeMap<&str, &str> = self
            .plan
            .excluded
            .iter()
            .map(|e| (e.id.as_str(), e.reason.as_str()))
            .collect();
        for template in &self.templates {
            for id in secrets::referenced_secrets(&template.value) {
                let (message, help) = if let Some(reason) = excluded.get(id) {
                    (
                        format!(
                            "profile `{}`: env {} of service {} refers to secret `{id}`, which the bundle excludes ({reason})",
                            self.profile.name, template.key, template.service
                        ),
                        "remove the reference, or keep the secret in the bundle (swap differently or reclassify it)".to_string(),
                    )
                } else if !self.planned.contains(id) {
                    (
                        format!(
                            "profile `{}`: env {} of service {} refers to unknown secret `{id}`",
                            self.profile.name, template.key, template.service
                        ),
                        format!(
                            "declared secrets in this bundle: {}",
                            self.planned.iter().copied().collect::<Vec<_>>().join(", ")
                        ),
                    )
                } else {
                    continue;
                };
                let diagnostic = match &template.span {
                    Some(span) => self.config.diagnostic(message, span.clone(), "this value"),
                    None => Diagnostic::error(message),
                };
                return Err(diagnostic.help(help));
            }
        }
        Ok(())
    }
}

/// The health endpoint a scenario declares for `port` (`lifecycle.health.endpoints`), checked
/// as an HTTP path, or `default`.
fn health_path(def: &ServiceDef, port: &str, default: &str) -> Result<String, Diagnostic> {
    let Some(path) = def.health.endpoints.get(port) else {
        return Ok(default.to_owned());
    };
    manifest::url::check_http_path(path).map_err(|err| {
        def.diagnostic(
            &["lifecycle", "health", "endpoints", port],
            format!("health endpoint `{path}` of {}: {err}", def.id),
            "write a path such as \"/health\"",
        )
    })?;
    Ok(path.clone())
}

fn service(id: String, kind: ServiceType) -> Service {
    Service {
        id: manifest::ServiceId::new(id),
        kind,
        description: None,
        binaries: BTreeMap::new(),
        build: None,
        env: None,
        secrets: None,
        data_dirs: None,
        log_dir: None,
        ports: None,
        health: check(HealthType::Tcp, "main"),
        readiness: readiness(ReadinessType::DependenciesReady, None, 30000),
        dependencies: None,
        migrations: None,
        assets: None,
        gpu: None,
        critical: None,
        metadata: None,
        extra: Default::default(),
    }
}

fn binary(path: String) -> Binary {
    Binary {
        path,
        args: None,
        env: None,
        cwd: None,
        extra: Default::default(),
    }
}

fn port_range((min, max): (u16, u16)) -> PortRange {
    PortRange { min, max }
}

fn requested(ports: Vec<(String, (u16, u16))>) -> ServicePorts {
    ServicePorts {
        requested: ports
            .into_iter()
            .map(|(name, range)| PortRequest {
                name: manifest::PortName::new(name),
                range: port_range(range),
                requires_socket: None,
                extra: Default::default(),
            })
            .collect(),
        extra: Default::default(),
    }
}

/// A health check of `kind` on `port`, every 500 ms, 2 s timeout, 3 retries.
fn check(kind: HealthType, port: &str) -> Health {
    Health {
        kind,
        path: None,
        port_name: Some(port.into()),
        command: None,
        pattern: None,
        interval_ms: Some(500),
        timeout_ms: Some(2000),
        retries: Some(3),
        extra: Default::default(),
    }
}

fn readiness(kind: ReadinessType, port: Option<&str>, timeout_ms: u64) -> Readiness {
    Readiness {
        kind,
        port_name: port.map(Into::into),
        pattern: None,
        timeout_ms: Some(timeout_ms),
        extra: Default::default(),
    }
}

/// A planned secret as bundle.json carries it.
fn manifest_secret(secret: &PlannedSecret) -> Secret {
    debug_assert!(secret.class != secrets::SecretClass::Infrastructure);
    Secret {
        id: SecretId::new(secret.id.clone()),
        class: secret.class,
        description: secret.description.clone(),
        format: secret.prompt.as_ref().and_then(|p| p.format.clone()),
        required: Some(secret.required),
        prompt: secret.prompt.as_ref().map(|prompt| SecretPrompt {
            label: prompt.label.clone(),
            description: prompt.description.clone(),
            hint: None,
            extra: Default::default(),
        }),
        generator: secret.generator.as_ref().map(|g| g.to_generator()),
        fetch: secret.fetch.as_ref().map(|fetch| RemoteFetch {
            url: fetch.url.clone(),
            timeout_ms: Some(fetch.timeout_ms),
            headers: None,
            extra: Default::default(),
        }),
        target: secret.target.clone(),
        extra: Default::default(),
    }
}

/// The swaps applied, once each: chains (postgres=sqlite, sqlite=local-index) appear from the
/// resource the scenarios use to what replaces it in the end.
fn applied_swaps(
    catalog: &Catalog,
    analysis: &Analysis,
    profile: &Profile,
    tier: Tier,
) -> Vec<Swap> {
    let mut applied: Vec<AppliedSwap> = analysis
        .dag
        .nodes
        .iter()
        .flat_map(|node| {
            node.replaces.iter().map(move |original| AppliedSwap {
                from: original.clone(),
                to: node.name.clone(),
            })
        })
        .collect();
    applied.sort_by(|a, b| a.from.cmp(&b.from));
    applied
        .iter()
        .map(|swap| {
            let option = catalog
                .get(ServiceKind::Resource, &swap.from)
                .ok()
                .flatten()
                .and_then(|d| {
                    d.deployment.as_ref().and_then(|dep| {
                        dep.swappable_with.iter().find(|s| s.id == swap.to).cloned()
                    })
                });
            let mut reason = format!("profile {} targets {tier}", profile.name);
            let mut limitations = None;
            if let Some(option) = option {
                if let Some(relationship) = option.relationship {
                    reason = format!("{relationship} for {tier} (profile {})", profile.name);
                }
                limitations = option.notes;
            }
            Swap {
                original: swap.from.clone(),
                replacement: swap.to.clone(),
                reason: Some(reason),
                limitations,
                extra: Default::default(),
            }
        })
        .collect()
}

/// The manifest's own validation: every value was checked where it entered, so an error here
/// is a defect of the assembly, reported with its JSON path.
fn check_valid(manifest: &Manifest, profile: &Profile) -> Result<(), Diagnostic> {
    let problems: Vec<String> = manifest
        .validate()
        .into_iter()
        .filter(|p| p.is_error())
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    Err(Diagnostic::error(format!(
        "profile `{}`: the assembled bundle.json is invalid: {}",
        profile.name,
        problems.join("; ")
    ))
    .help("this is a defect of the definitions it was assembled from; fix the named service"))
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
