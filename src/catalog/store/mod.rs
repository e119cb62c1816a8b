//! The catalog store: every movie the service knows, with its canonical document, and the vectors of
//! movies added at run time. [`Store`] is the one handle every caller uses; each backend is its own
//! file behind it ([`sqlite`] today; a PostgreSQL one sits beside it, with its SQL dialect's
//! migrations in `migrations/postgres/` beside `migrations/sqlite/`), and [`Store::open`] picks the
//! backend from the location.
//!
//! The API is async so that the HTTP server can share one [`Store`] (a cheap clone of a pool handle);
//! the offline commands build a small runtime around it.

pub mod sqlite;

use crate::catalog::jsonl::CatalogRecord;
use crate::movie::MovieDoc;
pub use sqlite::SqliteStore;

/// Where `--db` points when not given.
pub const DEFAULT_DB: &str = "artifacts/catalog.db";

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}: PostgreSQL is not supported yet; use a SQLite file path or a sqlite: URL")]
    Unsupported(String),
    #[error("cannot open the catalog store {location}: {source}")]
    Open { location: String, source: sqlx::Error },
    #[error("cannot apply the schema migrations to {location}: {source}")]
    Migrate { location: String, source: sqlx::migrate::MigrateError },
    #[error("catalog store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("catalog store: movie {id} has an invalid stored document: {error}")]
    BadDocument { id: String, error: String },
}

/// A movie to write: what every source (IMDb dumps, catalog files, the demo, later the API) produces.
#[derive(Debug, Clone, PartialEq)]
pub struct MovieRow {
    /// IMDb tconst, or the source's own stable id.
    pub id: String,
    /// Average IMDb user rating (1–10), when known.
    pub rating: Option<f64>,
    pub votes: Option<u64>,
    pub movie: MovieDoc,
    /// Where the movie came from, e.g. `imdb`, `catalog:movies.jsonl`.
    pub source: String,
}

impl MovieRow {
    /// A catalog JSONL record, labelled with its source.
    pub fn from_record(record: CatalogRecord, source: &str) -> Self {
        MovieRow {
            id: record.id,
            rating: record.rating,
            votes: record.votes,
            movie: record.movie,
            source: source.to_string(),
        }
    }
}

/// A movie as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMovie {
    pub id: String,
    pub rating: Option<f64>,
    pub votes: Option<u64>,
    pub movie: MovieDoc,
    /// The rendering version the document was stored with ([`DOC_FORMAT_VERSION`] at the time).
    pub doc_format: String,
    /// SHA-256 (hex) of the rendered document: what an embedding of this movie must have been made from.
    pub doc_sha256: String,
    pub source: String,
    /// RFC 3339 UTC: first written.
    pub added_at: String,
    /// RFC 3339 UTC: last changed (an identical rewrite does not change it).
    pub updated_at: String,
}

impl StoredMovie {
    /// The movie as a catalog JSONL record (the interchange format).
    pub fn to_record(&self) -> CatalogRecord {
        CatalogRecord { id: self.id.clone(), rating: self.rating, votes: self.votes, movie: self.movie.clone() }
    }
}

/// A movie as stored, its document not parsed: for loading a whole catalog fast.
#[derive(Debug, Clone, PartialEq)]
pub struct RawMovie {
    pub id: String,
    pub rating: Option<f64>,
    pub votes: Option<u64>,
    /// The canonical document's JSON, as written by [`MovieDoc::render`].
    pub document: String,
    pub source: String,
}

/// What one [`Store::upsert_movies`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertCounts {
    /// Rows inserted or changed.
    pub written: u64,
    /// Rows already stored exactly like this (rating, votes, document, source): left alone.
    pub unchanged: u64,
}

/// SHA-256 (hex) of a rendered document.
pub fn doc_sha256(rendered: &str) -> String {
    crate::hash::sha256_hex(rendered.as_bytes())
}

/// Handle to the catalog store, whichever backend holds it. Cloning is cheap.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqliteStore),
}

/// One arm per backend.
macro_rules! each_backend {
    ($store:expr, $backend:ident => $call:expr) => {
        match $store {
            Store::Sqlite($backend) => $call,
        }
    };
}

impl Store {
    /// Open (creating it if missing) the store at `location`, then apply any pending migrations: a
    /// SQLite file path or a `sqlite:` URL such as `sqlite::memory:`. PostgreSQL URLs are refused
    /// until that backend exists.
    pub async fn open(location: &str) -> Result<Store, StoreError> {
        if location.starts_with("postgres:") || location.starts_with("postgresql:") {
            return Err(StoreError::Unsupported(location.to_string()));
        }
        Ok(Store::Sqlite(SqliteStore::open(location).await?))
    }

    /// Insert or update movies by id, all in one transaction. A movie stored exactly like this already
    /// is left alone, so re-ingesting a source is idempotent.
    pub async fn upsert_movies(&self, rows: &[MovieRow]) -> Result<UpsertCounts, StoreError> {
        each_backend!(self, s => s.upsert_movies(rows).await)
    }

    /// Write a movie and its embedding together (one transaction): both or neither.
    pub async fn put_movie_with_embedding(&self, row: &MovieRow, model_sha256: &str, vector: &[f32]) -> Result<(), StoreError> {
        each_backend!(self, s => s.put_movie_with_embedding(row, model_sha256, vector).await)
    }

    /// Run-time embeddings made by the model `model_sha256` whose movie document has not changed since.
    pub async fn movie_embeddings(&self, model_sha256: &str) -> Result<Vec<(String, Vec<f32>)>, StoreError> {
        each_backend!(self, s => s.movie_embeddings(model_sha256).await)
    }

    pub async fn get(&self, id: &str) -> Result<Option<StoredMovie>, StoreError> {
        each_backend!(self, s => s.get(id).await)
    }

    /// Movies whose title is `title`, ignoring case.
    pub async fn find_by_title(&self, title: &str) -> Result<Vec<StoredMovie>, StoreError> {
        each_backend!(self, s => s.find_by_title(title).await)
    }

    /// Up to `limit` movies with ids after `after`, by id (keyset pagination).
    pub async fn movies_after(&self, after: Option<&str>, limit: u32) -> Result<Vec<StoredMovie>, StoreError> {
        each_backend!(self, s => s.movies_after(after, limit).await)
    }

    /// [`Store::movies_after`] with the documents as stored (not parsed).
    pub async fn raw_movies_after(&self, after: Option<&str>, limit: u32) -> Result<Vec<RawMovie>, StoreError> {
        each_backend!(self, s => s.raw_movies_after(after, limit).await)
    }

    /// Every id, ordered (the order of [`Store::movies_after`] and of the export).
    pub async fn all_ids(&self) -> Result<Vec<String>, StoreError> {
        each_backend!(self, s => s.all_ids().await)
    }

    /// This database's identity and the generation of its catalog: the pair changes with every write
    /// to the movies or their stored embeddings, by any program.
    pub async fn generation(&self) -> Result<(String, u64), StoreError> {
        each_backend!(self, s => s.generation().await)
    }

    /// Number of movies.
    pub async fn count(&self) -> Result<u64, StoreError> {
        each_backend!(self, s => s.count().await)
    }

    /// Number of movies per source, ordered by source.
    pub async fn count_by_source(&self) -> Result<Vec<(String, u64)>, StoreError> {
        each_backend!(self, s => s.count_by_source().await)
    }

    /// Close every connection. Call before exiting.
    pub async fn close(&self) {
        each_backend!(self, s => s.close().await)
    }
}
