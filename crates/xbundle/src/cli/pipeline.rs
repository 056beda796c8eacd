//! `secrets` (a scenario's secrets per tier, `--bundle` for the bundle-safe plan, `secrets
//! classify`), `assemble`, `export`, `check`: the profile-level commands, and `validate`, the
//! plan `check`, `bundle` and `run` share.

use std::collections::BTreeMap;

use anstyle::{AnsiColor, Style};
use camino::Utf8Path;
use clap::{Args, Subcommand};
use serde_json::json;

use super::queries::{analysis_request, emit};
use super::{Cli, Workspace};
use crate::analysis::tier::Tier;
use crate::analysis::{self, Catalog};
use crate::diagnostic::{Diagnostic, exit};
use crate::plan::Plan;
use crate::secrets;
use crate::service::ServiceKind;
use crate::shell::Shell;
use crate::stages::{self, Context, checksum_line};
use crate::units;

const GREEN: Style = AnsiColor::Green.on_default().bold();

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(super) struct SecretsArgs {
    #[command(subcommand)]
    command: Option<SecretsCommand>,
    /// Scenario whose secrets to list
    scenario: Option<String>,
    /// Tier to classify for (default: tier-2-desktop)
    #[arg(long)]
    tier: Option<String>,
    /// Apply a swap first (FROM=TO); repeatable
    #[arg(long = "swap", value_name = "FROM=TO")]
    swaps: Vec<String>,
    /// The bundle-safe plan: {secrets, excluded}; fails if an infrastructure secret would ship
    #[arg(long)]
    bundle: bool,
}

#[derive(Debug, Subcommand)]
enum SecretsCommand {
    /// The class of one declared secret for a tier, and where it comes from
    Classify {
        /// The resource or scenario declaring the secret (resources are searched first)
        #[arg(value_name = "SCENARIO_OR_RESOURCE")]
        owner: String,
        /// The secret's id
        secret: String,
        /// Tier to classify for
        #[arg(long)]
        tier: String,
    },
}

/// A plan's secret for output: the fetch URL without credentials or query.
fn shown(secret: &secrets::PlannedSecret) -> secrets::PlannedSecret {
    let mut secret = secret.clone();
    if let Some(fetch) = &mut secret.fetch {
        fetch.url = secrets::redact_url(&fetch.url);
    }
    secret
}

/// What `secrets SCENARIO` answers: every declared secret of the graph with its class.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct SecretsView {
    pub scenario: String,
    pub tier: Tier,
    pub secrets: Vec<SecretRow>,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct SecretRow {
    pub id: String,
    /// `resource:NAME` or `scenario:NAME`.
    pub owner: String,
    pub classification: RowClass,
    /// Whether its owner ships in the bundle (not swapped away or optional).
    pub bundled: bool,
    pub target: secrets::Target,
}

/// A secret's class for the tier, or why it has none.
#[derive(serde::Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(crate) enum RowClass {
    Classified {
        class: String,
        source: secrets::ClassSource,
    },
    Invalid {
        class: Invalid,
        error: String,
    },
}

#[derive(serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Invalid {
    Invalid,
}

/// What `secrets classify` answers.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct ClassificationView {
    pub owner: String,
    pub id: String,
    pub tier: Tier,
    pub class: String,
    pub source: secrets::ClassSource,
    pub target: secrets::Target,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator: Option<secrets::Generator>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<secrets::Prompt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch: Option<secrets::Fetch>,
    /// Why the class is not complete for this tier (a profile must give something).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What `secrets --bundle` answers: the secrets-manager contract, plus warnings.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct BundlePlanView {
    pub secrets: Vec<secrets::PlannedSecret>,
    pub excluded: Vec<secrets::Excluded>,
    pub warnings: Vec<String>,
}

