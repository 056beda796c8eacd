//! The remote plan of a Rust (cargo) build: what a REAPI worker needs to build a service's
//! binary, or the runtime, exactly as it would be built here ([`plan`]).
//!
//! The input root holds, at their paths in the repository:
//! - every file of every path package of the build (the workspace's members and their path
//!   dependencies), walked confined, without dot-files and dot-directories (`.git/`, a `.env`
//!   holding secrets: they never leave this machine) nor cargo target directories (a directory
//!   holding `CACHEDIR.TAG`, or the workspace's target directory);
//! - the workspace's `Cargo.lock`, and the repository's `.cargo/config.toml` (cargo reads it from
//!   the directory it runs in, the root, as it does here);
//! - below `.xbundle-remote/`: each registry crate of the lockfile as cargo downloaded it
//!   (`crates/<name>-<version>.crate` from cargo's download cache, by its `Cargo.lock` checksum,
//!   which *is* the archive's SHA-256: [`RemoteInput::Pinned`]) and `crates.txt` naming each
//!   with its checksum.
//!
//! The worker's script ([`SCRIPT`]) checks its toolchain is the key's (`rustc -vV`, `cargo -V`:
//! else exit [`CANNOT_RUN`], a warning and a build here), unpacks the crates into a private
//! directory source (cargo's vendoring: `.cargo-checksum.json` with the package checksum),
//! gives cargo a private `CARGO_HOME` whose config replaces crates.io by it and writes dep-info
//! relative to the root (`build.dep-info-basedir`), remaps the embedded source paths as a local
//! build does (the root, the target directory, the crates: [`crate::builds::REMAP_ROOT`] …), so
//! the binary is byte-identical to a local build's, builds `--offline --locked` into a private
//! target directory, and copies the binary and the binary's dep-info (the plan's depfile, so
//! the engine records the sources the build read, as a local build does) into the root.
//!
//! **Invariant:** anything the worker could not reproduce keeps the build here, with the
//! reason: no lockfile, a git dependency or another registry, a path package outside the
//! repository, a crate missing from the download cache, a link among the sources, a
//! repository `.cargo/config.toml` that replaces sources or patches dependencies, a cross
//! build (its linker is configured here), or sources beyond [`MAX_FILES`] / [`MAX_BYTES`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use engine::confine::{ConfineError, Dir, Kind, Walk};
use engine::remote_exec::{RemoteInput, RemotePlan, RemotePrep};
use engine::{Digest, Discovered};

use crate::builds::root_relative;

/// The exit code of [`SCRIPT`] when the worker's toolchain is not the key's.
pub const CANNOT_RUN: i32 = 97;

/// The most source files sent.
pub const MAX_FILES: usize = 50_000;
/// The most bytes of sources sent (crates included).
pub const MAX_BYTES: u64 = 2 << 30;

/// Where the plan's own files are in the input root.
const PREFIX: &str = ".xbundle-remote";
/// The depfile the script writes (root-relative).
pub const DEPFILE: &str = ".xbundle-remote/dep-info.d";

/// The script a worker runs. Arguments: `$1` the expected `rustc -vV`, `$2` the expected
/// `cargo -V`, `$3` the target triple, `$4` the manifest (root-relative), `$5` the binary
/// target, `$6` the output (root-relative), `$7` the depfile (root-relative), `$8` `remap` to
/// remap embedded source paths as a local build does.
pub const SCRIPT: &str = r#"set -u
for tool in cargo rustc tar; do
  command -v "$tool" >/dev/null 2>&1 || { echo "xbundle: the worker has no $tool on its PATH" >&2; exit 97; }
done
have=$(rustc -vV 2>&1)
[ "$have" = "$1" ] || { echo "xbundle: the worker's rustc is \"$(rustc -V 2>&1)\", not the one in the task's key" >&2; exit 97; }
have=$(cargo -V 2>&1)
[ "$have" = "$2" ] || { echo "xbundle: the worker's cargo is \"$have\", the task's key holds \"$2\"" >&2; exit 97; }
root=$(pwd -P)
case "$root" in *"'"*) echo "xbundle: the worker's directory has a quote in its name" >&2; exit 97;; esac
scratch=$(mktemp -d) || exit 1
trap 'rm -rf "$scratch"' EXIT
case "$scratch" in *"'"*) echo "xbundle: the worker's temporary directory has a quote in its name" >&2; exit 97;; esac
mkdir "$scratch/vendor" "$scratch/home" || exit 1
if [ -f .xbundle-remote/crates.txt ]; then
  while read -r name sum; do
    tar -xzf ".xbundle-remote/crates/$name.crate" -C "$scratch/vendor" || exit 1
    [ -d "$scratch/vendor/$name" ] || { echo "xbundle: $name.crate does not hold $name/" >&2; exit 1; }
    printf '{"files":{},"package":"%s"}' "$sum" > "$scratch/vendor/$name/.cargo-checksum.json" || exit 1
  done < .xbundle-remote/crates.txt
