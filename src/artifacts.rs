//! On-disk artifacts of the pipeline and the rules that keep them trustworthy.
//!
//! An embedding set is three files in one folder: `embeddings.safetensors` (`[N, D]` f32, tensor
//! `embeddings`), `embeddings.ids.json` (row → movie id) and `embeddings.manifest.json`. Each is written
//! to a temporary name, flushed and renamed, and all three carry the same `run_id`: an interrupted run can
//! leave a new matrix beside an old manifest, but such a mix is refused at load, never used.

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The catalog export the embedding set is made from, inside the artifacts folder (`cinevec build`).
pub const CATALOG_FILE: &str = "catalog.jsonl";
pub const MATRIX_FILE: &str = "embeddings.safetensors";
pub const IDS_FILE: &str = "embeddings.ids.json";
pub const MANIFEST_FILE: &str = "embeddings.manifest.json";
pub const MATRIX_TENSOR: &str = "embeddings";
pub const MANIFEST_FORMAT: &str = "cinevec-embeddings/1";

/// Which model made an embedding set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub source: String,
    pub architecture: crate::engine::Architecture,
    pub weights_sha256: String,
    pub pooling: crate::engine::Pooling,
    pub max_tokens: usize,
}

/// Everything needed to decide whether an embedding set is still valid for a model and catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub run_id: String,
    pub created_at: String,
    pub model: ModelRecord,
    pub dim: usize,
    pub rows: usize,
    pub doc_format: String,
    /// Documents longer than `model.max_tokens`, embedded from their first tokens.
    pub truncated: usize,
    /// Where the documents came from, and the sha256 of that input.
    pub input: String,
    pub input_sha256: String,
    pub device: String,
    pub dtype: String,
    pub seconds: f64,
}

#[derive(Serialize, Deserialize)]
struct IdsFile {
    run_id: String,
    ids: Vec<String>,
}

/// A loaded embedding set.
#[derive(Debug, Clone)]
pub struct EmbeddingSet {
    pub manifest: Manifest,
    pub ids: Vec<String>,
    /// `[rows, dim]` row-major.
    pub matrix: Vec<f32>,
}

impl EmbeddingSet {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.matrix[i * self.manifest.dim..(i + 1) * self.manifest.dim]
    }
}

/// A new random-enough run id: time plus process id plus a counter.
pub fn new_run_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{nanos:x}-{:x}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Write `bytes` to `path` atomically: temporary file in the same folder, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path.file_name().context("artifact path has no file name")?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

pub use crate::hash::sha256_hex;

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Write an embedding set into `dir`. The manifest goes last: it is the commit point.
pub fn write_embeddings(dir: &Path, manifest: &Manifest, ids: &[String], matrix: &[f32]) -> Result<()> {
    ensure!(ids.len() == manifest.rows, "{} ids for {} rows", ids.len(), manifest.rows);
    ensure!(matrix.len() == manifest.rows * manifest.dim, "matrix size does not match rows × dim");
    let bytes = f32_bytes(matrix);
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![manifest.rows, manifest.dim], &bytes)?;
    let metadata = HashMap::from([("run_id".to_string(), manifest.run_id.clone())]);
    let st = safetensors::serialize([(MATRIX_TENSOR, view)], Some(metadata))?;
    write_atomic(&dir.join(MATRIX_FILE), &st)?;
    let ids_file = IdsFile { run_id: manifest.run_id.clone(), ids: ids.to_vec() };
    write_atomic(&dir.join(IDS_FILE), &serde_json::to_vec(&ids_file)?)?;
    write_atomic(&dir.join(MANIFEST_FILE), &serde_json::to_vec_pretty(manifest)?)?;
    Ok(())
}

/// Read just the manifest (cheap; for up-to-date checks).
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read(&path).with_context(|| format!("no embedding manifest at {}", path.display()))?;
    let manifest: Manifest =
        serde_json::from_slice(&text).with_context(|| format!("{} is not a valid manifest", path.display()))?;
    ensure!(manifest.format == MANIFEST_FORMAT, "{}: unknown format {}", path.display(), manifest.format);
    Ok(manifest)
}

