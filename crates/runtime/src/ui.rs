//! The in-process UI server: a `ui-bundle` whose path is a directory is served as a static
//! single-page app on the service's port, and `/api`, `/api/...` and `/ws...` requests
//! (WebSocket upgrades included) are proxied, path unchanged, to the API service.
//!
//! The API service is the first `api-binary` among the UI's dependencies (else the first in
//! the manifest); its port is the one named `http` (else its first).
//!
//! Requests are read by the HTTP reactor (`http::serve`: bounded heads, a deadline per request,
//! a cap on incomplete connections), static files are answered by its workers, and each
//! proxied connection gets two threads of its own, at most [`MAX_PROXIED`] connections at
//! once: a new one past that closes the one idle the longest (as the reactor evicts the
//! oldest incomplete connection), so idle connections (WebSockets left open, bodies never
//! sent) cannot keep the app's own requests from its API.
//!
//! **Only the UI's own origin is answered** ([`same_origin`]): a `Host` naming anything but a
//! loopback host (a DNS-rebinding page) gets 403, and so does a request for the API (`/api`,
//! `/ws`, upgrades) whose `Origin` is not this UI's or whose `Sec-Fetch-Site` is not
//! `same-origin`/`none` (another site's POST, WebSocket, image or link, which browsers send
//! across sites); clients sending none of these headers are answered.
//!
//! **Invariant: nothing outside the UI directory is ever served.** Static files: GET and HEAD.
//! The path is split on `/` and each segment percent-decoded; a segment that is `..` or that
//! decodes to one containing `/`, `\` or NUL (`%2e%2e`, `%2f`, `%5c`, `%00`) is refused (400).
//! The file is then opened beneath the UI directory's handle one component at a time without
//! following links (see `confine`): a symlink anywhere on the way, even one pointing inside,
//! gives 404. A directory serves its `index.html`; a path with no file behind it and no
//! extension gets the root's `index.html` (client-side routing). Files are streamed, never
//! read whole into memory.
//!
//! The proxy forwards the request head as received (with `Connection: close` unless it is an
//! upgrade), then copies bytes both ways until either side closes, which carries bodies,
//! streamed responses and WebSocket frames alike.

use crate::confine::{self, Dir};
use crate::http::{self, Handler, Request, Response};
use crate::logs::ServiceLog;
use crate::ports::PortMap;
use manifest::{Manifest, ServiceType};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// At most this many proxied connections at once (each holds two threads while open); a new
/// one past it evicts the one idle the longest.
pub const MAX_PROXIED: usize = 32;

/// The proxied connections open now: what eviction needs of each.
#[derive(Default)]
struct Proxied {
    next_id: u64,
    open: Vec<Open>,
}

/// One proxied connection: its sockets (shut down to evict it) and when bytes last went
/// through it (milliseconds since the server started).
struct Open {
    id: u64,
    sockets: Vec<TcpStream>,
    last: Arc<AtomicU64>,
}

impl Proxied {
    /// Registers a new connection (its client socket), first evicting the one idle the
    /// longest when [`MAX_PROXIED`] are open: its sockets are shut down, which ends its
    /// threads. Returns the new connection's id.
    fn admit(&mut self, client: TcpStream, last: Arc<AtomicU64>, log: &ServiceLog) -> u64 {
        if self.open.len() >= MAX_PROXIED
            && let Some(idlest) =
                (0..self.open.len()).min_by_key(|&i| self.open[i].last.load(Ordering::Relaxed))
        {
            let evicted = self.open.swap_remove(idlest);
            for socket in &evicted.sockets {
                let _ = socket.shutdown(Shutdown::Both);
            }
            log.line("[xbundle-runtime] ui: too many proxied connections: closed the one idle the longest");
        }
        let id = self.next_id;
        self.next_id += 1;
        self.open.push(Open {
            id,
            sockets: vec![client],
            last,
        });
        id
    }

