//! The engine's fast paths keep their promises (issue 12, item 6; the speed itself is measured by
//! `cargo xtask bench`, never asserted here): a no-op run writes nothing at all, and a stat
//! cache in an older format is read as absent, never trusted.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::Repo;

const TWO_TASKS: &str = r#"
[tasks.a]
run = "mkdir -p out && cat src/a.txt > out/a.txt"
inputs = ["src/a.txt"]
outputs = ["out/a.txt"]

[tasks.b]
run = "cat out/a.txt src/b.txt > out/b.txt"
inputs = ["out/a.txt", "src/b.txt"]
outputs = ["out/b.txt"]
deps = ["a"]
"#;

/// What a write changes: inode, size, mtime (s, ns), ctime (s, ns), mode.
type Stamp = (u64, u64, i64, i64, i64, i64, u32);

/// Every path below `dir` with its [`Stamp`].
fn stamps(dir: &Path) -> BTreeMap<PathBuf, Stamp> {
    let mut out = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap().flatten() {
            let path = entry.path();
            let m = std::fs::symlink_metadata(&path).unwrap();
            if m.is_dir() {
                pending.push(path.clone());
            }
            out.insert(
                path.strip_prefix(dir).unwrap().to_path_buf(),
                (
                    m.ino(),
                    m.size(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime(),
                    m.ctime_nsec(),
                    m.mode(),
                ),
            );
        }
    }
    out
}

#[test]
fn a_no_op_run_writes_nothing_at_all() {
    let repo = Repo::new(TWO_TASKS, &[("src/a.txt", "one\n"), ("src/b.txt", "two\n")]);
    let built = repo.json(&["task"]);
    built.assert_code(0);
    assert_eq!(built.counts(), (2, 0, 0, 0), "{built}");
    // Past the file system's timestamp tick, then the first no-op settles what the build wrote
    // (on a coarse clock it re-hashes the outputs and saves the stat cache once).
    std::thread::sleep(std::time::Duration::from_millis(50));
    let settle = repo.json(&["task"]);
    assert_eq!(settle.counts(), (0, 2, 0, 0), "{settle}");
    let before = stamps(repo.path());
    for round in 0..2 {
        let no_op = repo.json(&["task"]);
        assert_eq!(no_op.counts(), (0, 2, 0, 0), "{no_op}");
        let after = stamps(repo.path());
        let changed: Vec<_> = before
            .keys()
            .chain(after.keys())
            .filter(|path| before.get(*path) != after.get(*path))
            .collect();
        assert!(
            changed.is_empty(),
            "no-op {round} created, changed or replaced {changed:?}"
        );
    }
}

/// LEB128, as postcard writes integers.
fn varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

#[test]
fn a_stat_cache_in_the_older_format_is_read_as_absent() {
    let repo = Repo::new(TWO_TASKS, &[("src/a.txt", "one\n"), ("src/b.txt", "two\n")]);
    repo.json(&["task"]).assert_code(0);
    std::thread::sleep(std::time::Duration::from_millis(50));
    repo.json(&["task"]).assert_code(0);
    // Format 2 (postcard) claiming src/a.txt, with its true stat, holds other content: were it
    // trusted, task a's key would change and it would run again.
    let path = repo.join("src/a.txt");
    let m = std::fs::metadata(&path).unwrap();
    let mut bytes = Vec::new();
    varint(&mut bytes, 2); // format
    varint(&mut bytes, 1); // one entry
    varint(&mut bytes, "src/a.txt".len() as u64);
    bytes.extend_from_slice(b"src/a.txt");
    varint(&mut bytes, m.size());
    varint(
        &mut bytes,
        zigzag(m.mtime() * 1_000_000_000 + m.mtime_nsec()),
    );
    varint(
        &mut bytes,
        zigzag(m.ctime() * 1_000_000_000 + m.ctime_nsec()),
    );
    varint(&mut bytes, m.ino());
    bytes.push(u8::from(m.mode() & 0o111 != 0));
    bytes.extend_from_slice(&[0x5a; 32]); // not the digest of "one\n"
    bytes.push(1); // trusted
    let cache = repo.join(".xbundle/state/stat-cache");
    assert!(
        cache.is_file(),
        "the stat cache is where this test expects it"
    );
    std::fs::write(&cache, &bytes).unwrap();
    let run = repo.json(&["task"]);
    run.assert_code(0);
    assert_eq!(
        run.counts(),
        (0, 2, 0, 0),
        "the older stat cache was trusted\n{run}"
    );
    assert_eq!(repo.read("out/b.txt"), "one\ntwo\n");
}
