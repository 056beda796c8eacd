//! The per-profile pipeline tasks: `secrets:<profile>` (the bundle's secret plan) and
//! `assemble:<profile>` (`bundle.json` and its checksum), under `<out>/<profile>/`.
//!
//! Their inputs are the definition files the assembly read and the platform files it used; the
//! profile's own settings enter the key as a parameter (not bundle.toml as a whole, so editing
//! one profile, or a task, leaves the other profiles' assemblies cached).

use std::collections::BTreeMap;
use std::sync::Arc;

use camino::{Utf8Path, Utf8PathBuf};
use engine::{Action, ActionContext, ActionFailure, ActionOutput, TaskId, TaskSpec};

use crate::analysis::{Catalog, Layout};
use crate::assemble::{Assembly, assemble, profile_fingerprint};
use crate::config::{self, BundleConfig};
use crate::diagnostic::Diagnostic;
use crate::platform::{self, Platform};

/// Bump when assembly results change for the same inputs.
pub const ASSEMBLE_VERSION: u32 = 1;

pub fn secrets_id(profile: &str) -> TaskId {
    TaskId::new(format!("secrets:{profile}"))
}

pub fn assemble_id(profile: &str) -> TaskId {
    TaskId::new(format!("assemble:{profile}"))
}

/// Where a profile's outputs land.
pub fn profile_dir(out: &Utf8Path, profile: &str) -> Utf8PathBuf {
    out.join(profile)
}

/// `sha256sum` format: the digest, two spaces, the file name.
pub fn checksum_line(json: &str) -> String {
    format!(
        "{}  bundle.json\n",
        engine::Digest::of_bytes(json.as_bytes())
    )
}

/// Everything an assembly needs, loaded from the root.
pub struct Context {
    pub root: Utf8PathBuf,
    pub config: BundleConfig,
    pub platforms: Vec<Platform>,
    pub layout: Layout,
}

impl Context {
    pub fn load(root: &Utf8Path) -> Result<Context, Diagnostic> {
        let config = BundleConfig::load(
            &root.join(config::FILE_NAME),
            Utf8Path::new(config::FILE_NAME),
        )?;
        Context::new(root, config)
    }

    pub fn new(root: &Utf8Path, config: BundleConfig) -> Result<Context, Diagnostic> {
        let platforms = platform::load_all(root)?;
        let layout = Layout {
            root: root.to_path_buf(),
            scenarios: config.workspace.scenarios.clone(),
            resources: config.workspace.resources.clone(),
        };
        Ok(Context {
            root: root.to_path_buf(),
            config,
            platforms,
            layout,
        })
    }

    pub fn assemble(&self, catalog: &Catalog, profile: &str) -> Result<Assembly, Diagnostic> {
        let Some(profile) = self.config.profile(profile) else {
            let names: Vec<&str> = self
                .config
                .profiles
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            return Err(
                Diagnostic::error(format!("unknown profile `{profile}`")).help(format!(
                    "profiles in bundle.toml: {}",
                    if names.is_empty() {
                        "(none)".into()
                    } else {
                        names.join(", ")
                    }
                )),
            );
        };
        catalog.start_recording();
        assemble(catalog, &self.config, profile, &self.platforms)
    }
}

#[derive(Clone, Copy)]
enum Output {
    Secrets,
    Manifest,
}

struct ProfileAction {
    root: Utf8PathBuf,
    profile: String,
    output: Output,
}

fn failure(diagnostic: Diagnostic) -> ActionFailure {
    ActionFailure {
        message: match &diagnostic.help {
            Some(help) => format!("{diagnostic} (help: {help})"),
            None => diagnostic.to_string(),
        },
        ..ActionFailure::default()
    }
}

/// Writes `relative` (root-relative) atomically through the confined root: never through a
/// link, even one swapped in after the engine checked the outputs.
fn write(
    tree: &engine::confine::Dir,
    relative: &Utf8Path,
    text: &str,
) -> Result<(), ActionFailure> {
    tree.write_file(relative.as_str(), 0o644, |file: &mut std::fs::File| {
        use std::io::Write;
        file.write_all(text.as_bytes())
            .map_err(|source| engine::confine::ConfineError::Io {
                path: relative.to_string(),
                source,
            })
    })
    .map(|_| ())
    .map_err(|err| ActionFailure {
        message: format!("writing {relative}: {err}"),
        ..ActionFailure::default()
    })
}

