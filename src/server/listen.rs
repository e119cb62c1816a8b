//! The connection loop: hyper's HTTP/1 server under a bound on open connections, with a header-read
//! timeout, instead of `axum::serve` (which has neither).
//!
//! - **Header-read timeout** (`--header-timeout-ms`): hyper closes a connection that has not sent a
//!   complete request head within it. The clock runs whenever the connection waits for a head, so it
//!   is also the keep-alive idle timeout: a new connection that sends nothing, one that sends half its
//!   headers, and a kept-alive one that goes quiet are all closed after it.
//! - **Connection bound** (`--max-connections`, clamped below the descriptor limit): at the bound the
//!   loop stops accepting, so further connections wait in the kernel's backlog (queued, never an
//!   `accept` failure for lack of descriptors) and are taken in order as slots free up. With every
//!   slot taken, the connections open longer than [`SHED_AGE`] are asked to close (hyper's graceful
//!   close: one waiting for a head — idle, slow, half-sent — closes at once, one with a request in
//!   flight answers it first), so slots turn over and a `/healthz` probe queued behind a storm is
//!   answered within about a second per slot-full of slow connections ahead of it. Under pressure
//!   (three quarters of the slots taken) a new connection also gets a short header timeout
//!   ([`PRESSURE_HEADER_TIMEOUT`]): a real client sends its head in milliseconds.
//! - **Memory after a storm**: when the connections of a storm have all closed, the freed buffers are
//!   handed back to the system (`malloc_trim`), so RSS returns to its level before the storm.
//! - **Hyper's own answers in the one error shape**: a request hyper cannot parse (a garbage request
//!   line, a URI over 64 KiB, too many header bytes) is answered by hyper itself, before any service
//!   runs, with an empty body. [`JsonErrors`] wraps the socket and gives such an answer — the only
//!   4xx head written without a `content-type` — the JSON error body.
//! - **Graceful shutdown**: once `shutdown` resolves the loop stops accepting, idle connections are
//!   closed and in-flight requests finish; `serve` returns when every connection has closed.

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

/// With every slot taken, connections open at least this long are asked to close (see the module notes).
pub const SHED_AGE: Duration = Duration::from_millis(250);

/// Header-read timeout of a connection accepted while three quarters of the slots are taken.
pub const PRESSURE_HEADER_TIMEOUT: Duration = Duration::from_secs(1);

/// Descriptors kept free for everything that is not a client connection (the store, the model and
/// artifact files, the logs).
const RESERVED_DESCRIPTORS: usize = 64;

/// A storm large enough to be worth a `malloc_trim` once it is over.
const STORM: usize = 64;

/// Limits of the connection loop.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Time a connection may take to send a request head (new or between kept-alive requests).
    pub header_timeout: Duration,
    /// Most connections open at once (after [`ConnLimits::effective`]: below the descriptor limit).
    pub max_connections: usize,
}

impl ConnLimits {
    /// The limits actually applied: the connection bound clamped below the process's descriptor limit.
    pub fn effective(self) -> ConnLimits {
        let max = match descriptor_limit() {
            Some(limit) => self.max_connections.min(limit.saturating_sub(RESERVED_DESCRIPTORS).max(1)),
            None => self.max_connections,
        };
        ConnLimits { max_connections: max.max(1), ..self }
    }
}

fn descriptor_limit() -> Option<usize> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            return Some(usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX));
        }
    }
    None
}

/// Open connections, for the metrics.
#[derive(Debug, Default)]
pub struct ConnStats {
    pub open: AtomicUsize,
    /// Requests to close sent to old connections while every slot was taken (one connection may get
    /// several before it closes).
    pub shed: std::sync::atomic::AtomicU64,
    /// Most connections open at once since the last trim.
    peak: AtomicUsize,
}

/// Open connections, by arrival, each with the signal that asks it to close.
#[derive(Default)]
struct Registry {
    next: u64,
    open: std::collections::BTreeMap<u64, (Instant, Arc<Notify>)>,
}

