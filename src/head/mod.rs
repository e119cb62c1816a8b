//! The rating head: predicts a movie's average IMDb rating, with an 80% interval, from its embedding.
//!
//! A head is an average of MLP members (the reference design's architecture, see [`mlp`]) blended with
//! the ridge regression it is compared against, both read from `head.safetensors`, described by
//! `head.json` ([`HeadSpec`]). It is tied to the embedding set it was trained on: [`Head::load`]
//! refuses a set of another dimension, model or run. Training lives in [`fit`]; the server calls
//! [`Head::load`] and [`Head::predict`].

pub mod data;
pub mod fit;
pub mod mlp;
pub mod ops;
pub mod ridge;
pub mod train;

use crate::artifacts::{self, Manifest, ModelRecord};
use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use mlp::{Mlp, MlpConfig};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

pub const HEAD_WEIGHTS_FILE: &str = "head.safetensors";
pub const HEAD_SPEC_FILE: &str = "head.json";
pub const TRAIN_REPORT_FILE: &str = "train-report.json";
pub const HEAD_FORMAT: &str = "cinevec-head/1";
/// Ratings are IMDb averages: predictions and intervals are clamped to this scale.
pub const RATING_MIN: f64 = 1.0;
pub const RATING_MAX: f64 = 10.0;

/// The embedding set a head was trained on: a head only makes sense on vectors from the same model,
/// and the link to the run keeps a head from outliving the set it was fitted to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingLink {
    pub run_id: String,
    pub dim: usize,
    pub model: ModelRecord,
    pub doc_format: String,
    pub input_sha256: String,
}

impl EmbeddingLink {
    pub fn of(manifest: &Manifest) -> EmbeddingLink {
        EmbeddingLink {
            run_id: manifest.run_id.clone(),
            dim: manifest.dim,
            model: manifest.model.clone(),
            doc_format: manifest.doc_format.clone(),
            input_sha256: manifest.input_sha256.clone(),
        }
    }

    /// A clear error unless `manifest` describes the very embedding set this head was trained on.
    pub fn check(&self, manifest: &Manifest) -> Result<()> {
        if self.dim != manifest.dim {
            bail!(
                "the rating head was trained on {}-dimensional embeddings, but this embedding set has dimension {}: \
                 train a head on it with `cinevec train`",
                self.dim,
                manifest.dim
            );
        }
        if self.model.weights_sha256 != manifest.model.weights_sha256
            || self.model.pooling != manifest.model.pooling
            || self.doc_format != manifest.doc_format
        {
            bail!(
                "the rating head was trained on embeddings of another model or document format ({} {}, {}), \
                 this set comes from {} {}, {}: train a head on it with `cinevec train`",
                self.model.source,
                short(&self.model.weights_sha256),
                self.doc_format,
                manifest.model.source,
                short(&manifest.model.weights_sha256),
                manifest.doc_format
            );
        }
        if self.run_id != manifest.run_id {
            bail!(
                "the rating head was trained on embedding run {}, but this embedding set is run {}: \
                 re-run `cinevec train` after `cinevec embed`",
                self.run_id,
                manifest.run_id
            );
        }
        Ok(())
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// What the MLP members learn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// The rating itself.
    Rating,
    /// What ridge regression leaves unexplained: the head adds the members' output to ridge's.
    RidgeResidual,
}

/// Members predict `(target − mean) / scale`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub kind: TargetKind,
    pub mean: f64,
    pub scale: f64,
}

/// A prediction interval from held-out residuals: `[rating + low, rating + high]` covers `level` of
/// the validation ratings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub level: f64,
    pub low: f64,
    pub high: f64,
    /// How many held-out residuals the quantiles come from.
    pub residuals: usize,
}

