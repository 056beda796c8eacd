//! Editing `[profiles.*]` of `bundle.toml` as text, for `cargo xtask profile create | set`.
//!
//! Every function here takes the file's text and returns the new text (or a diagnostic); none
//! reads or writes a file, so the command line decides when to write and tests can compare text.
//! Edits go through `toml_edit::DocumentMut`, which keeps comments, blank lines, key order and
//! quoting of everything it is not asked to change.
//!
//! **Invariants.** Outside the edited entry the text is unchanged byte for byte. A new value in
//! an inline table or an array copies the formatting of its last neighbour (so
//! `{ a = "b", c = "d" }` grows to `{ a = "b", c = "d", e = "f" }`, and a one-per-line array stays
//! one per line). A new profile is placed after the last existing one (at the end of the file
//! when there is none). The result of every edit still parses with [`BundleConfig::parse`]
//! (checked by `finish`); whether its scenario and swaps make sense is [`check`]'s job, which
//! needs the repository's definitions.

use camino::Utf8Path;
use toml_edit::{Array, DocumentMut, InlineTable, Item, Key, Table, TableLike, Value};

use crate::analysis::tier::Tier;
use crate::analysis::{self, Analysis, Catalog, Request};
use crate::config::{self, BundleConfig, Profile};
use crate::diagnostic::Diagnostic;

/// One `--swap` argument: `FROM=TO` sets a swap, `FROM=` removes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SwapEdit {
    Set { from: String, to: String },
    Remove { from: String },
}

impl SwapEdit {
    pub fn from(&self) -> &str {
        match self {
            SwapEdit::Set { from, .. } | SwapEdit::Remove { from } => from,
        }
    }
}

impl std::fmt::Display for SwapEdit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SwapEdit::Set { from, to } => write!(f, "swap {from}={to}"),
            SwapEdit::Remove { from } => write!(f, "remove swap {from}"),
        }
    }
}

/// Parses `--swap` arguments (`FROM=TO`, or `FROM=` to remove a swap).
pub fn parse_swap_edits(args: &[String]) -> Result<Vec<SwapEdit>, Diagnostic> {
    let mut edits: Vec<SwapEdit> = Vec::new();
    for arg in args {
        let Some((from, to)) = arg.split_once('=') else {
            return Err(Diagnostic::error(format!("`{arg}` is not a swap")).help(
                "write --swap FROM=TO to swap a resource, or --swap FROM= to remove a swap",
            ));
        };
        let (from, to) = (from.trim(), to.trim());
        if from.is_empty() {
            return Err(
                Diagnostic::error(format!("`{arg}` names no resource to swap"))
                    .help("write --swap FROM=TO, e.g. --swap postgres=sqlite"),
            );
        }
        if let Some(path) = [from, to]
            .into_iter()
            .find(|name| !name.is_empty() && !crate::config::is_plain_name(name))
        {
            return Err(
                Diagnostic::error(format!("`{path}` is not a resource name")).help(
                    "swaps name resources (directories under the resources directory), e.g. --swap postgres=sqlite",
                ),
            );
        }
        if edits.iter().any(|edit| edit.from() == from) {
            return Err(Diagnostic::error(format!("`{from}` is swapped twice"))
                .help("give one --swap per resource"));
        }
        edits.push(if to.is_empty() {
            SwapEdit::Remove {
                from: from.to_string(),
            }
        } else {
            SwapEdit::Set {
                from: from.to_string(),
                to: to.to_string(),
            }
        });
    }
    Ok(edits)
}

/// Profile names: a letter or digit, then letters, digits, `-`, `_` and `.` (the rule
/// [`BundleConfig::parse`] applies).
pub fn validate_name(name: &str) -> Result<(), Diagnostic> {
    if !crate::config::is_valid_name(name) {
        return Err(
            Diagnostic::error(format!("invalid profile name `{name}`")).help(
                "profile names start with a letter or digit and use letters, digits, `-`, `_` and `.`, e.g. picker-wheel-desktop",
            ),
        );
    }
    Ok(())
}

