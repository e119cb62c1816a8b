//! Replicas that agree: several services on one PostgreSQL store apply each other's run-time adds and
//! replacements to their live rows, with the embedding the writer stored (nothing is embedded twice).
//!
//! The store's change feed is the run-time embedding rows and the deleted movies' tombstones, ordered
//! by the catalog generation they were written at ([`crate::catalog::store::PostgresStore::changes_since`],
//! [`crate::catalog::store::PostgresStore::deletions_since`]): rows commit in generation
//! order, so "everything after the last generation applied" misses nothing. A `NOTIFY` at each commit
//! wakes the follower at once; the same catch-up read runs after every (re)connection and once a
//! second besides, which also tells whether the store answers ([`StoreState`]).
//!
//! A replica's own writes come back through the feed too: each id remembers the generation its live
//! row was made from, and an older or equal one is not applied again. Writes and catch-ups take the
//! service's write lock, so the store and the live rows see one order on every replica: the newest
//! generation of an id wins everywhere.

use super::live::{fold, Facts, NewMovie};
use super::{Service, ServiceError};
use crate::catalog::store::{Change, PostgresStore, StoreError};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Changes read per catch-up query.
const PAGE: u32 = 1000;
/// How often the follower reads the feed without being notified (and so checks the store).
const POLL: Duration = Duration::from_secs(1);
/// Pause between attempts to reconnect the listener.
const RECONNECT: Duration = Duration::from_millis(250);

/// What the write lock guards: which generation of each run-time id the live rows hold, and how far
/// the change feed has been applied.
#[derive(Debug, Default)]
pub struct Applied {
    by_id: HashMap<String, u64>,
    /// Every change up to this generation is applied.
    generation: u64,
}

impl Applied {
    /// Start the feed after `generation` (what the live rows were loaded at).
    pub fn from_generation(generation: u64) -> Self {
        Applied { by_id: HashMap::new(), generation }
    }

    /// Record that the live row of `id` was made from `generation`; false when it already holds that
    /// generation or a newer one.
    pub fn newer(&mut self, id: &str, generation: u64) -> bool {
        match self.by_id.get_mut(id) {
            Some(g) if *g >= generation => false,
            Some(g) => {
                *g = generation;
                true
            }
            None => {
                self.by_id.insert(id.to_string(), generation);
                true
            }
        }
    }
}

/// Whether the store answers, as the service last saw it.
#[derive(Debug)]
pub struct StoreState {
    backend: &'static str,
    available: AtomicBool,
    /// The change-feed generation applied (PostgreSQL).
    applied: AtomicU64,
    /// Whether the listener is connected (PostgreSQL).
    listening: AtomicBool,
    /// Whether the last write was refused for a full disk.
    full: AtomicBool,
    /// Whether the last write was refused because the store is read-only.
    read_only: AtomicBool,
}

/// The store's state in `/v1/info` and `/readyz`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StoreStatus {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// `available` or `unavailable` (writes answer 503 meanwhile; reads answer from memory).
    pub state: &'static str,
    /// `accepted` or `refused` (a full disk: 507; an unreachable store: 503).
    pub writes: &'static str,
    /// Why writes are refused, while they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writes_refused_because: Option<&'static str>,
    /// PostgreSQL: the catalog generation up to which other replicas' writes are applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_generation: Option<u64>,
    /// PostgreSQL: whether the change listener is connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listening: Option<bool>,
}

impl StoreState {
    pub fn new(backend: &'static str) -> Self {
        StoreState {
            backend,
            available: AtomicBool::new(true),
            applied: AtomicU64::new(0),
            listening: AtomicBool::new(false),
            full: AtomicBool::new(false),
            read_only: AtomicBool::new(false),
        }
    }

    /// Note the outcome of a store call: a fault that says the store is unreachable marks it
    /// unavailable (logged once), any answer marks it available again.
    pub fn saw<T>(&self, result: &Result<T, StoreError>) {
        match result {
            Ok(_) => {
                if !self.available.swap(true, Ordering::Relaxed) {
                    tracing::info!("the catalog store answers again");
                }
            }
            Err(e) if e.is_unavailable() && !e.is_full() => {
                if self.available.swap(false, Ordering::Relaxed) {
                    tracing::warn!(
                        "the catalog store is unavailable ({e}): writes answer 503, reads answer from memory"
                    );
                }
            }
            Err(_) => {}
        }
    }

    /// Note the outcome of a write: as [`StoreState::saw`], and a full disk or a read-only store
    /// refuses writes (logged once) until a write succeeds again.
    pub fn wrote<T>(&self, result: &Result<T, StoreError>) {
        self.saw(result);
        refusal(&self.full, result, StoreError::is_full, FULL, "507");
        refusal(&self.read_only, result, StoreError::is_read_only, READ_ONLY, "503");
    }

