//! What actions of the engine's own kind (the pipeline's) get: discovered listings and files
//! recorded and re-checked by `run` and `probe` alike, and the store through `BlobStore`.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use engine::exec::Expected;
use engine::{
    Action, ActionContext, ActionFailure, ActionOutput, Digest, DirtyReason, Discovered, Engine,
    EngineConfig, Event, Reporter, TaskGraph, TaskId, TaskSpec, TaskStatus,
};

/// A "Go build": concatenates the package's non-test `.go` files and a config file it looks
/// for, and reports them (the package listing, the config as a file, present or not).
struct GoBuild;

impl Action for GoBuild {
    fn run(&self, context: &ActionContext<'_>) -> Result<ActionOutput, ActionFailure> {
        let mut names: Vec<String> = std::fs::read_dir(context.root.join("api"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".go") && !name.ends_with("_test.go"))
            .collect();
        names.sort();
        let mut out = String::new();
        for name in &names {
            out.push_str(&std::fs::read_to_string(context.root.join("api").join(name)).unwrap());
        }
        out.push_str(&std::fs::read_to_string(context.root.join("config.txt")).unwrap_or_default());
        std::fs::create_dir_all(context.root.join("bin")).unwrap();
        std::fs::write(context.root.join("bin/api"), out).unwrap();
        let mut files: Vec<String> = names.iter().map(|name| format!("api/{name}")).collect();
        files.push("config.txt".into());
        Ok(ActionOutput {
            discovered: Discovered {
                files,
                listings: vec!["api/*.go".into(), "!api/*_test.go".into()],
            },
            ..ActionOutput::default()
        })
    }
}

#[derive(Default)]
struct Collect(Mutex<Vec<(TaskStatus, Vec<DirtyReason>)>>);

impl Reporter for Collect {
    fn report(&self, event: Event<'_>) {
        if let Event::TaskFinished(report) = event {
            self.0
                .lock()
                .unwrap()
                .push((report.status, report.reasons.clone()));
        }
    }
}

pub(crate) fn spec(action: Arc<dyn Action>, outputs: &[&str]) -> TaskSpec {
    TaskSpec {
        id: TaskId::new("task:t"),
        kind: "test".into(),
        impl_version: 1,
        params: BTreeMap::new(),
        cwd: String::new(),
        inputs: Vec::new(),
        outputs: outputs.iter().map(|o| o.to_string()).collect(),
        env: Vec::new(),
        tools: BTreeMap::new(),
        deps: Vec::new(),
        action,
        description: None,
    }
}

pub(crate) fn engine(root: &std::path::Path) -> Engine {
    let mut config = EngineConfig::new(root);
    config.jobs = 1;
    config.env = BTreeMap::new();
    Engine::new(config)
}

/// Runs the graph; the one task's status and reasons.
fn run(engine: &Engine, graph: &TaskGraph) -> (TaskStatus, Vec<String>) {
    let collect = Collect::default();
    engine
        .run(graph, &[TaskId::new("task:t")], &collect)
        .unwrap();
    let (status, reasons) = collect.0.lock().unwrap().pop().unwrap();
    (status, reasons.iter().map(ToString::to_string).collect())
}

/// Lets the file system's clock move on after the test's edits: a file written in the same
/// tick (up to 10 ms on a coarse clock) as the action's start counts as changed while it ran,
/// which is safe but would add a run here (see `engine::discovered`).
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(25));
}

fn probe(engine: &Engine, graph: &TaskGraph) -> Expected {
    engine
        .probe(graph, &[TaskId::new("task:t")])
        .unwrap()
        .remove(0)
        .expected
}

