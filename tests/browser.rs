//! The web page at `/` and the widget at `/widget.js` in headless Chromium, against the real server
//! (real default model, a 300-movie slice of imdb5000) on port 0. Two tiny host pages on other origins
//! embed the widget: one whose origin the server's CORS list allows, one it does not.
//!
//! The browser side is `tests/browser/widget.test.mjs` (Node + playwright-core, driving the system
//! Chromium). Needs: the model and ../shared (as the server tests), `chromium` (Debian package; or set
//! `CINEVEC_CHROMIUM`), Node.js 20+, and `npm ci --prefix tests/browser`. scripts/test.sh sets all of
//! this up. Screenshots land in `target/browser/`.

mod common;
mod serving;

use axum::http::header;
use reqwest::StatusCode;
use serving::{config, fixture, Server};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Chromium binary, or one sentence saying what to install.
fn chromium() -> PathBuf {
    let path =
        std::env::var_os("CINEVEC_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "Chromium not found at {}: install it with `apt-get install -y chromium` (or set CINEVEC_CHROMIUM to a Chromium binary).",
        path.display()
    );
    path
}

/// Where screenshots go: `target/browser/` (beside the build, whatever the target folder is).
fn screenshot_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("browser")
}

/// A host page that embeds the widget from `api`, on its own listener (so its own origin).
fn host_page(api: &str, label: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A host page ({label})</title>
<style>
  body {{ font-family: Georgia, serif; margin: 2rem; background: #fffdf7; }}
  li {{ color: red; font-style: italic; }}
  h2 {{ color: green; font-size: 40px; }}
</style></head>
<body>
<h1>A shop on another origin ({label})</h1>
<ol id="host-list"><li>The host page's own list item</li></ol>
<div id="strip" data-movie-id="tt0468569" data-k="5"></div>
<div id="strip-controls" data-movie-id="tt0468569" data-k="5" data-exclude="tt1345836, tt0372784" data-diversity="0.6"></div>
<script src="{api}/widget.js" defer></script>
</body></html>"#
    )
}

async fn serve_host_page(listener: tokio::net::TcpListener, html: String) {
    let app = axum::Router::new().route("/", axum::routing::get(move || async move { axum::response::Html(html) }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the model, ../shared, chromium and Node.js: run scripts/test.sh"]
async fn the_page_and_the_widget_work_in_headless_chromium() {
    let chromium = chromium();
    common::node_ready(&["playwright-core"], "the browser test");

    // The host pages' origins must be known before the server starts: it allows only the first.
    let allowed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let blocked = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let allowed_origin = format!("http://127.0.0.1:{}", allowed.local_addr().unwrap().port());
    let blocked_origin = format!("http://127.0.0.1:{}", blocked.local_addr().unwrap().port());
    let mut cfg = config(fixture());
    cfg.cors_origins = vec![allowed_origin.clone()];
    let server = Server::start(cfg).await;
    serve_host_page(allowed, host_page(&server.base, "allowed origin")).await;
    serve_host_page(blocked, host_page(&server.base, "origin not allowed")).await;

    // The assets' headers: what a browser and a CDN in front of the server go by.
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/widget.js", "text/javascript; charset=utf-8"),
        ("/embed-demo", "text/html; charset=utf-8"),
    ] {
        let r = server.get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()[header::CONTENT_TYPE], content_type, "{path}");
        assert!(r.headers().contains_key(header::CACHE_CONTROL), "{path} has no cache-control");
        let etag = r.headers()[header::ETAG].clone();
        let again = server
            .client
            .get(format!("{}{path}", server.base))
            .header(header::IF_NONE_MATCH, etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path} with its own ETag");
    }
    let widget = server.get("/widget.js").await;
    assert!(widget.headers()[header::CACHE_CONTROL].to_str().unwrap().contains("max-age=3600"));
    // A cross-origin call from the allowed host page carries its origin back; the other does not.
    let r = server
        .client
        .get(format!("{}/v1/movies/tt0468569/similar?k=1", server.base))
        .header("origin", &allowed_origin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], allowed_origin.as_str());
    let r = server
        .client
        .get(format!("{}/v1/movies/tt0468569/similar?k=1", server.base))
        .header("origin", &blocked_origin)
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));

    let shots = screenshot_dir();
    let (base, script) = (server.base.clone(), common::browser_dir().join("widget.test.mjs"));
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .env("CINEVEC_URL", base)
            .env("HOST_ALLOWED", format!("{allowed_origin}/"))
            .env("HOST_BLOCKED", format!("{blocked_origin}/"))
            .env("CHROMIUM", chromium)
            .env("SCREENSHOT_DIR", &shots)
            .current_dir(common::browser_dir())
            .output()
            .expect("cannot run node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    server.stop().await.unwrap();
    assert!(output.status.success(), "the browser test failed ({}):\n{stdout}\n{stderr}", output.status);
    assert!(screenshot_dir().join("widget.png").is_file(), "no screenshot was saved");
    assert!(screenshot_dir().join("map.png").is_file(), "no screenshot of the map was saved");
}
