//! `cargo xtask bench`: xbundle against ninja on a generated repository.
//!
//! The synthetic repository has `--tasks` tasks; task `i` concatenates its `--files` input files
//! (`--size` bytes of seeded pseudo-random text each) into `tasks/tI/out/out.txt`. Every fifth
//! task (5, 10, ...) also depends on the task before it and puts that task's output first. The
//! same tree is generated twice, side by side: `xbundle/` with a `bundle.toml`, and `ninja/` with
//! an equivalent `build.ninja` (one `cat` edge per task). Output directories exist beforehand.
//! Ninja runs one `sh -c "cat ... > out"` per task; xbundle runs the same command, `cat src/*.txt
//! > out/out.txt`, without the shell (its direct start of plain commands, see the engine's
//! `direct` module), so one row times it with `XBUNDLE_DIRECT_EXEC=0`, through `sh` as ninja.
//!
//! Scenarios, each timed wall-clock around the whole process, using the optimized binary
//! ([`crate::bench_order::build_dist`]: cargo profile `dist`, fat LTO and one codegen unit,
//! linked with the symbol ordering of `xtask/symbol-order.txt`; the table's header says so):
//! - cold: no outputs, no `.xbundle` state (no `.ninja_log`/`.ninja_deps`), as xbundle runs by
//!   default and with every command through `sh` (`XBUNDLE_DIRECT_EXEC=0`); each tool's cold
//!   run is prepared on its own and starts after a `sync(2)` (see `Runner::make_cold`);
//! - first no-op after a build (xbundle re-hashes what the build wrote: racy-clean rule);
//! - no-op, after one warm-up no-op: median and min over `--runs`;
//! - one-file change: one input of a task that has a dependent gets content never seen
//!   before; the task and its dependents rerun;
//! - one-file change to cached content: the file alternates between two contents that were
//!   both built before, so xbundle restores from its cache while ninja reruns.
//!
//! Each run's peak RSS is taken from `wait4(2)` (the tool's own, or its largest waited-for
//! child's) by a small measuring process (see [`timed`]); the table shows the largest per
//! scenario and over every run. So is its processor time (user and system, the tool's and its
//! commands'), shown beside: wall-clock time is what the goals are set on, processor time says
//! what a run cost the machine and moves less with what else runs on it. The goals checked are
//! issue 12's: no-op at most 0.8x ninja's time, one-file change 1.0x, cold 1.25x, first no-op
//! 1.2x, peak memory at most ninja's.
//! `--shapes 200x100,1000x100` runs one repository per shape (in `DIR/TASKSxFILES`),
//! `--xbundle PATH` times another xtask binary (a before/after table).
//!
//! Sanity checks are hard errors (exit 1): `ran`/`cached` counts of xbundle's build-finished
//! event, the number of edges ninja ran, output sizes, and xbundle's outputs byte-identical to
//! ninja's for every task.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use xshell::{Shell, cmd};

const USAGE: &str = "\
usage: cargo xtask bench [OPTIONS]

Generates a synthetic repository and times xbundle (its optimized build: cargo profile dist,
symbols ordered by xtask/symbol-order.txt) against ninja. `cargo xtask bench symbol-order`
regenerates that ordering (see its --help).

options:
  --tasks N         tasks to generate (default 200)
  --files N         input files per task (default 100)
  --shapes LIST     several repositories one after another, TASKSxFILES each, comma-separated
                    (`--shapes 200x100,1000x100`: the sizes issue 12's goals are set for)
  --size BYTES      bytes per input file (default 2048)
  --runs N          repetitions of the no-op and one-file-change runs (default 10)
  --cold-runs N     repetitions of each cold run (default 3)
  --jobs N          pass -j N to both xbundle and ninja (default: each tool's own default)
  --dir DIR         generate under DIR and keep it (default: a temporary directory)
  --xbundle PATH    time this xtask binary instead of the optimized build of this tree (e.g.
                    another revision's, for a before/after table)
  --json            also print the numbers as one JSON object (last line of stdout)
  -h, --help        this text

exit codes: 0 done (goals met or not), 1 a sanity check failed, 2 usage, 3 I/O error";

/// Prefix of each line ninja prints when it starts an edge (through `NINJA_STATUS`).
const NINJA_MARK: &str = "@@edge ";

#[derive(Debug)]
pub(crate) enum Failure {
    Usage(String),
    /// A sanity check failed: the numbers cannot be trusted.
    Sanity(String),
    Other(String),
}

impl From<io::Error> for Failure {
    fn from(err: io::Error) -> Failure {
        Failure::Other(err.to_string())
    }
}

impl From<xshell::Error> for Failure {
    fn from(err: xshell::Error) -> Failure {
        Failure::Other(err.to_string())
    }
}

type Result<T, E = Failure> = std::result::Result<T, E>;

fn sanity<T>(message: impl Into<String>) -> Result<T> {
    Err(Failure::Sanity(message.into()))
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    if args.first().is_some_and(|first| first == MEASURE) {
        let mut args = args.into_iter();
        args.next();
        return measure_main(args);
    }
    let result = Options::parse(args).and_then(|options| match options {
        None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(options) => run(&options),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}\n\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Sanity(message)) => {
            eprintln!("error: sanity check failed: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Other(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(3)
        }
    }
}

#[derive(Debug)]
struct Options {
    /// (tasks, files per task) of each repository, in order.
    shapes: Vec<(usize, usize)>,
    size: usize,
    runs: usize,
    cold_runs: usize,
    jobs: Option<usize>,
    dir: Option<PathBuf>,
    /// `--xbundle`: the binary timed instead of this tree's optimized build.
    xbundle: Option<PathBuf>,
    json: bool,
}

impl Options {
    /// `None` for `--help`.
    fn parse(args: Vec<OsString>) -> Result<Option<Options>> {
        let (mut tasks, mut files, mut shapes) = (200, 100, None);
        let mut options = Options {
            shapes: Vec::new(),
            size: 2048,
            runs: 10,
            cold_runs: 3,
            jobs: None,
            dir: None,
            xbundle: None,
            json: false,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let arg = arg
                .into_string()
                .map_err(|arg| Failure::Usage(format!("{} is not UTF-8", arg.display())))?;
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value)),
                _ => (arg.clone(), None),
            };
            let mut value = || -> Result<OsString> {
                match inline {
                    Some(value) => Ok(value.into()),
                    None => args
                        .next()
                        .ok_or_else(|| Failure::Usage(format!("{flag} needs a value"))),
                }
            };
            let mut number = |min: usize| -> Result<usize> {
                let text = value()?;
                let parsed = text.to_str().and_then(|t| t.parse::<usize>().ok());
                match parsed {
                    Some(n) if n >= min => Ok(n),
                    _ => Err(Failure::Usage(format!(
                        "{flag} takes a whole number >= {min}, not `{}`",
                        text.display()
                    ))),
                }
            };
            match flag.as_str() {
                "--tasks" => tasks = number(1)?,
                "--files" => files = number(1)?,
                "--shapes" => {
                    let text = value()?;
                    let parsed = text.to_str().and_then(parse_shapes);
                    match parsed {
                        Some(list) => shapes = Some(list),
                        None => {
                            return Err(Failure::Usage(format!(
                                "--shapes takes TASKSxFILES[,TASKSxFILES...] (whole numbers >= 1), not `{}`",
                                text.display()
                            )));
                        }
                    }
                }
                "--size" => options.size = number(1)?,
                "--runs" => options.runs = number(1)?,
                "--cold-runs" => options.cold_runs = number(1)?,
                "--jobs" | "-j" => options.jobs = Some(number(1)?),
                "--dir" => options.dir = Some(PathBuf::from(value()?)),
                "--xbundle" => options.xbundle = Some(PathBuf::from(value()?)),
                "--json" if inline.is_none() => options.json = true,
                "-h" | "--help" => return Ok(None),
                _ => return Err(Failure::Usage(format!("unexpected argument `{arg}`"))),
            }
        }
        options.shapes = shapes.unwrap_or_else(|| vec![(tasks, files)]);
        Ok(Some(options))
    }
}

