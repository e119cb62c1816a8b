//! The HTTP request bodies on arbitrary bytes: each body type deserialises or refuses without a panic,
//! and what deserialises validates (filters, k, query strings) without one; `k` is accepted exactly
//! when the spec's bounds say so.
#![no_main]

use cinevec::server::api::{AddMovieRequest, MoviesRequest, RecommendRequest, SimilarQuery, SimilarRequest};
use cinevec::service::query::TopK;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<SimilarRequest>(data) {
        let _ = r.filter();
        let k = TopK::parse(r.k);
        assert_eq!(k.is_ok(), r.k.is_none_or(|k| (1..=100).contains(&k)), "k = {:?}", r.k);
    }
    if let Ok(r) = serde_json::from_slice::<RecommendRequest>(data) {
        let _ = r.filter();
    }
    let _ = serde_json::from_slice::<MoviesRequest>(data);
    let _ = serde_json::from_slice::<AddMovieRequest>(data);
    if let Ok(q) = serde_json::from_slice::<SimilarQuery>(data) {
        let _ = q.parse();
    }
});
