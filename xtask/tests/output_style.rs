//! The human output's style through the real binary (issue 11 items 7 and 8): every command
//! speaks in cargo-style status lines (a verb right-aligned in 12 columns), counts have the
//! right singular or plural word (never `(s)`), `analyze` and `fitness` name the swaps they
//! applied, scores and impacts share one scale (0.00 to 1.00, as `min-fitness`), `secrets`
//! counts its secrets by where their class comes from, an error about several secrets names
//! every one, and `bundle` ends by saying where it put the manifest, each stage and each
//! package (relative to the current directory when that is shorter).
//!
//! Every run has `NO_COLOR` set (see `common::Repo::command`), so status lines are plain text.
//! The bundle fixture needs no toolchain: its runtimes and API binaries are stand-in scripts
//! fetched from `file://` URLs outside the checkout; darwin-arm64 has none, so it is reported
//! as not staged.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{Canary, Repo, copy_tree};
use serde_json::Value;

/// A copy of this repository's definitions and bundle.toml.
fn demo() -> Repo {
    let repo = Repo::in_sandbox("", &[]);
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in ["scenarios", "resources", "platforms"] {
        copy_tree(&source.join(dir), &repo.join(dir));
    }
    repo.write(
        "bundle.toml",
        std::fs::read_to_string(source.join("bundle.toml")).unwrap(),
    );
    repo
}

/// The verb of a cargo-style status line (`    Finished x` → `Finished`): a capitalized word
/// (or two, `Not staged`) ending in column 12, then a space and the message.
fn status_verb(line: &str) -> Option<&str> {
    if line.len() < 13 || !line.is_char_boundary(12) || line.as_bytes()[12] != b' ' {
        return None;
    }
    let verb = line[..12].trim_start();
    let capitalized = verb.chars().next().is_some_and(|c| c.is_ascii_uppercase());
    (capitalized && verb.chars().all(|c| c.is_ascii_alphabetic() || c == ' ')).then_some(verb)
}

/// No count written as `word(s)`, in either stream.
#[track_caller]
fn assert_no_parenthesized_plurals(run: &common::Run) {
    for text in [&run.stdout, &run.stderr] {
        assert!(!text.contains("(s)"), "a count written as (s)\n{run}");
    }
}

/// A repository with three declared tasks (each writes one small file).
fn tasks_repo() -> Repo {
    Repo::in_sandbox(
        r#"
[tasks.a]
run = "mkdir -p out && echo a > out/a.txt"
outputs = ["out/a.txt"]

[tasks.b]
run = "mkdir -p out && echo b > out/b.txt"
outputs = ["out/b.txt"]

[tasks.c]
run = "mkdir -p out && echo c > out/c.txt"
outputs = ["out/c.txt"]
"#,
        &[],
    )
}

/// `cache stats`, `verify`, `gc` and `clean` print status lines (not lowercase plain text),
/// with sizes in units and counts with their words.
#[test]
fn cache_commands_print_status_lines() {
    let repo = tasks_repo();
    let canary = Canary::plant(&repo.sandbox().join("canary"), &[]);
    repo.human(&["task"]).assert_code(0);
    for (args, verb) in [
        (&["cache", "stats"][..], "Cache"),
        (&["cache", "verify"][..], "Verified"),
        (&["cache", "gc", "--max-size", "1G"][..], "Removed"),
        (&["cache", "clean"][..], "Removed"),
    ] {
        let run = repo.human(args);
        run.assert_code(0);
        let lines: Vec<&str> = run
            .stdout
            .lines()
            .chain(run.stderr.lines())
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert!(!lines.is_empty(), "{args:?} printed nothing\n{run}");
        for line in &lines {
            assert!(
                status_verb(line).is_some(),
                "{args:?}: not a status line: {line:?}\n{run}"
            );
        }
        assert!(
            lines.iter().any(|l| status_verb(l) == Some(verb)),
            "{args:?}: no {verb} line\n{run}"
        );
        assert_no_parenthesized_plurals(&run);
    }
    // What the commands counted, in words and units: 3 results, 3 blobs of 2 bytes each.
    let stats = repo.human(&["cache", "stats"]);
    assert!(
        stats
            .stdout
            .contains("0 action results (0 B) and 0 blobs (0 B)"),
        "after clean\n{stats}"
    );
    repo.human(&["task"]).assert_code(0);
    let stats = repo.human(&["cache", "stats"]);
    assert!(
        stats.stdout.contains("3 action results (") && stats.stdout.contains("3 blobs (6 B)"),
        "{stats}"
    );
    let verify = repo.human(&["cache", "verify"]);
    assert!(
        verify
            .stdout
            .contains("3 action results and 3 blobs: 0 problems"),
        "{verify}"
    );
    canary.assert_intact("after the cache commands");
}

