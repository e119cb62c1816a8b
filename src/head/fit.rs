//! Fitting a whole head: input standardisation, the MLP members, the blend with ridge and the
//! calibration of the interval, every choice made on validation.

use super::data::{quantile, training_rows, Dataset, Errors, Fold, Rng};
use super::ridge::{Linear, Ridge};
use super::train::{fit_member, matrix, EpochLog, MemberData, MemberSummary, MlpTraining};
use super::{
    Calibration, EmbeddingLink, Head, HeadSpec, Target, TargetKind, HEAD_FORMAT, HEAD_WEIGHTS_FILE, RATING_MAX,
    RATING_MIN,
};
use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How much of ridge regression goes into the final rating.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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
    /// Every validation row (indices into the training data, fold after fold) and its held-out
    /// prediction: the blend of the fold's ridge model and the fold's MLP members, clamped.
    pub val_rows: Vec<usize>,
    pub val_pred: Vec<f64>,
    /// Training rows seen by all members together, and the time it took.
    pub samples: usize,
    pub seconds: f64,
}

/// Fit a head on `data`: for each fold, `cfg.mlp.members` MLPs train on the fold's training rows and
/// stop at their best epoch on its validation rows; the head averages all of them. The blend with
/// ridge and the interval are chosen on the held-out predictions of every fold. `ridge` was fitted on
/// the same folds; its final model becomes part of the head. One fold is the classic train /
/// validation split; k folds are cross-fitting, where every row is held out once.
pub fn fit_head(
    data: &Dataset,
    folds: &[Fold],
    ridge: &Ridge,
    link: EmbeddingLink,
    cfg: &HeadTraining,
    on_epoch: &mut dyn FnMut(&EpochLog),
) -> Result<FitOutcome> {
    if data.dim != link.dim {
        bail!("training rows do not have the embedding dimension {}", link.dim);
    }
    if folds.is_empty() || ridge.fold_models.len() != folds.len() {
        bail!("one ridge model per fold is needed");
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
    let dim = data.dim;
    let fitted = data.subset(&training_rows(folds, data.len()));
    let (mean, scale) = if cfg.standardize { feature_stats(&fitted) } else { (vec![0.0; dim], vec![1.0; dim]) };
    let standardize = |d: &Dataset| -> Result<Tensor> {
        let z: Vec<f32> =
            d.x.chunks_exact(dim)
                .flat_map(|row| row.iter().zip(&mean).zip(&scale).map(|((x, m), s)| (x - m) / s))
                .collect();
        matrix(&z, dim, &device)
    };
    // What the members learn, before standardisation: the rating, or what the fold's ridge misses.
    let target_of = |d: &Dataset, ridge: &Linear| -> Vec<f64> {
        match cfg.target {
            TargetKind::Rating => d.y.clone(),
            TargetKind::RidgeResidual => d.y.iter().zip(ridge.predict(d)).map(|(y, r)| y - r).collect(),
        }
    };
    let all_targets = target_of(&fitted, &ridge.model);
    let t_mean = super::data::mean(&all_targets);
    let t_scale =
        (all_targets.iter().map(|t| (t - t_mean).powi(2)).sum::<f64>() / all_targets.len() as f64).sqrt().max(1e-6);
    let standard = |t: &[f64]| -> Vec<f32> { t.iter().map(|t| ((t - t_mean) / t_scale) as f32).collect() };

    let mlp_config = cfg.mlp.mlp_config(dim);
    let mut rng = Rng::new(cfg.seed);
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut members = Vec::new();
    let (mut val_rows, mut val_y, mut val_ridge, mut val_mlp) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (fold, fold_ridge) in folds.iter().zip(&ridge.fold_models) {
        let (train, val) = (data.subset(&fold.train), data.subset(&fold.val));
        let (train_x, val_x) = (standardize(&train)?, standardize(&val)?);
        let (train_t, val_t) = (standard(&target_of(&train, fold_ridge)), standard(&target_of(&val, fold_ridge)));
        let member_data = MemberData {
            train_x: &train_x,
            train_t: &train_t,
            val_x: &val_x,
            val_t: &val_t,
            loss_scale: t_scale * t_scale,
        };
        let mut fold_sum = vec![0f64; val.len()];
        for _ in 0..cfg.mlp.members {
            let k = members.len();
            let (mlp, summary) = fit_member(&mlp_config, &cfg.mlp, &member_data, &mut rng.fork(), k, on_epoch)?;
            for (s, v) in fold_sum.iter_mut().zip(mlp.forward(&val_x, None)?.to_vec1::<f32>()?) {
                *s += v as f64;
            }
            for (name, t) in mlp.tensors()? {
                tensors.insert(format!("members.{k}.{name}"), t);
            }
            members.push(summary);
        }
        let ridge_pred = fold_ridge.predict(&val);
        for (i, s) in fold_sum.iter().enumerate() {
            let out = t_mean + t_scale * s / cfg.mlp.members as f64;
            val_mlp.push(match cfg.target {
                TargetKind::Rating => out,
                TargetKind::RidgeResidual => ridge_pred[i] + out,
            });
        }
        val_ridge.extend(ridge_pred);
        val_rows.extend(&fold.val);
        val_y.extend(&val.y);
    }
    let to_tensor = |v: &[f64]| Tensor::from_vec(v.iter().map(|&x| x as f32).collect::<Vec<f32>>(), v.len(), &device);
    tensors.insert("input.mean".into(), to_tensor(&mean.iter().map(|&m| m as f64).collect::<Vec<_>>())?);
    tensors.insert("input.scale".into(), to_tensor(&scale.iter().map(|&s| s as f64).collect::<Vec<_>>())?);
    tensors.insert("ridge.weight".into(), to_tensor(&ridge.model.weights)?);
    tensors.insert("ridge.bias".into(), to_tensor(&[ridge.model.bias])?);

    // The blend and the interval, on the held-out predictions.
    let blend_path: Vec<(f64, f64)> = match cfg.blend {
        Blend::Fixed(w) => vec![(w, blend_mse(w, &val_ridge, &val_mlp, &val_y))],
        Blend::Auto => {
            (0..=20).map(|k| k as f64 / 20.0).map(|w| (w, blend_mse(w, &val_ridge, &val_mlp, &val_y))).collect()
        }
    };
    let (ridge_weight, _) = blend_path.iter().copied().fold((0.0, f64::INFINITY), |b, p| if p.1 < b.1 { p } else { b });
    let val_pred = blend(ridge_weight, &val_ridge, &val_mlp);
    let residuals: Vec<f64> = val_y.iter().zip(&val_pred).map(|(y, p)| y - p).collect();
    let tail = (1.0 - cfg.interval) / 2.0;
    let calibration = Calibration {
        level: cfg.interval,
        low: quantile(&residuals, tail),
        high: quantile(&residuals, 1.0 - tail),
        residuals: residuals.len(),
    };
    let spec = HeadSpec {
        format: HEAD_FORMAT.to_string(),
        head_id: crate::artifacts::new_run_id(),
        created_at: crate::artifacts::now_rfc3339(),
        embeddings: link,
        mlp: mlp_config,
        members: members.len(),
        target: Target { kind: cfg.target, mean: t_mean, scale: t_scale },
        ridge_weight,
        ridge_lambda: ridge.lambda,
        calibration,
        weights_file: HEAD_WEIGHTS_FILE.to_string(),
        weights_sha256: String::new(),
        training: serde_json::json!({ "folds": folds.len(), "config": cfg }),
    };
    let head = Head::from_parts(spec, tensors)?;
    let samples = members.iter().map(|m| m.samples).sum();
    Ok(FitOutcome { head, members, blend_path, val_rows, val_pred, samples, seconds: started.elapsed().as_secs_f64() })
}

fn blend(w: f64, ridge: &[f64], mlp: &[f64]) -> Vec<f64> {
    ridge.iter().zip(mlp).map(|(r, m)| (w * r + (1.0 - w) * m).clamp(RATING_MIN, RATING_MAX)).collect()
}

fn blend_mse(w: f64, ridge: &[f64], mlp: &[f64], y: &[f64]) -> f64 {
    Errors::of(&blend(w, ridge, mlp), y).mse
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
