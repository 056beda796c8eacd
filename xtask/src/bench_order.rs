//! The optimized build of xbundle (`cargo profile dist`, linked with a symbol ordering) and
//! `cargo xtask bench symbol-order`, which regenerates that ordering.
//!
//! Why an ordering: a run touches a few thousand of the binary's functions, scattered through
//! megabytes of `.text`, and the kernel maps the 64 KiB around each first touch of a code page
//! (fault-around), all of which counts in the peak RSS. `xtask/symbol-order.txt` lists the
//! functions the bench's scenarios execute: a no-op's, then those callgrind cannot see run
//! ([`UNSEEN_BY_VALGRIND`]), then the other scenarios'; lld's `--symbol-ordering-file` lays
//! them out together at the start of `.text` (from a copy where each LTO copy's name stands for
//! its neighbours too, [`with_copies`]).
//!
//! Functions are named as v0 mangling names them (`-Csymbol-mangling-version=v0` for every crate
//! of the build), by path and type with no hash of the code, so an ordering outlives the edits
//! made after it for every function they leave alone.
//!
//! Invariants: the ordering only moves code, never changes it (the same functions, the same
//! machine code); a stale file (renamed or missing symbols, another rustc) degrades to lld's
//! default order for what it does not name, silently (`--no-warn-symbol-ordering`); a link
//! that refuses the options (a linker other than lld) is retried without them, with a warning.
//! The file is written only by `cargo xtask bench symbol-order` (callgrind's lists of executed
//! functions and `nm`'s matches, each block sorted: the same runs of the same binary give the
//! same file), never by hand.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The ordering file, relative to the workspace.
pub(crate) const ORDER_FILE: &str = "xtask/symbol-order.txt";

/// The cargo profile of the optimized build (`[profile.dist]` in the workspace's Cargo.toml).
pub(crate) const PROFILE: &str = "dist";

fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Whether this host's link is done by lld (rustc's default on x86_64 Linux since 1.90), the
/// linker the ordering options are for.
fn orders_symbols() -> bool {
    cfg!(all(target_os = "linux", target_arch = "x86_64"))
}

/// Builds the optimized `xtask` (`--profile dist`, with the symbol ordering when it exists and
/// the host links with lld) and returns its path and a description of the build for reports.
pub(crate) fn build_dist(workspace: &Path) -> Result<(PathBuf, String), String> {
    let order = workspace.join(ORDER_FILE);
    let mut description = format!("cargo profile {PROFILE}");
    let mut built = false;
    if orders_symbols() && order.is_file() {
        // Linked with a copy named by its content: cargo relinks when the path it is given
        // changes, not when the file behind it does (a regenerated ordering would be ignored).
        let order = ordering_copy(workspace, &order)?;
        eprintln!(
            "bench: building the optimized binary (cargo rustc --profile {PROFILE} -p xtask, ordered by {ORDER_FILE})"
        );
        let status = Command::new(cargo())
            // Every crate's symbols with v0 names, which carry no hash of the code: an
            // ordering stays valid for the functions an edit leaves alone (legacy names end
            // with a hash that edits change: a few commits after one regeneration, 32 of its
            // 1004 names, the engine's hottest among them, no longer matched). A `RUSTFLAGS`
            // in the environment takes precedence and gives legacy names: the ordering then
            // matches none of them (the default order, silently).
            .args([
                "--config",
                "build.rustflags=[\"-Csymbol-mangling-version=v0\"]",
            ])
            .args([
                "rustc",
                "--profile",
                PROFILE,
                "-p",
                "xtask",
                "--bin",
                "xtask",
                "--",
            ])
            .args(["-C", "link-arg=-Xlinker", "-C"])
            .arg(format!(
                "link-arg=--symbol-ordering-file={}",
                order.display()
            ))
            .args(["-C", "link-arg=-Xlinker", "-C"])
            .arg("link-arg=--no-warn-symbol-ordering")
            // Not position-independent: the loader has no relocations to apply at start (about
            // 10,000 in a PIE build, whose pages it reads and dirties: 0.4 MiB of RSS and time
            // before `main`).
            .args(["-C", "relocation-model=static"])
            .current_dir(workspace)
            .status()
            .map_err(|err| format!("running cargo: {err}"))?;
        if status.success() {
            built = true;
            description.push_str(", not PIE, symbols ordered by ");
            description.push_str(ORDER_FILE);
        } else {
            eprintln!(
                "bench: warning: the build with the symbol ordering failed (a linker other than lld?); building without it"
            );
        }
    }
    if !built {
        eprintln!(
            "bench: building the optimized binary (cargo build --profile {PROFILE} -p xtask)"
        );
        let status = Command::new(cargo())
            .args(["build", "--profile", PROFILE, "-p", "xtask"])
            .current_dir(workspace)
            .status()
            .map_err(|err| format!("running cargo: {err}"))?;
        if !status.success() {
            return Err(format!("cargo build --profile {PROFILE} -p xtask failed"));
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), |dir| workspace.join(dir));
    Ok((target.join(PROFILE).join("xtask"), description))
}

