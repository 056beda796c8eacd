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
        _ => {
            malloc_tuning();
            forget_what_cargo_says_of_xtask();
            xbundle::cli::main()
        }
    }
}

/// Tunes glibc's malloc for a run's peak RSS.
///
/// - The mmap threshold is fixed. By default glibc raises it to the size of each large block
///   freed (up to 32 MiB), after which a buffer that grows by reallocation (the stat cache's
///   records, one path list per task) is copied within the heap and every copy it leaves behind
///   stays resident: 0.8 MiB of a cold build's 11 MiB peak at 200 tasks x 100 files, for no
///   measurable time. With the threshold fixed (at its default, 128 KiB), large blocks keep
///   their own mappings and are returned whole when freed.
/// - One arena per thread of a run that allocates (the engine's workers, `-j` + 1 by default,
///   and the main thread), where glibc makes up to eight per core: each thread that allocates
///   while the others hold theirs gets an arena of its own, and the memory each keeps resident
///   adds up. Fewer arenas than those threads (one per core, before) made them wait for each
///   other's locks in `malloc`. Measured at 200 tasks x 100 files on two cores: a cold build's
///   peak 8.8-8.9 MiB with 2 arenas and with 6, 9.0 MiB with glibc's 16; a no-op 29.4 ms with
///   2, 27.8 ms with 6 (medians of 40).
fn malloc_tuning() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // A limit the user set (`MALLOC_ARENA_MAX`, or `glibc.malloc.arena_max` in
        // `GLIBC_TUNABLES`) is theirs to keep.
        let user_set = std::env::var_os("MALLOC_ARENA_MAX").is_some()
            || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max"));
        let arenas = i32::try_from(engine::exec::default_jobs() + 2).unwrap_or(i32::MAX);
        // SAFETY: mallopt only sets parameters of the allocator, before any thread is started.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
            if !user_set {
                libc::mallopt(libc::M_ARENA_MAX, arenas);
            }
        }
    }
}

/// Removes the variables `cargo run` (and `cargo test`) set for the program they start, which
/// describe this package, not the user's environment: the tasks' commands would see them, and
/// the cargo builds among them would pass them on. Cargo records the values some build scripts
/// track (ring's tracks `CARGO_MANIFEST_DIR`), so a build started by `cargo xtask` and one
/// started by hand would each find the other's stale and rebuild ring, rustls and the runtime.
/// `CARGO` (the cargo that started us, the one to use) is kept.
fn forget_what_cargo_says_of_xtask() {
    const NAMES: [&str; 6] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
    ];
    const PREFIXES: [&str; 2] = ["CARGO_PKG_", "CARGO_BIN_EXE_"];
    let set: Vec<std::ffi::OsString> = std::env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| {
            name.to_str().is_some_and(|name| {
                NAMES.contains(&name) || PREFIXES.iter().any(|prefix| name.starts_with(prefix))
            })
        })
        .collect();
    for name in set {
        // SAFETY: at the start of `main`, before any thread is started.
        unsafe { std::env::remove_var(name) };
    }
}
