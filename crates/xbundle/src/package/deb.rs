//! Debian binary packages (`.deb`), written natively: an `ar` archive (the `ar` crate) of
//! `debian-binary` (`2.0\n`), `control.tar.gz` and `data.tar.gz` (the `tar` and `flate2`
//! crates), the layout `dpkg-deb --build --root-owner-group -Zgzip -z6` makes.
//!
//! - **data.tar**: [`linux_payload`] plus `/usr/share/doc/<name>/changelog.gz` (a one-entry
//!   Debian changelog, compressed like `gzip -n -9`: lintian wants one in every package).
//!   Entries `./`-prefixed (`./`, `./opt/`, `./opt/<name>/bundle.json`), directories once with
//!   a trailing `/`, sorted, owner `root:root` (0:0), modes 0755 or 0644, every mtime the epoch;
//!   names over 100 bytes as GNU long names, as GNU tar and dpkg-deb write them.
//! - **control.tar**: `./` and `./control` (Package, Version, Architecture, Maintainer,
//!   Installed-Size, Depends, Section, Priority, Homepage, Description: a synopsis and the
//!   description wrapped at 72 columns). No `md5sums` (`dpkg-deb --build` makes none either;
//!   only `debsums` and `dpkg --verify` read it, and hashing every byte once more would cost a
//!   tenth of the packaging time; lintian notes its absence as info), no `sha256sums`, and no
//!   maintainer scripts: dpkg's own triggers refresh the desktop and icon caches, and the app's
//!   data lives in each user's home, which removing the package leaves.
//! - **lintian overrides** (`/usr/share/lintian/overrides/<name>`), each with its reason: files
//!   under `/opt` (the layout the issue asks for: add-on software, FHS 3.13) and, when the
//!   stage has any, statically linked executables (Go services). With them lintian reports no
//!   error and no warning on the packages tests build.
//! - **Version:** the app's version with `-` written `~` (`1.0.0-beta` → `1.0.0~beta`, which
//!   dpkg sorts before `1.0.0`, as semver does; a `-` would make `beta` a Debian revision).
//! - **Architecture:** Debian's name of the platform's `goarch` (`amd64`, `arm64`, `386` →
//!   `i386`, `arm` → `armhf`).
//! - **Depends:** the profile's `depends`, plus `libc6 (>= 2.N)` when a staged ELF binary is
//!   linked against glibc, N the newest `GLIBC_2.N` symbol version it needs (as dpkg-shlibdeps
//!   would say).
//! - **Compression: gzip, level 6** (flate2's zlib-rs backend, no name, no time), single
//!   stream so the bytes depend only on the locked backend. Every dpkg reads it, and lintian
//!   accepts it. zstd -3 would be five times faster, but dpkg reads it only from 1.21.18 on
//!   (Debian 12) and lintian 2.116 (Debian 12's) calls a zstd member a malformed archive, an
//!   error; xz -6 is ten times slower than gzip -6 for a few percent less.
//!
//! **Invariant:** the bytes depend only on the stage's files and the package metadata: the
//! same inputs give the same package on any machine (tests compare two builds byte for byte).
//! A stage file whose size changed while it was packaged is an error, never a corrupt member.

use std::io::{Read, Seek, Write};

use super::{Exact, Input, Meta, Payload, PayloadKind, Source, archive, linux_payload};

