//! Releases through the real binary: `publish:<profile>` (a `SHA256SUMS` that `sha256sum -c`
//! accepts, electron-updater's `latest*.yml` parsed as YAML and checked against digests and
//! sizes recomputed here, `release.json`), the table `bundle` ends with, signing hooks (applied
//! before checksums and manifests; a failing signer publishes nothing, caches nothing and keeps
//! the last artifact; keys only from the environment and never shown), and reproducibility
//! (two checkout paths give the same bytes; the epoch is the last commit's time, read with one
//! `git` per commit; `SOURCE_DATE_EPOCH` overrides it; a bad one is refused).
//!
//! The fixture needs no toolchain: every platform's runtime and API binary are stand-ins
//! fetched from `file://` URLs outside the checkouts, so all five platforms stage here and two
//! checkouts share one bundle.toml. Tests that run `git` need it (Debian: git).

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use common::{Canary, Repo, Run};
use serde_json::Value;
use sha2::Digest as _;
use yaml_rust2::{Yaml, YamlLoader};

const PLATFORMS: [&str; 5] = [
    "linux-x64",
    "linux-arm64",
    "darwin-x64",
    "darwin-arm64",
    "win-x64",
];
const PACKAGES: &str = "dist/app-desktop/packages";
/// The formats every test packages: the portable archives everywhere, deb and rpm on Linux
/// (written natively on any host, so no test depends on an installed packaging tool; while
/// a format is not written yet, `check` warns and nothing is planned for it).
const FORMATS: &str = "\"tar.gz\", \"zip\", \"deb\", \"rpm\"";
const PUBLISH: &str = "publish:app-desktop";

/// Appends a marker: what a real signer does to the bytes (they change after packaging).
const SIGN_TAR_GZ: &str =
    "\"tar.gz\" = '''sh -c 'cat \"$0\" > \"$1\" && printf SIGNED >> \"$1\"' {in} {out}'''\n";
const SIGN_ZIP: &str =
    "zip = '''sh -c 'cat \"$0\" > \"$1\" && printf SIGNED >> \"$1\"' {in} {out}'''\n";

/// The platforms' runtimes and API binaries: small scripts in a directory of their own, outside
/// every checkout.
struct Binaries {
    dir: tempfile::TempDir,
}

impl Binaries {
    fn new() -> Binaries {
        let dir = tempfile::Builder::new()
            .prefix("xbundle-binaries-")
            .tempdir()
            .expect("a temporary directory");
        for platform in PLATFORMS {
            for kind in ["runtime", "api"] {
                std::fs::write(
                    dir.path().join(format!("{kind}-{platform}")),
                    format!("#!/bin/sh\necho {kind} {platform}\n"),
                )
                .unwrap();
            }
        }
        Binaries { dir }
    }

    /// `[runtime.<platform>]` and one `[[assets]]` API binary per platform.
    fn toml(&self) -> String {
        let mut text = String::new();
        for platform in PLATFORMS {
            let exe = if platform.starts_with("win") {
                ".exe"
            } else {
                ""
            };
            let file = |kind: &str| {
                let path = self.dir.path().join(format!("{kind}-{platform}"));
                let sha = sha256_hex(&std::fs::read(&path).unwrap());
                (format!("file://{}", path.display()), sha)
            };
            let (url, sha) = file("runtime");
            text.push_str(&format!(
                "\n[runtime.{platform}]\nurl = \"{url}\"\nsha256 = \"{sha}\"\n"
            ));
            let (url, sha) = file("api");
            text.push_str(&format!(
                "\n[[assets]]\nid = \"api-{platform}\"\nurl = \"{url}\"\nsha256 = \"{sha}\"\nplatforms = [\"{platform}\"]\ndest = \"bin/app-api/{platform}/app-api{exe}\"\n"
            ));
        }
        text
    }
}

/// bundle.toml of the fixture, with `sign` (lines of a `[sign]` table) when given.
fn bundle_toml(binaries: &Binaries, sign: &[&str]) -> String {
    let list: Vec<String> = PLATFORMS.iter().map(|p| format!("\"{p}\"")).collect();
    let mut text = format!(
        "[workspace]\ndefault-profile = \"app-desktop\"\n\n[profiles.app-desktop]\nscenario = \"app\"\ntier = \"desktop\"\nplatforms = [{}]\nformats = [{FORMATS}]\n\n[profiles.app-desktop.builds.app-api]\ntype = \"none\"\n",
        list.join(", ")
    );
    if !sign.is_empty() {
        text.push_str("\n[sign]\n");
        for line in sign {
            text.push_str(line);
        }
    }
    text.push_str(&binaries.toml());
    text
}

const SERVICE: &str = r#"{
  "service": {"name": "app", "version": "1.2.3", "type": "scenario"},
  "ports": {"api": {"env_var": "API_PORT", "range": "15000-19999"}, "ui": {"env_var": "UI_PORT", "range": "35000-39999"}}
}"#;

/// The fixture's files besides bundle.toml.
fn files() -> Vec<(String, String)> {
    let mut files = vec![
        (
            "scenarios/app/.vrooli/service.json".to_string(),
            SERVICE.to_string(),
        ),
        (
            "scenarios/app/ui/index.html".to_string(),
            "<h1>app</h1>\n".to_string(),
        ),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../platforms");
    for platform in PLATFORMS {
        files.push((
            format!("platforms/{platform}.toml"),
            std::fs::read_to_string(dir.join(format!("{platform}.toml"))).unwrap(),
        ));
    }
    files
}

/// The fixture at `<tmp>/repo`, with a canary tree at `<tmp>/canary`.
fn release(binaries: &Binaries, sign: &[&str]) -> (Repo, Canary) {
    let files = files();
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let repo = Repo::in_sandbox(&bundle_toml(binaries, sign), &borrowed);
    let canary = Canary::plant(&repo.sandbox().join("canary"), &[]);
    (repo, canary)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&sha2::Sha256::digest(bytes))
}

