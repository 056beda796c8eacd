//! Just enough HTTP/1.1 for the runtime, over `std::net` and without an async runtime: the
//! servers of the control API and the UI ([`serve`]), writing responses, and a GET client
//! with timeouts (health checks, `remote_fetch`).
//!
//! Every connection carries one request (`Connection: close`), which keeps the code small and
//! is what the control API's clients (the Electron shell, curl) need.
//!
//! ## Servers: limits that hold before authentication
//!
//! The peer is hostile: anything on the machine can connect to loopback. So nothing a peer
//! sends before it is authenticated can hold memory, a thread or time without a bound, and
//! slow or idle connections cannot keep real requests out.
//!
//! - **One reactor thread per server** owns the listener and every connection whose request is
//!   not complete yet, all non-blocking, watched with `poll(2)`. It reads what arrives into a
//!   [`RequestReader`], a push parser over `httparse` that bounds each head line
//!   ([`LIMITS`]`.line`, 8 KiB) and the whole head (`.head`, 16 KiB) *while reading*, so a
//!   header line without a newline costs at most 16 KiB, never what the peer sends. The body
//!   is read only when the server's [`Handler::body_limit`] allows it after seeing the head
//!   (the control API: an authorised `POST`, at most [`MAX_BODY`]); a larger
//!   `Content-Length` is answered 413, a body without one 411.
//! - **A deadline per request**, not per read: head and body must arrive within
//!   [`request_deadline`] (10 s; `XBUNDLE_RUNTIME_REQUEST_DEADLINE_MS`) of the accept, however
//!   the bytes trickle; past it the peer gets a 408 and the connection is closed.
//! - **A bounded table of incomplete connections** (`max_pending`): when it is full, a new
//!   connection evicts the *oldest* incomplete one (503). Real clients send their request
//!   at once and leave the table within one loop turn; idle or slow ones are the old ones.
//!   Reads are served before accepts on each turn, and a fresh connection is read at once, so
//!   a burst of new connections does not evict a request whose bytes are already there.
//! - **Complete requests only reach the workers**: a fixed pool (`workers` threads) takes
//!   them from a bounded queue (`queue`; full: 503 from the reactor). Workers write with a
//!   per-response deadline ([`WRITE_DEADLINE`]). What a worker does with the connection
//!   afterwards is the handler's affair (the UI's `/api` proxy hands it to a thread of its
//!   own, with a cap of its own).
//!
//! Memory is therefore bounded by `max_pending` × (head + body limit) plus one read buffer,
//! threads by `workers` + 1 per server, and a request waits at most for the requests queued
//! before it, never for a slow peer. Remaining limit: a peer that sends a complete request
//! and then reads its response slowly holds a worker for up to [`WRITE_DEADLINE`] (responses
//! of the control API are small and fit in the socket's buffer; static files may not).
//!
//! The client (`get`) is for `http` health checks (`remote_fetch` has a client of its own,
//! `secrets/fetch.rs`): `http://` URLs only, one deadline for the whole exchange (not per
//! read: a service trickling its answer cannot hold a check past it), and responses of at most
//! 4 MiB.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The largest request body the runtime reads (`POST /secrets`).
pub const MAX_BODY: usize = 64 * 1024;

/// Bounds on a request head, enforced while it is read.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The longest line of the head (the request line or one header), without its newline.
    pub line: usize,
    /// The whole head, request line and blank line included.
    pub head: usize,
    /// The most header fields.
    pub headers: usize,
}

pub const LIMITS: Limits = Limits {
    line: 8 * 1024,
    head: 16 * 1024,
    headers: 64,
};

/// How long a worker may take to write one response.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// How long a peer has, from the accept, to send a whole request (head and body).
pub fn request_deadline() -> Duration {
    static VALUE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *VALUE.get_or_init(|| {
        std::env::var("XBUNDLE_RUNTIME_REQUEST_DEADLINE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_secs(10))
    })
}

/// A parsed request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path without the query, as sent (percent-encoded).
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    /// The body when the handler asked for it; otherwise the bytes that arrived after the
    /// head with it (a prefix of the body, for a proxy to forward).
    pub body: Vec<u8>,
    /// Bytes of the body announced but not read (`usize::MAX` for a chunked body).
    pub unread: usize,
    /// The head exactly as received (for proxying).
    pub raw_head: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// A query parameter, percent-decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then(|| percent_decode(value))
        })
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match bytes[i] {
            b'+' => Some((b' ', 1)),
            b'%' => bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .map(|byte| (byte, 3)),
            _ => None,
        };
        let (byte, width) = decoded.unwrap_or((bytes[i], 1));
        out.push(byte);
        i += width;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Strict percent-decoding of one path segment: `None` for a malformed escape.
