//! Secrets: generated once per install, taken from the user, or fetched; stored and injected.
//!
//! Every rule about what a secret may be is the manifest's (the runtime only loads manifests
//! that pass [`manifest::Manifest::validate`]); this module runs them:
//! - `per_install_generated`: generated on first start with the OS CSPRNG (`getrandom`), by the
//!   generator as [`manifest::Generator::resolve`] reads it: `random` draws `length`
//!   characters uniformly (rejection sampling, no modulo bias) from a named set of
//!   [`manifest::NamedCharset`] or a literal set of at least 16 characters (or 128 bits);
//!   `hex` `length` hex digits; `base64` `length` random bytes, encoded; `uuid` a v4 UUID.
//!   Regenerated until it matches `format` (at most 100 tries), then stored and reused on
//!   every later start.
//! - `user_prompt`: set through `POST /secrets`, checked against `format`, then stored.
//!
//! `format` must match the whole value (it is anchored: `^(?:FORMAT)$`, compiled with the
//! manifest's size limits, [`manifest::format_regex`]), for generated, user-provided and
//! fetched values alike.
//! - `remote_fetch`: fetched from `fetch.url` by [`fetch()`] (https, verified against the
//!   platform's roots, or http to a loopback host; `user:pass@` becomes Basic auth) with a
//!   timeout (at most a minute) at each start, by the supervisor on a thread of its own from
//!   its first turn (so a vault that never answers holds up neither the start nor a stop
//!   signal), and kept in memory (a `file` target gets it written, and rewritten on each
//!   start, to its 0600 file; a stale one is removed at start). Until a fetch succeeds the
//!   secret is `unavailable: <why>` ("not fetched yet" at first) and the services needing it
//!   are held back; the supervisor retries it with capped exponential backoff
//!   ([`retry_delay`]) and starts them once it succeeds. Reasons name the URL without its
//!   credentials or query ([`redact_url`]).
//!
//! Every value, whatever its class, is checked by [`check_value`] (not empty, at most
//! [`MAX_VALUE_BYTES`], no NUL: a process cannot receive one, so a service given such a value
//! could never start); a fetched value must be UTF-8 (never read lossily).
//!
//! **Storage, stated honestly:** values are stored unencrypted in
//! `<app data>/secrets/<id>`, one file per secret, mode 0600, in a directory of mode 0700,
//! written to a temporary file and renamed. They are protected by file permissions only (the
//! user's other programs can read them), not by an OS keychain. Ids are manifest ids
//! (`[a-z0-9][a-z0-9_-]*`), so a file name never leaves the directory. The directory is opened
//! once at start-up without following links, and every value is read and written through that
//! handle ([`Dir`]): a link at a value's name is never read (the secret is `unavailable`,
//! never regenerated over it; setting a user value replaces the link itself), a FIFO there
//! never blocks, and `secrets/` swapped for a link while the runtime runs is never written
//! through.
//!
//! Injection: an `env` target sets the variable `target.name`; a `file` target gives the
//! service `SECRET_FILE_<ID>` (and `target.name`) holding the path of a 0600 file with the
//! value. **Invariant:** no value is ever logged, written to telemetry or returned by the API.

mod fetch;

use crate::confine::Dir;
use crate::telemetry::Telemetry;
use manifest::{GeneratorSpec, GeneratorType, Manifest, Secret, SecretClass};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A secret's state at run time.
#[derive(Clone)]
pub enum SecretState {
    Set(String),
    Missing,
    /// Could not be obtained (a fetch failure, a generator that cannot meet `format`).
    Unavailable(String),
}

impl std::fmt::Debug for SecretState {
    // Never prints a value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretState::Set(_) => f.write_str("Set(<redacted>)"),
            SecretState::Missing => f.write_str("Missing"),
            SecretState::Unavailable(why) => write!(f, "Unavailable({why})"),
        }
    }
}

