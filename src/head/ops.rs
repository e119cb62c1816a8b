//! Fused CPU kernels for training the head: bias + GELU and batch normalisation (with its affine
//! part), each one pass forward and one pass backward.
//!
//! candle composes both from generic element-wise ops (GELU's backward alone is about ten of them),
//! and the backward of every broadcast bias is a column sum that candle runs as a strided reduction;
//! on a `[4096, 256]` activation those passes, not the matrix products, took most of a training step.
//! Off the CPU, or for other dtypes, the same functions fall back to candle's own ops.

use crate::engine::ops::{erf, exp_neg};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// Rows handed to one rayon task: big enough to amortise the hand-off.
const ROWS_PER_TASK: usize = 64;

fn fast_path(x: &Tensor, vectors: &[&Tensor]) -> bool {
    x.device().is_cpu()
        && x.dtype() == DType::F32
        && x.rank() == 2
        && vectors.iter().all(|v| v.dtype() == DType::F32 && v.dims() == [x.dims()[1]])
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { candle_core::bail!("{op}: f32 only") };
    let Some((start, end)) = l.contiguous_offsets() else { candle_core::bail!("{op}: contiguous input only") };
    Ok(&v[start..end])
}

/// Per-column sums of a row-major `[rows, cols]` slice, in f64.
fn column_sums(x: &[f32], cols: usize, f: impl Fn(usize, f32) -> f32 + Sync) -> Vec<f64> {
    x.par_chunks(ROWS_PER_TASK * cols)
        .map(|chunk| {
            let mut s = vec![0f64; cols];
            for row in chunk.chunks_exact(cols) {
                for (j, (s, &v)) in s.iter_mut().zip(row).enumerate() {
                    *s += f(j, v) as f64;
                }
            }
            s
        })
        .reduce(|| vec![0f64; cols], |a, b| a.iter().zip(&b).map(|(a, b)| a + b).collect())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The kernels never panic while holding the lock; a poisoned lock still holds valid data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------------
// bias + GELU

/// `gelu_erf(x + bias)` for `x: [rows, n]`, `bias: [n]`, differentiable in both.
pub fn bias_gelu(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if fast_path(x, &[bias]) {
        x.contiguous()?.apply_op2(&bias.contiguous()?, BiasGelu)
    } else {
        x.broadcast_add(bias)?.gelu_erf()
    }
}

/// d/dx of x·Φ(x) = Φ(x) + x·φ(x).
#[inline(always)]
fn gelu_slope(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)) + x * INV_SQRT_2PI * exp_neg(-0.5 * x * x)
}

/// Row by row with the engine's GELU kernel (the one GELU of the crate).
fn gelu_rows(x: &[f32], bias: &[f32], out: &mut [f32]) {
    for (o, x) in out.chunks_exact_mut(bias.len()).zip(x.chunks_exact(bias.len())) {
        crate::engine::ops::gelu_row(x, bias, o);
    }
}

