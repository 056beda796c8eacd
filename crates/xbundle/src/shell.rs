//! The one output layer: cargo-style status lines, warnings, diagnostics, progress, and JSON
//! lines for `--message-format json`. Nothing else in the crate prints: a task's long transfer
//! (a download) shows its bar through [`Transfer`], drawn with the running shell's bars.
//!
//! Human output goes to stderr (status lines and what tasks print) and stdout (command results:
//! graph, explain, plans); colors follow the terminal and `NO_COLOR` (through `anstream`).
//! **Invariant:** status lines, warnings, errors and diagnostics show control characters
//! written out ([`visible`]): a file name or a pattern from the repository never reaches the
//! terminal as an escape sequence. What a task prints is its own output, passed through as it
//! is. JSON output writes one object per line to stdout; the event schema is documented in
//! `docs/json-events.md`.
//!
//! A captured shell ([`Shell::capture`], what `cargo xtask serve` runs commands with) writes its
//! JSON lines to a sink of the caller's instead of stdout, and nothing to stderr or stdout: the
//! HTTP API answers with the very lines the command line prints.
//!
//! What tasks print (the engine's `Event::Output`, see [`TaskLogs`]) goes to stderr, as cargo
//! sends compilers' and build scripts' output there: stdout stays the command's result. Each
//! line is prefixed with its task's id (`task:ui: line`, the prefix dimmed with colours), in
//! one of two orders (`--log-order`): `stream`, each line as it arrives, above the progress
//! bar; `grouped`, a task's lines together under one header when it ends (in GitHub Actions,
//! a `::group::` each). Which tasks' output is shown is `--output-logs` (turborepo's
//! semantics): `full`, tasks that ran and, marked as replayed, tasks restored from the cache;
//! `new-only`, tasks that ran; `errors-only`, tasks that failed or were stopped; `none`.
//! `-q` (only errors) narrows `full` and `new-only` to `errors-only`: why a task failed is
//! an error, as cargo `-q` still shows rustc's diagnostics.
//! A task's line that carries an escape sequence ends with an SGR reset, so a colour or
//! attribute it leaves open (`\e[8m` hides text) never reaches the lines printed after it.
//! **Invariant:** nothing buffered is lost: a task's lines are printed when it ends, however it
//! ends (failed, stopped by an interruption), and whatever is left when the build ends.

mod lines;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anstyle::{AnsiColor, Style};
use engine::{Event, Reporter, Stream, TaskId, TaskReport, TaskStatus, key::summarize};
use serde_json::json;

use crate::diagnostic::{Diagnostic, visible};

/// How many failed tasks the summary of a failed build names (each failure has its own line
/// as it happens).
const SUMMARY_FAILURES: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MessageFormat {
    Human,
    Json,
}

/// Whose output a build prints (`--output-logs`, turborepo's semantics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputLogs {
    /// Tasks that ran, and the replayed output of tasks restored from the cache
    #[default]
    Full,
    /// Only tasks that ran
    NewOnly,
    /// Only tasks that failed (or were stopped by an interruption), when they end
    ErrorsOnly,
    /// No task output
    None,
}

/// How task output is ordered (`--log-order`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogOrder {
    /// Each line as it arrives, prefixed with its task's id
    Stream,
    /// A task's lines together, under one header, when it ends
    Grouped,
    /// `stream` when stderr is a terminal and `CI` is unset, `grouped` otherwise
    #[default]
    Auto,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

pub const GREEN: Style = AnsiColor::Green.on_default().bold();
pub const CYAN: Style = AnsiColor::Cyan.on_default().bold();
pub const YELLOW: Style = AnsiColor::Yellow.on_default().bold();
pub const RED: Style = AnsiColor::Red.on_default().bold();
const DIM: Style = Style::new().dimmed();

/// A task's line longer than this is printed in pieces of this size.
const MAX_LINE: usize = 64 * 1024;

/// The most of one task's lines held in memory (grouped order, errors-only); see
/// [`Shell::task_output`].
const MAX_HELD: usize = 4 * 1024 * 1024;

