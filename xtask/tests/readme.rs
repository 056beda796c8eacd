//! The README is executable: every command of its ```` ```console ```` blocks runs, in order,
//! against a copy of the demo repository, and what it prints is compared with the lines the
//! README shows under it (snapbox's patterns: `[..]` is any text within a line, a line `...` is
//! any number of lines). So the tour can never again say "0 ran, 3 cached" where the tool says
//! "0 ran, 6 cached".
//!
//! - A command is a line `$ cargo xtask …` (or any shell line: `echo more >> file`, `VAR=x
//!   cargo xtask …`); it runs through `sh -c` in the copy, with `cargo xtask` meaning the binary
//!   under test (a `cargo` shim on PATH; any other `cargo` call reaches the real cargo). Its
//!   stdout and stderr are compared together, in the order they were written. It must exit 0.
//! - A command whose comment mentions `Ctrl-C` runs until its last expected line has been
//!   printed, then gets SIGINT, as a user's Ctrl-C (`cargo xtask run`).
//! - Commands shown in other code blocks (```` ```sh ````) must each also appear in a console
//!   block, so every command a user may paste is run here; and no command holds `…`.
//!
//! `SNAPSHOTS=overwrite cargo test -p xtask --test integration readme::` writes the actual output (durations
//! and the copy's path replaced by `[..]`) over each block that does not match, to be reviewed
//! and trimmed with `...` by hand.

use crate::common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Repo;
use snapbox::{Assert, Data};

/// One command of a console block and what the README shows it printing.
#[derive(Debug)]
struct Step {
    /// 1-based README line of the `$` line.
    line: usize,
    command: String,
    expected: String,
    /// 0-based README lines `[start, end)` holding `expected`.
    lines: (usize, usize),
}

/// Every `$` command of the README's console blocks, in order.
fn console_steps(readme: &str) -> Vec<Step> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut steps: Vec<Step> = Vec::new();
    let mut in_console = false;
    for (index, line) in lines.iter().enumerate() {
        if !in_console {
            in_console = line.trim_start() == "```console";
            continue;
        }
        if line.trim_start().starts_with("```") {
            in_console = false;
            continue;
        }
        if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step {
                line: index + 1,
                command: command.to_string(),
                expected: String::new(),
                lines: (index + 1, index + 1),
            });
        } else {
            let step = steps.last_mut().unwrap_or_else(|| {
                panic!("README.md:{}: output before any `$` command", index + 1)
            });
            step.expected.push_str(line);
            step.expected.push('\n');
            step.lines.1 = index + 1;
        }
    }
    steps
}

/// The commands of the README's other code blocks (```sh, ```bash): lines that start with
/// `cargo ` or a variable assignment before `cargo`, with their 1-based line numbers.
fn other_commands(readme: &str) -> Vec<(usize, String)> {
    let mut commands = Vec::new();
    let mut fence: Option<&str> = None;
    for (index, line) in readme.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("```") {
            fence = match fence {
                None => Some(rest.trim()),
                Some(_) => None,
            };
            continue;
        }
        if matches!(fence, Some("sh" | "bash" | "shell")) && line.contains("cargo xtask") {
            commands.push((index + 1, line.to_string()));
        }
    }
    commands
}

/// A command without its trailing `# comment` and surrounding spaces.
fn without_comment(command: &str) -> &str {
    command.split(" #").next().unwrap_or(command).trim()
}

