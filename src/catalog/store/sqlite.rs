//! The SQLite catalog store (WAL mode) through `sqlx`. Its schema lives in `migrations/sqlite/` and is
//! applied by [`SqliteStore::open`].
//!
//! The SQL is kept portable (`$n` placeholders, `ON CONFLICT ... DO UPDATE`, `IS DISTINCT FROM`, types
//! that both SQLite and PostgreSQL know); the PostgreSQL store (`postgres.rs`) differs where its
//! dialect is faster (arrays for bulk upserts) or must (BYTEA, trigger functions).

use super::{doc_sha256, now_rfc3339_millis, MovieRow, RawMovie, StoreError, StoredMovie, UpsertCounts};
use crate::movie::{MovieDoc, DOC_FORMAT_VERSION};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Row;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Movies per `INSERT` statement: one round trip to the database thread per 32 movies instead of per
/// movie. Not more: SQLite looks numbered parameters up by a linear scan, so binding costs grow with
/// the square of the statement's parameter count (257 here).
const ROWS_PER_STATEMENT: usize = 32;
/// Parameters per movie in [`upsert_sql`]; `$1` (now) and `$2` (document format) are shared.
const PARAMS_PER_ROW: usize = 8;

/// The upsert for `rows` movies. An identical row is left alone (the `WHERE` of `DO UPDATE`), so
/// `rows_affected` counts the rows inserted or changed.
fn upsert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO movies (id, title, release_year, rating, votes, document, doc_sha256, source, \
         doc_format, added_at, updated_at) VALUES ",
    );
    for r in 0..rows {
        let p = 3 + r * PARAMS_PER_ROW;
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for i in 0..PARAMS_PER_ROW {
            sql.push_str(&format!("${}, ", p + i));
        }
        sql.push_str("$2, $1, $1)");
    }
    sql.push_str(
        " ON CONFLICT (id) DO UPDATE SET
    title = excluded.title,
    release_year = excluded.release_year,
    rating = excluded.rating,
    votes = excluded.votes,
    document = excluded.document,
    doc_format = excluded.doc_format,
    doc_sha256 = excluded.doc_sha256,
    source = excluded.source,
    updated_at = excluded.updated_at
WHERE movies.document <> excluded.document
   OR movies.doc_format <> excluded.doc_format
   OR movies.source <> excluded.source
   OR movies.rating IS DISTINCT FROM excluded.rating
   OR movies.votes IS DISTINCT FROM excluded.votes",
    );
    sql
}

/// `SELECT <the columns decode() reads> FROM movies <tail>`, as a `&'static str`.
macro_rules! select_movies {
    ($tail:literal) => {
        concat!(
            "SELECT id, rating, votes, document, doc_format, doc_sha256, source, added_at, updated_at FROM movies ",
            $tail
        )
    };
}

/// Whether the file `path` (or, when it does not exist, its folder) is on a filesystem mounted
/// read-only.
fn on_read_only_filesystem(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let existing = if path.exists() {
        path
    } else {
        match path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => dir,
            None => Path::new("."),
        }
    };
    let Ok(c_path) = std::ffi::CString::new(existing.as_os_str().as_bytes()) else { return false };
    // SAFETY: statvfs(3) fills the zeroed struct it is given; the path is a valid C string.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } == 0) && stat.f_flag & libc::ST_RDONLY != 0
}

