//! Generates iPinYou-format bid and impression logs.
//!
//! The real dataset cannot be downloaded in CI, so tests, demos and benchmarks run on logs with
//! exactly its layouts and value shapes, a known win model ([`signal`]) and optional malformed
//! lines of every kind the reader rejects. Same seed, same bytes.

pub mod catalog;
pub mod odd;
pub mod rng;
pub mod signal;

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{Datelike, NaiveDate};
pub use rtb_features::Compression;
use rtb_features::{DeviceType, ImpLayout, RejectReason};
use serde::Serialize;

use crate::catalog::{Region, push_base62, push_hex128};
use crate::odd::OddKind;
use crate::rng::{Rng, Weighted, mix};
use crate::signal::OracleAuc;

#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub seed: u64,
    pub start: NaiveDate,
    pub days: u32,
    pub bids_per_day: u64,
    pub imp_layout: ImpLayout,
    pub compression: Compression,
    /// Share of lines (bid and impression) replaced by a malformed line, kinds drawn evenly.
    pub malformed_fraction: f64,
    /// Share of lines (bid and impression) made odd ([`odd`]): lines Spark reads without
    /// complaint that the strict reader rejects or reads differently, kinds drawn evenly.
    pub odd_fraction: f64,
    /// Share of bid lines written twice, byte for byte.
    pub duplicate_bid_fraction: f64,
    /// Share of impression lines written twice, byte for byte.
    pub duplicate_imp_fraction: f64,
    pub domains: usize,
    pub domain_zipf_exponent: f64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 42,
            // the original kit's day: season 1, 2013-03-11
            start: NaiveDate::from_ymd_opt(2013, 3, 11).unwrap_or_default(),
            days: 1,
            bids_per_day: 100_000,
            imp_layout: ImpLayout::Season23,
            compression: Compression::None,
            malformed_fraction: 0.0,
            odd_fraction: 0.0,
            duplicate_bid_fraction: 0.005,
            duplicate_imp_fraction: 0.01,
            domains: 30_000,
            domain_zipf_exponent: 1.05,
        }
    }
}

impl GeneratorConfig {
    pub fn dates(&self) -> Vec<NaiveDate> {
        self.start.iter_days().take(self.days as usize).collect()
    }

    /// `bid.20130311.txt.bz2` style names, as in the real dataset.
    pub fn file_name(&self, kind: &str, date: NaiveDate) -> String {
        format!(
            "{kind}.{}.txt{}",
            date.format("%Y%m%d"),
            self.compression.extension()
        )
    }
}

/// What one day's files hold, so a reader of the logs can check its own counts against it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DaySummary {
    pub date: String,
    pub bid_file: String,
    pub imp_file: String,
    pub bid_lines: u64,
    pub imp_lines: u64,
    /// Extra identical copies written.
    pub duplicate_bid_lines: u64,
    pub duplicate_imp_lines: u64,
    pub malformed_bid_lines: BTreeMap<RejectReason, u64>,
    pub malformed_imp_lines: BTreeMap<RejectReason, u64>,
    /// Odd lines written; counted below as valid, since Spark reads every one.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub odd_bid_lines: BTreeMap<OddKind, u64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub odd_imp_lines: BTreeMap<OddKind, u64>,
    /// Bids with at least one valid line: the rows a correct ETL produces.
    pub valid_bids: u64,
    /// Valid bids that won and have at least one valid impression line: the ETL's positives.
    pub labelled_wins: u64,
    /// All wins drawn, including those whose lines were malformed.
    pub wins: u64,
    pub device_mix: BTreeMap<u8, u64>,
    #[serde(skip)]
    pub oracle: OracleAuc,
}

impl DaySummary {
    pub fn malformed_total(&self) -> u64 {
        self.malformed_bid_lines.values().sum::<u64>()
            + self.malformed_imp_lines.values().sum::<u64>()
    }
}

