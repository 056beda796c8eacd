//! `cargo xtask hooks install | uninstall`: the git pre-commit hook that runs `cargo xtask
//! check` (the fast gate, no builds) and blocks the commit when it fails.
//!
//! Invariants:
//! - The hooks directory is git's own answer (`git rev-parse --git-path hooks`), so
//!   `core.hooksPath` is honoured.
//! - A hook is ours only when it is a regular file holding [`MARKER`] as a whole line. Anything
//!   else at `pre-commit` (another tool's hook, a link, a directory) is foreign: install and
//!   uninstall refuse with exit 2 and write or delete nothing.
//! - Nothing is written through a link: a hooks directory or a `pre-commit` that is a link is
//!   refused, and the hook is written to a new temporary file in the hooks directory, then
//!   renamed over (a rename replaces a name, never a link's target), so a half-written hook
//!   never exists.
//! - `uninstall` deletes only a hook [`is_ours`] proved ours.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use camino::Utf8Path;
use clap::Subcommand;
use serde_json::json;

use super::{Cli, find_root};
use crate::diagnostic::Diagnostic;
use crate::shell::{GREEN, Shell};

/// The line that marks a file written by xbundle (a hook here, a workflow in `ci`).
pub(super) const MARKER: &str =
    "# Written by xbundle (cargo xtask); remove this line to keep your own edits.";

#[derive(Debug, Subcommand)]
pub(super) enum HooksCommand {
    /// Write the git pre-commit hook (runs `cargo xtask check`; a failure blocks the commit)
    Install,
    /// Remove the pre-commit hook, if xbundle wrote it
    Uninstall,
}

/// Whether `text` carries [`MARKER`] as a whole line.
pub(super) fn is_ours(text: &str) -> bool {
    text.lines().any(|line| line.trim_end() == MARKER)
}

/// What is at `path`, read without following a link: `None` when nothing is there, `Some`
/// when it is a regular file xbundle wrote, an error (exit 2) naming it otherwise.
pub(super) fn existing_own(path: &Path, what: &str) -> Result<Option<()>, Diagnostic> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(Diagnostic::internal(format!("{}: {err}", path.display()))),
    };
    let foreign = || {
        Diagnostic::error(format!(
            "{} exists and xbundle did not write it; nothing was written or removed",
            path.display()
        ))
        .help(format!(
            "xbundle replaces only a {what} it wrote (one holding the line `{MARKER}`): move it away, or merge the command in by hand"
        ))
    };
    if !metadata.file_type().is_file() {
        return Err(foreign());
    }
    let text = std::fs::read(path)
        .map_err(|err| Diagnostic::internal(format!("{}: {err}", path.display())))?;
    if is_ours(&String::from_utf8_lossy(&text)) {
        Ok(Some(()))
    } else {
        Err(foreign())
    }
}

/// Writes `text` at `path` (mode `mode`) through a temporary file in the same directory and a
/// rename: never through a link, never half-written.
pub(super) fn write_replacing(path: &Path, text: &str, mode: u32) -> Result<(), Diagnostic> {
    let dir = path.parent().expect("a file has a directory");
    let io = |err: std::io::Error| Diagnostic::internal(format!("{}: {err}", path.display()));
    let mut file = tempfile::Builder::new()
        .prefix(".xbundle-tmp-")
        .tempfile_in(dir)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io)?;
    file.as_file().sync_all().map_err(io)?;
    file.persist(path).map_err(|err| io(err.error))?;
    Ok(())
}

/// Refuses a link (or a non-directory) where a directory xbundle writes in must be; creates it
/// when missing.
pub(super) fn own_dir(dir: &Path) -> Result<(), Diagnostic> {
    match std::fs::symlink_metadata(dir) {
        Ok(metadata) if metadata.file_type().is_dir() => Ok(()),
        Ok(_) => Err(Diagnostic::error(format!(
            "{} is a link or not a directory; xbundle never writes through a link",
            dir.display()
        ))
        .help("make it a plain directory (or remove it: xbundle creates it)")),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .map_err(|err| Diagnostic::internal(format!("{}: {err}", dir.display())))?;
            own_dir(dir)
        }
        Err(err) => Err(Diagnostic::internal(format!("{}: {err}", dir.display()))),
    }
}

