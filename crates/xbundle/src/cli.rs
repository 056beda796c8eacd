//! The `cargo xtask` command line. A repository's whole `xtask/src/main.rs` can be:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     xbundle::cli::main()
//! }
//! ```

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use camino::{Utf8Path, Utf8PathBuf};
use clap::{Args, Parser, Subcommand, ValueEnum};
use engine::{Engine, EngineConfig, Expected, GraphFormat, Probe, TaskId, key::summarize};
use serde_json::json;

use crate::analysis::render::{self, DagFormat};
use crate::analysis::tier::Tier;
use crate::analysis::{self, Catalog, Layout, Request};
use crate::config::{self, BundleConfig};
use crate::diagnostic::{Diagnostic, exit};
use crate::plan;
use crate::shell::{MessageFormat, Shell, Verbosity};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    version,
    about = "xbundle: declarative, incremental, content-addressed builds of desktop bundles",
    after_help = "Exit codes: 0 success, 1 a task failed, 2 bad input (usage, bundle.toml), 3 I/O or internal error."
)]
pub struct Cli {
    /// Repository root (default: the nearest directory upward holding bundle.toml)
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<Utf8PathBuf>,
    /// Number of parallel jobs (default: number of cores)
    #[arg(short = 'j', long, global = true, value_name = "N")]
    jobs: Option<usize>,
    /// Print only errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Say why each task runs, and list fresh tasks
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Output format: human status lines, or one JSON object per line on stdout
    #[arg(long, global = true, value_enum, default_value_t = MessageFormat::Human)]
    message_format: MessageFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the repository's pipeline (today: every declared task)
    Bundle {
        /// Profile to build (default: workspace.default-profile)
        profile: Option<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Run declared tasks and their dependencies (all of them when none is named)
    Task {
        /// Task names (`ui`) or ids (`task:ui`)
        names: Vec<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Say why a task would run, or why it last ran
    Explain {
        /// Task name or id
        task: String,
    },
    /// Print the task graph
    Graph {
        #[arg(long, value_enum, default_value_t = GraphFormatArg::Dot)]
        format: GraphFormatArg,
    },
    /// Analyze a scenario: dependencies, requirements, fitness per tier, swap suggestions
    Analyze {
        /// Scenario name (its directory under the scenarios directory)
        scenario: String,
        #[command(flatten)]
        analysis: AnalysisArgs,
        /// Print the analysis as JSON (the seed's contract plus the DAG and blockers)
        #[arg(long)]
        json: bool,
    },
    /// Print a scenario's dependency DAG
    Dag {
        scenario: String,
        #[arg(long, value_enum, default_value_t = DagFormat::Json)]
        format: DagFormat,
        /// Apply a swap first (FROM=TO); repeatable
        #[arg(long = "swap", value_name = "FROM=TO")]
        swaps: Vec<String>,
    },
    /// A scenario's fitness per deployment tier
    Fitness {
        scenario: String,
        #[command(flatten)]
        analysis: AnalysisArgs,
        /// Print {tier: score} as JSON
        #[arg(long)]
        json: bool,
    },
    /// Inspect and maintain the local cache
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Print the plan with each task's expected cache status; run nothing
    #[arg(long)]
    dry_run: bool,
    /// Ignore cache reads (results are still stored)
    #[arg(long)]
    force: bool,
    /// Stop starting tasks at the first failure
    #[arg(long)]
    fail_fast: bool,
}

#[derive(Debug, Args)]
struct AnalysisArgs {
    /// One tier (tier-2-desktop, 2, desktop, …); default: all
    #[arg(long)]
    tier: Option<String>,
    /// Apply a swap first (FROM=TO); repeatable
    #[arg(long = "swap", value_name = "FROM=TO")]
    swaps: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// Entries and bytes in the cache
    Stats,
    /// Evict least recently used entries until the cache fits
    Gc {
        /// e.g. 500M, 2G, 1.5GiB, 1000000
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_size: u64,
    },
    /// Check every entry and blob; remove what is corrupt (exit 1 if anything was)
    Verify,
    /// Delete the cache and the workspace's build state
    Clean,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GraphFormatArg {
    Json,
    Dot,
    Mermaid,
}

/// Runs the command line of this process.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbosity = if cli.quiet {
        Verbosity::Quiet
    } else if cli.verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    let shell = Shell::new(cli.message_format, verbosity);
    match run(cli, &shell) {
        Ok(code) => ExitCode::from(code),
        Err(diagnostic) => {
            shell.error(&diagnostic);
            ExitCode::from(diagnostic.exit_code)
        }
    }
}

/// A loaded workspace: root, configuration and engine.
struct Workspace {
    root: Utf8PathBuf,
    config: BundleConfig,
    engine: Engine,
}

fn find_root(explicit: Option<&Utf8Path>) -> Result<Utf8PathBuf, Diagnostic> {
    if let Some(root) = explicit {
        let root = root.canonicalize_utf8().map_err(|err| {
            Diagnostic::error(format!("--root {root}: {err}")).help("pass an existing directory")
        })?;
        return Ok(root);
    }
    let cwd = std::env::current_dir()
        .map_err(Diagnostic::from)
        .and_then(|dir| {
            Utf8PathBuf::from_path_buf(dir)
                .map_err(|dir| Diagnostic::error(format!("{} is not UTF-8", dir.display())))
        })?;
    cwd.ancestors()
        .find(|dir| dir.join(config::FILE_NAME).is_file())
        .map(Utf8Path::to_path_buf)
        .ok_or_else(|| {
            Diagnostic::error(format!(
                "could not find {} in {cwd} or any parent",
                config::FILE_NAME
            ))
            .help("run inside a repository that has a bundle.toml, or pass --root DIR")
        })
}

fn load(cli: &Cli, force: bool, fail_fast: bool) -> Result<Workspace, Diagnostic> {
    let root = find_root(cli.root.as_deref())?;
    let path = root.join(config::FILE_NAME);
    let config = BundleConfig::load(&path, Utf8Path::new(config::FILE_NAME))?;
    let mut engine_config = EngineConfig::new(root.as_std_path());
    if let Some(dir) = std::env::var_os("XBUNDLE_CACHE_DIR") {
        engine_config.cache_dir = dir.into();
    } else if let Some(dir) = &config.cache.dir {
        engine_config.cache_dir = root.join(dir).into_std_path_buf();
    }
    if let Some(jobs) = cli.jobs {
        engine_config.jobs = jobs.max(1);
    }
    engine_config.force = force;
    engine_config.fail_fast = fail_fast;
    Ok(Workspace {
        root,
        config,
        engine: Engine::new(engine_config),
    })
}

fn run(cli: Cli, shell: &Shell) -> Result<u8, Diagnostic> {
    match &cli.command {
        Command::Bundle { profile, run } => {
            let workspace = load(&cli, run.force, run.fail_fast)?;
            if let Some(profile) = profile
                && !workspace.config.profiles.contains_key(profile)
            {
                return Err(
                    Diagnostic::error(format!("unknown profile `{profile}`")).help(format!(
                        "profiles in bundle.toml: {}",
                        names_or_none(workspace.config.profiles.keys())
                    )),
                );
            }
            run_tasks(&workspace, &[], run, shell)
        }
        Command::Task { names, run } => {
            let workspace = load(&cli, run.force, run.fail_fast)?;
            run_tasks(&workspace, names, run, shell)
        }
        Command::Explain { task } => {
            let workspace = load(&cli, false, false)?;
            explain(&workspace, task, shell)
        }
        Command::Graph { format } => {
            let workspace = load(&cli, false, false)?;
            let graph = plan::graph(&workspace.config, &workspace.root)?;
            let format = match format {
                GraphFormatArg::Json => GraphFormat::Json,
                GraphFormatArg::Dot => GraphFormat::Dot,
                GraphFormatArg::Mermaid => GraphFormat::Mermaid,
            };
            if shell.is_json() {
                let mut event = json!({"event": "graph", "format": format_name(format)});
                match format {
                    GraphFormat::Json => event["tasks"] = graph.to_json()["tasks"].take(),
                    _ => event["text"] = json!(graph.render(format)),
                }
                shell.json(&event);
            } else {
                shell.print(&graph.render(format));
            }
            Ok(0)
        }
        Command::Analyze {
            scenario,
            analysis,
            json,
        } => {
            let (catalog, request) =
                analysis_request(&cli, scenario, &analysis.tier, &analysis.swaps)?;
            let result = analysis::analyze(&catalog, &request)?;
            if shell.is_json() {
                shell.json(&json!({"event": "analysis", "analysis": result}));
            } else if *json {
                shell.print(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&result).expect("analyses serialize")
                ));
            } else {
                shell.print(&render::summary(&result, request.tier));
            }
            Ok(0)
        }
        Command::Dag {
            scenario,
            format,
            swaps,
        } => {
            let (catalog, request) = analysis_request(&cli, scenario, &None, swaps)?;
            let result = analysis::analyze(&catalog, &request)?;
            if shell.is_json() {
                shell
                    .json(&json!({"event": "dag", "scenario": result.scenario, "dag": result.dag}));
                return Ok(0);
            }
            let text = match format {
                DagFormat::Json => render::json(&result.dag),
                DagFormat::Dot => render::dot(&result.dag),
                DagFormat::Mermaid => render::mermaid(&result.dag),
                DagFormat::Svg => render::svg(&result.dag)?,
            };
            shell.print(&text);
            Ok(0)
        }
        Command::Fitness {
            scenario,
            analysis,
            json,
        } => {
            let (catalog, request) =
                analysis_request(&cli, scenario, &analysis.tier, &analysis.swaps)?;
            let result = analysis::analyze(&catalog, &request)?;
            if *json || shell.is_json() {
                let fitness: std::collections::BTreeMap<_, _> = result
                    .fitness
                    .iter()
                    .filter(|(tier, _)| request.tier.is_none_or(|t| t == **tier))
                    .collect();
                let value = json!({
                    "scenario": result.scenario,
                    "fitness": fitness,
                    "tiers": result.tiers,
                });
                if shell.is_json() {
                    shell.json(&json!({"event": "fitness", "fitness": value}));
                } else {
                    shell.print(&format!(
                        "{}\n",
                        serde_json::to_string_pretty(&value).expect("fitness serializes")
                    ));
                }
            } else {
                let mut text = format!("{}\n", result.scenario);
                text.push_str(&render::fitness_table(&result, request.tier));
                shell.print(&text);
            }
            Ok(0)
        }
        Command::Cache { command } => {
            let workspace = load(&cli, false, false)?;
            cache(&workspace, command, shell)
        }
    }
}

