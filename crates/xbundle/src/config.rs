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
//!
//! JSON Schema of the file (for editors, e.g. taplo's `#:schema` or `evenBetterToml.schema.associations`):
//! `crates/xbundle/schema/bundle-toml.schema.json`, generated from these types by [`json_schema`]
//! and kept current by `tests/bundle_toml_schema.rs` (`UPDATE_SNAPSHOTS=1` rewrites it).

use std::collections::BTreeMap;
use std::ops::Range;

use camino::{Utf8Path, Utf8PathBuf};
use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::diagnostic::Diagnostic;

pub const FILE_NAME: &str = "bundle.toml";

/// bundle.toml: the declarative description of a repository's bundle pipeline (xbundle).
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(title = "bundle.toml")]
struct Raw {
    /// Where scenarios, resources and outputs live.
    #[serde(default)]
    workspace: Workspace,
    /// The local (and remote) cache.
    #[serde(default)]
    cache: CacheSettings,
    /// Declared, cached tasks: `[tasks.NAME]` becomes the task `task:NAME`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, TaskDecl>")]
    tasks: BTreeMap<Spanned<String>, Spanned<TaskDecl>>,
    /// What each bundle holds: `[profiles.NAME]` (`cargo xtask profile …` edits them).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, ProfileDecl>")]
    profiles: BTreeMap<Spanned<String>, Spanned<ProfileDecl>>,
    /// Downloaded, checksum-verified files (validated by the stage that uses them).
    #[serde(default)]
    #[schemars(with = "Vec<BTreeMap<String, serde_json::Value>>")]
    assets: Vec<toml::Value>,
}

/// One `[profiles.NAME]` entry as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProfileDecl {
    /// The scenario to bundle: a directory under the scenarios directory.
    #[schemars(with = "String")]
    pub scenario: Spanned<String>,
    /// Deployment tier: `tier-1-local` … `tier-5-enterprise`, `1` … `5`, or `local`, `desktop`,
    /// `mobile`, `saas`, `enterprise`.
    #[schemars(with = "String")]
    pub tier: Spanned<String>,
    /// Target platforms: ids of files in `platforms/` (e.g. `linux-x64`).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub platforms: Vec<Spanned<String>>,
    /// Installer formats (e.g. `tar.gz`, `deb`); default: each platform's list.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub formats: Vec<Spanned<String>>,
    /// Resource swaps, FROM = TO (e.g. `postgres = "sqlite"`).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub swaps: BTreeMap<Spanned<String>, Spanned<String>>,
    /// `check` and `bundle` fail when the tier's fitness after swaps is below this (0.0 ..= 1.0).
    #[schemars(with = "Option<f64>", range(min = 0.0, max = 1.0))]
    pub min_fitness: Option<Spanned<f64>>,
    /// App version (default: the scenario's).
    #[schemars(with = "Option<String>")]
    pub version: Option<Spanned<String>>,
    /// Extra environment templates of the app's services.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub env: BTreeMap<Spanned<String>, Spanned<String>>,
    /// Per-profile overrides of declared secrets, by secret id.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, SecretOverride>")]
    pub secrets: BTreeMap<Spanned<String>, Spanned<SecretOverride>>,
}

/// `[profiles.NAME.secrets] ID = {…}`: how one declared secret is handled in this profile.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SecretOverride {
    /// `infrastructure`, `per_install_generated`, `user_prompt`, `remote_fetch`, or `exclude`.
    pub class: Option<String>,
    /// What the prompt shows.
    pub label: Option<String>,
    pub description: Option<String>,
    /// Regular expression a prompted value must match.
    pub format: Option<String>,
    pub generator: Option<GeneratorDecl>,
    /// For `remote_fetch`.
    pub url: Option<String>,
    /// For `remote_fetch`.
    pub timeout_ms: Option<u64>,
    /// Where the value goes in the running app.
    pub target: Option<TargetDecl>,
    pub required: Option<bool>,
}

