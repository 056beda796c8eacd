//! `cargo xtask`: the product is `xbundle::cli::main()`; `cargo xtask bench` is its benchmark.

mod bench;

fn main() -> std::process::ExitCode {
    let mut args = std::env::args_os().skip(1);
    match args.next() {
        Some(first) if first == "bench" => bench::main(args.collect()),
        _ => xbundle::cli::main(),
    }
}