    pub fn is_available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> StoreStatus {
        let pg = self.backend == "postgres";
        let refused = if self.full.load(Ordering::Relaxed) {
            Some(FULL)
        } else if self.read_only.load(Ordering::Relaxed) {
            Some(READ_ONLY)
        } else if !self.is_available() {
            Some("the catalog store cannot be reached: writes answer 503 until it answers again")
        } else {
            None
        };
        StoreStatus {
            backend: self.backend,
            state: if self.is_available() { "available" } else { "unavailable" },
            writes: if refused.is_some() { "refused" } else { "accepted" },
            writes_refused_because: refused,
            applied_generation: pg.then(|| self.applied.load(Ordering::Relaxed)),
            listening: pg.then(|| self.listening.load(Ordering::Relaxed)),
        }
    }
}

/// Set a refusal flag when a write failed for its cause (`is`), clear it when a write succeeded (any
/// other error leaves it), and log each change.
fn refusal<T>(flag: &AtomicBool, result: &Result<T, StoreError>, is: fn(&StoreError) -> bool, why: &str, answer: &str) {
    let refused = match result {
        Ok(_) => false,
        Err(e) if is(e) => true,
        Err(_) => return,
    };
    match (flag.swap(refused, Ordering::Relaxed), refused) {
        (false, true) => tracing::warn!("{why} (writes answer {answer}, reads answer from memory)"),
        (true, false) => tracing::info!("the catalog store takes writes again"),
        _ => {}
    }
}

/// Why a write was refused on a full disk (the 507's message, and `/readyz`'s reason).
const FULL: &str = "the catalog store's disk is full: nothing was written; writes resume once space is freed";

/// Why a write was refused by a read-only store (the 503's message, and `/readyz`'s reason).
const READ_ONLY: &str = "the catalog store is read-only (a read-only filesystem or a standby): nothing was written; \
                         writes are taken once it is writable again (SQLite: after a restart)";

/// A store error as the caller sees it: a full disk → 507, nothing written; a read-only store → 503
/// (retry, naming the cause); unreachable → unavailable (503, retry); a write that kept
/// losing conflicts with concurrent writes (after the store's own retries) → unavailable too, since
/// nothing of it was written and a later try may succeed; else internal.
pub fn store_error(e: StoreError) -> ServiceError {
    if e.is_full() {
        ServiceError::Full(FULL.into())
    } else if e.is_read_only() {
        ServiceError::Unavailable(READ_ONLY.into())
    } else if e.is_unavailable() {
        ServiceError::Unavailable("the catalog store is unavailable, retry shortly".into())
    } else if e.is_conflict() {
        tracing::warn!("a store write kept colliding with concurrent writes: {e}");
        ServiceError::Unavailable(
            "the catalog store is busy with concurrent writes and nothing was written, retry shortly".into(),
        )
    } else {
        ServiceError::internal(e)
    }
}

impl Service {
    /// Apply every change of the store's feed after the last one applied; returns how many rows were
    /// added or replaced. Nothing to do on SQLite (one process owns it).
    pub async fn catch_up(&self) -> Result<usize, ServiceError> {
        let Some(pg) = self.store.as_postgres() else { return Ok(0) };
        let mut applied = self.writes.lock().await;
        let mut count = 0;
        loop {
            let read = pg.changes_since(applied.generation, &self.manifest.model.weights_sha256, PAGE).await;
            self.store_state.saw(&read);
            let changes = read.map_err(store_error)?;
            let read = pg.deletions_since(applied.generation, PAGE).await;
            self.store_state.saw(&read);
            let deletions = read.map_err(store_error)?;
            // Up to where both halves of the feed are read whole: a full page ends at its last row.
            let full = |n: usize| n == PAGE as usize;
            let upto = match (changes.last().map(|c| c.generation), deletions.last().map(|d| d.1)) {
                (None, None) => break,
                (Some(c), Some(d)) if full(changes.len()) && full(deletions.len()) => c.min(d),
                (Some(c), _) if full(changes.len()) => c,
                (_, Some(d)) if full(deletions.len()) => d,
                (c, d) => c.max(d).unwrap_or(applied.generation),
            };
            let changes: Vec<Change> = changes.into_iter().filter(|c| c.generation <= upto).collect();
            let deletions: Vec<(String, u64)> = deletions.into_iter().filter(|d| d.1 <= upto).collect();
            count += self.apply(&mut applied, &changes, &deletions)?;
            applied.generation = upto;
            self.store_state.applied.store(upto, Ordering::Relaxed);
            if !full(changes.len()) && !full(deletions.len()) {
                break;
            }
        }
        Ok(count)
    }