fn sha512_hex(bytes: &[u8]) -> String {
    hex(&sha2::Sha512::digest(bytes))
}

fn sha512_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The artifacts in `packages/` (file names, sorted): everything but the release's own files.
fn artifacts(repo: &Repo) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo.join(PACKAGES))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "SHA256SUMS" && !n.ends_with(".yml") && !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// `(platform, format)` of an artifact name `app-desktop-<platform>.<format>`.
fn split_name(name: &str) -> (String, String) {
    let rest = name
        .strip_prefix("app-desktop-")
        .expect("the profile's prefix");
    let platform = PLATFORMS
        .iter()
        .find(|p| rest.starts_with(&format!("{p}.")))
        .unwrap_or_else(|| panic!("no platform in {name}"));
    (platform.to_string(), rest[platform.len() + 1..].to_string())
}

/// The manifest electron-updater reads an artifact from, as this test understands its sources
/// (MacUpdater: zip; DebUpdater/RpmUpdater: deb/rpm, per arch; NsisUpdater: an NSIS exe).
fn expected_manifest(platform: &str, format: &str) -> Option<&'static str> {
    match (platform, format) {
        ("darwin-x64" | "darwin-arm64", "zip") => Some("latest-mac.yml"),
        ("linux-x64", "deb" | "rpm") => Some("latest-linux.yml"),
        ("linux-arm64", "deb" | "rpm") => Some("latest-linux-arm64.yml"),
        _ => None,
    }
}

fn parse_yaml(text: &str) -> Yaml {
    let mut docs = YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(docs.len(), 1, "{text}");
    docs.remove(0)
}

