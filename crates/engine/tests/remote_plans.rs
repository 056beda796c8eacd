//! Remote plans ([`engine::Action::prepare_remote`]) against an in-memory executor: every kind
//! of extra input reaches the worker at its path (a work-tree file, a store blob, bytes, a local
//! executable), the plan's discovered inputs are recorded with the result, and what must stay
//! here stays here with one warning and nothing of the worker kept: an input through a link or
//! outside the root, a relative executable, a worker answering "cannot run". A plan's depfile
//! comes back as discovered inputs (never as an output); a pinned file outside the tree is sent
//! only if it is what its digest says.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use engine::remote::{RemoteBackend, RemoteError};
use engine::remote_exec::{
    BlobSource, ExecuteRequest, ExecuteResponse, RemoteExecution, RemoteExecutor, RemoteInput,
    RemotePlan, RemotePrep,
};
use engine::store::{ActionResult, OutputFile, StoredStream};
use engine::{
    Action, ActionContext, ActionFailure, ActionOutput, Digest, Discovered, Engine, EngineConfig,
    Event, Reporter, TaskGraph, TaskId, TaskSpec, TaskStatus,
};

/// The worker's answer to "cannot run".
const CANNOT: i32 = 97;

/// A server: a CAS in memory, an executor that concatenates its input files (path order) into
/// its one output path, or answers `CANNOT` when argv\[0\] is `cannot`.
#[derive(Default)]
struct Server {
    blobs: Mutex<HashMap<Digest, Vec<u8>>>,
    /// The input paths of every request, in order.
    requests: Mutex<Vec<Vec<String>>>,
}

impl Server {
    fn put(&self, bytes: Vec<u8>) -> StoredStream {
        let digest = Digest::of_bytes(&bytes);
        let size = bytes.len() as u64;
        self.blobs.lock().unwrap().insert(digest, bytes);
        StoredStream { size, digest }
    }
}

struct Executor(Arc<Server>);

impl RemoteExecutor for Executor {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn execute(
        &self,
        request: &ExecuteRequest<'_>,
        blobs: &dyn BlobSource,
    ) -> Result<ExecuteResponse, RemoteError> {
        let mut joined = Vec::new();
        for input in request.inputs {
            let mut bytes = Vec::new();
            blobs
                .open(&input.digest, input.size)
                .and_then(|mut reader| reader.read_to_end(&mut bytes))
                .map_err(|err| RemoteError::Garbage(format!("reading {}: {err}", input.path)))?;
            joined.extend_from_slice(input.path.as_bytes());
            joined.extend_from_slice(if input.executable { b" x:" } else { b" -:" });
            joined.extend_from_slice(&bytes);
            joined.push(b'\n');
        }
        self.0
            .requests
            .lock()
            .unwrap()
            .push(request.inputs.iter().map(|i| i.path.clone()).collect());
        if request.argv[0] == "cannot" {
            // Slow to answer, so plans needing the same toolchain are in flight together.
            std::thread::sleep(std::time::Duration::from_millis(50));
            return Ok(ExecuteResponse {
                exit_code: CANNOT,
                outputs: Vec::new(),
                stdout: None,
                stderr: Some(self.0.put(b"the worker's tool is v0\n".to_vec())),
                cached: false,
            });
        }
        let stored = self.0.put(joined);
        let mut outputs = vec![OutputFile {
            path: request.output_paths[0].clone(),
            executable: false,
            size: stored.size,
            digest: stored.digest,
        }];
        // `depfile TEXT`: also writes TEXT at the last output path (the plan's depfile).
        if request.argv[0] == "depfile" {
            let written = self.0.put(request.argv[1].clone().into_bytes());
            outputs.push(OutputFile {
                path: request.output_paths.last().unwrap().clone(),
                executable: false,
                size: written.size,
                digest: written.digest,
            });
        }
        // A hostile worker: `hostile PATH` also reports an output at PATH.
        if request.argv[0] == "hostile" {
            let pwned = self.0.put(b"pwned\n".to_vec());
            outputs.push(OutputFile {
                path: request.argv[1].clone(),
                executable: true,
                size: pwned.size,
                digest: pwned.digest,
            });
        }
        Ok(ExecuteResponse {
            exit_code: 0,
            outputs,
            stdout: None,
            stderr: None,
            cached: false,
        })
    }
}

