//! Running a task graph: keying, cache lookups, restores, execution, parallel scheduling.
//!
//! Workers: `-j` + 1 (twice `-j` with a remote executor: a task executed remotely holds a worker,
//! not a local slot). A task that runs here first takes one of `-j` local slots (before it is
//! reported started), so at most `-j` commands run at once, while the other workers key, look
//! up and restore the next ready tasks. A failure in a `--fail-fast` run halts the run before
//! its slot is released: a worker that gets a slot afterwards starts nothing.
//!
//! Per task, in a worker thread once its dependencies are done:
//! 1. expand the input globs (minus the task's own outputs) and digest each file through the
//!    stat cache; build [`KeyComponents`] with the dependencies' output digests; hash the key;
//! 2. unless `--force`, look the key up in the action cache; an entry with discovered inputs is
//!    a hit only if they still hold ([`crate::discovered::check`], reasons otherwise); on a hit
//!    make the tree match the stored output manifest (verifying every restored blob) and replay
//!    the captured logs, unless nothing was restored and the key is the one last recorded (a
//!    true no-op prints nothing);
//! 3. otherwise delete whatever the output globs match, run the action (what it prints is
//!    reported live, line by line, see [`crate::output`], and kept for the cache), require every output
//!    glob to match, store outputs and logs in the CAS, record what the action discovered it
//!    read ([`crate::discovered::record`]), then (last) the action result;
//! 4. record the key components in the ledger.
//!
//! A run starts by removing the leftovers of a killed one: the staging area's files and the
//! unfinished atomic writes (`.tmp-xbundle-*`) in `state/` and `state/ledger/`.
//!
//! A corrupt cache entry or blob is a warning and a miss; an output modified in the tree is a
//! warning and a restore. Nothing wrong is ever used silently.
//!
//! **Invariant:** every removal and every restore in the work tree goes through
//! [`crate::confine`] (no link is followed on the way to it) and past [`crate::guard`] (never a
//! `.git` path, the engine's own directories or a protected path); a cache entry is checked
//! whole before anything of it is written. A task whose outputs sit behind a link fails with an
//! error naming the link; nothing outside the root is touched.
//!
//! **Interruption** ([`Engine::cancel_handle`]): once cancelled, no task starts; running
//! commands are stopped with their whole process group; a task still running then is reported
//! [`TaskStatus::Stopped`] and neither cached nor recorded in the ledger, so the next run runs
//! it again.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::cancel::Cancel;
use crate::confine::{ConfineError, Dir, Kind, Place, is_temp_name};
use crate::digest::Digest;
use crate::events::{Event, Reporter, RunSummary, Stream, TaskReport, TaskStatus};
use crate::files::{Found, Opener, Patterns, Purpose, Tree, expand};
use crate::fsutil::{FileLock, LockMode};
use crate::graph::TaskGraph;
use crate::guard::{DeclaredOutputs, Guard, check_entry};
use crate::key::{DirtyReason, KeyComponents};
use crate::ledger::{Ledger, LedgerEntry};
use crate::output::{OutputSink, TaskOutput};
use crate::remote::{RemoteCache, Session};
use crate::remote_exec::{
    BlobSource, ExecSession, ExecuteRequest, InputFile, LocalSlot, LocalSlots, RemoteExecution,
    RemoteInput, RemotePrep,
};
use crate::statcache::{FileStat, Preload, ReadBatch, Reading, Started, StatCache};
use crate::store::{ActionResult, BlobFetchError, OutputFile, Store, StoreError, StoredStream};
use crate::task::{ActionContext, Discovered, TaskId, TaskSpec};

/// The most a run re-reads at its end to settle files hashed in their own clock tick
/// ([`StatCache::settle`]); what is over stays untrusted, re-hashed by the next run.
const SETTLE_MAX_BYTES: u64 = 64 << 20;

/// How many of a task's inputs may be open with their reads started and not finished
/// ([`StatCache::start_digest`]): enough to overlap the disk's reads (measured: 16 files at a
/// time bring most of the gain of 100). None is kept open once descriptors numbered a quarter
/// of those the process may open are in use (see `StatCache::start_digest`).
const READS_AHEAD: usize = 32;

/// Where the engine keeps its state, and how a run behaves.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The workspace root (absolute).
    pub root: PathBuf,
    /// State directory (default `<root>/.xbundle`): `cache/` (CAS + action cache), `state/`
    /// (stat cache, ledger, clock) and `lock`.
    pub state_dir: PathBuf,
    /// Cache directory (default `<state_dir>/cache`); may be shared between workspaces.
    pub cache_dir: PathBuf,
    /// Commands run at once here (`-j`; default [`default_jobs`]).
    pub jobs: usize,
    pub fail_fast: bool,
    /// Ignore cache reads (results are still written).
    pub force: bool,
    /// The environment tasks see and declared variables are read from.
    pub env: BTreeMap<OsString, OsString>,
    /// Root-relative paths or globs the engine never removes, restores or writes, whatever a
    /// task or a cache entry says (e.g. `bundle.toml`); `.git` paths and the engine's own
    /// directories are always protected (see [`crate::guard`]).
    pub protected: Vec<String>,
    /// The remote tier behind the local store (see [`crate::remote`]), if any.
    pub remote: Option<RemoteCache>,
    /// A remote executor for tasks that can run remotely (see [`crate::remote_exec`]), if any.
    pub executor: Option<RemoteExecution>,
}

/// How many commands run at once by default: two more than the cores (ninja's choice beyond two
/// cores; 2 on one core), since a command spends part of its life off the processor (starting,
/// waiting on its own children, being waited for) and the engine's own work for a task
/// (hashing its inputs and outputs) runs beside the commands. On two cores, ninja's 3 left the
/// processors idle at every hand-over: a cold build of 1,000 commands of 100 inputs each took a
/// median 1844 ms with 3 and 1796 ms with 4 (6 interleaved rounds; 200 commands: 391 and 386
/// ms), and earlier 200 commands took 851 ms with 3 against 994 ms with 2.
pub fn default_jobs() -> usize {
    jobs_for(cores())
}

/// The cores this process may use (`available_parallelism`: its affinity and cgroup quota),
/// found once per process: each look reads `/proc/self/cgroup` and the quota's files, and the
/// binary's start (its allocator's arenas) asks before the engine's `-j` does.
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn jobs_for(cores: usize) -> usize {
    match cores {
        0 | 1 => 2,
        cores => cores + 2,
    }
}

/// The directory of the stat cache, the clock and the ledger, in the state directory.
const STAT_DIR: &str = "state";

impl EngineConfig {
    pub fn new(root: impl Into<PathBuf>) -> EngineConfig {
        let root = root.into();
        let state_dir = root.join(".xbundle");
        EngineConfig {
            cache_dir: state_dir.join("cache"),
            state_dir,
            root,
            jobs: default_jobs(),
            fail_fast: false,
            force: false,
            env: std::env::vars_os().collect(),
            protected: Vec::new(),
            remote: None,
            executor: None,
        }
    }

    /// The state directory, reached from the root without following a link when it lies there.
    fn state_place(&self) -> Place {
        Place::within(&self.root, &self.state_dir)
    }
}

/// The expected outcome of a task, computed without running anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// The tree already holds this key's outputs.
    UpToDate,
    /// The key is in the cache; `files` outputs would be restored.
    Restore { files: usize },
    /// The task would run, for these reasons.
    Run(Vec<DirtyReason>),
    /// Depends on tasks that would run; whether it runs depends on their outputs.
    DependsOnChanges(Vec<TaskId>),
}

#[derive(Clone, Debug)]
pub struct Probe {
    pub id: TaskId,
    pub expected: Expected,
    pub key: Option<Digest>,
    pub warnings: Vec<String>,
}

/// A content-addressed task engine over one workspace.
pub struct Engine {
    config: EngineConfig,
    /// The state directory (see [`Place`]: inside the workspace, reached without a link), its
    /// `state/` (stat cache, clock) and its staging area `tmp/`.
    state: Place,
    stat_place: Place,
    staging: Place,
    store: Store,
    ledger: Ledger,
    cancel: Cancel,
    /// The remote tier's state in the current run.
    remote: Option<Session>,
    /// The remote executor's state in the current run.
    executor: Option<ExecSession>,
    /// Bounds the tasks running locally: `-j` of them (fewer when `-j` also counts remote
    /// ones), while one more worker (`-j` more with a remote executor) keys, looks up and
    /// restores.
    local_slots: LocalSlots,
    /// Set once a failure stops a `--fail-fast` run: a worker that gets a local slot after it
    /// starts nothing.
    halted: AtomicBool,
    /// Digests of local executables remote plans send, by path, with the stat they had.
    executables: Mutex<HashMap<PathBuf, (FileStat, Digest)>>,
    /// How this run starts its commands.
    spawning: crate::task::Spawning,
    /// The stat cache, loaded ahead for the first run (see [`Engine::preload_stats`]).
    preloaded: Mutex<Option<Preload>>,
}

/// What a run or a probe works in: the confined root and the protected paths.
struct Workspace {
    root: Dir,
    canonical_root: PathBuf,
    guard: Guard,
}

impl Workspace {
    fn tree(&self) -> Tree<'_> {
        Tree {
            root: &self.root,
            canonical_root: &self.canonical_root,
            never_enter: self.guard.own_dirs(),
            listings: None,
            stat_when_opened: false,
            room_before: 0,
        }
    }

    /// [`Workspace::tree`] whose walks use (and feed) the listings kept with `stats`.
    fn listed_tree<'a>(&'a self, stats: &'a StatCache) -> Tree<'a> {
        Tree {
            listings: Some(stats),
            ..self.tree()
        }
    }

    /// The task's working directory; `Ok(None)` when it does not exist.
    fn cwd(&self, spec: &TaskSpec) -> Result<Option<Dir>, String> {
        self.root
            .open_dir(&spec.cwd)
            .map_err(|err| format!("working directory: {err}"))
    }
}

/// Why a cached result could not be put in place.
enum RestoreError {
    /// The entry or a blob is bad: a warning, the entry is removed, the task runs.
    Unusable(String),
    /// The entry does not fit the tree as it is now (a directory where it has a file, a
    /// directory removed under the restore): a warning, the task runs, the entry is kept.
    Misfit(String),
    /// The work tree refused (a link where a directory is expected, …): the task fails.
    Tree(String),
    /// The run was cancelled during the restore.
    Stopped,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Engine {
        let state = config.state_place();
        let stat_place = state.join(STAT_DIR);
        Engine {
            store: Store::at(Place::within(&config.root, &config.cache_dir)),
            ledger: Ledger::open(stat_place.join("ledger")),
            stat_place,
            staging: state.join("tmp"),
            state,
            remote: config.remote.clone().map(Session::new),
            executor: config.executor.clone().map(ExecSession::new),
            local_slots: LocalSlots::new(match &config.executor {
                Some(execution) => execution.local_jobs.min(config.jobs),
                None => config.jobs,
            }),
            config,
            cancel: Cancel::new(),
            halted: AtomicBool::new(false),
            executables: Mutex::new(HashMap::new()),
            spawning: crate::task::Spawning::default(),
            preloaded: Mutex::new(None),
        }
    }

