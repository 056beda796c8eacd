//! `cargo xtask bench package`: packaging a large stage as a deb and as a tar.gz, against
//! `dpkg-deb --build` and `tar -c | gzip` at the same compression, side by side in one run.
//!
//! A fixture repository is generated whose stage weighs `--size` MiB (default 200): a few large
//! binaries of pseudo-random and patterned blocks (compressing to about half, as executables
//! do; the API's binary and three assets, fetched from `file://` URLs) and many small text files
//! (a static UI of generated words, like a web app's scripts and styles), all deterministic.
//! No toolchain is involved: the API is `type = "none"` and the runtime a prebuilt stand-in.
//! `xtask bundle` stages it once (the stage is then in the page cache for every tool).
//!
//! Each round, in alternating order (so neither side always runs on a warmer machine):
//! - **deb:** `xbundle::package::deb::deb` on the stage (a direct call of the writer the
//!   `package:` task runs: payload, control file, gzip -6 data member, ar archive) against
//!   `dpkg-deb --root-owner-group -Zgzip -z6 --build` on the same tree (the stage hard-linked
//!   under `opt/bench/` beside a `DEBIAN/control`);
//! - **tar.gz:** `xbundle::package::archive::tar_gz` against
//!   `tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@E -c | gzip -6 -n`;
//! - **rpm:** `xbundle::package::rpm::rpm` (zstd -3), reported alone (no reference tool here);
//! - **whole tasks:** `xtask task package:bench@linux-x64:{deb,tar.gz}` with a new
//!   `SOURCE_DATE_EPOCH` (so only the package task runs), timed around the process: the
//!   writer plus planning, the artifact's publication and its storage in the cache. Reported,
//!   not compared.
//!
//! Then the no-op: `xtask bundle` after packaging, median of `--runs` after a warm-up, must run
//! no task (goal: under 100 ms). Reported: medians, ratios (goal: at most 1.1x the reference),
//! sizes. Sanity checks are hard errors: every tool succeeds, `dpkg-deb --contents` of our
//! deb lists every staged file, the archives' sizes are within 10% of the references'.
//! Runs in a release build (a debug build re-runs itself as `target/release/xtask`).

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use camino::Utf8Path;

const USAGE: &str = "\
usage: cargo xtask bench package [--size MIB] [--runs N] [--dir DIR] [--json]

Times xbundle's deb and tar.gz writers against dpkg-deb and tar | gzip on a generated stage.

options:
  --size MIB   the stage's size (default 200)
  --runs N     rounds, and no-op runs (default 5)
  --dir DIR    generate under DIR and keep it (default: a temporary directory)
  --json       also print the numbers as one JSON object (last line of stdout)";

/// The packages' epoch (2023-11-14T22:13:20Z); whole-task rounds add the round's number.
const EPOCH: u64 = 1_700_000_000;

