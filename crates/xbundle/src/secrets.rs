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
//! excluded. Defaults: generator `{random, 32, alnum}` (a uuid is 36 long); target env
//! `UPPER(id)` (`-` becomes `_`).
//!
//! The rules of what a bundle may carry are the `manifest` crate's, applied here to each
//! value where it enters, so that a mistake is an error at its line in service.json or
//! bundle.toml (`check`), never a surprise in bundle.json or at run time:
//! - ids: `[a-z0-9][a-z0-9_-]*` ([`manifest::check_id`]);
//! - generators ([`manifest::generator`]): `type` random | uuid | hex | base64, `length`
//!   8..=4096 (a uuid exactly 36), `charset` for random only: a named set (`alnum`, `alpha`,
//!   `lower`, `upper`, `numeric`, `hex`, `base64`, `base64url`, `alnum_symbols`) or a literal
//!   set of at least 16 distinct characters or enough of them for 128 bits; a misspelled name
//!   is an error with "did you mean";
//! - a prompt's `format` compiles, within size limits, the way the runtime matches it against
//!   the whole value ([`manifest::format_regex`]);
//! - a `remote_fetch` secret needs a `url` from its declaration's `fetch` block or from the
//!   profile: `https://`, or `http://` to a loopback host only ([`manifest::FetchUrl`]);
//!   `timeout_ms` defaults to 5000. Such a secret makes the plan carry a warning: the app
//!   cannot start offline;
//! - a target is `env` (a variable name) or `file` (a plain file name).
//!
//! **Profile overrides** (`[profiles.NAME.secrets] ID = {…}`) are all validated before anything
//! is planned, whether or not they take effect: the id must be declared in the scenario's graph,
//! the class must exist, a generator must be well formed (the same rules as declarations, the
//! override's fields applied over the declared generator, or over the defaults when it changes
//! the type), a format must compile, and every field must fit the class the secret ends up with:
//! `generator` only for `per_install_generated`; `label` and `format` only for `user_prompt`;
//! `url` and `timeout-ms` only for `remote_fetch`; nothing but `class` for `exclude`
//! (`description`, `target` and `required` fit every bundled class). An override of a secret the
//! bundle leaves out anyway (its resource is swapped out, or its node is optional) is not an
//! error, so that a profile can keep its settings while it tries a swap; it has no effect, and
//! the plan carries a warning saying so.
//!
//! The plan of a bundle keeps the secrets of the nodes it bundles and excludes, with a reason,
//! those of swapped-out resources, optional (unbundled) nodes, and stripped secrets. An
//! `infrastructure` secret whose resource stays in the bundle is an error that names the resource
//! and the swap that would remove it.
//!
//! **Invariant:** xbundle never reads a secret's value at build time. Values exist only on the
//! user's machine, produced by the runtime (generated, prompted or fetched); nothing here has a
//! value to leak into an artifact, a log line or a JSON message. Fetch URLs are shown through
//! [`redact_url`] (no `user:pass@`, no query) everywhere but in bundle.json itself.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::Value;

use crate::analysis::tier::Tier;
use crate::analysis::{Analysis, Catalog};
use crate::config::{BundleConfig, GeneratorDecl, Profile, SecretOverride};
use crate::diagnostic::Diagnostic;
use crate::service::{ServiceDef, ServiceKind};

/// The four classes, the generator types, resolved generators and secret targets are
/// bundle.json's: the `manifest` crate owns them and their rules.
pub use manifest::{
    GeneratorSpec as Generator, GeneratorType, SecretClass, SecretTarget as Target,
};

/// The class as bundle.json spells it.
pub fn class_id(class: SecretClass) -> &'static str {
    class.as_str()
}

/// What a tier does with a secret: a class, or leave it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handling {
    Class(SecretClass),
    Strip,
}

impl Handling {
    /// The class id, or `excluded`.
    pub fn id(self) -> &'static str {
        match self {
            Handling::Class(class) => class_id(class),
            Handling::Strip => "excluded",
        }
    }
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

