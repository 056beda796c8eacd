//! Installers and archives of a stage: `package:<profile>@<platform>:<format>` writes
//! `<out>/<profile>/packages/<profile>-<platform>.<format>` from the staged bundle directory,
//! natively (no packaging tool is run, so every format builds on any host; the msi alone needs
//! Debian's `wixl`, and is *unbuildable here*, with its fix, where it is missing), for the formats of
//! the profile (default: the platform's list) that apply to the platform ([`applies`]).
//!
//! | format | writer | what it installs |
//! |---|---|---|
//! | `tar.gz`, `zip` | [`archive`] | the stage below one top-level directory `<profile>-<platform>/` |
//! | `deb` | [`deb`] (`ar`, `tar`, gzip -6) | [`linux_payload`], a changelog and lintian overrides; control file, no maintainer scripts |
//! | `rpm` | [`rpm`](mod@rpm) (the `rpm` crate, zstd payload) | [`linux_payload`]; owns only the app's own directories |
//! | `pkg` | [`pkg`] | `/Applications/<display name>.app` (Info.plist, the launcher in `Contents/MacOS`, the stage in `Contents/Resources/app`) |
//! | `msi` | [`msi`] (Debian's `wixl`, when installed) | the stage under `Program Files\<display name>\`, a Start-menu shortcut |
//!
//! A thin payload (the thin client's, [`crate::electron::thin`]: `thin.json`, a launcher that
//! opens the deployed URL, the thin Electron project; no runtime) goes through the same writers:
//! `PackagePlan::thin` / `Input::thin` say so; the app block is then read from `thin.json`,
//! and the Linux launcher runs the payload's `launch` instead of the runtime.
//!
//! Installers lay the stage out as an installed app ([`Payload`]); on Linux ([`linux_payload`]):
//! the bundle under `/opt/<name>/`, a launcher `/usr/bin/<name>` that starts the runtime and
//! opens the UI in the browser (`--no-browser`: only start it), its manual page, a desktop
//! entry, an icon and a copyright file under `/usr/share`. The app's data lives in the user's
//! home (the runtime's app data directory), which no installer touches, so uninstalling leaves
//! it.
//!
//! What the installers say about the app ([`Meta`]) comes from the staged bundle.json's `app`
//! and the profile's `[profiles.NAME.installer]` (checked at load time by [`settings`]).
//!
//! **Reproducible:** entries sorted by path; directories listed once; owners 0:0 with no names;
//! modes 0755 (directories and executables) or 0644; every timestamp the profile's epoch
//! (`SOURCE_DATE_EPOCH`, else the last commit's time, else 1980-01-01: a task parameter, so it
//! is in the key); compression at fixed levels without names or times. The same stage gives
//! the same bytes on any machine and from any checkout path.
//!
//! **Signing:** a `[sign] <format>` template runs on the written artifact before it is
//! published ([`sign`]); checksums and update manifests are made later, from the signed file.
//!
//! **Remote:** with a remote executor, an unsigned, non-msi package is written by a worker
//! running xbundle's own binary (`__package-remote`, [`run_remote`]) on the serialized
//! [`PackagePlan`] and the stage's files: the same `write_unsigned` as a local run, so the
//! same bytes. Signed and msi packages stay here.
//!
//! **Invariant:** the stage is read through the engine's confined tree; a link in it is an error.

pub mod archive;
pub mod deb;
pub mod epoch;
pub mod launcher;
pub mod msi;
pub mod pkg;
pub mod rpm;
pub mod settings;
pub mod sign;

use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::sync::Arc;

use camino::{Utf8Path, Utf8PathBuf};
use engine::confine::Dir;
use engine::remote_exec::{RemoteInput, RemotePlan, RemotePrep};
use engine::{Action, ActionContext, ActionFailure, ActionOutput, TaskId, TaskSpec};

use crate::config::InstallerDecl;
use crate::platform::Platform;
use crate::stage::{TreeEntry, regular_tree};

/// Bump when what packaging produces changes for the same inputs.
pub const PACKAGE_VERSION: u32 = 3;

