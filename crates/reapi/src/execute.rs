//! Remote execution over REAPI's `Execution` service: [`ReapiExecutor`] implements the
//! engine's [`RemoteExecutor`] on the connection (channel, runtime, credentials, CAS calls) of a
//! [`ReapiBackend`].
//!
//! Invariants:
//! - The input root is a Merkle tree of `Directory` messages built from the request's input
//!   files: names sorted, one node per name, executable bits kept, the working directory present
//!   (as an empty directory when no input lies in it). An input path that is empty, absolute,
//!   or has an empty, `.` or `..` component, or a path that is both a file and a directory, is
//!   refused before anything is sent.
//! - The `Command` is deterministic: arguments as given, environment variables sorted by name,
//!   output paths relative to the working directory, sorted and unique, platform properties
//!   sorted by name. So the same request gives the same action digest on every machine (the
//!   server's own action cache can answer it).
//! - Only blobs the server says it lacks (FindMissingBlobs) are uploaded; input files are read
//!   through the engine's [`BlobSource`], never from the work tree directly.
//! - `Execute` is followed to `done`, with `WaitExecution` when the stream breaks (a bounded
//!   number of times), the whole bounded by the action's timeout plus a grace period, or the
//!   executor's own bound when the request has none.
//! - Everything the server answers is untrusted: every output path (relative to the working
//!   directory, made root-relative here) is checked like an input path; output directories'
//!   `Tree`s are fetched verified, size-bounded, and flattened with each name a single plain
//!   component; a digest that is not SHA-256, a duplicate output, a symbolic link or a `Tree`
//!   naming a directory it does not hold is [`RemoteError::Garbage`]. The blobs themselves are
//!   fetched and verified by the engine.
//! - A server status that is not OK (including a deadline exceeded) is
//!   [`RemoteError::Unavailable`]; a command that ran and exited non-zero is `Ok` with its exit
//!   code.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::longrunning::{Operation, operation};
use engine::Digest;
use engine::remote::{RemoteBackend, RemoteError};
use engine::remote_exec::{BlobSource, ExecuteRequest, ExecuteResponse, InputFile, RemoteExecutor};
use engine::store::{OutputFile, StoredStream};
use prost::Message;
use re::execution_client::ExecutionClient;
use tonic::Code;

use crate::ReapiBackend;
use crate::action::{from_re, to_re};

/// The type URL of the `ExecuteResponse` packed in a finished operation.
const EXECUTE_RESPONSE: &str = "build.bazel.remote.execution.v2.ExecuteResponse";
/// Added to the action's own timeout for queueing, uploads of results and the answer.
const GRACE: Duration = Duration::from_secs(120);
/// How often a broken operation stream is resumed with `WaitExecution`.
const MAX_RESUMES: u32 = 5;
/// The largest `Tree` of an output directory read into memory.
const MAX_TREE: u64 = 64 << 20;
/// The deepest output directory followed.
const MAX_DEPTH: usize = 256;

/// Executes actions on a REAPI server, through the connection of a [`ReapiBackend`].
pub struct ReapiExecutor {
    backend: Arc<ReapiBackend>,
    /// The bound of one execution when the request has no timeout.
    default_timeout: Duration,
}

impl std::fmt::Debug for ReapiExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReapiExecutor({})", self.describe())
    }
}

impl ReapiExecutor {
    /// An executor on `backend`'s connection; fails when the server said it does not execute
    /// (`execEnabled` false in its capabilities).
    pub fn new(backend: Arc<ReapiBackend>) -> Result<ReapiExecutor, RemoteError> {
        if !backend.exec_enabled {
            return Err(RemoteError::Unavailable(format!(
                "{}: the server does not execute actions (its capabilities say execEnabled: false)",
                RemoteBackend::describe(&*backend)
            )));
        }
        Ok(ReapiExecutor {
            backend,
            default_timeout: Duration::from_secs(3600),
        })
    }

    /// Sets the bound of one execution when the request has none (an hour by default).
    pub fn with_default_timeout(mut self, timeout: Duration) -> ReapiExecutor {
        self.default_timeout = timeout;
        self
    }

