//! Input files read in many small byte ranges, plain, bzip2- and gzip-compressed, give exactly what
//! whole plain files give: every output row, every per-file count, every rejected line with its
//! line number, in both reading modes. The day carries malformed and odd lines, CRLF line ends and a last line without a
//! newline, so ranges begin and end inside lines of every kind.

use std::path::Path;

use rtb_etl::generate::GenerateArgs;
use rtb_etl::run::{RunArgs, run};
use rtb_features::Dialect;

use crate::support::{gzip_members, one_day, run_args, sorted_rows};

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
                    name_of(v["file"].as_str().unwrap_or_default()),
                    v["line"],
                    v["reason"],
                    v["text"]
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

/// The day's files, bzip2-compressed in 100 kB blocks (level 1) so a range holds few of them.
fn compress(raw: &Path, into: &Path) {
    use std::io::Write;
    std::fs::create_dir_all(into).expect("bz2 folder");
    for entry in std::fs::read_dir(raw).expect("raw folder").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("bid.") || name.starts_with("imp.")) {
            continue;
        }
        let file = std::fs::File::create(into.join(format!("{name}.bz2"))).expect("create");
        let mut encoder = bzip2::write::BzEncoder::new(file, bzip2::Compression::new(1));
        encoder
            .write_all(&std::fs::read(entry.path()).expect("read"))
            .expect("compress");
        encoder.finish().expect("finish");
    }
}

fn size_of(folder: &Path, prefix: &str) -> u64 {
    std::fs::read_dir(folder)
        .expect("folder")
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .and_then(|e| e.metadata().ok())
        .map(|m| m.len())
        .expect("a file")
}

/// Per input file (by name, compression aside): lines, accepted, rejected and their details.
fn counts(m: &rtb_etl::run::Manifest) -> Vec<(String, u64, u64, u64, String)> {
    m.inputs
        .iter()
        .map(|f| {
            assert_eq!(f.lines, f.accepted + f.rejected, "{f:?}");
            (
                name_of(&f.url),
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
}

fn name_of(url: &str) -> String {
    let name = url.rsplit('/').next().unwrap_or_default();
    [".bz2", ".gz"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(name)
        .to_owned()
}

fn assert_same(whole: &rtb_etl::run::Manifest, cut: &rtb_etl::run::Manifest, label: &str) {
    assert!(whole.inputs.iter().all(|f| f.parts == 1), "{label}");
    assert_eq!(counts(whole), counts(cut), "{label}");
    assert!(
        whole.inputs.iter().any(|f| f.rejected > 0),
        "{label}: the day has rejects to compare"
    );
    assert_eq!(whole.rows, cut.rows, "{label}");
    assert_eq!(whole.splits, cut.splits, "{label}");
    assert_eq!(whole.vocabulary, cut.vocabulary, "{label}");
    assert_eq!(
        rejects(local(&whole.outputs["rejects"])),
        rejects(local(&cut.outputs["rejects"])),
        "{label}: the same rejected lines at the same line numbers"
    );
    for output in ["train", "valid", "test", "transformed"] {
        let (a, b) = (
            sorted_rows(local(&whole.outputs[output])),
            sorted_rows(local(&cut.outputs[output])),
        );
        assert!(!a.is_empty(), "{output}");
        assert!(
            a == b,
            "{label}: {output} rows differ ({} vs {})",
            a.len(),
            b.len()
        );
    }
}

#[test]
fn small_ranges_read_exactly_what_whole_files_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("raw");
    generate(&raw);
    let bz2 = dir.path().join("raw-bz2");
    compress(&raw, &bz2);
    let gz = dir.path().join("raw-gz");
    gzip_members(&raw, &gz);
    let bid_size = size_of(&raw, "bid.");
    let bz2_size = size_of(&bz2, "bid.");
    let gz_size = size_of(&gz, "bid.");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    for dialect in [Dialect::Strict, Dialect::Spark] {
        let outcome = |raw: &Path, range_size: &str| {
            let out = dir
                .path()
                .join(format!(
                    "out-{dialect:?}-{range_size}-{}",
                    raw.file_name().unwrap_or_default().to_string_lossy()
                ))
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
        let whole = outcome(&raw, "0");
        // read in 64 KiB ranges (16 KiB when compressed), in more parts than `size / range`,
        // and equal to the whole plain files
        let ranged = |dir: &Path, size: u64, range: u64, what: &str| {
            let cut = outcome(dir, "64KiB");
            let parts: u32 = cut.inputs.iter().map(|f| f.parts).sum();
            assert!(
                u64::from(parts) > size / range,
                "{dialect:?}: {parts} {what} parts"
            );
            assert_same(&whole, &cut, &format!("{dialect:?} {what}"));
        };
        ranged(&raw, bid_size, 64 << 10, "plain");
        // bzip2 ranges of 16 KiB: most hold no block start, many lines cross blocks
        ranged(&bz2, bz2_size, 16 << 10, "bzip2");
        assert_same(
            &whole,
            &outcome(&bz2, "0"),
            &format!("{dialect:?} whole bzip2"),
        );
        // gzip ranges of 16 KiB over members of about 20 KiB: a member starts in most ranges,
        // and every line at a member's edge is read by the range its member starts in
        ranged(&gz, gz_size, 16 << 10, "gzip members");
    }
}

/// Files other tools compressed: pbzip2 writes one bzip2 stream per 900 kB block, lbzip2 one
/// stream of blocks it encoded in parallel, bgzip gzip members of 64 KiB, gzip one member.
/// Read in 16 KiB ranges, each equals the plain file.
#[test]
fn parallel_compressors_files_read_in_ranges_equal_the_plain_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("raw");
    generate(&raw);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let outcome = |raw: &Path, range_size: &str| {
        let name = raw.file_name().unwrap_or_default().to_string_lossy();
        let out = dir.path().join(format!("out-{name}"));
        runtime
            .block_on(run(&RunArgs {
                range_size: Some(range_size.into()),
                ..run_args(&raw.to_string_lossy(), &out.to_string_lossy())
            }))
            .expect("runs")
            .manifest
    };
    let whole = outcome(&raw, "0");
    for (tool, args, ext) in [
        ("pbzip2", ["-p2", "-9", "-c"], "bz2"),
        ("lbzip2", ["-n2", "-9", "-c"], "bz2"),
        // BGZF: members of at most 64 KiB, each header carrying its size in an extra field
        ("bgzip", ["-@2", "-l9", "-c"], "gz"),
        // one member: the first range decodes it all, the others find no member and read nothing
        ("gzip", ["-9", "-c", "-n"], "gz"),
    ] {
        let into = dir.path().join(tool);
        std::fs::create_dir_all(&into).expect("folder");
        for entry in std::fs::read_dir(&raw).expect("raw").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("bid.") || name.starts_with("imp.")) {
                continue;
            }
            let file = std::fs::File::create(into.join(format!("{name}.{ext}"))).expect("create");
            let status = std::process::Command::new(tool)
                .args(args)
                .arg(entry.path())
                .stdout(file)
                .status()
                .unwrap_or_else(|e| panic!("{tool} did not start ({e}); run scripts/setup.sh"));
            assert!(status.success(), "{tool} failed");
        }
        let cut = outcome(&into, "64KiB");
        assert!(
            cut.inputs.iter().any(|f| f.parts > 10),
            "{tool}: {:?}",
            cut.inputs
        );
        assert_same(&whole, &cut, tool);
    }
}
