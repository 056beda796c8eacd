//! `profile list | show NAME | create NAME --scenario S --tier T [--swap FROM=TO]…
//! [--platform P]… | set NAME [--swap FROM=TO]… [--platform P]…`: profiles in bundle.toml,
//! edited in place (`--swap FROM=` removes a swap).
//!
//! This module wires arguments, reading, writing and output; the text editing is
//! [`crate::profiles`]. Every edit builds the whole new text, re-parses it, validates the
//! edited profile against the repository (its scenario exists, its swaps apply, as `analyze`
//! checks them; then the plan and the profile's assembly, as `check` runs them:
//! [`would_pass_check`]) and only then replaces bundle.toml, atomically (temporary file, then
//! rename, keeping the file's permissions). On any error nothing is written.
//! An edit holds [`edit_lock`] (a `flock` on bundle.toml) from reading the file to replacing
//! it, so two edits at once
//! (two `serve`s, a server and the command line) each see the other's result: none is lost.

use std::io::Write as _;

use anstyle::{AnsiColor, Style};
use camino::{Utf8Path, Utf8PathBuf};
use clap::Subcommand;
use serde_json::{Value, json};

use super::{Cli, find_root};
use crate::analysis::tier::Tier;
use crate::analysis::{Analysis, Catalog, Layout};
use crate::config::{self, BundleConfig, Profile};
use crate::diagnostic::Diagnostic;
use crate::platform;
use crate::profiles::{self, SwapEdit};
use crate::shell::Shell;

const GREEN: Style = AnsiColor::Green.on_default().bold();

#[derive(Debug, Subcommand)]
pub(super) enum ProfileCommand {
    /// List the profiles of bundle.toml
    List,
    /// Show one profile and its fitness for its tier after its swaps
    Show {
        /// Profile name (a [profiles.NAME] of bundle.toml)
        name: String,
    },
    /// Add a profile to bundle.toml
    Create {
        /// Name of the new profile (written as [profiles.NAME])
        name: String,
        /// The scenario to bundle (a directory under the scenarios directory)
        #[arg(long)]
        scenario: String,
        /// Deployment tier (tier-2-desktop, 2, desktop, …); written as its id
        #[arg(long)]
        tier: String,
        /// Swap a resource (FROM=TO); repeatable
        #[arg(long = "swap", value_name = "FROM=TO")]
        swaps: Vec<String>,
        /// A target platform (a file platforms/PLATFORM.toml); repeatable
        #[arg(long = "platform", value_name = "PLATFORM")]
        platforms: Vec<String>,
    },
    /// Change a profile in bundle.toml
    Set {
        /// Profile name (a [profiles.NAME] of bundle.toml)
        name: String,
        /// Swap a resource (FROM=TO), or remove a swap (FROM=); repeatable
        #[arg(long = "swap", value_name = "FROM=TO")]
        swaps: Vec<String>,
        /// Add a target platform (a file platforms/PLATFORM.toml); repeatable
        #[arg(long = "platform", value_name = "PLATFORM")]
        platforms: Vec<String>,
    },
}

/// bundle.toml as read: where it is, its text and its parsed form.
struct File {
    root: Utf8PathBuf,
    path: Utf8PathBuf,
    source: String,
    config: BundleConfig,
}

fn read(cli: &Cli) -> Result<File, Diagnostic> {
    let root = find_root(cli.root.as_deref())?;
    let path = root.join(config::FILE_NAME);
    let source = config::read_bundle_toml(&path, Utf8Path::new(config::FILE_NAME))?;
    let config = BundleConfig::parse(&source, Utf8Path::new(config::FILE_NAME))?;
    config.check_on_disk(&root)?;
    Ok(File {
        root,
        path,
        source,
        config,
    })
}

fn catalog(file: &File) -> Catalog {
    Catalog::new(Layout {
        root: file.root.clone(),
        scenarios: file.config.workspace.scenarios.clone(),
        resources: file.config.workspace.resources.clone(),
    })
}

