//! Semantic checks of a manifest that its types cannot express.
//!
//! Every problem carries the JSON path of the value at fault. Errors make a manifest unusable
//! (the runtime refuses it, the pipeline must not write it); warnings are reported and
//! tolerated, because the real manifests of the conformance corpus have them (e.g. a template
//! `${playwright.http}` naming a service whose id is `playwright-driver`).
//!
//! Checked: unique service, secret and port ids, each an id of [`crate::ident`]; every path
//! (`ipc.auth_token_path`, `telemetry.file`, binaries' `path` and `cwd`, `build.source_dir`,
//! `data_dirs`, `log_dir`, `assets[].path`, the programs of migrations and command checks) a
//! confined relative path of [`crate::path`], `app.name` and a secret's `file` target one file
//! name; dependencies that exist, are not the service itself and form no cycle; port ranges
//! with `1 <= min <= max`; reserved ports non-zero; secrets referenced by services exist; no
//! `infrastructure` secret (it must never be bundled); generators that resolve
//! ([`crate::generator`]: named or strong literal charsets, lengths) and only on generated
//! secrets (warning); formats that compile within limits ([`mod@crate::format`]); fetch URLs of
//! [`crate::url`], timeouts of at most a minute, header names and values that cannot split a request,
//! health check paths that cannot either;
//! environment variable names, and no NUL in arguments or environment values; health and readiness checks have what their type needs (a
//! declared port, a command, a pattern that compiles within the limits of
//! [`mod@crate::format`]); migrations have a command and unique versions; a
//! loopback IPC host; services have a binary or a build; `${secret.ID}` names a secret the
//! service lists; `${service.port}` templates name known services and ports (warning).
//!
//! **Invariant:** the report is bounded by the input, whatever the input: at most
//! [`MAX_PROBLEMS`] problems (the rest counted in one more), messages quote at most a prefix
//! of what they name, and no check recurses (the dependency walk keeps its own stack).

use crate::ident::{check_env_name, check_id};
use crate::path::{self, PathStyle, RelativePath};
use crate::template::{self, Piece};
use crate::url::FetchUrl;
use crate::{HealthType, Manifest, ReadinessType, Secret, SecretClass, Service, format_regex};
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

/// Most problems reported for one manifest; the rest are counted in a last problem (an error
/// if any of them is), so a hostile manifest cannot make its report outgrow it.
pub const MAX_PROBLEMS: usize = 1000;

struct Findings {
    problems: Vec<Problem>,
    dropped: usize,
    dropped_error: bool,
}

impl Findings {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Error, path.into(), message.into());
    }
    fn warning(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Warning, path.into(), message.into());
    }
    fn push(&mut self, severity: Severity, path: String, message: String) {
        if self.problems.len() >= MAX_PROBLEMS {
            self.dropped += 1;
            self.dropped_error |= severity == Severity::Error;
            return;
        }
        self.problems.push(Problem {
            severity,
            path,
            message,
        });
    }

    fn finish(mut self) -> Vec<Problem> {
        if self.dropped > 0 {
            self.problems.push(Problem {
                severity: if self.dropped_error {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                path: String::new(),
                message: format!("and {} more problems", self.dropped),
            });
        }
        self.problems
    }
}