/// Progress bars appear on a terminal when a run has at least this many tasks.
const PROGRESS_THRESHOLD: usize = 8;

pub struct Shell {
    pub format: MessageFormat,
    pub verbosity: Verbosity,
    color: bool,
    progress: Mutex<Option<indicatif::ProgressBar>>,
    /// Every bar of this shell draws through it (the run's bar, downloads' bars: [`Transfer`]),
    /// so they share the terminal; hidden unless human output goes to a terminal.
    bars: indicatif::MultiProgress,
    /// What tasks print, on its way to the terminal.
    logs: Mutex<TaskLogs>,
    /// Where JSON lines go instead of stdout (a captured shell: [`Shell::capture`]).
    sink: Option<Sink>,
    /// JSON lines on their way to stdout, in bursts ([`lines`]).
    lines: lines::Lines,
}

/// Receives each JSON line of a captured shell (without its newline).
pub type Sink = Arc<dyn Fn(&str) + Send + Sync>;

/// The rendering of tasks' output (module docs): the options, and per task the line each
/// stream has begun and, in grouped order or `errors-only`, the lines held until it ends.
#[derive(Debug)]
pub struct TaskLogs {
    logs: OutputLogs,
    grouped: bool,
    /// `GITHUB_ACTIONS=true`: groups are wrapped in `::group::` / `::endgroup::`.
    github: bool,
    tasks: HashMap<TaskId, Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    /// The unfinished last line of stdout and of stderr.
    partial: [Vec<u8>; 2],
    /// Whole lines held until the task ends (grouped, errors-only).
    lines: Vec<Vec<u8>>,
    /// What `lines` cost ([`held_size`]).
    held: usize,
    /// Lines `errors-only` left out to stay within [`MAX_HELD`].
    left_out: usize,
    /// A group of its lines was printed already (grouped order, over [`MAX_HELD`]).
    continued: bool,
    /// Its output is replayed from the cache.
    replayed: bool,
    /// The "Replaying" line was printed (stream order).
    announced: bool,
}

impl TaskLogs {
    fn new(logs: OutputLogs, order: LogOrder) -> TaskLogs {
        let env = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        let grouped = match order {
            LogOrder::Stream => false,
            LogOrder::Grouped => true,
            LogOrder::Auto => {
                !std::io::IsTerminal::is_terminal(&std::io::stderr()) || env("CI").is_some()
            }
        };
        TaskLogs {
            logs,
            grouped,
            github: env("GITHUB_ACTIONS").is_some_and(|value| value == "true"),
            tasks: HashMap::new(),
        }
    }
}

/// Where [`Transfer`] bars draw while a run is under way: the running shell's bars, registered
/// at the run's start and taken away at its end (actions run on the engine's worker threads and
/// have no shell of their own; the engine itself never prints).
static TRANSFER_BARS: Mutex<Option<indicatif::MultiProgress>> = Mutex::new(None);

/// A byte-count progress bar for a long transfer (a download) inside a task: drawn on the
/// terminal of the run's shell when there is one, otherwise nothing.
pub struct Transfer(Option<indicatif::ProgressBar>);

