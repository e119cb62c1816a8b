//! An int8 copy of the embedding matrix for walking the graph: a quarter of the memory traffic of the
//! f32 vectors (a 384-d row is 6 cache lines instead of 24). Scores from it order the candidates of
//! the graph search; the final candidates are re-scored with the f32 vectors, so results and their
//! scores are exact cosines of the rows found.
//!
//! One scale for the whole matrix (`max |x| / 127`, symmetric, no offset), so a dot product of two
//! code rows is an integer dot product times `scale²`. Saved beside the graph as `index.q8` (built at
//! the first start, like the graph): a header naming the embedding set it was made from, the codes,
//! a checksum. A file that is damaged, truncated or made from another set is rebuilt, never trusted.

use anyhow::{bail, ensure, Context, Result};
use std::path::Path;

/// Version 2: the scale is a header field (the header shape of [`super::sidecar`]).
const MAGIC: &[u8; 8] = b"CVQ8ROW2";

/// Row-major int8 codes of a `[rows, dim]` matrix of unit vectors.
pub struct Quantized {
    rows: usize,
    dim: usize,
    /// Value of one code step.
    scale: f32,
    /// Two's-complement `i8` codes, stored as bytes.
    codes: Vec<u8>,
}

impl std::fmt::Debug for Quantized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quantized")
            .field("rows", &self.rows)
            .field("dim", &self.dim)
            .field("scale", &self.scale)
            .finish()
    }
}

impl Quantized {
    /// Quantize every row of a `[rows, dim]` matrix (in parallel).
    pub fn build(matrix: &[f32], dim: usize) -> Quantized {
        use rayon::prelude::*;
        let dim = dim.max(1);
        let rows = matrix.len() / dim;
        let matrix = &matrix[..rows * dim];
        let max =
            matrix.par_chunks(1 << 16).map(|c| c.iter().fold(0f32, |m, x| m.max(x.abs()))).reduce(|| 0.0, f32::max);
        let scale = if max.is_finite() && max > 0.0 { max / 127.0 } else { 1.0 };
        let mut codes = vec![0u8; rows * dim];
        codes.par_chunks_mut(1 << 16).zip(matrix.par_chunks(1 << 16)).for_each(|(out, xs)| {
            for (o, &x) in out.iter_mut().zip(xs) {
                *o = code(x, scale) as u8;
            }
        });
        Quantized { rows, dim, scale, codes }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn bytes(&self) -> usize {
        self.codes.len()
    }

    /// The codes of `row` (which must be `< rows`).
    #[inline(always)]
    pub fn row(&self, row: usize) -> &[u8] {
        &self.codes[row * self.dim..(row + 1) * self.dim]
    }

    /// Codes of a query vector (values past the matrix's largest are clamped).
    pub fn encode(&self, query: &[f32]) -> Vec<u8> {
        query.iter().map(|&x| code(x, self.scale) as u8).collect()
    }

    /// Approximate dot product of two code rows, on the scale of the f32 vectors.
    #[inline(always)]
    pub fn score(&self, a: &[u8], b: &[u8]) -> f32 {
        dot_i8(a, b) as f32 * (self.scale * self.scale)
    }

    /// Save into `path` for the embedding set `run_id` (see [`super::sidecar`]).
    pub fn save(&self, path: &Path, run_id: &str) -> Result<u64> {
        let fields = [self.rows as u64, self.dim as u64, u64::from(self.scale.to_bits())];
        super::sidecar::save(path, MAGIC, &fields, run_id, &self.codes)
    }

    /// Load `path` if it holds the codes of the embedding set `run_id` with `rows` rows of `dim`: any
    /// damage, truncation or mismatch is an error (the caller rebuilds).
    pub fn load(path: &Path, run_id: &str, rows: usize, dim: usize) -> Result<Quantized> {
        let ([_, _, scale], codes) = super::sidecar::load::<3>(path, MAGIC, run_id, |f| {
            if f[0] != rows as u64 || f[1] != dim as u64 {
                bail!("quantized vectors were made from another embedding set");
            }
            rows.checked_mul(dim).context("quantized file header is damaged")
        })?;
        let scale = u32::try_from(scale).map(f32::from_bits).unwrap_or(f32::NAN);
        ensure!(scale.is_finite() && scale > 0.0, "quantized file header is damaged");
        Ok(Quantized { rows, dim, scale, codes })
    }
}

#[inline(always)]
fn code(x: f32, scale: f32) -> i8 {
    // NaN becomes 0 (`as` saturates and maps NaN to 0).
    (x / scale).round().clamp(-127.0, 127.0) as i8
}

/// Integer dot product of two int8 code rows, vectorised with AVX2 where the CPU has it.
#[inline]
pub fn dot_i8(a: &[u8], b: &[u8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { dot_i8_avx2(a, b) };
    }
    dot_i8_portable(a, b)
}

#[inline(always)]
fn dot_i8_portable(a: &[u8], b: &[u8]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| i32::from(x as i8) * i32::from(y as i8)).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn dot_i8_avx2(a: &[u8], b: &[u8]) -> i32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let mut acc = _mm256_setzero_si256();
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n, within both slices; unaligned loads.
        let (va, vb) = unsafe {
            (
                _mm256_cvtepi8_epi16(_mm_loadu_si128(a.as_ptr().add(i).cast())),
                _mm256_cvtepi8_epi16(_mm_loadu_si128(b.as_ptr().add(i).cast())),
            )
        };
        // Pairs of i16 products summed into i32 lanes: at most 2 · 127² per step, no overflow.
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(va, vb));
        i += 16;
    }
    let lo = _mm256_castsi256_si128(acc);
    let hi = _mm256_extracti128_si256::<1>(acc);
    let s = _mm_add_epi32(lo, hi);
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s) + dot_i8_portable(&a[i..n], &b[i..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_dot_matches_the_plain_sum() {
        for n in [0usize, 1, 15, 16, 17, 384, 389] {
            let a: Vec<u8> = (0..n).map(|i| ((i * 37) % 255) as u8).collect();
            let b: Vec<u8> = (0..n).map(|i| ((i * 91 + 7) % 255) as u8).collect();
            assert_eq!(dot_i8(&a, &b), dot_i8_portable(&a, &b), "n = {n}");
        }
        let extreme = vec![0x81u8; 400]; // -127
        assert_eq!(dot_i8(&extreme, &extreme), 400 * 127 * 127);
    }

    #[test]
    fn scores_approximate_dot_products() {
        let dim = 64;
        let m: Vec<f32> = (0..dim * 20).map(|i| (((i * 7919) % 101) as f32 / 101.0 - 0.5) * 0.3).collect();
        let q = Quantized::build(&m, dim);
        for r in 1..20 {
            let exact = super::super::dot(&m[..dim], &m[r * dim..(r + 1) * dim]);
            let approx = q.score(q.row(0), q.row(r));
            assert!((exact - approx).abs() < 0.01, "{exact} vs {approx}");
        }
        let enc = q.encode(&m[dim..2 * dim]);
        assert_eq!(enc, q.row(1));
    }
}
