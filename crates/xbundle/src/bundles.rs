//! Planning a profile's bundles: which builds each platform's stage needs, from the layout of
//! the profile's scenarios (their `api/` and `ui/` directories) and the toolchains found here.
//!
//! Planning reads definitions (which scenarios a profile ships: the profile's scenario and the
//! scenarios it requires, transitively) and looks at the layout; it runs no build and no
//! analysis. Tool identities come from [`crate::toolchain`]'s cached probes.
//!
//! Each platform of a profile either gets a `stage:<profile>@<platform>` task, or is
//! *unbuildable here* with every reason and its fix ([`PlatformPlan::missing`]): `bundle`
//! reports it in its summary, never fails on it, never skips it silently. A staged platform's
//! package that needs a tool missing here (the msi, Debian's `wixl`) is reported the same way,
//! and the platform's other tasks still run.
//!
//! A stageable platform gets a `package:` task per format, and the profile one
//! `publish:<profile>` after all of them ([`crate::publish`]), which `bundle` runs when it
//! builds every stageable platform (a `--platform` subset is a part of a release, not one).
//! The artifacts' epoch is read once, and only when a package task is planned; a bad
//! `SOURCE_DATE_EPOCH` is then a planning error ([`crate::package::epoch`]).

use std::collections::{BTreeMap, BTreeSet};

use camino::{Utf8Path, Utf8PathBuf};
use engine::{TaskId, TaskSpec};

use crate::analysis::Catalog;
use crate::builds::{self, ApiBuild, UiBuild, Unbuildable};
use crate::config::Profile;
use crate::diagnostic::Diagnostic;
use crate::service::ServiceKind;
use crate::stage::{self, StagePlan};
use crate::stages::Context;
use crate::toolchain::{Missing, Toolchains};

/// What one platform of a profile gets.
#[derive(Debug, Clone)]
pub struct PlatformPlan {
    pub platform: String,
    /// The tasks of this platform (builds and the stage), for `bundle --platform`; none when
    /// it cannot be staged here (nothing is built for a bundle that cannot be made).
    pub tasks: Vec<TaskId>,
    /// The stage task, when everything it needs can be built here.
    pub stage: Option<TaskId>,
    /// Why it cannot be staged here; with a stage, which of its packages cannot be made here
    /// (the msi without wixl) and why.
    pub missing: Vec<Unbuildable>,
    /// Where its stage lands (root-relative).
    pub dir: Utf8PathBuf,
    /// The fetch tasks of its assets: run by `bundle` even when the stage cannot be made here
    /// (a download does not depend on this machine's toolchains).
    pub fetches: Vec<TaskId>,
    /// Its artifacts (one per package task), for the release and `bundle`'s table.
    pub artifacts: Vec<crate::publish::Artifact>,
}

/// A profile's bundles.
#[derive(Debug, Clone)]
pub struct ProfilePlan {
    pub profile: String,
    /// Tasks every stageable platform shares (the UI build, the Electron project).
    pub shared: Vec<TaskId>,
    pub platforms: Vec<PlatformPlan>,
    /// The thin client's tasks (`[profiles.NAME.thin] url`, or `thin-client --url`), each
    /// with its platform (`None`: the thin project itself).
    pub thin: Vec<(Option<String>, TaskId)>,
    /// `publish:<profile>`, when any platform has an artifact, and the files it writes.
    pub publish: Option<TaskId>,
    pub release: Vec<Utf8PathBuf>,
}

impl ProfilePlan {
    /// The tasks that make the selected platforms' bundles (`names` empty: every platform):
    /// the profile's assembly, the shared builds, each platform's builds, stage, archives and
    /// fetches, and the release's files when every stageable platform is selected.
    pub fn targets(&self, names: &[String]) -> Vec<String> {
        let mut targets = vec![crate::stages::assemble_id(&self.profile).to_string()];
        targets.extend(self.shared.iter().map(ToString::to_string));
        for platform in self.selected(names) {
            targets.extend(platform.tasks.iter().map(ToString::to_string));
            targets.extend(platform.fetches.iter().map(ToString::to_string));
        }
        targets.extend(
            self.thin
                .iter()
                .filter(|(on, _)| {
                    on.as_ref()
                        .is_none_or(|p| names.is_empty() || names.contains(p))
                })
                .map(|(_, id)| id.to_string()),
        );
        if let Some(publish) = self.publishes(names) {
            targets.push(publish.to_string());
        }
        targets
    }

