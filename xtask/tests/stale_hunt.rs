//! The stale-output hunt: random edit sequences over a 24-task DAG, checked against a model.
//!
//! Each sequence builds a fresh fixture repository, runs the real `xtask` binary, then applies
//! random steps: edit, add, delete and touch-without-change input files, write files no glob
//! matches, change env values, change task definitions, edit shared headers, and add or remove
//! a task's `#include` of one. Some tasks have **discovered inputs**: they read the shared
//! headers their sources `#include` (no glob matches those) and write a depfile naming them, so
//! a header is edited in or out of the discovered set, added to it and removed from it. After
//! every step it checks:
//!
//! - **correctness**: every output equals what the model computes, and equals a clean build of a
//!   copy of the tree (after every step of the first sequences, then at the end of every fifth);
//! - **minimality**: the tasks that ran are exactly those whose key (definition, inputs, env
//!   values, dependency outputs) has never been seen before, or whose discovered headers differ
//!   from those of the last run under that key (one cached result per key); every other task is
//!   `cached`;
//! - **early cutoff**: a dependency rebuilt to identical output does not rerun its dependents
//!   (implied by minimality; the test also requires that this situation occurred many times).
//!
//! The 200 sequences are dealt to four tests (`…_1_of_4` to `…_4_of_4`), which run side by side.
//! Reproduce a failure with `STALE_HUNT_SEED=<seed printed> STALE_HUNT_SEQUENCES=1` (the one
//! sequence runs in `…_1_of_4`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TASKS: usize = 24;
const STEPS: usize = 4;
const WORDS: [&str; 6] = ["alpha", "beta", "gamma", "delta", "alpha", "omega"];
const VARS: [&str; 2] = ["HUNT_A", "HUNT_B"];
/// Shared headers (`shared/hN.txt`), read by tasks with depfiles.
const HEADERS: usize = 4;

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Concatenates inputs, dependency outputs, a salt and its env value.
    Concat,
    /// Counts input lines: many edits give the same output (early cutoff).
    Count,
    /// Sorted unique lines of inputs and dependency outputs.
    Unique,
}

#[derive(Clone, Debug)]
struct Task {
    kind: Kind,
    deps: Vec<usize>,
    env: Option<&'static str>,
    salt: u32,
    /// File name -> content.
    inputs: BTreeMap<String, String>,
    /// Reads the headers its sources `#include` and reports them in a depfile (Concat only).
    depfile: bool,
}

fn name(index: usize) -> String {
    format!("t{index:02}")
}

impl Task {
    fn command(&self) -> String {
        let deps: String = self
            .deps
            .iter()
            .map(|d| format!(" ../{}/out/result.txt", name(*d)))
            .collect();
        let env = self.env.map_or(String::new(), |var| format!("${var}"));
        match self.kind {
            // Builtins only (one `cat`, like the other kinds): the headers named by
            // `#include` lines, in order, are read after the sources and dependency outputs.
            Kind::Concat if self.depfile => format!(
                "mkdir -p out && hs= && for f in src/*.txt; do while IFS= read -r l; do case \"$l\" in '#include '*) hs=\"$hs ../../shared/${{l#'#include '}}.txt\";; esac; done < \"$f\"; done && \
                 {{ cat src/*.txt{deps} $hs; printf 'salt:%s env:%s\\n' {} \"{env}\"; }} > out/result.txt && echo \"out/result.txt:$hs\" > out/deps.d",
                self.salt
            ),
            Kind::Concat => format!(
                "mkdir -p out && {{ cat src/*.txt{deps}; printf 'salt:%s env:%s\\n' {} \"{env}\"; }} > out/result.txt",
                self.salt
            ),
            Kind::Count => format!(
                "mkdir -p out && cat src/*.txt | wc -l | tr -d ' ' > out/result.txt # v{}",
                self.salt
            ),
            Kind::Unique => format!(
                "mkdir -p out && cat src/*.txt{deps} | LC_ALL=C sort -u > out/result.txt # v{}",
                self.salt
            ),
        }
    }

