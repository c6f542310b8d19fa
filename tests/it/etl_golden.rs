//! The bid-filtering job on a hand-made input whose every output row was worked out by hand:
//! StringIndexer ties and nulls, duplicate collapse, dow/hour, the join, every malformed-line
//! kind, season-1 and extra-column layouts, and split stability across partition counts.

use std::fmt::Write;

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::{JsonReadOptions, ParquetReadOptions, SessionContext};
use rtb_etl::run::{RunArgs, RunOutcome, run};
use rtb_features::FeatureVocabulary;

use crate::support::{assert_golden, repo_root, run_args};

pub fn args(out: &str, partitions: usize) -> RunArgs {
    let input = repo_root().join("tests/golden/bid-filtering/input");
    RunArgs {
        partitions: Some(partitions),
        parameter_store: format!("{out}/parameter-store.json"),
        ..run_args(&input.to_string_lossy(), out)
    }
}

async fn table(ctx: &SessionContext, sql: &str) -> String {
    let batches = ctx
        .sql(sql)
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    pretty_format_batches(&batches)
        .expect("formats")
        .to_string()
}

/// Everything a run committed, rendered deterministically (no run id, no timings).
async fn render(outcome: &RunOutcome) -> String {
    let m = &outcome.manifest;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# inputs (file, layout, lines, accepted, rejected by reason, rows with extra columns dropped)"
    );
    for f in &m.inputs {
        let name = f.url.rsplit('/').next().unwrap_or_default();
        let reasons: Vec<String> = f
            .rejected_by_reason
            .iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect();
        let _ = writeln!(
            s,
            "{name} {} lines={} accepted={} rejected={} [{}] extra_dropped={}",
            f.layout,
            f.lines,
            f.accepted,
            f.rejected,
            reasons.join(" "),
            f.rows_with_extra_columns_dropped
        );
        assert_eq!(f.lines, f.accepted + f.rejected, "counts add up for {name}");
    }
    let _ = writeln!(s, "# rows");
    for (k, v) in &m.rows {
        let _ = writeln!(s, "{k} {v}");
    }
    let _ = writeln!(s, "# splits");
    for (k, v) in &m.splits {
        let _ = writeln!(
            s,
            "{k} rows={} label_0={} label_1={}",
            v.rows, v.label_0, v.label_1
        );
    }
    let mut config = datafusion::prelude::SessionConfig::new();
    config.options_mut().sql_parser.enable_ident_normalization = false;
    let ctx = SessionContext::new_with_config(config);
    let vocab_url = &m.outputs["vocabulary"];
    let vocab_path = vocab_url.strip_prefix("file://").expect("local run");
    let vocabulary =
        FeatureVocabulary::from_json(&std::fs::read_to_string(vocab_path).expect("vocabulary"))
            .expect("valid vocabulary");
    assert_eq!(vocabulary.version, m.vocabulary.version);
    let _ = writeln!(s, "# vocabulary (labels in index order; unknown = count)");
    for (column, indexer) in vocabulary.columns() {
        let _ = writeln!(
            s,
            "{column}: {:?} unknown={}",
            indexer.labels(),
            indexer.unknown_index()
        );
    }
    ctx.register_parquet(
        "transformed",
        &m.outputs["transformed"],
        ParquetReadOptions::default(),
    )
    .await
    .expect("transformed");
    let _ = writeln!(s, "# transformed");
    s.push_str(&table(&ctx, "SELECT BidID, dow, hour, RegionID, CityID, Domain, AdvertiserID, BiddingPrice, PayingPrice, label, UserAgent IS NULL AS no_agent FROM transformed ORDER BY BidID").await);
    let _ = writeln!(s, "\n# features by split");
    for split in ["train", "valid", "test"] {
        ctx.register_parquet(split, &m.outputs[split], ParquetReadOptions::default())
            .await
            .expect("split");
    }
    s.push_str(&table(&ctx, "SELECT 'train' AS split, * FROM train UNION ALL SELECT 'valid', * FROM valid UNION ALL SELECT 'test', * FROM test ORDER BY \"bidId\"").await);
    let _ = writeln!(s, "\n# inference requests");
    ctx.register_json(
        "requests",
        &m.outputs["inference_data"],
        JsonReadOptions::default().file_extension(".json"),
    )
    .await
    .expect("requests");
    s.push_str(&table(&ctx, "SELECT \"bidId\", \"dayOfWeek\", hour, \"regionId\", \"cityId\", \"domainId\", \"advertiserId\", \"biddingPrice\" FROM requests ORDER BY \"bidId\"").await);
    let _ = writeln!(s, "\n# feature contract");
    let contract_path = m.outputs["contract"]
        .strip_prefix("file://")
        .expect("local run");
    let contract = rtb_features::FeatureContract::from_json(
        &std::fs::read_to_string(contract_path).expect("contract"),
    )
    .expect("valid contract");
    assert_eq!(contract.version, m.contract_version);
    assert_eq!(
        contract,
        rtb_features::contract::bid_filtering(&vocabulary.version),
        "the kit contract rtb-features publishes for tests is the one the kit job writes"
    );
    for field in &contract.request {
        let _ = writeln!(s, "request {} {}", field.name, field.field_type.as_str());
    }
    for feature in &contract.features {
        let _ = writeln!(s, "feature {} = {}", feature.name, feature.expr);
    }
    let _ = writeln!(s, "\n# rejects");
    let rejects_dir = m.outputs["rejects"]
        .strip_prefix("file://")
        .expect("local run");
    let mut text = String::new();
    for entry in std::fs::read_dir(rejects_dir).expect("rejects folder") {
        let path = entry.expect("entry").path();
        if path.to_string_lossy().ends_with(".rejects.jsonl") {
            text.push_str(&std::fs::read_to_string(path).expect("rejects"));
        }
    }
    let mut rejects: Vec<String> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            let file = v["file"]
                .as_str()
                .unwrap_or_default()
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            format!(
                "{file}:{} {}",
                v["line"],
                v["reason"].as_str().unwrap_or_default()
            )
        })
        .collect();
    rejects.sort();
    for r in rejects {
        let _ = writeln!(s, "{r}");
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bid_filtering_job_matches_the_hand_checked_golden_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rendered = Vec::new();
    let mut splits = None;
    // whole files on one and on three partitions, then every file cut into 200-byte ranges:
    // shorter than a line, so some parts own no line and most lines start in one part and end
    // in another
    for (partitions, range_size) in [(1, "128MiB"), (3, "128MiB"), (2, "200")] {
        let out = dir.path().join(format!("out-{partitions}"));
        let outcome = run(&RunArgs {
            range_size: Some(range_size.into()),
            ..args(out.to_str().expect("utf8"), partitions)
        })
        .await
        .expect("job runs");
        if range_size == "200" {
            assert!(outcome.manifest.inputs.iter().all(|f| f.parts > 1));
        }
        splits.get_or_insert(outcome.manifest.splits.clone());
        rendered.push(render(&outcome).await);
    }
    assert_eq!(
        rendered[0], rendered[1],
        "outputs must not depend on the partition count"
    );
    assert_eq!(
        rendered[0], rendered[2],
        "outputs must not depend on how the files are cut into ranges"
    );
    let store = std::fs::read_to_string(dir.path().join("out-1/parameter-store.json"))
        .expect("parameter store written");
    let store: serde_json::Value = serde_json::from_str(&store).expect("json");
    let train = store["/aik/output_train"]
        .as_str()
        .expect("train location published");
    assert!(
        train.contains("/runs/") && train.ends_with("/processed/features/split=train/"),
        "{train}"
    );
    // docs/jobs.md: a reader that knows Hive-style folders sees one table with a split column
    let features = train.trim_end_matches("split=train/");
    let ctx = SessionContext::new();
    let options = ParquetReadOptions::default().table_partition_cols(vec![(
        "split".into(),
        datafusion::arrow::datatypes::DataType::Utf8,
    )]);
    ctx.register_parquet("features", features, options)
        .await
        .expect("the features folder reads as one table");
    let counted = ctx
        .sql("SELECT split, count(*) AS n, sum(label) AS wins FROM features GROUP BY split ORDER BY split")
        .await
        .expect("plans")
        .collect()
        .await
        .expect("reads");
    let expected: String = splits
        .expect("a run")
        .iter()
        .map(|(name, c)| format!("{name} {} {}\n", c.rows, c.label_1))
        .collect();
    let mut found = String::new();
    for batch in &counted {
        for row in 0..batch.num_rows() {
            let cell = |i: usize| {
                datafusion::arrow::util::display::array_value_to_string(batch.column(i), row)
                    .expect("displays")
            };
            let _ = writeln!(found, "{} {} {}", cell(0), cell(1), cell(2));
        }
    }
    assert_eq!(
        found, expected,
        "per-split rows and wins, read as one table"
    );
    assert!(
        store["/aik/pipelineModelArtifactPath"]
            .as_str()
            .is_some_and(|v| v.ends_with("vocabulary.json"))
    );
    assert_golden("bid-filtering/expected.txt", &rendered[0]);
}