/// Writes the deb of `input` into `file`.
pub fn deb(input: &Input<'_>, file: &mut std::fs::File) -> Result<(), String> {
    let meta = &input.meta;
    let mut payload = linux_payload(input)?;
    payload.bytes(
        &format!("usr/share/doc/{}/changelog.gz", meta.name),
        changelog_gz(meta),
        0o644,
    );
    let elves = scan_elves(input, &payload)?;
    payload.bytes(
        &format!("usr/share/lintian/overrides/{}", meta.name),
        lintian_overrides(meta, &elves).into_bytes(),
        0o644,
    );
    payload.sort();
    let control = control(
        meta,
        input.thin,
        &debian_arch(&input.platform.goarch),
        installed_size(&payload),
        elves.glibc,
    );
    let control_tar = control_tar(&control, meta.epoch)?;
    // The data member's size goes in its ar header, so it is compressed into a scratch file
    // first (as dpkg-deb does), then copied after the control member.
    let io = |err: std::io::Error| format!("writing the package: {err}");
    let mut data = tempfile::tempfile().map_err(io)?;
    {
        let buffered = std::io::BufWriter::with_capacity(1 << 20, &mut data);
        let encoder = write_data_tar(input, &payload, archive::gzip(buffered))?;
        let mut buffered = encoder.finish().map_err(io)?;
        buffered.flush().map_err(io)?;
    }
    let data_len = data.stream_position().map_err(io)?;
    data.rewind().map_err(io)?;
    let header = |name: &str, size: u64| {
        let mut header = ar::Header::new(name.as_bytes().to_vec(), size);
        header.set_mtime(meta.epoch);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mode(0o100644);
        header
    };
    let mut ar = ar::Builder::new(&mut *file);
    ar.append(&header("debian-binary", 4), &b"2.0\n"[..])
        .map_err(io)?;
    ar.append(
        &header("control.tar.gz", control_tar.len() as u64),
        control_tar.as_slice(),
    )
    .map_err(io)?;
    // File to file: the kernel copies (copy_file_range), nothing passes through this process.
    ar.append(&header("data.tar.gz", data_len), &mut data)
        .map_err(io)?;
    Ok(())
}

/// The package's lintian overrides: the deviations from Debian's archive policy that an app
/// packaged this way makes on purpose, each with its reason.
fn lintian_overrides(meta: &Meta, elves: &Elves) -> String {
    let name = &meta.name;
    let mut text = format!(
        "# A self-contained app (its runtime, services and UI in one bundle) installs under\n\
         # /opt/{name}, the place the FHS gives add-on application software.\n\
         {name}: dir-or-file-in-opt [opt/{name}/*]\n"
    );
    if !elves.statics.is_empty() {
        text.push_str(&format!(
            "# The app's Go services are statically linked, as Go builds them.\n\
             {name}: statically-linked-binary [opt/{name}/*]\n"
        ));
    }
    text
}

/// Debian's architecture name for a Go `goarch`.
pub fn debian_arch(goarch: &str) -> String {
    match goarch {
        "386" => "i386".into(),
        "arm" => "armhf".into(),
        "ppc64le" => "ppc64el".into(),
        "mips64le" => "mips64el".into(),
        other => other.into(),
    }
}

/// The package version: the app's, with `-` written `~` (see the module docs).
pub fn debian_version(version: &str) -> String {
    version.replace('-', "~")
}

/// The Debian section of the first freedesktop.org category.
fn section(category: &str) -> &'static str {
    match category.split(';').next().unwrap_or("").trim() {
        "Development" => "devel",
        "Education" => "education",
        "Game" => "games",
        "Graphics" => "graphics",
        "Network" => "net",
        "Office" => "text",
        "Science" => "science",
        "AudioVideo" | "Audio" => "sound",
        "Video" => "video",
        "System" | "Settings" => "admin",
        "Utility" => "utils",
        _ => "misc",
    }
}

/// What `Installed-Size` counts (as dpkg-gencontrol): each file's size in KiB rounded up,
/// and one KiB per directory.
fn installed_size(payload: &Payload) -> u64 {
    payload
        .entries
        .iter()
        .map(|entry| match &entry.kind {
            PayloadKind::Dir => 1,
            PayloadKind::File { size, .. } => size.div_ceil(1024),
        })
        .sum()
}