/// The ordering `order` as lld is given it ([`with_copies`]), at
/// `target/symbol-order/<sha256>.txt` (made once).
fn ordering_copy(workspace: &Path, order: &Path) -> Result<PathBuf, String> {
    let text = fs::read_to_string(order).map_err(|err| format!("{}: {err}", order.display()))?;
    let bytes = with_copies(&text).into_bytes();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), |dir| workspace.join(dir));
    let dir = target.join("symbol-order");
    let copy = dir.join(format!("{}.txt", engine::Digest::of_bytes(&bytes).to_hex()));
    if !copy.is_file() {
        fs::create_dir_all(&dir).map_err(|err| format!("{}: {err}", dir.display()))?;
        fs::write(&copy, &bytes).map_err(|err| format!("{}: {err}", copy.display()))?;
    }
    Ok(copy)
}

/// How far from the counter it was profiled with an LTO copy's name reaches (see
/// [`with_copies`]).
const COPY_REACH: u32 = 300;

/// The ordering with every name of an LTO-made local copy widened to its neighbours.
///
/// Fat LTO keeps one local copy of a generic function per module that inlined none of it, and
/// names each with a counter (`…9write_str.1203`) that follows the order the linker met the
/// copies in: an edit anywhere before it shifts the counter (by 11 to 54 between the builds
/// measured, for every such name of the ordering: each missed, its 64 KiB of code left
/// resident apart from the ordered block). So `name.N` stands for `name.(N - COPY_REACH)` to
/// `name.(N + COPY_REACH)`, in that place of the order: a few other small copies of the same
/// function come along (the names of copies the binary lacks are ignored by lld), never code
/// the ordering did not mean.
fn with_copies(ordering: &str) -> String {
    let mut out = String::with_capacity(ordering.len());
    for line in ordering.lines() {
        out.push_str(line);
        out.push('\n');
        let copy = line
            .rsplit_once('.')
            .filter(|(_, counter)| counter.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|(name, counter)| Some((name, counter.parse::<u32>().ok()?)));
        let Some((name, counter)) = copy.filter(|_| !line.starts_with('#')) else {
            continue;
        };
        // Its neighbours, nearest first.
        for distance in 1..=COPY_REACH {
            for neighbour in [counter.checked_sub(distance), counter.checked_add(distance)]
                .into_iter()
                .flatten()
            {
                out.push_str(&format!("{name}.{neighbour}\n"));
            }
        }
    }
    out
}

/// Fragments of the names of functions a run executes on this machine but seldom or never
/// under callgrind: valgrind has no SHA-NI (`sha2` takes its portable code there) and no
/// AVX-512 (`tape-sha256` hashes a batch with its AVX2 kernel there), and runs one thread at a
/// time (a lock is contended only when a thread is pre-empted holding it), and the CPU feature
/// probe. Found in the binary's symbol table.
const UNSEEN_BY_VALGRIND: [&str; 5] = [
    "7x86_sha8compress",
    "6avx5125group",
    "_contended",
    "22wake_writer_or_readers",
    "7__xgetbv",
];

/// The functions of `binary` named by [`UNSEEN_BY_VALGRIND`] (through `nm`, from binutils).
fn unseen_by_valgrind(binary: &Path) -> Result<BTreeSet<String>, String> {
    let output = Command::new("nm")
        .args(["--defined-only", "--format=posix"])
        .arg(binary)
        .output()
        .map_err(|err| format!("running nm (apt-get install binutils): {err}"))?;
    if !output.status.success() {
        return Err(format!(
            "nm {} failed: {}",
            binary.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (name, kind) = (fields.next()?, fields.next()?);
            let code = matches!(kind, "t" | "T" | "w" | "W");
            (code && UNSEEN_BY_VALGRIND.iter().any(|part| name.contains(part)))
                .then(|| name.to_string())
        })
        .collect())
}

