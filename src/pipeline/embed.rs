//! `cinevec embed`: every movie of a catalog through the engine into an embedding set.

use crate::artifacts::{self, Manifest, ModelRecord};
use crate::catalog::jsonl::read_records;
use crate::engine::Embedder;
use crate::movie::DOC_FORMAT_VERSION;
use crate::pipeline::embed_cache::{doc_hash, CacheKey, DocHash, EmbedCache};
use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

pub use crate::engine::plan::{embed_sorted, plan_batches, BatchLimits};

/// Outcome of an embedding run, for the command's summary.
#[derive(Debug)]
pub struct EmbedReport {
    pub manifest: Manifest,
    pub skipped_lines: usize,
    pub duplicate_ids: usize,
    /// Documents whose vector came from the embedding cache (an earlier, maybe interrupted, run).
    pub reused: usize,
    /// Documents run through the model in this run.
    pub embedded: usize,
}

/// One line for the terminal.
pub fn summary(report: &EmbedReport, out_dir: &Path) -> String {
    let m = &report.manifest;
    let reused = if report.reused > 0 { format!(", {} from the cache", report.reused) } else { String::new() };
    format!(
        "embedded {} movies (dim {}, {} truncated{reused}) in {:.1}s ({:.1} docs/s) into {}",
        m.rows,
        m.dim,
        m.truncated,
        m.seconds,
        report.embedded as f64 / m.seconds,
        out_dir.display()
    )
}

/// Where `cinevec embed` keeps its cache for an output folder.
pub fn cache_dir(out_dir: &Path) -> std::path::PathBuf {
    out_dir.join(".cache")
}

/// The cache key of an embedder: everything a vector depends on besides the text.
pub fn cache_key(embedder: &Embedder) -> CacheKey {
    let info = embedder.info();
    CacheKey {
        weights_sha256: info.weights_sha256.clone(),
        dim: info.dim,
        pooling: info.pooling.to_string(),
        max_tokens: info.max_tokens,
        dtype: info.dtype.clone(),
        doc_format: DOC_FORMAT_VERSION.to_string(),
    }
}

