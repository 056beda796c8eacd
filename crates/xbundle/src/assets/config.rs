//! `[[assets]]` and `[runtime.<platform>]` in bundle.toml: what is fetched, from where, with
//! which digest, and where it lands in a bundle.
//!
//! ```toml
//! [[assets]]
//! id = "chromium"                   # [a-z0-9][a-z0-9_-]*, at most 64 bytes; not `runtime`
//! url = "https://example.org/chromium-linux-x64.zip"   # http, https or file:///absolute/path
//! sha256 = "…"                      # 64 hex digits: the digest of what the URL serves
//! platforms = ["linux-x64"]         # default: every platform of the profiles that use it
//! unpack = "zip"                    # optional: "tar.gz" or "zip"
//! dest = "assets/chromium"          # optional: where it lands in the bundle (relative)
//! max-size = "2G"                   # optional: largest download accepted (default 4G)
//! max-unpacked-size = "8G"          # optional: largest total unpacked (default: 100 × the
//!                                   # archive, at least 64M)
//!
//! [profiles.NAME]
//! assets = ["chromium"]             # optional: only these (default: every asset whose
//!                                   # platforms meet the profile's)
//!
//! [runtime.win-x64]                 # a prebuilt xbundle-runtime for a platform whose Rust
//! url = "https://example.org/xbundle-runtime-win-x64.exe"   # target cannot be built here
//! sha256 = "…"
//! max-size = "64M"                  # optional
//! ```
//!
//! `dest` defaults to `assets/<id>/<the URL's file name>`, or `assets/<id>` for an unpacked
//! archive (a directory). It follows bundle.json's path rule ([`manifest::RelativePath`]:
//! relative, normalized, `/`-separated, no `..`, backslash or control character) and is never
//! `bundle.json` itself; two assets of one platform never share a path or nest in each other.
//!
//! **Invariant:** every value is checked where it enters, and a bad one is a diagnostic at its
//! line in bundle.toml; an asset's id, dest and platform names are never paths that leave their
//! directories.

use std::collections::BTreeMap;
use std::ops::Range;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::diagnostic::Diagnostic;

/// The largest download accepted when `max-size` is not given.
pub const DEFAULT_MAX_SIZE: u64 = 4 << 30;
/// The longest asset id.
pub const MAX_ID_BYTES: usize = 64;
/// The id `fetch:runtime@<platform>` is reserved for prebuilt runtimes.
pub const RUNTIME_ID: &str = "runtime";

/// One `[[assets]]` entry as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AssetDecl {
    /// A name for the asset (`[a-z0-9][a-z0-9_-]*`, at most 64 bytes, not `runtime`): its task is
    /// `fetch:<id>@<platform>`.
    #[schemars(with = "String", regex(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
    pub id: Spanned<String>,
    /// Where to fetch it: `https://…`, `http://…` or `file:///absolute/path`.
    #[schemars(with = "String", regex(pattern = r"^(https?|file)://"))]
    pub url: Spanned<String>,
    /// SHA-256 of what the URL serves (64 hex digits); a download that differs is an error.
    #[schemars(with = "String", regex(pattern = r"^[0-9a-fA-F]{64}$"))]
    pub sha256: Spanned<String>,
    /// Platforms that get it (ids of files in `platforms/`); default: every platform of the
    /// profiles that use it.
    #[schemars(with = "Option<Vec<String>>")]
    pub platforms: Option<Vec<Spanned<String>>>,
    /// Unpack the download: `tar.gz` or `zip` (default: keep the file as it is).
    #[schemars(with = "Option<UnpackName>")]
    pub unpack: Option<Spanned<String>>,
    /// Where it lands in the bundle, relative to its root (default `assets/<id>/<file name>`,
    /// or `assets/<id>` when unpacked).
    #[schemars(with = "Option<String>")]
    pub dest: Option<Spanned<String>>,
    /// Largest download accepted: bytes, or a size such as `500M`, `2G` (default 4G).
    #[schemars(with = "Option<SizeValue>")]
    pub max_size: Option<Spanned<SizeValue>>,
    /// Largest total of the unpacked files: bytes or a size (default: 100 times the archive's
    /// size, at least 64M).
    #[schemars(with = "Option<SizeValue>")]
    pub max_unpacked_size: Option<Spanned<SizeValue>>,
}

/// The archive formats `unpack` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[allow(dead_code)]
pub enum UnpackName {
    #[serde(rename = "tar.gz")]
    TarGz,
    #[serde(rename = "zip")]
    Zip,
}

