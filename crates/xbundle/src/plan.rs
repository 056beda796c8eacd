//! Planning: turning `bundle.toml` into the engine's task graph, before anything runs, and
//! every check a definition must pass before anything is built.
//!
//! **Invariant:** planning never executes anything. The whole graph exists before the first
//! task starts, so `--dry-run`, `graph` and `explain` see exactly what a run would do.
//!
//! **Invariant:** [`plan`] is the one validation path: every command that plans (`check`,
//! `bundle`, `task`, `watch`, `run`, `thin-client`, `export`, `graph`, `explain`, `cache`,
//! `doctor`, and `profile create | set` before they write) goes through it, so `check` rejects
//! exactly what a build would. Besides the graph's own rules (known dependencies, no cycles), it
//! decides who may write where, on every task the plan makes (declared tasks and pipeline
//! stages), exactly on the globs ([`engine::overlap`]):
//!
//! - **protected paths**: no output reaches a `.git` directory (at any depth, in any case: the
//!   engine refuses `.GIT` too), the state directory `.xbundle` or the cache when it lies inside
//!   the root. A walk never enters those below its root, so the rule is checked on each output
//!   pattern's walk root ([`overlap::walk_root`]): `.git`, `sub/.git/hooks/*`, `.xbundle/**` and
//!   `cache/**` are refused, `build/**` and `**/*.o` are not. No output matches `bundle.toml`
//!   or the root's `.git` itself (a file in a git worktree, which walks do not skip: `.g*` is
//!   refused), exactly: nothing is ever below a file, so `**/*.o` does not "match
//!   `bundle.toml/x.o`";
//! - **own inputs**: no task's outputs overlap its own inputs (it would read what it writes; a
//!   task may read its dependencies' outputs);
//! - **one owner**: no two tasks' outputs overlap, pipeline stages' outputs under `[workspace]
//!   out` included (each run removes and restores its own outputs).
//!
//! Each violation is a diagnostic at the offending pattern in bundle.toml (or at `[workspace]
//! out` / the profile for pipeline stages) with a witness path that both sides match.

use std::collections::BTreeMap;
use std::sync::Arc;

use std::ops::Range;

use engine::overlap::{self, Budget, OverlapError, PatternSet};
use engine::{CommandAction, GraphError, TaskGraph, TaskId, TaskSpec};

use camino::Utf8Path;

use crate::analysis;
use crate::config::{BundleConfig, Command, DeclaredTask};
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
            // The cwd and the outputs are in every key already (see `engine::key`); which
            // inputs are declared decides what the task may read.
            params.insert(
                "inputs".to_string(),
                serde_json::to_string(&task.inputs).expect("strings serialize"),
            );
            // The depfile's dependencies are discovered inputs, recorded with the result.
            if let Some(depfile) = &task.depfile {
                params.insert("depfile".to_string(), depfile.clone());
            }
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
                action: Arc::new(CommandAction {
                    argv,
                    depfile: task.depfile.clone(),
                    // Not in the key: a remote run gives the same outputs as a local one.
                    remote: task.remote,
                }),
                description: task.description.clone(),
            }
        })
        .collect()
}

/// A checked plan: the task graph, and each profile's bundles (which platforms can be staged
/// here, and why not).
pub struct Plan {
    pub graph: TaskGraph,
    pub bundles: Vec<crate::bundles::ProfilePlan>,
    /// What planning loaded (configuration, platforms, layout), for the commands that go on
    /// to assemble or stage.
    pub context: crate::stages::Context,
}

/// The full task graph of this repository (declared tasks and pipeline stages), or a diagnostic
/// pointing into bundle.toml. See [`plan`].
pub fn graph(
    config: &BundleConfig,
    root: &Utf8Path,
    tools: &crate::toolchain::Toolchains,
) -> Result<TaskGraph, Diagnostic> {
    plan(config, root, tools).map(|plan| plan.graph)
}

