//! Shared helpers for the integration tests: fixture repositories in temporary directories,
//! running the real `xtask` binary, parsing its JSON events, and snapshots of a tree.
//!
//! Declared once by the integration binary (`tests/main.rs`); helpers kept for tests that come
//! and go are allowed to be unused for a while, hence the `dead_code` allowance.

#![allow(dead_code)]

pub mod remote;
pub mod serve;
pub mod watching;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use tempfile::TempDir;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_xtask");

/// Environment variables the tests set on purpose; removed from every child by default so the
/// developer's shell (or a CI runner: `CI`, `GITHUB_ACTIONS` change how task output is laid
/// out) cannot change a test's outcome.
pub const TEST_VARIABLES: [&str; 10] = [
    "XB_TEST_FOO",
    "XB_TEST_OTHER",
    "XBUNDLE_CACHE_DIR",
    "XBUNDLE_REMOTE_CACHE",
    "XBUNDLE_REMOTE_CACHE_TOKEN",
    "XBUNDLE_REMOTE_CACHE_USER",
    "XBUNDLE_REMOTE_CACHE_PASSWORD",
    "XBUNDLE_REMOTE_CACHE_HMAC_KEY",
    "CI",
    "GITHUB_ACTIONS",
];

/// A fixture repository in a temporary directory (removed on drop): the directory itself, or
/// its `repo/` subdirectory for [`Repo::in_sandbox`] (beside which tests keep canary trees).
pub struct Repo {
    dir: TempDir,
    root: PathBuf,
}

impl Repo {
    /// A repository holding `bundle_toml` and the given `(relative path, contents)` files.
    pub fn new(bundle_toml: &str, files: &[(&str, &str)]) -> Repo {
        let repo = Repo::empty();
        repo.write("bundle.toml", bundle_toml);
        for (path, contents) in files {
            repo.write(path, contents);
        }
        repo
    }

    /// An empty temporary directory.
    pub fn empty() -> Repo {
        let dir = tempfile::Builder::new()
            .prefix("xbundle-test-")
            .tempdir()
            .expect("create a temporary directory");
        let root = dir.path().to_path_buf();
        Repo { dir, root }
    }

    /// A repository at `<tmp>/repo`, holding `bundle_toml` and `files`; [`Repo::sandbox`] is
    /// `<tmp>`, where destructive tests plant canary trees beside the repository.
    pub fn in_sandbox(bundle_toml: &str, files: &[(&str, &str)]) -> Repo {
        let dir = tempfile::Builder::new()
            .prefix("xbundle-sandbox-")
            .tempdir()
            .expect("create a temporary directory");
        let root = dir.path().join("repo");
        fs::create_dir(&root).expect("create repo/");
        let repo = Repo { dir, root };
        repo.write("bundle.toml", bundle_toml);
        for (path, contents) in files {
            repo.write(path, contents);
        }
        repo
    }

    /// The temporary directory holding the repository (the repository itself unless made by
    /// [`Repo::in_sandbox`]).
    pub fn sandbox(&self) -> &Path {
        self.dir.path()
    }

    /// A copy of the static fixture `xtask/tests/fixtures/<name>`.
    pub fn fixture(name: &str) -> Repo {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join("fixtures")
            .join(name);
        assert!(source.is_dir(), "missing fixture {}", source.display());
        let repo = Repo::empty();
        copy_tree(&source, repo.path());
        repo
    }

