//! Running a task graph: keying, cache lookups, restores, execution, parallel scheduling.
//!
//! Per task, in a worker thread once its dependencies are done:
//! 1. expand the input globs (minus the task's own outputs) and digest each file through the
//!    stat cache; build [`KeyComponents`] with the dependencies' output digests; hash the key;
//! 2. unless `--force`, look the key up in the action cache; on a hit make the tree match the
//!    stored output manifest (verifying every restored blob) and replay the captured logs;
//! 3. otherwise delete whatever the output globs match, run the action, require every output
//!    glob to match, store outputs and logs in the CAS, then (last) the action result;
//! 4. record the key components in the ledger.
//!
//! A corrupt cache entry or blob is a warning and a miss; an output modified in the tree is a
//! warning and a restore. Nothing wrong is ever used silently.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::sync::{Mutex, mpsc};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::digest::Digest;
use crate::events::{Event, Reporter, RunSummary, Stream, TaskReport, TaskStatus};
use crate::files::{Patterns, expand};
use crate::fsutil::{WorkspaceLock, remove_file_if_exists, sync_at_end_of_run};
use crate::graph::TaskGraph;
use crate::key::{DirtyReason, KeyComponents};
use crate::ledger::{Ledger, LedgerEntry};
use crate::statcache::StatCache;
use crate::store::{ActionResult, OutputFile, Store, StoredStream};
use crate::task::{ActionContext, TaskId, TaskSpec};

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
    pub jobs: usize,
    pub fail_fast: bool,
    /// Ignore cache reads (results are still written).
    pub force: bool,
    /// The environment tasks see and declared variables are read from.
    pub env: BTreeMap<OsString, OsString>,
}