    fn toml(&self, index: usize) -> String {
        let deps: Vec<String> = self
            .deps
            .iter()
            .map(|d| format!("{:?}", name(*d)))
            .collect();
        let env: Vec<String> = self.env.iter().map(|v| format!("{v:?}")).collect();
        let outputs = if self.depfile {
            "outputs = [\"out/result.txt\", \"out/deps.d\"]\ndepfile = \"out/deps.d\""
        } else {
            "outputs = [\"out/result.txt\"]"
        };
        format!(
            "[tasks.{}]\ncwd = \"pkg/{}\"\nrun = {:?}\ninputs = [\"src/*.txt\"]\n{outputs}\ndeps = [{}]\nenv = [{}]\n\n",
            name(index),
            name(index),
            self.command(),
            deps.join(", "),
            env.join(", ")
        )
    }
}

#[derive(Clone, Debug)]
struct Model {
    tasks: Vec<Task>,
    env: BTreeMap<&'static str, Option<String>>,
    /// `shared/hN.txt` -> content.
    headers: BTreeMap<String, String>,
    /// Per task, every key tuple built so far (what the cache holds), with the discovered
    /// headers (names and contents) of the last run under that key.
    seen: Vec<HashMap<String, String>>,
}

impl Model {
    fn new(rng: &mut Rng) -> Model {
        let mut tasks = Vec::new();
        for index in 0..TASKS {
            let kind = match rng.below(3) {
                0 => Kind::Concat,
                1 => Kind::Count,
                _ => Kind::Unique,
            };
            let mut deps = BTreeSet::new();
            if index > 0 {
                for _ in 0..rng.below(3) {
                    deps.insert(rng.below(index));
                }
            }
            let env = if kind == Kind::Concat && rng.chance(60) {
                Some(VARS[rng.below(2)])
            } else {
                None
            };
            let depfile = kind == Kind::Concat && rng.chance(50);
            let mut inputs = BTreeMap::new();
            for file in 0..1 + rng.below(3) {
                let mut content = random_content(rng);
                if depfile && rng.chance(70) {
                    content.push_str(&format!("#include h{}\n", rng.below(HEADERS)));
                }
                inputs.insert(format!("f{file}.txt"), content);
            }
            tasks.push(Task {
                kind,
                deps: deps.into_iter().collect(),
                env,
                salt: 0,
                inputs,
                depfile,
            });
        }
        Model {
            tasks,
            env: VARS.iter().map(|v| (*v, None)).collect(),
            headers: (0..HEADERS)
                .map(|h| (format!("h{h}"), random_content(rng)))
                .collect(),
            seen: vec![HashMap::new(); TASKS],
        }
    }

    fn bundle_toml(&self) -> String {
        let mut text = String::from("[workspace]\n\n");
        for (index, task) in self.tasks.iter().enumerate() {
            text.push_str(&task.toml(index));
        }
        text
    }

    /// Expected output of every task, the key tuple of each and its discovered headers.
    fn evaluate(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        let mut outputs: Vec<String> = Vec::new();
        // What dependents key on: the output files (result.txt, and the depfile's header list).
        let mut keyed_outputs: Vec<String> = Vec::new();
        let mut tuples = Vec::new();
        let mut discovered = Vec::new();
        for task in &self.tasks {
            let inputs: String = task.inputs.values().cloned().collect();
            let dep_outputs: String = task.deps.iter().map(|d| outputs[*d].clone()).collect();
            let env_value = task.env.and_then(|v| self.env[v].clone());
            // In order, with repeats (what the command reads); the depfile lists the same.
            let included: Vec<&str> = if task.depfile {
                inputs
                    .lines()
                    .filter_map(|line| line.strip_prefix("#include "))
                    .collect()
            } else {
                Vec::new()
            };
            let headers: String = included.iter().map(|h| self.headers[*h].clone()).collect();
            // What the engine records: each header once, with its content.
            let discovered_set: BTreeMap<&str, &String> =
                included.iter().map(|h| (*h, &self.headers[*h])).collect();
            let output = match task.kind {
                Kind::Concat => format!(
                    "{inputs}{dep_outputs}{headers}salt:{} env:{}\n",
                    task.salt,
                    env_value.clone().unwrap_or_default()
                ),
                Kind::Count => format!("{}\n", inputs.matches('\n').count()),
                Kind::Unique => {
                    let lines: BTreeSet<&str> = inputs.lines().chain(dep_outputs.lines()).collect();
                    lines.into_iter().map(|l| format!("{l}\n")).collect()
                }
            };
            tuples.push(format!(
                "{}|{:?}|{:?}|{:?}",
                task.command(),
                task.inputs,
                env_value,
                task.deps
                    .iter()
                    .map(|d| &keyed_outputs[*d])
                    .collect::<Vec<_>>()
            ));
            discovered.push(format!("{discovered_set:?}"));
            keyed_outputs.push(format!("{output}|{included:?}"));
            outputs.push(output);
        }
        (outputs, tuples, discovered)
    }
}

