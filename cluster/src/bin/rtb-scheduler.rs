#[tokio::main]
async fn main() -> std::process::ExitCode {
    rtb_cluster::exit_code(rtb_cluster::scheduler::main(std::env::args_os().collect()).await)
}
