//! Starting a shell task's command without its shell, when the shell would add nothing.
//!
//! A `run` string is the argv `sh -c SCRIPT`. Starting `sh` costs a process: an `exec`, the
//! dynamic loader, the shell's own start (about 0.6 ms of processor time per command on the
//! bench's VM, measured over a cold build of 200 commands). GNU make has long skipped the shell for a
//! command with no shell syntax in it; this module does the same for a slightly larger set of
//! scripts, each of which it runs exactly as `dash`, Debian's `sh`, would:
//!
//! - words of plain characters (ASCII letters and digits, `_ . / - + , : @ % =`), separated by
//!   blanks; the first names a program (not a builtin, a reserved word or an assignment),
//!   looked for in the command's `PATH` at each start, as dash looks for it, and started by
//!   the path dash would build (the entry, `/`, the name);
//! - `*` and `?` in the last component of an argument (a pattern not starting with `.`):
//!   expanded as dash expands them, to the names of that directory the pattern matches, in
//!   byte order (dash sorts with `strcmp` whatever the locale), hidden names left out; a
//!   pattern that matches nothing stays as written;
//! - redirections `< file`, `> file` and `>> file` (no file descriptor number, no pattern),
//!   opened in the order written, as dash opens them (mode 0666 less the umask, dash's flags).
//!
//! The paths a script names are bundle.toml's, so untrusted: a pattern's directory is listed,
//! and a redirection's file opened, through [`crate::confine`] (below the workspace, no link
//! followed). One that is absolute, not normalized, or reached through a link is left to the
//! shell, which resolves it as it always did.
//!
//! Anything else (quotes, `$`, `;`, `|`, `&`, a newline, `~`, `#`, `[`, a second stdout
//! redirection…) runs through `sh` as written. So does a script whose direct start meets
//! anything unusual before the program starts: `sh` not being dash (bash sorts a pattern's
//! matches by the locale), a program not found or not startable as it is (a script without
//! `#!`, too many arguments), a redirection that cannot be opened or names something other
//! than a regular file (not even opened: opening a FIFO wakes its other end), an environment
//! dash would change (a variable whose name it drops, or `IFS`, `OPTIND`, `PPID`, which it
//! resets; a `PWD` under `/proc` or `/dev`, which dash would resolve in its own process). The
//! shell then does what it always did, messages included; the redirections the direct start
//! opened are opened again by it, in the same order, with the same effect.
//!
//! What the program sees is what dash would have given it: the same argv (`argv[0]` as
//! written), the same environment with `PWD` set as dash sets it (kept if it names the working
//! directory, else the directory's physical path), the same file descriptors with the same
//! flags, a process group it does not lead (see [`Leader`]: it can call `setsid(2)`). dash
//! forks for the command (it does not `exec` the last one): a command killed by a signal makes
//! it exit with 128 + the signal and print the signal's description (not for SIGINT and
//! SIGPIPE), and so does a direct start here, unless the run is being cancelled (then the
//! shell itself would have been killed by the same signal).
//!
//! Known differences, none in what a successful command is given:
//! - the environment's variables come in another order (sorted; dash lists them in the order
//!   of its hash table): a program that prints them unsorted prints another order;
//! - a signal sent to the whole process group (`kill 0`) would have killed dash with the
//!   command: the task fails either way, here with dash's status and message for the command;
//! - the program's parent process is xbundle, not a shell (`getppid(2)`);
//! - a group the command made of its own (`timeout` does) is stopped with the run, and with
//!   the command's output when a process left in it holds that output past the linger second
//!   (see [`crate::output`]); under dash, only dash's group would be, and these would run on;
//! - dash prints a signal's message as soon as its command ends; here it is added to stderr
//!   when the end is seen (at once when the command's pipes close with it, else within 50 ms),
//!   after what the command wrote before it ended.
//!
//! `XBUNDLE_DIRECT_EXEC=0` starts every script through `sh`. Whether a command started directly
//! is not part of any key: both ways run the same program with the same arguments, files and
//! environment.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use crate::confine::Dir;

