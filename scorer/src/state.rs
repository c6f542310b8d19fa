//! What every worker shares: the model being served (swapped atomically on reload), metrics,
//! settings, and the reloader.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwapOption;
use rtb_params::ParameterStore;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::artifacts::{self, ArtifactError, LoadedModel};
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::statsd::Statsd;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Most requests in one batch call, and most impressions in one OpenRTB request.
    pub max_batch: usize,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Longest a request body may take to arrive once its headers have.
    pub body_timeout: std::time::Duration,
}

pub struct AppState {
    model: ArcSwapOption<LoadedModel>,
    shutting_down: AtomicBool,
    pub metrics: Metrics,
    pub statsd: Statsd,
    /// Replaces each model's own time zone when set (`--time-zone`).
    pub time_zone: Option<Clock>,
    pub limits: Limits,
    pub admin_token: Option<String>,
    store: Option<ParameterStore>,
    /// Serialises reloads, and remembers the last manifest whose content was refused so polling
    /// does not retry (and re-count) the same bad model every interval; a manifest that could
    /// not be read is not remembered.
    reload: Mutex<Option<String>>,
    /// Failed admin attempts in the current window, and when that window started.
    admin_failures: std::sync::Mutex<(u32, Option<std::time::Instant>)>,
}

/// Failed admin attempts allowed per window before the admin API refuses every attempt until
/// the window ends: guessing a token over the network stays hopeless.
const ADMIN_FAILURES_ALLOWED: u32 = 10;
const ADMIN_FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Pauses between the attempts to read a new model's artifacts.
const RELOAD_RETRY_PAUSES_MS: [u64; 3] = [200, 800, 2000];

/// What a reload did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// The parameter store names the model already served (or one already rejected).
    Unchanged {
        model_id: Option<String>,
    },
    Swapped {
        from: Option<String>,
        to: String,
    },
    /// The new model was refused; the old one (if any) keeps serving.
    Rejected(ArtifactError),
}

impl AppState {
    pub fn new(
        model: Option<LoadedModel>,
        store: Option<ParameterStore>,
        time_zone: Option<Clock>,
        limits: Limits,
        admin_token: Option<String>,
        statsd: Statsd,
    ) -> Self {
        AppState {
            model: ArcSwapOption::new(model.map(Arc::new)),
            shutting_down: AtomicBool::new(false),
            metrics: Metrics::default(),
            statsd,
            time_zone,
            limits,
            admin_token,
            store,
            reload: Mutex::new(None),
            admin_failures: std::sync::Mutex::new((0, None)),
        }
    }

    /// The model to score with; `None` before the first successful load.
    pub fn model(&self) -> Option<Arc<LoadedModel>> {
        self.model.load_full()
    }

    /// Cheaper than [`Self::model`] for one short request: no reference count is taken.
    pub fn model_guard(&self) -> arc_swap::Guard<Option<Arc<LoadedModel>>> {
        self.model.load()
    }

    pub fn admin_failed(&self) {
        let mut f = self
            .admin_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if f.1
            .is_none_or(|start| start.elapsed() >= ADMIN_FAILURE_WINDOW)
        {
            *f = (0, Some(std::time::Instant::now()));
        }
        f.0 += 1;
    }

    /// Seconds left in a lockout after too many failed admin attempts.
    pub fn admin_locked_out(&self) -> Option<u64> {
        let f = self
            .admin_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let start = f.1?;
        let left = ADMIN_FAILURE_WINDOW.checked_sub(start.elapsed())?;
        (f.0 >= ADMIN_FAILURES_ALLOWED).then(|| left.as_secs().max(1))
    }

    pub fn ready(&self) -> bool {
        !self.shutting_down.load(Ordering::Acquire) && self.model.load().is_some()
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Readiness goes false; requests are still answered until the server stops.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// Serves `model` from the next request on; requests already holding the old one finish
    /// with it.
    pub fn swap(&self, model: LoadedModel) -> Option<String> {
        let old = self.model.swap(Some(Arc::new(model)));
        old.map(|m| m.model_id().to_owned())
    }

    /// Loads the model the parameter store names, checks it, and swaps it in. Without `force`
    /// a model already served or already rejected is left alone.
    pub async fn reload(&self, force: bool) -> ReloadOutcome {
        let Some(store) = &self.store else {
            return ReloadOutcome::Unchanged {
                model_id: self.model().map(|m| m.model_id().to_owned()),
            };
        };
        let mut last_failed = self.reload.lock().await;
        let url = match artifacts::manifest_url(store).await {
            Ok(url) => url,
            Err(err) => {
                warn!(error = %err, "cannot read the model pointer; the current model keeps serving");
                // a store that cannot be reached is not a rejected model: the next poll retries
                self.metrics.reload_unreadable();
                return ReloadOutcome::Rejected(err);
            }
        };
        let current = self.model();
        let unchanged = current.as_ref().is_some_and(|m| m.manifest_url == url)
            || last_failed.as_deref() == Some(url.as_str());
        if unchanged && !force {
            return ReloadOutcome::Unchanged {
                model_id: current.map(|m| m.model_id().to_owned()),
            };
        }
        // a read failure (an object not yet visible, a 5xx, a timeout) is retried with backoff
        // and never remembered; only content that cannot serve is
        let mut loaded = artifacts::load(&url, self.time_zone).await;
        for pause_ms in RELOAD_RETRY_PAUSES_MS {
            match &loaded {
                Err(err) if err.is_transient() => {
                    warn!(manifest = %url, error = %err, retry_in_ms = pause_ms, "cannot read the new model; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
                    loaded = artifacts::load(&url, self.time_zone).await;
                }
                _ => break,
            }
        }
        match loaded {
            Ok(model) => {
                let to = model.model_id().to_owned();
                let from = self.swap(model);
                *last_failed = None;
                self.metrics.reloaded(true);
                info!(from = from.as_deref().unwrap_or("none"), to = %to, "serving a new model");
                ReloadOutcome::Swapped { from, to }
            }
            Err(err) if err.is_transient() => {
                self.metrics.reload_unreadable();
                warn!(manifest = %url, error = %err, "cannot read the new model; the current one keeps serving and the next poll retries");
                ReloadOutcome::Rejected(err)
            }
            Err(err) => {
                self.metrics.reloaded(false);
                *last_failed = Some(url.clone());
                warn!(
                    manifest = %url,
                    serving = current.as_ref().map_or("none", |m| m.model_id()),
                    error = %err,
                    "refused a new model; the current one keeps serving"
                );
                ReloadOutcome::Rejected(err)
            }
        }
    }
}
