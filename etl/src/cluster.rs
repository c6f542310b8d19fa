//! What the client, the scheduler and every executor of a Ballista cluster must agree on:
//! the session settings, the UDFs, the object stores, and the codecs that carry our raw-log
//! table and scan over the wire. Scheduler and executors never receive codecs or functions
//! from the client, so all three build them from here.

use std::any::Any;
use std::sync::Arc;

use ballista_core::extension::SessionConfigExt;
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::execution::{FunctionRegistry, TaskContext};
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};

use crate::ingest::{RawLogScanExec, RawLogSpec, RawLogTable, ScanSpec};
use crate::partwrite::{DistributedWritesPlanner, PartitionWriteExec};
use crate::stores::StoreRegistry;
use crate::udf;
use datafusion::logical_expr::ScalarUDF;

/// Marks our payloads so Ballista's own protobuf decoding never sees them.
const RAW_TABLE: &[u8] = b"rtb.rawlog.table.v1:";
const RAW_SCAN: &[u8] = b"rtb.rawlog.scan.v1:";
const PARTITION_WRITE: &[u8] = b"rtb.partition.write.v1:";

fn decode_error(what: &str, e: serde_json::Error) -> DataFusionError {
    DataFusionError::Internal(format!(
        "cannot decode a {what} sent by another rtb process: {e}; are client, scheduler and executors the same version?"
    ))
}

fn encode_error(what: &str, e: serde_json::Error) -> DataFusionError {
    DataFusionError::Internal(format!("cannot encode a {what}: {e}"))
}

