//! macOS flat packages (`pkg`), written natively on any host: a xar archive holding
//! `Distribution` and a component `<name>.pkg/` with `PackageInfo`, `Bom` and `Payload` (a
//! gzip'd odc cpio), the shape `productbuild` emits (no `Scripts`: nothing needs to run at
//! install).
//!
//! What it installs, under `/Applications`: an app bundle `<display name>.app/` (the display
//! name with `/` and `:` made `-`, else the package name) holding `Contents/Info.plist`
//! (`CFBundleIdentifier` the profile's identifier, `CFBundleExecutable` the launcher, the
//! version), `Contents/MacOS/<name>`, the launcher that starts the runtime and opens the UI
//! ([`super::launcher::unix_launcher`], the bundle at `../Resources/app`), the stage under
//! `Contents/Resources/app/`, and a PNG icon of a size macOS knows (16 to 1024, square) as
//! `Contents/Resources/<name>.icns` (the generated SVG cannot be one: the app then has the
//! system's default icon). Removing the app removes all of it; the app's data lives in the
//! user's home, which the package never touches.
//!
//! Writers (module `Cargo.toml` comments): `embala-pkg` for the xar container and the Bom
//! (its writers were checked against Apple's `pkgbuild`, `lsbom` and `installer`; `apple-xar`
//! has no writer, `apple-bom` 0.3's builder panics), `cpio-archive` for the payload (streamed,
//! with the headers set here: pkgbuild's conventions, a `.` root, sequential inodes, directory
//! link counts, zero padding to 512 bytes).
//!
//! **Reproducible:** entries sorted, owners 0:0 (root:wheel), modes 0755/0644, every cpio
//! time the epoch, gzip without name or time at level 6. Two times are not the epoch:
//! `embala-pkg` pins the xar's TOC creation time and the Bom's times to 2000-01-01 (constants,
//! so the bytes still depend only on the stage and the settings; `installer` sets file times
//! from the Payload, and `pkgutil --verify` compares modes and owners, not times).
//!
//! **Invariant:** the stage is copied into a private scratch directory through the confined
//! tree (never through a link), and the Bom, the payload and their sizes are all made from
//! that one copy.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use super::{Input, Payload, PayloadKind, archive::gzip, launcher, xml};

/// Where the app bundle installs.
const INSTALL_LOCATION: &str = "/Applications";

/// The largest values the odc headers' octal fields hold.
const ODC_MAX_INODE: usize = 0o777_777;
const ODC_MAX_SIZE: u64 = 0o777_7777_7777;

