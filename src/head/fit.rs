//! Fitting a whole head: input standardisation, the MLP members, the blend with ridge and the
//! calibration of the interval, every choice made on validation.

use super::data::{quantile, Dataset, Errors, Rng};
use super::ridge::Ridge;
use super::train::{fit_member, matrix, EpochLog, MemberData, MemberSummary, MlpTraining};
use super::{Calibration, EmbeddingLink, Head, HeadSpec, Target, TargetKind, HEAD_FORMAT, HEAD_WEIGHTS_FILE};
use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How much of ridge regression goes into the final rating.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Blend {
    /// The weight in 0, 0.05, …, 1 with the lowest validation MSE.
    Auto,
    /// A fixed weight (0 = MLP only).
    Fixed(f64),
}

impl std::str::FromStr for Blend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(Blend::Auto);
        }
        match s.parse::<f64>() {
            Ok(w) if (0.0..=1.0).contains(&w) => Ok(Blend::Fixed(w)),
            _ => Err(format!("`{s}`: expected `auto` or a weight from 0 to 1")),
        }
    }
}

/// Everything that decides how a head is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadTraining {
    pub mlp: MlpTraining,
    pub target: TargetKind,
    /// Scale each input feature to zero mean and unit variance (statistics of the training rows).
    pub standardize: bool,
    pub blend: Blend,
    /// Coverage of the prediction interval (0.8 = from the 10% to the 90% residual quantile).
    pub interval: f64,
    pub seed: u64,
}

/// A fitted head and how it got there.
pub struct FitOutcome {
    pub head: Head,
    pub members: Vec<MemberSummary>,
    /// Validation MSE of each blend weight tried.
    pub blend_path: Vec<(f64, f64)>,
    /// Training rows seen by all members together, and the time it took.
    pub samples: usize,
    pub seconds: f64,
}

