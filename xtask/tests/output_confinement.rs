//! Nothing outside its box (DESIGN.md §4.8, issue 8 items 1, 5 and 7): the engine never
//! deletes or writes through a symbolic link, never restores what a cache entry says without
//! checking it, and never skips a matching file whose name is not UTF-8.
//!
//! Every test runs in a sandbox: the repository at `<tmp>/repo` and a canary tree beside it that
//! must stay byte for byte (and mode for mode, link for link) as it was.

use crate::common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use common::{Canary, ForgedOutput, Repo, Run, forge_entry};

const BUILD: &str = r#"
[tasks.gen]
run = "mkdir -p build/deep && cp src/in.txt build/a.txt && echo b > build/deep/b.txt"
inputs = ["src/in.txt"]
outputs = ["build/**"]
"#;

/// The one failed task's error, from the run's events.
#[track_caller]
fn error_of(run: &Run, id: &str) -> String {
    assert_eq!(run.status(id), "failed", "{run}");
    run.task(id)["error"]
        .as_str()
        .expect("an error")
        .to_string()
}

#[test]
fn a_symlinked_output_directory_is_an_error_and_its_target_is_untouched() {
    let repo = Repo::in_sandbox(BUILD, &[("src/in.txt", "in\n")]);
    let canary = Canary::plant(&repo.sandbox().join("elsewhere"), &[]);
    symlink(canary.dir.join("build"), repo.join("build")).unwrap();

    let run = repo.json(&["task"]);
    run.assert_code(1);
    let error = error_of(&run, "task:gen");
    assert!(
        error.contains("`build` is a symbolic link where a directory is expected"),
        "{error}"
    );
    canary.assert_intact("a build with build -> elsewhere/build");
    assert!(
        fs::symlink_metadata(repo.join("build"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link itself is left for the user to fix"
    );
}

#[test]
fn a_pure_cache_hit_after_the_output_directory_became_a_link_writes_nothing_there() {
    let repo = Repo::in_sandbox(BUILD, &[("src/in.txt", "in\n")]);
    repo.json(&["task"]).assert_code(0);
    let canary = Canary::plant(
        &repo.sandbox().join("elsewhere"),
        &[("build/a.txt", "not the output\n")],
    );
    fs::remove_dir_all(repo.join("build")).unwrap();
    symlink(canary.dir.join("build"), repo.join("build")).unwrap();

    // Inputs unchanged: the key is in the cache and the ledger; the engine would restore
    // build/a.txt and remove build/x.txt, deep/…: all of it in the link's target.
    let run = repo.json(&["task"]);
    run.assert_code(1);
    let error = error_of(&run, "task:gen");
    assert!(error.contains("`build` is a symbolic link"), "{error}");
    canary.assert_intact("a cache hit with build -> elsewhere/build");

    // Replacing the link by a directory lets the next run restore into it.
    fs::remove_file(repo.join("build")).unwrap();
    let run = repo.json(&["task"]);
    run.assert_code(0);
    assert_eq!(run.status("task:gen"), "cached", "{run}");
    assert_eq!(repo.read("build/a.txt"), "in\n");
    canary.assert_intact("after the link was replaced");
}

#[test]
fn a_restore_never_writes_through_a_linked_directory_below_the_walk() {
    // The walk of `gen/**` starts above the link and never enters it; restoring
    // `gen/sub/result.gen` would have to go through it, and refuses.
    let bundle = r#"
[tasks.gen]
run = "mkdir -p gen/sub && cp src/in.txt gen/sub/result.gen && echo top > gen/top.gen"
inputs = ["src/in.txt"]
outputs = ["gen/**"]
"#;
    let repo = Repo::in_sandbox(bundle, &[("src/in.txt", "in\n")]);
    repo.json(&["task"]).assert_code(0);
    let canary = Canary::plant(
        &repo.sandbox().join("elsewhere"),
        &[("sub/stale.gen", "stale?\n")],
    );
    fs::remove_dir_all(repo.join("gen/sub")).unwrap();
    symlink(canary.dir.join("sub"), repo.join("gen/sub")).unwrap();

    let run = repo.json(&["task"]);
    run.assert_code(1);
    let error = error_of(&run, "task:gen");
    assert!(error.contains("`gen/sub` is a symbolic link"), "{error}");
    canary.assert_intact("a restore below a linked directory");
    // The same link met by a run (forced): the clean-up removes the link itself, never what
    // it points to, and the task recreates a real directory.
    let run = repo.json(&["task", "--force"]);
    run.assert_code(0);
    assert!(fs::symlink_metadata(repo.join("gen/sub")).unwrap().is_dir());
    assert_eq!(repo.read("gen/sub/result.gen"), "in\n");
    canary.assert_intact("a run with a link below the output directory");
}

#[test]
fn a_symlinked_cwd_or_cwd_component_is_an_error() {
    for (cwd, link) in [("web", "web"), ("apps/web", "apps")] {
        let bundle = format!(
            r#"
[tasks.site]
run = "mkdir -p dist && echo page > dist/index.html"
cwd = "{cwd}"
outputs = ["dist/**"]
"#
        );
        let repo = Repo::in_sandbox(&bundle, &[]);
        let canary = Canary::plant(
            &repo.sandbox().join("elsewhere"),
            &[
                ("web/dist/index.html", "canary page\n"),
                ("apps/web/dist/index.html", "canary page\n"),
            ],
        );
        if let Some(parent) = Path::new(link).parent() {
            fs::create_dir_all(repo.join(parent.to_str().unwrap())).unwrap();
        }
        symlink(canary.dir.join(link), repo.join(link)).unwrap();

        let run = repo.json(&["task"]);
        // Whether `check`-time validation (exit 2) or the engine (exit 1) refuses it, the
        // path is named and nothing behind the link is touched.
        assert!(run.code == 1 || run.code == 2, "{run}");
        assert!(
            run.stdout.contains(&format!("`{link}` is a symbolic link"))
                || run.stderr.contains(&format!("`{link}`")),
            "cwd {cwd}: {run}"
        );
        canary.assert_intact(&format!("a task with cwd {cwd} and {link} a link"));
    }
}

#[test]
fn input_links_inside_count_as_their_file_and_links_outside_are_errors() {
    let bundle = r#"
[tasks.cat]
run = "cat src/* > out.txt"
inputs = ["src/**"]
outputs = ["out.txt"]
"#;
    let repo = Repo::in_sandbox(bundle, &[("src/a.txt", "a\n"), ("data/b.txt", "b\n")]);
    symlink("../data/b.txt", repo.join("src/b.txt")).unwrap();
    let run = repo.json(&["task"]);
    run.assert_code(0);
    assert_eq!(repo.read("out.txt"), "a\nb\n");

    // The link's target is an input: editing it reruns the task.
    repo.write("data/b.txt", "b2\n");
    let run = repo.json(&["task"]);
    run.assert_code(0);
    assert_eq!(run.status("task:cat"), "ran", "{run}");
    assert_eq!(run.reasons("task:cat"), ["input src/b.txt changed"]);
    assert_eq!(repo.read("out.txt"), "a\nb2\n");

    // A link leading outside the repository is never read into the key silently.
    let canary = Canary::plant(&repo.sandbox().join("elsewhere"), &[]);
    symlink(canary.dir.join("precious.txt"), repo.join("src/secret.txt")).unwrap();
    let run = repo.json(&["task"]);
    run.assert_code(1);
    let error = error_of(&run, "task:cat");
    assert!(
        error.contains("`src/secret.txt` is a symbolic link to")
            && error.contains("outside the workspace"),
        "{error}"
    );
    canary.assert_intact("an input link leading outside");
}

#[test]
fn a_matching_name_that_is_not_utf8_is_an_error_naming_it() {
    // The issue's reproduction: such an input was not hashed, and editing it left a stale output.
    let bundle = r#"
[tasks.cat]
run = "cat src/* > out.txt"
inputs = ["src/**"]
outputs = ["out.txt"]
"#;
    let repo = Repo::in_sandbox(bundle, &[("src/a.txt", "a\n")]);
    let odd = repo
        .join("src")
        .join(std::ffi::OsStr::from_bytes(b"\xff.txt"));
    fs::write(&odd, "odd\n").unwrap();
    let run = repo.json(&["task"]);
    run.assert_code(1);
    let error = error_of(&run, "task:cat");
    assert!(
        error.contains(
            r"`src/\xff.txt` matches a pattern of this task but its name is not valid UTF-8"
        ),
        "{error}"
    );
    assert!(!repo.exists("out.txt"), "the task did not run");
    // A non-matching name is fine.
    fs::rename(
        &odd,
        repo.path().join(std::ffi::OsStr::from_bytes(b"\xfe.orig")),
    )
    .unwrap();
    repo.json(&["task"]).assert_code(0);

    // An output with such a name (in a directory with such a name): an error, nothing cached.
    let bundle = r#"
[tasks.gen]
run = "mkdir -p out/$(printf 'd\\376') && echo x > out/$(printf 'd\\376')/x.bin"
outputs = ["out/**"]
"#;
    let repo = Repo::in_sandbox(bundle, &[]);
    let run = repo.json(&["task"]);
    run.assert_code(1);
    let error = error_of(&run, "task:gen");
    assert!(error.contains(r"`out/d\xfe/x.bin`"), "{error}");
    let run = repo.json(&["task"]);
    run.assert_code(1);
    assert_eq!(
        run.status("task:gen"),
        "failed",
        "nothing was cached: {run}"
    );
}

/// A built repository whose task's key is known, with `.git/hooks/` and a canary beside it.
fn built_for_forgery() -> (Repo, Canary, String) {
    let bundle = r#"
[tasks.gen]
run = "mkdir -p out && cp src/in.txt out/data.txt"
inputs = ["src/in.txt"]
outputs = ["out/**"]
"#;
    let repo = Repo::in_sandbox(bundle, &[("src/in.txt", "in\n"), (".git/HEAD", "ref\n")]);
    fs::create_dir_all(repo.join(".git/hooks")).unwrap();
    let run = repo.json(&["task"]);
    run.assert_code(0);
    let key = run.task("task:gen")["key"].as_str().unwrap().to_string();
    let canary = Canary::plant(&repo.sandbox().join("outside"), &[]);
    (repo, canary, key)
}

#[test]
fn forged_cache_entries_are_never_restored() {
    let (repo, canary, key) = built_for_forgery();
    let absolute = repo.sandbox().join("outside/abs.txt");
    let absolute = absolute.to_str().unwrap();
    let payload = b"#!/bin/sh\necho owned\n";
    let cases: Vec<(&str, Vec<ForgedOutput>, &str)> = vec![
        (
            "a path with ..",
            vec![ForgedOutput {
                path: "../outside/x",
                executable: false,
                contents: b"x",
            }],
            "`..` component",
        ),
        (
            "an absolute path",
            vec![ForgedOutput {
                path: absolute,
                executable: false,
                contents: b"x",
            }],
            "absolute path",
        ),
        (
            "an executable git hook",
            vec![ForgedOutput {
                path: ".git/hooks/pre-commit",
                executable: true,
                contents: payload,
            }],
            "inside `.git`",
        ),
        (
            "a source file outside the task's outputs",
            vec![ForgedOutput {
                path: "src/in.txt",
                executable: true,
                contents: payload,
            }],
            "not under the task's declared outputs",
        ),
        (
            "bundle.toml",
            vec![ForgedOutput {
                path: "bundle.toml",
                executable: false,
                contents: b"[tasks.evil]\nrun = \"true\"\n",
            }],
            "protected",
        ),
    ];
    let cache = repo.join(".xbundle/cache");
    for (what, outputs, problem) in cases {
        // A legitimate output next to the forged one: the entry is refused whole.
        let mut outputs = outputs;
        outputs.push(ForgedOutput {
            path: "out/data.txt",
            executable: false,
            contents: b"forged\n",
        });
        outputs.sort_by(|a, b| a.path.cmp(b.path));
        forge_entry(&cache, &key, "task:gen", &outputs);
        fs::remove_file(repo.join("out/data.txt")).unwrap();

        let run = repo.json(&["task"]);
        run.assert_code(0);
        let warnings = run.warnings();
        assert!(
            warnings.len() == 1
                && warnings[0].starts_with("task:gen: cached result unusable (output ")
                && warnings[0].contains(problem)
                && warnings[0].ends_with("running the task again"),
            "{what}: {warnings:#?}"
        );
        assert_eq!(run.status("task:gen"), "ran", "{what}: {run}");
        assert_eq!(repo.read("out/data.txt"), "in\n", "{what}");
        assert_eq!(repo.read("src/in.txt"), "in\n", "{what}");
        assert!(repo.read("bundle.toml").contains("[tasks.gen]"), "{what}");
        assert!(!repo.exists(".git/hooks/pre-commit"), "{what}");
        // `outside/` is the canary: `x` there keeps its contents, `abs.txt` never appears.
        canary.assert_intact(what);
        // The forged entry was replaced by the real one.
        repo.json(&["cache", "verify"]).assert_code(0);
    }
}

#[test]
fn a_forged_entry_with_a_mode_beyond_0755_cannot_be_expressed() {
    // The entry format has no mode: only "executable", restored as 0755 (else 0644). An extra
    // field smuggling a mode makes the entry corrupt (strict parsing).
    let (repo, canary, key) = built_for_forgery();
    let cache = repo.join(".xbundle/cache");
    let text = repo.packed_entry(&key).expect("the entry").text();
    // Rewritten as a file of its own, which the store reads before the pack.
    let entry = cache.join("ac").join(&key);
    let (_, body) = text.split_once('\n').unwrap();
    let body = body.replacen(
        r#""executable":false"#,
        r#""executable":false,"mode":4095"#,
        1,
    );
    let checksum = common::sha256_hex(format!("{key}\n{body}").as_bytes());
    fs::write(&entry, format!("xbundle-ac-v2 {key} {checksum}\n{body}")).unwrap();
    fs::remove_file(repo.join("out/data.txt")).unwrap();
    let run = repo.json(&["task"]);
    run.assert_code(0);
    assert!(
        run.warnings()
            .iter()
            .any(|w| w.contains("is corrupt") && w.contains("unknown field `mode`")),
        "{run}"
    );
    let mode = fs::metadata(repo.join("out/data.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7000, 0, "no setuid, setgid or sticky bit");
    canary.assert_intact("a forged mode");
}

#[test]
fn cache_verify_finds_every_forged_entry() {
    let (repo, canary, key) = built_for_forgery();
    let cache = repo.join(".xbundle/cache");
    let absolute = repo.sandbox().join("outside/abs.txt");
    let forged: [(&str, &str, &str, &str); 5] = [
        ("1", "task:gen", "../outside/x", "`..` component"),
        ("2", "task:gen", absolute.to_str().unwrap(), "absolute path"),
        ("3", "task:gen", ".git/hooks/pre-commit", "inside `.git`"),
        // Structurally fine, but not an output of the task it claims to be from.
        (
            "4",
            "task:gen",
            "src/in.txt",
            "not under the task's declared outputs",
        ),
        // Claims a task the graph does not have: the structural rules still apply.
        ("5", "task:nonexistent", "a/./b", "`.` component"),
    ];
    let mut keys = Vec::new();
    for (seed, task, path, _) in forged {
        let forged_key = common::sha256_hex(seed.as_bytes());
        forge_entry(
            &cache,
            &forged_key,
            task,
            &[ForgedOutput {
                path,
                executable: true,
                contents: b"#!/bin/sh\necho owned\n",
            }],
        );
        keys.push(forged_key);
    }
    let run = repo.json(&["cache", "verify"]);
    run.assert_code(1);
    let report = &run.events("cache-verify")[0]["report"];
    let problems = common::strings(&report["problems"]);
    assert_eq!(problems.len(), forged.len(), "{run}");
    for ((_, _, _, problem), forged_key) in forged.iter().zip(&keys) {
        assert!(
            problems
                .iter()
                .any(|p| p.contains(forged_key.as_str()) && p.contains(problem)),
            "no problem names {forged_key} ({problem}): {problems:#?}"
        );
        assert!(!cache.join("ac").join(forged_key).exists(), "removed");
    }
    // The real entry is kept and still restores.
    assert!(repo.packed_entry(&key).is_some());
    repo.json(&["cache", "verify"]).assert_code(0);
    fs::remove_file(repo.join("out/data.txt")).unwrap();
    let run = repo.json(&["task"]);
    assert_eq!(run.status("task:gen"), "cached", "{run}");
    canary.assert_intact("cache verify");
}
