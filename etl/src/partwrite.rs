//! Writes on a cluster without a funnel. DataFusion plans a file write as one `DataSinkExec`
//! over all of its input's partitions gathered into one. Embedded, that sink still encodes
//! in parallel; on Ballista the gathering is a stage boundary, so every row crosses the
//! shuffle to one task, which writes every file alone. [`DistributeWrites`] gives each input
//! partition its own writer instead ([`PartitionWriteExec`]: same sink, files of its own
//! names) and gathers only the row counts, which are summed into the count the sink reports.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch, UInt32Array, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt32Type};
use datafusion::catalog::Session;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::file_format::json::JsonSink;
use datafusion::datasource::file_format::parquet::ParquetSink;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::{FileSink, FileSinkConfig};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::physical_expr::expressions::col;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::execution_plan::{
    Boundedness, ChildrenPropertiesMode, EmissionType,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    ReplaceChildrenOptions, execute_input_stream,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

/// The one column a file write returns: how many rows it wrote.
fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]))
}

/// Writes input partition `i` through the sink of `template` (a `DataSinkExec` over an empty
/// placeholder, so the sink travels to executors without its input) and returns one row: the
/// count written.
///
/// A task may run again (its executor lost, its count with it) after its files are complete.
/// So each partition's files carry the partition's global index (`*.part-00003.parquet`),
/// and a partition's writer first deletes what an earlier attempt of it left. The index comes
/// from a second child, `ids` (one row per partition), which Ballista cuts down with the input
/// for each task: the plan a task runs only knows its own partitions by local position.
#[derive(Debug)]
pub struct PartitionWriteExec {
    input: Arc<dyn ExecutionPlan>,
    ids: Arc<dyn ExecutionPlan>,
    template: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

fn ids_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "partition",
        DataType::UInt32,
        false,
    )]))
}

/// One row per partition of `input`, holding its index.
fn ids_of(input: &Arc<dyn ExecutionPlan>) -> DfResult<Arc<dyn ExecutionPlan>> {
    let schema = ids_schema();
    let partitions = (0..input.properties().output_partitioning().partition_count())
        .map(|i| {
            let id = u32::try_from(i).map_err(|_| {
                DataFusionError::Internal(format!("partition {i} does not fit a u32"))
            })?;
            Ok(vec![RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(UInt32Array::from(vec![id]))],
            )?])
        })
        .collect::<DfResult<Vec<_>>>()?;
    let ids: Arc<dyn ExecutionPlan> = MemorySourceConfig::try_new_exec(&partitions, schema, None)?;
    Ok(ids)
}

