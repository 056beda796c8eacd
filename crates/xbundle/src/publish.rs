//! `publish:<profile>`: what a release publishes beside its artifacts, made from the artifacts
//! on disk after every package task of the profile (so after signing): checksums anyone can
//! verify, the update manifests electron-updater reads, and a release description.
//!
//! | file (under `<out>/<profile>/`) | what |
//! |---|---|
//! | `packages/SHA256SUMS` | `<sha256 hex>  <file name>` per artifact, sorted by name (what `sha256sum -c` reads; a name holding `\`, LF or CR is written escaped as GNU coreutils does) |
//! | `packages/latest.yml`, `latest-mac.yml`, `latest-linux.yml`, `latest-linux-<arch>.yml` | electron-updater's channel files (below) |
//! | `release.json` | every artifact (platform, os, arch, format, file, size, sha256, sha512 in hex, signed, the manifest listing it), the checksums file and each manifest with their digests; `schema` is [`RELEASE_SCHEMA`] |
//!
//! **Update manifests**, as electron-updater (`electron-updater/src`, `Provider.ts`'s
//! `getChannelFilePrefix`, `findFile` and each updater) reads them: `version` (the app's,
//! which must be semantic versioning: electron-updater refuses anything else, so a manifest
//! with another version fails the task with the fix), `files[]` (`url`: the file name, beside
//! the manifest; `sha512`: base64 of the raw digest; `size`), `path` and `sha512` (the first
//! file's, for electron-updater before 2.16), `releaseDate` (ISO 8601 from the profile's epoch,
//! never the wall clock). A manifest lists only what its updater installs:
//!
//! - `latest-mac.yml`: the macOS `zip`s (every arch in one file: MacUpdater picks by `arm64` in
//!   the name, which `<profile>-darwin-arm64.zip` has). Never the `pkg`: Squirrel.Mac updates
//!   from a zip only.
//! - `latest-linux.yml` (x64), `latest-linux-<arch>.yml` (Node's `process.arch`: `arm64`,
//!   `arm`, `ia32`, …): the `deb` and `rpm` of that arch (and `AppImage`, `pacman` if such
//!   formats appear). Never `tar.gz` or `zip`: no Linux updater installs them, and DebUpdater
//!   and RpmUpdater fall back to the first file of another type, so a listed tarball would be
//!   handed to dpkg or rpm.
//! - `latest.yml` (Windows): NSIS installers (`exe`) only. NsisUpdater runs whatever it
//!   downloads as an NSIS installer, falling back to the first file listed, so neither the
//!   `zip` nor the `msi` may appear; xbundle writes no NSIS installer, so `latest.yml` is written
//!   only when one is packaged (electron-builder writes its own when it makes one).
//!
//! A manifest with nothing to list is not written (electron-updater refuses an empty one).
//! Which manifests exist is decided at planning from the artifacts' formats and platforms, so
//! they are declared outputs: the engine caches, restores and removes them like any other.
//!
//! **Invariant:** publishing reads each artifact once through the confined tree (regular files,
//! no link followed) and describes exactly those bytes; it writes only its declared outputs,
//! each atomically. It runs only when every package task of the profile succeeded (they are its
//! dependencies), so a failed or refused signing publishes nothing and the previous release
//! files stay as they were.
//!
//! **Invariant:** the outputs are deterministic functions of the artifacts, the app's version
//! and the epoch (no time, path or host in them): two checkouts give the same bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::sync::Arc;

use base64::Engine as _;
use camino::{Utf8Path, Utf8PathBuf};
use engine::confine::Dir;
use engine::{Action, ActionContext, ActionFailure, ActionOutput, TaskId, TaskSpec};
use serde::Serialize;
use sha2::Digest as _;

use crate::platform::Platform;

/// Bump when what publishing writes changes for the same inputs.
pub const PUBLISH_VERSION: u32 = 1;

/// `release.json`'s `schema`.
pub const RELEASE_SCHEMA: &str = "xbundle-release-v1";