/// `[runtime.<platform>]`: a prebuilt xbundle-runtime.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RuntimeDecl {
    /// Where to fetch the runtime's executable: `https://…`, `http://…` or `file:///…`.
    #[schemars(with = "String", regex(pattern = r"^(https?|file)://"))]
    pub url: Spanned<String>,
    /// SHA-256 of the executable (64 hex digits).
    #[schemars(with = "String", regex(pattern = r"^[0-9a-fA-F]{64}$"))]
    pub sha256: Spanned<String>,
    /// Largest download accepted: bytes, or a size such as `64M` (default 4G).
    #[schemars(with = "Option<SizeValue>")]
    pub max_size: Option<Spanned<SizeValue>>,
}

/// A size: a number of bytes, or a string such as `500M`, `2G`, `1.5GiB` (powers of 1024).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(u64),
    Text(String),
}

/// How a download is unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unpack {
    TarGz,
    Zip,
}

impl Unpack {
    pub fn name(self) -> &'static str {
        match self {
            Unpack::TarGz => "tar.gz",
            Unpack::Zip => "zip",
        }
    }
}

/// Where a fetch goes and what it must be: shared by assets and prebuilt runtimes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// As written (checked: http, https or file).
    pub url: String,
    /// 64 lowercase hex digits.
    pub sha256: String,
    /// Largest download accepted.
    pub max_size: u64,
}

/// A validated `[[assets]]` entry.
#[derive(Debug, Clone)]
pub struct Asset {
    pub id: String,
    pub source: Source,
    /// `None`: every platform of the profiles that use it.
    pub platforms: Option<Vec<String>>,
    pub unpack: Option<Unpack>,
    /// Bundle-relative (checked with bundle.json's path rule).
    pub dest: String,
    /// `None`: 100 × the archive's size, at least 64 MiB.
    pub max_unpacked_size: Option<u64>,
    /// Where the entry is written.
    pub span: Range<usize>,
    /// Where each of `platforms` is written.
    pub platform_spans: Vec<Range<usize>>,
}

/// A validated `[runtime.<platform>]` table.
#[derive(Debug, Clone)]
pub struct PrebuiltRuntime {
    pub platform: String,
    pub platform_span: Range<usize>,
    pub source: Source,
}

/// Where a diagnostic points: the message, the span, its label and the help line.
pub type Located = (String, Range<usize>, &'static str, String);

fn located(message: String, span: Range<usize>, label: &'static str, help: &str) -> Located {
    (message, span, label, help.to_string())
}

/// Checks an asset id: `[a-z0-9][a-z0-9_-]*`, at most [`MAX_ID_BYTES`], not `runtime`.
pub fn check_asset_id(id: &str) -> Result<(), String> {
    if id == RUNTIME_ID {
        return Err("`runtime` is reserved for prebuilt runtimes ([runtime.<platform>])".into());
    }
    if id.len() > MAX_ID_BYTES || manifest::check_id(id).is_err() {
        return Err(format!(
            "`{}` is not an asset id",
            id.escape_debug()
                .to_string()
                .chars()
                .take(80)
                .collect::<String>()
        ));
    }
    Ok(())
}

/// Checks a URL: `http://HOST…`, `https://HOST…` or `file:///absolute/path` (no control
/// characters, no spaces). Returns the file name its path ends with, if any.
pub fn check_url(url: &str) -> Result<Option<String>, String> {
    if url.chars().any(|c| c.is_control() || c == ' ') {
        return Err("contains a space or a control character".into());
    }
    let last_name = |path: &str| {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        path.rsplit('/')
            .next()
            .filter(|name| !name.is_empty())
            .map(str::to_string)
    };
    if let Some(path) = url.strip_prefix("file://") {
        let path = path.strip_prefix("localhost").unwrap_or(path);
        if !path.starts_with('/') {
            return Err("a file URL names an absolute path: file:///path/to/file".into());
        }
        if path.split('/').any(|c| c == ".." || c == ".") {
            return Err("a file URL holds no `.` or `..` component".into());
        }
        return Ok(last_name(path));
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("only http://, https:// and file:// URLs are fetched")?;
    let uri: ureq::http::Uri = url.parse().map_err(|err| format!("is not a URL ({err})"))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err("names no host".into());
    }
    let path = rest.split_once('/').map_or("", |(_, path)| path);
    Ok(last_name(path))
}

/// Checks a sha256: 64 hex digits (either case); returns it in lowercase.
pub fn check_sha256(value: &str) -> Result<String, String> {
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(format!(
            "`{}` is not a SHA-256 (64 hex digits)",
            value
                .escape_debug()
                .to_string()
                .chars()
                .take(80)
                .collect::<String>()
        ))
    }
}

/// Checks a bundle path: bundle.json's rule, and never bundle.json itself.
pub fn check_dest(value: &str) -> Result<String, String> {
    let path = manifest::RelativePath::new(value).map_err(|err| err.to_string())?;
    let first = path.components().next().unwrap_or_default();
    if path.components().count() == 1 && first.starts_with("bundle.json") {
        return Err("is where the bundle's manifest lives".into());
    }
    if path
        .components()
        .any(|component| component.eq_ignore_ascii_case(".git"))
    {
        return Err("goes into a `.git` directory".into());
    }
    Ok(value.to_string())
}

