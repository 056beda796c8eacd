//! Secret `format`s: regular expressions a value must match as a whole, compiled the one way
//! the pipeline (at `check`), validation and the runtime (on every value) all use; and
//! `log_match` patterns, compiled within the same limits by validation and the runtime.
//!
//! A format is wrapped as `^(?:FORMAT)$`, so `[a-z]+` accepts `abc` but not `abc!!`, and an
//! already anchored `^[a-z]+$` means the same as before. The syntax is regex-lite's (the
//! `regex` crate's without Unicode classes). A manifest is untrusted, so compilation is
//! bounded: at most [`MAX_FORMAT_BYTES`] of pattern, [`MAX_NEST`] levels of nesting, and a
//! compiled program of at most [`MAX_COMPILED_BYTES`] (counted repetitions such as
//! `(a{100}){100}` are what make a short pattern large). Matching is then linear in the value.

use regex_lite::{Regex, RegexBuilder};

/// Longest format accepted, in bytes.
pub const MAX_FORMAT_BYTES: usize = 1024;
/// Deepest nesting of groups and repetitions.
pub const MAX_NEST: u32 = 64;
/// Largest compiled program, in bytes of heap.
pub const MAX_COMPILED_BYTES: usize = 256 * 1024;

/// Compiles a secret's `format`, anchored to match the whole value. The error says what is
/// wrong without repeating the pattern.
///
/// The format must be a regular expression by itself: wrapped as it is in `^(?:` … `)$`, a
/// text such as `[a-z]+)|(?:.*` would otherwise close the group early and add an
/// unanchored alternative that accepts any value.
pub fn format_regex(format: &str) -> Result<Regex, String> {
    bounded("format", format)?;
    compile("format", &format!("^(?:{format})$"))
}

/// Compiles a `log_match` pattern (readiness or health): found anywhere in a log line, with
/// the same limits as formats, for validation and the runtime alike. The error says what is
/// wrong without repeating the pattern.
pub fn log_pattern_regex(pattern: &str) -> Result<Regex, String> {
    bounded("pattern", pattern)
}

/// `pattern`, at most [`MAX_FORMAT_BYTES`] long, compiled within the limits of this module;
/// `what` names it in errors.
fn bounded(what: &str, pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_FORMAT_BYTES {
        return Err(format!(
            "{what} is {} bytes long, over the limit of {MAX_FORMAT_BYTES}",
            pattern.len()
        ));
    }
    compile(what, pattern)
}

/// `pattern` compiled with the size and nesting limits.
fn compile(what: &str, pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .size_limit(MAX_COMPILED_BYTES)
        .nest_limit(MAX_NEST)
        .build()
        .map_err(|err| {
            let text = err.to_string();
            if text.contains("size limit") {
                format!(
                    "{what} compiles to more than {} KiB (counted repetitions such as {{1000}} multiply): write a smaller pattern",
                    MAX_COMPILED_BYTES / 1024
                )
            } else {
                format!("{what} is not a valid regular expression: {text}")
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_value_and_limits() {
        for format in ["[a-z]+", "^[a-z]+$", "[a-z]+$", "^[a-z]+"] {
            let re = format_regex(format).unwrap();
            assert!(re.is_match("abc"), "{format}");
            assert!(!re.is_match("abc!!") && !re.is_match("!!abc"), "{format}");
        }
        let re = format_regex("a|b").unwrap();
        assert!(re.is_match("a") && !re.is_match("ab"));
        let err = format_regex("^sk-[A-Z").unwrap_err();
        assert!(
            err.starts_with("format is not a valid regular expression"),
            "{err}"
        );
        let err = format_regex("(a{100}){100}").unwrap_err();
        assert!(err.contains("compiles to more than 256 KiB"), "{err}");
        let err = format_regex(&"a".repeat(1025)).unwrap_err();
        assert!(err.contains("over the limit of 1024"), "{err}");
        assert!(format_regex(&"a".repeat(1024)).is_ok());
        // A format cannot close the anchoring group and add an alternative of its own.
        for escape in ["[a-z]+)|(?:.*", "a)|(", "x)|.*|(?:y"] {
            let err = format_regex(escape).unwrap_err();
            assert!(
                err.contains("not a valid regular expression"),
                "{escape}: {err}"
            );
        }
        // A comment running to the end would swallow the anchors: refused, never unanchored.
        assert!(format_regex("(?x)[a-z]+ #").is_err());
        let err = format_regex(&format!("{}a{}", "(".repeat(100), ")".repeat(100))).unwrap_err();
        assert!(err.contains("not a valid regular expression"), "{err}");
        assert!(format_regex("^[A-Za-z0-9]{32,}$").is_ok());
        assert!(format_regex("^[A-Za-z0-9_-]{20,}$").is_ok());
    }
}
