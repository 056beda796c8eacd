//! The thin client (the seed's `generate/quick`): `thin:<profile>` writes the Electron project
//! without runtime or services, pointing at a deployed scenario's URL (`cargo xtask
//! thin-client PROFILE --url https://…`, or `[profiles.NAME.thin] url`), and a thin payload per
//! platform that the package writers turn into the thin client's own packages
//! (`package:<profile>-thin@<platform>:<format>`):
//!
//! ```text
//! <out>/<profile>/thin/                              the thin Electron project
//! <out>/<profile>/thin/stage/<platform>/thin.json    the app (name, display name, version) and the URL
//! <out>/<profile>/thin/stage/<platform>/launch       opens the URL in the user's browser
//!                                                    (launch.cmd on Windows); XBUNDLE_BROWSER
//!                                                    names another program
//! <out>/<profile>/thin/stage/<platform>/electron/    the thin Electron project
//! <out>/<profile>/thin/packages/<profile>-thin-<platform>.<format>
//! ```
//!
//! The thin client is another app beside the bundled one: its package name is the app's with
//! `-thin`, its display name says "(thin client)", its identifier ends in `.thin` (so the msi's
//! upgrade code differs too), and it publishes no updates.
//!
//! **Invariant:** a URL is `http://` or `https://`, has a host, and holds only the characters
//! RFC 3986 allows (no quote, space, backslash, `^`, `` ` ``, `{`, `}`, `|`, `<`, `>`), at
//! most 2048 bytes: it is written into a shell script (single-quoted) and a Windows command
//! file (double-quoted, `%` doubled), where nothing else could be quoted safely.

use std::collections::BTreeMap;
use std::sync::Arc;

use camino::{Utf8Path, Utf8PathBuf};
use engine::{Action, ActionContext, ActionFailure, ActionOutput, TaskId, TaskSpec};
use serde_json::json;

use super::{Mode, ProjectInput, failure};
use crate::config::{InstallerDecl, Profile};
use crate::package::{Meta, PackagePlan};
use crate::platform::Platform;

/// The app block the package writers read from a thin payload (instead of bundle.json).
pub const MANIFEST: &str = "thin.json";
/// The launcher of a thin payload on Linux and macOS (a POSIX shell script).
pub const LAUNCHER: &str = "launch";
/// The launcher of a thin payload on Windows.
pub const WINDOWS_LAUNCHER: &str = "launch.cmd";
/// The longest URL accepted.
pub const MAX_URL: usize = 2048;

pub fn thin_id(profile: &str) -> TaskId {
    TaskId::new(format!("thin:{profile}"))
}

/// Where the thin project lands (root-relative).
pub fn thin_dir(out: &Utf8Path, profile: &str) -> Utf8PathBuf {
    out.join(profile).join("thin")
}

/// A platform's thin payload (root-relative).
pub fn stage_dir(out: &Utf8Path, profile: &str, platform: &str) -> Utf8PathBuf {
    thin_dir(out, profile).join("stage").join(platform)
}

/// A thin package's task id.
pub fn package_id(profile: &str, platform: &str, format: &str) -> TaskId {
    TaskId::new(format!("package:{profile}-thin@{platform}:{format}"))
}

/// Where a thin package lands (root-relative).
pub fn package_path(out: &Utf8Path, profile: &str, platform: &str, format: &str) -> Utf8PathBuf {
    thin_dir(out, profile)
        .join("packages")
        .join(format!("{profile}-thin-{platform}.{format}"))
}

/// The launcher file of a platform's thin payload.
pub fn launcher_name(platform: &Platform) -> &'static str {
    if platform.goos == "windows" {
        WINDOWS_LAUNCHER
    } else {
        LAUNCHER
    }
}

/// Checks a deployed app's URL (module docs); the error says what is wrong and what to write.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| {
            format!(
                "`{}` is not an http(s) URL: the thin client opens a deployed app, e.g. https://notes.example.org/",
                url.escape_debug()
            )
        })?;
    if url.len() > MAX_URL {
        return Err(format!("the URL is longer than {MAX_URL} bytes"));
    }
    if let Some(bad) = url
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(*c)))
    {
        return Err(format!(
            "`{}` holds `{}`, which a URL cannot hold unencoded (percent-encode it)",
            url.escape_debug(),
            bad.escape_debug()
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("`{}` names no host", url.escape_debug()));
    }
    Ok(())
}

