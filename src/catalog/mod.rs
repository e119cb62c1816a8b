//! Movie catalogs: the formats movies arrive in (catalog JSONL, the official IMDb dumps, the demo
//! package) and the store they are kept in ([`store::Store`], one enum over the backends, each in its
//! own file: SQLite today). Turning a source into stored documents is `crate::pipeline::ingest`.

pub mod demo;
pub mod imdb;
pub mod jsonl;
pub mod store;

pub use store::{MovieRow, Store, StoreError, StoredMovie, UpsertCounts};