/// All secrets of the bundle and where they live.
pub struct Secrets {
    /// `<app data>/secrets`, opened once without following links: every value is read and
    /// written through this handle, so a link swapped in for the directory (or planted at a
    /// value's name) is never followed.
    dir: Dir,
    pub states: BTreeMap<String, SecretState>,
}

/// The largest value stored, accepted or fetched (what `POST /secrets` and a fetch can
/// carry); a stored file larger than this is not read.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// The file name of a secret's value: its id (manifest ids are `[a-z0-9][a-z0-9_-]*`; anything
/// else, which validation refuses, is hex-encoded so it can never be a path).
fn file_name(id: &str) -> String {
    if manifest::check_id(id).is_ok() {
        id.to_owned()
    } else {
        hex(id.as_bytes())
    }
}

/// A stored value, read through the secrets directory's handle: `Ok(None)` when there is
/// none; an error (naming no value) when what is there cannot be used: a link, not a regular
/// file, larger than [`MAX_VALUE_BYTES`], or not a value ([`check_value`]).
fn read_stored(dir: &Dir, id: &str) -> Result<Option<String>, String> {
    let name = file_name(id);
    let bytes = match dir.read(&name, MAX_VALUE_BYTES as u64 + 1) {
        Ok(bytes) => bytes,
        Err(err) if err.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(err) => return Err(format!("stored value unreadable: {err}")),
    };
    if bytes.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "stored value unreadable: {} holds more than {MAX_VALUE_BYTES} bytes",
            dir.path().join(&name).display()
        ));
    }
    if bytes.is_empty() {
        return Ok(None);
    }
    let value = String::from_utf8(bytes).map_err(|_| {
        format!(
            "stored value unreadable: {} is not UTF-8",
            dir.path().join(&name).display()
        )
    })?;
    check_value(&value).map_err(|why| format!("stored value unusable: {why}"))?;
    Ok(Some(value))
}
/// Uniform random bytes from the OS.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    getrandom::fill(&mut bytes).expect("the OS random number generator failed");
    bytes
}

/// A uniform index below `n` (rejection sampling, no modulo bias).
fn random_below(n: usize) -> usize {
    let n32 = n as u32;
    let zone = u32::MAX - (u32::MAX % n32);
    loop {
        let bytes = random_bytes(4);
        let value = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if value < zone {
            return (value % n32) as usize;
        }
    }
}

pub fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Generates one value for a `per_install_generated` secret: its generator resolved by the
/// manifest's rules (validation has already refused one that does not resolve), then values
/// drawn until one matches `format` (at most 100 tries).
pub fn generate(secret: &Secret) -> Result<String, String> {
    let spec = match &secret.generator {
        Some(generator) => generator
            .resolve()
            .map_err(|err| format!("bad generator: {err}"))?,
        None => GeneratorSpec::default(),
    };
    let format = match &secret.format {
        Some(format) => Some(format_regex(format).map_err(|err| format!("bad format: {err}"))?),
        None => None,
    };
    for _ in 0..100 {
        let value = generate_value(&spec);
        if format.as_ref().is_none_or(|re| re.is_match(&value)) {
            return Ok(value);
        }
    }
    Err("the generator never produced a value matching `format`".into())
}

/// One value of a resolved generator: `length` characters drawn uniformly from its alphabet
/// (`random`, `hex`), `length` random bytes base64-encoded, or a version 4 UUID.
pub fn generate_value(spec: &GeneratorSpec) -> String {
    let length = spec.length as usize;
    match spec.kind {
        GeneratorType::Random | GeneratorType::Hex => {
            let chars = spec.alphabet().unwrap_or_default();
            if chars.is_empty() {
                return String::new(); // resolution never yields an empty set
            }
            (0..length)
                .map(|_| chars[random_below(chars.len())])
                .collect()
        }
        GeneratorType::Base64 => base64(&random_bytes(length)),
        GeneratorType::Uuid => {
            let mut b = random_bytes(16);
            b[6] = (b[6] & 0x0f) | 0x40;
            b[8] = (b[8] & 0x3f) | 0x80;
            let hex = hex(&b);
            format!(
                "{}-{}-{}-{}-{}",
                &hex[0..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..32]
            )
        }
    }
}

