//! The catalog map: a 2-D position for every matrix row, such that movies near each other in the
//! embedding space are near each other on the map (UMAP).
//!
//! The neighbour graph comes from the neighbour table ([`super::table`], every row's 16 nearest rows,
//! already found with the HNSW graph): `umap-rs` turns it into UMAP's fuzzy graph (each row's
//! distances smoothed to its local scale, the directed graph symmetrised) and fits the curve of the
//! low-dimensional similarities. The layout is then optimised here, by UMAP's stochastic gradient
//! descent, on one thread with the project's seeded generator: `umap-rs`'s own optimiser draws its
//! negative samples from an OS-seeded generator on many threads at once (Hogwild), so two runs on
//! the same input give different maps, and a build must give the same map from the same embedding
//! set and seed. The start is the rows' first two principal components (a few power iterations).
//!
//! `umap-rs` panics on input it cannot take (too few rows, as many neighbours as rows, non-finite
//! distances); [`Layout::compute`] checks all of that first and lays out catalogs too small for UMAP
//! from their principal components alone.
//!
//! Saved beside the graph as `index.map` (see [`super::sidecar`]): the run id of the embedding set,
//! the row count and the settings it was made with are in its header, so a stale map is found and
//! rebuilt like the neighbour table.

use super::table::NeighbourTable;
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

const MAGIC: &[u8; 8] = b"CVMAP001";
/// The layout algorithm's version: a change that moves the points for the same input bumps it, so
/// saved maps are rebuilt.
const ALGORITHM: u64 = 1;
/// Power iterations for the starting layout.
const POWER_ITERATIONS: usize = 16;
/// Negative samples per positive one (UMAP's default).
const NEGATIVE_RATE: f64 = 5.0;

/// How a map is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutParams {
    /// Seed of the starting directions and of the negative samples.
    pub seed: u64,
    /// Passes of gradient descent; `None`: 500 up to 10,000 rows, 200 above (UMAP's defaults).
    pub epochs: Option<usize>,
}

impl Default for LayoutParams {
    fn default() -> Self {
        LayoutParams { seed: 42, epochs: None }
    }
}

impl LayoutParams {
    /// The passes of gradient descent for `rows` rows.
    pub fn epochs_for(&self, rows: usize) -> usize {
        self.epochs.unwrap_or(if rows <= 10_000 { 500 } else { 200 }).max(1)
    }
}

/// A position on the map for every matrix row.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// `[rows, 2]` row-major.
    xy: Vec<f32>,
}

impl Layout {
    pub fn rows(&self) -> usize {
        self.xy.len() / 2
    }

    /// The position of matrix row `row`.
    pub fn point(&self, row: usize) -> [f32; 2] {
        [self.xy[2 * row], self.xy[2 * row + 1]]
    }

    /// A layout of the given positions (`[rows, 2]` row-major, all finite).
    pub fn from_points(xy: Vec<f32>) -> Result<Layout> {
        ensure!(xy.len().is_multiple_of(2), "a layout needs two coordinates per row");
        ensure!(xy.iter().all(|v| v.is_finite()), "a layout's coordinates must be finite");
        Ok(Layout { xy })
    }

    /// Lay out the rows of `matrix` (`[rows, dim]`) from their neighbours in `table`.
    pub fn compute(matrix: &[f32], dim: usize, table: &NeighbourTable, params: LayoutParams) -> Result<Layout> {
        ensure!(dim > 0 && matrix.len().is_multiple_of(dim), "the matrix is not rows × {dim}");
        let rows = matrix.len() / dim;
        ensure!(table.rows() == rows, "the neighbour table has {} rows, the matrix {rows}", table.rows());
        if let Some(i) = matrix.iter().position(|v| !v.is_finite()) {
            bail!("row {} of the embedding matrix holds a value that is not finite", i / dim);
        }
        let mut xy = principal_components(matrix, dim, params.seed);
        // UMAP needs at least two neighbours per row and more rows than neighbours.
        let k = table.width().min(rows.saturating_sub(1));
        if k < 2 {
            return Layout::from_points(xy);
        }
        let (indices, distances) = knn_arrays(matrix, dim, table, k)?;
        let config = umap_rs::UmapConfig {
            graph: umap_rs::GraphParams { n_neighbors: k, ..Default::default() },
            ..Default::default()
        };
        let shape_only = ndarray::Array2::<f32>::zeros((rows, 0));
        let indices = ndarray::Array2::from_shape_vec((rows, k), indices).context("neighbour indices")?;
        let distances = ndarray::Array2::from_shape_vec((rows, k), distances).context("neighbour distances")?;
        let manifold = umap_rs::Umap::new(config).learn_manifold(shape_only.view(), indices.view(), distances.view());
        let (a, b) = manifold.curve_params();
        let mut edges = Vec::new();
        for (head, row) in manifold.graph().outer_iterator().enumerate() {
            for (tail, &w) in row.iter() {
                if w.is_finite() && w > 0.0 && tail != head {
                    edges.push((head as u32, tail as u32, w));
                }
            }
        }
        optimise(&mut xy, &edges, a, b, params.epochs_for(rows), params.seed);
        Layout::from_points(xy).context("the layout diverged")
    }

