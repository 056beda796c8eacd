//! The fuzz target of issue 8's acceptance: `Manifest::from_json` + `validate` on random bytes,
//! on cut and corrupted manifest text, and on real manifests (the conformance corpus and the
//! demo profiles' bundle.json goldens) mutated as JSON: fields deleted, values replaced by
//! other types, huge strings, hostile paths and ids, deep nesting, duplicated elements.
//!
//! Each case must not panic, and must stay within bounded memory: a counting allocator
//! (per thread) measures the peak heap of one parse + validate, which must stay under a
//! constant plus a small multiple of the input's length — nothing is allocated in proportion
//! to anything but the input (nesting is cut off by serde_json's recursion limit, problems
//! are capped and quote at most a prefix of what they name).
//!
//! Deterministic (a fixed seed), so a failure reproduces; `PROPTEST_CASES` scales it.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

/// Counts the live heap bytes of the current thread and their peak.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        track(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap allowed for one input: a constant plus this many bytes per input byte.
const BYTES_PER_INPUT_BYTE: usize = 32;
const CONSTANT_BYTES: usize = 1 << 20;

/// Parses and validates `text`; returns the peak heap it took.
fn parse_and_validate(text: &str) -> usize {
    let base = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(base));
    if let Ok(manifest) = manifest::Manifest::from_json(text) {
        let problems = manifest.validate();
        assert!(problems.len() <= manifest::MAX_PROBLEMS + 1);
        for problem in &problems {
            let _ = problem.to_string();
        }
    }
    (PEAK.with(Cell::get) - base).max(0) as usize
}

#[track_caller]
fn check(text: &str) {
    let peak = parse_and_validate(text);
    assert!(
        peak <= CONSTANT_BYTES + BYTES_PER_INPUT_BYTE * text.len(),
        "{peak} bytes of heap for {} bytes of input",
        text.len()
    );
}

/// The real manifests: the corpus's three and the demo profiles' goldens.
fn seeds() -> Vec<Value> {
    let mut seeds = Vec::new();
    let corpus =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/vrooli/bundle");
    for name in [
        "desktop-happy.json",
        "desktop-playwright.json",
        "desktop-with-build.json",
    ] {
        if let Ok(text) = std::fs::read_to_string(corpus.join(name)) {
            seeds.push(serde_json::from_str(&text).unwrap());
        }
    }
    let goldens = Path::new(env!("CARGO_MANIFEST_DIR")).join("../xbundle/tests/snapshots");
    let mut golden = 0;
    for entry in std::fs::read_dir(goldens).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // insta's names: the test binary, the module (its file), the snapshot.
        if name.starts_with("integration__assemble__") && name.ends_with(".bundle.json.snap") {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            // An insta snapshot: a `---` header, then the document.
            let body = text.splitn(3, "---\n").nth(2).unwrap();
            seeds.push(serde_json::from_str(body).unwrap());
            golden += 1;
        }
    }
    // The demo profiles' goldens are there on every checkout (the corpus's may not be).
    assert!(
        golden >= 2,
        "the demo profiles' bundle.json goldens were not found"
    );
    seeds
}

/// JSON pointers of every value in `value`, the root included.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{at}/{escaped}"), out);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{index}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// Strings an attacker would try where paths, ids, URLs, charsets and formats go.
const HOSTILE: [&str; 16] = [
    "../../../../x/svc",
    "/etc/passwd",
    "C:\\Windows\\evil.exe",
    "a\u{0}b",
    "${secret.x}${a.b}${",
    "alnum_sybmols",
    "(a{100}){100}{100}",
    "http://user:pw@10.0.0.1/s?k=1",
    "ftp://x",
    "",
    ".",
    "\\\\server\\share",
    "é\u{202e}",
    "[[[[[[",
    "a//b/",
    "-",
];