impl PartitionWriteExec {
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        template: Arc<dyn ExecutionPlan>,
    ) -> DfResult<Self> {
        let ids = ids_of(&input)?;
        Self::with_ids(input, ids, template)
    }

    /// As restricted for one task: `ids` names the global index of each input partition.
    pub fn with_ids(
        input: Arc<dyn ExecutionPlan>,
        ids: Arc<dyn ExecutionPlan>,
        template: Arc<dyn ExecutionPlan>,
    ) -> DfResult<Self> {
        let partitions = input.properties().output_partitioning().partition_count();
        // an optimiser that changed the input's partitioning voids the old numbering
        let ids = if ids.properties().output_partitioning().partition_count() == partitions {
            ids
        } else {
            ids_of(&input)?
        };
        let sink = template.downcast_ref::<DataSinkExec>().ok_or_else(|| {
            DataFusionError::Internal(format!(
                "a partition write needs a DataSinkExec template, not {}",
                template.name()
            ))
        })?;
        if !is_file_sink(sink.sink()) {
            return Err(DataFusionError::Internal(
                "a partition write needs a Parquet or JSON file sink".into(),
            ));
        }
        let properties = PlanProperties::new(
            EquivalenceProperties::new(count_schema()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Ok(PartitionWriteExec {
            input,
            ids,
            template,
            properties: Arc::new(properties),
        })
    }

    /// The `DataSinkExec` whose sink every partition writes through.
    pub fn template(&self) -> &Arc<dyn ExecutionPlan> {
        &self.template
    }

    fn sink_exec(&self) -> &DataSinkExec {
        self.template
            .downcast_ref::<DataSinkExec>()
            .expect("checked in with_ids")
    }
}

/// The sinks [`tagged_sink`] can rebuild with file names of a partition's own.
fn is_file_sink(sink: &dyn DataSink) -> bool {
    sink.is::<ParquetSink>() || sink.is::<JsonSink>()
}

/// The template's sink, naming its files `*.{tag}.{extension}`.
fn tagged_sink(sink: &dyn DataSink, tag: &str) -> DfResult<(Arc<dyn DataSink>, FileSinkConfig)> {
    let retag = |config: &FileSinkConfig| {
        let mut config = config.clone();
        config.file_extension = format!("{tag}.{}", config.file_extension);
        config
    };
    if let Some(parquet) = sink.downcast_ref::<ParquetSink>() {
        let config = retag(parquet.config());
        let sink = ParquetSink::new(config.clone(), parquet.parquet_options().clone());
        Ok((Arc::new(sink), config))
    } else if let Some(json) = sink.downcast_ref::<JsonSink>() {
        let config = retag(json.config());
        let sink = JsonSink::new(config.clone(), json.writer_options().clone());
        Ok((Arc::new(sink), config))
    } else {
        Err(DataFusionError::Internal(
            "a partition write needs a Parquet or JSON file sink".into(),
        ))
    }
}

/// Deletes the files under the sink's folder whose names end in `.{extension}`: an earlier
/// attempt's output of the same partition.
async fn clear_earlier_attempt(config: &FileSinkConfig, context: &TaskContext) -> DfResult<()> {
    let store = context
        .runtime_env()
        .object_store(&config.object_store_url)?;
    let suffix = format!(".{}", config.file_extension);
    for folder in &config.table_paths {
        let stale: Vec<ObjectPath> = store
            .list(Some(folder.prefix()))
            .try_filter_map(|meta| {
                let stale = meta.location.as_ref().ends_with(&suffix);
                futures::future::ready(Ok(stale.then_some(meta.location)))
            })
            .try_collect()
            .await?;
        for path in stale {
            store.delete(&path).await?;
        }
    }
    Ok(())
}

impl DisplayAs for PartitionWriteExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "PartitionWriteExec: ")?;
        self.sink_exec().sink().fmt_as(t, f)
    }
}