/// A store that cannot be migrated (read-only) must have every migration this cinevec knows applied,
/// and none it does not.
async fn check_migrated(pool: &SqlitePool, location: &str) -> Result<(), StoreError> {
    let known: Vec<i64> = super::migrator(super::SQLITE_MIGRATIONS).iter().map(|m| m.version).collect();
    let applied: Vec<i64> = sqlx::query("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(pool)
        .await
        .map_err(|source| StoreError::Open { location: location.to_string(), source })?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    if let Some(&version) = applied.iter().find(|v| !known.contains(v)) {
        return Err(StoreError::NewerSchema { location: location.to_string(), version });
    }
    if let Some(missing) = known.iter().find(|v| !applied.contains(v)) {
        return Err(StoreError::Open {
            location: location.to_string(),
            source: sqlx::Error::Configuration(
                format!("the store is read-only and lacks schema migration {missing}: it cannot be migrated").into(),
            ),
        });
    }
    Ok(())
}

/// A SQLite catalog store. Cloning is cheap (it is a connection pool handle).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Open (creating it and its folder if missing) the store at `location`: a file path, or a `sqlite:`
    /// URL such as `sqlite::memory:`; then apply any pending migrations.
    pub async fn open(location: &str) -> Result<SqliteStore, StoreError> {
        let open_err = |source| StoreError::Open { location: location.to_string(), source };
        let options = if location.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(location).map_err(open_err)?
        } else {
            let path = Path::new(location);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| open_err(sqlx::Error::Io(e)))?;
            }
            SqliteConnectOptions::new().filename(path)
        };
        let in_memory = location.contains(":memory:") || location.contains("mode=memory");
        let read_only = !in_memory && on_read_only_filesystem(options.get_filename());
        let options = if read_only {
            // A store on a read-only filesystem (a read-only mount of the artifacts folder): opened
            // immutable (no locks, no WAL index to create), so that every read answers; every write
            // fails with SQLITE_READONLY (see `StoreError::is_read_only`), until a start after the
            // filesystem is writable again.
            tracing::warn!(
                "the catalog store {location} is on a read-only filesystem: opened read-only; reads answer, \
                 writes are refused"
            );
            // Immutable ignores a write-ahead log: only where there is none left to read (a store
            // closed cleanly). With one (a crash before the mount went read-only), SQLite must read
            // it and cannot without writing its index: the open then fails, saying so, rather than
            // serve without the log's writes.
            let mut wal = options.get_filename().as_os_str().to_owned();
            wal.push("-wal");
            let unlogged = std::fs::metadata(&wal).map_or(true, |m| m.len() == 0);
            options.read_only(true).immutable(unlogged).foreign_keys(true)
        } else {
            options
                .create_if_missing(true)
                // WAL: readers (the server) never block the writer (an ingest); NORMAL sync is durable
                // across application crashes in WAL mode and much faster for bulk writes.
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
        };
        let pool = if in_memory {
            // Every connection to `:memory:` is its own database: keep exactly one, forever.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await
        } else {
            SqlitePoolOptions::new().max_connections(4).connect_with(options).await
        }
        .map_err(open_err)?;
        if read_only {
            // Nothing can be migrated: the schema must be this cinevec's already.
            check_migrated(&pool, location).await?;
        } else {
            super::migrate(super::migrator(super::SQLITE_MIGRATIONS), &pool, location).await?;
        }
        Ok(SqliteStore { pool })
    }

    /// Insert or update movies by id, all in one transaction. A movie stored exactly like this already
    /// is left alone (its `updated_at` does not move), so re-ingesting a source is idempotent.
    ///
    /// Ids should be unique within one call: SQLite lets the last one win, PostgreSQL refuses.
    pub async fn upsert_movies(&self, rows: &[MovieRow]) -> Result<UpsertCounts, StoreError> {
        let now = now_rfc3339_millis();
        self.write(async |tx| {
            let mut counts = UpsertCounts::default();
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let written = upsert_chunk(tx, chunk, &now).await?;
                counts.written += written;
                counts.unchanged += chunk.len() as u64 - written;
            }
            Ok(counts)
        })
        .await
    }

    /// Run `work` in one write transaction on a connection of its own, committed when it succeeds. A
    /// connection whose transaction failed is closed, never handed back to the pool: when SQLite has
    /// rolled a transaction back by itself (`SQLITE_FULL`, an I/O error), sqlx's own `ROLLBACK` fails
    /// and its count of open transactions stays one too high, so that the connection's next
    /// transaction would be a `SAVEPOINT` that never commits: every later write on it confirmed,
    /// kept in a transaction left open (holding the write lock, so that the other connections wait
    /// for the busy timeout) and lost when the process ends (tests/faults.rs).
    async fn write<T>(
        &self,
        work: impl AsyncFnOnce(&mut sqlx::SqliteConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        use sqlx::Connection;
        let mut conn = self.pool.acquire().await?;
        let result = async {
            let mut tx = conn.begin().await?;
            let out = work(&mut tx).await?;
            tx.commit().await?;
            Ok(out)
        }
        .await;
        if result.is_err() {
            if let Err(e) = conn.close().await {
                tracing::debug!("closing a connection whose write failed: {e}");
            }
        }
        result
    }

    /// Store a movie added at run time together with its embedding, in one transaction: either both
    /// are written or neither. The embedding is tied to the model (`model_sha256`) and to the exact
    /// document it was computed from. Returns the catalog generation after the write.
    pub async fn put_movie_with_embedding(
        &self,
        row: &MovieRow,
        model_sha256: &str,
        vector: &[f32],
    ) -> Result<u64, StoreError> {
        let now = now_rfc3339_millis();
        let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.write(async |tx| {
            upsert_chunk(tx, std::slice::from_ref(row), &now).await?;
            // Adding a deleted id again brings it back.
            sqlx::query("DELETE FROM movie_tombstones WHERE movie_id = $1").bind(&row.id).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO movie_embeddings (movie_id, model_sha256, dim, doc_sha256, vector, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (movie_id) DO UPDATE SET model_sha256 = excluded.model_sha256, dim = excluded.dim,
                 doc_sha256 = excluded.doc_sha256, vector = excluded.vector, created_at = excluded.created_at",
            )
            .bind(&row.id)
            .bind(model_sha256)
            .bind(vector.len() as i64)
            .bind(doc_sha256(&row.movie.render()))
            .bind(bytes)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
            generation_in(tx).await
        })
        .await
    }

    /// See [`super::Store::delete_movie`].
    pub async fn delete_movie(&self, id: &str) -> Result<Option<u64>, StoreError> {
        let now = now_rfc3339_millis();
        self.write(async |tx| {
            // The run-time embedding goes with the movie (ON DELETE CASCADE).
            let gone =
                sqlx::query("DELETE FROM movies WHERE id = $1").bind(id).execute(&mut *tx).await?.rows_affected();
            if gone == 0 {
                return Ok(None);
            }
            sqlx::query(
                "INSERT INTO movie_tombstones (movie_id, deleted_at) VALUES ($1, $2)
             ON CONFLICT (movie_id) DO UPDATE SET deleted_at = excluded.deleted_at",
            )
            .bind(id)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
            Ok(Some(generation_in(tx).await?))
        })
        .await
    }

    /// See [`super::Store::tombstones`].
    pub async fn tombstones(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT movie_id FROM movie_tombstones ORDER BY movie_id").fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Run-time embeddings made by the model `model_sha256` whose movie document has not changed since,
    /// as `(movie id, vector)`, ordered by when they were stored.
    pub async fn movie_embeddings(&self, model_sha256: &str) -> Result<Vec<(String, Vec<f32>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.movie_id, e.dim, e.vector FROM movie_embeddings e JOIN movies m ON m.id = e.movie_id
             WHERE e.model_sha256 = $1 AND e.doc_sha256 = m.doc_sha256 ORDER BY e.created_at, e.movie_id",
        )
        .bind(model_sha256)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(0)?;
                let vector = super::decode_vector(&id, r.try_get(1)?, r.try_get(2)?)?;
                Ok((id, vector))
            })
            .collect()
    }

    /// One movie by id.
    pub async fn get(&self, id: &str) -> Result<Option<StoredMovie>, StoreError> {
        let row = sqlx::query(select_movies!("WHERE id = $1")).bind(id).fetch_optional(&self.pool).await?;
        row.map(|r| decode(&r)).transpose()
    }

    /// Movies whose title equals `title`, ignoring ASCII case, ordered by id.
    pub async fn find_by_title(&self, title: &str) -> Result<Vec<StoredMovie>, StoreError> {
        let rows = sqlx::query(select_movies!("WHERE lower(title) = lower($1) ORDER BY id"))
            .bind(title)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }

    /// Up to `limit` movies with ids after `after` (all from the start when `None`), ordered by id:
    /// keyset paging, so walking a large catalog never holds it all in memory.
    pub async fn movies_after(&self, after: Option<&str>, limit: u32) -> Result<Vec<StoredMovie>, StoreError> {
        let rows = sqlx::query(select_movies!("WHERE id > $1 ORDER BY id LIMIT $2"))
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }

    /// Like [`Store::movies_after`], with only the columns a server needs and the documents unparsed.
    pub async fn raw_movies_after(&self, after: Option<&str>, limit: u32) -> Result<Vec<RawMovie>, StoreError> {
        let rows =
            sqlx::query("SELECT id, rating, votes, document, source FROM movies WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                let votes: Option<i64> = r.try_get(2)?;
                Ok(RawMovie {
                    id: r.try_get(0)?,
                    rating: r.try_get(1)?,
                    votes: votes.map(|v| v.max(0) as u64),
                    document: r.try_get(3)?,
                    source: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Every id, ordered (the order of [`Store::movies_after`] and of the export).
    pub async fn all_ids(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT id FROM movies ORDER BY id").fetch_all(&self.pool).await?;
        rows.iter().map(|r| r.try_get::<String, _>(0).map_err(StoreError::from)).collect()
    }

    /// This database's identity and the generation of its catalog: the pair changes with every write
    /// to the movies or their stored embeddings, by any program (triggers move it; see migration 0003).
    pub async fn generation(&self) -> Result<(String, u64), StoreError> {
        let row =
            sqlx::query("SELECT identity, generation FROM catalog_meta WHERE id = 1").fetch_one(&self.pool).await?;
        let generation: i64 = row.try_get(1)?;
        Ok((row.try_get(0)?, generation as u64))
    }

    /// Number of movies.
    pub async fn count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query("SELECT count(*) FROM movies").fetch_one(&self.pool).await?.try_get(0)?;
        Ok(n as u64)
    }

    /// Number of movies per source, ordered by source.
    pub async fn count_by_source(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query("SELECT source, count(*) FROM movies GROUP BY source ORDER BY source")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)? as u64))).collect()
    }

    /// Close every connection (checkpointing the WAL into the database file). Call before exiting.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The connection pool, for later store modules (embeddings) that share the database.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// The catalog generation, read inside the write transaction (the trigger has moved it by then).
