//! Builds (the seed's Gap 2): the tasks that compile a bundle's services, build its UI and its
//! runtime, planned from the scenario's layout and run on the engine.
//!
//! | task | when | what it runs | discovered inputs |
//! |---|---|---|---|
//! | `compile:<scenario>-api@<platform>` | `api/go.mod` | `go list -deps -json`, then `CGO_ENABLED=0 GOOS GOARCH go build -trimpath -buildvcs=false -ldflags=-s -w -buildid=` | the files of every package of the workspace the build uses (`go list`), and each such package directory's `*.go` names (not `*_test.go`) |
//! | `compile:<scenario>-api@<platform>` | `api/Cargo.toml` | `cargo build --release --target TRIPLE [--locked]` | the workspace's sources from cargo's dep-info (`<bin>.d`) |
//! | `compile:<scenario>-ui` | `ui/package.json` | `npm ci` when `package-lock.json` changed, then `npm run build` (writes `ui/dist/`) | — (its inputs are the `ui/` tree, without `node_modules/` and `dist/`) |
//! | `runtime@<platform>` | the runtime's target is installed | `cargo build --release --target TRIPLE` of the `runtime` crate | its dep-info |
//!
//! A static `ui/` (no `package.json`) has no task: staging copies it as it is.
//!
//! With a remote executor (and `compile` in `[cache] remote-execute`), Go and Rust builds run
//! there ([`Action::prepare_remote`]: the Go plan here, the cargo plan in [`crate::cargo_remote`]);
//! npm builds always run here.
//!
//! Binaries land at `<out>/.build/bin/<service>/<platform>/<name>[.exe]` (the bundle's own
//! layout, below `<out>/.build/`), the runtime at `<out>/.build/runtime/<platform>/`. Static
//! inputs are only what decides *which* files a build reads (`go.mod`, `go.sum`, `Cargo.toml`,
//! `Cargo.lock`): everything else is discovered, so editing a `_test.go` or a package the
//! service does not import re-runs nothing, and editing one that it does re-runs its builds for
//! every platform. Tool identities (`go version` and the `go env` values that change a build,
//! `rustc -vV`, node and npm versions) are in the keys ([`crate::toolchain`]).
//!
//! **Invariant:** a build writes its output only through the engine's confined tree: compilers
//! write into a private temporary directory, and the result is copied into place.
//! **Invariant:** a platform that cannot be built here (a missing toolchain or Rust target) has
//! no task, and [`Unbuildable`] says why and how to fix it; it is never skipped silently.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use camino::{Utf8Path, Utf8PathBuf};
use engine::remote_exec::{RemoteInput, RemotePlan, RemotePrep};
use engine::{Action, ActionContext, ActionFailure, ActionOutput, Discovered, TaskId, TaskSpec};

use crate::platform::Platform;
use crate::tool::{Cmd, failure};
use crate::toolchain::{Missing, Toolchains};

/// Bump when what a build task produces changes for the same inputs.
pub const BUILD_VERSION: u32 = 1;

/// How a scenario's API is built, detected from its layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiBuild {
    Go,
    Rust,
}

/// How a scenario's UI is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UiBuild {
    /// `ui/package.json`: `npm ci` + `npm run build`, shipped from `ui/dist/`.
    Npm,
    /// A `ui/` directory without `package.json`: shipped as it is.
    Static,
}

/// The files whose presence decides a scenario's builds (what assembly records as read).
pub fn probed_files(scenario_dir: &Utf8Path) -> [Utf8PathBuf; 3] {
    [
        scenario_dir.join("api/go.mod"),
        scenario_dir.join("api/Cargo.toml"),
        scenario_dir.join("ui/package.json"),
    ]
}

/// What is at `relative` (root-relative), seen without following a link on the way; an error
/// (a link where a directory is expected, an unreadable root) as its message.
pub fn entry_kind(
    root: &Utf8Path,
    relative: &Utf8Path,
) -> Result<Option<engine::confine::Kind>, String> {
    let tree = engine::confine::Dir::open_root(root.as_std_path()).map_err(|e| e.to_string())?;
    tree.lstat(relative.as_str())
        .map(|found| found.map(|(kind, _)| kind))
        .map_err(|err| err.to_string())
}

fn is(root: &Utf8Path, relative: &Utf8Path, kind: engine::confine::Kind) -> bool {
    entry_kind(root, relative).is_ok_and(|found| found == Some(kind))
}

/// How the API in `api_dir` (root-relative) is built: `go.mod` or `Cargo.toml` there.
pub fn detect_api(root: &Utf8Path, api_dir: &Utf8Path) -> Option<ApiBuild> {
    use engine::confine::Kind;
    if is(root, &api_dir.join("go.mod"), Kind::File) {
        Some(ApiBuild::Go)
    } else if is(root, &api_dir.join("Cargo.toml"), Kind::File) {
        Some(ApiBuild::Rust)
    } else {
        None
    }
}

/// How the UI in `ui_dir` (root-relative) is built: `package.json` there, or a plain directory.
pub fn detect_ui(root: &Utf8Path, ui_dir: &Utf8Path) -> Option<UiBuild> {
    use engine::confine::Kind;
    if is(root, &ui_dir.join("package.json"), Kind::File) {
        Some(UiBuild::Npm)
    } else if is(root, ui_dir, Kind::Dir) {
        Some(UiBuild::Static)
    } else {
        None
    }
}

pub fn compile_id(service: &str, platform: &str) -> TaskId {
    TaskId::new(format!("compile:{service}@{platform}"))
}

pub fn ui_id(service: &str) -> TaskId {
    TaskId::new(format!("compile:{service}"))
}

pub fn runtime_id(platform: &str) -> TaskId {
    TaskId::new(format!("runtime@{platform}"))
}

/// Where builds put what staging copies: `<out>/.build`.
pub fn build_dir(out: &Utf8Path) -> Utf8PathBuf {
    out.join(".build")
}

/// The compiled binary of `service` for `platform` (root-relative).
pub fn binary_path(out: &Utf8Path, service: &str, platform: &Platform) -> Utf8PathBuf {
    build_dir(out).join(bundle_binary(service, platform))
}

/// A service binary's path inside a bundle: `bin/<service>/<platform>/<service>[.exe]`.
pub fn bundle_binary(service: &str, platform: &Platform) -> String {
    format!(
        "bin/{service}/{}/{service}{}",
        platform.id, platform.exe_suffix
    )
}

