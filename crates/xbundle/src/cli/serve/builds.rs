//! The build queue of `serve`: `POST /api/v1/desktop/package` and `/desktop/generate/quick`
//! queue a build (the `bundle` or `thin-client` command, run in-process like every endpoint),
//! one worker thread runs them one at a time in the order they came, and each build keeps its
//! JSON lines (its log) and, once finished, its exit code and artifacts.
//!
//! **Invariants:** one build runs at a time per server (and the engine's store lock keeps it
//! apart from command-line builds of the same workspace, which share its cache: a request after
//! a command-line build is answered from the cache); a build's log only grows, and readers
//! ([`Builds::wait_lines`]) are woken when it does and when the build ends; the queue holds at
//! most [`MAX_QUEUED`] builds (more is a 429 the client can retry), and at most [`MAX_KEPT`]
//! finished builds are remembered (the oldest forgotten first).
//! Once the server is stopping ([`Builds::stop`]) nothing new starts: the waiting builds end
//! as failed (so every log stream reaches its `end`), the running one is cancelled (its
//! commands stopped as on Ctrl-C) and [`Builds::wait_idle`] lets the server wait for it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

use camino::Utf8PathBuf;
use serde::Serialize;

use super::run_captured_with;

/// Builds waiting at most, beyond the one running.
pub(super) const MAX_QUEUED: usize = 16;
/// Finished builds remembered.
pub(super) const MAX_KEPT: usize = 100;
/// Lines of a build's log kept at most (a build printing more keeps its first lines and says so).
const MAX_LINES: usize = 200_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
}

/// One build as the API shows it.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(super) struct BuildView {
    pub build_id: String,
    /// `package` or `thin-client`.
    pub kind: String,
    pub profile: String,
    pub platforms: Vec<String>,
    pub status: Status,
    /// The command's exit code (0 success, 1 a task failed, 2 bad input), once finished.
    pub exit_code: Option<u8>,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    pub logs_url: String,
    /// Lines of its log so far.
    pub log_lines: usize,
    /// The artifacts it produced (once succeeded): root-relative paths and download URLs.
    pub artifacts: Vec<Artifact>,
}

#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(super) struct Artifact {
    pub profile: String,
    pub name: String,
    pub size: u64,
    pub url: String,
}

struct Build {
    view: BuildView,
    args: Vec<String>,
    log: Vec<String>,
    truncated: bool,
}

#[derive(Default)]
struct Inner {
    next: u64,
    queue: VecDeque<String>,
    builds: BTreeMap<String, Build>,
    finished: VecDeque<String>,
    /// The build running, if any.
    running: Option<String>,
    /// The server is stopping: nothing is queued or started any more.
    stopping: bool,
}

/// Why [`Builds::queue`] refused a build.
pub(super) enum Refused {
    /// [`MAX_QUEUED`] builds are waiting.
    Full,
    /// The server is stopping.
    Stopping,
}

