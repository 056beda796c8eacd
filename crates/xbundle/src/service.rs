//! `.vrooli/service.json`: the typed, lenient model of scenario and resource definitions.
//!
//! Reading is lenient where real files are messy and strict where the pipeline uses a value:
//! unknown fields are ignored; the known variants of resource dependencies are understood
//! (a map of name -> spec, or nested one level under `required` / `optional` as a map, a list of
//! `{name, …}` objects or a list of names, plus a `details` map); a value the pipeline needs but
//! cannot use (a port range that is not `"A-B"`, `required: "yes"`, a fitness score above 1, …) is
//! a [`Diagnostic`] naming the file, the line and the problem. No input makes this module panic.
//!
//! Lines are found by walking the JSON text along the value's path (the first occurrence of each
//! key after the previous one), which is exact for ordinary files and a close hint otherwise.

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::analysis::tier::Tier;
use crate::diagnostic::Diagnostic;

/// Scenario or resource.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceKind {
    Scenario,
    Resource,
}

/// A named port: `ports.api = {env_var: "API_PORT", range: "15000-19999"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Port {
    pub env_var: Option<String>,
    /// Inclusive range.
    pub range: Option<(u16, u16)>,
    pub port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResourceDep {
    pub required: bool,
    pub enabled: bool,
    pub kind: Option<String>,
    pub purpose: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScenarioDep {
    pub required: bool,
    pub version: Option<String>,
    pub version_range: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    pub name: String,
    pub kind: String,
    pub target: Option<String>,
    pub critical: bool,
    pub timeout_ms: Option<u64>,
    pub interval_ms: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Health {
    /// Port name -> path, e.g. `api -> /health`.
    pub endpoints: BTreeMap<String, String>,
    pub checks: Vec<HealthCheck>,
    pub startup_grace_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    pub name: String,
    pub run: String,
}

/// GPU need of a node, ordered by strength.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum GpuNeed {
    #[default]
    None,
    Optional,
    Required,
}

/// Network need of a node, ordered by strength.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkNeed {
    #[default]
    Offline,
    Optional,
    Required,
}

impl std::fmt::Display for GpuNeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GpuNeed::None => "none",
            GpuNeed::Optional => "optional",
            GpuNeed::Required => "required",
        })
    }
}

impl std::fmt::Display for NetworkNeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NetworkNeed::Offline => "offline",
            NetworkNeed::Optional => "optional",
            NetworkNeed::Required => "required",
        })
    }
}

/// What a node needs to run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Footprint {
    pub ram_mb: u64,
    pub disk_mb: u64,
    pub cpu_cores: f64,
    pub gpu: GpuNeed,
    pub network: NetworkNeed,
}

/// `platform_support.<tier>`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TierSupport {
    pub supported: bool,
    /// 0.0 ..= 1.0
    pub fitness_score: f64,
    pub reason: Option<String>,
}

/// `swappable_with[]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SwapOption {
    pub id: String,
    pub relationship: Option<String>,
    pub notes: Option<String>,
}

/// How a resource ships in a bundle (`deployment.bundle`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BundleMode {
    /// A process of its own, supervised by the runtime (the default).
    #[default]
    Service,
    /// Inside the consuming service (a library, a file): no service of its own.
    Embedded,
    /// Reached over the network (a hosted API): no service of its own.
    External,
}

/// `deployment.bundle`: what the assembly needs to turn a resource into bundle.json services.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BundleSpec {
    pub mode: BundleMode,
    /// Binary name (default: the resource's id).
    pub binary: Option<String>,
    pub args: Vec<String>,
    /// The port it listens on: name and range.
    pub port: Option<(String, (u16, u16))>,
    /// `tcp` (default for services with a port), `http` (with `health_path`) or `command`.
    pub health: Option<String>,
    pub health_path: Option<String>,
    /// Its own environment (templates).
    pub env: BTreeMap<String, String>,
    /// Environment given to every service that uses it (templates), e.g. `DATABASE_URL`.
    pub provides: BTreeMap<String, String>,
    pub data_dirs: Vec<String>,
    pub migrations: Vec<Value>,
}

/// The `deployment` block.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Deployment {
    pub bundle: Option<BundleSpec>,
    /// A class of the built-in table this resource belongs to (for tiers it does not describe).
    pub class: Option<String>,
    pub footprint: Option<Footprint>,
    pub platform_support: BTreeMap<Tier, TierSupport>,
    pub swappable_with: Vec<SwapOption>,
    /// Secret declarations, read by the secrets stage.
    pub secrets: Vec<Value>,
}

