//! The catalog store's contract, checked on every backend: SQLite (a temporary file) and PostgreSQL (a
//! throwaway cluster, when PostgreSQL is installed; without it the PostgreSQL half says why and skips).

mod pg_cluster;

use cinevec::catalog::store::{doc_sha256, MovieRow, Store, StoreError, UpsertCounts};
use cinevec::movie::MovieDoc;
use serde_json::json;
use std::time::Duration;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn row(id: &str, title: &str, rating: Option<f64>) -> MovieRow {
    let movie = MovieDoc::parse(&json!({"title": title, "release_year": 1999, "genres": ["Drama"]})).unwrap();
    MovieRow { id: id.into(), rating, votes: Some(100), movie, source: "test".into() }
}

/// One cluster for the whole test binary (each test gets its own database in it).
fn cluster() -> Option<&'static pg_cluster::Cluster> {
    pg_cluster::shared()
}

/// A fresh store of each backend: `(name, location)`.
fn locations(test: &str) -> (tempfile::TempDir, Vec<(&'static str, String)>) {
    let tmp = tempfile::tempdir().unwrap();
    let mut all = vec![("sqlite", tmp.path().join("catalog.db").to_string_lossy().into_owned())];
    if let Some(pg) = cluster() {
        all.push(("postgres", pg.create_db(test).unwrap()));
    }
    (tmp, all)
}

/// Run `check` against a fresh store of every backend.
fn on_every_backend<F, Fut>(test: &str, check: F)
where
    F: Fn(&'static str, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (_tmp, locations) = locations(test);
    let rt = rt();
    for (backend, location) in locations {
        eprintln!("{test}: {backend}");
        rt.block_on(check(backend, location));
    }
}

#[test]
fn upserts_insert_then_update_only_what_changed() {
    on_every_backend("upserts", |backend, location| async move {
        let store = Store::open(&location).await.unwrap();
        assert_eq!(store.backend(), backend);
        let (_, g0) = store.generation().await.unwrap();
        let first = store.upsert_movies(&[row("b", "Heat", Some(8.3)), row("a", "Alien", Some(8.5))]).await.unwrap();
        assert_eq!(first, UpsertCounts { written: 2, unchanged: 0 }, "{backend}");
        let (_, g1) = store.generation().await.unwrap();
        assert!(g1 > g0, "{backend}: a write moves the generation");
        let before = store.get("a").await.unwrap().unwrap();

        let again = store.upsert_movies(&[row("a", "Alien", Some(8.5)), row("b", "Heat", Some(8.2))]).await.unwrap();
        assert_eq!(again, UpsertCounts { written: 1, unchanged: 1 }, "{backend}");
        let same = store.upsert_movies(&[row("a", "Alien", Some(8.5))]).await.unwrap();
        assert_eq!(same, UpsertCounts { written: 0, unchanged: 1 }, "{backend}");
        let (_, g2) = store.generation().await.unwrap();
        let _ = store.upsert_movies(&[row("a", "Alien", Some(8.5))]).await.unwrap();
        assert_eq!(
            store.generation().await.unwrap().1,
            g2,
            "{backend}: an identical rewrite leaves the generation alone"
        );

        let after = store.get("a").await.unwrap().unwrap();
        assert_eq!(after.updated_at, before.updated_at, "{backend}: an identical row must not be touched");
        assert_eq!(store.get("b").await.unwrap().unwrap().rating, Some(8.2));
        assert_eq!(store.count().await.unwrap(), 2);
        assert_eq!(store.find_by_title("ALIEN").await.unwrap()[0].id, "a");
        assert_eq!(after.doc_sha256, doc_sha256(&after.movie.render()));
        assert_eq!(store.count_by_source().await.unwrap(), [("test".to_string(), 2)]);
        assert!(store.get("zzz").await.unwrap().is_none());
        store.close().await;
    });
}

#[test]
fn ids_sort_byte_by_byte_and_pages_walk_every_movie_once() {
    on_every_backend("pages", |backend, location| async move {
        let store = Store::open(&location).await.unwrap();
        // Upper case before lower case, digits before letters: byte order, whatever the locale.
        let mut ids: Vec<String> = (0..25).map(|i| format!("m{i:02}")).collect();
        ids.extend(["Zed", "alpha", "B-2", "b-1", "tt0000001"].map(String::from));
        let rows: Vec<_> = ids.iter().map(|id| row(id, &format!("T {id}"), None)).collect();
        store.upsert_movies(&rows).await.unwrap();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(store.all_ids().await.unwrap(), expected, "{backend}");
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store.raw_movies_after(after.as_deref(), 7).await.unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            seen.extend(page.into_iter().map(|m| m.id));
        }
        assert_eq!(seen, expected, "{backend}");
        store.close().await;
    });
}