/// The synopsis and the extended description's paragraphs. The synopsis is the
/// description's first sentence (at most 72 characters, no final period), unless that would be
/// the package's name or start with it (lintian's errors): then a generic line, and the
/// description comes first in the extended text, which ends with what the package installs
/// (`thin`: a thin client, whose launcher opens the deployed app in the browser).
pub(crate) fn description(meta: &Meta, thin: bool) -> (String, Vec<String>) {
    let text = meta
        .description
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let name = meta.name.to_ascii_lowercase();
    let starts_with_name = |line: &str| {
        let lower = line.to_ascii_lowercase();
        lower
            .strip_prefix(&name)
            .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_'))
    };
    let first = match text.find(". ") {
        Some(end) => &text[..end],
        None => text.trim_end_matches('.'),
    };
    let mut synopsis = if first.contains(' ') && !starts_with_name(first) {
        first.to_string()
    } else {
        format!(
            "Desktop application {} with a web interface",
            meta.display_name
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        )
    };
    if synopsis.chars().count() > 72 {
        let mut cut = String::new();
        for word in synopsis.split(' ') {
            if cut.chars().count() + word.chars().count() + 1 > 68 {
                break;
            }
            if !cut.is_empty() {
                cut.push(' ');
            }
            cut.push_str(word);
        }
        if cut.is_empty() {
            cut = synopsis.chars().take(68).collect();
        }
        synopsis = format!("{}...", cut.trim_end_matches('.'));
    }
    let mut paragraphs = Vec::new();
    let plain = |line: &str| {
        line.chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase()
    };
    // The description, unless it says nothing more than the synopsis or a name (one word).
    if text.contains(' ') && plain(&text) != plain(&synopsis) {
        paragraphs.push(text.clone());
    }
    let display = meta
        .display_name
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    paragraphs.push(if thin {
        format!(
            "{display} opens the deployed app in the web browser: the command {name} opens \
             it. The client is installed in /opt/{name}; removing the package leaves the \
             browser's data alone.",
            name = meta.name,
        )
    } else {
        format!(
            "{display} runs on this computer: the command {name} starts its services and \
             opens its user interface in the web browser (with --no-browser it only starts \
             them). The app is installed in /opt/{name}; its data stays in each user's home \
             directory, and removing the package leaves it there.",
            name = meta.name,
        )
    });
    (synopsis, paragraphs)
}

/// Wraps `text` at 72 columns as the continuation lines of a control field (` line`).
fn wrap(text: &str, out: &mut String) {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > 72 {
            out.push(' ');
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push(' ');
        out.push_str(&line);
        out.push('\n');
    }
}

/// The control file.
fn control(
    meta: &Meta,
    thin: bool,
    arch: &str,
    installed_kib: u64,
    glibc: Option<(u32, u32)>,
) -> String {
    let one_line = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut depends: Vec<String> = meta.depends.iter().map(|d| one_line(d)).collect();
    if let Some((major, minor)) = glibc
        && !depends
            .iter()
            .any(|d| d == "libc6" || d.starts_with("libc6 ") || d.starts_with("libc6:"))
    {
        depends.push(format!("libc6 (>= {major}.{minor})"));
    }
    let mut text = format!(
        "Package: {}\nVersion: {}\nArchitecture: {arch}\nMaintainer: {}\nInstalled-Size: {installed_kib}\n",
        meta.name,
        debian_version(&meta.version),
        one_line(&meta.maintainer),
    );
    if !depends.is_empty() {
        text.push_str(&format!("Depends: {}\n", depends.join(", ")));
    }
    text.push_str(&format!(
        "Section: {}\nPriority: optional\n",
        section(&meta.category)
    ));
    if let Some(homepage) = &meta.homepage {
        text.push_str(&format!("Homepage: {}\n", one_line(homepage)));
    }
    let (synopsis, paragraphs) = description(meta, thin);
    text.push_str(&format!("Description: {synopsis}\n"));
    for (index, paragraph) in paragraphs.iter().enumerate() {
        if index > 0 {
            text.push_str(" .\n");
        }
        wrap(paragraph, &mut text);
    }
    text
}

/// The day of the week and the date of `epoch` as RFC 2822 writes them
/// (`Tue, 14 Nov 2023 22:13:20 +0000`).
fn rfc2822(epoch: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (year, month, day, hour, minute, second) = archive::civil(epoch);
    format!(
        "{}, {day:02} {} {year} {hour:02}:{minute:02}:{second:02} +0000",
        DAYS[(epoch / 86_400 % 7) as usize],
        MONTHS[usize::from(month - 1)],
    )
}