pub(super) fn secrets_command(
    cli: &Cli,
    args: &SecretsArgs,
    shell: &Shell,
) -> Result<u8, Diagnostic> {
    if let Some(SecretsCommand::Classify {
        owner,
        secret,
        tier,
    }) = &args.command
    {
        return classify(cli, owner, secret, tier, shell);
    }
    let Some(scenario) = &args.scenario else {
        return Err(
            Diagnostic::error("name a scenario: cargo xtask secrets SCENARIO")
                .help("or: cargo xtask secrets classify SCENARIO_OR_RESOURCE SECRET --tier T"),
        );
    };
    let (catalog, mut request) = analysis_request(cli, scenario, &args.tier, &args.swaps)?;
    let tier = request.tier.unwrap_or(Tier::Desktop);
    request.tier = Some(tier);
    let result = analysis::analyze(&catalog, &request)?;
    let plan = secrets::plan(&catalog, &result, tier, &BTreeMap::new())?;
    if args.bundle {
        if let Some(diagnostic) = secrets::violations_error(&plan.violations, None) {
            return Err(diagnostic);
        }
        for warning in &plan.warnings {
            shell.warn(warning);
        }
        let view = BundlePlanView {
            secrets: plan.secrets.iter().map(shown).collect(),
            excluded: plan.excluded.clone(),
            warnings: plan.warnings.clone(),
        };
        let value = serde_json::to_value(&view).expect("plans serialize");
        emit(shell, "secrets", value, || {
            shell.outcome(
                "Planned",
                GREEN,
                &format!(
                    "{scenario} on {tier}: {} {}, {} excluded",
                    units::count(plan.secrets.len(), "secret"),
                    if plan.secrets.len() == 1 {
                        "ships"
                    } else {
                        "ship"
                    },
                    plan.excluded.len()
                ),
            );
            let mut text = String::new();
            for secret in &plan.secrets {
                text.push_str(&format!(
                    "  {:<24} {:<22} -> {} {}\n",
                    secret.id,
                    secrets::class_id(secret.class),
                    secret.target.kind,
                    secret.target.name
                ));
            }
            for excluded in &plan.excluded {
                text.push_str(&format!(
                    "  {:<24} excluded: {}\n",
                    excluded.id, excluded.reason
                ));
            }
            text
        });
        return Ok(0);
    }
    // Every declared secret of the graph with its class for the tier.
    let declared = secrets::collect(&catalog, &result)?;
    let view = SecretsView {
        scenario: scenario.clone(),
        tier,
        secrets: declared
            .iter()
            .map(|(declaration, state)| SecretRow {
                id: declaration.id.clone(),
                owner: declaration.owner.clone(),
                classification: match declaration.classify(tier, None) {
                    Ok((handling, source)) => RowClass::Classified {
                        class: handling.id().to_string(),
                        source,
                    },
                    Err(error) => RowClass::Invalid {
                        class: Invalid::Invalid,
                        error,
                    },
                },
                bundled: matches!(state, secrets::NodeState::Bundled),
                target: declaration.target.clone(),
            })
            .collect(),
    };
    let value = serde_json::to_value(&view).expect("secrets serialize");
    let rows: Vec<serde_json::Value> = value["secrets"].as_array().cloned().unwrap_or_default();
    emit(shell, "secrets", value.clone(), || {
        shell.outcome(
            "Classified",
            GREEN,
            &format!("{scenario} on {tier}: {}", secrets_by_source(&rows)),
        );
        let mut text = String::new();
        for row in &rows {
            let class = &row["classification"];
            text.push_str(&format!(
                "  {:<24} {:<22} {:<10} {}{}\n",
                row["id"].as_str().unwrap_or(""),
                class["class"].as_str().unwrap_or(""),
                class["source"].as_str().unwrap_or(""),
                row["owner"].as_str().unwrap_or(""),
                if row["bundled"] == true {
                    ""
                } else {
                    " (not bundled)"
                }
            ));
        }
        text
    });
    Ok(0)
}