pub(super) struct Builds {
    root: Arc<Utf8PathBuf>,
    inner: Mutex<Inner>,
    /// Wakes the worker and [`Builds::wait_idle`] when anything changes.
    changed: Condvar,
    /// The same for the log readers, which wait as tasks, never on a thread: a count of the
    /// changes (its value is not used).
    version: tokio::sync::watch::Sender<u64>,
    /// Lists a profile's artifacts after its build (given the root and the profile).
    artifacts: fn(&camino::Utf8Path, &str) -> Vec<Artifact>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Builds {
    pub(super) fn start(
        root: Arc<Utf8PathBuf>,
        artifacts: fn(&camino::Utf8Path, &str) -> Vec<Artifact>,
    ) -> Arc<Builds> {
        let builds = Arc::new(Builds {
            root,
            inner: Mutex::new(Inner::default()),
            changed: Condvar::new(),
            version: tokio::sync::watch::Sender::new(0),
            artifacts,
        });
        let worker = Arc::clone(&builds);
        std::thread::Builder::new()
            .name("xbundle-serve-builds".into())
            .spawn(move || worker.work())
            .expect("start the build worker");
        builds
    }

    /// Something changed: wake whoever waits.
    fn notify(&self) {
        self.changed.notify_all();
        self.version
            .send_modify(|version| *version = version.wrapping_add(1));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a build of `args` (a command line), unless the queue is full or the server
    /// stopping.
    pub(super) fn queue(
        &self,
        kind: &str,
        profile: &str,
        platforms: &[String],
        args: Vec<String>,
    ) -> Result<BuildView, Refused> {
        let mut inner = self.lock();
        if inner.stopping {
            return Err(Refused::Stopping);
        }
        if inner.queue.len() >= MAX_QUEUED {
            return Err(Refused::Full);
        }
        inner.next += 1;
        let id = format!("build-{}", inner.next);
        let view = BuildView {
            build_id: id.clone(),
            kind: kind.to_string(),
            profile: profile.to_string(),
            platforms: platforms.to_vec(),
            status: Status::Queued,
            exit_code: None,
            created_at_ms: now(),
            started_at_ms: None,
            finished_at_ms: None,
            logs_url: format!("/api/v1/builds/{id}/logs"),
            log_lines: 0,
            artifacts: Vec::new(),
        };
        inner.builds.insert(
            id.clone(),
            Build {
                view: view.clone(),
                args,
                log: Vec::new(),
                truncated: false,
            },
        );
        inner.queue.push_back(id);
        self.notify();
        Ok(view)
    }

    /// The server is stopping: the waiting builds end, failed, with a line saying why; the
    /// running one is cancelled (see [`Builds::wait_idle`]); nothing new is queued or started.
    pub(super) fn stop(&self) {
        let mut inner = self.lock();
        inner.stopping = true;
        let waiting: Vec<String> = inner.queue.drain(..).collect();
        for id in waiting {
            if let Some(build) = inner.builds.get_mut(&id) {
                build.log.push(
                    serde_json::json!({"event": "warning", "id": null, "message": "the server stopped before this build started"})
                        .to_string(),
                );
                build.view.log_lines = build.log.len();
                build.view.status = Status::Failed;
                build.view.finished_at_ms = Some(now());
            }
            inner.finished.push_back(id);
        }
        drop(inner);
        self.notify();
        super::super::build::cancel_detached();
    }

    /// Waits (at most `limit`) until no build runs, cancelling the running one again and
    /// again meanwhile (it may not have reached the point where it can be cancelled at the
    /// first try); whether none runs.
    pub(super) fn wait_idle(&self, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        let mut inner = self.lock();
        while inner.running.is_some() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            drop(inner);
            super::super::build::cancel_detached();
            inner = self.lock();
            inner = self
                .changed
                .wait_timeout(inner, left.min(std::time::Duration::from_millis(100)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    pub(super) fn view(&self, id: &str) -> Option<BuildView> {
        self.lock().builds.get(id).map(|build| build.view.clone())
    }

    pub(super) fn list(&self) -> Vec<BuildView> {
        let inner = self.lock();
        let mut views: Vec<BuildView> = inner.builds.values().map(|b| b.view.clone()).collect();
        views.sort_by_key(|view| std::cmp::Reverse(view.build_id[6..].parse::<u64>().unwrap_or(0)));
        views
    }

    /// The lines of `id`'s log from `from` on, waiting (at most `wait`) while there are none
    /// and the build has not finished; `None` for an unknown build. The flag says whether the
    /// build has finished (no more lines will come after these). It waits as a task (no
    /// thread is held), and a reader gone is simply a future dropped.
    pub(super) async fn wait_lines(
        &self,
        id: &str,
        from: usize,
        wait: std::time::Duration,
    ) -> Option<(Vec<String>, bool)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Subscribed before looking: a change after the look is not missed.
            let mut changes = self.version.subscribe();
            {
                let inner = self.lock();
                let build = inner.builds.get(id)?;
                let done = matches!(build.view.status, Status::Succeeded | Status::Failed);
                if build.log.len() > from || done {
                    let lines = build.log.get(from..).unwrap_or_default().to_vec();
                    return Some((lines, done));
                }
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return Some((Vec::new(), false));
            }
        }
    }

    fn work(self: Arc<Self>) {
        loop {
            let (id, args) = {
                let mut inner = self.lock();
                loop {
                    if inner.stopping {
                        return;
                    }
                    if let Some(id) = inner.queue.pop_front() {
                        let build = inner.builds.get_mut(&id).expect("queued builds exist");
                        build.view.status = Status::Running;
                        build.view.started_at_ms = Some(now());
                        let args = build.args.clone();
                        inner.running = Some(id.clone());
                        break (id, args);
                    }
                    inner = self.changed.wait(inner).unwrap_or_else(|e| e.into_inner());
                }
            };
            self.notify();
            let sink_builds = Arc::clone(&self);
            let sink_id = id.clone();
            let captured = run_captured_with(
                &self.root,
                &args,
                Arc::new(move |line: &str| sink_builds.append(&sink_id, line)),
            );
            let mut inner = self.lock();
            if let Some(build) = inner.builds.get_mut(&id) {
                build.view.exit_code = Some(captured.code);
                build.view.finished_at_ms = Some(now());
                build.view.artifacts = if captured.code == 0 {
                    (self.artifacts)(&self.root, &build.view.profile)
                } else {
                    Vec::new()
                };
                build.view.status = if captured.code == 0 {
                    Status::Succeeded
                } else {
                    Status::Failed
                };
            }
            inner.finished.push_back(id);
            inner.running = None;
            while inner.finished.len() > MAX_KEPT {
                if let Some(old) = inner.finished.pop_front() {
                    inner.builds.remove(&old);
                }
            }
            drop(inner);
            self.notify();
        }
    }

    fn append(&self, id: &str, line: &str) {
        let mut inner = self.lock();
        if let Some(build) = inner.builds.get_mut(id) {
            if build.log.len() < MAX_LINES {
                build.log.push(line.to_string());
            } else if !build.truncated {
                build.truncated = true;
                build.log.push(
                    serde_json::json!({"event": "warning", "id": null, "message": "the log is too long: later lines are not kept"})
                        .to_string(),
                );
            }
            build.view.log_lines = build.log.len();
        }
        drop(inner);
        self.notify();
    }
}
