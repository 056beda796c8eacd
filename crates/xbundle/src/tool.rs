//! Running external tools (go, cargo, npm, node…): one small helper that builds the command,
//! quotes it for messages, and, when a task runs it, runs it through the engine's
//! [`engine::output::run_command`] (its cancellable process groups, its output reported live,
//! line by line; the same path as declared tasks' commands). Outside a task ([`Cmd::probe`]),
//! the output is captured.
//!
//! Why not `xshell` (the design card's first choice): a task's command must run in a process
//! group of its own registered with the run's [`engine::Cancel`] (so an interrupted build stops
//! the compiler's whole tree), with the engine's environment snapshot and not the process's, and
//! with both output streams reported live to the task's output. xshell owns process spawning and
//! offers none of these hooks; this helper is the few lines that do.
//!
//! **Invariant:** every failure message names the command line, quoted so it can be pasted
//! into a shell, and the exit status; what the tool printed was reported live, as it printed
//! it, whether it succeeded or not, except the stdout of [`Cmd::read_in`], which is data
//! (`go list -json`, `cargo metadata`) returned to the caller. The `[sign]` hook
//! (`package::sign`) runs its signer itself, to redact secrets from what it prints.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use engine::{ActionContext, ActionFailure, Forward};

/// A command to run: a program, its arguments, environment changes and a working directory.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    env: BTreeMap<OsString, Option<OsString>>,
    cwd: Option<PathBuf>,
}

/// What a finished command printed ([`Cmd::probe`]).
#[derive(Debug, Default)]
pub struct Captured {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Cmd {
    pub fn new(program: impl Into<OsString>) -> Cmd {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Cmd {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Cmd {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets a variable for this command (over the inherited environment).
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Cmd {
        self.env.insert(name.into(), Some(value.into()));
        self
    }

    /// Removes a variable from the environment this command sees.
    pub fn env_remove(mut self, name: impl Into<OsString>) -> Cmd {
        self.env.insert(name.into(), None);
        self
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Cmd {
        self.cwd = Some(dir.into());
        self
    }

    /// The command line as a shell would take it (environment changes first).
    pub fn display(&self) -> String {
        let mut parts: Vec<String> = self
            .env
            .iter()
            .filter_map(|(name, value)| {
                value.as_ref().map(|value| {
                    format!(
                        "{}={}",
                        name.to_string_lossy(),
                        quote(&value.to_string_lossy())
                    )
                })
            })
            .collect();
        parts.push(quote(&self.program.to_string_lossy()));
        parts.extend(self.args.iter().map(|arg| quote(&arg.to_string_lossy())));
        parts.join(" ")
    }

    fn command(&self, base_env: Option<&BTreeMap<OsString, OsString>>) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args).stdin(Stdio::null());
        if let Some(base) = base_env {
            command.env_clear().envs(base);
        }
        for (name, value) in &self.env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        command
    }

    /// Runs the command to completion with the given environment (`None`: the process's),
    /// outside any task (probes). A failure is the command line, the status and stderr's
    /// first lines.
    pub fn probe(&self, env: Option<&BTreeMap<OsString, OsString>>) -> Result<Captured, String> {
        let output = self
            .command(env)
            .output()
            .map_err(|err| format!("could not run `{}`: {err}", self.display()))?;
        if output.status.success() {
            Ok(Captured {
                stdout: output.stdout,
                stderr: output.stderr,
            })
        } else {
            Err(format!(
                "`{}` exited with {}{}",
                self.display(),
                output.status,
                first_lines(&output.stderr)
            ))
        }
    }

    /// Runs the command as part of a task: the engine's environment, a process group stopped
    /// with the run, and what it prints reported live, line by line, to the task's output
    /// ([`engine::output::run_command`], the one way a task's command runs).
    pub fn run_in(&self, context: &ActionContext<'_>) -> Result<(), ActionFailure> {
        self.run_with(context, Forward::Both).map(drop)
    }

    /// [`Cmd::run_in`] for a command whose stdout is data (`cargo metadata`, `go list -json`):
    /// returns its stdout, not printed; its stderr is reported live.
    pub fn read_in(&self, context: &ActionContext<'_>) -> Result<Vec<u8>, ActionFailure> {
        self.run_with(context, Forward::StderrOnly)
    }

    fn run_with(
        &self,
        context: &ActionContext<'_>,
        forward: Forward,
    ) -> Result<Vec<u8>, ActionFailure> {
        let mut command = self.command(Some(context.env));
        if self.cwd.is_none() {
            command.current_dir(context.cwd);
        }
        engine::task::die_with_parent(&mut command);
        let finished =
            engine::output::run_command(context, &mut command, forward).map_err(|err| {
                failure(if err.kind() == std::io::ErrorKind::Interrupted {
                    "not started: the run was interrupted".to_string()
                } else {
                    format!("could not run `{}`: {err}", self.display())
                })
            })?;
        if finished.status.success() {
            Ok(finished.stdout)
        } else {
            Err(failure(format!(
                "`{}` exited with {}",
                self.display(),
                finished.status
            )))
        }
    }
}

/// A failure of the task's own making (not a command's): what its commands printed was
/// already reported live.
pub fn failure(message: impl Into<String>) -> ActionFailure {
    ActionFailure {
        message: message.into(),
        ..ActionFailure::default()
    }
}

/// `text` quoted for a POSIX shell when it needs quoting.
pub fn quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'_' | b'-' | b'.' | b'/' | b'=' | b':' | b',' | b'+' | b'@' | b'%'
                )
        });
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

