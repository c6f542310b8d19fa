//! The `generate` command: iPinYou-format logs to a local folder or an S3 prefix.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::NaiveDate;
use clap::{Args, ValueEnum};
use rtb_features::{DeviceType, ImpLayout, RejectReason};
use rtb_loggen::odd::OddKind;
use rtb_loggen::signal::OracleAuc;
use rtb_loggen::{Compression, DaySummary, GeneratorConfig, World, compressed, generate_day};
use rtb_storage::Location;
use serde::Serialize;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompressionArg {
    None,
    Gzip,
    Bzip2,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ImpLayoutArg {
    /// 22 columns, no AdvertiserID / UserProfileIDs (2013-03)
    Season1,
    /// 24 columns (2013-06 and 2013-10)
    Season23,
}

#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// Folder or s3://bucket/prefix to write the day files to.
    #[arg(long, env = "RTB_GENERATE_OUT", default_value = "data/raw")]
    pub out: String,
    /// First day (YYYY-MM-DD); 2013-03-11 is the original kit's day.
    #[arg(long, env = "RTB_START_DATE", default_value = "2013-03-11")]
    pub start_date: NaiveDate,
    #[arg(long, env = "RTB_DAYS", default_value_t = 1)]
    pub days: u32,
    #[arg(long, env = "RTB_BIDS_PER_DAY", default_value_t = 100_000)]
    pub bids_per_day: u64,
    #[arg(long, env = "RTB_SEED", default_value_t = 42)]
    pub seed: u64,
    #[arg(long, env = "RTB_IMP_LAYOUT", value_enum, default_value = "season23")]
    pub imp_layout: ImpLayoutArg,
    #[arg(long, env = "RTB_COMPRESSION", value_enum, default_value = "none")]
    pub compression: CompressionArg,
    /// Share of lines replaced by malformed ones (all kinds the reader rejects, evenly).
    #[arg(long, env = "RTB_MALFORMED_FRACTION", default_value_t = 0.0)]
    pub malformed_fraction: f64,
    /// Share of lines made odd: what Spark reads without complaint and the strict reader
    /// rejects or reads differently (short and long rows, quotes, `null`, odd timestamps and
    /// prices, ...; docs/spark-compat.md), kinds drawn evenly.
    #[arg(long, env = "RTB_ODD_FRACTION", default_value_t = 0.0)]
    pub odd_fraction: f64,
    #[arg(long, env = "RTB_DUPLICATE_BID_FRACTION", default_value_t = 0.005)]
    pub duplicate_bid_fraction: f64,
    #[arg(long, env = "RTB_DUPLICATE_IMP_FRACTION", default_value_t = 0.01)]
    pub duplicate_imp_fraction: f64,
    /// Distinct domains (Zipf-distributed traffic).
    #[arg(long, env = "RTB_DOMAINS", default_value_t = 30_000)]
    pub domains: usize,
    /// Days generated at once (default: the number of cores).
    #[arg(long, env = "RTB_GENERATE_THREADS")]
    pub threads: Option<usize>,
}

impl GenerateArgs {
    fn config(&self) -> anyhow::Result<GeneratorConfig> {
        for (name, f) in [
            ("--malformed-fraction", self.malformed_fraction),
            ("--odd-fraction", self.odd_fraction),
            ("--duplicate-bid-fraction", self.duplicate_bid_fraction),
            ("--duplicate-imp-fraction", self.duplicate_imp_fraction),
        ] {
            if !(0.0..=1.0).contains(&f) {
                bail!("{name} must be between 0 and 1, got {f}");
            }
        }
        if self.days == 0 || self.bids_per_day == 0 {
            bail!("--days and --bids-per-day must be at least 1");
        }
        if self.domains == 0 {
            bail!("--domains must be at least 1");
        }
        Ok(GeneratorConfig {
            seed: self.seed,
            start: self.start_date,
            days: self.days,
            bids_per_day: self.bids_per_day,
            imp_layout: match self.imp_layout {
                ImpLayoutArg::Season1 => ImpLayout::Season1,
                ImpLayoutArg::Season23 => ImpLayout::Season23,
            },
            compression: match self.compression {
                CompressionArg::None => Compression::None,
                CompressionArg::Gzip => Compression::Gzip,
                CompressionArg::Bzip2 => Compression::Bzip2,
            },
            malformed_fraction: self.malformed_fraction,
            odd_fraction: self.odd_fraction,
            duplicate_bid_fraction: self.duplicate_bid_fraction,
            duplicate_imp_fraction: self.duplicate_imp_fraction,
            domains: self.domains,
            domain_zipf_exponent: 1.05,
        })
    }
}

