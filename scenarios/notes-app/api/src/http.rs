// One of two identical copies: scenarios/notes-app/api/src/http.rs and
// scenarios/auth-service/api/src/http.rs (two standalone packages share no crate without a path
// dependency, which is not wanted between scenarios): change both copies, byte for byte.
//! Just enough HTTP/1.1 for the API: one request per connection (every response says
//! `Connection: close`), a `Content-Length` body, and a server loop.
//!
//! Invariants: what a client sends holds bounded memory and time: the head is at most
//! [`MAX_HEAD`] bytes, a body at most [`MAX_BODY`] (declared by `Content-Length`; chunked
//! bodies are refused with 411), a request must arrive whole within [`TIMEOUT`] (one deadline
//! for the request, not per read, so a client trickling bytes is cut off too; writes have the
//! same timeout), and at most [`MAX_CONNECTIONS`] are served at once (past that a client gets
//! 503 at once).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const MAX_HEAD: usize = 16 * 1024;
pub const MAX_BODY: usize = 64 * 1024;
pub const MAX_CONNECTIONS: usize = 32;
pub const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path without its query string.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub allow: Option<&'static str>,
}

impl Response {
    pub fn json(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: body.into_bytes(),
            allow: None,
        }
    }

    pub fn error(status: u16, message: &str) -> Response {
        let body = crate::json::Value::Object(vec![(
            "error".into(),
            crate::json::Value::String(message.into()),
        )]);
        Response::json(status, body.to_json())
    }

    pub fn empty(status: u16) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: Vec::new(),
            allow: None,
        }
    }

    /// The bytes on the wire.
    pub fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            201 => "Created",
            204 => "No Content",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            405 => "Method Not Allowed",
            411 => "Length Required",
            413 => "Payload Too Large",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Unknown",
        };
        let mut out = format!("HTTP/1.1 {} {reason}\r\n", self.status);
        if self.status != 204 {
            out.push_str(&format!(
                "Content-Type: {}\r\nContent-Length: {}\r\n",
                self.content_type,
                self.body.len()
            ));
        }
        if let Some(allow) = self.allow {
            out.push_str(&format!("Allow: {allow}\r\n"));
        }
        out.push_str("Cache-Control: no-store\r\nConnection: close\r\n\r\n");
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

/// Reads one line of the head into `line` (without its line end), within `left` bytes.
fn head_line<R: Read>(
    reader: &mut BufReader<R>,
    left: &mut usize,
    line: &mut String,
) -> Result<(), Response> {
    line.clear();
    let read = reader
        .by_ref()
        .take(*left as u64)
        .read_line(line)
        .map_err(|_| Response::error(400, "unreadable request"))?;
    *left -= read;
    if !line.ends_with('\n') {
        return Err(if *left == 0 {
            Response::error(431, "request head too large")
        } else {
            Response::error(400, "incomplete request")
        });
    }
    let trimmed = line.trim_end_matches(['\r', '\n']).len();
    line.truncate(trimmed);
    Ok(())
}

/// Reads one request; `Err` is the response to send instead.
pub fn read_request(stream: impl Read) -> Result<Request, Response> {
    let mut reader = BufReader::new(stream);
    let mut left = MAX_HEAD;
    let mut line = String::new();
    head_line(&mut reader, &mut left, &mut line)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Response::error(400, "bad request line"));
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') || method.is_empty() {
        return Err(Response::error(400, "bad request line"));
    }
    let mut request = Request {
        method: method.to_owned(),
        path: target.split('?').next().unwrap_or("").to_owned(),
        ..Request::default()
    };
    loop {
        head_line(&mut reader, &mut left, &mut line)?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(Response::error(400, "bad header line"));
        };
        request
            .headers
            .push((name.trim().to_owned(), value.trim().to_owned()));
    }
    if request.header("transfer-encoding").is_some() {
        return Err(Response::error(411, "send the body with a Content-Length"));
    }
    let length = match request.header("content-length") {
        None => 0,
        Some(value) => value
            .parse::<usize>()
            .map_err(|_| Response::error(400, "bad Content-Length"))?,
    };
    if length > MAX_BODY {
        return Err(Response::error(413, "body too large"));
    }
    reader
        .take(length as u64)
        .read_to_end(&mut request.body)
        .map_err(|_| Response::error(400, "unreadable body"))?;
    if request.body.len() != length {
        return Err(Response::error(400, "incomplete body"));
    }
    Ok(request)
}

