//! The Electron wrapper (the seed's "bundled app") and the thin client (the seed's
//! `generate/quick`): generated TypeScript projects, and the tasks that write and package them.
//!
//! | task | writes | from |
//! |---|---|---|
//! | `electron:<profile>` | `<out>/<profile>/electron/` (the wrapper project) | the assembled bundle.json's `app`, the profile's installer and publish settings, its platforms |
//! | `package:<profile>@<platform>:electron` ([`builder`], only with `electron-dist`) | `<out>/<profile>/packages/electron-<platform>/` | electron-builder run offline on the project, the platform's stage and the Electron distribution |
//! | `thin:<profile>` ([`thin`]) | `<out>/<profile>/thin/` (the thin project) and a thin payload per platform, `<out>/<profile>/thin/stage/<platform>/` | the same, and the deployed URL |
//! | `package:<profile>-thin@<platform>:<format>` | `<out>/<profile>/thin/packages/<profile>-thin-<platform>.<format>` | the package writers ([`crate::package`]) on the thin payload |
//!
//! The project (`package.json`, `tsconfig.json`, `app.json`, `README.md`, `src/`): a main process
//! (`src/main.ts`) that starts the bundle's runtime for its platform, asks for missing
//! `user_prompt` secrets in a first-run window (`src/prompt.html`, `src/prompt.ts`, through the
//! preload bridge `src/preload.ts`), waits for `/readyz` and loads the UI; the runtime logic
//! with no Electron import (`src/runtime.ts`, unit-tested under Node against a stub runtime).
//! Windows run with `contextIsolation`, without Node integration, sandboxed; one instance at a
//! time; quitting stops the runtime. `package.json` pins electron, electron-builder and
//! typescript, and holds electron-builder's `build` configuration: per system (`linux`, `win`,
//! `mac`) the platform's stage directory as `extraResources` (`from: ../stage/<platform>`,
//! `to: bundle`, so the app finds it at `process.resourcesPath/bundle`), its targets and
//! architectures, and `publish` (electron-updater's `generic` provider at
//! `[profiles.NAME.publish] url`, else `null`).
//!
//! **Invariant (reproducible):** the project is a pure function of the task's parameters and the
//! assembled `app` block: templates embedded in the binary (`include_str!`), JSON written by
//! serde_json with sorted keys, no timestamps and no absolute paths, so two clean runs and two
//! checkouts at different paths give the same bytes. The project lists every platform of the
//! profile, whether or not this machine can stage it.
//!
//! **Invariant (offline):** nothing here needs the network or Electron; only the
//! `electron-dist` path runs electron-builder, and a missing electron-builder there is an error
//! naming the fix, never a silent skip.

pub mod builder;
pub mod thin;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use camino::{Utf8Path, Utf8PathBuf};
use engine::{Action, ActionContext, ActionFailure, ActionOutput, TaskId, TaskSpec};
use serde_json::{Value, json};

use crate::config::InstallerDecl;
use crate::package::Meta;
use crate::platform::Platform;

/// Bump when what the project generation writes changes for the same inputs (the templates'
/// own bytes are in the key already).
pub const ELECTRON_VERSION: u32 = 1;

/// The pinned tool versions of the generated project (`.ci/electron-types/package.json` pins the
/// same electron and typescript for the type-check test).
pub const ELECTRON: &str = "45.5.0";
pub const ELECTRON_BUILDER: &str = "26.17.0";
pub const TYPESCRIPT: &str = "7.0.2";

/// The project's source files: (path in the project, contents).
const TEMPLATES: &[(&str, &str)] = &[
    ("tsconfig.json", include_str!("templates/tsconfig.json")),
    ("src/main.ts", include_str!("templates/main.ts")),
    ("src/preload.ts", include_str!("templates/preload.ts")),
    ("src/runtime.ts", include_str!("templates/runtime.ts")),
    ("src/prompt.ts", include_str!("templates/prompt.ts")),
    ("src/prompt.html", include_str!("templates/prompt.html")),
    ("src/prompt.css", include_str!("templates/prompt.css")),
];

/// The generated files besides the templates.
const GENERATED: &[&str] = &["package.json", "app.json", "README.md"];

/// Where a PNG icon goes in the project (electron-builder's build resources).
const ICON: &str = "resources/icon.png";

pub fn electron_id(profile: &str) -> TaskId {
    TaskId::new(format!("electron:{profile}"))
}

