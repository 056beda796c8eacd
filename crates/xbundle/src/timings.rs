//! `--timings`: an HTML report of one run, like `cargo build --timings`.
//!
//! A [`Recorder`] wraps the run's reporter (the [`Shell`]): it forwards every event unchanged
//! and notes, with a monotonic clock read at each event, when each task started
//! (`TaskStarted`) and finished (`TaskFinished`). A task that did not run (cached, skipped)
//! has no start event: it starts at its finish minus its reported duration. After the run
//! [`write`] lays the tasks out and writes the report.
//!
//! Invariants:
//! - the report is self-contained: inline CSS and script, no URL to fetch, and a
//!   Content-Security-Policy of `default-src 'none'` so a browser fetches nothing even if a
//!   name looked like a URL; it reads the same offline;
//! - every string that comes from bundle.toml or the tree (task ids, reasons, errors) is
//!   escaped for HTML where it is written as markup (`html-escape`), and the embedded JSON
//!   the script reads has `<`, `>` and `&` as `\u003c`, `\u003e`, `\u0026`, so nothing in it
//!   can close its `<script>` element; the script writes text with `textContent` only;
//! - the tables (every task, the critical path, the slowest tasks, the counts) are plain HTML,
//!   readable without the script; the script draws the timeline, then adds a
//!   `#timings-rendered` marker, and reports any error it meets (`window.onerror`) in a
//!   `#timings-errors` list in the page, so a dumped DOM shows that it ran cleanly;
//! - lanes are assigned by interval partitioning (the earliest-starting task first, into the
//!   lowest lane free at its start), so a lane never holds two overlapping tasks and the lane
//!   count is the run's peak concurrency as measured;
//! - the critical path is the longest chain through the graph's dependencies by measured
//!   durations, among the tasks of the run;
//! - the files are written under `<out>/xbundle-timings/` (out is `dist/` by default, which
//!   belongs to xbundle) through the confined writer ([`crate::stage::write_bytes`]: no link
//!   followed, each file written beside its place and renamed in): `timings-<UTC time>.html`
//!   and the stable copy `timings.html`. A report that cannot be written is a warning: the
//!   build's result does not change.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use camino::{Utf8Path, Utf8PathBuf};
use engine::{Event, Reporter, TaskId, TaskStatus};
use serde::Serialize;
use time::OffsetDateTime;

/// The directory under `out` that holds the reports.
pub const DIR: &str = "xbundle-timings";

/// Forwards every event to the wrapped reporter and notes when each task started and ended.
pub struct Recorder<'a> {
    inner: &'a dyn Reporter,
    started: Instant,
    wall: OffsetDateTime,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    starts: HashMap<TaskId, Instant>,
    tasks: Vec<Timed>,
}

/// One task of the run, as the report shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Timed {
    pub id: String,
    /// `ran`, `cached`, `failed`, `skipped` or `stopped`.
    pub status: &'static str,
    /// Milliseconds from the start of the run.
    pub start_ms: u64,
    pub duration_ms: u64,
    /// The worker lane (interval partitioning), from 0.
    pub lane: usize,
    /// Why it ran, or was restored.
    pub reasons: Vec<String>,
    /// Where a cached result came from ([`engine::TaskReport::source`]): `local`, `http` or
    /// `reapi`; none for a task that did not come from a cache.
    pub source: Option<&'static str>,
    pub restored: usize,
    pub error: Option<String>,
}

fn status_name(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Ran => "ran",
        TaskStatus::Cached => "cached",
        TaskStatus::Failed => "failed",
        TaskStatus::Skipped => "skipped",
        TaskStatus::Stopped => "stopped",
    }
}

fn millis(from: Instant, to: Instant) -> u64 {
    u64::try_from(to.saturating_duration_since(from).as_millis()).unwrap_or(u64::MAX)
}

