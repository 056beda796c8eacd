//! The integration tests of `xtask`, one test binary (one link instead of one per file; the
//! files' tests run side by side): each file below is a module, named as its file.
//! Run one file's tests with `cargo test -p xtask --test integration <file>::`.

#[path = "../../test-support/buildgrid.rs"]
mod buildgrid;
mod common;
#[path = "../../test-support/postgres.rs"]
mod postgres;
#[path = "../../test-support/reapi_exec.rs"]
mod reapi_exec;
#[path = "../src/testserver.rs"]
mod testserver;

mod analysis;
mod assets;
mod attack_cli;
mod attack_output;
mod attack_packaging;
mod attack_remote;
mod attack_serve;
mod attack_stages;
mod attacks16;
mod bundle_json;
mod caching;
mod cli_surface;
mod concurrency;
mod config_confinement;
mod crash_safety;
mod dashboard;
mod demo_apps;
mod diagnostics;
mod direct_exec;
mod discovered;
mod docs;
mod e2e_bundle;
mod electron;
mod engine_speed;
mod explain;
mod failures;
mod graph_and_cache;
mod hooks_ci;
mod interrupt;
mod json_stream;
mod leftovers;
mod output_confinement;
mod output_logs;
mod output_style;
mod own_directories;
mod package_linux;
mod package_win_mac;
mod profiles;
mod publish;
mod readme;
mod remote_exec;
mod remote_http;
mod remote_reapi;
mod secrets;
mod serve;
mod serve_fuzz;
mod stages;
mod stale_hunt;
mod tamper;
mod timings;
mod watch;
