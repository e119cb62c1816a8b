//! BERT-family encoder (MiniLM, BGE, E5, ...), written for inference on packed batches.
//!
//! Unlike a padded implementation, every dense layer (QKV, output, feed-forward) runs on the packed
//! `[total_tokens, hidden]` matrix, so padding costs nothing there. Q, K and V are fused into one matrix
//! product. On the CPU (f32), attention is one fused kernel on the packed layout too
//! ([`super::attention`]), and every bias add is folded into the op after its product (attention,
//! GELU, residual + layer norm). Elsewhere attention works on the padded
//! `[batch, heads, longest, head_dim]` layout with candle's ops.

use super::attention;
use super::batch::PackedBatch;
use super::lowp::{CpuPrecision, PackedWeight};
use super::ops::{self, ResidualNorm};
use super::WeightOptions;
use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

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
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

pub(super) struct Linear {
    /// `[out, in]`, as stored; `None` when only the transposed copy is kept ([`Linear::new`]).
    weight: Option<Tensor>,
    /// `[in, out]` contiguous copy, kept on the CPU only (see [`super::SMALL_BATCH_ROWS`]).
    weight_t: Option<Tensor>,
    /// The weight in bf16 or int8 for [`super::lowp`]'s kernels (CPU only); then the only copy.
    packed: Option<PackedWeight>,
    pub(super) bias: Tensor,
}

impl Linear {
    /// With `opts.one_copy`, a CPU layer keeps only the transposed weight (half the memory of its
    /// weights; products of many rows then read it too, a few per cent slower than the stored layout);
    /// with a reduced `opts.precision`, only the packed weight for [`super::lowp`]'s kernels.
    pub(super) fn new(weight: Tensor, bias: Tensor, opts: WeightOptions) -> Result<Self> {
        if !weight.device().is_cpu() {
            return Ok(Linear { weight: Some(weight), weight_t: None, packed: None, bias });
        }
        if opts.precision != CpuPrecision::F32 {
            if let Some(packed) = PackedWeight::pack(&weight, opts.precision)? {
                return Ok(Linear { weight: None, weight_t: None, packed: Some(packed), bias });
            }
        }
        let weight_t = Some(weight.t()?.contiguous()?);
        Ok(Linear { weight: (!opts.one_copy).then_some(weight), weight_t, packed: None, bias })
    }

    pub(super) fn load(vb: &VarBuilder, inp: usize, out: usize, opts: WeightOptions) -> Result<Self> {
        Linear::new(vb.get((out, inp), "weight")?, vb.get(out, "bias")?, opts)
    }

    pub(super) fn product(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(packed) = &self.packed {
            return packed.product(x);
        }
        match (&self.weight, &self.weight_t) {
            (_, Some(wt)) if x.dim(0)? < super::SMALL_BATCH_ROWS => ops::team_product(x, wt),
            (Some(w), _) => x.matmul(&w.t()?),
            (None, Some(wt)) => x.matmul(wt),
            (None, None) => unreachable!("a layer keeps at least one copy of its weight"),
        }
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.product(x)?.broadcast_add(&self.bias)
    }

    /// `gelu(x W^T + b)`, bias and activation fused on the CPU.
    pub(super) fn forward_gelu(&self, x: &Tensor) -> Result<Tensor> {
        ops::bias_gelu(&self.product(x)?, &self.bias)
    }
}

pub(super) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    pub(super) fn load(vb: &VarBuilder, size: usize, eps: f64) -> Result<Self> {
        // Old TF-converted checkpoints call them gamma/beta.
        let (w, b) = if vb.contains_tensor("weight") { ("weight", "bias") } else { ("gamma", "beta") };
        Ok(LayerNorm { weight: vb.get(size, w)?, bias: vb.get(size, b)?, eps: eps as f32 })
    }

    /// `layer_norm(x + bias + residual)`, fused.
    pub(super) fn with_bias(&self, bias: &Tensor) -> Result<ResidualNorm> {
        ResidualNorm::new(bias, &self.weight, &self.bias, self.eps)
    }
}

