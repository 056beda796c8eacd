//! `xbundle`: the bundle pipeline and its command line.
//!
//! It reads `bundle.toml` ([`config`]) and plans it into the engine's graph ([`plan`]): declared
//! tasks and the pipeline's task kinds, each a module: scenario analysis ([`analysis`]), secret
//! plans ([`secrets`]), bundle.json assembly ([`assemble`], [`profiles`], [`stages`]), fetched
//! assets ([`assets`]), service builds ([`builds`]), stages per platform ([`bundles`],
//! [`stage`]), installers ([`package`]), the Electron wrapper ([`electron`]) and releases
//! ([`publish`]). [`cli`] drives builds, `watch`, explanations, queries and cache maintenance
//! through one output layer ([`shell`]). The engine below knows none of this (see
//! ARCHITECTURE.md).

pub mod analysis;
pub mod assemble;
pub mod assets;
pub mod builds;
pub mod bundles;
pub mod cargo_remote;
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
pub mod remote;
pub mod secrets;
pub mod service;
pub mod shell;
pub mod stage;
pub mod stages;
pub mod timings;
pub mod tool;
pub mod toolchain;
pub mod units;

/// The version and a fingerprint of this crate's sources (see `build.rs`): part of the key of
/// every pipeline task, so changing how results are computed invalidates cached results.
pub const IMPLEMENTATION: &str = concat!(env!("CARGO_PKG_VERSION"), "+", env!("XBUNDLE_IMPL_HASH"));