pub(crate) fn validate(manifest: &Manifest) -> Vec<Problem> {
    let mut findings = Findings {
        problems: Vec::new(),
        dropped: 0,
        dropped_error: false,
    };
    let out = &mut findings;

    if let Err(err) = RelativePath::name(&manifest.app.name) {
        out.error(
            "app.name",
            format!("names the app data directory, so it must be one file name: {err}"),
        );
    }
    if !matches!(
        manifest.ipc.host.as_str(),
        "127.0.0.1" | "localhost" | "::1" | "[::1]"
    ) {
        out.error(
            "ipc.host",
            format!("`{}` is not a loopback address", quote(&manifest.ipc.host)),
        );
    }
    check_path(
        out,
        "ipc.auth_token_path",
        &manifest.ipc.auth_token_path,
        PathStyle::Portable,
    );
    check_path(
        out,
        "telemetry.file",
        &manifest.telemetry.file,
        PathStyle::Portable,
    );
    check_app_data_layout(out, manifest);
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
        if let Err(err) = check_id(secret.id.as_str()) {
            out.error(format!("{path}.id"), err.to_string());
        }
        if !secret_ids.insert(secret.id.as_str()) {
            out.error(
                format!("{path}.id"),
                format!("duplicate secret id `{}`", quote(secret.id.as_str())),
            );
        }
        check_secret(out, &path, secret);
    }

    // Services: ids first, so references can be checked whatever their order.
    let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, service) in manifest.services.iter().enumerate() {
        if let Err(err) = check_id(service.id.as_str()) {
            out.error(format!("services[{index}].id"), err.to_string());
        }
        if ids.insert(service.id.as_str(), index).is_some() {
            out.error(
                format!("services[{index}].id"),
                format!("duplicate service id `{}`", quote(service.id.as_str())),
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
    findings.finish()
}

/// At most this many characters of an input string are quoted in a message, so that the
/// problems of a manifest never outweigh the manifest.
const QUOTE_CHARS: usize = 80;

/// `text`, shortened to [`QUOTE_CHARS`] characters, control characters escaped.
fn quote(text: &str) -> String {
    let mut shown: String = text.chars().take(QUOTE_CHARS).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    shown.escape_debug().to_string()
}

/// 64 lowercase hex digits: what an asset's `sha256` must be for the runtime to verify it.
pub fn is_sha256(value: &str) -> bool {
    value.len() == 64
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn check_path(out: &mut Findings, path: &str, value: &str, style: PathStyle) {
    if let Err(err) = RelativePath::with_style(value, style) {
        out.error(path.to_owned(), format!("`{}`: {err}", quote(value)));
    }
}

/// The app data directory's layout: no path bundle.json names there is inside `secrets/` or
/// one of the runtime's own files, the control token is not named like the port file beside
/// it, and no two of the files the runtime writes for the manifest (token, port file,
/// telemetry, each service's log) are the same file.
fn check_app_data_layout(out: &mut Findings, manifest: &Manifest) {
    let mut named: BTreeMap<Vec<String>, String> = BTreeMap::new();
    let mut file = |out: &mut Findings, field: String, components: Vec<String>| {
        let key = path::file_key(components.iter().map(String::as_str));
        if let Some(other) = named.get(&key) {
            out.error(
                field,
                format!("`{}` is also the file of {other}", components.join("/")),
            );
        } else {
            named.insert(key, field);
        }
    };
    let reserved = |out: &mut Findings, field: String, text: &str| -> Option<Vec<String>> {
        let path = RelativePath::new(text).ok()?;
        if let Some(why) = path::reserved_in_app_data(path.components()) {
            out.error(field, format!("`{}` {why}", quote(text)));
        }
        Some(path.components().map(str::to_owned).collect())
    };
    if let Some(token) = reserved(
        out,
        "ipc.auth_token_path".into(),
        &manifest.ipc.auth_token_path,
    ) {
        if token
            .last()
            .is_some_and(|last| path::file_key([last.as_str()]) == [path::IPC_PORT_FILE])
        {
            out.error(
                "ipc.auth_token_path",
                format!(
                    "`{}` is the file the runtime writes the control port to",
                    token.join("/")
                ),
            );
        }
        let mut port_file = token.clone();
        port_file.pop();
        port_file.push(path::IPC_PORT_FILE.to_owned());
        file(out, "ipc.auth_token_path".into(), token);
        file(
            out,
            "ipc.auth_token_path (its `ipc-port`)".into(),
            port_file,
        );
    }
    if let Some(telemetry) = reserved(out, "telemetry.file".into(), &manifest.telemetry.file) {
        file(out, "telemetry.file".into(), telemetry);
    }
    for (index, service) in manifest.services.iter().enumerate() {
        let field = format!("services[{index}].log_dir");
        let log_dir = match service.log_dir.as_deref() {
            None => Some(vec!["logs".to_owned()]),
            Some("") => Some(Vec::new()),
            Some(text) => reserved(out, field, text),
        };
        if let Some(mut log) = log_dir
            && RelativePath::name(service.id.as_str()).is_ok()
        {
            log.push(format!("{}.log", service.id));
            file(out, format!("services[{index}] (its log file)"), log);
        }
        for (n, dir) in service.data_dirs.iter().flatten().enumerate() {
            reserved(out, format!("services[{index}].data_dirs[{n}]"), dir);
        }
    }
}

/// Arguments and environment values reach a process through `exec`, which cannot carry a
/// NUL: a manifest holding one could never start the service (or migration, or check).
fn check_exec_texts<'a>(out: &mut Findings, texts: impl IntoIterator<Item = (String, &'a String)>) {
    for (path, text) in texts {
        if let Err(err) = crate::ident::check_exec_text(text) {
            out.error(path, err);
        }
    }
}

fn check_env_names<'a>(
    out: &mut Findings,
    path: &str,
    names: impl IntoIterator<Item = &'a String>,
) {
    for name in names {
        if let Err(err) = check_env_name(name) {
            out.error(format!("{path}.{}", quote(name)), err);
        }
    }
}