pub fn percent_decode_segment(segment: &str) -> Option<Vec<u8>> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// What [`RequestReader::feed`] made of the bytes so far.
#[derive(Debug)]
pub enum Feed {
    /// More bytes are needed.
    More,
    /// A complete request (head, and the body if one was wanted).
    Done(Request),
    /// The request is refused with this status and reason; close the connection.
    Reject(u16, &'static str),
}

enum ReaderState {
    Head,
    Body { request: Request, length: usize },
    Finished,
}

/// A push parser for one request: bytes go in as they arrive, in pieces of any size; it
/// never holds more than `limits.head` bytes of head plus the body limit it was given.
pub struct RequestReader {
    limits: Limits,
    buffer: Vec<u8>,
    /// Where the current (unterminated) line of the head starts in `buffer`.
    line_start: usize,
    state: ReaderState,
    /// The most bytes held at any moment (what the limits bound).
    peak: usize,
}

impl RequestReader {
    pub fn new(limits: Limits) -> RequestReader {
        RequestReader {
            limits,
            buffer: Vec::new(),
            line_start: 0,
            state: ReaderState::Head,
            peak: 0,
        }
    }

    /// The most bytes this reader has held at any moment (head, or head and body).
    pub fn peak(&self) -> usize {
        self.peak
    }

    /// Takes the next bytes. `body_limit` is asked once, when the head is complete: how many
    /// body bytes to read (0: none, the request is done with its head).
    pub fn feed(&mut self, mut data: &[u8], body_limit: &dyn Fn(&Request) -> usize) -> Feed {
        loop {
            match &mut self.state {
                ReaderState::Finished => return Feed::Reject(400, "request already read"),
                ReaderState::Body { request, length } => {
                    let want = *length - request.body.len();
                    let take = want.min(data.len());
                    request.body.extend_from_slice(&data[..take]);
                    self.peak = self.peak.max(request.raw_head.len() + request.body.len());
                    if request.body.len() < *length {
                        return Feed::More;
                    }
                    let ReaderState::Body { request, .. } =
                        std::mem::replace(&mut self.state, ReaderState::Finished)
                    else {
                        unreachable!("in the body state")
                    };
                    return Feed::Done(request);
                }
                ReaderState::Head => {
                    if data.is_empty() {
                        return Feed::More;
                    }
                    let room = self.limits.head - self.buffer.len();
                    if room == 0 {
                        return self.reject(431, "request head too large");
                    }
                    let take = room.min(data.len());
                    let start = self.buffer.len();
                    self.buffer.extend_from_slice(&data[..take]);
                    self.peak = self.peak.max(self.buffer.len());
                    data = &data[take..];
                    let mut line_ended = false;
                    for at in start..self.buffer.len() {
                        if self.buffer[at] == b'\n' {
                            if at - self.line_start > self.limits.line {
                                return self.reject(431, "request head line too long");
                            }
                            self.line_start = at + 1;
                            line_ended = true;
                        }
                    }
                    if self.buffer.len() - self.line_start > self.limits.line {
                        return self.reject(431, "request head line too long");
                    }
                    // A head can only end with a line: parse when one ended.
                    if !line_ended {
                        continue;
                    }
                    match self.parse_head() {
                        Ok(None) => continue,
                        Ok(Some((request, head_len))) => {
                            // Then the loop goes on in the body state with the rest of `data`.
                            match self.start_body(request, head_len, data, body_limit) {
                                Ok(Some(feed)) => return feed,
                                Ok(None) => {}
                                Err((status, why)) => return self.reject(status, why),
                            }
                        }
                        Err((status, why)) => return self.reject(status, why),
                    }
                }
            }
        }
    }