#[inline(always)]
fn gelu_grad_rows(x: &[f32], bias: &[f32], g: &[f32], out: &mut [f32]) {
    let n = bias.len();
    for ((o, x), g) in out.chunks_exact_mut(n).zip(x.chunks_exact(n)).zip(g.chunks_exact(n)) {
        for (((o, &x), &b), &g) in o.iter_mut().zip(x).zip(bias).zip(g) {
            *o = g * gelu_slope(x + b);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_grad_rows_avx2(x: &[f32], bias: &[f32], g: &[f32], out: &mut [f32]) {
    gelu_grad_rows(x, bias, g, out)
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
    #[allow(unreachable_code)]
    false
}

struct BiasGelu;

impl CustomOp2 for BiasGelu {
    fn name(&self) -> &'static str {
        "head-bias-gelu"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, bias) = (slice(s1, l1, self.name())?, slice(s2, l2, self.name())?);
        let step = ROWS_PER_TASK * bias.len();
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(step).zip(x.par_chunks(step)).for_each(|(o, x)| gelu_rows(x, bias, o));
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, bias: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let bias_grad = Arc::new(Mutex::new(Vec::new()));
        let dx = x.apply_op3_no_bwd(bias, &grad.contiguous()?, &BiasGeluGrad { bias_grad: bias_grad.clone() })?;
        let db = lock(&bias_grad).clone();
        let db = Tensor::from_vec(db, bias.dims(), bias.device())?;
        Ok((Some(dx), Some(db)))
    }
}

/// `dx = g · gelu'(x + bias)`; the bias gradient (column sums of `dx`) is left in `bias_grad`.
struct BiasGeluGrad {
    bias_grad: Arc<Mutex<Vec<f32>>>,
}

impl CustomOp3 for BiasGeluGrad {
    fn name(&self) -> &'static str {
        "head-bias-gelu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, bias, g) = (slice(s1, l1, self.name())?, slice(s2, l2, self.name())?, slice(s3, l3, self.name())?);
        if x.len() != g.len() {
            candle_core::bail!("{}: {} values and {} gradients", self.name(), x.len(), g.len());
        }
        let step = ROWS_PER_TASK * bias.len();
        let mut out = vec![0f32; x.len()];
        let avx2 = has_avx2();
        out.par_chunks_mut(step).zip(x.par_chunks(step).zip(g.par_chunks(step))).for_each(|(o, (x, g))| {
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                // SAFETY: the CPU supports the features the function is compiled for.
                return unsafe { gelu_grad_rows_avx2(x, bias, g, o) };
            }
            let _ = avx2;
            gelu_grad_rows(x, bias, g, o)
        });
        *lock(&self.bias_grad) = column_sums(&out, bias.len(), |_, v| v).iter().map(|&s| s as f32).collect();
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

// ---------------------------------------------------------------------------------------------------
// Batch normalisation (training mode)

/// Batch statistics of one normalisation: per-feature mean and biased variance.
#[derive(Debug, Clone, Default)]
pub struct BatchStats {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
}

/// `weight · (x − mean) / √(var + eps) + bias` for `x: [rows, features]`, normalised with its own
/// batch statistics, differentiable in all three; also returns the statistics (for running averages).
pub fn batch_norm_train(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<(Tensor, BatchStats)> {
    if fast_path(x, &[weight, bias]) {
        let stats = Arc::new(Mutex::new(BatchStats::default()));
        let op = BatchNorm { eps: eps as f32, stats: stats.clone() };
        let y = x.contiguous()?.apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?;
        let stats = lock(&stats).clone();
        Ok((y, stats))
    } else {
        let mean = x.mean_keepdim(0)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(0)?;
        let y = centred.broadcast_div(&(&var + eps)?.sqrt()?)?.broadcast_mul(weight)?.broadcast_add(bias)?;
        let stats = BatchStats { mean: mean.squeeze(0)?.to_vec1()?, var: var.squeeze(0)?.to_vec1()? };
        Ok((y, stats))
    }
}

struct BatchNorm {
    eps: f32,
    /// Filled by the forward pass; read by the caller (running statistics) and the backward pass.
    stats: Arc<Mutex<BatchStats>>,
}

impl BatchNorm {
    fn inv_std(&self) -> Vec<f32> {
        lock(&self.stats).var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect()
    }
}

impl CustomOp3 for BatchNorm {
    fn name(&self) -> &'static str {
        "head-batch-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (slice(s1, l1, self.name())?, slice(s2, l2, self.name())?, slice(s3, l3, self.name())?);
        let (rows, cols) = (l1.dims()[0], l1.dims()[1]);
        if rows < 2 {
            candle_core::bail!("batch normalisation needs at least two rows, got {:?}", l1.dims());
        }
        let mean: Vec<f32> = column_sums(x, cols, |_, v| v).iter().map(|s| (s / rows as f64) as f32).collect();
        let var: Vec<f32> = column_sums(x, cols, |j, v| (v - mean[j]) * (v - mean[j]))
            .iter()
            .map(|s| (s / rows as f64) as f32)
            .collect();
        // y = x · scale + shift, with scale = w / √(var + eps), shift = b − mean · scale.
        let scale: Vec<f32> = var.iter().zip(w).map(|(v, w)| w / (v + self.eps).sqrt()).collect();
        let shift: Vec<f32> = b.iter().zip(&mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(ROWS_PER_TASK * cols).zip(x.par_chunks(ROWS_PER_TASK * cols)).for_each(|(o, x)| {
            for (o, x) in o.chunks_exact_mut(cols).zip(x.chunks_exact(cols)) {
                for (((o, &x), &s), &t) in o.iter_mut().zip(x).zip(&scale).zip(&shift) {
                    *o = x * s + t;
                }
            }
        });
        *lock(&self.stats) = BatchStats { mean, var };
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let sums = Arc::new(Mutex::new((Vec::new(), Vec::new())));
        let mean = lock(&self.stats).mean.clone();
        let op = BatchNormGrad { mean, inv_std: self.inv_std(), sums: sums.clone() };
        let dx = x.apply_op3_no_bwd(weight, &grad.contiguous()?, &op)?;
        let (dw, db) = lock(&sums).clone();
        let dw = Tensor::from_vec(dw, weight.dims(), weight.device())?;
        let db = Tensor::from_vec(db, weight.dims(), weight.device())?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// With `x̂ = (x − mean) · inv_std`: `dbias = Σ g`, `dweight = Σ g · x̂`, and
/// `dx = weight · inv_std · (g − mean(g) − x̂ · mean(g · x̂))`, per feature.
struct BatchNormGrad {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    /// (dweight, dbias), filled by the pass.
    sums: Arc<Mutex<(Vec<f32>, Vec<f32>)>>,
}

impl CustomOp3 for BatchNormGrad {
    fn name(&self) -> &'static str {
        "head-batch-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, g) = (slice(s1, l1, self.name())?, slice(s2, l2, self.name())?, slice(s3, l3, self.name())?);
        let cols = self.inv_std.len();
        if x.len() != g.len() || l1.dims()[1] != cols {
            candle_core::bail!("{}: shapes {:?} and {:?}", self.name(), l1.dims(), l3.dims());
        }
        let rows = (x.len() / cols) as f64;
        let step = ROWS_PER_TASK * cols;
        let (mean, inv_std) = (&self.mean, &self.inv_std);
        let (sum_g, sum_gx) = g
            .par_chunks(step)
            .zip(x.par_chunks(step))
            .map(|(g, x)| {
                let (mut sg, mut sgx) = (vec![0f64; cols], vec![0f64; cols]);
                for (gr, xr) in g.chunks_exact(cols).zip(x.chunks_exact(cols)) {
                    for j in 0..cols {
                        sg[j] += gr[j] as f64;
                        sgx[j] += (gr[j] * (xr[j] - mean[j]) * inv_std[j]) as f64;
                    }
                }
                (sg, sgx)
            })
            .reduce(
                || (vec![0f64; cols], vec![0f64; cols]),
                |a, b| {
                    let add = |p: &[f64], q: &[f64]| p.iter().zip(q).map(|(p, q)| p + q).collect::<Vec<_>>();
                    (add(&a.0, &b.0), add(&a.1, &b.1))
                },
            );
        let mean_g: Vec<f32> = sum_g.iter().map(|s| (s / rows) as f32).collect();
        let mean_gx: Vec<f32> = sum_gx.iter().map(|s| (s / rows) as f32).collect();
        let k: Vec<f32> = w.iter().zip(inv_std).map(|(w, s)| w * s).collect();
        let mut out = vec![0f32; g.len()];
        out.par_chunks_mut(step).zip(x.par_chunks(step).zip(g.par_chunks(step))).for_each(|(o, (x, g))| {
            for ((o, x), g) in o.chunks_exact_mut(cols).zip(x.chunks_exact(cols)).zip(g.chunks_exact(cols)) {
                for j in 0..cols {
                    let xhat = (x[j] - mean[j]) * inv_std[j];
                    o[j] = k[j] * (g[j] - mean_g[j] - xhat * mean_gx[j]);
                }
            }
        });
        let to_f32 = |v: Vec<f64>| v.into_iter().map(|s| s as f32).collect::<Vec<f32>>();
        *lock(&self.sums) = (to_f32(sum_gx), to_f32(sum_g));
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn bias_gelu_and_its_gradients_match_candle() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 2.5, (133, 70), &dev)?)?;
        let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, 70, &dev)?)?;
        let w = Tensor::randn(0f32, 1.0, (133, 70), &dev)?;
        let ours = bias_gelu(x.as_tensor(), b.as_tensor())?;
        let theirs = x.as_tensor().broadcast_add(b.as_tensor())?.gelu_erf()?;
        assert!(max_diff(&ours, &theirs) < 1e-5);
        let g1 = (ours * &w)?.sum_all()?.backward()?;
        let g2 = (theirs * &w)?.sum_all()?.backward()?;
        let dx = max_diff(g1.get(&x).unwrap(), g2.get(&x).unwrap());
        let db = max_diff(g1.get(&b).unwrap(), g2.get(&b).unwrap());
        assert!(dx < 1e-5 && db < 1e-4, "gradients differ by {dx} (x) and {db} (bias)");
        Ok(())
    }

    #[test]
    fn batch_norm_and_its_gradients_match_candle_nn() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&(Tensor::randn(0f32, 3.0, (150, 12), &dev)? + 1.5)?)?;
        let gamma = Var::from_tensor(&Tensor::randn(1f32, 0.3, 12, &dev)?)?;
        let beta = Var::from_tensor(&Tensor::randn(0f32, 0.3, 12, &dev)?)?;
        let w = Tensor::randn(0f32, 1.0, (150, 12), &dev)?;
        let (ours, stats) = batch_norm_train(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), 1e-5)?;
        let bn = candle_nn::BatchNorm::new_with_momentum(
            12,
            Tensor::zeros(12, DType::F32, &dev)?,
            Tensor::ones(12, DType::F32, &dev)?,
            gamma.as_tensor().clone(),
            beta.as_tensor().clone(),
            1e-5,
            0.1,
        )?;
        let theirs = candle_nn::ModuleT::forward_t(&bn, x.as_tensor(), true)?;
        assert!(max_diff(&ours, &theirs) < 1e-5);
        // candle-nn's running mean after one step from 0 with momentum 0.1 is 0.1 × the batch mean.
        for (r, m) in bn.running_mean().to_vec1::<f32>()?.iter().zip(&stats.mean) {
            assert!((r - 0.1 * m).abs() < 1e-5);
        }
        let g1 = (ours * &w)?.sum_all()?.backward()?;
        let g2 = (theirs * &w)?.sum_all()?.backward()?;
        for (name, v) in [("x", &x), ("weight", &gamma), ("bias", &beta)] {
            let d = max_diff(g1.get(v).unwrap(), g2.get(v).unwrap());
            assert!(d < 1e-4, "gradient of {name} differs by {d}");
        }
        Ok(())
    }
}
