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
//! remote = "https://cache.example.com/xbundle"   # a shared cache (bazel-remote HTTP layout)
//! remote-read-only = true      # fetch from it, never upload (default false)
//! remote-timeout = 30          # seconds: connect and read timeout (default 30, connect 10)
//! remote-instance = "main"     # the REAPI instance name of a grpc(s):// cache (default "")
//! remote-executor = "grpc://farm:8980"   # a Remote Execution API server
//! remote-execute = ["compile", "package"] # pipeline tasks it runs (default; [] keeps them local)
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
//! Paths are confined: `[workspace]` directories and `[cache] dir` are relative, normalized
//! (no `.`, `..` or empty components), inside the root, not the root where outputs would mix
//! with sources (`out`, `[cache] dir`), never inside `.git`, and (where they exist) reached
//! without a symbolic link ([`BundleConfig::check_on_disk`]). A profile's `scenario` and the
//! names in its `swaps` are names, never paths. `XBUNDLE_CACHE_DIR` may point outside the root
//! (a shared cache) but never at the root, above it, or into `.git` ([`BundleConfig::cache_location`]).
//!
//! `[[assets]]` and `[runtime.<platform>]` (files fetched by URL and SHA-256) are described and
//! checked in [`crate::assets::config`]. `[cache] remote` is checked here (an `http`, `https`,
//! `grpc` or `grpcs` URL with a host, no credentials in it: they come from the environment, see
//! [`crate::remote`]). A profile's `formats` must be known
//! ([`crate::package::KNOWN`], checked by [`crate::package::settings`]).
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

use crate::assets::config::{Asset, AssetDecl, PrebuiltRuntime, RuntimeDecl};
use crate::diagnostic::Diagnostic;

pub const FILE_NAME: &str = "bundle.toml";

/// bundle.toml: the declarative description of a repository's bundle pipeline (xbundle).
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(title = "bundle.toml")]
struct Raw {
    /// Where scenarios, resources and outputs live.
    #[serde(default)]
    workspace: RawWorkspace,
    /// The local cache.
    #[serde(default)]
    cache: RawCache,
    /// Declared, cached tasks: `[tasks.NAME]` becomes the task `task:NAME`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, TaskDecl>")]
    tasks: BTreeMap<Spanned<String>, Spanned<TaskDecl>>,
    /// What each bundle holds: `[profiles.NAME]` (`cargo xtask profile …` edits them).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, ProfileDecl>")]
    profiles: BTreeMap<Spanned<String>, Spanned<ProfileDecl>>,
    /// Files fetched by URL and verified by SHA-256 (`fetch:<id>@<platform>`), optionally
    /// unpacked, that land in the bundles of the profiles that use them.
    #[serde(default)]
    #[schemars(with = "Vec<AssetDecl>")]
    assets: Vec<Spanned<AssetDecl>>,
    /// Prebuilt runtimes, `[runtime.<platform>]`, for platforms whose Rust target cannot be
    /// built here (`fetch:runtime@<platform>`).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RuntimeDecl>")]
    runtime: BTreeMap<Spanned<String>, Spanned<RuntimeDecl>>,
    /// Signing hooks, by artifact format (`msi`, `deb`, `pkg`, …): a command template run on
    /// each artifact of that format before checksums and update manifests are written.
    /// `{in}` is the unsigned file, `{out}` where the signed one goes (default: signed in
    /// place); any other `{name}` is the value of the environment variable
    /// `XBUNDLE_SIGN_<NAME>` (secrets come only from the environment).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    sign: BTreeMap<Spanned<String>, Spanned<String>>,
}

/// One `[profiles.NAME]` entry as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProfileDecl {
    /// The scenario to bundle: the name of a directory under the scenarios directory (a name,
    /// not a path).
    #[schemars(with = "String", regex(pattern = r"^[^/\\]+$"))]
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
    /// The `[[assets]]` this profile's bundles carry, by id (default: every asset whose
    /// platforms meet the profile's).
    #[schemars(with = "Option<Vec<String>>")]
    pub assets: Option<Vec<Spanned<String>>>,
    /// How a service of the bundle is built, instead of what its scenario's layout says, by
    /// service id (e.g. `picker-wheel-api`).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, BuildOverride>")]
    pub builds: BTreeMap<Spanned<String>, Spanned<BuildOverride>>,
    /// What the installers say about the app (`[profiles.NAME.installer]`): package name,
    /// maintainer, icon, dependencies. Every key has a default taken from bundle.json's `app`.
    #[schemars(with = "Option<InstallerDecl>")]
    pub installer: Option<Spanned<InstallerDecl>>,
    /// An Electron distribution (a directory holding Electron, relative to the root): when set,
    /// electron-builder is run on the generated wrapper project; otherwise the project is
    /// written under `<out>/<profile>/electron/` and the native formats are the installers.
    #[schemars(with = "Option<String>")]
    pub electron_dist: Option<Spanned<String>>,
    /// Where the app's updates are published (`[profiles.NAME.publish] url`): the base URL
    /// of the electron-updater `generic` provider and of the update manifests' files.
    #[schemars(with = "Option<PublishDecl>")]
    pub publish: Option<Spanned<PublishDecl>>,
    /// The thin client (`cargo xtask thin-client`): the wrapper without runtime or services,
    /// pointing at a deployed scenario.
    #[schemars(with = "Option<ThinDecl>")]
    pub thin: Option<Spanned<ThinDecl>>,
}

