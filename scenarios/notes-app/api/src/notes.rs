//! The notes: their store and the API's routes.
//!
//! Invariants: the state lives in one JSON file ([`STATE_FILE`]) in the data directory,
//! replaced atomically (a temporary file in the same directory, synced, then renamed over
//! it), so the process killed at any moment (it has no signal handler: SIGTERM ends it) leaves
//! the previous state or the new one. A change is kept in memory only once it is on disk; a
//! state file that cannot be read is an error at start, never overwritten.
//!
//! Routes (paths keep their `/api` prefix: the runtime's UI proxy forwards them unchanged):
//!
//! ```text
//! GET    /health            {"status":"healthy",...} (the runtime's health check)
//! GET    /api/notes         every note, oldest first
//! POST   /api/notes         {"title":"...","body":"..."} -> 201, the note
//! GET    /api/notes/{id}    one note
//! DELETE /api/notes/{id}    204
//! ```

use crate::http::{Request, Response};
use crate::json::{self, Value};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

pub const STATE_FILE: &str = "notes.json";
const TEMP_PREFIX: &str = ".notes.json.tmp-";
pub const MAX_NOTES: usize = 1000;
pub const MAX_TITLE: usize = 200;
pub const MAX_TEXT: usize = 32 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub id: u64,
    pub title: String,
    pub body: String,
    pub created_at: u64,
}

impl Note {
    fn to_value(&self) -> Value {
        Value::Object(vec![
            ("id".into(), Value::Number(self.id as f64)),
            ("title".into(), Value::String(self.title.clone())),
            ("body".into(), Value::String(self.body.clone())),
            ("created_at".into(), Value::Number(self.created_at as f64)),
        ])
    }

    fn from_value(value: &Value) -> Option<Note> {
        Some(Note {
            id: value.get("id")?.as_u64()?,
            title: value.get("title")?.as_str()?.to_owned(),
            body: value.get("body")?.as_str()?.to_owned(),
            created_at: value.get("created_at")?.as_u64()?,
        })
    }
}

#[derive(Debug, Default, Clone)]
struct State {
    next_id: u64,
    notes: Vec<Note>,
}

impl State {
    fn to_json(&self) -> String {
        Value::Object(vec![
            ("next_id".into(), Value::Number(self.next_id as f64)),
            (
                "notes".into(),
                Value::Array(self.notes.iter().map(Note::to_value).collect()),
            ),
        ])
        .to_json()
    }

