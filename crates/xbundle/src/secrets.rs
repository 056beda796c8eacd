//! Secrets: declared by resources and scenarios, classified per tier, planned per profile.
//!
//! A declaration lives in a definition's `deployment.secrets`:
//!
//! ```json
//! {"id": "postgres_password", "description": "…",
//!  "classification": "infrastructure",                 // the default class
//!  "tiers": {"tier-2-desktop": "generate"},            // per tier: a class, or a strategy:
//!                                                      // generate | prompt | delegate | strip
//!  "generator": {"type": "random", "length": 32, "charset": "alnum"},
//!  "prompt": {"label": "…", "description": "…", "format": "^sk-[A-Za-z0-9]+$"},
//!  "fetch": {"url": "https://vault.example/…", "timeout_ms": 5000},
//!  "target": {"type": "env", "name": "POSTGRES_PASSWORD"},
//!  "required": true}
//! ```
//!
//! Class of a secret for a tier, first that applies: the profile's override
//! (`[profiles.NAME.secrets] ID = {class = …}`), the declaration's `tiers.<tier>`, its
//! `classification`, else inferred (generator → `per_install_generated`, prompt →
//! `user_prompt`, fetch → `remote_fetch`, otherwise `infrastructure`). Strategies map to classes:
//! generate → per_install_generated, prompt → user_prompt, delegate → remote_fetch, strip →
//! excluded. Defaults: generator `{random, 32, alnum}`; target env `UPPER(id)`.
//!
//! The plan of a bundle keeps the secrets of the nodes it bundles and excludes, with a reason,
//! those of swapped-out resources, optional (unbundled) nodes, and stripped secrets. An
//! `infrastructure` secret whose resource stays in the bundle is an error that names the resource
//! and the swap that would remove it.
//!
//! **Invariant:** xbundle never reads a secret's value at build time. Values exist only on the
//! user's machine, produced by the runtime (generated, prompted or fetched); nothing here has a
//! value to leak into an artifact, a log line or a JSON message.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use serde::Serialize;
use serde_json::Value;

use crate::analysis::tier::Tier;
use crate::analysis::{Analysis, Catalog};
use crate::config::SecretOverride;
use crate::diagnostic::Diagnostic;
use crate::service::{ServiceDef, ServiceKind};

/// The four classes are bundle.json's (`secrets[].class`).
pub use manifest::SecretClass;

/// The class as bundle.json spells it.
pub fn class_id(class: SecretClass) -> &'static str {
    match class {
        SecretClass::Infrastructure => "infrastructure",
        SecretClass::PerInstallGenerated => "per_install_generated",
        SecretClass::UserPrompt => "user_prompt",
        SecretClass::RemoteFetch => "remote_fetch",
    }
}

/// What a tier does with a secret: a class, or leave it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handling {
    Class(SecretClass),
    Strip,
}

impl FromStr for Handling {
    type Err = String;

