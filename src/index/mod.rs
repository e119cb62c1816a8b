//! Nearest-neighbour search over unit vectors: an HNSW graph for speed, brute force for checking and
//! for filters so selective that the graph cannot fill `k`.
//!
//! Rows are identified by their position in the embedding matrix (plus rows added at run time after
//! it). Scores are cosine similarities; vectors are L2-normalised, so that is a dot product.
//!
//! `hnsw_rs` builds the graph (in parallel); it is then frozen into flat neighbour lists ([`graph`])
//! that search the embedding matrix in place, shared with the catalog: one copy of the vectors in the
//! process. The index holds no rows added at run time: their owner (the service's live catalog, one
//! row space for entries and vectors) searches them by brute force beside the graph (they are few;
//! the next `cinevec embed` puts them into the matrix and the graph).

mod distance;
pub mod graph;
pub mod layout;
mod quantized;
pub mod sidecar;
pub mod sketch;
pub mod table;

pub use distance::{dot, UnitCosine};
pub use layout::{Layout, LayoutParams};
pub use quantized::Quantized;
pub use sketch::{Best, Sketch};
pub use table::NeighbourTable;

use anyhow::{Context, Result};
use graph::Graph;
use hnsw_rs::hnsw::Hnsw;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

const GRAPH_FILE: &str = "index.graph";
const MANIFEST: &str = "index.manifest.json";
/// The int8 copy of the vectors the graph is walked on (see [`quantized`]).
const Q8_FILE: &str = "index.q8";
/// Every matrix row's nearest neighbours (see [`table`]).
const KNN_FILE: &str = "index.knn";
/// Every matrix row's sketch, for scanning many rows (see [`sketch`]).
const SKETCH_FILE: &str = "index.sketch";
/// The catalog map, made from the neighbour table (see [`layout`]).
const MAP_FILE: &str = "index.map";
const GRAPH_FORMAT: &str = "cinevec-graph/1";
/// Files of the graph format before this one (hnsw_rs dumps), removed when a new graph is saved.
const LEGACY_FILES: [&str; 2] = ["index.hnsw.graph", "index.hnsw.data"];

/// Graph construction and search parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexParams {
    /// Neighbours kept per node and layer (HNSW's M).
    pub max_connections: usize,
    /// Candidate list size while building.
    pub ef_construction: usize,
    /// Candidate list size while searching (raised to `k` when `k` is larger).
    pub ef_search: usize,
    /// Candidate list size of a search that starts at the query's own row (more like this by id;
    /// [`VectorIndex::search_from`]): it starts among the neighbours, so it needs a smaller list.
    pub ef_search_by_row: usize,
    /// Walk the graph on an int8 copy of the vectors (`index.q8`, a quarter of the matrix in memory;
    /// searches about 3 × faster) rather than on the f32 vectors themselves.
    #[serde(default = "walk_int8_default")]
    pub int8_walk: bool,
}

fn walk_int8_default() -> bool {
    true
}

impl Default for IndexParams {
    fn default() -> Self {
        IndexParams { max_connections: 24, ef_construction: 200, ef_search: 96, ef_search_by_row: 400, int8_walk: true }
    }
}

/// Written beside a saved graph: which matrix it indexes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct IndexManifest {
    format: String,
    /// `run_id` of the embedding set the graph was built from.
    embeddings_run_id: String,
    rows: usize,
    dim: usize,
    max_connections: usize,
    ef_construction: usize,
    graph_bytes: u64,
}

/// One search hit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub row: usize,
    /// Cosine similarity with the query.
    pub score: f32,
}

/// An embedding matrix shared by the index and the catalog: `[rows, dim]` row-major.
pub type SharedMatrix = Arc<Vec<f32>>;

/// An HNSW graph over the rows of an embedding matrix (immutable once built or loaded).
pub struct VectorIndex {
    graph: Graph,
    matrix: SharedMatrix,
    /// int8 codes of the matrix rows: the graph is walked on them, the results re-scored in f32.
    /// `None`: walked on the f32 rows.
    quantized: Option<Quantized>,
    /// The matrix rows' neighbours, for more like this by id ([`VectorIndex::neighbours_of`]).
    table: Option<NeighbourTable>,
    /// The matrix rows' sketches, for filtered scans over many rows ([`VectorIndex::sketch`]).
    sketch: Option<Sketch>,
    dim: usize,
    params: IndexParams,
}

