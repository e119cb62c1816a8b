//! What the service loads at start, and the checks that everything belongs together.

use super::live::journal::{self, Replay};
use super::live::{
    fold, snapshot_generation, Entry, Facts, Journal, LiveCatalog, NewMovie, SnapshotKey, JOURNAL_FILE, SNAPSHOT_FILE,
};
use super::{Journaling, Parts, SearchObserver, Service};
use crate::artifacts;
use crate::catalog::store::Store;
use crate::engine::worker::{BatchObserver, EmbedQueue, QueueLimits};
use crate::head::Head;
use crate::index::{IndexParams, Layout, LayoutParams, SharedMatrix, VectorIndex};
use crate::models::ModelOptions;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What loading needs: where the artifacts and the store are, the model, the index's search
/// settings, and the request limits the operations apply.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Folder with the embedding set, the rating head and the saved HNSW graph.
    pub artifacts: PathBuf,
    /// Catalog store location.
    pub db: String,
    pub model: ModelOptions,
    /// Largest request body, in bytes (reported by `info`; the transport enforces it).
    pub max_body_bytes: usize,
    /// Most movie documents in one predict/embed request.
    pub max_documents: usize,
    /// Deadline of one request (reported by `info`; the transport enforces it).
    pub request_timeout: Duration,
    pub queue: QueueLimits,
    pub index: IndexParams,
}

/// Movies read from the store per page (and parsed in parallel).
const PAGE: u32 = 16_384;