impl<'a> Recorder<'a> {
    pub fn new(inner: &'a dyn Reporter) -> Recorder<'a> {
        Recorder {
            inner,
            started: Instant::now(),
            wall: OffsetDateTime::now_utc(),
            state: Mutex::new(State::default()),
        }
    }

    /// The tasks recorded so far, in the order they finished, lanes assigned.
    pub fn tasks(&self) -> Vec<Timed> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut tasks = state.tasks.clone();
        assign_lanes(&mut tasks);
        tasks
    }
}

impl Reporter for Recorder<'_> {
    fn report(&self, event: Event<'_>) {
        let now = Instant::now();
        match &event {
            Event::TaskStarted { id, .. } => {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                state.starts.insert((*id).clone(), now);
            }
            Event::TaskFinished(report) => {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let end_ms = millis(self.started, now);
                let (start_ms, duration_ms) = match state.starts.remove(&report.id) {
                    Some(start) => (millis(self.started, start), millis(start, now)),
                    None => (
                        end_ms.saturating_sub(report.duration_ms),
                        report.duration_ms.min(end_ms),
                    ),
                };
                state.tasks.push(Timed {
                    id: report.id.to_string(),
                    status: status_name(report.status),
                    start_ms,
                    duration_ms,
                    lane: 0,
                    reasons: report.reasons.iter().map(ToString::to_string).collect(),
                    source: if report.status == TaskStatus::Cached {
                        report.source
                    } else {
                        None
                    },
                    restored: report.restored,
                    error: report.error.clone(),
                });
            }
            _ => {}
        }
        self.inner.report(event);
    }
}

/// Interval partitioning: by start (then end), each task into the lowest lane whose last task
/// ended by its start, else a new lane.
fn assign_lanes(tasks: &mut [Timed]) {
    let mut order: Vec<usize> = (0..tasks.len()).collect();
    order.sort_by_key(|&i| (tasks[i].start_ms, tasks[i].duration_ms, i));
    let mut lane_ends: Vec<u64> = Vec::new();
    for i in order {
        let (start, end) = (tasks[i].start_ms, tasks[i].start_ms + tasks[i].duration_ms);
        let lane = match lane_ends.iter().position(|&free| free <= start) {
            Some(lane) => lane,
            None => {
                lane_ends.push(0);
                lane_ends.len() - 1
            }
        };
        lane_ends[lane] = end;
        tasks[i].lane = lane;
    }
}

/// The longest chain through `graph`'s dependencies by the measured durations of `tasks`
/// (tasks not in the run weigh nothing and are left out), from its first task to its last.
pub fn critical_path(graph: &engine::TaskGraph, tasks: &[Timed]) -> Vec<String> {
    let duration: HashMap<&str, u64> = tasks
        .iter()
        .map(|t| (t.id.as_str(), t.duration_ms))
        .collect();
    // Task -> (length of the longest chain ending with it, the dependency before it).
    let mut best: HashMap<&str, (u64, Option<&str>)> = HashMap::new();
    let mut end: Option<(&str, u64)> = None;
    for spec in graph.topological() {
        let id = spec.id.as_str();
        let Some(&own) = duration.get(id) else {
            continue;
        };
        let mut before: Option<(&str, u64)> = None;
        for dep in &spec.deps {
            if let Some(&(length, _)) = best.get(dep.as_str())
                && before.is_none_or(|(_, longest)| length > longest)
            {
                before = Some((dep.as_str(), length));
            }
        }
        let length = own + before.map_or(0, |(_, length)| length);
        best.insert(id, (length, before.map(|(dep, _)| dep)));
        if end.is_none_or(|(_, longest)| length > longest) {
            end = Some((id, length));
        }
    }
    let mut chain = Vec::new();
    let mut at = end.map(|(id, _)| id);
    while let Some(id) = at {
        chain.push(id.to_string());
        at = best.get(id).and_then(|(_, before)| *before);
    }
    chain.reverse();
    chain
}

