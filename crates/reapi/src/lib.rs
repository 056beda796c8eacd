//! A Remote Execution API (REAPI v2) cache backend for the engine's remote tier: the
//! `ActionCache`, `ContentAddressableStorage` and `ByteStream` services of any REAPI server
//! (BuildGrid, Buildbarn, BuildBuddy, EngFlow, NativeLink, bazel-remote's gRPC side), over
//! `grpc://` or `grpcs://` (rustls, the platform's roots), with an instance name and an optional
//! bearer token.
//!
//! Invariants:
//! - [`ReapiBackend`] implements [`engine::remote::RemoteBackend`] and moves bytes only; what
//!   the engine must check (entry format, signatures, the guard) stays the engine's. Action
//!   entries are stored as real REAPI action-cache entries (see [`action`]).
//! - Every call is bounded: the connection by the connect timeout, each unary call by the call
//!   timeout, and each message of a ByteStream transfer by the call timeout (a stalled stream
//!   fails, a long healthy one does not); past a grace of the call timeout, a ByteStream read
//!   must average [`MIN_RATE`], so a server trickling a byte per message fails too.
//! - Nothing a server answers is trusted: a blob is never read past its size, and every blob
//!   read is re-hashed against its digest here too (a wrong size or digest is
//!   [`RemoteError::Garbage`], even though the engine checks again); an answer naming what was
//!   not asked for is garbage.
//! - gRPC `NOT_FOUND` is an absence (`None`, `Ok(false)`, a missing blob); every other error
//!   status, a transport failure or a timeout is [`RemoteError::Unavailable`].
//! - The trait is synchronous: the backend owns a small tokio runtime and each call is a
//!   `block_on` on the caller's thread, so several engine threads may call at once. It must not
//!   be called from inside another tokio runtime.

pub mod action;
pub mod execute;

use std::future::Future;
use std::io::{Read, Write};
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream::byte_stream_client::ByteStreamClient;
use bazel_remote_apis::google::bytestream::{ReadRequest, WriteRequest};
use engine::Digest;
use engine::digest::Hasher;
use engine::remote::{RemoteBackend, RemoteError};
use engine::store::ActionResult;
use re::action_cache_client::ActionCacheClient;
use re::capabilities_client::CapabilitiesClient;
use re::content_addressable_storage_client::ContentAddressableStorageClient;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

/// gRPC's default message size limit (tonic's and most servers'): batches stay under it.
const GRPC_MESSAGE_LIMIT: u64 = 4 << 20;
/// Room left in a batch for everything that is not blob data (digests, instance name, framing).
const BATCH_OVERHEAD: u64 = 16 << 10;
/// ByteStream Write chunk size.
const WRITE_CHUNK: usize = 1 << 20;
/// Digests per FindMissingBlobs request (about 80 bytes each: well under the message limit).
const FIND_MISSING_CHUNK: usize = 4096;
/// Empty ByteStream Read messages tolerated in one read (a server has no reason to send any).
const MAX_EMPTY_MESSAGES: u32 = 16;

/// The slowest a ByteStream read may arrive on average (bytes per second), once the call
/// timeout has passed since it began.
pub const MIN_RATE: u64 = 16 * 1024;
const SHA256: i32 = re::digest_function::Value::Sha256 as i32;

/// How to reach the server, beside its URL.
#[derive(Clone, Debug)]
pub struct ReapiOptions {
    /// The REAPI instance name (`""` for the server's default instance).
    pub instance: String,
    /// Sent as `authorization: Bearer <token>` on every call (the caller reads it from the
    /// environment; it is never printed).
    pub token: Option<String>,
    /// A PEM certificate authority trusted for `grpcs://` besides the platform's roots (a
    /// company's own CA).
    pub ca_certificate: Option<Vec<u8>>,
    pub connect_timeout: Duration,
    /// The bound of each unary call, and of each message of a ByteStream transfer.
    pub call_timeout: Duration,
}

impl Default for ReapiOptions {
    fn default() -> ReapiOptions {
        ReapiOptions {
            instance: String::new(),
            token: None,
            ca_certificate: None,
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(60),
        }
    }
}

/// A parsed `grpc://host:port` or `grpcs://host[:port]` endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReapiUrl {
    pub tls: bool,
    /// `host:port` (the port made explicit).
    pub authority: String,
}

