//! Names given on the command line (profiles, scenarios, tiers, platforms, resources, secrets,
//! tasks) and the one way an unknown one is answered.
//!
//! Invariants:
//! - every "unknown NAME" diagnostic of the command line takes its help from [`help`]: "did you
//!   mean `X`?" when one known name is close ([`crate::diagnostic::closest`], Jaro-Winkler),
//!   else the list of known names (or `(none)`); so a near miss is answered the same way
//!   everywhere;
//! - a scenario's name where a profile is expected (and a profile's name where a scenario is
//!   expected) is said to be one, with the profiles of that scenario (or the profile's
//!   scenario);
//! - nothing here reads more than directory listings and bundle.toml already parsed; nothing
//!   is written.

use camino::Utf8Path;

use crate::analysis::Layout;
use crate::analysis::tier::Tier;
use crate::config::{BundleConfig, Profile};
use crate::diagnostic::{Diagnostic, closest};

/// The help line for an unknown `name`: "did you mean `X`?" when a candidate is close, else
/// "`what`: a, b, c" (or "`what`: (none)").
pub fn help<'a>(name: &str, what: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let candidates: Vec<&str> = candidates.into_iter().collect();
    match closest(name, candidates.iter().copied()) {
        Some(close) => format!("did you mean `{close}`?"),
        None if candidates.is_empty() => format!("{what}: (none)"),
        None => format!("{what}: {}", candidates.join(", ")),
    }
}

/// The scenarios of a repository, from bundle.toml's layout.
pub fn layout(config: &BundleConfig, root: &Utf8Path) -> Layout {
    Layout {
        root: root.to_path_buf(),
        scenarios: config.workspace.scenarios.clone(),
        resources: config.workspace.resources.clone(),
    }
}

/// The profiles bundling `scenario`, in bundle.toml's order.
fn profiles_of<'a>(config: &'a BundleConfig, scenario: &str) -> Vec<&'a str> {
    let mut profiles: Vec<&Profile> = config
        .profiles
        .iter()
        .filter(|p| p.decl.scenario.get_ref() == scenario)
        .collect();
    profiles.sort_by_key(|p| p.span.start);
    profiles.into_iter().map(|p| p.name.as_str()).collect()
}

/// The profile `name`, or a diagnostic: a scenario's name is said to be one (with its
/// profiles), anything else gets [`help`] over the profiles of bundle.toml.
pub fn profile<'a>(
    config: &'a BundleConfig,
    root: &Utf8Path,
    name: &str,
) -> Result<&'a Profile, Diagnostic> {
    if let Some(profile) = config.profile(name) {
        return Ok(profile);
    }
    Err(unknown_profile(config, root, name))
}

/// The diagnostic for a profile name bundle.toml does not declare.
pub fn unknown_profile(config: &BundleConfig, root: &Utf8Path, name: &str) -> Diagnostic {
    let is_scenario = crate::config::is_plain_name(name)
        && layout(config, root)
            .scenario_names()
            .iter()
            .any(|s| s == name);
    if is_scenario {
        let profiles = profiles_of(config, name);
        let help = match profiles.as_slice() {
            [] => format!(
                "no profile bundles it yet; add one: `cargo xtask profile create {name}-desktop --scenario {name} --tier desktop`"
            ),
            [one] => format!("its profile: `{one}`"),
            many => format!(
                "its profiles: {}",
                many.iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        return Diagnostic::error(format!(
            "`{name}` is a scenario, not a profile (a profile of bundle.toml is expected here)"
        ))
        .help(help);
    }
    let names = config.profiles.iter().map(|p| p.name.as_str());
    let help = if config.profiles.is_empty() {
        "bundle.toml has no profiles; add one with `cargo xtask profile create NAME --scenario S --tier T`".to_string()
    } else {
        self::help(name, "profiles in bundle.toml", names)
    };
    Diagnostic::error(format!("unknown profile `{name}`")).help(help)
}

/// Checks that `name` is a scenario of `layout` (a directory with a service.json); a profile's
/// name is said to be one, with its scenario.
pub fn scenario(
    layout: &Layout,
    config: Option<&BundleConfig>,
    name: &str,
) -> Result<(), Diagnostic> {
    let known = layout.scenario_names();
    if known.iter().any(|s| s == name) {
        return Ok(());
    }
    if !crate::config::is_plain_name(name) {
        return Err(
            Diagnostic::error(format!("`{name}` is not a scenario name")).help(format!(
                "name a directory under {}, not a path; {}",
                layout.scenarios,
                help(name, "scenarios", known.iter().map(String::as_str))
            )),
        );
    }
    if let Some(profile) = config.and_then(|c| c.profile(name)) {
        return Err(Diagnostic::error(format!(
            "`{name}` is a profile, not a scenario (a scenario under {} is expected here)",
            layout.scenarios
        ))
        .help(format!(
            "its scenario: `{}`",
            profile.decl.scenario.get_ref()
        )));
    }
    Err(Diagnostic::error(format!(
        "unknown scenario `{name}`: {} does not exist",
        layout.definition_path(crate::service::ServiceKind::Scenario, name)
    ))
    .help(help(
        name,
        &format!("scenarios under {}", layout.scenarios),
        known.iter().map(String::as_str),
    )))
}

/// Every spelling [`Tier`] accepts that a user is likely to mean, with the tier's id.
const TIER_WORDS: [&str; 12] = [
    "tier-1-local",
    "tier-2-desktop",
    "tier-3-mobile",
    "tier-4-saas",
    "tier-5-enterprise",
    "local",
    "desktop",
    "mobile",
    "saas",
    "server",
    "cloud",
    "enterprise",
];

/// A `--tier` argument: a tier, or a diagnostic with [`help`] over the tiers' names.
pub fn tier(text: &str) -> Result<Tier, Diagnostic> {
    text.parse::<Tier>().map_err(|message| {
        let help = match closest(&text.trim().to_ascii_lowercase(), TIER_WORDS) {
            Some(close) => format!("did you mean `{close}`?"),
            None => "pass tier-2-desktop, 2 or desktop (any tier id, its number or its short name)"
                .to_string(),
        };
        Diagnostic::error(message).help(help)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_suggests_or_lists() {
        assert_eq!(
            help("nots", "profiles", ["notes", "wheel"]),
            "did you mean `notes`?"
        );
        assert_eq!(
            help("zzz", "profiles", ["notes", "wheel"]),
            "profiles: notes, wheel"
        );
        assert_eq!(help("zzz", "profiles", []), "profiles: (none)");
    }

    #[test]
    fn tiers_are_suggested() {
        let err = tier("desktp").unwrap_err();
        assert_eq!(err.help.as_deref(), Some("did you mean `desktop`?"));
        assert_eq!(tier("2").unwrap(), Tier::Desktop);
    }
}
