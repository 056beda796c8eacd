//! Telemetry: events appended as JSON lines to the manifest's `telemetry.file` (beneath the
//! app data directory, opened without following links: see `confine`), e.g. `{"ts_ms":1764240000000,"event":"service_ready","service":"api"}`.
//!
//! Events: runtime_start, runtime_stop, app_ready, app_failed, service_start, service_ready,
//! service_exit, service_restart, service_failed, service_unhealthy, secrets_missing,
//! secrets_generated, secret_set, secret_fetch_failed (at start, then when a retry fails for
//! a new reason), secret_fetched (a fetch succeeded), migration_applied, migration_failed,
//! asset_checksum_mismatch, port_fallback. **Invariant:** no event carries a secret value,
//! only secret ids. Upload (`telemetry.upload_url`) is not done by the runtime.

use crate::confine::{Dir, RelPath};
use serde_json::{Map, Value};
use std::fs::File;
use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

pub struct Telemetry {
    file: Mutex<Option<File>>,
}

impl Telemetry {
    /// Opens (creating it and its directory) the file at `rel` beneath `app_data`. Telemetry
    /// is best effort: when the file cannot be opened, events are dropped.
    pub fn open(app_data: &Dir, rel: &RelPath) -> Telemetry {
        let file = rel.file_name().and_then(|name| {
            app_data
                .open_dir(&rel.parent(), true)
                .and_then(|dir| dir.open_append(name, 0o644))
                .ok()
        });
        Telemetry {
            file: Mutex::new(file),
        }
    }

    /// Appends an event; `fields` must be a JSON object (or null).
    pub fn event(&self, event: &str, fields: Value) {
        let mut line = Map::new();
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        line.insert("ts_ms".into(), ts.into());
        line.insert("event".into(), event.into());
        if let Value::Object(fields) = fields {
            line.extend(fields);
        }
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = file.as_mut() {
            let _ = file.write_all(text.as_bytes());
        }
    }
}