/// Checks the whole release against the artifacts on disk: SHA256SUMS (with `sha256sum -c`),
/// every update manifest (parsed as YAML; digests and sizes recomputed; exactly the expected
/// files, in electron-builder's order) and release.json. Returns the artifacts' names.
#[track_caller]
fn check_release(repo: &Repo, epoch: u64, release_date: &str, signed: &[&str]) -> Vec<String> {
    let names = artifacts(repo);
    for expected in [
        "app-desktop-darwin-arm64.zip",
        "app-desktop-darwin-x64.zip",
        "app-desktop-linux-arm64.tar.gz",
        "app-desktop-linux-x64.tar.gz",
        "app-desktop-win-x64.zip",
    ] {
        assert!(names.contains(&expected.to_string()), "{names:?}");
    }
    let bytes = |name: &str| repo.read_bytes(&format!("{PACKAGES}/{name}"));
    // SHA256SUMS: what sha256sum writes, sorted, and what `sha256sum -c` accepts.
    let sums = repo.read(&format!("{PACKAGES}/SHA256SUMS"));
    let expected: String = names
        .iter()
        .map(|n| format!("{}  {n}\n", sha256_hex(&bytes(n))))
        .collect();
    assert_eq!(sums, expected);
    let check = Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(repo.join(PACKAGES))
        .output()
        .expect("run sha256sum");
    assert!(check.status.success(), "{check:?}");
    let said = String::from_utf8(check.stdout).unwrap();
    assert_eq!(said.lines().count(), names.len(), "{said}");
    assert!(said.lines().all(|l| l.ends_with(": OK")), "{said}");
    // The update manifests: exactly the expected ones, each listing exactly its files.
    let mut wanted: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for name in &names {
        let (platform, format) = split_name(name);
        if let Some(manifest) = expected_manifest(&platform, &format) {
            wanted.entry(manifest).or_default().push(name.clone());
        }
    }
    let mut written: Vec<String> = std::fs::read_dir(repo.join(PACKAGES))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yml"))
        .collect();
    written.sort();
    assert_eq!(
        written,
        wanted.keys().map(|k| k.to_string()).collect::<Vec<_>>(),
        "MSI, PKG, tar.gz and Windows zips are in no manifest"
    );
    assert_eq!(
        wanted["latest-mac.yml"],
        ["app-desktop-darwin-arm64.zip", "app-desktop-darwin-x64.zip"]
    );
    for (manifest, listed) in &wanted {
        let yaml = parse_yaml(&repo.read(&format!("{PACKAGES}/{manifest}")));
        assert_eq!(yaml["version"].as_str(), Some("1.2.3"), "{manifest}");
        assert_eq!(
            yaml["releaseDate"].as_str(),
            Some(release_date),
            "{manifest}"
        );
        let files = yaml["files"].as_vec().expect("files[]");
        let mut urls: Vec<String> = Vec::new();
        for file in files {
            let url = file["url"].as_str().expect("url");
            let content = bytes(url);
            assert_eq!(
                file["sha512"].as_str(),
                Some(sha512_base64(&content).as_str()),
                "{manifest}: {url}"
            );
            assert_eq!(
                file["size"].as_i64(),
                Some(content.len() as i64),
                "{manifest}: {url}"
            );
            urls.push(url.to_string());
        }
        let mut sorted = urls.clone();
        sorted.sort();
        assert_eq!(&sorted, listed, "{manifest}");
        // x64 before arm64, as electron-builder orders them; path/sha512: the first file's.
        if *manifest == "latest-mac.yml" {
            assert_eq!(urls[0], "app-desktop-darwin-x64.zip");
        }
        assert_eq!(yaml["path"].as_str(), Some(urls[0].as_str()));
        assert_eq!(yaml["sha512"], files[0]["sha512"]);
    }
    // release.json: every artifact with its digests, the checksums file, the manifests.
    let release: Value = serde_json::from_slice(&repo.read_bytes("dist/app-desktop/release.json"))
        .expect("release.json is JSON");
    assert_eq!(release["schema"], "xbundle-release-v1");
    assert_eq!(release["profile"], "app-desktop");
    assert_eq!(release["version"], "1.2.3");
    assert_eq!(release["epoch"], epoch);
    assert_eq!(release["release_date"], release_date);
    let listed = release["artifacts"].as_array().expect("artifacts[]");
    assert_eq!(listed.len(), names.len(), "{release}");
    for (entry, name) in listed.iter().zip(&names) {
        let content = bytes(name);
        let (platform, format) = split_name(name);
        assert_eq!(entry["file"], format!("packages/{name}"));
        assert_eq!(entry["platform"], platform.as_str());
        assert_eq!(entry["format"], format.as_str());
        assert_eq!(entry["size"], content.len());
        assert_eq!(entry["sha256"], sha256_hex(&content));
        assert_eq!(entry["sha512"], sha512_hex(&content));
        assert_eq!(entry["signed"], signed.contains(&format.as_str()), "{name}");
        assert_eq!(
            entry["update_manifest"].as_str(),
            expected_manifest(&platform, &format),
            "{name}"
        );
    }
    assert_eq!(release["checksums"]["file"], "packages/SHA256SUMS");
    assert_eq!(release["checksums"]["sha256"], sha256_hex(sums.as_bytes()));
    let manifests = release["update_manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), wanted.len());
    for entry in manifests {
        let file = entry["file"].as_str().unwrap();
        let content = repo.read_bytes(&format!("dist/app-desktop/{file}"));
        assert_eq!(entry["sha256"], sha256_hex(&content), "{file}");
        assert_eq!(entry["size"], content.len(), "{file}");
    }
    names
}

/// The acceptance of items 5 and 6: a signing hook appends a marker before SHA256SUMS and
/// latest*.yml are made, so both describe the signed bytes.
#[test]
fn the_release_describes_the_signed_bytes() {
    let binaries = Binaries::new();
    let (repo, canary) = release(&binaries, &[SIGN_TAR_GZ, SIGN_ZIP]);
    let run = repo.json_env(&["bundle"], &[("SOURCE_DATE_EPOCH", "1700000000")]);
    run.assert_code(0);
    assert_eq!(run.status(PUBLISH), "ran", "{run}");
    let names = check_release(
        &repo,
        1_700_000_000,
        "2023-11-14T22:13:20.000Z",
        &["tar.gz", "zip"],
    );
    for name in &names {
        let (_, format) = split_name(name);
        if format == "tar.gz" || format == "zip" {
            let bytes = repo.read_bytes(&format!("{PACKAGES}/{name}"));
            assert!(bytes.ends_with(b"SIGNED"), "{name} was not signed");
        }
    }
    // A no-op publishes nothing new and stays a no-op.
    let again = repo.json_env(&["bundle"], &[("SOURCE_DATE_EPOCH", "1700000000")]);
    again.assert_code(0);
    assert_eq!(again.counts().0, 0, "nothing ran\n{again}");
    canary.assert_intact("after publishing");
}

/// `bundle` ends with a table of its artifacts (format, platform, size, path) after the
/// "Staged" line, and in JSON with one `artifact` event per file.
#[test]
fn bundle_ends_with_a_table_of_the_artifacts() {
    let binaries = Binaries::new();
    let (repo, _canary) = release(&binaries, &[]);
    let run = repo.human_env(&["bundle"], &[("SOURCE_DATE_EPOCH", "1700000000")]);
    run.assert_code(0);
    let names = artifacts(&repo);
    let lines: Vec<&str> = run.stderr.lines().collect();
    let staged = lines
        .iter()
        .position(|l| l.trim_start().starts_with("Staged"))
        .unwrap_or_else(|| panic!("{run}"));
    let packaged = lines
        .iter()
        .position(|l| {
            l.trim_start().starts_with(&format!(
                "Packaged {} artifacts of app-desktop",
                names.len()
            ))
        })
        .unwrap_or_else(|| panic!("{run}"));
    assert!(packaged > staged, "{run}");
    let header: Vec<&str> = lines[packaged + 1].split_whitespace().collect();
    assert_eq!(header, ["format", "platform", "size", "path"], "{run}");
    for name in &names {
        let (platform, format) = split_name(name);
        let path = format!("{PACKAGES}/{name}");
        let size = std::fs::metadata(repo.join(&path)).unwrap().len();
        let row = lines[packaged + 2..packaged + 2 + names.len()]
            .iter()
            .find(|l| l.ends_with(&path))
            .unwrap_or_else(|| panic!("no row for {path}\n{run}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[0], format, "{row}");
        assert_eq!(cells[1], platform, "{row}");
        // Human-readable: "1.14 KiB" for a file of a few kilobytes.
        let unit = match cells[3] {
            "B" => 1.0,
            "KiB" => 1024.0,
            other => panic!("{other} for {size} bytes: {row}"),
        };
        let shown: f64 = cells[2].parse().unwrap();
        assert!(
            (shown * unit - size as f64).abs() <= unit / 100.0,
            "{row}: {size} bytes"
        );
    }
    let published = lines
        .iter()
        .find(|l| l.trim_start().starts_with("Published"))
        .unwrap_or_else(|| panic!("{run}"));
    for file in ["SHA256SUMS", "latest-mac.yml", "release.json"] {
        assert!(published.contains(file), "{published}");
    }

    // JSON: one `artifact` event per file, the release's own files included; a no-op still
    // reports them (they are where the last build left them).
    let json = repo.json_env(&["bundle"], &[("SOURCE_DATE_EPOCH", "1700000000")]);
    json.assert_code(0);
    let events = json.events("artifact");
    let manifests = std::fs::read_dir(repo.join(PACKAGES))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".yml")
        })
        .count();
    assert_eq!(events.len(), names.len() + 1 + manifests + 1, "{json}");
    for event in &events {
        let path = event["path"].as_str().unwrap();
        let size = std::fs::metadata(repo.join(path)).unwrap().len();
        assert_eq!(event["size"], size, "{event}");
        assert_eq!(event["profile"], "app-desktop");
        match event["kind"].as_str().unwrap() {
            "package" => {
                let (platform, format) = split_name(path.rsplit('/').next().unwrap());
                assert_eq!(event["platform"], platform.as_str());
                assert_eq!(event["format"], format.as_str());
            }
            "checksums" => assert!(path.ends_with("/SHA256SUMS")),
            "update-manifest" => assert!(path.contains("/latest") && path.ends_with(".yml")),
            "release" => assert_eq!(path, "dist/app-desktop/release.json"),
            other => panic!("unknown kind {other}"),
        }
    }
    // The events come after the `bundles` event.
    let kinds: Vec<&str> = json
        .events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    let bundles = kinds.iter().position(|k| *k == "bundles").unwrap();
    assert!(kinds.iter().position(|k| *k == "artifact").unwrap() > bundles);

    // A part of the release (`--platform`) lists its artifacts but publishes nothing.
    let part = repo.json_env(
        &["bundle", "--platform", "linux-x64"],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    );
    part.assert_code(0);
    assert!(!part.statuses().contains_key(PUBLISH), "{part}");
    let mut paths: Vec<String> = part
        .events("artifact")
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    paths.sort();
    let linux: Vec<String> = names
        .iter()
        .filter(|n| split_name(n).0 == "linux-x64")
        .map(|n| format!("{PACKAGES}/{n}"))
        .collect();
    assert!(linux.contains(&format!("{PACKAGES}/app-desktop-linux-x64.tar.gz")));
    assert_eq!(paths, linux);
}

