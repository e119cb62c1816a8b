//! Every SHA-256 cinevec takes, in one place: of bytes, of a file, and of a model's weights (trusting
//! the hash recorded beside a fetched model while the file's size and modification time still match).

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::path::Path;

/// Written beside a fetched model (by `crate::models`): where it came from and its weights' hash.
pub const MODEL_SOURCE_FILE: &str = "cinevec-source.json";

/// SHA-256 of some bytes.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(bytes).into()
}

/// SHA-256 of some bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha256(bytes))
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// A file's size and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    pub bytes: u64,
    pub modified_ns: u64,
}

impl FileStamp {
    pub fn of(path: &Path) -> Result<FileStamp> {
        let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        let modified = meta.modified()?.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Ok(FileStamp { bytes: meta.len(), modified_ns: u64::try_from(modified.as_nanos()).unwrap_or(u64::MAX) })
    }
}

/// The part of a model's source record the weights hash needs.
#[derive(Deserialize)]
struct Recorded {
    weights_sha256: String,
    #[serde(default)]
    weights_file: Option<FileStamp>,
}

/// sha256 of a model folder's `model.safetensors`: the one its source record (`cinevec model fetch`)
/// gives while the file's size and modification time are those recorded with it, else hashed now.
pub fn model_weights_sha256(dir: &Path) -> Result<String> {
    let weights = dir.join("model.safetensors");
    let recorded = || -> Option<String> {
        let record: Recorded = serde_json::from_slice(&std::fs::read(dir.join(MODEL_SOURCE_FILE)).ok()?).ok()?;
        let valid = record.weights_sha256.len() == 64 && record.weights_sha256.bytes().all(|b| b.is_ascii_hexdigit());
        (valid && record.weights_file? == FileStamp::of(&weights).ok()?).then_some(record.weights_sha256)
    };
    match recorded() {
        Some(sha) => Ok(sha),
        None => sha256_file(&weights),
    }
}
