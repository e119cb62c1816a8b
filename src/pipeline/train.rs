//! `cinevec train`: the embedding matrix and the catalog's ratings in, the rating head and its report
//! out. Fits the mean baseline, ridge regression and the head on one seeded split, chooses everything on
//! validation, and measures all three on the held-out test rows once, at the end.

use crate::artifacts::{self, EmbeddingSet};
use crate::catalog::jsonl::read_records;
use crate::head::data::{split, Dataset, Errors};
use crate::head::fit::{coverage, fit_head, HeadTraining};
use crate::head::ridge::{fit_mean, fit_ridge, lambda_grid};
use crate::head::train::{EpochLog, MemberSummary};
use crate::head::{EmbeddingLink, HEAD_SPEC_FILE, HEAD_WEIGHTS_FILE, TRAIN_REPORT_FILE};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const REPORT_FORMAT: &str = "cinevec-train-report/1";

/// Where the ratings come from. Only the catalog JSONL for now; a catalog store can be added as another
/// variant without touching the training.
#[derive(Debug, Clone)]
pub enum RatingsSource {
    CatalogJsonl(PathBuf),
}

impl RatingsSource {
    /// Movie id → average rating, for every movie that has one.
    pub fn load(&self) -> Result<HashMap<String, f64>> {
        match self {
            RatingsSource::CatalogJsonl(path) => ratings_from_catalog(path),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            RatingsSource::CatalogJsonl(path) => path.display().to_string(),
        }
    }
}

/// The ratings of a catalog JSONL file, keyed by id. Malformed lines are skipped with a warning (the
/// embedding run skipped them too).
pub fn ratings_from_catalog(path: &Path) -> Result<HashMap<String, f64>> {
    let mut ratings = HashMap::new();
    let mut skipped = 0usize;
    for item in read_records(path).with_context(|| format!("cannot read {}", path.display()))? {
        match item? {
            Ok(record) => {
                if let Some(r) = record.rating {
                    ratings.entry(record.id).or_insert(r);
                }
            }
            Err(_) => skipped += 1,
        }
    }
    if skipped > 0 {
        tracing::warn!("{}: {skipped} malformed lines skipped", path.display());
    }
    Ok(ratings)
}

/// Everything `cinevec train` needs.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Folder of the embedding set.
    pub embeddings: PathBuf,
    /// Folder the head and its report are written to.
    pub out: PathBuf,
    pub ratings: RatingsSource,
    pub test_fraction: f64,
    pub val_fraction: f64,
    pub split_seed: u64,
    pub head: HeadTraining,
}

/// Train, validation and test errors of one model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelErrors {
    pub model: String,
    pub train: Errors,
    pub val: Errors,
    pub test: Errors,
}

/// `train-report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub format: String,
    pub head_id: String,
    pub created_at: String,
    pub embeddings: serde_json::Value,
    pub ratings: serde_json::Value,
    pub split: serde_json::Value,
    pub models: Vec<ModelErrors>,
    /// Test MSE of the head divided by that of the mean baseline (the product's headline number).
    pub head_over_mean_test_mse: f64,
    pub ridge_over_mean_test_mse: f64,
    pub ridge_lambda: f64,
    pub ridge_path: Vec<(f64, f64)>,
    pub ridge_weight: f64,
    pub blend_path: Vec<(f64, f64)>,
    pub interval: serde_json::Value,
    pub members: Vec<MemberSummary>,
    pub training_samples: usize,
    pub training_seconds: f64,
    pub samples_per_second: f64,
    pub config: HeadTraining,
    pub seconds: f64,
}

/// Join the embedding rows with their ratings; rows without a rating are left out.
pub fn join(set: &EmbeddingSet, ratings: &HashMap<String, f64>) -> Dataset {
    let dim = set.manifest.dim;
    let mut data = Dataset { dim, ids: Vec::new(), x: Vec::new(), y: Vec::new() };
    for (i, id) in set.ids.iter().enumerate() {
        if let Some(&r) = ratings.get(id) {
            data.ids.push(id.clone());
            data.x.extend_from_slice(set.row(i));
            data.y.push(r);
        }
    }
    data
}