/// A signer that fails fails its package task: nothing is published (publish does not run, the
/// release files are untouched), nothing is cached (the same definition runs again once the
/// signer works), and the artifact published before stays as it was.
#[test]
fn a_failing_signer_publishes_nothing_caches_nothing_and_keeps_the_last_artifact() {
    let binaries = Binaries::new();
    // The signer fails while `../fail-signing` exists (beside the checkout, in no key).
    let sign = "\"tar.gz\" = '''sh -c 'test ! -e ../fail-signing && cat \"$0\" > \"$1\" && printf SIGNED >> \"$1\"' {in} {out}'''\n";
    let (repo, canary) = release(&binaries, &[sign]);
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    repo.json_env(&["bundle"], &epoch).assert_code(0);
    let tgz = format!("{PACKAGES}/app-desktop-linux-x64.tar.gz");
    let first = repo.read_bytes(&tgz);
    assert!(first.ends_with(b"SIGNED"));
    let release_files = |repo: &Repo| {
        [
            format!("{PACKAGES}/SHA256SUMS"),
            format!("{PACKAGES}/latest-mac.yml"),
            "dist/app-desktop/release.json".to_string(),
        ]
        .map(|path| repo.read_bytes(&path))
    };
    let published = release_files(&repo);

    // The stage changes, so the archive is made again, and signing fails.
    repo.write("scenarios/app/ui/index.html", "<h1>app, version two</h1>\n");
    std::fs::write(repo.sandbox().join("fail-signing"), "").unwrap();
    let failed = repo.json_env(&["bundle"], &epoch);
    failed.assert_code(1);
    let package = failed.task("package:app-desktop@linux-x64:tar.gz");
    assert_eq!(package["status"], "failed", "{failed}");
    let error = package["error"].as_str().unwrap();
    assert!(error.contains("[sign] tar.gz"), "{error}");
    assert!(error.contains("nothing was published or cached"), "{error}");
    assert_eq!(failed.status(PUBLISH), "skipped", "{failed}");
    assert!(failed.events("artifact").is_empty(), "{failed}");
    assert_eq!(repo.read_bytes(&tgz), first, "the last good artifact stays");
    assert_eq!(release_files(&repo), published, "the release is untouched");
    assert!(
        !repo.join(PACKAGES).read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".tmp")),
        "no temporary file left"
    );

    // Once the signer works, the same definition runs again (nothing was cached).
    std::fs::remove_file(repo.sandbox().join("fail-signing")).unwrap();
    let fixed = repo.json_env(&["bundle"], &epoch);
    fixed.assert_code(0);
    assert_eq!(
        fixed.status("package:app-desktop@linux-x64:tar.gz"),
        "ran",
        "{fixed}"
    );
    assert_eq!(fixed.status(PUBLISH), "ran", "{fixed}");
    let second = repo.read_bytes(&tgz);
    assert!(second.ends_with(b"SIGNED"));
    assert_ne!(second, first, "made from the new stage");
    check_release(
        &repo,
        1_700_000_000,
        "2023-11-14T22:13:20.000Z",
        &["tar.gz"],
    );
    canary.assert_intact("after a failing signer");
}

