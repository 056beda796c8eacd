//! Staging (the seed's Gap 4): `stage:<profile>@<platform>` makes the complete bundle directory
//! `<out>/<profile>/stage/<platform>/` from what the other tasks produced, with no manual step:
//!
//! ```text
//! bundle.json                              the profile's manifest
//! bin/<service>/<platform>/<name>[.exe]    each service's binary (compile tasks)
//! ui/<scenario>/…                          the UI (npm's dist/, or a static ui/ as it is)
//! runtime/xbundle-runtime[.exe]            the supervisor (runtime@<platform>, or a prebuilt
//!                                          one, fetch:runtime@<platform>)
//! <dest>…                                  each asset (fetch:<asset>@<platform>), listed with
//!                                          its sha256 and size in the root API's `assets`
//! ```
//!
//! It depends on the profile's `assemble:` task and on every build its services need, so it
//! re-runs exactly when one of their outputs changes (and then only copies: a stage's files are
//! the bytes its dependencies produced). A no-op copies nothing: the engine finds the stage's
//! outputs in place; after `dist/` was removed it restores them from the CAS.
//!
//! **Invariant:** everything is read and written through the engine's confined tree; a link in
//! a UI directory is an error naming it, never followed. A service whose binary nothing built
//! is an error naming the service, the platform and the fix, never a missing file found at run
//! time.

use std::collections::BTreeMap;
use std::sync::Arc;

use camino::{Utf8Path, Utf8PathBuf};
use engine::confine::{ConfineError, Dir, Kind, Walk};
use engine::{Action, ActionContext, ActionFailure, ActionOutput, TaskId, TaskSpec};

use crate::builds;
use crate::platform::Platform;

/// Bump when what staging produces changes for the same inputs.
pub const STAGE_VERSION: u32 = 1;

pub fn stage_id(profile: &str, platform: &str) -> TaskId {
    TaskId::new(format!("stage:{profile}@{platform}"))
}

/// Where a profile's stage for `platform` lands (root-relative).
pub fn stage_dir(out: &Utf8Path, profile: &str, platform: &str) -> Utf8PathBuf {
    out.join(profile).join("stage").join(platform)
}

/// Where the runtime lands in a stage.
pub fn staged_runtime(platform: &Platform) -> String {
    format!("runtime/{}", builds::runtime_name(platform))
}

/// What a stage is made of, decided at planning.
pub struct StagePlan {
    pub profile: String,
    pub platform: Platform,
    pub out: Utf8PathBuf,
    /// The UI directories: bundle path (`ui/<scenario>`) -> root-relative source directory.
    pub ui: BTreeMap<String, Utf8PathBuf>,
    /// Static UI directories (declared inputs of the stage; an npm UI is a dependency).
    pub static_ui: Vec<Utf8PathBuf>,
    /// The runtime binary to ship (root-relative).
    pub runtime: Utf8PathBuf,
    /// The profile's assets on this platform (their `fetch:` tasks are dependencies).
    pub assets: Vec<String>,
    pub deps: Vec<TaskId>,
}

pub fn spec(plan: StagePlan) -> TaskSpec {
    let dir = stage_dir(&plan.out, &plan.profile, &plan.platform.id);
    let mut params = BTreeMap::new();
    params.insert("profile".into(), plan.profile.clone());
    params.insert("platform".into(), plan.platform.id.clone());
    params.insert(
        "ui".into(),
        serde_json::to_string(&plan.ui).expect("maps serialize"),
    );
    params.insert("runtime".into(), plan.runtime.to_string());
    params.insert("assets".into(), plan.assets.join(","));
    params.insert("implementation".into(), crate::IMPLEMENTATION.to_string());
    let inputs = plan
        .static_ui
        .iter()
        .map(|dir| format!("{dir}/**"))
        .collect();
    TaskSpec {
        id: stage_id(&plan.profile, &plan.platform.id),
        kind: "stage".into(),
        impl_version: STAGE_VERSION,
        params,
        cwd: String::new(),
        inputs,
        outputs: vec![format!("{dir}/**")],
        env: Vec::new(),
        tools: BTreeMap::new(),
        deps: plan.deps.clone(),
        description: Some(format!(
            "Stage profile {} for {}",
            plan.profile, plan.platform.id
        )),
        action: Arc::new(Stage { plan, dir }),
    }
}

struct Stage {
    plan: StagePlan,
    dir: Utf8PathBuf,
}

fn failure(message: String) -> ActionFailure {
    ActionFailure {
        message,
        ..ActionFailure::default()
    }
}

