//! The task graph: tasks by id, dependency edges, validation (unknown ids, cycles), selection
//! of a sub-graph, and renderings (json, dot, mermaid).
//!
//! Invariant: a [`TaskGraph`] that exists is acyclic and every dependency names a task in it.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use petgraph::Direction;
use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use serde::Serialize;

use crate::task::{TaskId, TaskSpec};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    #[error("task `{task}` depends on unknown task `{dependency}`")]
    UnknownDependency {
        task: TaskId,
        dependency: TaskId,
        suggestion: Option<TaskId>,
    },
    #[error("dependency cycle: {}", cycle.iter().map(TaskId::as_str).collect::<Vec<_>>().join(" -> "))]
    Cycle { cycle: Vec<TaskId> },
    #[error("task `{0}` is defined twice")]
    Duplicate(TaskId),
    #[error("unknown task `{name}`")]
    UnknownTask {
        name: String,
        suggestion: Option<TaskId>,
    },
}

/// An acyclic graph of tasks; edges point from a dependency to its dependent.
pub struct TaskGraph {
    specs: Vec<TaskSpec>,
    index: HashMap<TaskId, NodeIndex>,
    graph: DiGraph<usize, ()>,
    order: Vec<NodeIndex>,
}

impl TaskGraph {
    pub fn new(specs: Vec<TaskSpec>) -> Result<TaskGraph, GraphError> {
        let mut graph = DiGraph::new();
        let mut index = HashMap::new();
        for (position, spec) in specs.iter().enumerate() {
            let node = graph.add_node(position);
            if index.insert(spec.id.clone(), node).is_some() {
                return Err(GraphError::Duplicate(spec.id.clone()));
            }
        }
        for spec in &specs {
            for dependency in &spec.deps {
                let Some(&from) = index.get(dependency) else {
                    return Err(GraphError::UnknownDependency {
                        task: spec.id.clone(),
                        dependency: dependency.clone(),
                        suggestion: closest(dependency.as_str(), specs.iter().map(|s| &s.id)),
                    });
                };
                graph.update_edge(from, index[&spec.id], ());
            }
        }
        let order = match toposort(&graph, None) {
            Ok(order) => order,
            Err(_) => {
                return Err(GraphError::Cycle {
                    cycle: find_cycle(&graph, &specs),
                });
            }
        };
        Ok(TaskGraph {
            specs,
            index,
            graph,
            order,
        })
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    pub fn get(&self, id: &TaskId) -> Option<&TaskSpec> {
        self.index
            .get(id)
            .map(|node| &self.specs[self.graph[*node]])
    }

    /// Every task, dependencies before dependents.
    pub fn topological(&self) -> impl Iterator<Item = &TaskSpec> {
        self.order.iter().map(|node| &self.specs[self.graph[*node]])
    }

    /// Resolves a user-given name: an exact id, or `NAME` for `task:NAME`.
    pub fn resolve(&self, name: &str) -> Result<TaskId, GraphError> {
        for candidate in [name.to_string(), format!("task:{name}")] {
            let id = TaskId::new(candidate);
            if self.index.contains_key(&id) {
                return Ok(id);
            }
        }
        Err(GraphError::UnknownTask {
            name: name.to_string(),
            suggestion: closest(name, self.specs.iter().map(|s| &s.id)),
        })
    }

    /// The given tasks and everything they depend on, in topological order.
    pub fn closure(&self, roots: &[TaskId]) -> Vec<TaskId> {
        let mut wanted = BTreeSet::new();
        let mut stack: Vec<NodeIndex> = roots
            .iter()
            .filter_map(|id| self.index.get(id).copied())
            .collect();
        while let Some(node) = stack.pop() {
            if wanted.insert(node) {
                stack.extend(self.graph.neighbors_directed(node, Direction::Incoming));
            }
        }
        self.order
            .iter()
            .filter(|node| wanted.contains(node))
            .map(|node| self.specs[self.graph[*node]].id.clone())
            .collect()
    }

    /// Direct dependents of a task.
    pub fn dependents(&self, id: &TaskId) -> Vec<TaskId> {
        let node = self.index[id];
        self.graph
            .neighbors_directed(node, Direction::Outgoing)
            .map(|n| self.specs[self.graph[n]].id.clone())
            .collect()
    }

    /// `{"tasks": [{id, kind, deps, description?}]}`, sorted by id.
    pub fn to_json(&self) -> serde_json::Value {
        #[derive(Serialize)]
        struct Node<'a> {
            id: &'a str,
            kind: &'a str,
            deps: Vec<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            description: Option<&'a str>,
        }
        let mut tasks: Vec<&TaskSpec> = self.topological().collect();
        tasks.sort_by(|a, b| a.id.cmp(&b.id));
        let nodes: Vec<Node> = tasks
            .iter()
            .map(|spec| {
                let mut deps: Vec<&str> = spec.deps.iter().map(TaskId::as_str).collect();
                deps.sort();
                Node {
                    id: spec.id.as_str(),
                    kind: &spec.kind,
                    deps,
                    description: spec.description.as_deref(),
                }
            })
            .collect();
        serde_json::json!({ "tasks": nodes })
    }

