//! cinevec: movie similarity search and rating prediction over text embeddings.
//!
//! The crate is laid out by role: [`movie`] (the canonical document), [`catalog`] (input formats and the
//! store), [`engine`] (tokenizer + transformer + pooling, run by candle), [`models`] (getting model
//! folders), [`pipeline`] (the offline steps) and [`cli`] (the command line).

pub mod artifacts;
pub mod bench;
pub mod catalog;
pub mod cli;
pub mod engine;
pub mod models;
pub mod movie;
pub mod pipeline;
pub mod progress;