struct Cas(Arc<Server>);

impl RemoteBackend for Cas {
    fn source(&self) -> &'static str {
        "reapi"
    }
    fn describe(&self) -> String {
        "memory".into()
    }
    fn get_action(&self, _: &Digest, _: u64) -> Result<Option<Vec<u8>>, RemoteError> {
        Ok(None)
    }
    fn put_action(&self, _: &Digest, _: &[u8], _: &ActionResult) -> Result<(), RemoteError> {
        Ok(())
    }
    fn find_missing(&self, blobs: &[(Digest, u64)]) -> Result<Vec<Digest>, RemoteError> {
        Ok(blobs.iter().map(|(d, _)| *d).collect())
    }
    fn get_blob(&self, digest: &Digest, _: u64, out: &mut dyn Write) -> Result<bool, RemoteError> {
        match self.0.blobs.lock().unwrap().get(digest) {
            Some(bytes) => {
                out.write_all(bytes).unwrap();
                Ok(true)
            }
            None => Ok(false),
        }
    }
    fn put_blob(&self, _: &Digest, _: u64, _: &mut dyn Read) -> Result<(), RemoteError> {
        Ok(())
    }
}

/// A finished task: its status, where it ran, its error.
type Finished = (TaskStatus, Option<&'static str>, Option<String>);

#[derive(Default)]
struct Collect {
    finished: Mutex<Vec<Finished>>,
    warnings: Mutex<Vec<String>>,
}

impl Reporter for Collect {
    fn report(&self, event: Event<'_>) {
        match event {
            Event::TaskFinished(report) => self.finished.lock().unwrap().push((
                report.status,
                report.executed,
                report.error.clone(),
            )),
            Event::Warning { message, .. } => self.warnings.lock().unwrap().push(message.into()),
            _ => {}
        }
    }
}

fn graph(prep: RemotePrep) -> TaskGraph {
    TaskGraph::new(vec![task("t", "out/result.txt", prep)]).unwrap()
}

/// `task:<name>`, writing `output` (`local` when run here), with the remote plan given.
fn task(name: &str, output: &str, prep: RemotePrep) -> TaskSpec {
    TaskSpec {
        id: TaskId::new(format!("task:{name}")),
        kind: "test".into(),
        impl_version: 1,
        params: BTreeMap::new(),
        cwd: String::new(),
        inputs: vec!["declared.txt".into()],
        outputs: vec![output.into()],
        env: Vec::new(),
        tools: BTreeMap::new(),
        deps: Vec::new(),
        action: Arc::new(Writes(output.into(), prep)),
        description: None,
    }
}

fn engine(root: &std::path::Path, server: &Arc<Server>) -> Engine {
    engine_with_jobs(root, server, 1)
}

fn engine_with_jobs(root: &std::path::Path, server: &Arc<Server>, jobs: usize) -> Engine {
    let mut config = EngineConfig::new(root);
    config.jobs = jobs;
    config.env = BTreeMap::new();
    config.executor = Some(RemoteExecution {
        executor: Arc::new(Executor(server.clone())),
        blobs: Arc::new(Cas(server.clone())),
        platform: BTreeMap::new(),
        timeout: None,
        local_jobs: 1,
    });
    Engine::new(config)
}

/// The one task's (status, executed, error) and the run's warnings.
fn run(engine: &Engine, graph: &TaskGraph) -> (Finished, Vec<String>) {
    let collect = Collect::default();
    engine
        .run(graph, &[TaskId::new("task:t")], &collect)
        .unwrap();
    let finished = collect.finished.lock().unwrap().pop().unwrap();
    let warnings = collect.warnings.lock().unwrap().clone();
    (finished, warnings)
}

fn plan(argv: &str, inputs: Vec<(String, RemoteInput)>) -> RemotePlan {
    RemotePlan {
        argv: vec![argv.into()],
        inputs,
        output_paths: vec!["out/result.txt".into()],
        cannot_run_exit_code: Some(CANNOT),
        ..RemotePlan::default()
    }
}

fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("repo/src")).unwrap();
    std::fs::write(dir.path().join("repo/declared.txt"), "declared\n").unwrap();
    std::fs::write(dir.path().join("repo/src/found.txt"), "found\n").unwrap();
    std::fs::write(dir.path().join("outside.txt"), "secret\n").unwrap();
    dir
}

