//! Start-up, the HTTP server, polling for new models, and graceful shutdown.

use std::time::Duration;

use actix_service::ServiceFactoryExt as _;
use actix_web::{App, web};
use clap::Args;
use rtb_params::ParameterStore;
use thiserror::Error;
use tracing::{error, info, warn};

use crate::artifacts::{self, ArtifactError};
use crate::clock::{BadTimeZone, Clock};
use crate::state::{AppState, Limits};
use crate::statsd::{Statsd, StatsdError};
use crate::{api, wire};

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Where the model pointer (/aik/model/manifest) is read: a JSON file (path or file://), or
    /// `ssm://` (AWS SSM Parameter Store; `ssm://?endpoint=URL&region=R` for an emulator).
    #[arg(
        long,
        env = "RTB_PARAMETER_STORE",
        default_value = "data/parameter-store.json"
    )]
    pub parameter_store: String,
    /// Address to listen on; loopback by default (the container images listen on 0.0.0.0).
    #[arg(long, env = "RTB_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// HTTP worker threads (default: the number of cores).
    #[arg(long, env = "RTB_WORKERS")]
    pub workers: Option<usize>,
    /// Most requests per batch call, and most impressions per OpenRTB request.
    #[arg(long, env = "RTB_MAX_BATCH", default_value_t = 1000)]
    pub max_batch: usize,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "RTB_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Milliseconds a request body may take to arrive after its headers; a slower client is
    /// answered 408 and its connection closed, so trickling clients cannot hold sockets.
    #[arg(long, env = "RTB_BODY_TIMEOUT_MS", default_value_t = 5000)]
    pub body_timeout_ms: u64,
    /// Time zone of the model's day of week and hour, for OpenRTB requests: an IANA name
    /// (Asia/Shanghai, the iPinYou exchange's), UTC, or a fixed offset (+08:00). By default the
    /// zone the model's feature contract names (the zone of the logs it was trained on).
    #[arg(long, env = "RTB_TIME_ZONE")]
    pub time_zone: Option<String>,
    /// Seconds between checks of the model pointer; 0 turns polling off.
    #[arg(long, env = "RTB_RELOAD_INTERVAL", default_value_t = 30)]
    pub reload_interval: u64,
    /// Bearer token for POST /admin/reload; without it the admin API is off.
    #[arg(long, env = "RTB_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// StatsD agent, host:port (the original's dashboard reads filtering_server.*).
    #[arg(long, env = "RTB_STATSD")]
    pub statsd: Option<String>,
    /// Serve (not ready) when no valid model can be loaded at start, and keep polling for
    /// one, instead of exiting.
    #[arg(long, env = "RTB_START_UNREADY")]
    pub start_unready: bool,
    /// Seconds between readiness going false on SIGTERM and the listener closing, so a load
    /// balancer stops sending traffic first; answers in that time carry `Connection: close`.
    #[arg(long, env = "RTB_DRAIN_SECONDS", default_value_t = 5)]
    pub drain_seconds: u64,
    /// Seconds in-flight requests get to finish after the listener closes.
    #[arg(long, env = "RTB_SHUTDOWN_TIMEOUT", default_value_t = 25)]
    pub shutdown_timeout: u64,
}

#[derive(Debug, Error)]
pub enum ServeError {
    #[error(transparent)]
    TimeZone(#[from] BadTimeZone),
    #[error("cannot open the parameter store: {0}")]
    Params(#[from] rtb_params::ParamsError),
    #[error(
        "no model to serve: {0}; fix the artifacts, or pass --start-unready to wait for a valid one"
    )]
    Model(#[from] ArtifactError),
    #[error(transparent)]
    Statsd(#[from] StatsdError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error("http server failed: {0}")]
    Server(std::io::Error),
    #[error("cannot watch for SIGTERM: {0}")]
    Signal(std::io::Error),
    #[error(
        "the admin token has {length} characters; use at least {MIN_ADMIN_TOKEN_LEN} (e.g. `openssl rand -hex 16`), or none to keep the admin API off"
    )]
    WeakAdminToken { length: usize },
}

