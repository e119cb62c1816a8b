//! The offline steps: ingest (catalog), export, embed, train.

pub mod build;
pub mod embed;
pub mod embed_cache;
pub mod export;
pub mod ingest;
pub mod train;