#[test]
fn listings_and_files_are_checked_by_run_and_probe_alike() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("api")).unwrap();
    std::fs::write(root.join("api/main.go"), "main\n").unwrap();
    settle();
    std::fs::write(root.join("api/main_test.go"), "test\n").unwrap();
    settle();
    let engine = engine(root);
    let graph = TaskGraph::new(vec![spec(Arc::new(GoBuild), &["bin/api"])]).unwrap();

    assert_eq!(run(&engine, &graph).0, TaskStatus::Ran);
    assert_eq!(probe(&engine, &graph), Expected::UpToDate);
    assert_eq!(run(&engine, &graph), (TaskStatus::Cached, Vec::new()));

    // A test file: excluded from the listing, and not a discovered file: nothing runs.
    std::fs::write(root.join("api/other_test.go"), "t\n").unwrap();
    settle();
    assert_eq!(run(&engine, &graph).0, TaskStatus::Cached);

    // A new package file: the listing changed.
    std::fs::write(root.join("api/util.go"), "util\n").unwrap();
    settle();
    let why = "a file matching discovered listing api/*.go appeared: api/util.go";
    assert_eq!(
        probe(&engine, &graph),
        Expected::Run(vec![DirtyReason::ListingAppeared {
            pattern: "api/*.go".into(),
            path: "api/util.go".into()
        }])
    );
    assert_eq!(
        run(&engine, &graph),
        (TaskStatus::Ran, vec![why.to_string()])
    );
    assert_eq!(
        std::fs::read_to_string(root.join("bin/api")).unwrap(),
        "main\nutil\n"
    );

    // The config file it looked for and did not find appears.
    std::fs::write(root.join("config.txt"), "config\n").unwrap();
    settle();
    assert_eq!(
        run(&engine, &graph),
        (
            TaskStatus::Ran,
            vec!["discovered input config.txt appeared".to_string()]
        )
    );
    // A package file removed: the listing and the file both say so.
    std::fs::remove_file(root.join("api/util.go")).unwrap();
    settle();
    let (status, reasons) = run(&engine, &graph);
    assert_eq!(status, TaskStatus::Ran);
    assert_eq!(
        reasons,
        [
            "discovered input api/util.go disappeared",
            "a file matching discovered listing api/*.go disappeared: api/util.go"
        ]
    );
    assert_eq!(run(&engine, &graph).0, TaskStatus::Cached);
}

/// An action that reports a path no tool output should be trusted with.
struct Hostile(&'static str);

impl Action for Hostile {
    fn run(&self, context: &ActionContext<'_>) -> Result<ActionOutput, ActionFailure> {
        std::fs::write(context.root.join("out.txt"), "x").unwrap();
        Ok(ActionOutput {
            discovered: Discovered {
                files: vec![self.0.to_string()],
                listings: Vec::new(),
            },
            ..ActionOutput::default()
        })
    }
}

#[test]
fn untrusted_discovered_paths_fail_the_task_and_cache_nothing() {
    for path in ["/etc/passwd", "../x", "a/../../x", "a\n\u{1b}[2Jb"] {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        let graph = TaskGraph::new(vec![spec(Arc::new(Hostile(path)), &["out.txt"])]).unwrap();
        let collect = Collect::default();
        let summary = engine
            .run(&graph, &[TaskId::new("task:t")], &collect)
            .unwrap();
        assert_eq!(summary.failed, 1, "{path:?}");
        let (_, error) = &summary.failures[0];
        assert!(error.contains("is refused"), "{path:?}: {error}");
        assert!(!error.contains('\u{1b}'), "escaped: {error}");
        assert!(
            matches!(probe(&engine, &graph), Expected::Run(_)),
            "nothing cached"
        );
    }
}

/// Stores a "download" through `BlobStore` unless the store has it, and copies it out.
struct Fetch {
    fetched: Arc<Mutex<usize>>,
}

impl Action for Fetch {
    fn run(&self, context: &ActionContext<'_>) -> Result<ActionOutput, ActionFailure> {
        let content = b"a large asset".repeat(1000);
        let digest = Digest::of_bytes(&content);
        if context.blobs.open(&digest).unwrap().is_none() {
            *self.fetched.lock().unwrap() += 1;
            let temp = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(temp.path(), &content).unwrap();
            context.blobs.put(temp.path(), &digest).unwrap();
        }
        let mut read = Vec::new();
        context
            .blobs
            .open(&digest)
            .unwrap()
            .unwrap()
            .read_to_end(&mut read)
            .unwrap();
        std::fs::write(context.root.join("asset.bin"), read).unwrap();
        Ok(ActionOutput::default())
    }
}

#[test]
fn actions_reach_the_store_and_fetch_nothing_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let fetched = Arc::new(Mutex::new(0));
    let mut config = EngineConfig::new(dir.path());
    config.force = true; // runs every time: only the blob store keeps it from fetching again
    config.env = BTreeMap::new();
    let engine = Engine::new(config);
    let graph = TaskGraph::new(vec![spec(
        Arc::new(Fetch {
            fetched: fetched.clone(),
        }),
        &["asset.bin"],
    )])
    .unwrap();
    for _ in 0..3 {
        assert_eq!(run(&engine, &graph).0, TaskStatus::Ran);
    }
    assert_eq!(*fetched.lock().unwrap(), 1);
    assert_eq!(
        std::fs::read(dir.path().join("asset.bin")).unwrap(),
        b"a large asset".repeat(1000)
    );
}

