//! The one output layer: cargo-style status lines, warnings, diagnostics, progress, and JSON
//! lines for `--message-format json`. Nothing else in the crate prints: a task's long transfer
//! (a download) shows its bar through [`Transfer`], drawn with the running shell's bars.
//!
//! Human output goes to stderr (status) and stdout (command results, task stdout); colors follow
//! the terminal and `NO_COLOR` (through `anstream`). **Invariant:** status lines, warnings,
//! errors and diagnostics show control characters written out ([`visible`]): a file name or a
//! pattern from the repository never reaches the terminal as an escape sequence. What a task
//! prints is its own output, passed through as it is. JSON output writes one object per line to
//! stdout; the event schema is documented in `docs/json-events.md`.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use anstyle::{AnsiColor, Style};
use engine::{Event, Reporter, Stream, TaskReport, TaskStatus, key::summarize};
use serde_json::json;

use crate::diagnostic::{Diagnostic, visible};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MessageFormat {
    Human,
    Json,
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
            // Still say it on stderr: a CI log should show why the job failed.
        }
        let text = diagnostic.render(self.color);
        self.with_terminal(|| {
            let _ = write!(anstream::stderr().lock(), "{text}");
        });
    }

    /// One JSON line on stdout.
    pub fn json(&self, value: &serde_json::Value) {
        self.with_terminal(|| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{value}");
            let _ = out.flush();
        });
    }

    /// A command's result on stdout (graph, explain, plans).
    pub fn print(&self, text: &str) {
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
        self.json(&json!({
            "event": "task-finished",
            "id": report.id,
            "status": report.status,
            "duration_ms": report.duration_ms,
            "reason": reason,
            "reasons": report.reasons.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "restored": report.restored,
            "key": report.key,
            "output": report.output,
            "error": report.error,
        }));
    }

    fn task_finished_human(&self, report: &TaskReport) {
        let id = report.id.as_str();
        match report.status {
            TaskStatus::Ran => {
                if self.verbosity == Verbosity::Verbose {
                    self.status(
                        "Finished",
                        GREEN,
                        &format!("{id} in {}", seconds(report.duration_ms)),
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
                if self.verbosity == Verbosity::Quiet {
                    return;
                }
                self.with_terminal(|| match stream {
                    Stream::Stdout => {
                        let _ = std::io::stdout().lock().write_all(bytes);
                    }
                    Stream::Stderr => {
                        let _ = std::io::stderr().lock().write_all(bytes);
                    }
                });
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
                    self.task_finished_human(report);
                }
            }
            Event::BuildFinished(summary) => {
                TRANSFER_BARS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                self.finish_progress();
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
                    }));
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
                    "{} ran, {} cached{}{} in {}",
                    summary.ran,
                    summary.cached,
                    if summary.failed > 0 {
                        format!(", {} failed", summary.failed)
                    } else {
                        String::new()
                    },
                    if summary.skipped > 0 {
                        format!(", {} skipped", summary.skipped)
                    } else {
                        String::new()
                    },
                    seconds(summary.duration_ms)
                );
                if summary.success() {
                    self.status("Finished", GREEN, &counts);
                } else {
                    let failed: Vec<String> = summary
                        .failures
                        .iter()
                        .map(|(id, why)| format!("{id} ({why})"))
                        .collect();
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