/// Ask the connections older than [`SHED_AGE`] to close: those waiting for a head close at once, those
/// with a request in flight after answering it.
fn shed_old(registry: &Mutex<Registry>) -> usize {
    let registry = registry.lock().expect("never poisoned: no panics under the lock");
    let mut asked = 0;
    for (since, close) in registry.open.values() {
        if since.elapsed() < SHED_AGE {
            break; // by arrival: the rest are younger
        }
        close.notify_one();
        asked += 1;
    }
    asked
}

/// Serve `app` on `listener` until `shutdown` resolves, then drain.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    stats: Arc<ConnStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = limits.effective();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let registry = Arc::new(Mutex::new(Registry::default()));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            // Every slot taken: the oldest connections are asked to close (again every tick, as more
            // of them age), and the loop waits for a slot; new connections wait in the backlog.
            Err(_) => loop {
                let asked = shed_old(&registry);
                if asked > 0 {
                    stats.shed.fetch_add(asked as u64, Ordering::Relaxed);
                }
                tokio::select! {
                    permit = slots.clone().acquire_owned() => break permit.expect("the semaphore is never closed"),
                    _ = tokio::time::sleep(SHED_AGE / 2) => continue,
                    _ = &mut shutdown => return drain(stop, slots, limits.max_connections).await,
                }
            },
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Per-connection errors (reset before accept) cost nothing; anything else (out of
                    // descriptors after all) is waited out rather than spun on.
                    if !matches!(e.kind(), std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset) {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let open = stats.open.fetch_add(1, Ordering::Relaxed) + 1;
        stats.peak.fetch_max(open, Ordering::Relaxed);
        let pressed = open * 4 > limits.max_connections * 3;
        let header_timeout =
            if pressed { limits.header_timeout.min(PRESSURE_HEADER_TIMEOUT) } else { limits.header_timeout };
        // Requests in flight on this connection (a shed connection with none is cut at once).
        let busy = Arc::new(AtomicUsize::new(0));
        let service = {
            let (app, busy) = (app.clone(), busy.clone());
            tower::service_fn(move |req: axum::extract::Request<hyper::body::Incoming>| {
                let guard = InFlight::new(busy.clone());
                let call = tower::ServiceExt::oneshot(app.clone(), req);
                async move {
                    let response = call.await;
                    drop(guard);
                    response
                }
            })
        };
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(JsonErrors::new(stream)), TowerToHyperService::new(service));
        let close = Arc::new(Notify::new());
        let id = {
            let mut r = registry.lock().expect("never poisoned");
            r.next += 1;
            let id = r.next;
            r.open.insert(id, (Instant::now(), close.clone()));
            id
        };
        let (stats, registry, mut stopping) = (stats.clone(), registry.clone(), stopping.clone());
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = close.notified() => {
                    // Graceful first; a connection still open after SHED_AGE with no request in flight
                    // is stuck on a slow head (hyper waits for it): it is dropped, which closes it.
                    connection.as_mut().graceful_shutdown();
                    loop {
                        match tokio::time::timeout(SHED_AGE, connection.as_mut()).await {
                            Ok(result) => break result,
                            Err(_) if busy.load(Ordering::Relaxed) == 0 => break Ok(()),
                            Err(_) => continue,
                        }
                    }
                }
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            // Timeouts, resets and malformed requests end here; hyper has already answered what it can.
            if let Err(e) = result {
                tracing::debug!("connection closed: {e}");
            }
            registry.lock().expect("never poisoned").open.remove(&id);
            drop(permit);
            connection_closed(&stats);
        });
    }
    drain(stop, slots, limits.max_connections).await
}

/// Counts a request in flight until dropped (also when the request is cancelled).
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        InFlight(count)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Stop accepting, ask every connection to close after its request in flight, and wait for them all.
async fn drain(stop: tokio::sync::watch::Sender<bool>, slots: Arc<Semaphore>, max: usize) -> std::io::Result<()> {
    let _ = stop.send(true);
    let _ = slots.acquire_many(max as u32).await;
    Ok(())
}