/// Every file below `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file()
                && std::fs::read(&path)
                    .unwrap()
                    .windows(needle.len())
                    .any(|w| w == needle)
            {
                found.push(path);
            }
        }
    }
    found
}

/// `{key}` comes from `XBUNDLE_SIGN_KEY` only: without it the task fails naming the variable;
/// its value is never shown (not even when the signer prints it) nor stored; a new value signs
/// again.
#[test]
fn signing_keys_come_from_the_environment_and_never_show() {
    let binaries = Binaries::new();
    // The signer prints its key (as `sh -x` would) and refuses the ones named `refused-…`.
    let sign = "\"tar.gz\" = '''sh -c 'echo \"signing with $2\"; echo \"key $2\" >&2; case \"$2\" in refused-*) exit 3;; esac; cat \"$0\" > \"$1\" && printf SIGNED >> \"$1\"' {in} {out} {key}'''\n";
    let (repo, canary) = release(&binaries, &[sign]);
    let epoch = ("SOURCE_DATE_EPOCH", "1700000000");
    let package = "package:app-desktop@linux-x64:tar.gz";
    let mut runs: Vec<Run> = Vec::new();

    let missing = repo.json_env(&["bundle"], &[epoch]);
    missing.assert_code(1);
    let error = missing.task(package)["error"].as_str().unwrap().to_string();
    assert!(error.contains("XBUNDLE_SIGN_KEY"), "{error}");
    assert!(error.contains("not set"), "{error}");
    assert_eq!(missing.status(PUBLISH), "skipped");
    runs.push(missing);

    let keys = [
        "first-secret-5d1e77",
        "second-secret-0b9a3c",
        "refused-9f2c41",
    ];
    let signed = repo.json_env(&["bundle"], &[epoch, ("XBUNDLE_SIGN_KEY", keys[0])]);
    signed.assert_code(0);
    assert!(
        repo.read_bytes(&format!("{PACKAGES}/app-desktop-linux-x64.tar.gz"))
            .ends_with(b"SIGNED")
    );
    runs.push(signed);
    let same = repo.json_env(&["bundle"], &[epoch, ("XBUNDLE_SIGN_KEY", keys[0])]);
    same.assert_code(0);
    assert_eq!(same.status(package), "cached", "{same}");
    runs.push(same);
    // Another key signs again.
    let other = repo.json_env(&["bundle"], &[epoch, ("XBUNDLE_SIGN_KEY", keys[1])]);
    other.assert_code(0);
    assert_eq!(other.status(package), "ran", "{other}");
    assert!(
        other
            .reasons(package)
            .iter()
            .any(|r| r == "env XBUNDLE_SIGN_KEY changed"),
        "{other}"
    );
    runs.push(other);
    // A refused key: what the signer printed is shown, with the key hidden.
    let refused = repo.json_env(&["bundle"], &[epoch, ("XBUNDLE_SIGN_KEY", keys[2])]);
    refused.assert_code(1);
    let printed: String = refused
        .events("task-output")
        .iter()
        .filter(|e| e["id"] == package)
        .map(|e| e["text"].as_str().unwrap().to_string())
        .collect();
    assert!(printed.contains("signing with ***"), "{refused}");
    assert!(printed.contains("key ***"), "{refused}");
    runs.push(refused);
    let human = repo.human_env(&["bundle"], &[epoch, ("XBUNDLE_SIGN_KEY", keys[2])]);
    human.assert_code(1);
    assert!(human.stderr.contains("key ***"), "{human}");
    runs.push(human);

    for key in keys {
        for run in &runs {
            assert!(
                !run.stdout.contains(key) && !run.stderr.contains(key),
                "{key} shown\n{run}"
            );
        }
        let stored = files_containing(repo.path(), key.as_bytes());
        assert!(stored.is_empty(), "{key} stored in {stored:?}");
    }
    canary.assert_intact("after signing");
}

/// A template without `{out}` signs `{in}` in place.
#[test]
fn an_in_place_signing_template_works() {
    let binaries = Binaries::new();
    let sign = "zip = '''sh -c 'printf SIGNED >> \"$0\"' {in}'''\n";
    let (repo, canary) = release(&binaries, &[sign]);
    repo.json_env(&["bundle"], &[("SOURCE_DATE_EPOCH", "1700000000")])
        .assert_code(0);
    for name in artifacts(&repo) {
        let signed = repo
            .read_bytes(&format!("{PACKAGES}/{name}"))
            .ends_with(b"SIGNED");
        assert_eq!(signed, name.ends_with(".zip"), "{name}");
    }
    check_release(&repo, 1_700_000_000, "2023-11-14T22:13:20.000Z", &["zip"]);
    canary.assert_intact("after signing in place");
}

/// A bad template is a located diagnostic when bundle.toml is loaded: exit 2, nothing built.
#[test]
fn bad_signing_templates_are_located_diagnostics() {
    let binaries = Binaries::new();
    for (line, says) in [
        ("zip = \"sign {out}\"\n", "never names the artifact"),
        ("zip = \"sign 'unclosed {in}\"\n", "unclosed quote"),
        ("zip = \"sign {in\"\n", "is not a placeholder"),
        ("zip = \"\"\n", "empty"),
        ("exe = \"sign {in}\"\n", "unknown format"),
    ] {
        let (repo, _canary) = release(&binaries, &[line]);
        let at = repo
            .read("bundle.toml")
            .lines()
            .position(|l| l == line.trim_end())
            .unwrap()
            + 1;
        for args in [&["check"][..], &["bundle"][..]] {
            let run = repo.json(args);
            run.assert_code(2);
            let diagnostic = run.diagnostic();
            assert!(
                diagnostic["message"].as_str().unwrap().contains(says),
                "{line}: {run}"
            );
            assert_eq!(diagnostic["file"], "bundle.toml", "{run}");
            assert_eq!(diagnostic["line"], at, "{line}: {run}");
            assert!(!repo.exists("dist"), "nothing built: {run}");
        }
    }
}

