//! The API tokens: their store and the API's routes.
//!
//! A token is opaque: 32 bytes read from `/dev/urandom`, written as 64 lowercase hex digits.
//! It means nothing by itself (no signature to check: the standard library has no HMAC or
//! SHA-256, and hand-rolled cryptography is not wanted); the store knows what it grants.
//!
//! Invariants: the live tokens, each with its subject, issue and expiry time (Unix seconds),
//! live in one JSON file ([`STATE_FILE`], mode 0600 where modes exist, as it holds bearer
//! secrets) in the data directory, replaced atomically (a temporary file in the same directory,
//! synced, then renamed over it), so the process killed at any moment (it has no signal
//! handler: SIGTERM ends it) leaves the previous set or the new one. A token is answered for
//! only once it is on disk, so it survives a restart. A token is valid while the clock is
//! before its expiry; expired ones are dropped when the file is loaded and whenever a token is
//! issued. At most [`MAX_TOKENS`] live at once. The temporary file is always created afresh
//! (never opened through a link planted at its predictable name). One process at a time owns a
//! data directory (an exclusive lock on the directory itself, on Unix), so two APIs started on
//! it cannot lose each other's tokens. A state file that cannot be read is an error at start,
//! never overwritten; a system without `/dev/urandom` stops the API at start.
//!
//! Lookups go through a `HashMap`, whose per-process random hash keys keep the time a lookup
//! takes from telling an attacker anything about the stored tokens.
//!
//! Routes (paths keep their `/api` prefix: the runtime's UI proxy forwards them unchanged):
//!
//! ```text
//! GET  /health, /api/health  {"status":"healthy",...} (the runtime's health check)
//! POST /api/tokens           {"subject":"alice","ttl_seconds":3600} -> 201
//!                            {"token","subject","issued_at","expires_at"}
//!                            (ttl_seconds optional: default 3600, at most 30 days)
//! POST /api/tokens/verify    {"token":"..."} -> 200 {"valid":true,"subject","expires_at"}
//!                            or 401 {"valid":false,"error"} (unknown, malformed or expired)
//! ```

use crate::http::{Request, Response};
use crate::json::{self, Value};
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

pub const STATE_FILE: &str = "tokens.json";
const TEMP_PREFIX: &str = ".tokens.json.tmp-";
pub const MAX_TOKENS: usize = 10_000;
pub const MAX_SUBJECT: usize = 256;
pub const DEFAULT_TTL: u64 = 3600;
pub const MAX_TTL: u64 = 30 * 24 * 3600;
const TOKEN_BYTES: usize = 32;
const RANDOM_SOURCE: &str = "/dev/urandom";

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub subject: String,
    pub issued_at: u64,
    pub expires_at: u64,
}

