//! Scenario dependency analysis: the dependency DAG of a scenario, what it needs to run, how well
//! it fits each deployment tier, and which swaps would make it fit better.
//!
//! ## The model (deterministic, documented, the same for scores and for swap impacts)
//!
//! - **Graph.** Scenario -> scenario edges from `dependencies.scenarios`, scenario -> resource
//!   edges from `dependencies.resources` (disabled resources are left out). An edge is optional
//!   when the dependency says `required: false`. A node is *required* when the root reaches it
//!   through required edges only; optional nodes appear in the DAG but are not sized or scored
//!   (a bundle leaves them out). A cycle of scenarios is an error naming every scenario on it.
//! - **Swaps** `FROM=TO` replace resource FROM by TO wherever a scenario uses it (chains such as
//!   postgres=sqlite, sqlite=local-index follow through; a chain back to its start is an error).
//!   FROM must be used by the graph; TO must be one of FROM's declared replacements
//!   (`swappable_with`, or the class table's swaps when FROM has no definition), so a swap never
//!   drops what FROM provides without a substitute.
//! - **Requirements** sum RAM, disk and CPU over the required nodes, each counted once (a resource
//!   used by three scenarios counts once); GPU and network take the strongest need. A resource's
//!   footprint comes from its definition, else from its class ([`classes`]); a scenario's own
//!   footprint from its `deployment.requirements`, else the `scenario-app` class.
//! - **Node fitness** for a tier, in points 0..=100: the definition's
//!   `platform_support.<tier>` (`supported: false` is 0 and unsupported; else
//!   `round(fitness_score * 100)`), else the class default (0 counts as unsupported). Scenarios
//!   take part only when they declare `platform_support` themselves.
//! - **Tier score** is the mean of the required resource nodes' points (and of scenarios that
//!   declare support), rounded half up to whole points; 100 when there is nothing to score.
//!   `fitness` reports it as points / 100.
//! - **Blockers** of a tier: required nodes that are unsupported or under 75 points.
//!   **Status**: `blocked` when a node is unsupported, else `ready` at 90 and above, `limited` at
//!   60 to 89, `needs-swaps` below 60.
//! - **Swap suggestions** for a tier: for each required resource, each candidate from its
//!   `swappable_with` (or the class table's swaps when it has no definition), the score with the
//!   swap added to the current swaps minus the current score. Only improvements are listed, best
//!   first. Applying a suggestion moves the score by exactly its impact, because both come from
//!   the same function over the same graph.

pub mod classes;
pub mod render;
pub mod task;
pub mod tier;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use crate::diagnostic::Diagnostic;
use crate::service::{self, Footprint, GpuNeed, NetworkNeed, ServiceDef, ServiceKind};
use classes::Class;
use tier::Tier;

/// Where scenarios and resources live, relative to the root.
#[derive(Clone, Debug)]
pub struct Layout {
    pub root: Utf8PathBuf,
    pub scenarios: Utf8PathBuf,
    pub resources: Utf8PathBuf,
}

impl Layout {
    pub fn definition_path(&self, kind: ServiceKind, name: &str) -> Utf8PathBuf {
        let dir = match kind {
            ServiceKind::Scenario => &self.scenarios,
            ServiceKind::Resource => &self.resources,
        };
        dir.join(name).join(".vrooli").join("service.json")
    }

    /// Names of every scenario directory holding a service.json, sorted.
    pub fn scenario_names(&self) -> Vec<String> {
        self.names(ServiceKind::Scenario)
    }

    /// Names of every resource directory holding a service.json, sorted.
    pub fn resource_names(&self) -> Vec<String> {
        self.names(ServiceKind::Resource)
    }

    fn names(&self, kind: ServiceKind) -> Vec<String> {
        let dir = match kind {
            ServiceKind::Scenario => &self.scenarios,
            ServiceKind::Resource => &self.resources,
        };
        let mut names: Vec<String> = self
            .root
            .join(dir)
            .read_dir_utf8()
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.file_name().to_string())
                    .filter(|name| self.root.join(self.definition_path(kind, name)).is_file())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// A definition lookup: the parsed file, `None` when the repository has none, or why it is
/// unusable.
type Lookup = Result<Option<Rc<ServiceDef>>, Diagnostic>;

/// Parsed definitions, read once per process; records which files an analysis consulted.
pub struct Catalog {
    pub layout: Layout,
    cache: RefCell<BTreeMap<(ServiceKind, String), Lookup>>,
    read: RefCell<BTreeSet<String>>,
}

impl Catalog {
    pub fn new(layout: Layout) -> Catalog {
        Catalog {
            layout,
            cache: RefCell::new(BTreeMap::new()),
            read: RefCell::new(BTreeSet::new()),
        }
    }

