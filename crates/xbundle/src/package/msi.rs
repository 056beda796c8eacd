//! Windows installers (`msi`): a WiX source generated from the stage, compiled by Debian's
//! `wixl` (msitools), then made reproducible.
//!
//! What it installs: the stage under `ProgramFiles64Folder\<display name>\` (`ProgramFilesFolder`
//! for 32-bit x86; the display name made a valid Windows file name, else the package name), one
//! component per file (the file its key path), a folder component for each empty directory, and
//! a Start-menu shortcut `<display name>` in `ProgramMenuFolder` that runs
//! `runtime\xbundle-runtime.exe --bundle "[INSTALLDIR]." --open-ui` (the trailing `.` keeps the
//! directory's closing `\` from escaping the quote in Windows' argument parsing). The shortcut
//! belongs to the runtime's component, so it is installed and removed with it. A PNG icon of at
//! most 256×256 becomes the shortcut's and Add/Remove Programs' icon (an ICO wrapping the PNG);
//! the generated SVG cannot, and the shortcut then shows the runtime's own icon. Uninstalling
//! removes what was installed; the app's data lives in the user's profile, which the msi never
//! touches.
//!
//! Codes: `UpgradeCode` is the profile's (stable across versions: every build of the app
//! upgrades the last); `ProductCode` is derived from the upgrade code, the version, the
//! architecture and a digest of every file and setting the msi carries (so the same content is
//! the same product, and changed content at the same version still replaces it:
//! `MajorUpgrade` with same-version upgrades allowed); `PackageCode` from that digest and the
//! WiX source; component GUIDs from the upgrade code, the architecture and the file's path
//! (the component rules: the same file in the same place keeps its GUID across versions).
//! WiX ids are derived from file names (letters, digits, `_` and `.`, a hash of the path for
//! uniqueness). `ProductVersion` is the numeric prefix of the app's version, `1.2.3-beta` →
//! `1.2.3`, `2` → `2.0.0`; a major or minor above 255 or a build above 65535 is an error (MSI
//! cannot order such versions).
//!
//! **Reproducible:** wixl 0.101 writes a random package code and the current time into the
//! summary information stream, and honours no `SOURCE_DATE_EPOCH`; everything else it writes
//! depends only on its input, with the cabinet's file dates taken from the source files'
//! modification times. So the sources are copied into a private scratch directory (through the
//! confined tree, never following a link) with their modification time set to the epoch (at
//! the earliest 1980-01-01, the cabinet's first date), wixl runs there with `TZ=UTC`, and the
//! summary information's package code, creation and last-save times are then rewritten (the
//! `msi` crate) to the derived code and the epoch. Two builds of the same stage give the same
//! bytes (tested).
//!
//! **Limits (wixl's):** it writes text as Windows-1252; a file name or setting outside it is an
//! error naming it (wixl would crash or write an empty name). A `$` is passed through its
//! preprocessor as `$(var.xbundleDollar)`. No dialogs: the installer shows progress only.
//!
//! **Invariant:** every stage path is checked as a Windows file name (no `<>:"/\|?*`, control
//! characters, trailing dot or space, or reserved device name) before anything runs.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use engine::ActionContext;
use engine::digest::Hasher;

use super::{DEFAULT_EPOCH, Input, Payload, PayloadKind, stable_guid};
use crate::tool::Cmd;
use crate::toolchain::WIXL_FIX;

/// How the msi names an architecture.
struct Arch {
    /// wixl's `-a`.
    wixl: &'static str,
    program_files: &'static str,
    win64: bool,
}

fn arch(goarch: &str) -> Result<Arch, String> {
    match goarch {
        "amd64" => Ok(Arch {
            wixl: "x64",
            program_files: "ProgramFiles64Folder",
            win64: true,
        }),
        "arm64" => Ok(Arch {
            wixl: "arm64",
            program_files: "ProgramFiles64Folder",
            win64: true,
        }),
        "386" => Ok(Arch {
            wixl: "x86",
            program_files: "ProgramFilesFolder",
            win64: false,
        }),
        other => Err(format!(
            "an msi cannot be made for the architecture `{other}` (amd64, arm64 and 386 can)"
        )),
    }
}

