//! The offline pipeline's commands: `ingest`, `embed`, `train` and `build`, which runs them all.

use super::args::*;
use crate::catalog::store;
use crate::head::fit::HeadTraining;
use crate::index::{IndexParams, LayoutParams};
use crate::models;
use crate::pipeline::build::{BuildOptions, Split};
use crate::pipeline::embed;
use crate::pipeline::ingest::{self, IngestOptions, IngestSource};
use crate::pipeline::train::{self, RatingsSource, TrainOptions};
use anyhow::Result;
use clap::{Args, Parser};
use std::path::{Path, PathBuf};

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

pub(super) fn embed(args: EmbedArgs) -> Result<()> {
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

pub(super) fn train(args: TrainArgs) -> Result<()> {
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

pub(super) fn build(args: BuildArgs) -> Result<()> {
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

pub(super) fn ingest(args: IngestArgs) -> Result<()> {
    let options = IngestOptions { strict: args.strict, batch_size: args.batch_size };
    let report = ingest::ingest(&args.source()?, &args.db.url(None), &options)?;
    println!("{report}");
    Ok(())
}