/// One parsed `service.json`.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceDef {
    /// How the file is named in diagnostics (root-relative).
    pub file: Utf8PathBuf,
    /// The directory name: the id other files refer to.
    pub id: String,
    pub name: Option<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub version: Option<String>,
    pub kind: ServiceKind,
    pub ports: BTreeMap<String, Port>,
    pub resources: BTreeMap<String, ResourceDep>,
    pub scenarios: BTreeMap<String, ScenarioDep>,
    pub health: Health,
    pub setup_steps: Vec<Step>,
    pub deployment: Option<Deployment>,
    /// Things read leniently that a user may want to know about.
    pub notes: Vec<String>,
    /// The file's text, for diagnostics that point into it later (secrets, assembly).
    #[serde(skip)]
    pub source: String,
}

impl ServiceDef {
    /// A diagnostic located at `path` inside this definition.
    pub fn diagnostic(
        &self,
        path: &[&str],
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> Diagnostic {
        let offset = locate(&self.source, path);
        Diagnostic::error(message)
            .in_file(&self.file, &self.source)
            .at(offset..offset, "here")
            .help(help)
    }
}

/// Reads `source` (the text of `file`) as the service definition of `id`.
pub fn parse(
    source: &str,
    file: &Utf8Path,
    id: &str,
    expected: ServiceKind,
) -> Result<ServiceDef, Diagnostic> {
    let reader = Reader { source, file };
    let root: Value = serde_json::from_str(source).map_err(|err| {
        let offset = offset_of(source, err.line(), err.column());
        Diagnostic::error(format!("not valid JSON: {err}"))
            .in_file(file, source)
            .at(offset..offset, "here")
            .help("fix the JSON syntax at the marked position")
    })?;
    let Value::Object(top) = &root else {
        return Err(reader.error(
            &[],
            "the file must hold a JSON object",
            "a service.json starts with `{`",
        ));
    };
    let service = match top.get("service") {
        None => &Map::new(),
        Some(Value::Object(service)) => service,
        Some(_) => {
            return Err(reader.error(
                &["service"],
                "`service` must be an object",
                "write `\"service\": {\"name\": …}`",
            ));
        }
    };
    let text = |key: &str| service.get(key).and_then(Value::as_str).map(str::to_string);
    let mut notes = Vec::new();
    let kind = match service.get("type").and_then(Value::as_str) {
        Some("resource") => ServiceKind::Resource,
        Some("scenario") => ServiceKind::Scenario,
        _ => expected,
    };
    if kind != expected {
        notes.push(format!(
            "declares service.type {:?} but lives where {:?}s do",
            kind, expected
        ));
    }
    let name = text("name");
    if let Some(name) = &name
        && name != id
    {
        notes.push(format!(
            "service.name `{name}` differs from its directory `{id}`; the directory name is used"
        ));
    }
    let mut def = ServiceDef {
        file: file.to_path_buf(),
        id: id.to_string(),
        name,
        display_name: text("displayName"),
        description: text("description"),
        version: text("version"),
        kind: expected,
        ports: BTreeMap::new(),
        resources: BTreeMap::new(),
        scenarios: BTreeMap::new(),
        health: Health::default(),
        setup_steps: Vec::new(),
        deployment: None,
        notes,
        source: source.to_string(),
    };
    if let Some(ports) = top.get("ports") {
        def.ports = reader.ports(ports)?;
    }
    if let Some(dependencies) = top.get("dependencies") {
        let Value::Object(dependencies) = dependencies else {
            return Err(reader.error(
                &["dependencies"],
                "`dependencies` must be an object",
                "write `\"dependencies\": {\"resources\": {…}, \"scenarios\": {…}}`",
            ));
        };
        if let Some(resources) = dependencies.get("resources") {
            def.resources = reader.resources(resources, &mut def.notes)?;
        }
        if let Some(scenarios) = dependencies.get("scenarios") {
            def.scenarios = reader.scenarios(scenarios)?;
        }
        // Names become directory names under scenarios/ and resources/: no paths.
        let names = def
            .resources
            .keys()
            .map(|n| ("resources", n))
            .chain(def.scenarios.keys().map(|n| ("scenarios", n)));
        for (kind, name) in names {
            if !crate::config::is_plain_name(name) {
                return Err(reader.error(
                    &["dependencies", kind, name],
                    &format!("`{name}` is not a {} name", &kind[..kind.len() - 1]),
                    "dependencies name a directory under scenarios/ or resources/, without `/` or `..`",
                ));
            }
        }
    }
    if let Some(Value::Object(lifecycle)) = top.get("lifecycle") {
        if let Some(health) = lifecycle.get("health") {
            def.health = reader.health(health)?;
        }
        if let Some(Value::Object(setup)) = lifecycle.get("setup")
            && let Some(Value::Array(steps)) = setup.get("steps")
        {
            def.setup_steps = steps
                .iter()
                .filter_map(|step| {
                    let step = step.as_object()?;
                    Some(Step {
                        name: step.get("name")?.as_str()?.to_string(),
                        run: step.get("run")?.as_str()?.to_string(),
                    })
                })
                .collect();
        }
    }
    if let Some(deployment) = top.get("deployment") {
        def.deployment = Some(reader.deployment(deployment)?);
    }
    Ok(def)
}

struct Reader<'a> {
    source: &'a str,
    file: &'a Utf8Path,
}

