//! `cargo xtask init`: scaffolds bundle.toml and platforms/ in an existing repository laid out
//! like Vrooli's (`scenarios/<name>/.vrooli/service.json`, `resources/<name>/…`).
//!
//! Invariants:
//! - nothing is ever overwritten: every file to write is checked first (any that exists, or a
//!   symbolic link in its place, is refused, exit 2, naming it, nothing written), then each is
//!   created through the confined tree (`Dir::create_new_file`: `O_EXCL | O_NOFOLLOW`, no link
//!   followed on the way), so a file that appears meanwhile is not replaced either; if one
//!   creation fails, the files this run created (and only those) are removed;
//! - one profile per scenario found, `<scenario>-desktop` on the desktop tier for Linux, Windows
//!   and macOS; each is assembled as `check` assembles it before it is written as a profile
//!   (with the analysis' swap suggestions if it fails without them); a scenario whose profile
//!   would still fail is written commented out, with the reason, so `check` accepts the file;
//! - nothing is written outside the repository: `platforms` that is a symbolic link (or a
//!   file) is refused like an existing file;
//! - platforms/ gets the platform files this project ships (the same five, the same values).

use std::collections::BTreeMap;
use std::io::Write as _;

use camino::{Utf8Path, Utf8PathBuf};
use clap::Args;
use serde_json::json;

use super::{Cli, find_root};
use crate::analysis::tier::Tier;
use crate::analysis::{self, Catalog, Layout, Request};
use crate::config::{self, BundleConfig};
use crate::diagnostic::Diagnostic;
use crate::platform::Platform;
use crate::shell::{GREEN, Shell};
use engine::confine::{Dir, Kind};

#[derive(Debug, Args)]
pub(super) struct InitArgs {}

/// The platforms this project ships in its own platforms/: (id, rust target, GOOS, GOARCH,
/// executable suffix, default formats).
/// (id, rust target, GOOS, GOARCH, executable suffix, default formats).
type PlatformRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
);

const PLATFORMS: [PlatformRow; 5] = [
    (
        "darwin-arm64",
        "aarch64-apple-darwin",
        "darwin",
        "arm64",
        "",
        &["zip", "pkg"],
    ),
    (
        "darwin-x64",
        "x86_64-apple-darwin",
        "darwin",
        "amd64",
        "",
        &["zip", "pkg"],
    ),
    (
        "linux-arm64",
        "aarch64-unknown-linux-gnu",
        "linux",
        "arm64",
        "",
        &["tar.gz", "deb", "rpm"],
    ),
    (
        "linux-x64",
        "x86_64-unknown-linux-gnu",
        "linux",
        "amd64",
        "",
        &["tar.gz", "deb", "rpm"],
    ),
    (
        "win-x64",
        "x86_64-pc-windows-msvc",
        "windows",
        "amd64",
        ".exe",
        &["zip", "msi"],
    ),
];

/// The platforms a scaffolded profile targets: one per desktop operating system.
const PROFILE_PLATFORMS: [&str; 3] = ["linux-x64", "win-x64", "darwin-arm64"];

fn platform_text(platform: &PlatformRow) -> String {
    let (id, rust, goos, goarch, suffix, formats) = platform;
    let formats: Vec<String> = formats.iter().map(|f| format!("\"{f}\"")).collect();
    format!(
        "# Target platform `{id}` (written by `cargo xtask init`). Adding a platform is adding a file like this one.\nid = \"{id}\"\nrust-target = \"{rust}\"\ngoos = \"{goos}\"\ngoarch = \"{goarch}\"\nexe-suffix = \"{suffix}\"\nformats = [{}]\n",
        formats.join(", ")
    )
}