const USAGE: &str = "\
usage: cargo xtask bench symbol-order

Regenerates xtask/symbol-order.txt: builds the optimized binary (cargo profile dist), runs the
bench's scenarios on a generated repository (80 tasks of 100 files) under valgrind's callgrind,
and writes the functions they executed (a no-op's first), with those valgrind cannot show run
(SHA-NI hashing, contended locks, the CPU feature probe) found by nm. Needs valgrind and
binutils (apt-get install valgrind binutils).";

/// `cargo xtask bench symbol-order`.
pub fn main(args: Vec<OsString>) -> ExitCode {
    if !args.is_empty() {
        let help = args.iter().any(|arg| arg == "-h" || arg == "--help");
        println!("{USAGE}");
        return ExitCode::from(if help { 0 } else { 2 });
    }
    // Orchestration only (the profiled binary is the optimized build): any build of this
    // command will do.
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench symbol-order: {err}");
            ExitCode::from(1)
        }
    }
}

fn run() -> Result<(), String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ is inside the workspace")
        .to_path_buf();
    if Command::new("valgrind").arg("--version").output().is_err() {
        return Err("valgrind not found (apt-get install valgrind)".into());
    }
    let (xtask, _) = build_dist(&workspace)?;
    let xtask = xtask
        .canonicalize()
        .map_err(|err| format!("{}: {err}", xtask.display()))?;
    let temp = std::env::temp_dir().join(format!("xbundle-symbol-order-{}", std::process::id()));
    let result = profile(&xtask, &temp);
    let _ = fs::remove_dir_all(&temp);
    let (noop, rest) = result?;
    // Beside the no-op's functions: hashing and locking are part of every run.
    let unseen = unseen_by_valgrind(&xtask)?;
    let mut text = String::from(
        "# Generated by `cargo xtask bench symbol-order`: the functions the bench's scenarios\n\
         # execute, a no-op's first; lld's --symbol-ordering-file for `cargo xtask bench`'s\n\
         # optimized build (xtask/src/bench_order.rs). Do not edit.\n",
    );
    let first: BTreeSet<String> = noop.union(&unseen).cloned().collect();
    let order = noop
        .iter()
        .chain(unseen.difference(&noop))
        .chain(rest.difference(&first));
    for name in order {
        text.push_str(name);
        text.push('\n');
    }
    let path = workspace.join(ORDER_FILE);
    fs::write(&path, text).map_err(|err| format!("writing {}: {err}", path.display()))?;
    eprintln!(
        "bench: wrote {} ({} functions, {} of them a no-op's)",
        path.display(),
        first.union(&rest).count(),
        noop.len()
    );
    Ok(())
}