struct Options {
    size_mib: usize,
    runs: usize,
    dir: Option<PathBuf>,
    json: bool,
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let mut options = Options {
        size_mib: 200,
        runs: 5,
        dir: None,
        json: false,
    };
    let mut iter = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = iter.next() {
        let mut number = |name: &str| -> Option<usize> {
            let value = iter.next().and_then(|v| v.parse().ok()).filter(|n| *n > 0);
            if value.is_none() {
                eprintln!("{name} needs a positive number\n{USAGE}");
            }
            value
        };
        match arg.as_str() {
            "--size" => match number("--size") {
                Some(n) => options.size_mib = n,
                None => return ExitCode::from(2),
            },
            "--runs" => match number("--runs") {
                Some(n) => options.runs = n,
                None => return ExitCode::from(2),
            },
            "--dir" => match iter.next() {
                Some(dir) => options.dir = Some(PathBuf::from(dir)),
                None => {
                    eprintln!("--dir needs a directory\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--json" => options.json = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument `{other}`\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    crate::bench::run_released("package", &args, || run(&options))
}

fn progress(message: &str) {
    eprintln!("bench: {message}");
}

/// xorshift64: the generator of every byte of the fixture.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A binary of `len` bytes: 64 KiB blocks, half pseudo-random, half patterned (tables of
/// slowly varying little-endian words and repeated byte runs), so it compresses to about half.
fn binary(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut bytes = Vec::with_capacity(len);
    let mut word: u32 = 0x0040_0000;
    while bytes.len() < len {
        let block = (len - bytes.len()).min(64 << 10);
        if rng.below(2) == 0 {
            for _ in 0..block.div_ceil(8) {
                bytes.extend_from_slice(&rng.next().to_le_bytes());
            }
        } else {
            let mut written = 0;
            while written < block {
                if rng.below(4) == 0 {
                    let run = 8 + rng.below(56) as usize;
                    bytes.extend(std::iter::repeat_n((rng.next() & 0xff) as u8, run));
                    written += run;
                } else {
                    word = word.wrapping_add(rng.below(64) as u32 * 4);
                    bytes.extend_from_slice(&word.to_le_bytes());
                    written += 4;
                }
            }
        }
        bytes.truncate(len.min(bytes.len()));
    }
    bytes.truncate(len);
    bytes
}

/// A vocabulary of pseudo-words for the text files.
fn vocabulary(rng: &mut Rng) -> Vec<String> {
    (0..4096)
        .map(|_| {
            let len = 2 + rng.below(9) as usize;
            (0..len)
                .map(|_| (b'a' + rng.below(26) as u8) as char)
                .collect()
        })
        .collect()
}

/// One text file of about `len` bytes: lines of words and punctuation, like minified-free
/// scripts and styles.
fn text(rng: &mut Rng, words: &[String], len: usize) -> Vec<u8> {
    let mut out = String::with_capacity(len + 128);
    while out.len() < len {
        let indent = rng.below(4) as usize * 2;
        out.extend(std::iter::repeat_n(' ', indent));
        let count = 3 + rng.below(12);
        for i in 0..count {
            if i > 0 {
                out.push(if rng.below(5) == 0 { '.' } else { ' ' });
            }
            out.push_str(&words[rng.below(words.len() as u64) as usize]);
        }
        out.push_str([";\n", " {\n", "}\n", ",\n"][rng.below(4) as usize]);
    }
    out.into_bytes()
}

struct Fixture {
    repo: PathBuf,
    binaries: usize,
    texts: usize,
}

/// Writes the repository and the assets' sources under `base`.
fn generate(base: &Path, size: usize) -> Result<Fixture, String> {
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |err: std::io::Error| format!("{what}: {err}")
    };
    let repo = base.join("repo");
    let sources = base.join("sources");
    for dir in [&repo, &sources] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io(dir))?;
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let write = |path: &Path, bytes: &[u8]| -> Result<(), String> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(path, bytes).map_err(io(path))
    };
    // 70% in four binaries, 30% in text files of 2 to 18 KiB.
    let binaries = 4;
    let binary_len = size * 7 / 10 / binaries;
    let mut assets = String::new();
    for index in 0..binaries {
        let bytes = binary(1000 + index as u64, binary_len);
        let source = sources.join(format!("blob-{index}.bin"));
        write(&source, &bytes)?;
        let digest = engine::Digest::of_bytes(&bytes).to_hex();
        let dest = if index == 0 {
            "bin/bench-api/linux-x64/bench-api".to_string()
        } else {
            format!("assets/blob-{index}.bin")
        };
        assets.push_str(&format!(
            "\n[[assets]]\nid = \"blob-{index}\"\nurl = \"file://{}\"\nsha256 = \"{digest}\"\ndest = \"{dest}\"\nplatforms = [\"linux-x64\"]\n",
            source.display()
        ));
    }
    let runtime = b"#!/bin/sh\n# a stand-in for the runtime\n";
    let runtime_source = sources.join("xbundle-runtime");
    write(&runtime_source, runtime)?;
    let mut rng = Rng::new(7);
    let words = vocabulary(&mut rng);
    let mut texts = 0;
    let mut written = 0;
    let text_total = size - binary_len * binaries;
    while written < text_total {
        let len = (2048 + rng.below(16 << 10) as usize)
            .min(text_total - written)
            .max(1);
        let bytes = text(&mut rng, &words, len);
        let ext = ["js", "css", "html", "json"][texts % 4];
        let path = repo.join(format!(
            "scenarios/bench/ui/assets/d{:02}/f{texts:05}.{ext}",
            texts % 64
        ));
        write(&path, &bytes)?;
        written += bytes.len();
        texts += 1;
    }
    write(
        &repo.join("scenarios/bench/ui/index.html"),
        b"<!doctype html><title>bench</title>\n",
    )?;
    write(
        &repo.join("scenarios/bench/.vrooli/service.json"),
        br#"{"service": {"name": "bench", "version": "1.0.0", "type": "scenario"}, "ports": {"api": {"env_var": "API_PORT", "range": "15000-19999"}, "ui": {"env_var": "UI_PORT", "range": "35000-39999"}}}"#,
    )?;
    write(
        &repo.join("platforms/linux-x64.toml"),
        b"id = \"linux-x64\"\nrust-target = \"x86_64-unknown-linux-gnu\"\ngoos = \"linux\"\ngoarch = \"amd64\"\nexe-suffix = \"\"\nformats = [\"tar.gz\", \"deb\", \"rpm\"]\n",
    )?;
    write(
        &repo.join("bundle.toml"),
        format!(
            "[workspace]\ndefault-profile = \"bench\"\n\n[profiles.bench]\nscenario = \"bench\"\ntier = \"desktop\"\nplatforms = [\"linux-x64\"]\n\n[profiles.bench.builds.bench-api]\ntype = \"none\"\n\n[runtime.linux-x64]\nurl = \"file://{}\"\nsha256 = \"{}\"\n{assets}",
            runtime_source.display(),
            engine::Digest::of_bytes(runtime).to_hex()
        )
        .as_bytes(),
    )?;
    Ok(Fixture {
        repo,
        binaries,
        texts,
    })
}

/// Runs `command`, which must succeed; its wall time in seconds and its stdout.
fn timed(what: &str, command: &mut Command) -> Result<(f64, String), String> {
    let started = Instant::now();
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("{what}: {err}"))?;
    let seconds = started.elapsed().as_secs_f64();
    if !output.status.success() {
        return Err(format!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok((
        seconds,
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}

/// `xtask` (this binary) on the fixture with `SOURCE_DATE_EPOCH=epoch`, JSON events out.
fn xtask(repo: &Path, epoch: u64, args: &[&str]) -> Result<Command, String> {
    let mut command = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
    command
        .arg("--root")
        .arg(repo)
        .args(["--message-format", "json"])
        .args(args)
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .env("NO_COLOR", "1");
    Ok(command)
}

/// `(ran, duration_ms of task `id`)` from a run's JSON events.
fn ran_and_duration(events: &str, id: &str) -> Result<(u64, Option<f64>), String> {
    let mut ran = None;
    let mut duration = None;
    for line in events.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).map_err(|err| format!("an event ({err}): {line}"))?;
        if event["event"] == "build-finished" {
            ran = event["ran"].as_u64();
        }
        if event["event"] == "task-finished" && event["id"] == id {
            duration = event["duration_ms"].as_f64().map(|ms| ms / 1000.0);
        }
    }
    Ok((ran.ok_or("no build-finished event")?, duration))
}

/// A copy of `from` at `to` made of hard links (the same bytes, nothing copied).
fn link_tree(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|err| format!("{}: {err}", to.display()))?;
    for entry in std::fs::read_dir(from).map_err(|err| format!("{}: {err}", from.display()))? {
        let entry = entry.map_err(|err| err.to_string())?;
        let target = to.join(entry.file_name());
        if entry.file_type().map_err(|err| err.to_string())?.is_dir() {
            link_tree(&entry.path(), &target)?;
        } else {
            std::fs::hard_link(entry.path(), &target)
                .map_err(|err| format!("{}: {err}", target.display()))?;
        }
    }
    Ok(())
}

fn size_of(path: &Path) -> Result<u64, String> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|err| format!("{}: {err}", path.display()))
}

