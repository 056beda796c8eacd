//! `analyze`, `dag`, `fitness`: the layout these queries read and their requests.

use std::collections::BTreeMap;

use camino::Utf8Path;
use serde_json::json;

use super::{AnalysisArgs, Cli, find_root};
use crate::analysis::render::{self, DagFormat};
use crate::analysis::tier::Tier;
use crate::analysis::{self, Analysis, Catalog, Layout, Request};
use crate::config::{self, BundleConfig};
use crate::diagnostic::Diagnostic;
use crate::shell::{GREEN, Shell};

/// The layout for analysis commands: from bundle.toml when there is one (found as for other
/// commands), else `scenarios/` and `resources/` under `--root` or the current directory.
pub(super) fn analysis_layout(cli: &Cli) -> Result<Layout, Diagnostic> {
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

pub(super) fn analysis_request(
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
    let layout = analysis_layout(cli)?;
    scenario_argument(&layout, scenario)?;
    let request = Request {
        scenario: scenario.to_string(),
        swaps: analysis::parse_swaps(swaps)?,
        tier,
    };
    Ok((Catalog::new(layout), request))
}

/// A SCENARIO argument is a name (a directory under the scenarios directory), never a path.
pub(super) fn scenario_argument(layout: &Layout, scenario: &str) -> Result<(), Diagnostic> {
    if config::is_plain_name(scenario) {
        return Ok(());
    }
    let names = layout.scenario_names();
    let last = scenario
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let help = match names.iter().find(|name| name.as_str() == last) {
        Some(name) => format!("did you mean `{name}`?"),
        None => format!(
            "name a directory under {} (e.g. `{}`), not a path",
            layout.scenarios,
            names.first().map_or("picker-wheel", String::as_str)
        ),
    };
    Err(Diagnostic::error(format!("`{scenario}` is not a scenario name")).help(help))
}

/// Runs the analysis a query asks for.
fn run_analysis(
    cli: &Cli,
    scenario: &str,
    tier: &Option<String>,
    swaps: &[String],
) -> Result<(Analysis, Option<Tier>), Diagnostic> {
    let (catalog, request) = analysis_request(cli, scenario, tier, swaps)?;
    Ok((analysis::analyze(&catalog, &request)?, request.tier))
}

/// Prints `value`: a JSON event, pretty JSON (`--json`), or the human text.
pub(super) fn emit(
    shell: &Shell,
    event: &str,
    value: serde_json::Value,
    pretty: bool,
    human: impl FnOnce() -> String,
) {
    if shell.is_json() {
        shell.json(&json!({"event": event, event: value}));
    } else if pretty {
        shell.print(&format!(
            "{}\n",
            serde_json::to_string_pretty(&value).expect("values serialize")
        ));
    } else {
        shell.print(&human());
    }
}

pub(super) fn analyze(
    cli: &Cli,
    scenario: &str,
    args: &AnalysisArgs,
    json: bool,
    shell: &Shell,
) -> Result<u8, Diagnostic> {
    let (result, tier) = run_analysis(cli, scenario, &args.tier, &args.swaps)?;
    let value = serde_json::to_value(&result).expect("analyses serialize");
    emit(shell, "analysis", value, json, || {
        shell.outcome("Analyzed", GREEN, &render::header(&result));
        render::summary(&result, tier)
    });
    Ok(0)
}

pub(super) fn dag(
    cli: &Cli,
    scenario: &str,
    format: DagFormat,
    swaps: &[String],
    shell: &Shell,
) -> Result<u8, Diagnostic> {
    let (result, _) = run_analysis(cli, scenario, &None, swaps)?;
    if shell.is_json() {
        shell.json(&json!({"event": "dag", "scenario": result.scenario, "dag": result.dag}));
        return Ok(0);
    }
    shell.print(&match format {
        DagFormat::Json => render::json(&result.dag),
        DagFormat::Dot => render::dot(&result.dag),
        DagFormat::Mermaid => render::mermaid(&result.dag),
        DagFormat::Svg => render::svg(&result.dag)?,
    });
    Ok(0)
}

pub(super) fn fitness(
    cli: &Cli,
    scenario: &str,
    args: &AnalysisArgs,
    json: bool,
    shell: &Shell,
) -> Result<u8, Diagnostic> {
    let (result, tier) = run_analysis(cli, scenario, &args.tier, &args.swaps)?;
    let fitness: BTreeMap<_, _> = result
        .fitness
        .iter()
        .filter(|(t, _)| tier.is_none_or(|only| only == **t))
        .collect();
    let value = json!({"scenario": result.scenario, "fitness": fitness, "tiers": result.tiers});
    emit(shell, "fitness", value, json, || {
        shell.outcome("Fitness", GREEN, &render::header(&result));
        render::fitness_table(&result, tier)
    });
    Ok(0)
}
