//! `watch [PROFILE|TASK…]`: build what `bundle PROFILE` (or `task TASK…`) builds, then again
//! each time an input changes, until Ctrl-C.
//!
//! Invariants:
//! - **One round at a time.** One loop runs a round, then waits for changes: file events that
//!   arrive during a round are kept in the watcher's channel and, once it ends, make exactly one
//!   next round (with every path they name), never a second round beside the first.
//! - **A round is a build.** Each round loads `bundle.toml` afresh ([`super::load_with`]),
//!   plans as `bundle`/`task` do and runs through [`super::build::run_targets`], so it takes
//!   and releases the workspace lock like any build: between rounds the lock is free (`check`
//!   or `bundle` from another shell run). A round that cannot load or plan prints its
//!   diagnostic and waits for the next change; a failed task fails its round, not the watch.
//! - **The build never wakes itself.** A changed path starts a round only if it could be an
//!   input: under the root, not in any `.git`, not in the engine's state or cache directory,
//!   not one of the engine's temporary files, not a directory, and not matched by any task's
//!   declared outputs (`TaskSpec::outputs` of the last planned graph, nor a directory holding
//!   them). So what a round writes or restores starts nothing.
//! - **Only changes count.** Of `notify`'s events, creations, modifications (not access-time
//!   updates) and removals; reads (inotify's open and close-nowrite, which every round makes
//!   on its inputs) never start a round.
//! - **Debounced.** A round starts once no relevant change came for `--debounce MS` (200 by
//!   default) after the first; events that start nothing (reads, `.git`, outputs) do not
//!   postpone it, and a signal is answered within [`POLL`] however long the debounce.
//! - **Inside the root only.** Links are not followed (a link to a directory outside the root
//!   is not watched); a directory created or moved in counts with every file below it when the
//!   debounce ends (its files may have no event of their own); the root removed or renamed
//!   ends the watch with an error.
//! - **Ctrl-C** (SIGINT; SIGTERM likewise) during a round cancels it exactly as it cancels
//!   `bundle` (its `interrupted` line, exit 130/143); between rounds it ends the watch at once
//!   with the same code. The handler is installed once for the whole session and retargeted to
//!   each round's engine.
//!
//! Every round prints one line (`Watched round N: …`), or a `watch-round` JSON event (see
//! `docs/json-events.md`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anstyle::{AnsiColor, Style};
use clap::Args;
use engine::files::Patterns;
use engine::{Cancel, RunSummary, TaskGraph, TaskId};
use notify::{EventKind, RecursiveMode, Watcher};
use serde_json::json;

use super::build::{self, Interrupts};
use super::{BuildArgs, Cli, Workspace};
use crate::diagnostic::Diagnostic;
use crate::plan;
use crate::shell::{GREEN, Shell};

const RED: Style = AnsiColor::Red.on_default().bold();

/// How often the loop looks for a signal while it waits for changes.
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Args)]
pub(super) struct WatchArgs {
    /// Profiles (what `bundle PROFILE` builds) or tasks (`ui`, `task:ui`: what `task` builds);
    /// default: what `bundle` builds (workspace.default-profile, else every task)
    names: Vec<String>,
    /// Wait this long (milliseconds) without a change before a round starts
    #[arg(long, value_name = "MS", default_value_t = 200)]
    debounce: u64,
    #[command(flatten)]
    pub(super) run: BuildArgs,
}

