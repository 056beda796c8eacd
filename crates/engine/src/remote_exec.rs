//! Remote execution: a task's command sent to a build farm a team already runs (REAPI
//! `Execute`), its results landing in the local store as if it had run here.
//!
//! Only a task whose action can run anywhere its inputs are goes: the action prepares a
//! [`RemotePlan`] ([`crate::task::Action::prepare_remote`]: the command, the inputs beyond the
//! declared ones, e.g. what `go list` found, a serialized plan, xbundle's own binary), or says
//! why it stays here ([`RemotePrep::Local`]), or is not remote-capable at all (the default).
//! The engine builds the [`ExecuteRequest`] from what it already knows (the declared input files
//! with their digests, the dependencies' outputs, the declared environment, the output globs'
//! directories) plus the plan's extras; an [`RemoteExecutor`] turns it into the protocol's
//! messages (a `Command`, an input root as a Merkle tree of `Directory` messages, an `Action`),
//! uploads what the server lacks, executes, and answers with the output files as root-relative
//! paths and digests.
//!
//! A plan's inputs are trusted as to *what* they are (the action chose them) but read safely: a
//! work-tree file is read confined below the root (a link or `..` is refused, the task runs
//! here), a store blob verified, an executable only by absolute path. A plan may name an exit
//! code meaning "this worker cannot run it" (its toolchain is not the one in the key): that
//! answer is a warning and a local run, never a task failure nor a cached result.
//!
//! What comes back is untrusted exactly like a remote cache entry: the engine fetches every
//! blob through [`crate::remote::RemoteBackend::get_blob`], verifies it, keeps only the files
//! its output globs match, checks the whole result with [`crate::guard::check_entry`], and
//! restores it through the same path as a cache hit. An executor that cannot be reached is a
//! warning and a local run.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use crate::digest::Digest;
use crate::remote::RemoteError;
use crate::store::{OutputFile, StoredStream};

/// What an action prepared for a remote run ([`crate::task::Action::prepare_remote`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemotePlan {
    /// Run in the task's working directory of the input root.
    pub argv: Vec<String>,
    /// Environment beyond the task's declared variables (a constant of the action, e.g.
    /// `CGO_ENABLED=0`); a declared variable of the same name is overridden.
    pub env: BTreeMap<String, String>,
    /// Inputs beyond the declared inputs and the dependencies' outputs, each at a
    /// root-relative, `/`-separated path of the input root.
    pub inputs: Vec<(String, RemoteInput)>,
    /// Root-relative paths the command writes (files or directories); empty: the literal
    /// directory of each output glob. Of what comes back, only what the output globs match is
    /// kept.
    pub output_paths: Vec<String>,
    /// What the run reads beyond its declared inputs, recorded with the result as a local run
    /// records it (see [`crate::task::Discovered`]).
    pub discovered: crate::task::Discovered,
    /// A depfile the command writes (root-relative; sent as one more output path, never kept
    /// as an output of the task): after a successful run its relative dependencies (relative
    /// to the task's working directory) are added to [`RemotePlan::discovered`]. Absolute ones
    /// name the worker's files and are ignored, so the command must write the files of the
    /// input root relative (cargo's `build.dep-info-basedir`). Missing, too large or malformed:
    /// the task fails, nothing cached.
    pub depfile: Option<String>,
    /// What a worker must have to run it (the toolchain identity the key holds, e.g. `go
    /// version` and its settings): once a worker answered "cannot run" for it, the run's
    /// other plans naming it stay here without asking again, and without another warning.
    pub toolchain: Option<String>,
    /// The exit code by which the command says the worker cannot run it (e.g. a toolchain
    /// that is not the one in the key): a warning naming what it printed on stderr, then a
    /// local run.
    pub cannot_run_exit_code: Option<i32>,
}

/// One extra input of a [`RemotePlan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteInput {
    /// A root-relative file of the work tree, read confined (never through a link).
    TreeFile(String),
    /// A blob of the local store.
    Blob {
        digest: Digest,
        size: u64,
        executable: bool,
    },
    /// Bytes put into the local store first.
    Bytes { bytes: Vec<u8>, executable: bool },
    /// A trusted local executable (xbundle's own binary), by absolute path.
    Executable(std::path::PathBuf),
    /// A local file outside the work tree whose content is pinned in advance (a crate archive
    /// of cargo's download cache, pinned by `Cargo.lock`'s checksum), by absolute path: its
    /// digest and size are the ones given, never taken from the file; its bytes are verified
    /// against both while they are uploaded, so a file that is not what it should be is never
    /// sent.
    Pinned {
        path: std::path::PathBuf,
        digest: Digest,
        size: u64,
        executable: bool,
    },
}

