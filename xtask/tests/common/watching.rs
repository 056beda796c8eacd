//! A running `cargo xtask watch` driven by a test: its JSON events on a channel, one
//! [`Round`] at a time, bounded waits (shared by `watch.rs` and `attack_cli.rs`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Repo;

/// The bound on any one wait for the binary.
pub const BOUND: Duration = Duration::from_secs(60);

/// How long the tests watch for a round that must not come: many times the debounce.
pub const QUIET: Duration = Duration::from_millis(1200);

/// A running `xtask watch`, its JSON events arriving on a channel.
pub struct Watching {
    pub child: Child,
    events: Receiver<Value>,
    stderr: std::thread::JoinHandle<String>,
    /// Every event so far (for failure messages).
    pub seen: Vec<Value>,
}

/// What one round reported: its `watch-round` event and each task's final status.
pub struct Round {
    pub event: Value,
    pub statuses: BTreeMap<String, String>,
}

impl Watching {
    pub fn start(repo: &Repo, debounce: &str, args: &[&str]) -> Watching {
        let mut child = repo
            .command()
            .args(["--message-format", "json", "watch", "--debounce", debounce])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn xtask watch");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (sender, events) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.expect("stdout is UTF-8");
                let event: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|err| panic!("stdout line is not JSON ({err}): {line}"));
                if sender.send(event).is_err() {
                    return;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                text.push_str(&line);
                text.push('\n');
            }
            text
        });
        Watching {
            child,
            events,
            stderr,
            seen: Vec::new(),
        }
    }

    /// The events until the next `watch-round`, as a [`Round`].
    pub fn next_round(&mut self) -> Round {
        let deadline = Instant::now() + BOUND;
        let mut statuses = BTreeMap::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = match self.events.recv_timeout(left) {
                Ok(event) => event,
                Err(err) => panic!("no round ({err:?}); events so far: {:#?}", self.seen),
            };
            self.seen.push(event.clone());
            match event["event"].as_str() {
                Some("task-finished") => {
                    statuses.insert(
                        event["id"].as_str().unwrap().to_string(),
                        event["status"].as_str().unwrap().to_string(),
                    );
                }
                Some("watch-round") => return Round { event, statuses },
                _ => {}
            }
        }
    }

    /// Nothing at all is reported for [`QUIET`]: no round started.
    pub fn assert_quiet(&mut self, context: &str) {
        match self.events.recv_timeout(QUIET) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(event) => panic!("{context}: unexpected {event}; before: {:#?}", self.seen),
            Err(err) => panic!("{context}: the watch ended ({err:?})"),
        }
    }

    /// Waits (bounded) for the watch to end by itself: its exit code, the rest of its events
    /// and its stderr.
    pub fn wait_end(mut self) -> (i32, Vec<Value>, String) {
        let deadline = Instant::now() + BOUND;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the watch did not end; events: {:#?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let rest: Vec<Value> = self.events.iter().collect();
        let stderr = self.stderr.join().expect("stderr reader");
        (status.code().expect("exited, not killed"), rest, stderr)
    }

    /// Sends `signal`, then [`Watching::wait_end`].
    pub fn stop(self, signal: i32) -> (i32, Vec<Value>, String) {
        // SAFETY: signals the child this test spawned and has not reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
        self.wait_end()
    }
}

/// The paths a round says changed.
pub fn changed(round: &Round) -> Vec<String> {
    super::strings(&round.event["changed"])
}