    /// Adds the upstream socket of connection `id`; `false` when it was evicted meanwhile.
    fn attach(&mut self, id: u64, upstream: TcpStream) -> bool {
        match self.open.iter_mut().find(|open| open.id == id) {
            Some(open) => {
                open.sockets.push(upstream);
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, id: u64) {
        self.open.retain(|open| open.id != id);
    }
}

/// The port of the API service the UI at `ui_index` proxies to.
pub fn api_port(manifest: &Manifest, ui_index: usize, ports: &PortMap) -> Option<u16> {
    let ui = &manifest.services[ui_index];
    let api = ui
        .dependencies()
        .iter()
        .filter_map(|dep| manifest.service(dep.as_str()))
        .find(|s| s.kind == ServiceType::ApiBinary)
        .or_else(|| {
            manifest
                .services
                .iter()
                .find(|s| s.kind == ServiceType::ApiBinary)
        })?;
    let map = ports.get(api.id.as_str())?;
    map.get("http").or_else(|| map.values().next()).copied()
}

struct Ui {
    root: Dir,
    /// The port this server listens on (its origin's).
    port: u16,
    api_port: Option<u16>,
    log: Arc<ServiceLog>,
    proxied: Arc<Mutex<Proxied>>,
    /// The clock of [`Open::last`].
    started: Instant,
}

/// Serves until the process exits.
pub fn serve(listener: TcpListener, root: Dir, api_port: Option<u16>, log: Arc<ServiceLog>) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let ui = Ui {
        root,
        port,
        api_port,
        log: Arc::clone(&log),
        proxied: Arc::default(),
        started: Instant::now(),
    };
    let config = http::ServerConfig {
        name: "ui",
        workers: 4,
        queue: 32,
        max_pending: 64,
    };
    if let Err(err) = http::serve(listener, config, Arc::new(ui)) {
        log.line(&format!("[xbundle-runtime] ui: cannot serve: {err}"));
    }
}

impl Handler for Ui {
    /// The proxy streams bodies through; static files take none.
    fn body_limit(&self, _request: &Request) -> usize {
        0
    }

    fn handle(&self, request: Request, stream: TcpStream) {
        let proxied = request.path == "/api"
            || request.path.starts_with("/api/")
            || request.path.starts_with("/ws");
        if let Err(why) = same_origin(&request, self.port, proxied) {
            http::respond(&stream, &request, &Response::error(403, why));
            return;
        }
        if proxied {
            let Some(port) = self.api_port else {
                http::respond(
                    &stream,
                    &request,
                    &Response::error(502, "no API service to proxy to"),
                );
                return;
            };
            let Ok(client) = stream.try_clone() else {
                return;
            };
            let clock = Clock {
                started: self.started,
                last: Arc::new(AtomicU64::new(0)),
            };
            clock.touch();
            let id = lock(&self.proxied).admit(client, Arc::clone(&clock.last), &self.log);
            let proxied = Arc::clone(&self.proxied);
            let log = Arc::clone(&self.log);
            let spawned = std::thread::Builder::new()
                .name("ui-proxy".into())
                .spawn(move || {
                    let attach = |upstream: TcpStream| lock(&proxied).attach(id, upstream);
                    if let Err(err) = proxy(stream, &request, port, &clock, attach) {
                        log.line(&format!("[xbundle-runtime] ui: {err}"));
                    }
                    lock(&proxied).remove(id);
                });
            if spawned.is_err() {
                lock(&self.proxied).remove(id);
            }
            return;
        }
        let head = request.method == "HEAD";
        if request.method != "GET" && !head {
            http::respond(
                &stream,
                &request,
                &Response::error(405, "method not allowed"),
            );
            return;
        }
        match static_file(&self.root, &request.path) {
            Ok((file, content_type)) => send_file(&stream, &request, file, content_type),
            Err(response) => http::respond(&stream, &request, &response),
        }
    }
}

/// The host names the UI is reached by: the loopback ones (a `Host` holding any other name is
/// a DNS-rebinding page's request, whose answer its page could read).
fn loopback_host(host: &str) -> bool {
    ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .any(|name| host.eq_ignore_ascii_case(name))
}

/// Whether a request may be answered: its `Host` (when sent) names a loopback host; and, for
/// what reaches the API (`/api`, `/ws`, WebSocket upgrades), its `Origin` (when sent) is this
/// UI's own (`http://127.0.0.1:PORT`, `http://localhost:PORT` or `http://[::1]:PORT`) and its
/// `Sec-Fetch-Site` (when sent) is `same-origin` or `none`. Browsers send these on cross-site
/// requests the same-origin policy does not stop (POSTs, WebSocket handshakes, GETs of
/// images and links): another site's page could otherwise drive the app's API through the
/// proxy.
/// Clients that send neither header (curl, the Electron shell's own requests) are answered.
fn same_origin(request: &Request, port: u16, proxied: bool) -> Result<(), &'static str> {
    if let Some(host) = request.header("host") {
        let name = match host.rsplit_once(':') {
            Some((name, digits))
                if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) =>
            {
                name
            }
            _ => host,
        };
        if !loopback_host(name) {
            return Err("the UI answers only requests for a loopback host (127.0.0.1, localhost)");
        }
    }
    if proxied && let Some(origin) = request.header("origin") {
        let own = origin
            .strip_prefix("http://")
            .and_then(|rest| rest.rsplit_once(':'))
            .is_some_and(|(name, p)| loopback_host(name) && p == port.to_string());
        if !own {
            return Err("the API is proxied only for this UI's own pages (Origin)");
        }
    }
    // Browsers say where a request comes from even when they send no `Origin` (an image or a
    // link of another page: a GET): another site, or another port of the same host.
    if proxied
        && let Some(site) = request.header("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return Err("the API is proxied only for this UI's own pages (Sec-Fetch-Site)");
    }
    Ok(())
}

