//! The MLP of the reference design, in candle: `input → n × [Linear → GELU → BatchNorm1d → Dropout]
//! → Linear(·, 1)`.
//!
//! Parameters are our own named `Var`s rather than a `VarMap`, for two reasons: candle cannot seed its
//! CPU random generator, so initial weights and dropout masks come from our seeded [`Rng`] (a seed then
//! reproduces a run exactly); and the BatchNorm running statistics must be saved and restored with the
//! weights, which is explicit here. `candle_nn::BatchNorm` shares the running-statistic `Var`s we give
//! it and updates them in place in training mode; evaluation mode reads them.

use super::data::Rng;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{BatchNorm, Linear, Module, ModuleT};
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
    pub dropout: f32,
    /// Dropout on the input features (training only).
    pub input_dropout: f32,
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
    linear: Linear,
    norm: BatchNorm,
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
        let get = |name: &str| -> Tensor {
            vars.iter().find(|(n, _)| n == name).expect("every name was just inserted").1.as_tensor().clone()
        };
        let mut blocks = Vec::new();
        for (i, &w) in config.hidden.iter().enumerate() {
            let p = |s: &str| get(&format!("blocks.{i}.{s}"));
            blocks.push(Block {
                linear: Linear::new(p("linear.weight"), Some(p("linear.bias"))),
                norm: BatchNorm::new_with_momentum(
                    w,
                    p("norm.running_mean"),
                    p("norm.running_var"),
                    p("norm.weight"),
                    p("norm.bias"),
                    BATCH_NORM_EPS,
                    BATCH_NORM_MOMENTUM,
                )?,
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
            h = block.linear.forward(&h)?.gelu_erf()?;
            h = block.norm.forward_t(&h, train)?;
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

/// Inverted dropout with a mask from our seeded generator.
fn dropout(x: &Tensor, p: f32, rng: &mut Rng) -> Result<Tensor> {
    let keep = 1.0 / (1.0 - p);
    let mask: Vec<f32> = (0..x.elem_count()).map(|_| if rng.next_f32() < p { 0.0 } else { keep }).collect();
    Ok(x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?)?)
}