impl Reader<'_> {
    fn error(&self, path: &[&str], message: &str, help: &str) -> Diagnostic {
        let offset = locate(self.source, path);
        let shown = if path.is_empty() {
            String::new()
        } else {
            format!("{}: ", path.join("."))
        };
        Diagnostic::error(format!("{shown}{message}"))
            .in_file(self.file, self.source)
            .at(offset..offset, "here")
            .help(help)
    }

    fn boolean(
        &self,
        path: &[&str],
        value: Option<&Value>,
        default: bool,
    ) -> Result<bool, Diagnostic> {
        match value {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(flag)) => Ok(*flag),
            Some(other) => Err(self.error(
                path,
                &format!("must be true or false, found {}", brief(other)),
                "write true or false without quotes",
            )),
        }
    }

    fn ports(&self, value: &Value) -> Result<BTreeMap<String, Port>, Diagnostic> {
        let Value::Object(ports) = value else {
            return Err(self.error(&["ports"], "`ports` must be an object of named ports", "write `\"ports\": {\"api\": {\"env_var\": \"API_PORT\", \"range\": \"15000-19999\"}}`"));
        };
        let mut out = BTreeMap::new();
        for (name, spec) in ports {
            let Value::Object(spec) = spec else {
                return Err(self.error(
                    &["ports", name],
                    "a port must be an object",
                    "give env_var and range (\"A-B\") or port",
                ));
            };
            let range = match spec.get("range") {
                None | Some(Value::Null) => None,
                Some(Value::String(text)) => Some(parse_range(text).ok_or_else(|| {
                    self.error(
                        &["ports", name, "range"],
                        &format!(
                            "range {text:?} is not \"LOW-HIGH\" with 1 <= LOW <= HIGH <= 65535"
                        ),
                        "write the range as \"15000-19999\"",
                    )
                })?),
                Some(other) => {
                    return Err(self.error(
                        &["ports", name, "range"],
                        &format!(
                            "range must be a string \"LOW-HIGH\", found {}",
                            brief(other)
                        ),
                        "write the range as \"15000-19999\"",
                    ));
                }
            };
            let port = match spec.get("port") {
                None | Some(Value::Null) => None,
                Some(Value::Number(number)) => Some(
                    number
                        .as_u64()
                        .and_then(|p| u16::try_from(p).ok())
                        .filter(|p| *p > 0)
                        .ok_or_else(|| {
                            self.error(
                                &["ports", name, "port"],
                                &format!("port {number} is not between 1 and 65535"),
                                "use a port number from 1 to 65535",
                            )
                        })?,
                ),
                Some(Value::String(text)) if text.parse::<u16>().is_ok_and(|p| p > 0) => {
                    text.parse().ok()
                }
                Some(other) => {
                    return Err(self.error(
                        &["ports", name, "port"],
                        &format!("port must be a number, found {}", brief(other)),
                        "use a port number from 1 to 65535",
                    ));
                }
            };
            out.insert(
                name.clone(),
                Port {
                    env_var: spec
                        .get("env_var")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    range,
                    port,
                },
            );
        }
        Ok(out)
    }

    fn resource_spec(
        &self,
        path: &[&str],
        name: &str,
        spec: &Value,
        required_default: bool,
    ) -> Result<ResourceDep, Diagnostic> {
        match spec {
            Value::Bool(enabled) => Ok(ResourceDep {
                required: required_default,
                enabled: *enabled,
                kind: None,
                purpose: None,
            }),
            Value::String(purpose) => Ok(ResourceDep {
                required: required_default,
                enabled: true,
                kind: None,
                purpose: Some(purpose.clone()),
            }),
            Value::Object(spec) => {
                let mut field_path: Vec<&str> = path.to_vec();
                field_path.push("required");
                let required = self.boolean(&field_path, spec.get("required"), required_default)?;
                field_path.pop();
                field_path.push("enabled");
                let enabled = self.boolean(&field_path, spec.get("enabled"), true)?;
                Ok(ResourceDep {
                    required,
                    enabled,
                    kind: spec.get("type").and_then(Value::as_str).map(str::to_string),
                    purpose: spec
                        .get("purpose")
                        .or_else(|| spec.get("description"))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                })
            }
            other => Err(self.error(
                path,
                &format!(
                    "resource `{name}` must be an object, found {}",
                    brief(other)
                ),
                "write `\"NAME\": {\"type\": \"NAME\", \"enabled\": true, \"required\": true}`",
            )),
        }
    }

    fn resources(
        &self,
        value: &Value,
        notes: &mut Vec<String>,
    ) -> Result<BTreeMap<String, ResourceDep>, Diagnostic> {
        let Value::Object(resources) = value else {
            return Err(self.error(
                &["dependencies", "resources"],
                "must be an object of resource name -> spec",
                "write `\"resources\": {\"postgres\": {\"required\": true}}`",
            ));
        };
        let mut out = BTreeMap::new();
        let details = resources.get("details").and_then(Value::as_object);
        for (key, spec) in resources {
            let nested = match key.as_str() {
                "required" => Some(true),
                "optional" => Some(false),
                "details" if !looks_like_resource_spec(spec) => continue,
                _ => None,
            };
            let Some(required) = nested else {
                let dep =
                    self.resource_spec(&["dependencies", "resources", key], key, spec, true)?;
                out.insert(normalize_resource_name(key), dep);
                continue;
            };
            // A nested list or map: `required: {postgres: {...}}`, `required: ["postgres"]`,
            // `required: [{"name": "postgres", ...}]`.
            let path = ["dependencies", "resources", key.as_str()];
            let entries: Vec<(String, Value)> = match spec {
                Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                Value::Array(items) => {
                    let mut entries = Vec::new();
                    for item in items {
                        match item {
                            Value::String(name) => {
                                entries.push((name.clone(), Value::Object(Map::new())))
                            }
                            Value::Object(object) => {
                                match object.get("name").and_then(Value::as_str) {
                                    Some(name) => entries.push((name.to_string(), item.clone())),
                                    None => {
                                        return Err(self.error(
                                            &path,
                                            "a list entry has no `name`",
                                            "give each entry a \"name\", or list names as strings",
                                        ));
                                    }
                                }
                            }
                            other => {
                                return Err(self.error(
                                    &path,
                                    &format!(
                                        "list entries must be names or objects, found {}",
                                        brief(other)
                                    ),
                                    "list names as strings, e.g. [\"postgres\"]",
                                ));
                            }
                        }
                    }
                    entries
                }
                other => {
                    return Err(self.error(
                        &path,
                        &format!(
                            "must be a map or a list of resources, found {}",
                            brief(other)
                        ),
                        "write `\"required\": {\"postgres\": {…}}` or `[\"postgres\"]`",
                    ));
                }
            };
            for (name, mut entry) in entries {
                // A `details` map may carry the purpose of names listed elsewhere.
                if let (Value::Object(entry_map), Some(extra)) = (
                    &mut entry,
                    details
                        .and_then(|d| d.get(&name))
                        .and_then(Value::as_object),
                ) {
                    for (k, v) in extra {
                        entry_map.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
                let mut item_path = path.to_vec();
                item_path.push(&name);
                let mut dep = self.resource_spec(&item_path, &name, &entry, required)?;
                // The enclosing list decides required-ness; a contradicting flag is noted.
                if dep.required != required {
                    notes.push(format!(
                        "resource `{name}` is listed under `{key}` but says required: {}",
                        dep.required
                    ));
                    dep.required = required;
                }
                out.insert(normalize_resource_name(&name), dep);
            }
        }
        Ok(out)
    }

    fn scenarios(&self, value: &Value) -> Result<BTreeMap<String, ScenarioDep>, Diagnostic> {
        let path = ["dependencies", "scenarios"];
        let mut out = BTreeMap::new();
        match value {
            Value::Object(scenarios) => {
                for (name, spec) in scenarios {
                    let dep = match spec {
                        Value::Object(spec) => ScenarioDep {
                            required: self.boolean(
                                &["dependencies", "scenarios", name, "required"],
                                spec.get("required"),
                                true,
                            )?,
                            version: spec
                                .get("version")
                                .and_then(Value::as_str)
                                .map(str::to_string),
                            version_range: spec
                                .get("versionRange")
                                .and_then(Value::as_str)
                                .map(str::to_string),
                        },
                        Value::Bool(required) => ScenarioDep {
                            required: *required,
                            version: None,
                            version_range: None,
                        },
                        other => {
                            return Err(self.error(
                                &["dependencies", "scenarios", name],
                                &format!("must be an object, found {}", brief(other)),
                                "write `\"NAME\": {\"required\": true}`",
                            ));
                        }
                    };
                    out.insert(name.clone(), dep);
                }
            }
            Value::Array(names) => {
                for item in names {
                    match item.as_str() {
                        Some(name) => {
                            out.insert(
                                name.to_string(),
                                ScenarioDep {
                                    required: true,
                                    version: None,
                                    version_range: None,
                                },
                            );
                        }
                        None => {
                            return Err(self.error(
                                &path,
                                "list entries must be scenario names",
                                "write `\"scenarios\": {\"NAME\": {\"required\": true}}`",
                            ));
                        }
                    }
                }
            }
            other => {
                return Err(self.error(
                    &path,
                    &format!(
                        "must be an object of scenario name -> spec, found {}",
                        brief(other)
                    ),
                    "write `\"scenarios\": {\"NAME\": {\"required\": true}}`",
                ));
            }
        }
        Ok(out)
    }

    fn health(&self, value: &Value) -> Result<Health, Diagnostic> {
        let Value::Object(health) = value else {
            return Ok(Health::default());
        };
        let mut out = Health::default();
        if let Some(Value::Object(endpoints)) = health.get("endpoints") {
            for (name, path) in endpoints {
                if let Some(path) = path.as_str() {
                    out.endpoints.insert(name.clone(), path.to_string());
                }
            }
        }
        if let Some(Value::Array(checks)) = health.get("checks") {
            for check in checks {
                let Some(check) = check.as_object() else {
                    continue;
                };
                out.checks.push(HealthCheck {
                    name: check
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("check")
                        .to_string(),
                    kind: check
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("http")
                        .to_string(),
                    target: check
                        .get("target")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    critical: check
                        .get("critical")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    timeout_ms: check.get("timeout").and_then(Value::as_u64),
                    interval_ms: check.get("interval").and_then(Value::as_u64),
                });
            }
        }
        out.startup_grace_ms = health.get("startup_grace_period").and_then(Value::as_u64);
        Ok(out)
    }

    fn number(
        &self,
        path: &[&str],
        value: Option<&Value>,
        max: f64,
    ) -> Result<Option<f64>, Diagnostic> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(number)) => {
                let number = number.as_f64().unwrap_or(f64::NAN);
                if number.is_finite() && (0.0..=max).contains(&number) {
                    Ok(Some(number))
                } else {
                    Err(self.error(
                        path,
                        &format!("{number} is out of range (0 to {max})"),
                        "use a number in range",
                    ))
                }
            }
            Some(other) => Err(self.error(
                path,
                &format!("must be a number, found {}", brief(other)),
                "write a number without quotes",
            )),
        }
    }

    fn deployment(&self, value: &Value) -> Result<Deployment, Diagnostic> {
        let Value::Object(deployment) = value else {
            return Err(self.error(
                &["deployment"],
                "`deployment` must be an object",
                "see resources/postgres/.vrooli/service.json for the shape",
            ));
        };
        let mut out = Deployment {
            class: deployment
                .get("class")
                .and_then(Value::as_str)
                .map(str::to_string),
            ..Deployment::default()
        };
        let footprint = deployment
            .get("footprint")
            .or_else(|| deployment.get("requirements"));
        if let Some(footprint) = footprint {
            let key = if deployment.contains_key("footprint") {
                "footprint"
            } else {
                "requirements"
            };
            let Value::Object(footprint) = footprint else {
                return Err(self.error(
                    &["deployment", key],
                    "must be an object",
                    "write {\"ram_mb\": 512, \"disk_mb\": 1024, \"cpu_cores\": 1}",
                ));
            };
            let gpu = match footprint.get("gpu") {
                None | Some(Value::Null) | Some(Value::Bool(false)) => GpuNeed::None,
                Some(Value::Bool(true)) => GpuNeed::Required,
                Some(Value::String(text)) => match text.as_str() {
                    "none" | "no" => GpuNeed::None,
                    "optional" | "recommended" => GpuNeed::Optional,
                    "required" | "yes" => GpuNeed::Required,
                    other => {
                        return Err(self.error(
                            &["deployment", key, "gpu"],
                            &format!("unknown gpu need {other:?}"),
                            "use \"none\", \"optional\" or \"required\"",
                        ));
                    }
                },
                Some(other) => {
                    return Err(self.error(
                        &["deployment", key, "gpu"],
                        &format!("must be a string, found {}", brief(other)),
                        "use \"none\", \"optional\" or \"required\"",
                    ));
                }
            };
            let network = match footprint.get("network").and_then(Value::as_str) {
                None => NetworkNeed::Offline,
                Some("offline") | Some("none") => NetworkNeed::Offline,
                Some("optional") => NetworkNeed::Optional,
                Some("required") => NetworkNeed::Required,
                Some(other) => {
                    return Err(self.error(
                        &["deployment", key, "network"],
                        &format!("unknown network need {other:?}"),
                        "use \"offline\", \"optional\" or \"required\"",
                    ));
                }
            };
            out.footprint = Some(Footprint {
                ram_mb: self
                    .number(&["deployment", key, "ram_mb"], footprint.get("ram_mb"), 1e9)?
                    .unwrap_or(0.0) as u64,
                disk_mb: self
                    .number(
                        &["deployment", key, "disk_mb"],
                        footprint.get("disk_mb"),
                        1e12,
                    )?
                    .unwrap_or(0.0) as u64,
                cpu_cores: self
                    .number(
                        &["deployment", key, "cpu_cores"],
                        footprint.get("cpu_cores"),
                        1024.0,
                    )?
                    .unwrap_or(0.0),
                gpu,
                network,
            });
        }
        if let Some(support) = deployment.get("platform_support") {
            let Value::Object(support) = support else {
                return Err(self.error(
                    &["deployment", "platform_support"],
                    "must be an object of tier -> support",
                    "write {\"tier-2-desktop\": {\"supported\": true, \"fitness_score\": 0.9}}",
                ));
            };
            for (tier_name, entry) in support {
                let tier: Tier = tier_name.parse().map_err(|err: String| {
                    self.error(
                        &["deployment", "platform_support", tier_name],
                        &err,
                        "tiers are tier-1-local … tier-5-enterprise",
                    )
                })?;
                let Value::Object(entry) = entry else {
                    return Err(self.error(
                        &["deployment", "platform_support", tier_name],
                        "must be an object",
                        "write {\"supported\": true, \"fitness_score\": 0.9}",
                    ));
                };
                let supported = self.boolean(
                    &["deployment", "platform_support", tier_name, "supported"],
                    entry.get("supported"),
                    true,
                )?;
                let score = self.number(
                    &["deployment", "platform_support", tier_name, "fitness_score"],
                    entry.get("fitness_score"),
                    1.0,
                )?;
                out.platform_support.insert(
                    tier,
                    TierSupport {
                        supported,
                        fitness_score: score.unwrap_or(if supported { 1.0 } else { 0.0 }),
                        reason: entry
                            .get("reason")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                    },
                );
            }
        }
        if let Some(swaps) = deployment.get("swappable_with") {
            let Value::Array(swaps) = swaps else {
                return Err(self.error(
                    &["deployment", "swappable_with"],
                    "must be a list",
                    "write [{\"id\": \"sqlite\", \"relationship\": \"replacement\"}]",
                ));
            };
            for swap in swaps {
                let option = match swap {
                    Value::String(id) => SwapOption {
                        id: id.clone(),
                        relationship: None,
                        notes: None,
                    },
                    Value::Object(swap) => SwapOption {
                        id: swap
                            .get("id")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .ok_or_else(|| {
                                self.error(
                                    &["deployment", "swappable_with"],
                                    "an entry has no `id`",
                                    "give each entry the id of the replacement resource",
                                )
                            })?,
                        relationship: swap
                            .get("relationship")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        notes: swap
                            .get("notes")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                    },
                    other => {
                        return Err(self.error(
                            &["deployment", "swappable_with"],
                            &format!("entries must be objects, found {}", brief(other)),
                            "write {\"id\": \"sqlite\"}",
                        ));
                    }
                };
                out.swappable_with.push(option);
            }
        }
        if let Some(secrets) = deployment.get("secrets") {
            let Value::Array(secrets) = secrets else {
                return Err(self.error(
                    &["deployment", "secrets"],
                    "must be a list of secret declarations",
                    "write [{\"id\": \"db_password\", …}]",
                ));
            };
            out.secrets = secrets.clone();
        }
        if let Some(bundle) = deployment.get("bundle") {
            out.bundle = Some(self.bundle(bundle)?);
        }
        Ok(out)
    }
}