/// A scenario name usable as a bare TOML key and a profile name.
fn is_simple(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

const HEADER: &str = "# bundle.toml, written by `cargo xtask init`: what xbundle builds here.\n# `cargo xtask check` validates it, `cargo xtask profile list` shows the profiles,\n# `cargo xtask bundle` builds the default profile (dist/<profile>/stage/<platform>/).\n\n";

fn workspace_text(default: Option<&str>) -> String {
    let mut text = String::from(
        "[workspace]\nscenarios = \"scenarios\"\nresources = \"resources\"\nout = \"dist\"\n",
    );
    match default {
        Some(name) => text.push_str(&format!("default-profile = \"{name}\"\n")),
        None => text
            .push_str("# default-profile = \"NAME\"   # the profile `cargo xtask bundle` builds\n"),
    }
    text
}

fn profile_text(name: &str, scenario: &str, swaps: &BTreeMap<String, String>) -> String {
    let platforms: Vec<String> = PROFILE_PLATFORMS
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect();
    let mut text = format!(
        "[profiles.{name}]\nscenario = \"{scenario}\"\ntier = \"{}\"\nplatforms = [{}]\n",
        Tier::Desktop.id(),
        platforms.join(", ")
    );
    if !swaps.is_empty() {
        let pairs: Vec<String> = swaps
            .iter()
            .map(|(f, t)| format!("{f} = \"{t}\""))
            .collect();
        text.push_str(&format!("swaps = {{ {} }}\n", pairs.join(", ")));
    }
    text
}

/// Assembles the one profile of `text` as `check` does; the problem's first line if it fails.
fn assembles(
    root: &Utf8Path,
    platforms: &[Platform],
    text: &str,
    name: &str,
) -> Result<(), String> {
    let config = BundleConfig::parse(text, Utf8Path::new(config::FILE_NAME))
        .map_err(|err| err.message.clone())?;
    let context = crate::stages::Context {
        root: root.to_path_buf(),
        layout: crate::names::layout(&config, root),
        config,
        platforms: platforms.to_vec(),
    };
    let catalog = Catalog::new(context.layout.clone());
    context
        .assemble(&catalog, name)
        .map(|_| ())
        .map_err(|err| err.message.lines().next().unwrap_or_default().to_string())
}

/// One scenario's profile: its text (commented out when it cannot pass `check`).
fn scaffold_profile(
    root: &Utf8Path,
    layout: &Layout,
    platforms: &[Platform],
    scenario: &str,
) -> (String, bool) {
    let name = format!("{scenario}-desktop");
    let workspace = workspace_text(None);
    let mut swaps = BTreeMap::new();
    let mut result = assembles(
        root,
        platforms,
        &(workspace.clone() + &profile_text(&name, scenario, &swaps)),
        &name,
    );
    if result.is_err() {
        // The analysis' suggestions for the desktop tier: the first replacement of each.
        let request = Request {
            scenario: scenario.to_string(),
            swaps: BTreeMap::new(),
            tier: Some(Tier::Desktop),
        };
        if let Ok(analysis) = analysis::analyze(&Catalog::new(layout.clone()), &request) {
            for suggestion in &analysis.swaps {
                swaps
                    .entry(suggestion.from.clone())
                    .or_insert_with(|| suggestion.to.clone());
            }
        }
        if !swaps.is_empty() {
            result = assembles(
                root,
                platforms,
                &(workspace + &profile_text(&name, scenario, &swaps)),
                &name,
            );
        }
    }
    let text = profile_text(&name, scenario, &swaps);
    match result {
        Ok(()) => (text, true),
        Err(reason) => {
            let mut out = format!(
                "# Not usable as written (`cargo xtask check` would refuse it): {}\n",
                reason.replace('\n', " ")
            );
            for line in text.lines() {
                out.push_str(&format!("# {line}\n"));
            }
            (out, false)
        }
    }
}

/// Something (a file, a link, a directory) is at `relative`, or a link or a file is where one
/// of its directories must be: in either case init writes nothing there.
fn occupied(tree: &Dir, relative: &str) -> bool {
    !matches!(tree.lstat(relative), Ok(None))
}

pub(super) fn init(cli: &Cli, _args: &InitArgs, shell: &Shell) -> Result<u8, Diagnostic> {
    let root: Utf8PathBuf = match &cli.root {
        Some(root) => find_root(Some(root))?,
        None => find_root(Some(Utf8Path::new(".")))?,
    };
    let layout = Layout {
        root: root.clone(),
        scenarios: "scenarios".into(),
        resources: "resources".into(),
    };
    let tree =
        Dir::open_root(root.as_std_path()).map_err(|err| Diagnostic::internal(err.to_string()))?;
    // Not `is_dir()`, which follows a link: platforms/ must be a directory of the repository,
    // never a link (to outside it, the files would be written there).
    if !matches!(tree.lstat("platforms"), Ok(None | Some((Kind::Dir, _)))) {
        return Err(Diagnostic::error(format!(
            "{} is not a directory (a file or a symbolic link; nothing was written)",
            root.join("platforms")
        ))
        .help("move it away: platforms/ holds one TOML file per target platform"));
    }
    // Everything this run would write, checked before anything is written.
    let mut files: Vec<(Utf8PathBuf, String)> = Vec::new();
    for platform in &PLATFORMS {
        files.push((
            format!("platforms/{}.toml", platform.0).into(),
            platform_text(platform),
        ));
    }
    files.push((config::FILE_NAME.into(), String::new()));
    for (relative, _) in &files {
        if occupied(&tree, relative.as_str()) {
            return Err(Diagnostic::error(format!(
                "{} already exists; `cargo xtask init` never overwrites a file (nothing was written)",
                root.join(relative)
            ))
            .help("this repository is set up already: `cargo xtask check` validates it; to start over, move the file away first"));
        }
    }
    let scenarios = layout.scenario_names();
    if scenarios.is_empty() {
        return Err(Diagnostic::error(format!(
            "no scenario found: no {root}/scenarios/<name>/.vrooli/service.json (nothing was written)"
        ))
        .help("run `cargo xtask init` at the root of a repository laid out like Vrooli's (scenarios/<name>/.vrooli/service.json, resources/<name>/)"));
    }
    let platforms: Vec<Platform> = PLATFORMS
        .iter()
        .map(|p| toml::from_str(&platform_text(p)).expect("the built-in platforms parse"))
        .collect();
    let mut body = String::new();
    let mut usable = Vec::new();
    let mut skipped = Vec::new();
    for scenario in &scenarios {
        if !is_simple(scenario) {
            body.push_str(&format!(
                "# scenario `{}` skipped: its name is not a plain word\n\n",
                scenario.escape_debug()
            ));
            skipped.push(scenario.clone());
            continue;
        }
        let (text, ok) = scaffold_profile(&root, &layout, &platforms, scenario);
        body.push_str(&text);
        body.push('\n');
        if ok {
            usable.push(format!("{scenario}-desktop"));
        } else {
            skipped.push(scenario.clone());
        }
    }
    let toml = format!(
        "{HEADER}{}\n# One profile per scenario found under scenarios/: the desktop tier, for Linux, Windows and\n# macOS. `cargo xtask profile show NAME` shows a profile's fitness and suggested swaps.\n\n{body}",
        workspace_text(usable.first().map(String::as_str))
    );
    if let Some(last) = files.last_mut() {
        last.1 = toml;
    }
    let mut created: Vec<&str> = Vec::new();
    for (relative, text) in &files {
        let path = root.join(relative);
        let failed = match tree.create_new_file(relative.as_str(), 0o644) {
            Ok(None) => Some(
                Diagnostic::error(format!("{path} appeared while init ran (nothing was kept)"))
                    .help(
                        "another process writes here: run `cargo xtask init` again once it is done",
                    ),
            ),
            Err(err) => Some(Diagnostic::internal(format!(
                "could not create {path}: {err} (nothing was kept)"
            ))),
            Ok(Some(mut file)) => {
                // Created by this run: removed with the others if anything fails.
                created.push(relative.as_str());
                file.write_all(text.as_bytes()).err().map(|err| {
                    Diagnostic::internal(format!(
                        "could not write {path}: {err} (nothing was kept)"
                    ))
                })
            }
        };
        if let Some(diagnostic) = failed {
            for relative in &created {
                let _ = tree.remove_file(relative);
            }
            return Err(diagnostic);
        }
    }
    if shell.is_json() {
        shell.json(&json!({
            "event": "init",
            "root": root.as_str(),
            "written": files.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
            "profiles": usable,
            "commented_out": skipped,
        }));
    } else {
        for (relative, _) in &files {
            shell.status("Wrote", GREEN, relative.as_str());
        }
        shell.status(
            "Finished",
            GREEN,
            &format!(
                "init: {} profile(s) for {} scenario(s) ({} commented out: `check` would refuse them as they are)",
                usable.len(),
                scenarios.len(),
                skipped.len()
            ),
        );
        shell.print(
            "Next: `cargo xtask check`, `cargo xtask profile list`, then `cargo xtask bundle`.\n",
        );
    }
    Ok(0)
}
