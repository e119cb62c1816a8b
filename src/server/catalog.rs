//! The live catalog the server answers from: every movie's metadata and vector in memory, rows in the
//! order of the embedding matrix, then rows added at run time.
//!
//! `hnsw_rs` cannot delete, so a replaced movie gets a new row and its old row is marked dead: searches
//! skip dead rows, and the id always points to the newest row.

use crate::index::{best_k, search_exact, Hit, VectorIndex};
use crate::movie::MovieDoc;
use serde::Serialize;
use std::collections::HashMap;

/// One movie as served.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub rating: Option<f64>,
    pub votes: Option<u64>,
    pub doc: MovieDoc,
    pub source: String,
    /// Lower-cased genres, for filters and "why".
    genres: Vec<String>,
    /// Title folded for search (lower case, accents removed).
    folded_title: String,
    alive: bool,
}

impl Entry {
    pub fn new(id: String, rating: Option<f64>, votes: Option<u64>, doc: MovieDoc, source: String) -> Self {
        let genres = doc.genres().iter().map(|g| g.to_lowercase()).collect();
        let folded_title = fold(doc.title());
        Entry { id, rating, votes, doc, source, genres, folded_title, alive: true }
    }

    pub fn title(&self) -> &str {
        self.doc.title()
    }

    pub fn year(&self) -> Option<i64> {
        self.doc.release_year()
    }
}

/// Lower case without accents: "Amélie" and "AMELIE" fold to the same text.
pub fn fold(text: &str) -> String {
    use unicode_normalization::{char::is_combining_mark, UnicodeNormalization};
    text.nfkd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase).collect()
}

/// Which movies a search may return. Built from request parameters, already validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub min_year: Option<i64>,
    pub max_year: Option<i64>,
    /// Keep movies with any of these genres (lower case); empty: no constraint.
    pub genres: Vec<String>,
    /// Drop movies with any of these genres (lower case).
    pub exclude_genres: Vec<String>,
    pub min_votes: Option<u64>,
    pub min_rating: Option<f64>,
}

impl Filter {
    pub fn accepts(&self, e: &Entry) -> bool {
        let year_ok = match (self.min_year, self.max_year, e.year()) {
            (None, None, _) => true,
            (_, _, None) => false,
            (lo, hi, Some(y)) => lo.is_none_or(|lo| y >= lo) && hi.is_none_or(|hi| y <= hi),
        };
        year_ok
            && (self.genres.is_empty() || e.genres.iter().any(|g| self.genres.contains(g)))
            && !e.genres.iter().any(|g| self.exclude_genres.contains(g))
            && self.min_votes.is_none_or(|m| e.votes.is_some_and(|v| v >= m))
            && self.min_rating.is_none_or(|m| e.rating.is_some_and(|r| r >= m))
    }
}

/// Why a neighbour is similar to the query, in terms people check.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Why {
    pub shared_directors: Vec<String>,
    pub shared_actors: Vec<String>,
    pub shared_genres: Vec<String>,
    /// Absolute difference of release years, when both are known.
    pub year_gap: Option<i64>,
}

fn shared(a: &[&str], b: &[&str]) -> Vec<String> {
    a.iter().filter(|x| b.iter().any(|y| y.eq_ignore_ascii_case(x))).map(|x| x.to_string()).collect()
}

/// Compare a query document with a neighbour's.
pub fn why(query: &MovieDoc, other: &MovieDoc) -> Why {
    Why {
        shared_directors: shared(&other.list("directors"), &query.list("directors")),
        shared_actors: shared(&other.list("actors"), &query.list("actors")),
        shared_genres: shared(&other.genres(), &query.genres()),
        year_gap: match (query.release_year(), other.release_year()) {
            (Some(a), Some(b)) => Some((a - b).abs()),
            _ => None,
        },
    }
}

/// All movies and vectors, by row.
pub struct LiveCatalog {
    entries: Vec<Entry>,
    by_id: HashMap<String, usize>,
    vectors: Vec<f32>,
    dim: usize,
}

impl LiveCatalog {
    pub fn new(dim: usize) -> Self {
        LiveCatalog { entries: Vec::new(), by_id: HashMap::new(), vectors: Vec::new(), dim }
    }

