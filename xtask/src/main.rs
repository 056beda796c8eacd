//! `cargo xtask`: the product is `xbundle::cli::main()`; `cargo xtask bench` is its benchmark
//! (`cargo xtask bench downloads`: asset download throughput against curl; `cargo xtask bench
//! package`: the deb and tar.gz writers against dpkg-deb and tar | gzip; `cargo xtask bench
//! symbol-order`: regenerates the symbol ordering of the optimized build the bench times).

mod bench;
mod bench_downloads;
mod bench_order;
mod bench_package;
mod testserver;

fn main() -> std::process::ExitCode {
    one_malloc_arena();
    let mut args = std::env::args_os().skip(1);
    match args.next() {
        Some(first) if first == "bench" => {
            let rest: Vec<_> = args.collect();
            if rest.first().is_some_and(|mode| mode == "downloads") {
                bench_downloads::main(rest[1..].to_vec())
            } else if rest.first().is_some_and(|mode| mode == "package") {
                bench_package::main(rest[1..].to_vec())
            } else if rest.first().is_some_and(|mode| mode == "symbol-order") {
                bench_order::main(rest[1..].to_vec())
            } else {
                bench::main(rest)
            }
        }
        _ => xbundle::cli::main(),
    }
}

/// Makes glibc's malloc use one arena for the whole process. By default each thread that
/// allocates gets its own arena (up to eight per core), each keeping its own free memory: with
/// the engine's workers and hashing threads that was ~1 MiB of a cold build's ~11 MiB peak RSS
/// (200 tasks x 100 files), for no measurable gain in time: the threads mostly wait for
/// processes and the file system, not for malloc. A process setting, so the binary's own, like
/// the choice of a global allocator. Proven by `xtask/tests/malloc_arena.rs`.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator; called first thing in `main`,
    // before this process starts any thread. Its result (0: not applied) changes nothing that
    // matters: the default arenas are correct, only larger.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
