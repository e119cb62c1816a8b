//! `cinevec train`: the embedding matrix and the catalog's ratings in, the rating head and its report
//! out. Fits the mean baseline, ridge regression and the head on one seeded split, chooses everything on
//! validation, and measures all three on the held-out test rows once, at the end.

use crate::artifacts::{self, EmbeddingSet};
use crate::catalog::jsonl::read_records;
use crate::head::data::{k_folds, split, training_rows, Dataset, Errors, Fold};
use crate::head::fit::{coverage, fit_head, HeadTraining};
use crate::head::ridge::{fit_mean, fit_ridge_folds, lambda_grid, Ridge};
use crate::head::train::{EpochLog, MemberSummary};
use crate::head::{EmbeddingLink, Head, HEAD_SPEC_FILE, HEAD_WEIGHTS_FILE, RATING_MAX, RATING_MIN, TRAIN_REPORT_FILE};
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
    /// 0 or 1: one train / validation split (`val_fraction`); k ≥ 2: k-fold cross-fitting over every
    /// non-test row, each fold holding out a k-th for validation.
    pub folds: usize,
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

/// The rated movies, split: `fit` holds every non-test row, `folds` index into it, `test` is held out.
struct Parts {
    fit: Dataset,
    folds: Vec<Fold>,
    test: Dataset,
}

/// Split the rated movies into test and the rest, and the rest into folds (one train / validation fold,
/// or k for cross-fitting).
fn split_rows(data: Dataset, opts: &TrainOptions) -> Result<Parts> {
    if !(0.0..1.0).contains(&opts.test_fraction) || !(0.0..1.0).contains(&opts.val_fraction) {
        bail!("test and validation fractions must be in [0, 1)");
    }
    let cross_fit = opts.folds >= 2;
    let val_fraction = if cross_fit { 0.0 } else { opts.val_fraction };
    let parts = split(&data.ids, opts.test_fraction, val_fraction, opts.split_seed);
    let n_val = if cross_fit { (parts.train.len() + parts.val.len()) / opts.folds } else { parts.val.len() };
    if parts.train.len() < 10 || n_val == 0 || parts.test.is_empty() {
        bail!(
            "{} rated movies give {} training, {} validation and {} test rows: too few to train a head",
            data.len(),
            parts.train.len(),
            n_val,
            parts.test.len()
        );
    }
    let fit_rows: Vec<usize> = parts.train.iter().chain(&parts.val).copied().collect();
    let fit = data.subset(&fit_rows);
    let folds = if cross_fit {
        k_folds(&fit.ids, opts.folds, opts.split_seed)
    } else {
        let n_train = parts.train.len();
        vec![Fold { train: (0..n_train).collect(), val: (n_train..fit_rows.len()).collect() }]
    };
    Ok(Parts { test: data.subset(&parts.test), fit, folds })
}

/// The progress bar's callback: live training and validation loss of the member in training.
fn progress(bar: &indicatif::ProgressBar, epochs: usize, members: usize) -> impl FnMut(&EpochLog) + '_ {
    let mut best_val = f64::INFINITY;
    move |log: &EpochLog| {
        if log.epoch == 0 {
            best_val = f64::INFINITY;
        }
        best_val = best_val.min(log.val_mse);
        bar.set_message(format!(
            "member {}/{members} epoch {} train {:.3} val {:.3} best {:.3} lr {:.1e}",
            log.member + 1,
            log.epoch + 1,
            log.train_mse,
            log.val_mse,
            best_val,
            log.learning_rate
        ));
        bar.set_position((log.member * epochs + log.epoch + 1) as u64);
    }
}

/// Held-out predictions of the two baselines for the validation rows, in the order of
/// [`crate::head::fit::FitOutcome::val_rows`] (fold after fold): each from the fold's own fit.
fn baseline_val_predictions(parts: &Parts, ridge: &Ridge) -> (Vec<f64>, Vec<f64>) {
    let (mut mean_val, mut ridge_val) = (Vec::new(), Vec::new());
    for (fold, model) in parts.folds.iter().zip(&ridge.fold_models) {
        let fold_mean = crate::head::data::mean(&fold.train.iter().map(|&i| parts.fit.y[i]).collect::<Vec<_>>());
        mean_val.extend(std::iter::repeat_n(fold_mean, fold.val.len()));
        ridge_val.extend(fold.val.iter().map(|&i| model.predict_row(parts.fit.row(i))));
    }
    (mean_val, ridge_val)
}

