//! The HTTP remote cache: the bazel-remote layout, served by bazel-remote, nginx with WebDAV
//! (`dav_methods PUT`), S3 gateways and their peers.
//!
//! ```text
//! GET|PUT|HEAD <base>/ac/<key hex>       an action entry (the engine's encoding)
//! GET|PUT|HEAD <base>/cas/<sha256 hex>   a blob
//! ```
//!
//! 404 means absent; any other status than 200 (201 and 204 for a PUT) is the server failing.
//! Invariants:
//! - every call is bounded by the connect and read timeouts; no redirect is followed (a
//!   redirect could carry the credentials elsewhere);
//! - a body is bounded in time as well as in size: past a grace of the read timeout it must
//!   arrive at [`MIN_RATE`] on average, so a server trickling a byte per read timeout (or a
//!   chunked body that never ends) is a failure, not a build that never finishes;
//! - reads are bounded: an entry never past the caller's `max`, a blob never past its size
//!   (a `Content-Length` over either is refused before the body is read);
//! - blobs go up streamed, with their exact `Content-Length` (never whole in memory);
//! - the URL in messages is the configured one, which holds no credentials
//!   ([`super::check_url`]); the `Authorization` header is never printed.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::Digest;
use engine::remote::{RemoteBackend, RemoteError};
use engine::store::ActionResult;
use ureq::http::StatusCode;

/// The slowest a response body may arrive on average (bytes per second), once the read timeout
/// has passed since its first byte was asked for.
pub const MIN_RATE: u64 = 16 * 1024;

/// The HTTP backend of [`engine::remote::RemoteCache`].
pub struct HttpCache {
    agent: ureq::Agent,
    /// The read timeout: also the grace before [`MIN_RATE`] applies to a body.
    timeout: Duration,
    /// Without a trailing `/`.
    base: String,
    /// The `Authorization` header's value, if any.
    authorization: Option<String>,
}

impl HttpCache {
    /// A cache at `base` (checked by [`super::check_url`]); nothing is sent until the first call.
    pub fn new(base: &str, timeout: Duration, authorization: Option<String>) -> HttpCache {
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_connect(Some(timeout.min(super::CONNECT_TIMEOUT)))
            .timeout_recv_response(Some(timeout))
            .timeout_per_read(Some(timeout))
            .timeout_per_write(Some(timeout))
            .max_redirects(0)
            .http_status_as_error(false)
            .user_agent(concat!("xbundle/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        HttpCache {
            agent,
            timeout,
            base: base.trim_end_matches('/').to_string(),
            authorization,
        }
    }

    fn url(&self, area: &str, digest: &Digest) -> String {
        format!("{}/{area}/{}", self.base, digest.to_hex())
    }

    fn authorize<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.authorization {
            Some(value) => request.header("Authorization", value),
            None => request,
        }
    }

    /// `url` below the base, for messages (which name the server already).
    fn shown<'a>(&self, url: &'a str) -> &'a str {
        url.strip_prefix(&self.base)
            .map_or(url, |rest| rest.trim_start_matches('/'))
    }

    /// A request that failed before a status: unreachable, timed out, TLS.
    fn failed(&self, method: &str, url: &str, err: &ureq::Error) -> RemoteError {
        let url = self.shown(url);
        let why = match err {
            ureq::Error::Timeout(what) => format!("timed out ({what})"),
            ureq::Error::Io(err) => err.to_string(),
            other => other.to_string(),
        };
        RemoteError::Unavailable(format!("{method} {url}: {why}"))
    }

    fn status(&self, method: &str, url: &str, status: StatusCode) -> RemoteError {
        let url = self.shown(url);
        let hint = match status.as_u16() {
            401 | 403 => {
                " (check XBUNDLE_REMOTE_CACHE_TOKEN, or XBUNDLE_REMOTE_CACHE_USER and XBUNDLE_REMOTE_CACHE_PASSWORD)"
            }
            _ => "",
        };
        RemoteError::Unavailable(format!(
            "{method} {url}: the server answered {status}{hint}"
        ))
    }

    fn get(&self, url: &str) -> Result<ureq::http::Response<ureq::Body>, RemoteError> {
        self.authorize(self.agent.get(url))
            .call()
            .map_err(|err| self.failed("GET", url, &err))
    }
}

