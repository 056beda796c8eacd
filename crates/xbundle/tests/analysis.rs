//! Analysis of the repository's demo scenarios: golden snapshots (DAG, requirements, fitness per
//! tier, suggestions; before and after swaps), and the swap-impact law.
//!
//! Update snapshots with
//! `INSTA_UPDATE=always cargo test -p xbundle --test integration analysis::` and review the diff.

use std::collections::BTreeMap;

use camino::Utf8Path;
use xbundle::analysis::tier::Tier;
use xbundle::analysis::{Analysis, Catalog, Layout, Request, analyze};

const DEMO: [&str; 5] = [
    "auth-service",
    "metrics-collector",
    "notes-app",
    "picker-wheel",
    "team-dashboard",
];

fn catalog() -> Catalog {
    Catalog::new(Layout {
        root: Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
        scenarios: "scenarios".into(),
        resources: "resources".into(),
    })
}

fn run(
    catalog: &Catalog,
    scenario: &str,
    swaps: &BTreeMap<String, String>,
    tier: Option<Tier>,
) -> Analysis {
    analyze(
        catalog,
        &Request {
            scenario: scenario.to_string(),
            swaps: swaps.clone(),
            tier,
        },
    )
    .unwrap_or_else(|err| panic!("{scenario} with {swaps:?}: {err}"))
}

fn json(analysis: &Analysis) -> String {
    serde_json::to_string_pretty(analysis).unwrap()
}

#[test]
fn the_demo_scenarios_are_all_there() {
    let catalog = catalog();
    assert_eq!(catalog.layout.scenario_names(), DEMO);
}

#[test]
fn golden_analyses_before_and_after_swaps() {
    let catalog = catalog();
    for scenario in DEMO {
        let before = run(&catalog, scenario, &BTreeMap::new(), None);
        insta::assert_snapshot!(format!("{scenario}"), json(&before));
        // Apply every desktop suggestion (best per resource) and snapshot the result.
        let mut swaps = BTreeMap::new();
        for suggestion in before.swaps.iter().filter(|s| s.tier == Tier::Desktop) {
            swaps
                .entry(suggestion.from.clone())
                .or_insert(suggestion.to.clone());
        }
        if !swaps.is_empty() {
            let after = run(&catalog, scenario, &swaps, Some(Tier::Desktop));
            insta::assert_snapshot!(format!("{scenario}-desktop-swaps"), json(&after));
        }
    }
}

#[test]
fn applying_a_suggestion_moves_the_score_by_exactly_its_impact() {
    let catalog = catalog();
    let mut checked = 0;
    for scenario in DEMO {
        // From the plain graph and from a graph with one swap applied already.
        let mut starts = vec![BTreeMap::new()];
        let first = run(&catalog, scenario, &BTreeMap::new(), None);
        if let Some(s) = first.swaps.first() {
            starts.push(BTreeMap::from([(s.from.clone(), s.to.clone())]));
        }
        for swaps in starts {
            for tier in Tier::ALL {
                let before = run(&catalog, scenario, &swaps, Some(tier));
                for suggestion in &before.swaps {
                    assert_eq!(suggestion.tier, tier);
                    assert_eq!(suggestion.impact, format!("+{}", suggestion.impact_points));
                    let mut applied = swaps.clone();
                    applied.insert(suggestion.from.clone(), suggestion.to.clone());
                    let after = run(&catalog, scenario, &applied, Some(tier));
                    let moved = i64::from(after.tiers[&tier].points)
                        - i64::from(before.tiers[&tier].points);
                    assert_eq!(
                        moved, suggestion.impact_points,
                        "{scenario} {tier} {}={} from {swaps:?}",
                        suggestion.from, suggestion.to
                    );
                    // The requirement deltas are exact too.
                    assert_eq!(
                        after.requirements.ram_mb as i64 - before.requirements.ram_mb as i64,
                        suggestion.ram_mb_delta
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(
        checked >= 40,
        "the demo must exercise many suggestions, checked {checked}"
    );
}

#[test]
fn each_node_counts_once_and_optional_nodes_not_at_all() {
    let catalog = catalog();
    let dashboard = run(&catalog, "team-dashboard", &BTreeMap::new(), None);
    // postgres is used by notes-app and auth-service (the diamond's bottom): one node.
    let postgres: Vec<_> = dashboard
        .dag
        .nodes
        .iter()
        .filter(|n| n.id == "resource:postgres")
        .collect();
    assert_eq!(postgres.len(), 1);
    // picker-wheel is an optional dependency: in the DAG, not in the requirements.
    assert_eq!(dashboard.optional.scenarios, ["picker-wheel"]);
    let summed: u64 = dashboard
        .dag
        .nodes
        .iter()
        .filter(|n| n.required)
        .map(|n| n.footprint.ram_mb)
        .sum();
    assert_eq!(dashboard.requirements.ram_mb, summed);
    assert!(
        dashboard
            .dag
            .edges
            .iter()
            .any(|e| e.to == "scenario:picker-wheel" && e.optional)
    );
}
