//! The router and its handlers. Each handler parses the request, calls one operation of the service
//! ([`crate::service::Service`]), and maps its answer (results as JSON, errors as [`ApiError`]s).

use super::api::*;
use super::cache;
use super::error::ApiError;
use super::extract::{Json, Query};
use super::state::AppState;
use crate::service::ask::AskResponse;
use crate::service::results::{
    AddMovieResponse, DeleteMovieResponse, EmbedResponse, Info, MovieView, PredictResponse, RecommendResponse,
    SearchResponse, SimilarResponse,
};
use crate::service::{Filter, TopK};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

type Answer<T> = Result<axum::Json<T>, ApiError>;

/// Every route the service answers, as `(method, path, handler)`: the router is built from this
/// table, so [`routes`] is the router's own list (the contract `openapi.yaml` is tested against).
fn table() -> Vec<(&'static str, &'static str, MethodRouter<AppState>)> {
    vec![
        ("GET", "/", get(super::web::index)),
        ("GET", "/widget.js", get(super::web::widget)),
        ("GET", "/embed-demo", get(super::web::embed_demo)),
        ("GET", "/healthz", get(healthz)),
        ("GET", "/readyz", get(readyz)),
        ("GET", "/metrics", get(metrics)),
        ("GET", "/openapi.yaml", get(openapi)),
        ("GET", "/docs", get(docs)),
        ("GET", "/v1/info", get(info)),
        ("GET", "/v1/search", get(search)),
        ("GET", "/v1/query", get(ask_get)),
        ("POST", "/v1/query", post(ask_post)),
        ("GET", "/v1/map", get(map_json)),
        ("GET", "/v1/map.png", get(map_png)),
        ("POST", "/v1/movies", post(add_movie)),
        ("GET", "/v1/movies/{id}", get(get_movie)),
        ("DELETE", "/v1/movies/{id}", delete(delete_movie)),
        ("GET", "/v1/movies/{id}/similar", get(similar_by_id)),
        ("POST", "/v1/similar", post(similar_by_document)),
        ("POST", "/v1/recommend", post(recommend)),
        ("POST", "/v1/predict", post(predict)),
        ("POST", "/v1/embed", post(embed)),
        ("POST", "/v1/embeddings", post(super::openai::embeddings)),
        ("GET", "/v1/models", get(super::openai::models)),
        ("GET", "/v1/models/{model}", get(super::openai::model)),
    ]
}

/// Every `(method, path)` the router answers, read from the table it is built from.
pub fn routes() -> Vec<(&'static str, &'static str)> {
    table().into_iter().map(|(method, path, _)| (method, path)).collect()
}

pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    let mut by_path: Vec<(&str, MethodRouter<AppState>)> = Vec::new();
    for (_, path, handler) in table() {
        match by_path.iter_mut().find(|(p, _)| *p == path) {
            Some((_, existing)) => *existing = std::mem::take(existing).merge(handler),
            None => by_path.push((path, handler)),
        }
    }
    for (path, handler) in by_path {
        router = router.route(path, handler);
    }
    router.fallback(unknown_route).method_not_allowed_fallback(wrong_method).with_state(state)
}

async fn unknown_route() -> ApiError {
    ApiError::NotFound("no such route: see /docs or /openapi.yaml".into())
}

async fn wrong_method() -> Response {
    let body = json!({"error": {"code": "method_not_allowed", "message": "this route does not take that method: see /openapi.yaml"}});
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}

// ---- health, metadata ----

async fn healthz() -> axum::Json<Value> {
    axum::Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    if state.stopping.load(Ordering::Relaxed) {
        return Err(ApiError::Unavailable("the service is shutting down".into()));
    }
    let service = state.ready()?;
    // Ready while the store is down too: reads answer from memory (writes answer 503 meanwhile).
    Ok(axum::Json(json!({"status": "ready", "movies": service.movies()?, "store": service.store_status()})))
}

async fn metrics(State(state): State<AppState>) -> Response {
    if let Some(service) = state.loaded.get() {
        super::metrics::observe_queue(service.queue().stats());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], super::metrics::render()).into_response()
}

async fn openapi(headers: HeaderMap) -> Response {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let tag = TAG.get_or_init(|| cache::tag_of(super::OPENAPI_YAML.as_bytes()));
    let body = axum::body::Bytes::from_static(super::OPENAPI_YAML.as_bytes());
    cache::answer(&headers, tag, cache::REVALIDATE, "application/yaml", body)
}

async fn docs() -> Html<&'static str> {
    Html(super::DOCS_HTML)
}

/// Tagged by its content (its counts and queue figures change with every write and batch).
async fn info(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let info: Info = state.ready()?.info(state.config.api_keys.enabled())?;
    let body = serde_json::to_vec(&info).map_err(ApiError::internal)?;
    Ok(cache::answer(&headers, &cache::tag_of(&body), cache::REVALIDATE, "application/json", body.into()))
}

