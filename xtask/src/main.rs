//! `cargo xtask`: the whole product is `xbundle::cli::main()`.

fn main() -> std::process::ExitCode {
    xbundle::cli::main()
}