fn size(value: &Spanned<SizeValue>, what: &str) -> Result<u64, Located> {
    let bytes = match value.get_ref() {
        SizeValue::Bytes(bytes) => Ok(*bytes),
        SizeValue::Text(text) => crate::cli::parse_size(text),
    };
    match bytes {
        Ok(0) => Err(located(
            format!("{what} is zero"),
            value.span(),
            "this size",
            "give a size such as \"500M\" or \"2G\"",
        )),
        Ok(bytes) => Ok(bytes),
        Err(problem) => Err(located(
            format!("{what}: {problem}"),
            value.span(),
            "this size",
            "give bytes (e.g. 1000000) or a size such as \"500M\", \"2G\"",
        )),
    }
}

fn source(
    url: &Spanned<String>,
    sha256: &Spanned<String>,
    max_size: Option<&Spanned<SizeValue>>,
) -> Result<(Source, Option<String>), Located> {
    let file_name = check_url(url.get_ref()).map_err(|problem| {
        located(
            format!("url `{}`: {problem}", url.get_ref().escape_debug()),
            url.span(),
            "this URL",
            "assets are fetched from http://, https:// or file:///absolute/path URLs; the sha256 protects what arrives",
        )
    })?;
    let sha256 = check_sha256(sha256.get_ref()).map_err(|problem| {
        located(
            problem,
            sha256.span(),
            "this digest",
            "give the SHA-256 of the file the URL serves, e.g. the output of `sha256sum FILE`",
        )
    })?;
    let max_size = match max_size {
        Some(value) => size(value, "max-size")?,
        None => DEFAULT_MAX_SIZE,
    };
    Ok((
        Source {
            url: url.get_ref().clone(),
            sha256,
            max_size,
        },
        file_name,
    ))
}

/// Validates the `[[assets]]` entries and `[runtime.*]` tables.
pub fn parse(
    decls: Vec<Spanned<AssetDecl>>,
    runtimes: BTreeMap<Spanned<String>, Spanned<RuntimeDecl>>,
) -> Result<(Vec<Asset>, Vec<PrebuiltRuntime>), Located> {
    let mut assets: Vec<Asset> = Vec::new();
    for decl in decls {
        let span = decl.span();
        let decl = decl.into_inner();
        let id = decl.id.get_ref().clone();
        check_asset_id(&id).map_err(|problem| {
            located(
                problem,
                decl.id.span(),
                "this id",
                "asset ids start with a lowercase letter or digit and use lowercase letters, digits, `-` and `_` (at most 64)",
            )
        })?;
        if assets.iter().any(|asset| asset.id == id) {
            return Err(located(
                format!("asset `{id}` is declared twice"),
                decl.id.span(),
                "second declaration",
                "give each [[assets]] entry an id of its own",
            ));
        }
        let (source, file_name) = source(&decl.url, &decl.sha256, decl.max_size.as_ref())?;
        let unpack = match &decl.unpack {
            None => None,
            Some(value) => Some(match value.get_ref().as_str() {
                "tar.gz" | "tgz" => Unpack::TarGz,
                "zip" => Unpack::Zip,
                other => {
                    return Err(located(
                        format!("unpack `{}` is not an archive format", other.escape_debug()),
                        value.span(),
                        "this format",
                        "unpack is \"tar.gz\" or \"zip\" (leave it out to keep the file as it is)",
                    ));
                }
            }),
        };
        let dest = match (&decl.dest, unpack, file_name) {
            (Some(dest), _, _) => check_dest(dest.get_ref()).map_err(|problem| {
                located(
                    format!("dest `{}` {problem}", dest.get_ref().escape_debug()),
                    dest.span(),
                    "this path",
                    "dest is a path inside the bundle, relative to its root, e.g. \"assets/models/model.bin\"",
                )
            })?,
            (None, Some(_), _) => format!("assets/{id}"),
            (None, None, Some(name)) if manifest::RelativePath::name(&name).is_ok() => {
                format!("assets/{id}/{name}")
            }
            (None, None, _) => {
                return Err(located(
                    format!("asset `{id}`: its URL ends in no usable file name"),
                    decl.url.span(),
                    "this URL",
                    "add dest = \"assets/<id>/<file name>\" to say where it lands in the bundle",
                ));
            }
        };
        let max_unpacked_size = match &decl.max_unpacked_size {
            None => None,
            Some(value) => {
                if unpack.is_none() {
                    return Err(located(
                        format!("asset `{id}`: max-unpacked-size without unpack"),
                        value.span(),
                        "this setting",
                        "max-unpacked-size bounds what an archive unpacks to: add unpack = \"tar.gz\" or \"zip\", or remove it",
                    ));
                }
                Some(size(value, "max-unpacked-size")?)
            }
        };
        let mut platform_spans = Vec::new();
        let platforms = match &decl.platforms {
            None => None,
            Some(list) => {
                let mut names: Vec<String> = Vec::new();
                for name in list {
                    if !crate::config::is_valid_name(name.get_ref()) {
                        return Err(located(
                            format!("`{}` is not a platform name", name.get_ref().escape_debug()),
                            name.span(),
                            "this platform",
                            "platforms are ids of files in platforms/ (e.g. \"linux-x64\")",
                        ));
                    }
                    if names.contains(name.get_ref()) {
                        return Err(located(
                            format!("platform `{}` is listed twice", name.get_ref()),
                            name.span(),
                            "again",
                            "list each platform once",
                        ));
                    }
                    names.push(name.get_ref().clone());
                    platform_spans.push(name.span());
                }
                if names.is_empty() {
                    return Err(located(
                        format!("asset `{id}` has an empty platforms list"),
                        span.clone(),
                        "this asset",
                        "list the platforms that get it, or leave `platforms` out for all of them",
                    ));
                }
                Some(names)
            }
        };
        // Two assets that may land in one bundle never share or nest paths.
        for other in &assets {
            let shares_platform = match (&other.platforms, &platforms) {
                (Some(a), Some(b)) => a.iter().any(|p| b.contains(p)),
                _ => true,
            };
            if shares_platform && nested(&other.dest, &dest) {
                return Err(located(
                    format!(
                        "assets `{}` and `{id}` land at overlapping paths (`{}` and `{dest}`)",
                        other.id, other.dest
                    ),
                    decl.dest.as_ref().map_or(decl.id.span(), Spanned::span),
                    "this asset",
                    "give each asset a dest of its own, neither inside the other",
                ));
            }
        }
        assets.push(Asset {
            id,
            source,
            platforms,
            unpack,
            dest,
            max_unpacked_size,
            span,
            platform_spans,
        });
    }
    let mut prebuilt = Vec::new();
    for (platform, decl) in runtimes {
        if !crate::config::is_valid_name(platform.get_ref()) {
            return Err(located(
                format!(
                    "`{}` is not a platform name",
                    platform.get_ref().escape_debug()
                ),
                platform.span(),
                "this platform",
                "write [runtime.<platform>] with the id of a file in platforms/ (e.g. [runtime.win-x64])",
            ));
        }
        let decl = decl.into_inner();
        let (source, _) = source(&decl.url, &decl.sha256, decl.max_size.as_ref())?;
        prebuilt.push(PrebuiltRuntime {
            platform: platform.get_ref().clone(),
            platform_span: platform.span(),
            source,
        });
    }
    Ok((assets, prebuilt))
}

