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
//!
//! How [`crate::exec`] uses it, per run ([`Session`]):
//! - on a local miss (never under `--force`, never for a probe: `--dry-run` and `explain` stay
//!   offline and say what a local run would do), the entry is fetched, its signature checked
//!   ([`RemoteCache::open_signed`]), decoded by [`crate::store::Store::decode_action`], checked by
//!   [`crate::guard::check_entry`] and the discovered-inputs rules; then every blob it names is
//!   fetched into the local store through [`crate::store::Store::put_blob_from`] (verified by
//!   size and digest, nothing kept on a mismatch), then the entry is written locally, and the
//!   task is restored from the local store exactly as a local hit;
//! - a task that ran is queued for upload once its entry is in the local store; the background
//!   thread uploads the blobs the server lacks ([`RemoteBackend::find_missing`]), each re-hashed
//!   as it is read (a local blob that no longer matches its digest is never sent whole), and
//!   the entry only after all of them; the run waits for the queue before it ends, except when
//!   it is interrupted: then a call in flight is abandoned ([`Session::detached`]), so a
//!   stalled server never holds up an interrupted build;
//! - the first [`RemoteError`], or anything fetched that fails a check, turns the tier off for
//!   the rest of the run with one warning ([`Session::fail`]).

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use hmac::{KeyInit, Mac};

use crate::digest::{Digest, Hasher};
use crate::events::{Event, Reporter};
use crate::store::{ActionResult, BlobFetchError, Store};

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

/// The first line of a signed entry: this tag, a space, the hex HMAC-SHA256 of the rest.
const SIGNATURE_TAG: &str = "xbundle-hmac-sha256";

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The remote tier as configured: a backend, whether this machine may write to it, and the key
/// entries are signed with (none: entries are not signed, and signatures are not checked).
#[derive(Clone)]
pub struct RemoteCache {
    backend: Arc<dyn RemoteBackend>,
    read_only: bool,
    signing_key: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for RemoteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("RemoteCache")
            .field("server", &self.backend.describe())
            .field("read_only", &self.read_only)
            .field("signed", &self.signing_key.is_some())
            .finish()
    }
}

impl RemoteCache {
    /// A read-write tier over `backend`, unsigned.
    pub fn new(backend: Arc<dyn RemoteBackend>) -> RemoteCache {
        RemoteCache {
            backend,
            read_only: false,
            signing_key: None,
        }
    }

    /// Reads only: nothing is ever uploaded.
    pub fn read_only(mut self, read_only: bool) -> RemoteCache {
        self.read_only = read_only;
        self
    }

    /// Signs uploaded entries with `key` and accepts only entries signed with it.
    pub fn signing_key(mut self, key: Option<Vec<u8>>) -> RemoteCache {
        self.signing_key = key.map(Arc::from);
        self
    }

    pub fn backend(&self) -> &dyn RemoteBackend {
        &*self.backend
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn mac(key: &[u8], entry: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(entry);
        mac
    }

    /// `entry` as stored remotely: with the signature line in front when there is a key.
    pub fn seal(&self, entry: Vec<u8>) -> Vec<u8> {
        let Some(key) = &self.signing_key else {
            return entry;
        };
        let tag = Self::mac(key, &entry).finalize().into_bytes();
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        let mut sealed = format!("{SIGNATURE_TAG} {hex}\n").into_bytes();
        sealed.extend_from_slice(&entry);
        sealed
    }

    /// The entry inside `bytes` as fetched. With a key, it must carry a signature line whose
    /// HMAC (compared in constant time) matches the rest; without one, a signature line is
    /// dropped unchecked.
    pub fn open_signed<'a>(&self, bytes: &'a [u8]) -> Result<&'a [u8], String> {
        let signed = bytes
            .strip_prefix(format!("{SIGNATURE_TAG} ").as_bytes())
            .and_then(|rest| {
                let newline = rest.iter().position(|&b| b == b'\n')?;
                Some((&rest[..newline], &rest[newline + 1..]))
            });
        match (&self.signing_key, signed) {
            (None, None) => Ok(bytes),
            (None, Some((_, entry))) => Ok(entry),
            (Some(_), None) => Err("the entry is not signed (a signing key is set)".into()),
            (Some(key), Some((hex, entry))) => {
                let tag = decode_hex(hex).ok_or("the entry's signature is malformed")?;
                Self::mac(key, entry)
                    .verify_slice(&tag)
                    .map_err(|_| "the entry's signature does not match (tampered, or signed with another key)".to_string())?;
                Ok(entry)
            }
        }
    }
}

fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

/// One run's use of the remote tier: on until the first failure, and the upload queue.
pub(crate) struct Session {
    cache: RemoteCache,
    off: AtomicBool,
    uploaded: AtomicUsize,
    queue: Mutex<Option<mpsc::Sender<(Digest, ActionResult)>>>,
}

impl Session {
    pub(crate) fn new(cache: RemoteCache) -> Session {
        Session {
            cache,
            off: AtomicBool::new(false),
            uploaded: AtomicUsize::new(0),
            queue: Mutex::new(None),
        }
    }

    pub(crate) fn source(&self) -> &'static str {
        self.cache.backend.source()
    }

    /// Starts a run: the tier is on again, nothing uploaded yet.
    pub(crate) fn begin(&self) {
        self.off.store(false, Ordering::SeqCst);
        self.uploaded.store(0, Ordering::SeqCst);
    }

    pub(crate) fn is_on(&self) -> bool {
        !self.off.load(Ordering::SeqCst)
    }

    /// Entries uploaded in this run.
    pub(crate) fn uploaded(&self) -> usize {
        self.uploaded.load(Ordering::SeqCst)
    }

    /// Turns the tier off for the rest of the run; the first call warns, naming the server.
    pub(crate) fn fail(&self, problem: &str, reporter: &dyn Reporter) {
        if !self.off.swap(true, Ordering::SeqCst) {
            reporter.report(Event::Warning {
                id: None,
                message: &format!(
                    "remote cache {}: {problem}; continuing with the local cache only for the rest of this run",
                    self.cache.backend.describe()
                ),
            });
        }
    }

    /// The entry under `key`, checked: signature, format, checksum, size bound, and `check`
    /// (the guard's rules); its blobs are not fetched yet. `None`: absent, or the tier is off.
    /// Anything wrong turns the tier off.
    pub(crate) fn lookup(
        &self,
        key: &Digest,
        check: &dyn Fn(&ActionResult) -> Result<(), String>,
        reporter: &dyn Reporter,
    ) -> Option<ActionResult> {
        if !self.is_on() {
            return None;
        }
        // Room for the signature line on top of the largest entry.
        let max = crate::store::MAX_ENTRY_BYTES + 256;
        let bytes = match self.cache.backend.get_action(key, max) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return None,
            Err(err) => {
                self.fail(&err.to_string(), reporter);
                return None;
            }
        };
        let checked = self
            .cache
            .open_signed(&bytes)
            .and_then(|entry| Store::decode_action(entry, key))
            .and_then(|found| match found {
                Some(result) => check(&result).map(|()| Some(result)),
                None => Ok(None),
            });
        match checked {
            Ok(found) => found,
            Err(problem) => {
                self.fail(
                    &format!("unusable entry {} ({problem})", key.short()),
                    reporter,
                );
                None
            }
        }
    }

    /// Fetches every blob of `result` the local store lacks, each verified. `false` (nothing of
    /// a failed blob kept) when one is absent or anything failed.
    pub(crate) fn fetch_blobs(
        &self,
        store: &Store,
        result: &ActionResult,
        reporter: &dyn Reporter,
    ) -> bool {
        for (digest, size) in result.blobs() {
            if !self.is_on() {
                return false;
            }
            let fetched = store.put_blob_from(&digest, size, |out| {
                self.cache.backend.get_blob(&digest, size, out)
            });
            match fetched {
                Ok(true) => {}
                // Evicted from the server: a plain miss.
                Ok(false) => return false,
                Err(BlobFetchError::Source(err)) => {
                    self.fail(&err.to_string(), reporter);
                    return false;
                }
                Err(BlobFetchError::Mismatch(problem)) => {
                    self.fail(&problem, reporter);
                    return false;
                }
                Err(BlobFetchError::Store(err)) => {
                    // The local store's trouble, not the server's: a miss with a warning.
                    reporter.report(Event::Warning {
                        id: None,
                        message: &format!(
                            "could not keep a blob fetched from the remote cache: {err}"
                        ),
                    });
                    return false;
                }
            }
        }
        true
    }

    /// Whether results are uploaded in this run.
    pub(crate) fn writes(&self) -> bool {
        !self.cache.read_only && self.is_on()
    }

    /// Queues `result` (already in the local store under `key`) for upload.
    pub(crate) fn queue(&self, key: Digest, result: ActionResult) {
        if !self.writes() {
            return;
        }
        if let Some(queue) = &*self.queue.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = queue.send((key, result));
        }
    }

    /// Opens the upload queue; the returned receiver is drained by [`Session::upload_all`].
    pub(crate) fn open_queue(&self) -> mpsc::Receiver<(Digest, ActionResult)> {
        let (send, receive) = mpsc::channel();
        *self.queue.lock().unwrap_or_else(|e| e.into_inner()) = Some(send);
        receive
    }

    /// Closes the queue: [`Session::upload_all`] returns once what is queued is done.
    pub(crate) fn close_queue(&self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// The background uploader: each queued result, blobs first, then its entry. Stops
    /// uploading (but drains the queue) once the tier is off or `stop` says so.
    pub(crate) fn upload_all(
        &self,
        store: &Store,
        queue: mpsc::Receiver<(Digest, ActionResult)>,
        stop: &dyn Fn() -> bool,
        reporter: &dyn Reporter,
    ) {
        for (key, result) in queue {
            if !self.writes() || stop() {
                continue;
            }
            match self.upload(store, &key, &result, stop) {
                Ok(()) => {
                    self.uploaded.fetch_add(1, Ordering::SeqCst);
                }
                Err(UploadError::Remote(err)) => self.fail(&err.to_string(), reporter),
                Err(UploadError::Local(problem)) => reporter.report(Event::Warning {
                    id: None,
                    message: &format!("not uploaded to the remote cache: {problem}"),
                }),
                Err(UploadError::Stopped) => {}
            }
        }
    }

    /// Runs `call` on the backend on a thread of its own and waits for it while `stop` says
    /// no: once it says yes (the run was interrupted), the call is abandoned (it ends by its
    /// own timeout, or with the process), so a stalled server never holds up an interrupted
    /// build. Nothing is lost: the local store had everything before it was queued, and an
    /// abandoned call is the last one of its upload (the entry goes up only after its blobs).
    fn detached<T: Send + 'static>(
        &self,
        stop: &dyn Fn() -> bool,
        call: impl FnOnce(&dyn RemoteBackend) -> T + Send + 'static,
    ) -> Result<T, UploadError> {
        let backend = self.cache.backend.clone();
        let (send, receive) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("xbundle-upload".into())
            .spawn(move || {
                let _ = send.send(call(&*backend));
            })
            .map_err(|err| UploadError::Local(format!("could not start an upload: {err}")))?;
        loop {
            match receive.recv_timeout(std::time::Duration::from_millis(50)) {
                Ok(answer) => return Ok(answer),
                Err(mpsc::RecvTimeoutError::Timeout) if stop() => return Err(UploadError::Stopped),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(UploadError::Local("an upload thread panicked".into()));
                }
            }
        }
    }

    fn upload(
        &self,
        store: &Store,
        key: &Digest,
        result: &ActionResult,
        stop: &dyn Fn() -> bool,
    ) -> Result<(), UploadError> {
        let mut blobs: Vec<(Digest, u64)> = result.blobs().collect();
        blobs.sort();
        blobs.dedup();
        let asked = blobs.clone();
        let missing = self
            .detached(stop, move |backend| backend.find_missing(&asked))?
            .map_err(UploadError::Remote)?;
        for (digest, size) in blobs
            .into_iter()
            .filter(|(digest, _)| missing.contains(digest))
        {
            let file = store
                .open_blob_for_upload(&digest, size)
                .map_err(|err| UploadError::Local(err.to_string()))?;
            let mut body = VerifyingReader {
                inner: file.take(size),
                hasher: Some(Hasher::new()),
                expected: digest,
                left: size,
                damaged: false,
            };
            let (sent, damaged) = self.detached(stop, move |backend| {
                let sent = backend.put_blob(&digest, size, &mut body);
                (sent, body.damaged)
            })?;
            sent.map_err(|err| {
                if damaged {
                    // The reader refused: the server is not at fault.
                    UploadError::Local(format!("local blob {} is damaged", digest.short()))
                } else {
                    UploadError::Remote(err)
                }
            })?;
        }
        let entry = self.cache.seal(Store::encode_action(key, result));
        let (key, result) = (*key, result.clone());
        self.detached(stop, move |backend| {
            backend.put_action(&key, &entry, &result)
        })?
        .map_err(UploadError::Remote)
    }
}

