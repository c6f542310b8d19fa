//! Raw iPinYou logs as DataFusion tables, embedded or on a Ballista cluster.
//!
//! Each input file is split into byte ranges ([`Part`]s, `--range-size`), one partition each, so
//! every core (and every executor) reads and decodes a share of one large day. A plain part
//! owns the lines that *start* inside its range: it skips the tail of the line its range begins
//! in and reads its last line past its end, so each line is read exactly once; a `.bz2` part
//! owns the bzip2 blocks starting in its range (`crate::bzblocks`), a `.gz` part the gzip
//! members (`crate::gzmembers`), with the same rule for the lines across them. A `.gz` file of
//! one member is decoded by its first part alone: a deflate stream has no boundary to find.
//! Parts are streamed through the shared line reader on blocking threads, at most as many at
//! once as the engine has partitions: decompressed by extension (`.gz`, `.bz2`), the layout
//! sniffed from the file's first lines, every line either accepted into Arrow batches (all
//! columns strings, `""` and `null` as NULL) or rejected with a reason. The scan is a plain serialisable description
//! (file URLs, kinds, projection), so a cluster executor runs exactly the code the embedded
//! engine runs, with its own decompression: DataFusion's CSV scan loses the compression type on
//! the wire.
//!
//! Nothing vanishes: when a partition has read its whole part it writes the part's report
//! (`lines = accepted + rejected`) and its rejected lines next to the run's outputs, through the
//! object store, from whichever process read it; the run merges a file's parts into one report
//! and one rejects file (line numbers counted from the file's start). A re-read (task retry, a
//! job scanning a table twice) overwrites the same objects, so counts are never doubled.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, AsArray, RecordBatch, RecordBatchOptions, StringBuilder, UInt32Array,
};
use datafusion::arrow::datatypes::UInt32Type;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Statistics;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt};
use rtb_features::layout::{BID_COLUMNS, IMP_COLUMNS, LogKind};
use rtb_features::reader::{LineReader, non_null};
use rtb_features::{Compression, Dialect, RejectReason, spark};
use serde::{Deserialize, Serialize};

/// Lines looked at to decide a file's layout.
const SNIFF_LINES: usize = 1000;
const BATCH_ROWS: usize = 8192;
/// Rejected lines are kept whole up to this many bytes, for a person to look at.
const REJECT_TEXT_LIMIT: usize = 2000;

/// One raw log file to read: all an executor needs to find it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    /// `file:///abs/path` or `s3://bucket/key`.
    pub url: String,
    pub kind: LogKind,
    /// Stored bytes (compressed for `.gz`/`.bz2`), for progress.
    pub size: u64,
}

impl InputFile {
    /// The file's name, unique within one run's inputs (they are listed from one folder).
    pub fn name(&self) -> &str {
        self.url.rsplit('/').next().unwrap_or(&self.url)
    }

    /// The store serving this file in the task's runtime, and the file's path in it.
    fn locate(&self, ctx: &TaskContext) -> DfResult<(Arc<dyn ObjectStore>, ObjectPath)> {
        let url = url::Url::parse(&self.url)
            .map_err(|e| external(format!("input {} is not a url: {e}", self.url)))?;
        let base = ObjectStoreUrl::parse(format!("{}://{}", url.scheme(), url.authority()))?;
        let store = ctx.runtime_env().object_store(&base)?;
        let path = ObjectPath::from_url_path(url.path())
            .map_err(|e| external(format!("input {} has a bad path: {e}", self.url)))?;
        Ok((store, path))
    }
}

pub use rtb_features::FileReport;

/// One scan task's share of an input file: the lines that start in its byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// Index of the file in its table's spec.
    pub file: usize,
    pub index: u32,
    /// Parts of that file.
    pub of: u32,
    /// Stored-byte offset where the part's first line may start.
    pub start: u64,
    /// Lines starting at or after this offset belong to the next part; `None`: to the end.
    pub end: Option<u64>,
}

impl Part {
    /// All of file `file`, as compressed files and small ones are read.
    pub fn whole(file: usize) -> Part {
        Part {
            file,
            index: 0,
            of: 1,
            start: 0,
            end: None,
        }
    }

    /// Appended to the file's name in the part's report and rejects; empty for a whole file.
    fn suffix(&self) -> String {
        if self.of == 1 {
            String::new()
        } else {
            format!(".part-{:05}-of-{:05}", self.index, self.of)
        }
    }
}

/// A stored byte of a `.bz2` or `.gz` log decodes to about this many (3.9 for bzip2 on
/// generated days, more on real ones), so its ranges are this much shorter for tasks of a
/// similar length.
pub const COMPRESSED_RANGE_DIVISOR: u64 = 4;

