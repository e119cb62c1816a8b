//! The operations cinevec serves, independent of any transport: similar movies by id or by document,
//! recommendations from examples, rating predictions, embeddings, adding a movie, title search and
//! the service's description. Each takes plain values, returns a result of [`results`] or one
//! [`ServiceError`], and gets everything else from the loaded state ([`Service`]): the live rows
//! ([`live`]: catalog entries and vectors in one row space, behind one lock), the HNSW index, the
//! model's queue, the rating head and the catalog store.
//!
//! The HTTP server (`crate::server`) parses a request, calls one operation, and maps its answer;
//! another transport would do the same. [`load`] reads and cross-checks the artifacts.

pub mod ask;
mod documents;
pub mod error;
pub mod live;
mod load;
pub mod map;
pub mod query;
pub mod recommend;
pub mod replicas;
pub mod results;

pub use error::ServiceError;
pub use live::{Filter, LiveCatalog};
pub use load::{load, ServiceConfig};
pub use query::{Controls, ControlsBody, TopK, MAX_K};
pub use recommend::Strategy;

use crate::artifacts::Manifest;
use crate::catalog::store::{MovieRow, Store};
use crate::engine::worker::EmbedQueue;
use crate::engine::{Embeddings, EngineInfo};
use crate::head::{Head, Prediction};
use crate::index::{Hit, VectorIndex};
use crate::movie::MovieDoc;
use live::journal::Record;
use live::{Facts, Journal, NewMovie, SnapshotKey, Traits};
use results::*;
use serde_json::Value;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

/// Told how long each search took (`true`: a brute-force or whole-catalogue one), for metrics.
pub type SearchObserver = Box<dyn Fn(bool, Duration) + Send + Sync>;

/// Everything an operation needs, once loaded.
pub struct Service {
    /// The live rows: the one owner of entries and run-time vectors (the index covers the matrix rows).
    live: RwLock<LiveCatalog>,
    index: VectorIndex,
    queue: EmbedQueue,
    head: Head,
    store: Store,
    manifest: Manifest,
    model: EngineInfo,
    /// Rows that came from the embedding matrix (the rest were added at run time).
    matrix_rows: usize,
    load_seconds: f64,
    /// Where to save the catalog for the next start, after ready (`None`: the snapshot is current).
    snapshot_due: Option<(std::path::PathBuf, SnapshotKey)>,
    /// This start read the catalog from the store (not from the snapshot and its journal).
    catalog_from_store: bool,
    config: ServiceConfig,
    /// Writes (and catch-ups with other replicas' writes) one at a time, so the store and the live
    /// rows see them in the same order; it holds which store generation each run-time row came from.
    writes: tokio::sync::Mutex<replicas::Applied>,
    store_state: replicas::StoreState,
    /// Documents to show while the store cannot be reached (see [`documents`]).
    base_documents: documents::BaseDocuments,
    run_time_documents: documents::RunTimeDocuments,
    /// The run-time writes since the snapshot, for the next start (see [`live::journal`]).
    journal: Mutex<Journaling>,
    on_search: Option<SearchObserver>,
    /// The catalog map (`None`: this server has none; see [`Service::with_map`]).
    map: Option<map::CatalogMap>,
    /// Searches that scan (filtered, exact, posted documents, recommendations) run here, one per
    /// core, first come first served (see [`Service::in_search_lane`]); `None` if its threads could
    /// not be started (they then go to the blocking pool).
    search_lanes: Option<rayon::ThreadPool>,
}

/// Where run-time writes are journaled, and the store generation the live rows are current at.
#[derive(Debug, Default)]
pub struct Journaling {
    /// The store's generation the live rows hold every write of (`None`: unknown, e.g. after a write
    /// by another program: nothing more is journaled, and the next start reads the store).
    pub generation: Option<u64>,
    /// The journal continuing the saved snapshot (`None` until a snapshot of these rows is saved).
    pub journal: Option<Journal>,
}

/// The parts a [`Service`] is made of (what [`load`] reads from the artifacts; tests make their own).
pub struct Parts {
    pub live: LiveCatalog,
    pub index: VectorIndex,
    pub queue: EmbedQueue,
    pub head: Head,
    pub store: Store,
    pub manifest: Manifest,
    pub model: EngineInfo,
    pub matrix_rows: usize,
    pub load_seconds: f64,
    pub snapshot_due: Option<(std::path::PathBuf, SnapshotKey)>,
    pub config: ServiceConfig,
    pub on_search: Option<SearchObserver>,
}

/// Run CPU work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f).await.map_err(ServiceError::internal)?
}

/// The search lanes: one thread per core the process may use.
fn search_lanes() -> Option<rayon::ThreadPool> {
    let lanes = std::thread::available_parallelism().map_or(2, |n| n.get());
    match rayon::ThreadPoolBuilder::new().num_threads(lanes).thread_name(|i| format!("search-{i}")).build() {
        Ok(pool) => Some(pool),
        Err(e) => {
            tracing::warn!("could not start the search lanes ({e}); scanning searches go to the blocking pool");
            None
        }
    }
}

