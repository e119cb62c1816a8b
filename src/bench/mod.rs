//! Benchmarks and fixture generators: code that measures cinevec or makes data to measure it on, kept
//! apart from the product code. [`embed`] (`cinevec bench-embed`), [`service`] (`cinevec gen-service`,
//! `cinevec bench-index`), [`titles`] (`cinevec bench-titles`), [`map`] (`cinevec bench-map`), [`parity`]
//! (`cinevec check-parity`), [`imdb_synth`] (`cinevec gen-imdb`:
//! synthetic dumps in the official IMDb format, also used by tests). Each command takes a plain options
//! struct that `crate::cli` builds.

pub mod embed;
pub mod imdb_synth;
pub mod map;
pub mod parity;
pub mod service;
pub mod titles;