pub(super) fn run(cli: &Cli, command: &ProfileCommand, shell: &Shell) -> Result<u8, Diagnostic> {
    match command {
        ProfileCommand::List => list(&read(cli)?, shell),
        ProfileCommand::Show { name } => {
            let file = read(cli)?;
            crate::names::profile(&file.config, &file.root, name)?;
            show(&file, name, shell)
        }
        ProfileCommand::Create {
            name,
            scenario,
            tier,
            swaps,
            platforms,
        } => {
            let tier = crate::names::tier(tier)?;
            let _lock = edit_lock(cli)?;
            let file = read(cli)?;
            crate::names::scenario(
                &crate::names::layout(&file.config, &file.root),
                Some(&file.config),
                scenario,
            )?;
            let edits = profiles::parse_swap_edits(swaps)?;
            check_platforms(&file.root, platforms)?;
            let mut text = profiles::create(&file.source, name, scenario, tier)?;
            if !edits.is_empty() {
                text = profiles::set_swaps(&text, name, &edits)?;
            }
            if !platforms.is_empty() {
                text = profiles::add_platforms(&text, name, platforms)?;
            }
            let mut changes = vec![
                format!("scenario {scenario}"),
                format!("tier {}", tier.id()),
            ];
            changes.extend(edits.iter().map(SwapEdit::to_string));
            changes.extend(platforms.iter().map(|p| format!("platform {p}")));
            commit(&file, name, text, "Created", changes, shell)
        }
        ProfileCommand::Set {
            name,
            swaps,
            platforms,
        } => {
            if swaps.is_empty() && platforms.is_empty() {
                return Err(
                    Diagnostic::error(format!("nothing to change in profile `{name}`"))
                        .help("pass --swap FROM=TO, --swap FROM= (to remove) or --platform P"),
                );
            }
            let edits = profiles::parse_swap_edits(swaps)?;
            let _lock = edit_lock(cli)?;
            let file = read(cli)?;
            crate::names::profile(&file.config, &file.root, name)?;
            check_platforms(&file.root, platforms)?;
            let mut text = file.source.clone();
            if !edits.is_empty() {
                text = profiles::set_swaps(&text, name, &edits)?;
            }
            if !platforms.is_empty() {
                text = profiles::add_platforms(&text, name, platforms)?;
            }
            let mut changes: Vec<String> = edits.iter().map(SwapEdit::to_string).collect();
            changes.extend(platforms.iter().map(|p| format!("platform {p}")));
            commit(&file, name, text, "Updated", changes, shell)
        }
    }
}

/// An exclusive `flock` on bundle.toml itself, held by an edit from reading the file to
/// replacing it. The file is replaced by a rename (a new inode), so once locked it is checked to
/// still be the file at that name, else the new one is locked instead. Nothing is created, and
/// a link at bundle.toml is never opened. `None` when there is no bundle.toml (reading it then
/// says so).
fn edit_lock(cli: &Cli) -> Result<Option<std::fs::File>, Diagnostic> {
    use std::os::unix::fs::MetadataExt as _;
    let root = find_root(cli.root.as_deref())?;
    let fail = |err: String| {
        Diagnostic::error(format!("could not lock {}: {err}", config::FILE_NAME))
            .help("check that bundle.toml is a readable regular file")
    };
    let tree =
        engine::confine::Dir::open_root(root.as_std_path()).map_err(|e| fail(e.to_string()))?;
    let identity = |file: &std::fs::File| {
        file.metadata()
            .map(|meta| (meta.dev(), meta.ino()))
            .map_err(|e| fail(e.to_string()))
    };
    loop {
        let Some((file, _)) = tree
            .open_file(config::FILE_NAME)
            .map_err(|e| fail(e.to_string()))?
        else {
            return Ok(None);
        };
        file.lock().map_err(|e| fail(e.to_string()))?;
        let now = tree
            .open_file(config::FILE_NAME)
            .map_err(|e| fail(e.to_string()))?;
        match now {
            Some((current, _)) if identity(&current)? == identity(&file)? => return Ok(Some(file)),
            // Replaced while this edit waited: lock the file that is there now.
            _ => continue,
        }
    }
}

