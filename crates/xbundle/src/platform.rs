//! Target platforms as data: `platforms/<id>.toml` names the Rust target triple, GOOS/GOARCH,
//! the executable suffix and the default installer formats. Adding a platform is adding a file.

use camino::Utf8Path;
use serde::Deserialize;

use crate::diagnostic::Diagnostic;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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

/// Every `*.toml` in `dir`, sorted by id. A file whose `id` differs from its name is an error.
pub fn load_all(dir: &Utf8Path) -> Result<Vec<Platform>, Diagnostic> {
    let mut platforms = Vec::new();
    let entries = dir.read_dir_utf8().map_err(|err| {
        Diagnostic::error(format!("could not read {dir}: {err}"))
            .help("create a platforms/ directory with one TOML file per target platform")
    })?;
    for entry in entries {
        let entry = entry.map_err(Diagnostic::from)?;
        let path = entry.path();
        if path.extension() != Some("toml") {
            continue;
        }
        let source = std::fs::read_to_string(path).map_err(Diagnostic::from)?;
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
        let dir = Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("../../platforms");
        let platforms = load_all(&dir).unwrap();
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