/// Every format bundle.toml may name, each with a writer here (an unknown one is a load-time
/// error, [`settings`]).
pub const KNOWN: &[&str] = &["tar.gz", "zip", "deb", "rpm", "msi", "pkg"];

/// The formats planned: all the known ones.
pub const FORMATS: &[&str] = KNOWN;

/// 1980-01-01T00:00:00Z: the timestamp when neither `SOURCE_DATE_EPOCH` nor a commit says.
pub const DEFAULT_EPOCH: u64 = 315_532_800;

/// Whether `format` makes sense for `platform`: portable archives everywhere, each installer
/// on its own system.
pub fn applies(format: &str, platform: &Platform) -> bool {
    match format {
        "deb" | "rpm" => platform.goos == "linux",
        "msi" => platform.goos == "windows",
        "pkg" => platform.goos == "darwin",
        _ => true,
    }
}

/// The formats a profile's packages of `platform` come in: the profile's `formats` (default:
/// the platform's list) that are written and apply to the platform.
pub fn formats(profile: &crate::config::Profile, platform: &Platform) -> Vec<String> {
    let listed: Vec<String> = if profile.decl.formats.is_empty() {
        platform.formats.clone()
    } else {
        profile
            .decl
            .formats
            .iter()
            .map(|f| f.get_ref().clone())
            .collect()
    };
    listed
        .into_iter()
        .filter(|f| FORMATS.contains(&f.as_str()) && applies(f, platform))
        .collect()
}

pub fn package_id(profile: &str, platform: &str, format: &str) -> TaskId {
    TaskId::new(format!("package:{profile}@{platform}:{format}"))
}

/// Where an artifact lands (root-relative).
pub fn package_path(out: &Utf8Path, profile: &str, platform: &str, format: &str) -> Utf8PathBuf {
    out.join(profile)
        .join("packages")
        .join(format!("{profile}-{platform}.{format}"))
}

/// One package task's inputs (serialized for a remote worker, [`run_remote`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackagePlan {
    pub profile: String,
    pub platform: Platform,
    pub format: String,
    pub out: Utf8PathBuf,
    /// The stage directory (root-relative) and its task.
    pub stage_dir: Utf8PathBuf,
    pub stage: TaskId,
    pub installer: InstallerDecl,
    /// Every timestamp in the artifact (seconds since 1970).
    pub epoch: u64,
    /// The `[sign]` template for this format.
    pub sign: Option<String>,
    /// The stage is a thin client's payload (see the module docs).
    pub thin: bool,
}

/// A package task that always runs here.
pub fn spec(plan: PackagePlan) -> TaskSpec {
    spec_with(plan, false)
}

/// A package task; `remote`: it may run on the remote executor (`[cache] remote-execute`
/// holds `package`; signed and msi packages still run here, saying why).
pub fn spec_with(plan: PackagePlan, remote: bool) -> TaskSpec {
    let output = output_of(&plan);
    let id = if plan.thin {
        crate::electron::thin::package_id(&plan.profile, &plan.platform.id, &plan.format)
    } else {
        package_id(&plan.profile, &plan.platform.id, &plan.format)
    };
    let mut params = BTreeMap::new();
    params.insert("format".to_string(), plan.format.clone());
    params.insert("stage".to_string(), plan.stage_dir.to_string());
    params.insert("epoch".to_string(), plan.epoch.to_string());
    params.insert(
        "platform".to_string(),
        serde_json::to_string(&(
            &plan.platform.id,
            &plan.platform.goos,
            &plan.platform.goarch,
            &plan.platform.rust_target,
            &plan.platform.exe_suffix,
        ))
        .unwrap_or_default(),
    );
    params.insert(
        "installer".to_string(),
        serde_json::to_string(&plan.installer).unwrap_or_default(),
    );
    let mut env = Vec::new();
    if let Some(template) = &plan.sign {
        params.insert("sign".to_string(), template.clone());
        env.extend(sign::variables(template));
    }
    TaskSpec {
        id,
        kind: "package".into(),
        impl_version: PACKAGE_VERSION,
        params,
        cwd: String::new(),
        inputs: plan.installer.icon.iter().cloned().collect(),
        outputs: vec![output.to_string()],
        env,
        tools: BTreeMap::new(),
        deps: vec![plan.stage.clone()],
        description: Some(format!(
            "Package {} for {} as {}",
            plan.profile, plan.platform.id, plan.format
        )),
        action: Arc::new(Package {
            plan,
            output,
            remote,
        }),
    }
}