/// Plans every task and checks the whole definition (module docs). Assembles nothing: `check`
/// assembles every profile from the returned context, builds assemble in their tasks.
pub fn plan(
    config: &BundleConfig,
    root: &Utf8Path,
    tools: &crate::toolchain::Toolchains,
) -> Result<Plan, Diagnostic> {
    let cache = config.cache_location(root)?;
    let context = crate::stages::Context::new(root, config.clone())?;
    let mut specs = declared_specs(config);
    specs.extend(analysis::task::specs(
        &context.layout,
        &config.workspace.out,
    ));
    specs.extend(crate::stages::plan(&context));
    let (build_specs, bundles) = crate::bundles::plan(&context, tools)?;
    specs.extend(build_specs);
    specs.extend(crate::assets::specs(config, &context.platforms)?);
    let graph = TaskGraph::new(specs).map_err(|err| graph_diagnostic(config, err))?;
    check_ownership(config, &graph, cache.inside_root.as_deref())?;
    Ok(Plan {
        graph,
        bundles,
        context,
    })
}

/// A task's outputs, compiled, with where the task is written in bundle.toml.
struct Owner<'a> {
    spec: &'a TaskSpec,
    declared: Option<&'a DeclaredTask>,
    outputs: PatternSet,
}

/// A path outputs may never match.
struct Protected {
    set: PatternSet,
    what: String,
    help: String,
}