/// The runtime's file name on `platform`.
pub fn runtime_name(platform: &Platform) -> String {
    format!("xbundle-runtime{}", platform.exe_suffix)
}

/// The built runtime for `platform` (root-relative).
pub fn runtime_path(out: &Utf8Path, platform: &Platform) -> Utf8PathBuf {
    build_dir(out)
        .join("runtime")
        .join(&platform.id)
        .join(runtime_name(platform))
}

/// Why something a bundle needs cannot be built here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unbuildable {
    pub what: String,
    pub platform: String,
    pub missing: Missing,
}

/// The Go service build of `scenario` for `platform`; `remote`: it may run on the remote
/// executor (`[cache] remote-execute` holds `compile`).
#[allow(clippy::too_many_arguments)]
pub fn go_spec(
    tools: &Toolchains,
    root: &Utf8Path,
    out: &Utf8Path,
    service: &str,
    api_dir: &Utf8Path,
    package: &str,
    platform: &Platform,
    remote: bool,
) -> Result<TaskSpec, Missing> {
    let go = tools.go()?;
    let output = binary_path(out, service, platform);
    let mut params = BTreeMap::new();
    params.insert("goos".into(), platform.goos.clone());
    params.insert("goarch".into(), platform.goarch.clone());
    params.insert("package".into(), package.into());
    params.insert("flags".into(), GO_FLAGS.join(" "));
    params.insert("dir".into(), api_dir.to_string());
    params.insert("output".into(), output.to_string());
    Ok(TaskSpec {
        id: compile_id(service, &platform.id),
        kind: "go-build".into(),
        impl_version: BUILD_VERSION,
        params,
        cwd: String::new(),
        // go.sum is discovered (absent is recorded as absent).
        inputs: vec![api_dir.join("go.mod").to_string()],
        outputs: vec![output.to_string()],
        env: vec!["GOFLAGS".into(), "GOEXPERIMENT".into()],
        tools: BTreeMap::from([("go".to_string(), go.identity())]),
        deps: Vec::new(),
        action: Arc::new(GoBuild {
            root: root.to_path_buf(),
            go: go.program,
            dir: api_dir.to_path_buf(),
            goos: platform.goos.clone(),
            goarch: platform.goarch.clone(),
            package: package.to_string(),
            output,
            remote,
            go_version: go.version.clone(),
            go_env: go.env.clone(),
        }),
        description: Some(format!("Build {service} for {} (Go)", platform.id)),
    })
}

/// Flags of every Go build: reproducible (no paths, no VCS stamp, no build id) and small.
const GO_FLAGS: &[&str] = &["-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid="];

struct GoBuild {
    root: Utf8PathBuf,
    go: PathBuf,
    dir: Utf8PathBuf,
    goos: String,
    goarch: String,
    /// The main package, relative to `dir` (`.`, `./cmd/server`).
    package: String,
    output: Utf8PathBuf,
    /// With a remote executor, build there ([`Action::prepare_remote`]).
    remote: bool,
    /// The toolchain the key holds, which a remote worker must have.
    go_version: String,
    go_env: BTreeMap<String, String>,
}

impl GoBuild {
    fn cmd(&self) -> Cmd {
        Cmd::new(&self.go)
            .cwd(self.root.join(&self.dir))
            .env("CGO_ENABLED", "0")
            .env("GOOS", &self.goos)
            .env("GOARCH", &self.goarch)
            // Never a go.work from above the scenario, never a toolchain download.
            .env("GOWORK", "off")
            .env("GOTOOLCHAIN", "local")
            // Only packaging's timestamps follow it (it is in their keys, not in this one).
            .env_remove("SOURCE_DATE_EPOCH")
    }
}

/// The parts of `go list -json` a build's inputs come from.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct GoPackage {
    dir: String,
    standard: bool,
    go_files: Vec<String>,
    cgo_files: Vec<String>,
    s_files: Vec<String>,
    h_files: Vec<String>,
    c_files: Vec<String>,
    syso_files: Vec<String>,
    embed_files: Vec<String>,
    embed_patterns: Vec<String>,
    /// Files left out by build constraints: editing one (its `//go:build` line) can bring
    /// it in, so they are inputs too.
    ignored_go_files: Vec<String>,
    ignored_other_files: Vec<String>,
    module: Option<GoModule>,
    error: Option<GoError>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct GoModule {
    path: String,
    version: String,
    go_mod: String,
    replace: Option<Box<GoModule>>,
}