impl ReapiUrl {
    /// Parses a REAPI endpoint URL; `Err` says what is wrong with it, for a configuration error.
    pub fn parse(url: &str) -> Result<ReapiUrl, String> {
        let shown = hide_credentials(url);
        let url = shown.as_str();
        let (tls, rest) = if let Some(rest) = url.strip_prefix("grpcs://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("grpc://") {
            (false, rest)
        } else {
            return Err(format!(
                "{url:?} is not a REAPI endpoint: write grpc://HOST:PORT or grpcs://HOST[:PORT]"
            ));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() {
            return Err(format!("{url:?} names no host"));
        }
        if authority.contains('@') {
            return Err(format!(
                "{url:?} holds credentials: give a bearer token through the environment instead"
            ));
        }
        if authority.contains(['/', '?', '#']) {
            return Err(format!(
                "{url:?} has a path: the instance name is a separate setting"
            ));
        }
        let uri: tonic::transport::Uri = format!("http://{authority}")
            .parse()
            .map_err(|error| format!("{url:?} is not a valid URL: {error}"))?;
        let host = uri.host().unwrap_or_default();
        if host.is_empty() {
            return Err(format!("{url:?} names no host"));
        }
        let authority = match (uri.port_u16(), tls) {
            (Some(_), _) => authority.to_string(),
            (None, true) => format!("{authority}:443"),
            (None, false) => {
                return Err(format!("{url:?} names no port: write grpc://HOST:PORT"));
            }
        };
        Ok(ReapiUrl { tls, authority })
    }

    fn scheme(&self) -> &'static str {
        if self.tls { "grpcs" } else { "grpc" }
    }
}

/// The URL with any `user:password@` part replaced, for messages.
fn hide_credentials(url: &str) -> String {
    let start = url.find("://").map_or(0, |at| at + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |at| start + at);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]),
        None => url.to_string(),
    }
}

impl std::fmt::Display for ReapiUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme(), self.authority)
    }
}

/// A connection to one REAPI server's cache services.
pub struct ReapiBackend {
    url: ReapiUrl,
    instance: String,
    authorization: Option<AsciiMetadataValue>,
    call_timeout: Duration,
    /// The largest blob sent or read through the batch calls; larger ones go through ByteStream.
    batch_limit: u64,
    /// The server said it executes actions (`execution_capabilities.exec_enabled`).
    exec_enabled: bool,
    channel: Channel,
    runtime: tokio::runtime::Runtime,
}

/// The server and instance only: never the token.
impl std::fmt::Debug for ReapiBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReapiBackend({})", self.describe())
    }
}