/// `200x100,1000x100` -> `[(200, 100), (1000, 100)]`; `None` when malformed.
fn parse_shapes(text: &str) -> Option<Vec<(usize, usize)>> {
    text.split(',')
        .map(|shape| {
            let (tasks, files) = shape.trim().split_once('x')?;
            let tasks = tasks.parse::<usize>().ok().filter(|&n| n >= 1)?;
            let files = files.parse::<usize>().ok().filter(|&n| n >= 1)?;
            Some((tasks, files))
        })
        .collect()
}

/// The generated task graph.
pub(crate) struct Graph {
    tasks: usize,
    files: usize,
    size: usize,
    task_width: usize,
    file_width: usize,
}

impl Graph {
    fn new(options: &Options, tasks: usize, files: usize) -> Graph {
        Graph::with_size(tasks, files, options.size)
    }

    /// `tasks` tasks of `files` input files of `size` bytes each.
    pub(crate) fn with_size(tasks: usize, files: usize, size: usize) -> Graph {
        let digits = |n: usize| n.saturating_sub(1).max(1).ilog10() as usize + 1;
        Graph {
            tasks,
            files,
            size,
            task_width: digits(tasks).max(4),
            file_width: digits(files).max(3),
        }
    }

    fn name(&self, task: usize) -> String {
        format!("t{task:0width$}", width = self.task_width)
    }

    fn file_name(&self, file: usize) -> String {
        format!("f{file:0width$}.txt", width = self.file_width)
    }

    /// Every fifth task depends on the one before it.
    fn dep(&self, task: usize) -> Option<usize> {
        (task > 0 && task.is_multiple_of(5)).then(|| task - 1)
    }

    pub(crate) fn input(&self, task: usize, file: usize) -> String {
        format!("tasks/{}/src/{}", self.name(task), self.file_name(file))
    }

    fn output(&self, task: usize) -> String {
        format!("tasks/{}/out/out.txt", self.name(task))
    }

    fn output_len(&self, task: usize) -> usize {
        self.files * self.size + self.dep(task).map_or(0, |dep| self.output_len(dep))
    }

    /// `changed` and every task that depends on it, directly or not.
    fn downstream(&self, changed: usize) -> Vec<usize> {
        let mut affected = vec![false; self.tasks];
        affected[changed] = true;
        // Dependencies always point to lower indices: one forward pass is a full closure.
        for task in changed + 1..self.tasks {
            if let Some(dep) = self.dep(task) {
                affected[task] = affected[dep];
            }
        }
        (0..self.tasks).filter(|&task| affected[task]).collect()
    }

    /// The task whose input the one-file scenarios change: the middle task that has a
    /// dependent (so the change propagates), or the middle task.
    pub(crate) fn changed_task(&self) -> usize {
        (0..=self.tasks / 2)
            .rev()
            .find(|&task| task + 1 < self.tasks && self.dep(task + 1) == Some(task))
            .unwrap_or(self.tasks / 2)
    }

    fn bundle_toml(&self) -> String {
        let mut text = String::from("# Generated by `cargo xtask bench`.\n");
        for task in 0..self.tasks {
            let name = self.name(task);
            let (first, deps) = match self.dep(task) {
                Some(dep) => (
                    format!("../{}/out/out.txt ", self.name(dep)),
                    format!("deps = [\"{}\"]\n", self.name(dep)),
                ),
                None => (String::new(), String::new()),
            };
            text.push_str(&format!(
                "\n[tasks.{name}]\ncwd = \"tasks/{name}\"\nrun = \"cat {first}src/*.txt > out/out.txt\"\n\
                 inputs = [\"src/*.txt\"]\noutputs = [\"out/out.txt\"]\n{deps}"
            ));
        }
        text
    }