/// Read every movie of the store into a live catalog: matrix rows in matrix order (their vectors are
/// the shared `matrix`), then the movies added at run time with their stored vectors. Fails with one
/// line when the store and the matrix do not hold the same movies.
///
/// `added` was read before the movies: a movie another replica added meanwhile (movie and vector in
/// one transaction) is in the movies but not in `added`. So the run-time embeddings of `model` are
/// read again when movies seem to lack one: those that have one now were written after the start
/// began (after its generation), and join with it; only the rest are the catalog's damage.
#[allow(clippy::too_many_arguments)] // the start's own pieces, each read once by `load` and named here; a struct would only rename them
async fn read_catalog(
    store: &Store,
    db: &str,
    ids: &[String],
    matrix: SharedMatrix,
    dim: usize,
    added: &[(String, Vec<f32>)],
    tombstones: &std::collections::HashSet<String>,
    model: &str,
) -> Result<(LiveCatalog, Vec<usize>)> {
    use rayon::prelude::*;
    let row_of: HashMap<&str, usize> = ids.iter().enumerate().map(|(row, id)| (id.as_str(), row)).collect();
    let added_ids: std::collections::HashSet<&str> = added.iter().map(|(id, _)| id.as_str()).collect();
    let mut catalog = LiveCatalog::new(matrix, dim);
    catalog.reserve(ids.len() + added.len());
    let mut slots: Vec<Option<Entry>> = (0..ids.len()).map(|_| None).collect();
    let mut added_entries: HashMap<String, Entry> = HashMap::new();
    // Movies with neither a matrix row nor a run-time embedding (yet).
    let mut unembedded = Vec::new();
    // Pages are read from the store on their own task, one ahead, while this one parses and interns.
    let (pages_tx, mut pages) = tokio::sync::mpsc::channel(1);
    let reader = store.clone();
    tokio::spawn(async move {
        let mut after: Option<String> = None;
        loop {
            let page = reader.raw_movies_after(after.as_deref(), PAGE).await;
            let done = match &page {
                Ok(p) => p.last().map(|last| after = Some(last.id.clone())).is_none(),
                Err(_) => true,
            };
            if pages_tx.send(page).await.is_err() || done {
                break;
            }
        }
    });
    while let Some(page) = pages.recv().await {
        let page = page?;
        if page.is_empty() {
            break;
        }
        // Parsing and title folding in parallel (the CPU part of a start); interning after, in order.
        let parsed: Vec<(Facts, String)> = page
            .par_iter()
            .map(|m| {
                let facts = Facts::parse(&m.document)
                    .map_err(|e| anyhow::anyhow!("movie {} has an invalid stored document: {e}", m.id))?;
                let folded = fold(&facts.title);
                Ok((facts, folded))
            })
            .collect::<Result<_>>()?;
        for (m, (facts, folded)) in page.iter().zip(parsed) {
            let row = row_of.get(m.id.as_str()).copied();
            let is_added = added_ids.contains(m.id.as_str());
            if row.is_none() && !is_added {
                unembedded.push(m.clone());
                continue;
            }
            let movie = NewMovie { id: m.id.clone(), rating: m.rating, votes: m.votes, facts, source: &m.source };
            let entry = catalog.entry_for(movie, folded);
            if is_added {
                added_entries.insert(m.id.clone(), entry.clone());
            }
            if let Some(row) = row {
                slots[row] = Some(entry);
            }
        }
    }
    // A matrix row of a movie deleted since the matrix was made: a dead row until the next build.
    for (row, slot) in slots.iter_mut().enumerate().filter(|(row, s)| s.is_none() && tombstones.contains(&ids[*row])) {
        *slot = Some(catalog.deleted_entry(&ids[row]));
    }
    if let Some((row, _)) = slots.iter().enumerate().find(|(_, s)| s.is_none()) {
        bail!(
            "the embedding matrix does not belong to this catalog: row {row} is movie {}, which {db} does not hold \
             (re-run `cinevec embed` for this catalog)",
            ids[row]
        );
    }
    let mut late = Vec::new();
    if !unembedded.is_empty() {
        let now: HashMap<String, Vec<f32>> = store.movie_embeddings(model).await?.into_iter().collect();
        let (found, missing): (Vec<_>, Vec<_>) = unembedded.into_iter().partition(|m| now.contains_key(&m.id));
        if let Some(first) = missing.first() {
            bail!(
                "{} movies of the catalog have no embedding (e.g. {}): the catalog changed after `cinevec embed`; re-run it",
                missing.len(),
                first.id
            );
        }
        tracing::info!("{} movies were added while the catalog was read: served with the rest", found.len());
        for m in found {
            let facts = Facts::parse(&m.document)
                .map_err(|e| anyhow::anyhow!("movie {} has an invalid stored document: {e}", m.id))?;
            let folded = fold(&facts.title);
            let entry = catalog.entry_for(
                NewMovie { id: m.id.clone(), rating: m.rating, votes: m.votes, facts, source: &m.source },
                folded,
            );
            late.push((entry, now[&m.id].clone()));
        }
    }
    for entry in slots.into_iter().flatten() {
        catalog.push_matrix_row(entry);
    }
    let mut added_rows = Vec::with_capacity(added.len());
    for (id, vector) in added {
        let Some(entry) = added_entries.remove(id) else { continue };
        if vector.len() != dim {
            bail!("stored embedding of {id} has dimension {}, expected {dim}", vector.len());
        }
        let (row, _) = catalog.push_entry_with_vector(entry, vector);
        added_rows.push(row);
    }
    for (entry, vector) in late {
        if vector.len() != dim {
            bail!("a stored embedding has dimension {}, expected {dim}", vector.len());
        }
        added_rows.push(catalog.push_entry_with_vector(entry, &vector).0);
    }
    Ok((catalog, added_rows))
}

