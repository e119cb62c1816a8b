//! The model's own thread, fed by a bounded queue that batches concurrent requests.
//!
//! Request handlers never run candle: they hand their texts to [`EmbedQueue::embed`] and await the
//! answer. The worker takes the first waiting job, then keeps taking jobs while the batch stays within
//! the document and padded-token limits, runs one forward pass for all of them, and answers each job
//! through its own oneshot channel. A full queue is refused at once ([`QueueError::Full`]) so the
//! server can answer 429 instead of hanging; a job whose caller gave up (deadline, disconnect) is
//! skipped before it costs a forward pass.

use super::plan::{embed_sorted, BatchLimits};
use super::{Embeddings, Encoded, TextEmbedder};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Limits of the embedding queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Jobs that may wait; one more is refused.
    pub capacity: usize,
    /// Most documents in one forward pass.
    pub max_batch: usize,
    /// Most padded tokens (documents × longest) in one forward pass.
    pub max_batch_tokens: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits { capacity: 256, max_batch: 32, max_batch_tokens: 16_384 }
    }
}

/// Why a job got no embeddings.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the embedding queue is full")]
    Full,
    #[error("the embedding worker has stopped")]
    Closed,
    #[error("embedding failed: {0}")]
    Model(String),
}

/// Counters the server exports as metrics.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Jobs waiting right now.
    pub depth: AtomicUsize,
    pub batches: AtomicU64,
    pub documents: AtomicU64,
    /// Jobs dropped because their caller had gone before the worker reached them.
    pub abandoned: AtomicU64,
    /// Total time spent in forward passes, microseconds.
    pub busy_micros: AtomicU64,
    /// Size (documents) of the most recent batch.
    pub last_batch: AtomicUsize,
}

struct Job {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Embeddings, QueueError>>,
}

/// A job after tokenisation, waiting for a place in a batch.
struct Ready {
    encoded: Vec<Encoded>,
    reply: oneshot::Sender<Result<Embeddings, QueueError>>,
}

/// Handle to the model thread. Cheap to clone.
#[derive(Clone)]
pub struct EmbedQueue {
    tx: SyncSender<Job>,
    stats: Arc<QueueStats>,
    dim: usize,
    max_tokens: usize,
}

/// What the server needs to know about a batch, for its histogram.
pub type BatchObserver = Box<dyn Fn(usize, Duration) + Send>;

impl EmbedQueue {
    /// Move the embedder onto its own thread and return the handle that feeds it.
    pub fn start(embedder: impl TextEmbedder, limits: QueueLimits, observer: Option<BatchObserver>) -> std::io::Result<Self> {
        let embedder: Box<dyn TextEmbedder> = Box::new(embedder);
        let (tx, rx) = mpsc::sync_channel(limits.capacity.max(1));
        let stats = Arc::new(QueueStats::default());
        let dim = embedder.dim();
        let max_tokens = embedder.info().max_tokens;
        let worker_stats = stats.clone();
        std::thread::Builder::new()
            .name("cinevec-model".into())
            .spawn(move || run(embedder, rx, limits, worker_stats, observer))?;
        Ok(EmbedQueue { tx, stats, dim, max_tokens })
    }

    /// Embed texts; waits for the model thread without blocking the async runtime.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Embeddings, QueueError> {
        let (reply, answer) = oneshot::channel();
        self.stats.depth.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Job { texts, reply }) {
            Ok(()) => {}
            Err(e) => {
                self.stats.depth.fetch_sub(1, Ordering::Relaxed);
                return Err(match e {
                    TrySendError::Full(_) => QueueError::Full,
                    TrySendError::Disconnected(_) => QueueError::Closed,
                });
            }
        }
        answer.await.map_err(|_| QueueError::Closed)?
    }

    pub fn stats(&self) -> &QueueStats {
        &self.stats
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }
}

fn padded_tokens(docs: usize, longest: usize) -> usize {
    docs * longest
}

fn run(
    embedder: Box<dyn TextEmbedder>,
    rx: Receiver<Job>,
    limits: QueueLimits,
    stats: Arc<QueueStats>,
    observer: Option<BatchObserver>,
) {
    // A job that did not fit the previous batch opens the next one.
    let mut carried: Option<Ready> = None;
    loop {
        let first = match carried.take() {
            Some(ready) => ready,
            None => match rx.recv() {
                Ok(job) => match prepare(&*embedder, job, &stats) {
                    Some(ready) => ready,
                    None => continue,
                },
                Err(_) => return, // every handle dropped: the server is shutting down
            },
        };
        let mut batch = vec![first];
        let mut docs = batch[0].encoded.len();
        let mut longest = batch[0].encoded.iter().map(|e| e.ids.len()).max().unwrap_or(0);
        while docs < limits.max_batch {
            let Ok(job) = rx.try_recv() else { break };
            let Some(ready) = prepare(&*embedder, job, &stats) else { continue };
            let job_longest = ready.encoded.iter().map(|e| e.ids.len()).max().unwrap_or(0);
            let new_docs = docs + ready.encoded.len();
            let new_longest = longest.max(job_longest);
            if new_docs > limits.max_batch || padded_tokens(new_docs, new_longest) > limits.max_batch_tokens {
                carried = Some(ready);
                break;
            }
            docs = new_docs;
            longest = new_longest;
            batch.push(ready);
        }
        run_batch(&*embedder, batch, limits, &stats, observer.as_ref());
    }
}

/// Tokenise a job, or answer it at once if its caller is gone or tokenisation fails.
fn prepare(embedder: &dyn TextEmbedder, job: Job, stats: &QueueStats) -> Option<Ready> {
    stats.depth.fetch_sub(1, Ordering::Relaxed);
    if job.reply.is_closed() {
        stats.abandoned.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    let refs: Vec<&str> = job.texts.iter().map(String::as_str).collect();
    match embedder.encode(&refs) {
        Ok(encoded) => Some(Ready { encoded, reply: job.reply }),
        Err(e) => {
            let _ = job.reply.send(Err(QueueError::Model(e.to_string())));
            None
        }
    }
}

fn run_batch(
    embedder: &dyn TextEmbedder,
    batch: Vec<Ready>,
    limits: QueueLimits,
    stats: &QueueStats,
    observer: Option<&BatchObserver>,
) {
    let started = Instant::now();
    let all: Vec<Encoded> = batch.iter().flat_map(|r| r.encoded.iter().cloned()).collect();
    let pass_limits = BatchLimits { max_batch: limits.max_batch, max_tokens: limits.max_batch_tokens };
    // One job larger than the limits is split into several passes, length-sorted.
    let result = embed_sorted(embedder, &all, pass_limits, |_, _| Ok(()));
    let elapsed = started.elapsed();
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats.documents.fetch_add(all.len() as u64, Ordering::Relaxed);
    stats.last_batch.store(all.len(), Ordering::Relaxed);
    stats.busy_micros.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    if let Some(observe) = observer {
        observe(all.len(), elapsed);
    }
    let dim = embedder.dim();
    match result {
        Ok(vectors) => {
            let mut offset = 0;
            for ready in batch {
                let n = ready.encoded.len();
                let rows = vectors[offset * dim..(offset + n) * dim].to_vec();
                offset += n;
                let _ = ready.reply.send(Ok(Embeddings { dim, vectors: rows, encoded: ready.encoded }));
            }
        }
        Err(e) => {
            tracing::error!("forward pass failed: {e:#}");
            for ready in batch {
                let _ = ready.reply.send(Err(QueueError::Model(e.to_string())));
            }
        }
    }
}
