//! A shell task whose `run` is a plain command starts without `sh` (see the engine's `direct`
//! module), and gives exactly what `sh` (dash) gives: the same arguments (patterns expanded as
//! dash expands them), files, environment, output, exit status and messages. Each test runs
//! the same repository twice, once as it is and once with `XBUNDLE_DIRECT_EXEC=0` (every
//! command through `sh`), and compares; an awk program reports its parent process, so a test
//! also knows which way each command started.

use crate::common;

use common::Repo;

/// Prints its arguments, one per line, then its parent process's name into `out/parent.txt`.
const ARGS_AWK: &str = r#"BEGIN {
    for (i = 1; i < ARGC; i++) print ARGV[i]
    getline stat < "/proc/self/stat"
    split(stat, field, " ")
    getline parent < ("/proc/" field[4] "/comm")
    print parent > "out/parent.txt"
    exit
}
"#;

const TASKS: &str = r#"
[tasks.args]
cwd = "pkg"
run = "awk -f args.awk src/*.txt  src/b?.txt src/none*.zz a=b -x   >out/args.txt"
inputs = ["args.awk"]
outputs = ["out/args.txt", "out/parent.txt"]

[tasks.env]
cwd = "pkg"
run = "env > out/env.txt"
outputs = ["out/env.txt"]

[tasks.root_env]
run = "env > out/root-env.txt"
outputs = ["out/root-env.txt"]

[tasks.io]
cwd = "pkg"
run = "sort -r < src/a.txt >> out/sorted.txt"
inputs = ["src/a.txt"]
outputs = ["out/sorted.txt"]

[tasks.say]
cwd = "pkg"
run = "head -n 2 src/a.txt"
inputs = ["src/a.txt"]
"#;

/// A repository of [`TASKS`] with the files its patterns meet: hidden, upper case, `_`, `-`,
/// a directory whose name matches.
fn repo() -> Repo {
    let repo = Repo::new(
        TASKS,
        &[
            ("pkg/args.awk", ARGS_AWK),
            ("pkg/src/a.txt", "one\ntwo\nthree\n"),
            ("pkg/src/B.txt", ""),
            ("pkg/src/_c.txt", ""),
            ("pkg/src/.hidden.txt", ""),
            ("pkg/src/a-1.txt", ""),
            ("pkg/src/a0.txt", ""),
            ("pkg/src/b1.txt", ""),
            ("pkg/src/b22.txt", ""),
            ("pkg/src/dir.txt/x", ""),
            ("pkg/out/.keep", ""),
            ("out/.keep", ""),
        ],
    );
    std::os::unix::fs::symlink(repo.join("pkg"), repo.join("pkg-link")).unwrap();
    repo
}

