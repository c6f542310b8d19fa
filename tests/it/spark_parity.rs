//! `--compat spark` reproduces the original kit's features, proven against Spark itself: PySpark
//! 3.5 `local[2]` runs the original notebook's logic (`bench/spark_parity.py`) on a generated
//! day with every odd kind planted, our ETL runs the leaky job (the original's queries) in Spark
//! mode on the same files, and the two must agree on the vocabularies (labels and order per
//! column), the joined rows and the encoded feature rows (as multisets), the labels and the
//! device type of every user agent.

use std::collections::BTreeMap;
use std::process::Command;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use rtb_etl::generate::GenerateArgs;
use rtb_etl::run::{RunArgs, run};
use rtb_features::{DeviceType, Dialect, FeatureVocabulary, device_type};
use serde_json::Value;

use crate::support::{one_day, repo_root, run_args};

type Row = Vec<Option<String>>;

fn path_of(url: &str) -> std::path::PathBuf {
    url::Url::parse(url)
        .expect("output url")
        .to_file_path()
        .expect("a local output")
}

/// Every row of a Parquet folder, each column cast to text by the query.
async fn text_rows(folder: &str, select: &str) -> Vec<Row> {
    let ctx = SessionContext::new();
    ctx.register_parquet("t", folder, ParquetReadOptions::default())
        .await
        .expect("parquet output");
    let batches = ctx
        .sql(&format!("SELECT {select} FROM t"))
        .await
        .expect("query")
        .collect()
        .await
        .expect("rows");
    let mut rows = Vec::new();
    for batch in batches {
        let columns: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| {
                datafusion::arrow::compute::cast(c, &datafusion::arrow::datatypes::DataType::Utf8)
                    .expect("text")
            })
            .collect();
        for i in 0..batch.num_rows() {
            rows.push(
                columns
                    .iter()
                    .map(|c| {
                        let c = c.as_string::<i32>();
                        (!c.is_null(i)).then(|| c.value(i).to_owned())
                    })
                    .collect(),
            );
        }
    }
    rows.sort();
    rows
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The first rows where two sorted multisets differ, for a readable failure.
fn differences(ours: &[Row], theirs: &[Row]) -> Vec<String> {
    let mut count: BTreeMap<&Row, i64> = BTreeMap::new();
    for r in ours {
        *count.entry(r).or_default() += 1;
    }
    for r in theirs {
        *count.entry(r).or_default() -= 1;
    }
    count
        .iter()
        .filter(|(_, n)| **n != 0)
        .take(8)
        .map(|(r, n)| {
            let side = if *n > 0 { "only ours" } else { "only spark" };
            format!("{side} x{}: {r:?}", n.abs())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spark_mode_reproduces_the_original_spark_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("raw").to_string_lossy().into_owned();
    rtb_etl::generate::run(&GenerateArgs {
        malformed_fraction: 0.005,
        odd_fraction: 0.03,
        domains: 30_000,
        threads: Some(1),
        ..one_day(&raw, 100_000, 11)
    })
    .await
    .expect("generate");
    let summary: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("raw/generator-summary.json")).expect("summary"),
    )
    .expect("json");
    let planted = |side: &str| -> usize {
        summary["days"][0][side]
            .as_object()
            .map_or(0, serde_json::Map::len)
    };
    assert_eq!(planted("odd_bid_lines"), 13, "every odd kind in the bids");
    assert!(
        planted("odd_imp_lines") >= 10,
        "odd kinds in the impressions"
    );

    let m = compare_with_spark(dir.path(), &raw, "bid.*", "imp.*", 100_000).await;
    for f in &m.inputs {
        assert!(f.rows_short_padded > 0, "short rows padded: {f:?}");
    }
}

/// The real iPinYou sample lines of three seasons (`../shared/data`): season-1 impressions are
/// two columns short of the original's schema and a published copy has two extra.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spark_mode_reads_the_real_samples_as_spark_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let samples = crate::support::shared_data().join("ipinyou-samples");
    compare_with_spark(
        dir.path(),
        &samples.to_string_lossy(),
        "season*_bid_*.txt",
        "season*_imp_*.txt",
        1,
    )
    .await;
}