/// The app bundle's directory name: `<display name>.app`, `/` and `:` made `-`.
fn app_name(display: &str, name: &str) -> String {
    let cleaned: String = display
        .chars()
        .map(|c| {
            if c == '/' || c == ':' || c.is_control() {
                '-'
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned.starts_with('.') {
        format!("{name}.app")
    } else {
        format!("{cleaned}.app")
    }
}

/// The `Info.plist` of the app bundle.
fn info_plist(meta: &super::Meta, executable: &str, icon: Option<&str>, arch_min: &str) -> String {
    let mut entries = vec![
        ("CFBundleDevelopmentRegion", "en".to_string()),
        ("CFBundleDisplayName", meta.display_name.clone()),
        ("CFBundleExecutable", executable.to_string()),
        ("CFBundleIdentifier", meta.identifier.clone()),
        ("CFBundleInfoDictionaryVersion", "6.0".to_string()),
        ("CFBundleName", meta.display_name.clone()),
        ("CFBundlePackageType", "APPL".to_string()),
        ("CFBundleShortVersionString", meta.version.clone()),
        ("CFBundleVersion", meta.version.clone()),
        ("LSMinimumSystemVersion", arch_min.to_string()),
    ];
    if let Some(icon) = icon {
        entries.push(("CFBundleIconFile", icon.to_string()));
    }
    entries.sort();
    let mut text = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <plist version=\"1.0\">\n<dict>\n",
    );
    for (key, value) in entries {
        text.push_str(&format!(
            "\t<key>{key}</key>\n\t<string>{}</string>\n",
            xml(&value)
        ));
    }
    text.push_str("\t<key>NSHighResolutionCapable</key>\n\t<true/>\n</dict>\n</plist>\n");
    text
}

/// An `.icns` holding one PNG, for the square sizes macOS has a PNG slot for.
fn icns_from_png(png: &[u8], size: (u32, u32)) -> Option<Vec<u8>> {
    let kind: &[u8; 4] = match size {
        (16, 16) => b"icp4",
        (32, 32) => b"icp5",
        (64, 64) => b"icp6",
        (128, 128) => b"ic07",
        (256, 256) => b"ic08",
        (512, 512) => b"ic09",
        (1024, 1024) => b"ic10",
        _ => return None,
    };
    let entry = u32::try_from(png.len() + 8).ok()?;
    let total = entry.checked_add(8)?;
    let mut icns = Vec::with_capacity(total as usize);
    icns.extend_from_slice(b"icns");
    icns.extend(total.to_be_bytes());
    icns.extend_from_slice(kind);
    icns.extend(entry.to_be_bytes());
    icns.extend_from_slice(png);
    Some(icns)
}

/// pkgbuild's size rule: a 512-byte block per started 512 bytes of each file and one per
/// directory, in KiB rounded up.
fn install_kbytes(payload: &Payload) -> u64 {
    let blocks: u64 = payload
        .entries
        .iter()
        .map(|entry| match &entry.kind {
            PayloadKind::Dir => 1,
            PayloadKind::File { size, .. } => size.div_ceil(512),
        })
        .sum();
    blocks.div_ceil(2)
}

fn package_info(meta: &super::Meta, files: usize, kbytes: u64) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <pkg-info overwrite-permissions=\"true\" relocatable=\"false\" identifier=\"{id}\" postinstall-action=\"none\" version=\"{version}\" format-version=\"2\" install-location=\"{INSTALL_LOCATION}\" auth=\"root\">\n\
         \x20   <payload numberOfFiles=\"{files}\" installKBytes=\"{kbytes}\"/>\n\
         \x20   <bundle-version/>\n\
         \x20   <upgrade-bundle/>\n\
         \x20   <update-bundle/>\n\
         \x20   <atomic-update-bundle/>\n\
         \x20   <strict-identifier/>\n\
         \x20   <relocate/>\n\
         </pkg-info>\n",
        id = xml(&meta.identifier),
        version = xml(&meta.version),
    )
}

fn distribution(meta: &super::Meta, host_architectures: &str, kbytes: u64) -> String {
    let id = xml(&meta.identifier);
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <installer-gui-script minSpecVersion=\"2\">\n\
         \x20   <title>{title}</title>\n\
         \x20   <domains enable_localSystem=\"true\"/>\n\
         \x20   <options customize=\"never\" require-scripts=\"false\" hostArchitectures=\"{host_architectures}\"/>\n\
         \x20   <choices-outline>\n\
         \x20       <line choice=\"default\">\n\
         \x20           <line choice=\"{id}\"/>\n\
         \x20       </line>\n\
         \x20   </choices-outline>\n\
         \x20   <choice id=\"default\"/>\n\
         \x20   <choice id=\"{id}\" visible=\"false\">\n\
         \x20       <pkg-ref id=\"{id}\"/>\n\
         \x20   </choice>\n\
         \x20   <pkg-ref id=\"{id}\" version=\"{version}\" onConclusion=\"none\" installKBytes=\"{kbytes}\" updateKBytes=\"0\">#{name}.pkg</pkg-ref>\n\
         </installer-gui-script>\n",
        title = xml(&meta.display_name),
        version = xml(&meta.version),
        name = xml(&meta.name),
    )
}

/// Copies the payload into `root` (directories 0755, files with their modes), through the
/// confined tree.
fn materialize(input: &Input<'_>, payload: &Payload, root: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    for entry in &payload.entries {
        let path = root.join(&entry.path);
        match &entry.kind {
            PayloadKind::Dir => std::fs::create_dir(&path)
                .map_err(|err| format!("creating {}: {err}", path.display()))?,
            PayloadKind::File { source, size, mode } => {
                let mut file = std::fs::File::create(&path)
                    .map_err(|err| format!("writing {}: {err}", path.display()))?;
                Payload::copy(input, source, *size, &mut file)?;
                file.set_permissions(std::fs::Permissions::from_mode(*mode))
                    .map_err(|err| format!("writing {}: {err}", path.display()))?;
            }
        }
    }
    Ok(())
}

