//! The remote cache as the user configures it: `[cache] remote*` in bundle.toml, the
//! `--remote-cache*` options, the credentials and the signing key from the environment, and the
//! backend for the URL's scheme (the engine's remote tier, [`engine::remote`], does the rest).
//!
//! Invariants:
//! - a URL never holds credentials (refused with a diagnostic: they would end up in messages,
//!   logs and bundle.toml); bearer or basic auth come from the environment only
//!   ([`TOKEN_VARIABLE`], [`USER_VARIABLE`] and [`PASSWORD_VARIABLE`]), and are never printed;
//! - nothing here connects: the first request is the first lookup of a run (`check`,
//!   `--dry-run` and `explain` never reach the server);
//! - `grpc://` and `grpcs://` reach the Remote Execution API backend (the `reapi` crate), which
//!   connects on the first call of a run: a run whose every task is up to date never dials, and
//!   a server that cannot be reached is the remote tier's one warning, then a local build.

pub mod exec;
pub mod http;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use engine::Digest;
use engine::remote::{RemoteBackend, RemoteCache, RemoteError};
use engine::store::ActionResult;

/// The remote cache's URL (empty: none), between bundle.toml and `--remote-cache`; what the
/// workflow `cargo xtask ci github` writes sets from a repository variable.
pub const URL_VARIABLE: &str = "XBUNDLE_REMOTE_CACHE";
/// Bearer token for the remote cache.
pub const TOKEN_VARIABLE: &str = "XBUNDLE_REMOTE_CACHE_TOKEN";
/// Basic auth user (with [`PASSWORD_VARIABLE`]).
pub const USER_VARIABLE: &str = "XBUNDLE_REMOTE_CACHE_USER";
pub const PASSWORD_VARIABLE: &str = "XBUNDLE_REMOTE_CACHE_PASSWORD";
/// The key entries are signed with (HMAC-SHA256); with it set, unsigned or badly signed entries
/// are misses.
pub const HMAC_KEY_VARIABLE: &str = "XBUNDLE_REMOTE_CACHE_HMAC_KEY";

/// The default read timeout (and the most a connection may take).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub const URL_HELP: &str = "give the cache's base URL, e.g. remote = \"https://cache.example.com/xbundle\" (http, https) or \"grpcs://remote.example.com\" (REAPI); credentials go in XBUNDLE_REMOTE_CACHE_TOKEN, or XBUNDLE_REMOTE_CACHE_USER and XBUNDLE_REMOTE_CACHE_PASSWORD, never in the URL";

/// Why `url` is not a remote cache URL.
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url.parse().map_err(|err| format!("is not a URL ({err})"))?;
    match uri.scheme_str() {
        Some("http" | "https" | "grpc" | "grpcs") => {}
        Some(other) => {
            return Err(format!(
                "has the scheme `{other}`; a remote cache is http, https, grpc or grpcs"
            ));
        }
        None => return Err("has no scheme (http://, https://, grpc:// or grpcs://)".into()),
    }
    let Some(authority) = uri.authority() else {
        return Err("names no server".into());
    };
    if authority.as_str().contains('@') {
        return Err("holds credentials".into());
    }
    if authority.host().is_empty() {
        return Err("names no server".into());
    }
    if uri.query().is_some() || url.contains('#') {
        return Err("has a query or a fragment".into());
    }
    if url.starts_with("grpc") {
        // No path (the instance name is `remote-instance`), a port where one is needed.
        reapi::ReapiUrl::parse(url)?;
    }
    Ok(())
}

/// Why `name` is not a REAPI instance name: `/`-separated components of letters, digits, `-`,
/// `_` and `.`, none empty, `.` or `..`, none of the words the API reserves in resource names
/// (`blobs`, `uploads`, `actions`, `actionResults`, `operations`, `capabilities`,
/// `compressed-blobs`), at most 256 bytes. `""` is the server's default instance.
pub fn check_instance(name: &str) -> Result<(), String> {
    const RESERVED: [&str; 7] = [
        "blobs",
        "uploads",
        "actions",
        "actionResults",
        "operations",
        "capabilities",
        "compressed-blobs",
    ];
    if name.is_empty() {
        return Ok(());
    }
    if name.len() > 256 {
        return Err("is longer than 256 bytes".into());
    }
    for component in name.split('/') {
        if component.is_empty() || component == "." || component == ".." {
            return Err(format!("{name:?} has an empty, `.` or `..` component"));
        }
        if RESERVED.contains(&component) {
            return Err(format!(
                "{name:?} uses `{component}`, a word the Remote Execution API reserves in resource names"
            ));
        }
        if let Some(bad) = component
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(format!(
                "{name:?} holds {bad:?}: use letters, digits, `-`, `_`, `.` and `/`"
            ));
        }
    }
    Ok(())
}

/// Why `seconds` is not a timeout.
pub fn check_timeout(seconds: f64) -> Result<(), String> {
    if seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0 {
        Ok(())
    } else {
        Err(format!(
            "is {seconds}: a timeout is more than 0 and at most 3600 seconds"
        ))
    }
}

