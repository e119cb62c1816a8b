//! Movie catalogs: the interchange formats movies arrive in, and (later) the catalog store.

pub mod jsonl;