impl ReapiBackend {
    /// Connects and reads the server's capabilities once. Fails when the URL is not a REAPI
    /// endpoint, the server cannot be reached within the connect timeout, or it does not offer
    /// SHA-256 digests.
    pub fn connect(url: &str, options: ReapiOptions) -> Result<ReapiBackend, RemoteError> {
        let url = ReapiUrl::parse(url).map_err(RemoteError::Unavailable)?;
        let authorization = match &options.token {
            None => None,
            Some(token) => Some(
                format!("Bearer {token}")
                    .parse::<AsciiMetadataValue>()
                    .map_err(|_| {
                        RemoteError::Unavailable(
                            "the REAPI bearer token holds characters a header cannot carry"
                                .to_string(),
                        )
                    })?,
            ),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("reapi")
            .enable_all()
            .build()
            .map_err(|error| {
                RemoteError::Unavailable(format!("starting the REAPI client runtime: {error}"))
            })?;
        let scheme = if url.tls { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{}", url.authority))
            .map_err(|error| RemoteError::Unavailable(format!("{url}: {error}")))?
            .connect_timeout(options.connect_timeout)
            .tcp_nodelay(true);
        if url.tls {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(pem) = &options.ca_certificate {
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|error| RemoteError::Unavailable(format!("{url}: TLS: {error}")))?;
        }
        let channel = runtime
            .block_on(async {
                tokio::time::timeout(options.connect_timeout, endpoint.connect()).await
            })
            .map_err(|_| {
                RemoteError::Unavailable(format!(
                    "{url}: no connection within {} ms",
                    options.connect_timeout.as_millis()
                ))
            })?
            .map_err(|error| RemoteError::Unavailable(format!("{url}: {}", chain(&error))))?;
        let mut backend = ReapiBackend {
            url,
            instance: options.instance,
            authorization,
            call_timeout: options.call_timeout,
            batch_limit: 0,
            exec_enabled: false,
            channel,
            runtime,
        };
        let request = re::GetCapabilitiesRequest {
            instance_name: backend.instance.clone(),
        };
        let capabilities = backend.unary(
            "GetCapabilities",
            async |client: Channel, request| {
                CapabilitiesClient::new(client)
                    .get_capabilities(request)
                    .await
            },
            request,
        )?;
        let cache = capabilities.cache_capabilities.ok_or_else(|| {
            RemoteError::Unavailable(format!(
                "{}: the server offers no cache (no cache capabilities)",
                backend.describe()
            ))
        })?;
        // An empty list is an old server's way of saying SHA-256 only.
        if !cache.digest_functions.is_empty() && !cache.digest_functions.contains(&SHA256) {
            let offered: Vec<&str> = cache
                .digest_functions
                .iter()
                .map(|value| {
                    re::digest_function::Value::try_from(*value)
                        .map(|value| value.as_str_name())
                        .unwrap_or("unknown")
                })
                .collect();
            return Err(RemoteError::Unavailable(format!(
                "{}: the server does not offer SHA-256 digests (it offers {}); xbundle needs SHA-256",
                backend.describe(),
                offered.join(", ")
            )));
        }
        let server_limit = u64::try_from(cache.max_batch_total_size_bytes).unwrap_or(0);
        let limit = match server_limit {
            0 => GRPC_MESSAGE_LIMIT,
            limit => limit.min(GRPC_MESSAGE_LIMIT),
        };
        backend.batch_limit = limit.saturating_sub(BATCH_OVERHEAD);
        backend.exec_enabled = capabilities
            .execution_capabilities
            .as_ref()
            .is_some_and(|execution| execution.exec_enabled);
        Ok(backend)
    }

    /// The largest blob the batch calls carry; larger ones use ByteStream.
    pub fn batch_limit(&self) -> u64 {
        self.batch_limit
    }

    /// The REAPI action digest (`hash/size`) that stands for an engine key: what
    /// `bgd actioncache get` and other tools look up.
    pub fn action_digest(key: &Digest) -> String {
        let digest = action::keyed_action(key).digest;
        format!("{}/{}", digest.hash, digest.size_bytes)
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        request
    }

    /// One unary call, bounded by the call timeout.
    fn unary<T, R, F>(
        &self,
        name: &str,
        call: impl FnOnce(Channel, Request<T>) -> F,
        message: T,
    ) -> Result<R, RemoteError>
    where
        F: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let mut request = self.request(message);
        request.set_timeout(self.call_timeout);
        let future = call(self.channel.clone(), request);
        match self.timed(name, future)? {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(self.status_error(name, &status)),
        }
    }

    /// Like [`Self::unary`], but a `NOT_FOUND` status is `None`.
    fn unary_found<T, R, F>(
        &self,
        name: &str,
        call: impl FnOnce(Channel, Request<T>) -> F,
        message: T,
    ) -> Result<Option<R>, RemoteError>
    where
        F: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let mut request = self.request(message);
        request.set_timeout(self.call_timeout);
        let future = call(self.channel.clone(), request);
        match self.timed(name, future)? {
            Ok(response) => Ok(Some(response.into_inner())),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(self.status_error(name, &status)),
        }
    }

    /// Runs `future` on the backend's runtime from the caller's thread, within the call timeout.
    fn timed<T>(&self, name: &str, future: impl Future<Output = T>) -> Result<T, RemoteError> {
        self.runtime
            .block_on(async { tokio::time::timeout(self.call_timeout, future).await })
            .map_err(|_| {
                RemoteError::Unavailable(format!(
                    "{}: {name}: no answer within {} ms",
                    self.describe(),
                    self.call_timeout.as_millis()
                ))
            })
    }

    fn status_error(&self, name: &str, status: &Status) -> RemoteError {
        let mut message = format!("{}: {name}: {:?}", self.describe(), status.code());
        if !status.message().is_empty() {
            message.push_str(": ");
            message.push_str(status.message());
        }
        RemoteError::Unavailable(message)
    }

    fn garbage(&self, name: &str, problem: impl std::fmt::Display) -> RemoteError {
        RemoteError::Garbage(format!("{}: {name}: {problem}", self.describe()))
    }

