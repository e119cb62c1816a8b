//! `cinevec serve`: the HTTP transport (axum on tokio, tower-http layers) over the service's
//! operations ([`crate::service`]): the router and its handlers (parse, call one operation, map the
//! answer), request bodies, the error body, auth, metrics, the web page.
//!
//! [`Application::build`] binds its listener first (so `/healthz` answers at once and tests can use
//! port 0), then loads and cross-checks the artifacts in the background; until they are loaded, every
//! route that needs them answers 503 and `/readyz` says so. A load failure stops the server with one
//! line naming the mismatch.

pub mod api;
pub mod auth;
pub mod cache;
pub mod error;
pub mod extract;
pub mod listen;
pub mod metrics;
pub mod openai;
pub mod routes;
pub mod state;
pub mod web;

use crate::service::ServiceConfig;
use anyhow::{Context, Result};
pub use auth::ApiKeys;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use state::AppState;
use std::net::SocketAddr;
use std::time::Duration;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// The API contract, served at `/openapi.yaml`.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");
/// The human docs page, served at `/docs`.
pub const DOCS_HTML: &str = include_str!("docs.html");

/// The effective configuration (secrets wrapped): the HTTP side here, the service's in `service`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub bind: String,
    pub api_keys: ApiKeys,
    pub connections: listen::ConnLimits,
    pub cors_origins: Vec<String>,
    pub service: ServiceConfig,
}

/// Answer 503 when a request runs past its deadline (dropping it cancels its work; a queued
/// embedding job whose caller is gone is skipped by the model thread).
async fn deadline(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = state.config.service.request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => error::ApiError::Timeout(limit.as_millis() as u64).into_response(),
    }
}

fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o.trim() == "*") {
        AllowOrigin::any()
    } else {
        let list: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o.trim()).ok()).collect();
        AllowOrigin::list(list)
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            axum::http::header::CONTENT_TYPE,
            axum::http::header::AUTHORIZATION,
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([HeaderName::from_static("x-request-id")])
        .max_age(Duration::from_secs(600))
}

/// Answers smaller than this go uncompressed: a more-like-this answer (k=10, about 2 kB) is sent as
/// it is, where compressing would cost more time than its bytes on the wire (BENCHMARKS.md, issue 32).
pub const COMPRESS_ABOVE: u16 = 8 * 1024;

/// gzip or brotli (brotli at quality 4, tower-http's default) for a client that asks for either, on
/// answers of [`COMPRESS_ABOVE`] bytes or more, never on images (PNG is compressed already). A client
/// whose `Accept-Encoding` names neither gets the answer as it is.
fn compression() -> CompressionLayer<impl tower_http::compression::Predicate> {
    use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
    CompressionLayer::new()
        .gzip(true)
        .br(true)
        .compress_when(SizeAbove::new(COMPRESS_ABOVE).and(NotForContentType::IMAGES))
}

/// The full service: router plus layers.
pub fn app(state: AppState) -> axum::Router {
    let request_id = HeaderName::from_static("x-request-id");
    let config = state.config.clone();
    routes::router(state.clone())
        .layer(axum::middleware::from_fn_with_state(state, deadline))
        .layer(axum::extract::DefaultBodyLimit::max(config.service.max_body_bytes))
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(axum::middleware::from_fn(openai::errors))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(compression())
        .layer(cors(&config.cors_origins))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &axum::http::Request<_>| {
                    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                })
                // 5xx answers are expected while loading or shutting down (503): a warning, not an error.
                // Real internal errors are logged at ERROR where they happen (error.rs).
                .on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            error::ApiError::Internal("a handler panicked".into()).into_response()
        }))
}

/// A bound, loading service.
pub struct Application {
    listener: tokio::net::TcpListener,
    state: AppState,
    loading: tokio::task::JoinHandle<Result<()>>,
}

impl Application {
    /// Bind the listener and start loading the artifacts.
    pub async fn build(config: ServeConfig) -> Result<Self> {
        metrics::install();
        let listener = tokio::net::TcpListener::bind(&config.bind)
            .await
            .with_context(|| format!("cannot listen on {}", config.bind))?;
        tracing::info!(
            "config: bind {}, artifacts {}, db {}, model {}, api keys {}, body limit {} B, {} docs/request, deadline {:?}, queue {:?}, connections {:?}, index {:?}, CORS {:?}",
            config.bind,
            config.service.artifacts.display(),
            crate::catalog::store::redacted(&config.service.db),
            config.service.model.model,
            config.api_keys.describe(),
            config.service.max_body_bytes,
            config.service.max_documents,
            config.service.request_timeout,
            config.service.queue,
            config.connections,
            config.service.index,
            config.cors_origins
        );
        let state = AppState::new(config);
        let loader = state.clone();
        let loading = tokio::spawn(async move {
            let on_search: crate::service::SearchObserver = Box::new(metrics::search_time);
            let loaded = std::sync::Arc::new(
                crate::service::load(&loader.config.service, Some(metrics::batch_observer()), Some(on_search)).await?,
            );
            let _ = loader.loaded.set(loaded.clone());
            loaded.follow_store();
            let warm = loaded.clone();
            tokio::task::spawn_blocking(move || {
                warm.warm_map();
                // The map's temporaries (every movie's prediction and point) are free again; without
                // this the heap would keep their pages.
                listen::trim();
            });
            if loaded.snapshot_due() {
                tokio::task::spawn_blocking(move || loaded.save_snapshot_if_due());
            }
            Ok(())
        });
        Ok(Application { listener, state, loading })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serve until `shutdown` resolves (then drain in-flight requests) or loading fails.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let Application { listener, state, mut loading } = self;
        let stopping = state.stopping.clone();
        let service = state.loaded.clone();
        let limits = state.config.connections;
        let server = listen::serve(listener, app(state), limits, Default::default(), async move {
            shutdown.await;
            stopping.store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::info!("shutting down: draining in-flight requests");
        });
        let mut server = std::pin::pin!(server);
        let mut loaded = false;
        loop {
            tokio::select! {
                result = &mut server => {
                    // Drained: nothing writes any more.
                    if let Some(service) = service.get() {
                        service.close_store(std::time::Duration::from_secs(5)).await;
                    }
                    return result.context("server error");
                }
                outcome = &mut loading, if !loaded => match outcome {
                    Ok(Ok(())) => loaded = true,
                    Ok(Err(e)) => return Err(e),
                    Err(e) => return Err(anyhow::anyhow!("loading the artifacts failed: {e}")),
                },
            }
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// `cinevec serve`.
pub fn serve(config: ServeConfig) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let app = Application::build(config).await?;
        tracing::info!("listening on http://{}", app.local_addr());
        app.run_until_stopped(shutdown_signal()).await
    })
}
