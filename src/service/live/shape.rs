//! The strip controls ([`Controls`]) applied to a ranked answer, in one place for every similarity
//! route: which rows are excluded, how many candidates a search finds, and the page chosen from them
//! (a score floor, maximal marginal relevance, at most N per director or series, then the offset).
//!
//! Paging is exact: the candidates are the same for every page of a strip (the best `offset + k`
//! without choosing, else the best [`POOL`]), and the choice over them is deterministic, so page 0
//! then page 1 are the first `2k` of one answer and never repeat a movie.
//!
//! Maximal marginal relevance (Carbonell & Goldstein, 1998): results are taken one at a time, each the
//! candidate with the highest `(1 - d) · score - d · (its highest cosine with a result already taken)`,
//! `d` the diversity; the first is always the best candidate, and `d = 0` is the ranking itself.

use super::{Hit, LiveCatalog};
use crate::index::{dot, VectorIndex};
use crate::service::query::{Controls, GroupBy};
use crate::service::Filter;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// A candidate's key in the choice's heap: its value (an upper bound while stale), then its place
/// in the pool (the better-ranked first on a tie).
struct Key(f32, usize);

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(other.1.cmp(&self.1))
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Key {}

impl LiveCatalog {
    /// The rows of `ids` that are in the catalog (unknown ids exclude nothing) and `also`, sorted and
    /// without repeats: the `exclude` a search takes.
    pub fn exclusion(&self, ids: &[String], also: &[usize]) -> Vec<usize> {
        let mut rows: Vec<usize> = ids.iter().filter_map(|id| self.row_of(id)).chain(also.iter().copied()).collect();
        rows.sort_unstable();
        rows.dedup();
        rows
    }

    /// The search every similarity route runs: the candidates `controls` need (never a row in
    /// `exclude`, sorted), found by [`LiveCatalog::nearest`], then the page of `k` they ask for
    /// ([`LiveCatalog::page`]).
    #[allow(clippy::too_many_arguments)]
    pub fn search(
        &self,
        index: &VectorIndex,
        query: &[f32],
        start: Option<usize>,
        k: usize,
        filter: &Filter,
        exclude: &[usize],
        exact: bool,
        controls: &Controls,
    ) -> Vec<Hit> {
        let wanted = controls.wanted(k);
        let from_table = match start {
            Some(row) if controls.chooses() && !exact => self.pool_from_table(index, row, wanted, filter, exclude),
            _ => None,
        };
        let hits = from_table.unwrap_or_else(|| self.nearest(index, query, start, wanted, filter, exclude, exact));
        self.page(hits, k, controls)
    }

    /// The candidate pool of "more like" matrix row `row` from the neighbour table, without a graph
    /// walk: its kept neighbours and theirs (up to 16 + 16 × 16 rows), those that pass re-scored
    /// against the row, the `wanted` best (the rows added at run time scored beside them). `None`
    /// without a table, for a row added at run time, or when fewer than `wanted` pass (the caller
    /// then searches as usual).
    fn pool_from_table(
        &self,
        index: &VectorIndex,
        row: usize,
        wanted: usize,
        filter: &Filter,
        exclude: &[usize],
    ) -> Option<Vec<Hit>> {
        let table = index.table().filter(|t| row < t.rows())?;
        let resolved = self.resolve(filter);
        let keep = |r: usize| r != row && self.keep_resolved(r, &resolved, exclude);
        let mut rows: Vec<usize> = table.of(row).flat_map(|n| std::iter::once(n).chain(table.of(n))).collect();
        rows.sort_unstable();
        rows.dedup();
        rows.retain(|&r| keep(r));
        let query = self.vector(row);
        // The rows are scattered over the matrix (at 242k rows, 372 MB): ask for the vectors a few
        // rows ahead, so that their reads from memory overlap instead of waiting one after another.
        const AHEAD: usize = 4;
        let hits: Vec<Hit> = (0..rows.len())
            .map(|i| {
                if let Some(&next) = rows.get(i + AHEAD) {
                    crate::index::graph::prefetch(self.vector(next));
                }
                Hit { row: rows[i], score: dot(query, self.vector(rows[i])) }
            })
            .collect();
        if hits.len() < wanted {
            return None;
        }
        Some(self.with_run_time_rows(crate::index::best_k(hits, wanted), query, wanted, &keep))
    }

