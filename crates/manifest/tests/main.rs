//! The integration tests of `manifest`, one test binary (one link instead of one per file; the
//! files' tests run side by side): each file below is a module, named as its file.
//! Run one file's tests with `cargo test -p manifest --test integration <file>::`.

mod corpus;
mod fuzz;
mod rules;
mod schema_snapshot;
