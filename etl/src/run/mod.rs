//! The `run` command: one feature job, embedded or on a cluster, from raw logs to committed
//! artifacts.
//!
//! Layout of a run under `--out` (mirrors the original's S3 prefixes):
//! ```text
//! runs/<run_id>/processed/transformed/                     Parquet: the joined rows
//! runs/<run_id>/processed/features/split={train,valid,test}/ Parquet: the training splits
//! runs/<run_id>/pipeline-model/vocabulary.json             fitted StringIndexers, versioned
//! runs/<run_id>/pipeline-model/feature-contract.json       request fields, feature expressions
//! runs/<run_id>/pipeline-model/inference-data/             JSON lines the simulator replays
//! runs/<run_id>/rejects/rejects.jsonl                      every rejected line, with its reason
//! runs/<run_id>/manifest.json                              written last: the commit marker
//! latest.json                                              the newest committed run
//! ```
//! A run without `manifest.json` is not committed and no reader may use it; a failed run
//! deletes what it wrote.

mod contract;
mod engine;
mod inputs;
mod pool;
mod splits;
mod summary;
mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use datafusion::common::TableReference;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use indicatif::ProgressBar;
use rtb_features::layout::LogKind;
use rtb_features::manifest::{JobInfo, SplitCounts, VocabularyInfo, outputs};
use rtb_features::{Dialect, EtlManifest, FeatureVocabulary};
use rtb_storage::Location;
use rtb_storage::commit::{CommitError, Staging};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::ingest::{InputFile, Ranges, RawLogSpec, RawLogTable};
use crate::job::{self, Job, StepRole};
use crate::{cluster, udf};
pub use engine::read_parquet;
use engine::{
    cluster_grouped_rows, fit_vocabulary, grouped_rows, grouping_of, partitions, session, write,
};
pub use inputs::wildcard_match;
use inputs::{list_inputs, read_reports};
pub use summary::render;

/// The run manifest, shared with the trainer.
pub type Manifest = EtlManifest;

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Job SQL file; the built-in bid-filtering job when absent.
    #[arg(long, env = "RTB_JOB")]
    pub job: Option<String>,
    /// Folder or s3:// prefix holding the raw logs.
    #[arg(long, env = "RTB_INPUT", default_value = "data/raw")]
    pub input: String,
    /// Bid log file names under --input; `*` and `?` wildcards, comma-separated list allowed.
    #[arg(long, env = "RTB_BIDS", default_value = "bid.*")]
    pub bids: String,
    /// Impression log file names under --input.
    #[arg(long, env = "RTB_IMPS", default_value = "imp.*")]
    pub imps: String,
    /// Folder or s3:// prefix for the run's outputs.
    #[arg(long, env = "RTB_RUN_OUT", default_value = "data/features")]
    pub out: String,
    /// Job parameter override, `name=value` (repeatable).
    #[arg(long = "param", env = "RTB_PARAM", value_delimiter = ',')]
    pub params: Vec<String>,
    /// How raw lines are read: `strict` rejects and counts every line that is not exactly a log
    /// row; `spark` reads them as the original kit's Spark job did (short rows padded, quotes
    /// interpreted, `null` a string, prices by `Long.parseLong`), to reproduce its features
    /// exactly (docs/spark-compat.md).
    #[arg(
        long = "compat",
        env = "RTB_COMPAT",
        value_name = "MODE",
        default_value = "strict"
    )]
    pub read_as: Dialect,
    /// Input files are read in byte ranges of this size, one task each, so one large day keeps
    /// every core (and every executor) busy; 0 reads each file as one task. A `.bz2` or `.gz`
    /// file's ranges are a quarter of this (its bytes decode to about four times as many); a
    /// `.gz` file of one gzip member is still decoded by one task. A split file's range count
    /// is rounded up to a multiple of `--partitions`, its ranges made equal (so never larger
    /// than this), and the last wave of tasks keeps every core busy. Default: 128MiB.
    #[arg(long, env = "RTB_RANGE_SIZE")]
    pub range_size: Option<String>,
    /// Memory pool for joins, aggregations and sorts; beyond it they spill to disk.
    #[arg(long, env = "RTB_MEMORY_LIMIT", default_value = "2GiB")]
    pub memory_limit: String,
    /// Folder for spill files (default: the system temp folder).
    #[arg(long, env = "RTB_SPILL_DIR")]
    pub spill_dir: Option<String>,
    /// Cluster only: what each task writing shuffle output may buffer before it spills to the
    /// executor's disk (Ballista's `ballista.shuffle.sort_based.memory_limit_per_task_bytes`,
    /// 256MiB by default). Budget it with the executor's slots: slots x this must fit its memory.
    #[arg(long, env = "RTB_SHUFFLE_BUFFER")]
    pub shuffle_buffer: Option<String>,
    /// Parallelism of the query engine (default: the number of cores here). On a cluster it is
    /// the task count of every shuffle stage: set it to the executors' total slots.
    #[arg(long, env = "RTB_PARTITIONS")]
    pub partitions: Option<usize>,
    /// Run on a Ballista cluster, `df://scheduler-host:50050`, instead of embedded. Executors
    /// then read the inputs and write the outputs themselves: both must be URLs every cluster
    /// process can reach (s3://, or a folder shared by all machines).
    #[arg(long, env = "RTB_CLUSTER")]
    pub cluster: Option<String>,
    /// Cluster only: cancel a job in which no task has finished for this long, and fail the
    /// run with nothing committed (Ballista 55 can leave a job running forever after an
    /// executor loss: docs/cluster.md). Keep it above the longest task and the scheduler's
    /// executor timeout; 0 waits forever.
    #[arg(long, env = "RTB_STALL_TIMEOUT_SECONDS", default_value_t = 600)]
    pub stall_timeout_seconds: u64,
    /// Where output locations are published under the original's `/aik/...` names: a JSON file
    /// (path or file://), or `ssm://` (AWS SSM Parameter Store; `ssm://?endpoint=URL` for an
    /// emulator).
    #[arg(
        long,
        env = "RTB_PARAMETER_STORE",
        default_value = "data/parameter-store.json"
    )]
    pub parameter_store: String,
}