/// `[profiles.NAME.installer]`: what the installers say about the app. Defaults come from the
/// staged bundle.json's `app` (name, version, description).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct InstallerDecl {
    /// Package name (deb, rpm, the launcher's command): lowercase letters, digits, `+`, `-`
    /// and `.`, starting with a letter or digit (default: the app's name).
    pub name: Option<String>,
    /// The name menus show (default: the app's name).
    pub display_name: Option<String>,
    /// One line (default: the app's description).
    pub description: Option<String>,
    /// `Name <email>` (default: `<name> maintainers <maintainers@<name>.invalid>`).
    pub maintainer: Option<String>,
    /// Who publishes the app (rpm's Vendor, the msi's Manufacturer; default: the maintainer's
    /// name).
    pub vendor: Option<String>,
    /// The app's web page.
    pub homepage: Option<String>,
    /// License name, e.g. `MIT` (default: `UNLICENSED`).
    pub license: Option<String>,
    /// The app's icon, a `.svg` or `.png` file relative to the root (default: a generated
    /// icon with the app's initial).
    pub icon: Option<String>,
    /// freedesktop.org menu categories, `;`-separated (default `Utility;`).
    pub category: Option<String>,
    /// Reverse-DNS identifier (macOS package and Electron appId; default `org.xbundle.<name>`).
    pub identifier: Option<String>,
    /// deb `Depends` entries (e.g. `libc6 (>= 2.31)`).
    #[serde(default)]
    pub depends: Vec<String>,
    /// rpm `Requires` entries.
    #[serde(default)]
    pub requires: Vec<String>,
    /// The msi's UpgradeCode, a GUID (default: derived from the identifier, stable).
    pub upgrade_code: Option<String>,
}

/// `[profiles.NAME.publish]`: where updates are published.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PublishDecl {
    /// Base URL of the published artifacts (`https://…/`); update manifests name files
    /// relative to it.
    pub url: Option<String>,
}

/// `[profiles.NAME.thin]`: the thin client's settings.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ThinDecl {
    /// The deployed scenario's URL (`https://…`); `cargo xtask thin-client --url` overrides it.
    pub url: Option<String>,
}

/// `[profiles.NAME.builds.SERVICE]`: how one service is built (default: detected from the
/// scenario's layout, `api/go.mod` or `api/Cargo.toml`).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BuildOverride {
    /// `go`, `rust`, or `none` (nothing builds it: its binary comes from an asset whose `dest`
    /// is its path in the bundle, `bin/<service>/<platform>/<service>[.exe]`).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The source directory, relative to the root (default: the scenario's `api/`).
    pub dir: Option<String>,
    /// Go: the main package, relative to `dir` (`.` by default, or e.g. `./cmd/server`).
    pub package: Option<String>,
    /// Rust: the binary target (default: the package's only binary).
    pub bin: Option<String>,
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
#[derive(Debug, Clone)]
pub struct Workspace {
    /// Where scenarios live (`<dir>/<name>/.vrooli/service.json`).
    pub scenarios: Utf8PathBuf,
    /// Where resource definitions live.
    pub resources: Utf8PathBuf,
    /// Where outputs land.
    pub out: Utf8PathBuf,
    /// The profile `cargo xtask bundle` builds when none is named.
    pub default_profile: Option<String>,
}

/// `[workspace]`: the repository's layout (paths relative to the directory of bundle.toml).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "Workspace")]
struct RawWorkspace {
    /// Where scenarios live (`<dir>/<name>/.vrooli/service.json`): a relative, normalized path
    /// inside the root (default `scenarios`).
    #[schemars(with = "Option<String>")]
    scenarios: Option<Spanned<String>>,
    /// Where resource definitions live: a relative, normalized path inside the root (default
    /// `resources`).
    #[schemars(with = "Option<String>")]
    resources: Option<Spanned<String>>,
    /// Where outputs land: a relative, normalized directory inside the root, not the root
    /// itself and not inside `.git` (default `dist`).
    #[schemars(with = "Option<String>")]
    out: Option<Spanned<String>>,
    /// The profile `cargo xtask bundle` builds when none is named.
    default_profile: Option<String>,
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

/// Where path settings are written in bundle.toml (`None`: left to the default).
#[derive(Debug, Clone, Default)]
pub struct SettingSpans {
    pub scenarios: Option<Range<usize>>,
    pub resources: Option<Range<usize>>,
    pub out: Option<Range<usize>>,
    pub cache_dir: Option<Range<usize>>,
}

/// `[cache]`.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Local cache directory, relative to the root (validated; `None`: the default).
    pub dir: Option<Utf8PathBuf>,
    /// The remote cache's URL (validated by [`crate::remote::check_url`]).
    pub remote: Option<String>,
    pub remote_read_only: bool,
    /// Connect and read timeout, in seconds (validated: more than 0, at most an hour).
    pub remote_timeout: Option<f64>,
    /// The REAPI instance name (`grpc://`, `grpcs://`; validated), `""` by default.
    pub remote_instance: String,
    /// The remote executor's URL (`grpc://`, `grpcs://`; validated).
    pub remote_executor: Option<String>,
    /// Platform properties remote actions ask for (`None`: derived from this host, see
    /// [`crate::remote::exec::host_platform`]).
    pub remote_platform: Option<BTreeMap<String, String>>,
    /// The kinds of pipeline tasks that run on the remote executor when one is set
    /// ([`REMOTE_KINDS`]; default: all of them).
    pub remote_execute: Vec<String>,
}

/// The pipeline task kinds `[cache] remote-execute` may name.
pub const REMOTE_KINDS: &[&str] = &["compile", "package"];

impl Default for CacheSettings {
    fn default() -> CacheSettings {
        CacheSettings {
            dir: None,
            remote: None,
            remote_read_only: false,
            remote_timeout: None,
            remote_instance: String::new(),
            remote_executor: None,
            remote_platform: None,
            remote_execute: REMOTE_KINDS.iter().map(|kind| kind.to_string()).collect(),
        }
    }
}

impl CacheSettings {
    /// Whether pipeline tasks of `kind` (`compile`, `package`) may run on the remote executor.
    pub fn executes_remotely(&self, kind: &str) -> bool {
        self.remote_execute.iter().any(|k| k == kind)
    }
}

