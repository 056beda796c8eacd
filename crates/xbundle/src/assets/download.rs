//! The download client of `fetch:` tasks: one URL into one open file, hashed while it arrives.
//!
//! - `http://` and `https://` through ureq (blocking, rustls with the ring provider, the
//!   platform's certificate verifier: the same client and TLS stack as the runtime's
//!   `remote_fetch`); `file:///path` read from the local file system.
//! - The SHA-256 is computed on the bytes as they are written (no second pass). The caller
//!   compares it with the configured digest.
//! - Timeouts: connecting, waiting for the response head, and each read of the body (an idle
//!   timeout: a slow download that keeps moving is never cut, a stalled one is). Redirects are
//!   followed, at most [`MAX_REDIRECTS`] of them (the digest protects what arrives wherever it
//!   comes from).
//! - Retries with exponential backoff on connection errors, timeouts, cut or short bodies, 408,
//!   429 and 5xx; not on other statuses (a 404 will not heal), an oversized answer or a TLS
//!   failure. A retry after bytes arrived asks for the rest (`Range: bytes=N-`); a `206` whose
//!   `Content-Range` starts at `N` is appended, a `200` (the server ignores ranges) or a `416`
//!   starts again from zero, so what is written is always one consistent body.
//! - The size limit holds for the announced length and for what actually arrives.
//!
//! **Invariant:** errors name the URL without credentials, query or fragment
//! ([`manifest::redact_url`]).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::time::Duration;

use engine::Digest;
use engine::digest::Hasher;

use crate::shell::Transfer;

/// Redirects followed at most.
pub const MAX_REDIRECTS: u32 = 5;

/// How patient a download is.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Connecting, waiting for a response head, and each read of the body.
    pub timeout: Duration,
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// The wait before the second attempt; doubled for each next one, at most 8 s.
    pub backoff: Duration,
    /// Largest body accepted.
    pub max_size: u64,
}

/// A finished download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub digest: Digest,
    pub size: u64,
    /// HTTP requests made (1 when nothing went wrong).
    pub requests: u32,
    /// Requests that continued a cut body with `Range`.
    pub resumed: u32,
}

/// Why a download failed; `retry` when another attempt may succeed.
struct Failure {
    message: String,
    retry: bool,
}

fn fatal(message: String) -> Failure {
    Failure {
        message,
        retry: false,
    }
}

fn transient(message: String) -> Failure {
    Failure {
        message,
        retry: true,
    }
}

/// What has been written so far: one consistent prefix of the body.
struct Progress<'a> {
    out: &'a mut File,
    hasher: Hasher,
    received: u64,
}

impl Progress<'_> {
    fn restart(&mut self) -> std::io::Result<()> {
        self.out.set_len(0)?;
        self.out.seek(SeekFrom::Start(0))?;
        self.hasher = Hasher::new();
        self.received = 0;
        Ok(())
    }
}

/// Downloads `url` into `out` (an empty file open for writing), showing `transfer`.
pub fn download(
    url: &str,
    out: &mut File,
    settings: &Settings,
    transfer: &Transfer,
) -> Result<Downloaded, String> {
    let shown = manifest::redact_url(url);
    if let Some(path) = url.strip_prefix("file://") {
        let path = path.strip_prefix("localhost").unwrap_or(path);
        return copy_local(path, out, settings, transfer).map_err(|err| format!("{shown}: {err}"));
    }
    let agent = agent(settings);
    let mut progress = Progress {
        out,
        hasher: Hasher::new(),
        received: 0,
    };
    let mut requests = 0;
    let mut resumed = 0;
    let mut last = String::new();
    let attempts = settings.attempts.max(1);
    let mut attempt = 0;
    while attempt < attempts {
        attempt += 1;
        if attempt > 1 {
            let exponent = (attempt - 2).min(4);
            std::thread::sleep((settings.backoff * 2u32.pow(exponent)).min(Duration::from_secs(8)));
        }
        requests += 1;
        if progress.received > 0 {
            resumed += 1;
        }
        match one_request(&agent, url, &shown, &mut progress, settings, transfer) {
            Ok(Outcome::Done) => {
                return Ok(Downloaded {
                    digest: progress.hasher.finish(),
                    size: progress.received,
                    requests,
                    resumed,
                });
            }
            Ok(Outcome::StartOver) => {
                // Not a failure of the server's: ask again at once, from zero.
                progress
                    .restart()
                    .map_err(|err| format!("writing the download: {err}"))?;
                attempt -= 1;
                if requests > attempts * 2 + MAX_REDIRECTS {
                    return Err(format!(
                        "{shown}: the server keeps refusing the range asked for"
                    ));
                }
            }
            Err(failure) if failure.retry => last = failure.message,
            Err(failure) => return Err(failure.message),
        }
    }
    Err(format!(
        "{last} (gave up after {attempts} attempt{})",
        if attempts == 1 { "" } else { "s" }
    ))
}