    /// The definition of `name`, `None` when the repository has none.
    ///
    /// **Invariant:** only `<dir>/<name>/.vrooli/service.json` is ever read: `name` must be a
    /// plain name (callers check it where it comes from, with a located diagnostic; this is the
    /// backstop), and no component below the root may be a symbolic link.
    pub fn get(&self, kind: ServiceKind, name: &str) -> Lookup {
        if !crate::config::is_plain_name(name) {
            let kind = match kind {
                ServiceKind::Scenario => "scenario",
                ServiceKind::Resource => "resource",
            };
            return Err(Diagnostic::error(format!("`{name}` is not a {kind} name"))
                .help("scenarios and resources are named by their directory, never by a path"));
        }
        let relative = self.layout.definition_path(kind, name);
        let key = (kind, name.to_string());
        if let Some(found) = self.cache.borrow().get(&key) {
            self.read.borrow_mut().insert(relative.to_string());
            return found.clone();
        }
        // No link followed, only a regular file of a sane size (a FIFO would hang the
        // analysis): the repository is untrusted input.
        // Looked for is read: a definition appearing later changes the result.
        self.read.borrow_mut().insert(relative.to_string());
        let found = match crate::config::read_definition(&self.layout.root, relative.as_str()) {
            Ok(Some(text)) => {
                service::parse(&text, &relative, name, kind).map(|def| Some(Rc::new(def)))
            }
            Ok(None) => Ok(None),
            Err(problem) if problem.contains("goes through the symbolic link") => {
                Err(Diagnostic::error(problem).help(
                    "definitions are read without following links (a link can lead outside the repository): make it a real directory",
                ))
            }
            Err(problem) => Err(Diagnostic::error(format!(
                "could not read {relative}: {problem}"
            ))),
        };
        self.cache.borrow_mut().insert(key, found.clone());
        found
    }

    /// Starts recording the files consulted.
    pub fn start_recording(&self) {
        self.read.borrow_mut().clear();
    }

    /// The root-relative files consulted since `start_recording` (read, or looked for and not
    /// found), sorted.
    pub fn recorded(&self) -> Vec<String> {
        self.read.borrow().iter().cloned().collect()
    }
}

/// What to analyze.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub scenario: String,
    /// FROM -> TO.
    pub swaps: BTreeMap<String, String>,
    /// Limit blockers and suggestions to one tier.
    pub tier: Option<Tier>,
}

/// A node of the DAG.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct Node {
    /// `scenario:NAME` or `resource:NAME`.
    pub id: String,
    pub name: String,
    pub kind: ServiceKind,
    pub required: bool,
    /// The definition file, or `class:NAME` for the built-in table, or `missing`.
    pub source: String,
    pub footprint: Footprint,
    /// Points per tier (only for scored nodes).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fitness: BTreeMap<Tier, u32>,
    /// Resources this node replaces (by swaps).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replaces: Vec<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord, schemars::JsonSchema)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub optional: bool,
}

#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct Dag {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

#[derive(Clone, Debug, Serialize, PartialEq, schemars::JsonSchema)]
pub struct Requirements {
    pub ram_mb: u64,
    pub disk_mb: u64,
    pub cpu_cores: f64,
    pub gpu: GpuNeed,
    pub network: NetworkNeed,
}

#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct Blocker {
    pub node: String,
    pub points: u32,
    pub supported: bool,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct TierReport {
    pub score: f64,
    pub points: u32,
    pub status: &'static str,
    pub blockers: Vec<Blocker>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct SwapSuggestion {
    pub from: String,
    pub to: String,
    pub tier: Tier,
    /// `"+25"`: the tier's score rises 25 points.
    pub impact: String,
    pub impact_points: i64,
    pub ram_mb_delta: i64,
    pub disk_mb_delta: i64,
}

#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct NameLists {
    pub resources: Vec<String>,
    pub scenarios: Vec<String>,
}

#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct AppliedSwap {
    pub from: String,
    pub to: String,
}