    fn build_ninja(&self) -> String {
        let mut text = String::from(
            "# Generated by `cargo xtask bench`.\nrule cat\n  command = cat $in > $out\n  description = CAT $out\n",
        );
        for task in 0..self.tasks {
            text.push_str(&format!("\nbuild {}: cat", self.output(task)));
            if let Some(dep) = self.dep(task) {
                text.push_str(&format!(" {}", self.output(dep)));
            }
            for file in 0..self.files {
                text.push_str(&format!(" $\n    {}", self.input(task, file)));
            }
            text.push('\n');
        }
        text
    }
}

/// `size` bytes of deterministic pseudo-random text (words and lines) from `seed` (xorshift64).
fn content(seed: u64, size: usize) -> Vec<u8> {
    let mut state = (seed ^ 0x2545_f491_4f6c_dd1d).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(size + 16);
    let mut column = 0;
    while out.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let word = 1 + (state % 8) as usize;
        for letter in 0..word {
            out.push(b'a' + ((state >> (8 + 5 * letter)) % 26) as u8);
        }
        column += word + 1;
        if column > 72 {
            out.push(b'\n');
            column = 0;
        } else {
            out.push(b' ');
        }
    }
    out.truncate(size);
    if let Some(last) = out.last_mut() {
        *last = b'\n';
    }
    out
}

/// Variant 0 is the generated content; other variants are the one-file-change contents.
fn seed(task: usize, file: usize, variant: u64) -> u64 {
    ((task as u64) << 32) ^ file as u64 ^ (variant << 56)
}

