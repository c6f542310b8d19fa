//! The engine side of a run: the session (embedded or on a cluster), writing a plan's output,
//! counting grouped rows, fitting the vocabulary.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::{Context, bail};
use ballista::prelude::SessionContextExt;
use ballista_core::execution_plans::DistributedQueryExec;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::{GetJobMetricsParams, OperatorMetricsSet};
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::datasource::file_format::format_as_file_type;
use datafusion::datasource::file_format::json::JsonFormatFactory;
use datafusion::datasource::file_format::parquet::ParquetFormatFactory;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::TrackConsumersPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionConfig, SessionContext};
use datafusion_proto::protobuf::LogicalPlanNode;
use futures::TryStreamExt;
use rtb_features::vocabulary::{FeatureVocabulary, StringIndexer};
use rtb_storage::Location;

use super::pool::RunPool;
use super::watch::{Watch, collect_watched};
use super::{RunArgs, parse_size};
use crate::stores::StoreRegistry;
use crate::{cluster, udf};

/// The base URL (`scheme://bucket`) a location's store must be registered under.
pub(super) fn store_url(location: &Location) -> anyhow::Result<url::Url> {
    let url = location.url();
    let base = match url.scheme() {
        "file" => "file:///".to_owned(),
        scheme => format!("{scheme}://{}", url.host_str().unwrap_or_default()),
    };
    Ok(url::Url::parse(&base)?)
}

/// `config` with the job's `-- set:` engine settings; the SQL dialect stays the kit's.
fn with_settings(
    mut config: SessionConfig,
    settings: &BTreeMap<String, String>,
) -> anyhow::Result<SessionConfig> {
    // the kit's default for every Parquet output (DataFusion's is zstd(3), slower for little
    // gain on these columns); a job may choose another
    config.options_mut().execution.parquet.compression = Some("zstd(1)".into());
    for (key, value) in settings {
        config.options_mut().set(key, value).with_context(|| {
            format!(
                "the job's `-- set: {key} = {value}` is not a valid DataFusion setting; fix or remove that line"
            )
        })?;
    }
    Ok(rtb_expr::sql_config(config))
}

/// The engine's parallelism: `--partitions`, else the cores here.
pub(super) fn partitions(args: &RunArgs) -> usize {
    args.partitions
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
}

