//! Loading the bid requests to replay: the JSON lines the ETL writes under
//! `runs/<id>/pipeline-model/inference-data/` (one object per line, the fields of the job's
//! request, as its feature contract lists them), from a local folder or file, `file://` or
//! `s3://`. A line is replayed as it is: the simulator needs no knowledge of the job.
//!
//! Files are read in name order and streamed, so loading the first 20,000 requests of a large
//! output reads only the first megabytes. Bad input never stops the load: an unreadable file and
//! a malformed line are counted (the first few named in the report) and skipped, and the counts
//! add up (see [`LoadReport`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use rtb_storage::Location;
use serde::Serialize;
use tracing::{info, warn};

use crate::error::{Result, SimError};

/// Problems named in the report, beyond which they are only counted.
const EXAMPLES: usize = 5;

/// What loading read and what it made of it.
///
/// `files_listed = files_read + files_unreadable + files_skipped + files_not_needed` and
/// `lines = loaded + malformed + blank`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadReport {
    /// The location the requests came from, as a URL.
    pub location: String,
    pub files_listed: u64,
    /// Files read to their end, or until enough requests were loaded.
    pub files_read: u64,
    /// Files that could not be opened, or failed part way (their lines read until then count).
    pub files_unreadable: u64,
    /// Marker and hidden files (`_SUCCESS`, `.crc`): not request data.
    pub files_skipped: u64,
    /// Files not opened because enough requests were loaded before them.
    pub files_not_needed: u64,
    /// Lines examined.
    pub lines: u64,
    pub blank: u64,
    /// Lines that are not a valid request (not a JSON object).
    pub malformed: u64,
    pub loaded: u64,
    /// The first few problems, `file:line: reason` or `file: reason`.
    pub problems: Vec<String>,
}

impl LoadReport {
    fn problem(&mut self, text: String) {
        if self.problems.len() < EXAMPLES {
            warn!(problem = %text, "bad inference data");
            self.problems.push(text);
        }
    }
}

/// One request: a JSON object of request fields.
pub type Request = serde_json::Map<String, serde_json::Value>;

/// The requests loaded, in file and line order, and how loading went.
#[derive(Debug, Clone)]
pub struct LoadedRequests {
    pub requests: Vec<Request>,
    pub report: LoadReport,
}

/// One line to a request: `Ok(None)` for a blank line, `Err(reason)` for a malformed one.
pub fn parse_line(line: &[u8]) -> Result<Option<Request>, String> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Ok(None);
    }
    match serde_json::from_slice::<serde_json::Value>(line).map_err(|e| e.to_string())? {
        serde_json::Value::Object(request) => Ok(Some(request)),
        _ => Err("not a json object of request fields".into()),
    }
}

/// Collects requests up to a limit and counts every line it is given.
#[derive(Debug)]
pub struct Loader {
    limit: usize,
    requests: Vec<Request>,
    report: LoadReport,
}

impl Loader {
    pub fn new(location: &str, limit: usize) -> Self {
        Loader {
            limit,
            requests: Vec::with_capacity(limit.min(1 << 20)),
            report: LoadReport {
                location: location.to_owned(),
                ..LoadReport::default()
            },
        }
    }

    pub fn full(&self) -> bool {
        self.requests.len() >= self.limit
    }

    /// Takes one line of `file`; false once the limit is reached.
    pub fn line(&mut self, file: &str, number: u64, line: &[u8]) -> bool {
        if self.full() {
            return false;
        }
        self.report.lines += 1;
        match parse_line(line) {
            Ok(Some(request)) => {
                self.requests.push(request);
                self.report.loaded += 1;
            }
            Ok(None) => self.report.blank += 1,
            Err(reason) => {
                self.report.malformed += 1;
                self.report.problem(format!("{file}:{number}: {reason}"));
            }
        }
        !self.full()
    }

    /// Takes a whole text (tests, small files).
    pub fn text(&mut self, file: &str, text: &[u8]) {
        let mut lines = LineSplitter::default();
        lines.push(text);
        while let Some((number, line)) = lines.next_line() {
            if !self.line(file, number, &line) {
                return;
            }
        }
        if let Some((number, line)) = lines.finish() {
            self.line(file, number, &line);
        }
    }

