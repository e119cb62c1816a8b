//! The two baselines: the training mean, and ridge regression in closed form with its regularisation
//! chosen on validation.

use super::data::{mean, one_split, training_rows, Dataset, Errors, Fold};
use anyhow::{bail, Result};
use rayon::prelude::*;

/// A linear model `rating = bias + w · x`.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    pub weights: Vec<f64>,
    pub bias: f64,
}

impl Linear {
    /// The mean baseline: no weights at all.
    pub fn constant(dim: usize, value: f64) -> Linear {
        Linear { weights: vec![0.0; dim], bias: value }
    }

    pub fn predict_row(&self, x: &[f32]) -> f64 {
        self.bias + self.weights.iter().zip(x).map(|(w, &x)| w * x as f64).sum::<f64>()
    }

    pub fn predict(&self, data: &Dataset) -> Vec<f64> {
        (0..data.len()).into_par_iter().map(|i| self.predict_row(data.row(i))).collect()
    }
}

/// The mean baseline: always predict the training mean.
pub fn fit_mean(train: &Dataset) -> Linear {
    Linear::constant(train.dim, mean(&train.y))
}

/// The centred normal equations of a training set: `XcᵀXc` and `Xcᵀ(y − ȳ)`, in f64.
struct Normal {
    dim: usize,
    gram: Vec<f64>,
    xty: Vec<f64>,
    x_mean: Vec<f64>,
    y_mean: f64,
}

impl Normal {
    fn of(train: &Dataset) -> Normal {
        let (n, d) = (train.len(), train.dim);
        let mut x_mean = vec![0.0; d];
        for i in 0..n {
            for (m, &x) in x_mean.iter_mut().zip(train.row(i)) {
                *m += x as f64;
            }
        }
        x_mean.iter_mut().for_each(|m| *m /= n as f64);
        let y_mean = mean(&train.y);
        // Column-major centred copy, so each Gram entry is one contiguous dot product.
        let mut cols = vec![0.0f64; d * n];
        for i in 0..n {
            for (j, &x) in train.row(i).iter().enumerate() {
                cols[j * n + i] = x as f64 - x_mean[j];
            }
        }
        let yc: Vec<f64> = train.y.iter().map(|y| y - y_mean).collect();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
        let upper: Vec<Vec<f64>> = (0..d)
            .into_par_iter()
            .map(|j| (j..d).map(|k| dot(&cols[j * n..(j + 1) * n], &cols[k * n..(k + 1) * n])).collect())
            .collect();
        let mut gram = vec![0.0; d * d];
        for (j, row) in upper.iter().enumerate() {
            for (off, &v) in row.iter().enumerate() {
                gram[j * d + j + off] = v;
                gram[(j + off) * d + j] = v;
            }
        }
        let xty = (0..d).map(|j| dot(&cols[j * n..(j + 1) * n], &yc)).collect();
        Normal { dim: d, gram, xty, x_mean, y_mean }
    }

    fn solve(&self, lambda: f64) -> Result<Linear> {
        let d = self.dim;
        let mut a = self.gram.clone();
        for j in 0..d {
            a[j * d + j] += lambda;
        }
        let w = cholesky_solve(&mut a, d, &self.xty)?;
        let bias = self.y_mean - w.iter().zip(&self.x_mean).map(|(w, m)| w * m).sum::<f64>();
        Ok(Linear { weights: w, bias })
    }
}

/// Solve `A w = b` for a symmetric positive definite `A` (`d × d`, row-major, overwritten by its
/// Cholesky factor).
pub fn cholesky_solve(a: &mut [f64], d: usize, b: &[f64]) -> Result<Vec<f64>> {
    for j in 0..d {
        let mut diag = a[j * d + j];
        for k in 0..j {
            diag -= a[j * d + k] * a[j * d + k];
        }
        if diag <= 0.0 || !diag.is_finite() {
            bail!("matrix is not positive definite (pivot {j})");
        }
        let diag = diag.sqrt();
        a[j * d + j] = diag;
        for i in j + 1..d {
            let mut s = a[i * d + j];
            for k in 0..j {
                s -= a[i * d + k] * a[j * d + k];
            }
            a[i * d + j] = s / diag;
        }
    }
    // L z = b, then Lᵀ w = z.
    let mut z = b.to_vec();
    for i in 0..d {
        for k in 0..i {
            z[i] -= a[i * d + k] * z[k];
        }
        z[i] /= a[i * d + i];
    }
    for i in (0..d).rev() {
        for k in i + 1..d {
            z[i] -= a[k * d + i] * z[k];
        }
        z[i] /= a[i * d + i];
    }
    Ok(z)
}

/// A fitted ridge model and how it was chosen.
#[derive(Debug, Clone)]
pub struct Ridge {
    /// Fitted on every training row of every fold with the chosen λ: the model that is used.
    pub model: Linear,
    pub lambda: f64,
    /// Validation MSE (pooled over folds) of every λ tried, in grid order.
    pub path: Vec<(f64, f64)>,
    /// One model per fold, fitted on that fold's training rows with the chosen λ.
    pub fold_models: Vec<Linear>,
}

/// The λ grid: 10^(k/4) for k from −12 to 20 (1e-3 to 1e5).
pub fn lambda_grid() -> Vec<f64> {
    (-12..=20).map(|k| 10f64.powf(k as f64 / 4.0)).collect()
}

/// Fit ridge regression on `train` for every λ of `grid` and keep the one with the lowest validation MSE.
pub fn fit_ridge(train: &Dataset, val: &Dataset, grid: &[f64]) -> Result<Ridge> {
    let (data, folds) = one_split(train, val);
    fit_ridge_folds(&data, &folds, grid)
}

/// Choose λ by the validation MSE pooled over `folds` (rows of `data`), then fit the final model on
/// every row some fold trains on.
pub fn fit_ridge_folds(data: &Dataset, folds: &[Fold], grid: &[f64]) -> Result<Ridge> {
    if grid.is_empty() || folds.is_empty() || folds.iter().any(|f| f.train.len() < 2 || f.val.is_empty()) {
        bail!("ridge needs a λ grid and folds with at least two training rows and one validation row");
    }
    let normals: Vec<(Normal, Dataset)> =
        folds.iter().map(|f| (Normal::of(&data.subset(&f.train)), data.subset(&f.val))).collect();
    let n_val: usize = folds.iter().map(|f| f.val.len()).sum();
    let path = grid
        .par_iter()
        .map(|&lambda| {
            let mut se = 0.0;
            for (normal, val) in &normals {
                se += Errors::of(&normal.solve(lambda)?.predict(val), &val.y).mse * val.len() as f64;
            }
            Ok((lambda, se / n_val as f64))
        })
        .collect::<Result<Vec<(f64, f64)>>>()?;
    // The first of equals wins: ties go to the weaker regularisation, as in a sequential scan.
    let (lambda, _) = path.iter().copied().fold((grid[0], f64::INFINITY), |b, p| if p.1 < b.1 { p } else { b });
    let fold_models = normals.iter().map(|(n, _)| n.solve(lambda)).collect::<Result<Vec<_>>>()?;
    let model = if folds.len() == 1 {
        fold_models[0].clone()
    } else {
        Normal::of(&data.subset(&training_rows(folds, data.len()))).solve(lambda)?
    };
    Ok(Ridge { model, lambda, path, fold_models })
}

/// Ridge with one fixed λ (for tests and for callers that already know it).
pub fn fit_ridge_with(train: &Dataset, lambda: f64) -> Result<Linear> {
    Normal::of(train).solve(lambda)
}
