//! What a task is: an id, how it is keyed (kind, parameters, inputs, env, tools), what it
//! produces, and the [`Action`] that produces it.
//!
//! An action may report what it found out it read ([`Discovered`]): the engine records it with
//! the result and re-checks it before trusting that result again (see [`crate::discovered`]).
//! What an action reports is untrusted text; the engine validates it.
//!
//! Actions reach the content-addressed store through [`BlobStore`] (the run's store, whose lock
//! the build holds shared): reads are verified, writes are atomic, idempotent and re-hashed.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::cancel::Cancel;
use crate::digest::Digest;

/// A task's stable id, e.g. `task:ui` or `compile:api@linux-x64`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(String);

impl TaskId {
    pub fn new(id: impl Into<String>) -> TaskId {
        TaskId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Everything the engine needs to key, run and cache one task.
#[derive(Clone)]
pub struct TaskSpec {
    pub id: TaskId,
    /// The kind of work (`shell`, `analyze`, …), part of the key.
    pub kind: String,
    /// Bumped when the implementation of `kind` changes its results.
    pub impl_version: u32,
    /// Resolved parameters (command line, cwd, globs, …), part of the key.
    pub params: BTreeMap<String, String>,
    /// Directory the task runs in and its globs are relative to; root-relative, `/`-separated,
    /// empty for the root itself.
    pub cwd: String,
    /// Input globs relative to `cwd`; a leading `!` excludes.
    pub inputs: Vec<String>,
    /// Output globs relative to `cwd`. Each must match at least one file after a run.
    pub outputs: Vec<String>,
    /// Environment variable names whose values enter the key.
    pub env: Vec<String>,
    /// Tool name -> identity (e.g. the output of `rustc -vV`).
    pub tools: BTreeMap<String, String>,
    pub deps: Vec<TaskId>,
    pub action: Arc<dyn Action>,
    /// One line for humans (`graph`, `--dry-run`).
    pub description: Option<String>,
}

impl fmt::Debug for TaskSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskSpec")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("cwd", &self.cwd)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("deps", &self.deps)
            .finish()
    }
}

/// What an action sees when it runs.
pub struct ActionContext<'a> {
    pub id: &'a TaskId,
    /// The workspace root (absolute).
    pub root: &'a Path,
    /// The workspace root, confined: an action of the engine's own kind writes its outputs
    /// through it ([`crate::confine::Dir::write_file`]), never through a link.
    pub tree: &'a crate::confine::Dir,
    /// The task's working directory (absolute).
    pub cwd: &'a Path,
    /// The environment to run child processes with (the engine's snapshot).
    pub env: &'a BTreeMap<OsString, OsString>,
    /// The run's cancellation: an action that starts processes runs them through
    /// [`Cancel`]'s process groups (as [`CommandAction`] does) so an interrupted run stops them.
    pub cancel: &'a Cancel,
    /// The run's content-addressed store (e.g. a download already in it is never fetched again).
    pub blobs: &'a dyn BlobStore,
    /// Where the action reports what it prints, as it prints it (see [`crate::output`]): the
    /// engine reports it live and keeps it for the cache's replay. Commands run through
    /// [`crate::output::run_command`] report theirs here line by line.
    pub output: &'a dyn crate::output::OutputSink,
    /// How the run starts its commands (see [`Spawning`]).
    pub spawning: &'a Spawning,
}

