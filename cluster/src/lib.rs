//! The feature ETL's Ballista cluster: a scheduler and executors built on the Ballista 55
//! libraries, with what every process of a job must share (UDFs, codecs for the raw-log scan,
//! the `file://` / `s3://` object stores) taken from `rtb_etl::cluster`.

pub mod executor;
pub mod scheduler;

/// Runs a binary's async main, printing the error chain and exiting non-zero on failure.
pub fn exit_code(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", rtb_cli::error_line(&err));
            std::process::ExitCode::FAILURE
        }
    }
}
