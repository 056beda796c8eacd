//! `auth-service-api`: the auth service's HTTP API, as the xbundle runtime runs it. It listens
//! on 127.0.0.1:$API_PORT, issues opaque API tokens and checks them for the other scenarios,
//! and keeps them in $DATA_DIR/tokens.json (see `tokens`).
//!
//! Standard library only. It has no signal handler: SIGTERM ends it at once, which is safe
//! because every token is on disk (written atomically) before its response is sent.

// `http` and `json` are identical copies of notes-app's modules: not every item is used here.
#[allow(dead_code)]
mod http;
mod json;
mod tokens;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// The port (API_PORT, required) and the data directory (DATA_DIR, default `data`).
fn config(get: impl Fn(&str) -> Option<String>) -> Result<(u16, PathBuf), String> {
    let raw = get("API_PORT").unwrap_or_default();
    let port = raw
        .parse::<u16>()
        .ok()
        .filter(|&p| p != 0 && !raw.starts_with('+'))
        .ok_or_else(|| format!("API_PORT must be a port number (1-65535), got {raw:?}"))?;
    let dir = get("DATA_DIR")
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "data".into());
    Ok((port, PathBuf::from(dir)))
}

fn main() -> ExitCode {
    let (port, dir) = match config(|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("auth-service-api: {err}");
            return ExitCode::from(2);
        }
    };
    let store = match tokens::Store::open(&dir) {
        Ok(store) => Arc::new(store),
        Err(err) => {
            eprintln!("auth-service-api: {err}");
            return ExitCode::from(1);
        }
    };
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("auth-service-api: cannot listen on 127.0.0.1:{port}: {err}");
            return ExitCode::from(1);
        }
    };
    eprintln!(
        "auth-service-api: listening on http://127.0.0.1:{port}, data in {}",
        dir.display()
    );
    http::serve(
        listener,
        Arc::new(move |request| tokens::route(&store, request)),
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn config_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            config(env(&[("API_PORT", "15001"), ("DATA_DIR", "/d")])),
            Ok((15001, PathBuf::from("/d")))
        );
        assert_eq!(
            config(env(&[("API_PORT", "80")])),
            Ok((80, PathBuf::from("data")))
        );
        for bad in ["", "0", "65536", "+80", "x", " 80"] {
            let pairs: &'static [(&str, &str)] = Box::leak(Box::new([("API_PORT", bad)]));
            assert!(config(env(pairs)).is_err(), "{bad:?}");
        }
    }

    /// The real server loop over a socket: a request in, a response out, the connection closed.
    #[test]
    fn serves_over_tcp() {
        let dir = std::env::temp_dir().join(format!("auth-service-api-tcp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Arc::new(tokens::Store::open(&dir).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            http::serve(listener, Arc::new(move |r| tokens::route(&store, r)));
        });
        let exchange = |raw: &str| {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            stream.write_all(raw.as_bytes()).unwrap();
            let mut out = String::new();
            stream.read_to_string(&mut out).unwrap();
            out
        };
        let body = r#"{"subject":"over tcp"}"#;
        let created = exchange(&format!(
            "POST /api/tokens HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
        assert!(created.starts_with("HTTP/1.1 201 "), "{created}");
        let token = created
            .split("\"token\":\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let body = format!(r#"{{"token":"{token}"}}"#);
        let checked = exchange(&format!(
            "POST /api/tokens/verify HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
        assert!(checked.contains("\"subject\":\"over tcp\""), "{checked}");
        let refused = exchange(
            "POST /api/tokens/verify HTTP/1.1\r\nContent-Length: 12\r\n\r\n{\"token\":\"\"}",
        );
        assert!(
            refused.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
            "{refused}"
        );
        let head = exchange("HEAD /health HTTP/1.1\r\n\r\n");
        assert!(
            head.starts_with("HTTP/1.1 200 ") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
