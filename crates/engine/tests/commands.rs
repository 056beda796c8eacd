//! What a task's command sees: the engine's environment, exactly, whether or not it is the
//! environment of the process running the engine (a command inherits the latter as it is).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::sync::Arc;

use engine::events::Silent;
use engine::{CommandAction, Engine, EngineConfig, TaskGraph, TaskSpec};

use crate::discovered_actions::spec;

/// A variable of this process's environment that a shell leaves alone, and its value.
fn a_variable_of_ours() -> (String, String) {
    std::env::vars()
        .find(|(name, value)| {
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && ![
                    "PATH", "PWD", "OLDPWD", "SHLVL", "_", "IFS", "PS1", "PS2", "PS4", "OPTIND",
                ]
                .contains(&name.as_str())
                && !value.contains(['\n', '%', '\\'])
        })
        .expect("the test's environment has a variable")
}

/// Runs a command that writes `${XB_ENGINE_ONLY-unset}|${<ours>-unset}` under an engine whose
/// environment is `env`, once as `sh` (found on PATH by the engine: the environment inherited
/// when it is the process's own) and once as `/bin/sh` (left to execvp: always set); what it
/// wrote, the same both times.
fn seen(env: BTreeMap<OsString, OsString>, ours: &str) -> String {
    let found = seen_as("sh", env.clone(), ours);
    assert_eq!(found, seen_as("/bin/sh", env, ours));
    found
}

fn seen_as(shell: &str, env: BTreeMap<OsString, OsString>, ours: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(dir.path());
    config.jobs = 1;
    config.env = env;
    let engine = Engine::new(config);
    let script =
        format!("printf '%s|%s' \"${{XB_ENGINE_ONLY-unset}}\" \"${{{ours}-unset}}\" > out.txt");
    let action = CommandAction {
        argv: vec![shell.into(), "-c".into(), script],
        ..CommandAction::default()
    };
    let spec: TaskSpec = spec(Arc::new(action), &["out.txt"]);
    let id = spec.id.clone();
    let graph = TaskGraph::new(vec![spec]).unwrap();
    let summary = engine.run(&graph, &[id], &Silent).unwrap();
    assert_eq!(summary.failed, 0);
    std::fs::read_to_string(dir.path().join("out.txt")).unwrap()
}

#[test]
fn a_command_sees_the_engines_environment_whether_or_not_it_is_the_processs_own() {
    let (name, value) = a_variable_of_ours();
    let own: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    // The process's own environment: inherited.
    assert_eq!(seen(own.clone(), &name), format!("unset|{value}"));
    // One more variable, one fewer: set in full.
    let mut other = own.clone();
    other.insert("XB_ENGINE_ONLY".into(), "engine".into());
    other.remove(&OsString::from(&name));
    assert_eq!(seen(other, &name), "engine|unset");
    // The same names, one value changed.
    let mut changed = own.clone();
    changed.insert(OsString::from(&name), "changed".into());
    assert_eq!(seen(changed, &name), "unset|changed");
    // One fewer only.
    let mut fewer = own;
    fewer.remove(&OsString::from(&name));
    assert_eq!(seen(fewer, &name), "unset|unset");
}
