//! MPNet encoder (sentence-transformers/all-mpnet-base-v2, ...), on the same packed batches and kernels
//! as [`super::bert`]. candle-transformers has no MPNet.
//!
//! What differs from BERT (checked against Hugging Face transformers' `modeling_mpnet.py`):
//! - embeddings: words plus learned positions, then a layer norm; no token types. Position ids follow
//!   fairseq/RoBERTa: a real token's position is its index among the sequence's non-padding tokens plus
//!   `pad_token_id + 1` (so 2 for the first token), a padding token's is `pad_token_id`;
//! - attention: scores get an additive relative-position bias, `relative_attention_bias[bucket(key -
//!   query), head]`, the same for every layer. Distances are bucketed T5-style: 32 buckets, half per
//!   direction; within each half, distances below 8 get a bucket each, longer ones share logarithmically
//!   wider buckets up to 128, beyond which all fall in the last one;
//! - weight names: `attention.attn.{q,k,v,o}` and `attention.LayerNorm`, optionally under `mpnet.`.
//!
//! The layer layout (post-norm attention and feed-forward blocks, exact GELU) is BERT's, and so is the
//! code path: fused QKV product, packed attention (with the bias) on the CPU, candle's ops on the
//! padded layout elsewhere.

use super::attention::{self, PositionBias};
use super::batch::PackedBatch;
use super::bert::{self, Layer, LayerNames, LayerNorm, LayerShape};
use super::ops::ResidualNorm;
use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_buckets")]
    pub relative_attention_num_buckets: usize,
    #[serde(default = "default_pad")]
    pub pad_token_id: u32,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_eps() -> f64 {
    1e-5
}
fn default_buckets() -> usize {
    32
}
fn default_pad() -> u32 {
    1
}

/// Distances from this on share MPNet's last bucket (per direction).
const MAX_DISTANCE: i64 = 128;

/// MPNet's bucket of a relative position `key - query` (T5's bidirectional scheme).
pub fn relative_position_bucket(relative: i64, num_buckets: usize) -> usize {
    let half = (num_buckets / 2) as i64;
    // Keys after the query (n < 0) use the upper half.
    let n = -relative;
    let base = if n < 0 { half } else { 0 };
    let n = n.abs();
    let max_exact = half / 2;
    if n < max_exact {
        return (base + n) as usize;
    }
    // The bucket grows with log(n): n = max_exact · (MAX_DISTANCE / max_exact)^(k / (half - max_exact))
    // starts bucket max_exact + k. The small epsilon puts those exact starting points (16, 32, 64 with
    // the defaults) in the bucket they start, as PyTorch's float32 arithmetic does.
    let scale = (n as f64 / max_exact as f64).ln() / (MAX_DISTANCE as f64 / max_exact as f64).ln();
    let large = max_exact + (scale * (half - max_exact) as f64 + 1e-9).floor() as i64;
    (base + large.min(half - 1)) as usize
}

const MPNET_LAYER: LayerNames = LayerNames {
    attention: "attention.attn",
    qkv: ["q", "k", "v"],
    attn_out: "attention.attn.o",
    attn_norm: "attention.LayerNorm",
};

pub struct Mpnet {
    word_embeddings: candle_nn::Embedding,
    position_embeddings: candle_nn::Embedding,
    /// `layer_norm(words + positions)` (a zero bias: MPNet has no token types).
    embedding_norm: ResidualNorm,
    layers: Vec<Layer>,
    /// The relative-position bias of every head for every distance a sequence of up to `span` tokens
    /// has, computed once at load and shared by all layers and batches.
    position_bias: Arc<PositionBias>,
    heads: usize,
    pad_token_id: u32,
    dtype: DType,
}

impl Mpnet {
    /// `weights`: how the dense weights are kept on the CPU (see [`super::WeightOptions`]).
    pub fn load(vb: VarBuilder, config: &Config, weights: super::WeightOptions) -> Result<Self> {
        if config.hidden_act != "gelu" {
            candle_core::bail!("MPNet: hidden_act `{}` is not supported (only `gelu`)", config.hidden_act);
        }
        // MPNetForMaskedLM checkpoints nest the encoder under `mpnet.`.
        let vb = if vb.contains_tensor("mpnet.embeddings.word_embeddings.weight") { vb.pp("mpnet") } else { vb };
        let (h, nh, eps) = (config.hidden_size, config.num_attention_heads, config.layer_norm_eps);
        let emb = vb.pp("embeddings");
        let word_embeddings = candle_nn::embedding(config.vocab_size, h, emb.pp("word_embeddings"))?;
        let position_embeddings =
            candle_nn::embedding(config.max_position_embeddings, h, emb.pp("position_embeddings"))?;
        let dtype = word_embeddings.embeddings().dtype();
        let zero = Tensor::zeros(h, dtype, vb.device())?;
        let embedding_norm = LayerNorm::load(&emb.pp("LayerNorm"), h, eps)?.with_bias(&zero)?;

        let encoder = vb.pp("encoder");
        let shape = LayerShape { hidden: h, heads: nh, intermediate: config.intermediate_size, eps };
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::load(&encoder.pp(format!("layer.{i}")), &MPNET_LAYER, &shape, weights))
            .collect::<Result<Vec<_>>>()?;