    /// Save into `path` for the embedding set `run_id`, made with `params`.
    pub fn save(&self, path: &Path, run_id: &str, params: LayoutParams) -> Result<u64> {
        let payload: Vec<u8> = self.xy.iter().flat_map(|v| v.to_le_bytes()).collect();
        super::sidecar::save(path, MAGIC, &header(self.rows(), params), run_id, &payload)
    }

    /// Whether `path`'s header says it is the map of the embedding set `run_id` (`rows` rows) made with
    /// `params` (damage is found when it is loaded).
    pub fn saved_for(path: &Path, run_id: &str, rows: usize, params: LayoutParams) -> bool {
        super::sidecar::open::<4>(path, MAGIC, run_id).is_ok_and(|(_, f)| f == header(rows, params))
    }

    /// Load `path` if it holds the map of the embedding set `run_id` (`rows` rows) made with `params`:
    /// any damage, truncation or mismatch is an error (the caller rebuilds).
    pub fn load(path: &Path, run_id: &str, rows: usize, params: LayoutParams) -> Result<Layout> {
        let wanted = header(rows, params);
        let (_, bytes) = super::sidecar::load::<4>(path, MAGIC, run_id, |f| {
            if *f != wanted {
                bail!("the map was made for {} rows with other settings (seed, passes or version), not these", f[0]);
            }
            rows.checked_mul(8).context("map header is damaged")
        })?;
        let xy = bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
        Layout::from_points(xy).context("the saved map is damaged")
    }
}

/// The map saved at `path` for the embedding set `run_id` (`rows` rows), whatever seed and passes
/// it was made with (what the server reads: those are the build's settings), made by this version of
/// the algorithm.
pub fn load_any(path: &Path, run_id: &str, rows: usize) -> Result<Layout> {
    let (_, bytes) = super::sidecar::load::<4>(path, MAGIC, run_id, |f| {
        if f[0] != rows as u64 || f[3] != ALGORITHM {
            bail!("the map was made for {} rows by layout version {}, not {rows} by version {ALGORITHM}", f[0], f[3]);
        }
        rows.checked_mul(8).context("map header is damaged")
    })?;
    let xy = bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
    Layout::from_points(xy).context("the saved map is damaged")
}

fn header(rows: usize, params: LayoutParams) -> [u64; 4] {
    [rows as u64, params.seed, params.epochs_for(rows) as u64, ALGORITHM]
}

/// The position of a movie that is not a matrix row, from its nearest matrix rows (`(row,
/// similarity)`, best first): their positions averaged, weighted by similarity (the nearest count
/// most). `None` without neighbours.
pub fn place(layout: &Layout, neighbours: &[(usize, f32)]) -> Option<[f32; 2]> {
    let (mut sum, mut total) = ([0f64; 2], 0f64);
    for &(row, score) in neighbours.iter().filter(|(row, s)| *row < layout.rows() && s.is_finite()) {
        let w = f64::from(score.max(0.0)).powi(4).max(1e-12);
        let p = layout.point(row);
        sum[0] += w * f64::from(p[0]);
        sum[1] += w * f64::from(p[1]);
        total += w;
    }
    (total > 0.0).then(|| [(sum[0] / total) as f32, (sum[1] / total) as f32])
}

/// Each row's first `k` neighbours as UMAP wants them: indices and Euclidean distances, nearest first,
/// a short list padded with `umap-rs`'s "no neighbour" (`u32::MAX`, infinite distance).
fn knn_arrays(matrix: &[f32], dim: usize, table: &NeighbourTable, k: usize) -> Result<(Vec<u32>, Vec<f32>)> {
    use rayon::prelude::*;
    let rows = table.rows();
    let vector = |r: usize| &matrix[r * dim..(r + 1) * dim];
    let lists: Vec<Vec<(f32, u32)>> = (0..rows)
        .into_par_iter()
        .map(|row| {
            let mut list: Vec<(f32, u32)> = table
                .of(row)
                .filter(|&n| n < rows && n != row)
                .take(k)
                .map(|n| {
                    let d = vector(row).iter().zip(vector(n)).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt();
                    (d, n as u32)
                })
                .collect();
            list.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            list
        })
        .collect();
    let (mut indices, mut distances) = (Vec::with_capacity(rows * k), Vec::with_capacity(rows * k));
    for list in lists {
        for i in 0..k {
            let (d, n) = list.get(i).copied().unwrap_or((f32::INFINITY, u32::MAX));
            indices.push(n);
            distances.push(d);
        }
    }
    Ok((indices, distances))
}