/// A typical iPinYou line's length (337 bytes for a generated bid, 369 for an impression):
/// only for the planner's row estimate.
const NOMINAL_LINE_BYTES: u64 = 350;

/// About how many bytes `part` decodes to: its stored bytes, times
/// [`COMPRESSED_RANGE_DIVISOR`] for a compressed file.
fn decoded_bytes(table: &RawLogSpec, part: &Part) -> u64 {
    let file = &table.files[part.file];
    let stored = part.end.unwrap_or(file.size).saturating_sub(part.start);
    match Compression::from_name(&file.url) {
        Compression::None => stored,
        Compression::Bzip2 | Compression::Gzip => stored * COMPRESSED_RANGE_DIVISOR,
    }
}

/// How files are cut into parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Ranges {
    /// A plain file's parts hold at most this many bytes (`--range-size`), a compressed file's
    /// [`COMPRESSED_RANGE_DIVISOR`] times fewer; 0 reads each file as one part.
    pub bytes: u64,
    /// A split file's part count is rounded up to a multiple of this, the engine's partitions,
    /// so that the last wave of tasks keeps every core busy (a 1M-bid day in 128 MiB ranges
    /// was 3 parts on 2 cores: the third ran alone). 0 and 1 round nothing.
    pub multiple: u64,
}

/// How a file is split: in equal ranges of at most `ranges.bytes` (see [`Ranges`]).
pub fn parts_of(index: usize, file: &InputFile, ranges: Ranges) -> Vec<Part> {
    let range_bytes = match Compression::from_name(&file.url) {
        Compression::None => ranges.bytes,
        Compression::Bzip2 | Compression::Gzip => ranges.bytes / COMPRESSED_RANGE_DIVISOR,
    };
    if range_bytes == 0 || file.size <= range_bytes {
        return vec![Part::whole(index)];
    }
    let of = file
        .size
        .div_ceil(range_bytes)
        .next_multiple_of(ranges.multiple.max(1))
        .min(file.size);
    let range_bytes = file.size.div_ceil(of);
    // rounding the length up can leave the last ranges past the end (9 bytes in 6 parts of 2):
    // count them again from the length, so every part starts inside the file
    let of = file.size.div_ceil(range_bytes);
    let of32 = u32::try_from(of).unwrap_or(u32::MAX);
    (0..of)
        .map(|i| Part {
            file: index,
            index: u32::try_from(i).unwrap_or(u32::MAX),
            of: of32,
            start: i * range_bytes,
            end: (i + 1 < of).then_some((i + 1) * range_bytes),
        })
        .collect()
}

/// Where a run's scans leave a part's report and rejected lines; a whole file's are the
/// file's own.
pub fn report_name(file: &InputFile, part: &Part) -> String {
    format!("{}{}.report.json", file.name(), part.suffix())
}

pub fn rejects_name(file: &InputFile, part: &Part) -> String {
    format!("{}{}.rejects.jsonl", file.name(), part.suffix())
}

/// A rejected line as the rejects files hold it; `line` counts from the start of the part
/// that read it until the run merges the parts (then from the file's start).
#[derive(Debug, Serialize, Deserialize)]
pub struct RejectRecord<'a> {
    #[serde(borrow)]
    pub file: std::borrow::Cow<'a, str>,
    pub line: u64,
    pub reason: RejectReason,
    pub text: String,
}

fn schema_width(kind: LogKind) -> usize {
    match kind {
        LogKind::Bid => BID_COLUMNS.len(),
        LogKind::Imp => IMP_COLUMNS.len(),
    }
}

pub fn schema_of(kind: LogKind) -> SchemaRef {
    let columns: &[&str] = match kind {
        LogKind::Bid => &BID_COLUMNS,
        LogKind::Imp => &IMP_COLUMNS,
    };
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

/// The serialisable part of a [`RawLogTable`]: what a cluster codec ships to the scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawLogSpec {
    pub kind: LogKind,
    pub files: Vec<InputFile>,
    /// Folder URL (ending in `/`) receiving each file's report and rejected lines.
    pub report_dir: String,
    #[serde(default)]
    pub dialect: Dialect,
    #[serde(default)]
    pub ranges: Ranges,
}

impl RawLogSpec {
    /// Every part of every file, in file order: the scan's partitions.
    pub fn parts(&self) -> Vec<Part> {
        self.files
            .iter()
            .enumerate()
            .flat_map(|(i, f)| parts_of(i, f, self.ranges))
            .collect()
    }
}

/// All files of one log kind as one table (`bids` or `imps`).
#[derive(Debug)]
pub struct RawLogTable {
    spec: RawLogSpec,
    schema: SchemaRef,
    /// Stored bytes read, when this process reads the files itself (embedded).
    progress: Option<Arc<AtomicU64>>,
}

