//! `--affected [--base REF]`: the tasks whose inputs changed since a git ref, and every task
//! downstream of them (turborepo's `--affected`).
//!
//! What is compared: the files git reports as different between the base and the work tree
//! (`git diff --name-only --no-renames BASE`: commits since the base, staged and unstaged
//! changes, deletions, both sides of a rename) plus untracked files git does not ignore.
//! The default base is the merge-base of `HEAD` and `origin/HEAD`, else `HEAD` (the
//! uncommitted changes only).
//!
//! Invariants:
//! - A changed path that is some task's declared output is no source change and is dropped.
//! - A task is affected when a changed path matches its declared inputs (relative to its
//!   cwd) or is one of the inputs its ledger entry recorded (declared or discovered); a task
//!   whose inputs are discovered (not a `[tasks]` shell task, or one with a depfile) and which
//!   has no ledger entry counts as affected, as does every task when bundle.toml or
//!   `platforms/` changed (the definitions themselves).
//! - Every dependent of an affected task is affected. The engine still runs each selected
//!   task's dependencies, as always (fresh or restored from the cache when unchanged).

use std::collections::{BTreeSet, VecDeque};

use camino::Utf8Path;
use engine::TaskId;
use engine::files::Patterns;

use super::hooks::git;
use crate::diagnostic::Diagnostic;

/// The root-relative paths changed since `base` (see the module docs).
fn changed_paths(root: &Utf8Path, base: Option<&str>) -> Result<BTreeSet<String>, Diagnostic> {
    let base = match base {
        Some(base) => base.to_string(),
        None => git(root, &["merge-base", "HEAD", "origin/HEAD"])
            .or_else(|_| git(root, &["rev-parse", "--verify", "HEAD"]))
            .map_err(|err| {
                err.help("--affected compares with a git ref: commit once, or pass --base REF")
            })?,
    };
    if base.starts_with('-') {
        return Err(Diagnostic::error(format!("--base {base}: not a git ref"))
            .help("pass a branch, tag or commit (`--base origin/main`)"));
    }
    let mut paths = BTreeSet::new();
    let diff = git(
        root,
        &[
            "diff",
            "--name-only",
            "--no-renames",
            "--relative",
            "-z",
            &base,
            "--",
        ],
    )
    .map_err(|err| {
        err.help(format!(
            "--base {base} must name a commit of this repository"
        ))
    })?;
    let untracked = git(root, &["ls-files", "--others", "--exclude-standard", "-z"])?;
    for path in diff.split('\0').chain(untracked.split('\0')) {
        if !path.is_empty() {
            paths.insert(path.to_string());
        }
    }
    Ok(paths)
}

/// `path` relative to `cwd` (root-relative, "" for the root), when it is below it.
fn under<'a>(cwd: &str, path: &'a str) -> Option<&'a str> {
    if cwd.is_empty() {
        return Some(path);
    }
    path.strip_prefix(cwd)?.strip_prefix('/')
}

/// The affected tasks of `graph`, in topological order.
pub(super) fn affected(
    root: &Utf8Path,
    engine: &engine::Engine,
    graph: &engine::TaskGraph,
    base: Option<&str>,
) -> Result<Vec<TaskId>, Diagnostic> {
    let changed = changed_paths(root, base)?;
    let compile = |patterns: &[String]| {
        Patterns::new(patterns).map_err(|err| Diagnostic::error(err.to_string()))
    };
    let mut outputs = Vec::new();
    for spec in graph.topological() {
        outputs.push((spec.cwd.clone(), compile(&spec.outputs)?));
    }
    let sources: Vec<&String> = changed
        .iter()
        .filter(|path| {
            !outputs.iter().any(|(cwd, patterns)| {
                !patterns.is_empty() && under(cwd, path).is_some_and(|p| patterns.matches(p))
            })
        })
        .collect();
    let definitions = sources
        .iter()
        .any(|p| p.as_str() == crate::config::FILE_NAME || p.starts_with("platforms/"));
    let mut affected = BTreeSet::new();
    for spec in graph.topological() {
        let inputs = compile(&spec.inputs)?;
        let declared = sources
            .iter()
            .any(|path| under(&spec.cwd, path).is_some_and(|p| inputs.matches(p)));
        let discovers = spec.kind != "shell" || spec.params.contains_key("depfile");
        let recorded = match engine.ledger().get(&spec.id) {
            Some(entry) => sources
                .iter()
                .any(|path| entry.components.inputs.contains_key(path.as_str())),
            None => discovers,
        };
        if definitions || declared || recorded {
            affected.insert(spec.id.clone());
        }
    }
    // Downstream: every dependent of an affected task.
    let mut queue: VecDeque<TaskId> = affected.iter().cloned().collect();
    while let Some(id) = queue.pop_front() {
        for dependent in graph.dependents(&id) {
            if affected.insert(dependent.clone()) {
                queue.push_back(dependent);
            }
        }
    }
    Ok(graph
        .topological()
        .filter(|spec| affected.contains(&spec.id))
        .map(|spec| spec.id.clone())
        .collect())
}

/// `targets` (and their dependencies) narrowed to the affected tasks: what a run with
/// `--affected` asks the engine for. Says which tasks were selected (`affected` event).
pub(super) fn select(
    workspace: &super::Workspace,
    graph: &engine::TaskGraph,
    targets: &[TaskId],
    base: Option<&str>,
    shell: &crate::shell::Shell,
) -> Result<Vec<TaskId>, Diagnostic> {
    let wanted: BTreeSet<TaskId> = graph.closure(targets).into_iter().collect();
    let selected: Vec<TaskId> = affected(&workspace.root, &workspace.engine, graph, base)?
        .into_iter()
        .filter(|id| wanted.contains(id))
        .collect();
    if shell.is_json() {
        shell.json(&serde_json::json!({
            "event": "affected",
            "base": base,
            "tasks": selected.iter().map(TaskId::as_str).collect::<Vec<_>>(),
        }));
    } else {
        shell.status(
            "Affected",
            crate::shell::GREEN,
            &format!(
                "{} of {} tasks changed since the base, or depend on one that did",
                selected.len(),
                wanted.len()
            ),
        );
    }
    Ok(selected)
}
