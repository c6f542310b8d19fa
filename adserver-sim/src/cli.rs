//! Command-line surface of `rtb-adserver-sim`; `main.rs` only calls [`main`].

use std::ffi::OsString;

use clap::{Parser, Subcommand};

use crate::replay::{self, ReplayArgs};

#[derive(Debug, Parser)]
#[command(
    name = "rtb-adserver-sim",
    version,
    about = "The simulated ad server: replays the ETL's bid requests at the scorer and measures latency honestly",
    args_override_self = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: rtb_cli::GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the inference requests and send them to the scorer under an open or closed loop;
    /// print the summary and write summary.json and report.html.
    Replay(ReplayArgs),
}

pub async fn main(args: Vec<OsString>) -> anyhow::Result<()> {
    let cli = Cli::parse_from(rtb_cli::args_with_config_file(args)?);
    rtb_cli::init_logging(&cli.global.log_format)?;
    match cli.command {
        Command::Replay(args) => {
            replay::replay(&args).await?;
        }
    }
    Ok(())
}