/// The checksums file's name.
pub const CHECKSUMS: &str = "SHA256SUMS";

pub fn publish_id(profile: &str) -> TaskId {
    TaskId::new(format!("publish:{profile}"))
}

/// Where `release.json` lands (root-relative).
pub fn release_path(out: &Utf8Path, profile: &str) -> Utf8PathBuf {
    out.join(profile).join("release.json")
}

/// The directory of the artifacts, the checksums and the manifests (root-relative).
pub fn packages_dir(out: &Utf8Path, profile: &str) -> Utf8PathBuf {
    out.join(profile).join("packages")
}

/// One artifact of a release: a package task's output.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub platform: Platform,
    pub format: String,
    /// Root-relative.
    pub path: Utf8PathBuf,
    /// The package task writing it.
    pub task: TaskId,
    /// Whether a `[sign]` hook signs it.
    pub signed: bool,
}

impl Artifact {
    /// The artifact of `profile`'s package task for `platform` and `format` under `out`;
    /// `signed` when `[sign]` has a template for the format.
    pub fn of(
        out: &Utf8Path,
        profile: &str,
        platform: &Platform,
        format: &str,
        sign: &BTreeMap<String, String>,
    ) -> Artifact {
        Artifact {
            platform: platform.clone(),
            format: format.to_string(),
            path: crate::package::package_path(out, profile, &platform.id, format),
            task: crate::package::package_id(profile, &platform.id, format),
            signed: sign.contains_key(format),
        }
    }

    /// The file's name (the artifacts of a profile share one directory).
    pub fn name(&self) -> &str {
        self.path.file_name().unwrap_or(self.path.as_str())
    }

    /// The update manifest listing it, if any.
    pub fn manifest(&self) -> Option<String> {
        update_manifest(&self.platform.goos, &self.platform.goarch, &self.format)
    }
}

/// Node's `process.arch` for a Go architecture (what electron-updater names channel files by).
fn node_arch(goarch: &str) -> Option<&'static str> {
    Some(match goarch {
        "amd64" => "x64",
        "386" => "ia32",
        "arm64" => "arm64",
        "arm" => "arm",
        "ppc64le" | "ppc64" => "ppc64",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loong64" => "loong64",
        "mips" => "mips",
        "mipsle" => "mipsel",
        _ => return None,
    })
}

/// The electron-updater channel file that lists an artifact of `format` for `goos`/`goarch`,
/// or `None` when no updater installs it (see the module docs).
pub fn update_manifest(goos: &str, goarch: &str, format: &str) -> Option<String> {
    match (goos, format) {
        ("darwin", "zip") => Some("latest-mac.yml".into()),
        ("linux", "deb" | "rpm" | "AppImage" | "pacman") => match node_arch(goarch)? {
            "x64" => Some("latest-linux.yml".into()),
            arch => Some(format!("latest-linux-{arch}.yml")),
        },
        ("windows", "exe") => Some("latest.yml".into()),
        _ => None,
    }
}

/// The order of files in a manifest: electron-builder's (by architecture: ia32, x64, arm,
/// arm64, others; zip first), then by name.
fn manifest_order(artifact: &Artifact) -> (usize, usize, String) {
    let arch = match node_arch(&artifact.platform.goarch) {
        Some("ia32") => 0,
        Some("x64") => 1,
        Some("arm") => 2,
        Some("arm64") => 3,
        _ => 4,
    };
    let format = ["zip", "deb", "rpm", "AppImage", "pacman", "exe"]
        .iter()
        .position(|f| *f == artifact.format)
        .unwrap_or(usize::MAX);
    (arch, format, artifact.name().to_string())
}