/// A script this module may start without its shell, as parsed (nothing expanded yet).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Script<'a> {
    pub program: &'a str,
    /// The arguments after the program, in order; a word with `*` or `?` is a pattern.
    pub args: Vec<&'a str>,
    /// The redirections, in the order written.
    pub redirects: Vec<Redirect<'a>>,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(crate) enum RedirectKind {
    /// `< file`
    Read,
    /// `> file`
    Truncate,
    /// `>> file`
    Append,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Redirect<'a> {
    pub kind: RedirectKind,
    pub target: &'a str,
}

/// dash's builtins and reserved words (and a few of other shells'): a first word naming one
/// runs through the shell, whose builtin may differ from the program of that name.
const SHELL_WORDS: &[&str] = &[
    ".", ":", "[", "alias", "bg", "break", "case", "cd", "chdir", "command", "continue", "do",
    "done", "echo", "elif", "else", "esac", "eval", "exec", "exit", "export", "false", "fc", "fg",
    "fi", "for", "getopts", "hash", "history", "if", "in", "jobs", "kill", "local", "printf",
    "pwd", "read", "readonly", "return", "set", "shift", "test", "then", "times", "trap", "true",
    "type", "ulimit", "umask", "unalias", "unset", "until", "wait", "while",
];

fn plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"_./-+,:@%=".contains(&byte)
}

fn is_pattern(word: &str) -> bool {
    word.bytes().any(|b| b == b'*' || b == b'?')
}

/// `script` as a [`Script`], or `None` when it uses anything beyond what this module runs
/// (see the module docs).
pub(crate) fn parse(script: &str) -> Option<Script<'_>> {
    let mut words: Vec<&str> = Vec::new();
    let mut redirects = Vec::new();
    // A redirection operator whose file is the next token.
    let mut pending: Option<RedirectKind> = None;
    for token in script.split([' ', '\t']).filter(|t| !t.is_empty()) {
        let (kind, rest) = if let Some(rest) = token.strip_prefix(">>") {
            (Some(RedirectKind::Append), rest)
        } else if let Some(rest) = token.strip_prefix('>') {
            (Some(RedirectKind::Truncate), rest)
        } else if let Some(rest) = token.strip_prefix('<') {
            (Some(RedirectKind::Read), rest)
        } else {
            (None, token)
        };
        if kind.is_some() && pending.is_some() {
            return None;
        }
        if rest.is_empty() {
            // `>` alone: its file follows (nothing else can be empty).
            pending = Some(kind?);
            continue;
        }
        let patterned = rest.bytes().all(|b| plain(b) || b == b'*' || b == b'?');
        if !patterned {
            return None;
        }
        match kind.or(pending.take()) {
            Some(kind) => {
                if is_pattern(rest) {
                    return None;
                }
                redirects.push(Redirect { kind, target: rest });
            }
            None => words.push(rest),
        }
    }
    if pending.is_some() {
        return None;
    }
    let stdin = redirects
        .iter()
        .filter(|r| r.kind == RedirectKind::Read)
        .count();
    if stdin > 1 || redirects.len() - stdin > 1 {
        return None;
    }
    let (&program, args) = words.split_first()?;
    if program.contains(['/', '=']) || is_pattern(program) || SHELL_WORDS.contains(&program) {
        return None;
    }
    for &arg in args {
        if is_pattern(arg) {
            let (_, pattern) = split_pattern(arg)?;
            if pattern.starts_with('.') {
                return None;
            }
        }
    }
    Some(Script {
        program,
        args: args.to_vec(),
        redirects,
    })
}

/// A pattern word as (its directory as written, with its `/`; its last component), or `None`
/// when a pattern character is outside the last component, the word ends with `/` or repeats
/// one.
fn split_pattern(word: &str) -> Option<(&str, &str)> {
    let (dir, pattern) = match word.rfind('/') {
        Some(at) => word.split_at(at + 1),
        None => ("", word),
    };
    (!is_pattern(dir) && !pattern.is_empty() && !word.contains("//")).then_some((dir, pattern))
}