/// Everything the page shows, as the script reads it.
#[derive(Serialize)]
struct Data<'a> {
    started: String,
    duration_ms: u64,
    lanes: usize,
    tasks: &'a [Timed],
    critical_path: &'a [String],
}

/// The UTC time as `2026-11-28 16:23:55` (the header) and `20261128T162355.123Z` (file names).
fn stamps(at: OffsetDateTime) -> (String, String) {
    let (y, mo, d) = (at.year(), u8::from(at.month()), at.day());
    let (h, mi, s, ms) = (at.hour(), at.minute(), at.second(), at.millisecond());
    (
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC"),
        format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}.{ms:03}Z"),
    )
}

fn text(value: &str) -> String {
    html_escape::encode_text(value).into_owned()
}

fn ms(value: u64) -> String {
    crate::units::duration_ms(value)
}

/// The report's HTML for `tasks` of a run of `duration_ms` that started at `started`.
pub fn render(
    started: OffsetDateTime,
    duration_ms: u64,
    tasks: &[Timed],
    critical: &[String],
) -> String {
    let lanes = tasks.iter().map(|t| t.lane + 1).max().unwrap_or(0);
    let (header_time, _) = stamps(started);
    let count = |status: &str| tasks.iter().filter(|t| t.status == status).count();
    let data = Data {
        started: header_time.clone(),
        duration_ms,
        lanes,
        tasks,
        critical_path: critical,
    };
    let json = serde_json::to_string(&data)
        .expect("plain data serializes")
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");

    let mut html = String::with_capacity(8192 + tasks.len() * 512);
    html.push_str(HEAD);
    html.push_str(&format!(
        "<h1>xbundle timings</h1>\n<p class=\"meta\">Run started {}, took {}; {} in {} (peak concurrency).</p>\n",
        text(&header_time),
        ms(duration_ms),
        crate::units::count(tasks.len(), "task"),
        crate::units::count(lanes, "lane"),
    ));
    html.push_str("<h2>Summary</h2>\n<table id=\"summary\"><tr>");
    for status in ["ran", "cached", "failed", "skipped", "stopped"] {
        html.push_str(&format!(
            "<th>{status}</th><td data-status=\"{status}\">{}</td>",
            count(status)
        ));
    }
    html.push_str("</tr></table>\n");

    html.push_str("<h2>Timeline</h2>\n<div id=\"timeline\" class=\"timeline\"></div>\n");
    html.push_str("<p class=\"legend\"><span class=\"ran\">ran</span> <span class=\"cached\">cached</span> <span class=\"failed\">failed</span> <span class=\"skipped\">skipped</span> <span class=\"stopped\">stopped</span> <span class=\"critical-key\">on the critical path</span></p>\n");

    html.push_str("<h2>Critical path</h2>\n<ol id=\"critical-path\">\n");
    let by_id: HashMap<&str, &Timed> = tasks.iter().map(|t| (t.id.as_str(), t)).collect();
    let mut critical_total = 0;
    for id in critical {
        let duration = by_id.get(id.as_str()).map_or(0, |t| t.duration_ms);
        critical_total += duration;
        html.push_str(&format!(
            "<li><span class=\"task-id\">{}</span> <span class=\"meta\">{}</span></li>\n",
            text(id),
            ms(duration)
        ));
    }
    html.push_str(&format!(
        "</ol>\n<p class=\"meta\">Critical path: {} of the run's {}.</p>\n",
        ms(critical_total),
        ms(duration_ms)
    ));

    html.push_str("<h2>Slowest tasks</h2>\n<table id=\"slowest\"><tr><th>task</th><th>status</th><th>duration</th></tr>\n");
    let mut slowest: Vec<&Timed> = tasks.iter().collect();
    slowest.sort_by(|a, b| b.duration_ms.cmp(&a.duration_ms).then(a.id.cmp(&b.id)));
    for task in slowest.iter().take(10) {
        html.push_str(&format!(
            "<tr><td class=\"task-id\">{}</td><td>{}</td><td class=\"num\">{}</td></tr>\n",
            text(&task.id),
            task.status,
            ms(task.duration_ms)
        ));
    }
    html.push_str("</table>\n");

    html.push_str("<h2>Tasks</h2>\n<table id=\"tasks\"><tr><th>task</th><th>status</th><th>lane</th><th>start</th><th>duration</th><th>cache source</th><th>why</th></tr>\n");
    let mut ordered: Vec<&Timed> = tasks.iter().collect();
    ordered.sort_by(|a, b| a.start_ms.cmp(&b.start_ms).then(a.id.cmp(&b.id)));
    for task in ordered {
        let mut why = task.reasons.join("; ");
        if let Some(error) = &task.error
            && !error.is_empty()
        {
            if !why.is_empty() {
                why.push_str("; ");
            }
            why.push_str(error);
        }
        if why.is_empty() && task.status == "cached" {
            why.push_str("up to date");
        }
        html.push_str(&format!(
            "<tr data-status=\"{status}\"><td class=\"task-id\">{}</td><td class=\"status {status}\">{status}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>\n",
            text(&task.id),
            task.lane,
            ms(task.start_ms),
            ms(task.duration_ms),
            task.source.unwrap_or(""),
            text(&why),
            status = task.status,
        ));
    }
    html.push_str("</table>\n");
    html.push_str("<script id=\"timings-data\" type=\"application/json\">");
    html.push_str(&json);
    html.push_str("</script>\n<script>\n");
    html.push_str(SCRIPT);
    html.push_str("</script>\n</body>\n</html>\n");
    html
}

