//! `cinevec serve`: the HTTP service (axum on tokio, tower-http layers).
//!
//! [`Application::build`] binds its listener first (so `/healthz` answers at once and tests can use
//! port 0), then loads and cross-checks the artifacts in the background; until they are loaded, every
//! route that needs them answers 503 and `/readyz` says so. A load failure stops the server with one
//! line naming the mismatch.

pub mod api;
pub mod auth;
pub mod catalog;
pub mod error;
pub mod extract;
pub mod listen;
pub mod metrics;
pub mod routes;
pub mod state;
pub mod web;

use crate::cli::ModelArgs;
use crate::engine::worker::QueueLimits;
use crate::index::IndexParams;
use anyhow::{Context, Result};
use auth::ApiKeys;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use clap::Args;
use state::AppState;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// The API contract, served at `/openapi.yaml`.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");
/// The human docs page, served at `/docs`.
pub const DOCS_HTML: &str = include_str!("docs.html");

/// `cinevec serve` flags. Every one has an environment fallback.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CINEVEC_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// Folder with the embedding set, the rating head and the saved HNSW graph.
    #[arg(long, env = "CINEVEC_ARTIFACTS", default_value = "artifacts")]
    pub artifacts: PathBuf,
    /// Catalog store (SQLite file).
    #[arg(long, env = "CINEVEC_DB", default_value = "artifacts/catalog.db")]
    pub db: String,
    #[command(flatten)]
    pub model: ModelArgs,
    /// API key required by writes (`POST /v1/movies`); without one (here or in `--api-key-file`),
    /// writes are refused. Prefer `--api-key-file`: a flag's value shows in `ps`.
    #[arg(long, env = "CINEVEC_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// File of API keys, one a line (blank lines and `#` comments ignored); any of them is accepted.
    /// Read again when it changes, so a key is rotated by adding the new one, moving clients over and
    /// removing the old one, with no restart.
    #[arg(long, env = "CINEVEC_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Largest request body, in bytes.
    #[arg(long, env = "CINEVEC_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most movie documents in one predict/embed request.
    #[arg(long, env = "CINEVEC_MAX_DOCUMENTS", default_value_t = 64)]
    pub max_documents: usize,
    /// Deadline of one request, in milliseconds; a request over it gets 503.
    #[arg(long, env = "CINEVEC_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Documents that may wait for the model (summed over the waiting requests); a request that would
    /// go over it, or whose estimated wait is longer than the request deadline, gets 429 at once.
    #[arg(long, env = "CINEVEC_QUEUE_CAPACITY", default_value_t = 256)]
    pub queue_capacity: usize,
    /// A connection that sends no complete request head within this many milliseconds (a new one, or
    /// a kept-alive one between requests) is closed.
    #[arg(long, env = "CINEVEC_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// Most client connections open at once (clamped below the descriptor limit); more wait in the
    /// listen backlog until one closes.
    #[arg(long, env = "CINEVEC_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Most documents the model embeds in one forward pass.
    #[arg(long, env = "CINEVEC_MAX_BATCH", default_value_t = 32)]
    pub max_batch: usize,
    /// Most padded tokens (documents × longest) in one forward pass.
    #[arg(long, env = "CINEVEC_MAX_BATCH_TOKENS", default_value_t = 16_384)]
    pub max_batch_tokens: usize,
    /// Allowed CORS origins, comma-separated; `*` allows any. Pages on other sites that embed
    /// `/widget.js` need their origin here (scheme, host and port, e.g. `http://shop.example:3000`).
    #[arg(long, env = "CINEVEC_CORS_ORIGINS", default_value = "*", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    #[command(flatten)]
    pub graph: crate::cli::IndexArgs,
    /// HNSW: candidate list while searching (higher: better recall, slower).
    #[arg(long, env = "CINEVEC_HNSW_EF_SEARCH", default_value_t = IndexParams::default().ef_search)]
    pub hnsw_ef_search: usize,
    /// HNSW: candidate list of more-like-this by id, whose search starts at the movie's own node
    /// (among its neighbours, so a smaller list reaches the same recall).
    #[arg(long, env = "CINEVEC_HNSW_EF_SEARCH_BY_ID", default_value_t = IndexParams::default().ef_search_by_row)]
    pub hnsw_ef_search_by_id: usize,
    /// HNSW: walk the graph on an int8 copy of the vectors (`index.q8`, a quarter of the matrix more
    /// memory) instead of the f32 vectors: graph searches about 2.5-3 × faster. More-like-this by id
    /// reads the neighbour table instead of walking the graph whenever it can, so the walk serves
    /// posted documents, recommendations, k over 16 and selective filters.
    #[arg(long, env = "CINEVEC_INT8_WALK", value_parser = clap::builder::BoolishValueParser::new())]
    pub int8_walk: bool,
}