/// Appends `[profiles.NAME]` with `scenario` and `tier` (written as the tier's id).
pub fn create(source: &str, name: &str, scenario: &str, tier: Tier) -> Result<String, Diagnostic> {
    validate_name(name)?;
    if !crate::config::is_plain_name(scenario) {
        return Err(
            Diagnostic::error(format!("`{scenario}` is not a scenario name")).help(
                "a profile's scenario is the name of a directory under the scenarios directory, never a path",
            ),
        );
    }
    let config = parse(source)?;
    if let Some(existing) = config.profile(name) {
        return Err(config
            .diagnostic(
                format!("profile `{name}` already exists"),
                existing.name_span.clone(),
                "defined here",
            )
            .help(format!(
                "change it with `cargo xtask profile set {name} …`, or pick another name"
            )));
    }
    if scenario.trim().is_empty() {
        return Err(Diagnostic::error("--scenario is empty").help("name a scenario directory"));
    }
    let mut doc = document(source)?;
    let root = doc.as_table_mut();
    if !root.contains_key("profiles") {
        let mut profiles = Table::new();
        profiles.set_implicit(true);
        root.insert("profiles", Item::Table(profiles));
    }
    let mut table = Table::new();
    table.insert("scenario", toml_edit::value(scenario));
    table.insert("tier", toml_edit::value(tier.id()));
    match root.get_mut("profiles") {
        // `[profiles.x]` headers (the usual style), or `profiles.x.scenario = …` dotted keys.
        Some(Item::Table(profiles)) if !profiles.is_dotted() => {
            profiles.insert(name, Item::Table(table));
        }
        Some(Item::Table(profiles)) => {
            profiles.insert(
                name,
                Item::Value(Value::InlineTable(table.into_inline_table())),
            );
        }
        // `profiles = { x = { … } }`: stay in the file's style.
        Some(Item::Value(Value::InlineTable(profiles))) => {
            profiles.insert(name, Value::InlineTable(table.into_inline_table()));
        }
        _ => {
            return Err(Diagnostic::error(
                "`profiles` in bundle.toml is not a table",
            ));
        }
    }
    finish(doc)
}

/// Applies `--swap` edits to the profile's `swaps` (created as an inline table when absent).
pub fn set_swaps(source: &str, name: &str, edits: &[SwapEdit]) -> Result<String, Diagnostic> {
    let config = parse(source)?;
    let profile = find(&config, name)?;
    let mut doc = document(source)?;
    let table = profile_table(&mut doc, name)?;
    if table.get("swaps").is_none() {
        if edits
            .iter()
            .all(|edit| matches!(edit, SwapEdit::Remove { .. }))
        {
            let from = edits.first().map(SwapEdit::from).unwrap_or_default();
            return Err(no_swap(&config, profile, from));
        }
        table.insert("swaps", Item::Value(Value::InlineTable(InlineTable::new())));
    }
    let swaps = table
        .get_mut("swaps")
        .ok_or_else(|| Diagnostic::internal("swaps vanished"))?;
    for edit in edits {
        match (edit, &mut *swaps) {
            (SwapEdit::Set { from, to }, Item::Value(Value::InlineTable(inline))) => {
                inline_set(inline, from, to);
            }
            (SwapEdit::Remove { from }, Item::Value(Value::InlineTable(inline))) => {
                if !inline_remove(inline, from) {
                    return Err(no_swap(&config, profile, from));
                }
            }
            (SwapEdit::Set { from, to }, Item::Table(table)) => match table.get_mut(from) {
                Some(Item::Value(value)) if value.as_str() == Some(to.as_str()) => {}
                Some(Item::Value(value)) => replace_keeping_decor(value, to),
                _ => {
                    table.insert(from, toml_edit::value(to.as_str()));
                }
            },
            (SwapEdit::Remove { from }, Item::Table(table)) => {
                if table.remove(from).is_none() {
                    return Err(no_swap(&config, profile, from));
                }
            }
            _ => {
                return Err(config
                    .diagnostic(
                        format!("`swaps` of profile `{name}` is not a table"),
                        profile.span.clone(),
                        "this profile",
                    )
                    .help("write swaps = { postgres = \"sqlite\" }"));
            }
        }
    }
    // `swaps = {}` says nothing: drop an inline table the edits emptied.
    if matches!(swaps, Item::Value(Value::InlineTable(inline)) if inline.is_empty()) {
        table.remove("swaps");
    }
    finish(doc)
}