    /// A new repository with the same files as this one, without its `.xbundle` state.
    pub fn copy_without_state(&self) -> Repo {
        let repo = Repo::empty();
        copy_tree(self.path(), repo.path());
        repo
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn join(&self, relative: &str) -> PathBuf {
        self.path().join(relative)
    }

    /// Writes a file, creating its directory.
    pub fn write(&self, relative: &str, contents: impl AsRef<[u8]>) {
        let path = self.join(relative);
        fs::create_dir_all(path.parent().expect("a file has a parent")).expect("create dir");
        fs::write(&path, contents).unwrap_or_else(|err| panic!("write {relative}: {err}"));
    }

    pub fn read(&self, relative: &str) -> String {
        fs::read_to_string(self.join(relative))
            .unwrap_or_else(|err| panic!("read {relative}: {err}"))
    }

    pub fn read_bytes(&self, relative: &str) -> Vec<u8> {
        fs::read(self.join(relative)).unwrap_or_else(|err| panic!("read {relative}: {err}"))
    }

    pub fn exists(&self, relative: &str) -> bool {
        self.join(relative).exists()
    }

    pub fn remove(&self, relative: &str) {
        fs::remove_file(self.join(relative))
            .unwrap_or_else(|err| panic!("remove {relative}: {err}"));
    }

    /// The binary with `--root` set, run from the repository, with a controlled environment.
    /// Callers add the global flags and the command.
    pub fn command(&self) -> Command {
        let mut command = Command::new(BIN);
        command
            .current_dir(self.path())
            .arg("--root")
            .arg(self.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        for name in TEST_VARIABLES {
            command.env_remove(name);
        }
        command
    }

    /// Runs with `--message-format json` and parses every stdout line as an event.
    pub fn json(&self, args: &[&str]) -> Run {
        self.json_env(args, &[])
    }

    /// Like [`Repo::json`] with extra environment variables.
    pub fn json_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = self.command();
        command.args(["--message-format", "json"]).args(args);
        for (name, value) in env {
            command.env(name, value);
        }
        Run::parse_json(args, command.output().expect("run xtask"))
    }

    /// Runs with human output (nothing is parsed).
    pub fn human(&self, args: &[&str]) -> Run {
        self.human_env(args, &[])
    }

    pub fn human_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = self.command();
        command.args(args);
        for (name, value) in env {
            command.env(name, value);
        }
        Run::new(args, command.output().expect("run xtask"), Vec::new())
    }

    /// Every file under the repository except the `.xbundle` state directory.
    pub fn snapshot(&self) -> Snapshot {
        let mut files = BTreeMap::new();
        collect(self.path(), self.path(), &mut files);
        Snapshot(files)
    }

    /// Every file under `.xbundle/<relative>` (recursively), as root-relative paths.
    pub fn state_files(&self, relative: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk_files(&self.join(".xbundle").join(relative), &mut out);
        out.sort();
        out
    }

    /// The CAS blob holding exactly `contents` (there must be one).
    pub fn blob_with(&self, contents: &[u8]) -> PathBuf {
        let found: Vec<PathBuf> = self
            .state_files("cache/cas")
            .into_iter()
            .filter(|path| fs::read(path).is_ok_and(|bytes| bytes == contents))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "exactly one blob holds these bytes: {found:?}"
        );
        found.into_iter().next().expect("one")
    }

    /// Where the action cache's pack holds the entry of a key (hex): see [`packed_entry`].
    pub fn packed_entry(&self, key: &str) -> Option<PackedEntry> {
        packed_entry(&self.join(".xbundle/cache"), key)
    }
}

/// An entry in the action cache's pack, where its index's last line for the key puts it.
#[derive(Clone, Debug)]
pub struct PackedEntry {
    pub pack: PathBuf,
    pub number: u32,
    pub offset: u64,
    pub len: usize,
}

impl PackedEntry {
    /// The entry's bytes: its header line, then its JSON body.
    pub fn text(&self) -> String {
        let bytes = fs::read(&self.pack).expect("read the pack");
        let start = self.offset as usize;
        String::from_utf8(bytes[start..start + self.len].to_vec()).expect("UTF-8 entry")
    }
}

/// The entry of `key` (hex) in the action cache at `cache`, as its index (`ac/index`: lines of
/// `<key> <pack> <offset> <length> <used>`, 64, 8, 16, 8 and 8 hex digits) last names it;
/// `None` when no line names it, or the last one forgets it (length 0).
pub fn packed_entry(cache: &Path, key: &str) -> Option<PackedEntry> {
    let index = fs::read_to_string(cache.join("ac/index")).ok()?;
    let line = index
        .lines()
        .rfind(|line| line.len() == 108 && line.starts_with(key))?;
    let hex = |range: std::ops::Range<usize>| u64::from_str_radix(&line[range], 16).unwrap();
    let (number, offset, len) = (hex(65..73) as u32, hex(74..90), hex(91..99) as usize);
    (len > 0).then(|| PackedEntry {
        pack: cache.join(format!("ac/pack-{number}")),
        number,
        offset,
        len,
    })
}