/// What [`crate::task::Action::prepare_remote`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemotePrep {
    /// Not a remote-capable action (or its task did not opt in): it runs here, silently.
    NotRemote,
    /// Remote-capable, but this run stays here for the reason given (reported once as a
    /// warning of the task).
    Local(String),
    /// Run it remotely.
    Plan(Box<RemotePlan>),
}

/// One file of the input root: root-relative, `/`-separated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputFile {
    pub path: String,
    pub digest: Digest,
    pub size: u64,
    pub executable: bool,
}

/// Everything an executor needs to run one task's command.
#[derive(Clone, Debug)]
pub struct ExecuteRequest<'a> {
    /// For messages and the server's request metadata.
    pub task: &'a str,
    pub argv: &'a [String],
    /// The declared environment variables and their values, nothing else.
    pub env: &'a BTreeMap<String, String>,
    /// Root-relative; empty for the root.
    pub working_directory: &'a str,
    /// Sorted by path, unique.
    pub inputs: &'a [InputFile],
    /// Root-relative paths the command may write (files or directories); the engine keeps of
    /// what comes back only the files its output globs match.
    pub output_paths: &'a [String],
    /// Platform properties (REAPI's `OSFamily`, `ISA`, …) the worker must have.
    pub platform: &'a BTreeMap<String, String>,
    pub timeout: Option<Duration>,
}

/// What the executor answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecuteResponse {
    pub exit_code: i32,
    /// Root-relative output files (output directories flattened), not yet fetched.
    pub outputs: Vec<OutputFile>,
    pub stdout: Option<StoredStream>,
    pub stderr: Option<StoredStream>,
    /// The server answered from its own action cache.
    pub cached: bool,
}

/// Where an executor reads a blob it must upload (an input file of the tree, a blob of the
/// local store): the engine opens it, verified, by digest.
pub trait BlobSource: Sync {
    fn open(&self, digest: &Digest, size: u64) -> std::io::Result<Box<dyn Read + '_>>;
}

/// One remote execution protocol.
pub trait RemoteExecutor: Send + Sync {
    /// The server, for messages (URL without credentials, instance name).
    fn describe(&self) -> String;

    /// Runs the request remotely, uploading through `blobs` what the server lacks; bounded by
    /// the request's timeout and the executor's own. A command that ran and failed is
    /// `Ok` with its exit code; `Err` means the server could not run it (the engine then runs
    /// the task locally).
    fn execute(
        &self,
        request: &ExecuteRequest<'_>,
        blobs: &dyn BlobSource,
    ) -> Result<ExecuteResponse, RemoteError>;
}

/// Remote execution as the engine is configured with it ([`crate::exec::EngineConfig`]).
#[derive(Clone)]
pub struct RemoteExecution {
    pub executor: std::sync::Arc<dyn RemoteExecutor>,
    /// Where the executor's outputs and captured streams are fetched from (the same server's
    /// CAS), each blob verified into the local store.
    pub blobs: std::sync::Arc<dyn crate::remote::RemoteBackend>,
    /// Platform properties every action asks for.
    pub platform: BTreeMap<String, String>,
    /// The bound of one remote execution (the action's timeout).
    pub timeout: Option<Duration>,
    /// How many tasks may run locally at once while others run remotely (at most `-j`; the
    /// run's workers, twice `-j`, bound the tasks in flight, remote ones included);
    /// [`crate::exec::default_jobs`] by default.
    pub local_jobs: usize,
}

impl std::fmt::Debug for RemoteExecution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteExecution({})", self.executor.describe())
    }
}

/// One run's use of the executor: on until the first failure; what its workers said of each
/// toolchain ([`RemotePlan::toolchain`]). The first plan needing a toolchain asks; the others
/// needing it wait for that answer (so a toolchain the workers lack is asked for, and warned
/// about, once a run, however many tasks need it at once).
pub(crate) struct ExecSession {
    pub(crate) config: RemoteExecution,
    off: std::sync::atomic::AtomicBool,
    toolchains: std::sync::Mutex<std::collections::HashMap<String, Known>>,
    answered: std::sync::Condvar,
}

/// What a run knows of a toolchain.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Known {
    /// A plan needing it is with a worker now.
    Asking,
    /// A worker ran a plan needing it.
    Works,
    /// A worker said it cannot run plans needing it.
    Lacks,
}

/// Whether a plan needing a toolchain may go to a worker ([`ExecSession::ask`]).
pub(crate) enum Ask<'a> {
    /// The workers lack it: the task runs here.
    Lacks,
    /// Send it; with an [`Asking`] when this plan is the one asking for the toolchain.
    Go(Option<Asking<'a>>),
}