/// Validate posted documents: at least one, at most `max`, each a movie.
fn parse_documents(values: Vec<Value>, max: usize) -> Result<Vec<MovieDoc>, ServiceError> {
    if values.is_empty() {
        return Err(ServiceError::invalid("movies", "movies must hold at least one document"));
    }
    if values.len() > max {
        return Err(ServiceError::invalid(
            "movies",
            format!("too many documents: {} in one request, the limit is {max}", values.len()),
        ));
    }
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            MovieDoc::from_value(v).map_err(|e| ServiceError::Invalid {
                field: Some(match e.field() {
                    Some(f) => format!("movies[{i}].{f}"),
                    None => format!("movies[{i}]"),
                }),
                message: format!("movies[{i}]: {e}"),
            })
        })
        .collect()
}

fn summary(catalog: &LiveCatalog, row: usize) -> MovieSummary {
    let e = catalog.entry(row);
    MovieSummary {
        id: e.id().to_string(),
        title: e.title().to_string(),
        year: e.year(),
        rating: e.rating,
        votes: e.votes,
    }
}

fn view(catalog: &LiveCatalog, row: usize, predicted: Prediction, document: Value) -> MovieView {
    let e = catalog.entry(row);
    MovieView {
        id: e.id().to_string(),
        title: e.title().to_string(),
        year: e.year(),
        rating: e.rating,
        votes: e.votes,
        document,
        predicted,
        source: catalog.source(row).to_string(),
    }
}

fn neighbours(catalog: &LiveCatalog, query: &Traits, hits: &[Hit]) -> Vec<Neighbour> {
    hits.iter()
        .map(|h| {
            let e = catalog.entry(h.row);
            Neighbour {
                id: e.id().to_string(),
                title: e.title().to_string(),
                year: e.year(),
                rating: e.rating,
                score: h.score,
                why: catalog.why(query, h.row),
            }
        })
        .collect()
}

/// Where the catalog file the embedding matrix was made from may be: `catalog.jsonl` in the artifacts
/// (`cinevec build`), else the file `cinevec embed` read, beside the matrix (a copied folder) or where
/// the manifest says.
fn catalog_files(artifacts: &std::path::Path, manifest: &Manifest) -> Vec<std::path::PathBuf> {
    let input = std::path::PathBuf::from(&manifest.input);
    let mut files = vec![artifacts.join(crate::artifacts::CATALOG_FILE)];
    files.extend(input.file_name().map(|name| artifacts.join(name)));
    files.push(input);
    files.dedup();
    files
}

/// How long `GET /v1/movies/{id}` waits for the store's document of a matrix movie before it shows
/// the one of the artifacts' catalog file instead (a hung store must not hold reads).
pub const STORE_READ_TIMEOUT: Duration = Duration::from_millis(200);

impl Service {
    pub fn from_parts(p: Parts) -> Service {
        Service {
            live: RwLock::new(p.live),
            index: p.index,
            queue: p.queue,
            head: p.head,
            store_state: replicas::StoreState::new(p.store.backend()),
            base_documents: documents::BaseDocuments::new(
                catalog_files(&p.config.artifacts, &p.manifest),
                p.manifest.input_sha256.clone(),
                p.matrix_rows,
            ),
            run_time_documents: documents::RunTimeDocuments::default(),
            store: p.store,
            manifest: p.manifest,
            model: p.model,
            matrix_rows: p.matrix_rows,
            load_seconds: p.load_seconds,
            catalog_from_store: p.snapshot_due.is_some(),
            snapshot_due: p.snapshot_due,
            config: p.config,
            writes: tokio::sync::Mutex::new(replicas::Applied::default()),
            journal: Mutex::default(),
            on_search: p.on_search,
            map: None,
            search_lanes: search_lanes(),
        }
    }

    /// Follow the store's changes from `generation` on (what the live rows were loaded at).
    pub fn feed_from(mut self, generation: u64) -> Self {
        *self.writes.get_mut() = replicas::Applied::from_generation(generation);
        self
    }

    /// Journal run-time writes from here on (`load` does, after reading the catalog at the store's
    /// `generation`). `from_store`: the catalog was read from the store, not the snapshot and journal.
    pub fn with_journaling(mut self, journaling: Journaling, from_store: bool) -> Service {
        self.journal = Mutex::new(journaling);
        self.catalog_from_store = from_store;
        self
    }