/// `[cache]`: where the local cache lives.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "CacheSettings")]
struct RawCache {
    /// Local cache directory: a relative, normalized path inside the root, not the root and not
    /// inside `.git`; inside `.xbundle` only at or below `.xbundle/cache` (the default). The
    /// `XBUNDLE_CACHE_DIR` environment variable overrides it.
    #[schemars(with = "Option<String>")]
    dir: Option<Spanned<String>>,
    /// A remote cache shared by a team's machines: `http://` or `https://` (the bazel-remote
    /// HTTP layout: bazel-remote, nginx with WebDAV, …), `grpc://` or `grpcs://` (the Remote
    /// Execution API). No credentials in the URL: bearer or basic auth come from
    /// XBUNDLE_REMOTE_CACHE_TOKEN or XBUNDLE_REMOTE_CACHE_USER and XBUNDLE_REMOTE_CACHE_PASSWORD.
    /// XBUNDLE_REMOTE_CACHE and `--remote-cache URL` override it, `--no-remote-cache` turns it off.
    #[schemars(with = "Option<String>")]
    remote: Option<Spanned<String>>,
    /// Only fetch from the remote cache, never upload (default false; also
    /// `--remote-cache-read-only`).
    remote_read_only: Option<bool>,
    /// Connect and read timeout of the remote cache, in seconds (default 30; connecting at most
    /// 10).
    #[schemars(with = "Option<f64>")]
    remote_timeout: Option<Spanned<f64>>,
    /// The Remote Execution API instance name of a `grpc://` or `grpcs://` cache and of the remote executor (default: the
    /// server's default instance, ""); `/`-separated words, no `..`, no `blobs`, `uploads`,
    /// `actions` or `operations` component.
    #[schemars(with = "Option<String>")]
    remote_instance: Option<Spanned<String>>,
    /// A Remote Execution API server that runs the tasks declared `remote = true`:
    /// `grpc://HOST:PORT` or `grpcs://HOST[:PORT]` (BuildGrid, Buildbarn, BuildBuddy, EngFlow,
    /// NativeLink). `--remote-executor URL` overrides it. A bearer token comes from
    /// XBUNDLE_REMOTE_CACHE_TOKEN. When it cannot be reached, tasks run locally (one warning).
    #[schemars(with = "Option<String>")]
    remote_executor: Option<Spanned<String>>,
    /// Platform properties every remote action asks for, e.g. `{ OSFamily = "linux", ISA =
    /// "x86-64" }` (default: this host's, as REAPI's lexicon names them).
    remote_platform: Option<BTreeMap<String, String>>,
    /// The kinds of pipeline tasks that run on the remote executor when one is set:
    /// `compile` (Go builds), `package` (unsigned, non-msi packages); default both, `[]`
    /// keeps every pipeline task local. `[tasks.*]` opt in with `remote = true`.
    #[schemars(with = "Option<Vec<String>>")]
    remote_execute: Option<Vec<Spanned<String>>>,
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
    /// A Makefile-style depfile the command writes (gcc `-MD`, rustc dep-info), relative to
    /// cwd and matched by `outputs`: the files it lists are the task's discovered inputs,
    /// re-checked before the task is cached again.
    #[schemars(with = "Option<String>")]
    pub depfile: Option<Spanned<String>>,
    /// The task may run on the remote executor (`--remote-executor`, `[cache] remote-executor`):
    /// it reads only its declared inputs and its dependencies' outputs, and writes only its
    /// declared outputs (default false; not with a depfile, whose reads a remote worker would not
    /// report).
    #[schemars(with = "Option<bool>")]
    pub remote: Option<Spanned<bool>>,
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
    /// Where `cwd` is written (`None`: the root by default).
    pub cwd_span: Option<Range<usize>>,
    pub inputs: Vec<String>,
    /// Where each input pattern is written, in the order of `inputs`.
    pub input_spans: Vec<Range<usize>>,
    pub outputs: Vec<String>,
    /// Where each output pattern is written, in the order of `outputs`.
    pub output_spans: Vec<Range<usize>>,
    /// Task names (without `task:`), with the span of each in the file.
    pub deps: Vec<(String, Range<usize>)>,
    pub env: Vec<String>,
    /// The depfile (relative to `cwd`, normalized, one of the outputs) whose dependencies the
    /// engine records as discovered inputs.
    pub depfile: Option<String>,
    /// `remote = true`: the task may run on the remote executor.
    pub remote: bool,
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
    /// `[[assets]]`, in the order the file lists them.
    pub assets: Vec<Asset>,
    /// `[runtime.<platform>]`: prebuilt runtimes, by platform.
    pub runtimes: Vec<PrebuiltRuntime>,
    /// Where the path settings are written.
    pub spans: SettingSpans,
    /// `[sign]`: signing command templates, by format.
    pub sign: BTreeMap<String, String>,
}

