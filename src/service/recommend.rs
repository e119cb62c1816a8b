//! Recommendations from example movies (catalog ids or posted documents): the query a strategy makes
//! of the liked (and disliked) examples, and the ranking it runs.

use super::live::{Filter, LiveCatalog};
use super::query::Controls;
use super::ServiceError;
use crate::index::{dot, Hit, VectorIndex};
use crate::movie::MovieDoc;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
/// Most posted documents among the examples of one list (each is embedded by the model).
pub const MAX_EXAMPLE_DOCUMENTS: usize = 10;

/// One list of examples as given: ids, and movie documents (embedded by the caller).
#[derive(Debug, Default)]
pub struct Examples {
    pub ids: Vec<String>,
    pub documents: Vec<MovieDoc>,
    /// Whether the list starts with a document (the anchor of "why").
    first_document: bool,
}

impl Examples {
    /// At most [`MAX_EXAMPLES`] examples, each an id (a string) or a movie document (an object), at
    /// most [`MAX_EXAMPLE_DOCUMENTS`] of them documents; `field` names the list in errors.
    pub fn parse(values: Vec<Value>, field: &str) -> Result<Examples, ServiceError> {
        if values.len() > MAX_EXAMPLES {
            return Err(ServiceError::invalid(field, format!("at most {MAX_EXAMPLES} {field} examples")));
        }
        let mut examples =
            Examples { first_document: values.first().is_some_and(Value::is_object), ..Default::default() };
        for (i, v) in values.into_iter().enumerate() {
            match v {
                Value::String(id) => examples.ids.push(id),
                Value::Object(_) => {
                    let doc = MovieDoc::from_value(v).map_err(|e| ServiceError::Invalid {
                        field: Some(format!("{field}[{i}]")),
                        message: format!("{field}[{i}]: {e}"),
                    })?;
                    examples.documents.push(doc);
                }
                _ => {
                    return Err(ServiceError::invalid(
                        field,
                        format!("{field}[{i}] must be a movie id (a string) or a movie document (an object)"),
                    ))
                }
            }
        }
        if examples.documents.len() > MAX_EXAMPLE_DOCUMENTS {
            return Err(ServiceError::invalid(
                field,
                format!("at most {MAX_EXAMPLE_DOCUMENTS} {field} examples may be documents"),
            ));
        }
        Ok(examples)
    }

    pub fn first_is_document(&self) -> bool {
        self.first_document
    }

    /// The rows of the ids the catalog holds (each once), and the ids it does not.
    pub fn rows(&self, catalog: &LiveCatalog) -> (Vec<usize>, Vec<String>) {
        let (mut rows, mut ignored) = (Vec::new(), Vec::new());
        for id in &self.ids {
            match catalog.row_of(id) {
                Some(row) if !rows.contains(&row) => rows.push(row),
                Some(_) => {}
                None => ignored.push(id.clone()),
            }
        }
        (rows, ignored)
    }
}

/// One side's examples: catalog rows and vectors of posted documents.
#[derive(Debug, Clone, Copy)]
pub struct Side<'a> {
    pub rows: &'a [usize],
    pub vectors: &'a [Vec<f32>],
}

impl<'a> Side<'a> {
    fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.vectors.is_empty()
    }

    fn all(&self, catalog: &'a LiveCatalog) -> Vec<&'a [f32]> {
        self.rows.iter().map(|&r| catalog.vector(r)).chain(self.vectors.iter().map(Vec::as_slice)).collect()
    }
}

/// What a recommendation ranks by, besides its examples.
pub struct Ranking<'a> {
    pub strategy: Strategy,
    pub k: usize,
    pub filter: &'a Filter,
    /// Rows never returned (sorted): the examples and the request's `exclude`.
    pub exclude: &'a [usize],
    pub exact: bool,
    pub controls: &'a Controls,
}

/// The `k` best live movies for the examples `pos` (liked) and `neg` (disliked), never an example,
/// shaped by the controls.
pub fn rank(
    catalog: &LiveCatalog,
    index: &VectorIndex,
    how: &Ranking,
    pos: Side,
    neg: Side,
) -> Result<Vec<Hit>, ServiceError> {
    match how.strategy {
        Strategy::Average => {
            if pos.is_empty() {
                return Err(ServiceError::invalid(
                    "positive",
                    "the average strategy needs at least one positive example the catalog holds (or a document)",
                ));
            }
            let mut q = mean_of(catalog.dim(), &pos.all(catalog));
            if !neg.is_empty() {
                let n = mean_of(catalog.dim(), &neg.all(catalog));
                q.iter_mut().zip(&n).for_each(|(a, b)| *a -= b);
            }
            let norm = q.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm < 1e-6 {
                return Err(ServiceError::invalid("negative", "the positive and negative examples cancel out"));
            }
            q.iter_mut().for_each(|x| *x /= norm);
            Ok(catalog.search(index, &q, None, how.k, how.filter, how.exclude, how.exact, how.controls))
        }
        Strategy::Linear => {
            if pos.is_empty() || neg.is_empty() {
                return Err(ServiceError::invalid(
                    if pos.is_empty() { "positive" } else { "negative" },
                    "the linear strategy needs at least one positive and one negative example the catalog holds (or a document)",
                ));
            }
            let w = fit_linear(catalog.dim(), &pos.all(catalog), &neg.all(catalog))?;
            let hits = catalog.rank_by(how.controls.wanted(how.k), how.filter, how.exclude, |v| dot(&w, v));
            Ok(catalog.page(hits, how.k, how.controls))
        }
    }
}

/// Linear classifier on the examples: ridge regression of ±1 labels in its dual form (the examples are
/// few, the dimension is not), `w = Xᵀ (X Xᵀ + λI)⁻¹ y`, solved with the rating head's Cholesky
/// solver (`X Xᵀ + λI` with λ > 0 is positive definite). Returns `w`.
fn fit_linear(dim: usize, pos: &[&[f32]], neg: &[&[f32]]) -> Result<Vec<f32>, ServiceError> {
    let rows: Vec<&[f32]> = pos.iter().chain(neg).copied().collect();
    let labels: Vec<f64> = pos.iter().map(|_| 1.0).chain(neg.iter().map(|_| -1.0)).collect();
    let n = rows.len();
    let lambda = 0.1;
    let mut gram = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            gram[i * n + j] = dot(rows[i], rows[j]) as f64 + if i == j { lambda } else { 0.0 };
        }
    }
    let alpha = crate::head::ridge::cholesky_solve(&mut gram, n, &labels).map_err(ServiceError::internal)?;
    let mut w = vec![0f32; dim];
    for (a, r) in alpha.iter().zip(&rows) {
        for (wi, xi) in w.iter_mut().zip(r.iter()) {
            *wi += (*a as f32) * xi;
        }
    }
    Ok(w)
}

fn mean_of(dim: usize, vectors: &[&[f32]]) -> Vec<f32> {
    let mut m = vec![0f32; dim];
    for v in vectors {
        for (mi, xi) in m.iter_mut().zip(v.iter()) {
            *mi += xi / vectors.len() as f32;
        }
    }
    m
}