impl Action for Stage {
    fn run(&self, context: &ActionContext<'_>) -> Result<ActionOutput, ActionFailure> {
        let tree = context.tree;
        let plan = &self.plan;
        let manifest_path =
            crate::stages::profile_dir(&plan.out, &plan.profile).join("bundle.json");
        let bytes = tree
            .read_file(manifest_path.as_str(), manifest::MAX_MANIFEST_BYTES as u64)
            .map_err(|err| failure(format!("reading {manifest_path}: {err}")))?
            .ok_or_else(|| failure(format!("{manifest_path} is missing")))?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| failure(format!("{manifest_path} is not UTF-8")))?;
        let mut manifest = manifest::Manifest::from_json(text)
            .map_err(|err| failure(format!("{manifest_path}: {err}")))?;
        let platform = manifest::PlatformKey::new(plan.platform.id.clone());
        // Assets first: one may be a service's binary (a build of `type = "none"`).
        let mut entries = Vec::new();
        for asset in &plan.assets {
            let fetched = crate::assets::fetched(tree, &plan.out, asset, &plan.platform.id)
                .map_err(failure)?;
            copy_tree(tree, &fetched.files, &self.dir).map_err(failure)?;
            entries.push(fetched.entry);
        }
        for service in &manifest.services {
            let Some(binary) = service.binaries.get(&platform) else {
                continue;
            };
            let to = self.dir.join(&binary.path);
            if service.kind == manifest::ServiceType::UiBundle {
                let from = plan.ui.get(&binary.path).ok_or_else(|| {
                    failure(format!(
                        "service {}: nothing builds its UI `{}` (the scenario has no ui/ directory)",
                        service.id, binary.path
                    ))
                })?;
                copy_tree(tree, from, &to).map_err(failure)?;
            } else if matches!(tree.lstat(to.as_str()), Ok(Some((Kind::File, _)))) {
                // An asset put it there: a binary, so executable.
                copy_file(tree, &to, &to, 0o755).map_err(failure)?;
            } else {
                let from = builds::build_dir(&plan.out).join(&binary.path);
                match tree.lstat(from.as_str()) {
                    Ok(Some((Kind::File, _))) => {}
                    _ => {
                        return Err(failure(format!(
                            "service {}: no binary was built for {} at {} (a scenario's API is built from api/go.mod or api/Cargo.toml; a resource's binary comes from an asset whose dest is {})",
                            service.id, plan.platform.id, binary.path, binary.path
                        )));
                    }
                }
                copy_file(tree, &from, &to, 0o755).map_err(failure)?;
            }
        }
        copy_file(
            tree,
            &plan.runtime,
            &self.dir.join(staged_runtime(&plan.platform)),
            0o755,
        )
        .map_err(failure)?;
        let bytes = if entries.is_empty() {
            bytes
        } else {
            // The assets belong to the app's own API (the first service when it has none).
            let api = format!("{}-api", manifest.app.name);
            let index = manifest
                .services
                .iter()
                .position(|service| service.id.as_str() == api)
                .unwrap_or(0);
            let Some(service) = manifest.services.get_mut(index) else {
                return Err(failure(format!(
                    "{manifest_path} has no service to carry assets"
                )));
            };
            service.assets.get_or_insert_with(Vec::new).extend(entries);
            manifest.to_json_pretty().into_bytes()
        };
        write_bytes(tree, &self.dir.join("bundle.json"), &bytes).map_err(failure)?;
        Ok(ActionOutput::default())
    }
}

fn io_error(path: &Utf8Path) -> impl Fn(std::io::Error) -> ConfineError + '_ {
    move |source| ConfineError::Io {
        path: path.to_string(),
        source,
    }
}

fn ensure_parent(tree: &Dir, to: &Utf8Path) -> Result<(), String> {
    if let Some(parent) = to.parent()
        && !parent.as_str().is_empty()
    {
        tree.create_dir_all(parent.as_str())
            .map_err(|err| format!("creating {parent}: {err}"))?;
    }
    Ok(())
}

/// Writes `bytes` to `to` (root-relative) through the confined tree: its directories made
/// without following a link, the file written beside it and renamed into place.
pub fn write_bytes(tree: &Dir, to: &Utf8Path, bytes: &[u8]) -> Result<(), String> {
    ensure_parent(tree, to)?;
    tree.write_file(to.as_str(), 0o644, |file: &mut std::fs::File| {
        use std::io::Write;
        file.write_all(bytes).map_err(io_error(to))
    })
    .map(|_| ())
    .map_err(|err| format!("writing {to}: {err}"))
}

