//! The int8 kernel: `vpdpbusd`, four inner indices per 32-bit lane (see the module above).

use super::{panel_cols, MR, NR};
use std::ops::Range;

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// A `[n, k]` weight in panels of [`NR`] columns × `k/4` groups of four i8 (zero-padded), with the
/// per-column scale and `Σ_k q` (zero for padded columns).
pub struct Weights {
    data: Vec<u32>,
    scale: Vec<f32>,
    colsum: Vec<i32>,
    /// Groups: `k.div_ceil(4)`.
    kq: usize,
    panels: usize,
}

impl Weights {
    pub fn pack(w: &[f32], n: usize, k: usize) -> Weights {
        let (kq, panels) = (k.div_ceil(4), n.div_ceil(NR));
        let mut q = vec![0i8; panels * NR * kq * 4];
        let mut scale = vec![0f32; panels * NR];
        let mut colsum = vec![0i32; panels * NR];
        for row in 0..n {
            let w = &w[row * k..(row + 1) * k];
            let max = w.iter().fold(0f32, |m, v| m.max(v.abs()));
            let s = if max > 0.0 { max / 127.0 } else { 1.0 };
            scale[row] = s;
            for (t, &v) in w.iter().enumerate() {
                let v = (v / s).round().clamp(-127.0, 127.0) as i8;
                q[row * kq * 4 + t] = v;
                colsum[row] += v as i32;
            }
        }
        let mut data = vec![0u32; panels * kq * NR];
        for p in 0..panels {
            for g in 0..kq {
                for j in 0..NR {
                    let at = (p * NR + j) * kq * 4 + 4 * g;
                    let bytes = [q[at] as u8, q[at + 1] as u8, q[at + 2] as u8, q[at + 3] as u8];
                    data[(p * kq + g) * NR + j] = u32::from_le_bytes(bytes);
                }
            }
        }
        Weights { data, scale, colsum, kq, panels }
    }

    pub fn panels(&self) -> usize {
        self.panels
    }

    pub fn bytes(&self) -> usize {
        self.data.len() * 4 + self.scale.len() * 4 + self.colsum.len() * 4
    }

    /// Rows `rows` × panel `panel` of the product into `out` (`[m, n]`, row-major).
    ///
    /// # Safety
    /// The processor has AVX512F, AVX512BW and AVX512-VNNI (checked by
    /// [`super::CpuPrecision::available`] before any weight is packed); `out` holds `m * n` floats
    /// for the `m` rows of `a`; no other thread writes these rows × columns meanwhile.
    pub unsafe fn tile(&self, a: &Activations, rows: Range<usize>, panel: usize, out: *mut f32, n: usize) {
        debug_assert_eq!(a.kq, self.kq);
        let b = Panel {
            data: self.data.as_ptr().add(panel * self.kq * NR),
            scale: self.scale.as_ptr().add(panel * NR),
            colsum: self.colsum.as_ptr().add(panel * NR),
            kq: self.kq,
            cols: panel_cols(panel, n),
        };
        let mut r = rows.start;
        while r < rows.end {
            let mr = MR.min(rows.end - r);
            let cp = out.add(r * n + panel * NR);
            match mr {
                6 => kernel::<6>(a, r, &b, cp, n),
                5 => kernel::<5>(a, r, &b, cp, n),
                4 => kernel::<4>(a, r, &b, cp, n),
                3 => kernel::<3>(a, r, &b, cp, n),
                2 => kernel::<2>(a, r, &b, cp, n),
                _ => kernel::<1>(a, r, &b, cp, n),
            }
            r += mr;
        }
    }
}

struct Panel {
    data: *const u32,
    scale: *const f32,
    colsum: *const i32,
    kq: usize,
    cols: usize,
}

/// Activations `[m, k]` as rows of u8 quads (`k` padded to a multiple of 4), with each row's scale
/// and zero point: `x ≈ scale (u - zero)`.
pub struct Activations {
    data: Vec<u32>,
    scale: Vec<f32>,
    zero: Vec<i32>,
    kq: usize,
}

