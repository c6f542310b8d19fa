//! Command-line surface of `rtb-etl`; `main.rs` only calls [`main`].

use std::ffi::OsString;

use clap::{Parser, Subcommand};

use crate::generate::{self, GenerateArgs};
use crate::run::{self, RunArgs};

#[derive(Debug, Parser)]
#[command(
    name = "rtb-etl",
    version,
    about = "Feature ETL for RTB bid filtering, and an iPinYou log generator",
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
    /// Write iPinYou-format bid and impression logs with a known win model.
    Generate(GenerateArgs),
    /// Run a feature job (SQL file) over raw logs and commit its artifacts.
    Run(Box<RunArgs>),
    /// Delete the run folders killed or failed runs left without a manifest (never a
    /// committed run).
    Gc(crate::gc::GcArgs),
    /// Exit 0 when an HTTP endpoint answers 200 (container health checks of the ETL, scheduler
    /// and executor images, which carry no curl).
    Health(rtb_cli::health::HealthArgs),
}

pub async fn main(args: Vec<OsString>) -> anyhow::Result<()> {
    let cli = Cli::parse_from(rtb_cli::args_with_config_file(args)?);
    rtb_cli::init_logging(&cli.global.log_format)?;
    match cli.command {
        Command::Generate(args) => {
            let report = generate::run(&args).await?;
            print!("{}", generate::render(&report));
        }
        Command::Run(args) => {
            // on a cluster the executors read the files: no byte count here, only the steps
            let bar = match args.cluster {
                Some(_) => rtb_cli::spinner("running on the cluster"),
                None => rtb_cli::bytes_bar("reading raw logs"),
            };
            let outcome = run::run_with_progress(&args, &bar).await;
            bar.finish_and_clear();
            let outcome = outcome?;
            print!("{}", run::render(&outcome));
        }
        Command::Gc(args) => print!("{}", crate::gc::run(&args).await?),
        Command::Health(health) => health.check()?,
    }
    Ok(())
}