/// Runs the leaky job in Spark mode and the original notebook on PySpark over the same files,
/// and requires the same vocabularies, joined rows, feature rows and device types.
async fn compare_with_spark(
    work: &std::path::Path,
    raw: &str,
    bids: &str,
    imps: &str,
    min_rows: usize,
) -> rtb_features::EtlManifest {
    let out = work.join("out").to_string_lossy().into_owned();
    let outcome = run(&RunArgs {
        job: Some(
            repo_root()
                .join("etl/jobs/bid-filtering-leaky.sql")
                .to_string_lossy()
                .into_owned(),
        ),
        read_as: Dialect::Spark,
        bids: bids.into(),
        imps: imps.into(),
        ..run_args(raw, &out)
    })
    .await
    .expect("our etl in spark mode");
    let m = &outcome.manifest;
    for f in &m.inputs {
        assert_eq!(f.lines, f.accepted + f.rejected, "{}", f.url);
    }

    let spark_file = work.join("spark.json");
    let script = repo_root().join("bench/spark_parity.py");
    let status = Command::new("python3")
        .arg(&script)
        .arg(raw)
        .arg(&spark_file)
        .arg(bids)
        .arg(imps)
        .status()
        .expect("python3 runs");
    assert!(
        status.success(),
        "{} failed: PySpark 3.5, numpy, woothee 1.10.1 and Java 17 are needed (scripts/setup.sh installs them)",
        script.display()
    );
    let spark: Value =
        serde_json::from_slice(&std::fs::read(&spark_file).expect("spark output")).expect("json");

    // vocabularies: labels and their order, per column
    let vocabulary = FeatureVocabulary::from_json(
        &std::fs::read_to_string(path_of(&m.outputs["vocabulary"])).expect("vocabulary"),
    )
    .expect("vocabulary json");
    for (column, labels) in spark["vocabulary"].as_object().expect("vocabulary") {
        let theirs: Vec<&str> = labels
            .as_array()
            .expect("labels")
            .iter()
            .map(|l| l.as_str().expect("label"))
            .collect();
        let ours = vocabulary.get(column).expect("our column").labels();
        let first = ours
            .iter()
            .zip(&theirs)
            .position(|(o, t)| o != t)
            .unwrap_or(ours.len().min(theirs.len()));
        assert!(
            ours.len() == theirs.len() && first == ours.len(),
            "{column}: {} labels ours, {} spark; first difference at {first}: ours {:?}, spark {:?}",
            ours.len(),
            theirs.len(),
            ours.get(first),
            theirs.get(first)
        );
    }

    let spark_rows = spark["rows"].as_array().expect("rows");
    let spark_part = |columns: std::ops::Range<usize>| -> Vec<Row> {
        let mut rows: Vec<Row> = spark_rows
            .iter()
            .map(|r| {
                r.as_array().expect("row")[columns.clone()]
                    .iter()
                    .map(text)
                    .collect()
            })
            .collect();
        rows.sort();
        rows
    };

    // the joined rows, label included
    let ours = text_rows(
        &m.outputs["transformed"],
        r#""BidID", dow, hour, "RegionID", "CityID", "Domain", "AdvertiserID", "BiddingPrice", "PayingPrice", "UserAgent", label"#,
    )
    .await;
    let theirs = spark_part(0..11);
    assert!(ours.len() >= min_rows, "rows: {}", ours.len());
    let diff = differences(&ours, &theirs);
    assert!(diff.is_empty(), "joined rows differ:\n{}", diff.join("\n"));

    // the encoded features (device type aside: the original draws it at random when unknown)
    let mut ours = Vec::new();
    for split in ["train", "valid", "test"] {
        if m.splits.get(split).is_none_or(|c| c.rows == 0) {
            // an empty split writes no file
            continue;
        }
        ours.extend(
            text_rows(
                &m.outputs[split],
                r#""bidId", label, dow, hour, "IndexAdvertiserID", "IndexDomain", "IndexRegionID", "IndexCityID""#,
            )
            .await,
        );
    }
    ours.sort();
    let mut theirs: Vec<Row> = spark_rows
        .iter()
        .map(|r| {
            let r = r.as_array().expect("row");
            [0, 10, 1, 2, 11, 12, 13, 14]
                .iter()
                .map(|&i| text(&r[i]))
                .collect()
        })
        .collect();
    theirs.sort();
    let diff = differences(&ours, &theirs);
    assert!(diff.is_empty(), "feature rows differ:\n{}", diff.join("\n"));

    // the device type of every agent the joined rows carry
    let agents = spark["device_types"].as_array().expect("device types");
    assert!(!agents.is_empty(), "agents");
    let differ: Vec<String> = agents
        .iter()
        .filter_map(|a| {
            let ua = a[0].as_str().expect("agent");
            let ours = device_type(Some(ua).filter(|u| !u.is_empty()));
            let same = match a[1].as_u64() {
                Some(id) => u64::from(ours.id()) == id,
                None => ours == DeviceType::Unknown,
            };
            (!same).then(|| format!("{ua:?}: spark {}, ours {ours:?}", a[1]))
        })
        .collect();
    assert!(
        differ.is_empty(),
        "device types differ:\n{}",
        differ.join("\n")
    );
    outcome.manifest
}
