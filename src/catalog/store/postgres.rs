//! The PostgreSQL catalog store through `sqlx`: the store several `cinevec serve` replicas share. Its
//! schema lives in `migrations/postgres/` and is applied by [`PostgresStore::open`].
//!
//! Beside what the SQLite store does, it is the replicas' change feed: every run-time embedding row
//! carries the catalog generation it was written at and a trigger sends a `NOTIFY` on
//! [`CHANNEL`] when it commits; a replica listens ([`PostgresStore::listener`]) and reads
//! [`PostgresStore::changes_since`] the last generation it applied.

use super::{doc_sha256, Change, MovieRow, RawMovie, StoreError, StoredMovie, UpsertCounts};
use crate::movie::{MovieDoc, DOC_FORMAT_VERSION};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Row};
use std::str::FromStr;
use std::time::Duration;

/// The channel the embedding trigger notifies (payload: the row's generation).
pub const CHANNEL: &str = "cinevec_movies";

/// Movies per upsert statement: columns travel as arrays (`UNNEST`), so a statement costs a few
/// parameters whatever its size; a few thousand rows amortise the round trip.
const ROWS_PER_STATEMENT: usize = 4096;

/// Opening a connection to the server (the start's first connection, the change listener's): a
/// server that does not complete the handshake by then (down behind a firewall that drops packets, or
/// its processes paused) fails the open or the reconnection as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a call waits for a pooled connection (opening a new one included) before it is told the
/// store is unavailable.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// The whole of one run-time call, measured by cinevec itself (no server-side setting can time out a
/// server that stopped answering): one read (a movie, the generation, a page of the change feed), or
/// one write transaction (an add or a delete) from acquiring its connection to its commit; each
/// attempt of a write that lost a conflict has its own. Past it the call fails as unavailable (the
/// service answers 503 with `Retry-After`); the connection it ran on is tested before it is used again
/// and closed if it still does not answer. The bulk calls of `ingest` and of a start (whole pages of the
/// catalog) have no such bound.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// `work`, failed as [`StoreError::TimedOut`] when it takes longer than `limit`.
async fn bounded<T>(
    operation: &'static str,
    limit: Duration,
    work: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(limit, work).await.unwrap_or(Err(StoreError::TimedOut { operation, after: limit }))
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

const UPSERT: &str = "INSERT INTO movies (id, title, release_year, rating, votes, document, doc_sha256, source, \
     doc_format, added_at, updated_at)
SELECT id, title, release_year, rating, votes, document, doc_sha256, source, $2, $1, $1
FROM UNNEST($3::text[], $4::text[], $5::bigint[], $6::float8[], $7::bigint[], $8::text[], $9::text[], $10::text[])
    AS r (id, title, release_year, rating, votes, document, doc_sha256, source)
ON CONFLICT (id) DO UPDATE SET
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
   OR movies.votes IS DISTINCT FROM excluded.votes";

/// A PostgreSQL catalog store. Cloning is cheap (it is a connection pool handle).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// `host:port/database`, for messages (never the password).
    name: String,
}

/// `host:port/database` of a PostgreSQL URL, without user or password.
pub fn describe(options: &PgConnectOptions) -> String {
    format!("{}:{}/{}", options.get_host(), options.get_port(), options.get_database().unwrap_or("postgres"))
}