enum Outcome {
    Done,
    /// The server cannot continue where the last attempt stopped: start again from zero.
    StartOver,
}

fn agent(settings: &Settings) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_connect(Some(settings.timeout))
        .timeout_recv_response(Some(settings.timeout))
        .timeout_per_read(Some(settings.timeout))
        .max_redirects(MAX_REDIRECTS)
        .http_status_as_error(false)
        .user_agent(concat!("xbundle/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// `bytes START-END/TOTAL` → (START, TOTAL when given).
fn content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

fn one_request(
    agent: &ureq::Agent,
    url: &str,
    shown: &str,
    progress: &mut Progress<'_>,
    settings: &Settings,
    transfer: &Transfer,
) -> Result<Outcome, Failure> {
    let mut request = agent.get(url);
    if progress.received > 0 {
        request = request.header("Range", format!("bytes={}-", progress.received));
    }
    let mut response = request.call().map_err(|err| describe(&err, shown))?;
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    };
    let length: Option<u64> = header("content-length").and_then(|v| v.trim().parse().ok());
    let total = match status {
        200 => {
            if progress.received > 0 {
                // The server sends the whole body again: take it from the start.
                progress
                    .restart()
                    .map_err(|err| fatal(format!("writing the download: {err}")))?;
            }
            length
        }
        206 if progress.received > 0 => {
            match header("content-range").as_deref().and_then(content_range) {
                Some((start, total)) if start == progress.received => {
                    total.or(length.map(|l| l + start))
                }
                _ => return Ok(Outcome::StartOver),
            }
        }
        416 if progress.received > 0 => return Ok(Outcome::StartOver),
        408 | 429 | 500..=599 => {
            return Err(transient(format!("{shown}: the server answered {status}")));
        }
        _ => {
            return Err(fatal(format!(
                "{shown}: the server answered {status}{}",
                if status == 404 {
                    " (not found: check the asset's url)"
                } else {
                    ""
                }
            )));
        }
    };
    if let Some(total) = total
        && total > settings.max_size
    {
        return Err(fatal(format!(
            "{shown} is {total} bytes, more than the limit of {} bytes (max-size)",
            settings.max_size
        )));
    }
    transfer.set_total(total);
    let mut body = response.body_mut().as_reader();
    // Two threads: this one reads the socket, a second hashes and writes what arrived, so the
    // hashing overlaps the network (the buffers go round between them).
    const BUFFERS: usize = 6;
    const BUFFER: usize = 256 * 1024;
    let (full_send, full_receive) = std::sync::mpsc::sync_channel::<Vec<u8>>(BUFFERS);
    let (empty_send, empty_receive) = std::sync::mpsc::sync_channel::<Vec<u8>>(BUFFERS);
    for _ in 0..BUFFERS {
        let _ = empty_send.send(vec![0u8; BUFFER]);
    }
    let hasher = &mut progress.hasher;
    let out = &mut *progress.out;
    let received = &mut progress.received;
    let read_result = std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> std::io::Result<()> {
            for chunk in full_receive {
                hasher.update(&chunk);
                out.write_all(&chunk)?;
                let _ = empty_send.send(chunk);
            }
            Ok(())
        });
        let read_result = (|| -> Result<(), Failure> {
            loop {
                // The writer stopped (a write failed): its error is reported below.
                let Ok(mut buffer) = empty_receive.recv() else {
                    return Ok(());
                };
                buffer.resize(BUFFER, 0);
                let read = match body.read(&mut buffer) {
                    Ok(read) => read,
                    Err(err) => {
                        return Err(transient(format!(
                            "{shown}: the transfer broke off after {}{} bytes ({err})",
                            *received,
                            total.map_or(String::new(), |total| format!(" of {total}"))
                        )));
                    }
                };
                if read == 0 {
                    return Ok(());
                }
                if *received + read as u64 > settings.max_size {
                    return Err(fatal(format!(
                        "{shown} sends more than the limit of {} bytes (max-size)",
                        settings.max_size
                    )));
                }
                buffer.truncate(read);
                if full_send.send(buffer).is_err() {
                    return Ok(());
                }
                *received += read as u64;
                transfer.set_position(*received);
            }
        })();
        drop(full_send);
        match writer.join() {
            Ok(Ok(())) => read_result,
            Ok(Err(err)) => Err(fatal(format!("writing the download: {err}"))),
            Err(_) => Err(fatal("the download's writer failed".into())),
        }
    });
    read_result?;
    if let Some(total) = total
        && progress.received < total
    {
        return Err(transient(format!(
            "{shown}: the body ended after {} of {total} bytes",
            progress.received
        )));
    }
    Ok(Outcome::Done)
}

