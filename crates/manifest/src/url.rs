//! `remote_fetch` URLs: which ones a bundle may carry, read the same way by the pipeline (which
//! refuses others at `check`) and the runtime (which fetches them).
//!
//! - `https://` to any host: the runtime verifies the server against the platform's roots;
//! - `http://` only to a loopback host (`localhost`, `127.0.0.0/8`, `[::1]`): a secret must not
//!   cross a network in clear;
//! - every other scheme is refused.
//!
//! The reading is deliberately narrow, so that no two readers can disagree on the host: no
//! spaces, control characters, backslashes or the characters RFC 3986 forbids (`"<>^`{|}`);
//! the host is a DNS name (letters, digits, `.`, `-`, `_`) or an IP literal (`[…]` for IPv6);
//! the port, if any, is 1..=65535; `user:password@` is allowed (the runtime sends it as Basic
//! authentication and never shows it, see [`crate::redact_url`]).
//!
//! **Invariant:** [`FetchUrl::request_url`] rebuilds the URL from the parts checked here, so
//! the host a client connects to is the host this rule looked at.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Schemes a fetch may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A checked `remote_fetch` URL, in parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchUrl<'a> {
    pub scheme: Scheme,
    /// `user:password` (still percent-encoded), if any.
    pub userinfo: Option<&'a str>,
    /// The host as written (IPv6 literals with their brackets).
    pub host: &'a str,
    pub port: Option<u16>,
    /// Path and query (`/` when absent); the fragment is dropped.
    pub path_and_query: &'a str,
}

/// Why a URL is refused. The message never repeats credentials or a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError(String);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UrlError {}

const RULE: &str =
    "a fetch URL is https://, or http:// to a loopback host (localhost, 127.0.0.1, [::1])";

impl<'a> FetchUrl<'a> {
    /// Checks `url` against the rule of this module.
    pub fn parse(url: &'a str) -> Result<FetchUrl<'a>, UrlError> {
        let shown = crate::redact_url(url);
        let fail = |why: &str| Err(UrlError(format!("fetch url `{shown}`: {why}")));
        if url.len() > 8192 {
            return fail("longer than 8192 bytes");
        }
        if url
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "\\\"<>^`{|}".contains(c))
        {
            return fail("holds a space, a control character, a backslash or one of \"<>^`{|}");
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return fail(&format!("no scheme; {RULE}"));
        };
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "https" => Scheme::Https,
            "http" => Scheme::Http,
            _ => {
                return Err(UrlError(format!(
                    "fetch url `{shown}`: the scheme `{}` is not supported; {RULE}",
                    scheme.escape_debug()
                )));
            }
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, authority),
        };
        let (host, port) = if host_port.starts_with('[') {
            let Some(close) = host_port.find(']') else {
                return fail("an IPv6 host without its closing `]`");
            };
            if host_port[1..close].parse::<Ipv6Addr>().is_err() {
                return fail("not an IPv6 address between `[` and `]`");
            }
            let after = &host_port[close + 1..];
            match after.strip_prefix(':') {
                Some(port) => (&host_port[..=close], Some(port)),
                None if after.is_empty() => (&host_port[..=close], None),
                None => return fail("text after the IPv6 host"),
            }
        } else {
            match host_port.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            }
        };
        if host.is_empty() {
            return fail("no host");
        }
        if !host.starts_with('[')
            && !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        {
            return fail("the host is not a DNS name or an IP address");
        }
        let port = match port {
            None => None,
            Some(text) => match text.parse::<u16>() {
                Ok(port) if port > 0 && text.bytes().all(|b| b.is_ascii_digit()) => Some(port),
                _ => return fail("the port is not a number in 1..=65535"),
            },
        };
        let tail = tail.split('#').next().unwrap_or("");
        let path_and_query = if tail.is_empty() { "/" } else { tail };
        let parsed = FetchUrl {
            scheme,
            userinfo,
            host,
            port,
            path_and_query,
        };
        if scheme == Scheme::Http && !parsed.is_loopback() {
            return fail(&format!(
                "http:// sends the secret in clear to a host that is not loopback; {RULE}"
            ));
        }
        Ok(parsed)
    }

    /// Whether the host is `localhost`, in `127.0.0.0/8`, or `::1`.
    pub fn is_loopback(&self) -> bool {
        if self.host.eq_ignore_ascii_case("localhost") {
            return true;
        }
        if let Some(inner) = self
            .host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
        {
            return inner.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
        }
        self.host
            .parse::<Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
    }

    /// The URL to request: scheme, host, port, path and query, without credentials or
    /// fragment.
    pub fn request_url(&self) -> String {
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        format!(
            "{}://{}{port}{}",
            self.scheme.as_str(),
            self.host,
            self.path_and_query
        )
    }
}