/// The payload as a gzip'd odc cpio: `.` then every entry as `./path`, sorted, owners 0:0,
/// inodes in order, a directory's link count 2 plus its entries, every time `epoch`, padded
/// with zeros to 512 bytes (pkgbuild's conventions).
fn payload_cpio(payload: &Payload, root: &Path, epoch: u64) -> Result<Vec<u8>, String> {
    use cpio_archive::odc::OdcHeader;
    if payload.entries.len() + 2 > ODC_MAX_INODE {
        return Err(format!(
            "the app has {} files and directories; a pkg payload holds at most {}",
            payload.entries.len(),
            ODC_MAX_INODE - 2
        ));
    }
    let mut children: BTreeMap<&str, u32> = BTreeMap::new();
    for entry in &payload.entries {
        let parent = entry.path.rsplit_once('/').map_or("", |(parent, _)| parent);
        *children.entry(parent).or_default() += 1;
    }
    let links = |path: &str| 2 + children.get(path).copied().unwrap_or(0);
    let mtime = u32::try_from(epoch).unwrap_or(u32::MAX);
    let io = |err: cpio_archive::Error| format!("writing the payload: {err}");
    let header = |inode: usize, name: String, mode: u32, nlink: u32, size: u64| OdcHeader {
        dev: 0,
        inode: inode as u32,
        mode,
        uid: 0,
        gid: 0,
        nlink,
        rdev: 0,
        mtime,
        file_size: size,
        name,
    };
    let mut gz = gzip(Vec::new());
    let mut written = header(0, ".".into(), 0o040_755, links(""), 0)
        .write(&mut gz)
        .map_err(io)?;
    for (index, entry) in payload.entries.iter().enumerate() {
        let name = format!("./{}", entry.path);
        match &entry.kind {
            PayloadKind::Dir => {
                written += header(index + 1, name, 0o040_755, links(&entry.path), 0)
                    .write(&mut gz)
                    .map_err(io)?;
            }
            PayloadKind::File { size, mode, .. } => {
                if *size > ODC_MAX_SIZE {
                    return Err(format!(
                        "{} is larger than a pkg payload holds (8 GiB)",
                        entry.path
                    ));
                }
                written += header(index + 1, name, 0o100_000 | mode, 1, *size)
                    .write(&mut gz)
                    .map_err(io)?;
                let path = root.join(&entry.path);
                let mut file = std::fs::File::open(&path)
                    .map_err(|err| format!("reading {}: {err}", path.display()))?
                    .take(*size);
                let copied = std::io::copy(&mut file, &mut gz)
                    .map_err(|err| format!("writing the payload: {err}"))?;
                if copied != *size {
                    return Err(format!("{} changed while it was packaged", path.display()));
                }
                written += copied;
            }
        }
    }
    let trailer = header(payload.entries.len() + 1, "TRAILER!!!".into(), 0, 1, 0);
    written += OdcHeader {
        mtime: 0,
        ..trailer
    }
    .write(&mut gz)
    .map_err(io)?;
    let padding = written.next_multiple_of(512) - written;
    gz.write_all(&vec![0; padding as usize])
        .map_err(|err| format!("writing the payload: {err}"))?;
    gz.finish()
        .map_err(|err| format!("writing the payload: {err}"))
}

