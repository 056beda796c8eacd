//! Portable archives of a stage (issue 10's first formats): `package:<profile>@<platform>:tar.gz`
//! and `…:zip`, written natively (the `tar`, `flate2` and `zip` crates) at
//! `<out>/<profile>/packages/<profile>-<platform>.<ext>`, each holding the stage below one
//! top-level directory `<profile>-<platform>/`.
//!
//! **Reproducible:** entries sorted by path; directories listed once; owners 0:0 with no names;
//! modes 0755 (directories and executables) or 0644; every timestamp `SOURCE_DATE_EPOCH` (a
//! declared variable: it is in the key), or 1980-01-01 when it is unset (the earliest a zip can
//! say); gzip without a name or time, at a fixed level. The same stage gives the same bytes on
//! any machine and from any checkout path.
//!
//! **Invariant:** the stage is read through the engine's confined tree; a link in it is an error.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;

use camino::{Utf8Path, Utf8PathBuf};
use engine::confine::Dir;
use engine::{Action, ActionContext, ActionFailure, ActionOutput, TaskId, TaskSpec};

/// Bump when what packaging produces changes for the same inputs.
pub const PACKAGE_VERSION: u32 = 1;

/// The formats written today.
pub const FORMATS: &[&str] = &["tar.gz", "zip"];

/// 1980-01-01T00:00:00Z: the timestamp when `SOURCE_DATE_EPOCH` is unset.
pub const DEFAULT_EPOCH: u64 = 315_532_800;

pub fn package_id(profile: &str, platform: &str, format: &str) -> TaskId {
    TaskId::new(format!("package:{profile}@{platform}:{format}"))
}

/// Where an archive lands (root-relative).
pub fn package_path(out: &Utf8Path, profile: &str, platform: &str, format: &str) -> Utf8PathBuf {
    out.join(profile)
        .join("packages")
        .join(format!("{profile}-{platform}.{format}"))
}

pub fn spec(
    out: &Utf8Path,
    profile: &str,
    platform: &str,
    format: &str,
    stage_dir: Utf8PathBuf,
    stage: TaskId,
) -> TaskSpec {
    let output = package_path(out, profile, platform, format);
    let mut params = BTreeMap::new();
    params.insert("format".to_string(), format.to_string());
    params.insert("stage".to_string(), stage_dir.to_string());
    params.insert("top".to_string(), format!("{profile}-{platform}"));
    TaskSpec {
        id: package_id(profile, platform, format),
        kind: "package".into(),
        impl_version: PACKAGE_VERSION,
        params,
        cwd: String::new(),
        inputs: Vec::new(),
        outputs: vec![output.to_string()],
        env: vec!["SOURCE_DATE_EPOCH".into()],
        tools: BTreeMap::new(),
        deps: vec![stage],
        description: Some(format!("Package {profile} for {platform} as {format}")),
        action: Arc::new(Package {
            format: format.to_string(),
            stage: stage_dir,
            top: format!("{profile}-{platform}"),
            output,
        }),
    }
}

struct Package {
    format: String,
    stage: Utf8PathBuf,
    top: String,
    output: Utf8PathBuf,
}

use crate::stage::{TreeEntry as Entry, regular_tree};

fn failure(message: String) -> ActionFailure {
    ActionFailure {
        message,
        ..ActionFailure::default()
    }
}

fn read(tree: &Dir, stage: &Utf8Path, path: &str) -> Result<Vec<u8>, String> {
    let relative = stage.join(path);
    let (mut file, _) = tree
        .open_file(relative.as_str())
        .map_err(|err| format!("reading {relative}: {err}"))?
        .ok_or_else(|| format!("{relative} disappeared"))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|err| format!("reading {relative}: {err}"))?;
    Ok(bytes)
}

fn mode(entry: &Entry) -> u32 {
    if entry.dir || entry.executable {
        0o755
    } else {
        0o644
    }
}