/// Load and cross-check the catalog, the embedding set, the model, the head and the index.
/// `on_batch` and `on_search` are told about every forward pass and search (for metrics).
pub async fn load(
    config: &ServiceConfig,
    on_batch: Option<BatchObserver>,
    on_search: Option<SearchObserver>,
) -> Result<Service> {
    let started = Instant::now();
    // The model loads on its own thread meanwhile (it is checked against the matrix below).
    let model_args = config.model.clone();
    let model_loading = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        model_args.load_for_serving().map(|m| (m, t.elapsed()))
    });
    let store = Store::open(&config.db).await.context("opening the catalog store")?;
    let artifacts_dir = config.artifacts.clone();
    let set = tokio::task::spawn_blocking(move || artifacts::load_embeddings(&artifacts_dir)).await??;
    let matrix_read = started.elapsed();
    let artifacts::EmbeddingSet { manifest, ids, matrix } = set;
    let ids = Arc::new(ids);
    let matrix: SharedMatrix = Arc::new(matrix);
    let matrix_rows = ids.len();

    // The saved graph loads meanwhile too (when it was built from this matrix).
    let (dir, run_id, params, dim) = (config.artifacts.clone(), manifest.run_id.clone(), config.index, manifest.dim);
    let for_graph = matrix.clone();
    let graph_loading = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let index = VectorIndex::load(&dir, &run_id, for_graph, dim, params);
        (index, t.elapsed())
    });

    // Catalog ↔ matrix: every row's movie exists, and every movie has a vector. Read from the snapshot
    // a previous start saved when the store has not changed since, or changed only by this service's
    // writes since, each in the journal beside it; else from the store (read before its generation
    // could move again: a write meanwhile makes the new snapshot stale, never wrong).
    let (identity, generation) = store.generation().await.context("reading the catalog's generation")?;
    let key = SnapshotKey { run_id: manifest.run_id.clone(), store: identity, generation };
    let snapshot_path = config.artifacts.join(SNAPSHOT_FILE);
    let journal_path = config.artifacts.join(JOURNAL_FILE);
    let added = store.movie_embeddings(&manifest.model.weights_sha256).await?;
    let tombstones: std::collections::HashSet<String> =
        store.tombstones().await.context("reading the deleted movies")?.into_iter().collect();
    let saved_at = snapshot_generation(&snapshot_path, &key);
    let replay = match saved_at {
        Some(g) if g != generation => match journal::read(&journal_path, &key) {
            Ok(Replay { damage: Some(damage), records, .. }) => {
                // Records after the damage may be whole, but none can be trusted to be all there is.
                let kept = journal_path.with_extension("journal.damaged");
                let moved = std::fs::rename(&journal_path, &kept).map(|()| format!("; kept as {}", kept.display()));
                tracing::warn!(
                    "the catalog journal {} has {damage} ({} whole records before it): it is not used, the \
                     catalog is read from the store, which holds every acknowledged write{}",
                    journal_path.display(),
                    records.len(),
                    moved.unwrap_or_default()
                );
                None
            }
            Ok(r) if r.snapshot_generation == g && r.reaches(generation) => Some(r),
            Ok(_) => {
                tracing::info!("catalog snapshot not used (the store changed beyond its journal): reading the store");
                None
            }
            Err(e) => {
                tracing::info!("catalog snapshot not used (the store changed; {e:#}): reading the store");
                None
            }
        },
        _ => None,
    };
    let from_snapshot = if let Some(saved_at) = saved_at.filter(|&g| g == generation || replay.is_some()) {
        let snapshot_key = SnapshotKey { generation: saved_at, ..key.clone() };
        let (path, ids, matrix, added) = (snapshot_path.clone(), ids.clone(), matrix.clone(), added.clone());
        let records = replay.as_ref().map(|r| r.records.clone()).unwrap_or_default();
        let read = tokio::task::spawn_blocking(move || {
            let (catalog, rows) = LiveCatalog::load_snapshot(&path, &snapshot_key, &ids, matrix, dim, &added)?;
            replay_journal(catalog, rows, &records, &added)
        });
        match read.await? {
            // A write by another program while it was read (the run-time vectors came from the store):
            // read the store instead.
            Ok(_) if store.generation().await.ok().map(|(_, g)| g) != Some(generation) => {
                tracing::info!("catalog snapshot not used (the store changed while it was read): reading the store");
                None
            }
            Ok(read) => Some(read),
            Err(e) => {
                tracing::info!("catalog snapshot not used ({e:#}): reading the store");
                None
            }
        }
    } else {
        None
    };
    let from_store = from_snapshot.is_none();
    let replayed = if from_store { 0 } else { replay.as_ref().map_or(0, |r| r.records.len()) };
    // A start that read the store saves a snapshot; one that replayed a journal folds it into a new one.
    let snapshot_due = (from_store || replayed > 0).then_some((snapshot_path, key.clone()));
    let (catalog, added_rows) = match from_snapshot {
        Some(read) => read,
        None => {
            let db = crate::catalog::store::redacted(&config.db);
            read_catalog(&store, &db, &ids, matrix.clone(), dim, &added, &tombstones, &manifest.model.weights_sha256)
                .await?
        }
    };
    // Deleted movies are dead rows whichever way the catalog was read (the snapshot's are already).
    let mut catalog = catalog;
    tombstones.iter().for_each(|id| {
        catalog.remove(id);
    });
    let journaling = if from_store {
        Journaling { generation: Some(generation), journal: None }
    } else {
        Journaling { generation: Some(generation), journal: open_journal(&journal_path, &key, replay.as_ref()) }
    };
    drop(ids);
    // The title index builds on its own thread meanwhile (searches scan until it is there).
    catalog.index_titles_in_background();
    // So is the people index query understanding reads (`service/ask/`).
    catalog.index_people_in_background();
    // The per-field statistics filtered searches are planned with (a pass over the rows; not at the
    // first filtered request).
    catalog.field_stats();
    let catalog_read = started.elapsed();
    let how = match (from_store, replayed) {
        (true, _) => "read from the store".to_string(),
        (false, 0) => "from the snapshot".to_string(),
        (false, n) => format!("from the snapshot and {n} journaled writes"),
    };
    tracing::info!(
        "catalog: {} movies ({how}); embedding set: {} rows of dim {}; {} movies added at run time",
        catalog.live_count(),
        manifest.rows,
        manifest.dim,
        added_rows.len()
    );

    // Model ↔ matrix.
    let (embedder, model_took) = model_loading.await??;
    let model_loaded = started.elapsed();
    let limits = config.queue;
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
    if model.dim != manifest.dim
        || model.pooling != manifest.model.pooling
        || model.max_tokens != manifest.model.max_tokens
    {
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

    // The graph: the saved one if it was built from this matrix, else built now and saved.
    let for_map = matrix.clone();
    let (loaded_graph, took) = graph_loading.await?;
    let graph_loaded = started.elapsed();
    let index = match loaded_graph? {
        Some(index) => {
            tracing::info!("loaded the saved HNSW graph in {:.2}s", took.as_secs_f64());
            index
        }
        None => {
            let (dir, run_id) = (config.artifacts.clone(), manifest.run_id.clone());
            tokio::task::spawn_blocking(move || {
                let t = Instant::now();
                tracing::info!("building the HNSW graph over {matrix_rows} rows (saved for later starts)");
                let index = VectorIndex::build_shared(matrix, dim, params);
                if let Err(e) = index.save(&dir, &run_id, matrix_rows) {
                    tracing::warn!("could not save the HNSW graph ({e:#}); it will be rebuilt next start");
                }
                tracing::info!("built the HNSW graph in {:.1}s", t.elapsed().as_secs_f64());
                index
            })
            .await?
        }
    };
    let (index, map) = {
        let (dir, run_id) = (config.artifacts.clone(), manifest.run_id.clone());
        tokio::task::spawn_blocking(move || {
            let map = load_or_build_map(&dir, &run_id, &for_map, dim, &index);
            (index, map)
        })
        .await?
    };
    let queue = EmbedQueue::start(embedder, limits, on_batch).context("cannot start the model thread")?;
    // Warm the model so the first request does not pay for lazy initialisation.
    queue.embed(vec!["warm up".into()]).await.map_err(|e| anyhow::anyhow!("model warm-up failed: {e}"))?;
    let load_seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        "start-up (seconds since start when each part was done): matrix and ids {:.2}, catalog {:.2}, model {:.2} \
         (its load took {:.2}), graph {:.2} (its load took {:.2}), warm-up {load_seconds:.2}",
        matrix_read.as_secs_f64(),
        catalog_read.as_secs_f64(),
        model_loaded.as_secs_f64(),
        model_took.as_secs_f64(),
        graph_loaded.as_secs_f64(),
        took.as_secs_f64()
    );
    tracing::info!("ready: {} movies, loaded in {load_seconds:.2}s", catalog.live_count());
    let service = Service::from_parts(Parts {
        live: catalog,
        index,
        queue,
        head,
        store,
        manifest,
        model,
        matrix_rows,
        load_seconds,
        snapshot_due,
        config: config.clone(),
        on_search,
    });
    let service = match map {
        Some(layout) => service.with_map(layout),
        None => service,
    };
    // Other replicas' writes since `generation` (read before the run-time rows were) come from the feed.
    Ok(service.feed_from(generation).with_journaling(journaling, from_store))
}

