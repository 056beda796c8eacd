//! RPM packages (`.rpm`), written natively by the pure-Rust `rpm` crate: the v4 lead,
//! signature header (digests, no signature: signing is the `[sign]` hook) and header, and a
//! cpio payload compressed with **zstd at level 3**: the payload compression rpmbuild itself
//! uses on Fedora and RHEL 9 (there at level 19, ten times slower for a few percent), read by
//! rpm from 4.14 on (RHEL 8, Fedora 31, openSUSE Leap 15 and later); single-threaded, so the
//! bytes depend only on the locked libzstd. (The crate's default, gzip -9, is five times
//! slower; unlike the deb, no linter here refuses zstd.)
//!
//! - **Files:** every entry of [`linux_payload`] (`/opt/<name>/…`, `/usr/bin/<name>`, the
//!   manual page (marked as documentation), the desktop entry, the icon, the copyright file
//!   (marked as the license)), owner `root:root`,
//!   modes 0755 or 0644, every mtime the epoch. **Directories** are the package's only where
//!   they are the app's own: `/opt/<name>` and below, and `/usr/share/doc/<name>`; `/opt`,
//!   `/usr/bin`, `/usr/share/applications` and the icon theme's directories belong to the
//!   system (owning them would make removing the package remove them from rpm's database).
//! - **Version:** rpm forbids `-` in a version, so the app's version is written with `~` for
//!   `-` (`1.0.0-beta` → version `1.0.0~beta`, which rpm sorts before `1.0.0`, as semver does),
//!   release `1`.
//! - **Arch:** the first part of the platform's Rust target (`x86_64`, `aarch64`; `i686`,
//!   `armv7hl`, `ppc64le`, `riscv64`).
//! - **Requires:** the profile's `requires` (`name`, or `name OP version` with `OP` one of
//!   `<`, `<=`, `=`, `>=`, `>`), plus `libc.so.6(GLIBC_2.N)(64bit)` when a staged ELF binary
//!   needs glibc (as rpmbuild's dependency generator writes it). Summary, description, license,
//!   vendor, URL and packager (the maintainer) from [`Meta`].
//! - **Reproducible:** `source_date` is the epoch (build time, file times); no build host, no
//!   cookie; the same stage gives the same bytes.
//!
//! **Limits:** the `rpm` crate holds the payload in memory while it builds (the stage's files
//! and their compressed copy), so packaging needs about twice the stage's size in memory. The
//! crate takes the build time from the clock when the epoch is not in the past, so an epoch in
//! the future (or past 2106: rpm's times are 32-bit) fails the rpm with the reason instead of
//! writing one no second build reproduces.

use std::io::{Read, Write};

use super::Exact;
use super::deb::scan_elves;
use super::{Input, Meta, PayloadKind, Source, linux_payload};

/// The zstd level of the payload.
pub const ZSTD_LEVEL: i32 = 3;

/// The rpm version and release of an app version (see the module docs).
pub fn rpm_version(version: &str) -> (String, String) {
    (version.replace('-', "~"), "1".to_string())
}

/// rpm's architecture name for a Rust target triple (its first part, with rpm's spellings).
pub fn rpm_arch(rust_target: &str, goarch: &str) -> String {
    let first = rust_target.split('-').next().unwrap_or("");
    match first {
        "x86_64" | "aarch64" | "s390x" | "ppc64le" => first.into(),
        "i386" | "i586" | "i686" => "i686".into(),
        "armv7" => "armv7hl".into(),
        "powerpc64le" => "ppc64le".into(),
        "riscv64gc" | "riscv64" => "riscv64".into(),
        _ => match goarch {
            "amd64" => "x86_64".into(),
            "arm64" => "aarch64".into(),
            "386" => "i686".into(),
            "arm" => "armv7hl".into(),
            other => other.into(),
        },
    }
}

/// One `requires` entry as an rpm dependency: `name` or `name OP version`.
fn dependency(entry: &str) -> Result<rpm::Dependency, String> {
    let words: Vec<&str> = entry.split_whitespace().collect();
    match words.as_slice() {
        [name] => Ok(rpm::Dependency::any(*name)),
        [name, op, version] => match *op {
            "<" => Ok(rpm::Dependency::less(*name, *version)),
            "<=" => Ok(rpm::Dependency::less_eq(*name, *version)),
            "=" | "==" => Ok(rpm::Dependency::eq(*name, *version)),
            ">=" => Ok(rpm::Dependency::greater_eq(*name, *version)),
            ">" => Ok(rpm::Dependency::greater(*name, *version)),
            _ => Err(format!(
                "the installer's requires entry `{}` has no comparison rpm knows (<, <=, =, >=, >)",
                entry.escape_debug()
            )),
        },
        _ => Err(format!(
            "the installer's requires entry `{}` is not `name` or `name OP version` (e.g. \"glibc >= 2.31\")",
            entry.escape_debug()
        )),
    }
}