impl RawLogTable {
    pub fn new(spec: RawLogSpec, progress: Option<Arc<AtomicU64>>) -> Self {
        RawLogTable {
            schema: schema_of(spec.kind),
            spec,
            progress,
        }
    }

    pub fn spec(&self) -> &RawLogSpec {
        &self.spec
    }
}

#[async_trait]
impl TableProvider for RawLogTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let columns: Vec<usize> = projection
            .cloned()
            .unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        let spec = ScanSpec {
            table: self.spec.clone(),
            columns,
            limit,
        };
        Ok(Arc::new(RawLogScanExec::try_new(
            spec,
            self.progress.clone(),
        )?))
    }
}

/// The serialisable part of a [`RawLogScanExec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanSpec {
    pub table: RawLogSpec,
    /// Projected column indexes into the kind's full schema.
    pub columns: Vec<usize>,
    pub limit: Option<usize>,
}

/// Reads raw log files, one output partition per part.
///
/// Its one child, `picks`, is an in-memory scan with one row per partition: the index of the
/// part that partition reads. Ballista's scheduler cuts each task's plan down to the task's
/// partitions, but only at scans it knows; a leaf it does not know is left whole, and every
/// task would read every part (the duplicates then hidden by grouping, the work not). Through
/// `picks` each task reads exactly its own parts.
#[derive(Debug)]
pub struct RawLogScanExec {
    spec: ScanSpec,
    parts: Vec<Part>,
    picks: Arc<dyn ExecutionPlan>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    progress: Option<Arc<AtomicU64>>,
    /// Parts read at once in this process: as many as the engine's partitions. A consumer
    /// polls every partition, and hundreds of parts of a season read at once would hold
    /// hundreds of threads and their batches.
    reading: std::sync::OnceLock<Arc<tokio::sync::Semaphore>>,
}

impl RawLogScanExec {
    pub fn try_new(spec: ScanSpec, progress: Option<Arc<AtomicU64>>) -> DfResult<Self> {
        let parts = spec.table.parts().len();
        let schema = picks_schema();
        let picks = (0..parts.max(1))
            .map(|i| {
                // a table without files still has one partition, which reads nothing
                let picked: Vec<u32> = (i < parts).then_some(i as u32).into_iter().collect();
                let column = Arc::new(UInt32Array::from(picked)) as ArrayRef;
                Ok(vec![RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![column],
                )?])
            })
            .collect::<DfResult<Vec<_>>>()?;
        let picks = MemorySourceConfig::try_new_exec(&picks, schema, None)?;
        Self::with_picks(spec, progress, picks)
    }

    /// The scan reading the parts `picks` names, as restricted for one task.
    pub fn with_picks(
        spec: ScanSpec,
        progress: Option<Arc<AtomicU64>>,
        picks: Arc<dyn ExecutionPlan>,
    ) -> DfResult<Self> {
        let schema = Arc::new(schema_of(spec.table.kind).project(&spec.columns)?);
        let parts = spec.table.parts();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(
                picks.properties().output_partitioning().partition_count(),
            ),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(RawLogScanExec {
            spec,
            parts,
            picks,
            schema,
            properties: Arc::new(properties),
            progress,
            reading: std::sync::OnceLock::new(),
        })
    }

    pub fn spec(&self) -> &ScanSpec {
        &self.spec
    }
}

fn picks_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "part",
        DataType::UInt32,
        false,
    )]))
}

impl DisplayAs for RawLogScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "RawLogScanExec: kind={:?}, files={}, parts={}, columns={}",
            self.spec.table.kind,
            self.spec.table.files.len(),
            self.parts.len(),
            self.schema.fields().len()
        )
    }
}