/// The MSI `ProductVersion` of an app version: its leading numeric fields (at most three;
/// missing ones are 0), `1.2.3-beta` → `1.2.3`.
pub fn msi_version(version: &str) -> Result<String, String> {
    let numeric: String = version
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut fields: Vec<u64> = Vec::new();
    for field in numeric.split('.').take(3) {
        if field.is_empty() {
            break;
        }
        fields.push(field.parse().map_err(|_| too_large(version))?);
    }
    if fields.is_empty() {
        return Err(format!(
            "the version `{}` has no numeric part an msi can use",
            version.escape_debug()
        ));
    }
    fields.resize(3, 0);
    if fields[0] > 255 || fields[1] > 255 || fields[2] > 65_535 {
        return Err(too_large(version));
    }
    Ok(format!("{}.{}.{}", fields[0], fields[1], fields[2]))
}

fn too_large(version: &str) -> String {
    format!(
        "the version `{}` cannot be an msi ProductVersion (major and minor at most 255, build at most 65535); set the profile's version",
        version.escape_debug()
    )
}

/// Characters Windows-1252 holds beyond ASCII and Latin-1 (its 0x80–0x9F block).
const CP1252_EXTRA: &str = "€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ";

/// Whether wixl can write `text` (Windows-1252, no control characters).
fn cp1252(text: &str) -> bool {
    text.chars().all(|c| {
        (' '..='~').contains(&c) || ('\u{a0}'..='\u{ff}').contains(&c) || CP1252_EXTRA.contains(c)
    })
}

/// `text` for the msi, or why it cannot be.
fn setting(what: &str, text: &str) -> Result<String, String> {
    let text = text.replace(['\n', '\r', '\t'], " ");
    if cp1252(&text) {
        Ok(text)
    } else {
        Err(format!(
            "the {what} `{}` cannot be written into an msi: wixl writes Windows-1252 text only; set a Latin-script {what} in [profiles.<profile>.installer], or leave msi out of the profile's formats",
            text.escape_debug()
        ))
    }
}

const RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// Why `name` cannot be a Windows file name, if it cannot.
fn windows_name_problem(name: &str) -> Option<String> {
    if let Some(c) = name
        .chars()
        .find(|c| c.is_control() || "<>:\"/\\|?*".contains(*c))
    {
        return Some(format!("it holds {}", c.escape_debug()));
    }
    if name.ends_with(['.', ' ']) {
        return Some("it ends with a dot or a space".into());
    }
    let stem = name.split('.').next().unwrap_or(name).trim_end();
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem)) {
        return Some(format!("`{stem}` is a reserved device name"));
    }
    if !cp1252(name) {
        return Some("wixl writes Windows-1252 names only".into());
    }
    None
}