/// How a run starts its commands, learnt once per run rather than once per command.
///
/// - Where their programs are in their `PATH` (a shell task's `sh` costs about ten stats of
///   absent files on a typical `PATH`, every time). Only programs found are kept, by `PATH` and
///   name: one that is missing is looked for again (a task may install it). Known limit: a
///   program put, during the run, in a `PATH` directory before the one it was found in is seen
///   from the next run on.
/// - Whether their environment (the engine's snapshot, [`ActionContext::env`]) is this
///   process's own, as it usually is: then a command whose program was found here inherits it
///   as it is, where setting it costs `std::process::Command` three copies of every variable
///   per command (its own map, the map it builds at the spawn, and the `KEY=value` strings).
///   A program left to execvp always gets it set (see [`CommandAction`]). The process's environment
///   cannot change while the run's threads go (`std::env::set_var` is unsound beside other
///   threads), so what is found at the start of the run holds to its end.
#[derive(Debug, Default)]
pub struct Spawning {
    programs: Mutex<HashMap<(OsString, String), PathBuf>>,
    /// Which `sh` programs found are dash (see [`Spawning::is_dash`]).
    dash: Mutex<HashMap<PathBuf, bool>>,
    /// The address of the environment [`Spawning::start`] found to be this process's own (0:
    /// none): another map is set in full (see [`Spawning::inherits`]).
    own_env: AtomicUsize,
}

impl Spawning {
    /// The start of a run whose commands see `env`: forgets every program found (and which is
    /// dash), and compares
    /// `env` with this process's environment.
    pub fn start(&self, env: &BTreeMap<OsString, OsString>) {
        self.programs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.dash.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let own = if is_own_environment(env) {
            std::ptr::from_ref(env) as usize
        } else {
            0
        };
        self.own_env.store(own, Ordering::Relaxed);
    }

    /// [`resolve_program`], remembered. The lock is held while a program is looked for, so
    /// that commands starting at once do not all look for the same one.
    fn resolve(&self, program: &str, env: &BTreeMap<OsString, OsString>) -> Option<PathBuf> {
        let path = env.get(std::ffi::OsStr::new("PATH"))?;
        let key = (path.clone(), program.to_string());
        let mut found = self.programs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = found.get(&key) {
            return Some(found.clone());
        }
        let resolved = resolve_program(program, env)?;
        found.insert(key, resolved.clone());
        Some(resolved)
    }

    /// Whether the program at `path` (a `sh` found by [`Spawning::resolve`]) is dash: its real
    /// path's file name is `dash`. Remembered for the run.
    fn is_dash(&self, path: &Path) -> bool {
        let mut known = self.dash.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&dash) = known.get(path) {
            return dash;
        }
        let dash = std::fs::canonicalize(path)
            .is_ok_and(|real| real.file_name() == Some(std::ffi::OsStr::new("dash")));
        known.insert(path.to_path_buf(), dash);
        dash
    }

    /// Whether a command given the environment `env` may inherit this process's: `env` is the
    /// map [`Spawning::start`] found to be the process's own.
    fn inherits(&self, env: &BTreeMap<OsString, OsString>) -> bool {
        self.own_env.load(Ordering::Relaxed) == std::ptr::from_ref(env) as usize
    }
}

/// Whether `env` holds exactly the variables of this process's environment, with their values.
/// An environment that names a variable twice (which a child would see twice) is never taken
/// for `env`, whatever `env` holds.
fn is_own_environment(env: &BTreeMap<OsString, OsString>) -> bool {
    let mut seen = std::collections::HashSet::new();
    for (name, value) in std::env::vars_os() {
        if env.get(&name) != Some(&value) || !seen.insert(name) {
            return false;
        }
    }
    seen.len() == env.len()
}

impl ActionContext<'_> {
    /// Reports `bytes` the task printed on `stream` now (see [`ActionContext::output`]).
    pub fn print(&self, stream: crate::events::Stream, bytes: &[u8]) {
        self.output.output(stream, bytes);
    }
}

/// What a successful action found out it read, and what it printed that it did not report
/// live through [`ActionContext::output`] (reported when it ends).
#[derive(Debug, Default, Clone)]
pub struct ActionOutput {
    /// Printed by the action itself and not reported live; reported when it ends. What went to
    /// [`ActionContext::output`] must not be repeated here.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// What the action found out it read, beyond its declared inputs.
    pub discovered: Discovered,
}