impl GoModule {
    /// A version from the module cache (pinned by go.sum), rather than a directory's files
    /// (the main module, or a `replace` with a local path).
    fn is_versioned(&self) -> bool {
        match &self.replace {
            Some(replace) => !replace.version.is_empty(),
            None => !self.version.is_empty(),
        }
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct GoError {
    err: String,
}

/// `path` relative to `root`, `/`-separated, when it lies below it.
pub(crate) fn root_relative(root: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(root).ok()?;
    let text = relative.to_str()?;
    engine::confine::check_relative(text).ok()?;
    Some(text.to_string())
}

/// What `go list -deps -json` says the build reads inside the root.
fn go_discovered(root: &Path, listing: &[u8]) -> Result<Discovered, String> {
    let mut discovered = Discovered::default();
    let mut files = BTreeSet::new();
    let mut listings = BTreeSet::new();
    for package in serde_json::Deserializer::from_slice(listing).into_iter::<GoPackage>() {
        let package = package.map_err(|err| format!("`go list` printed something else: {err}"))?;
        if let Some(error) = &package.error {
            return Err(format!("go list: {}", error.err));
        }
        if package.standard {
            continue;
        }
        if let Some(module) = &package.module
            && let Some(go_mod) = root_relative(root, Path::new(&module.go_mod))
        {
            files.insert(go_mod.clone());
            files.insert(go_mod.trim_end_matches(".mod").to_string() + ".sum");
        }
        // Packages outside the root from the module cache are pinned by go.sum; any other
        // (a `replace` with a local path, GOPATH) is code no key covers, read from outside
        // the repository: refused.
        let Some(dir) = root_relative(root, Path::new(&package.dir)) else {
            if package.module.as_ref().is_some_and(GoModule::is_versioned) {
                continue;
            }
            let module = package.module.as_ref().map_or("", |m| m.path.as_str());
            return Err(format!(
                "the Go package in {} (module `{module}`) lies outside the repository, and not in the module cache: xbundle builds only what it can track (move the module into the repository, or require a published version instead of a `replace` with a local path)",
                package.dir
            ));
        };
        for name in package
            .go_files
            .iter()
            .chain(&package.cgo_files)
            .chain(&package.s_files)
            .chain(&package.h_files)
            .chain(&package.c_files)
            .chain(&package.syso_files)
            .chain(&package.embed_files)
            .chain(&package.ignored_go_files)
            .chain(&package.ignored_other_files)
        {
            if let Some(path) = root_relative(root, &Path::new(&package.dir).join(name)) {
                files.insert(path);
            }
        }
        let dir_glob = engine::overlap::escape(&dir);
        listings.insert(format!("{dir_glob}/*.go"));
        listings.insert(format!("!{dir_glob}/*_test.go"));
        for pattern in &package.embed_patterns {
            let pattern = pattern.trim_start_matches("all:");
            listings.insert(format!("{dir_glob}/{pattern}"));
            listings.insert(format!("{dir_glob}/{pattern}/**"));
        }
    }
    discovered.files = files.into_iter().collect();
    discovered.listings = listings.into_iter().collect();
    Ok(discovered)
}

/// The modules from the module cache (outside the root, pinned by go.sum) a build uses, by
/// path and version: a remote worker would need their files, which are no input of the task.
fn go_cached_modules(root: &Path, listing: &[u8]) -> Vec<String> {
    let mut modules = BTreeSet::new();
    for package in serde_json::Deserializer::from_slice(listing).into_iter::<GoPackage>() {
        let Ok(package) = package else { continue };
        if package.standard || root_relative(root, Path::new(&package.dir)).is_some() {
            continue;
        }
        if let Some(module) = &package.module
            && module.is_versioned()
        {
            let pinned = module.replace.as_deref().unwrap_or(module);
            modules.insert(format!("{}@{}", pinned.path, pinned.version));
        }
    }
    modules.into_iter().collect()
}

/// The exit code of the remote Go build's script when the worker's Go is not the one in the
/// task's key (or there is none): the engine then warns and builds here.
const GO_CANNOT_RUN: i32 = 97;

/// The script a remote worker runs for a Go build: it checks the worker's toolchain is the one
/// in the key (`go version`, then the `go env` values the key holds, with the settable ones
/// exported as the key says), gives go a build cache of its own (the Command's environment has
/// no HOME nor GOCACHE), then builds with the local build's flags, `-o` straight at the output.
/// Arguments: `$1` the expected `go version` line, `$2` the `go env` names (space-separated),
/// `$3` their expected values (one a line), `$4` the module directory, `$5` the output
/// (root-relative), `$6` the package, then the build flags.
const GO_REMOTE_SCRIPT: &str = r#"set -u
command -v go >/dev/null 2>&1 || { echo "xbundle: the worker has no go on its PATH" >&2; exit 97; }
have=$(go version 2>&1)
[ "$have" = "$1" ] || { echo "xbundle: the worker's toolchain is \"$have\", the task's key holds \"$1\"" >&2; exit 97; }
if [ -n "$2" ]; then
  values=$(go env $2 2>&1)
  want=$(printf '%s' "$3")
  [ "$values" = "$want" ] || { echo "xbundle: the worker's go env ($2) differs from the task's key" >&2; exit 97; }
fi
cache=${TMPDIR:-/tmp}/xbundle-gocache-$(id -u)
mkdir -p "$cache" 2>/dev/null
if [ ! -d "$cache" ] || [ -L "$cache" ] || [ ! -O "$cache" ]; then
  cache=$(mktemp -d) || exit 1
fi
scratch=$(mktemp -d) || exit 1
trap 'rm -rf "$scratch"' EXIT
export GOCACHE="$cache" HOME="$scratch" GOPATH="$scratch/gopath" GOMODCACHE="$scratch/gopath/pkg/mod"
root=$(pwd)
output=$5
package=$6
cd "$4" || exit 1
shift 6
go build "$@" -o "$root/$output" "$package"
"#;

impl GoBuild {
    /// The plan of a remote build, after `go list` (run here) found its inputs.
    fn remote_plan(&self, context: &ActionContext<'_>, list: &[u8]) -> RemotePrep {
        let cached = go_cached_modules(context.root, list);
        if !cached.is_empty() {
            return RemotePrep::Local(format!(
                "the Go build uses modules from the module cache ({}), which are not inputs a worker receives",
                cached.join(", ")
            ));
        }
        let discovered = match go_discovered(context.root, list) {
            Ok(discovered) => discovered,
            Err(why) => return RemotePrep::Local(why),
        };
        let mut inputs = Vec::new();
        for path in &discovered.files {
            // An absent go.sum is recorded as absent, and not sent.
            if let Ok(Some((engine::confine::Kind::File, _))) = context.tree.lstat(path) {
                inputs.push((path.clone(), RemoteInput::TreeFile(path.clone())));
            }
        }
        let names: Vec<&str> = self.go_env.keys().map(String::as_str).collect();
        let values: Vec<&str> = self.go_env.values().map(String::as_str).collect();
        let mut env: BTreeMap<String, String> = [
            ("CGO_ENABLED", "0"),
            ("GOOS", self.goos.as_str()),
            ("GOARCH", self.goarch.as_str()),
            ("GOWORK", "off"),
            ("GOTOOLCHAIN", "local"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
        // The settable values the key holds, as it holds them (GOROOT and GOVERSION are the
        // toolchain's own: checked, not set).
        for (name, value) in &self.go_env {
            if !matches!(name.as_str(), "GOROOT" | "GOVERSION") {
                env.insert(name.clone(), value.clone());
            }
        }
        let mut argv: Vec<String> = vec![
            "sh".into(),
            "-c".into(),
            GO_REMOTE_SCRIPT.into(),
            "xbundle-go-build".into(),
            self.go_version.clone(),
            names.join(" "),
            values.join("\n"),
            self.dir.to_string(),
            self.output.to_string(),
            self.package.clone(),
        ];
        argv.extend(GO_FLAGS.iter().map(|flag| flag.to_string()));
        RemotePrep::Plan(Box::new(RemotePlan {
            argv,
            env,
            inputs,
            output_paths: vec![self.output.to_string()],
            discovered,
            depfile: None,
            toolchain: Some(format!("{}\n{}", self.go_version, values.join("\n"))),
            cannot_run_exit_code: Some(GO_CANNOT_RUN),
        }))
    }
}

impl Action for GoBuild {
    fn prepare_remote(&self, context: &ActionContext<'_>) -> Result<RemotePrep, ActionFailure> {
        if !self.remote {
            return Ok(RemotePrep::NotRemote);
        }
        let list = self
            .cmd()
            .args(["list", "-deps", "-json", self.package.as_str()])
            .read_in(context)?;
        // A listing a local build would refuse fails the task the same way.
        go_discovered(context.root, &list).map_err(failure)?;
        Ok(self.remote_plan(context, &list))
    }

    fn run(&self, context: &ActionContext<'_>) -> Result<ActionOutput, ActionFailure> {
        let list = self
            .cmd()
            .args(["list", "-deps", "-json", self.package.as_str()])
            .read_in(context)?;
        let discovered = go_discovered(context.root, &list).map_err(failure)?;
        let scratch = scratch_dir().map_err(failure)?;
        let built = scratch.path().join("out");
        self.cmd()
            .arg("build")
            .args(GO_FLAGS.iter().copied())
            .arg("-o")
            .arg(&built)
            .arg(&self.package)
            .run_in(context)?;
        place(context.tree, &built, &self.output, 0o755).map_err(failure)?;
        Ok(ActionOutput {
            discovered,
            ..ActionOutput::default()
        })
    }
}

/// A private temporary directory for a compiler's output (removed on drop).
pub(crate) fn scratch_dir() -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new()
        .prefix("xbundle-build-")
        .tempdir()
        .map_err(|err| format!("could not create a temporary directory: {err}"))
}

/// Copies `from` (a file a compiler wrote) to `to` (root-relative) through the confined tree.
pub fn place(
    tree: &engine::confine::Dir,
    from: &Path,
    to: &Utf8Path,
    mode: u32,
) -> Result<(), String> {
    let mut source =
        std::fs::File::open(from).map_err(|err| format!("reading {}: {err}", from.display()))?;
    crate::stage::write_from(tree, &mut source, to, mode)
}

/// Variables that change what cargo builds (in the keys of Rust builds).
const CARGO_ENV: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_PROFILE_RELEASE_OPT_LEVEL",
    "CARGO_PROFILE_RELEASE_DEBUG",
    "CARGO_PROFILE_RELEASE_LTO",
    "CARGO_PROFILE_RELEASE_STRIP",
    "CARGO_PROFILE_RELEASE_PANIC",
    "CARGO_PROFILE_RELEASE_CODEGEN_UNITS",
];

/// A Rust binary built with cargo for a platform: a service's API or the runtime.
#[derive(Clone)]
struct CargoBuild {
    root: Utf8PathBuf,
    /// The toolchain: its cargo runs the build; its identity (`rustc -vV`, `cargo -V`, in the
    /// key) is what a remote worker must have, and its host the only triple built remotely
    /// (another's linker is configured here).
    rust: crate::toolchain::Rust,
    /// The package's manifest (absolute: the runtime's may lie outside the root).
    manifest: PathBuf,
    /// The binary target to build (`None`: the package's only binary, found with
    /// `cargo metadata`).
    bin: Option<String>,
    triple: String,
    locked: bool,
    /// Cargo's target directory, when xbundle chooses it (service builds: one of its own in
    /// the state directory, so neither a `target/` shipped in the repository nor one shared
    /// with other tools decides what is built, and nothing is written into the sources).
    target_dir: Option<PathBuf>,
    output: Utf8PathBuf,
    /// With a remote executor, build there ([`Action::prepare_remote`], [`crate::cargo_remote`]).
    remote: bool,
    /// Remap embedded source paths ([`with_remapped_paths`]): service builds, whose target
    /// directory is their own. Not the runtime's, whose target directory is its developers'
    /// too: other flags there would rebuild every dependency at each switch.
    remap: bool,
}

/// A Rust service build of `scenario` for `platform`; `remote`: it may run on the remote
/// executor (`[cache] remote-execute` holds `compile`).
#[allow(clippy::too_many_arguments)]
pub fn rust_spec(
    tools: &Toolchains,
    root: &Utf8Path,
    out: &Utf8Path,
    service: &str,
    api_dir: &Utf8Path,
    bin: Option<&str>,
    platform: &Platform,
    remote: bool,
) -> Result<TaskSpec, Missing> {
    let rust = tools.rust()?;
    rust.can_build(&platform.rust_target, tools.env())?;
    let output = binary_path(out, service, platform);
    let lock = api_dir.join("Cargo.lock");
    let locked = root.join(&lock).is_file();
    let build = CargoBuild {
        root: root.to_path_buf(),
        rust: rust.clone(),
        manifest: root.join(api_dir).join("Cargo.toml").into_std_path_buf(),
        bin: bin.map(str::to_string),
        triple: platform.rust_target.clone(),
        locked,
        target_dir: tools
            .state_dir()
            .map(|state| state.join("cargo").join(service)),
        output: output.clone(),
        remote,
        remap: true,
    };
    let mut inputs = vec![api_dir.join("Cargo.toml").to_string()];
    if locked {
        inputs.push(lock.to_string());
    }
    Ok(cargo_spec(
        compile_id(service, &platform.id),
        build,
        inputs,
        rust.identity(),
        format!("Build {service} for {} (Rust)", platform.id),
    ))
}

fn cargo_spec(
    id: TaskId,
    build: CargoBuild,
    inputs: Vec<String>,
    identity: String,
    description: String,
) -> TaskSpec {
    let mut params = BTreeMap::new();
    params.insert("target".into(), build.triple.clone());
    params.insert("profile".into(), "release".into());
    params.insert("locked".into(), build.locked.to_string());
    params.insert("bin".into(), build.bin.clone().unwrap_or_default());
    params.insert("output".into(), build.output.to_string());
    // Embedded source paths are remapped (`with_remapped_paths`).
    if build.remap {
        params.insert(
            "paths".into(),
            format!("{REMAP_ROOT} {REMAP_TARGET} {REMAP_REGISTRY}"),
        );
    }
    TaskSpec {
        id,
        kind: "cargo-build".into(),
        impl_version: BUILD_VERSION,
        params,
        cwd: String::new(),
        inputs,
        outputs: vec![build.output.to_string()],
        env: CARGO_ENV.iter().map(|s| s.to_string()).collect(),
        tools: BTreeMap::from([("rust".to_string(), identity)]),
        deps: Vec::new(),
        action: Arc::new(build),
        description: Some(description),
    }
}

impl CargoBuild {
    /// `cargo metadata` of the package's workspace (no dependencies, offline).
    fn metadata(
        &self,
        context: &ActionContext<'_>,
    ) -> Result<cargo_metadata::Metadata, ActionFailure> {
        let captured = Cmd::new(&self.rust.cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ])
            .arg("--manifest-path")
            .arg(&self.manifest)
            .read_in(context)?;
        serde_json::from_slice(&captured)
            .map_err(|err| failure(format!("`cargo metadata` printed something else: {err}")))
    }

    /// The binary target's name: the one given, or the package's only binary.
    fn bin_name(&self, metadata: &cargo_metadata::Metadata) -> Result<String, ActionFailure> {
        if let Some(bin) = &self.bin {
            return Ok(bin.clone());
        }
        let package = self
            .package(metadata)
            .or_else(|| metadata.packages.first())
            .ok_or_else(|| failure("`cargo metadata` lists no package"))?;
        self.bin_of(package)
    }

    /// This build's package among those `cargo metadata` lists.
    fn package<'m>(
        &self,
        metadata: &'m cargo_metadata::Metadata,
    ) -> Option<&'m cargo_metadata::Package> {
        metadata
            .packages
            .iter()
            .find(|p| p.manifest_path.as_std_path() == self.manifest)
    }

    /// The package's only binary, or the one named after it.
    fn bin_of(&self, package: &cargo_metadata::Package) -> Result<String, ActionFailure> {
        let bins: Vec<&str> = package
            .targets
            .iter()
            .filter(|t| t.is_bin())
            .map(|t| t.name.as_str())
            .collect();
        match bins.as_slice() {
            [one] => Ok(one.to_string()),
            [] => Err(failure(format!(
                "{} has no binary target",
                self.manifest.display()
            ))),
            many => match many.iter().find(|b| **b == package.name.as_str()) {
                Some(bin) => Ok(bin.to_string()),
                None => Err(failure(format!(
                    "{} has several binaries ({}): name the package's binary after the package, or set bin in [profiles.*.builds]",
                    self.manifest.display(),
                    many.join(", ")
                ))),
            },
        }
    }
}