/// `git` with a fixed identity and date, no user or system configuration.
fn git(dir: &Path, args: &[&str], date: &str) {
    let output = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.org",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_DATE", date)
        .env("GIT_COMMITTER_DATE", date)
        .output()
        .expect("run git");
    assert!(output.status.success(), "git {args:?}: {output:?}");
}

/// Makes the repository a git repository with one commit at `date` (`@<seconds> +0000`).
fn commit_all(repo: &Repo, date: &str) {
    if !repo.exists(".git") {
        git(repo.path(), &["init", "-q", "-b", "main"], date);
    }
    std::fs::write(repo.join(".gitignore"), "/dist/\n/.xbundle/\n").unwrap();
    git(repo.path(), &["add", "-A"], date);
    git(
        repo.path(),
        &["commit", "-q", "--allow-empty", "-m", "a commit"],
        date,
    );
}

/// Every entry's mtime in a tar.gz.
fn tar_mtimes(bytes: &[u8]) -> Vec<u64> {
    // A signature would follow the archive; these tests sign nothing.
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().header().mtime().unwrap())
        .collect()
}

/// A `git` on PATH that logs its arguments to `log` and runs the real one.
fn logging_git(dir: &Path, log: &Path) -> String {
    let real = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("git"))
        .find(|p| p.is_file())
        .expect("git on PATH");
    let bin = dir.join("logging-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let wrapper = bin.join("git");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap())
}

/// Runs `bundle` with `path` as PATH and no SOURCE_DATE_EPOCH.
fn bundle_without_epoch(repo: &Repo, path: &str) -> Run {
    let mut command = repo.command();
    command
        .args(["--message-format", "json", "bundle"])
        .env("PATH", path)
        .env_remove("SOURCE_DATE_EPOCH");
    Run::parse_json(&["bundle"], command.output().expect("run xtask"))
}

fn show_calls(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("show -s --format=%ct"))
        .count()
}

/// Without SOURCE_DATE_EPOCH every timestamp is the last commit's time: `git` runs once for a
/// commit (its time is cached), never on a no-op, once more for a new commit.
#[test]
fn the_epoch_is_the_last_commits_time_read_once_per_commit() {
    if !common::have_tool("git", "git") {
        return;
    }
    let binaries = Binaries::new();
    let (repo, canary) = release(&binaries, &[]);
    commit_all(&repo, "@1600000000 +0000");
    let log = repo.sandbox().join("git.log");
    let path = logging_git(repo.sandbox(), &log);
    let tgz = format!("{PACKAGES}/app-desktop-linux-x64.tar.gz");

    bundle_without_epoch(&repo, &path).assert_code(0);
    assert_eq!(show_calls(&log), 1);
    let mtimes = tar_mtimes(&repo.read_bytes(&tgz));
    assert!(
        !mtimes.is_empty() && mtimes.iter().all(|t| *t == 1_600_000_000),
        "{mtimes:?}"
    );
    check_release(&repo, 1_600_000_000, "2020-09-13T12:26:40.000Z", &[]);
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(
        repo.read_bytes(&format!("{PACKAGES}/app-desktop-darwin-x64.zip")),
    ))
    .unwrap();
    for index in 0..zip.len() {
        let time = zip.by_index(index).unwrap().last_modified().unwrap();
        assert_eq!(
            (
                time.year(),
                time.month(),
                time.day(),
                time.hour(),
                time.minute()
            ),
            (2020, 9, 13, 12, 26)
        );
    }

    // A no-op: nothing runs, and neither does git.
    let noop = bundle_without_epoch(&repo, &path);
    noop.assert_code(0);
    assert_eq!(noop.counts().0, 0, "{noop}");
    assert_eq!(show_calls(&log), 1, "git ran on a no-op");

    // A new commit is a new epoch: git runs once more, and everything is packaged again.
    repo.write("scenarios/app/ui/index.html", "<h1>app 2</h1>\n");
    commit_all(&repo, "@1650000000 +0000");
    let next = bundle_without_epoch(&repo, &path);
    next.assert_code(0);
    assert_eq!(show_calls(&log), 2);
    assert_eq!(next.status(PUBLISH), "ran");
    let mtimes = tar_mtimes(&repo.read_bytes(&tgz));
    assert!(mtimes.iter().all(|t| *t == 1_650_000_000), "{mtimes:?}");
    check_release(&repo, 1_650_000_000, "2022-04-15T05:20:00.000Z", &[]);
    // Only a commit changes it: the same commit with another tree state reads the cache.
    bundle_without_epoch(&repo, &path).assert_code(0);
    assert_eq!(show_calls(&log), 2);
    canary.assert_intact("after committing");
}

