//! Renderings of an analysis: the human summary, the fitness table, and the DAG as JSON, DOT,
//! Mermaid or SVG (through Graphviz's `dot` when installed).
//!
//! **Invariant:** human output shows fitness on one scale, 0.00 to 1.00 (the scale of
//! `min-fitness` in bundle.toml): tier scores, a blocker's own fitness and a swap's impact
//! (`+0.10`: the tier's score rises by 0.10) all go through [`crate::units`]. The JSON keeps the
//! seed's contract (`impact: "+10"` in points). The swaps an analysis applied are always named
//! ([`applied`]), so a score is never shown without what it was computed for.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::analysis::tier::Tier;
use crate::analysis::{Analysis, Dag};
use crate::diagnostic::Diagnostic;
use crate::service::ServiceKind;

fn cores(value: f64) -> String {
    format!("{value:.2}")
}

/// What the scores were computed for: `swaps applied: postgres=sqlite, redis=in-process` or
/// `no swaps applied`.
pub fn applied(analysis: &Analysis) -> String {
    if analysis.applied_swaps.is_empty() {
        return "no swaps applied".to_string();
    }
    let swaps: Vec<String> = analysis
        .applied_swaps
        .iter()
        .map(|s| format!("{}={}", s.from, s.to))
        .collect();
    format!("swaps applied: {}", swaps.join(", "))
}

/// The header of `analyze` and `fitness`: the scenario, the swaps applied, and the scale.
pub fn header(analysis: &Analysis) -> String {
    format!(
        "{} ({}; fitness 0.00-1.00, 1.00 = fully fit)",
        analysis.scenario,
        applied(analysis)
    )
}

/// The fitness lines of every tier (or one).
pub fn fitness_table(analysis: &Analysis, only: Option<Tier>) -> String {
    let mut text = String::new();
    for (tier, score) in &analysis.fitness {
        if only.is_some_and(|t| t != *tier) {
            continue;
        }
        let report = analysis.tiers.get(tier);
        let status = report.map_or("", |r| r.status);
        let _ = write!(
            text,
            "    {:<18} {}  {status}",
            tier.id(),
            crate::units::score(*score)
        );
        if let Some(report) = report
            && !report.blockers.is_empty()
        {
            let names: Vec<String> = report
                .blockers
                .iter()
                .map(|b| {
                    let name = b.node.split_once(':').map_or(b.node.as_str(), |(_, n)| n);
                    if b.supported {
                        format!("{name} ({})", crate::units::points(b.points))
                    } else {
                        format!("{name} (unsupported)")
                    }
                })
                .collect();
            let _ = write!(text, "  blockers: {}", names.join(", "));
        }
        text.push('\n');
    }
    text
}

/// The body of `analyze` (under its [`header`]).
pub fn summary(analysis: &Analysis, only: Option<Tier>) -> String {
    let mut text = String::new();
    let list = |names: &[String]| {
        if names.is_empty() {
            "(none)".to_string()
        } else {
            names.join(", ")
        }
    };
    let _ = writeln!(
        text,
        "  resources: {}",
        list(&analysis.dependencies.resources)
    );
    let _ = writeln!(
        text,
        "  scenarios: {}",
        list(&analysis.dependencies.scenarios)
    );
    if !analysis.optional.resources.is_empty() || !analysis.optional.scenarios.is_empty() {
        let mut optional = analysis.optional.resources.clone();
        optional.extend(
            analysis
                .optional
                .scenarios
                .iter()
                .map(|s| format!("{s} (scenario)")),
        );
        let _ = writeln!(
            text,
            "  optional (not bundled, not scored): {}",
            optional.join(", ")
        );
    }
    let r = &analysis.requirements;
    let _ = writeln!(
        text,
        "  requirements: {} MB RAM, {} MB disk, {} CPU cores, GPU {}, network {}",
        r.ram_mb,
        r.disk_mb,
        cores(r.cpu_cores),
        r.gpu,
        r.network
    );
    let _ = writeln!(text, "  fitness:");
    text.push_str(&fitness_table(analysis, only));
    let mut current: Option<Tier> = None;
    for swap in &analysis.swaps {
        if current != Some(swap.tier) {
            let _ = writeln!(
                text,
                "  swaps that would help {} (fitness gained):",
                swap.tier
            );
            current = Some(swap.tier);
        }
        let _ = writeln!(
            text,
            "    {} -> {}  {} ({:+} MB RAM, {:+} MB disk)",
            swap.from,
            swap.to,
            crate::units::impact(swap.impact_points),
            swap.ram_mb_delta,
            swap.disk_mb_delta
        );
    }
    for warning in &analysis.warnings {
        let _ = writeln!(text, "  warning: {warning}");
    }
    text
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DagFormat {
    Json,
    Dot,
    Mermaid,
    Svg,
}

fn label(node: &crate::analysis::Node) -> String {
    match node.kind {
        ServiceKind::Scenario => node.name.clone(),
        ServiceKind::Resource => format!("{} ({} MB)", node.name, node.footprint.ram_mb),
    }
}

pub fn dot(dag: &Dag) -> String {
    let mut text = String::from("digraph dependencies {\n  rankdir=LR;\n");
    for node in &dag.nodes {
        let shape = match node.kind {
            ServiceKind::Scenario => "box",
            ServiceKind::Resource => "cylinder",
        };
        let style = if node.required { "solid" } else { "dashed" };
        let _ = writeln!(
            text,
            "  {:?} [label={:?}, shape={shape}, style={style}];",
            node.id,
            label(node)
        );
    }
    for edge in &dag.edges {
        let style = if edge.optional { " [style=dashed]" } else { "" };
        let _ = writeln!(text, "  {:?} -> {:?}{style};", edge.from, edge.to);
    }
    text.push_str("}\n");
    text
}

pub fn mermaid(dag: &Dag) -> String {
    let mut text = String::from("graph LR\n");
    let index = |id: &str| {
        dag.nodes
            .iter()
            .position(|n| n.id == id)
            .unwrap_or(usize::MAX)
    };
    for (n, node) in dag.nodes.iter().enumerate() {
        let name = label(node).replace('"', "#quot;");
        match node.kind {
            ServiceKind::Scenario => {
                let _ = writeln!(text, "  n{n}[\"{name}\"]");
            }
            ServiceKind::Resource => {
                let _ = writeln!(text, "  n{n}[(\"{name}\")]");
            }
        }
    }
    for edge in &dag.edges {
        let arrow = if edge.optional { "-.->" } else { "-->" };
        let _ = writeln!(
            text,
            "  n{} {arrow} n{}",
            index(&edge.from),
            index(&edge.to)
        );
    }
    text
}

pub fn json(dag: &Dag) -> String {
    let mut text = serde_json::to_string_pretty(dag).expect("the DAG serializes");
    text.push('\n');
    text
}

/// SVG through Graphviz's `dot`.
pub fn svg(dag: &Dag) -> Result<String, Diagnostic> {
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| {
            Diagnostic::error(format!("--format svg needs Graphviz's `dot`, which could not be run: {err}"))
                .help("install Graphviz (Debian: apt-get install graphviz), or use --format dot and render it elsewhere")
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(dot(dag).as_bytes());
    }
    let output = child.wait_with_output().map_err(Diagnostic::from)?;
    if !output.status.success() {
        return Err(Diagnostic::internal(format!(
            "dot failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    String::from_utf8(output.stdout)
        .map_err(|_| Diagnostic::internal("dot printed something that is not UTF-8"))
}
