//! Checks of the packaging settings in bundle.toml, at load time: a profile's `formats`,
//! `[profiles.NAME.installer]`, `electron-dist`, `[profiles.NAME.publish]`,
//! `[profiles.NAME.thin]`, and the top-level `[sign]` templates. Each problem names the
//! setting, where it is written and what to write instead.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;

use crate::config::{ProfileDecl, normalized_relative};

/// A problem: the message, where, and the help line.
pub type Problem = (String, Range<usize>, String);

/// A package name deb, rpm and a command line all accept: `[a-z0-9][a-z0-9+.-]+`.
pub fn is_package_name(name: &str) -> bool {
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c))
}

/// A Debian relation as a binary package's `Depends` holds it: alternatives `a | b`, each a
/// package name (with an optional `:arch` qualifier) and an optional `(OP version)`, `OP` one
/// of `<<`, `<=`, `=`, `>=`, `>>`.
pub fn is_debian_relation(entry: &str) -> bool {
    entry.split('|').all(|alternative| {
        let alternative = alternative.trim();
        let (name, rest) = match alternative.find(|c: char| c == '(' || c.is_whitespace()) {
            Some(at) => (&alternative[..at], alternative[at..].trim()),
            None => (alternative, ""),
        };
        let name = match name.split_once(':') {
            Some((name, arch))
                if !arch.is_empty()
                    && arch.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') =>
            {
                name
            }
            Some(_) => "",
            None => name,
        };
        let version_ok = |inner: &str| {
            let inner = inner.trim();
            ["<<", "<=", ">=", ">>", "="]
                .iter()
                .find(|op| inner.starts_with(**op))
                .is_some_and(|op| {
                    let version = inner[op.len()..].trim();
                    version.starts_with(|c: char| c.is_ascii_digit())
                        && version
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || ".+~-:".contains(c))
                })
        };
        is_package_name(name)
            && (rest.is_empty()
                || rest
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .is_some_and(version_ok))
    })
}

/// A GUID as an msi writes it: 8-4-4-4-12 hex digits.
pub fn is_guid(value: &str) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_http_url(value: &str) -> bool {
    (value.starts_with("https://") || value.starts_with("http://"))
        && value.len() > "https://".len()
        && !value.contains(char::is_whitespace)
}