/// SOURCE_DATE_EPOCH overrides the commit (and no git runs); a bad value is refused at
/// planning, naming the variable and what to write, with nothing built.
#[test]
fn source_date_epoch_overrides_the_commit_and_a_bad_one_is_refused() {
    if !common::have_tool("git", "git") {
        return;
    }
    let binaries = Binaries::new();
    let (repo, canary) = release(&binaries, &[]);
    commit_all(&repo, "@1600000000 +0000");
    let log = repo.sandbox().join("git.log");
    let path = logging_git(repo.sandbox(), &log);
    let run = |args: &[&str], value: Option<&str>| {
        let mut command = repo.command();
        command
            .args(["--message-format", "json"])
            .args(args)
            .env("PATH", &path);
        match value {
            Some(value) => command.env("SOURCE_DATE_EPOCH", value),
            None => command.env_remove("SOURCE_DATE_EPOCH"),
        };
        Run::parse_json(args, command.output().expect("run xtask"))
    };
    run(&["bundle"], Some("1700000000")).assert_code(0);
    assert_eq!(
        show_calls(&log),
        0,
        "git ran although SOURCE_DATE_EPOCH was set"
    );
    let mtimes = tar_mtimes(&repo.read_bytes(&format!("{PACKAGES}/app-desktop-linux-x64.tar.gz")));
    assert!(mtimes.iter().all(|t| *t == 1_700_000_000), "{mtimes:?}");
    check_release(&repo, 1_700_000_000, "2023-11-14T22:13:20.000Z", &[]);

    let before = repo.snapshot();
    for bad in [
        "",
        "yesterday",
        "-1",
        "1.5",
        " 1700000000",
        "1700000000\n",
        "99999999999999999999",
    ] {
        for args in [&["bundle"][..], &["check"][..]] {
            let refused = run(args, Some(bad));
            refused.assert_code(2);
            let diagnostic = refused.diagnostic();
            let message = diagnostic["message"].as_str().unwrap();
            assert!(
                message.starts_with("SOURCE_DATE_EPOCH="),
                "{bad:?}: {refused}"
            );
            let help = diagnostic["help"].as_str().unwrap();
            assert!(help.contains("seconds since 1970"), "{refused}");
            assert!(help.contains("unset it"), "{refused}");
            common::assert_same_tree(&repo.snapshot(), &before, "nothing built");
        }
    }
    canary.assert_intact("after refusing");
}

