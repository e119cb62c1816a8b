//! A server that took writes at run time restarts from its catalog snapshot and journal, not the
//! store, also after `kill -9` in the middle of a write, and holds every acknowledged write.

mod common;
mod serving;

use reqwest::StatusCode;
use serde_json::{json, Value};
use serving::{fixture_copy, KEY};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The real binary, so that it can be killed with SIGKILL.
struct Process {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Process {
    async fn start(dir: &Path) -> Process {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let model = common::minilm_dir();
        let child = Command::new(env!("CARGO_BIN_EXE_cinevec"))
            .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--cpu"])
            .arg("--artifacts")
            .arg(dir)
            .arg("--db")
            .arg(dir.join("catalog.db"))
            .arg("--model")
            .arg(&model)
            .env("CINEVEC_API_KEY", KEY)
            .env("CINEVEC_MODELS_DIR", model.parent().unwrap())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("server-{port}.log"))).unwrap())
            .spawn()
            .unwrap();
        let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let mut p = Process { child, base: format!("http://127.0.0.1:{port}"), client };
        for _ in 0..600 {
            if let Ok(r) = p.client.get(format!("{}/readyz", p.base)).send().await {
                if r.status() == StatusCode::OK {
                    return p;
                }
            }
            assert!(p.child.try_wait().unwrap().is_none(), "the server exited while loading");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the server did not become ready in 60 s");
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.base)).send().await.unwrap()
    }

    async fn loaded_from(&self) -> String {
        let info: Value = self.get("/v1/info").await.json().await.unwrap();
        info["catalog_loaded_from"].as_str().unwrap().to_string()
    }

    fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

fn movie(i: usize) -> Value {
    json!({"id": format!("journal-{i}"), "rating": 6.5, "votes": 100 + i,
           "movie": {"title": format!("Journal Test Movie {i}"), "genres": ["Drama"], "release_year": 1990 + i as i64}})
}

async fn wait_for(path: &Path) {
    for _ in 0..300 {
        if path.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} was not written", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the downloaded model and ../shared: run scripts/test.sh"]
async fn a_restart_after_writes_and_kill_9_reads_the_snapshot_and_journal_with_every_acknowledged_write() {
    let dir = fixture_copy();
    let (snapshot, journal) = (dir.path().join("catalog.snapshot"), dir.path().join("catalog.journal"));
    let _ = std::fs::remove_file(&snapshot);
    let s = Process::start(dir.path()).await;
    assert_eq!(s.loaded_from().await, "store");
    wait_for(&journal).await; // written right after the snapshot
    let client = s.client.clone();
    let post = |i: usize| {
        let (client, url) = (client.clone(), format!("{}/v1/movies", s.base));
        async move { client.post(url).bearer_auth(KEY).json(&movie(i)).send().await }
    };
    // Acknowledged writes, then one in flight when the server is killed.
    let mut acknowledged = Vec::new();
    for i in 0..4 {
        assert_eq!(post(i).await.unwrap().status(), StatusCode::CREATED);
        acknowledged.push(i);
    }
    let in_flight = tokio::spawn(post(4));
    tokio::time::sleep(Duration::from_millis(5)).await;
    s.kill9();
    let in_flight_acknowledged = matches!(in_flight.await.unwrap(), Ok(r) if r.status() == StatusCode::CREATED);
    if in_flight_acknowledged {
        acknowledged.push(4);
    }

    let s = Process::start(dir.path()).await;
    for &i in &acknowledged {
        let r = s.get(&format!("/v1/movies/journal-{i}")).await;
        assert_eq!(r.status(), StatusCode::OK, "acknowledged write {i} lost");
    }
    let unacknowledged_present = s.get("/v1/movies/journal-4").await.status() == StatusCode::OK;
    // The store is read only when the killed write reached the store but not the journal.
    if !unacknowledged_present || in_flight_acknowledged {
        assert_eq!(s.loaded_from().await, "snapshot", "the start after writes read the store");
    }
    let found: Value = s.get("/v1/search?q=journal%20test%20movie%202").await.json().await.unwrap();
    assert_eq!(found["results"][0]["id"], "journal-2");
    let similar: Value = s.get("/v1/movies/journal-1/similar?k=5&genres=drama").await.json().await.unwrap();
    assert_eq!(similar["results"].as_array().unwrap().len(), 5);

    // More writes on top of the replayed journal (it was folded into a new snapshot meanwhile, or is
    // appended to), a torn tail, then kill -9 again: still from the snapshot, with every write.
    for i in 5..7 {
        let r = s.client.post(format!("{}/v1/movies", s.base)).bearer_auth(KEY).json(&movie(i)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        acknowledged.push(i);
    }
    s.kill9();
    let mut f = std::fs::OpenOptions::new().append(true).open(&journal).unwrap();
    std::io::Write::write_all(&mut f, &[0x55, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(f);
    let s = Process::start(dir.path()).await;
    assert_eq!(s.loaded_from().await, "snapshot", "a torn tail is ignored");
    for &i in &acknowledged {
        assert_eq!(s.get(&format!("/v1/movies/journal-{i}")).await.status(), StatusCode::OK, "write {i} lost");
    }
    s.kill9();

    // A journal cut inside its last record misses a write the store has: the store is read, with it.
    let bytes = std::fs::read(&journal).unwrap();
    if bytes.len() > 200 {
        std::fs::write(&journal, &bytes[..bytes.len() - 10]).unwrap();
        let s = Process::start(dir.path()).await;
        let from = s.loaded_from().await;
        for &i in &acknowledged {
            assert_eq!(
                s.get(&format!("/v1/movies/journal-{i}")).await.status(),
                StatusCode::OK,
                "write {i} lost ({from})"
            );
        }
        s.kill9();
    }
}
