//! `secrets`, `assemble`, `export`, `check`: the profile-level commands.

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
use crate::secrets::{self, Handling};
use crate::service::ServiceKind;
use crate::shell::Shell;
use crate::stages::{self, Context, checksum_line};

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
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum SecretsCommand {
    /// The class of one declared secret for a tier
    Classify {
        resource: String,
        secret: String,
        #[arg(long)]
        tier: String,
    },
}

pub(super) fn secrets_command(
    cli: &Cli,
    args: &SecretsArgs,
    shell: &Shell,
) -> Result<u8, Diagnostic> {
    if let Some(SecretsCommand::Classify {
        resource,
        secret,
        tier,
    }) = &args.command
    {
        return classify(cli, resource, secret, tier, shell);
    }
    let Some(scenario) = &args.scenario else {
        return Err(
            Diagnostic::error("name a scenario: cargo xtask secrets SCENARIO")
                .help("or: cargo xtask secrets classify RESOURCE SECRET --tier T"),
        );
    };
    let (catalog, mut request) = analysis_request(cli, scenario, &args.tier, &args.swaps)?;
    let tier = request.tier.unwrap_or(Tier::Desktop);
    request.tier = Some(tier);
    let result = analysis::analyze(&catalog, &request)?;
    let plan = secrets::plan(&catalog, &result, tier, &BTreeMap::new())?;
    if args.bundle {
        if let Some(first) = plan.violations.first() {
            return Err(first.clone());
        }
        let value = json!({"secrets": plan.secrets, "excluded": plan.excluded});
        emit(shell, "secrets", value.clone(), args.json, || {
            let mut text = format!(
                "{scenario} on {tier}: {} secret(s) ship, {} excluded\n",
                plan.secrets.len(),
                plan.excluded.len()
            );
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
    let rows: Vec<serde_json::Value> = declared
        .iter()
        .map(|(declaration, state)| {
            let class = match declaration.classify(tier, None) {
                Ok((Handling::Class(class), source)) => json!({"class": secrets::class_id(class), "source": source}),
                Ok((Handling::Strip, source)) => json!({"class": "excluded", "source": source}),
                Err(err) => json!({"class": "invalid", "error": err}),
            };
            json!({"id": declaration.id, "owner": declaration.owner, "classification": class, "bundled": matches!(state, secrets::NodeState::Bundled), "target": declaration.target})
        })
        .collect();
    let value = json!({"scenario": scenario, "tier": tier, "secrets": rows});
    emit(shell, "secrets", value.clone(), args.json, || {
        let mut text = format!(
            "{scenario}: {} declared secret(s), classified for {tier}\n",
            rows.len()
        );
        for row in &rows {
            text.push_str(&format!(
                "  {:<24} {:<22} {}{}\n",
                row["id"].as_str().unwrap_or(""),
                row["classification"]["class"].as_str().unwrap_or(""),
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

fn classify(
    cli: &Cli,
    resource: &str,
    secret: &str,
    tier: &str,
    shell: &Shell,
) -> Result<u8, Diagnostic> {
    let tier: Tier = tier.parse().map_err(|err: String| {
        Diagnostic::error(err).help("pass --tier tier-2-desktop, 2 or desktop")
    })?;
    let layout = super::queries::analysis_layout(cli)?;
    let catalog = Catalog::new(layout);
    let Some(def) = catalog.get(ServiceKind::Resource, resource)? else {
        return Err(Diagnostic::error(format!(
            "unknown resource `{resource}`: {} does not exist",
            catalog
                .layout
                .definition_path(ServiceKind::Resource, resource)
        ))
        .help("secrets are declared in a resource's deployment.secrets"));
    };
    let declarations = secrets::declarations(&def)?;
    let Some(declaration) = declarations.iter().find(|d| d.id == secret) else {
        let ids: Vec<&str> = declarations.iter().map(|d| d.id.as_str()).collect();
        return Err(Diagnostic::error(format!(
            "resource `{resource}` declares no secret `{secret}`"
        ))
        .help(format!(
            "its secrets: {}",
            if ids.is_empty() {
                "(none)".into()
            } else {
                ids.join(", ")
            }
        )));
    };
    let (handling, source) = declaration
        .classify(tier, None)
        .map_err(Diagnostic::error)?;
    let class = match handling {
        Handling::Class(class) => secrets::class_id(class),
        Handling::Strip => "excluded",
    };
    let value = json!({"resource": resource, "id": secret, "tier": tier, "class": class, "source": source, "generator": declaration.generator, "prompt": declaration.prompt, "target": declaration.target});
    emit(shell, "classification", value.clone(), false, || {
        format!("{resource}/{secret} on {tier}: {class} ({source:?})\n")
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

fn profile_name(context: &Context, arg: &ProfileArg) -> Result<String, Diagnostic> {
    arg.profile
        .clone()
        .or_else(|| context.config.workspace.default_profile.clone())
        .ok_or_else(|| {
            Diagnostic::error("no profile named and bundle.toml has no workspace.default-profile")
                .help("pass a profile name; `cargo xtask profile list` shows them")
        })
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
    let context = Context::new(&workspace.root, workspace.config.clone())?;
    let name = profile_name(&context, arg)?;
    // Validate first so a bad profile is a diagnostic (exit 2), not a failed task.
    context.assemble(&Catalog::new(context.layout.clone()), &name)?;
    let graph = crate::plan::graph(&workspace.config, &workspace.root)?;
    let summary = workspace
        .engine
        .run(&graph, &[stages::assemble_id(&name)], shell)?;
    if !summary.success() {
        return Ok(exit::TASK_FAILED);
    }
    let dir = workspace
        .root
        .join(stages::profile_dir(&context.config.workspace.out, &name));
    let json = std::fs::read_to_string(dir.join("bundle.json")).map_err(Diagnostic::from)?;
    let checksum = checksum_line(&json);
    let relative = stages::profile_dir(&context.config.workspace.out, &name).join("bundle.json");
    if shell.is_json() {
        shell.json(&json!({"event": "exported", "profile": name, "path": relative, "sha256": checksum.split_whitespace().next()}));
    } else {
        shell.status(
            "Exported",
            GREEN,
            &format!("{relative} (sha256 {})", &checksum[..64]),
        );
    }
    Ok(0)
}

/// `check`: validates bundle.toml, the task graph and every profile (graph, fitness threshold,
/// secrets, manifest) without building or writing anything.
pub(super) fn check(root: &Utf8Path, shell: &Shell) -> Result<u8, Diagnostic> {
    let started = std::time::Instant::now();
    let context = Context::load(root)?;
    let graph = crate::plan::graph(&context.config, root)?;
    let catalog = Catalog::new(context.layout.clone());
    let mut problems = Vec::new();
    for profile in &context.config.profiles {
        match context.assemble(&catalog, &profile.name) {
            Ok(assembly) => {
                let report = &assembly.analysis.tiers[&assembly.tier];
                if shell.is_json() {
                    shell.json(&json!({"event": "check-profile", "profile": profile.name, "ok": true, "tier": assembly.tier, "fitness": report.score, "services": assembly.manifest.services.len(), "secrets": assembly.plan.secrets.len()}));
                } else {
                    shell.status(
                        "Checked",
                        GREEN,
                        &format!(
                            "profile {}: {} {:.2}, {} service(s), {} secret(s)",
                            profile.name,
                            assembly.tier,
                            report.score,
                            assembly.manifest.services.len(),
                            assembly.plan.secrets.len()
                        ),
                    );
                }
            }
            Err(diagnostic) => {
                if shell.is_json() {
                    shell.json(
                        &json!({"event": "check-profile", "profile": profile.name, "ok": false}),
                    );
                }
                problems.push(diagnostic);
            }
        }
    }
    let count = problems.len();
    let last = problems.pop();
    for problem in &problems {
        shell.error(problem);
    }
    if let Some(last) = last {
        let mut last = last;
        if count > 1 {
            last.message = format!("{} (check found {count} problems)", last.message);
        }
        return Err(last);
    }
    let elapsed = started.elapsed();
    if shell.is_json() {
        shell.json(&json!({"event": "check-finished", "ok": true, "profiles": context.config.profiles.len(), "tasks": graph.len(), "duration_ms": elapsed.as_millis() as u64}));
    } else {
        shell.status(
            "Finished",
            GREEN,
            &format!(
                "check: bundle.toml, {} task(s) and {} profile(s) are valid in {:.0} ms",
                graph.len(),
                context.config.profiles.len(),
                elapsed.as_secs_f64() * 1000.0
            ),
        );
    }
    Ok(0)
}