/// A secret's `format` as a regular expression that must match the **whole** value, compiled
/// with the manifest's limits ([`manifest::format_regex`]): `[a-z]+` accepts `abc`, not
/// `abc!!`.
pub fn format_regex(format: &str) -> Result<regex_lite::Regex, String> {
    manifest::format_regex(format)
}

/// What every value must be, whatever its secret: not empty, at most [`MAX_VALUE_BYTES`], and
/// without NUL (a process's environment and arguments cannot hold one: a service given such
/// a value could never start). The message never holds the value.
pub fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("empty value".into());
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!("longer than {MAX_VALUE_BYTES} bytes"));
    }
    if value.contains('\0') {
        return Err("holds a NUL character".into());
    }
    Ok(())
}

/// Checks a value ([`check_value`]) and then against a secret's `format` (whole-value match,
/// see [`format_regex`]).
pub fn check_format(secret: &Secret, value: &str) -> Result<(), String> {
    check_value(value)?;
    if let Some(format) = &secret.format {
        let re = format_regex(format).map_err(|err| format!("the manifest's {err}"))?;
        if !re.is_match(value) {
            return Err(format!("does not match the format {format}"));
        }
    }
    Ok(())
}

impl Secrets {
    /// Opens `<app data>/secrets` (created with mode 0700, never through a link), loads
    /// stored values and generates missing `per_install_generated` ones. `remote_fetch`
    /// secrets start out [`SecretState::Unavailable`] ("not fetched yet"): the supervisor
    /// fetches them on a thread of its own, so a slow or silent vault never holds up the
    /// start (nor a stop signal).
    pub fn load(manifest: &Manifest, app: &Dir, telemetry: &Telemetry) -> std::io::Result<Secrets> {
        let dir = app.child_dir(manifest::path::SECRETS_DIR.as_bytes(), true)?;
        dir.set_mode(0o700)?;
        let mut states = BTreeMap::new();
        let mut generated = Vec::new();
        for secret in manifest.secrets.iter().flatten() {
            let id = secret.id.as_str();
            let state = match secret.class {
                SecretClass::PerInstallGenerated => match read_stored(&dir, id) {
                    Ok(Some(value)) => SecretState::Set(value),
                    // Never regenerated over a value that is there but unreadable: it may be
                    // what the app's data was made with.
                    Err(why) => SecretState::Unavailable(why),
                    Ok(None) => match generate(secret) {
                        Ok(value) => {
                            dir.replace(&file_name(id), value.as_bytes(), 0o600)?;
                            generated.push(id.to_owned());
                            SecretState::Set(value)
                        }
                        Err(why) => SecretState::Unavailable(why),
                    },
                },
                SecretClass::UserPrompt => match read_stored(&dir, id) {
                    Ok(Some(value)) => SecretState::Set(value),
                    Ok(None) => SecretState::Missing,
                    Err(why) => SecretState::Unavailable(why),
                },
                SecretClass::RemoteFetch => {
                    // No stale value from an earlier run for a `file` target.
                    let _ = dir.remove_file(&file_name(id));
                    SecretState::Unavailable(NOT_FETCHED.into())
                }
                SecretClass::Infrastructure => {
                    SecretState::Unavailable("infrastructure secrets are never bundled".into())
                }
            };
            if let SecretState::Unavailable(why) = &state
                && secret.class != SecretClass::RemoteFetch
            {
                telemetry.event(
                    "secret_fetch_failed",
                    serde_json::json!({"secret": secret.id, "reason": why}),
                );
            }
            states.insert(id.to_owned(), state);
        }
        if !generated.is_empty() {
            telemetry.event(
                "secrets_generated",
                serde_json::json!({ "secrets": generated }),
            );
        }
        Ok(Secrets { dir, states })
    }