/// A Debian changelog with one entry for this version, compressed as `gzip -n -9`.
fn changelog_gz(meta: &Meta) -> Vec<u8> {
    let text = format!(
        "{name} ({version}) unstable; urgency=medium\n\n  * {display} {app_version}, packaged by xbundle.\n\n -- {maintainer}  {date}\n",
        name = meta.name,
        version = debian_version(&meta.version),
        display = meta
            .display_name
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        app_version = meta.version,
        maintainer = meta.maintainer,
        date = rfc2822(meta.epoch),
    );
    super::launcher::gzip_best(text.as_bytes())
}

/// A tar header for `name` (written as is: `./`-prefixed, a directory's with its trailing
/// `/`), owned by root:root (0:0).
fn header(name: &str, mode: u32, size: u64, dir: bool, epoch: u64) -> tar::Header {
    let mut header = archive::tar_header(mode, size, dir, epoch);
    // The names dpkg-deb --root-owner-group writes; cannot fail (short ASCII).
    let _ = header.set_username("root");
    let _ = header.set_groupname("root");
    let slot = &mut header.as_old_mut().name;
    let bytes = name.as_bytes();
    let len = bytes.len().min(slot.len());
    slot[..len].copy_from_slice(&bytes[..len]);
    header.set_cksum();
    header
}

/// Appends one entry with its name exactly as given (`tar::Builder::append_data` would drop
/// the `./`): a name longer than the header's 100 bytes is preceded by a GNU long-name entry.
fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    mode: u32,
    size: u64,
    dir: bool,
    epoch: u64,
    data: &mut dyn Read,
) -> Result<(), String> {
    let io = |err: std::io::Error| format!("writing the package: {err}");
    if name.len() > 100 {
        let mut long = tar::Header::new_gnu();
        long.set_entry_type(tar::EntryType::GNULongName);
        long.set_mode(0o644);
        long.set_uid(0);
        long.set_gid(0);
        long.set_mtime(0);
        let _ = long.set_username("root");
        let _ = long.set_groupname("root");
        let mut bytes = name.as_bytes().to_vec();
        bytes.push(0);
        long.set_size(bytes.len() as u64);
        let slot = &mut long.as_old_mut().name;
        slot[..13].copy_from_slice(b"././@LongLink");
        long.set_cksum();
        builder.append(&long, bytes.as_slice()).map_err(io)?;
    }
    let header = header(name, mode, size, dir, epoch);
    builder.append(&header, data).map_err(io)
}

/// Writes the data member's tar stream into `to`.
fn write_data_tar<W: Write>(input: &Input<'_>, payload: &Payload, to: W) -> Result<W, String> {
    let epoch = input.meta.epoch;
    let mut builder = tar::Builder::new(to);
    append(
        &mut builder,
        "./",
        0o755,
        0,
        true,
        epoch,
        &mut std::io::empty(),
    )?;
    for entry in &payload.entries {
        match &entry.kind {
            PayloadKind::Dir => append(
                &mut builder,
                &format!("./{}/", entry.path),
                0o755,
                0,
                true,
                epoch,
                &mut std::io::empty(),
            )?,
            PayloadKind::File { source, size, mode } => {
                let name = format!("./{}", entry.path);
                match source {
                    Source::Bytes(bytes) => append(
                        &mut builder,
                        &name,
                        *mode,
                        *size,
                        false,
                        epoch,
                        &mut &bytes[..],
                    )?,
                    Source::Stage(path) => {
                        let mut reader = Exact::open(input, path, *size)?;
                        append(&mut builder, &name, *mode, *size, false, epoch, &mut reader)?;
                        reader.finish()?;
                    }
                }
            }
        }
    }
    builder
        .into_inner()
        .map_err(|err| format!("writing the package: {err}"))
}

