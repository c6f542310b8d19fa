//! Command-line surface of `rtb-trainer`; `main.rs` only calls [`main`].

use std::ffi::OsString;

use clap::{Parser, Subcommand};

use crate::TrainerError;
use crate::train::{self, TrainArgs};

#[derive(Debug, Parser)]
#[command(
    name = "rtb-trainer",
    version,
    about = "Trains, evaluates and publishes the LightGBM bid-filtering model",
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
    /// Train on a committed ETL run, evaluate on its test split, write the report and publish.
    Train(TrainArgs),
}

pub async fn main(args: Vec<OsString>) -> anyhow::Result<()> {
    let cli = Cli::parse_from(rtb_cli::args_with_config_file(args)?);
    rtb_cli::init_logging(&cli.global.log_format)?;
    match cli.command {
        Command::Train(args) => {
            let spinner = rtb_cli::spinner("training the bid-filtering model");
            let outcome = train::run(&args).await;
            spinner.finish_and_clear();
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(err @ TrainerError::NotAnnounced { .. }) => return Err(err.into()),
                Err(err) => {
                    return Err(
                        anyhow::Error::new(err).context("training failed; nothing was published")
                    );
                }
            };
            print!("{}", train::render(&outcome));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_with_defaults() {
        let cli = Cli::parse_from([
            "rtb-trainer",
            "train",
            "--run",
            "data/features",
            "--param",
            "learning_rate=0.1",
            "--param",
            "metric=auc,binary_logloss",
            "--thresholds",
            "0.5,0.2,0.05",
        ]);
        let Command::Train(args) = cli.command;
        assert_eq!(args.run.as_deref(), Some("data/features"));
        assert_eq!(args.thresholds, vec![0.5, 0.2, 0.05]);
        assert_eq!(args.wins_kept, 0.99);
        assert_eq!(args.out, "data");
        assert_eq!(
            crate::params::join_split_overrides(&args.params),
            vec!["learning_rate=0.1", "metric=auc,binary_logloss"]
        );
    }
}
