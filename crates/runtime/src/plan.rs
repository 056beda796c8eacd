//! Loading a bundle: bundle.json read and validated (errors name the file, the field and the
//! problem), every path in it confined (see `confine`), the binary of each service picked for
//! the running platform, the start order computed from `dependencies`, and the `--dry-run`
//! rendering of all that.
//!
//! Confinement, checked here so that a refused path stops the start (exit code 2) before
//! anything is written or started, without relying on `manifest::validate`:
//!
//! - beneath the bundle directory: the binary (or UI directory) of this platform, its `cwd`,
//!   relative programs of migrations and `command` checks (`./tool`, resolved against that
//!   `cwd`; bare names use `PATH`, absolute ones are system programs), and assets;
//! - beneath the app data directory: `ipc.auth_token_path` (and `ipc-port` beside it),
//!   `telemetry.file`, each service's log directory and log file (named after its id, which
//!   must be a plain file name) and `data_dirs`. None of them may be inside `secrets/` or be
//!   one of the runtime's own files (`runtime/lock`, `runtime/ports.json`,
//!   `runtime/migrations.json`), and no two of these files may be the same.
//!
//! Each path must be relative, `/`-separated and free of `..`; when the directory exists, no
//! component of it may be a symlink (nor may `runtime/` and `secrets/` in the app data), and
//! the files appended to (telemetry, logs, `runtime/lock`) must be regular files with no
//! other hard link (see `confine`).
//!
//! bundle.json itself is read from the bundle directory without following a link, as a
//! regular file, and at most [`manifest::MAX_MANIFEST_BYTES`] of it. The bundle and the app
//! data directories may not overlap (either inside the other, once their links are
//! resolved): bundle.json chooses the names the runtime writes in app data, which could then
//! land where the UI serves them (the control token, secrets) or over the bundle's
//! programs. An existing app data
//! directory must be empty or the runtime's own (it holds `runtime/lock`): the runtime
//! replaces, appends to and deletes files at names bundle.json chooses, so it never adopts a
//! directory another program made (a bundle named `keyrings`, whose default app data
//! directory is `~/.local/share/keyrings`, would otherwise replace and then delete
//! `login.keyring` with `ipc.auth_token_path` naming it).
//!
//! **Invariant:** planning starts nothing and writes nothing; `--dry-run` shows exactly what a
//! start would do, without secret values (there are none yet) and without allocated ports
//! (only their ranges: allocation needs the machine's state).

use crate::confine::{self, Dir, Kind, RelPath};
use manifest::{Manifest, Service, ServiceType};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The platform key of the running machine, as in `binaries` (`linux-x64`, ...).
pub fn current_platform() -> &'static str {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => "linux-x64",
        ("linux", "aarch64") => "linux-arm64",
        ("macos", "x86_64") => "darwin-x64",
        ("macos", "aarch64") => "darwin-arm64",
        ("windows", "x86_64") => "win-x64",
        ("windows", "aarch64") => "win-arm64",
        _ => "unknown",
    }
}

/// How a service is run on this machine.
#[derive(Debug, Clone)]
pub enum Launch {
    /// A program, started through the shim (see `process`).
    Program {
        program: PathBuf,
        args: Vec<String>,
        cwd: PathBuf,
        env: BTreeMap<String, String>,
    },
    /// A `ui-bundle` whose path is a directory: served by the runtime itself. `rel` is the
    /// directory beneath the bundle (opened without following links when served).
    StaticUi { root: PathBuf, rel: RelPath },
    /// No binary for this platform (e.g. only a `build` block): the service cannot start.
    Unavailable { reason: String },
}

/// A loaded, validated bundle.
#[derive(Debug)]
pub struct Plan {
    pub manifest: Manifest,
    pub manifest_path: PathBuf,
    pub bundle_dir: PathBuf,
    pub app_data: PathBuf,
    pub platform: &'static str,
    /// Indexes into `manifest.services`, dependencies first.
    pub order: Vec<usize>,
    pub launches: Vec<Launch>,
    /// Validation warnings, rendered `path: message`.
    pub warnings: Vec<String>,
    /// The bundle directory, opened: the UI and assets are read beneath it.
    pub bundle: Dir,
    /// The confined paths beneath the app data directory.
    pub paths: AppPaths,
}

