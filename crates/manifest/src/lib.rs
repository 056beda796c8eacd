//! The bundle manifest, `bundle.json` (desktop v0.1): its types, its parsing with errors that
//! name the field, its semantic validation, and its JSON Schema.
//!
//! The format is the one of the conformance corpus's `bundle-schema.desktop.v0.1.json`. Every
//! object that schema leaves open keeps the fields it does not know in an `extra` map, so a
//! manifest read and written back loses nothing (extensions are additive: an asset may carry a
//! `url`, a `remote_fetch` secret a `fetch` block). Optional arrays and maps are `Option`s for
//! the same reason: `"dependencies": []` and an absent `dependencies` stay distinct.
//!
//! **Architecture invariant:** this crate owns every rule of the format, for both sides: the
//! pipeline (`xbundle`), which writes manifests, and the runtime shipped in every bundle, which
//! reads them, apply the rules through this crate and keep no copy of them. Id character sets
//! ([`ident`]), path confinement ([`path`]), generators and charsets ([`generator`]), fetch URLs
//! ([`url`]), secret formats ([`mod@format`]) and env templates ([`template`]) each have one module;
//! [`Manifest::validate`] applies them all, every problem with its JSON path.
//!
//! **Architecture invariant:** it depends only on serde, serde_json, serde_path_to_error,
//! schemars and regex-lite.
//!
//! ```
//! let json = r#"{"schema_version":"v0.1","target":"desktop",
//!   "app":{"name":"demo","version":"1.0.0"},
//!   "ipc":{"mode":"loopback-http","host":"127.0.0.1","port":39200,"auth_token_path":"runtime/token"},
//!   "telemetry":{"file":"telemetry.jsonl"},
//!   "services":[{"id":"api","type":"api-binary","binaries":{"linux-x64":{"path":"bin/api"}},
//!     "health":{"type":"tcp","port_name":"http"},"readiness":{"type":"port_open","port_name":"http"},
//!     "ports":{"requested":[{"name":"http","range":{"min":20000,"max":20010}}]}}]}"#;
//! let manifest = manifest::Manifest::from_json(json).unwrap();
//! assert!(manifest.validate().iter().all(|p| !p.is_error()));
//! ```

pub mod format;
pub mod generator;
pub mod ident;
pub mod path;
pub mod template;
pub mod tree;
mod types;
pub mod url;
mod validate;

pub use format::{format_regex, log_pattern_regex};
pub use generator::{Charset, CharsetError, GeneratorError, GeneratorSpec, NamedCharset};
pub use ident::{IdError, check_id};
pub use path::{PathError, PathStyle, RelativePath, check_relative};
pub use types::*;
pub use url::{FetchUrl, UrlError, check_fetch_url};
pub use validate::{MAX_PROBLEMS, Problem, Severity, is_sha256};

use std::fmt;

/// The manifest format this crate reads and writes (`schema_version`).
pub const FORMAT_VERSION: &str = "v0.1";

/// The largest bundle.json accepted, in bytes: 256 KiB, some thirty times the largest
/// manifest of the conformance corpus. A manifest is untrusted input read by a runtime that
/// must stay small, and parsed JSON takes many times its size in memory (arrays of `[]`
/// kept in an `extra` map take about 30 bytes per input byte), so [`Manifest::from_json`]
/// refuses a longer text and the pipeline never writes one.
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;

/// A manifest that could not be read: the JSON path of the offending value and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// Where the problem is, e.g. `services[1].health.type` (empty for the document itself).
    pub path: String,
    /// What is wrong, e.g. `unknown variant "grpc", expected one of ...`.
    pub message: String,
    /// 1-based line and column of the problem in the input, when known.
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(
                f,
                "{} (line {}, column {})",
                self.message, self.line, self.column
            )
        } else {
            write!(
                f,
                "{}: {} (line {}, column {})",
                self.path, self.message, self.line, self.column
            )
        }
    }
}

impl std::error::Error for ManifestError {}

impl Manifest {
    /// Parses a manifest of at most [`MAX_MANIFEST_BYTES`]. Errors name the field path and the
    /// problem; semantic checks the types cannot express are [`Manifest::validate`]'s job.
    pub fn from_json(text: &str) -> Result<Manifest, ManifestError> {
        if text.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError {
                path: String::new(),
                message: format!(
                    "the manifest is longer than the limit of {MAX_MANIFEST_BYTES} bytes"
                ),
                line: 1,
                column: 1,
            });
        }
        let deserializer = &mut serde_json::Deserializer::from_str(text);
        let manifest: Manifest = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let path = err.path().to_string();
            let inner = err.into_inner();
            // serde_json appends " at line L column C"; we report those separately.
            let mut message = inner.to_string();
            if let Some(at) = message.rfind(" at line ") {
                message.truncate(at);
            }
            ManifestError {
                path: if path == "." { String::new() } else { path },
                message,
                line: inner.line(),
                column: inner.column(),
            }
        })?;
        Ok(manifest)
    }

    /// The manifest as indented JSON, with a trailing newline (deterministic: maps are sorted,
    /// struct fields keep their declaration order).
    pub fn to_json_pretty(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a manifest always serializes");
        text.push('\n');
        text
    }

    /// Semantic checks the types cannot express; returns every problem found, errors and
    /// warnings, each with its JSON path. A manifest is usable when no problem is an error.
    pub fn validate(&self) -> Vec<Problem> {
        validate::validate(self)
    }

    /// The service with this id.
    pub fn service(&self, id: &str) -> Option<&Service> {
        self.services
            .iter()
            .find(|service| service.id.as_str() == id)
    }

    /// The secret with this id.
    pub fn secret(&self, id: &str) -> Option<&Secret> {
        self.secrets
            .iter()
            .flatten()
            .find(|secret| secret.id.as_str() == id)
    }
}

/// A URL fit for output (logs, status, telemetry, diagnostics): without `user:pass@` and
/// without the query or fragment (either may carry a credential). Used for `remote_fetch` URLs by
/// the pipeline and the runtime alike.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let path = path.split(['?', '#']).next().unwrap_or("");
    let sep = if scheme.is_empty() { "" } else { "://" };
    format!("{scheme}{sep}{host}{path}")
}

/// The JSON Schema of [`Manifest`], generated from the types (committed as
/// `schema/bundle.schema.json` and snapshot-tested).
pub fn schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Manifest);
    serde_json::to_value(schema).expect("a schema always serializes")
}