/// Where a profile's Electron project lands (root-relative).
pub fn project_dir(out: &Utf8Path, profile: &str) -> Utf8PathBuf {
    out.join(profile).join("electron")
}

/// The files of a project (relative to its directory), for a task's declared outputs.
pub fn project_files(png_icon: bool) -> Vec<String> {
    let mut files: Vec<String> = TEMPLATES
        .iter()
        .map(|(path, _)| path.to_string())
        .chain(GENERATED.iter().map(|path| path.to_string()))
        .collect();
    if png_icon {
        files.push(ICON.to_string());
    }
    files.sort();
    files
}

/// A digest of the embedded templates: a task parameter, so editing one re-generates.
pub fn templates_digest() -> String {
    let mut text = String::new();
    for (path, contents) in TEMPLATES {
        text.push_str(&format!("{path}\n{}\n{contents}", contents.len()));
    }
    engine::digest::Digest::of_bytes(text.as_bytes()).to_hex()
}

/// What a project wraps.
#[derive(Debug, Clone)]
pub enum Mode {
    /// The bundle: each platform's stage, found at `<stage_base>/<platform id>` relative to the
    /// project directory.
    Bundled { stage_base: String },
    /// A deployed app at `url`: no runtime, no services.
    Thin { url: String },
}

/// Everything a project is made from.
#[derive(Debug, Clone)]
pub struct ProjectInput {
    pub meta: Meta,
    /// The profile's platforms (those Electron runs on get a block in the build configuration).
    pub platforms: Vec<Platform>,
    pub mode: Mode,
    /// `[profiles.NAME.publish] url`.
    pub publish: Option<String>,
}

/// electron-builder's name for a system, from a platform's `goos`.
pub fn builder_os(goos: &str) -> Option<&'static str> {
    match goos {
        "linux" => Some("linux"),
        "windows" => Some("win"),
        "darwin" => Some("mac"),
        _ => None,
    }
}

/// electron-builder's name for an architecture, from a platform's `goarch`.
pub fn builder_arch(goarch: &str) -> Option<&'static str> {
    match goarch {
        "amd64" => Some("x64"),
        "arm64" => Some("arm64"),
        "386" => Some("ia32"),
        "arm" => Some("armv7l"),
        _ => None,
    }
}

/// The installers electron-builder makes per system: the formats electron-updater updates from.
fn builder_targets(os: &str) -> &'static str {
    match os {
        "linux" => "AppImage",
        "win" => "nsis",
        _ => "zip",
    }
}

/// The `extraResources` of one system: its platforms' stages as `bundle`. One platform: its
/// directory; several: one pattern with electron-builder's `${arch}` macro, which needs their
/// ids to differ only in the architecture's name.
fn extra_resources(os: &str, platforms: &[(&Platform, &str)], base: &str) -> Result<Value, String> {
    let from = match platforms {
        [(platform, _)] => format!("{base}/{}", platform.id),
        [(first, arch), ..] => {
            let prefix = first.id.strip_suffix(arch).unwrap_or_default();
            let fits = !prefix.is_empty()
                && platforms
                    .iter()
                    .all(|(platform, arch)| platform.id == format!("{prefix}{arch}"));
            if !fits {
                let ids: Vec<&str> = platforms.iter().map(|(p, _)| p.id.as_str()).collect();
                return Err(format!(
                    "platforms {} all run on {os}: electron-builder tells their stages apart by the architecture alone (`${{arch}}`), so their ids must differ only in the architecture's Electron name (e.g. linux-x64 and linux-arm64)",
                    ids.join(", ")
                ));
            }
            format!("{base}/{prefix}${{arch}}")
        }
        [] => unreachable!("a system is listed for at least one platform"),
    };
    Ok(json!([{ "from": from, "to": "bundle", "filter": ["**/*"] }]))
}

/// The freedesktop.org main category (electron-builder's `linux.category`).
fn main_category(category: &str) -> String {
    category
        .split(';')
        .find(|c| !c.trim().is_empty())
        .unwrap_or("Utility")
        .trim()
        .to_string()
}