/// The paths bundle.json gives beneath the app data directory, checked.
#[derive(Debug)]
pub struct AppPaths {
    /// `ipc.auth_token_path`; `ipc-port` is written beside it.
    pub token: RelPath,
    /// `telemetry.file`.
    pub telemetry: RelPath,
    /// Per service (manifest order): its log directory; its log file is `<id>.log`.
    pub log_dirs: Vec<RelPath>,
    /// Per service: its `data_dirs`.
    pub data_dirs: Vec<Vec<RelPath>>,
    /// Per service: its assets, beneath the bundle directory.
    pub assets: Vec<Vec<RelPath>>,
}

/// The name of the file holding the control API's port, beside the token file.
pub const PORT_FILE: &str = manifest::path::IPC_PORT_FILE;

/// Why a bundle could not be loaded.
#[derive(Debug)]
pub struct LoadError(pub String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The default app data directory: `$XDG_DATA_HOME/<app>` or `~/.local/share/<app>` (Linux),
/// `~/Library/Application Support/<app>` (macOS), `%APPDATA%\<app>` (Windows).
pub fn default_app_data(app: &str) -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    if cfg!(target_os = "macos") {
        return home.join("Library/Application Support").join(app);
    }
    if cfg!(windows)
        && let Some(appdata) = std::env::var_os("APPDATA")
    {
        return PathBuf::from(appdata).join(app);
    }
    match std::env::var_os("XDG_DATA_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join(app),
        _ => home.join(".local/share").join(app),
    }
}

impl Plan {
    pub fn load(bundle_dir: &Path, app_data: Option<&Path>) -> Result<Plan, LoadError> {
        let bundle_dir = std::path::absolute(bundle_dir)
            .map_err(|err| LoadError(format!("{}: {err}", bundle_dir.display())))?;
        let manifest_path = bundle_dir.join("bundle.json");
        let bundle = Dir::open(&bundle_dir)
            .map_err(|err| LoadError(format!("{}: {err}", bundle_dir.display())))?;
        let text = read_manifest(&bundle)
            .map_err(|err| LoadError(format!("{}: cannot read: {err}", manifest_path.display())))?;
        let manifest = Manifest::from_json(&text)
            .map_err(|err| LoadError(format!("{}: {err}", manifest_path.display())))?;
        let problems = manifest.validate();
        let errors: Vec<String> = problems
            .iter()
            .filter(|p| p.is_error())
            .map(|p| format!("  {}: {}", p.path, p.message))
            .collect();
        if !errors.is_empty() {
            return Err(LoadError(format!(
                "{}: invalid bundle manifest:\n{}",
                manifest_path.display(),
                errors.join("\n")
            )));
        }
        let warnings = problems
            .iter()
            .filter(|p| !p.is_error())
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        let app_data = match app_data {
            Some(dir) => std::path::absolute(dir)
                .map_err(|err| LoadError(format!("{}: {err}", dir.display())))?,
            None => default_app_data(&manifest.app.name),
        };
        let (bundle_real, app_data_real) = (resolved(&bundle_dir), resolved(&app_data));
        if bundle_real.starts_with(&app_data_real) || app_data_real.starts_with(&bundle_real) {
            return Err(LoadError(format!(
                "the bundle directory {} and the app data directory {} overlap: bundle.json names the files the runtime writes in app data, so they could land where the UI serves them or over the bundle's programs; keep them apart (--app-data)",
                bundle_real.display(),
                app_data_real.display()
            )));
        }
        let platform = current_platform();
        let order = start_order(&manifest);
        // The app data directory is only probed when it exists: planning creates nothing.
        let app_dir = Dir::open(&app_data).ok();
        let mut checker = Checker {
            bundle: &bundle,
            problems: Vec::new(),
            assets: Vec::new(),
        };
        let launches = manifest
            .services
            .iter()
            .enumerate()
            .map(|(index, service)| checker.launch(index, service, &bundle_dir, platform))
            .collect();
        let paths = checker.app_paths(&manifest, app_dir.as_ref());
        if !checker.problems.is_empty() {
            return Err(LoadError(format!(
                "{}: invalid bundle manifest (paths must stay inside the bundle and app data directories):\n{}",
                manifest_path.display(),
                checker.problems.join("\n")
            )));
        }
        Ok(Plan {
            manifest,
            manifest_path,
            bundle_dir,
            app_data,
            platform,
            order,
            launches,
            warnings,
            bundle,
            paths,
        })
    }