/// What `generate` wrote; also saved as `generator-summary.json` beside the logs.
#[derive(Debug, Serialize)]
pub struct GenerationReport {
    pub out: String,
    pub seed: u64,
    pub imp_layout: String,
    pub compression: Compression,
    pub days: Vec<DaySummary>,
    pub bid_lines: u64,
    pub imp_lines: u64,
    pub valid_bids: u64,
    pub labelled_wins: u64,
    pub malformed_lines: u64,
    /// ROC AUC of the true win probability against the label the ETL will see: the ceiling no
    /// model can beat on this data.
    pub oracle_auc: Option<f64>,
    /// The bid filter the true probability allows, at the shares of wins a model's report
    /// states (`rtb-trainer`'s "keeps 99% of wins and filters X% of bid requests"): how far a
    /// model is from what the data allows.
    pub oracle_filtering: Option<Vec<rtb_loggen::signal::OracleFilter>>,
    pub seconds: f64,
    pub bid_rows_per_second: f64,
}

pub const SUMMARY_FILE: &str = "generator-summary.json";

/// Generates into a local folder (the final place for local output, a staging folder for S3).
fn generate_into(
    dir: &Path,
    config: &GeneratorConfig,
    threads: usize,
    progress: &AtomicU64,
) -> anyhow::Result<Vec<DaySummary>> {
    let world = World::new(config);
    let dates = config.dates();
    let mut summaries: Vec<Option<DaySummary>> = vec![None; dates.len()];
    let next = AtomicU64::new(0);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..threads.min(dates.len()).max(1))
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<Vec<(usize, DaySummary)>> {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                        let Some(date) = dates.get(i) else {
                            return Ok(done);
                        };
                        done.push((i, write_day(dir, &world, config, *date, progress)?));
                    }
                })
            })
            .collect();
        for worker in workers {
            let days = worker
                .join()
                .map_err(|_| anyhow::anyhow!("a generator thread panicked"))??;
            for (i, summary) in days {
                summaries[i] = Some(summary);
            }
        }
        Ok(())
    })?;
    Ok(summaries.into_iter().flatten().collect())
}

fn write_day(
    dir: &Path,
    world: &World,
    config: &GeneratorConfig,
    date: NaiveDate,
    progress: &AtomicU64,
) -> anyhow::Result<DaySummary> {
    let create = |name: String| -> anyhow::Result<(PathBuf, std::fs::File)> {
        let path = dir.join(name);
        let file = std::fs::File::create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok((path, file))
    };
    let (bid_path, bid_file) = create(config.file_name("bid", date))?;
    let (imp_path, imp_file) = create(config.file_name("imp", date))?;
    let mut bids = compressed(bid_file, config.compression);
    let mut imps = compressed(imp_file, config.compression);
    let summary =
        generate_day(world, config, date, &mut bids, &mut imps, progress).with_context(|| {
            format!(
                "cannot write {} / {}",
                bid_path.display(),
                imp_path.display()
            )
        })?;
    bids.finish()
        .with_context(|| format!("cannot finish {}", bid_path.display()))?;
    imps.finish()
        .with_context(|| format!("cannot finish {}", imp_path.display()))?;
    Ok(summary)
}

pub async fn run(args: &GenerateArgs) -> anyhow::Result<GenerationReport> {
    let config = args.config()?;
    let location = Location::parse(&args.out)?;
    let local_dir = location.url().to_file_path().ok();
    let staging = match local_dir {
        Some(_) => None,
        None => Some(tempfile::tempdir().context("cannot create a staging folder for the upload")?),
    };
    let dir = match (&local_dir, &staging) {
        (Some(dir), _) => dir.clone(),
        (None, Some(staging)) => staging.path().to_owned(),
        (None, None) => bail!("no output folder"),
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let total = config.bids_per_day * u64::from(config.days);
    let bar = rtb_cli::progress_bar(total, "bids");
    let progress = AtomicU64::new(0);
    let started = Instant::now();
    let summaries = std::thread::scope(|scope| {
        let handle = scope.spawn(|| generate_into(&dir, &config, threads, &progress));
        while !handle.is_finished() {
            bar.set_position(progress.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(100));
        }
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("the generator panicked"))?
    })?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();

    let mut oracle = OracleAuc::default();
    for day in &summaries {
        oracle.merge(&day.oracle);
    }
    let report = GenerationReport {
        out: location.url().to_string(),
        seed: config.seed,
        imp_layout: match config.imp_layout {
            ImpLayout::Season1 => "season1".into(),
            ImpLayout::Season23 => "season23".into(),
        },
        compression: config.compression,
        bid_lines: summaries.iter().map(|d| d.bid_lines).sum(),
        imp_lines: summaries.iter().map(|d| d.imp_lines).sum(),
        valid_bids: summaries.iter().map(|d| d.valid_bids).sum(),
        labelled_wins: summaries.iter().map(|d| d.labelled_wins).sum(),
        malformed_lines: summaries.iter().map(DaySummary::malformed_total).sum(),
        oracle_auc: oracle.auc(),
        oracle_filtering: oracle.filtering(&[0.9, 0.95, 0.98, 0.99, 0.995, 0.999]),
        seconds,
        bid_rows_per_second: total as f64 / seconds.max(1e-9),
        days: summaries,
    };
    let json = serde_json::to_vec_pretty(&report)?;
    match &staging {
        Some(staging) => {
            for day in &report.days {
                for name in [&day.bid_file, &day.imp_file] {
                    location
                        .upload_file(name, &staging.path().join(name))
                        .await?;
                }
            }
            location.put(SUMMARY_FILE, json.into()).await?;
        }
        None => std::fs::write(dir.join(SUMMARY_FILE), json)
            .with_context(|| format!("cannot write {SUMMARY_FILE} in {}", dir.display()))?,
    }
    Ok(report)
}

