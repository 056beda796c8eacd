//! Adversarial cases against packaging, through the real binary: hostile text from
//! service.json reaching the installers' control files, and paths planted where an artifact
//! lands. The fixture needs no toolchain: one platform (linux-x64) whose runtime and API binary
//! are stand-in scripts fetched from `file://` URLs beside the checkout.

use crate::common;

use std::io::Read;
use std::path::Path;

use common::{Canary, Repo};
use sha2::Digest as _;

const PACKAGES: &str = "dist/app-desktop/packages";
const EPOCH: [(&str, &str); 1] = [("SOURCE_DATE_EPOCH", "1700000000")];

fn service(description: &str) -> String {
    serde_json::json!({
        "service": {"name": "app", "version": "1.2.3", "type": "scenario", "description": description},
        "ports": {
            "api": {"env_var": "API_PORT", "range": "15000-19999"},
            "ui": {"env_var": "UI_PORT", "range": "35000-39999"}
        }
    })
    .to_string()
}

/// The fixture at `<tmp>/repo` (binaries in `<tmp>/bin`, a canary tree at `<tmp>/canary`),
/// packaging linux-x64 as `formats`, with `extra` appended to the profile's table.
fn fixture(description: &str, formats: &str, extra: &str) -> (Repo, Canary) {
    let platform = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../platforms/linux-x64.toml"),
    )
    .unwrap();
    let service = service(description);
    let repo = Repo::in_sandbox(
        "",
        &[
            ("scenarios/app/.vrooli/service.json", service.as_str()),
            ("scenarios/app/ui/index.html", "<h1>app</h1>\n"),
            ("platforms/linux-x64.toml", platform.as_str()),
        ],
    );
    let bin = repo.sandbox().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let mut binaries = String::new();
    for kind in ["runtime", "api"] {
        let path = bin.join(kind);
        let script = format!("#!/bin/sh\necho {kind}\n");
        std::fs::write(&path, &script).unwrap();
        let sha = hex(&sha2::Sha256::digest(script.as_bytes()));
        let url = format!("file://{}", path.display());
        binaries.push_str(&if kind == "runtime" {
            format!("\n[runtime.linux-x64]\nurl = \"{url}\"\nsha256 = \"{sha}\"\n")
        } else {
            format!(
                "\n[[assets]]\nid = \"api\"\nurl = \"{url}\"\nsha256 = \"{sha}\"\nplatforms = [\"linux-x64\"]\ndest = \"bin/app-api/linux-x64/app-api\"\n"
            )
        });
    }
    repo.write(
        "bundle.toml",
        format!(
            "[workspace]\ndefault-profile = \"app-desktop\"\n\n[profiles.app-desktop]\nscenario = \"app\"\ntier = \"desktop\"\nplatforms = [\"linux-x64\"]\nformats = [{formats}]\n{extra}\n[profiles.app-desktop.builds.app-api]\ntype = \"none\"\n{binaries}"
        ),
    );
    let canary = Canary::plant(&repo.sandbox().join("canary"), &[]);
    (repo, canary)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The files of a deb's `member` (`control.tar.gz` or `data.tar.gz`): path → content.
fn deb_member(deb: &[u8], member: &str) -> Vec<(String, Vec<u8>)> {
    // An ar archive: `!<arch>\n`, then per member a 60-byte header (name, 16 bytes; size,
    // decimal, at 48..58) and the data, padded to an even length.
    assert!(deb.starts_with(b"!<arch>\n"));
    let mut at = 8;
    while at + 60 <= deb.len() {
        let header = &deb[at..at + 60];
        let name = std::str::from_utf8(&header[..16]).unwrap().trim_end();
        let size: usize = std::str::from_utf8(&header[48..58])
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let data = &deb[at + 60..at + 60 + size];
        at += 60 + size + size % 2;
        if name.trim_end_matches('/') != member {
            continue;
        }
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(data));
        return tar
            .entries()
            .unwrap()
            .map(|file| {
                let mut file = file.unwrap();
                let path = file.path().unwrap().to_string_lossy().into_owned();
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).unwrap();
                (path, bytes)
            })
            .collect();
    }
    panic!("no {member} in the deb");
}