    /// The `--dry-run` text.
    pub fn render(&self) -> String {
        let m = &self.manifest;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "bundle    {} {} ({})",
            m.app.name,
            m.app.version,
            self.manifest_path.display()
        );
        let _ = writeln!(out, "platform  {}", self.platform);
        let _ = writeln!(out, "app data  {}", self.app_data.display());
        let _ = writeln!(
            out,
            "control   http://{}:{} (token in {})",
            m.ipc.host,
            m.ipc.port,
            self.paths.token.under(&self.app_data).display()
        );
        if let Some(range) = m.ports.as_ref().and_then(|p| p.default_range) {
            let _ = writeln!(out, "ports     default {}-{}", range.min, range.max);
        }
        for warning in &self.warnings {
            let _ = writeln!(out, "warning   {warning}");
        }
        if let Some(secrets) = &m.secrets {
            let _ = writeln!(out, "secrets");
            for secret in secrets {
                let class = serde_json::to_value(secret.class).unwrap_or_default();
                let target = match secret.target.kind {
                    manifest::SecretTargetType::Env => format!("env {}", secret.target.name),
                    manifest::SecretTargetType::File => {
                        format!("file (SECRET_FILE_{})", env_suffix(secret.id.as_str()))
                    }
                };
                let _ = writeln!(
                    out,
                    "  {:<24} {:<22} {}{}",
                    secret.id.as_str(),
                    class.as_str().unwrap_or(""),
                    target,
                    if secret.is_required() {
                        ""
                    } else {
                        " (optional)"
                    }
                );
            }
        }
        let _ = writeln!(out, "start order");
        for (step, &index) in self.order.iter().enumerate() {
            let service = &m.services[index];
            let kind = serde_json::to_value(service.kind).unwrap_or_default();
            let _ = writeln!(
                out,
                "{:>3}. {} ({}{})",
                step + 1,
                service.id,
                kind.as_str().unwrap_or(""),
                if service.is_critical() {
                    ", critical"
                } else {
                    ""
                }
            );
            match &self.launches[index] {
                Launch::Program {
                    program, args, cwd, ..
                } => {
                    let _ = writeln!(
                        out,
                        "       run     {} {}",
                        program.display(),
                        args.join(" ")
                    );
                    let _ = writeln!(out, "       cwd     {}", cwd.display());
                }
                Launch::StaticUi { root, .. } => {
                    let _ = writeln!(
                        out,
                        "       serve   {} (in-process, /api proxied)",
                        root.display()
                    );
                }
                Launch::Unavailable { reason } => {
                    let _ = writeln!(out, "       cannot start: {reason}");
                }
            }
            if !service.dependencies().is_empty() {
                let deps: Vec<&str> = service.dependencies().iter().map(|d| d.as_str()).collect();
                let _ = writeln!(out, "       after   {}", deps.join(", "));
            }
            for request in service.requested_ports() {
                let _ = writeln!(
                    out,
                    "       port    {} in {}-{}",
                    request.name, request.range.min, request.range.max
                );
            }
            if !service.secret_ids().is_empty() {
                let ids: Vec<&str> = service.secret_ids().iter().map(|s| s.as_str()).collect();
                let _ = writeln!(out, "       secrets {}", ids.join(", "));
            }
            for migration in service.migrations() {
                let run_on =
                    serde_json::to_value(migration.run_on.unwrap_or_default().normalized())
                        .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "       migrate {} ({}): {}",
                    migration.version,
                    run_on.as_str().unwrap_or(""),
                    migration.command.join(" ")
                );
            }
            let readiness = serde_json::to_value(service.readiness.kind).unwrap_or_default();
            let health = serde_json::to_value(service.health.kind).unwrap_or_default();
            let _ = writeln!(
                out,
                "       ready   {} (timeout {} ms); health {}",
                readiness.as_str().unwrap_or(""),
                service
                    .readiness
                    .timeout_ms
                    .unwrap_or(crate::DEFAULT_READINESS_TIMEOUT_MS),
                health.as_str().unwrap_or("")
            );
        }
        out
    }
}

