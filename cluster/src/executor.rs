//! `rtb-executor`: a Ballista executor that can run rtb-etl jobs. `--health-port` serves
//! `/healthz` (alive, whatever the scheduler does) and `/readyz` (registered: its last
//! heartbeat to the scheduler succeeded).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use ballista_core::RuntimeProducer;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use clap::Parser;
use datafusion::prelude::SessionConfig;
use rtb_etl::cluster::{RtbLogicalCodec, RtbPhysicalCodec, runtime, session_config, session_state};
use tracing::info;

#[derive(Debug, Parser)]
#[command(
    name = "rtb-executor",
    version,
    about = "Ballista executor for rtb-etl jobs"
)]
pub struct ExecutorArgs {
    /// TOML file whose `[executor]` table sets flags (keys named like them); flags and RTB_*
    /// variables win.
    #[arg(long, env = "RTB_CONFIG")]
    pub config: Option<String>,
    /// Address to listen on (Flight, gRPC and health ports).
    #[arg(long, env = "RTB_EXECUTOR_BIND_HOST", default_value = "127.0.0.1")]
    pub bind_host: String,
    /// Host name the scheduler and clients use to reach this executor (default: as seen by
    /// the scheduler).
    #[arg(long, env = "RTB_EXECUTOR_EXTERNAL_HOST")]
    pub external_host: Option<String>,
    /// Arrow Flight port: shuffle data and results are fetched from here.
    #[arg(long, env = "RTB_EXECUTOR_PORT", default_value_t = 50051)]
    pub port: u16,
    /// gRPC port: the scheduler sends tasks here.
    #[arg(long, env = "RTB_EXECUTOR_GRPC_PORT", default_value_t = 50052)]
    pub grpc_port: u16,
    /// `/healthz` and `/readyz`.
    #[arg(long, env = "RTB_EXECUTOR_HEALTH_PORT", default_value_t = 50053)]
    pub health_port: u16,
    /// The scheduler to register with.
    #[arg(long, env = "RTB_SCHEDULER_HOST", default_value = "localhost")]
    pub scheduler_host: String,
    /// The scheduler's port (its `--port`).
    #[arg(long, env = "RTB_SCHEDULER_PORT", default_value_t = 50050)]
    pub scheduler_port: u16,
    /// Keep retrying to reach the scheduler at start-up (0: one attempt). Executors often start
    /// before their scheduler listens (ECS, compose, scripts).
    #[arg(
        long,
        env = "RTB_SCHEDULER_CONNECT_TIMEOUT_SECONDS",
        default_value_t = 60
    )]
    pub scheduler_connect_timeout_seconds: u16,
    /// Concurrent tasks (default: the number of cores).
    #[arg(long, env = "RTB_EXECUTOR_SLOTS")]
    pub slots: Option<usize>,
    /// Shuffle files and spills go here.
    #[arg(
        long,
        env = "RTB_EXECUTOR_WORK_DIR",
        default_value = "/tmp/rtb-executor"
    )]
    pub work_dir: String,
    /// Memory pool shared by the executor's tasks, e.g. 2GiB; beyond it operators spill.
    #[arg(long, env = "RTB_EXECUTOR_MEMORY_LIMIT")]
    pub memory_limit: Option<String>,
    /// Seconds between heartbeats to the scheduler (it declares an executor lost after its
    /// `--executor-timeout-seconds` without one).
    #[arg(long, env = "RTB_EXECUTOR_HEARTBEAT_SECONDS", default_value_t = 60)]
    pub heartbeat_seconds: u64,
    /// Log format: text or json.
    #[arg(long, env = "RTB_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

pub async fn main(args: Vec<OsString>) -> anyhow::Result<()> {
    let args = ExecutorArgs::parse_from(rtb_cli::args_with_config_table(args, "executor")?);
    rtb_cli::init_logging(&args.log_format)?;
    std::fs::create_dir_all(&args.work_dir)
        .with_context(|| format!("cannot create work folder {}", args.work_dir))?;
    let memory_pool_size = args
        .memory_limit
        .as_deref()
        .map(rtb_etl::run::parse_size)
        .transpose()?
        .map(|n| n as u64);
    // replacing Ballista's runtime producer must keep its spill folder: the work dir
    let spill_dir = args.work_dir.clone();
    let runtime_producer: RuntimeProducer =
        Arc::new(move |_: &SessionConfig| runtime(Some(&spill_dir)));
    let functions = session_state(session_config(), runtime(None)?)?;
    let config = ExecutorProcessConfig {
        bind_host: args.bind_host.clone(),
        external_host: args.external_host.clone(),
        port: args.port,
        grpc_port: args.grpc_port,
        scheduler_host: args.scheduler_host.clone(),
        scheduler_port: args.scheduler_port,
        scheduler_connect_timeout_seconds: args.scheduler_connect_timeout_seconds,
        // 0 is Ballista's "the number of cores"
        vcores: args.slots.unwrap_or(0),
        work_dir: Some(args.work_dir.clone()),
        executor_heartbeat_interval_seconds: args.heartbeat_seconds,
        memory_pool_size,
        override_config_producer: Some(Arc::new(session_config)),
        override_runtime_producer: Some(runtime_producer),
        override_function_registry: Some(Arc::new(BallistaFunctionRegistry::from(&functions))),
        override_logical_codec: Some(Arc::new(RtbLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(RtbPhysicalCodec::default())),
        ..ExecutorProcessConfig::default()
    };
    let health_address: SocketAddr = format!("{}:{}", args.bind_host, args.health_port)
        .parse()
        .with_context(|| {
            format!(
                "{}:{} is not a socket address",
                args.bind_host, args.health_port
            )
        })?;
    let (stop_health, health_stopped) = tokio::sync::oneshot::channel();
    let health = ballista_executor::health::spawn_health_server(
        health_address,
        config.health.clone(),
        health_stopped,
    );
    info!(
        scheduler = format!("{}:{}", args.scheduler_host, args.scheduler_port),
        "rtb-executor starting"
    );
    let result = start_executor_process(Arc::new(config)).await;
    let _ = stop_health.send(());
    let _ = health.await;
    result.context("executor stopped")?;
    Ok(())
}