/// The result of [`analyze`], serialized as the seed's contract plus the DAG and blockers.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct Analysis {
    pub scenario: String,
    pub applied_swaps: Vec<AppliedSwap>,
    /// Required dependencies (transitive).
    pub dependencies: NameLists,
    /// Optional dependencies (transitive), not sized or scored.
    pub optional: NameLists,
    pub requirements: Requirements,
    /// Tier -> score (0.0 ..= 1.0).
    pub fitness: BTreeMap<Tier, f64>,
    pub tiers: BTreeMap<Tier, TierReport>,
    pub swaps: Vec<SwapSuggestion>,
    pub dag: Dag,
    pub warnings: Vec<String>,
    /// Definition files this analysis read (root-relative).
    pub files: Vec<String>,
}

/// The scenario part of the graph, independent of swaps.
struct Traversal {
    /// Scenario name -> (definition, required).
    scenarios: BTreeMap<String, (Option<Rc<ServiceDef>>, bool)>,
    scenario_edges: BTreeSet<Edge>,
    /// (scenario, resource, edge required, scenario required).
    uses: Vec<(String, String, bool, bool)>,
    warnings: Vec<String>,
}

fn traverse(catalog: &Catalog, root: &str) -> Result<Traversal, Diagnostic> {
    let Some(root_def) = catalog.get(ServiceKind::Scenario, root)? else {
        let known = catalog.layout.scenario_names();
        let mut diagnostic = Diagnostic::error(format!(
            "unknown scenario `{root}`: {} does not exist",
            catalog.layout.definition_path(ServiceKind::Scenario, root)
        ));
        diagnostic = diagnostic.help(crate::names::help(
            root,
            &format!("scenarios under {}", catalog.layout.scenarios),
            known.iter().map(String::as_str),
        ));
        return Err(diagnostic);
    };
    let mut traversal = Traversal {
        scenarios: BTreeMap::new(),
        scenario_edges: BTreeSet::new(),
        uses: Vec::new(),
        warnings: Vec::new(),
    };
    // Depth-first with an explicit path for cycle reports; `required` is whether the root reaches
    // the node through required edges only (a node reached both ways is required).
    fn visit(
        catalog: &Catalog,
        name: &str,
        def: Rc<ServiceDef>,
        required: bool,
        path: &mut Vec<String>,
        traversal: &mut Traversal,
    ) -> Result<(), Diagnostic> {
        if let Some(position) = path.iter().position(|p| p == name) {
            let mut cycle: Vec<String> = path[position..].to_vec();
            cycle.push(name.to_string());
            let files: Vec<String> = path[position..]
                .iter()
                .map(|s| {
                    catalog
                        .layout
                        .definition_path(ServiceKind::Scenario, s)
                        .to_string()
                })
                .collect();
            return Err(Diagnostic::error(format!(
                "scenario dependency cycle: {}",
                cycle.join(" -> ")
            ))
            .help(format!(
                "remove one of these dependencies; the cycle runs through {}",
                files.join(", ")
            )));
        }
        if let Some((_, seen_required)) = traversal.scenarios.get(name)
            && (*seen_required || !required)
        {
            return Ok(());
        }
        traversal
            .scenarios
            .insert(name.to_string(), (Some(def.clone()), required));
        for note in &def.notes {
            traversal.warnings.push(format!("{}: {note}", def.file));
        }
        for (resource, dep) in &def.resources {
            if dep.enabled {
                traversal
                    .uses
                    .push((name.to_string(), resource.clone(), dep.required, required));
            }
        }
        path.push(name.to_string());
        for (child, dep) in &def.scenarios {
            traversal.scenario_edges.insert(Edge {
                from: format!("scenario:{name}"),
                to: format!("scenario:{child}"),
                optional: !dep.required,
            });
            let child_required = required && dep.required;
            match catalog.get(ServiceKind::Scenario, child)? {
                Some(child_def) => {
                    visit(catalog, child, child_def, child_required, path, traversal)?
                }
                None => {
                    traversal.warnings.push(format!(
                        "{}: depends on scenario `{child}`, which has no definition ({})",
                        def.file,
                        catalog.layout.definition_path(ServiceKind::Scenario, child)
                    ));
                    let entry = traversal
                        .scenarios
                        .entry(child.clone())
                        .or_insert((None, child_required));
                    entry.1 |= child_required;
                }
            }
        }
        path.pop();
        Ok(())
    }
    visit(
        catalog,
        root,
        root_def,
        true,
        &mut Vec::new(),
        &mut traversal,
    )?;
    // Re-visits for required-ness may leave stale uses from an optional visit: keep one use per
    // (scenario, resource) with the scenario's final required-ness.
    let scenarios = &traversal.scenarios;
    traversal.uses = traversal
        .uses
        .iter()
        .map(|(s, r, edge, _)| (s.clone(), r.clone(), *edge, scenarios[s].1))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    Ok(traversal)
}

