//! Loading a bundle: bundle.json read and validated (errors name the file, the field and the
//! problem), the binary of each service picked for the running platform, the start order
//! computed from `dependencies`, and the `--dry-run` rendering of all that.
//!
//! **Invariant:** planning starts nothing and writes nothing; `--dry-run` shows exactly what a
//! start would do, without secret values (there are none yet) and without allocated ports
//! (only their ranges: allocation needs the machine's state).

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
    /// A `ui-bundle` whose path is a directory: served by the runtime itself.
    StaticUi { root: PathBuf },
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
}

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
        let text = std::fs::read_to_string(&manifest_path)
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
        let platform = current_platform();
        let order = start_order(&manifest);
        let launches = manifest
            .services
            .iter()
            .map(|service| launch_for(service, &bundle_dir, platform))
            .collect();
        Ok(Plan {
            manifest,
            manifest_path,
            bundle_dir,
            app_data,
            platform,
            order,
            launches,
            warnings,
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
            self.app_data.join(&m.ipc.auth_token_path).display()
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
                Launch::StaticUi { root } => {
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

fn launch_for(service: &Service, bundle_dir: &Path, platform: &str) -> Launch {
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
    // Paths in manifests written on Windows use backslashes.
    let path = bundle_dir.join(binary.path.replace('\\', "/"));
    // A ui-bundle is served in-process when its path is a directory (or, before the bundle
    // is staged, when it is the `universal` entry); otherwise it is a program like any other.
    let static_ui = path.is_dir() || (!path.exists() && key.as_str() == "universal");
    if service.kind == ServiceType::UiBundle && static_ui {
        return Launch::StaticUi { root: path };
    }
    let cwd = match &binary.cwd {
        Some(cwd) => bundle_dir.join(cwd.replace('\\', "/")),
        None => path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| bundle_dir.to_path_buf()),
    };
    Launch::Program {
        program: path,
        args: binary.args.clone().unwrap_or_default(),
        cwd,
        env: binary.env.clone().unwrap_or_default(),
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