impl VectorIndex {
    /// Build a graph over every row of a `[rows, dim]` matrix (copied; see [`VectorIndex::build_shared`]).
    pub fn build(matrix: &[f32], dim: usize, params: IndexParams) -> Self {
        Self::build_shared(Arc::new(matrix.to_vec()), dim, params)
    }

    /// Build a graph over every row of a shared matrix (in parallel), reporting progress.
    pub fn build_shared(matrix: SharedMatrix, dim: usize, params: IndexParams) -> Self {
        let rows = matrix.len() / dim;
        let hnsw = Hnsw::new(params.max_connections, rows.max(1), 16, params.ef_construction, UnitCosine);
        let bar = crate::progress::bar(rows as u64, "index", "rows");
        for (chunk_no, chunk) in matrix.chunks(dim * 4096).enumerate() {
            let base = chunk_no * 4096;
            let items: Vec<(&[f32], usize)> = chunk.chunks_exact(dim).enumerate().map(|(i, v)| (v, base + i)).collect();
            hnsw.parallel_insert_slice(&items);
            bar.inc(items.len() as u64);
        }
        bar.finish_and_clear();
        let graph = Graph::from_hnsw(&hnsw, rows).expect("hnsw_rs numbers points by the rows given to it");
        drop(hnsw);
        let quantized = Some(Quantized::build(&matrix, dim));
        let sketch = Some(Sketch::build(&matrix, dim));
        let mut index = VectorIndex { graph, matrix, quantized, table: None, sketch, dim, params };
        index.table = Some(index.build_table());
        if !params.int8_walk {
            // It served the table's searches; the graph is walked on the f32 vectors from now on.
            index.quantized = None;
        }
        index
    }

    /// Find every matrix row's neighbours with the graph (by-id searches at `ef_search_by_row`).
    fn build_table(&self) -> NeighbourTable {
        let (dim, ef) = (self.dim, self.params.ef_search_by_row.max(table::WIDTH));
        NeighbourTable::build(self.graph.rows(), table::WIDTH, ef, |row| {
            let query = &self.matrix[row * dim..(row + 1) * dim];
            self.search_graph(query, Some(row), table::WIDTH, ef, &|r| r != row)
        })
    }

    /// The neighbour table, when there is one (for reports).
    pub fn table(&self) -> Option<&NeighbourTable> {
        self.table.as_ref()
    }

    /// The matrix rows' sketches, when held (a scan over many rows estimates with them first).
    pub fn sketch(&self) -> Option<&Sketch> {
        self.sketch.as_ref().filter(|s| s.rows() == self.graph.rows())
    }

    /// The int8 copy of the matrix rows, when held (the graph is walked on it; a sketch scan's
    /// candidates are narrowed with it before the f32 re-score).
    pub fn quantized(&self) -> Option<&Quantized> {
        self.quantized.as_ref().filter(|q| q.rows() == self.graph.rows())
    }

    /// Whether a neighbour table is held (else [`VectorIndex::neighbours_of`] answers nothing).
    pub fn has_table(&self) -> bool {
        self.table.is_some()
    }

    /// More like this for matrix row `row`: its `k` nearest rows accepted by `keep` (which must
    /// reject `row`), read from the neighbour table and re-scored. `None`
    /// when the table cannot give the answer the graph search would: no table, `row` not a matrix row,
    /// `k` over the table's width, or fewer than `k` of the row's neighbours accepted.
    pub fn neighbours_of(&self, row: usize, k: usize, keep: &(dyn Fn(usize) -> bool + Sync)) -> Option<Vec<Hit>> {
        let table = self.table.as_ref()?;
        if row >= table.rows() || k > table.width() || k == 0 {
            return None;
        }
        let dim = self.dim;
        let vector = |r: usize| &self.matrix[r * dim..(r + 1) * dim];
        let query = vector(row);
        let mut hits: Vec<Hit> = Vec::with_capacity(table.width());
        for n in table.of(row).filter(|&n| keep(n)) {
            graph::prefetch(vector(n));
            hits.push(Hit { row: n, score: 0.0 });
        }
        if hits.len() < k {
            return None;
        }
        hits.iter_mut().for_each(|h| h.score = dot(query, vector(h.row)));
        Some(best_k(hits, k))
    }

