//! The router and its handlers. Handlers are thin: parse, run one operation (CPU work in
//! `spawn_blocking`, embeddings through the model queue), map the result.

use super::api::*;
use super::catalog::{Facts, LiveCatalog, NewMovie, Traits};
use super::error::ApiError;
use super::extract::{Json, Query};
use super::state::{AppState, Loaded};
use crate::catalog::store::MovieRow;
use crate::engine::Embeddings;
use crate::index::Hit;
use crate::movie::MovieDoc;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

/// Every route the service answers, as `(method, path)`: the contract `openapi.yaml` is tested against.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/widget.js"),
    ("GET", "/embed-demo"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.yaml"),
    ("GET", "/docs"),
    ("GET", "/v1/info"),
    ("GET", "/v1/search"),
    ("POST", "/v1/movies"),
    ("GET", "/v1/movies/{id}"),
    ("GET", "/v1/movies/{id}/similar"),
    ("POST", "/v1/similar"),
    ("POST", "/v1/recommend"),
    ("POST", "/v1/predict"),
    ("POST", "/v1/embed"),
];

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(super::web::index))
        .route("/widget.js", get(super::web::widget))
        .route("/embed-demo", get(super::web::embed_demo))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.yaml", get(openapi))
        .route("/docs", get(docs))
        .route("/v1/info", get(info))
        .route("/v1/search", get(search))
        .route("/v1/movies", post(add_movie))
        .route("/v1/movies/{id}", get(get_movie))
        .route("/v1/movies/{id}/similar", get(similar_by_id))
        .route("/v1/similar", post(similar_by_document))
        .route("/v1/recommend", post(recommend))
        .route("/v1/predict", post(predict))
        .route("/v1/embed", post(embed))
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(state)
}

async fn unknown_route() -> ApiError {
    ApiError::NotFound("no such route: see /docs or /openapi.yaml".into())
}

async fn wrong_method() -> Response {
    let body = json!({"error": {"code": "method_not_allowed", "message": "this route does not take that method: see /openapi.yaml"}});
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}

/// Run CPU work off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(ApiError::internal)?
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no movie with id `{id}`"))
}

// ---- health, metadata ----

async fn healthz() -> axum::Json<Value> {
    axum::Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    if state.stopping.load(Ordering::Relaxed) {
        return Err(ApiError::Unavailable("the service is shutting down".into()));
    }
    let loaded = state.ready()?;
    let movies = loaded.catalog.read().map_err(ApiError::internal)?.live_count();
    Ok(axum::Json(json!({"status": "ready", "movies": movies})))
}

async fn metrics(State(state): State<AppState>) -> Response {
    if let Some(loaded) = state.loaded.get() {
        super::metrics::observe_queue(loaded.queue.stats());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], super::metrics::render()).into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/yaml")], super::OPENAPI_YAML).into_response()
}

async fn docs() -> Html<&'static str> {
    Html(super::DOCS_HTML)
}

async fn info(State(state): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    let loaded = state.ready()?;
    let catalog = loaded.catalog.read().map_err(ApiError::internal)?;
    let cfg = &state.config;
    let head = loaded.head.spec();
    Ok(axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "model": {
            "source": loaded.manifest.model.source,
            "architecture": loaded.model.architecture,
            "dim": loaded.model.dim,
            "pooling": loaded.model.pooling,
            "max_tokens": loaded.model.max_tokens,
            "weights_sha256": loaded.model.weights_sha256,
            "device": loaded.model.device,
        },
        "counts": {
            "movies": catalog.live_count(),
            "matrix_rows": loaded.matrix_rows,
            "added_at_run_time": catalog.rows() - loaded.matrix_rows,
            "index_points": loaded.index.len(),
        },
        "head": {"interval_level": head.calibration.level, "members": head.members},
        "index": index_info(&loaded.index),
        "catalog_loaded_from": if loaded.snapshot_due.is_some() { "store" } else { "snapshot" },
        "limits": {
            "max_k": MAX_K,
            "max_documents_per_request": cfg.max_documents,
            "max_body_bytes": cfg.max_body_bytes,
            "request_timeout_ms": cfg.request_timeout.as_millis() as u64,
            "queue_capacity": cfg.queue.capacity,
            "max_batch": cfg.queue.max_batch,
            "max_batch_tokens": cfg.queue.max_batch_tokens,
        },
        "queue": {
            "depth": loaded.queue.stats().depth.load(Ordering::Relaxed),
            "batches": loaded.queue.stats().batches.load(Ordering::Relaxed),
            "documents": loaded.queue.stats().documents.load(Ordering::Relaxed),
        },
        "writes_enabled": cfg.api_keys.enabled(),
        "load_seconds": loaded.load_seconds,
    })))
}

