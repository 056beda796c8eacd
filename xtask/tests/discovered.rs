//! Discovered inputs through declared tasks' depfiles (issue 9, items 1 and 2): the files a
//! depfile lists are re-checked before a cached result is used; files it does not list never
//! re-run the task; `explain`, `--dry-run`, `-v` and the JSON events say why.

use crate::common;

use common::{Canary, Repo};

/// A tiny "compiler" in `app/`: `src/main.c` names its headers (`#include "x.h"`), which live in
/// the root's `include/`; the object is the source followed by the headers, and the depfile
/// lists them as gcc would from `app/` (`../include/x.h`), plus a system header outside the
/// repository (ignored).
const BUNDLE: &str = r#"
[tasks.cc]
cwd = "app"
run = '''
mkdir -p build
deps=""
for h in $(sed -n 's/^#include "\(.*\)"$/\1/p' src/main.c); do deps="$deps ../include/$h"; done
cat src/main.c $deps > build/main.o
printf 'build/main.o: src/main.c%s \\\n /usr/include/stdio.h\n' "$deps" > build/main.d
'''
inputs = ["src/**"]
outputs = ["build/main.o", "build/main.d"]
depfile = "build/main.d"

[tasks.link]
cwd = "app"
run = "cat build/main.o > build/app"
outputs = ["build/app"]
deps = ["cc"]
"#;

fn repo(main: &str) -> Repo {
    Repo::new(
        BUNDLE,
        &[
            ("app/src/main.c", main),
            ("include/a.h", "int a;\n"),
            ("include/b.h", "int b;\n"),
        ],
    )
}

/// Runs `task` with JSON events and returns the run after checking it succeeded.
fn build(repo: &Repo) -> common::Run {
    let run = repo.json(&["task"]);
    run.assert_code(0);
    run
}

#[test]
fn editing_a_discovered_input_reruns_and_every_view_says_why() {
    let repo = repo("#include \"a.h\"\nint main;\n");
    let run = build(&repo);
    assert_eq!(run.status("task:cc"), "ran");
    assert_eq!(
        repo.read("app/build/app"),
        "#include \"a.h\"\nint main;\nint a;\n"
    );

    // Unchanged, then a header the depfile does not list: nothing runs.
    assert_eq!(build(&repo).counts(), (0, 2, 0, 0));
    repo.write("include/b.h", "int b = 2;\n");
    repo.write("include/unrelated.h", "new file\n");
    let run = build(&repo);
    assert_eq!(run.counts(), (0, 2, 0, 0), "{run}");
    assert!(run.started().is_empty(), "{run}");

    // The listed header changes: --dry-run and explain say why, without running anything.
    repo.write("include/a.h", "int a = 1;\n");
    let plan = repo.json(&["task", "--dry-run"]);
    plan.assert_code(0);
    let cc = plan
        .events("plan")
        .into_iter()
        .find(|event| event["id"] == "task:cc")
        .expect("a plan event for task:cc")
        .clone();
    assert_eq!(cc["expected"], "run", "{plan}");
    assert_eq!(
        common::strings(&cc["reasons"]),
        ["discovered input include/a.h changed"]
    );
    let explain = repo.human(&["explain", "cc"]);
    explain.assert_code(0);
    assert!(
        explain
            .stdout
            .contains("  would run because:\n    - discovered input include/a.h changed\n"),
        "{explain}"
    );
    assert_eq!(
        repo.read("app/build/main.o"),
        "#include \"a.h\"\nint main;\nint a;\n"
    );

    // The build: `-v` names the reason, the JSON events carry it, the output is fresh.
    let human = repo.human(&["-v", "task"]);
    human.assert_code(0);
    assert!(
        format!("{}{}", human.stdout, human.stderr)
            .contains("task:cc (discovered input include/a.h changed)"),
        "{human}"
    );
    assert_eq!(
        repo.read("app/build/app"),
        "#include \"a.h\"\nint main;\nint a = 1;\n"
    );
    repo.write("include/a.h", "int a = 2;\n");
    let run = build(&repo);
    assert_eq!(
        run.reasons("task:cc"),
        ["discovered input include/a.h changed"]
    );
    assert_eq!(run.status("task:link"), "ran");
    let explain = repo.human(&["explain", "cc"]);
    assert!(
        explain
            .stdout
            .contains(" ago because: discovered input include/a.h changed\n"),
        "{explain}"
    );

    // Outputs deleted: restored from the cache (the discovered inputs still hold).
    repo.remove("app/build/main.o");
    let run = build(&repo);
    assert_eq!(run.status("task:cc"), "cached", "{run}");
    assert_eq!(
        repo.read("app/build/main.o"),
        "#include \"a.h\"\nint main;\nint a = 2;\n"
    );
}

