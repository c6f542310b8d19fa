//! Generator throughput, uncompressed, one thread: `cargo bench -p rtb-loggen`.
//! Prints the median of several runs of one day into a null sink.

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use rtb_loggen::{GeneratorConfig, World, generate_day};

fn main() {
    let rows: u64 = std::env::var("RTB_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let runs = 5;
    let config = GeneratorConfig {
        bids_per_day: rows,
        ..GeneratorConfig::default()
    };
    let world = World::new(&config);
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..runs {
        let mut bids = CountingSink::default();
        let mut imps = CountingSink::default();
        let started = Instant::now();
        let summary = generate_day(
            &world,
            &config,
            config.start,
            &mut bids,
            &mut imps,
            &AtomicU64::new(0),
        )
        .expect("generates");
        times.push(started.elapsed().as_secs_f64());
        bytes = bids.0 + imps.0;
        assert_eq!(summary.bid_lines, rows + summary.duplicate_bid_lines);
    }
    times.sort_by(f64::total_cmp);
    let median = times[runs / 2];
    println!(
        "generate {rows} bid rows x {runs} runs, 1 thread: median {median:.3} s, {:.2} M bid rows/s, {:.0} MB/s (min {:.3} s, max {:.3} s)",
        rows as f64 / median / 1e6,
        bytes as f64 / median / 1e6,
        times[0],
        times[runs - 1]
    );
}

#[derive(Default)]
struct CountingSink(u64);

impl std::io::Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