    fn reject(&mut self, status: u16, why: &'static str) -> Feed {
        self.state = ReaderState::Finished;
        self.buffer = Vec::new();
        Feed::Reject(status, why)
    }

    /// The head, if complete: the request and the head's length in `buffer`.
    fn parse_head(&self) -> Result<Option<(Request, usize)>, (u16, &'static str)> {
        let mut headers = vec![httparse::EMPTY_HEADER; self.limits.headers];
        let mut parsed = httparse::Request::new(&mut headers);
        let head_len = match parsed.parse(&self.buffer) {
            Ok(httparse::Status::Partial) => return Ok(None),
            Ok(httparse::Status::Complete(len)) => len,
            Err(httparse::Error::TooManyHeaders) => return Err((431, "too many header fields")),
            Err(_) => return Err((400, "malformed request head")),
        };
        let target = parsed.path.unwrap_or("/");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let request = Request {
            method: parsed.method.unwrap_or_default().to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers: parsed
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).trim().to_owned(),
                    )
                })
                .collect(),
            body: Vec::new(),
            unread: 0,
            raw_head: Vec::new(),
        };
        Ok(Some((request, head_len)))
    }

    /// Moves to the body once the head is complete. `Ok(Some)`: the request is done (or
    /// refused); `Ok(None)`: the body follows (in the bytes already given, or later).
    fn start_body(
        &mut self,
        mut request: Request,
        head_len: usize,
        rest: &[u8],
        body_limit: &dyn Fn(&Request) -> usize,
    ) -> Result<Option<Feed>, (u16, &'static str)> {
        let mut lengths = request
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse::<usize>());
        let length = match lengths.next() {
            None => 0,
            Some(Ok(n)) => n,
            Some(Err(_)) => return Err((400, "bad Content-Length")),
        };
        if lengths.any(|other| other != Ok(length)) {
            return Err((400, "conflicting Content-Length"));
        }
        let chunked = request.header("transfer-encoding").is_some();
        let mut after = self.buffer.split_off(head_len);
        request.raw_head = std::mem::take(&mut self.buffer);
        let limit = body_limit(&request).min(MAX_BODY);
        if limit == 0 {
            // No body wanted: what came with the head is handed on as it is.
            after.extend_from_slice(rest);
            request.unread = if chunked {
                usize::MAX
            } else {
                length.saturating_sub(after.len())
            };
            request.body = after;
            self.state = ReaderState::Finished;
            return Ok(Some(Feed::Done(request)));
        }
        if chunked {
            return Err((411, "a request body needs Content-Length"));
        }
        if length > limit {
            return Err((413, "request body too large"));
        }
        after.truncate(length);
        request.body = after;
        self.peak = self.peak.max(request.raw_head.len() + request.body.len());
        self.state = ReaderState::Body { request, length };
        Ok(None)
    }
}

/// A response to write.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub extra_headers: Vec<(&'static str, String)>,
}

