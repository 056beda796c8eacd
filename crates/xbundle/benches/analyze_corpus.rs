//! Benchmark: analyzing all 138 corpus scenarios in one process (parsing every definition, the
//! DAG, requirements, fitness for every tier and every swap suggestion). Goal: under 100 ms.
//!
//! `cargo bench -p xbundle --bench analyze_corpus` (needs ../shared/conformance).

use std::time::{Duration, Instant};

use camino::Utf8Path;
use xbundle::analysis::{Catalog, Layout, Request, analyze};

fn main() {
    let corpus =
        Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/vrooli");
    if !corpus.is_dir() {
        eprintln!("skipped: no corpus at {corpus}");
        return;
    }
    let layout = Layout {
        root: corpus.clone(),
        scenarios: "scenarios".into(),
        resources: "resources".into(),
    };
    let names = layout.scenario_names();
    let mut times: Vec<Duration> = Vec::new();
    let mut suggestions = 0;
    for _ in 0..30 {
        let started = Instant::now();
        // A fresh catalog each time: every file is read and parsed again.
        let catalog = Catalog::new(layout.clone());
        suggestions = 0;
        for name in &names {
            let request = Request {
                scenario: name.clone(),
                ..Request::default()
            };
            let analysis = analyze(&catalog, &request).expect("the corpus analyzes");
            suggestions += analysis.swaps.len();
        }
        times.push(started.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "analyze corpus: {} scenarios, {suggestions} swap suggestions; median {:.1} ms, min {:.1} ms, max {:.1} ms over {} runs (goal: < 100 ms)",
        names.len(),
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1]),
        times.len()
    );
}