/// The layout for analysis commands: from bundle.toml when there is one (found as for other
/// commands), else `scenarios/` and `resources/` under `--root` or the current directory.
fn analysis_layout(cli: &Cli) -> Result<Layout, Diagnostic> {
    let root = match &cli.root {
        Some(root) => find_root(Some(root))?,
        None => match find_root(None) {
            Ok(root) => root,
            Err(_) => find_root(Some(Utf8Path::new(".")))?,
        },
    };
    let path = root.join(config::FILE_NAME);
    let workspace = if path.is_file() {
        BundleConfig::load(&path, Utf8Path::new(config::FILE_NAME))?.workspace
    } else {
        config::Workspace::default()
    };
    Ok(Layout {
        root,
        scenarios: workspace.scenarios,
        resources: workspace.resources,
    })
}

fn analysis_request(
    cli: &Cli,
    scenario: &str,
    tier: &Option<String>,
    swaps: &[String],
) -> Result<(Catalog, Request), Diagnostic> {
    let tier = tier
        .as_deref()
        .map(|text| {
            text.parse::<Tier>().map_err(|err| {
                Diagnostic::error(err)
                    .help("pass --tier tier-2-desktop, --tier 2 or --tier desktop")
            })
        })
        .transpose()?;
    let request = Request {
        scenario: scenario.to_string(),
        swaps: analysis::parse_swaps(swaps)?,
        tier,
    };
    Ok((Catalog::new(analysis_layout(cli)?), request))
}

