//! `package:<profile>@<platform>:electron`: electron-builder run offline on the generated
//! project, for profiles that name an Electron distribution (`electron-dist = "path"`, a
//! directory inside the repository holding Electron for the platform).
//!
//! The task copies the project into a private directory, compiles it with the repository's
//! TypeScript, and runs the repository's electron-builder
//! (`node_modules/.bin/{tsc,electron-builder}`, installed once with `npm install --save-dev`)
//! with a configuration file derived from the project's `build`: `electronDist` the
//! distribution (absolute), `electronVersion` its `version` file (else the pinned version), the
//! platform's stage (absolute) as `extraResources` → `bundle`, the output in the private
//! directory, `--publish never`. The files electron-builder wrote at the top of its output
//! (installers, `latest*.yml`, block maps) are copied to
//! `<out>/<profile>/packages/electron-<platform>/`.
//!
//! Nothing is downloaded by xbundle. electron-builder itself needs no network with
//! `electronDist` set for `zip` targets; AppImage and NSIS need their tools in its cache
//! (`ELECTRON_BUILDER_CACHE`). **Invariant:** a missing electron-builder or TypeScript is a
//! task failure naming what to install, never a silent skip.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use camino::{Utf8Path, Utf8PathBuf};
use engine::{Action, ActionContext, ActionFailure, ActionOutput, TaskId, TaskSpec};
use serde_json::{Value, json};

use super::{ELECTRON, ELECTRON_BUILDER, TYPESCRIPT, builder_arch, builder_os, failure};
use crate::platform::Platform;
use crate::tool::Cmd;

/// Bump when what this task produces changes for the same inputs.
pub const BUILDER_VERSION: u32 = 1;

/// Where the repository's tools are looked for (root-relative).
pub const ELECTRON_BUILDER_BIN: &str = "node_modules/.bin/electron-builder";
pub const TSC_BIN: &str = "node_modules/.bin/tsc";

pub fn package_id(profile: &str, platform: &str) -> TaskId {
    crate::package::package_id(profile, platform, "electron")
}

/// Where electron-builder's artifacts land (root-relative).
pub fn output_dir(out: &Utf8Path, profile: &str, platform: &str) -> Utf8PathBuf {
    out.join(profile)
        .join("packages")
        .join(format!("electron-{platform}"))
}

/// What to run to install the tools (for messages).
pub fn install_hint() -> String {
    format!(
        "ELECTRON_SKIP_BINARY_DOWNLOAD=1 npm install --save-dev electron-builder@{ELECTRON_BUILDER} typescript@{TYPESCRIPT} electron@{ELECTRON}"
    )
}

/// A tool's identity for the key without running it: its resolved path, size, times and inode.
fn identity(root: &Utf8Path, relative: &str) -> String {
    use std::os::unix::fs::MetadataExt;
    let path = root.join(relative);
    let resolved =
        std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone().into_std_path_buf());
    match std::fs::metadata(&resolved) {
        Ok(m) => format!(
            "{}:{}:{}.{}:{}",
            resolved.display(),
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.ino()
        ),
        Err(_) => "absent".into(),
    }
}

/// One electron-builder task's inputs.
#[derive(Debug, Clone)]
pub struct BuilderPlan {
    pub profile: String,
    pub platform: Platform,
    pub out: Utf8PathBuf,
    /// The Electron distribution (root-relative).
    pub dist: String,
    pub stage: TaskId,
}

pub fn spec(root: &Utf8Path, plan: BuilderPlan) -> TaskSpec {
    let output = output_dir(&plan.out, &plan.profile, &plan.platform.id);
    let mut params = BTreeMap::new();
    params.insert("profile".into(), plan.profile.clone());
    params.insert("platform".into(), plan.platform.id.clone());
    params.insert("dist".into(), plan.dist.clone());
    let mut tools = BTreeMap::new();
    tools.insert(
        "electron-builder".to_string(),
        identity(root, ELECTRON_BUILDER_BIN),
    );
    tools.insert("tsc".to_string(), identity(root, TSC_BIN));
    TaskSpec {
        id: package_id(&plan.profile, &plan.platform.id),
        kind: "package-electron".into(),
        impl_version: BUILDER_VERSION,
        params,
        cwd: String::new(),
        inputs: vec![format!("{}/**", plan.dist)],
        outputs: vec![format!("{output}/*")],
        env: vec!["ELECTRON_BUILDER_CACHE".into()],
        tools,
        deps: vec![super::electron_id(&plan.profile), plan.stage.clone()],
        description: Some(format!(
            "Package the Electron app of {} for {} with electron-builder",
            plan.profile, plan.platform.id
        )),
        action: Arc::new(Builder { plan, output }),
    }
}

struct Builder {
    plan: BuilderPlan,
    output: Utf8PathBuf,
}

/// Copies a tree read through the confined tree into a private directory.
fn copy_out(context: &ActionContext<'_>, from: &Utf8Path, to: &Path) -> Result<(), String> {
    for entry in crate::stage::regular_tree(context.tree, from)? {
        let target = to.join(&entry.path);
        if entry.dir {
            std::fs::create_dir_all(&target)
                .map_err(|err| format!("creating {}: {err}", target.display()))?;
            continue;
        }
        let bytes = context
            .tree
            .read_file(from.join(&entry.path).as_str(), 256 << 20)
            .map_err(|err| format!("reading {from}/{}: {err}", entry.path))?
            .ok_or_else(|| format!("{from}/{} disappeared", entry.path))?;
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|err| format!("creating {}: {err}", parent.display()))?;
        }
        std::fs::write(&target, bytes)
            .map_err(|err| format!("writing {}: {err}", target.display()))?;
    }
    Ok(())
}