/// One line of text for a comment.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A POSIX shell script that opens `url` in the browser: `XBUNDLE_BROWSER` when set (a program
/// given the URL as its one argument, as the runtime's `--open-ui` does), else `open` (macOS)
/// or `xdg-open`.
pub fn unix_opener(display: &str, url: &str) -> String {
    format!(
        "#!/bin/sh\n\
         # {display}: opens {shown} in your browser (XBUNDLE_BROWSER names another program).\n\
         # Generated by xbundle.\n\
         url='{quoted}'\n\
         if [ -n \"${{XBUNDLE_BROWSER:-}}\" ]; then\n\
         \x20 exec \"$XBUNDLE_BROWSER\" \"$url\"\n\
         fi\n\
         case \"$(uname -s)\" in\n\
         \x20 Darwin) exec open \"$url\" ;;\n\
         esac\n\
         exec xdg-open \"$url\"\n",
        display = one_line(display),
        shown = one_line(url),
        quoted = url.replace('\'', r"'\''"),
    )
}

/// A Windows command file that opens `url` in the browser (`XBUNDLE_BROWSER` when set, else
/// `start`). The URL is double-quoted with `%` doubled; [`check_url`] keeps `"` out.
pub fn windows_opener(url: &str) -> String {
    let quoted = url.replace('%', "%%");
    [
        "@echo off",
        "rem Opens the app's deployed address in the browser. Generated by xbundle.",
        "if not defined XBUNDLE_BROWSER goto open",
        &format!("\"%XBUNDLE_BROWSER%\" \"{quoted}\""),
        "exit /b",
        ":open",
        &format!("start \"\" \"{quoted}\""),
        "",
    ]
    .join("\r\n")
}

/// The launcher an installer puts on the command path (`/usr/bin/<name>`) for a thin payload
/// installed at `bundle` (relative to the launcher's directory): runs the payload's own.
pub fn installed_launcher(meta: &Meta, bundle: &str) -> String {
    format!(
        "#!/bin/sh\n\
         # {display}: opens the app in your browser. Generated by xbundle.\n\
         here=$(CDPATH= cd -- \"$(dirname -- \"$0\")\" && pwd) || exit 1\n\
         bundle=$(CDPATH= cd -- \"$here\"/'{bundle}' && pwd) || exit 1\n\
         exec \"$bundle\"/{LAUNCHER} \"$@\"\n",
        display = one_line(&meta.display_name),
        bundle = bundle.replace('\'', r"'\''"),
    )
}

/// The thin client as an app of its own, from the bundled app's description.
pub fn thin_meta(mut meta: Meta, installer: &InstallerDecl) -> Meta {
    meta.name = format!("{}-thin", meta.name);
    meta.display_name = format!("{} (thin client)", meta.display_name);
    meta.identifier = thin_identifier(installer, &meta.name);
    meta.upgrade_code = crate::package::stable_guid(&format!("upgrade-code:{}", meta.identifier));
    meta
}

/// `<identifier>.thin` when the profile names one, else what the package layer derives from
/// the thin client's name (so the project and the packages agree).
fn thin_identifier(installer: &InstallerDecl, thin_name: &str) -> String {
    match &installer.identifier {
        Some(identifier) => format!("{identifier}.thin"),
        None => format!(
            "org.xbundle.{}",
            thin_name.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        ),
    }
}

/// The installer settings of the thin client's packages: the profile's, with the name,
/// display name, identifier and upgrade code left to the thin payload's `thin.json` (so they
/// are the thin client's, never the bundled app's).
pub fn thin_installer(installer: &InstallerDecl) -> InstallerDecl {
    InstallerDecl {
        name: None,
        display_name: None,
        identifier: installer
            .identifier
            .as_ref()
            .map(|identifier| format!("{identifier}.thin")),
        upgrade_code: None,
        ..installer.clone()
    }
}

