//! The socket under actix's HTTP/1 dispatcher.
//!
//! Some requests never reach a handler: the dispatcher answers a malformed request line or
//! header with 400, a request head larger than its buffer with 431, and a head not complete
//! within the client request timeout with 408, each with an empty body, and closes the
//! connection. No middleware sees them, so they would be missing from `/metrics` and a client
//! would get no reason. [`Watched`] looks at what the dispatcher writes: a write that ends in a
//! bodiless 400, 408 or 431 head is one of those answers (every answer of the app carries its
//! JSON error body, so its heads name a non-zero length). It is counted like an app error and
//! sent with the same JSON body the app's errors have.
//!
//! A head is recognised only when it arrives whole in one write; actix writes such an answer in
//! one piece into an empty buffer, so a split head would need the socket to accept only part
//! of ~150 bytes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::web;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::metrics::ErrorKind;
use crate::state::AppState;

/// A connection whose refused-before-the-app answers are counted and given a body.
pub struct Watched<T> {
    io: T,
    state: web::Data<AppState>,
    /// Bytes accepted from the dispatcher but not yet written (a replaced answer).
    pending: Vec<u8>,
    written: usize,
}

impl<T> Watched<T> {
    pub fn new(io: T, state: web::Data<AppState>) -> Self {
        Watched {
            io,
            state,
            pending: Vec::new(),
            written: 0,
        }
    }
}

/// What the dispatcher's bodiless answer means, by its status.
fn refused_kind(status: u16) -> Option<(ErrorKind, &'static str)> {
    match status {
        400 => Some((
            ErrorKind::MalformedHttp,
            "the request is not valid HTTP (its request line, a header or the body framing)",
        )),
        408 => Some((
            ErrorKind::HeadTimeout,
            "the request head did not arrive in time; send the whole head at once",
        )),
        431 => Some((
            ErrorKind::HeadTooLarge,
            "the request head is too large; send shorter headers",
        )),
        _ => None,
    }
}

/// Where the last response head in `buf` starts, its status, and whether it declares no body;
/// only when `buf` ends with that head.
fn trailing_bodiless_head(buf: &[u8]) -> Option<(usize, u16)> {
    if !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let start = find_last(buf, b"HTTP/1.1 ")?;
    let head = &buf[start..];
    let status = std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()?;
    let text = std::str::from_utf8(head).ok()?.to_ascii_lowercase();
    text.contains("\r\ncontent-length: 0\r\n")
        .then_some((start, status))
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// The same answer with a JSON body saying what was wrong.
fn replacement(status: u16, kind: ErrorKind, message: &str) -> Vec<u8> {
    let body = serde_json::json!({ "error": kind.label(), "message": message }).to_string();
    let reason = actix_web::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl<T: AsyncWrite + Unpin> Watched<T> {
    /// Writes what was accepted earlier; ready once nothing is pending.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.pending[self.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        if let Some((start, status)) = trailing_bodiless_head(buf)
            && let Some((kind, message)) = refused_kind(status)
        {
            this.state.metrics.failed(None, kind, Default::default());
            this.pending.extend_from_slice(&buf[..start]);
            this.pending.extend(replacement(status, kind, message));
            // taken whole: the rest goes out on the next write, flush or shutdown
            let _ = this.poll_pending(cx);
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_shutdown(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_a_trailing_bodiless_head() {
        let refused = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\ndate: Tue, 01 Dec 2026 10:00:00 GMT\r\n\r\n";
        assert_eq!(trailing_bodiless_head(refused), Some((0, 400)));
        // after an answered request on the same connection
        let mut both = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".to_vec();
        let first = both.len();
        both.extend_from_slice(refused);
        assert_eq!(trailing_bodiless_head(&both), Some((first, 400)));
        // the app's own 400 carries its body
        let app = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 40\r\ncontent-type: application/json\r\n\r\n";
        assert_eq!(trailing_bodiless_head(app), None);
        let app_full = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(trailing_bodiless_head(app_full), None);
        assert_eq!(
            trailing_bodiless_head(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n"
            ),
            Some((0, 431))
        );
        // an empty 200 is not refused
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(
            trailing_bodiless_head(ok).and_then(|(_, s)| refused_kind(s)),
            None
        );
    }

    #[test]
    fn the_replacement_is_a_complete_json_answer() {
        let bytes = replacement(431, ErrorKind::HeadTooLarge, "too large");
        let text = String::from_utf8(bytes).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["error"], "header_too_large");
    }
}