    /// Starts loading, on a thread of its own, the stat cache of the engine `config` will make,
    /// for [`Engine::use_preloaded`]: the front end starts it before it reads its
    /// configuration, which the load then overlaps.
    pub fn preload_stats(config: &EngineConfig) -> Preload {
        Preload::start(config.state_place().join(STAT_DIR))
    }

    /// Gives the next run the stat cache [`Engine::preload_stats`] started loading: used when
    /// the run, once it holds its lock, finds the very files it read (else loaded again).
    pub fn use_preloaded(&self, preload: Preload) {
        *self.preloaded.lock().unwrap_or_else(|e| e.into_inner()) = Some(preload);
    }

    /// Every directory the engine keeps its own files in: the state directory, its `state/`,
    /// `state/ledger/` and staging `tmp/`, the cache and its `cas/` and `ac/`.
    pub fn places(&self) -> Vec<Place> {
        let mut places = vec![
            self.state.clone(),
            self.stat_place.clone(),
            self.ledger.place().clone(),
            self.staging.clone(),
        ];
        places.extend(self.store.places());
        places
    }

    /// Checks that every place of [`Engine::places`] that exists is a directory reached without
    /// following a link (below the workspace root, or below the cache directory the user named).
    /// Every run and maintenance command relies on it anyway; front ends call this first to say
    /// so before anything else happens.
    pub fn check_places(&self) -> Result<(), ConfineError> {
        for place in self.places() {
            place.open()?;
        }
        // The lock files, where they exist, are regular files (a link is never followed).
        for place in [&self.state, self.store.place()] {
            if let Some(dir) = place.open()?
                && let Some((kind, _)) = dir.lstat("lock")?
                && kind != Kind::File
            {
                return Err(ConfineError::NotRegular {
                    path: place.display("lock"),
                    what: match kind {
                        Kind::Symlink => "a symbolic link",
                        Kind::Dir => "a directory",
                        _ => "a FIFO, socket or device",
                    },
                });
            }
        }
        Ok(())
    }

    /// The workspace lock (exclusive, on `<state>/lock`): held by a build, and by cache
    /// maintenance with [`Store::lock`] after it.
    pub fn lock_workspace(
        &self,
        on_wait: impl FnOnce(),
        cancelled: &dyn Fn() -> bool,
    ) -> io::Result<FileLock> {
        let state = self.state.create().map_err(io::Error::other)?;
        FileLock::acquire_in(&state, "lock", LockMode::Exclusive, on_wait, cancelled)
    }

    /// The handle that stops this engine's runs (see [`crate::cancel`]); the front end calls
    /// [`Cancel::cancel`] from its signal handling.
    pub fn cancel_handle(&self) -> Cancel {
        self.cancel.clone()
    }