/// Follows a swap chain from `name` (guarding against loops).
fn resolve<'a>(swaps: &'a BTreeMap<String, String>, name: &'a str) -> &'a str {
    let mut current = name;
    for _ in 0..=swaps.len() {
        match swaps.get(current) {
            Some(next) if next != current => current = next,
            _ => break,
        }
    }
    current
}

/// A resource node after swaps.
struct ResourceNode {
    required: bool,
    replaces: BTreeSet<String>,
    def: Option<Rc<ServiceDef>>,
}

fn resource_nodes(
    catalog: &Catalog,
    traversal: &Traversal,
    swaps: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, ResourceNode>, Diagnostic> {
    let mut nodes: BTreeMap<String, ResourceNode> = BTreeMap::new();
    for (_, resource, edge_required, scenario_required) in &traversal.uses {
        let name = resolve(swaps, resource);
        let node = match nodes.get_mut(name) {
            Some(node) => node,
            None => {
                let def = catalog.get(ServiceKind::Resource, name)?;
                nodes.entry(name.to_string()).or_insert(ResourceNode {
                    required: false,
                    replaces: BTreeSet::new(),
                    def,
                })
            }
        };
        node.required |= *edge_required && *scenario_required;
        if name != resource {
            node.replaces.insert(resource.clone());
        }
    }
    Ok(nodes)
}

fn class_for(def: Option<&ServiceDef>, name: &str) -> &'static Class {
    def.and_then(|d| d.deployment.as_ref())
        .and_then(|d| d.class.as_deref())
        .and_then(classes::by_name)
        .unwrap_or_else(|| classes::class_of(name))
}

fn resource_footprint(def: Option<&ServiceDef>, name: &str) -> Footprint {
    def.and_then(|d| d.deployment.as_ref())
        .and_then(|d| d.footprint)
        .unwrap_or_else(|| class_for(def, name).footprint)
}

/// (points, supported, reason) of a resource for a tier.
fn resource_points(def: Option<&ServiceDef>, name: &str, tier: Tier) -> (u32, bool, String) {
    if let Some(support) = def
        .and_then(|d| d.deployment.as_ref())
        .and_then(|d| d.platform_support.get(&tier))
    {
        let reason = support
            .reason
            .clone()
            .unwrap_or_else(|| format!("declared by {}", def.map_or("", |d| d.file.as_str())));
        if !support.supported {
            return (0, false, reason);
        }
        return ((support.fitness_score * 100.0).round() as u32, true, reason);
    }
    let class = class_for(def, name);
    let points = class.points(tier);
    (
        points,
        points > 0,
        format!("{} class default for {tier}", class.name),
    )
}

/// Points of a scenario that declares its own tier support.
fn scenario_points(def: &ServiceDef, tier: Tier) -> Option<(u32, bool, String)> {
    let support = def.deployment.as_ref()?.platform_support.get(&tier)?;
    let reason = support
        .reason
        .clone()
        .unwrap_or_else(|| format!("declared by {}", def.file));
    Some(if support.supported {
        ((support.fitness_score * 100.0).round() as u32, true, reason)
    } else {
        (0, false, reason)
    })
}

/// Mean rounded half up; 100 for nothing.
fn mean_points(points: &[u32]) -> u32 {
    if points.is_empty() {
        return 100;
    }
    let sum: u64 = points.iter().map(|p| u64::from(*p)).sum();
    let count = points.len() as u64;
    ((2 * sum + count) / (2 * count)) as u32
}

/// The per-node scores of every scored node for `tier`.
fn scored(
    traversal: &Traversal,
    nodes: &BTreeMap<String, ResourceNode>,
    tier: Tier,
) -> Vec<(String, u32, bool, String)> {
    let mut out = Vec::new();
    for (name, node) in nodes {
        if node.required {
            let (points, supported, reason) = resource_points(node.def.as_deref(), name, tier);
            out.push((format!("resource:{name}"), points, supported, reason));
        }
    }
    for (name, (def, required)) in &traversal.scenarios {
        if let (Some(def), true) = (def, *required)
            && let Some((points, supported, reason)) = scenario_points(def, tier)
        {
            out.push((format!("scenario:{name}"), points, supported, reason));
        }
    }
    out
}