/// Appends a line for `key` (hex) to the index of the action cache at `cache`, as another build
/// sharing it would: the entry at `offset` and `len` in pack `number` (`len` 0: the entry at
/// that place forgotten).
pub fn append_index_line(cache: &Path, key: &str, number: u32, offset: u64, len: usize) {
    use std::io::Write;
    let mut index = fs::OpenOptions::new()
        .append(true)
        .open(cache.join("ac/index"))
        .expect("open the index");
    writeln!(index, "{key} {number:08x} {offset:016x} {len:08x} 00000000").expect("append");
}

/// Copies every file and directory below `from` to `to`, skipping `.xbundle`.
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create dir");
    for entry in fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        if entry.file_name() == ".xbundle" {
            continue;
        }
        let target = to.join(entry.file_name());
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

fn walk_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let entry = entry.expect("dir entry");
        if entry.file_type().expect("file type").is_dir() {
            walk_files(&entry.path(), out);
        } else {
            out.push(entry.path());
        }
    }
}

fn collect(root: &Path, dir: &Path, files: &mut BTreeMap<String, FileState>) {
    for entry in fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("dir entry");
        let path = entry.path();
        let relative = path
            .strip_prefix(root)
            .expect("below root")
            .to_str()
            .expect("UTF-8 path")
            .to_string();
        if relative == ".xbundle" {
            continue;
        }
        let metadata = fs::symlink_metadata(&path).expect("metadata");
        if metadata.is_dir() {
            collect(root, &path, files);
        } else {
            files.insert(
                relative,
                FileState {
                    bytes: fs::read(&path).expect("read file"),
                    executable: metadata.permissions().mode() & 0o111 != 0,
                },
            );
        }
    }
}

/// A file's content and executable bit (other mode bits depend on the umask).
#[derive(Clone, PartialEq, Eq)]
pub struct FileState {
    pub bytes: Vec<u8>,
    pub executable: bool,
}

/// Relative path -> file state, for every file of a tree outside `.xbundle`.
#[derive(Clone, PartialEq, Eq)]
pub struct Snapshot(pub BTreeMap<String, FileState>);

impl Snapshot {
    pub fn paths(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }

    /// A readable list of differences, empty when the trees are equal.
    pub fn diff(&self, expected: &Snapshot) -> String {
        let mut text = String::new();
        for (path, want) in &expected.0 {
            match self.0.get(path) {
                None => {
                    let _ = writeln!(text, "  missing: {path}");
                }
                Some(got) if got != want => {
                    let _ = writeln!(
                        text,
                        "  differs: {path}: got {} bytes{} {:?}, expected {} bytes{} {:?}",
                        got.bytes.len(),
                        if got.executable { " (x)" } else { "" },
                        preview(&got.bytes),
                        want.bytes.len(),
                        if want.executable { " (x)" } else { "" },
                        preview(&want.bytes),
                    );
                }
                Some(_) => {}
            }
        }
        for path in self.0.keys() {
            if !expected.0.contains_key(path) {
                let _ = writeln!(text, "  unexpected: {path}");
            }
        }
        text
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(60)]).into_owned();
    if bytes.len() > 60 {
        format!("{text}…")
    } else {
        text
    }
}

/// Panics with a readable diff unless `actual` equals `expected`.
#[track_caller]
pub fn assert_same_tree(actual: &Snapshot, expected: &Snapshot, context: &str) {
    let diff = actual.diff(expected);
    assert!(diff.is_empty(), "{context}: trees differ:\n{diff}");
}

/// One finished run of the binary.
pub struct Run {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// JSON events, in order (empty for human output).
    pub events: Vec<Value>,
}

impl Run {
    fn new(args: &[&str], output: std::process::Output, events: Vec<Value>) -> Run {
        Run {
            args: args.iter().map(|s| s.to_string()).collect(),
            code: output.status.code().expect("exited, not killed"),
            stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
            events,
        }
    }

