//! `bundle.toml`: the declarative description of a repository's pipeline.
//!
//! ```toml
//! [workspace]
//! scenarios = "scenarios"      # where scenarios live (default)
//! resources = "resources"      # where resource definitions live (default)
//! out = "dist"                 # where outputs land (default)
//!
//! [cache]
//! dir = ".xbundle/cache"       # local cache (default; XBUNDLE_CACHE_DIR overrides)
//!
//! [tasks.ui]                   # a declared, cached task: id `task:ui`
//! description = "Build the UI"
//! run = "npm ci && npm run build"   # a shell string (sh -c), or:
//! # argv = ["npm", "run", "build"]  # a program and its arguments, no shell
//! cwd = "scenarios/picker-wheel/ui" # relative to the root (default: the root)
//! inputs = ["src/**", "package.json", "!src/**/*.test.ts"]   # globs relative to cwd
//! outputs = ["dist/**"]        # globs relative to cwd; each must match after a run
//! deps = ["codegen"]           # other tasks (`codegen` or `task:codegen`)
//! env = ["NODE_ENV"]           # variables whose values enter the key
//! ```
//!
//! Unknown keys are errors (a typo such as `input =` must not silently disable caching).
//! Profiles are the single source of truth for what a bundle holds (`cargo xtask profile …`
//! edits them in place):
//!
//! ```toml
//! [profiles.picker-wheel-desktop]
//! scenario = "picker-wheel"
//! tier = "tier-2-desktop"                 # or 2, desktop, …
//! platforms = ["linux-x64", "win-x64"]    # files in platforms/
//! formats = ["tar.gz", "deb"]             # default: each platform's list
//! swaps = { postgres = "sqlite", redis = "in-process" }
//! min-fitness = 0.75                      # `check` and `bundle` fail below this, after swaps
//! version = "1.2.0"                       # app version (default: the scenario's)
//! env = { LOG_LEVEL = "info" }            # extra env templates of the app's services
//!
//! [profiles.picker-wheel-desktop.secrets] # per-profile overrides of declared secrets
//! openrouter_api_key = { class = "user_prompt", label = "OpenRouter API key" }
//! ```
//!
//! `[[assets]]` are accepted and validated by the stage that uses them.

use std::collections::BTreeMap;
use std::ops::Range;

use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;
use toml::Spanned;

use crate::diagnostic::Diagnostic;

pub const FILE_NAME: &str = "bundle.toml";

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Raw {
    #[serde(default)]
    workspace: Workspace,
    #[serde(default)]
    cache: CacheSettings,
    #[serde(default)]
    tasks: BTreeMap<Spanned<String>, Spanned<TaskDecl>>,
    #[serde(default)]
    profiles: BTreeMap<Spanned<String>, Spanned<ProfileDecl>>,
    #[serde(default)]
    assets: Vec<toml::Value>,
}

/// One `[profiles.NAME]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProfileDecl {
    pub scenario: Spanned<String>,
    pub tier: Spanned<String>,
    #[serde(default)]
    pub platforms: Vec<Spanned<String>>,
    #[serde(default)]
    pub formats: Vec<Spanned<String>>,
    #[serde(default)]
    pub swaps: BTreeMap<Spanned<String>, Spanned<String>>,
    pub min_fitness: Option<Spanned<f64>>,
    pub version: Option<Spanned<String>>,
    #[serde(default)]
    pub env: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    pub secrets: BTreeMap<Spanned<String>, Spanned<SecretOverride>>,
}

