//! Tampering: a corrupt cache entry or blob is a miss plus a warning, never a wrong output; an
//! output changed or deleted in the tree is a warning and a restore (DESIGN.md §4.2).

use crate::common;

use std::fs;
use std::path::Path;

use common::Repo;

const BUNDLE: &str = r#"
[tasks.gen]
run = "mkdir -p out && tr a-z A-Z < src/in.txt > out/data.txt && echo side > out/side.txt && echo generated"
inputs = ["src/in.txt"]
outputs = ["out/data.txt", "out/side.txt"]
"#;

fn built(input: &str) -> Repo {
    let repo = Repo::new(BUNDLE, &[("src/in.txt", input)]);
    let run = repo.json(&["task"]);
    run.assert_code(0);
    assert_eq!(run.status("task:gen"), "ran");
    repo
}

/// Flips every byte of a file (its size stays the same).
fn flip_bytes(path: &Path) {
    let bytes: Vec<u8> = fs::read(path)
        .expect("read")
        .iter()
        .map(|b| b ^ 0x20)
        .collect();
    fs::write(path, bytes).expect("write");
}

/// The task's key from a run.
fn key(run: &common::Run) -> String {
    run.task("task:gen")["key"]
        .as_str()
        .expect("a key")
        .to_string()
}

#[test]
fn corrupt_output_blob_is_a_warning_and_a_rerun() {
    let repo = built("hello\n");
    let blob = repo.blob_with(b"HELLO\n");
    flip_bytes(&blob);
    assert_eq!(fs::read(&blob).unwrap(), b"hello*");
    repo.remove("out/data.txt");

    let run = repo.json(&["task"]);
    run.assert_code(0);
    let warnings = run.warnings();
    assert_eq!(warnings.len(), 1, "{run}");
    assert!(
        warnings[0].starts_with("task:gen: cached result unusable (cache entry ")
            && warnings[0].contains(&blob.display().to_string())
            && warnings[0].contains("is corrupt")
            && warnings[0].ends_with("running the task again"),
        "{}",
        warnings[0]
    );
    assert_eq!(run.status("task:gen"), "ran", "{run}");
    assert_eq!(
        run.reasons("task:gen"),
        ["inputs unchanged but the cache entry is missing or unusable"]
    );
    assert_eq!(repo.read("out/data.txt"), "HELLO\n");
    assert_eq!(
        fs::read(&blob).unwrap(),
        b"HELLO\n",
        "the blob is stored again"
    );

    // The cache is whole again.
    repo.remove("out/data.txt");
    let run = repo.json(&["task"]);
    assert_eq!(run.status("task:gen"), "cached", "{run}");
    assert_eq!(run.restored("task:gen"), 1);
    assert_eq!(repo.read("out/data.txt"), "HELLO\n");
    repo.json(&["cache", "verify"]).assert_code(0);
}

#[test]
fn truncated_output_blob_is_a_warning_and_a_rerun() {
    let repo = built("hello\n");
    let blob = repo.blob_with(b"HELLO\n");
    fs::write(&blob, b"HEL").unwrap();
    // The output is replaced by another file (the blob was the output's own file).
    replace(&repo, "out/data.txt", "tampered\n");

    let run = repo.json(&["task"]);
    run.assert_code(0);
    assert!(
        run.warnings()
            .iter()
            .any(|w| w.starts_with("task:gen: cached result unusable") && w.contains("corrupt")),
        "{run}"
    );
    assert_eq!(run.status("task:gen"), "ran", "{run}");
    assert_eq!(repo.read("out/data.txt"), "HELLO\n");
}

/// Exactly one warning: the entry at `entry` is corrupt, was removed, and the task runs again.
/// (What exactly was wrong with it, in parentheses, is the store's business.)
#[track_caller]
fn assert_corrupt_entry_warning(run: &common::Run, entry: &Path) {
    let warnings = run.warnings();
    assert_eq!(warnings.len(), 1, "{run}");
    let prefix = format!("task:gen: cache entry {} is corrupt (", entry.display());
    assert!(
        warnings[0].starts_with(&prefix)
            && warnings[0].ends_with("); it was removed; running the task again"),
        "{}",
        warnings[0]
    );
}