/// `SECRET_FILE_<ID>`'s suffix: the id upper-cased, other characters than A-Z0-9 as `_`.
pub fn env_suffix(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Reads `bundle.json` from the bundle directory: a regular file, not a link (nor a FIFO or a
/// device, which could block or never end), read only up to one byte past
/// [`manifest::MAX_MANIFEST_BYTES`], so a huge one costs no memory before `from_json`
/// refuses it; UTF-8.
fn read_manifest(bundle: &Dir) -> std::io::Result<String> {
    let bytes = bundle.read("bundle.json", manifest::MAX_MANIFEST_BYTES as u64 + 1)?;
    String::from_utf8(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Finds the confinement problems of a manifest (`  field: problem` lines).
struct Checker<'a> {
    bundle: &'a Dir,
    problems: Vec<String>,
    /// Per service, its assets (collected by [`Checker::launch`]).
    assets: Vec<Vec<RelPath>>,
}

/// Why an app data path may not be used, if it names what the runtime alone writes (the
/// manifest crate's rule, which `validate` applies too).
fn reserved(rel: &RelPath) -> Option<&'static str> {
    manifest::path::reserved_in_app_data(rel.parts().iter().map(String::as_str))
}

impl Checker<'_> {
    /// A path from bundle.json, lexically checked; `None` (and a problem) when refused.
    fn rel(&mut self, field: &str, text: &str, root: &str, need_file: bool) -> Option<RelPath> {
        match RelPath::parse(text) {
            Ok(rel) if need_file && rel.is_root() => {
                self.problems.push(format!(
                    "  {field}: `{text}` names the {root} directory itself, not a file in it"
                ));
                None
            }
            Ok(rel) => Some(rel),
            Err(why) => {
                self.problems.push(format!(
                    "  {field}: `{text}`: {why}; paths in bundle.json stay inside the {root} directory (relative, `/`-separated, no `..`)"
                ));
                None
            }
        }
    }

    /// What `rel` names beneath `dir`, a problem when a component is a symlink.
    fn probe(&mut self, field: &str, dir: &Dir, rel: &RelPath) -> Kind {
        match dir.probe(rel) {
            Ok(kind) => kind,
            Err(err) => {
                self.problems.push(format!("  {field}: {err}"));
                Kind::Missing
            }
        }
    }

    /// A relative program with a `/` (resolved against the service's `cwd`) must stay inside
    /// the bundle; bare names (found on `PATH`) and absolute system programs are left alone.
    fn program(&mut self, field: &str, command: Option<&String>, cwd: &RelPath) {
        let Some(program) = command else { return };
        if !program.contains('/') || program.starts_with('/') {
            return;
        }
        // `./tool` names `tool` in the working directory, as `manifest::path::check_program` reads it.
        let relative = program.strip_prefix("./").unwrap_or(program);
        if let Some(rel) = self.rel(field, relative, "bundle", true) {
            let bundle = self.bundle;
            self.probe(field, bundle, &cwd.join(&rel));
        }
    }

    fn launch(
        &mut self,
        index: usize,
        service: &Service,
        bundle_dir: &Path,
        platform: &str,
    ) -> Launch {
        let field = format!("services[{index}]");
        if let Err(why) = confine::check_file_name(service.id.as_str()) {
            self.problems.push(format!(
                "  {field}.id: `{}` {why}; a service id names its log file, so it must be a plain file name",
                service.id
            ));
        }
        let bundle = self.bundle;
        let mut assets = Vec::new();
        for (n, asset) in service.assets().iter().enumerate() {
            let asset_field = format!("{field}.assets[{n}].path");
            if let Some(rel) = self.rel(&asset_field, &asset.path, "bundle", true) {
                self.probe(&asset_field, bundle, &rel);
                assets.push(rel);
            }
        }
        self.assets.push(assets);
        let Some((key, binary)) = service.binary_for(platform) else {
            let reason = match &service.build {
                Some(build) => format!(
                    "no binary for {platform} in the manifest (it declares a build from `{}`: the bundle was not built)",
                    build.source_dir
                ),
                None => format!("no binary for {platform}"),
            };
            return Launch::Unavailable { reason };
        };
        let binary_field = format!("{field}.binaries.{key}");
        let path_field = format!("{binary_field}.path");
        let rel = self
            .rel(&path_field, &binary.path, "bundle", true)
            .unwrap_or_default();
        let kind = self.probe(&path_field, bundle, &rel);
        let cwd = match binary.cwd.as_deref() {
            Some("") => RelPath::default(),
            Some(cwd) => {
                let cwd_field = format!("{binary_field}.cwd");
                let rel = self
                    .rel(&cwd_field, cwd, "bundle", false)
                    .unwrap_or_default();
                self.probe(&cwd_field, bundle, &rel);
                rel
            }
            None => rel.parent(),
        };
        for (n, migration) in service.migrations().iter().enumerate() {
            let migration_field = format!("{field}.migrations[{n}].command");
            self.program(&migration_field, migration.command.first(), &cwd);
        }
        if let Some(command) = &service.health.command {
            self.program(&format!("{field}.health.command"), command.first(), &cwd);
        }
        // A ui-bundle is served in-process when its path is a directory (or, before the bundle
        // is staged, when it is the `universal` entry); otherwise it is a program like any other.
        let static_ui = kind == Kind::Dir || (kind == Kind::Missing && key.as_str() == "universal");
        if service.kind == ServiceType::UiBundle && static_ui {
            return Launch::StaticUi {
                root: rel.under(bundle_dir),
                rel,
            };
        }
        Launch::Program {
            program: rel.under(bundle_dir),
            args: binary.args.clone().unwrap_or_default(),
            cwd: cwd.under(bundle_dir),
            env: binary.env.clone().unwrap_or_default(),
        }
    }

    /// The app data paths, checked (lexically, against the reserved names and each other, and
    /// for symlinks when the app data directory exists).
    fn app_paths(&mut self, manifest: &Manifest, app_dir: Option<&Dir>) -> AppPaths {
        // Keyed as a case-insensitive file system reads names (`manifest::path::file_key`).
        let mut files: BTreeMap<Vec<String>, String> = BTreeMap::new();
        let mut probes: Vec<(String, RelPath)> = Vec::new();
        let file = |checker: &mut Checker, field: &str, text: &str| -> Option<RelPath> {
            let rel = checker.rel(field, text, "app data", true)?;
            checker.no_reserved(field, &rel);
            Some(rel)
        };
        let mut named = Vec::new();
        let token = file(self, "ipc.auth_token_path", &manifest.ipc.auth_token_path);
        if let Some(token) = &token {
            if token
                .file_name()
                .is_some_and(|name| manifest::path::file_key([name]) == [PORT_FILE])
            {
                self.problems.push(format!(
                    "  ipc.auth_token_path: `{token}` is the file the control port is written to"
                ));
            }
            named.push(("ipc.auth_token_path".to_owned(), token.clone()));
            named.push((
                "ipc.auth_token_path (its `ipc-port`)".to_owned(),
                token.parent().child(PORT_FILE),
            ));
        }
        let telemetry = file(self, "telemetry.file", &manifest.telemetry.file);
        if let Some(telemetry) = &telemetry {
            named.push(("telemetry.file".to_owned(), telemetry.clone()));
        }
        let mut log_dirs = Vec::new();
        let mut data_dirs = Vec::new();
        for (index, service) in manifest.services.iter().enumerate() {
            let field = format!("services[{index}].log_dir");
            let dir = match service.log_dir.as_deref() {
                None => RelPath::of(&["logs"]),
                Some("") => RelPath::default(),
                Some(text) => match self.rel(&field, text, "app data", false) {
                    Some(rel) => {
                        self.no_reserved(&field, &rel);
                        rel
                    }
                    None => RelPath::default(),
                },
            };
            if confine::check_file_name(service.id.as_str()).is_ok() {
                let log = dir.child(&format!("{}.log", service.id));
                named.push((format!("services[{index}] (its log file)"), log));
            }
            probes.push((field, dir.clone()));
            log_dirs.push(dir);
            let mut dirs = Vec::new();
            for (n, text) in service.data_dirs.iter().flatten().enumerate() {
                let field = format!("services[{index}].data_dirs[{n}]");
                if let Some(rel) = self.rel(&field, text, "app data", false) {
                    self.no_reserved(&field, &rel);
                    probes.push((field, rel.clone()));
                    dirs.push(rel);
                }
            }
            data_dirs.push(dirs);
        }
        for (field, rel) in &named {
            let key = manifest::path::file_key(rel.parts().iter().map(String::as_str));
            if let Some(other) = files.get(&key) {
                self.problems
                    .push(format!("  {field}: `{rel}` is also the file of {other}"));
            } else {
                files.insert(key, field.clone());
            }
        }
        if let Some(app_dir) = app_dir {
            if !owned_by_runtime(app_dir) {
                self.problems.push(format!(
                    "  app data: {} exists and holds files xbundle-runtime did not create (there is no runtime/lock): it may be another program's directory, whose files the runtime would overwrite (the default app data directory is named after app.name `{}`); use a new or empty directory (--app-data)",
                    app_dir.path().display(),
                    manifest.app.name
                ));
            }
            // The runtime's own places, then what bundle.json names.
            for own in [
                &["runtime"][..],
                &["runtime", "lock"],
                &["runtime", "ports.json"],
                &["runtime", "migrations.json"],
                &["secrets"],
            ] {
                self.probe("app data", app_dir, &RelPath::of(own));
            }
            for (field, rel) in named.iter().chain(&probes) {
                self.probe(field, app_dir, rel);
            }
            // Files appended to in place (not replaced): a FIFO there would block the start,
            // a hard link would carry the writes to the file's other names.
            let appended = named
                .iter()
                .filter(|(field, _)| field == "telemetry.file" || field.ends_with("(its log file)"))
                .map(|(field, rel)| (field.as_str(), rel.clone()))
                .chain([("app data", RelPath::of(&["runtime", "lock"]))]);
            for (field, rel) in appended {
                if let Err(err) = app_dir.probe_own(&rel)
                    && !confine::is_symlink_error(&err)
                {
                    self.problems.push(format!("  {field}: {err}"));
                }
            }
        }
        // (When a path was refused, the plan is not used: any placeholder does.)
        AppPaths {
            token: token.unwrap_or_default(),
            telemetry: telemetry.unwrap_or_default(),
            log_dirs,
            data_dirs,
            assets: std::mem::take(&mut self.assets),
        }
    }

    fn no_reserved(&mut self, field: &str, rel: &RelPath) {
        if let Some(why) = reserved(rel) {
            self.problems.push(format!("  {field}: `{rel}` {why}"));
        }
    }
}

/// `path` (absolute) with its longest existing prefix resolved (links followed, as the roots
/// may be links) and the rest normalized lexically: where it is on the file system, for
/// comparing two roots.
fn resolved(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    let base = loop {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            break real;
        }
        match existing.file_name() {
            Some(name) => {
                rest.push(name.to_owned());
                existing.pop();
            }
            None => break existing,
        }
    };
    let mut out = base;
    for part in rest.iter().rev() {
        match part.to_str() {
            Some(".") => {}
            Some("..") => {
                out.pop();
            }
            _ => out.push(part),
        }
    }
    out
}

