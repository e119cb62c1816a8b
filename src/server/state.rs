//! What the server loads at start, and the checks that everything belongs together.

use super::catalog::{Entry, LiveCatalog};
use super::error::ApiError;
use super::ServeConfig;
use crate::artifacts::{self, Manifest};
use crate::catalog::store::{Store, StoredMovie};
use crate::engine::worker::EmbedQueue;
use crate::engine::EngineInfo;
use crate::head::Head;
use crate::index::VectorIndex;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

/// Everything a request may need, once loaded.
pub struct Loaded {
    pub catalog: RwLock<LiveCatalog>,
    pub index: VectorIndex,
    pub queue: EmbedQueue,
    pub head: Head,
    pub store: Store,
    pub manifest: Manifest,
    pub model: EngineInfo,
    /// Rows that came from the embedding matrix (the rest were added at run time).
    pub matrix_rows: usize,
    pub load_seconds: f64,
}

/// The handler state: cheap handles only.
#[derive(Clone)]
pub struct AppState {
    pub loaded: Arc<OnceLock<Arc<Loaded>>>,
    pub config: Arc<ServeConfig>,
    /// Set when a shutdown signal arrived: /readyz turns 503 so balancers stop sending traffic.
    pub stopping: Arc<AtomicBool>,
}

impl AppState {
    pub fn new(config: ServeConfig) -> Self {
        AppState { loaded: Arc::new(OnceLock::new()), config: Arc::new(config), stopping: Arc::new(AtomicBool::new(false)) }
    }

    /// The loaded artifacts, or 503 while they are still loading.
    pub fn ready(&self) -> Result<Arc<Loaded>, ApiError> {
        self.loaded
            .get()
            .cloned()
            .ok_or_else(|| ApiError::Unavailable("the service is still loading its artifacts".into()))
    }
}

impl super::extract::BodyLimit for AppState {
    fn body_limit(&self) -> usize {
        self.config.max_body_bytes
    }
}

/// Read every movie of the store, keyed by id.
async fn read_store(store: &Store) -> Result<HashMap<String, StoredMovie>> {
    let mut movies = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.movies_after(after.as_deref(), 10_000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        movies.extend(page.into_iter().map(|m| (m.id.clone(), m)));
    }
    Ok(movies)
}

fn entry(movie: StoredMovie) -> Entry {
    Entry::new(movie.id, movie.rating, movie.votes, movie.movie, movie.source)
}

