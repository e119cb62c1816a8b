//! Which way a filtered search goes, chosen per request from how many movies the filter lets through.
//!
//! A filter the neighbour table cannot answer (fewer than `k` of a movie's stored neighbours pass) used
//! to walk the graph with the filter inside the search: cheap when most movies pass, but a walk keeps
//! going until it has found `ef` movies that pass, so its cost grows as `ef / selectivity`, and a rare
//! genre or a narrow year range made it visit most of the graph. Scoring only the movies that pass
//! costs `matches` dot products instead. So each request is planned:
//!
//! 1. [`Plan::Table`]: more like this by id, when `k` of the movie's stored neighbours pass;
//! 2. [`Plan::Scan`]: an exact scan over the movies that pass, when they are few (cheaper than the
//!    walk by the cost model in [`FieldStats::plan`]); the candidates come from the shortest of the
//!    lists kept per genre, per decade, and of rows by votes and by rating, so finding them costs a
//!    slice, not a pass over the catalog;
//! 3. [`Plan::Sketch`]: the same rows, but estimated first from their sketches ([`Sketch`]: 64 int8
//!    numbers a row, a twenty-fourth of its f32 vector) and only the best few hundred re-scored in
//!    f32, when so many pass that reading their f32 vectors would cost more than the walk (a common
//!    genre, a recent decade); its recall against the exact answer is measured, not assumed;
//! 4. [`Plan::Walk`]: the graph walk with the filter inside, when most rows pass (falls back to the
//!    scan when it finds fewer than `k`);
//! 5. [`Plan::Exhaustive`]: every row (`exact=true`, the reference the others are measured against).
//!
//! The statistics ([`FieldStats`]: per genre and per decade the rows that have it, rows sorted by
//! votes and by rating; about 4 bytes per row per list) cover the matrix rows, which never change;
//! rows added at run time are scored beside every plan (as beside the graph), and replaced rows are
//! skipped by the filter. They are built once, when the catalog is complete
//! ([`LiveCatalog::field_stats`]).

use super::excluded;
use super::{LiveCatalog, Resolved};
use crate::index::{best_k, dot, graph::prefetch, Best, Hit, Quantized, Sketch};

/// How a search was (or is to be) answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    /// The query movie's stored neighbours (more like this by id).
    Table,
    /// The HNSW graph walk with the filter inside the search.
    Walk,
    /// An exact scan over the rows the filter can let through (from the per-field lists).
    Scan,
    /// The same rows ranked by their sketches, the best few hundred re-scored exactly.
    Sketch,
    /// An exact scan over every row.
    Exhaustive,
}

/// Small per-field statistics of the matrix rows, each also the list of rows it counts.
#[derive(Debug, Default)]
pub struct FieldStats {
    /// Matrix rows covered.
    rows: usize,
    /// Per genre number: its rows, ascending.
    by_genre: Vec<Vec<u32>>,
    /// Per decade (`year.div_euclid(10)`), ascending: its rows, ascending.
    by_decade: Vec<(i64, Vec<u32>)>,
    /// Rows with a vote count, most votes first, and their counts.
    votes_rows: Vec<u32>,
    votes: Vec<u64>,
    /// Rows with a rating, best first, and their ratings.
    rating_rows: Vec<u32>,
    ratings: Vec<f64>,
    /// The fields filters test, per row.
    columns: Columns,
}

/// The fields a filter tests, one array per field over the matrix rows, so that testing a row reads a
/// few bytes from arrays that stay in cache instead of its entry and its trait list (two cache misses
/// a row, which made a scan of many rows cost more than scoring them). Used only when they hold
/// every value exactly (`usable`): every genre number below 64, no year or vote count equal to the
/// "none" marker; otherwise rows are tested on their entries.
#[derive(Debug, Default)]
pub(super) struct Columns {
    usable: bool,
    /// Per row: bit `g` for each genre number `g` it has.
    genre_bits: Vec<u64>,
    /// Per row: the year, or [`NO_YEAR`].
    years: Vec<i32>,
    /// Per row: the vote count, or [`NO_VOTES`].
    votes: Vec<u64>,
    /// Per row: the rating, or NaN (which passes no `min_rating`, like a missing one).
    ratings: Vec<f64>,
}

const NO_YEAR: i32 = i32::MIN;
const NO_VOTES: u64 = u64::MAX;