/// Runs `args` in `repo` with nothing in its environment but `PATH` (the sandbox's `bin`
/// first), `HOME`, `NO_COLOR` and `PWD` naming `pkg` through a link; `through_shell` sets
/// `XBUNDLE_DIRECT_EXEC=0`.
fn run(repo: &Repo, args: &[&str], through_shell: bool) -> common::Run {
    let path = format!(
        "{}:{}",
        repo.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = repo.command();
    command
        .env_clear()
        .env("PATH", path)
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .env("NO_COLOR", "1")
        .env("PWD", repo.join("pkg-link"))
        .args(["--message-format", "json"])
        .args(args);
    if through_shell {
        command.env("XBUNDLE_DIRECT_EXEC", "0");
    }
    common::Run::parse_json(args, command.output().expect("run xtask"))
}

/// `text` with the repository's path replaced by `<repo>`, lines sorted when `sort`, and the
/// switch itself left out.
fn normalized(repo: &Repo, text: &str, sort: bool) -> Vec<String> {
    let root = repo.path().to_str().unwrap();
    let mut lines: Vec<String> = text
        .lines()
        .filter(|line| !line.starts_with("XBUNDLE_DIRECT_EXEC="))
        .map(|line| line.replace(root, "<repo>"))
        .collect();
    if sort {
        lines.sort();
    }
    lines
}

fn task_output(run: &common::Run, id: &str) -> Vec<(String, String)> {
    run.events("task-output")
        .into_iter()
        .filter(|event| event["id"] == id)
        .map(|event| {
            (
                event["stream"].as_str().unwrap().to_string(),
                event["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn skip_unless_dash() -> bool {
    let dash = std::fs::canonicalize("/bin/sh")
        .is_ok_and(|real| real.file_name() == Some(std::ffi::OsStr::new("dash")));
    if !dash {
        eprintln!("skipped: /bin/sh is not dash (commands always start through sh)");
    }
    !dash
}

#[test]
fn a_plain_command_starts_without_sh_and_gets_what_sh_would_give_it() {
    if skip_unless_dash() {
        return;
    }
    let direct = repo();
    let shell = repo();
    let by_direct = run(&direct, &["task"], false);
    by_direct.assert_code(0);
    let by_shell = run(&shell, &["task"], true);
    by_shell.assert_code(0);

    // Which way each started: awk's parent is xbundle itself, or a shell.
    assert_ne!(direct.read("pkg/out/parent.txt"), "sh\n");
    assert_eq!(shell.read("pkg/out/parent.txt"), "sh\n");

    let expected_args = [
        "src/B.txt",
        "src/_c.txt",
        "src/a-1.txt",
        "src/a.txt",
        "src/a0.txt",
        "src/b1.txt",
        "src/b22.txt",
        "src/dir.txt",
        "src/b1.txt",
        "src/none*.zz",
        "a=b",
        "-x",
    ];
    assert_eq!(
        direct.read("pkg/out/args.txt").lines().collect::<Vec<_>>(),
        expected_args
    );
    for file in ["pkg/out/args.txt", "pkg/out/sorted.txt"] {
        assert_eq!(direct.read(file), shell.read(file), "{file}");
    }
    assert_eq!(direct.read("pkg/out/sorted.txt"), "two\nthree\none\n");
    for file in ["pkg/out/env.txt", "out/root-env.txt"] {
        assert_eq!(
            normalized(&direct, &direct.read(file), true),
            normalized(&shell, &shell.read(file), true),
            "{file}"
        );
    }
    // The PWD dash gives: kept where it names the directory (through a link), else the
    // directory's physical path.
    let pwd = |file: &str| {
        normalized(&direct, &direct.read(file), true)
            .into_iter()
            .find(|line| line.starts_with("PWD="))
    };
    assert_eq!(
        pwd("pkg/out/env.txt").as_deref(),
        Some("PWD=<repo>/pkg-link")
    );
    assert_eq!(pwd("out/root-env.txt").as_deref(), Some("PWD=<repo>"));
    // What a command prints reaches the task's output the same way.
    assert_eq!(
        task_output(&by_direct, "task:say"),
        [("stdout".to_string(), "one\ntwo\n".to_string())]
    );
    assert_eq!(
        task_output(&by_direct, "task:say"),
        task_output(&by_shell, "task:say")
    );
    // The two ways are the same work: the same keys.
    for id in ["task:args", "task:env", "task:io", "task:say"] {
        assert_eq!(by_direct.task(id)["key"], by_shell.task(id)["key"], "{id}");
    }
}

const FAILING: &str = r#"
[tasks.missing]
run = "cat src/nothing.txt > out/x.txt"
outputs = ["out/x.txt"]

[tasks.killed]
run = "selfkill"
outputs = ["x.txt"]

[tasks.aborted]
run = "selfkill -ABRT"
outputs = ["a.txt"]

[tasks.piped]
run = "selfkill -PIPE"
outputs = ["p.txt"]

[tasks.absent]
run = "no-such-program-here > out/y.txt"
outputs = ["out/y.txt"]
"#;

#[test]
fn a_failing_command_fails_with_the_status_and_messages_sh_gives() {
    if skip_unless_dash() {
        return;
    }
    let script = "#!/bin/sh\nulimit -c 0\nkill ${1:--TERM} $$\n";
    let files = [("bin/selfkill", script), ("out/.keep", "")];
    let direct = Repo::new(FAILING, &files);
    let shell = Repo::new(FAILING, &files);
    for repo in [&direct, &shell] {
        use std::os::unix::fs::PermissionsExt;
        let path = repo.join("bin/selfkill");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for (task, code, message) in [
        (
            "missing",
            1,
            "cat: src/nothing.txt: No such file or directory\n",
        ),
        ("killed", 143, "Terminated\n"),
        ("aborted", 134, "Aborted\n"),
        ("piped", 141, ""),
        ("absent", 127, "sh: 1: no-such-program-here: not found\n"),
    ] {
        let id = format!("task:{task}");
        let by_direct = run(&direct, &["task", task], false);
        let by_shell = run(&shell, &["task", task], true);
        by_direct.assert_code(1);
        by_shell.assert_code(1);
        let error = |run: &common::Run| run.task(&id)["error"].as_str().unwrap().to_string();
        assert_eq!(
            error(&by_direct),
            format!("command exited with exit status: {code}"),
            "{task}"
        );
        assert_eq!(error(&by_direct), error(&by_shell), "{task}");
        let stderr = |run: &common::Run| -> String {
            task_output(run, &id)
                .into_iter()
                .filter(|(stream, _)| stream == "stderr")
                .map(|(_, text)| text)
                .collect()
        };
        assert_eq!(stderr(&by_direct), message, "{task}");
        assert_eq!(stderr(&by_direct), stderr(&by_shell), "{task}");
    }
    // The shell opened the redirection before finding no program: so did the direct start's
    // fallback.
    assert!(direct.exists("out/y.txt") && shell.exists("out/y.txt"));
}

#[test]
fn a_link_or_a_path_out_of_the_workspace_is_left_to_the_shell() {
    if skip_unless_dash() {
        return;
    }
    let tasks = r#"
[tasks.linked_dir]
run = "awk -f args.awk lnk/*.txt"
outputs = ["out/parent.txt"]

[tasks.linked_target]
run = "cat a.txt > linked/copy.txt"
outputs = ["out/copy.txt"]
"#;
    let files = [
        ("args.awk", ARGS_AWK),
        ("a.txt", "a\n"),
        ("src/x.txt", ""),
        ("src/y.txt", ""),
        ("out/.keep", ""),
    ];
    let direct = Repo::new(tasks, &files);
    let shell = Repo::new(tasks, &files);
    for repo in [&direct, &shell] {
        std::os::unix::fs::symlink("src", repo.join("lnk")).unwrap();
        std::os::unix::fs::symlink("out", repo.join("linked")).unwrap();
    }
    let by_direct = run(&direct, &["task", "linked_dir"], false);
    by_direct.assert_code(0);
    run(&shell, &["task", "linked_dir"], true).assert_code(0);
    // The pattern's directory is a link: listed by the shell, not through it by xbundle.
    assert_eq!(direct.read("out/parent.txt"), "sh\n");
    assert_eq!(
        task_output(&by_direct, "task:linked_dir"),
        [("stdout".to_string(), "lnk/x.txt\nlnk/y.txt\n".to_string())]
    );
    // The redirection's directory is a link: opened by the shell, which follows it.
    run(&direct, &["task", "linked_target"], false).assert_code(0);
    run(&shell, &["task", "linked_target"], true).assert_code(0);
    assert_eq!(direct.read("out/copy.txt"), "a\n");
    assert_eq!(shell.read("out/copy.txt"), "a\n");
}

#[test]
fn a_command_too_long_to_start_directly_fails_as_it_does_through_sh() {
    if skip_unless_dash() {
        return;
    }
    // 8,500 names of 250 bytes: past the kernel's 2 MiB for arguments (with the default 8 MiB
    // stack limit), so the direct start fails and the shell reports it, as it would have.
    let tasks = r#"
[tasks.long]
run = "cat src/*"
outputs = ["x.txt"]
"#;
    let name = "x".repeat(240);
    let runs: Vec<common::Run> = [false, true]
        .into_iter()
        .map(|through_shell| {
            let repo = Repo::new(tasks, &[]);
            std::fs::create_dir(repo.join("src")).unwrap();
            for i in 0..8500 {
                std::fs::write(repo.join(&format!("src/{i:05}{name}")), "").unwrap();
            }
            let run = run(&repo, &["task"], through_shell);
            run.assert_code(1);
            run
        })
        .collect();
    let error = |run: &common::Run| run.task("task:long")["error"].as_str().unwrap().to_string();
    assert_eq!(error(&runs[0]), "command exited with exit status: 126");
    assert_eq!(error(&runs[0]), error(&runs[1]));
    assert_eq!(
        task_output(&runs[0], "task:long"),
        [(
            "stderr".to_string(),
            "sh: 1: cat: Argument list too long\n".to_string()
        )]
    );
    assert_eq!(
        task_output(&runs[0], "task:long"),
        task_output(&runs[1], "task:long")
    );
}