impl ExecutionPlan for RawLogScanExec {
    fn name(&self) -> &'static str {
        "RawLogScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.picks]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        // `picks` must reach this scan partition for partition, never repartitioned
        vec![false]
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
        match <[_; 1]>::try_from(children) {
            Ok([picks]) => Ok(Arc::new(RawLogScanExec::with_picks(
                self.spec.clone(),
                self.progress.clone(),
                picks,
            )?)),
            Err(_) => Err(DataFusionError::Internal(
                "RawLogScanExec has exactly one child".into(),
            )),
        }
    }

    fn fetch(&self) -> Option<usize> {
        self.spec.limit
    }

    /// An estimate from the stored bytes, never exact: enough for a cluster's planner to see
    /// that the impressions are small beside the bids and broadcast them to a join, instead
    /// of shuffling both sides by the join key (Ballista's adaptive join selection reads
    /// these; with unknown sizes it repartitions).
    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> DfResult<Arc<Statistics>> {
        let parts = self
            .properties
            .output_partitioning()
            .partition_count()
            .max(1);
        let all: u64 = self
            .parts
            .iter()
            .map(|p| decoded_bytes(&self.spec.table, p))
            .sum();
        // a task's copy reads a subset of the parts through `picks`: share them out evenly
        let bytes = match args.partition() {
            Some(_) => all / parts as u64,
            None => all,
        };
        let mut rows = bytes.div_ceil(NOMINAL_LINE_BYTES) as usize;
        if let Some(limit) = self.spec.limit {
            rows = rows.min(limit);
        }
        let mut stats = Statistics::new_unknown(&self.schema);
        stats.num_rows = Precision::Inexact(rows);
        stats.total_byte_size = Precision::Inexact(bytes as usize);
        Ok(Arc::new(stats))
    }

    fn execute(
        &self,
        partition: usize,
        ctx: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let mut builder = RecordBatchReceiverStreamBuilder::new(Arc::clone(&self.schema), 4);
        let picks = self.picks.execute(partition, Arc::clone(&ctx))?;
        let reading = Arc::clone(self.reading.get_or_init(|| {
            let at_once = ctx.session_config().target_partitions().max(1);
            Arc::new(tokio::sync::Semaphore::new(at_once))
        }));
        let tx = builder.tx();
        let (spec, parts, schema) = (
            self.spec.clone(),
            self.parts.clone(),
            Arc::clone(&self.schema),
        );
        let progress = self.progress.clone();
        let handle = tokio::runtime::Handle::current();
        builder.spawn(async move {
            let picked: Vec<RecordBatch> = picks.try_collect().await?;
            let mut remaining = spec.limit.unwrap_or(usize::MAX);
            for batch in &picked {
                let column = batch.column(0).as_primitive::<UInt32Type>();
                for index in column.values().iter() {
                    let part = *parts
                        .get(*index as usize)
                        .ok_or_else(|| external(format!("the scan has no part {index} to read")))?;
                    let file = spec.table.files[part.file].clone();
                    let (store, path) = file.locate(&ctx)?;
                    let task = ScanTask {
                        file,
                        part,
                        store,
                        path,
                        report_dir: ReportDir::locate(&ctx, &spec.table.report_dir)?,
                        columns: spec.columns.clone(),
                        schema: Arc::clone(&schema),
                        progress: progress.clone(),
                        dialect: spec.table.dialect,
                    };
                    let _turn = Arc::clone(&reading)
                        .acquire_owned()
                        .await
                        .map_err(|e| external(format!("the scan was shut down: {e}")))?;
                    let (sender, handle) = (tx.clone(), handle.clone());
                    remaining = tokio::task::spawn_blocking(move || {
                        let emit = |batch: RecordBatch| {
                            let batch = batch.slice(0, batch.num_rows().min(remaining));
                            remaining -= batch.num_rows();
                            sender.blocking_send(Ok(batch)).is_ok() && remaining > 0
                        };
                        task.run(&handle, emit).map(|()| remaining)
                    })
                    .await
                    .map_err(|e| external(format!("a scan task failed: {e}")))??;
                    if remaining == 0 || tx.is_closed() {
                        return Ok(());
                    }
                }
            }
            Ok(())
        });
        Ok(builder.build())
    }
}

fn external(message: String) -> DataFusionError {
    DataFusionError::External(message.into())
}

/// The report folder of a run, resolved in the task's runtime.
struct ReportDir {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    url: String,
}

impl ReportDir {
    fn locate(ctx: &TaskContext, dir_url: &str) -> DfResult<Self> {
        let probe = InputFile {
            url: dir_url.trim_end_matches('/').to_owned(),
            kind: LogKind::Bid,
            size: 0,
        };
        let (store, prefix) = probe.locate(ctx)?;
        Ok(ReportDir {
            store,
            prefix,
            url: probe.url,
        })
    }

    fn path(&self, name: &str) -> ObjectPath {
        self.prefix.clone().join(name)
    }
}

struct ScanTask {
    file: InputFile,
    part: Part,
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    report_dir: ReportDir,
    columns: Vec<usize>,
    schema: SchemaRef,
    progress: Option<Arc<AtomicU64>>,
    dialect: Dialect,
}

/// The columns the original's schema reads as `long` (`Long.parseLong`), by log kind.
fn spark_long_columns(kind: LogKind) -> &'static [usize] {
    match kind {
        LogKind::Bid => &[],
        // BiddingPrice, PayingPrice
        LogKind::Imp => &[19, 20],
    }
}

/// How one file's lines become rows.
enum Reading {
    Strict(LineReader),
    /// The original's fixed schema: every column of the kind, by position.
    Spark,
}

