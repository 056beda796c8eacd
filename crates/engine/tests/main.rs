//! The integration tests of `engine`, one test binary (one link instead of one per file; the
//! files' tests run side by side): each file below is a module, named as its file.
//! Run one file's tests with `cargo test -p engine --test integration <file>::`.

mod commands;
mod confinement_props;
mod discovered_actions;
mod inputs;
mod remote_plans;