impl Response {
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        let mut body = serde_json::to_vec(value).unwrap_or_default();
        body.push(b'\n');
        Response {
            status,
            content_type: "application/json",
            body,
            extra_headers: Vec::new(),
        }
    }
    pub fn text(status: u16, text: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: text.into().into_bytes(),
            extra_headers: Vec::new(),
        }
    }
    pub fn error(status: u16, message: &str) -> Response {
        Response::json(status, &serde_json::json!({ "error": message }))
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// The status line and headers of a response with a body of `length` bytes.
pub fn response_head(
    status: u16,
    content_type: &str,
    length: u64,
    extra: &[(&'static str, String)],
) -> String {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\nConnection: close\r\nCache-Control: no-store\r\n",
        reason(status),
    );
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// A writer that gives up when its deadline has passed (each write waits at most the time
/// left), so a peer that does not read cannot hold the writer longer than that.
pub struct DeadlineWriter<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl<'a> DeadlineWriter<'a> {
    pub fn new(stream: &'a TcpStream, within: Duration) -> DeadlineWriter<'a> {
        DeadlineWriter {
            stream,
            deadline: Instant::now() + within,
        }
    }
}

impl Write for DeadlineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "response deadline passed",
            ));
        }
        self.stream.set_write_timeout(Some(left))?;
        (&mut &*self.stream).write(bytes)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes a response (within [`WRITE_DEADLINE`]) and closes the sending side; when the peer
/// sent a small body that was not read, it is drained briefly first so that closing does not
/// reset the connection before the peer reads the answer.
pub fn respond(stream: &TcpStream, request: &Request, response: &Response) {
    let head_only = request.method == "HEAD";
    let mut writer = DeadlineWriter::new(stream, WRITE_DEADLINE);
    let head = response_head(
        response.status,
        response.content_type,
        response.body.len() as u64,
        &response.extra_headers,
    );
    let _ = writer.write_all(head.as_bytes());
    if !head_only {
        let _ = writer.write_all(&response.body);
    }
    finish(stream, request.unread);
}

/// Closes the sending side; drains up to `unread` bytes (if few) for at most 100 ms first.
pub fn finish(stream: &TcpStream, unread: usize) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    if unread == 0 || unread > MAX_BODY {
        return;
    }
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut sink = [0u8; 4096];
    let mut left = unread;
    let until = Instant::now() + Duration::from_millis(100);
    while left > 0 && Instant::now() < until {
        match (&mut &*stream).read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// What a server does with complete requests.
pub trait Handler: Send + Sync + 'static {
    /// On the reactor thread, once the head is complete: how many body bytes to read (at most
    /// [`MAX_BODY`]; 0 reads none). Must be quick and must not block.
    fn body_limit(&self, request: &Request) -> usize;
    /// On a worker thread: answers the request. The stream is blocking, without timeouts.
    fn handle(&self, request: Request, stream: TcpStream);
}

/// How a server is sized.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// For thread names.
    pub name: &'static str,
    /// Worker threads.
    pub workers: usize,
    /// Complete requests waiting for a worker, at most.
    pub queue: usize,
    /// Incomplete connections held, at most (then the oldest is evicted).
    pub max_pending: usize,
}

struct Pending {
    stream: TcpStream,
    reader: RequestReader,
    deadline: Instant,
}

const READ_CHUNK: usize = 4096;
/// Reads per connection per loop turn (fairness between connections).
const READS_PER_TURN: usize = 4;
/// Connections accepted per loop turn, at most.
const ACCEPTS_PER_TURN: usize = 16;

/// Serves `listener` until the process exits: a reactor thread and `config.workers` workers
/// (see the module docs).
pub fn serve(
    listener: TcpListener,
    config: ServerConfig,
    handler: Arc<dyn Handler>,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let (sender, receiver) = std::sync::mpsc::sync_channel::<(Request, TcpStream)>(config.queue);
    let receiver = Arc::new(Mutex::new(receiver));
    for n in 0..config.workers {
        let receiver: Arc<Mutex<Receiver<(Request, TcpStream)>>> = Arc::clone(&receiver);
        let handler = Arc::clone(&handler);
        std::thread::Builder::new()
            .name(format!("{}-worker-{n}", config.name))
            .spawn(move || {
                loop {
                    let job = receiver.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok((request, stream)) = job else { return };
                    handler.handle(request, stream);
                }
            })?;
    }
    std::thread::Builder::new()
        .name(format!("{}-reactor", config.name))
        .spawn(move || reactor(listener, config, handler, sender))?;
    Ok(())
}

