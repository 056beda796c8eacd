//! `task`, `bundle`, `explain`: running the graph (`run_tasks`; `run_targets` is one build, and
//! one round of `watch`), the `--dry-run` plan, explanations, and the end of a `bundle`: each
//! platform's stage and artifacts and where they are, or why it could not be made here
//! (`report_bundles`). Task output is rendered by the shell as `--output-logs` and
//! `--log-order` say.
//!
//! Interruption: while a build runs, SIGINT and SIGTERM are caught by a handler thread
//! (`signal-hook`; the handler itself only writes to a pipe) that cancels the engine's run: no
//! task starts, running commands are stopped with their process groups, nothing partial is
//! cached; what the tasks printed is not lost. The build then prints
//! `interrupted: N ran, M stopped` (with the cached and failed counts when there are any; an
//! `interrupted` JSON event with `--message-format json`) and exits 130 (SIGINT) or 143
//! (SIGTERM), as a shell reports a process killed by the signal.
//!
//! `--timings` wraps the shell in a [`crate::timings::Recorder`] for the run and writes its
//! HTML report afterwards, whatever the outcome (failed and interrupted runs included).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use engine::{Cancel, Expected, Probe, TaskId, key::summarize};
use serde_json::json;
use signal_hook::consts::{SIGINT, SIGTERM};

use super::{RunArgs, Workspace};
use crate::diagnostic::{Diagnostic, exit};
use crate::plan;
use crate::shell::Shell;

/// Runs `names` (none: every task) of `graph`, the workspace's planned graph.
pub(super) fn run_tasks(
    workspace: &Workspace,
    graph: &engine::TaskGraph,
    names: &[String],
    args: &RunArgs,
    shell: &Shell,
) -> Result<u8, Diagnostic> {
    let targets: Vec<TaskId> = if names.is_empty() {
        graph.topological().map(|spec| spec.id.clone()).collect()
    } else {
        plan::resolve(graph, names)?
    };
    let targets = if args.affected {
        let selected =
            super::affected::select(workspace, graph, &targets, args.base.as_deref(), shell)?;
        if selected.is_empty() {
            return Ok(0);
        }
        selected
    } else {
        targets
    };
    if args.dry_run {
        let probes = workspace.engine.probe(graph, &targets)?;
        print_plan(&probes, shell);
        return Ok(0);
    }
    shell.set_task_logs(args.output_logs, args.log_order);
    // A captured shell is `serve`'s: its server owns the signals and cancels its build.
    let interrupts = if shell.is_captured() {
        Interrupts::detached(workspace.engine.cancel_handle())
    } else {
        Interrupts::watch(workspace.engine.cancel_handle())?
    };
    Ok(run_targets(workspace, graph, &targets, &interrupts, args.timings, shell)?.0)
}

/// Runs `targets` (and their dependencies) with `interrupts` already watching this engine's
/// cancel handle: the exit code (0, the failures' code, or 128 + the signal after an
/// `interrupted` event) and the run's summary. One build, or one round of `watch`.
pub(super) fn run_targets(
    workspace: &Workspace,
    graph: &engine::TaskGraph,
    targets: &[TaskId],
    interrupts: &Interrupts,
    timings: bool,
    shell: &Shell,
) -> Result<(u8, engine::RunSummary), Diagnostic> {
    let summary = if timings {
        let recorder = crate::timings::Recorder::new(shell);
        let summary = workspace.engine.run(graph, targets, &recorder)?;
        report_timings(workspace, graph, &recorder, &summary, shell);
        summary
    } else {
        workspace.engine.run(graph, targets, shell)?
    };
    if summary.interrupted {
        let signal = interrupts.received().unwrap_or(SIGINT);
        let code = 128 + signal as u8;
        if shell.is_json() {
            shell.json(&json!({
                "event": "interrupted",
                "signal": if signal == SIGTERM { "SIGTERM" } else { "SIGINT" },
                "exit_code": code,
                "ran": summary.ran,
                "cached": summary.cached,
                "stopped": summary.stopped,
            }));
        }
        return Ok((code, summary));
    }
    let code = if summary.success() {
        0
    } else {
        exit::code_of_failures(&summary)
    };
    Ok((code, summary))
}