#[test]
fn every_kind_of_input_reaches_the_worker_and_discovered_inputs_are_recorded() {
    let dir = tree();
    let root = dir.path().join("repo");
    let tool = dir.path().join("tool");
    std::fs::write(&tool, "#!/bin/sh\n").unwrap();
    let server = Arc::new(Server::default());
    let engine = engine(&root, &server);
    let mut planned = plan(
        "concat",
        vec![
            (
                "in/found.txt".into(),
                RemoteInput::TreeFile("src/found.txt".into()),
            ),
            (
                "in/plan.json".into(),
                RemoteInput::Bytes {
                    bytes: b"{}".to_vec(),
                    executable: false,
                },
            ),
            ("in/tool".into(), RemoteInput::Executable(tool.clone())),
        ],
    );
    planned.discovered = Discovered {
        files: vec!["src/found.txt".into()],
        listings: Vec::new(),
    };
    let graph = graph(RemotePrep::Plan(Box::new(planned)));
    let ((status, executed, error), warnings) = run(&engine, &graph);
    assert_eq!(
        (status, executed),
        (TaskStatus::Ran, Some("remote")),
        "{error:?}"
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        std::fs::read_to_string(root.join("out/result.txt")).unwrap(),
        "declared.txt -:declared\n\nin/found.txt -:found\n\nin/plan.json -:{}\nin/tool x:#!/bin/sh\n\n"
    );
    // Cached; a discovered input's edit runs it again.
    assert_eq!(run(&engine, &graph).0.0, TaskStatus::Cached);
    std::thread::sleep(std::time::Duration::from_millis(25));
    std::fs::write(root.join("src/found.txt"), "changed\n").unwrap();
    let ((status, executed, _), _) = run(&engine, &graph);
    assert_eq!((status, executed), (TaskStatus::Ran, Some("remote")));
    assert!(
        std::fs::read_to_string(root.join("out/result.txt"))
            .unwrap()
            .contains("in/found.txt -:changed")
    );
}

#[test]
fn inputs_a_plan_may_not_send_keep_the_task_here_with_one_warning() {
    let dir = tree();
    let root = dir.path().join("repo");
    std::os::unix::fs::symlink(dir.path().join("outside.txt"), root.join("src/link.txt")).unwrap();
    let cases: Vec<(&str, Vec<(String, RemoteInput)>)> = vec![
        (
            "a link",
            vec![("in/x".into(), RemoteInput::TreeFile("src/link.txt".into()))],
        ),
        (
            "a path out of the root",
            vec![(
                "in/x".into(),
                RemoteInput::TreeFile("../outside.txt".into()),
            )],
        ),
        (
            "an input root path out of the root",
            vec![("../x".into(), RemoteInput::TreeFile("src/found.txt".into()))],
        ),
        (
            "a relative executable",
            vec![("in/x".into(), RemoteInput::Executable("tool".into()))],
        ),
        (
            "a blob the store lacks",
            vec![(
                "in/x".into(),
                RemoteInput::Blob {
                    digest: Digest::of_bytes(b"nowhere"),
                    size: 7,
                    executable: false,
                },
            )],
        ),
    ];
    for (what, inputs) in cases {
        let server = Arc::new(Server::default());
        let engine = engine(&root, &server);
        let graph = graph(RemotePrep::Plan(Box::new(plan("concat", inputs))));
        let ((status, executed, _), warnings) = run(&engine, &graph);
        assert_eq!(
            (status, executed),
            (TaskStatus::Ran, Some("local")),
            "{what}"
        );
        assert_eq!(warnings.len(), 1, "{what}: {warnings:?}");
        assert!(
            warnings[0].contains("cannot run remotely"),
            "{what}: {warnings:?}"
        );
        assert!(
            server.requests.lock().unwrap().is_empty(),
            "{what}: nothing sent"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("out/result.txt")).unwrap(),
            "local\n"
        );
        let _ = std::fs::remove_dir_all(root.join(".xbundle"));
    }
}

