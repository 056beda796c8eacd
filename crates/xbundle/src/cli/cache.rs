//! `cache stats | gc | verify | clean`.
//!
//! Human output is cargo-style status lines, as every other command's: what a query found
//! (`Cache`, `Verified`/`Checked`) on stdout through [`Shell::outcome`], what a maintenance
//! command did (`Removed`) on stderr through [`Shell::status`]; sizes and counts through
//! [`crate::units`]. JSON output is one event per command (`cache-stats`, `cache-gc`,
//! `cache-verify`), unchanged.

use engine::fsutil::{FileLock, LockMode};
use serde_json::json;

use super::{CacheCommand, Workspace};
use crate::diagnostic::{Diagnostic, exit};
use crate::shell::{GREEN, Shell, YELLOW};
use crate::units::{bytes, count};

/// Parses sizes such as `500M`, `2G`, `1.5GiB`, `1000` (bytes). K/M/G/T are powers of 1024.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. 500M, 2G)"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("unknown size unit `{other}` (use K, M, G or T)")),
    };
    Ok((number * multiplier as f64) as u64)
}

pub(super) fn cache(
    workspace: &Workspace,
    command: &CacheCommand,
    shell: &Shell,
) -> Result<u8, Diagnostic> {
    let store = workspace.engine.store();
    match command {
        CacheCommand::Stats => {
            let stats = store.stats()?;
            if shell.is_json() {
                shell.json(&json!({"event": "cache-stats", "dir": store.root(), "stats": stats}));
            } else {
                shell.outcome(
                    "Cache",
                    GREEN,
                    &format!(
                        "{}: {} ({}) and {} ({}), {} in total",
                        store.root().display(),
                        count(stats.actions as usize, "action result"),
                        bytes(stats.action_bytes),
                        count(stats.blobs as usize, "blob"),
                        bytes(stats.blob_bytes),
                        bytes(stats.action_bytes + stats.blob_bytes)
                    ),
                );
            }
            Ok(0)
        }
        CacheCommand::Gc { max_size } => {
            let _lock = lock(workspace, shell)?;
            let report = store.gc(*max_size)?;
            if shell.is_json() {
                shell.json(&json!({"event": "cache-gc", "report": report}));
            } else {
                shell.status(
                    "Removed",
                    GREEN,
                    &format!(
                        "{} and {}, {} freed; kept {} ({})",
                        count(report.removed_actions as usize, "action result"),
                        count(report.removed_blobs as usize, "blob"),
                        bytes(report.freed_bytes),
                        count(report.kept_actions as usize, "action result"),
                        bytes(report.kept_bytes)
                    ),
                );
            }
            Ok(0)
        }
        CacheCommand::Verify => {
            let _lock = lock(workspace, shell)?;
            // Entries are judged as a build would judge them: with their task's declared
            // outputs when the current graph has the task, by the structural rules otherwise.
            let graph = match crate::plan::graph(
                &workspace.config,
                &workspace.root,
                &workspace.tools,
            ) {
                Ok(graph) => Some(graph),
                Err(diagnostic) => {
                    shell.warn(&format!(
                        "the task graph could not be built ({}); entries are checked without their tasks' declared outputs",
                        diagnostic.message
                    ));
                    None
                }
            };
            let engine = &workspace.engine;
            let report = store.verify(&|result| engine.check_entry(result, graph.as_ref()))?;
            if shell.is_json() {
                shell.json(&json!({"event": "cache-verify", "report": report}));
            } else {
                for problem in &report.problems {
                    shell.warn(problem);
                }
                let checked = format!(
                    "{} and {}: {}",
                    count(report.actions_checked as usize, "action result"),
                    count(report.blobs_checked as usize, "blob"),
                    count(report.problems.len(), "problem")
                );
                if report.problems.is_empty() {
                    shell.outcome("Verified", GREEN, &checked);
                } else {
                    shell.outcome("Checked", YELLOW, &checked);
                }
            }
            Ok(if report.problems.is_empty() {
                0
            } else {
                exit::TASK_FAILED
            })
        }
        CacheCommand::Clean => {
            let _lock = lock(workspace, shell)?;
            let config = workspace.engine.config();
            // Only what the store and the engine created; the directories themselves and
            // anything else in them stay.
            let removed = store.clean()? + workspace.engine.clean_state()?;
            shell.status(
                "Removed",
                GREEN,
                &format!(
                    "cache entries in {} and the build state of {} ({})",
                    config.cache_dir.display(),
                    workspace.root,
                    count(removed as usize, "file")
                ),
            );
            Ok(0)
        }
    }
}

/// The workspace lock, then the store's lock, both exclusive: maintenance waits for every build
/// using this cache, in this workspace or another sharing it (see `engine::store`).
pub(super) fn lock(
    workspace: &Workspace,
    shell: &Shell,
) -> Result<(FileLock, FileLock), Diagnostic> {
    let workspace_lock = workspace.engine.lock_workspace(
        || shell.warn("blocking: waiting for another xbundle run to release the workspace lock"),
        &|| false,
    )?;
    let store_lock = workspace.engine.store().lock(
        LockMode::Exclusive,
        || shell.warn("blocking: waiting for builds using this cache to release the cache lock"),
        &|| false,
    )?;
    Ok((workspace_lock, store_lock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("2K"), Ok(2048));
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("G").is_err());
    }
}