/// The run's locations under the original kit's parameter names, plus the manifest pointer.
pub fn published_parameters(
    args: &RunArgs,
    manifest: &Manifest,
    manifest_url: &str,
) -> Vec<(&'static str, String)> {
    use rtb_params::names;
    // absolute, like the output urls: a relative path means nothing to another process
    let input = Location::parse(&args.input)
        .map(|l| l.url().as_str().trim_end_matches('/').to_owned())
        .unwrap_or_else(|_| args.input.trim_end_matches('/').to_owned());
    let input = input.as_str();
    let o = &manifest.outputs;
    vec![
        (names::RAW_DATA, input.to_owned()),
        (names::BID_SOURCE, format!("{input}/{}", args.bids)),
        (names::IMP_SOURCE, format!("{input}/{}", args.imps)),
        (names::OUTPUT_TRANSFORMED, o[outputs::TRANSFORMED].clone()),
        (names::OUTPUT_TRAIN, o["train"].clone()),
        (names::OUTPUT_VERIFY, o["valid"].clone()),
        (names::OUTPUT_TEST, o["test"].clone()),
        (
            names::PIPELINE_MODEL_ARTIFACT_PATH,
            o[outputs::VOCABULARY].clone(),
        ),
        (
            names::PIPELINE_MODEL_ARTIFACT_SCHEMA_PATH,
            o[outputs::CONTRACT].clone(),
        ),
        (names::INFERENCE_DATA, o[outputs::INFERENCE_DATA].clone()),
        (ETL_MANIFEST_PARAMETER, manifest_url.to_owned()),
    ]
}

/// `--range-size` unless given.
pub const DEFAULT_RANGE_SIZE: &str = "128MiB";

/// Our addition to the original's names: the committed run's manifest.
pub const ETL_MANIFEST_PARAMETER: &str = "/aik/etl/manifest";

