//! The MLP of the reference design, in candle: `input → n × [Linear → GELU → BatchNorm1d → Dropout]
//! → Linear(·, 1)`.
//!
//! Parameters are our own named `Var`s rather than a `VarMap`, for two reasons: candle cannot seed its
//! CPU random generator, so initial weights and dropout masks come from our seeded [`Rng`] (a seed then
//! reproduces a run exactly); and the BatchNorm running statistics must be saved and restored with the
//! weights, which is explicit here. BatchNorm is `BatchNorm1d`: PyTorch's semantics (batch statistics
//! and a momentum-0.1 update of the running mean and unbiased variance in training, running statistics
//! in evaluation), with the fused kernels of [`super::ops`] in training; it matches
//! `candle_nn::BatchNorm`, which the tests check.

use super::data::Rng;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Linear, Module};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub const BATCH_NORM_EPS: f64 = 1e-5;
pub const BATCH_NORM_MOMENTUM: f64 = 0.1;

/// The shape of one MLP (what is needed to rebuild it from its tensors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    pub input_dim: usize,
    /// Width of each hidden block, in order.
    pub hidden: Vec<usize>,
    /// Dropout after each hidden block (training only).
    pub dropout: f64,
    /// Dropout on the input features (training only).
    pub input_dropout: f64,
}

impl MlpConfig {
    /// Every tensor name with its shape, in a fixed order.
    fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        let mut fan_in = self.input_dim;
        for (i, &w) in self.hidden.iter().enumerate() {
            out.push((format!("blocks.{i}.linear.weight"), vec![w, fan_in]));
            out.push((format!("blocks.{i}.linear.bias"), vec![w]));
            for s in ["weight", "bias", "running_mean", "running_var"] {
                out.push((format!("blocks.{i}.norm.{s}"), vec![w]));
            }
            fan_in = w;
        }
        out.push(("out.weight".into(), vec![1, fan_in]));
        out.push(("out.bias".into(), vec![1]));
        out
    }

    pub fn parameter_count(&self) -> usize {
        // Running statistics are buffers, not parameters (PyTorch counts the same way).
        self.tensor_shapes()
            .iter()
            .filter(|(n, _)| !n.contains("running_"))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }
}

struct Block {
    /// `[out, in]`, applied as `x · weightᵀ`; its bias is fused into the GELU.
    weight: Tensor,
    bias: Tensor,
    norm: BatchNorm1d,
}

/// BatchNorm over the features of `[rows, features]`.
struct BatchNorm1d {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
}

impl BatchNorm1d {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train {
            let (out, stats) = super::ops::batch_norm_train(x, &self.weight, &self.bias, BATCH_NORM_EPS)?;
            let rows = x.dim(0)? as f32;
            let m = BATCH_NORM_MOMENTUM as f32;
            let update = |running: &Var, batch: &[f32], unbias: f32| -> Result<()> {
                let old = running.as_tensor().to_vec1::<f32>()?;
                let new: Vec<f32> = old.iter().zip(batch).map(|(r, b)| (1.0 - m) * r + m * b * unbias).collect();
                running.set(&Tensor::from_vec(new, old.len(), x.device())?)?;
                Ok(())
            };
            update(&self.running_mean, &stats.mean, 1.0)?;
            update(&self.running_var, &stats.var, rows / (rows - 1.0))?;
            Ok(out)
        } else {
            let scale = (&self.weight / (self.running_var.as_tensor() + BATCH_NORM_EPS)?.sqrt()?)?;
            let shift = (&self.bias - (self.running_mean.as_tensor() * &scale)?)?;
            Ok(x.broadcast_mul(&scale)?.broadcast_add(&shift)?)
        }
    }
}

/// One MLP with its parameters.
pub struct Mlp {
    config: MlpConfig,
    blocks: Vec<Block>,
    out: Linear,
    /// Every tensor, named, in `tensor_shapes` order (running statistics included).
    vars: Vec<(String, Var)>,
}