fn tier_points(traversal: &Traversal, nodes: &BTreeMap<String, ResourceNode>, tier: Tier) -> u32 {
    let points: Vec<u32> = scored(traversal, nodes, tier).iter().map(|s| s.1).collect();
    mean_points(&points)
}

fn requirements(traversal: &Traversal, nodes: &BTreeMap<String, ResourceNode>) -> Requirements {
    let mut ram_mb = 0;
    let mut disk_mb = 0;
    let mut centi_cores = 0u64;
    let mut gpu = GpuNeed::None;
    let mut network = NetworkNeed::Offline;
    let mut add = |footprint: Footprint| {
        ram_mb += footprint.ram_mb;
        disk_mb += footprint.disk_mb;
        centi_cores += (footprint.cpu_cores * 100.0).round() as u64;
        gpu = gpu.max(footprint.gpu);
        network = network.max(footprint.network);
    };
    for (name, node) in nodes {
        if node.required {
            add(resource_footprint(node.def.as_deref(), name));
        }
    }
    for (def, required) in traversal.scenarios.values() {
        if *required {
            add(scenario_footprint(def.as_deref()));
        }
    }
    Requirements {
        ram_mb,
        disk_mb,
        cpu_cores: centi_cores as f64 / 100.0,
        gpu,
        network,
    }
}

fn scenario_footprint(def: Option<&ServiceDef>) -> Footprint {
    def.and_then(|d| d.deployment.as_ref())
        .and_then(|d| d.footprint)
        .unwrap_or(classes::scenario_app().footprint)
}

fn status(points: u32, any_unsupported: bool) -> &'static str {
    if any_unsupported {
        "blocked"
    } else if points >= 90 {
        "ready"
    } else if points >= 60 {
        "limited"
    } else {
        "needs-swaps"
    }
}

/// Swap candidates for a resource.
fn candidates(def: Option<&ServiceDef>, name: &str) -> Vec<String> {
    let declared: Vec<String> = def
        .and_then(|d| d.deployment.as_ref())
        .map(|d| d.swappable_with.iter().map(|s| s.id.clone()).collect())
        .unwrap_or_default();
    if !declared.is_empty() || def.and_then(|d| d.deployment.as_ref()).is_some() {
        return declared;
    }
    classes::SWAPS
        .iter()
        .filter(|(from, _)| *from == name)
        .map(|(_, to)| to.to_string())
        .collect()
}

/// Checks the requested swaps against the graph.
fn validate_swaps(
    catalog: &Catalog,
    traversal: &Traversal,
    swaps: &BTreeMap<String, String>,
    scenario: &str,
) -> Result<(), Diagnostic> {
    // A chain that comes back to where it started swaps nothing for nothing.
    for start in swaps.keys() {
        let mut chain = vec![start.as_str()];
        let mut current = start.as_str();
        while let Some(next) = swaps.get(current) {
            if chain.contains(&next.as_str()) {
                chain.push(next);
                return Err(
                    Diagnostic::error(format!("swap cycle: {}", chain.join(" -> ")))
                        .help("each resource can be replaced once; remove one of these swaps"),
                );
            }
            chain.push(next);
            current = next;
        }
    }
    // Every name the graph uses, following chains of any length.
    let mut used: BTreeSet<String> = traversal.uses.iter().map(|u| u.1.clone()).collect();
    loop {
        let before = used.len();
        for (from, to) in swaps {
            if used.contains(from) {
                used.insert(to.clone());
            }
        }
        if used.len() == before {
            break;
        }
    }
    for (from, to) in swaps {
        if !used.contains(from) {
            let original: BTreeSet<&String> = traversal.uses.iter().map(|u| &u.1).collect();
            return Err(Diagnostic::error(format!(
                "scenario `{scenario}` does not use resource `{from}`, so it cannot be swapped"
            ))
            .help(crate::names::help(
                from,
                "resources it uses",
                original.into_iter().map(String::as_str),
            )));
        }
        if from == to {
            return Err(Diagnostic::error(format!(
                "swap {from}={to} replaces a resource by itself"
            ))
            .help("name a different replacement"));
        }
        // Only a declared replacement can take a resource's place: anything else would drop
        // what the resource provides (a database URL, a cache) without a substitute.
        let from_def = catalog.get(ServiceKind::Resource, from)?;
        let listed = candidates(from_def.as_deref(), from);
        if !listed.contains(to) {
            let diagnostic = Diagnostic::error(format!("unknown swap target `{to}` for `{from}`"));
            return Err(if listed.is_empty() {
                diagnostic.help(format!(
                    "`{from}` declares no replacements: list them in deployment.swappable_with of {}",
                    catalog.layout.definition_path(ServiceKind::Resource, from)
                ))
            } else {
                diagnostic.help(crate::names::help(
                    to,
                    &format!("`{from}` can be swapped for"),
                    listed.iter().map(String::as_str),
                ))
            });
        }
    }
    Ok(())
}

