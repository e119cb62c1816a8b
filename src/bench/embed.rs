//! The cinevec half of the embedding benchmark (`scripts/bench-embed.sh` runs the PyTorch half on the
//! same documents and prints the ratio). Measures what a user waits for: tokenisation included.

use crate::catalog::jsonl::read_records;
use crate::models::ModelOptions;
use crate::pipeline::embed::{embed_sorted, BatchLimits};
use anyhow::{Context, Result};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// `cinevec bench-embed`'s settings.
#[derive(Debug, Clone)]
pub struct EmbedBenchOptions {
    /// Catalog JSONL file to take documents from.
    pub catalog: PathBuf,
    /// How many documents (the first N valid ones).
    pub docs: usize,
    pub batch_sizes: Vec<usize>,
    pub model: ModelOptions,
    /// Write the results as JSON here too.
    pub json: Option<PathBuf>,
}

fn percentile(sorted_ms: &[f64], p: f64) -> f64 {
    let idx = ((sorted_ms.len() as f64 - 1.0) * p).round() as usize;
    sorted_ms[idx.min(sorted_ms.len() - 1)]
}

pub fn embed(args: &EmbedBenchOptions) -> Result<()> {
    let mut texts = Vec::with_capacity(args.docs);
    for item in read_records(&args.catalog).with_context(|| format!("cannot read {}", args.catalog.display()))? {
        if let Ok(record) = item? {
            texts.push(record.movie.render());
            if texts.len() == args.docs {
                break;
            }
        }
    }
    let embedder = args.model.load()?;
    embedder.warm_up()?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    if !embedder.device().is_cpu() {
        // On a GPU, warm up at each measured batch size too (first launches load kernel modules and
        // pick cuBLAS algorithms); scripts/bench_embed_torch.py does the same there.
        for &bs in &args.batch_sizes {
            let n = (2 * bs).min(refs.len());
            let encoded = embedder.encode(&refs[..n])?;
            embed_sorted(&embedder, &encoded, BatchLimits { max_batch: bs.max(1), max_tokens: usize::MAX }, |_, _| {
                Ok(())
            })?;
        }
    }
    let tokens: usize = embedder.encode(&refs)?.iter().map(|e| e.ids.len()).sum();
    let info = embedder.info();
    println!(
        "cinevec: {} docs, {:.1} tokens/doc on average, {} in {}, {} CPU threads",
        texts.len(),
        tokens as f64 / texts.len() as f64,
        info.device,
        info.dtype,
        candle_core::utils::get_num_threads()
    );
    let mut results = Vec::new();
    for &bs in &args.batch_sizes {
        if bs > 1 {
            let start = Instant::now();
            let encoded = embedder.encode(&refs)?;
            let limits = BatchLimits { max_batch: bs, max_tokens: usize::MAX };
            embed_sorted(&embedder, &encoded, limits, |_, _| Ok(()))?;
            let secs = start.elapsed().as_secs_f64();
            let rate = texts.len() as f64 / secs;
            println!("cinevec batch {bs:>3}: {rate:8.1} docs/s ({secs:.2}s)");
            results.push(json!({"batch": bs, "docs_per_s": rate, "seconds": secs}));
        } else {
            let mut ms = Vec::with_capacity(texts.len());
            let start = Instant::now();
            for text in &refs {
                let t = Instant::now();
                embedder.embed(&[text])?;
                ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let secs = start.elapsed().as_secs_f64();
            ms.sort_by(f64::total_cmp);
            let (p50, p99) = (percentile(&ms, 0.5), percentile(&ms, 0.99));
            let rate = texts.len() as f64 / secs;
            println!("cinevec batch   1: {rate:8.1} docs/s, p50 {p50:.2} ms, p99 {p99:.2} ms");
            results.push(json!({"batch": 1, "docs_per_s": rate, "p50_ms": p50, "p99_ms": p99, "seconds": secs}));
        }
    }
    if let Some(path) = &args.json {
        let out = json!({
            "engine": "cinevec",
            "device": info.device,
            "dtype": info.dtype,
            "docs": texts.len(),
            "texts": texts,
            "results": results
        });
        std::fs::write(path, serde_json::to_vec(&out)?)?;
    }
    Ok(())
}
