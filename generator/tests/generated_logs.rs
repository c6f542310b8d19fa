//! Generated logs read back through the shared reader: layouts, counts, determinism.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicU64;

use rtb_features::layout::LogKind;
use rtb_features::reader::{LineReader, non_null};
use rtb_features::{ImpLayout, RejectReason};
use rtb_loggen::{DaySummary, GeneratorConfig, World, generate_day};

fn generate(config: &GeneratorConfig) -> (Vec<u8>, Vec<u8>, DaySummary) {
    let world = World::new(config);
    let (mut bids, mut imps) = (Vec::new(), Vec::new());
    let summary = generate_day(
        &world,
        config,
        config.start,
        &mut bids,
        &mut imps,
        &AtomicU64::new(0),
    )
    .expect("generates");
    (bids, imps, summary)
}

fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    assert_eq!(lines.pop(), Some(&b""[..]), "files end with a newline");
    lines
}

fn config(bids: u64) -> GeneratorConfig {
    GeneratorConfig {
        bids_per_day: bids,
        domains: 2_000,
        ..GeneratorConfig::default()
    }
}

#[test]
fn every_line_has_the_real_layout() {
    for (layout, imp_fields) in [(ImpLayout::Season23, 24), (ImpLayout::Season1, 22)] {
        let cfg = GeneratorConfig {
            imp_layout: layout,
            ..config(20_000)
        };
        let (bids, imps, summary) = generate(&cfg);
        let (bids, imps) = (lines(&bids), lines(&imps));
        assert_eq!(bids.len() as u64, summary.bid_lines);
        assert_eq!(imps.len() as u64, summary.imp_lines);
        let bid_layout = LogKind::Bid
            .sniff(bids.iter().copied())
            .expect("bid layout");
        let imp_layout = LogKind::Imp
            .sniff(imps.iter().copied())
            .expect("imp layout");
        assert_eq!(bid_layout.total_fields(), 21);
        assert_eq!(imp_layout.total_fields(), imp_fields);
        let (bid_reader, imp_reader) = (LineReader::new(bid_layout), LineReader::new(imp_layout));
        let mut previous = None;
        for line in &bids {
            let row = bid_reader.parse_bid(line).expect("valid bid line").row;
            let id = row.get("BidID").expect("id");
            assert!(
                id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                "{id}"
            );
            assert!(row.get("IP").expect("ip").ends_with(".*"));
            let exchange: u8 = row
                .get("AdExchange")
                .expect("exchange")
                .parse()
                .expect("number");
            assert!((1..=4).contains(&exchange));
            // rows come in time order, as real logs do
            assert!(previous <= Some(row.timestamp));
            previous = Some(row.timestamp);
        }
        for line in &imps {
            let row = imp_reader.parse_imp(line).expect("valid imp line").row;
            assert_eq!(row.get("LogType"), Some("1"));
            let paying: u32 = row
                .get("PayingPrice")
                .expect("price")
                .parse()
                .expect("number");
            let bidding: u32 = row
                .get("BiddingPrice")
                .expect("price")
                .parse()
                .expect("number");
            let floor: u32 = row
                .get("AdSlotFloorPrice")
                .expect("price")
                .parse()
                .expect("number");
            assert!(
                floor <= paying && paying <= bidding,
                "{floor} {paying} {bidding}"
            );
        }
    }
}

#[test]
fn same_seed_same_bytes() {
    let (a_bids, a_imps, _) = generate(&config(5_000));
    let (b_bids, b_imps, _) = generate(&config(5_000));
    let (c_bids, _, _) = generate(&GeneratorConfig {
        seed: 7,
        ..config(5_000)
    });
    assert!(a_bids == b_bids && a_imps == b_imps);
    assert_ne!(a_bids, c_bids);
}