/// One post-norm encoder layer: self-attention, then feed-forward, each followed by residual + layer
/// norm. BERT's layout, shared by MPNet (with other weight names, [`LayerNames`]).
pub(super) struct Layer {
    qkv: Linear,
    /// Its bias is applied by `attn_norm`.
    attn_out: Linear,
    attn_norm: ResidualNorm,
    intermediate: Linear,
    /// Its bias is applied by `output_norm`.
    output: Linear,
    output_norm: ResidualNorm,
}

/// Where a layer's weights are, relative to the layer: `(query, key, value)` under `attention`, the
/// attention output's dense layer and its layer norm.
pub(super) struct LayerNames {
    pub attention: &'static str,
    pub qkv: [&'static str; 3],
    pub attn_out: &'static str,
    pub attn_norm: &'static str,
}

const BERT_LAYER: LayerNames = LayerNames {
    attention: "attention.self",
    qkv: ["query", "key", "value"],
    attn_out: "attention.output.dense",
    attn_norm: "attention.output.LayerNorm",
};

/// Sizes of an encoder layer.
pub(super) struct LayerShape {
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub eps: f64,
}

impl Layer {
    pub(super) fn load(l: &VarBuilder, names: &LayerNames, shape: &LayerShape, weights: WeightOptions) -> Result<Self> {
        let (h, eps) = (shape.hidden, shape.eps);
        // Q, K and V become one matrix product; attention's 1/sqrt(head_dim) is folded into the
        // query part, saving a pass over the scores.
        let scale = ((h / shape.heads) as f64).powf(-0.5);
        let (mut ws, mut bs) = (Vec::with_capacity(3), Vec::with_capacity(3));
        for (name, factor) in names.qkv.iter().zip([scale, 1.0, 1.0]) {
            let p = l.pp(names.attention).pp(name);
            ws.push((p.get((h, h), "weight")? * factor)?);
            bs.push((p.get(h, "bias")? * factor)?);
        }
        let qkv = Linear::new(Tensor::cat(&ws, 0)?, Tensor::cat(&bs, 0)?, weights)?;
        let attn_out = Linear::load(&l.pp(names.attn_out), h, h, weights)?;
        let output = Linear::load(&l.pp("output").pp("dense"), shape.intermediate, h, weights)?;
        Ok(Layer {
            qkv,
            attn_norm: LayerNorm::load(&l.pp(names.attn_norm), h, eps)?.with_bias(&attn_out.bias)?,
            attn_out,
            intermediate: Linear::load(&l.pp("intermediate").pp("dense"), h, shape.intermediate, weights)?,
            output_norm: LayerNorm::load(&l.pp("output").pp("LayerNorm"), h, eps)?.with_bias(&output.bias)?,
            output,
        })
    }

    /// The layer on packed rows `x`; `attention(qkv, x)` gives the attention context (before the
    /// output projection).
    pub(super) fn forward(
        &self,
        x: &Tensor,
        exact_gelu: bool,
        attention: impl FnOnce(&Linear, &Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let ctx = attention(&self.qkv, x)?;
        let x = self.attn_norm.forward(&self.attn_out.product(&ctx)?, x)?;
        let hidden =
            if exact_gelu { self.intermediate.forward_gelu(&x)? } else { self.intermediate.forward(&x)?.gelu()? };
        self.output_norm.forward(&self.output.product(&hidden)?, &x)
    }
}

/// Attention with candle's ops on the padded layout: packed `[T, 3H]` (biased, the query part scaled by
/// `1/sqrt(head_dim)`) → packed `[T, H]`. `scores_bias` is added to the `[B, heads, L, L]` scores: the
/// padding mask, and any position bias.
pub(super) fn padded_attention(
    qkv: &Tensor,
    batch: &PackedBatch,
    scores_bias: &Tensor,
    heads: usize,
) -> Result<Tensor> {
    let (b, l) = (batch.batch_size(), batch.longest);
    let (nh, hd) = (heads, qkv.dim(1)? / 3 / heads);
    let qkv = batch.pad(qkv)?.reshape((b, l, 3, nh, hd))?.permute((2, 0, 3, 1, 4))?; // [3, B, nh, L, hd]
    let q = qkv.get(0)?.contiguous()?;
    let k = qkv.get(1)?.contiguous()?;
    let v = qkv.get(2)?.contiguous()?;
    let scores = q.matmul(&k.t()?)?.broadcast_add(scores_bias)?;
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, l, nh * hd))?; // [B, L, H]
    batch.unpad(&ctx)
}