impl ScanTask {
    fn run(
        self,
        handle: &tokio::runtime::Handle,
        mut emit: impl FnMut(RecordBatch) -> bool,
    ) -> DfResult<()> {
        let url = &self.file.url;
        let (mut reader, mut position) = self.open(handle, self.part, true)?;
        // a bzip2 part's reader stops at its last line itself
        let end = match Compression::from_name(url) {
            Compression::None => self.part.end.unwrap_or(u64::MAX),
            _ => u64::MAX,
        };
        let mut head: Vec<Vec<u8>> = Vec::new();
        let mut buf = Vec::with_capacity(1024);
        if self.part.start == 0 {
            // the file's first lines are this part's: read once, to sniff and to process
            while head.len() < SNIFF_LINES && position < end {
                let Some(n) = next_line(&mut *reader, &mut buf, url)? else {
                    break;
                };
                position += n;
                head.push(buf.clone());
            }
        }
        let sniffed = if self.part.start == 0 {
            None
        } else {
            Some(self.head(handle)?)
        };
        let sample = sniffed.as_ref().unwrap_or(&head);
        if sample.iter().all(|l| l.iter().all(u8::is_ascii_whitespace)) {
            return Err(external(format!(
                "{url} holds no log lines; an empty day cannot be used, remove it from the input or regenerate it"
            )));
        }
        let (kind_name, layouts) = match self.file.kind {
            LogKind::Bid => ("bid", "19 or 21"),
            LogKind::Imp => ("impression", "22 or 24 or more"),
        };
        let (reading, layout_name) = match self.dialect {
            Dialect::Strict => {
                let layout = self.file.kind.sniff(sample.iter().map(Vec::as_slice)).ok_or_else(|| {
                    external(format!("no line among the first {} of {url} has a known {kind_name} layout ({layouts} tab-separated fields); is it an iPinYou {kind_name} log?", sample.len()))
                })?;
                (Reading::Strict(LineReader::new(layout)), layout.name())
            }
            Dialect::Spark => {
                let kind = match self.file.kind {
                    LogKind::Bid => "bid",
                    LogKind::Imp => "imp",
                };
                (Reading::Spark, format!("{kind}/spark"))
            }
        };
        drop(sniffed);
        let rejects_file = tempfile::NamedTempFile::new()
            .map_err(|e| external(format!("cannot create a temporary rejects file: {e}")))?;
        let rejects = std::io::BufWriter::new(
            rejects_file
                .reopen()
                .map_err(|e| external(format!("cannot open the rejects file: {e}")))?,
        );
        let mut batch = BatchBuilder::new(&self.columns, &self.schema);
        let mut lines = Lines {
            file: &self.file,
            reading,
            rejects,
            report: FileReport {
                url: url.clone(),
                kind: self.file.kind,
                compression: Compression::from_name(url),
                layout: layout_name,
                lines: 0,
                accepted: 0,
                rejected: 0,
                rejected_by_reason: BTreeMap::new(),
                rows_with_extra_columns_dropped: 0,
                rows_short_padded: 0,
                prices_unparsed: 0,
                parts: 1,
                reader_pid: std::process::id(),
            },
        };
        for line in &head {
            lines.process(line, &mut batch)?;
        }
        drop(head);
        loop {
            if batch.rows >= BATCH_ROWS && !emit(batch.take()?) {
                // the consumer hung up (a LIMIT, or the query failed elsewhere): stop quietly,
                // without a report, since the part was not read whole
                return Ok(());
            }
            // a line starting at `end` is the next part's; the one before it may run past
            if position >= end {
                break;
            }
            let Some(n) = next_line(&mut *reader, &mut buf, url)? else {
                break;
            };
            position += n;
            lines.process(&buf, &mut batch)?;
        }
        if batch.rows > 0 && !emit(batch.take()?) {
            return Ok(());
        }
        let Lines {
            mut rejects,
            report,
            ..
        } = lines;
        rejects
            .flush()
            .map_err(|e| external(format!("cannot write rejected lines of {url}: {e}")))?;
        self.publish(handle, &report, rejects_file.path())
    }

    /// The file's first lines, for a part that does not start the file to sniff the layout.
    fn head(&self, handle: &tokio::runtime::Handle) -> DfResult<Vec<Vec<u8>>> {
        let url = &self.file.url;
        let (mut reader, _) = self.open(handle, Part::whole(self.part.file), false)?;
        let mut head = Vec::new();
        let mut buf = Vec::new();
        while head.len() < SNIFF_LINES && next_line(&mut *reader, &mut buf, url)?.is_some() {
            head.push(buf.clone());
        }
        Ok(head)
    }

