//! Raw iPinYou logs as DataFusion tables.
//!
//! Each input file is one partition, streamed through the shared line reader on a blocking
//! thread: decompressed by extension (`.gz`, `.bz2`), its layout sniffed from its first lines,
//! every line either accepted into Arrow batches (all columns strings, `""` and `null` as NULL)
//! or rejected with a reason. Nothing vanishes: every file's counts land in the [`IngestLog`]
//! and every rejected line in the rejects file, so `lines = accepted + rejected` per input.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt};
use rtb_features::layout::{BID_COLUMNS, IMP_COLUMNS, LogKind};
use rtb_features::reader::{LineReader, non_null};
use rtb_features::{Compression, RejectReason};
use serde::Serialize;

/// Lines looked at to decide a file's layout.
const SNIFF_LINES: usize = 1000;
const BATCH_ROWS: usize = 8192;
/// Rejected lines are kept whole up to this many bytes, for a person to look at.
const REJECT_TEXT_LIMIT: usize = 2000;

/// One raw log file to read.
#[derive(Clone)]
pub struct InputFile {
    pub url: String,
    pub store: Arc<dyn ObjectStore>,
    pub path: ObjectPath,
    pub kind: LogKind,
}

impl fmt::Debug for InputFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InputFile")
            .field("url", &self.url)
            .field("kind", &self.kind)
            .finish()
    }
}

/// What reading one input found. `lines = accepted + rejected` always holds.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub url: String,
    pub kind: LogKind,
    pub compression: Compression,
    /// e.g. `bid/season23`, `imp/season23+2` (two extra trailing columns dropped).
    pub layout: String,
    pub lines: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<RejectReason, u64>,
    /// Accepted rows from which extra trailing columns were dropped.
    pub rows_with_extra_columns_dropped: u64,
}

/// Per-file reports and rejected lines of one run, shared by all partitions.
pub struct IngestLog {
    reports: Mutex<BTreeMap<String, FileReport>>,
    /// Files whose lines are being or were counted: a second scan of a file (a job that reads
    /// a table twice) must not count its lines again.
    claimed: Mutex<HashSet<String>>,
    rejects: Mutex<Box<dyn Write + Send>>,
}

impl fmt::Debug for IngestLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IngestLog").finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct RejectRecord<'a> {
    file: &'a str,
    line: u64,
    reason: RejectReason,
    text: String,
}

impl IngestLog {
    /// `rejects` receives one JSON object per rejected line.
    pub fn new(rejects: Box<dyn Write + Send>) -> Self {
        IngestLog {
            reports: Mutex::new(BTreeMap::new()),
            claimed: Mutex::new(HashSet::new()),
            rejects: Mutex::new(rejects),
        }
    }

