//! Migrations: commands run before a service starts, each once per `version`.
//!
//! State lives in `<app data>/runtime/migrations.json`: per service, the app version its
//! migrations last completed for (`services`), and the versions applied per service
//! (`applied`). The install/upgrade decision is **per service**, so a service that could not
//! get to its migrations on some start (no binary for this platform, a secret it waits for, no
//! free port) does not hold back the decision of the others:
//!
//! | `run_on` | runs when |
//! |---|---|
//! | `always` (default) | on any start, the first time the runtime sees this version |
//! | `first_install` (`install`) | on a start where this service has never completed its migrations |
//! | `upgrade` | on a start whose app version differs from the one this service last completed its migrations for |
//!
//! An applied version is never run again. A failed migration is not recorded; the service is
//! stopped with the command's output in its log. A service's entry in `services` is updated
//! once it has passed all its due migrations, so an interrupted install or upgrade is resumed
//! by the next start.
//!
//! Files written before per-service state existed hold only `app_version` (the version of the
//! last start on which every service passed its migrations). For a service without its own
//! entry, such a file is read as: that `app_version` if there is one; else, when the service
//! has applied migrations, an unknown earlier version (so this start is an upgrade for it,
//! which is the case the old format could not record); else a first install. `app_version` is
//! still written (when every service has passed its migrations) for older runtimes.

use crate::confine::Dir;
use crate::logs::ServiceLog;
use manifest::{Migration, RunOn};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct MigrationState {
    #[serde(default)]
    pub app_version: Option<String>,
    /// Per service: the app version its migrations last completed for. Absent in files
    /// written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub applied: BTreeMap<String, BTreeSet<String>>,
}

/// What kind of start this is, for one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartKind {
    FirstInstall,
    Upgrade,
    Normal,
}

pub struct Migrations {
    /// `<app data>/runtime`, where [`FILE`] lives.
    dir: Dir,
    pub state: MigrationState,
    app_version: String,
    /// The file predates per-service state (see the module docs).
    legacy: bool,
}

/// The state file in `<app data>/runtime/`.
pub const FILE: &str = "migrations.json";

impl Migrations {
    /// Loads [`FILE`] from `dir` (not through a link).
    pub fn load(dir: Dir, app_version: &str) -> Migrations {
        let mut state: MigrationState = dir
            .read(FILE, crate::ports::STATE_LIMIT)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let legacy = state.services.is_none();
        state.services.get_or_insert_with(BTreeMap::new);
        Migrations {
            dir,
            state,
            app_version: app_version.to_owned(),
            legacy,
        }
    }

    fn save(&self) {
        let bytes = serde_json::to_vec_pretty(&self.state).unwrap_or_default();
        let _ = self.dir.replace(FILE, &bytes, 0o644);
    }

    /// What this start is for `service`.
    pub fn kind(&self, service: &str) -> StartKind {
        let recorded = self.state.services.as_ref().and_then(|m| m.get(service));
        let previous = match recorded {
            Some(version) => Some(version.as_str()),
            None if self.legacy => match &self.state.app_version {
                Some(version) => Some(version.as_str()),
                // Migrated under the old format, version never recorded: an earlier one.
                None if self.state.applied.contains_key(service) => return StartKind::Upgrade,
                None => None,
            },
            None => None,
        };
        match previous {
            None => StartKind::FirstInstall,
            Some(previous) if previous != self.app_version => StartKind::Upgrade,
            Some(_) => StartKind::Normal,
        }
    }

    /// The migrations of a service due on this start, in manifest order.
    pub fn due<'a>(&self, service: &str, migrations: &'a [Migration]) -> Vec<&'a Migration> {
        let applied = self.state.applied.get(service);
        let kind = self.kind(service);
        migrations
            .iter()
            .filter(|m| !applied.is_some_and(|a| a.contains(&m.version)))
            .filter(|m| match m.run_on.unwrap_or_default().normalized() {
                RunOn::FirstInstall | RunOn::Install => kind == StartKind::FirstInstall,
                RunOn::Upgrade => kind == StartKind::Upgrade,
                RunOn::Always => true,
            })
            .collect()
    }

    pub fn record(&mut self, service: &str, version: &str) {
        self.state
            .applied
            .entry(service.to_owned())
            .or_default()
            .insert(version.to_owned());
        self.save();
    }

    /// Called when `service` has passed its migrations on this start; `all` when every
    /// service has.
    pub fn finish(&mut self, service: &str, all: bool) {
        let services = self.state.services.get_or_insert_with(BTreeMap::new);
        let mut changed = false;
        if services.get(service) != Some(&self.app_version) {
            services.insert(service.to_owned(), self.app_version.clone());
            changed = true;
        }
        if all && self.state.app_version.as_deref() != Some(&self.app_version) {
            self.state.app_version = Some(self.app_version.clone());
            changed = true;
        }
        if changed || self.legacy {
            self.legacy = false;
            self.save();
        }
    }
}

