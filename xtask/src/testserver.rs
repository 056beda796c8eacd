//! A small HTTP/1.1 file server on 127.0.0.1 that misbehaves on command: the asset tests'
//! server (`xtask/tests/assets.rs` includes this file) and the download benchmark's
//! (`cargo xtask bench downloads`). One thread per connection, `Connection: close`, bodies
//! from memory; every request is logged (path and `Range` header) so tests can count them.
//!
//! What a route can do ([`Behaviour`]): serve (with or without `Range` support), answer a
//! status first, cut the body after some bytes, stall without answering or in the middle of a
//! body, redirect.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a route answers, in order: the first `times` requests get the misbehaviour, later ones
/// are served normally (`times == u32::MAX`: always).
#[derive(Clone, Debug)]
pub enum Behaviour {
    Serve,
    /// Answer this status (with a short body) the first `times` times.
    Status {
        code: u16,
        times: u32,
    },
    /// Announce the whole length, send `after` bytes of what was asked for, close.
    Cut {
        after: u64,
        times: u32,
    },
    /// Read the request, never answer (until the server stops).
    Stall,
    /// Announce the whole length, send `after` bytes, then hang (until the server stops).
    Hang {
        after: u64,
    },
    /// `302` to another path.
    Redirect {
        to: String,
    },
}

/// One route: a body and how it is served.
#[derive(Clone)]
pub struct Route {
    pub body: Arc<Vec<u8>>,
    pub behaviour: Behaviour,
    /// Honour `Range: bytes=N-` (else every answer is the whole body, `200`).
    pub ranges: bool,
}

/// A request as the server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub path: String,
    pub range: Option<String>,
}

#[derive(Default)]
struct State {
    routes: BTreeMap<String, Route>,
    seen: Vec<Seen>,
    /// Misbehaviours done so far, per path.
    done: BTreeMap<String, u32>,
}

/// The server: stops (and releases stalled connections) when dropped.
pub struct Server {
    pub port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("address").port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_state, thread_stop) = (Arc::clone(&state), Arc::clone(&stop));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if thread_stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (state, stop) = (Arc::clone(&thread_state), Arc::clone(&thread_stop));
                std::thread::spawn(move || {
                    let _ = serve(stream, &state, &stop);
                });
            }
        });
        Server { port, state, stop }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn route(&self, path: &str, body: Vec<u8>, behaviour: Behaviour) {
        self.route_with(path, body, behaviour, true);
    }

    pub fn route_with(&self, path: &str, body: Vec<u8>, behaviour: Behaviour, ranges: bool) {
        self.state.lock().unwrap().routes.insert(
            path.to_string(),
            Route {
                body: Arc::new(body),
                behaviour,
                ranges,
            },
        );
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Requests of one path so far.
    pub fn count(&self, path: &str) -> usize {
        self.seen().iter().filter(|seen| seen.path == path).count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>, stop: &AtomicBool) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.trim().eq_ignore_ascii_case("range")
        {
            range = Some(value.trim().to_string());
        }
    }
    let (route, misbehave) = {
        let mut state = state.lock().unwrap();
        state.seen.push(Seen {
            path: path.clone(),
            range: range.clone(),
        });
        let Some(route) = state.routes.get(&path).cloned() else {
            drop(state);
            return answer(&stream, 404, &[], b"not found");
        };
        let times = match route.behaviour {
            Behaviour::Status { times, .. } | Behaviour::Cut { times, .. } => times,
            _ => u32::MAX,
        };
        let done = state.done.entry(path.clone()).or_default();
        let misbehave = *done < times;
        if misbehave {
            *done += 1;
        }
        (route, misbehave)
    };
    let mut stream = stream;
    match (&route.behaviour, misbehave) {
        (Behaviour::Status { code, .. }, true) => answer(&stream, *code, &[], b"try again"),
        (Behaviour::Stall, _) => {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        }
        (Behaviour::Redirect { to }, _) => {
            answer(&stream, 302, &[("Location", to.as_str())], b"moved")
        }
        (behaviour, misbehave) => {
            let total = route.body.len() as u64;
            let start = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
                Some(spec) if route.ranges => spec
                    .trim_end_matches('-')
                    .parse::<u64>()
                    .ok()
                    .filter(|_| spec.ends_with('-')),
                _ => None,
            };
            if let Some(start) = start
                && start >= total
            {
                let value = format!("bytes */{total}");
                return answer(&stream, 416, &[("Content-Range", &value)], b"");
            }
            let start = start.unwrap_or(0);
            let mut head = if range.is_some() && route.ranges {
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{total}\r\n",
                    total - 1
                )
            } else {
                "HTTP/1.1 200 OK\r\n".to_string()
            };
            if route.ranges {
                head.push_str("Accept-Ranges: bytes\r\n");
            }
            head.push_str(&format!(
                "Content-Length: {}\r\nConnection: close\r\n\r\n",
                total - start
            ));
            stream.write_all(head.as_bytes())?;
            let body = &route.body[start as usize..];
            let send = match (behaviour, misbehave) {
                (Behaviour::Cut { after, .. }, true) | (Behaviour::Hang { after }, _) => {
                    &body[..(*after as usize).min(body.len())]
                }
                _ => body,
            };
            for chunk in send.chunks(1 << 20) {
                stream.write_all(chunk)?;
            }
            stream.flush()?;
            if let Behaviour::Hang { .. } = behaviour {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let _ = stream.shutdown(std::net::Shutdown::Both);
            Ok(())
        }
    }
}

fn answer(
    mut stream: &TcpStream,
    code: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {code} Test\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}
