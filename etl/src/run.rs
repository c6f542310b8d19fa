//! The `run` command: one feature job, embedded, from raw logs to committed artifacts.
//!
//! Layout of a run under `--out` (mirrors the original's S3 prefixes):
//! ```text
//! runs/<run_id>/processed/{transformed,train,valid,test}/   Parquet
//! runs/<run_id>/pipeline-model/vocabulary.json             fitted StringIndexers, versioned
//! runs/<run_id>/pipeline-model/pipeline-schema.json        request fields and feature order
//! runs/<run_id>/pipeline-model/inference-data/             JSON lines the simulator replays
//! runs/<run_id>/rejects/rejects.jsonl                      every rejected line, with its reason
//! runs/<run_id>/manifest.json                              written last: the commit marker
//! latest.json                                              the newest committed run
//! ```
//! A run without `manifest.json` is not committed and no reader may use it; a failed run
//! deletes what it wrote.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use ballista::prelude::SessionContextExt;
use clap::Args;
use datafusion::arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::common::TableReference;
use datafusion::common::config::TableParquetOptions;
use datafusion::datasource::file_format::format_as_file_type;
use datafusion::datasource::file_format::json::JsonFormatFactory;
use datafusion::datasource::file_format::parquet::ParquetFormatFactory;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionConfig, SessionContext};
use futures::TryStreamExt;
use indicatif::ProgressBar;
use object_store::ObjectStoreExt;
use rtb_features::layout::LogKind;
use rtb_features::vocabulary::{FeatureVocabulary, StringIndexer};
use rtb_features::{FEATURE_NAMES, LABEL_NAME, Split};
use rtb_storage::Location;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tracing::info;

use crate::ingest::{FileReport, InputFile, RawLogSpec, RawLogTable, report_name};
use crate::job::{self, Job};
use crate::stores::StoreRegistry;
use crate::{cluster, udf};

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
    #[arg(long, env = "RTB_OUT", default_value = "data/features")]
    pub out: String,
    /// Job parameter override, `name=value` (repeatable).
    #[arg(long = "param", env = "RTB_PARAM", value_delimiter = ',')]
    pub params: Vec<String>,
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
    /// Parallelism of the query engine (default: the number of cores).
    #[arg(long, env = "RTB_PARTITIONS")]
    pub partitions: Option<usize>,
    /// Run on a Ballista cluster, `df://scheduler-host:50050`, instead of embedded. Executors
    /// then read the inputs and write the outputs themselves: both must be URLs every cluster
    /// process can reach (s3://, or a folder shared by all machines).
    #[arg(long, env = "RTB_CLUSTER")]
    pub cluster: Option<String>,
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
    let input = args.input.trim_end_matches('/');
    let o = &manifest.outputs;
    vec![
        (names::RAW_DATA, input.to_owned()),
        (names::BID_SOURCE, format!("{input}/{}", args.bids)),
        (names::IMP_SOURCE, format!("{input}/{}", args.imps)),
        (names::OUTPUT_TRANSFORMED, o["transformed"].clone()),
        (names::OUTPUT_TRAIN, o["train"].clone()),
        (names::OUTPUT_VERIFY, o["valid"].clone()),
        (names::OUTPUT_TEST, o["test"].clone()),
        (names::PIPELINE_MODEL_ARTIFACT_PATH, o["vocabulary"].clone()),
        (
            names::PIPELINE_MODEL_ARTIFACT_SCHEMA_PATH,
            o["request_schema"].clone(),
        ),
        (names::INFERENCE_DATA, o["inference_data"].clone()),
        (ETL_MANIFEST_PARAMETER, manifest_url.to_owned()),
    ]
}

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

