//! The remote executor as the user configures it: `[cache] remote-executor`,
//! `remote-instance` and `remote-platform` in bundle.toml, `--remote-executor` on the commands
//! that run tasks, the bearer token from the environment; the REAPI executor
//! ([`reapi::execute::ReapiExecutor`]) behind the engine's [`RemoteExecutor`].
//!
//! Invariants:
//! - nothing here connects when the run starts: the first task that may run remotely connects
//!   (once; a failure is the engine's one warning, and the run goes on locally);
//! - the URL never holds credentials (refused); the token comes from
//!   [`super::TOKEN_VARIABLE`] and is never printed;
//! - the platform properties default to this host's, named as REAPI's platform lexicon names
//!   them (`OSFamily` = `linux`, `macos`, `windows`; `ISA` = `x86-64`, `x86-32`, `arm-a64`,
//!   `arm-a32`), so a farm hands the work to workers that can run this host's commands.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use engine::Digest;
use engine::remote::{RemoteBackend, RemoteError};
use engine::remote_exec::{
    BlobSource, ExecuteRequest, ExecuteResponse, RemoteExecution, RemoteExecutor,
};
use engine::store::ActionResult;
use reapi::execute::ReapiExecutor;
use reapi::{ReapiBackend, ReapiOptions, ReapiUrl};

pub const URL_HELP: &str = "give the executor's address, e.g. remote-executor = \"grpc://127.0.0.1:8980\" or \"grpcs://remote.example.com\" (REAPI); a bearer token goes in XBUNDLE_REMOTE_CACHE_TOKEN, never in the URL";

/// Checks an executor URL (`grpc://HOST:PORT`, `grpcs://HOST[:PORT]`, no credentials).
pub fn check_url(url: &str) -> Result<(), String> {
    ReapiUrl::parse(url).map(|_| ())
}

/// This host's platform properties, as REAPI's lexicon names them.
pub fn host_platform() -> BTreeMap<String, String> {
    // Rust's names are the lexicon's (`linux`, `macos`, `windows`, `freebsd`, …).
    let os = std::env::consts::OS;
    let isa = match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        "x86" => "x86-32",
        "aarch64" => "arm-a64",
        "arm" => "arm-a32",
        other => other,
    };
    BTreeMap::from([
        ("ISA".to_string(), isa.to_string()),
        ("OSFamily".to_string(), os.to_string()),
    ])
}

/// The executor a run uses: `--remote-executor` over `[cache] remote-executor`; `None`: none.
pub fn resolve(
    config: &crate::config::CacheSettings,
    url: Option<&str>,
) -> Option<RemoteExecution> {
    let url = url
        .map(str::to_string)
        .or_else(|| config.remote_executor.clone())?;
    let timeout = config
        .remote_timeout
        .map_or(super::DEFAULT_TIMEOUT, Duration::from_secs_f64);
    let lazy = Arc::new(Lazy {
        url,
        options: ReapiOptions {
            instance: config.remote_instance.clone(),
            token: super::variable(super::TOKEN_VARIABLE),
            ca_certificate: None,
            connect_timeout: timeout.min(super::CONNECT_TIMEOUT),
            call_timeout: timeout,
        },
        connected: OnceLock::new(),
    });
    Some(RemoteExecution {
        executor: lazy.clone(),
        blobs: lazy,
        platform: config.remote_platform.clone().unwrap_or_else(host_platform),
        timeout: None,
        local_jobs: engine::exec::default_jobs(),
    })
}

/// A REAPI executor connected on first use.
struct Lazy {
    url: String,
    options: ReapiOptions,
    connected: OnceLock<Result<ReapiExecutor, String>>,
}

impl Lazy {
    fn get(&self) -> Result<&ReapiExecutor, RemoteError> {
        self.connected
            .get_or_init(|| {
                let backend = ReapiBackend::connect(&self.url, self.options.clone())
                    .map_err(|err| err.to_string())?;
                ReapiExecutor::new(Arc::new(backend)).map_err(|err| err.to_string())
            })
            .as_ref()
            .map_err(|problem| RemoteError::Unavailable(problem.clone()))
    }
}

impl RemoteExecutor for Lazy {
    fn describe(&self) -> String {
        let url =
            ReapiUrl::parse(&self.url).map_or_else(|_| self.url.clone(), |url| url.to_string());
        if self.options.instance.is_empty() {
            url
        } else {
            format!("{url} (instance {})", self.options.instance)
        }
    }

    fn execute(
        &self,
        request: &ExecuteRequest<'_>,
        blobs: &dyn BlobSource,
    ) -> Result<ExecuteResponse, RemoteError> {
        self.get()?.execute(request, blobs)
    }
}

/// The executor's CAS, for the engine to fetch outputs from.
impl RemoteBackend for Lazy {
    fn source(&self) -> &'static str {
        "reapi"
    }

    fn describe(&self) -> String {
        RemoteExecutor::describe(self)
    }

    fn get_action(&self, key: &Digest, max: u64) -> Result<Option<Vec<u8>>, RemoteError> {
        self.get()?.backend().get_action(key, max)
    }

    fn put_action(
        &self,
        key: &Digest,
        entry: &[u8],
        result: &ActionResult,
    ) -> Result<(), RemoteError> {
        self.get()?.backend().put_action(key, entry, result)
    }

    fn find_missing(&self, blobs: &[(Digest, u64)]) -> Result<Vec<Digest>, RemoteError> {
        self.get()?.backend().find_missing(blobs)
    }

    fn get_blob(
        &self,
        digest: &Digest,
        size: u64,
        out: &mut dyn Write,
    ) -> Result<bool, RemoteError> {
        self.get()?.backend().get_blob(digest, size, out)
    }

    fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        body: &mut dyn std::io::Read,
    ) -> Result<(), RemoteError> {
        self.get()?.backend().put_blob(digest, size, body)
    }
}
