//! Reduced-precision dense products on the CPU: `x W^T` with the weight stored in bf16 or int8 and
//! the activations converted on the fly, accumulated in f32 (bf16) or i32 (int8, then scaled to f32).
//!
//! Why hand-written kernels: the `gemm` crate (0.19) has no bf16 or int8 arithmetic (its f16 path
//! converts to f32 and runs the f32 kernels), and candle's bf16 CPU products are scalar. The two
//! instructions used here are in `std::arch` (stable since Rust 1.89):
//! - bf16: `vdpbf16ps` (AVX512-BF16), 16 lanes × a pair of bf16 products added into f32: twice the
//!   f32 FMA's work per instruction;
//! - int8: `vpdpbusd` (AVX512-VNNI), 16 lanes × four u8·i8 products added into i32: four times.
//!
//! Both kernels share one layout. The weight `[n, k]` is packed once, at load, into panels of
//! [`NR`] = 64 output columns; within a panel, for each group of `G` consecutive inner indices (2 for
//! bf16, 4 for int8) the 64 columns' values sit side by side, `G` per 32-bit lane, so one 512-bit load
//! gives 16 columns × one group. The activations `[m, k]` are converted row by row into the same
//! groups, and a register tile of up to [`MR`] = 6 rows × 64 columns (24 accumulators) broadcasts one
//! group of a row against four loaded weight vectors. `n` and `k` are padded with zeros to whole
//! panels and groups; the edge tiles store with masks. Each (row chunk, panel) pair is one item of
//! work on the [`super::team`].
//!
//! int8 quantisation: weights symmetric per output channel (`w ≈ s_n q`, `q ∈ [-127, 127]`);
//! activations asymmetric per row (`a ≈ s_r (u - z_r)`, `u ∈ [0, 255]`), so that the unsigned
//! operand of `vpdpbusd` uses its whole range (GELU outputs are almost all positive). Then
//! `Σ a w ≈ s_r s_n (Σ u q - z_r Σ q)`, with `Σ_k q` kept per column.
//!
//! On processors without these instructions [`CpuPrecision::available`] is false and the model keeps
//! its f32 weights: the f32 path is then exactly today's.

#[cfg(target_arch = "x86_64")]
mod bf16;
#[cfg(target_arch = "x86_64")]
mod int8;

use super::ops::SharedOut;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

/// Output columns per panel (four 16-lane vectors).
pub const NR: usize = 64;
/// Most rows in a register tile.
pub const MR: usize = 6;
/// Rows per item of parallel work (a multiple of [`MR`]).
const ROWS_PER_ITEM: usize = 8 * MR;

/// The number format of a CPU model's dense products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuPrecision {
    /// Today's path: f32 weights, `gemm`'s f32 kernels.
    F32,
    /// bf16 weights and activations, f32 accumulation (AVX512-BF16).
    Bf16,
    /// int8 weights (per-channel scales) and activations (per-row scales), i32 accumulation
    /// (AVX512-VNNI).
    Int8,
}