/// Where the reports of a workspace go, root-relative.
pub fn dir(out: &Utf8Path) -> Utf8PathBuf {
    out.join(DIR)
}

/// Writes the report of the run `recorder` saw (of `graph`, `duration_ms` long) under
/// `<out>/xbundle-timings/` in the workspace at `root`: the stamped file and `timings.html`.
/// Returns the stable copy's root-relative path.
pub fn write(
    recorder: &Recorder<'_>,
    graph: &engine::TaskGraph,
    duration_ms: u64,
    root: &Utf8Path,
    out: &Utf8Path,
) -> Result<Utf8PathBuf, String> {
    let tasks = recorder.tasks();
    let critical = critical_path(graph, &tasks);
    let html = render(recorder.wall, duration_ms, &tasks, &critical);
    let tree = engine::confine::Dir::open_root(root.as_std_path())
        .map_err(|err| format!("opening {root}: {err}"))?;
    let dir = dir(out);
    let (_, stamp) = stamps(recorder.wall);
    crate::stage::write_bytes(
        &tree,
        &dir.join(format!("timings-{stamp}.html")),
        html.as_bytes(),
    )?;
    let stable = dir.join("timings.html");
    crate::stage::write_bytes(&tree, &stable, html.as_bytes())?;
    Ok(stable)
}

