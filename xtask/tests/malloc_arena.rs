//! The binary makes glibc's malloc use one arena (`mallopt(M_ARENA_MAX, 1)` first thing in
//! `main`, for a smaller peak RSS: issue 12, item 6). Proven from outside, on the real binary
//! during a build whose threads allocate: glibc carves every extra arena out of its own
//! 64 MiB-aligned anonymous mapping, and none shows in `/proc/PID/maps`.
//!
//! Linux with glibc only (elsewhere the setting does not exist).

#![cfg(all(target_os = "linux", target_env = "gnu"))]

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Repo;

/// glibc's `HEAP_MAX_SIZE` on 64-bit: every non-main arena's heap starts at a multiple of it.
const ARENA_ALIGN: u64 = 64 << 20;

/// The writable anonymous mappings of `maps` (a `/proc/PID/maps` text) that start at a
/// multiple of 64 MiB and are followed by the rest of their reservation (`---p`): the heaps of
/// malloc arenas other than the main one.
fn arena_heaps(maps: &str) -> usize {
    let lines: Vec<Vec<&str>> = maps
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    lines
        .windows(2)
        .filter(|pair| {
            let (this, next) = (&pair[0], &pair[1]);
            let anonymous = |fields: &Vec<&str>| fields.len() == 5 && fields[4] == "0";
            let start = this
                .first()
                .and_then(|range| range.split('-').next())
                .and_then(|start| u64::from_str_radix(start, 16).ok());
            anonymous(this)
                && anonymous(next)
                && this[1] == "rw-p"
                && next[1] == "---p"
                && start.is_some_and(|start| start % ARENA_ALIGN == 0)
        })
        .count()
}

#[test]
fn the_heaps_of_extra_malloc_arenas_are_recognized() {
    // The shape glibc gives an arena (a heap, then the rest of its 64 MiB reservation), and
    // mappings that are not one.
    let maps = "\
55d0c0a00000-55d0c0b00000 rw-p 00000000 00:00 0                          [heap]
7f3a58000000-7f3a58021000 rw-p 00000000 00:00 0 \n\
7f3a58021000-7f3a5c000000 ---p 00000000 00:00 0 \n\
7f3a60001000-7f3a60021000 rw-p 00000000 00:00 0 \n\
7f3a60021000-7f3a64000000 ---p 00000000 00:00 0 \n\
7f3a68000000-7f3a68021000 rw-p 00000000 08:01 1234                       /tmp/file
7f3a68021000-7f3a6c000000 ---p 00000000 00:00 0 \n";
    assert_eq!(arena_heaps(maps), 1);
}

#[test]
fn a_build_with_several_threads_uses_one_malloc_arena() {
    // Tasks with many inputs (hashed by several threads) that run long enough to be watched.
    let mut toml = String::new();
    let mut files = Vec::new();
    for task in 0..4 {
        toml.push_str(&format!(
            "[tasks.t{task}]\ncwd = \"t{task}\"\nrun = \"sleep 1 && cat src/*.txt > out.txt\"\n\
             inputs = [\"src/*.txt\"]\noutputs = [\"out.txt\"]\n\n"
        ));
        for file in 0..200 {
            files.push((
                format!("t{task}/src/f{file}.txt"),
                format!("{task} {file}\n"),
            ));
        }
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let repo = Repo::new(&toml, &files);
    let mut child = repo
        .command()
        .args(["task", "-j", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run xtask");
    let proc_dir = format!("/proc/{}", child.id());
    let (mut most_threads, mut most_arenas) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for xtask") {
            break status;
        }
        assert!(Instant::now() < deadline, "xtask did not finish");
        let threads = std::fs::read_dir(format!("{proc_dir}/task")).map_or(0, |dir| dir.count());
        let maps = std::fs::read_to_string(format!("{proc_dir}/maps")).unwrap_or_default();
        most_threads = most_threads.max(threads);
        most_arenas = most_arenas.max(arena_heaps(&maps));
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(status.success(), "the build failed: {status}");
    // Without threads the check would prove nothing.
    assert!(
        most_threads >= 3,
        "the build never had more than {most_threads} thread(s)"
    );
    assert_eq!(
        most_arenas, 0,
        "extra malloc arenas appeared ({most_threads} threads): M_ARENA_MAX is not applied"
    );
}