    /// `publish:<profile>` when `names` selects every platform that has artifacts.
    pub fn publishes(&self, names: &[String]) -> Option<&TaskId> {
        let all = self
            .platforms
            .iter()
            .filter(|p| !p.artifacts.is_empty())
            .all(|p| names.is_empty() || names.contains(&p.platform));
        self.publish.as_ref().filter(|_| all)
    }

    /// The platforms `names` selects (all of them when empty).
    pub fn selected<'a>(&'a self, names: &'a [String]) -> impl Iterator<Item = &'a PlatformPlan> {
        self.platforms
            .iter()
            .filter(move |p| names.is_empty() || names.contains(&p.platform))
    }
}

/// The scenarios a bundle of `scenario` ships: it and every scenario it requires,
/// transitively (a definition that cannot be read ends the walk there; assembly reports it).
pub fn shipped_scenarios(catalog: &Catalog, scenario: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut queue = vec![scenario.to_string()];
    while let Some(name) = queue.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Ok(Some(def)) = catalog.get(ServiceKind::Scenario, &name) {
            for (dep, how) in &def.scenarios {
                if how.required && crate::config::is_plain_name(dep) {
                    queue.push(dep.clone());
                }
            }
        }
    }
    seen.into_iter().collect()
}

/// The artifacts' epoch, read on first use (a plan without package tasks reads neither
/// `SOURCE_DATE_EPOCH` nor the last commit).
struct Epoch<'a> {
    root: &'a Utf8Path,
    value: Option<Result<u64, crate::package::epoch::BadEpoch>>,
}

impl Epoch<'_> {
    fn get(&mut self) -> Option<u64> {
        let root = self.root;
        self.value
            .get_or_insert_with(|| crate::package::epoch::source_date_epoch(root))
            .as_ref()
            .ok()
            .copied()
    }
}

/// The build, stage, package and publish tasks of every profile (shared builds once), and each
/// profile's plan; an error only for a bad `SOURCE_DATE_EPOCH`.
pub fn plan(
    context: &Context,
    tools: &Toolchains,
) -> Result<(Vec<TaskSpec>, Vec<ProfilePlan>), Diagnostic> {
    let catalog = Catalog::new(context.layout.clone());
    let mut specs: BTreeMap<TaskId, TaskSpec> = BTreeMap::new();
    let mut plans = Vec::new();
    let mut epoch = Epoch {
        root: &context.root,
        value: None,
    };
    for profile in &context.config.profiles {
        plans.push(plan_profile(
            context, tools, &catalog, profile, &mut epoch, &mut specs,
        ));
    }
    if let Some(Err(bad)) = epoch.value {
        return Err(Diagnostic::error(bad.to_string()).help(bad.help()));
    }
    Ok((specs.into_values().collect(), plans))
}