/// The catalog map saved beside the graph when it was made from this embedding set; else (missing,
/// stale or damaged) laid out now from the neighbour table with the default settings and saved for
/// the next start. `None` (logged) when it cannot be made: the server then answers without a map.
fn load_or_build_map(
    dir: &std::path::Path,
    run_id: &str,
    matrix: &[f32],
    dim: usize,
    index: &VectorIndex,
) -> Option<Layout> {
    let path = crate::index::map_path(dir);
    let rows = matrix.len() / dim.max(1);
    match crate::index::layout::load_any(&path, run_id, rows) {
        Ok(layout) => return Some(layout),
        Err(e) if path.exists() => {
            tracing::warn!("saved catalog map {} unusable ({e:#}): laying it out again", path.display())
        }
        Err(_) => tracing::info!("laying out the catalog map (saved for later starts; `cinevec build` makes it)"),
    }
    let t = Instant::now();
    let params = LayoutParams::default();
    let Some(table) = index.table() else {
        tracing::warn!("no catalog map: the graph has no neighbour table");
        return None;
    };
    match Layout::compute(matrix, dim, table, params) {
        Ok(layout) => {
            if let Err(e) = layout.save(&path, run_id, params) {
                tracing::warn!("could not save the catalog map ({e:#}); it will be laid out again next start");
            }
            tracing::info!("laid out the catalog map in {:.1}s", t.elapsed().as_secs_f64());
            Some(layout)
        }
        Err(e) => {
            tracing::warn!("no catalog map: {e:#}");
            None
        }
    }
}

