//! Two real servers (replicas) on one PostgreSQL catalog and one artifacts set: a movie added or
//! replaced through either is served by both within a second; with PostgreSQL down, writes answer 503
//! with Retry-After while reads keep answering, and both catch up when it is back.

mod common;
mod pg_cluster;
mod serving;

use cinevec::server::ServeConfig;
use reqwest::StatusCode;
use serde_json::{json, Value};
use serving::{config, fixture_copy, Server, KEY, SLICE};
use std::time::{Duration, Instant};

/// How long a write may take to show on the other replica.
const VISIBLE_WITHIN: Duration = Duration::from_secs(1);

/// The live title of `id` on `s` (from its in-memory rows, not the store), if it serves the id.
async fn live_title(s: &Server, id: &str) -> Option<String> {
    let r = s.get(&format!("/v1/movies/{id}/similar?k=1")).await;
    if r.status() != StatusCode::OK {
        return None;
    }
    let body: Value = r.json().await.unwrap();
    body["query"]["title"].as_str().map(String::from)
}

/// Wait until `s` serves `id` with `title`; how long that took.
async fn until_served(s: &Server, id: &str, title: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if live_title(s, id).await.as_deref() == Some(title) {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{} did not serve {id} as {title:?} within {limit:?}", s.base);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn store_state(s: &Server) -> Value {
    let ready: Value = s.get("/readyz").await.json().await.unwrap();
    ready["store"].clone()
}

async fn until_store(s: &Server, state: &str) {
    let started = Instant::now();
    while store_state(s).await["state"] != state {
        assert!(started.elapsed() < Duration::from_secs(20), "{}: the store never became {state}", s.base);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /v1/movies/{id}` on `s`: must answer 200; its document, rating and votes.
async fn document(s: &Server, id: &str) -> Value {
    let r = s.get(&format!("/v1/movies/{id}")).await;
    assert_eq!(r.status(), StatusCode::OK, "{}: GET /v1/movies/{id}", s.base);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], id);
    assert!(body["document"].is_object(), "{body}");
    json!([body["document"], body["title"], body["rating"], body["votes"]])
}

/// The id of the first movie of a catalog file.
fn first_id(catalog: &std::path::Path) -> String {
    let text = std::fs::read_to_string(catalog).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    first["id"].as_str().unwrap().to_string()
}

/// A copy of the fixture whose catalog is ingested into a fresh database `name` of `pg`, without its
/// catalog snapshot (so that a start reads the store), its catalog file, and a server config on it.
fn on_postgres(pg: &pg_cluster::Cluster, name: &str) -> (tempfile::TempDir, std::path::PathBuf, ServeConfig) {
    let url = pg.create_db(name).unwrap();
    let dir = fixture_copy();
    let _ = std::fs::remove_file(dir.path().join("catalog.snapshot"));
    let slice = dir.path().join("slice.jsonl");
    serving::cinevec(&["ingest", "--catalog", slice.to_str().unwrap(), "--db", &url]);
    let mut cfg = config(dir.path());
    cfg.service.db = url;
    (dir, slice, cfg)
}

fn movie(id: &str, title: &str) -> Value {
    json!({"id": id, "rating": 7.1, "votes": 10, "movie": {
        "title": title, "genres": ["Drama"], "release_year": 2026, "directors": ["Ana Lily Amirpour"]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the downloaded model, ../shared and PostgreSQL: run scripts/test.sh"]
async fn replicas_on_one_postgres_serve_each_others_writes_and_survive_its_restart() {
    let Some(pg) = pg_cluster::Cluster::start().unwrap() else { return };
    let (_dir, slice, cfg) = on_postgres(&pg, "replicas");
    let a = Server::start(cfg.clone()).await;
    let b = Server::start(cfg.clone()).await;
    assert_eq!(store_state(&a).await["backend"], "postgres");

    // Added on A → served by B (from the stored embedding: B embeds nothing but its warm-up).
    let r = a.post_auth("/v1/movies", &movie("cv-r1", "A Girl Walks Home"), KEY).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let took = until_served(&b, "cv-r1", "A Girl Walks Home", VISIBLE_WITHIN).await;
    eprintln!("add on A visible on B after {took:?}");
    let info: Value = b.get("/v1/info").await.json().await.unwrap();
    assert_eq!(info["counts"]["movies"], SLICE + 1);
    assert_eq!(info["queue"]["documents"], 1, "B must not embed A's movie again");
    let found: Value = b.get("/v1/search?q=girl%20walks").await.json().await.unwrap();
    assert_eq!(found["results"][0]["id"], "cv-r1", "{found}");

    // Replaced on B → A serves the new document, and one movie under the id on both.
    let r = b.post_auth("/v1/movies", &movie("cv-r1", "A Girl Walks Home Alone"), KEY).await;
    assert_eq!(r.status(), StatusCode::OK);
    until_served(&a, "cv-r1", "A Girl Walks Home Alone", VISIBLE_WITHIN).await;
    for s in [&a, &b] {
        // (Any title with one of the words matches; the replaced movie, once, first.)
        let found: Value = s.get("/v1/search?q=girl%20walks%20home%20alone").await.json().await.unwrap();
        let results = found["results"].as_array().unwrap();
        assert_eq!(results.iter().filter(|r| r["id"] == "cv-r1").count(), 1, "{}: {found}", s.base);
        assert_eq!(results[0]["title"], "A Girl Walks Home Alone", "{}: {found}", s.base);
        let info: Value = s.get("/v1/info").await.json().await.unwrap();
        assert_eq!(info["counts"]["movies"], SLICE + 1);
    }

    // Both write the same id at once: one row, and the same answer on both.
    let (one, two) = (movie("cv-r2", "Race One"), movie("cv-r2", "Race Two"));
    let (ra, rb) = tokio::join!(a.post_auth("/v1/movies", &one, KEY), b.post_auth("/v1/movies", &two, KEY));
    assert!(ra.status().is_success() && rb.status().is_success());
    tokio::time::sleep(VISIBLE_WITHIN).await;
    let (ta, tb) = (live_title(&a, "cv-r2").await, live_title(&b, "cv-r2").await);
    assert!(ta.is_some() && ta == tb, "the replicas disagree: {ta:?} vs {tb:?}");

    // PostgreSQL down: writes 503 with Retry-After, reads from memory still answer, the movie documents
    // too: a base movie's (from the catalog file the matrix was made from) and run-time adds' (kept in
    // memory), the same as the store gave while it was up.
    let base_id = first_id(&slice);
    let mut shown = Vec::new();
    for id in [base_id.as_str(), "cv-r1", "cv-r2"] {
        let (on_a, on_b) = (document(&a, id).await, document(&b, id).await);
        assert_eq!(on_a, on_b, "{id}");
        shown.push((id, on_a));
    }
    pg.stop().unwrap();
    let r = a.post_auth("/v1/movies", &movie("cv-r3", "While It Was Down"), KEY).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().get("retry-after").is_some());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    until_store(&b, "unavailable").await;
    assert_eq!(live_title(&b, "cv-r1").await.as_deref(), Some("A Girl Walks Home Alone"));
    let found = b.get("/v1/search?q=girl").await;
    assert_eq!(found.status(), StatusCode::OK);
    let info: Value = a.get("/v1/info").await.json().await.unwrap();
    assert_eq!(info["store"]["state"], "unavailable", "{info}");
    for s in [&a, &b] {
        for (id, up) in &shown {
            assert_eq!(&document(s, id).await, up, "{}: {id} while PostgreSQL is down", s.base);
        }
        let r = s.get("/v1/movies/cv-never-added").await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{}: an id no replica serves", s.base);
    }

    // Back: both reconnect by themselves; a write on B reaches A.
    pg.start_again().unwrap();
    until_store(&a, "available").await;
    until_store(&b, "available").await;
    let r = b.post_auth("/v1/movies", &movie("cv-r4", "After The Restart"), KEY).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    until_served(&a, "cv-r4", "After The Restart", VISIBLE_WITHIN).await;
    assert!(
        live_title(&a, "cv-r3").await.is_none() && live_title(&b, "cv-r3").await.is_none(),
        "a refused write was served"
    );

    // A replica started now loads every run-time add from the store, embedding none of them.
    let c = Server::start(cfg).await;
    for (id, title) in [("cv-r1", "A Girl Walks Home Alone"), ("cv-r4", "After The Restart")] {
        assert_eq!(live_title(&c, id).await.as_deref(), Some(title));
    }
    assert_eq!(live_title(&c, "cv-r2").await, live_title(&a, "cv-r2").await);
    let info: Value = c.get("/v1/info").await.json().await.unwrap();
    assert_eq!(info["queue"]["documents"], 1);
    // It started with the run-time adds' vectors; their documents it reads from the store after start.
    tokio::time::sleep(Duration::from_millis(500)).await;
    pg.stop().unwrap();
    for (id, up) in &shown {
        assert_eq!(&document(&c, id).await, up, "the later replica: {id} while PostgreSQL is down");
    }
    for s in [a, b, c] {
        s.stop().await.unwrap();
    }
}

/// Wait until `s` no longer serves `id`; how long that took.
async fn until_gone(s: &Server, id: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    while live_title(s, id).await.is_some() {
        assert!(started.elapsed() < limit, "{} still serves {id} after {limit:?}", s.base);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// Whether the 5 movies most like `document` on `s` hold `id`.
async fn in_similar(s: &Server, document: &Value, id: &str) -> bool {
    let body: Value =
        s.post("/v1/similar", &json!({"movie": document, "k": 5, "exact": true})).await.json().await.unwrap();
    body["results"].as_array().unwrap().iter().any(|r| r["id"] == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the downloaded model, ../shared and PostgreSQL: run scripts/test.sh"]
async fn a_delete_on_one_replica_is_gone_on_the_others_within_a_second_and_after_a_start() {
    let Some(pg) = pg_cluster::Cluster::start().unwrap() else { return };
    let (_dir, slice, cfg) = on_postgres(&pg, "deletes");
    let a = Server::start(cfg.clone()).await;
    let b = Server::start(cfg.clone()).await;
    let base_id = first_id(&slice);
    let r = a.post_auth("/v1/movies", &movie("cv-d1", "Deleted Later"), KEY).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    until_served(&b, "cv-d1", "Deleted Later", VISIBLE_WITHIN).await;
    // Each movie's own document finds it among its most similar.
    let text = std::fs::read_to_string(&slice).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let documents = [first["movie"].clone(), movie("cv-d1", "Deleted Later")["movie"].clone()];
    for (id, doc) in [base_id.as_str(), "cv-d1"].iter().zip(&documents) {
        assert!(in_similar(&b, doc, id).await, "{id}");
    }

    // A matrix movie and a run-time one deleted on A: gone on B within a second.
    for (id, doc) in [base_id.as_str(), "cv-d1"].into_iter().zip(&documents) {
        let r = a.delete_auth(&format!("/v1/movies/{id}"), KEY).await;
        assert_eq!(r.status(), StatusCode::OK, "{id}");
        let took = until_gone(&b, id, VISIBLE_WITHIN).await;
        eprintln!("delete of {id} on A gone on B after {took:?}");
        for s in [&a, &b] {
            assert_eq!(s.get(&format!("/v1/movies/{id}")).await.status(), StatusCode::NOT_FOUND, "{}", s.base);
            assert!(!in_similar(s, doc, id).await, "{}: {id} in a more-like-this", s.base);
        }
    }
    let info: Value = b.get("/v1/info").await.json().await.unwrap();
    assert_eq!(info["counts"]["movies"], SLICE - 1, "{info}");

    // Added again on B: back on A.
    let r = b.post_auth("/v1/movies", &movie("cv-d1", "Deleted And Back"), KEY).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    until_served(&a, "cv-d1", "Deleted And Back", VISIBLE_WITHIN).await;

    // A replica started now leaves the deleted matrix movie out (the store's tombstone).
    let c = Server::start(cfg).await;
    assert!(live_title(&c, &base_id).await.is_none());
    assert_eq!(live_title(&c, "cv-d1").await.as_deref(), Some("Deleted And Back"));
    let info: Value = c.get("/v1/info").await.json().await.unwrap();
    assert_eq!(info["counts"]["movies"], SLICE);

    // PostgreSQL down: a delete answers 503 with Retry-After and the movie stays.
    pg.stop().unwrap();
    let r = a.delete_auth("/v1/movies/cv-d1", KEY).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(live_title(&a, "cv-d1").await.as_deref(), Some("Deleted And Back"));
    for s in [a, b, c] {
        s.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the downloaded model and ../shared: run scripts/test.sh"]
async fn a_delete_is_journaled_and_still_gone_after_a_restart() {
    let dir = fixture_copy();
    let cfg = config(dir.path());
    let slice = dir.path().join("slice.jsonl");
    let base_id = first_id(&slice);
    // The first start reads the store and saves the snapshot (after ready) and a new journal.
    let a = Server::start(cfg.clone()).await;
    let snapshot = dir.path().join("catalog.snapshot");
    let started = Instant::now();
    while !dir.path().join("catalog.journal").exists() {
        assert!(started.elapsed() < Duration::from_secs(30), "no journal was started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(snapshot.exists());
    let r = a.post_auth("/v1/movies", &movie("cv-j1", "Journaled Then Deleted"), KEY).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    for id in [base_id.as_str(), "cv-j1"] {
        assert_eq!(a.delete_auth(&format!("/v1/movies/{id}"), KEY).await.status(), StatusCode::OK, "{id}");
    }
    let journal = std::fs::read(dir.path().join("catalog.journal")).unwrap();
    assert!(journal.starts_with(b"CVCATJN2"));
    a.stop().await.unwrap();

    // The next start: the snapshot and the journal (adds and deletes), not the store.
    let b = Server::start(cfg.clone()).await;
    for id in [base_id.as_str(), "cv-j1"] {
        assert!(live_title(&b, id).await.is_none(), "{id} is back after a restart");
        assert_eq!(b.get(&format!("/v1/movies/{id}")).await.status(), StatusCode::NOT_FOUND);
    }
    let info: Value = b.get("/v1/info").await.json().await.unwrap();
    assert_eq!(info["counts"]["movies"], SLICE - 1, "{info}");
    let r = b.post_auth("/v1/movies", &movie(&base_id, "The First Movie Again"), KEY).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    b.stop().await.unwrap();
    // And a start from the store alone (the snapshot gone) agrees.
    let _ = std::fs::remove_file(&snapshot);
    let c = Server::start(cfg).await;
    assert_eq!(live_title(&c, &base_id).await.as_deref(), Some("The First Movie Again"));
    assert!(live_title(&c, "cv-j1").await.is_none());
    c.stop().await.unwrap();
}

/// `cinevec serve` as its own process on port 0; its address, read from its log.
fn spawn_replica(dir: &std::path::Path, url: &str) -> (std::process::Child, String) {
    use std::io::BufRead;
    let model = common::minilm_dir();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cinevec"))
        .args(["serve", "--bind", "127.0.0.1:0", "--cpu", "--dtype", "f32", "--db", url, "--api-key", KEY])
        .arg("--artifacts")
        .arg(dir)
        .arg("--model")
        .arg(&model)
        .arg("--models-dir")
        .arg(model.parent().unwrap())
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("the replica ended before listening").unwrap();
        if let Some(at) = line.find("listening on ") {
            break line[at + "listening on ".len()..].trim().to_string();
        }
    };
    // Keep reading its log, so that it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the downloaded model, ../shared and PostgreSQL: run scripts/test.sh"]
async fn a_replica_killed_during_a_stream_of_adds_loses_no_acknowledged_one() {
    let Some(pg) = pg_cluster::Cluster::start().unwrap() else { return };
    let url = pg.create_db("kill9").unwrap();
    let dir = fixture_copy();
    let slice = dir.path().join("slice.jsonl");
    serving::cinevec(&["ingest", "--catalog", slice.to_str().unwrap(), "--db", &url]);
    let (mut child, base) = spawn_replica(dir.path(), &url);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let started = Instant::now();
    while client.get(format!("{base}/readyz")).send().await.map(|r| r.status() != StatusCode::OK).unwrap_or(true) {
        assert!(started.elapsed() < Duration::from_secs(60), "the replica did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Adds, eight at a time, until the replica dies under them (killed after the 40th acknowledgement).
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, base, acknowledged) = (client.clone(), base.clone(), acknowledged.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let id = format!("cv-k{w}-{i}");
                let sent = client
                    .post(format!("{base}/v1/movies"))
                    .bearer_auth(KEY)
                    .json(&movie(&id, &format!("Stream {w} {i}")))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == StatusCode::CREATED => acknowledged.lock().unwrap().push(id),
                    _ => return,
                }
            }
        }));
    }
    while acknowledged.lock().unwrap().len() < 40 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();

    // A fresh replica serves every acknowledged add.
    let mut cfg = config(dir.path());
    cfg.service.db = url;
    let s = Server::start(cfg).await;
    for id in &acknowledged {
        assert!(live_title(&s, id).await.is_some(), "{id} was acknowledged, then lost");
    }
    eprintln!("{} adds acknowledged before the kill, all served after it", acknowledged.len());
    s.stop().await.unwrap();
}

/// How many pause / resume cycles the PostgreSQL pause case runs (`CINEVEC_FAULT_CYCLES`, default 3;
/// the long version of the fault campaign sets more, BENCHMARKS.md "Reliability").
fn cycles() -> usize {
    std::env::var("CINEVEC_FAULT_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

/// The longest a write may take to be refused while PostgreSQL hangs: the write lock (held at most by
/// one change-feed read, bounded by the store's `CALL_TIMEOUT`), the generation read and the write
/// transaction (each bounded by it too): 3 × 2 s, and some slack for a loaded host.
const REFUSED_WITHIN: Duration = Duration::from_secs(8);

/// The p-th percentile (0-100) of `samples`.
fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort();
    samples[(samples.len() * p / 100).min(samples.len() - 1)]
}

/// Add `id` through `s`, retrying a 503 (the store coming back) for up to `limit`: the answer's status.
async fn add_retrying(s: &Server, id: &str, title: &str, limit: Duration) -> StatusCode {
    let started = Instant::now();
    loop {
        let status = s.post_auth("/v1/movies", &movie(id, title), KEY).await.status();
        if status != StatusCode::SERVICE_UNAVAILABLE || started.elapsed() > limit {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `POST /v1/movies` of `id` on `s`: the status, whether it had `Retry-After`, the body, how long it took.
async fn timed_write(s: &Server, id: String) -> (StatusCode, bool, Value, Duration) {
    let t = Instant::now();
    let r = s.post_auth("/v1/movies", &movie(&id, "While It Hangs"), KEY).await;
    let (status, retry) = (r.status(), r.headers().get("retry-after").is_some());
    let body: Value = r.json().await.unwrap();
    (status, retry, body, t.elapsed())
}

/// Two replicas on a PostgreSQL whose processes are all paused (SIGSTOP: a store that hangs, not one
/// that is down): reads of run-time adds (the movie, more like it) keep answering from memory with a
/// p99 under 50 ms, each write is refused with 503 and `Retry-After` within the store's bounds (never
/// 500, never a hang), and after SIGCONT writes succeed again and both replicas serve every add that
/// was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the downloaded model, ../shared and PostgreSQL: run scripts/test.sh"]
async fn replicas_keep_reading_and_refuse_writes_with_503_while_postgres_is_paused() {
    let Some(pg) = pg_cluster::Cluster::start().unwrap() else { return };
    let (_dir, _, cfg) = on_postgres(&pg, "paused");
    let a = Server::start(cfg.clone()).await;
    let b = Server::start(cfg.clone()).await;
    let mut acknowledged = Vec::new();
    for n in 0..4 {
        let (id, title) = (format!("cv-p{n}"), format!("Paused Store {n}"));
        let on = if n % 2 == 0 { &a } else { &b };
        assert_eq!(on.post_auth("/v1/movies", &movie(&id, &title), KEY).await.status(), StatusCode::CREATED);
        acknowledged.push((id, title));
    }
    for (id, title) in &acknowledged {
        for s in [&a, &b] {
            until_served(s, id, title, VISIBLE_WITHIN).await;
        }
    }
    let (mut reads, mut answers) = (Vec::new(), std::collections::BTreeMap::<u16, usize>::new());
    let (mut slowest_refusal, mut slowest_recovery) = (Duration::ZERO, Duration::ZERO);
    for cycle in 0..cycles() {
        let paused = pg.pause().unwrap();
        // Writes on both replicas while reads run beside them (until both writes are answered).
        let done = std::sync::atomic::AtomicBool::new(false);
        let writes = async {
            let answered = tokio::join!(
                timed_write(&a, format!("cv-hung-a{cycle}")),
                timed_write(&b, format!("cv-hung-b{cycle}"))
            );
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            answered
        };
        let read_loop = async {
            let mut seen = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                for (id, _) in &acknowledged {
                    for s in [&a, &b] {
                        for path in [format!("/v1/movies/{id}"), format!("/v1/movies/{id}/similar?k=5")] {
                            let t = Instant::now();
                            let status = s.get(&path).await.status();
                            seen.push((status, t.elapsed(), format!("{} {path}", s.base)));
                        }
                    }
                }
            }
            seen
        };
        let ((wa, wb), seen) = tokio::join!(writes, read_loop);
        for (status, took, what) in seen {
            assert_eq!(status, StatusCode::OK, "cycle {cycle}: {what} while PostgreSQL is paused");
            reads.push(took);
        }
        for (status, retry, body, took) in [wa, wb] {
            *answers.entry(status.as_u16()).or_default() += 1;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "cycle {cycle}: a write while paused: {body}");
            assert!(retry, "cycle {cycle}: a 503 without Retry-After");
            assert_eq!(body["error"]["code"], "unavailable", "{body}");
            assert!(took < REFUSED_WITHIN, "cycle {cycle}: a write was refused only after {took:?}");
            slowest_refusal = slowest_refusal.max(took);
        }
        assert_eq!(pg.resume().unwrap(), paused);
        // Back: writes on both succeed (after the hung connections are tested again), and both serve them.
        let t = Instant::now();
        for (s, side) in [(&a, "a"), (&b, "b")] {
            let (id, title) = (format!("cv-p-after-{cycle}-{side}"), format!("After The Pause {cycle} {side}"));
            let status = add_retrying(s, &id, &title, Duration::from_secs(15)).await;
            *answers.entry(status.as_u16()).or_default() += 1;
            assert_eq!(status, StatusCode::CREATED, "cycle {cycle}: a write on {side} after SIGCONT");
            acknowledged.push((id, title));
        }
        // Both replicas serve both (through the change feed) before the next pause.
        for (id, title) in &acknowledged[acknowledged.len() - 2..] {
            for s in [&a, &b] {
                until_served(s, id, title, Duration::from_secs(10)).await;
            }
        }
        slowest_recovery = slowest_recovery.max(t.elapsed());
    }
    let mut lost = Vec::new();
    for (id, title) in &acknowledged {
        for s in [&a, &b] {
            let started = Instant::now();
            while live_title(s, id).await.as_deref() != Some(title.as_str()) {
                if started.elapsed() > Duration::from_secs(5) {
                    lost.push(format!("{} {id}", s.base));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if s.get(&format!("/v1/movies/{id}")).await.status() != StatusCode::OK {
                lost.push(format!("{} GET {id}", s.base));
            }
        }
    }
    let n = reads.len();
    let (p50, p99) = (percentile(&mut reads, 50), percentile(&mut reads, 99));
    eprintln!(
        "postgres paused (SIGSTOP/SIGCONT), two replicas: {} cycles, {} acknowledged, {} lost; writes answered \
         {answers:?}, slowest refusal {slowest_refusal:?}, slowest recovery {slowest_recovery:?}; {n} reads \
         during the pauses all 200, p50 {p50:?} p99 {p99:?}",
        cycles(),
        acknowledged.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged but not served: {lost:?}");
    assert!(p99 <= Duration::from_millis(50), "reads during the pause: p99 {p99:?}");
    for s in [a, b] {
        s.stop().await.unwrap();
    }
}

/// How many times in a row the restart case starts the second replica (`CINEVEC_FAULT_RESTARTS`,
/// default 10).
fn restarts() -> usize {
    std::env::var("CINEVEC_FAULT_RESTARTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10)
}

/// A rolling restart under writes: one replica adds movies without pause while the other is stopped
/// and started again, ten times in a row. Each start must succeed (a movie committed while the start
/// reads the store is not damage) and serve every add acknowledged before it began, and, within a
/// second of being ready, every one acknowledged since.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the downloaded model, ../shared and PostgreSQL: run scripts/test.sh"]
async fn a_replica_restarted_ten_times_while_the_other_adds_starts_every_time_and_serves_every_add() {
    let Some(pg) = pg_cluster::Cluster::start().unwrap() else { return };
    let (_dir, _, cfg) = on_postgres(&pg, "rolling");
    let a = Server::start(cfg.clone()).await;

    // The writer: adds on A, one after another, until told to stop.
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answers = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<u16, usize>::new()));
    let writer = {
        let (client, base) = (a.client.clone(), a.base.clone());
        let (acknowledged, stop, answers) = (acknowledged.clone(), stop.clone(), answers.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = format!("rejoin-{n}");
                let body = movie(&id, &format!("Rolling Restart {n}"));
                let r = client.post(format!("{base}/v1/movies")).bearer_auth(KEY).json(&body).send().await.unwrap();
                *answers.lock().unwrap().entry(r.status().as_u16()).or_default() += 1;
                if r.status() == StatusCode::CREATED {
                    acknowledged.lock().unwrap().push(id);
                }
                n += 1;
            }
        })
    };
    let mut lost = Vec::new();
    let mut slowest_start = Duration::ZERO;
    for restart in 0..restarts() {
        let before: Vec<String> = acknowledged.lock().unwrap().clone();
        let t = Instant::now();
        // Server::start fails the test with the start's error if it refuses to start.
        let b = Server::start(cfg.clone()).await;
        slowest_start = slowest_start.max(t.elapsed());
        for id in &before {
            if live_title(&b, id).await.is_none() {
                lost.push(format!("start {restart}: {id} (acknowledged before the start)"));
            }
        }
        tokio::time::sleep(VISIBLE_WITHIN).await;
        let since: Vec<String> = acknowledged.lock().unwrap().clone();
        for id in since.iter().skip(before.len()) {
            let started = Instant::now();
            while live_title(&b, id).await.is_none() {
                if started.elapsed() > VISIBLE_WITHIN {
                    lost.push(format!("start {restart}: {id} (acknowledged during or after the start)"));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        b.stop().await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();
    let answers = answers.lock().unwrap().clone();
    eprintln!(
        "replica restarted {} times while the other added: {} starts, {} acknowledged, {} lost; adds answered \
         {answers:?}; slowest start {slowest_start:?}",
        restarts(),
        restarts(),
        acknowledged.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged but not served: {lost:?}");
    assert!(acknowledged.len() > restarts(), "the writer hardly wrote: {answers:?}");
    assert_eq!(answers.keys().copied().collect::<Vec<_>>(), vec![201], "adds answered otherwise: {answers:?}");
    a.stop().await.unwrap();
}