#[test]
fn both_backends_export_the_same_bytes() {
    let (tmp, locations) = locations("export");
    let rt = rt();
    let rows: Vec<_> =
        (0..300).map(|i| row(&format!("tt{:07}", i * 7919 % 1000), &format!("Film {i}"), Some(5.5))).collect();
    let mut exports = Vec::new();
    for (backend, location) in &locations {
        let out = tmp.path().join(format!("{backend}.jsonl"));
        rt.block_on(async {
            let store = Store::open(location).await.unwrap();
            store.upsert_movies(&rows).await.unwrap();
            assert_eq!(cinevec::pipeline::export::export_jsonl(&store, &out).await.unwrap(), 300);
            store.close().await;
        });
        exports.push(std::fs::read(&out).unwrap());
    }
    assert!(exports.windows(2).all(|w| w[0] == w[1]), "the backends' exports differ");
}

#[test]
fn run_time_embeddings_are_kept_with_their_document() {
    on_every_backend("embeddings", |backend, location| async move {
        let store = Store::open(&location).await.unwrap();
        store.upsert_movies(&[row("a", "Alien", Some(8.5))]).await.unwrap();
        let g1 =
            store.put_movie_with_embedding(&row("x", "Xanadu", None), "model-1", &[1.0, -2.5, 0.25]).await.unwrap();
        let g2 =
            store.put_movie_with_embedding(&row("y", "Yol", Some(7.0)), "model-1", &[0.5, 0.5, 0.5]).await.unwrap();
        assert!(g2 > g1, "{backend}: generations {g1}, {g2}");
        assert_eq!(store.generation().await.unwrap().1, g2, "{backend}");
        let got = store.movie_embeddings("model-1").await.unwrap();
        assert_eq!(
            got,
            [("x".to_string(), vec![1.0, -2.5, 0.25]), ("y".to_string(), vec![0.5, 0.5, 0.5])],
            "{backend}"
        );
        assert!(store.movie_embeddings("model-2").await.unwrap().is_empty());
        // The document changed after the embedding was made (a re-ingest): the vector is stale.
        store.upsert_movies(&[row("x", "Xanadu (1980)", None)]).await.unwrap();
        let ids: Vec<String> = store.movie_embeddings("model-1").await.unwrap().into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, ["y"], "{backend}");
        store.close().await;
    });
}

#[test]
fn a_schema_from_a_newer_cinevec_is_refused_in_one_line() {
    on_every_backend("newer_schema", |backend, location| async move {
        let store = Store::open(&location).await.unwrap();
        // What a newer cinevec's migration leaves behind: a version this build does not have.
        match &store {
            Store::Sqlite(s) => {
                sqlx::query(
                    "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                     VALUES (9999, 'from the future', TRUE, x'00', 0)",
                )
                .execute(s.pool())
                .await
                .unwrap();
            }
            Store::Postgres(_) => {
                let pool = sqlx::PgPool::connect(&location).await.unwrap();
                sqlx::query(
                    "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                     VALUES (9999, 'from the future', TRUE, '\\x00'::bytea, 0)",
                )
                .execute(&pool)
                .await
                .unwrap();
                pool.close().await;
            }
        }
        store.close().await;
        let err = Store::open(&location).await.unwrap_err();
        assert!(matches!(err, StoreError::NewerSchema { version: 9999, .. }), "{backend}: {err}");
        let line = err.to_string();
        assert!(line.contains("newer cinevec") && !line.contains('\n'), "{backend}: {line}");
    });
}