impl Activations {
    pub fn quantize(x: &[f32], m: usize, k: usize) -> Activations {
        let kq = k.div_ceil(4);
        let mut data = vec![0u32; m * kq];
        let mut scale = vec![0f32; m];
        let mut zero = vec![0i32; m];
        let (dp, sp, zp) = (
            super::SharedOut(data.as_mut_ptr() as *mut f32),
            super::SharedOut(scale.as_mut_ptr()),
            super::SharedOut(zero.as_mut_ptr() as *mut f32),
        );
        let per = 64;
        super::super::team::get().for_each(m.div_ceil(per), &|c| {
            for row in c * per..((c + 1) * per).min(m) {
                // SAFETY: row `row` of each buffer is in bounds and written by this item only.
                unsafe {
                    let out = std::slice::from_raw_parts_mut((dp.get() as *mut u32).add(row * kq) as *mut u8, kq * 4);
                    let (s, z) = quantize_row(&x[row * k..(row + 1) * k], out);
                    *sp.get().add(row) = s;
                    *(zp.get() as *mut i32).add(row) = z;
                }
            }
        });
        Activations { data, scale, zero, kq }
    }
}

/// Quantise one row into `out` (its tail past `x.len()` is left as is: the weights there are zero).
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_row(x: &[f32], out: &mut [u8]) -> (f32, i32) {
    let len = x.len();
    let tail = |i: usize| -> u16 { ((1u32 << (len - i).min(16)) - 1) as u16 };
    // The range, with zero in it (so that zero is exact: padding and ReLU-like zeros stay zero).
    let (mut lo, mut hi) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    for i in (0..len).step_by(16) {
        let v = _mm512_maskz_loadu_ps(tail(i), x.as_ptr().add(i));
        lo = _mm512_min_ps(lo, v);
        hi = _mm512_max_ps(hi, v);
    }
    let (lo, hi) = (_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi));
    let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
    let inv = 1.0 / scale;
    let zero = (-lo * inv).round_ties_even().clamp(0.0, 255.0);
    let (vinv, vzero) = (_mm512_set1_ps(inv), _mm512_set1_ps(zero));
    let (min, max) = (_mm512_setzero_si512(), _mm512_set1_epi32(255));
    for i in (0..len).step_by(16) {
        let v = _mm512_maskz_loadu_ps(tail(i), x.as_ptr().add(i));
        // Rounded to nearest even (the default rounding mode), then clamped to 0..=255.
        let u = _mm512_cvtps_epi32(_mm512_fmadd_ps(v, vinv, vzero));
        let u = _mm512_min_epi32(_mm512_max_epi32(u, min), max);
        _mm512_mask_cvtepi32_storeu_epi8(out.as_mut_ptr().add(i) as *mut i8, tail(i), u);
    }
    (scale, zero as i32)
}

/// An `R × 64` tile from rows `r0..r0 + R` of `a`, written to `cols` columns.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn kernel<const R: usize>(a: &Activations, r0: usize, b: &Panel, c: *mut f32, ldc: usize) {
    let mut acc = [[_mm512_setzero_si512(); 4]; R];
    let ap = a.data.as_ptr().add(r0 * a.kq);
    let mut bp = b.data;
    for g in 0..b.kq {
        let bv = [
            _mm512_loadu_si512(bp as *const __m512i),
            _mm512_loadu_si512(bp.add(16) as *const __m512i),
            _mm512_loadu_si512(bp.add(32) as *const __m512i),
            _mm512_loadu_si512(bp.add(48) as *const __m512i),
        ];
        for (r, acc) in acc.iter_mut().enumerate() {
            let av = _mm512_set1_epi32(*ap.add(r * a.kq + g) as i32);
            for (acc, bv) in acc.iter_mut().zip(bv) {
                *acc = _mm512_dpbusd_epi32(*acc, av, bv);
            }
        }
        bp = bp.add(NR);
    }
    for (r, acc) in acc.iter().enumerate() {
        let zero = _mm512_set1_epi32(a.zero[r0 + r]);
        let row_scale = _mm512_set1_ps(a.scale[r0 + r]);
        let mut row = [_mm512_setzero_ps(); 4];
        for (i, (out, &acc)) in row.iter_mut().zip(acc).enumerate() {
            let colsum = _mm512_loadu_si512(b.colsum.add(16 * i) as *const __m512i);
            let exact = _mm512_sub_epi32(acc, _mm512_mullo_epi32(zero, colsum));
            let scale = _mm512_mul_ps(row_scale, _mm512_loadu_ps(b.scale.add(16 * i)));
            *out = _mm512_mul_ps(_mm512_cvtepi32_ps(exact), scale);
        }
        super::bf16::store_row(c.add(r * ldc), &row, b.cols);
    }
}
