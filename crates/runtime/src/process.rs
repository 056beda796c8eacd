//! Process trees: how services are started so that none outlives the runtime.
//!
//! **Strategy (Linux).** Every service, migration and `command` health check runs under a
//! shim: the runtime binary itself started as `xbundle-runtime --shim GRACE_MS -- PROGRAM
//! ARGS...`. Migrations and checks have a time limit ([`wait_bounded`]): past it, their whole
//! tree is stopped.
//!
//! - The runtime starts the shim in a new process group with `PR_SET_PDEATHSIG = SIGTERM`, so
//!   the shim is told when the runtime dies, even by SIGKILL.
//! - The shim makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`), so the service's
//!   orphaned descendants are re-parented to it rather than to init, and starts the service in
//!   a process group of its own with `PR_SET_PDEATHSIG = SIGKILL`.
//! - On SIGTERM (a graceful stop from the runtime, or the runtime's death) the shim sends
//!   SIGTERM to the service's whole group, waits up to GRACE_MS, then SIGKILLs the group and
//!   every remaining descendant (found in `/proc`, including re-parented orphans in other
//!   groups), reaps them and exits with the service's status.
//! - When the service exits by itself, the shim kills what it left behind the same way, so a
//!   restart starts from a clean tree. The shim's exit code is the service's (128 + signal when
//!   it was killed by one).
//!
//! What remains: a descendant that both leaves the group (setsid) and is not yet orphaned when
//! the shim itself is SIGKILLed escapes; the runtime only SIGKILLs a shim when the shim's own
//! escalation did not finish in time. Other platforms: not supported yet (macOS would need a
//! kqueue-based watch of the parent, Windows a Job Object with kill-on-close).

use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn signal_set(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data initialized by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &signal in signals {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (and threads it starts later), so
/// [`wait_for_stop_signal`] can take them. Call before starting any thread.
pub fn block_stop_signals() {
    let set = signal_set(&STOP_SIGNALS);
    // SAFETY: a valid set; a null old-set pointer is allowed.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Waits for SIGTERM, SIGINT or SIGHUP; returns its number.
pub fn wait_for_stop_signal() -> i32 {
    let set = signal_set(&STOP_SIGNALS);
    let mut signal = 0;
    // SAFETY: valid pointers to a set and an int.
    unsafe { libc::sigwait(&set, &mut signal) };
    signal
}

/// Clears the signal mask in a forked child (the runtime and the shim block the stop
/// signals in every thread; a program must not start with them blocked).
/// In a forked child, before exec: default signal mask, a process group of its own, and
/// `signal` when `parent` dies (exits at once if it already has). Only async-signal-safe calls.
///
/// # Safety
/// Call only between fork and exec (from `pre_exec`).
unsafe fn own_group_dying_with(parent: libc::pid_t, signal: libc::c_int) {
    reset_signal_mask();
    // SAFETY: plain syscalls in the forked child.
    unsafe {
        libc::setpgid(0, 0);
        #[cfg(target_os = "linux")]
        libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0);
        if libc::getppid() != parent {
            libc::_exit(1); // the parent died before the death signal was armed
        }
    }
}

pub fn reset_signal_mask() {
    let empty = signal_set(&[]);
    // SAFETY: async-signal-safe; a valid set.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) };
}

/// What the runtime gives the shim to run.
pub struct ShimCommand<'a> {
    pub program: &'a Path,
    pub args: &'a [String],
    pub cwd: &'a Path,
    pub env: &'a [(String, String)],
    pub grace: Duration,
    /// Listening sockets to hand to the service (close-on-exec cleared in the child).
    pub pass_fds: &'a [i32],
    /// Pipe stdout and stderr (else they go to /dev/null).
    pub capture: bool,
}

/// Starts a program (a service, a migration, a `command` check) under the shim, with stdout
/// and stderr piped when `capture` is set.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the shim exits, not only the
/// process: call this from a thread that outlives the child (the supervisor thread for
/// services; for migrations and checks, the thread that waits for them).
pub fn spawn(command: &ShimCommand) -> io::Result<Child> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("--shim")
        .arg(command.grace.as_millis().to_string())
        .arg("--")
        .arg(command.program)
        .args(command.args)
        .current_dir(command.cwd)
        .envs(command.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    if command.capture {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    } else {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    let parent = std::process::id() as libc::pid_t;
    let fds = command.pass_fds.to_vec();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            own_group_dying_with(parent, libc::SIGTERM);
            for &fd in &fds {
                libc::fcntl(fd, libc::F_SETFD, 0);
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Sends a signal to one process.
pub fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: plain syscall.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
}

/// The direct children of a process (Linux: from `/proc`).
pub fn children_of(pid: u32) -> Vec<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    if let Ok(text) = std::fs::read_to_string(path) {
        return text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
    }
    let mut children = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if parent_of(child) == Some(pid) {
                children.push(child);
            }
        }
    }
    children
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

/// Kills a shim for good: its service's group and its children, then the shim.
pub fn force_kill_tree(shim: u32) {
    for child in children_of(shim) {
        // SAFETY: plain syscalls.
        unsafe {
            libc::kill(-(child as libc::pid_t), libc::SIGKILL);
            libc::kill(child as libc::pid_t, libc::SIGKILL);
        }
    }
    signal(shim, libc::SIGKILL);
}

/// Waits for a shim started by [`spawn`] for at most `timeout`: `Some(exit code)`, or `None`
/// when it timed out, in which case the whole tree has been stopped: SIGTERM to the shim
/// (which terminates the program's group, waits its grace, then kills every descendant),
/// and SIGKILL to the tree if the shim has not finished `grace` + 2 s later.
pub fn wait_bounded(child: &mut Child, timeout: Duration, grace: Duration) -> Option<i32> {
    let code = |status: std::process::ExitStatus| {
        use std::os::unix::process::ExitStatusExt;
        status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(libc::SIGKILL))
    };
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(code(status)),
            Ok(None) => {}
            Err(_) => return Some(1),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    signal(child.id(), libc::SIGTERM);
    let deadline = Instant::now() + grace + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    force_kill_tree(child.id());
    let _ = child.wait();
    None
}

fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}

/// The shim's main: `--shim GRACE_MS -- PROGRAM ARGS...`. Never returns.
pub fn shim_main(args: &[String]) -> ! {
    let grace = Duration::from_millis(args.first().and_then(|g| g.parse().ok()).unwrap_or(10_000));
    let Some(separator) = args.iter().position(|a| a == "--") else {
        eprintln!("xbundle-runtime --shim: usage: --shim GRACE_MS -- PROGRAM [ARGS...]");
        std::process::exit(2);
    };
    let Some(program) = args.get(separator + 1) else {
        eprintln!("xbundle-runtime --shim: no program");
        std::process::exit(2);
    };
    let watched = signal_set(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGCHLD]);
    // SAFETY: plain syscalls with valid arguments.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &watched, std::ptr::null_mut());
        #[cfg(target_os = "linux")]
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0);
    }
    let me = std::process::id() as libc::pid_t;
    let mut cmd = Command::new(program);
    cmd.args(&args[separator + 2..]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            own_group_dying_with(me, libc::SIGKILL);
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(err) => {
            eprintln!("xbundle-runtime: cannot start {program}: {err}");
            std::process::exit(127);
        }
    };
    // The service holds the passed sockets now.
    for (key, value) in std::env::vars() {
        if key.starts_with("XBUNDLE_LISTEN_FD_")
            && let Ok(fd) = value.parse::<libc::c_int>()
        {
            // SAFETY: closing our copy of an fd we were given.
            unsafe { libc::close(fd) };
        }
    }
    let service = child.id() as libc::pid_t;
    drop(child); // reaped below with waitpid
    let mut status: Option<i32> = None;
    let mut deadline: Option<Instant> = None;
    loop {
        let wait = deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(1));
        let timeout = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        // SAFETY: valid set and timespec; no siginfo wanted.
        let signal = unsafe { libc::sigtimedwait(&watched, std::ptr::null_mut(), &timeout) };
        if (signal == libc::SIGTERM || signal == libc::SIGINT || signal == libc::SIGHUP)
            && deadline.is_none()
        {
            // SAFETY: plain syscall.
            unsafe { libc::kill(-service, libc::SIGTERM) };
            deadline = Some(Instant::now() + grace);
        }
        loop {
            let mut raw = 0;
            // SAFETY: valid pointer.
            let pid = unsafe { libc::waitpid(-1, &mut raw, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == service {
                status = Some(exit_code(raw));
            }
        }
        let overdue = deadline.is_some_and(|d| Instant::now() >= d);
        if status.is_some() || overdue {
            break;
        }
    }
    // Whatever is left of the service's tree goes now.
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        // SAFETY: plain syscalls.
        unsafe { libc::kill(-service, libc::SIGKILL) };
        for child in children_of(me as u32) {
            // SAFETY: plain syscalls.
            unsafe {
                libc::kill(-(child as libc::pid_t), libc::SIGKILL);
                libc::kill(child as libc::pid_t, libc::SIGKILL);
            }
        }
        let mut raw = 0;
        // SAFETY: valid pointer.
        let pid = unsafe { libc::waitpid(-1, &mut raw, 0) };
        if pid == service && status.is_none() {
            status = Some(exit_code(raw));
        }
        if pid < 0 || Instant::now() > until {
            break;
        }
    }
    std::process::exit(status.unwrap_or(128 + libc::SIGKILL));
}
