//! Lines real logs carry, hand-made here (not the generator's), through every shipped job, read
//! strictly and as Spark reads them: no value aborts a run, and every count adds up.

use std::io::Write;

use rtb_etl::run::{RunArgs, run};
use rtb_features::Dialect;

use crate::support::{repo_root, run_args};

/// A season-2/3 bid line (21 columns) with the fields the jobs read.
fn bid(
    id: &str,
    ts: &str,
    ua: &str,
    region: &str,
    domain: &str,
    floor: &str,
    price: &str,
) -> String {
    [
        id, ts, "VhNull", ua, "1.2.3.*", region, "1", "1", domain, "url", "null", "slot", "300",
        "250", "1", "0", floor, "creative", price, "1458", "null",
    ]
    .join("\t")
}

/// A season-2/3 impression line (24 columns) paying `paying`.
fn imp(id: &str, ts: &str, paying: &str) -> String {
    [
        id,
        ts,
        "1",
        "VhNull",
        "Mozilla/5.0",
        "1.2.3.*",
        "1",
        "1",
        "1",
        "d1",
        "url",
        "null",
        "slot",
        "300",
        "250",
        "1",
        "0",
        "0",
        "creative",
        "300",
        paying,
        "null",
        "1458",
        "null",
    ]
    .join("\t")
}