impl EngineConfig {
    pub fn new(root: impl Into<PathBuf>) -> EngineConfig {
        let root = root.into();
        let state_dir = root.join(".xbundle");
        EngineConfig {
            cache_dir: state_dir.join("cache"),
            state_dir,
            root,
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            fail_fast: false,
            force: false,
            env: std::env::vars_os().collect(),
        }
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
    store: Store,
    ledger: Ledger,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Engine {
        Engine {
            store: Store::open(&config.cache_dir),
            ledger: Ledger::open(config.state_dir.join("state").join("ledger")),
            config,
        }
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

    fn lock(&self, reporter: &dyn Reporter) -> io::Result<WorkspaceLock> {
        WorkspaceLock::acquire(&self.config.state_dir.join("lock"), || {
            reporter.report(Event::Warning {
                id: None,
                message: "blocking: waiting for another xbundle run to release the workspace lock",
            })
        })
    }

    /// Where restores stage their temporary copies; emptied at the start of every run.
    fn staging_dir(&self) -> PathBuf {
        self.config.state_dir.join("tmp")
    }

    fn stat_cache_paths(&self) -> (PathBuf, PathBuf) {
        let state = self.config.state_dir.join("state");
        (state.join("stat-cache"), state.join("clock"))
    }

    /// Runs `targets` and their dependencies.
    pub fn run(
        &self,
        graph: &TaskGraph,
        targets: &[TaskId],
        reporter: &dyn Reporter,
    ) -> io::Result<RunSummary> {
        let started = Instant::now();
        let _lock = self.lock(reporter)?;
        // Leftovers of a killed run; nothing else uses this directory while we hold the lock.
        // Restores create it when they need it, so a no-op run touches nothing here.
        let staging = self.staging_dir();
        if std::fs::read_dir(&staging).is_ok_and(|mut entries| entries.next().is_some()) {
            std::fs::remove_dir_all(&staging)?;
        }
        let (stat_path, clock_path) = self.stat_cache_paths();
        let stats = StatCache::load(&stat_path, &clock_path)?;
        let selected = graph.closure(targets);
        reporter.report(Event::BuildStarted {
            tasks: selected.len(),
        });
        let mut summary = self.schedule(graph, &selected, &stats, reporter);
        if summary.ran > 0
            && let Err(err) = sync_at_end_of_run(&self.config.cache_dir)
        {
            reporter.report(Event::Warning {
                id: None,
                message: &format!("could not flush the cache to disk: {err}"),
            });
        }
        if let Err(err) = stats.save(&stat_path) {
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
        let jobs = self.config.jobs.max(1).min(selected.len().max(1));

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

        let (job_tx, job_rx) = mpsc::channel::<(TaskSpec, BTreeMap<String, Digest>)>();
        let job_rx = Mutex::new(job_rx);
        std::thread::scope(|scope| {
            let (done_tx, done_rx) = mpsc::channel::<TaskReport>();
            for _ in 0..jobs {
                let done_tx = done_tx.clone();
                let job_rx = &job_rx;
                scope.spawn(move || {
                    loop {
                        let job = job_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok((spec, deps)) = job else { break };
                        let report = self.execute(&spec, deps, stats, reporter);
                        if done_tx.send(report).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(done_tx);

            loop {
                while !stopping
                    && in_flight < jobs
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
                    job_tx.send((spec.clone(), deps)).expect("workers alive");
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
                    TaskStatus::Failed | TaskStatus::Skipped => {
                        summary.failed += 1;
                        summary
                            .failures
                            .push((report.id.clone(), report.error.clone().unwrap_or_default()));
                        stopping |= self.config.fail_fast;
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
        for id in selected {
            if !reported.contains(id) {
                let why = if poisoned.contains(id) {
                    "a dependency failed"
                } else {
                    "not started: the run stopped at the first failure (--fail-fast)"
                };
                skip(id, &mut summary, why);
            }
        }
        summary
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

    fn task_cwd(&self, spec: &TaskSpec) -> PathBuf {
        if spec.cwd.is_empty() {
            self.config.root.clone()
        } else {
            self.config.root.join(&spec.cwd)
        }
    }

    fn root_relative(spec: &TaskSpec, relative: &str) -> String {
        if spec.cwd.is_empty() {
            relative.to_string()
        } else {
            format!("{}/{relative}", spec.cwd)
        }
    }

    /// The task's key components; also the input patterns that matched nothing.
    fn components(
        &self,
        spec: &TaskSpec,
        globs: &TaskGlobs,
        deps: BTreeMap<String, Digest>,
        stats: &StatCache,
    ) -> Result<(KeyComponents, Vec<String>), String> {
        let cwd = self.task_cwd(spec);
        let (inputs, outputs) = (&globs.inputs, &globs.outputs);
        let mut components = KeyComponents {
            kind: spec.kind.clone(),
            impl_version: spec.impl_version,
            params: spec.params.clone(),
            deps,
            env: self.env_components(spec),
            tools: spec.tools.clone(),
            ..KeyComponents::default()
        };
        let mut unmatched = Vec::new();
        if !inputs.is_empty() {
            let (found, missing) = expand(&cwd, inputs, Some(outputs), &self.config.state_dir)
                .map_err(|err| format!("reading inputs: {err}"))?;
            unmatched = missing;
            for file in found {
                let relative = Self::root_relative(spec, &file.relative);
                let hashed = stats
                    .digest_with_metadata(&relative, &file.absolute, &file.metadata)
                    .map_err(|err| format!("reading input {relative}: {err}"))?;
                components.inputs.insert(relative, hashed.digest);
            }
        }
        Ok((components, unmatched))
    }

    /// Makes the tree hold exactly `result`'s outputs (under the task's output globs).
    /// Returns how many files were written or removed, and what had been changed by hand.
    fn materialize(
        &self,
        spec: &TaskSpec,
        globs: &TaskGlobs,
        result: &ActionResult,
        stats: &StatCache,
    ) -> Result<(usize, Vec<String>), String> {
        let (found, _) = expand(
            &self.task_cwd(spec),
            &globs.outputs,
            None,
            &self.config.state_dir,
        )
        .map_err(|err| err.to_string())?;
        let mut present: HashMap<String, crate::files::Found> = found
            .into_iter()
            .map(|file| (Self::root_relative(spec, &file.relative), file))
            .collect();
        let mut written = 0;
        let mut modified = Vec::new();
        for file in &result.outputs {
            let absolute = self.config.root.join(&file.path);
            let current = match present.remove(&file.path) {
                Some(found) => stats.digest_with_metadata(&file.path, &absolute, &found.metadata),
                None => stats.digest(&file.path, &absolute),
            };
            let intact = matches!(&current, Ok(h) if h.digest == file.digest && h.stat.executable == file.executable);
            if intact {
                continue;
            }
            modified.push(match current {
                Ok(_) => format!("{} was modified", file.path),
                Err(_) => format!("{} was deleted", file.path),
            });
            self.store
                .restore_file(file, &absolute, &self.staging_dir())
                .map_err(|err| err.to_string())?;
            if let Ok(metadata) = std::fs::metadata(&absolute) {
                stats.record(
                    &file.path,
                    crate::statcache::FileStat::of(&metadata),
                    file.digest,
                    false,
                );
            }
            written += 1;
        }
        // Files under the output globs that this result does not have are stale.
        let mut stale: Vec<(String, crate::files::Found)> = present.into_iter().collect();
        stale.sort_by(|a, b| a.0.cmp(&b.0));
        for (relative, file) in stale {
            remove_file_if_exists(&file.absolute).map_err(|err| err.to_string())?;
            modified.push(format!("{relative} is not an output of this version"));
            written += 1;
        }
        Ok((written, modified))
    }

    fn replay(&self, id: &TaskId, result: &ActionResult, reporter: &dyn Reporter) {
        for (stream, stored) in [
            (Stream::Stdout, &result.stdout),
            (Stream::Stderr, &result.stderr),
        ] {
            let Some(stored) = stored else { continue };
            match self.store.get_bytes(&stored.digest) {
                Ok(bytes) => reporter.report(Event::Output {
                    id,
                    stream,
                    bytes: &bytes,
                    replayed: true,
                }),
                Err(err) => reporter.report(Event::Warning {
                    id: Some(id),
                    message: &format!("captured output could not be replayed: {err}"),
                }),
            }
        }
    }

    /// Keys, restores or runs one task. Never panics on task or store errors: they become a
    /// failed report.
    fn execute(
        &self,
        spec: &TaskSpec,
        deps: BTreeMap<String, Digest>,
        stats: &StatCache,
        reporter: &dyn Reporter,
    ) -> TaskReport {
        let started = Instant::now();
        let id = &spec.id;
        let fail = |error: String, key: Option<Digest>, reasons: Vec<DirtyReason>| TaskReport {
            id: id.clone(),
            status: TaskStatus::Failed,
            duration_ms: started.elapsed().as_millis() as u64,
            reasons,
            restored: 0,
            key,
            output: None,
            error: Some(error),
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
        let (components, unmatched) = match self.components(spec, &globs, deps, stats) {
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

        if !self.config.force {
            match self.store.get_action(&key) {
                Ok(Some(result)) => match self.materialize(spec, &globs, &result, stats) {
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
                            self.record(id, key, components, "cached", reasons.clone(), reporter);
                            reasons
                        };
                        self.replay(id, &result, reporter);
                        let report = TaskReport {
                            id: id.clone(),
                            status: TaskStatus::Cached,
                            duration_ms: started.elapsed().as_millis() as u64,
                            reasons,
                            restored,
                            key: Some(key),
                            output: Some(result.output_digest()),
                            error: None,
                        };
                        reporter.report(Event::TaskFinished(&report));
                        return report;
                    }
                    Err(problem) => {
                        warn(&format!(
                            "cached result unusable ({problem}); running the task again"
                        ));
                        self.store.remove_action(&key);
                    }
                },
                Ok(None) => {}
                Err(problem) => warn(&format!("{problem}; running the task again")),
            }
        }

        let reasons = self.reasons(id, &components, self.config.force);
        reporter.report(Event::TaskStarted {
            id,
            reasons: &reasons,
        });
        match self.run_action(spec, &globs, stats, reporter) {
            Ok(result) => {
                let output = result.output_digest();
                if let Err(err) = self.store.put_action(&key, &result) {
                    warn(&format!("could not write the cache entry: {err}"));
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
                };
                reporter.report(Event::TaskFinished(&report));
                report
            }
            Err(error) => {
                let report = fail(error, Some(key), reasons);
                reporter.report(Event::TaskFinished(&report));
                report
            }
        }
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
        if let Err(err) = self.ledger.put(&entry) {
            reporter.report(Event::Warning {
                id: Some(id),
                message: &format!("could not update the ledger: {err}"),
            });
        }
    }

    /// Runs the action and stores what it produced. Nothing is cached on any error.
    fn run_action(
        &self,
        spec: &TaskSpec,
        globs: &TaskGlobs,
        stats: &StatCache,
        reporter: &dyn Reporter,
    ) -> Result<ActionResult, String> {
        let started = Instant::now();
        let cwd = self.task_cwd(spec);
        if !cwd.is_dir() {
            return Err(format!(
                "working directory {} does not exist",
                cwd.display()
            ));
        }
        let outputs = &globs.outputs;
        // Start from a clean slate so the outputs are exactly what this run produced.
        let (stale, _) = expand(&cwd, outputs, None, &self.config.state_dir)
            .map_err(|err| format!("listing old outputs: {err}"))?;
        for file in stale {
            remove_file_if_exists(&file.absolute)
                .map_err(|err| format!("removing old output {}: {err}", file.relative))?;
        }
        let context = ActionContext {
            id: &spec.id,
            root: &self.config.root,
            cwd: &cwd,
            env: &self.config.env,
        };
        let emit = |stream, bytes: &[u8]| {
            if !bytes.is_empty() {
                reporter.report(Event::Output {
                    id: &spec.id,
                    stream,
                    bytes,
                    replayed: false,
                });
            }
        };
        let printed = match spec.action.run(&context) {
            Ok(printed) => printed,
            Err(failure) => {
                emit(Stream::Stdout, &failure.stdout);
                emit(Stream::Stderr, &failure.stderr);
                return Err(failure.message);
            }
        };
        emit(Stream::Stdout, &printed.stdout);
        emit(Stream::Stderr, &printed.stderr);

        let (produced, missing) = expand(&cwd, outputs, None, &self.config.state_dir)
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
        for file in produced {
            let relative = Self::root_relative(spec, &file.relative);
            let (digest, size) = self
                .store
                .put_file(&file.absolute)
                .map_err(|err| format!("storing output {relative}: {err}"))?;
            let stat = crate::statcache::FileStat::of(&file.metadata);
            stats.record(&relative, stat, digest, true);
            files.push(OutputFile {
                path: relative,
                executable: stat.executable,
                size,
                digest,
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
        Ok(ActionResult {
            task: spec.id.to_string(),
            outputs: files,
            stdout: store_stream(&printed.stdout)?,
            stderr: store_stream(&printed.stderr)?,
            duration_ms: started.elapsed().as_millis() as u64,
            tools: spec.tools.clone(),
        })
    }

    /// What a run of `targets` would do, without running or restoring anything.
    pub fn probe(&self, graph: &TaskGraph, targets: &[TaskId]) -> io::Result<Vec<Probe>> {
        let (stat_path, clock_path) = self.stat_cache_paths();
        let stats = if stat_path.exists() {
            StatCache::load(&stat_path, &clock_path)?
        } else {
            StatCache::ephemeral()
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
            let globs = TaskGlobs::new(spec);
            let found = globs.and_then(|globs| self.components(spec, &globs, deps, &stats));
            let (components, unmatched) = match found {
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
            let cached = if self.config.force {
                None
            } else {
                self.store.get_action(&key).ok().flatten()
            };
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

/// A task's globs, compiled once per run of the task.
struct TaskGlobs {
    inputs: Patterns,
    outputs: Patterns,
}

impl TaskGlobs {
    fn new(spec: &TaskSpec) -> Result<TaskGlobs, String> {
        Ok(TaskGlobs {
            inputs: Patterns::new(&spec.inputs).map_err(|e| e.to_string())?,
            outputs: Patterns::new(&spec.outputs).map_err(|e| e.to_string())?,
        })
    }
}
