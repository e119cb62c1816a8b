//! The catalog store: every movie the service knows, with its canonical document, and the vectors of
//! movies added at run time. [`Store`] is the one handle every caller uses; each backend is its own
//! file behind it ([`sqlite`]: one machine, the default; [`postgres`]: shared by several replicas),
//! with its SQL dialect's migrations in `migrations/<dialect>/`, and [`Store::open`] picks the
//! backend from the location.
//!
//! The API is async so that the HTTP server can share one [`Store`] (a cheap clone of a pool handle);
//! the offline commands build a small runtime around it.

pub mod postgres;
pub mod sqlite;

use crate::catalog::jsonl::CatalogRecord;
use crate::movie::MovieDoc;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Where `--db` points when not given.
pub const DEFAULT_DB: &str = "artifacts/catalog.db";

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the catalog store {location}: {source}")]
    Open { location: String, source: sqlx::Error },
    #[error("cannot reach PostgreSQL at {host}:{port}: {reason}")]
    Unreachable { host: String, port: u16, reason: String },
    #[error("cannot apply the schema migrations to {location}: {source}")]
    Migrate { location: String, source: sqlx::migrate::MigrateError },
    #[error(
        "the catalog store {location} has schema migration {version}, which this cinevec does not know: \
         it was written by a newer cinevec; upgrade cinevec or use another --db"
    )]
    NewerSchema { location: String, version: i64 },
    #[error("catalog store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("catalog store: movie {id} has an invalid stored document: {error}")]
    BadDocument { id: String, error: String },
    /// A call the store did not finish within its bound (PostgreSQL's `CALL_TIMEOUT`, the listener's
    /// `CONNECT_TIMEOUT`): a server that hangs (paused, overloaded, a network that drops packets).
    #[error("catalog store: {operation}: no answer within {after:?}")]
    TimedOut { operation: &'static str, after: std::time::Duration },
}

impl StoreError {
    /// The store cannot be reached now (down, restarting, no free connection): a write may succeed
    /// when retried, unlike a refused one.
    pub fn is_unavailable(&self) -> bool {
        let db = match self {
            StoreError::Unreachable { .. } | StoreError::TimedOut { .. } => return true,
            StoreError::Db(e) => e,
            _ => return false,
        };
        match db {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
                true
            }
            sqlx::Error::Protocol(_) => true,
            // PostgreSQL's connection exceptions (08...) and operator interventions: shutting down,
            // starting up, crashed (57P...).
            // read-only transaction (a standby, or a primary during a failover), too many connections.
            sqlx::Error::Database(e) => {
                e.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "25006" || c == "53300")
            }
            _ => false,
        }
    }

    /// The transaction was rolled back because it collided with another one (PostgreSQL: deadlock
    /// 40P01, serialization failure 40001, lock not available 55P03; SQLite: busy or locked): the
    /// same transaction, run again, may well succeed, and nothing of it was written.
    pub fn is_conflict(&self) -> bool {
        let StoreError::Db(sqlx::Error::Database(e)) = self else { return false };
        let Some(code) = e.code() else { return false };
        if matches!(code.as_ref(), "40P01" | "40001" | "55P03") {
            return true;
        }
        // SQLite's (extended) result codes: the primary code is the low byte. 5 BUSY, 6 LOCKED.
        code.parse::<u32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
    }

    /// The store's disk (or quota) is full: nothing of the write was kept, and it may succeed once
    /// space is freed (507). SQLite: `SQLITE_FULL` (13); PostgreSQL: `disk_full` (53100); or the
    /// operating system's "no space left on device" on the way.
    pub fn is_full(&self) -> bool {
        let db = match self {
            StoreError::Db(e) | StoreError::Open { source: e, .. } => e,
            _ => return false,
        };
        match db {
            sqlx::Error::Io(e) => e.kind() == std::io::ErrorKind::StorageFull,
            sqlx::Error::Database(e) => e.code().is_some_and(|c| c == "53100" || c == "13"),
            _ => false,
        }
    }

    /// The store refuses writes because it is read-only: SQLite's `SQLITE_READONLY` (8, and its
    /// extended codes: a store on a read-only filesystem, see `SqliteStore::open`); PostgreSQL's
    /// `read_only_sql_transaction` (25006: a standby, or a primary during a failover).
    pub fn is_read_only(&self) -> bool {
        let StoreError::Db(sqlx::Error::Database(e)) = self else { return false };
        e.code().is_some_and(|c| c == "25006" || c.parse::<u32>().is_ok_and(|c| c & 0xff == 8))
    }

    /// Worth retrying later: the store is unavailable, or a write lost a conflict (503, not 500).
    pub fn is_transient(&self) -> bool {
        self.is_unavailable() || self.is_conflict()
    }
}