/// Count a closed connection; the last one of a storm returns the freed memory to the system.
fn connection_closed(stats: &ConnStats) {
    let open = stats.open.fetch_sub(1, Ordering::Relaxed) - 1;
    if open == 0 && stats.peak.swap(0, Ordering::Relaxed) >= STORM {
        tokio::task::spawn_blocking(trim);
    }
}

/// Hand the heap's free memory back to the system (glibc keeps what large temporaries freed).
pub(crate) fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A connection's socket, rewriting hyper's automatic error answers (see the module notes).
pub struct JsonErrors<S> {
    inner: S,
    /// A rewritten answer being written: its bytes, how many are out, and the length of the write it
    /// replaces (reported to hyper once all of it is out).
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<S> JsonErrors<S> {
    pub fn new(inner: S) -> Self {
        JsonErrors { inner, pending: None }
    }
}

/// The JSON answer replacing `buf`, when `buf` is a complete 4xx head with no body and no content type
/// (what hyper writes for a request it could not parse; the service's answers always have a type).
pub fn rewrite_automatic_error(buf: &[u8]) -> Option<Vec<u8>> {
    if !(buf.starts_with(b"HTTP/1.1 4") || buf.starts_with(b"HTTP/1.0 4")) {
        return None;
    }
    let end = memchr::memmem::find(buf, b"\r\n\r\n")?;
    if end + 4 != buf.len() {
        return None;
    }
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let headers: Vec<&str> = lines.collect();
    let lower: Vec<String> = headers.iter().map(|h| h.to_ascii_lowercase()).collect();
    if lower.iter().any(|h| h.starts_with("content-type:")) || !lower.iter().any(|h| h == "content-length: 0") {
        return None;
    }
    let status = axum::http::StatusCode::from_bytes(status_line.get(9..12)?.as_bytes()).ok()?;
    let message = match status {
        axum::http::StatusCode::URI_TOO_LONG => "the request URI is longer than 65,534 bytes",
        axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "the request headers are too large",
        _ => "malformed HTTP request",
    };
    let body = super::error::body_for(status, message);
    let mut out = format!("{status_line}\r\n");
    for (h, l) in headers.iter().zip(&lower) {
        if !l.starts_with("content-length:") {
            out.push_str(h);
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!("content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len()));
    Some(out.into_bytes())
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonErrors<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonErrors<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.pending.is_none() {
            match rewrite_automatic_error(buf) {
                Some(answer) => this.pending = Some((answer, 0, buf.len())),
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        // hyper retries the same write after `Pending`, so the rewritten answer is finished first.
        let (answer, sent, replaced) = this.pending.as_mut().expect("set above");
        while *sent < answer.len() {
            match Pin::new(&mut this.inner).poll_write(cx, &answer[*sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let replaced = *replaced;
        this.pending = None;
        Poll::Ready(Ok(replaced))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    /// Not vectored: hyper then writes each head in one piece, which the rewrite needs.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_bound_stays_below_the_descriptor_limit() {
        let limits = ConnLimits { header_timeout: Duration::from_secs(1), max_connections: usize::MAX }.effective();
        let fds = descriptor_limit().unwrap();
        assert!(limits.max_connections < fds, "{} connections with {fds} descriptors", limits.max_connections);
        let small = ConnLimits { header_timeout: Duration::from_secs(1), max_connections: 3 }.effective();
        assert_eq!(small.max_connections, 3);
    }

    #[test]
    fn only_bodiless_untyped_4xx_heads_are_rewritten() {
        let hyper = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Fri, 04 Dec 2026 06:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(rewrite_automatic_error(hyper).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"));
        assert!(head.contains("date: Fri") && head.contains("content-type: application/json"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "uri_too_long");
        // The service's own answers (typed, or with a body) and body bytes pass untouched.
        assert!(rewrite_automatic_error(
            b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n"
        )
        .is_none());
        assert!(rewrite_automatic_error(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(rewrite_automatic_error(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nmore").is_none());
        assert!(rewrite_automatic_error(b"{\"a\": 1}").is_none());
    }
}