impl CpuPrecision {
    pub fn name(self) -> &'static str {
        match self {
            CpuPrecision::F32 => "f32",
            CpuPrecision::Bf16 => "bf16",
            CpuPrecision::Int8 => "int8",
        }
    }

    /// The instruction sets the kernels need, for messages.
    pub fn instructions(self) -> &'static str {
        match self {
            CpuPrecision::F32 => "nothing",
            CpuPrecision::Bf16 => "AVX512F and AVX512-BF16",
            CpuPrecision::Int8 => "AVX512F, AVX512BW and AVX512-VNNI",
        }
    }

    /// Whether this processor has the instructions the kernels need.
    pub fn available(self) -> bool {
        match self {
            CpuPrecision::F32 => true,
            #[cfg(target_arch = "x86_64")]
            CpuPrecision::Bf16 => {
                std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bf16")
            }
            #[cfg(target_arch = "x86_64")]
            CpuPrecision::Int8 => {
                std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// What `--dtype auto` runs on this processor: bf16 where the processor has it, else f32.
    /// int8 is never chosen automatically: it is the fastest, but its embeddings are further from
    /// f32 ones (see README, "CPU number formats").
    pub fn auto() -> CpuPrecision {
        if CpuPrecision::Bf16.available() {
            CpuPrecision::Bf16
        } else {
            CpuPrecision::F32
        }
    }
}

enum Packed {
    #[cfg(target_arch = "x86_64")]
    Bf16(bf16::Weights),
    #[cfg(target_arch = "x86_64")]
    Int8(int8::Weights),
}

/// A dense layer's weight packed for one of the reduced-precision kernels.
pub struct PackedWeight {
    packed: Packed,
    /// Output columns.
    n: usize,
    /// Inner size.
    k: usize,
}

impl PackedWeight {
    /// Pack a `[n, k]` f32 weight (the stored layout, `out × in`) for `precision`. `None` for f32, or
    /// when the processor lacks the instructions.
    pub fn pack(weight: &Tensor, precision: CpuPrecision) -> Result<Option<PackedWeight>> {
        if precision == CpuPrecision::F32 || !precision.available() || !weight.device().is_cpu() {
            return Ok(None);
        }
        let (n, k) = weight.dims2()?;
        let w = weight.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let packed = match precision {
            #[cfg(target_arch = "x86_64")]
            CpuPrecision::Bf16 => Packed::Bf16(bf16::Weights::pack(&w, n, k)),
            #[cfg(target_arch = "x86_64")]
            CpuPrecision::Int8 => Packed::Int8(int8::Weights::pack(&w, n, k)),
            _ => unreachable!("not available here"),
        };
        Ok(Some(PackedWeight { packed, n, k }))
    }

    /// Bytes held by the packed weight.
    pub fn bytes(&self) -> usize {
        match &self.packed {
            #[cfg(target_arch = "x86_64")]
            Packed::Bf16(w) => w.bytes(),
            #[cfg(target_arch = "x86_64")]
            Packed::Int8(w) => w.bytes(),
        }
    }

    /// `x W^T` for `x: [m, k]` f32: `[m, n]` f32.
    pub fn product(&self, x: &Tensor) -> Result<Tensor> {
        x.contiguous()?.apply_op1_no_bwd(self)
    }

    /// The product on plain slices: `x` is `[m, k]` row-major, the result `[m, n]`.
    pub fn product_slice(&self, x: &[f32], m: usize) -> Vec<f32> {
        let (n, k) = (self.n, self.k);
        assert_eq!(x.len(), m * k, "input is not [{m}, {k}]");
        let mut out: Vec<f32> = Vec::with_capacity(m * n);
        if m == 0 || n == 0 {
            return out;
        }
        let dst = SharedOut(out.as_mut_ptr());
        match &self.packed {
            // SAFETY (both arms): `dst` has room for `m * n` floats, and each item writes only its
            // own rows × panel columns, which no other item touches.
            #[cfg(target_arch = "x86_64")]
            Packed::Bf16(w) => {
                let a = bf16::Activations::convert(x, m, k);
                on_items(m, w.panels(), &|rows, panel| unsafe { w.tile(&a, rows, panel, dst.get(), n) });
            }
            #[cfg(target_arch = "x86_64")]
            Packed::Int8(w) => {
                let a = int8::Activations::quantize(x, m, k);
                on_items(m, w.panels(), &|rows, panel| unsafe { w.tile(&a, rows, panel, dst.get(), n) });
            }
        }
        // SAFETY: the items cover every row and every column (the panels cover 0..n) once.
        unsafe { out.set_len(m * n) };
        out
    }
}

/// Run `f(rows, panel)` for every chunk of rows and every panel, on the team. Panel-major, so that
/// the threads share the panel being read while the chunks of the activations stream past.
fn on_items(m: usize, panels: usize, f: &(dyn Fn(std::ops::Range<usize>, usize) + Sync)) {
    let chunks = m.div_ceil(ROWS_PER_ITEM);
    super::team::get().for_each(chunks * panels, &|i| {
        let (panel, chunk) = (i / chunks, i % chunks);
        let r0 = chunk * ROWS_PER_ITEM;
        f(r0..(r0 + ROWS_PER_ITEM).min(m), panel)
    });
}

impl CustomOp1 for PackedWeight {
    fn name(&self) -> &'static str {
        "lowp-product"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(x) = s else { candle_core::bail!("lowp-product: f32 input only") };
        let Some((start, end)) = l.contiguous_offsets() else {
            candle_core::bail!("lowp-product: contiguous input only")
        };
        let &[m, k] = l.dims() else { candle_core::bail!("lowp-product: input must be [m, k], got {:?}", l.dims()) };
        if k != self.k {
            candle_core::bail!("lowp-product: input has {k} columns, the weight {}", self.k);
        }
        Ok((CpuStorage::F32(self.product_slice(&x[start..end], m)), Shape::from((m, self.n))))
    }
}

/// Columns of panel `panel` that exist in an `n`-column output.
#[inline]
fn panel_cols(panel: usize, n: usize) -> usize {
    NR.min(n - panel * NR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn random(len: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut rng = crate::rng::Rng::for_item(seed, 0, 0);
        (0..len).map(|_| (rng.unit() as f32 * 2.0 - 1.0) * scale).collect()
    }

    /// `x W^T` in f64 from f32 inputs.
    fn reference(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
        let mut out = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|t| x[i * k + t] as f64 * w[j * k + t] as f64).sum();
            }
        }
        out
    }

    fn bf16_round(v: f32) -> f32 {
        half::bf16::from_f32(v).to_f32()
    }

    /// Shapes around the tile sizes: one row, rows not a multiple of MR or of a work item, columns
    /// not a multiple of 16 or of a panel, odd inner sizes (bf16 pairs) and ones not a multiple of
    /// 4 (int8 groups), and the model's own shapes.
    const SHAPES: [(usize, usize, usize); 11] = [
        (1, 1, 1),
        (1, 384, 1152),
        (5, 7, 3),
        (7, 13, 17),
        (6, 64, 64),
        (13, 33, 65),
        (49, 129, 130),
        (87, 384, 384),
        (97, 1536, 384),
        (300, 384, 1536),
        (2, 3, 200),
    ];

    #[test]
    fn bf16_product_matches_f32_on_odd_shapes() {
        if !CpuPrecision::Bf16.available() {
            eprintln!("skipped: this CPU has no AVX512-BF16");
            return;
        }
        for (m, k, n) in SHAPES {
            let (x, w) = (random(m * k, 1, 1.0), random(n * k, 2, 0.1));
            let packed = PackedWeight::pack(&Tensor::from_slice(&w, (n, k), &Device::Cpu).unwrap(), CpuPrecision::Bf16)
                .unwrap()
                .unwrap();
            let got = packed.product_slice(&x, m);
            // Against the exact product of the bf16-rounded inputs: only f32 accumulation error.
            let (xr, wr): (Vec<f32>, Vec<f32>) =
                (x.iter().map(|&v| bf16_round(v)).collect(), w.iter().map(|&v| bf16_round(v)).collect());
            let exact = reference(&xr, &wr, m, n, k);
            // Against the f32 inputs: bf16's 8-bit mantissa, relative to the size of the terms.
            let full = reference(&x, &w, m, n, k);
            let bound = 0.1 * (k as f64).sqrt();
            for i in 0..m * n {
                let (g, e, f) = (got[i] as f64, exact[i], full[i]);
                assert!(
                    (g - e).abs() <= 1e-5 * (1.0 + e.abs()) + 1e-6 * k as f64 * 0.1,
                    "{m}x{k}x{n} [{i}]: {g} vs exact {e}"
                );
                assert!((g - f).abs() <= 2f64.powi(-8) * bound, "{m}x{k}x{n} [{i}]: {g} vs f32 {f}");
            }
        }
    }

    #[test]
    fn int8_product_matches_f32_on_odd_shapes() {
        if !CpuPrecision::Int8.available() {
            eprintln!("skipped: this CPU has no AVX512-VNNI");
            return;
        }
        for (m, k, n) in SHAPES {
            // Activations shifted so that rows are not centred on zero (the zero point matters).
            let x: Vec<f32> = random(m * k, 3, 1.0).iter().map(|v| v + 0.3).collect();
            let w = random(n * k, 4, 0.1);
            let packed = PackedWeight::pack(&Tensor::from_slice(&w, (n, k), &Device::Cpu).unwrap(), CpuPrecision::Int8)
                .unwrap()
                .unwrap();
            let got = packed.product_slice(&x, m);
            let full = reference(&x, &w, m, n, k);
            // Quantisation steps: activations (range ≤ 2.6)/255, weights 0.1/127; errors add up
            // like a random walk over k terms; the bound is 4 standard deviations of it.
            let (da, dw) = (2.6 / 255.0, 0.1 / 127.0);
            let sd = ((k as f64) * ((da * 0.1f64).powi(2) + (dw * 1.3f64).powi(2)) / 12.0).sqrt();
            let mut worst = 0f64;
            for i in 0..m * n {
                let err = (got[i] as f64 - full[i]).abs();
                worst = worst.max(err / (4.0 * sd + 1e-6));
            }
            assert!(worst <= 1.0, "{m}x{k}x{n}: worst error {worst:.2} × the bound");
        }
    }

    #[test]
    fn the_tensor_op_checks_shapes() {
        let w = Tensor::from_slice(&random(6 * 8, 5, 1.0), (6, 8), &Device::Cpu).unwrap();
        for precision in [CpuPrecision::Bf16, CpuPrecision::Int8] {
            let Some(packed) = PackedWeight::pack(&w, precision).unwrap() else { continue };
            let x = Tensor::from_slice(&random(3 * 8, 6, 1.0), (3, 8), &Device::Cpu).unwrap();
            assert_eq!(packed.product(&x).unwrap().dims(), [3, 6]);
            // A transposed (non-contiguous) input is made contiguous first.
            let xt = Tensor::from_slice(&random(3 * 8, 6, 1.0), (8, 3), &Device::Cpu).unwrap().t().unwrap();
            let want = packed.product(&xt.contiguous().unwrap()).unwrap().to_vec2::<f32>().unwrap();
            assert_eq!(packed.product(&xt).unwrap().to_vec2::<f32>().unwrap(), want);
            let wrong = Tensor::zeros((3, 7), candle_core::DType::F32, &Device::Cpu).unwrap();
            assert!(packed.product(&wrong).is_err());
        }
        assert!(PackedWeight::pack(&w, CpuPrecision::F32).unwrap().is_none());
    }

    /// Kernel speed against `gemm`'s f32 on the model's shapes (`cargo test --release --lib
    /// lowp::tests::speed -- --ignored --nocapture`).
    #[test]
    #[ignore = "a benchmark"]
    fn speed() {
        for (m, k, n) in [(87, 384, 1152), (87, 384, 1536), (87, 1536, 384), (2784, 384, 1536), (2784, 1536, 384)] {
            let (x, w) = (random(m * k, 1, 1.0), random(n * k, 2, 0.1));
            let wt = Tensor::from_slice(&w, (n, k), &Device::Cpu).unwrap();
            let xt = Tensor::from_slice(&x, (m, k), &Device::Cpu).unwrap();
            let w_t = wt.t().unwrap().contiguous().unwrap();
            let flop = 2.0 * (m * n * k) as f64;
            let time = |f: &dyn Fn()| {
                f();
                let reps = (2e10 / flop).clamp(3.0, 2000.0) as usize;
                let t = std::time::Instant::now();
                for _ in 0..reps {
                    f();
                }
                flop * reps as f64 / t.elapsed().as_secs_f64() / 1e9
            };
            let f32_gf = time(&|| {
                if m < crate::engine::SMALL_BATCH_ROWS {
                    crate::engine::ops::team_product(&xt, &w_t).unwrap();
                } else {
                    xt.matmul(&wt.t().unwrap()).unwrap();
                }
            });
            let mut line = format!("{m:>5}x{k:>5}x{n:>5}: f32 {f32_gf:6.1} GFLOP/s");
            for p in [CpuPrecision::Bf16, CpuPrecision::Int8] {
                if let Some(packed) = PackedWeight::pack(&wt, p).unwrap() {
                    let gf = time(&|| {
                        packed.product_slice(&x, m);
                    });
                    line += &format!(", {} {gf:6.1}", p.name());
                }
            }
            println!("{line}");
        }
    }

    /// The processor's peak for each kernel's inner instruction: 16 independent accumulator chains
    /// of `vfmadd231ps` / `vdpbf16ps` / `vpdpbusd` on 512-bit registers, on one thread and on two at
    /// once (`cargo test --release --lib lowp::tests::peak -- --ignored --nocapture`). This is the
    /// denominator of BENCHMARKS.md's "fraction of peak".
    #[cfg(target_arch = "x86_64")]
    #[test]
    #[ignore = "a benchmark"]
    fn peak() {
        use std::arch::x86_64::*;
        const CHAINS: usize = 16;
        /// `$name(iters)`: `CHAINS` accumulators from `$zero`, each updated `iters` times by `$step`.
        macro_rules! chains {
            ($name:ident, $features:literal, $zero:expr, |$r:ident| $step:expr, |$v:ident| $sum:expr) => {
                #[target_feature(enable = $features)]
                unsafe fn $name(iters: u64) -> f32 {
                    let mut acc = [$zero; CHAINS];
                    for _ in 0..iters {
                        for $r in acc.iter_mut() {
                            *$r = $step;
                        }
                        // Keeps the loop as written (no reordering across iterations).
                        std::arch::asm!("", options(nomem, nostack));
                    }
                    acc.iter().map(|&$v| $sum).sum()
                }
            };
        }
        const BF16_PAIR: i32 = 0x3a833a83;
        chains!(
            f32_fma,
            "avx512f",
            _mm512_setzero_ps(),
            |r| _mm512_fmadd_ps(_mm512_set1_ps(1e-3), _mm512_set1_ps(1e-3), *r),
            |v| _mm512_reduce_add_ps(v)
        );
        chains!(
            bf16_dot,
            "avx512f,avx512bf16",
            _mm512_setzero_ps(),
            |r| {
                let a = super::bf16::as_bf16(_mm512_set1_epi32(BF16_PAIR));
                _mm512_dpbf16_ps(*r, a, a)
            },
            |v| _mm512_reduce_add_ps(v)
        );
        chains!(
            int8_dot,
            "avx512f,avx512vnni",
            _mm512_setzero_si512(),
            |r| _mm512_dpbusd_epi32(*r, _mm512_set1_epi8(1), _mm512_set1_epi8(1)),
            |v| _mm512_reduce_add_epi32(v) as f32
        );
        // (name, operations per instruction: 16 lanes × 2 (FMA), × 2 pairs, × 4 quads; kernel).
        type Kind = (&'static str, f64, CpuPrecision, unsafe fn(u64) -> f32);
        let kinds: [Kind; 3] = [
            ("f32 vfmadd231ps", 32.0, CpuPrecision::F32, f32_fma),
            ("bf16 vdpbf16ps", 64.0, CpuPrecision::Bf16, bf16_dot),
            ("int8 vpdpbusd", 128.0, CpuPrecision::Int8, int8_dot),
        ];
        let iters = 5_000_000u64;
        for (name, ops, precision, f) in kinds {
            if !precision.available() || !std::is_x86_feature_detected!("avx512f") {
                continue;
            }
            let run = |threads: usize| {
                let t = std::time::Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        // SAFETY: the instructions are available (checked above).
                        s.spawn(|| std::hint::black_box(unsafe { f(iters) }));
                    }
                });
                (threads as u64 * iters * CHAINS as u64) as f64 * ops / t.elapsed().as_secs_f64() / 1e9
            };
            let best = |threads| (0..5).map(|_| run(threads)).fold(0f64, f64::max);
            println!("{name}: {:.0} G op/s on one thread, {:.0} on two (best of 5)", best(1), best(2));
        }
    }
}
