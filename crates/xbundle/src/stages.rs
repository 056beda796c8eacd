//! The per-profile pipeline tasks: `secrets:<profile>` (the bundle's secret plan) and
//! `assemble:<profile>` (`bundle.json` and its checksum), under `<out>/<profile>/`.
//!
//! Their inputs are discovered: the definition files the assembly read (or looked for and did
//! not find), the files that decided each service's build type, and the platform files (with
//! the listing of `platforms/*.toml`, so a new platform re-runs a profile that takes them all).
//! Planning assembles nothing: an assembly happens once per run, when its task runs. The
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

    /// The profile named `name`, or [`crate::names::unknown_profile`]'s diagnostic.
    pub fn profile(&self, name: &str) -> Result<&crate::config::Profile, Diagnostic> {
        crate::names::profile(&self.config, &self.root, name)
    }

    pub fn assemble(&self, catalog: &Catalog, profile: &str) -> Result<Assembly, Diagnostic> {
        let profile = self.profile(profile)?;
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

/// A definition problem found while the task ran: the one-line message, and the whole
/// diagnostic (file, line, snippet, help) as what the task printed.
pub fn failure(diagnostic: Diagnostic) -> ActionFailure {
    ActionFailure {
        message: match &diagnostic.help {
            Some(help) => format!("{diagnostic} (help: {help})"),
            None => diagnostic.to_string(),
        },
        stderr: diagnostic.render(false).into_bytes(),
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
    crate::stage::write_bytes(tree, relative, text.as_bytes()).map_err(|message| ActionFailure {
        message,
        ..ActionFailure::default()
    })
}

impl Action for ProfileAction {
    fn run(&self, action: &ActionContext<'_>) -> Result<ActionOutput, ActionFailure> {
        let context = Context::load(&self.root).map_err(failure)?;
        let catalog = Catalog::new(context.layout.clone());
        let dir = profile_dir(&context.config.workspace.out, &self.profile);
        let files = match self.output {
            Output::Secrets => {
                // The plan alone: the one assembly of a run is the manifest's.
                let profile = context.profile(&self.profile).map_err(failure)?;
                catalog.start_recording();
                let (plan, files) =
                    crate::assemble::profile_secret_plan(&catalog, &context.config, profile)
                        .map_err(failure)?;
                let mut text = serde_json::to_string_pretty(&plan).expect("plans serialize");
                text.push('\n');
                write(action.tree, &dir.join("secrets.json"), &text)?;
                files
            }
            Output::Manifest => {
                let assembly = context.assemble(&catalog, &self.profile).map_err(failure)?;
                write(action.tree, &dir.join("bundle.json"), &assembly.json)?;
                write(
                    action.tree,
                    &dir.join("bundle.json.sha256"),
                    &checksum_line(&assembly.json),
                )?;
                assembly.files
            }
        };
        Ok(ActionOutput {
            discovered: engine::Discovered {
                files,
                listings: vec!["platforms/*.toml".to_string()],
            },
            ..ActionOutput::default()
        })
    }
}

/// Every profile's assembly, or why it fails (what `check` reports). Only `check`, `assemble`
/// and `profile` commands assemble outside a task.
pub type ProfileResults = Vec<(String, Result<Assembly, Diagnostic>)>;

/// Assembles every profile (for `check`).
pub fn assemble_all(context: &Context) -> ProfileResults {
    let catalog = Catalog::new(context.layout.clone());
    context
        .config
        .profiles
        .iter()
        .map(|profile| {
            (
                profile.name.clone(),
                context.assemble(&catalog, &profile.name),
            )
        })
        .collect()
}

/// `secrets:<profile>` and `assemble:<profile>` for every profile. Nothing is read or
/// assembled: their inputs are discovered when they run.
pub fn plan(context: &Context) -> Vec<TaskSpec> {
    let mut specs = Vec::new();
    for profile in &context.config.profiles {
        let inputs: Vec<String> = Vec::new();
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
            // Independent of the secret plan's task: `export` runs this one alone, and a
            // profile that fails to assemble then writes nothing at all.
            Vec::new(),
            format!("Assemble bundle.json of profile {}", profile.name),
        ));
    }
    specs
}