/// A profile's packaging settings.
pub fn check_profile(profile: &str, decl: &ProfileDecl) -> Result<(), Problem> {
    for format in &decl.formats {
        if !super::KNOWN.contains(&format.get_ref().as_str()) {
            return Err((
                format!(
                    "profile `{profile}`: unknown installer format `{}`",
                    format.get_ref().escape_debug()
                ),
                format.span(),
                format!("formats are {}", super::KNOWN.join(", ")),
            ));
        }
    }
    if let Some(installer) = &decl.installer {
        let span = installer.span();
        let at = |message: String, help: &str| Err((message, span.clone(), help.to_string()));
        let installer = installer.get_ref();
        if let Some(name) = &installer.name
            && !is_package_name(name)
        {
            return at(
                format!(
                    "profile `{profile}`: installer name `{}` is not a package name",
                    name.escape_debug()
                ),
                "a package name has two or more lowercase letters, digits, `+`, `-` or `.`, and starts with a letter or digit (e.g. name = \"notes-app\")",
            );
        }
        for (key, value) in [
            ("display-name", &installer.display_name),
            ("description", &installer.description),
            ("maintainer", &installer.maintainer),
            ("vendor", &installer.vendor),
            ("license", &installer.license),
            ("category", &installer.category),
            ("homepage", &installer.homepage),
            ("identifier", &installer.identifier),
        ] {
            if let Some(value) = value
                && (value.trim().is_empty() || value.chars().any(char::is_control))
            {
                return at(
                    format!(
                        "profile `{profile}`: installer {key} is empty or holds a control character"
                    ),
                    "write one line of text",
                );
            }
        }
        if let Some(maintainer) = &installer.maintainer
            && !(maintainer.contains('<') && maintainer.ends_with('>') && maintainer.contains('@'))
        {
            return at(
                format!(
                    "profile `{profile}`: installer maintainer `{}` has no email address",
                    maintainer.escape_debug()
                ),
                "write it as `Name <email>`, e.g. maintainer = \"Notes team <notes@example.org>\"",
            );
        }
        if let Some(homepage) = &installer.homepage
            && !is_http_url(homepage)
        {
            return at(
                format!("profile `{profile}`: installer homepage is not an http(s) URL"),
                "e.g. homepage = \"https://example.org/notes\"",
            );
        }
        if let Some(identifier) = &installer.identifier
            && !(identifier.contains('.')
                && identifier.split('.').all(|part| {
                    !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                }))
        {
            return at(
                format!(
                    "profile `{profile}`: installer identifier `{}` is not a reverse-DNS name",
                    identifier.escape_debug()
                ),
                "e.g. identifier = \"org.example.notes\"",
            );
        }
        if let Some(icon) = &installer.icon
            && (normalized_relative(icon).is_none()
                || !(icon.ends_with(".svg") || icon.ends_with(".png")))
        {
            return at(
                format!(
                    "profile `{profile}`: installer icon `{}` is not a .svg or .png path inside the repository",
                    icon.escape_debug()
                ),
                "write a relative path from the directory of bundle.toml, e.g. icon = \"scenarios/notes-app/ui/icon.svg\"",
            );
        }
        if let Some(code) = &installer.upgrade_code
            && !is_guid(code)
        {
            return at(
                format!("profile `{profile}`: installer upgrade-code is not a GUID"),
                "e.g. upgrade-code = \"6F1C2E0A-3B4D-4E5F-8A9B-0C1D2E3F4A5B\" (keep it forever: it ties versions of the msi together)",
            );
        }
        for (key, list) in [
            ("depends", &installer.depends),
            ("requires", &installer.requires),
        ] {
            if list
                .iter()
                .any(|entry| entry.trim().is_empty() || entry.contains([',', '\n', '\r']))
            {
                return at(
                    format!(
                        "profile `{profile}`: an installer {key} entry is empty or holds a comma or a line break"
                    ),
                    "one package per entry, e.g. depends = [\"libc6 (>= 2.31)\"]",
                );
            }
        }
        for entry in &installer.depends {
            if !is_debian_relation(entry) {
                return at(
                    format!(
                        "profile `{profile}`: installer depends entry `{}` is not a Debian relation",
                        entry.escape_debug()
                    ),
                    "a package name, optionally `(OP version)` with OP one of <<, <=, =, >=, >>, and `|` between alternatives, e.g. depends = [\"libc6 (>= 2.31)\", \"xdg-utils | sensible-utils\"]",
                );
            }
        }
        // rpm's form: `name` or `name OP version`.
        for entry in &installer.requires {
            let words: Vec<&str> = entry.split_whitespace().collect();
            let well_formed = match words.as_slice() {
                [_] => true,
                [_, op, _] => ["<", "<=", "=", ">=", ">"].contains(op),
                _ => false,
            };
            if !well_formed {
                return at(
                    format!(
                        "profile `{profile}`: installer requires entry `{}` is not `name` or `name OP version`",
                        entry.escape_debug()
                    ),
                    "OP is one of <, <=, =, >=, > with spaces around it, e.g. requires = [\"glibc >= 2.31\"]",
                );
            }
        }
    }
    if let Some(dist) = &decl.electron_dist
        && normalized_relative(dist.get_ref()).is_none()
    {
        return Err((
            format!("profile `{profile}`: electron-dist is not a path inside the repository"),
            dist.span(),
            "write a relative path from the directory of bundle.toml to a directory holding Electron, e.g. electron-dist = \"vendor/electron\"".into(),
        ));
    }
    for (key, url) in [
        (
            "publish",
            decl.publish
                .as_ref()
                .map(|p| (p.span(), p.get_ref().url.clone())),
        ),
        (
            "thin",
            decl.thin
                .as_ref()
                .map(|t| (t.span(), t.get_ref().url.clone())),
        ),
    ] {
        if let Some((span, Some(url))) = url
            && !is_http_url(&url)
        {
            return Err((
                format!("profile `{profile}`: [{key}] url is not an http(s) URL"),
                span,
                "e.g. url = \"https://downloads.example.org/notes/\"".into(),
            ));
        }
    }
    // The thin client's URL is written into its launchers: the stricter rule.
    if let Some(thin) = &decl.thin
        && let Some(url) = &thin.get_ref().url
        && let Err(problem) = crate::electron::thin::check_url(url)
    {
        return Err((
            format!("profile `{profile}`: [thin] url: {problem}"),
            thin.span(),
            "e.g. url = \"https://notes.example.org/\"".into(),
        ));
    }
    Ok(())
}

/// `[sign]`: format → command template. A key must be a known format, a template a
/// non-empty command whose placeholders are closed.
pub fn check_sign(
    sign: &BTreeMap<Spanned<String>, Spanned<String>>,
) -> Result<BTreeMap<String, String>, Problem> {
    let mut templates = BTreeMap::new();
    for (format, template) in sign {
        if !super::KNOWN.contains(&format.get_ref().as_str()) {
            return Err((
                format!(
                    "[sign] has a template for an unknown format `{}`",
                    format.get_ref().escape_debug()
                ),
                format.span(),
                format!("keys are formats: {}", super::KNOWN.join(", ")),
            ));
        }
        if let Err(problem) = super::sign::parse_template(template.get_ref()) {
            return Err((
                format!("[sign] {}: {problem}", format.get_ref()),
                template.span(),
                "e.g. msi = \"osslsigncode sign -pkcs12 {key} -in {in} -out {out}\" ({key} comes from XBUNDLE_SIGN_KEY)".into(),
            ));
        }
        templates.insert(format.get_ref().clone(), template.get_ref().clone());
    }
    Ok(templates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_relations_are_recognized() {
        for good in [
            "libc6",
            "libc6 (>= 2.31)",
            "xdg-utils | sensible-utils",
            "python3:any (>> 3.9~)",
            "foo (= 1:2.0-1)",
        ] {
            assert!(is_debian_relation(good), "{good}");
        }
        for bad in [
            "Libc6",
            "libc6 (>= )",
            "libc6 (=> 2.31)",
            "libc6 >= 2.31",
            "libc6 (>= 2.31",
            "a | ",
            "x",
        ] {
            assert!(!is_debian_relation(bad), "{bad}");
        }
    }
}
