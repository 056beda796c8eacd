//! Stopping a run: a [`Cancel`] handle that the front end triggers (from its SIGINT/SIGTERM
//! handling, a test, a timeout), and the process groups of the commands tasks are running.
//!
//! Every command a task runs ([`crate::task::CommandAction`]) starts in a process group of its
//! own, registered here while it runs. [`Cancel::cancel`] marks the run cancelled (no new task
//! starts, see `exec`), sends SIGTERM to every registered group, and SIGKILL to the groups still
//! registered [`GRACE`] later; a command that ends after a cancellation has its group killed
//! at once, so nothing it started (a `sleep &` in a shell script) outlives the run.
//!
//! **Invariants:** the engine installs no signal handler and changes no process-wide signal
//! state: the front end decides what stops a run. A command is registered before the lock that
//! `cancel` takes is released, so a cancellation either sees the group or the spawn sees the
//! cancellation (and the command is killed before it can run long).

use std::io;
use std::process::{Child, Command};
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
            child
        };
        let group = child.id() as i32;
        let result = wait(child);
        let mut groups = self.groups();
        groups.retain(|&g| g != group);
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
