//! Profiles to bundle.json through the real binary: export and its checksum, the `check` gate,
//! bad profiles, incremental re-assembly, and no secret value anywhere.

mod common;

use std::path::Path;

use common::{Repo, copy_tree};

/// A copy of this repository's pipeline: bundle.toml, scenarios, resources, platforms.
fn demo() -> Repo {
    let repo = Repo::empty();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in ["scenarios", "resources", "platforms", "demo"] {
        copy_tree(&source.join(dir), &repo.join(dir));
    }
    repo.write(
        "bundle.toml",
        std::fs::read_to_string(source.join("bundle.toml")).unwrap(),
    );
    repo
}

fn sha256_hex(bytes: &[u8]) -> String {
    let output = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(bytes)?;
            child.wait_with_output()
        })
        .expect("sha256sum runs");
    String::from_utf8(output.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn export_writes_bundle_json_with_a_matching_checksum_and_is_byte_stable() {
    let repo = demo();
    repo.human(&["export", "picker-wheel-desktop"])
        .assert_code(0);
    let bytes = repo.read_bytes("dist/picker-wheel-desktop/bundle.json");
    let checksum = repo.read("dist/picker-wheel-desktop/bundle.json.sha256");
    assert_eq!(
        checksum,
        format!("{}  bundle.json\n", sha256_hex(&bytes)),
        "the checksum is of the written bytes"
    );
    // `sha256sum -c` accepts it.
    let verify = std::process::Command::new("sha256sum")
        .args(["-c", "bundle.json.sha256"])
        .current_dir(repo.join("dist/picker-wheel-desktop"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    // A plain second export restores nothing and runs nothing: the outputs are current.
    let again = repo.json(&["export", "picker-wheel-desktop"]);
    again.assert_code(0);
    assert_eq!(again.status("assemble:picker-wheel-desktop"), "cached");
    assert_eq!(again.restored("assemble:picker-wheel-desktop"), 0);
    // A forced second export really assembles again (not restored from the cache) and writes
    // the same bytes.
    let forced = repo.json(&["export", "picker-wheel-desktop", "--force"]);
    forced.assert_code(0);
    assert_eq!(
        forced.status("assemble:picker-wheel-desktop"),
        "ran",
        "{forced}"
    );
    assert_eq!(
        forced.events("exported")[0]["sha256"],
        checksum.split_whitespace().next().unwrap()
    );
    assert_eq!(
        repo.read_bytes("dist/picker-wheel-desktop/bundle.json"),
        bytes
    );
    // `assemble` prints the same bytes without writing.
    let printed = repo.human(&["assemble", "picker-wheel-desktop"]);
    assert_eq!(printed.stdout.as_bytes(), &bytes[..]);
}

#[test]
fn check_passes_on_the_demo_and_writes_nothing() {
    let repo = demo();
    let run = repo.json(&["check"]);
    run.assert_code(0);
    assert_eq!(run.events("check-profile").len(), 2);
    assert!(run.events("check-finished")[0]["ok"] == true);
    assert!(
        !repo.exists("dist") && !repo.exists(".xbundle/cache"),
        "check builds nothing"
    );
}

fn profile(extra: &str) -> String {
    format!(
        "[workspace]\ndefault-profile = \"p\"\n\n[profiles.p]\nscenario = \"picker-wheel\"\ntier = \"desktop\"\nplatforms = [\"linux-x64\"]\n{extra}"
    )
}

#[test]
fn bad_profiles_are_clear_errors_and_write_nothing() {
    let swaps = "swaps = { postgres = \"sqlite\", redis = \"in-process\" }\n";
    let cases: Vec<(String, &str)> = vec![
        (
            profile("swaps = { postgres = \"mongo-lite\", redis = \"in-process\" }\n"),
            "unknown swap target `mongo-lite` for `postgres`",
        ),
        (
            profile(swaps).replace("tier = \"desktop\"", "tier = \"tier-7\""),
            "unknown tier `tier-7`",
        ),
        (
            profile(
                "swaps = { postgres = \"sqlite\", redis = \"in-process\", qdrant = \"local-index\" }\n",
            ),
            "does not use resource `qdrant`",
        ),
        (
            profile(swaps).replace("picker-wheel", "picker-wheels"),
            "unknown scenario `picker-wheels`",
        ),
        (
            profile(""),
            "secret `postgres_password` of resource:postgres is infrastructure",
        ),
        (
            profile(&format!("{swaps}min-fitness = 0.99\n")),
            "below min-fitness 0.99",
        ),
        (
            profile(&format!(
                "{swaps}[profiles.p.secrets]\nsession_secret = {{ generator = {{ type = \"hex\", length = 3 }} }}\n"
            )),
            "generator length 3 is outside 8..=4096",
        ),
        (
            profile(&format!(
                "{swaps}env = {{ DB_PASS = \"${{secret.postgres_password}}\" }}\n"
            )),
            "refers to secret `postgres_password`, which the bundle excludes",
        ),
        (
            profile(&format!("{swaps}platforms = [\"linux-x64\"]\n"))
                .replacen("platforms = [\"linux-x64\"]\n", "", 1)
                .replace("platforms = [\"linux-x64\"]", "platforms = [\"beos-x64\"]"),
            "unknown platform `beos-x64`",
        ),
    ];
    for (toml, message) in cases {
        let repo = demo();
        repo.write("bundle.toml", &toml);
        for command in [&["check"][..], &["export"][..], &["assemble"][..]] {
            let run = repo.human(command);
            run.assert_code(2);
            assert!(
                run.stderr.contains(message),
                "{command:?} with\n{toml}\nexpected {message:?} in:\n{}",
                run.stderr
            );
            assert!(run.stderr.contains("help:"), "{}", run.stderr);
        }
        assert!(!repo.exists("dist"), "nothing written for {message}");
    }
}

#[test]
fn duplicate_secret_ids_and_malformed_generators_in_definitions_are_errors() {
    let repo = demo();
    repo.write(
        "bundle.toml",
        profile("swaps = { postgres = \"sqlite\", redis = \"in-process\" }\n"),
    );
    let path = "scenarios/picker-wheel/.vrooli/service.json";
    let original = repo.read(path);
    repo.write(
        path,
        original.replace("\"id\": \"jwt_secret\"", "\"id\": \"session_secret\""),
    );
    let run = repo.human(&["check"]);
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("secret id `session_secret` is declared by both"),
        "{}",
        run.stderr
    );
    repo.write(
        path,
        original.replace("\"type\": \"hex\"", "\"type\": \"emoji\""),
    );
    let run = repo.human(&["check"]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("unknown generator type `emoji`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("scenarios/picker-wheel/.vrooli/service.json:"),
        "located: {}",
        run.stderr
    );
}

#[test]
fn editing_a_scenario_reassembles_only_the_profiles_that_contain_it() {
    let repo = demo();
    let first = repo.json(&["task"]);
    first.assert_code(0);
    assert_eq!(first.status("assemble:picker-wheel-desktop"), "ran");
    assert_eq!(first.status("assemble:notes-desktop"), "ran");

    // auth-service is in notes-app's graph, not in picker-wheel's.
    let path = "scenarios/auth-service/.vrooli/service.json";
    repo.write(
        path,
        repo.read(path)
            .replace("Accounts, sessions", "Accounts and sessions"),
    );
    let second = repo.json(&["task"]);
    assert_eq!(second.status("assemble:notes-desktop"), "ran");
    assert_eq!(
        second.reasons("assemble:notes-desktop"),
        ["input scenarios/auth-service/.vrooli/service.json changed"]
    );
    assert_eq!(second.status("assemble:picker-wheel-desktop"), "cached");
    assert_eq!(second.restored("assemble:picker-wheel-desktop"), 0);

    let path = "scenarios/picker-wheel/.vrooli/service.json";
    repo.write(
        path,
        repo.read(path).replace("Fun, interactive", "Interactive"),
    );
    let third = repo.json(&["task"]);
    assert_eq!(third.status("assemble:picker-wheel-desktop"), "ran");
    assert_eq!(third.status("assemble:notes-desktop"), "cached");

    // Editing another profile in bundle.toml leaves this one cached.
    let toml = repo.read("bundle.toml").replace(
        "min-fitness = 0.75\n\n[profiles.notes-desktop.secrets]",
        "min-fitness = 0.8\n\n[profiles.notes-desktop.secrets]",
    );
    repo.write("bundle.toml", toml);
    let fourth = repo.json(&["task"]);
    assert_eq!(fourth.status("assemble:notes-desktop"), "ran");
    assert_eq!(fourth.status("assemble:picker-wheel-desktop"), "cached");
}

#[test]
fn no_secret_value_reaches_any_file_or_output() {
    let repo = demo();
    let planted = [
        "PLANTED-session-7f3a9c",
        "PLANTED-jwt-1b2c3d",
        "sk-or-PLANTED-openrouter-000111",
        "PLANTED-postgres-pw-55aa",
        "PLANTED-dotenv-99zz",
    ];
    repo.write(
        ".env",
        format!(
            "SESSION_SECRET={}\nOPENROUTER_API_KEY={}\nPOSTGRES_PASSWORD={}\nJWT_SECRET={}\n",
            planted[4], planted[2], planted[3], planted[1]
        ),
    );
    let env = [
        ("SESSION_SECRET", planted[0]),
        ("JWT_SECRET", planted[1]),
        ("OPENROUTER_API_KEY", planted[2]),
        ("POSTGRES_PASSWORD", planted[3]),
    ];
    // A declared task whose key depends on a secret's value: the engine must key on it without
    // storing it (the ledger keeps digests of env values, never the values).
    let toml = repo.read("bundle.toml");
    repo.write(
        "bundle.toml",
        format!("{toml}\n[tasks.uses-secret]\nrun = \"test -n \\\"$SESSION_SECRET\\\" && echo configured > secret-check.txt\"\noutputs = [\"secret-check.txt\"]\nenv = [\"SESSION_SECRET\", \"OPENROUTER_API_KEY\"]\n"),
    );
    let mut transcript = String::new();
    let runs: [&[&str]; 9] = [
        &["bundle"],
        &["bundle", "notes-desktop"],
        &["export", "notes-desktop"],
        &["check"],
        &["assemble", "notes-desktop"],
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
        ],
        &["secrets", "picker-wheel"],
        &["explain", "greeting"],
        &["task", "--dry-run"],
    ];
    for args in runs {
        for json in [false, true] {
            let run = if json {
                repo.json_env(args, &env)
            } else {
                repo.human_env(args, &env)
            };
            transcript.push_str(&run.stdout);
            transcript.push_str(&run.stderr);
        }
    }
    for value in planted {
        assert!(
            !transcript.contains(value),
            "`{value}` leaked into the output"
        );
    }
    // Every file the pipeline wrote: dist/ and the engine's state.
    let mut scanned = 0;
    for dir in ["dist", ".xbundle", "demo/greeting/build"] {
        let Ok(entries) = walk(&repo.join(dir)) else {
            continue;
        };
        for file in entries {
            let bytes = std::fs::read(&file).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            for value in planted {
                assert!(
                    !text.contains(value),
                    "`{value}` leaked into {}",
                    file.display()
                );
            }
            scanned += 1;
        }
    }
    assert!(scanned > 10, "scanned {scanned} files");
    assert_eq!(
        repo.read("secret-check.txt"),
        "configured\n",
        "the task saw the value"
    );
    let explain = repo.human_env(
        &["explain", "uses-secret"],
        &[("SESSION_SECRET", "changed-value")],
    );
    assert!(
        explain.stdout.contains("env SESSION_SECRET changed"),
        "{}",
        explain.stdout
    );
    assert!(!explain.stdout.contains("changed-value"));
    assert!(repo.exists("dist/notes-desktop/bundle.json"));
}

fn walk(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            files.extend(walk(&entry.path())?);
        } else {
            files.push(entry.path());
        }
    }
    Ok(files)
}