/// Every query and the checks speak in status lines: the header of a table is one, and no
/// count anywhere is written `(s)`.
#[test]
fn every_command_starts_with_a_status_line() {
    let repo = demo();
    let canary = Canary::plant(&repo.sandbox().join("canary"), &[]);
    for (args, verb, stream_is_stdout) in [
        (&["analyze", "notes-app"][..], "Analyzed", true),
        (&["fitness", "notes-app"][..], "Fitness", true),
        (&["secrets", "picker-wheel"][..], "Classified", true),
        (
            &[
                "secrets",
                "notes-app",
                "--bundle",
                "--swap",
                "postgres=sqlite",
                "--swap",
                "redis=in-process",
                "--swap",
                "qdrant=local-index",
                "--swap",
                "ollama=openrouter",
            ][..],
            "Planned",
            true,
        ),
        (
            &[
                "secrets",
                "classify",
                "postgres",
                "postgres_password",
                "--tier",
                "desktop",
            ][..],
            "Classified",
            true,
        ),
        (&["check"][..], "Checked", false),
        (&["task", "--dry-run"][..], "", true),
    ] {
        let run = repo.human(args);
        run.assert_code(0);
        assert_no_parenthesized_plurals(&run);
        if verb.is_empty() {
            continue;
        }
        let first = if stream_is_stdout {
            run.stdout.lines().next()
        } else {
            run.stderr.lines().next()
        }
        .unwrap_or_else(|| panic!("{args:?} printed nothing\n{run}"));
        assert_eq!(status_verb(first), Some(verb), "{args:?}\n{run}");
    }
    let check = repo.human(&["check"]);
    let finished = check
        .stderr
        .lines()
        .find(|l| status_verb(l) == Some("Finished"))
        .unwrap_or_else(|| panic!("{check}"));
    assert!(
        finished.contains(" tasks and 2 profiles are valid in ")
            && (finished.ends_with(" ms") || finished.ends_with(" s")),
        "{check}"
    );
    canary.assert_intact("after the queries");
}

/// `fitness` (and `analyze`) say which swaps the scores were computed with.
#[test]
fn fitness_shows_the_swaps_it_applied() {
    let repo = demo();
    let swapped = repo.human(&[
        "fitness",
        "notes-app",
        "--swap",
        "postgres=sqlite",
        "--swap",
        "redis=in-process",
    ]);
    swapped.assert_code(0);
    let header = swapped.stdout.lines().next().unwrap_or_default();
    assert!(
        header.contains("swaps applied: postgres=sqlite, redis=in-process"),
        "{swapped}"
    );
    let plain = repo.human(&["fitness", "notes-app", "--tier", "desktop"]);
    plain.assert_code(0);
    assert!(
        plain
            .stdout
            .lines()
            .next()
            .unwrap_or_default()
            .contains("no swaps applied"),
        "{plain}"
    );
    let analyzed = repo.human(&["analyze", "notes-app", "--swap", "postgres=sqlite"]);
    analyzed.assert_code(0);
    assert!(
        analyzed.stdout.contains("swaps applied: postgres=sqlite"),
        "{analyzed}"
    );
}

/// Scores, blockers and swap impacts print on one scale (0.00 to 1.00), which the output
/// names; the JSON keeps the seed's contract (`impact` `"+N"` in points).
#[test]
fn scores_and_impacts_use_one_scale() {
    let repo = demo();
    let human = repo.human(&["analyze", "notes-app"]);
    human.assert_code(0);
    assert!(human.stdout.contains("fitness 0.00-1.00"), "{human}");
    let json = repo.json(&["analyze", "notes-app"]);
    json.assert_code(0);
    let analysis = &json.events("analysis")[0]["analysis"];
    let on_scale = |text: &str| {
        let digits = text.trim_start_matches(['+', '-']);
        digits.len() == 4 && digits.as_bytes()[1] == b'.' && text.parse::<f64>().is_ok()
    };
    // Tier lines: `    tier-2-desktop     0.61  limited  blockers: ollama (0.50), …`.
    let mut tiers = 0;
    for line in human.stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first().is_some_and(|w| w.starts_with("tier-")) && words.len() >= 3 {
            tiers += 1;
            let tier = words[0];
            assert!(on_scale(words[1]), "{line}");
            let score = analysis["fitness"][tier].as_f64().unwrap();
            assert_eq!(words[1], format!("{score:.2}"), "{line}");
            if let Some((_, blockers)) = line.split_once("blockers: ") {
                for blocker in blockers.split(", ") {
                    let value = blocker
                        .split_once(" (")
                        .map(|(_, v)| v.trim_end_matches(')'))
                        .unwrap();
                    assert!(value == "unsupported" || on_scale(value), "{line}");
                }
            }
        }
    }
    assert_eq!(tiers, 5, "{human}");
    // Swap lines: `    ollama -> openrouter  +0.10 (-4032 MB RAM, …)`, the JSON's points / 100.
    let swaps = analysis["swaps"].as_array().unwrap();
    assert!(!swaps.is_empty(), "{json}");
    for swap in swaps {
        let points = swap["impact_points"].as_i64().unwrap();
        assert_eq!(
            swap["impact"],
            Value::from(format!("+{points}")),
            "the contract"
        );
        let needle = format!(
            "{} -> {}  +{}.{:02} (",
            swap["from"].as_str().unwrap(),
            swap["to"].as_str().unwrap(),
            points / 100,
            points % 100
        );
        assert!(human.stdout.contains(&needle), "no {needle:?}\n{human}");
    }
}