    /// Append a movie with its vector; a movie with the same id is replaced (its old row goes dead).
    /// Returns the new row and the replaced one.
    pub fn push(&mut self, entry: Entry, vector: &[f32]) -> (usize, Option<usize>) {
        assert_eq!(vector.len(), self.dim, "vector of the wrong dimension");
        let row = self.entries.len();
        let replaced = self.by_id.insert(entry.id.clone(), row);
        if let Some(old) = replaced {
            self.entries[old].alive = false;
        }
        self.entries.push(entry);
        self.vectors.extend_from_slice(vector);
        (row, replaced)
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Rows ever written (dead ones included): the index's id space.
    pub fn rows(&self) -> usize {
        self.entries.len()
    }

    /// Movies that can be returned.
    pub fn live_count(&self) -> usize {
        self.by_id.len()
    }

    pub fn row_of(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    pub fn entry(&self, row: usize) -> &Entry {
        &self.entries[row]
    }

    pub fn vector(&self, row: usize) -> &[f32] {
        &self.vectors[row * self.dim..(row + 1) * self.dim]
    }

    /// Whether `row` may be returned by a search under `filter`, excluding `exclude`.
    pub fn keep(&self, row: usize, filter: &Filter, exclude: &[usize]) -> bool {
        self.entries.get(row).is_some_and(|e| e.alive && filter.accepts(e)) && !exclude.contains(&row)
    }

    /// The `k` nearest live movies to `query` under `filter`, never any row in `exclude`. With
    /// `exact`, or when the graph finds fewer than `k` under a selective filter, by brute force: `k`
    /// results come back whenever `k` movies pass the filter.
    pub fn nearest(
        &self,
        index: &VectorIndex,
        query: &[f32],
        k: usize,
        filter: &Filter,
        exclude: &[usize],
        exact: bool,
    ) -> Vec<Hit> {
        let keep = |row: usize| self.keep(row, filter, exclude);
        if !exact {
            let hits = index.search(query, k, &keep);
            if hits.len() >= k {
                return hits;
            }
        }
        let rows = |row: usize| Some(self.vector(row));
        search_exact(&rows, self.rows(), query, k, &keep)
    }

    /// Rank every live movie accepted by `filter` by `score(vector)`, best first (for the linear
    /// recommender, whose decision function is not a cosine).
    pub fn rank_by(&self, k: usize, filter: &Filter, exclude: &[usize], score: impl Fn(&[f32]) -> f32 + Sync) -> Vec<Hit> {
        use rayon::prelude::*;
        let hits: Vec<Hit> = (0..self.rows())
            .into_par_iter()
            .filter(|&r| self.keep(r, filter, exclude))
            .map(|r| Hit { row: r, score: score(self.vector(r)) })
            .collect();
        best_k(hits, k)
    }

    /// Title search, case- and accent-insensitive. Ranked: exact title, then prefix, then a word
    /// starting with the query, then anywhere in the title; ties by votes (most first), then title.
    pub fn search_titles(&self, query: &str, limit: usize) -> Vec<usize> {
        let q = fold(query.trim());
        if q.is_empty() {
            return Vec::new();
        }
        let rank = |title: &str| -> Option<u8> {
            if title == q {
                Some(0)
            } else if title.starts_with(&q) {
                Some(1)
            } else if title.match_indices(&q).any(|(i, _)| !title[..i].ends_with(char::is_alphanumeric)) {
                Some(2)
            } else if title.contains(&q) {
                Some(3)
            } else {
                None
            }
        };
        let mut found: Vec<(u8, usize)> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.alive)
            .filter_map(|(row, e)| rank(&e.folded_title).map(|r| (r, row)))
            .collect();
        found.sort_by(|a, b| {
            let (ea, eb) = (&self.entries[a.1], &self.entries[b.1]);
            a.0.cmp(&b.0).then(eb.votes.cmp(&ea.votes)).then(ea.title().cmp(eb.title()))
        });
        found.into_iter().take(limit).map(|(_, row)| row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(id: &str, title: &str, year: i64, genres: &[&str], votes: u64) -> Entry {
        let doc = MovieDoc::parse(&json!({"title": title, "genres": genres, "release_year": year})).unwrap();
        Entry::new(id.into(), Some(7.0), Some(votes), doc, "test".into())
    }

    #[test]
    fn folding_ignores_case_and_accents() {
        assert_eq!(fold("Amélie ÉTÉ"), "amelie ete");
        assert_eq!(fold("Ⅻ Straße"), "xii straße");
    }

    #[test]
    fn title_search_ranks_exact_then_prefix_then_word_then_substring() {
        let mut cat = LiveCatalog::new(1);
        for (i, (t, v)) in [("The Frozen Ground", 10), ("Frozen II", 5), ("Frozen", 1), ("Unfrozen", 99), ("Frozen", 50)]
            .iter()
            .enumerate()
        {
            cat.push(entry(&format!("m{i}"), t, 2000, &[], *v), &[1.0]);
        }
        let ids: Vec<&str> = cat.search_titles("FROZEN", 10).iter().map(|&r| cat.entry(r).id.as_str()).collect();
        assert_eq!(ids, ["m4", "m2", "m1", "m0", "m3"]);
    }

    #[test]
    fn a_replaced_movie_leaves_a_dead_row() {
        let mut cat = LiveCatalog::new(1);
        cat.push(entry("a", "A", 2000, &[], 1), &[1.0]);
        let (row, replaced) = cat.push(entry("a", "A2", 2001, &[], 1), &[1.0]);
        assert_eq!((row, replaced), (1, Some(0)));
        assert_eq!(cat.live_count(), 1);
        assert!(!cat.keep(0, &Filter::default(), &[]));
        assert!(cat.keep(1, &Filter::default(), &[]));
        assert!(cat.search_titles("a", 5).iter().all(|&r| r == 1));
    }

    #[test]
    fn filters_combine() {
        let e = entry("x", "X", 1999, &["Drama", "Crime"], 500);
        let f = Filter { min_year: Some(1990), genres: vec!["crime".into()], min_votes: Some(100), ..Default::default() };
        assert!(f.accepts(&e));
        assert!(!Filter { exclude_genres: vec!["drama".into()], ..f.clone() }.accepts(&e));
        assert!(!Filter { max_year: Some(1998), ..f.clone() }.accepts(&e));
        assert!(!Filter { min_rating: Some(7.5), ..f }.accepts(&e));
    }
}
