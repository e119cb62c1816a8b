//! Multi-head self-attention on packed sequences, fused into one CPU kernel.
//!
//! Input: the packed `[tokens, 3H]` product `x [Wq|Wk|Wv]^T` *without* its bias (the query part already
//! scaled by `1/sqrt(head_dim)`), that bias `[3H]`, and the length of each sequence. Output: the packed
//! `[tokens, H]` attention context. Each (sequence, head) pair is one task on rayon's pool; a sequence
//! attends over its own tokens only, so there is no padding, no mask and no copy to a padded layout.
//!
//! Per task, the keys are gathered once into a transposed `[head_dim, len]` block (bias added); scores
//! for four queries at a time are computed by an AVX2/FMA register-blocked kernel, turned into
//! probabilities with the branch-free exp of [`super::ops::exp_neg`], and multiplied with the values
//! read in place. The value bias is added at the end (`softmax` rows sum to one). Other CPUs (or head
//! sizes that are not a multiple of 8) use a plain portable version of the same steps.

use super::ops::exp_neg;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Whether [`packed_attention`] runs for this tensor (CPU, f32); otherwise use the padded path.
pub fn supported(qkv: &Tensor) -> bool {
    qkv.device().is_cpu() && qkv.dtype() == DType::F32
}

/// Attention context `[tokens, H]` of the packed, unbiased QKV product `qkv: [tokens, 3H]`.
pub fn packed_attention(qkv: &Tensor, bias: &Tensor, lengths: &[usize], heads: usize) -> Result<Tensor> {
    qkv.apply_op2_no_bwd(bias, &PackedAttention { lengths: lengths.to_vec(), heads, portable: false })
}

struct PackedAttention {
    lengths: Vec<usize>,
    heads: usize,
    /// Skip the AVX2 kernel (tests of the portable path).
    portable: bool,
}

/// One (sequence, head) pair.
struct Task<'a> {
    qkv: &'a [f32],
    bias: &'a [f32],
    /// `3H`, the row stride of `qkv`.
    stride: usize,
    hidden: usize,
    head_dim: usize,
    head: usize,
    /// First packed row of the sequence, and its length.
    start: usize,
    len: usize,
}

impl Task<'_> {
    /// Row `i` of the sequence, part `part` (0 query, 1 key, 2 value) of this head, without bias.
    #[inline(always)]
    fn row(&self, i: usize, part: usize) -> &[f32] {
        let at = (self.start + i) * self.stride + part * self.hidden + self.head * self.head_dim;
        &self.qkv[at..at + self.head_dim]
    }

    #[inline(always)]
    fn bias(&self, part: usize) -> &[f32] {
        let at = part * self.hidden + self.head * self.head_dim;
        &self.bias[at..at + self.head_dim]
    }

    /// Where row `i` of this head's output starts.
    #[inline(always)]
    fn out_offset(&self, i: usize) -> usize {
        (self.start + i) * self.hidden + self.head * self.head_dim
    }
}

/// Per-thread buffers, reused across tasks.
#[derive(Default)]
struct Scratch {
    /// Keys, transposed: `[head_dim, padded_len]`.
    keys_t: Vec<f32>,
    /// Biased queries of the current block: `[QUERIES, head_dim]`.
    queries: Vec<f32>,
    /// Scores, then probabilities: `[QUERIES, padded_len]`.
    scores: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Queries per block of the AVX2 kernel.
const QUERIES: usize = 4;

impl CustomOp2 for PackedAttention {
    fn name(&self) -> &'static str {
        "packed-attention"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(qkv), CpuStorage::F32(bias)) = (s1, s2) else {
            candle_core::bail!("packed-attention: f32 only")
        };
        let (Some((qs, qe)), Some((bs, be))) = (l1.contiguous_offsets(), l2.contiguous_offsets()) else {
            candle_core::bail!("packed-attention: contiguous inputs only")
        };
        let (qkv, bias) = (&qkv[qs..qe], &bias[bs..be]);
        let &[tokens, stride] = l1.dims() else {
            candle_core::bail!("packed-attention: qkv must be [tokens, 3H], got {:?}", l1.dims())
        };
        let hidden = stride / 3;
        if stride % 3 != 0 || self.heads == 0 || hidden % self.heads != 0 || bias.len() != stride {
            candle_core::bail!(
                "packed-attention: qkv {:?}, bias {}, {} heads do not fit together",
                l1.dims(),
                bias.len(),
                self.heads
            );
        }
        if self.lengths.iter().sum::<usize>() != tokens {
            candle_core::bail!("packed-attention: lengths sum to {}, not {tokens}", self.lengths.iter().sum::<usize>());
        }
        let head_dim = hidden / self.heads;
        let mut tasks = Vec::with_capacity(self.lengths.len() * self.heads);
        let mut start = 0;
        for &len in &self.lengths {
            for head in 0..self.heads {
                if len > 0 {
                    tasks.push(Task { qkv, bias, stride, hidden, head_dim, head, start, len });
                }
            }
            start += len;
        }
        // Longest sequences first, so that the last tasks left are the short ones.
        tasks.sort_by_key(|t| std::cmp::Reverse(t.len));
        let mut out = vec![0f32; tokens * hidden];
        let out_ptr = super::ops::SharedOut(out.as_mut_ptr());
        let portable = self.portable;
        let run = |task: &Task| {
            SCRATCH.with_borrow_mut(|scratch| {
                // SAFETY: `out` holds `tokens * hidden` floats and this task writes only its own rows'
                // columns `head * head_dim ..+ head_dim`, which no other task touches.
                unsafe { attend(task, scratch, out_ptr.get(), portable) }
            })
        };
        if tokens < super::SMALL_BATCH_ROWS {
            super::team::get().for_each(tasks.len(), &|i| run(&tasks[i]));
        } else {
            tasks.par_iter().with_max_len(1).for_each(run);
        }
        Ok((CpuStorage::F32(out), Shape::from((tokens, hidden))))
    }
}