#[test]
fn every_command_a_user_may_paste_is_in_a_tested_block_and_has_no_ellipsis() {
    let readme = readme();
    let steps = console_steps(&readme);
    assert!(
        steps.len() >= 15,
        "the tour has {} commands; console blocks missing?",
        steps.len()
    );
    let tested: Vec<&str> = steps.iter().map(|s| without_comment(&s.command)).collect();
    let mut problems = Vec::new();
    for step in &steps {
        if step.command.contains('…') {
            problems.push(format!("README.md:{}: `…` in a command", step.line));
        }
    }
    for (line, command) in other_commands(&readme) {
        if command.contains('…') {
            problems.push(format!("README.md:{line}: `…` in a command"));
        }
        // The set-up block's `cargo test --workspace` is this very suite; its `cargo xtask
        // bundle` is the tour's first command.
        let command = without_comment(&command);
        if command.starts_with("cargo xtask") && !tested.contains(&command) {
            problems.push(format!(
                "README.md:{line}: `{command}` is in no console block, so no test runs it"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_readme_tour_prints_what_the_readme_shows() {
    // The tour builds the Go + npm demo and renders an SVG graph.
    if !(common::have_tool("go", "golang-go")
        && common::have_tool("npm", "npm")
        && common::have_tool("dot", "graphviz"))
    {
        return;
    }
    let readme = readme();
    let steps = console_steps(&readme);
    let repo = demo_copy();
    let shim = common::cargo_shim(repo.sandbox());
    let path = format!(
        "{}:{}",
        shim.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let root = repo.path().display().to_string();

    let overwrite = std::env::var("SNAPSHOTS").as_deref() == Ok("overwrite");
    let assert = Assert::new();
    let mut failures = Vec::new();
    let mut rewrites: Vec<(usize, usize, String)> = Vec::new();
    for step in &steps {
        let (code, actual) = run_step(repo.path(), &path, step);
        let actual = actual.replace(&root, "[ROOT]");
        let matched = assert
            .try_eq(
                Some(&format!("README.md:{}", step.line)),
                Data::text(actual.clone()),
                Data::text(step.expected.clone()),
            )
            .map_err(|err| err.to_string());
        let stopped = step.command.contains("Ctrl-C");
        let code_ok = code == Some(0) || (stopped && code == Some(130));
        if matched.is_err() && overwrite {
            rewrites.push((step.lines.0, step.lines.1, redact(&actual)));
        }
        if let Err(diff) = matched {
            failures.push(format!(
                "README.md:{}: `{}` printed something else:\n{diff}",
                step.line, step.command
            ));
        } else if !code_ok {
            failures.push(format!(
                "README.md:{}: `{}` exited with {code:?}:\n{actual}",
                step.line, step.command
            ));
        }
    }
    if overwrite && !rewrites.is_empty() {
        let mut lines: Vec<String> = readme.lines().map(str::to_string).collect();
        for (start, end, text) in rewrites.into_iter().rev() {
            lines.splice(start..end, text.lines().map(str::to_string));
        }
        std::fs::write(readme_path(), lines.join("\n") + "\n").unwrap();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Runs one README line through `sh -c` in `root`, stdout and stderr into one file (so their
/// order is kept); returns the exit code and what it printed.
fn run_step(root: &Path, path: &str, step: &Step) -> (Option<i32>, String) {
    use std::os::unix::process::CommandExt;
    let command = step.command.as_str();
    let log_path = root.join("../readme-step.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new("sh");
    child
        .arg("-c")
        .arg(command)
        .current_dir(root)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env_remove("CI")
        .env_remove("GITHUB_ACTIONS")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0);
    for name in common::TEST_VARIABLES {
        child.env_remove(name);
    }
    let mut child = child.spawn().expect("start sh");
    let group = Group(child.id() as i32);
    let deadline = Instant::now() + Duration::from_secs(600);
    if command.contains("Ctrl-C") {
        // Runs until its expected last line is printed: the line's text before any wildcard.
        let wanted = wanted_line(step);
        loop {
            let printed = std::fs::read_to_string(&log_path).unwrap_or_default();
            if printed.contains(&wanted) || child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "`{command}` did not print `{wanted}`:\n{printed}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        group.signal(libc::SIGINT);
    }
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "`{command}` did not finish within 600 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Everything the command started ends with it: a Ctrl-C'd `run` stops its runtime (which
    // stops its services) before it exits.
    let stopped_by = Instant::now() + Duration::from_secs(30);
    while group.alive() {
        assert!(
            Instant::now() < stopped_by,
            "`{command}` left processes running 30 s after it exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut printed = String::new();
    std::fs::File::open(&log_path)
        .unwrap()
        .read_to_string(&mut printed)
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    // A Ctrl-C'd runtime dies of the signal, as a shell expects; say so as 130.
    (
        status.code().or(status.signal().map(|signal| 128 + signal)),
        printed,
    )
}

/// A command's process group, killed when the test ends however it ends (no runtime is left
/// running after a failed assertion).
struct Group(i32);

impl Group {
    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the group the test started.
        unsafe { libc::kill(-self.0, signal) };
    }

    fn alive(&self) -> bool {
        // SAFETY: signal 0 only checks that the group has a process.
        unsafe { libc::kill(-self.0, 0) == 0 }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

/// For a command stopped with Ctrl-C: the text its output must hold before SIGINT is sent.
fn wanted_line(step: &Step) -> String {
    let last = step
        .expected
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty() && l.trim() != "...")
        .unwrap_or_else(|| panic!("README.md:{}: no expected line to wait for", step.line));
    last.split("[..]").next().unwrap().trim().to_string()
}

/// Durations, the copy's path and ports as `[..]`, for `SNAPSHOTS=overwrite`.
fn redact(actual: &str) -> String {
    let patterns = [
        r"\d+(\.\d+)? ?(ms|s)\b",
        r"\d+m \d+s\b",
        r"\[ROOT\][^ )]*",
        r"127\.0\.0\.1:\d+",
    ];
    let mut text = actual.to_string();
    for pattern in patterns {
        text = regex_lite::Regex::new(pattern)
            .unwrap()
            .replace_all(&text, "[..]")
            .into_owned();
    }
    text
}

fn readme_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")
}

fn readme() -> String {
    std::fs::read_to_string(readme_path()).expect("read README.md")
}

/// The demo repository as a clone has it: bundle.toml and its directories, without build
/// leftovers of the checkout the tests run in.
fn demo_copy() -> Repo {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let repo = Repo::in_sandbox(
        &std::fs::read_to_string(source.join("bundle.toml")).unwrap(),
        &[],
    );
    for dir in ["scenarios", "resources", "platforms", "demo"] {
        common::copy_tree(&source.join(dir), &repo.join(dir));
    }
    for leftover in [
        "scenarios/picker-wheel/ui/node_modules",
        "scenarios/picker-wheel/ui/dist",
        "scenarios/notes-app/api/target",
        "scenarios/auth-service/api/target",
        "demo/greeting/build",
        "dist",
    ] {
        let _ = std::fs::remove_dir_all(repo.join(leftover));
    }
    repo
}