/// `package.json` with electron-builder's `build` configuration.
fn package_json(input: &ProjectInput) -> Result<(Value, Vec<String>), String> {
    let meta = &input.meta;
    let mut build = json!({
        "appId": meta.identifier,
        "productName": meta.display_name,
        "electronVersion": ELECTRON,
        "directories": { "output": "out", "buildResources": "resources" },
        "files": ["build/**/*.js", "src/prompt.html", "src/prompt.css", "app.json", "package.json"],
        "asar": true,
        "publish": match &input.publish {
            Some(url) => json!([{ "provider": "generic", "url": url }]),
            None => Value::Null,
        },
    });
    // Platforms the wrapper does not cover (README.md names them).
    let mut uncovered = Vec::new();
    let mut by_os: BTreeMap<&str, Vec<(&Platform, &str)>> = BTreeMap::new();
    for platform in &input.platforms {
        match (builder_os(&platform.goos), builder_arch(&platform.goarch)) {
            (Some(os), Some(arch)) => by_os.entry(os).or_default().push((platform, arch)),
            _ => uncovered.push(platform.id.clone()),
        }
    }
    for (os, platforms) in &by_os {
        let arches: BTreeSet<&str> = platforms.iter().map(|(_, arch)| *arch).collect();
        let mut block = json!({
            "target": [{ "target": builder_targets(os), "arch": arches }],
        });
        if let Mode::Bundled { stage_base, .. } = &input.mode {
            block["extraResources"] = extra_resources(os, platforms, stage_base)?;
        }
        match *os {
            "linux" => {
                block["category"] = json!(main_category(&meta.category));
                block["executableName"] = json!(meta.name);
                block["maintainer"] = json!(meta.maintainer);
            }
            "mac" => block["category"] = json!("public.app-category.utilities"),
            _ => {}
        }
        build[*os] = block;
    }
    if meta.icon.ext == "png" {
        build["icon"] = json!(ICON);
    }
    let package = json!({
        "name": meta.name,
        "version": meta.version,
        "productName": meta.display_name,
        "description": meta.description,
        "author": meta.maintainer,
        "license": meta.license,
        "private": true,
        "main": "build/main.js",
        "scripts": {
            "build": "tsc -p .",
            "typecheck": "tsc --noEmit -p .",
            "start": "tsc -p . && electron .",
            "dist": "tsc -p . && electron-builder --publish never",
        },
        "devDependencies": {
            "electron": ELECTRON,
            "electron-builder": ELECTRON_BUILDER,
            "typescript": TYPESCRIPT,
        },
        "build": build,
    });
    Ok((package, uncovered))
}

fn pretty(value: &Value) -> Vec<u8> {
    let mut text = serde_json::to_string_pretty(value).expect("JSON values serialize");
    text.push('\n');
    text.into_bytes()
}

fn readme(input: &ProjectInput, uncovered: &[String]) -> String {
    let meta = &input.meta;
    let mut text = format!(
        "# {} (Electron)\n\nGenerated by xbundle: regenerated on every build, so change bundle.toml, not these files.\n\n",
        meta.display_name
    );
    match &input.mode {
        Mode::Bundled { stage_base } => {
            text.push_str(&format!(
                "The app starts the bundle's runtime (`resources/bundle/runtime/xbundle-runtime`), asks for the secrets the user provides on the first run, and shows the UI once every service is ready. Quitting stops the runtime.\n\n\
                 Each system's installer carries its platform's stage (`{stage_base}/<platform>/`) as `resources/bundle`:\n\n"
            ));
            for platform in &input.platforms {
                if let (Some(os), Some(arch)) =
                    (builder_os(&platform.goos), builder_arch(&platform.goarch))
                {
                    text.push_str(&format!(
                        "- {}: `{os}` ({arch}), from `{stage_base}/{}/`\n",
                        platform.id, platform.id
                    ));
                }
            }
            if !uncovered.is_empty() {
                text.push_str(&format!(
                    "\nNot covered (Electron does not run there): {}.\n",
                    uncovered.join(", ")
                ));
            }
            text.push_str(
                "\nDevelopment: `npm ci`, then `XBUNDLE_BUNDLE_DIR=../stage/<platform> npm start`.\n",
            );
        }
        Mode::Thin { url } => {
            text.push_str(&format!(
                "The thin client: a window on the deployed app at {url}, with no runtime and no services.\n\nDevelopment: `npm ci`, then `npm start`.\n"
            ));
            if !uncovered.is_empty() {
                text.push_str(&format!(
                    "\nNot covered (Electron does not run there): {}.\n",
                    uncovered.join(", ")
                ));
            }
        }
    }
    text.push_str(&format!(
        "\nInstallers: `npm run dist` (electron-builder {ELECTRON_BUILDER}; offline only with `electronDist` set and its tools in its cache). Type check: `npm run typecheck`.\n"
    ));
    text
}