fi
cat > "$scratch/home/config.toml" <<EOF || exit 1
[source.crates-io]
replace-with = "xbundle-vendored"
[source.xbundle-vendored]
directory = '$scratch/vendor'
[build]
dep-info-basedir = '$root'
EOF
export CARGO_HOME="$scratch/home"
triple=$3; manifest=$4; bin=$5; output=$6; depfile=$7; remap=$8
# Embedded source paths as a local build remaps them (builds.rs, with_remapped_paths).
us=$(printf '\037')
remaps="--remap-path-prefix=$root=/xbundle/root$us--remap-path-prefix=$scratch/target=/xbundle/target$us--remap-path-prefix=$scratch/vendor=/xbundle/registry"
set --
if [ "$remap" != remap ]; then
  :
elif [ -n "${CARGO_ENCODED_RUSTFLAGS+set}" ]; then
  [ -n "$CARGO_ENCODED_RUSTFLAGS" ] && CARGO_ENCODED_RUSTFLAGS="$CARGO_ENCODED_RUSTFLAGS$us"
  export CARGO_ENCODED_RUSTFLAGS="$CARGO_ENCODED_RUSTFLAGS$remaps"
elif [ -n "${RUSTFLAGS+set}" ]; then
  encoded=
  set -f
  saved_ifs=$IFS; IFS=' '
  for flag in $RUSTFLAGS; do encoded="$encoded$flag$us"; done
  IFS=$saved_ifs
  set +f
  export CARGO_ENCODED_RUSTFLAGS="$encoded$remaps"
else
  set -- --config "build.rustflags=['--remap-path-prefix=$root=/xbundle/root','--remap-path-prefix=$scratch/target=/xbundle/target','--remap-path-prefix=$scratch/vendor=/xbundle/registry']"
fi
cargo build --release --offline --locked --message-format short --target "$triple" \
  --manifest-path "$manifest" --bin "$bin" --target-dir "$scratch/target" "$@" || exit $?
exe=$bin
case "$triple" in *windows*) exe=$bin.exe;; esac
mkdir -p "$(dirname "$output")" "$(dirname "$depfile")" || exit 1
cp "$scratch/target/$triple/release/$exe" "$output" || exit 1
cp "$scratch/target/$triple/release/$bin.d" "$depfile" || exit 1
"#;

/// What a build is, for its plan.
pub struct Build<'a> {
    /// Remap embedded source paths as the local build does (`builds::with_remapped_paths`).
    pub remap: bool,
    /// The package's manifest, root-relative.
    pub manifest: &'a str,
    pub bin: &'a str,
    pub triple: &'a str,
    /// `rustc -vV` and `cargo -V`, as the key holds them.
    pub rustc_version: &'a str,
    pub cargo_version: &'a str,
    /// Root-relative.
    pub output: &'a str,
}

/// One package of `Cargo.lock`.
#[derive(serde::Deserialize)]
struct LockPackage {
    name: String,
    version: String,
    source: Option<String>,
    checksum: Option<String>,
}

#[derive(serde::Deserialize)]
struct LockFile {
    #[serde(default)]
    package: Vec<LockPackage>,
}

/// crates.io, as `Cargo.lock` names it whatever the protocol.
const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";

/// The largest `Cargo.lock` or `.cargo/config.toml` read.
const MAX_CONFIG: u64 = 64 << 20;

/// The plan of a remote build of `build`, from `metadata` (with dependencies, every platform).
pub fn plan(
    tree: &Dir,
    root: &Path,
    build: &Build<'_>,
    metadata: &cargo_metadata::Metadata,
) -> RemotePrep {
    match try_plan(tree, root, build, metadata) {
        Ok(plan) => RemotePrep::Plan(Box::new(plan)),
        Err(why) => RemotePrep::Local(why),
    }
}

