//! Batch planning: documents sorted by length and cut into forward passes within a document and a
//! padded-token limit. Used by offline embedding (`cinevec embed`) and by the model thread alike.

use super::{Encoded, TextEmbedder};
use anyhow::Result;

/// Batching limits for the embedding loop.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// At most this many documents per forward pass.
    pub max_batch: usize,
    /// At most this many padded tokens (batch size × longest) per forward pass.
    pub max_tokens: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits { max_batch: 32, max_tokens: 16_384 }
    }
}

/// Split documents, already sorted by decreasing length, into batches within the limits. Returns
/// index ranges into the sorted order.
pub fn plan_batches(sorted_lengths: &[usize], limits: BatchLimits) -> Vec<std::ops::Range<usize>> {
    let mut batches = Vec::new();
    let mut start = 0;
    while start < sorted_lengths.len() {
        // The first document is the longest of its batch, so it fixes the padded width.
        let width = sorted_lengths[start].max(1);
        let by_tokens = (limits.max_tokens / width).max(1);
        let size = limits.max_batch.max(1).min(by_tokens);
        let end = (start + size).min(sorted_lengths.len());
        batches.push(start..end);
        start = end;
    }
    batches
}

/// Embed tokenised documents in length-sorted batches; returns the `[n, dim]` matrix in input order.
/// `on_batch` gets each finished batch: the positions (into `encoded`) of its documents and their
/// `[members, dim]` rows.
pub fn embed_sorted(
    embedder: &(impl TextEmbedder + ?Sized),
    encoded: &[Encoded],
    limits: BatchLimits,
    mut on_batch: impl FnMut(&[usize], &[f32]) -> Result<()>,
) -> Result<Vec<f32>> {
    let dim = embedder.dim();
    let mut order: Vec<usize> = (0..encoded.len()).collect();
    // Longest first: the biggest batch runs first, so a memory problem shows at once, not at the end.
    order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].ids.len()));
    let lengths: Vec<usize> = order.iter().map(|&i| encoded[i].ids.len()).collect();
    let mut matrix = vec![0f32; encoded.len() * dim];
    for range in plan_batches(&lengths, limits) {
        let members = &order[range];
        let batch: Vec<&Encoded> = members.iter().map(|&i| &encoded[i]).collect();
        let rows = embedder.embed_encoded(&batch)?;
        for (k, &i) in members.iter().enumerate() {
            matrix[i * dim..(i + 1) * dim].copy_from_slice(&rows[k * dim..(k + 1) * dim]);
        }
        on_batch(members, &rows)?;
    }
    Ok(matrix)
}