/// An action that replaces its output itself (`replaces_outputs`): writes `out.bin` beside and
/// renames it over, fails while `fail` exists, or leaves the old file alone while `lazy` does.
struct Replacing;

impl Action for Replacing {
    fn run(&self, context: &ActionContext<'_>) -> Result<ActionOutput, ActionFailure> {
        let root = context.root;
        if root.join("fail").exists() {
            return Err(ActionFailure {
                message: "failed on purpose".into(),
                ..ActionFailure::default()
            });
        }
        if !root.join("lazy").exists() {
            let input = std::fs::read(root.join("in.txt")).unwrap();
            std::fs::write(root.join(".out.bin.new"), input).unwrap();
            std::fs::rename(root.join(".out.bin.new"), root.join("out.bin")).unwrap();
        }
        Ok(ActionOutput::default())
    }

    fn replaces_outputs(&self) -> bool {
        true
    }
}

/// An action that replaces its outputs keeps the last good ones through a failed run (which
/// caches nothing), and one that leaves an old output in place fails instead of caching it.
#[test]
fn outputs_an_action_replaces_stay_until_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("in.txt"), "one\n").unwrap();
    settle();
    let engine = engine(root);
    let mut spec = spec(Arc::new(Replacing), &["out.bin"]);
    spec.inputs = vec!["in.txt".into()];
    let graph = TaskGraph::new(vec![spec]).unwrap();
    assert_eq!(run(&engine, &graph).0, TaskStatus::Ran);
    assert_eq!(std::fs::read(root.join("out.bin")).unwrap(), b"one\n");

    // A failed run: the last output stays, and nothing was cached (it runs again).
    std::fs::write(root.join("in.txt"), "two\n").unwrap();
    std::fs::write(root.join("fail"), "").unwrap();
    settle();
    assert_eq!(run(&engine, &graph).0, TaskStatus::Failed);
    assert_eq!(std::fs::read(root.join("out.bin")).unwrap(), b"one\n");
    assert_eq!(run(&engine, &graph).0, TaskStatus::Failed);
    std::fs::remove_file(root.join("fail")).unwrap();
    settle();
    assert_eq!(run(&engine, &graph).0, TaskStatus::Ran);
    assert_eq!(std::fs::read(root.join("out.bin")).unwrap(), b"two\n");

    // An action that claims success without replacing its output caches nothing stale.
    std::fs::write(root.join("in.txt"), "three\n").unwrap();
    std::fs::write(root.join("lazy"), "").unwrap();
    settle();
    assert_eq!(run(&engine, &graph).0, TaskStatus::Failed);
    assert_eq!(std::fs::read(root.join("out.bin")).unwrap(), b"two\n");
    std::fs::remove_file(root.join("lazy")).unwrap();
    settle();
    assert_eq!(run(&engine, &graph).0, TaskStatus::Ran);
    assert_eq!(std::fs::read(root.join("out.bin")).unwrap(), b"three\n");

    // A link at the output's name is removed first, never written through.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("target"), "outside\n").unwrap();
    std::fs::remove_file(root.join("out.bin")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("target"), root.join("out.bin")).unwrap();
    std::fs::write(root.join("in.txt"), "four\n").unwrap();
    settle();
    assert_eq!(run(&engine, &graph).0, TaskStatus::Ran);
    assert!(
        !std::fs::symlink_metadata(root.join("out.bin"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read(outside.path().join("target")).unwrap(),
        b"outside\n"
    );
}

/// A run's end ends the reaper its first command started (`engine::cancel`): a handle on the
/// cancellation kept by the front end's signal thread would otherwise keep it to the exit,
/// and a normal exit would then not tell it so.
#[test]
fn a_run_that_ran_a_command_ends_with_its_reaper_gone() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let kept = engine.cancel_handle();
    let command = engine::task::CommandAction {
        argv: vec!["sh".into(), "-c".into(), "echo x > out.txt".into()],
        depfile: None,
        remote: false,
    };
    let graph = TaskGraph::new(vec![spec(Arc::new(command), &["out.txt"])]).unwrap();
    let summary = engine
        .run(&graph, &[TaskId::new("task:t")], &Collect::default())
        .unwrap();
    assert_eq!(summary.failed, 0, "{:?}", summary.failures);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.txt")).unwrap(),
        "x\n"
    );
    assert!(!kept.has_reaper());
}
