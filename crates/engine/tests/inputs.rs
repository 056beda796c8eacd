//! A task's inputs as its key sees them: every file read, whatever the page cache holds, each
//! digest in its own place.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use engine::events::Silent;
use engine::{Action, ActionContext, ActionFailure, ActionOutput, Digest, TaskGraph, TaskSpec};

use crate::discovered_actions::{engine, spec};

/// Writes `out.txt` in its working directory.
struct Touch;

impl Action for Touch {
    fn run(&self, context: &ActionContext<'_>) -> Result<ActionOutput, ActionFailure> {
        std::fs::write(context.cwd.join("out.txt"), "out\n").unwrap();
        Ok(ActionOutput::default())
    }
}

/// Drops the file's pages from the page cache where the file system can (written to the disk
/// first: dirty pages stay).
fn evict(path: &std::path::Path) {
    let file = std::fs::File::open(path).unwrap();
    file.sync_all().unwrap();
    // SAFETY: a valid descriptor; advice only.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

#[test]
fn inputs_read_ahead_keep_their_places_and_their_digests() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("pkg/src/deep")).unwrap();
    // More files to finish later than may wait at once (32): a third too large for a read that
    // does not wait, a third dropped from the page cache, a third in it; in two directories
    // below the task's working directory (`pkg`: the key names them from the root).
    let mut expected = BTreeMap::new();
    for i in 0..150 {
        let name = if i % 5 == 0 {
            format!("pkg/src/deep/f{i:03}.txt")
        } else {
            format!("pkg/src/f{i:03}.txt")
        };
        let bytes = match i % 3 {
            0 => format!("{i}\n").repeat(20_000).into_bytes(),
            _ => format!("file {i}\n").repeat(i).into_bytes(),
        };
        std::fs::write(root.join(&name), &bytes).unwrap();
        expected.insert(name, Digest::of_bytes(&bytes));
    }
    for (i, name) in expected.keys().enumerate() {
        if i % 3 == 1 {
            evict(&root.join(name));
        }
    }
    let engine = engine(root);
    let spec = TaskSpec {
        cwd: "pkg".into(),
        inputs: vec!["src/**".into()],
        ..spec(Arc::new(Touch), &["out.txt"])
    };
    let id = spec.id.clone();
    let graph = TaskGraph::new(vec![spec]).unwrap();
    // The first run: no stat cache, each file opened and then stat'ed.
    engine
        .run(&graph, std::slice::from_ref(&id), &Silent)
        .unwrap();
    let entry = engine.ledger().get(&id).expect("the run is in the ledger");
    assert_eq!(entry.components.inputs, expected);
    // The next: the walk stats each file and only the changed ones are read, the same way.
    let names: Vec<String> = expected.keys().cloned().collect();
    for (i, name) in names.iter().enumerate() {
        if i % 4 == 0 {
            let bytes = match i % 3 {
                0 => format!("{i} again\n").repeat(9_000).into_bytes(),
                _ => format!("again {i}\n").into_bytes(),
            };
            std::fs::write(root.join(name), &bytes).unwrap();
            expected.insert(name.clone(), Digest::of_bytes(&bytes));
        }
    }
    for (i, name) in names.iter().enumerate() {
        if i % 3 != 2 {
            evict(&root.join(name));
        }
    }
    engine
        .run(&graph, std::slice::from_ref(&id), &Silent)
        .unwrap();
    let entry = engine.ledger().get(&id).expect("the run is in the ledger");
    assert_eq!(entry.components.inputs, expected);
}
