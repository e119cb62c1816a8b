//! The HTTP layer without the model: `oneshot` requests to `router()` over a service built from parts
//! (a 40-movie catalog, a small deterministic embedder, a quickly trained head, a SQLite store in a
//! temporary folder). Routing, status codes, error bodies, validation and the route ↔ spec check run
//! under a bare `cargo test`; tests/server.rs runs the same routes on the real model.

mod head_support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cinevec::catalog::store::{MovieRow, Store};
use cinevec::engine::worker::{EmbedQueue, QueueLimits};
use cinevec::engine::{Architecture, Encoded, EngineInfo, Pooling, TextEmbedder};
use cinevec::head::data::{one_split, Dataset};
use cinevec::head::fit::fit_head;
use cinevec::head::ridge::{fit_ridge, lambda_grid};
use cinevec::head::EmbeddingLink;
use cinevec::index::{IndexParams, Layout, LayoutParams, VectorIndex};
use cinevec::models::ModelOptions;
use cinevec::movie::MovieDoc;
use cinevec::server::listen::ConnLimits;
use cinevec::server::state::AppState;
use cinevec::server::{ApiKeys, ServeConfig};
use cinevec::service::live::{fold, Facts, LiveCatalog, NewMovie};
use cinevec::service::{Parts, Service, ServiceConfig};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const DIM: usize = 8;
const MOVIES: usize = 40;
const KEY: &str = "router-test-key";

/// Words hashed to token ids; a text's vector is the normalised sum of one fixed pseudo-random
/// vector per token. Deterministic, instant, and texts that share words are near each other.
struct HashEmbedder {
    info: EngineInfo,
}

fn word_id(word: &str) -> u32 {
    word.bytes().fold(2166136261u32, |h, b| (h ^ u32::from(b.to_ascii_lowercase())).wrapping_mul(16777619)) % 4096
}

fn token_vector(id: u32) -> [f32; DIM] {
    let mut state = u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    std::array::from_fn(|_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    })
}

impl TextEmbedder for HashEmbedder {
    fn info(&self) -> &EngineInfo {
        &self.info
    }

    fn encode(&self, texts: &[&str]) -> anyhow::Result<Vec<Encoded>> {
        Ok(texts
            .iter()
            .map(|t| {
                let all: Vec<u32> =
                    t.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(word_id).collect();
                let ids = all.iter().copied().take(self.info.max_tokens).collect();
                Encoded { ids, untruncated_len: all.len() }
            })
            .collect())
    }

    fn embed_encoded(&self, batch: &[&Encoded]) -> anyhow::Result<Vec<f32>> {
        let mut out = Vec::with_capacity(batch.len() * DIM);
        for e in batch {
            let mut v = [1e-3f32; DIM];
            for &id in &e.ids {
                v.iter_mut().zip(token_vector(id)).for_each(|(a, b)| *a += b);
            }
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            out.extend(v.iter().map(|x| x / norm));
        }
        Ok(out)
    }
}

fn embedder() -> HashEmbedder {
    HashEmbedder {
        info: EngineInfo {
            model_dir: "hash-embedder".into(),
            architecture: Architecture::Bert,
            dim: DIM,
            pooling: Pooling::Mean,
            max_tokens: 64,
            weights_sha256: "00".repeat(32),
            device: "cpu".into(),
            dtype: "f32".into(),
        },
    }
}

const GENRES: [&str; 4] = ["Drama", "Comedy", "Horror", "Western"];
const DIRECTORS: [&str; 5] = ["Ann Lee", "Bo Ek", "Cy Do", "Di Fo", "Ed Gu"];

fn document(i: usize) -> MovieDoc {
    MovieDoc::from_value(json!({
        "title": format!("Film number {i} {}", if i.is_multiple_of(3) { "Night" } else { "Day" }),
        "genres": [GENRES[i % 4]],
        "release_year": 1960 + i as i64,
        "directors": [DIRECTORS[i % 5]],
        "overview": format!("a {} story told by {}", GENRES[i % 4], DIRECTORS[i % 5]),
    }))
    .unwrap()
}

fn rating(i: usize) -> f64 {
    4.0 + (i % 7) as f64 * 0.7
}

struct Fixture {
    state: AppState,
    store: Store,
    _dir: tempfile::TempDir,
}

fn config(dir: &std::path::Path) -> ServeConfig {
    ServeConfig {
        bind: "127.0.0.1:0".into(),
        api_keys: ApiKeys::new(Some(KEY.into()), None).unwrap(),
        connections: ConnLimits { header_timeout: std::time::Duration::from_secs(10), max_connections: 1024 },
        cors_origins: vec!["*".into()],
        service: ServiceConfig {
            artifacts: dir.to_path_buf(),
            db: dir.join("catalog.db").to_string_lossy().into_owned(),
            model: ModelOptions {
                model: "hash-embedder".into(),
                models_dir: dir.to_path_buf(),
                pooling: None,
                max_tokens: None,
                cpu: true,
                dtype: candle_core::DType::F32,
                cpu_precision: None,
            },
            max_body_bytes: 64 * 1024,
            max_documents: 4,
            request_timeout: Duration::from_secs(30),
            queue: QueueLimits::default(),
            index: IndexParams::default(),
        },
    }
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let store = Store::open(&config.service.db).await.unwrap();
    let docs: Vec<MovieDoc> = (0..MOVIES).map(document).collect();
    let rows: Vec<MovieRow> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| MovieRow {
            id: format!("m{i}"),
            rating: Some(rating(i)),
            votes: Some(100 + i as u64),
            movie: d.clone(),
            source: "test".into(),
        })
        .collect();
    store.upsert_movies(&rows).await.unwrap();

    let model = embedder();
    let texts: Vec<String> = docs.iter().map(MovieDoc::render).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let encoded = model.encode(&refs).unwrap();
    let matrix = model.embed_encoded(&encoded.iter().collect::<Vec<_>>()).unwrap();
    let matrix = Arc::new(matrix);

    let mut live = LiveCatalog::new(matrix.clone(), DIM);
    for (row, doc) in rows.iter().zip(&docs) {
        let facts = Facts::of(doc);
        let folded = fold(&facts.title);
        let movie = NewMovie { id: row.id.clone(), rating: row.rating, votes: row.votes, facts, source: "test" };
        let entry = live.entry_for(movie, folded);
        live.push_matrix_row(entry);
    }
    // The title index, as `load` builds it (on its own thread there) over the rows read at start.
    live.index_titles();
    live.index_people();
    let index = VectorIndex::build_shared(matrix.clone(), DIM, IndexParams::default());

    let mut manifest = head_support::manifest(MOVIES, DIM);
    manifest.model.weights_sha256 = model.info.weights_sha256.clone();
    let data = Dataset {
        dim: DIM,
        ids: rows.iter().map(|r| r.id.clone()).collect(),
        x: matrix.to_vec(),
        y: (0..MOVIES).map(rating).collect(),
    };
    let split = |range: std::ops::Range<usize>| Dataset {
        dim: DIM,
        ids: data.ids[range.clone()].to_vec(),
        x: data.x[range.start * DIM..range.end * DIM].to_vec(),
        y: data.y[range].to_vec(),
    };
    let (train, val) = (split(0..30), split(30..MOVIES));
    let ridge = fit_ridge(&train, &val, &lambda_grid()).unwrap();
    let (all, folds) = one_split(&train, &val);
    let head =
        fit_head(&all, &folds, &ridge, EmbeddingLink::of(&manifest), &head_support::small_training(2), &mut |_| {})
            .unwrap()
            .head;

    let info = model.info.clone();
    let layout =
        Layout::compute(&matrix, DIM, index.table().unwrap(), LayoutParams { seed: 1, epochs: Some(100) }).unwrap();
    let queue = EmbedQueue::start(model, config.service.queue, None).unwrap();
    let service = Service::from_parts(Parts {
        live,
        index,
        queue,
        head,
        store: store.clone(),
        manifest,
        model: info,
        matrix_rows: MOVIES,
        load_seconds: 0.0,
        snapshot_due: None,
        config: config.service.clone(),
        on_search: None,
    })
    .with_map(layout);
    Fixture { state: AppState::with_service(config, Arc::new(service)), store, _dir: dir }
}