    /// The backend whose connection this executor uses (to fetch its outputs).
    pub fn backend(&self) -> &Arc<ReapiBackend> {
        &self.backend
    }
}

/// A `Directory` message, encoded, and its digest.
pub type EncodedDirectory = (Digest, Vec<u8>);

/// The messages of one action, encoded.
pub struct PreparedAction {
    pub command: Vec<u8>,
    pub action: Vec<u8>,
    /// Every `Directory` of the input root (the root first), encoded, with their digests.
    pub directories: Vec<EncodedDirectory>,
    pub input_root: Digest,
    pub action_digest: re::Digest,
    /// The output paths as sent: relative to the working directory.
    pub output_paths: Vec<String>,
}

/// Checks a root-relative path: not empty, not absolute, no empty, `.` or `..` component.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("an empty path".to_string());
    }
    if path.starts_with('/') {
        return Err(format!("{path:?} is absolute"));
    }
    if path.contains('\0') {
        return Err(format!("{path:?} holds a NUL byte"));
    }
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!("{path:?} has a {part:?} component"));
        }
    }
    Ok(())
}

/// One level of the input tree being built.
#[derive(Default)]
struct Dir {
    files: BTreeMap<String, re::FileNode>,
    dirs: BTreeMap<String, Dir>,
}

impl Dir {
    fn child(&mut self, name: &str, whole: &str) -> Result<&mut Dir, String> {
        if self.files.contains_key(name) {
            return Err(format!(
                "{whole:?}: {name:?} is both a file and a directory"
            ));
        }
        Ok(self.dirs.entry(name.to_string()).or_default())
    }

    /// Encodes this directory and its children (children first into `out`); returns its digest.
    fn encode(&self, out: &mut Vec<EncodedDirectory>) -> re::Digest {
        let directories = self
            .dirs
            .iter()
            .map(|(name, dir)| re::DirectoryNode {
                name: name.clone(),
                digest: Some(dir.encode(out)),
            })
            .collect();
        let message = re::Directory {
            files: self.files.values().cloned().collect(),
            directories,
            ..Default::default()
        }
        .encode_to_vec();
        let digest = Digest::of_bytes(&message);
        let re_digest = to_re(&digest, message.len() as u64);
        out.push((digest, message));
        re_digest
    }
}

/// The Merkle tree of `inputs`, with `working_directory` present; the root's digest and every
/// directory (the root last). Refuses bad paths.
fn input_tree(
    inputs: &[InputFile],
    working_directory: &str,
) -> Result<(Digest, Vec<EncodedDirectory>), String> {
    let mut root = Dir::default();
    for input in inputs {
        check_path(&input.path).map_err(|problem| format!("input {problem}"))?;
        let mut parts: Vec<&str> = input.path.split('/').collect();
        let name = parts.pop().unwrap_or_default();
        let mut dir = &mut root;
        for part in parts {
            dir = dir.child(part, &input.path)?;
        }
        if dir.dirs.contains_key(name) {
            return Err(format!(
                "input {:?} is both a file and a directory",
                input.path
            ));
        }
        let node = re::FileNode {
            name: name.to_string(),
            digest: Some(to_re(&input.digest, input.size)),
            is_executable: input.executable,
            node_properties: None,
        };
        if let Some(previous) = dir.files.insert(name.to_string(), node.clone())
            && previous != node
        {
            return Err(format!("input {:?} is given twice", input.path));
        }
    }
    if !working_directory.is_empty() {
        check_path(working_directory).map_err(|problem| format!("working directory {problem}"))?;
        let mut dir = &mut root;
        for part in working_directory.split('/') {
            dir = dir.child(part, working_directory)?;
        }
    }
    let mut directories = Vec::new();
    let digest = root.encode(&mut directories);
    let (root_digest, _) = from_re(&digest).expect("a digest this crate computed");
    Ok((root_digest, directories))
}

/// `path` (root-relative) relative to `working_directory`; `None` when it is not below it.
fn below<'a>(path: &'a str, working_directory: &str) -> Option<&'a str> {
    if working_directory.is_empty() {
        return Some(path);
    }
    path.strip_prefix(working_directory)?
        .strip_prefix('/')
        .filter(|rest| !rest.is_empty())
}