/// Inputs an action discovered while it ran (like a compiler's depfile). The engine digests
/// them after the run, stores them with the result, and a later run re-checks them before it
/// trusts that result (see [`crate::discovered`]). Untrusted text: absolute paths, `..`, empty
/// or `.` components, NUL and the like fail the task with a message naming the path.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// Root-relative, `/`-separated files the action read or looked for. A file absent when
    /// the run ends is recorded as absent: its appearing re-runs the task.
    pub files: Vec<String>,
    /// Root-relative glob patterns (the syntax of `TaskSpec::inputs`, `!` excludes, taken as
    /// one set) whose *set of matching paths* the result depends on (not their contents: list
    /// those in `files`). A path appearing or disappearing re-runs the task. E.g. a Go package
    /// directory's `dir/*.go` with `!dir/*_test.go`, so a new file in it re-runs the build.
    pub listings: Vec<String>,
}

impl Discovered {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.listings.is_empty()
    }
}

/// The content-addressed store as actions see it ([`ActionContext::blobs`]).
pub trait BlobStore: Send + Sync {
    /// The blob with this digest, if the store holds it: a reader that verifies size and
    /// digest while reading (an error at the end if the content differs).
    fn open(&self, digest: &Digest) -> std::io::Result<Option<Box<dyn std::io::Read + Send>>>;
    /// Adds the file at `path` (a temporary file of the caller's) to the store under its
    /// digest, which the caller computed; the store re-hashes while copying and refuses a
    /// mismatch. Idempotent.
    fn put(&self, path: &std::path::Path, digest: &Digest) -> std::io::Result<()>;
}

/// A failed action: a one-line message and whatever it printed that it did not report live
/// through [`ActionContext::output`] (e.g. a whole diagnostic; reported when it ends).
#[derive(Debug, Default, Clone)]
pub struct ActionFailure {
    pub message: String,
    /// Not reported live; reported when the action ends. What went to
    /// [`ActionContext::output`] must not be repeated here.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// The work of a task. Implementations must be deterministic functions of what the key
/// covers; anything else they read is a bug in how the task is declared.
pub trait Action: Send + Sync {
    fn run(&self, context: &ActionContext<'_>) -> Result<ActionOutput, ActionFailure>;

    /// Whether the action replaces each of its outputs itself, atomically (a new file written
    /// beside it and renamed over it). The engine then leaves the previous outputs in place
    /// while the action runs instead of removing them first, so a failed run keeps the last good
    /// ones (a published artifact is never missing because a re-signing failed). A link at an
    /// output's name is still removed first, and an output the action did not replace (the same
    /// file as before) fails the run: nothing stale is ever cached as new.
    fn replaces_outputs(&self) -> bool {
        false
    }

    /// Called instead of [`Action::run`] when a remote executor is on: what to send to it
    /// (a [`crate::remote_exec::RemotePlan`]: argv, inputs beyond the declared ones, outputs,
    /// discovered inputs), or why this run stays here, or
    /// [`crate::remote_exec::RemotePrep::NotRemote`] (the default): the action runs here.
    /// Only an action that reads nothing the plan does not name may answer with a plan. It may
    /// run local commands to find its inputs (`go list`); an error fails the task as a local
    /// run's would. See [`crate::remote_exec`].
    fn prepare_remote(
        &self,
        _context: &ActionContext<'_>,
    ) -> Result<crate::remote_exec::RemotePrep, ActionFailure> {
        Ok(crate::remote_exec::RemotePrep::NotRemote)
    }
}

/// Runs a command (`argv`) in the task's cwd with the engine's environment, its output
/// reported live line by line ([`crate::output::run_command`]). The command runs in a process
/// group of its own, stopped as a whole when the run is cancelled (see [`crate::cancel`]).
///
/// With a `depfile` (a path relative to the cwd, which the command writes: gcc's `-MD`, rustc's
/// dep-info, ninja's format), the dependencies it lists are reported as discovered files after a
/// successful run (see [`crate::depfile`]): a command that exits 0 without writing it fails.
#[derive(Debug, Clone, Default)]
pub struct CommandAction {
    pub argv: Vec<String>,
    pub depfile: Option<String>,
    /// The task opted in to remote execution (`remote = true`); honoured only without a
    /// depfile, whose reads a remote worker would not report.
    pub remote: bool,
}

impl Action for CommandAction {
    fn prepare_remote(
        &self,
        _context: &ActionContext<'_>,
    ) -> Result<crate::remote_exec::RemotePrep, ActionFailure> {
        use crate::remote_exec::{RemotePlan, RemotePrep};
        Ok(
            if self.remote && self.depfile.is_none() && !self.argv.is_empty() {
                RemotePrep::Plan(Box::new(RemotePlan {
                    argv: self.argv.clone(),
                    ..RemotePlan::default()
                }))
            } else {
                RemotePrep::NotRemote
            },
        )
    }