/// The display name as a folder and shortcut name (invalid characters become `_`), else the
/// package name.
fn folder_name(display: &str, name: &str) -> String {
    let cleaned: String = display
        .chars()
        .map(|c| {
            if c.is_control() || "<>:\"/\\|?*".contains(c) || !cp1252(&c.to_string()) {
                '_'
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned
        .trim_end_matches(['.', ' '])
        .trim_start()
        .to_string();
    if cleaned.is_empty() || windows_name_problem(&cleaned).is_some() {
        name.to_string()
    } else {
        cleaned
    }
}

/// A WiX identifier for `path`: `prefix`, the file name's letters, digits, `_` and `.` (at
/// most 40), and 12 hex digits of the path's digest (`[A-Za-z_][A-Za-z0-9_.]*`, ≤ 72).
fn wix_id(prefix: &str, path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let digest = engine::digest::Digest::of_bytes(path.as_bytes()).to_hex();
    format!("{prefix}_{cleaned}_{}", &digest[..12])
}

/// `text` as an XML attribute value for wixl: XML-escaped, and `$` hidden from its
/// preprocessor (which would expand `$(…)` and drop a lone `$`).
fn attr(text: &str) -> String {
    super::xml(text).replace('$', "$(var.xbundleDollar)")
}

/// A directory of the install tree.
#[derive(Default)]
struct Folder {
    dirs: BTreeMap<String, Folder>,
    /// (name, path below the stage, scratch source).
    files: Vec<(String, String, String)>,
}

impl Folder {
    fn insert_dir(&mut self, path: &str) {
        let mut at = self;
        for part in path.split('/') {
            at = at.dirs.entry(part.to_string()).or_default();
        }
    }

    fn insert_file(&mut self, path: &str, source: String) {
        let (parent, name) = match path.rsplit_once('/') {
            Some((parent, name)) => (Some(parent), name),
            None => (None, path),
        };
        let mut at = self;
        if let Some(parent) = parent {
            for part in parent.split('/') {
                at = at.dirs.entry(part.to_string()).or_default();
            }
        }
        at.files.push((name.to_string(), path.to_string(), source));
    }
}

/// What the generated source needs beyond the tree.
struct Source<'a> {
    arch: &'a Arch,
    upgrade_code: &'a str,
    /// What the shortcut starts (below the install directory), and with which arguments.
    target: &'a str,
    arguments: &'a str,
    shortcut: &'a str,
    description: &'a str,
    icon: bool,
}

/// Writes `folder` (at `path` below the install directory, with WiX id `id`) and collects the
/// component ids.
fn emit_folder(
    wxs: &mut String,
    folder: &Folder,
    path: &str,
    depth: usize,
    source: &Source<'_>,
    components: &mut Vec<String>,
) {
    let indent = "  ".repeat(depth);
    let win64 = if source.arch.win64 { "yes" } else { "no" };
    for (name, below, from) in &folder.files {
        let component = wix_id("c", below);
        let guid = stable_guid(&format!(
            "msi-component:{}:{}:{below}",
            source.upgrade_code, source.arch.wixl
        ));
        wxs.push_str(&format!(
            "{indent}<Component Id=\"{component}\" Guid=\"{guid}\" Win64=\"{win64}\">\n\
             {indent}  <File Id=\"{}\" Name=\"{}\" Source=\"{}\" KeyPath=\"yes\"/>\n",
            wix_id("f", below),
            attr(name),
            attr(from),
        ));
        if below == source.target {
            let icon = if source.icon {
                " Icon=\"AppIcon.ico\""
            } else {
                ""
            };
            wxs.push_str(&format!(
                "{indent}  <Shortcut Id=\"StartMenuShortcut\" Directory=\"ProgramMenuFolder\" Name=\"{}\" Description=\"{}\" Target=\"[#{}]\"{} WorkingDirectory=\"INSTALLDIR\"{icon}/>\n",
                attr(source.shortcut),
                attr(source.description),
                wix_id("f", below),
                source.arguments,
            ));
        }
        wxs.push_str(&format!("{indent}</Component>\n"));
        components.push(component);
    }
    for (name, child) in &folder.dirs {
        let below = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}/{name}")
        };
        wxs.push_str(&format!(
            "{indent}<Directory Id=\"{}\" Name=\"{}\">\n",
            wix_id("d", &below),
            attr(name)
        ));
        if child.files.is_empty() && child.dirs.is_empty() {
            // An empty directory is created by a component of its own.
            let component = wix_id("e", &below);
            let guid = stable_guid(&format!(
                "msi-folder:{}:{}:{below}",
                source.upgrade_code, source.arch.wixl
            ));
            wxs.push_str(&format!(
                "{indent}  <Component Id=\"{component}\" Guid=\"{guid}\" Win64=\"{win64}\"><CreateFolder/></Component>\n"
            ));
            components.push(component);
        }
        emit_folder(wxs, child, &below, depth + 1, source, components);
        wxs.push_str(&format!("{indent}</Directory>\n"));
    }
}

/// An ICO file holding one PNG image (what Windows Vista and later read), for a PNG of at most
/// 256×256.
fn ico_from_png(png: &[u8], (width, height): (u32, u32)) -> Option<Vec<u8>> {
    if width > 256 || height > 256 || width == 0 || height == 0 {
        return None;
    }
    let mut ico = Vec::with_capacity(22 + png.len());
    ico.extend(0u16.to_le_bytes()); // reserved
    ico.extend(1u16.to_le_bytes()); // an icon
    ico.extend(1u16.to_le_bytes()); // one image
    ico.push((width % 256) as u8); // 0 means 256
    ico.push((height % 256) as u8);
    ico.push(0); // no palette
    ico.push(0);
    ico.extend(1u16.to_le_bytes()); // planes
    ico.extend(32u16.to_le_bytes()); // bits per pixel
    ico.extend(u32::try_from(png.len()).ok()?.to_le_bytes());
    ico.extend(22u32.to_le_bytes()); // the image follows the header and this entry
    ico.extend_from_slice(png);
    Some(ico)
}

