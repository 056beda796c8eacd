//! The REAPI backend against a lying server: a small fake REAPI server (tonic's server side, in
//! this process, on 127.0.0.1) that answers wrong bytes, too many or too few bytes, answers
//! about what was not asked, action results without a valid entry pointer, error statuses,
//! silence, and lacks SHA-256. Each lie is `Garbage` or `Unavailable`, never accepted. Its
//! Execution service (for `ReapiExecutor`) breaks the operation stream (resumed with
//! WaitExecution), never finishes (bounded), names outputs outside the requested paths, answers
//! the wrong message type or an operation error, or is not offered at all. The same
//! fake, honest, serves the tests of grpcs:// (a CA made by the test) and of many threads
//! calling one backend at once.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream as bs;
use bazel_remote_apis::google::rpc;
use engine::Digest;
use engine::remote::{RemoteBackend, RemoteError};
use engine::store::ActionResult;
use reapi::{ReapiBackend, ReapiOptions};
use tonic::{Code, Request, Response, Status};

/// What the fake does with its answers.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Lie {
    None,
    /// Blob data of the right length with one byte changed.
    WrongBytes,
    /// One byte more than asked for.
    ExtraBytes,
    /// One byte less.
    ShortBytes,
    /// A batch read answered for another digest.
    OtherDigest,
    /// FindMissingBlobs names a blob nobody asked about.
    UnaskedMissing,
    /// Action results without the entry pointer.
    NoPointer,
    /// ByteStream Write commits one byte less than was sent.
    ShortCommit,
    /// Every call but Capabilities fails with this status.
    Status(Code),
    /// Every call but Capabilities never answers.
    Stall,
    /// ByteStream Read sends empty messages, quickly, for ever.
    EmptyForever,
    /// ByteStream Read sends one byte every 100 ms (each message well within the timeout).
    Trickle,
}

/// What the fake's Execution service does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Exec {
    /// Not offered (`execEnabled: false`).
    Off,
    /// The Execute stream breaks after a first operation; WaitExecution finishes it.
    BreakThenWait,
    /// Neither stream ever says done.
    NeverDone,
    /// Done, with this output path in the result.
    Output(&'static str),
    /// Done, with a response that is not an ExecuteResponse.
    WrongType,
    /// Done, with an operation error.
    OperationError,
}

#[derive(Clone)]
struct Fake {
    lie: Arc<Mutex<Lie>>,
    exec: Arc<Mutex<Exec>>,
    waits: Arc<Mutex<u32>>,
    sha256: bool,
    blobs: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    actions: Arc<Mutex<HashMap<String, re::ActionResult>>>,
    authorization: Arc<Mutex<Vec<String>>>,
}

/// The batch limit the fake announces (the backend keeps 16 KiB of it for overhead): blobs over
/// 64 KiB go through ByteStream.
const FAKE_BATCH: i64 = 80 << 10;

type Boxed<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

impl Fake {
    fn lie(&self) -> Lie {
        *self.lie.lock().unwrap()
    }

    async fn enter<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if let Some(value) = request.metadata().get("authorization") {
            self.authorization
                .lock()
                .unwrap()
                .push(value.to_str().unwrap_or("?").to_string());
        }
        match self.lie() {
            Lie::Status(code) => Err(Status::new(code, "the fake says no")),
            Lie::Stall => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Err(Status::internal("unreachable"))
            }
            _ => Ok(()),
        }
    }

    fn tamper(&self, mut data: Vec<u8>) -> Vec<u8> {
        match self.lie() {
            Lie::WrongBytes => data[0] ^= 1,
            Lie::ExtraBytes => data.push(b'x'),
            Lie::ShortBytes => {
                data.pop();
            }
            _ => {}
        }
        data
    }
}

