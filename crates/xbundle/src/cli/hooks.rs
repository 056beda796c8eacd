//! `cargo xtask hooks install | uninstall`: the git pre-commit hook that runs `cargo xtask
//! check` (the fast gate, no builds) and blocks the commit when it fails.
//!
//! Invariants:
//! - The hooks directory is git's own answer (`git rev-parse --git-path hooks`), so
//!   `core.hooksPath` is honoured.
//! - A hook is ours only when it is a regular file holding [`MARKER`] as a whole line. Anything
//!   else at `pre-commit` (another tool's hook, a link, a directory) is foreign: install and
//!   uninstall refuse with exit 2 and write or delete nothing.
//! - Nothing is written through a link: the hook is written through the confined tree below
//!   the work tree's top level (`engine::confine::Dir`: no link followed at any component, a
//!   new temporary file renamed over, so a half-written hook never exists), or, for a hooks
//!   directory git names outside the work tree, below that directory's parent; a link on the
//!   way, at the hooks directory or at the hook is refused.
//! - `uninstall` deletes only a hook [`is_ours`] proved ours.

use std::io::Write as _;

use camino::{Utf8Path, Utf8PathBuf};
use clap::Subcommand;
use engine::confine::{ConfineError, Dir, Kind};
use serde_json::json;

use super::{Cli, find_root};
use crate::diagnostic::Diagnostic;
use crate::shell::{GREEN, Shell};
use crate::tool::Cmd;

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

/// The most of a hook or workflow read to look for [`MARKER`].
const READ_LIMIT: u64 = 1 << 20;

/// A refusal of the confined tree (a link or a non-directory on the way) as a diagnostic.
pub(super) fn refused(err: ConfineError) -> Diagnostic {
    match err {
        ConfineError::Symlink { path } => Diagnostic::error(format!(
            "{path} is a symbolic link; xbundle never writes through a link"
        ))
        .help("make it a plain directory or file (or remove it: xbundle creates it)"),
        ConfineError::NotDirectory { path } | ConfineError::NotRegular { path, .. } => {
            Diagnostic::error(format!("{path} is not what xbundle writes there"))
                .help("move it away: xbundle creates what it needs")
        }
        other => Diagnostic::internal(other.to_string()),
    }
}

/// What is at `relative` below `dir`, resolved without following a link: `None` when nothing
/// is there, `Some` when it is a regular file xbundle wrote, an error (exit 2) naming it
/// otherwise (another tool's file, a link, a directory).
pub(super) fn existing_own(
    dir: &Dir,
    relative: &str,
    what: &str,
) -> Result<Option<()>, Diagnostic> {
    let foreign = || {
        Diagnostic::error(format!(
            "{} exists and xbundle did not write it; nothing was written or removed",
            dir.join(relative).display()
        ))
        .help(format!(
            "xbundle replaces only a {what} it wrote (one holding the line `{MARKER}`): move it away, or merge the command in by hand"
        ))
    };
    match dir.lstat(relative).map_err(refused)? {
        None => Ok(None),
        Some((Kind::File, _)) => {
            let text = dir
                .read_file(relative, READ_LIMIT)
                .map_err(|_| foreign())?
                .unwrap_or_default();
            if is_ours(&String::from_utf8_lossy(&text)) {
                Ok(Some(()))
            } else {
                Err(foreign())
            }
        }
        Some(_) => Err(foreign()),
    }
}

/// Writes `text` at `relative` below `dir` (mode `mode`) through the confined tree: its
/// directories are made without following a link, and the file is a new temporary file renamed
/// over (never through a link, never half-written).
pub(super) fn write_replacing(
    dir: &Dir,
    relative: &str,
    text: &str,
    mode: u32,
) -> Result<(), Diagnostic> {
    dir.write_file(relative, mode, |file: &mut std::fs::File| {
        file.write_all(text.as_bytes())
            .map_err(|source| ConfineError::Io {
                path: dir.join(relative).display().to_string(),
                source,
            })
    })
    .map(drop)
    .map_err(refused)
}

/// `git` run in `dir`, its trimmed stdout (through the one tool runner, which names the
/// command line in errors).
pub(super) fn git(dir: &Utf8Path, args: &[&str]) -> Result<String, Diagnostic> {
    let captured = Cmd::new("git")
        .args(args)
        .cwd(dir.as_std_path())
        .probe(None)
        .map_err(|err| {
            Diagnostic::error(err)
                .help("install git, and run this inside a git repository (`git init`)")
        })?;
    Ok(String::from_utf8_lossy(&captured.stdout)
        .trim_end_matches(['\n', '\r'])
        .to_string())
}

/// `path` with its `.` and `..` components applied as text (no link resolved).
fn lexical(path: &Utf8Path) -> Utf8PathBuf {
    let mut out = Utf8PathBuf::new();
    for component in path.components() {
        match component {
            camino::Utf8Component::CurDir => {}
            camino::Utf8Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_str()),
        }
    }
    out
}

/// The git work tree holding `root`: its top level, canonical.
fn top_level(root: &Utf8Path) -> Result<Utf8PathBuf, Diagnostic> {
    let top = git(root, &["rev-parse", "--show-toplevel"])?;
    Utf8Path::new(&top)
        .canonicalize_utf8()
        .map_err(|err| Diagnostic::internal(format!("{top}: {err}")))
}

/// The hook's text: `cargo xtask check` from the repository's top level, with `--root` when
/// bundle.toml lives in a subdirectory.
fn hook_text(root: &Utf8Path, top: &Utf8Path) -> Result<String, Diagnostic> {
    let relative = root.strip_prefix(top).map_err(|_| {
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
    let top = top_level(&root)?;
    // git's own answer, so `core.hooksPath` is honoured. Inside the work tree, the hook is
    // written through the confined tree below its top level (no link followed on the way);
    // elsewhere (a linked worktree's common `.git`, a `core.hooksPath` the user points outside)
    // below the hooks directory's parent, the place git names: the hooks directory itself and
    // the hook are never a link.
    // As git says it (relative to the root, or absolute), made absolute without resolving a
    // link: `--path-format=absolute` would resolve one, hiding a hooks directory that is a link.
    let hooks = lexical(&root.join(git(&root, &["rev-parse", "--git-path", "hooks"])?));
    let (anchor, relative) = match hooks.strip_prefix(&top) {
        Ok(inside) => (top.clone(), inside.join("pre-commit")),
        Err(_) => match (hooks.parent(), hooks.file_name()) {
            (Some(parent), Some(name)) => (
                parent.to_path_buf(),
                Utf8PathBuf::from(name).join("pre-commit"),
            ),
            _ => {
                return Err(Diagnostic::error(format!(
                    "git names {hooks} as its hooks directory; xbundle cannot write there"
                ))
                .help("point core.hooksPath at a directory of its own"));
            }
        },
    };
    let relative = relative.as_str();
    let tree = Dir::open_root(anchor.as_std_path()).map_err(refused)?;
    let hook = tree.join(relative);
    match command {
        HooksCommand::Install => {
            let text = hook_text(&root, &top)?;
            let replaced = existing_own(&tree, relative, "hook")?.is_some();
            write_replacing(&tree, relative, &text, 0o755)?;
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
            let removed = match existing_own(&tree, relative, "hook")? {
                Some(()) => tree.remove_file(relative).map_err(refused)?,
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