/// The index's parameters and its neighbour table.
fn index_info(index: &crate::index::VectorIndex) -> Value {
    let mut info = serde_json::to_value(index.params()).unwrap_or_else(|_| json!({}));
    info["neighbour_table"] = match index.table() {
        Some(t) => json!({"width": t.width(), "ef": t.ef()}),
        None => Value::Null,
    };
    info
}

// ---- movies ----

fn summary(catalog: &LiveCatalog, row: usize) -> MovieSummary {
    let e = catalog.entry(row);
    MovieSummary { id: e.id().to_string(), title: e.title().to_string(), year: e.year(), rating: e.rating, votes: e.votes }
}

fn view(catalog: &LiveCatalog, row: usize, predicted: crate::head::Prediction, document: Value) -> MovieView {
    let e = catalog.entry(row);
    MovieView {
        id: e.id().to_string(),
        title: e.title().to_string(),
        year: e.year(),
        rating: e.rating,
        votes: e.votes,
        document,
        predicted,
        source: catalog.source(row).to_string(),
    }
}

fn predict_rows(loaded: &Loaded, rows: &[f32]) -> Result<Vec<crate::head::Prediction>, ApiError> {
    loaded.head.predict(rows, loaded.manifest.dim).map_err(ApiError::internal)
}

async fn get_movie(State(state): State<AppState>, Path(id): Path<String>) -> Result<axum::Json<MovieView>, ApiError> {
    let loaded = state.ready()?;
    // The catalog keeps no documents: the store has them (and always the newest one of an id).
    let stored = loaded.store.get(&id).await.map_err(ApiError::internal)?.ok_or_else(|| not_found(&id))?;
    blocking(move || {
        let catalog = loaded.catalog.read().map_err(ApiError::internal)?;
        let row = catalog.row_of(&id).ok_or_else(|| not_found(&id))?;
        let predicted = predict_rows(&loaded, catalog.vector(row))?[0];
        Ok(axum::Json(view(&catalog, row, predicted, stored.movie.into_value())))
    })
    .await
}

async fn search(State(state): State<AppState>, Query(q): Query<SearchQuery>) -> Result<axum::Json<SearchResponse>, ApiError> {
    let loaded = state.ready()?;
    let text = q.q.trim().to_string();
    if text.is_empty() {
        return Err(ApiError::invalid("q", "q must not be empty"));
    }
    let limit = match q.limit {
        None => 10,
        Some(l) if (1..=50).contains(&l) => l as usize,
        Some(l) => return Err(ApiError::invalid("limit", format!("limit must be between 1 and 50, got {l}"))),
    };
    blocking(move || {
        let catalog = loaded.catalog.read().map_err(ApiError::internal)?;
        let results = catalog.search_titles(&text, limit).into_iter().map(|row| summary(&catalog, row)).collect();
        Ok(axum::Json(SearchResponse { query: text, results }))
    })
    .await
}

// ---- similarity ----

fn neighbours(catalog: &LiveCatalog, query: &Traits, hits: &[Hit]) -> Vec<Neighbour> {
    hits.iter()
        .map(|h| {
            let e = catalog.entry(h.row);
            Neighbour {
                id: e.id().to_string(),
                title: e.title().to_string(),
                year: e.year(),
                rating: e.rating,
                score: h.score,
                why: catalog.why(query, h.row),
            }
        })
        .collect()
}