/// A fresh token: [`TOKEN_BYTES`] random bytes in hex.
fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    fs::File::open(RANDOM_SOURCE)?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `token` has the shape of one this API issues.
fn well_formed(token: &str) -> bool {
    token.len() == 2 * TOKEN_BYTES
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The current time in Unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

type Tokens = HashMap<String, Grant>;

fn to_json(tokens: &Tokens) -> String {
    let mut sorted: Vec<_> = tokens.iter().collect();
    sorted.sort_by(|a, b| (a.1.issued_at, a.0).cmp(&(b.1.issued_at, b.0)));
    let items = sorted
        .into_iter()
        .map(|(token, grant)| {
            Value::Object(vec![
                ("token".into(), Value::String(token.clone())),
                ("subject".into(), Value::String(grant.subject.clone())),
                ("issued_at".into(), Value::Number(grant.issued_at as f64)),
                ("expires_at".into(), Value::Number(grant.expires_at as f64)),
            ])
        })
        .collect();
    Value::Object(vec![("tokens".into(), Value::Array(items))]).to_json()
}

/// The tokens of a state file's text, those expired at `now` left out.
fn from_json(text: &str, now: u64) -> Result<Tokens, String> {
    let value = json::parse(text)?;
    let Some(Value::Array(items)) = value.get("tokens") else {
        return Err("no tokens".into());
    };
    let mut tokens = Tokens::new();
    for item in items {
        let entry = (|| {
            let token = item.get("token")?.as_str()?;
            let grant = Grant {
                subject: item.get("subject")?.as_str()?.to_owned(),
                issued_at: item.get("issued_at")?.as_u64()?,
                expires_at: item.get("expires_at")?.as_u64()?,
            };
            well_formed(token).then(|| (token.to_owned(), grant))
        })();
        let (token, grant) = entry.ok_or("a malformed token entry")?;
        if grant.expires_at > now {
            tokens.insert(token, grant);
        }
    }
    Ok(tokens)
}

pub struct Store {
    dir: PathBuf,
    /// The data directory, open and exclusively locked while the store lives (Unix).
    _owner: Option<fs::File>,
    limit: usize,
    tokens: Mutex<Tokens>,
}

#[derive(Debug)]
pub enum Error {
    Invalid(String),
    Full,
    Io(std::io::Error),
}

impl Store {
    /// Loads the tokens of `dir` (created if missing); no state file is no tokens.
    /// Temporary files of a save killed midway (and links by their names) are removed.
    pub fn open(dir: &Path) -> Result<Store, String> {
        Store::open_limited(dir, MAX_TOKENS, now())
    }

    fn open_limited(dir: &Path, limit: usize, now: u64) -> Result<Store, String> {
        random_token()
            .map_err(|e| format!("cannot read random bytes from {RANDOM_SOURCE}: {e}"))?;
        fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let owner = if cfg!(unix) {
            let handle = fs::File::open(dir).map_err(|e| format!("open {}: {e}", dir.display()))?;
            handle.try_lock().map_err(|e| match e {
                fs::TryLockError::WouldBlock => format!(
                    "another auth-service-api uses {}: stop it first",
                    dir.display()
                ),
                fs::TryLockError::Error(e) => format!("lock {}: {e}", dir.display()),
            })?;
            Some(handle)
        } else {
            None
        };
        let entries = fs::read_dir(dir).map_err(|e| format!("read {}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let ours = entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX);
            if ours && entry.file_type().is_ok_and(|t| !t.is_dir()) {
                let _ = fs::remove_file(entry.path());
            }
        }
        let path = dir.join(STATE_FILE);
        let tokens = match fs::read_to_string(&path) {
            Ok(text) => from_json(&text, now).map_err(|e| {
                format!(
                    "{} is not valid ({e}): move it away to start with no tokens",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Tokens::new(),
            Err(e) => return Err(format!("read {}: {e}", path.display())),
        };
        Ok(Store {
            dir: dir.to_owned(),
            _owner: owner,
            limit,
            tokens: Mutex::new(tokens),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tokens> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `next` atomically, then makes it the state.
    fn save(&self, tokens: &mut Tokens, next: Tokens) -> Result<(), Error> {
        let temp = self
            .dir
            .join(format!("{TEMP_PREFIX}{}", std::process::id()));
        let written = (|| {
            // A fresh file, never one already there (a link would be written through).
            let _ = fs::remove_file(&temp);
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&temp)?;
            file.write_all(to_json(&next).as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            drop(file);
            fs::rename(&temp, self.dir.join(STATE_FILE))
        })();
        if let Err(err) = written {
            let _ = fs::remove_file(&temp);
            return Err(Error::Io(err));
        }
        // The rename itself on disk (directories cannot be opened for this everywhere).
        if let Ok(dir) = fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        *tokens = next;
        Ok(())
    }

    /// Issues a token for `subject`, valid `ttl` seconds from `now`, once it is on disk.
    pub fn issue(&self, subject: &str, ttl: u64, now: u64) -> Result<(String, Grant), Error> {
        let subject = subject.trim();
        if subject.is_empty() || subject.chars().count() > MAX_SUBJECT {
            return Err(Error::Invalid(format!(
                "subject must be 1 to {MAX_SUBJECT} characters"
            )));
        }
        if !(1..=MAX_TTL).contains(&ttl) {
            return Err(Error::Invalid(format!(
                "ttl_seconds must be 1 to {MAX_TTL}"
            )));
        }
        let mut tokens = self.lock();
        let mut next: Tokens = tokens
            .iter()
            .filter(|(_, grant)| grant.expires_at > now)
            .map(|(token, grant)| (token.clone(), grant.clone()))
            .collect();
        if next.len() >= self.limit {
            return Err(Error::Full);
        }
        let token = loop {
            let token = random_token().map_err(Error::Io)?;
            if !next.contains_key(&token) {
                break token;
            }
        };
        let grant = Grant {
            subject: subject.to_owned(),
            issued_at: now,
            expires_at: now + ttl,
        };
        next.insert(token.clone(), grant.clone());
        self.save(&mut tokens, next)?;
        Ok((token, grant))
    }

    /// What `token` grants, if it is known and not expired at `now`.
    pub fn verify(&self, token: &str, now: u64) -> Option<Grant> {
        if !well_formed(token) {
            return None;
        }
        self.lock()
            .get(token)
            .filter(|grant| grant.expires_at > now)
            .cloned()
    }

    /// How many tokens the store holds (expired ones not yet dropped included).
    #[cfg(test)]
    fn count(&self) -> usize {
        self.lock().len()
    }
}

fn healthy() -> Response {
    let body = Value::Object(vec![
        ("status".into(), Value::String("healthy".into())),
        ("service".into(), Value::String("auth-service-api".into())),
    ]);
    Response::json(200, body.to_json())
}

fn method_not_allowed(allow: &'static str) -> Response {
    Response {
        allow: Some(allow),
        ..Response::error(405, "method not allowed")
    }
}

fn failed(err: Error) -> Response {
    match err {
        Error::Invalid(message) => Response::error(400, &message),
        Error::Full => Response::error(
            503,
            &format!("{MAX_TOKENS} tokens are live: try again when some expire"),
        ),
        Error::Io(err) => {
            eprintln!("auth-service-api: cannot issue a token: {err}");
            Response::error(500, "internal error (see the API's log)")
        }
    }
}

/// Answers one request at the current time.
pub fn route(store: &Store, request: &Request) -> Response {
    route_at(store, request, now())
}

/// Answers one request at `now` (Unix seconds).
pub fn route_at(store: &Store, request: &Request, now: u64) -> Response {
    let path = request.path.trim_end_matches('/');
    let method = request.method.as_str();
    let read = matches!(method, "GET" | "HEAD");
    match path {
        "/health" | "/api/health" if read => healthy(),
        "/health" | "/api/health" => method_not_allowed("GET, HEAD"),
        "/api/tokens" if method == "POST" => issue(store, &request.body, now),
        "/api/tokens/verify" if method == "POST" => verify(store, &request.body, now),
        "/api/tokens" | "/api/tokens/verify" => method_not_allowed("POST"),
        _ => Response::error(404, "not found"),
    }
}

/// The members of a JSON object body, every one among `known`; `Err` is the answer.
fn object(body: &[u8], known: &[&str]) -> Result<Value, Response> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Err(Response::error(400, "the body is not UTF-8"));
    };
    let value = match json::parse(text) {
        Ok(value @ Value::Object(_)) => value,
        Ok(_) => return Err(Response::error(400, "a JSON object expected")),
        Err(err) => return Err(Response::error(400, &format!("bad JSON body: {err}"))),
    };
    if let Value::Object(members) = &value {
        if let Some((key, _)) = members.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            return Err(Response::error(400, &format!("unknown field {key:?}")));
        }
    }
    Ok(value)
}

fn issue(store: &Store, body: &[u8], now: u64) -> Response {
    let value = match object(body, &["subject", "ttl_seconds"]) {
        Ok(value) => value,
        Err(response) => return response,
    };
    let Some(subject) = value.get("subject").and_then(Value::as_str) else {
        return Response::error(400, "subject (a string) is required");
    };
    let ttl = match value.get("ttl_seconds") {
        None => DEFAULT_TTL,
        Some(ttl) => match ttl.as_u64() {
            Some(ttl) => ttl,
            None => return Response::error(400, &format!("ttl_seconds must be 1 to {MAX_TTL}")),
        },
    };
    match store.issue(subject, ttl, now) {
        Ok((token, grant)) => Response::json(
            201,
            Value::Object(vec![
                ("token".into(), Value::String(token)),
                ("subject".into(), Value::String(grant.subject)),
                ("issued_at".into(), Value::Number(grant.issued_at as f64)),
                ("expires_at".into(), Value::Number(grant.expires_at as f64)),
            ])
            .to_json(),
        ),
        Err(err) => failed(err),
    }
}

fn verify(store: &Store, body: &[u8], now: u64) -> Response {
    let value = match object(body, &["token"]) {
        Ok(value) => value,
        Err(response) => return response,
    };
    let Some(token) = value.get("token").and_then(Value::as_str) else {
        return Response::error(400, "token (a string) is required");
    };
    match store.verify(token, now) {
        Some(grant) => Response::json(
            200,
            Value::Object(vec![
                ("valid".into(), Value::Bool(true)),
                ("subject".into(), Value::String(grant.subject)),
                ("expires_at".into(), Value::Number(grant.expires_at as f64)),
            ])
            .to_json(),
        ),
        None => Response::json(
            401,
            Value::Object(vec![
                ("valid".into(), Value::Bool(false)),
                (
                    "error".into(),
                    Value::String("unknown or expired token".into()),
                ),
            ])
            .to_json(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temporary directory, removed on drop.
    pub struct TempDir(pub PathBuf);

    impl TempDir {
        pub fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "auth-service-api-test-{name}-{}",
                std::process::id()
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const T0: u64 = 1_700_000_000;

    fn call(store: &Store, method: &str, path: &str, body: &str, now: u64) -> (u16, Value) {
        let request = Request {
            method: method.into(),
            path: path.into(),
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        };
        let response = route_at(store, &request, now);
        let text = String::from_utf8(response.body).unwrap();
        (response.status, json::parse(&text).unwrap())
    }

    fn verify_at(store: &Store, token: &str, now: u64) -> (u16, Value) {
        let body = Value::Object(vec![("token".into(), Value::String(token.into()))]);
        call(store, "POST", "/api/tokens/verify", &body.to_json(), now)
    }

    #[test]
    fn issue_then_verify_until_expiry() {
        let dir = TempDir::new("issue");
        let store = Store::open_limited(&dir.0, MAX_TOKENS, T0).unwrap();
        let (status, health) = call(&store, "GET", "/api/health", "", T0);
        assert_eq!(status, 200);
        assert_eq!(health.get("status").unwrap().as_str(), Some("healthy"));
        let (status, issued) = call(
            &store,
            "POST",
            "/api/tokens",
            r#"{"subject":" alice ","ttl_seconds":60}"#,
            T0,
        );
        assert_eq!(status, 201, "{issued:?}");
        let token = issued.get("token").unwrap().as_str().unwrap().to_owned();
        assert!(well_formed(&token), "{token}");
        assert_eq!(issued.get("subject").unwrap().as_str(), Some("alice"));
        assert_eq!(issued.get("expires_at").unwrap().as_u64(), Some(T0 + 60));
        let (status, checked) = verify_at(&store, &token, T0 + 59);
        assert_eq!(status, 200);
        assert_eq!(checked.get("subject").unwrap().as_str(), Some("alice"));
        assert_eq!(checked.get("valid"), Some(&Value::Bool(true)));
        let (status, expired) = verify_at(&store, &token, T0 + 60);
        assert_eq!(status, 401);
        assert_eq!(expired.get("valid"), Some(&Value::Bool(false)));
        // The default lifetime; two tokens differ.
        let (_, other) = call(&store, "POST", "/api/tokens", r#"{"subject":"bob"}"#, T0);
        assert_eq!(
            other.get("expires_at").unwrap().as_u64(),
            Some(T0 + DEFAULT_TTL)
        );
        assert_ne!(other.get("token").unwrap().as_str(), Some(token.as_str()));
    }

    #[test]
    fn unknown_and_malformed_tokens_are_refused() {
        let dir = TempDir::new("unknown");
        let store = Store::open_limited(&dir.0, MAX_TOKENS, T0).unwrap();
        let (_, issued) = call(&store, "POST", "/api/tokens", r#"{"subject":"a"}"#, T0);
        let token = issued.get("token").unwrap().as_str().unwrap();
        for bad in [
            String::new(),
            "0".repeat(64),
            token.to_uppercase(),
            format!("{token}0"),
            token[1..].to_owned(),
            format!(" {}", &token[1..]),
        ] {
            assert_eq!(verify_at(&store, &bad, T0).0, 401, "{bad:?}");
        }
    }

    #[test]
    fn bad_requests() {
        let dir = TempDir::new("bad");
        let store = Store::open_limited(&dir.0, MAX_TOKENS, T0).unwrap();
        for body in [
            "",
            "[]",
            "{",
            "\u{0}",
            r#"{"ttl_seconds":5}"#,
            r#"{"subject":"  "}"#,
            r#"{"subject":1}"#,
            r#"{"subject":"a","ttl_seconds":0}"#,
            r#"{"subject":"a","ttl_seconds":-1}"#,
            r#"{"subject":"a","ttl_seconds":1.5}"#,
            r#"{"subject":"a","ttl_seconds":"60"}"#,
            r#"{"subject":"a","ttl_seconds":2592001}"#,
            r#"{"subject":"a","extra":true}"#,
        ] {
            assert_eq!(
                call(&store, "POST", "/api/tokens", body, T0).0,
                400,
                "{body}"
            );
        }
        let long = format!(r#"{{"subject":"{}"}}"#, "s".repeat(MAX_SUBJECT + 1));
        assert_eq!(call(&store, "POST", "/api/tokens", &long, T0).0, 400);
        for body in ["{}", r#"{"token":1}"#, r#"{"token":"a","x":1}"#] {
            let status = call(&store, "POST", "/api/tokens/verify", body, T0).0;
            assert_eq!(status, 400, "{body}");
        }
        assert_eq!(call(&store, "GET", "/api/tokens", "", T0).0, 405);
        assert_eq!(call(&store, "GET", "/api/tokens/verify", "", T0).0, 405);
        assert_eq!(call(&store, "POST", "/health", "", T0).0, 405);
        assert_eq!(call(&store, "GET", "/api/tokens/x", "", T0).0, 404);
        assert_eq!(store.count(), 0);
        assert!(!dir.0.join(STATE_FILE).exists());
    }

    #[test]
    fn tokens_survive_reopen_expired_ones_are_dropped_and_no_temporary_file_is_left() {
        let dir = TempDir::new("reopen");
        let store = Store::open_limited(&dir.0, MAX_TOKENS, T0).unwrap();
        let (kept, grant) = store.issue("kept", 100, T0).unwrap();
        let (short, _) = store.issue("short", 10, T0).unwrap();
        drop(store);
        fs::write(dir.0.join(format!("{TEMP_PREFIX}999")), "{").unwrap();
        let again = Store::open_limited(&dir.0, MAX_TOKENS, T0 + 10).unwrap();
        assert_eq!(again.verify(&kept, T0 + 10), Some(grant));
        assert_eq!(again.verify(&short, T0 + 10), None);
        assert_eq!(again.count(), 1, "the expired token was dropped at load");
        let names: Vec<_> = fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [STATE_FILE]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.0.join(STATE_FILE)).unwrap().permissions();
            assert_eq!(mode.mode() & 0o777, 0o600, "the token file is private");
        }
        // Issuing drops expired tokens from the file too.
        again.issue("later", 100, T0 + 100).unwrap();
        let text = fs::read_to_string(dir.0.join(STATE_FILE)).unwrap();
        assert!(!text.contains(&kept) && text.contains("later"), "{text}");
    }

    /// A link planted at the temporary file's name (it is predictable: the pid) is neither
    /// written through at a save nor followed at start; the file it points to is untouched.
    #[cfg(unix)]
    #[test]
    fn a_link_at_the_temporary_name_is_not_written_through() {
        let dir = TempDir::new("link");
        let data = dir.0.join("data");
        let canary = dir.0.join("canary");
        fs::create_dir_all(&data).unwrap();
        fs::write(&canary, "canary").unwrap();
        let planted = data.join(format!("{TEMP_PREFIX}1"));
        std::os::unix::fs::symlink(&canary, &planted).unwrap();
        let store = Store::open_limited(&data, MAX_TOKENS, T0).unwrap();
        assert!(fs::symlink_metadata(&planted).is_err(), "removed at start");
        let temp = data.join(format!("{TEMP_PREFIX}{}", std::process::id()));
        std::os::unix::fs::symlink(&canary, &temp).unwrap();
        let (token, _) = store.issue("a", 10, T0).unwrap();
        assert_eq!(fs::read_to_string(&canary).unwrap(), "canary");
        assert!(fs::read_to_string(data.join(STATE_FILE))
            .unwrap()
            .contains(&token));
        assert!(fs::symlink_metadata(&temp).is_err());
    }

    /// Two APIs on one data directory would each rewrite the file from their own memory and
    /// lose the other's tokens: the second is refused while the first runs.
    #[cfg(unix)]
    #[test]
    fn one_process_owns_a_data_directory() {
        let dir = TempDir::new("owner");
        let first = Store::open_limited(&dir.0, MAX_TOKENS, T0).unwrap();
        let err = Store::open_limited(&dir.0, MAX_TOKENS, T0).err().unwrap();
        assert!(err.contains("another auth-service-api uses"), "{err}");
        drop(first);
        Store::open_limited(&dir.0, MAX_TOKENS, T0).unwrap();
    }

    #[test]
    fn a_full_store_refuses_until_tokens_expire() {
        let dir = TempDir::new("full");
        let store = Store::open_limited(&dir.0, 2, T0).unwrap();
        store.issue("a", 10, T0).unwrap();
        store.issue("b", 20, T0).unwrap();
        assert!(matches!(store.issue("c", 10, T0), Err(Error::Full)));
        assert_eq!(
            call(&store, "POST", "/api/tokens", r#"{"subject":"c"}"#, T0).0,
            503
        );
        store.issue("c", 10, T0 + 10).unwrap();
    }

    #[test]
    fn a_failed_save_answers_nothing() {
        let dir = TempDir::new("failed");
        let store = Store::open_limited(&dir.0, MAX_TOKENS, T0).unwrap();
        fs::remove_dir_all(&dir.0).unwrap();
        assert!(matches!(store.issue("lost", 10, T0), Err(Error::Io(_))));
        assert_eq!(store.count(), 0);
    }

    #[test]
    fn a_corrupt_state_is_refused_and_kept() {
        let dir = TempDir::new("corrupt");
        for text in [
            "{",
            r#"{"tokens":{}}"#,
            r#"{"tokens":[{"token":"ab","subject":"a","issued_at":1,"expires_at":2}]}"#,
            r#"{"tokens":[{"subject":"a","issued_at":1,"expires_at":2}]}"#,
        ] {
            fs::write(dir.0.join(STATE_FILE), text).unwrap();
            let err = Store::open_limited(&dir.0, MAX_TOKENS, T0).err().unwrap();
            assert!(err.contains("move it away"), "{err}");
            assert_eq!(fs::read_to_string(dir.0.join(STATE_FILE)).unwrap(), text);
        }
    }
}
