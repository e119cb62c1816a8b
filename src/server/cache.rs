//! Conditional GETs: an `ETag` on the answers that are worth keeping (the map, its picture, the
//! service's description, the contract, the pages), a matching `If-None-Match` answered with 304 and
//! no body, and each route's `Cache-Control`.
//!
//! Tags are weak (`W/"…"`): the compression layer sends the same answer gzip'd, brotli'd or plain, so
//! the tag names the content, not its bytes on the wire. Every tag is a digest of the answer's
//! content, so it changes whenever the answer does (a movie added at run time, here or on another
//! replica, changes the map's and the description's tags; a stale tag gets the new answer). An
//! `If-None-Match` that is not a list of tags is ignored (the full answer), never an error.

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Answers that follow the catalog: keep them, but ask every time (a 304 costs a few bytes).
pub const REVALIDATE: &str = "no-cache";

/// A weak tag from a hex digest.
pub fn weak(digest: &str) -> String {
    format!("W/\"{digest}\"")
}

/// The weak tag of some bytes (the first 16 hex digits of their SHA-256).
pub fn tag_of(bytes: &[u8]) -> String {
    weak(&crate::hash::sha256_hex(bytes)[..16])
}

/// Whether the request's `If-None-Match` names `etag` (weak comparison: `W/` is ignored on both
/// sides) or is `*`. Anything unreadable matches nothing.
pub fn fresh(request: &HeaderMap, etag: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_string();
    let ours = opaque(etag);
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || opaque(t) == ours)
}

/// The answer to a GET with an `ETag`: 304 with no body when the client's copy is current, else
/// `body` with its `Content-Type`; both with the tag and `cache_control`.
pub fn answer(
    request: &HeaderMap,
    etag: &str,
    cache_control: &'static str,
    content_type: &'static str,
    body: Bytes,
) -> Response {
    let mut response = if fresh(request, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = body.into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        r
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    if let Ok(tag) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, tag);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asking(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn tags_compare_weakly_and_garbage_matches_nothing() {
        let tag = tag_of(b"the map");
        assert!(tag.starts_with("W/\"") && tag.len() == 3 + 16 + 1, "{tag}");
        assert_ne!(tag, tag_of(b"the map, one movie later"));
        let strong = tag.trim_start_matches("W/").to_string();
        let mut list = HeaderMap::new();
        list.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&format!("\"x\", {strong}")).unwrap());
        assert!(fresh(&list, &tag));
        assert!(fresh(&asking("*"), &tag));
        for garbage in ["", "garbage", "W/", "\"\"", ",,,"] {
            assert!(!fresh(&asking(garbage), &tag), "{garbage:?}");
        }
        assert!(!fresh(&HeaderMap::new(), &tag));
    }

    #[test]
    fn a_current_copy_gets_304_without_a_body() {
        let tag = tag_of(b"{}");
        let full = answer(&HeaderMap::new(), &tag, REVALIDATE, "application/json", Bytes::from_static(b"{}"));
        assert_eq!(full.status(), StatusCode::OK);
        assert_eq!(full.headers()[header::CONTENT_TYPE], "application/json");
        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, full.headers()[header::ETAG].clone());
        let not_modified = answer(&again, &tag, REVALIDATE, "application/json", Bytes::from_static(b"{}"));
        assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(not_modified.headers()[header::CACHE_CONTROL], REVALIDATE);
        assert_eq!(not_modified.headers()[header::ETAG], full.headers()[header::ETAG]);
    }
}