/// Whether an existing app data directory is one the runtime may use: empty, or made by the
/// runtime (it creates `runtime/lock` before writing anything else; a directory whose only
/// entry is an empty `runtime/` is a start interrupted in between). A directory that holds
/// anything else may be another program's (two apps named alike, a mistyped `--app-data`),
/// and the runtime writes and deletes files at names bundle.json chooses.
fn owned_by_runtime(app_dir: &Dir) -> bool {
    let runtime = RelPath::of(&["runtime"]);
    if matches!(app_dir.probe(&runtime.child("lock")), Ok(Kind::File)) {
        return true;
    }
    // The first two entries say all that is needed (empty, only `runtime`, or more), however
    // many a directory holds.
    let entries = |path: &Path| -> Option<Vec<std::ffi::OsString>> {
        std::fs::read_dir(path)
            .ok()?
            .take(2)
            .map(|entry| entry.ok().map(|e| e.file_name()))
            .collect()
    };
    match entries(app_dir.path()).as_deref() {
        Some([]) => true,
        Some([only]) if only == "runtime" => {
            matches!(app_dir.probe(&runtime), Ok(Kind::Dir))
                && entries(&runtime.under(app_dir.path())).is_some_and(|e| e.is_empty())
        }
        _ => false,
    }
}

/// Dependencies first; ties keep manifest order. Validation has ruled out cycles and unknown
/// dependencies.
fn start_order(manifest: &Manifest) -> Vec<usize> {
    let index_of: BTreeMap<&str, usize> = manifest
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let mut placed = vec![false; manifest.services.len()];
    let mut order = Vec::new();
    while order.len() < manifest.services.len() {
        let before = order.len();
        for (index, service) in manifest.services.iter().enumerate() {
            if placed[index] {
                continue;
            }
            let ready = service
                .dependencies()
                .iter()
                .all(|dep| index_of.get(dep.as_str()).is_none_or(|&d| placed[d]));
            if ready {
                placed[index] = true;
                order.push(index);
            }
        }
        if order.len() == before {
            // Unreachable after validation; never loop forever.
            order.extend((0..placed.len()).filter(|&i| !placed[i]));
            break;
        }
    }
    order
}