fn format_name(format: GraphFormat) -> &'static str {
    match format {
        GraphFormat::Json => "json",
        GraphFormat::Dot => "dot",
        GraphFormat::Mermaid => "mermaid",
    }
}

fn names_or_none<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        "(none)".into()
    } else {
        names.join(", ")
    }
}

fn run_tasks(
    workspace: &Workspace,
    names: &[String],
    args: &RunArgs,
    shell: &Shell,
) -> Result<u8, Diagnostic> {
    let graph = plan::graph(&workspace.config, &workspace.root)?;
    let targets: Vec<TaskId> = if names.is_empty() {
        graph.topological().map(|spec| spec.id.clone()).collect()
    } else {
        plan::resolve(&graph, names)?
    };
    if args.dry_run {
        let probes = workspace.engine.probe(&graph, &targets)?;
        print_plan(&probes, shell);
        return Ok(0);
    }
    let summary = workspace.engine.run(&graph, &targets, shell)?;
    Ok(if summary.success() {
        0
    } else {
        exit::TASK_FAILED
    })
}

fn expected_name(expected: &Expected) -> &'static str {
    match expected {
        Expected::UpToDate => "up-to-date",
        Expected::Restore { .. } => "restore",
        Expected::Run(_) => "run",
        Expected::DependsOnChanges(_) => "depends-on-changes",
    }
}

