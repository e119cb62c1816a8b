//! The model thread and its bounded, batching queue, with the real default model.

mod common;

use cinevec::engine::worker::{EmbedQueue, QueueError, QueueLimits};
use cinevec::engine::{Embedder, EngineOptions};
use std::sync::atomic::Ordering;

fn texts(n: usize) -> Vec<String> {
    let catalog = std::fs::read_to_string(common::shared().join("data/imdb5000/catalog.jsonl")).unwrap();
    catalog
        .lines()
        .take(n)
        .map(|l| cinevec::catalog::jsonl::CatalogRecord::parse_line(l).unwrap().movie.render())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the downloaded model and ../shared: run scripts/test.sh"]
async fn concurrent_requests_are_batched_and_equal_their_one_by_one_results() {
    let dir = common::minilm_dir();
    let reference = Embedder::load(&dir, &EngineOptions::default()).unwrap();
    let limits = QueueLimits { capacity: 64, max_batch: 8, max_batch_tokens: 8 * 512, ..Default::default() };
    let queue = EmbedQueue::start(Embedder::load(&dir, &EngineOptions::default()).unwrap(), limits, None).unwrap();
    let docs = texts(24);
    // Some requests carry two documents: a job's rows must come back to it, in order.
    let jobs: Vec<Vec<String>> =
        docs.chunks(3).flat_map(|c| [vec![c[0].clone()], vec![c[1].clone(), c[2].clone()]]).collect();
    let answers = futures_join(jobs.iter().cloned().map(|j| {
        let q = queue.clone();
        async move { q.embed(j).await }
    }))
    .await;
    for (job, answer) in jobs.iter().zip(answers) {
        let got = answer.unwrap();
        assert_eq!(got.len(), job.len());
        for (i, text) in job.iter().enumerate() {
            let want = reference.embed(&[text]).unwrap();
            let cos = common::cosine(got.row(i), want.row(0));
            assert!(cos >= 0.9999, "cosine {cos}");
            assert_eq!(got.encoded[i].ids, want.encoded[0].ids);
        }
    }
    let stats = queue.stats();
    assert_eq!(stats.documents.load(Ordering::Relaxed), 24);
    let batches = stats.batches.load(Ordering::Relaxed);
    assert!(batches < jobs.len() as u64, "{batches} forward passes for {} concurrent jobs: not batched", jobs.len());
    assert!(batches >= 3, "{batches} passes: a pass may hold at most 8 documents");
    assert_eq!(stats.depth.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the downloaded model and ../shared: run scripts/test.sh"]
async fn a_full_queue_refuses_at_once_instead_of_waiting() {
    let dir = common::minilm_dir();
    let limits = QueueLimits { capacity: 1, max_batch: 1, max_batch_tokens: 512, ..Default::default() };
    let queue = EmbedQueue::start(Embedder::load(&dir, &EngineOptions::default()).unwrap(), limits, None).unwrap();
    let docs = texts(40);
    let answers = futures_join(docs.iter().cloned().map(|d| {
        let q = queue.clone();
        async move { q.embed(vec![d]).await }
    }))
    .await;
    let full = answers.iter().filter(|a| matches!(a, Err(QueueError::Full { .. }))).count();
    let ok = answers.iter().filter(|a| a.is_ok()).count();
    assert!(full > 0, "40 simultaneous jobs into a queue of 1 must see refusals");
    assert!(ok >= 1);
    assert_eq!(full + ok, 40, "only Full refusals are expected");
}

/// Run futures concurrently on the current task and collect their outputs in order.
async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = handles.iter().map(|_| None).collect();
    let mut pending: Vec<_> = handles.into_iter().enumerate().collect();
    std::future::poll_fn(|cx| {
        pending.retain_mut(|(i, f)| match f.as_mut().poll(cx) {
            std::task::Poll::Ready(out) => {
                outputs[*i] = Some(out);
                false
            }
            std::task::Poll::Pending => true,
        });
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}