enum UploadError {
    Remote(RemoteError),
    Local(String),
    /// The run was interrupted while the call was in flight.
    Stopped,
}

/// Reads a local blob for upload, hashing it: at its end, an error instead of the end of the
/// body when the bytes do not match the digest (the request is then broken off, so the server
/// never gets a complete wrong blob).
pub(crate) struct VerifyingReader<R> {
    inner: R,
    hasher: Option<Hasher>,
    expected: Digest,
    left: u64,
    damaged: bool,
}

impl<R> VerifyingReader<R> {
    /// Reads at most `size` bytes of `inner`, checked against `expected` at the end.
    pub(crate) fn new(inner: R, expected: Digest, size: u64) -> VerifyingReader<R> {
        VerifyingReader {
            inner,
            hasher: Some(Hasher::new()),
            expected,
            left: size,
            damaged: false,
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buffer[..read]);
        }
        self.left = self.left.saturating_sub(read as u64);
        if (read == 0 || self.left == 0)
            && let Some(hasher) = self.hasher.take()
            && hasher.finish() != self.expected
        {
            self.damaged = true;
            return Err(std::io::Error::other(
                "the local blob does not match its digest",
            ));
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend that is never called.
    struct Nowhere;

    impl RemoteBackend for Nowhere {
        fn source(&self) -> &'static str {
            "test"
        }
        fn describe(&self) -> String {
            "nowhere".into()
        }
        fn get_action(&self, _: &Digest, _: u64) -> Result<Option<Vec<u8>>, RemoteError> {
            unreachable!()
        }
        fn put_action(&self, _: &Digest, _: &[u8], _: &ActionResult) -> Result<(), RemoteError> {
            unreachable!()
        }
        fn find_missing(&self, _: &[(Digest, u64)]) -> Result<Vec<Digest>, RemoteError> {
            unreachable!()
        }
        fn get_blob(&self, _: &Digest, _: u64, _: &mut dyn Write) -> Result<bool, RemoteError> {
            unreachable!()
        }
        fn put_blob(&self, _: &Digest, _: u64, _: &mut dyn Read) -> Result<(), RemoteError> {
            unreachable!()
        }
    }