/// Tables shared by all days of a run: what exists in the generated world.
pub struct World {
    seed: u64,
    user_agents: Weighted,
    advertisers: Weighted,
    regions: Vec<Region>,
    region_pick: Weighted,
    region_effects: Vec<f64>,
    domains: Vec<String>,
    domain_pick: Weighted,
    domain_effects: Vec<f64>,
    slots: Weighted,
    floors: Weighted,
    exchanges: Weighted,
    creatives: Vec<Vec<(u64, u64)>>,
    hour_weights: [f64; 24],
}

/// Share of traffic per hour of day: night trough, midday plateau, evening peak.
const HOUR_WEIGHTS: [f64; 24] = [
    0.55, 0.40, 0.30, 0.22, 0.18, 0.20, 0.30, 0.50, 0.75, 0.95, 1.05, 1.05, 1.00, 1.00, 1.00, 1.00,
    0.98, 0.95, 0.95, 1.05, 1.15, 1.20, 1.05, 0.80,
];

impl World {
    pub fn new(config: &GeneratorConfig) -> Self {
        let seed = config.seed;
        let regions = catalog::regions();
        // big regions first in a seed-fixed order, so traffic concentrates as it does in reality
        let region_pick = Weighted::zipf(regions.len(), 0.9);
        let mut regions = regions;
        let mut order_rng = Rng::new(mix(&[seed, 0x4E61]));
        for i in (1..regions.len()).rev() {
            let j = order_rng.below(i as u64 + 1) as usize;
            regions.swap(i, j);
        }
        let region_effects = regions
            .iter()
            .map(|r| signal::region_effect(seed, r.id))
            .collect();
        let domains = (0..config.domains.max(1))
            .map(|i| catalog::domain_name(seed, i))
            .collect();
        let domain_effects = (0..config.domains.max(1))
            .map(|i| signal::domain_effect(seed, i))
            .collect();
        let creatives = (0..catalog::ADVERTISERS.len())
            .map(|a| {
                let mut r = Rng::new(mix(&[seed, 0xC4, a as u64]));
                (0..12).map(|_| (r.next_u64(), r.next_u64())).collect()
            })
            .collect();
        World {
            seed,
            user_agents: Weighted::new(catalog::USER_AGENTS.iter().map(|u| u.2)),
            advertisers: Weighted::new(catalog::ADVERTISERS.iter().map(|a| a.1)),
            regions,
            region_pick,
            region_effects,
            domains,
            domain_pick: Weighted::zipf(config.domains.max(1), config.domain_zipf_exponent),
            domain_effects,
            slots: Weighted::new(catalog::SLOT_SIZES.iter().map(|s| s.2)),
            floors: Weighted::new(catalog::FLOOR_PRICES.iter().map(|f| f.1)),
            exchanges: Weighted::new(catalog::EXCHANGE_WEIGHTS),
            creatives,
            hour_weights: HOUR_WEIGHTS,
        }
    }
}

const BID_FIELDS: usize = 21;

/// One bid line being built, with the start offset of each field for the impression line and
/// for corruption.
struct LineBuf {
    bytes: Vec<u8>,
    starts: [usize; BID_FIELDS + 1],
}

impl LineBuf {
    fn field(&self, i: usize) -> &[u8] {
        &self.bytes[self.starts[i]..self.starts[i + 1] - 1]
    }
}

