//! The lexical rule for every path bundle.json holds: relative, normalized, portable.
//!
//! A manifest names files inside the bundle (binaries, their working directories, the UI,
//! assets, build sources) and inside the app data directory (logs, telemetry, the control
//! token, data directories). A path that is absolute, starts with a Windows drive (`C:`), uses
//! `..`, `.`, an empty component (`a//b`, `a/`) or one of only dots and spaces (`.. `, which
//! Windows reads as `..`), or holds NUL or another control character
//! could name something outside its root, or name different things on different systems, so
//! [`RelativePath::new`] refuses it. What passes is a sequence of plain components joined by
//! `/` that stays inside whatever directory it is joined to, as long as no component is a
//! symbolic link: following links is the file system's business (the runtime opens each
//! component without following links), not this rule's.
//!
//! A backslash is refused (on Windows it separates components, elsewhere it is part of a name,
//! so the same string would name two different files), except in the binaries of a Windows
//! platform (`win-x64`, …), where manifests written on Windows spell paths with `\`: there
//! [`PathStyle::Windows`] reads `\` as a separator too, and every component is checked alike.
//!
//! **Invariant:** a path accepted here, joined to a directory component by component, names
//! an entry below that directory (never the directory itself, never its parent), and
//! [`RelativePath::components`] yields exactly the components the check looked at.

use std::fmt;

/// Longest path accepted, in bytes (`PATH_MAX` on Linux).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest component accepted, in bytes (`NAME_MAX` of common file systems).
pub const MAX_COMPONENT_BYTES: usize = 255;

/// Which characters separate components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathStyle {
    /// `/` only; a `\` is an error. Every path of a manifest but Windows binaries.
    Portable,
    /// `/` and `\` (the binaries of a `win-*` platform).
    Windows,
}

/// Why a path is not a confined relative path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    Empty,
    TooLong,
    Absolute,
    Drive,
    Backslash,
    ControlCharacter,
    EmptyComponent,
    CurrentDir,
    ParentDir,
    /// Only dots and spaces, such as `...` or `.. `: Windows drops trailing dots and spaces,
    /// so it may read them as `.` or `..`.
    DotsAndSpaces,
    ComponentTooLong,
    /// More than one component where one file name is expected.
    NotAName,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::Empty => "empty path",
            PathError::TooLong => "path longer than 4096 bytes",
            PathError::Absolute => "absolute path: it must be relative to its root",
            PathError::Drive => "a Windows drive (`C:`): it must be relative to its root",
            PathError::Backslash => {
                "a backslash: write `/` between components (a `\\` is a separator on Windows and a character elsewhere)"
            }
            PathError::ControlCharacter => "a NUL or another control character",
            PathError::EmptyComponent => "an empty component (`//` or a trailing `/`)",
            PathError::CurrentDir => "a `.` component: write the path without it",
            PathError::ParentDir => "a `..` component: it could leave its root",
            PathError::DotsAndSpaces => {
                "a component of only dots and spaces (Windows reads `.. ` as `..`)"
            }
            PathError::ComponentTooLong => "a component longer than 255 bytes",
            PathError::NotAName => "more than one component: a single file name is expected",
        })
    }
}

impl std::error::Error for PathError {}

/// A path that passed the rule: relative, normalized, without control characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelativePath<'a> {
    text: &'a str,
    style: PathStyle,
}

impl<'a> RelativePath<'a> {
    /// Checks `text` with `/` as the only separator.
    pub fn new(text: &'a str) -> Result<RelativePath<'a>, PathError> {
        RelativePath::with_style(text, PathStyle::Portable)
    }

    /// Checks `text`, reading separators as `style` says.
    pub fn with_style(text: &'a str, style: PathStyle) -> Result<RelativePath<'a>, PathError> {
        if text.is_empty() {
            return Err(PathError::Empty);
        }
        if text.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong);
        }
        if text.chars().any(char::is_control) {
            return Err(PathError::ControlCharacter);
        }
        if style == PathStyle::Portable && text.contains('\\') {
            return Err(PathError::Backslash);
        }
        if text.starts_with(['/', '\\']) {
            return Err(PathError::Absolute);
        }
        let bytes = text.as_bytes();
        if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
            return Err(PathError::Drive);
        }
        let path = RelativePath { text, style };
        for component in path.split() {
            match component {
                "" => return Err(PathError::EmptyComponent),
                "." => return Err(PathError::CurrentDir),
                ".." => return Err(PathError::ParentDir),
                _ if component.chars().all(|c| c == '.' || c == ' ') => {
                    return Err(PathError::DotsAndSpaces);
                }
                _ if component.len() > MAX_COMPONENT_BYTES => {
                    return Err(PathError::ComponentTooLong);
                }
                _ => {}
            }
        }
        Ok(path)
    }

    /// Checks that `text` is one plain file or directory name (no separator of either kind).
    pub fn name(text: &'a str) -> Result<RelativePath<'a>, PathError> {
        let path = RelativePath::with_style(text, PathStyle::Windows)?;
        if path.components().count() != 1 {
            return Err(PathError::NotAName);
        }
        Ok(path)
    }

    fn split(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        let windows = self.style == PathStyle::Windows;
        self.text
            .split(move |c: char| c == '/' || (windows && c == '\\'))
    }

    /// The components, in order (never empty, `.` or `..`).
    pub fn components(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.split()
    }

    /// The path as written.
    pub fn as_str(&self) -> &'a str {
        self.text
    }
}

/// [`RelativePath::new`] as a plain check.
pub fn check_relative(text: &str) -> Result<(), PathError> {
    RelativePath::new(text).map(drop)
}

