//! The bf16 kernel: `vdpbf16ps`, pairs of inner indices per 32-bit lane (see the module above).

use super::{panel_cols, MR, NR};
use std::ops::Range;

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// A `[n, k]` weight in panels of [`NR`] columns × `k/2` pairs of bf16 (zero-padded).
pub struct Weights {
    data: Vec<u32>,
    /// Pairs: `k.div_ceil(2)`.
    kp: usize,
    panels: usize,
}

fn to_bf16(v: f32) -> u32 {
    half::bf16::from_f32(v).to_bits() as u32
}

impl Weights {
    pub fn pack(w: &[f32], n: usize, k: usize) -> Weights {
        let (kp, panels) = (k.div_ceil(2), n.div_ceil(NR));
        let mut data = vec![0u32; panels * kp * NR];
        let at = |row: usize, col: usize| if row < n && col < k { to_bf16(w[row * k + col]) } else { 0 };
        for p in 0..panels {
            for q in 0..kp {
                for j in 0..NR {
                    let row = p * NR + j;
                    data[(p * kp + q) * NR + j] = at(row, 2 * q) | (at(row, 2 * q + 1) << 16);
                }
            }
        }
        Weights { data, kp, panels }
    }

    pub fn panels(&self) -> usize {
        self.panels
    }

    pub fn bytes(&self) -> usize {
        self.data.len() * 4
    }

    /// Rows `rows` × panel `panel` of the product into `out` (`[m, n]`, row-major).
    ///
    /// # Safety
    /// The processor has AVX512F and AVX512-BF16 (checked by [`super::CpuPrecision::available`]
    /// before any weight is packed); `out` holds `m * n` floats for the `m` rows of `a`; no other
    /// thread writes these rows × columns meanwhile.
    pub unsafe fn tile(&self, a: &Activations, rows: Range<usize>, panel: usize, out: *mut f32, n: usize) {
        debug_assert_eq!(a.kp, self.kp);
        let b = self.data.as_ptr().add(panel * self.kp * NR);
        let cols = panel_cols(panel, n);
        let mut r = rows.start;
        while r < rows.end {
            let mr = MR.min(rows.end - r);
            let (ap, cp) = (a.data.as_ptr().add(r * a.kp), out.add(r * n + panel * NR));
            match mr {
                6 => kernel::<6>(ap, a.kp, b, self.kp, cp, n, cols),
                5 => kernel::<5>(ap, a.kp, b, self.kp, cp, n, cols),
                4 => kernel::<4>(ap, a.kp, b, self.kp, cp, n, cols),
                3 => kernel::<3>(ap, a.kp, b, self.kp, cp, n, cols),
                2 => kernel::<2>(ap, a.kp, b, self.kp, cp, n, cols),
                _ => kernel::<1>(ap, a.kp, b, self.kp, cp, n, cols),
            }
            r += mr;
        }
    }
}

/// Activations `[m, k]` as rows of bf16 pairs (`k` padded to even with a zero).
pub struct Activations {
    data: Vec<u32>,
    kp: usize,
}

impl Activations {
    pub fn convert(x: &[f32], m: usize, k: usize) -> Activations {
        let kp = k.div_ceil(2);
        let mut data: Vec<u32> = Vec::with_capacity(m * kp);
        let dst = super::SharedOut(data.as_mut_ptr() as *mut f32);
        // Rows in parallel: for thousands of rows this is a few per cent of the product's time.
        let per = 64;
        super::super::team::get().for_each(m.div_ceil(per), &|c| {
            for row in c * per..((c + 1) * per).min(m) {
                // SAFETY: row `row` of `data` (kp u32 from row * kp) lies in its capacity, and only
                // this item writes it; AVX512-BF16 is present (see `tile`).
                unsafe {
                    let out = std::slice::from_raw_parts_mut((dst.get() as *mut u32).add(row * kp), kp);
                    convert_row(&x[row * k..(row + 1) * k], out);
                }
            }
        });
        // SAFETY: every row was written above.
        unsafe { data.set_len(m * kp) };
        Activations { data, kp }
    }
}

/// One row of f32 into bf16 pairs, rounded to nearest even (as [`to_bf16`]).
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn convert_row(x: &[f32], out: &mut [u32]) {
    let mut chunks = x.chunks_exact(32);
    let mut q = 0;
    for c in &mut chunks {
        let lo = _mm512_loadu_ps(c.as_ptr());
        let hi = _mm512_loadu_ps(c.as_ptr().add(16));
        let packed = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
        _mm512_storeu_si512(out.as_mut_ptr().add(q) as *mut __m512i, packed);
        q += 16;
    }
    let rest = chunks.remainder();
    for (i, pair) in rest.chunks(2).enumerate() {
        out[q + i] = to_bf16(pair[0]) | pair.get(1).map_or(0, |&v| to_bf16(v) << 16);
    }
}

/// The same 512 bits as 32 bf16 values.
#[inline(always)]
pub(super) fn as_bf16(v: __m512i) -> __m512bh {
    // SAFETY: both are 512-bit vector types with no invalid bit patterns.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
}

/// An `R × 64` tile: `c[r][j] = Σ_q a[r][q] · b[q][j]` over bf16 pairs, written to `cols` columns.
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
unsafe fn kernel<const R: usize>(
    a: *const u32,
    lda: usize,
    b: *const u32,
    kp: usize,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); 4]; R];
    let mut bp = b;
    for q in 0..kp {
        let bv: [__m512bh; 4] = [
            as_bf16(_mm512_loadu_si512(bp as *const __m512i)),
            as_bf16(_mm512_loadu_si512(bp.add(16) as *const __m512i)),
            as_bf16(_mm512_loadu_si512(bp.add(32) as *const __m512i)),
            as_bf16(_mm512_loadu_si512(bp.add(48) as *const __m512i)),
        ];
        for (r, acc) in acc.iter_mut().enumerate() {
            let av = as_bf16(_mm512_set1_epi32(*a.add(r * lda + q) as i32));
            for (acc, bv) in acc.iter_mut().zip(bv) {
                *acc = _mm512_dpbf16_ps(*acc, av, bv);
            }
        }
        bp = bp.add(NR);
    }
    for (r, acc) in acc.iter().enumerate() {
        store_row(c.add(r * ldc), acc, cols);
    }
}

/// Store the first `cols` of a tile row's 64 values.
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn store_row(c: *mut f32, acc: &[__m512; 4], cols: usize) {
    for (i, &v) in acc.iter().enumerate() {
        let col = i * 16;
        if col >= cols {
            break;
        }
        if cols - col >= 16 {
            _mm512_storeu_ps(c.add(col), v);
        } else {
            _mm512_mask_storeu_ps(c.add(col), ((1u32 << (cols - col)) - 1) as u16, v);
        }
    }
}