#[tonic::async_trait]
impl re::capabilities_server::Capabilities for Fake {
    async fn get_capabilities(
        &self,
        request: Request<re::GetCapabilitiesRequest>,
    ) -> Result<Response<re::ServerCapabilities>, Status> {
        if let Some(value) = request.metadata().get("authorization") {
            self.authorization
                .lock()
                .unwrap()
                .push(value.to_str().unwrap_or("?").to_string());
        }
        let function = if self.sha256 {
            re::digest_function::Value::Sha256
        } else {
            re::digest_function::Value::Sha1
        };
        Ok(Response::new(re::ServerCapabilities {
            cache_capabilities: Some(re::CacheCapabilities {
                digest_functions: vec![function as i32],
                max_batch_total_size_bytes: FAKE_BATCH,
                ..Default::default()
            }),
            execution_capabilities: Some(re::ExecutionCapabilities {
                digest_function: function as i32,
                exec_enabled: *self.exec.lock().unwrap() != Exec::Off,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}

#[tonic::async_trait]
impl re::action_cache_server::ActionCache for Fake {
    async fn get_action_result(
        &self,
        request: Request<re::GetActionResultRequest>,
    ) -> Result<Response<re::ActionResult>, Status> {
        self.enter(&request).await?;
        let hash = request.into_inner().action_digest.unwrap_or_default().hash;
        let mut result = self
            .actions
            .lock()
            .unwrap()
            .get(&hash)
            .cloned()
            .ok_or_else(|| Status::not_found("no such action"))?;
        if self.lie() == Lie::NoPointer {
            result.execution_metadata = None;
        }
        Ok(Response::new(result))
    }

    async fn update_action_result(
        &self,
        request: Request<re::UpdateActionResultRequest>,
    ) -> Result<Response<re::ActionResult>, Status> {
        self.enter(&request).await?;
        let request = request.into_inner();
        let result = request.action_result.unwrap_or_default();
        self.actions.lock().unwrap().insert(
            request.action_digest.unwrap_or_default().hash,
            result.clone(),
        );
        Ok(Response::new(result))
    }
}

#[tonic::async_trait]
impl re::content_addressable_storage_server::ContentAddressableStorage for Fake {
    async fn find_missing_blobs(
        &self,
        request: Request<re::FindMissingBlobsRequest>,
    ) -> Result<Response<re::FindMissingBlobsResponse>, Status> {
        self.enter(&request).await?;
        let blobs = self.blobs.lock().unwrap();
        let mut missing: Vec<re::Digest> = request
            .into_inner()
            .blob_digests
            .into_iter()
            .filter(|digest| !blobs.contains_key(&digest.hash))
            .collect();
        if self.lie() == Lie::UnaskedMissing {
            missing.push(re::Digest {
                hash: Digest::of_bytes(b"nobody asked").to_hex(),
                size_bytes: 12,
            });
        }
        Ok(Response::new(re::FindMissingBlobsResponse {
            missing_blob_digests: missing,
        }))
    }

    async fn batch_update_blobs(
        &self,
        request: Request<re::BatchUpdateBlobsRequest>,
    ) -> Result<Response<re::BatchUpdateBlobsResponse>, Status> {
        self.enter(&request).await?;
        let mut responses = Vec::new();
        for blob in request.into_inner().requests {
            let digest = blob.digest.unwrap_or_default();
            self.blobs
                .lock()
                .unwrap()
                .insert(digest.hash.clone(), blob.data);
            responses.push(re::batch_update_blobs_response::Response {
                digest: Some(digest),
                status: Some(rpc::Status::default()),
            });
        }
        Ok(Response::new(re::BatchUpdateBlobsResponse { responses }))
    }

    async fn batch_read_blobs(
        &self,
        request: Request<re::BatchReadBlobsRequest>,
    ) -> Result<Response<re::BatchReadBlobsResponse>, Status> {
        self.enter(&request).await?;
        let mut responses = Vec::new();
        for mut digest in request.into_inner().digests {
            let found = self.blobs.lock().unwrap().get(&digest.hash).cloned();
            let (data, code) = match found {
                Some(data) => (self.tamper(data), Code::Ok),
                None => (Vec::new(), Code::NotFound),
            };
            if self.lie() == Lie::OtherDigest {
                digest.hash = Digest::of_bytes(b"other").to_hex();
            }
            responses.push(re::batch_read_blobs_response::Response {
                digest: Some(digest),
                data,
                compressor: 0,
                status: Some(rpc::Status {
                    code: code as i32,
                    ..Default::default()
                }),
            });
        }
        Ok(Response::new(re::BatchReadBlobsResponse { responses }))
    }

    type GetTreeStream = Boxed<re::GetTreeResponse>;
    async fn get_tree(
        &self,
        _request: Request<re::GetTreeRequest>,
    ) -> Result<Response<Self::GetTreeStream>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn split_blob(
        &self,
        _request: Request<re::SplitBlobRequest>,
    ) -> Result<Response<re::SplitBlobResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    type GetChunkMappingStream = Boxed<re::GetChunkMappingResponse>;
    async fn get_chunk_mapping(
        &self,
        _request: Request<re::GetChunkMappingRequest>,
    ) -> Result<Response<Self::GetChunkMappingStream>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn splice_blob(
        &self,
        _request: Request<re::SpliceBlobRequest>,
    ) -> Result<Response<re::SpliceBlobResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn register_chunk_mapping(
        &self,
        _request: Request<tonic::Streaming<re::RegisterChunkMappingRequest>>,
    ) -> Result<Response<re::RegisterChunkMappingResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

#[tonic::async_trait]
impl bs::byte_stream_server::ByteStream for Fake {
    type ReadStream = Boxed<bs::ReadResponse>;

    async fn read(
        &self,
        request: Request<bs::ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        self.enter(&request).await?;
        let name = request.into_inner().resource_name;
        let hash = name.split('/').rev().nth(1).unwrap_or_default().to_string();
        let data = self
            .blobs
            .lock()
            .unwrap()
            .get(&hash)
            .cloned()
            .ok_or_else(|| Status::not_found("no such blob"))?;
        if self.lie() == Lie::Trickle {
            let (send, receive) = tokio::sync::mpsc::channel(1);
            tokio::spawn(async move {
                for byte in data {
                    let message = Ok(bs::ReadResponse { data: vec![byte] });
                    if send.send(message).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
            let trickle = tokio_stream::wrappers::ReceiverStream::new(receive);
            return Ok(Response::new(Box::pin(trickle)));
        }
        if self.lie() == Lie::EmptyForever {
            let forever = tokio_stream::iter(std::iter::repeat_with(|| {
                Ok(bs::ReadResponse { data: Vec::new() })
            }));
            return Ok(Response::new(Box::pin(forever)));
        }
        let chunks: Vec<Result<bs::ReadResponse, Status>> = self
            .tamper(data)
            .chunks(16 << 10)
            .map(|chunk| {
                Ok(bs::ReadResponse {
                    data: chunk.to_vec(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn write(
        &self,
        request: Request<tonic::Streaming<bs::WriteRequest>>,
    ) -> Result<Response<bs::WriteResponse>, Status> {
        self.enter(&request).await?;
        let mut stream = request.into_inner();
        let mut name = String::new();
        let mut data = Vec::new();
        while let Some(message) = stream.message().await? {
            if name.is_empty() {
                name = message.resource_name;
            }
            data.extend_from_slice(&message.data);
            if message.finish_write {
                break;
            }
        }
        let hash = name.split('/').rev().nth(1).unwrap_or_default().to_string();
        let mut committed = data.len() as i64;
        if self.lie() == Lie::ShortCommit {
            committed -= 1;
        }
        self.blobs.lock().unwrap().insert(hash, data);
        Ok(Response::new(bs::WriteResponse {
            committed_size: committed,
        }))
    }

    async fn query_write_status(
        &self,
        _request: Request<bs::QueryWriteStatusRequest>,
    ) -> Result<Response<bs::QueryWriteStatusResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

/// A running fake server (its own runtime; stops when dropped).
use bazel_remote_apis::google::longrunning::{Operation, operation};
use bazel_remote_apis::google::protobuf::Any;
use prost::Message as _;

/// The blob every fake execution names as its output.
const OUTPUT: &[u8] = b"made remotely\n";

impl Fake {
    fn operation(&self, done: bool) -> Operation {
        let exec = *self.exec.lock().unwrap();
        let path = match exec {
            Exec::Output(path) => path,
            _ => "out/x.txt",
        };
        let response = re::ExecuteResponse {
            result: Some(re::ActionResult {
                output_files: vec![re::OutputFile {
                    path: path.to_string(),
                    digest: Some(reapi::action::digest_of(OUTPUT)),
                    ..Default::default()
                }],
                exit_code: 0,
                ..Default::default()
            }),
            ..Default::default()
        };
        let result = match exec {
            _ if !done => None,
            Exec::WrongType => Some(operation::Result::Response(Any {
                type_url: "type.googleapis.com/google.protobuf.Empty".into(),
                value: Vec::new(),
            })),
            Exec::OperationError => Some(operation::Result::Error(rpc::Status {
                code: Code::ResourceExhausted as i32,
                message: "no workers".into(),
                details: Vec::new(),
            })),
            _ => Some(operation::Result::Response(Any {
                type_url: "type.googleapis.com/build.bazel.remote.execution.v2.ExecuteResponse"
                    .into(),
                value: response.encode_to_vec(),
            })),
        };
        Operation {
            name: "operations/fake-1".into(),
            metadata: None,
            done,
            result,
        }
    }
}

#[tonic::async_trait]
impl re::execution_server::Execution for Fake {
    type ExecuteStream = Boxed<Operation>;
    type WaitExecutionStream = Boxed<Operation>;

    async fn execute(
        &self,
        request: Request<re::ExecuteRequest>,
    ) -> Result<Response<Self::ExecuteStream>, Status> {
        self.enter(&request).await?;
        self.blobs
            .lock()
            .unwrap()
            .insert(Digest::of_bytes(OUTPUT).to_hex(), OUTPUT.to_vec());
        let exec = *self.exec.lock().unwrap();
        let messages: Vec<Result<Operation, Status>> = match exec {
            Exec::BreakThenWait => vec![
                Ok(self.operation(false)),
                Err(Status::unavailable("connection reset")),
            ],
            Exec::NeverDone => vec![Ok(self.operation(false))],
            _ => vec![Ok(self.operation(false)), Ok(self.operation(true))],
        };
        Ok(Response::new(Box::pin(tokio_stream::iter(messages))))
    }

    async fn wait_execution(
        &self,
        request: Request<re::WaitExecutionRequest>,
    ) -> Result<Response<Self::WaitExecutionStream>, Status> {
        *self.waits.lock().unwrap() += 1;
        if request.get_ref().name != "operations/fake-1" {
            return Err(Status::not_found("no such operation"));
        }
        let exec = *self.exec.lock().unwrap();
        let messages = match exec {
            Exec::NeverDone => vec![Ok(self.operation(false))],
            _ => vec![Ok(self.operation(true))],
        };
        Ok(Response::new(Box::pin(tokio_stream::iter(messages))))
    }
}

struct Server {
    fake: Fake,
    url: String,
    _runtime: tokio::runtime::Runtime,
}

impl Server {
    fn start(sha256: bool) -> Server {
        Server::start_with(sha256, None)
    }

    /// With `tls`, serves grpcs:// with that identity, under the name `localhost`.
    fn start_with(sha256: bool, tls: Option<tonic::transport::Identity>) -> Server {
        let fake = Fake {
            lie: Arc::new(Mutex::new(Lie::None)),
            exec: Arc::new(Mutex::new(Exec::Off)),
            waits: Default::default(),
            sha256,
            blobs: Default::default(),
            actions: Default::default(),
            authorization: Default::default(),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = match tls {
            Some(_) => format!("grpcs://localhost:{port}"),
            None => format!("grpc://127.0.0.1:{port}"),
        };
        let mut builder = tonic::transport::Server::builder();
        if let Some(identity) = tls {
            builder = builder
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .unwrap();
        }
        let router = builder
            .add_service(re::capabilities_server::CapabilitiesServer::new(
                fake.clone(),
            ))
            .add_service(re::action_cache_server::ActionCacheServer::new(
                fake.clone(),
            ))
            .add_service(
                re::content_addressable_storage_server::ContentAddressableStorageServer::new(
                    fake.clone(),
                ),
            )
            .add_service(bs::byte_stream_server::ByteStreamServer::new(fake.clone()))
            .add_service(re::execution_server::ExecutionServer::new(fake.clone()));
        runtime.spawn(
            router.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        Server {
            fake,
            url,
            _runtime: runtime,
        }
    }

    fn lie(&self, lie: Lie) {
        *self.fake.lie.lock().unwrap() = lie;
    }

    fn connect(&self, options: ReapiOptions) -> Result<ReapiBackend, RemoteError> {
        ReapiBackend::connect(&self.url, options)
    }

    fn backend(&self) -> ReapiBackend {
        self.connect(ReapiOptions {
            call_timeout: Duration::from_millis(800),
            ..ReapiOptions::default()
        })
        .unwrap()
    }

    /// A backend whose calls may take long: for tests of sharing, not of timeouts (on a loaded
    /// machine 800 ms is not enough for eight threads' calls).
    fn patient_backend(&self) -> ReapiBackend {
        self.connect(ReapiOptions {
            call_timeout: Duration::from_secs(60),
            ..ReapiOptions::default()
        })
        .unwrap()
    }
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn put(backend: &ReapiBackend, data: &[u8]) -> Digest {
    let digest = Digest::of_bytes(data);
    backend
        .put_blob(&digest, data.len() as u64, &mut &data[..])
        .unwrap();
    digest
}

fn entry_result() -> ActionResult {
    ActionResult {
        task: "t".into(),
        outputs: Vec::new(),
        stdout: None,
        stderr: None,
        duration_ms: 1,
        tools: Default::default(),
        discovered: None,
    }
}

fn is_garbage<T>(result: &Result<T, RemoteError>) -> bool {
    matches!(result, Err(RemoteError::Garbage(_)))
}

fn is_unavailable<T>(result: &Result<T, RemoteError>) -> bool {
    matches!(result, Err(RemoteError::Unavailable(_)))
}

#[test]
fn blobs_with_wrong_extra_or_missing_bytes_are_garbage() {
    let server = Server::start(true);
    let backend = server.backend();
    assert_eq!(backend.batch_limit(), 64 << 10);
    // One through BatchReadBlobs, one through ByteStream.
    for len in [1000usize, 200 << 10] {
        let data = bytes(len, 7);
        let digest = put(&backend, &data);
        let mut honest = Vec::new();
        assert!(backend.get_blob(&digest, len as u64, &mut honest).unwrap());
        assert_eq!(honest, data);
        for lie in [Lie::WrongBytes, Lie::ExtraBytes, Lie::ShortBytes] {
            server.lie(lie);
            let mut out = Vec::new();
            let result = backend.get_blob(&digest, len as u64, &mut out);
            assert!(is_garbage(&result), "{len} bytes, {lie:?}: {result:?}");
            assert!(
                out.len() <= len,
                "{lie:?}: kept {} bytes of {len}",
                out.len()
            );
            server.lie(Lie::None);
        }
    }
}

#[test]
fn an_action_entry_with_tampered_bytes_or_no_pointer_is_garbage() {
    let server = Server::start(true);
    let backend = server.backend();
    let key = Digest::of_bytes(b"key");
    // One entry small enough for a batch, one read through ByteStream.
    for entry in [bytes(500, 1), bytes(100 << 10, 2)] {
        backend.put_action(&key, &entry, &entry_result()).unwrap();
        assert_eq!(
            backend.get_action(&key, 1 << 20).unwrap(),
            Some(entry.clone())
        );
        for lie in [
            Lie::WrongBytes,
            Lie::ExtraBytes,
            Lie::ShortBytes,
            Lie::NoPointer,
        ] {
            server.lie(lie);
            let result = backend.get_action(&key, 1 << 20);
            let shown = result.as_ref().map(|entry| entry.as_ref().map(Vec::len));
            assert!(is_garbage(&result), "{lie:?}: {shown:?}");
            server.lie(Lie::None);
        }
    }
}

#[test]
fn answers_about_what_was_not_asked_are_garbage() {
    let server = Server::start(true);
    let backend = server.backend();
    let data = bytes(100, 3);
    let digest = put(&backend, &data);
    server.lie(Lie::OtherDigest);
    assert!(is_garbage(&backend.get_blob(&digest, 100, &mut Vec::new())));
    // A stream of empty messages, each in time, never ends the read: refused.
    let large = bytes(100 << 10, 5);
    let large_digest = put(&backend, &large);
    server.lie(Lie::EmptyForever);
    let result = backend.get_blob(&large_digest, large.len() as u64, &mut Vec::new());
    assert!(is_garbage(&result), "{result:?}");
    // A size no blob can have (an untrusted entry's) is refused before anything is sent.
    server.lie(Lie::Status(Code::Internal));
    assert!(is_garbage(&backend.get_blob(
        &digest,
        u64::MAX,
        &mut Vec::new()
    )));
    server.lie(Lie::UnaskedMissing);
    assert!(is_garbage(&backend.find_missing(&[(digest, 100)])));
    server.lie(Lie::ShortCommit);
    let large = bytes(100 << 10, 4);
    let result = backend.put_blob(
        &Digest::of_bytes(&large),
        large.len() as u64,
        &mut &large[..],
    );
    assert!(is_garbage(&result), "{result:?}");
}

#[test]
fn error_statuses_and_silence_are_unavailable_and_not_found_is_absent() {
    let server = Server::start(true);
    let backend = server.backend();
    let key = Digest::of_bytes(b"absent");
    assert_eq!(backend.get_action(&key, 1 << 20).unwrap(), None);
    assert!(!backend.get_blob(&key, 10, &mut Vec::new()).unwrap());
    assert!(!backend.get_blob(&key, 100 << 10, &mut Vec::new()).unwrap());
    let small = bytes(10, 5);
    let large = bytes(100 << 10, 6);
    for lie in [
        Lie::Status(Code::Unavailable),
        Lie::Status(Code::Unauthenticated),
        Lie::Status(Code::PermissionDenied),
        Lie::Status(Code::Internal),
        Lie::Status(Code::DeadlineExceeded),
        Lie::Status(Code::ResourceExhausted),
        Lie::Stall,
    ] {
        server.lie(lie);
        let results = [
            backend.get_action(&key, 1 << 20).map(|_| ()),
            backend.put_action(&key, &small, &entry_result()),
            backend.find_missing(&[(key, 1)]).map(|_| ()),
            backend.get_blob(&key, 10, &mut Vec::new()).map(|_| ()),
            backend
                .get_blob(&key, 100 << 10, &mut Vec::new())
                .map(|_| ()),
            backend.put_blob(&Digest::of_bytes(&small), 10, &mut &small[..]),
            backend.put_blob(
                &Digest::of_bytes(&large),
                large.len() as u64,
                &mut &large[..],
            ),
        ];
        for (index, result) in results.iter().enumerate() {
            assert!(is_unavailable(result), "{lie:?}, call {index}: {result:?}");
        }
    }
}

#[test]
fn a_server_without_sha256_is_refused_with_a_clear_error() {
    let server = Server::start(false);
    let result = server.connect(ReapiOptions::default());
    match result {
        Err(RemoteError::Unavailable(message)) => {
            assert!(message.contains("SHA-256"), "{message}");
            assert!(message.contains("SHA1"), "{message}");
        }
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn the_bearer_token_goes_with_every_call_and_is_never_shown() {
    let server = Server::start(true);
    let backend = server
        .connect(ReapiOptions {
            token: Some("s3cret-token".into()),
            ..ReapiOptions::default()
        })
        .unwrap();
    let key = Digest::of_bytes(b"k");
    backend.put_action(&key, b"entry", &entry_result()).unwrap();
    backend.get_action(&key, 100).unwrap();
    backend.find_missing(&[(key, 1)]).unwrap();
    let large = bytes(100 << 10, 8);
    let digest = put(&backend, &large);
    assert!(
        backend
            .get_blob(&digest, large.len() as u64, &mut Vec::new())
            .unwrap()
    );
    let seen = server.fake.authorization.lock().unwrap().clone();
    // Capabilities, BatchUpdate, UpdateActionResult, GetActionResult, BatchRead,
    // FindMissing, ByteStream Write and Read.
    assert!(seen.len() >= 8, "{seen:?}");
    assert!(
        seen.iter().all(|value| value == "Bearer s3cret-token"),
        "{seen:?}"
    );
    assert!(!backend.describe().contains("s3cret"));
    server.lie(Lie::Status(Code::Unauthenticated));
    let error = backend.get_action(&key, 100).unwrap_err().to_string();
    assert!(!error.contains("s3cret"), "{error}");
}

/// A CA made by the test, and an identity for `localhost` it signs; the CA's PEM.
fn authority() -> (tonic::transport::Identity, Vec<u8>) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "xbundle test CA");
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(params, ca_key);
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .extended_key_usages
        .push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    params.use_authority_key_identifier_extension = true;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let identity = tonic::transport::Identity::from_pem(cert.pem(), key.serialize_pem());
    (identity, ca.pem().into_bytes())
}

#[test]
fn grpcs_works_with_a_trusted_ca_and_refuses_an_unknown_one() {
    let (identity, ca) = authority();
    let server = Server::start_with(true, Some(identity));
    let backend = server
        .connect(ReapiOptions {
            ca_certificate: Some(ca),
            ..ReapiOptions::default()
        })
        .unwrap();
    assert!(backend.describe().starts_with("grpcs://localhost:"));
    let data = bytes(100 << 10, 9);
    let digest = put(&backend, &data);
    let mut out = Vec::new();
    assert!(
        backend
            .get_blob(&digest, data.len() as u64, &mut out)
            .unwrap()
    );
    assert_eq!(out, data);
    // The platform's roots do not include the test's CA: refused, never sent in clear.
    let result = server.connect(ReapiOptions {
        connect_timeout: Duration::from_secs(5),
        ..ReapiOptions::default()
    });
    assert!(is_unavailable(&result), "{:?}", result.err());
    // A grpc:// client on a TLS port gets no answer it accepts.
    let plain = server
        .url
        .replacen("grpcs://localhost", "grpc://127.0.0.1", 1);
    let result = ReapiBackend::connect(
        &plain,
        ReapiOptions {
            connect_timeout: Duration::from_secs(2),
            call_timeout: Duration::from_secs(2),
            ..ReapiOptions::default()
        },
    );
    assert!(is_unavailable(&result), "{:?}", result.err());
}

#[test]
fn many_threads_share_one_backend() {
    let server = Server::start(true);
    let backend = Arc::new(server.patient_backend());
    let threads: Vec<_> = (0..8u8)
        .map(|thread| {
            let backend = Arc::clone(&backend);
            std::thread::spawn(move || {
                for round in 0..10u8 {
                    // Every fourth blob through ByteStream.
                    let len = if round % 4 == 0 { 70 << 10 } else { 500 };
                    let data = bytes(len, thread.wrapping_mul(16) ^ round);
                    let digest = put(&backend, &data);
                    let mut out = Vec::new();
                    assert!(backend.get_blob(&digest, len as u64, &mut out).unwrap());
                    assert_eq!(out, data);
                    let key = Digest::of_bytes(&[thread, round]);
                    backend
                        .put_action(&key, &data[..100], &entry_result())
                        .unwrap();
                    assert_eq!(
                        backend.get_action(&key, 1 << 20).unwrap().as_deref(),
                        Some(&data[..100])
                    );
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn a_byte_stream_that_trickles_is_bounded() {
    let server = Server::start(true);
    let backend = server.backend();
    let large = bytes(100 << 10, 7);
    let digest = put(&backend, &large);
    server.lie(Lie::Trickle);
    // A byte every 100 ms, the call timeout 800 ms: without a bound on the whole, 10 000 s.
    let result = backend.get_blob(&digest, large.len() as u64, &mut Vec::new());
    assert!(is_unavailable(&result), "{result:?}");
    assert!(format!("{result:?}").contains("too slow"), "{result:?}");
}

/// The fake as an executor, its Execution service doing `exec`.
fn executor(exec: Exec) -> (Server, Result<reapi::execute::ReapiExecutor, RemoteError>) {
    let server = Server::start(true);
    *server.fake.exec.lock().unwrap() = exec;
    let backend = server.backend();
    let executor = reapi::execute::ReapiExecutor::new(Arc::new(backend))
        .map(|executor| executor.with_default_timeout(Duration::from_secs(10)));
    (server, executor)
}

fn run_fake(
    executor: &reapi::execute::ReapiExecutor,
) -> Result<engine::remote_exec::ExecuteResponse, RemoteError> {
    use engine::remote_exec::{BlobSource, ExecuteRequest, RemoteExecutor};
    struct Nothing;
    impl BlobSource for Nothing {
        fn open(&self, _: &Digest, _: u64) -> std::io::Result<Box<dyn std::io::Read + '_>> {
            Err(std::io::ErrorKind::NotFound.into())
        }
    }
    let argv = vec!["make".to_string()];
    let env = std::collections::BTreeMap::new();
    let outputs = vec!["out".to_string()];
    executor.execute(
        &ExecuteRequest {
            task: "fake",
            argv: &argv,
            env: &env,
            working_directory: "",
            inputs: &[],
            output_paths: &outputs,
            platform: &env,
            timeout: None,
        },
        &Nothing,
    )
}

#[test]
fn a_server_that_does_not_execute_is_refused() {
    let (_server, executor) = executor(Exec::Off);
    assert!(matches!(executor, Err(RemoteError::Unavailable(m)) if m.contains("execEnabled")));
}

#[test]
fn a_broken_operation_stream_is_resumed_with_wait_execution() {
    let (server, executor) = executor(Exec::BreakThenWait);
    let response = run_fake(&executor.unwrap()).unwrap();
    assert_eq!(response.outputs.len(), 1);
    assert_eq!(response.outputs[0].path, "out/x.txt");
    assert_eq!(response.outputs[0].digest, Digest::of_bytes(OUTPUT));
    assert_eq!(*server.fake.waits.lock().unwrap(), 1);
}

#[test]
fn an_operation_never_done_gives_up_after_bounded_waits() {
    let (server, executor) = executor(Exec::NeverDone);
    let result = run_fake(&executor.unwrap());
    assert!(is_unavailable(&result), "{result:?}");
    assert!(*server.fake.waits.lock().unwrap() <= 6);
}

#[test]
fn hostile_or_malformed_execute_answers_are_refused() {
    for (exec, garbage) in [
        (Exec::Output("../escape.txt"), true),
        (Exec::Output("/etc/passwd"), true),
        (Exec::Output(".git/config"), true),
        (Exec::Output("out//x"), true),
        (Exec::WrongType, true),
        (Exec::OperationError, false),
    ] {
        let (_server, executor) = executor(exec);
        let result = run_fake(&executor.unwrap());
        if garbage {
            assert!(is_garbage(&result), "{exec:?}: {result:?}");
        } else {
            assert!(is_unavailable(&result), "{exec:?}: {result:?}");
        }
    }
}