/// The files of one platform's thin payload: (path below the payload, bytes, mode).
pub fn payload(
    meta: &Meta,
    url: &str,
    platform: &Platform,
    project: &[(String, Vec<u8>)],
) -> Vec<(String, Vec<u8>, u32)> {
    let manifest = json!({
        "app": {
            "name": meta.name,
            "display_name": meta.display_name,
            "version": meta.version,
            "description": meta.description,
        },
        "url": url,
    });
    let mut manifest = serde_json::to_string_pretty(&manifest).expect("JSON values serialize");
    manifest.push('\n');
    let launcher = if platform.goos == "windows" {
        windows_opener(url)
    } else {
        unix_opener(&meta.display_name, url)
    };
    let mut files = vec![
        (MANIFEST.to_string(), manifest.into_bytes(), 0o644),
        (
            launcher_name(platform).to_string(),
            launcher.into_bytes(),
            0o755,
        ),
    ];
    files.extend(
        project
            .iter()
            .map(|(path, bytes)| (format!("electron/{path}"), bytes.clone(), 0o644)),
    );
    files.sort();
    files
}

/// One `thin:<profile>` task's inputs.
#[derive(Debug, Clone)]
pub struct ThinPlan {
    pub profile: String,
    pub out: Utf8PathBuf,
    pub platforms: Vec<Platform>,
    pub installer: InstallerDecl,
    pub url: String,
}

pub fn spec(plan: ThinPlan) -> TaskSpec {
    let dir = thin_dir(&plan.out, &plan.profile);
    let png = plan
        .installer
        .icon
        .as_deref()
        .is_some_and(|icon| icon.ends_with(".png"));
    let project_files = super::project_files(png);
    let mut outputs: Vec<String> = project_files
        .iter()
        .map(|file| dir.join(file).to_string())
        .collect();
    for platform in &plan.platforms {
        let stage = stage_dir(&plan.out, &plan.profile, &platform.id);
        outputs.push(stage.join(MANIFEST).to_string());
        outputs.push(stage.join(launcher_name(platform)).to_string());
        outputs.extend(
            project_files
                .iter()
                .map(|file| stage.join("electron").join(file).to_string()),
        );
    }
    let mut params = BTreeMap::new();
    params.insert("profile".into(), plan.profile.clone());
    params.insert("url".into(), plan.url.clone());
    params.insert("platforms".into(), super::platforms_param(&plan.platforms));
    params.insert(
        "installer".into(),
        serde_json::to_string(&plan.installer).unwrap_or_default(),
    );
    params.insert("templates".into(), super::templates_digest());
    TaskSpec {
        id: thin_id(&plan.profile),
        kind: "thin".into(),
        impl_version: super::ELECTRON_VERSION,
        params,
        cwd: String::new(),
        inputs: plan.installer.icon.iter().cloned().collect(),
        outputs,
        env: Vec::new(),
        tools: BTreeMap::new(),
        deps: vec![crate::stages::assemble_id(&plan.profile)],
        description: Some(format!(
            "Generate the thin client of profile {} for {}",
            plan.profile, plan.url
        )),
        action: Arc::new(Thin { plan, dir }),
    }
}

struct Thin {
    plan: ThinPlan,
    dir: Utf8PathBuf,
}

impl Action for Thin {
    fn run(&self, context: &ActionContext<'_>) -> Result<ActionOutput, ActionFailure> {
        let plan = &self.plan;
        // bundle.toml's URL is checked at load time for its scheme only; the launchers need
        // this stricter rule.
        check_url(&plan.url).map_err(|err| failure(format!("profile {}: {err}", plan.profile)))?;
        let meta = super::assembled_meta(context.tree, &plan.out, &plan.profile, &plan.installer)
            .map_err(failure)?;
        let meta = thin_meta(meta, &plan.installer);
        let project = super::project(&ProjectInput {
            meta: meta.clone(),
            platforms: plan.platforms.clone(),
            mode: Mode::Thin {
                url: plan.url.clone(),
            },
            publish: None,
        })
        .map_err(|err| failure(format!("profile {}: {err}", plan.profile)))?;
        super::write_files(context.tree, &self.dir, &project).map_err(failure)?;
        for platform in &plan.platforms {
            let stage = stage_dir(&plan.out, &plan.profile, &platform.id);
            for (path, bytes, mode) in payload(&meta, &plan.url, platform, &project) {
                let to = stage.join(&path);
                crate::stage::write_with(context.tree, &to, mode, |file| {
                    use std::io::Write;
                    file.write_all(&bytes)
                        .map_err(|err| format!("writing {to}: {err}"))
                })
                .map_err(failure)?;
            }
        }
        Ok(ActionOutput::default())
    }
}