/// Load and cross-check the catalog, the embedding set, the model, the head and the index.
pub async fn load(config: &ServeConfig) -> Result<Loaded> {
    let started = Instant::now();
    let store = Store::open(&config.db).await.context("opening the catalog store")?;
    let artifacts_dir = config.artifacts.clone();
    let set = tokio::task::spawn_blocking(move || artifacts::load_embeddings(&artifacts_dir)).await??;
    let manifest = set.manifest.clone();
    let mut movies = read_store(&store).await?;
    let added = store.movie_embeddings(&manifest.model.weights_sha256).await?;
    tracing::info!(
        "catalog: {} movies; embedding set: {} rows of dim {}; {} movies added at run time",
        movies.len(),
        manifest.rows,
        manifest.dim,
        added.len()
    );

    // Catalog ↔ matrix: every row's movie exists, and every movie has a vector.
    if let Some((row, id)) = set.ids.iter().enumerate().find(|(_, id)| !movies.contains_key(*id)) {
        bail!(
            "the embedding matrix does not belong to this catalog: row {row} is movie {id}, which {} does not hold \
             (re-run `cinevec embed` for this catalog)",
            config.db
        );
    }
    let in_matrix: std::collections::HashSet<&str> = set.ids.iter().map(String::as_str).collect();
    let added_ids: std::collections::HashSet<&str> = added.iter().map(|(id, _)| id.as_str()).collect();
    let missing: Vec<&String> =
        movies.keys().filter(|id| !in_matrix.contains(id.as_str()) && !added_ids.contains(id.as_str())).collect();
    if let Some(first) = missing.first() {
        bail!(
            "{} movies of the catalog have no embedding (e.g. {first}): the catalog changed after `cinevec embed`; re-run it",
            missing.len()
        );
    }

    // Model ↔ matrix.
    let model_args = config.model.clone();
    let limits = config.queue;
    let embedder = tokio::task::spawn_blocking(move || model_args.load()).await??;
    let model = embedder.info().clone();
    if model.weights_sha256 != manifest.model.weights_sha256 {
        bail!(
            "the model ({}, weights sha256 {}) is not the one the embedding matrix was made with ({}, {}): \
             serve with that model or re-run `cinevec embed`",
            model.model_dir.display(),
            &model.weights_sha256[..12],
            manifest.model.source,
            &manifest.model.weights_sha256[..12.min(manifest.model.weights_sha256.len())]
        );
    }
    if model.dim != manifest.dim || model.pooling != manifest.model.pooling || model.max_tokens != manifest.model.max_tokens {
        bail!(
            "the model's settings (dim {}, {} pooling, max {} tokens) differ from the embedding matrix's (dim {}, {} pooling, max {} tokens)",
            model.dim,
            model.pooling,
            model.max_tokens,
            manifest.dim,
            manifest.model.pooling,
            manifest.model.max_tokens
        );
    }

    // Head ↔ matrix.
    let head = Head::load(&config.artifacts, &manifest).context("loading the rating head")?;

    // The live catalog: matrix rows first, in matrix order, then run-time additions.
    let mut catalog = LiveCatalog::new(manifest.dim);
    for (row, id) in set.ids.iter().enumerate() {
        let movie = movies.get(id).cloned().expect("checked above");
        catalog.push(entry(movie), set.row(row));
    }
    let matrix_rows = catalog.rows();
    let mut added_rows = Vec::with_capacity(added.len());
    for (id, vector) in &added {
        let Some(movie) = movies.remove(id) else { continue };
        if vector.len() != manifest.dim {
            bail!("stored embedding of {id} has dimension {}, expected {}", vector.len(), manifest.dim);
        }
        let (row, _) = catalog.push(entry(movie), vector);
        added_rows.push(row);
    }
    drop(set);

    // The graph: the saved one if it was built from this matrix, else built now and saved.
    let params = config.index;
    let dir = config.artifacts.clone();
    let run_id = manifest.run_id.clone();
    let (catalog, index) = tokio::task::spawn_blocking(move || -> Result<(LiveCatalog, VectorIndex)> {
        let t = Instant::now();
        let index = match VectorIndex::load(&dir, &run_id, matrix_rows, catalog.dim(), params)? {
            Some(index) => {
                tracing::info!("loaded the saved HNSW graph in {:.2}s", t.elapsed().as_secs_f64());
                index
            }
            None => {
                tracing::info!("building the HNSW graph over {matrix_rows} rows (saved for later starts)");
                let rows: Vec<f32> = (0..matrix_rows).flat_map(|r| catalog.vector(r).to_vec()).collect();
                let index = VectorIndex::build(&rows, catalog.dim(), params);
                if let Err(e) = index.save(&dir, &run_id, matrix_rows) {
                    tracing::warn!("could not save the HNSW graph ({e:#}); it will be rebuilt next start");
                }
                tracing::info!("built the HNSW graph in {:.1}s", t.elapsed().as_secs_f64());
                index
            }
        };
        for &row in &added_rows {
            index.insert(row, catalog.vector(row));
        }
        Ok((catalog, index))
    })
    .await??;

    let queue = EmbedQueue::start(embedder, limits, Some(super::metrics::batch_observer()))
        .context("cannot start the model thread")?;
    // Warm the model so the first request does not pay for lazy initialisation.
    queue.embed(vec!["warm up".into()]).await.map_err(|e| anyhow::anyhow!("model warm-up failed: {e}"))?;
    let load_seconds = started.elapsed().as_secs_f64();
    tracing::info!("ready: {} movies, loaded in {load_seconds:.2}s", catalog.live_count());
    Ok(Loaded {
        catalog: RwLock::new(catalog),
        index,
        queue,
        head,
        store,
        manifest,
        model,
        matrix_rows,
        load_seconds,
    })
}
