//! JSON lines on stdout, written in bursts: a line comes out at once when none was written
//! in the last [`GATHER`]; lines that follow it closer than that are held and written
//! together, at most [`GATHER`] after the first of them was held (by a thread of this
//! writer's, started the first time a line is held), or at once when [`Lines::flush`] is
//! called (the build's end, anything else written to stdout, the shell's drop).
//!
//! Why: a no-op build reports 200 tasks in about 20 ms. One `write(2)` per line woke the
//! reader of the pipe (a CI tool, the bench) 200 times on a machine whose cores the build
//! needs; a line at most 10 ms late tells a reader the same.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a held line may wait, and how close lines must follow each other to be held.
const GATHER: Duration = Duration::from_millis(10);
/// Held lines are written at once beyond this many bytes.
const MAX_HELD: usize = 64 * 1024;

#[derive(Default)]
pub(super) struct Lines {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Tells the writing thread that lines are held, or that they are due earlier.
    held: Condvar,
}

#[derive(Default)]
struct State {
    /// Lines held, each with its newline.
    held: Vec<u8>,
    /// When the first of them was held.
    since: Option<Instant>,
    /// When stdout was last written.
    written: Option<Instant>,
    /// The writing thread was started (or could not be: lines are then written at once).
    thread: Option<bool>,
    /// The writer was dropped: its thread ends.
    closed: bool,
    /// What was written (tests write here, not to stdout).
    #[cfg(test)]
    out: Vec<u8>,
}

impl Lines {
    /// Writes `line` and a newline on stdout, now or soon (module docs).
    pub(super) fn write(&self, line: &str) {
        let mut state = self.shared.lock();
        state.held.extend_from_slice(line.as_bytes());
        state.held.push(b'\n');
        let now = Instant::now();
        let recent = state
            .written
            .is_some_and(|written| now.duration_since(written) < GATHER);
        if !recent || state.held.len() >= MAX_HELD || !self.thread_started(&mut state) {
            write_held(&mut state, now);
            return;
        }
        if state.since.is_none() {
            state.since = Some(now);
            self.shared.held.notify_one();
        }
    }

    /// Writes the lines held, now.
    pub(super) fn flush(&self) {
        let mut state = self.shared.lock();
        if !state.held.is_empty() {
            write_held(&mut state, Instant::now());
        }
    }

    /// Whether the writing thread runs (started now if it was not).
    fn thread_started(&self, state: &mut State) -> bool {
        *state.thread.get_or_insert_with(|| {
            let shared = Arc::clone(&self.shared);
            std::thread::Builder::new()
                .name("xbundle-json-lines".into())
                .spawn(move || shared.write_when_due())
                .is_ok()
        })
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        self.flush();
        self.shared.lock().closed = true;
        self.shared.held.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The writing thread: writes held lines once the first has waited [`GATHER`]; sleeps
    /// while nothing is held, and ends when the writer is dropped.
    fn write_when_due(&self) {
        let mut state = self.lock();
        while !state.closed {
            let Some(since) = state.since else {
                state = self.held.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            let now = Instant::now();
            let due = since + GATHER;
            if now < due {
                state = self
                    .held
                    .wait_timeout(state, due - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            write_held(&mut state, now);
        }
    }
}

/// Writes what `state` holds to stdout (errors, such as a closed pipe, are ignored as for
/// any line) and notes when.
fn write_held(state: &mut State, now: Instant) {
    #[cfg(not(test))]
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&state.held);
        let _ = out.flush();
    }
    #[cfg(test)]
    {
        let held = std::mem::take(&mut state.held);
        state.out.extend_from_slice(&held);
    }
    state.held.clear();
    state.since = None;
    state.written = Some(now);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_line_is_written_at_once_and_a_burst_within_the_gathering_time() {
        let lines = Lines::default();
        let now = Instant::now();
        // Long after the last write: at once.
        lines.shared.lock().written = Some(now - GATHER * 2);
        lines.write("{\"a\":1}");
        {
            let state = lines.shared.lock();
            assert_eq!(state.out, b"{\"a\":1}\n");
            assert!(state.held.is_empty() && state.since.is_none());
        }
        // Right after it: held, then written by the thread within the gathering time.
        lines.write("{\"b\":2}");
        lines.write("{\"c\":3}");
        assert_eq!(lines.shared.lock().held, b"{\"b\":2}\n{\"c\":3}\n");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !lines.shared.lock().held.is_empty() {
            assert!(Instant::now() < deadline, "held lines were never written");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(lines.shared.lock().since.is_none());
        // Held again (the thread's write was just now), then flushed at once.
        lines.write("{\"d\":4}");
        assert_eq!(lines.shared.lock().held, b"{\"d\":4}\n");
        lines.flush();
        let state = lines.shared.lock();
        assert!(state.held.is_empty());
        // Every line, once, in order.
        assert_eq!(
            state.out,
            b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n{\"d\":4}\n".as_slice()
        );
    }

    #[test]
    fn lines_beyond_the_limit_are_written_at_once() {
        let lines = Lines::default();
        lines.write("first");
        let long = "x".repeat(MAX_HELD);
        lines.write(&long);
        let state = lines.shared.lock();
        assert!(state.held.is_empty());
        assert_eq!(state.out.len(), "first\n".len() + MAX_HELD + 1);
    }
}