#[test]
fn corrupt_action_entry_is_a_warning_and_never_a_wrong_output() {
    let repo = built("first\n");
    let first_key = key(&repo.json(&["task"]));
    repo.write("src/in.txt", "second\n");
    let second = repo.json(&["task"]);
    assert_eq!(second.status("task:gen"), "ran");
    assert_eq!(repo.read("out/data.txt"), "SECOND\n");

    // Damage the entry of the first state, then return to it: the tree holds the second
    // state's outputs, so only a correct lookup can give the right result.
    let entry = repo
        .packed_entry(&first_key)
        .expect("entry of the first key");
    let mut bytes = fs::read(&entry.pack).unwrap();
    bytes[entry.offset as usize + entry.len - 5] ^= 0x01;
    fs::write(&entry.pack, bytes).unwrap();
    repo.write("src/in.txt", "first\n");

    let run = repo.json(&["task"]);
    run.assert_code(0);
    assert_corrupt_entry_warning(&run, &entry.pack);
    assert_eq!(run.status("task:gen"), "ran", "{run}");
    assert_eq!(key(&run), first_key);
    assert_eq!(repo.read("out/data.txt"), "FIRST\n");
    let again = repo
        .packed_entry(&first_key)
        .expect("stored again by the rerun");
    assert!(again.offset > entry.offset, "{again:?} {entry:?}");

    // The pack cut to nothing while the tree is up to date: also a warning and a rerun.
    fs::write(&entry.pack, b"").unwrap();
    let run = repo.json(&["task"]);
    run.assert_code(0);
    assert_corrupt_entry_warning(&run, &entry.pack);
    assert_eq!(run.status("task:gen"), "ran");
    assert_eq!(repo.read("out/data.txt"), "FIRST\n");
    let run = repo.json(&["task"]);
    assert_eq!(run.status("task:gen"), "cached");
    assert!(run.warnings().is_empty(), "{run}");
}

#[test]
fn action_entry_moved_under_another_key_is_not_trusted() {
    let repo = built("first\n");
    let first_key = key(&repo.json(&["task"]));
    repo.write("src/in.txt", "second\n");
    let second_key = key(&repo.json(&["task"]));
    assert_ne!(first_key, second_key);

    // A well-formed entry, but for another key (an index line naming another key's record, a
    // confused remote cache).
    let second = repo
        .packed_entry(&second_key)
        .expect("entry of the second key");
    common::append_index_line(
        &repo.join(".xbundle/cache"),
        &first_key,
        second.number,
        second.offset,
        second.len,
    );
    repo.write("src/in.txt", "first\n");
    let run = repo.json(&["task"]);
    run.assert_code(0);
    assert_eq!(
        repo.read("out/data.txt"),
        "FIRST\n",
        "the output must match the input\n{run}"
    );
    assert_eq!(run.warnings().len(), 1, "the mismatch is reported\n{run}");
    assert_eq!(run.status("task:gen"), "ran", "{run}");
}

/// Writes `contents` to `relative` as editors and most tools do: a new file renamed over the
/// old one (never written into in place).
fn replace(repo: &Repo, relative: &str, contents: &str) {
    let temp = repo.join(&format!("{relative}.new"));
    fs::write(&temp, contents).unwrap();
    fs::rename(&temp, repo.join(relative)).unwrap();
}

/// Link count and inode of a file.
fn links_and_inode(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::symlink_metadata(path).unwrap();
    (meta.nlink(), meta.ino())
}

#[test]
fn output_modified_in_the_tree_is_restored_with_a_warning() {
    let repo = built("hello\n");
    replace(&repo, "out/data.txt", "edited by hand\n");
    let run = repo.json(&["task"]);
    run.assert_code(0);
    assert_eq!(
        run.warnings(),
        ["task:gen: output out/data.txt was modified since the last run; restored from the cache"],
        "{run}"
    );
    assert_eq!(run.status("task:gen"), "cached", "{run}");
    assert_eq!(run.restored("task:gen"), 1, "only the modified file");
    assert!(run.started().is_empty(), "{run}");
    assert_eq!(repo.read("out/data.txt"), "HELLO\n");
    assert_eq!(repo.read("out/side.txt"), "side\n");

    // Same size, same length, different bytes.
    replace(&repo, "out/data.txt", "HELLo\n");
    let run = repo.json(&["task"]);
    assert_eq!(run.status("task:gen"), "cached", "{run}");
    assert_eq!(run.restored("task:gen"), 1, "{run}");
    assert_eq!(repo.read("out/data.txt"), "HELLO\n");

    let human = repo.human(&["task"]);
    human.assert_code(0);
    assert!(
        !human.stderr.contains("warning"),
        "nothing to warn about now\n{human}"
    );
    assert!(human.stderr.contains("Finished 0 ran, 1 cached"), "{human}");
}