/// The effective configuration (secrets wrapped).
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub bind: String,
    pub artifacts: PathBuf,
    pub db: String,
    pub model: ModelArgs,
    pub api_keys: ApiKeys,
    pub max_body_bytes: usize,
    pub max_documents: usize,
    pub request_timeout: Duration,
    pub queue: QueueLimits,
    pub connections: listen::ConnLimits,
    pub index: IndexParams,
    pub cors_origins: Vec<String>,
}

impl ServeArgs {
    /// The effective configuration; fails only on an unreadable `--api-key-file`.
    pub fn config(self) -> Result<ServeConfig> {
        let request_timeout = Duration::from_millis(self.request_timeout_ms.max(1));
        Ok(ServeConfig {
            bind: self.bind,
            artifacts: self.artifacts,
            db: self.db,
            model: self.model,
            api_keys: ApiKeys::new(self.api_key, self.api_key_file)?,
            max_body_bytes: self.max_body_bytes,
            max_documents: self.max_documents.max(1),
            request_timeout,
            queue: QueueLimits {
                capacity: self.queue_capacity.max(1),
                max_batch: self.max_batch.max(1),
                max_batch_tokens: self.max_batch_tokens.max(1),
                max_wait: request_timeout,
            },
            connections: listen::ConnLimits {
                header_timeout: Duration::from_millis(self.header_timeout_ms.max(1)),
                max_connections: self.max_connections.max(1),
            }
            .effective(),
            index: IndexParams {
                ef_search_by_row: self.hnsw_ef_search_by_id.max(1),
                int8_walk: self.int8_walk,
                ..self.graph.params(self.hnsw_ef_search)
            },
            cors_origins: self.cors_origins,
        })
    }
}

/// Answer 503 when a request runs past its deadline (dropping it cancels its work; a queued
/// embedding job whose caller is gone is skipped by the model thread).
async fn deadline(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = state.config.request_timeout;
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

/// The full service: router plus layers.
pub fn app(state: AppState) -> axum::Router {
    let request_id = HeaderName::from_static("x-request-id");
    let config = state.config.clone();
    routes::router(state.clone())
        .layer(axum::middleware::from_fn_with_state(state, deadline))
        .layer(axum::extract::DefaultBodyLimit::max(config.max_body_bytes))
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(cors(&config.cors_origins))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        })
        // 5xx answers are expected while loading or shutting down (503): a warning, not an error.
        // Real internal errors are logged at ERROR where they happen (error.rs).
        .on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::WARN)))
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
            config.artifacts.display(),
            config.db,
            config.model.model,
            config.api_keys.describe(),
            config.max_body_bytes,
            config.max_documents,
            config.request_timeout,
            config.queue,
            config.connections,
            config.index,
            config.cors_origins
        );
        let state = AppState::new(config);
        let loader = state.clone();
        let loading = tokio::spawn(async move {
            let loaded = std::sync::Arc::new(state::load(&loader.config).await?);
            let _ = loader.loaded.set(loaded.clone());
            if loaded.snapshot_due.is_some() {
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
    pub async fn run_until_stopped(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Result<()> {
        let Application { listener, state, mut loading } = self;
        let stopping = state.stopping.clone();
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
                result = &mut server => return result.context("server error"),
                outcome = &mut loading, if !loaded => match outcome {
                    Ok(Ok(())) => loaded = true,
                    Ok(Err(e)) => return Err(e),
                    Err(e) => return Err(anyhow::anyhow!("loading the artifacts failed: {e}")),
                },
            }
        }
    }
}

/// glibc's allocator, set for a long-running server before any thread starts: two arenas instead of
/// one per core times eight (threads that allocate now and then — the model's, the blocking pool's,
/// rayon's — each kept freed memory of their own), and free memory above 1 MiB returned to the
/// system (a fixed threshold instead of one that grows with the largest buffer freed so far). At
/// 242k movies this keeps peak RSS within a few MiB of its value at ready (~620 MiB) instead of
/// growing ~40 MiB under load, with no measurable cost to request latency (BENCHMARKS.md). Either
/// setting given in the environment (`MALLOC_ARENA_MAX`, `MALLOC_TRIM_THRESHOLD_`) wins.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; called before the runtime's threads start.
        unsafe {
            if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
                libc::mallopt(libc::M_ARENA_MAX, 2);
            }
            if std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_none() {
                libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 20);
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
pub fn serve(args: ServeArgs) -> Result<()> {
    tune_allocator();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let app = Application::build(args.config()?).await?;
        tracing::info!("listening on http://{}", app.local_addr());
        app.run_until_stopped(shutdown_signal()).await
    })
}
