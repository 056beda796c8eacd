//! Semantic checks of a manifest that its types cannot express.
//!
//! Every problem carries the JSON path of the value at fault. Errors make a manifest unusable
//! (the runtime refuses it, the pipeline must not write it); warnings are reported and
//! tolerated, because the real manifests of the conformance corpus have them (e.g. a template
//! `${playwright.http}` naming a service whose id is `playwright-driver`).
//!
//! Checked: unique service, secret and port ids; dependencies that exist, are not the service
//! itself and form no cycle; port ranges with `1 <= min <= max`; reserved ports non-zero;
//! secrets referenced by services exist; no `infrastructure` secret (it must never be
//! bundled); generators only on generated secrets; `remote_fetch` secrets say where from;
//! health and readiness checks have what their type needs (a declared port, a command, a
//! pattern); migrations have a command and unique versions; a loopback IPC host; services
//! have a binary or a build; templates name known services and ports (warning).

use crate::template::{self, Piece};
use crate::{HealthType, Manifest, ReadinessType, SecretClass, Service};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// How serious a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One finding of [`Manifest::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    /// JSON path, e.g. `services[2].dependencies[0]`.
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{level}: {}: {}", self.path, self.message)
    }
}

struct Findings(Vec<Problem>);

impl Findings {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Error, path.into(), message.into());
    }
    fn warning(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Warning, path.into(), message.into());
    }
    fn push(&mut self, severity: Severity, path: String, message: String) {
        self.0.push(Problem {
            severity,
            path,
            message,
        });
    }
}

pub(crate) fn validate(manifest: &Manifest) -> Vec<Problem> {
    let mut findings = Findings(Vec::new());
    let out = &mut findings;

    if !matches!(
        manifest.ipc.host.as_str(),
        "127.0.0.1" | "localhost" | "::1" | "[::1]"
    ) {
        out.error(
            "ipc.host",
            format!("`{}` is not a loopback address", manifest.ipc.host),
        );
    }
    if let Some(ports) = &manifest.ports {
        if let Some(range) = &ports.default_range {
            check_range(out, "ports.default_range", range.min, range.max);
        }
        for (index, port) in ports.reserved.iter().flatten().enumerate() {
            if *port == 0 {
                out.error(
                    format!("ports.reserved[{index}]"),
                    "port 0 cannot be reserved",
                );
            }
        }
    }

    // Secrets.
    let mut secret_ids = BTreeSet::new();
    for (index, secret) in manifest.secrets.iter().flatten().enumerate() {
        let path = format!("secrets[{index}]");
        if secret.id.as_str().is_empty() {
            out.error(format!("{path}.id"), "empty id");
        }
        if !secret_ids.insert(secret.id.as_str()) {
            out.error(
                format!("{path}.id"),
                format!("duplicate secret id `{}`", secret.id),
            );
        }
        match secret.class {
            SecretClass::Infrastructure => out.error(
                format!("{path}.class"),
                "an `infrastructure` secret is never bundled: swap out the resource that needs it",
            ),
            SecretClass::RemoteFetch if secret.fetch.is_none() => out.warning(
                format!("{path}.fetch"),
                "a `remote_fetch` secret without `fetch.url` cannot be fetched",
            ),
            _ => {}
        }
        if secret.generator.is_some() && secret.class != SecretClass::PerInstallGenerated {
            out.warning(
                format!("{path}.generator"),
                "a generator is only used by `per_install_generated` secrets",
            );
        }
        if let Some(length) = secret
            .generator
            .as_ref()
            .and_then(|generator| generator.length)
            && !(1..=4096).contains(&length)
        {
            out.error(
                format!("{path}.generator.length"),
                "must be between 1 and 4096",
            );
        }
        if secret.target.name.is_empty() {
            out.error(format!("{path}.target.name"), "empty name");
        }
    }

    // Services: ids first, so references can be checked whatever their order.
    let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, service) in manifest.services.iter().enumerate() {
        if service.id.as_str().is_empty() {
            out.error(format!("services[{index}].id"), "empty id");
        } else if ids.insert(service.id.as_str(), index).is_some() {
            out.error(
                format!("services[{index}].id"),
                format!("duplicate service id `{}`", service.id),
            );
        }
    }
    if manifest.services.is_empty() {
        out.error("services", "a bundle needs at least one service");
    }
    for (index, service) in manifest.services.iter().enumerate() {
        check_service(out, manifest, &ids, &secret_ids, index, service);
    }
    check_cycles(out, manifest, &ids);
    findings.0
}