    /// Opens the root and works out the protected paths.
    fn workspace(&self) -> io::Result<Workspace> {
        let root = Dir::open_root(&self.config.root).map_err(io::Error::other)?;
        let canonical_root =
            std::fs::canonicalize(&self.config.root).unwrap_or_else(|_| self.config.root.clone());
        let mut own_dirs = Vec::new();
        for dir in [&self.config.state_dir, &self.config.cache_dir] {
            let lexical = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
            let canonical = std::fs::canonicalize(dir).ok();
            let candidates = [
                lexical.strip_prefix(&self.config.root).ok(),
                canonical
                    .as_deref()
                    .and_then(|c| c.strip_prefix(&canonical_root).ok()),
            ];
            for relative in candidates.into_iter().flatten() {
                let relative = relative.to_string_lossy().into_owned();
                // A cache at the root itself (refused by the front end): what the store makes
                // there is still the engine's.
                let owned = if relative.is_empty() {
                    vec!["cas".to_string(), "ac".to_string(), "lock".to_string()]
                } else {
                    vec![relative]
                };
                for relative in owned {
                    if !own_dirs.contains(&relative) {
                        own_dirs.push(relative);
                    }
                }
            }
        }
        let guard = Guard::new(&self.config.protected, own_dirs).map_err(io::Error::other)?;
        Ok(Workspace {
            root,
            canonical_root,
            guard,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The workspace lock, then the store's lock (shared: other workspaces' builds may use the
    /// same cache; `gc`, `verify` and `clean` wait for every build). Always in this order.
    fn lock(&self, reporter: &dyn Reporter) -> io::Result<(FileLock, FileLock)> {
        let cancelled = || self.cancel.is_cancelled();
        let workspace = self.lock_workspace(
            || {
                reporter.report(Event::Warning {
                    id: None,
                    message: "blocking: waiting for another xbundle run to release the workspace lock",
                })
            },
            &cancelled,
        )?;
        let store = self.store.lock(
            LockMode::Shared,
            || {
                reporter.report(Event::Warning {
                    id: None,
                    message: "blocking: waiting for cache maintenance (gc, verify, clean) to release the cache lock",
                })
            },
            &cancelled,
        )?;
        Ok((workspace, store))
    }

    /// Checks a cache entry as [`Engine::run`] would before restoring it: the structural rules
    /// and protected paths always, and `graph`'s declared outputs for the entry's task when the
    /// graph has it (see [`crate::guard`]). For `cache verify`.
    pub fn check_entry(
        &self,
        result: &ActionResult,
        graph: Option<&TaskGraph>,
    ) -> Result<(), String> {
        let workspace = self.workspace().map_err(|err| err.to_string())?;
        let spec = graph.and_then(|graph| graph.get(&TaskId::new(result.task.as_str())));
        match spec {
            Some(spec) => {
                let outputs = Patterns::new(&spec.outputs).map_err(|err| err.to_string())?;
                let declared = DeclaredOutputs {
                    cwd: &spec.cwd,
                    outputs: &outputs,
                };
                check_entry(result, &workspace.guard, Some(&declared))
            }
            None => check_entry(result, &workspace.guard, None),
        }
    }

    /// Removes this workspace's build state, and only the engine's own files in it: the stat
    /// cache, the clock, the boot mark, ledger entries, temporary files (staging, unfinished
    /// atomic writes), then the directories holding them once empty. The lock file stays
    /// (others may be waiting on it), and so does anything else found there. Returns how many
    /// files were removed.
    ///
    /// Call with the workspace lock held.
    pub fn clean_state(&self) -> io::Result<u64> {
        let state = self.stat_place.clone();
        let mut removed = 0;
        type Own<'a> = (&'a Place, &'a dyn Fn(&str) -> bool);
        let own_files: [Own<'_>; 3] = [
            (self.ledger.place(), &|name| {
                is_temp_name(name) || crate::ledger::is_own_name(name)
            }),
            (&state, &|name| {
                matches!(
                    name,
                    crate::statcache::FILE
                        | crate::statcache::DELTA
                        | crate::statcache::CLOCK
                        | crate::listings::FILE
                        | crate::fsutil::BOOT_MARK
                ) || is_temp_name(name)
            }),
            (&self.staging, &is_temp_name),
        ];
        for (place, own) in own_files {
            if let Some(dir) = place.open().map_err(io::Error::other)? {
                removed += crate::store::remove_own_files(&dir, own)?;
            }
        }
        // Then the directories, once empty (the ledger before the state holding it).
        for (parent, name) in [
            (&state, "ledger"),
            (&self.state, "state"),
            (&self.state, "tmp"),
        ] {
            if let Some(dir) = parent.open().map_err(io::Error::other)? {
                dir.remove_empty_dir(name).map_err(io::Error::other)?;
            }
        }
        Ok(removed)
    }

    /// Where restores stage their temporary copies; emptied at the start of every run.
    fn staging(&self) -> &Place {
        &self.staging
    }

    /// The directory of the stat cache and the clock file.
    fn stat_place(&self) -> &Place {
        &self.stat_place
    }

    /// Forgets every place's kept handle (see [`Place`]): a run or a probe opens and checks
    /// them anew.
    fn forget_places(&self) {
        for place in self.places() {
            place.forget();
        }
        self.store.forget_handles();
    }

    /// Runs `targets` and their dependencies.
    pub fn run(
        &self,
        graph: &TaskGraph,
        targets: &[TaskId],
        reporter: &dyn Reporter,
    ) -> io::Result<RunSummary> {
        let started = Instant::now();
        self.forget_places();
        self.spawning.start(&self.config.env);
        let _locks = match self.lock(reporter) {
            Ok(locks) => locks,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {
                let summary = RunSummary {
                    interrupted: true,
                    duration_ms: started.elapsed().as_millis() as u64,
                    ..RunSummary::default()
                };
                reporter.report(Event::BuildFinished(&summary));
                return Ok(summary);
            }
            Err(err) => return Err(err),
        };
        let workspace = self.workspace()?;
        // Leftovers of a killed run; nothing else uses this directory while we hold the lock.
        // Restores create it when they need it, so a no-op run touches nothing here.
        if let Some(staging) = self.staging().open().map_err(io::Error::other)? {
            crate::store::remove_own_files(&staging, &is_temp_name)?;
        }
        let stat_dir = self.stat_place().create().map_err(io::Error::other)?;
        // Likewise the unfinished atomic writes of a run killed while it wrote the clock, the
        // stat cache or a ledger entry (no other process writes there while we hold the lock).
        crate::store::remove_own_files(&stat_dir, &is_temp_name)?;
        // And the files of an earlier version's ledger (one per task), which this one never reads.
        if let Some(ledger) = self.ledger.place().open().map_err(io::Error::other)? {
            crate::store::remove_own_files(&ledger, &|name| {
                is_temp_name(name) || crate::ledger::is_legacy_name(name)
            })?;
        }
        self.ledger.reload();
        let preloaded = self
            .preloaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .and_then(|preload| preload.take(&stat_dir));
        let stats = match preloaded {
            Some(stats) => stats,
            None => StatCache::load(&stat_dir)?,
        };
        // Before anything is run or restored: what a power cut could tear from here on is then
        // never trusted after the reboot (see `Durability`).
        if let Err(err) = stats.mark_boot() {
            reporter.report(Event::Warning {
                id: None,
                message: &format!(
                    "could not mark this boot in {} ({err}); the stat cache is not saved, so \
                     the next run hashes every file again",
                    stat_dir.path().display()
                ),
            });
        }
        let selected = graph.closure(targets);
        reporter.report(Event::BuildStarted {
            tasks: selected.len(),
        });
        if let Some(session) = &self.remote {
            session.begin();
        }
        if let Some(session) = &self.executor {
            session.begin();
        }
        // Uploads run beside the tasks, on a thread of their own; the run waits for them here,
        // at its end, never before.
        let mut summary = std::thread::scope(|scope| {
            if let Some(session) = &self.remote
                && session.writes()
            {
                let queue = session.open_queue();
                scope.spawn(move || {
                    let stop = || self.cancel.is_cancelled();
                    session.upload_all(&self.store, queue, &stop, reporter);
                });
            }
            let summary = self.schedule(graph, &selected, &workspace, &stats, reporter);
            // Every command was waited for: the reaper is told so and goes (a handle on the
            // cancellation kept elsewhere, by a signal thread, would keep it to the exit).
            self.cancel.end_reaper();
            if let Some(session) = &self.remote {
                session.close_queue();
            }
            summary
        });
        summary.uploaded = self.remote.as_ref().map_or(0, Session::uploaded);
        release_freed_memory();
        // What this run stored (run or fetched), made durable now with `XBUNDLE_FSYNC=end`
        // (see `Durability`).
        if let Err(err) = self.store.sync_published() {
            reporter.report(Event::Warning {
                id: None,
                message: &format!("could not flush the cache to disk: {err}"),
            });
        }
        // Files written in the clock tick of their hashing (the last tasks' outputs) are read
        // again now, while hot, once the clock has moved past them, instead of by the next run.
        if !self.cancel.is_cancelled() {
            stats.settle(
                &|relative| workspace.root.open_file(relative).map_err(io::Error::other),
                SETTLE_MAX_BYTES,
            );
        }
        if let Err(err) = self.ledger.finish() {
            reporter.report(Event::Warning {
                id: None,
                message: &format!("could not compact the ledger: {err}"),
            });
        }
        if let Err(err) = stats.save(&stat_dir) {
            reporter.report(Event::Warning {
                id: None,
                message: &format!("could not save the stat cache: {err}"),
            });
        }
        summary.duration_ms = started.elapsed().as_millis() as u64;
        reporter.report(Event::BuildFinished(&summary));
        Ok(summary)
    }

    fn schedule(
        &self,
        graph: &TaskGraph,
        selected: &[TaskId],
        workspace: &Workspace,
        stats: &StatCache,
        reporter: &dyn Reporter,
    ) -> RunSummary {
        let in_run: HashSet<&TaskId> = selected.iter().collect();
        let mut waiting: HashMap<TaskId, usize> = HashMap::new();
        let mut ready: VecDeque<TaskId> = VecDeque::new();
        for id in selected {
            let spec = graph.get(id).expect("selected tasks exist");
            let count = spec.deps.iter().filter(|d| in_run.contains(d)).count();
            waiting.insert(id.clone(), count);
            if count == 0 {
                ready.push_back(id.clone());
            }
        }
        let mut outputs: HashMap<TaskId, Digest> = HashMap::new();
        let mut poisoned: HashSet<TaskId> = HashSet::new();
        let mut reported: HashSet<TaskId> = HashSet::new();
        let mut summary = RunSummary::default();
        let mut stopping = false;
        let mut in_flight = 0usize;
        // One worker more than jobs: while `-j` commands run (each holding a local slot), the
        // extra worker keys the next ready tasks (stats and hashes their inputs, looks them
        // up, restores hits), so that work overlaps the commands instead of waiting for them.
        // (Twice as many, as before, kept more threads than cores busy keying at once for no
        // gain: at 200 tasks x 100 files on two cores, a cold build took as long with four
        // workers as with six, a no-op too, and its peak RSS was 0.3 MiB lower.) With a remote
        // executor, twice `-j`: a task executed remotely holds its worker, not a local slot,
        // so tasks that go remote keep going while `-j` local ones run.
        let workers = match self.config.executor {
            Some(_) => self.config.jobs.max(1) * 2,
            None => self.config.jobs.max(1) + 1,
        }
        .min(selected.len().max(1));
        // Ready tasks handed out ahead, up to twice the workers: a worker that finishes one
        // takes the next from the queue instead of sleeping until the coordinator wakes and
        // sends it (a no-op of 200 tasks: 4% less CPU, fewer context switches). A queued task
        // still starts nothing once the run is interrupted or halted (see `execute`).
        let queue_depth = workers * 2;
        self.halted.store(false, Ordering::Relaxed);

        let skip = |id: &TaskId, summary: &mut RunSummary, why: &str| {
            summary.skipped += 1;
            reporter.report(Event::TaskFinished(&TaskReport {
                id: id.clone(),
                status: TaskStatus::Skipped,
                duration_ms: 0,
                reasons: Vec::new(),
                restored: 0,
                key: None,
                output: None,
                error: Some(why.to_string()),
                source: None,
                executed: None,
            }));
        };
        // Marks `id` done; returns dependents that became ready.
        let release = |id: &TaskId,
                       failed: bool,
                       waiting: &mut HashMap<TaskId, usize>,
                       poisoned: &mut HashSet<TaskId>,
                       ready: &mut VecDeque<TaskId>| {
            for dependent in graph.dependents(id) {
                if let Some(count) = waiting.get_mut(&dependent) {
                    if failed {
                        poisoned.insert(dependent.clone());
                    }
                    *count -= 1;
                    if *count == 0 {
                        ready.push_back(dependent);
                    }
                }
            }
        };

        let (job_tx, job_rx) = mpsc::channel::<(&TaskSpec, BTreeMap<String, Digest>)>();
        let job_rx = Mutex::new(job_rx);
        std::thread::scope(|scope| {
            let (done_tx, done_rx) = mpsc::channel::<TaskReport>();
            for _ in 0..workers {
                let done_tx = done_tx.clone();
                let job_rx = &job_rx;
                scope.spawn(move || {
                    loop {
                        let job = job_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok((spec, deps)) = job else { break };
                        let report = self.execute(spec, deps, workspace, stats, reporter);
                        if done_tx.send(report).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(done_tx);

            loop {
                stopping |= self.cancel.is_cancelled();
                while !stopping
                    && in_flight < queue_depth
                    && let Some(id) = ready.pop_front()
                {
                    if poisoned.contains(&id) {
                        skip(&id, &mut summary, "a dependency failed");
                        reported.insert(id.clone());
                        release(&id, true, &mut waiting, &mut poisoned, &mut ready);
                        continue;
                    }
                    let spec = graph.get(&id).expect("exists");
                    let deps = spec
                        .deps
                        .iter()
                        .map(|dep| (dep.to_string(), outputs[dep]))
                        .collect();
                    job_tx.send((spec, deps)).expect("workers alive");
                    in_flight += 1;
                }
                if in_flight == 0 {
                    break;
                }
                let report = done_rx.recv().expect("workers alive");
                in_flight -= 1;
                reported.insert(report.id.clone());
                match report.status {
                    TaskStatus::Ran => summary.ran += 1,
                    TaskStatus::Cached => summary.cached += 1,
                    TaskStatus::Stopped => summary.stopped += 1,
                    TaskStatus::Skipped
                        if self.cancel.is_cancelled() || self.halted.load(Ordering::Relaxed) =>
                    {
                        summary.skipped += 1
                    }
                    TaskStatus::Failed | TaskStatus::Skipped => {
                        summary.failed += 1;
                        summary
                            .failures
                            .push((report.id.clone(), report.error.clone().unwrap_or_default()));
                        if self.config.fail_fast {
                            stopping = true;
                            // Workers still waiting for a local slot start nothing more.
                            self.halted.store(true, Ordering::Relaxed);
                        }
                    }
                }
                match report.output {
                    Some(output) => {
                        outputs.insert(report.id.clone(), output);
                        release(&report.id, false, &mut waiting, &mut poisoned, &mut ready);
                    }
                    None => release(&report.id, true, &mut waiting, &mut poisoned, &mut ready),
                }
            }
            drop(job_tx);
        });
        summary.interrupted = self.cancel.is_cancelled();
        for id in selected {
            if !reported.contains(id) {
                let why = if summary.interrupted {
                    "not started: the run was interrupted"
                } else if poisoned.contains(id) {
                    "a dependency failed"
                } else {
                    "not started: the run stopped at the first failure (--fail-fast)"
                };
                skip(id, &mut summary, why);
            }
        }
        summary
    }

    /// Why a task starts nothing now, if it does not: the run was `interrupted`, or a failure
    /// halted it (`--fail-fast`).
    fn not_starting(&self, interrupted: bool) -> Option<&'static str> {
        if interrupted {
            Some("not started: the run was interrupted")
        } else if self.halted.load(Ordering::Relaxed) {
            Some("not started: the run stopped at the first failure (--fail-fast)")
        } else {
            None
        }
    }

    /// The environment digests of a task's declared variables.
    fn env_components(&self, spec: &TaskSpec) -> BTreeMap<String, Option<Digest>> {
        spec.env
            .iter()
            .map(|name| {
                let value = self
                    .config
                    .env
                    .get(&OsString::from(name))
                    .map(|value| Digest::of_bytes(value.as_encoded_bytes()));
                (name.clone(), value)
            })
            .collect()
    }

    /// What a cwd-relative path is prefixed with to make it root-relative: `cwd/`, or nothing
    /// for the root itself.
    fn cwd_prefix(spec: &TaskSpec) -> String {
        if spec.cwd.is_empty() {
            String::new()
        } else {
            format!("{}/", spec.cwd)
        }
    }

    fn root_relative(spec: &TaskSpec, relative: &str) -> String {
        if spec.cwd.is_empty() {
            relative.to_string()
        } else {
            // Sized once (no formatting machinery, no regrowth): once per input of every run.
            let mut path = String::with_capacity(spec.cwd.len() + 1 + relative.len());
            path.push_str(&spec.cwd);
            path.push('/');
            path.push_str(relative);
            path
        }
    }

    /// The task's key components; also the input patterns that matched nothing.
    fn components(
        &self,
        spec: &TaskSpec,
        globs: &TaskGlobs,
        deps: BTreeMap<String, Digest>,
        workspace: &Workspace,
        cwd: Option<&Dir>,
        stats: &StatCache,
    ) -> Result<(KeyComponents, Vec<String>), String> {
        let (inputs, outputs) = (&globs.inputs, &globs.outputs);
        let mut components = KeyComponents {
            kind: spec.kind.clone(),
            impl_version: spec.impl_version,
            params: spec.params.clone(),
            deps,
            env: self.env_components(spec),
            tools: spec.tools.clone(),
            cwd: spec.cwd.clone(),
            outputs: spec.outputs.clone(),
            ..KeyComponents::default()
        };
        let mut unmatched = Vec::new();
        if !inputs.is_empty() {
            let Some(cwd) = cwd else {
                // No working directory yet: no input can match.
                return Ok((components, inputs.includes()));
            };
            // With nothing recorded to vouch for them, every input is read: each is opened
            // and then stat'ed through the open file, instead of stat'ed by path first.
            let prefix = Self::cwd_prefix(spec);
            let tree = Tree {
                stat_when_opened: stats.loaded_nothing(),
                room_before: prefix.len(),
                ..workspace.listed_tree(stats)
            };
            let (found, missing) = expand(&tree, cwd, inputs, Some(outputs), Purpose::Read)
                .map_err(|err| format!("reading inputs: {err}"))?;
            unmatched = missing;
            // `found` is sorted and unique (and a common prefix keeps it so): the map is built
            // in one pass from the sorted list instead of by one search per insertion.
            let mut inputs = Vec::with_capacity(found.len());
            let mut opener = Opener::new(cwd);
            // Files whose reads were started (not in the page cache), finished in order once
            // the next ones are under way too: their reads from the disk overlap. Each holds a
            // descriptor.
            let mut started = VecDeque::new();
            let finish = |(at, relative, reading): (usize, String, Started),
                          inputs: &mut Vec<(String, Digest)>| {
                let hashed = stats
                    .finish_digest(&relative, reading)
                    .map_err(|err| format!("reading input {relative}: {err}"))?;
                inputs[at] = (relative, hashed.digest);
                Ok::<_, String>(())
            };
            // Files read whole at once (small, in the page cache), hashed side by side once
            // there are enough of them: their places in `inputs` are filled then.
            let mut batch = ReadBatch::new();
            // Each file's root-relative path as it is looked up, in one buffer for them all.
            let mut path = String::new();
            for mut file in found {
                path.clear();
                path.push_str(&prefix);
                path.push_str(&file.relative);
                // Below the working directory, never through a link (one `openat` of its name
                // in its directory's handle), unless the walk found a link to a file inside
                // the tree.
                let at = inputs.len();
                let reading = match file.stat {
                    Some(stat) => {
                        stats.start_digest(&path, stat, &mut || opener.open(&file), &mut batch, at)
                    }
                    None => match opener.open(&file) {
                        Ok(opened) => stats.start_digest_opened(&path, opened, &mut batch, at),
                        // Removed since its directory was read: no input, as when the walk
                        // stats it.
                        Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                        Err(err) => Err(err),
                    },
                }
                .map_err(|err| format!("reading input {path}: {err}"))?;
                // The path kept in the key: the walk's own string, prefixed in the room it
                // left before the path (no second allocation).
                let mut relative = std::mem::take(&mut file.relative);
                relative.insert_str(0, &prefix);
                match reading {
                    Reading::Hashed(hashed) => inputs.push((relative, hashed.digest)),
                    Reading::Batched => {
                        inputs.push((relative, Digest::EMPTY));
                        if batch.is_full() {
                            stats.finish_batch(&mut batch, &mut inputs);
                        }
                    }
                    Reading::Started(reading) => {
                        if started.len() >= READS_AHEAD
                            && let Some(first) = started.pop_front()
                        {
                            finish(first, &mut inputs)?;
                        }
                        // A place kept in the sorted list, filled when the read is finished.
                        started.push_back((inputs.len(), relative, reading));
                        inputs.push((String::new(), Digest::EMPTY));
                    }
                }
            }
            stats.finish_batch(&mut batch, &mut inputs);
            for reading in started {
                finish(reading, &mut inputs)?;
            }
            components.inputs = inputs.into_iter().collect();
        }
        Ok((components, unmatched))
    }

    /// Makes the tree hold exactly `result`'s outputs (under the task's output globs).
    /// Returns how many files were written or removed, and what had been changed by hand.
    ///
    /// The entry is checked whole first ([`check_entry`]); nothing is written for an entry that
    /// fails, and nothing is ever written or removed through a link or at a protected path.
    fn materialize(
        &self,
        spec: &TaskSpec,
        globs: &TaskGlobs,
        result: &ActionResult,
        workspace: &Workspace,
        cwd: Option<&Dir>,
        stats: &StatCache,
    ) -> Result<(usize, Vec<String>), RestoreError> {
        let declared = DeclaredOutputs {
            cwd: &spec.cwd,
            outputs: &globs.outputs,
        };
        check_entry(result, &workspace.guard, Some(&declared)).map_err(RestoreError::Unusable)?;
        let found = match cwd {
            Some(cwd) => {
                expand(
                    &workspace.tree(),
                    cwd,
                    &globs.outputs,
                    None,
                    Purpose::Remove,
                )
                .map_err(|err| RestoreError::Tree(err.to_string()))?
                .0
            }
            None => Vec::new(),
        };
        let mut present: HashMap<String, Found> = found
            .into_iter()
            .map(|file| (Self::root_relative(spec, &file.relative), file))
            .collect();
        // Files under the output globs that this result does not have are stale; refuse before
        // writing anything if one of them is protected.
        for relative in present.keys() {
            if !result.outputs.iter().any(|file| &file.path == relative) {
                workspace.guard.check(relative).map_err(|why| {
                    RestoreError::Tree(format!("refusing to remove a stale output: {why}"))
                })?;
            }
        }
        // Created when the first file is restored (a no-op run creates nothing); when it cannot
        // be, copies are made beside their destination.
        let mut staging: Option<Option<std::sync::Arc<Dir>>> = None;
        let cancelled = || self.cancel.is_cancelled();
        let mut written = 0;
        let mut modified = Vec::new();
        for file in &result.outputs {
            if cancelled() {
                return Err(RestoreError::Stopped);
            }
            // What the tree holds there now (`present` is empty without a cwd).
            let current = present.remove(&file.path).and_then(|found| {
                let (stat, cwd) = (found.stat?, cwd?);
                Some(stats.digest_with(&file.path, stat, &mut || found.open_to_read(cwd)))
            });
            let intact = matches!(&current, Some(Ok(h)) if h.digest == file.digest && h.stat.executable == file.executable);
            if intact {
                continue;
            }
            // Written into in place while it was its own blob: the blob changed with it.
            if let Some(Ok(hashed)) = &current
                && hashed.digest != file.digest
                && self
                    .store
                    .remove_blob_if_file(&file.digest, hashed.stat.inode)
            {
                return Err(RestoreError::Unusable(format!(
                    "output {} was changed in place since the last run, and its cached copy \
                     with it: they were one file",
                    file.path
                )));
            }
            modified.push(match current {
                Some(Ok(_)) => format!("{} was modified", file.path),
                _ => format!("{} was deleted", file.path),
            });
            let staging = staging.get_or_insert_with(|| self.staging().create().ok());
            let stat = self
                .store
                .restore_file(
                    file,
                    &workspace.root,
                    &file.path,
                    staging.as_deref(),
                    &cancelled,
                )
                .map_err(|err| match err {
                    // A link in the way: the user's to fix, named in the task's error.
                    StoreError::Tree(err @ ConfineError::Symlink { .. }) => {
                        RestoreError::Tree(err.to_string())
                    }
                    // The cache's own directories refused: named in the task's error.
                    err @ StoreError::Place(_) => RestoreError::Tree(err.to_string()),
                    StoreError::Interrupted => RestoreError::Stopped,
                    // The entry or its blob is wrong.
                    err @ (StoreError::Corrupt { .. } | StoreError::MissingBlob { .. }) => {
                        RestoreError::Unusable(err.to_string())
                    }
                    // A directory where the entry has a file (or the reverse), a directory
                    // removed under the restore, a full disk: run the task instead.
                    err @ (StoreError::Tree(_) | StoreError::Io { .. }) => {
                        RestoreError::Misfit(err.to_string())
                    }
                })?;
            stats.record(&file.path, stat, file.digest, None);
            written += 1;
        }
        let mut stale: Vec<String> = present.into_keys().collect();
        stale.sort();
        for relative in stale {
            workspace
                .root
                .remove_file(&relative)
                .map_err(|err| RestoreError::Tree(err.to_string()))?;
            modified.push(format!("{relative} is not an output of this version"));
            written += 1;
        }
        Ok((written, modified))
    }

    /// Reports the captured output of `result`: `replayed` for a restore, not for a task that
    /// just ran elsewhere (a remote execution).
    fn replay(&self, id: &TaskId, result: &ActionResult, replayed: bool, reporter: &dyn Reporter) {
        for (stream, stored) in [
            (Stream::Stdout, &result.stdout),
            (Stream::Stderr, &result.stderr),
        ] {
            let Some(stored) = stored else { continue };
            // In pieces, after the whole blob was verified: memory stays bounded.
            let streamed = self
                .store
                .stream_bytes(&stored.digest, stored.size, &mut |bytes| {
                    reporter.report(Event::Output {
                        id,
                        stream,
                        bytes,
                        replayed,
                    })
                });
            match streamed {
                Ok(()) => {}
                Err(err) => reporter.report(Event::Warning {
                    id: Some(id),
                    message: &format!("captured output could not be replayed: {err}"),
                }),
            }
        }
    }

    /// Keys, restores or runs one task. Never panics on task or store errors: they become a
    /// failed report.
    /// Keys, looks up, restores or runs one task (see the module docs). A local slot taken for
    /// it is released only after a failure has halted a `--fail-fast` run, so no worker
    /// waiting for that slot starts a task after the failure.
    fn execute(
        &self,
        spec: &TaskSpec,
        deps: BTreeMap<String, Digest>,
        workspace: &Workspace,
        stats: &StatCache,
        reporter: &dyn Reporter,
    ) -> TaskReport {
        let mut slot = None;
        let report = self.execute_holding(spec, deps, workspace, stats, reporter, &mut slot);
        if report.status == TaskStatus::Failed && self.config.fail_fast {
            self.halted.store(true, Ordering::Relaxed);
        }
        drop(slot);
        report
    }

    fn execute_holding<'s>(
        &'s self,
        spec: &TaskSpec,
        deps: BTreeMap<String, Digest>,
        workspace: &Workspace,
        stats: &StatCache,
        reporter: &dyn Reporter,
        slot: &mut Option<LocalSlot<'s>>,
    ) -> TaskReport {
        let started = Instant::now();
        let id = &spec.id;
        // A job queued before the run was interrupted or halted by a failure (`--fail-fast`)
        // starts nothing, as if it had never been handed out.
        if let Some(why) = self.not_starting(self.cancel.is_cancelled()) {
            let report = TaskReport {
                id: id.clone(),
                status: TaskStatus::Skipped,
                duration_ms: 0,
                reasons: Vec::new(),
                restored: 0,
                key: None,
                output: None,
                error: Some(why.into()),
                source: None,
                executed: None,
            };
            reporter.report(Event::TaskFinished(&report));
            return report;
        }
        let fail = |error: String, key: Option<Digest>, reasons: Vec<DirtyReason>| TaskReport {
            id: id.clone(),
            status: TaskStatus::Failed,
            duration_ms: started.elapsed().as_millis() as u64,
            reasons,
            restored: 0,
            key,
            output: None,
            error: Some(error),
            source: None,
            executed: None,
        };
        let warn = |message: &str| {
            reporter.report(Event::Warning {
                id: Some(id),
                message,
            })
        };

        let globs = match TaskGlobs::new(spec) {
            Ok(globs) => globs,
            Err(error) => {
                let report = fail(error, None, Vec::new());
                reporter.report(Event::TaskFinished(&report));
                return report;
            }
        };
        // The working directory, opened once for keying, restoring and running.
        let cwd = match workspace.cwd(spec) {
            Ok(cwd) => cwd,
            Err(error) => {
                let report = fail(error, None, Vec::new());
                reporter.report(Event::TaskFinished(&report));
                return report;
            }
        };
        let (components, unmatched) =
            match self.components(spec, &globs, deps, workspace, cwd.as_ref(), stats) {
                Ok(found) => found,
                Err(error) => {
                    let report = fail(error, None, Vec::new());
                    reporter.report(Event::TaskFinished(&report));
                    return report;
                }
            };
        for pattern in &unmatched {
            warn(&format!("input pattern `{pattern}` matches no file"));
        }
        let key = components.key();
        let last_key = self.ledger.last_key(id);

        // Set when an entry exists under the key but its discovered inputs changed.
        let mut discovered_reasons: Option<Vec<DirtyReason>> = None;
        if !self.config.force {
            let found = self.store.get_action(&key).map(|found| {
                found.filter(|result| {
                    let stale = self.discovered_stale(spec, &globs, result, workspace, stats);
                    if stale.is_empty() {
                        return true;
                    }
                    discovered_reasons = Some(stale);
                    false
                })
            });
            // A local miss: the remote tier, whose entry (checked, its blobs fetched and
            // verified, written to the local store) is then restored as a local hit.
            let mut source = "local";
            let found = match found {
                Ok(None) if discovered_reasons.is_none() => Ok(self
                    .remote_fetch(spec, &globs, &key, workspace, stats, reporter)
                    .and_then(|fetched| match fetched {
                        Ok(result) => {
                            source = self.remote.as_ref().map_or("remote", Session::source);
                            Some(result)
                        }
                        Err(stale) => {
                            discovered_reasons = Some(stale);
                            None
                        }
                    })),
                found => found,
            };
            match found {
                Ok(Some(result)) => {
                    match self.materialize(spec, &globs, &result, workspace, cwd.as_ref(), stats) {
                        Ok((restored, modified)) => {
                            let up_to_date = last_key == Some(key);
                            if up_to_date {
                                for problem in &modified {
                                    warn(&format!(
                                        "output {problem} since the last run; restored from the cache"
                                    ));
                                }
                            }
                            let reasons = if up_to_date {
                                Vec::new()
                            } else {
                                let reasons = self.reasons(id, &components, false);
                                self.record(
                                    id,
                                    key,
                                    components,
                                    "cached",
                                    reasons.clone(),
                                    reporter,
                                );
                                reasons
                            };
                            // A true no-op (the outputs already in place, the same key as
                            // last time) prints nothing, as cargo and ninja; a restore replays.
                            if !up_to_date || restored > 0 {
                                self.replay(id, &result, true, reporter);
                            }
                            let report = TaskReport {
                                id: id.clone(),
                                status: TaskStatus::Cached,
                                duration_ms: started.elapsed().as_millis() as u64,
                                reasons,
                                restored,
                                key: Some(key),
                                output: Some(result.output_digest()),
                                error: None,
                                source: Some(source),
                                executed: None,
                            };
                            reporter.report(Event::TaskFinished(&report));
                            return report;
                        }
                        Err(RestoreError::Unusable(problem)) => {
                            warn(&format!(
                                "cached result unusable ({problem}); running the task again"
                            ));
                            self.store.remove_action(&key);
                        }
                        Err(RestoreError::Misfit(problem)) => {
                            warn(&format!(
                                "cached result does not fit the tree ({problem}); running the task again"
                            ));
                        }
                        Err(RestoreError::Tree(error)) => {
                            let report = fail(
                                format!("restoring from the cache: {error}"),
                                Some(key),
                                Vec::new(),
                            );
                            reporter.report(Event::TaskFinished(&report));
                            return report;
                        }
                        Err(RestoreError::Stopped) => {
                            // Cut short: neither recorded nor cached; the next run restores it.
                            let report = TaskReport {
                                status: TaskStatus::Stopped,
                                error: Some("stopped: the run was interrupted".into()),
                                ..fail(String::new(), Some(key), Vec::new())
                            };
                            reporter.report(Event::TaskFinished(&report));
                            return report;
                        }
                    }
                }
                Ok(None) => {}
                Err(problem) => warn(&format!("{problem}; running the task again")),
            }
        }

        // Without an executor every task that runs here needs a local slot: taken before it
        // is reported started, so no more than `-j` tasks are ever shown running.
        if self.executor.is_none() {
            *slot = self.local_slots.acquire(&|| self.cancel.is_cancelled());
            if let Some(why) = self.not_starting(slot.is_none()) {
                let report = TaskReport {
                    status: TaskStatus::Skipped,
                    duration_ms: 0,
                    error: Some(why.to_string()),
                    ..fail(String::new(), None, Vec::new())
                };
                reporter.report(Event::TaskFinished(&report));
                return report;
            }
        }
        let reasons =
            discovered_reasons.unwrap_or_else(|| self.reasons(id, &components, self.config.force));
        reporter.report(Event::TaskStarted {
            id,
            reasons: &reasons,
        });
        if let Some(remote) = self.execute_remotely(
            spec,
            &globs,
            &components,
            workspace,
            cwd.as_ref(),
            stats,
            reporter,
        ) {
            let (mut result, found, clock) = match remote {
                RemoteOutcome::Ran(result, found, clock) => (*result, found, clock),
                RemoteOutcome::Failed(error) => {
                    let report = fail(error, Some(key), reasons);
                    reporter.report(Event::TaskFinished(&report));
                    return report;
                }
            };
            match self.materialize(spec, &globs, &result, workspace, cwd.as_ref(), stats) {
                Ok(_) => {
                    if let Err(error) = self.record_discovered(
                        spec,
                        &globs,
                        workspace,
                        &components,
                        stats,
                        (&mut result, &found, clock),
                        &warn,
                    ) {
                        let report = fail(error, Some(key), reasons);
                        reporter.report(Event::TaskFinished(&report));
                        return report;
                    }
                    let ran = Ran {
                        key,
                        components,
                        reasons,
                        started,
                        executed: "remote",
                    };
                    return self.finish_ran(id, ran, result, &warn, reporter);
                }
                Err(RestoreError::Tree(error)) => {
                    let report = fail(
                        format!("putting the remote result in place: {error}"),
                        Some(key),
                        reasons,
                    );
                    reporter.report(Event::TaskFinished(&report));
                    return report;
                }
                Err(RestoreError::Stopped) => {
                    let report = TaskReport {
                        status: TaskStatus::Stopped,
                        error: Some("stopped: the run was interrupted".into()),
                        ..fail(String::new(), Some(key), reasons)
                    };
                    reporter.report(Event::TaskFinished(&report));
                    return report;
                }
                Err(RestoreError::Unusable(problem) | RestoreError::Misfit(problem)) => {
                    warn(&format!(
                        "the remote result could not be put in place ({problem}); running the task here"
                    ));
                }
            }
        }
        // Local runs take a local slot: `-j` may exceed the cores when tasks also run remotely.
        if slot.is_none() {
            *slot = self.local_slots.acquire(&|| self.cancel.is_cancelled());
        }
        let outcome = match slot {
            Some(_) => self.run_action(spec, &globs, workspace, cwd, stats, reporter),
            None => Err("not started: the run was interrupted".to_string()),
        };
        if self.cancel.is_cancelled() {
            // Whatever it did, it may have been cut short: nothing of it is kept.
            let report = TaskReport {
                status: TaskStatus::Stopped,
                error: Some("stopped: the run was interrupted".into()),
                ..fail(String::new(), Some(key), reasons)
            };
            reporter.report(Event::TaskFinished(&report));
            return report;
        }
        let outcome = outcome.and_then(|(mut result, found, clock)| {
            self.record_discovered(
                spec,
                &globs,
                workspace,
                &components,
                stats,
                (&mut result, &found, clock),
                &warn,
            )?;
            Ok(result)
        });
        match outcome {
            Ok(result) => {
                let ran = Ran {
                    key,
                    components,
                    reasons,
                    started,
                    executed: "local",
                };
                self.finish_ran(id, ran, result, &warn, reporter)
            }
            Err(error) => {
                let report = fail(error, Some(key), reasons);
                reporter.report(Event::TaskFinished(&report));
                report
            }
        }
    }

    /// The remote tier's entry for `key`, checked as a local one, its blobs fetched into the
    /// local store and verified, then written to the local store: `None` on a miss (or with no
    /// remote tier, or once it is off), `Some(Err(reasons))` when its discovered inputs no longer
    /// hold here.
    #[allow(clippy::too_many_arguments)]
    fn remote_fetch(
        &self,
        spec: &TaskSpec,
        globs: &TaskGlobs,
        key: &Digest,
        workspace: &Workspace,
        stats: &StatCache,
        reporter: &dyn Reporter,
    ) -> Option<Result<ActionResult, Vec<DirtyReason>>> {
        let session = self.remote.as_ref()?;
        let declared = DeclaredOutputs {
            cwd: &spec.cwd,
            outputs: &globs.outputs,
        };
        let check = |result: &ActionResult| check_entry(result, &workspace.guard, Some(&declared));
        let result = session.lookup(key, &check, reporter)?;
        let stale = self.discovered_stale(spec, globs, &result, workspace, stats);
        if !stale.is_empty() {
            return Some(Err(stale));
        }
        if !session.fetch_blobs(&self.store, &result, reporter) {
            return None;
        }
        if let Err(err) = self.store.put_action(key, &result) {
            reporter.report(Event::Warning {
                id: Some(&spec.id),
                message: &format!(
                    "could not write the cache entry fetched from the remote cache: {err}"
                ),
            });
        }
        Some(Ok(result))
    }

    /// Runs the task on the remote executor when one is on and the task can run remotely:
    /// `None` means run it here (not eligible, or the executor failed: one warning for the run,
    /// see [`ExecSession::fail`]). The result's outputs (those the output globs match) and
    /// captured streams are fetched verified into the local store and the result is checked
    /// like a cache entry ([`check_entry`]); it is not stored yet.
    #[allow(clippy::too_many_arguments)]
    fn execute_remotely(
        &self,
        spec: &TaskSpec,
        globs: &TaskGlobs,
        components: &KeyComponents,
        workspace: &Workspace,
        cwd: Option<&Dir>,
        stats: &StatCache,
        reporter: &dyn Reporter,
    ) -> Option<RemoteOutcome> {
        let session = self.executor.as_ref().filter(|session| session.is_on())?;
        // A working directory that does not exist yet: the local run says so.
        let cwd = cwd?;
        let started = Instant::now();
        let id = &spec.id;
        let local = |why: String| {
            reporter.report(Event::Warning {
                id: Some(id),
                message: &format!("cannot run remotely ({why}); running it here"),
            });
            None
        };
        // What the action prepares (e.g. `go list`) is reported live like a local run's.
        let printed = TaskOutput::new(&spec.id, reporter);
        let context = self.action_context(spec, workspace, cwd.path(), &printed);
        // The clock before anything is read: a discovered input at least this new may have
        // changed while the task ran (see [`crate::discovered`]).
        let clock = self.clock_now(stats);
        let plan = match spec.action.prepare_remote(&context) {
            Ok(RemotePrep::NotRemote) => return None,
            Ok(RemotePrep::Local(why)) => return local(why),
            Ok(RemotePrep::Plan(plan)) => plan,
            Err(failure) => {
                printed.output(Stream::Stdout, &failure.stdout);
                printed.output(Stream::Stderr, &failure.stderr);
                return Some(RemoteOutcome::Failed(failure.message));
            }
        };
        drop(printed);
        // A toolchain a worker already said it lacks: here, silently (the first answer warned
        // for every task needing it). While another plan is asking for it, this one waits.
        let asking = match plan
            .toolchain
            .as_deref()
            .map(|toolchain| session.ask(toolchain))
        {
            Some(crate::remote_exec::Ask::Lacks) => return None,
            Some(crate::remote_exec::Ask::Go(asking)) => asking,
            None => None,
        };
        // What the command may write: the plan's paths, else the literal directory of each
        // output glob.
        let mut output_paths = Vec::new();
        for path in &plan.output_paths {
            if let Err(err) = crate::confine::check_relative(path) {
                return local(format!("output path {path:?}: {err}"));
            }
            output_paths.push(path.clone());
        }
        if let Some(depfile) = &plan.depfile {
            if let Err(err) = crate::confine::check_relative(depfile) {
                return local(format!("depfile {depfile:?}: {err}"));
            }
            output_paths.push(depfile.clone());
        }
        for pattern in spec.outputs.iter().filter(|_| plan.output_paths.is_empty()) {
            let (negated, pattern) = crate::files::split(pattern);
            if negated {
                continue;
            }
            let base = crate::files::walk_base(pattern);
            if base.is_empty() {
                return local(format!(
                    "output pattern `{pattern}` names no directory to collect"
                ));
            }
            output_paths.push(Self::root_relative(spec, &base));
        }
        // The input root: the dependencies' outputs, then the declared inputs (as keyed).
        let mut inputs: BTreeMap<String, InputFile> = BTreeMap::new();
        let mut on_disk: HashMap<Digest, InputSource> = HashMap::new();
        for dep in &spec.deps {
            let result = self
                .ledger
                .last_key(dep)
                .and_then(|key| self.store.get_action(&key).ok().flatten());
            let Some(result) = result else {
                return local(format!(
                    "the result of dependency {dep} is not in the cache"
                ));
            };
            for file in result.outputs {
                inputs.insert(
                    file.path.clone(),
                    InputFile {
                        path: file.path,
                        digest: file.digest,
                        size: file.size,
                        executable: file.executable,
                    },
                );
            }
        }
        for (path, digest) in &components.inputs {
            let stat = match workspace.root.lstat(path) {
                Ok(Some((Kind::File, stat))) => stat,
                _ => return local(format!("input {path} is no longer a regular file")),
            };
            on_disk.insert(*digest, InputSource::Tree(path.clone()));
            inputs.insert(
                path.clone(),
                InputFile {
                    path: path.clone(),
                    digest: *digest,
                    size: stat.size,
                    executable: stat.executable,
                },
            );
        }
        // The plan's extra inputs.
        for (path, input) in &plan.inputs {
            if let Err(err) = crate::confine::check_relative(path) {
                return local(format!("input path {path:?}: {err}"));
            }
            let file = match self.remote_input(workspace, stats, input, &mut on_disk) {
                Ok(file) => file,
                Err(why) => return local(why),
            };
            let file = InputFile {
                path: path.clone(),
                ..file
            };
            if let Some(other) = inputs.get(path)
                && other.digest != file.digest
            {
                return local(format!("two different inputs at {path}"));
            }
            inputs.insert(path.clone(), file);
        }
        let inputs: Vec<InputFile> = inputs.into_values().collect();
        let mut env = BTreeMap::new();
        for name in &spec.env {
            if let Some(value) = self.config.env.get(&OsString::from(name)) {
                let Some(value) = value.to_str() else {
                    return local(format!("the value of {name} is not UTF-8"));
                };
                env.insert(name.clone(), value.to_string());
            }
        }
        env.extend(plan.env.clone());
        let execution = &session.config;
        let request = ExecuteRequest {
            task: id.as_str(),
            argv: &plan.argv,
            env: &env,
            working_directory: &spec.cwd,
            inputs: &inputs,
            output_paths: &output_paths,
            platform: &execution.platform,
            timeout: execution.timeout,
        };
        let blobs = InputBlobs {
            store: &self.store,
            root: &workspace.root,
            on_disk,
        };
        let response = match execution.executor.execute(&request, &blobs) {
            Ok(response) => response,
            Err(err) => {
                session.fail(&err.to_string(), reporter);
                return None;
            }
        };
        if plan.cannot_run_exit_code == Some(response.exit_code) {
            let said = response
                .stderr
                .as_ref()
                .filter(|stream| stream.size <= 64 * 1024)
                .and_then(|stream| fetch_verified(execution, &stream.digest, stream.size).ok())
                .map(|bytes| {
                    String::from_utf8_lossy(&bytes)
                        .lines()
                        .map(str::trim)
                        .filter(|line| !line.is_empty())
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .filter(|text| !text.is_empty())
                .unwrap_or_else(|| "it said nothing".to_string());
            let said: String = said.chars().take(500).collect();
            let Some(toolchain) = &plan.toolchain else {
                return local(format!("the remote worker cannot run it: {said}"));
            };
            let first = match asking {
                Some(asking) => asking.settle(true),
                None => session.record(toolchain, true),
            };
            // Only the first answer warns; the others needing the toolchain run here silently.
            if !first {
                return None;
            }
            return local(format!(
                "the remote worker cannot run it: {said}; the run's other tasks needing this toolchain run here too"
            ));
        }
        if let Some(asking) = asking {
            asking.settle(false);
        }
        // The outputs the globs match; anything else the command wrote is not the task's.
        let in_cwd = |path: &str| -> Option<String> {
            if spec.cwd.is_empty() {
                Some(path.to_string())
            } else {
                path.strip_prefix(spec.cwd.as_str())?
                    .strip_prefix('/')
                    .map(str::to_string)
            }
        };
        let mut matched: HashSet<String> = HashSet::new();
        let mut outputs = Vec::new();
        let mut depfile = None;
        if response.exit_code == 0 {
            for file in response.outputs {
                if plan.depfile.as_deref() == Some(file.path.as_str()) {
                    depfile = Some(file);
                    continue;
                }
                let Some(relative) = in_cwd(&file.path) else {
                    continue;
                };
                if let Some(source) = globs.outputs.source_matching(&relative) {
                    matched.insert(source.to_string());
                    outputs.push(file);
                }
            }
        }
        let result = ActionResult {
            task: id.to_string(),
            outputs,
            stdout: response.stdout,
            stderr: response.stderr,
            duration_ms: started.elapsed().as_millis() as u64,
            tools: spec.tools.clone(),
            discovered: None,
        };
        let declared = DeclaredOutputs {
            cwd: &spec.cwd,
            outputs: &globs.outputs,
        };
        if let Err(problem) = check_entry(&result, &workspace.guard, Some(&declared)) {
            session.fail(&format!("unusable result ({problem})"), reporter);
            return None;
        }
        for (digest, size) in result.blobs() {
            let fetched = self.store.put_blob_from(&digest, size, |out| {
                execution.blobs.get_blob(&digest, size, out)
            });
            let problem = match fetched {
                Ok(true) => continue,
                Ok(false) => format!("blob {} of the result is not on the server", digest.short()),
                Err(BlobFetchError::Source(err)) => err.to_string(),
                Err(BlobFetchError::Mismatch(problem)) => problem,
                Err(BlobFetchError::Store(err)) => {
                    reporter.report(Event::Warning {
                        id: Some(id),
                        message: &format!(
                            "could not keep a blob of the remote result: {err}; running the task here"
                        ),
                    });
                    return None;
                }
            };
            session.fail(&problem, reporter);
            return None;
        }
        // What it printed, as a local run shows it.
        self.replay(id, &result, false, reporter);
        if response.exit_code != 0 {
            return Some(RemoteOutcome::Failed(format!(
                "command exited with exit status: {} (on the remote executor)",
                response.exit_code
            )));
        }
        let missing: Vec<String> = globs
            .outputs
            .includes()
            .into_iter()
            .filter(|pattern| !matched.contains(pattern))
            .collect();
        if !missing.is_empty() {
            return Some(RemoteOutcome::Failed(format!(
                "declared output{} {} {} not produced; nothing was cached",
                if missing.len() == 1 { "" } else { "s" },
                missing
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if missing.len() == 1 { "was" } else { "were" },
            )));
        }
        let mut discovered = plan.discovered.clone();
        if let Some(path) = &plan.depfile {
            let Some(file) = depfile else {
                return Some(RemoteOutcome::Failed(format!(
                    "the command succeeded but did not write its depfile `{path}`; nothing was cached"
                )));
            };
            match self.remote_depfile(execution, spec, &file) {
                Ok(Ok(files)) => {
                    discovered.files.extend(files);
                    discovered.files.sort();
                    discovered.files.dedup();
                }
                Ok(Err(problem)) => {
                    return Some(RemoteOutcome::Failed(format!(
                        "depfile `{path}`: {problem}; nothing was cached"
                    )));
                }
                Err(problem) => {
                    session.fail(&problem, reporter);
                    return None;
                }
            }
        }
        Some(RemoteOutcome::Ran(Box::new(result), discovered, clock))
    }

    /// The in-root dependencies a remote run's depfile lists (see [`RemotePlan::depfile`]):
    /// `Err` when it cannot be fetched intact (the executor is at fault), `Ok(Err)` when it is
    /// too large or malformed (the command is).
    fn remote_depfile(
        &self,
        execution: &crate::remote_exec::RemoteExecution,
        spec: &TaskSpec,
        file: &OutputFile,
    ) -> Result<Result<Vec<String>, String>, String> {
        if file.size > crate::depfile::MAX_BYTES {
            return Ok(Err(format!(
                "{} bytes, more than {}",
                file.size,
                crate::depfile::MAX_BYTES
            )));
        }
        let bytes = fetch_verified(execution, &file.digest, file.size)?;
        let rules = match crate::depfile::parse(&bytes) {
            Ok(rules) => rules,
            Err(why) => return Ok(Err(why)),
        };
        // No roots: an absolute name is the worker's.
        Ok(crate::depfile::dependencies(&rules, &spec.cwd, &[]))
    }

    /// Records what a run (here or remote) discovered it read with its result (see
    /// [`crate::discovered`]); `Err` fails the task, nothing cached.
    #[allow(clippy::too_many_arguments)]
    fn record_discovered(
        &self,
        spec: &TaskSpec,
        globs: &TaskGlobs,
        workspace: &Workspace,
        components: &KeyComponents,
        stats: &StatCache,
        (result, found, clock): (&mut ActionResult, &Discovered, i64),
        warn: &dyn Fn(&str),
    ) -> Result<(), String> {
        if found.is_empty() {
            return Ok(());
        }
        let tree = workspace.tree();
        let context = crate::discovered::Context {
            tree: &tree,
            stats,
            cwd: &spec.cwd,
            outputs: &globs.outputs,
        };
        let output_dirs =
            crate::discovered::output_dirs(result.outputs.iter().map(|file| file.path.as_str()));
        let recorded =
            crate::discovered::record(&context, found, &components.inputs, clock, &output_dirs)
                .map_err(|why| format!("{why}; nothing was cached"))?;
        for path in &recorded.changed_during_run {
            warn(&format!(
                "discovered input {path} changed while the task ran; the next run runs it again"
            ));
        }
        result.discovered = Some(recorded.record);
        Ok(())
    }

    /// One extra input of a remote plan, its blob readable through `sources` (a work-tree
    /// file confined, a store blob, bytes put in the store, a local executable by absolute
    /// path); `Err` says why the task runs here. The returned path is left for the caller.
    fn remote_input(
        &self,
        workspace: &Workspace,
        stats: &StatCache,
        input: &RemoteInput,
        sources: &mut HashMap<Digest, InputSource>,
    ) -> Result<InputFile, String> {
        let file = |digest, size, executable| InputFile {
            path: String::new(),
            digest,
            size,
            executable,
        };
        match input {
            RemoteInput::TreeFile(path) => {
                // Through the stat cache, as keyed and discovered inputs are: a file the run
                // already hashed (`go list`'s sources, checked as discovered inputs) is not
                // read again; it is opened confined, never through a link.
                let stat = match workspace.root.lstat(path) {
                    Ok(Some((crate::confine::Kind::File, stat))) => stat,
                    Ok(Some(_)) => return Err(format!("input {path} is not a regular file")),
                    Ok(None) => return Err(format!("input {path} does not exist")),
                    Err(err) => return Err(format!("input {path}: {err}")),
                };
                let hashed = stats
                    .digest_with(path, stat, &mut || match workspace.root.open_file(path) {
                        Ok(Some((file, _))) => Ok(file),
                        Ok(None) => Err(std::io::ErrorKind::NotFound.into()),
                        Err(err) => Err(std::io::Error::other(err)),
                    })
                    .map_err(|err| format!("reading input {path}: {err}"))?;
                sources.insert(hashed.digest, InputSource::Tree(path.clone()));
                Ok(file(
                    hashed.digest,
                    hashed.stat.size,
                    hashed.stat.executable,
                ))
            }
            RemoteInput::Blob {
                digest,
                size,
                executable,
            } => {
                if !self.store.has_blob(digest, *size) {
                    return Err(format!("blob {} is not in the local store", digest.short()));
                }
                Ok(file(*digest, *size, *executable))
            }
            RemoteInput::Bytes { bytes, executable } => {
                let digest = self
                    .store
                    .put_bytes(bytes)
                    .map_err(|err| format!("keeping an input in the store: {err}"))?;
                Ok(file(digest, bytes.len() as u64, *executable))
            }
            RemoteInput::Pinned {
                path,
                digest,
                size,
                executable,
            } => {
                if !path.is_absolute() {
                    return Err(format!("input {} is not absolute", path.display()));
                }
                sources.insert(*digest, InputSource::Local(path.clone()));
                Ok(file(*digest, *size, *executable))
            }
            RemoteInput::Executable(path) => {
                if !path.is_absolute() {
                    return Err(format!("executable {} is not absolute", path.display()));
                }
                let (digest, size) = self
                    .executable_digest(path)
                    .map_err(|err| format!("reading {}: {err}", path.display()))?;
                sources.insert(digest, InputSource::Local(path.clone()));
                Ok(file(digest, size, true))
            }
        }
    }

    /// What an action sees, to prepare a remote plan or to run here: the same for both.
    fn action_context<'a>(
        &'a self,
        spec: &'a TaskSpec,
        workspace: &'a Workspace,
        cwd: &'a Path,
        output: &'a dyn crate::output::OutputSink,
    ) -> ActionContext<'a> {
        ActionContext {
            id: &spec.id,
            root: &self.config.root,
            tree: &workspace.root,
            cwd,
            env: &self.config.env,
            cancel: &self.cancel,
            blobs: &self.store,
            output,
            spawning: &self.spawning,
        }
    }

    /// The digest and size of a local executable a plan sends (xbundle's own binary, for every
    /// package task): hashed once per engine while its stat stays the same. Its bytes are
    /// verified again while they are uploaded, so a binary replaced meanwhile is refused.
    fn executable_digest(&self, path: &Path) -> std::io::Result<(Digest, u64)> {
        let stat = FileStat::of(&std::fs::metadata(path)?);
        let mut known = self.executables.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, digest)) = known.get(path)
            && *seen == stat
        {
            return Ok((*digest, stat.size));
        }
        let (digest, size) = crate::digest::hash_file(path)?;
        known.insert(path.to_path_buf(), (stat, digest));
        Ok((digest, size))
    }

    fn reasons(&self, id: &TaskId, components: &KeyComponents, forced: bool) -> Vec<DirtyReason> {
        if forced {
            return vec![DirtyReason::Forced];
        }
        match self.ledger.get(id) {
            None => vec![DirtyReason::NoPreviousRun],
            Some(previous) => {
                let reasons = components.diff(&previous.components);
                if reasons.is_empty() {
                    vec![DirtyReason::CacheEntryMissing]
                } else {
                    reasons
                }
            }
        }
    }

    /// A task that ran (here or remotely), its result in place: stored under its key (and
    /// queued for the remote cache), recorded in the ledger, reported.
    fn finish_ran(
        &self,
        id: &TaskId,
        ran: Ran,
        result: ActionResult,
        warn: &dyn Fn(&str),
        reporter: &dyn Reporter,
    ) -> TaskReport {
        let Ran {
            key,
            components,
            reasons,
            started,
            executed,
        } = ran;
        let output = result.output_digest();
        match self.store.put_action(&key, &result) {
            Err(err) => warn(&format!("could not write the cache entry: {err}")),
            Ok(()) => {
                if let Some(session) = &self.remote {
                    session.queue(key, result);
                }
            }
        }
        self.record(id, key, components, "ran", reasons.clone(), reporter);
        let report = TaskReport {
            id: id.clone(),
            status: TaskStatus::Ran,
            duration_ms: started.elapsed().as_millis() as u64,
            reasons,
            restored: 0,
            key: Some(key),
            output: Some(output),
            error: None,
            source: None,
            executed: Some(executed),
        };
        reporter.report(Event::TaskFinished(&report));
        report
    }

    fn record(
        &self,
        id: &TaskId,
        key: Digest,
        components: KeyComponents,
        outcome: &str,
        reasons: Vec<DirtyReason>,
        reporter: &dyn Reporter,
    ) {
        let entry = LedgerEntry {
            id: id.clone(),
            key,
            components,
            outcome: outcome.to_string(),
            reasons,
            at_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        if let Err(err) = self.ledger.put(entry) {
            reporter.report(Event::Warning {
                id: Some(id),
                message: &format!("could not update the ledger: {err}"),
            });
        }
    }

    /// Runs the action and stores what it produced. Nothing is cached on any error. Also returns
    /// what the action discovered it read and the file system's clock when it started.
    fn run_action(
        &self,
        spec: &TaskSpec,
        globs: &TaskGlobs,
        workspace: &Workspace,
        cwd: Option<Dir>,
        stats: &StatCache,
        reporter: &dyn Reporter,
    ) -> Result<(ActionResult, Discovered, i64), String> {
        let started = Instant::now();
        // A restore that failed may have created it since it was opened.
        let cwd = match cwd {
            Some(cwd) => Some(cwd),
            None => workspace.cwd(spec)?,
        };
        let Some(cwd) = cwd else {
            return Err(format!(
                "working directory {} does not exist",
                workspace.root.join(&spec.cwd).display()
            ));
        };
        let outputs = &globs.outputs;
        // Start from a clean slate so the outputs are exactly what this run produced. Every
        // path is checked before the first removal. An action that replaces its outputs itself
        // keeps the old ones (not links) until it has: each must then be a new file.
        let (stale, _) = expand(&workspace.tree(), &cwd, outputs, None, Purpose::Remove)
            .map_err(|err| format!("listing old outputs: {err}"))?;
        let keep = spec.action.replaces_outputs();
        let stale: Vec<(String, Option<FileStat>)> = stale
            .into_iter()
            .map(|file| {
                let kept = if keep && !file.link { file.stat } else { None };
                (Self::root_relative(spec, &file.relative), kept)
            })
            .collect();
        for (relative, _) in &stale {
            workspace
                .guard
                .check(relative)
                .map_err(|why| format!("refusing to remove an old output: {why}"))?;
        }
        for (relative, kept) in &stale {
            if kept.is_none() {
                workspace
                    .root
                    .remove_file(relative)
                    .map_err(|err| format!("removing old output: {err}"))?;
            }
        }
        // What the action prints is reported as it comes, and kept for the cache.
        let printed = TaskOutput::new(&spec.id, reporter);
        let context = self.action_context(spec, workspace, cwd.path(), &printed);
        // The file system's clock as the action starts: a discovered input at least this new
        // may have changed while it ran (see [`crate::discovered`]).
        let clock = self.clock_now(stats);
        // What the action printed without reporting it live goes out when it ends.
        let finish = |stdout: &[u8], stderr: &[u8]| {
            printed.output(Stream::Stdout, stdout);
            printed.output(Stream::Stderr, stderr);
        };
        let discovered = match spec.action.run(&context) {
            Ok(done) => {
                finish(&done.stdout, &done.stderr);
                done.discovered
            }
            Err(failure) => {
                finish(&failure.stdout, &failure.stderr);
                return Err(failure.message);
            }
        };
        let (stdout, stderr) = printed.into_kept();

        let (produced, missing) = expand(&workspace.tree(), &cwd, outputs, None, Purpose::Read)
            .map_err(|err| format!("collecting outputs: {err}"))?;
        if !missing.is_empty() {
            return Err(format!(
                "declared output{} {} {} not produced; nothing was cached",
                if missing.len() == 1 { "" } else { "s" },
                missing
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if missing.len() == 1 { "was" } else { "were" },
            ));
        }
        let mut files = Vec::with_capacity(produced.len());
        for file in &produced {
            let relative = Self::root_relative(spec, &file.relative);
            workspace
                .guard
                .check(&relative)
                .map_err(|why| format!("output {why}; nothing was cached"))?;
            let unchanged = |old: &FileStat| {
                file.stat.is_some_and(|new| {
                    (new.inode, new.mtime_ns, new.ctime_ns)
                        == (old.inode, old.mtime_ns, old.ctime_ns)
                })
            };
            if stale
                .iter()
                .any(|(path, kept)| *path == relative && kept.as_ref().is_some_and(unchanged))
            {
                return Err(format!(
                    "declared output `{relative}` was not replaced by this run; nothing was cached"
                ));
            }
        }
        // Read before the outputs are: each is trusted by the stat cache when older than this.
        // The command has exited, so nothing is still writing them: a reading later than every
        // stamp so far (see `StatCache::clock_after_writers`).
        let read_after = stats.clock_after_writers();
        for file in produced {
            let relative = Self::root_relative(spec, &file.relative);
            let stat = file.stat.expect("files read are stat'ed");
            // A new file (its task's old outputs were removed before it ran) becomes its own
            // blob; a link's target, or an output the action replaces itself, is copied.
            let may_link = !keep && !file.link;
            let input = file
                .open_to_read(&cwd)
                .map_err(|err| format!("storing output {relative}: {err}"))?;
            let stored = self
                .store
                .put_output(input, &file.absolute(&cwd), stat, may_link)
                .map_err(|err| format!("storing output {relative}: {err}"))?;
            stats.record(&relative, stored.stat, stored.digest, Some(read_after));
            files.push(OutputFile {
                path: relative,
                executable: stat.executable,
                size: stored.size,
                digest: stored.digest,
            });
        }
        let store_stream = |bytes: &[u8]| -> Result<Option<StoredStream>, String> {
            if bytes.is_empty() {
                return Ok(None);
            }
            let digest = self.store.put_bytes(bytes).map_err(|e| e.to_string())?;
            Ok(Some(StoredStream {
                size: bytes.len() as u64,
                digest,
            }))
        };
        Ok((
            ActionResult {
                task: spec.id.to_string(),
                outputs: files,
                stdout: store_stream(&stdout)?,
                stderr: store_stream(&stderr)?,
                duration_ms: started.elapsed().as_millis() as u64,
                tools: spec.tools.clone(),
                // Filled in by the caller (see `execute`).
                discovered: None,
            },
            discovered,
            clock,
        ))
    }

    /// "Now" on the file system's clock (ns): a new reading of the stat cache's probe file (no
    /// file created per task); `i64::MIN` (everything counts as changed) when it cannot be read.
    fn clock_now(&self, stats: &StatCache) -> i64 {
        stats.clock().ns()
    }

    /// Why `result`'s discovered inputs no longer hold (empty: none, or all unchanged).
    fn discovered_stale(
        &self,
        spec: &TaskSpec,
        globs: &TaskGlobs,
        result: &ActionResult,
        workspace: &Workspace,
        stats: &StatCache,
    ) -> Vec<DirtyReason> {
        let Some(record) = &result.discovered else {
            return Vec::new();
        };
        let tree = workspace.tree();
        let context = crate::discovered::Context {
            tree: &tree,
            stats,
            cwd: &spec.cwd,
            outputs: &globs.outputs,
        };
        crate::discovered::check(&context, record)
    }

    /// What a run of `targets` would do, without running or restoring anything.
    pub fn probe(&self, graph: &TaskGraph, targets: &[TaskId]) -> io::Result<Vec<Probe>> {
        self.forget_places();
        self.ledger.reload();
        let workspace = self.workspace()?;
        let stat_dir = self.stat_place().open().map_err(io::Error::other)?;
        let stats = match stat_dir {
            Some(dir)
                if dir
                    .lstat(crate::statcache::FILE)
                    .is_ok_and(|found| found.is_some()) =>
            {
                StatCache::load(&dir)?
            }
            _ => StatCache::ephemeral(),
        };
        let mut outputs: HashMap<TaskId, Digest> = HashMap::new();
        let mut changing: HashSet<TaskId> = HashSet::new();
        let mut probes = Vec::new();
        for id in graph.closure(targets) {
            let spec = graph.get(&id).expect("exists");
            let pending: Vec<TaskId> = spec
                .deps
                .iter()
                .filter(|d| changing.contains(*d))
                .cloned()
                .collect();
            if !pending.is_empty() {
                changing.insert(id.clone());
                probes.push(Probe {
                    id,
                    expected: Expected::DependsOnChanges(pending),
                    key: None,
                    warnings: Vec::new(),
                });
                continue;
            }
            let deps = spec
                .deps
                .iter()
                .map(|d| (d.to_string(), outputs[d]))
                .collect();
            let found = TaskGlobs::new(spec).and_then(|globs| {
                let cwd = workspace.cwd(spec)?;
                let (components, unmatched) =
                    self.components(spec, &globs, deps, &workspace, cwd.as_ref(), &stats)?;
                Ok((globs, components, unmatched))
            });
            let (globs, components, unmatched) = match found {
                Ok(found) => found,
                Err(error) => {
                    changing.insert(id.clone());
                    probes.push(Probe {
                        id,
                        expected: Expected::Run(Vec::new()),
                        key: None,
                        warnings: vec![error],
                    });
                    continue;
                }
            };
            let warnings = unmatched
                .iter()
                .map(|p| format!("input pattern `{p}` matches no file"))
                .collect();
            let key = components.key();
            let declared = DeclaredOutputs {
                cwd: &spec.cwd,
                outputs: &globs.outputs,
            };
            let cached =
                if self.config.force {
                    None
                } else {
                    // An entry that would be refused on restore is a run, and is not read further.
                    self.store.get_action(&key).ok().flatten().filter(|result| {
                        check_entry(result, &workspace.guard, Some(&declared)).is_ok()
                    })
                };
            let mut stale = Vec::new();
            let cached = cached.filter(|result| {
                stale = self.discovered_stale(spec, &globs, result, &workspace, &stats);
                stale.is_empty()
            });
            let expected = match cached {
                Some(result) => {
                    outputs.insert(id.clone(), result.output_digest());
                    let stale = result
                        .outputs
                        .iter()
                        .filter(|file| {
                            let absolute = self.config.root.join(&file.path);
                            !matches!(stats.digest(&file.path, &absolute), Ok(h) if h.digest == file.digest)
                        })
                        .count();
                    if stale == 0 && self.ledger.last_key(&id) == Some(key) {
                        Expected::UpToDate
                    } else {
                        Expected::Restore { files: stale }
                    }
                }
                None if !stale.is_empty() => {
                    changing.insert(id.clone());
                    Expected::Run(stale)
                }
                None => {
                    changing.insert(id.clone());
                    Expected::Run(self.reasons(&id, &components, self.config.force))
                }
            };
            probes.push(Probe {
                id,
                expected,
                key: Some(key),
                warnings,
            });
        }
        Ok(probes)
    }
}

/// What a remote execution came to (see [`Engine::execute_remotely`]).
enum RemoteOutcome {
    /// It ran and exited 0: the result, its blobs in the local store, checked; what the run
    /// read beyond its declared inputs and the clock before it was read (to be recorded).
    Ran(Box<ActionResult>, Discovered, i64),
    /// It ran and failed: the task's error (what it printed was reported).
    Failed(String),
}

/// Gives the memory the workers freed back to the system before the end of a run saves its
/// state (which allocates anew): glibc keeps what a thread frees in that thread's arena, resident
/// until reused, and the workers have exited (their hashing buffers, their commands' pipes and
/// captures). `malloc_trim` releases the free pages of every arena.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator's arenas to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A small blob of a remote result (a captured stream, a depfile), fetched into memory and
/// verified against its digest; the error says what was wrong.
fn fetch_verified(
    execution: &crate::remote_exec::RemoteExecution,
    digest: &Digest,
    size: u64,
) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    match execution.blobs.get_blob(digest, size, &mut bytes) {
        Ok(true) if Digest::of_bytes(&bytes) == *digest => Ok(bytes),
        Ok(true) => Err(format!("blob {} of the result is corrupt", digest.short())),
        Ok(false) => Err(format!(
            "blob {} of the result is not on the server",
            digest.short()
        )),
        Err(err) => Err(err.to_string()),
    }
}

/// The input files of a remote execution, read for upload: from the local store, else from
/// the work tree (confined), each verified against its digest while it is read.
struct InputBlobs<'a> {
    store: &'a Store,
    root: &'a Dir,
    on_disk: HashMap<Digest, InputSource>,
}

/// Where an input blob that is not in the store is read from.
enum InputSource {
    /// A root-relative work-tree file, opened confined.
    Tree(String),
    /// A trusted local file by absolute path (xbundle's own binary).
    Local(std::path::PathBuf),
}

impl BlobSource for InputBlobs<'_> {
    fn open(&self, digest: &Digest, size: u64) -> io::Result<Box<dyn io::Read + '_>> {
        use crate::task::BlobStore as _;
        if let Some(reader) = self.store.open(digest)? {
            return Ok(reader);
        }
        let source = self.on_disk.get(digest).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no file holds blob {}", digest.short()),
            )
        })?;
        let path = match source {
            InputSource::Tree(path) => path,
            InputSource::Local(path) => {
                return Ok(Box::new(crate::remote::VerifyingReader::new(
                    std::fs::File::open(path)?,
                    *digest,
                    size,
                )));
            }
        };
        let (file, _) = self
            .root
            .open_file(path)
            .map_err(io::Error::other)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{path} is gone")))?;
        Ok(Box::new(crate::remote::VerifyingReader::new(
            file, *digest, size,
        )))
    }
}

/// What [`Engine::finish_ran`] needs of a task that ran, besides its result.
struct Ran {
    key: Digest,
    components: KeyComponents,
    reasons: Vec<DirtyReason>,
    started: Instant,
    /// `local` or `remote` (`TaskReport::executed`).
    executed: &'static str,
}

/// A task's globs, compiled once per process for each distinct list ([`Patterns::shared`]).
struct TaskGlobs {
    inputs: std::sync::Arc<Patterns>,
    outputs: std::sync::Arc<Patterns>,
}

impl TaskGlobs {
    fn new(spec: &TaskSpec) -> Result<TaskGlobs, String> {
        Ok(TaskGlobs {
            inputs: Patterns::shared(&spec.inputs).map_err(|e| e.to_string())?,
            outputs: Patterns::shared(&spec.outputs).map_err(|e| e.to_string())?,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_jobs_are_a_little_more_than_the_cores() {
        let jobs: Vec<usize> = [1, 2, 4, 16].into_iter().map(super::jobs_for).collect();
        assert_eq!(jobs, [2, 4, 6, 18]);
        assert!(super::default_jobs() > std::thread::available_parallelism().unwrap().get());
    }
}
