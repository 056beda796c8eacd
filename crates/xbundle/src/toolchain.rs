//! Toolchains and optional tools: which exist here, their identities (part of the keys of the
//! tasks that run them), and what each enables (`doctor`).
//!
//! Planning needs tool identities (a key is computed before a task runs), but running
//! `npm --version` alone costs ~180 ms, more than a whole no-op build may. So probes are
//! cached in the state directory (`<state>/tools/probes.json`), each under a fingerprint of
//! what its answer depends on: the program's file as `PATH` resolves it (path, size, mtime,
//! ctime, inode, following links, so re-pointing `/usr/bin/go` changes it), the environment
//! variables the tool reads (`GO*`, `RUSTUP_*`, …) and the files that select a toolchain
//! (rustup's settings and toolchain directory, `rust-toolchain.toml`). A changed fingerprint
//! re-runs the probe. **Known limit:** a tool replaced in place with the same size, mtime,
//! ctime and inode is not noticed (as with the stat cache of inputs).
//!
//! Nothing here installs anything: a missing tool is a [`Missing`] with the reason and the fix.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use crate::tool::{Cmd, which};

/// Why a tool or target cannot be used here, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub reason: String,
    pub fix: String,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.reason, self.fix)
    }
}

/// Go, as `go version` and `go env` describe it.
#[derive(Debug, Clone)]
pub struct Go {
    pub program: PathBuf,
    /// `go version`'s line, e.g. `go version go1.19.8 linux/amd64`.
    pub version: String,
    /// The `go env` values that change what a build produces.
    pub env: BTreeMap<String, String>,
}

/// `go env` variables a build's output depends on (the key includes them).
const GO_ENV: &[&str] = &[
    "GOROOT",
    "GOVERSION",
    "GOFLAGS",
    "GOEXPERIMENT",
    "GOAMD64",
    "GOARM",
    "GO386",
    "GOPROXY",
    "GONOSUMDB",
    "GOPRIVATE",
    "GOINSECURE",
];

impl Go {
    /// The identity that enters the key of every Go build.
    pub fn identity(&self) -> String {
        let mut identity = self.version.clone();
        for (name, value) in &self.env {
            identity.push_str(&format!("\n{name}={value}"));
        }
        identity
    }
}

/// Rust, as rustup's proxies resolve it here.
#[derive(Debug, Clone)]
pub struct Rust {
    pub cargo: PathBuf,
    /// `rustc -vV`.
    pub verbose_version: String,
    /// `cargo -V`.
    pub cargo_version: String,
    pub host: String,
    pub sysroot: PathBuf,
    /// Targets whose standard library is installed.
    pub targets: BTreeSet<String>,
}

impl Rust {
    pub fn identity(&self) -> String {
        format!(
            "{}\n{}",
            self.verbose_version.trim(),
            self.cargo_version.trim()
        )
    }

    /// Whether `triple` can be built here: its standard library is installed, and it is the
    /// host or a linker for it is configured (`CARGO_TARGET_<TRIPLE>_LINKER`).
    pub fn can_build(
        &self,
        triple: &str,
        env: &BTreeMap<OsString, OsString>,
    ) -> Result<(), Missing> {
        if !self.targets.contains(triple) {
            return Err(Missing {
                reason: format!("the Rust standard library for {triple} is not installed"),
                fix: format!("rustup target add {triple}"),
            });
        }
        if triple != self.host {
            let var = format!(
                "CARGO_TARGET_{}_LINKER",
                triple.to_uppercase().replace(['-', '.'], "_")
            );
            if !env.contains_key(&OsString::from(&var)) {
                return Err(Missing {
                    reason: format!("no linker for {triple} is configured"),
                    fix: format!("install a cross linker and set {var}"),
                });
            }
        }
        Ok(())
    }
}

/// Node and npm.
#[derive(Debug, Clone)]
pub struct Node {
    pub npm: PathBuf,
    pub node_version: String,
    pub npm_version: String,
}