/// Runs the watch loop until a signal; returns its exit code (128 + the signal).
pub(super) fn watch(cli: &Cli, args: &WatchArgs, shell: &Shell) -> Result<u8, Diagnostic> {
    let root = super::find_root(cli.root.as_deref())?;
    let root = root.canonicalize_utf8().map_err(Diagnostic::from)?;
    let (sender, events) = std::sync::mpsc::channel::<notify::Result<notify::Event>>();
    let debounce = Duration::from_millis(args.debounce.max(1));
    let watch_error = |err: notify::Error| {
        Diagnostic::error(format!("cannot watch {root} for changes: {err}")).help(
            "on Linux, a large tree may need more inotify watches: raise fs.inotify.max_user_watches (sysctl)",
        )
    };
    // Links are not followed: a link inside the root to a directory outside it (or to `/`)
    // is not walked, and changes out there start nothing.
    let config = notify::Config::default().with_follow_symlinks(false);
    let mut watcher = notify::RecommendedWatcher::new(sender, config).map_err(watch_error)?;
    watcher
        .watch(root.as_std_path(), RecursiveMode::Recursive)
        .map_err(watch_error)?;
    shell.set_task_logs(args.run.output_logs, args.run.log_order);
    let interrupts = Interrupts::watch(Cancel::new())?;
    let mut ignore = Ignore::new(root.as_std_path());
    shell.status("Watching", GREEN, &format!("{root} (Ctrl-C to stop)"));
    let mut changed = BTreeSet::new();
    for number in 1.. {
        let started = Instant::now();
        let outcome = round(cli, args, shell, &interrupts, &mut ignore);
        if let Some(signal) = interrupts.received() {
            // `run_targets` said what was stopped (its `interrupted` line or event).
            return Ok(128 + signal as u8);
        }
        let outcome = match outcome {
            Ok(outcome) => Ok(outcome),
            // A name on the command line that the repository never had: usage, not a change.
            Err(RoundError::Name(diagnostic)) if number == 1 => return Err(diagnostic),
            Err(RoundError::Name(diagnostic) | RoundError::Other(diagnostic)) => Err(diagnostic),
        };
        report(shell, number, &changed, started.elapsed(), &outcome);
        match wait_for_changes(&events, &ignore, debounce, &interrupts, shell)? {
            Some(paths) => changed = paths,
            None => {
                let signal = interrupts.received().unwrap_or(signal_hook::consts::SIGINT);
                return Ok(128 + signal as u8);
            }
        }
    }
    unreachable!("the rounds never end but by a signal")
}

/// Why a round did not run.
enum RoundError {
    /// A name is neither a profile nor a task.
    Name(Diagnostic),
    /// Anything else: bundle.toml, planning, an I/O error.
    Other(Diagnostic),
}

impl From<Diagnostic> for RoundError {
    fn from(diagnostic: Diagnostic) -> RoundError {
        RoundError::Other(diagnostic)
    }
}

/// One round: load, plan, update what is ignored, build. The exit code and the summary.
fn round(
    cli: &Cli,
    args: &WatchArgs,
    shell: &Shell,
    interrupts: &Interrupts,
    ignore: &mut Ignore,
) -> Result<(u8, RunSummary), RoundError> {
    let run = &args.run;
    let workspace = super::load_with(cli, run.force, run.fail_fast, run.offline)?;
    ignore.own_dirs(&workspace);
    let (graph, targets) = plan_round(&workspace, &args.names, shell)?;
    ignore.outputs(&graph);
    workspace.tools.save();
    interrupts.retarget(workspace.engine.cancel_handle());
    Ok(build::run_targets(
        &workspace,
        &graph,
        &targets,
        interrupts,
        run.timings,
        shell,
    )?)
}

/// The graph and the targets of a round: each profile's `bundle` targets and the named tasks;
/// no name: what `bundle` builds (the default profile's, else every task).
fn plan_round(
    workspace: &Workspace,
    names: &[String],
    shell: &Shell,
) -> Result<(TaskGraph, Vec<TaskId>), RoundError> {
    let config = &workspace.config;
    let mut profiles: Vec<&crate::config::Profile> = Vec::new();
    let mut tasks: Vec<String> = Vec::new();
    for name in names {
        match config.profile(name) {
            Some(profile) => profiles.push(profile),
            None => tasks.push(name.clone()),
        }
    }
    if names.is_empty()
        && let Some(default) = &config.workspace.default_profile
        && let Some(profile) = config.profile(default)
    {
        profiles.push(profile);
    }
    let (graph, mut targets) = if profiles.is_empty() {
        (
            plan::graph(config, &workspace.root, &workspace.tools)?,
            Vec::new(),
        )
    } else {
        // What `check` validates, `bundle` (and so a round) refuses to build without.
        let plan = super::pipeline::validate(workspace, shell)?;
        let mut names = Vec::new();
        for profile in profiles {
            let bundles = plan.bundles.iter().find(|b| b.profile == profile.name);
            names.extend(super::bundle_targets(
                workspace,
                &plan,
                Some(profile),
                bundles,
                &[],
            ));
        }
        let targets = plan::resolve(&plan.graph, &names)?;
        (plan.graph, targets)
    };
    for name in &tasks {
        let id = plan::resolve(&graph, std::slice::from_ref(name)).map_err(|mut diagnostic| {
            diagnostic.message = format!(
                "`{name}` is neither a profile nor a task: {}",
                diagnostic.message
            );
            RoundError::Name(diagnostic)
        })?;
        targets.extend(id);
    }
    if names.is_empty() && targets.is_empty() {
        targets = graph.topological().map(|spec| spec.id.clone()).collect();
    }
    Ok((graph, targets))
}