impl Action for CargoBuild {
    fn prepare_remote(&self, context: &ActionContext<'_>) -> Result<RemotePrep, ActionFailure> {
        if !self.remote {
            return Ok(RemotePrep::NotRemote);
        }
        if self.triple != self.rust.host {
            return Ok(RemotePrep::Local(format!(
                "a build for {} uses the linker configured here",
                self.triple
            )));
        }
        let Some(manifest) = root_relative(context.root, &self.manifest) else {
            return Ok(RemotePrep::Local(format!(
                "{} is not inside the repository",
                self.manifest.display()
            )));
        };
        // The whole resolve (every platform's packages: cargo resolves for all of them), as
        // the lockfile pins it; what cannot be listed offline keeps the build here, where it
        // fails or succeeds as it would without an executor.
        let captured = Cmd::new(&self.rust.cargo)
            .args(["metadata", "--format-version", "1", "--offline", "--locked"])
            .arg("--manifest-path")
            .arg(&self.manifest)
            .cwd(self.root.as_std_path())
            .read_in(context);
        let metadata: cargo_metadata::Metadata = match captured {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| {
                failure(format!("`cargo metadata` printed something else: {err}"))
            })?,
            Err(_) => {
                return Ok(RemotePrep::Local(
                    "`cargo metadata --offline --locked` failed, as its output above says: a worker builds offline from the lockfile".into(),
                ));
            }
        };
        let bin = match (&self.bin, self.package(&metadata)) {
            (Some(bin), _) => bin.clone(),
            (None, Some(package)) => self.bin_of(package)?,
            (None, None) => {
                return Ok(RemotePrep::Local(format!(
                    "`cargo metadata` does not list {}",
                    self.manifest.display()
                )));
            }
        };
        let build = crate::cargo_remote::Build {
            remap: self.remap,
            manifest: &manifest,
            bin: &bin,
            triple: &self.triple,
            rustc_version: self.rust.verbose_version.trim(),
            cargo_version: self.rust.cargo_version.trim(),
            output: self.output.as_str(),
        };
        Ok(crate::cargo_remote::plan(
            context.tree,
            context.root,
            &build,
            &metadata,
        ))
    }

    fn run(&self, context: &ActionContext<'_>) -> Result<ActionOutput, ActionFailure> {
        let metadata = self.metadata(context)?;
        let bin = self.bin_name(&metadata)?;
        let mut cmd = Cmd::new(&self.rust.cargo)
            .args([
                "build",
                "--release",
                "--message-format",
                "short",
                "--target",
            ])
            .arg(&self.triple)
            .arg("--manifest-path")
            .arg(&self.manifest)
            .args(["--bin", bin.as_str()])
            // Not in this task's key, so not in what it builds (ring's build script reruns
            // when it changes, which would rebuild it for every packaging epoch).
            .env_remove("SOURCE_DATE_EPOCH")
            .cwd(self.root.as_std_path());
        if self.locked {
            cmd = cmd.arg("--locked");
        }
        if let Some(dir) = &self.target_dir {
            cmd = cmd.arg("--target-dir").arg(dir);
        }
        // Where cargo puts it: its target directory, as `cargo metadata` says (the workspace's
        // `target/` unless configured otherwise). Inside the repository, cargo would write
        // (and this task read) through any link in what a release build of this target
        // writes: refused first.
        let target_dir = self
            .target_dir
            .clone()
            .unwrap_or_else(|| metadata.target_directory.clone().into_std_path_buf());
        if let Some(relative) = root_relative(context.root, &target_dir) {
            no_link_below(context.tree, &relative, &self.triple).map_err(failure)?;
        }
        if self.remap {
            let mut remaps = vec![
                (self.root.as_std_path().to_path_buf(), REMAP_ROOT),
                (target_dir.clone(), REMAP_TARGET),
            ];
            remaps.extend(
                registry_sources(context.env)
                    .into_iter()
                    .map(|dir| (dir, REMAP_REGISTRY)),
            );
            cmd = with_remapped_paths(cmd, context.env, &remaps);
        }
        cmd.run_in(context)?;
        let exe = if self.triple.contains("windows") {
            format!("{bin}.exe")
        } else {
            bin.clone()
        };
        let release = target_dir.join(&self.triple).join("release");
        place(context.tree, &release.join(&exe), &self.output, 0o755).map_err(failure)?;
        let dep_info = std::fs::read(release.join(format!("{bin}.d")))
            .map_err(|err| failure(format!("reading cargo's dep-info of {bin}: {err}")))?;
        // The sources cargo's dep-info names, and the manifests of the workspace's members
        // (a member's dependencies or features change what is built).
        let mut files = dep_info_files(context.root, &dep_info);
        files.extend(metadata.packages.iter().filter_map(|package| {
            root_relative(context.root, package.manifest_path.as_std_path())
        }));
        files.sort();
        files.dedup();
        let discovered = Discovered {
            files,
            listings: Vec::new(),
        };
        Ok(ActionOutput {
            discovered,
            ..ActionOutput::default()
        })
    }
}

