//! Command-line surface of `rtb-scorer`; `main.rs` only calls [`main`].

use std::ffi::OsString;

use clap::{Parser, Subcommand};

use crate::server::{self, ServeArgs};

#[derive(Debug, Parser)]
#[command(
    name = "rtb-scorer",
    version,
    about = "Bid filtering over HTTP: the likelihood to bid for each request",
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
    /// Load the published model named by the parameter store and serve it.
    Serve(ServeArgs),
    /// Exit 0 when an HTTP endpoint answers 200: the container health check, with no curl.
    Health(rtb_cli::health::HealthArgs),
}

pub async fn main(args: Vec<OsString>) -> anyhow::Result<()> {
    let cli = Cli::parse_from(rtb_cli::args_with_config_file(args)?);
    rtb_cli::init_logging(&cli.global.log_format)?;
    match cli.command {
        Command::Serve(args) => server::serve(&args).await?,
        Command::Health(health) => health.check()?,
    }
    Ok(())
}
