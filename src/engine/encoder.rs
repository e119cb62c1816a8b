//! The model families the engine runs, behind one enum: each family's transformer is its own file
//! (`bert.rs`, `modernbert.rs`, `mpnet.rs`); adding one is a new file, a variant here, and its arm in
//! [`Encoder::load`] and [`Encoder::forward`] (`config.json` names the family, see
//! [`super::config::Architecture`]).

use super::batch::PackedBatch;
use super::config::{Architecture, ModelSpec};
use super::{bert, modernbert, mpnet, WeightOptions};
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::path::Path;

/// A loaded transformer of one of the supported families.
pub enum Encoder {
    Bert(bert::Bert),
    ModernBert(modernbert::ModernBert),
    Mpnet(mpnet::Mpnet),
}

impl Encoder {
    /// Load the weights of `spec`'s family from `weights` (memory-mapped safetensors).
    pub fn load(
        spec: &ModelSpec,
        weights: &Path,
        dtype: DType,
        device: &Device,
        options: WeightOptions,
    ) -> Result<Self> {
        // SAFETY: the file is memory-mapped read-only; cinevec never writes model files while serving.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], dtype, device)? };
        Ok(match spec.architecture {
            Architecture::Bert => {
                let cfg: bert::Config = serde_json::from_value(spec.config.clone()).context("config.json")?;
                Encoder::Bert(bert::Bert::load(vb, &cfg, options).context("loading BERT weights")?)
            }
            Architecture::ModernBert => {
                let cfg: modernbert::Config = serde_json::from_value(spec.config.clone()).context("config.json")?;
                Encoder::ModernBert(modernbert::ModernBert::load(vb, &cfg).context("loading ModernBERT weights")?)
            }
            Architecture::Mpnet => {
                let cfg: mpnet::Config = serde_json::from_value(spec.config.clone()).context("config.json")?;
                Encoder::Mpnet(mpnet::Mpnet::load(vb, &cfg, options).context("loading MPNet weights")?)
            }
        })
    }

    /// Hidden states of a packed batch: `[total_tokens, hidden]`, in the model's dtype.
    pub fn forward(&self, packed: &PackedBatch) -> Result<Tensor> {
        Ok(match self {
            Encoder::Bert(m) => m.forward(packed)?,
            Encoder::ModernBert(m) => m.forward(packed)?,
            Encoder::Mpnet(m) => m.forward(packed)?,
        })
    }
}