async fn similar_by_id(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<SimilarQuery>,
) -> Result<axum::Json<SimilarResponse>, ApiError> {
    let loaded = state.ready()?;
    let (k, filter, exact) = q.parse()?;
    let started = std::time::Instant::now();
    let heavy = exact || filter != Default::default();
    let work = move || {
        let catalog = loaded.catalog.read().map_err(ApiError::internal)?;
        let row = catalog.row_of(&id).ok_or_else(|| not_found(&id))?;
        let hits = catalog.nearest(&loaded.index, catalog.vector(row), Some(row), k.0, &filter, &[row], exact);
        let results = neighbours(&catalog, catalog.traits(row), &hits);
        Ok(SimilarResponse { query: Some(summary(&catalog, row)), k: k.0, exact, results, tokens: None, truncated: None })
    };
    // A graph search is a fraction of a millisecond: handing it to the blocking pool would cost about
    // as much as the search (and a thread per concurrent request). A brute-force scan of the whole
    // catalog, or a selective filter that falls back to one, is not: that goes to the pool.
    let response = if heavy { blocking(work).await? } else { work()? };
    super::metrics::search_time(exact, started.elapsed());
    Ok(axum::Json(response))
}

/// Validate posted documents: at least one, at most the configured number, each a movie.
fn parse_documents(values: Vec<Value>, max: usize) -> Result<Vec<MovieDoc>, ApiError> {
    if values.is_empty() {
        return Err(ApiError::invalid("movies", "movies must hold at least one document"));
    }
    if values.len() > max {
        return Err(ApiError::invalid(
            "movies",
            format!("too many documents: {} in one request, the limit is {max}", values.len()),
        ));
    }
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            MovieDoc::from_value(v).map_err(|e| ApiError::Invalid {
                field: Some(match e.field() {
                    Some(f) => format!("movies[{i}].{f}"),
                    None => format!("movies[{i}]"),
                }),
                message: format!("movies[{i}]: {e}"),
            })
        })
        .collect()
}

async fn embed_documents(loaded: &Loaded, docs: &[MovieDoc]) -> Result<Embeddings, ApiError> {
    let texts = docs.iter().map(MovieDoc::render).collect();
    Ok(loaded.queue.embed(texts).await?)
}

async fn similar_by_document(
    State(state): State<AppState>,
    Json(req): Json<SimilarRequest>,
) -> Result<axum::Json<SimilarResponse>, ApiError> {
    let loaded = state.ready()?;
    let k = TopK::parse(req.k)?;
    let filter = req.filter()?;
    let exact = req.exact;
    let doc = MovieDoc::from_value(req.movie)?;
    let embedded = embed_documents(&loaded, std::slice::from_ref(&doc)).await?;
    let started = std::time::Instant::now();
    let response = blocking(move || {
        let catalog = loaded.catalog.read().map_err(ApiError::internal)?;
        let hits = catalog.nearest(&loaded.index, embedded.row(0), None, k.0, &filter, &[], exact);
        let traits = catalog.traits_of(&Facts::of(&doc));
        Ok(SimilarResponse {
            query: None,
            k: k.0,
            exact,
            results: neighbours(&catalog, &traits, &hits),
            tokens: Some(embedded.encoded[0].untruncated_len),
            truncated: Some(embedded.encoded[0].truncated()),
        })
    })
    .await?;
    super::metrics::search_time(exact, started.elapsed());
    Ok(axum::Json(response))
}

/// Most example movies per list in a recommendation request.
const MAX_EXAMPLES: usize = 100;

fn example_rows(catalog: &LiveCatalog, ids: &[String], field: &str) -> Result<Vec<usize>, ApiError> {
    if ids.len() > MAX_EXAMPLES {
        return Err(ApiError::invalid(field, format!("at most {MAX_EXAMPLES} {field} examples")));
    }
    ids.iter().map(|id| catalog.row_of(id).ok_or_else(|| not_found(id))).collect()
}

