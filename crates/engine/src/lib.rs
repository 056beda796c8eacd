//! `engine`: a generic content-addressed task engine.
//!
//! It runs a graph of tasks, keys each by the SHA-256 of everything that determines its result
//! (see [`key`]), stores outputs by content (see [`store`]), restores them on a hit, and says why
//! anything ran (see [`key::DirtyReason`] and [`ledger`]). What an action reports it read when
//! it runs (its [`task::Discovered`] inputs: a depfile's dependencies, a listing of a directory)
//! is stored with its result and re-checked before that result is used again (see
//! [`discovered`], [`depfile`]). Actions reach the content-addressed store through
//! [`task::BlobStore`].
//!
//! **Architecture invariant:** this crate knows nothing of scenarios, tiers, secrets or bundles.
//! It sees tasks with ids, parameters, globs and an [`task::Action`] to call.
//!
//! **Invariant:** the engine writes and deletes in a work tree only through [`confine`] (no
//! symbolic link is ever followed on the way) and never at a path [`guard`] protects (`.git`,
//! its own directories, configured paths); cache entries are untrusted input, checked whole
//! before anything of them is restored. It installs no signal handler: a front end stops a run
//! through [`Cancel`].
//!
//! On-disk layout (all under the workspace's state directory, `.xbundle/` by default):
//!
//! ```text
//! .xbundle/lock               exclusive lock held by a running build or cache maintenance
//! .xbundle/cache/lock         store lock: shared by builds, exclusive for gc/verify/clean
//! .xbundle/cache/cas/<sha256> blobs by SHA-256            (see store)
//! .xbundle/cache/ac/pack-<n>  action results by task key  (see store, acpack)
//! .xbundle/cache/ac/index     where each key's result is in the pack
//! .xbundle/state/stat-cache   path -> stat + digest       (see statcache)
//! .xbundle/state/clock        the file-system clock probe (see statcache)
//! .xbundle/state/ledger/keys   last key per task, appended (see ledger)
//! .xbundle/state/ledger/bodies-<n>  their key components and reasons, appended
//! .xbundle/tmp/               staging of restores (emptied at the start of each run)
//! ```

pub(crate) mod acpack;
pub mod cancel;
pub mod confine;
pub mod depfile;
pub mod digest;
mod direct;
pub mod discovered;
pub mod events;
pub mod exec;
pub mod files;
pub mod fsutil;
pub mod graph;
pub mod guard;
pub mod key;
pub mod ledger;
pub mod listings;
pub mod output;
pub mod overlap;
pub mod remote;
pub mod remote_exec;
pub mod statcache;
pub mod store;
pub mod task;

pub use cancel::Cancel;
pub use digest::Digest;
pub use events::{Event, Reporter, RunSummary, Stream, TaskReport, TaskStatus};
pub use exec::{Engine, EngineConfig, Expected, Probe};
pub use graph::{GraphError, GraphFormat, TaskGraph};
pub use key::{DirtyReason, KeyComponents};
pub use output::{Forward, OutputSink};
pub use task::{
    Action, ActionContext, ActionFailure, ActionOutput, BlobStore, CommandAction, Discovered,
    Spawning, TaskId, TaskSpec,
};
