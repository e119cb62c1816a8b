//! `cinevec serve`.

use super::args::*;
use crate::engine::worker::QueueLimits;
use crate::index::IndexParams;
use crate::server::listen::ConnLimits;
use crate::server::{ApiKeys, ServeConfig};
use crate::service::ServiceConfig;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// `cinevec serve` flags. Every one has an environment fallback.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CINEVEC_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// Folder with the embedding set, the rating head and the saved HNSW graph, as `cinevec build
    /// --artifacts DIR` made it; named, the store (DIR/catalog.db) and the model (DIR/models) are looked
    /// for there too unless --db or --models-dir say otherwise. [default: artifacts]
    #[arg(long, env = "CINEVEC_ARTIFACTS", value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
    /// Catalog store: a SQLite file, or a PostgreSQL database (`postgres://user:password@host:port/db`)
    /// that several replicas share (each applies the others' writes within a second).
    /// [default: artifacts/catalog.db, or DIR/catalog.db of --artifacts DIR]
    #[arg(long, env = "CINEVEC_DB", hide_env_values = true)]
    pub db: Option<String>,
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
    pub graph: IndexArgs,
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

impl ServeArgs {
    /// The effective configuration; fails only on an unreadable `--api-key-file`.
    pub fn config(self) -> anyhow::Result<ServeConfig> {
        let request_timeout = Duration::from_millis(self.request_timeout_ms.max(1));
        Ok(ServeConfig {
            bind: self.bind,
            api_keys: ApiKeys::new(self.api_key, self.api_key_file)?,
            connections: ConnLimits {
                header_timeout: Duration::from_millis(self.header_timeout_ms.max(1)),
                max_connections: self.max_connections.max(1),
            }
            .effective(),
            cors_origins: self.cors_origins,
            service: ServiceConfig {
                db: DbArgs { db: self.db }.url(self.artifacts.as_deref()),
                model: self.model.options_under(self.artifacts.as_deref()),
                artifacts: artifacts_or_default(&self.artifacts),
                max_body_bytes: self.max_body_bytes,
                max_documents: self.max_documents.max(1),
                request_timeout,
                queue: QueueLimits {
                    capacity: self.queue_capacity.max(1),
                    max_batch: self.max_batch.max(1),
                    max_batch_tokens: self.max_batch_tokens.max(1),
                    max_wait: request_timeout,
                },
                index: IndexParams {
                    ef_search_by_row: self.hnsw_ef_search_by_id.max(1),
                    int8_walk: self.int8_walk,
                    ..self.graph.params(self.hnsw_ef_search)
                },
            },
        })
    }
}
