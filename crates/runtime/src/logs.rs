//! Per-service log files in the app data directory, with size-based rotation, and the lines
//! kept in memory for `log_match` readiness and health checks.
//!
//! A service's stdout and stderr are piped to the runtime, which appends each line to
//! `<app data>/<log_dir or "logs">/<service>.log` (opened beneath the app data directory
//! without following links, see `confine`). When a write would take the file past
//! `max_bytes` (default 5 MiB, `XBUNDLE_LOG_MAX_BYTES`), it is renamed `.1` (older ones shift
//! to `.2` and `.3`, the oldest is dropped) and a new file is started. Migration output goes
//! to the same log. The runtime writes no secret value into any log.
//!
//! **Invariant: what a service prints is bounded in memory.** A line longer than
//! [`MAX_LINE`] (64 KiB) is split into pieces of at most that size (at a UTF-8 character
//! boundary), each logged as a line of its own; the pump never holds more than one piece and
//! one read. The lines kept for `log_match` are bounded in count ([`RECENT_LINES`]) and bytes
//! ([`RECENT_BYTES`]); `/logs/tail` reads the files from their end and returns at most
//! [`TAIL_MAX_BYTES`].

use crate::confine::Dir;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

const KEEP_ROTATED: u32 = 3;
/// At most this many recent lines are kept for `log_match` checks...
pub const RECENT_LINES: usize = 512;
/// ...and at most this many bytes of them.
pub const RECENT_BYTES: usize = 1024 * 1024;
/// The longest line logged; longer output is split into lines of this size.
pub const MAX_LINE: usize = 64 * 1024;
/// The most `/logs/tail` returns (older lines are left out).
pub const TAIL_MAX_BYTES: u64 = 2 * 1024 * 1024;

struct Inner {
    file: Option<File>,
    size: u64,
    /// Sequence number of the next line.
    next_seq: u64,
    recent: VecDeque<(u64, String)>,
    recent_bytes: usize,
}

/// One service's log.
pub struct ServiceLog {
    /// For display (`/status`, messages).
    pub path: PathBuf,
    dir: Dir,
    name: String,
    max_bytes: u64,
    inner: Mutex<Inner>,
}