impl Reader<'_> {
    fn strings(&self, path: &[&str], value: Option<&Value>) -> Result<Vec<String>, Diagnostic> {
        match value {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str().map(str::to_string).ok_or_else(|| {
                        self.error(
                            path,
                            &format!("entries must be strings, found {}", brief(item)),
                            "write a list of strings",
                        )
                    })
                })
                .collect(),
            Some(other) => Err(self.error(
                path,
                &format!("must be a list of strings, found {}", brief(other)),
                "write a list of strings",
            )),
        }
    }

    fn string_map(
        &self,
        path: &[&str],
        value: Option<&Value>,
    ) -> Result<BTreeMap<String, String>, Diagnostic> {
        match value {
            None | Some(Value::Null) => Ok(BTreeMap::new()),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(key, value)| match value {
                    Value::String(text) => Ok((key.clone(), text.clone())),
                    other => Err(self.error(
                        path,
                        &format!("`{key}` must be a string, found {}", brief(other)),
                        "environment values are strings",
                    )),
                })
                .collect(),
            Some(other) => Err(self.error(
                path,
                &format!("must be an object of NAME -> value, found {}", brief(other)),
                "write {\"NAME\": \"value\"}",
            )),
        }
    }

    fn bundle(&self, value: &Value) -> Result<BundleSpec, Diagnostic> {
        let path = ["deployment", "bundle"];
        let Value::Object(bundle) = value else {
            return Err(self.error(
                &path,
                "must be an object",
                "write {\"mode\": \"service\", …}",
            ));
        };
        let mode = match bundle.get("mode").and_then(Value::as_str) {
            None | Some("service") => BundleMode::Service,
            Some("embedded") => BundleMode::Embedded,
            Some("external") => BundleMode::External,
            Some(other) => {
                return Err(self.error(
                    &["deployment", "bundle", "mode"],
                    &format!("unknown mode {other:?}"),
                    "use \"service\", \"embedded\" or \"external\"",
                ));
            }
        };
        let port = match bundle.get("port") {
            None | Some(Value::Null) => None,
            Some(Value::Object(port)) => {
                let name = port
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("main")
                    .to_string();
                let range = port
                    .get("range")
                    .and_then(Value::as_str)
                    .and_then(parse_range)
                    .ok_or_else(|| {
                        self.error(
                            &["deployment", "bundle", "port", "range"],
                            "a port needs a range \"LOW-HIGH\"",
                            "write \"range\": \"25432-25532\"",
                        )
                    })?;
                Some((name, range))
            }
            Some(other) => {
                return Err(self.error(
                    &["deployment", "bundle", "port"],
                    &format!("must be an object, found {}", brief(other)),
                    "write {\"name\": \"db\", \"range\": \"25432-25532\"}",
                ));
            }
        };
        let health = bundle.get("health").and_then(Value::as_object);
        Ok(BundleSpec {
            mode,
            binary: bundle
                .get("binary")
                .and_then(Value::as_str)
                .map(str::to_string),
            args: self.strings(&["deployment", "bundle", "args"], bundle.get("args"))?,
            port,
            health: health
                .and_then(|h| h.get("type"))
                .and_then(Value::as_str)
                .map(str::to_string),
            health_path: health
                .and_then(|h| h.get("path"))
                .and_then(Value::as_str)
                .map(str::to_string),
            env: self.string_map(&["deployment", "bundle", "env"], bundle.get("env"))?,
            provides: self.string_map(
                &["deployment", "bundle", "provides"],
                bundle.get("provides"),
            )?,
            data_dirs: self.strings(
                &["deployment", "bundle", "data_dirs"],
                bundle.get("data_dirs"),
            )?,
            migrations: match bundle.get("migrations") {
                Some(Value::Array(items)) => items.clone(),
                _ => Vec::new(),
            },
        })
    }
}