/// Item 2: two clean builds from two checkout paths (a clone) give byte-identical artifacts,
/// checksums, manifests and release.json, the epoch being the shared commit's time.
#[test]
fn two_checkout_paths_give_identical_releases() {
    if !common::have_tool("git", "git") {
        return;
    }
    let binaries = Binaries::new();
    let (one, canary) = release(&binaries, &[SIGN_TAR_GZ]);
    commit_all(&one, "@1600000000 +0000");
    let two = Repo::empty();
    std::fs::remove_dir(two.path()).unwrap();
    git(
        one.sandbox(),
        &[
            "clone",
            "-q",
            &one.path().display().to_string(),
            &two.path().display().to_string(),
        ],
        "@1600000000 +0000",
    );
    assert_ne!(one.path(), two.path());
    let path = std::env::var("PATH").unwrap();
    bundle_without_epoch(&one, &path).assert_code(0);
    bundle_without_epoch(&two, &path).assert_code(0);
    let names = artifacts(&one);
    assert_eq!(names, artifacts(&two));
    // Every file of the release: the artifacts, SHA256SUMS, the manifests, release.json.
    let mut files: Vec<String> = std::fs::read_dir(one.join(PACKAGES))
        .unwrap()
        .map(|e| format!("{PACKAGES}/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    files.push("dist/app-desktop/release.json".to_string());
    assert!(files.len() >= names.len() + 3, "{files:?}");
    for file in &files {
        assert!(
            one.read_bytes(file) == two.read_bytes(file),
            "{file} differs"
        );
    }
    check_release(&two, 1_600_000_000, "2020-09-13T12:26:40.000Z", &["tar.gz"]);
    canary.assert_intact("after two checkouts");
}

/// bundle.toml in a subdirectory of a repository: the epoch is still the last commit's time.
#[test]
fn the_epoch_comes_from_the_repository_around_a_subdirectory() {
    if !common::have_tool("git", "git") {
        return;
    }
    let binaries = Binaries::new();
    let (repo, canary) = release(&binaries, &[]);
    let date = "@1610000000 +0000";
    git(repo.sandbox(), &["init", "-q", "-b", "main"], date);
    std::fs::write(
        repo.sandbox().join(".gitignore"),
        "/repo/dist/\n/repo/.xbundle/\n",
    )
    .unwrap();
    git(repo.sandbox(), &["add", "-A"], date);
    git(repo.sandbox(), &["commit", "-q", "-m", "outer"], date);
    bundle_without_epoch(&repo, &std::env::var("PATH").unwrap()).assert_code(0);
    check_release(&repo, 1_610_000_000, "2021-01-07T06:13:20.000Z", &[]);
    canary.assert_intact("after bundling in a subdirectory");
}

/// A signing script of the repository is an input of the package tasks it signs: editing it
/// signs again (the release then describes the new bytes); other tasks are untouched.
#[test]
fn editing_the_signing_script_signs_again() {
    let binaries = Binaries::new();
    let sign = "zip = \"sh ./tools/sign.sh {in} {out}\"\n";
    let (repo, canary) = release(&binaries, &[sign]);
    repo.write(
        "tools/sign.sh",
        "cat \"$1\" > \"$2\" && printf SIGNED-1 >> \"$2\"\n",
    );
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    repo.json_env(&["bundle"], &epoch).assert_code(0);
    let zip = format!("{PACKAGES}/app-desktop-win-x64.zip");
    assert!(repo.read_bytes(&zip).ends_with(b"SIGNED-1"));
    repo.write(
        "tools/sign.sh",
        "cat \"$1\" > \"$2\" && printf SIGNED-2 >> \"$2\"\n",
    );
    let again = repo.json_env(&["bundle"], &epoch);
    again.assert_code(0);
    for platform in ["darwin-x64", "darwin-arm64", "win-x64"] {
        let id = format!("package:app-desktop@{platform}:zip");
        assert_eq!(again.status(&id), "ran", "{again}");
        assert!(
            again
                .reasons(&id)
                .iter()
                .any(|r| r == "input tools/sign.sh changed"),
            "{again}"
        );
    }
    assert_eq!(
        again.status("package:app-desktop@linux-x64:tar.gz"),
        "cached"
    );
    assert!(repo.read_bytes(&zip).ends_with(b"SIGNED-2"));
    check_release(&repo, 1_700_000_000, "2023-11-14T22:13:20.000Z", &["zip"]);
    canary.assert_intact("after re-signing");
}

/// electron-updater refuses a version that is not semantic versioning: a release whose update
/// manifests would carry one fails, says how to fix it and writes nothing; the artifacts stay.
#[test]
fn a_version_electron_updater_cannot_read_is_refused() {
    let binaries = Binaries::new();
    let (repo, canary) = release(&binaries, &[]);
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    repo.write(
        "scenarios/app/.vrooli/service.json",
        SERVICE.replace("1.2.3", "1.2"),
    );
    let run = repo.json_env(&["bundle"], &epoch);
    run.assert_code(1);
    let publish = run.task(PUBLISH);
    assert_eq!(publish["status"], "failed", "{run}");
    let error = publish["error"].as_str().unwrap();
    assert!(
        error.contains("`1.2` is not semantic versioning"),
        "{error}"
    );
    assert!(error.contains("latest-mac.yml"), "{error}");
    assert!(error.contains("version = \"1.2.0\""), "{error}");
    assert!(!repo.exists(&format!("{PACKAGES}/SHA256SUMS")));
    assert!(!repo.exists(&format!("{PACKAGES}/latest-mac.yml")));
    assert!(!repo.exists("dist/app-desktop/release.json"));
    assert!(repo.exists(&format!("{PACKAGES}/app-desktop-darwin-x64.zip")));
    // The fix publishes.
    repo.write("scenarios/app/.vrooli/service.json", SERVICE);
    repo.json_env(&["bundle"], &epoch).assert_code(0);
    check_release(&repo, 1_700_000_000, "2023-11-14T22:13:20.000Z", &[]);
    canary.assert_intact("after a refused version");
}

/// CI's publish job: each platform's packages built elsewhere, gathered into the packages
/// directory of a fresh checkout (no cache), then `publish`: the release files are the very
/// bytes `bundle` wrote where everything was built, and nothing is built. A package missing,
/// or a link in its place, is exit 2 naming it, with nothing written.
#[test]
fn publish_makes_the_release_from_gathered_packages_without_building() {
    let binaries = Binaries::new();
    let (built, canary) = release(&binaries, &[SIGN_TAR_GZ]);
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    built.json_env(&["bundle"], &epoch).assert_code(0);
    let names = artifacts(&built);
    let gathered = || {
        let (repo, _) = release(&binaries, &[SIGN_TAR_GZ]);
        std::fs::create_dir_all(repo.join(PACKAGES)).unwrap();
        for name in &names {
            std::fs::copy(
                built.join(&format!("{PACKAGES}/{name}")),
                repo.join(&format!("{PACKAGES}/{name}")),
            )
            .unwrap();
        }
        repo
    };

    let repo = gathered();
    let run = repo.json_env(&["publish"], &epoch);
    run.assert_code(0);
    assert_eq!(run.status(PUBLISH), "ran", "{run}");
    let ran = run.counts().0;
    assert_eq!(ran, 2, "assemble and publish only\n{run}");
    assert!(
        !repo.exists("dist/app-desktop/stage"),
        "nothing was staged or built"
    );
    let mut release: Vec<String> = std::fs::read_dir(built.join(PACKAGES))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| !names.contains(name))
        .map(|name| format!("{PACKAGES}/{name}"))
        .collect();
    release.push("dist/app-desktop/release.json".into());
    assert!(release.len() >= 4, "{release:?}");
    for file in &release {
        assert!(
            repo.read_bytes(file) == built.read_bytes(file),
            "{file} differs from the release built in one place"
        );
    }
    check_release(
        &repo,
        1_700_000_000,
        "2023-11-14T22:13:20.000Z",
        &["tar.gz"],
    );
    let again = repo.json_env(&["publish"], &epoch);
    assert_eq!(again.counts().0, 0, "a no-op\n{again}");

    // One package missing, or a link in its place: refused, nothing written.
    let victim = format!("{PACKAGES}/{}", names[0]);
    for how in ["missing", "link"] {
        let repo = gathered();
        std::fs::remove_file(repo.join(&victim)).unwrap();
        if how == "link" {
            std::os::unix::fs::symlink(built.join(&victim), repo.join(&victim)).unwrap();
        }
        let before = repo.snapshot();
        let run = repo.json_env(&["publish"], &epoch);
        run.assert_code(2);
        let message = run.diagnostic()["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(message.contains(&victim), "{how}: {run}");
        common::assert_same_tree(&repo.snapshot(), &before, how);
    }
    canary.assert_intact("after publishing gathered packages");
}