/// `secrets` counts its secrets by where their class comes from, with the right words.
#[test]
fn secret_counts_say_how_each_class_was_set() {
    let repo = demo();
    let run = repo.human(&["secrets", "picker-wheel"]);
    run.assert_code(0);
    let header = run.stdout.lines().next().unwrap_or_default();
    assert!(
        header.ends_with("picker-wheel on tier-2-desktop: 4 declared and 1 inferred secrets"),
        "{run}"
    );
    let rows = run.stdout.lines().skip(1).count();
    assert_eq!(rows, 5, "{run}");
    let inferred = run
        .stdout
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(2) == Some("inferred"))
        .count();
    assert_eq!(inferred, 1, "{run}");
    let one = repo.human(&[
        "secrets",
        "notes-app",
        "--bundle",
        "--swap",
        "postgres=sqlite",
        "--swap",
        "redis=in-process",
        "--swap",
        "qdrant=local-index",
        "--swap",
        "ollama=openrouter",
    ]);
    one.assert_code(0);
    assert!(
        one.stdout
            .lines()
            .next()
            .unwrap_or_default()
            .ends_with("notes-app on tier-2-desktop: 1 secret ships, 4 excluded"),
        "{one}"
    );
}

/// An error about several infrastructure secrets names every one of them, from `secrets
/// --bundle` and from a profile (`check`), never "and N more".
#[test]
fn an_error_about_several_secrets_names_them_all() {
    let repo = demo();
    let canary = Canary::plant(&repo.sandbox().join("canary"), &[]);
    let run = repo.human(&["secrets", "picker-wheel", "--bundle"]);
    assert_ne!(run.code, 0, "{run}");
    for secret in ["postgres_password", "postgres_user", "redis_password"] {
        assert!(
            run.stderr.contains(&format!("`{secret}`")),
            "{secret}\n{run}"
        );
    }
    assert!(run.stderr.contains("3 infrastructure secrets"), "{run}");
    assert!(!run.stderr.contains("more such"), "{run}");
    // The profile's swaps gone (and its threshold, so the secrets are what fails).
    let toml = repo.read("bundle.toml");
    let edited = toml.replacen(
        "swaps = { postgres = \"sqlite\", redis = \"in-process\" }\nmin-fitness = 0.75\n",
        "",
        1,
    );
    assert_ne!(edited, toml, "the demo's picker-wheel profile changed");
    repo.write("bundle.toml", &edited);
    let before = repo.snapshot();
    let check = repo.human(&["check"]);
    check.assert_code(2);
    for secret in ["postgres_password", "postgres_user", "redis_password"] {
        assert!(
            check.stderr.contains(&format!("`{secret}`")),
            "{secret}\n{check}"
        );
    }
    assert!(!check.stderr.contains("more such"), "{check}");
    common::assert_same_tree(&repo.snapshot(), &before, "check writes nothing");
    canary.assert_intact("after the failing checks");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The bundle fixture: linux-x64 and win-x64 stage from stand-in binaries in `<tmp>/bin`,
/// darwin-arm64 has no runtime and cannot be staged here.
fn bundle_repo() -> (Repo, Canary) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../platforms");
    let mut files = vec![
        (
            "scenarios/app/.vrooli/service.json".to_string(),
            r#"{
  "service": {"name": "app", "version": "1.2.3", "type": "scenario"},
  "ports": {"api": {"env_var": "API_PORT", "range": "15000-19999"}, "ui": {"env_var": "UI_PORT", "range": "35000-39999"}}
}"#
            .to_string(),
        ),
        (
            "scenarios/app/ui/index.html".to_string(),
            "<h1>app</h1>\n".to_string(),
        ),
    ];
    for platform in ["linux-x64", "win-x64", "darwin-arm64"] {
        files.push((
            format!("platforms/{platform}.toml"),
            std::fs::read_to_string(source.join(format!("{platform}.toml"))).unwrap(),
        ));
    }
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let repo = Repo::in_sandbox("", &borrowed);
    let bin = repo.sandbox().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let mut toml = String::from(
        "[workspace]\ndefault-profile = \"app-desktop\"\n\n[profiles.app-desktop]\nscenario = \"app\"\ntier = \"desktop\"\nplatforms = [\"linux-x64\", \"win-x64\", \"darwin-arm64\"]\nformats = [\"tar.gz\"]\n\n[profiles.app-desktop.builds.app-api]\ntype = \"none\"\n",
    );
    for platform in ["linux-x64", "win-x64"] {
        let exe = if platform.starts_with("win") {
            ".exe"
        } else {
            ""
        };
        for kind in ["runtime", "api"] {
            let path = bin.join(format!("{kind}-{platform}"));
            let contents = format!("#!/bin/sh\necho {kind} {platform}\n");
            std::fs::write(&path, &contents).unwrap();
            let (url, sha) = (
                format!("file://{}", path.display()),
                sha256_hex(contents.as_bytes()),
            );
            if kind == "runtime" {
                toml.push_str(&format!(
                    "\n[runtime.{platform}]\nurl = \"{url}\"\nsha256 = \"{sha}\"\n"
                ));
            } else {
                toml.push_str(&format!(
                    "\n[[assets]]\nid = \"api-{platform}\"\nurl = \"{url}\"\nsha256 = \"{sha}\"\nplatforms = [\"{platform}\"]\ndest = \"bin/app-api/{platform}/app-api{exe}\"\n"
                ));
            }
        }
    }
    repo.write("bundle.toml", &toml);
    let canary = Canary::plant(&repo.sandbox().join("canary"), &[]);
    (repo, canary)
}

