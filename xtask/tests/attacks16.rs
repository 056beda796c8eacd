//! Adversarial review (session 16) of the directory listings cache and of hard-linked outputs:
//! each test here is an attack that found a wrong build result.

use crate::common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::Repo;

/// Unmounts on drop.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Mounts a new ext4 file system with 128-byte inodes (timestamps in whole seconds, as on
/// ext3, FAT, many network file systems) at `at`; `None` where this cannot be done (not root,
/// no loop devices).
fn coarse_file_system(image: &Path, at: &Path) -> Option<Mount> {
    if !common::have_tool("mkfs.ext4", "e2fsprogs") {
        return None;
    }
    fs::write(image, b"").unwrap();
    Command::new("truncate")
        .args(["-s", "8M"])
        .arg(image)
        .status()
        .ok()?;
    let made = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-I", "128"])
        .arg(image)
        .output()
        .ok()?;
    if !made.status.success() {
        eprintln!("skipped: mkfs.ext4 failed");
        return None;
    }
    fs::create_dir_all(at).unwrap();
    let mounted = Command::new("mount")
        .args(["-o", "loop"])
        .arg(image)
        .arg(at)
        .output()
        .ok()?;
    if !mounted.status.success() {
        eprintln!(
            "skipped: cannot mount a loop file system here: {}",
            String::from_utf8_lossy(&mounted.stderr)
        );
        return None;
    }
    let _ = fs::remove_dir_all(at.join("lost+found"));
    Some(Mount(at.to_path_buf()))
}

/// The directory's (inode, mtime, ctime), as a listing records it.
fn identity(path: &Path) -> (u64, i64, i64, i64, i64) {
    let m = fs::symlink_metadata(path).unwrap();
    (
        m.ino(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    )
}

/// Builds `repo` from scratch with `src/a.txt` holding "a", early in a second, then makes
/// `change` and checks that `watched` kept the identity the build saw (the change landed in
/// the build's second); tried until one attempt fits. Returns the run made long after.
fn changed_in_the_second_of_a_build(repo: &Repo, watched: &str, change: &dyn Fn()) -> common::Run {
    for attempt in 0..5 {
        // The test's own sandbox: what the last attempt left.
        let _ = fs::remove_dir_all(repo.join(".xbundle"));
        let _ = fs::remove_dir_all(repo.join("out"));
        for entry in fs::read_dir(repo.join("src")).unwrap() {
            fs::remove_file(entry.unwrap().path()).unwrap();
        }
        // Early in a second.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        std::thread::sleep(std::time::Duration::from_nanos(
            1_000_000_000 - u64::from(now.subsec_nanos()) + 20_000_000,
        ));
        repo.write("src/a.txt", "a\n");
        repo.json(&["task"]).assert_code(0);
        let built = identity(&repo.join(watched));
        change();
        if identity(&repo.join(watched)) != built {
            eprintln!("attempt {attempt}: a second went by; again");
            continue;
        }
        // Long after: still missed.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let run = repo.json(&["task"]);
        run.assert_code(0);
        return run;
    }
    panic!("no attempt fitted in one second");
}

/// A directory outside the workspace (in the test's sandbox) holding `secret.txt`.
fn canary(repo: &Repo) -> std::path::PathBuf {
    let canary = repo.sandbox().join("canary");
    fs::create_dir(&canary).unwrap();
    fs::write(canary.join("secret.txt"), "secret\n").unwrap();
    canary
}

/// Leaves `src/<name>` (a link leading outside, so both builds are refused) listed with the
/// kind byte `kind` in the kept listing of `src/`, where it is listed as a link.
fn forge_listed_kind(repo: &Repo, name: &str, kind: u8) {
    // The listing of src/ is kept once src/ is older than a clock reading.
    std::thread::sleep(std::time::Duration::from_millis(50));
    repo.json(&["task"]).assert_code(1);
    std::thread::sleep(std::time::Duration::from_millis(50));
    repo.json(&["task"]).assert_code(1);
    let path = repo.join(".xbundle/state/listings");
    let mut bytes = fs::read(&path).expect("a listing of src/ was kept");
    let at = bytes
        .windows(name.len())
        .position(|w| w == name.as_bytes())
        .expect("listed")
        + name.len();
    assert_eq!(bytes[at], 3, "listed as a link");
    bytes[at] = kind;
    // The test's own sandbox (a file the builds above wrote).
    fs::write(&path, bytes).unwrap();
}