/// The control member: `./`, `./control` and, when given, `./md5sums`, gzip-compressed.
fn control_tar(control: &str, epoch: u64) -> Result<Vec<u8>, String> {
    let io = |err: std::io::Error| format!("writing the package: {err}");
    let mut builder = tar::Builder::new(archive::gzip(Vec::new()));
    append(
        &mut builder,
        "./",
        0o755,
        0,
        true,
        epoch,
        &mut std::io::empty(),
    )?;
    append(
        &mut builder,
        "./control",
        0o644,
        control.len() as u64,
        false,
        epoch,
        &mut control.as_bytes(),
    )?;
    builder.into_inner().map_err(io)?.finish().map_err(io)
}

/// What the payload's ELF binaries need and are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Elves {
    /// The newest `GLIBC_x.y` version any of them requires from `libc.so.6`.
    pub glibc: Option<(u32, u32)>,
    /// Whether that binary is 64-bit (rpm's dependency names say so).
    pub glibc_64: bool,
    /// Payload paths of statically linked executables (Go services are, by design).
    pub statics: Vec<String>,
}

/// Reads the headers (program headers, `.gnu.version_r`) of every executable and shared
/// library of the payload that is an ELF file.
pub fn scan_elves(input: &Input<'_>, payload: &Payload) -> Result<Elves, String> {
    let mut elves = Elves::default();
    for entry in &payload.entries {
        let PayloadKind::File {
            source: Source::Stage(path),
            mode,
            size,
        } = &entry.kind
        else {
            continue;
        };
        let library = path.ends_with(".so") || path.contains(".so.");
        if (mode & 0o111 == 0 && !library) || *size < 64 {
            continue;
        }
        let (mut file, _) = input.open(path)?;
        let mut magic = [0u8; 4];
        if file.read_exact(&mut magic).is_err() || &magic != b"\x7fELF" {
            continue;
        }
        let Some(elf) = elf_info(file) else { continue };
        if elf.is_static {
            elves.statics.push(entry.path.clone());
        }
        if let Some(version) = elf.glibc
            && elves.glibc.is_none_or(|newest| version > newest)
        {
            elves.glibc = Some(version);
            elves.glibc_64 = elf.is_64;
        }
    }
    Ok(elves)
}

struct ElfInfo {
    glibc: Option<(u32, u32)>,
    is_64: bool,
    /// An executable (`ET_EXEC`) without an interpreter.
    is_static: bool,
}