fn check_range(out: &mut Findings, path: &str, min: u16, max: u16) {
    if min == 0 {
        out.error(format!("{path}.min"), "ports start at 1");
    }
    if min > max {
        out.error(
            path.to_owned(),
            format!("min {min} is greater than max {max}"),
        );
    }
}

fn check_service(
    out: &mut Findings,
    manifest: &Manifest,
    ids: &BTreeMap<&str, usize>,
    secret_ids: &BTreeSet<&str>,
    index: usize,
    service: &Service,
) {
    let path = format!("services[{index}]");
    if service.binaries.is_empty() && service.build.is_none() {
        out.error(format!("{path}.binaries"), "no binary and no build");
    }
    for (platform, binary) in &service.binaries {
        if binary.path.is_empty() {
            out.error(format!("{path}.binaries.{platform}.path"), "empty path");
        }
    }
    let mut port_names = BTreeSet::new();
    for (port_index, request) in service.requested_ports().iter().enumerate() {
        let port_path = format!("{path}.ports.requested[{port_index}]");
        if !port_names.insert(request.name.as_str()) {
            out.error(
                format!("{port_path}.name"),
                format!("duplicate port `{}`", request.name),
            );
        }
        check_range(
            out,
            &format!("{port_path}.range"),
            request.range.min,
            request.range.max,
        );
    }
    for (dep_index, dependency) in service.dependencies().iter().enumerate() {
        let dep_path = format!("{path}.dependencies[{dep_index}]");
        if dependency == &service.id {
            out.error(dep_path, "a service cannot depend on itself");
        } else if !ids.contains_key(dependency.as_str()) {
            out.error(dep_path, format!("unknown service `{dependency}`"));
        }
    }
    for (secret_index, secret) in service.secret_ids().iter().enumerate() {
        if !secret_ids.contains(secret.as_str()) {
            out.error(
                format!("{path}.secrets[{secret_index}]"),
                format!("unknown secret `{secret}` (not in the top-level `secrets`)"),
            );
        }
    }

    let health = &service.health;
    let needs_port = matches!(health.kind, HealthType::Http | HealthType::Tcp);
    check_port_name(
        out,
        &format!("{path}.health"),
        health.port_name.as_ref(),
        &port_names,
        needs_port,
    );
    match health.kind {
        HealthType::Command
            if health
                .command
                .as_ref()
                .is_none_or(|command| command.is_empty()) =>
        {
            out.error(
                format!("{path}.health.command"),
                "a `command` check needs a command",
            )
        }
        HealthType::LogMatch if health.pattern.is_none() => out.error(
            format!("{path}.health.pattern"),
            "a `log_match` check needs a pattern",
        ),
        _ => {}
    }
    let readiness = &service.readiness;
    check_port_name(
        out,
        &format!("{path}.readiness"),
        readiness.port_name.as_ref(),
        &port_names,
        false,
    );
    match readiness.kind {
        ReadinessType::PortOpen
            if readiness.port_name.is_none()
                && health.port_name.is_none()
                && port_names.is_empty() =>
        {
            out.error(
                format!("{path}.readiness.port_name"),
                "`port_open` needs a port",
            )
        }
        ReadinessType::LogMatch if readiness.pattern.is_none() => out.error(
            format!("{path}.readiness.pattern"),
            "`log_match` readiness needs a pattern",
        ),
        _ => {}
    }

    let mut versions = BTreeSet::new();
    for (migration_index, migration) in service.migrations().iter().enumerate() {
        let migration_path = format!("{path}.migrations[{migration_index}]");
        if migration.command.is_empty() {
            out.error(format!("{migration_path}.command"), "empty command");
        }
        if !versions.insert(migration.version.as_str()) {
            out.error(
                format!("{migration_path}.version"),
                format!("duplicate migration version `{}`", migration.version),
            );
        }
    }

    // Templates (warnings: the corpus has a dangling one).
    let mut texts: Vec<(String, &str)> = Vec::new();
    for (name, value) in service.env.iter().flatten() {
        texts.push((format!("{path}.env.{name}"), value));
        // `${secret.ID}`: only in service env, only for secrets the service lists.
        for piece in template::parse(value) {
            if let Piece::Secret(id) = piece {
                if manifest.secret(id).is_none() {
                    out.error(
                        format!("{path}.env.{name}"),
                        format!("`${{secret.{id}}}`: no secret `{id}` in this manifest"),
                    );
                } else if !service.secrets.iter().flatten().any(|s| s.as_str() == id) {
                    out.error(
                        format!("{path}.env.{name}"),
                        format!(
                            "`${{secret.{id}}}`: the service does not list `{id}` in its secrets"
                        ),
                    );
                }
            }
        }
    }
    for (platform, binary) in &service.binaries {
        for (arg_index, arg) in binary.args.iter().flatten().enumerate() {
            texts.push((format!("{path}.binaries.{platform}.args[{arg_index}]"), arg));
        }
        for (name, value) in binary.env.iter().flatten() {
            texts.push((format!("{path}.binaries.{platform}.env.{name}"), value));
        }
    }
    for (text_path, text) in texts {
        for piece in template::parse(text) {
            match piece {
                Piece::Port { service: target, port } => match manifest.service(target) {
                    None => out.warning(
                        text_path.clone(),
                        format!("`${{{target}.{port}}}`: no service `{target}`; left as written"),
                    ),
                    Some(other) if !other.requested_ports().iter().any(|p| p.name.as_str() == port) => {
                        out.warning(
                            text_path.clone(),
                            format!("`${{{target}.{port}}}`: service `{target}` requests no port `{port}`; left as written"),
                        )
                    }
                    Some(_) => {}
                },
                Piece::Unknown(raw) => out.warning(
                    text_path.clone(),
                    format!("unknown template `{raw}`; left as written"),
                ),
                _ => {}
            }
        }
    }
}