/// `[profiles.NAME.secrets] ID = {…}`: how one declared secret is handled in this profile.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SecretOverride {
    /// `infrastructure`, `per_install_generated`, `user_prompt`, `remote_fetch`, or `exclude`.
    pub class: Option<String>,
    pub label: Option<String>,
    pub description: Option<String>,
    /// Regular expression a prompted value must match.
    pub format: Option<String>,
    pub generator: Option<GeneratorDecl>,
    /// For `remote_fetch`.
    pub url: Option<String>,
    pub timeout_ms: Option<u64>,
    pub target: Option<TargetDecl>,
    pub required: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GeneratorDecl {
    /// `random`, `uuid`, `hex` or `base64`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub length: Option<u32>,
    pub charset: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TargetDecl {
    /// `env` or `file`.
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
}

/// A profile with its name and where it is written.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub name_span: Range<usize>,
    pub span: Range<usize>,
    pub decl: ProfileDecl,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Workspace {
    #[serde(default = "default_scenarios")]
    pub scenarios: Utf8PathBuf,
    #[serde(default = "default_resources")]
    pub resources: Utf8PathBuf,
    #[serde(default = "default_out")]
    pub out: Utf8PathBuf,
    pub default_profile: Option<String>,
}

fn default_scenarios() -> Utf8PathBuf {
    "scenarios".into()
}
fn default_resources() -> Utf8PathBuf {
    "resources".into()
}
fn default_out() -> Utf8PathBuf {
    "dist".into()
}

impl Default for Workspace {
    fn default() -> Workspace {
        Workspace {
            scenarios: default_scenarios(),
            resources: default_resources(),
            out: default_out(),
            default_profile: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CacheSettings {
    /// Local cache directory, relative to the root.
    pub dir: Option<Utf8PathBuf>,
    /// Remote cache base URL (bazel-remote layout).
    pub remote: Option<String>,
}

/// One `[tasks.NAME]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TaskDecl {
    pub description: Option<String>,
    pub run: Option<Spanned<String>>,
    pub argv: Option<Spanned<Vec<String>>>,
    pub cwd: Option<Spanned<String>>,
    #[serde(default)]
    pub inputs: Vec<Spanned<String>>,
    #[serde(default)]
    pub outputs: Vec<Spanned<String>>,
    #[serde(default)]
    pub deps: Vec<Spanned<String>>,
    #[serde(default)]
    pub env: Vec<Spanned<String>>,
}

/// How a declared task runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Shell(String),
    Argv(Vec<String>),
}

/// A validated declared task.
#[derive(Debug, Clone)]
pub struct DeclaredTask {
    pub name: String,
    pub description: Option<String>,
    pub command: Command,
    /// Root-relative, `/`-separated; empty for the root.
    pub cwd: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// Task names (without `task:`), with the span of each in the file.
    pub deps: Vec<(String, Range<usize>)>,
    pub env: Vec<String>,
    /// Span of the task's table, for diagnostics.
    pub span: Range<usize>,
}

/// A parsed, validated `bundle.toml`.
#[derive(Debug, Clone)]
pub struct BundleConfig {
    pub path: Utf8PathBuf,
    pub source: String,
    pub workspace: Workspace,
    pub cache: CacheSettings,
    pub tasks: Vec<DeclaredTask>,
    pub profiles: Vec<Profile>,
    pub assets: Vec<toml::Value>,
}

impl BundleConfig {
    /// Reads and validates `path`; `display` is how the file is named in diagnostics.
    pub fn load(path: &Utf8Path, display: &Utf8Path) -> Result<BundleConfig, Diagnostic> {
        let source = std::fs::read_to_string(path).map_err(|err| {
            Diagnostic::error(format!("could not read {display}: {err}"))
                .help("create a bundle.toml at the repository root, or pass --root DIR")
        })?;
        BundleConfig::parse(&source, display)
    }

    pub fn parse(source: &str, display: &Utf8Path) -> Result<BundleConfig, Diagnostic> {
        let raw: Raw = toml::from_str(source).map_err(|err| {
            let mut diagnostic =
                Diagnostic::error(err.message().trim().to_string()).in_file(display, source);
            if let Some(span) = err.span() {
                diagnostic = diagnostic.at(span, "here");
            }
            diagnostic.help(syntax_help(err.message()))
        })?;
        let error = |message: String, span: Range<usize>, label: &str, help: &str| {
            Diagnostic::error(message)
                .in_file(display, source)
                .at(span, label)
                .help(help)
        };
        let mut tasks = Vec::new();
        for (name, decl) in raw.tasks {
            let span = decl.span();
            let decl = decl.into_inner();
            if name.get_ref().is_empty()
                || !name
                    .get_ref()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(error(
                    format!("invalid task name `{}`", name.get_ref()),
                    name.span(),
                    "this name",
                    "task names use letters, digits, `-`, `_` and `.`",
                ));
            }
            let command = match (decl.run, decl.argv) {
                (Some(run), None) => {
                    if run.get_ref().trim().is_empty() {
                        return Err(error(
                            format!("task `{}` has an empty `run`", name.get_ref()),
                            run.span(),
                            "empty",
                            "give the shell command to run",
                        ));
                    }
                    Command::Shell(run.into_inner())
                }
                (None, Some(argv)) => {
                    if argv.get_ref().is_empty() {
                        return Err(error(
                            format!("task `{}` has an empty `argv`", name.get_ref()),
                            argv.span(),
                            "empty",
                            "give the program and its arguments",
                        ));
                    }
                    Command::Argv(argv.into_inner())
                }
                (Some(run), Some(_)) => {
                    return Err(error(
                        format!("task `{}` has both `run` and `argv`", name.get_ref()),
                        run.span(),
                        "one of these",
                        "keep `run` for a shell string or `argv` for a program and arguments",
                    ));
                }
                (None, None) => {
                    return Err(error(
                        format!("task `{}` has nothing to run", name.get_ref()),
                        name.span(),
                        "this task",
                        "add `run = \"shell command\"` or `argv = [\"program\", \"arg\"]`",
                    ));
                }
            };
            let cwd = match decl.cwd {
                None => String::new(),
                Some(cwd) => {
                    let value = cwd.get_ref().trim_start_matches("./").trim_end_matches('/');
                    if value.starts_with('/') || value.split('/').any(|c| c == "..") {
                        return Err(error(
                            format!("task `{}` has a cwd outside the repository", name.get_ref()),
                            cwd.span(),
                            "this path",
                            "cwd is relative to the directory holding bundle.toml and stays inside it",
                        ));
                    }
                    if value == "." {
                        String::new()
                    } else {
                        value.to_string()
                    }
                }
            };
            for pattern in decl.inputs.iter().chain(&decl.outputs) {
                if let Err(err) = engine::files::validate(pattern.get_ref()) {
                    return Err(error(
                        err.to_string(),
                        pattern.span(),
                        "this pattern",
                        "globs are relative to the task's cwd: `src/**`, `*.json`, `!src/**/*.test.js`",
                    ));
                }
            }
            for variable in &decl.env {
                let value = variable.get_ref();
                if value.is_empty() || value.contains('=') || value.contains('\0') {
                    return Err(error(
                        format!("`{value}` is not an environment variable name"),
                        variable.span(),
                        "this name",
                        "list variable names, e.g. env = [\"NODE_ENV\"]",
                    ));
                }
            }
            tasks.push(DeclaredTask {
                name: name.into_inner(),
                description: decl.description,
                command,
                cwd,
                inputs: decl.inputs.into_iter().map(Spanned::into_inner).collect(),
                outputs: decl.outputs.into_iter().map(Spanned::into_inner).collect(),
                deps: decl
                    .deps
                    .into_iter()
                    .map(|dep| {
                        let span = dep.span();
                        let name = dep.into_inner();
                        (
                            name.strip_prefix("task:").unwrap_or(&name).to_string(),
                            span,
                        )
                    })
                    .collect(),
                env: decl.env.into_iter().map(Spanned::into_inner).collect(),
                span,
            });
        }
        let mut profiles = Vec::new();
        for (name, decl) in raw.profiles {
            let span = decl.span();
            if name.get_ref().is_empty()
                || !name
                    .get_ref()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(error(
                    format!("invalid profile name `{}`", name.get_ref()),
                    name.span(),
                    "this name",
                    "profile names use letters, digits, `-`, `_` and `.`",
                ));
            }
            let decl = decl.into_inner();
            if let Err(message) = decl.tier.get_ref().parse::<crate::analysis::tier::Tier>() {
                return Err(error(
                    message,
                    decl.tier.span(),
                    "this tier",
                    "use tier-1-local … tier-5-enterprise, 1 … 5, or local, desktop, mobile, saas, enterprise",
                ));
            }
            if let Some(min) = &decl.min_fitness
                && !(0.0..=1.0).contains(min.get_ref())
            {
                return Err(error(
                    format!("min-fitness {} is outside 0.0 ..= 1.0", min.get_ref()),
                    min.span(),
                    "this value",
                    "fitness scores run from 0.0 to 1.0, e.g. min-fitness = 0.75",
                ));
            }
            profiles.push(Profile {
                name: name.get_ref().clone(),
                name_span: name.span(),
                span,
                decl,
            });
        }
        if let Some(default) = &raw.workspace.default_profile
            && !profiles.iter().any(|p| &p.name == default)
        {
            let span = crate::service::locate(source, &["default-profile"]);
            return Err(error(
                format!("default-profile `{default}` is not a profile of this file"),
                span..span,
                "here",
                &format!(
                    "profiles: {}",
                    if profiles.is_empty() {
                        "(none)".to_string()
                    } else {
                        profiles
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            ));
        }
        Ok(BundleConfig {
            path: display.to_path_buf(),
            source: source.to_string(),
            workspace: raw.workspace,
            cache: raw.cache,
            tasks,
            profiles,
            assets: raw.assets,
        })
    }

    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|profile| profile.name == name)
    }

    pub fn task(&self, name: &str) -> Option<&DeclaredTask> {
        self.tasks.iter().find(|task| task.name == name)
    }

    /// A diagnostic pointing into this file.
    pub fn diagnostic(
        &self,
        message: impl Into<String>,
        span: Range<usize>,
        label: &str,
    ) -> Diagnostic {
        Diagnostic::error(message)
            .in_file(self.path.clone(), &self.source)
            .at(span, label)
    }
}