    pub fn finish(self) -> LoadedRequests {
        LoadedRequests {
            requests: self.requests,
            report: self.report,
        }
    }
}

/// Splits a byte stream into lines across chunk boundaries.
#[derive(Debug, Default)]
struct LineSplitter {
    pending: Vec<u8>,
    start: usize,
    number: u64,
}

impl LineSplitter {
    fn push(&mut self, chunk: &[u8]) {
        if self.start > 0 {
            self.pending.drain(..self.start);
            self.start = 0;
        }
        self.pending.extend_from_slice(chunk);
    }

    fn next_line(&mut self) -> Option<(u64, Vec<u8>)> {
        let rest = &self.pending[self.start..];
        let end = rest.iter().position(|&b| b == b'\n')?;
        let line = rest[..end].to_vec();
        self.start += end + 1;
        self.number += 1;
        Some((self.number, line))
    }

    /// The last line, when the text does not end with a newline.
    fn finish(&mut self) -> Option<(u64, Vec<u8>)> {
        let rest = &self.pending[self.start..];
        if rest.is_empty() {
            return None;
        }
        let line = rest.to_vec();
        self.start = self.pending.len();
        self.number += 1;
        Some((self.number, line))
    }
}

/// Streams one object into `loader`; an error leaves what was loaded before it.
async fn read_object(
    store: &Arc<dyn ObjectStore>,
    path: &ObjectPath,
    name: &str,
    loader: &mut Loader,
) -> Result<(), String> {
    let result = store.get(path).await.map_err(|e| e.to_string())?;
    let mut stream = result.into_stream();
    let mut lines = LineSplitter::default();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        lines.push(&chunk);
        while let Some((number, line)) = lines.next_line() {
            if !loader.line(name, number, &line) {
                return Ok(());
            }
        }
    }
    if let Some((number, line)) = lines.finish() {
        loader.line(name, number, &line);
    }
    Ok(())
}

/// Reads `names` (relative to `location`) in order until `loader` is full.
pub async fn read_objects(location: &Location, names: &[String], loader: &mut Loader) {
    loader.report.files_listed += names.len() as u64;
    for name in names {
        let base = name.rsplit('/').next().unwrap_or(name);
        if base.starts_with('_') || base.starts_with('.') {
            loader.report.files_skipped += 1;
            continue;
        }
        if loader.full() {
            loader.report.files_not_needed += 1;
            continue;
        }
        let url = location.child_url(name);
        match read_object(location.store(), &location.path(name), &url, loader).await {
            Ok(()) => loader.report.files_read += 1,
            Err(reason) => {
                loader.report.files_unreadable += 1;
                loader.report.problem(format!("{url}: {reason}"));
            }
        }
    }
}

enum Resolved {
    /// A local folder: every file under it.
    LocalDir(PathBuf),
    /// A local file.
    LocalFile(PathBuf),
    /// An object store URL: a prefix, or one object.
    Remote(String),
}

fn resolve(location: &str, parameter: &'static str) -> Result<Resolved> {
    let path = if location.starts_with("file:") {
        let url = url::Url::parse(location).map_err(|e| {
            SimError::BadConfig(format!("inference data {location:?} is not a url ({e})"))
        })?;
        url.to_file_path().map_err(|()| {
            SimError::BadConfig(format!(
                "inference data {location:?}: a file:// url needs an absolute local path"
            ))
        })?
    } else if location.contains("://") {
        return Ok(Resolved::Remote(location.to_owned()));
    } else {
        PathBuf::from(location)
    };
    // a reader must not create what it reads (opening a local Location creates its folder)
    if path.is_dir() {
        Ok(Resolved::LocalDir(path))
    } else if path.is_file() {
        Ok(Resolved::LocalFile(path))
    } else {
        Err(SimError::MissingInferenceData {
            location: location.to_owned(),
            name: parameter,
        })
    }
}

fn local(path: &Path) -> Result<Location> {
    Ok(Location::parse(&path.to_string_lossy())?)
}

