//! The training data of a head: rows of an embedding matrix with their ratings, a seeded
//! train / validation / test split, a small seeded random number generator, and the error metrics.

pub use crate::rng::Rng;

/// Rows of an embedding matrix with a rating each.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub dim: usize,
    pub ids: Vec<String>,
    /// `[len, dim]` row-major.
    pub x: Vec<f32>,
    pub y: Vec<f64>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.x[i * self.dim..(i + 1) * self.dim]
    }

    /// The rows at `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let mut x = Vec::with_capacity(idx.len() * self.dim);
        for &i in idx {
            x.extend_from_slice(self.row(i));
        }
        Dataset {
            dim: self.dim,
            ids: idx.iter().map(|&i| self.ids[i].clone()).collect(),
            x,
            y: idx.iter().map(|&i| self.y[i]).collect(),
        }
    }
}

/// Row indices of the three parts of a split.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub test: Vec<usize>,
}

/// Split rows with a seeded shuffle: `test_fraction` of all rows for test, then `val_fraction` of the
/// rest for validation, the remainder for training. The shuffle runs over the rows ordered by id, so the
/// split depends on the set of movies and the seed, not on the order of the catalog file.
pub fn split(ids: &[String], test_fraction: f64, val_fraction: f64, seed: u64) -> Split {
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by(|&a, &b| ids[a].cmp(&ids[b]));
    Rng::new(seed).shuffle(&mut order);
    let n_test = ((ids.len() as f64) * test_fraction).round() as usize;
    let n_val = (((ids.len() - n_test) as f64) * val_fraction).round() as usize;
    let test = order[..n_test].to_vec();
    let val = order[n_test..n_test + n_val].to_vec();
    let train = order[n_test + n_val..].to_vec();
    Split { train, val, test }
}

/// One way of holding rows out: fit on `train`, validate on `val` (row indices into one dataset).
#[derive(Debug, Clone, PartialEq)]
pub struct Fold {
    pub train: Vec<usize>,
    pub val: Vec<usize>,
}

/// `k` folds over the rows of `ids` for cross-fitting: a seeded shuffle (over the rows ordered by id, like
/// [`split`]) deals the rows round-robin into `k` validation parts; each fold trains on the other parts.
pub fn k_folds(ids: &[String], k: usize, seed: u64) -> Vec<Fold> {
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by(|&a, &b| ids[a].cmp(&ids[b]));
    // Not the split's own stream: the folds must not line up with the test split.
    Rng::new(seed ^ 0xF01D_F01D_F01D_F01D).shuffle(&mut order);
    (0..k)
        .map(|f| {
            let (mut train, mut val) = (Vec::new(), Vec::new());
            for (pos, &row) in order.iter().enumerate() {
                if pos % k == f {
                    val.push(row)
                } else {
                    train.push(row)
                }
            }
            train.sort_unstable();
            val.sort_unstable();
            Fold { train, val }
        })
        .collect()
}

/// The classic split as folds: `train` and `val` concatenated into one dataset, with one fold that
/// trains on the first part and validates on the second.
pub fn one_split(train: &Dataset, val: &Dataset) -> (Dataset, Vec<Fold>) {
    let (n, m) = (train.len(), val.len());
    let mut data = train.clone();
    data.ids.extend(val.ids.iter().cloned());
    data.x.extend_from_slice(&val.x);
    data.y.extend_from_slice(&val.y);
    (data, vec![Fold { train: (0..n).collect(), val: (n..n + m).collect() }])
}

/// Rows that some fold trains on, in increasing order.
pub fn training_rows(folds: &[Fold], n: usize) -> Vec<usize> {
    let mut used = vec![false; n];
    for f in folds {
        for &i in &f.train {
            used[i] = true;
        }
    }
    (0..n).filter(|&i| used[i]).collect()
}

/// Mean squared and mean absolute error.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Errors {
    pub mse: f64,
    pub mae: f64,
}

impl Errors {
    pub fn of(pred: &[f64], y: &[f64]) -> Errors {
        assert_eq!(pred.len(), y.len(), "predictions and targets differ in length");
        let n = y.len().max(1) as f64;
        let (mut se, mut ae) = (0.0, 0.0);
        for (p, t) in pred.iter().zip(y) {
            se += (p - t) * (p - t);
            ae += (p - t).abs();
        }
        Errors { mse: se / n, mae: ae / n }
    }
}

pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The `q` quantile (0–1) of `v` by linear interpolation between order statistics (NumPy's default).
pub fn quantile(v: &[f64], q: f64) -> f64 {
    assert!(!v.is_empty(), "quantile of nothing");
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_sizes_and_disjointness() {
        let ids: Vec<String> = (0..1000).map(|i| format!("tt{i:07}")).collect();
        let s = split(&ids, 0.1, 0.1, 7);
        assert_eq!((s.test.len(), s.val.len(), s.train.len()), (100, 90, 810));
        let mut all: Vec<usize> = s.train.iter().chain(&s.val).chain(&s.test).copied().collect();
        all.sort();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn split_follows_the_seed_and_ignores_row_order() {
        let ids: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
        let a = split(&ids, 0.1, 0.1, 1);
        assert_eq!(a, split(&ids, 0.1, 0.1, 1));
        assert_ne!(a.test, split(&ids, 0.1, 0.1, 2).test);
        let reversed: Vec<String> = ids.iter().rev().cloned().collect();
        let b = split(&reversed, 0.1, 0.1, 1);
        let test_a: std::collections::BTreeSet<_> = a.test.iter().map(|&i| &ids[i]).collect();
        let test_b: std::collections::BTreeSet<_> = b.test.iter().map(|&i| &reversed[i]).collect();
        assert_eq!(test_a, test_b);
    }

    #[test]
    fn the_test_rows_do_not_depend_on_the_validation_fraction() {
        let ids: Vec<String> = (0..500).map(|i| format!("m{i}")).collect();
        assert_eq!(split(&ids, 0.1, 0.0, 9).test, split(&ids, 0.1, 0.25, 9).test);
    }

    #[test]
    fn k_folds_partition_the_rows() {
        let ids: Vec<String> = (0..103).map(|i| format!("m{i}")).collect();
        let folds = k_folds(&ids, 5, 3);
        assert_eq!(folds.len(), 5);
        let mut vals: Vec<usize> = folds.iter().flat_map(|f| f.val.clone()).collect();
        vals.sort();
        assert_eq!(vals, (0..103).collect::<Vec<_>>());
        for f in &folds {
            assert!(f.val.len() == 20 || f.val.len() == 21);
            assert_eq!(f.train.len() + f.val.len(), 103);
            assert!(f.train.iter().all(|i| !f.val.contains(i)));
        }
        assert_eq!(training_rows(&folds, 103).len(), 103);
    }

    #[test]
    fn quantiles_interpolate() {
        let v = [4.0, 1.0, 3.0, 2.0, 5.0];
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert!((quantile(&v, 0.1) - 1.4).abs() < 1e-12);
        assert_eq!(quantile(&v, 1.0), 5.0);
    }

    #[test]
    fn errors_of_known_predictions() {
        let e = Errors::of(&[1.0, 2.0, 5.0], &[2.0, 2.0, 2.0]);
        assert!((e.mse - 10.0 / 3.0).abs() < 1e-12);
        assert!((e.mae - 4.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn uniforms_stay_in_range() {
        let mut rng = Rng::new(3);
        for _ in 0..10_000 {
            let u = rng.next_f32();
            assert!((0.0..1.0).contains(&u));
            assert!(rng.below(7) < 7);
        }
    }
}