impl ExecutionPlan for PartitionWriteExec {
    fn name(&self) -> &'static str {
        "PartitionWriteExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input, &self.ids]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        // `ids` must reach this node partition for partition, beside the input
        vec![false, false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match <[_; 2]>::try_from(children) {
            Ok([input, ids]) => Ok(Arc::new(PartitionWriteExec::with_ids(
                input,
                ids,
                Arc::clone(&self.template),
            )?)),
            Err(_) => Err(DataFusionError::Internal(
                "PartitionWriteExec has exactly two children".into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let template = self.sink_exec().clone();
        let data = execute_input_stream(
            Arc::clone(&self.input),
            Arc::clone(template.sink().schema()),
            partition,
            Arc::clone(&context),
        )?;
        let ids = self.ids.execute(partition, Arc::clone(&context))?;
        let schema = count_schema();
        let batch_schema = Arc::clone(&schema);
        let stream = futures::stream::once(async move {
            let ids: Vec<RecordBatch> = ids.try_collect().await?;
            let id = ids
                .iter()
                .find(|b| b.num_rows() > 0)
                .and_then(|b| b.column(0).as_primitive_opt::<UInt32Type>())
                .map(|c| c.value(0))
                .ok_or_else(|| {
                    DataFusionError::Internal("a partition write got no partition index".into())
                })?;
            let (sink, config) = tagged_sink(template.sink(), &format!("part-{id:05}"))?;
            clear_earlier_attempt(&config, &context).await?;
            let count = sink.write_all(data, &context).await?;
            Ok(RecordBatch::try_new(
                batch_schema,
                vec![Arc::new(UInt64Array::from(vec![count]))],
            )?)
        })
        .boxed();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// Rewrites `DataSinkExec(CoalescePartitionsExec(x))` (or `DataSinkExec(x)`) over a Parquet or
/// JSON file sink into `sum(count)` over one [`PartitionWriteExec`] per partition of `x`.
/// Writes that must see their rows in one order (a sink sort order, a limit) are left alone.
#[derive(Debug, Default)]
pub struct DistributeWrites;

impl DistributeWrites {
    fn rewrite(node: Arc<dyn ExecutionPlan>) -> DfResult<Transformed<Arc<dyn ExecutionPlan>>> {
        let Some(sink) = node.downcast_ref::<DataSinkExec>() else {
            return Ok(Transformed::no(node));
        };
        // planned with every rule, the sink sits on a gather; with Ballista's adaptive planner's
        // first rules only, on its input itself
        let input = match sink.input().downcast_ref::<CoalescePartitionsExec>() {
            Some(gather) if gather.fetch().is_some() => return Ok(Transformed::no(node)),
            Some(gather) => Arc::clone(gather.input()),
            None => Arc::clone(sink.input()),
        };
        if !is_file_sink(sink.sink())
            || sink.sort_order().is_some()
            || input.properties().output_partitioning().partition_count() < 2
        {
            return Ok(Transformed::no(node));
        }
        let placeholder: Arc<dyn ExecutionPlan> = Arc::new(EmptyExec::new(input.schema()));
        let template = Arc::clone(&node).replace_children(
            vec![placeholder],
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )?;
        let writes: Arc<dyn ExecutionPlan> =
            Arc::new(PartitionWriteExec::try_new(input, template)?);
        let counts: Arc<dyn ExecutionPlan> = Arc::new(CoalescePartitionsExec::new(writes));
        let schema = counts.schema();
        let total = AggregateExprBuilder::new(sum_udaf(), vec![col("count", &schema)?])
            .schema(Arc::clone(&schema))
            .alias("count")
            .build()?;
        let summed = AggregateExec::try_new(
            AggregateMode::Single,
            PhysicalGroupBy::new_single(vec![]),
            vec![Arc::new(total)],
            vec![None],
            counts,
            schema,
        )?;
        Ok(Transformed::yes(Arc::new(summed)))
    }
}

impl PhysicalOptimizerRule for DistributeWrites {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(plan.transform_up(Self::rewrite)?.data)
    }

    fn name(&self) -> &str {
        "distribute_writes"
    }

    fn schema_check(&self) -> bool {
        // sum(count) is nullable where the sink's count is not
        false
    }
}

/// The scheduler's query planner: DataFusion's, then [`DistributeWrites`]. Ballista's adaptive
/// planner replaces the session's physical optimizer rules with its own list, but plans the
/// job's first physical plan with the session's query planner, so this is where a rule of ours
/// reaches every job.
#[derive(Debug, Default)]
pub struct DistributedWritesPlanner;

#[async_trait::async_trait]
impl QueryPlanner for DistributedWritesPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let plan = DefaultPhysicalPlanner::default()
            .create_physical_plan(logical_plan, session)
            .await?;
        DistributeWrites.optimize(plan, session.config_options())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::UInt64Type;
    use datafusion::datasource::MemTable;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

    /// Two input partitions of 3 and 2 rows, planned with the rule.
    fn context() -> SessionContext {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = |values: Vec<i64>| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Int64Array::from(values))],
            )
            .expect("batch")
        };
        let table = MemTable::try_new(
            Arc::clone(&schema),
            vec![vec![batch(vec![1, 2, 3])], vec![batch(vec![4, 5])]],
        )
        .expect("table");
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_config(SessionConfig::new().with_target_partitions(2))
            .with_physical_optimizer_rule(Arc::new(DistributeWrites))
            .build();
        let ctx = SessionContext::new_with_state(state);
        ctx.register_table("t", Arc::new(table)).expect("registers");
        ctx
    }

    #[tokio::test]
    async fn each_partition_writes_its_own_files_and_the_counts_add_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = context();
        for (format, sql) in [
            ("parquet", "SELECT x FROM t"),
            ("json", "SELECT x, x % 2 AS odd FROM t"),
        ] {
            let target = format!("{}/{format}/", dir.path().display());
            let partitioned = if format == "json" {
                " PARTITIONED BY (odd)"
            } else {
                ""
            };
            let copy = format!("COPY ({sql}) TO '{target}' STORED AS {format}{partitioned}");
            let df = ctx.sql(&copy).await.expect("plans");
            let plan = df.clone().create_physical_plan().await.expect("physical");
            let shown = displayable(plan.as_ref()).indent(true).to_string();
            assert!(shown.contains("PartitionWriteExec"), "{shown}");
            assert!(!shown.contains("DataSinkExec"), "{shown}");
            let batches = df.collect().await.expect("writes");
            let count = batches[0].column(0).as_primitive::<UInt64Type>().value(0);
            assert_eq!(count, 5, "{format}");
            let files = walk(dir.path().join(format).as_path());
            // one file per input partition (and per `odd` value for the partitioned write)
            let expected = if format == "json" { 4 } else { 2 };
            assert_eq!(files.len(), expected, "{files:?}");
        }
        let back = ctx
            .read_parquet(
                format!("{}/parquet/", dir.path().display()),
                ParquetReadOptions::default(),
            )
            .await
            .expect("reads")
            .count()
            .await
            .expect("counts");
        assert_eq!(back, 5);
    }

    #[tokio::test]
    async fn a_write_from_one_partition_is_left_to_datafusion() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = context();
        let copy = format!(
            "COPY (SELECT x FROM t ORDER BY x) TO '{}/' STORED AS parquet",
            dir.path().display()
        );
        let plan = physical(&ctx, &copy).await;
        let shown = displayable(plan.as_ref()).indent(true).to_string();
        assert!(shown.contains("DataSinkExec"), "{shown}");
        assert!(!shown.contains("PartitionWriteExec"), "{shown}");
    }

    /// Ballista's adaptive planner plans a job's first physical plan with the session's query
    /// planner and only a few rules of its own: no gather sits under the sink yet.
    #[tokio::test]
    async fn the_scheduler_planner_rewrites_a_sink_before_any_gather() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = context();
        let state = SessionStateBuilder::new_from_existing(ctx.state())
            .with_physical_optimizer_rules(vec![])
            .with_query_planner(Arc::new(DistributedWritesPlanner))
            .build();
        let ctx = SessionContext::new_with_state(state);
        let copy = format!(
            "COPY (SELECT x FROM t) TO '{}/' STORED AS json",
            dir.path().display()
        );
        let df = ctx.sql(&copy).await.expect("plans");
        let plan = df.clone().create_physical_plan().await.expect("physical");
        let shown = displayable(plan.as_ref()).indent(true).to_string();
        assert!(shown.contains("PartitionWriteExec"), "{shown}");
        let batches = df.collect().await.expect("writes");
        let count = batches[0].column(0).as_primitive::<UInt64Type>().value(0);
        assert_eq!(count, 5);
        assert_eq!(walk(dir.path()).len(), 2);
    }

    /// A task whose executor is lost after it wrote runs again; its files must not double.
    #[tokio::test]
    async fn a_partition_written_twice_keeps_only_its_last_attempt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = context();
        let copy = format!(
            "COPY (SELECT x FROM t) TO '{}/' STORED AS parquet",
            dir.path().display()
        );
        let plan = physical(&ctx, &copy).await;
        let write = Arc::clone(plan.children()[0].children()[0]);
        assert!(write.is::<PartitionWriteExec>());
        let mut written = 0;
        for partition in [0, 1, 0] {
            let stream = write.execute(partition, ctx.task_ctx()).expect("executes");
            let batches: Vec<RecordBatch> = stream.try_collect().await.expect("writes");
            written += batches[0].column(0).as_primitive::<UInt64Type>().value(0);
        }
        assert_eq!(written, 3 + 2 + 3);
        let files = walk(dir.path());
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(
            files
                .iter()
                .any(|f| f.to_string_lossy().ends_with(".part-00000.parquet")),
            "{files:?}"
        );
        let back = ctx
            .read_parquet(
                format!("{}/", dir.path().display()),
                ParquetReadOptions::default(),
            )
            .await
            .expect("reads")
            .count()
            .await
            .expect("counts");
        assert_eq!(back, 5);
    }

    async fn physical(ctx: &SessionContext, sql: &str) -> Arc<dyn ExecutionPlan> {
        ctx.sql(sql)
            .await
            .expect("plans")
            .create_physical_plan()
            .await
            .expect("physical")
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).expect("reads dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }
}