/// DEFECT: the listing of an input directory is trusted against the clock of the state
/// directory's file system; on a file system with coarser timestamps (here whole seconds) a
/// file added in the same second as the listing leaves the directory's stat as recorded, and
/// every later no-op (not only those of that second) misses the new input: stale output
/// reported up to date until the directory changes again.
#[test]
fn a_file_added_to_an_input_directory_on_a_coarse_file_system_is_seen() {
    let repo = Repo::in_sandbox(common::GLOBBED, &[]);
    let Some(_mount) = coarse_file_system(&repo.sandbox().join("fs.img"), &repo.join("src")) else {
        return;
    };
    // The directory's timestamps are whole seconds: the listing is recorded (its mtime is older
    // than the clock read in .xbundle/state, in nanoseconds), then a file is added in that same
    // second.
    let run = changed_in_the_second_of_a_build(&repo, "src", &|| repo.write("src/b.txt", "b\n"));
    assert_eq!(
        repo.read("out/all.txt"),
        "a\nb\n",
        "src/b.txt was added and the task was not run again:\n{run}"
    );
}

/// DEFECT (same cause, older code: the stat cache): an input file on a file system with
/// whole-second timestamps, rewritten with the same size in the second it was hashed in, keeps
/// its recorded stat: its old digest is trusted by every later run (stale output up to date).
#[test]
fn an_input_rewritten_in_its_second_on_a_coarse_file_system_is_seen() {
    let repo = Repo::in_sandbox(
        r#"
[tasks.all]
run = 'mkdir -p out && cat src/a.txt > out/all.txt'
inputs = ["src/a.txt"]
outputs = ["out/all.txt"]
"#,
        &[],
    );
    let Some(_mount) = coarse_file_system(&repo.sandbox().join("fs.img"), &repo.join("src")) else {
        return;
    };
    let run =
        changed_in_the_second_of_a_build(&repo, "src/a.txt", &|| repo.write("src/a.txt", "b\n"));
    assert_eq!(
        repo.read("out/all.txt"),
        "b\n",
        "src/a.txt changed and the task was not run again:\n{run}"
    );
}

/// DEFECT: a forged `state/listings` that gives a symbolic link the kind "file" makes the walk
/// treat the link as a file: its target outside the workspace is read and hashed as an input
/// and the build succeeds, where the same tree without the forged file is refused ("a
/// symbolic link ... outside the workspace"). The listing's kinds are trusted, not only its
/// names checked.
#[test]
fn a_forged_listing_never_turns_a_link_leading_outside_into_an_input() {
    let repo = Repo::in_sandbox(
        r#"
[tasks.all]
run = 'mkdir -p out && echo built > out/all.txt'
inputs = ["src/*.txt"]
outputs = ["out/all.txt"]
"#,
        &[("src/a.txt", "a\n")],
    );
    let canary = canary(&repo);
    std::os::unix::fs::symlink(canary.join("secret.txt"), repo.join("src/link.txt")).unwrap();
    forge_listed_kind(&repo, "link.txt", 1);

    let run = repo.json(&["task"]);
    assert_eq!(
        run.status("task:all"),
        "failed",
        "a link leading outside the workspace was read as an input:\n{run}"
    );
    assert_eq!(
        fs::read_to_string(canary.join("secret.txt")).unwrap(),
        "secret\n"
    );
}

/// DEFECT (same cause): a forged listing giving a link to a directory outside the workspace
/// the kind "directory" makes the walk skip it silently (opened without following links), so
/// the refusal of the link is lost and the build runs.
#[test]
fn a_forged_listing_never_hides_a_link_leading_outside() {
    let repo = Repo::in_sandbox(
        r#"
[tasks.all]
run = 'mkdir -p out && echo built > out/all.txt'
inputs = ["src/**"]
outputs = ["out/all.txt"]
"#,
        &[("src/a.txt", "a\n")],
    );
    std::os::unix::fs::symlink(canary(&repo), repo.join("src/linkdir")).unwrap();
    forge_listed_kind(&repo, "linkdir", 2);

    let run = repo.json(&["task"]);
    assert_eq!(
        run.status("task:all"),
        "failed",
        "a link leading outside the workspace was not refused:\n{run}"
    );
}