fn try_plan(
    tree: &Dir,
    root: &Path,
    build: &Build<'_>,
    metadata: &cargo_metadata::Metadata,
) -> Result<RemotePlan, String> {
    let workspace =
        root_relative(root, metadata.workspace_root.as_std_path()).ok_or_else(|| {
            format!(
                "the cargo workspace {} is not inside the repository",
                metadata.workspace_root
            )
        })?;
    let lock_path = join(&workspace, "Cargo.lock");
    let lock = tree
        .read_file(&lock_path, MAX_CONFIG)
        .map_err(|err| err.to_string())?
        .ok_or_else(|| {
            format!("{lock_path} does not exist: a worker would resolve the dependencies itself")
        })?;
    let lock: LockFile = toml::from_slice(&lock).map_err(|err| format!("{lock_path}: {err}"))?;
    let mut files = BTreeSet::from([lock_path.clone()]);
    let config = cargo_config(tree)?;
    files.extend(config);

    // The path packages' sources; registry crates by their pinned archives.
    let target_dir = root_relative(root, metadata.target_directory.as_std_path());
    let mut crates = Vec::new();
    let mut package_dirs = BTreeSet::new();
    for package in &metadata.packages {
        let Some(source) = &package.source else {
            let dir = package
                .manifest_path
                .parent()
                .and_then(|dir| root_relative(root, dir.as_std_path()))
                .ok_or_else(|| {
                    format!(
                        "the path package {} ({}) is not inside the repository",
                        package.name, package.manifest_path
                    )
                })?;
            package_dirs.insert(dir);
            continue;
        };
        if source.repr != CRATES_IO {
            return Err(format!(
                "{} {} comes from {}: a worker receives crates.io crates only",
                package.name, package.version, source.repr
            ));
        }
        crates.push((
            package.name.to_string(),
            package.version.to_string(),
            package.manifest_path.as_std_path(),
        ));
    }
    // Each directory once: a package inside another's directory is walked with it.
    let mut sent: u64 = files
        .iter()
        .filter_map(|path| match tree.lstat(path) {
            Ok(Some((Kind::File, stat))) => Some(stat.size),
            _ => None,
        })
        .sum();
    let mut walked: Vec<&str> = Vec::new();
    for dir in &package_dirs {
        let inside = |outer: &&str| {
            outer.is_empty()
                || dir
                    .strip_prefix(*outer)
                    .is_some_and(|rest| rest.starts_with('/'))
        };
        if walked.iter().any(inside) {
            continue;
        }
        sent += walk_sources(tree, dir, target_dir.as_deref(), &mut files)?;
        walked.push(dir);
    }
    let checksums: HashMap<(&str, &str), &str> = lock
        .package
        .iter()
        .filter(|p| p.source.as_deref() == Some(CRATES_IO))
        .filter_map(|p| {
            Some((
                (p.name.as_str(), p.version.as_str()),
                p.checksum.as_deref()?,
            ))
        })
        .collect();
    let mut inputs = Vec::new();
    let mut listing = String::new();
    for (name, version, manifest) in &crates {
        let checksum = checksums
            .get(&(name.as_str(), version.as_str()))
            .copied()
            .ok_or_else(|| format!("Cargo.lock holds no checksum of {name} {version}"))?;
        let digest = Digest::from_hex(checksum)
            .ok_or_else(|| format!("Cargo.lock's checksum of {name} {version} is not a SHA-256"))?;
        let archive = cached_crate(manifest, name, version).ok_or_else(|| {
            format!(
                "{name} {version} is not in cargo's download cache: `cargo fetch` downloads every platform's crates"
            )
        })?;
        let size = std::fs::metadata(&archive)
            .map_err(|err| format!("{}: {err}", archive.display()))?
            .len();
        sent += size;
        let dir = format!("{name}-{version}");
        listing.push_str(&format!("{dir} {checksum}\n"));
        inputs.push((
            format!("{PREFIX}/crates/{dir}.crate"),
            RemoteInput::Pinned {
                path: archive,
                digest,
                size,
                executable: false,
            },
        ));
    }
    if sent > MAX_BYTES {
        return Err(format!(
            "the build's sources are {sent} bytes, more than {MAX_BYTES}"
        ));
    }
    if !listing.is_empty() {
        inputs.push((
            format!("{PREFIX}/crates.txt"),
            RemoteInput::Bytes {
                bytes: listing.into_bytes(),
                executable: false,
            },
        ));
    }
    inputs.extend(
        files
            .iter()
            .map(|path| (path.clone(), RemoteInput::TreeFile(path.clone()))),
    );
    // Recorded as a local build records them: the workspace members' manifests (the sources
    // come from the depfile), and the lockfile.
    let mut discovered: BTreeSet<String> = metadata
        .workspace_packages()
        .iter()
        .filter_map(|package| root_relative(root, package.manifest_path.as_std_path()))
        .collect();
    discovered.insert(lock_path);
    let argv = [
        "sh",
        "-c",
        SCRIPT,
        "xbundle-cargo-build",
        build.rustc_version,
        build.cargo_version,
        build.triple,
        build.manifest,
        build.bin,
        build.output,
        DEPFILE,
        if build.remap { "remap" } else { "as-is" },
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    Ok(RemotePlan {
        argv,
        env: BTreeMap::new(),
        inputs,
        output_paths: vec![build.output.to_string()],
        discovered: Discovered {
            files: discovered.into_iter().collect(),
            listings: Vec::new(),
        },
        depfile: Some(DEPFILE.to_string()),
        toolchain: Some(format!("{}\n{}", build.rustc_version, build.cargo_version)),
        cannot_run_exit_code: Some(CANNOT_RUN),
    })
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// The repository's own cargo configuration (`.cargo/config.toml`, `.cargo/config`), which
/// cargo reads from the root it runs in: sent, unless it changes where sources come from.
fn cargo_config(tree: &Dir) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    for path in [".cargo/config.toml", ".cargo/config"] {
        match tree.lstat(path) {
            Ok(None) => continue,
            Ok(Some((Kind::File, _))) => {}
            Ok(Some(_)) => return Err(format!("{path} is not a regular file")),
            Err(err) => return Err(err.to_string()),
        }
        let text = tree
            .read_file(path, MAX_CONFIG)
            .map_err(|err| err.to_string())?
            .unwrap_or_default();
        let table: toml::Table = toml::from_slice(&text).map_err(|err| format!("{path}: {err}"))?;
        for key in ["source", "patch", "paths", "registries", "net"] {
            if table.contains_key(key) {
                return Err(format!(
                    "{path} sets `{key}`, which decides where cargo finds sources on this machine"
                ));
            }
        }
        found.push(path.to_string());
    }
    Ok(found)
}

/// Adds the files below `dir` (root-relative) to `files` and answers their bytes, without
/// dot-entries and cargo target directories; more than [`MAX_FILES`] files, or a link, is
/// refused (cargo would read through it here, a worker would lack it).
fn walk_sources(
    tree: &Dir,
    dir: &str,
    target_dir: Option<&str>,
    files: &mut BTreeSet<String>,
) -> Result<u64, String> {
    let mut problem = None;
    let mut bytes = 0;
    tree.walk(dir, &mut |entry| -> Result<Walk, ConfineError> {
        let Ok(path) = std::str::from_utf8(entry.relative) else {
            problem = Some(format!(
                "{} is not a UTF-8 name",
                engine::confine::escape(entry.relative)
            ));
            return Ok(Walk::Skip);
        };
        let name = path.rsplit('/').next().unwrap_or(path);
        // Dot-files and directories (`.env`, `.git/`, editors' state) are no sources, and
        // may hold what must never leave this machine.
        if name.starts_with('.') {
            return Ok(Walk::Skip);
        }
        match entry.kind {
            Kind::Dir => {
                let is_target = Some(path) == target_dir
                    || matches!(
                        tree.lstat(&format!("{path}/CACHEDIR.TAG")),
                        Ok(Some((Kind::File, _)))
                    );
                Ok(if is_target { Walk::Skip } else { Walk::Enter })
            }
            Kind::File => {
                if files.insert(path.to_string()) {
                    bytes += entry.stat().map_or(0, |stat| stat.size);
                }
                if files.len() > MAX_FILES {
                    problem = Some(format!(
                        "the build's sources are more than {MAX_FILES} files"
                    ));
                }
                Ok(Walk::Skip)
            }
            Kind::Symlink => {
                problem.get_or_insert_with(|| {
                    format!("{path} is a symbolic link among the build's sources")
                });
                Ok(Walk::Skip)
            }
            _ => Ok(Walk::Skip),
        }
    })
    .map_err(|err| err.to_string())?;
    match problem {
        Some(problem) => Err(problem),
        None => Ok(bytes),
    }
}

/// The archive cargo unpacked a registry crate from: its manifest is
/// `<registry>/src/<index>/<name>-<version>/Cargo.toml`, the archive
/// `<registry>/cache/<index>/<name>-<version>.crate`.
fn cached_crate(manifest: &Path, name: &str, version: &str) -> Option<PathBuf> {
    let unpacked = manifest.parent()?;
    let index = unpacked.parent()?;
    let src = index.parent()?;
    if src.file_name()? != "src" {
        return None;
    }
    let archive = src
        .parent()?
        .join("cache")
        .join(index.file_name()?)
        .join(format!("{name}-{version}.crate"));
    archive.is_file().then_some(archive)
}
