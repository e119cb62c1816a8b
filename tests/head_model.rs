//! The rating head as a model: it learns, evaluates deterministically, survives save → load, clamps
//! to the rating scale, and refuses embeddings it was not trained on.

mod head_support;

use candle_core::{Device, Tensor};
use cinevec::head::data::{mean, one_split, Dataset, Errors, Rng};
use cinevec::head::fit::{fit_head, FitOutcome, HeadTraining};
use cinevec::head::mlp::{Mlp, MlpConfig};
use cinevec::head::ridge::{fit_ridge, lambda_grid};
use cinevec::head::train::EpochLog;
use cinevec::head::{EmbeddingLink, Head, TargetKind};
use head_support::{manifest, small_training, synthetic};

fn fit(
    train: &Dataset,
    val: &Dataset,
    cfg: &HeadTraining,
    m: &cinevec::artifacts::Manifest,
) -> (FitOutcome, Vec<EpochLog>) {
    let ridge = fit_ridge(train, val, &lambda_grid()).unwrap();
    let (data, folds) = one_split(train, val);
    let mut logs = Vec::new();
    let out = fit_head(&data, &folds, &ridge, EmbeddingLink::of(m), cfg, &mut |l| logs.push(*l)).unwrap();
    (out, logs)
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn the_loss_falls_on_a_learnable_problem() {
    let (train, val) = (synthetic(800, 8, 1), synthetic(200, 8, 2));
    let (out, logs) = fit(&train, &val, &small_training(60), &manifest(1000, 8));
    assert_eq!(logs.len(), 60);
    let (first, last) = (logs[0], logs[logs.len() - 1]);
    assert!(last.train_mse < 0.3 * first.train_mse, "training loss {} → {}", first.train_mse, last.train_mse);
    assert!(last.val_mse < 0.3 * first.val_mse, "validation loss {} → {}", first.val_mse, last.val_mse);

    // It learned the interaction a linear model cannot express.
    let mean_mse = Errors::of(&vec![mean(&train.y); val.len()], &val.y).mse;
    let ridge = fit_ridge(&train, &val, &lambda_grid()).unwrap();
    let ridge_mse = Errors::of(&ridge.model.predict(&val), &val.y).mse;
    let pred: Vec<f64> = out.head.predict(&val.x, 8).unwrap().iter().map(|p| p.rating).collect();
    let head_mse = Errors::of(&pred, &val.y).mse;
    assert!(head_mse < 0.5 * ridge_mse && ridge_mse < mean_mse, "head {head_mse}, ridge {ridge_mse}, mean {mean_mse}");
    // The best epoch is the one kept.
    let best = logs.iter().map(|l| l.val_mse).fold(f64::INFINITY, f64::min);
    assert!((out.members[0].best_val_mse - best).abs() < 1e-9);
    assert!((head_mse - best).abs() < 1e-3, "kept weights give {head_mse}, best epoch had {best}");
}

#[test]
fn evaluation_is_deterministic_and_uses_running_statistics() {
    let config = MlpConfig { input_dim: 6, hidden: vec![16, 16], dropout: 0.5, input_dropout: 0.1 };
    let mlp = Mlp::init(&config, &mut Rng::new(1), &Device::Cpu).unwrap();
    let data = synthetic(64, 6, 3);
    let x = Tensor::from_slice(&data.x, (64, 6), &Device::Cpu).unwrap();
    // A few training-mode passes move the running statistics away from (0, 1).
    let mut rng = Rng::new(2);
    let a = mlp.forward(&x, Some(&mut rng)).unwrap().to_vec1::<f32>().unwrap();
    let b = mlp.forward(&x, Some(&mut rng)).unwrap().to_vec1::<f32>().unwrap();
    assert_ne!(a, b, "training mode should be stochastic (dropout)");

    let e1 = mlp.forward(&x, None).unwrap().to_vec1::<f32>().unwrap();
    let e2 = mlp.forward(&x, None).unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(e1, e2, "evaluation mode must be a pure function of the weights");
    // Running statistics, not batch statistics: a row gives the same output alone as in a batch.
    for i in [0usize, 17, 63] {
        let row = x.narrow(0, i, 1).unwrap();
        let alone = mlp.forward(&row, None).unwrap().to_vec1::<f32>().unwrap()[0];
        assert!((alone - e1[i]).abs() < 1e-5, "row {i}: alone {alone}, in batch {}", e1[i]);
    }
    // ... and the training passes did update them (else evaluation would match a fresh network).
    let fresh = Mlp::init(&config, &mut Rng::new(1), &Device::Cpu).unwrap();
    let f = fresh.forward(&x, None).unwrap().to_vec1::<f32>().unwrap();
    assert!(f.iter().zip(&e1).any(|(p, q)| (p - q).abs() > 1e-4), "running statistics were not updated");
}

#[test]
fn a_seed_reproduces_a_training_run() {
    let (train, val) = (synthetic(300, 5, 4), synthetic(60, 5, 5));
    let m = manifest(360, 5);
    let mut cfg = small_training(8);
    cfg.mlp.dropout = 0.3;
    let (a, _) = fit(&train, &val, &cfg, &m);
    let (b, _) = fit(&train, &val, &cfg, &m);
    let pa: Vec<f64> = a.head.predict(&val.x, 5).unwrap().iter().map(|p| p.rating).collect();
    let pb: Vec<f64> = b.head.predict(&val.x, 5).unwrap().iter().map(|p| p.rating).collect();
    assert_eq!(pa, pb);
    cfg.seed += 1;
    let (c, _) = fit(&train, &val, &cfg, &m);
    let pc: Vec<f64> = c.head.predict(&val.x, 5).unwrap().iter().map(|p| p.rating).collect();
    assert!(max_abs_diff(&pa, &pc) > 1e-4, "another seed should give another network");
}

#[test]
fn save_then_load_gives_identical_predictions() {
    let (train, val) = (synthetic(400, 8, 6), synthetic(100, 8, 7));
    let m = manifest(500, 8);
    let mut cfg = small_training(15);
    cfg.mlp.members = 2;
    cfg.mlp.dropout = 0.2;
    cfg.target = TargetKind::RidgeResidual;
    cfg.blend = cinevec::head::fit::Blend::Auto;
    let (mut out, _) = fit(&train, &val, &cfg, &m);
    let before = out.head.predict(&val.x, 8).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    out.head.save(tmp.path()).unwrap();

    let loaded = Head::load(tmp.path(), &m).unwrap();
    assert_eq!(loaded.spec(), out.head.spec());
    let after = loaded.predict(&val.x, 8).unwrap();
    for (b, a) in before.iter().zip(&after) {
        assert!((b.rating - a.rating).abs() < 1e-6 && (b.low - a.low).abs() < 1e-6 && (b.high - a.high).abs() < 1e-6);
    }
    // The file really carries trained running statistics (not the initial 0 and 1).
    let tensors = candle_core::safetensors::load(tmp.path().join("head.safetensors"), &Device::Cpu).unwrap();
    let var = tensors["members.1.blocks.0.norm.running_var"].to_vec1::<f32>().unwrap();
    let mean = tensors["members.1.blocks.0.norm.running_mean"].to_vec1::<f32>().unwrap();
    assert!(var.iter().any(|v| (v - 1.0).abs() > 1e-3) && mean.iter().any(|v| v.abs() > 1e-3));
    assert_eq!(out.head.spec().calibration.residuals, 100);
}

#[test]
fn a_head_refuses_embeddings_it_was_not_trained_on() {
    let (train, val) = (synthetic(200, 4, 8), synthetic(40, 4, 9));
    let m = manifest(240, 4);
    let (mut out, _) = fit(&train, &val, &small_training(3), &m);
    let tmp = tempfile::tempdir().unwrap();
    out.head.save(tmp.path()).unwrap();
    assert!(Head::load(tmp.path(), &m).is_ok());

    let mut other_dim = m.clone();
    other_dim.dim = 8;
    let err = Head::load(tmp.path(), &other_dim).unwrap_err().to_string();
    assert!(err.contains("4-dimensional") && err.contains("dimension 8"), "{err}");

    let mut other_model = m.clone();
    other_model.model.weights_sha256 = "ff".into();
    let err = Head::load(tmp.path(), &other_model).unwrap_err().to_string();
    assert!(err.contains("another model"), "{err}");

    let mut other_run = m.clone();
    other_run.run_id = cinevec::artifacts::new_run_id();
    let err = Head::load(tmp.path(), &other_run).unwrap_err().to_string();
    assert!(err.contains("embedding run") && err.contains("cinevec train"), "{err}");

    let head = Head::load(tmp.path(), &m).unwrap();
    let err = head.predict(&[0.0; 8], 8).unwrap_err().to_string();
    assert!(err.contains("expects 4-dimensional"), "{err}");
    assert!(head.predict(&[0.0; 6], 4).is_err(), "6 values are not whole rows of 4");
}

#[test]
fn weights_from_another_training_run_are_refused() {
    let (train, val) = (synthetic(200, 4, 10), synthetic(40, 4, 11));
    let m = manifest(240, 4);
    let (mut a, _) = fit(&train, &val, &small_training(2), &m);
    let mut cfg = small_training(2);
    cfg.seed = 99;
    let (mut b, _) = fit(&train, &val, &cfg, &m);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    a.head.save(da.path()).unwrap();
    b.head.save(db.path()).unwrap();
    std::fs::copy(db.path().join("head.safetensors"), da.path().join("head.safetensors")).unwrap();
    let err = Head::load(da.path(), &m).unwrap_err().to_string();
    assert!(err.contains("does not match"), "{err}");
}

#[test]
fn ratings_and_intervals_stay_on_the_rating_scale() {
    // Targets near the top of the scale; inputs far outside the training range push predictions past it.
    let mut train = synthetic(300, 4, 12);
    train.y.iter_mut().for_each(|y| *y = (*y + 4.0).min(10.0));
    let mut val = synthetic(60, 4, 13);
    val.y.iter_mut().for_each(|y| *y = (*y + 4.0).min(10.0));
    let mut cfg = small_training(10);
    cfg.blend = cinevec::head::fit::Blend::Fixed(1.0);
    let (out, _) = fit(&train, &val, &cfg, &manifest(360, 4));
    let far: Vec<f32> = [40.0, 40.0, 40.0, 40.0, -40.0, -40.0, -40.0, -40.0].to_vec();
    let raw = out.head.components(&far, 4).unwrap().0;
    assert!(raw.iter().any(|r| *r > 10.0) && raw.iter().any(|r| *r < 1.0), "fixture should leave the scale: {raw:?}");
    for p in out.head.predict(&far, 4).unwrap() {
        for v in [p.rating, p.low, p.high] {
            assert!((1.0..=10.0).contains(&v), "{p:?}");
        }
        assert!(p.low <= p.rating && p.rating <= p.high, "{p:?}");
    }
}

#[test]
fn a_head_can_be_shared_between_request_threads() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Head>();
    let (train, val) = (synthetic(200, 4, 14), synthetic(40, 4, 15));
    let (out, _) = fit(&train, &val, &small_training(2), &manifest(240, 4));
    let head = std::sync::Arc::new(out.head);
    let expected = head.predict(&val.x, 4).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (head, x) = (head.clone(), val.x.clone());
            std::thread::spawn(move || head.predict(&x, 4).unwrap())
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), expected);
    }
}
