//! The live rows the service answers from: what searches, filters and "why" need of every movie, and
//! its vector, in memory, rows in the order of the embedding matrix, then rows added at run time. The
//! one owner of the row space: the HNSW graph ([`VectorIndex`], immutable) covers the matrix rows, and
//! the rows added at run time are searched here beside it (one copy of their vectors, one lock: the
//! service keeps this behind one `RwLock`).
//!
//! Kept compact, because it is one entry per movie of a large catalog: names (genres, directors,
//! actors) are interned once and each movie holds their numbers; the full documents stay in the store
//! and are read when a movie is shown (while it cannot be reached: `service/documents.rs`). The vectors of matrix rows are the shared embedding matrix
//! itself (also searched by the index); only run-time rows are copied here.
//!
//! Also the core of search: [`LiveCatalog::nearest`] (the neighbour table, the graph walk or an exact
//! scan of the movies a filter lets through, planned per request from the filter's selectivity: see
//! [`plan`]), [`LiveCatalog::rank_by`] and [`LiveCatalog::why`].
//!
//! `hnsw_rs` cannot delete, so a replaced movie gets a new row and its old row is marked dead: searches
//! skip dead rows, and the id always points to the newest row.

pub mod journal;
pub mod people;
pub mod plan;
mod shape;
mod snapshot;
pub mod titles;

pub use journal::{Journal, FILE as JOURNAL_FILE};
pub use plan::{sketch_keeps, FieldStats, Plan};
pub use shape::series_key;
pub use snapshot::{snapshot_generation, SnapshotKey, FILE as SNAPSHOT_FILE};
pub use titles::TitleQuery;

use crate::index::{best_k, best_k_par, dot, search_exact, Hit, SharedMatrix, VectorIndex};
use crate::movie::MovieDoc;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock};

/// The facts of a movie document the catalog keeps, borrowed from a document or its stored JSON.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Facts<'a> {
    #[serde(borrow)]
    pub title: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "nullable_list")]
    pub genres: Vec<Cow<'a, str>>,
    #[serde(default, deserialize_with = "nullable_year")]
    pub release_year: Option<i64>,
    #[serde(borrow, default)]
    pub directors: Vec<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub actors: Vec<Cow<'a, str>>,
    #[serde(default, deserialize_with = "nullable_year")]
    pub runtime_minutes: Option<i64>,
}

fn nullable_list<'de: 'a, 'a, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct List<'a>(#[serde(borrow)] Vec<Cow<'a, str>>);
    Ok(Option::<List>::deserialize(d)?.map(|l| l.0).unwrap_or_default())
}

/// Like [`MovieDoc::release_year`] (and `runtime_minutes`): an integer that fits, else none.
fn nullable_year<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(Option::<serde_json::Number>::deserialize(d)?.and_then(|n| n.as_i64()))
}

impl<'a> Facts<'a> {
    pub fn of(doc: &'a MovieDoc) -> Self {
        let list = |field| doc.list(field).into_iter().map(Cow::Borrowed).collect();
        Facts {
            title: Cow::Borrowed(doc.title()),
            genres: list("genres"),
            release_year: doc.release_year(),
            directors: list("directors"),
            actors: list("actors"),
            runtime_minutes: doc.runtime_minutes(),
        }
    }

    /// From a stored document's JSON (a canonical [`MovieDoc`], so the types are right), without
    /// building the whole document.
    pub fn parse(json: &'a str) -> serde_json::Result<Self> {
        serde_json::from_str(json)
    }
}

/// Names, each stored once; compared without regard to case (the first spelling seen is kept).
#[derive(Debug, Default)]
struct Names {
    by_key: HashMap<Box<str>, u32>,
    spelling: Vec<Box<str>>,
    /// The key being looked up (reused: interning runs for every name of every movie at start).
    scratch: String,
}

impl Names {
    fn key(name: &str) -> Cow<'_, str> {
        if name.chars().any(char::is_uppercase) {
            Cow::Owned(name.to_lowercase())
        } else {
            Cow::Borrowed(name)
        }
    }

    fn intern(&mut self, name: &str) -> u32 {
        // ASCII (most names): lower-cased into the scratch string, no allocation per lookup. Other
        // names through `key` (str::to_lowercase, which `find` uses too).
        let mut scratch = std::mem::take(&mut self.scratch);
        let key: &str = if name.is_ascii() {
            scratch.clear();
            scratch.push_str(name);
            scratch.make_ascii_lowercase();
            &scratch
        } else {
            scratch = Self::key(name).into_owned();
            &scratch
        };
        let id = match self.by_key.get(key) {
            Some(&id) => id,
            None => {
                let id = self.spelling.len() as u32;
                self.spelling.push(name.into());
                self.by_key.insert(key.into(), id);
                id
            }
        };
        self.scratch = scratch;
        id
    }

    /// The number of a name, or one no name has.
    fn find(&self, name: &str) -> u32 {
        self.by_key.get(Self::key(name).as_ref()).copied().unwrap_or(UNKNOWN)
    }

    fn name(&self, id: u32) -> &str {
        &self.spelling[id as usize]
    }
}