    fn run(&self, context: &ActionContext<'_>) -> Result<ActionOutput, ActionFailure> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err(ActionFailure {
                message: "empty command".into(),
                ..ActionFailure::default()
            });
        };
        if let Some(start) = self.start_directly(context)
            && let Some(ran) = self.run_directly(context, start)
        {
            return ran;
        }
        // Found here in the command's own PATH, so it starts with `posix_spawn` (std forks when
        // a command's PATH differs from this process's); its argv[0] stays as written. It dies
        // with xbundle through the run's reaper (see `crate::cancel`).
        let (mut command, found) = match context.spawning.resolve(program, context.env) {
            Some(path) => {
                let mut command = std::process::Command::new(path);
                std::os::unix::process::CommandExt::arg0(&mut command, program);
                (command, true)
            }
            None => (std::process::Command::new(program), false),
        };
        command.args(args).current_dir(context.cwd);
        // A program left to execvp (see `resolve_program`) always gets its environment set:
        // std then starts it with execvp, whose fallback runs a script without a `#!` line
        // through `/bin/sh` (with posix_spawnp, which has none, when it inherits this
        // process's environment).
        if !(found && context.spawning.inherits(context.env)) {
            command.env_clear().envs(context.env);
        }
        let finished =
            crate::output::run_command(context, &mut command, crate::output::Forward::Both)
                .map_err(|err| {
                    run_failure(&err, || format!("could not start `{program}`: {err}"))
                })?;
        self.finish(context, finished.status)
    }
}

impl CommandAction {
    /// The start of `sh -c SCRIPT` without `sh`, when it would add nothing (see
    /// [`crate::direct`]): only where `sh` is dash, whose behaviour the direct start copies.
    fn start_directly(&self, context: &ActionContext<'_>) -> Option<crate::direct::Start> {
        let [shell, dash_c, script] = self.argv.as_slice() else {
            return None;
        };
        if shell != "sh" || dash_c != "-c" || !crate::direct::enabled() {
            return None;
        }
        let script = crate::direct::parse(script)?;
        let shell = context.spawning.resolve(shell, context.env)?;
        if !context.spawning.is_dash(&shell) {
            return None;
        }
        // Looked for in PATH each time, as dash does (an earlier task may have put it there).
        let program = resolve_program(script.program, context.env)?;
        crate::direct::prepare(&script, &program, context)
    }

    /// Runs a [`crate::direct::Start`]: `None` when the program could not be started (too
    /// many arguments, say), which the shell then tries and reports in its own words.
    fn run_directly(
        &self,
        context: &ActionContext<'_>,
        start: crate::direct::Start,
    ) -> Option<Result<ActionOutput, ActionFailure>> {
        let crate::direct::Start {
            mut command,
            stdin,
            stdout,
            leader,
        } = start;
        let started = std::cell::Cell::new(false);
        let spawn = crate::output::Spawn {
            stdin: Some(stdin),
            stdout,
            group: Some(leader.group()),
            started: Some(&started),
            as_dash: true,
        };
        let ran = crate::output::run_as(context, &mut command, crate::output::Forward::Both, spawn);
        drop(leader);
        let finished = match ran {
            Ok(finished) => finished,
            Err(err) if !started.get() && err.kind() != std::io::ErrorKind::Interrupted => {
                return None;
            }
            Err(err) => {
                let script = &self.argv[2];
                return Some(Err(run_failure(&err, || {
                    format!("`{script}` failed: {err}")
                })));
            }
        };
        Some(self.finish(context, finished.status))
    }

