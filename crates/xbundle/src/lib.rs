//! `xbundle`: the bundle pipeline and its command line.
//!
//! Today it reads `bundle.toml` ([`config`]), plans declared tasks into the engine's graph
//! ([`plan`]), and drives runs, explanations, graphs and cache maintenance ([`cli`]) through one
//! output layer ([`shell`]). Later stages (analysis, secrets, assembly, compilation, staging,
//! packaging) become further task kinds planned the same way.

pub mod analysis;
pub mod assemble;
pub mod assets;
pub mod builds;
pub mod bundles;
pub mod cli;
pub mod config;
pub mod diagnostic;
pub mod electron;
pub mod names;
pub mod package;
pub mod plan;
pub mod platform;
pub mod profiles;
pub mod publish;
pub mod secrets;
pub mod service;
pub mod shell;
pub mod stage;
pub mod stages;
pub mod tool;
pub mod toolchain;

/// The version and a fingerprint of this crate's sources (see `build.rs`): part of the key of
/// every pipeline task, so changing how results are computed invalidates cached results.
pub const IMPLEMENTATION: &str = concat!(env!("CARGO_PKG_VERSION"), "+", env!("XBUNDLE_IMPL_HASH"));