/// `head.json`: everything needed to rebuild and trust `head.safetensors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadSpec {
    pub format: String,
    pub head_id: String,
    pub created_at: String,
    pub embeddings: EmbeddingLink,
    pub mlp: MlpConfig,
    pub members: usize,
    pub target: Target,
    /// Final rating = `ridge_weight × ridge + (1 − ridge_weight) × MLP`, chosen on validation.
    pub ridge_weight: f64,
    pub ridge_lambda: f64,
    pub calibration: Calibration,
    pub weights_file: String,
    pub weights_sha256: String,
    /// How the head was trained (free form, for people).
    #[serde(default)]
    pub training: serde_json::Value,
}

/// One predicted rating with its interval, all on the 1–10 scale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prediction {
    pub rating: f64,
    pub low: f64,
    pub high: f64,
}

/// A loaded rating head, ready to predict (evaluation mode only).
pub struct Head {
    spec: HeadSpec,
    tensors: HashMap<String, Tensor>,
    input_mean: Tensor,
    input_scale: Tensor,
    ridge_weight: Tensor,
    ridge_bias: f64,
    members: Vec<Mlp>,
    device: Device,
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Head").field("spec", &self.spec).finish_non_exhaustive()
    }
}

impl Head {
    /// Load the head in `dir` for the embedding set described by `manifest`; refuses a head trained on
    /// another embedding set (dimension, model or run) with a message that says what to do.
    pub fn load(dir: &Path, manifest: &Manifest) -> Result<Head> {
        let spec = HeadSpec::read(dir)?;
        spec.embeddings.check(manifest)?;
        let path = dir.join(&spec.weights_file);
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if artifacts::sha256_hex(&bytes) != spec.weights_sha256 {
            bail!(
                "{} does not match {} (a head written by another run?): re-run `cinevec train`",
                path.display(),
                dir.join(HEAD_SPEC_FILE).display()
            );
        }
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
        Head::from_parts(spec, tensors)
    }

    /// Build a head from its spec and tensors (as written by [`Head::save`]).
    pub fn from_parts(spec: HeadSpec, tensors: HashMap<String, Tensor>) -> Result<Head> {
        ensure!(spec.format == HEAD_FORMAT, "unknown head format {}", spec.format);
        ensure!(spec.members >= 1, "a head needs at least one MLP member");
        ensure!(spec.mlp.input_dim == spec.embeddings.dim, "head MLP input does not match its embedding dimension");
        let device = Device::Cpu;
        let dim = spec.embeddings.dim;
        let get = |name: &str, len: usize| -> Result<Tensor> {
            let t = tensors.get(name).with_context(|| format!("head weights lack tensor {name}"))?;
            ensure!(t.dims() == [len], "head tensor {name} is {:?}, expected [{len}]", t.dims());
            Ok(t.to_dtype(DType::F32)?)
        };
        let input_mean = get("input.mean", dim)?.reshape((1, dim))?;
        let input_scale = get("input.scale", dim)?.reshape((1, dim))?;
        let ridge_weight = get("ridge.weight", dim)?.reshape((dim, 1))?;
        let ridge_bias = get("ridge.bias", 1)?.to_vec1::<f32>()?[0] as f64;
        let members = (0..spec.members)
            .map(|k| Mlp::from_tensors(&spec.mlp, &tensors, &format!("members.{k}.")))
            .collect::<Result<Vec<_>>>()?;
        Ok(Head { spec, tensors, input_mean, input_scale, ridge_weight, ridge_bias, members, device })
    }

    pub fn spec(&self) -> &HeadSpec {
        &self.spec
    }

    /// The embedding dimension the head expects.
    pub fn dim(&self) -> usize {
        self.spec.embeddings.dim
    }

    /// Predict a rating and its interval for each row of `rows` (`[n, dim]` row-major), in evaluation
    /// mode (no dropout, BatchNorm running statistics): the same rows always give the same answer.
    pub fn predict(&self, rows: &[f32], dim: usize) -> Result<Vec<Prediction>> {
        let (ridge, mlp) = self.components(rows, dim)?;
        let w = self.spec.ridge_weight;
        let cal = &self.spec.calibration;
        Ok(ridge
            .iter()
            .zip(&mlp)
            .map(|(r, m)| {
                let p = w * r + (1.0 - w) * m;
                Prediction { rating: clamp(p), low: clamp(p + cal.low), high: clamp(p + cal.high) }
            })
            .collect())
    }