/// The rows' projections on their first two principal components (power iterations from seeded
/// directions), each axis scaled to `[0, 10]` as UMAP starts from, plus a tiny seeded jitter so that
/// identical rows do not start (and stay) on one point. Every sum is taken in a fixed order: the same
/// matrix and seed give the same bits on any number of threads.
fn principal_components(matrix: &[f32], dim: usize, seed: u64) -> Vec<f32> {
    use rayon::prelude::*;
    let rows = matrix.len() / dim;
    let mut xy = vec![0f32; rows * 2];
    if rows == 0 {
        return xy;
    }
    const CHUNK: usize = 2048;
    let mut mean = vec![0f64; dim];
    for row in matrix.chunks_exact(dim) {
        mean.iter_mut().zip(row).for_each(|(m, &v)| *m += f64::from(v));
    }
    mean.iter_mut().for_each(|m| *m /= rows as f64);
    let mut rng = crate::rng::Rng::new(seed);
    let mut basis: Vec<Vec<f64>> = (0..2).map(|_| (0..dim).map(|_| rng.unit() - 0.5).collect()).collect();
    orthonormalise(&mut basis);
    let project = |basis: &[Vec<f64>], out: &mut [f32]| {
        out.par_chunks_mut(2).zip(matrix.par_chunks_exact(dim)).for_each(|(p, row)| {
            for (c, axis) in basis.iter().enumerate() {
                p[c] = row.iter().zip(axis).zip(&mean).map(|((&v, a), m)| (f64::from(v) - m) * a).sum::<f64>() as f32;
            }
        });
    };
    for _ in 0..POWER_ITERATIONS {
        project(&basis, &mut xy);
        // Xᵀ(X v) for both directions: partial sums per chunk of rows, added in chunk order.
        let partials: Vec<Vec<f64>> = matrix
            .par_chunks(dim * CHUNK)
            .zip(xy.par_chunks(2 * CHUNK))
            .map(|(rows, ps)| {
                let mut acc = vec![0f64; 2 * dim];
                for (row, p) in rows.chunks_exact(dim).zip(ps.chunks_exact(2)) {
                    for (j, (&v, m)) in row.iter().zip(&mean).enumerate() {
                        let c = f64::from(v) - m;
                        acc[j] += c * f64::from(p[0]);
                        acc[dim + j] += c * f64::from(p[1]);
                    }
                }
                acc
            })
            .collect();
        let mut next = vec![vec![0f64; dim]; 2];
        for acc in partials {
            for j in 0..dim {
                next[0][j] += acc[j];
                next[1][j] += acc[dim + j];
            }
        }
        if next.iter().any(|v| v.iter().all(|&x| x.abs() < 1e-30)) {
            break; // no spread left (identical rows): keep the directions
        }
        basis = next;
        orthonormalise(&mut basis);
    }
    project(&basis, &mut xy);
    for axis in 0..2 {
        let (lo, hi) =
            xy.iter().skip(axis).step_by(2).fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
        let scale = if hi > lo { 10.0 / (hi - lo) } else { 0.0 };
        xy.iter_mut().skip(axis).step_by(2).for_each(|v| *v = (*v - lo) * scale);
    }
    xy.iter_mut().for_each(|v| *v += (rng.next_f32() - 0.5) * 1e-3);
    xy
}

/// Gram–Schmidt on the directions, in place (a direction that vanishes is replaced by an axis).
fn orthonormalise(basis: &mut [Vec<f64>]) {
    for i in 0..basis.len() {
        for j in 0..i {
            let dot: f64 = basis[i].iter().zip(&basis[j]).map(|(a, b)| a * b).sum();
            let (bi, bj) = (basis[i].clone(), &basis[j]);
            basis[i] = bi.iter().zip(bj).map(|(a, b)| a - dot * b).collect();
        }
        let norm = basis[i].iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm > 1e-300 {
            basis[i].iter_mut().for_each(|a| *a /= norm);
        } else {
            basis[i] = (0..basis[i].len()).map(|j| if j == i { 1.0 } else { 0.0 }).collect();
        }
    }
}