/// An `http` health check's `path`: it starts with `/` and holds no space or control character
/// (it is written into a request line, where either would split it).
pub fn check_http_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("an HTTP path starts with `/`".into());
    }
    if path.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("an HTTP path holds no space or control character".into());
    }
    Ok(())
}

/// The longest `fetch.timeout_ms` accepted: one minute. The runtime fetches on a thread of
/// its own, one secret after the other, so an unbounded timeout to a vault that accepts and
/// never answers would hold back every later fetch and retry for as long as it says.
pub const MAX_FETCH_TIMEOUT_MS: u64 = 60_000;

/// A fetch's `timeout_ms`: 1..=[`MAX_FETCH_TIMEOUT_MS`].
pub fn check_fetch_timeout(timeout_ms: u64) -> Result<(), String> {
    if (1..=MAX_FETCH_TIMEOUT_MS).contains(&timeout_ms) {
        Ok(())
    } else {
        Err(format!(
            "timeout_ms must be at least 1 and at most {MAX_FETCH_TIMEOUT_MS} (a fetch waits at most a minute), not {timeout_ms}"
        ))
    }
}

/// [`FetchUrl::parse`] as a plain check.
pub fn check_fetch_url(url: &str) -> Result<(), UrlError> {
    FetchUrl::parse(url).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_http_on_loopback_only() {
        for ok in [
            "https://vault.example/v1/secret",
            "HTTPS://vault.example:8443/v1/x?version=2#frag",
            "https://u:p@vault.example",
            "http://127.0.0.1:8200/v1/t",
            "http://127.3.4.5/x",
            "http://localhost/x",
            "http://LOCALHOST:9/x",
            "http://[::1]:8080/x",
            "http://user:pw@127.0.0.1:1/secret?key=k3y",
        ] {
            assert!(
                FetchUrl::parse(ok).is_ok(),
                "{ok}: {:?}",
                FetchUrl::parse(ok)
            );
        }
        for (bad, needle) in [
            ("http://vault.example/x", "not loopback"),
            ("http://10.0.0.1/x", "not loopback"),
            ("http://[::2]/x", "not loopback"),
            ("http://127.0.0.1.evil.example/x", "not loopback"),
            ("http://localhost.evil.example/x", "not loopback"),
            ("http://127.0.0.1@evil.example/x", "not loopback"),
            ("ftp://vault.example/x", "scheme `ftp` is not supported"),
            ("file:///etc/passwd", "scheme `file` is not supported"),
            ("vault.local/x", "no scheme"),
            ("https:///x", "no host"),
            ("https://", "no host"),
            ("https://h:0/x", "port"),
            ("https://h:99999/x", "port"),
            ("https://h:+1/x", "port"),
            ("http://127.0.0.1\\@evil.example/", "backslash"),
            ("https://h/a b", "space"),
            ("https://h/\r\nX: y", "control"),
            ("https://[::1/x", "closing"),
            ("https://ex%61mple.com/", "DNS name"),
        ] {
            let err = FetchUrl::parse(bad).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn http_paths() {
        assert!(check_http_path("/healthz").is_ok());
        assert!(check_http_path("/a?b=c").is_ok());
        for bad in ["healthz", "", "/a b", "/a\r\nX-Injected: 1", "http://evil/"] {
            assert!(check_http_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn errors_never_show_credentials_and_requests_drop_them() {
        let err = FetchUrl::parse("http://robot:s3cr3t@vault.local/x?token=abc")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cr3t") && !err.contains("abc"), "{err}");
        let url = FetchUrl::parse("http://user:pw@127.0.0.1:8080/s/k?key=k3y#f").unwrap();
        assert_eq!(url.userinfo, Some("user:pw"));
        assert_eq!(url.request_url(), "http://127.0.0.1:8080/s/k?key=k3y");
        assert_eq!(
            FetchUrl::parse("https://h").unwrap().request_url(),
            "https://h/"
        );
    }
}
