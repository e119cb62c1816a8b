//! Nearest-neighbour search over unit vectors: an HNSW graph (`hnsw_rs`) for speed, brute force for
//! checking and for filters so selective that the graph cannot fill `k`.
//!
//! Rows are identified by their position in the embedding matrix (plus rows added at run time after
//! it). Scores are cosine similarities; vectors are L2-normalised, so that is a dot product.

mod distance;

pub use distance::{dot, UnitCosine};

use anyhow::{bail, Context, Result};
use hnsw_rs::api::AnnT;
use hnsw_rs::hnsw::Hnsw;
use hnsw_rs::hnswio::HnswIo;
use serde::{Deserialize, Serialize};
use std::path::Path;

const BASENAME: &str = "index";
const MANIFEST: &str = "index.manifest.json";

/// Graph construction and search parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexParams {
    /// Neighbours kept per node and layer (HNSW's M).
    pub max_connections: usize,
    /// Candidate list size while building.
    pub ef_construction: usize,
    /// Candidate list size while searching (raised to `k` when `k` is larger).
    pub ef_search: usize,
}

impl Default for IndexParams {
    fn default() -> Self {
        IndexParams { max_connections: 24, ef_construction: 200, ef_search: 96 }
    }
}

/// Written beside a saved graph: which matrix it indexes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct IndexManifest {
    /// `run_id` of the embedding set the graph was built from.
    embeddings_run_id: String,
    rows: usize,
    dim: usize,
    max_connections: usize,
    ef_construction: usize,
    graph_bytes: u64,
    data_bytes: u64,
}

/// One search hit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub row: usize,
    /// Cosine similarity with the query.
    pub score: f32,
}

/// An HNSW graph over the rows of an embedding matrix.
pub struct VectorIndex {
    graph: Hnsw<'static, f32, UnitCosine>,
    dim: usize,
    params: IndexParams,
}

impl VectorIndex {
    /// Build a graph over every row of a `[rows, dim]` matrix (in parallel), reporting progress.
    pub fn build(matrix: &[f32], dim: usize, params: IndexParams) -> Self {
        let rows = matrix.len() / dim;
        let graph = Hnsw::new(params.max_connections, rows.max(1), 16, params.ef_construction, UnitCosine);
        let bar = crate::progress::bar(rows as u64, "index", "rows");
        for (chunk_no, chunk) in matrix.chunks(dim * 4096).enumerate() {
            let base = chunk_no * 4096;
            let items: Vec<(&[f32], usize)> = chunk.chunks_exact(dim).enumerate().map(|(i, v)| (v, base + i)).collect();
            graph.parallel_insert_slice(&items);
            bar.inc(items.len() as u64);
        }
        bar.finish_and_clear();
        let mut index = VectorIndex { graph, dim, params };
        index.graph.set_searching_mode(true);
        index
    }

    /// Add (or re-add, for a replaced movie) one vector at run time.
    pub fn insert(&self, row: usize, vector: &[f32]) {
        self.graph.insert_slice((vector, row));
    }

