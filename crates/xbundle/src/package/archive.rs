//! Portable archives, `tar.gz` and `zip` (the `tar`, `flate2` and `zip` crates): the stage
//! below one top-level directory `<profile>-<platform>/`, entries sorted, owners 0:0 without
//! names, fixed modes, every timestamp the epoch, gzip without a name or time at level 6.

use std::io::Write;

use super::{DEFAULT_EPOCH, Exact, Input, Payload, PayloadKind, Source};

/// The stage under `<top>/` as a payload (directories first, sorted).
fn portable(input: &Input<'_>) -> Result<Payload, String> {
    let mut payload = Payload::default();
    payload.stage(input, &input.top);
    payload.sort();
    Ok(payload)
}

/// A tar header for a regular file or a directory, owned by 0:0 with no names.
pub fn tar_header(mode: u32, size: u64, dir: bool, epoch: u64) -> tar::Header {
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
}

/// Writes `payload` as a tar stream into `to`, directories with a trailing `/`.
pub fn write_tar<W: Write>(input: &Input<'_>, payload: &Payload, to: W) -> Result<W, String> {
    let epoch = input.meta.epoch;
    let mut builder = tar::Builder::new(to);
    builder.mode(tar::HeaderMode::Deterministic);
    let io = |err: std::io::Error| format!("writing the archive: {err}");
    for entry in &payload.entries {
        match &entry.kind {
            PayloadKind::Dir => builder
                .append_data(
                    &mut tar_header(0o755, 0, true, epoch),
                    format!("{}/", entry.path),
                    std::io::empty(),
                )
                .map_err(io)?,
            PayloadKind::File { source, size, mode } => {
                let mut header = tar_header(*mode, *size, false, epoch);
                let name = entry.path.as_str();
                match source {
                    Source::Bytes(bytes) => builder
                        .append_data(&mut header, name, &bytes[..])
                        .map_err(io)?,
                    Source::Stage(path) => {
                        let mut reader = Exact::open(input, path, *size)?;
                        builder
                            .append_data(&mut header, name, &mut reader)
                            .map_err(io)?;
                        reader.finish()?;
                    }
                }
            }
        }
    }
    builder.into_inner().map_err(io)
}

/// A gzip stream with no name and no time, at level 6.
pub fn gzip<W: Write>(to: W) -> flate2::write::GzEncoder<W> {
    flate2::GzBuilder::new()
        .mtime(0)
        .write(to, flate2::Compression::new(6))
}

pub fn tar_gz(input: &Input<'_>, file: &mut std::fs::File) -> Result<(), String> {
    let payload = portable(input)?;
    let buffered = std::io::BufWriter::with_capacity(1 << 20, file);
    let gzip = write_tar(input, &payload, gzip(buffered))?;
    let mut buffered = gzip
        .finish()
        .map_err(|err| format!("writing the archive: {err}"))?;
    buffered
        .flush()
        .map_err(|err| format!("writing the archive: {err}"))
}

/// A zip's MS-DOS date and time for `epoch` (UTC), at the earliest 1980-01-01.
pub fn dos_time(epoch: u64) -> zip::DateTime {
    let (year, month, day, hour, minute, second) = civil(epoch.max(DEFAULT_EPOCH));
    zip::DateTime::from_date_and_time(year.min(2107) as u16, month, day, hour, minute, second)
        .unwrap_or_default()
}

/// The UTC calendar date and time of `epoch`: (year, month, day, hour, minute, second).
pub fn civil(epoch: u64) -> (i64, u8, u8, u8, u8, u8) {
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
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (seconds / 3600) as u8,
        (seconds % 3600 / 60) as u8,
        (seconds % 60) as u8,
    )
}

/// `epoch` as ISO 8601 UTC with milliseconds (`2024-01-02T03:04:05.000Z`), as electron-updater
/// writes `releaseDate`.
pub fn iso8601(epoch: u64) -> String {
    let (year, month, day, hour, minute, second) = civil(epoch);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.000Z")
}

pub fn zip(input: &Input<'_>, file: &mut std::fs::File) -> Result<(), String> {
    use zip::write::SimpleFileOptions;
    let payload = portable(input)?;
    let io = |err: zip::result::ZipError| format!("writing the archive: {err}");
    let mut writer = zip::ZipWriter::new(std::io::BufWriter::with_capacity(1 << 20, file));
    let time = dos_time(input.meta.epoch);
    let options = |mode: u32| {
        SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(6))
            .last_modified_time(time)
            .unix_permissions(mode)
            .large_file(false)
    };
    for entry in &payload.entries {
        match &entry.kind {
            PayloadKind::Dir => writer
                .add_directory(format!("{}/", entry.path), options(0o755))
                .map_err(io)?,
            PayloadKind::File { source, size, mode } => {
                writer
                    .start_file(
                        entry.path.as_str(),
                        options(*mode).large_file(*size >= u32::MAX as u64),
                    )
                    .map_err(io)?;
                Payload::copy(input, source, *size, &mut writer)?;
            }
        }
    }
    let mut buffered = writer.finish().map_err(io)?;
    buffered
        .flush()
        .map_err(|err| format!("writing the archive: {err}"))
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

    #[test]
    fn release_dates_are_iso8601() {
        assert_eq!(iso8601(1_700_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
    }
}