impl PostgresStore {
    /// Connect to the database at `url` (`postgres://user@host:port/db`) and apply any pending
    /// migrations. An unreachable server fails at once with one line naming host and port.
    pub async fn open(url: &str) -> Result<PostgresStore, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|source| StoreError::Open { location: "the PostgreSQL URL".into(), source })?;
        let name = describe(&options);
        let unreachable = |e: sqlx::Error| StoreError::Unreachable {
            host: options.get_host().to_string(),
            port: options.get_port(),
            reason: e.to_string(),
        };
        // One direct connection first: its error says why (refused, unknown host, bad password),
        // where the pool's would only say that it timed out.
        let first =
            tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await.unwrap_or_else(|_| {
                Err(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer to the connection within {CONNECT_TIMEOUT:?}"),
                )))
            });
        first.map_err(unreachable)?.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(unreachable)?;
        super::migrate(super::migrator(super::POSTGRES_MIGRATIONS), &pool, &name).await?;
        Ok(PostgresStore { pool, name })
    }

    /// `host:port/database`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// See [`super::Store::upsert_movies`]. Ids must be unique within one call (PostgreSQL refuses
    /// to update one row twice in a statement).
    ///
    /// A transaction that loses a conflict with another writer is run again (see
    /// [`super::retry_conflicts`]).
    pub async fn upsert_movies(&self, rows: &[MovieRow]) -> Result<UpsertCounts, StoreError> {
        super::retry_conflicts("upserting movies", || self.upsert_movies_once(rows)).await
    }

    async fn upsert_movies_once(&self, rows: &[MovieRow]) -> Result<UpsertCounts, StoreError> {
        let now = super::now_rfc3339_millis();
        let mut counts = UpsertCounts::default();
        let mut tx = self.pool.begin().await?;
        lock_generation(&mut tx).await?;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let written = upsert_chunk(&mut tx, chunk, &now).await?;
            counts.written += written;
            counts.unchanged += chunk.len() as u64 - written;
        }
        tx.commit().await?;
        Ok(counts)
    }

    /// See [`super::Store::put_movie_with_embedding`]; returns the generation the embedding was
    /// written at. Run again when it loses a conflict, like [`PostgresStore::upsert_movies`].
    pub async fn put_movie_with_embedding(
        &self,
        row: &MovieRow,
        model_sha256: &str,
        vector: &[f32],
    ) -> Result<u64, StoreError> {
        super::retry_conflicts("adding a movie", || {
            bounded("adding a movie", CALL_TIMEOUT, self.put_movie_with_embedding_once(row, model_sha256, vector))
        })
        .await
    }

    async fn put_movie_with_embedding_once(
        &self,
        row: &MovieRow,
        model_sha256: &str,
        vector: &[f32],
    ) -> Result<u64, StoreError> {
        let now = super::now_rfc3339_millis();
        let mut tx = self.pool.begin().await?;
        lock_generation(&mut tx).await?;
        upsert_chunk(&mut tx, std::slice::from_ref(row), &now).await?;
        // Adding a deleted id again brings it back (before the embedding: its generation is the last).
        sqlx::query("DELETE FROM movie_tombstones WHERE movie_id = $1").bind(&row.id).execute(&mut *tx).await?;
        let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
        let generation: i64 = sqlx::query(
            "INSERT INTO movie_embeddings (movie_id, model_sha256, dim, doc_sha256, vector, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (movie_id) DO UPDATE SET model_sha256 = excluded.model_sha256, dim = excluded.dim,
                 doc_sha256 = excluded.doc_sha256, vector = excluded.vector, created_at = excluded.created_at
             RETURNING generation",
        )
        .bind(&row.id)
        .bind(model_sha256)
        .bind(vector.len() as i64)
        .bind(doc_sha256(&row.movie.render()))
        .bind(bytes)
        .bind(&now)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        tx.commit().await?;
        Ok(generation as u64)
    }

    /// See [`super::Store::delete_movie`]; run again when it loses a conflict, like an add.
    pub async fn delete_movie(&self, id: &str) -> Result<Option<u64>, StoreError> {
        super::retry_conflicts("deleting a movie", || {
            bounded("deleting a movie", CALL_TIMEOUT, self.delete_movie_once(id))
        })
        .await
    }

    async fn delete_movie_once(&self, id: &str) -> Result<Option<u64>, StoreError> {
        let now = super::now_rfc3339_millis();
        let mut tx = self.pool.begin().await?;
        lock_generation(&mut tx).await?;
        // The run-time embedding goes with the movie (ON DELETE CASCADE).
        let gone = sqlx::query("DELETE FROM movies WHERE id = $1").bind(id).execute(&mut *tx).await?.rows_affected();
        if gone == 0 {
            return Ok(None);
        }
        let generation: i64 = sqlx::query(
            "INSERT INTO movie_tombstones (movie_id, deleted_at) VALUES ($1, $2)
             ON CONFLICT (movie_id) DO UPDATE SET deleted_at = excluded.deleted_at
             RETURNING generation",
        )
        .bind(id)
        .bind(&now)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        tx.commit().await?;
        Ok(Some(generation as u64))
    }

    /// See [`super::Store::tombstones`].
    pub async fn tombstones(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT movie_id FROM movie_tombstones ORDER BY movie_id").fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Deletes written after generation `after`, as `(id, generation)`, oldest first, at most `limit`:
    /// the change feed's other half (see [`PostgresStore::changes_since`]).
    pub async fn deletions_since(&self, after: u64, limit: u32) -> Result<Vec<(String, u64)>, StoreError> {
        bounded("reading the deletions feed", CALL_TIMEOUT, async {
            let rows = sqlx::query(
                "SELECT movie_id, generation FROM movie_tombstones WHERE generation > $1 ORDER BY generation LIMIT $2",
            )
            .bind(after as i64)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|r| {
                    let generation: i64 = r.try_get(1)?;
                    Ok((r.try_get(0)?, generation as u64))
                })
                .collect()
        })
        .await
    }

    /// See [`super::Store::movie_embeddings`].
    pub async fn movie_embeddings(&self, model_sha256: &str) -> Result<Vec<(String, Vec<f32>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.movie_id, e.dim, e.vector FROM movie_embeddings e JOIN movies m ON m.id = e.movie_id
             WHERE e.model_sha256 = $1 AND e.doc_sha256 = m.doc_sha256 ORDER BY e.generation, e.movie_id",
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

    /// Run-time adds and replacements written after generation `after` by the model `model_sha256`
    /// (whose document has not changed since), oldest first, at most `limit`.
    pub async fn changes_since(&self, after: u64, model_sha256: &str, limit: u32) -> Result<Vec<Change>, StoreError> {
        bounded("reading the change feed", CALL_TIMEOUT, async {
            let rows = sqlx::query(
                "SELECT e.movie_id, e.generation, e.dim, e.vector, m.rating, m.votes, m.document, m.source
                 FROM movie_embeddings e JOIN movies m ON m.id = e.movie_id
                 WHERE e.generation > $1 AND e.model_sha256 = $2 AND e.doc_sha256 = m.doc_sha256
                 ORDER BY e.generation LIMIT $3",
            )
            .bind(after as i64)
            .bind(model_sha256)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|r| {
                    let id: String = r.try_get(0)?;
                    let generation: i64 = r.try_get(1)?;
                    let vector = super::decode_vector(&id, r.try_get(2)?, r.try_get(3)?)?;
                    let votes: Option<i64> = r.try_get(5)?;
                    Ok(Change {
                        generation: generation as u64,
                        movie: RawMovie {
                            id,
                            rating: r.try_get(4)?,
                            votes: votes.map(|v| v.max(0) as u64),
                            document: r.try_get(6)?,
                            source: r.try_get(7)?,
                        },
                        vector,
                    })
                })
                .collect()
        })
        .await
    }

    /// A listener on [`CHANNEL`], on its own connection (connected and listening within
    /// [`CONNECT_TIMEOUT`]).
    pub async fn listener(&self) -> Result<PgListener, StoreError> {
        bounded("connecting the change listener", CONNECT_TIMEOUT, async {
            let mut listener = PgListener::connect_with(&self.pool).await?;
            listener.listen(CHANNEL).await?;
            Ok(listener)
        })
        .await
    }

    pub async fn get(&self, id: &str) -> Result<Option<StoredMovie>, StoreError> {
        bounded("reading a movie", CALL_TIMEOUT, async {
            let row = sqlx::query(select_movies!("WHERE id = $1")).bind(id).fetch_optional(&self.pool).await?;
            row.map(|r| decode(&r)).transpose()
        })
        .await
    }

    pub async fn find_by_title(&self, title: &str) -> Result<Vec<StoredMovie>, StoreError> {
        bounded("finding a title", CALL_TIMEOUT, async {
            let rows = sqlx::query(select_movies!("WHERE lower(title) = lower($1) ORDER BY id"))
                .bind(title)
                .fetch_all(&self.pool)
                .await?;
            rows.iter().map(decode).collect()
        })
        .await
    }

    pub async fn movies_after(&self, after: Option<&str>, limit: u32) -> Result<Vec<StoredMovie>, StoreError> {
        // Ids are `COLLATE "C"` (byte order, as in SQLite): the primary key's order.
        let rows = sqlx::query(select_movies!("WHERE id > $1 ORDER BY id LIMIT $2"))
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }

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

    pub async fn all_ids(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT id FROM movies ORDER BY id").fetch_all(&self.pool).await?;
        rows.iter().map(|r| r.try_get::<String, _>(0).map_err(StoreError::from)).collect()
    }

    pub async fn generation(&self) -> Result<(String, u64), StoreError> {
        bounded("reading the generation", CALL_TIMEOUT, async {
            let row =
                sqlx::query("SELECT identity, generation FROM catalog_meta WHERE id = 1").fetch_one(&self.pool).await?;
            let generation: i64 = row.try_get(1)?;
            Ok((row.try_get(0)?, generation as u64))
        })
        .await
    }

    pub async fn count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query("SELECT count(*) FROM movies").fetch_one(&self.pool).await?.try_get(0)?;
        Ok(n as u64)
    }

    pub async fn count_by_source(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query(r#"SELECT source, count(*) FROM movies GROUP BY source ORDER BY source COLLATE "C""#)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)? as u64))).collect()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn decode(row: &PgRow) -> Result<StoredMovie, StoreError> {
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

/// Take the catalog generation's row lock first, before any movie row. Every write moves the
/// generation (the triggers), so writers wait for each other on that row anyway; taking it before the
/// movie rows gives every cinevec writer one lock order. Without it, an ingest that had moved the
/// generation (its first statement) and then needed a movie row that a run-time add had just written
/// deadlocked with that add, which waited for the generation (PostgreSQL aborts one of the two: 40P01).
async fn lock_generation(tx: &mut sqlx::PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT generation FROM catalog_meta WHERE id = 1 FOR UPDATE").execute(tx).await?;
    Ok(())
}

/// Insert or update up to [`ROWS_PER_STATEMENT`] movies with one statement inside a transaction;
/// returns how many were written (the rest were stored exactly like this already).
async fn upsert_chunk(tx: &mut sqlx::PgConnection, chunk: &[MovieRow], now: &str) -> Result<u64, StoreError> {
    let n = chunk.len();
    let (mut ids, mut titles, mut years, mut ratings) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut votes, mut documents, mut shas, mut sources) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for row in chunk {
        let document = row.movie.render();
        shas.push(doc_sha256(&document));
        documents.push(document);
        ids.push(row.id.clone());
        titles.push(row.movie.title().to_string());
        years.push(row.movie.release_year());
        ratings.push(row.rating);
        // Vote counts beyond i64 cannot occur in real data; saturate rather than fail the batch.
        votes.push(row.votes.map(|v| i64::try_from(v).unwrap_or(i64::MAX)));
        sources.push(row.source.clone());
    }
    let done = sqlx::query(UPSERT)
        .bind(now)
        .bind(DOC_FORMAT_VERSION)
        .bind(ids)
        .bind(titles)
        .bind(years)
        .bind(ratings)
        .bind(votes)
        .bind(documents)
        .bind(shas)
        .bind(sources)
        .execute(tx)
        .await?;
    Ok(done.rows_affected())
}