/// The snapshot's catalog with the journaled writes after it pushed in order (of a movie written more
/// than once, the last), their vectors from the store's run-time embeddings (by id).
fn replay_journal(
    mut catalog: LiveCatalog,
    mut rows: Vec<usize>,
    records: &[journal::Record],
    added: &[(String, Vec<f32>)],
) -> Result<(LiveCatalog, Vec<usize>)> {
    if records.is_empty() {
        return Ok((catalog, rows));
    }
    let vectors: HashMap<&str, &[f32]> = added.iter().map(|(id, v)| (id.as_str(), v.as_slice())).collect();
    // A movie written twice: only its last write (the store holds no other), as a start from the store.
    let last: HashMap<&str, usize> = records.iter().enumerate().map(|(i, r)| (r.id.as_str(), i)).collect();
    for (_, r) in records.iter().enumerate().filter(|(i, r)| last[r.id.as_str()] == *i) {
        if r.deleted {
            catalog.remove(&r.id);
            continue;
        }
        let vector = vectors
            .get(r.id.as_str())
            .copied()
            .with_context(|| format!("journaled movie {} has no stored vector", r.id))?;
        if vector.len() != catalog.dim() {
            bail!("stored embedding of {} has dimension {}", r.id, vector.len());
        }
        rows.push(catalog.push(r.movie(), vector).0);
    }
    Ok((catalog, rows))
}

/// The journal to append this start's writes to: the one replayed (its torn tail cut off), else a
/// new one for the snapshot read at `key`'s generation. `None` (logged) when it cannot be written.
fn open_journal(path: &std::path::Path, key: &SnapshotKey, replay: Option<&Replay>) -> Option<Journal> {
    let opened = match replay {
        Some(r) => Journal::append_to(path, r.valid_len),
        None => Journal::create(path, key),
    };
    opened
        .map_err(|e| tracing::warn!("cannot write the catalog journal ({e:#}); a start after writes reads the store"))
        .ok()
}