impl Mlp {
    /// Fresh weights: PyTorch's defaults for `Linear` (uniform in ±1/√fan_in for weights and bias),
    /// BatchNorm scale 1, shift 0, running mean 0 and variance 1, drawn from `rng`.
    pub fn init(config: &MlpConfig, rng: &mut Rng, device: &Device) -> Result<Mlp> {
        let mut tensors = HashMap::new();
        for (name, shape) in config.tensor_shapes() {
            let n: usize = shape.iter().product();
            let values: Vec<f32> =
                if name.ends_with("linear.weight") || name.ends_with("linear.bias") || name.starts_with("out.") {
                    let fan_in = if name.ends_with("weight") { shape[1] } else { fan_in_of(config, &name) };
                    let bound = 1.0 / (fan_in as f32).sqrt();
                    (0..n).map(|_| (rng.next_f32() * 2.0 - 1.0) * bound).collect()
                } else if name.ends_with("norm.weight") || name.ends_with("running_var") {
                    vec![1.0; n]
                } else {
                    vec![0.0; n]
                };
            tensors.insert(name, Tensor::from_vec(values, shape, device)?);
        }
        Mlp::from_tensors(config, &tensors, "")
    }

    /// Rebuild from named tensors (`prefix` + the names of [`Mlp::tensors`]). Missing or misshapen
    /// tensors are an error.
    pub fn from_tensors(config: &MlpConfig, tensors: &HashMap<String, Tensor>, prefix: &str) -> Result<Mlp> {
        if config.hidden.is_empty() {
            bail!("an MLP needs at least one hidden block");
        }
        let mut vars = Vec::new();
        for (name, shape) in config.tensor_shapes() {
            let full = format!("{prefix}{name}");
            let t = tensors.get(&full).with_context(|| format!("head weights lack tensor {full}"))?;
            if t.dims() != shape.as_slice() {
                bail!("head tensor {full} is {:?}, expected {:?}", t.dims(), shape);
            }
            // A copy: the Var is trained in place and must not alias the caller's tensor.
            vars.push((name, Var::from_tensor(&t.to_dtype(DType::F32)?.copy()?)?));
        }
        let var = |name: &str| -> Var {
            vars.iter().find(|(n, _)| n == name).expect("every name was just inserted").1.clone()
        };
        let get = |name: &str| -> Tensor { var(name).as_tensor().clone() };
        let mut blocks = Vec::new();
        for i in 0..config.hidden.len() {
            let p = |s: &str| format!("blocks.{i}.{s}");
            blocks.push(Block {
                weight: get(&p("linear.weight")),
                bias: get(&p("linear.bias")),
                norm: BatchNorm1d {
                    weight: get(&p("norm.weight")),
                    bias: get(&p("norm.bias")),
                    running_mean: var(&p("norm.running_mean")),
                    running_var: var(&p("norm.running_var")),
                },
            });
        }
        let out = Linear::new(get("out.weight"), Some(get("out.bias")));
        Ok(Mlp { config: config.clone(), blocks, out, vars })
    }

    pub fn config(&self) -> &MlpConfig {
        &self.config
    }

    /// The parameters the optimiser updates (running statistics excluded).
    pub fn trainable(&self) -> Vec<Var> {
        self.vars.iter().filter(|(n, _)| !n.contains("running_")).map(|(_, v)| v.clone()).collect()
    }

    /// A detached copy of every tensor (weights and running statistics), e.g. to keep the best epoch.
    pub fn tensors(&self) -> Result<Vec<(String, Tensor)>> {
        self.vars.iter().map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?))).collect()
    }

    /// Overwrite every tensor with a snapshot taken by [`Mlp::tensors`].
    pub fn restore(&self, snapshot: &[(String, Tensor)]) -> Result<()> {
        for ((name, var), (snap_name, t)) in self.vars.iter().zip(snapshot) {
            if name != snap_name {
                bail!("snapshot tensor {snap_name} does not match {name}");
            }
            var.set(t)?;
        }
        Ok(())
    }

    /// `[rows, input_dim] → [rows]`. With `dropout_rng` the network runs in training mode: dropout on,
    /// BatchNorm normalises with the batch statistics and updates its running statistics. Without, it
    /// runs in evaluation mode and is a pure function of its weights.
    pub fn forward(&self, x: &Tensor, dropout_rng: Option<&mut Rng>) -> Result<Tensor> {
        let train = dropout_rng.is_some();
        let mut rng = dropout_rng;
        let mut h = match rng.as_deref_mut() {
            Some(r) if self.config.input_dropout > 0.0 => dropout(x, self.config.input_dropout, r)?,
            _ => x.clone(),
        };
        for block in &self.blocks {
            h = super::ops::bias_gelu(&h.matmul(&block.weight.t()?)?, &block.bias)?;
            h = block.norm.forward(&h, train)?;
            if let Some(r) = rng.as_deref_mut() {
                if self.config.dropout > 0.0 {
                    h = dropout(&h, self.config.dropout, r)?;
                }
            }
        }
        Ok(self.out.forward(&h)?.squeeze(1)?)
    }
}