#[test]
fn dependencies_added_to_and_removed_from_the_depfile() {
    let repo = repo("#include \"a.h\"\n");
    build(&repo);

    // Add b.h to the discovered set (the source changes: a declared input).
    repo.write("app/src/main.c", "#include \"a.h\"\n#include \"b.h\"\n");
    assert_eq!(
        build(&repo).reasons("task:cc"),
        ["input app/src/main.c changed"]
    );
    assert_eq!(
        repo.read("app/build/main.d"),
        "build/main.o: src/main.c ../include/a.h ../include/b.h \\\n /usr/include/stdio.h\n"
    );
    repo.write("include/b.h", "int b = 1;\n");
    let run = build(&repo);
    assert_eq!(
        run.reasons("task:cc"),
        ["discovered input include/b.h changed"]
    );

    // Remove a.h from the set: editing it no longer runs anything.
    repo.write("app/src/main.c", "#include \"b.h\"\n");
    assert_eq!(build(&repo).status("task:cc"), "ran");
    repo.write("include/a.h", "int a = 9;\n");
    let run = build(&repo);
    assert_eq!(run.counts(), (0, 2, 0, 0), "{run}");

    // A listed header disappears: explain says so; back with the same bytes, it is a hit.
    let kept = repo.read("include/b.h");
    repo.remove("include/b.h");
    let explain = repo.json(&["explain", "cc"]);
    let event = explain.events("explain")[0].clone();
    assert_eq!(
        common::strings(&event["reasons"]),
        ["discovered input include/b.h disappeared"]
    );
    repo.write("include/b.h", &kept);
    let run = build(&repo);
    assert_eq!(run.counts(), (0, 2, 0, 0), "{run}");

    // A header that was absent when the task ran (looked for, not found) appearing re-runs it.
    // It is looked for at the root, where the task creates its output directory: not a change
    // while the task ran.
    let repo = Repo::new(
        r#"
[tasks.probe]
run = "mkdir -p out && { cat opt.h 2>/dev/null || echo none; } > out/o && echo 'out/o: opt.h' > out/o.d"
outputs = ["out/o", "out/o.d"]
depfile = "out/o.d"
"#,
        &[],
    );
    let run = build(&repo);
    assert!(run.warnings().is_empty(), "{run}");
    assert_eq!(repo.read("out/o"), "none\n");
    assert_eq!(build(&repo).counts(), (0, 1, 0, 0));
    repo.write("opt.h", "here\n");
    let run = build(&repo);
    assert_eq!(
        run.reasons("task:probe"),
        ["discovered input opt.h appeared"]
    );
    assert_eq!(repo.read("out/o"), "here\n");
}

#[test]
fn depfile_must_be_an_output_inside_the_task() {
    for (depfile, message) in [
        (
            "\"build/other.d\"",
            "depfile `build/other.d` is not one of its outputs",
        ),
        ("\"../x.d\"", "depfile"),
        ("\"/tmp/x.d\"", "depfile"),
    ] {
        let repo = Repo::new(
            &format!(
                "[tasks.cc]\nrun = \"true\"\noutputs = [\"build/main.d\"]\ndepfile = {depfile}\n"
            ),
            &[],
        );
        let run = repo.json(&["check"]);
        run.assert_code(2);
        let diagnostic = run.diagnostic();
        assert!(
            diagnostic["message"].as_str().unwrap().contains(message),
            "{run}"
        );
        assert_eq!(diagnostic["line"], 4, "{run}");
    }
}

#[test]
fn bad_depfiles_fail_the_task_by_name_and_cache_nothing() {
    let repo = Repo::in_sandbox("[workspace]\n", &[]);
    let canary = Canary::plant(&repo.sandbox().join("canary"), &[("secret.h", "secret\n")]);
    std::os::unix::fs::symlink(repo.sandbox().join("canary/secret.h"), repo.join("evil.h"))
        .unwrap();
    for (script, message) in [
        ("true", "did not write its depfile `out/o.d`"),
        (
            "echo 'junk' > out/o.d",
            "depfile `out/o.d`, line 1: expected `target: dependencies`",
        ),
        (
            "printf 'out/o: \\377.h\\n' > out/o.d",
            "`\\xff.h` is not valid UTF-8",
        ),
        ("echo 'out/o: evil.h' > out/o.d", "outside the workspace"),
    ] {
        repo.write(
            "bundle.toml",
            format!(
                "[tasks.t]\nrun = \"mkdir -p out && echo x > out/o && {}\"\noutputs = [\"out/o\", \"out/o.d\"]\ndepfile = \"out/o.d\"\n",
                script.replace('\\', "\\\\").replace('"', "\\\"")
            ),
        );
        let run = repo.json(&["task"]);
        run.assert_code(1);
        let error = run.task("task:t")["error"].as_str().unwrap().to_string();
        assert!(error.contains(message), "{script}: {error}\n{run}");
        // Nothing was cached: the next run runs it again.
        let again = repo.json(&["task"]);
        assert_eq!(again.status("task:t"), "failed", "{again}");
        canary.assert_intact(script);
    }
}

#[test]
fn a_discovered_input_changed_while_the_task_ran_is_never_trusted() {
    // The command reads the header, then (like an editor saving during the build) it changes:
    // the version read is not the one digested afterwards.
    let repo = Repo::new(
        r#"
[tasks.t]
run = "mkdir -p out && cat inc/a.h > out/o && echo edited >> inc/a.h && echo 'out/o: inc/a.h' > out/o.d"
outputs = ["out/o", "out/o.d"]
depfile = "out/o.d"
"#,
        &[("inc/a.h", "one\n")],
    );
    let run = build(&repo);
    assert_eq!(
        run.warnings(),
        ["task:t: discovered input inc/a.h changed while the task ran; the next run runs it again"]
    );
    // Nothing changed since: the entry would match the tree, but it is not trusted.
    let explain = repo.json(&["explain", "t"]);
    assert_eq!(
        common::strings(&explain.events("explain")[0]["reasons"]),
        ["discovered input inc/a.h changed while the task last ran"]
    );
    let run = build(&repo);
    assert_eq!(
        run.reasons("task:t"),
        ["discovered input inc/a.h changed while the task last ran"]
    );
    assert_eq!(repo.read("out/o"), "one\nedited\n");
}
