//! Planning: turning `bundle.toml` into the engine's task graph, before anything runs.
//!
//! **Invariant:** planning never executes anything. The whole graph exists before the first
//! task starts, so `--dry-run`, `graph` and `explain` see exactly what a run would do.

use std::collections::BTreeMap;
use std::sync::Arc;

use engine::{CommandAction, GraphError, TaskGraph, TaskId, TaskSpec};

use camino::Utf8Path;

use crate::analysis::{self, Layout};
use crate::config::{BundleConfig, Command};
use crate::diagnostic::Diagnostic;

/// Implementation version of declared (`shell`) tasks; bump when how they run changes.
const SHELL_TASK_VERSION: u32 = 1;

pub fn task_id(name: &str) -> TaskId {
    TaskId::new(format!("task:{name}"))
}

/// The engine spec of every declared task.
pub fn declared_specs(config: &BundleConfig) -> Vec<TaskSpec> {
    config
        .tasks
        .iter()
        .map(|task| {
            let (argv, command_param) = match &task.command {
                Command::Shell(script) => (
                    vec!["sh".to_string(), "-c".to_string(), script.clone()],
                    format!("sh -c {script}"),
                ),
                Command::Argv(argv) => (
                    argv.clone(),
                    serde_json::to_string(argv).expect("strings serialize"),
                ),
            };
            let mut params = BTreeMap::new();
            params.insert("command".to_string(), command_param);
            params.insert("cwd".to_string(), task.cwd.clone());
            params.insert(
                "inputs".to_string(),
                serde_json::to_string(&task.inputs).expect("strings serialize"),
            );
            params.insert(
                "outputs".to_string(),
                serde_json::to_string(&task.outputs).expect("strings serialize"),
            );
            TaskSpec {
                id: task_id(&task.name),
                kind: "shell".to_string(),
                impl_version: SHELL_TASK_VERSION,
                params,
                cwd: task.cwd.clone(),
                inputs: task.inputs.clone(),
                outputs: task.outputs.clone(),
                env: task.env.clone(),
                tools: BTreeMap::new(),
                deps: task.deps.iter().map(|(name, _)| task_id(name)).collect(),
                action: Arc::new(CommandAction { argv }),
                description: task.description.clone(),
            }
        })
        .collect()
}

/// The full task graph of this repository (declared tasks and pipeline stages), or a diagnostic
/// pointing into bundle.toml.
pub fn graph(config: &BundleConfig, root: &Utf8Path) -> Result<TaskGraph, Diagnostic> {
    let layout = Layout {
        root: root.to_path_buf(),
        scenarios: config.workspace.scenarios.clone(),
        resources: config.workspace.resources.clone(),
    };
    let mut specs = declared_specs(config);
    specs.extend(analysis::task::specs(&layout, &config.workspace.out));
    let context = crate::stages::Context::new(root, config.clone())?;
    specs.extend(crate::stages::specs(&context));
    TaskGraph::new(specs).map_err(|err| graph_diagnostic(config, err))
}

fn bare(id: &TaskId) -> &str {
    id.as_str().strip_prefix("task:").unwrap_or(id.as_str())
}

fn graph_diagnostic(config: &BundleConfig, err: GraphError) -> Diagnostic {
    match &err {
        GraphError::UnknownDependency {
            task,
            dependency,
            suggestion,
        } => {
            let declared = config.task(bare(task));
            let span = declared
                .and_then(|t| t.deps.iter().find(|(name, _)| name == bare(dependency)))
                .map(|(_, span)| span.clone())
                .unwrap_or(0..0);
            let help = match suggestion {
                Some(close) => format!("did you mean `{}`?", bare(close)),
                None => format!(
                    "declare [tasks.{}] or remove it from deps; declared tasks: {}",
                    bare(dependency),
                    config
                        .tasks
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            config
                .diagnostic(err.to_string(), span, "no task has this name")
                .help(help)
        }
        GraphError::Cycle { cycle } => {
            // Point at the first edge of the cycle.
            let span = cycle
                .first()
                .zip(cycle.get(1))
                .and_then(|(from, to)| {
                    config
                        .task(bare(from))?
                        .deps
                        .iter()
                        .find(|(name, _)| name == bare(to))
                        .map(|(_, span)| span.clone())
                })
                .unwrap_or(0..0);
            config
                .diagnostic(err.to_string(), span, "this dependency closes the cycle")
                .help("a task cannot depend on itself, directly or through others: remove one of these deps")
        }
        GraphError::Duplicate(_) | GraphError::UnknownTask { .. } => {
            Diagnostic::error(err.to_string())
        }
    }
}

/// Resolves task names given on the command line.
pub fn resolve(graph: &TaskGraph, names: &[String]) -> Result<Vec<TaskId>, Diagnostic> {
    names
        .iter()
        .map(|name| {
            graph.resolve(name).map_err(|err| {
                let mut diagnostic = Diagnostic::error(err.to_string());
                if let GraphError::UnknownTask {
                    suggestion: Some(close),
                    ..
                } = &err
                {
                    diagnostic = diagnostic.help(format!("did you mean `{close}`?"));
                } else {
                    diagnostic = diagnostic.help("`cargo xtask graph` lists every task");
                }
                diagnostic
            })
        })
        .collect()
}