impl Columns {
    fn build(entries: &[super::Entry]) -> Columns {
        let mut usable = true;
        let mut c = Columns {
            usable: false,
            genre_bits: Vec::with_capacity(entries.len()),
            years: Vec::with_capacity(entries.len()),
            votes: Vec::with_capacity(entries.len()),
            ratings: Vec::with_capacity(entries.len()),
        };
        for e in entries {
            let mut bits = 0u64;
            for &g in e.traits.genres() {
                if g < 64 {
                    bits |= 1 << g;
                } else {
                    usable = false;
                }
            }
            c.genre_bits.push(bits);
            let year = e.traits.year.unwrap_or(NO_YEAR);
            usable &= e.traits.year != Some(NO_YEAR);
            c.years.push(year);
            usable &= e.votes != Some(NO_VOTES);
            c.votes.push(e.votes.unwrap_or(NO_VOTES));
            c.ratings.push(e.rating.unwrap_or(f64::NAN));
        }
        c.usable = usable;
        c
    }

    /// The columns, when they can answer for the rows they cover.
    pub(super) fn usable(&self) -> Option<&Columns> {
        self.usable.then_some(self)
    }

    /// Rows covered.
    pub(super) fn rows(&self) -> usize {
        self.years.len()
    }

    /// Whether row `row` (`< rows`) passes `filter`, whose asked and excluded genres are the bits
    /// `want` and `unwanted`: the same answer as [`Resolved::accepts`] on its entry.
    #[inline]
    pub(super) fn passes(&self, row: usize, filter: &crate::service::Filter, want: u64, unwanted: u64) -> bool {
        if filter.min_year.is_some() || filter.max_year.is_some() {
            let y = self.years[row];
            if y == NO_YEAR {
                return false;
            }
            let y = i64::from(y);
            if filter.min_year.is_some_and(|lo| y < lo) || filter.max_year.is_some_and(|hi| y > hi) {
                return false;
            }
        }
        let bits = self.genre_bits[row];
        if (!filter.genres.is_empty() && bits & want == 0) || bits & unwanted != 0 {
            return false;
        }
        if let Some(m) = filter.min_votes {
            let v = self.votes[row];
            if v == NO_VOTES || v < m {
                return false;
            }
        }
        filter.min_rating.is_none_or(|m| self.ratings[row] >= m)
    }

    /// Whether row `row` has any genre of the bits `mask`.
    #[inline]
    fn has_any(&self, row: usize, mask: u64) -> bool {
        self.genre_bits[row] & mask != 0
    }
}

/// The bits of genre numbers, when every one is below 64.
pub(super) fn genre_mask(genres: &[u32]) -> Option<u64> {
    genres.iter().try_fold(0u64, |m, &g| (g < 64).then(|| m | 1 << g))
}

/// Where a scan finds its candidates: the shortest list covering every row the filter accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Narrow {
    /// Every matrix row (no list narrows the filter).
    All,
    /// The rows of the filter's genres.
    Genres,
    /// The rows of the decades the year range touches.
    Decades,
    /// The rows with at least `min_votes` votes.
    Votes,
    /// The rows rated at least `min_rating`.
    Rating,
}

/// Rows the graph walk scores per row it keeps: each node it expands scores its unvisited neighbours
/// (up to `2 M`). Measured (BENCHMARKS.md, issue 19): at 40k movies a by-id walk (`ef` 400) under a
/// genre two in five movies have took 16 ms, twice a parallel scan of all 40k rows.
const WALK_COST: f64 = 30.0;
/// Relative cost of checking one candidate against the filter (one row scored costs 1), from the
/// per-row columns ([`Columns`]: a few bytes in cache).
const CHECK_COST: f64 = 0.03;
/// Relative cost of scoring one matching row in a scan (rows in ascending order).
const SCAN_COST: f64 = 1.0;
/// Relative cost of estimating one matching row from its sketch (one cache line instead of 24).
const SKETCH_COST: f64 = 0.08;

/// Rows a sketch scan re-scores exactly for `k` results: enough that the sketch's errors do not
/// change the `k` best (measured: tests/filtered_search.rs, BENCHMARKS.md issue 19).
pub fn sketch_keeps(k: usize) -> usize {
    (25 * k).max(250)
}
/// Relative cost of re-scoring one kept row (scattered over the matrix, and kept in a heap first).
const KEEP_COST: f64 = 2.0;