/// Copies at most `limit` bytes of `body` to `out`: `Err` naming what arrived past it, or when
/// the body arrives slower than [`MIN_RATE`] after a grace of `grace`.
fn copy_bounded(
    body: &mut ureq::Body,
    out: &mut dyn Write,
    limit: u64,
    url: &str,
    grace: Duration,
) -> Result<u64, RemoteError> {
    let mut reader = body.with_config().limit(u64::MAX).reader().take(limit + 1);
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    let started = Instant::now();
    loop {
        let read = reader.read(&mut buffer).map_err(|err| {
            RemoteError::Unavailable(format!("GET {url}: the transfer broke off ({err})"))
        })?;
        if read == 0 {
            return Ok(total);
        }
        total += read as u64;
        let elapsed = started.elapsed();
        if elapsed > grace + Duration::from_secs_f64(total as f64 / MIN_RATE as f64) {
            return Err(RemoteError::Unavailable(format!(
                "GET {url}: the server is too slow ({total} bytes in {:.0} s)",
                elapsed.as_secs_f64()
            )));
        }
        if total > limit {
            return Err(RemoteError::Garbage(format!(
                "GET {url}: more than the {limit} bytes expected"
            )));
        }
        out.write_all(&buffer[..read])
            .map_err(|err| RemoteError::Garbage(format!("GET {url}: {err}")))?;
    }
}

impl RemoteBackend for HttpCache {
    fn source(&self) -> &'static str {
        "http"
    }

    fn describe(&self) -> String {
        self.base.clone()
    }

    fn get_action(&self, key: &Digest, max: u64) -> Result<Option<Vec<u8>>, RemoteError> {
        let url = self.url("ac", key);
        let mut response = self.get(&url)?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            status => return Err(self.status("GET", &url, status)),
        }
        if let Some(length) = response.body().content_length()
            && length > max
        {
            return Err(RemoteError::Garbage(format!(
                "GET {}: an entry of {length} bytes, more than any entry is",
                self.shown(&url)
            )));
        }
        let mut bytes = Vec::new();
        copy_bounded(
            response.body_mut(),
            &mut bytes,
            max,
            self.shown(&url),
            self.timeout,
        )?;
        Ok(Some(bytes))
    }

    fn put_action(
        &self,
        key: &Digest,
        entry: &[u8],
        _result: &ActionResult,
    ) -> Result<(), RemoteError> {
        let url = self.url("ac", key);
        let response = self
            .authorize(self.agent.put(&url))
            .send(entry)
            .map_err(|err| self.failed("PUT", &url, &err))?;
        match response.status().as_u16() {
            200 | 201 | 204 => Ok(()),
            _ => Err(self.status("PUT", &url, response.status())),
        }
    }

    fn find_missing(&self, blobs: &[(Digest, u64)]) -> Result<Vec<Digest>, RemoteError> {
        let mut missing = Vec::new();
        for (digest, size) in blobs {
            let url = self.url("cas", digest);
            let response = self
                .authorize(self.agent.head(&url))
                .call()
                .map_err(|err| self.failed("HEAD", &url, &err))?;
            match response.status() {
                // A blob of another size is damaged: uploaded again.
                StatusCode::OK => {
                    if response
                        .body()
                        .content_length()
                        .is_some_and(|length| length != *size)
                    {
                        missing.push(*digest);
                    }
                }
                StatusCode::NOT_FOUND => missing.push(*digest),
                status => return Err(self.status("HEAD", &url, status)),
            }
        }
        Ok(missing)
    }

    fn get_blob(
        &self,
        digest: &Digest,
        size: u64,
        out: &mut dyn Write,
    ) -> Result<bool, RemoteError> {
        let url = self.url("cas", digest);
        let mut response = self.get(&url)?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(false),
            status => return Err(self.status("GET", &url, status)),
        }
        if let Some(length) = response.body().content_length()
            && length != size
        {
            return Err(RemoteError::Garbage(format!(
                "GET {}: a blob of {length} bytes, the entry says {size}",
                self.shown(&url)
            )));
        }
        copy_bounded(
            response.body_mut(),
            out,
            size,
            self.shown(&url),
            self.timeout,
        )?;
        Ok(true)
    }

    fn put_blob(&self, digest: &Digest, size: u64, body: &mut dyn Read) -> Result<(), RemoteError> {
        let url = self.url("cas", digest);
        let response = self
            .authorize(self.agent.put(&url))
            .header("Content-Length", size.to_string())
            .send(ureq::SendBody::from_reader(body))
            .map_err(|err| self.failed("PUT", &url, &err))?;
        match response.status().as_u16() {
            200 | 201 | 204 => Ok(()),
            _ => Err(self.status("PUT", &url, response.status())),
        }
    }
}