/// A task's new output becomes its own blob (a hard link, nothing copied); a rerun replaces the
/// output by a new file, so the blobs of earlier results stay whole; an output written into in
/// place damages its blob with it, which costs a rerun with one warning saying so, never a
/// wrong output.
#[test]
fn outputs_are_their_own_blobs_and_an_edit_in_place_costs_a_rerun_never_a_wrong_output() {
    let repo = built("one\n");
    let blob_one = repo.blob_with(b"ONE\n");
    let output = repo.join("out/data.txt");
    let (links, inode) = links_and_inode(&output);
    assert_eq!(
        (links, inode),
        links_and_inode(&blob_one),
        "one file, two names"
    );
    assert_eq!(links, 2);

    // A change: the old output is removed before the task runs, its blob keeps the old bytes.
    repo.write("src/in.txt", "two\n");
    let run = repo.json(&["task"]);
    assert_eq!(run.status("task:gen"), "ran", "{run}");
    assert_eq!(repo.read("out/data.txt"), "TWO\n");
    assert_eq!(fs::read(&blob_one).unwrap(), b"ONE\n");
    assert_eq!(links_and_inode(&blob_one).0, 1);
    assert_eq!(
        links_and_inode(&output).0,
        2,
        "the new output is linked too"
    );

    // Back to the first input: restored (a copy of the blob, not the blob itself).
    repo.write("src/in.txt", "one\n");
    let run = repo.json(&["task"]);
    assert_eq!(run.status("task:gen"), "cached", "{run}");
    assert_eq!(repo.read("out/data.txt"), "ONE\n");
    assert_eq!(links_and_inode(&output).0, 1);

    // Written into in place while it is its own blob: both change. One warning naming the
    // output, the task runs again, the output is right and its blob whole again.
    repo.write("src/in.txt", "three\n");
    assert_eq!(repo.json(&["task"]).status("task:gen"), "ran");
    let blob_three = repo.blob_with(b"THREE\n");
    repo.write("out/data.txt", "THREE, edited in place\n");
    assert_eq!(links_and_inode(&output), links_and_inode(&blob_three));
    let run = repo.json(&["task"]);
    run.assert_code(0);
    assert_eq!(
        run.warnings(),
        [
            "task:gen: cached result unusable (output out/data.txt was changed in place since \
             the last run, and its cached copy with it: they were one file); running the task again"
        ],
        "{run}"
    );
    assert_eq!(run.status("task:gen"), "ran", "{run}");
    assert_eq!(repo.read("out/data.txt"), "THREE\n");
    assert_eq!(fs::read(&blob_three).unwrap(), b"THREE\n");

    // An edit in place of an output that is not a blob (restored: a copy) is restored.
    repo.write("src/in.txt", "one\n");
    assert_eq!(repo.json(&["task"]).status("task:gen"), "cached");
    repo.write("out/data.txt", "ONE, edited in place\n");
    let run = repo.json(&["task"]);
    assert_eq!(run.status("task:gen"), "cached", "{run}");
    assert_eq!(repo.read("out/data.txt"), "ONE\n");
    assert_eq!(fs::read(&blob_one).unwrap(), b"ONE\n");
    repo.json(&["cache", "verify"]).assert_code(0);
}

#[test]
fn output_deleted_from_the_tree_is_restored_with_a_warning() {
    let repo = built("hello\n");
    repo.remove("out/data.txt");
    repo.remove("out/side.txt");
    let run = repo.json(&["task"]);
    run.assert_code(0);
    assert_eq!(
        run.warnings(),
        [
            "task:gen: output out/data.txt was deleted since the last run; restored from the cache",
            "task:gen: output out/side.txt was deleted since the last run; restored from the cache",
        ],
        "{run}"
    );
    assert_eq!(run.status("task:gen"), "cached", "{run}");
    assert_eq!(run.restored("task:gen"), 2);
    assert_eq!(repo.read("out/data.txt"), "HELLO\n");
    assert_eq!(repo.read("out/side.txt"), "side\n");

    repo.remove("out/side.txt");
    let human = repo.human(&["task"]);
    human.assert_code(0);
    assert!(
        human.stderr.contains(
            "warning: task:gen: output out/side.txt was deleted since the last run; restored from the cache"
        ),
        "{human}"
    );
    assert!(
        human
            .stderr
            .contains("Restored task:gen from cache (1 file)"),
        "{human}"
    );
}