/// An ELF file's glibc needs and linking (`None` for a malformed file, which the package
/// then neither depends on nor explains).
fn elf_info(file: std::fs::File) -> Option<ElfInfo> {
    use object::elf::{FileHeader32, FileHeader64};
    use object::read::elf::{FileHeader, ProgramHeader};
    fn scan<Elf: FileHeader<Endian = object::Endianness>>(
        data: &object::ReadCache<std::fs::File>,
        is_64: bool,
    ) -> Option<ElfInfo> {
        let header = Elf::parse(data).ok()?;
        let endian = header.endian().ok()?;
        let interpreter = header
            .program_headers(endian, data)
            .ok()?
            .iter()
            .any(|segment| segment.p_type(endian) == object::elf::PT_INTERP);
        let is_static = header.e_type(endian) == object::elf::ET_EXEC && !interpreter;
        let sections = header.sections(endian, data).ok()?;
        let mut glibc = None;
        if let Some((mut needs, link)) = sections.gnu_verneed(endian, data).ok()? {
            let strings = sections.strings(endian, data, link).ok()?;
            while let Ok(Some((need, mut aux))) = needs.next() {
                let libc = need.file(endian, strings).ok()? == b"libc.so.6";
                while let Ok(Some(version)) = aux.next() {
                    let name = version.name(endian, strings).ok()?;
                    let Some(number) = name.strip_prefix(b"GLIBC_") else {
                        continue;
                    };
                    let text = std::str::from_utf8(number).ok()?;
                    let mut parts = text.split('.').map(|p| p.parse::<u32>());
                    if let (true, Some(Ok(major)), Some(Ok(minor))) =
                        (libc, parts.next(), parts.next())
                        && glibc.is_none_or(|newest| (major, minor) > newest)
                    {
                        glibc = Some((major, minor));
                    }
                }
            }
        }
        Some(ElfInfo {
            glibc,
            is_64,
            is_static,
        })
    }
    let data = object::ReadCache::new(file);
    let ident = object::ReadRef::read_bytes_at(&data, 0, 16).ok()?;
    match ident[4] {
        object::elf::ELFCLASS64 => scan::<FileHeader64<object::Endianness>>(&data, true),
        object::elf::ELFCLASS32 => scan::<FileHeader32<object::Endianness>>(&data, false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            name: "notes-app".into(),
            display_name: "Notes".into(),
            version: "1.0.0".into(),
            description: "Take notes".into(),
            maintainer: "N <n@example.org>".into(),
            vendor: "N".into(),
            homepage: None,
            license: "MIT".into(),
            category: "Utility;".into(),
            identifier: "org.example.notes".into(),
            depends: Vec::new(),
            requires: Vec::new(),
            upgrade_code: String::new(),
            icon: super::super::Icon {
                bytes: b"<svg/>".to_vec(),
                ext: "svg",
                size: None,
            },
            epoch: 1_700_000_000,
        }
    }

    /// A stage file that grows, shrinks or becomes a link after the payload was listed fails
    /// the package, naming the file, instead of writing a corrupt or misleading entry.
    #[test]
    fn a_stage_file_changed_while_packaging_is_an_error() {
        let platform = crate::platform::Platform {
            id: "linux-x64".into(),
            rust_target: "x86_64-unknown-linux-gnu".into(),
            goos: "linux".into(),
            goarch: "amd64".into(),
            exe_suffix: String::new(),
            formats: Vec::new(),
        };
        for change in ["grow", "shrink", "link"] {
            let dir = tempfile::tempdir().unwrap();
            let stage_dir = dir.path().join("stage");
            std::fs::create_dir_all(stage_dir.join("ui")).unwrap();
            std::fs::write(stage_dir.join("bundle.json"), "{}").unwrap();
            std::fs::write(stage_dir.join("ui/index.html"), "<h1>hello</h1>").unwrap();
            std::fs::write(dir.path().join("elsewhere"), "<h1>hello</h1>").unwrap();
            let tree = engine::confine::Dir::open_root(dir.path()).unwrap();
            let stage = camino::Utf8Path::new("stage");
            let input = Input {
                tree: &tree,
                stage,
                entries: crate::stage::regular_tree(&tree, stage).unwrap(),
                meta: meta(),
                platform: &platform,
                top: "notes-linux-x64".into(),
                thin: false,
            };
            let payload = linux_payload(&input).unwrap();
            let file = stage_dir.join("ui/index.html");
            match change {
                "grow" => std::fs::write(&file, "<h1>hello, world</h1>").unwrap(),
                "shrink" => std::fs::write(&file, "<h1>").unwrap(),
                _ => {
                    std::fs::remove_file(&file).unwrap();
                    std::os::unix::fs::symlink(dir.path().join("elsewhere"), &file).unwrap();
                }
            }
            let error = write_data_tar(&input, &payload, Vec::new())
                .err()
                .unwrap_or_else(|| panic!("{change}: the package was written"));
            assert!(error.contains("stage/ui/index.html"), "{change}: {error}");
        }
    }

    /// Names longer than a tar header's 100 bytes keep their `./` prefix (GNU long names).
    #[test]
    fn long_names_are_written_whole() {
        let long = format!("./opt/notes-app/{}/file.js", "d".repeat(120));
        let mut builder = tar::Builder::new(Vec::new());
        append(&mut builder, &long, 0o644, 2, false, 0, &mut &b"ok"[..]).unwrap();
        let bytes = builder.into_inner().unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|entry| String::from_utf8(entry.unwrap().path_bytes().into_owned()).unwrap())
            .collect();
        assert_eq!(names, [long]);
    }

    #[test]
    fn dates_are_rfc2822() {
        assert_eq!(rfc2822(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 +0000");
        assert_eq!(rfc2822(0), "Thu, 01 Jan 1970 00:00:00 +0000");
    }

    #[test]
    fn versions_and_architectures_map_to_debian() {
        assert_eq!(debian_version("1.0.0-beta.2"), "1.0.0~beta.2");
        assert_eq!(debian_version("2.1+git5"), "2.1+git5");
        assert_eq!(debian_arch("amd64"), "amd64");
        assert_eq!(debian_arch("386"), "i386");
        assert_eq!(debian_arch("arm"), "armhf");
    }

    /// The glibc a dynamically linked binary needs is read from its headers; a truncated or
    /// corrupted ELF file (a hostile asset) gives nothing, never a panic or a huge read.
    #[test]
    fn glibc_needs_come_from_elf_headers_and_bad_files_give_none() {
        // A small dynamically linked program of the system's (coreutils').
        let exe = std::fs::read("/usr/bin/true").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("elf");
        std::fs::write(&path, &exe).unwrap();
        let info = elf_info(std::fs::File::open(&path).unwrap()).expect("this test is an ELF");
        let (major, minor) = info.glibc.expect("linked against glibc");
        assert!(major == 2 && minor >= 2, "GLIBC_{major}.{minor}");
        assert!(!info.is_static);
        let mut cuts: Vec<usize> = (0..64).map(|i| i * 37).collect();
        cuts.extend((1..64).map(|i| exe.len() * i / 64));
        for cut in cuts {
            std::fs::write(&path, &exe[..cut.min(exe.len())]).unwrap();
            let _ = elf_info(std::fs::File::open(&path).unwrap());
        }
        // Header fields pointing far beyond the file.
        let mut corrupt = exe[..4096.min(exe.len())].to_vec();
        for offset in [0x20, 0x28, 0x3a, 0x3c] {
            corrupt[offset..offset + 2].copy_from_slice(&[0xff, 0xff]);
        }
        std::fs::write(&path, &corrupt).unwrap();
        assert!(elf_info(std::fs::File::open(&path).unwrap()).is_none_or(|i| i.glibc.is_none()));
    }

    #[test]
    fn synopses_follow_lintian_rules() {
        let mut meta = meta();
        // A name alone: a generic synopsis, no repeated paragraph.
        meta.description = "notes".into();
        let (synopsis, paragraphs) = description(&meta, false);
        assert_eq!(synopsis, "Desktop application Notes with a web interface");
        assert_eq!(paragraphs.len(), 1, "{paragraphs:?}");
        // Starting with the package's name: generic synopsis, the text kept below.
        meta.description = "notes-app keeps your notes. Offline.".into();
        let (synopsis, paragraphs) = description(&meta, false);
        assert!(synopsis.starts_with("Desktop application"), "{synopsis}");
        assert_eq!(paragraphs[0], "notes-app keeps your notes. Offline.");
        // The first sentence, without its period, at most 72 characters.
        meta.description = format!("Take notes {}. More.", "quickly ".repeat(20));
        let (synopsis, _) = description(&meta, false);
        assert!(
            synopsis.len() <= 72 && synopsis.ends_with("..."),
            "{synopsis}"
        );
        meta.description = "Take notes on this computer.".into();
        let (synopsis, paragraphs) = description(&meta, true);
        assert_eq!(synopsis, "Take notes on this computer");
        assert_eq!(
            paragraphs.len(),
            1,
            "the same text is not repeated: {paragraphs:?}"
        );
        assert!(
            paragraphs[0].contains("opens the deployed app"),
            "{paragraphs:?}"
        );
    }

    #[test]
    fn long_descriptions_wrap_and_synopses_stay_short() {
        let mut text = String::new();
        wrap(&"word ".repeat(40), &mut text);
        assert!(
            text.lines().all(|l| l.starts_with(' ') && l.len() <= 73),
            "{text}"
        );
        assert_eq!(text.lines().count(), 3);
    }
}
