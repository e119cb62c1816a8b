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
//!
//! Models with a relative-position attention bias (MPNet) pass a [`PositionBias`]: per head, one value
//! per key-minus-query distance, added to the scores before the softmax.

use super::ops::exp_neg;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Whether [`packed_attention`] runs for this tensor (CPU, f32); otherwise use the padded path.
pub fn supported(qkv: &Tensor) -> bool {
    qkv.device().is_cpu() && qkv.dtype() == DType::F32
}

/// Attention context `[tokens, H]` of the packed, unbiased QKV product `qkv: [tokens, 3H]`.
pub fn packed_attention(qkv: &Tensor, bias: &Tensor, lengths: &[usize], heads: usize) -> Result<Tensor> {
    qkv.apply_op2_no_bwd(bias, &PackedAttention { lengths: lengths.to_vec(), heads, portable: false, position: None })
}

/// [`packed_attention`] with a relative-position bias added to every score.
pub fn packed_attention_with_position_bias(
    qkv: &Tensor,
    bias: &Tensor,
    lengths: &[usize],
    heads: usize,
    position: &std::sync::Arc<PositionBias>,
) -> Result<Tensor> {
    let op = PackedAttention { lengths: lengths.to_vec(), heads, portable: false, position: Some(position.clone()) };
    qkv.apply_op2_no_bwd(bias, &op)
}

/// An additive attention bias that depends only on the head and on the distance `key - query`:
/// `values[head, (key - query) + span - 1]` for distances in `-(span - 1) ..= span - 1`.
#[derive(Debug, Clone)]
pub struct PositionBias {
    values: Vec<f32>,
    heads: usize,
    /// Longest sequence covered.
    span: usize,
}

impl PositionBias {
    /// `value(head, distance)` for every head and every distance two tokens of a sequence of at most
    /// `span` tokens can have.
    pub fn new(heads: usize, span: usize, value: impl Fn(usize, i64) -> f32) -> Self {
        let width = 2 * span - 1;
        let mut values = Vec::with_capacity(heads * width);
        for head in 0..heads {
            values.extend((0..width).map(|k| value(head, k as i64 - (span as i64 - 1))));
        }
        PositionBias { values, heads, span }
    }

    pub fn span(&self) -> usize {
        self.span
    }

    /// The biases of query `query` over the keys `0..len` of one head.
    #[inline(always)]
    pub fn row(&self, head: usize, query: usize, len: usize) -> &[f32] {
        let at = head * (2 * self.span - 1) + (self.span - 1 - query);
        &self.values[at..at + len]
    }
}

struct PackedAttention {
    lengths: Vec<usize>,
    heads: usize,
    /// Skip the AVX2 kernel (tests of the portable path).
    portable: bool,
    position: Option<std::sync::Arc<PositionBias>>,
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
    position: Option<&'a PositionBias>,
}