/// Attention of one (sequence, head) pair into `out` (the whole `[tokens, H]` output).
///
/// # Safety
/// `out` must be valid for writes of the task's rows and head columns, with no other writer there.
unsafe fn attend(task: &Task, scratch: &mut Scratch, out: *mut f32, portable: bool) {
    #[cfg(target_arch = "x86_64")]
    if !portable
        && task.head_dim.is_multiple_of(8)
        && std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
    {
        return avx2::attend(task, scratch, out);
    }
    let _ = portable;
    attend_portable(task, scratch, out)
}

/// The reference steps, one query at a time.
unsafe fn attend_portable(task: &Task, scratch: &mut Scratch, out: *mut f32) {
    let (len, hd) = (task.len, task.head_dim);
    // Keys with bias, row-major here: [len, head_dim].
    let keys = &mut scratch.keys_t;
    keys.clear();
    for j in 0..len {
        keys.extend(task.row(j, 1).iter().zip(task.bias(1)).map(|(k, b)| k + b));
    }
    scratch.queries.clear();
    scratch.queries.resize(hd, 0.0);
    scratch.scores.clear();
    scratch.scores.resize(len, 0.0);
    let mut context = vec![0f32; hd];
    for i in 0..len {
        for ((q, &x), &b) in scratch.queries.iter_mut().zip(task.row(i, 0)).zip(task.bias(0)) {
            *q = x + b;
        }
        for (s, key) in scratch.scores.iter_mut().zip(keys.chunks_exact(hd)) {
            *s = scratch.queries.iter().zip(key).map(|(q, k)| q * k).sum();
        }
        let inv_sum = softmax_in_place(&mut scratch.scores);
        context.fill(0.0);
        for (j, &p) in scratch.scores.iter().enumerate() {
            for (c, &v) in context.iter_mut().zip(task.row(j, 2)) {
                *c += p * v;
            }
        }
        let dst = std::slice::from_raw_parts_mut(out.add(task.out_offset(i)), hd);
        for ((o, c), &b) in dst.iter_mut().zip(&context).zip(task.bias(2)) {
            *o = c * inv_sum + b;
        }
    }
}