/// Load an embedding set, refusing any mix of files from different runs.
pub fn load_embeddings(dir: &Path) -> Result<EmbeddingSet> {
    let manifest = read_manifest(dir)?;
    let matrix_path = dir.join(MATRIX_FILE);
    let matrix = read_matrix(&matrix_path, &manifest)?;

    let ids_path = dir.join(IDS_FILE);
    let ids: IdsFile = serde_json::from_slice(
        &std::fs::read(&ids_path).with_context(|| format!("cannot read {}", ids_path.display()))?,
    )
    .with_context(|| format!("{} is not a valid id list", ids_path.display()))?;
    if ids.run_id != manifest.run_id {
        bail!("{} belongs to another run than its manifest: re-run `cinevec embed`", ids_path.display());
    }
    ensure!(ids.ids.len() == manifest.rows, "{} ids for {} rows", ids.ids.len(), manifest.rows);
    Ok(EmbeddingSet { manifest, ids: ids.ids, matrix })
}

/// The `embeddings` tensor of a safetensors file, checked against the manifest. Read with `read`
/// straight into the vector (no memory map): at the reference scale the matrix is hundreds of MB, and
/// mapped file pages would count in the process's memory beside the copy until unmapped.
fn read_matrix(path: &Path, manifest: &Manifest) -> Result<Vec<f32>> {
    use std::io::{Read, Seek, SeekFrom};
    let not_st = || format!("{} is not a safetensors file", path.display());
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let file_len = file.metadata()?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len).with_context(not_st)?;
    let header_len = u64::from_le_bytes(len);
    ensure!(header_len <= 100_000_000 && 8 + header_len <= file_len, "{}", not_st());
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).with_context(not_st)?;
    let header: serde_json::Value = serde_json::from_slice(&header).with_context(not_st)?;
    let file_run = header["__metadata__"]["run_id"].as_str().unwrap_or_default();
    if file_run != manifest.run_id {
        bail!(
            "{} belongs to another run than its manifest (an interrupted `cinevec embed`?): re-run `cinevec embed`",
            path.display()
        );
    }
    let tensor = header.get(MATRIX_TENSOR).context("matrix file has no `embeddings` tensor")?;
    ensure!(tensor["dtype"] == "F32", "embedding matrix must be f32");
    let shape: Vec<usize> = serde_json::from_value(tensor["shape"].clone()).with_context(not_st)?;
    ensure!(
        shape == [manifest.rows, manifest.dim],
        "embedding matrix is {shape:?}, manifest says [{}, {}]",
        manifest.rows,
        manifest.dim
    );
    let offsets: [u64; 2] = serde_json::from_value(tensor["data_offsets"].clone()).with_context(not_st)?;
    let bytes = (manifest.rows * manifest.dim * 4) as u64;
    ensure!(
        offsets[1].checked_sub(offsets[0]) == Some(bytes) && 8 + header_len + offsets[1] <= file_len,
        "{} is damaged (tensor data out of place)",
        path.display()
    );
    file.seek(SeekFrom::Start(8 + header_len + offsets[0]))?;
    let mut matrix = vec![0f32; manifest.rows * manifest.dim];
    // SAFETY: the byte view covers exactly the vector's initialised f32s; any bytes are a valid f32.
    let view = unsafe { std::slice::from_raw_parts_mut(matrix.as_mut_ptr().cast::<u8>(), bytes as usize) };
    file.read_exact(view).with_context(|| format!("cannot read {}", path.display()))?;
    if cfg!(target_endian = "big") {
        matrix.iter_mut().for_each(|x| *x = f32::from_bits(u32::from_le(x.to_bits())));
    }
    Ok(matrix)
}

/// The default artifacts folder.
pub fn default_dir() -> PathBuf {
    PathBuf::from("artifacts")
}