fn failure(message: String) -> ActionFailure {
    ActionFailure {
        message,
        ..ActionFailure::default()
    }
}

/// What the installers say about the app: bundle.json's `app`, then the profile's
/// `[profiles.NAME.installer]`.
#[derive(Debug, Clone)]
pub struct Meta {
    /// The package name (`[a-z0-9][a-z0-9+.-]+`): deb and rpm name, launcher command,
    /// directory under `/opt`.
    pub name: String,
    pub display_name: String,
    pub version: String,
    pub description: String,
    /// `Name <email>`.
    pub maintainer: String,
    pub vendor: String,
    pub homepage: Option<String>,
    pub license: String,
    /// freedesktop.org categories, `;`-terminated.
    pub category: String,
    /// Reverse-DNS identifier.
    pub identifier: String,
    pub depends: Vec<String>,
    pub requires: Vec<String>,
    /// The msi's UpgradeCode (a GUID, upper case).
    pub upgrade_code: String,
    pub icon: Icon,
    /// Every timestamp (seconds since 1970).
    pub epoch: u64,
}

/// The app's icon: the profile's file, or a generated SVG.
#[derive(Debug, Clone)]
pub struct Icon {
    pub bytes: Vec<u8>,
    /// `svg` or `png`.
    pub ext: &'static str,
    /// A PNG's width and height (from its header); `None` for an SVG.
    pub size: Option<(u32, u32)>,
}

/// A GUID derived from `seed` (stable: the same seed, the same GUID), upper case.
pub fn stable_guid(seed: &str) -> String {
    let digest = engine::digest::Digest::of_bytes(seed.as_bytes()).to_hex();
    let hex = digest.to_ascii_uppercase();
    // A version-5-shaped GUID (name-based) built from SHA-256 instead of SHA-1.
    format!(
        "{}-{}-5{}-{}{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        ["8", "9", "A", "B"][usize::from(hex.as_bytes()[16] % 4)],
        &hex[17..20],
        &hex[20..32]
    )
}

/// Turns `text` into the first letter, upper case (for the generated icon).
fn initial(text: &str) -> char {
    text.chars()
        .find(char::is_ascii_alphanumeric)
        .map_or('A', |c| c.to_ascii_uppercase())
}

fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let width = u32::from_be_bytes(bytes[16..20].try_into().ok()?);
    let height = u32::from_be_bytes(bytes[20..24].try_into().ok()?);
    Some((width, height))
}

impl Meta {
    /// Reads the staged bundle.json's `app` and applies `installer` over it.
    pub fn resolve(
        tree: &Dir,
        stage: &Utf8Path,
        installer: &InstallerDecl,
        epoch: u64,
    ) -> Result<Meta, String> {
        Meta::resolve_file(tree, &stage.join("bundle.json"), installer, epoch)
    }

