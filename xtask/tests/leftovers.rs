//! A build killed while it wrote the clock, the stat cache or a ledger entry leaves an unfinished
//! atomic write (`.tmp-xbundle-…`) in the state directory: the next build removes it, and only
//! files of that name (found by `crash_safety`'s kill during a restore, which can land on the
//! clock write at the start of the run).

use crate::common;

use common::Repo;

#[test]
fn the_next_build_removes_unfinished_writes_in_the_state_directory() {
    let repo = Repo::new(
        "[tasks.t]\nrun = \"mkdir -p out && echo x > out/o\"\noutputs = [\"out/o\"]\n",
        &[],
    );
    repo.json(&["task"]).assert_code(0);
    for leftover in [
        ".xbundle/state/.tmp-xbundle-4242-0",
        ".xbundle/state/ledger/.tmp-xbundle-4242-1",
        ".xbundle/tmp/.tmp-xbundle-4242-2",
    ] {
        repo.write(leftover, "half written");
    }
    repo.write(".xbundle/state/notes.txt", "a user's file");
    repo.write(".xbundle/state/.tmp-notes.txt", "not a name xbundle gives");
    let run = repo.json(&["task"]);
    run.assert_code(0);
    assert_eq!(run.status("task:t"), "cached");
    for leftover in [
        ".xbundle/state/.tmp-xbundle-4242-0",
        ".xbundle/state/ledger/.tmp-xbundle-4242-1",
        ".xbundle/tmp/.tmp-xbundle-4242-2",
    ] {
        assert!(!repo.exists(leftover), "{leftover} was removed");
    }
    assert_eq!(repo.read(".xbundle/state/notes.txt"), "a user's file");
    assert_eq!(
        repo.read(".xbundle/state/.tmp-notes.txt"),
        "not a name xbundle gives"
    );
}

/// A run removes an earlier version's ledger files (64 lowercase hex digits, the only names it
/// gave them) and `cache clean` the ledger's own (`keys`, `bodies-<n>` as it writes n), and
/// nothing else found there: not a name in another case, with leading zeros, or beside theirs.
#[test]
fn only_the_ledgers_own_names_are_removed() {
    let repo = Repo::new(
        "[tasks.t]\nrun = \"mkdir -p out && echo x > out/o\"\noutputs = [\"out/o\"]\n",
        &[],
    );
    repo.json(&["task"]).assert_code(0);
    let legacy = "ab".repeat(32);
    let foreign = [
        "AB".repeat(32),
        "bodies-007".to_string(),
        "bodies-01".to_string(),
        "bodies-+1".to_string(),
        "keys.bak".to_string(),
    ];
    repo.write(
        &format!(".xbundle/state/ledger/{legacy}"),
        "old ledger entry",
    );
    for name in &foreign {
        repo.write(&format!(".xbundle/state/ledger/{name}"), "mine");
    }
    repo.json(&["task", "--force"]).assert_code(0);
    assert!(!repo.exists(&format!(".xbundle/state/ledger/{legacy}")));
    repo.human(&["cache", "clean"]).assert_code(0);
    assert!(!repo.exists(".xbundle/state/ledger/keys"));
    assert!(!repo.exists(".xbundle/state/ledger/bodies-0"));
    for name in &foreign {
        assert_eq!(
            repo.read(&format!(".xbundle/state/ledger/{name}")),
            "mine",
            "{name}"
        );
    }
}