    /// Parses stdout as JSON lines; every line must be one JSON object with an `event`.
    pub fn parse_json(args: &[&str], output: std::process::Output) -> Run {
        let mut run = Run::new(args, output, Vec::new());
        let mut events = Vec::new();
        for line in run.stdout.lines() {
            let event: Value = serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("stdout line is not JSON ({err}): {line}\n{run}"));
            assert!(
                event.get("event").and_then(Value::as_str).is_some(),
                "JSON line without an `event`: {line}"
            );
            events.push(event);
        }
        run.events = events;
        run
    }

    /// Panics (showing the whole run) unless the exit code is `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "unexpected exit code\n{self}");
        self
    }

    /// Every event of a kind (`task-finished`, `warning`, …).
    pub fn events(&self, kind: &str) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|event| event["event"] == kind)
            .collect()
    }

    /// The one `task-finished` event of `id` (e.g. `task:gen`).
    #[track_caller]
    pub fn task(&self, id: &str) -> &Value {
        let found: Vec<&Value> = self
            .events("task-finished")
            .into_iter()
            .filter(|event| event["id"] == id)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one task-finished event for {id}\n{self}"
        );
        found[0]
    }

    /// `status` of the task-finished event of `id`.
    #[track_caller]
    pub fn status(&self, id: &str) -> &str {
        self.task(id)["status"]
            .as_str()
            .expect("status is a string")
    }

    /// `restored` of the task-finished event of `id`.
    #[track_caller]
    pub fn restored(&self, id: &str) -> u64 {
        self.task(id)["restored"]
            .as_u64()
            .expect("restored is a number")
    }

    /// `reasons` of the task-finished event of `id`.
    #[track_caller]
    pub fn reasons(&self, id: &str) -> Vec<String> {
        strings(&self.task(id)["reasons"])
    }

    /// Task id -> status, for every task-finished event.
    pub fn statuses(&self) -> BTreeMap<String, String> {
        self.events("task-finished")
            .into_iter()
            .map(|event| {
                (
                    event["id"].as_str().expect("id").to_string(),
                    event["status"].as_str().expect("status").to_string(),
                )
            })
            .collect()
    }

    /// Ids of the tasks that emitted `task-started`.
    pub fn started(&self) -> Vec<String> {
        self.events("task-started")
            .into_iter()
            .map(|event| event["id"].as_str().expect("id").to_string())
            .collect()
    }

    /// The one `build-finished` event.
    #[track_caller]
    pub fn finished(&self) -> &Value {
        let found = self.events("build-finished");
        assert_eq!(found.len(), 1, "expected one build-finished event\n{self}");
        found[0]
    }

    /// `(ran, cached, failed, skipped)` from `build-finished`.
    #[track_caller]
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        let finished = self.finished();
        let count = |name: &str| finished[name].as_u64().expect("a count");
        (
            count("ran"),
            count("cached"),
            count("failed"),
            count("skipped"),
        )
    }

    /// Messages of every `warning` event, with the task id prefixed when there is one.
    pub fn warnings(&self) -> Vec<String> {
        self.events("warning")
            .into_iter()
            .map(|event| match event["id"].as_str() {
                Some(id) => format!("{id}: {}", event["message"].as_str().unwrap_or("")),
                None => event["message"].as_str().unwrap_or("").to_string(),
            })
            .collect()
    }

    /// The one `diagnostic` event.
    #[track_caller]
    pub fn diagnostic(&self) -> &Value {
        let found = self.events("diagnostic");
        assert_eq!(found.len(), 1, "expected one diagnostic event\n{self}");
        found[0]
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--- xtask {} (exit {})\n--- stdout:\n{}--- stderr:\n{}---",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
}

/// A JSON array of strings as a vector.
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|item| item.as_str().expect("a string").to_string())
        .collect()
}

/// A map literal for statuses: `statuses(&[("task:a", "ran")])`.
pub fn statuses(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(id, status)| (id.to_string(), status.to_string()))
        .collect()
}

/// xorshift64*: a small seeded generator, so random schedules are reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The seed of a randomized test: `XBUNDLE_TEST_SEED` when set (to replay a failure), else
/// `default`.
pub fn seed(default: u64) -> u64 {
    match std::env::var("XBUNDLE_TEST_SEED") {
        Ok(text) => text.parse().expect("XBUNDLE_TEST_SEED is a number"),
        Err(_) => default,
    }
}

/// What a canary snapshot records of one path: everything a stray write or delete would change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    File { bytes: Vec<u8>, mode: u32 },
    Dir { mode: u32 },
    Link { target: PathBuf },
}