/// Embed a catalog JSONL file into an embedding set in `out_dir`. With `cache` set, vectors of texts
/// embedded before by the same model are reused and new ones are appended as each batch finishes,
/// so an interrupted run resumes where it stopped.
pub fn embed_catalog(
    embedder: &Embedder,
    model_source: &str,
    catalog: &Path,
    out_dir: &Path,
    limits: BatchLimits,
    strict: bool,
    cache: Option<&Path>,
) -> Result<EmbedReport> {
    let started = Instant::now();
    let input_sha256 = crate::hash::sha256_file(catalog)?;
    let mut ids = Vec::new();
    let mut texts = Vec::new();
    let mut seen = HashSet::new();
    let (mut skipped, mut duplicates) = (0usize, 0usize);
    for item in read_records(catalog).with_context(|| format!("cannot read {}", catalog.display()))? {
        match item? {
            Ok(record) => {
                if !seen.insert(record.id.clone()) {
                    duplicates += 1;
                    if duplicates <= 3 {
                        tracing::warn!("{}: duplicate id {} skipped", catalog.display(), record.id);
                    }
                    continue;
                }
                ids.push(record.id);
                texts.push(record.movie.render());
            }
            Err(bad) => {
                if strict {
                    bail!("{}:{}: {}", catalog.display(), bad.line, bad.error);
                }
                skipped += 1;
                if skipped <= 5 {
                    tracing::warn!("{}:{}: skipped: {}", catalog.display(), bad.line, bad.error);
                }
            }
        }
    }
    if ids.is_empty() {
        bail!("{} holds no valid movies", catalog.display());
    }

    let dim = embedder.dim();
    let hashes: Vec<DocHash> = texts.iter().map(|t| doc_hash(t)).collect();
    let mut cache = match cache {
        Some(dir) => Some(EmbedCache::open(dir, &cache_key(embedder))?),
        None => None,
    };
    // Rows the cache already holds are filled in now; the rest go through the model.
    let mut matrix = vec![0f32; ids.len() * dim];
    let mut truncated = vec![false; ids.len()];
    let mut todo: Vec<usize> = Vec::new();
    for (i, hash) in hashes.iter().enumerate() {
        match cache.as_ref().and_then(|c| c.get(hash)) {
            Some(hit) => {
                matrix[i * dim..(i + 1) * dim].copy_from_slice(hit.vector);
                truncated[i] = hit.truncated;
            }
            None => todo.push(i),
        }
    }
    let reused = ids.len() - todo.len();
    if reused > 0 {
        tracing::info!(
            "{reused} of {} documents already embedded by this model (cache); embedding {}",
            ids.len(),
            todo.len()
        );
    }

    let tokenize = crate::progress::bar(todo.len() as u64, "tokenize", "docs");
    let mut encoded = Vec::with_capacity(todo.len());
    for chunk in todo.chunks(1024) {
        let refs: Vec<&str> = chunk.iter().map(|&i| texts[i].as_str()).collect();
        encoded.extend(embedder.encode(&refs)?);
        tokenize.inc(chunk.len() as u64);
    }
    tokenize.finish_and_clear();
    drop(texts);

    let bar = crate::progress::bar(encoded.len() as u64, "embed", "docs");
    let fresh = embed_sorted(embedder, &encoded, limits, |members, rows| {
        if let Some(cache) = cache.as_mut() {
            let items: Vec<(DocHash, &[f32], bool)> = members
                .iter()
                .enumerate()
                .map(|(k, &m)| (hashes[todo[m]], &rows[k * dim..(k + 1) * dim], encoded[m].truncated()))
                .collect();
            cache.append(&items)?;
        }
        bar.inc(members.len() as u64);
        Ok(())
    })?;
    bar.finish_and_clear();
    for (m, &i) in todo.iter().enumerate() {
        matrix[i * dim..(i + 1) * dim].copy_from_slice(&fresh[m * dim..(m + 1) * dim]);
        truncated[i] = encoded[m].truncated();
    }
    drop(fresh);

    let info = embedder.info();
    let manifest = Manifest {
        format: artifacts::MANIFEST_FORMAT.to_string(),
        run_id: artifacts::new_run_id(),
        created_at: artifacts::now_rfc3339(),
        model: ModelRecord {
            source: model_source.to_string(),
            architecture: info.architecture,
            weights_sha256: info.weights_sha256.clone(),
            pooling: info.pooling,
            max_tokens: info.max_tokens,
        },
        dim: info.dim,
        rows: ids.len(),
        doc_format: DOC_FORMAT_VERSION.to_string(),
        truncated: truncated.iter().filter(|&&t| t).count(),
        input: catalog.display().to_string(),
        input_sha256,
        device: info.device.clone(),
        dtype: info.dtype.clone(),
        seconds: started.elapsed().as_secs_f64(),
    };
    artifacts::write_embeddings(out_dir, &manifest, &ids, &matrix)?;
    if let Some(cache) = cache.as_mut() {
        let live: HashSet<DocHash> = hashes.iter().copied().collect();
        if cache.compact(&live)? {
            tracing::info!(
                "embedding cache {} compacted to the {} current documents",
                cache.path().display(),
                cache.len()
            );
        }
    }
    Ok(EmbedReport { manifest, skipped_lines: skipped, duplicate_ids: duplicates, reused, embedded: todo.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_both_limits() {
        let lengths = [300, 200, 100, 100, 50, 50, 50, 10];
        let limits = BatchLimits { max_batch: 3, max_tokens: 400 };
        let batches = plan_batches(&lengths, limits);
        assert_eq!(batches, vec![0..1, 1..3, 3..6, 6..8]);
        for b in &batches {
            assert!(b.len() <= 3);
            assert!(lengths[b.start] * b.len() <= 400 || b.len() == 1);
        }
    }

    #[test]
    fn an_overlong_document_gets_a_batch_of_its_own() {
        let batches = plan_batches(&[1000, 5], BatchLimits { max_batch: 8, max_tokens: 100 });
        assert_eq!(batches, vec![0..1, 1..2]);
    }
}