fn syntax_help(message: &str) -> String {
    if message.contains("unknown field") {
        "check the spelling; the keys bundle.toml accepts are listed in README.md (\"bundle.toml\")"
            .into()
    } else if message.contains("missing field") {
        "add the missing key".into()
    } else if message.contains("invalid type") {
        "check the value's type: lists are written [\"a\", \"b\"], strings in double quotes".into()
    } else {
        "fix the TOML syntax at the marked position (https://toml.io)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_points_at_line_and_column() {
        let source = "[tasks.a]\nrun = \"true\"\ninptus = [\"x\"]\n";
        let err = BundleConfig::parse(source, Utf8Path::new("bundle.toml")).unwrap_err();
        assert_eq!(err.line_col(), Some((3, 1)));
        assert!(
            err.message.contains("unknown field `inptus`"),
            "{}",
            err.message
        );
        assert!(err.help.is_some());
    }

    #[test]
    fn both_run_and_argv_is_an_error() {
        let source = "[tasks.a]\nrun = \"true\"\nargv = [\"true\"]\n";
        let err = BundleConfig::parse(source, Utf8Path::new("bundle.toml")).unwrap_err();
        assert!(err.message.contains("both"), "{}", err.message);
    }

    #[test]
    fn deps_accept_both_spellings() {
        let source = "[tasks.a]\nrun = \"true\"\ndeps = [\"b\", \"task:c\"]\n";
        let config = BundleConfig::parse(source, Utf8Path::new("bundle.toml")).unwrap();
        let deps: Vec<&str> = config.tasks[0].deps.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(deps, ["b", "c"]);
    }
}