const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// Loads the model the parameter store names and serves it until SIGTERM or SIGINT.
pub async fn serve(args: &ServeArgs) -> Result<(), ServeError> {
    let time_zone = args.time_zone.as_deref().map(Clock::parse).transpose()?;
    // compared with the presented token, which is trimmed too
    let admin_token = args
        .admin_token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    if let Some(token) = &admin_token
        && token.len() < MIN_ADMIN_TOKEN_LEN
    {
        return Err(ServeError::WeakAdminToken {
            length: token.len(),
        });
    }
    // the port first: a port in use is found before the model is read, not after
    let listener =
        std::net::TcpListener::bind(&args.listen).map_err(|source| ServeError::Bind {
            address: args.listen.clone(),
            source,
        })?;
    let store = ParameterStore::open(&args.parameter_store).await?;
    let model = match artifacts::load_current(&store, time_zone).await {
        Ok(model) => {
            info!(
                model_id = model.model_id(),
                trees = model.ensemble.iterations(),
                vocabulary = %model.vocabulary.version,
                contract = %model.manifest.contract.version,
                job = %model.manifest.contract.job,
                manifest = %model.manifest_url,
                "model loaded"
            );
            Some(model)
        }
        Err(err) if args.start_unready => {
            warn!(error = %err, "no valid model yet; serving not ready and polling for one");
            None
        }
        Err(err) => return Err(err.into()),
    };
    let statsd = match &args.statsd {
        Some(address) => Statsd::udp(address)?,
        None => Statsd::disabled(),
    };
    let limits = Limits {
        max_batch: args.max_batch,
        max_body_bytes: args.max_body_bytes,
        body_timeout: Duration::from_millis(args.body_timeout_ms),
    };
    let state = web::Data::new(AppState::new(
        model,
        Some(store),
        time_zone,
        limits,
        admin_token,
        statsd,
    ));
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
    let address = listener.local_addr().map_err(|source| ServeError::Bind {
        address: args.listen.clone(),
        source,
    })?;
    // actix-web's HttpServer, assembled by hand so the socket under the dispatcher is a
    // `wire::Watched` one: answers the HTTP layer gives before any handler are counted too
    let builder = actix_server::Server::build();
    let shutdown_signal = builder.graceful_shutdown_signal();
    let app_state = state.clone();
    let server = builder
        .workers(workers)
        .shutdown_timeout(args.shutdown_timeout)
        // our own handler flips readiness before the server stops
        .disable_signals()
        .listen("rtb-scorer", listener, move || {
            let watching = app_state.clone();
            let shutdown_signal = shutdown_signal.clone();
            actix_web::dev::fn_service(move |io: tokio::net::TcpStream| {
                let peer = io.peer_addr().ok();
                let _ = io.set_nodelay(true);
                let watched = wire::Watched::new(io, watching.clone());
                std::future::ready(Ok::<_, actix_http::error::DispatchError>((watched, peer)))
            })
            .and_then(
                actix_http::HttpService::build()
                    .graceful_shutdown_signal(move || {
                        let signal = shutdown_signal.clone();
                        async move { signal.notified().await }
                    })
                    // HttpServer's defaults
                    .keep_alive(actix_http::KeepAlive::default())
                    .client_request_timeout(Duration::from_secs(5))
                    .client_disconnect_timeout(Duration::from_secs(1))
                    .local_addr(address)
                    .h1(actix_service::map_config(app(app_state.clone()), |_| {
                        actix_web::dev::AppConfig::default()
                    })),
            )
        })
        .map_err(|source| ServeError::Bind {
            address: args.listen.clone(),
            source,
        })?;
    let addresses = [address.to_string()];
    let server = server.run();
    info!(listen = ?addresses, workers, "scorer listening");
    if args.statsd.is_some() {
        let flushing = state.clone();
        actix_web::rt::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(1));
            loop {
                ticks.tick().await;
                flushing.statsd.flush();
            }
        });
    }
    if args.reload_interval > 0 {
        actix_web::rt::spawn(poll(
            state.clone(),
            Duration::from_secs(args.reload_interval),
        ));
    }
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(ServeError::Signal)?;
    let handle = server.handle();
    let drain = Duration::from_secs(args.drain_seconds);
    let stopping = state.clone();
    actix_web::rt::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        stopping.begin_shutdown();
        info!(
            drain_seconds = drain.as_secs(),
            "shutting down: readiness is false, in-flight requests finish"
        );
        tokio::time::sleep(drain).await;
        handle.stop(true).await;
    });
    server.await.map_err(ServeError::Server)?;
    info!("scorer stopped");
    Ok(())
}

/// The application every worker serves.
fn app(
    state: web::Data<AppState>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let draining = state.clone();
    App::new()
        .app_data(state)
        .configure(api::configure)
        // while draining, each answer asks its client to reconnect (to another instance), so
        // keep-alive connections leave before the listener closes
        .wrap_fn(move |req, srv| {
            let draining = draining.clone();
            let answer = actix_web::dev::Service::call(srv, req);
            async move {
                let mut res = answer.await?;
                if draining.shutting_down() {
                    res.response_mut()
                        .head_mut()
                        .set_connection_type(actix_web::http::ConnectionType::Close);
                }
                Ok(res)
            }
        })
}

/// Checks the model pointer every `interval`; a new, valid model is swapped in.
async fn poll(state: web::Data<AppState>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        if state.shutting_down() {
            return;
        }
        if let crate::state::ReloadOutcome::Rejected(err) = state.reload(false).await {
            // already logged with its context; keep a short line for log searches
            error!(error = %err, "model reload failed");
        }
    }
}
