//! `doctor`: the toolchains and tools found here, what each enables, and which platforms of each
//! profile can be fully staged on this machine (and, for the others, why not and how to fix it).
//! `run`: stage the host's bundle and start the runtime on it (the developer's loop).

use serde_json::json;

use super::Workspace;
use crate::diagnostic::Diagnostic;
use crate::shell::{GREEN, Shell};

fn line(shell: &Shell, found: bool, what: &str, detail: &str) {
    let style = if found {
        GREEN
    } else {
        anstyle::AnsiColor::Yellow.on_default().bold()
    };
    shell.status(
        if found { "Found" } else { "Missing" },
        style,
        &format!("{what}: {detail}"),
    );
}

pub(super) fn doctor(workspace: &Workspace, shell: &Shell) -> Result<u8, Diagnostic> {
    let tools = &workspace.tools;
    let rust = tools.rust();
    let go = tools.go();
    let node = tools.node();
    let optional = tools.optional();
    let plan = crate::plan::plan(&workspace.config, &workspace.root, tools)?;
    if shell.is_json() {
        shell.json(&json!({
            "event": "doctor",
            "rust": match &rust {
                Ok(rust) => json!({"found": true, "version": rust.verbose_version.lines().next(), "host": rust.host, "targets": rust.targets, "enables": "Rust services and the runtime, for installed targets"}),
                Err(missing) => json!({"found": false, "reason": missing.reason, "fix": missing.fix}),
            },
            "go": match &go {
                Ok(go) => json!({"found": true, "version": go.version, "enables": "Go services, for every platform (CGO_ENABLED=0)"}),
                Err(missing) => json!({"found": false, "reason": missing.reason, "fix": missing.fix}),
            },
            "node": match &node {
                Ok(node) => json!({"found": true, "node": node.node_version, "npm": node.npm_version, "enables": "npm UI builds"}),
                Err(missing) => json!({"found": false, "reason": missing.reason, "fix": missing.fix}),
            },
            "tools": optional.iter().map(|tool| json!({
                "name": tool.name, "found": tool.path.is_some(), "package": tool.package, "enables": tool.enables,
            })).collect::<Vec<_>>(),
            "profiles": plan.bundles.iter().map(|bundles| json!({
                "profile": bundles.profile,
                "platforms": bundles.platforms.iter().map(|p| json!({
                    "platform": p.platform,
                    "stageable": p.stage.is_some(),
                    "missing": p.missing.iter().map(|m| json!({"what": m.what, "reason": m.missing.reason, "fix": m.missing.fix})).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }));
        return Ok(0);
    }
    match &rust {
        Ok(rust) => line(
            shell,
            true,
            "rust",
            &format!(
                "{} (host {}; targets installed: {}) — Rust services and the runtime",
                rust.verbose_version.lines().next().unwrap_or_default(),
                rust.host,
                rust.targets.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        ),
        Err(missing) => line(shell, false, "rust", &missing.to_string()),
    }
    match &go {
        Ok(go) => line(
            shell,
            true,
            "go",
            &format!("{} — Go services for every platform", go.version),
        ),
        Err(missing) => line(shell, false, "go", &missing.to_string()),
    }
    match &node {
        Ok(node) => line(
            shell,
            true,
            "node",
            &format!(
                "node {}, npm {} — npm UI builds",
                node.node_version, node.npm_version
            ),
        ),
        Err(missing) => line(shell, false, "node", &missing.to_string()),
    }
    for tool in &optional {
        match &tool.path {
            Some(path) => line(
                shell,
                true,
                tool.name,
                &format!("{} — {}", path.display(), tool.enables),
            ),
            None => line(
                shell,
                false,
                tool.name,
                &format!("{} (Debian package {})", tool.enables, tool.package),
            ),
        }
    }
    for bundles in &plan.bundles {
        for platform in &bundles.platforms {
            if platform.stage.is_some() {
                shell.status(
                    "Stageable",
                    GREEN,
                    &format!("{} {}", bundles.profile, platform.platform),
                );
            }
            for missing in &platform.missing {
                shell.warn(&format!(
                    "{} {}: {} cannot be built here: {} (fix: {})",
                    bundles.profile,
                    platform.platform,
                    missing.what,
                    missing.missing.reason,
                    missing.missing.fix
                ));
            }
        }
    }
    Ok(0)
}

/// The platform id of this machine, as `platforms/*.toml` spell GOOS/GOARCH.
pub(super) fn host_platform(platforms: &[crate::platform::Platform]) -> Option<String> {
    let goos = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    let goarch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    platforms
        .iter()
        .find(|p| p.goos == goos && p.goarch == goarch)
        .map(|p| p.id.clone())
}

/// `run [PROFILE]`: builds the host's stage, then replaces this process with the runtime on it
/// (so Ctrl-C and SIGTERM reach the runtime directly, which stops its services in order). App
/// data lives in `<state>/run/<profile>/`, kept between runs like an installed app's.
pub(super) fn run(
    workspace: &Workspace,
    profile: Option<&str>,
    args: &super::RunArgs,
    shell: &Shell,
) -> Result<u8, Diagnostic> {
    let plan = super::pipeline::validate(workspace, shell)?;
    let name = profile
        .map(str::to_string)
        .or(workspace.config.workspace.default_profile.clone())
        .ok_or_else(|| {
            Diagnostic::error("no profile to run")
                .help("name a profile, or set [workspace] default-profile in bundle.toml")
        })?;
    let profile = crate::names::profile(&workspace.config, &workspace.root, &name)?;
    let bundles = plan
        .bundles
        .iter()
        .find(|b| b.profile == profile.name)
        .expect("every profile is planned");
    let context = &plan.context;
    let host = host_platform(&context.platforms).ok_or_else(|| {
        Diagnostic::error(format!(
            "no platform in platforms/ describes this machine ({} {})",
            std::env::consts::OS,
            std::env::consts::ARCH
        ))
        .help("add a platforms/<id>.toml with this machine's goos and goarch")
    })?;
    let platform = bundles
        .platforms
        .iter()
        .find(|p| p.platform == host)
        .ok_or_else(|| {
            Diagnostic::error(format!(
                "profile `{}` does not list this machine's platform `{host}`",
                profile.name
            ))
            .help(format!(
                "add \"{host}\" to the profile's platforms in bundle.toml"
            ))
        })?;
    let app_data = workspace
        .engine
        .config()
        .state_dir
        .join("run")
        .join(&profile.name);
    // Made through the confined root, never through a link: the runtime writes the app's
    // data, secrets and logs there, so a link on the way (say a planted `.xbundle/run`)
    // would carry them out of the repository.
    let relative = app_data
        .strip_prefix(workspace.root.as_std_path())
        .ok()
        .and_then(|relative| relative.to_str())
        .ok_or_else(|| {
            Diagnostic::internal(format!(
                "the state directory {} is not below the repository",
                app_data.display()
            ))
        })?;
    if !args.dry_run {
        engine::confine::Dir::open_root(workspace.root.as_std_path())
            .and_then(|root| root.create_dir_all(relative))
            .map_err(|err| {
                Diagnostic::error(format!("cannot make the app data directory: {err}")).help(
                    "xbundle never follows a link where it keeps its state: remove the link, and xbundle creates a directory of its own",
                )
            })?;
    }
    if platform.stage.is_none() {
        let reasons: Vec<String> = platform
            .missing
            .iter()
            .map(|m| format!("{}: {} (fix: {})", m.what, m.missing.reason, m.missing.fix))
            .collect();
        return Err(Diagnostic::error(format!(
            "profile `{}` cannot be staged for {host} here: {}",
            profile.name,
            reasons.join("; ")
        ))
        .help("`cargo xtask doctor` lists what this machine can build"));
    }
    let targets = bundles.targets(std::slice::from_ref(&host));
    workspace.tools.save();
    let code = super::build::run_tasks(workspace, &plan.graph, &targets, args, shell)?;
    if code != 0 || args.dry_run {
        return Ok(code);
    }
    let stage = workspace.root.join(&platform.dir);
    let host_platform = context
        .platforms
        .iter()
        .find(|p| p.id == host)
        .expect("the host platform exists");
    let runtime = stage.join(crate::stage::staged_runtime(host_platform));
    shell.status(
        "Running",
        GREEN,
        &format!(
            "{} on {}/ (app data {})",
            profile.name,
            platform.dir,
            app_data.display()
        ),
    );
    let mut command = std::process::Command::new(runtime.as_std_path());
    command
        .arg("--bundle")
        .arg(stage.as_std_path())
        .arg("--app-data")
        .arg(&app_data);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // `exec` replaces this process: no drop runs after it, so what the shell holds goes now.
        shell.flush_json();
        let err = command.exec();
        Err(Diagnostic::error(format!(
            "could not start {runtime}: {err}"
        )))
    }
    #[cfg(not(unix))]
    {
        let status = command.status().map_err(Diagnostic::from)?;
        Ok(status.code().unwrap_or(1) as u8)
    }
}
