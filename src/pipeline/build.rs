//! `cinevec build`: the whole offline pipeline in one command — model, ingest, export, embed, train,
//! index, map — each step skipped when its output is already there, newer than its inputs, and made from
//! the same model, data and settings (the manifests and step records say so).
//!
//! Every step writes its outputs atomically, so a run stopped at any point (Ctrl-C) leaves the
//! previous complete outputs or nothing; the long step, embedding, appends each finished batch to the
//! embedding cache, so the next run resumes where it stopped.

use crate::artifacts::{self, Manifest};
use crate::catalog::demo;
use crate::catalog::store::Store;
use crate::head::fit::HeadTraining;
use crate::head::{HeadSpec, HEAD_SPEC_FILE, HEAD_WEIGHTS_FILE};
use crate::index::{IndexParams, Layout, LayoutParams, VectorIndex};
use crate::models::{self, ModelOptions};
use crate::pipeline::embed::{self, BatchLimits};
use crate::pipeline::ingest::{self, IngestSource};
use crate::pipeline::train::{self, RatingsSource, TrainOptions};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

pub use crate::artifacts::CATALOG_FILE;
/// Step records and the lock, inside the artifacts folder.
pub const STATE_DIR: &str = ".build";

/// How the rated movies are split for training (what `--test-fraction`, `--val-fraction`,
/// `--split-seed` and `--folds` say; recorded in the train step's key, so the field names stay).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Split {
    pub test_fraction: f64,
    pub val_fraction: f64,
    pub split_seed: u64,
    pub folds: usize,
}

/// `cinevec build`'s settings, built by `crate::cli` from its flags.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// What to ingest first; `None`: the store as it is.
    pub source: Option<IngestSource>,
    /// The catalog store.
    pub db: String,
    /// Folder for everything the build makes.
    pub artifacts: PathBuf,
    pub model: ModelOptions,
    pub batch: BatchLimits,
    /// The graph's construction parameters.
    pub index: IndexParams,
    /// How the catalog map is laid out.
    pub layout: LayoutParams,
    pub strict: bool,
    pub no_cache: bool,
    pub force: bool,
    /// The rating head's settings, or why they could not be read (reported when the train step
    /// needs them).
    pub training: std::result::Result<(HeadTraining, Split), String>,
}

/// What happened to one step.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Ran, in this many seconds; with a one-line summary.
    Ran(f64, String),
    /// Skipped: its outputs are current; why.
    UpToDate(String),
}

/// One line per step, in order.
#[derive(Debug, Default)]
pub struct BuildReport {
    pub steps: Vec<(&'static str, Outcome)>,
    pub seconds: f64,
}

impl BuildReport {
    fn push(&mut self, step: &'static str, outcome: Outcome) {
        let line = match &outcome {
            Outcome::Ran(s, what) => format!("{step:<7} done in {s:>6.1}s  {what}"),
            Outcome::UpToDate(why) => format!("{step:<7} up to date    {why}"),
        };
        // Each step is printed as it ends, so a long build shows where it is.
        println!("{line}");
        self.steps.push((step, outcome));
    }

    /// How many steps ran (were not up to date).
    pub fn ran(&self) -> usize {
        self.steps.iter().filter(|(_, o)| matches!(o, Outcome::Ran(..))).count()
    }
}

/// A step's record in `.build/<step>.json`: what it was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StepRecord {
    key: Value,
    /// Step-specific facts checked on the next run (e.g. the store's movie count, the head id).
    facts: Value,
}