/// Ballista's logical codec plus our raw-log table.
#[derive(Debug, Default)]
pub struct RtbLogicalCodec {
    inner: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for RtbLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> DfResult<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> DfResult<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn TableProvider>> {
        match buf.strip_prefix(RAW_TABLE) {
            Some(body) => {
                let spec: RawLogSpec =
                    serde_json::from_slice(body).map_err(|e| decode_error("raw log table", e))?;
                Ok(Arc::new(RawLogTable::new(spec, None)))
            }
            None => self
                .inner
                .try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> DfResult<()> {
        let any: &dyn Any = node.as_ref();
        if let Some(table) = any.downcast_ref::<RawLogTable>() {
            buf.extend_from_slice(RAW_TABLE);
            return serde_json::to_writer(&mut *buf, table.spec())
                .map_err(|e| encode_error("raw log table", e));
        }
        self.inner.try_encode_table_provider(table_ref, node, buf)
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> DfResult<()> {
        self.inner.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<ScalarUDF>> {
        match udf::decode_udf_bytes(buf)? {
            Some(function) => Ok(function),
            None => self.inner.try_decode_udf(name, buf),
        }
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        if udf::encode_udf_bytes(node, buf)? {
            return Ok(());
        }
        self.inner.try_encode_udf(node, buf)
    }
}

/// Ballista's physical codec plus our raw-log scan, which carries each file's compression
/// (DataFusion's CSV scan does not: its compression type is not on the wire).
#[derive(Debug, Default)]
pub struct RtbPhysicalCodec {
    inner: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for RtbPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match buf.strip_prefix(RAW_SCAN) {
            Some(body) => {
                let spec: ScanSpec =
                    serde_json::from_slice(body).map_err(|e| decode_error("raw log scan", e))?;
                // without its picks every task would read every part
                let [picks] = inputs else {
                    return Err(DataFusionError::Internal(format!(
                        "a raw log scan arrived with {} inputs instead of its picks",
                        inputs.len()
                    )));
                };
                Ok(Arc::new(RawLogScanExec::with_picks(
                    spec,
                    None,
                    Arc::clone(picks),
                )?))
            }
            None => match buf.strip_prefix(PARTITION_WRITE) {
                Some(body) => {
                    // without its ids a re-run task could not find its earlier attempt's files
                    let [input, ids] = inputs else {
                        return Err(DataFusionError::Internal(format!(
                            "a partition write arrived with {} inputs instead of its input and ids",
                            inputs.len()
                        )));
                    };
                    // the sink travels as a DataSinkExec over an empty placeholder
                    let template =
                        datafusion_proto::bytes::physical_plan_from_bytes_with_proto_converter(
                            body,
                            ctx,
                            self,
                            proto_converter,
                        )?;
                    Ok(Arc::new(PartitionWriteExec::with_ids(
                        Arc::clone(input),
                        Arc::clone(ids),
                        template,
                    )?))
                }
                None => self.inner.try_decode(buf, inputs, ctx, proto_converter),
            },
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        let any: &dyn Any = node.as_ref();
        if let Some(scan) = any.downcast_ref::<RawLogScanExec>() {
            buf.extend_from_slice(RAW_SCAN);
            return serde_json::to_writer(&mut *buf, scan.spec())
                .map_err(|e| encode_error("raw log scan", e));
        }
        if let Some(write) = any.downcast_ref::<PartitionWriteExec>() {
            buf.extend_from_slice(PARTITION_WRITE);
            let template = datafusion_proto::bytes::physical_plan_to_bytes_with_proto_converter(
                Arc::clone(write.template()),
                self,
                proto_converter,
            )?;
            buf.extend_from_slice(&template);
            return Ok(());
        }
        self.inner.try_encode(node, buf, proto_converter)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<ScalarUDF>> {
        match udf::decode_udf_bytes(buf)? {
            Some(function) => Ok(function),
            None => self.inner.try_decode_udf(name, buf),
        }
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        if udf::encode_udf_bytes(node, buf)? {
            return Ok(());
        }
        self.inner.try_encode_udf(node, buf)
    }
}

/// The gRPC address of the scheduler a `df://host:port` URL names, as Ballista's client forms it.
pub fn scheduler_url(cluster: &str) -> DfResult<String> {
    let url = url::Url::parse(cluster)
        .map_err(|e| DataFusionError::Configuration(format!("{cluster} is not a URL: {e}")))?;
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => Ok(format!("http://{host}:{port}")),
        _ => Err(DataFusionError::Configuration(format!(
            "{cluster} names no scheduler host and port: write df://host:port"
        ))),
    }
}

/// Session settings shared by client, scheduler and executors (a Ballista `ConfigProducer`).
pub fn session_config() -> SessionConfig {
    rtb_expr::sql_config(
        SessionConfig::new_with_ballista()
            .with_information_schema(true)
            .with_ballista_logical_extension_codec(Arc::new(RtbLogicalCodec::default()))
            .with_ballista_physical_extension_codec(Arc::new(RtbPhysicalCodec::default())),
    )
}

/// A runtime serving `file://` and `s3://`, spilling under `spill_dir` when given.
pub fn runtime(spill_dir: Option<&str>) -> DfResult<Arc<RuntimeEnv>> {
    let mut builder =
        RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(StoreRegistry::default()));
    if let Some(dir) = spill_dir {
        builder = builder.with_temp_file_path(dir);
    }
    builder.build_arc()
}

/// Ballista's default session state plus our UDFs, on `runtime`: what the scheduler plans with
/// and what executors resolve functions from.
pub fn session_state(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> DfResult<SessionState> {
    let base = ballista_core::utils::default_session_builder(config)?;
    let mut state = SessionStateBuilder::new_from_existing(base)
        .with_runtime_env(runtime)
        .with_query_planner(Arc::new(DistributedWritesPlanner))
        .build();
    for function in udf::all() {
        state.register_udf(function)?;
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::InputFile;
    use datafusion::arrow::array::{AsArray, RecordBatch};
    use datafusion::arrow::datatypes::UInt32Type;
    use futures::TryStreamExt;
    use rtb_features::layout::LogKind;

    #[test]
    fn scan_round_trips_through_the_codec() {
        let spec = ScanSpec {
            table: RawLogSpec {
                kind: LogKind::Bid,
                files: vec![InputFile {
                    url: "s3://logs/bid.20130311.txt.bz2".into(),
                    kind: LogKind::Bid,
                    size: 42,
                }],
                report_dir: "s3://out/runs/x/ingest/".into(),
                dialect: rtb_features::Dialect::Spark,
                ranges: crate::ingest::Ranges {
                    bytes: 16,
                    multiple: 1,
                },
            },
            columns: vec![0, 3, 6],
            limit: None,
        };
        let scan: Arc<dyn ExecutionPlan> =
            Arc::new(RawLogScanExec::try_new(spec.clone(), None).expect("scan"));
        let codec = RtbPhysicalCodec::default();
        let converter = datafusion_proto::physical_plan::DefaultPhysicalProtoConverter {};
        let mut buf = Vec::new();
        codec
            .try_encode(Arc::clone(&scan), &mut buf, &converter)
            .expect("encodes");
        let ctx = TaskContext::default();
        let picks = Arc::clone(scan.children()[0]);
        let decoded = codec
            .try_decode(&buf, &[picks], &ctx, &converter)
            .expect("decodes");
        let any: &dyn Any = decoded.as_ref();
        let decoded = any.downcast_ref::<RawLogScanExec>().expect("our scan");
        assert_eq!(decoded.spec(), &spec);
        assert_eq!(decoded.schema().fields().len(), 3);
        assert!(codec.try_decode(&buf, &[], &ctx, &converter).is_err());
    }

    #[tokio::test]
    async fn a_partition_write_round_trips_through_the_codec() {
        use crate::partwrite::DistributeWrites;
        use datafusion::datasource::physical_plan::FileSink;
        use datafusion::datasource::sink::DataSinkExec;
        use datafusion::physical_optimizer::PhysicalOptimizerRule;
        use datafusion::prelude::SessionContext;

        let ctx = SessionContext::new();
        let copy = "COPY (SELECT * FROM (VALUES (1), (2), (3)) AS v(x)) TO 's3://out/runs/x/' STORED AS parquet";
        let plan = ctx
            .sql(copy)
            .await
            .expect("plans")
            .create_physical_plan()
            .await
            .expect("physical");
        // the values are one partition: spread them so the rule has a gather to remove
        let spread = plan.clone().replace_children(
            vec![Arc::new(
                datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec::new(
                    Arc::new(
                        datafusion::physical_plan::repartition::RepartitionExec::try_new(
                            Arc::clone(plan.children()[0].children()[0]),
                            datafusion::physical_plan::Partitioning::RoundRobinBatch(2),
                        )
                        .expect("repartition"),
                    ),
                ),
            )],
            datafusion::physical_plan::ReplaceChildrenOptions::new(
                datafusion::physical_plan::ChildrenPropertiesMode::Recompute,
            ),
        );
        let plan = DistributeWrites
            .optimize(spread.expect("spread"), ctx.state().config_options())
            .expect("rewrites");
        let write = plan.children()[0].children()[0];
        let any: &dyn Any = write.as_ref();
        assert!(any.is::<PartitionWriteExec>(), "{plan:?}");

        let codec = RtbPhysicalCodec::default();
        let converter = datafusion_proto::physical_plan::DefaultPhysicalProtoConverter {};
        let mut buf = Vec::new();
        codec
            .try_encode(Arc::clone(write), &mut buf, &converter)
            .expect("encodes");
        let task = TaskContext::default();
        let inputs: Vec<_> = write.children().into_iter().cloned().collect();
        let decoded = codec
            .try_decode(&buf, &inputs, &task, &converter)
            .expect("decodes");
        let any: &dyn Any = decoded.as_ref();
        let decoded = any.downcast_ref::<PartitionWriteExec>().expect("our write");
        let sink = decoded
            .template()
            .downcast_ref::<DataSinkExec>()
            .expect("a sink template");
        let parquet = sink
            .sink()
            .downcast_ref::<datafusion::datasource::file_format::parquet::ParquetSink>()
            .expect("the parquet sink");
        assert_eq!(parquet.config().table_paths[0].as_str(), "s3://out/runs/x/");
        assert_eq!(
            decoded.properties().output_partitioning().partition_count(),
            2
        );
    }

    /// Ballista cuts a stage's plan down to each task's partitions before shipping it; the
    /// scan must come out holding only those parts, or every task reads every part.
    #[tokio::test]
    async fn the_scheduler_gives_each_task_only_its_parts() {
        let spec = ScanSpec {
            table: RawLogSpec {
                kind: LogKind::Bid,
                files: vec![InputFile {
                    url: "s3://logs/bid.20130311.txt".into(),
                    kind: LogKind::Bid,
                    size: 100,
                }],
                report_dir: "s3://out/runs/x/ingest/".into(),
                dialect: rtb_features::Dialect::Strict,
                ranges: crate::ingest::Ranges {
                    bytes: 16,
                    multiple: 1,
                },
            },
            columns: vec![0],
            limit: None,
        };
        let scan: Arc<dyn ExecutionPlan> =
            Arc::new(RawLogScanExec::try_new(spec, None).expect("scan"));
        assert_eq!(scan.properties().output_partitioning().partition_count(), 7);
        let task =
            ballista_scheduler::state::task_builder::restrict_plan_to_partitions(scan, &[2, 5])
                .expect("restricts");
        assert_eq!(task.properties().output_partitioning().partition_count(), 2);
        let any: &dyn Any = task.as_ref();
        assert!(any.downcast_ref::<RawLogScanExec>().is_some());
        let ctx = Arc::new(TaskContext::default());
        let mut picked = Vec::new();
        for partition in 0..2 {
            let stream = task.children()[0]
                .execute(partition, Arc::clone(&ctx))
                .expect("picks");
            let batches: Vec<RecordBatch> = stream.try_collect().await.expect("collects");
            for batch in batches {
                let column = batch.column(0).as_primitive::<UInt32Type>();
                picked.extend(column.values().iter().copied());
            }
        }
        assert_eq!(picked, [2, 5]);
    }
}
