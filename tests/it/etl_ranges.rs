//! Plain input files read in many small byte ranges give exactly what whole files give: every
//! output row, every per-file count, every rejected line with its line number, in both reading
//! modes. The day carries malformed and odd lines, CRLF line ends and a last line without a
//! newline, so ranges begin and end inside lines of every kind.

use std::path::Path;

use rtb_etl::generate::GenerateArgs;
use rtb_etl::run::{RunArgs, run};
use rtb_features::Dialect;

use crate::support::{one_day, run_args, sorted_rows};

fn generate(raw: &Path) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime
        .block_on(rtb_etl::generate::run(&GenerateArgs {
            malformed_fraction: 0.01,
            odd_fraction: 0.02,
            ..one_day(&raw.to_string_lossy(), 20_000, 23)
        }))
        .expect("generates");
    // every 7th line ends in CRLF, and the files' last lines have no newline
    for entry in std::fs::read_dir(raw).expect("raw folder") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if !(name.starts_with("bid.") || name.starts_with("imp.")) {
            continue;
        }
        let text = std::fs::read(&path).expect("read");
        let mut out = Vec::with_capacity(text.len() + text.len() / 100);
        for (i, line) in text.split(|b| *b == b'\n').enumerate() {
            if i > 0 {
                out.extend_from_slice(if i % 7 == 0 { b"\r\n" } else { b"\n" });
            }
            out.extend_from_slice(line);
        }
        while out.last() == Some(&b'\n') || out.last() == Some(&b'\r') {
            out.pop();
        }
        std::fs::write(&path, out).expect("write");
    }
}

/// The run's rejected lines as `file:line reason text`, sorted.
fn rejects(folder: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(folder).expect("ingest folder") {
        let path = entry.expect("entry").path();
        let name = path.to_string_lossy().into_owned();
        assert!(
            !name.contains(".part-") || name.ends_with(".report.json"),
            "{name} left behind"
        );
        if name.ends_with(".rejects.jsonl") {
            for line in std::fs::read_to_string(&path).expect("rejects").lines() {
                let v: serde_json::Value = serde_json::from_str(line).expect("json");
                lines.push(format!(
                    "{}:{} {} {}",
                    v["file"], v["line"], v["reason"], v["text"]
                ));
            }
        }
    }
    lines.sort();
    lines
}

fn local(url: &str) -> &Path {
    Path::new(url.strip_prefix("file://").expect("a local run"))
}

#[test]
fn small_ranges_read_exactly_what_whole_files_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("raw");
    generate(&raw);
    let bid_size = std::fs::read_dir(&raw)
        .expect("raw")
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("bid."))
        .and_then(|e| e.metadata().ok())
        .map(|m| m.len())
        .expect("a bid file");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    for dialect in [Dialect::Strict, Dialect::Spark] {
        let outcome = |range_size: &str| {
            let out = dir
                .path()
                .join(format!("out-{dialect:?}-{range_size}"))
                .to_string_lossy()
                .into_owned();
            runtime
                .block_on(run(&RunArgs {
                    read_as: dialect,
                    range_size: Some(range_size.into()),
                    ..run_args(&raw.to_string_lossy(), &out)
                }))
                .expect("runs")
                .manifest
        };
        let whole = outcome("0");
        let cut = outcome("64KiB");
        let parts: u32 = cut.inputs.iter().map(|f| f.parts).sum();
        assert!(
            u64::from(parts) > bid_size / (64 << 10),
            "{dialect:?}: {parts} parts"
        );
        assert!(whole.inputs.iter().all(|f| f.parts == 1));
        let counts = |m: &rtb_etl::run::Manifest| -> Vec<(String, u64, u64, u64, String)> {
            m.inputs
                .iter()
                .map(|f| {
                    assert_eq!(f.lines, f.accepted + f.rejected, "{f:?}");
                    (
                        f.url.rsplit('/').next().unwrap_or_default().to_owned(),
                        f.lines,
                        f.accepted,
                        f.rejected,
                        format!(
                            "{:?} extra {} short {} prices {}",
                            f.rejected_by_reason,
                            f.rows_with_extra_columns_dropped,
                            f.rows_short_padded,
                            f.prices_unparsed
                        ),
                    )
                })
                .collect()
        };
        assert_eq!(counts(&whole), counts(&cut), "{dialect:?}");
        assert!(
            whole.inputs.iter().any(|f| f.rejected > 0),
            "{dialect:?}: the day has rejects to compare"
        );
        assert_eq!(whole.rows, cut.rows, "{dialect:?}");
        assert_eq!(whole.splits, cut.splits, "{dialect:?}");
        assert_eq!(whole.vocabulary, cut.vocabulary, "{dialect:?}");
        assert_eq!(
            rejects(local(&whole.outputs["rejects"])),
            rejects(local(&cut.outputs["rejects"])),
            "{dialect:?}: the same rejected lines at the same line numbers"
        );
        for output in ["train", "valid", "test", "transformed"] {
            let (a, b) = (
                sorted_rows(local(&whole.outputs[output])),
                sorted_rows(local(&cut.outputs[output])),
            );
            assert!(!a.is_empty(), "{output}");
            assert!(
                a == b,
                "{dialect:?}: {output} rows differ ({} vs {})",
                a.len(),
                b.len()
            );
        }
    }
}
