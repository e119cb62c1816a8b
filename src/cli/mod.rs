//! The command line: one `clap` struct per command, each flag with an environment fallback. This file
//! holds the commands and sends each to its group's file (`build.rs`: ingest, embed, train, build;
//! `serve.rs`; `model.rs`; `catalog.rs`; `bench.rs`: the hidden benchmarks); flags several commands
//! share are in `args.rs`, which also decides where a folder not named on the command line goes.

mod args;
mod bench;
mod build;
mod catalog;
mod model;
mod serve;

pub use args::*;
pub use bench::*;
pub use build::*;
pub use catalog::*;
pub use model::*;
pub use serve::*;

use crate::catalog::store::Store;
use anyhow::Result;
use clap::{Parser, Subcommand};

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
        Command::Model(command) => model::run(command),
        Command::Embed(args) => build::embed(args),
        Command::Train(args) => build::train(args),
        Command::Build(args) => build::build(args),
        Command::Ingest(args) => build::ingest(args),
        Command::Catalog(command) => catalog::run(command),
        Command::Serve(args) => crate::server::serve(args.config()?),
        Command::BenchEmbed(args) => crate::bench::embed::embed(&args.options()),
        Command::GenImdb(args) => bench::gen_imdb(args),
        Command::GenService(args) => crate::bench::service::generate(&args.options()),
        Command::BenchIndex(args) => crate::bench::service::bench_index(&args.options()),
        Command::BenchMap(args) => bench::bench_map(args),
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