/// Parses `256MiB`, `2GiB`, `512MB`, or a plain number of bytes.
pub fn parse_size(text: &str) -> anyhow::Result<usize> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .with_context(|| format!("size {text:?} must start with a number, e.g. 256MiB"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => bail!("unknown size unit {other:?} in {text:?}; use B, KiB, MiB or GiB"),
    };
    Ok((number * factor) as usize)
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub const MANIFEST: &str = "manifest.json";
pub const LATEST: &str = "latest.json";

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What `run` did, for the summary printed at the end.
pub struct RunOutcome {
    pub run_url: String,
    pub manifest: Manifest,
}

pub async fn run(args: &RunArgs) -> anyhow::Result<RunOutcome> {
    run_with_progress(args, &ProgressBar::hidden()).await
}

/// [`run`], reporting stored input bytes read and the current step on `progress`.
pub async fn run_with_progress(
    args: &RunArgs,
    progress: &ProgressBar,
) -> anyhow::Result<RunOutcome> {
    let started = Instant::now();
    let (job_source, job_text) = match &args.job {
        Some(path) => (
            path.clone(),
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read job file {path}"))?,
        ),
        None => (
            "builtin:bid-filtering.sql".to_owned(),
            job::BID_FILTERING.to_owned(),
        ),
    };
    let job = Job::parse(&job_text)?.with_params(args.params.iter().map(String::as_str))?;
    // a job the scorer could not serve is refused before the inputs are even listed
    let plan = plan_job(&job).await?;
    let limit = parse_size(&args.memory_limit)?;
    let range_size = args.range_size.as_deref().unwrap_or(DEFAULT_RANGE_SIZE);
    let ranges = Ranges {
        bytes: parse_size(range_size).context("--range-size")? as u64,
        multiple: partitions(args) as u64,
    };
    let input = Location::parse(&args.input)?;
    let out = Location::parse(&args.out)?;
    // a run written among raw logs would be listed as input by the next run, or mixed with it
    if out.url() == input.url() || out.get(crate::generate::SUMMARY_FILE).await.is_ok() {
        bail!(
            "--out {} is a folder of raw logs (the input, or a generator's output); write the run elsewhere, e.g. --out data/features",
            args.out
        );
    }
    // found out now, not after the work: where the locations will be published
    let store = async {
        let store = rtb_params::ParameterStore::open(&args.parameter_store).await?;
        store.check().await.map(|()| store)
    }
    .await
    .with_context(|| {
        format!(
            "the parameter store {} cannot be opened; nothing was run",
            args.parameter_store
        )
    })?;
    // a killed run leaves its folder without a manifest: say where, and how to remove it
    match crate::gc::uncommitted_runs(&out).await {
        Ok(left) if !left.is_empty() => {
            let list: Vec<String> = left.iter().map(crate::gc::describe).collect();
            warn!(
                "{} uncommitted run folder(s) under {} (killed or failed runs; never read): {}; `rtb-etl gc --out {}` deletes them",
                left.len(),
                args.out,
                list.join(", "),
                args.out
            );
        }
        _ => {}
    }
    let bid_files = list_inputs(&input, &args.bids, LogKind::Bid).await?;
    let imp_files = list_inputs(&input, &args.imps, LogKind::Imp).await?;

    let stamp = chrono::Utc::now();
    let mut id_hasher = Sha256::new();
    id_hasher.update(job_text.as_bytes());
    for f in bid_files.iter().chain(&imp_files) {
        id_hasher.update(f.url.as_bytes());
    }
    id_hasher.update(
        stamp
            .timestamp_nanos_opt()
            .unwrap_or_default()
            .to_le_bytes(),
    );
    let id_hash: String = id_hasher
        .finalize()
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    let run_id = format!("{}-{id_hash}", stamp.format("%Y%m%dT%H%M%SZ"));
    let run = RunContext {
        args,
        job: &job,
        job_source: &job_source,
        job_text: &job_text,
        limit,
        ranges,
        out: &out,
        run_prefix: format!("runs/{run_id}"),
        run_id,
        started,
    };
    info!(
        run_id = run.run_id,
        inputs = bid_files.len() + imp_files.len(),
        "starting feature job {}",
        job.name
    );

    if args.cluster.is_none() {
        // executors read the files on a cluster: only the steps are shown
        progress.set_length(bid_files.iter().chain(&imp_files).map(|f| f.size).sum());
    }
    let run_url = out.child_url(&run.run_prefix);
    let staging = Staging::new(&out, run.run_prefix.clone());
    let manifest = match execute(&run, &plan, progress, &input, bid_files, imp_files).await {
        Ok(manifest) => manifest,
        Err(err) => {
            staging.abort(MANIFEST).await;
            return Err(err.context(format!(
                "feature job failed; nothing was committed under {run_url}"
            )));
        }
    };
    let latest = serde_json::json!({ "run_id": run.run_id, "manifest": staging.url(MANIFEST) });
    let manifest_url = staging
        .commit(
            MANIFEST,
            serde_json::to_vec_pretty(&manifest)?.into(),
            LATEST,
            serde_json::to_vec_pretty(&latest)?.into(),
        )
        .await
        .map_err(|err| match err {
            CommitError::NotCommitted { .. } => anyhow::Error::new(err),
            CommitError::PointerNotMoved { .. } => anyhow::Error::new(err)
                .context("the run's locations were not published; fix the output and re-run"),
        })?;
    info!(run_id = run.run_id, "committed feature run");
    // committed: from here on nothing is deleted, and a failure says what stands
    store
        .put_many(&published_parameters(args, &manifest, &manifest_url))
        .await
        .with_context(|| {
            format!(
                "run {} is committed at {run_url} (and named by {}), but publishing its locations to {} failed; fix the store and re-run to publish",
                manifest.run_id,
                out.child_url(LATEST),
                args.parameter_store
            )
        })?;
    Ok(RunOutcome { run_url, manifest })
}

/// One run being executed: what every phase needs.
struct RunContext<'a> {
    args: &'a RunArgs,
    job: &'a Job,
    job_source: &'a str,
    job_text: &'a str,
    limit: usize,
    ranges: Ranges,
    out: &'a Location,
    run_prefix: String,
    run_id: String,
    started: Instant,
}