    fn from_json(text: &str) -> Result<State, String> {
        let value = json::parse(text)?;
        let next_id = value
            .get("next_id")
            .and_then(Value::as_u64)
            .ok_or("no next_id")?;
        let Some(Value::Array(items)) = value.get("notes") else {
            return Err("no notes".into());
        };
        let notes = items
            .iter()
            .map(|item| Note::from_value(item).ok_or_else(|| "a malformed note".to_owned()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(State { next_id, notes })
    }
}

pub struct Store {
    dir: PathBuf,
    state: Mutex<State>,
}

pub enum Error {
    Invalid(String),
    NotFound,
    Io(std::io::Error),
}

impl Store {
    /// Loads the state of `dir` (created if missing); no state file is an empty state.
    /// Temporary files of a save killed midway are removed.
    pub fn open(dir: &Path) -> Result<Store, String> {
        fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let entries = fs::read_dir(dir).map_err(|e| format!("read {}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let ours = entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX);
            if ours && entry.file_type().is_ok_and(|t| t.is_file()) {
                let _ = fs::remove_file(entry.path());
            }
        }
        let path = dir.join(STATE_FILE);
        let state = match fs::read_to_string(&path) {
            Ok(text) => State::from_json(&text).map_err(|e| {
                format!(
                    "{} is not valid ({e}): move it away to start empty",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State {
                next_id: 1,
                notes: Vec::new(),
            },
            Err(e) => return Err(format!("read {}: {e}", path.display())),
        };
        Ok(Store {
            dir: dir.to_owned(),
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `next` atomically, then makes it the state.
    fn save(&self, state: &mut State, next: State) -> Result<(), Error> {
        let temp = self
            .dir
            .join(format!("{TEMP_PREFIX}{}", std::process::id()));
        let written = (|| {
            let mut file = fs::File::create(&temp)?;
            file.write_all(next.to_json().as_bytes())?;
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
        *state = next;
        Ok(())
    }

    pub fn list(&self) -> Vec<Note> {
        self.lock().notes.clone()
    }

    pub fn get(&self, id: u64) -> Option<Note> {
        self.lock().notes.iter().find(|n| n.id == id).cloned()
    }

    pub fn create(&self, title: &str, body: &str) -> Result<Note, Error> {
        let title = title.trim();
        if title.is_empty() || title.chars().count() > MAX_TITLE {
            return Err(Error::Invalid(format!(
                "title must be 1 to {MAX_TITLE} characters"
            )));
        }
        if body.len() > MAX_TEXT {
            return Err(Error::Invalid(format!(
                "body must be at most {MAX_TEXT} bytes"
            )));
        }
        let mut state = self.lock();
        if state.notes.len() >= MAX_NOTES {
            return Err(Error::Invalid(format!(
                "at most {MAX_NOTES} notes: delete one first"
            )));
        }
        let created_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let note = Note {
            id: state.next_id,
            title: title.to_owned(),
            body: body.to_owned(),
            created_at,
        };
        let mut next = state.clone();
        next.next_id += 1;
        next.notes.push(note.clone());
        self.save(&mut state, next)?;
        Ok(note)
    }

    pub fn delete(&self, id: u64) -> Result<(), Error> {
        let mut state = self.lock();
        let mut next = state.clone();
        let before = next.notes.len();
        next.notes.retain(|n| n.id != id);
        if next.notes.len() == before {
            return Err(Error::NotFound);
        }
        self.save(&mut state, next)
    }
}

fn healthy() -> Response {
    let body = Value::Object(vec![
        ("status".into(), Value::String("healthy".into())),
        ("service".into(), Value::String("notes-app-api".into())),
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
        Error::NotFound => Response::error(404, "no such note"),
        Error::Io(err) => {
            eprintln!("notes-app-api: cannot save: {err}");
            Response::error(500, "internal error (see the API's log)")
        }
    }
}

/// Answers one request.
pub fn route(store: &Store, request: &Request) -> Response {
    let path = request.path.trim_end_matches('/');
    let method = request.method.as_str();
    let read = matches!(method, "GET" | "HEAD");
    match path {
        "/health" | "/api/health" if read => healthy(),
        "/health" | "/api/health" => method_not_allowed("GET, HEAD"),
        "/api/notes" if read => Response::json(
            200,
            Value::Array(store.list().iter().map(Note::to_value).collect()).to_json(),
        ),
        "/api/notes" if method == "POST" => create(store, &request.body),
        "/api/notes" => method_not_allowed("GET, HEAD, POST"),
        _ => {
            let Some(id) = path.strip_prefix("/api/notes/") else {
                return Response::error(404, "not found");
            };
            let Some(id) = id.parse::<u64>().ok().filter(|_| !id.starts_with('+')) else {
                return Response::error(404, "no such note");
            };
            match method {
                "GET" | "HEAD" => match store.get(id) {
                    Some(note) => Response::json(200, note.to_value().to_json()),
                    None => Response::error(404, "no such note"),
                },
                "DELETE" => match store.delete(id) {
                    Ok(()) => Response::empty(204),
                    Err(err) => failed(err),
                },
                _ => method_not_allowed("GET, HEAD, DELETE"),
            }
        }
    }
}

fn create(store: &Store, body: &[u8]) -> Response {
    let Ok(text) = std::str::from_utf8(body) else {
        return Response::error(400, "the body is not UTF-8");
    };
    let value = match json::parse(text) {
        Ok(value @ Value::Object(_)) => value,
        Ok(_) => return Response::error(400, "a JSON object expected"),
        Err(err) => return Response::error(400, &format!("bad JSON body: {err}")),
    };
    if let Value::Object(members) = &value {
        if let Some((key, _)) = members.iter().find(|(k, _)| k != "title" && k != "body") {
            return Response::error(400, &format!("unknown field {key:?}"));
        }
    }
    let title = value.get("title").and_then(Value::as_str);
    let note_body = match value.get("body") {
        None => Some(""),
        Some(v) => v.as_str(),
    };
    let (Some(title), Some(note_body)) = (title, note_body) else {
        return Response::error(400, "title (a string) is required; body is a string");
    };
    match store.create(title, note_body) {
        Ok(note) => Response::json(201, note.to_value().to_json()),
        Err(err) => failed(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temporary directory, removed on drop.
    pub struct TempDir(pub PathBuf);

    impl TempDir {
        pub fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir()
                .join(format!("notes-app-api-test-{name}-{}", std::process::id()));
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

    fn request(method: &str, path: &str, body: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn call(store: &Store, method: &str, path: &str, body: &str) -> (u16, Value) {
        let response = route(store, &request(method, path, body));
        let text = String::from_utf8(response.body).unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            json::parse(&text).unwrap()
        };
        (response.status, value)
    }

    #[test]
    fn create_list_get_delete() {
        let dir = TempDir::new("crud");
        let store = Store::open(&dir.0).unwrap();
        assert_eq!(call(&store, "GET", "/health", "").0, 200);
        let (status, note) = call(
            &store,
            "POST",
            "/api/notes",
            r#"{"title":" Groceries ","body":"milk\n\"eggs\" é"}"#,
        );
        assert_eq!(status, 201);
        assert_eq!(note.get("title").unwrap().as_str(), Some("Groceries"));
        assert_eq!(note.get("id").unwrap().as_u64(), Some(1));
        let (_, second) = call(&store, "POST", "/api/notes", r#"{"title":"Ideas"}"#);
        assert_eq!(second.get("id").unwrap().as_u64(), Some(2));
        assert_eq!(second.get("body").unwrap().as_str(), Some(""));
        let (status, list) = call(&store, "GET", "/api/notes/", "");
        assert_eq!(status, 200);
        let Value::Array(items) = list else {
            panic!("not a list")
        };
        assert_eq!(items.len(), 2);
        let (status, one) = call(&store, "GET", "/api/notes/1", "");
        assert_eq!(status, 200);
        assert_eq!(one.get("body").unwrap().as_str(), Some("milk\n\"eggs\" é"));
        assert_eq!(call(&store, "DELETE", "/api/notes/1", "").0, 204);
        assert_eq!(call(&store, "GET", "/api/notes/1", "").0, 404);
        assert_eq!(call(&store, "DELETE", "/api/notes/1", "").0, 404);
        // Ids are never reused.
        let (_, third) = call(&store, "POST", "/api/notes", r#"{"title":"Again"}"#);
        assert_eq!(third.get("id").unwrap().as_u64(), Some(3));
    }

    #[test]
    fn bad_requests() {
        let dir = TempDir::new("bad");
        let store = Store::open(&dir.0).unwrap();
        for body in [
            "",
            "[]",
            "{",
            r#"{"body":"no title"}"#,
            r#"{"title":"  "}"#,
            r#"{"title":1}"#,
            r#"{"title":"a","body":2}"#,
            r#"{"title":"a","extra":true}"#,
        ] {
            assert_eq!(call(&store, "POST", "/api/notes", body).0, 400, "{body}");
        }
        let long = format!(r#"{{"title":"{}"}}"#, "t".repeat(MAX_TITLE + 1));
        assert_eq!(call(&store, "POST", "/api/notes", &long).0, 400);
        assert_eq!(call(&store, "PUT", "/api/notes", "").0, 405);
        assert_eq!(call(&store, "POST", "/api/notes/1", "").0, 405);
        assert_eq!(call(&store, "GET", "/api/notes/x", "").0, 404);
        assert_eq!(call(&store, "GET", "/api/notes/+1", "").0, 404);
        assert_eq!(call(&store, "GET", "/elsewhere", "").0, 404);
        assert!(store.list().is_empty());
    }

    #[test]
    fn state_survives_reopen_and_leaves_no_temporary_file() {
        let dir = TempDir::new("reopen");
        let store = Store::open(&dir.0).unwrap();
        let Ok(note) = store.create("Kept", "body") else {
            panic!("create failed")
        };
        drop(store);
        fs::write(dir.0.join(format!("{TEMP_PREFIX}999")), "{").unwrap();
        let again = Store::open(&dir.0).unwrap();
        assert_eq!(again.get(note.id), Some(note));
        let names: Vec<_> = fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [STATE_FILE]);
    }

    #[test]
    fn a_failed_save_keeps_the_state() {
        let dir = TempDir::new("failed");
        let store = Store::open(&dir.0).unwrap();
        fs::remove_dir_all(&dir.0).unwrap();
        assert!(matches!(store.create("Lost", ""), Err(Error::Io(_))));
        assert!(store.list().is_empty());
    }

    #[test]
    fn a_corrupt_state_is_refused_and_kept() {
        let dir = TempDir::new("corrupt");
        fs::write(
            dir.0.join(STATE_FILE),
            r#"{"next_id":1,"notes":[{"id":1}]}"#,
        )
        .unwrap();
        let err = Store::open(&dir.0).err().unwrap();
        assert!(err.contains("move it away"), "{err}");
        assert_eq!(
            fs::read_to_string(dir.0.join(STATE_FILE)).unwrap(),
            r#"{"next_id":1,"notes":[{"id":1}]}"#
        );
    }
}
