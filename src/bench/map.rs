//! `cinevec bench-map`: how long the catalog map's layout takes, and how well it keeps neighbours,
//! at catalog sizes past what can be embedded on a CPU in a session.
//!
//! Synthetic rows: unit vectors in clusters (a centre plus noise, renormalised). The neighbour table
//! is found exactly within each row's cluster (the build finds it with the HNSW graph; only its shape,
//! 16 neighbours a row, matters for the layout's time). Reported: the layout's seconds, and the share
//! of each sampled row's 10 table neighbours that are among its 10 nearest points on the map, beside
//! the share chance gives. Then the `GET /v1/map` body for that many movies: its bytes and how long
//! serialising it takes.

use crate::index::layout::{Layout, LayoutParams};
use crate::index::table::WIDTH;
use crate::index::{dot, Hit, NeighbourTable};
use crate::rng::Rng;
use crate::service::map::{MapResponse, GRID};
use anyhow::Result;
use std::time::Instant;

/// `cinevec bench-map`'s settings.
#[derive(Debug, Clone)]
pub struct BenchMapOptions {
    pub rows: Vec<usize>,
    pub dim: usize,
    /// Rows per cluster.
    pub cluster: usize,
    pub layout: LayoutParams,
    /// Also measure the saved map of a built artifacts folder (its neighbour overlap only).
    pub artifacts: Option<std::path::PathBuf>,
}

pub fn run(o: &BenchMapOptions) -> Result<()> {
    if let Some(dir) = &o.artifacts {
        let manifest = crate::artifacts::read_manifest(dir)?;
        let table = crate::index::load_table(dir, &manifest.run_id, manifest.rows)?;
        let layout = crate::index::layout::load_any(&crate::index::map_path(dir), &manifest.run_id, manifest.rows)?;
        let (overlap, chance) = overlap(&layout, &table, 10);
        println!("{}: {} rows, map_nn10_overlap {overlap:.3} (chance {chance:.4})", dir.display(), manifest.rows);
    }
    println!(
        "rows     layout_s  passes  map_nn10_overlap  chance   json_MB  json_s   (dim {}, {} rows a cluster)",
        o.dim, o.cluster
    );
    for &rows in &o.rows {
        let matrix = clustered(rows, o.dim, o.cluster, 42);
        let table = table_within_clusters(&matrix, o.dim, o.cluster);
        let t = Instant::now();
        let layout = Layout::compute(&matrix, o.dim, &table, o.layout)?;
        let seconds = t.elapsed().as_secs_f64();
        let (overlap, chance) = overlap(&layout, &table, 10);
        let (mb, json_s) = json_size(&layout);
        println!(
            "{rows:<8} {seconds:>8.1}  {:>6}  {overlap:>16.3}  {chance:>6.4}  {mb:>7.1}  {json_s:>6.2}",
            o.layout.epochs_for(rows)
        );
    }
    Ok(())
}

fn clustered(rows: usize, dim: usize, cluster: usize, seed: u64) -> Vec<f32> {
    use rayon::prelude::*;
    let mut matrix = vec![0f32; rows * dim];
    matrix.par_chunks_mut(dim).enumerate().for_each(|(r, out)| {
        let mut centre = Rng::for_item(seed, 1, (r / cluster) as u64);
        let mut noise = Rng::for_item(seed, 2, r as u64);
        out.iter_mut().for_each(|v| *v = centre.next_f32() - 0.5 + (noise.next_f32() - 0.5) * 0.6);
        let norm = out.iter().map(|v| v * v).sum::<f32>().sqrt();
        out.iter_mut().for_each(|v| *v /= norm);
    });
    matrix
}

fn table_within_clusters(matrix: &[f32], dim: usize, cluster: usize) -> NeighbourTable {
    let rows = matrix.len() / dim;
    let v = |r: usize| &matrix[r * dim..(r + 1) * dim];
    NeighbourTable::build(rows, WIDTH, 0, |row| {
        let start = row / cluster * cluster;
        let hits = (start..(start + cluster).min(rows))
            .filter(|&r| r != row)
            .map(|r| Hit { row: r, score: dot(v(row), v(r)) });
        crate::index::best_k(hits.collect(), WIDTH)
    })
}

/// Mean share of `k` table neighbours among the `k` nearest on the map, over up to 500 rows spread
/// evenly; and the share chance gives.
fn overlap(layout: &Layout, table: &NeighbourTable, k: usize) -> (f64, f64) {
    use rayon::prelude::*;
    let rows = layout.rows();
    let step = (rows / 500).max(1);
    let sampled: Vec<usize> = (0..rows).step_by(step).collect();
    let shared: usize = sampled
        .par_iter()
        .map(|&row| {
            let p = layout.point(row);
            let mut d: Vec<(f32, usize)> = (0..rows)
                .filter(|&r| r != row)
                .map(|r| {
                    let q = layout.point(r);
                    ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2), r)
                })
                .collect();
            d.select_nth_unstable_by(k, |a, b| a.0.total_cmp(&b.0));
            let near: Vec<usize> = d[..k].iter().map(|x| x.1).collect();
            table.of(row).take(k).filter(|n| near.contains(n)).count()
        })
        .sum();
    (shared as f64 / (sampled.len() * k) as f64, k as f64 / (rows - 1) as f64)
}

/// The `GET /v1/map` body for the layout's rows with IMDb-like ids and titles: MB and seconds to write.
fn json_size(layout: &Layout) -> (f64, f64) {
    let n = layout.rows();
    let answer = MapResponse {
        count: n,
        grid: GRID,
        ids: (0..n).map(|i| format!("tt{:07}", 100_000 + i)).collect(),
        titles: (0..n).map(|i| format!("A film of {} words {i}", i % 7)).collect(),
        years: (0..n).map(|i| Some(1920 + (i % 100) as i64)).collect(),
        x: (0..n).map(|i| (layout.point(i)[0].abs() * 1000.0) as u32 % GRID).collect(),
        y: (0..n).map(|i| (layout.point(i)[1].abs() * 1000.0) as u32 % GRID).collect(),
        rating: (0..n).map(|i| Some(1.0 + (i % 90) as f32 / 10.0)).collect(),
        predicted: (0..n).map(|i| 1.0 + (i % 900) as f32 / 100.0).collect(),
    };
    let t = Instant::now();
    let bytes = serde_json::to_vec(&answer).map(|b| b.len()).unwrap_or(0);
    (bytes as f64 / 1e6, t.elapsed().as_secs_f64())
}