fn read_record(state: &Path, step: &str) -> Option<StepRecord> {
    let bytes = std::fs::read(state.join(format!("{step}.json"))).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn write_record(state: &Path, step: &str, record: &StepRecord) -> Result<()> {
    artifacts::write_atomic(&state.join(format!("{step}.json")), &serde_json::to_vec_pretty(record)?)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Every output exists and is at least as new as every input.
fn newer_than(outputs: &[PathBuf], inputs: &[PathBuf]) -> bool {
    let newest_input = inputs.iter().filter_map(|p| modified(p)).max();
    outputs.iter().all(|o| match (modified(o), newest_input) {
        (Some(out), Some(input)) => out >= input,
        (Some(_), None) => true,
        (None, _) => false,
    })
}

/// What an ingest source is, for deciding whether it changed: file hashes for a catalog, names,
/// sizes and times for the (large) IMDb dumps, the pinned package for the demo.
fn source_key(source: &IngestSource) -> Result<Value> {
    Ok(match source {
        IngestSource::Catalog(path) => {
            json!({ "catalog": absolute(path), "sha256": crate::hash::sha256_file(path)? })
        }
        IngestSource::Imdb(dir) => {
            let mut files = Vec::new();
            for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().to_string();
                if name.starts_with("title.") || name.starts_with("name.") {
                    let meta = entry.metadata()?;
                    let mtime = meta.modified().ok().and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok());
                    files.push(json!([name, meta.len(), mtime.map(|d| d.as_nanos().to_string())]));
                }
            }
            files.sort_by_key(|v| v.to_string());
            json!({ "imdb": absolute(dir), "files": files })
        }
        IngestSource::Demo { .. } => json!({ "demo": demo::PACKAGE, "sha256": demo::MOVIES_SHA256 }),
    })
}

fn absolute(path: &Path) -> String {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()).display().to_string()
}