    /// Rejected lines first, then the report: a report present means its rejects are too.
    fn publish(
        &self,
        handle: &tokio::runtime::Handle,
        report: &FileReport,
        rejects: &std::path::Path,
    ) -> DfResult<()> {
        let dir = &self.report_dir;
        let rejects_path = dir.path(&rejects_name(&self.file, &self.part));
        let report_path = dir.path(&report_name(&self.file, &self.part));
        let body = serde_json::to_vec_pretty(report)
            .map_err(|e| external(format!("cannot encode the report of {}: {e}", report.url)))?;
        handle
            .block_on(async {
                if report.rejected > 0 {
                    rtb_storage::upload_file_to(&dir.store, &rejects_path, rejects)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                dir.store
                    .put(&report_path, body.into())
                    .await
                    .map_err(|e| e.to_string())
            })
            .map(|_| ())
            .map_err(|e| {
                external(format!(
                    "cannot write the ingest report of {} under {}: {e}",
                    report.url, dir.url
                ))
            })
    }

    /// Opens the input through its object store at the part's first line; returns the reader
    /// and that line's offset. Local stores hand back the file itself, remote ones a byte
    /// stream, read here through a bridge on this blocking thread. A plain part after the
    /// first starts one byte early: the line it lands in is the previous part's unless that
    /// byte ends a line. A compressed part yields exactly its own lines
    /// (`crate::partlines`).
    fn open(
        &self,
        handle: &tokio::runtime::Handle,
        part: Part,
        counted: bool,
    ) -> DfResult<(Box<dyn BufRead + Send>, u64)> {
        let url = &self.file.url;
        let compression = Compression::from_name(url);
        let from = match compression {
            Compression::None => part.start.saturating_sub(1),
            _ => part.start,
        };
        let options = object_store::GetOptions {
            range: (from > 0).then_some(object_store::GetRange::Offset(from)),
            ..Default::default()
        };
        let result = handle
            .block_on(self.store.get_opts(&self.path, options))
            .map_err(|e| external(format!("cannot open {url}: {e}")))?;
        let range = result.range.clone();
        let raw: Box<dyn Read + Send> = match result.payload {
            GetResultPayload::File(mut f, _) => {
                use std::io::Seek;
                f.seek(std::io::SeekFrom::Start(range.start)).map_err(|e| {
                    external(format!("cannot read {url} from byte {}: {e}", range.start))
                })?;
                Box::new(f.take(range.end - range.start))
            }
            GetResultPayload::Stream(stream) => {
                let stream = stream.map_err(std::io::Error::other);
                let reader = tokio_util::io::StreamReader::new(stream);
                Box::new(tokio_util::io::SyncIoBridge::new_with_handle(
                    reader,
                    handle.clone(),
                ))
            }
        };
        let raw = match self.progress.as_ref().filter(|_| counted) {
            Some(counter) => Box::new(CountingRead {
                inner: raw,
                counter: Arc::clone(counter),
            }),
            None => raw,
        };
        let decoded: Box<dyn Read + Send> = match compression {
            // a whole file too: its blocks decode faster so than in libbz2's stream decoder
            Compression::Bzip2 => {
                return Ok((
                    Box::new(crate::bzblocks::part(raw, part.start, part.end)),
                    0,
                ));
            }
            Compression::Gzip if part.of > 1 => {
                return Ok((
                    Box::new(crate::gzmembers::part(raw, part.start, part.end)),
                    0,
                ));
            }
            Compression::None => raw,
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
                BufReader::with_capacity(1 << 20, raw),
            )),
        };
        let mut reader: Box<dyn BufRead + Send> =
            Box::new(BufReader::with_capacity(1 << 20, decoded));
        if part.start == 0 || compression != Compression::None {
            return Ok((reader, 0));
        }
        let mut first = [0u8; 1];
        let read_err = |e: std::io::Error| external(format!("cannot read {url}: {e}"));
        let at = match reader.read(&mut first).map_err(read_err)? {
            0 => self.file.size.max(part.start),
            _ if first[0] == b'\n' => part.start,
            _ => {
                let mut skipped = Vec::new();
                let n = reader.read_until(b'\n', &mut skipped).map_err(read_err)?;
                part.start + n as u64
            }
        };
        Ok((reader, at))
    }
}

struct CountingRead {
    inner: Box<dyn Read + Send>,
    counter: Arc<AtomicU64>,
}

impl Read for CountingRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Reads one line without its `\n`; the bytes it took (with the `\n`), `None` at the end.
fn next_line(reader: &mut dyn BufRead, buf: &mut Vec<u8>, url: &str) -> DfResult<Option<u64>> {
    buf.clear();
    let n = reader
        .read_until(b'\n', buf)
        .map_err(|e| external(format!("cannot read {url}: {e} (is the file complete and its compression matching its extension?)")))?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    Ok(Some(n as u64))
}