    fn resource(&self, tail: String) -> String {
        if self.instance.is_empty() {
            tail
        } else {
            format!("{}/{tail}", self.instance)
        }
    }

    /// Uploads blobs held in memory: those under the batch limit in as few BatchUpdateBlobs
    /// calls as fit, the others through ByteStream. The empty blob is never sent (every REAPI
    /// server holds it).
    fn upload_all(&self, blobs: &[(Digest, &[u8])]) -> Result<(), RemoteError> {
        let mut batch: Vec<re::batch_update_blobs_request::Request> = Vec::new();
        let mut batch_bytes = 0u64;
        for (digest, bytes) in blobs {
            let size = bytes.len() as u64;
            if size == 0 {
                continue;
            }
            if size > self.batch_limit {
                self.write_stream(digest, size, &mut &bytes[..])?;
                continue;
            }
            if batch_bytes + size > self.batch_limit {
                self.batch_update(std::mem::take(&mut batch))?;
                batch_bytes = 0;
            }
            batch_bytes += size;
            batch.push(re::batch_update_blobs_request::Request {
                digest: Some(action::to_re(digest, size)),
                data: bytes.to_vec(),
                compressor: 0,
            });
        }
        if !batch.is_empty() {
            self.batch_update(batch)?;
        }
        Ok(())
    }

    fn batch_update(
        &self,
        requests: Vec<re::batch_update_blobs_request::Request>,
    ) -> Result<(), RemoteError> {
        let sent: Vec<String> = requests
            .iter()
            .filter_map(|request| request.digest.as_ref().map(|d| d.hash.clone()))
            .collect();
        let message = re::BatchUpdateBlobsRequest {
            instance_name: self.instance.clone(),
            requests,
            digest_function: SHA256,
        };
        let response = self.unary(
            "BatchUpdateBlobs",
            async |channel, request| {
                ContentAddressableStorageClient::new(channel)
                    .batch_update_blobs(request)
                    .await
            },
            message,
        )?;
        let mut answered = 0;
        for answer in &response.responses {
            let hash = answer
                .digest
                .as_ref()
                .map(|d| d.hash.as_str())
                .unwrap_or("");
            if !sent.iter().any(|sent| sent == hash) {
                return Err(self.garbage(
                    "BatchUpdateBlobs",
                    format!("answers for {hash:?}, which was not sent"),
                ));
            }
            answered += 1;
            if let Some(status) = &answer.status
                && status.code != Code::Ok as i32
            {
                return Err(RemoteError::Unavailable(format!(
                    "{}: BatchUpdateBlobs: blob {hash}: {:?}: {}",
                    self.describe(),
                    Code::from_i32(status.code),
                    status.message
                )));
            }
        }
        if answered != sent.len() {
            return Err(self.garbage(
                "BatchUpdateBlobs",
                format!("{answered} answers for {} blobs", sent.len()),
            ));
        }
        Ok(())
    }

    /// ByteStream Write of `size` bytes read from `body`, fed chunk by chunk; each chunk and the
    /// final answer are bounded by the call timeout.
    fn write_stream(
        &self,
        digest: &Digest,
        size: u64,
        body: &mut dyn Read,
    ) -> Result<(), RemoteError> {
        let name = "ByteStream.Write";
        let resource = self.resource(format!(
            "uploads/{}/blobs/{}/{size}",
            uuid::Uuid::new_v4(),
            digest.to_hex()
        ));
        let (sender, receiver) = tokio::sync::mpsc::channel::<WriteRequest>(2);
        let request = self.request(tokio_stream::wrappers::ReceiverStream::new(receiver));
        let mut client = ByteStreamClient::new(self.channel.clone());
        let mut call = self
            .runtime
            .spawn(async move { client.write(request).await });
        let mut offset = 0u64;
        let mut buffer = vec![0u8; WRITE_CHUNK];
        let mut first = true;
        while offset < size {
            let want = (size - offset).min(WRITE_CHUNK as u64) as usize;
            if let Err(error) = body.read_exact(&mut buffer[..want]) {
                call.abort();
                return Err(RemoteError::Unavailable(format!(
                    "{}: {name}: reading blob {} to upload it: {error}",
                    self.describe(),
                    digest.short()
                )));
            }
            let request = WriteRequest {
                resource_name: if first {
                    resource.clone()
                } else {
                    String::new()
                },
                write_offset: offset as i64,
                finish_write: offset + want as u64 == size,
                data: buffer[..want].to_vec(),
            };
            first = false;
            offset += want as u64;
            match self.timed(name, sender.send(request)) {
                Ok(Ok(())) => {}
                // The server ended the call (it already holds the blob, or it refused): its
                // answer says which.
                Ok(Err(_)) => break,
                Err(timeout) => {
                    call.abort();
                    return Err(timeout);
                }
            }
        }
        drop(sender);
        let answer = match self.timed(name, &mut call) {
            Ok(answer) => answer,
            Err(timeout) => {
                call.abort();
                return Err(timeout);
            }
        };
        let response = match answer {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => return Err(self.status_error(name, &status)),
            Err(join) => {
                return Err(RemoteError::Unavailable(format!(
                    "{}: {name}: {join}",
                    self.describe()
                )));
            }
        };
        if response.committed_size != size as i64 {
            return Err(self.garbage(
                name,
                format!(
                    "committed {} bytes of the {size} of blob {}",
                    response.committed_size,
                    digest.short()
                ),
            ));
        }
        Ok(())
    }

