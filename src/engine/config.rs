//! What a model folder says about itself: architecture (from `config.json`), pooling (from the
//! sentence-transformers `1_Pooling/config.json`), and the maximum sequence length.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// The transformer families cinevec can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// `BertModel` and its relatives (MiniLM, BGE, E5, ...).
    Bert,
    /// `ModernBertModel` (gte-modernbert-base, ModernBERT-base, ...).
    ModernBert,
    /// `MPNetModel` / `MPNetForMaskedLM` (all-mpnet-base-v2, ...).
    Mpnet,
}

/// How token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The first token's last hidden state.
    Cls,
    /// The mean of the real (non-padding) tokens' last hidden states.
    Mean,
}

impl std::fmt::Display for Pooling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pooling::Cls => "cls",
            Pooling::Mean => "mean",
        })
    }
}

/// Everything the engine needs to know before loading weights.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub architecture: Architecture,
    pub hidden_size: usize,
    pub pooling: Pooling,
    /// Longest input in tokens, special tokens included; longer inputs are truncated.
    pub max_tokens: usize,
    /// The raw `config.json`, for the architecture-specific loaders.
    pub config: Value,
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

fn architecture_of(config: &Value) -> Result<Architecture> {
    let model_type = config.get("model_type").and_then(Value::as_str).unwrap_or_default();
    let archs: Vec<&str> = config
        .get("architectures")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let is = |prefix: &str| archs.iter().any(|a| a.starts_with(prefix));
    if model_type == "modernbert" || is("ModernBert") {
        Ok(Architecture::ModernBert)
    } else if model_type == "bert" || is("Bert") {
        Ok(Architecture::Bert)
    } else if model_type == "mpnet" || is("MPNet") {
        Ok(Architecture::Mpnet)
    } else {
        let named = if archs.is_empty() { model_type.to_string() } else { archs.join(", ") };
        bail!(
            "unsupported model architecture `{}`: cinevec runs the BertModel family, MPNet and ModernBertModel",
            if named.is_empty() { "unknown (config.json names none)" } else { &named }
        )
    }
}

/// Where sentence-transformers keeps the pooling module: `modules.json` names it, `1_Pooling` by default.
fn pooling_dir(dir: &Path) -> std::path::PathBuf {
    let from_modules = read_json(&dir.join("modules.json")).ok().and_then(|m| {
        m.as_array()?.iter().find_map(|module| {
            let ty = module.get("type")?.as_str()?;
            ty.ends_with("Pooling").then(|| module.get("path")?.as_str().map(str::to_string))?
        })
    });
    dir.join(from_modules.unwrap_or_else(|| "1_Pooling".to_string()))
}

fn pooling_of(dir: &Path, architecture: Architecture) -> Result<Pooling> {
    let path = pooling_dir(dir).join("config.json");
    if !path.exists() {
        // sentence-transformers' own default for a bare BERT is mean pooling; ModernBERT embedders
        // (gte-modernbert) are trained for the CLS token.
        return Ok(match architecture {
            Architecture::Bert | Architecture::Mpnet => Pooling::Mean,
            Architecture::ModernBert => Pooling::Cls,
        });
    }
    let cfg = read_json(&path)?;
    let on = |key: &str| cfg.get(key).and_then(Value::as_bool).unwrap_or(false);
    match (on("pooling_mode_cls_token"), on("pooling_mode_mean_tokens")) {
        (true, false) => Ok(Pooling::Cls),
        (false, true) => Ok(Pooling::Mean),
        _ => {
            let mode = cfg.get("pooling_mode").and_then(Value::as_str).unwrap_or_default();
            match mode {
                "cls" => Ok(Pooling::Cls),
                "mean" => Ok(Pooling::Mean),
                _ => bail!("{}: only CLS or mean pooling (exactly one) is supported", path.display()),
            }
        }
    }
}

fn usize_field(config: &Value, key: &str) -> Result<usize> {
    config
        .get(key)
        .and_then(Value::as_u64)
        .map(|v| v as usize)
        .with_context(|| format!("config.json has no integer `{key}`"))
}

impl ModelSpec {
    /// Read a model folder's configuration files (no weights).
    pub fn read(dir: &Path) -> Result<Self> {
        let config = read_json(&dir.join("config.json"))?;
        let architecture = architecture_of(&config)?;
        let hidden_size = usize_field(&config, "hidden_size")?;
        let mut position_limit = usize_field(&config, "max_position_embeddings")?;
        if architecture == Architecture::Mpnet {
            // Positions start after the padding id (RoBERTa-style), so the first pad_id + 1 are unused.
            let pad = config.get("pad_token_id").and_then(Value::as_u64).unwrap_or(1) as usize;
            position_limit = position_limit.saturating_sub(pad + 1);
        }
        let st_max = read_json(&dir.join("sentence_bert_config.json"))
            .ok()
            .and_then(|c| c.get("max_seq_length").and_then(Value::as_u64))
            .map(|v| v as usize);
        let max_tokens = st_max.unwrap_or(position_limit).min(position_limit);
        let pooling = pooling_of(dir, architecture)?;
        Ok(ModelSpec { architecture, hidden_size, pooling, max_tokens, config })
    }
}
