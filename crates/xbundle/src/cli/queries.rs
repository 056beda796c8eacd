//! `analyze`, `dag`, `fitness`: the layout these queries read and their requests.

use camino::Utf8Path;

use super::{Cli, find_root};
use crate::analysis::tier::Tier;
use crate::analysis::{self, Catalog, Layout, Request};
use crate::config::{self, BundleConfig};
use crate::diagnostic::Diagnostic;

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
    let request = Request {
        scenario: scenario.to_string(),
        swaps: analysis::parse_swaps(swaps)?,
        tier,
    };
    Ok((Catalog::new(analysis_layout(cli)?), request))
}