/// What `publish:<profile>` is made of, decided at planning.
#[derive(Debug, Clone)]
pub struct PublishPlan {
    pub profile: String,
    pub out: Utf8PathBuf,
    /// Every artifact of the profile's stageable platforms.
    pub artifacts: Vec<Artifact>,
    /// A staged bundle.json of the profile (root-relative), whose `app.version` is the
    /// release's, and the stage task writing it.
    pub manifest: Utf8PathBuf,
    pub stage: TaskId,
    /// The release date (seconds since 1970).
    pub epoch: u64,
}

impl PublishPlan {
    /// The update manifests written (file names), each with its artifacts in order.
    fn manifests(&self) -> BTreeMap<String, Vec<&Artifact>> {
        let mut manifests: BTreeMap<String, Vec<&Artifact>> = BTreeMap::new();
        for artifact in &self.artifacts {
            if let Some(name) = artifact.manifest() {
                manifests.entry(name).or_default().push(artifact);
            }
        }
        for listed in manifests.values_mut() {
            listed.sort_by_key(|artifact| manifest_order(artifact));
        }
        manifests
    }

    /// Every file the task writes (root-relative).
    pub fn outputs(&self) -> Vec<Utf8PathBuf> {
        let packages = packages_dir(&self.out, &self.profile);
        let mut outputs = vec![packages.join(CHECKSUMS)];
        outputs.extend(self.manifests().into_keys().map(|name| packages.join(name)));
        outputs.push(release_path(&self.out, &self.profile));
        outputs
    }
}

pub fn spec(plan: PublishPlan) -> TaskSpec {
    let mut params = BTreeMap::new();
    params.insert("epoch".to_string(), plan.epoch.to_string());
    params.insert("manifest".to_string(), plan.manifest.to_string());
    params.insert(
        "artifacts".to_string(),
        serde_json::to_string(
            &plan
                .artifacts
                .iter()
                .map(|a| {
                    (
                        a.path.as_str(),
                        &a.platform.id,
                        &a.platform.goos,
                        &a.platform.goarch,
                        &a.format,
                        a.signed,
                    )
                })
                .collect::<Vec<_>>(),
        )
        .unwrap_or_default(),
    );
    let mut inputs: Vec<String> = plan.artifacts.iter().map(|a| a.path.to_string()).collect();
    inputs.push(plan.manifest.to_string());
    let mut deps: Vec<TaskId> = plan.artifacts.iter().map(|a| a.task.clone()).collect();
    deps.push(plan.stage.clone());
    deps.sort();
    deps.dedup();
    TaskSpec {
        id: publish_id(&plan.profile),
        kind: "publish".into(),
        impl_version: PUBLISH_VERSION,
        params,
        cwd: String::new(),
        inputs,
        outputs: plan.outputs().iter().map(ToString::to_string).collect(),
        env: Vec::new(),
        tools: BTreeMap::new(),
        deps,
        description: Some(format!(
            "Publish {}: checksums, update manifests, release.json",
            plan.profile
        )),
        action: Arc::new(Publish { plan }),
    }
}

fn failure(message: String) -> ActionFailure {
    ActionFailure {
        message,
        ..ActionFailure::default()
    }
}

/// An artifact's size and digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub size: u64,
    pub sha256: [u8; 32],
    pub sha512: [u8; 64],
}

impl Digests {
    pub fn of_bytes(bytes: &[u8]) -> Digests {
        let mut hasher = Hashers::default();
        hasher.update(bytes);
        hasher.finish()
    }

    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }

    pub fn sha512_hex(&self) -> String {
        hex(&self.sha512)
    }

    /// electron-updater's form: base64 of the raw digest.
    pub fn sha512_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.sha512)
    }
}

#[derive(Default)]
struct Hashers {
    size: u64,
    sha256: sha2::Sha256,
    sha512: sha2::Sha512,
}

impl Hashers {
    fn update(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        self.sha256.update(bytes);
        self.sha512.update(bytes);
    }