fn plan_profile(
    context: &Context,
    tools: &Toolchains,
    catalog: &Catalog,
    profile: &Profile,
    epoch: &mut Epoch<'_>,
    specs: &mut BTreeMap<TaskId, TaskSpec>,
) -> ProfilePlan {
    let root = &context.root;
    let out = &context.config.workspace.out;
    let scenario = profile.decl.scenario.get_ref().clone();
    let platforms =
        crate::assemble::profile_platforms(&context.config, profile, &context.platforms)
            .unwrap_or_default();
    let scenarios = shipped_scenarios(catalog, &scenario);
    let scenarios_dir = &context.layout.scenarios;
    let mut shared = Vec::new();
    let mut shared_missing: Vec<Unbuildable> = Vec::new();
    // The root scenario's UI: one build for every platform.
    let mut ui = BTreeMap::new();
    let mut static_ui = Vec::new();
    let ui_dir = scenarios_dir.join(&scenario).join("ui");
    let ui_service = format!("{scenario}-ui");
    let mut ui_dep = None;
    let definition = |name: &str| catalog.get(ServiceKind::Scenario, name).ok().flatten();
    let needs_ui = definition(&scenario).is_some_and(|def| def.ports.contains_key("ui"));
    match builds::detect_ui(root, &ui_dir) {
        Some(UiBuild::Npm) => match builds::npm_spec(tools, &ui_service, &ui_dir) {
            Ok(spec) => {
                ui.insert(format!("ui/{scenario}"), ui_dir.join("dist"));
                ui_dep = Some(spec.id.clone());
                shared.push(spec.id.clone());
                specs.insert(spec.id.clone(), spec);
            }
            Err(missing) => shared_missing.push(Unbuildable {
                what: format!("the UI of {scenario} (npm)"),
                platform: String::new(),
                missing,
            }),
        },
        Some(UiBuild::Static) => {
            ui.insert(format!("ui/{scenario}"), ui_dir.clone());
            static_ui.push(ui_dir.clone());
        }
        None if needs_ui => shared_missing.push(Unbuildable {
            what: format!("the UI of {scenario}"),
            platform: String::new(),
            missing: Missing {
                reason: match builds::entry_kind(root, &ui_dir) {
                    Ok(None) => format!("{ui_dir}/ does not exist"),
                    Ok(Some(engine::confine::Kind::Dir)) => {
                        format!("{ui_dir}/ holds nothing to ship")
                    }
                    Ok(Some(engine::confine::Kind::Symlink)) => format!(
                        "{ui_dir} is a symbolic link (xbundle never follows links in a repository)"
                    ),
                    Ok(Some(_)) => format!("{ui_dir} is not a directory"),
                    // A link on the way (never followed) or unreadable.
                    Err(err) => err,
                },
                fix: format!(
                    "add the UI's code in {ui_dir}/ (a package.json with a build script, or static files)"
                ),
            },
        }),
        None => {}
    }
    // How each shipped scenario's API is built, and whether its bundle runs one (a port
    // besides `ui`): the same on every platform.
    let apis: Vec<(String, ChosenBuild, bool)> = scenarios
        .iter()
        .map(|shipped| {
            let service = format!("{shipped}-api");
            let chosen = build_of(root, &scenarios_dir.join(shipped), profile, &service);
            let runs_api =
                definition(shipped).is_some_and(|def| def.ports.keys().any(|port| port != "ui"));
            (service, chosen, runs_api)
        })
        .collect();
    let profile_assets =
        crate::assets::profile_assets(&context.config, &profile.name, &context.platforms);
    let mut platform_plans = Vec::new();
    for platform in &platforms {
        let mut tasks = Vec::new();
        let mut missing: Vec<Unbuildable> = shared_missing
            .iter()
            .map(|m| Unbuildable {
                platform: platform.id.clone(),
                ..m.clone()
            })
            .collect();
        let mut deps = vec![crate::stages::assemble_id(&profile.name)];
        deps.extend(ui_dep.clone());
        for (service, chosen, runs_api) in &apis {
            let api_dir = &chosen.dir;
            let spec = match chosen.kind {
                Some(ApiBuild::Go) => builds::go_spec(
                    tools,
                    root,
                    out,
                    service,
                    api_dir,
                    chosen.package.as_deref().unwrap_or("."),
                    platform,
                    context.config.cache.executes_remotely("compile"),
                ),
                Some(ApiBuild::Rust) => builds::rust_spec(
                    tools,
                    root,
                    out,
                    service,
                    api_dir,
                    chosen.bin.as_deref(),
                    platform,
                    context.config.cache.executes_remotely("compile"),
                ),
                // `type = "none"`: an asset provides the binary.
                None if chosen.none => continue,
                // A scenario whose bundle runs an API (it declares a port besides `ui`) but
                // that holds no code to build.
                None if *runs_api => Err(Missing {
                    reason: format!("{api_dir}/ holds no go.mod or Cargo.toml"),
                    fix: format!(
                        "add the API's code in {api_dir}/ (a Go module or a Cargo package), or set its build in bundle.toml ([profiles.{}.builds.{service}])",
                        profile.name
                    ),
                }),
                None => continue,
            };
            match spec {
                Ok(spec) => match specs.get(&spec.id) {
                    // Two profiles building one service differently would make one task of
                    // two builds.
                    Some(other) if other.params != spec.params || other.inputs != spec.inputs => {
                        missing.push(Unbuildable {
                            what: format!("{service} ({api_dir})"),
                            platform: platform.id.clone(),
                            missing: Missing {
                                reason: format!(
                                    "another profile builds {service} differently ({})",
                                    spec.id
                                ),
                                fix: "give every profile that ships it the same [profiles.*.builds] settings".into(),
                            },
                        });
                    }
                    _ => {
                        tasks.push(spec.id.clone());
                        deps.push(spec.id.clone());
                        specs.insert(spec.id.clone(), spec);
                    }
                },
                Err(reason) => missing.push(Unbuildable {
                    what: format!("{service} ({})", api_dir),
                    platform: platform.id.clone(),
                    missing: reason,
                }),
            }
        }
        let (fetches, assets): (Vec<TaskId>, Vec<String>) = profile_assets
            .iter()
            .filter(|(_, on)| on == &platform.id)
            .map(|(asset, on)| (crate::assets::fetch_id(&asset.id, on), asset.id.clone()))
            .unzip();
        deps.extend(fetches.iter().cloned());
        let prebuilt = context
            .config
            .runtimes
            .iter()
            .any(|runtime| runtime.platform == platform.id);
        // A prebuilt runtime named for the platform is the user's choice for it.
        let runtime = if prebuilt {
            deps.push(crate::assets::runtime_fetch_id(&platform.id));
            tasks.push(crate::assets::runtime_fetch_id(&platform.id));
            Some(crate::assets::runtime_file(
                out,
                &platform.id,
                &platform.exe_suffix,
            ))
        } else {
            match builds::runtime_spec(
                tools,
                root,
                out,
                platform,
                context.config.cache.executes_remotely("compile"),
            ) {
                Ok(spec) => {
                    let path = builds::runtime_path(out, platform);
                    tasks.push(spec.id.clone());
                    deps.push(spec.id.clone());
                    specs.insert(spec.id.clone(), spec);
                    Some(path)
                }
                Err(reason) => {
                    missing.push(Unbuildable {
                        what: "the runtime".into(),
                        platform: platform.id.clone(),
                        missing: reason,
                    });
                    None
                }
            }
        };
        let dir = stage::stage_dir(out, &profile.name, &platform.id);
        let mut artifacts = Vec::new();
        let stage = match runtime {
            Some(runtime) if missing.is_empty() => {
                let spec = stage::spec(StagePlan {
                    profile: profile.name.clone(),
                    platform: platform.clone(),
                    out: out.clone(),
                    ui: ui.clone(),
                    static_ui: static_ui.clone(),
                    runtime,
                    assets,
                    deps,
                });
                let id = spec.id.clone();
                tasks.push(id.clone());
                specs.insert(id.clone(), spec);
                for format in &crate::package::formats(profile, platform) {
                    // The msi needs wixl (its identity is part of the key); without it the
                    // msi is unbuildable here, and the rest of the platform is still made.
                    let wixl = if format == "msi" {
                        match tools.wixl() {
                            Ok(wixl) => Some(wixl),
                            Err(reason) => {
                                missing.push(Unbuildable {
                                    what: format!("the {format} installer"),
                                    platform: platform.id.clone(),
                                    missing: reason,
                                });
                                continue;
                            }
                        }
                    } else {
                        None
                    };
                    // A bad SOURCE_DATE_EPOCH fails the whole plan (see `plan`).
                    let Some(epoch) = epoch.get() else { break };
                    let sign = context.config.sign.get(format).cloned();
                    artifacts.push(crate::publish::Artifact::of(
                        out,
                        &profile.name,
                        platform,
                        format,
                        &context.config.sign,
                    ));
                    let mut package = crate::package::spec_with(
                        crate::package::PackagePlan {
                            profile: profile.name.clone(),
                            platform: platform.clone(),
                            format: format.clone(),
                            out: out.clone(),
                            stage_dir: stage::stage_dir(out, &profile.name, &platform.id),
                            stage: id.clone(),
                            installer: profile
                                .decl
                                .installer
                                .as_ref()
                                .map(|i| i.get_ref().clone())
                                .unwrap_or_default(),
                            epoch,
                            sign,
                            thin: false,
                        },
                        context.config.cache.executes_remotely("package"),
                    );
                    if let Some(wixl) = wixl {
                        package.tools.insert("wixl".to_string(), wixl.identity());
                    }
                    if let Some(template) = context.config.sign.get(format) {
                        // A signing script of the repository is an input: editing it signs
                        // again.
                        package
                            .inputs
                            .extend(crate::package::sign::repository_files(
                                root,
                                template,
                                &[out.as_str(), crate::config::STATE_DIR],
                            ));
                    }
                    tasks.push(package.id.clone());
                    specs.insert(package.id.clone(), package);
                }
                // `electron-dist`: electron-builder packages the Electron app too.
                if let Some(dist) = &profile.decl.electron_dist {
                    let builder = crate::electron::builder::spec(
                        root,
                        crate::electron::builder::BuilderPlan {
                            profile: profile.name.clone(),
                            platform: platform.clone(),
                            out: out.clone(),
                            dist: dist.get_ref().clone(),
                            stage: id.clone(),
                        },
                    );
                    tasks.push(builder.id.clone());
                    specs.insert(builder.id.clone(), builder);
                }
                Some(id)
            }
            _ => {
                tasks.clear();
                None
            }
        };
        platform_plans.push(PlatformPlan {
            platform: platform.id.clone(),
            tasks,
            stage,
            missing,
            dir,
            fetches,
            artifacts,
        });
    }
    if platform_plans.iter().all(|p| p.stage.is_none()) {
        shared.clear();
    } else {
        // The Electron wrapper of the profile's bundles (every platform: the project is the
        // same on any machine).
        let electron = crate::electron::spec(crate::electron::ElectronPlan {
            profile: profile.name.clone(),
            out: out.clone(),
            platforms: platforms.clone(),
            installer: profile
                .decl
                .installer
                .as_ref()
                .map(|i| i.get_ref().clone())
                .unwrap_or_default(),
            publish: profile
                .decl
                .publish
                .as_ref()
                .and_then(|p| p.get_ref().url.clone()),
        });
        shared.push(electron.id.clone());
        specs.insert(electron.id.clone(), electron);
    }
    // The thin client, when the profile names its URL (no build: every platform).
    let mut thin = Vec::new();
    if let Some(url) = profile
        .decl
        .thin
        .as_ref()
        .and_then(|t| t.get_ref().url.clone())
        // A bad SOURCE_DATE_EPOCH fails the whole plan (see `plan`).
        && let Some(epoch) = epoch.get()
    {
        let (thin_specs, ids) = crate::electron::thin::plan(
            profile,
            &platforms,
            out,
            &url,
            epoch,
            &context.config.sign,
        );
        thin = ids;
        for spec in thin_specs {
            specs.insert(spec.id.clone(), spec);
        }
    }
    // The release: every artifact of the stageable platforms, after all of them.
    let mut release = Vec::new();
    let publish = platform_plans
        .iter()
        .find(|p| !p.artifacts.is_empty())
        .and_then(|first| Some((first, first.stage.clone()?, epoch.get()?)))
        .map(|(first, stage, epoch)| {
            let spec = crate::publish::spec(crate::publish::PublishPlan {
                profile: profile.name.clone(),
                out: out.clone(),
                artifacts: platform_plans
                    .iter()
                    .flat_map(|p| p.artifacts.iter().cloned())
                    .collect(),
                manifest: first.dir.join("bundle.json"),
                stage,
                epoch,
            });
            let id = spec.id.clone();
            release = spec.outputs.iter().map(Utf8PathBuf::from).collect();
            specs.insert(id.clone(), spec);
            id
        });
    ProfilePlan {
        profile: profile.name.clone(),
        shared,
        platforms: platform_plans,
        thin,
        publish,
        release,
    }
}

