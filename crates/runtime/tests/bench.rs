//! Benchmark (ignored; figures are reported, never asserted):
//!
//! ```sh
//! cargo test --release -p runtime --test integration bench:: -- --ignored --nocapture
//! ```
//!
//! On the fixture bundle (API, worker, static UI; no secret to prompt for), per run: the time
//! from spawning the runtime to `/readyz` answering 200, minus the services' own readiness
//! time along the dependency chain (`api`, then the slower of `worker` and `ui`, each from
//! its spawn to its readiness as the runtime measured it); and the runtime's peak RSS
//! (`VmHWM`, the supervisor process alone: shims and services are separate processes).

use crate::common;

use common::*;
use std::time::{Duration, Instant};

#[test]
#[ignore]
fn startup_overhead_and_peak_rss() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let mut overheads = Vec::new();
    let mut totals = Vec::new();
    let mut rss = Vec::new();
    for run in 0..runs {
        let fixture = Fixture::new(&format!("bench{run}"), &fixture_manifest("1.0.0", false));
        let started = Instant::now();
        let _ = std::fs::remove_file(fixture.app_data.join("runtime/ipc-port"));
        let mut child = std::process::Command::new(RUNTIME)
            .arg("--bundle")
            .arg(&fixture.bundle)
            .arg("--app-data")
            .arg(&fixture.app_data)
            .stderr(if std::env::var_os("BENCH_STDERR").is_some() {
                std::process::Stdio::inherit()
            } else {
                std::process::Stdio::null()
            })
            .spawn()
            .unwrap();
        let port_file = fixture.app_data.join("runtime/ipc-port");
        let (port, token) = loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.trim().parse::<u16>().ok())
            {
                break (
                    port,
                    std::fs::read_to_string(fixture.app_data.join("runtime/auth-token")).unwrap(),
                );
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        while request(port, "GET", "/readyz", Some(&token), None).0 != 200 {
            assert!(started.elapsed() < Duration::from_secs(30));
            std::thread::sleep(Duration::from_micros(500));
        }
        let total = started.elapsed().as_secs_f64() * 1000.0;
        let status: serde_json::Value =
            serde_json::from_str(&request(port, "GET", "/status", Some(&token), None).1).unwrap();
        let ready = |id: &str| -> f64 {
            status["services"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["id"] == id)
                .unwrap()["ready_after_ms"]
                .as_u64()
                .unwrap() as f64
        };
        let own = ready("api") + ready("worker").max(ready("ui"));
        let hwm = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .unwrap();
        request(port, "POST", "/shutdown", Some(&token), None);
        child.wait().unwrap();
        totals.push(total);
        overheads.push(total - own);
        rss.push(hwm / 1024.0);
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(|a, b| a.partial_cmp(b).unwrap());
        values[values.len() / 2]
    };
    println!(
        "runtime startup over {runs} runs (median): start to /readyz {:.1} ms; minus the services' own readiness {:.1} ms; peak RSS {:.1} MB (max {:.1} MB)",
        median(&mut totals),
        median(&mut overheads),
        median(&mut rss.clone()),
        rss.iter().cloned().fold(0.0, f64::max)
    );
}