/// The message of the status line with `verb` whose message starts with `start`.
fn status_line<'a>(text: &'a str, verb: &str, start: &str) -> Option<&'a str> {
    text.lines()
        .filter(|l| status_verb(l) == Some(verb))
        .map(|l| &l[13..])
        .find(|message| message.starts_with(start))
}

/// `bundle` ends with where it put bundle.json, each stage and each package, and which
/// platforms it could not stage; `--platform` reports only that platform; from a
/// subdirectory, the paths are relative to it.
#[test]
fn bundle_ends_with_where_it_put_everything() {
    let (repo, canary) = bundle_repo();
    let run = repo.human(&["bundle"]);
    run.assert_code(0);
    assert_no_parenthesized_plurals(&run);
    let manifest = status_line(&run.stderr, "Assembled", "")
        .unwrap_or_else(|| panic!("no Assembled line\n{run}"));
    assert_eq!(manifest, "dist/app-desktop/bundle.json", "{run}");
    assert!(repo.exists(manifest), "{manifest} exists");
    for platform in ["linux-x64", "win-x64"] {
        let line = status_line(&run.stderr, "Staged", &format!("{platform} in "))
            .unwrap_or_else(|| panic!("no Staged line for {platform}\n{run}"));
        let dir = format!("dist/app-desktop/stage/{platform}/");
        assert_eq!(line, format!("{platform} in {dir}"), "{run}");
        assert!(repo.join(&dir).is_dir(), "{dir} is a directory\n{run}");
        let package = format!("dist/app-desktop/packages/app-desktop-{platform}.tar.gz");
        assert!(
            run.stderr.lines().any(|l| l.ends_with(&package)),
            "no row for {package}\n{run}"
        );
        assert!(repo.exists(&package), "{package}");
    }
    assert!(
        status_line(&run.stderr, "Skipped", "darwin-arm64: not staged here").is_some(),
        "{run}"
    );
    assert!(
        status_line(&run.stderr, "Packaged", "2 artifacts of app-desktop").is_some(),
        "{run}"
    );

    let one = repo.human(&["bundle", "--platform", "win-x64"]);
    one.assert_code(0);
    assert!(status_line(&one.stderr, "Assembled", "").is_some(), "{one}");
    assert!(
        status_line(
            &one.stderr,
            "Staged",
            "win-x64 in dist/app-desktop/stage/win-x64/"
        )
        .is_some(),
        "{one}"
    );
    assert!(
        status_line(&one.stderr, "Staged", "linux-x64").is_none(),
        "only the selected platform\n{one}"
    );

    // From a subdirectory the paths are relative to it (shorter than absolute ones).
    let below = Command::new(common::BIN)
        .current_dir(repo.join("scenarios"))
        .args(["--root", repo.path().to_str().unwrap(), "bundle"])
        .env("NO_COLOR", "1")
        .env_remove("XBUNDLE_CACHE_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8(below.stderr).unwrap();
    assert!(below.status.success(), "{stderr}");
    assert_eq!(
        status_line(&stderr, "Assembled", ""),
        Some("../dist/app-desktop/bundle.json"),
        "{stderr}"
    );
    assert!(
        status_line(
            &stderr,
            "Staged",
            "linux-x64 in ../dist/app-desktop/stage/linux-x64/"
        )
        .is_some(),
        "{stderr}"
    );
    canary.assert_intact("after the bundles");
}