/// Analyzes `request.scenario` with `request.swaps` applied.
pub fn analyze(catalog: &Catalog, request: &Request) -> Result<Analysis, Diagnostic> {
    catalog.start_recording();
    let traversal = traverse(catalog, &request.scenario)?;
    validate_swaps(catalog, &traversal, &request.swaps, &request.scenario)?;
    let nodes = resource_nodes(catalog, &traversal, &request.swaps)?;
    let tiers_in_scope: Vec<Tier> = match request.tier {
        Some(tier) => vec![tier],
        None => Tier::ALL.to_vec(),
    };

    let mut fitness = BTreeMap::new();
    let mut tiers = BTreeMap::new();
    for tier in Tier::ALL {
        let scores = scored(&traversal, &nodes, tier);
        let points = mean_points(&scores.iter().map(|s| s.1).collect::<Vec<_>>());
        fitness.insert(tier, f64::from(points) / 100.0);
        if !tiers_in_scope.contains(&tier) {
            continue;
        }
        let blockers: Vec<Blocker> = scores
            .into_iter()
            .filter(|(_, points, supported, _)| !supported || *points < 75)
            .map(|(node, points, supported, reason)| Blocker {
                node,
                points,
                supported,
                reason,
            })
            .collect();
        let any_unsupported = blockers.iter().any(|b| !b.supported);
        tiers.insert(
            tier,
            TierReport {
                score: f64::from(points) / 100.0,
                points,
                status: status(points, any_unsupported),
                blockers,
            },
        );
    }

    let base_requirements = requirements(&traversal, &nodes);
    let mut suggestions = Vec::new();
    for (name, node) in &nodes {
        if !node.required {
            continue;
        }
        for to in candidates(node.def.as_deref(), name) {
            if to == *name || request.swaps.get(name) == Some(&to) {
                continue;
            }
            let mut swaps = request.swaps.clone();
            swaps.insert(name.clone(), to.clone());
            // A candidate whose own definition is broken is not suggested.
            let Ok(swapped) = resource_nodes(catalog, &traversal, &swaps) else {
                continue;
            };
            let swapped_requirements = requirements(&traversal, &swapped);
            for &tier in &tiers_in_scope {
                let before = i64::from(tier_points(&traversal, &nodes, tier));
                let after = i64::from(tier_points(&traversal, &swapped, tier));
                if after > before {
                    suggestions.push(SwapSuggestion {
                        from: name.clone(),
                        to: to.clone(),
                        tier,
                        impact: format!("+{}", after - before),
                        impact_points: after - before,
                        ram_mb_delta: swapped_requirements.ram_mb as i64
                            - base_requirements.ram_mb as i64,
                        disk_mb_delta: swapped_requirements.disk_mb as i64
                            - base_requirements.disk_mb as i64,
                    });
                }
            }
        }
    }
    suggestions.sort_by(|a, b| {
        a.tier
            .cmp(&b.tier)
            .then(b.impact_points.cmp(&a.impact_points))
            .then(a.from.cmp(&b.from))
            .then(a.to.cmp(&b.to))
    });

    let dag = build_dag(catalog, &traversal, &nodes);
    let list = |required: bool, kind: ServiceKind| -> Vec<String> {
        dag.nodes
            .iter()
            .filter(|n| n.kind == kind && n.required == required && n.name != request.scenario)
            .map(|n| n.name.clone())
            .collect()
    };
    let mut warnings = traversal.warnings.clone();
    warnings.sort();
    warnings.dedup();
    Ok(Analysis {
        scenario: request.scenario.clone(),
        applied_swaps: request
            .swaps
            .iter()
            .map(|(from, to)| AppliedSwap {
                from: from.clone(),
                to: to.clone(),
            })
            .collect(),
        dependencies: NameLists {
            resources: list(true, ServiceKind::Resource),
            scenarios: list(true, ServiceKind::Scenario),
        },
        optional: NameLists {
            resources: list(false, ServiceKind::Resource),
            scenarios: list(false, ServiceKind::Scenario),
        },
        requirements: base_requirements,
        fitness,
        tiers,
        swaps: suggestions,
        dag,
        warnings,
        files: catalog.recorded(),
    })
}