#[test]
fn a_worker_that_cannot_run_it_is_a_warning_and_a_local_run_never_a_result() {
    let dir = tree();
    let root = dir.path().join("repo");
    let server = Arc::new(Server::default());
    let engine = engine(&root, &server);
    let graph = graph(RemotePrep::Plan(Box::new(plan("cannot", Vec::new()))));
    let ((status, executed, error), warnings) = run(&engine, &graph);
    assert_eq!(
        (status, executed),
        (TaskStatus::Ran, Some("local")),
        "{error:?}"
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("cannot run it") && warnings[0].contains("the worker's tool is v0"),
        "{warnings:?}"
    );
    assert_eq!(server.requests.lock().unwrap().len(), 1);
    assert_eq!(
        std::fs::read_to_string(root.join("out/result.txt")).unwrap(),
        "local\n"
    );
    // The local result is the cached one.
    assert_eq!(run(&engine, &graph).0.0, TaskStatus::Cached);
}

#[test]
fn a_reason_to_stay_here_is_one_warning_and_not_remote_is_silent() {
    let dir = tree();
    let root = dir.path().join("repo");
    for (prep, expected) in [
        (RemotePrep::Local("it is signed here".into()), 1),
        (RemotePrep::NotRemote, 0),
    ] {
        let server = Arc::new(Server::default());
        let engine = engine(&root, &server);
        let ((status, executed, _), warnings) = run(&engine, &graph(prep));
        assert_eq!((status, executed), (TaskStatus::Ran, Some("local")));
        assert_eq!(warnings.len(), expected, "{warnings:?}");
        assert!(warnings.iter().all(|w| w.contains("it is signed here")));
        assert!(server.requests.lock().unwrap().is_empty());
        let _ = std::fs::remove_dir_all(root.join(".xbundle"));
    }
}

#[test]
fn a_hostile_workers_outputs_out_of_the_plan_are_refused_and_touch_nothing() {
    for hostile in [
        "../outside.txt",
        "out/../../outside.txt",
        "/tmp/pwned",
        ".git/hooks/pre-commit",
        ".xbundle/cache/x",
    ] {
        let dir = tree();
        let root = dir.path().join("repo");
        std::fs::create_dir_all(root.join(".git/hooks")).unwrap();
        let server = Arc::new(Server::default());
        let engine = engine(&root, &server);
        let mut planned = plan("hostile", Vec::new());
        planned.argv.push(hostile.into());
        // Even a plan asking for a path of the tree that no output glob matches.
        planned.output_paths.push("src".into());
        let graph = graph(RemotePrep::Plan(Box::new(planned)));
        let ((status, executed, error), warnings) = run(&engine, &graph);
        assert_eq!(status, TaskStatus::Ran, "{hostile}: {error:?}");
        assert!(
            std::fs::read_to_string(dir.path().join("outside.txt")).unwrap() == "secret\n",
            "{hostile}"
        );
        assert!(!root.join(".git/hooks/pre-commit").exists(), "{hostile}");
        // Either refused as a whole (a local run, one warning) or the stray file dropped (not
        // matched by the output globs): never written.
        match executed {
            Some("local") => {
                assert_eq!(warnings.len(), 1, "{hostile}: {warnings:?}");
                assert_eq!(
                    std::fs::read_to_string(root.join("out/result.txt")).unwrap(),
                    "local\n"
                );
            }
            other => {
                assert_eq!(other, Some("remote"), "{hostile}");
                assert!(!root.join(".xbundle/cache/x").exists(), "{hostile}");
                assert!(!root.join("tmp/pwned").exists(), "{hostile}");
            }
        }
    }
}

