//! Renderings of an analysis: the human summary, the fitness table, and the DAG as JSON, DOT,
//! Mermaid or SVG (through Graphviz's `dot` when installed, else [`svg_layered`], a layered
//! drawing of its own, so `--format svg` and the dashboard work with only Rust installed).
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

/// SVG through Graphviz's `dot`, or [`svg_layered`] where `dot` is not installed.
pub fn svg(dag: &Dag) -> Result<String, Diagnostic> {
    let spawned = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(svg_layered(dag)),
        Err(err) => {
            return Err(Diagnostic::error(format!(
                "--format svg: Graphviz's `dot` could not be run: {err}"
            ))
            .help("fix or remove the `dot` on PATH (without it, xbundle draws the SVG itself)"));
        }
    };
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

/// The DAG drawn as SVG without Graphviz: nodes in columns by their depth from the scenario
/// (the longest path to them), left to right as `dot`'s `rankdir=LR`; scenarios as boxes,
/// resources as rounded boxes with their memory, optional nodes and edges dashed. Every label
/// is escaped. Deterministic: the same DAG gives the same bytes.
pub fn svg_layered(dag: &Dag) -> String {
    use std::collections::BTreeMap;
    const HEIGHT: usize = 36;
    const GAP_X: usize = 60;
    const GAP_Y: usize = 18;
    const MARGIN: usize = 16;
    let index: BTreeMap<&str, usize> = dag
        .nodes
        .iter()
        .enumerate()
        .map(|(n, node)| (node.id.as_str(), n))
        .collect();
    // Longest-path depth; bounded by the node count, so a cycle cannot loop forever.
    let mut depth = vec![0usize; dag.nodes.len()];
    for _ in 0..dag.nodes.len() {
        let mut changed = false;
        for edge in &dag.edges {
            if let (Some(&from), Some(&to)) =
                (index.get(edge.from.as_str()), index.get(edge.to.as_str()))
                && depth[to] < depth[from] + 1
                && depth[from] < dag.nodes.len()
            {
                depth[to] = depth[from] + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let labels: Vec<String> = dag.nodes.iter().map(label).collect();
    let widths: Vec<usize> = labels
        .iter()
        .map(|label| label.chars().count() * 7 + 24)
        .collect();
    let columns = depth.iter().copied().max().map_or(0, |d| d + 1);
    let mut column_width = vec![0usize; columns];
    let mut rows = vec![0usize; columns];
    let mut place = vec![(0usize, 0usize); dag.nodes.len()];
    for (n, &d) in depth.iter().enumerate() {
        column_width[d] = column_width[d].max(widths[n]);
        place[n].1 = rows[d];
        rows[d] += 1;
    }
    let mut x = MARGIN;
    let mut column_x = vec![0usize; columns];
    for (d, width) in column_width.iter().enumerate() {
        column_x[d] = x;
        x += width + GAP_X;
    }
    for (n, &d) in depth.iter().enumerate() {
        place[n].0 = column_x[d];
    }
    let width = x.saturating_sub(GAP_X) + MARGIN;
    let height = rows.iter().copied().max().unwrap_or(0) * (HEIGHT + GAP_Y) + 2 * MARGIN;
    let y_of = |row: usize| MARGIN + row * (HEIGHT + GAP_Y);
    let mut text = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#555\"/></marker></defs>\n"
    );
    for edge in &dag.edges {
        let (Some(&from), Some(&to)) = (index.get(edge.from.as_str()), index.get(edge.to.as_str()))
        else {
            continue;
        };
        let (x1, y1) = (
            place[from].0 + widths[from],
            y_of(place[from].1) + HEIGHT / 2,
        );
        let (x2, y2) = (place[to].0, y_of(place[to].1) + HEIGHT / 2);
        let middle = (x1 + x2) / 2;
        let dash = if edge.optional {
            " stroke-dasharray=\"5,4\""
        } else {
            ""
        };
        let _ = writeln!(
            text,
            "<path class=\"edge\" d=\"M{x1},{y1} C{middle},{y1} {middle},{y2} {x2},{y2}\" fill=\"none\" stroke=\"#555\"{dash} marker-end=\"url(#arrow)\"/>"
        );
    }
    for (n, node) in dag.nodes.iter().enumerate() {
        let (x, y) = (place[n].0, y_of(place[n].1));
        let (rx, fill) = match node.kind {
            ServiceKind::Scenario => (2, "#dbeafe"),
            ServiceKind::Resource => (14, "#fef3c7"),
        };
        let dash = if node.required {
            ""
        } else {
            " stroke-dasharray=\"5,4\""
        };
        let _ = writeln!(
            text,
            "<g class=\"node\" data-id=\"{}\"><rect x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"{HEIGHT}\" rx=\"{rx}\" fill=\"{fill}\" stroke=\"#333\"{dash}/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text></g>",
            html_escape::encode_double_quoted_attribute(&node.id),
            widths[n],
            x + widths[n] / 2,
            y + HEIGHT / 2 + 4,
            html_escape::encode_text(&labels[n])
        );
    }
    text.push_str("</svg>\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{Edge, Node};

    fn node(id: &str, kind: ServiceKind, required: bool) -> Node {
        Node {
            id: id.to_string(),
            name: id.rsplit(':').next().unwrap().to_string(),
            kind,
            required,
            source: String::new(),
            footprint: Default::default(),
            fitness: Default::default(),
            replaces: Vec::new(),
        }
    }

    #[test]
    fn the_layered_svg_escapes_labels_places_every_node_and_is_deterministic() {
        let dag = Dag {
            nodes: vec![
                node("scenario:app", ServiceKind::Scenario, true),
                node("resource:<script>&", ServiceKind::Resource, true),
                node("resource:ollama", ServiceKind::Resource, false),
                node("scenario:lib", ServiceKind::Scenario, true),
            ],
            edges: vec![
                Edge {
                    from: "scenario:app".into(),
                    to: "scenario:lib".into(),
                    optional: false,
                },
                Edge {
                    from: "scenario:lib".into(),
                    to: "resource:<script>&".into(),
                    optional: false,
                },
                Edge {
                    from: "scenario:app".into(),
                    to: "resource:ollama".into(),
                    optional: true,
                },
                // A cycle must not hang the layout.
                Edge {
                    from: "resource:<script>&".into(),
                    to: "scenario:app".into(),
                    optional: false,
                },
            ],
        };
        let svg = svg_layered(&dag);
        assert_eq!(svg, svg_layered(&dag));
        assert!(svg.starts_with("<svg "), "{svg}");
        assert_eq!(svg.matches("class=\"node\"").count(), 4);
        assert_eq!(svg.matches("class=\"edge\"").count(), 4);
        assert_eq!(
            svg.matches("stroke-dasharray").count(),
            2,
            "the optional node and edge"
        );
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;&amp;"), "{svg}");
    }
}