impl Node {
    pub fn identity(&self) -> String {
        format!("node {}\nnpm {}", self.node_version, self.npm_version)
    }
}

/// Debian's `wixl` (msitools), which writes the msi installers.
#[derive(Debug, Clone)]
pub struct Wixl {
    pub program: PathBuf,
    /// `wixl --version`'s line, e.g. `0.101`.
    pub version: String,
}

impl Wixl {
    /// The identity that enters the key of every msi package task.
    pub fn identity(&self) -> String {
        format!("wixl {}", self.version)
    }
}

/// How to install wixl, for messages.
pub const WIXL_FIX: &str = "install wixl (Debian: apt-get install wixl; it comes with msitools)";

/// An optional tool `doctor` reports on.
#[derive(Debug, Clone, Serialize)]
pub struct Optional {
    pub name: &'static str,
    pub package: &'static str,
    pub enables: &'static str,
    pub path: Option<PathBuf>,
}

/// Tools `doctor` lists beside the toolchains: (program, Debian package, what it enables).
pub const OPTIONAL_TOOLS: &[(&str, &str, &str)] = &[
    ("dot", "graphviz", "`dag`/`graph --format svg`"),
    ("dpkg-deb", "dpkg", "checking .deb installers"),
    ("rpm", "rpm", "checking .rpm installers"),
    (
        "wixl",
        "wixl",
        "Windows .msi installers (`package:*@win-*:msi`)",
    ),
    ("lintian", "lintian", "linting .deb installers"),
    ("curl", "curl", "the download benchmark's reference"),
];

#[derive(Debug, Default, Serialize, Deserialize)]
struct ProbeFile {
    version: u32,
    probes: BTreeMap<String, Cached>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cached {
    fingerprint: String,
    lines: Vec<String>,
}

const PROBE_FILE_VERSION: u32 = 1;

/// The tools of this machine, probed lazily and cached (module docs).
pub struct Toolchains {
    env: BTreeMap<OsString, OsString>,
    root: PathBuf,
    /// `<state>/tools`, where probes are cached; `None`: not cached.
    cache_dir: Option<PathBuf>,
    cache: Mutex<(ProbeFile, bool)>,
    /// Each toolchain as this process found it: planning asks once per platform, and the
    /// answer (PATH search, stats, cache lookup) does not change within a run.
    go: OnceLock<Result<Go, Missing>>,
    rust: OnceLock<Result<Rust, Missing>>,
    node: OnceLock<Result<Node, Missing>>,
    wixl: OnceLock<Result<Wixl, Missing>>,
}

impl Toolchains {
    pub fn new(
        root: &Path,
        state_dir: Option<&Path>,
        env: BTreeMap<OsString, OsString>,
    ) -> Toolchains {
        let cache_dir = state_dir.map(|dir| dir.join("tools"));
        let cached = cache_dir
            .as_deref()
            .and_then(|dir| read_probe_file(root, dir))
            .filter(|file| file.version == PROBE_FILE_VERSION)
            .unwrap_or(ProbeFile {
                version: PROBE_FILE_VERSION,
                probes: BTreeMap::new(),
            });
        Toolchains {
            env,
            root: root.to_path_buf(),
            cache_dir,
            cache: Mutex::new((cached, false)),
            go: OnceLock::new(),
            rust: OnceLock::new(),
            node: OnceLock::new(),
            wixl: OnceLock::new(),
        }
    }

    pub fn env(&self) -> &BTreeMap<OsString, OsString> {
        &self.env
    }

    /// The state directory builds may keep their own caches in (cargo's target directories of
    /// service builds), when there is one.
    pub fn state_dir(&self) -> Option<&Path> {
        self.cache_dir.as_deref().and_then(Path::parent)
    }

    fn var(&self, name: &str) -> Option<String> {
        self.env
            .get(&OsString::from(name))
            .map(|v| v.to_string_lossy().into_owned())
    }