/// One line per round (or a `watch-round` event).
fn report(
    shell: &Shell,
    number: usize,
    changed: &BTreeSet<String>,
    elapsed: Duration,
    outcome: &Result<(u8, RunSummary), Diagnostic>,
) {
    if let Err(diagnostic) = outcome {
        shell.error(diagnostic);
    }
    if shell.is_json() {
        let mut event = json!({
            "event": "watch-round",
            "round": number,
            "changed": changed,
            "duration_ms": elapsed.as_millis() as u64,
        });
        match outcome {
            Ok((code, summary)) => {
                event["success"] = json!(*code == 0);
                event["exit_code"] = json!(code);
                event["ran"] = json!(summary.ran);
                event["cached"] = json!(summary.cached);
                event["failed"] = json!(summary.failed);
                event["skipped"] = json!(summary.skipped);
                event["error"] = json!(null);
            }
            Err(diagnostic) => {
                event["success"] = json!(false);
                event["exit_code"] = json!(diagnostic.exit_code);
                event["error"] = json!(diagnostic.message);
            }
        }
        shell.json(&event);
        return;
    }
    let what = match outcome {
        Ok((_, summary)) => crate::shell::run_counts(summary),
        Err(_) => "did not build (the error above)".to_string(),
    };
    let mut line = format!(
        "round {number}: {what} in {}",
        crate::units::duration_ms(elapsed.as_millis() as u64)
    );
    if !changed.is_empty() {
        const SHOWN: usize = 3;
        let mut names: Vec<&str> = changed.iter().take(SHOWN).map(String::as_str).collect();
        let more = changed.len().saturating_sub(SHOWN);
        let more = format!("and {more} more");
        if changed.len() > SHOWN {
            names.push(&more);
        }
        line.push_str(&format!(" (changed: {})", names.join(", ")));
    }
    if outcome.is_err() {
        line.push_str("; waiting for a change");
    }
    let succeeded = matches!(outcome, Ok((0, _)));
    shell.status("Watched", if succeeded { GREEN } else { RED }, &line);
}

/// Waits for changes that could be inputs, then for `debounce` without another; `None` when a
/// signal came first. Events that arrived during the round are the first looked at. Events
/// that are not changes of inputs neither start nor postpone the round; a signal is answered
/// within [`POLL`] (debounce or not); the root gone is an error.
fn wait_for_changes(
    events: &Receiver<notify::Result<notify::Event>>,
    ignore: &Ignore,
    debounce: Duration,
    interrupts: &Interrupts,
    shell: &Shell,
) -> Result<Option<BTreeSet<String>>, Diagnostic> {
    let mut changed = BTreeSet::new();
    // Directories created or moved in: their files may have no event of their own (written
    // before the watcher watched the directory, or moved in with it); listed once the
    // debounce is over, when the watcher watches them.
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    let mut deadline: Option<Instant> = None;
    loop {
        if interrupts.received().is_some() {
            return Ok(None);
        }
        if std::fs::metadata(&ignore.root).map_or(true, |m| !m.is_dir()) {
            return Err(Diagnostic::error(format!(
                "{} is no longer there (removed or renamed): nothing left to watch",
                ignore.root.display()
            ))
            .help("run `cargo xtask watch` again in the repository"));
        }
        let now = Instant::now();
        if let Some(at) = deadline
            && now >= at
        {
            for dir in std::mem::take(&mut dirs) {
                ignore.files_below(&dir, &mut changed);
            }
            if !changed.is_empty() {
                return Ok(Some(changed));
            }
            deadline = None;
        }
        let wait = deadline.map_or(POLL, |at| at.saturating_duration_since(now).min(POLL));
        match events.recv_timeout(wait) {
            Ok(Ok(event)) if is_change(&event.kind) => {
                let before = (changed.len(), dirs.len());
                changed.extend(event.paths.iter().filter_map(|path| ignore.relevant(path)));
                if matches!(
                    event.kind,
                    EventKind::Create(_) | EventKind::Modify(notify::event::ModifyKind::Name(_))
                ) {
                    dirs.extend(
                        event
                            .paths
                            .iter()
                            .filter(|path| ignore.new_dir(path))
                            .cloned(),
                    );
                }
                if (changed.len(), dirs.len()) != before {
                    deadline = Some(Instant::now() + debounce);
                }
            }
            Ok(Ok(_)) | Err(RecvTimeoutError::Timeout) => {}
            Ok(Err(err)) => shell.warn(&format!("watching for changes: {err}")),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Diagnostic::internal("the file watcher stopped"));
            }
        }
    }
}

/// Whether an event may change what a task reads: not a read, not an access-time update.
fn is_change(kind: &EventKind) -> bool {
    use notify::event::{MetadataKind, ModifyKind};
    !matches!(
        kind,
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime))
    )
}

