//! Cosine distance between unit vectors, `1 - a·b`, clamped at 0: rounding can push the dot product
//! of a vector with itself a hair above 1, and a negative distance breaks the graph's invariants
//! (hnsw_rs's own dot distance asserts on it).

use hnsw_rs::prelude::Distance;

#[derive(Debug, Clone, Copy, Default)]
pub struct UnitCosine;

impl Distance<f32> for UnitCosine {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

/// Dot product, vectorised with AVX2/FMA where the CPU has it.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { dot_avx2(a, b) };
    }
    dot_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_portable(a, b)
}

/// Eight independent partial sums, so the compiler keeps eight lanes busy instead of one chain.
#[inline(always)]
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let chunks = n / 8;
    for i in 0..chunks {
        for j in 0..8 {
            acc[j] = a[i * 8 + j].mul_add(b[i * 8 + j], acc[j]);
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks * 8..n {
        sum += a[i] * b[i];
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_the_plain_sum() {
        let a: Vec<f32> = (0..389).map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5).collect();
        let b: Vec<f32> = (0..389).map(|i| ((i * 104729) % 89) as f32 / 89.0 - 0.5).collect();
        let plain: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        assert!((dot(&a, &b) as f64 - plain).abs() < 1e-4);
    }

    #[test]
    fn distance_to_itself_is_zero_not_negative() {
        let v = vec![0.6f32, 0.8, 0.0];
        assert_eq!(UnitCosine.eval(&v, &v), 0.0);
        let w = vec![1.0f32 + 1e-6, 0.0, 0.0];
        assert_eq!(UnitCosine.eval(&w, &w), 0.0);
    }
}