/// How long a migration may run when it sets no `timeout_ms` (extension field).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// A migration's time limit: its `timeout_ms` extension, else [`DEFAULT_TIMEOUT`].
pub fn timeout(migration: &Migration) -> Duration {
    migration
        .extra
        .get("timeout_ms")
        .and_then(|v| v.as_u64())
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// Runs one migration command under the shim (a process group of its own, killed with the
/// runtime even by SIGKILL), its output going to the service's log. `started` is told the
/// shim's pid as soon as it runs (the supervisor stops it on shutdown). On timeout the whole
/// tree is stopped (SIGTERM, `grace`, SIGKILL). Blocks: call it off the supervisor thread,
/// from a thread that outlives the child (see [`crate::process::spawn`]).
pub fn run(
    migration: &Migration,
    command: &[String],
    cwd: &Path,
    env: &[(String, String)],
    log: &Arc<ServiceLog>,
    grace: Duration,
    started: impl FnOnce(u32),
) -> Result<(), String> {
    let Some((program, args)) = command.split_first() else {
        return Err("empty command".into());
    };
    let program_path = if program.contains('/') && Path::new(program).is_relative() {
        cwd.join(program)
    } else {
        PathBuf::from(program)
    };
    log.line(&format!(
        "[xbundle-runtime] migration {}: {}",
        migration.version,
        command.join(" ")
    ));
    let mut child = crate::process::spawn(&crate::process::ShimCommand {
        program: &program_path,
        args,
        cwd,
        env,
        grace,
        pass_fds: &[],
        capture: true,
    })
    .map_err(|err| format!("cannot run {}: {err}", program_path.display()))?;
    started(child.id());
    let pumps: Vec<_> = [
        child.stdout.take().map(|s| log.pump(s)),
        child.stderr.take().map(|s| log.pump(s)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let limit = timeout(migration);
    let outcome = crate::process::wait_bounded(&mut child, limit, grace);
    // The output is in the log before the outcome is reported (bounded: a descendant that
    // escaped the tree could keep a pipe open).
    let until = std::time::Instant::now() + Duration::from_secs(1);
    while pumps.iter().any(|p| !p.is_finished()) && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    match outcome {
        Some(0) => Ok(()),
        Some(127) => Err(format!("could not run {}", program_path.display())),
        Some(code) => Err(format!("exited with code {code}")),
        None => Err(format!("timed out after {} ms", limit.as_millis())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migrations() -> Vec<Migration> {
        serde_json::from_value(serde_json::json!([
            {"version": "1", "command": ["x"], "run_on": "first_install"},
            {"version": "2", "command": ["x"]},
            {"version": "3", "command": ["x"], "run_on": "upgrade"}
        ]))
        .unwrap()
    }

    fn versions(due: Vec<&Migration>) -> Vec<&str> {
        due.into_iter().map(|m| m.version.as_str()).collect()
    }

    #[test]
    fn the_install_or_upgrade_decision_is_per_service() {
        let dir = std::env::temp_dir().join(format!("xbundle-rt-mig-{}", std::process::id()));
        let path = dir.join("migrations.json");
        let _ = std::fs::remove_dir_all(&dir);
        let handle = Dir::create_root(&dir).unwrap();
        let load = |version| Migrations::load(handle.try_clone().unwrap(), version);
        let list = migrations();
        let mut m = load("1.0");
        assert_eq!(versions(m.due("a", &list)), ["1", "2"]);
        m.record("a", "1");
        m.record("a", "2");
        // `b` never got to its migrations on this start.
        m.finish("a", false);
        let m = load("2.0");
        assert_eq!(m.kind("a"), StartKind::Upgrade);
        assert_eq!(versions(m.due("a", &list)), ["3"]);
        assert_eq!(m.kind("b"), StartKind::FirstInstall);
        assert_eq!(versions(m.due("b", &list)), ["1", "2"]);

        // A file of the old format, written when `b` had not migrated (no app_version).
        std::fs::write(
            &path,
            r#"{"app_version": null, "applied": {"a": ["1", "2"]}}"#,
        )
        .unwrap();
        let m = load("2.0");
        assert_eq!(versions(m.due("a", &list)), ["3"]);
        assert_eq!(versions(m.due("b", &list)), ["1", "2"]);
        std::fs::write(
            &path,
            r#"{"app_version": "1.0", "applied": {"a": ["1", "2"]}}"#,
        )
        .unwrap();
        let m = load("1.0");
        assert_eq!(m.kind("a"), StartKind::Normal);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