    pub fn len(&self) -> usize {
        self.graph.get_nb_point()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn params(&self) -> IndexParams {
        self.params
    }

    /// The `k` best rows accepted by `keep`, best first. May return fewer than `k` when the filter is
    /// very selective; see [`search_exact`] for the complete answer.
    pub fn search(&self, query: &[f32], k: usize, keep: &(dyn Fn(usize) -> bool + Sync)) -> Vec<Hit> {
        let ef = self.params.ef_search.max(k);
        let filter = |id: &usize| keep(*id);
        self.graph
            .search_filter(query, k, ef, Some(&filter))
            .into_iter()
            .map(|n| Hit { row: n.d_id, score: 1.0 - n.distance })
            .collect()
    }

    /// Save the graph into `dir` for an embedding set with `run_id`: files first, manifest last.
    pub fn save(&self, dir: &Path, run_id: &str, rows: usize) -> Result<()> {
        let staging = dir.join(format!(".index-tmp-{}", std::process::id()));
        std::fs::create_dir_all(&staging)?;
        let result = (|| -> Result<IndexManifest> {
            self.graph.file_dump(&staging, BASENAME).context("cannot write the HNSW graph")?;
            let mut sizes = [0u64; 2];
            for (i, ext) in ["hnsw.graph", "hnsw.data"].iter().enumerate() {
                let name = format!("{BASENAME}.{ext}");
                sizes[i] = std::fs::metadata(staging.join(&name))?.len();
                std::fs::rename(staging.join(&name), dir.join(&name))?;
            }
            Ok(IndexManifest {
                embeddings_run_id: run_id.to_string(),
                rows,
                dim: self.dim,
                max_connections: self.params.max_connections,
                ef_construction: self.params.ef_construction,
                graph_bytes: sizes[0],
                data_bytes: sizes[1],
            })
        })();
        let _ = std::fs::remove_dir_all(&staging);
        let manifest = result?;
        crate::artifacts::write_atomic(&dir.join(MANIFEST), &serde_json::to_vec_pretty(&manifest)?)
    }

    /// Whether `dir` holds a complete saved graph built from the embedding set `run_id` (`rows` rows of
    /// `dim`) with the same construction parameters; says why not in the log.
    pub fn is_saved_for(dir: &Path, run_id: &str, rows: usize, dim: usize, params: IndexParams) -> bool {
        let Ok(text) = std::fs::read(dir.join(MANIFEST)) else { return false };
        let Ok(manifest) = serde_json::from_slice::<IndexManifest>(&text) else { return false };
        let wanted = (run_id, rows, dim, params.max_connections, params.ef_construction);
        let have = (
            manifest.embeddings_run_id.as_str(),
            manifest.rows,
            manifest.dim,
            manifest.max_connections,
            manifest.ef_construction,
        );
        if wanted != have {
            tracing::info!("saved index does not match the embedding set or parameters: rebuilding");
            return false;
        }
        for (ext, bytes) in [("hnsw.graph", manifest.graph_bytes), ("hnsw.data", manifest.data_bytes)] {
            let len = std::fs::metadata(dir.join(format!("{BASENAME}.{ext}"))).map(|m| m.len()).unwrap_or(0);
            if len != bytes {
                tracing::warn!("saved index file {BASENAME}.{ext} is damaged: rebuilding");
                return false;
            }
        }
        true
    }

    /// Load the graph saved in `dir` if it was built from the embedding set `run_id` with `rows` rows
    /// of `dim` and the same construction parameters. `Ok(None)` means "missing or stale: rebuild".
    pub fn load(dir: &Path, run_id: &str, rows: usize, dim: usize, params: IndexParams) -> Result<Option<Self>> {
        if !Self::is_saved_for(dir, run_id, rows, dim, params) {
            return Ok(None);
        }
        // hnsw_rs ties the graph's lifetime to its reader and asserts on malformed input: the reader
        // lives for the process (one per load), and a panic is turned into "rebuild".
        let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(dir, BASENAME)));
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run_once(move || load_graph(io))));
        match loaded {
            Ok(Ok(mut graph)) => {
                if graph.get_nb_point() != rows {
                    bail!("saved index holds {} points, expected {rows}", graph.get_nb_point());
                }
                graph.set_searching_mode(true);
                Ok(Some(VectorIndex { graph, dim, params }))
            }
            Ok(Err(e)) => {
                tracing::warn!("cannot read the saved index ({e}): rebuilding");
                Ok(None)
            }
            Err(_) => {
                tracing::warn!("the saved index is malformed: rebuilding");
                Ok(None)
            }
        }
    }
}

fn load_graph(io: &'static mut HnswIo) -> anyhow::Result<Hnsw<'static, f32, UnitCosine>> {
    io.load_hnsw::<f32, UnitCosine>()
}

/// Pins a closure's kind to `FnOnce`, so it may hand its captured `&'static mut` on.
fn run_once<R>(f: impl FnOnce() -> R) -> impl FnOnce() -> R {
    f
}

/// Brute-force search: the exact `k` best rows accepted by `keep`, best first.
pub fn search_exact<'a>(
    rows: &(dyn Fn(usize) -> Option<&'a [f32]> + Sync),
    count: usize,
    query: &[f32],
    k: usize,
    keep: &(dyn Fn(usize) -> bool + Sync),
) -> Vec<Hit> {
    use rayon::prelude::*;
    let hits: Vec<Hit> = (0..count)
        .into_par_iter()
        .filter(|&r| keep(r))
        .filter_map(|r| rows(r).map(|v| Hit { row: r, score: dot(query, v) }))
        .collect();
    best_k(hits, k)
}

/// The `k` best hits, best first (ties by row), without sorting the rest.
pub fn best_k(mut hits: Vec<Hit>, k: usize) -> Vec<Hit> {
    let k = k.min(hits.len());
    if k == 0 {
        return Vec::new();
    }
    hits.select_nth_unstable_by(k - 1, |a, b| b.score.total_cmp(&a.score));
    hits.truncate(k);
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row)));
    hits
}