/// service.json's description is free text (nothing refuses a line break, a bell or a
/// terminal escape there), and it is the installers' default description. Found: the BEL and
/// ESC reached the deb's control file and the desktop entry raw, and the rpm failed with the
/// rpm crate's "control characters are not allowed". Now each control character becomes a
/// space: every format builds and no control file holds one.
#[test]
fn control_characters_from_service_json_never_reach_an_installer() {
    let description =
        "Takes notes.\nDepends: evil\n\n.SH INJECT\r\n\u{7}bell \u{1b}[2J escape\tand tab";
    let (repo, canary) = fixture(description, "\"tar.gz\", \"deb\", \"rpm\"", "");
    let run = repo.json_env(&["bundle"], &EPOCH);
    run.assert_code(0);
    for format in ["tar.gz", "deb", "rpm"] {
        assert_eq!(
            run.status(&format!("package:app-desktop@linux-x64:{format}")),
            "ran",
            "{run}"
        );
    }
    let deb = repo.read_bytes(&format!("{PACKAGES}/app-desktop-linux-x64.deb"));
    let control = deb_member(&deb, "control.tar.gz");
    let (_, control) = control
        .iter()
        .find(|(path, _)| path.ends_with("control"))
        .expect("a control file");
    let control = String::from_utf8(control.clone()).unwrap();
    assert!(
        !control.chars().any(|c| c.is_control() && c != '\n'),
        "{control:?}"
    );
    // The line break did not start a field of its own.
    assert!(
        !control.lines().any(|line| line.starts_with("Depends:")),
        "{control}"
    );
    let data = deb_member(&deb, "data.tar.gz");
    let (_, desktop) = data
        .iter()
        .find(|(path, _)| path.ends_with("applications/app.desktop"))
        .expect("a desktop entry");
    let desktop = String::from_utf8(desktop.clone()).unwrap();
    assert!(
        !desktop.chars().any(|c| c.is_control() && c != '\n'),
        "{desktop:?}"
    );
    let comment = desktop
        .lines()
        .find(|line| line.starts_with("Comment="))
        .unwrap();
    assert!(comment.contains("Depends: evil"), "{desktop}");
    assert!(comment.contains("bell"), "{desktop}");
    canary.assert_intact("after packaging hostile text");
}

/// A link planted where an artifact lands (pointing at the canary) is replaced, never written
/// through; a directory planted there is refused and kept, with what it holds.
#[test]
fn a_link_or_directory_planted_at_an_artifact_path_is_never_written_through() {
    let (repo, canary) = fixture("Takes notes.", "\"tar.gz\", \"zip\"", "");
    repo.json_env(&["bundle"], &EPOCH).assert_code(0);
    let tgz = format!("{PACKAGES}/app-desktop-linux-x64.tar.gz");
    let zip = format!("{PACKAGES}/app-desktop-linux-x64.zip");
    let good = repo.read_bytes(&tgz);
    repo.remove(&tgz);
    std::os::unix::fs::symlink(repo.sandbox().join("canary/precious.txt"), repo.join(&tgz))
        .unwrap();
    repo.remove(&zip);
    repo.write(&format!("{zip}/keep/me"), "mine");
    repo.write("scenarios/app/ui/index.html", "<h1>app, two</h1>\n");
    let run = repo.json_env(&["bundle"], &EPOCH);
    run.assert_code(1);
    assert_eq!(
        run.status("package:app-desktop@linux-x64:tar.gz"),
        "ran",
        "{run}"
    );
    assert_eq!(
        run.status("package:app-desktop@linux-x64:zip"),
        "failed",
        "{run}"
    );
    let meta = std::fs::symlink_metadata(repo.join(&tgz)).unwrap();
    assert!(meta.is_file(), "the link was replaced by the artifact");
    assert_ne!(repo.read_bytes(&tgz), good, "made from the new stage");
    assert_eq!(repo.read(&format!("{zip}/keep/me")), "mine");
    canary.assert_intact("after planting a link and a directory at the artifacts' paths");
}
