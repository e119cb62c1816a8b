//! The hidden benchmark and data-generator commands (`bench-*`, `gen-*`, `check-parity`), which the
//! scripts under `scripts/bench/` run.

use super::args::*;
use crate::bench::service::{SearchStart, Traversal};
use crate::index::LayoutParams;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

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

pub(super) fn gen_imdb(args: GenImdbArgs) -> Result<()> {
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

pub(super) fn bench_map(a: BenchMapArgs) -> Result<()> {
    crate::bench::map::run(&crate::bench::map::BenchMapOptions {
        rows: a.rows.clone(),
        dim: a.dim,
        cluster: a.cluster.max(2),
        layout: LayoutParams { seed: a.map_seed, epochs: a.map_epochs },
        artifacts: a.artifacts.clone(),
    })
}
