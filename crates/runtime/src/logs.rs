//! Per-service log files in the app data directory, with size-based rotation, and the lines
//! kept in memory for `log_match` readiness and health checks.
//!
//! A service's stdout and stderr are piped to the runtime, which appends each line to
//! `<app data>/<log_dir or "logs">/<service>.log`. When a write would take the file past
//! `max_bytes` (default 5 MiB, `XBUNDLE_LOG_MAX_BYTES`), it is renamed `.1` (older ones shift
//! to `.2` and `.3`, the oldest is dropped) and a new file is started. Migration output goes
//! to the same log. The runtime writes no secret value into any log.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const KEEP_ROTATED: u32 = 3;
const RECENT_LINES: usize = 512;

struct Inner {
    file: Option<File>,
    size: u64,
    /// Sequence number of the next line.
    next_seq: u64,
    recent: std::collections::VecDeque<(u64, String)>,
}

/// One service's log.
pub struct ServiceLog {
    pub path: PathBuf,
    max_bytes: u64,
    inner: Mutex<Inner>,
}

impl ServiceLog {
    pub fn open(path: PathBuf) -> std::io::Result<Arc<ServiceLog>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        let max_bytes = std::env::var("XBUNDLE_LOG_MAX_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5 * 1024 * 1024);
        Ok(Arc::new(ServiceLog {
            path,
            max_bytes,
            inner: Mutex::new(Inner {
                file: Some(file),
                size,
                next_seq: 0,
                recent: Default::default(),
            }),
        }))
    }

    /// Appends one line (a newline is added).
    pub fn line(&self, text: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let len = text.len() as u64 + 1;
        if inner.size > 0 && inner.size + len > self.max_bytes {
            inner.file = None;
            for n in (1..KEEP_ROTATED).rev() {
                let _ = std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1));
            }
            let _ = std::fs::rename(&self.path, rotated(&self.path, 1));
            inner.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .ok();
            inner.size = 0;
        }
        if let Some(file) = inner.file.as_mut() {
            let _ = writeln!(file, "{text}");
        }
        inner.size += len;
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.recent.push_back((seq, text.to_owned()));
        if inner.recent.len() > RECENT_LINES {
            inner.recent.pop_front();
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

    /// The last `lines` lines of the log (reading the rotated file too when needed).
    pub fn tail(&self, lines: usize) -> Vec<String> {
        let _guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut collected = read_lines(&self.path);
        if collected.len() < lines {
            let mut older = read_lines(&rotated(&self.path, 1));
            older.append(&mut collected);
            collected = older;
        }
        let skip = collected.len().saturating_sub(lines);
        collected.split_off(skip)
    }

    /// Copies a child's output stream into the log, line by line, until it closes.
    pub fn pump(
        self: &Arc<Self>,
        stream: impl Read + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        let log = Arc::clone(self);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut buffer = Vec::new();
            while let Ok(read) = reader.read_until(b'\n', &mut buffer) {
                if read == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buffer);
                log.line(text.trim_end_matches(['\n', '\r']));
                buffer.clear();
            }
        })
    }
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read(path)
        .map(|bytes| {
            String::from_utf8_lossy(&bytes)
                .lines()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_tails_across_files() {
        let dir = std::env::temp_dir().join(format!("xbundle-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let log = ServiceLog::open(dir.join("svc.log")).unwrap();
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
        let pattern = regex_lite::Regex::new("line 2[0-9]").unwrap();
        assert!(log.matches_since(25, &pattern));
        assert!(!log.matches_since(30, &pattern));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
