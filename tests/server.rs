//! The real HTTP service on port 0, with the real default model and a 300-movie slice of imdb5000:
//! every endpoint, every error, batching, persistence across restarts, and the OpenAPI contract.

mod common;
mod serving;

use cinevec::server::{Application, ServeConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};
use serving::{cinevec, config, fixture, fixture_copy, Server, KEY, SLICE};
use std::sync::OnceLock;
use std::time::Duration;

// ---- the OpenAPI contract ----

fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| serde_norway::from_str(cinevec::server::OPENAPI_YAML).expect("openapi.yaml parses"))
}

/// The JSON schema of a documented response, with `$ref`s made resolvable.
fn response_schema(method: &str, path: &str, status: u16) -> Value {
    let op = &spec()["paths"][path][method.to_lowercase()];
    assert!(op.is_object(), "{method} {path} is not in openapi.yaml");
    let mut response = op["responses"][status.to_string()].clone();
    assert!(response.is_object(), "{method} {path} does not document status {status}");
    if let Some(r) = response.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap();
        response = spec()["components"]["responses"][name].clone();
    }
    let schema = response["content"]["application/json"]["schema"].clone();
    assert!(schema.is_object(), "{method} {path} {status} has no JSON schema");
    let defs = spec()["components"]["schemas"].clone();
    let text = json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": defs, "allOf": [schema]})
        .to_string()
        .replace("#/components/schemas/", "#/$defs/");
    serde_json::from_str(&text).unwrap()
}

