//! The offline steps: ingest (one file per source under `ingest/`, each owning its reading and
//! joining), export, embed (with its resumable cache), train, and `cinevec build`, which runs them all
//! and skips what is current. Each takes a plain options struct (`crate::cli` builds them).

pub mod build;
pub mod embed;
pub mod embed_cache;
pub mod export;
pub mod ingest;
pub mod train;