/// Run the transaction `attempt` makes again while it fails with a conflict ([`StoreError::is_conflict`]):
/// up to [`CONFLICT_RETRIES`] more times, after 20 ms, then about twice as long each time (jittered,
/// so that two writers that collided do not collide again), at most 400 ms. Each attempt must be a
/// whole transaction (a conflict rolled back everything it did).
pub(crate) async fn retry_conflicts<T, F, Fut>(what: &str, attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    use backon::{ExponentialBuilder, Retryable};
    let backoff = ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(20))
        .with_max_delay(std::time::Duration::from_millis(400))
        .with_factor(2.0)
        .with_max_times(CONFLICT_RETRIES)
        .with_jitter();
    attempt
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(StoreError::is_conflict)
        .notify(|e, after| tracing::info!("{what}: {e}; retrying in {after:?}"))
        .await
}

/// How many times a transaction that lost a conflict is run again before the error is returned.
pub const CONFLICT_RETRIES: usize = 5;

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

/// A run-time add or replacement as the change feed returns it: the movie and its stored embedding,
/// at the catalog generation it was written at.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub generation: u64,
    pub movie: RawMovie,
    pub vector: Vec<f32>,
}

/// SHA-256 (hex) of a rendered document.
pub fn doc_sha256(rendered: &str) -> String {
    crate::hash::sha256_hex(rendered.as_bytes())
}

