//! The client's watch on a cluster job. Ballista 55 can leave a job running forever after an
//! executor loss (its adaptive planner rolls a stage back, then refuses the survivors' task
//! status: docs/cluster.md), and its client polls such a job without end. The watch asks the
//! scheduler's REST API how many tasks of the job have finished; when none has finished for
//! `--stall-timeout-seconds`, it cancels the job and the run fails with nothing committed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ballista_api_types::dto::{QueryStageSummary, QueryStagesResponse, TaskStatus};
use ballista_core::serde::protobuf::CancelJobParams;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use datafusion::arrow::array::RecordBatch;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::SessionContext;
use http_body_util::BodyExt;
use hyper::header::HOST;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long one question to the scheduler may take.
const ASK: Duration = Duration::from_secs(10);

/// Set once a scheduler gave no progress report for a whole stall time: warned once a process.
static BLIND: AtomicBool = AtomicBool::new(false);

/// How the client watches its cluster jobs; a session extension, so every step that runs a
/// plan finds it.
#[derive(Debug, Clone)]
pub(super) struct Watch {
    /// `http://host:port` of the scheduler, which serves gRPC and REST on one port.
    pub scheduler: String,
    /// How long a job may go without a finished task.
    pub stall: Duration,
}

/// Runs `plan` to its end; on a cluster with a [`Watch`], a job that stalls is cancelled and
/// this fails.
pub(super) async fn collect_watched(
    ctx: &SessionContext,
    plan: Arc<dyn ExecutionPlan>,
) -> DfResult<Vec<RecordBatch>> {
    let task = ctx.task_ctx();
    let Some(watch) = ctx.state().config().get_extension::<Watch>() else {
        return collect(plan, task).await;
    };
    let job = tokio::select! {
        done = collect(Arc::clone(&plan), task) => return done,
        job = watch.until_stalled(&plan) => job,
    };
    // cancelled only once the job's own polling is dropped, which would otherwise report the
    // cancellation first, without saying why
    if tokio::time::timeout(ASK, watch.cancel(&job)).await.is_err() {
        tracing::warn!("the scheduler did not confirm the cancellation of job {job}");
    }
    Err(DataFusionError::Execution(format!(
        "cluster job {job} finished no task for {} s and was cancelled (Ballista can stall a \
         job after an executor loss: docs/cluster.md); run again, or raise \
         --stall-timeout-seconds if single tasks of this job run longer",
        watch.stall.as_secs()
    )))
}

/// What changes when a job moves: each stage's state and how many of its tasks finished.
type Progress = Vec<(String, String, usize)>;

fn progress_of(stages: &[QueryStageSummary]) -> Progress {
    stages
        .iter()
        .map(|s| {
            let finished = s
                .tasks
                .iter()
                .flatten()
                .filter(|t| !matches!(t.status, TaskStatus::Running))
                .count();
            (s.stage_id.clone(), s.stage_status.clone(), finished)
        })
        .collect()
}

impl Watch {
    /// The id of the job behind `plan`, once it has gone `stall` without progress; never while
    /// it moves, nor when the scheduler never reported any. A scheduler that
    /// stops answering is no progress (the job's own polling fails first if it is gone).
    async fn until_stalled(&self, plan: &Arc<dyn ExecutionPlan>) -> String {
        let poll = (self.stall / 10).clamp(Duration::from_millis(200), Duration::from_secs(5));
        let mut last: Option<Progress> = None;
        let mut since = Instant::now();
        loop {
            tokio::time::sleep(poll).await;
            let Some(job) = super::engine::job_of(plan) else {
                continue;
            };
            // a scheduler that takes connections but never answers must not stop the watch
            let report = tokio::time::timeout(ASK, self.stages(&job))
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer in {ASK:?}")));
            match report {
                Ok(now) if last.as_ref() != Some(&now) => {
                    last = Some(now);
                    since = Instant::now();
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!("no progress report for job {job}: {e}"),
            }
            if since.elapsed() < self.stall {
                continue;
            }
            if last.is_none() {
                // a scheduler without its REST API would look stalled from the start
                if !BLIND.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "the scheduler at {} answers no job progress (its REST API): cluster \
                         jobs run unwatched",
                        self.scheduler
                    );
                }
                continue;
            }
            return job;
        }
    }

    async fn stages(&self, job: &str) -> anyhow::Result<Progress> {
        let url: hyper::Uri = format!("{}/api/job/{job}/stages", self.scheduler).parse()?;
        let authority = url
            .authority()
            .ok_or_else(|| anyhow::anyhow!("{url} has no host"))?
            .clone();
        let stream = TcpStream::connect(authority.as_str()).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = hyper::Request::get(url.path())
            .header(HOST, authority.as_str())
            .body(String::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::ensure!(status.is_success(), "the scheduler answered {status}");
        let stages: QueryStagesResponse = serde_json::from_slice(&body)?;
        Ok(progress_of(&stages.stages))
    }

    async fn cancel(&self, job: &str) {
        let cancelled = async {
            SchedulerGrpcClient::connect(self.scheduler.clone())
                .await?
                .cancel_job(CancelJobParams {
                    job_id: job.to_owned(),
                })
                .await?;
            anyhow::Ok(())
        };
        if let Err(e) = cancelled.await {
            tracing::warn!("cannot cancel stalled cluster job {job}: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(id: &str, status: &str, tasks: &[&str]) -> QueryStageSummary {
        serde_json::from_value(serde_json::json!({
            "stage_id": id,
            "stage_status": status,
            "input_rows": 0,
            "output_rows": 0,
            "elapsed_compute": null,
            "tasks": tasks.iter().enumerate().map(|(i, t)| serde_json::json!({
                "id": i, "status": if *t == "Failed" {
                    serde_json::json!({"Failed": {"reason": "r", "error": "e"}})
                } else {
                    serde_json::json!(t)
                },
                "partition_id": [i], "scheduled_time": 0, "launch_time": 0,
                "start_exec_time": 0, "end_exec_time": 0, "exec_duration": 0,
                "finish_time": 0, "input_rows": 0, "output_rows": 0,
            })).collect::<Vec<_>>(),
        }))
        .expect("a stage summary")
    }

    #[test]
    fn a_finished_or_failed_task_or_a_new_stage_is_progress_and_nothing_else_is() {
        let before = progress_of(&[stage("1", "Running", &["Running", "Running"])]);
        let same = progress_of(&[stage("1", "Running", &["Running", "Running"])]);
        assert_eq!(before, same);
        for moved in [
            vec![stage("1", "Running", &["Successful", "Running"])],
            vec![stage("1", "Running", &["Failed", "Running"])],
            vec![stage("1", "Successful", &["Running", "Running"])],
            vec![
                stage("1", "Running", &["Running", "Running"]),
                stage("2", "Resolved", &[]),
            ],
        ] {
            assert_ne!(before, progress_of(&moved), "{moved:?}");
        }
    }
}
