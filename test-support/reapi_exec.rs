//! An execution-capable BuildGrid for tests: a throw-away PostgreSQL cluster, BuildGrid's
//! migrations, a server with the Execution service, and the test worker
//! (`reapi_worker.py`), one set per test binary ([`shared`]).
//!
//! Include it beside the two harnesses it uses:
//! `#[path = ".../test-support/postgres.rs"] mod postgres;`,
//! `#[path = ".../test-support/buildgrid.rs"] mod buildgrid;`,
//! `#[path = ".../test-support/reapi_exec.rs"] mod reapi_exec;`.
//!
//! Invariants: nothing outlives the test process (the server and the worker run under
//! supervisors holding a lifeline pipe; the worker's supervisor also stops the cluster and
//! removes it and the worker's directory). A missing `postgresql` or `bgd` fails the test
//! naming the package under `XBUNDLE_REQUIRE_TOOLS=1`, and otherwise skips it.
#![allow(dead_code)]

use std::sync::OnceLock;

use super::buildgrid::{self, BuildGrid, Supervised};
use super::postgres;

pub struct Execution {
    pub server: BuildGrid,
    pub worker: Supervised,
}

impl Execution {
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The worker's log so far (one line per action it ran or refused).
    pub fn worker_log(&self) -> String {
        self.worker.log_text()
    }
}

/// PostgreSQL's binaries, or `None` (after printing that the test skipped).
pub fn postgres_bin() -> Option<std::path::PathBuf> {
    let found = postgres::find_bin();
    if found.is_none() {
        assert!(
            std::env::var("XBUNDLE_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "PostgreSQL is required for this test (XBUNDLE_REQUIRE_TOOLS=1): install postgresql"
        );
        eprintln!("skipped: PostgreSQL is not installed (postgresql)");
    }
    found
}

/// The binary's execution server and worker, started on first use; `None` when a tool is
/// missing.
pub fn shared() -> Option<&'static Execution> {
    static SHARED: OnceLock<Option<Execution>> = OnceLock::new();
    SHARED.get_or_init(start).as_ref()
}

/// A fresh cluster, server and worker.
pub fn start() -> Option<Execution> {
    let bin = postgres_bin()?;
    let bgd = buildgrid::bgd()?;
    let cluster = postgres::TempPostgres::start(&bin, "bgd");
    let url = cluster.url("bgd");
    buildgrid::migrate(&bgd, &url);
    let cleanup = cluster.detach();
    let work_dir = tempfile::Builder::new()
        .prefix("xbundle-worker-")
        .tempdir()
        .expect("a temporary directory for the worker")
        .keep();
    let cleanup = format!(
        "{cleanup}; rm -rf -- '{}'",
        work_dir.display().to_string().replace('\'', r"'\''")
    );
    // Until the worker's supervisor owns the cleanup, a failed server start must not leave the
    // cluster running.
    let server = match std::panic::catch_unwind(|| BuildGrid::start_execution(&bgd, &url)) {
        Ok(server) => server,
        Err(panic) => {
            let _ = std::process::Command::new("sh")
                .arg("-c")
                .arg(&cleanup)
                .status();
            std::panic::resume_unwind(panic);
        }
    };
    let worker = buildgrid::start_worker(&server, &work_dir, &cleanup);
    Some(Execution { server, worker })
}