fn expected_text(expected: &Expected) -> String {
    match expected {
        Expected::UpToDate => "up to date".into(),
        Expected::Restore { files: 0 } => "cached (outputs already in place)".into(),
        Expected::Restore { files } => format!("cached, restores {files} file(s)"),
        Expected::Run(reasons) => format!("runs: {}", summarize(reasons)),
        Expected::DependsOnChanges(ids) => format!(
            "runs if {} change{} output",
            ids.iter()
                .map(TaskId::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            if ids.len() == 1 { "s its" } else { " their" }
        ),
    }
}

fn print_plan(probes: &[Probe], shell: &Shell) {
    if shell.is_json() {
        for probe in probes {
            let (reasons, pending) = match &probe.expected {
                Expected::Run(reasons) => (
                    reasons.iter().map(ToString::to_string).collect(),
                    Vec::new(),
                ),
                Expected::DependsOnChanges(ids) => {
                    (Vec::new(), ids.iter().map(ToString::to_string).collect())
                }
                _ => (Vec::new(), Vec::new()),
            };
            shell.json(&json!({
                "event": "plan",
                "id": probe.id,
                "expected": expected_name(&probe.expected),
                "reasons": reasons,
                "pending": pending,
                "key": probe.key,
                "warnings": probe.warnings,
            }));
        }
        return;
    }
    let width = probes
        .iter()
        .map(|p| p.id.as_str().len())
        .max()
        .unwrap_or(0);
    let mut text = format!(
        "Plan: {} task(s), nothing will run (--dry-run)\n",
        probes.len()
    );
    for probe in probes {
        text.push_str(&format!(
            "  {:<width$}  {}\n",
            probe.id.as_str(),
            expected_text(&probe.expected)
        ));
        for warning in &probe.warnings {
            text.push_str(&format!("  {:<width$}  warning: {warning}\n", ""));
        }
    }
    shell.print(&text);
}

fn ago(at_unix: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let seconds = now.saturating_sub(at_unix);
    match seconds {
        0..120 => format!("{seconds}s ago"),
        120..7200 => format!("{}min ago", seconds / 60),
        7200..172800 => format!("{}h ago", seconds / 3600),
        _ => format!("{} days ago", seconds / 86400),
    }
}

fn explain(workspace: &Workspace, name: &str, shell: &Shell) -> Result<u8, Diagnostic> {
    let graph = plan::graph(&workspace.config, &workspace.root)?;
    let id = plan::resolve(&graph, &[name.to_string()])?.remove(0);
    let probes = workspace.engine.probe(&graph, std::slice::from_ref(&id))?;
    let probe = probes
        .iter()
        .find(|p| p.id == id)
        .expect("the target is probed");
    let last = workspace.engine.ledger().get(&id);
    if shell.is_json() {
        let (reasons, pending) = match &probe.expected {
            Expected::Run(reasons) => (
                reasons.iter().map(ToString::to_string).collect(),
                Vec::new(),
            ),
            Expected::DependsOnChanges(ids) => {
                (Vec::new(), ids.iter().map(ToString::to_string).collect())
            }
            _ => (Vec::new(), Vec::new()),
        };
        shell.json(&json!({
            "event": "explain",
            "id": id,
            "expected": expected_name(&probe.expected),
            "reasons": reasons,
            "pending": pending,
            "key": probe.key,
            "last": last.as_ref().map(|entry| json!({
                "outcome": entry.outcome,
                "key": entry.key,
                "reasons": entry.reasons.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "at_unix": entry.at_unix,
            })),
        }));
        return Ok(0);
    }
    let mut text = format!("{id}\n");
    match &probe.expected {
        Expected::UpToDate => text.push_str("  up to date: its inputs, env, definition and dependencies are unchanged since the last run\n"),
        Expected::Restore { files } => text.push_str(&format!(
            "  would be restored from the cache ({files} file(s)): this exact state was built before\n"
        )),
        Expected::Run(reasons) => {
            text.push_str("  would run because:\n");
            for reason in reasons {
                text.push_str(&format!("    - {reason}\n"));
            }
        }
        Expected::DependsOnChanges(ids) => {
            text.push_str("  would run if its dependencies produce different output; these will run first:\n");
            for dep in ids {
                let why = probes
                    .iter()
                    .find(|p| &p.id == dep)
                    .map(|p| expected_text(&p.expected))
                    .unwrap_or_default();
                text.push_str(&format!("    - {dep}: {why}\n"));
            }
        }
    }
    match last {
        Some(entry) => {
            let reasons = if entry.reasons.is_empty() {
                "up to date".to_string()
            } else {
                entry
                    .reasons
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let verb = if entry.outcome == "ran" {
                "ran"
            } else {
                "was restored from the cache"
            };
            text.push_str(&format!(
                "  last {verb} {} because: {reasons}\n",
                ago(entry.at_unix)
            ));
        }
        None => text.push_str("  no run recorded for this task in this workspace\n"),
    }
    shell.print(&text);
    Ok(0)
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Parses sizes such as `500M`, `2G`, `1.5GiB`, `1000` (bytes). K/M/G/T are powers of 1024.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. 500M, 2G)"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("unknown size unit `{other}` (use K, M, G or T)")),
    };
    Ok((number * multiplier as f64) as u64)
}

