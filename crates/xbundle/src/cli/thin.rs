//! `thin-client PROFILE [--url URL]`: the thin client of a profile (the seed's
//! `generate/quick`), built on the engine like everything else: the profile's assembly (for the
//! app's name and version), `thin:<profile>` (the thin Electron project and a payload per
//! platform) and the thin packages (`crate::electron::thin`). `--url` overrides
//! `[profiles.NAME.thin] url` for this run; a URL that is missing or not http(s) is bad input
//! (exit 2) before anything runs. Ends by saying what it wrote and where.

use clap::Args;
use serde_json::json;

use super::{Cli, RunArgs, load_with};
use crate::config::ThinDecl;
use crate::diagnostic::Diagnostic;
use crate::electron::thin;
use crate::shell::{GREEN, Shell};

#[derive(Debug, Args)]
pub struct ThinArgs {
    /// The profile whose app the thin client shows
    profile: String,
    /// The deployed app's URL (default: [profiles.PROFILE.thin] url)
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    #[command(flatten)]
    pub(super) run: RunArgs,
}

pub(super) fn thin_client(cli: &Cli, args: &ThinArgs, shell: &Shell) -> Result<u8, Diagnostic> {
    let mut workspace = load_with(cli, args.run.force, args.run.fail_fast, args.run.offline)?;
    let profile = crate::names::profile(&workspace.config, &workspace.root, &args.profile)?.clone();
    let configured = profile
        .decl
        .thin
        .as_ref()
        .and_then(|t| t.get_ref().url.clone());
    let Some(url) = args.url.clone().or(configured) else {
        return Err(Diagnostic::error(format!(
            "profile `{}` names no URL for its thin client",
            profile.name
        ))
        .help(format!(
            "pass --url https://… (the deployed app), or set it in bundle.toml: [profiles.{}.thin] url = \"https://…\"",
            profile.name
        )));
    };
    thin::check_url(&url).map_err(|problem| {
        Diagnostic::error(format!("thin client of `{}`: {problem}", profile.name))
            .help("pass the address of the deployed app, e.g. --url https://notes.example.org/")
    })?;
    // The URL of this run, planned like bundle.toml's.
    if let Some(target) = workspace
        .config
        .profiles
        .iter_mut()
        .find(|p| p.name == profile.name)
    {
        let span = target.decl.thin.as_ref().map(|t| t.span()).unwrap_or(0..0);
        target.decl.thin = Some(toml::Spanned::new(
            span,
            ThinDecl {
                url: Some(url.clone()),
            },
        ));
    }
    let plan = crate::plan::plan(&workspace.config, &workspace.root, &workspace.tools)?;
    let bundles = plan
        .bundles
        .iter()
        .find(|b| b.profile == profile.name)
        .ok_or_else(|| Diagnostic::internal("the profile was planned"))?;
    let targets: Vec<String> = bundles.thin.iter().map(|(_, id)| id.to_string()).collect();
    workspace.tools.save();
    let code = super::build::run_tasks(&workspace, &plan.graph, &targets, &args.run, shell)?;
    if code != 0 || args.run.dry_run {
        return Ok(code);
    }
    let out = &workspace.config.workspace.out;
    let project = thin::thin_dir(out, &profile.name);
    let mut stages = Vec::new();
    let mut packages = Vec::new();
    for (platform, id) in &bundles.thin {
        let Some(platform) = platform else { continue };
        let stage = thin::stage_dir(out, &profile.name, platform);
        if !stages.contains(&stage) {
            stages.push(stage);
        }
        if let Some(spec) = plan.graph.get(id) {
            packages.extend(spec.outputs.iter().cloned());
        }
    }
    if shell.is_json() {
        shell.json(&json!({
            "event": "thin-client",
            "profile": profile.name,
            "url": url,
            "root": workspace.root.as_str(),
            "project": project.as_str(),
            "stages": stages.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "packages": packages,
        }));
    } else {
        shell.status(
            "Wrote",
            GREEN,
            &format!(
                "the thin client of {} for {url}: the Electron project in {project}/",
                profile.name
            ),
        );
        for stage in &stages {
            shell.status("Wrote", GREEN, &format!("{stage}/ (launcher and project)"));
        }
        for package in &packages {
            shell.status("Wrote", GREEN, package);
        }
    }
    Ok(0)
}
