//! A short sketch of every matrix row, for scanning many rows fast: the row projected on the matrix's
//! principal directions (64 of them for a 384-d model, a sixth of the dimension in general), each
//! coordinate an int8 code. A 384-d row's sketch is one cache line instead of 24 of f32, so a filtered
//! search that has to look at a hundred thousand rows (a common genre the neighbour table could not
//! answer) reads 6 MB instead of 150 MB.
//!
//! A sketch score is only an estimate of the cosine: the scan keeps the best few hundred rows by it
//! and re-scores those with the f32 vectors ([`crate::service::live`]'s sketch plan), and its recall
//! against the exact answer is measured (tests/filtered_search.rs, `scripts/bench-service.sh`).
//!
//! The directions: the top eigenvectors of the rows' second-moment matrix `XᵀX` (not centred: the
//! direction every sentence embedding shares is the first, and a dot product needs it), found by
//! subspace iteration on a sample of rows (candle's CPU products). Each coordinate has its own code
//! step (`max |z| / 127`), since the first directions carry far more of a row than the last.
//! Saved beside the graph as `index.sketch` (see [`super::sidecar`]); a damaged or stale file is
//! rebuilt, never trusted.

use anyhow::{bail, ensure, Context, Result};
use candle_core::{Device, Tensor};
use std::path::Path;

const MAGIC: &[u8; 8] = b"CVSKETC1";
/// Rows sampled for the second-moment matrix.
const SAMPLE: usize = 20_000;
/// Subspace iterations: the leading directions converge long before; the last few of the subspace
/// need not be exact (any good subspace serves an estimate).
const ITERATIONS: usize = 12;

/// Sketch coordinates for vectors of `dim`: a sixth of the dimension, a multiple of 16 (the integer dot
/// product's step), 16 to 64, never more than `dim`.
pub fn dims_for(dim: usize) -> usize {
    (dim / 6 / 16 * 16).clamp(16, 64).min(dim.max(1))
}

/// The sketch of every row of a `[rows, dim]` matrix.
pub struct Sketch {
    rows: usize,
    dim: usize,
    dims: usize,
    /// `[dims, dim]`: the directions, one per row.
    basis: Vec<f32>,
    /// Per coordinate: the value of one code step.
    steps: Vec<f32>,
    /// `[rows, dims]` two's-complement `i8` codes, stored as bytes.
    codes: Vec<u8>,
}

impl std::fmt::Debug for Sketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sketch").field("rows", &self.rows).field("dim", &self.dim).field("dims", &self.dims).finish()
    }
}

/// The best `keeps` rows offered by estimate: a buffer cut back to the best `keeps` whenever it holds
/// twice that, so that most rows are dropped by one comparison with the last cut's floor (no heap
/// kept in order on every row).
pub struct Best {
    keeps: usize,
    kept: Vec<(i32, u32)>,
    /// The `keeps`-th best estimate at the last cut: a row must beat it to be kept.
    floor: i32,
}

impl Best {
    pub fn new(keeps: usize) -> Best {
        Best { keeps, kept: Vec::with_capacity(2 * keeps), floor: i32::MIN }
    }

    #[inline(always)]
    pub fn offer(&mut self, estimate: i32, row: usize) {
        if estimate > self.floor && self.keeps > 0 {
            self.kept.push((estimate, row as u32));
            if self.kept.len() >= 2 * self.keeps {
                self.cut();
            }
        }
    }

    fn cut(&mut self) {
        let k = self.keeps;
        self.kept.select_nth_unstable_by(k - 1, |a, b| b.0.cmp(&a.0));
        self.kept.truncate(k);
        self.floor = self.kept[k - 1].0;
    }

    /// The rows kept (at most `keeps`, in no particular order).
    pub fn rows(mut self) -> Vec<usize> {
        if self.kept.len() > self.keeps {
            self.cut();
        }
        self.kept.into_iter().map(|(_, row)| row as usize).collect()
    }
}

/// A query prepared for [`Sketch::offer`]: its coordinates times each coordinate's step, as int8.
pub struct SketchQuery {
    codes: Vec<u8>,
}

