//! Every matrix row's nearest neighbours, found once with the graph and kept: "more like this" by id
//! is the service's most frequent request, and its answer for a row of the matrix does not change
//! until the matrix does. A by-id search then reads `WIDTH` neighbour rows and re-scores them with
//! the f32 vectors instead of walking the graph (hundreds of candidate rows scattered over the
//! matrix).
//!
//! The table answers whenever it can do so exactly as the graph search would: the query is a matrix
//! row, `k <= WIDTH`, and at least `k` of the row's neighbours pass the request's filter (the `k`
//! best of them are then the `k` best of all matrix rows passing it, since every row outside the
//! list scores no higher than the list's last). Rows added at run time are searched beside it by
//! brute force, as beside the graph, and rows replaced since are skipped by the filter. Otherwise the
//! caller walks the graph.
//!
//! Saved beside the graph as `index.knn` (see [`super::sidecar`]) and rebuilt with it.

use super::Hit;
use anyhow::{bail, Context, Result};
use std::path::Path;

const MAGIC: &[u8; 8] = b"CVKNN001";
/// Neighbours kept per row.
pub const WIDTH: usize = 16;
/// A list shorter than `WIDTH` (a catalog of fewer rows) is padded with this.
const NONE: u32 = u32::MAX;

/// `rows × width` neighbour rows, best first.
pub struct NeighbourTable {
    rows: usize,
    width: usize,
    /// Little-endian `u32` rows (as saved; read in place).
    ids: Vec<u8>,
    /// Candidate list size of the graph searches that filled it.
    ef: usize,
}

impl std::fmt::Debug for NeighbourTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NeighbourTable")
            .field("rows", &self.rows)
            .field("width", &self.width)
            .field("ef", &self.ef)
            .finish()
    }
}

impl NeighbourTable {
    /// Fill the table with `search(row)` (the row's neighbours, best first, never the row itself) for
    /// every row, in parallel, reporting progress.
    pub fn build(rows: usize, width: usize, ef: usize, search: impl Fn(usize) -> Vec<Hit> + Sync) -> Self {
        use rayon::prelude::*;
        let bar = crate::progress::bar(rows as u64, "neighbours", "rows");
        let mut ids = vec![0u8; rows * width * 4];
        ids.par_chunks_mut(width * 4).enumerate().for_each(|(row, out)| {
            let hits = search(row);
            for (i, slot) in out.chunks_exact_mut(4).enumerate() {
                let n = hits.get(i).map_or(NONE, |h| h.row as u32);
                slot.copy_from_slice(&n.to_le_bytes());
            }
            if row % 1024 == 0 {
                bar.inc(1024.min(rows - row) as u64);
            }
        });
        bar.finish_and_clear();
        NeighbourTable { rows, width, ids, ef }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn ef(&self) -> usize {
        self.ef
    }

    pub fn bytes(&self) -> usize {
        self.ids.len()
    }

    /// The neighbours of `row` (`< rows`), best first.
    pub fn of(&self, row: usize) -> impl Iterator<Item = usize> + '_ {
        self.ids[row * self.width * 4..(row + 1) * self.width * 4]
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .take_while(|&n| n != NONE)
            .map(|n| n as usize)
    }

    /// Save into `path` for the embedding set `run_id`.
    pub fn save(&self, path: &Path, run_id: &str) -> Result<u64> {
        super::sidecar::save(path, MAGIC, &[self.rows as u64, self.width as u64, self.ef as u64], run_id, &self.ids)
    }

    /// Whether `path`'s header says it is the table of the embedding set `run_id` (`rows` rows) with
    /// lists of `width` (damage is found, and mended, when it is loaded).
    pub fn saved_for(path: &Path, run_id: &str, rows: usize, width: usize) -> bool {
        super::sidecar::open::<3>(path, MAGIC, run_id).is_ok_and(|(_, f)| f[0] == rows as u64 && f[1] == width as u64)
    }

    /// Load `path` if it holds the table of the embedding set `run_id` (`rows` rows) with lists of
    /// `width`: any damage, truncation or mismatch is an error (the caller rebuilds).
    pub fn load(path: &Path, run_id: &str, rows: usize, width: usize) -> Result<Self> {
        let ([_, _, ef], ids) = super::sidecar::load::<3>(path, MAGIC, run_id, |f| {
            if f[0] != rows as u64 || f[1] != width as u64 {
                bail!("neighbour table was made for {} rows of {} neighbours, not {rows} of {width}", f[0], f[1]);
            }
            rows.checked_mul(width * 4).context("neighbour table header is damaged")
        })?;
        let table = NeighbourTable { rows, width, ids, ef: ef as usize };
        let bad = (0..rows).find(|&r| table.of(r).any(|n| n >= rows || n == r));
        if let Some(row) = bad {
            bail!("neighbour table is damaged (row {row} lists a row outside the matrix, or itself)");
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(rows: &[usize]) -> Vec<Hit> {
        rows.iter().map(|&row| Hit { row, score: 0.5 }).collect()
    }

    #[test]
    fn short_lists_are_padded_and_read_back_without_the_padding() {
        let t =
            NeighbourTable::build(5, 3, 8, |row| hits(&[(row + 1) % 5, (row + 2) % 5][..if row == 0 { 1 } else { 2 }]));
        assert_eq!(t.of(0).collect::<Vec<_>>(), [1]);
        assert_eq!(t.of(4).collect::<Vec<_>>(), [0, 1]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.knn");
        t.save(&path, "run").unwrap();
        let back = NeighbourTable::load(&path, "run", 5, 3).unwrap();
        assert_eq!((back.ids.clone(), back.ef), (t.ids.clone(), 8));
        assert!(NeighbourTable::load(&path, "run", 6, 3).is_err(), "other rows");
        assert!(NeighbourTable::load(&path, "run", 5, 4).is_err(), "other width");
        assert!(NeighbourTable::load(&path, "other", 5, 3).is_err(), "other embedding set");
    }

    #[test]
    fn a_table_naming_rows_outside_the_matrix_or_itself_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [vec![7usize], vec![2]] {
            // Row 2 lists `bad`: 7 is outside 3 rows, 2 is itself. Checksummed like a good file.
            let t = NeighbourTable::build(3, 1, 8, |row| if row == 2 { hits(&bad) } else { hits(&[(row + 1) % 3]) });
            let path = dir.path().join("index.knn");
            t.save(&path, "run").unwrap();
            let err = NeighbourTable::load(&path, "run", 3, 1).unwrap_err().to_string();
            assert!(err.contains("damaged"), "{err}");
        }
    }
}
