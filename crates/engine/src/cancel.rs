//! Stopping a run: a [`Cancel`] handle that the front end triggers (from its SIGINT/SIGTERM
//! handling, a test, a timeout), and the process groups of the commands tasks are running.
//!
//! Every command a task runs ([`crate::task::CommandAction`]) starts in a process group of its
//! own, registered here while it runs. [`Cancel::cancel`] marks the run cancelled (no new task
//! starts, see `exec`), sends SIGTERM to every registered group, and SIGKILL to the groups still
//! registered [`GRACE`] later; a command that ends after a cancellation has its group killed
//! at once, so nothing it started (a `sleep &` in a shell script) outlives the run.
//!
//! **When xbundle itself is killed** (SIGKILL: no code of its own runs), its commands go with
//! it: the first command a `Cancel` runs also starts its **reaper**, one `/bin/sh` in a process
//! group of its own, told each group as it starts (`+<group>`) and ends (`-<group>`) through a
//! pipe that only this process holds open. When the pipe closes, because this process exited
//! or was killed, the reaper sends SIGKILL to every group still registered, then exits. This
//! replaces a `PR_SET_PDEATHSIG` set between `fork` and `exec`: a command now starts with
//! `posix_spawn` (no copy of this large, multi-threaded process per command), and the whole
//! group goes, not only its first process. A group is told ended after it is reaped; its id
//! could be reused only after the kernel has handed out every other process id, which cannot
//! happen in the moment between the reap and that message. A group is told started just after
//! its spawn: a command spawned in the instant before xbundle is killed may outlive it.
//!
//! **Invariants:** the engine installs no signal handler and changes no process-wide signal
//! state: the front end decides what stops a run. A command is registered before the lock that
//! `cancel` takes is released, so a cancellation either sees the group or the spawn sees the
//! cancellation (and the command is killed before it can run long).

use std::io::{self, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a cancelled command has between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(2);

/// A cancellation flag shared by a run and whoever may stop it; cheap to clone.
#[derive(Clone, Default)]
pub struct Cancel(Arc<Inner>);

#[derive(Default)]
struct Inner {
    cancelled: AtomicBool,
    /// Process group ids of running commands.
    groups: Mutex<Vec<i32>>,
    /// Started with the first command (see the module docs); locked inside `groups`.
    reaper: Mutex<Option<Reaper>>,
}

/// The reaper's script: keeps the registered groups in `g` (` 12 34 `), and on end of input
/// kills those left.
const REAPER_SCRIPT: &str = r#"g=' '
while read -r l; do
  case $l in
    +*) g="$g${l#+} " ;;
    -*) x=${l#-}; case $g in *" $x "*) g="${g%% $x *} ${g#* $x }" ;; esac ;;
  esac
done
for x in $g; do kill -s KILL -- "-$x" 2>/dev/null; done
"#;

struct Reaper {
    child: Child,
    pipe: Option<ChildStdin>,
}

impl Reaper {
    fn start() -> io::Result<Reaper> {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new("/bin/sh")
            .args(["-c", REAPER_SCRIPT])
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        let pipe = child.stdin.take();
        Ok(Reaper { child, pipe })
    }

    /// Tells the reaper; a reaper gone (killed by someone) only loses this safety net.
    fn tell(&mut self, line: &str) {
        if let Some(pipe) = &mut self.pipe
            && pipe.write_all(line.as_bytes()).is_err()
        {
            self.pipe = None;
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // End of input: the reaper kills what is left (nothing, when every command was waited
        // for) and exits.
        self.pipe = None;
        let _ = self.child.wait();
    }
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Stops the run: no task starts from now on, and running commands are stopped (SIGTERM to
    /// their process groups, SIGKILL after [`GRACE`]). Safe to call from any thread, any number
    /// of times.
    pub fn cancel(&self) {
        let groups: Vec<i32> = {
            let groups = self.groups();
            if self.0.cancelled.swap(true, Ordering::SeqCst) {
                return;
            }
            groups.clone()
        };
        for &group in &groups {
            signal_group(group, libc::SIGTERM);
        }
        if groups.is_empty() {
            return;
        }
        let this = self.clone();
        std::thread::spawn(move || {
            std::thread::sleep(GRACE);
            for &group in this.groups().iter() {
                signal_group(group, libc::SIGKILL);
            }
        });
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, Vec<i32>> {
        self.0.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the reaper (started on first use) that `group` started (`+`) or ended (`-`). Call
    /// with the `groups` lock held. Without a reaper (it could not start), commands outlive a
    /// killed xbundle, as the commands of most build tools do.
    fn tell_reaper(&self, sign: char, group: i32) {
        let mut reaper = self.0.reaper.lock().unwrap_or_else(|e| e.into_inner());
        if reaper.is_none() {
            *reaper = Reaper::start().ok();
        }
        if let Some(reaper) = reaper.as_mut() {
            reaper.tell(&format!("{sign}{group}\n"));
        }
    }

    /// Spawns `command` in a new process group registered for cancellation, runs `wait` on it,
    /// then unregisters it. After a cancellation, the group is killed once `wait` returns.
    pub fn run<T>(
        &self,
        command: &mut Command,
        wait: impl FnOnce(Child) -> io::Result<T>,
    ) -> io::Result<T> {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
        let child = {
            let mut groups = self.groups();
            if self.is_cancelled() {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "the run was interrupted",
                ));
            }
            let child = command.spawn()?;
            groups.push(child.id() as i32);
            self.tell_reaper('+', child.id() as i32);
            child
        };
        let group = child.id() as i32;
        let result = wait(child);
        let mut groups = self.groups();
        groups.retain(|&g| g != group);
        self.tell_reaper('-', group);
        if self.is_cancelled() {
            // Whatever the command left running in its group goes with it.
            signal_group(group, libc::SIGKILL);
        }
        result
    }
}

fn signal_group(group: i32, signal: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved. The
    // group id was registered by `Cancel::run` for a child this process spawned.
    unsafe {
        libc::kill(-group, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_stops_a_command_and_its_children() {
        use std::os::unix::process::ExitStatusExt;
        let cancel = Cancel::new();
        let stopper = cancel.clone();
        let marker = tempfile::tempdir().unwrap();
        let ready = marker.path().join("started");
        // The shell waits for its background child: it ends only when the group is signalled.
        let script = format!("touch {}; sleep 60 & wait", ready.display());
        let handle = std::thread::spawn(move || {
            while !ready.exists() {
                std::thread::sleep(Duration::from_millis(10));
            }
            stopper.cancel();
        });
        let status = cancel
            .run(Command::new("sh").args(["-c", &script]), |mut child| {
                child.wait()
            })
            .unwrap();
        handle.join().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
        assert!(cancel.is_cancelled());
        // Nothing new starts.
        let err = cancel
            .run(&mut Command::new("true"), |mut child| child.wait())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Interrupted);
    }

    #[test]
    fn a_command_ignoring_sigterm_gets_sigkill_after_the_grace_period() {
        use std::os::unix::process::ExitStatusExt;
        let cancel = Cancel::new();
        let stopper = cancel.clone();
        let marker = tempfile::tempdir().unwrap();
        let ready = marker.path().join("trapped");
        let script = format!("trap '' TERM; touch {}; sleep 60", ready.display());
        let handle = std::thread::spawn(move || {
            while !ready.exists() {
                std::thread::sleep(Duration::from_millis(10));
            }
            stopper.cancel();
        });
        let status = cancel
            .run(Command::new("sh").args(["-c", &script]), |mut child| {
                child.wait()
            })
            .unwrap();
        handle.join().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    }
}