/// `git` run in `dir`, its trimmed stdout.
pub(super) fn git(dir: &Utf8Path, args: &[&str]) -> Result<String, Diagnostic> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|err| {
            Diagnostic::error(format!("could not run git: {err}"))
                .help("install git, and run this inside a git repository")
        })?;
    if !output.status.success() {
        return Err(Diagnostic::error(format!(
            "`git {}` failed in {dir}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
        .help("run this inside a git repository (`git init`)"));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .trim_end_matches(['\n', '\r'])
        .to_string())
}

/// The hook's text: `cargo xtask check` from the repository's top level, with `--root` when
/// bundle.toml lives in a subdirectory.
fn hook_text(root: &Utf8Path) -> Result<String, Diagnostic> {
    let top = git(root, &["rev-parse", "--show-toplevel"])?;
    let top = Utf8Path::new(&top)
        .canonicalize_utf8()
        .map_err(|err| Diagnostic::internal(format!("{top}: {err}")))?;
    let relative = root.strip_prefix(&top).map_err(|_| {
        Diagnostic::error(format!("{root} is not inside the git work tree {top}"))
            .help("run this in the repository's work tree")
    })?;
    let root_arg = if relative.as_str().is_empty() {
        String::new()
    } else if relative.as_str().contains('\'') {
        return Err(
            Diagnostic::error(format!("the path {relative} holds a quote"))
                .help("rename the directory holding bundle.toml"),
        );
    } else {
        format!(" --root '{relative}'")
    };
    Ok(format!(
        "#!/bin/sh\n{MARKER}\n# The fast gate (bundle.toml, the task graph, every profile; no builds): a failure\n# blocks the commit. `cargo xtask hooks uninstall` removes this hook.\nexec cargo xtask{root_arg} check\n"
    ))
}

pub(super) fn hooks(cli: &Cli, command: &HooksCommand, shell: &Shell) -> Result<u8, Diagnostic> {
    let root = find_root(cli.root.as_deref())?;
    let dir = git(&root, &["rev-parse", "--git-path", "hooks"])?;
    let dir = root.as_std_path().join(dir);
    let hook: PathBuf = dir.join("pre-commit");
    match command {
        HooksCommand::Install => {
            let text = hook_text(&root)?;
            own_dir(&dir)?;
            let replaced = existing_own(&hook, "hook")?.is_some();
            write_replacing(&hook, &text, 0o755)?;
            if shell.is_json() {
                shell.json(&json!({"event": "hook", "action": "installed", "path": hook, "replaced": replaced}));
            } else {
                shell.status(
                    "Installed",
                    GREEN,
                    &format!(
                        "pre-commit hook {} (runs `cargo xtask check`)",
                        hook.display()
                    ),
                );
            }
        }
        HooksCommand::Uninstall => {
            let removed = match existing_own(&hook, "hook")? {
                Some(()) => {
                    std::fs::remove_file(&hook).map_err(|err| {
                        Diagnostic::internal(format!("{}: {err}", hook.display()))
                    })?;
                    true
                }
                None => false,
            };
            if shell.is_json() {
                shell.json(&json!({"event": "hook", "action": if removed { "removed" } else { "absent" }, "path": hook}));
            } else if removed {
                shell.status(
                    "Removed",
                    GREEN,
                    &format!("pre-commit hook {}", hook.display()),
                );
            } else {
                shell.status(
                    "Nothing",
                    GREEN,
                    &format!("to remove: no hook at {}", hook.display()),
                );
            }
        }
    }
    Ok(0)
}