/// `s ← exp(s - max s)` in place; returns `1 / Σ exp(s - max s)`. Written lane-wise (8 accumulators)
/// so that it vectorises.
#[inline(always)]
fn softmax_in_place(s: &mut [f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            lanes[l] = lanes[l].max(c[l]);
        }
    }
    let max = chunks.remainder().iter().fold(lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max), |a, &b| a.max(b));
    for x in s.iter_mut() {
        *x = exp_neg(*x - max);
    }
    let mut lanes = [0f32; 8];
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            lanes[l] += c[l];
        }
    }
    let sum: f32 = lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>();
    1.0 / sum
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{softmax_in_place, Scratch, Task, QUERIES};
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX2 and FMA available, `task.head_dim % 8 == 0`, and `out` as for [`super::attend`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn attend(task: &Task, scratch: &mut Scratch, out: *mut f32) {
        let (len, hd) = (task.len, task.head_dim);
        // Key columns padded to a multiple of 16 (zeros), for the two-vector score kernel.
        let lp = len.div_ceil(16) * 16;
        let keys_t = &mut scratch.keys_t;
        keys_t.clear();
        keys_t.resize(hd * lp, 0.0);
        let bias_k = task.bias(1);
        for j in 0..len {
            for (d, (&k, &b)) in task.row(j, 1).iter().zip(bias_k).enumerate() {
                keys_t[d * lp + j] = k + b;
            }
        }
        scratch.queries.clear();
        scratch.queries.resize(QUERIES * hd, 0.0);
        scratch.scores.clear();
        scratch.scores.resize(QUERIES * lp, 0.0);
        let bias_q = task.bias(0);
        let bias_v = task.bias(2);
        let values = task.qkv.as_ptr().add(task.start * task.stride + 2 * task.hidden + task.head * hd);

        let mut i0 = 0;
        while i0 < len {
            let rows = (len - i0).min(QUERIES);
            // A short last block repeats its last query; the extra rows are computed but not written.
            for r in 0..QUERIES {
                let q = task.row(i0 + r.min(rows - 1), 0);
                for ((dst, &x), &b) in scratch.queries[r * hd..(r + 1) * hd].iter_mut().zip(q).zip(bias_q) {
                    *dst = x + b;
                }
            }
            scores(&scratch.queries, keys_t, hd, lp, &mut scratch.scores);
            let mut inv_sum = [0f32; QUERIES];
            for (r, inv) in inv_sum.iter_mut().enumerate() {
                *inv = softmax_in_place(&mut scratch.scores[r * lp..r * lp + len]);
            }
            let probs = scratch.scores.as_ptr();
            let mut dc = 0;
            while dc < hd {
                let outs: [*mut f32; QUERIES] =
                    std::array::from_fn(|r| out.add(task.out_offset(i0 + r.min(rows - 1)) + dc));
                if hd - dc >= 16 {
                    context16(probs, lp, values.add(dc), task.stride, len, &bias_v[dc..dc + 16], &inv_sum, &outs[..rows]);
                    dc += 16;
                } else {
                    context8(probs, lp, values.add(dc), task.stride, len, &bias_v[dc..dc + 8], &inv_sum, &outs[..rows]);
                    dc += 8;
                }
            }
            i0 += rows;
        }
    }

    /// `scores[r, j] = Σ_d queries[r, d] · keys_t[d, j]` for the 4 queries and all `lp` key columns.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn scores(queries: &[f32], keys_t: &[f32], hd: usize, lp: usize, scores: &mut [f32]) {
        debug_assert!(queries.len() >= QUERIES * hd && keys_t.len() >= hd * lp && scores.len() >= QUERIES * lp);
        let q = queries.as_ptr();
        let k = keys_t.as_ptr();
        let s = scores.as_mut_ptr();
        let mut jb = 0;
        while jb < lp {
            let mut acc = [[_mm256_setzero_ps(); 2]; QUERIES];
            for d in 0..hd {
                let k0 = _mm256_loadu_ps(k.add(d * lp + jb));
                let k1 = _mm256_loadu_ps(k.add(d * lp + jb + 8));
                for (r, a) in acc.iter_mut().enumerate() {
                    let qv = _mm256_broadcast_ss(&*q.add(r * hd + d));
                    a[0] = _mm256_fmadd_ps(qv, k0, a[0]);
                    a[1] = _mm256_fmadd_ps(qv, k1, a[1]);
                }
            }
            for (r, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(s.add(r * lp + jb), a[0]);
                _mm256_storeu_ps(s.add(r * lp + jb + 8), a[1]);
            }
            jb += 16;
        }
    }

    /// 16 columns of the context of up to 4 queries: `Σ_j probs[r, j] · values[j, ..16]`, scaled by
    /// `inv_sum[r]`, plus the value bias, written to `outs[r]`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn context16(
        probs: *const f32,
        lp: usize,
        values: *const f32,
        stride: usize,
        len: usize,
        bias: &[f32],
        inv_sum: &[f32; QUERIES],
        outs: &[*mut f32],
    ) {
        let mut acc = [[_mm256_setzero_ps(); 2]; QUERIES];
        for j in 0..len {
            let v = values.add(j * stride);
            let v0 = _mm256_loadu_ps(v);
            let v1 = _mm256_loadu_ps(v.add(8));
            for (r, a) in acc.iter_mut().enumerate() {
                let p = _mm256_broadcast_ss(&*probs.add(r * lp + j));
                a[0] = _mm256_fmadd_ps(p, v0, a[0]);
                a[1] = _mm256_fmadd_ps(p, v1, a[1]);
            }
        }
        let b0 = _mm256_loadu_ps(bias.as_ptr());
        let b1 = _mm256_loadu_ps(bias.as_ptr().add(8));
        for (r, &o) in outs.iter().enumerate() {
            let inv = _mm256_set1_ps(inv_sum[r]);
            _mm256_storeu_ps(o, _mm256_fmadd_ps(acc[r][0], inv, b0));
            _mm256_storeu_ps(o.add(8), _mm256_fmadd_ps(acc[r][1], inv, b1));
        }
    }

    /// [`context16`] for an 8-column tail.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn context8(
        probs: *const f32,
        lp: usize,
        values: *const f32,
        stride: usize,
        len: usize,
        bias: &[f32],
        inv_sum: &[f32; QUERIES],
        outs: &[*mut f32],
    ) {
        let mut acc = [_mm256_setzero_ps(); QUERIES];
        for j in 0..len {
            let v0 = _mm256_loadu_ps(values.add(j * stride));
            for (r, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(_mm256_broadcast_ss(&*probs.add(r * lp + j)), v0, *a);
            }
        }
        let b0 = _mm256_loadu_ps(bias.as_ptr());
        for (r, &o) in outs.iter().enumerate() {
            _mm256_storeu_ps(o, _mm256_fmadd_ps(acc[r], _mm256_set1_ps(inv_sum[r]), b0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp};

    /// Attention computed with candle's own ops, one sequence at a time.
    fn reference(qkv: &Tensor, bias: &Tensor, lengths: &[usize], heads: usize) -> Result<Tensor> {
        let qkv = qkv.broadcast_add(bias)?;
        let hidden = qkv.dim(1)? / 3;
        let hd = hidden / heads;
        let mut parts = Vec::new();
        let mut start = 0;
        for &len in lengths {
            let x = qkv.i(start..start + len)?.reshape((len, 3, heads, hd))?.permute((1, 2, 0, 3))?; // [3, nh, L, hd]
            let (q, k, v) = (x.get(0)?.contiguous()?, x.get(1)?.contiguous()?, x.get(2)?.contiguous()?);
            let probs = candle_nn::ops::softmax_last_dim(&q.matmul(&k.t()?)?)?;
            parts.push(probs.matmul(&v)?.transpose(0, 1)?.reshape((len, hidden))?);
            start += len;
        }
        Tensor::cat(&parts, 0)
    }

    fn check(lengths: &[usize], heads: usize, head_dim: usize, portable: bool) -> Result<()> {
        let dev = Device::Cpu;
        let hidden = heads * head_dim;
        let tokens: usize = lengths.iter().sum();
        let qkv = Tensor::randn(0f32, 1.0, (tokens, 3 * hidden), &dev)?;
        let bias = Tensor::randn(0f32, 0.5, 3 * hidden, &dev)?;
        let op = PackedAttention { lengths: lengths.to_vec(), heads, portable };
        let fused = qkv.apply_op2_no_bwd(&bias, &op)?;
        assert_eq!(fused.dims(), &[tokens, hidden]);
        let want = reference(&qkv, &bias, lengths, heads)?;
        let diff = (fused - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 2e-5, "lengths {lengths:?}, {heads}x{head_dim}, portable {portable}: max difference {diff}");
        Ok(())
    }

    const LENGTHS: [usize; 7] = [1, 3, 4, 5, 17, 64, 130];

    #[test]
    fn matches_candle_for_minilm_shapes() -> Result<()> {
        check(&LENGTHS, 12, 32, false)?;
        check(&[87], 12, 32, false)
    }

    #[test]
    fn matches_candle_with_an_eight_column_tail() -> Result<()> {
        check(&LENGTHS, 3, 24, false)?;
        check(&[9, 2], 2, 8, false)
    }

    #[test]
    fn portable_path_matches_candle() -> Result<()> {
        check(&LENGTHS, 4, 32, true)?;
        // Not a multiple of 8: the portable path is taken whatever the CPU.
        check(&[7, 20], 3, 12, false)
    }

    #[test]
    fn rejects_lengths_that_do_not_cover_the_tokens() {
        let dev = Device::Cpu;
        let qkv = Tensor::zeros((10, 3 * 64), DType::F32, &dev).unwrap();
        let bias = Tensor::zeros(3 * 64, DType::F32, &dev).unwrap();
        let err = packed_attention(&qkv, &bias, &[4, 5], 2).unwrap_err();
        assert!(err.to_string().contains("lengths sum to 9"), "{err}");
    }
}