/// Writes both trees (the ninja one when `ninja_root` is given).
pub(crate) fn generate(
    graph: &Graph,
    xbundle_root: &Path,
    ninja_root: Option<&Path>,
) -> Result<()> {
    let roots: Vec<&Path> = std::iter::once(xbundle_root).chain(ninja_root).collect();
    for root in &roots {
        if root.exists() {
            fs::remove_dir_all(root)?;
        }
    }
    for task in 0..graph.tasks {
        for root in &roots {
            let dir = root.join("tasks").join(graph.name(task));
            fs::create_dir_all(dir.join("src"))?;
            fs::create_dir_all(dir.join("out"))?;
        }
        for file in 0..graph.files {
            let bytes = content(seed(task, file, 0), graph.size);
            for root in &roots {
                fs::write(root.join(graph.input(task, file)), &bytes)?;
            }
        }
    }
    fs::write(xbundle_root.join("bundle.toml"), graph.bundle_toml())?;
    if let Some(root) = ninja_root {
        fs::write(root.join("build.ninja"), graph.build_ninja())?;
    }
    Ok(())
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// The build-finished counts of one xbundle run.
#[derive(Clone, Copy, Debug)]
struct Finished {
    ran: u64,
    cached: u64,
}

/// Runs the two tools on their trees.
struct Runner {
    sh: Shell,
    xtask: PathBuf,
    xbundle_root: PathBuf,
    /// `None` when ninja is not installed.
    ninja_root: Option<PathBuf>,
    jobs: Vec<String>,
    tasks: u64,
}

impl Runner {
    /// One run of xbundle, with its default durability; `through_sh` starts every command
    /// through `sh` (`XBUNDLE_DIRECT_EXEC=0`), as ninja does.
    fn xbundle(&self, through_sh: bool) -> Result<(Measured, Finished)> {
        let Runner {
            sh,
            xtask,
            xbundle_root: root,
            jobs,
            ..
        } = self;
        let mut command = cmd!(
            sh,
            "{xtask} --root {root} --message-format json task {jobs...}"
        )
        .env_remove("XBUNDLE_CACHE_DIR")
        .env_remove("XBUNDLE_FSYNC")
        .quiet()
        .ignore_status();
        command = if through_sh {
            command.env("XBUNDLE_DIRECT_EXEC", "0")
        } else {
            command.env_remove("XBUNDLE_DIRECT_EXEC")
        };
        let (ms, stdout) = timed("xbundle", command)?;
        let finished = stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|event| event["event"] == "build-finished");
        let Some(event) = finished else {
            return sanity(format!(
                "xbundle printed no build-finished event:\n{}",
                tail(&stdout)
            ));
        };
        let count = |field: &str| event[field].as_u64();
        match (count("ran"), count("cached"), count("failed")) {
            (Some(ran), Some(cached), Some(0)) => Ok((ms, Finished { ran, cached })),
            _ => sanity(format!("unexpected build-finished event: {event}")),
        }
    }

    fn expect_xbundle(&self, through_sh: bool, ran: u64, what: &str) -> Result<Measured> {
        let (measured, finished) = self.xbundle(through_sh)?;
        let cached = self.tasks - ran;
        if finished.ran != ran || finished.cached != cached {
            return sanity(format!(
                "{what}: xbundle reported ran={} cached={}, expected ran={ran} cached={cached}",
                finished.ran, finished.cached
            ));
        }
        Ok(measured)
    }

    /// Runs ninja; returns its time and peak RSS and how many edges it started.
    fn ninja(&self) -> Result<Option<(Measured, u64)>> {
        let Some(root) = &self.ninja_root else {
            return Ok(None);
        };
        let jobs = &self.jobs;
        let command = cmd!(self.sh, "ninja -C {root} {jobs...}")
            .env("NINJA_STATUS", NINJA_MARK)
            .quiet()
            .ignore_status();
        let (ms, stdout) = timed("ninja", command)?;
        let edges = stdout
            .lines()
            .filter(|line| line.starts_with(NINJA_MARK))
            .count();
        Ok(Some((ms, edges as u64)))
    }

    fn expect_ninja(&self, edges: u64, what: &str) -> Result<Option<Measured>> {
        match self.ninja()? {
            Some((_, ran)) if ran != edges => {
                sanity(format!("{what}: ninja ran {ran} edge(s), expected {edges}"))
            }
            timed => Ok(timed.map(|(ms, _)| ms)),
        }
    }

    fn roots(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.xbundle_root).chain(&self.ninja_root)
    }

    /// Deletes every output and both tools' state, then flushes the file systems (`sync(2)`),
    /// so the timed run that follows starts on a quiet disk: it pays neither for writing back
    /// these deletions (with `discard`, a trim of every freed extent) nor for the previous
    /// run's unwritten outputs, which a tool that flushes at its end (xbundle's default) would
    /// otherwise wait for and one that does not (ninja) would only compete with.
    fn make_cold(&self, graph: &Graph) -> Result<()> {
        self.make_cold_one(graph, true)?;
        self.make_cold_one(graph, false)
    }

    /// [`Runner::make_cold`] of one tool's tree (xbundle's or ninja's), leaving the other's
    /// outputs for the comparison.
    fn make_cold_one(&self, graph: &Graph, xbundle: bool) -> Result<()> {
        let root = if xbundle {
            Some(&self.xbundle_root)
        } else {
            self.ninja_root.as_ref()
        };
        let Some(root) = root else {
            return Ok(());
        };
        for task in 0..graph.tasks {
            remove_if_exists(&root.join(graph.output(task)))?;
        }
        if xbundle {
            let state = root.join(".xbundle");
            if state.exists() {
                fs::remove_dir_all(state)?;
            }
        } else {
            remove_if_exists(&root.join(".ninja_log"))?;
            remove_if_exists(&root.join(".ninja_deps"))?;
        }
        // SAFETY: sync(2) takes no arguments and cannot fail.
        unsafe { libc::sync() };
        Ok(())
    }

    /// Gives one input file new content in both trees.
    fn write_input(&self, graph: &Graph, task: usize, file: usize, variant: u64) -> Result<()> {
        // Stay clear of the file system's timestamp tick: ninja compares mtimes with `>`.
        std::thread::sleep(Duration::from_millis(20));
        let bytes = content(seed(task, file, variant), graph.size);
        for root in self.roots() {
            fs::write(root.join(graph.input(task, file)), &bytes)?;
        }
        Ok(())
    }

    /// Checks the outputs of `tasks`: expected size, and identical in both trees.
    fn compare(&self, graph: &Graph, tasks: impl IntoIterator<Item = usize>) -> Result<()> {
        for task in tasks {
            let path = graph.output(task);
            let ours = fs::read(self.xbundle_root.join(&path))
                .map_err(|err| Failure::Sanity(format!("xbundle's {path}: {err}")))?;
            if ours.len() != graph.output_len(task) {
                return sanity(format!(
                    "xbundle's {path} has {} bytes, expected {}",
                    ours.len(),
                    graph.output_len(task)
                ));
            }
            if let Some(root) = &self.ninja_root {
                let theirs = fs::read(root.join(&path))
                    .map_err(|err| Failure::Sanity(format!("ninja's {path}: {err}")))?;
                if ours != theirs {
                    return sanity(format!("{path} differs between xbundle and ninja"));
                }
            }
        }
        Ok(())
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// One finished run of a tool: its wall-clock time, its processor time and its peak resident
/// set size.
#[derive(Clone, Copy, Debug)]
struct Measured {
    ms: f64,
    /// User and system time in ms of the tool and of the children it waited for (its commands),
    /// as `wait4(2)` reports it: what the run cost the machine, where `ms` is what it cost the
    /// one waiting. A tool that works on several cores has more of it than wall-clock time.
    cpu_ms: f64,
    /// Peak RSS in KiB of the process (the largest of it and the children it waited for, as
    /// `wait4(2)` reports it: `cat` and `sh` are far smaller than either tool).
    rss_kib: u64,
}

/// Runs `command`, timing it and taking its peak RSS, through a fresh copy of this binary
/// ([`measure_main`]) that spawns it and reports what `wait4(2)` said (so nothing but the tool
/// itself is timed: no `/usr/bin/time` in between). A failure is a sanity error showing the end
/// of its output.
///
/// Why not spawn and `wait4` the tool from here: a process's peak RSS includes the image it was
/// forked (or `vfork`ed) from, up to its `exec` (Linux records the old image's high-water mark
/// at `exec`), so every tool spawned by this process with `posix_spawn` would show at least
/// this process's own peak, ~16 MiB, more than ninja's. The measuring process is spawned first
/// and forks the tool while small; its anonymous memory at that moment is the floor below which
/// no figure means anything, reported by [`rss_floor_kib`].
fn timed(tool: &str, command: xshell::Cmd<'_>) -> Result<(Measured, String)> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let inner = Command::from(command);
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["bench", MEASURE])
        .arg(inner.get_program())
        .args(inner.get_args());
    for (key, value) in inner.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    if let Some(dir) = inner.get_current_dir() {
        command.current_dir(dir);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn()?;
    let mut stdout_pipe = child.stdout.take().expect("piped");
    let mut stderr_pipe = child.stderr.take().expect("piped");
    let stderr_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr_pipe.read_to_end(&mut bytes);
        bytes
    });
    let mut stdout = Vec::new();
    stdout_pipe.read_to_end(&mut stdout)?;
    let measurer = child.wait()?;
    let stderr = stderr_reader.join().unwrap_or_default();
    let mut stdout = String::from_utf8_lossy(&stdout).into_owned();
    // The measurer's report is the last line of the shared stdout, after a newline of its own.
    let reported = match stdout.rfind(REPORT_MARK) {
        Some(at) => {
            let reported = stdout.split_off(at)[REPORT_MARK.len()..].to_string();
            stdout.pop();
            reported
        }
        None => String::new(),
    };
    let fields: Vec<&str> = reported.split_whitespace().collect();
    let parsed = match fields.as_slice() {
        [status, ms, cpu, rss, floor] => status
            .parse::<i32>()
            .ok()
            .zip(ms.parse::<f64>().ok().zip(cpu.parse::<f64>().ok()))
            .zip(rss.parse::<u64>().ok().zip(floor.parse::<u64>().ok())),
        _ => None,
    };
    let Some(((status, (ms, cpu_ms)), (rss_kib, floor_kib))) = parsed else {
        return sanity(format!(
            "measuring {tool} failed ({measurer}):\n{}",
            tail(&String::from_utf8_lossy(&stderr))
        ));
    };
    RSS_FLOOR_KIB.fetch_max(floor_kib, std::sync::atomic::Ordering::Relaxed);
    if status != 0 {
        return sanity(format!(
            "{tool} exited with wait status {status}:\n{}{}",
            tail(&stdout),
            tail(&String::from_utf8_lossy(&stderr))
        ));
    }
    Ok((
        Measured {
            ms,
            cpu_ms,
            rss_kib,
        },
        stdout,
    ))
}

