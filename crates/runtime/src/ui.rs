//! The in-process UI server: a `ui-bundle` whose path is a directory is served as a static
//! single-page app on the service's port, and `/api`, `/api/...` and `/ws...` requests
//! (WebSocket upgrades included) are proxied, path unchanged, to the API service.
//!
//! The API service is the first `api-binary` among the UI's dependencies (else the first in
//! the manifest); its port is the one named `http` (else its first). Static files: GET and
//! HEAD; a path with no file behind it and no extension gets `index.html` (client-side
//! routing); `..` never leaves the root.
//!
//! The proxy forwards the request head as received (with `Connection: close` unless it is an
//! upgrade), then copies bytes both ways until either side closes, which carries bodies,
//! streamed responses and WebSocket frames alike.

use crate::http::{self, Response};
use crate::logs::ServiceLog;
use crate::ports::PortMap;
use manifest::{Manifest, ServiceType};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

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

/// Serves until the process exits.
pub fn serve(listener: TcpListener, root: PathBuf, api_port: Option<u16>, log: Arc<ServiceLog>) {
    let root = Arc::new(root);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let root = Arc::clone(&root);
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                if let Err(err) = connection(stream, &root, api_port) {
                    log.line(&format!("[xbundle-runtime] ui: {err}"));
                }
            });
        }
    });
}

fn connection(mut stream: TcpStream, root: &Path, api_port: Option<u16>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let request = http::read_request(&mut stream, true)?;
    let proxied = request.path == "/api"
        || request.path.starts_with("/api/")
        || request.path.starts_with("/ws");
    if proxied {
        let Some(port) = api_port else {
            return http::write_response(
                &mut stream,
                &Response::error(502, "no API service to proxy to"),
                false,
            );
        };
        return proxy(stream, &request, port);
    }
    let head = request.method == "HEAD";
    if request.method != "GET" && !head {
        return http::write_response(
            &mut stream,
            &Response::error(405, "method not allowed"),
            false,
        );
    }
    let response = static_file(root, &request.path);
    http::write_response(&mut stream, &response, head)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
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

fn static_file(root: &Path, url_path: &str) -> Response {
    let mut path = root.to_path_buf();
    for component in Path::new(url_path.trim_start_matches('/')).components() {
        match component {
            Component::Normal(part) => path.push(part),
            Component::CurDir => {}
            _ => return Response::error(404, "not found"),
        }
    }
    if path.is_dir() {
        path.push("index.html");
    }
    let path = if path.is_file() {
        path
    } else if Path::new(url_path).extension().is_none() {
        root.join("index.html")
    } else {
        return Response::error(404, "not found");
    };
    match std::fs::read(&path) {
        Ok(body) => Response {
            status: 200,
            content_type: content_type(&path),
            body,
            extra_headers: Vec::new(),
        },
        Err(_) => Response::error(404, "not found"),
    }
}

fn proxy(mut client: TcpStream, request: &http::Request, port: u16) -> std::io::Result<()> {
    let mut upstream = match TcpStream::connect(("127.0.0.1", port)) {
        Ok(stream) => stream,
        Err(err) => {
            return http::write_response(
                &mut client,
                &Response::error(502, &format!("API unreachable: {err}")),
                false,
            );
        }
    };
    client.set_read_timeout(None)?;
    let upgrade = request.header("upgrade").is_some();
    let head = String::from_utf8_lossy(&request.raw_head);
    let mut out = String::new();
    for (n, line) in head.split("\r\n").enumerate() {
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
    let forward = std::thread::spawn(move || {
        let _ = copy(&mut client_read, &mut upstream_write);
        let _ = upstream_write.shutdown(Shutdown::Write);
    });
    let _ = copy(&mut upstream, &mut client);
    let _ = client.shutdown(Shutdown::Both);
    let _ = upstream.shutdown(Shutdown::Both);
    let _ = forward.join();
    Ok(())
}

fn copy(from: &mut TcpStream, to: &mut TcpStream) -> std::io::Result<()> {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let read = from.read(&mut buffer)?;
        if read == 0 {
            return Ok(());
        }
        to.write_all(&buffer[..read])?;
    }
}
