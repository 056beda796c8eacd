//! Stopping a run: a [`Cancel`] handle that the front end triggers (from its SIGINT/SIGTERM
//! handling, a test, a timeout), and the process groups of the commands tasks are running.
//!
//! Every command a task runs ([`crate::task::CommandAction`]) starts in a process group of its
//! own, registered here while it runs (a command started without its shell joins a group made
//! for it, led by another process: see [`crate::direct::Leader`]; the group it may make of its
//! own, as `timeout` does, is registered beside it). [`Cancel::cancel`] marks the run cancelled (no new task
//! starts, see `exec`), sends SIGTERM to every registered group, and SIGKILL to the groups still
//! registered [`GRACE`] later; a command that ends after a cancellation has its group killed
//! at once, so nothing it started (a `sleep &` in a shell script) outlives the run.
//!
//! **When xbundle itself is killed** (SIGKILL: no code of its own runs), its commands go with
//! it: the first command a `Cancel` runs also starts its **reaper**, one `/bin/sh` in a process
//! group of its own, which waits for the end of a pipe that only this process holds open. The
//! groups running are kept in the reaper's **table**, a file in memory (`memfd_create`; an
//! unlinked temporary file elsewhere) that is its standard output: one 8-byte slot per running
//! command, the group id right-aligned in 7 characters and a newline, or blanks once the group
//! ended, each written with one `pwrite`. When the pipe closes because this process was killed,
//! the reaper reads the table and sends SIGKILL to every group it names, then exits; a run that
//! ends normally writes `done` first, and the reaper exits killing nothing (a slot that could
//! not be blanked names a group that ended, whose id may have been reused since). Nothing wakes
//! the reaper while the run goes on (it was told each start and end through the pipe: two
//! wake-ups of a shell per command, which read its pipe a byte at a time). This replaces a
//! `PR_SET_PDEATHSIG` set between `fork` and `exec`: a command starts with `posix_spawn` (no
//! copy of this large, multi-threaded process per command), and the whole group goes, not only
//! its first process. A group's slot is blanked
//! after it is reaped; its id could be reused only after the kernel has handed out every other
//! process id, which cannot happen in the moment between the reap and that write. A group is
//! written in just after its spawn: a command spawned in the instant before xbundle is killed
//! may outlive it, and so may a group whose id does not fit in 7 digits (Linux's ids stop at
//! 4,194,304).
//!
//! **Invariants:** the engine installs no signal handler and changes no process-wide signal
//! state: the front end decides what stops a run. A command is spawned outside the lock that
//! `cancel` takes (spawns of several workers would queue behind each other) and registered
//! under it, where the flag is checked again: a cancellation either sees the group or the
//! registration sees the cancellation and kills the group at once, before it can run long.

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
    /// Started before the first command (see the module docs); locked alone there, else inside
    /// `groups`.
    reaper: Mutex<Option<Reaper>>,
}

/// The reaper's script. Its standard input is the pipe: it waits for the end, and a run that
/// ends normally first writes `done` (every command was waited for: nothing is killed, even a
/// group whose slot could not be blanked, whose id may since have gone to another process).
/// Its standard output is the table, read from its start once the pipe has ended without
/// `done`. Ids 0 and 1 are never taken (`kill -- -1` would signal every process it can).
const REAPER_SCRIPT: &str = r#"while read -r l; do [ "$l" = done ] && exit 0; done
while read -r x; do
  case $x in ''|*[!0-9]*|0*|1) ;; *) kill -s KILL -- "-$x" 2>/dev/null ;; esac
done <&1
"#;

/// Width of a table slot: 7 digits (or blanks) and a newline.
const SLOT: usize = 8;

struct Reaper {
    child: Child,
    /// Its end is what the reaper waits for.
    pipe: Option<ChildStdin>,
    /// The reaper's standard output, shared (see the module docs); written only with `pwrite`,
    /// so its offset stays at the start for the reaper's read.
    table: std::fs::File,
    /// The group in each slot, 0 when free; slots are taken lowest first, so every slot below
    /// the highest ever taken has been written (the file has no hole for the reaper to read).
    slots: Vec<i32>,
}

impl Reaper {
    fn start() -> io::Result<Reaper> {
        use std::os::unix::process::CommandExt;
        let table = Reaper::table()?;
        let mut child = Command::new("/bin/sh")
            .args(["-c", REAPER_SCRIPT])
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(table.try_clone()?)
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        let pipe = child.stdin.take();
        Ok(Reaper {
            child,
            pipe,
            table,
            slots: Vec::new(),
        })
    }