fn fan_in_of(config: &MlpConfig, name: &str) -> usize {
    if name.starts_with("out.") {
        return *config.hidden.last().expect("at least one block");
    }
    let i: usize = name.split('.').nth(1).and_then(|s| s.parse().ok()).expect("blocks.<i>.…");
    if i == 0 {
        config.input_dim
    } else {
        config.hidden[i - 1]
    }
}

/// Inverted dropout with a mask from our seeded generator (two 32-bit draws per call of the generator).
fn dropout(x: &Tensor, p: f64, rng: &mut Rng) -> Result<Tensor> {
    let keep = (1.0 / (1.0 - p)) as f32;
    let threshold = (p * (1u64 << 32) as f64) as u64;
    let n = x.elem_count();
    let mut mask = Vec::with_capacity(n + 1);
    for _ in 0..n.div_ceil(2) {
        let r = rng.next_u64();
        for half in [r & 0xFFFF_FFFF, r >> 32] {
            mask.push(if half < threshold { 0.0 } else { keep });
        }
    }
    mask.truncate(n);
    Ok(x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::ModuleT;

    /// Our BatchNorm against candle-nn's on the same data: outputs in both modes and running statistics.
    #[test]
    fn batch_norm_matches_candle_nn() -> Result<()> {
        let dev = Device::Cpu;
        let bn = BatchNorm1d {
            weight: Tensor::new(&[1.5f32, 0.5, 2.0], &dev)?,
            bias: Tensor::new(&[0.1f32, -0.2, 0.3], &dev)?,
            running_mean: Var::zeros(3, DType::F32, &dev)?,
            running_var: Var::ones(3, DType::F32, &dev)?,
        };
        let reference = candle_nn::BatchNorm::new_with_momentum(
            3,
            Tensor::zeros(3, DType::F32, &dev)?,
            Tensor::ones(3, DType::F32, &dev)?,
            bn.weight.clone(),
            bn.bias.clone(),
            BATCH_NORM_EPS,
            BATCH_NORM_MOMENTUM,
        )?;
        let close = |a: &Tensor, b: &Tensor| -> Result<f32> { Ok((a - b)?.abs()?.max_all()?.to_scalar::<f32>()?) };
        for step in 0..3 {
            let x = (Tensor::randn(0f32, 2.0, (20, 3), &dev)? + step as f64)?;
            assert!(close(&bn.forward(&x, true)?, &reference.forward_t(&x, true)?)? < 1e-5);
        }
        assert!(close(bn.running_mean.as_tensor(), reference.running_mean())? < 1e-5);
        assert!(close(bn.running_var.as_tensor(), reference.running_var())? < 1e-5);
        let x = Tensor::randn(0f32, 2.0, (7, 3), &dev)?;
        assert!(close(&bn.forward(&x, false)?, &reference.forward_t(&x, false)?)? < 1e-5);
        Ok(())
    }

    #[test]
    fn dropout_drops_its_share_and_keeps_the_mean() -> Result<()> {
        let x = Tensor::ones((200, 100), DType::F32, &Device::Cpu)?;
        let y = dropout(&x, 0.3, &mut Rng::new(5))?.flatten_all()?.to_vec1::<f32>()?;
        let zeros = y.iter().filter(|v| **v == 0.0).count() as f64 / y.len() as f64;
        let mean = y.iter().map(|v| *v as f64).sum::<f64>() / y.len() as f64;
        assert!((zeros - 0.3).abs() < 0.02 && (mean - 1.0).abs() < 0.03, "zeros {zeros}, mean {mean}");
        Ok(())
    }

    #[test]
    fn parameter_count_of_the_reference_design() {
        // 768 → 6 × 256 → 1 with BatchNorm: 529,153 parameters, as published.
        let config = MlpConfig { input_dim: 768, hidden: vec![256; 6], dropout: 0.6, input_dropout: 0.0 };
        assert_eq!(config.parameter_count(), 529_153);
    }
}
