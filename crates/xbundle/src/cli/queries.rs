//! `analyze`, `dag`, `fitness`: the layout these queries read and their requests.

use std::collections::BTreeMap;

use camino::Utf8Path;
use clap::ValueEnum as _;
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
    Ok(analysis_setting(cli)?.0)
}

/// [`analysis_layout`] and bundle.toml when there is one (for the profiles' names).
pub(super) fn analysis_setting(cli: &Cli) -> Result<(Layout, Option<BundleConfig>), Diagnostic> {
    let root = match &cli.root {
        Some(root) => find_root(Some(root))?,
        None => match find_root(None) {
            Ok(root) => root,
            Err(_) => find_root(Some(Utf8Path::new(".")))?,
        },
    };
    let path = root.join(config::FILE_NAME);
    let config = if path.is_file() {
        Some(BundleConfig::load(&path, Utf8Path::new(config::FILE_NAME))?)
    } else {
        None
    };
    let workspace = config
        .as_ref()
        .map_or_else(config::Workspace::default, |c| c.workspace.clone());
    let layout = Layout {
        root,
        scenarios: workspace.scenarios,
        resources: workspace.resources,
    };
    Ok((layout, config))
}

pub(super) fn analysis_request(
    cli: &Cli,
    scenario: &str,
    tier: &Option<String>,
    swaps: &[String],
) -> Result<(Catalog, Request), Diagnostic> {
    let tier = tier.as_deref().map(crate::names::tier).transpose()?;
    let (layout, config) = analysis_setting(cli)?;
    scenario_argument(&layout, scenario)?;
    crate::names::scenario(&layout, config.as_ref(), scenario)?;
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

/// Prints `value`: a JSON event (`--message-format json`), or the human text.
pub(super) fn emit(
    shell: &Shell,
    event: &str,
    value: serde_json::Value,
    human: impl FnOnce() -> String,
) {
    if shell.is_json() {
        shell.json(&json!({"event": event, event: value}));
    } else {
        shell.print(&human());
    }
}

pub(super) fn analyze(
    cli: &Cli,
    scenario: &str,
    args: &AnalysisArgs,
    shell: &Shell,
) -> Result<u8, Diagnostic> {
    let (result, tier) = run_analysis(cli, scenario, &args.tier, &args.swaps)?;
    let value = serde_json::to_value(&result).expect("analyses serialize");
    emit(shell, "analysis", value, || {
        shell.outcome("Analyzed", GREEN, &render::header(&result));
        render::summary(&result, tier)
    });
    Ok(0)
}

pub(super) fn dag(
    cli: &Cli,
    scenario: &str,
    format: Option<DagFormat>,
    swaps: &[String],
    shell: &Shell,
) -> Result<u8, Diagnostic> {
    let (result, _) = run_analysis(cli, scenario, &None, swaps)?;
    let text = |format: DagFormat| -> Result<String, Diagnostic> {
        Ok(match format {
            DagFormat::Json => render::json(&result.dag),
            DagFormat::Dot => render::dot(&result.dag),
            DagFormat::Mermaid => render::mermaid(&result.dag),
            DagFormat::Svg => render::svg(&result.dag)?,
        })
    };
    if shell.is_json() {
        // An explicit --format is kept: the event carries its text, as `graph`'s does.
        let mut event = json!({"event": "dag", "scenario": result.scenario});
        match format {
            None | Some(DagFormat::Json) => event["dag"] = json!(result.dag),
            Some(format) => {
                event["format"] =
                    json!(format.to_possible_value().map(|v| v.get_name().to_string()));
                event["text"] = json!(text(format)?);
            }
        }
        shell.json(&event);
        return Ok(0);
    }
    shell.print(&text(format.unwrap_or(DagFormat::Json))?);
    Ok(0)
}

/// What `fitness` answers.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct FitnessView {
    pub scenario: String,
    /// Tier -> score (0.0 ..= 1.0): the tier asked for, or every tier.
    pub fitness: BTreeMap<Tier, f64>,
    pub tiers: BTreeMap<Tier, crate::analysis::TierReport>,
}

pub(super) fn fitness(
    cli: &Cli,
    scenario: &str,
    args: &AnalysisArgs,
    shell: &Shell,
) -> Result<u8, Diagnostic> {
    let (result, tier) = run_analysis(cli, scenario, &args.tier, &args.swaps)?;
    let view = FitnessView {
        scenario: result.scenario.clone(),
        fitness: result
            .fitness
            .iter()
            .filter(|(t, _)| tier.is_none_or(|only| only == **t))
            .map(|(t, score)| (*t, *score))
            .collect(),
        tiers: result.tiers.clone(),
    };
    let value = serde_json::to_value(&view).expect("fitness serializes");
    emit(shell, "fitness", value, || {
        shell.outcome("Fitness", GREEN, &render::header(&result));
        render::fitness_table(&result, tier)
    });
    Ok(0)
}
