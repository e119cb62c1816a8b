//! The offline steps: ingest (catalog), export, embed, train.

pub mod embed;
pub mod export;
pub mod ingest;
pub mod train;
