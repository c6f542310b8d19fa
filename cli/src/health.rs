//! `health`: the container health check every image runs, with no curl in the image.
//!
//! One plain HTTP/1.1 GET over a std socket: healthy only on status 200. Anything else, a
//! refused connection or a timeout, is one line on stderr and a failing exit.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// Endpoint that must answer 200, e.g. http://127.0.0.1:8080/readyz.
    #[arg(long, env = "RTB_HEALTH_URL")]
    pub url: String,
    /// Give up after this many seconds (connect, send and answer each).
    #[arg(long, env = "RTB_HEALTH_TIMEOUT_SECONDS", default_value_t = 2)]
    pub timeout_seconds: u64,
}

impl HealthArgs {
    pub fn check(&self) -> anyhow::Result<()> {
        probe(&self.url, Duration::from_secs(self.timeout_seconds.max(1)))
    }
}

/// Checks that `url` (`http://host:port/path`) answers 200 within `timeout`.
pub fn probe(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("health url {url:?} must start with http://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let address = authority
        .to_socket_addrs()
        .with_context(|| format!("health url {url:?}: cannot resolve {authority:?}"))?
        .next()
        .with_context(|| format!("health url {url:?}: {authority:?} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .with_context(|| format!("{url}: cannot connect"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .with_context(|| format!("{url}: cannot send the request"))?;
    // the status line is all we need; a slow body must not fail a healthy server
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        let n = stream
            .read(&mut head[read..])
            .with_context(|| format!("{url}: no answer within {timeout:?}"))?;
        if n == 0 {
            break;
        }
        read += n;
    }
    let status_line = String::from_utf8_lossy(&head[..read]);
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(code) => bail!("{url}: status {code}"),
        None => bail!("{url}: not an http answer: {status_line:?}"),
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::thread;

    use super::*;

    fn serve_once(answer: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        thread::spawn(move || {
            if let Ok((mut socket, _)) = listener.accept() {
                // the whole request, so closing never resets a client still writing
                let mut request = Vec::new();
                let mut chunk = [0u8; 256];
                while !request.ends_with(b"\r\n\r\n") {
                    match socket.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = socket.write_all(answer.as_bytes());
            }
        });
        format!("http://127.0.0.1:{port}/readyz")
    }

    #[test]
    fn status_200_is_healthy_anything_else_is_not() {
        let timeout = Duration::from_secs(5);
        let ok = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        probe(&ok, timeout).expect("200 is healthy");

        let unready = serve_once("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
        let err = probe(&unready, timeout).expect_err("503 is not healthy");
        assert!(err.to_string().contains("status 503"), "{err}");

        let garbage = serve_once("nonsense");
        assert!(probe(&garbage, timeout).is_err());
    }

    #[test]
    fn refused_and_malformed_urls_fail_with_a_reason() {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("address")
            .port();
        let err = probe(
            &format!("http://127.0.0.1:{port}/healthz"),
            Duration::from_secs(2),
        )
        .expect_err("nothing listens");
        assert!(err.to_string().contains("cannot connect"), "{err}");
        let err = probe("https://example.invalid/", Duration::from_secs(1)).expect_err("https");
        assert!(err.to_string().contains("http://"), "{err}");
    }
}