/// Loads up to `limit` requests from `location` (a local folder or file, `file://` or `s3://`;
/// an `s3://` URL may name a prefix or one object).
pub async fn load(location: &str, limit: usize) -> Result<LoadedRequests> {
    let started = std::time::Instant::now();
    let mut loader;
    match resolve(location, rtb_params::names::INFERENCE_DATA)? {
        Resolved::LocalDir(dir) => {
            let at = local(&dir)?;
            loader = Loader::new(at.url().as_str(), limit);
            let names = at.list("").await?;
            read_objects(&at, &names, &mut loader).await;
        }
        Resolved::LocalFile(file) => {
            let parent = file.parent().unwrap_or(Path::new("/"));
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let at = local(parent)?;
            loader = Loader::new(&at.child_url(&name), limit);
            read_objects(&at, &[name], &mut loader).await;
        }
        Resolved::Remote(url) => {
            let at = Location::parse(&url)?;
            loader = Loader::new(at.url().as_str(), limit);
            let names = at.list("").await?;
            if names.is_empty() && !url.ends_with('/') {
                // not a prefix: perhaps one object
                if let Some((parent, name)) = url.rsplit_once('/') {
                    let parent = Location::parse(parent)?;
                    read_objects(&parent, &[name.to_owned()], &mut loader).await;
                }
            } else {
                read_objects(&at, &names, &mut loader).await;
            }
        }
    }
    let loaded = loader.finish();
    let report = &loaded.report;
    info!(
        location = %report.location,
        loaded = report.loaded,
        files = report.files_read,
        unreadable = report.files_unreadable,
        lines = report.lines,
        malformed = report.malformed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "bid requests loaded"
    );
    if loaded.requests.is_empty() {
        return Err(SimError::no_requests(&report.location, report));
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"bidId":"b1","dayOfWeek":2,"hour":7,"regionId":"344","cityId":"350","domainId":"d","advertiserId":"3386","userAgent":"Mozilla/5.0","biddingPrice":227,"payingPrice":87}"#;

    fn good(id: usize) -> String {
        GOOD.replace("\"b1\"", &format!("\"b{id}\""))
    }

    #[test]
    fn lines_parse_validate_and_explain() {
        let request = parse_line(GOOD.as_bytes())
            .expect("valid")
            .expect("a request");
        assert_eq!(request["bidId"], "b1");
        assert_eq!(request["payingPrice"], 87);
        assert_eq!(parse_line(b"  \r").expect("blank"), None);
        // the ETL leaves out null columns; the scorer reads them as null
        let sparse = parse_line(br#"{"bidId":"x","dayOfWeek":1,"hour":0}"#)
            .expect("valid")
            .expect("request");
        assert!(!sparse.contains_key("userAgent"));
        for (line, says) in [
            ("{\"bidId\":", "EOF"),
            ("not json", "expected"),
            ("[1, 2]", "not a json object"),
        ] {
            let reason = parse_line(line.as_bytes()).expect_err(line);
            assert!(reason.contains(says), "{line}: {reason}");
        }
    }

    #[test]
    fn bad_lines_are_counted_and_the_counts_add_up() {
        let mut loader = Loader::new("mem://", 100);
        let text = format!(
            "{}\n\nnot json\n{}\r\n[\"x\"]\n{}",
            good(1),
            good(2),
            good(3)
        );
        loader.text("part-0.json", text.as_bytes());
        let loaded = loader.finish();
        let r = &loaded.report;
        assert_eq!(loaded.requests.len(), 3);
        assert_eq!(
            loaded
                .requests
                .iter()
                .map(|r| r["bidId"].as_str().unwrap_or_default())
                .collect::<Vec<_>>(),
            ["b1", "b2", "b3"],
            "file order, the unterminated last line included"
        );
        assert_eq!((r.lines, r.loaded, r.blank, r.malformed), (6, 3, 1, 2));
        assert_eq!(r.lines, r.loaded + r.blank + r.malformed);
        assert_eq!(r.problems.len(), 2);
        assert!(
            r.problems[0].starts_with("part-0.json:3: "),
            "{:?}",
            r.problems
        );
        assert!(r.problems[1].starts_with("part-0.json:5: not a json object"));
    }

    #[test]
    fn loading_stops_at_the_limit_and_names_only_the_first_problems() {
        let mut loader = Loader::new("mem://", 2);
        let mut text = "bad\n".repeat(10);
        text.push_str(&format!("{}\n{}\n{}\n", good(1), good(2), good(3)));
        loader.text("f", text.as_bytes());
        assert!(loader.full());
        assert!(!loader.line("g", 1, good(4).as_bytes()), "full");
        let loaded = loader.finish();
        let r = &loaded.report;
        assert_eq!((r.loaded, r.malformed, r.lines), (2, 10, 12));
        assert_eq!(r.problems.len(), EXAMPLES);
    }

    #[test]
    fn lines_split_across_chunks_are_joined() {
        let mut lines = LineSplitter::default();
        let text = format!("{}\n{}\n{}", good(1), good(2), good(3));
        let mut got = Vec::new();
        for chunk in text.as_bytes().chunks(7) {
            lines.push(chunk);
            while let Some((n, line)) = lines.next_line() {
                got.push((n, line));
            }
        }
        got.extend(lines.finish());
        assert_eq!(got.len(), 3);
        assert_eq!(got[2].0, 3);
        assert_eq!(got[1].1, good(2).as_bytes());
    }

    #[tokio::test]
    async fn a_folder_with_bad_files_loads_what_it_can() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("inference-data");
        std::fs::create_dir_all(data.join("nested")).expect("folder");
        std::fs::write(data.join("a.json"), format!("{}\ngarbage\n", good(1))).expect("a");
        std::fs::write(data.join("_SUCCESS"), "").expect("marker");
        std::fs::write(data.join("nested/b.json"), format!("{}\n", good(2))).expect("b");
        std::fs::write(data.join("c.json"), [0xff, 0xfe, b'\n', b'{']).expect("binary");
        let loaded = load(data.to_str().expect("utf8"), 10).await.expect("loads");
        let r = &loaded.report;
        assert_eq!(r.loaded, 2);
        assert_eq!((r.files_listed, r.files_read, r.files_skipped), (4, 3, 1));
        assert_eq!((r.lines, r.malformed), (5, 3));
        assert_eq!(
            r.files_listed,
            r.files_read + r.files_unreadable + r.files_skipped + r.files_not_needed
        );

        // a file that disappears between listing and reading is unreadable, not fatal
        let at = Location::parse(data.to_str().expect("utf8")).expect("location");
        let mut loader = Loader::new("x", 10);
        read_objects(
            &at,
            &["a.json".to_owned(), "gone.json".to_owned()],
            &mut loader,
        )
        .await;
        let loaded = loader.finish();
        assert_eq!(loaded.report.files_unreadable, 1);
        assert_eq!(loaded.report.files_read, 1);
        assert!(
            loaded
                .report
                .problems
                .iter()
                .any(|p| p.contains("gone.json")),
            "{:?}",
            loaded.report.problems
        );

        // one file, and a limit that leaves files unopened
        let one = load(data.join("nested/b.json").to_str().expect("utf8"), 10)
            .await
            .expect("one file");
        assert_eq!(one.requests[0]["bidId"], "b2");
        let first = load(data.to_str().expect("utf8"), 1).await.expect("limit");
        assert_eq!(first.report.files_not_needed, 2);
        assert_eq!(first.report.files_read, 1);
    }

    #[tokio::test]
    async fn nothing_loadable_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("bad.json"), "nope\n").expect("write");
        let err = load(dir.path().to_str().expect("utf8"), 10)
            .await
            .expect_err("nothing to replay");
        assert!(err.to_string().contains("1 lines (1 malformed)"), "{err}");
        let missing = dir.path().join("missing");
        let err = load(missing.to_str().expect("utf8"), 10)
            .await
            .expect_err("missing");
        assert!(
            matches!(err, SimError::MissingInferenceData { .. }),
            "{err}"
        );
        assert!(!missing.exists(), "a reader creates nothing");
    }
}
