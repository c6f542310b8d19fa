//! The HTTP/1.1 client: one keep-alive connection per closed-loop worker, a bounded pool of them
//! in the open loop, and failures sorted by kind. Built on hyper's connection API, so what a
//! connection does is explicit: no hidden pool, no redirects, and one retry only for a request
//! the server never saw (see [`Client::call`]).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, info};
use url::Url;

use crate::error::{Result, SimError};

/// Why a call produced no likelihood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallErrorKind {
    /// No connection could be made (refused, unreachable, connect timeout).
    Connect,
    /// No complete response within `--timeout-ms`.
    Timeout,
    /// The connection broke during the call.
    Disconnected,
    /// The scorer answered with a status other than 200.
    Status(u16),
    /// A 200 whose body is not the expected JSON.
    BadResponse,
}

impl CallErrorKind {
    pub fn label(&self) -> String {
        match self {
            CallErrorKind::Connect => "connect".into(),
            CallErrorKind::Timeout => "timeout".into(),
            CallErrorKind::Disconnected => "disconnected".into(),
            CallErrorKind::Status(code) => format!("http_{code}"),
            CallErrorKind::BadResponse => "bad_response".into(),
        }
    }
}

impl fmt::Display for CallErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// A failed call: its kind, and what happened for the log.
#[derive(Debug, Clone)]
pub struct CallError {
    pub kind: CallErrorKind,
    pub detail: String,
    /// The connection closed before the request went out: the server never saw it.
    pub unsent: bool,
}

impl CallError {
    pub fn new(kind: CallErrorKind, detail: impl Into<String>) -> Self {
        CallError {
            kind,
            detail: detail.into(),
            unsent: false,
        }
    }
}

/// The scorer's base URL, split for connecting and for requests.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// As given, normalised (`http://127.0.0.1:8080/`).
    pub url: String,
    /// `host:port` to connect to and to send as `Host`.
    authority: String,
    /// Path prefix, without a trailing `/` (empty for the root).
    prefix: String,
}

impl Target {
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |reason: &str| SimError::BadTarget {
            target: text.to_owned(),
            reason: reason.to_owned(),
        };
        let url = Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "http" {
            return Err(bad(
                "only http:// is supported (the scorer serves plain http)",
            ));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        let port = url.port_or_known_default().unwrap_or(80);
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("a query or fragment is not allowed"));
        }
        Ok(Target {
            url: url.to_string(),
            authority: format!("{host}:{port}"),
            prefix: url.path().trim_end_matches('/').to_owned(),
        })
    }

    /// The request target for `path` (`/v1/score`) under the base URL's path.
    pub fn path(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }

    pub fn authority(&self) -> &str {
        &self.authority
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    /// Connects within `connect_timeout`; every failure here is a connect error.
    pub async fn open(target: &Target, connect_timeout: Duration) -> Result<Self, CallError> {
        let connect = |e: &dyn fmt::Display| {
            CallError::new(
                CallErrorKind::Connect,
                format!("cannot connect to {}: {e}", target.authority),
            )
        };
        let stream = tokio::time::timeout(connect_timeout, TcpStream::connect(target.authority()))
            .await
            .map_err(|_| connect(&format!("no connection within {connect_timeout:?}")))?
            .map_err(|e| connect(&e))?;
        stream.set_nodelay(true).map_err(|e| connect(&e))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| connect(&e))?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                debug!(error = %err, "connection ended");
            }
        });
        Ok(Connection { sender })
    }

    /// False once the server closed it (idle keep-alive timeout) or it broke.
    pub fn usable(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Sends one request and reads the whole response: status and body.
    pub async fn send(
        &mut self,
        target: &Target,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(u16, Bytes), CallError> {
        let broken = |e: hyper::Error| CallError {
            unsent: e.is_canceled(),
            ..CallError::new(CallErrorKind::Disconnected, format!("{method} {path}: {e}"))
        };
        self.sender.ready().await.map_err(broken)?;
        let request = Request::builder()
            .method(method.clone())
            .uri(target.path(path))
            .header(HOST, target.authority())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| CallError::new(CallErrorKind::BadResponse, e.to_string()))?;
        let response = self.sender.send_request(request).await.map_err(broken)?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(broken)?
            .to_bytes();
        Ok((status, body))
    }
}

/// How calls are made: where to, and how long each step may take.
#[derive(Debug, Clone)]
pub struct Client {
    pub target: Target,
    /// From sending the request to the end of the response.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Calls re-sent on a new connection (see [`Client::call`]), shared by every clone.
    pub resent: Arc<AtomicU64>,
}