impl Transfer {
    /// A bar labelled `label` (a task id); `total` bytes when known.
    pub fn start(label: &str, total: Option<u64>) -> Transfer {
        let bars = TRANSFER_BARS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(bars) = bars else {
            return Transfer(None);
        };
        let bar = bars.add(indicatif::ProgressBar::new(total.unwrap_or(0)));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:>12.cyan.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {wide_msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix("Fetching");
        bar.set_message(visible(label).into_owned());
        Transfer(Some(bar))
    }

    /// The total, once known (or known again, after a restart).
    pub fn set_total(&self, total: Option<u64>) {
        if let Some(bar) = &self.0 {
            bar.set_length(total.unwrap_or(0));
        }
    }

    /// Bytes received so far.
    pub fn set_position(&self, bytes: u64) {
        if let Some(bar) = &self.0 {
            bar.set_position(bytes);
        }
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}

impl Shell {
    pub fn new(format: MessageFormat, verbosity: Verbosity) -> Shell {
        let color =
            anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never;
        let shows_bars = format == MessageFormat::Human
            && verbosity != Verbosity::Quiet
            && std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bars = indicatif::MultiProgress::with_draw_target(if shows_bars {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        });
        Shell {
            format,
            verbosity,
            color,
            progress: Mutex::new(None),
            bars,
            logs: Mutex::new(TaskLogs::new(
                quiet_logs(OutputLogs::Full, verbosity),
                LogOrder::Auto,
            )),
            sink: None,
            lines: lines::Lines::default(),
        }
    }

    /// A shell whose JSON lines go to `sink` and which prints nothing (module docs).
    pub fn capture(sink: Sink) -> Shell {
        Shell {
            format: MessageFormat::Json,
            verbosity: Verbosity::Normal,
            color: false,
            progress: Mutex::new(None),
            bars: indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::hidden(),
            ),
            logs: Mutex::new(TaskLogs::new(OutputLogs::Full, LogOrder::Stream)),
            sink: Some(sink),
            lines: lines::Lines::default(),
        }
    }

    /// Whether this is a captured shell ([`Shell::capture`]).
    pub fn is_captured(&self) -> bool {
        self.sink.is_some()
    }

    /// Sets whose task output a build prints and in what order (`--output-logs`,
    /// `--log-order`; module docs).
    pub fn set_task_logs(&self, logs: OutputLogs, order: LogOrder) {
        *self.logs.lock().unwrap_or_else(|e| e.into_inner()) =
            TaskLogs::new(quiet_logs(logs, self.verbosity), order);
    }

    /// A piece of what task `id` printed (human output).
    fn task_output(&self, id: &TaskId, stream: Stream, bytes: &[u8], replayed: bool) {
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        let shown = match logs.logs {
            OutputLogs::Full => true,
            OutputLogs::NewOnly | OutputLogs::ErrorsOnly => !replayed,
            OutputLogs::None => false,
        };
        if !shown {
            return;
        }
        let errors_only = logs.logs == OutputLogs::ErrorsOnly;
        let hold = logs.grouped || errors_only;
        let github = logs.github;
        let pending = logs.tasks.entry(id.clone()).or_default();
        pending.replayed |= replayed;
        let partial = &mut pending.partial[stream_index(stream)];
        partial.extend_from_slice(bytes);
        let mut lines: Vec<Vec<u8>> = Vec::new();
        if let Some(last) = partial.iter().rposition(|&b| b == b'\n') {
            let rest = partial.split_off(last + 1);
            let whole = std::mem::replace(partial, rest);
            lines.extend(whole.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec));
        }
        // An overlong line (or output without newlines) goes in bounded pieces.
        while partial.len() >= MAX_LINE {
            let rest = partial.split_off(MAX_LINE);
            let mut piece = std::mem::replace(partial, rest);
            piece.push(b'\n');
            lines.push(piece);
        }
        if lines.is_empty() {
            return;
        }
        if !hold {
            let announce = pending.replayed && !pending.announced;
            pending.announced |= announce;
            drop(logs);
            if announce {
                self.status("Replaying", CYAN, &format!("{id} (cached output)"));
            }
            self.print_lines(id, &lines);
            return;
        }
        pending.held += lines.iter().map(|line| held_size(line)).sum::<usize>();
        pending.lines.extend(lines);
        if pending.held <= MAX_HELD {
            return;
        }
        // Memory stays bounded: a grouped task's lines so far are printed as a group (the
        // next one says it continues); errors-only keeps the last ones (an error is usually
        // at the end) and says how many lines it left out.
        if errors_only {
            let mut dropped = 0;
            for line in &pending.lines {
                if pending.held <= MAX_HELD / 2 {
                    break;
                }
                pending.held -= held_size(line);
                dropped += 1;
            }
            pending.lines.drain(..dropped);
            pending.left_out += dropped;
            return;
        }
        let lines = std::mem::take(&mut pending.lines);
        pending.held = 0;
        let (replayed, continued) = (pending.replayed, pending.continued);
        pending.continued = true;
        drop(logs);
        self.print_group(id, &lines, replayed, continued, github);
    }

