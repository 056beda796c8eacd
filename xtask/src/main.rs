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
        _ => xbundle::cli::main(),
    }
}