#[test]
fn a_remote_depfile_becomes_discovered_inputs_and_never_an_output() {
    let dir = tree();
    let root = dir.path().join("repo");
    let server = Arc::new(Server::default());
    let runner = engine(&root, &server);
    let depfile = |text: &str| {
        let mut planned = plan("depfile", Vec::new());
        planned.argv.push(text.into());
        planned.depfile = Some("out/deps.d".into());
        graph(RemotePrep::Plan(Box::new(planned)))
    };
    // Relative names are the task's files; absolute ones are the worker's and ignored.
    let tasks = depfile("out/result.txt: src/found.txt /worker/root/declared.txt \\\n ../up.txt\n");
    let ((status, executed, error), warnings) = run(&runner, &tasks);
    assert_eq!(
        (status, executed),
        (TaskStatus::Ran, Some("remote")),
        "{error:?}"
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(
        !root.join("out/deps.d").exists(),
        "the depfile is no output"
    );
    assert_eq!(run(&runner, &tasks).0.0, TaskStatus::Cached);
    std::thread::sleep(std::time::Duration::from_millis(25));
    std::fs::write(root.join("src/found.txt"), "changed\n").unwrap();
    let ((status, executed, _), _) = run(&runner, &tasks);
    assert_eq!((status, executed), (TaskStatus::Ran, Some("remote")));

    // A command that did not write its depfile, or wrote a malformed one, fails: nothing cached.
    for (text, expected) in [
        ("-", "did not write its depfile"),
        ("a name without a colon\n", "depfile `out/deps.d`"),
    ] {
        let _ = std::fs::remove_dir_all(root.join(".xbundle"));
        let server = Arc::new(Server::default());
        let runner = engine(&root, &server);
        let mut planned = plan("depfile", Vec::new());
        planned.argv.push(text.into());
        planned.depfile = Some("out/deps.d".into());
        if text == "-" {
            planned.argv[0] = "concat".into();
        }
        let tasks = graph(RemotePrep::Plan(Box::new(planned)));
        let ((status, _, error), _) = run(&runner, &tasks);
        assert_eq!(status, TaskStatus::Failed, "{text}");
        assert!(
            error.as_deref().unwrap_or("").contains(expected),
            "{text}: {error:?}"
        );
        let ((status, _, _), _) = run(&runner, &tasks);
        assert_eq!(status, TaskStatus::Failed, "{text}: nothing was cached");
    }
}

#[test]
fn a_pinned_file_is_sent_only_when_it_is_what_its_digest_says() {
    let dir = tree();
    let root = dir.path().join("repo");
    let archive = dir.path().join("crate.tar.gz");
    std::fs::write(&archive, "the archive\n").unwrap();
    let pinned = |digest| {
        vec![(
            "vendor/x.crate".to_string(),
            RemoteInput::Pinned {
                path: archive.clone(),
                digest,
                size: 12,
                executable: false,
            },
        )]
    };
    let server = Arc::new(Server::default());
    let runner = engine(&root, &server);
    let tasks = graph(RemotePrep::Plan(Box::new(plan(
        "concat",
        pinned(Digest::of_bytes(b"the archive\n")),
    ))));
    let ((status, executed, error), warnings) = run(&runner, &tasks);
    assert_eq!(
        (status, executed),
        (TaskStatus::Ran, Some("remote")),
        "{error:?}"
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(
        std::fs::read_to_string(root.join("out/result.txt"))
            .unwrap()
            .contains("vendor/x.crate -:the archive")
    );
    // Pinned to other bytes (a download cache holding something else): the worker never
    // receives it, the task runs here with one warning.
    let _ = std::fs::remove_dir_all(root.join(".xbundle"));
    let server = Arc::new(Server::default());
    let runner = engine(&root, &server);
    let tasks = graph(RemotePrep::Plan(Box::new(plan(
        "concat",
        pinned(Digest::of_bytes(b"what the lockfile pins\n")),
    ))));
    let ((status, executed, _), warnings) = run(&runner, &tasks);
    assert_eq!((status, executed), (TaskStatus::Ran, Some("local")));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(
        std::fs::read_to_string(root.join("out/result.txt")).unwrap(),
        "local\n"
    );
}

#[test]
fn a_toolchain_a_worker_lacks_is_one_warning_and_asked_once_per_run() {
    let dir = tree();
    let root = dir.path().join("repo");
    let server = Arc::new(Server::default());
    // Four at once: the three plans needing `go1` would all be with the worker together, but
    // the first asks and the others wait for its answer.
    let runner = engine_with_jobs(&root, &server, 4);
    let spec = |name: &str, toolchain: &str| {
        let output = format!("out/{name}.txt");
        let mut planned = plan("cannot", Vec::new());
        planned.output_paths = vec![output.clone()];
        planned.toolchain = Some(toolchain.into());
        task(name, &output, RemotePrep::Plan(Box::new(planned)))
    };
    // Three tasks needing one toolchain, one needing another.
    let tasks = TaskGraph::new(vec![
        spec("a", "go1"),
        spec("b", "go1"),
        spec("c", "go1"),
        spec("d", "go2"),
    ])
    .unwrap();
    let ids: Vec<TaskId> = ["a", "b", "c", "d"]
        .iter()
        .map(|name| TaskId::new(format!("task:{name}")))
        .collect();
    let collect = Collect::default();
    runner.run(&tasks, &ids, &collect).unwrap();
    let finished = collect.finished.lock().unwrap().clone();
    assert_eq!(finished.len(), 4);
    assert!(
        finished
            .iter()
            .all(|(status, executed, _)| *status == TaskStatus::Ran && *executed == Some("local")),
        "{finished:?}"
    );
    let warnings = collect.warnings.lock().unwrap().clone();
    assert_eq!(warnings.len(), 2, "one per toolchain: {warnings:?}");
    assert!(
        warnings
            .iter()
            .all(|w| w.contains("the worker's tool is v0"))
    );
    assert_eq!(
        server.requests.lock().unwrap().len(),
        2,
        "asked once per toolchain"
    );

    // The next run asks again (the worker may have been fixed).
    for name in ["a", "b", "c", "d"] {
        std::fs::remove_file(root.join(format!("out/{name}.txt"))).unwrap();
    }
    let _ = std::fs::remove_dir_all(root.join(".xbundle"));
    runner.run(&tasks, &ids, &Collect::default()).unwrap();
    assert_eq!(server.requests.lock().unwrap().len(), 4);
}

/// An action whose remote plan is given; run here, it writes `local` to its output (through
/// the confined tree, as every action writes).
struct Writes(String, RemotePrep);

impl Action for Writes {
    fn prepare_remote(&self, _: &ActionContext<'_>) -> Result<RemotePrep, ActionFailure> {
        Ok(self.1.clone())
    }

    fn run(&self, context: &ActionContext<'_>) -> Result<ActionOutput, ActionFailure> {
        let path = self.0.clone();
        context
            .tree
            .write_file(&path, 0o644, |file| {
                std::io::Write::write_all(file, b"local\n").map_err(|source| {
                    engine::confine::ConfineError::Io {
                        path: path.clone(),
                        source,
                    }
                })
            })
            .unwrap();
        Ok(ActionOutput::default())
    }
}