fn check_secret(out: &mut Findings, path: &str, secret: &Secret) {
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
    match (&secret.generator, secret.class) {
        (Some(generator), SecretClass::PerInstallGenerated) => {
            if let Err(err) = generator.resolve() {
                out.error(format!("{path}.generator.{}", err.field), err.message);
            }
        }
        (Some(_), _) => out.warning(
            format!("{path}.generator"),
            "a generator is only used by `per_install_generated` secrets",
        ),
        (None, _) => {}
    }
    if let Some(format) = &secret.format
        && let Err(err) = format_regex(format)
    {
        out.error(format!("{path}.format"), err);
    }
    if let Some(fetch) = &secret.fetch {
        if let Err(err) = FetchUrl::parse(&fetch.url) {
            out.error(format!("{path}.fetch.url"), err.to_string());
        }
        if let Some(timeout_ms) = fetch.timeout_ms
            && let Err(err) = crate::url::check_fetch_timeout(timeout_ms)
        {
            out.error(format!("{path}.fetch.timeout_ms"), err);
        }
        for (name, value) in fetch.headers.iter().flatten() {
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                out.error(
                    format!("{path}.fetch.headers"),
                    format!("`{}` is not an HTTP header name", quote(name)),
                );
            } else if value.chars().any(|c| c.is_control() && c != '\t') {
                out.error(
                    format!("{path}.fetch.headers.{name}"),
                    "a header value may not hold control characters (CR, LF, NUL)",
                );
            }
        }
    }
    if let Err(err) = secret.target.check() {
        out.error(format!("{path}.target.name"), err);
    }
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
        let binary_path = format!("{path}.binaries.{}", quote(platform.as_str()));
        let style = path::style_for_platform(platform.as_str());
        check_path(out, &format!("{binary_path}.path"), &binary.path, style);
        if let Some(cwd) = &binary.cwd {
            check_path(out, &format!("{binary_path}.cwd"), cwd, style);
        }
        check_env_names(
            out,
            &format!("{binary_path}.env"),
            binary.env.iter().flatten().map(|(k, _)| k),
        );
    }
    if let Some(build) = &service.build {
        check_path(
            out,
            &format!("{path}.build.source_dir"),
            &build.source_dir,
            PathStyle::Portable,
        );
    }
    check_env_names(
        out,
        &format!("{path}.env"),
        service.env.iter().flatten().map(|(k, _)| k),
    );
    for (dir_index, dir) in service.data_dirs.iter().flatten().enumerate() {
        check_path(
            out,
            &format!("{path}.data_dirs[{dir_index}]"),
            dir,
            PathStyle::Portable,
        );
    }
    if let Some(log_dir) = &service.log_dir {
        check_path(
            out,
            &format!("{path}.log_dir"),
            log_dir,
            PathStyle::Portable,
        );
    }
    for (asset_index, asset) in service.assets().iter().enumerate() {
        check_path(
            out,
            &format!("{path}.assets[{asset_index}].path"),
            &asset.path,
            PathStyle::Portable,
        );
        if let Some(digest) = &asset.sha256
            && !is_sha256(digest)
        {
            // The corpus carries placeholders; the runtime refuses to start on one.
            out.warning(
                format!("{path}.assets[{asset_index}].sha256"),
                format!(
                    "`{}` is not a SHA-256 (64 lowercase hex digits): the runtime cannot verify this asset",
                    quote(digest)
                ),
            );
        }
    }
    let mut port_names = BTreeSet::new();
    for (port_index, request) in service.requested_ports().iter().enumerate() {
        let port_path = format!("{path}.ports.requested[{port_index}]");
        if let Err(err) = check_id(request.name.as_str()) {
            out.error(format!("{port_path}.name"), err.to_string());
        }
        if !port_names.insert(request.name.as_str()) {
            out.error(
                format!("{port_path}.name"),
                format!("duplicate port `{}`", quote(request.name.as_str())),
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
            out.error(
                dep_path,
                format!("unknown service `{}`", quote(dependency.as_str())),
            );
        }
    }
    for (secret_index, secret) in service.secret_ids().iter().enumerate() {
        if !secret_ids.contains(secret.as_str()) {
            out.error(
                format!("{path}.secrets[{secret_index}]"),
                format!(
                    "unknown secret `{}` (not in the top-level `secrets`)",
                    quote(secret.as_str())
                ),
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
    if let Some(http_path) = &health.path
        && let Err(err) = crate::url::check_http_path(http_path)
    {
        out.error(
            format!("{path}.health.path"),
            format!("`{}`: {err}", quote(http_path)),
        );
    }
    if let Some(program) = health.command.as_ref().and_then(|command| command.first())
        && let Err(err) = path::check_program(program)
    {
        out.error(
            format!("{path}.health.command[0]"),
            format!("`{}`: {err}", quote(program)),
        );
    }
    let patterns = [
        (
            "health",
            health.kind == HealthType::LogMatch,
            &health.pattern,
        ),
        (
            "readiness",
            service.readiness.kind == ReadinessType::LogMatch,
            &service.readiness.pattern,
        ),
    ];
    for (check, used, pattern) in patterns {
        if used
            && let Some(pattern) = pattern
            && let Err(err) = crate::log_pattern_regex(pattern)
        {
            out.error(format!("{path}.{check}.pattern"), err);
        }
    }
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
        match migration.command.first() {
            None => out.error(format!("{migration_path}.command"), "empty command"),
            Some(program) => {
                if let Err(err) = path::check_program(program) {
                    out.error(
                        format!("{migration_path}.command[0]"),
                        format!("`{}`: {err}", quote(program)),
                    );
                }
            }
        }
        check_env_names(
            out,
            &format!("{migration_path}.env"),
            migration.env.iter().flatten().map(|(k, _)| k),
        );
        if !versions.insert(migration.version.as_str()) {
            out.error(
                format!("{migration_path}.version"),
                format!(
                    "duplicate migration version `{}`",
                    quote(&migration.version)
                ),
            );
        }
    }

    let mut exec_texts: Vec<(String, &String)> = Vec::new();
    for (platform, binary) in &service.binaries {
        let binary_path = format!("{path}.binaries.{}", quote(platform.as_str()));
        for (n, arg) in binary.args.iter().flatten().enumerate() {
            exec_texts.push((format!("{binary_path}.args[{n}]"), arg));
        }
        for (name, value) in binary.env.iter().flatten() {
            exec_texts.push((format!("{binary_path}.env.{}", quote(name)), value));
        }
    }
    for (name, value) in service.env.iter().flatten() {
        exec_texts.push((format!("{path}.env.{}", quote(name)), value));
    }
    for (n, part) in service.health.command.iter().flatten().enumerate() {
        exec_texts.push((format!("{path}.health.command[{n}]"), part));
    }
    for (m, migration) in service.migrations().iter().enumerate() {
        for (n, part) in migration.command.iter().enumerate() {
            exec_texts.push((format!("{path}.migrations[{m}].command[{n}]"), part));
        }
        for (name, value) in migration.env.iter().flatten() {
            exec_texts.push((format!("{path}.migrations[{m}].env.{}", quote(name)), value));
        }
    }
    check_exec_texts(out, exec_texts);

    // Templates (warnings: the corpus has a dangling one).
    let mut texts: Vec<(String, &str)> = Vec::new();
    for (name, value) in service.env.iter().flatten() {
        let env_path = format!("{path}.env.{}", quote(name));
        // `${secret.ID}`: only in service env, only for secrets the service lists.
        for piece in template::parse(value) {
            if let Piece::Secret(id) = piece {
                if !secret_ids.contains(id) {
                    out.error(
                        env_path.clone(),
                        format!(
                            "`${{secret.{id}}}`: no secret `{id}` in this manifest",
                            id = quote(id)
                        ),
                    );
                } else if !service.secret_ids().iter().any(|s| s.as_str() == id) {
                    out.error(
                        env_path.clone(),
                        format!(
                            "`${{secret.{id}}}`: the service does not list `{id}` in its secrets",
                            id = quote(id)
                        ),
                    );
                }
            }
        }
        texts.push((env_path, value));
    }
    for (platform, binary) in &service.binaries {
        let binary_path = format!("{path}.binaries.{}", quote(platform.as_str()));
        for (arg_index, arg) in binary.args.iter().flatten().enumerate() {
            texts.push((format!("{binary_path}.args[{arg_index}]"), arg));
        }
        for (name, value) in binary.env.iter().flatten() {
            texts.push((format!("{binary_path}.env.{}", quote(name)), value));
        }
    }
    for (text_path, text) in texts {
        for piece in template::parse(text) {
            match piece {
                Piece::Port {
                    service: target,
                    port,
                } => match ids.get(target).map(|&i| &manifest.services[i]) {
                    None => out.warning(
                        text_path.clone(),
                        format!(
                            "`${{{target}.{port}}}`: no service `{target}`; left as written",
                            target = quote(target),
                            port = quote(port)
                        ),
                    ),
                    Some(other)
                        if !other
                            .requested_ports()
                            .iter()
                            .any(|p| p.name.as_str() == port) =>
                    {
                        out.warning(
                            text_path.clone(),
                            format!(
                                "`${{{target}.{port}}}`: service `{target}` requests no port `{port}`; left as written",
                                target = quote(target),
                                port = quote(port)
                            ),
                        )
                    }
                    Some(_) => {}
                },
                Piece::Unknown(raw) => out.warning(
                    text_path.clone(),
                    format!("unknown template `{}`; left as written", quote(raw)),
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
            format!("the service requests no port `{}`", quote(name.as_str())),
        ),
        None if required && declared.is_empty() => {
            out.error(format!("{path}.port_name"), "this check needs a port")
        }
        _ => {}
    }
}

/// Most dependency cycles reported (one is enough to fix; more only repeat it).
const MAX_CYCLES: usize = 10;
/// Most services named in one cycle's message.
const CYCLE_SHOWN: usize = 8;

/// Reports dependency cycles (each back edge of a depth-first walk, at most [`MAX_CYCLES`]),
/// with their path (`a -> b -> a`). The walk keeps its own stack, so no manifest, however
/// long its dependency chains, can exhaust the thread's stack.
fn check_cycles(out: &mut Findings, manifest: &Manifest, ids: &BTreeMap<&str, usize>) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let services = &manifest.services;
    let mut marks = vec![Mark::New; services.len()];
    let mut reported = 0;
    for root in 0..services.len() {
        if marks[root] != Mark::New {
            continue;
        }
        // (service, index of the next dependency to look at)
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        marks[root] = Mark::Active;
        while let Some(&mut (node, ref mut next_dep)) = stack.last_mut() {
            let Some(dependency) = services[node].dependencies().get(*next_dep) else {
                marks[node] = Mark::Done;
                stack.pop();
                continue;
            };
            *next_dep += 1;
            let Some(&next) = ids.get(dependency.as_str()) else {
                continue;
            };
            if next == node {
                continue; // reported as a self-dependency
            }
            match marks[next] {
                Mark::New => {
                    marks[next] = Mark::Active;
                    stack.push((next, 0));
                }
                Mark::Active if reported < MAX_CYCLES => {
                    reported += 1;
                    let start = stack.iter().position(|&(n, _)| n == next).unwrap_or(0);
                    let members = &stack[start..];
                    let mut names: Vec<String> = members
                        .iter()
                        .take(CYCLE_SHOWN)
                        .map(|&(n, _)| quote(services[n].id.as_str()))
                        .collect();
                    if members.len() > CYCLE_SHOWN {
                        names.push(format!("… ({} services in all)", members.len()));
                    }
                    names.push(quote(services[next].id.as_str()));
                    out.error(
                        format!("services[{node}].dependencies"),
                        format!("dependency cycle: {}", names.join(" -> ")),
                    );
                }
                Mark::Active | Mark::Done => {}
            }
        }
    }
}