    /// Apply adds (`changes`) and deletes (`deletions`, `(id, generation)`), in generation order.
    fn apply(
        &self,
        applied: &mut Applied,
        changes: &[Change],
        deletions: &[(String, u64)],
    ) -> Result<usize, ServiceError> {
        let mut catalog = self.live.write().map_err(ServiceError::internal)?;
        let mut count = 0;
        let mut deletions = deletions.iter().peekable();
        let mut adds = changes.iter().peekable();
        loop {
            let delete_next = match (adds.peek(), deletions.peek()) {
                (None, None) => break,
                (Some(c), Some(d)) => d.1 < c.generation,
                (None, Some(_)) => true,
                (Some(_), None) => false,
            };
            if delete_next {
                let Some((id, generation)) = deletions.next() else { break };
                if applied.newer(id, *generation) && catalog.remove(id).is_some() {
                    count += 1;
                }
                continue;
            }
            let Some(change) = adds.next() else { break };
            let m = &change.movie;
            if change.vector.len() != catalog.dim() || !applied.newer(&m.id, change.generation) {
                continue;
            }
            let facts = Facts::parse(&m.document)
                .map_err(|e| ServiceError::internal(format!("movie {} has an invalid stored document: {e}", m.id)))?;
            let folded = fold(&facts.title);
            let entry = catalog.entry_for(
                NewMovie { id: m.id.clone(), rating: m.rating, votes: m.votes, facts, source: &m.source },
                folded,
            );
            catalog.push_entry_with_vector(entry, &change.vector);
            self.run_time_documents.remember(&m.id, change.generation, m.document.as_str().into());
            count += 1;
        }
        Ok(count)
    }

    /// On PostgreSQL: follow the other replicas' writes until the service is dropped (a listener task
    /// and a once-a-second catch-up). Nothing on SQLite.
    pub fn follow_store(self: &Arc<Self>) {
        let Some(pg) = self.store.as_postgres().cloned() else { return };
        tokio::spawn(remember_loaded_documents(pg.clone(), Arc::downgrade(self)));
        tokio::spawn(listen(pg, Arc::downgrade(self)));
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(service) = weak.upgrade() else { return };
                catch_up_logged(&service).await;
            }
        });
    }

    /// The store's state, for `/readyz` and `/v1/info`.
    pub fn store_status(&self) -> StoreStatus {
        self.store_state.status()
    }

    /// Close the store's connections at a graceful stop, waiting at most `limit` (a store that hangs
    /// is left as it is). SQLite checkpoints its write-ahead log into the database file and removes
    /// it when its last connection closes, so the file alone is the whole store (a read-only mount of
    /// the folder then serves every write).
    pub async fn close_store(&self, limit: Duration) {
        if tokio::time::timeout(limit, self.store.close()).await.is_err() {
            tracing::warn!("the catalog store did not close within {limit:?}");
        }
    }
}