    /// The probe `name` under `fingerprint`, from the cache or by running `compute`.
    fn cached(
        &self,
        name: &str,
        fingerprint: String,
        compute: impl FnOnce() -> Result<Vec<String>, String>,
    ) -> Result<Vec<String>, String> {
        {
            let cache = self.cache.lock().expect("probe cache");
            if let Some(hit) = cache.0.probes.get(name)
                && hit.fingerprint == fingerprint
            {
                return Ok(hit.lines.clone());
            }
        }
        let lines = compute()?;
        let mut cache = self.cache.lock().expect("probe cache");
        cache.0.probes.insert(
            name.to_string(),
            Cached {
                fingerprint,
                lines: lines.clone(),
            },
        );
        cache.1 = true;
        Ok(lines)
    }

    /// The environment variables whose names start with one of `prefixes`, as text.
    fn vars_with(&self, prefixes: &[&str]) -> String {
        let mut text = String::new();
        for (name, value) in &self.env {
            let name = name.to_string_lossy();
            if prefixes.iter().any(|p| name.starts_with(p)) {
                text.push_str(&format!("{name}={}\n", value.to_string_lossy()));
            }
        }
        text
    }

    pub fn go(&self) -> Result<Go, Missing> {
        self.go.get_or_init(|| self.probe_go()).clone()
    }