/// A writer that hashes what it forwards.
struct Tee<'a, W: Write> {
    to: W,
    hasher: &'a mut Hasher,
}

impl<W: Write> Write for Tee<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.to.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.to.flush()
    }
}

/// Sets a scratch file's modification time to `epoch`.
fn set_mtime(path: &Path, epoch: u64) -> Result<(), String> {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(UNIX_EPOCH + Duration::from_secs(epoch)))
        .map_err(|err| format!("setting the time of {}: {err}", path.display()))
}

/// Writes the msi of `input` into `file` (module docs).
pub fn write(
    context: &ActionContext<'_>,
    input: &Input<'_>,
    file: &mut std::fs::File,
) -> Result<(), String> {
    let meta = &input.meta;
    let arch = arch(&input.platform.goarch)?;
    let version = msi_version(&meta.version)?;
    let display = setting("display name", &meta.display_name)?;
    let vendor = setting("vendor", &meta.vendor)?;
    let description = setting("description", &meta.description)?;
    let folder = folder_name(&display, &meta.name);
    // The shortcut starts the runtime on the bundle, or a thin client's own launcher.
    let (runtime, arguments) = if input.thin {
        (crate::electron::thin::WINDOWS_LAUNCHER.to_string(), "")
    } else {
        (
            crate::stage::staged_runtime(input.platform),
            " Arguments=\"--bundle &quot;[INSTALLDIR].&quot; --open-ui\"",
        )
    };
    let wixl = crate::tool::which("wixl", context.env)
        .ok_or_else(|| format!("`wixl` is not on PATH ({WIXL_FIX})"))?;

    let mut payload = Payload::default();
    payload.stage(input, "stage");
    payload.sort();
    // Check every name before any work: Windows must be able to hold it.
    for entry in &payload.entries {
        let Some(below) = entry.path.strip_prefix("stage/") else {
            continue;
        };
        for part in below.split('/') {
            if let Some(problem) = windows_name_problem(part) {
                return Err(format!(
                    "{} cannot be installed by an msi: {problem} (rename it, or leave msi out of the profile's formats)",
                    input.stage.join(below)
                ));
            }
        }
    }
    if !payload
        .entries
        .iter()
        .any(|e| e.path == format!("stage/{runtime}"))
    {
        return Err(format!(
            "{} is missing: the Start-menu shortcut starts it",
            input.stage.join(&runtime)
        ));
    }

    // Copy the sources into a private directory, hashing what the msi will carry.
    let scratch = crate::builds::scratch_dir()?;
    let files_dir = scratch.path().join("files");
    std::fs::create_dir(&files_dir)
        .map_err(|err| format!("creating {}: {err}", files_dir.display()))?;
    let file_time = meta.epoch.max(DEFAULT_EPOCH);
    let mut hasher = Hasher::new();
    let mut tree = Folder::default();
    for (index, entry) in payload.entries.iter().enumerate() {
        let Some(below) = entry.path.strip_prefix("stage/") else {
            continue;
        };
        match &entry.kind {
            PayloadKind::Dir => {
                tree.insert_dir(below);
                hasher.update(format!("dir {below}\n").as_bytes());
            }
            PayloadKind::File { source, size, .. } => {
                let name = format!("files/{index}");
                let path = scratch.path().join(&name);
                let mut copy = std::fs::File::create(&path)
                    .map_err(|err| format!("writing {}: {err}", path.display()))?;
                hasher.update(format!("file {below} {size}\n").as_bytes());
                Payload::copy(
                    input,
                    source,
                    *size,
                    &mut Tee {
                        to: &mut copy,
                        hasher: &mut hasher,
                    },
                )?;
                drop(copy);
                set_mtime(&path, file_time)?;
                tree.insert_file(below, name);
            }
        }
    }
    let icon = match meta
        .icon
        .size
        .and_then(|size| ico_from_png(&meta.icon.bytes, size))
    {
        Some(ico) => {
            let path = scratch.path().join("AppIcon.ico");
            std::fs::write(&path, &ico)
                .map_err(|err| format!("writing {}: {err}", path.display()))?;
            hasher.update(b"icon\n");
            hasher.update(&ico);
            true
        }
        None => false,
    };
    for (what, value) in [
        ("name", meta.name.as_str()),
        ("display", display.as_str()),
        ("vendor", vendor.as_str()),
        ("description", description.as_str()),
        ("version", version.as_str()),
        ("upgrade", meta.upgrade_code.as_str()),
        ("arch", arch.wixl),
        ("homepage", meta.homepage.as_deref().unwrap_or("")),
    ] {
        hasher.update(format!("{what}={value}\n").as_bytes());
    }
    let content = hasher.finish().to_hex();
    let product_code = stable_guid(&format!(
        "msi-product:{}:{version}:{}:{content}",
        meta.upgrade_code, arch.wixl
    ));

    let mut wxs = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <!-- Generated by xbundle. -->\n\
         <Wix xmlns=\"http://schemas.microsoft.com/wix/2006/wi\">\n\
         <Product Id=\"{product_code}\" Name=\"{name}\" Language=\"1033\" Version=\"{version}\" Manufacturer=\"{vendor}\" UpgradeCode=\"{upgrade}\">\n\
         <Package InstallerVersion=\"500\" Compressed=\"yes\" InstallScope=\"perMachine\" Manufacturer=\"{vendor}\" Description=\"{description}\"/>\n\
         <MajorUpgrade AllowSameVersionUpgrades=\"yes\" DowngradeErrorMessage=\"A newer version of [ProductName] is already installed.\"/>\n\
         <Media Id=\"1\" Cabinet=\"app.cab\" EmbedCab=\"yes\"/>\n",
        name = attr(&display),
        vendor = attr(&vendor),
        upgrade = meta.upgrade_code,
        description = attr(&description),
    );
    if icon {
        wxs.push_str(
            "<Icon Id=\"AppIcon.ico\" SourceFile=\"AppIcon.ico\"/>\n\
             <Property Id=\"ARPPRODUCTICON\" Value=\"AppIcon.ico\"/>\n",
        );
    }
    if let Some(homepage) = &meta.homepage {
        wxs.push_str(&format!(
            "<Property Id=\"ARPURLINFOABOUT\" Value=\"{}\"/>\n",
            attr(&setting("homepage", homepage)?)
        ));
    }
    wxs.push_str(&format!(
        "<Directory Id=\"TARGETDIR\" Name=\"SourceDir\">\n\
         <Directory Id=\"ProgramMenuFolder\"/>\n\
         <Directory Id=\"{}\">\n\
         <Directory Id=\"INSTALLDIR\" Name=\"{}\">\n",
        arch.program_files,
        attr(&folder)
    ));
    let mut components = Vec::new();
    emit_folder(
        &mut wxs,
        &tree,
        "",
        1,
        &Source {
            arch: &arch,
            upgrade_code: &meta.upgrade_code,
            target: &runtime,
            arguments,
            shortcut: &folder,
            description: &description,
            icon,
        },
        &mut components,
    );
    let unique: BTreeSet<&String> = components.iter().collect();
    if unique.len() != components.len() {
        return Err("two stage paths give the same msi identifier".into());
    }
    wxs.push_str(
        "</Directory>\n</Directory>\n</Directory>\n<Feature Id=\"Complete\" Level=\"1\">\n",
    );
    for component in &components {
        wxs.push_str(&format!("<ComponentRef Id=\"{component}\"/>\n"));
    }
    wxs.push_str("</Feature>\n</Product>\n</Wix>\n");
    let wxs_path = scratch.path().join("app.wxs");
    std::fs::write(&wxs_path, &wxs)
        .map_err(|err| format!("writing {}: {err}", wxs_path.display()))?;
    let package_code = stable_guid(&format!(
        "msi-package:{content}:{}",
        engine::digest::Digest::of_bytes(wxs.as_bytes()).to_hex()
    ));

    // What wixl prints is reported live, as the task's output.
    Cmd::new(&wixl)
        .args([
            "-D",
            "xbundleDollar=$",
            "-a",
            arch.wixl,
            "-o",
            "app.msi",
            "app.wxs",
        ])
        .env("TZ", "UTC")
        .cwd(scratch.path())
        .run_in(context)
        .map_err(|failure| failure.message)?;

    // wixl's random package code and wall-clock times, made the derived code and the epoch.
    let built = scratch.path().join("app.msi");
    let mut package =
        msi::open_rw(&built).map_err(|err| format!("reading what wixl wrote: {err}"))?;
    let summary = package.summary_info_mut();
    summary.set_uuid(
        uuid::Uuid::parse_str(&package_code).map_err(|err| format!("package code: {err}"))?,
    );
    let time = UNIX_EPOCH + Duration::from_secs(meta.epoch);
    summary.set_creation_time(time);
    summary.set_last_save_time(time);
    package
        .flush()
        .map_err(|err| format!("rewriting the msi's summary information: {err}"))?;
    drop(package);
    let mut built =
        std::fs::File::open(&built).map_err(|err| format!("reading what wixl wrote: {err}"))?;
    std::io::copy(&mut built, file).map_err(|err| format!("writing the msi: {err}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_become_numeric_msi_versions() {
        assert_eq!(msi_version("1.2.3-beta").unwrap(), "1.2.3");
        assert_eq!(msi_version("1.2.3.4").unwrap(), "1.2.3");
        assert_eq!(msi_version("2").unwrap(), "2.0.0");
        assert_eq!(msi_version("0.9~rc1").unwrap(), "0.9.0");
        assert_eq!(msi_version("255.255.65535").unwrap(), "255.255.65535");
        assert!(msi_version("256.0.0").unwrap_err().contains("at most 255"));
        assert!(msi_version("1.0.65536").is_err());
        assert!(msi_version("99999999999999999999999").is_err());
    }

    #[test]
    fn wix_ids_are_valid_identifiers_from_any_name() {
        for path in [
            "bundle.json",
            "ui/app/assets/index-3f2a.js",
            "weird name (1)/$HOME ünï.txt",
            "9starts-with-a-digit",
            &"x".repeat(300),
        ] {
            let id = wix_id("f", path);
            assert!(id.len() <= 72, "{id}");
            let mut chars = id.chars();
            assert!(chars.next().unwrap().is_ascii_alphabetic(), "{id}");
            assert!(
                chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.'),
                "{id}"
            );
        }
        assert_ne!(wix_id("f", "a/x.txt"), wix_id("f", "b/x.txt"));
    }

    #[test]
    fn names_windows_cannot_hold_are_refused() {
        assert_eq!(windows_name_problem("bundle.json"), None);
        assert_eq!(windows_name_problem("Ünïcödé €.txt"), None);
        assert!(windows_name_problem("a:b").is_some());
        assert!(windows_name_problem("trailing.").is_some());
        assert!(windows_name_problem("con.txt").is_some());
        assert!(windows_name_problem("COM1").is_some());
        assert!(windows_name_problem("日本.txt").is_some());
        assert!(windows_name_problem("tab\there").is_some());
        assert_eq!(folder_name("Notes: the app?", "notes"), "Notes_ the app_");
        assert_eq!(folder_name("日本", "notes"), "__");
        assert_eq!(folder_name("CON", "notes"), "notes");
        assert_eq!(folder_name("...", "notes"), "notes");
    }

    #[test]
    fn attributes_are_escaped_for_xml_and_wixl() {
        assert_eq!(
            attr(r#"a&b<c>"d'$(env.HOME)"#),
            "a&amp;b&lt;c&gt;&quot;d&apos;$(var.xbundleDollar)(env.HOME)"
        );
    }

    #[test]
    fn an_ico_wraps_a_png() {
        let ico = ico_from_png(b"PNGDATA", (256, 128)).unwrap();
        assert_eq!(&ico[..6], &[0, 0, 1, 0, 1, 0]);
        assert_eq!((ico[6], ico[7]), (0, 128));
        assert_eq!(&ico[22..], b"PNGDATA");
        assert!(ico_from_png(b"x", (512, 512)).is_none());
    }
}