/// Adds each platform to the profile's `platforms` unless it is listed already (the text is
/// returned unchanged when every one is).
pub fn add_platforms(source: &str, name: &str, platforms: &[String]) -> Result<String, Diagnostic> {
    let config = parse(source)?;
    let profile = find(&config, name)?;
    let missing: Vec<&String> = platforms
        .iter()
        .filter(|p| !profile.decl.platforms.iter().any(|q| q.get_ref() == *p))
        .collect();
    if missing.is_empty() {
        return Ok(source.to_string());
    }
    let mut doc = document(source)?;
    let table = profile_table(&mut doc, name)?;
    match table.get_mut("platforms") {
        None => {
            let mut array = Array::new();
            for platform in &missing {
                array.push(platform.as_str());
            }
            table.insert("platforms", Item::Value(Value::Array(array)));
        }
        Some(Item::Value(Value::Array(array))) => {
            for platform in &missing {
                array_push(array, platform);
            }
        }
        Some(_) => {
            return Err(config
                .diagnostic(
                    format!("`platforms` of profile `{name}` is not a list"),
                    profile.span.clone(),
                    "this profile",
                )
                .help("write platforms = [\"linux-x64\"]"));
        }
    }
    finish(doc)
}

/// Validates a profile against the repository: its scenario exists and its swaps apply (the
/// same checks as `cargo xtask analyze SCENARIO --swap …`). Returns the analysis for its tier.
pub fn check(catalog: &Catalog, profile: &Profile) -> Result<Analysis, Diagnostic> {
    let tier = profile
        .decl
        .tier
        .get_ref()
        .parse::<Tier>()
        .map_err(Diagnostic::error)?;
    let request = Request {
        scenario: profile.decl.scenario.get_ref().clone(),
        swaps: profile
            .decl
            .swaps
            .iter()
            .map(|(from, to)| (from.get_ref().clone(), to.get_ref().clone()))
            .collect(),
        tier: Some(tier),
    };
    analysis::analyze(catalog, &request).map_err(|mut diagnostic| {
        diagnostic.message = format!("profile `{}`: {}", profile.name, diagnostic.message);
        diagnostic
    })
}

/// The profile `name`, or an error naming the closest existing one.
pub fn find<'a>(config: &'a BundleConfig, name: &str) -> Result<&'a Profile, Diagnostic> {
    config.profile(name).ok_or_else(|| {
        let names: Vec<&str> = config.profiles.iter().map(|p| p.name.as_str()).collect();
        let closest = crate::diagnostic::closest(name, names.iter().copied());
        let help = match closest {
            Some(close) => format!("did you mean `{close}`?"),
            None if names.is_empty() => {
                "bundle.toml has no profiles; add one with `cargo xtask profile create NAME --scenario S --tier T`"
                    .to_string()
            }
            None => format!("profiles in bundle.toml: {}", names.join(", ")),
        };
        Diagnostic::error(format!("unknown profile `{name}`")).help(help)
    })
}

fn parse(source: &str) -> Result<BundleConfig, Diagnostic> {
    BundleConfig::parse(source, Utf8Path::new(config::FILE_NAME))
}

fn document(source: &str) -> Result<DocumentMut, Diagnostic> {
    source.parse::<DocumentMut>().map_err(|err| {
        Diagnostic::error(format!("bundle.toml: {}", err.message().trim()))
            .help("fix the TOML syntax at the marked position (https://toml.io)")
    })
}