/// The remote cache a run uses.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: String,
    pub read_only: bool,
    pub timeout: Duration,
    /// The REAPI instance name (`grpc://`, `grpcs://` only).
    pub instance: String,
}

impl Settings {
    /// From bundle.toml's `[cache]`, [`URL_VARIABLE`] and the options: `--remote-cache` over the
    /// variable over `remote`; `read_only` adds to `remote-read-only`; `off` wins. `None`: no
    /// remote cache. Every URL was checked by [`check_url`] ([`url_variable`] for the variable).
    pub fn resolve(
        config: &crate::config::CacheSettings,
        url: Option<&str>,
        read_only: bool,
        off: bool,
    ) -> Option<Settings> {
        if off {
            return None;
        }
        let url = url
            .map(str::to_string)
            .or_else(|| variable(URL_VARIABLE))
            .or_else(|| config.remote.clone())?;
        Some(Settings {
            url,
            read_only: read_only || config.remote_read_only,
            timeout: config
                .remote_timeout
                .map_or(DEFAULT_TIMEOUT, Duration::from_secs_f64),
            instance: config.remote_instance.clone(),
        })
    }
}

/// [`URL_VARIABLE`], when set and not empty, checked.
pub fn url_variable() -> Result<Option<String>, String> {
    match variable(URL_VARIABLE) {
        Some(url) => check_url(&url).map(|()| Some(url)),
        None => Ok(None),
    }
}

pub(crate) fn variable(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The `Authorization` header from the environment: a bearer token, else basic auth.
fn authorization() -> Option<String> {
    use base64::Engine as _;
    if let Some(token) = variable(TOKEN_VARIABLE) {
        return Some(format!("Bearer {token}"));
    }
    let user = variable(USER_VARIABLE)?;
    let password = variable(PASSWORD_VARIABLE).unwrap_or_default();
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    Some(format!("Basic {encoded}"))
}

/// The engine's remote tier for `settings` (the URL was checked with [`check_url`]).
pub fn connect(settings: &Settings) -> RemoteCache {
    let backend: Arc<dyn RemoteBackend> = if settings.url.starts_with("grpc") {
        Arc::new(LazyReapi {
            url: settings.url.clone(),
            options: reapi::ReapiOptions {
                instance: settings.instance.clone(),
                token: variable(TOKEN_VARIABLE),
                ca_certificate: None,
                connect_timeout: CONNECT_TIMEOUT.min(settings.timeout),
                call_timeout: settings.timeout,
            },
            backend: OnceLock::new(),
        })
    } else {
        Arc::new(http::HttpCache::new(
            &settings.url,
            settings.timeout,
            authorization(),
        ))
    };
    RemoteCache::new(backend)
        .read_only(settings.read_only)
        .signing_key(variable(HMAC_KEY_VARIABLE).map(String::into_bytes))
}

/// A `grpc://` or `grpcs://` cache, connected (its Capabilities read) on the first call of a run
/// and never again: a connection that failed answers every later call with the same error (the
/// engine's tier is off after the first one anyway).
struct LazyReapi {
    url: String,
    options: reapi::ReapiOptions,
    backend: OnceLock<Result<reapi::ReapiBackend, String>>,
}

impl LazyReapi {
    fn get(&self) -> Result<&reapi::ReapiBackend, RemoteError> {
        self.backend
            .get_or_init(|| {
                reapi::ReapiBackend::connect(&self.url, self.options.clone())
                    .map_err(|error| error.to_string())
            })
            .as_ref()
            .map_err(|message| RemoteError::Unavailable(message.clone()))
    }
}

impl RemoteBackend for LazyReapi {
    fn source(&self) -> &'static str {
        "reapi"
    }

    fn describe(&self) -> String {
        match self.backend.get() {
            Some(Ok(backend)) => backend.describe(),
            _ if self.options.instance.is_empty() => self.url.clone(),
            _ => format!("{} (instance {})", self.url, self.options.instance),
        }
    }

    fn get_action(&self, key: &Digest, max: u64) -> Result<Option<Vec<u8>>, RemoteError> {
        self.get()?.get_action(key, max)
    }

    fn put_action(
        &self,
        key: &Digest,
        entry: &[u8],
        result: &ActionResult,
    ) -> Result<(), RemoteError> {
        self.get()?.put_action(key, entry, result)
    }

    fn find_missing(&self, blobs: &[(Digest, u64)]) -> Result<Vec<Digest>, RemoteError> {
        self.get()?.find_missing(blobs)
    }

    fn get_blob(
        &self,
        digest: &Digest,
        size: u64,
        out: &mut dyn std::io::Write,
    ) -> Result<bool, RemoteError> {
        self.get()?.get_blob(digest, size, out)
    }

    fn put_blob(
        &self,
        digest: &Digest,
        size: u64,
        body: &mut dyn std::io::Read,
    ) -> Result<(), RemoteError> {
        self.get()?.put_blob(digest, size, body)
    }
}