/// The style of the paths of `binaries.<platform>`: [`PathStyle::Windows`] for `win-*` keys.
pub fn style_for_platform(platform: &str) -> PathStyle {
    if platform.starts_with("win") {
        PathStyle::Windows
    } else {
        PathStyle::Portable
    }
}

/// A command's program (`migrations[].command[0]`, `health.command[0]`): a bare name is
/// looked up on `PATH`; anything with a separator is a path relative to the service's working
/// directory, which may start with `./` and must then pass [`RelativePath::new`].
pub fn check_program(program: &str) -> Result<(), PathError> {
    if program.is_empty() {
        return Err(PathError::Empty);
    }
    if program.chars().any(char::is_control) {
        return Err(PathError::ControlCharacter);
    }
    if !program.contains(['/', '\\']) {
        return Ok(());
    }
    check_relative(program.strip_prefix("./").unwrap_or(program))
}

/// The file the runtime writes its control port to, beside `ipc.auth_token_path`.
pub const IPC_PORT_FILE: &str = "ipc-port";

/// The app data directory the runtime keeps secret values in; nothing bundle.json names may
/// lie inside it.
pub const SECRETS_DIR: &str = "secrets";

/// The runtime's own files in the app data directory; bundle.json may not name them.
pub const RUNTIME_FILES: [[&str; 2]; 3] = [
    ["runtime", "lock"],
    ["runtime", "ports.json"],
    ["runtime", "migrations.json"],
];

/// A path's components as a file system that ignores case (macOS, Windows) and, on Windows,
/// trailing dots and spaces reads them: two paths with the same key name the same file
/// there (`Runtime/LOCK.` is `runtime/lock`). Comparisons of app data paths use it, so a
/// manifest cannot reach the runtime's own files, or name one file twice, by spelling.
pub fn file_key<'a>(components: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    components
        .into_iter()
        .map(|c| c.trim_end_matches(['.', ' ']).to_lowercase())
        .collect()
}

/// Why an app data path (given by its components) may not be named by bundle.json: it is
/// inside `secrets/` or is one of the runtime's own files, however it is spelled
/// ([`file_key`]). `None` when it may be used.
pub fn reserved_in_app_data<'a>(
    components: impl IntoIterator<Item = &'a str>,
) -> Option<&'static str> {
    let key = file_key(components);
    if key.first().map(String::as_str) == Some(SECRETS_DIR) {
        return Some("is inside `secrets/`, which only the runtime writes");
    }
    RUNTIME_FILES
        .iter()
        .any(|own| key == own)
        .then_some("is one of the runtime's own files")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_relative_paths() {
        for ok in [
            "a",
            "bin/api/linux-x64/api",
            "logs/picker-wheel-api",
            "x.y",
            "..a/b..",
            "a/.b",
            "my app/data",
        ] {
            let path = RelativePath::new(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(path.components().collect::<Vec<_>>().join("/"), ok);
        }
    }

    #[test]
    fn refuses_every_escape() {
        let cases = [
            ("", PathError::Empty),
            ("/etc/passwd", PathError::Absolute),
            ("\\\\server\\share", PathError::Backslash),
            ("C:/x", PathError::Drive),
            ("c:x", PathError::Drive),
            ("a\\b", PathError::Backslash),
            ("a\0b", PathError::ControlCharacter),
            ("a\nb", PathError::ControlCharacter),
            ("a//b", PathError::EmptyComponent),
            ("a/", PathError::EmptyComponent),
            ("./a", PathError::CurrentDir),
            ("a/./b", PathError::CurrentDir),
            (".", PathError::CurrentDir),
            ("..", PathError::ParentDir),
            ("../../../x/evil.sh", PathError::ParentDir),
            ("a/../../b", PathError::ParentDir),
            ("a/.. /b", PathError::DotsAndSpaces),
            ("...", PathError::DotsAndSpaces),
            (" ", PathError::DotsAndSpaces),
        ];
        for (path, expected) in cases {
            assert_eq!(RelativePath::new(path), Err(expected), "{path:?}");
        }
        assert_eq!(
            RelativePath::new(&"a".repeat(256)),
            Err(PathError::ComponentTooLong)
        );
        assert_eq!(
            RelativePath::new(&"a/".repeat(2049)),
            Err(PathError::TooLong)
        );
    }

    #[test]
    fn windows_paths_split_on_both_separators() {
        let path =
            RelativePath::with_style("services\\api\\win\\api.exe", PathStyle::Windows).unwrap();
        assert_eq!(
            path.components().collect::<Vec<_>>(),
            ["services", "api", "win", "api.exe"]
        );
        for bad in ["a\\..\\..\\x", "\\x", "C:\\x", "a\\\\b", "a\\.\\b"] {
            assert!(
                RelativePath::with_style(bad, PathStyle::Windows).is_err(),
                "{bad}"
            );
        }
        assert_eq!(style_for_platform("win-x64"), PathStyle::Windows);
        assert_eq!(style_for_platform("linux-x64"), PathStyle::Portable);
    }

    #[test]
    fn names_and_programs() {
        assert!(RelativePath::name("jwt.key").is_ok());
        assert_eq!(RelativePath::name("a/b"), Err(PathError::NotAName));
        assert_eq!(RelativePath::name("a\\b"), Err(PathError::NotAName));
        assert_eq!(RelativePath::name(".."), Err(PathError::ParentDir));
        assert!(check_program("sh").is_ok());
        assert!(check_program("./picker-wheel-api").is_ok());
        assert!(check_program("bin/tool").is_ok());
        assert_eq!(check_program("/bin/sh"), Err(PathError::Absolute));
        assert_eq!(
            check_program("./../../x/evil.sh"),
            Err(PathError::ParentDir)
        );
        assert_eq!(check_program(".\\evil"), Err(PathError::Backslash));
    }
}
