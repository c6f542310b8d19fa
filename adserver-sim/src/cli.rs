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
    /// TOML file with one table per command ([replay]); flags and RTB_* variables win.
    #[arg(long, env = "RTB_CONFIG", global = true)]
    pub config: Option<String>,
    /// Log format: text or json.
    #[arg(long, env = "RTB_LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: String,
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
    rtb_cli::init_logging(&cli.log_format)?;
    match cli.command {
        Command::Replay(args) => {
            replay::replay(&args).await?;
        }
    }
    Ok(())
}