/// How many secrets `rows` lists, by where each one's class comes from: `4 declared and
/// 1 inferred secrets`, `1 declared secret`, `no secrets`.
fn secrets_by_source(rows: &[serde_json::Value]) -> String {
    let mut by_source: BTreeMap<&str, usize> = BTreeMap::new();
    for row in rows {
        let source = row["classification"]["source"]
            .as_str()
            .unwrap_or("invalid");
        *by_source.entry(source).or_default() += 1;
    }
    let order = ["profile", "per-tier", "declared", "inferred", "invalid"];
    let mut parts: Vec<String> = order
        .iter()
        .filter_map(|source| by_source.get(source).map(|n| format!("{n} {source}")))
        .collect();
    parts.extend(
        by_source
            .iter()
            .filter(|(source, _)| !order.contains(source))
            .map(|(source, n)| format!("{n} {source}")),
    );
    let words = match parts.split_last() {
        None => return "no secrets".to_string(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    };
    format!("{words} {}", units::noun(rows.len(), "secret"))
}

/// `secrets classify OWNER SECRET --tier T`: the secret is looked up in the resource named
/// OWNER, then in the scenario.
fn classify(
    cli: &Cli,
    owner: &str,
    secret: &str,
    tier: &str,
    shell: &Shell,
) -> Result<u8, Diagnostic> {
    let tier = crate::names::tier(tier)?;
    let layout = super::queries::analysis_layout(cli)?;
    if !crate::config::is_plain_name(owner) {
        return Err(
            Diagnostic::error(format!("`{owner}` is not a scenario or resource name"))
                .help("name a directory under the resources or scenarios directory, not a path"),
        );
    }
    let catalog = Catalog::new(layout);
    let mut known: Vec<String> = Vec::new();
    let mut found = None;
    let mut defined = false;
    for kind in [ServiceKind::Resource, ServiceKind::Scenario] {
        let Some(def) = catalog.get(kind, owner)? else {
            continue;
        };
        defined = true;
        let declarations = secrets::declarations(&def)?;
        if let Some(declaration) = declarations.iter().find(|d| d.id == secret) {
            found = Some(declaration.clone());
            break;
        }
        known.extend(declarations.iter().map(|d| d.id.clone()));
    }
    if !defined {
        let mut names = catalog.layout.resource_names();
        names.extend(catalog.layout.scenario_names());
        return Err(Diagnostic::error(format!(
            "unknown resource or scenario `{owner}`: neither {} nor {} exists",
            catalog.layout.definition_path(ServiceKind::Resource, owner),
            catalog.layout.definition_path(ServiceKind::Scenario, owner)
        ))
        .help(crate::names::help(
            owner,
            "resources and scenarios",
            names.iter().map(String::as_str),
        )));
    }
    let Some(declaration) = found else {
        return Err(
            Diagnostic::error(format!("`{owner}` declares no secret `{secret}`")).help(
                crate::names::help(secret, "its secrets", known.iter().map(String::as_str)),
            ),
        );
    };
    let (handling, source) = declaration
        .classify(tier, None)
        .map_err(Diagnostic::error)?;
    let mut view = ClassificationView {
        owner: declaration.owner.clone(),
        id: secret.to_string(),
        tier,
        class: handling.id().to_string(),
        source,
        target: declaration.target.clone(),
        generator: None,
        prompt: None,
        fetch: None,
        note: None,
    };
    let mut details = Vec::new();
    if let secrets::Handling::Class(class) = handling {
        match declaration.resolve(class, None) {
            Ok(resolved) => {
                let shown = shown(&resolved);
                view.generator = shown.generator;
                view.prompt = shown.prompt;
                view.fetch = shown.fetch;
                if let Some(generator) = &resolved.generator {
                    details.push(format!(
                        "  generator: {}, length {}{}\n",
                        generator.kind.id(),
                        generator.length,
                        generator
                            .charset
                            .as_ref()
                            .map_or(String::new(), |c| format!(", charset {c}"))
                    ));
                }
                if let Some(prompt) = &resolved.prompt {
                    for (name, text) in [
                        ("label", &prompt.label),
                        ("description", &prompt.description),
                        ("format", &prompt.format),
                    ] {
                        if let Some(text) = text {
                            details.push(format!("  prompt {name}: {text}\n"));
                        }
                    }
                }
                if let Some(fetch) = &resolved.fetch {
                    details.push(format!(
                        "  fetch: {} (timeout {} ms)\n",
                        secrets::redact_url(&fetch.url),
                        fetch.timeout_ms
                    ));
                }
            }
            Err(err) => {
                view.note = Some(format!("{err}: a profile must give one"));
                details.push(format!("  note: {err}: a profile must give one\n"));
            }
        }
    }
    let value = serde_json::to_value(&view).expect("classifications serialize");
    emit(shell, "classification", value, || {
        shell.outcome(
            "Classified",
            GREEN,
            &format!(
                "{secret} ({}) on {tier}: {} ({source})",
                declaration.owner_words(),
                handling.id()
            ),
        );
        let mut text = String::new();
        text.push_str(&details.concat());
        text.push_str(&format!(
            "  target: {} {}\n",
            declaration.target.kind, declaration.target.name
        ));
        text
    });
    Ok(0)
}

#[derive(Debug, Args)]
pub(super) struct ProfileArg {
    /// Profile name (default: workspace.default-profile)
    profile: Option<String>,
}

#[derive(Debug, Args)]
pub(super) struct ExportArgs {
    #[command(flatten)]
    pub(super) profile: ProfileArg,
    /// Assemble again even if the cache has the result
    #[arg(long)]
    pub(super) force: bool,
}

/// The profile named (or the default one), checked to exist: a near miss is answered before
/// anything runs.
fn profile_name(context: &Context, arg: &ProfileArg) -> Result<String, Diagnostic> {
    let name = arg
        .profile
        .clone()
        .or_else(|| context.config.workspace.default_profile.clone())
        .ok_or_else(|| {
            Diagnostic::error("no profile named and bundle.toml has no workspace.default-profile")
                .help("pass a profile name; `cargo xtask profile list` shows them")
        })?;
    crate::names::profile(&context.config, &context.root, &name)?;
    Ok(name)
}

/// `assemble [PROFILE]`: bundle.json on stdout, nothing written.
pub(super) fn assemble(root: &Utf8Path, arg: &ProfileArg, shell: &Shell) -> Result<u8, Diagnostic> {
    let context = Context::load(root)?;
    let name = profile_name(&context, arg)?;
    let catalog = Catalog::new(context.layout.clone());
    let assembly = context.assemble(&catalog, &name)?;
    if shell.is_json() {
        let manifest: serde_json::Value =
            serde_json::from_str(&assembly.json).expect("manifests are JSON");
        shell.json(&json!({"event": "manifest", "profile": name, "manifest": manifest}));
    } else {
        shell.print(&assembly.json);
    }
    Ok(0)
}

/// `export [PROFILE]`: runs `assemble:<profile>` (cached) and reports the files and checksum.
pub(super) fn export(
    workspace: &Workspace,
    arg: &ProfileArg,
    shell: &Shell,
) -> Result<u8, Diagnostic> {
    let plan = crate::plan::plan(&workspace.config, &workspace.root, &workspace.tools)?;
    let context = &plan.context;
    let name = profile_name(context, arg)?;
    // One assembly, in the task (which depends on no other): a bad profile fails it, exit 2
    // with the located diagnostic, and nothing is written.
    let summary = workspace
        .engine
        .run(&plan.graph, &[stages::assemble_id(&name)], shell)?;
    if !summary.success() {
        return Ok(exit::code_of_failures(&summary));
    }
    let dir = workspace
        .root
        .join(stages::profile_dir(&context.config.workspace.out, &name));
    let json = std::fs::read_to_string(dir.join("bundle.json")).map_err(Diagnostic::from)?;
    let checksum = checksum_line(&json);
    let relative = stages::profile_dir(&context.config.workspace.out, &name).join("bundle.json");
    if shell.is_json() {
        let manifest: serde_json::Value =
            serde_json::from_str(&json).map_err(|err| Diagnostic::internal(err.to_string()))?;
        shell.json(&json!({"event": "exported", "profile": name, "path": relative, "sha256": checksum.split_whitespace().next(), "manifest": manifest}));
    } else {
        shell.status(
            "Exported",
            GREEN,
            &format!("{relative} (sha256 {})", &checksum[..64]),
        );
    }
    Ok(0)
}

#[derive(Debug, Args)]
pub(super) struct PublishArgs {
    #[command(flatten)]
    pub(super) profile: ProfileArg,
    /// Publish again even if the cache has the result
    #[arg(long)]
    pub(super) force: bool,
}

/// `publish [PROFILE]`: the release files (`SHA256SUMS`, the update manifests, `release.json`)
/// of every platform and format the profile packages, from the packages already in
/// `<out>/<profile>/packages/` (built here, or gathered from the runners that built each
/// platform: CI's publish job), with the exported bundle.json's version. Runs
/// `assemble:<profile>` and then `publish:<profile>` without its package tasks: nothing is
/// built, every artifact must be there (exit 2 naming the missing ones, nothing written).
pub(super) fn publish(
    workspace: &Workspace,
    arg: &ProfileArg,
    shell: &Shell,
) -> Result<u8, Diagnostic> {
    let plan = crate::plan::plan(&workspace.config, &workspace.root, &workspace.tools)?;
    let context = &plan.context;
    let name = profile_name(context, arg)?;
    let profile = context
        .config
        .profiles
        .iter()
        .find(|profile| profile.name == name)
        .ok_or_else(|| Diagnostic::internal(format!("profile {name} vanished")))?;
    let out = &context.config.workspace.out;
    let platforms =
        crate::assemble::profile_platforms(&context.config, profile, &context.platforms)?;
    let artifacts: Vec<crate::publish::Artifact> = platforms
        .iter()
        .flat_map(|platform| {
            crate::package::formats(profile, platform)
                .into_iter()
                .map(|format| {
                    crate::publish::Artifact::of(
                        out,
                        &name,
                        platform,
                        &format,
                        &context.config.sign,
                    )
                })
        })
        .collect();
    if artifacts.is_empty() {
        return Err(Diagnostic::error(format!(
            "profile {name} packages nothing: no platform of it has a format"
        ))
        .help(format!(
            "give it platforms: `cargo xtask profile set {name} --platform linux-x64`"
        )));
    }
    let tree = engine::confine::Dir::open_root(workspace.root.as_std_path())
        .map_err(|err| Diagnostic::error(err.to_string()))?;
    let missing: Vec<String> = artifacts
        .iter()
        .filter(|artifact| {
            !matches!(
                tree.lstat(artifact.path.as_str()),
                Ok(Some((engine::confine::Kind::File, _)))
            )
        })
        .map(|artifact| artifact.path.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(Diagnostic::error(format!(
            "{} of profile {name} {} not there: {}; nothing was written",
            units::count(missing.len(), "package"),
            if missing.len() == 1 { "is" } else { "are" },
            missing.join(", ")
        ))
        .help(format!(
            "build them (`cargo xtask bundle {name}`), or gather every platform's packages into {} first (a CI publish job downloads them from the build jobs)",
            crate::publish::packages_dir(out, &name)
        )));
    }
    let epoch = crate::package::epoch::source_date_epoch(&workspace.root)
        .map_err(|bad| Diagnostic::error(bad.to_string()).help(bad.help()))?;
    let assemble = stages::assemble_id(&name);
    let mut spec = crate::publish::spec(crate::publish::PublishPlan {
        profile: name.clone(),
        out: out.clone(),
        artifacts,
        manifest: stages::profile_dir(out, &name).join("bundle.json"),
        stage: assemble.clone(),
        epoch,
    });
    // The packages are inputs here, not tasks: nothing is built.
    spec.deps = vec![assemble.clone()];
    let assembly = plan
        .graph
        .get(&assemble)
        .cloned()
        .ok_or_else(|| Diagnostic::internal(format!("no task {assemble}")))?;
    let id = spec.id.clone();
    let graph = engine::TaskGraph::new(vec![assembly, spec])
        .map_err(|err| Diagnostic::internal(err.to_string()))?;
    let summary = workspace.engine.run(&graph, &[id], shell)?;
    Ok(if summary.success() {
        0
    } else {
        exit::code_of_failures(&summary)
    })
}

/// The validation `check`, `bundle` and `run` share: the plan (paths, graph, ownership of
/// outputs, see [`crate::plan`]). Profiles are assembled by their tasks (`bundle`, `run`) or by
/// `check`, never twice in a run. Returns the plan.
pub(super) fn validate(workspace: &Workspace, _shell: &Shell) -> Result<Plan, Diagnostic> {
    crate::plan::plan(&workspace.config, &workspace.root, &workspace.tools)
}

/// Every profile that fails to assemble is an error; all are reported, the last is returned.
fn refuse_bad_profiles(profiles: &stages::ProfileResults, shell: &Shell) -> Result<(), Diagnostic> {
    let mut problems: Vec<Diagnostic> = profiles
        .iter()
        .filter_map(|(_, result)| result.as_ref().err().cloned())
        .collect();
    let count = problems.len();
    let Some(mut last) = problems.pop() else {
        return Ok(());
    };
    for problem in &problems {
        shell.error(problem);
    }
    if count > 1 {
        last.message = format!("{} ({count} profiles have problems)", last.message);
    }
    Err(last)
}

/// `check`: validates bundle.toml, the task graph and every profile (graph, fitness threshold,
/// secrets, manifest) without building or writing anything: exactly what `bundle` validates.
pub(super) fn check(workspace: &Workspace, shell: &Shell) -> Result<u8, Diagnostic> {
    let started = std::time::Instant::now();
    let config = &workspace.config;
    // Graph-level problems (paths, cycles, overlapping outputs) stop here.
    let plan = crate::plan::plan(config, &workspace.root, &workspace.tools)?;
    let profiles = stages::assemble_all(&plan.context);
    for (name, result) in &profiles {
        match result {
            Ok(assembly) => {
                let report = &assembly.analysis.tiers[&assembly.tier];
                if shell.is_json() {
                    shell.json(&json!({"event": "check-profile", "profile": name, "ok": true, "tier": assembly.tier, "fitness": report.score, "services": assembly.manifest.services.len(), "secrets": assembly.plan.secrets.len()}));
                } else {
                    shell.status(
                        "Checked",
                        GREEN,
                        &format!(
                            "profile {}: {} {}, {}, {}",
                            name,
                            assembly.tier,
                            units::score(report.score),
                            units::count(assembly.manifest.services.len(), "service"),
                            units::count(assembly.plan.secrets.len(), "secret")
                        ),
                    );
                }
            }
            Err(_) => {
                if shell.is_json() {
                    shell.json(&json!({"event": "check-profile", "profile": name, "ok": false}));
                }
            }
        }
    }
    refuse_bad_profiles(&profiles, shell)?;
    let elapsed = started.elapsed();
    if shell.is_json() {
        shell.json(&json!({"event": "check-finished", "ok": true, "profiles": config.profiles.len(), "tasks": plan.graph.len(), "duration_ms": elapsed.as_millis() as u64}));
    } else {
        shell.status(
            "Finished",
            GREEN,
            &format!(
                "check: bundle.toml, {} and {} are valid in {}",
                units::count(plan.graph.len(), "task"),
                units::count(config.profiles.len(), "profile"),
                units::duration_ms(elapsed.as_millis() as u64)
            ),
        );
    }
    Ok(0)
}