/// Answers and closes from the reactor: one non-blocking write of a small response.
fn refuse(stream: TcpStream, status: u16, why: &str) {
    let body = format!("{{\"error\":\"{why}\"}}\n");
    let mut bytes = response_head(status, "application/json", body.len() as u64, &[]).into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    let _ = (&stream).write(&bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

fn reactor(
    listener: TcpListener,
    config: ServerConfig,
    handler: Arc<dyn Handler>,
    sender: SyncSender<(Request, TcpStream)>,
) {
    let mut pending: Vec<Pending> = Vec::new();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    let deadline = request_deadline();
    let body_limit = |request: &Request| handler.body_limit(request);
    // Reads what is there; `false` when the connection is finished with (answered, handed
    // on or closed).
    let read = |entry: &mut Option<Pending>| -> bool {
        let Some(conn) = entry.as_mut() else {
            return false;
        };
        let mut chunk = [0u8; READ_CHUNK];
        for _ in 0..READS_PER_TURN {
            let n = match (&conn.stream).read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return true,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            };
            let feed = conn.reader.feed(&chunk[..n], &body_limit);
            debug_assert!(conn.reader.peak() <= LIMITS.head + MAX_BODY);
            match feed {
                Feed::More => {}
                Feed::Reject(status, why) => {
                    let conn = entry.take().expect("present");
                    refuse(conn.stream, status, why);
                    return false;
                }
                Feed::Done(request) => {
                    let conn = entry.take().expect("present");
                    dispatch(&sender, request, conn.stream);
                    return false;
                }
            }
        }
        true
    };
    loop {
        let now = Instant::now();
        let wait = pending
            .iter()
            .map(|p| p.deadline.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_secs(60));
        fds.clear();
        fds.push(libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        for conn in &pending {
            fds.push(libc::pollfd {
                fd: conn.stream.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let timeout_ms = wait.as_millis().min(60_000) as libc::c_int + 1;
        // SAFETY: a valid array of pollfd of the given length.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if ready < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        // Reads first, so that a burst of new connections cannot evict a request whose bytes
        // are already there.
        let mut slots: Vec<Option<Pending>> = pending.drain(..).map(Some).collect();
        for (slot, fd) in slots.iter_mut().zip(&fds[1..]) {
            if fd.revents != 0 && !read(slot) {
                // Finished with: answered, handed on, or closed by the peer.
                *slot = None;
            }
        }
        let now = Instant::now();
        for slot in slots.iter_mut() {
            if slot.as_ref().is_some_and(|conn| conn.deadline <= now) {
                let conn = slot.take().expect("present");
                refuse(conn.stream, 408, "request not received in time");
            }
        }
        pending = slots.into_iter().flatten().collect();
        if fds[0].revents != 0 {
            for _ in 0..ACCEPTS_PER_TURN {
                let stream = match listener.accept() {
                    Ok((stream, _)) => stream,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    // Out of descriptors and the like: the listener stays readable, so pause
                    // rather than spin; the pending connections' deadlines free some.
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        break;
                    }
                };
                if stream.set_nonblocking(true).is_err() {
                    continue;
                }
                let _ = stream.set_nodelay(true);
                if pending.len() >= config.max_pending {
                    let oldest = pending.remove(0);
                    refuse(oldest.stream, 503, "too many connections");
                }
                let mut slot = Some(Pending {
                    stream,
                    reader: RequestReader::new(LIMITS),
                    deadline: Instant::now() + deadline,
                });
                // Most clients send at once: read now rather than after another poll.
                if read(&mut slot)
                    && let Some(conn) = slot
                {
                    pending.push(conn);
                }
            }
        }
    }
}

/// Hands a complete request to the workers (503 when they are all busy and the queue full).
fn dispatch(sender: &SyncSender<(Request, TcpStream)>, request: Request, stream: TcpStream) {
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    match sender.try_send((request, stream)) {
        Ok(()) => {}
        Err(TrySendError::Full((_, stream))) => refuse(stream, 503, "server busy"),
        Err(TrySendError::Disconnected(_)) => {}
    }
}

/// A response received by [`get`].
#[derive(Debug)]
pub struct ClientResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// `GET url` with a total timeout; `http://` only.
pub fn get(
    url: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> io::Result<ClientResponse> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "only http:// URLs are supported, not `{}`",
                crate::secrets::redact_url(url)
            ),
        )
    })?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    // `user:pass@host` becomes Basic auth; the credentials appear in no error.
    let (userinfo, authority) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => (Some(userinfo), host),
        None => (None, authority),
    };
    let address = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addr = address.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("cannot resolve `{authority}`"),
        )
    })?;
    // One deadline for the whole exchange: a server that trickles its answer a byte at a time
    // cannot hold the caller (a health check) past it, as a per-read timeout would.
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: xbundle-runtime\r\n"
    );
    if let Some(userinfo) = userinfo {
        request.push_str(&format!(
            "Authorization: Basic {}\r\n",
            crate::secrets::base64(percent_decode(&userinfo.replace('+', "%2B")).as_bytes())
        ));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    DeadlineReader {
        stream: &stream,
        deadline,
    }
    .take(4 * 1024 * 1024)
    .read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP response head"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad HTTP status line"))?;
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok(ClientResponse { status, body })
}

