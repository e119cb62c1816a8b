//! The HNSW graph in the form the server searches: flat neighbour lists (`u32` rows) per level, over
//! the embedding matrix itself.
//!
//! `hnsw_rs` builds the graph; its in-memory form keeps a copy of every vector and one reference-counted
//! allocation per edge (about 4 KB per 384-d point, three times the vector), and its file format reloads
//! edge by edge. Frozen into this form, a 242k-row graph is ~50 MB, loads in one read, and a search is
//! array lookups and dot products on the one copy of the vectors.

use super::sidecar::{Fnv, StreamReader};
use super::{dot, Hit};
use anyhow::{ensure, Context, Result};
use hnsw_rs::hnsw::Hnsw;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io::Read;
use std::path::Path;

const MAGIC: &[u8; 8] = b"CVGRAPH1";

/// One level: neighbour lists of its nodes. Level 0 holds every row (`nodes` empty, node = row);
/// upper levels hold a few rows each (`nodes` sorted, node = position in it).
#[derive(Debug, Clone, Default, PartialEq)]
struct Level {
    nodes: Vec<u32>,
    /// `offsets[i]..offsets[i + 1]` is node i's slice of `neighbours`.
    offsets: Vec<u32>,
    neighbours: Vec<u32>,
}

impl Level {
    fn of(&self, row: u32) -> &[u32] {
        let node = if self.nodes.is_empty() {
            row as usize
        } else {
            match self.nodes.binary_search(&row) {
                Ok(i) => i,
                Err(_) => return &[],
            }
        };
        match (self.offsets.get(node), self.offsets.get(node + 1)) {
            (Some(&a), Some(&b)) => &self.neighbours[a as usize..b as usize],
            _ => &[],
        }
    }
}

/// A frozen HNSW graph over `rows` rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    rows: usize,
    entry: u32,
    /// Level 0 first.
    levels: Vec<Level>,
}

/// Score and row, ordered by score (then row, for determinism).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scored(f32, u32);

impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(other.1.cmp(&self.1))
    }
}

thread_local! {
    /// Visited marks of this thread's searches: `marks[row] == epoch` means visited in the current one.
    static VISITED: RefCell<(Vec<u32>, u32)> = const { RefCell::new((Vec::new(), 0)) };
}

