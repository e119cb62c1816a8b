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

/// A compressed form an answer can be sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Brotli,
    Gzip,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }

    /// `body` in this encoding: brotli at quality 5 (the map of 242k movies: 3.70 MB in 0.5 s here;
    /// quality 4, the compression layer's, made 4.04 MB in 0.35 s this way, so the kept form pays for
    /// the better one once), gzip at level 6.
    pub fn encode(self, body: &[u8]) -> std::io::Result<Vec<u8>> {
        use std::io::Write;
        match self {
            Encoding::Brotli => {
                let mut out = Vec::with_capacity(body.len() / 3);
                let params = brotli::enc::BrotliEncoderParams { quality: 5, ..Default::default() };
                brotli::BrotliCompress(&mut std::io::Cursor::new(body), &mut out, &params)?;
                Ok(out)
            }
            Encoding::Gzip => {
                let mut gz =
                    flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 3), flate2::Compression::new(6));
                gz.write_all(body)?;
                gz.finish()
            }
        }
    }
}

/// The encoding the request's `Accept-Encoding` prefers among brotli and gzip (the highest `q`; brotli
/// on a tie), `None` when it names neither (or only with `q=0`). Unreadable parts are ignored.
pub fn preferred(request: &HeaderMap) -> Option<Encoding> {
    let mut best: Option<(f32, Encoding)> = None;
    for value in request.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()) {
        for part in value.split(',') {
            let mut fields = part.split(';');
            let encoding = match fields.next().map(|t| t.trim().to_ascii_lowercase()).as_deref() {
                Some("br") => Encoding::Brotli,
                Some("gzip") => Encoding::Gzip,
                _ => continue,
            };
            let q = fields
                .filter_map(|f| f.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()))
                .next()
                .unwrap_or(1.0);
            let better =
                |(bq, be): (f32, Encoding)| q > bq || (q == bq && encoding == Encoding::Brotli && be != encoding);
            if q > 0.0 && best.is_none_or(better) {
                best = Some((q, encoding));
            }
        }
    }
    best.map(|(_, e)| e)
}

/// A large answer's compressed forms, kept for one content tag at a time: the map at 242k movies is
/// 13 MB of JSON, which brotli takes about a second of a core to compress; every request after the
/// first for the same catalog state gets the kept bytes. One request compresses while the others
/// asking for the same form wait for it (never two copies of the work); a new tag drops the old forms.
#[derive(Default)]
pub struct Encoded {
    kept: tokio::sync::Mutex<(String, Vec<(Encoding, Bytes)>)>,
}

impl Encoded {
    /// `body` (whose tag is `tag`) in `encoding`, compressed now or kept from before.
    pub async fn get(&self, tag: &str, encoding: Encoding, body: Bytes) -> std::io::Result<Bytes> {
        let mut kept = self.kept.lock().await;
        if kept.0 != tag {
            *kept = (tag.to_string(), Vec::new());
        }
        if let Some((_, bytes)) = kept.1.iter().find(|(e, _)| *e == encoding) {
            return Ok(bytes.clone());
        }
        let bytes = Bytes::from(
            tokio::task::spawn_blocking(move || encoding.encode(&body)).await.map_err(std::io::Error::other)??,
        );
        kept.1.push((encoding, bytes.clone()));
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepting(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn the_preferred_encoding_follows_the_q_values() {
        assert_eq!(preferred(&accepting("gzip, deflate, br, zstd")), Some(Encoding::Brotli));
        assert_eq!(preferred(&accepting("gzip")), Some(Encoding::Gzip));
        assert_eq!(preferred(&accepting("br;q=0.5, gzip;q=0.8")), Some(Encoding::Gzip));
        assert_eq!(preferred(&accepting("GZIP; q=1, br;q=0")), Some(Encoding::Gzip));
        for none in ["identity", "deflate, zstd", "br;q=0, gzip;q=0", "", ";;,,q="] {
            assert_eq!(preferred(&accepting(none)), None, "{none:?}");
        }
        assert_eq!(preferred(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn encoded_forms_decode_to_the_body_and_are_kept_per_tag() {
        use std::io::Read;
        let body = Bytes::from("{\"points\": [1, 2, 3]} ".repeat(2000));
        let cache = Encoded::default();
        let br = cache.get("t1", Encoding::Brotli, body.clone()).await.unwrap();
        let mut plain = Vec::new();
        brotli::Decompressor::new(&br[..], 4096).read_to_end(&mut plain).unwrap();
        assert_eq!(plain, body);
        let gz = cache.get("t1", Encoding::Gzip, body.clone()).await.unwrap();
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut plain).unwrap();
        assert_eq!(plain, body);
        assert!(br.len() < body.len() / 10 && gz.len() < body.len() / 10);
        // Kept: the same bytes (the same allocation) for the same tag, whatever body is passed.
        let again = cache.get("t1", Encoding::Brotli, Bytes::from_static(b"other")).await.unwrap();
        assert_eq!(again.as_ptr(), br.as_ptr());
        // A new tag: compressed again, from the new body.
        let other = cache.get("t2", Encoding::Brotli, Bytes::from_static(b"other")).await.unwrap();
        let mut plain = Vec::new();
        brotli::Decompressor::new(&other[..], 4096).read_to_end(&mut plain).unwrap();
        assert_eq!(plain, b"other");
    }

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
