//! The `remote_fetch` client: one GET of a secret's `fetch.url`, over https or loopback http.
//!
//! The URL rule is the manifest's ([`manifest::FetchUrl`]): `https://` anywhere, `http://` only
//! to a loopback host, nothing else. Validation has refused every other URL before anything
//! runs; the rule is applied again here so that no caller can fetch around it.
//!
//! - TLS is rustls (ring provider) through ureq, verified by the platform's verifier
//!   (`rustls-platform-verifier`: on Linux the system's roots through rustls-native-certs,
//!   which reads only `SSL_CERT_FILE` / `SSL_CERT_DIR` when they are set; the OS verifier on
//!   macOS and Windows). No certificate is ever accepted unverified.
//! - The request goes to the URL rebuilt from its checked parts ([`FetchUrl::request_url`]);
//!   `user:password@` becomes a Basic `Authorization` header, and neither appears in an
//!   error.
//! - Redirects are not followed (a redirect could lead to plain http elsewhere): a 3xx is a
//!   failure like any non-2xx. Loopback requests never go through a proxy; others honour the
//!   usual proxy variables (`HTTPS_PROXY`, `NO_PROXY`).
//! - The whole exchange has one deadline (`timeout_ms`), and the body is read up to
//!   [`MAX_BODY_BYTES`]: a larger answer is a failure, not a truncated secret.
//!
//! **Invariant:** errors name the URL without credentials or query ([`manifest::redact_url`]),
//! and never hold the response body.

use manifest::{FetchUrl, redact_url};
use std::sync::Arc;
use std::time::Duration;

/// Largest response body accepted (a secret, not a download).
pub const MAX_BODY_BYTES: u64 = 64 * 1024;

/// A fetch's answer: the status and, for 2xx, the body.
pub struct Fetched {
    pub status: u16,
    pub body: Vec<u8>,
}

/// GETs `url` with `headers`, within `timeout`. The error says why, without credentials.
pub fn get(url: &str, headers: &[(String, String)], timeout: Duration) -> Result<Fetched, String> {
    let parsed = FetchUrl::parse(url).map_err(|err| err.to_string())?;
    let shown = redact_url(url);
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build();
    let mut config = ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .http_status_as_error(false)
        .user_agent("xbundle-runtime");
    if parsed.is_loopback() {
        config = config.proxy(None);
    }
    let agent: ureq::Agent = config.build().into();
    let mut request = agent.get(parsed.request_url());
    if let Some(userinfo) = parsed.userinfo {
        let credentials = percent_decode(userinfo);
        request = request.header(
            "Authorization",
            format!("Basic {}", super::base64(&credentials)),
        );
    }
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let mut response = request.call().map_err(|err| describe(&err, &shown))?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        return Ok(Fetched {
            status,
            body: Vec::new(),
        });
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY_BYTES)
        .read_to_vec()
        .map_err(|err| match err {
            ureq::Error::BodyExceedsLimit(_) => {
                format!("{shown}: the answer is larger than {MAX_BODY_BYTES} bytes")
            }
            other => describe(&other, &shown),
        })?;
    Ok(Fetched { status, body })
}

/// A ureq error, in words, for `shown` (the redacted URL). ureq's own messages name hosts,
/// never credentials (they are not in the URL it was given), but they are rephrased for the
/// cases a user meets.
fn describe(err: &ureq::Error, shown: &str) -> String {
    match err {
        ureq::Error::Timeout(_) => format!("{shown}: timed out"),
        ureq::Error::Io(io) => match io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => format!("{shown}: TLS: {tls}"),
            None => format!("{shown}: {io}"),
        },
        ureq::Error::Rustls(tls) => format!("{shown}: TLS: {tls}"),
        other => format!("{shown}: {other}"),
    }
}

/// `%XX` decoding of the userinfo (`user:p%40ss` is `user:p@ss`); bytes, not text.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((high * 16 + low) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_percent_decoded() {
        assert_eq!(percent_decode("user:p%40ss%2"), b"user:p@ss%2");
        assert_eq!(percent_decode("a%3Ab"), b"a:b");
    }

    #[test]
    fn urls_outside_the_rule_are_never_requested() {
        for url in [
            "http://vault.example/x",
            "ftp://127.0.0.1/x",
            "file:///etc/passwd",
        ] {
            let err = get(url, &[], Duration::from_millis(100)).err().unwrap();
            assert!(err.starts_with("fetch url"), "{url}: {err}");
        }
    }
}