/// An exclusive lock on the artifacts folder for the whole build (released when dropped or when the
/// process dies).
fn lock(state: &Path) -> Result<std::fs::File> {
    let path = state.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            bail!(
                "another `cinevec build` is running on {} (lock {})",
                state.parent().unwrap_or(state).display(),
                path.display()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

/// Run the pipeline.
pub fn run(args: &BuildOptions) -> Result<BuildReport> {
    let started = Instant::now();
    let dir = &args.artifacts;
    let state = dir.join(STATE_DIR);
    std::fs::create_dir_all(&state).with_context(|| format!("cannot create {}", state.display()))?;
    let _lock = lock(&state)?;
    let mut report = BuildReport::default();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;

    // 1. The model: found, or fetched.
    let source = args.model.source();
    let model_dir = match models::locate(&source, &args.model.models_dir) {
        Ok(found) => {
            report.push("model", Outcome::UpToDate(found.display().to_string()));
            found
        }
        Err(_) => {
            let t = Instant::now();
            let fetched = models::fetch(&source, &args.model.models_dir)?;
            report
                .push("model", Outcome::Ran(t.elapsed().as_secs_f64(), format!("fetched into {}", fetched.display())));
            fetched
        }
    };

    // 2. Ingest (only when a source is given; otherwise the store is used as it is).
    let db = &args.db;
    // What messages show of it (never a password).
    let shown = crate::catalog::store::redacted(db);
    match args.source.clone() {
        Some(source) => {
            let key = json!({ "source": source_key(&source)?, "db": crate::catalog::store::redacted(db) });
            let count = if crate::catalog::store::may_exist(db) { Some(rt.block_on(store_count(db))?) } else { None };
            let record = read_record(&state, "ingest");
            let current = record.as_ref().is_some_and(|r| {
                r.key == key && count.is_some() && r.facts.get("movies").and_then(Value::as_u64) == count
            });
            if current && !args.force {
                report.push(
                    "ingest",
                    Outcome::UpToDate(format!("{} movies from the same source in {shown}", count.unwrap_or(0))),
                );
            } else {
                let t = Instant::now();
                let options = ingest::IngestOptions { strict: args.strict, batch_size: 5000 };
                let ingested = ingest::ingest(&source, db, &options)?;
                let movies = ingested.total;
                write_record(&state, "ingest", &StepRecord { key, facts: json!({ "movies": movies }) })?;
                report.push(
                    "ingest",
                    Outcome::Ran(
                        t.elapsed().as_secs_f64(),
                        format!(
                            "{}: kept {} of {} ({} new, {} changed); {movies} movies in {shown}",
                            ingested.source, ingested.kept, ingested.read, ingested.new, ingested.changed
                        ),
                    ),
                );
            }
        }
        None => {
            if !crate::catalog::store::may_exist(db) {
                bail!(
                    "no catalog store at {shown}: give a source (`--demo`, `--catalog FILE` or `--imdb DIR`) or run `cinevec ingest` first"
                );
            }
        }
    }

    // 3. Export the store to the catalog file the embedding set is made from; kept as it is (same
    //    bytes, same time) when the store holds the same movies.
    let catalog = dir.join(CATALOG_FILE);
    {
        let t = Instant::now();
        let fresh = state.join(format!("{CATALOG_FILE}.new"));
        let store_db = db.clone();
        let fresh_path = fresh.clone();
        let n = rt.block_on(async move {
            let store = Store::open(&store_db).await?;
            let n = crate::pipeline::export::export_jsonl(&store, &fresh_path).await;
            store.close().await;
            n
        })?;
        if n == 0 {
            let _ = std::fs::remove_file(&fresh);
            bail!("the catalog store {shown} holds no movies: ingest some first");
        }
        let same = catalog.is_file() && crate::hash::sha256_file(&catalog)? == crate::hash::sha256_file(&fresh)?;
        if same {
            std::fs::remove_file(&fresh)?;
            report.push("export", Outcome::UpToDate(format!("{} ({n} movies) matches the store", catalog.display())));
        } else {
            std::fs::rename(&fresh, &catalog).with_context(|| format!("cannot write {}", catalog.display()))?;
            report.push(
                "export",
                Outcome::Ran(t.elapsed().as_secs_f64(), format!("{n} movies to {}", catalog.display())),
            );
        }
    }

    // 4. Embed.
    let embedder = args.model.load_from(&model_dir)?;
    let info = embedder.info().clone();
    let catalog_sha = crate::hash::sha256_file(&catalog)?;
    let embed_outputs = [artifacts::MATRIX_FILE, artifacts::IDS_FILE, artifacts::MANIFEST_FILE].map(|f| dir.join(f));
    let previous = artifacts::read_manifest(dir).ok();
    let embed_current = previous.as_ref().is_some_and(|m| {
        m.input_sha256 == catalog_sha
            && m.model.weights_sha256 == info.weights_sha256
            && m.model.pooling == info.pooling
            && m.model.max_tokens == info.max_tokens
            && m.dim == info.dim
            && m.dtype == info.dtype
            && m.doc_format == crate::movie::DOC_FORMAT_VERSION
    }) && newer_than(&embed_outputs, std::slice::from_ref(&catalog));
    let manifest: Manifest = if embed_current && !args.force {
        let m = previous.expect("checked");
        report.push("embed", Outcome::UpToDate(format!("{} rows of dim {}, same catalog and model", m.rows, m.dim)));
        m
    } else {
        let t = Instant::now();
        let cache = (!args.no_cache).then(|| embed::cache_dir(dir));
        let limits = args.batch;
        let done =
            embed::embed_catalog(&embedder, &source.name(), &catalog, dir, limits, args.strict, cache.as_deref())?;
        report.push("embed", Outcome::Ran(t.elapsed().as_secs_f64(), embed::summary(&done, dir)));
        done.manifest
    };
    drop(embedder);

    // 5. Train the rating head.
    let training = args.training.clone().map_err(anyhow::Error::msg)?;
    let train_key = json!({ "embeddings_run_id": manifest.run_id, "head": training.0, "split": training.1 });
    let head_outputs = [HEAD_SPEC_FILE, HEAD_WEIGHTS_FILE].map(|f| dir.join(f));
    let head_current = HeadSpec::read(dir).ok().is_some_and(|spec| {
        spec.embeddings.check(&manifest).is_ok()
            && read_record(&state, "train").is_some_and(|r| {
                r.key == train_key && r.facts.get("head_id").and_then(Value::as_str) == Some(&spec.head_id)
            })
    }) && newer_than(&head_outputs, &embed_outputs);
    if head_current && !args.force {
        report.push("train", Outcome::UpToDate("head trained on this embedding set with the same settings".into()));
    } else {
        let t = Instant::now();
        let (head, split) = training;
        let opts = TrainOptions {
            embeddings: dir.clone(),
            out: dir.clone(),
            ratings: RatingsSource::CatalogJsonl(catalog.clone()),
            test_fraction: split.test_fraction,
            val_fraction: split.val_fraction,
            split_seed: split.split_seed,
            folds: split.folds,
            head,
        };
        let trained = train::train(&opts)?;
        write_record(&state, "train", &StepRecord { key: train_key, facts: json!({ "head_id": trained.head_id }) })?;
        let head_row = trained.models.iter().find(|m| m.model == "head");
        let summary = match head_row {
            Some(m) => format!(
                "test MAE {:.3}, MSE {:.3} ({:.2} × the mean baseline's)",
                m.test.mae, m.test.mse, trained.head_over_mean_test_mse
            ),
            None => "head written".into(),
        };
        report.push("train", Outcome::Ran(t.elapsed().as_secs_f64(), summary));
    }

    // 6. The HNSW graph.
    let params: IndexParams = args.index;
    let graph_saved =
        VectorIndex::is_saved_for(dir, &manifest.run_id, manifest.rows, manifest.dim, params) && !args.force;
    if graph_saved && crate::index::table_saved_for(dir, &manifest.run_id, manifest.rows) {
        report.push(
            "index",
            Outcome::UpToDate(format!("graph over {} rows (M {})", manifest.rows, params.max_connections)),
        );
    } else if graph_saved {
        // A graph saved before neighbour tables existed: loading it finds and saves the table.
        let t = Instant::now();
        let set = artifacts::load_embeddings(dir)?;
        let matrix = std::sync::Arc::new(set.matrix);
        VectorIndex::load(dir, &manifest.run_id, matrix, manifest.dim, params)?
            .context("the saved graph could not be loaded")?;
        report
            .push("index", Outcome::Ran(t.elapsed().as_secs_f64(), "neighbour table added to the saved graph".into()));
    } else {
        let t = Instant::now();
        let set = artifacts::load_embeddings(dir)?;
        if set.manifest.run_id != manifest.run_id {
            bail!("the embedding set in {} changed during the build (another process?)", dir.display());
        }
        let index = VectorIndex::build(&set.matrix, set.manifest.dim, params);
        index.save(dir, &manifest.run_id, manifest.rows)?;
        report.push(
            "index",
            Outcome::Ran(
                t.elapsed().as_secs_f64(),
                format!("graph over {} rows (M {})", manifest.rows, params.max_connections),
            ),
        );
    }

    // 7. The catalog map, from the neighbour table.
    let map = crate::index::map_path(dir);
    let layout = args.layout;
    if Layout::saved_for(&map, &manifest.run_id, manifest.rows, layout) && !args.force {
        report.push("map", Outcome::UpToDate(format!("{} rows laid out (seed {})", manifest.rows, layout.seed)));
    } else {
        let t = Instant::now();
        let set = artifacts::load_embeddings(dir)?;
        if set.manifest.run_id != manifest.run_id {
            bail!("the embedding set in {} changed during the build (another process?)", dir.display());
        }
        let table =
            crate::index::load_table(dir, &manifest.run_id, manifest.rows).context("reading the neighbour table")?;
        let laid_out =
            Layout::compute(&set.matrix, set.manifest.dim, &table, layout).context("laying out the catalog map")?;
        laid_out.save(&map, &manifest.run_id, layout)?;
        report.push(
            "map",
            Outcome::Ran(
                t.elapsed().as_secs_f64(),
                format!(
                    "{} rows laid out ({} passes, seed {})",
                    manifest.rows,
                    layout.epochs_for(manifest.rows),
                    layout.seed
                ),
            ),
        );
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

async fn store_count(db: &str) -> Result<u64> {
    let store = Store::open(db).await?;
    let n = store.count().await;
    store.close().await;
    Ok(n?)
}