impl Sketch {
    /// Sketch every row of a `[rows, dim]` matrix (in parallel).
    pub fn build(matrix: &[f32], dim: usize) -> Sketch {
        let dim = dim.max(1);
        let rows = matrix.len() / dim;
        let dims = dims_for(dim);
        let basis = principal_directions(&matrix[..rows * dim], rows, dim, dims);
        // Coordinates of every row: [rows, dim] × [dim, dims], a block of rows at a time (a copy of
        // the whole matrix as one tensor would double the memory of a large catalog while building).
        let directions = cpu(&basis, dims, dim).t().expect("a matrix transposes");
        let coords: Vec<f32> = matrix[..rows * dim]
            .chunks(dim * 16_384)
            .flat_map(|block| product(&cpu(block, block.len() / dim, dim), &directions))
            .collect();
        let mut steps = vec![0f32; dims];
        for row in coords.chunks_exact(dims) {
            for (s, &z) in steps.iter_mut().zip(row) {
                *s = s.max(z.abs());
            }
        }
        steps.iter_mut().for_each(|s| *s = if s.is_finite() && *s > 0.0 { *s / 127.0 } else { 1.0 });
        let codes =
            coords.chunks_exact(dims).flat_map(|row| row.iter().zip(&steps).map(|(&z, &s)| code(z / s))).collect();
        Sketch { rows, dim, dims, basis, steps, codes }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Prepare a query vector (of the matrix's dimension).
    pub fn query(&self, query: &[f32]) -> SketchQuery {
        // Its coordinate on each direction times that coordinate's step, so that the sum over the
        // coordinates of (this × a row's code) estimates the dot product; then int8 on its own scale
        // (only the order of the estimates matters).
        let weighted: Vec<f32> =
            self.basis.chunks_exact(self.dim).zip(&self.steps).map(|(d, &s)| super::dot(d, query) * s).collect();
        let max = weighted.iter().fold(0f32, |m, w| m.max(w.abs()));
        let scale = if max.is_finite() && max > 0.0 { 127.0 / max } else { 1.0 };
        SketchQuery { codes: weighted.iter().map(|&w| code(w * scale)).collect() }
    }

    /// Offer every row of `rows` that `pass` accepts to `best`, by its estimate. One pass: the
    /// sketch of the row some places further is asked for ahead (whether or not it will pass), the
    /// integer dot product inlined.
    pub fn offer<R, P>(&self, query: &SketchQuery, rows: R, pass: P, best: &mut Best)
    where
        R: Iterator<Item = usize> + Clone,
        P: Fn(usize) -> bool,
    {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { self.offer_avx2(query, rows, pass, best) };
        }
        self.offer_by(query, rows, pass, best, super::quantized::dot_i8)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn offer_avx2<R, P>(&self, query: &SketchQuery, rows: R, pass: P, best: &mut Best)
    where
        R: Iterator<Item = usize> + Clone,
        P: Fn(usize) -> bool,
    {
        // SAFETY (of the closure): this function runs only where AVX2 is present.
        self.offer_by(query, rows, pass, best, |a, b| unsafe { super::quantized::dot_i8_avx2(a, b) })
    }

    #[inline(always)]
    fn offer_by<R, P>(&self, query: &SketchQuery, rows: R, pass: P, best: &mut Best, dot: impl Fn(&[u8], &[u8]) -> i32)
    where
        R: Iterator<Item = usize> + Clone,
        P: Fn(usize) -> bool,
    {
        const AHEAD: usize = 16;
        let mut ahead = rows.clone().skip(AHEAD);
        for row in rows {
            if let Some(next) = ahead.next() {
                super::graph::prefetch(self.row(next));
            }
            if pass(row) {
                best.offer(dot(&query.codes, self.row(row)), row);
            }
        }
    }

    /// The codes of `row`.
    #[inline(always)]
    pub fn row(&self, row: usize) -> &[u8] {
        &self.codes[row * self.dims..(row + 1) * self.dims]
    }

    /// Save into `path` for the embedding set `run_id`: the directions and steps, then the codes.
    pub fn save(&self, path: &Path, run_id: &str) -> Result<u64> {
        let mut payload = Vec::with_capacity(4 * (self.basis.len() + self.steps.len()) + self.codes.len());
        for v in self.basis.iter().chain(&self.steps) {
            payload.extend_from_slice(&v.to_le_bytes());
        }
        payload.extend_from_slice(&self.codes);
        super::sidecar::save(path, MAGIC, &[self.rows as u64, self.dim as u64, self.dims as u64], run_id, &payload)
    }

    /// Load `path` if it holds the sketch of the embedding set `run_id` (`rows` rows of `dim`): any
    /// damage, truncation or mismatch is an error (the caller rebuilds).
    pub fn load(path: &Path, run_id: &str, rows: usize, dim: usize) -> Result<Sketch> {
        let dims = dims_for(dim);
        let ([_, _, _], mut payload) = super::sidecar::load::<3>(path, MAGIC, run_id, |f| {
            if f[0] != rows as u64 || f[1] != dim as u64 || f[2] != dims as u64 {
                bail!(
                    "sketch was made for {} rows of {} ({} coordinates), not {rows} of {dim} ({dims})",
                    f[0],
                    f[1],
                    f[2]
                );
            }
            rows.checked_mul(dims).and_then(|c| c.checked_add(4 * dims * (dim + 1))).context("sketch header is damaged")
        })?;
        let floats = dims * (dim + 1);
        let values: Vec<f32> =
            payload[..4 * floats].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
        ensure!(values.iter().all(|v| v.is_finite()), "sketch is damaged (a direction or step is not a number)");
        let (basis, steps) = (values[..dims * dim].to_vec(), values[dims * dim..].to_vec());
        ensure!(steps.iter().all(|&s| s > 0.0), "sketch is damaged (a step is not positive)");
        // The codes are the payload's tail: moved down in place, not copied into a second buffer of
        // their size (whose first one the heap would keep).
        payload.drain(..4 * floats);
        Ok(Sketch { rows, dim, dims, basis, steps, codes: payload })
    }
}

#[inline(always)]
fn code(x: f32) -> u8 {
    // NaN becomes 0 (`as` saturates and maps NaN to 0).
    x.round().clamp(-127.0, 127.0) as i8 as u8
}

/// A `[rows, cols]` row-major slice as a CPU tensor.
fn cpu(values: &[f32], rows: usize, cols: usize) -> Tensor {
    Tensor::from_slice(values, (rows, cols), &Device::Cpu).expect("rows × cols values")
}

/// `a × b`, row-major (candle's CPU product: `gemm` over every core).
fn product(a: &Tensor, b: &Tensor) -> Vec<f32> {
    a.matmul(b).and_then(|p| p.flatten_all()).and_then(|p| p.to_vec1()).expect("operands of matching shapes")
}

/// The `dims` leading eigenvectors (as rows of a `[dims, dim]` matrix) of the second-moment matrix of
/// (a sample of) the rows: subspace iteration from a seeded start, orthonormalised each step.
fn principal_directions(matrix: &[f32], rows: usize, dim: usize, dims: usize) -> Vec<f32> {
    let step = rows.div_ceil(SAMPLE).max(1);
    let sample: Vec<f32> = matrix.chunks_exact(dim).step_by(step).flatten().copied().collect();
    let n = sample.len() / dim;
    // XᵀX ([dim, dim]) of the sample.
    let moment = if n == 0 {
        cpu(&vec![0f32; dim * dim], dim, dim)
    } else {
        let x = cpu(&sample, n, dim);
        cpu(&product(&x.t().expect("a matrix transposes"), &x), dim, dim)
    };
    // Start: a seeded pseudo-random [dim, dims] block.
    let mut rng = crate::rng::Rng::new(0x5ce7c4);
    let mut q: Vec<f32> = (0..dim * dims).map(|_| rng.next_f32() - 0.5).collect();
    orthonormalise_columns(&mut q, dim, dims);
    for _ in 0..ITERATIONS {
        q = product(&moment, &cpu(&q, dim, dims));
        orthonormalise_columns(&mut q, dim, dims);
    }
    let directions = cpu(&q, dim, dims).t().and_then(|t| t.contiguous()).and_then(|t| t.flatten_all());
    directions.and_then(|t| t.to_vec1()).expect("a matrix transposes")
}

/// Modified Gram-Schmidt over the columns of a `[r, c]` matrix (in f64). A column that vanishes
/// (fewer independent directions than columns) is replaced by a unit axis orthogonal to the others.
fn orthonormalise_columns(a: &mut [f32], r: usize, c: usize) {
    let mut cols: Vec<Vec<f64>> = (0..c).map(|j| (0..r).map(|i| f64::from(a[i * c + j])).collect()).collect();
    for j in 0..c {
        for attempt in 0..=r {
            for p in 0..j {
                let d: f64 = cols[j].iter().zip(&cols[p]).map(|(x, y)| x * y).sum();
                let (done, rest) = cols.split_at_mut(j);
                rest[0].iter_mut().zip(&done[p]).for_each(|(x, y)| *x -= d * y);
            }
            let norm = cols[j].iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm > 1e-9 {
                cols[j].iter_mut().for_each(|x| *x /= norm);
                break;
            }
            // Degenerate: try the next unit axis.
            cols[j] = (0..r).map(|i| if i == (j + attempt) % r { 1.0 } else { 0.0 }).collect();
        }
    }
    for (j, col) in cols.iter().enumerate() {
        for (i, &x) in col.iter().enumerate() {
            a[i * c + j] = x as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unit rows with a low-rank structure plus noise, like embeddings.
    fn matrix(rows: usize, dim: usize) -> Vec<f32> {
        let mut rng = crate::rng::Rng::new(7);
        let factors: Vec<Vec<f32>> = (0..12).map(|_| (0..dim).map(|_| rng.next_f32() - 0.5).collect()).collect();
        let mut m = Vec::with_capacity(rows * dim);
        for _ in 0..rows {
            let mut v: Vec<f32> = (0..dim).map(|_| 0.3 * (rng.next_f32() - 0.5)).collect();
            for f in &factors {
                let w = 2.0 * (rng.next_f32() - 0.5);
                v.iter_mut().zip(f).for_each(|(x, y)| *x += w * y);
            }
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            m.extend(v.iter().map(|x| x / norm));
        }
        m
    }

    #[test]
    fn coordinate_counts() {
        assert_eq!(dims_for(384), 64);
        assert_eq!(dims_for(768), 64);
        assert_eq!(dims_for(96), 16);
        assert_eq!(dims_for(32), 16);
        assert_eq!(dims_for(8), 8);
    }

    /// `Best` keeps the best `keeps` of what it is offered, whatever the order and however many
    /// cuts it makes on the way.
    #[test]
    fn best_keeps_the_best_offered() {
        for (n, keeps) in [(0usize, 5usize), (3, 5), (10, 5), (1000, 7), (5000, 250)] {
            let estimates: Vec<i32> = (0..n).map(|i| ((i * 7919 + 13) % 1009) as i32 - 500).collect();
            let mut best = Best::new(keeps);
            estimates.iter().enumerate().for_each(|(row, &e)| best.offer(e, row));
            let mut rows = best.rows();
            rows.sort_unstable();
            let mut sorted: Vec<i32> = estimates.clone();
            sorted.sort_unstable_by(|a, b| b.cmp(a));
            assert_eq!(rows.len(), n.min(keeps), "{n} offered, {keeps} kept");
            if let Some(&floor) = sorted.get(keeps.min(n).wrapping_sub(1)) {
                assert!(rows.iter().all(|&r| estimates[r] >= floor), "{n}/{keeps}: a kept row below the k-th best");
            }
            rows.dedup();
            assert_eq!(rows.len(), n.min(keeps), "each row kept once");
        }
        let mut none = Best::new(0);
        none.offer(5, 1);
        assert!(none.rows().is_empty());
    }

    #[test]
    fn directions_are_orthonormal() {
        let (rows, dim) = (3000, 96);
        let s = Sketch::build(&matrix(rows, dim), dim);
        for i in 0..s.dims {
            for j in 0..s.dims {
                let d = super::super::dot(&s.basis[i * dim..(i + 1) * dim], &s.basis[j * dim..(j + 1) * dim]);
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((d - want).abs() < 1e-3, "directions {i}, {j}: {d}");
            }
        }
    }

    /// The rows a sketch ranks first hold the rows the exact scores rank first: here, every exact
    /// top-10 row is among the sketch's top 100 for nearly every query.
    #[test]
    fn the_sketch_order_keeps_the_nearest_rows_near_the_top() {
        let (rows, dim) = (5000, 96);
        let m = matrix(rows, dim);
        let s = Sketch::build(&m, dim);
        let (mut kept, mut total) = (0, 0);
        for q in (0..rows).step_by(97) {
            let query = &m[q * dim..(q + 1) * dim];
            let mut exact: Vec<(f32, usize)> =
                (0..rows).map(|r| (super::super::dot(query, &m[r * dim..(r + 1) * dim]), r)).collect();
            exact.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut best = Best::new(100);
            s.offer(&s.query(query), 0..rows, |_| true, &mut best);
            let top: std::collections::HashSet<usize> = best.rows().into_iter().collect();
            assert_eq!(top.len(), 100);
            kept += exact[..10].iter().filter(|e| top.contains(&e.1)).count();
            total += 10;
        }
        let share = kept as f64 / total as f64;
        assert!(share >= 0.98, "exact top-10 rows within the sketch's top 100: {share:.4}");
    }

    #[test]
    fn saved_sketches_load_back_and_damage_is_refused() {
        let (rows, dim) = (500, 96);
        let s = Sketch::build(&matrix(rows, dim), dim);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sketch");
        s.save(&path, "run").unwrap();
        let back = Sketch::load(&path, "run", rows, dim).unwrap();
        assert_eq!(
            (back.basis.clone(), back.steps.clone(), back.codes.clone()),
            (s.basis.clone(), s.steps.clone(), s.codes.clone())
        );
        assert!(Sketch::load(&path, "other", rows, dim).is_err(), "another embedding set");
        assert!(Sketch::load(&path, "run", rows + 1, dim).is_err(), "other rows");
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        assert!(Sketch::load(&path, "run", rows, dim).is_err(), "a flipped bit");
    }
}