/// Linear classifier on the examples: ridge regression of ±1 labels in its dual form (the examples are
/// few, the dimension is not), `w = Xᵀ (X Xᵀ + λI)⁻¹ y`. Returns `w`.
fn fit_linear(catalog: &LiveCatalog, pos: &[usize], neg: &[usize]) -> Vec<f32> {
    let rows: Vec<usize> = pos.iter().chain(neg).copied().collect();
    let labels: Vec<f64> = pos.iter().map(|_| 1.0).chain(neg.iter().map(|_| -1.0)).collect();
    let n = rows.len();
    let lambda = 0.1;
    let mut gram = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            gram[i * n + j] = crate::index::dot(catalog.vector(rows[i]), catalog.vector(rows[j])) as f64
                + if i == j { lambda } else { 0.0 };
        }
    }
    let alpha = solve_spd(&mut gram, labels, n);
    let mut w = vec![0f32; catalog.dim()];
    for (a, &r) in alpha.iter().zip(&rows) {
        for (wi, xi) in w.iter_mut().zip(catalog.vector(r)) {
            *wi += (*a as f32) * xi;
        }
    }
    w
}

/// Solve `A x = b` for a symmetric positive definite `A` (`n × n`, row-major) by Cholesky.
fn solve_spd(a: &mut [f64], mut b: Vec<f64>, n: usize) -> Vec<f64> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        let d = d.max(1e-12).sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * n + k] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= a[k * n + i] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    b
}

fn mean_of(catalog: &LiveCatalog, rows: &[usize]) -> Vec<f32> {
    let mut m = vec![0f32; catalog.dim()];
    for &r in rows {
        for (mi, xi) in m.iter_mut().zip(catalog.vector(r)) {
            *mi += xi / rows.len() as f32;
        }
    }
    m
}

async fn recommend(
    State(state): State<AppState>,
    Json(req): Json<RecommendRequest>,
) -> Result<axum::Json<RecommendResponse>, ApiError> {
    let loaded = state.ready()?;
    let k = TopK::parse(req.k)?;
    let filter = req.filter()?;
    let started = std::time::Instant::now();
    let response = blocking(move || {
        let catalog = loaded.catalog.read().map_err(ApiError::internal)?;
        let pos = example_rows(&catalog, &req.positive, "positive")?;
        let neg = example_rows(&catalog, &req.negative, "negative")?;
        let exclude: Vec<usize> = pos.iter().chain(&neg).copied().collect();
        let hits = match req.strategy {
            Strategy::Average => {
                if pos.is_empty() {
                    return Err(ApiError::invalid("positive", "the average strategy needs at least one positive example"));
                }
                let mut q = mean_of(&catalog, &pos);
                if !neg.is_empty() {
                    let n = mean_of(&catalog, &neg);
                    q.iter_mut().zip(&n).for_each(|(a, b)| *a -= b);
                }
                let norm = q.iter().map(|x| x * x).sum::<f32>().sqrt();
                if norm < 1e-6 {
                    return Err(ApiError::invalid("negative", "the positive and negative examples cancel out"));
                }
                q.iter_mut().for_each(|x| *x /= norm);
                catalog.nearest(&loaded.index, &q, None, k.0, &filter, &exclude, req.exact)
            }
            Strategy::Linear => {
                if pos.is_empty() || neg.is_empty() {
                    return Err(ApiError::invalid(
                        if pos.is_empty() { "positive" } else { "negative" },
                        "the linear strategy needs at least one positive and one negative example",
                    ));
                }
                let w = fit_linear(&catalog, &pos, &neg);
                catalog.rank_by(k.0, &filter, &exclude, |v| crate::index::dot(&w, v))
            }
        };
        // "Why" is relative to the first positive example (the one the user picked first).
        let results = match pos.first().or(neg.first()) {
            Some(&anchor) => neighbours(&catalog, catalog.traits(anchor), &hits),
            None => Vec::new(),
        };
        Ok(RecommendResponse { strategy: req.strategy, k: k.0, results })
    })
    .await?;
    super::metrics::search_time(true, started.elapsed());
    Ok(axum::Json(response))
}