    /// [`Meta::resolve`] from the `app` block of `manifest_path` (bundle.json, or a thin
    /// payload's `thin.json`, whose `app.display_name` is the default display name).
    pub fn resolve_file(
        tree: &Dir,
        manifest_path: &Utf8Path,
        installer: &InstallerDecl,
        epoch: u64,
    ) -> Result<Meta, String> {
        let bytes = tree
            .read_file(manifest_path.as_str(), 64 << 20)
            .map_err(|err| format!("reading {manifest_path}: {err}"))?
            .ok_or_else(|| format!("{manifest_path} is missing (was the stage built?)"))?;
        let manifest: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|err| format!("reading {manifest_path}: {err}"))?;
        // bundle.json's text comes from service.json, where nothing refuses a line break or a
        // terminal escape: each control character becomes a space, so no installer (a control
        // file, a desktop entry, an rpm header) receives one.
        let app = |key: &str| {
            manifest["app"][key]
                .as_str()
                .map(|v| v.replace(char::is_control, " "))
                .filter(|v| !v.trim().is_empty())
        };
        let app_name = app("name").ok_or_else(|| format!("{manifest_path} has no app.name"))?;
        let name = match &installer.name {
            Some(name) => name.clone(),
            None => {
                let lowered = app_name.to_ascii_lowercase();
                if !settings::is_package_name(&lowered) {
                    return Err(format!(
                        "the app's name `{}` is not a package name; set [profiles.<profile>.installer] name = \"…\" (lowercase letters, digits, `+`, `-`, `.`)",
                        app_name.escape_debug()
                    ));
                }
                lowered
            }
        };
        let version = app("version").unwrap_or_else(|| "0.0.0".into());
        if !version.starts_with(|c: char| c.is_ascii_digit())
            || !version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.~-".contains(c))
        {
            return Err(format!(
                "the app's version `{}` cannot be a package version: it must start with a digit and hold only letters, digits, `.`, `+`, `~` and `-` (set the profile's version = \"1.2.0\")",
                version.escape_debug()
            ));
        }
        let display_name = installer
            .display_name
            .clone()
            .or_else(|| app("display_name"))
            .unwrap_or(app_name);
        let description = installer
            .description
            .clone()
            .or_else(|| app("description"))
            .unwrap_or_else(|| display_name.clone());
        let maintainer = installer
            .maintainer
            .clone()
            .unwrap_or_else(|| format!("{name} maintainers <maintainers@{name}.invalid>"));
        let vendor = installer.vendor.clone().unwrap_or_else(|| {
            maintainer
                .split('<')
                .next()
                .unwrap_or(&maintainer)
                .trim()
                .to_string()
        });
        let identifier = installer.identifier.clone().unwrap_or_else(|| {
            format!(
                "org.xbundle.{}",
                name.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
            )
        });
        let upgrade_code = installer
            .upgrade_code
            .clone()
            .map(|code| code.to_ascii_uppercase())
            .unwrap_or_else(|| stable_guid(&format!("upgrade-code:{identifier}")));
        let icon = match &installer.icon {
            Some(path) => {
                let bytes = tree
                    .read_file(path, 16 << 20)
                    .map_err(|err| format!("reading the icon {path}: {err}"))?
                    .ok_or_else(|| format!("the icon {path} is missing"))?;
                if path.ends_with(".png") {
                    let size = png_size(&bytes)
                        .ok_or_else(|| format!("the icon {path} is not a PNG image"))?;
                    Icon {
                        bytes,
                        ext: "png",
                        size: Some(size),
                    }
                } else {
                    Icon {
                        bytes,
                        ext: "svg",
                        size: None,
                    }
                }
            }
            None => Icon {
                bytes: launcher::default_icon(initial(&display_name)).into_bytes(),
                ext: "svg",
                size: None,
            },
        };
        Ok(Meta {
            name,
            display_name,
            version,
            description,
            maintainer,
            vendor,
            homepage: installer.homepage.clone(),
            license: installer
                .license
                .clone()
                .unwrap_or_else(|| "UNLICENSED".into()),
            category: installer
                .category
                .clone()
                .map(|c| if c.ends_with(';') { c } else { format!("{c};") })
                .unwrap_or_else(|| "Utility;".into()),
            identifier,
            depends: installer.depends.clone(),
            requires: installer.requires.clone(),
            upgrade_code,
            icon,
            epoch,
        })
    }
}

/// What a writer gets: the stage (read through the confined tree), its entries and the app.
pub struct Input<'a> {
    pub tree: &'a Dir,
    /// The stage directory, root-relative.
    pub stage: &'a Utf8Path,
    /// Every directory and file of the stage, sorted by path.
    pub entries: Vec<TreeEntry>,
    pub meta: Meta,
    pub platform: &'a Platform,
    /// The archives' top-level directory, `<profile>-<platform>` (`<profile>-thin-<platform>`).
    pub top: String,
    /// The stage is a thin client's payload: no runtime, its launcher opens a URL.
    pub thin: bool,
}