/// The hidden first argument of `cargo xtask bench` that makes it [`measure_main`].
const MEASURE: &str = "__measure";

/// The largest peak RSS a measuring process had when it spawned its tool.
static RSS_FLOOR_KIB: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Below this peak RSS (KiB) a figure says only that the tool is this small or smaller.
fn rss_floor_kib() -> u64 {
    RSS_FLOOR_KIB.load(std::sync::atomic::Ordering::Relaxed)
}

/// What precedes the measuring process's report on the stdout it shares with its tool.
const REPORT_MARK: &str = "\n@@xbundle-bench-measured ";

/// `bench __measure PROGRAM ARGS...`: spawns the program with this process's stdio, waits for
/// it, and prints `<wait status> <ms> <CPU ms> <peak RSS KiB> <floor KiB>` after
/// [`REPORT_MARK`] on that stdout, once the program has ended (nothing written anywhere else).
/// Does as little as it can before the spawn: its anonymous memory then is the tool's floor.
fn measure_main(mut args: std::vec::IntoIter<OsString>) -> ExitCode {
    let Some(program) = args.next() else {
        eprintln!("usage: cargo xtask bench {MEASURE} PROGRAM [ARGS...]");
        return ExitCode::from(2);
    };
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(program);
    command.args(args);
    // A `pre_exec` hook makes std `fork` instead of `posix_spawn` (a `vfork`): a forked child's
    // image holds only this process's anonymous pages (file mappings are faulted in anew), so
    // the tool starts from a high-water mark of this process's anonymous memory, not all of it.
    // SAFETY: the hook does nothing (async-signal-safe trivially).
    unsafe {
        command.pre_exec(|| Ok(()));
    }
    let floor = own_rss_kib("RssAnon:");
    let started = Instant::now();
    let measured = command.spawn().and_then(|child| wait4(child.id()));
    let ms = millis(started.elapsed());
    match measured {
        Ok(Waited {
            status,
            cpu_ms,
            rss_kib,
        }) => {
            println!("{REPORT_MARK}{status} {ms} {cpu_ms} {rss_kib} {floor}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: running the measured program: {err}");
            ExitCode::from(3)
        }
    }
}

/// A field of this process's `/proc/self/status` in KiB (`RssAnon:`), 0 when unknown.
fn own_rss_kib(field: &str) -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// What [`wait4`] reports of a child.
struct Waited {
    /// The raw wait status (0: exited with 0).
    status: i32,
    /// User and system time of the child and of the children it waited for.
    cpu_ms: f64,
    /// Peak RSS in KiB (the largest of the child and of the children it waited for).
    rss_kib: u64,
}

/// Waits for the child `pid` (reaping it: its `Child` must not be waited for again).
fn wait4(pid: u32) -> io::Result<Waited> {
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value of the plain C struct wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 on our own child, with pointers to two live locals.
        let done = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if done == pid as libc::pid_t {
            let ms =
                |time: libc::timeval| time.tv_sec as f64 * 1000.0 + time.tv_usec as f64 / 1000.0;
            return Ok(Waited {
                status,
                cpu_ms: ms(usage.ru_utime) + ms(usage.ru_stime),
                rss_kib: usage.ru_maxrss.max(0) as u64,
            });
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = lines[lines.len().saturating_sub(20)..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    }
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Timings and peak RSS of one scenario; `ninja` is empty when ninja is not installed.
#[derive(Default)]
struct Samples {
    xbundle: Vec<Measured>,
    ninja: Vec<Measured>,
}

impl Samples {
    fn push(&mut self, xbundle: Measured, ninja: Option<Measured>) {
        self.xbundle.push(xbundle);
        self.ninja.extend(ninja);
    }

    fn ms(measured: &[Measured]) -> Vec<f64> {
        measured.iter().map(|m| m.ms).collect()
    }

    fn cpu_ms(measured: &[Measured]) -> Vec<f64> {
        measured.iter().map(|m| m.cpu_ms).collect()
    }

    fn rss_mib(measured: &[Measured]) -> Vec<f64> {
        measured.iter().map(|m| m.rss_kib as f64 / 1024.0).collect()
    }
}

struct Row {
    name: String,
    xbundle: f64,
    ninja: Option<f64>,
    /// Processor time in ms ([`Measured::cpu_ms`]), by the same statistic as the times.
    xbundle_cpu: f64,
    ninja_cpu: Option<f64>,
    /// Peak RSS in MiB, the largest of the scenario's runs.
    xbundle_mib: f64,
    ninja_mib: Option<f64>,
}

impl Row {
    fn new(name: impl Into<String>, samples: &Samples, stat: fn(&[f64]) -> f64) -> Row {
        let time = |measured: &[Measured]| stat(&Samples::ms(measured));
        let cpu = |measured: &[Measured]| stat(&Samples::cpu_ms(measured));
        let peak = |measured: &[Measured]| max(&Samples::rss_mib(measured));
        // ninja's figure, when ninja ran.
        let ninja = |figure: &dyn Fn(&[Measured]) -> f64| {
            (!samples.ninja.is_empty()).then(|| figure(&samples.ninja))
        };
        Row {
            name: name.into(),
            xbundle: time(&samples.xbundle),
            ninja: ninja(&time),
            xbundle_cpu: cpu(&samples.xbundle),
            ninja_cpu: ninja(&cpu),
            xbundle_mib: peak(&samples.xbundle),
            ninja_mib: ninja(&peak),
        }
    }

    fn ratio(&self) -> Option<f64> {
        self.ninja.map(|ninja| self.xbundle / ninja)
    }
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}

fn progress(message: &str) {
    eprintln!("bench: {message}");
}

fn ninja_version(sh: &Shell) -> Option<String> {
    cmd!(sh, "ninja --version")
        .quiet()
        .ignore_stderr()
        .read()
        .ok()
}

/// The 1-minute load average, to show how busy the machine was.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// Builds the release `xtask` and runs `xtask bench MODE ARGS…` with it (a benchmark run from
/// a debug build measures the release code); its exit code.
/// The end of a bench subcommand whose arguments are parsed: from a debug build, the same
/// command again in release ([`rerun_in_release`]); else `run`, a failure reported as
/// `bench MODE: why` and exit 1.
pub(crate) fn run_released(
    mode: &str,
    args: &[std::ffi::OsString],
    run: impl FnOnce() -> Result<(), String>,
) -> std::process::ExitCode {
    if cfg!(debug_assertions) {
        return rerun_in_release(mode, args);
    }
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench {mode}: {err}");
            std::process::ExitCode::from(1)
        }
    }
}