/// Fit a head on `train`, choosing epochs, blend and interval on `val`. `ridge` is the baseline fitted
/// on the same rows; it becomes part of the head.
pub fn fit_head(
    train: &Dataset,
    val: &Dataset,
    ridge: &Ridge,
    link: EmbeddingLink,
    cfg: &HeadTraining,
    on_epoch: &mut dyn FnMut(&EpochLog),
) -> Result<FitOutcome> {
    if train.dim != link.dim || val.dim != link.dim {
        bail!("training rows do not have the embedding dimension {}", link.dim);
    }
    if cfg.mlp.members == 0 || cfg.mlp.depth == 0 || cfg.mlp.width == 0 || cfg.mlp.epochs == 0 {
        bail!("members, depth, width and epochs must all be at least 1");
    }
    if !(0.0..1.0).contains(&cfg.mlp.dropout) || !(0.0..1.0).contains(&cfg.mlp.input_dropout) {
        bail!("dropout must be in [0, 1)");
    }
    if !(cfg.interval > 0.0 && cfg.interval < 1.0) {
        bail!("the interval level must be between 0 and 1");
    }
    let started = std::time::Instant::now();
    let device = Device::Cpu;
    let dim = train.dim;
    let (mean, scale) = if cfg.standardize { feature_stats(train) } else { (vec![0.0; dim], vec![1.0; dim]) };
    let standardize = |d: &Dataset| -> Vec<f32> {
        d.x.chunks_exact(dim).flat_map(|row| row.iter().zip(&mean).zip(&scale).map(|((x, m), s)| (x - m) / s)).collect()
    };
    let (train_x, val_x) = (matrix(&standardize(train), dim, &device)?, matrix(&standardize(val), dim, &device)?);

    let target_of = |d: &Dataset| -> Vec<f64> {
        match cfg.target {
            TargetKind::Rating => d.y.clone(),
            TargetKind::RidgeResidual => d.y.iter().zip(ridge.model.predict(d)).map(|(y, r)| y - r).collect(),
        }
    };
    let (train_target, val_target) = (target_of(train), target_of(val));
    let t_mean = super::data::mean(&train_target);
    let t_scale =
        (train_target.iter().map(|t| (t - t_mean).powi(2)).sum::<f64>() / train_target.len() as f64).sqrt().max(1e-6);
    let standard = |t: &[f64]| -> Vec<f32> { t.iter().map(|t| ((t - t_mean) / t_scale) as f32).collect() };
    let (train_t, val_t) = (standard(&train_target), standard(&val_target));
    let data = MemberData {
        train_x: &train_x,
        train_t: &train_t,
        val_x: &val_x,
        val_t: &val_t,
        loss_scale: t_scale * t_scale,
    };

    let mlp_config = cfg.mlp.mlp_config(dim);
    let mut rng = Rng::new(cfg.seed);
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut members = Vec::new();
    for k in 0..cfg.mlp.members {
        let (mlp, summary) = fit_member(&mlp_config, &cfg.mlp, &data, &mut rng.fork(), k, on_epoch)?;
        for (name, t) in mlp.tensors()? {
            tensors.insert(format!("members.{k}.{name}"), t);
        }
        members.push(summary);
    }
    let to_tensor = |v: &[f64]| Tensor::from_vec(v.iter().map(|&x| x as f32).collect::<Vec<f32>>(), v.len(), &device);
    tensors.insert("input.mean".into(), to_tensor(&mean.iter().map(|&m| m as f64).collect::<Vec<_>>())?);
    tensors.insert("input.scale".into(), to_tensor(&scale.iter().map(|&s| s as f64).collect::<Vec<_>>())?);
    tensors.insert("ridge.weight".into(), to_tensor(&ridge.model.weights)?);
    tensors.insert("ridge.bias".into(), to_tensor(&[ridge.model.bias])?);

    let spec = HeadSpec {
        format: HEAD_FORMAT.to_string(),
        head_id: crate::artifacts::new_run_id(),
        created_at: crate::artifacts::now_rfc3339(),
        embeddings: link,
        mlp: mlp_config,
        members: cfg.mlp.members,
        target: Target { kind: cfg.target, mean: t_mean, scale: t_scale },
        ridge_weight: 0.0,
        ridge_lambda: ridge.lambda,
        calibration: Calibration { level: cfg.interval, low: 0.0, high: 0.0, residuals: 0 },
        weights_file: HEAD_WEIGHTS_FILE.to_string(),
        weights_sha256: String::new(),
        training: serde_json::to_value(cfg)?,
    };
    let mut head = Head::from_parts(spec, tensors)?;

    // The blend and the interval, on validation.
    let (val_ridge, val_mlp) = head.components(&val.x, dim)?;
    let blend_path: Vec<(f64, f64)> = match cfg.blend {
        Blend::Fixed(w) => vec![(w, blend_mse(w, &val_ridge, &val_mlp, &val.y))],
        Blend::Auto => {
            (0..=20).map(|k| k as f64 / 20.0).map(|w| (w, blend_mse(w, &val_ridge, &val_mlp, &val.y))).collect()
        }
    };
    let best = blend_path.iter().copied().fold((0.0, f64::INFINITY), |b, p| if p.1 < b.1 { p } else { b });
    head.spec.ridge_weight = best.0;
    let residuals: Vec<f64> = head.predict(&val.x, dim)?.iter().zip(&val.y).map(|(p, y)| y - p.rating).collect();
    let tail = (1.0 - cfg.interval) / 2.0;
    head.spec.calibration = Calibration {
        level: cfg.interval,
        low: quantile(&residuals, tail),
        high: quantile(&residuals, 1.0 - tail),
        residuals: residuals.len(),
    };
    let samples = members.iter().map(|m| m.samples).sum();
    Ok(FitOutcome { head, members, blend_path, samples, seconds: started.elapsed().as_secs_f64() })
}

fn blend_mse(w: f64, ridge: &[f64], mlp: &[f64], y: &[f64]) -> f64 {
    let pred: Vec<f64> = ridge.iter().zip(mlp).map(|(r, m)| (w * r + (1.0 - w) * m).clamp(1.0, 10.0)).collect();
    Errors::of(&pred, y).mse
}

/// Per-feature mean and standard deviation of the training rows (the deviation floored so that a
/// constant feature does not divide by zero).
fn feature_stats(train: &Dataset) -> (Vec<f32>, Vec<f32>) {
    let (n, d) = (train.len().max(1) as f64, train.dim);
    let mut sum = vec![0f64; d];
    let mut sq = vec![0f64; d];
    for row in train.x.chunks_exact(d) {
        for j in 0..d {
            sum[j] += row[j] as f64;
            sq[j] += row[j] as f64 * row[j] as f64;
        }
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let std = sq.iter().zip(&mean).map(|(q, m)| ((q / n - m * m).max(0.0).sqrt().max(1e-6)) as f32).collect();
    (mean.iter().map(|&m| m as f32).collect(), std)
}

/// Share of `y` inside the predicted intervals.
pub fn coverage(pred: &[super::Prediction], y: &[f64]) -> f64 {
    let inside = pred.iter().zip(y).filter(|(p, y)| p.low <= **y && **y <= p.high).count();
    inside as f64 / y.len().max(1) as f64
}