/// What a change may not start a round for (see the module docs).
struct Ignore {
    /// The canonical root, as the watcher names paths.
    root: PathBuf,
    /// Root-relative state and cache directories (when inside the root).
    own: Vec<String>,
    /// Each task's cwd and compiled output patterns.
    outputs: Vec<(String, Patterns)>,
    /// Root-relative directories holding outputs (the literal prefix of each output pattern).
    output_dirs: Vec<String>,
}

impl Ignore {
    fn new(root: &Path) -> Ignore {
        Ignore {
            root: root.to_path_buf(),
            own: vec![".xbundle".to_string()],
            outputs: Vec::new(),
            output_dirs: Vec::new(),
        }
    }

    fn own_dirs(&mut self, workspace: &Workspace) {
        let config = workspace.engine.config();
        let roots = [
            workspace.root.as_std_path().to_path_buf(),
            self.root.clone(),
        ];
        self.own = [&config.state_dir, &config.cache_dir]
            .into_iter()
            .flat_map(|dir| {
                roots.iter().filter_map(move |root| {
                    let relative = dir.strip_prefix(root).ok()?;
                    Some(relative.to_string_lossy().into_owned())
                })
            })
            .filter(|relative| !relative.is_empty())
            .collect();
    }

    fn outputs(&mut self, graph: &TaskGraph) {
        self.outputs.clear();
        self.output_dirs.clear();
        for spec in graph.topological() {
            if spec.outputs.is_empty() {
                continue;
            }
            let Ok(patterns) = Patterns::new(&spec.outputs) else {
                continue;
            };
            let cwd = spec.cwd.trim_end_matches('/').to_string();
            for pattern in spec.outputs.iter().filter(|p| !p.starts_with('!')) {
                let base: Vec<&str> = pattern
                    .trim_start_matches("./")
                    .split('/')
                    .take_while(|c| engine::files::is_literal(c))
                    .collect();
                let base = base.join("/");
                self.output_dirs.push(join(&cwd, &base));
            }
            self.outputs.push((cwd, patterns));
        }
    }

    /// Whether `path` is a directory (not a link) under the root whose files may be inputs.
    fn new_dir(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
            && path.strip_prefix(&self.root).is_ok_and(|relative| {
                let relative = relative.to_string_lossy();
                !relative.is_empty()
                    && !relative.split('/').any(|c| c == ".git")
                    && !self
                        .own
                        .iter()
                        .any(|dir| *relative == **dir || relative.starts_with(&format!("{dir}/")))
            })
    }

    /// Adds the files below `dir` (links not followed) that [`Ignore::relevant`] keeps.
    fn files_below(&self, dir: &Path, changed: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if self.new_dir(&path) {
                self.files_below(&path, changed);
            } else if let Some(relative) = self.relevant(&path) {
                changed.insert(relative);
            }
        }
    }

    /// The root-relative path, if a change there could change an input.
    fn relevant(&self, path: &Path) -> Option<String> {
        let relative = path.strip_prefix(&self.root).ok()?;
        let relative = relative.to_string_lossy().into_owned();
        if relative.is_empty() || relative.split('/').any(|c| c == ".git") {
            return None;
        }
        let below = |dir: &str| relative == dir || relative.starts_with(&format!("{dir}/"));
        if self.own.iter().any(|dir| below(dir)) {
            return None;
        }
        let name = relative.rsplit('/').next().unwrap_or(&relative);
        if engine::confine::is_temp_name(name) {
            return None;
        }
        let metadata = std::fs::symlink_metadata(path);
        if metadata.as_ref().is_ok_and(|m| m.is_dir()) {
            return None;
        }
        let is_output = self.outputs.iter().any(|(cwd, patterns)| {
            let within = if cwd.is_empty() {
                Some(relative.as_str())
            } else {
                relative.strip_prefix(&format!("{cwd}/"))
            };
            within.is_some_and(|within| patterns.matches(within))
        });
        if is_output {
            return None;
        }
        // A directory of outputs, removed: its files are outputs.
        let prefix = format!("{relative}/");
        if metadata.is_err()
            && self
                .output_dirs
                .iter()
                .any(|dir| dir == &relative || dir.starts_with(&prefix))
        {
            return None;
        }
        Some(relative)
    }
}

fn join(cwd: &str, relative: &str) -> String {
    match (cwd.is_empty(), relative.is_empty()) {
        (true, _) => relative.to_string(),
        (false, true) => cwd.to_string(),
        (false, false) => format!("{cwd}/{relative}"),
    }
}