/// Every file of the project, sorted by path: (path in the project, bytes).
pub fn project(input: &ProjectInput) -> Result<Vec<(String, Vec<u8>)>, String> {
    let (package, uncovered) = package_json(input)?;
    let app = match &input.mode {
        Mode::Bundled { .. } => json!({
            "mode": "bundled",
            "productName": input.meta.display_name,
            "url": null,
        }),
        Mode::Thin { url } => json!({
            "mode": "thin",
            "productName": input.meta.display_name,
            "url": url,
        }),
    };
    let mut files: Vec<(String, Vec<u8>)> = TEMPLATES
        .iter()
        .map(|(path, contents)| (path.to_string(), contents.as_bytes().to_vec()))
        .collect();
    files.push(("package.json".into(), pretty(&package)));
    files.push(("app.json".into(), pretty(&app)));
    files.push(("README.md".into(), readme(input, &uncovered).into_bytes()));
    if input.meta.icon.ext == "png" {
        files.push((ICON.into(), input.meta.icon.bytes.clone()));
    }
    files.sort();
    Ok(files)
}

/// Writes `files` below `dir` (root-relative) through the confined tree.
pub fn write_files(
    tree: &engine::confine::Dir,
    dir: &Utf8Path,
    files: &[(String, Vec<u8>)],
) -> Result<(), String> {
    for (path, bytes) in files {
        crate::stage::write_bytes(tree, &dir.join(path), bytes)?;
    }
    Ok(())
}

fn failure(message: String) -> ActionFailure {
    ActionFailure {
        message,
        ..ActionFailure::default()
    }
}

/// The app as the assembled bundle.json and the profile's installer settings describe it.
pub fn assembled_meta(
    tree: &engine::confine::Dir,
    out: &Utf8Path,
    profile: &str,
    installer: &InstallerDecl,
) -> Result<Meta, String> {
    Meta::resolve(
        tree,
        &crate::stages::profile_dir(out, profile),
        installer,
        crate::package::DEFAULT_EPOCH,
    )
}

/// The platforms as a task parameter.
pub fn platforms_param(platforms: &[Platform]) -> String {
    let list: Vec<(&str, &str, &str)> = platforms
        .iter()
        .map(|p| (p.id.as_str(), p.goos.as_str(), p.goarch.as_str()))
        .collect();
    serde_json::to_string(&list).expect("lists serialize")
}

/// One `electron:<profile>` task's inputs.
#[derive(Debug, Clone)]
pub struct ElectronPlan {
    pub profile: String,
    pub out: Utf8PathBuf,
    /// Every platform of the profile.
    pub platforms: Vec<Platform>,
    pub installer: InstallerDecl,
    pub publish: Option<String>,
}

pub fn spec(plan: ElectronPlan) -> TaskSpec {
    let dir = project_dir(&plan.out, &plan.profile);
    let png = plan
        .installer
        .icon
        .as_deref()
        .is_some_and(|icon| icon.ends_with(".png"));
    let mut params = BTreeMap::new();
    params.insert("profile".into(), plan.profile.clone());
    params.insert("platforms".into(), platforms_param(&plan.platforms));
    params.insert(
        "installer".into(),
        serde_json::to_string(&plan.installer).unwrap_or_default(),
    );
    params.insert("publish".into(), plan.publish.clone().unwrap_or_default());
    params.insert("templates".into(), templates_digest());
    params.insert(
        "versions".into(),
        format!(
            "electron {ELECTRON}, electron-builder {ELECTRON_BUILDER}, typescript {TYPESCRIPT}"
        ),
    );
    TaskSpec {
        id: electron_id(&plan.profile),
        kind: "electron".into(),
        impl_version: ELECTRON_VERSION,
        params,
        cwd: String::new(),
        inputs: plan.installer.icon.iter().cloned().collect(),
        outputs: project_files(png)
            .iter()
            .map(|file| dir.join(file).to_string())
            .collect(),
        env: Vec::new(),
        tools: BTreeMap::new(),
        deps: vec![crate::stages::assemble_id(&plan.profile)],
        description: Some(format!(
            "Generate the Electron project of profile {}",
            plan.profile
        )),
        action: Arc::new(Electron { plan, dir }),
    }
}

struct Electron {
    plan: ElectronPlan,
    dir: Utf8PathBuf,
}