/// Every platform must be a file `platforms/<id>.toml`.
fn check_platforms(root: &Utf8Path, platforms: &[String]) -> Result<(), Diagnostic> {
    if platforms.is_empty() {
        return Ok(());
    }
    let known: Vec<String> = platform::load_all(root)?
        .into_iter()
        .map(|p| p.id)
        .collect();
    for wanted in platforms {
        if !known.contains(wanted) {
            return Err(Diagnostic::error(format!(
                "unknown platform `{wanted}`: platforms/{wanted}.toml does not exist"
            ))
            .help(format!(
                "{}; a new platform is a file in platforms/",
                crate::names::help(wanted, "known platforms", known.iter().map(String::as_str))
            )));
        }
    }
    Ok(())
}

/// Validates the new text and replaces bundle.toml with it; prints one status line.
fn commit(
    file: &File,
    name: &str,
    text: String,
    verb: &str,
    changes: Vec<String>,
    shell: &Shell,
) -> Result<u8, Diagnostic> {
    let config = BundleConfig::parse(&text, Utf8Path::new(config::FILE_NAME)).map_err(|err| {
        Diagnostic::internal(format!(
            "the edited bundle.toml does not parse (nothing was written): {}",
            err.message
        ))
    })?;
    let profile = config
        .profile(name)
        .ok_or_else(|| Diagnostic::internal(format!("profile `{name}` vanished while editing")))?;
    profiles::check(&catalog(file), profile)?;
    would_pass_check(file, &config, name, verb == "Created")?;
    let changed = text != file.source;
    if changed {
        write_keeping_mode(&file.path, &text)?;
    }
    let changes_text = changes.join(", ");
    if shell.is_json() {
        shell.json(&json!({
            "event": "profile-updated",
            "name": name,
            "action": verb.to_ascii_lowercase(),
            "changes": changes,
            "written": changed,
        }));
    } else if changed {
        shell.status(verb, GREEN, &format!("profile {name}: {changes_text}"));
    } else {
        shell.status(
            "Unchanged",
            GREEN,
            &format!("profile {name} already has {changes_text}"),
        );
    }
    Ok(0)
}

/// The validation `cargo xtask check` runs (the plan, then the profile's assembly: fitness
/// threshold, secrets, manifest), on the edited configuration, before anything is written: an
/// edit never leaves a bundle.toml that `check` rejects because of this profile.
fn would_pass_check(
    file: &File,
    config: &BundleConfig,
    name: &str,
    creating: bool,
) -> Result<(), Diagnostic> {
    let explain = |mut diagnostic: Diagnostic| {
        diagnostic.message = format!(
            "profile `{name}` would not pass `cargo xtask check` (nothing was written): {}",
            diagnostic.message
        );
        if creating {
            // The profile does not exist yet: `profile set` cannot fix it, `create` can.
            let help = diagnostic.help.take().unwrap_or_default();
            diagnostic.help = Some(format!(
                "{help}\n`profile create {name} --scenario … --tier … --swap FROM=TO` creates it with its swaps"
            ));
        }
        diagnostic
    };
    let tools = crate::toolchain::Toolchains::new(
        file.root.as_std_path(),
        None,
        engine::EngineConfig::new(file.root.as_std_path()).env,
    );
    let plan = crate::plan::plan(config, &file.root, &tools).map_err(explain)?;
    plan.context
        .assemble(&Catalog::new(plan.context.layout.clone()), name)
        .map_err(explain)?;
    Ok(())
}

/// Replaces `path` by a temporary file renamed over it, with the old file's permissions (a
/// temporary file is created 0600; bundle.toml must stay readable as before). A symbolic link
/// is followed, so the file it names is replaced and the link kept.
fn write_keeping_mode(path: &Utf8Path, text: &str) -> Result<(), Diagnostic> {
    let target = path
        .canonicalize_utf8()
        .unwrap_or_else(|_| path.to_path_buf());
    let fail =
        |err: std::io::Error| Diagnostic::internal(format!("could not write {target}: {err}"));
    let mut temp = engine::fsutil::temp_beside(target.as_std_path()).map_err(fail)?;
    temp.write_all(text.as_bytes()).map_err(fail)?;
    if let Ok(metadata) = std::fs::metadata(&target) {
        temp.as_file()
            .set_permissions(metadata.permissions())
            .map_err(fail)?;
    }
    engine::fsutil::persist(temp, target.as_std_path()).map_err(fail)
}

