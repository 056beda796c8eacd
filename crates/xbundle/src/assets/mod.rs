//! Assets (the seed's Gap 3): files a bundle carries that are fetched by URL and verified by
//! SHA-256 rather than built, and prebuilt runtimes for platforms whose Rust target cannot be
//! built here. Declared in bundle.toml ([`config`]: `[[assets]]`, `[runtime.<platform>]`).
//!
//! Each (asset, platform) a profile uses becomes one engine task, `fetch:<id>@<platform>`
//! (`fetch:runtime@<platform>` for a prebuilt runtime), keyed by the URL, the SHA-256, how it
//! is unpacked, where it lands (`dest`) and its size limits: nothing of the machine. Its
//! outputs are under `<out>/.build/assets/<id>/<platform>/`:
//!
//! ```text
//! asset.json                  the bundle.json entry (manifest::Asset: path = dest, sha256,
//!                             size_bytes, url, unpacked), read back by `fetched`
//! files/<dest>                the file, or (unpacked) the directory's files
//! ```
//!
//! so staging copies `files/` into `stage/<platform>/` as it is, and puts the entry into the
//! bundle.json of the stage ([`fetched`]).
//!
//! The action (`FetchAction`): if the engine's CAS holds the blob of the SHA-256 (any earlier
//! fetch of the same content, by any profile, platform or workspace sharing the cache), it is
//! taken from there and nothing is downloaded; otherwise it is downloaded ([`download`]: hashed
//! while it arrives, retried, resumed, bounded), compared with the SHA-256 (a mismatch names
//! both digests and leaves no file and no cache entry), and `put` into the CAS (the archive,
//! for an unpacked asset). Fetches of one digest take turns within a process, so one file
//! named for two platforms is downloaded once. With `--offline` (or `XBUNDLE_OFFLINE=1`) a blob the
//! CAS does not hold is an error that says so; `file://` URLs are read all the same.
//! Unpacking (`unpack`) writes through the engine's confined tree and refuses escaping
//! entries and links, devices, FIFOs and absurd sizes or counts.
//!
//! For an unpacked directory the entry's `sha256` is the tree digest of `manifest::tree`,
//! computed here from the files as they were written ([`tree_digest`]) and by the runtime from
//! the files it finds.
//!
//! Tuning (environment, not part of any key: they change how patient a download is, not what
//! it produces): `XBUNDLE_FETCH_TIMEOUT_MS` (connect, response and per-read timeout, default
//! 30000), `XBUNDLE_FETCH_ATTEMPTS` (default 5), `XBUNDLE_FETCH_BACKOFF_MS` (first retry's
//! wait, doubled each time, default 500).

pub mod config;
mod download;
mod unpack;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use camino::{Utf8Path, Utf8PathBuf};
use engine::{Action, ActionContext, ActionFailure, ActionOutput, Digest, TaskId, TaskSpec};

use crate::config::BundleConfig;
use crate::diagnostic::Diagnostic;
use crate::platform::Platform;
use config::{Asset, Source, Unpack};

pub use download::{Downloaded, Settings, download};
pub use unpack::{Limits, MAX_ENTRIES, Unpacked};

/// Bump when what a fetch task produces changes for the same inputs.
pub const FETCH_VERSION: u32 = 1;
/// The environment variable (and what `--offline` sets) that forbids downloads.
pub const OFFLINE_VARIABLE: &str = "XBUNDLE_OFFLINE";
/// The name of the entry file in a fetch task's output directory.
pub const ENTRY_FILE: &str = "asset.json";
/// The directory of a fetch task's files, below its output directory.
pub const FILES_DIR: &str = "files";
/// The file name of a prebuilt runtime (with the platform's executable suffix).
pub const RUNTIME_NAME: &str = "xbundle-runtime";

/// `fetch:<asset>@<platform>`.
pub fn fetch_id(asset: &str, platform: &str) -> TaskId {
    TaskId::new(format!("fetch:{asset}@{platform}"))
}

