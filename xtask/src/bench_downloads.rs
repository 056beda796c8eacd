//! `cargo xtask bench downloads`: asset download throughput against `curl`, on the same file
//! from the same local server in the same run.
//!
//! A server on 127.0.0.1 (`testserver.rs`, serving the file from memory in 1 MiB writes, so it
//! is not the bottleneck) serves `--size` MiB (default 200) of pseudo-random bytes. Each round,
//! in alternating order:
//!
//! - `curl -s -o FILE URL`, timed around the process;
//! - xbundle's download client (`xbundle::assets::download`, what `fetch:` tasks run: hashed
//!   while it arrives), timed in this process, the digest checked;
//! - the whole `fetch:` task through the `xtask` binary on a fresh repository and cache
//!   (download, the archive put into the CAS, the output published and stored by the engine),
//!   timed around the process; reported, not compared (it copies the file twice more).
//!
//! Reported: the median MB/s of each over `--runs` rounds and the ratio of xbundle's client to
//! curl (the goal: at least 90%). Runs in a release build (a debug build re-runs itself as
//! `target/release/xtask`).

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

use crate::testserver::{Behaviour, Server};

const USAGE: &str = "\
usage: cargo xtask bench downloads [--size MIB] [--runs N] [--json]

Times xbundle's asset download client against curl on one file from a local server.";

struct Options {
    size_mib: usize,
    runs: usize,
    json: bool,
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let mut options = Options {
        size_mib: 200,
        runs: 3,
        json: false,
    };
    let mut iter = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = iter.next() {
        let mut number = |name: &str| -> Option<usize> {
            let value = iter.next().and_then(|v| v.parse().ok());
            if value.is_none() {
                eprintln!("{name} needs a number\n{USAGE}");
            }
            value
        };
        match arg.as_str() {
            "--size" => match number("--size") {
                Some(n) if n > 0 => options.size_mib = n,
                _ => return ExitCode::from(2),
            },
            "--runs" => match number("--runs") {
                Some(n) if n > 0 => options.runs = n,
                _ => return ExitCode::from(2),
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
    crate::bench::run_released("downloads", &args, || run(&options))
}

/// A directory of this run's, removed at the end.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn payload(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e3779b97f4a7c15;
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

fn run(options: &Options) -> Result<(), String> {
    let len = options.size_mib << 20;
    let body = payload(len);
    let digest = engine::Digest::of_bytes(&body);
    let server = Server::start();
    server.route("/big.bin", body, Behaviour::Serve);
    let url = server.url("/big.bin");
    let dir = TempDir(
        std::env::temp_dir().join(format!("xbundle-bench-downloads-{}", std::process::id())),
    );
    std::fs::create_dir_all(dir.path()).map_err(|err| err.to_string())?;
    let megabytes = len as f64 / 1e6;
    let (mut curl, mut client, mut task) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..options.runs {
        let measure_curl = |curl: &mut Vec<f64>| -> Result<(), String> {
            let out = dir.path().join("curl.bin");
            let started = Instant::now();
            let status = Command::new("curl")
                .args(["-s", "-f", "-o"])
                .arg(&out)
                .arg(&url)
                .status()
                .map_err(|err| format!("curl: {err}"))?;
            let seconds = started.elapsed().as_secs_f64();
            let size = std::fs::metadata(&out).map_err(|e| e.to_string())?.len();
            if !status.success() || size != len as u64 {
                return Err(format!("curl failed ({status}, {size} bytes)"));
            }
            std::fs::remove_file(&out).map_err(|e| e.to_string())?;
            curl.push(megabytes / seconds);
            Ok(())
        };
        let measure_client = |client: &mut Vec<f64>| -> Result<(), String> {
            let out = dir.path().join("client.bin");
            let mut file = std::fs::File::create(&out).map_err(|e| e.to_string())?;
            let settings = xbundle::assets::Settings {
                timeout: std::time::Duration::from_secs(30),
                attempts: 1,
                backoff: std::time::Duration::from_millis(100),
                max_size: u64::MAX,
            };
            let transfer = xbundle::shell::Transfer::start("bench", None);
            let started = Instant::now();
            let downloaded = xbundle::assets::download(&url, &mut file, &settings, &transfer)?;
            let seconds = started.elapsed().as_secs_f64();
            if downloaded.digest != digest || downloaded.size != len as u64 {
                return Err("the client's download differs from the file".into());
            }
            drop(file);
            std::fs::remove_file(&out).map_err(|e| e.to_string())?;
            client.push(megabytes / seconds);
            Ok(())
        };
        if round % 2 == 0 {
            measure_curl(&mut curl)?;
            measure_client(&mut client)?;
        } else {
            measure_client(&mut client)?;
            measure_curl(&mut curl)?;
        }
        task.push(megabytes / fetch_task(dir.path(), round, &url, &digest)?);
    }
    let median = crate::bench::median;
    let (curl, client, task) = (median(&curl), median(&client), median(&task));
    let ratio = client / curl;
    println!(
        "asset downloads, {} MiB from 127.0.0.1, median of {} round(s):\n  curl                  {curl:>8.0} MB/s\n  xbundle client        {client:>8.0} MB/s  ({:.0}% of curl; goal >= 90%)\n  whole fetch: task     {task:>8.0} MB/s  (download + CAS put + engine output store)",
        options.size_mib,
        options.runs,
        ratio * 100.0
    );
    if options.json {
        println!(
            "{}",
            serde_json::json!({"size_mib": options.size_mib, "runs": options.runs, "curl_mb_s": curl, "client_mb_s": client, "task_mb_s": task, "client_over_curl": ratio})
        );
    }
    Ok(())
}

/// Seconds of `xtask task fetch:big@linux-x64` on a fresh repository and cache.
fn fetch_task(
    base: &Path,
    round: usize,
    url: &str,
    digest: &engine::Digest,
) -> Result<f64, String> {
    let repo = base.join(format!("repo-{round}"));
    let platforms = Path::new(env!("CARGO_MANIFEST_DIR")).join("../platforms/linux-x64.toml");
    std::fs::create_dir_all(repo.join("platforms")).map_err(|e| e.to_string())?;
    std::fs::copy(platforms, repo.join("platforms/linux-x64.toml")).map_err(|e| e.to_string())?;
    std::fs::write(
        repo.join("bundle.toml"),
        format!(
            "[[assets]]\nid = \"big\"\nurl = \"{url}\"\nsha256 = \"{digest}\"\nplatforms = [\"linux-x64\"]\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let status = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .arg("--root")
        .arg(&repo)
        .args(["-q", "task", "fetch:big@linux-x64"])
        .status()
        .map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        return Err(format!("the fetch task failed ({status})"));
    }
    std::fs::remove_dir_all(&repo).map_err(|e| e.to_string())?;
    Ok(seconds)
}