/// `--timings`: writes the run's report (see [`crate::timings`]) and says where it is (a
/// `Timings` status line, or a `timings` JSON event); a report that cannot be written is a
/// warning, never a failed build.
fn report_timings(
    workspace: &Workspace,
    graph: &engine::TaskGraph,
    recorder: &crate::timings::Recorder<'_>,
    summary: &engine::RunSummary,
    shell: &Shell,
) {
    let out = &workspace.config.workspace.out;
    match crate::timings::write(recorder, graph, summary.duration_ms, &workspace.root, out) {
        Ok(path) => {
            if shell.is_json() {
                shell.json(&json!({
                    "event": "timings",
                    "path": path.as_str(),
                    "tasks": recorder.tasks().len(),
                }));
            } else {
                shell.status(
                    "Timings",
                    crate::shell::GREEN,
                    &format!("report in {}", shown_path(workspace, path.as_str())),
                );
            }
        }
        Err(why) => shell.warn(&format!("--timings: the report was not written: {why}")),
    }
}

/// The run of the last [`Interrupts::detached`] build (`serve`'s, one at a time).
static DETACHED: Mutex<Option<Cancel>> = Mutex::new(None);

/// Cancels the build a server is running, if any (the server is stopping).
pub(super) fn cancel_detached() {
    if let Some(cancel) = DETACHED.lock().unwrap_or_else(|e| e.into_inner()).take() {
        cancel.cancel();
    }
}

/// SIGINT and SIGTERM, caught for the length of a build (see the module docs), or of a whole
/// `watch` session, whose rounds each [`Interrupts::retarget`] to their own engine.
pub(super) struct Interrupts {
    /// The first signal received, 0 for none.
    received: Arc<AtomicI32>,
    /// The run a signal cancels.
    cancel: Arc<Mutex<Cancel>>,
}

impl Interrupts {
    pub(super) fn watch(cancel: Cancel) -> Result<Interrupts, Diagnostic> {
        let mut signals =
            signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(Diagnostic::from)?;
        let received = Arc::new(AtomicI32::new(0));
        let cancel = Arc::new(Mutex::new(cancel));
        let (first, target) = (Arc::clone(&received), Arc::clone(&cancel));
        std::thread::spawn(move || {
            for signal in signals.forever() {
                let _ = first.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
                target.lock().unwrap_or_else(|e| e.into_inner()).cancel();
            }
        });
        Ok(Interrupts { received, cancel })
    }

    /// No handler of its own: the run is cancelled by [`cancel_detached`] (`serve` stopping).
    pub(super) fn detached(cancel: Cancel) -> Interrupts {
        *DETACHED.lock().unwrap_or_else(|e| e.into_inner()) = Some(cancel.clone());
        Interrupts {
            received: Arc::new(AtomicI32::new(0)),
            cancel: Arc::new(Mutex::new(cancel)),
        }
    }

    /// From now on a signal cancels `cancel`'s run (cancelled at once if one already came).
    pub(super) fn retarget(&self, cancel: Cancel) {
        let mut target = self.cancel.lock().unwrap_or_else(|e| e.into_inner());
        if self.received().is_some() {
            cancel.cancel();
        }
        *target = cancel;
    }

    pub(super) fn received(&self) -> Option<i32> {
        match self.received.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(signal),
        }
    }
}

fn expected_name(expected: &Expected) -> &'static str {
    match expected {
        Expected::UpToDate => "up-to-date",
        Expected::Restore { .. } => "restore",
        Expected::Run(_) => "run",
        Expected::DependsOnChanges(_) => "depends-on-changes",
    }
}

