//! `xbundle`: the bundle pipeline and its command line.
//!
//! Today it reads `bundle.toml` ([`config`]), plans declared tasks into the engine's graph
//! ([`plan`]), and drives runs, explanations, graphs and cache maintenance ([`cli`]) through one
//! output layer ([`shell`]). Later stages (analysis, secrets, assembly, compilation, staging,
//! packaging) become further task kinds planned the same way.

// Diagnostics are large (source text, spans) and only built on the error path, where their
// size costs nothing measurable; boxing them would only add noise.
#![allow(clippy::result_large_err)]

pub mod cli;
pub mod config;
pub mod diagnostic;
pub mod plan;
pub mod platform;
pub mod shell;
