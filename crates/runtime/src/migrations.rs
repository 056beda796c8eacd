//! Migrations: commands run before a service starts, each once per `version`.
//!
//! State lives in `<app data>/runtime/migrations.json`: the app version of the last start
//! whose migrations all ran (`app_version`) and the versions applied per service. Eligibility:
//!
//! | `run_on` | runs when |
//! |---|---|
//! | `always` (default) | on any start, the first time the runtime sees this version |
//! | `first_install` (`install`) | on the first start of an install (no `app_version` yet) |
//! | `upgrade` | on a start whose app version differs from the recorded `app_version` |
//!
//! An applied version is never run again. A failed migration is not recorded; the service is
//! stopped with the command's output in its log. `app_version` is updated once every service
//! has passed its migrations, so an interrupted upgrade is resumed by the next start.

use crate::logs::ServiceLog;
use manifest::{Migration, RunOn};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct MigrationState {
    #[serde(default)]
    pub app_version: Option<String>,
    #[serde(default)]
    pub applied: BTreeMap<String, BTreeSet<String>>,
}

/// What kind of start this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartKind {
    FirstInstall,
    Upgrade,
    Normal,
}

pub struct Migrations {
    path: PathBuf,
    pub state: MigrationState,
    pub kind: StartKind,
}

impl Migrations {
    pub fn load(path: PathBuf, app_version: &str) -> Migrations {
        let state: MigrationState = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let kind = match &state.app_version {
            None => StartKind::FirstInstall,
            Some(previous) if previous != app_version => StartKind::Upgrade,
            Some(_) => StartKind::Normal,
        };
        Migrations { path, state, kind }
    }

    fn save(&self) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let temp = self.path.with_extension("tmp");
        if std::fs::write(
            &temp,
            serde_json::to_vec_pretty(&self.state).unwrap_or_default(),
        )
        .is_ok()
        {
            let _ = std::fs::rename(temp, &self.path);
        }
    }

    /// The migrations of a service due on this start, in manifest order.
    pub fn due<'a>(&self, service: &str, migrations: &'a [Migration]) -> Vec<&'a Migration> {
        let applied = self.state.applied.get(service);
        migrations
            .iter()
            .filter(|m| !applied.is_some_and(|a| a.contains(&m.version)))
            .filter(|m| match m.run_on.unwrap_or_default().normalized() {
                RunOn::FirstInstall | RunOn::Install => self.kind == StartKind::FirstInstall,
                RunOn::Upgrade => self.kind == StartKind::Upgrade,
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

    /// Called when every service has passed its migrations.
    pub fn finish(&mut self, app_version: &str) {
        if self.state.app_version.as_deref() != Some(app_version) {
            self.state.app_version = Some(app_version.to_owned());
            self.save();
        }
    }
}

/// Runs one migration command, its output going to the service's log.
pub fn run(
    migration: &Migration,
    command: &[String],
    cwd: &Path,
    env: &[(String, String)],
    log: &ServiceLog,
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
    let mut command = Command::new(&program_path);
    crate::process::with_clean_signals(&mut command);
    let output = command
        .args(args)
        .current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("cannot run {}: {err}", program_path.display()))?;
    for line in String::from_utf8_lossy(&output.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&output.stderr).lines())
    {
        log.line(line);
    }
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("exited with {}", output.status))
    }
}
