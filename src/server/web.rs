//! The browser side, shipped inside the binary: the page at `/`, the embeddable "more like this"
//! snippet at `/widget.js`, and a page showing the snippet in use at `/embed-demo`. Plain HTML, CSS and
//! JavaScript, no build step and nothing fetched from elsewhere.
//!
//! Each asset carries a strong `ETag` (a hash of its bytes, fixed at compile time) and answers a
//! matching `If-None-Match` with 304, so browsers revalidate cheaply.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;

/// The page at `/`.
pub const INDEX_HTML: &str = include_str!("web/index.html");
/// The embeddable snippet at `/widget.js`.
pub const WIDGET_JS: &str = include_str!("web/widget.js");
/// The snippet demo at `/embed-demo`.
pub const EMBED_DEMO_HTML: &str = include_str!("web/embed-demo.html");

/// 64-bit FNV-1a, at compile time: enough to tell versions of an asset apart.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// A static asset and the headers it is served with.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    cache_control: &'static str,
    hash: u64,
    /// Content-Security-Policy for the pages (`None` for scripts).
    csp: Option<&'static str>,
}

/// The pages talk to their own origin only; their script and styles are inline.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'";

const INDEX: Asset = Asset {
    body: INDEX_HTML,
    content_type: "text/html; charset=utf-8",
    cache_control: "no-cache",
    hash: fnv1a(INDEX_HTML.as_bytes()),
    csp: Some(PAGE_CSP),
};

const WIDGET: Asset = Asset {
    body: WIDGET_JS,
    content_type: "text/javascript; charset=utf-8",
    // Host pages load it on every view: let them cache it for an hour, then revalidate by ETag.
    cache_control: "public, max-age=3600, must-revalidate",
    hash: fnv1a(WIDGET_JS.as_bytes()),
    csp: None,
};

const EMBED_DEMO: Asset = Asset {
    body: EMBED_DEMO_HTML,
    content_type: "text/html; charset=utf-8",
    cache_control: "no-cache",
    hash: fnv1a(EMBED_DEMO_HTML.as_bytes()),
    csp: Some(PAGE_CSP),
};

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    // Weak: the compression layer may send the asset encoded.
    let etag = super::cache::weak(&format!("{:016x}", asset.hash));
    let body = axum::body::Bytes::from_static(asset.body.as_bytes());
    let mut response = super::cache::answer(request, &etag, asset.cache_control, asset.content_type, body);
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Some(csp) = asset.csp {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    }
    response
}

pub async fn index(headers: HeaderMap) -> Response {
    serve(&INDEX, &headers)
}

pub async fn widget(headers: HeaderMap) -> Response {
    serve(&WIDGET, &headers)
}

pub async fn embed_demo(headers: HeaderMap) -> Response {
    serve(&EMBED_DEMO, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[tokio::test]
    async fn assets_carry_type_cache_headers_and_revalidate() {
        let response = widget(HeaderMap::new()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert!(response.headers()[header::CACHE_CONTROL].to_str().unwrap().contains("max-age"));
        let etag = response.headers()[header::ETAG].clone();

        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, etag.clone());
        let response = widget(again).await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(response.headers()[header::ETAG], etag);

        let mut stale = HeaderMap::new();
        stale.insert(header::IF_NONE_MATCH, HeaderValue::from_static("W/\"0000000000000000\""));
        assert_eq!(widget(stale).await.status(), StatusCode::OK);

        let page = index(HeaderMap::new()).await;
        assert_eq!(page.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(page.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        assert_ne!(page.headers()[header::ETAG], etag, "each asset has its own tag");
    }

    #[test]
    fn pages_load_nothing_from_elsewhere() {
        for (name, text) in [("index.html", INDEX_HTML), ("widget.js", WIDGET_JS), ("embed-demo.html", EMBED_DEMO_HTML)]
        {
            for needle in ["<link", "@import", "url(", "import(", "createElement('script')", "createElement('link')"] {
                assert!(!text.contains(needle), "{name} loads another resource ({needle})");
            }
            if name.ends_with(".html") {
                for needle in ["src=\"http", "src=\"//"] {
                    assert!(!text.contains(needle), "{name} loads a script or image from elsewhere ({needle})");
                }
            }
            assert!(!text.contains(".innerHTML"), "{name} must build its DOM from text nodes, not innerHTML");
        }
    }
}
