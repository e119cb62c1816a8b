//! Hostile clients against the real connection loop and router, with no model or artifacts (the
//! server is not loaded: routes that need artifacts answer 503, which is enough for what is tested
//! here — connections, transport errors, and request parsing that happens before any artifact is used).

use cinevec::cli::ServeArgs;
use cinevec::server::listen::{self, ConnLimits, ConnStats};
use cinevec::server::state::AppState;
use clap::Parser;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

/// The full service (router and layers) on port 0, behind the connection loop with `limits`.
async fn start(limits: ConnLimits) -> (SocketAddr, Arc<ConnStats>, tokio::sync::oneshot::Sender<()>) {
    let config = Cli::parse_from(["cinevec", "--artifacts", "/nonexistent"]).serve.config().unwrap();
    let app = cinevec::server::app(AppState::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(ConnStats::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let s = stats.clone();
    tokio::spawn(async move {
        listen::serve(listener, app, limits, s, async move {
            let _ = stopped.await;
        })
        .await
    });
    (addr, stats, stop)
}

/// Send raw bytes on a new connection; the whole answer (the server closes after it).
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn split(answer: &str) -> (u16, String, serde_json::Value) {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head in {answer:?}"));
    let status = head[9..12].parse().unwrap();
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("body {body:?} is not JSON ({e}); head {head}"));
    (status, head.to_ascii_lowercase(), json)
}

fn assert_error_shape(answer: &str, status: u16, code: &str) {
    let (got, head, json) = split(answer);
    assert_eq!(got, status, "{answer}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(json["error"]["code"], code, "{json}");
    assert!(json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{json}");
}

/// How long until the server closes `s` (reads until EOF or an error).
async fn closed_after(mut s: TcpStream, started: Instant, limit: Duration) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    let end = started + limit;
    loop {
        match tokio::time::timeout_at(end.into(), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue, // an answer (e.g. 408-less close): keep reading to EOF
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_are_closed_after_the_header_timeout() {
    let timeout = Duration::from_millis(1500);
    let (addr, _, _stop) = start(ConnLimits { header_timeout: timeout, max_connections: 64 }).await;
    let started = Instant::now();
    let idle = TcpStream::connect(addr).await.unwrap();
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    // A kept-alive connection that answers one request, then goes quiet.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let kept_from = Instant::now();
    let limit = timeout * 3;
    let (a, b, c) = tokio::join!(
        closed_after(idle, started, limit),
        closed_after(half, started, limit),
        closed_after(kept, kept_from, limit)
    );
    for (what, t) in [("idle", a), ("half-sent", b), ("kept-alive idle", c)] {
        let t = t.unwrap_or_else(|| panic!("{what} connection still open after {limit:?}"));
        assert!(t >= timeout - Duration::from_millis(100), "{what} closed after {t:?}, before the timeout {timeout:?}");
        assert!(t <= timeout + Duration::from_millis(1000), "{what} closed after {t:?}, timeout {timeout:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_throughout_a_storm_of_slow_connections() {
    let max = 16;
    let (addr, stats, _stop) = start(ConnLimits { header_timeout: Duration::from_secs(5), max_connections: max }).await;
    let storm = 64;
    let mut slow = Vec::new();
    for i in 0..storm {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if i % 2 == 0 {
            s.write_all(b"POST /v1/embed HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        }
        slow.push(s);
    }
    // The bound holds: never more connections open than allowed, whatever is queued.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(stats.open.load(std::sync::atomic::Ordering::Relaxed) <= max);
    // Probe /healthz while the storm lasts; every probe is answered, within a bounded time: under
    // pressure slow connections get one second, so slots turn over (storm / max) times a second.
    let bound = Duration::from_secs((storm / max) as u64 + 2);
    let storm_started = Instant::now();
    let mut worst = Duration::ZERO;
    let mut probes = 0;
    while storm_started.elapsed() < Duration::from_secs(3) {
        let t = Instant::now();
        let answer =
            tokio::time::timeout(bound, raw(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
                .await
                .unwrap_or_else(|_| panic!("/healthz did not answer within {bound:?} during the storm"));
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        worst = worst.max(t.elapsed());
        probes += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(probes >= 2);
    // Every slow connection is closed by the server, none left holding a slot.
    let limit = bound + Duration::from_secs(3);
    let closed = futures_all(slow.into_iter().map(|s| closed_after(s, storm_started, limit))).await;
    let open: usize = closed.iter().filter(|c| c.is_none()).count();
    assert_eq!(open, 0, "{open} of {storm} slow connections still open after {limit:?}");
    let shed = stats.shed.load(std::sync::atomic::Ordering::Relaxed);
    assert!(shed > 0, "a full house must shed its oldest connections");
    eprintln!(
        "storm of {storm} slow connections, {max} slots: {probes} /healthz probes, slowest {worst:?}, {shed} shed"
    );
}

async fn futures_all<F: std::future::Future + Send + 'static>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_level_errors_have_the_json_error_shape() {
    let (addr, _, _stop) = start(ConnLimits { header_timeout: Duration::from_secs(5), max_connections: 64 }).await;
    // A garbage request line, answered by hyper before any service runs.
    assert_error_shape(&raw(addr, b"\x01\x02 garbage\r\n\r\n").await, 400, "bad_request");
    // A 100 KB URI: 414 from hyper.
    let long = format!("GET /v1/search?q={} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100_000));
    assert_error_shape(&raw(addr, long.as_bytes()).await, 414, "uri_too_long");
    // Bad percent-encoding in a path parameter: axum's `Path` rejection, reshaped by the middleware.
    let bad = raw(addr, b"GET /v1/movies/%FF%FE HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_error_shape(&bad, 400, "bad_request");
    // Unknown route and wrong method keep their shape.
    let unknown = raw(addr, b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_error_shape(&unknown, 404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_are_checked_before_anything_is_loaded() {
    let (addr, _, _stop) = start(ConnLimits { header_timeout: Duration::from_secs(5), max_connections: 64 }).await;
    let post = |body: &str| {
        format!(
            "POST /v1/similar HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    for body in [
        r#"{"movie": {"title": "Heat"}, "k": null}"#,
        r#"{"movie": {"title": "Heat"}, "min_votes": 1.5}"#,
        r#"{"movie": {"title": "Heat"}, "min_year": 18446744073709551616}"#,
        r#"{"movie": {"title": "Heat"}, "min_rating": null}"#,
    ] {
        let answer = raw(addr, post(body).as_bytes()).await;
        assert_error_shape(&answer, 422, "invalid_request");
    }
    // A valid body gets past parsing: 503 because nothing is loaded.
    let answer = raw(addr, post(r#"{"movie": {"title": "Heat"}, "k": 5.0}"#).as_bytes()).await;
    assert_error_shape(&answer, 503, "unavailable");
}