impl RunContext<'_> {
    fn url(&self, name: &str) -> String {
        self.out.child_url(&format!("{}/{name}", self.run_prefix))
    }
}

/// Row counts and timings gathered while the steps run.
#[derive(Default)]
struct Tally {
    rows: BTreeMap<String, u64>,
    durations: BTreeMap<String, u64>,
    outputs: BTreeMap<String, String>,
    splits: BTreeMap<String, SplitCounts>,
}

impl Tally {
    fn lap(&mut self, name: &str, phase: &mut Instant) {
        self.durations
            .insert(name.to_owned(), phase.elapsed().as_millis() as u64);
        *phase = Instant::now();
    }
}

/// Plans every step of `job` over the raw tables' schemas alone (no input is listed or read)
/// and compiles its features as the scorer will.
async fn plan_job(job: &Job) -> anyhow::Result<contract::JobPlan> {
    let ctx = SessionContext::new_with_config(rtb_expr::sql_config(
        datafusion::prelude::SessionConfig::new(),
    ));
    udf::register(&ctx);
    for (name, kind) in [("bids", LogKind::Bid), ("imps", LogKind::Imp)] {
        let spec = RawLogSpec {
            kind,
            files: Vec::new(),
            report_dir: String::new(),
            dialect: Dialect::Strict,
            ranges: Ranges::default(),
        };
        ctx.register_table(name, Arc::new(RawLogTable::new(spec, None)))?;
    }
    contract::check(&ctx, job).await
}