/// UMAP's gradient descent over `edges` (`(head, tail, weight)`): each edge is sampled in proportion
/// to its weight, pulls its ends together and pushes `head` from random rows; the step shrinks
/// linearly to zero. One thread, one seeded generator: deterministic.
fn optimise(xy: &mut [f32], edges: &[(u32, u32, f32)], a: f32, b: f32, epochs: usize, seed: u64) {
    let rows = xy.len() / 2;
    let max = edges.iter().map(|e| e.2).fold(0f32, f32::max);
    if max <= 0.0 || rows < 2 {
        return;
    }
    // Edges too weak to be sampled once in the whole run are dropped (as UMAP does).
    let edges: Vec<&(u32, u32, f32)> = edges.iter().filter(|e| e.2 >= max / epochs as f32).collect();
    let per_sample: Vec<f64> = edges.iter().map(|e| f64::from(max) / f64::from(e.2)).collect();
    let per_negative: Vec<f64> = per_sample.iter().map(|p| p / NEGATIVE_RATE).collect();
    let mut next_sample = per_sample.clone();
    let mut next_negative = per_negative.clone();
    let mut rng = crate::rng::Rng::new(seed ^ 0x6d61_7073);
    let clip = |v: f32| v.clamp(-4.0, 4.0);
    for epoch in 0..epochs {
        let n = epoch as f64;
        let alpha = 1.0 - epoch as f32 / epochs as f32;
        for (i, &&(j, k, _)) in edges.iter().enumerate() {
            if next_sample[i] > n {
                continue;
            }
            let (j, k) = (j as usize, k as usize);
            let (dx, dy) = (xy[2 * j] - xy[2 * k], xy[2 * j + 1] - xy[2 * k + 1]);
            let d2 = dx * dx + dy * dy;
            if d2 > 0.0 {
                let pb = d2.powf(b);
                let coeff = -2.0 * a * b * pb / d2 / (a * pb + 1.0);
                let (gx, gy) = (clip(coeff * dx) * alpha, clip(coeff * dy) * alpha);
                xy[2 * j] += gx;
                xy[2 * j + 1] += gy;
                xy[2 * k] -= gx;
                xy[2 * k + 1] -= gy;
            }
            next_sample[i] += per_sample[i];
            let negatives = ((n - next_negative[i]) / per_negative[i]).max(0.0) as usize;
            for _ in 0..negatives {
                let other = rng.below(rows);
                if other == j {
                    continue;
                }
                let (dx, dy) = (xy[2 * j] - xy[2 * other], xy[2 * j + 1] - xy[2 * other + 1]);
                let d2 = dx * dx + dy * dy;
                if d2 > 0.0 {
                    let coeff = 2.0 * b / ((0.001 + d2) * (a * d2.powf(b) + 1.0));
                    xy[2 * j] += clip(coeff * dx) * alpha;
                    xy[2 * j + 1] += clip(coeff * dy) * alpha;
                }
            }
            next_negative[i] += negatives as f64 * per_negative[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{IndexParams, VectorIndex};

    /// `clusters` groups of unit vectors in `dim` dimensions, each row near its group's centre.
    fn clustered(rows: usize, clusters: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::Rng::new(seed);
        let centres: Vec<Vec<f32>> = (0..clusters).map(|_| (0..dim).map(|_| rng.next_f32() - 0.5).collect()).collect();
        let mut m = Vec::with_capacity(rows * dim);
        for r in 0..rows {
            let mut v: Vec<f32> = centres[r % clusters].iter().map(|c| c + (rng.next_f32() - 0.5) * 0.3).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
            m.extend(v);
        }
        m
    }

    fn layout_of(matrix: &[f32], dim: usize, params: LayoutParams) -> (VectorIndex, Result<Layout>) {
        let index = VectorIndex::build(matrix, dim, IndexParams::default());
        let layout = Layout::compute(matrix, dim, index.table().expect("a table"), params);
        (index, layout)
    }

    fn nearest_on_map(layout: &Layout, row: usize, k: usize) -> Vec<usize> {
        let p = layout.point(row);
        let mut others: Vec<(f32, usize)> = (0..layout.rows())
            .filter(|&r| r != row)
            .map(|r| {
                let q = layout.point(r);
                ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2), r)
            })
            .collect();
        others.sort_by(|a, b| a.0.total_cmp(&b.0));
        others.into_iter().take(k).map(|(_, r)| r).collect()
    }

    #[test]
    fn map_neighbours_are_embedding_neighbours_far_more_often_than_chance() {
        let (rows, dim, k) = (600, 16, 10);
        let matrix = clustered(rows, 12, dim, 7);
        let (index, layout) = layout_of(&matrix, dim, LayoutParams { seed: 1, epochs: Some(200) });
        let layout = layout.unwrap();
        let table = index.table().unwrap();
        let overlap: usize = (0..rows)
            .map(|r| {
                let on_map = nearest_on_map(&layout, r, k);
                table.of(r).take(k).filter(|n| on_map.contains(n)).count()
            })
            .sum();
        let share = overlap as f64 / (rows * k) as f64;
        let chance = k as f64 / (rows - 1) as f64;
        assert!(share > 20.0 * chance, "map neighbours shared {share:.3} of embedding neighbours (chance {chance:.3})");
    }

    #[test]
    fn the_same_matrix_and_seed_give_the_same_map_and_another_seed_another() {
        let matrix = clustered(300, 6, 12, 3);
        let params = LayoutParams { seed: 9, epochs: Some(50) };
        let (_, a) = layout_of(&matrix, 12, params);
        let (_, b) = layout_of(&matrix, 12, params);
        assert_eq!(a.unwrap(), b.unwrap());
        let (_, c) = layout_of(&matrix, 12, LayoutParams { seed: 10, ..params });
        let (_, a) = layout_of(&matrix, 12, params);
        assert_ne!(a.unwrap(), c.unwrap());
    }

    #[test]
    fn tiny_duplicate_and_non_finite_inputs_are_laid_out_or_refused_without_a_panic() {
        let params = LayoutParams { seed: 1, epochs: Some(20) };
        for rows in [0usize, 1, 2, 3, 5, 17, 18] {
            let matrix = clustered(rows, 2, 4, rows as u64);
            let (_, layout) = layout_of(&matrix, 4, params);
            let layout = layout.unwrap();
            assert_eq!(layout.rows(), rows);
        }
        // Forty copies of one vector: finite positions.
        let one = clustered(1, 1, 4, 5);
        let copies: Vec<f32> = one.iter().cycle().take(40 * 4).copied().collect();
        let (_, layout) = layout_of(&copies, 4, params);
        assert_eq!(layout.unwrap().rows(), 40);
        let mut bad = clustered(30, 3, 4, 6);
        let index = VectorIndex::build(&bad, 4, IndexParams::default());
        bad[7] = f32::NAN;
        let err = Layout::compute(&bad, 4, index.table().unwrap(), params).unwrap_err().to_string();
        assert!(err.contains("row 1"), "{err}");
        // A table of another matrix.
        assert!(Layout::compute(&bad[..20 * 4], 4, index.table().unwrap(), params).is_err());
    }

    #[test]
    fn a_saved_map_loads_only_for_its_embedding_set_rows_and_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.map");
        let params = LayoutParams { seed: 3, epochs: Some(10) };
        let layout = Layout::from_points(vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        layout.save(&path, "run", params).unwrap();
        assert!(Layout::saved_for(&path, "run", 3, params));
        assert_eq!(Layout::load(&path, "run", 3, params).unwrap(), layout);
        assert!(Layout::load(&path, "other", 3, params).is_err(), "another embedding set");
        assert!(Layout::load(&path, "run", 4, params).is_err(), "other rows");
        assert!(!Layout::saved_for(&path, "run", 3, LayoutParams { seed: 4, ..params }), "another seed");
        assert!(Layout::load(&path, "run", 3, LayoutParams { epochs: Some(11), ..params }).is_err(), "other passes");
        assert_eq!(load_any(&path, "run", 3).unwrap(), layout, "the server takes any seed");
        assert!(load_any(&path, "other", 3).is_err() && load_any(&path, "run", 2).is_err());
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 12;
        bytes[at] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        assert!(Layout::load(&path, "run", 3, params).is_err(), "damaged");
    }

    #[test]
    fn a_placed_movie_lands_among_its_neighbours() {
        let layout = Layout::from_points(vec![0.0, 0.0, 10.0, 0.0, 10.0, 10.0, 0.0, 10.0]).unwrap();
        let p = place(&layout, &[(1, 0.9), (2, 0.9)]).unwrap();
        assert!((p[0] - 10.0).abs() < 1e-4 && (p[1] - 5.0).abs() < 1e-4, "{p:?}");
        let near_first = place(&layout, &[(0, 0.95), (2, 0.5)]).unwrap();
        assert!(near_first[0] < 2.0 && near_first[1] < 2.0, "the most similar counts most: {near_first:?}");
        assert_eq!(place(&layout, &[]), None);
        assert_eq!(place(&layout, &[(9, 0.9)]), None, "rows outside the map are ignored");
    }
}
