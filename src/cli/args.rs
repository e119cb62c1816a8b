//! The flags several commands share: the store, the model and its folder, batching, the graph, the split
//! and the rating head; and where a folder not named on the command line goes.

use crate::catalog::store;
use crate::engine::lowp::CpuPrecision;
use crate::engine::{Embedder, Pooling};
use crate::head::fit::{Blend, HeadTraining};
use crate::head::train::MlpTraining;
use crate::head::TargetKind;
use crate::index::IndexParams;
use crate::models::{self, ModelOptions, ModelSource};
use crate::pipeline::build::Split;
use crate::pipeline::embed::BatchLimits;
use anyhow::Result;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// Catalog store: a SQLite file (created, with its folder, if missing), a `sqlite:` URL, or a
    /// PostgreSQL database (`postgres://user:password@host:port/db`, shared by several replicas).
    /// [default: artifacts/catalog.db; DIR/catalog.db where the command has --artifacts DIR]
    #[arg(long, env = "CINEVEC_DB", hide_env_values = true)]
    pub db: Option<String>,
}

impl DbArgs {
    /// The store: `--db`, else `catalog.db` in the named artifacts folder, else the default.
    pub fn url(&self, artifacts: Option<&Path>) -> String {
        match (&self.db, artifacts) {
            (Some(db), _) => db.clone(),
            (None, Some(dir)) => dir.join(STORE_FILE).display().to_string(),
            (None, None) => store::DEFAULT_DB.to_string(),
        }
    }

    /// The store must exist already (commands that only read it).
    pub(super) fn require_existing(&self) -> Result<String> {
        let db = self.url(None);
        if !store::may_exist(&db) {
            anyhow::bail!("no catalog store at {}: run `cinevec ingest` first (or pass --db)", store::redacted(&db));
        }
        Ok(db)
    }
}

/// Where things go when their own flags are not given. Naming `--artifacts DIR` (or
/// `CINEVEC_ARTIFACTS`) puts everything under it: the store `DIR/catalog.db`, downloads `DIR/.cache`
/// and models `DIR/models` (a model already in `./models`, the old default, is used from there rather
/// than fetched again). Without it: `artifacts/`, `artifacts/catalog.db`, `artifacts/.cache`, `models`.
const DEFAULT_ARTIFACTS: &str = "artifacts";
pub(super) const STORE_FILE: &str = "catalog.db";
const CACHE_DIR: &str = ".cache";
const MODELS_DIR: &str = "models";

pub(super) fn artifacts_or_default(artifacts: &Option<PathBuf>) -> PathBuf {
    artifacts.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_ARTIFACTS))
}

pub(super) fn cache_under(cache_dir: &Option<PathBuf>, artifacts: &Option<PathBuf>) -> PathBuf {
    cache_dir.clone().unwrap_or_else(|| artifacts_or_default(artifacts).join(CACHE_DIR))
}

#[derive(Debug, Clone, Args)]
pub struct ModelDirArgs {
    /// Folder holding downloaded models. [default: models; DIR/models where the command has
    /// --artifacts DIR, unless the model is in ./models already]
    #[arg(long, env = "CINEVEC_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
}

impl ModelDirArgs {
    /// The models folder of a command without `--artifacts`.
    pub fn dir(&self) -> PathBuf {
        self.models_dir.clone().unwrap_or_else(|| PathBuf::from(MODELS_DIR))
    }