pub struct Bert {
    word_embeddings: candle_nn::Embedding,
    position_embeddings: candle_nn::Embedding,
    /// `layer_norm(words + positions + token type 0)`: every input is a single segment.
    embedding_norm: ResidualNorm,
    layers: Vec<Layer>,
    heads: usize,
    exact_gelu: bool,
    dtype: DType,
}

impl Bert {
    /// `weights`: how the dense weights are kept on the CPU (see [`Linear::new`]).
    pub fn load(vb: VarBuilder, config: &Config, weights: WeightOptions) -> Result<Self> {
        if let Some(kind) = &config.position_embedding_type {
            if kind != "absolute" {
                candle_core::bail!("position_embedding_type `{kind}` is not supported (only `absolute`)");
            }
        }
        let exact_gelu = match config.hidden_act.as_str() {
            "gelu" => true,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => false,
            other => candle_core::bail!("hidden_act `{other}` is not supported"),
        };
        // HF checkpoints of BertModel subclasses nest everything under `bert.`.
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") { vb.pp("bert") } else { vb };
        let h = config.hidden_size;
        let emb = vb.pp("embeddings");
        let word_embeddings = candle_nn::embedding(config.vocab_size, h, emb.pp("word_embeddings"))?;
        let position_embeddings =
            candle_nn::embedding(config.max_position_embeddings, h, emb.pp("position_embeddings"))?;
        let token_type = emb.pp("token_type_embeddings").get((config.type_vocab_size, h), "weight")?.get(0)?;
        let embedding_norm = LayerNorm::load(&emb.pp("LayerNorm"), h, config.layer_norm_eps)?.with_bias(&token_type)?;

        let shape = LayerShape {
            hidden: h,
            heads: config.num_attention_heads,
            intermediate: config.intermediate_size,
            eps: config.layer_norm_eps,
        };
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::load(&vb.pp(format!("encoder.layer.{i}")), &BERT_LAYER, &shape, weights))
            .collect::<Result<Vec<_>>>()?;
        Ok(Bert {
            word_embeddings,
            position_embeddings,
            embedding_norm,
            dtype: token_type.dtype(),
            layers,
            heads: config.num_attention_heads,
            exact_gelu,
        })
    }

    /// Last hidden states of every token, packed: `[total_tokens, hidden]`.
    pub fn forward(&self, batch: &PackedBatch) -> Result<Tensor> {
        let words = self.word_embeddings.forward(&batch.ids)?;
        let positions = self.position_embeddings.forward(&batch.positions)?;
        let mut x = self.embedding_norm.forward(&words, &positions)?;
        // The additive padding mask in the model's dtype (its large negative becomes -inf in f16,
        // which softmax turns into an exact 0 like any other masked score), for the padded path only.
        let key_mask = if attention::supported(&x) { None } else { Some(batch.key_mask.to_dtype(self.dtype())?) };
        for layer in &self.layers {
            x = self.layer_forward(layer, &x, batch, key_mask.as_ref())?;
        }
        Ok(x)
    }

    fn layer_forward(
        &self,
        layer: &Layer,
        x: &Tensor,
        batch: &PackedBatch,
        key_mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        layer.forward(x, self.exact_gelu, |qkv, x| match key_mask {
            None => attention::packed_attention(&qkv.product(x)?, &qkv.bias, &batch.lengths, self.heads),
            Some(mask) => padded_attention(&qkv.forward(x)?, batch, mask, self.heads),
        })
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }
}