    /// After the command ended with `status`: its failure, or its output (the depfile's
    /// discoveries).
    fn finish(
        &self,
        context: &ActionContext<'_>,
        status: std::process::ExitStatus,
    ) -> Result<ActionOutput, ActionFailure> {
        if !status.success() {
            return Err(ActionFailure {
                message: format!("command exited with {status}"),
                ..ActionFailure::default()
            });
        }
        let discovered = match &self.depfile {
            None => Discovered::default(),
            Some(depfile) => {
                crate::depfile::discover(context, depfile).map_err(|message| ActionFailure {
                    message,
                    ..ActionFailure::default()
                })?
            }
        };
        Ok(ActionOutput {
            discovered,
            ..ActionOutput::default()
        })
    }
}

/// A command's run that ended in `err`: not started because the run was interrupted, or the
/// failure `otherwise` words.
fn run_failure(err: &std::io::Error, otherwise: impl FnOnce() -> String) -> ActionFailure {
    ActionFailure {
        message: if err.kind() == std::io::ErrorKind::Interrupted {
            "not started: the run was interrupted".to_string()
        } else {
            otherwise()
        },
        ..ActionFailure::default()
    }
}

/// Where `execvp` would find `program` through the `PATH` of `env`: the first regular file in an
/// absolute directory of it that this process may execute (`access(X_OK)`: an execute bit for
/// us, not on a `noexec` mount; execvp passes over the others), when that file starts with `#!`
/// or is an ELF binary. `None` (left to `execvp`) for a name with a `/`, no `PATH`, a relative
/// directory met before the program was found, or a found file of any other kind: execvp runs
/// such a file (a script without a `#!` line) through `/bin/sh`, which a spawn of its path
/// alone would refuse ("Exec format error").
fn resolve_program(program: &str, env: &BTreeMap<OsString, OsString>) -> Option<PathBuf> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    if program.is_empty() || program.contains('/') {
        return None;
    }
    let path = env.get(std::ffi::OsStr::new("PATH"))?;
    for dir in std::env::split_paths(path) {
        if !dir.is_absolute() {
            return None;
        }
        // As execvp and dash build it: the entry, `/`, the name (`/bin/` gives `/bin//cat`,
        // which a script sees as its `$0`).
        let mut candidate = dir.into_os_string();
        candidate.push("/");
        candidate.push(program);
        let candidate = PathBuf::from(candidate);
        if !std::fs::metadata(&candidate).is_ok_and(|meta| meta.is_file())
            || rustix::fs::accessat(
                rustix::fs::CWD,
                &candidate,
                rustix::fs::Access::EXEC_OK,
                rustix::fs::AtFlags::EACCESS,
            )
            .is_err()
        {
            continue;
        }
        // The first executable file is the one execvp runs: spawned here only when the kernel
        // runs it as it is.
        let mut magic = [0u8; 4];
        let read = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&candidate)
            .and_then(|mut file| file.read(&mut magic));
        return match read {
            Ok(n) if magic[..n].starts_with(b"#!") || magic[..n] == *b"\x7fELF" => Some(candidate),
            _ => None,
        };
    }
    None
}

/// For a command not run through a [`Cancel`] (which has its reaper: see [`crate::cancel`]).
/// On Linux, the child gets SIGKILL when the thread that spawned it dies, so a build killed with
/// SIGKILL does not leave its commands running (and writing into the tree) while the next build
/// starts. Known limit: a grandchild already running (e.g. `cat` behind a shell redirect) is not
/// signalled; it finishes what it was doing, and nothing after it in the script runs.
#[cfg(target_os = "linux")]
pub fn die_with_parent(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec and only calls async-signal-safe functions
    // (prctl, getppid, _exit).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub fn die_with_parent(_: &mut std::process::Command) {}