/// `fetch:runtime@<platform>`: a prebuilt runtime.
pub fn runtime_fetch_id(platform: &str) -> TaskId {
    fetch_id(config::RUNTIME_ID, platform)
}

/// `<out>/.build/assets/<asset>/<platform>`: a fetch task's outputs (root-relative).
pub fn output_dir(out: &Utf8Path, asset: &str, platform: &str) -> Utf8PathBuf {
    out.join(".build").join("assets").join(asset).join(platform)
}

/// The prebuilt runtime fetched for `platform` (root-relative), `exe_suffix` being the
/// platform's (`.exe` on Windows).
pub fn runtime_file(out: &Utf8Path, platform: &str, exe_suffix: &str) -> Utf8PathBuf {
    output_dir(out, config::RUNTIME_ID, platform)
        .join(FILES_DIR)
        .join(format!("{RUNTIME_NAME}{exe_suffix}"))
}

/// The profile's platforms: named ones, or every known platform when it names none (as the
/// assembly reads them).
fn profile_platforms<'a>(
    profile: &'a crate::config::Profile,
    known: &'a [Platform],
) -> Vec<&'a str> {
    if profile.decl.platforms.is_empty() {
        known.iter().map(|p| p.id.as_str()).collect()
    } else {
        profile
            .decl
            .platforms
            .iter()
            .map(|p| p.get_ref().as_str())
            .collect()
    }
}

/// The (asset, platform) pairs a profile's bundles carry: the assets it names (`assets = […]`)
/// or, when it names none, every asset; each on the profile's platforms it is for. In the
/// order of bundle.toml, then of the profile's platforms.
pub fn profile_assets<'a>(
    config: &'a BundleConfig,
    profile: &str,
    known: &'a [Platform],
) -> Vec<(&'a Asset, String)> {
    let Some(profile) = config.profile(profile) else {
        return Vec::new();
    };
    let platforms = profile_platforms(profile, known);
    let chosen: Option<Vec<&str>> = profile
        .decl
        .assets
        .as_ref()
        .map(|ids| ids.iter().map(|id| id.get_ref().as_str()).collect());
    let mut pairs = Vec::new();
    for asset in &config.assets {
        if chosen
            .as_ref()
            .is_some_and(|ids| !ids.contains(&asset.id.as_str()))
        {
            continue;
        }
        for platform in &platforms {
            if asset
                .platforms
                .as_ref()
                .is_none_or(|list| list.iter().any(|p| p == platform))
            {
                pairs.push((asset, platform.to_string()));
            }
        }
    }
    pairs
}