/// Millisecond precision, so that an update right after an insert is visible in `updated_at`.
fn now_rfc3339_millis() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// A stored vector: `dim` little-endian f32 values.
fn decode_vector(id: &str, dim: i64, bytes: Vec<u8>) -> Result<Vec<f32>, StoreError> {
    if bytes.len() as i64 != dim * 4 {
        return Err(StoreError::BadDocument {
            id: id.to_string(),
            error: format!("stored embedding has {} bytes for dimension {dim}", bytes.len()),
        });
    }
    Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

/// One migration file of `migrations/<backend>/`, embedded at build time: `VERSION_description.sql`.
struct Embedded {
    version: i64,
    /// The file name's part after the version, without `.sql`, `_` read as a space (as sqlx names it).
    description: &'static str,
    sql: &'static str,
}

/// The SQLite migrations (`migrations/sqlite/`), in order. A file added there must be listed here too:
/// `embedded_migrations_match_the_folders` compares the two.
const SQLITE_MIGRATIONS: &[Embedded] = &[
    Embedded { version: 1, description: "catalog", sql: include_str!("../../../migrations/sqlite/0001_catalog.sql") },
    Embedded {
        version: 2,
        description: "movie embeddings",
        sql: include_str!("../../../migrations/sqlite/0002_movie_embeddings.sql"),
    },
    Embedded {
        version: 3,
        description: "catalog generation",
        sql: include_str!("../../../migrations/sqlite/0003_catalog_generation.sql"),
    },
    Embedded {
        version: 4,
        description: "movie tombstones",
        sql: include_str!("../../../migrations/sqlite/0004_movie_tombstones.sql"),
    },
];

/// The PostgreSQL migrations (`migrations/postgres/`), in order.
const POSTGRES_MIGRATIONS: &[Embedded] = &[
    Embedded { version: 1, description: "catalog", sql: include_str!("../../../migrations/postgres/0001_catalog.sql") },
    Embedded {
        version: 2,
        description: "movie tombstones",
        sql: include_str!("../../../migrations/postgres/0002_movie_tombstones.sql"),
    },
];

/// A migrator over embedded migrations: what sqlx's `migrate!` macro would make (same versions,
/// descriptions and checksums, so databases migrated by either agree), without building sqlx's
/// proc-macro crate and a second copy of its drivers and SQLite for the host at every cold build.
fn migrator(files: &[Embedded]) -> sqlx::migrate::Migrator {
    use sqlx::migrate::{Migration, MigrationType};
    use sqlx::SqlSafeStr;
    sqlx::migrate::Migrator::with_migrations(
        files
            .iter()
            .map(|m| {
                let sql = sqlx::AssertSqlSafe(m.sql).into_sql_str();
                Migration::new(
                    m.version,
                    m.description.into(),
                    MigrationType::Simple,
                    sql,
                    m.sql.starts_with("-- no-transaction"),
                )
            })
            .collect(),
    )
}

/// Apply the pending migrations of `migrator`; a database migrated by a newer cinevec (a migration this
/// build does not have) is refused with one line.
async fn migrate<'c, A>(migrator: sqlx::migrate::Migrator, pool: A, location: &str) -> Result<(), StoreError>
where
    A: sqlx::Acquire<'c>,
    <A::Connection as std::ops::Deref>::Target: sqlx::migrate::Migrate,
{
    migrator.run(pool).await.map_err(|source| match source {
        sqlx::migrate::MigrateError::VersionMissing(version) => {
            StoreError::NewerSchema { location: location.to_string(), version }
        }
        source => StoreError::Migrate { location: location.to_string(), source },
    })
}

/// Handle to the catalog store, whichever backend holds it. Cloning is cheap.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

/// One arm per backend.
macro_rules! each_backend {
    ($store:expr, $backend:ident => $call:expr) => {
        match $store {
            Store::Sqlite($backend) => $call,
            Store::Postgres($backend) => $call,
        }
    };
}

/// Whether `location` names a PostgreSQL database.
pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// `location` fit for logs, messages and records: a PostgreSQL URL with its password, in the user
/// part or as a `password=` parameter, replaced by `***` (`postgres://user:***@host:port/db`). Every
/// place that shows a `--db` shows it through this.
pub fn redacted(location: &str) -> String {
    let Some((scheme, rest)) = location.split_once("://").filter(|_| is_postgres_url(location)) else {
        return location.to_string();
    };
    // The authority ends at the path, the query or the fragment; its user part at its last `@`.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => p.to_string(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Whether a store may exist at `location` (a SQLite file that is there, or any database URL: opening
/// it says whether it answers).
pub fn may_exist(location: &str) -> bool {
    (location.contains(':') && !std::path::Path::new(location).exists()) || std::path::Path::new(location).is_file()
}

impl Store {
    /// Open the store at `location`, then apply any pending migrations: a `postgres://` URL, or a
    /// SQLite file path (created with its folder if missing) or `sqlite:` URL such as `sqlite::memory:`.
    pub async fn open(location: &str) -> Result<Store, StoreError> {
        if is_postgres_url(location) {
            return Ok(Store::Postgres(PostgresStore::open(location).await?));
        }
        Ok(Store::Sqlite(SqliteStore::open(location).await?))
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// The PostgreSQL store, whose change feed replicas follow.
    pub fn as_postgres(&self) -> Option<&PostgresStore> {
        match self {
            Store::Postgres(pg) => Some(pg),
            Store::Sqlite(_) => None,
        }
    }

    /// Insert or update movies by id, all in one transaction. A movie stored exactly like this already
    /// is left alone, so re-ingesting a source is idempotent.
    pub async fn upsert_movies(&self, rows: &[MovieRow]) -> Result<UpsertCounts, StoreError> {
        each_backend!(self, s => s.upsert_movies(rows).await)
    }

    /// Write a movie and its embedding together (one transaction): both or neither. Returns the
    /// catalog generation after the write (PostgreSQL: the one the embedding row carries).
    pub async fn put_movie_with_embedding(
        &self,
        row: &MovieRow,
        model_sha256: &str,
        vector: &[f32],
    ) -> Result<u64, StoreError> {
        each_backend!(self, s => s.put_movie_with_embedding(row, model_sha256, vector).await)
    }

    /// Run-time embeddings made by the model `model_sha256` whose movie document has not changed since.
    pub async fn movie_embeddings(&self, model_sha256: &str) -> Result<Vec<(String, Vec<f32>)>, StoreError> {
        each_backend!(self, s => s.movie_embeddings(model_sha256).await)
    }

    pub async fn get(&self, id: &str) -> Result<Option<StoredMovie>, StoreError> {
        each_backend!(self, s => s.get(id).await)
    }

    /// Delete the movie `id` (its row and run-time embedding) and leave its tombstone, in one
    /// transaction. Returns the catalog generation after the write (PostgreSQL: the one the tombstone
    /// carries), or `None` when the store holds no movie `id` (nothing is written).
    pub async fn delete_movie(&self, id: &str) -> Result<Option<u64>, StoreError> {
        each_backend!(self, s => s.delete_movie(id).await)
    }

    /// The ids of every movie deleted at run time (and not added again since).
    pub async fn tombstones(&self) -> Result<Vec<String>, StoreError> {
        each_backend!(self, s => s.tombstones().await)
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

#[cfg(test)]
mod tests {
    use super::redacted;

    /// The embedded lists hold every file of `migrations/<backend>/` with the version, description,
    /// type and checksum sqlx gives it when it reads the folder (what `migrate!` embedded before):
    /// a file added to a folder but not to its list, or a list naming another text, fails here.
    #[test]
    fn embedded_migrations_match_the_folders() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for (folder, files) in [("sqlite", super::SQLITE_MIGRATIONS), ("postgres", super::POSTGRES_MIGRATIONS)] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(folder);
            let read = rt.block_on(sqlx::migrate::Migrator::new(path.as_path())).unwrap();
            let embedded = super::migrator(files);
            let key = |m: &sqlx::migrate::Migration| {
                (m.version, m.description.to_string(), m.migration_type, m.checksum.to_vec(), m.no_tx)
            };
            let (read, embedded): (Vec<_>, Vec<_>) =
                (read.iter().map(key).collect(), embedded.iter().map(key).collect());
            assert!(!read.is_empty(), "{folder}: no migrations read");
            assert_eq!(embedded, read, "{folder}: the embedded migrations differ from the folder's");
        }
    }

    #[test]
    fn redacted_urls_keep_everything_but_the_password() {
        for (url, shown) in [
            ("postgres://cinevec:s3cret@db:5432/cinevec", "postgres://cinevec:***@db:5432/cinevec"),
            ("postgresql://u:p%40ss@db/c?sslmode=require", "postgresql://u:***@db/c?sslmode=require"),
            // A raw `@` in the password: the host is after the last one.
            ("postgres://u:p@ss@db:5432/c", "postgres://u:***@db:5432/c"),
            ("postgres://u:@db/c", "postgres://u:***@db/c"),
            (
                "postgres://db/c?user=u&password=s3cret&sslmode=disable",
                "postgres://db/c?user=u&password=***&sslmode=disable",
            ),
            ("postgres://u:s3cret@db?PASSWORD=again", "postgres://u:***@db?PASSWORD=***"),
            // Nothing to hide.
            ("postgres://u@db:5432/c", "postgres://u@db:5432/c"),
            ("postgres://db", "postgres://db"),
            ("artifacts/catalog.db", "artifacts/catalog.db"),
            ("sqlite::memory:", "sqlite::memory:"),
        ] {
            assert_eq!(redacted(url), shown, "{url}");
        }
    }
}
