//! CPU kernels for the hot element-wise work of an encoder layer. On other devices the same functions
//! fall back to candle's own ops, so callers never branch on the device.
//!
//! `bias_gelu` fuses the feed-forward bias add into the exact (erf) GELU: one pass over the largest
//! activation of the layer instead of two, in parallel over rows, with an erf that the compiler turns
//! into AVX2/FMA code (libm's scalar `erff` dominated the feed-forward time in profiles).

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
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
        let (CpuStorage::F32(x), CpuStorage::F32(b)) = (s1, s2) else {
            candle_core::bail!("bias-gelu: f32 only")
        };
        let (Some((xs, xe)), Some((bs, be))) = (l1.contiguous_offsets(), l2.contiguous_offsets()) else {
            candle_core::bail!("bias-gelu: contiguous inputs only")
        };
        let (x, bias) = (&x[xs..xe], &b[bs..be]);
        let n = bias.len();
        if n == 0 || x.len() % n != 0 || l1.dims().last() != Some(&n) {
            candle_core::bail!("bias-gelu: bias of {n} does not match input {:?}", l1.dims());
        }
        let mut out = vec![0f32; x.len()];
        // Chunks of whole rows, big enough to amortise the hand-off to another thread.
        let rows_per_chunk = (16384 / n).max(1);
        out.par_chunks_mut(rows_per_chunk * n)
            .zip(x.par_chunks(rows_per_chunk * n))
            .for_each(|(o, x)| {
                for (o, x) in o.chunks_exact_mut(n).zip(x.chunks_exact(n)) {
                    gelu_row(x, bias, o);
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

fn gelu_row(x: &[f32], bias: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { gelu_row_avx2(x, bias, out) };
    }
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
        let v = x + b;
        *o = 0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
    }
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