/// How a service is built: its profile's `[profiles.*.builds.<service>]`, else its layout.
pub struct ChosenBuild {
    pub kind: Option<ApiBuild>,
    /// `type = "none"`: nothing builds it.
    pub none: bool,
    pub dir: Utf8PathBuf,
    pub package: Option<String>,
    pub bin: Option<String>,
}

pub fn build_of(
    root: &Utf8Path,
    scenario_dir: &Utf8Path,
    profile: &Profile,
    service: &str,
) -> ChosenBuild {
    let decl = profile
        .decl
        .builds
        .iter()
        .find(|(name, _)| name.get_ref() == service)
        .map(|(_, build)| build.get_ref().clone())
        .unwrap_or_default();
    let dir = decl
        .dir
        .as_deref()
        .map(Utf8PathBuf::from)
        .unwrap_or_else(|| scenario_dir.join("api"));
    let kind = match decl.kind.as_deref() {
        Some("go") => Some(ApiBuild::Go),
        Some("rust") => Some(ApiBuild::Rust),
        Some(_) => None,
        None => builds::detect_api(root, &dir),
    };
    ChosenBuild {
        kind,
        none: decl.kind.as_deref() == Some("none"),
        dir,
        package: decl.package,
        bin: decl.bin,
    }
}

/// A path for messages: root-relative, as the user sees it.
pub fn shown(path: &Utf8Path) -> String {
    format!("{path}/")
}