/// Where a Rust binary's embedded paths (panic locations, `file!()`) say its sources were:
/// the same on every machine, so a build is byte-identical wherever it ran (two checkouts,
/// a remote worker, see [`crate::cargo_remote`]): the repository, cargo's target directory
/// (sources generated by build scripts) and the registry's unpacked crates.
pub const REMAP_ROOT: &str = "/xbundle/root";
pub const REMAP_TARGET: &str = "/xbundle/target";
pub const REMAP_REGISTRY: &str = "/xbundle/registry";

/// The directories cargo unpacks registry crates into here: `$CARGO_HOME/registry/src/*`.
fn registry_sources(env: &BTreeMap<std::ffi::OsString, std::ffi::OsString>) -> Vec<PathBuf> {
    let home = env
        .get(std::ffi::OsStr::new("CARGO_HOME"))
        .map(PathBuf::from)
        .or_else(|| {
            env.get(std::ffi::OsStr::new("HOME"))
                .map(|home| Path::new(home).join(".cargo"))
        });
    let Some(home) = home else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(home.join("registry/src"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
                .map(|entry| entry.path())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// `cmd` with a `--remap-path-prefix=FROM=TO` per pair (later pairs win where both match),
/// added to what the user's configuration gives rustc and never replacing it: appended to
/// `CARGO_ENCODED_RUSTFLAGS` or `RUSTFLAGS` (as the encoded form) when either is set, else
/// through `--config build.rustflags`, which cargo joins with the configuration files' (a
/// `target.<triple>.rustflags` in them takes precedence, and then no path is remapped: such a
/// build is correct, not reproducible across machines). A path that is not UTF-8 or holds `=`
/// is not remapped.
fn with_remapped_paths(
    cmd: Cmd,
    env: &BTreeMap<std::ffi::OsString, std::ffi::OsString>,
    remaps: &[(PathBuf, &str)],
) -> Cmd {
    match remapped_rustflags(env, remaps) {
        RustFlags::Encoded(encoded) => cmd.env("CARGO_ENCODED_RUSTFLAGS", encoded),
        RustFlags::Config(config) => cmd.arg("--config").arg(config),
    }
}

/// How [`with_remapped_paths`] hands its flags to cargo.
#[derive(Debug, PartialEq, Eq)]
enum RustFlags {
    /// `CARGO_ENCODED_RUSTFLAGS`: the user's flags, then ours.
    Encoded(String),
    /// A `--config` value: `build.rustflags=[…]`.
    Config(String),
}

fn remapped_rustflags(
    env: &BTreeMap<std::ffi::OsString, std::ffi::OsString>,
    remaps: &[(PathBuf, &str)],
) -> RustFlags {
    let flags: Vec<String> = remaps
        .iter()
        .filter_map(|(from, to)| {
            let from = from.to_str()?.trim_end_matches('/');
            (!from.is_empty() && !from.contains('='))
                .then(|| format!("--remap-path-prefix={from}={to}"))
        })
        .collect();
    // As cargo reads them: the encoded form when set (even empty), else RUSTFLAGS split on
    // spaces.
    let var = |name: &str| {
        env.get(std::ffi::OsStr::new(name))
            .map(|value| value.to_string_lossy().into_owned())
    };
    let existing: Option<Vec<String>> = if let Some(encoded) = var("CARGO_ENCODED_RUSTFLAGS") {
        Some(
            encoded
                .split('\u{1f}')
                .filter(|_| !encoded.is_empty())
                .map(str::to_string)
                .collect(),
        )
    } else {
        var("RUSTFLAGS").map(|flags| {
            flags
                .split(' ')
                .map(str::trim)
                .filter(|flag| !flag.is_empty())
                .map(str::to_string)
                .collect()
        })
    };
    match existing {
        Some(mut all) => {
            all.extend(flags);
            RustFlags::Encoded(all.join("\u{1f}"))
        }
        None => RustFlags::Config(format!(
            "build.rustflags={}",
            serde_json::to_string(&flags).unwrap_or_else(|_| "[]".into())
        )),
    }
}

/// Fails when cargo's target directory `relative` (root-relative), or what a release build
/// for `triple` writes below it (`release/`, `<triple>/`; not the incremental caches, which
/// only a debug build fills), is reached through a symbolic link: cargo would write where the
/// link leads.
fn no_link_below(tree: &engine::confine::Dir, relative: &str, triple: &str) -> Result<(), String> {
    use engine::confine::{ConfineError, Kind, Walk};
    let mut link = None;
    let written = [
        format!("{relative}/release"),
        format!("{relative}/{triple}"),
    ];
    tree.walk(relative, &mut |entry| -> Result<Walk, ConfineError> {
        let path = String::from_utf8_lossy(entry.relative);
        let wanted = written
            .iter()
            .any(|dir| *path == **dir || path.starts_with(&format!("{dir}/")));
        match entry.kind {
            Kind::Dir if wanted && !path.ends_with("/incremental") => Ok(Walk::Enter),
            Kind::Dir => Ok(Walk::Skip),
            Kind::Symlink => {
                link = Some(String::from_utf8_lossy(entry.relative).into_owned());
                Ok(Walk::Skip)
            }
            _ => Ok(Walk::Skip),
        }
    })
    .map_err(|err| format!("cargo's target directory {relative}: {err}"))?;
    match link {
        Some(link) => Err(format!(
            "`{link}` is a symbolic link in cargo's target directory: cargo would write where it leads (remove the link; cargo makes its directories itself)"
        )),
        None => Ok(()),
    }
}

/// The in-root files a Makefile-style dep-info names (`out: dep dep \`, `\ ` escapes).
pub fn dep_info_files(root: &Path, bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut files = BTreeSet::new();
    // Rules are `target: deps`; continuation lines end in a backslash.
    let joined = text.replace("\\\n", " ");
    for line in joined.lines() {
        let Some((_, deps)) = split_rule(line) else {
            continue;
        };
        let mut current = String::new();
        let mut chars = deps.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&' ') => {
                    current.push(' ');
                    chars.next();
                }
                ' ' | '\t' => {
                    if !current.is_empty() {
                        push_dep(root, &mut files, std::mem::take(&mut current));
                    }
                }
                _ => current.push(c),
            }
        }
        if !current.is_empty() {
            push_dep(root, &mut files, current);
        }
    }
    files.into_iter().collect()
}

