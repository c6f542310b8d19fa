//! `rtb-scheduler`: the Ballista scheduler. Its gRPC port also serves `/healthz` (alive) and
//! `/readyz` (at least `--min-ready-executors` executors registered).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::{SchedulerConfig, TaskDistributionPolicy};
use ballista_scheduler::scheduler_process::start_server;
use clap::{Parser, ValueEnum};
use rtb_etl::cluster::{RtbLogicalCodec, RtbPhysicalCodec, runtime, session_config, session_state};
use tracing::info;

#[derive(Debug, Parser)]
#[command(
    name = "rtb-scheduler",
    version,
    about = "Ballista scheduler for rtb-etl jobs"
)]
pub struct SchedulerArgs {
    /// TOML file whose `[scheduler]` table sets flags (keys named like them); flags and RTB_*
    /// variables win.
    #[arg(long, env = "RTB_CONFIG")]
    pub config: Option<String>,
    /// Address to listen on (gRPC, health and REST API share it).
    #[arg(long, env = "RTB_SCHEDULER_BIND_HOST", default_value = "127.0.0.1")]
    pub bind_host: String,
    /// Port for executors and clients (`df://host:port`).
    #[arg(long, env = "RTB_SCHEDULER_PORT", default_value_t = 50050)]
    pub port: u16,
    /// Host name executors and clients use to reach this scheduler.
    #[arg(long, env = "RTB_SCHEDULER_EXTERNAL_HOST", default_value = "localhost")]
    pub external_host: String,
    /// An executor without a heartbeat for this long is declared lost and its tasks re-run.
    #[arg(long, env = "RTB_EXECUTOR_TIMEOUT_SECONDS", default_value_t = 180)]
    pub executor_timeout_seconds: u64,
    /// How often lost executors are looked for.
    #[arg(
        long,
        env = "RTB_EXPIRE_DEAD_EXECUTOR_INTERVAL_SECONDS",
        default_value_t = 15
    )]
    pub expire_dead_executor_interval_seconds: u64,
    /// Attempts per task before its job fails.
    #[arg(long, env = "RTB_TASK_MAX_FAILURES", default_value_t = 4)]
    pub task_max_failures: usize,
    /// Attempts per stage (after lost shuffle output) before its job fails.
    #[arg(long, env = "RTB_STAGE_MAX_FAILURES", default_value_t = 4)]
    pub stage_max_failures: usize,
    /// How tasks go to executors: `bias` fills one executor's free slots before the next (fewer
    /// executors touched), `round-robin` gives each executor one task in turn (spreads a job
    /// with few tasks over every machine).
    #[arg(long, env = "RTB_TASK_DISTRIBUTION", value_enum, default_value_t = TaskDistribution::Bias)]
    pub task_distribution: TaskDistribution,
    /// Executors that must be registered before `/readyz` answers 200.
    #[arg(long, env = "RTB_MIN_READY_EXECUTORS", default_value_t = 1)]
    pub min_ready_executors: usize,
    /// Log format: text or json.
    #[arg(long, env = "RTB_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TaskDistribution {
    Bias,
    RoundRobin,
}

pub async fn main(args: Vec<OsString>) -> anyhow::Result<()> {
    let args = SchedulerArgs::parse_from(rtb_cli::args_with_config_table(args, "scheduler")?);
    rtb_cli::init_logging(&args.log_format)?;
    let runtime = runtime(None)?;
    let config = SchedulerConfig {
        bind_host: args.bind_host.clone(),
        bind_port: args.port,
        external_host: args.external_host.clone(),
        executor_timeout_seconds: args.executor_timeout_seconds,
        expire_dead_executor_interval_seconds: args.expire_dead_executor_interval_seconds,
        task_max_failures: args.task_max_failures,
        stage_max_failures: args.stage_max_failures,
        min_ready_executors: args.min_ready_executors,
        task_distribution: match args.task_distribution {
            TaskDistribution::Bias => TaskDistributionPolicy::Bias,
            TaskDistribution::RoundRobin => TaskDistributionPolicy::RoundRobin,
        },
        override_config_producer: Some(Arc::new(session_config)),
        override_session_builder: Some(Arc::new(move |config| {
            session_state(config, Arc::clone(&runtime))
        })),
        override_logical_codec: Some(Arc::new(RtbLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(RtbPhysicalCodec::default())),
        ..SchedulerConfig::default()
    };
    let address: SocketAddr = format!("{}:{}", args.bind_host, args.port)
        .parse()
        .with_context(|| format!("{}:{} is not a socket address", args.bind_host, args.port))?;
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .context("cannot set up the scheduler's cluster state")?;
    info!(%address, "rtb-scheduler starting");
    start_server(cluster, address, Arc::new(config))
        .await
        .with_context(|| format!("scheduler on {address} stopped"))?;
    Ok(())
}