/// Check a response against the spec and return its JSON body.
async fn checked(method: &str, path_template: &str, response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_else(|e| panic!("{method} {path_template}: not JSON: {e}"));
    let schema = response_schema(method, path_template, status.as_u16());
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(&body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(
        errors.is_empty(),
        "{method} {path_template} {status}: body does not match openapi.yaml: {errors:?}\n{body}"
    );
    (status, body)
}

fn ids(results: &Value) -> Vec<String> {
    results.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

const AVATAR: &str = "tt0499549";

/// Needs neither the model nor ../shared: runs under a bare `cargo test`. The routed list is the
/// table the router is built from.
#[test]
fn every_route_is_in_the_spec_and_every_spec_route_is_routed() {
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in spec()["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    let mut routed: Vec<(String, String)> =
        cinevec::server::routes::routes().iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    documented.sort();
    routed.sort();
    assert_eq!(documented, routed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the downloaded model and ../shared: run scripts/test.sh"]
async fn every_documented_route_answers_on_the_real_server() {
    let server = Server::start(config(fixture())).await;
    for (method, path) in cinevec::server::routes::routes() {
        let url = path.replace("{id}", AVATAR);
        let response = match method {
            "GET" => server.get(&url).await,
            // No key is configured: routed, and refused as unauthorised rather than 405.
            "DELETE" => server.delete_auth(&url, "no-such-key").await,
            _ => server.post(&url, &json!({})).await,
        };
        let status = response.status();
        let body = response.text().await.unwrap();
        assert!(
            !body.contains("no such route") && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {status} {body}"
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the downloaded model and ../shared: run scripts/test.sh"]
async fn read_endpoints_answer_with_documented_shapes() {
    let s = Server::start(config(fixture())).await;

    let (_, health) = checked("GET", "/healthz", s.get("/healthz").await).await;
    assert_eq!(health["status"], "ok");
    let (status, map) = checked("GET", "/v1/map", s.get("/v1/map").await).await;
    assert_eq!((status, map["count"].as_u64()), (StatusCode::OK, Some(SLICE as u64)));
    let (status, _) = checked("GET", "/v1/map.png", s.get("/v1/map.png?size=1").await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, ready) = checked("GET", "/readyz", s.get("/readyz").await).await;
    assert_eq!(ready["movies"], SLICE);
    let (_, info) = checked("GET", "/v1/info", s.get("/v1/info").await).await;
    assert_eq!(info["model"]["dim"], 384);
    assert_eq!(info["model"]["dtype"], "f32");
    assert_eq!(info["counts"]["movies"], SLICE);
    assert_eq!(info["model"]["weights_sha256"], cinevec::models::DEFAULT_MODEL_SHA256);

    // A movie, with its predicted rating inside its interval and on the 1-10 scale.
    let (status, movie) = checked("GET", "/v1/movies/{id}", s.get(&format!("/v1/movies/{AVATAR}")).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(movie["title"], "Avatar");
    assert_eq!(movie["document"]["directors"], json!(["James Cameron"]));
    let p = &movie["predicted"];
    assert!(p["low"].as_f64() <= p["rating"].as_f64() && p["rating"].as_f64() <= p["high"].as_f64(), "{p}");

    // More like this: k results, never the movie itself, best first, with "why".
    let (_, similar) =
        checked("GET", "/v1/movies/{id}/similar", s.get(&format!("/v1/movies/{AVATAR}/similar?k=7")).await).await;
    let results = similar["results"].as_array().unwrap();
    assert_eq!(results.len(), 7);
    assert!(!ids(&similar["results"]).contains(&AVATAR.to_string()));
    let scores: Vec<f64> = results.iter().map(|r| r["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert!(results.iter().any(|r| !r["why"]["shared_genres"].as_array().unwrap().is_empty()));

    // Filters apply inside the search: all k results pass them.
    let url = format!("/v1/movies/{AVATAR}/similar?k=5&min_year=2005&max_year=2012&genres=Comedy,Drama&exclude_genres=Animation&min_votes=100000&min_rating=6");
    let (_, filtered) = checked("GET", "/v1/movies/{id}/similar", s.get(&url).await).await;
    let results = filtered["results"].as_array().unwrap();
    assert_eq!(results.len(), 5, "{filtered}");
    for r in results {
        let m = s.get(&format!("/v1/movies/{}", r["id"].as_str().unwrap())).await.json::<Value>().await.unwrap();
        let year = m["year"].as_i64().unwrap();
        let genres: Vec<&str> =
            m["document"]["genres"].as_array().unwrap().iter().map(|g| g.as_str().unwrap()).collect();
        assert!((2005..=2012).contains(&year), "{m}");
        assert!(genres.contains(&"Comedy") || genres.contains(&"Drama"), "{m}");
        assert!(!genres.contains(&"Animation"), "{m}");
        assert!(m["votes"].as_u64().unwrap() >= 100_000 && m["rating"].as_f64().unwrap() >= 6.0, "{m}");
    }

    // A posted (new, partial) document.
    let body = json!({"movie": {"title": "Avatar: The Return", "genres": ["Action", "Sci-Fi"], "directors": ["James Cameron"]}, "k": 3});
    let (_, posted) = checked("POST", "/v1/similar", s.post("/v1/similar", &body).await).await;
    assert_eq!(posted["results"].as_array().unwrap().len(), 3);
    assert_eq!(posted["truncated"], false);
    assert!(
        ids(&posted["results"]).contains(&AVATAR.to_string()),
        "the original should be among the nearest: {posted}"
    );

    // Recommendations exclude their examples.
    let dark_knight = "tt1345836";
    for strategy in ["average", "linear"] {
        let body = json!({"positive": [AVATAR, dark_knight], "negative": ["tt0401729"], "k": 6, "strategy": strategy});
        let (_, rec) = checked("POST", "/v1/recommend", s.post("/v1/recommend", &body).await).await;
        let got = ids(&rec["results"]);
        assert_eq!(got.len(), 6, "{strategy}: {rec}");
        for example in [AVATAR, dark_knight, "tt0401729"] {
            assert!(!got.contains(&example.to_string()), "{strategy} returned example {example}");
        }
    }

    // Predictions and embeddings.
    let docs = json!({"movies": [{"title": "The Quiet Orchard", "genres": ["Drama"]}, {"title": "Laser Sharks 3", "genres": ["Action", "Horror"], "release_year": 2019}]});
    let (_, pred) = checked("POST", "/v1/predict", s.post("/v1/predict", &docs).await).await;
    assert_eq!(pred["predictions"].as_array().unwrap().len(), 2);
    assert_eq!(pred["predictions"][1]["title"], "Laser Sharks 3");
    let (_, emb) = checked("POST", "/v1/embed", s.post("/v1/embed", &docs).await).await;
    let v: Vec<f32> =
        emb["embeddings"][0]["vector"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    assert_eq!(v.len(), 384);
    assert!((v.iter().map(|x| x * x).sum::<f32>().sqrt() - 1.0).abs() < 1e-4);
    // The request path embeds the canonical rendering, exactly like the batch path.
    let direct = cinevec::engine::Embedder::load(&common::minilm_dir(), &Default::default()).unwrap();
    let doc = cinevec::movie::MovieDoc::parse(&docs["movies"][0]).unwrap();
    let want = direct.embed(&[&doc.render()]).unwrap();
    assert!(common::cosine(&v, want.row(0)) > 0.9999);

    // A long document is truncated, not refused, and the response says so.
    let actors: Vec<String> = (0..400).map(|i| format!("Actor Number {i}")).collect();
    let long = json!({"movies": [{"title": "Crowded", "actors": actors}]});
    let (status, emb) = checked("POST", "/v1/embed", s.post("/v1/embed", &long).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(emb["embeddings"][0]["truncated"], true);
    assert!(emb["embeddings"][0]["tokens"].as_u64().unwrap() > 256);

    // Title search: case-insensitive and ranked.
    let (_, found) = checked("GET", "/v1/search", s.get("/v1/search?q=AVATAR").await).await;
    assert_eq!(found["results"][0]["id"], AVATAR);

    // Metrics, the spec and the docs page.
    let metrics = s.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("cinevec_http_requests_total"), "{metrics}");
    assert!(metrics.contains("route=\"/v1/movies/{id}/similar\""), "{metrics}");
    assert!(metrics.contains("cinevec_embed_batch_size"), "{metrics}");
    assert_eq!(s.get("/openapi.yaml").await.text().await.unwrap(), cinevec::server::OPENAPI_YAML);
    assert!(s.get("/docs").await.text().await.unwrap().contains("<h1>cinevec API</h1>"));
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the downloaded model and ../shared: run scripts/test.sh"]
async fn exact_and_hnsw_agree_on_the_slice() {
    let s = Server::start(config(fixture())).await;
    let text = std::fs::read_to_string(fixture().join("slice.jsonl")).unwrap();
    let all: Vec<String> =
        text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_string()).collect();
    let (mut same, mut overlap, n) = (0, 0, 60);
    for id in all.iter().step_by(SLICE / n).take(n) {
        let a: Value = s.get(&format!("/v1/movies/{id}/similar?k=10")).await.json().await.unwrap();
        let b: Value = s.get(&format!("/v1/movies/{id}/similar?k=10&exact=true")).await.json().await.unwrap();
        let (a, b) = (ids(&a["results"]), ids(&b["results"]));
        assert_eq!(b.len(), 10);
        overlap += a.iter().filter(|x| b.contains(x)).count();
        same += usize::from(a == b);
    }
    let recall = overlap as f64 / (n * 10) as f64;
    assert!(recall >= 0.99, "HNSW recall@10 against exact: {recall}");
    assert!(same * 10 >= n * 9, "only {same} of {n} lists identical");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the downloaded model and ../shared: run scripts/test.sh"]
async fn every_error_has_the_one_json_shape() {
    let mut cfg = config(fixture());
    cfg.service.max_documents = 3;
    cfg.service.max_body_bytes = 64 * 1024;
    let s = Server::start(cfg).await;
    let expect = |status: StatusCode, body: &Value, want: StatusCode, code: &str| {
        assert_eq!(status, want, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
    };

    let (st, b) = checked("GET", "/v1/movies/{id}", s.get("/v1/movies/tt0000000").await).await;
    expect(st, &b, StatusCode::NOT_FOUND, "not_found");
    let (st, b) = checked("GET", "/v1/movies/{id}/similar", s.get("/v1/movies/tt0000000/similar").await).await;
    expect(st, &b, StatusCode::NOT_FOUND, "not_found");
    for bad in ["k=0", "k=101", "k=ten", "min_rating=11", "colour=red"] {
        let (st, b) =
            checked("GET", "/v1/movies/{id}/similar", s.get(&format!("/v1/movies/{AVATAR}/similar?{bad}")).await).await;
        expect(st, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    }
    // An empty year range is no error (the spec cannot state a bound between two fields): no results.
    let empty = format!("/v1/movies/{AVATAR}/similar?min_year=2010&max_year=2000");
    let (st, b) = checked("GET", "/v1/movies/{id}/similar", s.get(&empty).await).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["results"].as_array().map(Vec::len), Some(0), "{b}");
    let (st, b) = checked("GET", "/v1/search", s.get("/v1/search?q=").await).await;
    expect(st, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");

    // Malformed JSON, not JSON, wrong types, unknown fields, too many documents, none.
    let raw = |body: &'static str, ct: &'static str| {
        s.client.post(format!("{}/v1/predict", s.base)).header("content-type", ct).body(body).send()
    };
    let (st, b) = checked("POST", "/v1/predict", raw("{\"movies\": [", "application/json").await.unwrap()).await;
    expect(st, &b, StatusCode::BAD_REQUEST, "bad_request");
    let (st, b) = checked("POST", "/v1/predict", raw("title=x", "text/plain").await.unwrap()).await;
    expect(st, &b, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let cases = [
        (json!({"movies": [{"title": 42}]}), Some("movies[0].title")),
        (json!({"movies": [{"title": "A"}, {"genres": ["Drama"]}]}), Some("movies[1].title")),
        (json!({"movies": [{"title": "A", "release_year": "1999"}]}), Some("movies[0].release_year")),
        (json!({"movies": "Heat"}), None),
        (json!({"movies": [{"title": "A"}], "colour": "red"}), None),
        (json!({"movies": []}), Some("movies")),
        (json!({"movies": [{"title": "A"}, {"title": "B"}, {"title": "C"}, {"title": "D"}]}), Some("movies")),
    ];
    for (body, field) in cases {
        let (st, b) = checked("POST", "/v1/predict", s.post("/v1/predict", &body).await).await;
        expect(st, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
        if let Some(f) = field {
            assert_eq!(b["error"]["field"], f, "{body}: {b}");
        }
    }
    let (st, b) =
        checked("POST", "/v1/similar", s.post("/v1/similar", &json!({"movie": {"title": "A"}, "k": 1000})).await).await;
    expect(st, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    // Unknown ids are skipped (and listed in `ignored`); with no usable positive left it is a 422.
    let (st, b) = checked("POST", "/v1/recommend", s.post("/v1/recommend", &json!({"positive": ["nope"]})).await).await;
    expect(st, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let (st, b) = checked(
        "POST",
        "/v1/recommend",
        s.post("/v1/recommend", &json!({"positive": [AVATAR], "strategy": "linear"})).await,
    )
    .await;
    expect(st, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let (st, b) = checked(
        "POST",
        "/v1/recommend",
        s.post("/v1/recommend", &json!({"positive": [AVATAR], "strategy": "magic"})).await,
    )
    .await;
    expect(st, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");

    // Body over the limit.
    let huge = json!({"movies": [{"title": "x".repeat(100_000)}]});
    let (st, b) = checked("POST", "/v1/predict", s.post("/v1/predict", &huge).await).await;
    expect(st, &b, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // Writes: no key, a wrong key; nothing changes.
    let add = json!({"id": "tt9999999", "movie": {"title": "Intruder"}});
    let (st, b) = checked("POST", "/v1/movies", s.post("/v1/movies", &add).await).await;
    expect(st, &b, StatusCode::UNAUTHORIZED, "unauthorized");
    let (st, b) = checked("POST", "/v1/movies", s.post_auth("/v1/movies", &add, "wrong-key").await).await;
    expect(st, &b, StatusCode::UNAUTHORIZED, "unauthorized");
    let (st, b) = checked(
        "POST",
        "/v1/movies",
        s.post_auth("/v1/movies", &json!({"id": "", "movie": {"title": "A"}}), KEY).await,
    )
    .await;
    expect(st, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let (st, b) = checked(
        "POST",
        "/v1/movies",
        s.post_auth("/v1/movies", &json!({"id": "x", "rating": 12, "movie": {"title": "A"}}), KEY).await,
    )
    .await;
    expect(st, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    assert_eq!(s.get("/v1/movies/tt9999999").await.status(), StatusCode::NOT_FOUND);
    let info: Value = s.get("/v1/info").await.json().await.unwrap();
    assert_eq!(info["counts"]["movies"], SLICE);

    // Unknown routes and methods.
    let r = s.get("/v2/nothing").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "not_found");
    // (DELETE is routed there since deletes came in; PUT is not.)
    let r = s.client.put(format!("{}/v1/movies/{AVATAR}", s.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "method_not_allowed");

    // Request ids are echoed, or made up when absent.
    let r = s.client.get(format!("{}/healthz", s.base)).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = s.get("/healthz").await;
    assert!(r.headers()["x-request-id"].len() >= 16);

    // A browser frontend sending Authorization passes preflight.
    let r = s
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/v1/movies", s.base))
        .header("origin", "https://frontend.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let allowed = r.headers()["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{allowed}");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the downloaded model and ../shared: run scripts/test.sh"]
async fn overload_is_429_and_a_missed_deadline_is_503() {
    let mut cfg = config(fixture());
    cfg.service.queue.capacity = 1;
    cfg.service.queue.max_batch = 1;
    let s = Server::start(cfg).await;
    let body = json!({"movies": [{"title": "Queue Test", "genres": ["Drama"], "actors": ["A", "B", "C"]}]});
    let requests: Vec<_> = (0..40).map(|_| s.client.post(format!("{}/v1/embed", s.base)).json(&body).send()).collect();
    let mut full = 0;
    for r in futures_join(requests).await {
        let r = r.unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(r.headers()["retry-after"], "1");
            let (_, b) = checked("POST", "/v1/embed", r).await;
            assert_eq!(b["error"]["code"], "queue_full");
            full += 1;
        } else {
            assert_eq!(r.status(), StatusCode::OK);
        }
    }
    assert!(full > 0, "40 simultaneous requests into a queue of 1 must see 429s");
    s.stop().await.unwrap();

    let mut cfg = config(fixture());
    cfg.service.request_timeout = Duration::from_millis(1);
    let s = Server::start(cfg).await;
    let many = json!({"movies": (0..32).map(|i| json!({"title": format!("Slow {i}"), "actors": ["X", "Y"]})).collect::<Vec<_>>()});
    let (st, b) = checked("POST", "/v1/embed", s.post("/v1/embed", &many).await).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(b["error"]["code"], "timeout");
    s.stop().await.unwrap();
}

/// `--dtype bf16` on a CPU with AVX512-BF16: `/v1/info` says so and request-time embedding runs the
/// bf16 kernels (the engine's bf16 vector exactly, and within bf16's distance of the f32 one).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the downloaded model and ../shared: run scripts/test.sh"]
async fn request_time_embedding_uses_the_chosen_dtype() {
    use cinevec::engine::{lowp::CpuPrecision, Embedder, EngineOptions};
    if !CpuPrecision::Bf16.available() {
        eprintln!("skipped: this CPU has no AVX512-BF16");
        return;
    }
    let mut cfg = config(fixture());
    let (dtype, cpu_precision) = cinevec::cli::Precision::Bf16.resolve();
    (cfg.service.model.dtype, cfg.service.model.cpu_precision) = (dtype, cpu_precision);
    let s = Server::start(cfg).await;
    let (_, info) = checked("GET", "/v1/info", s.get("/v1/info").await).await;
    assert_eq!(info["model"]["dtype"], "bf16");
    let docs = json!({"movies": [{"title": "The Quiet Orchard", "genres": ["Drama"], "release_year": 1987}]});
    let (_, emb) = checked("POST", "/v1/embed", s.post("/v1/embed", &docs).await).await;
    let v: Vec<f32> =
        emb["embeddings"][0]["vector"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    let text = cinevec::movie::MovieDoc::parse(&docs["movies"][0]).unwrap().render();
    let load = |p| {
        let options = EngineOptions { cpu_precision: Some(p), ..Default::default() };
        Embedder::load(&common::minilm_dir(), &options).unwrap().embed(&[&text]).unwrap()
    };
    let (bf16, f32) = (load(CpuPrecision::Bf16), load(CpuPrecision::F32));
    assert!(common::cosine(&v, bf16.row(0)) > 0.999999, "not the bf16 engine's vector");
    let cos = common::cosine(&v, f32.row(0));
    assert!((0.999..0.999999).contains(&cos), "cosine {cos} with f32: expected close, but not f32 itself");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the downloaded model and ../shared: run scripts/test.sh"]
async fn concurrent_embedding_requests_are_batched_and_equal_one_by_one() {
    let s = Server::start(config(fixture())).await;
    let titles: Vec<String> =
        (0..24).map(|i| format!("Concurrent Movie {i} and the {} Affair", ["Red", "Blue", "Green"][i % 3])).collect();
    let requests: Vec<_> = titles
        .iter()
        .map(|t| {
            s.client
                .post(format!("{}/v1/embed", s.base))
                .json(&json!({"movies": [{"title": t, "genres": ["Drama"]}]}))
                .send()
        })
        .collect();
    let answers = futures_join(requests).await;
    let info: Value = s.get("/v1/info").await.json().await.unwrap();
    let batches = info["queue"]["batches"].as_u64().unwrap();
    // One warm-up pass, then the 24 requests in fewer passes than requests.
    assert!(batches < 1 + 24, "{batches} forward passes for 24 concurrent requests: not batched");
    let direct = cinevec::engine::Embedder::load(&common::minilm_dir(), &Default::default()).unwrap();
    for (t, answer) in titles.iter().zip(answers) {
        let body: Value = answer.unwrap().json().await.unwrap();
        let got: Vec<f32> =
            body["embeddings"][0]["vector"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        let doc = cinevec::movie::MovieDoc::parse(&json!({"title": t, "genres": ["Drama"]})).unwrap();
        let want = direct.embed(&[&doc.render()]).unwrap();
        let cos = common::cosine(&got, want.row(0));
        assert!(cos >= 0.9999, "{t}: cosine {cos}");
    }
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the downloaded model and ../shared: run scripts/test.sh"]
async fn the_compressed_map_is_kept_per_catalog_state_and_follows_an_add() {
    use std::io::Read;
    let dir = fixture_copy();
    let s = Server::start(config(dir.path())).await;
    let map = |encoding: &'static str| {
        let request = s.client.get(format!("{}/v1/map", s.base));
        let request = if encoding.is_empty() { request } else { request.header("accept-encoding", encoding) };
        async move {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let header = |name: &str| r.headers().get(name).map(|v| v.to_str().unwrap().to_string());
            let (encoding, etag) = (header("content-encoding"), header("etag").expect("the map has a tag"));
            (encoding, etag, r.bytes().await.unwrap().to_vec())
        }
    };
    let unbrotli = |b: &[u8]| {
        let mut out = Vec::new();
        brotli::Decompressor::new(b, 4096).read_to_end(&mut out).unwrap();
        out
    };
    let gunzip = |b: &[u8]| {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(b).read_to_end(&mut out).unwrap();
        out
    };
    let (none, tag, plain) = map("").await;
    assert_eq!(none, None);
    assert!(plain.len() >= usize::from(cinevec::server::COMPRESS_ABOVE), "{} bytes", plain.len());
    // What a browser sends: brotli; the bytes decode to the plain answer, under the same tag.
    let (enc, br_tag, br) = map("gzip, deflate, br, zstd").await;
    assert_eq!((enc.as_deref(), br_tag.as_str()), (Some("br"), tag.as_str()));
    assert_eq!(unbrotli(&br), plain);
    assert!(br.len() * 2 < plain.len(), "brotli: {} of {} bytes", br.len(), plain.len());
    let (enc, _, gz) = map("gzip").await;
    assert_eq!(enc.as_deref(), Some("gzip"));
    assert_eq!(gunzip(&gz), plain);
    // Asked again: the same bytes.
    assert_eq!(map("br").await.2, br);
    // An add changes the map: a new tag, and its compressed form is the new answer, not the kept one.
    let add = json!({"id": "cv-map-1", "movie": {"title": "A Film Added For The Map", "genres": ["Drama"]}});
    let (st, b) = checked("POST", "/v1/movies", s.post_auth("/v1/movies", &add, KEY).await).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let (_, new_tag, new_plain) = map("").await;
    assert_ne!(new_tag, tag);
    let (enc, br_tag, br) = map("br").await;
    assert_eq!((enc.as_deref(), br_tag.as_str()), (Some("br"), new_tag.as_str()));
    let decoded = unbrotli(&br);
    assert_eq!(decoded, new_plain);
    let ids: Value = serde_json::from_slice(&decoded).unwrap();
    assert!(ids["ids"].as_array().unwrap().iter().any(|id| id == "cv-map-1"));
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the downloaded model and ../shared: run scripts/test.sh"]
async fn an_added_movie_is_searchable_at_once_and_survives_a_restart() {
    let dir = fixture_copy();
    let s = Server::start(config(dir.path())).await;
    let add = json!({"id": "cv0000001", "rating": 7.4, "votes": 1234, "movie": {
        "title": "Amélie Returns", "genres": ["Comedy", "Romance"], "release_year": 2026,
        "directors": ["Jean-Pierre Jeunet"], "actors": ["Audrey Tautou"], "mood": "whimsical"}});
    let (st, b) = checked("POST", "/v1/movies", s.post_auth("/v1/movies", &add, KEY).await).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    assert_eq!(b["created"], true);
    assert_eq!(b["movie"]["document"]["mood"], "whimsical");

    // Found at once: by title (accent-insensitive), and as a neighbour of a document like it.
    let (_, found) = checked("GET", "/v1/search", s.get("/v1/search?q=AMELIE").await).await;
    assert_eq!(found["results"][0]["id"], "cv0000001");
    let like = json!({"movie": {"title": "Amélie Returns", "genres": ["Comedy", "Romance"], "directors": ["Jean-Pierre Jeunet"]}, "k": 3});
    let (_, near) = checked("POST", "/v1/similar", s.post("/v1/similar", &like).await).await;
    assert_eq!(near["results"][0]["id"], "cv0000001", "{near}");
    assert_eq!(near["results"][0]["why"]["shared_directors"], json!(["Jean-Pierre Jeunet"]));
    let (_, own) = checked("GET", "/v1/movies/{id}/similar", s.get("/v1/movies/cv0000001/similar?k=5").await).await;
    assert_eq!(own["results"].as_array().unwrap().len(), 5);

    // Replacing keeps one movie under the id, with the new document.
    let mut replaced = add.clone();
    replaced["movie"]["title"] = json!("Amélie Returns Again");
    let (st, b) = checked("POST", "/v1/movies", s.post_auth("/v1/movies", &replaced, KEY).await).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(b["created"], false);
    let info: Value = s.get("/v1/info").await.json().await.unwrap();
    assert_eq!(info["counts"]["movies"], SLICE + 1);
    // (Any title with one of the words matches; the one with both, once: the old version must not be served.)
    let (_, found) = checked("GET", "/v1/search", s.get("/v1/search?q=amelie%20returns%20again").await).await;
    let results = found["results"].as_array().unwrap();
    assert_eq!(results.iter().filter(|r| r["id"] == "cv0000001").count(), 1, "{found}");
    assert_eq!(
        (results[0]["id"].as_str(), results[0]["title"].as_str()),
        (Some("cv0000001"), Some("Amélie Returns Again"))
    );
    // Forgiving: a typo, another word order.
    let (_, found) = checked("GET", "/v1/search", s.get("/v1/search?q=retrns%20amelei").await).await;
    assert_eq!(found["results"][0]["id"], "cv0000001", "{found}");
    let before: Value = s.get("/v1/movies/cv0000001/similar?k=5&exact=true").await.json().await.unwrap();
    s.stop().await.unwrap();

    // After a restart: still there, not re-embedded (same neighbours), still searchable.
    let s = Server::start(config(dir.path())).await;
    let (_, movie) = checked("GET", "/v1/movies/{id}", s.get("/v1/movies/cv0000001").await).await;
    assert_eq!(movie["title"], "Amélie Returns Again");
    assert_eq!(movie["source"], "api");
    let after: Value = s.get("/v1/movies/cv0000001/similar?k=5&exact=true").await.json().await.unwrap();
    assert_eq!(before["results"], after["results"]);
    let info: Value = s.get("/v1/info").await.json().await.unwrap();
    assert_eq!(info["counts"]["added_at_run_time"], 1);
    assert_eq!(info["queue"]["documents"], 1, "only the warm-up may be embedded at start");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the downloaded model and ../shared: run scripts/test.sh"]
async fn a_restart_reads_the_catalog_snapshot_until_the_store_changes() {
    let dir = fixture_copy();
    let snapshot = dir.path().join("catalog.snapshot");
    let _ = std::fs::remove_file(&snapshot); // copied from the shared fixture if another test made one
    let text = std::fs::read_to_string(fixture().join("slice.jsonl")).unwrap();
    let some: Vec<String> = text
        .lines()
        .step_by(37)
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    let mut paths = vec!["/v1/search?q=the&limit=50".to_string(), "/v1/search?q=STAR".to_string()];
    for id in &some {
        paths.push(format!("/v1/movies/{id}"));
        paths.push(format!("/v1/movies/{id}/similar?k=10"));
        paths.push(format!("/v1/movies/{id}/similar?k=30&genres=drama&min_votes=1000"));
    }
    async fn answers(s: &Server, paths: &[String]) -> Vec<Value> {
        let mut out = Vec::new();
        for p in paths {
            let r = s.get(p).await;
            assert_eq!(r.status(), StatusCode::OK, "{p}");
            out.push(r.json().await.unwrap());
        }
        out
    }
    let info = |s: &Server| {
        let url = format!("{}/v1/info", s.base);
        let client = s.client.clone();
        async move { client.get(url).send().await.unwrap().json::<Value>().await.unwrap() }
    };

    let s = Server::start(config(dir.path())).await;
    assert_eq!(info(&s).await["catalog_loaded_from"], "store");
    let before = answers(&s, &paths).await;
    for _ in 0..300 {
        if snapshot.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(snapshot.exists(), "a start that read the store saves a snapshot");
    s.stop().await.unwrap();

    // Unchanged store: the snapshot is read, and every answer is the same.
    let s = Server::start(config(dir.path())).await;
    assert_eq!(info(&s).await["catalog_loaded_from"], "snapshot");
    assert_eq!(answers(&s, &paths).await, before);
    // A write moves the store's generation; it is in the journal beside the snapshot, so the next
    // start reads the snapshot and the journal, with the write, and folds them into a new snapshot.
    let add = json!({"id": "cv0000002", "rating": 6.1, "votes": 99, "movie": {"title": "Snapshot Star", "genres": ["Drama"]}});
    assert_eq!(s.post_auth("/v1/movies", &add, KEY).await.status(), StatusCode::CREATED);
    s.stop().await.unwrap();
    let modified = || std::fs::metadata(&snapshot).unwrap().modified().unwrap();
    let old = modified();
    let s = Server::start(config(dir.path())).await;
    assert_eq!(info(&s).await["catalog_loaded_from"], "snapshot");
    let found: Value = s.get("/v1/search?q=snapshot%20star").await.json().await.unwrap();
    assert_eq!(found["results"][0]["id"], "cv0000002");
    for _ in 0..300 {
        if modified() != old {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(modified(), old, "a new snapshot is saved");
    s.stop().await.unwrap();

    // A damaged snapshot is not used: the store is read and the answers are still the same.
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(&snapshot, &bytes).unwrap();
    let s = Server::start(config(dir.path())).await;
    assert_eq!(info(&s).await["catalog_loaded_from"], "store");
    let after = answers(&s, &paths[..1]).await;
    assert_eq!(after[0], before[0], "search by title");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the downloaded model and ../shared: run scripts/test.sh"]
async fn startup_refuses_artifacts_that_do_not_belong_together() {
    async fn refused(cfg: ServeConfig) -> String {
        let app = Application::build(cfg).await.unwrap();
        let result =
            tokio::time::timeout(Duration::from_secs(120), app.run_until_stopped(std::future::pending())).await;
        format!("{:#}", result.expect("a broken set must stop the server").expect_err("must refuse to start"))
    }

    // A catalog with a movie the matrix lacks.
    let dir = fixture_copy();
    cinevec(&[
        "ingest",
        "--catalog",
        common::shared().join("data/imdb5000/catalog.jsonl").to_str().unwrap(),
        "--db",
        dir.path().join("catalog.db").to_str().unwrap(),
    ]);
    let msg = refused(config(dir.path())).await;
    assert!(msg.contains("have no embedding") && msg.contains("re-run"), "{msg}");

    // Another model than the matrix was made with.
    let dir = fixture_copy();
    let mut cfg = config(dir.path());
    cfg.service.model.model = common::shared().join("fixtures/tiny-modernbert").to_string_lossy().into_owned();
    let msg = refused(cfg).await;
    assert!(msg.contains("is not the one the embedding matrix was made with"), "{msg}");

    // A head trained on another embedding set.
    let dir = fixture_copy();
    let mut head: Value = serde_json::from_slice(&std::fs::read(dir.path().join("head.json")).unwrap()).unwrap();
    head["embeddings"]["run_id"] = json!("some-other-run");
    std::fs::write(dir.path().join("head.json"), serde_json::to_vec(&head).unwrap()).unwrap();
    let msg = refused(config(dir.path())).await;
    assert!(msg.contains("head"), "{msg}");

    // A matrix from an interrupted run.
    let dir = fixture_copy();
    let ids_path = dir.path().join(cinevec::artifacts::IDS_FILE);
    let mut ids_file: Value = serde_json::from_slice(&std::fs::read(&ids_path).unwrap()).unwrap();
    ids_file["run_id"] = json!("interrupted");
    std::fs::write(&ids_path, serde_json::to_vec(&ids_file).unwrap()).unwrap();
    let msg = refused(config(dir.path())).await;
    assert!(msg.contains("another run"), "{msg}");
}

/// Run futures concurrently on this task, outputs in order.
async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut handles: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = handles.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in handles.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => outputs[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}