fn tar_gz(
    tree: &Dir,
    stage: &Utf8Path,
    top: &str,
    epoch: u64,
    entries: &[Entry],
) -> Result<Vec<u8>, String> {
    let gzip = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::new(6));
    let mut builder = tar::Builder::new(gzip);
    builder.mode(tar::HeaderMode::Deterministic);
    let io = |err: std::io::Error| format!("writing the archive: {err}");
    let header = |mode: u32, size: u64, dir: bool| {
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(epoch);
        header.set_entry_type(if dir {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        header
    };
    builder
        .append_data(
            &mut header(0o755, 0, true),
            format!("{top}/"),
            std::io::empty(),
        )
        .map_err(io)?;
    for entry in entries {
        if entry.dir {
            let name = format!("{top}/{}/", entry.path);
            builder
                .append_data(&mut header(0o755, 0, true), &name, std::io::empty())
                .map_err(io)?;
        } else {
            let name = format!("{top}/{}", entry.path);
            let bytes = read(tree, stage, &entry.path)?;
            builder
                .append_data(
                    &mut header(mode(entry), bytes.len() as u64, false),
                    &name,
                    bytes.as_slice(),
                )
                .map_err(io)?;
        }
    }
    let gzip = builder.into_inner().map_err(io)?;
    gzip.finish().map_err(io)
}

/// A zip's MS-DOS date and time for `epoch` (UTC), at the earliest 1980-01-01.
fn dos_time(epoch: u64) -> zip::DateTime {
    let epoch = epoch.max(DEFAULT_EPOCH);
    let days = (epoch / 86_400) as i64;
    let seconds = epoch % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as u16;
    zip::DateTime::from_date_and_time(
        year.min(2107),
        month,
        day,
        (seconds / 3600) as u8,
        (seconds % 3600 / 60) as u8,
        (seconds % 60) as u8,
    )
    .unwrap_or_default()
}

fn zip(
    tree: &Dir,
    stage: &Utf8Path,
    top: &str,
    epoch: u64,
    entries: &[Entry],
) -> Result<Vec<u8>, String> {
    use zip::write::SimpleFileOptions;
    let io = |err: zip::result::ZipError| format!("writing the archive: {err}");
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let time = dos_time(epoch);
    let options = |mode: u32| {
        SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(6))
            .last_modified_time(time)
            .unix_permissions(mode)
    };
    writer
        .add_directory(format!("{top}/"), options(0o755))
        .map_err(io)?;
    for entry in entries {
        let name = format!("{top}/{}", entry.path);
        if entry.dir {
            writer
                .add_directory(format!("{name}/"), options(0o755))
                .map_err(io)?;
        } else {
            let bytes = read(tree, stage, &entry.path)?;
            writer.start_file(name, options(mode(entry))).map_err(io)?;
            writer
                .write_all(&bytes)
                .map_err(|err| format!("writing the archive: {err}"))?;
        }
    }
    Ok(writer.finish().map_err(io)?.into_inner())
}

impl Action for Package {
    fn run(&self, context: &ActionContext<'_>) -> Result<ActionOutput, ActionFailure> {
        let epoch = match context.env.get(std::ffi::OsStr::new("SOURCE_DATE_EPOCH")) {
            None => DEFAULT_EPOCH,
            Some(value) => value
                .to_str()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    failure(format!(
                        "SOURCE_DATE_EPOCH={} is not a number of seconds",
                        value.to_string_lossy()
                    ))
                })?,
        };
        let tree = context.tree;
        let entries = regular_tree(tree, &self.stage).map_err(failure)?;
        let bytes = match self.format.as_str() {
            "tar.gz" => tar_gz(tree, &self.stage, &self.top, epoch, &entries),
            "zip" => zip(tree, &self.stage, &self.top, epoch, &entries),
            other => Err(format!("no writer for the format `{other}`")),
        }
        .map_err(failure)?;
        crate::stage::write_bytes(tree, &self.output, &bytes).map_err(failure)?;
        Ok(ActionOutput::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_times_are_calendar_dates() {
        let t = dos_time(1_700_000_000); // 2023-11-14T22:13:20Z
        assert_eq!(
            (
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            (2023, 11, 14, 22, 13, 20)
        );
        let t = dos_time(0);
        assert_eq!((t.year(), t.month(), t.day()), (1980, 1, 1));
    }
}
