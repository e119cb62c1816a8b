//! Prometheus metrics: requests and latencies per route, queue depth, batch sizes, embedding and
//! search times. One recorder per process (tests start several servers in one process and share it).

use crate::engine::worker::{BatchObserver, QueueStats};
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// Install the recorder (once per process).
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full("cinevec_embed_batch_size".into()), BATCH_BUCKETS))
            .expect("bucket lists are non-empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (e.g. by an embedding application): then this
        // handle only renders what cinevec records through it, which is still correct for /metrics.
        let _ = metrics::set_global_recorder(recorder);
        // Histograms keep every recorded value until they are folded into their buckets, which
        // `render` does at a scrape and `run_upkeep` otherwise: without this a server nobody scrapes
        // would grow by 8 bytes per request and histogram (about 12 MB per million requests).
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || loop {
            std::thread::sleep(Duration::from_secs(5));
            upkeep.run_upkeep();
        });
        handle
    })
}

pub fn render() -> String {
    install().render()
}

/// Middleware: count and time every request by route template, method and status.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("cinevec_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("cinevec_http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Called by the model thread after each forward pass.
pub fn batch_observer() -> BatchObserver {
    install();
    Box::new(|docs: usize, elapsed: Duration| {
        metrics::histogram!("cinevec_embed_batch_size").record(docs as f64);
        metrics::histogram!("cinevec_embed_batch_seconds").record(elapsed.as_secs_f64());
    })
}

pub fn search_time(exact: bool, elapsed: Duration) {
    let kind = if exact { "exact" } else { "hnsw" };
    metrics::histogram!("cinevec_search_seconds", "kind" => kind).record(elapsed.as_secs_f64());
}

/// Copy the queue's counters into gauges (at scrape time).
pub fn observe_queue(stats: &QueueStats) {
    metrics::gauge!("cinevec_embed_queue_depth").set(stats.depth.load(Ordering::Relaxed) as f64);
    metrics::gauge!("cinevec_embed_documents").set(stats.documents.load(Ordering::Relaxed) as f64);
    metrics::gauge!("cinevec_embed_batches").set(stats.batches.load(Ordering::Relaxed) as f64);
    metrics::gauge!("cinevec_embed_abandoned_jobs").set(stats.abandoned.load(Ordering::Relaxed) as f64);
}