impl ServiceLog {
    /// Opens (creating it) the log file `name` in `dir`.
    pub fn open(dir: Dir, name: String) -> std::io::Result<Arc<ServiceLog>> {
        let file = dir.open_append(&name, 0o644)?;
        let size = file.metadata()?.len();
        let max_bytes = std::env::var("XBUNDLE_LOG_MAX_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5 * 1024 * 1024);
        Ok(Arc::new(ServiceLog {
            path: dir.path().join(&name),
            dir,
            name,
            max_bytes,
            inner: Mutex::new(Inner {
                file: Some(file),
                size,
                next_seq: 0,
                recent: VecDeque::new(),
                recent_bytes: 0,
            }),
        }))
    }

    fn rotated(&self, n: u32) -> String {
        format!("{}.{n}", self.name)
    }

    /// Appends one line (a newline is added); a line over [`MAX_LINE`] is split.
    pub fn line(&self, text: &str) {
        let mut rest = text;
        loop {
            let cut = split_point(rest.as_bytes(), MAX_LINE);
            let (piece, tail) = rest.split_at(cut);
            self.append(piece);
            if tail.is_empty() {
                return;
            }
            rest = tail;
        }
    }

    fn append(&self, text: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let len = text.len() as u64 + 1;
        if inner.size > 0 && inner.size + len > self.max_bytes {
            inner.file = None;
            for n in (1..KEEP_ROTATED).rev() {
                let _ = self.dir.rename(&self.rotated(n), &self.rotated(n + 1));
            }
            let _ = self.dir.rename(&self.name, &self.rotated(1));
            inner.file = self.dir.open_append(&self.name, 0o644).ok();
            inner.size = 0;
        }
        if let Some(file) = inner.file.as_mut() {
            let mut bytes = Vec::with_capacity(text.len() + 1);
            bytes.extend_from_slice(text.as_bytes());
            bytes.push(b'\n');
            let _ = file.write_all(&bytes);
        }
        inner.size += len;
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.recent_bytes += text.len();
        inner.recent.push_back((seq, text.to_owned()));
        while inner.recent.len() > RECENT_LINES || inner.recent_bytes > RECENT_BYTES {
            let Some((_, old)) = inner.recent.pop_front() else {
                break;
            };
            inner.recent_bytes -= old.len();
        }
    }

    /// The sequence number the next line will get (a mark for [`ServiceLog::matches_since`]).
    pub fn mark(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_seq
    }

    /// Whether a line logged at or after `mark` matches `pattern`.
    pub fn matches_since(&self, mark: u64, pattern: &regex_lite::Regex) -> bool {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .recent
            .iter()
            .any(|(seq, line)| *seq >= mark && pattern.is_match(line))
    }

    /// The last `lines` lines of the log (reading the rotated file too when needed), at most
    /// [`TAIL_MAX_BYTES`] of them.
    pub fn tail(&self, lines: usize) -> Vec<String> {
        let _guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut budget = TAIL_MAX_BYTES;
        let mut collected = self.tail_of(&self.name, lines, &mut budget);
        if collected.len() < lines && budget > 0 {
            let mut older = self.tail_of(&self.rotated(1), lines - collected.len(), &mut budget);
            older.append(&mut collected);
            collected = older;
        }
        collected
    }

    /// The last `lines` complete lines of one file, reading backwards from its end, at most
    /// `budget` bytes (which it lowers).
    fn tail_of(&self, name: &str, lines: usize, budget: &mut u64) -> Vec<String> {
        let Ok(mut file) = self.dir.open_file_read(name.as_bytes()) else {
            return Vec::new();
        };
        let Ok(end) = file.seek(SeekFrom::End(0)) else {
            return Vec::new();
        };
        let mut start = end;
        let mut data: Vec<u8> = Vec::new();
        const BLOCK: u64 = 64 * 1024;
        // Enough newlines for `lines` lines plus the one before the first of them.
        while start > 0 && *budget > 0 && data.iter().filter(|&&b| b == b'\n').count() <= lines {
            let size = BLOCK.min(start).min(*budget);
            start -= size;
            let mut block = vec![0u8; size as usize];
            if file.seek(SeekFrom::Start(start)).is_err() || file.read_exact(&mut block).is_err() {
                break;
            }
            *budget -= size;
            block.extend_from_slice(&data);
            data = block;
        }
        // A partial first line (cut by the budget or the block) is left out.
        let text = if start > 0 {
            match data.iter().position(|&b| b == b'\n') {
                Some(newline) => &data[newline + 1..],
                None => &[][..],
            }
        } else {
            &data[..]
        };
        let all: Vec<String> = String::from_utf8_lossy(text)
            .lines()
            .map(str::to_owned)
            .collect();
        let skip = all.len().saturating_sub(lines);
        all.into_iter().skip(skip).collect()
    }

    /// Copies a child's output stream into the log, line by line, until it closes. A line
    /// longer than [`MAX_LINE`] is logged in pieces as it arrives, never buffered whole.
    pub fn pump(
        self: &Arc<Self>,
        stream: impl Read + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        let log = Arc::clone(self);
        std::thread::spawn(move || {
            let mut reader = BufReader::with_capacity(16 * 1024, stream);
            let mut splitter = LineSplitter::default();
            loop {
                let chunk = match reader.fill_buf() {
                    Ok([]) => break,
                    Ok(chunk) => chunk,
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let used = chunk.len();
                splitter.push(chunk, &mut |line| log.line(line));
                reader.consume(used);
            }
            splitter.finish(&mut |line| log.line(line));
        })
    }
}

/// Where to cut `bytes` so the first part has at most `max` bytes and does not end inside a
/// UTF-8 character (when `bytes` is valid UTF-8).
fn split_point(bytes: &[u8], max: usize) -> usize {
    if bytes.len() <= max {
        return bytes.len();
    }
    let mut cut = max;
    // Back up over continuation bytes (at most 3) to the start of the character.
    while cut > max.saturating_sub(3) && cut > 0 && bytes[cut] & 0xC0 == 0x80 {
        cut -= 1;
    }
    if bytes[cut] & 0xC0 == 0x80 { max } else { cut }
}

/// Turns a byte stream into lines of at most [`MAX_LINE`] bytes.
#[derive(Default)]
struct LineSplitter {
    line: Vec<u8>,
    /// The last piece emitted was cut from a longer line (so a newline right after it ends
    /// that line and does not make an empty one).
    split: bool,
}

impl LineSplitter {
    fn push(&mut self, mut chunk: &[u8], emit: &mut dyn FnMut(&str)) {
        while !chunk.is_empty() {
            let newline = chunk.iter().position(|&b| b == b'\n');
            let (part, rest) = match newline {
                Some(at) => (&chunk[..at], &chunk[at + 1..]),
                None => (chunk, &[][..]),
            };
            self.line.extend_from_slice(part);
            while self.line.len() > MAX_LINE {
                let cut = split_point(&self.line, MAX_LINE);
                emit(&String::from_utf8_lossy(&self.line[..cut]));
                self.line.drain(..cut);
                self.split = true;
            }
            if newline.is_some() {
                if !(self.line.is_empty() && self.split) {
                    let text = String::from_utf8_lossy(&self.line);
                    emit(text.trim_end_matches('\r'));
                }
                self.line.clear();
                self.split = false;
            }
            chunk = rest;
        }
    }

    fn finish(&mut self, emit: &mut dyn FnMut(&str)) {
        if !self.line.is_empty() {
            emit(String::from_utf8_lossy(&self.line).trim_end_matches('\r'));
        }
        self.line.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_tails_across_files() {
        let dir = std::env::temp_dir().join(format!("xbundle-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let handle = Dir::create_root(&dir).unwrap();
        let log = ServiceLog::open(handle, "svc.log".into()).unwrap();
        let log = Arc::new(ServiceLog {
            max_bytes: 100,
            ..Arc::try_unwrap(log).ok().unwrap()
        });
        for n in 0..30 {
            log.line(&format!("line {n:02} ........."));
        }
        assert!(std::fs::metadata(dir.join("svc.log")).unwrap().len() <= 100);
        assert!(dir.join("svc.log.1").exists() && dir.join("svc.log.3").exists());
        assert!(!dir.join("svc.log.4").exists());
        let tail = log.tail(6);
        assert_eq!(tail.len(), 6);
        assert_eq!(tail.last().unwrap(), "line 29 .........");
        assert_eq!(tail.first().unwrap(), "line 24 .........");
        let pattern = regex_lite::Regex::new("line 2[0-9]").unwrap();
        assert!(log.matches_since(25, &pattern));
        assert!(!log.matches_since(30, &pattern));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut splitter = LineSplitter::default();
        for chunk in chunks {
            splitter.push(chunk, &mut |l| lines.push(l.to_owned()));
        }
        splitter.finish(&mut |l| lines.push(l.to_owned()));
        lines
    }

    #[test]
    fn long_lines_are_split_at_character_boundaries() {
        assert_eq!(split(&[b"a\r\nb", b"c\n\nd"]), ["a", "bc", "", "d"]);
        // Exactly two pieces, then the newline ends the line without an empty one.
        let long = vec![b'x'; 2 * MAX_LINE];
        let lines = split(&[&long[..1000], &long[1000..], b"\nnext\n"]);
        assert_eq!(lines.len(), 3);
        assert!(lines[..2].iter().all(|l| l.len() == MAX_LINE));
        assert_eq!(lines[2], "next");
        // A multi-byte character straddling the limit moves whole to the next piece.
        let mut text = vec![b'y'; MAX_LINE - 1];
        text.extend_from_slice("é and more".as_bytes());
        let lines = split(&[&text]);
        assert_eq!(lines[0].len(), MAX_LINE - 1);
        assert_eq!(lines[1], "é and more");
        let mut lossy = vec![0x80u8; MAX_LINE + 10];
        lossy.push(b'\n');
        assert!(split(&[&lossy]).len() == 2);
    }

    #[test]
    fn recent_lines_are_bounded_in_bytes() {
        let dir = std::env::temp_dir().join(format!("xbundle-logs-recent-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let log = ServiceLog::open(Dir::create_root(&dir).unwrap(), "r.log".into()).unwrap();
        let piece = "z".repeat(MAX_LINE);
        for _ in 0..64 {
            log.line(&piece);
        }
        let inner = log.inner.lock().unwrap();
        assert!(inner.recent_bytes <= RECENT_BYTES);
        assert_eq!(
            inner.recent.iter().map(|(_, l)| l.len()).sum::<usize>(),
            inner.recent_bytes
        );
        drop(inner);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