impl Input<'_> {
    /// Opens a stage file (`path` below the stage) with its size.
    pub fn open(&self, path: &str) -> Result<(std::fs::File, u64), String> {
        let relative = self.stage.join(path);
        let (file, stat) = self
            .tree
            .open_file(relative.as_str())
            .map_err(|err| format!("reading {relative}: {err}"))?
            .ok_or_else(|| format!("{relative} disappeared"))?;
        Ok((file, stat.size))
    }
}

/// An artifact's file system image: what an installer puts where.
#[derive(Debug, Clone, Default)]
pub struct Payload {
    /// Sorted by path; every directory listed once, before what it holds.
    pub entries: Vec<PayloadEntry>,
}

#[derive(Debug, Clone)]
pub struct PayloadEntry {
    /// Relative to the file system's root (`opt/notes-app/bundle.json`), `/`-separated.
    pub path: String,
    pub kind: PayloadKind,
}

#[derive(Debug, Clone)]
pub enum PayloadKind {
    Dir,
    File {
        source: Source,
        size: u64,
        mode: u32,
    },
}

#[derive(Debug, Clone)]
pub enum Source {
    /// A file of the stage (below the stage directory).
    Stage(String),
    /// Generated content (a launcher, a desktop entry…).
    Bytes(Arc<[u8]>),
}

impl Payload {
    /// Adds a directory and its missing parents.
    pub fn dir(&mut self, path: &str) {
        let mut at = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            if !self.entries.iter().any(|e| e.path == at) {
                self.entries.push(PayloadEntry {
                    path: at.clone(),
                    kind: PayloadKind::Dir,
                });
            }
        }
    }

    /// Adds generated content at `path` (and its directories).
    pub fn bytes(&mut self, path: &str, bytes: impl Into<Arc<[u8]>>, mode: u32) {
        let bytes = bytes.into();
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.entries.push(PayloadEntry {
            path: path.to_string(),
            kind: PayloadKind::File {
                size: bytes.len() as u64,
                source: Source::Bytes(bytes),
                mode,
            },
        });
    }

    /// Adds the whole stage below `at`.
    pub fn stage(&mut self, input: &Input<'_>, at: &str) {
        self.dir(at);
        for entry in &input.entries {
            let path = format!("{at}/{}", entry.path);
            if entry.dir {
                self.entries.push(PayloadEntry {
                    path,
                    kind: PayloadKind::Dir,
                });
            } else {
                self.entries.push(PayloadEntry {
                    path,
                    kind: PayloadKind::File {
                        source: Source::Stage(entry.path.clone()),
                        // The size the walk saw: a file that changes before it is copied is
                        // an error then (`Payload::copy`), never a corrupt artifact.
                        size: entry.size,
                        mode: mode(entry.executable),
                    },
                });
            }
        }
    }

    /// Sorts the entries by path (a directory sorts before what it holds).
    pub fn sort(&mut self) {
        self.entries.sort_by(|a, b| a.path.cmp(&b.path));
    }

    /// The total size of the files.
    pub fn size(&self) -> u64 {
        self.entries
            .iter()
            .map(|entry| match &entry.kind {
                PayloadKind::File { size, .. } => *size,
                PayloadKind::Dir => 0,
            })
            .sum()
    }

    /// Streams a file's content into `to` (exactly its recorded size: a stage file that changed
    /// length since is an error, never a corrupt archive).
    pub fn copy(
        input: &Input<'_>,
        source: &Source,
        size: u64,
        to: &mut dyn std::io::Write,
    ) -> Result<(), String> {
        match source {
            Source::Bytes(bytes) => to
                .write_all(bytes)
                .map_err(|err| format!("writing the artifact: {err}")),
            Source::Stage(path) => {
                let mut reader = Exact::open(input, path, size)?;
                std::io::copy(&mut reader, to)
                    .map_err(|err| format!("packaging {}: {err}", input.stage.join(path)))?;
                reader.finish()
            }
        }
    }
}