/// Which writer a direct call runs.
#[derive(Clone, Copy)]
enum Writer {
    Deb,
    TarGz,
    Rpm,
}

/// Seconds of one writer on the staged tree (what the `package:` task calls), into `out`.
fn ours(repo: &Path, writer: Writer, out: &Path) -> Result<f64, String> {
    use xbundle::package::{Input, Meta, archive, deb, rpm};
    let started = Instant::now();
    let tree = engine::confine::Dir::open_root(repo).map_err(|err| err.to_string())?;
    let stage = Utf8Path::new("dist/bench/stage/linux-x64");
    let entries = xbundle::stage::regular_tree(&tree, stage)?;
    let meta = Meta::resolve(&tree, stage, &Default::default(), EPOCH)?;
    let platform = xbundle::platform::Platform {
        id: "linux-x64".into(),
        rust_target: "x86_64-unknown-linux-gnu".into(),
        goos: "linux".into(),
        goarch: "amd64".into(),
        exe_suffix: String::new(),
        formats: Vec::new(),
    };
    let input = Input {
        tree: &tree,
        stage,
        entries,
        meta,
        platform: &platform,
        top: "bench-linux-x64".into(),
        thin: false,
    };
    let mut file = std::fs::File::create(out).map_err(|err| format!("{}: {err}", out.display()))?;
    match writer {
        Writer::Deb => deb::deb(&input, &mut file)?,
        Writer::TarGz => archive::tar_gz(&input, &mut file)?,
        Writer::Rpm => rpm::rpm(&input, &mut file)?,
    }
    drop(file);
    Ok(started.elapsed().as_secs_f64())
}