    /// The end of task `id` (`status`, `None` at the end of the build): its unfinished lines
    /// and what was held for it are printed, when its output is to be shown.
    fn task_output_ends(&self, id: &TaskId, status: Option<TaskStatus>) {
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut pending) = logs.tasks.remove(id) else {
            return;
        };
        let failed = !matches!(status, Some(TaskStatus::Ran | TaskStatus::Cached));
        let errors_only = logs.logs == OutputLogs::ErrorsOnly;
        if errors_only && !failed {
            return;
        }
        let grouped = logs.grouped || errors_only;
        let github = logs.github;
        drop(logs);
        let mut lines = std::mem::take(&mut pending.lines);
        if pending.left_out > 0 {
            let note = format!(
                "[xbundle: {} earlier line(s) not kept in memory]\n",
                pending.left_out
            );
            lines.insert(0, note.into_bytes());
        }
        for partial in &mut pending.partial {
            if !partial.is_empty() {
                partial.push(b'\n');
                lines.push(std::mem::take(partial));
            }
        }
        if lines.is_empty() {
            return;
        }
        if !grouped {
            if pending.replayed && !pending.announced {
                self.status("Replaying", CYAN, &format!("{id} (cached output)"));
            }
            self.print_lines(id, &lines);
            return;
        }
        self.print_group(id, &lines, pending.replayed, pending.continued, github);
    }

    /// A group of task `id`'s lines under one header (a `::group::` in GitHub Actions).
    fn print_group(
        &self,
        id: &TaskId,
        lines: &[Vec<u8>],
        replayed: bool,
        continued: bool,
        github: bool,
    ) {
        let shown = visible(id.as_str());
        let what = match (replayed, continued) {
            (true, false) => " (cached output)",
            (true, true) => " (cached output, continued)",
            (false, true) => " (continued)",
            (false, false) => "",
        };
        let style = if self.color { CYAN } else { Style::new() };
        let verb = if replayed { "Replaying" } else { "Output" };
        self.with_terminal(|| {
            let mut err = std::io::stderr().lock();
            let _ = if github {
                writeln!(err, "::group::{shown}{what}")
            } else {
                writeln!(err, "{style}{verb:>12}{style:#} {shown}{what}")
            };
            self.write_lines(&mut err, id, lines);
            if github {
                let _ = writeln!(err, "::endgroup::");
            }
            let _ = err.flush();
        });
    }

    /// Prints whatever is still held (the build ended, or was interrupted).
    fn flush_task_output(&self) {
        let ids: Vec<TaskId> = {
            let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
            let mut ids: Vec<TaskId> = logs.tasks.keys().cloned().collect();
            ids.sort();
            ids
        };
        for id in ids {
            self.task_output_ends(&id, None);
        }
    }

    /// Lines of task `id`, prefixed, on stderr, together.
    fn print_lines(&self, id: &TaskId, lines: &[Vec<u8>]) {
        self.with_terminal(|| {
            let mut err = std::io::stderr().lock();
            self.write_lines(&mut err, id, lines);
            let _ = err.flush();
        });
    }

    fn write_lines(&self, out: &mut impl Write, id: &TaskId, lines: &[Vec<u8>]) {
        let shown = visible(id.as_str());
        for line in lines {
            let _ = if self.color {
                write!(out, "{DIM}{shown}:{DIM:#} ")
            } else {
                write!(out, "{shown}: ")
            };
            // Lines end with a newline (whole lines, pieces given one, notes).
            let (text, newline) = match line.strip_suffix(b"\n") {
                Some(text) => (text, &b"\n"[..]),
                None => (&line[..], &b""[..]),
            };
            let _ = out.write_all(text);
            if text.contains(&0x1b) {
                let _ = out.write_all(b"\x1b[0m");
            }
            let _ = out.write_all(newline);
        }
    }

    pub fn is_json(&self) -> bool {
        self.format == MessageFormat::Json
    }

    /// Runs `write` with the progress bar (if any) hidden.
    fn with_terminal(&self, write: impl FnOnce()) {
        self.bars.suspend(write)
    }

    /// A right-aligned, 12-column status verb and a message, on stderr.
    pub fn status(&self, verb: &str, style: Style, message: &str) {
        if self.verbosity == Verbosity::Quiet || self.is_json() {
            return;
        }
        self.with_terminal(|| {
            let mut err = anstream::stderr().lock();
            let _ = writeln!(err, "{style}{verb:>12}{style:#} {}", visible(message));
        });
    }

    /// A command's result as a status line (the same 12-column verb) on stdout, where the
    /// result of a query belongs (`cache stats`, `cache verify`, the header of a table): shown
    /// under `--quiet` too, not in JSON (the command writes its own event).
    pub fn outcome(&self, verb: &str, style: Style, message: &str) {
        if self.is_json() {
            return;
        }
        self.with_terminal(|| {
            let mut out = anstream::stdout().lock();
            let _ = writeln!(out, "{style}{verb:>12}{style:#} {}", visible(message));
            let _ = out.flush();
        });
    }

    pub fn warn(&self, message: &str) {
        if self.is_json() {
            self.json(&json!({"event": "warning", "id": null, "message": message}));
            return;
        }
        if self.verbosity == Verbosity::Quiet {
            return;
        }
        self.with_terminal(|| {
            let _ = writeln!(
                anstream::stderr().lock(),
                "{YELLOW}warning{YELLOW:#}: {}",
                visible(message)
            );
        });
    }

    pub fn error(&self, diagnostic: &Diagnostic) {
        if self.is_json() {
            self.json(&diagnostic.to_json());
            // Before the stderr text, as before lines were held ([`lines`]): with `2>&1`, the
            // JSON line comes first.
            self.flush_json();
            // Still say it on stderr: a CI log should show why the job failed.
        }
        if self.is_captured() {
            return;
        }
        let text = diagnostic.render(self.color);
        self.with_terminal(|| {
            let _ = write!(anstream::stderr().lock(), "{text}");
        });
    }

    /// One JSON line on stdout.
    pub fn json(&self, value: &serde_json::Value) {
        self.json_line(value);
    }

    /// One JSON line on stdout, of anything that serializes.
    fn json_line<T: serde::Serialize + ?Sized>(&self, value: &T) {
        let Ok(line) = serde_json::to_string(value) else {
            return;
        };
        if let Some(sink) = &self.sink {
            sink(&line);
            return;
        }
        if self.is_json() {
            // No bar is ever drawn in this format: nothing to suspend.
            self.lines.write(&line);
            return;
        }
        self.with_terminal(|| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        });
    }

    /// Writes the JSON lines held ([`lines`]) now: before anything else goes to stdout, and
    /// when a build ends.
    pub fn flush_json(&self) {
        self.lines.flush();
    }

    /// A command's result on stdout (graph, explain, plans).
    pub fn print(&self, text: &str) {
        if self.is_captured() {
            return;
        }
        self.flush_json();
        self.with_terminal(|| {
            let mut out = anstream::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        });
    }

    fn start_progress(&self, tasks: usize) {
        if self.is_json()
            || self.verbosity == Verbosity::Quiet
            || tasks < PROGRESS_THRESHOLD
            || !std::io::IsTerminal::is_terminal(&std::io::stderr())
        {
            return;
        }
        let bar = self.bars.add(indicatif::ProgressBar::new(tasks as u64));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:>12.cyan.bold} [{bar:30}] {pos}/{len} {wide_msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix("Building");
        bar.enable_steady_tick(Duration::from_millis(120));
        *self.progress.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
    }

    fn finish_progress(&self) {
        if let Some(bar) = self
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            bar.finish_and_clear();
        }
    }

    fn advance(&self, message: &str) {
        if let Some(bar) = self
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            bar.inc(1);
            bar.set_message(message.to_string());
        }
    }

    fn task_finished_json(&self, report: &TaskReport) {
        let reason = if report.reasons.is_empty() {
            if report.status == TaskStatus::Cached {
                Some("up to date".to_string())
            } else {
                report.error.clone()
            }
        } else {
            Some(summarize(&report.reasons))
        };
        /// The line, serialized straight from the report (a `json!` value built a map of a
        /// dozen owned keys for each task). Fields in the order of their names, as a map of
        /// them was printed.
        #[derive(serde::Serialize)]
        struct TaskFinished<'a> {
            duration_ms: u64,
            error: &'a Option<String>,
            event: &'static str,
            executed: Option<&'static str>,
            id: &'a TaskId,
            key: Option<engine::Digest>,
            output: Option<engine::Digest>,
            reason: Option<String>,
            reasons: Vec<String>,
            restored: usize,
            source: Option<&'static str>,
            status: TaskStatus,
        }
        self.json_line(&TaskFinished {
            duration_ms: report.duration_ms,
            error: &report.error,
            event: "task-finished",
            executed: report.executed,
            id: &report.id,
            key: report.key,
            output: report.output,
            reason,
            reasons: report.reasons.iter().map(ToString::to_string).collect(),
            restored: report.restored,
            source: report.source,
            status: report.status,
        });
    }

    fn task_finished_human(&self, report: &TaskReport) {
        let id = report.id.as_str();
        match report.status {
            TaskStatus::Ran => {
                if self.verbosity == Verbosity::Verbose {
                    let place = match report.executed {
                        Some("remote") => " (remotely)",
                        _ => "",
                    };
                    self.status(
                        "Finished",
                        GREEN,
                        &format!("{id} in {}{place}", seconds(report.duration_ms)),
                    );
                }
            }
            TaskStatus::Cached => {
                if !report.reasons.is_empty() || report.restored > 0 {
                    let files = match report.restored {
                        0 => "outputs already in place".to_string(),
                        1 => "1 file".to_string(),
                        n => format!("{n} files"),
                    };
                    self.status("Restored", CYAN, &format!("{id} from cache ({files})"));
                } else if self.verbosity == Verbosity::Verbose {
                    self.status("Fresh", GREEN, id);
                }
            }
            TaskStatus::Failed => {
                let message = report.error.as_deref().unwrap_or("failed");
                self.with_terminal(|| {
                    let _ = writeln!(
                        anstream::stderr().lock(),
                        "{RED}error{RED:#}: {id} failed: {}",
                        visible(message)
                    );
                });
            }
            TaskStatus::Skipped => {
                if self.verbosity == Verbosity::Verbose {
                    let why = report.error.as_deref().unwrap_or("skipped");
                    self.status("Skipped", YELLOW, &format!("{id} ({why})"));
                }
            }
            TaskStatus::Stopped => self.status("Stopped", YELLOW, &format!("{id} (interrupted)")),
        }
    }
}