/// `resource-claude-code` and `claude-code` name the same resource.
fn normalize_resource_name(name: &str) -> String {
    name.strip_prefix("resource-").unwrap_or(name).to_string()
}

fn looks_like_resource_spec(value: &Value) -> bool {
    value.as_object().is_some_and(|map| {
        map.contains_key("type") || map.contains_key("enabled") || map.contains_key("required")
    })
}

fn brief(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(flag) => format!("{flag}"),
        Value::Number(number) => format!("the number {number}"),
        Value::String(text) => format!("the string {text:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// `"15000-19999"` -> (15000, 19999).
pub fn parse_range(text: &str) -> Option<(u16, u16)> {
    let (low, high) = text.split_once('-')?;
    let low: u16 = low.trim().parse().ok()?;
    let high: u16 = high.trim().parse().ok()?;
    (low >= 1 && low <= high).then_some((low, high))
}

/// Byte offset of 1-based (line, column).
fn offset_of(source: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (index, text) in source.split_inclusive('\n').enumerate() {
        if index + 1 == line {
            return (offset + column.saturating_sub(1)).min(source.len());
        }
        offset += text.len();
    }
    source.len()
}

/// Byte offset of the value at `path` (the key of its last component), found by walking the text
/// along the path.
pub fn locate(source: &str, path: &[&str]) -> usize {
    let mut offset = 0;
    for key in path {
        let needle = format!("\"{key}\"");
        match source[offset..].find(&needle) {
            Some(found) => offset += found,
            None => break,
        }
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<ServiceDef, Diagnostic> {
        parse(
            text,
            Utf8Path::new("scenarios/x/.vrooli/service.json"),
            "x",
            ServiceKind::Scenario,
        )
    }

    #[test]
    fn nested_required_optional_variants_are_understood() {
        let def = read(
            r#"{"dependencies": {"resources": {
            "required": {"postgres": {"purpose": "db"}},
            "optional": ["redis", {"name": "resource-ollama"}],
            "details": {"redis": {"purpose": "cache"}}
        }}}"#,
        )
        .unwrap();
        let names: Vec<(&str, bool)> = def
            .resources
            .iter()
            .map(|(n, d)| (n.as_str(), d.required))
            .collect();
        assert_eq!(
            names,
            [("ollama", false), ("postgres", true), ("redis", false)]
        );
        assert_eq!(def.resources["redis"].purpose.as_deref(), Some("cache"));
    }

    #[test]
    fn bad_values_name_file_line_and_problem() {
        let text = "{\n  \"ports\": {\n    \"api\": {\"range\": \"19999-15000\"}\n  }\n}";
        let err = read(text).unwrap_err();
        assert_eq!(err.line_col().map(|lc| lc.0), Some(3));
        assert!(err.message.contains("ports.api.range"), "{}", err.message);
        let err =
            read("{\"dependencies\": {\"resources\": {\"postgres\": {\"required\": \"yes\"}}}}")
                .unwrap_err();
        assert!(
            err.message.contains("must be true or false"),
            "{}",
            err.message
        );
        let err = read("{\"ports\": ").unwrap_err();
        assert!(err.message.contains("not valid JSON"), "{}", err.message);
        assert!(read("[1]").is_err());
    }

    #[test]
    fn dependency_names_cannot_be_paths() {
        for name in ["../etc", "a/b", ".."] {
            let err = read(&format!(
                "{{\"dependencies\": {{\"scenarios\": {{\"{name}\": {{}}}}}}}}"
            ))
            .unwrap_err();
            assert!(
                err.message.contains("is not a scenario name"),
                "{name}: {}",
                err.message
            );
        }
        assert!(read("{\"dependencies\": {\"resources\": {\"../x\": {}}}}").is_err());
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("15000-19999"), Some((15000, 19999)));
        assert_eq!(parse_range("0-10"), None);
        assert_eq!(parse_range("10-5"), None);
        assert_eq!(parse_range("a-b"), None);
    }
}