    pub fn render(&self, format: GraphFormat) -> String {
        let mut tasks: Vec<&TaskSpec> = self.topological().collect();
        tasks.sort_by(|a, b| a.id.cmp(&b.id));
        match format {
            GraphFormat::Json => {
                let mut text =
                    serde_json::to_string_pretty(&self.to_json()).expect("graph serializes");
                text.push('\n');
                text
            }
            GraphFormat::Dot => {
                let mut text =
                    String::from("digraph tasks {\n  rankdir=LR;\n  node [shape=box];\n");
                for spec in &tasks {
                    let _ = writeln!(text, "  {:?};", spec.id.as_str());
                }
                for spec in &tasks {
                    let mut deps: Vec<&TaskId> = spec.deps.iter().collect();
                    deps.sort();
                    for dep in deps {
                        let _ = writeln!(text, "  {:?} -> {:?};", dep.as_str(), spec.id.as_str());
                    }
                }
                text.push_str("}\n");
                text
            }
            GraphFormat::Mermaid => {
                let mut text = String::from("graph LR\n");
                let ids: HashMap<&TaskId, usize> = tasks
                    .iter()
                    .enumerate()
                    .map(|(n, spec)| (&spec.id, n))
                    .collect();
                for (n, spec) in tasks.iter().enumerate() {
                    let _ = writeln!(
                        text,
                        "  n{n}[\"{}\"]",
                        spec.id.as_str().replace('"', "#quot;")
                    );
                }
                for spec in &tasks {
                    let mut deps: Vec<&TaskId> = spec.deps.iter().collect();
                    deps.sort();
                    for dep in deps {
                        let _ = writeln!(text, "  n{} --> n{}", ids[dep], ids[&spec.id]);
                    }
                }
                text
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphFormat {
    Json,
    Dot,
    Mermaid,
}

/// The closest id to `name` by edit distance, if it is close enough to be a likely typo.
pub fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a TaskId>) -> Option<TaskId> {
    let bare = name.strip_prefix("task:").unwrap_or(name);
    candidates
        .map(|id| {
            let candidate_bare = id.as_str().strip_prefix("task:").unwrap_or(id.as_str());
            (strsim::jaro_winkler(bare, candidate_bare), id)
        })
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, id)| id.clone())
}

/// One cycle, as a path that starts and ends at the same task.
fn find_cycle(graph: &DiGraph<usize, ()>, specs: &[TaskSpec]) -> Vec<TaskId> {
    let id = |node: NodeIndex| specs[graph[node]].id.clone();
    for component in tarjan_scc(graph) {
        let members: BTreeSet<NodeIndex> = component.iter().copied().collect();
        let start = *members.iter().min_by_key(|n| id(**n)).expect("non-empty");
        if members.len() == 1 && graph.find_edge(start, start).is_none() {
            continue;
        }
        // Breadth-first along "depends on" links inside the component, back to `start`.
        let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut last = None;
        'search: while let Some(current) = queue.pop_front() {
            let mut next_nodes: Vec<NodeIndex> = graph
                .neighbors_directed(current, Direction::Incoming)
                .filter(|n| members.contains(n))
                .collect();
            next_nodes.sort_by_key(|n| id(*n));
            for next in next_nodes {
                if next == start {
                    last = Some(current);
                    break 'search;
                }
                if let std::collections::hash_map::Entry::Vacant(slot) = parent.entry(next) {
                    slot.insert(current);
                    queue.push_back(next);
                }
            }
        }
        let mut path = vec![start];
        let mut node =
            last.expect("a strongly connected component has a cycle through each member");
        let mut back = Vec::new();
        while node != start {
            back.push(node);
            node = parent[&node];
        }
        path.extend(back.into_iter().rev());
        path.push(start);
        // Edges run dependency -> dependent; we walked "depends on" links, which reads naturally.
        return path.into_iter().map(id).collect();
    }
    Vec::new()
}
