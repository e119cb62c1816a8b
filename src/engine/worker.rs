//! The model's own thread, fed by a bounded queue that batches concurrent requests.
//!
//! Request handlers never run candle: they hand their texts to [`EmbedQueue::embed`] and await the
//! answer. The worker takes the first waiting job, then keeps taking jobs while the batch stays within
//! the document and padded-token limits, runs one forward pass for all of them, and answers each job
//! through its own oneshot channel.
//!
//! **Admission by cost.** The queue is bounded by the documents waiting (not the requests), and every
//! job is costed on arrival in estimated tokens (its texts' bytes / 4, each capped at the model's
//! maximum). The worker measures the time a forward pass takes per estimated token (a moving average),
//! so the wait of a new job is known before it is queued: the tokens ahead of it (waiting, and in the
//! pass running now) plus its own, times that cost. A job that would overflow the document bound, or
//! whose estimated wait is over its deadline ([`QueueLimits::max_wait`]), is refused at once
//! ([`QueueError::Full`], with the time the queue needs to drain as the retry hint) instead of being
//! answered late. A job whose caller gave up (deadline, disconnect) or whose deadline has passed is
//! never embedded: it is checked when the worker takes it and again just before its forward pass.

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
    /// Documents that may wait (summed over the waiting jobs); a job that would go over is refused.
    pub capacity: usize,
    /// Most documents in one forward pass.
    pub max_batch: usize,
    /// Most padded tokens (documents × longest) in one forward pass.
    pub max_batch_tokens: usize,
    /// A job's deadline, from its arrival: one whose estimated wait is longer is refused, and one still
    /// waiting when it passes is dropped unembedded.
    pub max_wait: Duration,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits { capacity: 256, max_batch: 32, max_batch_tokens: 16_384, max_wait: Duration::from_secs(10) }
    }
}

/// Share of the deadline an estimated wait may take: the estimate is a moving average, and the
/// answer still has to be written after the forward pass.
const WAIT_BUDGET: f64 = 0.8;

/// Why a job got no embeddings.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Over the document bound, or the estimated wait is over the deadline; `retry_after` is the
    /// estimated time for the work queued now to drain.
    #[error("the embedding queue is full")]
    Full { retry_after: Duration },
    /// The job's deadline passed while it waited; it was not embedded.
    #[error("the request's deadline passed while it waited for the model")]
    Expired,
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
    /// Jobs dropped because their deadline passed before their forward pass.
    pub expired: AtomicU64,
    /// Jobs refused on arrival (document bound or estimated wait).
    pub refused: AtomicU64,
    /// Documents waiting right now, and their estimated tokens.
    pub queued_documents: AtomicUsize,
    pub queued_tokens: AtomicUsize,
    /// Estimated tokens of the forward pass running now (0 when idle).
    pub running_tokens: AtomicUsize,
    /// Moving average of a forward pass's time per estimated token, nanoseconds (0 until measured).
    pub nanos_per_token: AtomicU64,
    /// Total time spent in forward passes, microseconds.
    pub busy_micros: AtomicU64,
    /// Size (documents) of the most recent batch.
    pub last_batch: AtomicUsize,
}

struct Job {
    texts: Vec<String>,
    /// Estimated tokens (see [`estimate_tokens`]).
    tokens: usize,
    deadline: Instant,
    reply: oneshot::Sender<Result<Embeddings, QueueError>>,
}

/// A job after tokenisation, waiting for a place in a batch.
struct Ready {
    encoded: Vec<Encoded>,
    tokens: usize,
    deadline: Instant,
    reply: oneshot::Sender<Result<Embeddings, QueueError>>,
}