/// A stage file read in large blocks, exactly `size` bytes of it: shorter is an error (a tar
/// entry would be padded with zeros), longer is cut and then an error.
pub(crate) struct Exact {
    file: std::io::Take<BufReader<std::fs::File>>,
    shown: String,
    left: u64,
}

impl Exact {
    pub(crate) fn open(input: &Input<'_>, path: &str, size: u64) -> Result<Exact, String> {
        let (file, actual) = input.open(path)?;
        let shown = input.stage.join(path).to_string();
        if actual != size {
            return Err(format!("{shown} changed while it was packaged"));
        }
        Ok(Exact {
            file: BufReader::with_capacity(256 << 10, file).take(size),
            shown,
            left: size,
        })
    }

    /// Checks that every byte was read and that the file did not grow.
    pub(crate) fn finish(self) -> Result<(), String> {
        let mut file = self.file.into_inner();
        let mut probe = [0u8; 1];
        if self.left != 0 || file.read(&mut probe).map_err(|e| e.to_string())? != 0 {
            return Err(format!("{} changed while it was packaged", self.shown));
        }
        Ok(())
    }
}

impl Read for Exact {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} changed while it was packaged", self.shown),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// `text` escaped for XML text and attribute values (control characters become spaces).
pub(crate) fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// 0755 for directories and executables, 0644 for the rest.
pub fn mode(executable: bool) -> u32 {
    if executable { 0o755 } else { 0o644 }
}

/// The Linux layout shared by deb and rpm: the bundle under `/opt/<name>/`, the launcher
/// `/usr/bin/<name>`, its manual page, the desktop entry, the icon and the copyright file under
/// `/usr/share`.
pub fn linux_payload(input: &Input<'_>) -> Result<Payload, String> {
    let meta = &input.meta;
    let name = &meta.name;
    let mut payload = Payload::default();
    payload.stage(input, &format!("opt/{name}"));
    let launcher = if input.thin {
        crate::electron::thin::installed_launcher(meta, &format!("../../opt/{name}"))
    } else {
        launcher::unix_launcher(
            meta,
            &format!("../../opt/{name}"),
            &crate::stage::staged_runtime(input.platform),
        )
    };
    payload.bytes(&format!("usr/bin/{name}"), launcher.into_bytes(), 0o755);
    payload.bytes(
        &format!("usr/share/man/man1/{name}.1.gz"),
        launcher::gzip_best(launcher::man_page(meta, input.thin).as_bytes()),
        0o644,
    );
    payload.bytes(
        &format!("usr/share/applications/{name}.desktop"),
        launcher::desktop_entry(meta).into_bytes(),
        0o644,
    );
    let icon_dir = match meta.icon.size {
        Some((w, h)) => format!("usr/share/icons/hicolor/{w}x{h}/apps"),
        None => "usr/share/icons/hicolor/scalable/apps".to_string(),
    };
    payload.bytes(
        &format!("{icon_dir}/{name}.{}", meta.icon.ext),
        meta.icon.bytes.clone(),
        0o644,
    );
    payload.bytes(
        &format!("usr/share/doc/{name}/copyright"),
        launcher::copyright(meta).into_bytes(),
        0o644,
    );
    payload.sort();
    Ok(payload)
}

/// Where a remote package task's input root holds xbundle's binary and the plan, and the
/// hidden subcommand that runs the writer there ([`run_remote`]).
pub const REMOTE_BINARY: &str = ".xbundle-remote/xbundle";
pub const REMOTE_PLAN: &str = ".xbundle-remote/package-plan.json";
pub const REMOTE_COMMAND: &str = "__package-remote";

/// What the writers read of `plan`'s stage (the stage's files, the app block).
fn plan_input<'a>(tree: &'a Dir, plan: &'a PackagePlan) -> Result<Input<'a>, String> {
    let entries = regular_tree(tree, &plan.stage_dir)?;
    let manifest = plan.stage_dir.join(if plan.thin {
        crate::electron::thin::MANIFEST
    } else {
        "bundle.json"
    });
    let meta = Meta::resolve_file(tree, &manifest, &plan.installer, plan.epoch)?;
    Ok(Input {
        tree,
        stage: &plan.stage_dir,
        entries,
        meta,
        platform: &plan.platform,
        top: if plan.thin {
            format!("{}-thin-{}", plan.profile, plan.platform.id)
        } else {
            format!("{}-{}", plan.profile, plan.platform.id)
        },
        thin: plan.thin,
    })
}

