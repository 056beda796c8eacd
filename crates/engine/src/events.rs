//! What a run reports, as it happens. The engine never prints: it sends [`Event`]s to a
//! [`Reporter`], and the front end (human status lines, JSON lines, a test's buffer) renders
//! them.

use serde::Serialize;

use crate::digest::Digest;
use crate::key::DirtyReason;
use crate::task::TaskId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskStatus {
    /// The action ran.
    Ran,
    /// The result came from the cache (restored, or already in the tree).
    Cached,
    Failed,
    /// Not run because a dependency failed, `--fail-fast` stopped the run, or the run was
    /// interrupted before it started.
    Skipped,
    /// Running when the run was interrupted: its commands were stopped; nothing of it was
    /// cached or recorded.
    Stopped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// The end of one task.
#[derive(Clone, Debug, Serialize)]
pub struct TaskReport {
    pub id: TaskId,
    pub status: TaskStatus,
    pub duration_ms: u64,
    /// Why it ran (or was restored); empty when it was already up to date.
    pub reasons: Vec<DirtyReason>,
    /// Files written from the cache (0 for an up-to-date tree).
    pub restored: usize,
    /// Its key, when one could be computed.
    pub key: Option<Digest>,
    /// Its output digest, when it succeeded.
    pub output: Option<Digest>,
    pub error: Option<String>,
    /// For a cached task, where the result came from: `local` (the local store), or the remote
    /// backend's name (`http`, `reapi`: fetched, verified and put in the local store first).
    pub source: Option<&'static str>,
    /// For a task that ran, where: `local`, or `remote` (by the remote executor, see
    /// [`crate::remote_exec`]); `None` for every other status.
    pub executed: Option<&'static str>,
}

/// The end of a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunSummary {
    pub ran: usize,
    pub cached: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Tasks stopped by an interruption (see [`crate::cancel`]).
    pub stopped: usize,
    /// The run was cancelled before it finished.
    pub interrupted: bool,
    pub duration_ms: u64,
    /// Results uploaded to the remote cache in this run (see [`crate::remote`]).
    pub uploaded: usize,
    /// Failed task -> why.
    pub failures: Vec<(TaskId, String)>,
}

impl RunSummary {
    pub fn success(&self) -> bool {
        self.failed == 0 && self.skipped == 0 && self.stopped == 0 && !self.interrupted
    }
}

#[derive(Debug)]
pub enum Event<'a> {
    BuildStarted {
        tasks: usize,
    },
    TaskStarted {
        id: &'a TaskId,
        reasons: &'a [DirtyReason],
    },
    /// What a task printed: live, as it prints it (whole lines, except the last line of a
    /// stream that ends without a newline and pieces of an overlong line: see
    /// [`crate::output`]), or replayed from the cache when its result was restored (pieces cut
    /// after a newline where one is near). Each byte is reported once.
    Output {
        id: &'a TaskId,
        stream: Stream,
        bytes: &'a [u8],
        replayed: bool,
    },
    Warning {
        id: Option<&'a TaskId>,
        message: &'a str,
    },
    TaskFinished(&'a TaskReport),
    BuildFinished(&'a RunSummary),
}

pub trait Reporter: Sync {
    fn report(&self, event: Event<'_>);
}

/// Discards everything.
pub struct Silent;

impl Reporter for Silent {
    fn report(&self, _: Event<'_>) {}
}
