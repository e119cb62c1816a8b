//! The offline steps: ingest (catalog), embed, train.

pub mod embed;
pub mod train;