/// Serves `listener` until the process ends, each connection on a thread of its own.
pub fn serve(listener: TcpListener, handler: Arc<dyn Fn(&Request) -> Response + Send + Sync>) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let _ = stream.set_write_timeout(Some(TIMEOUT));
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let _ = (&stream).write_all(&Response::error(503, "busy").to_bytes(false));
            continue;
        }
        let handler = Arc::clone(&handler);
        let guard = Active(Arc::clone(&active));
        // A thread that cannot be spawned drops the closure, its stream and its guard.
        let _ = std::thread::Builder::new()
            .name("conn".into())
            .spawn(move || {
                let _guard = guard;
                handle_connection(stream, &*handler);
            });
    }
}

/// Decrements the active count when a connection's thread ends.
struct Active(Arc<AtomicUsize>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Reads from a socket until a deadline: each read waits at most the time left.
struct Deadline<'a> {
    stream: &'a TcpStream,
    until: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

pub fn handle_connection(mut stream: TcpStream, handler: &dyn Fn(&Request) -> Response) {
    let deadline = Deadline {
        stream: &stream,
        until: Instant::now() + TIMEOUT,
    };
    let (response, head_only) = match read_request(deadline) {
        Ok(request) => (handler(&request), request.method == "HEAD"),
        Err(response) => (response, false),
    };
    let _ = stream.write_all(&response.to_bytes(head_only));
    let _ = stream.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(raw: &[u8]) -> Result<Request, u16> {
        read_request(raw).map_err(|r| r.status)
    }

    #[test]
    fn reads_a_request_with_a_body() {
        let request =
            read(b"POST /api/notes?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
                .unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/api/notes");
        assert_eq!(request.header("HOST"), Some("a"));
        assert_eq!(request.body, b"hello");
        // Bare LF line ends too.
        let request = read(b"GET / HTTP/1.0\nA: b\n\n").unwrap();
        assert_eq!(request.header("a"), Some("b"));
    }

    #[test]
    fn refuses_bad_or_oversized_requests() {
        assert_eq!(read(b""), Err(400));
        assert_eq!(read(b"GET / HTTP/1.1\r\nHost: a"), Err(400));
        assert_eq!(read(b"GET / HTTP/1.1 x\r\n\r\n"), Err(400));
        assert_eq!(read(b"GET x HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(read(b"GET / SPDY/3\r\n\r\n"), Err(400));
        assert_eq!(read(b"GET / HTTP/1.1\r\nno colon\r\n\r\n"), Err(400));
        assert_eq!(
            read(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Err(400)
        );
        assert_eq!(
            read(b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nshort"),
            Err(400)
        );
        assert_eq!(
            read(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(411)
        );
        let big = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(read(big.as_bytes()), Err(413));
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(read(long.as_bytes()), Err(431));
    }

    /// A request still incomplete at its deadline is refused, however the bytes trickle.
    #[test]
    fn one_deadline_per_request() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        let expired = Deadline {
            stream: &server,
            until: Instant::now(),
        };
        assert_eq!(
            read_request(expired),
            Err(Response::error(400, "unreadable request"))
        );
    }

    #[test]
    fn responses_close_and_head_has_no_body() {
        let response = Response::json(200, "{}".into());
        let text = String::from_utf8(response.to_bytes(false)).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Length: 2\r\n") && text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n{}"));
        assert!(String::from_utf8(response.to_bytes(true))
            .unwrap()
            .ends_with("\r\n\r\n"));
        let refused = String::from_utf8(Response::error(401, "no").to_bytes(false)).unwrap();
        assert!(
            refused.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
            "{refused}"
        );
        let none = String::from_utf8(Response::empty(204).to_bytes(false)).unwrap();
        assert!(!none.contains("Content-Length"), "{none}");
    }
}
