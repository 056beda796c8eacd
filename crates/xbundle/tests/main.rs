//! The integration tests of `xbundle`, one test binary (one link instead of one per file; the
//! files' tests run side by side): each file below is a module, named as its file.
//! Run one file's tests with `cargo test -p xbundle --test integration <file>::`.

mod analysis;
mod assemble;
mod bundle_toml_schema;
mod corpus;
mod secrets;
