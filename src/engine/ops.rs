//! CPU kernels for the hot element-wise work of an encoder layer. On other devices the same functions
//! fall back to candle's own ops, so callers never branch on the device.
//!
//! `bias_gelu` fuses the feed-forward bias add into the exact (erf) GELU: one pass over the largest
//! activation of the layer instead of two, in parallel over rows, with an erf that the compiler turns
//! into AVX2/FMA code (libm's scalar `erff` dominated the feed-forward time in profiles).
//!
//! [`ResidualNorm`] fuses the bias of a dense layer, the residual add and the layer norm after it:
//! one pass per row instead of three over the whole activation.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `gelu_erf(x + bias)` for `x: [rows, n]`, `bias: [n]`.
pub fn bias_gelu(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 && bias.dtype() == DType::F32 {
        x.apply_op2_no_bwd(bias, &BiasGelu)
    } else {
        x.broadcast_add(bias)?.gelu_erf()
    }
}

struct BiasGelu;

impl CustomOp2 for BiasGelu {
    fn name(&self) -> &'static str {
        "bias-gelu"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(x), CpuStorage::F32(b)) = (s1, s2) else { candle_core::bail!("bias-gelu: f32 only") };
        let (Some((xs, xe)), Some((bs, be))) = (l1.contiguous_offsets(), l2.contiguous_offsets()) else {
            candle_core::bail!("bias-gelu: contiguous inputs only")
        };
        let (x, bias) = (&x[xs..xe], &b[bs..be]);
        let n = bias.len();
        if n == 0 || x.len() % n != 0 || l1.dims().last() != Some(&n) {
            candle_core::bail!("bias-gelu: bias of {n} does not match input {:?}", l1.dims());
        }
        let mut out = vec![0f32; x.len()];
        let rows = x.len() / n;
        if rows < super::SMALL_BATCH_ROWS {
            on_team(&mut out, n, |o, first| {
                for (o, x) in o.chunks_exact_mut(n).zip(x[first * n..].chunks_exact(n)) {
                    gelu_row(x, bias, o);
                }
            });
            return Ok((CpuStorage::F32(out), l1.shape().clone()));
        }
        // Chunks of whole rows, big enough to amortise the hand-off to another thread.
        let rows_per_chunk = (16384 / n).max(1);
        out.par_chunks_mut(rows_per_chunk * n).zip(x.par_chunks(rows_per_chunk * n)).for_each(|(o, x)| {
            for (o, x) in o.chunks_exact_mut(n).zip(x.chunks_exact(n)) {
                gelu_row(x, bias, o);
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// `out = gelu(x + bias)` over one row (AVX2 + FMA when the CPU has them). The one GELU kernel of
/// the crate: the rating head's fused op runs it too.
pub fn gelu_row(x: &[f32], bias: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { gelu_row_avx512(x, bias, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { gelu_row_avx2(x, bias, out) };
    }
    gelu_row_portable(x, bias, out)
}

/// Twice the AVX2 version's width (GELU was ~13 % of a bf16 forward pass at batch 1 with AVX2).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gelu_row_avx512(x: &[f32], bias: &[f32], out: &mut [f32]) {
    gelu_row_portable(x, bias, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_row_avx2(x: &[f32], bias: &[f32], out: &mut [f32]) {
    gelu_row_portable(x, bias, out)
}

#[inline(always)]
fn gelu_row_portable(x: &[f32], bias: &[f32], out: &mut [f32]) {
    for ((o, &x), &b) in out.iter_mut().zip(x).zip(bias) {
        *o = gelu(x + b);
    }
}

/// The exact (erf) GELU, `x·Φ(x)`.
#[inline(always)]
pub fn gelu(v: f32) -> f32 {
    0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2))
}

/// `layer_norm(x + bias + residual) * gamma + beta` over the last dimension.
pub struct ResidualNorm {
    /// `[3, n]`: bias, gamma, beta.
    params: Tensor,
    eps: f32,
}

impl ResidualNorm {
    pub fn new(bias: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f32) -> Result<Self> {
        Ok(ResidualNorm { params: Tensor::stack(&[bias, gamma, beta], 0)?, eps })
    }

    /// `x, residual: [rows, n]`.
    pub fn forward(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == DType::F32 && residual.dtype() == DType::F32 {
            x.contiguous()?.apply_op3_no_bwd(&residual.contiguous()?, &self.params, &AddNorm { eps: self.eps })
        } else {
            let sum = (x + residual)?.broadcast_add(&self.params.get(0)?)?;
            candle_nn::ops::layer_norm(&sum, &self.params.get(1)?, &self.params.get(2)?, self.eps)
        }
    }
}

/// Below this many elements the add + layer norm runs on the team (a few microseconds), not rayon.
const SERIAL_BELOW: usize = 1 << 16;

struct AddNorm {
    eps: f32,
}

impl CustomOp3 for AddNorm {
    fn name(&self) -> &'static str {
        "add-layer-norm"
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
        let (CpuStorage::F32(x), CpuStorage::F32(r), CpuStorage::F32(p)) = (s1, s2, s3) else {
            candle_core::bail!("add-layer-norm: f32 only")
        };
        let (Some((xs, xe)), Some((rs, re)), Some((ps, pe))) =
            (l1.contiguous_offsets(), l2.contiguous_offsets(), l3.contiguous_offsets())
        else {
            candle_core::bail!("add-layer-norm: contiguous inputs only")
        };
        let (x, residual, params) = (&x[xs..xe], &r[rs..re], &p[ps..pe]);
        let n = params.len() / 3;
        if n == 0 || params.len() != 3 * n || l1.dims().last() != Some(&n) || l1.dims() != l2.dims() {
            candle_core::bail!(
                "add-layer-norm: shapes {:?}, {:?}, params {:?} do not fit",
                l1.dims(),
                l2.dims(),
                l3.dims()
            );
        }
        let (bias, gamma, beta) = (&params[..n], &params[n..2 * n], &params[2 * n..]);
        let mut out = vec![0f32; x.len()];
        let eps = self.eps;
        let rows = |o: &mut [f32], x: &[f32], r: &[f32]| {
            for ((o, x), r) in o.chunks_exact_mut(n).zip(x.chunks_exact(n)).zip(r.chunks_exact(n)) {
                add_norm_row(x, r, bias, gamma, beta, eps, o);
            }
        };
        if x.len() < SERIAL_BELOW {
            // A short document: split over the team, whose threads are awake between the steps.
            on_team(&mut out, n, |o, first| rows(o, &x[first * n..], &residual[first * n..]));
        } else {
            let chunk = (16384 / n).max(1) * n;
            out.par_chunks_mut(chunk)
                .zip(x.par_chunks(chunk).zip(residual.par_chunks(chunk)))
                .for_each(|(o, (x, r))| rows(o, x, r));
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

fn add_norm_row(x: &[f32], r: &[f32], bias: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { add_norm_row_avx2(x, r, bias, gamma, beta, eps, out) };
    }
    add_norm_row_portable(x, r, bias, gamma, beta, eps, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn add_norm_row_avx2(
    x: &[f32],
    r: &[f32],
    bias: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    out: &mut [f32],
) {
    add_norm_row_portable(x, r, bias, gamma, beta, eps, out)
}

/// Two passes over the row (mean, then the variance of the centred values), which stays accurate
/// when the mean is large compared with the spread.
#[inline(always)]
fn add_norm_row_portable(x: &[f32], r: &[f32], bias: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
    for (((o, &x), &r), &b) in out.iter_mut().zip(x).zip(r).zip(bias) {
        *o = x + r + b;
    }
    let n = out.len() as f32;
    let mean = lane_sum(out, |v| v) / n;
    let var = lane_sum(out, |v| (v - mean) * (v - mean)) / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((o, &g), &b) in out.iter_mut().zip(gamma).zip(beta) {
        *o = (*o - mean) * inv * g + b;
    }
}

/// `Σ f(v)` with 8 independent partial sums, so that it vectorises.
#[inline(always)]
fn lane_sum(v: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            lanes[l] += f(c[l]);
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().map(|&v| f(v)).sum::<f32>()
}

/// `e^x` for `x <= 0`, branch-free so that it vectorises: `x = n ln2 + r`, `e^r` by its Taylor series
/// (|r| <= ln2/2, relative error below 2e-7), `2^n` built in the exponent bits.
#[inline(always)]
pub fn exp_neg(x: f32) -> f32 {
    let x = x.max(-87.0);
    let n = (x * std::f32::consts::LOG2_E).round();
    // ln 2 split in a part exact in f32 and the rest, so `x - n ln2` loses no bits.
    let r = (x - n * 0.693_145_75) - n * 1.428_606_8e-6;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

/// The error function, by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7): ample for
/// embeddings compared at cosine 0.9999, and branch-free.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp_neg(-a * a);
    y.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(shape: (usize, usize), seed: u64) -> Tensor {
        let mut rng = crate::rng::Rng::for_item(seed, 0, 0);
        let data: Vec<f32> = (0..shape.0 * shape.1).map(|_| rng.unit() as f32 * 2.0 - 1.0).collect();
        Tensor::from_vec(data, shape, &candle_core::Device::Cpu).unwrap()
    }

    #[test]
    fn team_product_matches_candle_matmul() -> Result<()> {
        // Column counts below, at and above the team's 16-wide blocks; one row; an odd inner size.
        for (m, k, n) in [(1, 384, 1152), (87, 384, 384), (5, 7, 3), (33, 100, 17), (2, 1536, 50)] {
            let (x, w) = (random((m, k), 1), random((k, n), 2));
            let ours = team_product(&x, &w)?.to_vec2::<f32>()?;
            let theirs = x.matmul(&w)?.to_vec2::<f32>()?;
            for (a, b) in ours.iter().flatten().zip(theirs.iter().flatten()) {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{m}x{k}x{n}: {a} vs {b}");
            }
        }
        // Shapes that do not fit are errors, not panics.
        assert!(team_product(&random((3, 4), 3), &random((5, 2), 4)).is_err());
        Ok(())
    }

    #[test]
    fn erf_matches_libm() {
        let mut worst = 0f32;
        for i in -6000..=6000 {
            let x = i as f32 / 1000.0;
            worst = worst.max((erf(x) - libm_erf(x)).abs());
        }
        // A&S bound (1.5e-7) plus f32 rounding of the intermediate steps.
        assert!(worst < 1e-6, "worst absolute error {worst}");
    }

    /// libm's double-precision erf, as shipped by candle.
    fn libm_erf(x: f32) -> f32 {
        candle_core::cpu::erf::erf_f64(x as f64) as f32
    }

    #[test]
    fn exp_neg_is_accurate() {
        for i in 0..=8700 {
            let x = -(i as f32) / 100.0;
            let want = (x as f64).exp();
            let got = exp_neg(x) as f64;
            assert!(((got - want) / want).abs() < 5e-7, "x={x} got {got} want {want}");
        }
    }

    #[test]
    fn residual_norm_matches_candle_and_f64() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        // 390 columns: not a multiple of 8, so the remainder path runs too. The residual's offset makes
        // the mean large against the spread, where a one-pass variance loses digits.
        let (rows, n) = (45, 390);
        let x = Tensor::randn(0f32, 2.0, (rows, n), &dev)?;
        let residual = (Tensor::randn(0f32, 1.0, (rows, n), &dev)? + 5.0)?;
        let bias = Tensor::randn(0f32, 0.5, n, &dev)?;
        let gamma = Tensor::randn(1f32, 0.2, n, &dev)?;
        let beta = Tensor::randn(0f32, 0.2, n, &dev)?;
        let fused = ResidualNorm::new(&bias, &gamma, &beta, 1e-12)?.forward(&x, &residual)?;
        let plain = candle_nn::ops::layer_norm(&(&x + &residual)?.broadcast_add(&bias)?, &gamma, &beta, 1e-12)?;
        let diff = (&fused - plain)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-4, "max difference from candle {diff}");

        // The same in f64, by hand.
        let (x, r) = (x.to_vec2::<f32>()?, residual.to_vec2::<f32>()?);
        let (b, g, be) = (bias.to_vec1::<f32>()?, gamma.to_vec1::<f32>()?, beta.to_vec1::<f32>()?);
        let fused = fused.to_vec2::<f32>()?;
        let mut worst = 0f64;
        for i in 0..rows {
            let v: Vec<f64> = (0..n).map(|k| x[i][k] as f64 + r[i][k] as f64 + b[k] as f64).collect();
            let mean = v.iter().sum::<f64>() / n as f64;
            let var = v.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
            for k in 0..n {
                let want = (v[k] - mean) / (var + 1e-12).sqrt() * g[k] as f64 + be[k] as f64;
                worst = worst.max((fused[i][k] as f64 - want).abs());
            }
        }
        assert!(worst < 3e-6, "max difference from f64 {worst}");
        Ok(())
    }

    #[test]
    fn fused_op_matches_candle() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let x = Tensor::randn(0f32, 3.0, (37, 70), &dev)?;
        let b = Tensor::randn(0f32, 1.0, 70, &dev)?;
        let fused = bias_gelu(&x, &b)?;
        let plain = x.broadcast_add(&b)?.gelu_erf()?;
        let diff = (fused - plain)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "max difference {diff}");
        Ok(())
    }
}

/// A pointer to an output buffer shared by workers that write disjoint parts of it.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(pub *mut f32);
// SAFETY: every user writes a part of the buffer no other worker touches, while the buffer lives.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The pointer (a method, so that closures capture the whole `Sync` wrapper, not the field).
    pub fn get(self) -> *mut f32 {
        self.0
    }
}

/// Split `out` (rows of `n`) into one block of whole rows per team thread and run
/// `f(block, first_row)` on each, in parallel on [`super::team`].
fn on_team(out: &mut [f32], n: usize, f: impl Fn(&mut [f32], usize) + Sync) {
    let rows = out.len() / n;
    let team = super::team::get();
    let per = rows.div_ceil(team.size()).max(1);
    let blocks = rows.div_ceil(per);
    let base = SharedOut(out.as_mut_ptr());
    team.for_each(blocks, &|b| {
        let first = b * per;
        let count = per.min(rows - first);
        // SAFETY: block b covers rows first..first + count, inside `out` and disjoint from the
        // other blocks; `out` outlives `for_each`.
        let block = unsafe { std::slice::from_raw_parts_mut(base.get().add(first * n), count * n) };
        f(block, first)
    });
}

/// `x W` for a few rows (`x: [m, k]`, `w: [k, n]`, both contiguous; `W` is a layer's transposed
/// weight): the columns are split over the team, each part one single-threaded `gemm` call.
/// Elsewhere (other devices, dtypes or layouts) candle's `matmul`.
pub fn team_product(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 && w.dtype() == DType::F32 && x.rank() == 2 {
        x.contiguous()?.apply_op2_no_bwd(w, &TeamProduct)
    } else {
        x.matmul(w)
    }
}

struct TeamProduct;

impl CustomOp2 for TeamProduct {
    fn name(&self) -> &'static str {
        "team-product"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(x), CpuStorage::F32(w)) = (s1, s2) else { candle_core::bail!("team-product: f32 only") };
        let (Some((xs, xe)), Some((ws, we))) = (l1.contiguous_offsets(), l2.contiguous_offsets()) else {
            candle_core::bail!("team-product: contiguous inputs only")
        };
        let (&[m, k], &[k2, n]) = (l1.dims(), l2.dims()) else {
            candle_core::bail!("team-product: [m, k] x [k, n] only, got {:?} x {:?}", l1.dims(), l2.dims())
        };
        if k != k2 {
            candle_core::bail!("team-product: inner sizes differ, {k} and {k2}");
        }
        let (x, w) = (&x[xs..xe], &w[ws..we]);
        if m == 0 || n == 0 || k == 0 {
            return Ok((CpuStorage::F32(vec![0f32; m * n]), Shape::from((m, n))));
        }
        // Not zero-filled: `gemm` (without `read_dst`) writes every element, and the length is set
        // only after it has (a memset of the output was ~2 % of a one-document forward pass).
        let mut out: Vec<f32> = Vec::with_capacity(m * n);
        let team = super::team::get();
        // Column blocks a multiple of 16 wide (the kernels' register tile), one per thread.
        let width = n.div_ceil(team.size()).div_ceil(16).max(1) * 16;
        let blocks = n.div_ceil(width);
        let dst = SharedOut(out.as_mut_ptr());
        team.for_each(blocks, &|b| {
            let c0 = b * width;
            let cols = width.min(n - c0);
            // SAFETY: block b reads columns c0..c0 + cols of `w` ([k, n]) and writes the same
            // columns of `out` ([m, n]); blocks are disjoint, every pointer stays inside its buffer.
            unsafe {
                gemm::gemm(
                    m,
                    cols,
                    k,
                    dst.get().add(c0),
                    1,
                    n as isize,
                    false,
                    x.as_ptr(),
                    1,
                    k as isize,
                    w.as_ptr().add(c0),
                    1,
                    n as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                )
            }
        });
        // SAFETY: the blocks cover columns 0..n of every row, all written by `gemm` above.
        unsafe { out.set_len(m * n) };
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }
}