/// Paths outputs may never match, exactly (checked on every path the globs match):
/// `bundle.toml`, and the root's `.git` in any case, which is a file in a git worktree or
/// submodule checkout (a walk skips `.git` directories, not files). Only the paths themselves:
/// nothing is ever below a file, and a walk never enters a `.git` directory (that is
/// [`walk_reaches_protected`]'s rule), so `**/*.o` is an ordinary pattern, not one that "matches
/// `bundle.toml/x.o`".
fn protected_paths() -> Result<Vec<Protected>, OverlapError> {
    // `.GIT` is the same entry on a case-insensitive file system, and the engine refuses every
    // case of it.
    let git: Vec<String> = (0..16u8)
        .map(|bits| {
            ".git"
                .chars()
                .enumerate()
                .map(|(at, c)| {
                    if at > 0 && bits & (1 << (at - 1)) != 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect()
        })
        .collect();
    Ok(vec![
        Protected {
            set: PatternSet::new("", &exactly(&[crate::config::FILE_NAME.to_string()]))?,
            what: "`bundle.toml`".into(),
            help: "outputs may never overwrite the pipeline's own definition: narrow the pattern (e.g. `build/**`), or add \"!bundle.toml\" to `outputs`".into(),
        },
        Protected {
            set: PatternSet::new("", &exactly(&git))?,
            what: "the repository's `.git`".into(),
            help: "outputs may never reach git's own files: narrow the pattern (e.g. `build/**`), or add \"!.git\" to `outputs`".into(),
        },
    ])
}

/// Patterns matching exactly the root-relative `paths`, not what is below them (as literal
/// patterns would). Each stays a literal, so its walk root is the path itself and most output
/// sets are told apart from it without building an automaton.
fn exactly(paths: &[String]) -> Vec<String> {
    let escaped: Vec<String> = paths.iter().map(|path| overlap::escape(path)).collect();
    let below = escaped.iter().map(|path| format!("!{path}/**"));
    escaped.iter().cloned().chain(below).collect()
}

/// Whether root-relative `path` is `dir` or below it.
fn under(path: &str, dir: &str) -> bool {
    path == dir || path.starts_with(&format!("{dir}/"))
}

/// Directories a walk never enters below its root, so an output reaches them only when its
/// walk root ([`overlap::walk_root`]) lies inside one: any `.git` directory (in any case, as
/// the engine's walks and guard see it), the state directory, and the cache when it lies inside
/// the root (`cache_dir`). Returns the walk root, what it reaches and the help line.
fn walk_reaches_protected(
    cwd: &str,
    pattern: &str,
    cache_dir: Option<&Utf8Path>,
) -> Option<(String, String, &'static str)> {
    let base = overlap::walk_root(pattern)?;
    let root = match (cwd.is_empty(), base.is_empty()) {
        (true, _) => base,
        (false, true) => cwd.to_string(),
        (false, false) => format!("{cwd}/{base}"),
    };
    if root
        .split('/')
        .any(|component| component.eq_ignore_ascii_case(".git"))
    {
        return Some((
            root,
            "a `.git` directory".into(),
            "outputs may never reach git's own files: name the build's own directory (e.g. `build/**`)",
        ));
    }
    if under(&root, crate::config::STATE_DIR) {
        return Some((
            root,
            "xbundle's state directory `.xbundle`".into(),
            "outputs may never reach xbundle's state and cache: name the build's own directory (e.g. `build/**`)",
        ));
    }
    if let Some(cache) = cache_dir
        && under(&root, cache.as_str())
    {
        return Some((
            root,
            format!("the cache directory `{cache}`"),
            "outputs may never reach the cache: name the build's own directory (e.g. `build/**`), or move the cache ([cache] dir)",
        ));
    }
    None
}

/// The three ownership rules of the module docs.
fn check_ownership(
    config: &BundleConfig,
    graph: &TaskGraph,
    cache_dir: Option<&Utf8Path>,
) -> Result<(), Diagnostic> {
    // Declared tasks in the order the file lists them, then the pipeline's tasks by id.
    let mut specs: Vec<(&TaskSpec, Option<&DeclaredTask>)> = graph
        .topological()
        .map(|spec| (spec, declared(config, spec)))
        .collect();
    specs.sort_by_key(|(spec, task)| match task {
        Some(task) => (0, task.span.start, String::new()),
        None => (1, 0, spec.id.as_str().to_string()),
    });
    let too_complex = |spec: &TaskSpec, err: OverlapError| {
        located(config, spec, declared(config, spec), None)
            .0
            .with_message(format!("cannot check the outputs of {}: {err}", spec.id))
            .help("simplify the patterns (fewer alternatives and wildcards per pattern)")
    };
    let protected = protected_paths().map_err(|err| Diagnostic::internal(err.to_string()))?;
    // One budget for every search of the plan: many complex patterns are refused, not compared
    // for minutes.
    let budget = Budget::new(overlap::PLAN_STATES);
    let mut owners = Vec::with_capacity(specs.len());
    for (spec, task) in specs {
        for pattern in &spec.outputs {
            if let Some((root, what, help)) = walk_reaches_protected(&spec.cwd, pattern, cache_dir)
            {
                let (mut diagnostic, _) = located_pattern(config, spec, task, pattern);
                // A pipeline task's outputs are not written in the file: point at the cache
                // setting that put the cache in their way.
                if task.is_none()
                    && cache_dir.is_some_and(|cache| under(&root, cache.as_str()))
                    && let Some(span) = &config.spans.cache_dir
                {
                    diagnostic = config.diagnostic("", span.clone(), "this directory");
                }
                return Err(diagnostic
                    .with_message(format!(
                        "{} would write inside {what}: output `{pattern}` reaches `{root}`",
                        spec.id
                    ))
                    .help(help));
            }
        }
        let outputs =
            PatternSet::new(&spec.cwd, &spec.outputs).map_err(|err| too_complex(spec, err))?;
        for guard in &protected {
            if let Some(path) = overlap::witness_within(&outputs, &guard.set, &budget)
                .map_err(|err| too_complex(spec, err))?
            {
                let (diagnostic, pattern) = located(config, spec, task, Some(&path));
                let by = pattern.map_or(String::new(), |p| format!("output `{p}` "));
                return Err(diagnostic
                    .with_message(format!(
                        "{} would overwrite {}: {by}matches `{path}`",
                        spec.id, guard.what,
                    ))
                    .help(guard.help.clone()));
            }
        }
        if !spec.inputs.is_empty() {
            let inputs =
                PatternSet::new(&spec.cwd, &spec.inputs).map_err(|err| too_complex(spec, err))?;
            if let Some(path) = overlap::witness_within(&outputs, &inputs, &budget)
                .map_err(|err| too_complex(spec, err))?
            {
                let (diagnostic, pattern) = located(config, spec, task, Some(&path));
                let help = match &pattern {
                    Some(pattern) => format!(
                        "a task may not write what it reads: exclude its outputs from its inputs, e.g. add \"!{pattern}\" to `inputs`, or narrow `outputs`"
                    ),
                    None => "a task may not write what it reads: move `[workspace] out` away from the files the pipeline reads".into(),
                };
                let output = pattern.map_or("its outputs".into(), |p| format!("its output `{p}`"));
                return Err(diagnostic
                    .with_message(format!(
                        "{} reads what it writes: `{path}` matches {output} and its inputs",
                        spec.id
                    ))
                    .help(help));
            }
        }
        owners.push(Owner {
            spec,
            declared: task,
            outputs,
        });
    }
    for (index, second) in owners.iter().enumerate() {
        for first in &owners[..index] {
            let found = overlap::witness_within(&first.outputs, &second.outputs, &budget).map_err(
                |err| {
                    // Name the set that does not compile when one does not; else the pair.
                    match first.outputs.prepare() {
                        Err(own) => too_complex(first.spec, own),
                        Ok(()) => too_complex(second.spec, err),
                    }
                },
            )?;
            let Some(path) = found else {
                continue;
            };
            // Point at a declared task's pattern: the later one in the file, else the one
            // that is declared at all.
            let (at, other) = if second.declared.is_some() || first.declared.is_none() {
                (second, first)
            } else {
                (first, second)
            };
            let (diagnostic, pattern) = located(config, at.spec, at.declared, Some(&path));
            let other_pattern = other
                .declared
                .and_then(|task| matching_output(task, &path))
                .map(|(pattern, _)| pattern.to_string());
            return Err(diagnostic
                .with_message(format!(
                    "{}{} and {}{} both write `{path}`",
                    at.spec.id,
                    output_words(pattern.as_deref()),
                    other.spec.id,
                    output_words(other_pattern.as_deref()),
                ))
                .help(format!(
                    "every output belongs to one task: each run removes and restores its own outputs, so two owners undo each other; give {} its own files, or exclude the other's with `!`",
                    at.spec.id
                )));
        }
    }
    Ok(())
}

/// ` (output `PATTERN`)`, or nothing.
fn output_words(pattern: Option<&str>) -> String {
    pattern.map_or(String::new(), |p| format!(" (output `{p}`)"))
}

/// The declared task a spec comes from.
fn declared<'a>(config: &'a BundleConfig, spec: &TaskSpec) -> Option<&'a DeclaredTask> {
    spec.id
        .as_str()
        .strip_prefix("task:")
        .and_then(|name| config.task(name))
}