fn run(options: &Options) -> Result<(), String> {
    for (tool, package) in [("dpkg-deb", "dpkg"), ("tar", "tar"), ("gzip", "gzip")] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Err(format!(
                "`{tool}` is missing: install the Debian package {package}"
            ));
        }
    }
    let base = match &options.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("xbundle-bench-package-{}", std::process::id())),
    };
    std::fs::create_dir_all(&base).map_err(|err| format!("{}: {err}", base.display()))?;
    let base = base.canonicalize().map_err(|err| err.to_string())?;
    let result = measure(options, &base);
    if options.dir.is_none() {
        let _ = std::fs::remove_dir_all(&base);
    }
    result
}

fn measure(options: &Options, base: &Path) -> Result<(), String> {
    let size = options.size_mib << 20;
    progress(&format!(
        "generating a {} MiB stage in {}",
        options.size_mib,
        base.display()
    ));
    let fixture = generate(base, size)?;
    let repo = &fixture.repo;
    progress("staging and packaging it once (xtask bundle)");
    let (_, events) = timed("xtask bundle", &mut xtask(repo, EPOCH, &["bundle"])?)?;
    ran_and_duration(&events, "")?;
    let stage = repo.join("dist/bench/stage/linux-x64");

    // dpkg-deb's tree: the stage under opt/bench/, hard-linked, and a control file.
    let root = base.join("dpkg-root");
    if root.exists() {
        std::fs::remove_dir_all(&root).map_err(|err| err.to_string())?;
    }
    link_tree(&stage, &root.join("opt/bench"))?;
    std::fs::create_dir_all(root.join("DEBIAN")).map_err(|err| err.to_string())?;
    std::fs::write(
        root.join("DEBIAN/control"),
        "Package: bench\nVersion: 1.0.0\nArchitecture: amd64\nMaintainer: bench <bench@example.org>\nDescription: Benchmark package of a generated stage\n",
    )
    .map_err(|err| err.to_string())?;
    let out = base.join("out");
    std::fs::create_dir_all(&out).map_err(|err| err.to_string())?;
    let (ours_deb, dpkg_deb) = (out.join("ours.deb"), out.join("dpkg.deb"));
    let (ours_tgz, gnu_tgz) = (out.join("ours.tar.gz"), out.join("gnu.tar.gz"));
    let ours_rpm = out.join("ours.rpm");

    let dpkg = || -> Result<f64, String> {
        let mut command = Command::new("dpkg-deb");
        command
            .args(["--root-owner-group", "-Zgzip", "-z6", "--build"])
            .arg(&root)
            .arg(&dpkg_deb)
            .stdout(Stdio::null());
        Ok(timed("dpkg-deb --build", &mut command)?.0)
    };
    let gnu = || -> Result<f64, String> {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!(
                "set -e; tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@{EPOCH} -c -C \"$1\" . | gzip -6 -n > \"$2\""
            ))
            .arg("sh")
            .arg(&stage)
            .arg(&gnu_tgz);
        Ok(timed("tar | gzip", &mut command)?.0)
    };
    let (mut deb, mut dpkg_times, mut tgz, mut gnu_times, mut rpm) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut deb_task, mut tgz_task) = (Vec::new(), Vec::new());
    let (mut deb_task_action, mut tgz_task_action) = (Vec::new(), Vec::new());
    for round in 0..options.runs {
        progress(&format!("round {}/{}", round + 1, options.runs));
        if round % 2 == 0 {
            deb.push(ours(repo, Writer::Deb, &ours_deb)?);
            dpkg_times.push(dpkg()?);
            tgz.push(ours(repo, Writer::TarGz, &ours_tgz)?);
            gnu_times.push(gnu()?);
        } else {
            dpkg_times.push(dpkg()?);
            deb.push(ours(repo, Writer::Deb, &ours_deb)?);
            gnu_times.push(gnu()?);
            tgz.push(ours(repo, Writer::TarGz, &ours_tgz)?);
        }
        rpm.push(ours(repo, Writer::Rpm, &ours_rpm)?);
        for (format, wall, action) in [
            ("deb", &mut deb_task, &mut deb_task_action),
            ("tar.gz", &mut tgz_task, &mut tgz_task_action),
        ] {
            let id = format!("package:bench@linux-x64:{format}");
            let epoch = EPOCH + 1 + round as u64;
            let (seconds, events) = timed(&id, &mut xtask(repo, epoch, &["task", id.as_str()])?)?;
            let (ran, duration) = ran_and_duration(&events, &id)?;
            if ran != 1 {
                return Err(format!(
                    "`xtask task {id}` ran {ran} tasks, not 1:\n{events}"
                ));
            }
            wall.push(seconds);
            action.extend(duration);
        }
    }

    // Sanity: our deb lists every staged file; the sizes are comparable.
    let (_, listed) = timed(
        "dpkg-deb --contents",
        Command::new("dpkg-deb").arg("--contents").arg(&ours_deb),
    )?;
    let staged = xbundle::stage::regular_tree(
        &engine::confine::Dir::open_root(repo).map_err(|err| err.to_string())?,
        Utf8Path::new("dist/bench/stage/linux-x64"),
    )?;
    for entry in staged.iter().filter(|entry| !entry.dir) {
        let name = format!(" ./opt/bench/{}", entry.path);
        if !listed.lines().any(|line| line.ends_with(&name)) {
            return Err(format!("our deb does not list {name}"));
        }
    }
    let sizes = [
        ("deb", size_of(&ours_deb)?, size_of(&dpkg_deb)?),
        ("tar.gz", size_of(&ours_tgz)?, size_of(&gnu_tgz)?),
    ];
    for (what, ours, reference) in sizes {
        if (ours as f64 - reference as f64).abs() > reference as f64 * 0.1 {
            return Err(format!(
                "our {what} is {ours} bytes, the reference's {reference}: not the same compression"
            ));
        }
    }

    progress("no-op bundles after packaging");
    let final_epoch = EPOCH + 1000;
    timed("xtask bundle", &mut xtask(repo, final_epoch, &["bundle"])?)?;
    timed("xtask bundle", &mut xtask(repo, final_epoch, &["bundle"])?)?;
    let mut noop = Vec::new();
    for _ in 0..options.runs {
        let (seconds, events) = timed("xtask bundle", &mut xtask(repo, final_epoch, &["bundle"])?)?;
        let (ran, _) = ran_and_duration(&events, "")?;
        if ran != 0 {
            return Err(format!("a no-op bundle ran {ran} tasks:\n{events}"));
        }
        noop.push(seconds);
    }

    let median = crate::bench::median;
    let row = |name: &str, ours: f64, reference: f64, label: &str| {
        format!(
            "  {name:<7} xbundle {ours:>6.2} s   {label:<52} {reference:>6.2} s   {:.2}x (goal <= 1.10x)",
            ours / reference
        )
    };
    let (deb_m, dpkg_m, tgz_m, gnu_m) = (
        median(&deb),
        median(&dpkg_times),
        median(&tgz),
        median(&gnu_times),
    );
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    let mut report = format!(
        "packaging a {} MiB stage ({} binaries, {} text files), median of {} round(s), load {}:\n",
        options.size_mib,
        fixture.binaries,
        fixture.texts,
        options.runs,
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|t| t.split_whitespace().next().map(str::to_string))
            .unwrap_or_else(|| "?".into())
    );
    report.push_str(&row(
        "deb",
        deb_m,
        dpkg_m,
        "dpkg-deb --root-owner-group -Zgzip -z6 --build",
    ));
    report.push('\n');
    report.push_str(&row(
        "tar.gz",
        tgz_m,
        gnu_m,
        "tar --sort=name … -c | gzip -6 -n",
    ));
    report.push('\n');
    report.push_str(&format!(
        "  rpm     xbundle {:>6.2} s   (zstd -3; no reference tool)\n",
        median(&rpm)
    ));
    report.push_str(&format!(
        "  whole package tasks (xtask task, stage cached): deb {:.2} s (action {:.2} s), tar.gz {:.2} s (action {:.2} s)\n",
        median(&deb_task),
        median(&deb_task_action),
        median(&tgz_task),
        median(&tgz_task_action),
    ));
    report.push_str(&format!(
        "  sizes: deb {:.1} MiB (dpkg-deb {:.1} MiB), tar.gz {:.1} MiB (tar | gzip {:.1} MiB), rpm {:.1} MiB\n",
        mib(sizes[0].1),
        mib(sizes[0].2),
        mib(sizes[1].1),
        mib(sizes[1].2),
        mib(size_of(&ours_rpm)?),
    ));
    report.push_str(&format!(
        "  no-op bundle after packaging: {:.0} ms median of {} (goal < 100 ms)",
        median(&noop) * 1000.0,
        noop.len()
    ));
    println!("{report}");
    if options.json {
        println!(
            "{}",
            serde_json::json!({
                "size_mib": options.size_mib,
                "runs": options.runs,
                "deb_s": deb_m, "dpkg_deb_s": dpkg_m, "deb_ratio": deb_m / dpkg_m,
                "tar_gz_s": tgz_m, "tar_gzip_s": gnu_m, "tar_gz_ratio": tgz_m / gnu_m,
                "rpm_s": median(&rpm),
                "deb_task_s": median(&deb_task), "tar_gz_task_s": median(&tgz_task),
                "noop_ms": median(&noop) * 1000.0,
            })
        );
    }
    std::io::stdout().flush().map_err(|err| err.to_string())
}