/// Reads a generator written as JSON in a declaration (`{"type", "length", "charset"}`; every
/// field optional) and resolves it by the manifest's rules. The error says what is wrong,
/// without a location.
pub fn generator_from_json(value: &Value) -> Result<Generator, String> {
    let Value::Object(map) = value else {
        return Err("a generator must be an object".into());
    };
    if let Some(key) = map
        .keys()
        .find(|k| !["type", "length", "charset"].contains(&k.as_str()))
    {
        return Err(format!(
            "unknown generator field `{key}` (a generator has type, length and charset)"
        ));
    }
    let kind = match map.get("type") {
        None => None,
        Some(Value::String(kind)) => Some(GeneratorType::parse(kind)?),
        Some(other) => return Err(format!("generator type must be a string, found {other}")),
    };
    let length = match map.get("length") {
        None => None,
        Some(value) => {
            let length = value
                .as_u64()
                .ok_or_else(|| format!("generator length must be a whole number, found {value}"))?;
            match u32::try_from(length) {
                Ok(length) => Some(length),
                Err(_) => return Err(format!("generator length {length} is outside 8..=4096")),
            }
        }
    };
    let charset = match map.get("charset") {
        None => None,
        Some(Value::String(charset)) => Some(charset.as_str()),
        Some(other) => return Err(format!("generator charset must be a string, found {other}")),
    };
    Generator::resolve(kind, length, charset).map_err(|err| err.message)
}

/// A profile's generator override applied to `base` (the declared generator, if any): the
/// override's fields replace the base's; when it changes the type, the base is dropped and the
/// fields it leaves out take the defaults of the new type. Resolved like a declaration.
pub fn override_generator(
    base: Option<&Generator>,
    over: &GeneratorDecl,
) -> Result<Generator, String> {
    let kind = over.kind.as_deref().map(GeneratorType::parse).transpose()?;
    let base = base.filter(|base| kind.is_none_or(|kind| kind == base.kind));
    let kind = kind.or(base.map(|base| base.kind));
    let length = over.length.or(base.map(|base| base.length));
    let charset = match &over.charset {
        Some(charset) => Some(charset.clone()),
        // A base charset only carries over to a random generator.
        None if kind.unwrap_or_default() == GeneratorType::Random => base
            .and_then(|base| base.charset.as_ref())
            .map(|charset| charset.as_str().to_owned()),
        None => None,
    };
    Generator::resolve(kind, length, charset.as_deref()).map_err(|err| err.message)
}

/// What the plan (the secrets-manager contract, `secrets --bundle --message-format json`) says
/// of a prompted secret; assembly writes it as bundle.json's `prompt` and `format`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Prompt {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A regular expression the value must match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// What the plan says of a fetched secret, its timeout resolved; assembly writes it as
/// bundle.json's `fetch` ([`manifest::RemoteFetch`]), whose URL rule it has passed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Fetch {
    pub url: String,
    pub timeout_ms: u64,
}

/// Default `timeout_ms` of a fetch.
pub const FETCH_TIMEOUT_MS: u64 = 5000;

/// The default target of a secret: env `UPPER(id)`, `-` written `_`.
pub fn default_target(id: &str) -> Target {
    Target {
        kind: manifest::SecretTargetType::Env,
        name: id.to_ascii_uppercase().replace('-', "_"),
        extra: Default::default(),
    }
}

pub use manifest::redact_url;

fn check_regex(format: &str) -> Result<(), String> {
    manifest::format_regex(format).map(drop)
}

fn check_url(url: &str) -> Result<(), String> {
    manifest::check_fetch_url(url).map_err(|err| err.to_string())
}

fn check_timeout(timeout_ms: u64) -> Result<(), String> {
    manifest::url::check_fetch_timeout(timeout_ms)
}