fn describe(err: &ureq::Error, shown: &str) -> Failure {
    use ureq::Error;
    match err {
        Error::TooManyRedirects => fatal(format!("{shown}: more than {MAX_REDIRECTS} redirects")),
        Error::RedirectFailed => fatal(format!("{shown}: a redirect could not be followed")),
        Error::BadUri(problem) => fatal(format!("{shown}: bad URL ({problem})")),
        Error::Tls(_) | Error::Rustls(_) => fatal(format!("{shown}: TLS failed: {err}")),
        Error::Timeout(what) => transient(format!("{shown}: timed out ({what})")),
        _ => transient(format!("{shown}: {err}")),
    }
}

/// A `file://` URL: the file copied, hashed on the way, within the size limit.
fn copy_local(
    path: &str,
    out: &mut File,
    settings: &Settings,
    transfer: &Transfer,
) -> Result<Downloaded, String> {
    let mut input = File::open(path).map_err(|err| err.to_string())?;
    let metadata = input.metadata().map_err(|err| err.to_string())?;
    if !metadata.is_file() {
        return Err("not a regular file".into());
    }
    if metadata.len() > settings.max_size {
        return Err(format!(
            "{} bytes, more than the limit of {} bytes (max-size)",
            metadata.len(),
            settings.max_size
        ));
    }
    transfer.set_total(Some(metadata.len()));
    let mut hasher = Hasher::new();
    let mut size = 0u64;
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let read = input.read(&mut buffer).map_err(|err| err.to_string())?;
        if read == 0 {
            break;
        }
        size += read as u64;
        if size > settings.max_size {
            return Err(format!(
                "more than the limit of {} bytes (max-size)",
                settings.max_size
            ));
        }
        hasher.update(&buffer[..read]);
        out.write_all(&buffer[..read])
            .map_err(|err| format!("writing the copy: {err}"))?;
        transfer.set_position(size);
    }
    Ok(Downloaded {
        digest: hasher.finish(),
        size,
        requests: 0,
        resumed: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(content_range("bytes 10-99/100"), Some((10, Some(100))));
        assert_eq!(content_range("bytes 10-99/*"), Some((10, None)));
        assert_eq!(content_range("items 1-2/3"), None);
    }
}
