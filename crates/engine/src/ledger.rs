//! The ledger: for each task, the components of its last key and why it last ran.
//!
//! One file per task under `<state>/ledger/`, named by the SHA-256 of the task id. The first
//! line holds the key, so a run that only needs "is this the key I last saw?" reads one short
//! line; the JSON body (components, reasons) is parsed only by `explain` and on a miss.

use std::io::{self, BufRead, BufReader, Read, Write};

use serde::{Deserialize, Serialize};

use crate::confine::Place;
use crate::digest::Digest;
use crate::key::{DirtyReason, KeyComponents};
use crate::task::TaskId;

/// The largest ledger entry read (the key components of a task with a million inputs fit).
const MAX_ENTRY_BYTES: u64 = 256 << 20;

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

/// The ledger directory, a [`Place`] of the engine's: reached without following a link, its
/// entries read only when they are regular files.
#[derive(Clone, Debug)]
pub struct Ledger {
    place: Place,
}

impl Ledger {
    pub fn open(place: Place) -> Ledger {
        Ledger { place }
    }

    fn name(id: &TaskId) -> String {
        Digest::of_bytes(id.as_str().as_bytes()).to_hex()
    }

    /// The last key recorded for `id`, reading only the first line.
    pub fn last_key(&self, id: &TaskId) -> Option<Digest> {
        let dir = self.place.open().ok()??;
        let (file, _) = dir.open_file(&Self::name(id)).ok()??;
        let mut line = String::new();
        BufReader::new(file.take(128)).read_line(&mut line).ok()?;
        Digest::from_hex(line.trim_end())
    }

    pub fn get(&self, id: &TaskId) -> Option<LedgerEntry> {
        let dir = self.place.open().ok()??;
        let bytes = dir.read_file(&Self::name(id), MAX_ENTRY_BYTES).ok()??;
        let text = String::from_utf8(bytes).ok()?;
        let (_, body) = text.split_once('\n')?;
        serde_json::from_str(body).ok()
    }

    pub fn put(&self, entry: &LedgerEntry) -> io::Result<()> {
        let mut text = format!("{}\n", entry.key);
        text.push_str(&serde_json::to_string(entry).map_err(io::Error::other)?);
        let dir = self.place.create().map_err(io::Error::other)?;
        dir.write_file(&Self::name(&entry.id), 0o644, |file| {
            file.write_all(text.as_bytes())
                .map_err(|err| crate::confine::ConfineError::Io {
                    path: Self::name(&entry.id),
                    source: err,
                })
        })
        .map(|_| ())
        .map_err(io::Error::other)
    }

    /// The ledger directory.
    pub fn place(&self) -> &Place {
        &self.place
    }
}
