//! The embedding engine: a model folder (config, safetensors weights, tokenizer, pooling) turned into a
//! function from texts to L2-normalised vectors. Synchronous on purpose: the server runs it on its own
//! thread(s), the pipeline calls it directly.
//!
//! The seams: [`encoder::Encoder`] is the model family (BERT, ModernBERT; a new family is one file
//! beside `bert.rs` and one arm there), [`pooling`] turns hidden states into one vector per text,
//! [`TextEmbedder`] is what the model thread ([`worker`]) and the batch planner ([`plan`]) need of a
//! model ([`Embedder`] is the real one; tests use small deterministic ones).

pub mod attention;
mod batch;
pub mod bert;
pub mod config;
pub mod device;
pub mod encoder;
pub mod lowp;
pub mod modernbert;
pub mod mpnet;
pub mod ops;
pub mod plan;
pub mod pooling;
pub mod team;
pub mod worker;

pub use config::{Architecture, ModelSpec, Pooling};

use anyhow::Result;
use batch::PackedBatch;
use candle_core::{DType, Device, Tensor};
use encoder::Encoder;
use serde::Serialize;
use std::path::{Path, PathBuf};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

/// Below this many rows (tokens in a batch) the CPU path works differently:
/// - matrix products read the transposed weight stored contiguously (the `gemm` kernels then skip
///   re-packing the whole weight on every call, which dominates with few rows: one short document,
///   ~20 % faster per product; above it the stored layout is as fast or faster, measured with 87 to
///   2,800 rows on 2 cores), split by columns over the [`team`];
/// - attention, GELU and layer norms run on the [`team`] rather than rayon's pool.
pub(crate) const SMALL_BATCH_ROWS: usize = 256;

/// A text after tokenisation: the ids the model sees, and how long it was before truncation.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// Token count before truncation, special tokens included.
    pub untruncated_len: usize,
}

impl Encoded {
    pub fn truncated(&self) -> bool {
        self.untruncated_len > self.ids.len()
    }
}

/// Options that do not come from the model folder.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Override the folder's pooling.
    pub pooling: Option<Pooling>,
    /// Lower the folder's maximum sequence length.
    pub max_tokens: Option<usize>,
    /// Insist on the CPU even when a GPU is available.
    pub force_cpu: bool,
    /// Run the model in this dtype (f16/bf16 on GPUs); f32 by default.
    pub dtype: Option<DType>,
    /// Let f16/bf16 run on the CPU too (slow): only for tests of the half-precision code path on
    /// machines without a GPU. The command line never sets it.
    pub allow_cpu_half: bool,
    /// Keep one copy of each dense weight on the CPU (the server's choice: less memory, large
    /// batches a few per cent slower); offline embedding keeps both layouts.
    pub one_weight_copy: bool,
    /// On the CPU, run the dense products in this format ([`lowp`]; `dtype` is then f32 for the rest
    /// of the model). `None` is f32. Refused when the processor lacks the instructions; int8 is
    /// refused on a GPU, and the others are ignored there (`dtype` applies).
    pub cpu_precision: Option<lowp::CpuPrecision>,
}

/// How a model's dense weights are kept on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightOptions {
    /// See [`EngineOptions::one_weight_copy`].
    pub one_copy: bool,
    /// f32 keeps today's layouts; bf16 and int8 keep only the packed weight ([`lowp::PackedWeight`]).
    pub precision: lowp::CpuPrecision,
}

/// What the engine is: stored in manifests and reported by the server.
#[derive(Debug, Clone, Serialize)]
pub struct EngineInfo {
    pub model_dir: PathBuf,
    pub architecture: Architecture,
    pub dim: usize,
    pub pooling: Pooling,
    pub max_tokens: usize,
    pub weights_sha256: String,
    pub device: String,
    pub dtype: String,
}

/// A loaded embedding model.
pub struct Embedder {
    encoder: Encoder,
    /// Truncates at the model's maximum.
    tokenizer: Tokenizer,
    /// Same tokenizer without truncation, used only to count the tokens of over-long inputs.
    counter: Tokenizer,
    device: Device,
    info: EngineInfo,
}