/// Whether two bundle paths are equal or one lies below the other.
fn nested(a: &str, b: &str) -> bool {
    let below = |inner: &str, outer: &str| {
        inner == outer
            || inner
                .strip_prefix(outer)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    below(a, b) || below(b, a)
}

/// A [`Located`] problem, pointed into bundle.toml (`file`, its `source`).
pub fn diagnostic(problem: Located, file: &camino::Utf8Path, source: &str) -> Diagnostic {
    let (message, span, label, help) = problem;
    Diagnostic::error(message)
        .in_file(file, source)
        .at(span, label)
        .help(help)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            check_url("https://example.org/a/b.zip?x=1").unwrap(),
            Some("b.zip".into())
        );
        assert_eq!(check_url("http://127.0.0.1:8080/").unwrap(), None);
        assert_eq!(
            check_url("file:///tmp/x.tar.gz").unwrap(),
            Some("x.tar.gz".into())
        );
        for bad in [
            "ftp://x/y",
            "https:///y",
            "file://relative/x",
            "file:///a/../b",
            "https://a b/c",
            "https://x/\u{1b}[31m",
            "x",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dests_and_ids() {
        assert!(check_dest("assets/x/y.bin").is_ok());
        for bad in [
            "/abs",
            "../x",
            "a/../b",
            "a//b",
            "a\\b",
            "bundle.json",
            ".git/x",
            "a/.GIT/b",
            "",
        ] {
            assert!(check_dest(bad).is_err(), "{bad}");
        }
        assert!(check_asset_id("chromium-1_x").is_ok());
        for bad in ["", "runtime", "Upper", "-x", "a/b", "a.b", &"x".repeat(65)] {
            assert!(check_asset_id(bad).is_err(), "{bad}");
        }
        assert!(nested("assets/a", "assets/a/b"));
        assert!(!nested("assets/a", "assets/ab"));
        assert!(check_sha256(&"A".repeat(64)).is_ok());
        assert!(check_sha256(&"g".repeat(64)).is_err());
    }
}