#[test]
fn corrupt_log_blob_is_a_warning_on_replay() {
    let repo = built("hello\n");
    let blob = repo.blob_with(b"generated\n");
    flip_bytes(&blob);
    // A restore replays the captured output (an up-to-date task prints nothing).
    repo.remove("out/side.txt");
    let run = repo.json(&["task"]);
    run.assert_code(0);
    assert_eq!(run.status("task:gen"), "cached");
    assert!(
        run.events("task-output").is_empty(),
        "nothing wrong is replayed\n{run}"
    );
    let warnings: Vec<_> = run
        .warnings()
        .into_iter()
        .filter(|warning| !warning.contains("was deleted since the last run"))
        .collect();
    assert_eq!(warnings.len(), 1, "{run}");
    assert!(
        warnings[0].starts_with("task:gen: captured output could not be replayed: cache entry ")
            && warnings[0].contains("is corrupt"),
        "{}",
        warnings[0]
    );
}

#[test]
fn cache_verify_reports_damage_once_and_removes_it() {
    let repo = built("hello\n");
    let blob = repo.blob_with(b"HELLO\n");
    flip_bytes(&blob);

    let verify = repo.json(&["cache", "verify"]);
    verify.assert_code(1);
    let report = &verify.events("cache-verify")[0]["report"];
    assert_eq!(
        report["blobs_checked"], 3,
        "data, side and the stdout log\n{verify}"
    );
    assert_eq!(report["actions_checked"], 1);
    let problems = common::strings(&report["problems"]);
    assert_eq!(problems.len(), 2, "{verify}");
    assert_eq!(
        problems[0],
        format!("blob {} does not match its digest; removed", blob.display())
    );
    assert!(
        problems[1].starts_with("action entry ")
            && problems[1].contains("names missing or damaged blob")
            && problems[1].ends_with("; removed"),
        "{}",
        problems[1]
    );
    assert!(!blob.exists());

    let again = repo.human(&["cache", "verify"]);
    again.assert_code(0);
    assert_eq!(
        again.stdout, "    Verified 0 action results and 2 blobs: 0 problems\n",
        "{again}"
    );

    // The damaged entry is gone: the task runs again and the tree is right.
    let run = repo.json(&["task"]);
    run.assert_code(0);
    assert_eq!(run.status("task:gen"), "ran", "{run}");
    assert_eq!(repo.read("out/data.txt"), "HELLO\n");
    repo.json(&["cache", "verify"]).assert_code(0);
}

#[test]
fn cache_verify_human_output_lists_each_problem() {
    let repo = built("hello\n");
    flip_bytes(&repo.blob_with(b"side\n"));
    let verify = repo.human(&["cache", "verify"]);
    verify.assert_code(1);
    assert!(
        verify
            .stdout
            .ends_with("     Checked 1 action result and 3 blobs: 2 problems\n"),
        "{verify}"
    );
    assert_eq!(verify.stderr.matches("warning: ").count(), 2, "{verify}");
    assert!(
        verify.stderr.contains("does not match its digest; removed"),
        "{verify}"
    );
}

#[test]
fn executable_bit_is_stored_and_restored() {
    let bundle = r#"
[tasks.script]
run = "mkdir -p bin && printf '#!/bin/sh\necho hi\n' > bin/hi && chmod +x bin/hi"
outputs = ["bin/hi"]
"#;
    let repo = Repo::new(bundle, &[]);
    repo.json(&["task"]).assert_code(0);
    let built = repo.snapshot();
    assert!(built.0["bin/hi"].executable);

    repo.remove("bin/hi");
    let run = repo.json(&["task"]);
    assert_eq!(run.status("task:script"), "cached", "{run}");
    assert_eq!(run.restored("task:script"), 1);
    common::assert_same_tree(&repo.snapshot(), &built, "restored with its mode");

    // Losing the bit by hand is a modification like any other.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(repo.join("bin/hi"), fs::Permissions::from_mode(0o644)).unwrap();
    let run = repo.json(&["task"]);
    assert_eq!(
        run.warnings(),
        ["task:script: output bin/hi was modified since the last run; restored from the cache"],
        "{run}"
    );
    assert_eq!(run.restored("task:script"), 1, "{run}");
    common::assert_same_tree(&repo.snapshot(), &built, "the bit is back");
}