/// Builds the `Command`, the input root and the `Action` of a request (nothing is sent).
pub fn prepare(request: &ExecuteRequest<'_>) -> Result<PreparedAction, String> {
    let working_directory = request.working_directory.trim_end_matches('/');
    let mut output_paths = Vec::with_capacity(request.output_paths.len());
    for path in request.output_paths {
        check_path(path).map_err(|problem| format!("output {problem}"))?;
        let relative = below(path, working_directory).ok_or_else(|| {
            format!(
                "output {path:?} is not below the working directory {working_directory:?} \
                 (REAPI outputs are relative to it)"
            )
        })?;
        output_paths.push(relative.to_string());
    }
    output_paths.sort();
    output_paths.dedup();
    let mut properties: Vec<re::platform::Property> = request
        .platform
        .iter()
        .map(|(name, value)| re::platform::Property {
            name: name.clone(),
            value: value.clone(),
        })
        .collect();
    properties.sort_by(|a, b| (&a.name, &a.value).cmp(&(&b.name, &b.value)));
    let platform = re::Platform { properties };
    // REAPI 2.2 moved the platform to the Action; servers of older versions read it from the
    // Command, so it goes in both (the same properties, so the digest stays a function of them).
    #[allow(deprecated)]
    let command = re::Command {
        arguments: request.argv.to_vec(),
        environment_variables: request
            .env
            .iter()
            .map(|(name, value)| re::command::EnvironmentVariable {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        output_paths: output_paths.clone(),
        platform: Some(platform.clone()),
        working_directory: working_directory.to_string(),
        ..Default::default()
    }
    .encode_to_vec();
    let (input_root, directories) = input_tree(request.inputs, working_directory)?;
    let root_size = directories
        .last()
        .map_or(0, |(_, bytes)| bytes.len() as u64);
    let timeout = request
        .timeout
        .map(|timeout| bazel_remote_apis::google::protobuf::Duration {
            seconds: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            nanos: timeout.subsec_nanos() as i32,
        });
    let action = re::Action {
        command_digest: Some(crate::action::digest_of(&command)),
        input_root_digest: Some(to_re(&input_root, root_size)),
        timeout,
        platform: Some(platform),
        ..Default::default()
    }
    .encode_to_vec();
    let action_digest = crate::action::digest_of(&action);
    Ok(PreparedAction {
        command,
        action,
        directories,
        input_root,
        action_digest,
        output_paths,
    })
}

impl ReapiExecutor {
    fn garbage(&self, problem: impl std::fmt::Display) -> RemoteError {
        RemoteError::Garbage(format!("{}: Execute: {problem}", self.describe()))
    }

    /// Uploads what the server lacks of the action's messages and input files.
    fn upload(
        &self,
        prepared: &PreparedAction,
        inputs: &[InputFile],
        blobs: &dyn BlobSource,
    ) -> Result<(), RemoteError> {
        let backend = &*self.backend;
        let mut messages: Vec<(Digest, &[u8])> = prepared
            .directories
            .iter()
            .map(|(digest, bytes)| (*digest, bytes.as_slice()))
            .collect();
        messages.push((Digest::of_bytes(&prepared.command), &prepared.command));
        messages.push((Digest::of_bytes(&prepared.action), &prepared.action));
        let mut sizes: HashMap<Digest, u64> = HashMap::new();
        for (digest, bytes) in &messages {
            sizes.insert(*digest, bytes.len() as u64);
        }
        for input in inputs {
            sizes.insert(input.digest, input.size);
        }
        let wanted: Vec<(Digest, u64)> = sizes.iter().map(|(d, s)| (*d, *s)).collect();
        let missing: std::collections::HashSet<Digest> =
            backend.find_missing(&wanted)?.into_iter().collect();
        let send: Vec<(Digest, &[u8])> = messages
            .into_iter()
            .filter(|(digest, _)| missing.contains(digest))
            .collect();
        backend.upload_all(&send)?;
        let mut sent = std::collections::HashSet::new();
        for input in inputs {
            if !missing.contains(&input.digest) || !sent.insert(input.digest) {
                continue;
            }
            let mut reader = blobs.open(&input.digest, input.size).map_err(|error| {
                RemoteError::Unavailable(format!(
                    "reading input {} to upload it: {error}",
                    input.path
                ))
            })?;
            backend.put_blob(&input.digest, input.size, &mut reader)?;
        }
        Ok(())
    }

    /// Sends `Execute` and follows the operation to `done` (resuming with `WaitExecution`).
    fn run(&self, action_digest: re::Digest, bound: Duration) -> Result<Operation, RemoteError> {
        let backend = &*self.backend;
        let describe = self.describe();
        let execute = re::ExecuteRequest {
            instance_name: backend.instance.clone(),
            skip_cache_lookup: false,
            action_digest: Some(action_digest),
            execution_policy: None,
            results_cache_policy: None,
            digest_function: crate::SHA256,
            inline_stdout: false,
            inline_stderr: false,
            inline_output_files: Vec::new(),
        };
        let follow = async {
            let mut client = ExecutionClient::new(backend.channel.clone());
            let mut name = String::new();
            let mut resumes = 0;
            let mut last_error: String;
            loop {
                let stream = if name.is_empty() {
                    client.execute(backend.request(execute.clone())).await
                } else {
                    let wait = re::WaitExecutionRequest { name: name.clone() };
                    client.wait_execution(backend.request(wait)).await
                };
                let mut stream = match stream {
                    Ok(stream) => stream.into_inner(),
                    Err(status) if resumes > 0 && transient(&status) => {
                        last_error = status_text(&status);
                        resumes += 1;
                        if resumes > MAX_RESUMES {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(resumes))).await;
                        continue;
                    }
                    Err(status) => return Err(backend.status_error("Execute", &status)),
                };
                loop {
                    match stream.message().await {
                        Ok(Some(operation)) => {
                            if name.is_empty() {
                                name = operation.name.clone();
                            }
                            if operation.done {
                                return Ok(operation);
                            }
                        }
                        Ok(None) => {
                            last_error = "the operation stream ended before it was done".into();
                            break;
                        }
                        Err(status) => {
                            last_error = status_text(&status);
                            if !transient(&status) {
                                return Err(backend.status_error("Execute", &status));
                            }
                            break;
                        }
                    }
                }
                if name.is_empty() {
                    return Err(RemoteError::Unavailable(format!(
                        "{describe}: Execute: {last_error} (no operation name to wait for)"
                    )));
                }
                resumes += 1;
                if resumes > MAX_RESUMES {
                    break;
                }
            }
            Err(RemoteError::Unavailable(format!(
                "{describe}: Execute: gave up after {MAX_RESUMES} resumed waits: {last_error}"
            )))
        };
        backend
            .runtime
            .block_on(async { tokio::time::timeout(bound, follow).await })
            .map_err(|_| {
                RemoteError::Unavailable(format!(
                    "{describe}: Execute: not done within {} s",
                    bound.as_secs()
                ))
            })?
    }

    /// The finished operation's `ExecuteResponse`, its status checked.
    fn response(&self, operation: Operation) -> Result<re::ExecuteResponse, RemoteError> {
        let any = match operation.result {
            Some(operation::Result::Response(any)) => any,
            Some(operation::Result::Error(status)) => {
                return Err(RemoteError::Unavailable(format!(
                    "{}: Execute: {:?}: {}",
                    self.describe(),
                    Code::from_i32(status.code),
                    status.message
                )));
            }
            None => return Err(self.garbage("a finished operation with no result")),
        };
        if any.type_url.rsplit('/').next() != Some(EXECUTE_RESPONSE) {
            return Err(self.garbage(format!(
                "the operation answers a {:?}, not an ExecuteResponse",
                any.type_url
            )));
        }
        let response = re::ExecuteResponse::decode(any.value.as_slice()).map_err(|error| {
            self.garbage(format!("the ExecuteResponse does not decode: {error}"))
        })?;
        if let Some(status) = &response.status
            && status.code != Code::Ok as i32
        {
            let mut message = format!(
                "{}: the action did not run: {:?}",
                self.describe(),
                Code::from_i32(status.code)
            );
            if !status.message.is_empty() {
                message.push_str(": ");
                message.push_str(&status.message);
            }
            return Err(RemoteError::Unavailable(message));
        }
        Ok(response)
    }

    /// A captured stream: its digest, or the inline bytes stored in the CAS so the engine can
    /// fetch them like any other blob.
    fn stream(
        &self,
        digest: Option<&re::Digest>,
        raw: &[u8],
        which: &str,
    ) -> Result<Option<StoredStream>, RemoteError> {
        if let Some(digest) = digest {
            let (digest, size) = from_re(digest)
                .ok_or_else(|| self.garbage(format!("the {which} digest is not SHA-256")))?;
            return Ok(Some(StoredStream { size, digest }));
        }
        if raw.is_empty() {
            return Ok(None);
        }
        let digest = Digest::of_bytes(raw);
        self.backend
            .put_blob(&digest, raw.len() as u64, &mut &raw[..])?;
        Ok(Some(StoredStream {
            size: raw.len() as u64,
            digest,
        }))
    }

    /// Root-relative output files of a result, output directories flattened.
    fn outputs(
        &self,
        result: &re::ActionResult,
        working_directory: &str,
        asked: &[String],
    ) -> Result<Vec<OutputFile>, RemoteError> {
        #[allow(deprecated)]
        if !result.output_symlinks.is_empty()
            || !result.output_file_symlinks.is_empty()
            || !result.output_directory_symlinks.is_empty()
        {
            return Err(self.garbage("symbolic links among the outputs (not supported)"));
        }
        let root_relative = |path: &str| -> Result<String, RemoteError> {
            check_path(path).map_err(|problem| self.garbage(format!("output {problem}")))?;
            if !asked.iter().any(|asked| {
                path == asked
                    || path
                        .strip_prefix(asked.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }) {
                return Err(self.garbage(format!("output {path:?} was not asked for")));
            }
            Ok(if working_directory.is_empty() {
                path.to_string()
            } else {
                format!("{working_directory}/{path}")
            })
        };
        let mut files = Vec::new();
        for file in &result.output_files {
            let (digest, size) = file.digest.as_ref().and_then(from_re).ok_or_else(|| {
                self.garbage(format!("output {:?} has no SHA-256 digest", file.path))
            })?;
            files.push(OutputFile {
                path: root_relative(&file.path)?,
                executable: file.is_executable,
                size,
                digest,
            });
        }
        for directory in &result.output_directories {
            let prefix = root_relative(&directory.path)?;
            let (digest, size) = directory
                .tree_digest
                .as_ref()
                .and_then(from_re)
                .ok_or_else(|| {
                    self.garbage(format!(
                        "output {:?} has no SHA-256 tree digest",
                        directory.path
                    ))
                })?;
            if size > MAX_TREE {
                return Err(self.garbage(format!(
                    "the tree of output {:?} has {size} bytes (at most {MAX_TREE})",
                    directory.path
                )));
            }
            let mut bytes = Vec::new();
            if !self.backend.get_blob(&digest, size, &mut bytes)? {
                return Err(RemoteError::Unavailable(format!(
                    "{}: the tree of output {:?} is not in the CAS",
                    self.describe(),
                    directory.path
                )));
            }
            let tree = re::Tree::decode(bytes.as_slice()).map_err(|error| {
                self.garbage(format!("the tree of output {:?}: {error}", directory.path))
            })?;
            flatten(&tree, &prefix, &mut files).map_err(|problem| self.garbage(problem))?;
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        for pair in files.windows(2) {
            if pair[0].path == pair[1].path {
                return Err(self.garbage(format!("output {:?} given twice", pair[0].path)));
            }
        }
        Ok(files)
    }
}

/// The files of an output directory's `Tree`, below `prefix`.
fn flatten(tree: &re::Tree, prefix: &str, files: &mut Vec<OutputFile>) -> Result<(), String> {
    let children: HashMap<String, &re::Directory> = tree
        .children
        .iter()
        .map(|child| (crate::action::digest_of(&child.encode_to_vec()).hash, child))
        .collect();
    let root = tree
        .root
        .as_ref()
        .ok_or_else(|| format!("the tree of {prefix:?} has no root"))?;
    let mut pending = vec![(prefix.to_string(), root, 0usize)];
    while let Some((path, directory, depth)) = pending.pop() {
        if depth > MAX_DEPTH {
            return Err(format!("the tree of {prefix:?} is too deep"));
        }
        if !directory.symlinks.is_empty() {
            return Err(format!("symbolic links in output {path:?} (not supported)"));
        }
        let name_ok = |name: &str| {
            !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
        };
        for file in &directory.files {
            if !name_ok(&file.name) {
                return Err(format!("a file named {:?} in {path:?}", file.name));
            }
            let (digest, size) = file
                .digest
                .as_ref()
                .and_then(from_re)
                .ok_or_else(|| format!("{path}/{} has no SHA-256 digest", file.name))?;
            files.push(OutputFile {
                path: format!("{path}/{}", file.name),
                executable: file.is_executable,
                size,
                digest,
            });
        }
        for node in &directory.directories {
            if !name_ok(&node.name) {
                return Err(format!("a directory named {:?} in {path:?}", node.name));
            }
            let child = node
                .digest
                .as_ref()
                .and_then(|digest| children.get(&digest.hash))
                .ok_or_else(|| {
                    format!(
                        "the tree of {prefix:?} lacks directory {path}/{}",
                        node.name
                    )
                })?;
            pending.push((format!("{path}/{}", node.name), child, depth + 1));
        }
    }
    Ok(())
}

/// A stream failure worth resuming with `WaitExecution`.
fn transient(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Internal | Code::Aborted
    )
}

fn status_text(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

impl RemoteExecutor for ReapiExecutor {
    fn describe(&self) -> String {
        RemoteBackend::describe(&*self.backend)
    }

    fn execute(
        &self,
        request: &ExecuteRequest<'_>,
        blobs: &dyn BlobSource,
    ) -> Result<ExecuteResponse, RemoteError> {
        let prepared = prepare(request).map_err(|problem| {
            RemoteError::Unavailable(format!(
                "task {}: cannot run remotely: {problem}",
                request.task
            ))
        })?;
        self.upload(&prepared, request.inputs, blobs)?;
        let bound = request
            .timeout
            .map_or(self.default_timeout, |timeout| timeout + GRACE);
        let operation = self.run(prepared.action_digest.clone(), bound)?;
        let response = self.response(operation)?;
        let result = response
            .result
            .ok_or_else(|| self.garbage("an ExecuteResponse with no result"))?;
        let working_directory = request.working_directory.trim_end_matches('/');
        let outputs = self.outputs(&result, working_directory, &prepared.output_paths)?;
        Ok(ExecuteResponse {
            exit_code: result.exit_code,
            outputs,
            stdout: self.stream(result.stdout_digest.as_ref(), &result.stdout_raw, "stdout")?,
            stderr: self.stream(result.stderr_digest.as_ref(), &result.stderr_raw, "stderr")?,
            cached: response.cached_result,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_node(name: &str) -> re::FileNode {
        re::FileNode {
            name: name.to_string(),
            digest: Some(crate::action::digest_of(name.as_bytes())),
            is_executable: false,
            node_properties: None,
        }
    }

    fn tree_with(root: re::Directory, children: Vec<re::Directory>) -> re::Tree {
        re::Tree {
            root: Some(root),
            children,
        }
    }

    #[test]
    fn output_trees_are_flattened_and_hostile_ones_refused() {
        let sub = re::Directory {
            files: vec![file_node("y.txt")],
            ..Default::default()
        };
        let good = tree_with(
            re::Directory {
                files: vec![file_node("x.txt")],
                directories: vec![re::DirectoryNode {
                    name: "sub".into(),
                    digest: Some(crate::action::digest_of(&sub.encode_to_vec())),
                }],
                ..Default::default()
            },
            vec![sub.clone()],
        );
        let mut files = Vec::new();
        flatten(&good, "out", &mut files).unwrap();
        let mut paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        paths.sort();
        assert_eq!(paths, ["out/sub/y.txt", "out/x.txt"]);

        for name in ["..", ".", "", "a/b", "a\0b"] {
            let name = name.to_string();
            let bad_file = tree_with(
                re::Directory {
                    files: vec![file_node(&name)],
                    ..Default::default()
                },
                Vec::new(),
            );
            assert!(
                flatten(&bad_file, "out", &mut Vec::new()).is_err(),
                "{name:?}"
            );
            let bad_dir = tree_with(
                re::Directory {
                    directories: vec![re::DirectoryNode {
                        name: name.clone(),
                        digest: Some(crate::action::digest_of(&sub.encode_to_vec())),
                    }],
                    ..Default::default()
                },
                vec![sub.clone()],
            );
            assert!(
                flatten(&bad_dir, "out", &mut Vec::new()).is_err(),
                "{name:?}"
            );
        }
        // A directory the tree does not hold, a symbolic link, no root.
        let missing = tree_with(
            re::Directory {
                directories: vec![re::DirectoryNode {
                    name: "sub".into(),
                    digest: Some(crate::action::digest_of(b"not a directory")),
                }],
                ..Default::default()
            },
            Vec::new(),
        );
        assert!(flatten(&missing, "out", &mut Vec::new()).is_err());
        let link = tree_with(
            re::Directory {
                symlinks: vec![re::SymlinkNode {
                    name: "l".into(),
                    target: "/etc".into(),
                    node_properties: None,
                }],
                ..Default::default()
            },
            Vec::new(),
        );
        assert!(flatten(&link, "out", &mut Vec::new()).is_err());
        assert!(flatten(&re::Tree::default(), "out", &mut Vec::new()).is_err());
    }

    fn file(path: &str, bytes: &[u8], executable: bool) -> InputFile {
        InputFile {
            path: path.to_string(),
            digest: Digest::of_bytes(bytes),
            size: bytes.len() as u64,
            executable,
        }
    }

    #[test]
    fn input_paths_are_checked() {
        for bad in ["", "/etc/passwd", "a/../b", "a//b", "./a", "a/", ".."] {
            assert!(
                input_tree(&[file(bad, b"x", false)], "").is_err(),
                "{bad:?} accepted"
            );
        }
        // A file and a directory of the same name.
        assert!(input_tree(&[file("a", b"1", false), file("a/b", b"2", false)], "").is_err());
        assert!(input_tree(&[file("a/b", b"2", false), file("a", b"1", false)], "").is_err());
    }

    #[test]
    fn the_tree_is_sorted_and_deterministic() {
        let inputs = [
            file("src/b.txt", b"b", false),
            file("src/a.txt", b"a", false),
            file("tool.sh", b"#!/bin/sh\n", true),
        ];
        let (root, dirs) = input_tree(&inputs, "out/work").unwrap();
        let mut reversed = inputs.to_vec();
        reversed.reverse();
        let (again, _) = input_tree(&reversed, "out/work").unwrap();
        assert_eq!(root, again);
        let (_, root_bytes) = dirs.last().unwrap();
        let root_dir = re::Directory::decode(root_bytes.as_slice()).unwrap();
        let names: Vec<&str> = root_dir
            .directories
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(names, ["out", "src"]);
        assert_eq!(root_dir.files.len(), 1);
        assert!(root_dir.files[0].is_executable);
        // root, out, out/work, src
        assert_eq!(dirs.len(), 4);
    }

    #[test]
    fn outputs_must_lie_below_the_working_directory() {
        let env = BTreeMap::new();
        let platform = BTreeMap::new();
        let argv = vec!["true".to_string()];
        let outputs = vec!["pkg/out".to_string(), "other/x".to_string()];
        let request = ExecuteRequest {
            task: "t",
            argv: &argv,
            env: &env,
            working_directory: "pkg",
            inputs: &[],
            output_paths: &outputs,
            platform: &platform,
            timeout: None,
        };
        assert!(prepare(&request).is_err());
        let outputs = vec!["pkg/out".to_string()];
        let request = ExecuteRequest {
            output_paths: &outputs,
            ..request
        };
        assert_eq!(prepare(&request).unwrap().output_paths, ["out"]);
    }
}