/// `*` matches any run of characters, `?` one character.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[derive(Debug, Clone, Serialize)]
pub struct SplitCounts {
    pub rows: u64,
    pub label_0: u64,
    pub label_1: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobInfo {
    pub name: String,
    pub source: String,
    pub sha256: String,
    pub params: BTreeMap<String, String>,
    pub categorical: Vec<String>,
}

/// Everything a reader of a run needs to trust it; its presence commits the run.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub run_id: String,
    pub job: JobInfo,
    pub versions: BTreeMap<&'static str, &'static str>,
    pub inputs: Vec<FileReport>,
    /// Rows at each stage: `bids_read` = `bids_accepted` + `bids_rejected` (likewise imps), then
    /// rows out of each GROUP BY step, the transformed rows and the feature rows.
    pub rows: BTreeMap<String, u64>,
    pub splits: BTreeMap<&'static str, SplitCounts>,
    pub vocabulary: VocabularyInfo,
    pub outputs: BTreeMap<&'static str, String>,
    pub durations_ms: BTreeMap<&'static str, u64>,
    pub memory_limit_bytes: usize,
    pub committed_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct VocabularyInfo {
    pub version: String,
    pub sizes: BTreeMap<String, u64>,
}

/// Every input's report, written by whichever process read it; a missing one means the file
/// was never read whole, and the run must not claim counts for it.
async fn read_reports(
    out: &Location,
    dir: &str,
    files: &[InputFile],
) -> anyhow::Result<Vec<FileReport>> {
    let mut reports = Vec::with_capacity(files.len());
    for file in files {
        let name = format!("{dir}/{}", report_name(file));
        let bytes = out.get(&name).await.with_context(|| {
            format!(
                "{} was not read to its end, so its line counts are unknown; does the job read every row of its table?",
                file.url
            )
        })?;
        let report: FileReport = serde_json::from_slice(&bytes)
            .with_context(|| format!("ingest report {} is not valid", out.child_url(&name)))?;
        reports.push(report);
    }
    reports.sort_by(|a, b| a.url.cmp(&b.url));
    Ok(reports)
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

async fn list_inputs(
    location: &Location,
    patterns: &str,
    kind: LogKind,
) -> anyhow::Result<Vec<InputFile>> {
    let names = location.list_sized("").await?;
    let patterns: Vec<&str> = patterns
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let mut files: Vec<InputFile> = names
        .iter()
        .filter(|(name, _)| !name.contains('/'))
        .filter(|(name, _)| patterns.iter().any(|p| wildcard_match(p, name)))
        .map(|(name, size)| InputFile {
            url: location.child_url(name),
            kind,
            size: *size,
        })
        .collect();
    files.sort_by(|a, b| a.url.cmp(&b.url));
    if files.is_empty() {
        bail!(
            "no {} log matching {:?} under {}; check --input and --{}",
            match kind {
                LogKind::Bid => "bid",
                LogKind::Imp => "impression",
            },
            patterns.join(","),
            location.url(),
            match kind {
                LogKind::Bid => "bids",
                LogKind::Imp => "imps",
            }
        );
    }
    Ok(files)
}

/// The base URL (`scheme://bucket`) a location's store must be registered under.
fn store_url(location: &Location) -> anyhow::Result<url::Url> {
    let url = location.url();
    let base = match url.scheme() {
        "file" => "file:///".to_owned(),
        scheme => format!("{scheme}://{}", url.host_str().unwrap_or_default()),
    };
    Ok(url::Url::parse(&base)?)
}

async fn session(
    args: &RunArgs,
    limit: usize,
    locations: &[&Location],
) -> anyhow::Result<SessionContext> {
    let partitions = args
        .partitions
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
    let ctx = match &args.cluster {
        Some(url) => {
            // the memory pool and spill folder are the executors' own settings on a cluster
            let mut config = cluster::session_config().with_target_partitions(partitions);
            if let Some(size) = &args.shuffle_buffer {
                config = config.set_usize(
                    "ballista.shuffle.sort_based.memory_limit_per_task_bytes",
                    parse_size(size)?,
                );
            }
            let state = cluster::session_state(config, cluster::runtime(None)?)?;
            SessionContext::remote_with_state(url, state)
                .await
                .with_context(|| format!("cannot reach the Ballista scheduler at {url}"))?
        }
        None => {
            let mut disk = DiskManagerBuilder::default();
            if let Some(dir) = &args.spill_dir {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create spill folder {dir}"))?;
                disk = disk.with_mode(DiskManagerMode::Directories(vec![dir.into()]));
            }
            let runtime = RuntimeEnvBuilder::new()
                .with_object_store_registry(Arc::new(StoreRegistry::default()))
                .with_memory_pool(Arc::new(FairSpillPool::new(limit)))
                .with_disk_manager_builder(disk)
                .build_arc()?;
            // iPinYou columns are CamelCase; keep identifiers as written so jobs read like the
            // original
            let mut config = SessionConfig::new()
                .with_target_partitions(partitions)
                .with_information_schema(true);
            config.options_mut().sql_parser.enable_ident_normalization = false;
            SessionContext::new_with_config_rt(config, runtime)
        }
    };
    for location in locations {
        if location.url().scheme() != "file" {
            ctx.register_object_store(&store_url(location)?, Arc::clone(location.store()));
        }
    }
    // after `remote_with_state`, which replaces the state's function list
    udf::register(&ctx);
    Ok(ctx)
}

/// Executes `df` into files under `url` and returns the physical plan (for its metrics) and
/// the number of rows written.
async fn write(
    ctx: &SessionContext,
    df: DataFrame,
    url: &str,
    json: bool,
) -> anyhow::Result<(Arc<dyn ExecutionPlan>, u64)> {
    let file_type = if json {
        format_as_file_type(Arc::new(JsonFormatFactory::new()))
    } else {
        let mut options = TableParquetOptions::default();
        options.global.compression = Some("zstd(1)".into());
        format_as_file_type(Arc::new(ParquetFormatFactory::new_with_options(options)))
    };
    let plan = LogicalPlanBuilder::copy_to(
        df.logical_plan().clone(),
        url.to_owned(),
        file_type,
        HashMap::new(),
        vec![],
    )?
    .build()?;
    let physical = ctx.state().create_physical_plan(&plan).await?;
    let batches = collect(Arc::clone(&physical), ctx.task_ctx())
        .await
        .with_context(|| format!("cannot write {url}"))?;
    let rows = batches
        .first()
        .and_then(|b| {
            b.column(0)
                .as_primitive_opt::<datafusion::arrow::datatypes::UInt64Type>()
        })
        .map_or(0, |c| c.value(0));
    Ok((physical, rows))
}

/// Rows out of each final aggregation, keyed by the view step whose columns it produces.
fn grouped_rows(
    plan: &Arc<dyn ExecutionPlan>,
    steps: &[(String, Vec<String>)],
    out: &mut BTreeMap<String, u64>,
) {
    let any: &dyn std::any::Any = plan.as_ref();
    if let Some(agg) = any.downcast_ref::<AggregateExec>() {
        let last_stage = matches!(
            agg.mode(),
            AggregateMode::Final
                | AggregateMode::FinalPartitioned
                | AggregateMode::Single
                | AggregateMode::SinglePartitioned
        );
        if last_stage {
            let fields: Vec<String> = plan
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            if let Some((name, _)) = steps.iter().find(|(_, cols)| *cols == fields) {
                let rows = plan.metrics().and_then(|m| m.output_rows()).unwrap_or(0) as u64;
                *out.entry(name.clone()).or_default() += rows;
            }
        }
    }
    for child in plan.children() {
        grouped_rows(child, steps, out);
    }
}

/// Whether `plan` is an aggregation whose output columns are `columns` (under projections),
/// the shape [`grouped_rows`] recognises in a physical plan.
fn groups_into(plan: &LogicalPlan, columns: &[String]) -> bool {
    match plan {
        LogicalPlan::Projection(p) => groups_into(&p.input, columns),
        LogicalPlan::SubqueryAlias(a) => groups_into(&a.input, columns),
        LogicalPlan::Aggregate(a) => {
            let names: Vec<&str> = a
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            names == columns.iter().map(String::as_str).collect::<Vec<_>>()
        }
        _ => false,
    }
}

async fn query_batches(ctx: &SessionContext, sql: &str) -> anyhow::Result<Vec<RecordBatch>> {
    Ok(ctx.sql(sql).await?.collect().await?)
}

/// Fits one StringIndexer per categorical column of `transformed`.
async fn fit_vocabulary(
    ctx: &SessionContext,
    columns: &[String],
) -> anyhow::Result<FeatureVocabulary> {
    let mut fitted = Vec::new();
    for name in columns {
        let sql = format!(
            "SELECT CAST(\"{name}\" AS VARCHAR) AS label, count(*) AS n FROM transformed WHERE \"{name}\" IS NOT NULL GROUP BY \"{name}\""
        );
        let df = ctx.sql(&sql).await.with_context(|| {
            format!("categorical column {name} is not a column of the transformed step")
        })?;
        let mut counts = Vec::new();
        for batch in df.collect().await? {
            let labels = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
            let labels = labels.as_string::<i32>();
            let n = batch.column(1).as_primitive::<Int64Type>();
            for i in 0..batch.num_rows() {
                counts.push((labels.value(i).to_owned(), n.value(i) as u64));
            }
        }
        fitted.push((name.clone(), StringIndexer::fit_from_counts(counts)));
    }
    Ok(FeatureVocabulary::new(fitted))
}

/// Exposes the vocabulary to SQL: `vocabulary_<Column>(label, idx)` and one row
/// `vocabulary_size` holding each column's unknown index. Written as Parquet under the run's
/// work folder rather than held in memory, so a cluster's executors can read them too.
async fn register_vocabulary(
    ctx: &SessionContext,
    out: &Location,
    work: &str,
    vocabulary: &FeatureVocabulary,
) -> anyhow::Result<()> {
    let mut size_fields = Vec::new();
    let mut size_values: Vec<Arc<dyn Array>> = Vec::new();
    let mut tables = Vec::new();
    for (name, indexer) in vocabulary.columns() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("label", DataType::Utf8, false),
            Field::new("idx", DataType::Int64, false),
        ]));
        let labels = StringArray::from_iter_values(indexer.labels().iter());
        let idx = Int64Array::from_iter_values(0..indexer.labels().len() as i64);
        let batch = RecordBatch::try_new(schema, vec![Arc::new(labels), Arc::new(idx)])?;
        tables.push((format!("vocabulary_{name}"), batch));
        size_fields.push(Field::new(name, DataType::Int64, false));
        size_values.push(Arc::new(Int64Array::from(vec![i64::from(
            indexer.unknown_index(),
        )])));
    }
    let schema = Arc::new(Schema::new(size_fields));
    tables.push((
        "vocabulary_size".to_owned(),
        RecordBatch::try_new(schema, size_values)?,
    ));
    for (table, batch) in tables {
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), None)?;
        writer.write(&batch)?;
        writer.close()?;
        let name = format!("{work}/{table}/part-0.parquet");
        out.put(&name, bytes.into()).await?;
        let folder = out.child_url(&format!("{work}/{table}/"));
        ctx.register_parquet(
            TableReference::bare(table),
            &folder,
            ParquetReadOptions::default(),
        )
        .await?;
    }
    Ok(())
}