fn expected_text(expected: &Expected) -> String {
    match expected {
        Expected::UpToDate => "up to date".into(),
        Expected::Restore { files: 0 } => "cached (outputs already in place)".into(),
        Expected::Restore { files } => {
            format!("cached, restores {}", crate::units::count(*files, "file"))
        }
        Expected::Run(reasons) => format!("runs: {}", summarize(reasons)),
        Expected::DependsOnChanges(ids) => format!(
            "runs if {} change{} output",
            ids.iter()
                .map(TaskId::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            if ids.len() == 1 { "s its" } else { " their" }
        ),
    }
}

/// The reasons a task would run and the dependencies it waits for, as strings for JSON.
fn reasons_and_pending(expected: &Expected) -> (Vec<String>, Vec<String>) {
    match expected {
        Expected::Run(reasons) => (
            reasons.iter().map(ToString::to_string).collect(),
            Vec::new(),
        ),
        Expected::DependsOnChanges(ids) => {
            (Vec::new(), ids.iter().map(ToString::to_string).collect())
        }
        _ => (Vec::new(), Vec::new()),
    }
}

fn print_plan(probes: &[Probe], shell: &Shell) {
    if shell.is_json() {
        for probe in probes {
            let (reasons, pending) = reasons_and_pending(&probe.expected);
            shell.json(&json!({
                "event": "plan",
                "id": probe.id,
                "expected": expected_name(&probe.expected),
                "reasons": reasons,
                "pending": pending,
                "key": probe.key,
                "warnings": probe.warnings,
            }));
        }
        return;
    }
    let width = probes
        .iter()
        .map(|p| p.id.as_str().len())
        .max()
        .unwrap_or(0);
    let mut text = format!(
        "Plan: {}, nothing will run (--dry-run)\n",
        crate::units::count(probes.len(), "task")
    );
    for probe in probes {
        text.push_str(&format!(
            "  {:<width$}  {}\n",
            probe.id.as_str(),
            expected_text(&probe.expected)
        ));
        for warning in &probe.warnings {
            text.push_str(&format!("  {:<width$}  warning: {warning}\n", ""));
        }
    }
    shell.print(&text);
}

fn ago(at_unix: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let seconds = now.saturating_sub(at_unix);
    match seconds {
        0..120 => format!("{seconds}s ago"),
        120..7200 => format!("{}min ago", seconds / 60),
        7200..172800 => format!("{}h ago", seconds / 3600),
        _ => format!("{} days ago", seconds / 86400),
    }
}

pub(super) fn explain(workspace: &Workspace, name: &str, shell: &Shell) -> Result<u8, Diagnostic> {
    let graph = plan::graph(&workspace.config, &workspace.root, &workspace.tools)?;
    let id = plan::resolve(&graph, &[name.to_string()])?.remove(0);
    let probes = workspace.engine.probe(&graph, std::slice::from_ref(&id))?;
    let probe = probes
        .iter()
        .find(|p| p.id == id)
        .expect("the target is probed");
    let last = workspace.engine.ledger().get(&id);
    if shell.is_json() {
        let (reasons, pending) = reasons_and_pending(&probe.expected);
        shell.json(&json!({
            "event": "explain",
            "id": id,
            "expected": expected_name(&probe.expected),
            "reasons": reasons,
            "pending": pending,
            "key": probe.key,
            "last": last.as_ref().map(|entry| json!({
                "outcome": entry.outcome,
                "key": entry.key,
                "reasons": entry.reasons.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "at_unix": entry.at_unix,
            })),
        }));
        return Ok(0);
    }
    let mut text = format!("{id}\n");
    match &probe.expected {
        Expected::UpToDate => text.push_str("  up to date: its inputs (declared and discovered), env, definition and dependencies are unchanged since the last run\n"),
        Expected::Restore { files } => text.push_str(&format!(
            "  would be restored from the cache ({}): this exact state was built before\n",
            crate::units::count(*files, "file")
        )),
        Expected::Run(reasons) => {
            text.push_str("  would run because:\n");
            for reason in reasons {
                text.push_str(&format!("    - {reason}\n"));
            }
        }
        Expected::DependsOnChanges(ids) => {
            text.push_str("  would run if its dependencies produce different output; these will run first:\n");
            for dep in ids {
                let why = probes
                    .iter()
                    .find(|p| &p.id == dep)
                    .map(|p| expected_text(&p.expected))
                    .unwrap_or_default();
                text.push_str(&format!("    - {dep}: {why}\n"));
            }
        }
    }
    match last {
        Some(entry) => {
            let reasons = if entry.reasons.is_empty() {
                "up to date".to_string()
            } else {
                entry
                    .reasons
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let verb = if entry.outcome == "ran" {
                "ran"
            } else {
                "was restored from the cache"
            };
            text.push_str(&format!(
                "  last {verb} {} because: {reasons}\n",
                ago(entry.at_unix)
            ));
        }
        None => text.push_str("  no run recorded for this task in this workspace\n"),
    }
    shell.print(&text);
    Ok(0)
}

/// The end of a `bundle`: each selected platform's stage (where it is), or why it could not be
/// made here and how to fix it. The last line says where the stages are.
pub(super) fn report_bundles(
    workspace: &Workspace,
    bundles: &crate::bundles::ProfilePlan,
    platforms: &[String],
    succeeded: bool,
    shell: &Shell,
) {
    let selected: Vec<&crate::bundles::PlatformPlan> = bundles.selected(platforms).collect();
    let mut staged = Vec::new();
    for platform in &selected {
        if platform.stage.is_some() && succeeded {
            staged.push(platform.dir.to_string());
        }
        // Without a stage: why it could not be staged; with one: the packages it could not get.
        for missing in &platform.missing {
            if shell.is_json() {
                shell.json(&json!({
                    "event": "unbuildable",
                    "profile": bundles.profile,
                    "platform": platform.platform,
                    "staged": platform.stage.is_some(),
                    "what": missing.what,
                    "reason": missing.missing.reason,
                    "fix": missing.missing.fix,
                }));
            } else if platform.stage.is_some() {
                shell.warn(&format!(
                    "{}: {} cannot be built here: {} (fix: {})",
                    platform.platform, missing.what, missing.missing.reason, missing.missing.fix
                ));
            } else {
                shell.warn(&format!(
                    "{} not staged: {} cannot be built here: {} (fix: {})",
                    platform.platform, missing.what, missing.missing.reason, missing.missing.fix
                ));
            }
        }
    }
    if shell.is_json() {
        shell.json(&json!({
            "event": "bundles",
            "profile": bundles.profile,
            "root": workspace.root.as_str(),
            "staged": staged,
            "not_staged": selected
                .iter()
                .filter(|p| p.stage.is_none())
                .map(|p| p.platform.as_str())
                .collect::<Vec<_>>(),
        }));
    } else {
        if succeeded {
            let manifest =
                crate::stages::profile_dir(&workspace.config.workspace.out, &bundles.profile)
                    .join("bundle.json");
            if is_file(workspace, manifest.as_str()) {
                shell.status(
                    "Assembled",
                    crate::shell::GREEN,
                    &shown_path(workspace, manifest.as_str()),
                );
            }
        }
        for platform in &selected {
            if platform.stage.is_some() {
                if succeeded {
                    shell.status(
                        "Staged",
                        crate::shell::GREEN,
                        &format!(
                            "{} in {}/",
                            platform.platform,
                            shown_path(workspace, platform.dir.as_str())
                        ),
                    );
                }
            } else {
                let what: Vec<&str> = platform.missing.iter().map(|m| m.what.as_str()).collect();
                shell.status(
                    "Skipped",
                    crate::shell::YELLOW,
                    &format!(
                        "{}: not staged here ({} cannot be built here)",
                        platform.platform,
                        if what.is_empty() {
                            "something it needs".to_string()
                        } else {
                            what.join(", ")
                        }
                    ),
                );
            }
        }
    }
    if succeeded {
        report_artifacts(workspace, bundles, platforms, shell);
    }
}

/// Whether the root-relative `path` is a regular file (one `lstat`, no link followed).
fn is_file(workspace: &Workspace, path: &str) -> bool {
    engine::confine::Dir::open_root(workspace.root.as_std_path())
        .is_ok_and(|tree| matches!(tree.lstat(path), Ok(Some((engine::confine::Kind::File, _)))))
}

/// A root-relative path as the closing report shows it: relative to the current directory
/// when that is shorter than the absolute path (`dist/x` at the root, `../dist/x` one level
/// down), else absolute.
fn shown_path(workspace: &Workspace, path: &str) -> String {
    let absolute = workspace.root.join(path);
    let relative = std::env::current_dir()
        .ok()
        .and_then(|cwd| pathdiff::diff_paths(absolute.as_std_path(), cwd))
        .and_then(|relative| relative.to_str().map(str::to_string));
    match relative {
        Some(relative) if !relative.is_empty() && relative.len() < absolute.as_str().len() => {
            relative
        }
        _ => absolute.into_string(),
    }
}

/// One file `bundle` produced, for its closing table and `artifact` events.
struct Produced {
    /// `package`, `checksums`, `update-manifest` or `release`.
    kind: &'static str,
    platform: Option<String>,
    format: Option<String>,
    path: String,
    size: u64,
}

/// The closing table of a successful `bundle`: every artifact of the selected platforms
/// (format, platform, size, path), then the release's files when it published them; in JSON,
/// one `artifact` event per file. Sizes come from one `lstat` per file (no hashing: a no-op
/// stays a no-op).
fn report_artifacts(
    workspace: &Workspace,
    bundles: &crate::bundles::ProfilePlan,
    platforms: &[String],
    shell: &Shell,
) {
    let Ok(tree) = engine::confine::Dir::open_root(workspace.root.as_std_path()) else {
        return;
    };
    let size = |path: &str| match tree.lstat(path) {
        Ok(Some((engine::confine::Kind::File, stat))) => Some(stat.size),
        _ => None,
    };
    let mut produced = Vec::new();
    for platform in bundles.selected(platforms) {
        for artifact in &platform.artifacts {
            if let Some(size) = size(artifact.path.as_str()) {
                produced.push(Produced {
                    kind: "package",
                    platform: Some(artifact.platform.id.clone()),
                    format: Some(artifact.format.clone()),
                    path: artifact.path.to_string(),
                    size,
                });
            }
        }
    }
    let packaged = produced.len();
    let publishes = bundles.publishes(platforms).is_some();
    if publishes {
        for path in bundles.release.iter().map(ToString::to_string) {
            let kind = if path.ends_with(crate::publish::CHECKSUMS) {
                "checksums"
            } else if path.ends_with(".yml") {
                "update-manifest"
            } else {
                "release"
            };
            if let Some(size) = size(&path) {
                produced.push(Produced {
                    kind,
                    platform: None,
                    format: None,
                    path,
                    size,
                });
            }
        }
    }
    if shell.is_json() {
        for file in &produced {
            shell.json(&json!({
                "event": "artifact",
                "profile": bundles.profile,
                "kind": file.kind,
                "platform": file.platform,
                "format": file.format,
                "path": file.path,
                "size": file.size,
            }));
        }
        return;
    }
    if packaged == 0 {
        return;
    }
    let rows: Vec<[String; 4]> = produced[..packaged]
        .iter()
        .map(|file| {
            [
                file.format.clone().unwrap_or_default(),
                file.platform.clone().unwrap_or_default(),
                crate::units::bytes(file.size),
                shown_path(workspace, &file.path),
            ]
        })
        .collect();
    let header = ["format", "platform", "size", "path"].map(String::from);
    let width = |column: usize| {
        rows.iter()
            .chain(std::iter::once(&header))
            .map(|row| row[column].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (format_width, platform_width, size_width) = (width(0), width(1), width(2));
    shell.status(
        "Packaged",
        crate::shell::GREEN,
        &format!(
            "{} of {}:",
            crate::units::count(packaged, "artifact"),
            bundles.profile
        ),
    );
    for row in std::iter::once(&header).chain(&rows) {
        shell.status(
            "",
            crate::shell::GREEN,
            &format!(
                "{:<format_width$}  {:<platform_width$}  {:>size_width$}  {}",
                row[0], row[1], row[2], row[3]
            ),
        );
    }
    let released: Vec<String> = produced[packaged..]
        .iter()
        .map(|f| shown_path(workspace, &f.path))
        .collect();
    if !released.is_empty() {
        shell.status("Published", crate::shell::GREEN, &released.join(", "));
    } else if bundles.publish.is_some() && !publishes {
        shell.status(
            "Unpublished",
            crate::shell::GREEN,
            &format!(
                "--platform builds a part of {}'s release: its checksums, update manifests and release.json are written when every platform is built",
                bundles.profile
            ),
        );
    }
}