    /// A new table: memory only (`memfd_create`) where there is that, so that no directory
    /// needs to be writable; else an unlinked temporary file.
    fn table() -> io::Result<std::fs::File> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Ok(fd) = rustix::fs::memfd_create("xbundle-reaper", rustix::fs::MemfdFlags::CLOEXEC)
        {
            return Ok(std::fs::File::from(fd));
        }
        tempfile::tempfile()
    }

    /// Writes `group` into a free slot. A group that does not fit, or a table that cannot be
    /// written, only loses this safety net for that command.
    fn add(&mut self, group: i32) {
        let line = format!("{group:>7}\n");
        if line.len() != SLOT || group <= 0 {
            return;
        }
        let slot = match self.slots.iter().position(|&g| g == 0) {
            Some(slot) => slot,
            None => {
                self.slots.push(0);
                self.slots.len() - 1
            }
        };
        if self.write(slot, line.as_bytes()) {
            self.slots[slot] = group;
        } else if slot + 1 == self.slots.len() {
            // Never written: not left as a hole below the next slot.
            self.slots.pop();
        }
    }

    /// Blanks `group`'s slot.
    fn remove(&mut self, group: i32) {
        if let Some(slot) = self.slots.iter().position(|&g| g == group) {
            // A slot that cannot be blanked stays taken: never handed to another group (and
            // named in the table, which only a killed run's reaper reads).
            if self.write(slot, b"       \n") {
                self.slots[slot] = 0;
            }
        }
    }

    fn write(&self, slot: usize, line: &[u8]) -> bool {
        use std::os::unix::fs::FileExt;
        self.table.write_all_at(line, (slot * SLOT) as u64).is_ok()
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // Every command was waited for: `done`, then the end of its input, and it exits.
        if let Some(pipe) = &mut self.pipe {
            let _ = pipe.write_all(b"done\n");
        }
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

    /// Ends the reaper when no command runs (it is told `done` and exits killing nothing); the
    /// next command starts another. The engine calls it at the end of each run: the reaper
    /// otherwise goes when the last handle does, and a handle kept by a thread that waits for
    /// signals never goes.
    pub fn end_reaper(&self) {
        let reaper = {
            let groups = self.groups();
            if !groups.is_empty() {
                return;
            }
            self.0
                .reaper
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
        };
        drop(reaper);
    }

    /// Whether a reaper runs (for tests).
    pub fn has_reaper(&self) -> bool {
        self.0
            .reaper
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Starts the reaper if none runs (see the module docs).
    fn start_reaper(&self) {
        let mut reaper = self.0.reaper.lock().unwrap_or_else(|e| e.into_inner());
        if reaper.is_none() {
            *reaper = Reaper::start().ok();
        }
    }

    /// How many commands are registered as running (for tests).
    #[cfg(test)]
    fn running(&self) -> usize {
        self.groups().len()
    }

    /// Writes `group` into the reaper's table (`started`) or blanks it; the reaper was started
    /// before the command was ([`Cancel::start_reaper`]). Call with the `groups` lock held.
    /// Without a reaper (it could not start), commands outlive a killed xbundle, as the commands
    /// of most build tools do.
    fn tell_reaper(&self, started: bool, group: i32) {
        let mut reaper = self.0.reaper.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(reaper) = reaper.as_mut() {
            if started {
                reaper.add(group);
            } else {
                reaper.remove(group);
            }
        }
    }

    /// Spawns `command` in a new process group registered for cancellation, runs `wait` on it,
    /// then unregisters it. After a cancellation, the group is killed once `wait` returns.
    pub fn run<T>(
        &self,
        command: &mut Command,
        wait: impl FnOnce(Child) -> io::Result<T>,
    ) -> io::Result<T> {
        self.run_in_group(command, None, false, wait)
    }

    /// [`Cancel::run`] with the command joining the process group `group` (a group made for it
    /// alone, whose leader is another process: see [`crate::direct::Leader`]) instead of leading
    /// one of its own. A group named by the command's own id is registered beside it: a command
    /// that leaves the group (`timeout` makes a group of its own, `setsid` a session) is still
    /// stopped with whatever it put in its new group, as the shell leading it would have been.
    ///
    /// With `left_unreaped`, `wait` sees the command end without reaping it (`waitid` with
    /// `WNOWAIT`, see [`crate::output::run_as`]) and this reaps it, after unregistering it: its
    /// id, signalled as a group until then, cannot meanwhile be another process's (whose group
    /// would be killed). Unregistering and reaping happen even if `wait` panics.
    pub(crate) fn run_in_group<T>(
        &self,
        command: &mut Command,
        group: Option<i32>,
        left_unreaped: bool,
        wait: impl FnOnce(Child) -> io::Result<T>,
    ) -> io::Result<T> {
        use std::os::unix::process::CommandExt;
        command.process_group(group.unwrap_or(0));
        if self.is_cancelled() {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "the run was interrupted",
            ));
        }
        // The reaper first (the first command of a run starts it), so that no command waits
        // unregistered for a lock while it starts. Then the spawn, outside the lock: a spawn
        // holds its thread until the child has called `exec`, and commands started by several
        // workers at once would wait for each other.
        self.start_reaper();
        let child = command.spawn()?;
        let own = child.id() as i32;
        // The group, then (for a joined group) the one the command may make of its own.
        let registration = Registration {
            cancel: self,
            groups: [group.unwrap_or(own), own],
            count: if group.is_some() { 2 } else { 1 },
            reap: left_unreaped.then_some(own),
        };
        {
            let mut groups = self.groups();
            for &group in registration.groups() {
                groups.push(group);
                self.tell_reaper(true, group);
            }
            // A cancellation that took the lock before this registration did not see the
            // group: the spawn sees the cancellation instead, and the group goes at once.
            if self.is_cancelled() {
                for &group in registration.groups() {
                    signal_group(group, libc::SIGKILL);
                }
            }
        }
        wait(child)
    }
}

