//! Shared helpers for the integration tests: where the downloaded model and `../shared` live.
#![allow(dead_code)]

use std::path::PathBuf;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared` beside the repository (or `CINEVEC_SHARED`).
pub fn shared() -> PathBuf {
    let dir = std::env::var_os("CINEVEC_SHARED").map(PathBuf::from).unwrap_or_else(|| repo_root().join("../shared"));
    assert!(dir.is_dir(), "{} not found: these tests need the shared data folder beside the repository", dir.display());
    dir
}

/// The default model folder, fetched by `cinevec model fetch` (scripts/test.sh does it first).
pub fn minilm_dir() -> PathBuf {
    fetched_model("all-MiniLM-L6-v2", "cinevec model fetch")
}

/// all-mpnet-base-v2's folder, fetched by `cinevec model fetch mpnet` (scripts/test.sh does it first).
pub fn mpnet_dir() -> PathBuf {
    fetched_model("all-mpnet-base-v2", "cinevec model fetch mpnet")
}

fn fetched_model(folder: &str, fetch: &str) -> PathBuf {
    let models =
        std::env::var_os("CINEVEC_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("models"));
    let dir = models.join(folder);
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} has no model: run `{fetch}` (scripts/test.sh does) before these tests",
        dir.display()
    );
    dir
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "vectors of different dimension");
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}