    pub fn value(&self, id: &str) -> Option<&str> {
        match self.states.get(id) {
            Some(SecretState::Set(value)) => Some(value),
            _ => None,
        }
    }

    /// Stores a user-provided value (after checking it).
    pub fn set(&mut self, secret: &Secret, value: &str) -> Result<(), String> {
        if secret.class != SecretClass::UserPrompt {
            return Err("only user_prompt secrets can be set".into());
        }
        check_format(secret, value)?;
        self.dir
            .replace(&file_name(secret.id.as_str()), value.as_bytes(), 0o600)
            .map_err(|err| format!("cannot store: {err}"))?;
        self.states
            .insert(secret.id.to_string(), SecretState::Set(value.to_owned()));
        Ok(())
    }

    /// The path of the 0600 file holding a secret's value for `file` targets, (re)written
    /// through the directory's handle when it does not hold the current value (remote_fetch
    /// values live in memory and may change from one fetch to the next).
    pub fn file_for(&self, id: &str) -> std::io::Result<PathBuf> {
        let name = file_name(id);
        if let Some(value) = self.value(id)
            && self
                .dir
                .read(&name, MAX_VALUE_BYTES as u64 + 1)
                .ok()
                .as_deref()
                != Some(value.as_bytes())
        {
            self.dir.replace(&name, value.as_bytes(), 0o600)?;
        }
        Ok(self.dir.path().join(name))
    }

    /// The `remote_fetch` secrets still without a value.
    pub fn to_fetch<'a>(&self, manifest: &'a Manifest) -> Vec<&'a Secret> {
        manifest
            .secrets
            .iter()
            .flatten()
            .filter(|s| s.class == SecretClass::RemoteFetch)
            .filter(|s| !matches!(self.states.get(s.id.as_str()), Some(SecretState::Set(_))))
            .collect()
    }
}

/// The reason of a `remote_fetch` secret before its first fetch ended.
pub const NOT_FETCHED: &str = "not fetched yet";

/// The delay before the `failures`-th retry of a failed fetch: 500 ms, doubling, at most 60 s.
pub fn retry_delay(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(10);
    (Duration::from_millis(500) * factor).min(Duration::from_secs(60))
}

pub use manifest::redact_url;

/// Fetches a `remote_fetch` secret once (see [`fetch::get`]).
pub fn fetch(secret: &Secret) -> SecretState {
    let Some(remote) = &secret.fetch else {
        return SecretState::Unavailable("no fetch.url in the manifest".into());
    };
    let timeout = Duration::from_millis(remote.timeout_ms.unwrap_or(5000));
    let headers: Vec<(String, String)> = remote
        .headers
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    match fetch::get(&remote.url, &headers, timeout) {
        Ok(response) if (200..300).contains(&response.status) => {
            // Never a lossy reading: a value that is not UTF-8 is refused, not altered.
            let Ok(text) = String::from_utf8(response.body) else {
                return SecretState::Unavailable("fetched value rejected: not UTF-8".into());
            };
            let value = text.trim().to_owned();
            match check_format(secret, &value) {
                Ok(()) => SecretState::Set(value),
                Err(why) => SecretState::Unavailable(format!("fetched value rejected: {why}")),
            }
        }
        Ok(response) => {
            SecretState::Unavailable(format!("fetch answered HTTP {}", response.status))
        }
        Err(err) => SecretState::Unavailable(format!("offline or unreachable ({err})")),
    }
}