/// The number of a name the catalog has never seen.
const UNKNOWN: u32 = u32::MAX;

/// A movie's interned genres, directors and actors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Traits {
    /// Genres, then directors, then actors.
    ids: Box<[u32]>,
    genres: u8,
    directors: u8,
    year: Option<i32>,
    /// Minutes, when known and between 1 and 65,535.
    runtime: Option<u16>,
}

impl Traits {
    fn genres(&self) -> &[u32] {
        &self.ids[..self.genres as usize]
    }
    fn directors(&self) -> &[u32] {
        &self.ids[self.genres as usize..self.genres as usize + self.directors as usize]
    }
    fn actors(&self) -> &[u32] {
        &self.ids[self.genres as usize + self.directors as usize..]
    }
}

/// One movie as served. Compact (one per movie of a large catalog): its id, title and folded title
/// are one allocation.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The id, the title, then the title folded for search (lower case, accents removed).
    text: Box<str>,
    id_len: u32,
    title_len: u32,
    pub rating: Option<f64>,
    pub votes: Option<u64>,
    traits: Traits,
    source: u16,
}

impl Entry {
    fn new(
        id: &str,
        title: &str,
        folded_title: &str,
        rating: Option<f64>,
        votes: Option<u64>,
        traits: Traits,
        source: u16,
    ) -> Self {
        // Ids and titles longer than 4 GiB cannot reach here (request bodies are capped far below).
        let text = [id, title, folded_title].concat().into_boxed_str();
        Entry { text, id_len: id.len() as u32, title_len: title.len() as u32, rating, votes, traits, source }
    }

    pub fn id(&self) -> &str {
        &self.text[..self.id_len as usize]
    }

    pub fn title(&self) -> &str {
        &self.text[self.id_len as usize..(self.id_len + self.title_len) as usize]
    }

    fn folded_title(&self) -> &str {
        &self.text[(self.id_len + self.title_len) as usize..]
    }

    pub fn year(&self) -> Option<i64> {
        self.traits.year.map(i64::from)
    }

    /// Running time in minutes, when known.
    pub fn runtime(&self) -> Option<u16> {
        self.traits.runtime
    }
}

/// A movie to add to the catalog.
#[derive(Debug, Clone)]
pub struct NewMovie<'a> {
    pub id: String,
    pub rating: Option<f64>,
    pub votes: Option<u64>,
    pub facts: Facts<'a>,
    pub source: &'a str,
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

/// A [`Filter`] with its genres looked up in the catalog's names.
struct Resolved<'f> {
    filter: &'f Filter,
    /// The filter lets every movie through (the common case: no need to look at the entry).
    everything: bool,
    genres: Vec<u32>,
    exclude_genres: Vec<u32>,
    /// The matrix rows' filter fields, with the asked and excluded genres as their bits, when they
    /// can answer ([`plan::Columns`]); rows past them are tested on their entries.
    columns: Option<(&'f plan::Columns, u64, u64)>,
}

