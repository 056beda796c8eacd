//! A shell task whose `run` is a plain command starts without `sh` (see the engine's `direct`
//! module), and gives exactly what `sh` (dash) gives: the same arguments (patterns expanded as
//! dash expands them), files, environment, output, exit status and messages. Each test runs
//! the same repository twice, once as it is and once with `XBUNDLE_DIRECT_EXEC=0` (every
//! command through `sh`), and compares; an awk program reports its parent process, so a test
//! also knows which way each command started.

use crate::common;

use common::Repo;

/// Prints its arguments, one per line, then into `out/parent.txt` its parent process's name and
/// whether it leads its process group.
const ARGS_AWK: &str = r#"BEGIN {
    for (i = 1; i < ARGC; i++) print ARGV[i]
    getline stat < "/proc/self/stat"
    split(stat, field, " ")
    getline parent < ("/proc/" field[4] "/comm")
    print parent > "out/parent.txt"
    print (field[1] == field[5] ? "group leader" : "group member") > "out/parent.txt"
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

/// Runs `args` in `repo` with nothing in its environment but `PATH` (the repository's `bin`,
/// `bin2` and `bin3/` first), `HOME`, `NO_COLOR` and `PWD` naming `pkg` through a link;
/// `through_shell` sets `XBUNDLE_DIRECT_EXEC=0`.
fn run(repo: &Repo, args: &[&str], through_shell: bool) -> common::Run {
    let path = format!(
        "{}:{}:{}/:{}",
        repo.join("bin").display(),
        repo.join("bin2").display(),
        repo.join("bin3").display(),
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

/// Starts `xtask ARGS` in `repo` with the repository's `bin` first in `PATH`, stderr discarded
/// and stdout to `stdout`: for a test that acts while it runs.
fn spawn_with_bin(repo: &Repo, args: &[&str], stdout: std::process::Stdio) -> std::process::Child {
    let path = format!(
        "{}:{}",
        repo.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = repo.command();
    command
        .env("PATH", path)
        .args(args)
        .stdout(stdout)
        .stderr(std::process::Stdio::null());
    command.spawn().expect("run xtask")
}

/// Makes each of `files` (paths in `repo`) executable.
fn make_executable(repo: &Repo, files: &[&str]) {
    use std::os::unix::fs::PermissionsExt;
    for file in files {
        let mode = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(repo.join(file), mode).unwrap();
    }
}

/// Waits for `child` until `deadline`; past it, kills it and fails with `what`.
fn wait_until(
    child: &mut std::process::Child,
    deadline: std::time::Instant,
    what: &str,
) -> std::process::ExitStatus {
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("{what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
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

    // Which way each started: awk's parent is xbundle itself, or a shell. Either way it is
    // not its group's leader (a program that calls setsid(2) must be able to).
    let parent = |repo: &Repo| {
        let text = repo.read("pkg/out/parent.txt");
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines
    };
    assert_ne!(parent(&direct)[0], "sh");
    assert_eq!(parent(&shell), ["sh", "group member"]);
    assert_eq!(parent(&direct)[1], "group member");

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

[tasks.partial]
run = "selfkill -TERM partial"
outputs = ["q.txt"]

[tasks.late]
run = "selfkill -TERM early late"
outputs = ["l.txt"]
"#;

#[test]
fn a_failing_command_fails_with_the_status_and_messages_sh_gives() {
    if skip_unless_dash() {
        return;
    }
    // selfkill [SIGNAL [TEXT [LATER]]]: prints TEXT on stderr without a newline, leaves a
    // process that prints LATER 0.5 s on, and kills itself.
    let script = "#!/bin/sh\nulimit -c 0\n\
        [ -n \"$3\" ] && (sleep 0.5; echo \"$3\" >&2) &\n\
        [ -n \"$2\" ] && printf %s \"$2\" >&2\n\
        kill ${1:--TERM} $$\n";
    let files = [("bin/selfkill", script), ("out/.keep", "")];
    let direct = Repo::new(FAILING, &files);
    let shell = Repo::new(FAILING, &files);
    for repo in [&direct, &shell] {
        make_executable(repo, &["bin/selfkill"]);
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
        ("partial", 143, "partialTerminated\n"),
        ("late", 143, "earlyTerminated\nlate\n"),
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
        // Event by event: dash's message joins a last line the command left unfinished.
        assert_eq!(
            task_output(&by_direct, &id),
            task_output(&by_shell, &id),
            "{task}"
        );
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
    assert_eq!(direct.read("out/parent.txt"), "sh\ngroup member\n");
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

/// Runs `args` as [`run`] does, failing (and killing it) if it takes over a minute: a command
/// blocked on a FIFO must not hang the test.
fn run_within_a_minute(repo: &Repo, args: &[&str]) -> common::Run {
    let mut command = repo.command();
    command
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(["--message-format", "json"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("run xtask");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    wait_until(&mut child, deadline, &format!("xtask {args:?} hung"));
    common::Run::parse_json(args, child.wait_with_output().expect("collect output"))
}

#[test]
fn a_fifo_named_by_a_redirection_is_never_opened_by_xbundle() {
    if skip_unless_dash() {
        return;
    }
    // Opening a FIFO, even without waiting, wakes its other end: a reader would see the end
    // of the data, a waiting writer would be let through to a closed pipe. So a FIFO goes to
    // the shell untouched, and the data goes through as it would.
    let tasks = r#"
[tasks.write]
run = "cat a.txt > out.pipe"

[tasks.read]
run = "cat < in.pipe"
"#;
    let repo = Repo::new(tasks, &[("a.txt", "hello\n")]);
    for name in ["out.pipe", "in.pipe"] {
        let path = std::ffi::CString::new(repo.join(name).to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) on a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
    }
    let out_pipe = repo.join("out.pipe");
    let reader = std::thread::spawn(move || std::fs::read_to_string(out_pipe).unwrap());
    run_within_a_minute(&repo, &["task", "write"]).assert_code(0);
    assert_eq!(reader.join().unwrap(), "hello\n");

    let in_pipe = repo.join("in.pipe");
    let writer = std::thread::spawn(move || std::fs::write(in_pipe, "from the writer\n"));
    let read = run_within_a_minute(&repo, &["task", "read"]);
    read.assert_code(0);
    writer.join().unwrap().expect("the writer's data was read");
    assert_eq!(
        task_output(&read, "task:read"),
        [("stdout".to_string(), "from the writer\n".to_string())]
    );
}

#[test]
fn the_program_is_looked_for_in_path_at_each_start_as_dash_does() {
    if skip_unless_dash() {
        return;
    }
    // `hello` is in bin2 at first; task b puts another in bin, earlier in PATH, before task c
    // runs: c runs that one. And a PATH entry ending with `/` gives a script the `$0` dash gives.
    let tasks = r#"
[tasks.a]
run = "hello"

[tasks.b]
run = "cp hello-first bin/hello"
outputs = ["bin/hello"]
deps = ["a"]

[tasks.c]
run = "hello"
deps = ["b"]

[tasks.zero]
run = "show0"
"#;
    let files = [
        ("bin2/hello", "#!/bin/sh\necho second in PATH\n"),
        ("hello-first", "#!/bin/sh\necho first in PATH\n"),
        ("bin3/show0", "#!/bin/sh\necho \"$0\"\n"),
        ("bin/.keep", ""),
    ];
    let direct = Repo::new(tasks, &files);
    let shell = Repo::new(tasks, &files);
    for repo in [&direct, &shell] {
        make_executable(repo, &["bin2/hello", "hello-first", "bin3/show0"]);
    }
    let by_direct = run(&direct, &["task"], false);
    by_direct.assert_code(0);
    let by_shell = run(&shell, &["task"], true);
    by_shell.assert_code(0);
    let said = |run: &common::Run, repo: &Repo, id: &str| -> Vec<String> {
        normalized(repo, &task_output(run, id)[0].1, false)
    };
    assert_eq!(said(&by_direct, &direct, "task:a"), ["second in PATH"]);
    assert_eq!(said(&by_direct, &direct, "task:c"), ["first in PATH"]);
    assert_eq!(
        said(&by_direct, &direct, "task:zero"),
        ["<repo>/bin3//show0"]
    );
    for id in ["task:a", "task:c", "task:zero"] {
        assert_eq!(
            said(&by_direct, &direct, id),
            said(&by_shell, &shell, id),
            "{id}"
        );
    }
}

#[test]
fn redirected_descriptors_have_the_flags_dashs_open_gives_them() {
    if skip_unless_dash() {
        return;
    }
    let tasks = r#"
[tasks.fds]
run = "cat /proc/self/fdinfo/0 /proc/self/fdinfo/1 < a.txt >> out/fds.txt"
outputs = ["out/fds.txt"]
"#;
    let files = [("a.txt", "a\n"), ("out/.keep", "")];
    let flags = |through_shell: bool| -> Vec<String> {
        let repo = Repo::new(tasks, &files);
        run(&repo, &["task"], through_shell).assert_code(0);
        repo.read("out/fds.txt")
            .lines()
            .filter(|line| line.starts_with("flags:"))
            .map(str::to_string)
            .collect()
    };
    let direct = flags(false);
    assert_eq!(direct.len(), 2, "{direct:?}");
    assert_eq!(direct, flags(true));
}

#[test]
fn a_command_that_leaves_its_process_group_is_still_stopped_by_an_interrupt() {
    if skip_unless_dash() {
        return;
    }
    // `timeout` puts itself in a group of its own (`setsid` in a session): under dash, the
    // shell the interrupt kills is waited for, not them; started directly, the command is the
    // one waited for, so the interrupt must reach its new group too.
    let tasks = r#"
[tasks.escape]
run = "escape"
"#;
    let script = "#!/bin/sh\nexec timeout 300 sh -c 'echo $$ > pid; exec sleep 300'\n";
    let repo = Repo::new(tasks, &[("bin/escape", script)]);
    make_executable(&repo, &["bin/escape"]);
    let mut child = spawn_with_bin(&repo, &["task"], std::process::Stdio::null());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let pid = loop {
        if let Ok(pid) = std::fs::read_to_string(repo.join("pid"))
            && pid.ends_with('\n')
        {
            break pid.trim().to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the command never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // SAFETY: kill(2) of the child this test spawned.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = wait_until(
        &mut child,
        deadline,
        "xtask waited for the command that left its group",
    );
    assert_eq!(status.code(), Some(130));
    // And what it started is gone (killed, at the latest after the grace period).
    let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    while proc_dir.exists()
        && !std::fs::read_to_string(proc_dir.join("stat")).is_ok_and(|s| s.contains(") Z "))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the command's `sleep` outlived the interrupted run"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_redirection_creates_its_file_writable_whatever_the_umask() {
    if skip_unless_dash() {
        return;
    }
    // With umask 0222 the file is created read-only; dash's `O_CREAT` open still gives a
    // writable descriptor, and so must the direct start (root would not see a difference: the
    // run is made as `nobody` then).
    let tasks = r#"
[tasks.make]
run = "cat a.txt > out/made.txt"
outputs = ["out/made.txt"]
"#;
    let repo = Repo::new(tasks, &[("a.txt", "a\n"), ("out/.keep", "")]);
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        if !common::have_tool("setpriv", "util-linux") {
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let open = std::fs::Permissions::from_mode(0o777);
        for dir in [repo.sandbox(), repo.path(), &repo.join("out")] {
            std::fs::set_permissions(dir, open.clone()).unwrap();
        }
    }
    let bin = env!("CARGO_BIN_EXE_xtask");
    let mut command = if root {
        let mut command = std::process::Command::new("setpriv");
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        command
    } else {
        std::process::Command::new("env")
    };
    // The state directory made first with a usual umask (xbundle's own lock file must stay
    // writable), then the task forced to run again with 0222.
    let script = format!(
        "umask 022 && \"{bin}\" --root . task && rm out/made.txt && \
         umask 0222 && exec \"{bin}\" --root . task --force"
    );
    command
        .args(["sh", "-c", &script])
        .current_dir(repo.path())
        .env("NO_COLOR", "1");
    let output = command.output().expect("run xtask");
    if root
        && String::from_utf8_lossy(&output.stderr).contains("Permission denied")
        && !repo.exists(".xbundle")
    {
        eprintln!("skipped: `nobody` cannot reach the test binary here");
        return;
    }
    assert!(output.status.success(), "{output:?}");
    assert_eq!(repo.read("out/made.txt"), "a\n");
}

#[test]
fn a_commands_id_stays_taken_while_xbundle_may_still_signal_it() {
    if skip_unless_dash() {
        return;
    }
    // The command ends at once, leaving a process that holds its output for longer than the
    // linger second. xbundle signals the command's id as a group until it stops waiting (the
    // group it may have made of its own; for a shell, the group it leads, which the process
    // left behind may have left): the command stays an unreaped zombie till then, so the
    // kernel cannot give its id to another process (whose group would be killed). Started
    // directly, and through `sh` (shell syntax).
    for run in ["bgkeep", "echo $$ > cmdpid; setsid sleep 5 & exit 0"] {
        let tasks = format!("[tasks.keep]\nrun = \"{run}\"\n");
        let script = "#!/bin/sh\necho $$ > cmdpid\nsleep 5 &\nexit 0\n";
        let repo = Repo::new(&tasks, &[("bin/bgkeep", script)]);
        make_executable(&repo, &["bin/bgkeep"]);
        let mut child = spawn_with_bin(&repo, &["task"], std::process::Stdio::null());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let state = |pid: &str| -> Option<String> {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after = stat.rsplit_once(") ")?.1;
            after.split(' ').next().map(str::to_string)
        };
        let pid = loop {
            if let Ok(pid) = std::fs::read_to_string(repo.join("cmdpid"))
                && pid.ends_with('\n')
            {
                let pid = pid.trim().to_string();
                if state(&pid).as_deref() == Some("Z") {
                    break pid;
                }
            }
            assert!(
                child.try_wait().expect("wait").is_none(),
                "{run}: xtask ended before the command was seen ended"
            );
            assert!(std::time::Instant::now() < deadline, "{run}: never ended");
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        // Well inside the linger second (a reaped id would be gone within 50 ms).
        std::thread::sleep(std::time::Duration::from_millis(300));
        let still = state(&pid);
        let status = wait_until(&mut child, deadline, "xtask hung");
        assert!(status.success(), "{run}");
        assert_eq!(still.as_deref(), Some("Z"), "{run}: the id was freed early");
        assert_eq!(
            state(&pid),
            None,
            "{run}: the command was reaped in the end"
        );
    }
}

#[test]
fn dashs_message_follows_all_the_command_wrote_even_through_a_large_pipe() {
    if skip_unless_dash() || !common::have_tool("python3", "python3") {
        return;
    }
    // The command makes its stderr pipe 1 MiB large, fills 300 KB of it and kills itself;
    // xbundle's own output is read slowly, so the pipe is still full when the end is seen.
    let tasks = r#"
[tasks.big]
run = "bigerr"
"#;
    let script = "#!/usr/bin/env python3\n\
        import fcntl, os, signal\n\
        fcntl.fcntl(2, 1031, 1 << 20)\n\
        for i in range(300):\n    os.write(2, b'line %03d ' % i + b'x' * 990 + b'\\n')\n\
        os.kill(os.getpid(), signal.SIGTERM)\n";
    let repo = Repo::new(tasks, &[("bin/bigerr", script)]);
    make_executable(&repo, &["bin/bigerr"]);
    let args = ["--message-format", "json", "task"];
    let mut child = spawn_with_bin(&repo, &args, std::process::Stdio::piped());
    std::thread::sleep(std::time::Duration::from_secs(2));
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    child.wait().unwrap();
    let run = common::Run::parse_json(
        &["task"],
        std::process::Output {
            status: std::process::ExitStatus::default(),
            stdout: stdout.into_bytes(),
            stderr: Vec::new(),
        },
    );
    let stderr: String = task_output(&run, "task:big")
        .into_iter()
        .map(|(_, text)| text)
        .collect();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 301);
    assert!(
        lines[..300].iter().all(|line| line.len() == 999),
        "a line was split"
    );
    assert_eq!(lines[300], "Terminated");
}