fn check_port_name(
    out: &mut Findings,
    path: &str,
    port_name: Option<&crate::PortName>,
    declared: &BTreeSet<&str>,
    required: bool,
) {
    match port_name {
        Some(name) if !declared.contains(name.as_str()) => out.error(
            format!("{path}.port_name"),
            format!("the service requests no port `{name}`"),
        ),
        None if required && declared.is_empty() => {
            out.error(format!("{path}.port_name"), "this check needs a port")
        }
        _ => {}
    }
}

/// Reports each dependency cycle once, with its path (`a -> b -> a`).
fn check_cycles(out: &mut Findings, manifest: &Manifest, ids: &BTreeMap<&str, usize>) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        node: usize,
        manifest: &Manifest,
        ids: &BTreeMap<&str, usize>,
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
        out: &mut Findings,
    ) {
        marks[node] = Mark::Active;
        stack.push(node);
        for dependency in manifest.services[node].dependencies() {
            let Some(&next) = ids.get(dependency.as_str()) else {
                continue;
            };
            if next == node {
                continue; // reported as a self-dependency
            }
            match marks[next] {
                Mark::New => visit(next, manifest, ids, marks, stack, out),
                Mark::Active => {
                    let start = stack.iter().position(|&n| n == next).unwrap_or(0);
                    let mut cycle: Vec<&str> = stack[start..]
                        .iter()
                        .map(|&n| manifest.services[n].id.as_str())
                        .collect();
                    cycle.push(manifest.services[next].id.as_str());
                    out.error(
                        format!("services[{node}].dependencies"),
                        format!("dependency cycle: {}", cycle.join(" -> ")),
                    );
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[node] = Mark::Done;
    }
    let mut marks = vec![Mark::New; manifest.services.len()];
    let mut stack = Vec::new();
    for node in 0..manifest.services.len() {
        if marks[node] == Mark::New {
            visit(node, manifest, ids, &mut marks, &mut stack, out);
        }
    }
}
