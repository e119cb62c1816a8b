//! Recommendations from example movies: the query a strategy makes of the liked (and disliked)
//! examples, and the ranking it runs.

use super::live::{Filter, LiveCatalog};
use super::ServiceError;
use crate::index::{dot, Hit, VectorIndex};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Positives' mean minus negatives' mean, then a nearest-neighbour search.
    #[default]
    Average,
    /// A linear classifier fitted on the examples ranks the whole catalogue.
    Linear,
}

/// Most example movies per list in a recommendation request.
pub const MAX_EXAMPLES: usize = 100;

/// The rows of example ids (at most [`MAX_EXAMPLES`]); `field` names the list in errors.
pub fn example_rows(catalog: &LiveCatalog, ids: &[String], field: &str) -> Result<Vec<usize>, ServiceError> {
    if ids.len() > MAX_EXAMPLES {
        return Err(ServiceError::invalid(field, format!("at most {MAX_EXAMPLES} {field} examples")));
    }
    ids.iter().map(|id| catalog.row_of(id).ok_or_else(|| ServiceError::no_movie(id))).collect()
}

/// The `k` best live movies for the examples `pos` (liked) and `neg` (disliked), never an example.
#[allow(clippy::too_many_arguments)]
pub fn rank(
    catalog: &LiveCatalog,
    index: &VectorIndex,
    strategy: Strategy,
    pos: &[usize],
    neg: &[usize],
    k: usize,
    filter: &Filter,
    exact: bool,
) -> Result<Vec<Hit>, ServiceError> {
    let exclude: Vec<usize> = pos.iter().chain(neg).copied().collect();
    match strategy {
        Strategy::Average => {
            if pos.is_empty() {
                return Err(ServiceError::invalid(
                    "positive",
                    "the average strategy needs at least one positive example",
                ));
            }
            let mut q = mean_of(catalog, pos);
            if !neg.is_empty() {
                let n = mean_of(catalog, neg);
                q.iter_mut().zip(&n).for_each(|(a, b)| *a -= b);
            }
            let norm = q.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm < 1e-6 {
                return Err(ServiceError::invalid("negative", "the positive and negative examples cancel out"));
            }
            q.iter_mut().for_each(|x| *x /= norm);
            Ok(catalog.nearest(index, &q, None, k, filter, &exclude, exact))
        }
        Strategy::Linear => {
            if pos.is_empty() || neg.is_empty() {
                return Err(ServiceError::invalid(
                    if pos.is_empty() { "positive" } else { "negative" },
                    "the linear strategy needs at least one positive and one negative example",
                ));
            }
            let w = fit_linear(catalog, pos, neg)?;
            Ok(catalog.rank_by(k, filter, &exclude, |v| dot(&w, v)))
        }
    }
}

/// Linear classifier on the examples: ridge regression of ±1 labels in its dual form (the examples are
/// few, the dimension is not), `w = Xᵀ (X Xᵀ + λI)⁻¹ y`, solved with the rating head's Cholesky
/// solver (`X Xᵀ + λI` with λ > 0 is positive definite). Returns `w`.
fn fit_linear(catalog: &LiveCatalog, pos: &[usize], neg: &[usize]) -> Result<Vec<f32>, ServiceError> {
    let rows: Vec<usize> = pos.iter().chain(neg).copied().collect();
    let labels: Vec<f64> = pos.iter().map(|_| 1.0).chain(neg.iter().map(|_| -1.0)).collect();
    let n = rows.len();
    let lambda = 0.1;
    let mut gram = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            gram[i * n + j] =
                dot(catalog.vector(rows[i]), catalog.vector(rows[j])) as f64 + if i == j { lambda } else { 0.0 };
        }
    }
    let alpha = crate::head::ridge::cholesky_solve(&mut gram, n, &labels).map_err(ServiceError::internal)?;
    let mut w = vec![0f32; catalog.dim()];
    for (a, &r) in alpha.iter().zip(&rows) {
        for (wi, xi) in w.iter_mut().zip(catalog.vector(r)) {
            *wi += (*a as f32) * xi;
        }
    }
    Ok(w)
}

fn mean_of(catalog: &LiveCatalog, rows: &[usize]) -> Vec<f32> {
    let mut m = vec![0f32; catalog.dim()];
    for &r in rows {
        for (mi, xi) in m.iter_mut().zip(catalog.vector(r)) {
            *mi += xi / rows.len() as f32;
        }
    }
    m
}