#[test]
fn malformed_lines_are_rejected_and_counted_by_kind() {
    let cfg = GeneratorConfig {
        malformed_fraction: 0.06,
        ..config(30_000)
    };
    let (bids, imps, summary) = generate(&cfg);
    for (bytes, kind, expected) in [
        (&bids, LogKind::Bid, &summary.malformed_bid_lines),
        (&imps, LogKind::Imp, &summary.malformed_imp_lines),
    ] {
        let lines = lines(bytes);
        let reader = LineReader::new(kind.sniff(lines.iter().copied()).expect("layout"));
        let mut rejected: BTreeMap<RejectReason, u64> = BTreeMap::new();
        let mut accepted = 0u64;
        for line in &lines {
            let result = match kind {
                LogKind::Bid => reader.parse_bid(line).map(|_| ()),
                LogKind::Imp => reader.parse_imp(line).map(|_| ()),
            };
            match result {
                Ok(()) => accepted += 1,
                Err(reason) => *rejected.entry(reason).or_default() += 1,
            }
        }
        assert_eq!(&rejected, expected, "{kind:?}");
        assert_eq!(
            accepted + rejected.values().sum::<u64>(),
            lines.len() as u64
        );
        for reason in RejectReason::ALL {
            assert!(
                rejected.get(&reason).copied().unwrap_or(0) > 0,
                "{kind:?} has no {reason}"
            );
        }
    }
}

/// The labels the generator promises are the ones a correct join finds.
#[test]
fn promised_labels_match_a_reference_join() {
    let cfg = GeneratorConfig {
        malformed_fraction: 0.02,
        ..config(40_000)
    };
    let (bids, imps, summary) = generate(&cfg);
    let (bids, imps) = (lines(&bids), lines(&imps));
    let bid_reader = LineReader::new(LogKind::Bid.sniff(bids.iter().copied()).expect("layout"));
    let imp_reader = LineReader::new(LogKind::Imp.sniff(imps.iter().copied()).expect("layout"));
    let valid_bids: HashSet<String> = bids
        .iter()
        .filter_map(|l| bid_reader.parse_bid(l).ok())
        .filter_map(|p| p.row.get("BidID").map(str::to_owned))
        .collect();
    let won: HashSet<String> = imps
        .iter()
        .filter_map(|l| imp_reader.parse_imp(l).ok())
        .filter(|p| non_null(p.row.get("PayingPrice")).is_some())
        .filter_map(|p| p.row.get("BidID").map(str::to_owned))
        .collect();
    assert_eq!(valid_bids.len() as u64, summary.valid_bids);
    assert_eq!(
        valid_bids.intersection(&won).count() as u64,
        summary.labelled_wins
    );
    let rate = summary.labelled_wins as f64 / summary.valid_bids as f64;
    assert!(
        (0.01..0.10).contains(&rate),
        "a few percent of bids win, got {rate}"
    );
    assert!(summary.duplicate_bid_lines > 0 && summary.duplicate_imp_lines > 0);
    let auc = summary.oracle.auc().expect("both classes");
    assert!((0.65..0.95).contains(&auc), "oracle auc {auc}");
}

#[test]
fn traffic_and_domains_are_skewed_like_real_logs() {
    let (bids, _, _) = generate(&config(50_000));
    let bids = lines(&bids);
    let reader = LineReader::new(LogKind::Bid.sniff(bids.iter().copied()).expect("layout"));
    let mut per_hour = [0u32; 24];
    let mut domains: HashMap<String, u32> = HashMap::new();
    for line in &bids {
        let row = reader.parse_bid(line).expect("valid").row;
        per_hour[usize::from(row.timestamp.hour)] += 1;
        *domains
            .entry(row.get("Domain").expect("domain").to_owned())
            .or_default() += 1;
    }
    assert!(
        per_hour[21] > 3 * per_hour[4],
        "evening peak over night trough: {per_hour:?}"
    );
    let mut counts: Vec<u32> = domains.values().copied().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    assert!(
        counts.len() > 1_000,
        "many distinct domains: {}",
        counts.len()
    );
    assert!(
        counts[0] > 20 * counts[counts.len() / 2],
        "a head of popular domains"
    );
}