/// A reader that gives up when its deadline has passed (each read waits at most the time
/// left).
struct DeadlineReader<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
        }
        self.stream.set_read_timeout(Some(left))?;
        (&mut &*self.stream).read(buffer)
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        data = &data[end + 2..];
        if size == 0 || size > data.len() {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_client_has_one_deadline_not_a_per_read_timeout() {
        // A server that answers one byte every 50 ms for 30 s: a per-read timeout of 300 ms
        // never fires; the deadline ends the exchange.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            for _ in 0..600 {
                if stream.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let started = Instant::now();
        let result = get(
            &format!("http://127.0.0.1:{port}/health"),
            &[],
            Duration::from_millis(300),
        );
        assert!(result.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "held for {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn decodes_queries_and_chunks() {
        assert_eq!(percent_decode("a%20b+c%2"), "a b c%2");
        assert_eq!(percent_decode("%41%zz"), "A%zz");
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), b"abcde");
        assert_eq!(percent_decode_segment("a%2e%2E%2f").unwrap(), b"a../");
        assert!(percent_decode_segment("%zz").is_none());
        assert!(percent_decode_segment("%2").is_none());
        assert!(percent_decode_segment("%+1").is_none());
    }

    /// Feeds `pieces` one after the other; the outcome and the largest buffer seen.
    fn run(pieces: &[&[u8]], body_limit: usize) -> (Option<Feed>, usize) {
        let mut reader = RequestReader::new(LIMITS);
        let mut most = 0;
        for piece in pieces {
            let feed = reader.feed(piece, &|_| body_limit);
            most = most.max(reader.peak());
            match feed {
                Feed::More => {}
                other => return (Some(other), most),
            }
        }
        (None, most)
    }

    fn done(feed: Option<Feed>) -> Request {
        match feed {
            Some(Feed::Done(request)) => request,
            other => panic!("not done: {other:?}"),
        }
    }

    fn status(feed: Option<Feed>) -> u16 {
        match feed {
            Some(Feed::Reject(status, _)) => status,
            other => panic!("not rejected: {other:?}"),
        }
    }

    #[test]
    fn reads_heads_and_bodies_in_any_pieces() {
        let raw = b"POST /secrets?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
        let request = done(run(&[raw], MAX_BODY).0);
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/secrets");
        assert_eq!(request.query, "x=1");
        assert_eq!(request.header("content-length"), Some("5"));
        assert_eq!(request.body, b"hello");
        assert_eq!(request.raw_head.len(), raw.len() - 5);
        let pieces: Vec<&[u8]> = raw.chunks(1).collect();
        assert_eq!(done(run(&pieces, MAX_BODY).0), request);
        // Without a body wanted, what came with the head is handed on.
        let request = done(run(&[raw], 0).0);
        assert_eq!(request.body, b"hello");
        assert_eq!(request.unread, 0);
        let request = done(run(&[&raw[..raw.len() - 2]], 0).0);
        assert_eq!(request.unread, 2);
        // Bare `\n` line ends.
        let request = done(run(&[b"GET /a HTTP/1.0\nX: y\n\n"], 0).0);
        assert_eq!(request.header("x"), Some("y"));
    }

    #[test]
    fn limits_hold_while_reading() {
        let line = vec![b'a'; 1 << 20];
        let (feed, most) = run(&[b"GET / HTTP/1.1\r\nX-Big: ", &line], 0);
        assert_eq!(status(feed), 431);
        assert!(most <= LIMITS.head);
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for n in 0..70 {
            many.extend_from_slice(format!("X-{n}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(status(run(&[&many], 0).0), 431);
        let big = b"POST / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n";
        assert_eq!(status(run(&[big], MAX_BODY).0), 413);
        // Unwanted, a large body is not read (and not refused: the handler answers).
        assert_eq!(done(run(&[big], 0).0).unread, 65537);
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(status(run(&[chunked], MAX_BODY).0), 411);
        let two = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(status(run(&[two], MAX_BODY).0), 400);
        assert_eq!(status(run(&[b"\x00\x01garbage\r\n\r\n"], 0).0), 400);
        assert_eq!(status(run(&[b"GET /\x00 HTTP/1.1\r\n\r\n"], 0).0), 400);
    }

    fn valid_request() -> impl Strategy<Value = (Vec<u8>, String, usize)> {
        (
            prop::sample::select(vec!["GET", "POST", "HEAD", "PUT"]),
            "/[a-z0-9/._%-]{0,40}",
            prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,20}", "[ -~]{0,60}"), 0..20),
            prop::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(method, path, headers, body)| {
                let mut raw = format!("{method} {path} HTTP/1.1\r\n");
                for (name, value) in &headers {
                    if name.eq_ignore_ascii_case("content-length")
                        || name.eq_ignore_ascii_case("transfer-encoding")
                    {
                        continue;
                    }
                    raw.push_str(&format!("{name}: {}\r\n", value.trim()));
                }
                raw.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
                let mut raw = raw.into_bytes();
                raw.extend_from_slice(&body);
                (raw, path, body.len())
            })
    }

    /// `data` cut at the given points (sorted, clamped) into reads.
    fn cut(data: &[u8], points: &[usize]) -> Vec<Vec<u8>> {
        let mut points: Vec<usize> = points.iter().map(|p| p % (data.len() + 1)).collect();
        points.sort_unstable();
        let mut pieces = Vec::new();
        let mut start = 0;
        for point in points {
            pieces.push(data[start..point].to_vec());
            start = point;
        }
        pieces.push(data[start..].to_vec());
        pieces
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The request parser is a fuzz target: random bytes in random reads never make it
        /// panic or hold more than its limits.
        #[test]
        fn random_bytes_never_panic_and_stay_bounded(
            prefix in prop::sample::select(vec![
                "",
                "GET / HTTP/1.1\r\n",
                "GET / HTTP/1.1\r\nX-Long: ",
                "POST /secrets HTTP/1.1\r\nContent-Length: 100\r\n\r\n",
            ]),
            random in prop::collection::vec(any::<u8>(), 0..20_000),
            points in prop::collection::vec(any::<usize>(), 0..16),
            limit in prop::sample::select(vec![0, 16, MAX_BODY]),
        ) {
            let mut data = prefix.as_bytes().to_vec();
            data.extend_from_slice(&random);
            let pieces = cut(&data, &points);
            let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
            let (feed, most) = run(&refs, limit);
            prop_assert!(most <= LIMITS.head + limit);
            if let Some(Feed::Done(request)) = feed {
                prop_assert!(request.raw_head.len() <= LIMITS.head);
                // Unwanted bodies: only what came with the head, within the last read.
                let largest_read = pieces.iter().map(Vec::len).max().unwrap_or(0);
                let bound = if limit == 0 { LIMITS.head + largest_read } else { limit };
                prop_assert!(request.body.len() <= bound);
            }
        }

        /// Valid requests parse the same whatever the reads, and mutated ones never panic.
        #[test]
        fn valid_requests_parse_in_any_reads(
            (raw, path, body_len) in valid_request(),
            points in prop::collection::vec(any::<usize>(), 0..12),
            flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        ) {
            let pieces = cut(&raw, &points);
            let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
            let (feed, most) = run(&refs, MAX_BODY);
            prop_assert!(most <= LIMITS.head + MAX_BODY);
            let request = done(feed);
            prop_assert_eq!(&request.path, &path);
            prop_assert_eq!(request.body.len(), body_len);
            prop_assert_eq!(&request.body[..], &raw[raw.len() - body_len..]);
            let whole = done(run(&[&raw], MAX_BODY).0);
            prop_assert_eq!(whole, request);

            let mut mutated = raw.clone();
            for (at, byte) in flips {
                let at = at % mutated.len();
                mutated[at] = byte;
            }
            let pieces = cut(&mutated, &points);
            let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
            let (_, most) = run(&refs, MAX_BODY);
            prop_assert!(most <= LIMITS.head + MAX_BODY);
        }
    }
}
