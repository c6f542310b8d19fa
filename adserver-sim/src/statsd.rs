//! StatsD metrics under the names the original's CloudWatch dashboard reads: prefix
//! `adserver_client`, timer `adserver_latency_ms` (one per call, in fractional milliseconds:
//! the original's whole ones read 0 for a sub-millisecond scorer), gauge `likelihood_to_bid` (one per likelihood received), and the counter
//! `adserver_errors` (one per failed call). Every call is sent, warm-up included: the dashboard
//! is a live view, the summary is the measurement.
//!
//! Metrics go through cadence's queuing sink: a call only pushes onto a bounded queue and one
//! background thread writes UDP, so a slow or absent agent never delays a call (when the queue
//! is full, metrics are dropped). The buffered UDP sink is flushed every second, and at the end
//! the queue is drained before the last flush, so a short run loses nothing.
//!
//! The batch endpoint sends one gauge per call (the mean of its likelihoods) rather than one per
//! row, so the metric rate stays the call rate.

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use cadence::prelude::*;
use cadence::{BufferedUdpMetricSink, MetricSink, QueuingMetricSink, SinkStats, StatsdClient};
use rtb_cli::statsd::Millis;

use crate::error::{Result, SimError};

pub const PREFIX: &str = "adserver_client";
pub const LATENCY: &str = "adserver_latency_ms";
pub const LIKELIHOOD: &str = "likelihood_to_bid";
pub const ERRORS: &str = "adserver_errors";

const QUEUE_CAPACITY: usize = 64 * 1024;

/// The queue, shared with the client so the end of a run can wait for it to drain.
struct SharedQueue(Arc<QueuingMetricSink>);

impl MetricSink for SharedQueue {
    fn emit(&self, metric: &str) -> std::io::Result<usize> {
        self.0.emit(metric)
    }

    fn flush(&self) -> std::io::Result<()> {
        self.0.flush()
    }

    fn stats(&self) -> SinkStats {
        self.0.stats()
    }
}

/// A StatsD client, or nothing when no agent is configured.
#[derive(Clone, Default)]
pub struct Statsd {
    client: Option<Arc<StatsdClient>>,
    queue: Option<Arc<QueuingMetricSink>>,
}

impl Statsd {
    pub fn disabled() -> Self {
        Statsd::default()
    }

    /// Sends to `address` (`host:port`) over UDP.
    pub fn udp(address: &str) -> Result<Self> {
        let error = |reason: String| SimError::Statsd {
            address: address.to_owned(),
            reason,
        };
        let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| error(e.to_string()))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| error(e.to_string()))?;
        let udp = BufferedUdpMetricSink::from(address, socket).map_err(|e| error(e.to_string()))?;
        let queue = Arc::new(QueuingMetricSink::with_capacity(udp, QUEUE_CAPACITY));
        let client = StatsdClient::builder(PREFIX, SharedQueue(queue.clone()))
            .with_error_handler(|_| {})
            .build();
        Ok(Statsd {
            client: Some(Arc::new(client)),
            queue: Some(queue),
        })
    }

    /// A call answered with `likelihoods` after `latency`: the timer, and the likelihood
    /// gauge (the mean, for a batch).
    pub fn scored(&self, latency: Duration, likelihoods: &[f64]) {
        if let Some(client) = &self.client {
            let _ = client.time(LATENCY, Millis::of(latency));
            if !likelihoods.is_empty() {
                let mean = likelihoods.iter().sum::<f64>() / likelihoods.len() as f64;
                let _ = client.gauge(LIKELIHOOD, mean);
            }
        }
    }

    pub fn failed(&self) {
        if let Some(client) = &self.client {
            let _ = client.count(ERRORS, 1);
        }
    }

    /// Writes out what the buffer holds.
    pub fn flush(&self) {
        if let Some(client) = &self.client {
            let _ = client.flush();
        }
    }

    /// Waits (a second at most) for the queue to drain, then flushes.
    pub async fn finish(&self) {
        if let Some(queue) = &self.queue {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
            while queue.queued() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // the worker counts a metric as drained just before it writes it to the buffer
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sends_the_original_names() {
        let agent = UdpSocket::bind("127.0.0.1:0").expect("agent");
        agent
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let statsd = Statsd::udp(&agent.local_addr().expect("addr").to_string()).expect("client");
        statsd.scored(Duration::from_micros(2_700), &[0.25]);
        statsd.scored(Duration::from_micros(900), &[0.25, 0.75]);
        statsd.failed();
        statsd.finish().await;
        let mut seen = String::new();
        let mut buf = [0u8; 2048];
        while let Ok(n) = agent.recv(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        assert!(
            seen.contains("adserver_client.adserver_latency_ms:2.7|ms"),
            "{seen}"
        );
        assert!(
            seen.contains("adserver_client.adserver_latency_ms:0.9|ms"),
            "{seen}"
        );
        assert!(
            seen.contains("adserver_client.likelihood_to_bid:0.25|g"),
            "{seen}"
        );
        assert!(
            seen.contains("adserver_client.likelihood_to_bid:0.5|g"),
            "batch mean: {seen}"
        );
        assert!(
            seen.contains("adserver_client.adserver_errors:1|c"),
            "{seen}"
        );
        Statsd::disabled().scored(Duration::ZERO, &[1.0]);
    }
}