#[test]
fn postgres_notifies_each_committed_embedding_and_feeds_changes_in_order() {
    let Some(pg) = cluster() else { return };
    let url = pg.create_db("feed").unwrap();
    rt().block_on(async {
        let store = Store::open(&url).await.unwrap();
        let feed = store.as_postgres().unwrap().clone();
        let mut listener = feed.listener().await.unwrap();
        let (_, start) = store.generation().await.unwrap();
        store.upsert_movies(&[row("a", "Alien", None)]).await.unwrap();
        let ga = store.put_movie_with_embedding(&row("a", "Alien", None), "m", &[1.0, 0.0]).await.unwrap();
        let gb = store.put_movie_with_embedding(&row("b", "Brazil", None), "m", &[0.0, 1.0]).await.unwrap();
        let note =
            tokio::time::timeout(Duration::from_secs(5), listener.recv()).await.expect("no notification").unwrap();
        assert!(note.payload().parse::<u64>().unwrap() > start);

        let all = feed.changes_since(start, "m", 100).await.unwrap();
        let got: Vec<(&str, u64)> = all.iter().map(|c| (c.movie.id.as_str(), c.generation)).collect();
        assert_eq!(got, [("a", ga), ("b", gb)]);
        assert_eq!(all[1].vector, [0.0, 1.0]);
        assert!(all[1].movie.document.contains("Brazil"));
        // Replacing `a` moves it after `b`; a reader that had applied `b` sees only the replacement.
        let ga2 =
            store.put_movie_with_embedding(&row("a", "Alien (director's cut)", None), "m", &[0.6, 0.8]).await.unwrap();
        let next = feed.changes_since(gb, "m", 100).await.unwrap();
        assert_eq!(next.iter().map(|c| (c.movie.id.as_str(), c.generation)).collect::<Vec<_>>(), [("a", ga2)]);
        assert!(feed.changes_since(ga2, "m", 100).await.unwrap().is_empty());
        assert!(feed.changes_since(start, "other-model", 100).await.unwrap().is_empty());
        drop(listener); // it holds one of the pool's connections, which closing waits for
        store.close().await;
    });
}

#[test]
fn postgres_writes_fail_as_unavailable_while_it_is_down_and_work_after() {
    // Its own cluster: stopping the shared one would fail the tests running beside this one.
    let Some(pg) = pg_cluster::Cluster::start().unwrap() else { return };
    let url = pg.create_db("restart").unwrap();
    rt().block_on(async {
        let store = Store::open(&url).await.unwrap();
        store.put_movie_with_embedding(&row("a", "Alien", None), "m", &[1.0]).await.unwrap();
        pg.stop().unwrap();
        let err = store.put_movie_with_embedding(&row("b", "Brazil", None), "m", &[1.0]).await.unwrap_err();
        pg.start_again().unwrap();
        assert!(err.is_unavailable(), "{err:?}");
        store.put_movie_with_embedding(&row("c", "Casablanca", None), "m", &[1.0]).await.unwrap();
        assert_eq!(store.all_ids().await.unwrap(), ["a", "c"]);
        store.close().await;
    });
}

/// `n` movies `m00000`, `m00001`, ...: an ingest of several statements (4,096 rows each).
fn many_rows(n: usize, title: &str) -> Vec<MovieRow> {
    (0..n).map(|i| row(&format!("m{i:05}"), &format!("{title} {i}"), Some(6.0))).collect()
}