    /// The page of `k` that `controls` ask for from `candidates` (best first, at least
    /// [`Controls::wanted`] of them when there are that many): those under `min_score` dropped, then
    /// chosen for diversity and groups, then `offset` skipped.
    pub fn page(&self, mut candidates: Vec<Hit>, k: usize, controls: &Controls) -> Vec<Hit> {
        if let Some(floor) = controls.min_score {
            candidates.retain(|h| h.score >= floor);
        }
        if controls.chooses() {
            candidates = self.choose(candidates, controls.offset + k, controls);
        }
        candidates.into_iter().skip(controls.offset).take(k).collect()
    }

    /// The first `n` results chosen from `pool` (best first) by maximal marginal relevance and the
    /// group limit.
    ///
    /// Lazy greedy over a max-heap of upper bounds: a candidate's key is its value against the first
    /// `seen[i]` results taken (before any, `(1 - d) · score + d`, since a cosine is at least -1). A
    /// value only falls as results are taken, so a stale key bounds the current value: the top key,
    /// once brought up to date and still on top, is the best candidate. Ties go to the better-ranked
    /// candidate (the pool's order), as in the eager rule. A candidate whose group is full is dropped
    /// when it comes up to be taken (groups only fill, so it could never be taken later). Each round
    /// is a heap operation, and most candidates are never compared with most results.
    fn choose(&self, pool: Vec<Hit>, n: usize, controls: &Controls) -> Vec<Hit> {
        let d = controls.diversity;
        // Per group, its count of results taken; a candidate's groups are read only when it is about
        // to be taken (at 242k rows each read is a cache miss, and most candidates never get there).
        let mut counts: HashMap<u64, usize> = HashMap::new();
        let mut own: Vec<u64> = Vec::new();
        let mut closest = vec![f32::NEG_INFINITY; pool.len()];
        let mut seen = vec![0usize; pool.len()];
        let mut heap: BinaryHeap<Key> = pool
            .iter()
            .enumerate()
            .map(|(i, h)| Key(if d == 0.0 { h.score } else { (1.0 - d) * h.score + d }, i))
            .collect();
        let mut chosen: Vec<Hit> = Vec::with_capacity(n.min(pool.len()));
        while chosen.len() < n {
            let Some(Key(_, i)) = heap.pop() else { break };
            if d > 0.0 && seen[i] < chosen.len() {
                let v = self.vector(pool[i].row);
                for c in &chosen[seen[i]..] {
                    closest[i] = closest[i].max(dot(v, self.vector(c.row)));
                }
                seen[i] = chosen.len();
                heap.push(Key((1.0 - d) * pool[i].score - d * closest[i], i));
                continue;
            }
            if let Some((by, per_group)) = controls.max_per {
                own.clear();
                self.groups_of(pool[i].row, by, |g| own.push(g));
                if own.iter().any(|g| counts.get(g).is_some_and(|&c| c >= per_group)) {
                    continue;
                }
                own.iter().for_each(|&g| *counts.entry(g).or_default() += 1);
            }
            chosen.push(pool[i]);
        }
        chosen
    }

    /// The groups row `row` counts in for `by`, each given to `each`: its directors, or its series
    /// (see [`series_key`]).
    fn groups_of(&self, row: usize, by: GroupBy, mut each: impl FnMut(u64)) {
        let e = self.entry(row);
        match by {
            GroupBy::Director => e.traits.directors().iter().for_each(|&p| each(u64::from(p))),
            GroupBy::Series => {
                use std::hash::BuildHasher;
                each(self.hasher.hash_one(series_key(e.folded_title())))
            }
        }
    }
}