/// `-q` prints only errors: of tasks' output, only failing tasks' (module docs).
fn quiet_logs(logs: OutputLogs, verbosity: Verbosity) -> OutputLogs {
    match logs {
        OutputLogs::Full | OutputLogs::NewOnly if verbosity == Verbosity::Quiet => {
            OutputLogs::ErrorsOnly
        }
        logs => logs,
    }
}

/// What a held line costs, its allocation included (many short lines are not free).
fn held_size(line: &[u8]) -> usize {
    line.len() + 64
}

fn stream_index(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

/// A run's counts as the closing status line says them: `3 ran, 5 cached`, then the failed and
/// skipped tasks when there are any (the one wording, for `bundle`, `task` and `watch` rounds).
pub fn run_counts(summary: &engine::RunSummary) -> String {
    let mut parts = vec![
        format!("{} ran", summary.ran),
        format!("{} cached", summary.cached),
    ];
    if summary.failed > 0 {
        parts.push(format!("{} failed", summary.failed));
    }
    if summary.skipped > 0 {
        parts.push(format!("{} skipped", summary.skipped));
    }
    parts.join(", ")
}

fn seconds(ms: u64) -> String {
    crate::units::duration_ms(ms)
}

impl Reporter for Shell {
    fn report(&self, event: Event<'_>) {
        match event {
            Event::BuildStarted { tasks } => {
                if !self.bars.is_hidden() {
                    *TRANSFER_BARS.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(self.bars.clone());
                }
                if self.is_json() {
                    self.json(&json!({"event": "build-started", "tasks": tasks}));
                } else {
                    self.start_progress(tasks);
                }
            }
            Event::TaskStarted { id, reasons } => {
                if self.is_json() {
                    self.json(&json!({
                        "event": "task-started",
                        "id": id,
                        "reason": summarize(reasons),
                        "reasons": reasons.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    }));
                } else if self.verbosity == Verbosity::Verbose {
                    self.status("Running", GREEN, &format!("{id} ({})", summarize(reasons)));
                } else {
                    self.status("Running", GREEN, id.as_str());
                }
            }
            Event::Output {
                id,
                stream,
                bytes,
                replayed,
            } => {
                if self.is_json() {
                    self.json(&json!({
                        "event": "task-output",
                        "id": id,
                        "stream": stream,
                        "replayed": replayed,
                        "text": String::from_utf8_lossy(bytes),
                    }));
                    return;
                }
                self.task_output(id, stream, bytes, replayed);
            }
            Event::Warning { id, message } => {
                if self.is_json() {
                    self.json(&json!({"event": "warning", "id": id, "message": message}));
                } else {
                    match id {
                        Some(id) => self.warn(&format!("{id}: {message}")),
                        None => self.warn(message),
                    }
                }
            }
            Event::TaskFinished(report) => {
                self.advance(report.id.as_str());
                if self.is_json() {
                    self.task_finished_json(report);
                } else {
                    self.task_output_ends(&report.id, Some(report.status));
                    self.task_finished_human(report);
                }
            }
            Event::BuildFinished(summary) => {
                TRANSFER_BARS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                self.finish_progress();
                self.flush_task_output();
                if self.is_json() {
                    self.json(&json!({
                        "event": "build-finished",
                        "success": summary.success(),
                        "ran": summary.ran,
                        "cached": summary.cached,
                        "failed": summary.failed,
                        "skipped": summary.skipped,
                        "stopped": summary.stopped,
                        "interrupted": summary.interrupted,
                        "duration_ms": summary.duration_ms,
                        "uploaded": summary.uploaded,
                    }));
                    self.flush_json();
                    return;
                }
                if summary.interrupted {
                    // One line, as Ctrl-C users expect; the exit code says which signal.
                    let mut parts = vec![format!("{} ran", summary.ran)];
                    if summary.cached > 0 {
                        parts.push(format!("{} cached", summary.cached));
                    }
                    parts.push(format!("{} stopped", summary.stopped));
                    if summary.failed > 0 {
                        parts.push(format!("{} failed", summary.failed));
                    }
                    self.with_terminal(|| {
                        let _ = writeln!(
                            anstream::stderr().lock(),
                            "{YELLOW}interrupted{YELLOW:#}: {}",
                            parts.join(", ")
                        );
                    });
                    return;
                }
                let counts = format!(
                    "{} in {}",
                    run_counts(summary),
                    seconds(summary.duration_ms)
                );
                if summary.uploaded > 0 {
                    self.status(
                        "Uploaded",
                        CYAN,
                        &format!(
                            "{} result{} to the remote cache",
                            summary.uploaded,
                            if summary.uploaded == 1 { "" } else { "s" }
                        ),
                    );
                }
                if summary.success() {
                    self.status("Finished", GREEN, &counts);
                } else {
                    // Each failure had its own line as it happened: the summary names the first
                    // few (a broken tree can fail hundreds of tasks, all in one line).
                    let mut failed: Vec<String> = summary
                        .failures
                        .iter()
                        .take(SUMMARY_FAILURES)
                        .map(|(id, why)| format!("{id} ({why})"))
                        .collect();
                    let more = summary.failures.len().saturating_sub(SUMMARY_FAILURES);
                    if more > 0 {
                        failed.push(format!("and {more} more (each named above)"));
                    }
                    self.with_terminal(|| {
                        let _ = writeln!(
                            anstream::stderr().lock(),
                            "{RED}error{RED:#}: build failed: {counts}; failed: {}",
                            visible(&failed.join(", "))
                        );
                    });
                }
            }
        }
    }
}