const HEAD: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>xbundle timings</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.meta { color: #555; }
.task-id { font-family: ui-monospace, monospace; }
.timeline { position: relative; border: 1px solid #ccc; overflow-x: auto; }
.lane { position: relative; height: 22px; border-bottom: 1px solid #eee; }
.bar { position: absolute; top: 2px; height: 18px; font-size: 11px; overflow: hidden; white-space: nowrap; border-radius: 2px; box-sizing: border-box; padding: 0 3px; min-width: 2px; }
.ran { background: #8fc98f; } .cached { background: #b9cfe8; } .failed { background: #e89a9a; }
.skipped { background: #ddd; } .stopped { background: #f0d48a; }
.bar.critical, .critical-key { outline: 2px solid #c0392b; }
.legend span { padding: 0 6px; margin-right: 4px; }
#timings-errors { color: #b00; }
</style>
</head>
<body>
<ul id="timings-errors"></ul>
"#;

/// Draws the timeline from the embedded data; text only through `textContent`.
const SCRIPT: &str = r#"(function () {
  "use strict";
  var errors = document.getElementById("timings-errors");
  window.onerror = function (message, source, line) {
    var item = document.createElement("li");
    item.className = "timings-error";
    item.textContent = "script error: " + message + " (line " + line + ")";
    errors.appendChild(item);
  };
  var data = JSON.parse(document.getElementById("timings-data").textContent);
  var timeline = document.getElementById("timeline");
  var width = Math.max(600, (timeline.clientWidth || 900) - 4);
  var scale = width / Math.max(1, data.duration_ms);
  var critical = {};
  data.critical_path.forEach(function (id) { critical[id] = true; });
  var lanes = [];
  for (var l = 0; l < data.lanes; l++) {
    var lane = document.createElement("div");
    lane.className = "lane";
    lane.style.width = width + "px";
    timeline.appendChild(lane);
    lanes.push(lane);
  }
  data.tasks.forEach(function (task) {
    var bar = document.createElement("div");
    bar.className = "bar " + task.status + (critical[task.id] ? " critical" : "");
    bar.style.left = Math.floor(task.start_ms * scale) + "px";
    bar.style.width = Math.max(2, Math.round(task.duration_ms * scale)) + "px";
    bar.textContent = task.id;
    var why = task.reasons.length ? task.reasons.join("; ") : (task.status === "cached" ? "up to date" : "");
    bar.title = task.id + ": " + task.status + ", " + task.duration_ms + " ms" +
      (task.source ? " (cache: " + task.source + ")" : "") + (why ? "\n" + why : "") +
      (task.error ? "\n" + task.error : "");
    bar.setAttribute("data-task", task.id);
    lanes[task.lane].appendChild(bar);
  });
  var marker = document.createElement("p");
  marker.id = "timings-rendered";
  marker.className = "meta";
  marker.setAttribute("data-bars", String(data.tasks.length));
  marker.textContent = "Timeline: " + data.tasks.length + " tasks in " + data.lanes + " lanes.";
  timeline.parentNode.insertBefore(marker, timeline.nextSibling);
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn timed(id: &str, start_ms: u64, duration_ms: u64) -> Timed {
        Timed {
            id: id.into(),
            status: "ran",
            start_ms,
            duration_ms,
            lane: 0,
            reasons: Vec::new(),
            source: None,
            restored: 0,
            error: None,
        }
    }

    #[test]
    fn lanes_never_hold_overlapping_tasks_and_count_the_peak() {
        let mut tasks = vec![
            timed("a", 0, 10),
            timed("b", 0, 5),
            timed("c", 5, 10),
            timed("d", 10, 1),
            timed("e", 2, 20),
        ];
        assign_lanes(&mut tasks);
        let lanes = tasks.iter().map(|t| t.lane + 1).max().unwrap();
        assert_eq!(lanes, 3, "peak concurrency is 3 (a, c, e at 5..10)");
        for x in &tasks {
            for y in &tasks {
                if x.id != y.id && x.lane == y.lane {
                    let apart = x.start_ms + x.duration_ms <= y.start_ms
                        || y.start_ms + y.duration_ms <= x.start_ms;
                    assert!(apart, "{} and {} overlap in lane {}", x.id, y.id, x.lane);
                }
            }
        }
    }

    #[test]
    fn markup_from_names_and_reasons_is_escaped() {
        let mut task = timed("t<b>x</b>", 0, 1);
        task.reasons = vec!["input <script>alert(1)</script> changed".into()];
        let html = render(OffsetDateTime::UNIX_EPOCH, 1, &[task], &[]);
        assert!(!html.contains("<b>x"));
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("t&lt;b&gt;x&lt;/b&gt;"));
        assert!(html.contains("\\u003cscript\\u003e"));
    }
}