/// The thin client's tasks for a profile with a URL: `thin:<profile>` and its packages, with
/// each task's platform (`None` for the project task).
pub fn plan(
    profile: &Profile,
    platforms: &[Platform],
    out: &Utf8Path,
    url: &str,
    epoch: u64,
    sign: &BTreeMap<String, String>,
) -> (Vec<TaskSpec>, Vec<(Option<String>, TaskId)>) {
    let installer = profile
        .decl
        .installer
        .as_ref()
        .map(|i| i.get_ref().clone())
        .unwrap_or_default();
    let project = spec(ThinPlan {
        profile: profile.name.clone(),
        out: out.to_path_buf(),
        platforms: platforms.to_vec(),
        installer: installer.clone(),
        url: url.to_string(),
    });
    let mut ids = vec![(None, project.id.clone())];
    let mut specs = vec![];
    for platform in platforms {
        for format in crate::package::formats(profile, platform) {
            let package = crate::package::spec(PackagePlan {
                profile: profile.name.clone(),
                platform: platform.clone(),
                format: format.clone(),
                out: out.to_path_buf(),
                stage_dir: stage_dir(out, &profile.name, &platform.id),
                stage: project.id.clone(),
                installer: thin_installer(&installer),
                epoch,
                sign: sign.get(&format).cloned(),
                thin: true,
            });
            ids.push((Some(platform.id.clone()), package.id.clone()));
            specs.push(package);
        }
    }
    specs.push(project);
    (specs, ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_with_a_host_and_plain_characters_pass() {
        for good in [
            "https://notes.example.org/",
            "http://127.0.0.1:8080/app?x=1&y=%20#top",
            "https://user@host.example/path;a=b",
        ] {
            assert_eq!(check_url(good), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("ftp://example.org/", "not an http(s) URL"),
            ("javascript:alert(1)", "not an http(s) URL"),
            ("notes.example.org", "not an http(s) URL"),
            ("https://", "names no host"),
            ("https:///path", "names no host"),
            ("https://example.org/a\"b", "holds `\\\"`"),
            ("https://example.org/a b", "holds ` `"),
            ("https://example.org/`id`", "holds ```"),
        ] {
            let err = check_url(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert!(check_url(&format!("https://e.org/{}", "a".repeat(MAX_URL))).is_err());
    }

    #[test]
    fn the_unix_opener_hands_the_url_over_as_one_argument() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("seen");
        let browser = dir.path().join("browser");
        std::fs::write(
            &browser,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$#\" \"$1\" > '{}'\n",
                seen.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o755)).unwrap();
        let url = "https://example.org/it's?a=$(id)&b=`id`;c";
        let launcher = dir.path().join("launch");
        std::fs::write(&launcher, unix_opener("It's\nNotes", url)).unwrap();
        std::fs::set_permissions(&launcher, std::fs::Permissions::from_mode(0o755)).unwrap();
        let status = std::process::Command::new(&launcher)
            .env("XBUNDLE_BROWSER", &browser)
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(
            std::fs::read_to_string(&seen).unwrap(),
            format!("1\n{url}\n")
        );
    }

    #[test]
    fn the_windows_opener_doubles_percent_signs() {
        let text = windows_opener("https://e.org/a%20b");
        assert!(
            text.contains("start \"\" \"https://e.org/a%%20b\"\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\n"));
    }
}