impl Client {
    /// One POST: connects first when `connection` is empty or closed, and leaves it empty when
    /// the connection cannot be trusted afterwards (broken, or abandoned mid-call).
    ///
    /// A reused keep-alive connection that the server closed just as the request went out
    /// fails with a request the server never saw; like every HTTP client, the call is then sent
    /// once more on a new connection, within the same `timeout` (and the time counts).
    pub async fn call(
        &self,
        connection: &mut Option<Connection>,
        path: &str,
        body: Bytes,
    ) -> Result<(u16, Bytes), CallError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let (open, reused) = match connection.take() {
                Some(open) if open.usable() => (connection.insert(open), true),
                _ => (
                    connection.insert(Connection::open(&self.target, self.connect_timeout).await?),
                    false,
                ),
            };
            let sent = open.send(&self.target, Method::POST, path, body.clone());
            match tokio::time::timeout_at(deadline, sent).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(err)) => {
                    *connection = None;
                    if reused && err.unsent {
                        self.resent.fetch_add(1, Ordering::Relaxed);
                        debug!(error = %err.detail, "keep-alive connection closed under the request; sending again");
                        continue;
                    }
                    return Err(err);
                }
                Err(_) => {
                    // the response may still arrive on this connection: never reuse it
                    *connection = None;
                    return Err(CallError::new(
                        CallErrorKind::Timeout,
                        format!("no response to POST {path} within {:?}", self.timeout),
                    ));
                }
            }
        }
    }

    /// Waits until `GET /readyz` answers 200, for at most `wait`; the error says what the
    /// scorer answered last (refused, a 503 with its reason, ...).
    pub async fn wait_ready(&self, wait: Duration) -> Result<()> {
        let target = &self.target;
        let started = Instant::now();
        let mut last;
        loop {
            let attempt = async {
                let mut connection = Connection::open(target, self.connect_timeout).await?;
                let asked = connection.send(target, Method::GET, "/readyz", Bytes::new());
                match tokio::time::timeout(self.timeout, asked).await {
                    Ok(answer) => answer,
                    Err(_) => Err(CallError::new(
                        CallErrorKind::Timeout,
                        format!("no answer to GET /readyz within {:?}", self.timeout),
                    )),
                }
            };
            match attempt.await {
                Ok((200, _)) => {
                    info!(target = %target.url, "scorer is ready");
                    return Ok(());
                }
                Ok((status, body)) => {
                    last = format!(
                        "http {status} {}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    );
                }
                Err(err) => last = err.detail,
            }
            let waited = started.elapsed();
            if waited >= wait {
                return Err(SimError::NotReady {
                    target: target.url.clone(),
                    waited,
                    last,
                });
            }
            debug!(last = %last, "scorer not ready yet");
            tokio::time::sleep(Duration::from_millis(200).min(wait - waited)).await;
        }
    }
}

/// The model a scorer served, as its `GET /v1/model` states it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServedModel {
    pub model_id: String,
    pub trees: Option<u64>,
    pub vocabulary_version: Option<String>,
    /// When the trainer published it.
    pub created_at: Option<String>,
}

impl ServedModel {
    /// Reads the scorer's `/v1/model` answer; `None` when it is not one.
    pub fn from_json(body: &[u8]) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        Some(ServedModel {
            model_id: v.get("modelVersion")?.as_str()?.to_owned(),
            trees: v.get("trees").and_then(serde_json::Value::as_u64),
            vocabulary_version: v
                .get("vocabularyVersion")
                .and_then(|s| s.as_str())
                .map(str::to_owned),
            created_at: v
                .pointer("/manifest/created_at")
                .and_then(|s| s.as_str())
                .map(str::to_owned),
        })
    }
}

impl Client {
    /// The model the target serves now, from `GET /v1/model`; `Err` says why it is unknown (a
    /// target that is not this project's scorer has no such endpoint).
    pub async fn served_model(&self) -> std::result::Result<ServedModel, String> {
        let mut connection = Connection::open(&self.target, self.connect_timeout)
            .await
            .map_err(|e| e.detail)?;
        let asked = connection.send(&self.target, Method::GET, "/v1/model", Bytes::new());
        match tokio::time::timeout(self.timeout, asked).await {
            Ok(Ok((200, body))) => ServedModel::from_json(&body)
                .ok_or_else(|| "GET /v1/model did not answer with a model".to_owned()),
            Ok(Ok((status, _))) => Err(format!("GET /v1/model answered http {status}")),
            Ok(Err(e)) => Err(e.detail),
            Err(_) => Err(format!(
                "no answer to GET /v1/model within {:?}",
                self.timeout
            )),
        }
    }
}

/// Idle connections of the open loop; the caller bounds how many are out at once.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<Vec<Connection>>,
}

impl Pool {
    /// An idle connection that still works, if any.
    pub fn take(&self) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(connection) = idle.pop() {
            if connection.usable() {
                return Some(connection);
            }
        }
        None
    }

    pub fn give_back(&self, connection: Connection) {
        if connection.usable() {
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(connection);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_checked_and_split() {
        let t = Target::parse("http://127.0.0.1:8080").expect("plain");
        assert_eq!(t.authority(), "127.0.0.1:8080");
        assert_eq!(t.path("/v1/score"), "/v1/score");
        let t = Target::parse("http://scorer.local/rtb/").expect("prefix");
        assert_eq!(t.authority(), "scorer.local:80");
        assert_eq!(t.path("/v1/score"), "/rtb/v1/score");
        for bad in ["127.0.0.1:8080", "https://x", "http://x/?a=1", "nope"] {
            let err = Target::parse(bad).expect_err(bad);
            assert!(err.to_string().contains("http://host:port"), "{err}");
        }
    }

    #[test]
    fn error_kinds_have_stable_labels() {
        assert_eq!(CallErrorKind::Status(503).label(), "http_503");
        assert_eq!(CallErrorKind::Connect.to_string(), "connect");
        assert!(CallErrorKind::Connect < CallErrorKind::Status(400));
    }

    #[tokio::test]
    async fn a_down_scorer_is_reported_quickly() {
        // a port nothing listens on: bind, note it, close
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let client = Client {
            target: Target::parse(&format!("http://127.0.0.1:{port}")).expect("target"),
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            resent: Arc::default(),
        };
        let started = std::time::Instant::now();
        let err = client
            .wait_ready(Duration::from_millis(300))
            .await
            .expect_err("down");
        assert!(started.elapsed() < Duration::from_secs(3));
        let text = err.to_string();
        assert!(
            text.contains("not ready") && text.contains("cannot connect"),
            "{text}"
        );
        let mut none = None;
        let err = client
            .call(&mut none, "/v1/score", Bytes::new())
            .await
            .expect_err("refused");
        assert_eq!(err.kind, CallErrorKind::Connect);
        assert!(none.is_none());
    }
}
