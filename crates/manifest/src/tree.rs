//! The tree digest of an unpacked asset: what `sha256` means for an asset whose `path` is a
//! directory (`"unpacked": true`), so the pipeline that writes it and the runtime that checks
//! it compute the same value.
//!
//! The digest is the SHA-256 of this text (UTF-8, `\n` after every line):
//!
//! ```text
//! xbundle-tree-v1
//! <mode> <size> <sha256> <path>      one line per regular file, sorted by path (bytewise)
//! ```
//!
//! - `<path>`: the file's path relative to the asset's directory, `/`-separated, following
//!   bundle.json's path rule ([`crate::RelativePath`]: so it holds no newline);
//! - `<mode>`: `755` when the file is executable, `644` otherwise (the only modes a bundle
//!   carries);
//! - `<size>`: its length in bytes, in decimal; `<sha256>`: its SHA-256, 64 lowercase hex
//!   digits.
//!
//! Only regular files count: directories (empty ones included) are not listed, and a tree
//! holding anything else (a link, a device) is not a valid unpacked asset. This crate has no
//! hash function (it depends only on serde and regex-lite): [`listing`] builds the text, and
//! each side hashes it with its own SHA-256.

use crate::path::RelativePath;

/// The first line of every listing.
pub const HEADER: &str = "xbundle-tree-v1";

/// One regular file of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeFile {
    /// Relative to the tree's directory.
    pub path: String,
    pub executable: bool,
    pub size: u64,
    /// 64 lowercase hex digits.
    pub sha256: String,
}

/// The canonical listing of `files` (sorted here; the order given does not matter), whose
/// SHA-256 is the tree digest. An error names a path that breaks the rule, a digest that is
/// not 64 lowercase hex digits, or a path given twice.
pub fn listing(files: &[TreeFile]) -> Result<String, String> {
    let mut sorted: Vec<&TreeFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    let mut text = String::with_capacity(32 + files.len() * 96);
    text.push_str(HEADER);
    text.push('\n');
    let mut previous: Option<&str> = None;
    for file in sorted {
        RelativePath::new(&file.path).map_err(|err| err.to_string())?;
        if previous == Some(file.path.as_str()) {
            return Err(format!("`{}` is listed twice", file.path));
        }
        if !crate::is_sha256(&file.sha256) {
            return Err(format!(
                "`{}`: `{}` is not a SHA-256",
                file.path, file.sha256
            ));
        }
        previous = Some(&file.path);
        text.push_str(if file.executable { "755" } else { "644" });
        text.push(' ');
        text.push_str(&file.size.to_string());
        text.push(' ');
        text.push_str(&file.sha256);
        text.push(' ');
        text.push_str(&file.path);
        text.push('\n');
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, executable: bool) -> TreeFile {
        TreeFile {
            path: path.into(),
            executable,
            size: 3,
            sha256: "a".repeat(64),
        }
    }

    #[test]
    fn listing_is_sorted_and_exact() {
        let text = listing(&[file("b/c", true), file("a", false)]).unwrap();
        let hex = "a".repeat(64);
        assert_eq!(
            text,
            format!("xbundle-tree-v1\n644 3 {hex} a\n755 3 {hex} b/c\n")
        );
        assert!(listing(&[file("a", false), file("a", true)]).is_err());
        assert!(listing(&[file("../a", false)]).is_err());
        assert!(listing(&[file("a\nb", false)]).is_err());
        let mut bad = file("a", false);
        bad.sha256 = "A".repeat(64);
        assert!(listing(&[bad]).is_err());
    }
}
