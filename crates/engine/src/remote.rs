//! The remote tier of the cache: a store shared by a team's machines, behind the local one.
//!
//! A [`RemoteBackend`] speaks one protocol (HTTP with the bazel-remote layout, the Remote
//! Execution API over gRPC); it moves opaque action entries and blobs and knows nothing of what
//! they mean. Everything that must hold whatever the server does is the engine's, above it:
//!
//! - an entry read from a server is untrusted input, checked exactly like a local one (its
//!   format, its checksum, [`crate::guard::check_entry`]) and, with a signing key, signed with
//!   HMAC-SHA256 (unsigned or badly signed = a miss);
//! - every blob fetched is re-hashed against its digest before the local store keeps it;
//! - an outage, a timeout, an error status or a garbage answer turns the remote tier off for the
//!   rest of the run with one warning; the build goes on with the local store, never fails
//!   and never uses what it could not verify;
//! - uploads run on a background thread, after the local store has the result, so they never
//!   hold up the critical path.
//!
//! The entry bytes a backend stores are the local store's own entry encoding (with a signature
//! line in front when signing is on), so a remote hit is restored by the same code as a local
//! one.

use std::io::{Read, Write};

use crate::digest::Digest;
use crate::store::ActionResult;

/// Why a remote call did not give an answer. Either way the remote tier is off for the rest of
/// the run, with one warning naming the server and this message.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// Not reachable, timed out, refused the credentials, or answered an error status.
    #[error("{0}")]
    Unavailable(String),
    /// Answered something that is not an answer to the question (a malformed body, a blob of the
    /// wrong size or digest, a protocol violation).
    #[error("{0}")]
    Garbage(String),
}

/// One remote cache protocol. Implementations are called from several threads at once (lookups
/// from the workers, uploads from the background thread); each call is bounded by the
/// backend's own connect and read timeouts.
pub trait RemoteBackend: Send + Sync {
    /// Where a result came from, in reports and the timings page: `"http"` or `"reapi"`.
    fn source(&self) -> &'static str;

    /// The server, for messages: its URL without credentials (and the instance name).
    fn describe(&self) -> String;

    /// The entry stored under `key`, or `None` when there is none. Never more than `max` bytes:
    /// a longer answer is [`RemoteError::Garbage`].
    fn get_action(&self, key: &Digest, max: u64) -> Result<Option<Vec<u8>>, RemoteError>;

    /// Stores `entry` under `key`. `result` is the same entry decoded, for protocols that store
    /// a structured form of it beside the bytes (REAPI's `ActionResult`); a backend that stores
    /// bytes only ignores it.
    fn put_action(
        &self,
        key: &Digest,
        entry: &[u8],
        result: &ActionResult,
    ) -> Result<(), RemoteError>;

    /// Those of `blobs` (digest, size) the server does not hold.
    fn find_missing(&self, blobs: &[(Digest, u64)]) -> Result<Vec<Digest>, RemoteError>;

    /// Writes the blob to `out`: `Ok(false)` when the server does not hold it. The caller
    /// verifies size and digest; a backend stops reading after `size` bytes (more is garbage).
    fn get_blob(
        &self,
        digest: &Digest,
        size: u64,
        out: &mut dyn Write,
    ) -> Result<bool, RemoteError>;

    /// Uploads the blob of `size` bytes read from `body`.
    fn put_blob(&self, digest: &Digest, size: u64, body: &mut dyn Read) -> Result<(), RemoteError>;
}