/// The target and the dependencies of a rule line (the first `:` not part of an escaped
/// name or a Windows drive).
fn split_rule(line: &str) -> Option<(&str, &str)> {
    let bytes = line.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b':' && (i + 1 == bytes.len() || bytes[i + 1] == b' ' || bytes[i + 1] == b'\t') {
            return Some((&line[..i], &line[i + 1..]));
        }
    }
    None
}

fn push_dep(root: &Path, files: &mut BTreeSet<String>, dep: String) {
    let path = Path::new(&dep);
    let relative = if path.is_absolute() {
        root_relative(root, path)
    } else {
        engine::confine::check_relative(&dep)
            .ok()
            .map(|_| dep.clone())
    };
    if let Some(relative) = relative {
        files.insert(relative);
    }
}

/// Where the runtime's sources are: beside this crate's, as it was compiled.
pub fn runtime_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/Cargo.toml")
}

/// The runtime for `platform`, built with cargo from its sources.
pub fn runtime_spec(
    tools: &Toolchains,
    root: &Utf8Path,
    out: &Utf8Path,
    platform: &Platform,
    remote: bool,
) -> Result<TaskSpec, Missing> {
    let manifest = runtime_manifest();
    if !manifest.is_file() {
        return Err(Missing {
            reason: format!("the runtime's sources are not at {}", manifest.display()),
            fix: format!(
                "name a prebuilt runtime for {} in bundle.toml ([runtime.{}] url and sha256)",
                platform.id, platform.id
            ),
        });
    }
    let rust = tools.rust()?;
    rust.can_build(&platform.rust_target, tools.env())
        .map_err(|missing| Missing {
            fix: format!(
                "{}, or name a prebuilt runtime for {} in bundle.toml ([runtime.{}] url and sha256)",
                missing.fix, platform.id, platform.id
            ),
            ..missing
        })?;
    let output = runtime_path(out, platform);
    // Sources inside the root are discovered from the dep-info; outside it (xbundle used
    // as a dependency), the fingerprint of the runtime's sources compiled into this binary
    // stands for them.
    let manifest = manifest.canonicalize().unwrap_or(manifest);
    let inside = manifest.starts_with(root.as_std_path());
    let mut inputs = Vec::new();
    if inside && let Some(relative) = root_relative(root.as_std_path(), &manifest) {
        inputs.push(relative);
        inputs.push("Cargo.lock".into());
    }
    let build = CargoBuild {
        root: root.to_path_buf(),
        rust: rust.clone(),
        manifest,
        bin: Some("xbundle-runtime".into()),
        triple: platform.rust_target.clone(),
        locked: false,
        // The runtime's own workspace target directory, shared with its developers' builds.
        target_dir: None,
        output,
        // Remote only where its sources are the repository's (xbundle's own workspace):
        // elsewhere they are no files a worker could be sent.
        remote: remote && inside,
        remap: false,
    };
    let mut spec = cargo_spec(
        runtime_id(&platform.id),
        build,
        inputs,
        rust.identity(),
        format!("Build the runtime for {}", platform.id),
    );
    spec.kind = "runtime-build".into();
    spec.params
        .insert("sources".into(), env!("XBUNDLE_RUNTIME_HASH").into());
    Ok(spec)
}