/// Runs the scenarios under callgrind in `temp`; the functions of `xtask` a no-op executed,
/// and those the other scenarios did.
fn profile(xtask: &Path, temp: &Path) -> Result<(BTreeSet<String>, BTreeSet<String>), String> {
    let io = |err: std::io::Error| err.to_string();
    let root = temp.join("repo");
    // Large enough for the code of large inputs: the standard library sorts a slice of 20
    // elements or fewer by insertion and picks pivots recursively above 64, and the engine's
    // buffers grow in steps. At 20 tasks of 20 files, the bench's runs executed 13 functions
    // never profiled (sorts of each task's files, of the tasks and of the listings; a second
    // chunk of stat-cache records), each one a 64 KiB window of code resident apart from the
    // ordered block; at 40 tasks of 100 files, still the pivots of the sorts of the tasks and
    // the listings.
    let graph = crate::bench::Graph::with_size(80, 100, 2048);
    crate::bench::generate(&graph, &root, None).map_err(|err| format!("{err:?}"))?;
    let out = temp.join("callgrind");
    fs::create_dir_all(&out).map_err(io)?;
    let run = |name: &str, json: bool| -> Result<BTreeSet<String>, String> {
        let report = out.join(format!("{name}.out"));
        let mut command = Command::new("valgrind");
        command
            .args(["--tool=callgrind", "--demangle=no", "--compress-strings=no"])
            .arg(format!("--callgrind-out-file={}", report.display()))
            .arg(xtask)
            .arg("--root")
            .arg(&root);
        if json {
            command.args(["--message-format", "json"]);
        }
        let output = command
            .arg("task")
            .env_remove("XBUNDLE_CACHE_DIR")
            .output()
            .map_err(io)?;
        if !output.status.success() {
            return Err(format!(
                "{name} under callgrind failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let text = fs::read_to_string(&report).map_err(io)?;
        Ok(executed(&text, xtask))
    };
    let mut rest = BTreeSet::new();
    rest.extend(run("cold", true)?);
    rest.extend(run("first-noop", true)?);
    let mut noop = run("noop", true)?;
    noop.extend(run("noop-human", false)?);
    let edited = root.join(graph.input(graph.changed_task(), 0));
    let original = fs::read(&edited).map_err(io)?;
    fs::write(&edited, b"changed by cargo xtask bench symbol-order\n").map_err(io)?;
    rest.extend(run("change", true)?);
    fs::write(&edited, original).map_err(io)?;
    rest.extend(run("change-cached", true)?);
    rest.extend(run("change-cached-human", false)?);
    Ok((noop, rest))
}

/// The names of the functions of `binary` that a callgrind profile (`--compress-strings=no`)
/// shows executed: each `fn=` line under an `ob=` naming the binary.
fn executed(profile: &str, binary: &Path) -> BTreeSet<String> {
    let binary = binary.to_string_lossy();
    let mut in_binary = false;
    let mut names = BTreeSet::new();
    for line in profile.lines() {
        if let Some(object) = line.strip_prefix("ob=") {
            in_binary = object.trim() == binary;
        } else if let Some(name) = line.strip_prefix("fn=")
            && in_binary
        {
            // Callgrind marks a recursion level with `'N` (`f'2`): the symbol is `f`.
            let name = name.trim();
            let name = match name.rsplit_once('\'') {
                Some((symbol, level)) if level.bytes().all(|b| b.is_ascii_digit()) => symbol,
                _ => name,
            };
            // Unnamed code shows as an address, and callgrind names some code itself
            // (`(below main)`): neither is a symbol.
            if !name.is_empty()
                && !name.starts_with("0x")
                && !name.contains(|c: char| c.is_whitespace() || c == '(')
            {
                names.insert(name.to_string());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_lto_copy_stands_for_its_neighbours_and_other_names_for_themselves() {
        let widened = with_copies("# a.5 comment\n_RNv1f.3\n_RNv1g\n_RNv1h.x2\n_RNv1i.\n");
        let lines: Vec<&str> = widened.lines().collect();
        let reach = COPY_REACH as usize;
        // The profiled copy, its 2 lower neighbours (down to .0), then every higher one.
        assert_eq!(
            &lines[..4],
            ["# a.5 comment", "_RNv1f.3", "_RNv1f.2", "_RNv1f.4"]
        );
        assert_eq!(lines.len(), 1 + (1 + 3 + reach) + 3);
        assert!(lines.contains(&"_RNv1f.0"));
        assert!(lines.contains(&format!("_RNv1f.{}", 3 + reach).as_str()));
        assert!(!lines.contains(&format!("_RNv1f.{}", 4 + reach).as_str()));
        assert_eq!(
            &lines[lines.len() - 3..],
            ["_RNv1g", "_RNv1h.x2", "_RNv1i."]
        );
    }

    #[test]
    fn executed_takes_the_binarys_functions_only() {
        let profile = "ob=/t/xtask\nfn=_ZN1a1fE\n1 2\ncob=/lib/libc.so.6\ncfn=memcpy\ncalls=1 0\n\
                       ob=/lib/libc.so.6\nfn=memcpy\n1 1\nob=/t/xtask\nfn=_ZN1a1gE\nfn=0x0001234\nfn=(below main)\nfn=_ZN1a1hE'2\n";
        let names: Vec<_> = executed(profile, Path::new("/t/xtask"))
            .into_iter()
            .collect();
        assert_eq!(names, ["_ZN1a1fE", "_ZN1a1gE", "_ZN1a1hE"]);
    }
}