/// The first output pattern of `task` matching root-relative `path`, with its span.
fn matching_output<'a>(task: &'a DeclaredTask, path: &str) -> Option<(&'a str, Range<usize>)> {
    let relative = if task.cwd.is_empty() {
        path
    } else {
        path.strip_prefix(&format!("{}/", task.cwd))?
    };
    task.outputs
        .iter()
        .zip(&task.output_spans)
        .filter(|(pattern, _)| !pattern.starts_with('!'))
        .find(|(pattern, _)| {
            engine::files::Patterns::new(std::slice::from_ref(*pattern))
                .is_ok_and(|single| single.matches(relative))
        })
        .map(|(pattern, span)| (pattern.as_str(), span.clone()))
}

/// A diagnostic located at output `pattern` of a declared task (else as [`located`]).
fn located_pattern(
    config: &BundleConfig,
    spec: &TaskSpec,
    task: Option<&DeclaredTask>,
    pattern: &str,
) -> (Diagnostic, Option<String>) {
    if let Some(task) = task
        && let Some(index) = task.outputs.iter().position(|p| p == pattern)
    {
        return (
            config.diagnostic("", task.output_spans[index].clone(), "this output"),
            Some(pattern.to_string()),
        );
    }
    located(config, spec, task, None)
}

/// A diagnostic located where `spec` is defined: the output pattern matching `path` for a
/// declared task; `[workspace] out` or the profile for a pipeline stage. Also the pattern.
fn located(
    config: &BundleConfig,
    spec: &TaskSpec,
    task: Option<&DeclaredTask>,
    path: Option<&str>,
) -> (Diagnostic, Option<String>) {
    if let Some(task) = task {
        if let Some((pattern, span)) = path.and_then(|path| matching_output(task, path)) {
            return (
                config.diagnostic("", span, "this output"),
                Some(pattern.to_string()),
            );
        }
        return (config.diagnostic("", task.span.clone(), "this task"), None);
    }
    if let Some(span) = &config.spans.out {
        return (
            config.diagnostic("", span.clone(), "the pipeline's outputs land here"),
            None,
        );
    }
    let profile = config.profiles.iter().find(|profile| {
        crate::stages::secrets_id(&profile.name) == spec.id
            || crate::stages::assemble_id(&profile.name) == spec.id
    });
    if let Some(profile) = profile {
        return (
            config.diagnostic("", profile.name_span.clone(), "this profile"),
            None,
        );
    }
    (
        Diagnostic::error("").in_file(config.path.clone(), &config.source),
        None,
    )
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