impl Ready {
    /// The caller is gone or the deadline has passed: answer (if anyone listens) and count it.
    fn dead(&self, stats: &QueueStats) -> bool {
        if self.reply.is_closed() {
            stats.abandoned.fetch_add(1, Ordering::Relaxed);
            true
        } else if Instant::now() >= self.deadline {
            stats.expired.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}

/// Tokens a text is expected to cost before it is tokenised: about four bytes a token, plus the
/// special tokens, at most the model's maximum.
pub fn estimate_tokens(text: &str, max_tokens: usize) -> usize {
    (text.len() / 4 + 2).min(max_tokens.max(1))
}

/// The admission rule: `Ok` when a job of `new_tokens` fits behind `ahead_tokens` within `max_wait`
/// at `nanos_per_token`, else the time the work ahead needs to drain (the retry hint, at least 1 s).
pub fn admit(ahead_tokens: usize, new_tokens: usize, nanos_per_token: u64, max_wait: Duration) -> Result<(), Duration> {
    let wait = Duration::from_nanos(nanos_per_token.saturating_mul((ahead_tokens + new_tokens) as u64));
    if wait.as_secs_f64() <= max_wait.as_secs_f64() * WAIT_BUDGET {
        return Ok(());
    }
    Err(drain_time(ahead_tokens, nanos_per_token))
}

/// Time for `tokens` to go through the model, rounded up to whole seconds (at least 1 s).
fn drain_time(tokens: usize, nanos_per_token: u64) -> Duration {
    let nanos = nanos_per_token.saturating_mul(tokens as u64);
    Duration::from_secs(nanos.div_ceil(1_000_000_000).max(1))
}

/// Handle to the model thread. Cheap to clone.
#[derive(Clone)]
pub struct EmbedQueue {
    tx: SyncSender<Job>,
    limits: QueueLimits,
    stats: Arc<QueueStats>,
    dim: usize,
    max_tokens: usize,
}

/// What the server needs to know about a batch, for its histogram.
pub type BatchObserver = Box<dyn Fn(usize, Duration) + Send>;

impl EmbedQueue {
    /// Move the embedder onto its own thread and return the handle that feeds it.
    pub fn start(
        embedder: impl TextEmbedder,
        limits: QueueLimits,
        observer: Option<BatchObserver>,
    ) -> std::io::Result<Self> {
        let embedder: Box<dyn TextEmbedder> = Box::new(embedder);
        let (tx, rx) = mpsc::sync_channel(limits.capacity.max(1));
        let stats = Arc::new(QueueStats::default());
        let dim = embedder.dim();
        let max_tokens = embedder.info().max_tokens;
        let worker_stats = stats.clone();
        std::thread::Builder::new()
            .name("cinevec-model".into())
            .spawn(move || run(embedder, rx, limits, worker_stats, observer))?;
        Ok(EmbedQueue { tx, limits, stats, dim, max_tokens })
    }

    /// Embed texts; waits for the model thread without blocking the async runtime. Refused at once
    /// when the queue cannot take the documents or cannot embed them before the deadline.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Embeddings, QueueError> {
        let stats = &self.stats;
        let docs = texts.len();
        let tokens: usize = texts.iter().map(|t| estimate_tokens(t, self.max_tokens)).sum();
        let queued_docs = stats.queued_documents.fetch_add(docs, Ordering::Relaxed);
        let ahead = stats.queued_tokens.fetch_add(tokens, Ordering::Relaxed);
        let ahead = ahead + stats.running_tokens.load(Ordering::Relaxed);
        let cost = stats.nanos_per_token.load(Ordering::Relaxed);
        let refusal = if queued_docs > 0 && queued_docs + docs > self.limits.capacity {
            Some(QueueError::Full { retry_after: drain_time(ahead, cost) })
        } else {
            admit(ahead, tokens, cost, self.limits.max_wait).err().map(|retry_after| QueueError::Full { retry_after })
        };
        let unqueue = || {
            stats.queued_documents.fetch_sub(docs, Ordering::Relaxed);
            stats.queued_tokens.fetch_sub(tokens, Ordering::Relaxed);
        };
        if let Some(refusal) = refusal {
            unqueue();
            stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(refusal);
        }
        let (reply, answer) = oneshot::channel();
        stats.depth.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + self.limits.max_wait;
        if let Err(e) = self.tx.try_send(Job { texts, tokens, deadline, reply }) {
            stats.depth.fetch_sub(1, Ordering::Relaxed);
            unqueue();
            return Err(match e {
                TrySendError::Full(_) => QueueError::Full { retry_after: drain_time(ahead, cost) },
                TrySendError::Disconnected(_) => QueueError::Closed,
            });
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

/// Tokenise a job, or answer it at once if its caller is gone, its deadline has passed or
/// tokenisation fails.
fn prepare(embedder: &dyn TextEmbedder, job: Job, stats: &QueueStats) -> Option<Ready> {
    stats.depth.fetch_sub(1, Ordering::Relaxed);
    stats.queued_documents.fetch_sub(job.texts.len(), Ordering::Relaxed);
    stats.queued_tokens.fetch_sub(job.tokens, Ordering::Relaxed);
    // Counted as running from here: it is no longer in the queue, and not yet answered.
    stats.running_tokens.fetch_add(job.tokens, Ordering::Relaxed);
    let ready = Ready { encoded: Vec::new(), tokens: job.tokens, deadline: job.deadline, reply: job.reply };
    if ready.dead(stats) {
        let _ = ready.reply.send(Err(QueueError::Expired));
        stats.running_tokens.fetch_sub(job.tokens, Ordering::Relaxed);
        return None;
    }
    let refs: Vec<&str> = job.texts.iter().map(String::as_str).collect();
    match embedder.encode(&refs) {
        Ok(encoded) => Some(Ready { encoded, ..ready }),
        Err(e) => {
            let _ = ready.reply.send(Err(QueueError::Model(e.to_string())));
            stats.running_tokens.fetch_sub(job.tokens, Ordering::Relaxed);
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
    // A job that waited past its deadline (or whose caller left) while the batch was assembled is
    // answered without a forward pass.
    let (batch, dead): (Vec<Ready>, Vec<Ready>) = batch.into_iter().partition(|r| !r.dead(stats));
    for ready in dead {
        stats.running_tokens.fetch_sub(ready.tokens, Ordering::Relaxed);
        let _ = ready.reply.send(Err(QueueError::Expired));
    }
    if batch.is_empty() {
        return;
    }
    let tokens: usize = batch.iter().map(|r| r.tokens).sum();
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
    // The cost model: a moving average (weight 1/4) of the time per estimated token.
    let sample = (elapsed.as_nanos() as u64 / tokens.max(1) as u64).max(1);
    let old = stats.nanos_per_token.load(Ordering::Relaxed);
    stats.nanos_per_token.store(if old == 0 { sample } else { (old * 3 + sample) / 4 }, Ordering::Relaxed);
    stats.running_tokens.fetch_sub(tokens, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_compares_the_estimated_wait_with_the_deadline() {
        let deadline = Duration::from_secs(10);
        // 1 ms a token: 5,000 tokens ahead plus 1,000 is 6 s, inside 80 % of 10 s.
        assert!(admit(5_000, 1_000, 1_000_000, deadline).is_ok());
        // 9,000 ahead: 10 s, over the budget; the hint is the drain time of the work ahead, rounded up.
        assert_eq!(admit(9_000, 1_000, 1_000_000, deadline), Err(Duration::from_secs(9)));
        assert_eq!(admit(8_500, 1_000, 1_000_000, deadline), Err(Duration::from_secs(9)));
        // Before the first measurement everything is admitted; the hint is never under a second.
        assert!(admit(1_000_000, 1_000, 0, deadline).is_ok());
        assert_eq!(drain_time(0, 1_000_000), Duration::from_secs(1));
    }

    #[test]
    fn token_estimates_grow_with_the_text_and_stop_at_the_model_maximum() {
        assert_eq!(estimate_tokens("", 256), 2);
        assert_eq!(estimate_tokens(&"x".repeat(400), 256), 102);
        assert_eq!(estimate_tokens(&"x".repeat(40_000), 256), 256);
    }
}
