//! The ledger: for each task, the components of its last key and why it last ran.
//!
//! One file per task under `<state>/ledger/`, named by the SHA-256 of the task id. The first
//! line holds the key, so a run that only needs "is this the key I last saw?" reads one short
//! line; the JSON body (components, reasons) is parsed only by `explain` and on a miss.

use std::fs;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::fsutil::write_atomic;
use crate::key::{DirtyReason, KeyComponents};
use crate::task::TaskId;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub id: TaskId,
    pub key: Digest,
    pub components: KeyComponents,
    /// "ran" or "cached": how the tree got these outputs.
    pub outcome: String,
    /// Why the task last ran or was restored.
    pub reasons: Vec<DirtyReason>,
    /// Seconds since the Unix epoch.
    pub at_unix: u64,
}

#[derive(Clone, Debug)]
pub struct Ledger {
    dir: PathBuf,
}

impl Ledger {
    pub fn open(dir: impl Into<PathBuf>) -> Ledger {
        Ledger { dir: dir.into() }
    }

    fn path(&self, id: &TaskId) -> PathBuf {
        self.dir
            .join(Digest::of_bytes(id.as_str().as_bytes()).to_hex())
    }

    /// The last key recorded for `id`, reading only the first line.
    pub fn last_key(&self, id: &TaskId) -> Option<Digest> {
        let file = fs::File::open(self.path(id)).ok()?;
        let mut line = String::new();
        BufReader::new(file).read_line(&mut line).ok()?;
        Digest::from_hex(line.trim_end())
    }

    pub fn get(&self, id: &TaskId) -> Option<LedgerEntry> {
        let text = fs::read_to_string(self.path(id)).ok()?;
        let (_, body) = text.split_once('\n')?;
        serde_json::from_str(body).ok()
    }

    pub fn put(&self, entry: &LedgerEntry) -> io::Result<()> {
        let mut text = format!("{}\n", entry.key);
        text.push_str(&serde_json::to_string(entry).map_err(io::Error::other)?);
        write_atomic(&self.path(&entry.id), text.as_bytes())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
