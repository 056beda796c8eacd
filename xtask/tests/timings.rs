//! `--timings` (issue 12 item 5): after a run, a self-contained HTML report under
//! `dist/xbundle-timings/` (a stamped file and the stable `timings.html`) names every task of
//! the run with its status, why it ran and its cache source, the critical path through the
//! graph, the slowest tasks and the counts; names and reasons from the tree are escaped; the page
//! opens in headless Chromium and its script runs without an error.
//!
//! Nothing here compares durations: the critical path is fixed by the graph's shape (a chain
//! of three sleeping tasks against two that do not sleep or are cached).

use crate::common;

use std::process::Command;

use common::{Canary, Repo};

/// gen -> lib -> app, a chain (each sleeps, so it outweighs any single other task); side is
/// independent and built beforehand (cached in the timed run); gen reads a file whose name is
/// markup, so its reason ("input … changed") carries it into the report.
const CHAIN: &str = r#"
[tasks.gen]
run = "sleep 0.2; cat in/* > gen.out"
inputs = ["in/*"]
outputs = ["gen.out"]

[tasks.lib]
run = "sleep 0.2; cat gen.out > lib.out"
inputs = ["gen.out"]
outputs = ["lib.out"]
deps = ["gen"]

[tasks.app]
run = "sleep 0.2; cat lib.out > app.out"
inputs = ["lib.out"]
outputs = ["app.out"]
deps = ["lib"]

[tasks.side]
run = "echo side > side.out"
outputs = ["side.out"]
"#;

/// A file name that is markup (no `/` is possible in a name): a script would run if it were
/// written into the page unescaped.
const MARKUP_NAME: &str = "in/<img src=x onerror=document.title='pwned'><script>pwned()<";

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The text of every `<td class="task-id">` cell (and `<span class="task-id">`) inside the
/// element that starts with `open` (up to its `closing` tag), unescaped.
fn ids_in(html: &str, open: &str, closing: &str) -> Vec<String> {
    let start = html
        .find(open)
        .unwrap_or_else(|| panic!("no {open} in the report"));
    let section = &html[start..];
    let section = &section[..section.find(closing).expect("the element closes")];
    let mut ids = Vec::new();
    for piece in section.split("class=\"task-id\">").skip(1) {
        let end = piece.find('<').expect("the cell closes");
        ids.push(unescape(&piece[..end]));
    }
    ids
}

/// Rows of the tasks table: (id, status, cache source, why).
fn task_rows(html: &str) -> Vec<[String; 4]> {
    let start = html.find("<table id=\"tasks\">").expect("a tasks table");
    let table = &html[start..];
    let table = &table[..table.find("</table>").expect("the table closes")];
    table
        .split("<tr data-status=")
        .skip(1)
        .map(|row| {
            let cells: Vec<String> = row
                .split("<td")
                .skip(1)
                .map(|cell| {
                    let text = &cell[cell.find('>').unwrap() + 1..];
                    unescape(&text[..text.find("</td>").unwrap()])
                })
                .collect();
            [
                cells[0].clone(),
                cells[1].clone(),
                cells[5].clone(),
                cells[6].clone(),
            ]
        })
        .collect()
}

/// A repository where `side` is cached and a changed input makes the chain run.
fn prepared() -> Repo {
    let repo = Repo::in_sandbox(CHAIN, &[(MARKUP_NAME, "one\n")]);
    repo.json(&["task"]).assert_code(0);
    repo.write(MARKUP_NAME, "two\n");
    repo
}