pub(super) async fn session(
    args: &RunArgs,
    limit: usize,
    settings: &BTreeMap<String, String>,
    locations: &[&Location],
) -> anyhow::Result<SessionContext> {
    let partitions = partitions(args);
    let ctx = match &args.cluster {
        Some(url) => {
            // the memory pool and spill folder are the executors' own settings on a cluster
            let mut config = with_settings(cluster::session_config(), settings)?
                .with_target_partitions(partitions);
            if args.stall_timeout_seconds > 0 {
                // the watch needs each job's id while it runs: pushed job status carries it
                // only once the job ends, polled status from the start
                config = config
                    .set_bool("ballista.client.pull", true)
                    .with_extension(Arc::new(Watch {
                        scheduler: cluster::scheduler_url(url)?,
                        stall: std::time::Duration::from_secs(args.stall_timeout_seconds),
                    }));
            }
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
            // first come, first served, no operator starved below its fair share, no
            // repartition refused (see `pool`); the tracker names the largest consumers when
            // the pool runs out
            let pool = TrackConsumersPool::new(
                RunPool::new(limit),
                std::num::NonZeroUsize::new(3).expect("3 is not zero"),
            );
            let runtime = RuntimeEnvBuilder::new()
                .with_object_store_registry(Arc::new(StoreRegistry::default()))
                .with_memory_pool(Arc::new(pool))
                .with_disk_manager_builder(disk)
                .build_arc()?;
            let config = with_settings(SessionConfig::new(), settings)?
                .with_target_partitions(partitions)
                .with_information_schema(true);
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
/// the number of rows written. With `partition_by`, each row goes to the folder
/// `url/<column>=<value>/` of its value, without that column.
pub(super) async fn write(
    ctx: &SessionContext,
    df: DataFrame,
    url: &str,
    json: bool,
    partition_by: &[&str],
) -> anyhow::Result<(Arc<dyn ExecutionPlan>, u64)> {
    let file_type = if json {
        format_as_file_type(Arc::new(JsonFormatFactory::new()))
    } else {
        // the session's Parquet settings, which a job's `-- set:` lines reach
        let options = ctx.state().default_table_options().parquet;
        format_as_file_type(Arc::new(ParquetFormatFactory::new_with_options(options)))
    };
    let plan = LogicalPlanBuilder::copy_to(
        df.logical_plan().clone(),
        url.to_owned(),
        file_type,
        HashMap::new(),
        partition_by.iter().map(|c| (*c).to_owned()).collect(),
    )?
    .build()?;
    let physical = ctx.state().create_physical_plan(&plan).await?;
    tracing::debug!(
        "plan writing {url}:\n{}",
        datafusion::physical_plan::displayable(physical.as_ref()).indent(true)
    );
    let batches = collect_watched(ctx, Arc::clone(&physical))
        .await
        .map_err(|e| {
            // an operator that cannot spill further ends the job: say which knob helps
            let hint = match e.find_root() {
                datafusion::error::DataFusionError::ResourcesExhausted(_) => {
                    " (the memory pool is too small for this job: raise --memory-limit)"
                }
                _ => "",
            };
            anyhow::Error::new(e).context(format!("cannot write {url}{hint}"))
        })?;
    let rows = batches
        .first()
        .and_then(|b| {
            b.column(0)
                .as_primitive_opt::<datafusion::arrow::datatypes::UInt64Type>()
        })
        .map_or(0, |c| c.value(0));
    Ok((physical, rows))
}

/// Rows out of each final aggregation, credited to the grouped view step whose GROUP BY it is
/// (`steps`: name and GROUP BY names, see [`grouping_of`]).
pub(super) fn grouped_rows(
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
        if last_stage && agg.group_expr().is_single() {
            let keys: Vec<&str> = agg
                .group_expr()
                .expr()
                .iter()
                .map(|(_, name)| name.as_str())
                .collect();
            if let Some((name, _)) = steps.iter().find(|(_, k)| *k == keys) {
                let rows = plan.metrics().and_then(|m| m.output_rows()).unwrap_or(0) as u64;
                *out.entry(name.clone()).or_default() += rows;
            }
        }
    }
    for child in plan.children() {
        grouped_rows(child, steps, out);
    }
}

/// [`grouped_rows`] for a plan that ran on a cluster: the aggregations ran on executors, so
/// their rows come from the scheduler, which folds each task's metrics into its stage's by
/// partition (a task run again after an executor loss replaces its own, never adds to them).
pub(super) async fn cluster_grouped_rows(
    scheduler: &str,
    plan: &Arc<dyn ExecutionPlan>,
    steps: &[(String, Vec<String>)],
    out: &mut BTreeMap<String, u64>,
) -> anyhow::Result<()> {
    let job = job_of(plan).context("the cluster's plan has no Ballista job to ask about")?;
    let mut client = SchedulerGrpcClient::connect(scheduler.to_owned())
        .await
        .with_context(|| format!("cannot reach the Ballista scheduler at {scheduler}"))?
        .max_decoding_message_size(64 << 20);
    let metrics = client
        .get_job_metrics(GetJobMetricsParams {
            job_id: job.clone(),
        })
        .await
        .with_context(|| format!("the scheduler has no metrics of job {job}"))?
        .into_inner();
    for operator in metrics.stages.into_iter().flat_map(|s| s.operators) {
        let Some(keys) = final_aggregate_groups(&operator.operator_desc) else {
            continue;
        };
        if let Some((name, _)) = steps.iter().find(|(_, k)| *k == keys) {
            let set: MetricsSet = OperatorMetricsSet {
                metrics: operator.metrics,
            }
            .try_into()
            .with_context(|| format!("the metrics of job {job} do not decode"))?;
            let rows = set.output_rows().unwrap_or(0) as u64;
            *out.entry(name.clone()).or_default() += rows;
        }
    }
    Ok(())
}

/// The id of the Ballista job a cluster plan ran as.
pub(super) fn job_of(plan: &Arc<dyn ExecutionPlan>) -> Option<String> {
    let any: &dyn std::any::Any = plan.as_ref();
    if let Some(query) = any.downcast_ref::<DistributedQueryExec<LogicalPlanNode>>() {
        return query.job_id().map(|id| id.to_string());
    }
    plan.children().into_iter().find_map(job_of)
}

/// The GROUP BY names of a final aggregation, read from its one-line display (the form the
/// scheduler reports operators in), `None` for any other operator. A name that the display
/// cannot carry unambiguously (one holding `, ` or ` as `) matches no step.
fn final_aggregate_groups(desc: &str) -> Option<Vec<String>> {
    let rest = desc.strip_prefix("AggregateExec: mode=")?;
    let (mode, rest) = rest.split_once(", gby=[")?;
    if !matches!(
        mode,
        "Final" | "FinalPartitioned" | "Single" | "SinglePartitioned"
    ) {
        return None;
    }
    let (gby, rest) = split_bracketed(rest)?;
    // a complete line has its aggregates after the groups
    rest.strip_prefix(", aggr=[")?;
    let mut keys = Vec::new();
    for item in top_level_items(gby) {
        if item.starts_with('(') {
            // grouping sets: the embedded count does not read them either
            return None;
        }
        keys.push(
            item.rsplit_once(" as ")
                .map_or(item, |(_, alias)| alias)
                .to_owned(),
        );
    }
    Some(keys)
}

/// `text` up to the `]` closing an already opened `[`, and what follows that `]`.
fn split_bracketed(text: &str) -> Option<(&str, &str)> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | '}' => depth = depth.saturating_sub(1),
            ']' if depth == 0 => return Some((&text[..i], &text[i + 1..])),
            ']' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The `, `-separated items of `list` outside any brackets.
fn top_level_items(list: &str) -> impl Iterator<Item = &str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    let bytes = list.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 0 && bytes.get(i + 1) == Some(&b' ') => {
                items.push(&list[start..i]);
                start = i + 2;
            }
            _ => {}
        }
    }
    if !list.is_empty() {
        items.push(&list[start..]);
    }
    items.into_iter()
}

