//! Target platforms as data: `platforms/<id>.toml` names the Rust target triple, GOOS/GOARCH,
//! the executable suffix and the default installer formats. Adding a platform is adding a file.

use camino::Utf8Path;
use serde::Deserialize;

use crate::diagnostic::Diagnostic;

/// Where platform files live, relative to the root.
const DIR: &str = "platforms";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Platform {
    pub id: String,
    pub rust_target: String,
    pub goos: String,
    pub goarch: String,
    #[serde(default)]
    pub exe_suffix: String,
    pub formats: Vec<String>,
}

#[cfg(test)]
impl Platform {
    /// A platform for unit tests: only its id and Go names set.
    pub(crate) fn for_test(id: &str, goos: &str, goarch: &str) -> Platform {
        Platform {
            id: id.into(),
            rust_target: String::new(),
            goos: goos.into(),
            goarch: goarch.into(),
            exe_suffix: String::new(),
            formats: Vec::new(),
        }
    }
}

/// Every `*.toml` in `<root>/platforms/`, sorted by id (none when there is no such
/// directory). A file whose `id` differs from its name is an error. The directory and its files
/// are read as untrusted input ([`crate::config::read_definition`]): no link followed, only
/// regular files of a sane size.
pub fn load_all(root: &Utf8Path) -> Result<Vec<Platform>, Diagnostic> {
    use engine::confine::{Dir, Kind};
    let mut platforms = Vec::new();
    let unreadable = |err: String| {
        Diagnostic::error(format!("could not read {DIR}/: {err}"))
            .help("platforms/ holds one TOML file per target platform, as a real directory")
    };
    let dir = Dir::open_root(root.as_std_path())
        .and_then(|root| root.open_dir(DIR))
        .map_err(|err| unreadable(err.to_string()))?;
    let Some(dir) = dir else {
        return Ok(platforms);
    };
    let mut names: Vec<String> = Vec::new();
    for (name, kind) in dir.entries().map_err(|err| unreadable(err.to_string()))? {
        let Ok(name) = String::from_utf8(name) else {
            continue;
        };
        if name.ends_with(".toml") && kind != Kind::Dir {
            names.push(name);
        }
    }
    names.sort();
    for name in names {
        let relative = format!("{DIR}/{name}");
        let path = root.join(&relative);
        let path = path.as_path();
        let source = crate::config::read_definition(root, &relative)
            .map_err(|problem| {
                Diagnostic::error(format!("could not read {relative}: {problem}"))
                    .help("a platform file is a regular TOML file in platforms/")
            })?
            .unwrap_or_default();
        let platform: Platform = toml::from_str(&source).map_err(|err| {
            let diagnostic = Diagnostic::error(err.message().to_string()).in_file(path, &source);
            match err.span() {
                Some(span) => diagnostic.at(span, "here"),
                None => diagnostic,
            }
            .help("a platform file has id, rust-target, goos, goarch, exe-suffix and formats")
        })?;
        if Some(platform.id.as_str()) != path.file_stem() {
            return Err(Diagnostic::error(format!(
                "{path} declares id `{}`; the file must be named after its id",
                platform.id
            ))
            .help(format!("rename the file to {}.toml", platform.id)));
        }
        platforms.push(platform);
    }
    platforms.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(platforms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_platforms_load() {
        let root = Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let platforms = load_all(&root).unwrap();
        let ids: Vec<&str> = platforms.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "darwin-arm64",
                "darwin-x64",
                "linux-arm64",
                "linux-x64",
                "win-x64"
            ]
        );
        let windows = &platforms[4];
        assert_eq!(windows.exe_suffix, ".exe");
        assert_eq!(windows.goos, "windows");
        assert_eq!(windows.goarch, "amd64");
    }
}