/// One request through the whole service (router and layers); the status and the JSON body.
async fn call(
    state: &AppState,
    method: &str,
    uri: &str,
    body: Option<Value>,
    key: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let req = req.body(body.map_or_else(Body::empty, |b| Body::from(b.to_string()))).unwrap();
    let response = cinevec::server::app(state.clone()).oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 24).await.unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

async fn get(state: &AppState, uri: &str) -> (StatusCode, Value) {
    call(state, "GET", uri, None, None).await
}

async fn post(state: &AppState, uri: &str, body: Value) -> (StatusCode, Value) {
    call(state, "POST", uri, Some(body), None).await
}

/// The error body's code and field.
fn error(body: &Value) -> (&str, Option<&str>) {
    (body["error"]["code"].as_str().unwrap_or("(no code)"), body["error"]["field"].as_str())
}

fn ids(body: &Value) -> Vec<String> {
    body["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn every_documented_route_is_answered_by_the_router() {
    let f = fixture().await;
    let spec: Value = serde_norway::from_str(cinevec::server::OPENAPI_YAML).unwrap();
    let mut documented = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    // (tests/server.rs checks that this is exactly the router's own list of routes.)
    assert_eq!(documented.len(), cinevec::server::routes::routes().len());
    for (method, path) in documented {
        let uri = path.replace("{id}", "m1").replace("{model}", "hash-embedder");
        let body = (method == "POST").then(|| json!({}));
        let (status, value) = call(&f.state, &method, &uri, body, None).await;
        assert!(status != StatusCode::NOT_FOUND || path.contains("{id}"), "{method} {path}: {status} {value}");
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
    }
    let (status, body) = get(&f.state, "/v2/nothing").await;
    assert_eq!((status, error(&body).0), (StatusCode::NOT_FOUND, "not_found"));
    let (status, body) = post(&f.state, "/v1/info", json!({})).await;
    assert_eq!((status, error(&body).0), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
}

#[tokio::test]
async fn reads_answer_from_the_live_rows() {
    let f = fixture().await;
    let (status, health) = get(&f.state, "/healthz").await;
    assert_eq!((status, health["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (_, ready) = get(&f.state, "/readyz").await;
    assert_eq!(ready["movies"], MOVIES);
    let (_, info) = get(&f.state, "/v1/info").await;
    assert_eq!(
        (info["model"]["dim"].as_u64(), info["counts"]["index_points"].as_u64()),
        (Some(DIM as u64), Some(MOVIES as u64))
    );
    assert_eq!(info["limits"]["max_documents_per_request"], 4);
    assert_eq!(info["writes_enabled"], true);

    let (status, movie) = get(&f.state, "/v1/movies/m7").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (movie["title"].as_str(), movie["document"]["directors"][0].as_str()),
        (Some("Film number 7 Day"), Some("Cy Do"))
    );
    let p = &movie["predicted"];
    assert!(p["low"].as_f64() <= p["rating"].as_f64() && p["rating"].as_f64() <= p["high"].as_f64(), "{p}");

    let (_, similar) = get(&f.state, "/v1/movies/m7/similar?k=5").await;
    let found = ids(&similar);
    assert_eq!(found.len(), 5);
    assert!(!found.contains(&"m7".to_string()));
    let scores: Vec<f64> =
        similar["results"].as_array().unwrap().iter().map(|r| r["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    let (_, exact) = get(&f.state, "/v1/movies/m7/similar?k=5&exact=true").await;
    assert_eq!(ids(&exact), found, "the graph finds the exact neighbours of a 40-movie catalog");
    let (_, westerns) = get(&f.state, "/v1/movies/m7/similar?k=20&genres=western").await;
    assert_eq!(ids(&westerns).len(), MOVIES / 4 - usize::from(7 % 4 == 3));
    assert!(westerns["results"].as_array().unwrap().iter().all(|r| r["why"]["shared_genres"].is_array()));

    let (_, search) = get(&f.state, "/v1/search?q=NIGHT&limit=50").await;
    assert_eq!(ids(&search).len(), MOVIES.div_ceil(3));

    let (_, rec) = post(
        &f.state,
        "/v1/recommend",
        json!({"positive": ["m1", "m2"], "negative": ["m3"], "k": 4, "strategy": "linear"}),
    )
    .await;
    let rec_ids = ids(&rec);
    assert_eq!(rec_ids.len(), 4);
    assert!(rec_ids.iter().all(|id| !["m1", "m2", "m3"].contains(&id.as_str())));
}

#[tokio::test]
async fn posted_documents_are_embedded_predicted_and_searched() {
    let f = fixture().await;
    let doc = json!({"title": "Film number 8 Day", "genres": ["Drama"], "release_year": 1968, "directors": ["Ed Gu"]});
    let (status, embedded) = post(&f.state, "/v1/embed", json!({"movies": [doc, {"title": "Something else"}]})).await;
    assert_eq!(status, StatusCode::OK);
    let vectors: Vec<Vec<f64>> = embedded["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["vector"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
        .collect();
    assert_eq!((vectors.len(), vectors[0].len(), embedded["dim"].as_u64()), (2, DIM, Some(DIM as u64)));
    assert!(vectors.iter().all(|v| (v.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-4), "unit length");
    assert_ne!(vectors[0], vectors[1]);

    let (status, predicted) = post(&f.state, "/v1/predict", json!({"movies": [doc]})).await;
    assert_eq!(status, StatusCode::OK);
    let p = &predicted["predictions"][0];
    assert_eq!(p["title"], "Film number 8 Day");
    assert!(p["low"].as_f64() <= p["rating"].as_f64() && p["rating"].as_f64() <= p["high"].as_f64(), "{p}");

    let (status, similar) = post(&f.state, "/v1/similar", json!({"movie": doc, "k": 3})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&similar).len(), 3);
    assert!(similar["tokens"].as_u64().unwrap() > 0 && similar.get("query").is_none());
}

#[tokio::test]
async fn bad_requests_get_the_one_error_shape() {
    let f = fixture().await;
    let s = &f.state;
    /// A response, and the status, error code and field it must have.
    type Case<'a> = ((StatusCode, Value), StatusCode, &'a str, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (get(s, "/v1/movies/nope").await, StatusCode::NOT_FOUND, "not_found", None),
        (get(s, "/v1/movies/nope/similar").await, StatusCode::NOT_FOUND, "not_found", None),
        (get(s, "/v1/movies/m1/similar?k=0").await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", Some("k")),
        (get(s, "/v1/movies/m1/similar?k=101").await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", Some("k")),
        (
            post(s, "/v1/similar", json!({"movie": {"title": "A"}, "k": null})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            None,
        ),
        (
            post(s, "/v1/similar", json!({"movie": {"title": "A"}, "min_votes": 1.5})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            None,
        ),
        (get(s, "/v1/movies/m1/similar?colour=red").await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", None),
        (get(s, "/v1/search?q=%20").await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", Some("q")),
        (get(s, "/v1/search?q=a&limit=51").await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", Some("limit")),
        (
            post(s, "/v1/predict", json!({"movies": []})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("movies"),
        ),
        (
            post(s, "/v1/predict", json!({"movies": [{}, {}, {}, {}, {}]})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("movies"),
        ),
        (
            post(s, "/v1/embed", json!({"movies": [{"title": "A"}, {"genres": ["Drama"]}]})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("movies[1].title"),
        ),
        (
            post(s, "/v1/similar", json!({"movie": {"title": ""}})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("movie.title"),
        ),
        (
            post(s, "/v1/similar", json!({"movie": {"title": "A"}, "k": 0})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("k"),
        ),
        (
            post(s, "/v1/recommend", json!({"positive": []})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("positive"),
        ),
        (
            post(s, "/v1/recommend", json!({"positive": ["m1"], "strategy": "linear"})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("negative"),
        ),
        (
            post(s, "/v1/recommend", json!({"positive": ["m1"], "negative": ["m1"]})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("negative"),
        ),
        // Unknown ids are skipped: none left is no usable positive example.
        (
            post(s, "/v1/recommend", json!({"positive": ["nope"]})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("positive"),
        ),
        (post(s, "/v1/predict", json!({"films": []})).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", None),
        (
            call(s, "POST", "/v1/movies", Some(json!({"id": "x", "movie": {"title": "X"}})), None).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            None,
        ),
        (
            call(s, "POST", "/v1/movies", Some(json!({"id": "x", "movie": {"title": "X"}})), Some("wrong")).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            None,
        ),
        (
            call(s, "POST", "/v1/movies", Some(json!({"id": "x", "rating": 11, "movie": {"title": "X"}})), Some(KEY))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("rating"),
        ),
        (
            call(s, "POST", "/v1/movies", Some(json!({"id": " ", "movie": {"title": "X"}})), Some(KEY)).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("id"),
        ),
    ];
    for (i, ((status, body), want_status, want_code, want_field)) in cases.iter().enumerate() {
        assert_eq!((*status, error(body).0), (*want_status, *want_code), "case {i}: {body}");
        if want_field.is_some() {
            assert_eq!(error(body).1, *want_field, "case {i}: {body}");
        }
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "case {i}: {body}");
    }
    // Not JSON at all, and too large a body.
    let req =
        Request::post("/v1/predict").header("content-type", "application/json").body(Body::from("{not json")).unwrap();
    let response = cinevec::server::app(s.clone()).oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let big = json!({"movies": [{"title": "x".repeat(70 * 1024)}]});
    let (status, body) = post(s, "/v1/predict", big).await;
    assert_eq!((status, error(&body).0), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
}

#[tokio::test]
async fn an_added_movie_is_found_at_once_and_a_failed_store_write_changes_nothing() {
    let f = fixture().await;
    let s = &f.state;
    let movie = json!({"id": "new-1", "rating": 8.5, "votes": 10, "movie": {"title": "Film number 7 Day again", "genres": ["Western"], "directors": ["Cy Do"]}});
    let (status, added) = call(s, "POST", "/v1/movies", Some(movie.clone()), Some(KEY)).await;
    assert_eq!((status, added["created"].as_bool()), (StatusCode::CREATED, Some(true)), "{added}");
    assert_eq!(added["movie"]["source"], "api");
    let (_, ready) = get(s, "/readyz").await;
    assert_eq!(ready["movies"], MOVIES + 1);
    let (_, found) = get(s, "/v1/search?q=again").await;
    assert_eq!(ids(&found), ["new-1"]);
    let (_, similar) = get(s, "/v1/movies/new-1/similar?k=3").await;
    assert_eq!(ids(&similar).len(), 3);
    let (_, by_doc) = post(s, "/v1/similar", json!({"movie": movie["movie"], "k": 1})).await;
    assert_eq!(ids(&by_doc), ["new-1"], "a run-time row is searched beside the graph");
    let (_, stored) = get(s, "/v1/movies/new-1").await;
    assert_eq!(stored["document"]["directors"][0], "Cy Do");

    // The same id again replaces it: 200, still one more movie than the matrix.
    let (status, again) = call(s, "POST", "/v1/movies", Some(movie.clone()), Some(KEY)).await;
    assert_eq!((status, again["created"].as_bool()), (StatusCode::OK, Some(false)));
    let (_, info) = get(s, "/v1/info").await;
    assert_eq!(
        (info["counts"]["movies"].as_u64(), info["counts"]["added_at_run_time"].as_u64()),
        (Some(MOVIES as u64 + 1), Some(2))
    );

    // The store is gone (closed) for the next write: 503 (retry later), and nothing changed in memory.
    f.store.close().await;
    let other = json!({"id": "new-2", "movie": {"title": "Never stored"}});
    let (status, body) = call(s, "POST", "/v1/movies", Some(other), Some(KEY)).await;
    assert_eq!((status, error(&body).0), (StatusCode::SERVICE_UNAVAILABLE, "unavailable"));
    let (_, ready) = get(s, "/readyz").await;
    assert_eq!(ready["store"]["state"], "unavailable", "{ready}");
    let (_, info_after) = get(s, "/v1/info").await;
    assert_eq!(info_after["counts"], info["counts"]);
    let (_, none) = get(s, "/v1/search?q=never").await;
    assert!(ids(&none).is_empty());
}

#[tokio::test]
async fn title_search_forgives_word_order_skipped_words_typos_and_takes_a_year() {
    let f = fixture().await;
    let s = &f.state;
    let first = |body: &Value| ids(body).into_iter().next().unwrap_or_default();
    // Indexed rows ("Film number {i} Night|Day", released 1960 + i; votes grow with i).
    assert_eq!(first(&get(s, "/v1/search?q=numbr%207%20day").await.1), "m7", "a typo in a 5-letter word");
    assert_eq!(first(&get(s, "/v1/search?q=day%207%20film").await.1), "m7", "any word order");
    assert_eq!(first(&get(s, "/v1/search?q=film%201967").await.1), "m7", "the year");
    let (_, typing) = get(s, "/v1/search?q=film%20numb").await;
    assert_eq!(ids(&typing).len(), 10, "the last word is a prefix: every film matches");
    assert_eq!(first(&typing), "m39", "equal matches by votes");
    // Movies added at run time are found at once, by the same rules.
    for (id, title, year) in [
        ("gf", "The Godfather", 1972),
        ("lotr", "The Lord of the Rings: The Return of the King", 2003),
        ("gf3", "The Godfather Part III", 1990),
    ] {
        let movie = json!({"id": id, "votes": 1000, "movie": {"title": title, "release_year": year}});
        let (status, body) = call(s, "POST", "/v1/movies", Some(movie), Some(KEY)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    for (q, want) in [
        ("godfater", "gf"),
        ("lord%20rings", "lotr"),
        ("king%20return", "lotr"),
        ("godf", "gf"),
        ("godfather%201990", "gf3"),
    ] {
        let (status, body) = get(s, &format!("/v1/search?q={q}")).await;
        assert_eq!((status, first(&body)), (StatusCode::OK, want.to_string()), "{q}: {body}");
    }
    assert_eq!(get(s, "/v1/search?q=lord%20rings").await.1["query"], "lord rings");
    // Queries that cannot be searched are refused with the field; ones with no word find nothing.
    let long = "a".repeat(201);
    for uri in ["/v1/search?q=god%07father".to_string(), format!("/v1/search?q={long}")] {
        let (status, body) = get(s, &uri).await;
        assert_eq!(
            (status, error(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, ("invalid_request", Some("q"))),
            "{uri}: {body}"
        );
    }
    let (status, body) = get(s, "/v1/search?q=%3F%21").await;
    assert_eq!((status, ids(&body).len()), (StatusCode::OK, 0));
    // Words past the sixteenth are ignored, not refused: a title typed after sixteen other words is
    // not what is searched.
    let padding = vec!["zzzq"; 16].join("%20");
    let (status, body) = get(s, &format!("/v1/search?q={padding}%20godfather")).await;
    assert_eq!((status, ids(&body).len()), (StatusCode::OK, 0), "{body}");
}

#[tokio::test]
async fn a_loading_service_answers_503_but_health() {
    let dir = tempfile::tempdir().unwrap();
    let state = AppState::new(config(dir.path()));
    let (status, _) = get(&state, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    for uri in ["/readyz", "/v1/info", "/v1/movies/m1/similar", "/v1/search?q=a"] {
        let (status, body) = get(&state, uri).await;
        assert_eq!((status, error(&body).0), (StatusCode::SERVICE_UNAVAILABLE, "unavailable"), "{uri}");
    }
}

/// The raw answer to a GET: status, content type and body bytes.
async fn get_raw(state: &AppState, uri: &str) -> (StatusCode, String, Vec<u8>) {
    let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
    let response = cinevec::server::app(state.clone()).oneshot(req).await.unwrap();
    let status = response.status();
    let kind = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, kind, axum::body::to_bytes(response.into_body(), 1 << 26).await.unwrap().to_vec())
}

#[tokio::test]
async fn the_map_holds_every_movie_and_places_an_added_one_among_its_neighbours() {
    let f = fixture().await;
    let (status, map) = get(&f.state, "/v1/map").await;
    assert_eq!(status, StatusCode::OK, "{map}");
    let n = map["count"].as_u64().unwrap() as usize;
    assert_eq!(n, MOVIES);
    for field in ["ids", "titles", "years", "x", "y", "rating", "predicted"] {
        assert_eq!(map[field].as_array().unwrap().len(), n, "{field}");
    }
    let grid = map["grid"].as_u64().unwrap();
    let xs: Vec<u64> = map["x"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    let ys: Vec<u64> = map["y"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(xs.iter().chain(&ys).all(|&v| v <= grid));
    assert_eq!((xs.iter().min(), xs.iter().max()), (Some(&0), Some(&grid)), "the grid spans the map's bounds");
    let i7 = map["ids"].as_array().unwrap().iter().position(|v| v == "m7").unwrap();
    assert_eq!(map["titles"][i7], "Film number 7 Day");
    assert_eq!(map["rating"][i7].as_f64(), Some((rating(7) * 10.0).round() / 10.0));

    // A copy of m7 added at run time lands where m7's nearest movies are.
    let copy = json!({"id": "copy7", "rating": 6.0, "movie": serde_json::to_value(document(7)).unwrap()});
    let (status, _) = call(&f.state, "POST", "/v1/movies", Some(copy), Some(KEY)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, after) = get(&f.state, "/v1/map").await;
    assert_eq!(after["count"].as_u64(), Some(MOVIES as u64 + 1));
    let ids: Vec<&str> = after["ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let at = |id: &str| {
        let i = ids.iter().position(|x| *x == id).unwrap();
        (after["x"][i].as_f64().unwrap(), after["y"][i].as_f64().unwrap())
    };
    let (cx, cy) = at("copy7");
    let (_, similar) = get(&f.state, "/v1/movies/m7/similar?k=3").await;
    let near: Vec<(f64, f64)> = self::ids(&similar).iter().map(|id| at(id)).chain([at("m7")]).collect();
    let to_near = near.iter().map(|(x, y)| ((x - cx).powi(2) + (y - cy).powi(2)).sqrt()).fold(f64::INFINITY, f64::min);
    let mut all: Vec<f64> = ids
        .iter()
        .filter(|id| **id != "copy7")
        .map(|id| at(id))
        .map(|(x, y)| ((x - cx).powi(2) + (y - cy).powi(2)).sqrt())
        .collect();
    all.sort_by(f64::total_cmp);
    assert!(
        to_near <= all[all.len() / 4],
        "the copy sits nearer its neighbours ({to_near}) than most movies ({:?})",
        &all[..5]
    );
}

#[tokio::test]
async fn the_map_picture_is_a_png_of_the_size_asked_and_bad_parameters_are_refused() {
    let f = fixture().await;
    let (status, kind, png) = get_raw(&f.state, "/v1/map.png?size=200&color=residual").await;
    assert_eq!((status, kind.as_str()), (StatusCode::OK, "image/png"));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // IHDR: width and height, big-endian, after the signature, the chunk length and its name.
    assert_eq!(
        (&png[12..16], &png[16..20], &png[20..24]),
        (&b"IHDR"[..], &200u32.to_be_bytes()[..], &200u32.to_be_bytes()[..])
    );
    let (_, _, by_rating) = get_raw(&f.state, "/v1/map.png?size=200").await;
    assert_ne!(by_rating, png, "another colouring, another picture");
    let (_, _, again) = get_raw(&f.state, "/v1/map.png?size=200").await;
    assert_eq!(again, by_rating);
    for (uri, field) in [
        ("/v1/map.png?size=10", Some("size")),
        ("/v1/map.png?size=5000", Some("size")),
        ("/v1/map.png?color=votes", Some("color")),
        ("/v1/map.png?size=big", None),
        ("/v1/map.png?zoom=2", None),
    ] {
        let (status, body) = get(&f.state, uri).await;
        assert_eq!(
            (status, error(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, ("invalid_request", field)),
            "{uri}: {body}"
        );
    }
}

fn scores(body: &Value) -> Vec<f64> {
    body["results"].as_array().unwrap().iter().map(|r| r["score"].as_f64().unwrap()).collect()
}

/// The director of test movie `m{i}` (see `document`).
fn director_of(id: &str) -> &'static str {
    DIRECTORS[id[1..].parse::<usize>().unwrap() % 5]
}

#[tokio::test]
async fn strip_controls_page_diversify_exclude_and_floor_on_every_route() {
    let f = fixture().await;
    let s = &f.state;
    let (status, all) = get(s, "/v1/movies/m1/similar?k=20&exact=true").await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let all_ids = ids(&all);
    assert_eq!(all_ids.len(), 20);
    let (_, plain) = get(s, "/v1/movies/m1/similar?k=10").await;
    let (_, zero) = get(s, "/v1/movies/m1/similar?k=10&diversity=0").await;
    assert_eq!(zero, plain, "diversity 0 is exactly the answer without it");

    // Pages with exact=true are one answer of twice the size, alone and with the other controls.
    for controls in ["", "&diversity=0.5", "&diversity=0.3&max_per=director&per_group=2", "&max_per=series"] {
        let (_, twice) = get(s, &format!("/v1/movies/m1/similar?k=10&exact=true{controls}")).await;
        let (_, first) = get(s, &format!("/v1/movies/m1/similar?k=5&exact=true&offset=0{controls}")).await;
        let (_, second) = get(s, &format!("/v1/movies/m1/similar?k=5&exact=true&offset=5{controls}")).await;
        assert_eq!(second["offset"], 5);
        let paged: Vec<String> = ids(&first).into_iter().chain(ids(&second)).collect();
        assert_eq!(paged, ids(&twice), "{controls}");
        let mut unique = paged.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), paged.len(), "{controls}: a movie on two pages");
        assert_eq!(ids(&twice).first(), all_ids.first(), "{controls}: the first result is the best one");
    }
    let (_, page) = get(s, "/v1/movies/m1/similar?k=10&exact=true&offset=10").await;
    assert_eq!(ids(&page), all_ids[10..], "a plain page is the ranking's next k");

    // Diversity: the first result never changes; more diversity spreads the directors.
    let distinct = |body: &Value| {
        let mut d: Vec<&str> = ids(body).iter().map(|id| director_of(id)).collect();
        d.sort();
        d.dedup();
        d.len()
    };
    let (_, none) = get(s, "/v1/movies/m1/similar?k=5&exact=true").await;
    for d in ["0.3", "0.6", "1"] {
        let (status, diverse) = get(s, &format!("/v1/movies/m1/similar?k=5&exact=true&diversity={d}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ids(&diverse)[0], ids(&none)[0], "diversity {d}");
        assert_eq!(ids(&diverse).len(), 5);
    }

    // One per director: at most per_group results of each.
    let (_, one_each) = get(s, "/v1/movies/m1/similar?k=10&max_per=director").await;
    assert_eq!(distinct(&one_each), ids(&one_each).len(), "{one_each}");
    assert!(ids(&one_each).len() <= DIRECTORS.len());
    let (_, two_each) = get(s, "/v1/movies/m1/similar?k=10&max_per=director&per_group=2").await;
    for d in DIRECTORS {
        assert!(ids(&two_each).iter().filter(|id| director_of(id) == d).count() <= 2, "{two_each}");
    }
    assert!(ids(&two_each).len() > ids(&one_each).len());

    // Exclude: never returned, and still k results.
    let excluded = all_ids[..5].join(",");
    let (_, without) = get(s, &format!("/v1/movies/m1/similar?k=10&exclude={excluded},no-such-id")).await;
    assert_eq!(ids(&without).len(), 10);
    assert!(ids(&without).iter().all(|id| !all_ids[..5].contains(id)), "{without}");
    let (_, exact_without) = get(s, &format!("/v1/movies/m1/similar?k=10&exact=true&exclude={excluded}")).await;
    assert_eq!(ids(&exact_without), all_ids[5..15]);

    // A score floor: fewer results is a normal answer, none too.
    let floor = scores(&all)[3];
    let (status, floored) = get(s, &format!("/v1/movies/m1/similar?k=10&exact=true&min_score={floor}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(scores(&floored).iter().all(|&x| x >= floor - 1e-6) && ids(&floored).len() >= 4);
    assert_eq!(ids(&floored), all_ids[..ids(&floored).len()]);
    let (status, empty) = get(s, "/v1/movies/m1/similar?min_score=1").await;
    assert_eq!((status, ids(&empty).len()), (StatusCode::OK, 0), "{empty}");

    // The same controls in JSON bodies: by document and recommend.
    let movie = json!({"title": "Film number 1 Day", "genres": ["Comedy"], "directors": ["Bo Ek"]});
    let (_, by_doc) = post(s, "/v1/similar", json!({"movie": movie, "k": 10, "exact": true})).await;
    let top: Vec<String> = ids(&by_doc)[..3].to_vec();
    let (status, by_doc_ex) =
        post(s, "/v1/similar", json!({"movie": movie, "k": 10, "exact": true, "exclude": top, "offset": 2})).await;
    assert_eq!(status, StatusCode::OK, "{by_doc_ex}");
    assert_eq!(ids(&by_doc_ex).len(), 10);
    assert_eq!(ids(&by_doc_ex)[..5], ids(&by_doc)[5..], "the 3 best excluded, 2 skipped");
    assert_eq!(by_doc_ex["offset"], 2);
    let (status, rec) = post(s, "/v1/recommend", json!({"positive": ["m1", "m6"], "k": 10, "exact": true})).await;
    assert_eq!(status, StatusCode::OK, "{rec}");
    let (_, rec_paged) =
        post(s, "/v1/recommend", json!({"positive": ["m1", "m6"], "k": 5, "exact": true, "offset": 5})).await;
    assert_eq!(ids(&rec_paged), ids(&rec)[5..]);
    let (_, rec_ex) = post(
        s,
        "/v1/recommend",
        json!({"positive": ["m1", "m6"], "k": 10, "exclude": ids(&rec)[..2], "max_per": "director", "per_group": 3}),
    )
    .await;
    assert!(ids(&rec_ex).iter().all(|id| !ids(&rec)[..2].contains(id)));
    let (_, lin) = post(
        s,
        "/v1/recommend",
        json!({"positive": ["m1"], "negative": ["m2"], "strategy": "linear", "k": 4, "diversity": 0.5}),
    )
    .await;
    assert_eq!(ids(&lin).len(), 4, "{lin}");
}

#[tokio::test]
async fn strip_controls_refuse_bad_values_with_the_field() {
    let f = fixture().await;
    let s = &f.state;
    for (query, field) in [
        ("diversity=1.5", "diversity"),
        ("diversity=-0.1", "diversity"),
        ("diversity=NaN", "diversity"),
        ("offset=-1", "offset"),
        ("offset=101", "offset"),
        ("min_score=2", "min_score"),
        ("max_per=actor", "max_per"),
        ("max_per=director&per_group=0", "per_group"),
        ("exclude=m2,a%07b", "exclude"),
    ] {
        let (status, body) = get(s, &format!("/v1/movies/m1/similar?{query}")).await;
        assert!(status.is_client_error(), "{query}: {status} {body}");
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert_eq!(error(&body).1, Some(field), "{query}: {body}");
    }
    let (status, body) = get(s, "/v1/movies/m1/similar?offset=abc").await;
    assert!(status.is_client_error(), "{body}");
    let many: Vec<String> = (0..1001).map(|i| format!("x{i}")).collect();
    for body in [
        json!({"movie": {"title": "x"}, "exclude": many}),
        json!({"movie": {"title": "x"}, "exclude": ["ok", ""]}),
        json!({"movie": {"title": "x"}, "diversity": null}),
        json!({"movie": {"title": "x"}, "offset": 1.5}),
        json!({"movie": {"title": "x"}, "per_group": 0, "max_per": "series"}),
    ] {
        let (status, answer) = post(s, "/v1/similar", body.clone()).await;
        assert!(status.is_client_error(), "{body}: {status} {answer}");
    }
    let (status, body) = post(s, "/v1/recommend", json!({"positive": ["m1"], "diversity": 2})).await;
    assert_eq!((status, error(&body).1), (StatusCode::UNPROCESSABLE_ENTITY, Some("diversity")));
}

#[tokio::test]
async fn recommend_takes_documents_and_skips_unknown_ids() {
    let f = fixture().await;
    let s = &f.state;
    let (status, rec) = post(s, "/v1/recommend", json!({"positive": ["m1", "nope", "m6", "gone"], "k": 5})).await;
    assert_eq!(status, StatusCode::OK, "{rec}");
    assert_eq!(rec["ignored"], json!(["nope", "gone"]));
    let (_, known) = post(s, "/v1/recommend", json!({"positive": ["m1", "m6"], "k": 5})).await;
    assert_eq!(ids(&rec), ids(&known), "unknown ids change nothing");
    let (status, body) = post(s, "/v1/recommend", json!({"positive": ["nope"], "k": 5})).await;
    assert_eq!((status, error(&body).1), (StatusCode::UNPROCESSABLE_ENTITY, Some("positive")), "{body}");
    // A posted document is an example like a movie: the same document as m1's gives m1's neighbours.
    let doc = document(1).into_value();
    let (status, by_doc) = post(s, "/v1/recommend", json!({"positive": [doc], "k": 5, "exact": true})).await;
    assert_eq!(status, StatusCode::OK, "{by_doc}");
    let (_, by_id) = post(s, "/v1/recommend", json!({"positive": ["m1"], "k": 5, "exact": true})).await;
    let (_, by_doc_ex) = post(
        s,
        "/v1/recommend",
        json!({"positive": [document(1).into_value()], "k": 4, "exact": true, "exclude": ["m1"]}),
    )
    .await;
    assert_eq!(ids(&by_doc_ex), ids(&by_id)[..4], "{by_doc_ex} {by_id}");
    assert!(ids(&by_doc).contains(&"m1".to_string()), "a document is not a catalog row: m1 itself may be found");
    let (status, mixed) = post(
        s,
        "/v1/recommend",
        json!({"positive": ["m2", {"title": "Film number 7 Day"}], "negative": [{"title": "Horror"}], "strategy": "linear", "k": 3}),
    )
    .await;
    assert_eq!((status, ids(&mixed).len()), (StatusCode::OK, 3), "{mixed}");
    let (status, body) = post(s, "/v1/recommend", json!({"positive": [5]})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = post(s, "/v1/recommend", json!({"positive": [{"genres": ["x"]}]})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a document without a title: {body}");
}

#[tokio::test]
async fn a_deleted_movie_is_gone_from_every_answer_at_once_and_can_come_back() {
    let f = fixture().await;
    let s = &f.state;
    let (status, body) = call(s, "DELETE", "/v1/movies/m3", None, None).await;
    assert_eq!((status, error(&body).0), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let (status, body) = call(s, "DELETE", "/v1/movies/no-such", None, Some(KEY)).await;
    assert_eq!((status, error(&body).0), (StatusCode::NOT_FOUND, "not_found"));
    // Everything that can return m3 does before the delete.
    let (_, before) = get(s, "/v1/movies/m0/similar?k=39&exact=true").await;
    assert!(ids(&before).contains(&"m3".to_string()));
    let (_, map) = get(s, "/v1/map").await;
    assert!(map["ids"].as_array().unwrap().contains(&json!("m3")));

    let (status, deleted) = call(s, "DELETE", "/v1/movies/m3", None, Some(KEY)).await;
    assert_eq!((status, &deleted), (StatusCode::OK, &json!({"id": "m3", "deleted": true})));
    let (status, _) = get(s, "/v1/movies/m3").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(s, "/v1/movies/m3/similar").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, after) = get(s, "/v1/movies/m0/similar?k=38&exact=true").await;
    assert_eq!(ids(&after), ids(&before).into_iter().filter(|id| id != "m3").collect::<Vec<_>>());
    let (_, walked) = get(s, "/v1/movies/m0/similar?k=30").await;
    assert!(!ids(&walked).contains(&"m3".to_string()));
    let (_, by_doc) = post(s, "/v1/similar", json!({"movie": document(3).into_value(), "k": 39})).await;
    assert!(!ids(&by_doc).contains(&"m3".to_string()));
    let (_, titles) = get(s, "/v1/search?q=film%20number%203&limit=50").await;
    assert!(!ids(&titles).contains(&"m3".to_string()), "{titles}");
    let (_, rec) = post(s, "/v1/recommend", json!({"positive": ["m3", "m1"], "k": 38})).await;
    assert_eq!(rec["ignored"], json!(["m3"]));
    assert!(!ids(&rec).contains(&"m3".to_string()));
    let (_, map) = get(s, "/v1/map").await;
    assert!(!map["ids"].as_array().unwrap().contains(&json!("m3")));
    assert_eq!(map["count"], MOVIES - 1);
    let (_, ready) = get(s, "/readyz").await;
    assert_eq!(ready["movies"], MOVIES - 1);
    let (status, _) = call(s, "DELETE", "/v1/movies/m3", None, Some(KEY)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a second delete finds nothing");
    assert!(f.store.get("m3").await.unwrap().is_none());
    assert_eq!(f.store.tombstones().await.unwrap(), ["m3"]);

    // Added again: back everywhere, and its tombstone gone.
    let again = json!({"id": "m3", "movie": document(3).into_value()});
    let (status, added) = call(s, "POST", "/v1/movies", Some(again), Some(KEY)).await;
    assert_eq!((status, added["created"].as_bool()), (StatusCode::CREATED, Some(true)), "{added}");
    let (_, back) = get(s, "/v1/movies/m0/similar?k=39&exact=true").await;
    assert!(ids(&back).contains(&"m3".to_string()));
    assert!(f.store.tombstones().await.unwrap().is_empty());
    // A run-time movie deletes too.
    let (status, _) = call(s, "DELETE", "/v1/movies/m3", None, Some(KEY)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get(s, "/v1/movies/m3").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The store down: 503 with Retry-After, and nothing changed in memory.
    f.store.close().await;
    let req = Request::builder()
        .method("DELETE")
        .uri("/v1/movies/m4")
        .header("authorization", format!("Bearer {KEY}"))
        .body(Body::empty())
        .unwrap();
    let response = cinevec::server::app(s.clone()).oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let (_, still) = get(s, "/v1/movies/m0/similar?k=38&exact=true").await;
    assert!(ids(&still).contains(&"m4".to_string()));
    let (_, ready) = get(s, "/readyz").await;
    assert_eq!(ready["movies"], MOVIES - 1);
}

#[tokio::test]
async fn a_free_text_query_is_read_into_constraints_every_result_meets() {
    let f = fixture().await;
    let s = &f.state;
    // Films i: genre GENRES[i % 4], released 1960 + i, directed by DIRECTORS[i % 5].
    let (status, body) = get(s, "/v1/query?q=westerns%20from%20the%2070s").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let read = &body["interpretation"];
    assert_eq!(read["genres"], json!(["Western"]));
    assert_eq!(read["years"], json!([1970, 1979]));
    let mut found = ids(&body);
    found.sort();
    assert_eq!(found, ["m11", "m15", "m19"], "every western of the 1970s, nothing else: {body}");
    assert!(body["results"][0]["why"].as_array().unwrap().iter().any(|w| w == "genre: Western"), "{body}");
    // A chip's `without` is the request without its words.
    let chips = read["chips"].as_array().unwrap();
    assert!(chips.iter().any(|c| c["kind"] == "years" && c["without"] == "westerns"), "{read}");

    let (_, body) = get(s, "/v1/query?q=dramas%20directed%20by%20ann%20lee").await;
    let read = &body["interpretation"];
    assert_eq!(read["people"][0]["name"], "Ann Lee", "{read}");
    assert_eq!(
        (read["people"][0]["role"].as_str(), read["people"][0]["required"].as_bool()),
        (Some("director"), Some(true))
    );
    let mut found = ids(&body);
    found.sort();
    assert_eq!(found, ["m0", "m20"], "{body}");
    // A surname alone, with a possessive, and a typo in a longer one.
    let (_, body) = get(s, "/v1/query?q=lee%27s%20comedies").await;
    assert_eq!(body["interpretation"]["people"][0]["name"], "Ann Lee", "{body}");
    assert!(ids(&body).iter().all(|id| ["m5", "m25"].contains(&id.as_str())) && !ids(&body).is_empty(), "{body}");

    // Constraints that leave nothing: the least certain is relaxed, and the answer says so.
    let (status, body) = get(s, "/v1/query?q=horror%20westerns").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body["interpretation"]["relaxed"].as_array().unwrap().is_empty(), "{body}");
    assert!(!ids(&body).is_empty(), "{body}");
    // A year range given backwards is read the right way round, and noted.
    let (_, body) = get(s, "/v1/query?q=dramas%20from%201990%20to%201970").await;
    assert_eq!(body["interpretation"]["years"], json!([1970, 1990]), "{body}");
    assert!(body["interpretation"]["notes"][0].as_str().unwrap().contains("backwards"));
    // The request's own filter applies too.
    let (status, body) = post(s, "/v1/query", json!({"q": "westerns from the 70s", "min_year": 1975, "k": 2})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(ids(&body).iter().all(|id| id == "m15" || id == "m19") && ids(&body).len() == 2, "{body}");
}

#[tokio::test]
async fn a_free_text_query_takes_the_strip_controls() {
    let f = fixture().await;
    let s = &f.state;
    // "dramas": every drama (GENRES[i % 4]), ranked by the fused lists.
    let q = "/v1/query?q=dramas&k=6";
    let (status, plain) = get(s, q).await;
    assert_eq!(status, StatusCode::OK, "{plain}");
    let all = ids(&plain);
    assert!(all.len() >= 4, "{plain}");
    // exclude: never returned, and the page is still full when others exist.
    let (_, body) = get(s, &format!("{q}&exclude={},{}", all[0], all[2])).await;
    let without = ids(&body);
    assert!(!without.contains(&all[0]) && !without.contains(&all[2]), "{body}");
    assert_eq!(without.len(), all.len(), "{body}");
    let (_, body) = post(s, "/v1/query", json!({"q": "dramas", "k": 6, "exclude": [all[1].clone()]})).await;
    assert!(!ids(&body).contains(&all[1]), "the POST body's exclude too: {body}");
    // offset: page 0 then page 1 are one answer of twice the size.
    let (_, first) = get(s, "/v1/query?q=dramas&k=3").await;
    let (_, second) = get(s, "/v1/query?q=dramas&k=3&offset=3").await;
    let paged: Vec<String> = ids(&first).into_iter().chain(ids(&second)).collect();
    assert_eq!(paged, all, "pages of 3 are the answer of 6");
    // diversity 0 is the plain answer; the first result never changes; min_score floors the fused score.
    let (_, zero) = get(s, &format!("{q}&diversity=0")).await;
    assert_eq!(ids(&zero), all);
    let (_, diverse) = get(s, &format!("{q}&diversity=0.8")).await;
    assert_eq!(ids(&diverse)[0], all[0], "{diverse}");
    let floor = plain["results"][2]["score"].as_f64().unwrap();
    let (_, floored) = get(s, &format!("{q}&min_score={floor}")).await;
    assert!(floored["results"].as_array().unwrap().iter().all(|r| r["score"].as_f64().unwrap() >= floor - 1e-6));
    assert!(ids(&floored).len() < all.len(), "{floored}");
    // max_per director: at most one film per director (DIRECTORS[i % 5]).
    let (_, grouped) = get(s, &format!("{q}&max_per=director")).await;
    let mut directors: Vec<usize> =
        ids(&grouped).iter().map(|id| id.trim_start_matches('m').parse::<usize>().unwrap() % 5).collect();
    let n = directors.len();
    directors.sort_unstable();
    directors.dedup();
    assert_eq!(directors.len(), n, "one film per director: {grouped}");
    // Bad controls: a 422 naming the field.
    for (bad, field) in [("diversity=2", "diversity"), ("offset=-1", "offset"), ("max_per=studio", "max_per")] {
        let (status, body) = get(s, &format!("{q}&{bad}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(error(&body).1, Some(field), "{bad}: {body}");
    }
}

#[tokio::test]
async fn bad_free_text_queries_are_refused_with_the_error_body() {
    let f = fixture().await;
    let s = &f.state;
    let long = "a".repeat(201);
    for uri in [
        "/v1/query?q=".to_string(),
        "/v1/query?q=%20%20".to_string(),
        format!("/v1/query?q={long}"),
        "/v1/query?q=dramas%07".to_string(),
        "/v1/query?q=the%20movies%20with".to_string(),
        "/v1/query?q=42%20117".to_string(),
        "/v1/query?q=dramas&k=0".to_string(),
        "/v1/query?q=dramas&nope=1".to_string(),
        "/v1/query".to_string(),
    ] {
        let (status, body) = get(s, &uri).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}: {body}");
        assert!(body["error"]["message"].is_string(), "{uri}: {body}");
    }
    let (status, body) = post(s, "/v1/query", json!({"q": "dramas", "min_rating": 11})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

// ---- the OpenAI-compatible routes ----

/// OpenAI's error body: message, type, param and code, nothing of the service's own shape.
fn openai_error(body: &Value) -> (&str, &str) {
    let e = &body["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(e.get("param").is_some() && e.get("field").is_none(), "{body}");
    (e["type"].as_str().unwrap_or("(no type)"), e["code"].as_str().unwrap_or("(no code)"))
}

fn floats(item: &Value) -> Vec<f32> {
    item["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
}

#[tokio::test]
async fn openai_embeddings_embed_the_texts_as_given_in_input_order() {
    let f = fixture().await;
    let texts = ["a quiet western", "one", "a quiet western told by Bo Ek"];
    let (status, body) =
        post(&f.state, "/v1/embeddings", json!({"input": texts, "model": "hash-embedder", "user": "u-1"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["object"].as_str(), body["model"].as_str()), (Some("list"), Some("hash-embedder")));
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    // Each vector is the embedder's for that very text (no movie document around it), in input order.
    let model = embedder();
    for (i, (item, text)) in data.iter().zip(texts).enumerate() {
        assert_eq!((item["object"].as_str(), item["index"].as_u64()), (Some("embedding"), Some(i as u64)));
        let encoded = model.encode(&[text]).unwrap();
        let want = model.embed_encoded(&[&encoded[0]]).unwrap();
        let got = floats(item);
        assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6), "{text}: {got:?} vs {want:?}");
    }
    // usage counts the embedder's own tokens.
    let tokens: usize = texts.iter().map(|t| model.encode(&[t]).unwrap()[0].ids.len()).sum();
    assert_eq!(body["usage"], json!({"prompt_tokens": tokens, "total_tokens": tokens}));

    // A single string; base64 is the same vector's little-endian f32 bytes; the owner prefix names it too.
    let (_, one) = post(&f.state, "/v1/embeddings", json!({"input": texts[0], "model": "hash-embedder"})).await;
    let (_, b64) = post(
        &f.state,
        "/v1/embeddings",
        json!({"input": texts[0], "model": "someone/hash-embedder", "encoding_format": "base64"}),
    )
    .await;
    use base64::Engine as _;
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(b64["data"][0]["embedding"].as_str().unwrap()).unwrap();
    let decoded: Vec<f32> = bytes.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(decoded, floats(&one["data"][0]));
    assert_eq!(floats(&one["data"][0]), floats(&data[0]));

    // The text of a movie document gets the vector /v1/embed gives the document.
    let doc = document(7);
    let (_, embed) = post(&f.state, "/v1/embed", json!({"movies": [serde_json::to_value(&doc).unwrap()]})).await;
    let (_, as_text) = post(&f.state, "/v1/embeddings", json!({"input": doc.render(), "model": "hash-embedder"})).await;
    let by_embed: Vec<f32> =
        embed["embeddings"][0]["vector"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    assert_eq!(floats(&as_text["data"][0]), by_embed);

    // The served model, listed and retrieved.
    let (status, models) = get(&f.state, "/v1/models").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "hash-embedder");
    assert_eq!(models["data"][0]["object"], "model");
    let (status, model) = get(&f.state, "/v1/models/hash-embedder").await;
    assert_eq!((status, &model), (StatusCode::OK, &models["data"][0]));
    let (status, body) = get(&f.state, "/v1/models/text-embedding-3-small").await;
    assert_eq!((status, openai_error(&body)), (StatusCode::NOT_FOUND, ("invalid_request_error", "model_not_found")));
}

#[tokio::test]
async fn every_bad_embeddings_body_is_a_4xx_in_openais_shape() {
    let f = fixture().await;
    let m = "hash-embedder";
    let long = vec!["word"; 100].join(" "); // the embedder reads 64 tokens
    let many = vec!["t"; 10_000];
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let cases: Vec<(Value, StatusCode, &str, &str)> = vec![
        (json!({"input": [], "model": m}), unprocessable, "invalid_request", "at least one"),
        (json!({"input": "", "model": m}), unprocessable, "invalid_request", "input[0] is empty"),
        (json!({"input": ["a", ""], "model": m}), unprocessable, "invalid_request", "input[1] is empty"),
        (json!({"input": many, "model": m}), unprocessable, "invalid_request", "too many texts"),
        (json!({"input": [[1, 2], [3]], "model": m}), unprocessable, "invalid_request", "token arrays"),
        (json!({"input": [1, 2, 3], "model": m}), unprocessable, "invalid_request", "token arrays"),
        (json!({"input": 5, "model": m}), unprocessable, "invalid_request", "a string or an array of strings"),
        (json!({"input": "a\u{0}b", "model": m}), unprocessable, "invalid_request", "NUL"),
        (json!({"input": long, "model": m}), unprocessable, "invalid_request", "the model reads at most 64"),
        (json!({"input": "a", "model": m, "encoding_format": "b64"}), unprocessable, "invalid_request", "`base64`"),
        (json!({"input": "a", "model": m, "dimensions": 4}), unprocessable, "invalid_request", "cannot shorten"),
        (json!({"input": "a"}), unprocessable, "invalid_request", "model"),
        (json!({"input": "a", "model": m, "extra": 1}), unprocessable, "invalid_request", "extra"),
        (
            json!({"input": "a", "model": "text-embedding-3-small"}),
            StatusCode::NOT_FOUND,
            "model_not_found",
            "hash-embedder",
        ),
    ];
    for (body, status, code, says) in cases {
        let shown = body.to_string().chars().take(80).collect::<String>();
        let (got, answer) = post(&f.state, "/v1/embeddings", body).await;
        assert_eq!((got, openai_error(&answer)), (status, ("invalid_request_error", code)), "{shown}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{shown}: {message}");
    }
    // Malformed JSON, another content type, too large a body, another method: the same shape.
    for (content_type, body, status) in [
        ("application/json", "{\"input\": ".to_string(), StatusCode::BAD_REQUEST),
        ("text/plain", "{}".to_string(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (
            "application/json",
            format!("{{\"input\": \"{}\", \"model\": \"{m}\"}}", "a".repeat(70_000)),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let req = Request::post("/v1/embeddings").header("content-type", content_type).body(Body::from(body)).unwrap();
        let response = cinevec::server::app(f.state.clone()).oneshot(req).await.unwrap();
        assert_eq!(response.status(), status);
        let answer: Value =
            serde_json::from_slice(&axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap()).unwrap();
        assert_eq!(openai_error(&answer).0, "invalid_request_error", "{answer}");
    }
    let (status, answer) = get(&f.state, "/v1/embeddings").await;
    assert_eq!((status, openai_error(&answer).1), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
    // The service's own routes keep the service's own body.
    let (_, answer) = post(&f.state, "/v1/embed", json!({"movies": []})).await;
    assert_eq!(error(&answer), ("invalid_request", Some("movies")));
}

// ---- compression and conditional GETs ----

/// A GET with request headers: status, response headers and body bytes.
async fn get_with(
    state: &AppState,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut req = Request::builder().uri(uri);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let response = cinevec::server::app(state.clone()).oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, axum::body::to_bytes(response.into_body(), 1 << 26).await.unwrap().to_vec())
}

#[tokio::test]
async fn cacheable_answers_carry_an_etag_that_changes_with_the_catalog() {
    let f = fixture().await;
    for uri in ["/v1/map", "/v1/map.png?size=64", "/v1/info", "/openapi.yaml", "/"] {
        let (status, headers, body) = get_with(&f.state, uri, &[]).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(headers["cache-control"], "no-cache", "{uri}");
        let tag = headers["etag"].to_str().unwrap().to_string();
        let (status, again, empty) = get_with(&f.state, uri, &[("if-none-match", &tag)]).await;
        assert_eq!((status, empty.len()), (StatusCode::NOT_MODIFIED, 0), "{uri}");
        assert_eq!(again["etag"], tag.as_str(), "{uri}");
        // A tag in a list matches; garbage and another tag are ignored: the full answer.
        let (status, _, _) = get_with(&f.state, uri, &[("if-none-match", &format!("\"x\", {tag}"))]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "{uri}");
        for other in ["garbage", "W/\"0000000000000000\"", "\"", ""] {
            let (status, _, full) = get_with(&f.state, uri, &[("if-none-match", other)]).await;
            assert_eq!((status, full), (StatusCode::OK, body.clone()), "{uri} with {other:?}");
        }
    }
    let tags = |uris: &'static [&'static str]| {
        let state = f.state.clone();
        async move {
            let mut out = Vec::new();
            for uri in uris {
                out.push(get_with(&state, uri, &[]).await.1["etag"].to_str().unwrap().to_string());
            }
            out
        }
    };
    const FOLLOW: &[&str] = &["/v1/map", "/v1/map.png?size=64", "/v1/info"];
    let before = tags(FOLLOW).await;
    // A run-time add: the catalog's answers change, and so do their tags (no stale 304).
    let copy = json!({"id": "copy3", "rating": 9.0, "movie": serde_json::to_value(document(3)).unwrap()});
    let (status, _) = call(&f.state, "POST", "/v1/movies", Some(copy), Some(KEY)).await;
    assert_eq!(status, StatusCode::CREATED);
    for (uri, old) in FOLLOW.iter().zip(&before) {
        let (status, headers, _) = get_with(&f.state, uri, &[("if-none-match", old)]).await;
        assert_eq!(status, StatusCode::OK, "{uri}: the old tag must not get a 304 after an add");
        assert_ne!(headers["etag"].to_str().unwrap(), old, "{uri}");
    }
    let (_, map, _) = get_with(&f.state, "/v1/map", &[]).await;
    let (_, map_body) = get(&f.state, "/v1/map").await;
    assert!(map_body["ids"].as_array().unwrap().iter().any(|id| id == "copy3"));
    assert_ne!(map["etag"].to_str().unwrap(), before[0]);
}

#[tokio::test]
async fn large_answers_are_compressed_when_asked_and_small_ones_never() {
    use std::io::Read;
    let f = fixture().await;
    let (_, _, plain) = get_with(&f.state, "/openapi.yaml", &[]).await;
    assert!(plain.len() > usize::from(cinevec::server::COMPRESS_ABOVE));
    let (status, headers, gz) = get_with(&f.state, "/openapi.yaml", &[("accept-encoding", "gzip")]).await;
    assert_eq!((status, headers["content-encoding"].to_str().unwrap()), (StatusCode::OK, "gzip"));
    assert!(headers["vary"].to_str().unwrap().to_lowercase().contains("accept-encoding"));
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut unzipped).unwrap();
    assert_eq!(unzipped, plain);
    assert!(gz.len() * 3 < plain.len(), "gzip: {} of {} bytes", gz.len(), plain.len());
    let (_, headers, br) = get_with(&f.state, "/openapi.yaml", &[("accept-encoding", "gzip, br;q=1.0")]).await;
    assert_eq!(headers["content-encoding"], "br");
    assert!(br.len() < gz.len() * 2 && br.len() * 3 < plain.len());
    // An encoding the server does not know, or none: the answer as it is.
    for asked in ["x-unknown", "compress", "identity", ""] {
        let (status, headers, body) = get_with(&f.state, "/openapi.yaml", &[("accept-encoding", asked)]).await;
        assert_eq!(
            (status, headers.get("content-encoding"), body.len()),
            (StatusCode::OK, None, plain.len()),
            "{asked:?}"
        );
    }
    // A more-like-this answer is small: never compressed. Nor is a PNG.
    let (_, headers, body) = get_with(&f.state, "/v1/movies/m1/similar?k=10", &[("accept-encoding", "gzip, br")]).await;
    assert!(body.len() < usize::from(cinevec::server::COMPRESS_ABOVE));
    assert_eq!(headers.get("content-encoding"), None);
    let (_, headers, _) = get_with(&f.state, "/v1/map.png?size=512", &[("accept-encoding", "gzip, br")]).await;
    assert_eq!(headers.get("content-encoding"), None);
}