/// The plan asking for a toolchain: [`Asking::settle`] records the answer; dropped unsettled
/// (the request failed for another reason), the next plan needing the toolchain asks.
pub(crate) struct Asking<'a> {
    session: &'a ExecSession,
    toolchain: String,
    settled: bool,
}

impl Asking<'_> {
    /// Records what the worker said; `true` when this is the first "cannot run" of the run.
    pub(crate) fn settle(mut self, lacks: bool) -> bool {
        self.settled = true;
        self.session.record(&self.toolchain, lacks)
    }
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        if !self.settled {
            let mut known = self.session.known();
            known.remove(&self.toolchain);
            drop(known);
            self.session.answered.notify_all();
        }
    }
}

impl ExecSession {
    pub(crate) fn new(config: RemoteExecution) -> ExecSession {
        ExecSession {
            config,
            off: std::sync::atomic::AtomicBool::new(false),
            toolchains: Default::default(),
            answered: Default::default(),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Known>> {
        self.toolchains
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Starts a run: the executor is on again, and asked again for every toolchain.
    pub(crate) fn begin(&self) {
        self.off.store(false, std::sync::atomic::Ordering::SeqCst);
        self.known().clear();
    }

    /// Whether a plan needing `toolchain` goes to a worker: the first asks; the others wait for
    /// its answer while it is with a worker.
    pub(crate) fn ask(&self, toolchain: &str) -> Ask<'_> {
        let mut known = self.known();
        loop {
            match known.get(toolchain) {
                None => {
                    known.insert(toolchain.to_string(), Known::Asking);
                    return Ask::Go(Some(Asking {
                        session: self,
                        toolchain: toolchain.to_string(),
                        settled: false,
                    }));
                }
                Some(Known::Asking) => {
                    known = self
                        .answered
                        .wait(known)
                        .unwrap_or_else(|poison| poison.into_inner());
                }
                Some(Known::Works) => return Ask::Go(None),
                Some(Known::Lacks) => return Ask::Lacks,
            }
        }
    }

    /// Records what a worker said of `toolchain`; `true` when this is the first "cannot run"
    /// of the run. A "cannot run" is never undone by a later success (another worker may have
    /// it, but the run stays with the answer it warned about).
    pub(crate) fn record(&self, toolchain: &str, lacks: bool) -> bool {
        let mut known = self.known();
        let before = known.get(toolchain).copied();
        let first = lacks && before != Some(Known::Lacks);
        if lacks || before != Some(Known::Lacks) {
            known.insert(
                toolchain.to_string(),
                if lacks { Known::Lacks } else { Known::Works },
            );
        }
        drop(known);
        self.answered.notify_all();
        first
    }

    pub(crate) fn is_on(&self) -> bool {
        !self.off.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Turns remote execution off for the rest of the run; the first call warns, naming the
    /// server.
    pub(crate) fn fail(&self, problem: &str, reporter: &dyn crate::events::Reporter) {
        if !self.off.swap(true, std::sync::atomic::Ordering::SeqCst) {
            reporter.report(crate::events::Event::Warning {
                id: None,
                message: &format!(
                    "remote executor {}: {problem}; running tasks locally for the rest of this run",
                    self.config.executor.describe()
                ),
            });
        }
    }
}

/// At most `limit` holders at once: the local slots of a run whose `-j` also counts remote
/// tasks. Waiting stops when the run is cancelled.
pub(crate) struct LocalSlots {
    limit: usize,
    used: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

pub(crate) struct LocalSlot<'a>(&'a LocalSlots);

impl LocalSlots {
    pub(crate) fn new(limit: usize) -> LocalSlots {
        LocalSlots {
            limit: limit.max(1),
            used: std::sync::Mutex::new(0),
            freed: std::sync::Condvar::new(),
        }
    }

    /// A slot, or `None` when `cancelled` became true while waiting.
    pub(crate) fn acquire(&self, cancelled: &dyn Fn() -> bool) -> Option<LocalSlot<'_>> {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= self.limit {
            if cancelled() {
                return None;
            }
            used = self
                .freed
                .wait_timeout(used, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *used += 1;
        Some(LocalSlot(self))
    }
}

impl Drop for LocalSlot<'_> {
    fn drop(&mut self) {
        let mut used = self.0.used.lock().unwrap_or_else(|e| e.into_inner());
        *used -= 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_slots_bound_the_holders() {
        let slots = LocalSlots::new(2);
        let never = || false;
        let a = slots.acquire(&never).unwrap();
        let _b = slots.acquire(&never).unwrap();
        // A third waits; cancelled, it gives up.
        assert!(slots.acquire(&|| true).is_none());
        drop(a);
        assert!(slots.acquire(&never).is_some());
    }
}