#[test]
fn postgres_an_ingest_and_run_time_adds_of_its_ids_at_once_all_succeed() {
    // The ingest moves the generation with its first statement and then needs movie rows that the adds
    // are writing; before the writers took the generation's lock first, one of them deadlocked (40P01).
    let Some(pg) = cluster() else { return };
    let url = pg.create_db("ingest_vs_adds").unwrap();
    rt().block_on(async {
        let store = Store::open(&url).await.unwrap();
        let other = Store::open(&url).await.unwrap();
        for round in 0..3 {
            let rows = many_rows(16_000, &format!("Round {round}"));
            let done = std::sync::atomic::AtomicBool::new(false);
            let ingest = async {
                let counts = store.upsert_movies(&rows).await;
                done.store(true, std::sync::atomic::Ordering::Relaxed);
                counts
            };
            let adds = async {
                let mut written = Vec::new();
                // Ids of the ingest's last statements, written until the ingest ends.
                for i in (12_000..16_000).cycle() {
                    if done.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("m{i:05}");
                    let put = other.put_movie_with_embedding(&row(&id, "Added", None), "m", &[1.0, 0.0]).await;
                    written.push((id, put.map_err(|e| e.to_string())));
                    tokio::task::yield_now().await;
                }
                written
            };
            let (counts, written) = tokio::join!(ingest, adds);
            let counts = counts.unwrap_or_else(|e| panic!("round {round}: the ingest failed beside the adds: {e}"));
            assert_eq!(counts.written + counts.unchanged, 16_000);
            assert!(!written.is_empty(), "round {round}: no add ran during the ingest");
            for (id, put) in &written {
                assert!(put.is_ok(), "round {round}: adding {id} during the ingest failed: {put:?}");
            }
            eprintln!("round {round}: {} adds during the ingest, all written", written.len());
        }
        assert_eq!(store.count().await.unwrap(), 16_000);
        other.close().await;
        store.close().await;
    });
}

#[test]
fn postgres_an_add_that_loses_a_deadlock_to_another_program_is_run_again() {
    // Another program locks a movie row, then the generation: the opposite order to cinevec's writers.
    // PostgreSQL aborts the add (its deadlock check runs first: the other session waits 10 s before
    // checking), and the add is retried after the other program commits.
    use sqlx::Connection;
    let Some(pg) = cluster() else { return };
    let url = pg.create_db("foreign_deadlock").unwrap();
    rt().block_on(async {
        let store = Store::open(&url).await.unwrap();
        store.upsert_movies(&[row("x", "Xanadu", None)]).await.unwrap();
        let mut foreign = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut foreign).await.unwrap();
        sqlx::query("SET LOCAL deadlock_timeout = '10s'").execute(&mut foreign).await.unwrap();
        sqlx::query("SELECT id FROM movies WHERE id = 'x' FOR UPDATE").execute(&mut foreign).await.unwrap();
        let added_row = row("x", "Xanadu (added)", None);
        let add = store.put_movie_with_embedding(&added_row, "m", &[1.0]);
        let other = async {
            // The add is waiting for `x` by now (it holds the generation's lock).
            tokio::time::sleep(Duration::from_millis(300)).await;
            sqlx::query("UPDATE catalog_meta SET generation = generation + 1 WHERE id = 1")
                .execute(&mut foreign)
                .await
                .unwrap();
            sqlx::query("COMMIT").execute(&mut foreign).await.unwrap();
        };
        let (added, ()) = tokio::join!(add, other);
        let generation = added.unwrap_or_else(|e| panic!("the add was not retried after losing the deadlock: {e}"));
        assert_eq!(store.generation().await.unwrap().1, generation);
        assert_eq!(store.get("x").await.unwrap().unwrap().movie.title(), "Xanadu (added)");
        assert_eq!(store.movie_embeddings("m").await.unwrap(), [("x".to_string(), vec![1.0])]);
        store.close().await;
    });
}
