//! Training the MLP members of a head: AdamW, a cosine learning-rate schedule with warm restarts,
//! mini-batches reshuffled every epoch from a seed, selection of the best epoch on validation.

use super::data::Rng;
use super::mlp::{Mlp, MlpConfig};
use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// How to train the MLP members (the command's defaults are in `cli::HeadArgs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpTraining {
    pub width: usize,
    pub depth: usize,
    pub dropout: f64,
    pub input_dropout: f64,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Lowest learning rate of each cosine cycle, as a fraction of `learning_rate`.
    pub min_lr_fraction: f64,
    pub weight_decay: f64,
    /// Length in epochs of the first cosine cycle; 0 = one cycle over all epochs (no restart).
    pub restart_epochs: usize,
    /// Each later cycle is this many times longer than the one before.
    pub restart_mult: usize,
    /// Stop when validation has not improved for this many epochs; 0 = run every epoch.
    pub patience: usize,
    /// How many MLPs to train (from different seeds) and average.
    pub members: usize,
}

impl MlpTraining {
    pub fn mlp_config(&self, input_dim: usize) -> MlpConfig {
        MlpConfig {
            input_dim,
            hidden: vec![self.width; self.depth],
            dropout: self.dropout,
            input_dropout: self.input_dropout,
        }
    }

    /// The learning rate at (fractional) epoch `t`: cosine annealing with warm restarts (SGDR).
    pub fn learning_rate_at(&self, t: f64) -> f64 {
        let (t_cur, t_i) = if self.restart_epochs == 0 {
            (t, self.epochs.max(1) as f64)
        } else {
            let t0 = self.restart_epochs as f64;
            let mult = self.restart_mult.max(1) as f64;
            if mult == 1.0 {
                (t % t0, t0)
            } else {
                let n = ((t / t0 * (mult - 1.0) + 1.0).ln() / mult.ln()).floor();
                let start = t0 * (mult.powf(n) - 1.0) / (mult - 1.0);
                (t - start, t0 * mult.powf(n))
            }
        };
        let min = self.learning_rate * self.min_lr_fraction;
        min + (self.learning_rate - min) * 0.5 * (1.0 + (std::f64::consts::PI * t_cur / t_i).cos())
    }
}

/// Standardised training data for the members: inputs already scaled, targets as `(y − mean) / scale`.
pub struct MemberData<'a> {
    pub train_x: &'a Tensor,
    pub train_t: &'a [f32],
    pub val_x: &'a Tensor,
    pub val_t: &'a [f32],
    /// Multiply a loss on the standardised target by this to get it in rating² units.
    pub loss_scale: f64,
}

/// One epoch, for the progress display and the report.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EpochLog {
    pub member: usize,
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (training mode: dropout on), rating² units.
    pub train_mse: f64,
    /// Validation MSE in evaluation mode, rating² units.
    pub val_mse: f64,
    pub learning_rate: f64,
}

/// What training one member gave.
#[derive(Debug, Clone, Serialize)]
pub struct MemberSummary {
    /// Index of the member in the head.
    pub member: usize,
    pub best_epoch: usize,
    pub best_val_mse: f64,
    pub epochs_run: usize,
    pub samples: usize,
    pub seconds: f64,
}

/// Train one MLP; returns it with the weights of its best validation epoch.
pub fn fit_member(
    config: &MlpConfig,
    training: &MlpTraining,
    data: &MemberData,
    rng: &mut Rng,
    member: usize,
    on_epoch: &mut dyn FnMut(&EpochLog),
) -> Result<(Mlp, MemberSummary)> {
    let device = data.train_x.device().clone();
    let n = data.train_t.len();
    if n < 2 || data.val_t.is_empty() {
        bail!("training needs at least two training rows and one validation row");
    }
    let started = Instant::now();
    let mlp = Mlp::init(config, &mut rng.fork(), &device)?;
    let mut opt = AdamW::new(
        mlp.trainable(),
        ParamsAdamW { lr: training.learning_rate, weight_decay: training.weight_decay, ..Default::default() },
    )?;
    let val_t = Tensor::from_slice(data.val_t, data.val_t.len(), &device)?;
    let batch = training.batch_size.clamp(2, n);
    let steps_per_epoch = n.div_ceil(batch);
    let mut shuffle_rng = rng.fork();
    let mut dropout_rng = rng.fork();
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut best = (f64::INFINITY, 0usize, mlp.tensors()?);
    let mut samples = 0usize;
    let mut epochs_run = 0;
    for epoch in 0..training.epochs {
        shuffle_rng.shuffle(&mut order);
        let (mut loss_sum, mut loss_rows) = (0.0, 0usize);
        for (step, chunk) in order.chunks(batch).enumerate() {
            // BatchNorm needs two rows for a variance; a lone leftover row waits for the next epoch.
            if chunk.len() < 2 {
                continue;
            }
            let lr = training.learning_rate_at(epoch as f64 + step as f64 / steps_per_epoch as f64);
            opt.set_learning_rate(lr);
            let idx = Tensor::from_slice(chunk, chunk.len(), &device)?;
            let x = data.train_x.index_select(&idx, 0)?;
            let t: Vec<f32> = chunk.iter().map(|&i| data.train_t[i as usize]).collect();
            let t = Tensor::from_vec(t, chunk.len(), &device)?;
            let pred = mlp.forward(&x, Some(&mut dropout_rng))?;
            let loss = (pred - t)?.sqr()?.mean_all()?;
            opt.backward_step(&loss)?;
            loss_sum += loss.to_scalar::<f32>()? as f64 * chunk.len() as f64;
            loss_rows += chunk.len();
        }
        samples += loss_rows;
        epochs_run = epoch + 1;
        let val_pred = mlp.forward(data.val_x, None)?;
        let val_mse = (val_pred - &val_t)?.sqr()?.mean_all()?.to_scalar::<f32>()? as f64 * data.loss_scale;
        if !val_mse.is_finite() {
            bail!("training diverged at epoch {epoch} (validation loss {val_mse}): lower the learning rate");
        }
        on_epoch(&EpochLog {
            member,
            epoch,
            train_mse: loss_sum / loss_rows.max(1) as f64 * data.loss_scale,
            val_mse,
            learning_rate: opt.learning_rate(),
        });
        if val_mse < best.0 {
            best = (val_mse, epoch, mlp.tensors()?);
        } else if training.patience > 0 && epoch - best.1 >= training.patience {
            break;
        }
    }
    mlp.restore(&best.2)?;
    let summary = MemberSummary {
        member,
        best_epoch: best.1,
        best_val_mse: best.0,
        epochs_run,
        samples,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((mlp, summary))
}

/// `[rows, dim]` f32 tensor on `device`.
pub fn matrix(rows: &[f32], dim: usize, device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_slice(rows, (rows.len() / dim.max(1), dim), device)?)
}