impl Action for ProfileAction {
    fn run(&self, action: &ActionContext<'_>) -> Result<ActionOutput, ActionFailure> {
        let context = Context::load(&self.root).map_err(failure)?;
        let catalog = Catalog::new(context.layout.clone());
        let assembly = context.assemble(&catalog, &self.profile).map_err(failure)?;
        let dir = profile_dir(&context.config.workspace.out, &self.profile);
        match self.output {
            Output::Secrets => {
                let mut text =
                    serde_json::to_string_pretty(&assembly.plan).expect("plans serialize");
                text.push('\n');
                write(action.tree, &dir.join("secrets.json"), &text)?;
            }
            Output::Manifest => {
                write(action.tree, &dir.join("bundle.json"), &assembly.json)?;
                write(
                    action.tree,
                    &dir.join("bundle.json.sha256"),
                    &checksum_line(&assembly.json),
                )?;
            }
        }
        Ok(ActionOutput::default())
    }
}

/// Each profile's assembly as planning found it: valid, or why not (what `check` reports and
/// `bundle` refuses).
pub type ProfileResults = Vec<(String, Result<Assembly, Diagnostic>)>;

/// `secrets:<profile>` and `assemble:<profile>` for every profile, and each profile's assembly.
pub fn plan(context: &Context) -> (Vec<TaskSpec>, ProfileResults) {
    let catalog = Catalog::new(context.layout.clone());
    let mut specs = Vec::new();
    let mut results = Vec::new();
    for profile in &context.config.profiles {
        // Planning reads what the assembly reads (a failing one still records its reads; the
        // task then reports the error when it runs).
        let assembled = context.assemble(&catalog, &profile.name);
        let inputs = match &assembled {
            Ok(assembly) => assembly.files.clone(),
            Err(_) => {
                let mut files = catalog.recorded();
                files.extend(
                    context
                        .platforms
                        .iter()
                        .map(|p| format!("platforms/{}.toml", p.id)),
                );
                files.sort();
                files.dedup();
                files
            }
        };
        let dir = profile_dir(&context.config.workspace.out, &profile.name);
        let mut params = BTreeMap::new();
        params.insert("profile".to_string(), profile.name.clone());
        params.insert("settings".to_string(), profile_fingerprint(profile));
        params.insert(
            "implementation".to_string(),
            crate::IMPLEMENTATION.to_string(),
        );
        params.insert(
            "layout".to_string(),
            format!(
                "{}|{}|{}",
                context.layout.scenarios, context.layout.resources, context.config.workspace.out
            ),
        );
        let spec = |id: TaskId,
                    kind: &str,
                    output: Output,
                    outputs: Vec<String>,
                    deps: Vec<TaskId>,
                    description: String| TaskSpec {
            id,
            kind: kind.to_string(),
            impl_version: ASSEMBLE_VERSION,
            params: params.clone(),
            cwd: String::new(),
            inputs: inputs.clone(),
            outputs,
            env: Vec::new(),
            tools: BTreeMap::new(),
            deps,
            action: Arc::new(ProfileAction {
                root: context.root.clone(),
                profile: profile.name.clone(),
                output,
            }),
            description: Some(description),
        };
        specs.push(spec(
            secrets_id(&profile.name),
            "secrets",
            Output::Secrets,
            vec![dir.join("secrets.json").to_string()],
            Vec::new(),
            format!("Plan the secrets of profile {}", profile.name),
        ));
        specs.push(spec(
            assemble_id(&profile.name),
            "assemble",
            Output::Manifest,
            vec![
                dir.join("bundle.json").to_string(),
                dir.join("bundle.json.sha256").to_string(),
            ],
            vec![secrets_id(&profile.name)],
            format!("Assemble bundle.json of profile {}", profile.name),
        ));
        results.push((profile.name.clone(), assembled));
    }
    (specs, results)
}