/// electron-builder's configuration for one platform: the project's `build`, with absolute
/// paths into this machine.
pub fn builder_config(
    project: &Value,
    os: &str,
    dist: &Path,
    electron_version: &str,
    stage: &Path,
    output: &Path,
) -> Value {
    let mut build = project["build"].clone();
    build["electronDist"] = json!(dist.display().to_string());
    build["electronVersion"] = json!(electron_version);
    build["directories"]["output"] = json!(output.display().to_string());
    build[os]["extraResources"] =
        json!([{ "from": stage.display().to_string(), "to": "bundle", "filter": ["**/*"] }]);
    build
}

impl Action for Builder {
    fn run(&self, context: &ActionContext<'_>) -> Result<ActionOutput, ActionFailure> {
        let plan = &self.plan;
        let root = context.root;
        let builder = root.join(ELECTRON_BUILDER_BIN);
        let tsc = root.join(TSC_BIN);
        for (tool, path) in [("electron-builder", &builder), ("TypeScript", &tsc)] {
            if !path.is_file() {
                return Err(failure(format!(
                    "profile {profile} sets electron-dist, so electron-builder packages its Electron app, but {tool} is not installed in this repository ({missing} is missing): run `{hint}` at the repository root (once, online), or remove electron-dist from [profiles.{profile}] to ship the native formats only",
                    profile = plan.profile,
                    missing = path.strip_prefix(root).unwrap_or(path).display(),
                    hint = install_hint(),
                )));
            }
        }
        let (Some(os), Some(arch)) = (
            builder_os(&plan.platform.goos),
            builder_arch(&plan.platform.goarch),
        ) else {
            return Err(failure(format!(
                "Electron does not run on {} ({}/{})",
                plan.platform.id, plan.platform.goos, plan.platform.goarch
            )));
        };
        match context.tree.lstat(&plan.dist) {
            Ok(Some((engine::confine::Kind::Dir, _))) => {}
            Ok(_) => {
                return Err(failure(format!(
                    "electron-dist `{}` is not a directory: point it at an unpacked Electron {ELECTRON} for {}",
                    plan.dist, plan.platform.id
                )));
            }
            Err(err) => return Err(failure(format!("electron-dist `{}`: {err}", plan.dist))),
        }
        let electron_version = context
            .tree
            .read_file(&format!("{}/version", plan.dist), 64)
            .ok()
            .flatten()
            .map(|bytes| {
                String::from_utf8_lossy(&bytes)
                    .trim()
                    .trim_start_matches('v')
                    .to_string()
            })
            .filter(|version| !version.is_empty())
            .unwrap_or_else(|| ELECTRON.to_string());

        let scratch = crate::builds::scratch_dir().map_err(failure)?;
        let app = scratch.path().join("app");
        let out = scratch.path().join("out");
        copy_out(context, &super::project_dir(&plan.out, &plan.profile), &app).map_err(failure)?;
        std::os::unix::fs::symlink(root.join("node_modules"), app.join("node_modules"))
            .map_err(|err| failure(format!("linking node_modules: {err}")))?;
        let project: Value = serde_json::from_slice(
            &std::fs::read(app.join("package.json"))
                .map_err(|err| failure(format!("reading the project's package.json: {err}")))?,
        )
        .map_err(|err| failure(format!("reading the project's package.json: {err}")))?;
        let config = builder_config(
            &project,
            os,
            &root.join(&plan.dist),
            &electron_version,
            &root.join(crate::stage::stage_dir(
                &plan.out,
                &plan.profile,
                &plan.platform.id,
            )),
            &out,
        );
        let config_file = scratch.path().join("electron-builder.json");
        std::fs::write(
            &config_file,
            serde_json::to_vec_pretty(&config).expect("JSON values serialize"),
        )
        .map_err(|err| failure(format!("writing {}: {err}", config_file.display())))?;

        Cmd::new(&tsc)
            .args(["-p".as_ref(), app.as_os_str()])
            .cwd(&app)
            .run_in(context)?;
        Cmd::new(&builder)
            .arg("--projectDir")
            .arg(&app)
            .arg("--config")
            .arg(&config_file)
            .arg(format!("--{os}"))
            .arg(format!("--{arch}"))
            .args(["--publish", "never"])
            .env("ELECTRON_SKIP_BINARY_DOWNLOAD", "1")
            .env("CSC_IDENTITY_AUTO_DISCOVERY", "false")
            .cwd(&app)
            .run_in(context)?;

        let mut artifacts: Vec<PathBuf> = std::fs::read_dir(&out)
            .map_err(|err| {
                crate::tool::failure(format!(
                    "electron-builder wrote no output directory ({err})"
                ))
            })?
            .filter_map(Result::ok)
            .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
            .map(|entry| entry.path())
            .collect();
        artifacts.sort();
        if artifacts.is_empty() {
            return Err(crate::tool::failure(
                "electron-builder produced no installer",
            ));
        }
        for artifact in artifacts {
            let name = artifact
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| !n.starts_with('.'))
                .ok_or_else(|| {
                    crate::tool::failure(format!(
                        "electron-builder wrote an odd file name: {}",
                        artifact.display()
                    ))
                })?
                .to_string();
            let mut file = std::fs::File::open(&artifact)
                .map_err(|err| failure(format!("reading {}: {err}", artifact.display())))?;
            crate::stage::write_from(context.tree, &mut file, &self.output.join(name), 0o644)
                .map_err(failure)?;
        }
        Ok(ActionOutput::default())
    }
}