fn first_lines(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(3)
        .collect();
    if lines.is_empty() {
        String::new()
    } else {
        format!(": {}", crate::diagnostic::visible(&lines.join(" | ")))
    }
}

/// The file `program` names on `PATH` (from `env`), or `program` itself when it has a `/`.
pub fn which(program: &str, env: &BTreeMap<OsString, OsString>) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return is_executable(&path).then_some(path);
    }
    let path = env.get(&OsString::from("PATH"))?;
    std::env::split_paths(path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_a_shell() {
        assert_eq!(quote("go"), "go");
        assert_eq!(quote("-ldflags=-s -w"), "'-ldflags=-s -w'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote(""), "''");
        let cmd = Cmd::new("go")
            .env("GOOS", "linux")
            .args(["build", "-o", "a b"]);
        assert_eq!(cmd.display(), "GOOS=linux go build -o 'a b'");
    }

    /// What a task's commands reported, and a context to run them in.
    #[derive(Default)]
    struct Printed(std::sync::Mutex<Vec<(engine::Stream, String)>>);

    impl engine::OutputSink for Printed {
        fn output(&self, stream: engine::Stream, bytes: &[u8]) {
            let text = String::from_utf8_lossy(bytes).into_owned();
            self.0.lock().unwrap().push((stream, text));
        }
    }

    struct NoBlobs;

    impl engine::BlobStore for NoBlobs {
        fn open(
            &self,
            _: &engine::Digest,
        ) -> std::io::Result<Option<Box<dyn std::io::Read + Send>>> {
            Ok(None)
        }
        fn put(&self, _: &Path, _: &engine::Digest) -> std::io::Result<()> {
            Err(std::io::Error::other("no store here"))
        }
    }

    fn in_task<T>(run: impl FnOnce(&ActionContext<'_>) -> T) -> (T, Vec<(engine::Stream, String)>) {
        let dir = tempfile::tempdir().unwrap();
        let tree = engine::confine::Dir::open_root(dir.path()).unwrap();
        let env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
        let printed = Printed::default();
        let id = engine::TaskId::new("task:t");
        let cancel = engine::Cancel::new();
        let context = ActionContext {
            id: &id,
            root: dir.path(),
            tree: &tree,
            cwd: dir.path(),
            env: &env,
            cancel: &cancel,
            blobs: &NoBlobs,
            output: &printed,
            spawning: &engine::Spawning::default(),
        };
        let result = run(&context);
        (result, printed.0.into_inner().unwrap())
    }

    #[test]
    fn a_tasks_command_reports_its_output_to_the_task_and_data_stays_data() {
        use engine::Stream::{Stderr, Stdout};
        let (result, mut printed) = in_task(|context| {
            Cmd::new("sh")
                .args(["-c", "echo out; echo err >&2"])
                .run_in(context)
        });
        result.unwrap();
        printed.sort_by_key(|(stream, _)| *stream == Stderr);
        assert_eq!(
            printed,
            [(Stdout, "out\n".to_string()), (Stderr, "err\n".to_string())]
        );

        let (data, printed) = in_task(|context| {
            Cmd::new("sh")
                .args(["-c", "echo '{\"json\": 1}'; echo note >&2"])
                .read_in(context)
        });
        assert_eq!(data.unwrap(), b"{\"json\": 1}\n");
        assert_eq!(printed, [(Stderr, "note\n".to_string())]);

        // A failure names the command; what it printed before was reported, once.
        let (result, printed) = in_task(|context| {
            Cmd::new("sh")
                .args(["-c", "echo partial; exit 4"])
                .run_in(context)
        });
        let failure = result.unwrap_err();
        assert!(
            failure
                .message
                .contains("`sh -c 'echo partial; exit 4'` exited with"),
            "{}",
            failure.message
        );
        assert!(failure.stdout.is_empty() && failure.stderr.is_empty());
        assert_eq!(printed, [(Stdout, "partial\n".to_string())]);
    }

    #[test]
    fn a_failing_probe_names_the_command_and_status() {
        let err = Cmd::new("sh")
            .args(["-c", "echo broken >&2; exit 3"])
            .probe(None)
            .unwrap_err();
        assert!(
            err.contains("`sh -c 'echo broken >&2; exit 3'` exited with"),
            "{err}"
        );
        assert!(err.contains("broken"), "{err}");
        let err = Cmd::new("/nonexistent/tool").probe(None).unwrap_err();
        assert!(err.contains("could not run `/nonexistent/tool`"), "{err}");
    }
}