/// A target as written (`type` and `name`), checked by the manifest's rules.
fn target(kind: &str, name: &str) -> Result<Target, String> {
    let target = Target {
        kind: manifest::SecretTargetType::parse(kind)?,
        name: name.to_owned(),
        extra: Default::default(),
    };
    target.check()?;
    Ok(target)
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub enum ClassSource {
    /// `[profiles.NAME.secrets] ID = {class = …}`.
    #[serde(rename = "profile")]
    Profile,
    /// The declaration's `tiers.<tier>`.
    #[serde(rename = "per-tier")]
    Tier,
    /// The declaration's `classification`.
    #[serde(rename = "declared")]
    Declared,
    /// Inferred from the declaration's generator, prompt or fetch block.
    #[serde(rename = "inferred")]
    Inferred,
}

impl ClassSource {
    pub fn id(self) -> &'static str {
        match self {
            ClassSource::Profile => "profile",
            ClassSource::Tier => "per-tier",
            ClassSource::Declared => "declared",
            ClassSource::Inferred => "inferred",
        }
    }
}

impl fmt::Display for ClassSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
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

    /// The name of the definition declaring it.
    pub fn owner_name(&self) -> &str {
        self.owner
            .split_once(':')
            .map_or(self.owner.as_str(), |(_, name)| name)
    }

    /// `resource postgres` / `scenario picker-wheel`.
    pub fn owner_words(&self) -> String {
        self.owner.replacen(':', " ", 1)
    }

    fn owner_kind(&self) -> ServiceKind {
        if self.owner.starts_with("scenario:") {
            ServiceKind::Scenario
        } else {
            ServiceKind::Resource
        }
    }

    /// The secret as a bundle carries it with `class`, the profile's override (if any) applied.
    /// Fails only for a `remote_fetch` secret without a URL (the override is assumed to have
    /// passed [`check_override`]).
    pub fn resolve(
        &self,
        class: SecretClass,
        profile: Option<&SecretOverride>,
    ) -> Result<PlannedSecret, String> {
        let mut secret = PlannedSecret {
            id: self.id.clone(),
            class,
            owner: self.owner.clone(),
            description: profile
                .and_then(|p| p.description.clone())
                .or(self.description.clone()),
            generator: None,
            prompt: None,
            fetch: None,
            target: profile
                .and_then(|p| p.target.as_ref())
                .map_or(Ok(self.target.clone()), |t| target(&t.kind, &t.name))?,
            required: profile.and_then(|p| p.required).unwrap_or(self.required),
        };
        match class {
            SecretClass::PerInstallGenerated => {
                secret.generator = Some(match profile.and_then(|p| p.generator.as_ref()) {
                    Some(over) => override_generator(self.generator.as_ref(), over)?,
                    None => self.generator.clone().unwrap_or_default(),
                });
            }
            SecretClass::UserPrompt => {
                let declared = self.prompt.clone().unwrap_or(Prompt {
                    label: None,
                    description: None,
                    format: None,
                });
                secret.prompt = Some(Prompt {
                    label: profile
                        .and_then(|p| p.label.clone())
                        .or(declared.label)
                        .or_else(|| Some(self.id.replace('_', " "))),
                    description: profile
                        .and_then(|p| p.description.clone())
                        .or(declared.description)
                        .or(self.description.clone()),
                    format: profile.and_then(|p| p.format.clone()).or(declared.format),
                });
            }
            SecretClass::RemoteFetch => {
                let url = profile
                    .and_then(|p| p.url.clone())
                    .or(self.fetch.as_ref().map(|f| f.url.clone()))
                    .ok_or_else(|| {
                        format!(
                            "secret `{}` is remote_fetch but has no url to fetch it from",
                            self.id
                        )
                    })?;
                secret.fetch = Some(Fetch {
                    url,
                    timeout_ms: profile
                        .and_then(|p| p.timeout_ms)
                        .or(self.fetch.as_ref().map(|f| f.timeout_ms))
                        .unwrap_or(FETCH_TIMEOUT_MS),
                });
            }
            SecretClass::Infrastructure => {}
        }
        Ok(secret)
    }
}