// ---- movies ----

async fn get_movie(State(state): State<AppState>, Path(id): Path<String>) -> Answer<MovieView> {
    Ok(axum::Json(state.ready()?.movie(id).await?))
}

async fn search(State(state): State<AppState>, Query(q): Query<SearchQuery>) -> Answer<SearchResponse> {
    Ok(axum::Json(state.ready()?.search_titles(&q.q, q.limit).await?))
}

async fn ask_get(State(state): State<AppState>, Query(mut q): Query<AskQuery>) -> Answer<AskResponse> {
    let service = state.ready()?;
    let (k, controls) = q.parse()?;
    Ok(axum::Json(service.ask(&q.q, k, Filter::default(), controls).await?))
}

async fn ask_post(State(state): State<AppState>, Json(mut req): Json<AskRequest>) -> Answer<AskResponse> {
    let service = state.ready()?;
    let (k, filter, controls) = (TopK::parse(req.k)?, req.filter()?, req.controls()?);
    Ok(axum::Json(service.ask(&req.q, k, filter, controls).await?))
}

// ---- the catalog map ----

/// Tagged by the digest of the JSON, made once per catalog state; its brotli and gzip forms too, kept
/// for that state ([`cache::Encoded`]: the compression layer leaves an answer that already has a
/// `Content-Encoding` as it is).
async fn map_json(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let map = state.ready()?.map_json().await?;
    let tag = cache::weak(&map.digest);
    let worth = map.json.len() >= usize::from(super::COMPRESS_ABOVE) && !cache::fresh(&headers, &tag);
    let Some(encoding) = cache::preferred(&headers).filter(|_| worth) else {
        return Ok(cache::answer(&headers, &tag, cache::REVALIDATE, "application/json", map.json));
    };
    let body = state.map_encoded.get(&tag, encoding, map.json).await.map_err(ApiError::internal)?;
    let mut response = cache::answer(&headers, &tag, cache::REVALIDATE, "application/json", body);
    let h = response.headers_mut();
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding.name()));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    Ok(response)
}

async fn map_png(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<MapPngQuery>,
) -> Result<Response, ApiError> {
    let service = state.ready()?;
    let color = crate::service::map::ColorBy::parse(q.color.as_deref())?;
    let png = service.map_png(q.size, color).await?;
    let tag = cache::tag_of(&png);
    Ok(cache::answer(&headers, &tag, cache::REVALIDATE, "image/png", axum::body::Bytes::from_owner(png)))
}

// ---- similarity ----

async fn similar_by_id(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<SimilarQuery>,
) -> Answer<SimilarResponse> {
    let service = state.ready()?;
    let (k, filter, exact, controls) = q.parse()?;
    Ok(axum::Json(service.similar_by_id(id, k, filter, exact, controls).await?))
}

async fn similar_by_document(
    State(state): State<AppState>,
    Json(mut req): Json<SimilarRequest>,
) -> Answer<SimilarResponse> {
    let service = state.ready()?;
    let (k, filter, controls) = (TopK::parse(req.k)?, req.filter()?, req.controls()?);
    Ok(axum::Json(service.similar_by_doc(req.movie, k, filter, req.exact, controls).await?))
}

async fn recommend(State(state): State<AppState>, Json(mut req): Json<RecommendRequest>) -> Answer<RecommendResponse> {
    let service = state.ready()?;
    let (k, filter, controls) = (TopK::parse(req.k)?, req.filter()?, req.controls()?);
    let (positive, negative) = (std::mem::take(&mut req.positive), std::mem::take(&mut req.negative));
    Ok(axum::Json(service.recommend(positive, negative, req.strategy, k, filter, req.exact, controls).await?))
}

// ---- request-time embedding ----

async fn predict(State(state): State<AppState>, Json(req): Json<MoviesRequest>) -> Answer<PredictResponse> {
    Ok(axum::Json(state.ready()?.predict(req.movies).await?))
}

async fn embed(State(state): State<AppState>, Json(req): Json<MoviesRequest>) -> Answer<EmbedResponse> {
    Ok(axum::Json(state.ready()?.embed(req.movies).await?))
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
    let added: AddMovieResponse = state.ready()?.add_movie(&req.id, req.rating, req.votes, req.movie).await?;
    let status = if added.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(added)).into_response())
}

async fn delete_movie(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    // Authentication first, like an add.
    super::auth::check(&state.config, &headers)?;
    let deleted: DeleteMovieResponse = state.ready()?.delete_movie(&id).await?;
    Ok((StatusCode::OK, axum::Json(deleted)).into_response())
}