    fn finish(self) -> Digests {
        Digests {
            size: self.size,
            sha256: self.sha256.finalize().into(),
            sha512: self.sha512.finalize().into(),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Reads a regular file of the tree (no link followed) once, hashing it.
fn digest_file(tree: &Dir, path: &Utf8Path) -> Result<Digests, String> {
    let (mut file, stat) = tree
        .open_file(path.as_str())
        .map_err(|err| format!("reading {path}: {err}"))?
        .ok_or_else(|| format!("{path} is missing (was it packaged?)"))?;
    let mut hashers = Hashers::default();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file
            .read(&mut buffer)
            .map_err(|err| format!("reading {path}: {err}"))?;
        if read == 0 {
            break;
        }
        hashers.update(&buffer[..read]);
    }
    let digests = hashers.finish();
    if digests.size != stat.size {
        return Err(format!("{path} changed while it was read"));
    }
    Ok(digests)
}

/// One line of `SHA256SUMS` in GNU coreutils' format: two spaces (text mode, which is the
/// same bytes on every system `sha256sum` runs on); a name holding `\`, LF or CR is escaped
/// and the line marked with a leading `\`, as `sha256sum` itself writes it.
pub fn checksum_line(sha256_hex: &str, name: &str) -> String {
    if name.contains(['\\', '\n', '\r']) {
        let escaped = name
            .replace('\\', "\\\\")
            .replace('\n', "\\n")
            .replace('\r', "\\r");
        format!("\\{sha256_hex}  {escaped}\n")
    } else {
        format!("{sha256_hex}  {name}\n")
    }
}

/// A YAML double-quoted scalar holding exactly `text`: `"` and `\` escaped, and every
/// character YAML does not allow as printable text in a document (C0 and C1 controls, DEL,
/// surrogates, U+FFFE/FFFF) or would fold (line and paragraph separators, NEL) or strip
/// (the byte order mark) written as an escape. Any string is safe here, whatever a profile
/// names.
pub fn yaml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            ' '..='~' => out.push(c),
            '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..
                if !matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') =>
            {
                out.push(c)
            }
            c if (c as u32) <= 0xff => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// One update manifest's text (see the module docs): strings double-quoted, sizes plain.
pub fn manifest_yaml(version: &str, files: &[(String, Digests)], release_date: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "version: {}", yaml_string(version));
    out.push_str("files:\n");
    for (url, digests) in files {
        let _ = writeln!(out, "  - url: {}", yaml_string(url));
        let _ = writeln!(out, "    sha512: {}", yaml_string(&digests.sha512_base64()));
        let _ = writeln!(out, "    size: {}", digests.size);
    }
    if let Some((url, digests)) = files.first() {
        let _ = writeln!(out, "path: {}", yaml_string(url));
        let _ = writeln!(out, "sha512: {}", yaml_string(&digests.sha512_base64()));
    }
    let _ = writeln!(out, "releaseDate: {}", yaml_string(release_date));
    out
}

/// `release.json`.
#[derive(Debug, Serialize)]
struct Release {
    schema: &'static str,
    profile: String,
    version: String,
    /// Seconds since 1970: every timestamp in the artifacts.
    epoch: u64,
    release_date: String,
    artifacts: Vec<ReleaseArtifact>,
    checksums: ReleaseFile,
    update_manifests: Vec<ReleaseManifest>,
}

#[derive(Debug, Serialize)]
struct ReleaseArtifact {
    /// Relative to `release.json`'s directory.
    file: String,
    platform: String,
    os: String,
    arch: String,
    format: String,
    size: u64,
    sha256: String,
    sha512: String,
    signed: bool,
    update_manifest: Option<String>,
}

#[derive(Debug, Serialize)]
struct ReleaseFile {
    file: String,
    size: u64,
    sha256: String,
    sha512: String,
}

#[derive(Debug, Serialize)]
struct ReleaseManifest {
    #[serde(flatten)]
    file: ReleaseFile,
    /// The artifacts it lists, in its order (relative to `release.json`'s directory).
    lists: Vec<String>,
}

struct Publish {
    plan: PublishPlan,
}

impl Publish {
    /// The app's version, from the staged bundle.json.
    fn version(&self, tree: &Dir) -> Result<String, String> {
        let path = &self.plan.manifest;
        let bytes = tree
            .read_file(path.as_str(), manifest::MAX_MANIFEST_BYTES as u64)
            .map_err(|err| format!("reading {path}: {err}"))?
            .ok_or_else(|| format!("{path} is missing (was the stage built?)"))?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|err| format!("reading {path}: {err}"))?;
        Ok(value["app"]["version"]
            .as_str()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or("0.0.0")
            .to_string())
    }
}