/// The request schema the scorer and the simulator rely on.
fn request_schema(vocabulary: &FeatureVocabulary) -> serde_json::Value {
    serde_json::json!({
        "request": {
            "bidId": "string",
            "dayOfWeek": "integer 1-7, 1 = Sunday",
            "hour": "integer 0-23",
            "regionId": "string or null",
            "cityId": "string or null",
            "domainId": "string or null",
            "advertiserId": "string or null",
            "userAgent": "string or null",
            "biddingPrice": "integer or null, not a model input",
            "payingPrice": "integer or null, not a model input"
        },
        "label": LABEL_NAME,
        "features": FEATURE_NAMES,
        "vocabulary_version": vocabulary.version,
    })
}

async fn delete_prefix(location: &Location, prefix: &str) {
    let Ok(names) = location.list(prefix).await else {
        return;
    };
    for name in names {
        let _ = location.store().delete(&location.path(&name)).await;
    }
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
    let limit = parse_size(&args.memory_limit)?;
    let input = Location::parse(&args.input)?;
    let out = Location::parse(&args.out)?;
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
    let run_prefix = format!("runs/{run_id}");
    info!(
        run_id,
        inputs = bid_files.len() + imp_files.len(),
        "starting feature job {}",
        job.name
    );

    if args.cluster.is_none() {
        // executors read the files on a cluster: only the steps are shown
        progress.set_length(bid_files.iter().chain(&imp_files).map(|f| f.size).sum());
    }
    let result = execute(
        progress,
        args,
        &job,
        &job_source,
        &job_text,
        limit,
        &input,
        &out,
        &run_prefix,
        &run_id,
        bid_files,
        imp_files,
        started,
    )
    .await;
    match result {
        Ok(manifest) => Ok(RunOutcome {
            run_url: out.child_url(&run_prefix),
            manifest,
        }),
        Err(err) => {
            delete_prefix(&out, &run_prefix).await;
            Err(err.context(format!(
                "feature job failed; nothing was committed under {}",
                out.child_url(&run_prefix)
            )))
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    progress: &ProgressBar,
    args: &RunArgs,
    job: &Job,
    job_source: &str,
    job_text: &str,
    limit: usize,
    input: &Location,
    out: &Location,
    run_prefix: &str,
    run_id: &str,
    bid_files: Vec<InputFile>,
    imp_files: Vec<InputFile>,
    started: Instant,
) -> anyhow::Result<Manifest> {
    let ctx = session(args, limit, &[input, out]).await?;
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
    let ingest_dir = out.child_url(&format!("{run_prefix}/ingest/"));
    let all_files: Vec<InputFile> = bid_files.iter().chain(&imp_files).cloned().collect();
    for (name, kind, files) in [
        ("bids", LogKind::Bid, bid_files),
        ("imps", LogKind::Imp, imp_files),
    ] {
        let spec = RawLogSpec {
            kind,
            files,
            report_dir: ingest_dir.clone(),
        };
        ctx.register_table(
            name,
            Arc::new(RawLogTable::new(spec, Some(Arc::clone(&bytes_read)))),
        )?;
    }

    let url = |name: &str| out.child_url(&format!("{run_prefix}/{name}"));
    let mut outputs: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut rows: BTreeMap<String, u64> = BTreeMap::new();
    let mut durations: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut view_columns: Vec<(String, Vec<String>)> = Vec::new();
    let mut vocabulary: Option<FeatureVocabulary> = None;
    let mut splits: BTreeMap<&'static str, SplitCounts> = BTreeMap::new();
    let mut phase = Instant::now();

    for step in &job.steps {
        progress.set_message(format!("step {}", step.name));
        let sql = job.render(step)?;
        let df = ctx
            .sql(&sql)
            .await
            .with_context(|| format!("job step {} does not plan", step.name))?;
        match step.name.as_str() {
            "transformed" => {
                let target = url("processed/transformed/");
                let (plan, n) = write(&ctx, df, &target, false).await?;
                grouped_rows(&plan, &view_columns, &mut rows);
                rows.insert("transformed".into(), n);
                ctx.register_parquet("transformed", &target, ParquetReadOptions::default())
                    .await?;
                outputs.insert("transformed", target);
                durations.insert("ingest_and_transform", phase.elapsed().as_millis() as u64);
                phase = Instant::now();
                if !job.categorical.is_empty() {
                    let fitted = fit_vocabulary(&ctx, &job.categorical).await?;
                    register_vocabulary(
                        &ctx,
                        out,
                        &format!("{run_prefix}/_work/vocabulary"),
                        &fitted,
                    )
                    .await?;
                    vocabulary = Some(fitted);
                    durations.insert("vocabulary", phase.elapsed().as_millis() as u64);
                    phase = Instant::now();
                }
            }
            "features" => {
                let staged = url("_work/features/");
                let (_, n) = write(&ctx, df, &staged, false).await?;
                rows.insert("features".into(), n);
                ctx.register_parquet("features_staged", &staged, ParquetReadOptions::default())
                    .await?;
                let columns: Vec<String> = ctx
                    .table("features_staged")
                    .await?
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .filter(|n| n != "split")
                    .collect();
                let select = columns
                    .iter()
                    .map(|c| format!("\"{c}\""))
                    .collect::<Vec<_>>()
                    .join(", ");
                for split in Split::ALL {
                    let target = url(&format!("processed/{}/", split.as_str()));
                    let df = ctx
                        .sql(&format!(
                            "SELECT {select} FROM features_staged WHERE split = '{}'",
                            split.as_str()
                        ))
                        .await?;
                    write(&ctx, df, &target, false).await?;
                    outputs.insert(split.as_str(), target);
                }
                let counts = query_batches(&ctx, "SELECT split, CAST(label AS BIGINT) AS label, count(*) AS n FROM features_staged GROUP BY split, label").await?;
                for batch in counts {
                    let split_col =
                        datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
                    let split_col = split_col.as_string::<i32>();
                    let label = batch.column(1).as_primitive::<Int64Type>();
                    let n = batch.column(2).as_primitive::<Int64Type>();
                    for i in 0..batch.num_rows() {
                        let Some(name) = Split::ALL
                            .iter()
                            .map(|s| s.as_str())
                            .find(|s| split_col.is_valid(i) && *s == split_col.value(i))
                        else {
                            bail!(
                                "features step produced a row with split {:?}; split_of yields train, valid or test",
                                split_col.is_valid(i).then(|| split_col.value(i))
                            );
                        };
                        let entry = splits.entry(name).or_insert(SplitCounts {
                            rows: 0,
                            label_0: 0,
                            label_1: 0,
                        });
                        let count = n.value(i) as u64;
                        entry.rows += count;
                        match label.value(i) {
                            0 => entry.label_0 += count,
                            1 => entry.label_1 += count,
                            other => {
                                bail!("features step produced label {other}; labels must be 0 or 1")
                            }
                        }
                    }
                }
                delete_prefix(out, &format!("{run_prefix}/_work/features")).await;
                durations.insert("features_and_splits", phase.elapsed().as_millis() as u64);
                phase = Instant::now();
            }
            "inference_requests" => {
                let target = url("pipeline-model/inference-data/");
                let (_, n) = write(&ctx, df, &target, true).await?;
                rows.insert("inference_requests".into(), n);
                outputs.insert("inference_data", target);
                durations.insert("inference_requests", phase.elapsed().as_millis() as u64);
                phase = Instant::now();
            }
            name => {
                let columns: Vec<String> = df
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
                // on a cluster the aggregation runs on executors and its metrics stay there:
                // the steps the embedded engine counts from its plan are materialised instead
                // (written once under _work, counted by the write, read back by later steps)
                if args.cluster.is_some() && groups_into(df.logical_plan(), &columns) {
                    let staged = url(&format!("_work/{name}/"));
                    let (_, n) = write(&ctx, df, &staged, false).await?;
                    rows.insert(name.to_owned(), n);
                    ctx.register_parquet(
                        TableReference::bare(name),
                        &staged,
                        ParquetReadOptions::default(),
                    )
                    .await?;
                } else {
                    ctx.register_table(TableReference::bare(name), df.into_view())?;
                }
                view_columns.push((name.to_owned(), columns));
            }
        }
    }
    for required in ["transformed", "features"] {
        if job.step(required).is_none() {
            bail!(
                "job {} has no `{required}` step; the runner needs it to write the training data",
                job.name
            );
        }
    }
    let vocabulary = vocabulary
        .context("job declares no `-- categorical:` columns; the scorer needs a vocabulary")?;

    let inputs = read_reports(out, &format!("{run_prefix}/ingest"), &all_files).await?;
    for kind in [LogKind::Bid, LogKind::Imp] {
        let name = match kind {
            LogKind::Bid => "bids",
            LogKind::Imp => "imps",
        };
        let of_kind = inputs.iter().filter(|r| r.kind == kind);
        let (read, accepted, rejected) = of_kind.fold((0, 0, 0), |(a, b, c), r| {
            (a + r.lines, b + r.accepted, c + r.rejected)
        });
        rows.insert(format!("{name}_read"), read);
        rows.insert(format!("{name}_accepted"), accepted);
        rows.insert(format!("{name}_rejected"), rejected);
    }
    outputs.insert("rejects", ingest_dir.clone());
    delete_prefix(out, &format!("{run_prefix}/_work")).await;
    let vocabulary_target = format!("{run_prefix}/pipeline-model/vocabulary.json");
    out.put(&vocabulary_target, vocabulary.to_json()?.into())
        .await?;
    outputs.insert("vocabulary", out.child_url(&vocabulary_target));
    let schema_target = format!("{run_prefix}/pipeline-model/pipeline-schema.json");
    out.put(
        &schema_target,
        serde_json::to_vec_pretty(&request_schema(&vocabulary))?.into(),
    )
    .await?;
    outputs.insert("request_schema", out.child_url(&schema_target));
    durations.insert("artifacts", phase.elapsed().as_millis() as u64);
    durations.insert("total", started.elapsed().as_millis() as u64);

    let manifest = Manifest {
        run_id: run_id.to_owned(),
        job: JobInfo {
            name: job.name.clone(),
            source: job_source.to_owned(),
            sha256: sha256_hex(job_text.as_bytes()),
            params: job.params.clone(),
            categorical: job.categorical.clone(),
        },
        versions: BTreeMap::from([
            ("rtb-etl", env!("CARGO_PKG_VERSION")),
            ("datafusion", datafusion::DATAFUSION_VERSION),
        ]),
        inputs,
        rows,
        splits,
        vocabulary: VocabularyInfo {
            version: vocabulary.version.clone(),
            sizes: vocabulary
                .columns()
                .map(|(name, indexer)| (name.to_owned(), indexer.labels().len() as u64))
                .collect(),
        },
        outputs,
        durations_ms: durations,
        memory_limit_bytes: limit,
        committed_at: chrono::Utc::now().to_rfc3339(),
    };
    let manifest_target = format!("{run_prefix}/{MANIFEST}");
    out.put(
        &manifest_target,
        serde_json::to_vec_pretty(&manifest)?.into(),
    )
    .await?;
    let latest =
        serde_json::json!({ "run_id": run_id, "manifest": out.child_url(&manifest_target) });
    out.put(LATEST, serde_json::to_vec_pretty(&latest)?.into())
        .await?;
    info!(run_id, "committed feature run");
    let store = rtb_params::ParameterStore::open(&args.parameter_store)
        .await
        .with_context(|| {
            format!(
                "run {run_id} is committed, but the parameter store {} cannot be opened",
                args.parameter_store
            )
        })?;
    store
        .put_many(&published_parameters(args, &manifest, &out.child_url(&manifest_target)))
        .await
        .with_context(|| format!("run {run_id} is committed, but publishing its locations to {} failed; re-run to publish", args.parameter_store))?;
    Ok(manifest)
}

/// Reads the files of a Parquet output folder as batches (tests, tools).
pub async fn read_parquet(ctx: &SessionContext, url: &str) -> anyhow::Result<Vec<RecordBatch>> {
    let df = ctx.read_parquet(url, ParquetReadOptions::default()).await?;
    Ok(df.execute_stream().await?.try_collect().await?)
}

/// The summary table printed at the end of a run.
pub fn render(outcome: &RunOutcome) -> String {
    use std::fmt::Write;
    let m = &outcome.manifest;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "committed run {} of job {} at {}",
        m.run_id, m.job.name, outcome.run_url
    );
    let _ = writeln!(
        s,
        "{:<60} {:<16} {:>10} {:>10} {:>9}",
        "input", "layout", "lines", "accepted", "rejected"
    );
    for f in &m.inputs {
        let name = f.url.rsplit('/').next().unwrap_or(&f.url);
        let _ = writeln!(
            s,
            "{:<60} {:<16} {:>10} {:>10} {:>9}",
            name, f.layout, f.lines, f.accepted, f.rejected
        );
        for (reason, n) in &f.rejected_by_reason {
            let _ = writeln!(
                s,
                "{:<60} {:<16} {:>10} {:>10} {:>9}",
                format!("  {reason}"),
                "",
                "",
                "",
                n
            );
        }
    }
    let _ = writeln!(s, "rows:");
    for (stage, n) in &m.rows {
        let _ = writeln!(s, "  {stage:<24} {n:>10}");
    }
    let _ = writeln!(
        s,
        "{:<8} {:>10} {:>10} {:>10} {:>8}",
        "split", "rows", "label 0", "label 1", "win %"
    );
    for (name, c) in &m.splits {
        let _ = writeln!(
            s,
            "{:<8} {:>10} {:>10} {:>10} {:>7.2}%",
            name,
            c.rows,
            c.label_0,
            c.label_1,
            100.0 * c.label_1 as f64 / c.rows.max(1) as f64
        );
    }
    let sizes: Vec<String> = m
        .vocabulary
        .sizes
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(
        s,
        "vocabulary {} ({})",
        &m.vocabulary.version[..m.vocabulary.version.len().min(19)],
        sizes.join(", ")
    );
    let durations: Vec<String> = m
        .durations_ms
        .iter()
        .map(|(k, v)| format!("{k} {:.2}s", *v as f64 / 1000.0))
        .collect();
    let _ = writeln!(s, "durations: {}", durations.join(", "));
    s
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