    pub fn reports(&self) -> Vec<FileReport> {
        self.reports
            .lock()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn flush(&self) -> std::io::Result<()> {
        match self.rejects.lock() {
            Ok(mut w) => w.flush(),
            Err(_) => Err(std::io::Error::other("rejects writer poisoned")),
        }
    }

    fn claim(&self, url: &str) -> bool {
        self.claimed
            .lock()
            .map(|mut c| c.insert(url.to_owned()))
            .unwrap_or(false)
    }

    fn reject(
        &self,
        file: &str,
        line: u64,
        reason: RejectReason,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        let cut = &bytes[..bytes.len().min(REJECT_TEXT_LIMIT)];
        let record = RejectRecord {
            file,
            line,
            reason,
            text: String::from_utf8_lossy(cut).into_owned(),
        };
        let mut w = self
            .rejects
            .lock()
            .map_err(|_| std::io::Error::other("rejects writer poisoned"))?;
        serde_json::to_writer(&mut *w, &record)?;
        w.write_all(b"\n")
    }

    fn finish(&self, report: FileReport) {
        if let Ok(mut reports) = self.reports.lock() {
            reports.entry(report.url.clone()).or_insert(report);
        }
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

/// All files of one log kind as one table (`bids` or `imps`).
#[derive(Debug)]
pub struct RawLogTable {
    schema: SchemaRef,
    files: Vec<InputFile>,
    log: Arc<IngestLog>,
}

impl RawLogTable {
    pub fn new(kind: LogKind, files: Vec<InputFile>, log: Arc<IngestLog>) -> Self {
        RawLogTable {
            schema: schema_of(kind),
            files,
            log,
        }
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
        let projected = Arc::new(self.schema.project(&columns)?);
        let partitions = self
            .files
            .iter()
            .map(|file| {
                Arc::new(LogFilePartition {
                    file: file.clone(),
                    columns: columns.clone(),
                    schema: Arc::clone(&projected),
                    log: Arc::clone(&self.log),
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        Ok(Arc::new(StreamingTableExec::try_new(
            projected,
            partitions,
            None,
            Vec::new(),
            false,
            limit,
        )?))
    }
}

#[derive(Debug)]
struct LogFilePartition {
    file: InputFile,
    columns: Vec<usize>,
    schema: SchemaRef,
    log: Arc<IngestLog>,
}

impl PartitionStream for LogFilePartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let mut builder = RecordBatchReceiverStreamBuilder::new(Arc::clone(&self.schema), 4);
        let tx = builder.tx();
        let file = self.file.clone();
        let columns = self.columns.clone();
        let schema = Arc::clone(&self.schema);
        let log = Arc::clone(&self.log);
        let handle = tokio::runtime::Handle::current();
        builder.spawn_blocking(move || {
            let emit = |batch: RecordBatch| tx.blocking_send(Ok(batch)).is_ok();
            read_file(&handle, &file, &columns, &schema, &log, emit)
        });
        builder.build()
    }
}

fn external(message: String) -> DataFusionError {
    DataFusionError::External(message.into())
}

/// Opens an input through its object store. Local stores hand back the file itself, remote
/// ones a byte stream, read here through a bridge on this blocking thread.
fn open(handle: &tokio::runtime::Handle, file: &InputFile) -> DfResult<Box<dyn BufRead + Send>> {
    let result = handle
        .block_on(file.store.get(&file.path))
        .map_err(|e| external(format!("cannot open {}: {e}", file.url)))?;
    let raw: Box<dyn Read + Send> = match result.payload {
        GetResultPayload::File(f, _) => Box::new(f),
        GetResultPayload::Stream(stream) => {
            let stream = stream.map_err(std::io::Error::other);
            let reader = tokio_util::io::StreamReader::new(stream);
            Box::new(tokio_util::io::SyncIoBridge::new_with_handle(
                reader,
                handle.clone(),
            ))
        }
    };
    let decoded: Box<dyn Read + Send> =
        match Compression::from_name(&file.url) {
            Compression::None => raw,
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
                BufReader::with_capacity(1 << 20, raw),
            )),
            Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(
                BufReader::with_capacity(1 << 20, raw),
            )),
        };
    Ok(Box::new(BufReader::with_capacity(1 << 20, decoded)))
}

/// Reads one line without its `\n`; `Ok(false)` at end of input.
fn next_line(reader: &mut dyn BufRead, buf: &mut Vec<u8>, url: &str) -> DfResult<bool> {
    buf.clear();
    let n = reader
        .read_until(b'\n', buf)
        .map_err(|e| external(format!("cannot read {url}: {e} (is the file complete and its compression matching its extension?)")))?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    Ok(true)
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

fn read_file(
    handle: &tokio::runtime::Handle,
    file: &InputFile,
    columns: &[usize],
    schema: &SchemaRef,
    log: &IngestLog,
    mut emit: impl FnMut(RecordBatch) -> bool,
) -> DfResult<()> {
    let counting = log.claim(&file.url);
    let mut reader = open(handle, file)?;
    let mut head: Vec<Vec<u8>> = Vec::new();
    let mut buf = Vec::with_capacity(1024);
    while head.len() < SNIFF_LINES && next_line(&mut *reader, &mut buf, &file.url)? {
        head.push(buf.clone());
    }
    if head.iter().all(|l| l.iter().all(u8::is_ascii_whitespace)) {
        return Err(external(format!(
            "{} holds no log lines; an empty day cannot be used, remove it from the input or regenerate it",
            file.url
        )));
    }
    let (kind_name, layouts) = match file.kind {
        LogKind::Bid => ("bid", "19 or 21"),
        LogKind::Imp => ("impression", "22 or 24 or more"),
    };
    let layout = file.kind.sniff(head.iter().map(Vec::as_slice)).ok_or_else(|| {
        external(format!("no line among the first {} of {} has a known {kind_name} layout ({layouts} tab-separated fields); is it an iPinYou {kind_name} log?", head.len(), file.url))
    })?;
    let line_reader = LineReader::new(layout);
    let report = FileReport {
        url: file.url.clone(),
        kind: file.kind,
        compression: Compression::from_name(&file.url),
        layout: layout.name(),
        lines: 0,
        accepted: 0,
        rejected: 0,
        rejected_by_reason: BTreeMap::new(),
        rows_with_extra_columns_dropped: 0,
    };
    let mut batch = BatchBuilder::new(columns, schema);
    let mut lines = Lines {
        file,
        reader: line_reader,
        log,
        counting,
        report,
    };
    for line in &head {
        lines.process(line, &mut batch)?;
    }
    drop(head);
    loop {
        if batch.rows >= BATCH_ROWS && !emit(batch.take()?) {
            // the consumer hung up (a LIMIT, or the query failed elsewhere): stop quietly
            return Ok(());
        }
        if !next_line(&mut *reader, &mut buf, &file.url)? {
            break;
        }
        lines.process(&buf, &mut batch)?;
    }
    if batch.rows > 0 && !emit(batch.take()?) {
        return Ok(());
    }
    if counting {
        log.finish(lines.report);
    }
    Ok(())
}

struct Lines<'a> {
    file: &'a InputFile,
    reader: LineReader,
    log: &'a IngestLog,
    counting: bool,
    report: FileReport,
}

impl Lines<'_> {
    fn process(&mut self, line: &[u8], batch: &mut BatchBuilder<'_>) -> DfResult<()> {
        self.report.lines += 1;
        let parsed = match self.file.kind {
            LogKind::Bid => self.reader.parse_bid(line).map(|p| {
                batch.push(&p.row.fields);
                p.dropped_columns
            }),
            LogKind::Imp => self.reader.parse_imp(line).map(|p| {
                batch.push(&p.row.fields);
                p.dropped_columns
            }),
        };
        match parsed {
            Ok(dropped) => {
                self.report.accepted += 1;
                self.report.rows_with_extra_columns_dropped += u64::from(dropped > 0);
            }
            Err(reason) => {
                self.report.rejected += 1;
                *self.report.rejected_by_reason.entry(reason).or_default() += 1;
                if self.counting {
                    self.log
                        .reject(&self.file.url, self.report.lines, reason, line)
                        .map_err(|e| {
                            external(format!(
                                "cannot record a rejected line of {}: {e}",
                                self.file.url
                            ))
                        })?;
                }
            }
        }
        Ok(())
    }
}

/// Counts of several files' reports by kind, for the manifest.
pub fn totals(reports: &[FileReport], kind: LogKind) -> HashMap<&'static str, u64> {
    let mut t = HashMap::new();
    for r in reports.iter().filter(|r| r.kind == kind) {
        *t.entry("lines").or_default() += r.lines;
        *t.entry("accepted").or_default() += r.accepted;
        *t.entry("rejected").or_default() += r.rejected;
    }
    t
}