impl Action for Publish {
    fn run(&self, context: &ActionContext<'_>) -> Result<ActionOutput, ActionFailure> {
        let plan = &self.plan;
        let tree = context.tree;
        let version = self.version(tree).map_err(failure)?;
        // Checked before anything is written: a refused release writes nothing.
        let manifests = plan.manifests();
        if !manifests.is_empty() && semver::Version::parse(&version).is_err() {
            return Err(failure(format!(
                "the app's version `{}` is not semantic versioning (MAJOR.MINOR.PATCH, e.g. 1.2.0), which electron-updater requires of {}: set the profile's version = \"1.2.0\" (or the scenario's service.version)",
                version.escape_debug(),
                manifests.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        let release_date = crate::package::archive::iso8601(plan.epoch);
        let base = plan.out.join(&plan.profile);
        let relative = |path: &Utf8Path| {
            path.strip_prefix(&base)
                .map_or_else(|_| path.to_string(), ToString::to_string)
        };
        let mut digests: BTreeMap<&str, Digests> = BTreeMap::new();
        for artifact in &plan.artifacts {
            digests.insert(
                artifact.path.as_str(),
                digest_file(tree, &artifact.path).map_err(failure)?,
            );
        }
        let packages = packages_dir(&plan.out, &plan.profile);
        let write = |path: &Utf8Path, text: &str| -> Result<ReleaseFile, ActionFailure> {
            crate::stage::write_bytes(tree, path, text.as_bytes()).map_err(failure)?;
            let digests = Digests::of_bytes(text.as_bytes());
            Ok(ReleaseFile {
                file: relative(path),
                size: digests.size,
                sha256: digests.sha256_hex(),
                sha512: digests.sha512_hex(),
            })
        };

        // SHA256SUMS, sorted by file name.
        let mut by_name: Vec<&Artifact> = plan.artifacts.iter().collect();
        by_name.sort_by(|a, b| a.name().cmp(b.name()));
        let mut sums = String::new();
        for artifact in &by_name {
            sums.push_str(&checksum_line(
                &digests[artifact.path.as_str()].sha256_hex(),
                artifact.name(),
            ));
        }
        let checksums = write(&packages.join(CHECKSUMS), &sums)?;

        let mut update_manifests = Vec::new();
        for (name, listed) in &manifests {
            let files: Vec<(String, Digests)> = listed
                .iter()
                .map(|a| (a.name().to_string(), digests[a.path.as_str()].clone()))
                .collect();
            let text = manifest_yaml(&version, &files, &release_date);
            update_manifests.push(ReleaseManifest {
                file: write(&packages.join(name), &text)?,
                lists: listed.iter().map(|a| relative(&a.path)).collect(),
            });
        }

        let release = Release {
            schema: RELEASE_SCHEMA,
            profile: plan.profile.clone(),
            version,
            epoch: plan.epoch,
            release_date,
            artifacts: by_name
                .iter()
                .map(|a| {
                    let d = &digests[a.path.as_str()];
                    ReleaseArtifact {
                        file: relative(&a.path),
                        platform: a.platform.id.clone(),
                        os: a.platform.goos.clone(),
                        arch: a.platform.goarch.clone(),
                        format: a.format.clone(),
                        size: d.size,
                        sha256: d.sha256_hex(),
                        sha512: d.sha512_hex(),
                        signed: a.signed,
                        update_manifest: a.manifest(),
                    }
                })
                .collect(),
            checksums,
            update_manifests,
        };
        let mut json = serde_json::to_string_pretty(&release)
            .map_err(|err| failure(format!("writing release.json: {err}")))?;
        json.push('\n');
        write(&release_path(&plan.out, &plan.profile), &json)?;
        Ok(ActionOutput::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(id: &str, goos: &str, goarch: &str) -> Platform {
        Platform::for_test(id, goos, goarch)
    }

    #[test]
    fn each_updater_gets_only_what_it_installs() {
        let cases = [
            ("darwin", "amd64", "zip", Some("latest-mac.yml")),
            ("darwin", "arm64", "zip", Some("latest-mac.yml")),
            ("darwin", "arm64", "pkg", None),
            ("darwin", "amd64", "tar.gz", None),
            ("linux", "amd64", "deb", Some("latest-linux.yml")),
            ("linux", "amd64", "rpm", Some("latest-linux.yml")),
            ("linux", "arm64", "deb", Some("latest-linux-arm64.yml")),
            ("linux", "arm64", "rpm", Some("latest-linux-arm64.yml")),
            ("linux", "arm", "deb", Some("latest-linux-arm.yml")),
            ("linux", "386", "rpm", Some("latest-linux-ia32.yml")),
            ("linux", "amd64", "AppImage", Some("latest-linux.yml")),
            ("linux", "amd64", "tar.gz", None),
            ("linux", "amd64", "zip", None),
            ("linux", "mips64le", "deb", None),
            ("windows", "amd64", "zip", None),
            ("windows", "amd64", "msi", None),
            ("windows", "arm64", "exe", Some("latest.yml")),
        ];
        for (goos, goarch, format, expected) in cases {
            assert_eq!(
                update_manifest(goos, goarch, format).as_deref(),
                expected,
                "{goos}/{goarch} {format}"
            );
        }
    }

    #[test]
    fn manifests_list_x64_before_arm64_and_zip_first() {
        let artifact = |id: &str, goos: &str, goarch: &str, format: &str| Artifact {
            platform: platform(id, goos, goarch),
            format: format.into(),
            path: format!("dist/p/packages/p-{id}.{format}").into(),
            task: TaskId::new(format!("package:p@{id}:{format}")),
            signed: false,
        };
        let plan = PublishPlan {
            profile: "p".into(),
            out: "dist".into(),
            artifacts: vec![
                artifact("darwin-arm64", "darwin", "arm64", "zip"),
                artifact("linux-x64", "linux", "amd64", "rpm"),
                artifact("darwin-x64", "darwin", "amd64", "zip"),
                artifact("linux-x64", "linux", "amd64", "deb"),
                artifact("linux-x64", "linux", "amd64", "tar.gz"),
                artifact("win-x64", "windows", "amd64", "msi"),
            ],
            manifest: "dist/p/stage/linux-x64/bundle.json".into(),
            stage: TaskId::new("stage:p@linux-x64"),
            epoch: 0,
        };
        let manifests = plan.manifests();
        let names =
            |name: &str| -> Vec<&str> { manifests[name].iter().map(|a| a.name()).collect() };
        assert_eq!(manifests.len(), 2);
        assert_eq!(
            names("latest-mac.yml"),
            ["p-darwin-x64.zip", "p-darwin-arm64.zip"]
        );
        assert_eq!(
            names("latest-linux.yml"),
            ["p-linux-x64.deb", "p-linux-x64.rpm"]
        );
        assert_eq!(
            plan.outputs(),
            [
                "dist/p/packages/SHA256SUMS",
                "dist/p/packages/latest-linux.yml",
                "dist/p/packages/latest-mac.yml",
                "dist/p/release.json"
            ]
            .map(Utf8PathBuf::from)
        );
    }

    #[test]
    fn digests_are_hex_and_electron_updaters_base64() {
        let d = Digests::of_bytes(b"abc");
        assert_eq!(
            d.sha256_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            d.sha512_base64(),
            "3a81oZNherrMQXNJriBBMRLm+k6JqX6iCp7u5ktV05ohkpkqJ0/BqDa6PCOj/uu9RU1EI2Q86A4qmslPpUyknw=="
        );
        assert_eq!(d.size, 3);
    }

    #[test]
    fn yaml_strings_quote_and_escape_everything_unsafe() {
        assert_eq!(yaml_string("1.2.0"), "\"1.2.0\"");
        assert_eq!(yaml_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(yaml_string("x\ny\u{7}"), "\"x\\ny\\x07\"");
        assert_eq!(
            yaml_string("\u{85}\u{2028}\u{feff}"),
            "\"\\x85\\u2028\\uFEFF\""
        );
        assert_eq!(yaml_string("é😀"), "\"é😀\"");
    }

    #[test]
    fn checksum_lines_escape_names_as_coreutils_does() {
        assert_eq!(
            checksum_line("ab", "p-linux-x64.tar.gz"),
            "ab  p-linux-x64.tar.gz\n"
        );
        assert_eq!(checksum_line("ab", "a\\b\nc"), "\\ab  a\\\\b\\nc\n");
        // What `sha256sum -c` itself accepts, for names a profile could never produce too.
        let dir = tempfile::tempdir().unwrap();
        let mut sums = String::new();
        for (index, name) in [
            "plain.tar.gz",
            "two  spaces",
            "back\\slash",
            "new\nline",
            " lead",
        ]
        .iter()
        .enumerate()
        {
            let bytes = format!("artifact {index}");
            std::fs::write(dir.path().join(name), &bytes).unwrap();
            sums.push_str(&checksum_line(
                &Digests::of_bytes(bytes.as_bytes()).sha256_hex(),
                name,
            ));
        }
        std::fs::write(dir.path().join("SHA256SUMS"), sums).unwrap();
        let check = std::process::Command::new("sha256sum")
            .args(["--check", "--strict", "SHA256SUMS"])
            .current_dir(dir.path())
            .output()
            .expect("coreutils' sha256sum");
        assert!(check.status.success(), "{check:?}");
    }

    #[test]
    fn manifests_read_back_as_written_whatever_the_strings() {
        let mut tricky: Vec<String> = (0u32..0x250)
            .chain([0x2028, 0x2029, 0xfeff, 0xfffe, 0xffff, 0x1f600])
            .filter_map(char::from_u32)
            .map(|c| format!("a{c}b"))
            .collect();
        tricky.extend(
            [
                "",
                "1.0",
                "true",
                "~",
                "null",
                "- x",
                "#x",
                "x: y",
                "'q'",
                "2024-01-02",
                "{a}",
                "[a]",
                "*a",
                "&a",
                "!a",
                "|",
                ">",
                "%x",
                "@x",
                "`x",
                " lead",
                "trail ",
            ]
            .map(String::from),
        );
        for text in &tricky {
            let digests = Digests::of_bytes(text.as_bytes());
            let yaml = manifest_yaml(text, &[(text.clone(), digests.clone())], text);
            let docs = yaml_rust2::YamlLoader::load_from_str(&yaml)
                .unwrap_or_else(|err| panic!("{text:?}: {err}\n{yaml}"));
            let doc = &docs[0];
            assert_eq!(doc["version"].as_str(), Some(text.as_str()), "{yaml}");
            assert_eq!(doc["releaseDate"].as_str(), Some(text.as_str()), "{yaml}");
            assert_eq!(
                doc["files"][0]["url"].as_str(),
                Some(text.as_str()),
                "{yaml}"
            );
            assert_eq!(doc["path"].as_str(), Some(text.as_str()), "{yaml}");
            assert_eq!(
                doc["files"][0]["sha512"].as_str(),
                Some(digests.sha512_base64().as_str())
            );
            assert_eq!(doc["files"][0]["size"].as_i64(), Some(digests.size as i64));
        }
    }
}