/// Lowercase hexadecimal of `bytes` (tokens, file names of odd ids, digests).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(generator: serde_json::Value, format: Option<&str>) -> Secret {
        serde_json::from_value(serde_json::json!({
            "id": "s", "class": "per_install_generated", "generator": generator,
            "format": format, "target": {"type": "env", "name": "S"}
        }))
        .unwrap()
    }

    #[test]
    fn generators_honour_type_length_and_charset() {
        let value = generate(&secret(
            serde_json::json!({"type": "random", "length": 40, "charset": "alnum"}),
            None,
        ))
        .unwrap();
        assert_eq!(value.len(), 40);
        assert!(value.chars().all(|c| c.is_ascii_alphanumeric()));
        let value = generate(&secret(
            serde_json::json!({"type": "random", "length": 64, "charset": "base64"}),
            None,
        ))
        .unwrap();
        assert!(
            value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
        );
        assert!(
            value.chars().any(|c| !"base64".contains(c)),
            "base64 is an alphabet, not the letters b,a,s,e,6,4"
        );
        let value = generate(&secret(
            serde_json::json!({"type": "random", "length": 128, "charset": "xy"}),
            None,
        ))
        .unwrap();
        assert!(value.len() == 128 && value.chars().all(|c| c == 'x' || c == 'y'));
        let value = generate(&secret(
            serde_json::json!({"type": "random", "length": 200, "charset": "alnum_symbols"}),
            None,
        ))
        .unwrap();
        assert!(
            value.chars().any(|c| !"alnum_symbols".contains(c)),
            "alnum_symbols is a set of 90, not the letters of its name"
        );
        let err = generate(&secret(
            serde_json::json!({"type": "random", "length": 12, "charset": "xy"}),
            None,
        ))
        .unwrap_err();
        assert!(err.contains("2 distinct characters"), "{err}");
        let value = generate(&secret(
            serde_json::json!({"type": "hex", "length": 20}),
            None,
        ))
        .unwrap();
        assert!(value.len() == 20 && value.chars().all(|c| c.is_ascii_hexdigit()));
        let value = generate(&secret(serde_json::json!({"type": "uuid"}), None)).unwrap();
        let re = regex_lite::Regex::new(
            "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
        )
        .unwrap();
        assert!(re.is_match(&value), "{value}");
        let value = generate(&secret(
            serde_json::json!({"type": "base64", "length": 30}),
            None,
        ))
        .unwrap();
        assert_eq!(value.len(), 40);
        let value = generate(&secret(serde_json::json!({}), Some("^[0-9].*"))).unwrap();
        assert!(value.starts_with(|c: char| c.is_ascii_digit()));
        assert_ne!(
            generate(&secret(serde_json::json!({}), None)).unwrap(),
            generate(&secret(serde_json::json!({}), None)).unwrap()
        );
    }

    #[test]
    fn format_matches_the_whole_value() {
        for format in ["[a-z]+", "^[a-z]+$", "[a-z]+$", "^[a-z]+"] {
            let s = secret(serde_json::json!({}), Some(format));
            assert!(check_format(&s, "abc").is_ok(), "{format}");
            assert!(check_format(&s, "abc!!").is_err(), "{format}");
            assert!(check_format(&s, "!!abc").is_err(), "{format}");
        }
        let s = secret(serde_json::json!({}), Some("a|b"));
        assert!(check_format(&s, "a").is_ok());
        assert!(
            check_format(&s, "ab").is_err(),
            "alternation is anchored as a whole"
        );
        let value = generate(&secret(
            serde_json::json!({"type": "random", "length": 8, "charset": "alnum"}),
            Some("[0-9]"),
        ));
        assert!(
            value.is_err(),
            "an 8-character value never wholly matches one digit"
        );
    }

    #[test]
    fn urls_lose_their_credentials_and_query() {
        assert_eq!(
            redact_url("http://user:pa55@127.0.0.1:8080/s/k?token=abc#f"),
            "http://127.0.0.1:8080/s/k"
        );
        assert_eq!(redact_url("http://host"), "http://host");
        assert_eq!(redact_url("http://u@host?x=1"), "http://host");
        assert_eq!(retry_delay(1), Duration::from_millis(500));
        assert_eq!(retry_delay(2), Duration::from_secs(1));
        assert_eq!(retry_delay(40), Duration::from_secs(60));
    }

    #[test]
    fn base64_matches_the_rfc_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn debug_never_shows_a_value() {
        assert_eq!(
            format!("{:?}", SecretState::Set("hunter2".into())),
            "Set(<redacted>)"
        );
    }
}