/// What a view step's plan says about its row count: a GROUP BY under projections (which
/// never change how many rows there are) is `Some(Some(names))`, counted from the aggregation
/// the engine runs for it; grouping sets, or a GROUP BY under HAVING or LIMIT, are
/// `Some(None)`, not counted; a step without a GROUP BY on top is `None`.
pub(super) fn grouping_of(plan: &LogicalPlan) -> Option<Option<Vec<String>>> {
    match plan {
        LogicalPlan::Projection(p) => grouping_of(&p.input),
        LogicalPlan::SubqueryAlias(a) => grouping_of(&a.input),
        LogicalPlan::Sort(s) if s.fetch.is_none() => grouping_of(&s.input),
        // HAVING, LIMIT: fewer rows than the aggregation's
        LogicalPlan::Filter(f) => grouping_of(&f.input).map(|_| None),
        LogicalPlan::Limit(l) => grouping_of(&l.input).map(|_| None),
        LogicalPlan::Aggregate(a) => {
            if matches!(a.group_expr.as_slice(), [Expr::GroupingSet(_)]) {
                return Some(None);
            }
            let names = a.schema.fields().iter().take(a.group_expr.len());
            Some(Some(names.map(|f| f.name().clone()).collect()))
        }
        _ => None,
    }
}

pub(super) async fn query_batches(
    ctx: &SessionContext,
    sql: &str,
) -> anyhow::Result<Vec<RecordBatch>> {
    let plan = ctx.sql(sql).await?.create_physical_plan().await?;
    Ok(collect_watched(ctx, plan).await?)
}