impl FieldStats {
    /// The statistics of the first `rows` rows of `catalog`.
    pub(super) fn build(catalog: &LiveCatalog, rows: usize) -> FieldStats {
        let mut by_genre: Vec<Vec<u32>> = vec![Vec::new(); catalog.genres.spelling.len()];
        let mut decades: std::collections::BTreeMap<i64, Vec<u32>> = Default::default();
        let (mut votes, mut ratings) = (Vec::new(), Vec::new());
        for (row, e) in catalog.entries[..rows].iter().enumerate() {
            let row = row as u32;
            for &g in e.traits.genres() {
                let list = &mut by_genre[g as usize];
                // A genre listed twice in one document counts once.
                if list.last() != Some(&row) {
                    list.push(row);
                }
            }
            if let Some(y) = e.year() {
                decades.entry(y.div_euclid(10)).or_default().push(row);
            }
            if let Some(v) = e.votes {
                votes.push((v, row));
            }
            if let Some(r) = e.rating.filter(|r| !r.is_nan()) {
                ratings.push((r, row));
            }
        }
        votes.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        ratings.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        FieldStats {
            rows,
            by_genre,
            by_decade: decades.into_iter().collect(),
            votes_rows: votes.iter().map(|v| v.1).collect(),
            votes: votes.iter().map(|v| v.0).collect(),
            rating_rows: ratings.iter().map(|r| r.1).collect(),
            ratings: ratings.iter().map(|r| r.0).collect(),
            columns: Columns::build(&catalog.entries[..rows]),
        }
    }

    /// The per-row filter fields, when usable.
    pub(super) fn columns(&self) -> Option<&Columns> {
        self.columns.usable()
    }

    /// Matrix rows covered.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Rows of the genre numbered `genre`.
    fn genre_len(&self, genre: u32) -> usize {
        self.by_genre.get(genre as usize).map_or(0, Vec::len)
    }

    /// The decades a year range touches.
    fn decades(&self, lo: Option<i64>, hi: Option<i64>) -> impl Iterator<Item = &(i64, Vec<u32>)> {
        let (lo, hi) = (lo.map_or(i64::MIN, |y| y.div_euclid(10)), hi.map_or(i64::MAX, |y| y.div_euclid(10)));
        self.by_decade.iter().filter(move |(d, _)| (lo..=hi).contains(d))
    }

    /// Rows with at least `min` votes (a prefix of `votes_rows`).
    fn votes_len(&self, min: u64) -> usize {
        self.votes.partition_point(|&v| v >= min)
    }

    /// Rows rated at least `min` (a prefix of `rating_rows`).
    fn rating_len(&self, min: f64) -> usize {
        self.ratings.partition_point(|&r| r >= min)
    }

    /// The rows of each list a filter narrows to, and their estimated share of the matrix rows.
    fn lists(&self, f: &Resolved) -> Vec<(Narrow, usize, f64)> {
        let n = self.rows.max(1) as f64;
        let filter = f.filter;
        let mut out = Vec::new();
        if !filter.genres.is_empty() {
            let len: usize = f.genres.iter().map(|&g| self.genre_len(g)).sum();
            out.push((Narrow::Genres, len, (len as f64 / n).min(1.0)));
        }
        if filter.min_year.is_some() || filter.max_year.is_some() {
            let (lo, hi) = (filter.min_year, filter.max_year);
            let len: usize = self.decades(lo, hi).map(|(_, rows)| rows.len()).sum();
            // The range's share of the edge decades, assuming years spread evenly within a decade.
            let share: f64 = self
                .decades(lo, hi)
                .map(|(d, rows)| {
                    let (first, last) = (d * 10, d * 10 + 9);
                    let (a, b) = (lo.unwrap_or(first).max(first), hi.unwrap_or(last).min(last));
                    rows.len() as f64 * ((b - a + 1) as f64 / 10.0)
                })
                .sum();
            out.push((Narrow::Decades, len, share / n));
        }
        if let Some(m) = filter.min_votes {
            let len = self.votes_len(m);
            out.push((Narrow::Votes, len, len as f64 / n));
        }
        if let Some(m) = filter.min_rating {
            let len = self.rating_len(m);
            out.push((Narrow::Rating, len, len as f64 / n));
        }
        out
    }