/// Every fetch task of the configuration: each asset on every platform it is named for, and on
/// every platform of the profiles that use it; each prebuilt runtime. A platform with no file
/// in `platforms/` is an error at its line.
pub fn specs(config: &BundleConfig, known: &[Platform]) -> Result<Vec<TaskSpec>, Diagnostic> {
    let unknown = |name: &str, span: std::ops::Range<usize>| {
        config
            .diagnostic(
                format!("unknown platform `{name}`"),
                span,
                "no platforms/<id>.toml for this",
            )
            .help(format!(
                "platforms: {}",
                known
                    .iter()
                    .map(|p| p.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
    };
    let mut pairs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for asset in &config.assets {
        let entry = pairs.entry(asset.id.clone()).or_default();
        for (name, span) in asset.platforms.iter().flatten().zip(&asset.platform_spans) {
            if !known.iter().any(|p| &p.id == name) {
                return Err(unknown(name, span.clone()));
            }
            entry.insert(name.clone());
        }
    }
    for profile in &config.profiles {
        for (asset, platform) in profile_assets(config, &profile.name, known) {
            pairs.entry(asset.id.clone()).or_default().insert(platform);
        }
    }
    let mut specs = Vec::new();
    for asset in &config.assets {
        for platform in &pairs[&asset.id] {
            specs.push(spec(
                &asset.id,
                platform,
                FetchAction {
                    source: asset.source.clone(),
                    unpack: asset.unpack,
                    max_unpacked_size: asset.max_unpacked_size,
                    dest: asset.dest.clone(),
                    executable: false,
                    out_dir: output_dir(&config.workspace.out, &asset.id, platform),
                },
            ));
        }
    }
    for runtime in &config.runtimes {
        let Some(platform) = known.iter().find(|p| p.id == runtime.platform) else {
            return Err(unknown(&runtime.platform, runtime.platform_span.clone()));
        };
        specs.push(spec(
            config::RUNTIME_ID,
            &platform.id,
            FetchAction {
                source: runtime.source.clone(),
                unpack: None,
                max_unpacked_size: None,
                dest: format!("{RUNTIME_NAME}{}", platform.exe_suffix),
                executable: true,
                out_dir: output_dir(&config.workspace.out, config::RUNTIME_ID, &platform.id),
            },
        ));
    }
    Ok(specs)
}

fn spec(id: &str, platform: &str, action: FetchAction) -> TaskSpec {
    let mut params = BTreeMap::new();
    params.insert("url".to_string(), action.source.url.clone());
    params.insert("sha256".to_string(), action.source.sha256.clone());
    params.insert(
        "unpack".to_string(),
        action.unpack.map_or("", Unpack::name).to_string(),
    );
    params.insert("dest".to_string(), action.dest.clone());
    params.insert("max-size".to_string(), action.source.max_size.to_string());
    params.insert(
        "max-unpacked-size".to_string(),
        action
            .max_unpacked_size
            .map_or(String::new(), |size| size.to_string()),
    );
    params.insert("executable".to_string(), action.executable.to_string());
    params.insert(
        "implementation".to_string(),
        crate::IMPLEMENTATION.to_string(),
    );
    TaskSpec {
        id: fetch_id(id, platform),
        kind: "fetch".to_string(),
        impl_version: FETCH_VERSION,
        params,
        cwd: String::new(),
        inputs: Vec::new(),
        outputs: vec![format!("{}/**", action.out_dir)],
        env: Vec::new(),
        tools: BTreeMap::new(),
        deps: Vec::new(),
        description: Some(format!(
            "Fetch {} for {platform} ({})",
            id,
            manifest::redact_url(&action.source.url)
        )),
        action: Arc::new(action),
    }
}

/// What a fetch task made, for staging.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Root-relative directory whose contents go, as they are, into `stage/<platform>/`.
    pub files: Utf8PathBuf,
    /// The asset's bundle.json entry.
    pub entry: manifest::Asset,
}

/// Reads what `fetch:<asset>@<platform>` wrote below `out` (through the confined `tree`, as a
/// stage task does after it). The entry is checked: bundle path rule, a SHA-256.
pub fn fetched(
    tree: &engine::confine::Dir,
    out: &Utf8Path,
    asset: &str,
    platform: &str,
) -> Result<Fetched, String> {
    let dir = output_dir(out, asset, platform);
    let path = dir.join(ENTRY_FILE);
    let bytes = tree
        .read_file(path.as_str(), 64 * 1024)
        .map_err(|err| err.to_string())?
        .ok_or_else(|| format!("{path} is missing: run {} first", fetch_id(asset, platform)))?;
    let entry: manifest::Asset =
        serde_json::from_slice(&bytes).map_err(|err| format!("{path}: {err}"))?;
    manifest::RelativePath::new(&entry.path).map_err(|err| format!("{path}: {err}"))?;
    if !entry.sha256.as_deref().is_some_and(manifest::is_sha256) {
        return Err(format!("{path}: no SHA-256"));
    }
    Ok(Fetched {
        files: dir.join(FILES_DIR),
        entry,
    })
}

/// The tree digest (`manifest::tree`) and total size of unpacked files.
pub fn tree_digest(files: &[Unpacked]) -> Result<(String, u64), String> {
    let listed: Vec<manifest::tree::TreeFile> = files
        .iter()
        .map(|file| manifest::tree::TreeFile {
            path: file.path.clone(),
            executable: file.executable,
            size: file.size,
            sha256: file.digest.to_hex(),
        })
        .collect();
    let text = manifest::tree::listing(&listed)?;
    Ok((
        Digest::of_bytes(text.as_bytes()).to_hex(),
        files.iter().map(|file| file.size).sum(),
    ))
}

/// The lock of one digest's fetches in this process.
/// Held while a fetch creates its directory under `assets/`, and while a failed one removes
/// its empty directories, so no fetch removes a directory another is creating its own in.
static ASSET_DIRS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn digest_lock(digest: &Digest) -> Arc<std::sync::Mutex<()>> {
    static LOCKS: std::sync::Mutex<BTreeMap<Digest, Arc<std::sync::Mutex<()>>>> =
        std::sync::Mutex::new(BTreeMap::new());
    let mut locks = LOCKS.lock().unwrap_or_else(|e| e.into_inner());
    Arc::clone(locks.entry(*digest).or_default())
}

/// The work of one fetch task (module docs).
struct FetchAction {
    source: Source,
    unpack: Option<Unpack>,
    max_unpacked_size: Option<u64>,
    /// Relative to `files/`.
    dest: String,
    /// Published with mode 0755 (a runtime).
    executable: bool,
    /// Root-relative.
    out_dir: Utf8PathBuf,
}

fn failure(message: impl Into<String>) -> ActionFailure {
    ActionFailure {
        message: message.into(),
        ..ActionFailure::default()
    }
}

/// A duration in milliseconds from the run's environment.
fn env_number(context: &ActionContext<'_>, name: &str, default: u64) -> u64 {
    context
        .env
        .get(std::ffi::OsStr::new(name))
        .and_then(|value| value.to_str())
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(default)
}

/// Whether downloads are forbidden in this run (`--offline`, `XBUNDLE_OFFLINE=1`).
fn offline(context: &ActionContext<'_>) -> bool {
    context
        .env
        .get(std::ffi::OsStr::new(OFFLINE_VARIABLE))
        .and_then(|value| value.to_str())
        .is_some_and(|value| !matches!(value.trim(), "" | "0" | "false" | "no"))
}

impl Action for FetchAction {
    fn run(&self, context: &ActionContext<'_>) -> Result<ActionOutput, ActionFailure> {
        let result = self.fetch(context);
        if result.is_err() {
            // Nothing of a failed fetch stays: its files are gone already (temporary files,
            // rolled-back unpacking); its directory and the asset's go too when empty. Under
            // `ASSET_DIRS`, as every fetch's creation of its directory: `assets/<id>/` is shared
            // with the asset's other platforms, which may be creating theirs in it right now
            // (an empty parent removed under a concurrent fetch made its mkdir fail with
            // ENOENT). `assets/` itself is left: other assets' fetches share it.
            let _dirs = ASSET_DIRS.lock().unwrap_or_else(|e| e.into_inner());
            if context.tree.remove_empty_dir(self.out_dir.as_str()).ok() == Some(true)
                && let Some(asset_dir) = self.out_dir.parent()
            {
                let _ = context.tree.remove_empty_dir(asset_dir.as_str());
            }
        }
        result
    }
}

impl FetchAction {
    fn fetch(&self, context: &ActionContext<'_>) -> Result<ActionOutput, ActionFailure> {
        let expected = Digest::from_hex(&self.source.sha256)
            .ok_or_else(|| failure("the configured sha256 is not a digest"))?;
        let shown = manifest::redact_url(&self.source.url);
        // One fetch of a digest at a time in this process: the same file for two platforms is
        // downloaded once, the other fetch finds it in the CAS.
        let lock = digest_lock(&expected);
        let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
        let dir = {
            let _dirs = ASSET_DIRS.lock().unwrap_or_else(|e| e.into_inner());
            context
                .tree
                .create_dir_all(self.out_dir.as_str())
                .map_err(|err| failure(err.to_string()))?
        };
        let mut temp = dir.temp_file().map_err(|err| failure(err.to_string()))?;
        let mut from_cache = false;
        // An unreadable cache is a miss: the download is verified all the same.
        if let Ok(Some(mut blob)) = context.blobs.open(&expected) {
            match std::io::copy(&mut blob, temp.file()) {
                Ok(_) => from_cache = true,
                Err(_) => {
                    // A damaged blob (the store removed it): fetch again.
                    temp.file()
                        .set_len(0)
                        .and_then(|()| {
                            use std::io::Seek;
                            temp.file().seek(std::io::SeekFrom::Start(0)).map(drop)
                        })
                        .map_err(|err| failure(err.to_string()))?;
                }
            }
        }
        if !from_cache {
            if offline(context) && !self.source.url.starts_with("file://") {
                return Err(failure(format!(
                    "{shown} (sha256 {expected}) is not in the cache, and this run is offline (--offline or {OFFLINE_VARIABLE}): run once online to fetch it, or put the file in the cache"
                )));
            }
            let settings = Settings {
                timeout: std::time::Duration::from_millis(env_number(
                    context,
                    "XBUNDLE_FETCH_TIMEOUT_MS",
                    30_000,
                )),
                attempts: env_number(context, "XBUNDLE_FETCH_ATTEMPTS", 5).clamp(1, 100) as u32,
                backoff: std::time::Duration::from_millis(env_number(
                    context,
                    "XBUNDLE_FETCH_BACKOFF_MS",
                    500,
                )),
                max_size: self.source.max_size,
            };
            let transfer = crate::shell::Transfer::start(context.id.as_str(), None);
            let downloaded = download(&self.source.url, temp.file(), &settings, &transfer)
                .map_err(|err| failure(format!("downloading {err}")))?;
            drop(transfer);
            if downloaded.digest != expected {
                return Err(failure(format!(
                    "checksum mismatch for {shown}: bundle.toml says sha256 {expected}, the download ({} bytes) has sha256 {}; nothing was kept (fix the url or the sha256)",
                    downloaded.size, downloaded.digest
                )));
            }
        }
        let mode = if self.executable { 0o755 } else { 0o644 };
        temp.finish(mode).map_err(|err| failure(err.to_string()))?;
        if !from_cache {
            context
                .blobs
                .put(&dir.join(temp.name()), &expected)
                .map_err(|err| failure(format!("keeping {shown} in the cache: {err}")))?;
        }
        let files_base = format!("{FILES_DIR}/{}", self.dest);
        let entry = match self.unpack {
            None => {
                let stat = temp
                    .publish_into(&dir, &files_base)
                    .map_err(|err| failure(err.to_string()))?;
                manifest::Asset {
                    path: self.dest.clone(),
                    sha256: Some(expected.to_hex()),
                    size_bytes: Some(stat.size),
                    url: Some(shown.clone()),
                    unpacked: None,
                    extra: Default::default(),
                }
            }
            Some(kind) => {
                let (archive, stat) = dir
                    .open_file(temp.name())
                    .map_err(|err| failure(err.to_string()))?
                    .ok_or_else(|| failure("the downloaded archive vanished"))?;
                let limits = Limits {
                    max_bytes: self
                        .max_unpacked_size
                        .unwrap_or_else(|| stat.size.saturating_mul(100).max(64 << 20)),
                    max_entries: MAX_ENTRIES,
                };
                let files = unpack::unpack(kind, archive, &dir, &files_base, limits)
                    .map_err(|err| failure(format!("unpacking {shown}: {err}")))?;
                drop(temp);
                let (digest, total) = tree_digest(&files).map_err(failure)?;
                manifest::Asset {
                    path: self.dest.clone(),
                    sha256: Some(digest),
                    size_bytes: Some(total),
                    url: Some(shown.clone()),
                    unpacked: Some(true),
                    extra: Default::default(),
                }
            }
        };
        let mut text = serde_json::to_string_pretty(&entry).expect("entries serialize");
        text.push('\n');
        dir.write_file(ENTRY_FILE, 0o644, |file: &mut std::fs::File| {
            use std::io::Write;
            file.write_all(text.as_bytes())
                .map_err(|source| engine::confine::ConfineError::Io {
                    path: ENTRY_FILE.to_string(),
                    source,
                })
        })
        .map_err(|err| failure(err.to_string()))?;
        Ok(ActionOutput::default())
    }
}