/// Every path below `dir` (links not followed), with contents, modes and link targets.
pub fn full_snapshot(dir: &Path) -> BTreeMap<PathBuf, Node> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Node>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let relative = path.strip_prefix(root).expect("below root").to_path_buf();
            let metadata = fs::symlink_metadata(&path).expect("lstat");
            let mode = metadata.permissions().mode() & 0o7777;
            if metadata.file_type().is_symlink() {
                let target = fs::read_link(&path).expect("read link");
                out.insert(relative, Node::Link { target });
            } else if metadata.is_dir() {
                out.insert(relative, Node::Dir { mode });
                walk(root, &path, out);
            } else {
                let bytes = fs::read(&path).expect("read file");
                out.insert(relative, Node::File { bytes, mode });
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A tree of files, an executable, a subdirectory and a link, planted where a test must never
/// write or delete; [`Canary::assert_intact`] compares it byte for byte, mode for mode.
pub struct Canary {
    pub dir: PathBuf,
    before: BTreeMap<PathBuf, Node>,
}

impl Canary {
    /// Plants the canary tree in `dir` (created), plus `extra` files.
    pub fn plant(dir: &Path, extra: &[(&str, &str)]) -> Canary {
        let files = [
            ("precious.txt", "do not touch\n"),
            ("build/a.txt", "canary a\n"),
            ("build/deep/b.txt", "canary b\n"),
            ("x", "canary x\n"),
        ];
        for (path, contents) in files.iter().chain(extra) {
            let path = dir.join(path);
            fs::create_dir_all(path.parent().expect("parent")).expect("create dir");
            fs::write(&path, contents).expect("write canary");
        }
        let tool = dir.join("tool.sh");
        fs::write(&tool, "#!/bin/sh\necho canary\n").expect("write canary");
        fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).expect("chmod");
        std::os::unix::fs::symlink("precious.txt", dir.join("link")).expect("symlink");
        Canary {
            dir: dir.to_path_buf(),
            before: full_snapshot(dir),
        }
    }

    #[track_caller]
    pub fn assert_intact(&self, context: &str) {
        self.assert_intact_except(&[], context);
    }

    /// [`Canary::assert_intact`], ignoring the top-level entries named in `ignored` (files a
    /// test allows to appear, such as a cache's lock file).
    #[track_caller]
    pub fn assert_intact_except(&self, ignored: &[&str], context: &str) {
        let mut after = full_snapshot(&self.dir);
        after.retain(|path, _| !ignored.iter().any(|name| path == Path::new(name)));
        if after != self.before {
            let mut diff = String::new();
            for (path, node) in &self.before {
                match after.get(path) {
                    None => {
                        let _ = writeln!(diff, "  removed: {}", path.display());
                    }
                    Some(now) if now != node => {
                        let _ =
                            writeln!(diff, "  changed: {}: {node:?} -> {now:?}", path.display());
                    }
                    Some(_) => {}
                }
            }
            for path in after.keys().filter(|path| !self.before.contains_key(*path)) {
                let _ = writeln!(diff, "  added: {}", path.display());
            }
            panic!(
                "{context}: the canary tree {} changed:\n{diff}",
                self.dir.display()
            );
        }
    }
}

/// SHA-256 of `bytes` in hex (through coreutils' `sha256sum`, so tests need no hashing crate).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("write to sha256sum");
    let output = child.wait_with_output().expect("sha256sum");
    String::from_utf8(output.stdout).expect("hex")[..64].to_string()
}

/// One output file of a forged action-cache entry.
pub struct ForgedOutput<'a> {
    pub path: &'a str,
    pub executable: bool,
    pub contents: &'a [u8],
}