    fn cache(key: Option<&str>) -> RemoteCache {
        RemoteCache::new(Arc::new(Nowhere)).signing_key(key.map(|k| k.as_bytes().to_vec()))
    }

    #[test]
    fn signatures_are_checked_with_a_key() {
        let entry = b"xbundle-ac-v3 abc def\n{}".to_vec();
        let signed = cache(Some("k1")).seal(entry.clone());
        assert!(signed.starts_with(b"xbundle-hmac-sha256 "));
        assert_eq!(cache(Some("k1")).open_signed(&signed).unwrap(), &entry[..]);
        // Another key, a changed byte, a truncated tag, no signature: refused.
        assert!(cache(Some("k2")).open_signed(&signed).is_err());
        let mut tampered = signed.clone();
        *tampered.last_mut().unwrap() = b']';
        assert!(cache(Some("k1")).open_signed(&tampered).is_err());
        let newline = signed.iter().position(|&b| b == b'\n').unwrap();
        let mut short = signed[..newline - 2].to_vec();
        short.extend_from_slice(&signed[newline..]);
        assert!(cache(Some("k1")).open_signed(&short).is_err());
        assert!(cache(Some("k1")).open_signed(&entry).is_err());
        // Without a key: unsigned entries as they are, signed ones without the line.
        assert_eq!(cache(None).seal(entry.clone()), entry);
        assert_eq!(cache(None).open_signed(&entry).unwrap(), &entry[..]);
        assert_eq!(cache(None).open_signed(&signed).unwrap(), &entry[..]);
        // The Debug form never shows the key.
        assert!(!format!("{:?}", cache(Some("secret-key"))).contains("secret"));
    }

    #[test]
    fn a_damaged_local_blob_is_never_read_to_its_end() {
        let bytes = b"blob bytes".to_vec();
        let mut good = VerifyingReader {
            inner: &bytes[..],
            hasher: Some(Hasher::new()),
            expected: Digest::of_bytes(&bytes),
            left: bytes.len() as u64,
            damaged: false,
        };
        let mut out = Vec::new();
        good.read_to_end(&mut out).unwrap();
        assert_eq!(out, bytes);
        let mut bad = VerifyingReader {
            inner: &bytes[..],
            hasher: Some(Hasher::new()),
            expected: Digest::of_bytes(b"other"),
            left: bytes.len() as u64,
            damaged: false,
        };
        assert!(bad.read_to_end(&mut Vec::new()).is_err());
        assert!(bad.damaged);
    }
}
