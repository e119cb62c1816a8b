//! What the operations return: plain serialisable values (the HTTP server sends them as JSON, in the
//! shapes `openapi.yaml` documents).

use super::live::Why;
use super::recommend::Strategy;
use crate::head::Prediction;
use serde::Serialize;
use serde_json::Value;

/// A movie as the API returns it.
#[derive(Debug, Serialize)]
pub struct MovieView {
    pub id: String,
    pub title: String,
    pub year: Option<i64>,
    pub rating: Option<f64>,
    pub votes: Option<u64>,
    pub document: Value,
    pub predicted: Prediction,
    pub source: String,
}

/// A movie in a result list.
#[derive(Debug, Serialize)]
pub struct MovieSummary {
    pub id: String,
    pub title: String,
    pub year: Option<i64>,
    pub rating: Option<f64>,
    pub votes: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Neighbour {
    pub id: String,
    pub title: String,
    pub year: Option<i64>,
    pub rating: Option<f64>,
    /// Cosine similarity with the query (for `linear` recommendations: the decision function).
    pub score: f32,
    pub why: Why,
}

#[derive(Debug, Serialize)]
pub struct SimilarResponse {
    /// The movie the neighbours are similar to (absent for a posted document).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<MovieSummary>,
    pub k: usize,
    /// Results skipped before these (`offset`).
    pub offset: usize,
    pub exact: bool,
    pub results: Vec<Neighbour>,
    /// For a posted document: its token count and whether it was truncated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct RecommendResponse {
    pub strategy: Strategy,
    pub k: usize,
    /// Results skipped before these (`offset`).
    pub offset: usize,
    pub results: Vec<Neighbour>,
    /// Example ids the catalog does not hold (skipped), in the order given.
    pub ignored: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PredictItem {
    pub title: String,
    pub rating: f64,
    pub low: f64,
    pub high: f64,
    pub tokens: usize,
    pub truncated: bool,
}

#[derive(Debug, Serialize)]
pub struct PredictResponse {
    /// Nominal coverage of `[low, high]` (from held-out residuals).
    pub interval: f64,
    pub predictions: Vec<PredictItem>,
}

#[derive(Debug, Serialize)]
pub struct EmbedItem {
    pub vector: Vec<f32>,
    pub tokens: usize,
    pub truncated: bool,
}

#[derive(Debug, Serialize)]
pub struct EmbedResponse {
    pub model: String,
    pub dim: usize,
    pub max_tokens: usize,
    pub embeddings: Vec<EmbedItem>,
}

/// The served embedding model, as the OpenAI-compatible routes describe it.
#[derive(Debug, Clone, Serialize)]
pub struct ServedModel {
    pub id: String,
    pub dim: usize,
    pub max_tokens: usize,
    /// When the embedding set was made, Unix seconds (0 if unknown).
    pub created: u64,
}

#[derive(Debug, Serialize)]
pub struct AddMovieResponse {
    /// `true` when the id was new, `false` when an existing movie was replaced.
    pub created: bool,
    pub movie: MovieView,
    pub tokens: usize,
    pub truncated: bool,
}

/// `DELETE /v1/movies/{id}`.
#[derive(Debug, Serialize)]
pub struct DeleteMovieResponse {
    pub id: String,
    pub deleted: bool,
}

#[derive(Debug, Serialize)]
pub struct SearchResponse {
    pub query: String,
    pub results: Vec<MovieSummary>,
}

/// What the service is (`GET /v1/info`).
#[derive(Debug, Serialize)]
pub struct Info {
    pub version: &'static str,
    pub model: ModelInfo,
    pub counts: Counts,
    pub head: HeadInfo,
    pub index: IndexInfo,
    /// `store` or `snapshot`.
    pub catalog_loaded_from: &'static str,
    pub limits: Limits,
    pub queue: QueueInfo,
    pub writes_enabled: bool,
    /// The catalog store and whether it answers.
    pub store: super::replicas::StoreStatus,
    pub load_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct ModelInfo {
    pub source: String,
    pub architecture: crate::engine::Architecture,
    pub dim: usize,
    pub pooling: crate::engine::Pooling,
    pub max_tokens: usize,
    pub weights_sha256: String,
    pub device: String,
    /// The number format the model runs in (`f32`, `bf16`, `int8` on the CPU; `f16`/`bf16` on a GPU).
    pub dtype: String,
}

#[derive(Debug, Serialize)]
pub struct Counts {
    pub movies: usize,
    pub matrix_rows: usize,
    pub added_at_run_time: usize,
    pub index_points: usize,
}

#[derive(Debug, Serialize)]
pub struct HeadInfo {
    pub interval_level: f64,
    pub members: usize,
}

/// The index's parameters and its neighbour table.
#[derive(Debug, Serialize)]
pub struct IndexInfo {
    #[serde(flatten)]
    pub params: crate::index::IndexParams,
    pub neighbour_table: Option<TableInfo>,
}

#[derive(Debug, Serialize)]
pub struct TableInfo {
    pub width: usize,
    pub ef: usize,
}

#[derive(Debug, Serialize)]
pub struct Limits {
    pub max_k: usize,
    pub max_documents_per_request: usize,
    pub max_body_bytes: usize,
    pub request_timeout_ms: u64,
    pub queue_capacity: usize,
    pub max_batch: usize,
    pub max_batch_tokens: usize,
}

#[derive(Debug, Serialize)]
pub struct QueueInfo {
    pub depth: usize,
    pub batches: u64,
    pub documents: u64,
}
