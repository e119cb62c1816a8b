//! The baselines the head is measured against, on tiny datasets with a known answer.

use cinevec::head::data::{Dataset, Errors};
use cinevec::head::ridge::{cholesky_solve, fit_mean, fit_ridge, fit_ridge_with, lambda_grid};

fn dataset(rows: &[&[f32]], y: &[f64]) -> Dataset {
    Dataset {
        dim: rows[0].len(),
        ids: (0..rows.len()).map(|i| format!("m{i}")).collect(),
        x: rows.iter().flat_map(|r| r.iter().copied()).collect(),
        y: y.to_vec(),
    }
}

#[test]
fn the_mean_baseline_predicts_the_training_mean() {
    let train = dataset(&[&[0.0], &[1.0], &[2.0], &[3.0]], &[1.0, 2.0, 3.0, 6.0]);
    let test = dataset(&[&[9.0], &[-9.0]], &[3.0, 5.0]);
    let mean = fit_mean(&train);
    assert_eq!(mean.predict(&test), vec![3.0, 3.0]);
    let e = Errors::of(&mean.predict(&test), &test.y);
    assert!((e.mse - 2.0).abs() < 1e-12 && (e.mae - 1.0).abs() < 1e-12);
}

#[test]
fn ridge_matches_the_closed_form_in_one_dimension() {
    // Centred x = (−1.5, −0.5, 0.5, 1.5), Σx² = 5; centred y · x = 9.5; with λ = 1: w = 9.5 / 6.
    let train = dataset(&[&[1.0], &[2.0], &[3.0], &[4.0]], &[2.0, 4.0, 5.0, 8.0]);
    let model = fit_ridge_with(&train, 1.0).unwrap();
    let w = 9.5 / 6.0;
    assert!((model.weights[0] - w).abs() < 1e-12, "{:?}", model.weights);
    assert!((model.bias - (4.75 - 2.5 * w)).abs() < 1e-12, "{}", model.bias);
}

#[test]
fn ridge_without_regularisation_recovers_an_exact_linear_rule() {
    let rows: Vec<Vec<f32>> = (0..40)
        .map(|i| {
            let t = i as f32;
            vec![(t * 0.37).sin(), (t * 0.11).cos(), ((t * 1.3).sin() * 2.0)]
        })
        .collect();
    let y: Vec<f64> = rows.iter().map(|r| 2.0 + 3.0 * r[0] as f64 - r[1] as f64 + 0.5 * r[2] as f64).collect();
    let refs: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
    let model = fit_ridge_with(&dataset(&refs, &y), 1e-9).unwrap();
    for (got, want) in model.weights.iter().zip([3.0, -1.0, 0.5]) {
        assert!((got - want).abs() < 1e-5, "{:?}", model.weights);
    }
    assert!((model.bias - 2.0).abs() < 1e-5);
}

#[test]
fn ridge_keeps_the_lambda_with_the_lowest_validation_error() {
    // Few noisy rows in many dimensions: strong regularisation should win on validation.
    let make = |n: usize, off: usize| -> Dataset {
        let rows: Vec<Vec<f32>> =
            (0..n).map(|i| (0..20).map(|j| (((i + off) * 31 + j * 17) as f32 * 0.7).sin()).collect()).collect();
        let y: Vec<f64> =
            rows.iter().enumerate().map(|(i, r)| 5.0 + r[0] as f64 + (((i + off) * 7919) as f64).sin() * 1.5).collect();
        let refs: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
        dataset(&refs, &y)
    };
    let (train, val) = (make(25, 0), make(40, 1000));
    let ridge = fit_ridge(&train, &val, &lambda_grid()).unwrap();
    assert_eq!(ridge.path.len(), lambda_grid().len());
    let best = ridge.path.iter().copied().fold((0.0, f64::INFINITY), |b, p| if p.1 < b.1 { p } else { b });
    assert_eq!(ridge.lambda, best.0);
    let val_mse = Errors::of(&ridge.model.predict(&val), &val.y).mse;
    assert!((val_mse - best.1).abs() < 1e-12);
    assert!(ridge.lambda > lambda_grid()[0], "noise this strong should not pick the weakest λ");
}

#[test]
fn cholesky_solves_a_known_system() {
    // [[4, 2], [2, 3]] w = [2, 1]  →  w = (0.5, 0).
    let mut a = vec![4.0, 2.0, 2.0, 3.0];
    let w = cholesky_solve(&mut a, 2, &[2.0, 1.0]).unwrap();
    assert!((w[0] - 0.5).abs() < 1e-12 && w[1].abs() < 1e-12, "{w:?}");
    let mut singular = vec![1.0, 1.0, 1.0, 1.0];
    assert!(cholesky_solve(&mut singular, 2, &[1.0, 1.0]).is_err());
}