fn content_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match extension {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "wasm" => "application/wasm",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The decoded segments of a request path, or the refusal.
fn segments(url_path: &str) -> Result<Vec<Vec<u8>>, Response> {
    let bad = || Response::error(400, "bad path");
    let rest = url_path.strip_prefix('/').ok_or_else(bad)?;
    let mut out = Vec::new();
    for raw in rest.split('/') {
        let segment = http::percent_decode_segment(raw).ok_or_else(bad)?;
        if segment.iter().any(|b| matches!(b, b'/' | b'\\' | 0)) || segment == b".." {
            return Err(bad());
        }
        if segment.is_empty() || segment == b"." {
            continue;
        }
        out.push(segment);
    }
    Ok(out)
}

/// The file to serve for `url_path`, opened beneath `root` without following links.
fn static_file(root: &Dir, url_path: &str) -> Result<(File, &'static str), Response> {
    let not_found = || Response::error(404, "not found");
    let segments = segments(url_path)?;
    let opened = open_beneath(root, &segments);
    let missing = match opened {
        Ok(found) => return found.ok_or_else(not_found),
        Err(err) => {
            matches!(err.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
                && !confine::is_symlink_error(&err)
        }
    };
    // Client-side routing: an extension-less path with nothing behind it gets the app.
    let extension = segments.last().is_some_and(|last| last.contains(&b'.'));
    if missing && !extension {
        return open_beneath(root, &[]).ok().flatten().ok_or_else(not_found);
    }
    Err(not_found())
}

/// Opens the file named by `segments` (a directory gives its `index.html`): `Ok(None)` when
/// it is neither a regular file nor a directory with an `index.html`.
fn open_beneath(root: &Dir, segments: &[Vec<u8>]) -> std::io::Result<Option<(File, &'static str)>> {
    let mut dir = root.try_clone()?;
    let (name, file) = match segments.split_last() {
        None => ("index.html".to_owned(), dir.open_file_read(b"index.html")?),
        Some((last, parents)) => {
            for part in parents {
                dir = dir.child_dir(part, false)?;
            }
            let file = dir.open_file_read(last)?;
            let kind = file.metadata()?.file_type();
            if kind.is_dir() {
                let inner = dir.child_dir(last, false)?;
                (
                    "index.html".to_owned(),
                    inner.open_file_read(b"index.html")?,
                )
            } else {
                (String::from_utf8_lossy(last).into_owned(), file)
            }
        }
    };
    if !file.metadata()?.is_file() {
        return Ok(None);
    }
    Ok(Some((file, content_type(&name))))
}

/// Streams a file as the response (within the write deadline).
fn send_file(stream: &TcpStream, request: &Request, mut file: File, content_type: &str) {
    let Ok(length) = file.metadata().map(|m| m.len()) else {
        http::respond(stream, request, &Response::error(404, "not found"));
        return;
    };
    let mut writer = http::DeadlineWriter::new(stream, http::WRITE_DEADLINE);
    let head = http::response_head(200, content_type, length, &[]);
    if writer.write_all(head.as_bytes()).is_ok() && request.method != "HEAD" {
        let _ = std::io::copy(&mut (&mut file).take(length), &mut writer);
    }
    http::finish(stream, request.unread);
}

fn lock(proxied: &Mutex<Proxied>) -> std::sync::MutexGuard<'_, Proxied> {
    proxied.lock().unwrap_or_else(|e| e.into_inner())
}

/// When bytes last went through a proxied connection.
#[derive(Clone)]
struct Clock {
    started: Instant,
    last: Arc<AtomicU64>,
}

impl Clock {
    fn touch(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }
}

/// Forwards one request and then bytes both ways. `attach` registers the upstream socket (so
/// an eviction shuts it down too); `false` means this connection was evicted already.
fn proxy(
    mut client: TcpStream,
    request: &Request,
    port: u16,
    clock: &Clock,
    attach: impl FnOnce(TcpStream) -> bool,
) -> std::io::Result<()> {
    let mut upstream = match TcpStream::connect(("127.0.0.1", port)) {
        Ok(stream) => stream,
        Err(err) => {
            http::respond(
                &client,
                request,
                &Response::error(502, &format!("API unreachable: {err}")),
            );
            return Ok(());
        }
    };
    if !attach(upstream.try_clone()?) {
        return Ok(());
    }
    let upgrade = request.header("upgrade").is_some();
    let head = String::from_utf8_lossy(&request.raw_head);
    let mut out = String::new();
    // Lines end with CRLF or a bare LF (both are read as line ends): the head is rebuilt
    // with CRLF, so the `Connection` line is found and the added one lands inside the head.
    for (n, line) in head
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .enumerate()
    {
        if line.is_empty() {
            continue;
        }
        if n > 0 && !upgrade && line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    if !upgrade {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    upstream.write_all(out.as_bytes())?;
    upstream.write_all(&request.body)?;
    let mut client_read = client.try_clone()?;
    let mut upstream_write = upstream.try_clone()?;
    let forward_clock = clock.clone();
    let forward = std::thread::spawn(move || {
        let _ = copy(&mut client_read, &mut upstream_write, &forward_clock);
        let _ = upstream_write.shutdown(Shutdown::Write);
    });
    let _ = copy(&mut upstream, &mut client, clock);
    let _ = client.shutdown(Shutdown::Both);
    let _ = upstream.shutdown(Shutdown::Both);
    let _ = forward.join();
    Ok(())
}

fn copy(from: &mut TcpStream, to: &mut TcpStream, clock: &Clock) -> std::io::Result<()> {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let read = from.read(&mut buffer)?;
        if read == 0 {
            return Ok(());
        }
        clock.touch();
        to.write_all(&buffer[..read])?;
    }
}

/// The address of the app's UI (its first `ui-bundle` service's `http` port).
pub fn ui_url(manifest: &Manifest, ports: &PortMap) -> Option<String> {
    let ui = manifest
        .services
        .iter()
        .find(|s| s.kind == ServiceType::UiBundle)?;
    let ports = ports.get(ui.id.as_str())?;
    let port = ports.get("http").or_else(|| ports.values().next())?;
    Some(format!("http://127.0.0.1:{port}/"))
}

/// Opens `url` in the user's browser without waiting for it: `XBUNDLE_BROWSER` when set (a
/// program given the URL as its one argument), else the system's opener (`xdg-open` on Linux,
/// `open` on macOS, `cmd /c start` on Windows). A failure is reported, never fatal.
pub fn open_in_browser(url: &str) {
    let mut command = match std::env::var_os("XBUNDLE_BROWSER").filter(|v| !v.is_empty()) {
        Some(program) => {
            let mut command = std::process::Command::new(program);
            command.arg(url);
            command
        }
        None if cfg!(target_os = "macos") => {
            let mut command = std::process::Command::new("open");
            command.arg(url);
            command
        }
        None if cfg!(windows) => {
            let mut command = std::process::Command::new("cmd");
            command.args(["/c", "start", "", url]);
            command
        }
        None => {
            let mut command = std::process::Command::new("xdg-open");
            command.arg(url);
            command
        }
    };
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    match command.spawn() {
        // Reaped by a thread, so no zombie is left while the app runs.
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(err) => eprintln!("xbundle-runtime: could not open the browser at {url}: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_and_own_origins() {
        let request = |headers: &[(&str, &str)]| Request {
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Request::default()
        };
        for host in [
            "127.0.0.1:4000",
            "localhost:4000",
            "LOCALHOST",
            "[::1]:4000",
            "127.0.0.1",
        ] {
            assert!(
                same_origin(&request(&[("Host", host)]), 4000, true).is_ok(),
                "{host}"
            );
        }
        for host in [
            "evil.example",
            "evil.example:4000",
            "127.0.0.1.evil.example:4000",
            "localhost.:4000",
            "",
        ] {
            assert!(
                same_origin(&request(&[("Host", host)]), 4000, false).is_err(),
                "{host}"
            );
        }
        assert!(same_origin(&request(&[]), 4000, true).is_ok());
        for site in ["cross-site", "same-site"] {
            let foreign = request(&[("Sec-Fetch-Site", site)]);
            assert!(same_origin(&foreign, 4000, true).is_err(), "{site}");
            assert!(same_origin(&foreign, 4000, false).is_ok(), "{site}");
        }
        for site in ["same-origin", "none"] {
            assert!(same_origin(&request(&[("Sec-Fetch-Site", site)]), 4000, true).is_ok());
        }
        let own = request(&[
            ("Host", "127.0.0.1:4000"),
            ("Origin", "http://localhost:4000"),
        ]);
        assert!(same_origin(&own, 4000, true).is_ok());
        for origin in [
            "https://evil.example",
            "null",
            "http://127.0.0.1:4001",
            "http://127.0.0.1",
            "http://evil.example:4000",
        ] {
            let foreign = request(&[("Host", "127.0.0.1:4000"), ("Origin", origin)]);
            assert!(same_origin(&foreign, 4000, true).is_err(), "{origin}");
            // Static files carry no API: any origin may load them.
            assert!(same_origin(&foreign, 4000, false).is_ok(), "{origin}");
        }
    }

    #[test]
    fn request_paths_are_decoded_and_checked_per_segment() {
        let ok = |p: &str| segments(p).map_err(|r| r.status);
        assert_eq!(
            ok("/a/./b%2Ejs//").unwrap(),
            vec![b"a".to_vec(), b"b.js".to_vec()]
        );
        assert!(ok("/").unwrap().is_empty());
        for bad in [
            "/..",
            "/a/../b",
            "/%2e%2e/x",
            "/%2E%2E",
            "/a%2fb",
            "/a%5cb",
            "/a\\b",
            "/%00",
            "/%zz",
            "x",
        ] {
            assert_eq!(ok(bad), Err(400), "{bad}");
        }
    }
}