fn tier_id(profile: &Profile) -> String {
    profile.decl.tier.get_ref().parse::<Tier>().map_or_else(
        |_| profile.decl.tier.get_ref().clone(),
        |t| t.id().to_string(),
    )
}

fn swaps_text(profile: &Profile) -> Vec<String> {
    profile
        .decl
        .swaps
        .iter()
        .map(|(from, to)| format!("{}={}", from.get_ref(), to.get_ref()))
        .collect()
}

fn strings<'a>(items: impl IntoIterator<Item = &'a toml::Spanned<String>>) -> Vec<String> {
    items.into_iter().map(|s| s.get_ref().clone()).collect()
}

/// A profile's settings as `profile list|show` (and the API) give them.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct ProfileView {
    pub name: String,
    /// Whether it is `workspace.default-profile`.
    pub default: bool,
    pub scenario: String,
    /// The tier's id (as written, when it is not a tier).
    pub tier: String,
    pub platforms: Vec<String>,
    pub formats: Vec<String>,
    /// FROM -> TO.
    pub swaps: std::collections::BTreeMap<String, String>,
    pub min_fitness: Option<f64>,
    pub version: Option<String>,
    pub env: std::collections::BTreeMap<String, String>,
    /// The ids of the secrets it configures.
    pub secrets: Vec<String>,
}

/// The settings of a profile as one JSON event.
fn profile_json(config: &BundleConfig, profile: &Profile) -> Value {
    let decl = &profile.decl;
    let view = ProfileView {
        name: profile.name.clone(),
        default: config.workspace.default_profile.as_deref() == Some(profile.name.as_str()),
        scenario: decl.scenario.get_ref().clone(),
        tier: tier_id(profile),
        platforms: strings(&decl.platforms),
        formats: strings(&decl.formats),
        swaps: decl
            .swaps
            .iter()
            .map(|(k, v)| (k.get_ref().clone(), v.get_ref().clone()))
            .collect(),
        min_fitness: decl.min_fitness.as_ref().map(|m| *m.get_ref()),
        version: decl.version.as_ref().map(|v| v.get_ref().clone()),
        env: decl
            .env
            .iter()
            .map(|(k, v)| (k.get_ref().clone(), v.get_ref().clone()))
            .collect(),
        secrets: decl.secrets.keys().map(|k| k.get_ref().clone()).collect(),
    };
    let mut value = serde_json::to_value(view).expect("profiles serialize");
    value["event"] = json!("profile");
    value
}

fn list(file: &File, shell: &Shell) -> Result<u8, Diagnostic> {
    let config = &file.config;
    // In the order of the file, as the user wrote them.
    let mut in_file_order: Vec<&Profile> = config.profiles.iter().collect();
    in_file_order.sort_by_key(|profile| profile.span.start);
    if shell.is_json() {
        for profile in &in_file_order {
            shell.json(&profile_json(config, profile));
        }
        return Ok(0);
    }
    if config.profiles.is_empty() {
        shell.print(
            "no profiles in bundle.toml; add one with `cargo xtask profile create NAME --scenario S --tier T`\n",
        );
        return Ok(0);
    }
    let header = ["NAME", "SCENARIO", "TIER", "SWAPS", "PLATFORMS"].map(String::from);
    let mut rows = vec![header];
    for profile in &in_file_order {
        let is_default = config.workspace.default_profile.as_deref() == Some(profile.name.as_str());
        let platforms = strings(&profile.decl.platforms);
        rows.push([
            format!(
                "{}{}",
                profile.name,
                if is_default { " (default)" } else { "" }
            ),
            profile.decl.scenario.get_ref().clone(),
            tier_id(profile),
            profile.decl.swaps.len().to_string(),
            if platforms.is_empty() {
                "-".to_string()
            } else {
                platforms.join(", ")
            },
        ]);
    }
    shell.print(&table(&rows));
    Ok(0)
}

fn table(rows: &[[String; 5]]) -> String {
    let mut widths = [0usize; 5];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in rows {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            if index + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[index]));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

