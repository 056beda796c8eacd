//! The integration tests of `runtime`, one test binary (one link instead of one per file; the
//! files' tests run side by side): each file below is a module, named as its file.
//! Run one file's tests with `cargo test -p runtime --test integration <file>::`.

mod common;

mod assets;
mod bench;
mod cli;
mod e2e;
mod hostile;
mod migrations;
mod secrets;
mod untrusted_manifest;