fn cache(workspace: &Workspace, command: &CacheCommand, shell: &Shell) -> Result<u8, Diagnostic> {
    let store = workspace.engine.store();
    match command {
        CacheCommand::Stats => {
            let stats = store.stats()?;
            if shell.is_json() {
                shell.json(&json!({"event": "cache-stats", "dir": store.root(), "stats": stats}));
            } else {
                shell.print(&format!(
                    "cache: {}\n  action results: {} ({})\n  blobs: {} ({})\n  total: {}\n",
                    store.root().display(),
                    stats.actions,
                    human_bytes(stats.action_bytes),
                    stats.blobs,
                    human_bytes(stats.blob_bytes),
                    human_bytes(stats.action_bytes + stats.blob_bytes)
                ));
            }
            Ok(0)
        }
        CacheCommand::Gc { max_size } => {
            let _lock = lock(workspace, shell)?;
            let report = store.gc(*max_size)?;
            if shell.is_json() {
                shell.json(&json!({"event": "cache-gc", "report": report}));
            } else {
                shell.print(&format!(
                    "removed {} action result(s) and {} blob(s), freed {}; {} entries ({}) kept\n",
                    report.removed_actions,
                    report.removed_blobs,
                    human_bytes(report.freed_bytes),
                    report.kept_actions,
                    human_bytes(report.kept_bytes)
                ));
            }
            Ok(0)
        }
        CacheCommand::Verify => {
            let _lock = lock(workspace, shell)?;
            let report = store.verify()?;
            if shell.is_json() {
                shell.json(&json!({"event": "cache-verify", "report": report}));
            } else {
                for problem in &report.problems {
                    shell.warn(problem);
                }
                shell.print(&format!(
                    "checked {} action result(s) and {} blob(s): {} problem(s)\n",
                    report.actions_checked,
                    report.blobs_checked,
                    report.problems.len()
                ));
            }
            Ok(if report.problems.is_empty() {
                0
            } else {
                exit::TASK_FAILED
            })
        }
        CacheCommand::Clean => {
            let _lock = lock(workspace, shell)?;
            let config = workspace.engine.config();
            for dir in [&config.cache_dir, &config.state_dir.join("state")] {
                match std::fs::remove_dir_all(dir) {
                    Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                        return Err(err.into());
                    }
                    _ => {}
                }
            }
            shell.status(
                "Removed",
                anstyle::AnsiColor::Green.on_default().bold(),
                &format!(
                    "cache {} and build state of {}",
                    config.cache_dir.display(),
                    workspace.root
                ),
            );
            Ok(0)
        }
    }
}

fn lock(workspace: &Workspace, shell: &Shell) -> Result<engine::fsutil::WorkspaceLock, Diagnostic> {
    engine::fsutil::WorkspaceLock::acquire(
        &workspace.engine.config().state_dir.join("lock"),
        || shell.warn("blocking: waiting for another xbundle run to release the workspace lock"),
    )
    .map_err(Diagnostic::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("2K"), Ok(2048));
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("G").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