pub(crate) fn rerun_in_release(mode: &str, args: &[std::ffi::OsString]) -> std::process::ExitCode {
    use std::process::{Command, ExitCode};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    eprintln!("building the release binary (cargo build --release -p xtask)");
    let built = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "-p", "xtask"])
        .current_dir(&root)
        .status();
    if !built.is_ok_and(|status| status.success()) {
        eprintln!("bench {mode}: the release build failed");
        return ExitCode::from(1);
    }
    let status = Command::new(release_xtask(&root))
        .args(["bench", mode])
        .args(args)
        .status();
    match status {
        Ok(status) => ExitCode::from(status.code().unwrap_or(1) as u8),
        Err(err) => {
            eprintln!("bench {mode}: {err}");
            ExitCode::from(1)
        }
    }
}

/// The release `xtask` that `cargo build --release -p xtask` in `workspace` makes (its
/// target directory: `CARGO_TARGET_DIR`, relative to the workspace, or `target/`).
pub(crate) fn release_xtask(workspace: &Path) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), |dir| workspace.join(dir));
    target.join("release").join("xtask")
}

fn run(options: &Options) -> Result<()> {
    let sh = Shell::new()?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ is inside the workspace")
        .to_path_buf();
    sh.change_dir(&workspace);

    let (xtask, build) = match &options.xbundle {
        Some(path) => (path.canonicalize()?, "--xbundle".to_string()),
        None => crate::bench_order::build_dist(&workspace).map_err(Failure::Other)?,
    };
    if !xtask.is_file() {
        return Err(Failure::Other(format!("{} was not built", xtask.display())));
    }

    // Which code and which build of it is timed: `5cafd31 (cargo profile dist, ...)`.
    let revision = match &options.xbundle {
        Some(_) => format!("{} ({build})", xtask.display()),
        None => {
            let described = cmd!(sh, "git describe --always --dirty")
                .quiet()
                .ignore_stderr()
                .read()
                .unwrap_or_else(|_| "unknown".into());
            format!("{described} ({build})")
        }
    };
    let ninja = ninja_version(&sh);
    if ninja.is_none() {
        progress(
            "ninja not found: skipping the comparison (apt-get install ninja-build to enable it)",
        );
    }

    let temp;
    let base = match &options.dir {
        Some(dir) => {
            fs::create_dir_all(dir)?;
            dir.canonicalize()?
        }
        None => {
            temp = sh.create_temp_dir()?;
            temp.path().to_path_buf()
        }
    };
    let mut all_met = true;
    for &(tasks, files) in &options.shapes {
        let dir = if options.shapes.len() == 1 {
            base.clone()
        } else {
            base.join(format!("{tasks}x{files}"))
        };
        let runner = Runner {
            sh: sh.clone(),
            xtask: xtask.clone(),
            xbundle_root: dir.join("xbundle"),
            ninja_root: ninja.as_ref().map(|_| dir.join("ninja")),
            jobs: options
                .jobs
                .map(|jobs| vec!["-j".to_string(), jobs.to_string()])
                .unwrap_or_default(),
            tasks: tasks as u64,
        };
        let graph = Graph::new(options, tasks, files);
        all_met &= run_shape(options, &graph, &runner, &revision, ninja.as_deref(), &dir)?;
    }
    if options.shapes.len() > 1 {
        println!(
            "\nall goals {} across {} repositories",
            if all_met { "met" } else { "NOT met" },
            options.shapes.len()
        );
    }
    if options.dir.is_some() {
        progress(&format!("kept the repositories in {}", base.display()));
    }
    Ok(())
}

