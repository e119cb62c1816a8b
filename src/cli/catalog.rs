//! `cinevec catalog export` and `cinevec catalog info`.

use super::args::*;
use super::with_store;
use crate::catalog::store;
use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;

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

pub(super) fn run(command: CatalogCommand) -> Result<()> {
    match command {
        CatalogCommand::Export { out, db } => {
            let url = db.require_existing()?;
            let n = with_store(&url, |store| async move {
                crate::pipeline::export::export_jsonl(&store, &out).await.map(|n| (n, out))
            })?;
            println!("exported {} movies to {}", n.0, n.1.display());
            Ok(())
        }
        CatalogCommand::Info { db } => {
            let url = db.require_existing()?;
            let by_source = with_store(&url, |store| async move { Ok(store.count_by_source().await?) })?;
            let total: u64 = by_source.iter().map(|(_, n)| n).sum();
            println!("{}: {total} movies", store::redacted(&url));
            for (source, n) in by_source {
                println!("  {source}: {n}");
            }
            Ok(())
        }
    }
}