fn show(file: &File, name: &str, shell: &Shell) -> Result<u8, Diagnostic> {
    let config = &file.config;
    let profile = profiles::find(config, name)?;
    let analysis = profiles::check(&catalog(file), profile)?;
    let tier: Tier = tier_id(profile).parse().map_err(Diagnostic::error)?;
    let report = analysis.tiers.get(&tier);
    let fitness = analysis.fitness.get(&tier).copied().unwrap_or(0.0);
    let min = profile.decl.min_fitness.as_ref().map(|m| *m.get_ref());
    let meets = min.map(|min| fitness >= min);
    if shell.is_json() {
        let mut event = profile_json(config, profile);
        event["analysis"] = json!({
            "tier": tier,
            "fitness": fitness,
            "points": report.map(|r| r.points),
            "status": report.map(|r| r.status),
            "min_fitness": min,
            "meets_min_fitness": meets,
            "blockers": report.map(|r| &r.blockers),
            "suggestions": analysis.swaps,
            "requirements": analysis.requirements,
        });
        shell.json(&event);
        return Ok(0);
    }
    shell.print(&show_text(config, profile, &analysis, tier, fitness, min));
    Ok(0)
}

fn show_text(
    config: &BundleConfig,
    profile: &Profile,
    analysis: &Analysis,
    tier: Tier,
    fitness: f64,
    min: Option<f64>,
) -> String {
    let decl = &profile.decl;
    let list_or_dash = |items: Vec<String>| {
        if items.is_empty() {
            "-".to_string()
        } else {
            items.join(", ")
        }
    };
    let is_default = config.workspace.default_profile.as_deref() == Some(profile.name.as_str());
    let mut lines: Vec<(String, String)> = vec![
        ("scenario".into(), decl.scenario.get_ref().clone()),
        ("tier".into(), tier.id().to_string()),
        ("platforms".into(), list_or_dash(strings(&decl.platforms))),
        (
            "formats".into(),
            if decl.formats.is_empty() {
                "(each platform's default)".to_string()
            } else {
                strings(&decl.formats).join(", ")
            },
        ),
        ("swaps".into(), list_or_dash(swaps_text(profile))),
        (
            "min-fitness".into(),
            min.map_or("-".to_string(), |m| format!("{m:.2}")),
        ),
    ];
    if let Some(version) = &decl.version {
        lines.push(("version".into(), version.get_ref().clone()));
    }
    if !decl.env.is_empty() {
        lines.push((
            "env".into(),
            decl.env
                .iter()
                .map(|(k, v)| format!("{}={}", k.get_ref(), v.get_ref()))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    if !decl.secrets.is_empty() {
        lines.push((
            "secrets".into(),
            decl.secrets
                .iter()
                .map(|(id, secret)| match &secret.get_ref().class {
                    Some(class) => format!("{} ({class})", id.get_ref()),
                    None => id.get_ref().clone(),
                })
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    let report = analysis.tiers.get(&tier);
    let verdict = match min {
        Some(min) if fitness >= min => format!("; meets min-fitness {min:.2}"),
        Some(min) => format!("; BELOW min-fitness {min:.2}"),
        None => String::new(),
    };
    lines.push((
        "fitness".into(),
        format!(
            "{fitness:.2} ({}) for {} after swaps{verdict}",
            report.map_or("unknown", |r| r.status),
            tier.id()
        ),
    ));
    if let Some(report) = report
        && !report.blockers.is_empty()
    {
        lines.push((
            "blockers".into(),
            report
                .blockers
                .iter()
                .map(|b| {
                    format!(
                        "{} ({}: {})",
                        b.node,
                        crate::units::points(b.points),
                        b.reason
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        ));
    }
    if !analysis.swaps.is_empty() {
        lines.push((
            "suggestions".into(),
            analysis
                .swaps
                .iter()
                .map(|s| {
                    format!(
                        "--swap {}={} ({})",
                        s.from,
                        s.to,
                        crate::units::impact(s.impact_points)
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    let mut text = format!(
        "{}{}\n",
        profile.name,
        if is_default { " (default)" } else { "" }
    );
    for (key, value) in lines {
        text.push_str(&format!("  {key:<12} {value}\n"));
    }
    text
}