/// Whether `name` matches `pattern` (`*` any bytes, `?` one byte, anything else itself), as
/// dash's `pmatch` does for these two.
pub(crate) fn matches(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // Where the last `*` was, and the name position it is now taken to cover up to.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((at, covered)) => {
                    p = at + 1;
                    n = covered + 1;
                    star = Some((at, covered + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// An argument as the program gets it: a pattern's matches (see the module docs), or the word
/// itself. `here` is the task's directory. `None` when the pattern's directory cannot be listed
/// without following a link or leaving the workspace (the shell, which may, then expands it).
pub(crate) fn expand(word: &str, here: &Dir, into: &mut Vec<OsString>) -> Option<()> {
    let Some((dir, pattern)) = split_pattern(word).filter(|_| is_pattern(word)) else {
        into.push(word.into());
        return Some(());
    };
    let mut found: Vec<Vec<u8>> = Vec::new();
    // Opened through `Dir`: an absolute or not normalized path, or a link, goes to the shell.
    let opened;
    let listed = match dir.trim_end_matches('/') {
        "" => Some(here),
        below => {
            opened = here.open_dir(below).ok()?;
            opened.as_ref()
        }
    };
    if let Some(listed) = listed {
        for (name, _) in listed.entries().ok()? {
            if !name.starts_with(b".") && matches(pattern.as_bytes(), &name) {
                let mut path = dir.as_bytes().to_vec();
                path.extend_from_slice(&name);
                found.push(path);
            }
        }
    }
    if found.is_empty() {
        // A pattern that matches nothing (or whose directory is missing) stays as written.
        into.push(word.into());
        return Some(());
    }
    found.sort_unstable();
    into.extend(found.into_iter().map(OsString::from_vec));
    Some(())
}

/// Whether dash would pass `env` on as it is (bar `PWD`) and read its `PATH` as this module
/// does: every name one it imports, none of the variables it resets, no `%` in `PATH` (dash
/// reads `/bin%builtin` as its own syntax).
pub(crate) fn env_unchanged_by_dash(env: &BTreeMap<OsString, OsString>) -> bool {
    env.iter().all(|(name, value)| {
        let name = name.as_bytes();
        let valid = name
            .first()
            .is_some_and(|&b| b.is_ascii_alphabetic() || b == b'_')
            && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_');
        let plain_path = name != b"PATH" || !value.as_bytes().contains(&b'%');
        valid && plain_path && !matches!(name, b"IFS" | b"OPTIND" | b"PPID")
    })
}

/// The `PWD` dash gives its commands when started in `cwd` with `env`: the inherited one if it
/// is absolute and names `cwd`'s directory, else `cwd`'s physical path.
pub(crate) fn dash_pwd(env: &BTreeMap<OsString, OsString>, cwd: &Path) -> Option<OsString> {
    let here = std::fs::metadata(cwd).ok()?;
    let inherited = env.get(OsStr::new("PWD"));
    // A path through `/proc/self` names another directory for dash than for this process.
    if inherited.is_some_and(|pwd| {
        let pwd = pwd.as_bytes();
        pwd.starts_with(b"/proc/") || pwd.starts_with(b"/dev/")
    }) {
        return None;
    }
    if let Some(pwd) = inherited
        && pwd.as_bytes().starts_with(b"/")
        && std::fs::metadata(pwd).is_ok_and(|m| m.dev() == here.dev() && m.ino() == here.ino())
    {
        return Some(pwd.clone());
    }
    std::fs::canonicalize(cwd).ok().map(OsString::from)
}

/// Opens a redirection's file as dash would, but confined: `None` if it is not a regular file
/// below the workspace reached without a link, or cannot be opened (the shell then opens it, or
/// fails to, in its own way).
/// - What is there is first taken by an `O_PATH` handle ([`Dir::open_path`]): something other
///   than a regular file (a FIFO, whose other end even an open that does not wait would wake;
///   a device) is never opened here.
/// - A regular file is opened through `/proc/self/fd` of that handle, so the file checked is
///   the file opened, with dash's flags alone (a program reads them back with
///   `fcntl(F_GETFL)`) and dash's permission check.
/// - A missing file of `>` or `>>` is created with `O_EXCL` ([`Dir::create_exclusive`], mode
///   0666 less the umask), as dash's `O_CREAT` creates it, writable whatever the umask.
fn open_redirect(redirect: &Redirect<'_>, here: &Dir) -> Option<File> {
    // The file's directory, opened once for both the handle and a creation.
    let opened;
    let (dir, name) = match redirect.target.rsplit_once('/') {
        Some((dir, name)) => {
            opened = here.open_dir(dir).ok()??;
            (&opened, name)
        }
        None => (here, redirect.target),
    };
    let append = redirect.kind == RedirectKind::Append;
    match dir.open_path(name).ok()? {
        Some((handle, crate::confine::Kind::File)) => {
            let mut options = std::fs::OpenOptions::new();
            match redirect.kind {
                RedirectKind::Read => options.read(true),
                RedirectKind::Truncate => options.write(true).truncate(true),
                RedirectKind::Append => options.append(true),
            };
            options
                .open(format!("/proc/self/fd/{}", handle.as_raw_fd()))
                .ok()
        }
        None if redirect.kind != RedirectKind::Read => {
            dir.create_exclusive(name, append, 0o666).ok()?
        }
        _ => None,
    }
}

/// The leader of a process group made for one command started directly: a process that
/// joins a group of its own and exits at once, left unreaped (a zombie stays a member of its
/// group) until this is dropped, after the command has joined the group. Under dash the
/// shell leads the command's group; a program started directly as the leader of its own could
/// not call `setsid(2)` (`setsid prog` would fork and return at once), so it joins this one.
pub(crate) struct Leader {
    pid: libc::pid_t,
}

impl Leader {
    pub(crate) fn new() -> Option<Leader> {
        extern "C" fn lead(_: *mut libc::c_void) -> libc::c_int {
            // SAFETY: two system calls, made in the child clone(2) started on its own stack
            // while the parent thread waits (CLONE_VFORK); nothing of the parent's memory is
            // touched.
            unsafe {
                libc::setpgid(0, 0);
                libc::_exit(0)
            }
        }
        let mut stack = [0u8; 16 * 1024];
        // The stack grows down from its end, 16-byte aligned.
        let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
        // SAFETY: a set of every signal, blocked in this thread around the clone (as
        // posix_spawn does): no handler of this process runs in the child, which inherits the
        // mask and only exits.
        let pid = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            let pid = libc::clone(
                lead,
                top as *mut libc::c_void,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                std::ptr::null_mut(),
            );
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            pid
        };
        (pid > 0).then_some(Leader { pid })
    }

    pub(crate) fn group(&self) -> i32 {
        self.pid
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        crate::cancel::reap(self.pid);
    }
}

/// A command ready to start without its shell, and where its stdin and stdout go.
pub(crate) struct Start {
    pub command: Command,
    pub stdin: Stdio,
    /// `None`: a pipe to the task's output, as for any command.
    pub stdout: Option<Stdio>,
    /// The group it joins; dropped once it has.
    pub leader: Leader,
}

/// Whether direct starts are on (`XBUNDLE_DIRECT_EXEC`, read once).
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("XBUNDLE_DIRECT_EXEC").is_none_or(|v| v != "0"))
}