/// The worked example of docs/jobs.md runs and adds its two features.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_example_job_adds_its_features() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = args(dir.path().to_str().expect("utf8"), 2);
    args.job = Some(
        repo_root()
            .join("etl/jobs/examples/bid-filtering-exchange.sql")
            .to_string_lossy()
            .into_owned(),
    );
    let outcome = run(&args).await.expect("example job runs");
    let m = &outcome.manifest;
    assert_eq!(
        m.vocabulary.sizes.get("AdExchange"),
        Some(&1),
        "the golden input uses one exchange"
    );
    let ctx = SessionContext::new();
    let df = ctx
        .read_parquet(m.outputs["train"].as_str(), ParquetReadOptions::default())
        .await
        .expect("train");
    let columns: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        columns,
        [
            "label",
            "dow",
            "hour",
            "IndexAdvertiserID",
            "IndexDomain",
            "IndexRegionID",
            "IndexCityID",
            "device_type_id",
            "IndexAdExchange",
            "floor_price",
            "PayingPrice",
            "bidId"
        ]
    );
}

/// A job the scorer could not serve is refused before any data is read, indeed before the
/// inputs are listed: the input folder does not exist, and the error is about the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unservable_job_is_refused_before_reading_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("no-such-folder");
    let kit = rtb_etl::job::BID_FILTERING;
    let head = &kit[..kit.find("-- step: features").expect("features step")];
    let cases = [
        (
            "SELECT count(\"hour\") AS n FROM inference_requests",
            "feature n cannot be served: it uses the aggregate count()",
        ),
        (
            "SELECT random() AS r FROM inference_requests",
            "feature r cannot be served: random() is not a function of the request alone",
        ),
        (
            "SELECT \"domainId\" AS d FROM inference_requests",
            "feature d cannot be served: it is Utf8",
        ),
        (
            "SELECT encode('Dom', \"domainId\") AS x FROM inference_requests",
            "\"Dom\" is not a vocabulary column",
        ),
        (
            "SELECT label AS l FROM inference_requests",
            "feature l cannot be served",
        ),
        (
            "SELECT \"hour\" AS h FROM inference_requests WHERE \"hour\" > 3",
            "no WHERE, GROUP BY, JOIN",
        ),
        (
            "SELECT \"hour\" + 1 FROM inference_requests",
            "name the feature",
        ),
    ];
    for (features, says) in cases {
        let job = dir.path().join("job.sql");
        std::fs::write(&job, format!("{head}-- step: features\n{features};\n")).expect("job");
        let out = dir.path().join("out");
        let mut args = args(out.to_str().expect("utf8"), 2);
        args.input = raw.to_string_lossy().into_owned();
        args.job = Some(job.to_string_lossy().into_owned());
        let err = run(&args)
            .await
            .err()
            .unwrap_or_else(|| panic!("{features} was accepted"));
        let message = format!("{err:#}");
        assert!(message.contains(says), "{features}: {message}");
        let runs = std::fs::read_dir(out.join("runs")).map_or(0, |d| d.count());
        assert_eq!(runs, 0, "nothing is left of a refused run");
    }
    // a job without a request step is refused up front too
    let job = dir.path().join("no-requests.sql");
    std::fs::write(
        &job,
        &kit[..kit.find("-- step: inference_requests").expect("step")],
    )
    .expect("job");
    let mut args = args(dir.path().join("out2").to_str().expect("utf8"), 2);
    args.input = raw.to_string_lossy().into_owned();
    args.job = Some(job.to_string_lossy().into_owned());
    let err = run(&args).await.err().expect("refused");
    assert!(
        format!("{err:#}").contains("no `-- step: inference_requests`"),
        "{err:#}"
    );
}