    fn rows(&self) -> Result<RwLockReadGuard<'_, LiveCatalog>, ServiceError> {
        self.live.read().map_err(ServiceError::internal)
    }

    /// Run a scanning search `f` on a search lane, in the order the searches came. Given to the
    /// blocking pool at once, concurrent scans would all share the cores: each would take as long as
    /// all of them together (32 clients, 32 scans at a time), so that a costly filter's request waits
    /// 30 × its own time. On lanes one per core a scan waits for those ahead of it, then runs alone
    /// on its core: the wait no longer grows with the request's own cost, and a lane that finishes
    /// takes the next search at once (BENCHMARKS.md, issue 19).
    async fn in_search_lane<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
    ) -> Result<T, ServiceError> {
        let Some(lanes) = &self.search_lanes else {
            return blocking(f).await;
        };
        let (done, answer) = tokio::sync::oneshot::channel();
        lanes.spawn_fifo(move || {
            // Its request gone while it queued (the client left, or its deadline passed and it was
            // answered 503): the lane goes on to the next one, so that an overload does not make the
            // searches behind it late too.
            if done.is_closed() {
                return;
            }
            // A panic is the caller's 500, never the lane's end (rayon would abort the process).
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                .unwrap_or_else(|_| Err(ServiceError::internal("the search failed unexpectedly")));
            let _ = done.send(out);
        });
        answer.await.map_err(ServiceError::internal)?
    }

    fn searched(&self, exhaustive: bool, started: Instant) {
        if let Some(observe) = &self.on_search {
            observe(exhaustive, started.elapsed());
        }
    }

    fn predict_rows(&self, rows: &[f32]) -> Result<Vec<Prediction>, ServiceError> {
        self.head.predict(rows, self.manifest.dim).map_err(ServiceError::internal)
    }

    async fn embed_documents(&self, docs: &[MovieDoc]) -> Result<Embeddings, ServiceError> {
        let texts = docs.iter().map(MovieDoc::render).collect();
        Ok(self.queue.embed(texts).await?)
    }

    /// The embedding queue (its counters are exported as metrics).
    pub fn queue(&self) -> &EmbedQueue {
        &self.queue
    }

    /// Movies that can be returned.
    pub fn movies(&self) -> Result<usize, ServiceError> {
        Ok(self.rows()?.live_count())
    }

    /// Save the catalog snapshot when this start read the store or replayed a journal (in the
    /// background, after ready), at the store generation the live rows are current at, and start a
    /// new journal beside it. Run-time writes wait meanwhile, so that the snapshot holds exactly the
    /// writes up to its generation. Not on the async runtime (it waits on the writes' lock).
    pub fn save_snapshot_if_due(&self) {
        let Some((path, key)) = &self.snapshot_due else { return };
        let _no_writes = self.writes.blocking_lock();
        let mut journaling = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        let Some(generation) = journaling.generation else {
            tracing::warn!("catalog snapshot not saved: the store changed in ways this server did not see");
            return;
        };
        let key = SnapshotKey { generation, ..key.clone() };
        let t = Instant::now();
        let catalog = self.live.read().unwrap_or_else(|e| e.into_inner());
        match catalog.save_snapshot(path, &key) {
            Ok(bytes) => tracing::info!(
                "saved the catalog snapshot {} ({:.1} MB) in {:.2}s: the next start reads it instead of the store",
                path.display(),
                bytes as f64 / 1e6,
                t.elapsed().as_secs_f64()
            ),
            Err(e) => {
                tracing::warn!("could not save the catalog snapshot ({e:#}); the next start reads the store");
                return;
            }
        }
        let journal_path = path.with_file_name(live::JOURNAL_FILE);
        journaling.journal = match Journal::create(&journal_path, &key) {
            Ok(j) => Some(j),
            Err(e) => {
                tracing::warn!("could not start the catalog journal ({e:#}); a start after writes reads the store");
                None
            }
        };
    }

    /// Whether a snapshot is due (this start read the catalog from the store).
    pub fn snapshot_due(&self) -> bool {
        self.snapshot_due.is_some()
    }

    /// What the service is: model, counts, head, index, limits, queue.
    pub fn info(&self, writes_enabled: bool) -> Result<Info, ServiceError> {
        let catalog = self.rows()?;
        let cfg = &self.config;
        let head = self.head.spec();
        let stats = self.queue.stats();
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        Ok(Info {
            version: env!("CARGO_PKG_VERSION"),
            model: ModelInfo {
                source: self.manifest.model.source.clone(),
                architecture: self.model.architecture,
                dim: self.model.dim,
                pooling: self.model.pooling,
                max_tokens: self.model.max_tokens,
                weights_sha256: self.model.weights_sha256.clone(),
                device: self.model.device.clone(),
                dtype: self.model.dtype.clone(),
            },
            counts: Counts {
                movies: catalog.live_count(),
                matrix_rows: self.matrix_rows,
                added_at_run_time: catalog.rows() - self.matrix_rows,
                // The graph's points and the run-time rows searched beside it.
                index_points: self.index.len() + catalog.rows() - self.matrix_rows,
            },
            head: HeadInfo { interval_level: head.calibration.level, members: head.members },
            index: IndexInfo {
                params: self.index.params(),
                neighbour_table: self.index.table().map(|t| TableInfo { width: t.width(), ef: t.ef() }),
            },
            catalog_loaded_from: if self.catalog_from_store { "store" } else { "snapshot" },
            limits: Limits {
                max_k: MAX_K,
                max_documents_per_request: cfg.max_documents,
                max_body_bytes: cfg.max_body_bytes,
                request_timeout_ms: cfg.request_timeout.as_millis() as u64,
                queue_capacity: cfg.queue.capacity,
                max_batch: cfg.queue.max_batch,
                max_batch_tokens: cfg.queue.max_batch_tokens,
            },
            queue: QueueInfo {
                depth: stats.depth.load(relaxed),
                batches: stats.batches.load(relaxed),
                documents: stats.documents.load(relaxed),
            },
            writes_enabled,
            store: self.store_state.status(),
            load_seconds: self.load_seconds,
        })
    }

    /// One movie: its stored document, its facts and its predicted rating.
    pub async fn movie(self: &Arc<Self>, id: String) -> Result<MovieView, ServiceError> {
        // A run-time add's document is in memory (kept when it was written or applied, the newest
        // generation of its id): answered from there, never waiting on the store.
        let in_memory = {
            let catalog = self.rows()?;
            catalog.row_of(&id).filter(|&row| row >= self.matrix_rows).and_then(|_| self.run_time_documents.get(&id))
        };
        let stored = match in_memory.map(|doc| serde_json::from_str::<Value>(&doc)) {
            Some(Ok(document)) => Some(document),
            _ => self.stored_document(&id).await?,
        };
        let service = self.clone();
        blocking(move || {
            let catalog = service.rows()?;
            let row = catalog.row_of(&id).ok_or_else(|| ServiceError::no_movie(&id))?;
            let document = match stored {
                Some(document) => document,
                None => service.document_from_memory(row, &id)?,
            };
            let predicted = service.predict_rows(catalog.vector(row))?[0];
            Ok(view(&catalog, row, predicted, document))
        })
        .await
    }

    /// The document of `id` from the store (which has the matrix rows' documents, the newest one of
    /// an id). `None` when the store cannot answer within [`STORE_READ_TIMEOUT`] (or is unavailable):
    /// the caller shows what this process holds without it (see `documents`).
    async fn stored_document(&self, id: &str) -> Result<Option<Value>, ServiceError> {
        let read = match tokio::time::timeout(STORE_READ_TIMEOUT, self.store.get(id)).await {
            Ok(read) => read,
            Err(_) => {
                tracing::debug!("showing {id} from memory: the store did not answer in {STORE_READ_TIMEOUT:?}");
                return Ok(None);
            }
        };
        self.store_state.saw(&read);
        match read {
            Ok(stored) => Ok(Some(stored.ok_or_else(|| ServiceError::no_movie(id))?.movie.into_value())),
            Err(e) if e.is_transient() => {
                tracing::debug!("showing {id} from memory: {e}");
                Ok(None)
            }
            Err(e) => Err(replicas::store_error(e)),
        }
    }

    /// The document of `id` (at live row `row`) without the store: a run-time row's from memory, a
    /// matrix row's from the artifacts' catalog file. Blocking. Unavailable when there is none.
    fn document_from_memory(&self, row: usize, id: &str) -> Result<Value, ServiceError> {
        let unavailable = |why: String| {
            tracing::warn!("cannot show {id} while the store is unavailable: {why}");
            ServiceError::Unavailable("the catalog store is unavailable, retry shortly".into())
        };
        if row >= self.matrix_rows {
            let document =
                self.run_time_documents.get(id).ok_or_else(|| unavailable("its document is not in memory".into()))?;
            return serde_json::from_str(&document).map_err(|e| unavailable(e.to_string()));
        }
        self.base_documents.get(row, id).map_err(unavailable)
    }

    /// Title search (see [`live::titles`]); `limit` 1 to 50, default 10. `q` must not be blank, longer
    /// than [`live::titles::MAX_QUERY_CHARS`] characters or hold control characters; words after the
    /// first [`live::titles::MAX_QUERY_WORDS`] are ignored.
    pub async fn search_titles(self: &Arc<Self>, q: &str, limit: Option<i64>) -> Result<SearchResponse, ServiceError> {
        let text = q.trim().to_string();
        if text.is_empty() {
            return Err(ServiceError::invalid("q", "q must not be empty"));
        }
        let limit = match limit {
            None => 10,
            Some(l) if (1..=50).contains(&l) => l as usize,
            Some(l) => return Err(ServiceError::invalid("limit", format!("limit must be between 1 and 50, got {l}"))),
        };
        // Parsed from what was typed, untrimmed: a trailing space says the last word is finished.
        let query = live::TitleQuery::parse(q).map_err(|message| ServiceError::invalid("q", message))?;
        let service = self.clone();
        blocking(move || {
            let catalog = service.rows()?;
            let results = catalog.find_titles(&query, limit).into_iter().map(|row| summary(&catalog, row)).collect();
            Ok(SearchResponse { query: text, results })
        })
        .await
    }

    /// Ask in one's own words (see [`ask`]): `q` read into constraints from the catalog, the movies
    /// that meet them ranked by meaning and lexical evidence, under the request's own `filter` too.
    /// `q` must not be blank, longer than [`ask::parse::MAX_CHARS`] characters or hold control
    /// characters, and must hold something to search by (not only common words or bare numbers).
    pub async fn ask(
        self: &Arc<Self>,
        q: &str,
        k: TopK,
        filter: Filter,
        controls: Controls,
    ) -> Result<ask::AskResponse, ServiceError> {
        let chars = q.chars().count();
        if q.trim().is_empty() {
            return Err(ServiceError::invalid("q", "q must not be empty"));
        }
        if chars > ask::parse::MAX_CHARS {
            return Err(ServiceError::invalid(
                "q",
                format!("q is {chars} characters long; the limit is {}", ask::parse::MAX_CHARS),
            ));
        }
        if let Some(c) = q.chars().find(|c| c.is_control()) {
            return Err(ServiceError::invalid(
                "q",
                format!("q must not contain control characters (found U+{:04X})", u32::from(c)),
            ));
        }
        let text = q.trim().to_string();
        let service = self.clone();
        let reading = {
            let text = text.clone();
            blocking(move || Ok(ask::parse::read(&text, &*service.rows()?))).await?
        };
        if reading.is_empty() {
            return Err(ServiceError::invalid(
                "q",
                "q holds nothing to search by: only common words or numbers that are no year, length or rating",
            ));
        }
        let meaning = match ask::meaning_document(&reading) {
            Some(doc) => Some(self.embed_documents(&[MovieDoc::from_value(doc)?]).await?),
            None => None,
        };
        let started = Instant::now();
        let service = self.clone();
        let response = self
            .in_search_lane(move || {
                let catalog = service.rows()?;
                let vector = meaning.as_ref().map(|m| m.row(0));
                let (interpretation, results) =
                    ask::answer(&catalog, &service.index, &reading, vector, &filter, k.0, &controls);
                Ok(ask::AskResponse { q: text, k: k.0, interpretation, results })
            })
            .await?;
        self.searched(false, started);
        Ok(response)
    }

    /// More like the movie `id`, shaped by `controls` (see [`query::Controls`]).
    pub async fn similar_by_id(
        self: &Arc<Self>,
        id: String,
        k: TopK,
        filter: Filter,
        exact: bool,
        controls: Controls,
    ) -> Result<SimilarResponse, ServiceError> {
        let started = Instant::now();
        let heavy = exact || filter != Filter::default();
        let service = self.clone();
        let offset = controls.offset;
        // `only_table`: answer only from the movie's stored neighbours (`None` when fewer than the
        // candidates the controls need pass).
        let answer = move |only_table: bool| -> Result<Option<SimilarResponse>, ServiceError> {
            let catalog = service.rows()?;
            let row = catalog.row_of(&id).ok_or_else(|| ServiceError::no_movie(&id))?;
            let exclude = catalog.exclusion(&controls.exclude, &[row]);
            let hits = if only_table {
                match catalog.nearest_from_table(&service.index, row, controls.wanted(k.0), &filter, &exclude) {
                    Some(hits) => catalog.page(hits, k.0, &controls),
                    None => return Ok(None),
                }
            } else {
                let query = catalog.vector(row);
                catalog.search(&service.index, query, Some(row), k.0, &filter, &exclude, exact, &controls)
            };
            let results = neighbours(&catalog, catalog.traits(row), &hits);
            Ok(Some(SimilarResponse {
                query: Some(summary(&catalog, row)),
                k: k.0,
                offset,
                exact,
                results,
                tokens: None,
                truncated: None,
            }))
        };
        // A table or graph answer is a fraction of a millisecond: handing it to the blocking pool would
        // cost about as much as the search. A scan (exact, or a filter the table cannot answer) is
        // not: that waits for a search lane.
        let response = if !heavy || (!exact && self.index.has_table()) { answer(heavy)? } else { None };
        let response = match response {
            Some(r) => r,
            None => self
                .in_search_lane(move || answer(false))
                .await?
                .ok_or_else(|| ServiceError::internal("a planned search gave no answer"))?,
        };
        self.searched(exact, started);
        Ok(response)
    }

    /// Movies like a posted document (embedded now).
    pub async fn similar_by_doc(
        self: &Arc<Self>,
        movie: Value,
        k: TopK,
        filter: Filter,
        exact: bool,
        controls: Controls,
    ) -> Result<SimilarResponse, ServiceError> {
        let doc = MovieDoc::from_value(movie)?;
        let embedded = self.embed_documents(std::slice::from_ref(&doc)).await?;
        let started = Instant::now();
        let service = self.clone();
        let response = self
            .in_search_lane(move || {
                let catalog = service.rows()?;
                let exclude = catalog.exclusion(&controls.exclude, &[]);
                let query = embedded.row(0);
                let hits = catalog.search(&service.index, query, None, k.0, &filter, &exclude, exact, &controls);
                let traits = catalog.traits_of(&Facts::of(&doc));
                Ok(SimilarResponse {
                    query: None,
                    k: k.0,
                    offset: controls.offset,
                    exact,
                    results: neighbours(&catalog, &traits, &hits),
                    tokens: Some(embedded.encoded[0].untruncated_len),
                    truncated: Some(embedded.encoded[0].truncated()),
                })
            })
            .await?;
        self.searched(exact, started);
        Ok(response)
    }

    /// Movies for someone who liked `positive` (and disliked `negative`), by `strategy`, shaped by
    /// `controls`. An example is a catalog id or a movie document (embedded now, through the queue);
    /// ids the catalog does not hold are skipped and listed in the answer's `ignored`.
    #[allow(clippy::too_many_arguments)]
    pub async fn recommend(
        self: &Arc<Self>,
        positive: Vec<Value>,
        negative: Vec<Value>,
        strategy: Strategy,
        k: TopK,
        filter: Filter,
        exact: bool,
        controls: Controls,
    ) -> Result<RecommendResponse, ServiceError> {
        let pos = recommend::Examples::parse(positive, "positive")?;
        let neg = recommend::Examples::parse(negative, "negative")?;
        // The posted documents of both lists, embedded in one batch.
        let docs: Vec<MovieDoc> = pos.documents.iter().chain(&neg.documents).cloned().collect();
        let embedded = if docs.is_empty() { None } else { Some(self.embed_documents(&docs).await?) };
        let started = Instant::now();
        let service = self.clone();
        let response = self
            .in_search_lane(move || {
                let catalog = service.rows()?;
                let vectors = |from: usize, n: usize| -> Vec<Vec<f32>> {
                    let e = embedded.as_ref();
                    (from..from + n).filter_map(|i| e.map(|e| e.row(i).to_vec())).collect()
                };
                let (pos_vectors, neg_vectors) =
                    (vectors(0, pos.documents.len()), vectors(pos.documents.len(), neg.documents.len()));
                let (pos_rows, mut ignored) = pos.rows(&catalog);
                let (neg_rows, neg_ignored) = neg.rows(&catalog);
                ignored.extend(neg_ignored);
                let liked = recommend::Side { rows: &pos_rows, vectors: &pos_vectors };
                let disliked = recommend::Side { rows: &neg_rows, vectors: &neg_vectors };
                let exclude = catalog.exclusion(&controls.exclude, &[&pos_rows[..], &neg_rows[..]].concat());
                let ranked = recommend::Ranking {
                    strategy,
                    k: k.0,
                    filter: &filter,
                    exclude: &exclude,
                    exact,
                    controls: &controls,
                };
                let hits = recommend::rank(&catalog, &service.index, &ranked, liked, disliked)?;
                // "Why" is relative to the first positive example (the one the user picked first).
                let anchor = match (pos.first_is_document(), pos_rows.first(), pos.documents.first()) {
                    (true, _, Some(doc)) => Some(catalog.traits_of(&Facts::of(doc))),
                    (_, Some(&row), _) => Some(catalog.traits(row).clone()),
                    (_, None, Some(doc)) => Some(catalog.traits_of(&Facts::of(doc))),
                    _ => neg_rows.first().map(|&row| catalog.traits(row).clone()),
                };
                let results = match anchor {
                    Some(traits) => neighbours(&catalog, &traits, &hits),
                    None => Vec::new(),
                };
                Ok(RecommendResponse { strategy, k: k.0, offset: controls.offset, results, ignored })
            })
            .await?;
        self.searched(true, started);
        Ok(response)
    }

    /// Predicted ratings (with intervals) of posted documents.
    pub async fn predict(self: &Arc<Self>, movies: Vec<Value>) -> Result<PredictResponse, ServiceError> {
        let docs = parse_documents(movies, self.config.max_documents)?;
        let embedded = self.embed_documents(&docs).await?;
        let service = self.clone();
        let rows = embedded.vectors.clone();
        let predictions = blocking(move || service.predict_rows(&rows)).await?;
        let items = docs
            .iter()
            .zip(predictions)
            .zip(&embedded.encoded)
            .map(|((doc, p), enc)| PredictItem {
                title: doc.title().to_string(),
                rating: p.rating,
                low: p.low,
                high: p.high,
                tokens: enc.untruncated_len,
                truncated: enc.truncated(),
            })
            .collect();
        Ok(PredictResponse { interval: self.head.spec().calibration.level, predictions: items })
    }

    /// Embeddings of posted documents.
    pub async fn embed(&self, movies: Vec<Value>) -> Result<EmbedResponse, ServiceError> {
        let docs = parse_documents(movies, self.config.max_documents)?;
        let embedded = self.embed_documents(&docs).await?;
        let embeddings = (0..embedded.len())
            .map(|i| EmbedItem {
                vector: embedded.row(i).to_vec(),
                tokens: embedded.encoded[i].untruncated_len,
                truncated: embedded.encoded[i].truncated(),
            })
            .collect();
        Ok(EmbedResponse {
            model: self.manifest.model.source.clone(),
            dim: embedded.dim,
            max_tokens: self.model.max_tokens,
            embeddings,
        })
    }

    /// Embeddings of plain texts, embedded as given (no movie document around them): the same queue,
    /// admission and document limit as [`Service::embed`]. `field` names the list in errors. Empty
    /// texts and texts with a NUL character are refused, and so is a text longer than the model
    /// reads (nothing is cut silently: its vector would not be the text's).
    pub async fn embed_texts(&self, texts: Vec<String>, field: &str) -> Result<Embeddings, ServiceError> {
        let max = self.config.max_documents;
        if texts.is_empty() {
            return Err(ServiceError::invalid(field, format!("{field} must hold at least one text")));
        }
        if texts.len() > max {
            return Err(ServiceError::invalid(
                field,
                format!("too many texts: {} in one request, the limit is {max}", texts.len()),
            ));
        }
        for (i, text) in texts.iter().enumerate() {
            let problem = if text.is_empty() {
                "is empty"
            } else if text.contains('\0') {
                "contains a NUL character"
            } else {
                continue;
            };
            return Err(ServiceError::invalid(&format!("{field}[{i}]"), format!("{field}[{i}] {problem}")));
        }
        let embedded = self.queue.embed(texts).await?;
        if let Some((i, long)) = embedded.encoded.iter().enumerate().find(|(_, e)| e.truncated()) {
            return Err(ServiceError::invalid(
                &format!("{field}[{i}]"),
                format!(
                    "{field}[{i}] is {} tokens long; the model reads at most {} (special tokens included)",
                    long.untruncated_len, self.model.max_tokens
                ),
            ));
        }
        Ok(embedded)
    }

    /// The served model as the OpenAI-compatible routes name it: its folder's name (e.g.
    /// `all-MiniLM-L6-v2`), its dimension, and when the embedding set was made (Unix seconds, 0 if
    /// unknown).
    pub fn served_model(&self) -> ServedModel {
        let dir = &self.model.model_dir;
        let id = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        let created = humantime::parse_rfc3339_weak(&self.manifest.created_at)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        ServedModel {
            id: id.unwrap_or_else(|| self.manifest.model.source.clone()),
            dim: self.model.dim,
            max_tokens: self.model.max_tokens,
            created,
        }
    }

    /// Add a movie (or replace the one with its id): embedded now, then [`Service::add`].
    pub async fn add_movie(
        self: &Arc<Self>,
        id: &str,
        rating: Option<f64>,
        votes: Option<u64>,
        movie: Value,
    ) -> Result<AddMovieResponse, ServiceError> {
        let id = query::parse_movie_id(id)?;
        if let Some(r) = rating {
            if !(1.0..=10.0).contains(&r) {
                return Err(ServiceError::invalid("rating", "rating must be between 1 and 10"));
            }
        }
        let doc = MovieDoc::from_value(movie)?;
        let embedded = self.embed_documents(std::slice::from_ref(&doc)).await?;
        let vector = embedded.row(0).to_vec();
        let document = doc.clone().into_value();
        let row = MovieRow { id: id.clone(), rating, votes, movie: doc, source: "api".into() };
        let (new_row, replaced) = self.add(&row, &vector).await?;
        let service = self.clone();
        let movie = blocking(move || {
            let catalog = service.rows()?;
            let predicted = service.predict_rows(catalog.vector(new_row))?[0];
            Ok(view(&catalog, new_row, predicted, document))
        })
        .await?;
        tracing::info!(id = %id, replaced = replaced.is_some(), "movie added");
        Ok(AddMovieResponse {
            created: replaced.is_none(),
            movie,
            tokens: embedded.encoded[0].untruncated_len,
            truncated: embedded.encoded[0].truncated(),
        })
    }

    /// The one way a movie enters the live rows at run time: the store first (movie and vector in one
    /// transaction), then memory under the write lock, so a failed store write changes nothing in
    /// memory. Writes run one at a time, so the store and memory agree on which of two writes of an
    /// id came last (other replicas' writes too: see [`replicas`]). A store that cannot be reached is
    /// [`ServiceError::Unavailable`]. Returns the new row and the row it replaced.
    ///
    /// Then, before it is acknowledged, the write is appended to the catalog journal (and synced) with
    /// the store's generation before and after it, so that the next start need not read the store.
    pub async fn add(&self, row: &MovieRow, vector: &[f32]) -> Result<(usize, Option<usize>), ServiceError> {
        let mut applied = self.writes.lock().await;
        let tracked = self.journaling().generation;
        let generation = || async { self.store.generation().await.ok().map(|(_, g)| g) };
        let before = match tracked {
            Some(_) => generation().await,
            None => None,
        };
        let written = self.store.put_movie_with_embedding(row, &self.manifest.model.weights_sha256, vector).await;
        self.store_state.wrote(&written);
        // The generation the write itself left (read inside its transaction): a write by someone else
        // after it shows as a gap at the next add or start, not hidden inside this record.
        let written_at = written.map_err(replicas::store_error)?;
        let after = before.map(|_| written_at);
        let movie = NewMovie {
            id: row.id.clone(),
            rating: row.rating,
            votes: row.votes,
            facts: Facts::of(&row.movie),
            source: &row.source,
        };
        let record = before.zip(after).filter(|&(b, _)| Some(b) == tracked).map(|(b, a)| Record::of(&movie, b, a));
        let pushed = {
            let mut catalog = self.live.write().map_err(ServiceError::internal)?;
            if !applied.newer(&row.id, written_at) {
                // A newer write of this id (another replica's) is applied already: it stays. The store
                // changed beside this server, so the journal cannot describe it.
                let current = catalog.row_of(&row.id);
                drop(catalog);
                let current = current.ok_or_else(|| ServiceError::no_movie(&row.id))?;
                *self.journaling() = Journaling::default();
                return Ok((current, Some(current)));
            }
            let pushed = catalog.push(movie, vector);
            self.run_time_documents.remember(&row.id, written_at, row.movie.render().into());
            pushed
        };
        self.journal_write(tracked, record);
        Ok(pushed)
    }

    /// After a write the live rows hold: journal its `record` (`None`: the write cannot be described
    /// from the generation this server tracked, `tracked`, so nothing more is journaled and the next
    /// start reads the store).
    fn journal_write(&self, tracked: Option<u64>, record: Option<Record>) {
        let mut journaling = self.journaling();
        match record {
            Some(record) => {
                journaling.generation = Some(record.after);
                if let Some(journal) = journaling.journal.as_mut() {
                    if let Err(e) = journal.append(&record) {
                        tracing::warn!(
                            "could not append to the catalog journal ({e:#}); the next start reads the store"
                        );
                        journaling.journal = None;
                    }
                }
            }
            None => {
                if tracked.is_some() {
                    tracing::info!("the store changed beside this server's writes: the next start reads the store");
                }
                *journaling = Journaling::default();
            }
        }
    }

    /// Delete the movie `id` (see [`Service::delete`]).
    pub async fn delete_movie(self: &Arc<Self>, id: &str) -> Result<DeleteMovieResponse, ServiceError> {
        let id = query::parse_movie_id(id).map_err(|_| ServiceError::no_movie(id))?;
        self.delete(&id).await?;
        tracing::info!(id = %id, "movie deleted");
        Ok(DeleteMovieResponse { id, deleted: true })
    }

    /// The one way a movie leaves the live rows at run time, in the order of an add
    /// ([`Service::add`]): the store first (the movie's row and run-time embedding deleted and a
    /// tombstone written, in one transaction), then memory under the write lock (its row goes dead at
    /// once for every answer: see [`LiveCatalog::remove`]), then the journal. An id no live row has
    /// is [`ServiceError::NotFound`]; a store that cannot be reached is [`ServiceError::Unavailable`]
    /// and nothing changes in memory.
    pub async fn delete(&self, id: &str) -> Result<(), ServiceError> {
        let mut applied = self.writes.lock().await;
        if self.rows()?.row_of(id).is_none() {
            return Err(ServiceError::no_movie(id));
        }
        let tracked = self.journaling().generation;
        let before = match tracked {
            Some(_) => self.store.generation().await.ok().map(|(_, g)| g),
            None => None,
        };
        let written = self.store.delete_movie(id).await;
        self.store_state.saw(&written);
        // `None`: the store had no such movie (the live rows did): nothing written, the rows follow it.
        let written_at = written.map_err(replicas::store_error)?;
        let record = match (before, written_at) {
            (Some(b), Some(a)) if Some(b) == tracked => Some(Record::deletion(id, b, a)),
            _ => None,
        };
        let removed = {
            let mut catalog = self.live.write().map_err(ServiceError::internal)?;
            // A newer write of this id (another replica's add) applied already stays.
            let newest = written_at.is_none_or(|g| applied.newer(id, g));
            newest && catalog.remove(id).is_some()
        };
        match (written_at, removed) {
            (None, _) => {}
            (Some(_), true) => self.journal_write(tracked, record),
            // The store changed beside this server, so the journal cannot describe it.
            (Some(_), false) => *self.journaling() = Journaling::default(),
        }
        Ok(())
    }

    fn journaling(&self) -> std::sync::MutexGuard<'_, Journaling> {
        self.journal.lock().unwrap_or_else(|e| e.into_inner())
    }
}