    /// The models folder of a command with `--artifacts` (named: `DIR/models`, unless `source` is
    /// only in the old default folder).
    pub fn dir_under(&self, artifacts: Option<&Path>, source: &ModelSource) -> PathBuf {
        match (&self.models_dir, artifacts) {
            (Some(dir), _) => dir.clone(),
            (None, None) => PathBuf::from(MODELS_DIR),
            (None, Some(artifacts)) => {
                let under = artifacts.join(MODELS_DIR);
                let old = PathBuf::from(MODELS_DIR);
                if models::locate(source, &under).is_err() && models::locate(source, &old).is_ok() {
                    old
                } else {
                    under
                }
            }
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Embedding model: `minilm` (default: all-MiniLM-L6-v2, 384-d, fast), `mpnet` (all-mpnet-base-v2,
    /// 768-d: better rating predictions, several times slower on a CPU), a model folder, or a Hugging Face
    /// hub id already fetched.
    #[arg(long, env = "CINEVEC_MODEL", default_value = models::DEFAULT_MODEL)]
    pub model: String,
    #[command(flatten)]
    pub dirs: ModelDirArgs,
    /// Override the model's pooling (otherwise from 1_Pooling/config.json).
    #[arg(long, env = "CINEVEC_POOLING")]
    pub pooling: Option<Pooling>,
    /// Truncate inputs to fewer tokens than the model's maximum.
    #[arg(long, env = "CINEVEC_MAX_TOKENS")]
    pub max_tokens: Option<usize>,
    /// Run on the CPU even when a GPU is available.
    #[arg(long, env = "CINEVEC_CPU", value_parser = clap::builder::BoolishValueParser::new())]
    pub cpu: bool,
    /// Number format of the model: `auto` is bf16 on a CPU with AVX512-BF16 and f32 elsewhere (GPUs
    /// included); on the CPU, bf16 and int8 (AVX512-VNNI) run the dense products in that format with
    /// f32 accumulation and keep the rest in f32; f16 and bf16 run the whole model on a CUDA GPU.
    #[arg(long, env = "CINEVEC_DTYPE", value_enum, default_value_t = Precision::Auto)]
    pub dtype: Precision,
}

/// `--dtype` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    Auto,
    F32,
    F16,
    Bf16,
    Int8,
}

impl Precision {
    /// The model's dtype (on a GPU) and the CPU's format of dense products.
    pub fn resolve(self) -> (candle_core::DType, Option<CpuPrecision>) {
        use candle_core::DType;
        match self {
            Precision::Auto => (DType::F32, Some(CpuPrecision::auto())),
            Precision::F32 => (DType::F32, None),
            Precision::F16 => (DType::F16, None),
            Precision::Bf16 => (DType::BF16, Some(CpuPrecision::Bf16)),
            Precision::Int8 => (DType::F32, Some(CpuPrecision::Int8)),
        }
    }
}

impl ModelArgs {
    pub fn source(&self) -> ModelSource {
        ModelSource::parse(&self.model)
    }

    /// The plain options the commands take.
    pub fn options(&self) -> ModelOptions {
        self.with_models_dir(self.dirs.dir())
    }

    /// The plain options of a command with `--artifacts` (see [`ModelDirArgs::dir_under`]).
    pub fn options_under(&self, artifacts: Option<&Path>) -> ModelOptions {
        self.with_models_dir(self.dirs.dir_under(artifacts, &self.source()))
    }

    fn with_models_dir(&self, models_dir: PathBuf) -> ModelOptions {
        let (dtype, cpu_precision) = self.dtype.resolve();
        ModelOptions {
            model: self.model.clone(),
            models_dir,
            pooling: self.pooling,
            max_tokens: self.max_tokens,
            cpu: self.cpu,
            dtype,
            cpu_precision,
        }
    }

    /// Find the model folder (never downloads) and load it.
    pub fn load(&self) -> Result<Embedder> {
        self.options().load()
    }
}

#[derive(Debug, Clone, Args)]
pub struct BatchArgs {
    /// Most documents per forward pass.
    #[arg(long, env = "CINEVEC_BATCH_SIZE", default_value_t = 32)]
    pub batch_size: usize,
    /// Most padded tokens (documents × longest) per forward pass.
    #[arg(long, env = "CINEVEC_MAX_BATCH_TOKENS", default_value_t = 16384)]
    pub max_batch_tokens: usize,
}

impl BatchArgs {
    pub fn limits(&self) -> BatchLimits {
        BatchLimits { max_batch: self.batch_size, max_tokens: self.max_batch_tokens }
    }
}

/// How the HNSW graph is built (`cinevec build` builds it, `cinevec serve` checks it was built so).
#[derive(Debug, Clone, Args)]
pub struct IndexArgs {
    /// HNSW: neighbours per node (M). Changing it rebuilds the saved graph.
    #[arg(long, env = "CINEVEC_HNSW_M", default_value_t = IndexParams::default().max_connections)]
    pub hnsw_m: usize,
    /// HNSW: candidate list while building. Changing it rebuilds the saved graph.
    #[arg(long, env = "CINEVEC_HNSW_EF_CONSTRUCTION", default_value_t = IndexParams::default().ef_construction)]
    pub hnsw_ef_construction: usize,
}

impl IndexArgs {
    pub fn params(&self, ef_search: usize) -> IndexParams {
        IndexParams {
            max_connections: self.hnsw_m.clamp(2, 255),
            ef_construction: self.hnsw_ef_construction.max(1),
            ef_search: ef_search.max(1),
            ..IndexParams::default()
        }
    }
}

/// How the rated movies are split.
#[derive(Debug, Clone, Args)]
pub struct SplitArgs {
    /// Share of the rated movies held out for the final test.
    #[arg(long, env = "CINEVEC_TEST_FRACTION", default_value_t = 0.1)]
    pub test_fraction: f64,
    /// Share of the remaining movies used for validation (model selection, early stopping, interval).
    #[arg(long, env = "CINEVEC_VAL_FRACTION", default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Seed of the shuffle that splits movies into train / validation / test.
    #[arg(long, env = "CINEVEC_SPLIT_SEED", default_value_t = 42)]
    pub split_seed: u64,
    /// k ≥ 2: cross-fitting instead of one validation split: the non-test movies are dealt into k
    /// folds, each fold's MLPs train on the others and stop on it, and every movie is held out once
    /// (validation numbers are then over all of them). 0 or 1: one split by --val-fraction.
    #[arg(long, env = "CINEVEC_FOLDS", default_value_t = 0)]
    pub folds: usize,
}

impl SplitArgs {
    pub fn split(&self) -> Split {
        Split {
            test_fraction: self.test_fraction,
            val_fraction: self.val_fraction,
            split_seed: self.split_seed,
            folds: self.folds,
        }
    }
}

/// The rating head's architecture and training schedule. The defaults are the configuration chosen on
/// validation on imdb5000 with the default model (see BENCHMARKS.md); the reference design's values are
/// given in each flag's help.
#[derive(Debug, Clone, Args)]
pub struct HeadArgs {
    /// Width of each hidden block (the reference design: 256).
    #[arg(long, env = "CINEVEC_HEAD_WIDTH", default_value_t = 1024)]
    pub width: usize,
    /// Number of hidden blocks [Linear → GELU → BatchNorm → Dropout] (the reference design: 6).
    #[arg(long, env = "CINEVEC_HEAD_DEPTH", default_value_t = 1)]
    pub depth: usize,
    /// Dropout after each hidden block (the reference design: 0.6).
    #[arg(long, env = "CINEVEC_HEAD_DROPOUT", default_value_t = 0.5)]
    pub dropout: f64,
    /// Dropout on the (standardised) input embedding (the reference design: none).
    #[arg(long, env = "CINEVEC_HEAD_INPUT_DROPOUT", default_value_t = 0.2)]
    pub input_dropout: f64,
    /// Most training epochs per member; the cosine schedule spans them (the reference design: 600).
    #[arg(long, env = "CINEVEC_HEAD_EPOCHS", default_value_t = 80)]
    pub epochs: usize,
    /// Mini-batch size (the reference design: 4096).
    #[arg(long, env = "CINEVEC_HEAD_BATCH_SIZE", default_value_t = 256)]
    pub batch_size: usize,
    /// Peak learning rate of AdamW (the reference design: 2e-3).
    #[arg(long, env = "CINEVEC_HEAD_LR", default_value_t = 3e-4)]
    pub lr: f64,
    /// Lowest learning rate of each cosine cycle, as a fraction of --lr.
    #[arg(long, env = "CINEVEC_HEAD_MIN_LR_FRACTION", default_value_t = 0.0)]
    pub min_lr_fraction: f64,
    /// AdamW (decoupled) weight decay (the reference design: 1e-3).
    #[arg(long, env = "CINEVEC_HEAD_WEIGHT_DECAY", default_value_t = 0.1)]
    pub weight_decay: f64,
    /// Epochs of the first cosine cycle before a warm restart; 0 = one cycle over all epochs (the
    /// reference design restarts; with early stopping one cycle did as well on validation).
    #[arg(long, env = "CINEVEC_HEAD_RESTART_EPOCHS", default_value_t = 0)]
    pub restart_epochs: usize,
    /// Each cosine cycle is this many times longer than the previous one.
    #[arg(long, env = "CINEVEC_HEAD_RESTART_MULT", default_value_t = 2)]
    pub restart_mult: usize,
    /// Stop a member when validation MSE has not improved for this many epochs; 0 = never. The
    /// weights of the best validation epoch are kept either way.
    #[arg(long, env = "CINEVEC_HEAD_PATIENCE", default_value_t = 15)]
    pub patience: usize,
    /// MLPs trained from different seeds (per fold with --folds); the head averages all of them.
    #[arg(long, env = "CINEVEC_HEAD_MEMBERS", default_value_t = 8)]
    pub members: usize,
    /// What the MLP learns: the rating, or the residual of ridge regression.
    #[arg(long, env = "CINEVEC_HEAD_TARGET", value_enum, default_value_t = TargetKind::Rating)]
    pub target: TargetKind,
    /// Standardise each input feature (training mean and deviation) before the MLP.
    #[arg(long, env = "CINEVEC_HEAD_STANDARDIZE", default_value_t = true, action = clap::ArgAction::Set)]
    pub standardize: bool,
    /// Weight of ridge regression in the final rating: `auto` (chosen on validation) or 0–1.
    #[arg(long, env = "CINEVEC_HEAD_BLEND", default_value = "auto")]
    pub blend: Blend,
    /// Coverage of the prediction interval, calibrated on validation residuals.
    #[arg(long, env = "CINEVEC_HEAD_INTERVAL", default_value_t = 0.8)]
    pub interval: f64,
    /// Seed of initial weights, batch shuffles and dropout.
    #[arg(long, env = "CINEVEC_HEAD_SEED", default_value_t = 42)]
    pub seed: u64,
}

impl HeadArgs {
    pub fn training(&self) -> HeadTraining {
        HeadTraining {
            mlp: MlpTraining {
                width: self.width,
                depth: self.depth,
                dropout: self.dropout,
                input_dropout: self.input_dropout,
                epochs: self.epochs,
                batch_size: self.batch_size,
                learning_rate: self.lr,
                min_lr_fraction: self.min_lr_fraction,
                weight_decay: self.weight_decay,
                restart_epochs: self.restart_epochs,
                restart_mult: self.restart_mult,
                patience: self.patience,
                members: self.members,
            },
            target: self.target,
            standardize: self.standardize,
            blend: self.blend,
            interval: self.interval,
            seed: self.seed,
        }
    }
}