impl Graph {
    /// Freeze a graph built by `hnsw_rs` whose data ids are rows `0..rows`.
    pub fn from_hnsw(hnsw: &Hnsw<'_, f32, super::UnitCosine>, rows: usize) -> Result<Graph> {
        let indexation = hnsw.get_point_indexation();
        let top = hnsw.get_max_level_observed() as usize;
        // (level, row) → neighbour rows.
        let mut lists: Vec<Vec<(u32, Vec<u32>)>> = vec![Vec::new(); top + 1];
        let mut entry = None;
        for layer in (0..=top).rev() {
            for point in indexation.get_layer_iterator(layer) {
                let row = point.get_origin_id();
                ensure!(row < rows, "graph point {row} outside the matrix of {rows} rows");
                entry.get_or_insert(row as u32);
                for (level, neighbours) in point.get_neighborhood_id().into_iter().enumerate().take(layer + 1) {
                    let ids = neighbours.iter().map(|n| n.d_id as u32).collect();
                    lists[level].push((row as u32, ids));
                }
            }
        }
        let levels = lists
            .into_iter()
            .enumerate()
            .map(|(level, mut nodes)| {
                nodes.sort_unstable_by_key(|(row, _)| *row);
                let mut out = Level::default();
                if level == 0 {
                    ensure!(nodes.len() == rows, "level 0 holds {} of {rows} rows", nodes.len());
                } else {
                    out.nodes = nodes.iter().map(|(r, _)| *r).collect();
                }
                out.offsets.push(0);
                for (_, ids) in nodes {
                    out.neighbours.extend(ids);
                    out.offsets.push(out.neighbours.len() as u32);
                }
                Ok(out)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Graph { rows, entry: entry.unwrap_or(0), levels })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Edges over all levels (for the size report).
    pub fn edges(&self) -> usize {
        self.levels.iter().map(|l| l.neighbours.len()).sum()
    }

    /// The `k` best rows accepted by `keep`, best first. Filters apply inside the search: rejected rows
    /// are walked through but never returned, so `k` results come back whenever the graph reaches
    /// them within the candidate list of `ef`.
    ///
    /// `start`: a row whose vector is (close to) the query, e.g. the query's own row for "more like
    /// this": the level-0 search starts there instead of at the end of the greedy descent from the
    /// entry point, i.e. already among the query's neighbours. `None` (or a row outside the graph)
    /// descends from the entry point.
    pub fn search<'v>(
        &self,
        vector: &(dyn Fn(usize) -> &'v [f32] + Sync),
        query: &[f32],
        start: Option<usize>,
        k: usize,
        ef: usize,
        keep: &(dyn Fn(usize) -> bool + Sync),
    ) -> Vec<Hit> {
        let score = |row: u32| dot(query, vector(row as usize));
        let fetch = |row: u32| prefetch(vector(row as usize));
        let mut hits = self.search_by(score, fetch, start, k, ef, keep);
        hits.truncate(k);
        hits
    }

    /// The search itself, over any scoring of rows against the query (`score`; `fetch` asks for a
    /// row's data ahead of scoring it): up to `max(ef, k)` rows accepted by `keep`, best first by
    /// `score` (the caller truncates to `k`, or re-scores them first).
    pub fn search_by(
        &self,
        score: impl Fn(u32) -> f32,
        fetch: impl Fn(u32),
        start: Option<usize>,
        k: usize,
        ef: usize,
        keep: &(dyn Fn(usize) -> bool + Sync),
    ) -> Vec<Hit> {
        if self.rows == 0 || k == 0 {
            return Vec::new();
        }
        let ef = ef.max(k);
        let from_start = start.filter(|&r| r < self.rows).map(|r| r as u32);
        let first = from_start.unwrap_or(self.entry);
        let mut cur = Scored(score(first), first);
        // Greedy descent through the upper levels (none when starting at a given row).
        let descent = if from_start.is_some() { 0 } else { self.levels.len().saturating_sub(1) };
        for level in self.levels.iter().skip(1).rev().take(descent) {
            loop {
                let mut best = cur;
                for &n in level.of(cur.1) {
                    let s = Scored(score(n), n);
                    if s > best {
                        best = s;
                    }
                }
                if best == cur {
                    break;
                }
                cur = best;
            }
        }
        VISITED.with(|cell| {
            let (marks, epoch) = &mut *cell.borrow_mut();
            if marks.len() < self.rows {
                marks.resize(self.rows, 0);
            }
            *epoch = epoch.wrapping_add(1);
            if *epoch == 0 {
                marks.iter_mut().for_each(|m| *m = 0);
                *epoch = 1;
            }
            let epoch = *epoch;
            let level0 = &self.levels[0];
            // Candidates best first; results worst first (a min-heap through Reverse).
            let mut candidates = BinaryHeap::with_capacity(ef * 4);
            let mut results: BinaryHeap<std::cmp::Reverse<Scored>> = BinaryHeap::with_capacity(ef + 1);
            let mut fresh: Vec<u32> = Vec::with_capacity(64);
            marks[cur.1 as usize] = epoch;
            candidates.push(cur);
            if keep(cur.1 as usize) {
                results.push(std::cmp::Reverse(cur));
            }
            while let Some(c) = candidates.pop() {
                if results.len() >= ef && c < results.peek().expect("non-empty").0 {
                    break;
                }
                // The unvisited neighbours first, each asked for ahead (the vectors are scattered
                // over hundreds of MB: the loads overlap instead of waiting one by one), then scored.
                fresh.clear();
                for &n in level0.of(c.1) {
                    let mark = &mut marks[n as usize];
                    if *mark != epoch {
                        *mark = epoch;
                        fetch(n);
                        fresh.push(n);
                    }
                }
                for &n in &fresh {
                    let s = Scored(score(n), n);
                    if results.len() < ef || s > results.peek().expect("non-empty").0 {
                        candidates.push(s);
                        if keep(n as usize) {
                            results.push(std::cmp::Reverse(s));
                            if results.len() > ef {
                                results.pop();
                            }
                        }
                    }
                }
            }
            let mut hits: Vec<Hit> = results.into_iter().map(|r| Hit { row: r.0 .1 as usize, score: r.0 .0 }).collect();
            hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row)));
            hits
        })
    }

    /// The file's bytes: magic, then `u64` rows, entry, level count; per level `u64` node, offset and
    /// neighbour counts followed by those `u32` arrays; a `u64` checksum of everything before it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + 4 * (self.edges() + 2 * self.rows));
        out.extend_from_slice(MAGIC);
        for v in [self.rows as u64, u64::from(self.entry), self.levels.len() as u64] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for l in &self.levels {
            for v in [l.nodes.len(), l.offsets.len(), l.neighbours.len()] {
                out.extend_from_slice(&(v as u64).to_le_bytes());
            }
            for arr in [&l.nodes, &l.offsets, &l.neighbours] {
                for v in arr.iter() {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        let mut sum = Fnv::new();
        sum.feed(&out);
        out.extend_from_slice(&sum.finish().to_le_bytes());
        out
    }

    /// Parse and fully validate a graph file: any damage is an error, never a panic or a wrong search.
    pub fn from_bytes(bytes: &[u8]) -> Result<Graph> {
        Graph::read(bytes, bytes.len() as u64)
    }

    pub fn save(&self, path: &Path) -> Result<u64> {
        let bytes = self.to_bytes();
        crate::artifacts::write_atomic(path, &bytes)?;
        Ok(bytes.len() as u64)
    }

    /// Read and fully validate a graph file (as [`Graph::from_bytes`]), straight into the neighbour
    /// arrays: no copy of the whole file is held beside them.
    pub fn load(path: &Path) -> Result<Graph> {
        let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let len = file.metadata()?.len();
        Graph::read(std::io::BufReader::with_capacity(1 << 20, file), len)
    }

    /// Parse a graph file of `len` bytes from `inner`, checksumming it on the way.
    fn read(inner: impl Read, len: u64) -> Result<Graph> {
        ensure!(len >= (MAGIC.len() + 32) as u64, "not a cinevec graph file");
        let mut r = StreamReader::new(inner, len - 8);
        let mut magic = [0u8; 8];
        r.fill(&mut magic)?;
        ensure!(&magic == MAGIC, "not a cinevec graph file");
        let rows = r.u64()? as usize;
        let entry = r.u64()?;
        let count = r.u64()? as usize;
        ensure!((1..=64).contains(&count), "graph has {count} levels");
        ensure!(rows < u32::MAX as usize && (entry as usize) < rows.max(1), "bad graph header");
        let mut levels = Vec::with_capacity(count);
        for level in 0..count {
            let (n_nodes, n_offsets, n_neighbours) = (r.u64()? as usize, r.u64()? as usize, r.u64()? as usize);
            let l = Level { nodes: r.u32s(n_nodes)?, offsets: r.u32s(n_offsets)?, neighbours: r.u32s(n_neighbours)? };
            check_level(&l, level, rows)?;
            levels.push(l);
        }
        r.finish("graph file")?;
        Ok(Graph { rows, entry: entry as u32, levels })
    }
}

/// A level's arrays are consistent: offsets cover the neighbours, rows in range, nodes sorted.
fn check_level(l: &Level, level: usize, rows: usize) -> Result<()> {
    let nodes = if level == 0 { rows } else { l.nodes.len() };
    ensure!(level > 0 || l.nodes.is_empty(), "level 0 lists nodes");
    ensure!(l.offsets.len() == nodes + 1 && l.offsets[0] == 0, "level {level}: bad offsets");
    ensure!(l.offsets.windows(2).all(|w| w[0] <= w[1]), "level {level}: offsets decrease");
    ensure!(*l.offsets.last().expect("non-empty") as usize == l.neighbours.len(), "level {level}: bad offsets");
    ensure!(l.nodes.windows(2).all(|w| w[0] < w[1]), "level {level}: nodes not sorted");
    ensure!(l.nodes.iter().chain(&l.neighbours).all(|&n| (n as usize) < rows), "level {level}: row out of range");
    Ok(())
}

/// Start loading a vector into the cache (a hint; no effect where unsupported): every 64-byte line it
/// touches, the last one included when it is not aligned.
#[inline(always)]
pub fn prefetch<T>(v: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        let bytes = std::mem::size_of_val(v);
        let p = v.as_ptr().cast::<i8>();
        let mut at = 0;
        while at < bytes {
            // SAFETY: prefetching is a hint that never faults; the address is inside a live slice.
            unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.add(at)) };
            at += 64;
        }
        if bytes > 0 {
            // SAFETY: as above (the slice's last byte).
            unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.add(bytes - 1)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}