/// Words that number a film of a series at the end of its title ("Part 2", "Vol. 3", "II").
fn numbers_a_film(word: &str) -> bool {
    let roman = |w: &str| (1..=5).contains(&w.len()) && w.chars().all(|c| matches!(c, 'i' | 'v' | 'x'));
    word.chars().all(|c| c.is_ascii_digit())
        || roman(word)
        || matches!(word, "part" | "chapter" | "episode" | "vol" | "vol." | "volume")
}

/// The series a film belongs to, recognised from its folded title alone (the catalog has no series
/// field): the title up to a `:`, ` - ` or ` (`, without a leading "the" and without the words that
/// number a film at its end ("2", "III", "Part 2"). "Spider-Man 3", "Spider-Man 2" and "Spider-Man:
/// Homecoming" are one series; "The Dark Knight Rises" is not "The Dark Knight"'s, and a series whose
/// films share no title stem ("Harry Potter and the ...") is one film per series.
pub fn series_key(folded_title: &str) -> &str {
    let mut stem = folded_title;
    for cut in [":", " - ", " ("] {
        if let Some(at) = stem.find(cut) {
            stem = &stem[..at];
        }
    }
    let mut stem = stem.trim();
    if let Some(rest) = stem.strip_prefix("the ") {
        stem = rest.trim_start();
    }
    loop {
        match stem.rsplit_once(' ') {
            Some((head, last)) if numbers_a_film(last) && !head.trim().is_empty() => stem = head.trim_end(),
            _ => return stem,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::movie::MovieDoc;
    use crate::service::live::{no_matrix, Facts, NewMovie};
    use crate::service::query::ControlsBody;

    /// Four movies of one director: two near-copies of the query's direction, one a little off, one
    /// far off; a fifth of another director.
    fn catalog() -> LiveCatalog {
        let mut cat = LiveCatalog::new(no_matrix(), 2);
        let unit = |a: f32| [a.cos(), a.sin()];
        for (i, (angle, director)) in [(0.10, "A"), (0.11, "A"), (0.5, "A"), (1.4, "A"), (0.3, "B")].iter().enumerate()
        {
            let doc = MovieDoc::parse(&serde_json::json!({"title": format!("T{i}"), "directors": [director]})).unwrap();
            let facts = Facts::parse(Box::leak(doc.render().into_boxed_str())).unwrap();
            cat.push(NewMovie { id: format!("m{i}"), rating: None, votes: None, facts, source: "t" }, &unit(*angle));
        }
        cat
    }

    fn page(cat: &LiveCatalog, k: usize, body: ControlsBody) -> Vec<usize> {
        let query = [1.0, 0.0];
        let mut hits: Vec<Hit> = (0..cat.rows()).map(|row| Hit { row, score: dot(&query, cat.vector(row)) }).collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        cat.page(hits, k, &body.parse().unwrap()).iter().map(|h| h.row).collect()
    }

    #[test]
    fn diversity_passes_over_near_copies_and_groups_cap_a_director() {
        let cat = catalog();
        assert_eq!(page(&cat, 3, ControlsBody::default()), [0, 1, 4]);
        let diverse = page(&cat, 3, ControlsBody { diversity: Some(0.7), ..Default::default() });
        assert_eq!(diverse[0], 0, "the best first at any diversity");
        assert!(!diverse.contains(&1), "the near-copy of the first is passed over: {diverse:?}");
        let grouped = ControlsBody { max_per: Some("director".into()), ..Default::default() };
        assert_eq!(page(&cat, 3, grouped), [0, 4], "one of A, one of B, then no more candidates");
        let two = ControlsBody { max_per: Some("director".into()), per_group: Some(2), ..Default::default() };
        assert_eq!(page(&cat, 5, two), [0, 1, 4]);
        let paged = ControlsBody { offset: Some(2), ..Default::default() };
        assert_eq!(page(&cat, 2, paged), [4, 2]);
        let floored = ControlsBody { min_score: Some(0.85), ..Default::default() };
        assert_eq!(page(&cat, 5, floored), [0, 1, 4, 2]);
    }

    /// The eager rule the lazy choice must equal: every round, every open candidate's value against
    /// every result taken; the first best (pool order) is taken.
    fn eager(cat: &LiveCatalog, pool: &[Hit], n: usize, d: f32, per_group: Option<usize>) -> Vec<usize> {
        let directors = |row: usize| {
            let mut all = Vec::new();
            cat.groups_of(row, GroupBy::Director, |g| all.push(g));
            all
        };
        let mut chosen: Vec<usize> = Vec::new();
        let mut counts: HashMap<u64, usize> = HashMap::new();
        while chosen.len() < n {
            let mut best: Option<(usize, f32)> = None;
            for (i, h) in pool.iter().enumerate() {
                let groups = directors(h.row);
                let full = per_group.is_some_and(|m| groups.iter().any(|g| counts.get(g).copied().unwrap_or(0) >= m));
                if chosen.contains(&i) || full {
                    continue;
                }
                let v = if chosen.is_empty() || d == 0.0 {
                    h.score
                } else {
                    let near = chosen
                        .iter()
                        .map(|&c| dot(cat.vector(h.row), cat.vector(pool[c].row)))
                        .fold(f32::MIN, f32::max);
                    (1.0 - d) * h.score - d * near
                };
                if best.is_none_or(|(_, b)| v > b) {
                    best = Some((i, v));
                }
            }
            let Some((i, _)) = best else { break };
            if per_group.is_some() {
                directors(pool[i].row).iter().for_each(|g| *counts.entry(*g).or_default() += 1);
            }
            chosen.push(i);
        }
        chosen.into_iter().map(|i| pool[i].row).collect()
    }

    #[test]
    fn the_lazy_choice_equals_the_eager_rule() {
        let mut rng = crate::rng::Rng::new(31);
        let dim = 8;
        let mut cat = LiveCatalog::new(no_matrix(), dim);
        for i in 0..120 {
            let mut v: Vec<f32> = (0..dim).map(|_| rng.next_f32() - 0.5).collect();
            let norm = dot(&v, &v).sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
            let director = format!("D{}", rng.below(9));
            let doc = MovieDoc::parse(&serde_json::json!({"title": format!("T{i}"), "directors": [director]})).unwrap();
            let facts = Facts::parse(Box::leak(doc.render().into_boxed_str())).unwrap();
            cat.push(NewMovie { id: format!("m{i}"), rating: None, votes: None, facts, source: "t" }, &v);
        }
        for round in 0..40 {
            let query = cat.vector(rng.below(cat.rows())).to_vec();
            let mut pool: Vec<Hit> =
                (0..cat.rows()).map(|row| Hit { row, score: dot(&query, cat.vector(row)) }).collect();
            pool.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row)));
            pool.truncate(100);
            let d = [0.0, 0.3, 0.5, 0.9, 1.0][round % 5];
            let per_group = [None, Some(1), Some(2)][round % 3];
            let n = 1 + rng.below(30);
            let body = ControlsBody {
                diversity: Some(f64::from(d)),
                max_per: per_group.map(|_| "director".to_string()),
                per_group: per_group.map(|m| m as i64),
                ..Default::default()
            };
            let controls = body.parse().unwrap();
            let lazy: Vec<usize> = cat.choose(pool.clone(), n, &controls).iter().map(|h| h.row).collect();
            assert_eq!(
                lazy,
                eager(&cat, &pool, n, d, per_group),
                "round {round}: d {d}, per group {per_group:?}, n {n}"
            );
        }
    }

    #[test]
    fn a_series_is_its_title_stem() {
        let key = |t: &str| series_key(t).to_string();
        assert_eq!(key("spider-man 3"), "spider-man");
        assert_eq!(key("spider-man: homecoming"), "spider-man");
        assert_eq!(key("the godfather part ii"), "godfather");
        assert_eq!(key("kill bill vol. 2"), "kill bill");
        assert_eq!(key("iron man 2"), key("iron man"));
        assert_ne!(key("the dark knight rises"), key("the dark knight"));
        assert_eq!(key("1917"), "1917", "a title that is a number is its own stem");
        assert_eq!(key("x"), "x");
        assert_eq!(key("alien (1979)"), "alien");
    }
}