fn push_num(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn push_2(out: &mut Vec<u8>, n: u64) {
    out.push(b'0' + (n / 10) as u8);
    out.push(b'0' + (n % 10) as u8);
}

fn push_time(out: &mut Vec<u8>, date: &[u8; 8], ms_of_day: u64) {
    out.extend_from_slice(date);
    push_2(out, ms_of_day / 3_600_000);
    push_2(out, ms_of_day / 60_000 % 60);
    push_2(out, ms_of_day / 1000 % 60);
    let ms = ms_of_day % 1000;
    out.push(b'0' + (ms / 100) as u8);
    push_2(out, ms % 100);
}

const BID_ODD_COLUMNS: odd::Columns = odd::Columns {
    timestamp: 1,
    user_agent: 3,
    region: 5,
    city: 6,
    domain: 8,
    advertiser: Some(19),
    prices: &[16, 18],
};
const IMP23_ODD_COLUMNS: odd::Columns = odd::Columns {
    timestamp: 1,
    user_agent: 4,
    region: 6,
    city: 7,
    domain: 9,
    advertiser: Some(22),
    prices: &[19, 20],
};
const IMP1_ODD_COLUMNS: odd::Columns = odd::Columns {
    advertiser: None,
    ..IMP23_ODD_COLUMNS
};

/// Replaces a well-formed line by a malformed one of the given kind. `ua_field` and
/// `price_field` are field indexes in this line's layout.
fn corrupt(
    line: &mut Vec<u8>,
    kind: RejectReason,
    rng: &mut Rng,
    ua_field: usize,
    price_field: usize,
) {
    let tab_positions: Vec<usize> = line
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\t')
        .map(|(i, _)| i)
        .collect();
    let field_start = |i: usize| if i == 0 { 0 } else { tab_positions[i - 1] + 1 };
    match kind {
        RejectReason::EmptyLine => line.clear(),
        RejectReason::InvalidUtf8 => {
            // a Latin-1 byte in the user agent, as from a mis-encoded upstream log
            let at = field_start(ua_field);
            line.splice(at..at, [b'M', 0xE9, 0xFF]);
        }
        RejectReason::TooFewFields => {
            let keep = 3 + rng.below(tab_positions.len() as u64 - 4) as usize;
            line.truncate(tab_positions[keep]);
        }
        RejectReason::TooManyFields => {
            // an unescaped tab inside the user agent
            let at = field_start(ua_field);
            line.splice(at..at, *b"Mozilla/4.0\t");
        }
        RejectReason::BadTimestamp => {
            let at = field_start(1);
            if rng.chance(0.5) {
                line[at + 8] = b'2';
                line[at + 9] = b'7';
            } else {
                line.splice(at + 10..at + 10, *b":");
            }
        }
        RejectReason::NonNumericPrice => {
            let (start, end) = (field_start(price_field), tab_positions[price_field]);
            let bad: &[u8] = [b"3OO".as_slice(), b"N/A", b"", b"-1"][rng.below(4) as usize];
            line.splice(start..end, bad.iter().copied());
        }
    }
}

/// Writes one line (and maybe its duplicate), corrupting copies at the configured rate.
/// Returns whether at least one copy is valid.
#[allow(clippy::too_many_arguments)]
fn emit(
    out: &mut impl Write,
    line: &[u8],
    scratch: &mut Vec<u8>,
    rng: &mut Rng,
    config: &GeneratorConfig,
    duplicate_fraction: f64,
    lines: &mut u64,
    duplicates: &mut u64,
    malformed: &mut BTreeMap<RejectReason, u64>,
    odd_lines: &mut BTreeMap<OddKind, u64>,
    columns: &odd::Columns,
    price_field: usize,
) -> io::Result<bool> {
    let ua_field = columns.user_agent;
    let copies = if rng.chance(duplicate_fraction) { 2 } else { 1 };
    *duplicates += copies - 1;
    let mut any_valid = false;
    for _ in 0..copies {
        *lines += 1;
        if rng.chance(config.malformed_fraction) {
            let kind = RejectReason::ALL[rng.below(RejectReason::ALL.len() as u64) as usize];
            scratch.clear();
            scratch.extend_from_slice(line);
            corrupt(scratch, kind, rng, ua_field, price_field);
            *malformed.entry(kind).or_default() += 1;
            scratch.push(b'\n');
            out.write_all(scratch)?;
        } else if config.odd_fraction > 0.0 && rng.chance(config.odd_fraction) {
            let kind = OddKind::ALL[rng.below(OddKind::ALL.len() as u64) as usize];
            scratch.clear();
            scratch.extend_from_slice(line);
            odd::plant(scratch, kind, rng, columns);
            *odd_lines.entry(kind).or_default() += 1;
            any_valid = true;
            scratch.push(b'\n');
            out.write_all(scratch)?;
        } else {
            any_valid = true;
            out.write_all(line)?;
            out.write_all(b"\n")?;
        }
    }
    Ok(any_valid)
}

/// Generates one day. Rows come out in timestamp order; `progress` counts bids as they go.
pub fn generate_day(
    world: &World,
    config: &GeneratorConfig,
    date: NaiveDate,
    mut bids: impl Write,
    mut imps: impl Write,
    progress: &AtomicU64,
) -> io::Result<DaySummary> {
    let day_key = u64::try_from(date.num_days_from_ce()).unwrap_or_default();
    let mut rng = Rng::new(mix(&[world.seed, 0xDA7, day_key]));
    let mut date_digits = [0u8; 8];
    date_digits.copy_from_slice(date.format("%Y%m%d").to_string().as_bytes());
    let mut summary = DaySummary {
        date: date.format("%Y-%m-%d").to_string(),
        bid_file: config.file_name("bid", date),
        imp_file: config.file_name("imp", date),
        ..DaySummary::default()
    };
    let season1_imps = config.imp_layout == ImpLayout::Season1;
    let n = config.bids_per_day;
    let total_weight: f64 = world.hour_weights.iter().sum();
    let mut line = LineBuf {
        bytes: Vec::with_capacity(512),
        starts: [0; BID_FIELDS + 1],
    };
    let mut imp_line = Vec::with_capacity(512);
    let mut scratch = Vec::with_capacity(512);
    let mut cumulative_weight = 0.0;
    let mut done = 0u64;
    let mut unreported = 0u64;
    let mut device_counts = [0u64; DeviceType::ALL.len()];
    for hour in 0..24u64 {
        cumulative_weight += world.hour_weights[hour as usize];
        let until = ((n as f64) * cumulative_weight / total_weight).round() as u64;
        let in_hour = until.saturating_sub(done);
        for j in 0..in_hour {
            let ms_of_day =
                hour * 3_600_000 + ((j as f64 + rng.unit()) * 3_600_000.0 / in_hour as f64) as u64;
            let b = &mut line.bytes;
            b.clear();
            let mut field = 0;
            macro_rules! next_field {
                () => {
                    b.push(b'\t');
                    field += 1;
                    line.starts[field] = b.len();
                };
            }
            // BidID, Timestamp, iPinYouID
            let (hi, lo) = (rng.next_u64(), rng.next_u64());
            push_hex128(b, hi, lo);
            next_field!();
            push_time(b, &date_digits, ms_of_day);
            next_field!();
            if rng.chance(0.08) {
                b.extend_from_slice(b"null");
            } else {
                b.extend_from_slice(b"Vh");
                push_base62(b, &mut rng, 13);
            }
            next_field!();
            // UserAgent (a tenth carry the ",gzip(gfe)" proxy suffix seen in real logs)
            let (ua, device, _) = catalog::USER_AGENTS[world.user_agents.sample(&mut rng)];
            b.extend_from_slice(ua.as_bytes());
            if ua.len() > 12 && rng.chance(0.1) {
                b.extend_from_slice(b",gzip(gfe)");
            }
            next_field!();
            // IP
            push_num(b, 1 + rng.below(222));
            b.push(b'.');
            push_num(b, rng.below(256));
            b.push(b'.');
            push_num(b, rng.below(256));
            b.extend_from_slice(b".*");
            next_field!();
            // RegionID, CityID (1% unknown: 0/0, as in real logs)
            let (region_id, city_id, region_effect) = if rng.chance(0.01) {
                (0, 0, 0.0)
            } else {
                let r = world.region_pick.sample(&mut rng);
                let region = &world.regions[r];
                let city = region.cities[rng.below(region.cities.len() as u64) as usize];
                (region.id, city, world.region_effects[r])
            };
            push_num(b, region_id);
            next_field!();
            push_num(b, city_id);
            next_field!();
            // AdExchange
            let exchange = world.exchanges.sample(&mut rng);
            push_num(b, exchange + 1);
            next_field!();
            // Domain, URL, AnonymousURL
            let domain = world.domain_pick.sample(&mut rng);
            b.extend_from_slice(world.domains[domain].as_bytes());
            next_field!();
            push_hex128(
                b,
                mix(&[world.seed, domain as u64, rng.below(64)]),
                rng.next_u64(),
            );
            next_field!();
            if rng.chance(0.7) {
                b.extend_from_slice(b"null");
            }
            next_field!();
            // AdSlotID, width, height, visibility, format
            if rng.chance(0.6) {
                b.extend_from_slice(b"mm_");
                push_num(b, 10_000_000 + rng.below(90_000_000));
                b.push(b'_');
                push_num(b, 100_000 + rng.below(4_000_000));
                b.push(b'_');
                push_num(b, 10_000_000 + rng.below(90_000_000));
            } else {
                push_num(b, 1_000_000_000 + rng.below(3_200_000_000));
            }
            next_field!();
            let (w, h, _) = catalog::SLOT_SIZES[world.slots.sample(&mut rng)];
            push_num(b, w);
            next_field!();
            push_num(b, h);
            next_field!();
            push_num(b, [0u32, 1, 2, 255][rng.below(4) as usize]);
            next_field!();
            push_num(b, [0u32, 1, 5][rng.below(3) as usize]);
            next_field!();
            // AdSlotFloorPrice, CreativeID, BiddingPrice, AdvertiserID, UserProfileIDs
            let floor = catalog::FLOOR_PRICES[world.floors.sample(&mut rng)].0;
            push_num(b, floor);
            next_field!();
            let advertiser = world.advertisers.sample(&mut rng);
            let creatives = &world.creatives[advertiser];
            let (chi, clo) = creatives[rng.below(creatives.len() as u64) as usize];
            push_hex128(b, chi, clo);
            next_field!();
            let (advertiser_id, _, bid_price) = catalog::ADVERTISERS[advertiser];
            push_num(b, bid_price);
            next_field!();
            b.extend_from_slice(advertiser_id.as_bytes());
            next_field!();
            if rng.chance(0.3) {
                b.extend_from_slice(b"null");
            } else {
                let tags = 1 + rng.below(8);
                for t in 0..tags {
                    if t > 0 {
                        b.push(b',');
                    }
                    b.extend_from_slice(
                        catalog::USER_TAGS[rng.below(catalog::USER_TAGS.len() as u64) as usize]
                            .as_bytes(),
                    );
                }
            }
            b.push(b'\t');
            line.starts[BID_FIELDS] = b.len();
            b.pop();

            // the win model
            let hour_of_day = (ms_of_day / 3_600_000) as u32;
            let p = if floor >= bid_price {
                0.0
            } else {
                signal::probability(
                    signal::BASE
                        + signal::device_effect(device)
                        + signal::hour_effect(hour_of_day)
                        + world.domain_effects[domain]
                        + region_effect
                        + signal::ADVERTISER_EFFECT[advertiser]
                        + signal::EXCHANGE_EFFECT[exchange]
                        + signal::floor_effect(floor),
                )
            };
            let won = rng.chance(p);
            device_counts[usize::from(device.id())] += 1;

            let bid_valid = emit(
                &mut bids,
                &line.bytes,
                &mut scratch,
                &mut rng,
                config,
                config.duplicate_bid_fraction,
                &mut summary.bid_lines,
                &mut summary.duplicate_bid_lines,
                &mut summary.malformed_bid_lines,
                &mut summary.odd_bid_lines,
                &BID_ODD_COLUMNS,
                18,
            )?;
            let mut imp_valid = false;
            if won {
                summary.wins += 1;
                imp_line.clear();
                imp_line.extend_from_slice(line.field(0));
                imp_line.push(b'\t');
                let imp_ms = (ms_of_day + 20 + rng.below(1500)).min(86_399_999);
                push_time(&mut imp_line, &date_digits, imp_ms);
                imp_line.extend_from_slice(b"\t1\t");
                // iPinYouID .. BiddingPrice are the bid's fields 2..=18
                imp_line.extend_from_slice(&line.bytes[line.starts[2]..line.starts[19] - 1]);
                imp_line.push(b'\t');
                let paying =
                    floor + ((bid_price - floor) as f64 * (0.15 + 0.6 * rng.unit())) as u32;
                push_num(&mut imp_line, paying.max(floor));
                imp_line.push(b'\t');
                if rng.chance(0.5) {
                    imp_line.extend_from_slice(b"null");
                } else {
                    push_hex128(
                        &mut imp_line,
                        mix(&[world.seed, 0x1A, advertiser as u64]),
                        rng.below(8),
                    );
                }
                if !season1_imps {
                    imp_line.push(b'\t');
                    imp_line.extend_from_slice(line.field(19));
                    imp_line.push(b'\t');
                    imp_line.extend_from_slice(line.field(20));
                }
                imp_valid = emit(
                    &mut imps,
                    &imp_line,
                    &mut scratch,
                    &mut rng,
                    config,
                    config.duplicate_imp_fraction,
                    &mut summary.imp_lines,
                    &mut summary.duplicate_imp_lines,
                    &mut summary.malformed_imp_lines,
                    &mut summary.odd_imp_lines,
                    if season1_imps {
                        &IMP1_ODD_COLUMNS
                    } else {
                        &IMP23_ODD_COLUMNS
                    },
                    20,
                )?;
            }
            if bid_valid {
                summary.valid_bids += 1;
                let label = won && imp_valid;
                summary.labelled_wins += u64::from(label);
                summary.oracle.record(p, label);
            }
            unreported += 1;
            if unreported == 65_536 {
                progress.fetch_add(unreported, Ordering::Relaxed);
                unreported = 0;
            }
        }
        done += in_hour;
    }
    progress.fetch_add(unreported, Ordering::Relaxed);
    summary.device_mix = (0u8..).zip(device_counts).filter(|(_, n)| *n > 0).collect();
    bids.flush()?;
    imps.flush()?;
    Ok(summary)
}

/// Wraps a sink in the configured compression.
pub fn compressed<'a, W: Write + 'a>(
    sink: W,
    compression: Compression,
) -> Box<dyn FinishWrite + 'a> {
    match compression {
        Compression::None => Box::new(Plain(io::BufWriter::with_capacity(1 << 20, sink))),
        Compression::Gzip => Box::new(flate2::write::GzEncoder::new(
            io::BufWriter::with_capacity(1 << 20, sink),
            flate2::Compression::default(),
        )),
        Compression::Bzip2 => Box::new(bzip2::write::BzEncoder::new(
            io::BufWriter::with_capacity(1 << 20, sink),
            bzip2::Compression::default(),
        )),
    }
}

/// A writer whose end must be marked (compressed streams write a trailer).
pub trait FinishWrite: Write {
    fn finish(self: Box<Self>) -> io::Result<()>;
}

struct Plain<W: Write>(io::BufWriter<W>);

impl<W: Write> Write for Plain<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> FinishWrite for Plain<W> {
    fn finish(mut self: Box<Self>) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> FinishWrite for flate2::write::GzEncoder<io::BufWriter<W>> {
    fn finish(self: Box<Self>) -> io::Result<()> {
        (*self).finish()?.flush()
    }
}

impl<W: Write> FinishWrite for bzip2::write::BzEncoder<io::BufWriter<W>> {
    fn finish(self: Box<Self>) -> io::Result<()> {
        (*self).finish()?.flush()
    }
}

/// Sanity: the device kinds a day can contain.
pub fn device_name(id: u8) -> &'static str {
    DeviceType::ALL
        .get(usize::from(id))
        .map_or("?", |d| d.category())
}