/// Writes `plan`'s unsigned artifact at `output` (root-relative) through `tree`: the one code
/// path of a local run and of a remote worker's [`run_remote`] (`context`: `None` there, where
/// no format that runs a tool is sent).
fn write_unsigned(
    context: Option<&ActionContext<'_>>,
    tree: &Dir,
    plan: &PackagePlan,
    output: &Utf8Path,
) -> Result<(), String> {
    let input = plan_input(tree, plan)?;
    crate::stage::write_with(tree, output, 0o644, |file| {
        write_format(context, &input, &plan.format, file)
    })
}

/// The artifact path of `plan` (root-relative).
fn output_of(plan: &PackagePlan) -> Utf8PathBuf {
    if plan.thin {
        crate::electron::thin::package_path(
            &plan.out,
            &plan.profile,
            &plan.platform.id,
            &plan.format,
        )
    } else {
        package_path(&plan.out, &plan.profile, &plan.platform.id, &plan.format)
    }
}

/// The hidden `__package-remote PLAN` a remote worker runs in a package task's input root (its
/// working directory): reads the serialized [`PackagePlan`] at `plan_path` (root-relative,
/// confined: an absolute path, `..` or a link is refused), checks it is one that may run
/// remotely (unsigned, not msi) and that its paths stay below the root, then writes the
/// artifact with the very code of a local run. `Err`: the message, for stderr (exit 2).
pub fn run_remote(plan_path: &str) -> Result<(), String> {
    engine::confine::check_relative(plan_path)
        .map_err(|err| format!("the plan file {plan_path:?}: {err}"))?;
    let cwd = std::env::current_dir().map_err(|err| format!("the working directory: {err}"))?;
    let tree = Dir::open_root(&cwd).map_err(|err| format!("opening {}: {err}", cwd.display()))?;
    let (mut file, _) = tree
        .open_file(plan_path)
        .map_err(|err| format!("the plan file {plan_path}: {err}"))?
        .ok_or_else(|| format!("the plan file {plan_path} does not exist"))?;
    let mut text = Vec::new();
    file.by_ref()
        .take(16 << 20)
        .read_to_end(&mut text)
        .map_err(|err| format!("reading {plan_path}: {err}"))?;
    let plan: PackagePlan = serde_json::from_slice(&text)
        .map_err(|err| format!("{plan_path} is not a package plan: {err}"))?;
    if plan.sign.is_some() || plan.format == "msi" {
        return Err(format!(
            "a {} package{} is only built where the task runs",
            plan.format,
            if plan.sign.is_some() { " to sign" } else { "" }
        ));
    }
    let output = output_of(&plan);
    for path in [plan.stage_dir.as_str(), output.as_str()] {
        engine::confine::check_relative(path)
            .map_err(|err| format!("the plan names {path:?}: {err}"))?;
    }
    write_unsigned(None, &tree, &plan, &output)
}

struct Package {
    plan: PackagePlan,
    output: Utf8PathBuf,
    /// With a remote executor, write it there ([`Action::prepare_remote`]).
    remote: bool,
}

/// Writes one format into `file` (`context`: for the formats that run a tool; `None` on a
/// remote worker, where none is sent).
fn write_format(
    context: Option<&ActionContext<'_>>,
    input: &Input<'_>,
    format: &str,
    file: &mut std::fs::File,
) -> Result<(), String> {
    match format {
        "msi" => match context {
            Some(context) => msi::write(context, input, file),
            None => Err("an msi is only written where wixl runs".into()),
        },
        "pkg" => pkg::write(input, file),
        "tar.gz" => archive::tar_gz(input, file),
        "zip" => archive::zip(input, file),
        "deb" => deb::deb(input, file),
        "rpm" => rpm::rpm(input, file),
        other => Err(format!("no writer for the format `{other}`")),
    }
}