/// Keep the documents of the run-time rows this service started with (loaded from the store or the
/// snapshot without them), so that it can show them while the store is down; retried until read.
async fn remember_loaded_documents(pg: PostgresStore, service: Weak<Service>) {
    let mut after = 0;
    loop {
        let Some(s) = service.upgrade() else { return };
        match pg.changes_since(after, &s.manifest.model.weights_sha256, PAGE).await {
            Ok(changes) => {
                for change in &changes {
                    s.run_time_documents.remember(
                        &change.movie.id,
                        change.generation,
                        change.movie.document.as_str().into(),
                    );
                }
                match changes.last() {
                    Some(last) if changes.len() == PAGE as usize => after = last.generation,
                    _ => return,
                }
            }
            Err(e) => {
                tracing::debug!("reading the run-time documents failed ({e}); retrying");
                drop(s);
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

async fn catch_up_logged(service: &Service) {
    match service.catch_up().await {
        Ok(0) => {}
        Ok(n) => tracing::debug!("applied {n} movies added or replaced by other replicas"),
        Err(ServiceError::Unavailable(_)) => {}
        Err(e) => tracing::warn!("reading the store's changes failed: {e}"),
    }
}

/// Wait for notifications and catch up on each; after a lost connection, reconnect, listen, then
/// catch up (listening first, so nothing committed in between is missed).
async fn listen(pg: PostgresStore, service: Weak<Service>) {
    loop {
        let connected = pg.listener().await;
        let Some(s) = service.upgrade() else { return };
        s.store_state.saw(&connected);
        let Ok(mut listener) = connected else {
            drop(s);
            tokio::time::sleep(RECONNECT).await;
            continue;
        };
        s.store_state.listening.store(true, Ordering::Relaxed);
        catch_up_logged(&s).await;
        drop(s);
        loop {
            let received = listener.try_recv().await;
            let Some(s) = service.upgrade() else { return };
            match received {
                Ok(Some(_)) => {
                    // Several commits may have notified: one catch-up reads them all.
                    while listener.next_buffered().is_some() {}
                    catch_up_logged(&s).await;
                }
                Ok(None) | Err(_) => {
                    s.store_state.listening.store(false, Ordering::Relaxed);
                    tracing::warn!("lost the store's change listener: reconnecting");
                    break;
                }
            }
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database error with only a SQLSTATE, as PostgreSQL sends one.
    #[derive(Debug)]
    struct Coded(&'static str);

    impl std::fmt::Display for Coded {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "error {}", self.0)
        }
    }

    impl std::error::Error for Coded {}

    impl sqlx::error::DatabaseError for Coded {
        fn message(&self) -> &str {
            "coded"
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn coded(code: &'static str) -> StoreError {
        StoreError::Db(sqlx::Error::Database(Box::new(Coded(code))))
    }

    #[test]
    fn transient_store_errors_answer_unavailable_and_the_rest_internal() {
        // Deadlock, serialization failure, lock not available; SQLite BUSY, BUSY_SNAPSHOT, LOCKED;
        // connection lost, shutting down, read-only (failover), too many connections.
        for code in ["40P01", "40001", "55P03", "5", "517", "6", "08006", "57P01", "25006", "53300"] {
            assert!(coded(code).is_transient(), "{code}");
            assert!(matches!(store_error(coded(code)), ServiceError::Unavailable(_)), "{code}");
        }
        assert!(coded("40P01").is_conflict() && !coded("40P01").is_unavailable());
        // A conflict says nothing about whether the store answers: /readyz stays "available".
        let state = StoreState::new("postgres");
        state.saw::<()>(&Err(coded("40P01")));
        assert!(state.is_available());
        // Refused writes are the service's fault, not worth a retry: unique, check violation, SQLite
        // CONSTRAINT (19), a bad document.
        for code in ["23505", "23514", "19", "42P01"] {
            assert!(!coded(code).is_transient(), "{code}");
            assert!(matches!(store_error(coded(code)), ServiceError::Internal(_)), "{code}");
        }
        let bad = StoreError::BadDocument { id: "x".into(), error: "no title".into() };
        assert!(matches!(store_error(bad), ServiceError::Internal(_)));
    }

    #[test]
    fn a_read_only_store_is_503_naming_it_and_refuses_writes_until_one_succeeds() {
        // SQLITE_READONLY and an extended code of it (READONLY_DBMOVED); PostgreSQL read-only transaction.
        for code in ["8", "1032", "25006"] {
            assert!(coded(code).is_read_only(), "{code}");
            let ServiceError::Unavailable(message) = store_error(coded(code)) else { panic!("{code}: not 503") };
            assert!(message.contains("read-only"), "{message}");
        }
        assert!(!coded("13").is_read_only() && !coded("5").is_read_only() && !coded("23505").is_read_only());
        let state = StoreState::new("sqlite");
        state.wrote::<()>(&Err(coded("8")));
        let refused = state.status();
        assert_eq!((refused.state, refused.writes), ("available", "refused"));
        assert!(refused.writes_refused_because.is_some_and(|why| why.contains("read-only")), "{refused:?}");
        state.wrote(&Ok(()));
        assert_eq!(state.status().writes, "accepted");
    }

    #[test]
    fn a_full_disk_is_507_and_refuses_writes_until_one_succeeds() {
        let enospc = || StoreError::Db(sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::StorageFull)));
        for full in [coded("13"), coded("53100"), enospc()] {
            assert!(full.is_full(), "{full}");
            assert!(matches!(store_error(full), ServiceError::Full(_)));
        }
        assert!(!coded("5").is_full() && !coded("23505").is_full());
        let state = StoreState::new("sqlite");
        assert_eq!((state.status().writes, state.status().writes_refused_because), ("accepted", None));
        state.wrote::<()>(&Err(coded("13")));
        let refused = state.status();
        assert_eq!((refused.state, refused.writes), ("available", "refused"));
        assert!(refused.writes_refused_because.is_some_and(|why| why.contains("disk is full")), "{refused:?}");
        // A read that succeeds says nothing about space; a write that succeeds does.
        state.saw(&Ok(()));
        assert_eq!(state.status().writes, "refused");
        state.wrote(&Ok(()));
        assert_eq!((state.status().writes, state.status().writes_refused_because), ("accepted", None));
    }
}