    fn probe_go(&self) -> Result<Go, Missing> {
        let missing = |reason: String| Missing {
            reason,
            fix: "install Go (Debian: apt-get install golang-go; or https://go.dev/dl)".into(),
        };
        let program =
            which("go", &self.env).ok_or_else(|| missing("`go` is not on PATH".into()))?;
        let goenv = self.var("GOENV").map(PathBuf::from).or_else(|| {
            self.var("HOME")
                .map(|h| PathBuf::from(h).join(".config/go/env"))
        });
        let fingerprint = format!(
            "{}\n{}{}",
            file_fingerprint(&program),
            self.vars_with(&["GO", "CGO"]),
            goenv.as_deref().map(file_fingerprint).unwrap_or_default()
        );
        let lines = self
            .cached("go", fingerprint, || {
                let version = Cmd::new(&program).arg("version").probe(Some(&self.env))?;
                let env = Cmd::new(&program)
                    .args(["env", "-json"])
                    .args(GO_ENV.iter().copied())
                    .probe(Some(&self.env))?;
                let env: BTreeMap<String, String> = serde_json::from_slice(&env.stdout)
                    .map_err(|err| format!("`go env -json` printed something else: {err}"))?;
                let mut lines = vec![String::from_utf8_lossy(&version.stdout).trim().to_string()];
                lines.extend(env.into_iter().map(|(k, v)| format!("{k}={v}")));
                Ok(lines)
            })
            .map_err(missing)?;
        let mut lines = lines.into_iter();
        let version = lines.next().unwrap_or_default();
        let env = lines
            .filter_map(|line| {
                line.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        Ok(Go {
            program,
            version,
            env,
        })
    }

    pub fn rust(&self) -> Result<Rust, Missing> {
        self.rust.get_or_init(|| self.probe_rust()).clone()
    }

    fn probe_rust(&self) -> Result<Rust, Missing> {
        let missing = |reason: String| Missing {
            reason,
            fix: "install Rust with rustup (https://rustup.rs)".into(),
        };
        let rustc =
            which("rustc", &self.env).ok_or_else(|| missing("`rustc` is not on PATH".into()))?;
        let cargo =
            which("cargo", &self.env).ok_or_else(|| missing("`cargo` is not on PATH".into()))?;
        let rustup_home = self
            .var("RUSTUP_HOME")
            .map(PathBuf::from)
            .or_else(|| self.var("HOME").map(|h| PathBuf::from(h).join(".rustup")));
        let mut fingerprint = format!(
            "{}\n{}\n{}",
            file_fingerprint(&rustc),
            file_fingerprint(&cargo),
            self.vars_with(&["RUSTUP_TOOLCHAIN", "RUSTC", "CARGO_BUILD_TARGET"])
        );
        if let Some(home) = &rustup_home {
            fingerprint.push_str(&file_fingerprint(&home.join("settings.toml")));
            fingerprint.push_str(&file_fingerprint(&home.join("toolchains")));
        }
        for file in ["rust-toolchain.toml", "rust-toolchain"] {
            fingerprint.push_str(&file_fingerprint(&self.root.join(file)));
        }
        let lines = self
            .cached("rust", fingerprint, || {
                let verbose = Cmd::new(&rustc)
                    .arg("-vV")
                    .cwd(&self.root)
                    .probe(Some(&self.env))?;
                let sysroot = Cmd::new(&rustc)
                    .args(["--print", "sysroot"])
                    .cwd(&self.root)
                    .probe(Some(&self.env))?;
                let cargo_version = Cmd::new(&cargo)
                    .arg("-V")
                    .cwd(&self.root)
                    .probe(Some(&self.env))?;
                let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
                let mut lines = vec![
                    String::from_utf8_lossy(&verbose.stdout)
                        .trim()
                        .replace('\n', "\u{1f}"),
                    String::from_utf8_lossy(&cargo_version.stdout)
                        .trim()
                        .to_string(),
                    sysroot.clone(),
                ];
                lines.extend(installed_targets(Path::new(&sysroot)));
                Ok(lines)
            })
            .map_err(missing)?;
        let verbose_version = lines
            .first()
            .cloned()
            .unwrap_or_default()
            .replace('\u{1f}', "\n");
        let host = verbose_version
            .lines()
            .find_map(|line| line.strip_prefix("host: "))
            .unwrap_or_default()
            .to_string();
        Ok(Rust {
            cargo,
            cargo_version: lines.get(1).cloned().unwrap_or_default(),
            sysroot: PathBuf::from(lines.get(2).cloned().unwrap_or_default()),
            targets: lines.iter().skip(3).cloned().collect(),
            verbose_version,
            host,
        })
    }

    pub fn node(&self) -> Result<Node, Missing> {
        self.node.get_or_init(|| self.probe_node()).clone()
    }

    fn probe_node(&self) -> Result<Node, Missing> {
        let missing = |reason: String| Missing {
            reason,
            fix: "install Node.js and npm (Debian: apt-get install nodejs npm)".into(),
        };
        let node =
            which("node", &self.env).ok_or_else(|| missing("`node` is not on PATH".into()))?;
        let npm = which("npm", &self.env).ok_or_else(|| missing("`npm` is not on PATH".into()))?;
        let fingerprint = format!(
            "{}\n{}\n{}",
            file_fingerprint(&node),
            file_fingerprint(&npm),
            self.vars_with(&["NODE_OPTIONS", "npm_config_"])
        );
        let lines = self
            .cached("node", fingerprint, || {
                let node_version = Cmd::new(&node).arg("--version").probe(Some(&self.env))?;
                let npm_version = Cmd::new(&npm).arg("--version").probe(Some(&self.env))?;
                Ok(vec![
                    String::from_utf8_lossy(&node_version.stdout)
                        .trim()
                        .to_string(),
                    String::from_utf8_lossy(&npm_version.stdout)
                        .trim()
                        .to_string(),
                ])
            })
            .map_err(missing)?;
        Ok(Node {
            npm,
            node_version: lines.first().cloned().unwrap_or_default(),
            npm_version: lines.get(1).cloned().unwrap_or_default(),
        })
    }

    /// wixl, for msi installers (planning asks only when a profile has an msi to make; the
    /// answer is cached like the toolchains', so a no-op build runs no `wixl --version`).
    pub fn wixl(&self) -> Result<Wixl, Missing> {
        self.wixl.get_or_init(|| self.probe_wixl()).clone()
    }

    fn probe_wixl(&self) -> Result<Wixl, Missing> {
        let missing = |reason: String| Missing {
            reason,
            fix: WIXL_FIX.into(),
        };
        let program =
            which("wixl", &self.env).ok_or_else(|| missing("`wixl` is not on PATH".into()))?;
        let lines = self
            .cached("wixl", file_fingerprint(&program), || {
                let version = Cmd::new(&program).arg("--version").probe(Some(&self.env))?;
                Ok(vec![
                    String::from_utf8_lossy(&version.stdout).trim().to_string(),
                ])
            })
            .map_err(missing)?;
        Ok(Wixl {
            program,
            version: lines.first().cloned().unwrap_or_default(),
        })
    }

    /// The optional tools of [`OPTIONAL_TOOLS`], found or not.
    pub fn optional(&self) -> Vec<Optional> {
        OPTIONAL_TOOLS
            .iter()
            .map(|(name, package, enables)| Optional {
                name,
                package,
                enables,
                path: which(name, &self.env),
            })
            .collect()
    }

    /// Writes the probe cache back if a probe ran (best effort: a cache that cannot be
    /// written only costs the probes again next time).
    pub fn save(&self) {
        let Some(dir) = &self.cache_dir else { return };
        let cache = self.cache.lock().expect("probe cache");
        if !cache.1 {
            return;
        }
        let Ok(text) = serde_json::to_vec_pretty(&cache.0) else {
            return;
        };
        let _ = write_probe_file(&self.root, dir, &text);
    }
}

/// Read through the confined root: never through a link, at most 1 MiB.
fn read_probe_file(root: &Path, dir: &Path) -> Option<ProbeFile> {
    let relative = dir.strip_prefix(root).ok()?.to_str()?;
    let root = engine::confine::Dir::open_root(root).ok()?;
    let bytes = root
        .read_file(&format!("{relative}/probes.json"), 1 << 20)
        .ok()??;
    serde_json::from_slice(&bytes).ok()
}

fn write_probe_file(root: &Path, dir: &Path, text: &[u8]) -> Option<()> {
    let relative = dir.strip_prefix(root).ok()?.to_str()?;
    let root = engine::confine::Dir::open_root(root).ok()?;
    root.create_dir_all(relative).ok()?;
    root.write_file(
        &format!("{relative}/probes.json"),
        0o644,
        |file: &mut std::fs::File| {
            use std::io::Write;
            file.write_all(text)
                .map_err(|source| engine::confine::ConfineError::Io {
                    path: "probes.json".into(),
                    source,
                })
        },
    )
    .ok()
    .map(|_| ())
}

/// What identifies a file's version without reading it (following links).
fn file_fingerprint(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => format!(
            "{}:{}:{}.{}:{}.{}:{}\n",
            path.display(),
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
            m.ino()
        ),
        Err(_) => format!("{}:absent\n", path.display()),
    }
}

/// The targets whose standard library is in `sysroot` (`lib/rustlib/<triple>/lib`).
fn installed_targets(sysroot: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(sysroot.join("lib/rustlib")) else {
        return Vec::new();
    };
    let mut targets: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("lib").is_dir())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    targets.sort();
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_target_is_installed_and_others_name_their_fix() {
        let env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
        let tools = Toolchains::new(Path::new("/"), None, env.clone());
        let rust = tools.rust().expect("tests run with Rust installed");
        assert!(rust.targets.contains(&rust.host), "{rust:?}");
        assert_eq!(rust.can_build(&rust.host, &env), Ok(()));
        let missing = rust.can_build("mips64-made-up-target", &env).unwrap_err();
        assert_eq!(missing.fix, "rustup target add mips64-made-up-target");
    }

    #[test]
    fn a_probe_is_cached_under_its_fingerprint() {
        let env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
        let tools = Toolchains::new(Path::new("/"), None, env);
        let mut runs = 0;
        for fingerprint in ["a", "a", "b"] {
            tools
                .cached("x", fingerprint.into(), || {
                    runs += 1;
                    Ok(vec![runs.to_string()])
                })
                .unwrap();
        }
        assert_eq!(runs, 2);
    }
}
