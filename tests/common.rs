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

/// The Node.js project of the browser test and the typed client check (`tests/browser`).
pub fn browser_dir() -> PathBuf {
    repo_root().join("tests/browser")
}

/// Node.js 20 or newer with `packages` installed in [`browser_dir`], or one sentence saying what to
/// install to run `what`.
pub fn node_ready(packages: &[&str], what: &str) {
    let version = std::process::Command::new("node").arg("--version").output();
    let version = match version {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => panic!("Node.js not found: install Node.js 20 or newer (with npm) to run {what}."),
    };
    let major: u32 = version.trim_start_matches('v').split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
    assert!(major >= 20, "Node.js {version} is too old: install Node.js 20 or newer to run {what}.");
    for package in packages {
        assert!(
            browser_dir().join("node_modules").join(package).join("package.json").is_file(),
            "{package} is missing for {what}: run `npm ci --prefix tests/browser` (scripts/test.sh does)."
        );
    }
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "vectors of different dimension");
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}