/// Times every scenario on one generated repository and prints its table (and its JSON line
/// with `--json`); whether every goal was met.
fn run_shape(
    options: &Options,
    graph: &Graph,
    runner: &Runner,
    revision: &str,
    ninja: Option<&str>,
    dir: &Path,
) -> Result<bool> {
    let load_before = load_average();
    progress(&format!(
        "generating {} tasks x {} files x {} bytes in {}",
        graph.tasks,
        graph.files,
        graph.size,
        dir.display()
    ));
    generate(graph, &runner.xbundle_root, runner.ninja_root.as_deref())?;

    let all = graph.tasks as u64;
    let changed = graph.changed_task();
    let changed_file = graph.files / 2;
    let downstream = graph.downstream(changed);
    let affected = downstream.len() as u64;

    let mut cold = Samples::default();
    let mut cold_through_sh = Samples::default();
    for rep in 0..options.cold_runs {
        progress(&format!("cold run {}/{}", rep + 1, options.cold_runs));
        runner.make_cold_one(graph, true)?;
        let measured = runner.expect_xbundle(false, all, "cold run")?;
        runner.make_cold_one(graph, true)?;
        let through_sh = runner.expect_xbundle(true, all, "cold run, XBUNDLE_DIRECT_EXEC=0")?;
        runner.make_cold_one(graph, false)?;
        let ninja_measured = runner.expect_ninja(all, "cold run")?;
        runner.compare(graph, 0..graph.tasks)?;
        cold.push(measured, ninja_measured);
        cold_through_sh.push(through_sh, ninja_measured);
    }

    progress("no-op runs");
    // The first no-op after each cold build: xbundle re-hashes what the build wrote (racy-clean
    // rule). Measured once per cold run above (the last one left the tree built) and once more
    // after a fresh cold build per extra sample, so the median has `cold_runs` samples.
    let mut first_noop = Samples::default();
    for rep in 0..options.cold_runs {
        if rep > 0 {
            runner.make_cold(graph)?;
            runner.expect_xbundle(false, all, "cold run")?;
            runner.expect_ninja(all, "cold run")?;
        }
        first_noop.push(
            runner.expect_xbundle(false, 0, "first no-op")?,
            runner.expect_ninja(0, "first no-op")?,
        );
    }
    runner.expect_xbundle(false, 0, "warm-up no-op")?;
    runner.expect_ninja(0, "warm-up no-op")?;
    let mut noop = Samples::default();
    for _ in 0..options.runs {
        noop.push(
            runner.expect_xbundle(false, 0, "no-op")?,
            runner.expect_ninja(0, "no-op")?,
        );
    }

    let target = format!("{}/{}", graph.name(changed), graph.file_name(changed_file));
    progress(&format!(
        "one-file changes to {target} ({affected} task(s) downstream)"
    ));
    let mut change = Samples::default();
    for rep in 0..options.runs {
        runner.write_input(graph, changed, changed_file, rep as u64 + 1)?;
        change.push(
            runner.expect_xbundle(false, affected, "one-file change")?,
            runner.expect_ninja(affected, "one-file change")?,
        );
        runner.compare(graph, downstream.iter().copied())?;
    }
    // Both contents were built before (variant 0 by the cold run, variant 1 by the first
    // change above): xbundle restores them from its cache, ninja runs the edges.
    let mut change_cached = Samples::default();
    for rep in 0..options.runs {
        runner.write_input(graph, changed, changed_file, rep as u64 % 2)?;
        change_cached.push(
            runner.expect_xbundle(false, 0, "one-file change to cached content")?,
            runner.expect_ninja(affected, "one-file change to cached content")?,
        );
        runner.compare(graph, downstream.iter().copied())?;
    }
    runner.compare(graph, 0..graph.tasks)?;

    let runs = options.runs;
    let cold_runs = options.cold_runs;
    let rows = [
        Row::new(format!("cold (median of {cold_runs})"), &cold, median),
        Row::new(
            format!("cold, commands through sh (median of {cold_runs})"),
            &cold_through_sh,
            median,
        ),
        Row::new(
            format!("first no-op after the build (median of {cold_runs})"),
            &first_noop,
            median,
        ),
        Row::new(format!("no-op (median of {runs})"), &noop, median),
        Row::new(format!("no-op (min of {runs})"), &noop, min),
        Row::new(
            format!("one-file change (median of {runs})"),
            &change,
            median,
        ),
        Row::new(format!("one-file change (min of {runs})"), &change, min),
        Row::new(
            format!("one-file change, cached content (median of {runs})"),
            &change_cached,
            median,
        ),
    ];
    // Peak memory over every run of the shape, each tool's largest.
    let every = [
        &cold,
        &cold_through_sh,
        &first_noop,
        &noop,
        &change,
        &change_cached,
    ];
    let peak = |pick: fn(&Samples) -> &Vec<Measured>| {
        every
            .iter()
            .map(|samples| max(&Samples::rss_mib(pick(samples))))
            .fold(0.0, f64::max)
    };
    let xbundle_mib = peak(|samples| &samples.xbundle);
    let ninja_mib = ninja.map(|_| peak(|samples| &samples.ninja));
    let memory_ratio = ninja_mib.map(|ninja| xbundle_mib / ninja);
    // The goals of issue 12 (item 6), on ratios to ninja's time in the same run.
    let goals: [(&str, Option<f64>, f64); 5] = [
        ("no-op at most 0.8x ninja", rows[3].ratio(), 0.8),
        ("one-file change at most 1.0x ninja", rows[5].ratio(), 1.0),
        ("cold at most 1.25x ninja", rows[0].ratio(), 1.25),
        (
            "first no-op after the build at most 1.2x ninja",
            rows[2].ratio(),
            1.2,
        ),
        ("peak memory at most ninja's", memory_ratio, 1.0),
    ];

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut text = format!(
        "\nxbundle bench: {} tasks x {} files x {} bytes ({} input files), every 5th task depends on the previous one\n\
         xbundle {revision}; machine: {cpus} CPU(s), load average {load_before} before / {} after; jobs: {}; ninja: {}\n\
         one-file change: {target}, {affected} task(s) downstream ({})\n\n",
        graph.tasks,
        graph.files,
        graph.size,
        graph.tasks * graph.files,
        load_average(),
        options
            .jobs
            .map_or("each tool's default".to_string(), |j| j.to_string()),
        ninja.unwrap_or("not installed, comparison skipped"),
        downstream
            .iter()
            .map(|&t| graph.name(t))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let width = rows.iter().map(|row| row.name.len()).max().unwrap_or(0);
    text.push_str(&format!(
        "{:<width$}  {:>10}  {:>10}  {:>7}  {:>11}  {:>9}  {:>11}  {:>9}\n",
        "scenario",
        "xbundle ms",
        "ninja ms",
        "ratio",
        "xbundle MiB",
        "ninja MiB",
        "xbundle CPU",
        "ninja CPU"
    ));
    let or_dash =
        |value: Option<f64>, format: &dyn Fn(f64) -> String| value.map_or("-".to_string(), format);
    for row in &rows {
        text.push_str(&format!(
            "{:<width$}  {:>10.1}  {:>10}  {:>7}  {:>11.1}  {:>9}  {:>11.1}  {:>9}\n",
            row.name,
            row.xbundle,
            or_dash(row.ninja, &|ms| format!("{ms:.1}")),
            or_dash(row.ratio(), &|r| format!("{r:.2}x")),
            row.xbundle_mib,
            or_dash(row.ninja_mib, &|mib| format!("{mib:.1}")),
            row.xbundle_cpu,
            or_dash(row.ninja_cpu, &|ms| format!("{ms:.1}")),
        ));
    }
    text.push_str(&format!(
        "{:<width$}  {:>10}  {:>10}  {:>7}  {:>11.1}  {:>9}\n\n",
        "peak RSS over every run",
        "",
        "",
        or_dash(memory_ratio, &|r| format!("{r:.2}x")),
        xbundle_mib,
        or_dash(ninja_mib, &|mib| format!("{mib:.1}")),
    ));
    text.push_str(&format!(
        "(peak RSS is measured by a process that was {:.1} MiB when it spawned each tool: \
         a figure at or below that says only \"this small or smaller\"; CPU is user and \
         system ms of the tool and the commands it waited for, by the row's statistic)\n\n",
        rss_floor_kib() as f64 / 1024.0
    ));
    let mut met_all = true;
    for (name, ratio, limit) in &goals {
        let verdict = match ratio {
            Some(ratio) if ratio <= limit => format!("{ratio:.2}x  met"),
            Some(ratio) => {
                met_all = false;
                format!("{ratio:.2}x  NOT met")
            }
            None => {
                met_all = false;
                "not measured (no ninja)".into()
            }
        };
        text.push_str(&format!("goal: {name:<48} {verdict}\n"));
    }
    print!("{text}");

    if options.json {
        let report = json!({
            "tasks": graph.tasks,
            "files": graph.files,
            "size": graph.size,
            "runs": runs,
            "cold_runs": cold_runs,
            "jobs": options.jobs,
            "revision": revision,
            "cpus": cpus,
            "load_average": [load_before, load_average()],
            "ninja": ninja,
            "changed": target,
            "downstream": downstream.iter().map(|&t| graph.name(t)).collect::<Vec<_>>(),
            "scenarios": rows.iter().map(|row| json!({
                "name": row.name,
                "xbundle_ms": row.xbundle,
                "ninja_ms": row.ninja,
                "ratio": row.ratio(),
                "xbundle_cpu_ms": row.xbundle_cpu,
                "ninja_cpu_ms": row.ninja_cpu,
                "xbundle_peak_rss_mib": row.xbundle_mib,
                "ninja_peak_rss_mib": row.ninja_mib,
            })).collect::<Vec<_>>(),
            "peak_rss_mib": { "xbundle": xbundle_mib, "ninja": ninja_mib },
            "peak_rss_floor_kib": rss_floor_kib(),
            "samples": {
                "cold": samples_json(&cold),
                "cold_through_sh": samples_json(&cold_through_sh),
                "first_noop": samples_json(&first_noop),
                "noop": samples_json(&noop),
                "one_file_change": samples_json(&change),
                "one_file_change_cached": samples_json(&change_cached),
            },
            "goals": goals.iter().map(|(name, ratio, limit)| json!({
                "name": name,
                "limit": limit,
                "ratio": ratio,
                "met": ratio.map(|ratio| ratio <= *limit),
            })).collect::<Vec<_>>(),
        });
        println!("{report}");
    }
    Ok(met_all)
}

fn samples_json(samples: &Samples) -> Value {
    json!({
        "xbundle_ms": Samples::ms(&samples.xbundle),
        "ninja_ms": Samples::ms(&samples.ninja),
        "xbundle_cpu_ms": Samples::cpu_ms(&samples.xbundle),
        "ninja_cpu_ms": Samples::cpu_ms(&samples.ninja),
        "xbundle_peak_rss_kib": samples.xbundle.iter().map(|m| m.rss_kib).collect::<Vec<_>>(),
        "ninja_peak_rss_kib": samples.ninja.iter().map(|m| m.rss_kib).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The child is reaped by `wait4`, not by its `Child`.
    #[allow(clippy::zombie_processes)]
    fn waited(script: &str) -> Waited {
        let child = std::process::Command::new("sh")
            .args(["-c", script])
            .spawn()
            .expect("sh runs");
        wait4(child.id()).expect("waited for")
    }

    /// A loop of `sh` arithmetic: tens of milliseconds of processor time on any machine.
    const BUSY: &str = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done";

    #[test]
    fn a_run_counts_the_processor_time_of_its_commands() {
        // The shell alone: its own time, a fraction of a millisecond, and its exit status.
        let idle = waited("exit 3");
        assert_eq!(idle.status, 3 << 8);
        assert!(idle.rss_kib > 0);
        assert!(idle.cpu_ms < 10.0, "{}", idle.cpu_ms);
        // A busy child of the shell it waited for (`; :` so the shell does not exec it).
        let busy = waited(&format!("sh -c '{BUSY}'; :"));
        assert_eq!(busy.status, 0);
        assert!(busy.cpu_ms > 10.0, "{}", busy.cpu_ms);
    }
}