fn load_tokenizers(dir: &Path, max_tokens: usize) -> Result<(Tokenizer, Tokenizer)> {
    let path = dir.join("tokenizer.json");
    let mut counter =
        Tokenizer::from_file(&path).map_err(|e| anyhow::anyhow!("cannot load {}: {e}", path.display()))?;
    // Padding is ours to do (each batch is padded to its own longest input), so whatever the file says
    // about padding is switched off; truncation is set to the model's maximum, whatever the file says.
    counter.with_padding(None);
    counter.with_truncation(None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut tokenizer = counter.clone();
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_tokens,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        }))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((tokenizer, counter))
}

impl Embedder {
    /// Load a model folder (`config.json`, `model.safetensors`, `tokenizer.json`, optional
    /// sentence-transformers files) onto the best available device.
    pub fn load(dir: &Path, options: &EngineOptions) -> Result<Self> {
        let spec = ModelSpec::read(dir)?;
        let device = device::select(options.force_cpu)?;
        let mut precision = lowp::CpuPrecision::F32;
        match options.cpu_precision {
            Some(lowp::CpuPrecision::F32) | None => {}
            Some(lowp::CpuPrecision::Int8) if !device.is_cpu() => {
                anyhow::bail!("dtype int8 runs on the CPU only (use f32, f16 or bf16 on a GPU)")
            }
            Some(_) if !device.is_cpu() => {}
            Some(p) if !p.available() => anyhow::bail!(
                "dtype {} needs {} on the CPU, which this processor lacks: use auto or f32",
                p.name(),
                p.instructions()
            ),
            Some(_) if spec.architecture == Architecture::ModernBert => {
                tracing::warn!("ModernBERT has no reduced-precision CPU path: it runs in f32");
            }
            Some(p) => precision = p,
        }
        let dtype = if precision == lowp::CpuPrecision::F32 { options.dtype.unwrap_or(DType::F32) } else { DType::F32 };
        if !options.allow_cpu_half {
            device::check_dtype(&device, dtype)?;
        }
        if spec.architecture == Architecture::ModernBert && dtype != DType::F32 {
            // candle-transformers 0.11 builds ModernBERT's attention masks in f32 and adds them to
            // scores of the model's dtype, which fails for f16/bf16.
            anyhow::bail!("ModernBERT models run in f32 only (got dtype {})", device::dtype_name(dtype));
        }
        let weights = dir.join("model.safetensors");
        if !weights.exists() {
            anyhow::bail!("{} has no model.safetensors", dir.display());
        }
        let weights_sha256 = crate::hash::model_weights_sha256(dir)?;
        let weight_options = WeightOptions { one_copy: options.one_weight_copy, precision };
        let encoder = Encoder::load(&spec, &weights, dtype, &device, weight_options)?;
        // On a GPU the weights were copied (and the fused QKV matrices built) on this thread's CUDA
        // stream; candle gives every thread its own stream, unordered with the others, and the model
        // is often used from another thread (the worker): finish here, so that it is complete then.
        device.synchronize()?;
        let max_tokens = options.max_tokens.map_or(spec.max_tokens, |m| m.min(spec.max_tokens)).max(2);
        let (tokenizer, counter) = load_tokenizers(dir, max_tokens)?;
        let info = EngineInfo {
            model_dir: dir.to_path_buf(),
            architecture: spec.architecture,
            dim: spec.hidden_size,
            pooling: options.pooling.unwrap_or(spec.pooling),
            max_tokens,
            weights_sha256,
            device: device::describe(&device),
            dtype: if precision == lowp::CpuPrecision::F32 {
                device::dtype_name(dtype)
            } else {
                precision.name().into()
            },
        };
        Ok(Embedder { encoder, tokenizer, counter, device, info })
    }

    pub fn info(&self) -> &EngineInfo {
        &self.info
    }

    pub fn dim(&self) -> usize {
        self.info.dim
    }

