//! The real HTTP service for the integration tests: a catalog slice of imdb5000 embedded with the real
//! default model and a quickly trained head (made once per test binary), and the server on port 0.
#![allow(dead_code)]

use crate::common;
use cinevec::cli::{ModelArgs, ModelDirArgs, ServeArgs};
use cinevec::server::{Application, ServeConfig};
use reqwest::StatusCode;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const SLICE: usize = 300;
pub const KEY: &str = "test-key-3f9a";

// ---- fixture: a catalog store, an embedding set and a head, made once per test binary ----

pub fn cinevec(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_cinevec"))
        .env("CINEVEC_MODELS_DIR", common::minilm_dir().parent().unwrap())
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "cinevec {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Build (once) a folder with `catalog.db`, the embedding set and a quickly trained head.
pub fn fixture() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        remove_fixtures_of_finished_runs();
        let dir = std::env::temp_dir().join(format!("cinevec-server-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let text = std::fs::read_to_string(common::shared().join("data/imdb5000/catalog.jsonl")).unwrap();
        let slice: Vec<&str> = text.lines().take(SLICE).collect();
        let catalog = dir.join("slice.jsonl");
        std::fs::write(&catalog, slice.join("\n")).unwrap();
        let (d, c, db) = (dir.to_str().unwrap(), catalog.to_str().unwrap(), dir.join("catalog.db"));
        cinevec(&["ingest", "--catalog", c, "--db", db.to_str().unwrap()]);
        cinevec(&["embed", "--catalog", c, "--out", d]);
        cinevec(&["train", "--artifacts", d, "--epochs", "20", "--members", "1"]);
        dir
    })
}

/// The fixture lives as long as its test binary (a static), so nothing removes it when the binary
/// ends: remove the folders of earlier runs whose process is gone (on Linux, where /proc says so).
fn remove_fixtures_of_finished_runs() {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("cinevec-server-test-").and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A private copy of the fixture, for tests that write.
pub fn fixture_copy() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
        }
    }
    tmp
}

pub fn config(dir: &Path) -> ServeConfig {
    let model_dir = common::minilm_dir();
    ServeArgs {
        bind: "127.0.0.1:0".into(),
        artifacts: Some(dir.to_path_buf()),
        db: Some(dir.join("catalog.db").to_string_lossy().into_owned()),
        model: ModelArgs {
            model: model_dir.to_string_lossy().into_owned(),
            dirs: ModelDirArgs { models_dir: Some(model_dir.parent().unwrap().to_path_buf()) },
            pooling: None,
            max_tokens: None,
            cpu: true,
            dtype: cinevec::cli::Precision::F32,
        },
        api_key: Some(KEY.into()),
        api_key_file: None,
        max_body_bytes: 2 * 1024 * 1024,
        max_documents: 64,
        request_timeout_ms: 30_000,
        queue_capacity: 256,
        header_timeout_ms: 10_000,
        max_connections: 4096,
        max_batch: 32,
        max_batch_tokens: 16_384,
        cors_origins: vec!["*".into()],
        graph: cinevec::cli::IndexArgs { hnsw_m: 24, hnsw_ef_construction: 200 },
        hnsw_ef_search: 96,
        hnsw_ef_search_by_id: 48,
        int8_walk: false,
    }
    .config()
    .unwrap()
}

pub struct Server {
    pub base: String,
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    pub async fn start(config: ServeConfig) -> Server {
        let app = Application::build(config).await.unwrap();
        let base = format!("http://{}", app.local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let server = Server { base, client, stop: Some(stop), task };
        for _ in 0..600 {
            if server.get("/readyz").await.status() == StatusCode::OK {
                return server;
            }
            assert!(!server.task.is_finished(), "the server stopped while loading");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the server did not become ready in 60 s");
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.base)).send().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client.post(format!("{}{path}", self.base)).json(body).send().await.unwrap()
    }

    pub async fn post_auth(&self, path: &str, body: &Value, key: &str) -> reqwest::Response {
        self.client.post(format!("{}{path}", self.base)).bearer_auth(key).json(body).send().await.unwrap()
    }

    pub async fn delete_auth(&self, path: &str, key: &str) -> reqwest::Response {
        self.client.delete(format!("{}{path}", self.base)).bearer_auth(key).send().await.unwrap()
    }

    /// Graceful stop; returns what the server returned.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap()
    }
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The arguments of `cinevec serve` on `dir`'s artifacts and SQLite store, on `port`, with the real
/// default model.
pub fn serve_args(dir: &Path, port: u16) -> Vec<std::ffi::OsString> {
    let model = common::minilm_dir();
    let bind = format!("127.0.0.1:{port}");
    let args: [&std::ffi::OsStr; 11] = [
        "serve".as_ref(),
        "--bind".as_ref(),
        bind.as_ref(),
        "--cpu".as_ref(),
        "--model".as_ref(),
        model.as_ref(),
        "--models-dir".as_ref(),
        model.parent().unwrap().as_ref(),
        "--artifacts".as_ref(),
        dir.as_ref(),
        "--db".as_ref(),
    ];
    args.into_iter().map(Into::into).chain([dir.join("catalog.db").into_os_string()]).collect()
}

/// The real server binary on `dir`'s artifacts and SQLite store, its log discarded.
pub fn spawn(dir: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cinevec"))
        .args(serve_args(dir, port))
        .env("CINEVEC_API_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Wait until the server `child` answers `/readyz` with 200.
pub async fn wait_ready(client: &reqwest::Client, base: &str, child: &mut Child) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status() == StatusCode::OK {
                return;
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "the server exited while loading");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not ready in 120 s");
}