#[test]
fn the_report_names_every_task_marks_the_cached_one_and_finds_the_critical_path() {
    let repo = prepared();
    let run = repo.json(&["task", "--timings"]);
    run.assert_code(0);
    let events = run.events("timings");
    assert_eq!(events.len(), 1, "one timings event\n{run}");
    assert_eq!(
        events[0]["path"], "dist/xbundle-timings/timings.html",
        "{run}"
    );
    let html = repo.read("dist/xbundle-timings/timings.html");
    // The stamped copy beside it holds the same report.
    let stamped: Vec<_> = std::fs::read_dir(repo.join("dist/xbundle-timings"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("timings-") && name.ends_with(".html"))
        .collect();
    assert_eq!(stamped.len(), 1, "{stamped:?}");
    assert_eq!(
        repo.read(&format!("dist/xbundle-timings/{}", stamped[0])),
        html
    );

    let rows = task_rows(&html);
    let mut ids: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["task:app", "task:gen", "task:lib", "task:side"]);
    let row = |id: &str| rows.iter().find(|r| r[0] == id).unwrap().clone();
    assert_eq!(row("task:side")[1], "cached");
    assert_eq!(row("task:side")[2], "local", "a cache hit says where from");
    for id in ["task:gen", "task:lib", "task:app"] {
        assert_eq!(row(id)[1], "ran", "{id}");
        assert_eq!(row(id)[2], "", "{id} came from no cache");
    }
    assert_eq!(
        row("task:gen")[3],
        format!("input {MARKUP_NAME} changed"),
        "why gen ran, with the file name as it is"
    );

    assert_eq!(
        ids_in(&html, "<ol id=\"critical-path\">", "</ol>"),
        ["task:gen", "task:lib", "task:app"]
    );
    let slowest = ids_in(&html, "<table id=\"slowest\">", "</table>");
    assert_eq!(slowest.len(), 4);
    assert_eq!(slowest[3], "task:side", "the cached task is the quickest");
    assert!(html.contains("<th>ran</th><td data-status=\"ran\">3</td>"));
    assert!(html.contains("<th>cached</th><td data-status=\"cached\">1</td>"));

    // Escaped: the markup in the file name is text, in the tables and in the script's data.
    assert!(!html.contains("<img"), "unescaped markup in the report");
    assert!(
        !html.contains("<script>pwned"),
        "unescaped markup in the report"
    );
    assert!(html.contains("&lt;img src=x onerror="));
    // Self-contained: nothing to fetch.
    for remote in ["http://", "https://", " src=\"", " href=\"", "@import"] {
        assert!(!html.contains(remote), "the report refers to {remote}");
    }
}

#[test]
fn human_output_says_where_the_report_is() {
    let repo = prepared();
    let run = repo.human(&["task", "--timings"]);
    run.assert_code(0);
    assert!(
        run.stderr
            .contains("Timings report in dist/xbundle-timings/timings.html"),
        "{run}"
    );
    // Without --timings nothing is written.
    let repo = prepared();
    repo.json(&["task"]).assert_code(0);
    assert!(!repo.exists("dist/xbundle-timings"));
}

#[test]
fn a_failed_run_gets_a_report_too() {
    let repo = Repo::new(
        r#"
[tasks.bad]
run = "echo no >&2; exit 3"

[tasks.after]
run = "true"
deps = ["bad"]
"#,
        &[],
    );
    let run = repo.json(&["task", "--timings"]);
    assert_ne!(run.code, 0, "{run}");
    let rows = task_rows(&repo.read("dist/xbundle-timings/timings.html"));
    let status = |id: &str| rows.iter().find(|r| r[0] == id).unwrap()[1].clone();
    assert_eq!(status("task:bad"), "failed");
    assert_eq!(status("task:after"), "skipped");
}

#[test]
fn a_linked_report_directory_is_refused_and_nothing_outside_is_written() {
    let repo = Repo::in_sandbox(CHAIN, &[(MARKUP_NAME, "one\n")]);
    let canary = Canary::plant(&repo.sandbox().join("canary"), &[]);
    std::fs::create_dir_all(repo.join("dist")).unwrap();
    std::os::unix::fs::symlink(&canary.dir, repo.join("dist/xbundle-timings")).unwrap();
    let run = repo.json(&["task", "--timings"]);
    run.assert_code(0);
    assert!(run.events("timings").is_empty(), "{run}");
    assert!(
        run.warnings()
            .iter()
            .any(|w| w.contains("--timings: the report was not written")),
        "{run}"
    );
    canary.assert_intact("a linked dist/xbundle-timings");
}

#[test]
fn the_report_renders_in_headless_chromium_without_script_errors() {
    if !common::have_tool("chromium", "chromium") {
        return;
    }
    let repo = prepared();
    repo.json(&["task", "--timings"]).assert_code(0);
    let page = repo.join("dist/xbundle-timings/timings.html");
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .env("HOME", profile.path())
        .output()
        .expect("run chromium");
    assert!(output.status.success(), "chromium failed: {output:?}");
    let dom = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        dom.contains("id=\"timings-rendered\""),
        "the page's script did not finish:\n{dom}\n{stderr}"
    );
    assert!(
        !dom.contains("class=\"timings-error\""),
        "the page's script reported an error:\n{dom}"
    );
    assert!(
        !stderr.contains("CONSOLE") && !stderr.contains("Uncaught"),
        "console errors:\n{stderr}"
    );
    assert!(
        !dom.contains("<img") && !dom.contains("<title>pwned"),
        "markup from a file name became an element"
    );
    // The timeline drew one bar per task, the chain marked critical.
    let mut bars: Vec<String> = dom
        .split("data-task=\"")
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].to_string())
        .collect();
    bars.sort();
    assert_eq!(bars, ["task:app", "task:gen", "task:lib", "task:side"]);
    assert_eq!(dom.matches("bar ran critical").count(), 3, "{dom}");
    assert!(dom.contains("<title>xbundle timings</title>"));
}