struct BatchBuilder<'a> {
    columns: &'a [usize],
    schema: &'a SchemaRef,
    builders: Vec<StringBuilder>,
    rows: usize,
}

impl<'a> BatchBuilder<'a> {
    fn new(columns: &'a [usize], schema: &'a SchemaRef) -> Self {
        BatchBuilder {
            columns,
            schema,
            builders: columns
                .iter()
                .map(|_| StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 24))
                .collect(),
            rows: 0,
        }
    }

    fn push(&mut self, fields: &[Option<&str>]) {
        for (builder, &column) in self.builders.iter_mut().zip(self.columns) {
            builder.append_option(non_null(fields[column]));
        }
        self.rows += 1;
    }

    /// Spark mode: the values as read, `null` a string like any other.
    fn push_as_read(&mut self, fields: &[Option<std::borrow::Cow<'_, str>>]) {
        for (builder, &column) in self.builders.iter_mut().zip(self.columns) {
            builder.append_option(fields[column].as_deref());
        }
        self.rows += 1;
    }

    fn take(&mut self) -> DfResult<RecordBatch> {
        let arrays: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows));
        self.rows = 0;
        Ok(RecordBatch::try_new_with_options(
            Arc::clone(self.schema),
            arrays,
            &options,
        )?)
    }
}

struct Lines<'a> {
    file: &'a InputFile,
    reading: Reading,
    rejects: std::io::BufWriter<std::fs::File>,
    report: FileReport,
}