async fn generation_in(tx: &mut sqlx::SqliteConnection) -> Result<u64, StoreError> {
    let generation: i64 =
        sqlx::query("SELECT generation FROM catalog_meta WHERE id = 1").fetch_one(&mut *tx).await?.try_get(0)?;
    Ok(generation as u64)
}

fn decode(row: &sqlx::sqlite::SqliteRow) -> Result<StoredMovie, StoreError> {
    let id: String = row.try_get("id")?;
    let document: String = row.try_get("document")?;
    let movie = serde_json::from_str(&document)
        .map_err(|e| e.to_string())
        .and_then(|v| MovieDoc::from_value(v).map_err(|e| e.to_string()))
        .map_err(|error| StoreError::BadDocument { id: id.clone(), error })?;
    let votes: Option<i64> = row.try_get("votes")?;
    Ok(StoredMovie {
        id,
        rating: row.try_get("rating")?,
        votes: votes.map(|v| v.max(0) as u64),
        movie,
        doc_format: row.try_get("doc_format")?,
        doc_sha256: row.try_get("doc_sha256")?,
        source: row.try_get("source")?,
        added_at: row.try_get("added_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Insert or update up to [`ROWS_PER_STATEMENT`] movies with one statement inside a transaction;
/// returns how many were written (the rest were stored exactly like this already).
async fn upsert_chunk(tx: &mut sqlx::SqliteConnection, chunk: &[MovieRow], now: &str) -> Result<u64, StoreError> {
    static FULL: std::sync::OnceLock<std::sync::Arc<str>> = std::sync::OnceLock::new();
    let sql: std::sync::Arc<str> = if chunk.len() == ROWS_PER_STATEMENT {
        FULL.get_or_init(|| upsert_sql(ROWS_PER_STATEMENT).into()).clone()
    } else {
        upsert_sql(chunk.len()).into()
    };
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now.to_string()).bind(DOC_FORMAT_VERSION);
    for row in chunk {
        let document = row.movie.render();
        let sha = doc_sha256(&document);
        // Vote counts beyond i64 cannot occur in real data; saturate rather than fail the batch.
        let votes = row.votes.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        query = query
            .bind(row.id.clone())
            .bind(row.movie.title().to_string())
            .bind(row.movie.release_year())
            .bind(row.rating)
            .bind(votes)
            .bind(document)
            .bind(sha)
            .bind(row.source.clone());
    }
    Ok(query.execute(tx).await?.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::store::Store;
    use serde_json::json;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    fn row(id: &str, title: &str, rating: Option<f64>) -> MovieRow {
        let movie = MovieDoc::parse(&json!({"title": title, "release_year": 1999, "genres": null})).unwrap();
        MovieRow { id: id.into(), rating, votes: Some(100), movie, source: "test".into() }
    }

    #[test]
    fn upsert_inserts_then_updates_only_what_changed() {
        rt().block_on(async {
            let store = Store::open("sqlite::memory:").await.unwrap();
            let first =
                store.upsert_movies(&[row("b", "Heat", Some(8.3)), row("a", "Alien", Some(8.5))]).await.unwrap();
            assert_eq!(first, UpsertCounts { written: 2, unchanged: 0 });
            let before = store.get("a").await.unwrap().unwrap();

            let again =
                store.upsert_movies(&[row("a", "Alien", Some(8.5)), row("b", "Heat", Some(8.2))]).await.unwrap();
            assert_eq!(again, UpsertCounts { written: 1, unchanged: 1 });
            let after = store.get("a").await.unwrap().unwrap();
            assert_eq!(after.updated_at, before.updated_at, "an identical row must not be touched");
            assert_eq!(store.get("b").await.unwrap().unwrap().rating, Some(8.2));

            assert_eq!(store.count().await.unwrap(), 2);
            assert_eq!(store.all_ids().await.unwrap(), ["a", "b"]);
            assert_eq!(store.find_by_title("ALIEN").await.unwrap()[0].id, "a");
            assert_eq!(after.doc_sha256, doc_sha256(&after.movie.render()));
            assert_eq!(after.movie.title(), "Alien");
            assert!(store.get("zzz").await.unwrap().is_none());
        });
    }

    #[test]
    fn pages_walk_every_movie_once_in_id_order() {
        rt().block_on(async {
            let store = Store::open("sqlite::memory:").await.unwrap();
            let rows: Vec<_> = (0..25).map(|i| row(&format!("m{i:02}"), &format!("T{i}"), None)).collect();
            store.upsert_movies(&rows).await.unwrap();
            let mut seen = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = store.movies_after(after.as_deref(), 10).await.unwrap();
                let Some(last) = page.last() else { break };
                after = Some(last.id.clone());
                seen.extend(page.into_iter().map(|m| m.id));
            }
            let expected: Vec<_> = (0..25).map(|i| format!("m{i:02}")).collect();
            assert_eq!(seen, expected);
        });
    }

    #[test]
    fn large_batches_span_several_statements() {
        rt().block_on(async {
            let store = Store::open("sqlite::memory:").await.unwrap();
            let mut rows: Vec<_> = (0..150).map(|i| row(&format!("m{i:03}"), &format!("T{i}"), Some(5.0))).collect();
            assert_eq!(store.upsert_movies(&rows).await.unwrap(), UpsertCounts { written: 150, unchanged: 0 });
            for r in rows.iter_mut().step_by(15) {
                r.rating = Some(6.0);
            }
            assert_eq!(store.upsert_movies(&rows).await.unwrap(), UpsertCounts { written: 10, unchanged: 140 });
            assert_eq!(store.count().await.unwrap(), 150);
            assert_eq!(store.get("m135").await.unwrap().unwrap().rating, Some(6.0));
            assert_eq!(store.get("m136").await.unwrap().unwrap().rating, Some(5.0));
            assert_eq!(store.get("m149").await.unwrap().unwrap().movie.title(), "T149");
        });
    }

    #[test]
    fn an_unreachable_postgres_url_names_host_and_port() {
        // Port 1 on the loopback interface: nothing listens there, the connection is refused at once.
        let err = rt().block_on(Store::open("postgres://cinevec:secret@127.0.0.1:1/cinevec")).unwrap_err();
        let line = err.to_string();
        assert!(line.starts_with("cannot reach PostgreSQL at 127.0.0.1:1"), "{line}");
        assert!(!line.contains("secret") && !line.contains('\n'), "{line}");
    }
}