    /// Tokenise texts (truncating at the model's maximum).
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Encoded>> {
        // One text (a request): tokenise it here; `encode_batch` would hand it to rayon's pool and
        // wait for a worker to wake.
        let encodings = match texts {
            [text] => vec![self.tokenizer.encode(*text, true).map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?],
            _ => self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?,
        };
        encodings
            .into_iter()
            .zip(texts)
            .map(|(enc, text)| {
                let ids = enc.get_ids().to_vec();
                let untruncated_len = if enc.get_overflowing().is_empty() && ids.len() < self.info.max_tokens {
                    ids.len()
                } else {
                    self.counter.encode(*text, true).map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?.get_ids().len()
                };
                Ok(Encoded { ids, untruncated_len })
            })
            .collect()
    }

    /// Embed one batch of tokenised texts: a `[batch, dim]` row-major vector of unit-length rows.
    pub fn embed_encoded(&self, batch: &[&Encoded]) -> Result<Vec<f32>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let sequences: Vec<&[u32]> = batch.iter().map(|e| e.ids.as_slice()).collect();
        let packed = PackedBatch::new(&sequences, &self.device)?;
        let hidden = self.encoder.forward(&packed)?;
        // Pooling and normalisation in f32 whatever the model's dtype (a no-op for f32 models).
        let hidden = hidden.to_dtype(DType::F32)?;
        let pooled = pooling::pool(&hidden, &packed, self.info.pooling)?;
        let unit = pooling::normalize(&pooled)?;
        Ok(unit.flatten_all()?.to_vec1()?)
    }

    /// Tokenise and embed texts as one batch.
    pub fn embed(&self, texts: &[&str]) -> Result<Embeddings> {
        let encoded = self.encode(texts)?;
        let refs: Vec<&Encoded> = encoded.iter().collect();
        let vectors = self.embed_encoded(&refs)?;
        Ok(Embeddings { dim: self.info.dim, vectors, encoded })
    }

    /// Run a throw-away batch so the first real request does not pay for lazy initialisation.
    pub fn warm_up(&self) -> Result<()> {
        self.embed(&["warm up"]).map(|_| ())
    }

    /// The device as a tensor factory (for tests and benches).
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Build a tensor from row-major embeddings (for callers that keep computing on the device).
    pub fn to_tensor(&self, rows: &[f32]) -> Result<Tensor> {
        let n = rows.len() / self.info.dim;
        Ok(Tensor::from_slice(rows, (n, self.info.dim), &self.device)?)
    }
}

/// What the model thread and the batch planner need of an embedding model.
pub trait TextEmbedder: Send + 'static {
    fn info(&self) -> &EngineInfo;
    /// Tokenise texts (truncating at the model's maximum).
    fn encode(&self, texts: &[&str]) -> Result<Vec<Encoded>>;
    /// Embed one batch of tokenised texts: `[batch, dim]` row-major, unit-length rows.
    fn embed_encoded(&self, batch: &[&Encoded]) -> Result<Vec<f32>>;
    fn dim(&self) -> usize {
        self.info().dim
    }
}

impl TextEmbedder for Embedder {
    fn info(&self) -> &EngineInfo {
        Embedder::info(self)
    }
    fn encode(&self, texts: &[&str]) -> Result<Vec<Encoded>> {
        Embedder::encode(self, texts)
    }
    fn embed_encoded(&self, batch: &[&Encoded]) -> Result<Vec<f32>> {
        Embedder::embed_encoded(self, batch)
    }
}

/// Embeddings of a batch of texts, with their tokenisation.
#[derive(Debug, Clone)]
pub struct Embeddings {
    pub dim: usize,
    /// `[n, dim]` row-major, each row of unit length.
    pub vectors: Vec<f32>,
    pub encoded: Vec<Encoded>,
}

impl Embeddings {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.dim..(i + 1) * self.dim]
    }

    pub fn len(&self) -> usize {
        self.encoded.len()
    }

    pub fn is_empty(&self) -> bool {
        self.encoded.is_empty()
    }
}