        let buckets = config.relative_attention_num_buckets;
        let table = encoder
            .pp("relative_attention_bias")
            .get((buckets, nh), "weight")?
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()?;
        // Positions run from pad_token_id + 1: that many rows of the table are never a real token's.
        let span = config.max_position_embeddings.saturating_sub(config.pad_token_id as usize + 1).max(1);
        let position_bias =
            Arc::new(PositionBias::new(nh, span, |head, d| table[relative_position_bucket(d, buckets)][head]));
        Ok(Mpnet {
            word_embeddings,
            position_embeddings,
            embedding_norm,
            layers,
            position_bias,
            heads: nh,
            pad_token_id: config.pad_token_id,
            dtype,
        })
    }

    /// Longest input the position embeddings cover.
    pub fn max_tokens(&self) -> usize {
        self.position_bias.span()
    }

    /// Position ids of the packed tokens, as `create_position_ids_from_input_ids` makes them.
    fn position_ids(&self, batch: &PackedBatch) -> Result<Tensor> {
        let ids = batch.ids.to_device(&candle_core::Device::Cpu)?.to_vec1::<u32>()?;
        let pad = self.pad_token_id;
        let mut positions = Vec::with_capacity(ids.len());
        let mut start = 0;
        for &len in &batch.lengths {
            let mut real = 0;
            for &id in &ids[start..start + len] {
                if id == pad {
                    positions.push(pad);
                } else {
                    real += 1;
                    positions.push(real + pad);
                }
            }
            start += len;
        }
        Tensor::from_vec(positions, ids.len(), batch.ids.device())
    }

    /// Last hidden states of every token, packed: `[total_tokens, hidden]`.
    pub fn forward(&self, batch: &PackedBatch) -> Result<Tensor> {
        if batch.longest > self.max_tokens() {
            candle_core::bail!(
                "MPNet: an input of {} tokens is longer than the model's {}",
                batch.longest,
                self.max_tokens()
            );
        }
        let words = self.word_embeddings.forward(&batch.ids)?;
        let positions = self.position_embeddings.forward(&self.position_ids(batch)?)?;
        let mut x = self.embedding_norm.forward(&words, &positions)?;
        // The padded path (GPUs, half precision) adds mask and position bias as one `[B, nh, L, L]`.
        let padded_bias = if attention::supported(&x) { None } else { Some(self.padded_bias(batch)?) };
        for layer in &self.layers {
            x = self.layer_forward(layer, &x, batch, padded_bias.as_ref())?;
        }
        Ok(x)
    }

    fn layer_forward(
        &self,
        layer: &Layer,
        x: &Tensor,
        batch: &PackedBatch,
        padded_bias: Option<&Tensor>,
    ) -> Result<Tensor> {
        layer.forward(x, true, |qkv, x| match padded_bias {
            None => attention::packed_attention_with_position_bias(
                &qkv.product(x)?,
                &qkv.bias,
                &batch.lengths,
                self.heads,
                &self.position_bias,
            ),
            Some(bias) => bert::padded_attention(&qkv.forward(x)?, batch, bias, self.heads),
        })
    }

    /// The padding mask plus the position bias, `[B, nh, L, L]` in the model's dtype.
    fn padded_bias(&self, batch: &PackedBatch) -> Result<Tensor> {
        let l = batch.longest;
        let mut values = Vec::with_capacity(self.heads * l * l);
        for head in 0..self.heads {
            for query in 0..l {
                values.extend_from_slice(self.position_bias.row(head, query, l));
            }
        }
        let position = Tensor::from_vec(values, (1, self.heads, l, l), batch.ids.device())?;
        position.broadcast_add(&batch.key_mask)?.to_dtype(self.dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where PyTorch's `MPNetEncoder.relative_position_bucket` (transformers 4.x/5.x, default 32
    /// buckets) changes value, for relative positions -520..=520: (first relative position, bucket).
    const TORCH_CHANGES: [(i64, usize); 31] = [
        (-520, 15),
        (-90, 14),
        (-63, 13),
        (-45, 12),
        (-31, 11),
        (-22, 10),
        (-15, 9),
        (-11, 8),
        (-7, 7),
        (-6, 6),
        (-5, 5),
        (-4, 4),
        (-3, 3),
        (-2, 2),
        (-1, 1),
        (0, 0),
        (1, 17),
        (2, 18),
        (3, 19),
        (4, 20),
        (5, 21),
        (6, 22),
        (7, 23),
        (8, 24),
        (12, 25),
        (16, 26),
        (23, 27),
        (32, 28),
        (46, 29),
        (64, 30),
        (91, 31),
    ];

    #[test]
    fn buckets_match_pytorch() {
        let mut expected = Vec::new();
        for (i, &(from, bucket)) in TORCH_CHANGES.iter().enumerate() {
            let to = TORCH_CHANGES.get(i + 1).map_or(521, |c| c.0);
            expected.extend((from..to).map(|d| (d, bucket)));
        }
        assert_eq!(expected.len(), 1041);
        for (d, bucket) in expected {
            assert_eq!(relative_position_bucket(d, 32), bucket, "relative position {d}");
        }
    }
}