/// The interval and how often it held: on the validation rows (by construction close to its level) and
/// on the test rows (the honest number).
fn interval_report(head: &Head, val_pred: &[f64], val_y: &[f64], test: &Dataset) -> Result<serde_json::Value> {
    let cal = head.spec().calibration;
    let val_inside = val_pred
        .iter()
        .zip(val_y)
        .filter(|(p, y)| {
            let lo = (*p + cal.low).clamp(RATING_MIN, RATING_MAX);
            let hi = (*p + cal.high).clamp(RATING_MIN, RATING_MAX);
            lo <= **y && **y <= hi
        })
        .count();
    Ok(serde_json::json!({
        "level": cal.level,
        "low": cal.low,
        "high": cal.high,
        "from_validation_residuals": cal.residuals,
        "val_coverage": val_inside as f64 / val_y.len().max(1) as f64,
        "test_coverage": coverage(&head.predict(&test.x, test.dim)?, &test.y),
    }))
}

/// Run the whole training; writes `head.safetensors`, `head.json` and `train-report.json` into
/// `opts.out`.
pub fn train(opts: &TrainOptions) -> Result<TrainReport> {
    let started = Instant::now();
    let set = artifacts::load_embeddings(&opts.embeddings)?;
    let data = join(&set, &opts.ratings.load()?);
    tracing::info!("{} of {} embedded movies have a rating in {}", data.len(), set.ids.len(), opts.ratings.describe());
    let parts = split_rows(data, opts)?;
    let train = parts.fit.subset(&training_rows(&parts.folds, parts.fit.len()));

    let mean = fit_mean(&train);
    let ridge = fit_ridge_folds(&parts.fit, &parts.folds, &lambda_grid())?;
    tracing::info!("ridge: λ = {:.3e} chosen on validation", ridge.lambda);

    let (epochs, members) = (opts.head.mlp.epochs, opts.head.mlp.members * parts.folds.len());
    let bar = crate::progress::bar((epochs * members) as u64, "train", "epochs");
    let link = EmbeddingLink::of(&set.manifest);
    let fit = fit_head(&parts.fit, &parts.folds, &ridge, link, &opts.head, &mut progress(&bar, epochs, members))?;
    bar.finish_and_clear();
    for m in &fit.members {
        tracing::info!(
            "member {}: best validation MSE {:.4} at epoch {} of {} ({:.1}s)",
            m.member + 1,
            m.best_val_mse,
            m.best_epoch + 1,
            m.epochs_run,
            m.seconds
        );
    }
    let mut head = fit.head;

    // Validation: every model's prediction for a validation row comes from a fit that did not see it.
    let test = &parts.test;
    let val_y: Vec<f64> = fit.val_rows.iter().map(|&i| parts.fit.y[i]).collect();
    let (mean_val, ridge_val) = baseline_val_predictions(&parts, &ridge);
    let head_rating =
        |d: &Dataset| -> Result<Vec<f64>> { Ok(head.predict(&d.x, d.dim)?.iter().map(|p| p.rating).collect()) };
    let errors = |model: &str, train_pred: Vec<f64>, val_pred: &[f64], test_pred: Vec<f64>| ModelErrors {
        model: model.to_string(),
        train: Errors::of(&train_pred, &train.y),
        val: Errors::of(val_pred, &val_y),
        test: Errors::of(&test_pred, &test.y),
    };
    let models = vec![
        errors("mean", mean.predict(&train), &mean_val, mean.predict(test)),
        errors("ridge", ridge.model.predict(&train), &ridge_val, ridge.model.predict(test)),
        errors("head", head_rating(&train)?, &fit.val_pred, head_rating(test)?),
    ];
    let interval = interval_report(&head, &fit.val_pred, &val_y, test)?;

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
            "rated_rows": parts.fit.len() + test.len(),
            "unrated_rows": set.ids.len() - (parts.fit.len() + test.len()),
        }),
        split: serde_json::json!({
            "seed": opts.split_seed,
            "test_fraction": opts.test_fraction,
            "val_fraction": if parts.folds.len() > 1 { serde_json::Value::Null } else { opts.val_fraction.into() },
            "folds": parts.folds.len(),
            "train": train.len(),
            "val": val_y.len(),
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