/// The npm UI build of a scenario: cwd `ui/`, outputs `dist/**`.
pub fn npm_spec(tools: &Toolchains, service: &str, ui_dir: &Utf8Path) -> Result<TaskSpec, Missing> {
    let node = tools.node()?;
    let mut params = BTreeMap::new();
    params.insert("script".into(), "build".into());
    Ok(TaskSpec {
        id: ui_id(service),
        kind: "npm-build".into(),
        impl_version: BUILD_VERSION,
        params,
        cwd: ui_dir.to_string(),
        inputs: vec!["**".into(), "!node_modules/**".into(), "!dist/**".into()],
        outputs: vec!["dist/**".into()],
        env: vec!["NODE_ENV".into()],
        tools: BTreeMap::from([("node".to_string(), node.identity())]),
        deps: Vec::new(),
        action: Arc::new(NpmBuild { npm: node.npm }),
        description: Some(format!("Build {service} (npm)")),
    })
}

struct NpmBuild {
    npm: PathBuf,
}

/// Where `npm ci`'s lockfile digest is kept: it runs again only when the lockfile changed.
const NPM_STAMP: &str = "node_modules/.xbundle-package-lock.sha256";

impl Action for NpmBuild {
    fn run(&self, context: &ActionContext<'_>) -> Result<ActionOutput, ActionFailure> {
        let lock = std::fs::read(context.cwd.join("package-lock.json")).map_err(|err| {
            failure(
                format!("reading package-lock.json: {err} (npm ci needs a lockfile: run `npm install` once and commit package-lock.json)"),
            )
        })?;
        let digest = engine::Digest::of_bytes(&lock).to_string();
        let stamp = context.cwd.join(NPM_STAMP);
        let installed = std::fs::File::open(&stamp)
            .and_then(|mut f| {
                let mut text = String::new();
                f.by_ref().take(128).read_to_string(&mut text).map(|_| text)
            })
            .is_ok_and(|text| text.trim() == digest);
        if !installed {
            Cmd::new(&self.npm)
                .args(["ci", "--no-audit", "--no-fund", "--prefer-offline"])
                .env_remove("SOURCE_DATE_EPOCH")
                .run_in(context)?;
            std::fs::create_dir_all(context.cwd.join("node_modules"))
                .and_then(|()| std::fs::write(&stamp, format!("{digest}\n")))
                .map_err(|err| failure(format!("writing {NPM_STAMP}: {err}")))?;
        }
        Cmd::new(&self.npm)
            .args(["run", "build"])
            .env_remove("SOURCE_DATE_EPOCH")
            .run_in(context)?;
        Ok(ActionOutput::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remapped_paths_are_added_to_the_users_flags_never_instead_of_them() {
        let remaps = [
            (PathBuf::from("/repo/"), REMAP_ROOT),
            (PathBuf::from("/odd=path"), REMAP_TARGET),
            (
                PathBuf::from("/home/u/.cargo/registry/src/index"),
                REMAP_REGISTRY,
            ),
        ];
        let ours = "--remap-path-prefix=/repo=/xbundle/root\u{1f}--remap-path-prefix=/home/u/.cargo/registry/src/index=/xbundle/registry";
        let env = |pairs: &[(&str, &str)]| -> BTreeMap<std::ffi::OsString, std::ffi::OsString> {
            pairs
                .iter()
                .map(|(name, value)| (name.into(), value.into()))
                .collect()
        };
        // No flags of the user's: cargo joins the config's array with the files'.
        assert_eq!(
            remapped_rustflags(&env(&[]), &remaps),
            RustFlags::Config("build.rustflags=[\"--remap-path-prefix=/repo=/xbundle/root\",\"--remap-path-prefix=/home/u/.cargo/registry/src/index=/xbundle/registry\"]".into())
        );
        // RUSTFLAGS, split as cargo splits it, then ours.
        assert_eq!(
            remapped_rustflags(
                &env(&[("RUSTFLAGS", " -C  opt-level=2 -Dwarnings ")]),
                &remaps
            ),
            RustFlags::Encoded(format!("-C\u{1f}opt-level=2\u{1f}-Dwarnings\u{1f}{ours}"))
        );
        // The encoded form wins over RUSTFLAGS, as in cargo; set but empty means no flags.
        assert_eq!(
            remapped_rustflags(
                &env(&[
                    ("CARGO_ENCODED_RUSTFLAGS", "-C\u{1f}a b"),
                    ("RUSTFLAGS", "-Dx")
                ]),
                &remaps
            ),
            RustFlags::Encoded(format!("-C\u{1f}a b\u{1f}{ours}"))
        );
        assert_eq!(
            remapped_rustflags(
                &env(&[("CARGO_ENCODED_RUSTFLAGS", ""), ("RUSTFLAGS", "-Dx")]),
                &remaps
            ),
            RustFlags::Encoded(ours.into())
        );
    }

    #[test]
    fn dep_info_keeps_files_inside_the_root() {
        let root = Path::new("/repo");
        let text = b"/repo/target/x/release/app: /repo/src/main.rs /repo/src/a\\ b.rs \\\n /home/u/.cargo/registry/x.rs src/rel.rs\n\n/repo/src/main.rs:\n";
        assert_eq!(
            dep_info_files(root, text),
            vec!["src/a b.rs", "src/main.rs", "src/rel.rs"]
        );
        // Escapes never lead out.
        assert!(dep_info_files(root, b"x: /repo/../etc/passwd ../up.rs /etc/x\n").is_empty());
    }

    #[test]
    fn go_list_gives_the_workspace_files_and_package_listings() {
        let root = Path::new("/repo");
        let listing = br#"{"Dir":"/usr/lib/go/src/fmt","Standard":true,"GoFiles":["print.go"]}
{"Dir":"/repo/api/internal/wheel","GoFiles":["wheel.go"],"Module":{"GoMod":"/repo/api/go.mod"}}
{"Dir":"/repo/api","GoFiles":["main.go"],"EmbedPatterns":["static"],"EmbedFiles":["static/a.css"],"Module":{"GoMod":"/repo/api/go.mod"}}
{"Dir":"/root/go/pkg/mod/x@v1","GoFiles":["x.go"],"Module":{"Path":"x","Version":"v1.0.0","GoMod":"/root/go/pkg/mod/cache/x.mod"}}"#;
        let found = go_discovered(root, listing).unwrap();
        assert_eq!(
            found.files,
            vec![
                "api/go.mod",
                "api/go.sum",
                "api/internal/wheel/wheel.go",
                "api/main.go",
                "api/static/a.css"
            ]
        );
        assert!(
            found
                .listings
                .contains(&"api/internal/wheel/*.go".to_string())
        );
        assert!(found.listings.contains(&"!api/*_test.go".to_string()));
        assert!(found.listings.contains(&"api/static/**".to_string()));
        // A local `replace` outside the root: code no key covers.
        let replaced = br#"{"Dir":"/elsewhere/m","GoFiles":["m.go"],"Module":{"Path":"m","Version":"v0.0.0","Replace":{"Path":"/elsewhere/m","Version":""}}}"#;
        assert!(
            go_discovered(root, replaced)
                .unwrap_err()
                .contains("outside the repository")
        );
        let versioned = br#"{"Dir":"/cache/m@v1","GoFiles":["m.go"],"Module":{"Path":"m","Version":"v0.0.0","Replace":{"Path":"m2","Version":"v1.0.0"}}}"#;
        assert!(go_discovered(root, versioned).is_ok());
        // What a remote worker would lack: the module cache's modules, by pinned version.
        assert_eq!(go_cached_modules(root, versioned), vec!["m2@v1.0.0"]);
        assert_eq!(go_cached_modules(root, listing), vec!["x@v1.0.0"]);
        let own =
            br#"{"Dir":"/repo/api","GoFiles":["main.go"],"Module":{"GoMod":"/repo/api/go.mod"}}"#;
        assert!(go_cached_modules(root, own).is_empty());
        let broken = br#"{"Dir":"/repo/api","Error":{"Err":"no Go files"}}"#;
        assert!(
            go_discovered(root, broken)
                .unwrap_err()
                .contains("no Go files")
        );
    }
}