    /// BatchReadBlobs of one blob under the batch limit.
    fn read_batch(
        &self,
        digest: &Digest,
        size: u64,
        out: &mut dyn Write,
    ) -> Result<bool, RemoteError> {
        let name = "BatchReadBlobs";
        let message = re::BatchReadBlobsRequest {
            instance_name: self.instance.clone(),
            digests: vec![action::to_re(digest, size)],
            acceptable_compressors: Vec::new(),
            digest_function: SHA256,
        };
        let response = self.unary(
            name,
            async |channel, request| {
                ContentAddressableStorageClient::new(channel)
                    .batch_read_blobs(request)
                    .await
            },
            message,
        )?;
        let [answer] = response.responses.as_slice() else {
            return Err(self.garbage(
                name,
                format!("{} answers for one blob", response.responses.len()),
            ));
        };
        let hash = answer
            .digest
            .as_ref()
            .map(|d| d.hash.as_str())
            .unwrap_or("");
        if hash != digest.to_hex() {
            return Err(self.garbage(
                name,
                format!("answers for {hash:?}, which was not asked for"),
            ));
        }
        if let Some(status) = &answer.status {
            if status.code == Code::NotFound as i32 {
                return Ok(false);
            }
            if status.code != Code::Ok as i32 {
                return Err(RemoteError::Unavailable(format!(
                    "{}: {name}: blob {}: {:?}: {}",
                    self.describe(),
                    digest.short(),
                    Code::from_i32(status.code),
                    status.message
                )));
            }
        }
        if answer.compressor != 0 {
            return Err(self.garbage(name, "a compressed blob, which was not accepted"));
        }
        let mut sink = Checked::new(self, name, digest, size, out);
        sink.push(&answer.data)?;
        sink.finish()?;
        Ok(true)
    }

    /// ByteStream Read of one blob, never keeping more than `size` bytes.
    fn read_stream(
        &self,
        digest: &Digest,
        size: u64,
        out: &mut dyn Write,
    ) -> Result<bool, RemoteError> {
        let name = "ByteStream.Read";
        let message = ReadRequest {
            resource_name: self.resource(format!("blobs/{}/{size}", digest.to_hex())),
            read_offset: 0,
            read_limit: size as i64,
        };
        let request = self.request(message);
        let mut client = ByteStreamClient::new(self.channel.clone());
        let mut stream = match self.timed(name, client.read(request))? {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == Code::NotFound => return Ok(false),
            Err(status) => return Err(self.status_error(name, &status)),
        };
        let mut sink = Checked::new(self, name, digest, size, out);
        let mut empty = 0;
        let started = std::time::Instant::now();
        loop {
            let elapsed = started.elapsed();
            let allowed =
                self.call_timeout + Duration::from_secs_f64(sink.received as f64 / MIN_RATE as f64);
            if elapsed > allowed {
                return Err(RemoteError::Unavailable(format!(
                    "{}: {name}: the server is too slow ({} bytes in {:.0} s)",
                    self.describe(),
                    sink.received,
                    elapsed.as_secs_f64()
                )));
            }
            match self.timed(name, stream.message())? {
                Ok(Some(message)) if message.data.is_empty() => {
                    // Each message is bounded by the call timeout; a stream of empty ones would
                    // never end.
                    empty += 1;
                    if empty > MAX_EMPTY_MESSAGES {
                        return Err(self.garbage(name, "a stream of empty messages"));
                    }
                }
                Ok(Some(message)) => sink.push(&message.data)?,
                Ok(None) => break,
                Err(status) if status.code() == Code::NotFound && sink.received == 0 => {
                    return Ok(false);
                }
                Err(status) => return Err(self.status_error(name, &status)),
            }
        }
        sink.finish()?;
        Ok(true)
    }
}