impl Resolved<'_> {
    /// Whether row `row` (its entry `entries[row]`) passes: from the columns when they cover it.
    #[inline]
    fn accepts_row(&self, row: usize, entries: &[Entry]) -> bool {
        match self.columns {
            Some((c, want, unwanted)) if row < c.rows() => c.passes(row, self.filter, want, unwanted),
            _ => self.accepts(&entries[row]),
        }
    }

    fn accepts(&self, e: &Entry) -> bool {
        let f = self.filter;
        let year_ok = match (f.min_year, f.max_year, e.year()) {
            (None, None, _) => true,
            (_, _, None) => false,
            (lo, hi, Some(y)) => lo.is_none_or(|lo| y >= lo) && hi.is_none_or(|hi| y <= hi),
        };
        let genres = e.traits.genres();
        year_ok
            && (f.genres.is_empty() || genres.iter().any(|g| self.genres.contains(g)))
            && !genres.iter().any(|g| self.exclude_genres.contains(g))
            && f.min_votes.is_none_or(|m| e.votes.is_some_and(|v| v >= m))
            && f.min_rating.is_none_or(|m| e.rating.is_some_and(|r| r >= m))
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

/// All movies and vectors, by row.
pub struct LiveCatalog {
    entries: Vec<Entry>,
    /// Per row: not replaced since (kept apart from the entries: searches test it for every row they
    /// visit, and this way it stays in cache).
    alive: Vec<bool>,
    /// Row of each id's newest entry (the ids themselves are in the entries).
    by_id: hashbrown::HashTable<u32>,
    hasher: std::collections::hash_map::RandomState,
    /// Vectors of the first `matrix.len() / dim` rows.
    matrix: SharedMatrix,
    /// Vectors of the rows after those (added at run time).
    added: Vec<f32>,
    dim: usize,
    genres: Names,
    people: Names,
    sources: Vec<Box<str>>,
    /// Per-field statistics of the matrix rows, for planning filtered searches (built once, when the
    /// matrix rows are all in: see [`LiveCatalog::field_stats`]).
    stats: OnceLock<FieldStats>,
    /// The title index of the rows present when it was built (see [`LiveCatalog::index_titles`]);
    /// shared with the thread that builds it.
    titles: Arc<OnceLock<titles::TitleIndex>>,
    /// Movies deleted since this catalog was made (see [`LiveCatalog::version`]).
    deleted: usize,
    /// The people index of the rows present when it was built (see [`LiveCatalog::index_people`]).
    people_index: Arc<OnceLock<people::PeopleIndex>>,
}

impl LiveCatalog {
    /// A catalog whose first rows will be the rows of `matrix` (`[rows, dim]`), pushed in order with
    /// [`LiveCatalog::push_matrix_row`].
    pub fn new(matrix: SharedMatrix, dim: usize) -> Self {
        LiveCatalog {
            entries: Vec::new(),
            alive: Vec::new(),
            by_id: hashbrown::HashTable::new(),
            hasher: Default::default(),
            matrix,
            added: Vec::new(),
            dim,
            genres: Names::default(),
            people: Names::default(),
            sources: Vec::new(),
            stats: OnceLock::new(),
            titles: Arc::default(),
            deleted: 0,
            people_index: Arc::default(),
        }
    }

    /// Room for `n` more movies.
    pub fn reserve(&mut self, n: usize) {
        self.entries.reserve(n);
        self.alive.reserve(n);
        let entries = &self.entries;
        let hasher = &self.hasher;
        self.by_id.reserve(n, |&row| hasher.hash_one(entries[row as usize].id()));
    }

    fn matrix_rows(&self) -> usize {
        self.matrix.len() / self.dim
    }

    fn intern_traits(&mut self, f: &Facts) -> Traits {
        let (genres, people) = (&mut self.genres, &mut self.people);
        traits(f, |g| genres.intern(g), |p| people.intern(p))
    }

    /// The traits of a document that is not (necessarily) in the catalog: names it has never seen
    /// match nothing.
    pub fn traits_of(&self, f: &Facts) -> Traits {
        traits(f, |g| self.genres.find(g), |p| self.people.find(p))
    }

    /// The traits of a catalog row.
    pub fn traits(&self, row: usize) -> &Traits {
        &self.entries[row].traits
    }

    fn make_entry(&mut self, m: NewMovie, folded_title: &str) -> Entry {
        let traits = self.intern_traits(&m.facts);
        let source = match self.sources.iter().position(|s| **s == *m.source) {
            Some(i) => i as u16,
            None => {
                self.sources.push(m.source.into());
                (self.sources.len() - 1) as u16
            }
        };
        Entry::new(&m.id, &m.facts.title, folded_title, m.rating, m.votes, traits, source)
    }

    fn push_entry(&mut self, entry: Entry) -> (usize, Option<usize>) {
        let row = self.entries.len();
        let (entries, hasher) = (&self.entries, &self.hasher);
        let hash = hasher.hash_one(entry.id());
        let replaced = match self.by_id.entry(
            hash,
            |&r| entries[r as usize].id() == entry.id(),
            |&r| hasher.hash_one(entries[r as usize].id()),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut o) => Some(std::mem::replace(o.get_mut(), row as u32) as usize),
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(row as u32);
                None
            }
        };
        if let Some(old) = replaced {
            self.alive[old] = false;
        }
        self.entries.push(entry);
        self.alive.push(true);
        (row, replaced)
    }

    /// An entry for a movie, to push later (loading builds them in store order, pushes in matrix
    /// order). `folded_title` is `fold(title)`, computed by the caller (in parallel, at start).
    pub fn entry_for(&mut self, movie: NewMovie, folded_title: String) -> Entry {
        self.make_entry(movie, &folded_title)
    }

    /// The entry of a matrix row whose movie was deleted (the store no longer has its document): an
    /// id and nothing else, for a row that is removed as soon as it is pushed.
    pub fn deleted_entry(&mut self, id: &str) -> Entry {
        let movie =
            NewMovie { id: id.to_string(), rating: None, votes: None, facts: Facts::default(), source: "deleted" };
        self.make_entry(movie, "")
    }

    /// Append the movie of the next matrix row (its vector is that row).
    pub fn push_matrix_row(&mut self, entry: Entry) -> (usize, Option<usize>) {
        assert!(self.entries.len() < self.matrix_rows(), "more movies than matrix rows");
        self.push_entry(entry)
    }

    /// Append an entry made by [`LiveCatalog::entry_for`] with its own vector, after the matrix rows.
    pub fn push_entry_with_vector(&mut self, entry: Entry, vector: &[f32]) -> (usize, Option<usize>) {
        assert_eq!(vector.len(), self.dim, "vector of the wrong dimension");
        assert_eq!(self.entries.len(), self.matrix_rows() + self.added.len() / self.dim, "matrix rows come first");
        self.added.extend_from_slice(vector);
        self.push_entry(entry)
    }

    /// Append a movie with its own vector, after the matrix rows; a movie with the same id is replaced
    /// (its old row goes dead). Returns the new row and the replaced one.
    pub fn push(&mut self, movie: NewMovie, vector: &[f32]) -> (usize, Option<usize>) {
        assert_eq!(vector.len(), self.dim, "vector of the wrong dimension");
        assert_eq!(self.entries.len(), self.matrix_rows() + self.added.len() / self.dim, "matrix rows come first");
        let folded = fold(&movie.facts.title);
        let entry = self.make_entry(movie, &folded);
        self.added.extend_from_slice(vector);
        self.push_entry(entry)
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Delete the movie `id`: its row goes dead (searches, title search and the map skip it, as they
    /// skip a replaced movie's old row) and the id no longer points anywhere, so that adding it again
    /// makes a new row. The graph has no delete: a dead matrix row stays one of its nodes (walks pass
    /// through it, never return it) until the next `cinevec build` makes the matrix without it.
    /// Returns the row, or `None` when no live movie has that id.
    pub fn remove(&mut self, id: &str) -> Option<usize> {
        let hash = self.hasher.hash_one(id);
        let entries = &self.entries;
        let row = match self.by_id.find_entry(hash, |&r| entries[r as usize].id() == id) {
            Ok(found) => found.remove().0 as usize,
            Err(_) => return None,
        };
        self.alive[row] = false;
        self.deleted += 1;
        Some(row)
    }

    /// A number that changes with every write to the catalog (an add, a replacement or a delete):
    /// what answers made once per catalog state (the map) are kept for.
    pub fn version(&self) -> usize {
        self.entries.len() + self.deleted
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
        let hash = self.hasher.hash_one(id);
        self.by_id.find(hash, |&r| self.entries[r as usize].id() == id).map(|&r| r as usize)
    }

    pub fn entry(&self, row: usize) -> &Entry {
        &self.entries[row]
    }

    pub fn source(&self, row: usize) -> &str {
        &self.sources[self.entries[row].source as usize]
    }

    pub fn vector(&self, row: usize) -> &[f32] {
        let base = self.matrix_rows();
        if row < base {
            &self.matrix[row * self.dim..(row + 1) * self.dim]
        } else {
            &self.added[(row - base) * self.dim..(row - base + 1) * self.dim]
        }
    }

    fn resolve<'f>(&'f self, filter: &'f Filter) -> Resolved<'f> {
        let ids = |names: &[String]| -> Vec<u32> {
            names.iter().map(|g| self.genres.find(g)).filter(|&g| g != UNKNOWN).collect()
        };
        let everything = *filter == Filter::default();
        let (genres, exclude_genres) = (ids(&filter.genres), ids(&filter.exclude_genres));
        let columns = match (
            self.stats.get().and_then(FieldStats::columns),
            plan::genre_mask(&genres),
            plan::genre_mask(&exclude_genres),
        ) {
            (Some(c), Some(want), Some(unwanted)) => Some((c, want, unwanted)),
            _ => None,
        };
        Resolved { filter, everything, genres, exclude_genres, columns }
    }

    /// Whether `row` may be returned by a search under `filter`, excluding `exclude`.
    pub fn keep(&self, row: usize, filter: &Filter, exclude: &[usize]) -> bool {
        self.keep_resolved(row, &self.resolve(filter), exclude)
    }

    fn keep_resolved(&self, row: usize, filter: &Resolved, exclude: &[usize]) -> bool {
        self.alive.get(row).is_some_and(|&alive| alive)
            && !excluded(exclude, row)
            && (filter.everything || filter.accepts_row(row, &self.entries))
    }

    /// Why `row` is similar to a query with `query` traits.
    pub fn why(&self, query: &Traits, row: usize) -> Why {
        let other = &self.entries[row].traits;
        let shared = |names: &Names, mine: &[u32], theirs: &[u32]| -> Vec<String> {
            mine.iter().filter(|id| theirs.contains(id)).map(|&id| names.name(id).to_string()).collect()
        };
        Why {
            shared_directors: shared(&self.people, other.directors(), query.directors()),
            shared_actors: shared(&self.people, other.actors(), query.actors()),
            shared_genres: shared(&self.genres, other.genres(), query.genres()),
            year_gap: match (query.year, other.year) {
                (Some(a), Some(b)) => Some((i64::from(a) - i64::from(b)).abs()),
                _ => None,
            },
        }
    }

    /// The `k` nearest live movies to `query` under `filter`, never any row in `exclude` (sorted): `k` results
    /// come back whenever `k` movies pass the filter. With `exact`, by a scan of every row; else as
    /// planned from the filter's selectivity ([`LiveCatalog::nearest_by`]). `start`: the row whose
    /// vector `query` is (more like this by id).
    #[allow(clippy::too_many_arguments)]
    pub fn nearest(
        &self,
        index: &VectorIndex,
        query: &[f32],
        start: Option<usize>,
        k: usize,
        filter: &Filter,
        exclude: &[usize],
        exact: bool,
    ) -> Vec<Hit> {
        self.nearest_by(index, query, start, k, filter, exclude, exact.then_some(Plan::Exhaustive)).0
    }

    /// [`LiveCatalog::nearest`], and the plan that answered. Planned (`force` `None`): by id, the
    /// index's neighbour table when enough of the movie's neighbours pass
    /// ([`VectorIndex::neighbours_of`]); else an exact scan of the rows the filter lets through when
    /// they are few, or the graph walk with the filter inside (starting at the query's own node by
    /// id, see [`VectorIndex::search_from`]) when they are many, falling back to the scan when the
    /// walk finds fewer than `k` (see [`plan`]). `force` answers by one plan, for tests and
    /// measurements: `Table` when the table can answer (else as planned), `Walk` the walk's answer
    /// even when it is short, `Scan` and `Exhaustive` always.
    #[allow(clippy::too_many_arguments)]
    pub fn nearest_by(
        &self,
        index: &VectorIndex,
        query: &[f32],
        start: Option<usize>,
        k: usize,
        filter: &Filter,
        exclude: &[usize],
        force: Option<Plan>,
    ) -> (Vec<Hit>, Plan) {
        let resolved = self.resolve(filter);
        let keep = |row: usize| self.keep_resolved(row, &resolved, exclude);
        if force == Some(Plan::Exhaustive) {
            let rows = |row: usize| Some(self.vector(row));
            return (search_exact(&rows, self.rows(), query, k, &keep), Plan::Exhaustive);
        }
        if matches!(force, None | Some(Plan::Table)) {
            if let Some(hits) = start.and_then(|row| self.table_neighbours(index, row, query, k, &keep)) {
                return (hits, Plan::Table);
            }
        }
        let ef = if start.is_some() { index.params().ef_search_by_row } else { index.params().ef_search };
        let sketch = index.sketch();
        let plan = match force {
            Some(p @ (Plan::Walk | Plan::Scan | Plan::Sketch)) => p,
            _ => self.plan_for(&resolved, k, ef, sketch.is_some()),
        };
        if plan == Plan::Walk {
            let hits = index.search_from(query, start, k, ef, &keep);
            let hits = self.with_run_time_rows(hits, query, k, &keep);
            if hits.len() >= k || force == Some(Plan::Walk) {
                return (hits, Plan::Walk);
            }
        }
        // The walk's fallback scans exactly; the sketch only when planned (or asked for) and held.
        let (sketch, how) = match (plan, sketch) {
            (Plan::Sketch, Some(s)) => (Some(s), Plan::Sketch),
            _ => (None, Plan::Scan),
        };
        let hits = self.scan_matching(query, k, &resolved, exclude, &keep, sketch, index.quantized());
        (self.with_run_time_rows(hits, query, k, &keep), how)
    }

    /// More like row `start` from the index's neighbour table alone, when `k` of its stored neighbours
    /// pass `filter` (`None` otherwise): the first step of a planned [`LiveCatalog::nearest_by`] by id,
    /// for a caller that answers it in place (a few microseconds) and queues only what needs a scan.
    pub fn nearest_from_table(
        &self,
        index: &VectorIndex,
        start: usize,
        k: usize,
        filter: &Filter,
        exclude: &[usize],
    ) -> Option<Vec<Hit>> {
        let resolved = self.resolve(filter);
        let keep = |row: usize| self.keep_resolved(row, &resolved, exclude);
        self.table_neighbours(index, start, self.vector(start), k, &keep)
    }

    fn table_neighbours(
        &self,
        index: &VectorIndex,
        start: usize,
        query: &[f32],
        k: usize,
        keep: &(impl Fn(usize) -> bool + Sync),
    ) -> Option<Vec<Hit>> {
        index.neighbours_of(start, k, keep).map(|hits| self.with_run_time_rows(hits, query, k, keep))
    }

    /// `hits` (the `k` best of the graph's rows, best first) merged with the rows added at run time
    /// that `keep` accepts: the `k` best of both.
    fn with_run_time_rows(
        &self,
        mut hits: Vec<Hit>,
        query: &[f32],
        k: usize,
        keep: &impl Fn(usize) -> bool,
    ) -> Vec<Hit> {
        let base = self.matrix_rows();
        if self.entries.len() == base {
            return hits;
        }
        hits.extend(
            (base..self.entries.len())
                .zip(self.added.chunks_exact(self.dim))
                .filter(|(r, _)| keep(*r))
                .map(|(row, v)| Hit { row, score: dot(query, v) }),
        );
        best_k(hits, k)
    }

    /// Rank every live movie accepted by `filter` by `score(vector)`, best first (for the linear
    /// recommender, whose decision function is not a cosine).
    pub fn rank_by(
        &self,
        k: usize,
        filter: &Filter,
        exclude: &[usize],
        score: impl Fn(&[f32]) -> f32 + Sync,
    ) -> Vec<Hit> {
        use rayon::prelude::*;
        let resolved = self.resolve(filter);
        let hits = (0..self.rows())
            .into_par_iter()
            .filter(|&r| self.keep_resolved(r, &resolved, exclude))
            .map(|r| Hit { row: r, score: score(self.vector(r)) });
        best_k_par(hits, k)
    }

    /// The folded titles, years and votes of every row, for [`titles::TitleIndex::build`].
    fn title_rows(&self) -> titles::TitleRows {
        let bytes = self.entries.iter().map(|e| e.folded_title().len()).sum();
        let mut rows = titles::TitleRows::with_capacity(self.entries.len(), bytes);
        for e in &self.entries {
            rows.push(e.folded_title(), e.year(), e.votes);
        }
        rows
    }

    /// Build the title index over the rows present now (rows added later are searched beside it).
    /// Does nothing when one was built already.
    pub fn index_titles(&self) {
        if self.titles.get().is_none() {
            let _ = self.titles.set(titles::TitleIndex::build(&self.title_rows()));
        }
    }

    /// [`LiveCatalog::index_titles`] on a thread of its own (a few hundred milliseconds for a large
    /// catalog): title searches meanwhile score every row with the same rules, only slower.
    pub fn index_titles_in_background(&self) {
        if self.titles.get().is_some() || self.entries.is_empty() {
            return;
        }
        let rows = self.title_rows();
        let slot = self.titles.clone();
        let spawned = std::thread::Builder::new().name("title-index".into()).spawn(move || {
            let t = std::time::Instant::now();
            let index = titles::TitleIndex::build(&rows);
            tracing::info!(
                "title index: {} movies, {} words, {:.1} MB, built in {:.0} ms",
                index.rows(),
                index.words(),
                index.heap_bytes() as f64 / 1e6,
                t.elapsed().as_secs_f64() * 1e3
            );
            let _ = slot.set(index);
        });
        if let Err(e) = spawned {
            tracing::warn!("could not start the title index thread ({e}); title searches scan every row");
        }
    }

    /// The title index, once built.
    pub fn title_index(&self) -> Option<&titles::TitleIndex> {
        self.titles.get()
    }

    /// Title search for what a person typed (see [`titles`]); an invalid query finds nothing.
    pub fn search_titles(&self, query: &str, limit: usize) -> Vec<usize> {
        TitleQuery::parse(query).map(|q| self.find_titles(&q, limit)).unwrap_or_default()
    }

    /// The `limit` live movies best matching `query` (see [`titles`]), best first: by rank key, then
    /// votes (most first), then row. The index answers for the rows it holds, every other row (added
    /// since, or all of them while the index is being built) is scored on its own.
    pub fn find_titles(&self, query: &TitleQuery, limit: usize) -> Vec<usize> {
        self.find_titles_keyed(query, limit).into_iter().map(|(_, row)| row).collect()
    }

    /// [`find_titles`](Self::find_titles) with each title's rank key (how many of the query's words it
    /// matched: [`titles::matched_words`]), best first.
    pub fn find_titles_keyed(&self, query: &TitleQuery, limit: usize) -> Vec<(u32, usize)> {
        if query.is_empty() || limit == 0 {
            return Vec::new();
        }
        let alive = |row: usize| self.alive.get(row).is_some_and(|&a| a);
        let (mut found, scanned_from) = match self.titles.get() {
            Some(index) => (index.search(query, limit, alive), index.rows()),
            None => (Vec::new(), 0),
        };
        found.extend((scanned_from..self.entries.len()).filter(|&row| alive(row)).filter_map(|row| {
            let e = &self.entries[row];
            let key = titles::score_title(query, e.folded_title(), e.year());
            (key > 0).then_some((key, row))
        }));
        let votes = |row: usize| self.entries[row].votes.unwrap_or(0);
        found.sort_by(|a, b| b.0.cmp(&a.0).then(votes(b.1).cmp(&votes(a.1))).then(a.1.cmp(&b.1)));
        found.truncate(limit);
        found
    }
}

/// Whether `row` is in `exclude`, a sorted list of rows (searches test it for every row they visit:
/// 100 excluded ids cost a binary search, not 100 comparisons).
#[inline]
pub(crate) fn excluded(exclude: &[usize], row: usize) -> bool {
    match exclude {
        [] => false,
        [only] => *only == row,
        _ => exclude.binary_search(&row).is_ok(),
    }
}

/// An empty shared matrix of dimension `dim` (a catalog of run-time rows only).
pub fn no_matrix() -> SharedMatrix {
    Arc::new(Vec::new())
}

/// A document's traits, with genre and person names numbered by `genre` and `person`.
fn traits(f: &Facts, mut genre: impl FnMut(&str) -> u32, mut person: impl FnMut(&str) -> u32) -> Traits {
    let mut ids: Vec<u32> = f.genres.iter().take(255).map(|g| genre(g)).collect();
    let n_genres = ids.len() as u8;
    ids.extend(f.directors.iter().take(255).map(|p| person(p)));
    let n_directors = (ids.len() - usize::from(n_genres)) as u8;
    ids.extend(f.actors.iter().map(|p| person(p)));
    Traits {
        ids: ids.into_boxed_slice(),
        genres: n_genres,
        directors: n_directors,
        year: f.release_year.and_then(|y| i32::try_from(y).ok()),
        runtime: f.runtime_minutes.and_then(|m| u16::try_from(m).ok()).filter(|&m| m > 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn movie(id: &str, doc: &MovieDoc, votes: u64) -> NewMovie<'static> {
        let facts = Facts::parse(Box::leak(doc.render().into_boxed_str())).unwrap();
        NewMovie { id: id.into(), rating: Some(7.0), votes: Some(votes), facts, source: "test" }
    }

    fn doc(title: &str, year: i64, genres: &[&str]) -> MovieDoc {
        MovieDoc::parse(&json!({"title": title, "genres": genres, "release_year": year})).unwrap()
    }

    fn catalog() -> LiveCatalog {
        LiveCatalog::new(no_matrix(), 1)
    }

    #[test]
    fn folding_ignores_case_and_accents() {
        assert_eq!(fold("Amélie ÉTÉ"), "amelie ete");
        assert_eq!(fold("Ⅻ Straße"), "xii straße");
    }

    #[test]
    fn facts_from_stored_json_equal_facts_from_the_document() {
        let d = MovieDoc::parse(&json!({
            "title": "Café \"Noir\"", "genres": null, "release_year": 1999, "directors": ["A B"],
            "actors": ["C", "D"], "principals": [{"E": "composer"}], "extra": {"x": [1]}
        }))
        .unwrap();
        let text = d.render();
        let (parsed, of) = (Facts::parse(&text).unwrap(), Facts::of(&d));
        assert_eq!(parsed.title, of.title);
        assert!(parsed.genres.is_empty() && of.genres.is_empty());
        assert_eq!(
            (parsed.release_year, &parsed.directors, &parsed.actors),
            (of.release_year, &of.directors, &of.actors)
        );
        let huge = MovieDoc::parse(&json!({"title": "T", "release_year": u64::MAX})).unwrap();
        assert_eq!(Facts::parse(&huge.render()).unwrap().release_year, None);
    }

    #[test]
    fn title_search_ranks_by_match_then_votes() {
        let mut cat = catalog();
        for (i, (t, v)) in
            [("The Frozen Ground", 10), ("Frozen II", 5), ("Frozen", 1), ("Unfrozen", 99), ("Frozen", 50)]
                .iter()
                .enumerate()
        {
            cat.push(movie(&format!("m{i}"), &doc(t, 2000, &[]), *v), &[1.0]);
        }
        // Every title with the word "frozen" matches it exactly; the whole title typed ("Frozen") first,
        // then votes decide; "unfrozen" is not the word (2 edits away).
        let ids: Vec<&str> = cat.search_titles("FROZEN", 10).iter().map(|&r| cat.entry(r).id()).collect();
        assert_eq!(ids, ["m4", "m2", "m0", "m1"]);
    }

    #[test]
    fn a_replaced_movie_leaves_a_dead_row() {
        let mut cat = catalog();
        cat.push(movie("a", &doc("A", 2000, &[]), 1), &[1.0]);
        let (row, replaced) = cat.push(movie("a", &doc("A2", 2001, &[]), 1), &[1.0]);
        assert_eq!((row, replaced), (1, Some(0)));
        assert_eq!(cat.live_count(), 1);
        assert!(!cat.keep(0, &Filter::default(), &[]));
        assert!(cat.keep(1, &Filter::default(), &[]));
        assert!(cat.search_titles("a", 5).iter().all(|&r| r == 1));
    }

    #[test]
    fn filters_combine() {
        let mut cat = catalog();
        cat.push(movie("x", &doc("X", 1999, &["Drama", "Crime"]), 500), &[1.0]);
        let keep = |f: &Filter| cat.keep(0, f, &[]);
        let f =
            Filter { min_year: Some(1990), genres: vec!["crime".into()], min_votes: Some(100), ..Default::default() };
        assert!(keep(&f));
        assert!(!keep(&Filter { exclude_genres: vec!["drama".into()], ..f.clone() }));
        assert!(!keep(&Filter { genres: vec!["western".into()], ..f.clone() }), "an unknown genre matches nothing");
        assert!(keep(&Filter { exclude_genres: vec!["western".into()], ..f.clone() }));
        assert!(!keep(&Filter { max_year: Some(1998), ..f.clone() }));
        assert!(!keep(&Filter { min_rating: Some(7.5), ..f }));
    }

    #[test]
    fn matrix_rows_read_the_shared_matrix_and_added_rows_their_own() {
        let mut cat = LiveCatalog::new(Arc::new(vec![1.0, 0.0, 0.0, 1.0]), 2);
        for id in ["a", "b"] {
            let entry = cat.entry_for(movie(id, &doc(id, 2000, &[]), 1), id.into());
            cat.push_matrix_row(entry);
        }
        cat.push(movie("c", &doc("C", 2000, &[]), 1), &[0.6, 0.8]);
        assert_eq!((cat.vector(0), cat.vector(1), cat.vector(2)), (&[1.0, 0.0][..], &[0.0, 1.0][..], &[0.6, 0.8][..]));
    }

    #[test]
    fn why_names_what_two_movies_share() {
        let mut cat = catalog();
        let a = MovieDoc::parse(&json!({"title": "A", "genres": ["Drama", "Crime"], "release_year": 1990,
            "directors": ["Ann Lee"], "actors": ["Bo Ek", "Cy Do"]}))
        .unwrap();
        let b = MovieDoc::parse(&json!({"title": "B", "genres": ["crime"], "release_year": 1995,
            "directors": ["ann lee"], "actors": ["Cy Do", "Di Fo"]}))
        .unwrap();
        cat.push(movie("a", &a, 1), &[1.0]);
        cat.push(movie("b", &b, 1), &[1.0]);
        let why = cat.why(&cat.traits(0).clone(), 1);
        assert_eq!(why.shared_directors, ["Ann Lee"], "case-insensitive, first spelling");
        assert_eq!(why.shared_actors, ["Cy Do"]);
        assert_eq!(why.shared_genres, ["Crime"]);
        assert_eq!(why.year_gap, Some(5));
        let posted = MovieDoc::parse(&json!({"title": "P", "actors": ["Di Fo", "Nobody Known"]})).unwrap();
        let why = cat.why(&cat.traits_of(&Facts::of(&posted)), 1);
        assert_eq!((why.shared_actors, why.year_gap), (vec!["Di Fo".to_string()], None));
    }
}