/// The new text, re-parsed: an edit that yields an invalid file is a bug, reported as such.
fn finish(doc: DocumentMut) -> Result<String, Diagnostic> {
    let text = doc.to_string();
    if let Err(err) = parse(&text) {
        return Err(Diagnostic::internal(format!(
            "editing bundle.toml produced an invalid file (nothing was written): {}",
            err.message
        )));
    }
    Ok(text)
}

fn profile_table<'a>(
    doc: &'a mut DocumentMut,
    name: &str,
) -> Result<&'a mut dyn TableLike, Diagnostic> {
    doc.get_mut("profiles")
        .and_then(Item::as_table_like_mut)
        .and_then(|profiles| profiles.get_mut(name))
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| Diagnostic::internal(format!("profile `{name}` is not a table")))
}

fn no_swap(config: &BundleConfig, profile: &Profile, from: &str) -> Diagnostic {
    let current: Vec<String> = profile
        .decl
        .swaps
        .iter()
        .map(|(from, to)| format!("{}={}", from.get_ref(), to.get_ref()))
        .collect();
    config
        .diagnostic(
            format!(
                "profile `{}` has no swap of `{from}` to remove",
                profile.name
            ),
            profile.name_span.clone(),
            "this profile",
        )
        .help(if current.is_empty() {
            "it has no swaps".to_string()
        } else {
            format!("its swaps: {}", current.join(", "))
        })
}

/// Replaces a value's content, keeping the whitespace and comments around it.
fn replace_keeping_decor(value: &mut Value, to: &str) {
    let decor = value.decor().clone();
    *value = Value::from(to);
    *value.decor_mut() = decor;
}

/// Sets `from = "to"` in an inline table; a new entry copies the last entry's spacing.
fn inline_set(table: &mut InlineTable, from: &str, to: &str) {
    if let Some(value) = table.get_mut(from) {
        if value.as_str() != Some(to) {
            replace_keeping_decor(value, to);
        }
        return;
    }
    let last = table.iter().last().map(|(key, _)| key.to_string());
    let Some(last) = last else {
        table.insert(from, Value::from(to));
        return;
    };
    let key_decor = table
        .key(&last)
        .map(|key| key.leaf_decor().clone())
        .unwrap_or_default();
    let first_suffix = table
        .iter()
        .next()
        .and_then(|(_, value)| value.decor().suffix().cloned());
    let len = table.len();
    let Some(last_value) = table.get_mut(&last) else {
        return;
    };
    // The last value's suffix is the space before `}`: it moves to the new last value.
    let value_decor = last_value.decor().clone();
    match first_suffix {
        Some(suffix) if len > 1 => last_value.decor_mut().set_suffix(suffix),
        _ => last_value.decor_mut().set_suffix(""),
    }
    let mut value = Value::from(to);
    *value.decor_mut() = value_decor;
    table.insert_formatted(&Key::new(from).with_leaf_decor(key_decor), value);
}

/// Removes `from` from an inline table; the new last entry inherits the spacing before `}`.
fn inline_remove(table: &mut InlineTable, from: &str) -> bool {
    let was_last = table.iter().last().map(|(key, _)| key.to_string()) == Some(from.to_string());
    let was_first = table.iter().next().map(|(key, _)| key.to_string()) == Some(from.to_string());
    let first_key_decor = table.key(from).map(|key| key.leaf_decor().clone());
    let Some(removed) = table.remove(from) else {
        return false;
    };
    if was_last && let Some((_, last)) = table.iter_mut().last() {
        let suffix = removed.decor().suffix().cloned().unwrap_or_default();
        last.decor_mut().set_suffix(suffix);
    }
    let first = table.iter().next().map(|(key, _)| key.to_string());
    if was_first
        && let Some(decor) = first_key_decor
        && let Some(first) = first
        && let Some(mut key) = table.key_mut(&first)
    {
        // `{ a = 1, b = 2 }` minus `a` is `{ b = 2 }`, not `{  b = 2 }`.
        *key.leaf_decor_mut() = decor;
    }
    true
}