impl Lines<'_> {
    /// One line up to its `\n`: one row in strict mode; in Spark mode as many lines as its
    /// lone `\r`s make (Hadoop's line reader ends a line there too).
    fn process(&mut self, line: &[u8], batch: &mut BatchBuilder<'_>) -> DfResult<()> {
        let reader = match &self.reading {
            Reading::Strict(reader) => *reader,
            Reading::Spark => {
                for physical in spark::physical_lines(line) {
                    self.process_spark(physical, batch)?;
                }
                return Ok(());
            }
        };
        self.report.lines += 1;
        let parsed = match self.file.kind {
            LogKind::Bid => reader.parse_bid(line).map(|p| {
                batch.push(&p.row.fields);
                p.dropped_columns
            }),
            LogKind::Imp => reader.parse_imp(line).map(|p| {
                batch.push(&p.row.fields);
                p.dropped_columns
            }),
        };
        match parsed {
            Ok(dropped) => {
                self.report.accepted += 1;
                self.report.rows_with_extra_columns_dropped += u64::from(dropped > 0);
                Ok(())
            }
            Err(reason) => self.reject(line, reason),
        }
    }

    /// Spark's PERMISSIVE reading keeps every line but blank ones, which it skips: those are
    /// the only rejects here, so the counts still add up.
    fn process_spark(&mut self, line: &[u8], batch: &mut BatchBuilder<'_>) -> DfResult<()> {
        self.report.lines += 1;
        let text = spark::decode(line);
        if spark::is_blank(&text) {
            return self.reject(line, RejectReason::EmptyLine);
        }
        let width = schema_width(self.file.kind);
        let long_columns = spark_long_columns(self.file.kind);
        let mut fields = Vec::with_capacity(width);
        let shape = spark::read_record(&text, width, long_columns, &mut fields);
        self.report.rows_short_padded += u64::from(shape.fields < width);
        self.report.rows_with_extra_columns_dropped += u64::from(shape.fields > width);
        self.report.prices_unparsed += shape.longs_refused;
        batch.push_as_read(&fields);
        self.report.accepted += 1;
        Ok(())
    }

    fn reject(&mut self, line: &[u8], reason: RejectReason) -> DfResult<()> {
        self.report.rejected += 1;
        *self.report.rejected_by_reason.entry(reason).or_default() += 1;
        let cut = &line[..line.len().min(REJECT_TEXT_LIMIT)];
        let record = RejectRecord {
            file: self.file.url.as_str().into(),
            line: self.report.lines,
            reason,
            text: String::from_utf8_lossy(cut).into_owned(),
        };
        serde_json::to_writer(&mut self.rejects, &record)
            .map_err(std::io::Error::from)
            .and_then(|()| self.rejects.write_all(b"\n"))
            .map_err(|e| {
                external(format!(
                    "cannot record a rejected line of {}: {e}",
                    self.file.url
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(bytes: u64) -> Ranges {
        Ranges { bytes, multiple: 1 }
    }

    fn spans(parts: &[Part]) -> Vec<(u64, Option<u64>)> {
        parts.iter().map(|p| (p.start, p.end)).collect()
    }

    fn file(url: &str, size: u64) -> InputFile {
        InputFile {
            url: url.into(),
            kind: LogKind::Bid,
            size,
        }
    }

    #[test]
    fn plain_files_split_into_ranges_that_cover_them_once() {
        let parts = parts_of(3, &file("file:///d/bid.txt", 1000), one(300));
        assert_eq!(
            spans(&parts),
            [
                (0, Some(250)),
                (250, Some(500)),
                (500, Some(750)),
                (750, None)
            ]
        );
        assert!(parts.iter().all(|p| p.file == 3 && p.of == 4));
        assert_eq!(
            report_name(&file("file:///d/bid.txt", 1000), &parts[1]),
            "bid.txt.part-00001-of-00004.report.json"
        );
        // rounded up to a multiple of the partitions, in equal ranges
        let balanced = parts_of(
            0,
            &file("file:///d/bid.txt", 1000),
            Ranges {
                bytes: 300,
                multiple: 3,
            },
        );
        assert_eq!(
            spans(&balanced),
            [
                (0, Some(167)),
                (167, Some(334)),
                (334, Some(501)),
                (501, Some(668)),
                (668, Some(835)),
                (835, None)
            ]
        );
        // every part starts inside the file, however the rounding falls
        for (size, bytes, multiple) in [(9, 2, 3), (100, 7, 4), (1000, 3, 16)] {
            let parts = parts_of(
                0,
                &file("file:///d/bid.txt", size),
                Ranges { bytes, multiple },
            );
            assert!(
                parts.iter().all(|p| p.start < size),
                "{size} {bytes} {multiple}"
            );
            assert_eq!(parts.last().and_then(|p| p.end), None);
        }
        // never more parts than bytes
        assert_eq!(
            parts_of(
                0,
                &file("file:///d/bid.txt", 5),
                Ranges {
                    bytes: 2,
                    multiple: 8
                }
            )
            .len(),
            5
        );
        let bzip2 = parts_of(0, &file("s3://b/bid.txt.bz2", 1000), one(300));
        assert_eq!(
            bzip2.len(),
            14,
            "ranges of 300 / {COMPRESSED_RANGE_DIVISOR} bytes"
        );
        assert_eq!(bzip2[13].start, 13 * 72, "equal ranges of 1000 / 14 bytes");
        assert_eq!(
            parts_of(0, &file("s3://b/bid.txt.gz", 1000), one(300)),
            bzip2
        );
        // small, or splitting off: one part, named as the file
        for (url, size, range) in [
            ("s3://b/bid.txt.gz", 75, 300),
            ("s3://b/bid.txt.bz2", 75, 300),
            ("s3://b/bid.txt", 300, 300),
            ("s3://b/bid.txt", 10_000, 0),
        ] {
            let parts = parts_of(0, &file(url, size), one(range));
            assert_eq!(parts, [Part::whole(0)], "{url} {size} {range}");
            assert_eq!(
                rejects_name(&file(url, size), &parts[0]),
                format!("{}.rejects.jsonl", file(url, size).name())
            );
        }
    }

    #[test]
    fn scans_estimate_their_size_from_the_stored_bytes_and_never_claim_exactness() {
        let table = RawLogSpec {
            kind: LogKind::Bid,
            files: vec![
                file("file:///d/bid.1.txt", 7000),
                file("file:///d/bid.2.txt.bz2", 700),
            ],
            report_dir: "file:///d/ingest/".into(),
            dialect: Dialect::default(),
            ranges: Ranges {
                bytes: 3000,
                multiple: 1,
            },
        };
        let spec = |limit| ScanSpec {
            table: table.clone(),
            columns: vec![0, 1],
            limit,
        };
        let scan = RawLogScanExec::try_new(spec(None), None).expect("scan");
        let partitions = scan.properties().output_partitioning().partition_count();
        assert_eq!(
            partitions, 4,
            "three ranges of the plain file, the .bz2 whole"
        );
        let stats = |scan: &RawLogScanExec, partition| {
            scan.statistics_from_inputs(&[], &StatisticsArgs::new().with_partition(partition))
                .expect("statistics")
        };
        let all = stats(&scan, None);
        assert_eq!(all.total_byte_size, Precision::Inexact(7000 + 4 * 700));
        assert_eq!(all.num_rows, Precision::Inexact(28), "9,800 bytes / 350");
        assert_eq!(
            stats(&scan, Some(1)).total_byte_size,
            Precision::Inexact(9800 / 4)
        );
        let limited = RawLogScanExec::try_new(spec(Some(5)), None).expect("scan");
        assert_eq!(stats(&limited, None).num_rows, Precision::Inexact(5));
    }
}