impl Action for Package {
    /// The artifact is written beside itself and renamed over it (after signing): a failed run
    /// keeps the last good one.
    fn replaces_outputs(&self) -> bool {
        true
    }

    fn prepare_remote(&self, _context: &ActionContext<'_>) -> Result<RemotePrep, ActionFailure> {
        if !self.remote {
            return Ok(RemotePrep::NotRemote);
        }
        let plan = &self.plan;
        if plan.sign.is_some() {
            return Ok(RemotePrep::Local(format!(
                "a signed {} is built and signed here: signing secrets never leave this machine",
                plan.format
            )));
        }
        if plan.format == "msi" {
            return Ok(RemotePrep::Local(
                "an msi needs wixl, which a worker is not known to have".into(),
            ));
        }
        let exe = std::env::current_exe().map_err(|err| {
            failure(format!(
                "could not find xbundle's own binary to send: {err}"
            ))
        })?;
        let bytes = serde_json::to_vec(plan)
            .map_err(|err| failure(format!("serializing the package plan: {err}")))?;
        Ok(RemotePrep::Plan(Box::new(RemotePlan {
            argv: vec![
                format!("./{REMOTE_BINARY}"),
                REMOTE_COMMAND.to_string(),
                REMOTE_PLAN.to_string(),
            ],
            inputs: vec![
                (REMOTE_BINARY.to_string(), RemoteInput::Executable(exe)),
                (
                    REMOTE_PLAN.to_string(),
                    RemoteInput::Bytes {
                        bytes,
                        executable: false,
                    },
                ),
            ],
            output_paths: vec![self.output.to_string()],
            ..RemotePlan::default()
        })))
    }

    fn run(&self, context: &ActionContext<'_>) -> Result<ActionOutput, ActionFailure> {
        let plan = &self.plan;
        let tree = context.tree;
        match &plan.sign {
            None => write_unsigned(Some(context), tree, plan, &self.output).map_err(failure)?,
            Some(template) => {
                let input = plan_input(tree, plan).map_err(failure)?;
                let scratch = crate::builds::scratch_dir().map_err(failure)?;
                let unsigned = scratch
                    .path()
                    .join(format!("unsigned.{}", plan.format.replace('/', "_")));
                let mut file = std::fs::File::create(&unsigned)
                    .map_err(|err| failure(format!("writing {}: {err}", unsigned.display())))?;
                write_format(Some(context), &input, &plan.format, &mut file).map_err(failure)?;
                drop(file);
                let signed = sign::run(context, template, &unsigned, &plan.format)?;
                let mut signed = std::fs::File::open(&signed)
                    .map_err(|err| failure(format!("reading the signed artifact: {err}")))?;
                crate::stage::write_from(tree, &mut signed, &self.output, 0o644)
                    .map_err(failure)?;
            }
        }
        Ok(ActionOutput::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_guids_are_guids_and_stable() {
        let a = stable_guid("upgrade-code:org.xbundle.notes-app");
        assert!(settings::is_guid(&a), "{a}");
        assert_eq!(a, stable_guid("upgrade-code:org.xbundle.notes-app"));
        assert_ne!(a, stable_guid("upgrade-code:org.xbundle.other"));
    }

    #[test]
    fn formats_apply_to_their_systems() {
        let platform = |goos: &str| Platform {
            id: format!("{goos}-x64"),
            rust_target: String::new(),
            goos: goos.into(),
            goarch: "amd64".into(),
            exe_suffix: String::new(),
            formats: Vec::new(),
        };
        assert!(applies("deb", &platform("linux")));
        assert!(!applies("deb", &platform("windows")));
        assert!(applies("msi", &platform("windows")));
        assert!(applies("pkg", &platform("darwin")));
        assert!(!applies("pkg", &platform("linux")));
        assert!(applies("zip", &platform("darwin")));
    }

    #[test]
    fn png_sizes_come_from_the_header() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend(256u32.to_be_bytes());
        png.extend(128u32.to_be_bytes());
        assert_eq!(png_size(&png), Some((256, 128)));
        assert_eq!(png_size(b"<svg/>"), None);
    }
}