fn write(path: &std::path::Path, lines: &[Vec<u8>]) {
    let mut f = std::fs::File::create(path).expect("create");
    for l in lines {
        f.write_all(l).expect("write");
        f.write_all(b"\n").expect("write");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_lines_never_stop_a_shipped_job_and_counts_add_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    let ie = "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.2; Trident/4.0)";
    let ts = |s: u32| format!("20130606{:02}0000{:03}", s % 24, s);
    let mut bids: Vec<Vec<u8>> = Vec::new();
    let mut imps: Vec<Vec<u8>> = Vec::new();
    // enough ordinary bids for every split
    for i in 0..60u32 {
        let id = format!("{i:032x}");
        bids.push(
            bid(
                &id,
                &ts(i),
                ie,
                &(i % 5).to_string(),
                &format!("d{}", i % 3),
                "0",
                "300",
            )
            .into_bytes(),
        );
        if i % 4 == 0 {
            imps.push(imp(&id, &ts(i), "80").into_bytes());
        }
    }
    let odd = [
        // won at a price no integer holds
        bid(
            "a0000000000000000000000000000001",
            &ts(1),
            ie,
            "1",
            "d1",
            "0",
            "300",
        ),
        // an empty key
        bid("", &ts(2), ie, "1", "d1", "0", "300"),
        // `null` literals and empty fields where the jobs read categories
        bid(
            "a0000000000000000000000000000003",
            &ts(3),
            "null",
            "null",
            "",
            "null",
            "null",
        ),
        // quotes, a leading quote, an agent of a Windows woothee does not know
        bid(
            "a0000000000000000000000000000004",
            &ts(4),
            "Mozilla/5.0 \"quoted\" (Windows XP)",
            "\"1",
            "\"d\tx",
            "0",
            "300",
        ),
        // numbers that overflow
        bid(
            "a0000000000000000000000000000005",
            &ts(5),
            ie,
            "1",
            "d1",
            "99999999999999999999",
            "-99999999999999999999",
        ),
        // signs, zeros and spaces in numbers
        bid(
            "a0000000000000000000000000000006",
            &ts(6),
            ie,
            "1",
            "d1",
            "+5",
            " 77",
        ),
    ];
    bids.extend(odd.iter().map(|l| l.clone().into_bytes()));
    imps.push(
        imp(
            "a0000000000000000000000000000001",
            &ts(1),
            "99999999999999999999",
        )
        .into_bytes(),
    );
    imps.push(imp("a0000000000000000000000000000006", &ts(6), "+5").into_bytes());
    imps.push(imp("a0000000000000000000000000000005", &ts(5), "0077").into_bytes());
    // short, long, blank, bad timestamp, invalid utf-8
    bids.push(b"short\trow".to_vec());
    bids.push(
        format!(
            "{}\textra\tcolumns\there\tand\tmore",
            bid(
                "a0000000000000000000000000000007",
                &ts(7),
                ie,
                "1",
                "d1",
                "0",
                "300"
            )
        )
        .into_bytes(),
    );
    bids.push(Vec::new());
    bids.push(
        bid(
            "a0000000000000000000000000000008",
            "2013-06-06",
            ie,
            "1",
            "d1",
            "0",
            "300",
        )
        .into_bytes(),
    );
    let mut bad = bid(
        "a0000000000000000000000000000009",
        &ts(9),
        "X",
        "1",
        "d1",
        "0",
        "300",
    )
    .into_bytes();
    bad[40] = 0xff;
    bids.push(bad);
    imps.push(imp("b0000000000000000000000000000000", &ts(1), "80").into_bytes());
    write(&input.join("bid.20130606.txt"), &bids);
    write(&input.join("imp.20130606.txt"), &imps);

    let jobs = [
        "bid-filtering.sql",
        "bid-filtering-leaky.sql",
        "bid-filtering-plus.sql",
    ];
    for (job, read_as) in jobs
        .iter()
        .flat_map(|j| [(*j, Dialect::Strict), (*j, Dialect::Spark)])
    {
        let out = dir.path().join(format!("out-{job}-{read_as}"));
        let out = out.to_string_lossy().into_owned();
        let args = RunArgs {
            job: Some(
                repo_root()
                    .join("etl/jobs")
                    .join(job)
                    .to_string_lossy()
                    .into_owned(),
            ),
            read_as,
            ..run_args(&input.to_string_lossy(), &out)
        };
        let job = format!("{job} read as {read_as}");
        let job = job.as_str();
        let outcome = run(&args)
            .await
            .unwrap_or_else(|e| panic!("{job}: odd lines stopped the job: {e:#}"));
        let m = &outcome.manifest;
        for f in &m.inputs {
            assert_eq!(f.lines, f.accepted + f.rejected, "{job}: {}", f.url);
            let by_reason: u64 = f.rejected_by_reason.values().sum();
            assert_eq!(by_reason, f.rejected, "{job}: {}", f.url);
        }
        let bid_file = m
            .inputs
            .iter()
            .find(|f| f.url.contains("bid."))
            .expect("bid report");
        assert_eq!(
            bid_file.lines,
            bids.len() as u64,
            "{job}: every line counted"
        );
        let split_rows: u64 = m.splits.values().map(|s| s.rows).sum();
        let labels: u64 = m.splits.values().map(|s| s.label_0 + s.label_1).sum();
        assert_eq!(split_rows, labels, "{job}: every row has a label");
        assert!(
            m.rows.get("features_null_key").copied().unwrap_or(0) >= 1,
            "{job}: the empty key is counted: {:?}",
            m.rows
        );
        // the default reader is strict: what it cannot read exactly it rejects, by reason;
        // Spark's skips the blank line and reads every other one somehow
        let rejects = match read_as {
            Dialect::Strict => {
                "{EmptyLine: 1, InvalidUtf8: 1, TooFewFields: 1, TooManyFields: 2, BadTimestamp: 1, NonNumericPrice: 3}"
            }
            Dialect::Spark => "{EmptyLine: 1}",
        };
        assert_eq!(
            format!("{:?}", bid_file.rejected_by_reason),
            rejects,
            "{job}"
        );
        assert_eq!(m.rows["features"], split_rows, "{job}");
        assert_eq!(m.rows["features"], m.rows["inference_requests"], "{job}");
        // strict: the 20-digit price is a win (the label) with no price, not an abort: 15
        // ordinary wins and that one. Spark's Long.parseLong refuses it (no price, no win) and
        // reads `+5` and `0077`: 17, as PySpark 3.5 counts on these files
        let wins: u64 = m.splits.values().map(|s| s.label_1).sum();
        let want = match read_as {
            Dialect::Strict => 16,
            Dialect::Spark => 17,
        };
        assert_eq!(wins, want, "{job}: {:?}", m.splits);
    }
}