fn random_content(rng: &mut Rng) -> String {
    (0..1 + rng.below(3))
        .map(|_| format!("{}\n", WORDS[rng.below(WORDS.len())]))
        .collect()
}

fn write(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn materialize(model: &Model, root: &Path) {
    write(&root.join("bundle.toml"), &model.bundle_toml());
    for (header, content) in &model.headers {
        write(&root.join("shared").join(format!("{header}.txt")), content);
    }
    for (index, task) in model.tasks.iter().enumerate() {
        for (file, content) in &task.inputs {
            write(
                &root.join("pkg").join(name(index)).join("src").join(file),
                content,
            );
        }
    }
}

struct Outcome {
    ran: BTreeSet<usize>,
    cached: BTreeSet<usize>,
    warnings: Vec<String>,
}

fn build(root: &Path, env: &BTreeMap<&'static str, Option<String>>) -> Outcome {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .args(["--message-format", "json", "--root"])
        .arg(root)
        .args(["task", "-j", "2"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("XBUNDLE_FSYNC", "0");
    for (var, value) in env {
        if let Some(value) = value {
            command.env(var, value);
        }
    }
    let output = command.output().expect("xtask runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "build failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let mut outcome = Outcome {
        ran: BTreeSet::new(),
        cached: BTreeSet::new(),
        warnings: Vec::new(),
    };
    for line in stdout.lines() {
        let event: serde_json::Value = serde_json::from_str(line).expect("JSON lines");
        match event["event"].as_str() {
            Some("task-finished") => {
                let id = event["id"].as_str().unwrap();
                let index: usize = id.strip_prefix("task:t").unwrap().parse().unwrap();
                match event["status"].as_str() {
                    Some("ran") => outcome.ran.insert(index),
                    Some("cached") => outcome.cached.insert(index),
                    other => panic!("unexpected status {other:?} in {line}"),
                };
            }
            Some("warning") => outcome.warnings.push(line.to_string()),
            _ => {}
        }
    }
    outcome
}

fn read_outputs(root: &Path) -> Vec<String> {
    (0..TASKS)
        .map(|index| {
            fs::read_to_string(root.join("pkg").join(name(index)).join("out/result.txt"))
                .unwrap_or_else(|err| panic!("output of {} missing: {err}", name(index)))
        })
        .collect()
}

/// Applies one random edit to the model and the tree; returns a description.
fn edit(model: &mut Model, root: &Path, rng: &mut Rng) -> String {
    let mut index = rng.below(TASKS);
    let choice = rng.below(11);
    if choice == 10 {
        // Pick a task with a depfile, if there is one.
        let with_depfile: Vec<usize> = (0..TASKS).filter(|i| model.tasks[*i].depfile).collect();
        if !with_depfile.is_empty() {
            index = with_depfile[rng.below(with_depfile.len())];
        }
    }
    let dir = root.join("pkg").join(name(index)).join("src");
    let task = &mut model.tasks[index];
    match choice {
        0 | 1 => {
            let file = task
                .inputs
                .keys()
                .nth(rng.below(task.inputs.len()))
                .unwrap()
                .clone();
            let content = random_content(rng);
            write(&dir.join(&file), &content);
            task.inputs.insert(file.clone(), content);
            format!("edit {}/{file}", name(index))
        }
        2 => {
            let file = format!("f{}.txt", 3 + rng.below(4));
            let content = random_content(rng);
            write(&dir.join(&file), &content);
            task.inputs.insert(file.clone(), content);
            format!("add {}/{file}", name(index))
        }
        3 if task.inputs.len() > 1 => {
            let file = task
                .inputs
                .keys()
                .nth(rng.below(task.inputs.len()))
                .unwrap()
                .clone();
            fs::remove_file(dir.join(&file)).unwrap();
            task.inputs.remove(&file);
            format!("delete {}/{file}", name(index))
        }
        4 => {
            // Touch without change: same bytes, new mtime (and a rewrite: new ctime).
            let file = task.inputs.keys().next().unwrap().clone();
            write(&dir.join(&file), &task.inputs[&file]);
            format!("touch {}/{file}", name(index))
        }
        5 => {
            write(&dir.join("notes.md"), &random_content(rng));
            format!("write unmatched {}/src/notes.md", name(index))
        }
        6 => {
            let var = VARS[rng.below(2)];
            let value = match rng.below(3) {
                0 => None,
                1 => Some("x".to_string()),
                _ => Some("y".to_string()),
            };
            model.env.insert(var, value.clone());
            format!("env {var}={value:?}")
        }
        7 => {
            task.salt = (task.salt + 1) % 3;
            write(&root.join("bundle.toml"), &model.bundle_toml());
            format!(
                "redefine {} (salt {})",
                name(index),
                model.tasks[index].salt
            )
        }
        9 => {
            // A shared header: a discovered input of the tasks that include it, and of no other.
            let header = format!("h{}", rng.below(HEADERS));
            let content = random_content(rng);
            write(&root.join("shared").join(format!("{header}.txt")), &content);
            model.headers.insert(header.clone(), content);
            format!("edit shared/{header}.txt")
        }
        10 if task.depfile => {
            // Add a header to the discovered set, or remove one from it.
            let file = task
                .inputs
                .keys()
                .nth(rng.below(task.inputs.len()))
                .unwrap()
                .clone();
            let content = task.inputs[&file].clone();
            let (content, what) = match content.lines().find(|l| l.starts_with("#include ")) {
                Some(line) => (
                    content.replacen(&format!("{line}\n"), "", 1),
                    format!("remove `{line}` from"),
                ),
                None => {
                    let line = format!("#include h{}", rng.below(HEADERS));
                    (format!("{content}{line}\n"), format!("add `{line}` to"))
                }
            };
            write(&dir.join(&file), &content);
            task.inputs.insert(file.clone(), content);
            format!("{what} {}/{file}", name(index))
        }
        _ => "no change".to_string(),
    }
}

fn copy_sources(from: &Path, to: &Path) {
    for entry in walk(from) {
        let relative = entry.strip_prefix(from).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        if first == ".xbundle" || relative.components().any(|c| c.as_os_str() == "out") {
            continue;
        }
        let target = to.join(relative);
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::copy(&entry, &target).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    files
}

/// The sequences are dealt to this many tests, which run side by side.
const SHARDS: u64 = 4;

#[test]
fn random_edit_sequences_never_leave_stale_outputs_1_of_4() {
    hunt(0);
}

#[test]
fn random_edit_sequences_never_leave_stale_outputs_2_of_4() {
    hunt(1);
}

#[test]
fn random_edit_sequences_never_leave_stale_outputs_3_of_4() {
    hunt(2);
}

#[test]
fn random_edit_sequences_never_leave_stale_outputs_4_of_4() {
    hunt(3);
}

/// Runs sequence `base + n` for every `n` below the sequence count with `n % SHARDS == shard`
/// (with `STALE_HUNT_SEQUENCES=1`, the one sequence runs in the first shard only).
fn hunt(shard: u64) {
    let base: u64 = std::env::var("STALE_HUNT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_0001);
    let all: u64 = std::env::var("STALE_HUNT_SEQUENCES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut sequences = 0u64;
    let mut early_cutoffs = 0usize;
    let mut clean_builds = 0usize;
    let mut steps_checked = 0usize;
    let mut ran_total = 0usize;
    let mut cached_total = 0usize;
    for sequence in (0..all).filter(|n| n % SHARDS == shard) {
        sequences += 1;
        let seed = base + sequence;
        let mut rng = Rng::new(seed);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut model = Model::new(&mut rng);
        materialize(&model, root);
        let mut log = vec![format!("seed {seed}")];
        let mut previous_outputs: Option<Vec<String>> = None;
        for step in 0..=STEPS {
            if step > 0 {
                for _ in 0..1 + rng.below(3) {
                    log.push(edit(&mut model, root, &mut rng));
                }
            }
            let (expected, tuples, discovered) = model.evaluate();
            let expected_ran: BTreeSet<usize> = (0..TASKS)
                .filter(|index| {
                    model.seen[*index].get(&tuples[*index]) != Some(&discovered[*index])
                })
                .collect();
            let outcome = build(root, &model.env);
            let context =
                || format!("STALE_HUNT_SEED={seed} STALE_HUNT_SEQUENCES=1; steps: {log:#?}");
            assert_eq!(
                outcome.ran,
                expected_ran,
                "minimality: tasks that ran ({})",
                context()
            );
            assert_eq!(
                outcome.cached,
                (0..TASKS).filter(|i| !expected_ran.contains(i)).collect(),
                "every other task is cached ({})",
                context()
            );
            let actual = read_outputs(root);
            for index in 0..TASKS {
                assert_eq!(
                    actual[index],
                    expected[index],
                    "stale or wrong output of {} ({})",
                    name(index),
                    context()
                );
            }
            assert!(
                outcome.warnings.is_empty(),
                "no warnings expected: {:?} ({})",
                outcome.warnings,
                context()
            );
            // Early cutoff: a task that ran and produced the same output as before, whose
            // dependents therefore stayed cached.
            if let Some(previous) = &previous_outputs {
                for &index in &outcome.ran {
                    let dependents: Vec<usize> = (0..TASKS)
                        .filter(|d| model.tasks[*d].deps.contains(&index))
                        .collect();
                    if previous[index] == actual[index]
                        && !dependents.is_empty()
                        && dependents.iter().any(|d| !outcome.ran.contains(d))
                    {
                        early_cutoffs += 1;
                    }
                }
            }
            for ((seen, tuple), found) in model.seen.iter_mut().zip(&tuples).zip(&discovered) {
                seen.insert(tuple.clone(), found.clone());
            }
            ran_total += outcome.ran.len();
            cached_total += outcome.cached.len();
            previous_outputs = Some(actual);
            steps_checked += 1;
            // Cross-check the model against reality: a clean build of a copy of the tree,
            // after every step of the first sequences and at the end of every fifth one.
            if sequence < 4 || (step == STEPS && sequence % 5 == 0) {
                let clean = tempfile::tempdir().unwrap();
                copy_sources(root, clean.path());
                let outcome = build(clean.path(), &model.env);
                assert_eq!(outcome.ran.len(), TASKS, "clean build runs everything");
                assert_eq!(
                    read_outputs(clean.path()),
                    read_outputs(root),
                    "incremental tree differs from a clean build ({})",
                    context()
                );
                clean_builds += 1;
            }
        }
    }
    println!(
        "stale hunt, shard {} of {SHARDS}: {sequences} sequences, {steps_checked} builds checked, {ran_total} task runs, \
         {cached_total} cache hits, {early_cutoffs} early cutoffs observed, {clean_builds} clean builds \
         compared",
        shard + 1
    );
    // 20 in 200 sequences before they were dealt to shards.
    if sequences >= 50 {
        assert!(
            early_cutoffs >= 5,
            "early cutoff must be exercised, saw {early_cutoffs}"
        );
    }
}