    fn from_str(text: &str) -> Result<Handling, String> {
        Ok(match text {
            "infrastructure" => Handling::Class(SecretClass::Infrastructure),
            "per_install_generated" | "generate" => {
                Handling::Class(SecretClass::PerInstallGenerated)
            }
            "user_prompt" | "prompt" => Handling::Class(SecretClass::UserPrompt),
            "remote_fetch" | "delegate" => Handling::Class(SecretClass::RemoteFetch),
            "strip" | "exclude" => Handling::Strip,
            other => {
                return Err(format!(
                    "unknown secret class `{other}`; use infrastructure, per_install_generated (generate), user_prompt (prompt), remote_fetch (delegate) or exclude (strip)"
                ));
            }
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GeneratorType {
    Random,
    Uuid,
    Hex,
    Base64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Generator {
    #[serde(rename = "type")]
    pub kind: GeneratorType,
    pub length: u32,
    /// For `random`: `alnum`, `alpha`, `numeric`, `alnum_symbols`, or a literal set of characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub charset: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Prompt {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A regular expression the value must match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fetch {
    pub url: String,
    pub timeout_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Target {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
}

/// One declared secret.
#[derive(Clone, Debug)]
pub struct Declaration {
    pub id: String,
    /// `resource:NAME` or `scenario:NAME`.
    pub owner: String,
    pub description: Option<String>,
    pub classification: Option<Handling>,
    pub tiers: BTreeMap<Tier, Handling>,
    pub generator: Option<Generator>,
    pub prompt: Option<Prompt>,
    pub fetch: Option<Fetch>,
    pub target: Target,
    pub required: bool,
}

/// Where a class came from, for `secrets classify`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClassSource {
    Profile,
    Tier,
    Declared,
    Inferred,
}

impl Declaration {
    /// The handling for `tier`, and where it came from.
    pub fn classify(
        &self,
        tier: Tier,
        profile: Option<&SecretOverride>,
    ) -> Result<(Handling, ClassSource), String> {
        if let Some(class) = profile.and_then(|p| p.class.as_deref()) {
            return Ok((class.parse()?, ClassSource::Profile));
        }
        if let Some(handling) = self.tiers.get(&tier) {
            return Ok((*handling, ClassSource::Tier));
        }
        if let Some(handling) = self.classification {
            return Ok((handling, ClassSource::Declared));
        }
        let inferred = if self.generator.is_some() {
            SecretClass::PerInstallGenerated
        } else if self.prompt.is_some() {
            SecretClass::UserPrompt
        } else if self.fetch.is_some() {
            SecretClass::RemoteFetch
        } else {
            SecretClass::Infrastructure
        };
        Ok((Handling::Class(inferred), ClassSource::Inferred))
    }
}

fn parse_generator(
    def: &ServiceDef,
    path: &[&str],
    value: &Value,
) -> Result<Generator, Diagnostic> {
    let bad = |message: String| {
        def.diagnostic(path, message, "a generator is {\"type\": \"random\" | \"uuid\" | \"hex\" | \"base64\", \"length\": 8..=4096, \"charset\": \"alnum\"}")
    };
    let Value::Object(map) = value else {
        return Err(bad("generator must be an object".into()));
    };
    let kind = match map.get("type").and_then(Value::as_str).unwrap_or("random") {
        "random" => GeneratorType::Random,
        "uuid" => GeneratorType::Uuid,
        "hex" => GeneratorType::Hex,
        "base64" => GeneratorType::Base64,
        other => return Err(bad(format!("unknown generator type `{other}`"))),
    };
    let length = match map.get("length") {
        None => {
            if kind == GeneratorType::Uuid {
                36
            } else {
                32
            }
        }
        Some(value) => {
            let length = value.as_u64().ok_or_else(|| {
                bad(format!(
                    "generator length must be a whole number, found {value}"
                ))
            })?;
            if !(8..=4096).contains(&length) {
                return Err(bad(format!(
                    "generator length {length} is outside 8..=4096"
                )));
            }
            length as u32
        }
    };
    if kind == GeneratorType::Uuid && length != 36 {
        return Err(bad(format!("a uuid is 36 characters long, not {length}")));
    }
    let charset = map
        .get("charset")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(charset) = &charset {
        if kind != GeneratorType::Random {
            return Err(bad(format!(
                "charset applies to random generators only (this one is {})",
                serde_json::to_string(&kind).unwrap_or_default()
            )));
        }
        let named = ["alnum", "alpha", "numeric", "alnum_symbols"].contains(&charset.as_str());
        let unique: BTreeSet<char> = charset.chars().collect();
        if !named && unique.len() < 2 {
            return Err(bad(format!(
                "charset `{charset}` is neither a named set (alnum, alpha, numeric, alnum_symbols) nor two or more characters"
            )));
        }
    }
    Ok(Generator {
        kind,
        length,
        charset: if kind == GeneratorType::Random {
            Some(charset.unwrap_or_else(|| "alnum".into()))
        } else {
            None
        },
    })
}

/// Reads the secret declarations of one definition.
pub fn declarations(def: &ServiceDef) -> Result<Vec<Declaration>, Diagnostic> {
    let Some(deployment) = &def.deployment else {
        return Ok(Vec::new());
    };
    let owner = match def.kind {
        ServiceKind::Resource => format!("resource:{}", def.id),
        ServiceKind::Scenario => format!("scenario:{}", def.id),
    };
    let mut out = Vec::new();
    for value in &deployment.secrets {
        let Value::Object(map) = value else {
            return Err(def.diagnostic(
                &["deployment", "secrets"],
                "a secret declaration must be an object",
                "write {\"id\": \"db_password\", …}",
            ));
        };
        let Some(id) = map
            .get("id")
            .or_else(|| map.get("key"))
            .and_then(Value::as_str)
        else {
            return Err(def.diagnostic(
                &["deployment", "secrets"],
                "a secret declaration has no `id`",
                "give each secret an id, e.g. \"id\": \"db_password\"",
            ));
        };
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(def.diagnostic(
                &["deployment", "secrets", id],
                format!("secret id `{id}` is not a plain identifier"),
                "use letters, digits, `_` and `-`",
            ));
        }
        let handling = |value: &Value, path: &[&str]| -> Result<Handling, Diagnostic> {
            value.as_str().unwrap_or("").parse().map_err(|err: String| {
                def.diagnostic(path, err, "see the class list in the secrets documentation")
            })
        };
        let classification = map
            .get("classification")
            .or_else(|| map.get("class"))
            .map(|v| handling(v, &["deployment", "secrets", id, "classification"]))
            .transpose()?;
        let mut tiers = BTreeMap::new();
        if let Some(Value::Object(per_tier)) = map.get("tiers") {
            for (tier, value) in per_tier {
                let parsed: Tier = tier.parse().map_err(|err: String| {
                    def.diagnostic(
                        &["deployment", "secrets", id, "tiers", tier],
                        err,
                        "tiers are tier-1-local … tier-5-enterprise",
                    )
                })?;
                tiers.insert(
                    parsed,
                    handling(value, &["deployment", "secrets", id, "tiers", tier])?,
                );
            }
        }
        let generator = map
            .get("generator")
            .map(|g| parse_generator(def, &["deployment", "secrets", id, "generator"], g))
            .transpose()?;
        let prompt = map
            .get("prompt")
            .and_then(Value::as_object)
            .map(|p| Prompt {
                label: p.get("label").and_then(Value::as_str).map(str::to_string),
                description: p
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                format: p.get("format").and_then(Value::as_str).map(str::to_string),
            });
        if let Some(format) = prompt.as_ref().and_then(|p| p.format.as_deref())
            && let Err(err) = regex_lite::Regex::new(format)
        {
            return Err(def.diagnostic(
                &["deployment", "secrets", id, "prompt", "format"],
                format!("format is not a valid regular expression: {err}"),
                "write a regular expression such as ^[A-Za-z0-9]{32,}$",
            ));
        }
        let fetch = match map.get("fetch") {
            None => None,
            Some(Value::Object(f)) => Some(Fetch {
                url: f
                    .get("url")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| {
                        def.diagnostic(
                            &["deployment", "secrets", id, "fetch"],
                            "a fetch block needs a `url`",
                            "write {\"url\": \"https://…\"}",
                        )
                    })?,
                timeout_ms: f.get("timeout_ms").and_then(Value::as_u64).unwrap_or(5000),
            }),
            Some(_) => {
                return Err(def.diagnostic(
                    &["deployment", "secrets", id, "fetch"],
                    "fetch must be an object",
                    "write {\"url\": \"https://…\", \"timeout_ms\": 5000}",
                ));
            }
        };
        let target = match map.get("target").and_then(Value::as_object) {
            None => Target {
                kind: "env".into(),
                name: id.to_ascii_uppercase().replace('-', "_"),
            },
            Some(t) => {
                let kind = t.get("type").and_then(Value::as_str).unwrap_or("env");
                if kind != "env" && kind != "file" {
                    return Err(def.diagnostic(
                        &["deployment", "secrets", id, "target"],
                        format!("unknown target type `{kind}`"),
                        "use \"env\" or \"file\"",
                    ));
                }
                Target {
                    kind: kind.to_string(),
                    name: t
                        .get("name")
                        .and_then(Value::as_str)
                        .map_or_else(|| id.to_ascii_uppercase(), str::to_string),
                }
            }
        };
        out.push(Declaration {
            id: id.to_string(),
            owner: owner.clone(),
            description: map
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
            classification,
            tiers,
            generator,
            prompt,
            fetch,
            target,
            required: map.get("required").and_then(Value::as_bool).unwrap_or(true),
        });
    }
    Ok(out)
}

/// A secret the bundle carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlannedSecret {
    pub id: String,
    pub class: SecretClass,
    pub owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator: Option<Generator>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Prompt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch: Option<Fetch>,
    pub target: Target,
    pub required: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Excluded {
    pub id: String,
    pub reason: String,
}

/// The secrets-manager contract: `{secrets: [...], excluded: [{id, reason}]}`.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub scenario: String,
    pub tier: Tier,
    pub secrets: Vec<PlannedSecret>,
    pub excluded: Vec<Excluded>,
    /// Infrastructure secrets whose resource stays in the bundle (the plan is invalid if any).
    #[serde(skip)]
    pub violations: Vec<Diagnostic>,
}

/// Every declaration of the nodes of `analysis` (including swapped-out and optional ones),
/// with duplicate ids reported.
pub fn collect(
    catalog: &Catalog,
    analysis: &Analysis,
) -> Result<Vec<(Declaration, NodeState)>, Diagnostic> {
    let mut found: Vec<(Declaration, NodeState)> = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let replaced: BTreeMap<&str, &str> = analysis
        .dag
        .nodes
        .iter()
        .flat_map(|node| {
            node.replaces
                .iter()
                .map(move |old| (old.as_str(), node.name.as_str()))
        })
        .collect();
    let mut visit = |kind: ServiceKind, name: &str, state: NodeState| -> Result<(), Diagnostic> {
        let Some(def) = catalog.get(kind, name)? else {
            return Ok(());
        };
        for declaration in declarations(&def)? {
            if let Some(other) = seen.insert(declaration.id.clone(), declaration.owner.clone()) {
                return Err(def.diagnostic(
                    &["deployment", "secrets", &declaration.id],
                    format!(
                        "secret id `{}` is declared by both {other} and {}",
                        declaration.id, declaration.owner
                    ),
                    "secret ids must be unique in a bundle: rename one of them",
                ));
            }
            found.push((declaration, state.clone()));
        }
        Ok(())
    };
    for node in &analysis.dag.nodes {
        let state = if node.required {
            NodeState::Bundled
        } else {
            NodeState::Optional
        };
        visit(node.kind, &node.name, state)?;
    }
    for (old, new) in replaced {
        visit(
            ServiceKind::Resource,
            old,
            NodeState::SwappedFor(new.to_string()),
        )?;
    }
    Ok(found)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeState {
    Bundled,
    Optional,
    SwappedFor(String),
}

/// The bundle's secret plan for `analysis` (already carrying the profile's swaps) on `tier`.
pub fn plan(
    catalog: &Catalog,
    analysis: &Analysis,
    tier: Tier,
    overrides: &BTreeMap<String, SecretOverride>,
) -> Result<Plan, Diagnostic> {
    let declared = collect(catalog, analysis)?;
    for id in overrides.keys() {
        if !declared.iter().any(|(d, _)| &d.id == id) {
            let ids: Vec<&str> = declared.iter().map(|(d, _)| d.id.as_str()).collect();
            return Err(Diagnostic::error(format!(
                "the profile overrides secret `{id}`, which nothing in {} declares",
                analysis.scenario
            ))
            .help(format!(
                "declared secrets: {}",
                if ids.is_empty() {
                    "(none)".into()
                } else {
                    ids.join(", ")
                }
            )));
        }
    }
    let mut plan = Plan {
        scenario: analysis.scenario.clone(),
        tier,
        secrets: Vec::new(),
        excluded: Vec::new(),
        violations: Vec::new(),
    };
    for (declaration, state) in declared {
        let node_name = declaration
            .owner
            .split_once(':')
            .map_or(declaration.owner.as_str(), |(_, n)| n)
            .to_string();
        match &state {
            NodeState::SwappedFor(new) => {
                plan.excluded.push(Excluded {
                    id: declaration.id.clone(),
                    reason: format!("resource {node_name} is swapped for {new}"),
                });
                continue;
            }
            NodeState::Optional => {
                plan.excluded.push(Excluded {
                    id: declaration.id.clone(),
                    reason: format!("{} is optional and not bundled", declaration.owner),
                });
                continue;
            }
            NodeState::Bundled => {}
        }
        let profile = overrides.get(&declaration.id);
        let (handling, _) = declaration.classify(tier, profile).map_err(|err| {
            Diagnostic::error(format!("secret `{}`: {err}", declaration.id))
                .help("fix the class in [profiles.NAME.secrets] or in the declaration")
        })?;
        let class = match handling {
            Handling::Strip => {
                plan.excluded.push(Excluded {
                    id: declaration.id.clone(),
                    reason: "excluded for this profile".into(),
                });
                continue;
            }
            Handling::Class(class) => class,
        };
        if class == SecretClass::Infrastructure {
            let def = catalog
                .get(ServiceKind::Resource, &node_name)
                .ok()
                .flatten();
            let swaps: Vec<String> = def
                .as_ref()
                .and_then(|d| d.deployment.as_ref())
                .map(|d| {
                    d.swappable_with
                        .iter()
                        .map(|s| format!("{node_name}={}", s.id))
                        .collect()
                })
                .unwrap_or_default();
            let help = if swaps.is_empty() {
                format!(
                    "infrastructure secrets never ship in a bundle: remove {node_name} from the bundle, or reclassify `{}` in [profiles.NAME.secrets]",
                    declaration.id
                )
            } else {
                format!(
                    "swap it out (e.g. --swap {}, or swaps = {{ {} = \"{}\" }} in the profile), or reclassify `{}` in [profiles.NAME.secrets]",
                    swaps[0],
                    node_name,
                    swaps[0].split_once('=').map_or("", |(_, t)| t),
                    declaration.id
                )
            };
            plan.violations.push(
                Diagnostic::error(format!(
                    "secret `{}` of {} is infrastructure, but {node_name} stays in the bundle",
                    declaration.id, declaration.owner
                ))
                .help(help),
            );
            plan.excluded.push(Excluded {
                id: declaration.id.clone(),
                reason: format!("infrastructure: {node_name} must be swapped out"),
            });
            continue;
        }
        let mut secret = PlannedSecret {
            id: declaration.id.clone(),
            class,
            owner: declaration.owner.clone(),
            description: profile
                .and_then(|p| p.description.clone())
                .or(declaration.description.clone()),
            generator: None,
            prompt: None,
            fetch: None,
            target: profile.and_then(|p| p.target.as_ref()).map_or(
                declaration.target.clone(),
                |t| Target {
                    kind: t.kind.clone(),
                    name: t.name.clone(),
                },
            ),
            required: profile
                .and_then(|p| p.required)
                .unwrap_or(declaration.required),
        };
        match class {
            SecretClass::PerInstallGenerated => {
                let mut generator = declaration.generator.clone().unwrap_or(Generator {
                    kind: GeneratorType::Random,
                    length: 32,
                    charset: Some("alnum".into()),
                });
                if let Some(over) = profile.and_then(|p| p.generator.as_ref()) {
                    let mut value = serde_json::to_value(&generator).expect("generators serialize");
                    if let Some(kind) = &over.kind {
                        value["type"] = kind.clone().into();
                    }
                    if let Some(length) = over.length {
                        value["length"] = length.into();
                    }
                    if let Some(charset) = &over.charset {
                        value["charset"] = charset.clone().into();
                    }
                    if value["type"] != "random" && over.charset.is_none() {
                        value.as_object_mut().expect("object").remove("charset");
                        if value["type"] == "uuid" && over.length.is_none() {
                            value["length"] = 36.into();
                        }
                    }
                    let owner_def = catalog
                        .get(owner_kind(&declaration.owner), &node_name)?
                        .expect("the owner is defined");
                    generator = parse_generator(
                        &owner_def,
                        &["deployment", "secrets", &declaration.id],
                        &value,
                    )
                    .map_err(|mut d| {
                        d.message =
                            format!("profile generator for `{}`: {}", declaration.id, d.message);
                        d.file = None;
                        d.span = None;
                        d
                    })?;
                }
                secret.generator = Some(generator);
            }
            SecretClass::UserPrompt => {
                let declared = declaration.prompt.clone().unwrap_or(Prompt {
                    label: None,
                    description: None,
                    format: None,
                });
                let prompt = Prompt {
                    label: profile
                        .and_then(|p| p.label.clone())
                        .or(declared.label)
                        .or_else(|| Some(declaration.id.replace('_', " "))),
                    description: profile
                        .and_then(|p| p.description.clone())
                        .or(declared.description)
                        .or(declaration.description.clone()),
                    format: profile.and_then(|p| p.format.clone()).or(declared.format),
                };
                if let Some(format) = &prompt.format
                    && let Err(err) = regex_lite::Regex::new(format)
                {
                    return Err(Diagnostic::error(format!(
                        "secret `{}`: format is not a valid regular expression: {err}",
                        declaration.id
                    ))
                    .help("write a regular expression such as ^[A-Za-z0-9]{32,}$"));
                }
                secret.prompt = Some(prompt);
            }
            SecretClass::RemoteFetch => {
                let url = profile
                    .and_then(|p| p.url.clone())
                    .or(declaration.fetch.as_ref().map(|f| f.url.clone()));
                let Some(url) = url else {
                    return Err(Diagnostic::error(format!("secret `{}` is remote_fetch but has no URL to fetch it from", declaration.id))
                        .help(format!("add url = \"https://…\" to [profiles.NAME.secrets] {} or a fetch block to its declaration", declaration.id)));
                };
                secret.fetch = Some(Fetch {
                    url,
                    timeout_ms: profile
                        .and_then(|p| p.timeout_ms)
                        .or(declaration.fetch.as_ref().map(|f| f.timeout_ms))
                        .unwrap_or(5000),
                });
            }
            SecretClass::Infrastructure => unreachable!("handled above"),
        }
        plan.secrets.push(secret);
    }
    plan.secrets.sort_by(|a, b| a.id.cmp(&b.id));
    plan.excluded.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(plan)
}

fn owner_kind(owner: &str) -> ServiceKind {
    if owner.starts_with("scenario:") {
        ServiceKind::Scenario
    } else {
        ServiceKind::Resource
    }
}

/// `${secret.ID}` references in an env template.
pub fn referenced_secrets(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("${secret.") {
        let after = &rest[start + 9..];
        let Some(end) = after.find('}') else { break };
        out.push(&after[..end]);
        rest = &after[end..];
    }
    out
}