impl Action for Electron {
    fn run(&self, context: &ActionContext<'_>) -> Result<ActionOutput, ActionFailure> {
        let plan = &self.plan;
        let meta = assembled_meta(context.tree, &plan.out, &plan.profile, &plan.installer)
            .map_err(failure)?;
        let files = project(&ProjectInput {
            meta,
            platforms: plan.platforms.clone(),
            mode: Mode::Bundled {
                stage_base: "../stage".into(),
            },
            publish: plan.publish.clone(),
        })
        .map_err(|err| failure(format!("profile {}: {err}", plan.profile)))?;
        write_files(context.tree, &self.dir, &files).map_err(failure)?;
        Ok(ActionOutput::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(id: &str, goos: &str, goarch: &str) -> Platform {
        Platform::for_test(id, goos, goarch)
    }

    fn meta() -> Meta {
        Meta {
            name: "notes-app".into(),
            display_name: "Notes".into(),
            version: "1.2.0".into(),
            description: "Notes".into(),
            maintainer: "N <n@example.org>".into(),
            vendor: "N".into(),
            homepage: None,
            license: "MIT".into(),
            category: "Office;Utility;".into(),
            identifier: "org.example.notes".into(),
            depends: Vec::new(),
            requires: Vec::new(),
            upgrade_code: String::new(),
            icon: crate::package::Icon {
                bytes: b"<svg/>".to_vec(),
                ext: "svg",
                size: None,
            },
            epoch: 0,
        }
    }

    fn bundled(platforms: Vec<Platform>) -> ProjectInput {
        ProjectInput {
            meta: meta(),
            platforms,
            mode: Mode::Bundled {
                stage_base: "../stage".into(),
            },
            publish: None,
        }
    }

    fn package(files: &[(String, Vec<u8>)]) -> Value {
        let (_, bytes) = files.iter().find(|(p, _)| p == "package.json").unwrap();
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn several_platforms_of_one_system_share_an_arch_pattern() {
        let files = project(&bundled(vec![
            platform("linux-x64", "linux", "amd64"),
            platform("linux-arm64", "linux", "arm64"),
            platform("win-x64", "windows", "amd64"),
        ]))
        .unwrap();
        let package = package(&files);
        assert_eq!(
            package["build"]["linux"]["extraResources"][0]["from"],
            "../stage/linux-${arch}"
        );
        assert_eq!(
            package["build"]["linux"]["target"][0]["arch"],
            json!(["arm64", "x64"])
        );
        assert_eq!(
            package["build"]["win"]["extraResources"][0]["from"],
            "../stage/win-x64"
        );
        assert_eq!(package["build"]["linux"]["category"], "Office");
        assert!(package["build"].get("mac").is_none());
        assert_eq!(package["build"]["publish"], Value::Null);
    }

    #[test]
    fn platforms_an_arch_cannot_tell_apart_are_refused_by_name() {
        let err = project(&bundled(vec![
            platform("desktop", "linux", "amd64"),
            platform("pi", "linux", "arm64"),
        ]))
        .unwrap_err();
        assert!(
            err.contains("desktop, pi") && err.contains("${arch}"),
            "{err}"
        );
    }

    #[test]
    fn systems_electron_does_not_run_on_are_named_in_the_readme() {
        let files = project(&bundled(vec![
            platform("linux-x64", "linux", "amd64"),
            platform("bsd-x64", "freebsd", "amd64"),
        ]))
        .unwrap();
        let (_, readme) = files.iter().find(|(p, _)| p == "README.md").unwrap();
        let readme = String::from_utf8(readme.clone()).unwrap();
        assert!(
            readme.contains("Not covered (Electron does not run there): bsd-x64."),
            "{readme}"
        );
    }

    #[test]
    fn declared_outputs_are_exactly_the_files_written() {
        let files = project(&bundled(vec![platform("linux-x64", "linux", "amd64")])).unwrap();
        let written: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(written, project_files(false));
        let mut with_png = bundled(vec![platform("linux-x64", "linux", "amd64")]);
        with_png.meta.icon.ext = "png";
        let written: Vec<String> = project(&with_png)
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(written, project_files(true));
    }

    #[test]
    fn pinned_versions_match_the_ci_type_check_tools() {
        let pinned: Value =
            serde_json::from_str(include_str!("../../../../.ci/electron-types/package.json"))
                .unwrap();
        assert_eq!(pinned["devDependencies"]["electron"], ELECTRON);
        assert_eq!(pinned["devDependencies"]["typescript"], TYPESCRIPT);
    }
}