    /// The two parts of a prediction before blending: ridge regression and the MLP members' average
    /// (in ratings; for a residual head, ridge plus the predicted residual).
    pub fn components(&self, rows: &[f32], dim: usize) -> Result<(Vec<f64>, Vec<f64>)> {
        if dim != self.dim() {
            bail!("the rating head expects {}-dimensional embeddings, got {dim}", self.dim());
        }
        if !rows.len().is_multiple_of(dim) {
            bail!("{} values are not a whole number of {dim}-dimensional rows", rows.len());
        }
        if rows.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let x = Tensor::from_slice(rows, (rows.len() / dim, dim), &self.device)?;
        let ridge: Vec<f64> = x
            .matmul(&self.ridge_weight)?
            .squeeze(1)?
            .to_vec1::<f32>()?
            .iter()
            .map(|&v| v as f64 + self.ridge_bias)
            .collect();
        let z = x.broadcast_sub(&self.input_mean)?.broadcast_div(&self.input_scale)?;
        let mut sum: Option<Tensor> = None;
        for m in &self.members {
            let out = m.forward(&z, None)?;
            sum = Some(match sum {
                None => out,
                Some(s) => (s + out)?,
            });
        }
        let avg = (sum.expect("at least one member") / self.members.len() as f64)?.to_vec1::<f32>()?;
        let t = &self.spec.target;
        let mlp = avg
            .iter()
            .zip(&ridge)
            .map(|(&a, r)| {
                let out = t.mean + t.scale * a as f64;
                match t.kind {
                    TargetKind::Rating => out,
                    TargetKind::RidgeResidual => r + out,
                }
            })
            .collect();
        Ok((ridge, mlp))
    }

    /// Write `head.safetensors`, then `head.json` (the commit point, holding the weights' sha256).
    pub fn save(&mut self, dir: &Path) -> Result<()> {
        let bytes = self.weights_bytes()?;
        self.spec.weights_file = HEAD_WEIGHTS_FILE.to_string();
        self.spec.weights_sha256 = artifacts::sha256_hex(&bytes);
        artifacts::write_atomic(&dir.join(HEAD_WEIGHTS_FILE), &bytes)?;
        artifacts::write_atomic(&dir.join(HEAD_SPEC_FILE), &serde_json::to_vec_pretty(&self.spec)?)?;
        Ok(())
    }

    fn weights_bytes(&self) -> Result<Vec<u8>> {
        let mut names: Vec<&String> = self.tensors.keys().collect();
        names.sort();
        let mut data = Vec::with_capacity(names.len());
        for name in names {
            let t = &self.tensors[name];
            let values = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            data.push((name.clone(), t.dims().to_vec(), bytes));
        }
        let views = data
            .iter()
            .map(|(n, shape, b)| {
                Ok((n.as_str(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let metadata = HashMap::from([
            ("head_id".to_string(), self.spec.head_id.clone()),
            ("embeddings_run_id".to_string(), self.spec.embeddings.run_id.clone()),
        ]);
        Ok(safetensors::serialize(views, Some(metadata))?)
    }
}

impl HeadSpec {
    /// Read `head.json` from `dir`.
    pub fn read(dir: &Path) -> Result<HeadSpec> {
        let path = dir.join(HEAD_SPEC_FILE);
        let text = std::fs::read(&path)
            .with_context(|| format!("no rating head at {}: run `cinevec train` first", path.display()))?;
        let spec: HeadSpec = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a valid head description", path.display()))?;
        ensure!(spec.format == HEAD_FORMAT, "{}: unknown format {}", path.display(), spec.format);
        Ok(spec)
    }
}

fn clamp(r: f64) -> f64 {
    r.clamp(RATING_MIN, RATING_MAX)
}
