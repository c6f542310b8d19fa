//! A generated day end to end through the ETL: every count the generator promises is the count
//! the ETL reports, with compressed input, malformed lines and a small memory pool.

use rtb_etl::generate::{CompressionArg, GenerateArgs, ImpLayoutArg};
use rtb_etl::run::{RunArgs, run};

use crate::support::run_args;

fn generate_args(out: &str, compression: CompressionArg, imp_layout: ImpLayoutArg) -> GenerateArgs {
    GenerateArgs {
        out: out.into(),
        start_date: "2013-03-11".parse().expect("date"),
        days: 2,
        bids_per_day: 30_000,
        seed: 7,
        imp_layout,
        compression,
        malformed_fraction: 0.01,
        odd_fraction: 0.0,
        duplicate_bid_fraction: 0.005,
        duplicate_imp_fraction: 0.01,
        domains: 5_000,
        threads: Some(2),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_days_keep_every_count() {
    for (compression, layout) in [
        (CompressionArg::Bzip2, ImpLayoutArg::Season1),
        (CompressionArg::Gzip, ImpLayoutArg::Season23),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw = dir.path().join("raw").to_string_lossy().into_owned();
        let report = rtb_etl::generate::run(&generate_args(&raw, compression, layout))
            .await
            .expect("generates");
        let out = dir.path().join("features").to_string_lossy().into_owned();
        let args = run_args(&raw, &out);
        let manifest = run(&args).await.expect("job runs").manifest;
        let rows = &manifest.rows;
        let malformed =
            |f: fn(
                &rtb_loggen::DaySummary,
            ) -> &std::collections::BTreeMap<rtb_features::RejectReason, u64>|
             -> u64 { report.days.iter().map(|d| f(d).values().sum::<u64>()).sum() };
        assert_eq!(
            rows["bids_read"],
            report.days.iter().map(|d| d.bid_lines).sum::<u64>()
        );
        assert_eq!(
            rows["imps_read"],
            report.days.iter().map(|d| d.imp_lines).sum::<u64>()
        );
        assert_eq!(rows["bids_rejected"], malformed(|d| &d.malformed_bid_lines));
        assert_eq!(rows["imps_rejected"], malformed(|d| &d.malformed_imp_lines));
        assert_eq!(
            rows["bids_read"],
            rows["bids_accepted"] + rows["bids_rejected"]
        );
        assert_eq!(
            rows["transformed"], report.valid_bids,
            "one row per valid bid"
        );
        let positives: u64 = manifest.splits.values().map(|s| s.label_1).sum();
        assert_eq!(
            positives, report.labelled_wins,
            "every valid win is labelled"
        );
        let total: u64 = manifest.splits.values().map(|s| s.rows).sum();
        assert_eq!(total, rows["transformed"]);
        let train_share = manifest.splits["train"].rows as f64 / total as f64;
        assert!((0.78..0.82).contains(&train_share), "{train_share}");
        for input in &manifest.inputs {
            assert!(input.layout.starts_with(match input.kind {
                rtb_features::LogKind::Bid => "bid/season23",
                rtb_features::LogKind::Imp => match layout {
                    ImpLayoutArg::Season1 => "imp/season1",
                    ImpLayoutArg::Season23 => "imp/season23",
                },
            }));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_empty_input_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("raw");
    std::fs::create_dir_all(&raw).expect("mkdir");
    let args = |out: &str| RunArgs {
        partitions: Some(1),
        ..run_args(&raw.to_string_lossy(), out)
    };
    let out = dir.path().join("out").to_string_lossy().into_owned();
    let err = format!(
        "{:#}",
        run(&args(&out)).await.err().expect("no input fails")
    );
    assert!(
        err.contains("no bid log matching") && err.contains(raw.to_str().expect("utf8")),
        "{err}"
    );

    std::fs::write(raw.join("bid.20130311.txt"), "").expect("write");
    std::fs::write(raw.join("imp.20130311.txt"), "").expect("write");
    let err = format!(
        "{:#}",
        run(&args(&out)).await.err().expect("empty day fails")
    );
    assert!(
        err.contains(".20130311.txt") && err.contains("no log lines"),
        "{err}"
    );
    assert!(
        !dir.path().join("out/latest.json").exists(),
        "a failed run commits nothing"
    );
    let leftovers: Vec<_> = walk(&dir.path().join("out"));
    assert!(
        leftovers.iter().all(|p| !p.contains("manifest.json")),
        "{leftovers:?}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// The runner evaluates the request step twice (the inference data, then the features): a
/// step that samples with `random()`, or reads a view that stamps `now()`, gives each
/// evaluation other rows. The job must be refused when it is planned, say why, and commit
/// nothing, rather than publish features that are not the requests it wrote. The same calls
/// before `transformed`, which is written once, are fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_step_that_samples_at_random_is_refused_not_miscounted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("raw").to_string_lossy().into_owned();
    rtb_etl::generate::run(&crate::support::one_day(&raw, 20_000, 11))
        .await
        .expect("generates");
    let kit = rtb_etl::job::BID_FILTERING;
    let from = "label, PayingPrice\nFROM transformed;";
    assert!(
        kit.contains(from),
        "the shipped job's requests step changed"
    );
    let sampled = kit.replace(
        from,
        "label, PayingPrice\nFROM transformed WHERE random() < 0.5;",
    );
    let stamped = kit
        .replace(
            "-- step: inference_requests",
            "-- step: stamped\nSELECT *, CAST(now() AS VARCHAR) AS seen FROM transformed;\n\n-- step: inference_requests",
        )
        .replace(from, "label, PayingPrice\nFROM stamped;");
    let early = kit.replace(
        "FROM bids\nGROUP BY",
        "FROM bids\nWHERE random() < 2\nGROUP BY",
    );
    assert_ne!(early, kit, "the shipped job's bids step changed");
    for (name, job_text, call) in [
        ("sampled", sampled, Some("random()")),
        ("stamped", stamped, Some("now()")),
        ("early", early, None),
    ] {
        let job = dir.path().join(format!("{name}.sql"));
        std::fs::write(&job, job_text).expect("job");
        let out = dir.path().join(name);
        let args = RunArgs {
            job: Some(job.to_string_lossy().into_owned()),
            ..run_args(&raw, &out.to_string_lossy())
        };
        let result = run(&args).await;
        let Some(call) = call else {
            result.expect("a random() before transformed runs once and is fine");
            continue;
        };
        let err = format!("{:#}", result.err().expect("a changing request step fails"));
        assert!(
            err.contains(&format!("calls {call}")) && err.contains("transformed step"),
            "{name}: {err}"
        );
        assert!(
            !out.join("latest.json").exists(),
            "{name}: nothing is committed"
        );
        let leftovers = walk(&out);
        assert!(
            leftovers
                .iter()
                .all(|p| !p.contains("manifest.json") && !p.contains("processed")),
            "{name}: {leftovers:?}"
        );
    }
}