// ---- request-time embedding ----

async fn predict(
    State(state): State<AppState>,
    Json(req): Json<MoviesRequest>,
) -> Result<axum::Json<PredictResponse>, ApiError> {
    let loaded = state.ready()?;
    let docs = parse_documents(req.movies, state.config.max_documents)?;
    let embedded = embed_documents(&loaded, &docs).await?;
    let head_loaded = loaded.clone();
    let rows = embedded.vectors.clone();
    let predictions = blocking(move || predict_rows(&head_loaded, &rows)).await?;
    let items = docs
        .iter()
        .zip(predictions)
        .zip(&embedded.encoded)
        .map(|((doc, p), enc)| PredictItem {
            title: doc.title().to_string(),
            rating: p.rating,
            low: p.low,
            high: p.high,
            tokens: enc.untruncated_len,
            truncated: enc.truncated(),
        })
        .collect();
    Ok(axum::Json(PredictResponse { interval: loaded.head.spec().calibration.level, predictions: items }))
}

async fn embed(State(state): State<AppState>, Json(req): Json<MoviesRequest>) -> Result<axum::Json<EmbedResponse>, ApiError> {
    let loaded = state.ready()?;
    let docs = parse_documents(req.movies, state.config.max_documents)?;
    let embedded = embed_documents(&loaded, &docs).await?;
    let embeddings = (0..embedded.len())
        .map(|i| EmbedItem {
            vector: embedded.row(i).to_vec(),
            tokens: embedded.encoded[i].untruncated_len,
            truncated: embedded.encoded[i].truncated(),
        })
        .collect();
    Ok(axum::Json(EmbedResponse {
        model: loaded.manifest.model.source.clone(),
        dim: embedded.dim,
        max_tokens: loaded.model.max_tokens,
        embeddings,
    }))
}

// ---- writes ----

async fn add_movie(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<AddMovieRequest>, ApiError>,
) -> Result<Response, ApiError> {
    // Authentication comes before anything else is looked at, the body included.
    super::auth::check(&state.config, &headers)?;
    let Json(req) = body?;
    let loaded = state.ready()?;
    let id = parse_movie_id(&req.id)?;
    if let Some(r) = req.rating {
        if !(1.0..=10.0).contains(&r) {
            return Err(ApiError::invalid("rating", "rating must be between 1 and 10"));
        }
    }
    let doc = MovieDoc::from_value(req.movie)?;
    let embedded = embed_documents(&loaded, std::slice::from_ref(&doc)).await?;
    let vector = embedded.row(0).to_vec();
    let row = MovieRow { id: id.clone(), rating: req.rating, votes: req.votes, movie: doc, source: "api".into() };
    loaded
        .store
        .put_movie_with_embedding(&row, &loaded.manifest.model.weights_sha256, &vector)
        .await
        .map_err(ApiError::internal)?;
    let document = row.movie.clone().into_value();
    let (new_row, replaced) = {
        let mut catalog = loaded.catalog.write().map_err(ApiError::internal)?;
        let movie =
            NewMovie { id: row.id, rating: row.rating, votes: row.votes, facts: Facts::of(&row.movie), source: &row.source };
        catalog.push(movie, &vector)
    };
    let for_index = loaded.clone();
    let response = blocking(move || {
        for_index.index.insert(new_row, &vector);
        let catalog = for_index.catalog.read().map_err(ApiError::internal)?;
        let predicted = predict_rows(&for_index, catalog.vector(new_row))?[0];
        Ok(view(&catalog, new_row, predicted, document))
    })
    .await?;
    tracing::info!(id = %id, replaced = replaced.is_some(), "movie added");
    let status = if replaced.is_some() { StatusCode::OK } else { StatusCode::CREATED };
    let body = AddMovieResponse {
        created: replaced.is_none(),
        movie: response,
        tokens: embedded.encoded[0].untruncated_len,
        truncated: embedded.encoded[0].truncated(),
    };
    Ok((status, axum::Json(body)).into_response())
}
