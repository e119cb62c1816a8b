//! Crash safety of writes: `kill -9` the real server binary during a stream of concurrent adds, again
//! and again; after the last restart every add that was acknowledged (200/201) is there, with its
//! embedding (its more-like-this answers, which needs its vector).
//!
//! CI runs 10 cycles; a longer run: `CINEVEC_CRASH_CYCLES=100 cargo test --release --test crash_adds
//! -- --include-ignored` (BENCHMARKS.md).

mod common;
mod serving;

use reqwest::StatusCode;
use serde_json::json;
use serving::{fixture_copy, free_port, spawn, wait_ready, KEY};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the downloaded model and ../shared: run scripts/test.sh"]
async fn acknowledged_adds_survive_kill_9() {
    let cycles: usize = std::env::var("CINEVEC_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let dir = fixture_copy();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let mut acknowledged: Vec<String> = Vec::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for cycle in 0..cycles {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut child = spawn(dir.path(), port);
        wait_ready(&client, &base, &mut child).await;
        // Four writers add movies until the kill; each remembers what was acknowledged.
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (client, base) = (client.clone(), base.clone());
                tokio::spawn(async move {
                    let mut acked = Vec::new();
                    for n in 0.. {
                        let id = format!("crash-{cycle}-{w}-{n}");
                        let body = json!({"id": id, "rating": 7.0, "votes": 10, "movie": {
                            "title": format!("Crash test {cycle} {w} {n}"), "genres": ["Drama"], "release_year": 2000 + n % 20}});
                        match client.post(format!("{base}/v1/movies")).bearer_auth(KEY).json(&body).send().await {
                            Ok(r) if r.status().is_success() => acked.push(id),
                            Ok(r) => panic!("add answered {}", r.status()),
                            Err(_) => break, // the server is gone
                        }
                    }
                    acked
                })
            })
            .collect();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        tokio::time::sleep(Duration::from_millis(300 + rng % 1200)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for w in writers {
            acknowledged.extend(w.await.unwrap());
        }
    }
    assert!(acknowledged.len() >= cycles, "only {} adds acknowledged in {cycles} cycles", acknowledged.len());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = spawn(dir.path(), port);
    wait_ready(&client, &base, &mut child).await;
    let mut missing = Vec::new();
    for id in &acknowledged {
        let movie = client.get(format!("{base}/v1/movies/{id}")).send().await.unwrap();
        let similar = client.get(format!("{base}/v1/movies/{id}/similar?k=3")).send().await.unwrap();
        if movie.status() != StatusCode::OK || similar.status() != StatusCode::OK {
            missing.push(id.clone());
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    eprintln!(
        "{cycles} kill -9 cycles: {} acknowledged adds, {} missing after restart",
        acknowledged.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "acknowledged but missing after restart: {missing:?}");
}