/// A blob being received: refuses bytes past its size, hashes what it passes on, and checks
/// the size and digest at the end.
struct Checked<'a> {
    backend: &'a ReapiBackend,
    name: &'a str,
    digest: &'a Digest,
    size: u64,
    received: u64,
    hasher: Hasher,
    out: &'a mut dyn Write,
}

impl<'a> Checked<'a> {
    fn new(
        backend: &'a ReapiBackend,
        name: &'a str,
        digest: &'a Digest,
        size: u64,
        out: &'a mut dyn Write,
    ) -> Checked<'a> {
        Checked {
            backend,
            name,
            digest,
            size,
            received: 0,
            hasher: Hasher::new(),
            out,
        }
    }

    fn push(&mut self, data: &[u8]) -> Result<(), RemoteError> {
        if self.received + data.len() as u64 > self.size {
            return Err(self.backend.garbage(
                self.name,
                format!(
                    "blob {} is longer than its {} bytes",
                    self.digest.short(),
                    self.size
                ),
            ));
        }
        self.received += data.len() as u64;
        self.hasher.update(data);
        self.out.write_all(data).map_err(|error| {
            RemoteError::Unavailable(format!(
                "{}: {}: writing blob {}: {error}",
                self.backend.describe(),
                self.name,
                self.digest.short()
            ))
        })
    }

    fn finish(self) -> Result<(), RemoteError> {
        if self.received != self.size {
            return Err(self.backend.garbage(
                self.name,
                format!(
                    "blob {} ended after {} of its {} bytes",
                    self.digest.short(),
                    self.received,
                    self.size
                ),
            ));
        }
        let found = self.hasher.finish();
        if found != *self.digest {
            return Err(self.backend.garbage(
                self.name,
                format!(
                    "blob {} answered with the bytes of {}",
                    self.digest.short(),
                    found.short()
                ),
            ));
        }
        Ok(())
    }
}

/// An error and its sources, one line (tonic's transport errors say little at the top).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

