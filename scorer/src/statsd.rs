//! StatsD metrics under the names the original's CloudWatch dashboard reads: prefix
//! `filtering_server`, counter `filtering_count`, timer `filtering_latency`, plus
//! `filtering_errors`. Metrics go through cadence's queuing sink: the request path only pushes
//! onto a bounded queue, and one background thread does the UDP writes, so a slow or absent
//! StatsD agent never blocks a request (when the queue is full, metrics are dropped).

use std::net::UdpSocket;
use std::time::Duration;

use cadence::prelude::*;
use cadence::{BufferedUdpMetricSink, QueuingMetricSink, StatsdClient};
use rtb_cli::statsd::Millis;
use thiserror::Error;

pub const PREFIX: &str = "filtering_server";
pub const COUNT: &str = "filtering_count";
pub const LATENCY: &str = "filtering_latency";
pub const ERRORS: &str = "filtering_errors";

/// Queued metrics beyond this are dropped rather than waited for.
const QUEUE_CAPACITY: usize = 16 * 1024;

#[derive(Debug, Error)]
#[error("cannot set up statsd to {address}: {reason}; write it as host:port (e.g. 127.0.0.1:8125)")]
pub struct StatsdError {
    address: String,
    reason: String,
}

/// A StatsD client, or nothing when no agent is configured.
pub struct Statsd {
    client: Option<StatsdClient>,
}

impl Statsd {
    pub fn disabled() -> Self {
        Statsd { client: None }
    }

    /// Sends to `address` (`host:port`) over UDP.
    pub fn udp(address: &str) -> Result<Self, StatsdError> {
        let error = |reason: String| StatsdError {
            address: address.to_owned(),
            reason,
        };
        let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| error(e.to_string()))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| error(e.to_string()))?;
        let udp = BufferedUdpMetricSink::from(address, socket).map_err(|e| error(e.to_string()))?;
        let queued = QueuingMetricSink::with_capacity(udp, QUEUE_CAPACITY);
        let client = StatsdClient::builder(PREFIX, queued)
            // a full queue or a failed send must not reach the request; the counters in
            // /metrics stay exact either way
            .with_error_handler(|_| {})
            .build();
        Ok(Statsd {
            client: Some(client),
        })
    }

    /// A scoring request answered: `rows` likelihoods in `elapsed`.
    pub fn scored(&self, rows: usize, elapsed: Duration) {
        if let Some(client) = &self.client {
            let _ = client.count(COUNT, i64::try_from(rows).unwrap_or(i64::MAX));
            let _ = client.time(LATENCY, Millis::of(elapsed));
        }
    }

    /// Sends what the UDP buffer holds; the server calls it every second so a quiet scorer's
    /// last metrics still reach the agent.
    pub fn flush(&self) {
        if let Some(client) = &self.client {
            let _ = client.flush();
        }
    }

    pub fn failed(&self) {
        if let Some(client) = &self.client {
            let _ = client.count(ERRORS, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_the_original_names_without_blocking() {
        let agent = UdpSocket::bind("127.0.0.1:0").expect("agent");
        agent
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let address = agent.local_addr().expect("addr").to_string();
        let statsd = Statsd::udp(&address).expect("client");
        statsd.scored(3, Duration::from_micros(2_051));
        statsd.failed();
        // the buffered sink writes when dropped (or full)
        drop(statsd);
        let mut seen = String::new();
        let mut buf = [0u8; 2048];
        while !(seen.contains(ERRORS) && seen.contains(LATENCY)) {
            let n = agent.recv(&mut buf).expect("a datagram within 5 s");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        assert!(
            seen.contains("filtering_server.filtering_count:3|c"),
            "{seen}"
        );
        assert!(
            seen.contains("filtering_server.filtering_latency:2.051|ms"),
            "{seen}"
        );
        assert!(
            seen.contains("filtering_server.filtering_errors:1|c"),
            "{seen}"
        );
        Statsd::disabled().scored(1, Duration::ZERO);
    }
}
