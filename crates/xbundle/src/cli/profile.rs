//! `profile list | show NAME | create NAME --scenario S --tier T | set NAME --swap FROM=TO |
//! set NAME --platform P`: profiles in bundle.toml, edited in place.

use clap::Subcommand;

use super::Cli;
use crate::diagnostic::Diagnostic;
use crate::shell::Shell;

#[derive(Debug, Subcommand)]
pub(super) enum ProfileCommand {
    /// List the profiles of bundle.toml
    List,
    /// Show one profile
    Show { name: String },
    /// Add a profile to bundle.toml
    Create {
        name: String,
        #[arg(long)]
        scenario: String,
        #[arg(long)]
        tier: String,
    },
    /// Change a profile in bundle.toml
    Set {
        name: String,
        /// Swap a resource (FROM=TO); repeatable
        #[arg(long = "swap", value_name = "FROM=TO")]
        swaps: Vec<String>,
        /// Add a target platform; repeatable
        #[arg(long = "platform", value_name = "PLATFORM")]
        platforms: Vec<String>,
    },
}

pub(super) fn run(_cli: &Cli, command: &ProfileCommand, _shell: &Shell) -> Result<u8, Diagnostic> {
    Err(Diagnostic::internal(format!(
        "`profile {command:?}` is being written"
    )))
}