/// Writes a new file at `to` (root-relative) like [`write_bytes`], with what `fill` writes
/// into it (streamed: a large archive never sits in memory); if `fill` fails, nothing is left.
pub fn write_with(
    tree: &Dir,
    to: &Utf8Path,
    mode: u32,
    fill: impl FnOnce(&mut std::fs::File) -> Result<(), String>,
) -> Result<(), String> {
    ensure_parent(tree, to)?;
    let mut problem = None;
    let written = tree.write_file(to.as_str(), mode, |file: &mut std::fs::File| {
        fill(file).map_err(|message| {
            problem = Some(message);
            ConfineError::Io {
                path: to.to_string(),
                source: std::io::Error::other("the writer failed"),
            }
        })
    });
    match (written, problem) {
        (_, Some(problem)) => Err(problem),
        (Ok(_), None) => Ok(()),
        (Err(err), None) => Err(format!("writing {to}: {err}")),
    }
}

/// Writes what `source` holds to `to` (root-relative) like [`write_bytes`], as a reflink where
/// the file system allows it (staging and builds then share the blocks they copy).
pub fn write_from(
    tree: &Dir,
    source: &mut std::fs::File,
    to: &Utf8Path,
    mode: u32,
) -> Result<(), String> {
    ensure_parent(tree, to)?;
    tree.write_file(to.as_str(), mode, |file: &mut std::fs::File| {
        engine::fsutil::clone_or_copy(file, source)
            .map(|_| ())
            .map_err(io_error(to))
    })
    .map(|_| ())
    .map_err(|err| format!("writing {to}: {err}"))
}

/// Copies the regular file `from` to `to` (both root-relative), never through a link.
pub fn copy_file(tree: &Dir, from: &Utf8Path, to: &Utf8Path, mode: u32) -> Result<(), String> {
    let (mut source, _) = tree
        .open_file(from.as_str())
        .map_err(|err| format!("reading {from}: {err}"))?
        .ok_or_else(|| format!("{from} is missing"))?;
    write_from(tree, &mut source, to, mode)
}

/// An entry of a tree read by [`regular_tree`].
pub struct TreeEntry {
    /// Below the tree's directory, `/`-separated.
    pub path: String,
    pub dir: bool,
    pub executable: bool,
    /// A file's size when it was listed (0 for a directory).
    pub size: u64,
}

/// Every directory and regular file below `from` (root-relative), sorted by path, read through
/// the confined tree; a link or a special file is an error naming it, and so is an empty tree.
pub fn regular_tree(tree: &Dir, from: &Utf8Path) -> Result<Vec<TreeEntry>, String> {
    let mut found = Vec::new();
    let mut problem: Option<String> = None;
    let prefix = format!("{from}/");
    tree.walk(from.as_str(), &mut |entry| -> Result<Walk, ConfineError> {
        let relative = String::from_utf8_lossy(entry.relative).into_owned();
        let path = relative
            .strip_prefix(&prefix)
            .unwrap_or(&relative)
            .to_string();
        match entry.kind {
            Kind::Dir => {
                found.push(TreeEntry {
                    path,
                    dir: true,
                    executable: true,
                    size: 0,
                });
                Ok(Walk::Enter)
            }
            Kind::File => {
                let stat = entry.stat().ok();
                found.push(TreeEntry {
                    path,
                    dir: false,
                    executable: stat.is_some_and(|s| s.executable),
                    size: stat.map_or(0, |s| s.size),
                });
                Ok(Walk::Skip)
            }
            Kind::Symlink | Kind::Other => {
                problem.get_or_insert(format!(
                    "{relative} is a link or a special file: a bundle holds regular files only"
                ));
                Ok(Walk::Skip)
            }
        }
    })
    .map_err(|err| format!("reading {from}: {err}"))?;
    if let Some(problem) = problem {
        return Err(problem);
    }
    if !found.iter().any(|entry| !entry.dir) {
        return Err(format!("{from} holds no file (was it built?)"));
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// Copies every file below `from` to the same place below `to`; a link or a special file in
/// it is an error naming it.
fn copy_tree(tree: &Dir, from: &Utf8Path, to: &Utf8Path) -> Result<(), String> {
    for entry in regular_tree(tree, from)? {
        if !entry.dir {
            let mode = if entry.executable { 0o755 } else { 0o644 };
            copy_file(tree, &from.join(&entry.path), &to.join(&entry.path), mode)?;
        }
    }
    Ok(())
}