/// The direct start of `script` as the task of `context` (its directory, environment and
/// workspace), whose program was found at `program`; `None` when it must go through the shell.
/// Opens its redirections.
pub(crate) fn prepare(
    script: &Script<'_>,
    program: &Path,
    context: &crate::task::ActionContext<'_>,
) -> Option<Start> {
    let (cwd, env) = (context.cwd, context.env);
    if !env_unchanged_by_dash(env) {
        return None;
    }
    let pwd = dash_pwd(env, cwd)?;
    // The task's directory, opened once: its patterns and redirections are resolved below it.
    let relative = cwd.strip_prefix(context.root).ok()?.to_str()?;
    let here = context.tree.open_dir(relative).ok()??;
    let mut args = Vec::with_capacity(script.args.len());
    for arg in &script.args {
        expand(arg, &here, &mut args)?;
    }
    let mut stdin = None;
    let mut stdout = None;
    for redirect in &script.redirects {
        let file = open_redirect(redirect, &here)?;
        match redirect.kind {
            RedirectKind::Read => stdin = Some(file),
            RedirectKind::Truncate | RedirectKind::Append => stdout = Some(file),
        }
    }
    let mut command = Command::new(program);
    std::os::unix::process::CommandExt::arg0(&mut command, script.program);
    command
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .envs(env)
        .env("PWD", pwd);
    Some(Start {
        command,
        stdin: stdin.map_or_else(Stdio::null, Stdio::from),
        stdout: stdout.map(Stdio::from),
        leader: Leader::new()?,
    })
}