    /// The rows a scan under `filter` looks at: the shortest list that covers it (see [`Candidates`]).
    fn candidates(&self, f: &Resolved) -> Candidates<'_> {
        let filter = f.filter;
        let all = Candidates { parts: vec![(Part::All(self.rows), 0)], exact: false };
        let (narrow, _) = narrowest(&self.lists(f), self.rows);
        // Which fields the filter sets besides the list's own.
        let years = filter.min_year.is_some() || filter.max_year.is_some();
        let (genres, votes, rating) =
            (!filter.genres.is_empty(), filter.min_votes.is_some(), filter.min_rating.is_some());
        let excluded = !filter.exclude_genres.is_empty();
        let only = |own: bool| {
            own && !excluded && usize::from(years) + usize::from(genres) + usize::from(votes) + usize::from(rating) == 1
        };
        match narrow {
            Narrow::All => all,
            Narrow::Genres => {
                // A movie of two asked genres is in both lists: each part skips the genres before it.
                let mut parts = Vec::with_capacity(f.genres.len());
                for (i, &g) in f.genres.iter().enumerate() {
                    let Some(skip) = genre_mask(&f.genres[..i]) else {
                        return all;
                    };
                    parts.push((Part::List(self.by_genre.get(g as usize).map_or(&[][..], Vec::as_slice)), skip));
                }
                Candidates { parts, exact: only(genres) }
            }
            Narrow::Decades => {
                let parts =
                    self.decades(filter.min_year, filter.max_year).map(|(_, rows)| (Part::List(rows), 0)).collect();
                // Whole decades only: a range that cuts one leaves rows of the list outside it.
                let whole = filter.min_year.is_none_or(|y| y.rem_euclid(10) == 0)
                    && filter.max_year.is_none_or(|y| y.rem_euclid(10) == 9);
                Candidates { parts, exact: only(years) && whole }
            }
            Narrow::Votes => {
                let len = self.votes_len(filter.min_votes.unwrap_or(0));
                Candidates { parts: vec![(Part::List(&self.votes_rows[..len]), 0)], exact: only(votes) }
            }
            Narrow::Rating => {
                let len = self.rating_len(filter.min_rating.unwrap_or(0.0));
                Candidates { parts: vec![(Part::List(&self.rating_rows[..len]), 0)], exact: only(rating) }
            }
        }
    }

    /// The plan for a search under `filter` when the table cannot answer, with a walk of candidate
    /// list `ef`: the scan when it scores fewer
    /// rows (weighted by cost) than the walk would, i.e. when few rows pass.
    ///
    /// The walk scores about `WALK_COST × ef / selectivity` rows to find `ef` that pass; the scan checks the
    /// shortest list's rows and scores those that pass (estimated as `rows × Π shares`, the fields
    /// taken as independent).
    fn plan(&self, filter: &Resolved, k: usize, ef: usize, sketch: bool) -> Plan {
        if filter.everything {
            return Plan::Walk;
        }
        let lists = self.lists(filter);
        let n = self.rows as f64;
        let mut share: f64 = lists.iter().map(|l| l.2).product();
        if !filter.exclude_genres.is_empty() {
            let excluded: usize = filter.exclude_genres.iter().map(|&g| self.genre_len(g)).sum();
            share *= (1.0 - excluded as f64 / n.max(1.0)).max(0.0);
        }
        let candidates = narrowest(&lists, self.rows).1;
        let matches = share * n;
        let check = candidates as f64 * CHECK_COST;
        let scan = check + matches * SCAN_COST;
        // The sketch only where it at least halves the exact scan: an estimate is not taken for a
        // small saving.
        let sketched = check + matches * SKETCH_COST + sketch_keeps(k) as f64 * KEEP_COST;
        let sketched = if sketch && sketched * 2.0 <= scan { sketched } else { f64::INFINITY };
        let walk = (ef as f64 * n / matches.max(1.0)).min(n) * WALK_COST;
        tracing::debug!(matches, candidates, scan, sketched, walk, "filtered search plan");
        if scan <= walk && scan <= sketched {
            Plan::Scan
        } else if sketched <= walk {
            Plan::Sketch
        } else {
            Plan::Walk
        }
    }
}

/// The shortest list (and its length) of those a filter narrows to; every row when none.
fn narrowest(lists: &[(Narrow, usize, f64)], rows: usize) -> (Narrow, usize) {
    lists.iter().min_by_key(|l| l.1).map_or((Narrow::All, rows), |l| (l.0, l.1))
}

