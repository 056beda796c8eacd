//! Remote execution: a task's command sent to a build farm a team already runs (REAPI
//! `Execute`), its results landing in the local store as if it had run here.
//!
//! Only a task that can run anywhere its declared inputs are can go: its action says which
//! command it runs ([`crate::task::Action::remote_command`]: a plain command with no depfile and
//! no reads the engine cannot see), and its spec opts in ([`crate::task::TaskSpec::remote`]).
//! The engine builds the [`ExecuteRequest`] from what it already knows (the declared input files
//! with their digests, the dependencies' outputs, the declared environment, the output globs'
//! directories); an [`RemoteExecutor`] turns it into the protocol's messages (a `Command`, an
//! input root as a Merkle tree of `Directory` messages, an `Action`), uploads what the server
//! lacks, executes, and answers with the output files as root-relative paths and digests.
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

/// The command an action runs when it can run remotely.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteCommand {
    pub argv: Vec<String>,
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