/// The groups of a running command, registered with a [`Cancel`] (and its reaper) until this
/// is dropped; then, if the run was cancelled (or the wait panicked), killed with whatever they
/// still hold, and the command reaped if it was left unreaped (see [`Cancel::run_in_group`]).
struct Registration<'a> {
    cancel: &'a Cancel,
    groups: [i32; 2],
    count: usize,
    reap: Option<i32>,
}

impl Registration<'_> {
    fn groups(&self) -> &[i32] {
        &self.groups[..self.count]
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut groups = self.cancel.groups();
        groups.retain(|g| !self.groups().contains(g));
        for &group in self.groups() {
            self.cancel.tell_reaper(false, group);
            // A `wait` that panicked left its command running: it goes, rather than being
            // waited for here.
            if self.cancel.is_cancelled() || std::thread::panicking() {
                // Whatever the command left running in its group goes with it.
                signal_group(group, libc::SIGKILL);
            }
        }
        drop(groups);
        if let Some(pid) = self.reap {
            reap(pid);
        }
    }
}

/// Waits for the child `pid` of this process, which nothing else waits for, and reaps it.
pub(crate) fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: waitpid(2) on a child of this process, into a local.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
}

/// Sends `signal` to the process group `group`, one registered by [`Cancel::run`] (or
/// [`Cancel::run_in_group`]) for a child this process spawned.
pub(crate) fn signal_group(group: i32, signal: i32) {
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

    /// A cancellation at any moment of a spawn (before it, while the child execs, as it is
    /// registered, after) stops the command: none is left running unseen. The spawn happens
    /// outside the lock `cancel` takes, so without the check after the registration a
    /// cancellation landing inside the spawn would miss its group (found so: this test hung).
    #[test]
    fn a_cancellation_racing_a_spawn_never_misses_the_command() {
        /// Runs `sleep 30` under `cancel` in a thread, cancels when `moment` returns, and says
        /// whether the spawn was refused (else the command was stopped: it did not outlive
        /// the cancellation by seconds).
        fn race(cancel: Cancel, moment: impl FnOnce(&Cancel)) -> bool {
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            let runner = cancel.clone();
            let started = std::thread::spawn(move || {
                let outcome = runner.run(Command::new("sleep").arg("30"), |mut child| child.wait());
                let _ = done_tx.send(());
                match outcome {
                    Ok(_) => false,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => true,
                    Err(err) => panic!("the spawn failed: {err}"),
                }
            });
            moment(&cancel);
            cancel.cancel();
            done_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("the command outlived the cancellation");
            let refused = started.join().unwrap();
            cancel.end_reaper();
            refused
        }
        // Both ends for certain: cancelled before the spawn, refused; cancelled once the
        // command is registered, stopped.
        let before = Cancel::new();
        before.cancel();
        assert!(race(before, |_| {}), "a cancelled run starts nothing");
        let after = race(Cancel::new(), |cancel| {
            while cancel.running() == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        assert!(!after, "a registered command is stopped, not refused");
        // And every moment in between: from before the spawn to well after it (a spawn takes
        // about 100 µs here), in small steps, then larger ones up to 2.5 ms.
        for round in 0..150u64 {
            let delay = if round < 100 {
                round * 3
            } else {
                (round - 100) * 50
            };
            race(Cancel::new(), |_| {
                std::thread::sleep(Duration::from_micros(delay))
            });
        }
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

    /// The reaper kills the groups its table names when the pipe ends without the table being
    /// emptied (this process killed), and no other: not a group whose slot was blanked, even
    /// when a later group took its slot.
    #[test]
    fn the_reaper_kills_the_groups_left_in_its_table_and_no_other() {
        use std::os::unix::fs::FileExt;
        use std::os::unix::process::{CommandExt, ExitStatusExt};
        let spawn = || {
            Command::new("sleep")
                .arg("60")
                .process_group(0)
                .spawn()
                .unwrap()
        };
        let mut reaper = Reaper::start().unwrap();
        let mut children: Vec<Child> = (0..3).map(|_| spawn()).collect();
        for child in &children {
            reaper.add(child.id() as i32);
        }
        let ended = children.remove(1);
        reaper.remove(ended.id() as i32);
        children.push(spawn());
        reaper.add(children[2].id() as i32);
        let mut table = vec![0u8; 64];
        let len = reaper.table.read_at(&mut table, 0).unwrap();
        let expected: String = [&children[0], &children[2], &children[1]]
            .iter()
            .map(|child| format!("{:>7}\n", child.id()))
            .collect();
        assert_eq!(String::from_utf8_lossy(&table[..len]), expected);

        // This process "killed": the pipe ends with the table as it is.
        reaper.pipe = None;
        assert!(reaper.child.wait().unwrap().success());
        for mut child in children {
            assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        }
        let mut ended = ended;
        assert_eq!(
            ended.try_wait().unwrap(),
            None,
            "a blanked group was killed"
        );
        ended.kill().unwrap();
        assert_eq!(ended.wait().unwrap().signal(), Some(libc::SIGKILL));
    }

    /// A run that ends normally kills nothing: not even a group its table still names (a slot
    /// that could not be blanked names a group that ended, whose id may have been reused).
    #[test]
    fn a_run_that_ends_normally_kills_nothing() {
        use std::os::unix::process::CommandExt;
        let mut reaper = Reaper::start().unwrap();
        let mut left = Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .unwrap();
        reaper.add(left.id() as i32);
        // Waits for the reaper to exit.
        drop(reaper);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(left.try_wait().unwrap(), None, "killed at a normal end");
        left.kill().unwrap();
        left.wait().unwrap();
    }

    /// A run's end ends the reaper (told `done`, it exits, killing nothing) while a handle on
    /// the cancellation lives on; the next command starts another.
    #[test]
    fn the_end_of_a_run_ends_the_reaper_while_a_handle_lives_on() {
        let cancel = Cancel::new();
        let kept = cancel.clone();
        let status = cancel
            .run(&mut Command::new("true"), |mut child| child.wait())
            .unwrap();
        assert!(status.success());
        let pid = cancel.0.reaper.lock().unwrap().as_ref().unwrap().child.id();
        cancel.end_reaper();
        assert!(!kept.has_reaper());
        // Waited for: gone, not a zombie.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        cancel
            .run(&mut Command::new("true"), |mut child| child.wait())
            .unwrap();
        assert!(kept.has_reaper());
    }

    /// Commands inherit neither the reaper's pipe nor its table.
    #[test]
    fn commands_inherit_no_descriptor_of_the_reaper() {
        let cancel = Cancel::new();
        let open_files = || {
            let output = cancel
                .run(
                    Command::new("sh")
                        .args(["-c", "for f in /proc/$$/fd/*; do readlink \"$f\"; done"])
                        .stdin(std::process::Stdio::null())
                        .stdout(std::process::Stdio::piped()),
                    |child| child.wait_with_output(),
                )
                .unwrap();
            String::from_utf8(output.stdout).unwrap()
        };
        // The first command starts the reaper; the second sees whatever it left open.
        let (first, second) = (open_files(), open_files());
        let reaper = cancel.0.reaper.lock().unwrap();
        let pid = reaper.as_ref().unwrap().child.id();
        let theirs: Vec<String> = [0, 1]
            .iter()
            .map(|fd| {
                std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        assert!(theirs[0].starts_with("pipe:"), "{theirs:?}");
        for open in [first, second] {
            for target in &theirs {
                assert!(
                    !open.lines().any(|line| line == target),
                    "{target} in {open}"
                );
            }
        }
    }
}