/// One mutation of `value`, chosen by `op` and `param`, at the node chosen by `selector`.
fn mutate(value: &mut Value, selector: usize, op: u8, param: usize) {
    let mut all = Vec::new();
    pointers(value, String::new(), &mut all);
    let pointer = &all[selector % all.len()];
    let Some(target) = value.pointer_mut(pointer) else {
        return;
    };
    match op % 10 {
        // Delete: a field of an object or an element of an array.
        0 => match target {
            Value::Object(map) if !map.is_empty() => {
                let key = map.keys().nth(param % map.len()).unwrap().clone();
                map.remove(&key);
            }
            Value::Array(items) if !items.is_empty() => {
                items.remove(param % items.len());
            }
            _ => *target = Value::Null,
        },
        // Another type.
        1 => {
            *target = [
                Value::Null,
                json!(true),
                json!(-1),
                json!(1e300),
                json!(u64::MAX),
                json!(""),
                json!([]),
                json!({}),
                json!(0.5),
            ][param % 9]
                .clone()
        }
        // A huge string.
        2 => *target = Value::String(HOSTILE[param % HOSTILE.len()].repeat(1 + param % 20_000)),
        // A hostile string.
        3 => *target = Value::String(HOSTILE[param % HOSTILE.len()].to_owned()),
        // Deep nesting (beyond serde_json's recursion limit, or just under it).
        4 => {
            let depth = [10, 126, 127, 128, 129, 300][param % 6];
            let mut nested = target.take();
            for level in 0..depth {
                nested = if level % 2 == 0 {
                    Value::Array(vec![nested])
                } else {
                    json!({ "k": nested })
                };
            }
            *target = nested;
        }
        // Duplicate elements (duplicate ids, ports, versions, dependencies).
        5 => {
            if let Value::Array(items) = target
                && let Some(first) = items.first().cloned()
            {
                items.extend(std::iter::repeat_n(first, 1 + param % 50));
            }
        }
        // Unknown fields (kept in `extra`).
        6 => {
            if let Value::Object(map) = target {
                map.insert(format!("x-{param}"), json!({"nested": [1, {"a": null}]}));
            }
        }
        // Numbers at the edges.
        7 => {
            *target = [
                json!(0),
                json!(65535),
                json!(65536),
                json!(-0.0),
                json!(4097),
            ][param % 5]
                .clone()
        }
        // Many elements.
        8 => {
            if let Value::Array(items) = target {
                items.extend((0..param % 2000).map(|i| json!(format!("s{i}"))));
            }
        }
        // Swap with another node's value.
        _ => {
            let other = all[param % all.len()].clone();
            if let Some(copy) = value.pointer(&other).cloned()
                && let Some(target) = value.pointer_mut(pointer)
            {
                *target = copy;
            }
        }
    }
}

fn runner(cases: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[8; 32]),
    )
}

#[test]
fn fuzz_from_json_and_validate() {
    // The seeds themselves parse.
    let seeds = seeds();
    for seed in &seeds {
        let text = seed.to_string();
        assert!(manifest::Manifest::from_json(&text).is_ok());
        check(&text);
    }

    // Random bytes, and random bytes inside a manifest-like prefix.
    runner(512)
        .run(
            &(
                proptest::collection::vec(any::<u8>(), 0..2048),
                any::<bool>(),
            ),
            |(bytes, prefixed)| {
                let text = String::from_utf8_lossy(&bytes);
                let text = if prefixed {
                    format!("{{\"schema_version\":\"v0.1\",\"services\":[{text}")
                } else {
                    text.into_owned()
                };
                check(&text);
                Ok(())
            },
        )
        .unwrap();

    // Real manifests, mutated as JSON.
    let seed_count = seeds.len();
    runner(384)
        .run(
            &(
                0..seed_count,
                proptest::collection::vec((any::<usize>(), any::<u8>(), any::<usize>()), 1..8),
            ),
            |(seed, mutations)| {
                let mut value = seeds[seed].clone();
                for (selector, op, param) in mutations {
                    mutate(&mut value, selector, op, param);
                }
                check(&value.to_string());
                check(&serde_json::to_string_pretty(&value).unwrap());
                Ok(())
            },
        )
        .unwrap();

    // Real manifest text, cut and corrupted.
    runner(256)
        .run(
            &(0..seed_count, any::<usize>(), any::<usize>(), any::<u8>()),
            |(seed, cut, at, byte)| {
                let text = serde_json::to_string_pretty(&seeds[seed]).unwrap();
                let cut = cut % (text.len() + 1);
                check(&String::from_utf8_lossy(&text.as_bytes()[..cut]));
                let mut bytes = text.into_bytes();
                let at = at % bytes.len();
                bytes[at] = byte;
                check(&String::from_utf8_lossy(&bytes));
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn nesting_is_refused_not_recursed() {
    // Far deeper than any stack would survive if it were recursed (and within the size limit).
    let depth = 100_000;
    let text = format!(
        "{{\"schema_version\":\"v0.1\",\"x\":{}{}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let err = manifest::Manifest::from_json(&text).unwrap_err();
    assert!(err.to_string().contains("recursion limit"), "{err}");
    check(&text);
}