/// Validates a profile's override of `declaration` for `tier`, whether or not it takes effect:
/// its class, its generator, its format, its url and target, and that each field fits the class
/// the secret ends up with. The error says which field and why (the caller adds the profile).
pub fn check_override(
    declaration: &Declaration,
    tier: Tier,
    over: &SecretOverride,
) -> Result<Handling, String> {
    let (handling, source) = declaration.classify(tier, Some(over))?;
    let id = &declaration.id;
    let why = match source {
        ClassSource::Profile => "as the override says".to_string(),
        ClassSource::Tier => format!("from its declaration's tiers.{tier}"),
        ClassSource::Declared => "from its declaration's classification".to_string(),
        ClassSource::Inferred => "inferred from its declaration".to_string(),
    };
    let fields: [(&str, bool, Option<SecretClass>); 8] = [
        (
            "generator",
            over.generator.is_some(),
            Some(SecretClass::PerInstallGenerated),
        ),
        ("label", over.label.is_some(), Some(SecretClass::UserPrompt)),
        (
            "format",
            over.format.is_some(),
            Some(SecretClass::UserPrompt),
        ),
        ("url", over.url.is_some(), Some(SecretClass::RemoteFetch)),
        (
            "timeout-ms",
            over.timeout_ms.is_some(),
            Some(SecretClass::RemoteFetch),
        ),
        ("description", over.description.is_some(), None),
        ("target", over.target.is_some(), None),
        ("required", over.required.is_some(), None),
    ];
    for (field, given, fits) in fields {
        if !given {
            continue;
        }
        match (handling, fits) {
            (Handling::Strip, _) => {
                return Err(format!(
                    "`{field}` has no effect: `{id}` is excluded ({why}); drop the field, or give the secret a class it applies to"
                ));
            }
            (Handling::Class(class), Some(fits)) if class != fits => {
                return Err(format!(
                    "`{field}` applies to {} secrets only, but `{id}` is {} ({why})",
                    class_id(fits),
                    class_id(class)
                ));
            }
            _ => {}
        }
    }
    if let Some(over) = &over.generator {
        override_generator(declaration.generator.as_ref(), over)?;
    }
    if let Some(format) = &over.format {
        check_regex(format)?;
    }
    if let Some(url) = &over.url {
        check_url(url)?;
    }
    if let Some(timeout_ms) = over.timeout_ms {
        check_timeout(timeout_ms)?;
    }
    if let Some(over_target) = &over.target {
        target(&over_target.kind, &over_target.name)?;
    }
    if handling == Handling::Class(SecretClass::RemoteFetch)
        && over.url.is_none()
        && declaration.fetch.is_none()
    {
        return Err(format!(
            "`{id}` is remote_fetch ({why}) but has no url: add url = \"https://…\" to the override"
        ));
    }
    Ok(handling)
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
        if let Err(err) = manifest::check_id(id) {
            return Err(def.diagnostic(
                &["deployment", "secrets", id],
                format!("secret id: {err}"),
                "secret ids name files and variables of the running app: e.g. \"db_password\"",
            ));
        }
        let bad = |path: &[&str], message: String, help: &str| {
            let mut full = vec!["deployment", "secrets", id];
            full.extend_from_slice(path);
            def.diagnostic(&full, format!("secret `{id}`: {message}"), help)
        };
        let handling = |value: &Value, path: &[&str]| -> Result<Handling, Diagnostic> {
            value.as_str().unwrap_or("").parse().map_err(|err: String| {
                bad(path, err, "see the class list in the secrets documentation")
            })
        };
        let classification = map
            .get("classification")
            .or_else(|| map.get("class"))
            .map(|v| handling(v, &["classification"]))
            .transpose()?;
        let mut tiers = BTreeMap::new();
        if let Some(Value::Object(per_tier)) = map.get("tiers") {
            for (tier, value) in per_tier {
                let parsed: Tier = tier.parse().map_err(|err: String| {
                    bad(
                        &["tiers", tier],
                        err,
                        "tiers are tier-1-local … tier-5-enterprise",
                    )
                })?;
                tiers.insert(parsed, handling(value, &["tiers", tier])?);
            }
        }
        let generator = map
            .get("generator")
            .map(|g| {
                generator_from_json(g).map_err(|err| {
                    bad(
                        &["generator"],
                        err,
                        "a generator is {\"type\": \"random\" | \"uuid\" | \"hex\" | \"base64\", \"length\": 8..=4096, \"charset\": \"alnum\"}",
                    )
                })
            })
            .transpose()?;
        let prompt = match map.get("prompt") {
            None => None,
            Some(Value::Object(p)) => Some(Prompt {
                label: p.get("label").and_then(Value::as_str).map(str::to_string),
                description: p
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                format: p.get("format").and_then(Value::as_str).map(str::to_string),
            }),
            Some(_) => {
                return Err(bad(
                    &["prompt"],
                    "prompt must be an object".into(),
                    "write {\"label\": \"…\", \"description\": \"…\", \"format\": \"^…$\"}",
                ));
            }
        };
        if let Some(format) = prompt.as_ref().and_then(|p| p.format.as_deref())
            && let Err(err) = check_regex(format)
        {
            return Err(bad(
                &["prompt", "format"],
                err,
                "write a regular expression such as ^[A-Za-z0-9]{32,}$",
            ));
        }
        let fetch = match map.get("fetch") {
            None => None,
            Some(Value::Object(f)) => {
                let help = "write {\"url\": \"https://…\", \"timeout_ms\": 5000}";
                let Some(url) = f.get("url").and_then(Value::as_str) else {
                    return Err(bad(&["fetch"], "a fetch block needs a `url`".into(), help));
                };
                check_url(url).map_err(|err| bad(&["fetch", "url"], err, help))?;
                let timeout_ms = match f.get("timeout_ms") {
                    None => FETCH_TIMEOUT_MS,
                    Some(value) => {
                        let timeout = value.as_u64().ok_or_else(|| {
                            bad(
                                &["fetch", "timeout_ms"],
                                format!("timeout_ms must be a whole number, found {value}"),
                                help,
                            )
                        })?;
                        check_timeout(timeout)
                            .map_err(|err| bad(&["fetch", "timeout_ms"], err, help))?;
                        timeout
                    }
                };
                Some(Fetch {
                    url: url.to_string(),
                    timeout_ms,
                })
            }
            Some(_) => {
                return Err(bad(
                    &["fetch"],
                    "fetch must be an object".into(),
                    "write {\"url\": \"https://…\", \"timeout_ms\": 5000}",
                ));
            }
        };
        let target = match map.get("target").and_then(Value::as_object) {
            None => default_target(id),
            Some(t) => {
                let kind = t.get("type").and_then(Value::as_str).unwrap_or("env");
                let name = t
                    .get("name")
                    .and_then(Value::as_str)
                    .map_or_else(|| default_target(id).name, str::to_string);
                target(kind, &name).map_err(|err| {
                    bad(
                        &["target"],
                        err,
                        "write {\"type\": \"env\", \"name\": \"VARIABLE\"} or {\"type\": \"file\", \"name\": \"file-name\"}",
                    )
                })?
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Excluded {
    pub id: String,
    pub reason: String,
}

/// The secrets-manager contract: `{secrets: [...], excluded: [{id, reason}]}`, plus warnings.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub scenario: String,
    pub tier: Tier,
    pub secrets: Vec<PlannedSecret>,
    pub excluded: Vec<Excluded>,
    /// What the user should know, e.g. that a `remote_fetch` secret keeps the app from starting
    /// offline (URLs redacted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
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

/// The bundle's secret plan for `analysis` (already carrying the profile's swaps) on `tier`,
/// with a profile's `overrides`. Errors about an override name the secret; the caller adds the
/// profile (or calls [`plan_for_profile`], which also points into bundle.toml).
pub fn plan(
    catalog: &Catalog,
    analysis: &Analysis,
    tier: Tier,
    overrides: &BTreeMap<String, SecretOverride>,
) -> Result<Plan, Diagnostic> {
    plan_located(catalog, analysis, tier, overrides, &|_, diagnostic| {
        diagnostic
    })
}

/// [`plan`] for a profile of bundle.toml: an error about one of its overrides names the profile
/// and points at the override's entry in the file.
pub fn plan_for_profile(
    catalog: &Catalog,
    analysis: &Analysis,
    tier: Tier,
    config: &BundleConfig,
    profile: &Profile,
) -> Result<Plan, Diagnostic> {
    let overrides: BTreeMap<String, SecretOverride> = profile
        .decl
        .secrets
        .iter()
        .map(|(id, over)| (id.get_ref().clone(), over.get_ref().clone()))
        .collect();
    plan_located(catalog, analysis, tier, &overrides, &|id, diagnostic| {
        let mut located = Diagnostic::error(format!(
            "profile `{}`: {}",
            profile.name, diagnostic.message
        ));
        if let Some(key) = profile.decl.secrets.keys().find(|key| key.get_ref() == id) {
            located = located
                .in_file(config.path.clone(), &config.source)
                .at(key.span(), "this override");
        }
        if let Some(help) = &diagnostic.help {
            located = located.help(help.clone());
        }
        located
    })
}

type Locate<'a> = &'a dyn Fn(&str, Diagnostic) -> Diagnostic;

fn plan_located(
    catalog: &Catalog,
    analysis: &Analysis,
    tier: Tier,
    overrides: &BTreeMap<String, SecretOverride>,
    locate: Locate<'_>,
) -> Result<Plan, Diagnostic> {
    let declared = collect(catalog, analysis)?;
    // Every override, up front, whether or not it takes effect.
    for (id, over) in overrides {
        let Some((declaration, _)) = declared.iter().find(|(d, _)| &d.id == id) else {
            let ids: Vec<&str> = declared.iter().map(|(d, _)| d.id.as_str()).collect();
            return Err(locate(
                id,
                Diagnostic::error(format!(
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
                )),
            ));
        };
        check_override(declaration, tier, over).map_err(|err| {
            locate(
                id,
                Diagnostic::error(format!("override of secret `{id}`: {err}")).help(
                    "fix the entry in [profiles.NAME.secrets]: generator fits per_install_generated, label and format user_prompt, url and timeout-ms remote_fetch; description, target and required fit any class; exclude takes nothing but class",
                ),
            )
        })?;
    }
    let mut plan = Plan {
        scenario: analysis.scenario.clone(),
        tier,
        secrets: Vec::new(),
        excluded: Vec::new(),
        warnings: Vec::new(),
        violations: Vec::new(),
    };
    // Warnings by secret id, in id order.
    let mut warnings: Vec<(String, String)> = Vec::new();
    for (declaration, state) in declared {
        let node_name = declaration.owner_name().to_string();
        let profile = overrides.get(&declaration.id);
        let left_out = match &state {
            NodeState::SwappedFor(new) => {
                Some(format!("resource {node_name} is swapped for {new}"))
            }
            NodeState::Optional => Some(format!(
                "{} is optional and not bundled",
                declaration.owner_words()
            )),
            NodeState::Bundled => None,
        };
        if let Some(reason) = left_out {
            if profile.is_some() {
                warnings.push((
                    declaration.id.clone(),
                    format!(
                        "the profile's override of secret `{}` has no effect: {reason}",
                        declaration.id
                    ),
                ));
            }
            plan.excluded.push(Excluded {
                id: declaration.id.clone(),
                reason,
            });
            continue;
        }
        let (handling, source) = declaration
            .classify(tier, profile)
            .expect("overrides are checked above");
        let class = match handling {
            Handling::Strip => {
                plan.excluded.push(Excluded {
                    id: declaration.id.clone(),
                    reason: match source {
                        ClassSource::Profile => "excluded by the profile".to_string(),
                        ClassSource::Tier => format!("stripped on {tier} by its declaration"),
                        ClassSource::Declared | ClassSource::Inferred => {
                            "stripped by its declaration".to_string()
                        }
                    },
                });
                continue;
            }
            Handling::Class(class) => class,
        };
        if class == SecretClass::Infrastructure {
            plan.violations
                .push(infrastructure_violation(catalog, &declaration));
            plan.excluded.push(Excluded {
                id: declaration.id.clone(),
                reason: format!("infrastructure: {node_name} must be swapped out"),
            });
            continue;
        }
        let secret = declaration.resolve(class, profile).map_err(|err| {
            let help = format!(
                "add a fetch block {{\"url\": \"https://…\"}} to the declaration, or url = \"https://…\" to [profiles.NAME.secrets] {}",
                declaration.id
            );
            match catalog.get(declaration.owner_kind(), &node_name) {
                Ok(Some(def)) => def.diagnostic(&["deployment", "secrets", &declaration.id], err, help),
                _ => Diagnostic::error(err).help(help),
            }
        })?;
        if let Some(fetch) = &secret.fetch {
            warnings.push((
                secret.id.clone(),
                format!(
                    "secret `{}` is fetched at run time from {}: the app cannot start offline",
                    secret.id,
                    redact_url(&fetch.url)
                ),
            ));
        }
        plan.secrets.push(secret);
    }
    plan.secrets.sort_by(|a, b| a.id.cmp(&b.id));
    plan.excluded.sort_by(|a, b| a.id.cmp(&b.id));
    warnings.sort_by(|a, b| a.0.cmp(&b.0));
    plan.warnings = warnings.into_iter().map(|(_, text)| text).collect();
    Ok(plan)
}

/// The error for a plan's violations (see [`Plan::violations`]), `None` when it has none. One
/// violation is its own diagnostic; several make one error that names every secret, one per
/// line, with every distinct help line (never "and N more": each must be fixed, so each is
/// shown). `context` (e.g. "profile `x`") prefixes the message.
pub fn violations_error(violations: &[Diagnostic], context: Option<&str>) -> Option<Diagnostic> {
    let prefix = context.map_or(String::new(), |context| format!("{context}: "));
    match violations {
        [] => None,
        [one] => {
            let mut diagnostic = one.clone();
            diagnostic.message = format!("{prefix}{}", diagnostic.message);
            Some(diagnostic)
        }
        all => {
            let mut message = format!(
                "{prefix}{} infrastructure secrets would ship, but their resources stay in the bundle:",
                all.len()
            );
            let mut helps: Vec<&str> = Vec::new();
            for violation in all {
                message.push_str(&format!("\n  - {}", violation.message));
                if let Some(help) = violation.help.as_deref()
                    && !helps.contains(&help)
                {
                    helps.push(help);
                }
            }
            let diagnostic = Diagnostic::error(message);
            Some(if helps.is_empty() {
                diagnostic
            } else {
                diagnostic.help(helps.join("\n"))
            })
        }
    }
}

fn infrastructure_violation(catalog: &Catalog, declaration: &Declaration) -> Diagnostic {
    let node_name = declaration.owner_name();
    let message = format!(
        "secret `{}` of {} is infrastructure, but {node_name} stays in the bundle",
        declaration.id, declaration.owner
    );
    if declaration.owner_kind() == ServiceKind::Scenario {
        return Diagnostic::error(message).help(format!(
            "a scenario's own secret cannot be infrastructure in a bundle: classify `{}` for this tier (tiers.<tier> in its declaration) or in [profiles.NAME.secrets]",
            declaration.id
        ));
    }
    let swaps: Vec<String> = catalog
        .get(ServiceKind::Resource, node_name)
        .ok()
        .flatten()
        .and_then(|def| {
            def.deployment
                .as_ref()
                .map(|d| d.swappable_with.iter().map(|s| s.id.clone()).collect())
        })
        .unwrap_or_default();
    let help = match swaps.first() {
        None => format!(
            "infrastructure secrets never ship in a bundle: remove {node_name} from the bundle, or reclassify `{}` in [profiles.NAME.secrets]",
            declaration.id
        ),
        Some(to) => format!(
            "swap it out (swaps = {{ {node_name} = \"{to}\" }} in the profile, or `cargo xtask profile set NAME --swap {node_name}={to}`), or reclassify `{}` in [profiles.NAME.secrets]",
            declaration.id
        ),
    };
    Diagnostic::error(message).help(help)
}

/// `${secret.ID}` references in an env template (the manifest's template syntax).
pub fn referenced_secrets(template: &str) -> Vec<&str> {
    manifest::template::secret_refs(template)
}