/// Whether rpm should record `dir` (root-relative) as the package's own.
fn owned_dir(meta: &Meta, dir: &str) -> bool {
    let opt = format!("opt/{}", meta.name);
    dir == opt
        || dir.starts_with(&format!("{opt}/"))
        || dir == format!("usr/share/doc/{}", meta.name)
}

/// Writes the rpm of `input` into `file`.
pub fn rpm(input: &Input<'_>, file: &mut std::fs::File) -> Result<(), String> {
    let meta = &input.meta;
    let payload = linux_payload(input)?;
    let (version, release) = rpm_version(&meta.version);
    let arch = rpm_arch(&input.platform.rust_target, &input.platform.goarch);
    let (summary, paragraphs) = super::deb::description(meta, input.thin);
    // The rpm crate takes the clock instead of an epoch that is not in the past: refuse such
    // an epoch rather than write an rpm no second build reproduces.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let epoch = match u32::try_from(meta.epoch) {
        Ok(epoch) if u64::from(epoch) < now => epoch,
        _ => {
            return Err(format!(
                "the rpm cannot carry the epoch {} (SOURCE_DATE_EPOCH or the last commit's time): it is in the future, and rpm would put the clock's time in its place, so no second build would give the same bytes; set SOURCE_DATE_EPOCH to a past time",
                meta.epoch
            ));
        }
    };
    let config = rpm::BuildConfig::v4()
        .compression(rpm::CompressionWithLevel::Zstd(ZSTD_LEVEL))
        .source_date(epoch);
    let mut builder =
        rpm::PackageBuilder::new(&meta.name, &version, &meta.license, &arch, &summary);
    builder
        .using_config(config)
        .release(release)
        .description(paragraphs.join("\n\n"))
        .vendor(&meta.vendor)
        .packager(&meta.maintainer);
    if let Some(homepage) = &meta.homepage {
        builder.url(homepage);
    }
    for entry in &meta.requires {
        builder.requires(dependency(entry)?);
    }
    let elves = scan_elves(input, &payload)?;
    if let Some((major, minor)) = elves.glibc {
        let bits = if elves.glibc_64 { "(64bit)" } else { "" };
        builder.requires(rpm::Dependency::any(format!("libc.so.6(){bits}")));
        builder.requires(rpm::Dependency::any(format!(
            "libc.so.6(GLIBC_{major}.{minor}){bits}"
        )));
    }
    let fail = |err: rpm::Error| format!("writing the package: {err}");
    let copyright = format!("usr/share/doc/{}/copyright", meta.name);
    for entry in &payload.entries {
        let destination = format!("/{}", entry.path);
        match &entry.kind {
            PayloadKind::Dir => {
                if owned_dir(meta, &entry.path) {
                    builder
                        .with_dir_entry(rpm::FileOptions::dir(destination).permissions(0o755))
                        .map_err(fail)?;
                }
            }
            PayloadKind::File { source, size, mode } => {
                let bytes = match source {
                    Source::Bytes(bytes) => bytes.to_vec(),
                    Source::Stage(path) => {
                        let mut reader = Exact::open(input, path, *size)?;
                        let mut bytes = Vec::with_capacity(*size as usize);
                        reader.read_to_end(&mut bytes).map_err(|err| {
                            format!("packaging {}: {err}", input.stage.join(path))
                        })?;
                        reader.finish()?;
                        bytes
                    }
                };
                let mut options = rpm::FileOptions::new(destination).permissions(*mode as u16);
                if entry.path == copyright {
                    options = options.license();
                } else if entry.path.starts_with("usr/share/man/")
                    || entry.path.starts_with("usr/share/doc/")
                {
                    options = options.doc();
                }
                builder.with_file_contents(bytes, options).map_err(fail)?;
            }
        }
    }
    let package = builder.build().map_err(fail)?;
    let mut buffered = std::io::BufWriter::with_capacity(1 << 20, file);
    package.write(&mut buffered).map_err(fail)?;
    buffered
        .flush()
        .map_err(|err| format!("writing the package: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_architectures_map_to_rpm() {
        assert_eq!(
            rpm_version("1.0.0-beta"),
            ("1.0.0~beta".to_string(), "1".to_string())
        );
        assert_eq!(rpm_arch("x86_64-unknown-linux-gnu", "amd64"), "x86_64");
        assert_eq!(rpm_arch("aarch64-unknown-linux-gnu", "arm64"), "aarch64");
        assert_eq!(rpm_arch("armv7-unknown-linux-gnueabihf", "arm"), "armv7hl");
        assert_eq!(rpm_arch("", "amd64"), "x86_64");
    }

    #[test]
    fn requires_entries_parse() {
        assert!(dependency("glibc >= 2.31").is_ok());
        assert!(dependency("zlib").is_ok());
        assert!(dependency("glibc ~ 2").is_err());
        assert!(dependency("a b").is_err());
    }
}