impl LiveCatalog {
    /// The statistics of the matrix rows (built on first use; [`super::super::load`] asks for them at
    /// start). `None` before every matrix row is in.
    pub fn field_stats(&self) -> Option<&FieldStats> {
        let rows = self.matrix_rows();
        if self.entries.len() < rows {
            return None;
        }
        Some(self.stats.get_or_init(|| FieldStats::build(self, rows)))
    }

    /// How a search of `k` under `filter` that the table could not answer goes, with a walk of `ef`
    /// (`sketch`: whether row sketches are at hand).
    pub(super) fn plan_for(&self, filter: &Resolved, k: usize, ef: usize, sketch: bool) -> Plan {
        self.field_stats().map_or(Plan::Walk, |s| s.plan(filter, k, ef, sketch))
    }

    /// The `k` best matrix rows accepted by `keep` (which applies `filter` and leaves out `exclude`),
    /// scoring only the rows of the shortest list that covers the filter: exact, like a scan of every
    /// row. With `sketch`, the rows are ranked by their sketches and only the best [`sketch_keeps`]
    /// scored again (when more than that pass): with `q8`'s int8 codes first, down to
    /// [`shortlist`], then those exactly.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn scan_matching(
        &self,
        query: &[f32],
        k: usize,
        filter: &Resolved,
        exclude: &[usize],
        keep: &impl Fn(usize) -> bool,
        sketch: Option<&Sketch>,
        q8: Option<&Quantized>,
    ) -> Vec<Hit> {
        let sketch = sketch.filter(|s| s.rows() >= self.matrix_rows());
        let q8 = q8.filter(|q| q.rows() >= self.matrix_rows());
        let Some(stats) = self.field_stats() else {
            let candidates = Candidates { parts: vec![(Part::All(self.matrix_rows()), 0)], exact: false };
            return self.rank(&candidates, keep, query, k, sketch, q8);
        };
        let candidates = stats.candidates(filter);
        let alive = |row: usize| self.alive.get(row).is_some_and(|&a| a) && !excluded(exclude, row);
        match filter.columns {
            // Every row of the lists passes the filter's fields: only whether it is live and not
            // excluded is left to check.
            _ if candidates.exact => self.rank(&candidates, &alive, query, k, sketch, q8),
            Some((c, want, unwanted)) => {
                let f = filter.filter;
                self.rank(&candidates, &|row| alive(row) && c.passes(row, f, want, unwanted), query, k, sketch, q8)
            }
            None => self.rank(&candidates, keep, query, k, sketch, q8),
        }
    }

    /// The `k` best of the candidate rows that `pass` accepts (see [`LiveCatalog::scan_matching`]).
    fn rank(
        &self,
        candidates: &Candidates,
        pass: &impl Fn(usize) -> bool,
        query: &[f32],
        k: usize,
        sketch: Option<&Sketch>,
        q8: Option<&Quantized>,
    ) -> Vec<Hit> {
        let columns = self.field_stats().and_then(FieldStats::columns);
        // Whether `row` has one of the genres `skip` (it was in an earlier part).
        let skipped = |row: usize, skip: u64| match columns {
            Some(c) => c.has_any(row, skip),
            None => self.entries[row].traits.genres().iter().any(|&g| g < 64 && skip & (1 << g) != 0),
        };
        let keeps = sketch_keeps(k);
        if let Some(sketch) = sketch.filter(|_| candidates.rows() > keeps) {
            let (q, mut best) = (sketch.query(query), Best::new(keeps));
            for &(part, skip) in &candidates.parts {
                let pass = |row: usize| (skip == 0 || !skipped(row, skip)) && pass(row);
                match part {
                    Part::All(n) => sketch.offer(&q, 0..n, pass, &mut best),
                    Part::List(rows) => sketch.offer(&q, rows.iter().map(|&r| r as usize), pass, &mut best),
                }
            }
            let rows = best.rows();
            let rows = match q8 {
                Some(q8) if rows.len() > shortlist(k) => self.shortlist(q8, &rows, query, shortlist(k)),
                _ => rows,
            };
            return self.score_rows(&rows, query, k);
        }
        let mut matching = Vec::new();
        for &(part, skip) in &candidates.parts {
            let pass = |row: usize| (skip == 0 || !skipped(row, skip)) && pass(row);
            match part {
                Part::All(n) => matching.extend((0..n).filter(|&r| pass(r))),
                Part::List(rows) => matching.extend(rows.iter().map(|&r| r as usize).filter(|&r| pass(r))),
            }
        }
        self.score_rows(&matching, query, k)
    }

    /// The `keep` of `rows` with the best scores on the int8 codes `q8`.
    fn shortlist(&self, q8: &Quantized, rows: &[usize], query: &[f32], keep: usize) -> Vec<usize> {
        const AHEAD: usize = 8;
        let code = q8.encode(query);
        let mut scored: Vec<(f32, usize)> = rows
            .iter()
            .enumerate()
            .map(|(i, &row)| {
                if let Some(&next) = rows.get(i + AHEAD) {
                    prefetch(q8.row(next));
                }
                (q8.score(&code, q8.row(row)), row)
            })
            .collect();
        if scored.len() > keep {
            scored.select_nth_unstable_by(keep - 1, |a, b| b.0.total_cmp(&a.0));
            scored.truncate(keep);
        }
        scored.into_iter().map(|(_, row)| row).collect()
    }

    /// The `k` best of `rows` by their exact scores, each vector asked for a few rows ahead.
    fn score_rows(&self, rows: &[usize], query: &[f32], k: usize) -> Vec<Hit> {
        const AHEAD: usize = 8;
        let hits = rows
            .iter()
            .enumerate()
            .map(|(i, &row)| {
                if let Some(&next) = rows.get(i + AHEAD) {
                    prefetch(self.vector(next));
                }
                Hit { row, score: dot(query, self.vector(row)) }
            })
            .collect();
        best_k(hits, k)
    }
}