impl RemoteBackend for ReapiBackend {
    fn source(&self) -> &'static str {
        "reapi"
    }

    fn describe(&self) -> String {
        if self.instance.is_empty() {
            self.url.to_string()
        } else {
            format!("{} (instance {})", self.url, self.instance)
        }
    }

    fn get_action(&self, key: &Digest, max: u64) -> Result<Option<Vec<u8>>, RemoteError> {
        let name = "GetActionResult";
        let message = re::GetActionResultRequest {
            instance_name: self.instance.clone(),
            action_digest: Some(action::keyed_action(key).digest),
            inline_stdout: false,
            inline_stderr: false,
            inline_output_files: Vec::new(),
            digest_function: SHA256,
        };
        let Some(result) = self.unary_found(
            name,
            async |channel, request| {
                ActionCacheClient::new(channel)
                    .get_action_result(request)
                    .await
            },
            message,
        )?
        else {
            return Ok(None);
        };
        let (entry, size) =
            action::entry_pointer(&result, max).map_err(|problem| self.garbage(name, problem))?;
        let mut bytes = Vec::with_capacity(size.min(1 << 20) as usize);
        if !self.get_blob(&entry, size, &mut bytes)? {
            // The entry blob was evicted while the action result stayed: a miss.
            return Ok(None);
        }
        Ok(Some(bytes))
    }

    fn put_action(
        &self,
        key: &Digest,
        entry: &[u8],
        result: &ActionResult,
    ) -> Result<(), RemoteError> {
        let keyed = action::keyed_action(key);
        let entry_digest = Digest::of_bytes(entry);
        self.upload_all(&[
            (Digest::of_bytes(&keyed.command), &keyed.command),
            (Digest::of_bytes(&keyed.input_root), &keyed.input_root),
            (Digest::of_bytes(&keyed.action), &keyed.action),
            (entry_digest, entry),
        ])?;
        let message = re::UpdateActionResultRequest {
            instance_name: self.instance.clone(),
            action_digest: Some(keyed.digest),
            action_result: Some(action::action_result(
                result,
                &action::to_re(&entry_digest, entry.len() as u64),
            )),
            results_cache_policy: None,
            digest_function: SHA256,
        };
        self.unary(
            "UpdateActionResult",
            async |channel, request| {
                ActionCacheClient::new(channel)
                    .update_action_result(request)
                    .await
            },
            message,
        )?;
        Ok(())
    }

    fn find_missing(&self, blobs: &[(Digest, u64)]) -> Result<Vec<Digest>, RemoteError> {
        let name = "FindMissingBlobs";
        let mut missing = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for chunk in blobs.chunks(FIND_MISSING_CHUNK) {
            let message = re::FindMissingBlobsRequest {
                instance_name: self.instance.clone(),
                blob_digests: chunk
                    .iter()
                    .map(|(digest, size)| action::to_re(digest, *size))
                    .collect(),
                digest_function: SHA256,
            };
            let response = self.unary(
                name,
                async |channel, request| {
                    ContentAddressableStorageClient::new(channel)
                        .find_missing_blobs(request)
                        .await
                },
                message,
            )?;
            for answer in &response.missing_blob_digests {
                let known = action::from_re(answer)
                    .and_then(|(digest, size)| chunk.contains(&(digest, size)).then_some(digest));
                let Some(digest) = known else {
                    return Err(self.garbage(
                        name,
                        format!(
                            "names {}/{} missing, which was not asked about",
                            answer.hash, answer.size_bytes
                        ),
                    ));
                };
                if seen.insert(digest) {
                    missing.push(digest);
                }
            }
        }
        Ok(missing)
    }

    fn get_blob(
        &self,
        digest: &Digest,
        size: u64,
        out: &mut dyn Write,
    ) -> Result<bool, RemoteError> {
        if i64::try_from(size).is_err() {
            return Err(RemoteError::Garbage(format!(
                "blob {} cannot have {size} bytes",
                digest.short()
            )));
        }
        if size == 0 {
            return if *digest == Digest::EMPTY {
                Ok(true)
            } else {
                Err(RemoteError::Garbage(format!(
                    "blob {} cannot have 0 bytes",
                    digest.short()
                )))
            };
        }
        if size <= self.batch_limit {
            self.read_batch(digest, size, out)
        } else {
            self.read_stream(digest, size, out)
        }
    }

    fn put_blob(&self, digest: &Digest, size: u64, body: &mut dyn Read) -> Result<(), RemoteError> {
        if size == 0 {
            return Ok(());
        }
        if size > self.batch_limit {
            return self.write_stream(digest, size, body);
        }
        let mut bytes = Vec::with_capacity(size as usize);
        let read = body.take(size).read_to_end(&mut bytes).map_err(|error| {
            RemoteError::Unavailable(format!(
                "{}: reading blob {} to upload it: {error}",
                self.describe(),
                digest.short()
            ))
        })?;
        if read as u64 != size {
            return Err(RemoteError::Unavailable(format!(
                "{}: blob {} to upload ended after {read} of its {size} bytes",
                self.describe(),
                digest.short()
            )));
        }
        self.upload_all(&[(*digest, &bytes)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            ReapiUrl::parse("grpc://127.0.0.1:8980"),
            Ok(ReapiUrl {
                tls: false,
                authority: "127.0.0.1:8980".into()
            })
        );
        assert_eq!(
            ReapiUrl::parse("grpcs://cache.example.com/")
                .unwrap()
                .to_string(),
            "grpcs://cache.example.com:443"
        );
        for bad in [
            "http://host:1",
            "grpc://host",
            "grpc://",
            "grpc://user:secret@host:1",
            "grpc://host:1/instance",
            "grpc://host:notaport",
        ] {
            assert!(ReapiUrl::parse(bad).is_err(), "{bad}");
        }
        for with_secret in ["grpc://user:secret@host:1", "http://user:secret@host:1"] {
            let error = ReapiUrl::parse(with_secret).unwrap_err();
            assert!(!error.contains("secret"), "{error}");
        }
    }
}