/// Writes an action-cache entry under `key` in the cache at `cache`, as an attacker with write
/// access to a shared cache would: blobs stored under their real digests, the entry's checksum
/// recomputed, so only the engine's checks of what the entry says stand between it and the tree.
pub fn forge_entry(cache: &Path, key: &str, task: &str, outputs: &[ForgedOutput<'_>]) {
    let mut files = Vec::new();
    for output in outputs {
        let digest = sha256_hex(output.contents);
        let blob = cache.join("cas").join(&digest);
        fs::create_dir_all(blob.parent().expect("cas/")).expect("create cas/");
        fs::write(&blob, output.contents).expect("write blob");
        files.push(serde_json::json!({
            "path": output.path,
            "executable": output.executable,
            "size": output.contents.len(),
            "digest": digest,
        }));
    }
    let body = serde_json::json!({
        "task": task,
        "outputs": files,
        "stdout": null,
        "stderr": null,
        "duration_ms": 1,
        "tools": {},
    })
    .to_string();
    let checksum = sha256_hex(format!("{key}\n{body}").as_bytes());
    let entry = cache.join("ac").join(key);
    fs::create_dir_all(entry.parent().expect("ac/")).expect("create ac/");
    // A file of its own: read before the pack's entry for the key, if there is one.
    fs::write(entry, format!("xbundle-ac-v2 {key} {checksum}\n{body}")).expect("write entry");
}

/// Whether `program` is on PATH; if not, a failure naming the Debian `package` under
/// `XBUNDLE_REQUIRE_TOOLS=1` (as CI runs), else a note that the test skipped.
#[allow(dead_code)]
pub fn have_tool(program: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            let candidate = dir.join(program);
            std::fs::metadata(&candidate).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
    });
    if !found {
        assert!(
            std::env::var("XBUNDLE_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "`{program}` is required for this test (XBUNDLE_REQUIRE_TOOLS=1): install the Debian package {package}"
        );
        eprintln!("skipped: `{program}` is not installed (Debian package {package})");
    }
    found
}

/// Runs `command` (the binary under test, with its stdout unused) through `xtask bench
/// __measure`, which forks it from its own small image, and returns its exit code and its peak
/// resident memory in KiB. Spawned from this test process instead, the child's peak would count
/// this whole process's memory (all the tests of the binary, running side by side): Linux records
/// the peak of the image a process replaces at `exec`, and std's spawn is a `vfork`.
pub fn run_measured(command: &Command, stderr: Stdio) -> (i32, i64) {
    let mut measure = Command::new(BIN);
    measure
        .args(["bench", "__measure"])
        .arg(command.get_program())
        .args(command.get_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    if let Some(dir) = command.get_current_dir() {
        measure.current_dir(dir);
    }
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => measure.env(name, value),
            None => measure.env_remove(name),
        };
    }
    let output = measure.output().expect("run `xtask bench __measure`");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = stdout
        .rsplit_once("@@xbundle-bench-measured ")
        .unwrap_or_else(|| panic!("no report from `bench __measure`: {stdout}"))
        .1;
    // `<wait status> <ms> <CPU ms> <peak RSS KiB> <floor KiB>`
    let fields: Vec<&str> = report.split_whitespace().collect();
    let number = |index: usize| -> i64 {
        let field = fields.get(index).copied().unwrap_or_default();
        field
            .parse()
            .unwrap_or_else(|_| panic!("field {index} of the report {report:?}"))
    };
    let (status, peak_kib) = (number(0) as i32, number(3));
    assert!(libc::WIFEXITED(status), "exited (wait status {status})");
    (libc::WEXITSTATUS(status), peak_kib)
}

/// A directory with a `cargo` that runs the binary under test for `cargo xtask …` and the real
/// cargo for anything else (xbundle's own Rust builds): put first on PATH, `cargo xtask` in a
/// README line or a git hook reaches the binary under test.
pub fn cargo_shim(sandbox: &Path) -> PathBuf {
    let dir = sandbox.join("shim");
    std::fs::create_dir_all(&dir).unwrap();
    // The real cargo by its absolute path: `cargo` looked up on a PATH that starts with this
    // directory would be the shim itself, running itself forever.
    let real = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|dir| dir.join("cargo"))
                .find(|candidate| candidate.is_file())
        })
        .expect("cargo: neither CARGO (set by `cargo test`) nor a cargo on PATH");
    assert!(
        !real.starts_with(&dir),
        "the real cargo must not be the shim ({})",
        real.display()
    );
    let real = real.display();
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = xtask ]; then shift; exec '{}' \"$@\"; fi\nexec '{real}' \"$@\"\n",
        BIN
    );
    let shim = dir.join("cargo");
    std::fs::write(&shim, script).unwrap();
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// One task concatenating the regular files `src/*.txt` (in name order) into `out/all.txt`:
/// its input directory's listing is what the listings tests watch.
pub const GLOBBED: &str = r#"
[tasks.all]
run = 'mkdir -p out && for f in src/*.txt; do if [ -f "$f" ]; then cat "$f"; fi; done > out/all.txt'
inputs = ["src/*.txt"]
outputs = ["out/all.txt"]
"#;