impl Task<'_> {
    /// Add the relative-position bias (if any) of query `i` to its scores over the keys.
    #[inline(always)]
    fn add_position_bias(&self, i: usize, scores: &mut [f32]) {
        if let Some(position) = self.position {
            for (s, b) in scores.iter_mut().zip(position.row(self.head, i, self.len)) {
                *s += b;
            }
        }
    }

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
        if let Some(p) = &self.position {
            let longest = self.lengths.iter().copied().max().unwrap_or(0);
            if p.heads != self.heads || longest > p.span {
                candle_core::bail!(
                    "packed-attention: position bias for {} heads up to {} tokens, got {} heads and a sequence of {longest}",
                    p.heads,
                    p.span,
                    self.heads
                );
            }
        }
        let head_dim = hidden / self.heads;
        let position = self.position.as_deref();
        let mut tasks = Vec::with_capacity(self.lengths.len() * self.heads);
        let mut start = 0;
        for &len in &self.lengths {
            for head in 0..self.heads {
                if len > 0 {
                    tasks.push(Task { qkv, bias, stride, hidden, head_dim, head, start, len, position });
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
        task.add_position_bias(i, &mut scratch.scores);
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
                task.add_position_bias(i0 + r.min(rows - 1), &mut scratch.scores[r * lp..r * lp + len]);
                *inv = softmax_in_place(&mut scratch.scores[r * lp..r * lp + len]);
            }
            let probs = scratch.scores.as_ptr();
            let mut dc = 0;
            while dc < hd {
                let outs: [*mut f32; QUERIES] =
                    std::array::from_fn(|r| out.add(task.out_offset(i0 + r.min(rows - 1)) + dc));
                if hd - dc >= 16 {
                    context16(
                        probs,
                        lp,
                        values.add(dc),
                        task.stride,
                        len,
                        &bias_v[dc..dc + 16],
                        &inv_sum,
                        &outs[..rows],
                    );
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
    fn reference(
        qkv: &Tensor,
        bias: &Tensor,
        lengths: &[usize],
        heads: usize,
        position: Option<&PositionBias>,
    ) -> Result<Tensor> {
        let qkv = qkv.broadcast_add(bias)?;
        let hidden = qkv.dim(1)? / 3;
        let hd = hidden / heads;
        let mut parts = Vec::new();
        let mut start = 0;
        for &len in lengths {
            let x = qkv.i(start..start + len)?.reshape((len, 3, heads, hd))?.permute((1, 2, 0, 3))?; // [3, nh, L, hd]
            let (q, k, v) = (x.get(0)?.contiguous()?, x.get(1)?.contiguous()?, x.get(2)?.contiguous()?);
            let mut scores = q.matmul(&k.t()?)?;
            if position.is_some() {
                // [nh, L, L] built element by element from the definition: bias(head, key - query).
                let dev = scores.device().clone();
                let mut b = Vec::with_capacity(heads * len * len);
                for h in 0..heads {
                    for i in 0..len {
                        b.extend((0..len).map(|j| test_bias(h, j as i64 - i as i64)));
                    }
                }
                scores = (scores + Tensor::from_vec(b, (heads, len, len), &dev)?)?;
            }
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            parts.push(probs.matmul(&v)?.transpose(0, 1)?.reshape((len, hidden))?);
            start += len;
        }
        Tensor::cat(&parts, 0)
    }

    fn check(lengths: &[usize], heads: usize, head_dim: usize, portable: bool) -> Result<()> {
        check_with(lengths, heads, head_dim, portable, None)
    }

    fn check_with(
        lengths: &[usize],
        heads: usize,
        head_dim: usize,
        portable: bool,
        position: Option<PositionBias>,
    ) -> Result<()> {
        let dev = Device::Cpu;
        let hidden = heads * head_dim;
        let tokens: usize = lengths.iter().sum();
        let qkv = Tensor::randn(0f32, 1.0, (tokens, 3 * hidden), &dev)?;
        let bias = Tensor::randn(0f32, 0.5, 3 * hidden, &dev)?;
        let position = position.map(std::sync::Arc::new);
        let op = PackedAttention { lengths: lengths.to_vec(), heads, portable, position: position.clone() };
        let fused = qkv.apply_op2_no_bwd(&bias, &op)?;
        assert_eq!(fused.dims(), &[tokens, hidden]);
        let want = reference(&qkv, &bias, lengths, heads, position.as_deref())?;
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

    /// A bias that differs by head and by distance, in both directions, and is large enough to change
    /// the softmax.
    fn test_bias(head: usize, distance: i64) -> f32 {
        ((head as f32 + 1.0) * 0.37 * distance as f32).sin() * 2.0 - 0.01 * distance as f32
    }

    fn some_position_bias(heads: usize, span: usize) -> PositionBias {
        PositionBias::new(heads, span, test_bias)
    }

    #[test]
    fn position_bias_matches_candle_on_both_paths() -> Result<()> {
        check_with(&LENGTHS, 12, 64, false, Some(some_position_bias(12, 130)))?;
        check_with(&LENGTHS, 4, 32, true, Some(some_position_bias(4, 200)))?;
        check_with(&[7, 20], 3, 12, false, Some(some_position_bias(3, 20)))
    }

    #[test]
    fn position_bias_changes_the_result_and_must_cover_the_batch() -> Result<()> {
        let dev = Device::Cpu;
        let qkv = Tensor::randn(0f32, 1.0, (12, 3 * 64), &dev)?;
        let bias = Tensor::zeros(3 * 64, DType::F32, &dev)?;
        let plain = packed_attention(&qkv, &bias, &[12], 2)?;
        let position = std::sync::Arc::new(some_position_bias(2, 12));
        let biased = packed_attention_with_position_bias(&qkv, &bias, &[12], 2, &position)?;
        assert!((plain - biased)?.abs()?.max_all()?.to_scalar::<f32>()? > 1e-2);
        let short = std::sync::Arc::new(some_position_bias(2, 8));
        let err = packed_attention_with_position_bias(&qkv, &bias, &[12], 2, &short).unwrap_err();
        assert!(err.to_string().contains("up to 8 tokens"), "{err}");
        Ok(())
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
