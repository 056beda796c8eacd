//! The character sets of names: ids (services, ports, secrets) and environment variable names.
//!
//! Ids end up in file names (`logs/<service>.log`, `secrets/<id>`), in templates
//! (`${service.port}`, `${secret.ID}`) and in environment variable names
//! (`SECRET_FILE_<ID>`), so they are restricted to `[a-z0-9][a-z0-9_-]*`, at most
//! [`MAX_ID_BYTES`] bytes: never a separator, never `.` or `..`, never a character a template
//! or a shell would read differently. Every id of the conformance corpus and every id the
//! pipeline derives from a scenario or resource directory name fits.
//!
//! An environment variable name (a secret's `env` target, the keys of `env` maps) may not be
//! empty or hold `=` or NUL: the process environment cannot represent such a name. Nor may an
//! argument or an environment value hold NUL ([`check_exec_text`]).

use std::fmt;

/// Longest id accepted, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Why a string is not an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdError {
    pub id: String,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.id.is_empty() {
            f.write_str("empty id")
        } else {
            let mut shown: String = self.id.chars().take(80).collect();
            if shown.len() < self.id.len() {
                shown.push('…');
            }
            write!(
                f,
                "`{}` is not an id: use lowercase letters, digits, `_` and `-`, starting with a letter or digit (at most {MAX_ID_BYTES} bytes)",
                shown.escape_debug()
            )
        }
    }
}

impl std::error::Error for IdError {}

/// Checks `id` against `[a-z0-9][a-z0-9_-]*` (at most [`MAX_ID_BYTES`] bytes).
pub fn check_id(id: &str) -> Result<(), IdError> {
    let mut bytes = id.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok =
        bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if first_ok && rest_ok && id.len() <= MAX_ID_BYTES {
        Ok(())
    } else {
        Err(IdError { id: id.to_owned() })
    }
}

/// Checks an environment variable name: not empty, no `=`, no NUL.
pub fn check_env_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains(['=', '\0']) {
        let mut shown: String = name.chars().take(80).collect();
        if shown.len() < name.len() {
            shown.push('…');
        }
        Err(format!(
            "`{}` is not a variable name (it is empty or holds `=` or NUL)",
            shown.escape_debug()
        ))
    } else {
        Ok(())
    }
}

/// Checks a text that reaches a process through `exec` (an argument, an environment value):
/// no NUL, which neither can carry.
pub fn check_exec_text(text: &str) -> Result<(), String> {
    if text.contains('\0') {
        Err(
            "holds a NUL character, which a process's arguments and environment cannot carry"
                .into(),
        )
    } else {
        Ok(())
    }
}

impl crate::SecretTarget {
    /// The rule of `name`: an environment variable name for an `env` target; for a `file`
    /// target a plain file name (one component of [`crate::path`]) that is also a variable
    /// name (the runtime sets a variable of that name to the file's path).
    pub fn check(&self) -> Result<(), String> {
        if self.kind == crate::SecretTargetType::File {
            crate::RelativePath::name(&self.name).map_err(|err| {
                let mut shown: String = self.name.chars().take(80).collect();
                if shown.len() < self.name.len() {
                    shown.push('…');
                }
                format!("`{}`: {err}", shown.escape_debug())
            })?;
        }
        check_env_name(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["api", "picker-wheel-api", "jwt_secret", "0day", "a-b_c9"] {
            assert!(check_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-x",
            "_x",
            "Api",
            "a.b",
            "a/b",
            "../../../../x/svc",
            "a b",
            "é",
            "a$b",
            "a}b",
        ] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
        assert!(check_id(&"a".repeat(128)).is_ok());
        assert!(check_id(&"a".repeat(129)).is_err());
        assert!(check_env_name("SESSION_SECRET").is_ok());
        assert!(check_env_name("jwt.key").is_ok());
        for bad in ["", "A=B", "A\0"] {
            assert!(check_env_name(bad).is_err(), "{bad:?}");
        }
    }
}