/// Appends a string to an array, copying the last element's spacing (one per line stays one
/// per line).
fn array_push(array: &mut Array, item: &str) {
    let len = array.len();
    if len == 0 {
        array.push(item);
        return;
    }
    let first_suffix = array.get(0).and_then(|v| v.decor().suffix().cloned());
    let last = array.get_mut(len - 1).expect("len > 0");
    let decor = last.decor().clone();
    match first_suffix {
        Some(suffix) if len > 1 => last.decor_mut().set_suffix(suffix),
        _ => last.decor_mut().set_suffix(""),
    }
    let mut value = Value::from(item);
    *value.decor_mut() = decor;
    if len == 1
        && value
            .decor()
            .prefix()
            .is_none_or(|p| p.as_str() == Some(""))
    {
        // `["a"]`: the first element has no leading space; the second gets one.
        value.decor_mut().set_prefix(" ");
    }
    array.push_formatted(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = r#"# A comment at the top.

[workspace]
default-profile = "one"   # trailing comment

# Profiles.
[profiles.one]
scenario = "picker-wheel"
tier = "desktop"   # an alias
platforms = ["linux-x64", "win-x64"]
swaps = { postgres = "sqlite", redis = "in-process" }
min-fitness = 0.75

[profiles.one.secrets]
key = { class = "user_prompt" }

[profiles.two]
scenario = "notes-app"
tier = "tier-1-local"
platforms = [
    "linux-x64",
]

# Tasks follow.
[tasks.a]
run = "true"
"#;

    fn swaps(args: &[&str]) -> Vec<SwapEdit> {
        parse_swap_edits(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    /// `new` equals `old` with the lines `from` replaced.
    #[track_caller]
    fn assert_only_changed(old: &str, new: &str, from: &str, to: &str) {
        assert_eq!(new, old.replacen(from, to, 1), "\n--- got:\n{new}");
    }

    #[test]
    fn unedited_documents_round_trip() {
        let repository = include_str!("../../../bundle.toml");
        for source in [SOURCE, repository] {
            assert_eq!(document(source).unwrap().to_string(), source);
        }
    }

    #[test]
    fn set_swap_adds_to_the_inline_table() {
        let new = set_swaps(SOURCE, "one", &swaps(&["ollama=openrouter"])).unwrap();
        assert_only_changed(
            SOURCE,
            &new,
            r#"redis = "in-process" }"#,
            r#"redis = "in-process", ollama = "openrouter" }"#,
        );
    }

    #[test]
    fn set_swap_replaces_in_place() {
        let new = set_swaps(SOURCE, "one", &swaps(&["postgres=local-index"])).unwrap();
        assert_only_changed(
            SOURCE,
            &new,
            r#"postgres = "sqlite""#,
            r#"postgres = "local-index""#,
        );
    }

    #[test]
    fn set_swap_removes_and_drops_an_empty_table() {
        let new = set_swaps(SOURCE, "one", &swaps(&["redis="])).unwrap();
        assert_only_changed(
            SOURCE,
            &new,
            r#"{ postgres = "sqlite", redis = "in-process" }"#,
            r#"{ postgres = "sqlite" }"#,
        );
        let new = set_swaps(SOURCE, "one", &swaps(&["postgres="])).unwrap();
        assert_only_changed(
            SOURCE,
            &new,
            r#"{ postgres = "sqlite", redis = "in-process" }"#,
            r#"{ redis = "in-process" }"#,
        );
        let new = set_swaps(SOURCE, "one", &swaps(&["postgres=", "redis="])).unwrap();
        assert_only_changed(
            SOURCE,
            &new,
            "swaps = { postgres = \"sqlite\", redis = \"in-process\" }\n",
            "",
        );
    }

    #[test]
    fn set_swap_creates_the_table() {
        let new = set_swaps(SOURCE, "two", &swaps(&["postgres=sqlite"])).unwrap();
        assert_only_changed(
            SOURCE,
            &new,
            "    \"linux-x64\",\n]\n",
            "    \"linux-x64\",\n]\nswaps = { postgres = \"sqlite\" }\n",
        );
    }

    #[test]
    fn removing_a_swap_that_is_not_there_is_an_error() {
        let err = set_swaps(SOURCE, "one", &swaps(&["ollama="])).unwrap_err();
        assert!(
            err.message.contains("no swap of `ollama`"),
            "{}",
            err.message
        );
        let err = set_swaps(SOURCE, "two", &swaps(&["ollama="])).unwrap_err();
        assert!(
            err.message.contains("no swap of `ollama`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn swap_arguments() {
        assert_eq!(
            swaps(&["a=b", "c="]),
            [
                SwapEdit::Set {
                    from: "a".into(),
                    to: "b".into()
                },
                SwapEdit::Remove { from: "c".into() }
            ]
        );
        for bad in [&["a"][..], &["=b"], &["a=b", "a=c"]] {
            let args: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
            assert!(parse_swap_edits(&args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn add_platform_keeps_the_array_style() {
        let new = add_platforms(SOURCE, "one", &["darwin-arm64".into()]).unwrap();
        assert_only_changed(
            SOURCE,
            &new,
            r#"["linux-x64", "win-x64"]"#,
            r#"["linux-x64", "win-x64", "darwin-arm64"]"#,
        );
        let new = add_platforms(SOURCE, "two", &["win-x64".into()]).unwrap();
        assert_only_changed(
            SOURCE,
            &new,
            "    \"linux-x64\",\n]",
            "    \"linux-x64\",\n    \"win-x64\",\n]",
        );
        let unchanged = add_platforms(SOURCE, "one", &["win-x64".into()]).unwrap();
        assert_eq!(unchanged, SOURCE);
    }

    #[test]
    fn add_platform_to_a_single_element_and_to_no_list() {
        let source = "[profiles.p]\nscenario = \"s\"\ntier = \"1\"\nplatforms = [\"a\"]\n";
        let new = add_platforms(source, "p", &["b".into()]).unwrap();
        assert_only_changed(source, &new, r#"["a"]"#, r#"["a", "b"]"#);
        let source = "[profiles.p]\nscenario = \"s\"\ntier = \"1\"\n";
        let new = add_platforms(source, "p", &["b".into()]).unwrap();
        assert_eq!(new, format!("{source}platforms = [\"b\"]\n"));
    }

    #[test]
    fn create_goes_after_the_last_profile() {
        let new = create(SOURCE, "three", "auth-service", Tier::Desktop).unwrap();
        assert_only_changed(
            SOURCE,
            &new,
            "\n\n# Tasks follow.",
            "\n\n[profiles.three]\nscenario = \"auth-service\"\ntier = \"tier-2-desktop\"\n\n# Tasks follow.",
        );
    }

    #[test]
    fn create_in_a_file_without_profiles_appends() {
        let source = "# top\n[tasks.a]\nrun = \"true\"\n";
        let new = create(source, "p", "s", Tier::Saas).unwrap();
        assert_eq!(
            new,
            format!("{source}\n[profiles.p]\nscenario = \"s\"\ntier = \"tier-4-saas\"\n")
        );
    }

    #[test]
    fn create_errors() {
        let err = create(SOURCE, "one", "picker-wheel", Tier::Desktop).unwrap_err();
        assert!(err.message.contains("already exists"), "{}", err.message);
        assert_eq!(err.line_col(), Some((7, 11)));
        let err = create(SOURCE, "bad name", "picker-wheel", Tier::Desktop).unwrap_err();
        assert!(
            err.message.contains("invalid profile name"),
            "{}",
            err.message
        );
    }

    #[test]
    fn unknown_profile_suggests_the_closest() {
        let err = set_swaps(SOURCE, "ones", &swaps(&["a=b"])).unwrap_err();
        assert_eq!(err.help.as_deref(), Some("did you mean `one`?"));
    }
}