/// The readable summary `generate` prints.
pub fn render(report: &GenerationReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "generated {} day(s) into {}",
        report.days.len(),
        report.out
    );
    let _ = writeln!(
        s,
        "{:<12} {:>11} {:>10} {:>9} {:>9} {:>8} {:>9}",
        "day", "bid lines", "imp lines", "dup bids", "dup imps", "win %", "malformed"
    );
    for d in &report.days {
        let _ = writeln!(
            s,
            "{:<12} {:>11} {:>10} {:>9} {:>9} {:>7.2}% {:>9}",
            d.date,
            d.bid_lines,
            d.imp_lines,
            d.duplicate_bid_lines,
            d.duplicate_imp_lines,
            100.0 * d.labelled_wins as f64 / d.valid_bids.max(1) as f64,
            d.malformed_total()
        );
    }
    if report.malformed_lines > 0 {
        let _ = writeln!(s, "malformed lines by kind (bid / imp):");
        for reason in RejectReason::ALL {
            let count =
                |f: fn(&DaySummary) -> &std::collections::BTreeMap<RejectReason, u64>| -> u64 {
                    report
                        .days
                        .iter()
                        .map(|d| f(d).get(&reason).copied().unwrap_or(0))
                        .sum()
                };
            let _ = writeln!(
                s,
                "  {:<18} {:>9} / {}",
                reason.as_str(),
                count(|d| &d.malformed_bid_lines),
                count(|d| &d.malformed_imp_lines)
            );
        }
    }
    let odd =
        |f: fn(&DaySummary) -> &std::collections::BTreeMap<OddKind, u64>, kind: OddKind| -> u64 {
            report
                .days
                .iter()
                .map(|d| f(d).get(&kind).copied().unwrap_or(0))
                .sum()
        };
    if report
        .days
        .iter()
        .any(|d| !d.odd_bid_lines.is_empty() || !d.odd_imp_lines.is_empty())
    {
        let _ = writeln!(
            s,
            "odd lines by kind (bid / imp; read as Spark reads them with --compat spark, see docs/spark-compat.md):"
        );
        for kind in OddKind::ALL {
            let _ = writeln!(
                s,
                "  {:<18} {:>9} / {}",
                serde_json::to_value(kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                odd(|d| &d.odd_bid_lines, kind),
                odd(|d| &d.odd_imp_lines, kind)
            );
        }
    }
    let mut devices = std::collections::BTreeMap::<u8, u64>::new();
    for d in &report.days {
        for (k, v) in &d.device_mix {
            *devices.entry(*k).or_default() += v;
        }
    }
    let total: u64 = devices.values().sum();
    let mix: Vec<String> = devices
        .iter()
        .map(|(k, v)| {
            format!(
                "{} {:.1}%",
                DeviceType::ALL[usize::from(*k)].category(),
                100.0 * *v as f64 / total.max(1) as f64
            )
        })
        .collect();
    let _ = writeln!(s, "device mix: {}", mix.join(", "));
    let _ = writeln!(
        s,
        "valid bids {}, labelled wins {}, oracle auc {}",
        report.valid_bids,
        report.labelled_wins,
        report
            .oracle_auc
            .map_or("n/a".into(), |a| format!("{a:.4}"))
    );
    if let Some(point) = report
        .oracle_filtering
        .iter()
        .flatten()
        .find(|p| p.wins_kept_target == 0.99)
    {
        let _ = writeln!(
            s,
            "oracle filter: p >= {:.4} keeps {:.2}% of wins and filters {:.2}% of bid requests (no model does better on this data)",
            point.threshold,
            100.0 * point.wins_kept,
            100.0 * point.traffic_filtered
        );
    }
    let _ = writeln!(
        s,
        "{:.2} s, {:.0} bid rows/s",
        report.seconds, report.bid_rows_per_second
    );
    s
}