/// Fits one StringIndexer per categorical column of `transformed`, all columns counted in one
/// query: on a cluster one job, where a job per column cost a scheduling round trip each.
pub(super) async fn fit_vocabulary(
    ctx: &SessionContext,
    columns: &[String],
) -> anyhow::Result<FeatureVocabulary> {
    let schema = ctx.table("transformed").await?.schema().clone();
    if let Some(missing) = columns
        .iter()
        .find(|name| !schema.has_column_with_unqualified_name(name))
    {
        bail!("categorical column {missing} is not a column of the transformed step");
    }
    let mut counts: Vec<Vec<(String, u64)>> = vec![Vec::new(); columns.len()];
    if !columns.is_empty() {
        let sql = columns
            .iter()
            .enumerate()
            .map(|(i, name)| {
                format!(
                    "SELECT CAST({i} AS BIGINT) AS col, CAST(\"{name}\" AS VARCHAR) AS label, count(*) AS n FROM transformed WHERE \"{name}\" IS NOT NULL GROUP BY \"{name}\""
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let plan = ctx.sql(&sql).await?.create_physical_plan().await?;
        for batch in collect_watched(ctx, plan).await? {
            let col = batch.column(0).as_primitive::<Int64Type>();
            let labels = datafusion::arrow::compute::cast(batch.column(1), &DataType::Utf8)?;
            let labels = labels.as_string::<i32>();
            let n = batch.column(2).as_primitive::<Int64Type>();
            for i in 0..batch.num_rows() {
                counts[col.value(i) as usize].push((labels.value(i).to_owned(), n.value(i) as u64));
            }
        }
    }
    Ok(FeatureVocabulary::new(
        columns
            .iter()
            .cloned()
            .zip(counts.into_iter().map(StringIndexer::fit_from_counts))
            .collect(),
    ))
}

/// Reads the files of a Parquet output folder as batches (tests, tools).
pub async fn read_parquet(ctx: &SessionContext, url: &str) -> anyhow::Result<Vec<RecordBatch>> {
    let df = ctx.read_parquet(url, ParquetReadOptions::default()).await?;
    Ok(df.execute_stream().await?.try_collect().await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_aggregations_are_read_from_the_schedulers_operator_lines() {
        let bids = "AggregateExec: mode=FinalPartitioned, gby=[BidID@0 as BidID, Timestamp@1 as Timestamp, UserAgent@6 as UserAgent], aggr=[]";
        assert_eq!(
            final_aggregate_groups(bids),
            Some(vec!["BidID".into(), "Timestamp".into(), "UserAgent".into()])
        );
        let counted = "AggregateExec: mode=Single, gby=[substr(Domain@0, 1, 3) as d, CAST(x@1 AS Utf8) as x], aggr=[count(Int64(1)), sum(a@2) as total], lim=[10], ordering_mode=Sorted";
        assert_eq!(
            final_aggregate_groups(counted),
            Some(vec!["d".into(), "x".into()])
        );
        let partial = "AggregateExec: mode=Partial, gby=[BidID@0 as BidID], aggr=[]";
        assert_eq!(final_aggregate_groups(partial), None);
        let sets =
            "AggregateExec: mode=Final, gby=[(a@0 as a, NULL as b), (a@0 as a, b@1 as b)], aggr=[]";
        assert_eq!(final_aggregate_groups(sets), None);
        assert_eq!(
            final_aggregate_groups("ProjectionExec: expr=[a@0 as a]"),
            None
        );
        // cut short: no closing bracket, or no aggregates after it
        assert_eq!(
            final_aggregate_groups("AggregateExec: mode=Final, gby=[a@0 as a"),
            None
        );
        assert_eq!(
            final_aggregate_groups("AggregateExec: mode=Final, gby=[a@0 as a]"),
            None
        );
    }

    #[tokio::test]
    async fn a_grouped_step_is_known_by_its_group_by_whatever_it_selects() {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t (a VARCHAR, b VARCHAR, c BIGINT) AS VALUES ('x', 'y', 1)")
            .await
            .expect("table");
        let grouping = |sql: &'static str| {
            let ctx = ctx.clone();
            async move {
                let df = ctx.sql(sql).await.expect(sql);
                grouping_of(df.logical_plan())
            }
        };
        let keys = |names: &[&str]| Some(Some(names.iter().map(|n| (*n).to_owned()).collect()));
        assert_eq!(
            grouping("SELECT a, b FROM t GROUP BY a, b").await,
            keys(&["a", "b"])
        );
        assert_eq!(
            grouping("SELECT a AS k, count(*) AS n, max(c) + 1 AS top FROM t GROUP BY a").await,
            keys(&["a"])
        );
        assert_eq!(
            grouping("SELECT a, count(DISTINCT b) AS bs FROM t GROUP BY a").await,
            keys(&["a"])
        );
        assert_eq!(
            grouping("SELECT a, b, count(*) FROM t GROUP BY ROLLUP (a, b)").await,
            Some(None)
        );
        assert_eq!(grouping("SELECT a FROM t").await, None);
        assert_eq!(
            grouping("SELECT a, b FROM t GROUP BY a, b ORDER BY a").await,
            keys(&["a", "b"])
        );
        assert_eq!(
            grouping("SELECT a, count(*) AS n FROM t GROUP BY a HAVING count(*) > 1").await,
            Some(None)
        );
    }

    #[test]
    fn job_settings_reach_the_engine_and_unknown_ones_stop_the_run() {
        let settings = BTreeMap::from([
            (
                "datafusion.optimizer.repartition_joins".to_owned(),
                "false".to_owned(),
            ),
            (
                "datafusion.sql_parser.enable_ident_normalization".to_owned(),
                "true".to_owned(),
            ),
        ]);
        let config = with_settings(SessionConfig::new(), &settings).expect("known settings");
        assert!(!config.options().optimizer.repartition_joins);
        assert_eq!(
            config.options().execution.parquet.compression.as_deref(),
            Some("zstd(1)")
        );
        // the kit's dialect wins: steps name columns in their case
        assert!(!config.options().sql_parser.enable_ident_normalization);

        let typo = BTreeMap::from([(
            "datafusion.optimizer.repartition_join".to_owned(),
            "false".to_owned(),
        )]);
        let message = format!(
            "{:#}",
            with_settings(SessionConfig::new(), &typo).expect_err("unknown")
        );
        assert!(
            message.contains("`-- set: datafusion.optimizer.repartition_join = false`"),
            "{message}"
        );
    }
}