fn errors_of(model: &str, predict: impl Fn(&Dataset) -> Result<Vec<f64>>, parts: [&Dataset; 3]) -> Result<ModelErrors> {
    let e = |d: &Dataset| -> Result<Errors> { Ok(Errors::of(&predict(d)?, &d.y)) };
    Ok(ModelErrors { model: model.to_string(), train: e(parts[0])?, val: e(parts[1])?, test: e(parts[2])? })
}

/// Run the whole training; writes `head.safetensors`, `head.json` and `train-report.json` into
/// `opts.out`.
pub fn train(opts: &TrainOptions) -> Result<TrainReport> {
    let started = Instant::now();
    let set = artifacts::load_embeddings(&opts.embeddings)?;
    let ratings = opts.ratings.load()?;
    let data = join(&set, &ratings);
    tracing::info!("{} of {} embedded movies have a rating in {}", data.len(), set.ids.len(), opts.ratings.describe());
    if !(0.0..1.0).contains(&opts.test_fraction) || !(0.0..1.0).contains(&opts.val_fraction) {
        bail!("test and validation fractions must be in [0, 1)");
    }
    let parts = split(&data.ids, opts.test_fraction, opts.val_fraction, opts.split_seed);
    if parts.train.len() < 10 || parts.val.is_empty() || parts.test.is_empty() {
        bail!(
            "{} rated movies give {} training, {} validation and {} test rows: too few to train a head",
            data.len(),
            parts.train.len(),
            parts.val.len(),
            parts.test.len()
        );
    }
    let (train, val, test) = (data.subset(&parts.train), data.subset(&parts.val), data.subset(&parts.test));
    drop(data);

    let mean = fit_mean(&train);
    let ridge = fit_ridge(&train, &val, &lambda_grid())?;
    tracing::info!("ridge: λ = {:.3e} chosen on validation", ridge.lambda);

    let bar = crate::progress::bar((opts.head.mlp.epochs * opts.head.mlp.members) as u64, "train", "epochs");
    let mut best_val = f64::INFINITY;
    let mut on_epoch = |log: &EpochLog| {
        if log.epoch == 0 {
            best_val = f64::INFINITY;
        }
        best_val = best_val.min(log.val_mse);
        bar.set_message(format!(
            "member {}/{} epoch {} train {:.3} val {:.3} best {:.3} lr {:.1e}",
            log.member + 1,
            opts.head.mlp.members,
            log.epoch + 1,
            log.train_mse,
            log.val_mse,
            best_val,
            log.learning_rate
        ));
        bar.set_position((log.member * opts.head.mlp.epochs + log.epoch + 1) as u64);
    };
    let fit = fit_head(&train, &val, &ridge, EmbeddingLink::of(&set.manifest), &opts.head, &mut on_epoch)?;
    bar.finish_and_clear();
    for m in &fit.members {
        tracing::info!(
            "member {}: best validation MSE {:.4} at epoch {} of {} ({:.1}s)",
            m.seed_index + 1,
            m.best_val_mse,
            m.best_epoch + 1,
            m.epochs_run,
            m.seconds
        );
    }
    let mut head = fit.head;
    let split_parts = [&train, &val, &test];
    let head_predict =
        |d: &Dataset| -> Result<Vec<f64>> { Ok(head.predict(&d.x, d.dim)?.iter().map(|p| p.rating).collect()) };
    let models = vec![
        errors_of("mean", |d| Ok(mean.predict(d)), split_parts)?,
        errors_of("ridge", |d| Ok(ridge.model.predict(d)), split_parts)?,
        errors_of("head", head_predict, split_parts)?,
    ];
    let test_pred = head.predict(&test.x, test.dim)?;
    let val_pred = head.predict(&val.x, val.dim)?;
    let cal = head.spec().calibration;
    let interval = serde_json::json!({
        "level": cal.level,
        "low": cal.low,
        "high": cal.high,
        "from_validation_residuals": cal.residuals,
        "val_coverage": coverage(&val_pred, &val.y),
        "test_coverage": coverage(&test_pred, &test.y),
    });

    head.save(&opts.out)?;
    let spec = head.spec();
    let report = TrainReport {
        format: REPORT_FORMAT.to_string(),
        head_id: spec.head_id.clone(),
        created_at: spec.created_at.clone(),
        embeddings: serde_json::json!({
            "dir": opts.embeddings.display().to_string(),
            "run_id": set.manifest.run_id,
            "model": set.manifest.model.source,
            "dim": set.manifest.dim,
            "rows": set.manifest.rows,
        }),
        ratings: serde_json::json!({
            "source": opts.ratings.describe(),
            "rated_rows": train.len() + val.len() + test.len(),
            "unrated_rows": set.ids.len() - (train.len() + val.len() + test.len()),
        }),
        split: serde_json::json!({
            "seed": opts.split_seed,
            "test_fraction": opts.test_fraction,
            "val_fraction": opts.val_fraction,
            "train": train.len(),
            "val": val.len(),
            "test": test.len(),
        }),
        head_over_mean_test_mse: models[2].test.mse / models[0].test.mse,
        ridge_over_mean_test_mse: models[1].test.mse / models[0].test.mse,
        models,
        ridge_lambda: ridge.lambda,
        ridge_path: ridge.path.clone(),
        ridge_weight: spec.ridge_weight,
        blend_path: fit.blend_path,
        interval,
        members: fit.members,
        training_samples: fit.samples,
        training_seconds: fit.seconds,
        samples_per_second: fit.samples as f64 / fit.seconds,
        config: opts.head.clone(),
        seconds: started.elapsed().as_secs_f64(),
    };
    artifacts::write_atomic(&opts.out.join(TRAIN_REPORT_FILE), &serde_json::to_vec_pretty(&report)?)?;
    Ok(report)
}