/// Rows a sketch scan's kept rows are cut down to by their int8 scores before the exact re-score:
/// the int8 codes order rows almost exactly as the f32 vectors do (the graph walk relies on them
/// too), so a few times `k` is ample (recall measured: tests/filtered_search.rs, BENCHMARKS.md).
fn shortlist(k: usize) -> usize {
    (5 * k).max(50)
}

/// The rows a filtered scan looks at: parts of the per-field lists, each with the genre bits of the
/// rows it skips (they are in an earlier part), and whether every row in them passes the filter's
/// fields (a list that is the whole filter: one field, or genres alone).
pub(super) struct Candidates<'a> {
    parts: Vec<(Part<'a>, u64)>,
    exact: bool,
}

#[derive(Clone, Copy)]
enum Part<'a> {
    /// The first `n` matrix rows.
    All(usize),
    /// A list of rows, ascending.
    List(&'a [u32]),
}

impl Candidates<'_> {
    /// How many rows the parts hold (counting a row in two parts twice).
    fn rows(&self) -> usize {
        self.parts
            .iter()
            .map(|(p, _)| match p {
                Part::All(n) => *n,
                Part::List(rows) => rows.len(),
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Facts, LiveCatalog, NewMovie};
    use crate::service::Filter;
    use std::sync::Arc;

    /// The per-row columns give every filter the same answer as the entries, for every row: movies
    /// with and without genres, years, votes and ratings (one NaN), filters on each field and their
    /// combinations, unknown genres among the asked ones.
    /// The catalog of the tests: 400 movies with and without genres, years, votes and ratings.
    fn catalog(n: usize, dim: usize) -> LiveCatalog {
        let names = ["Drama", "Comedy", "Horror", "Western", "Film-Noir", "Music"];
        let mut live = LiveCatalog::new(Arc::new(vec![0.5f32; n * dim]), dim);
        for i in 0..n {
            let genres = (0..names.len()).filter(|g| (i * 7 + g * 3) % 5 == 0).map(|g| names[g].into()).collect();
            let facts = Facts {
                title: format!("Movie {i}").into(),
                genres,
                release_year: (i % 9 != 0).then_some(1900 + (i as i64 * 37) % 125),
                ..Default::default()
            };
            let rating = match i % 11 {
                0 => None,
                1 => Some(f64::NAN),
                _ => Some(1.0 + (i % 90) as f64 / 10.0),
            };
            let votes = (i % 13 != 0).then_some((i as u64 * 7919) % 100_000);
            let movie = NewMovie { id: format!("m{i}"), rating, votes, facts, source: "test" };
            let entry = live.entry_for(movie, format!("movie {i}"));
            live.push_matrix_row(entry);
        }
        live
    }

    fn filters() -> Vec<Filter> {
        let g = |xs: &[&str]| xs.iter().map(|s| s.to_lowercase()).collect::<Vec<_>>();
        vec![
            Filter { genres: g(&["Drama"]), ..Default::default() },
            Filter { genres: g(&["Western", "Film-Noir"]), ..Default::default() },
            Filter { genres: g(&["Space Opera"]), ..Default::default() },
            Filter { genres: g(&["Space Opera", "Horror"]), ..Default::default() },
            Filter { exclude_genres: g(&["Drama", "Comedy"]), ..Default::default() },
            Filter { exclude_genres: g(&["Space Opera"]), ..Default::default() },
            Filter { min_year: Some(1970), max_year: Some(1979), ..Default::default() },
            Filter { min_year: Some(1972), max_year: Some(1989), ..Default::default() },
            Filter { min_year: Some(2000), ..Default::default() },
            Filter { max_year: Some(1950), ..Default::default() },
            Filter { min_votes: Some(50_000), ..Default::default() },
            Filter { min_votes: Some(0), ..Default::default() },
            Filter { min_rating: Some(7.3), ..Default::default() },
            Filter { min_rating: Some(0.0), ..Default::default() },
            Filter { genres: g(&["Drama"]), min_year: Some(1990), max_year: Some(1999), ..Default::default() },
            Filter { genres: g(&["Comedy"]), exclude_genres: g(&["Music"]), ..Default::default() },
            Filter {
                genres: g(&["Comedy", "Music"]),
                exclude_genres: g(&["Drama"]),
                min_year: Some(1990),
                min_votes: Some(100),
                min_rating: Some(5.0),
                ..Default::default()
            },
        ]
    }

    /// A scan's candidates hold every row the filter lets through, each once (a movie of two asked
    /// genres in its first genre's part only); when they are marked exact, every one of them passes.
    #[test]
    fn candidates_cover_the_filter_and_exact_ones_pass() {
        let n = 400;
        let live = catalog(n, 4);
        let stats = live.field_stats().expect("every matrix row is in");
        let mut exact = 0;
        for f in &filters() {
            let resolved = live.resolve(f);
            let candidates = stats.candidates(&resolved);
            let columns = stats.columns().expect("columns usable");
            let mut seen = vec![0u32; n];
            for &(part, skip) in &candidates.parts {
                let rows: Vec<usize> = match part {
                    super::Part::All(m) => (0..m).collect(),
                    super::Part::List(rows) => rows.iter().map(|&r| r as usize).collect(),
                };
                rows.into_iter().filter(|&r| skip == 0 || !columns.has_any(r, skip)).for_each(|r| seen[r] += 1);
            }
            for (row, &times) in seen.iter().enumerate() {
                let passes = resolved.accepts(&live.entries[row]);
                if passes {
                    assert_eq!(times, 1, "{f:?}: row {row} passes, so it is a candidate once");
                }
                if candidates.exact && times > 0 {
                    assert!(passes, "{f:?}: marked exact, but candidate row {row} does not pass");
                }
            }
            exact += usize::from(candidates.exact);
        }
        // Genres alone (known or not), whole decades, votes alone and rating alone are exact lists (10
        // of the filters); cut decades, combinations and exclusions are not.
        assert_eq!(exact, 10, "exact candidate lists");
    }

    #[test]
    fn columns_answer_like_the_entries() {
        let n = 400;
        let live = catalog(n, 4);
        assert!(live.field_stats().and_then(super::FieldStats::columns).is_some(), "columns usable");
        let g = |xs: &[&str]| xs.iter().map(|s| s.to_lowercase()).collect::<Vec<_>>();
        for f in &filters() {
            let resolved = live.resolve(f);
            assert!(resolved.columns.is_some(), "{f:?}: answered from the columns");
            let passing = (0..n).filter(|&r| resolved.accepts(&live.entries[r])).count();
            for row in 0..n {
                assert_eq!(
                    resolved.accepts_row(row, &live.entries),
                    resolved.accepts(&live.entries[row]),
                    "{f:?}, row {row}"
                );
            }
            assert!(
                passing < n || f.min_votes == Some(0) || f.exclude_genres == g(&["Space Opera"]),
                "{f:?} lets every row through"
            );
        }
    }
}