/// Writes the pkg of `input` into `file` (module docs).
pub fn write(input: &Input<'_>, file: &mut std::fs::File) -> Result<(), String> {
    let meta = &input.meta;
    let host_architectures = match input.platform.goarch.as_str() {
        "arm64" => "arm64",
        "amd64" => "x86_64",
        other => {
            return Err(format!(
                "a pkg cannot be made for the architecture `{other}` (arm64 and amd64 can)"
            ));
        }
    };
    let app = app_name(&meta.display_name, &meta.name);
    let contents = format!("{app}/Contents");
    let icon = meta
        .icon
        .size
        .and_then(|size| icns_from_png(&meta.icon.bytes, size));
    let mut payload = Payload::default();
    payload.stage(input, &format!("{contents}/Resources/app"));
    payload.bytes(
        &format!("{contents}/MacOS/{}", meta.name),
        if input.thin {
            crate::electron::thin::installed_launcher(meta, "../Resources/app")
        } else {
            launcher::unix_launcher(
                meta,
                "../Resources/app",
                &crate::stage::staged_runtime(input.platform),
            )
        }
        .into_bytes(),
        0o755,
    );
    if let Some(icns) = &icon {
        payload.bytes(
            &format!("{contents}/Resources/{}.icns", meta.name),
            icns.clone(),
            0o644,
        );
    }
    payload.bytes(
        &format!("{contents}/Info.plist"),
        info_plist(
            meta,
            &meta.name,
            icon.as_ref().map(|_| meta.name.as_str()),
            if host_architectures == "arm64" {
                "11.0"
            } else {
                "10.13"
            },
        )
        .into_bytes(),
        0o644,
    );
    payload.sort();

    let scratch = crate::builds::scratch_dir()?;
    let root = scratch.path().join("root");
    std::fs::create_dir(&root).map_err(|err| format!("creating {}: {err}", root.display()))?;
    materialize(input, &payload, &root)?;
    let bom = embala_pkg::write_bom(&root, 0, 0)
        .map_err(|err| format!("writing the pkg's Bom: {err}"))?;
    let cpio = payload_cpio(&payload, &root, meta.epoch)?;
    let kbytes = install_kbytes(&payload);
    let package_info = package_info(meta, payload.entries.len() + 1, kbytes);
    let distribution = distribution(meta, host_architectures, kbytes);

    use embala_pkg::{XarEntry, XarEntryKind};
    let component = format!("{}.pkg", meta.name);
    let entries = [
        XarEntry {
            name: &component,
            kind: XarEntryKind::Directory {
                mode: 0o755,
                children: vec![
                    XarEntry {
                        name: "Bom",
                        kind: XarEntryKind::File {
                            data: &bom,
                            mode: 0o644,
                            store: false,
                        },
                    },
                    XarEntry {
                        name: "Payload",
                        kind: XarEntryKind::File {
                            data: &cpio,
                            mode: 0o644,
                            store: true,
                        },
                    },
                    XarEntry {
                        name: "PackageInfo",
                        kind: XarEntryKind::File {
                            data: package_info.as_bytes(),
                            mode: 0o644,
                            store: false,
                        },
                    },
                ],
            },
        },
        XarEntry {
            name: "Distribution",
            kind: XarEntryKind::File {
                data: distribution.as_bytes(),
                mode: 0o644,
                store: false,
            },
        },
    ];
    let mut buffered = std::io::BufWriter::new(file);
    embala_pkg::write_xar(&entries, &mut buffered)
        .map_err(|err| format!("writing the pkg: {err}"))?;
    buffered
        .flush()
        .map_err(|err| format!("writing the pkg: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_are_valid_bundle_names() {
        assert_eq!(app_name("Notes & Co", "notes"), "Notes & Co.app");
        assert_eq!(app_name("a/b:c", "notes"), "a-b-c.app");
        assert_eq!(app_name("..", "notes"), "notes.app");
        assert_eq!(app_name(".hidden", "notes"), "notes.app");
        assert_eq!(app_name("  ", "notes"), "notes.app");
        assert_eq!(app_name("ノート", "notes"), "ノート.app");
        assert_eq!(app_name("line\nbreak", "notes"), "line-break.app");
    }

    #[test]
    fn xml_text_is_escaped() {
        assert_eq!(xml("a&b<c>\"d'\u{7}"), "a&amp;b&lt;c&gt;&quot;d&apos; ");
    }

    #[test]
    fn an_icns_wraps_a_png_of_a_known_size() {
        let icns = icns_from_png(b"PNG", (256, 256)).unwrap();
        assert_eq!(&icns[..4], b"icns");
        assert_eq!(u32::from_be_bytes(icns[4..8].try_into().unwrap()), 19);
        assert_eq!(&icns[8..12], b"ic08");
        assert_eq!(u32::from_be_bytes(icns[12..16].try_into().unwrap()), 11);
        assert_eq!(&icns[16..], b"PNG");
        assert!(icns_from_png(b"PNG", (200, 200)).is_none());
        assert!(icns_from_png(b"PNG", (256, 128)).is_none());
    }

    #[test]
    fn install_size_follows_pkgbuild() {
        let mut payload = Payload::default();
        payload.bytes("a/b", vec![0; 513], 0o644);
        payload.bytes("a/c", Vec::new(), 0o644);
        payload.sort();
        // One directory block, two blocks for 513 bytes, none for an empty file: 3 blocks,
        // 1.5 KiB rounded up.
        assert_eq!(install_kbytes(&payload), 2);
    }
}