async fn execute(
    run: &RunContext<'_>,
    plan: &contract::JobPlan,
    progress: &ProgressBar,
    input: &Location,
    bid_files: Vec<InputFile>,
    imp_files: Vec<InputFile>,
) -> anyhow::Result<Manifest> {
    let (args, job, out) = (run.args, run.job, run.out);
    let ctx = session(args, run.limit, &job.settings, &[input, out]).await?;
    let bytes_read = Arc::new(AtomicU64::new(0));
    let ticker = {
        let (bytes_read, progress) = (Arc::clone(&bytes_read), progress.clone());
        tokio::spawn(async move {
            loop {
                progress.set_position(bytes_read.load(Ordering::Relaxed));
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        })
    };
    let _stop_ticker = AbortOnDrop(ticker);
    let ingest_dir = run.url("ingest/");
    let all_files: Vec<InputFile> = bid_files.iter().chain(&imp_files).cloned().collect();
    for (name, kind, files) in [
        ("bids", LogKind::Bid, bid_files),
        ("imps", LogKind::Imp, imp_files),
    ] {
        let spec = RawLogSpec {
            kind,
            files,
            report_dir: ingest_dir.clone(),
            dialect: args.read_as,
            ranges: run.ranges,
        };
        ctx.register_table(
            name,
            Arc::new(RawLogTable::new(spec, Some(Arc::clone(&bytes_read)))),
        )?;
    }

    let mut tally = Tally::default();
    // grouped view steps, by name and GROUP BY names: their row counts are read from the
    // aggregation the engine ran for them (see `grouping_of`)
    let mut grouped: Vec<(String, Vec<String>)> = Vec::new();
    let mut uncounted: Vec<(String, &str)> = Vec::new();
    let mut all_keys: Vec<Vec<String>> = Vec::new();
    let mut fitted: Option<(FeatureVocabulary, rtb_features::FeatureContract)> = None;
    let mut phase = Instant::now();
    for step in &job.steps {
        progress.set_message(format!("step {}", step.name));
        let sql = job.render(step)?;
        match step.role {
            StepRole::Transformed => {
                let df = plan_step(&ctx, &step.name, &sql).await?;
                let target = run.url("processed/transformed/");
                let (physical, n) = write(&ctx, df, &target, false, &[]).await?;
                let reported = match &args.cluster {
                    None => {
                        grouped_rows(&physical, &grouped, &mut tally.rows);
                        true
                    }
                    Some(url) => {
                        let scheduler = cluster::scheduler_url(url)?;
                        let counted =
                            cluster_grouped_rows(&scheduler, &physical, &grouped, &mut tally.rows)
                                .await;
                        // the rows are written; only their count is missing
                        if let Err(e) = &counted {
                            warn!(
                                "cannot read the grouped steps' row counts from the scheduler: {e:#}; the manifest leaves them out"
                            );
                        }
                        counted.is_ok()
                    }
                };
                let unreported = grouped
                    .iter()
                    .filter(|(name, _)| reported && !tally.rows.contains_key(name))
                    .map(|(name, _)| (name.clone(), "the engine did not report its aggregation"));
                for (name, why) in uncounted.iter().cloned().chain(unreported) {
                    warn!(
                        step = name.as_str(),
                        "the rows of grouped step {name} are not counted ({why}); the manifest leaves them out"
                    );
                }
                tally.rows.insert("transformed".into(), n);
                ctx.register_parquet("transformed", &target, ParquetReadOptions::default())
                    .await?;
                tally.outputs.insert(outputs::TRANSFORMED.into(), target);
                tally.lap("ingest_and_transform", &mut phase);
                progress.set_message("fitting the vocabulary");
                let vocabulary = fit_vocabulary(&ctx, &job.categorical).await?;
                udf::register_encode(&ctx, Arc::new(vocabulary.clone()));
                let contract = contract::assemble(job, plan, &vocabulary)?;
                fitted = Some((vocabulary, contract));
                tally.lap("vocabulary", &mut phase);
            }
            StepRole::Requests => {
                let df = plan_step(&ctx, &step.name, &sql).await?;
                ctx.register_table(contract::REQUESTS_STEP_TABLE, df.into_view())?;
                let typed = ctx.sql(&contract::requests_sql(job, plan)).await?;
                ctx.register_table(rtb_expr::REQUESTS_TABLE, typed.into_view())?;
                let (_, contract) = fitted
                    .as_ref()
                    .context("inference_requests before transformed")?;
                let target = run.url("pipeline-model/inference-data/");
                let df = ctx.sql(&contract::inference_data_sql(contract)).await?;
                let (_, n) = write(&ctx, df, &target, true, &[]).await?;
                tally.rows.insert("inference_requests".into(), n);
                tally.outputs.insert(outputs::INFERENCE_DATA.into(), target);
                tally.lap("inference_requests", &mut phase);
            }
            StepRole::Features => {
                let (_, contract) = fitted.as_ref().context("features before transformed")?;
                progress.set_message("writing the splits");
                splits::write_features(run, &ctx, contract, &mut tally).await?;
                tally.lap("features_and_splits", &mut phase);
            }
            StepRole::View => {
                let df = plan_step(&ctx, &step.name, &sql).await?;
                let name = step.name.as_str();
                match grouping_of(df.logical_plan()) {
                    Some(Some(keys)) if all_keys.contains(&keys) => {
                        // their aggregations could not be told apart
                        const SAME: &str = "another step groups by the same columns";
                        if let Some(i) = grouped.iter().position(|(_, k)| *k == keys) {
                            uncounted.push((grouped.remove(i).0, SAME));
                        }
                        uncounted.push((name.to_owned(), SAME));
                    }
                    Some(Some(keys)) => {
                        all_keys.push(keys.clone());
                        grouped.push((name.to_owned(), keys));
                    }
                    Some(None) => uncounted.push((
                        name.to_owned(),
                        "grouping sets, HAVING or LIMIT over the GROUP BY",
                    )),
                    None => {}
                }
                ctx.register_table(TableReference::bare(name), df.into_view())?;
            }
        }
    }
    let (vocabulary, contract) = fitted.context("the job has no transformed step")?;
    progress.set_message("committing");

    let inputs = read_reports(
        out,
        &format!("{}/ingest", run.run_prefix),
        &all_files,
        run.ranges,
    )
    .await?;
    for kind in [LogKind::Bid, LogKind::Imp] {
        let name = match kind {
            LogKind::Bid => "bids",
            LogKind::Imp => "imps",
        };
        let of_kind = inputs.iter().filter(|r| r.kind == kind);
        let (read, accepted, rejected) = of_kind.fold((0, 0, 0), |(a, b, c), r| {
            (a + r.lines, b + r.accepted, c + r.rejected)
        });
        tally.rows.insert(format!("{name}_read"), read);
        tally.rows.insert(format!("{name}_accepted"), accepted);
        tally.rows.insert(format!("{name}_rejected"), rejected);
    }
    tally
        .outputs
        .insert(outputs::REJECTS.into(), ingest_dir.clone());
    for (name, file, bytes) in [
        (
            outputs::VOCABULARY,
            "pipeline-model/vocabulary.json",
            vocabulary.to_json()?,
        ),
        (
            outputs::CONTRACT,
            "pipeline-model/feature-contract.json",
            contract.to_json()?,
        ),
    ] {
        let target = format!("{}/{file}", run.run_prefix);
        out.put(&target, bytes.into()).await?;
        tally.outputs.insert(name.into(), out.child_url(&target));
    }
    tally.lap("artifacts", &mut phase);
    tally
        .durations
        .insert("total".into(), run.started.elapsed().as_millis() as u64);

    let manifest = Manifest {
        run_id: run.run_id.clone(),
        job: JobInfo {
            name: job.name.clone(),
            source: run.job_source.to_owned(),
            sha256: sha256_hex(run.job_text.as_bytes()),
            params: job.params.clone(),
            categorical: job.categorical.clone(),
            read_as: run.args.read_as,
        },
        versions: BTreeMap::from([
            ("rtb-etl".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
            (
                "datafusion".to_owned(),
                datafusion::DATAFUSION_VERSION.to_owned(),
            ),
        ]),
        inputs,
        rows: tally.rows,
        splits: tally.splits,
        vocabulary: VocabularyInfo {
            version: vocabulary.version.clone(),
            sizes: vocabulary
                .columns()
                .map(|(name, indexer)| (name.to_owned(), indexer.labels().len() as u64))
                .collect(),
        },
        contract_version: contract.version.clone(),
        outputs: tally.outputs,
        durations_ms: tally.durations,
        memory_limit_bytes: run.limit,
        committed_at: chrono::Utc::now().to_rfc3339(),
    };
    Ok(manifest)
}

async fn plan_step(
    ctx: &SessionContext,
    name: &str,
    sql: &str,
) -> anyhow::Result<datafusion::prelude::DataFrame> {
    ctx.sql(sql)
        .await
        .with_context(|| format!("job step {name} does not plan"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_wildcards() {
        assert_eq!(parse_size("256MiB").expect("size"), 256 << 20);
        assert_eq!(parse_size("2GiB").expect("size"), 2 << 30);
        assert_eq!(parse_size("1000").expect("size"), 1000);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert!(wildcard_match("bid.*", "bid.20130311.txt.bz2"));
        assert!(wildcard_match("bid.2013031?.txt", "bid.20130311.txt"));
        assert!(!wildcard_match("bid.*", "imp.20130311.txt"));
        assert!(!wildcard_match("bid.*.gz", "bid.20130311.txt"));
        assert!(wildcard_match("*", "anything"));
    }
}