fn build_dag(
    catalog: &Catalog,
    traversal: &Traversal,
    nodes: &BTreeMap<String, ResourceNode>,
) -> Dag {
    let mut dag_nodes = Vec::new();
    for (name, (def, required)) in &traversal.scenarios {
        let mut fitness = BTreeMap::new();
        if let Some(def) = def {
            for tier in Tier::ALL {
                if let Some((points, _, _)) = scenario_points(def, tier) {
                    fitness.insert(tier, points);
                }
            }
        }
        dag_nodes.push(Node {
            id: format!("scenario:{name}"),
            name: name.clone(),
            kind: ServiceKind::Scenario,
            required: *required,
            source: def
                .as_ref()
                .map_or("missing".to_string(), |d| d.file.to_string()),
            footprint: scenario_footprint(def.as_deref()),
            fitness,
            replaces: Vec::new(),
        });
    }
    for (name, node) in nodes {
        let def = node.def.as_deref();
        dag_nodes.push(Node {
            id: format!("resource:{name}"),
            name: name.clone(),
            kind: ServiceKind::Resource,
            required: node.required,
            source: match def {
                Some(def) => def.file.to_string(),
                None => format!("class:{}", class_for(None, name).name),
            },
            footprint: resource_footprint(def, name),
            fitness: Tier::ALL
                .iter()
                .map(|tier| (*tier, resource_points(def, name, *tier).0))
                .collect(),
            replaces: node.replaces.iter().cloned().collect(),
        });
    }
    let mut edges: BTreeSet<Edge> = traversal.scenario_edges.clone();
    for (scenario, resource, edge_required, _) in &traversal.uses {
        let swaps_target = nodes
            .iter()
            .find(|(name, node)| *name == resource || node.replaces.contains(resource))
            .map(|(name, _)| name.clone())
            .unwrap_or_else(|| resource.clone());
        edges.insert(Edge {
            from: format!("scenario:{scenario}"),
            to: format!("resource:{swaps_target}"),
            optional: !edge_required,
        });
    }
    let _ = catalog;
    Dag {
        nodes: dag_nodes,
        edges: edges.into_iter().collect(),
    }
}

/// Parses `FROM=TO` swap arguments.
pub fn parse_swaps(pairs: &[String]) -> Result<BTreeMap<String, String>, Diagnostic> {
    let mut swaps = BTreeMap::new();
    for pair in pairs {
        let Some((from, to)) = pair.split_once('=') else {
            return Err(Diagnostic::error(format!("`{pair}` is not a swap"))
                .help("write swaps as FROM=TO, e.g. --swap postgres=sqlite"));
        };
        let (from, to) = (from.trim(), to.trim());
        if from.is_empty() || to.is_empty() {
            return Err(Diagnostic::error(format!("`{pair}` is not a swap"))
                .help("write swaps as FROM=TO, e.g. --swap postgres=sqlite"));
        }
        if let Some(path) = [from, to]
            .into_iter()
            .find(|name| !crate::config::is_plain_name(name))
        {
            return Err(
                Diagnostic::error(format!("`{path}` is not a resource name"))
                    .help("swaps name resources (directories under the resources directory), e.g. --swap postgres=sqlite"),
            );
        }
        if swaps.insert(from.to_string(), to.to_string()).is_some() {
            return Err(Diagnostic::error(format!("`{from}` is swapped twice"))
                .help("give one replacement per resource"));
        }
    }
    Ok(swaps)
}

/// Where an analysis of `scenario` is written by the `analyze:<scenario>` task.
pub fn output_path(out: &Utf8Path, scenario: &str) -> Utf8PathBuf {
    out.join("analysis").join(format!("{scenario}.json"))
}
