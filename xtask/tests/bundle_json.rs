//! Profiles to bundle.json through the real binary: export and its checksum, the `check` gate,
//! bad profiles, incremental re-assembly, and no secret value anywhere.

use crate::common;

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
        ["discovered input scenarios/auth-service/.vrooli/service.json changed"]
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

/// Every entry under `dir` (relative path, mode, contents or link target), `.xbundle` aside.
fn tree(dir: &Path) -> std::collections::BTreeMap<String, (u32, Vec<u8>)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap().flatten() {
            let path = entry.path();
            let relative = path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if relative == ".xbundle" {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode();
            let contents = if meta.file_type().is_symlink() {
                std::fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if meta.is_dir() {
                stack.push(path.clone());
                Vec::new()
            } else {
                std::fs::read(&path).unwrap()
            };
            out.insert(relative, (mode, contents));
        }
    }
    out
}

/// Issue 8, items 11, 14, 15, 16 and 17 at `check` and `export`: a hostile or weak value from
/// bundle.toml or a service.json is an error at its file and line (exit 2), whatever command
/// meets it, and nothing is written: not in the repository, not in a canary tree beside it.
#[test]
fn hostile_values_are_located_errors_and_nothing_is_written() {
    let outer = tempfile::Builder::new()
        .prefix("xbundle-hostile-")
        .tempdir()
        .unwrap();
    let repo_dir = outer.path().join("repo");
    let canary = outer.path().join("canary");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in ["scenarios", "resources", "platforms"] {
        copy_tree(&source.join(dir), &repo_dir.join(dir));
    }
    std::fs::create_dir_all(canary.join("x")).unwrap();
    std::fs::write(canary.join("x/evil.sh"), "#!/bin/sh\n").unwrap();
    std::fs::write(canary.join("x/token"), "keep").unwrap();

    // redis stays a service (its password generated), so its service.json shapes one.
    let base = "[workspace]\ndefault-profile = \"p\"\n\n[profiles.p]\nscenario = \"picker-wheel\"\ntier = \"desktop\"\nplatforms = [\"linux-x64\"]\nswaps = { postgres = \"sqlite\" }\n";
    let secrets = "\n[profiles.p.secrets]\nredis_password = { class = \"generate\" }\n";
    let redis = "resources/redis/.vrooli/service.json";
    let redis_json = std::fs::read_to_string(source.join(redis)).unwrap();
    let picker = "scenarios/picker-wheel/.vrooli/service.json";
    let picker_json = std::fs::read_to_string(source.join(picker)).unwrap();

    // (what is edited, the new text, the message, the file the error must point into)
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "bundle.toml",
            format!("{base}{secrets}session_secret = {{ target = {{ type = \"file\", name = \"../../canary/x/token\" }} }}\n"),
            "a `..` component",
            "bundle.toml",
        ),
        (
            "bundle.toml",
            format!("{base}env = {{ \"A=B\" = \"x\" }}\n{secrets}"),
            "`A=B` is not a variable name",
            "bundle.toml",
        ),
        (
            "bundle.toml",
            format!("{base}env = {{ TOKEN = \"${{secret.nope}}\" }}\n{secrets}"),
            "refers to unknown secret `nope`",
            "bundle.toml",
        ),
        (
            "bundle.toml",
            format!("{base}{secrets}session_secret = {{ generator = {{ charset = \"alnum_sybmols\" }} }}\n"),
            "did you mean `alnum_symbols`?",
            "bundle.toml",
        ),
        (
            "bundle.toml",
            format!("{base}{secrets}session_secret = {{ generator = {{ length = 32, charset = \"0123456789\" }} }}\n"),
            "10 distinct characters: 32 of them give 106 bits",
            "bundle.toml",
        ),
        (
            "bundle.toml",
            format!("{base}{secrets}session_secret = {{ class = \"remote_fetch\", url = \"http://vault.example/s\" }}\n"),
            "http:// sends the secret in clear",
            "bundle.toml",
        ),
        (
            "bundle.toml",
            format!("{base}{secrets}session_secret = {{ class = \"user_prompt\", format = \"(a{{100}}){{100}}\" }}\n"),
            "format compiles to more than",
            "bundle.toml",
        ),
        (
            redis,
            redis_json.replace("\"redis\"\n      ]", "\"../../canary/x\"\n      ]"),
            "data directory `../../canary/x`: a `..` component",
            redis,
        ),
        (
            redis,
            redis_json.replace("\"binary\": \"redis-server\"", "\"binary\": \"../../canary/x/evil.sh\""),
            "binary `../../canary/x/evil.sh`",
            redis,
        ),
        (
            redis,
            redis_json.replace("\"name\": \"main\"", "\"name\": \"../x\""),
            "port name: `../x` is not an id",
            redis,
        ),
        (
            redis,
            redis_json.replace(
                "\"mode\": \"service\",",
                "\"mode\": \"service\", \"migrations\": [{\"version\": \"1\", \"command\": [\"/tmp/evil.sh\"]}],",
            ),
            "migration program `/tmp/evil.sh`: absolute path",
            redis,
        ),
        (
            picker,
            picker_json.replace("\"charset\": \"alnum\"", "\"charset\": \"alnum_sybmols\""),
            "did you mean `alnum_symbols`?",
            picker,
        ),
        (
            picker,
            picker_json.replace("\"api\": \"/health\"", "\"api\": \"/health\\r\\nX-Injected: 1\""),
            "an HTTP path holds no space or control character",
            picker,
        ),
        (
            picker,
            picker_json.replace("\"api\": {", "\"API/..\": {"),
            "port name of picker-wheel: `API/..` is not an id",
            picker,
        ),
    ];
    for (file, text, message, located) in cases {
        let original = match file {
            "bundle.toml" => format!("{base}{secrets}"),
            f if f == redis => redis_json.clone(),
            _ => picker_json.clone(),
        };
        assert_ne!(text, original, "the edit for {message:?} changes nothing");
        // Fresh copies of the edited files each time.
        std::fs::write(repo_dir.join(redis), &redis_json).unwrap();
        std::fs::write(repo_dir.join(picker), &picker_json).unwrap();
        std::fs::write(repo_dir.join("bundle.toml"), format!("{base}{secrets}")).unwrap();
        // The unedited profile is valid: the error below is the edit's.
        let ok = std::process::Command::new(common::BIN)
            .arg("--root")
            .arg(&repo_dir)
            .arg("check")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        std::fs::write(repo_dir.join(file), &text).unwrap();
        let repo_before = tree(&repo_dir);
        let canary_before = tree(&canary);
        for command in ["check", "export", "assemble"] {
            let output = std::process::Command::new(common::BIN)
                .current_dir(&repo_dir)
                .arg("--root")
                .arg(&repo_dir)
                .arg(command)
                .env("NO_COLOR", "1")
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(
                output.status.code(),
                Some(2),
                "{command}: {message}: {stderr}"
            );
            assert!(
                stderr.contains(message),
                "{command}: expected {message:?} in {stderr}"
            );
            assert!(
                stderr.contains(&format!("{located}:")),
                "{command}: {message}: not located in {located}: {stderr}"
            );
            assert_eq!(
                tree(&repo_dir),
                repo_before,
                "{command} wrote into the repository"
            );
            assert_eq!(tree(&canary), canary_before, "{command} touched the canary");
            assert!(!repo_dir.join("dist").exists());
        }
    }
}
