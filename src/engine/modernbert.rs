//! ModernBERT encoder (gte-modernbert-base and friends), run by candle-transformers' implementation.
//!
//! Two weight layouts exist in the wild: the `transformers` one with every backbone tensor under
//! `model.` (what candle's loader expects), and the sentence-transformers export used by
//! gte-modernbert-base, without that prefix. The loader accepts both.

use super::batch::PackedBatch;
use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::modernbert;

pub use modernbert::Config;

pub struct ModernBert {
    inner: modernbert::ModernBert,
    pad_token_id: u32,
}

impl ModernBert {
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        let vb = if vb.contains_tensor("model.embeddings.tok_embeddings.weight") {
            vb
        } else if vb.contains_tensor("embeddings.tok_embeddings.weight") {
            vb.rename_f(|name: &str| name.strip_prefix("model.").unwrap_or(name).to_string())
        } else {
            candle_core::bail!(
                "not a ModernBERT checkpoint: no `embeddings.tok_embeddings.weight` (with or without `model.`)"
            )
        };
        Ok(ModernBert { inner: modernbert::ModernBert::load(vb, config)?, pad_token_id: config.pad_token_id })
    }

    /// Last hidden states of every token, packed: `[total_tokens, hidden]`.
    pub fn forward(&self, batch: &PackedBatch) -> Result<Tensor> {
        let device = batch.ids.device();
        let (b, l) = (batch.batch_size(), batch.longest);
        let mut ids = vec![self.pad_token_id; b * l];
        let mut mask = vec![0u32; b * l];
        let packed: Vec<u32> = batch.ids.to_vec1()?;
        let mut offset = 0;
        for (row, &len) in batch.lengths.iter().enumerate() {
            ids[row * l..row * l + len].copy_from_slice(&packed[offset..offset + len]);
            mask[row * l..row * l + len].iter_mut().for_each(|m| *m = 1);
            offset += len;
        }
        let ids = Tensor::from_vec(ids, (b, l), device)?;
        let mask = Tensor::from_vec(mask, (b, l), device)?;
        let hidden = self.inner.forward(&ids, &mask)?; // [B, L, H]
        batch.unpad(&hidden)
    }

    pub fn dtype(&self) -> DType {
        DType::F32
    }
}