impl BundleConfig {
    /// Reads and validates `path` (the `bundle.toml` at a repository's root), including
    /// [`BundleConfig::check_on_disk`]; `display` is how the file is named in diagnostics.
    pub fn load(path: &Utf8Path, display: &Utf8Path) -> Result<BundleConfig, Diagnostic> {
        let source = read_bundle_toml(path, display)?;
        let config = BundleConfig::parse(&source, display)?;
        if let Some(root) = path.parent() {
            config.check_on_disk(if root.as_str().is_empty() {
                Utf8Path::new(".")
            } else {
                root
            })?;
        }
        Ok(config)
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
                    NAME_HELP_TASK,
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
            let cwd = match &decl.cwd {
                None => String::new(),
                Some(cwd) => {
                    let value = cwd.get_ref().trim_start_matches("./").trim_end_matches('/');
                    if value.starts_with('/')
                        || value.contains('\0')
                        || value.split('/').any(|c| c == "..")
                    {
                        return Err(error(
                            format!("task `{}` has a cwd outside the repository", name.get_ref()),
                            cwd.span(),
                            "this path",
                            "cwd is relative to the directory holding bundle.toml and stays inside it",
                        ));
                    }
                    if value == "." || value.is_empty() {
                        String::new()
                    } else {
                        match normalized(value) {
                            Some(normal) => normal,
                            None => {
                                return Err(error(
                                    format!(
                                        "task `{}` has a cwd that is not a normalized path",
                                        name.get_ref()
                                    ),
                                    cwd.span(),
                                    "this path",
                                    "write the directory without `.` or empty components, e.g. cwd = \"ui/app\"",
                                ));
                            }
                        }
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
            let depfile = match &decl.depfile {
                None => None,
                Some(depfile) => {
                    let value = depfile.get_ref().trim_start_matches("./");
                    let located = |message: String, help: &str| {
                        error(message, depfile.span(), "this depfile", help)
                    };
                    if let Err(err) = engine::confine::check_relative(value) {
                        return Err(located(
                            format!("task `{}`: depfile {err}", name.get_ref()),
                            "the depfile is a file the command writes, relative to the task's cwd, e.g. depfile = \"build/main.d\"",
                        ));
                    }
                    let outputs: Vec<String> =
                        decl.outputs.iter().map(|o| o.get_ref().clone()).collect();
                    let matched = engine::files::Patterns::new(&outputs)
                        .is_ok_and(|patterns| patterns.matches(value));
                    if !matched {
                        return Err(located(
                            format!(
                                "task `{}`: depfile `{value}` is not one of its outputs",
                                name.get_ref()
                            ),
                            "the depfile is written by the task, so it must be matched by `outputs` (add it, e.g. outputs = [\"build/main.o\", \"build/main.d\"])",
                        ));
                    }
                    Some(value.to_string())
                }
            };
            let remote = decl.remote.as_ref().is_some_and(|remote| *remote.get_ref());
            if remote && let (Some(flag), Some(_)) = (&decl.remote, &depfile) {
                return Err(error(
                    format!(
                        "task `{}` has a depfile and `remote = true`: a remote worker does not report what the depfile lists",
                        name.get_ref()
                    ),
                    flag.span(),
                    "remote execution asked for here",
                    "remove `remote = true` (the task runs locally) or the depfile (declare every input instead)",
                ));
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
                cwd_span: decl.cwd.as_ref().map(Spanned::span),
                input_spans: decl.inputs.iter().map(Spanned::span).collect(),
                inputs: decl.inputs.into_iter().map(Spanned::into_inner).collect(),
                output_spans: decl.outputs.iter().map(Spanned::span).collect(),
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
                depfile,
                remote,
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
                    NAME_HELP_PROFILE,
                ));
            }
            let decl = decl.into_inner();
            if !is_plain_name(decl.scenario.get_ref()) {
                return Err(error(
                    format!(
                        "profile `{}`: scenario `{}` is not a scenario name",
                        name.get_ref(),
                        decl.scenario.get_ref().escape_debug()
                    ),
                    decl.scenario.span(),
                    "a path, not a name",
                    "a profile's scenario is the name of a directory under the scenarios directory (e.g. scenario = \"picker-wheel\"), never a path",
                ));
            }
            for (from, to) in &decl.swaps {
                for side in [from, to] {
                    if !is_plain_name(side.get_ref()) {
                        return Err(error(
                            format!(
                                "swap `{}` is not a resource name",
                                side.get_ref().escape_debug()
                            ),
                            side.span(),
                            "a path, not a name",
                            "swaps name resources (directories under the resources directory), e.g. postgres = \"sqlite\"",
                        ));
                    }
                }
            }
            for (service, build) in &decl.builds {
                check_build_override(name.get_ref(), service, build)
                    .map_err(|(message, span, help)| error(message, span, "here", help))?;
            }
            if let Err(message) = decl.tier.get_ref().parse::<crate::analysis::tier::Tier>() {
                return Err(error(
                    message,
                    decl.tier.span(),
                    "this tier",
                    "use tier-1-local … tier-5-enterprise, 1 … 5, or local, desktop, mobile, saas, enterprise",
                ));
            }
            crate::package::settings::check_profile(name.get_ref(), &decl)
                .map_err(|(message, span, help)| error(message, span, "here", &help))?;
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
        if let Some(remote) = &raw.cache.remote
            && let Err(problem) = crate::remote::check_url(remote.get_ref())
        {
            return Err(error(
                format!("`[cache] remote` {problem}"),
                remote.span(),
                "here",
                crate::remote::URL_HELP,
            ));
        }
        if let Some(url) = &raw.cache.remote_executor
            && let Err(problem) = crate::remote::exec::check_url(url.get_ref())
        {
            return Err(error(
                format!("`[cache] remote-executor` {problem}"),
                url.span(),
                "this URL",
                crate::remote::exec::URL_HELP,
            ));
        }
        for kind in raw.cache.remote_execute.iter().flatten() {
            if !REMOTE_KINDS.contains(&kind.get_ref().as_str()) {
                return Err(error(
                    format!(
                        "`[cache] remote-execute` names an unknown kind of task `{}`",
                        kind.get_ref()
                    ),
                    kind.span(),
                    "this kind",
                    &format!(
                        "name some of {} (e.g. remote-execute = [\"compile\", \"package\"]), or [] to keep every pipeline task local",
                        REMOTE_KINDS.join(", ")
                    ),
                ));
            }
        }
        if let Some(timeout) = &raw.cache.remote_timeout
            && let Err(problem) = crate::remote::check_timeout(*timeout.get_ref())
        {
            return Err(error(
                format!("`[cache] remote-timeout` {problem}"),
                timeout.span(),
                "here",
                "give the seconds to wait for the remote cache, e.g. remote-timeout = 30",
            ));
        }
        if let Some(instance) = &raw.cache.remote_instance
            && let Err(problem) = crate::remote::check_instance(instance.get_ref())
        {
            return Err(error(
                format!("`[cache] remote-instance` {problem}"),
                instance.span(),
                "here",
                "give the REAPI instance name the server serves, e.g. remote-instance = \"main\"",
            ));
        }
        let (assets, runtimes) = crate::assets::config::parse(raw.assets, raw.runtime)
            .map_err(|problem| crate::assets::config::diagnostic(problem, display, source))?;
        for profile in &profiles {
            for id in profile.decl.assets.iter().flatten() {
                if !assets.iter().any(|asset| &asset.id == id.get_ref()) {
                    return Err(error(
                        format!(
                            "profile `{}`: unknown asset `{}`",
                            profile.name,
                            id.get_ref().escape_debug()
                        ),
                        id.span(),
                        "no [[assets]] entry has this id",
                        &format!(
                            "assets: {}",
                            if assets.is_empty() {
                                "(none)".to_string()
                            } else {
                                assets
                                    .iter()
                                    .map(|a| a.id.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            }
                        ),
                    ));
                }
            }
        }
        let mut spans = SettingSpans::default();
        let setting = |value: &Option<Spanned<String>>,
                       key: &str,
                       rule: DirRule,
                       default: fn() -> Utf8PathBuf,
                       span_slot: &mut Option<Range<usize>>|
         -> Result<Utf8PathBuf, Diagnostic> {
            let Some(value) = value else {
                return Ok(default());
            };
            *span_slot = Some(value.span());
            check_dir(value.get_ref(), rule).map_err(|problem| {
                error(
                    format!(
                        "{key} `{}` {}",
                        value.get_ref().escape_debug(),
                        problem.message
                    ),
                    value.span(),
                    "this path",
                    &problem.help,
                )
            })
        };
        let workspace = Workspace {
            scenarios: setting(
                &raw.workspace.scenarios,
                "[workspace] scenarios",
                DirRule::Read,
                default_scenarios,
                &mut spans.scenarios,
            )?,
            resources: setting(
                &raw.workspace.resources,
                "[workspace] resources",
                DirRule::Read,
                default_resources,
                &mut spans.resources,
            )?,
            out: setting(
                &raw.workspace.out,
                "[workspace] out",
                DirRule::Out,
                default_out,
                &mut spans.out,
            )?,
            default_profile: raw.workspace.default_profile.clone(),
        };
        let cache = CacheSettings {
            dir: match &raw.cache.dir {
                None => None,
                Some(_) => Some(setting(
                    &raw.cache.dir,
                    "[cache] dir",
                    DirRule::Cache,
                    Utf8PathBuf::new,
                    &mut spans.cache_dir,
                )?),
            },
            remote: raw.cache.remote.as_ref().map(|url| url.get_ref().clone()),
            remote_read_only: raw.cache.remote_read_only.unwrap_or(false),
            remote_timeout: raw.cache.remote_timeout.as_ref().map(|t| *t.get_ref()),
            remote_instance: raw
                .cache
                .remote_instance
                .as_ref()
                .map(|name| name.get_ref().clone())
                .unwrap_or_default(),
            remote_executor: raw
                .cache
                .remote_executor
                .as_ref()
                .map(|url| url.get_ref().clone()),
            remote_platform: raw.cache.remote_platform.clone(),
            remote_execute: match &raw.cache.remote_execute {
                Some(kinds) => kinds.iter().map(|kind| kind.get_ref().clone()).collect(),
                None => CacheSettings::default().remote_execute,
            },
        };
        let sign = crate::package::settings::check_sign(&raw.sign)
            .map_err(|(message, span, help)| error(message, span, "here", &help))?;
        Ok(BundleConfig {
            sign,
            path: display.to_path_buf(),
            source: source.to_string(),
            workspace,
            cache,
            tasks,
            profiles,
            assets,
            runtimes,
            spans,
        })
    }

    /// Checks the configured directories against the file system under `root`: where they
    /// exist, no component may be a symbolic link (one could lead anywhere).
    pub fn check_on_disk(&self, root: &Utf8Path) -> Result<(), Diagnostic> {
        let mut settings: Vec<(String, &Utf8Path, Option<Range<usize>>)> = vec![
            (
                "[workspace] scenarios".into(),
                &self.workspace.scenarios,
                self.spans.scenarios.clone(),
            ),
            (
                "[workspace] resources".into(),
                &self.workspace.resources,
                self.spans.resources.clone(),
            ),
            (
                "[workspace] out".into(),
                &self.workspace.out,
                self.spans.out.clone(),
            ),
        ];
        if let Some(dir) = &self.cache.dir {
            settings.push(("[cache] dir".into(), dir, self.spans.cache_dir.clone()));
        }
        for task in &self.tasks {
            settings.push((
                format!("the cwd of task `{}`", task.name),
                Utf8Path::new(&task.cwd),
                task.cwd_span.clone(),
            ));
        }
        // One handle on the root for every path (a task's cwd each: hundreds in a big graph).
        let dir = engine::confine::Dir::open_root(root.as_std_path()).map_err(|err| {
            Diagnostic::internal(format!("could not open the workspace root {root}: {err}"))
        })?;
        // Each parent directory opened once (every task's cwd under `tasks/`: one open, not one
        // per task); a parent that cannot be opened so is checked the long way, which names
        // the link.
        let mut parents: std::collections::HashMap<&str, Option<engine::confine::Dir>> =
            std::collections::HashMap::new();
        for (what, path, span) in settings {
            let through_parent = path.as_str().rsplit_once('/').and_then(|(parent, name)| {
                let opened = parents
                    .entry(parent)
                    .or_insert_with(|| dir.open_dir(parent).ok().flatten());
                let found = opened.as_ref()?.lstat(name);
                use engine::confine::{ConfineError, Kind};
                match found {
                    Ok(Some((Kind::Symlink, _))) => Some(Ok(Some(path.to_path_buf()))),
                    Ok(_) | Err(ConfineError::NotDirectory { .. }) => Some(Ok(None)),
                    Err(_) => None,
                }
            });
            let found = through_parent
                .unwrap_or_else(|| symlinked_component_in(&dir, path))
                .map_err(|err| {
                    Diagnostic::internal(format!("could not inspect {what} `{path}`: {err}"))
                })?;
            if let Some(link) = found {
                let mut diagnostic = Diagnostic::error(format!(
                    "{what} `{path}` goes through the symbolic link `{link}`"
                ))
                .in_file(self.path.clone(), &self.source)
                .help(
                    "configured directories are resolved without following links (a link can lead outside the repository): make it a real directory, or name the directory it points to",
                );
                if let Some(span) = span {
                    diagnostic = diagnostic.at(span, "this path");
                }
                return Err(diagnostic);
            }
        }
        Ok(())
    }

    /// Where the cache lives: `XBUNDLE_CACHE_DIR` when set (anywhere but the root, a directory
    /// holding the root, or `.git`), else `[cache] dir`, else `.xbundle/cache`.
    pub fn cache_location(&self, root: &Utf8Path) -> Result<CacheLocation, Diagnostic> {
        let Some(value) = std::env::var_os(CACHE_DIR_VARIABLE).filter(|v| !v.is_empty()) else {
            let relative = self
                .cache
                .dir
                .clone()
                .unwrap_or_else(|| DEFAULT_CACHE_DIR.into());
            return Ok(CacheLocation {
                absolute: root.join(&relative),
                inside_root: Some(relative),
            });
        };
        let bad = |value: &str, problem: &str, help: &str| {
            Diagnostic::error(format!("{CACHE_DIR_VARIABLE}={value} {problem}"))
                .help(help.to_string())
        };
        let shared_help = "point XBUNDLE_CACHE_DIR at a directory of its own, e.g. ~/.cache/xbundle (or unset it to use .xbundle/cache)";
        let Some(value) = value.to_str() else {
            return Err(bad(&value.to_string_lossy(), "is not UTF-8", shared_help));
        };
        let resolved = resolve_for_comparison(Utf8Path::new(value))
            .map_err(|err| bad(value, &format!("cannot be resolved: {err}"), shared_help))?;
        let root = resolve_for_comparison(root)
            .map_err(|err| Diagnostic::internal(format!("resolving the root {root}: {err}")))?;
        if resolved == root {
            return Err(bad(value, "is the repository root", shared_help));
        }
        if root.starts_with(&resolved) {
            return Err(bad(
                value,
                &format!("contains the repository ({root})"),
                shared_help,
            ));
        }
        if resolved.components().any(|c| c.as_str() == ".git") {
            return Err(bad(value, "is inside a `.git` directory", shared_help));
        }
        let inside_root = match resolved.strip_prefix(&root) {
            Ok(relative) => Some(
                check_dir(relative.as_str(), DirRule::Cache)
                    .map_err(|problem| bad(value, &problem.message, &problem.help))?,
            ),
            Err(_) => None,
        };
        Ok(CacheLocation {
            absolute: resolved,
            inside_root,
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

const NAME_HELP_TASK: &str =
    "task names start with a letter or digit and use letters, digits, `-`, `_` and `.`";
const NAME_HELP_PROFILE: &str =
    "profile names start with a letter or digit and use letters, digits, `-`, `_` and `.`";

/// Task and profile names: a letter or digit, then letters, digits, `-`, `_` and `.` (they
/// appear in task ids and as directory names under `out`, so never `.`, `..` or a path).
pub fn is_valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A scenario or resource name: one directory name under its directory, never a path (not
/// empty, not `.` or `..`, no `/`, `\` or NUL).
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// `value` when it is a relative path inside the root, normalized (no empty, `.` or `..`
/// components, no `\\` or NUL); `None` otherwise.
pub fn normalized_relative(value: &str) -> Option<String> {
    if value.starts_with('/') || value.contains(['\0', '\\']) || value.split('/').any(|c| c == "..")
    {
        return None;
    }
    normalized(value)
}

/// `value` when it is a normalized relative path (no empty or `.` components); `None` otherwise.
fn normalized(value: &str) -> Option<String> {
    value
        .split('/')
        .all(|component| !component.is_empty() && component != ".")
        .then(|| value.to_string())
}

/// `value` without empty and `.` components (for help lines).
fn lexically_normalized(value: &str) -> String {
    let parts: Vec<&str> = value
        .split('/')
        .filter(|component| !component.is_empty() && *component != ".")
        .collect();
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

/// A profile's build override: a service id, a known type, a confined directory, a package
/// inside it, a binary name.
fn check_build_override(
    profile: &str,
    service: &Spanned<String>,
    build: &Spanned<BuildOverride>,
) -> Result<(), (String, Range<usize>, &'static str)> {
    if manifest::check_id(service.get_ref()).is_err() {
        return Err((
            format!(
                "profile `{profile}`: `{}` is not a service id",
                service.get_ref().escape_debug()
            ),
            service.span(),
            "builds are keyed by the bundle's service ids, e.g. [profiles.p.builds.picker-wheel-api]",
        ));
    }
    let decl = build.get_ref();
    if let Some(kind) = &decl.kind
        && !matches!(kind.as_str(), "go" | "rust" | "none")
    {
        return Err((
            format!(
                "profile `{profile}`: build type `{}` of {} is not go, rust or none",
                kind.escape_debug(),
                service.get_ref()
            ),
            build.span(),
            "type = \"go\", \"rust\" or \"none\" (its binary then comes from an asset)",
        ));
    }
    if let Some(dir) = &decl.dir
        && let Err(problem) = check_dir(dir, DirRule::Read)
    {
        return Err((
            format!(
                "profile `{profile}`: build dir `{}` of {} {}",
                dir.escape_debug(),
                service.get_ref(),
                problem.message
            ),
            build.span(),
            "dir is the source directory, relative to the root, e.g. \"scenarios/picker-wheel/server\"",
        ));
    }
    if let Some(package) = &decl.package {
        let inner = package.strip_prefix("./").unwrap_or(package);
        let ok = package == "."
            || (package.starts_with("./") && engine::confine::check_relative(inner).is_ok());
        if !ok {
            return Err((
                format!(
                    "profile `{profile}`: Go package `{}` of {} is not a path below its dir",
                    package.escape_debug(),
                    service.get_ref()
                ),
                build.span(),
                "package = \".\" or \"./cmd/server\": a directory below the build's dir",
            ));
        }
    }
    if let Some(bin) = &decl.bin
        && !is_plain_name(bin)
    {
        return Err((
            format!(
                "profile `{profile}`: binary `{}` of {} is not a name",
                bin.escape_debug(),
                service.get_ref()
            ),
            build.span(),
            "bin names a binary target of the package, e.g. bin = \"server\"",
        ));
    }
    Ok(())
}

/// What a configured directory is for, which decides what it may be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DirRule {
    /// Read only (`scenarios`, `resources`): the root itself is allowed.
    Read,
    /// Outputs land there (`out`).
    Out,
    /// The cache (`[cache] dir`, `XBUNDLE_CACHE_DIR` when inside the root).
    Cache,
}

struct DirProblem {
    message: String,
    help: String,
}

/// Checks a root-relative directory setting; returns it as a path.
fn check_dir(value: &str, rule: DirRule) -> Result<Utf8PathBuf, DirProblem> {
    let problem = |message: &str, help: String| {
        Err(DirProblem {
            message: message.to_string(),
            help,
        })
    };
    if value.is_empty() {
        return problem("is empty", "give a directory relative to the root".into());
    }
    if value.contains('\0') {
        return problem(
            "contains a NUL byte",
            "give a directory relative to the root".into(),
        );
    }
    if value.starts_with('/') {
        return problem(
            "is an absolute path",
            "paths in bundle.toml are relative to the directory holding it and stay inside it, e.g. \"dist\"".into(),
        );
    }
    if value.split('/').any(|component| component == "..") {
        return problem(
            "leaves the repository (`..`)",
            "paths in bundle.toml stay inside the directory holding it; for a cache shared between checkouts set XBUNDLE_CACHE_DIR".into(),
        );
    }
    if value == "." {
        return match rule {
            DirRule::Read => Ok(".".into()),
            DirRule::Out => problem(
                "is the repository root",
                "outputs would land over the sources (and be cleaned with them): use a directory of its own, e.g. out = \"dist\"".into(),
            ),
            DirRule::Cache => problem(
                "is the repository root",
                "the cache needs a directory of its own, e.g. dir = \".xbundle/cache\" (the default)".into(),
            ),
        };
    }
    let Some(value) = normalized(value) else {
        return problem(
            "is not a normalized path",
            format!(
                "write it without `.` or empty components: \"{}\"",
                lexically_normalized(value)
            ),
        );
    };
    if value.split('/').any(|component| component == ".git") {
        return problem(
            "is inside `.git`",
            "git's own directory is never a place for xbundle's files: choose a directory outside `.git`".into(),
        );
    }
    let first = value.split('/').next().unwrap_or_default();
    if first == STATE_DIR
        && !(rule == DirRule::Cache
            && (value == DEFAULT_CACHE_DIR || value.starts_with(&format!("{DEFAULT_CACHE_DIR}/"))))
    {
        return problem(
            "is inside the state directory `.xbundle`",
            "`.xbundle` holds the lock, the build state and a staging area emptied on every run: choose a directory outside it (a cache may be `.xbundle/cache`, the default)".into(),
        );
    }
    Ok(value.into())
}

/// The engine's state directory, relative to the root.
pub const STATE_DIR: &str = ".xbundle";
/// The default cache directory, relative to the root.
pub const DEFAULT_CACHE_DIR: &str = ".xbundle/cache";

/// The first component of `relative` (a normalized path below `root`) that is a symbolic link.
/// The walk stops at the first component that does not exist or is not a directory (nothing
/// below it can be followed).
///
/// Configuration paths are checked against the file system with the engine's confined-path
/// helper ([`engine::confine::Dir`]): every component is opened without following links, as the
/// engine does when it writes, so what `check` accepts is what a build can use.
pub fn symlinked_component(
    root: &Utf8Path,
    relative: &Utf8Path,
) -> std::io::Result<Option<Utf8PathBuf>> {
    if relative.as_str().is_empty() {
        return Ok(None);
    }
    let dir = engine::confine::Dir::open_root(root.as_std_path()).map_err(std::io::Error::other)?;
    symlinked_component_in(&dir, relative)
}

/// [`symlinked_component`] below an open root (one handle for many paths).
fn symlinked_component_in(
    dir: &engine::confine::Dir,
    relative: &Utf8Path,
) -> std::io::Result<Option<Utf8PathBuf>> {
    use engine::confine::{ConfineError, Kind};
    if relative.as_str().is_empty() {
        return Ok(None);
    }
    match dir.lstat(relative.as_str()) {
        Ok(Some((Kind::Symlink, _))) => Ok(Some(relative.to_path_buf())),
        Ok(_) | Err(ConfineError::NotDirectory { .. }) => Ok(None),
        Err(ConfineError::Symlink { path }) => Ok(Some(path.into())),
        Err(err) => Err(std::io::Error::other(err)),
    }
}

/// The largest definition file read (`bundle.toml`, a `service.json`, a platform file): far
/// more than any needs; a larger one is refused before it is read whole.
pub const MAX_DEFINITION_BYTES: u64 = 16 << 20;

/// The text of the repository file `relative` (root-relative, normalized), read as untrusted
/// input with the engine's confined-path helper: no symbolic link followed on the way or at the
/// file itself, only a regular file (a FIFO would never end; it is not waited on), at most
/// [`MAX_DEFINITION_BYTES`], UTF-8. `Ok(None)` when it does not exist; the error says what is
/// wrong, naming the path (for a link, the link: "`{relative}` goes through the symbolic link
/// `{link}`").
pub fn read_definition(root: &Utf8Path, relative: &str) -> Result<Option<String>, String> {
    use engine::confine::{ConfineError, Dir};
    let dir = Dir::open_root(root.as_std_path()).map_err(|err| err.to_string())?;
    match dir.read_file(relative, MAX_DEFINITION_BYTES) {
        Ok(None) => Ok(None),
        Ok(Some(bytes)) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| format!("`{relative}` is not UTF-8 text")),
        Err(ConfineError::Symlink { path }) => Err(format!(
            "`{relative}` goes through the symbolic link `{path}`"
        )),
        Err(ConfineError::NotRegular {
            what: "a symbolic link",
            ..
        }) => Err(format!(
            "`{relative}` goes through the symbolic link `{relative}`"
        )),
        Err(ConfineError::NotDirectory { .. }) => Ok(None),
        Err(err) => Err(err.to_string()),
    }
}

/// The text of `path` (a repository's bundle.toml), as [`read_definition`] reads it; `display`
/// names it in diagnostics.
pub fn read_bundle_toml(path: &Utf8Path, display: &Utf8Path) -> Result<String, Diagnostic> {
    let (root, name) = match (path.parent(), path.file_name()) {
        (Some(root), Some(name)) => (
            if root.as_str().is_empty() {
                Utf8Path::new(".")
            } else {
                root
            },
            name,
        ),
        _ => (Utf8Path::new("."), path.as_str()),
    };
    let missing = |problem: String| {
        Diagnostic::error(format!("could not read {display}: {problem}")).help(
            "create a bundle.toml at the repository root (a regular file), or pass --root DIR",
        )
    };
    match read_definition(root, name) {
        Ok(Some(source)) => Ok(source),
        Ok(None) => Err(missing("No such file or directory (os error 2)".into())),
        Err(problem) => Err(missing(problem)),
    }
}

/// Where the cache lives for a run.
#[derive(Debug, Clone)]
pub struct CacheLocation {
    pub absolute: Utf8PathBuf,
    /// Root-relative, when the cache lies inside the root (outputs may never reach it).
    pub inside_root: Option<Utf8PathBuf>,
}

/// The environment variable that moves the cache (set by the user, so it may point outside).
pub const CACHE_DIR_VARIABLE: &str = "XBUNDLE_CACHE_DIR";

/// `path` made absolute (against the current directory) with `.` and `..` removed lexically,
/// then its longest existing ancestor resolved by the file system (what the path is, whichever
/// links lead there).
fn resolve_for_comparison(path: &Utf8Path) -> std::io::Result<Utf8PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        let cwd = std::env::current_dir()?;
        Utf8PathBuf::from_path_buf(cwd)
            .map_err(|_| std::io::Error::other("the current directory is not UTF-8"))?
            .join(path)
    };
    let mut lexical = Utf8PathBuf::from("/");
    for component in absolute.components() {
        match component {
            camino::Utf8Component::ParentDir => {
                lexical.pop();
            }
            camino::Utf8Component::Normal(name) => lexical.push(name),
            _ => {}
        }
    }
    let mut existing = lexical.clone();
    let mut missing = Vec::new();
    loop {
        match existing.canonicalize_utf8() {
            Ok(resolved) => {
                let mut resolved = resolved;
                for name in missing.iter().rev() {
                    resolved.push(name);
                }
                return Ok(resolved);
            }
            Err(_) => match existing.file_name() {
                Some(name) => {
                    missing.push(name.to_string());
                    existing.pop();
                }
                None => return Ok(lexical),
            },
        }
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
    fn directory_settings_are_relative_normalized_and_inside() {
        let ok = |value: &str, rule| check_dir(value, rule).map(|p| p.to_string()).ok();
        assert_eq!(ok("dist", DirRule::Out).as_deref(), Some("dist"));
        assert_eq!(
            ok("out/bundles", DirRule::Out).as_deref(),
            Some("out/bundles")
        );
        assert_eq!(ok(".", DirRule::Read).as_deref(), Some("."));
        assert_eq!(
            ok(".xbundle/cache", DirRule::Cache).as_deref(),
            Some(".xbundle/cache")
        );
        assert_eq!(
            ok(".xbundle/cache/x", DirRule::Cache).as_deref(),
            Some(".xbundle/cache/x")
        );
        for (value, rule) in [
            (".", DirRule::Out),
            (".", DirRule::Cache),
            ("", DirRule::Read),
            ("..", DirRule::Read),
            ("a/../..", DirRule::Read),
            ("/tmp", DirRule::Cache),
            ("./dist", DirRule::Out),
            ("dist/", DirRule::Out),
            ("a//b", DirRule::Out),
            ("a/./b", DirRule::Read),
            (".git", DirRule::Read),
            ("sub/.git/x", DirRule::Out),
            (".xbundle", DirRule::Cache),
            (".xbundle/tmp", DirRule::Cache),
            (".xbundle/cachex", DirRule::Cache),
            (".xbundle/cache", DirRule::Out),
            ("a\0b", DirRule::Read),
        ] {
            assert!(ok(value, rule).is_none(), "{value:?} accepted");
        }
        let problem = check_dir("./dist/", DirRule::Out).err().unwrap();
        assert_eq!(
            problem.help,
            "write it without `.` or empty components: \"dist\""
        );
    }

    #[test]
    fn names_are_never_paths() {
        for name in ["picker-wheel", "a.b", "A_1", "0x"] {
            assert!(is_valid_name(name) && is_plain_name(name), "{name}");
        }
        for name in ["", ".", "..", ".hidden", "-x", "_x", "a/b", "a b"] {
            assert!(!is_valid_name(name), "{name}");
        }
        for name in ["", ".", "..", "a/b", "/etc", "a\\b", "a\0"] {
            assert!(!is_plain_name(name), "{name:?}");
        }
    }

    #[test]
    fn a_path_through_a_symbolic_link_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("real/inner")).unwrap();
        std::os::unix::fs::symlink("real", root.join("link")).unwrap();
        std::fs::write(root.join("file"), "").unwrap();
        let found = |relative: &str| symlinked_component(root, Utf8Path::new(relative)).unwrap();
        assert_eq!(found("real/inner/missing"), None);
        assert_eq!(found("link"), Some("link".into()));
        assert_eq!(found("link/inner"), Some("link".into()));
        assert_eq!(
            found("file/below"),
            None,
            "not a directory: nothing to follow"
        );
        assert_eq!(found("missing/x"), None);
    }

    #[test]
    fn deps_accept_both_spellings() {
        let source = "[tasks.a]\nrun = \"true\"\ndeps = [\"b\", \"task:c\"]\n";
        let config = BundleConfig::parse(source, Utf8Path::new("bundle.toml")).unwrap();
        let deps: Vec<&str> = config.tasks[0].deps.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(deps, ["b", "c"]);
    }
}