    /// Points in the graph.
    pub fn len(&self) -> usize {
        self.graph.rows()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn params(&self) -> IndexParams {
        self.params
    }

    /// Edges of the graph over all levels.
    pub fn edges(&self) -> usize {
        self.graph.edges()
    }

    /// The `k` best rows accepted by `keep`, best first. May return fewer than `k` when the filter is
    /// very selective; see [`search_exact`] for the complete answer.
    pub fn search(&self, query: &[f32], k: usize, keep: &(dyn Fn(usize) -> bool + Sync)) -> Vec<Hit> {
        self.search_ef(query, k, self.params.ef_search, keep)
    }

    /// [`VectorIndex::search`] with another candidate list size (raised to `k` when `k` is larger).
    pub fn search_ef(&self, query: &[f32], k: usize, ef: usize, keep: &(dyn Fn(usize) -> bool + Sync)) -> Vec<Hit> {
        self.search_from(query, None, k, ef, keep)
    }

    /// [`VectorIndex::search_ef`] for a query that is (near) the vector of row `start`, e.g. "more like
    /// this" by id: the graph search starts at that row's node, among the query's neighbours, instead
    /// of descending from the entry point. A `start` outside the graph (a row added at run time, or
    /// `None`) searches from the entry point.
    pub fn search_from(
        &self,
        query: &[f32],
        start: Option<usize>,
        k: usize,
        ef: usize,
        keep: &(dyn Fn(usize) -> bool + Sync),
    ) -> Vec<Hit> {
        self.search_graph(query, start, k, ef, keep)
    }

    fn search_graph(
        &self,
        query: &[f32],
        start: Option<usize>,
        k: usize,
        ef: usize,
        keep: &(dyn Fn(usize) -> bool + Sync),
    ) -> Vec<Hit> {
        let dim = self.dim;
        let matrix = &self.matrix;
        let vector = |row: usize| &matrix[row * dim..(row + 1) * dim];
        match &self.quantized {
            Some(q) if q.rows() == self.graph.rows() && query.len() == dim => {
                // Walk on the int8 codes; then the whole candidate list (not only the first k: the
                // codes' order is approximate) is re-scored with the f32 vectors.
                // A query that is the start row's own vector (more like this by id) has its codes.
                let own = start.filter(|&r| r < q.rows() && std::ptr::eq(query.as_ptr(), vector(r).as_ptr()));
                let encoded;
                let codes = match own {
                    Some(r) => q.row(r),
                    None => {
                        encoded = q.encode(query);
                        &encoded[..]
                    }
                };
                let score = |row: u32| q.score(codes, q.row(row as usize));
                let fetch = |row: u32| graph::prefetch(q.row(row as usize));
                let mut hits = self.graph.search_by(score, fetch, start, k, ef, keep);
                hits.iter().for_each(|h| graph::prefetch(vector(h.row)));
                hits.iter_mut().for_each(|h| h.score = dot(query, vector(h.row)));
                best_k(hits, k)
            }
            _ => self.graph.search(&vector, query, start, k, ef, keep),
        }
    }

    /// Walk the graph on the f32 vectors instead of the int8 codes (for measuring one against the other).
    pub fn without_quantized(mut self) -> Self {
        self.quantized = None;
        self
    }

    /// Bytes of the int8 copy of the vectors held (0 when the graph is walked on the f32 ones).
    pub fn quantized_bytes(&self) -> usize {
        self.quantized.as_ref().map_or(0, Quantized::bytes)
    }

    /// Save the graph into `dir` for an embedding set with `run_id`: the graph and the int8 codes
    /// first, the manifest last.
    pub fn save(&self, dir: &Path, run_id: &str, rows: usize) -> Result<()> {
        if let Some(q) = &self.quantized {
            q.save(&dir.join(Q8_FILE), run_id).context("cannot write the quantized vectors")?;
        }
        if let Some(t) = &self.table {
            t.save(&dir.join(KNN_FILE), run_id).context("cannot write the neighbour table")?;
        }
        if let Some(s) = &self.sketch {
            s.save(&dir.join(SKETCH_FILE), run_id).context("cannot write the row sketches")?;
        }
        let graph_bytes = self.graph.save(&dir.join(GRAPH_FILE)).context("cannot write the HNSW graph")?;
        let manifest = IndexManifest {
            format: GRAPH_FORMAT.to_string(),
            embeddings_run_id: run_id.to_string(),
            rows,
            dim: self.dim,
            max_connections: self.params.max_connections,
            ef_construction: self.params.ef_construction,
            graph_bytes,
        };
        crate::artifacts::write_atomic(&dir.join(MANIFEST), &serde_json::to_vec_pretty(&manifest)?)?;
        for name in LEGACY_FILES {
            let _ = std::fs::remove_file(dir.join(name));
        }
        Ok(())
    }

    /// Whether `dir` holds a complete saved graph (this format) built from the embedding set `run_id`
    /// (`rows` rows of `dim`) with the same construction parameters; says why not in the log.
    pub fn is_saved_for(dir: &Path, run_id: &str, rows: usize, dim: usize, params: IndexParams) -> bool {
        let Ok(text) = std::fs::read(dir.join(MANIFEST)) else { return false };
        let Ok(manifest) = serde_json::from_slice::<IndexManifest>(&text) else {
            tracing::info!("saved index is of another format: rebuilding");
            return false;
        };
        let wanted = (GRAPH_FORMAT, run_id, rows, dim, params.max_connections, params.ef_construction);
        let have = (
            manifest.format.as_str(),
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
        let path = dir.join(GRAPH_FILE);
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len != manifest.graph_bytes {
            tracing::warn!("saved index {} is damaged: rebuilding", path.display());
            return false;
        }
        true
    }

    /// Load the graph saved in `dir` if it was built from the embedding set `run_id` (whose rows are
    /// `matrix`) with the same construction parameters. `Ok(None)` means "missing, stale or damaged:
    /// rebuild".
    pub fn load(
        dir: &Path,
        run_id: &str,
        matrix: SharedMatrix,
        dim: usize,
        params: IndexParams,
    ) -> Result<Option<Self>> {
        let rows = matrix.len() / dim.max(1);
        if !Self::is_saved_for(dir, run_id, rows, dim, params) {
            return Ok(None);
        }
        let path = dir.join(GRAPH_FILE);
        match Graph::load(&path) {
            Ok(graph) if graph.rows() == rows => {
                let mut index = VectorIndex { graph, matrix, quantized: None, table: None, sketch: None, dim, params };
                // Building a missing table loads the int8 codes; they stay only for an int8 walk.
                index.load_or_build_table(dir, run_id);
                index.sketch = Some(load_or_build_sketch(dir, run_id, &index.matrix, rows, dim));
                if !params.int8_walk {
                    index.quantized = None;
                } else if index.quantized.is_none() {
                    index.quantized = Some(load_or_build_quantized(dir, run_id, &index.matrix, rows, dim));
                }
                Ok(Some(index))
            }
            Ok(graph) => {
                tracing::warn!("saved index holds {} rows, expected {rows}: rebuilding", graph.rows());
                Ok(None)
            }
            Err(e) => {
                tracing::warn!("cannot read the saved index ({e:#}): rebuilding");
                Ok(None)
            }
        }
    }
}

impl VectorIndex {
    /// The neighbour table saved in `dir` when it was made from the embedding set `run_id`; else
    /// (missing, stale or damaged) found now with the graph and saved for the next start.
    /// (The table is found by walking the graph on the int8 codes, which are loaded for that.)
    fn load_or_build_table(&mut self, dir: &Path, run_id: &str) {
        let path = dir.join(KNN_FILE);
        let table = match NeighbourTable::load(&path, run_id, self.graph.rows(), table::WIDTH) {
            Ok(t) => t,
            Err(e) => {
                if path.exists() {
                    tracing::warn!("saved neighbour table {} unusable ({e:#}): rebuilding it", path.display());
                } else {
                    tracing::info!("finding every row's {} nearest neighbours (saved for later starts)", table::WIDTH);
                }
                let rows = self.graph.rows();
                self.quantized = Some(load_or_build_quantized(dir, run_id, &self.matrix, rows, self.dim));
                let t = self.build_table();
                if let Err(e) = t.save(&path, run_id) {
                    tracing::warn!("could not save the neighbour table ({e:#}); it will be rebuilt next start");
                }
                t
            }
        };
        self.table = Some(table);
    }
}

/// Whether `dir` holds a neighbour table (`index.knn`) for the embedding set `run_id` of `rows` rows
/// (its header only: damage is found, and mended, when it is loaded).
pub fn table_saved_for(dir: &Path, run_id: &str, rows: usize) -> bool {
    NeighbourTable::saved_for(&dir.join(KNN_FILE), run_id, rows, table::WIDTH)
}

/// The neighbour table saved in `dir` for the embedding set `run_id` of `rows` rows (any damage or
/// mismatch is an error).
pub fn load_table(dir: &Path, run_id: &str, rows: usize) -> Result<NeighbourTable> {
    NeighbourTable::load(&dir.join(KNN_FILE), run_id, rows, table::WIDTH)
}

/// Where the catalog map of the artifacts in `dir` is saved.
pub fn map_path(dir: &Path) -> std::path::PathBuf {
    dir.join(MAP_FILE)
}

/// The row sketches saved in `dir` when they were made from the embedding set `run_id`; else (missing,
/// stale or damaged) made from `matrix` now and saved for the next start.
fn load_or_build_sketch(dir: &Path, run_id: &str, matrix: &[f32], rows: usize, dim: usize) -> Sketch {
    let path = dir.join(SKETCH_FILE);
    load_or_build(
        &path,
        "row sketches",
        "sketching the rows (for filtered scans; saved for later starts)",
        || Sketch::load(&path, run_id, rows, dim),
        || Sketch::build(matrix, dim),
        |s| s.save(&path, run_id),
    )
}

/// The int8 codes saved in `dir` when they were made from the embedding set `run_id`; else (missing,
/// stale or damaged) made from `matrix` now and saved for the next start.
fn load_or_build_quantized(dir: &Path, run_id: &str, matrix: &[f32], rows: usize, dim: usize) -> Quantized {
    let path = dir.join(Q8_FILE);
    load_or_build(
        &path,
        "quantized vectors",
        "quantizing the vectors (int8, saved for later starts)",
        || Quantized::load(&path, run_id, rows, dim),
        || Quantized::build(matrix, dim),
        |q| q.save(&path, run_id),
    )
}

/// A sidecar (`what`, at `path`) as `load` reads it; else (missing, stale or damaged) made by `build`
/// now, saying so (`building` when there was no file), and saved by `save` for the next start.
fn load_or_build<T>(
    path: &Path,
    what: &str,
    building: &str,
    load: impl FnOnce() -> Result<T>,
    build: impl FnOnce() -> T,
    save: impl FnOnce(&T) -> Result<u64>,
) -> T {
    match load() {
        Ok(found) => found,
        Err(e) => {
            if path.exists() {
                tracing::warn!("saved {what} {} unusable ({e:#}): rebuilding them", path.display());
            } else {
                tracing::info!("{building}");
            }
            let made = build();
            if let Err(e) = save(&made) {
                tracing::warn!("could not save the {what} ({e:#}); they will be rebuilt next start");
            }
            made
        }
    }
}

/// Remove a saved graph from `dir` (the next start rebuilds it).
pub fn remove_saved(dir: &Path) -> Result<()> {
    for name in [MANIFEST, GRAPH_FILE, Q8_FILE, KNN_FILE, MAP_FILE].into_iter().chain(LEGACY_FILES) {
        match std::fs::remove_file(dir.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {}", dir.join(name).display()))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Bytes of the saved graph file in `dir` (0 when none).
pub fn saved_graph_bytes(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(GRAPH_FILE)).map(|m| m.len()).unwrap_or(0)
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
    let hits = (0..count)
        .into_par_iter()
        .filter(|&r| keep(r))
        .filter_map(|r| rows(r).map(|v| Hit { row: r, score: dot(query, v) }));
    best_k_par(hits, k)
}

/// The `k` best of a parallel stream of hits, best first (ties by row): each thread keeps a short
/// list, never the whole stream (a scan of the catalog holds a few hundred hits, not a copy per row).
pub fn best_k_par(hits: impl rayon::iter::ParallelIterator<Item = Hit>, k: usize) -> Vec<Hit> {
    use rayon::iter::ParallelIterator;
    if k == 0 {
        return Vec::new();
    }
    let limit = (4 * k).max(64);
    let kept = hits
        .fold(Vec::new, |mut acc: Vec<Hit>, hit| {
            acc.push(hit);
            if acc.len() >= limit {
                acc = best_k(acc, k);
            }
            acc
        })
        .reduce(Vec::new, |mut a, b| {
            a.extend(b);
            if a.len() >= limit {
                a = best_k(a, k);
            }
            a
        });
    best_k(kept, k)
}

/// The `k` best hits, best first (ties by row), without sorting the rest.
pub fn best_k(mut hits: Vec<Hit>, k: usize) -> Vec<Hit> {
    let k = k.min(hits.len());
    if k == 0 {
        return Vec::new();
    }
    // Ties by row in the selection too, so that which of several equal scores make the cut is fixed.
    let order = |a: &Hit, b: &Hit| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row));
    hits.select_nth_unstable_by(k - 1, order);
    hits.truncate(k);
    hits.sort_by(order);
    hits
}