/// The status dash would have exited with after its command ended with `status`, and the line
/// it would have printed on stderr (see the module docs).
pub(crate) fn as_dash_status(status: ExitStatus) -> (ExitStatus, Option<String>) {
    let Some(signal) = status.signal() else {
        return (status, None);
    };
    let shell = ExitStatus::from_raw(((128 + signal) & 0xff) << 8);
    if signal == libc::SIGINT || signal == libc::SIGPIPE {
        return (shell, None);
    }
    // SAFETY: strsignal(3) returns a pointer to a NUL-terminated string, valid until the next
    // call in this thread; it is copied at once.
    let description = unsafe { std::ffi::CStr::from_ptr(libc::strsignal(signal)) }
        .to_string_lossy()
        .into_owned();
    let core = if status.core_dumped() {
        " (core dumped)"
    } else {
        ""
    };
    (shell, Some(format!("{description}{core}\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_scripts_parse_and_the_rest_goes_to_the_shell() {
        let script = parse(" cat  src/*.txt >out/out.txt\t").unwrap();
        assert_eq!(script.program, "cat");
        assert_eq!(script.args, ["src/*.txt"]);
        assert_eq!(
            script.redirects,
            [Redirect {
                kind: RedirectKind::Truncate,
                target: "out/out.txt"
            }]
        );
        let script = parse("sort -u < in.txt >> log a=b").unwrap();
        assert_eq!(script.args, ["-u", "a=b"]);
        assert_eq!(script.redirects.len(), 2);
        assert_eq!(parse("tsc -p tsconfig.json").unwrap().args.len(), 2);
        for shell in [
            "",
            "   ",
            "cat 'a b'",
            "cat \"a\"",
            "echo $HOME",
            "cat a; rm b",
            "cat a | wc",
            "cat a && b",
            "sleep 1 &",
            "cat a\ncat b",
            "cat ~/a",
            "cat a # note",
            "cat [ab].txt",
            "cat a\\ b",
            "cat a 2>err",
            "cat a 2> err",
            "cat a >&2",
            "cat a >| f",
            "cat <<EOF",
            "cat <> f",
            "cat a > f > g",
            "cat < a < b",
            "cat a >",
            "cat a > > f",
            "cat a > *.txt",
            "cat */a.txt",
            "cat src/.*",
            "cat src/*/",
            "cat src//*.txt",
            "CC=gcc make",
            "./build.sh",
            "/bin/cat a",
            "c*t a",
            "echo hi",
            "test -f a",
            "cd sub",
            "exec cat a",
            "if true",
            "{ cat a",
            "(cat a)",
            "cat a > f < b > g",
            "cät a",
            "cat a\r",
        ] {
            assert_eq!(parse(shell), None, "{shell:?} must go through the shell");
        }
        assert!(parse("cat a > f < b").is_some());
        assert!(parse("cat *").is_some());
        assert!(parse("cat src/a?.txt").is_some());
    }

    #[test]
    fn patterns_match_as_the_shell_matches_them() {
        for (pattern, name, expected) in [
            ("*", "abc", true),
            ("*.txt", "a.txt", true),
            ("*.txt", "a.txt.bak", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*a*b*", "xaybz", true),
            ("*a*b", "xaybz", false),
            ("**", "", true),
            ("?", "", false),
            ("f0*1", "f0101", true),
            ("f0*1", "f0110", false),
        ] {
            assert_eq!(
                matches(pattern.as_bytes(), name.as_bytes()),
                expected,
                "{pattern:?} against {name:?}"
            );
        }
    }

    fn sh_is_dash() -> bool {
        let dash = std::fs::canonicalize("/bin/sh")
            .is_ok_and(|real| real.file_name() == Some(OsStr::new("dash")));
        if !dash {
            eprintln!("skipped: /bin/sh is not dash");
        }
        dash
    }

    /// What dash makes of `words` in `dir`: each resulting word, as `printf` prints it.
    fn dash_expands(dir: &Path, words: &str) -> Vec<Vec<u8>> {
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("for w in {words}; do printf '%s\\n' \"$w\"; done"))
            .current_dir(dir)
            .output()
            .expect("run sh");
        assert!(out.status.success(), "{out:?}");
        out.stdout
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Differential: our expansion of random patterns over random names (hidden ones,
        /// upper and lower case, `_`, `-`, bytes above ASCII, a directory among them) is
        /// dash's, in its order.
        #[test]
        fn patterns_expand_as_dash_expands_them(
            names in proptest::collection::btree_set("[aB_.0-9é-]{1,4}", 0..14),
            patterns in proptest::collection::vec("[aB_0-9é*?-][aB_.0-9é*?-]{0,3}", 1..5),
            in_subdirectory in proptest::bool::ANY,
        ) {
            if !sh_is_dash() {
                return Ok(());
            }
            let temp = tempfile::tempdir().unwrap();
            std::fs::create_dir(temp.path().join("d")).unwrap();
            for (i, name) in names.iter().filter(|n| *n != "." && *n != "..").enumerate() {
                let path = temp.path().join("d").join(name);
                if i == 2 {
                    std::fs::create_dir(path).unwrap();
                } else {
                    std::fs::write(path, "").unwrap();
                }
            }
            let tree = Dir::open_root(temp.path()).unwrap();
            let (cwd, prefix) = if in_subdirectory { ("d", "") } else { ("", "d/") };
            let here = tree.open_dir(cwd).unwrap().unwrap();
            let words: Vec<String> = patterns.iter().map(|p| format!("{prefix}{p}")).collect();
            let mut ours = Vec::new();
            for word in &words {
                proptest::prop_assert!(expand(word, &here, &mut ours).is_some());
            }
            let ours: Vec<Vec<u8>> = ours.into_iter().map(OsString::into_vec).collect();
            let theirs = dash_expands(&temp.path().join(cwd), &words.join(" "));
            proptest::prop_assert_eq!(ours, theirs, "words {:?} over {:?}", words, names);
        }
    }

    #[test]
    fn a_signal_becomes_the_shells_exit_status_and_message() {
        let (status, line) = as_dash_status(ExitStatus::from_raw(libc::SIGTERM));
        assert_eq!(status.code(), Some(143));
        assert_eq!(line.as_deref(), Some("Terminated\n"));
        let (status, line) = as_dash_status(ExitStatus::from_raw(libc::SIGPIPE));
        assert_eq!(status.code(), Some(141));
        assert_eq!(line, None);
        let (status, line) = as_dash_status(ExitStatus::from_raw(libc::SIGABRT | 0x80));
        assert_eq!(status.code(), Some(134));
        assert_eq!(line.as_deref(), Some("Aborted (core dumped)\n"));
        let (status, line) = as_dash_status(ExitStatus::from_raw(3 << 8));
        assert_eq!(status.code(), Some(3));
        assert_eq!(line, None);
    }
}
