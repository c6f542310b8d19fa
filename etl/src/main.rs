#[tokio::main]
async fn main() -> std::process::ExitCode {
    match rtb_etl::cli::main(std::env::args_os().collect()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", rtb_cli::error_line(&err));
            std::process::ExitCode::FAILURE
        }
    }
}