/// The report as a table for the terminal.
pub fn render_report(report: &TrainReport) -> String {
    let mut out = String::new();
    out.push_str("| model | train MSE | val MSE | test MSE | train MAE | val MAE | test MAE |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for m in &report.models {
        out.push_str(&format!(
            "| {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} |\n",
            m.model, m.train.mse, m.val.mse, m.test.mse, m.train.mae, m.val.mae, m.test.mae
        ));
    }
    let i = &report.interval;
    out.push_str(&format!(
        "test MSE ratios: head ÷ mean {:.3}, ridge ÷ mean {:.3}, head ÷ ridge {:.3}\n",
        report.head_over_mean_test_mse,
        report.ridge_over_mean_test_mse,
        report.models[2].test.mse / report.models[1].test.mse
    ));
    out.push_str(&format!(
        "ridge λ {:.3e}; head = {:.2} × ridge + {:.2} × MLP ({} member(s), best epochs {})\n",
        report.ridge_lambda,
        report.ridge_weight,
        1.0 - report.ridge_weight,
        report.members.len(),
        report.members.iter().map(|m| (m.best_epoch + 1).to_string()).collect::<Vec<_>>().join(", ")
    ));
    out.push_str(&format!(
        "{:.0}% interval: rating {:+.2} / {:+.2}, coverage validation {:.1}%, test {:.1}%\n",
        i["level"].as_f64().unwrap_or(0.0) * 100.0,
        i["low"].as_f64().unwrap_or(0.0),
        i["high"].as_f64().unwrap_or(0.0),
        i["val_coverage"].as_f64().unwrap_or(0.0) * 100.0,
        i["test_coverage"].as_f64().unwrap_or(0.0) * 100.0
    ));
    out.push_str(&format!(
        "MLP training: {} samples in {:.1}s ({:.0} samples/s); whole run {:.1}s\n",
        report.training_samples, report.training_seconds, report.samples_per_second, report.seconds
    ));
    out
}

/// The files a training run writes, for the command's summary.
pub fn written_files(out: &Path) -> [PathBuf; 3] {
    [out.join(HEAD_WEIGHTS_FILE), out.join(HEAD_SPEC_FILE), out.join(TRAIN_REPORT_FILE)]
}