/// How a `per_install_generated` secret is generated.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GeneratorDecl {
    /// `random`, `uuid`, `hex` or `base64`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub length: Option<u32>,
    pub charset: Option<String>,
}

/// Where a secret's value is delivered.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TargetDecl {
    /// `env` or `file`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The variable or file name.
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

/// `[workspace]`: the repository's layout (paths relative to the directory of bundle.toml).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Workspace {
    /// Where scenarios live (`<dir>/<name>/.vrooli/service.json`).
    #[serde(default = "default_scenarios")]
    #[schemars(with = "String")]
    pub scenarios: Utf8PathBuf,
    /// Where resource definitions live.
    #[serde(default = "default_resources")]
    #[schemars(with = "String")]
    pub resources: Utf8PathBuf,
    /// Where outputs land.
    #[serde(default = "default_out")]
    #[schemars(with = "String")]
    pub out: Utf8PathBuf,
    /// The profile `cargo xtask bundle` builds when none is named.
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

/// `[cache]`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CacheSettings {
    /// Local cache directory, relative to the root (default `.xbundle/cache`; the
    /// `XBUNDLE_CACHE_DIR` environment variable overrides it).
    #[schemars(with = "Option<String>")]
    pub dir: Option<Utf8PathBuf>,
    /// Remote cache base URL (bazel-remote layout).
    pub remote: Option<String>,
}

/// One `[tasks.NAME]` entry as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TaskDecl {
    pub description: Option<String>,
    /// A shell string, run with `sh -c` (give `run` or `argv`, not both).
    #[schemars(with = "Option<String>")]
    pub run: Option<Spanned<String>>,
    /// A program and its arguments, run without a shell.
    #[schemars(with = "Option<Vec<String>>")]
    pub argv: Option<Spanned<Vec<String>>>,
    /// Working directory, relative to the root (default: the root).
    #[schemars(with = "Option<String>")]
    pub cwd: Option<Spanned<String>>,
    /// Globs relative to cwd whose content enters the task's key (`!` excludes).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub inputs: Vec<Spanned<String>>,
    /// Globs relative to cwd; each must match a file after a run.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub outputs: Vec<Spanned<String>>,
    /// Tasks that run first (`codegen` or `task:codegen`); their outputs enter the key.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub deps: Vec<Spanned<String>>,
    /// Environment variables whose values enter the key.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
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
            if !is_valid_name(name.get_ref()) {
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
            if !is_valid_name(name.get_ref()) {
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
        // In the order the file lists them.
        profiles.sort_by_key(|profile| profile.name_span.start);
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

/// The JSON Schema of bundle.toml (committed as `crates/xbundle/schema/bundle-toml.schema.json`).
///
/// TOML has no null, so the `null` schemars adds to every `Option` is taken out again: an
/// optional key is left out by leaving it out.
pub fn json_schema() -> serde_json::Value {
    let mut schema =
        serde_json::to_value(schemars::schema_for!(Raw)).expect("a schema always serializes");
    remove_null(&mut schema);
    schema
}

/// `"type": ["string", "null"]` becomes `"type": "string"`; `{"type": "null"}` leaves `anyOf`.
fn remove_null(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(object) => {
            if let Some(Value::Array(types)) = object.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    object.insert("type".into(), only);
                }
            }
            if let Some(Value::Array(any_of)) = object.get_mut("anyOf") {
                any_of.retain(|schema| schema.get("type").is_none_or(|t| t != "null"));
                if any_of.len() == 1
                    && let Some(Value::Object(only)) = any_of.pop()
                {
                    object.remove("anyOf");
                    for (key, schema) in only {
                        object.entry(key).or_insert(schema);
                    }
                }
            }
            object.values_mut().for_each(remove_null);
        }
        Value::Array(items) => items.iter_mut().for_each(remove_null),
        _ => {}
    }
}

/// Task and profile names: letters, digits, `-`, `_` and `.` (they appear in task ids and paths).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
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
