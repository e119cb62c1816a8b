//! `cinevec build` end to end: the real model on a real catalog slice; every step runs once, a second
//! run skips them all, a changed catalog re-runs what depends on it and re-embeds only the new movies,
//! and a build killed while embedding resumes from the embedding cache.

mod common;
mod pg_cluster;

use cinevec::artifacts;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

fn cinevec(artifacts: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cinevec"));
    // f32, so that the vectors equal the library's default engine's (`auto` may pick bf16 here).
    cmd.env("CINEVEC_MODELS_DIR", common::minilm_dir().parent().unwrap())
        .env("CINEVEC_DTYPE", "f32")
        // A small, quick head: the build's logic is under test here, not the head's quality.
        .env("CINEVEC_HEAD_MEMBERS", "1")
        .env("CINEVEC_HEAD_EPOCHS", "5")
        .env("CINEVEC_HEAD_WIDTH", "64")
        .env_remove("CINEVEC_DB")
        .env_remove("CINEVEC_ARTIFACTS")
        .arg("build")
        .arg("--artifacts")
        .arg(artifacts)
        .arg("--db")
        .arg(artifacts.join("catalog.db"));
    cmd
}

fn slice(dir: &Path, from: usize, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(common::shared().join("data/imdb5000/catalog.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().skip(from).take(n).collect();
    let path = dir.join("movies.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn run(cmd: &mut Command) -> String {
    let out: Output = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "build failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// The outcome word of each step line (`done` or `up`), by step name.
fn outcomes(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let step = words.next()?;
            let what = words.next()?;
            ["model", "ingest", "export", "embed", "train", "index"]
                .contains(&step)
                .then(|| (step.to_string(), what.to_string()))
        })
        .collect()
}

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

#[test]
#[ignore = "needs the downloaded model and ../shared: run scripts/test.sh"]
fn builds_once_skips_when_current_and_redoes_what_a_change_touches() {
    let tmp = tempfile::tempdir().unwrap();
    let art = tmp.path().join("artifacts");
    let catalog = slice(tmp.path(), 0, 60);

    let first = run(cinevec(&art).arg("--catalog").arg(&catalog));
    let steps = outcomes(&first);
    let ran: Vec<&str> = steps.iter().filter(|(_, o)| o == "done").map(|(s, _)| s.as_str()).collect();
    assert_eq!(ran, ["ingest", "export", "embed", "train", "index"], "{first}");
    let set = artifacts::load_embeddings(&art).unwrap();
    assert_eq!(set.ids.len(), 60);
    for f in ["head.json", "head.safetensors", "index.manifest.json", "catalog.jsonl"] {
        assert!(art.join(f).is_file(), "{f} missing after the build");
    }
    let watched = ["embeddings.safetensors", "head.safetensors", "index.graph", "catalog.jsonl"];
    let before: Vec<SystemTime> = watched.iter().map(|f| mtime(&art.join(f))).collect();

    // Nothing changed: every step is skipped and no output is touched.
    let second = run(cinevec(&art).arg("--catalog").arg(&catalog));
    assert!(outcomes(&second).iter().all(|(_, o)| o == "up"), "{second}");
    assert_eq!(outcomes(&second).len(), 6, "{second}");
    let after: Vec<SystemTime> = watched.iter().map(|f| mtime(&art.join(f))).collect();
    assert_eq!(before, after, "a build with nothing to do rewrote outputs");
    // Without a source the store is used as it is: still nothing to do.
    let third = run(&mut cinevec(&art));
    assert!(outcomes(&third).iter().all(|(_, o)| o == "up"), "{third}");

    // Five more movies: everything downstream of the store re-runs, and only the five are embedded.
    let grown = slice(tmp.path(), 0, 65);
    let fourth = run(cinevec(&art).arg("--catalog").arg(&grown));
    let ran: Vec<String> = outcomes(&fourth).into_iter().filter(|(_, o)| o == "done").map(|(s, _)| s).collect();
    assert_eq!(ran, ["ingest", "export", "embed", "train", "index"], "{fourth}");
    assert!(fourth.contains("60 from the cache"), "{fourth}");
    let grown_set = artifacts::load_embeddings(&art).unwrap();
    assert_eq!(grown_set.ids.len(), 65);
    // Cached rows are the same vectors as before.
    for (row, id) in set.ids.iter().enumerate() {
        let new_row = grown_set.ids.iter().position(|x| x == id).unwrap();
        assert_eq!(set.row(row), grown_set.row(new_row), "cached vector of {id} changed");
    }

    // A changed head setting retrains (and rebuilds nothing else).
    let out = run(cinevec(&art).env("CINEVEC_HEAD_EPOCHS", "6"));
    let ran: Vec<String> = outcomes(&out).into_iter().filter(|(_, o)| o == "done").map(|(s, _)| s).collect();
    assert_eq!(ran, ["train"], "{out}");
}

#[test]
#[ignore = "needs the downloaded model and ../shared: run scripts/test.sh"]
fn a_build_killed_while_embedding_resumes_from_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let art = tmp.path().join("artifacts");
    let catalog = slice(tmp.path(), 100, 400);
    let mut child = cinevec(&art)
        .arg("--catalog")
        .arg(&catalog)
        .args(["--batch-size", "8"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until some batches are in the cache, then kill it hard (no chance to clean up).
    let cache_dir = art.join(".cache");
    let deadline = Instant::now() + Duration::from_secs(120);
    let header_and_some = 4096 + 3 * 8 * (36 + 384 * 4);
    loop {
        let size = std::fs::read_dir(&cache_dir)
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("embed-cache-"))
            .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
            .sum::<u64>();
        if size as usize > header_and_some {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the build ended before it could be interrupted");
        assert!(Instant::now() < deadline, "no embeddings were cached within two minutes");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(artifacts::load_embeddings(&art).is_err(), "a killed build left an embedding set that loads");

    let resumed = run(cinevec(&art).arg("--catalog").arg(&catalog));
    let line = resumed.lines().find(|l| l.starts_with("embed")).expect("an embed line");
    let cached: usize = line
        .split(" from the cache")
        .next()
        .filter(|before| before.len() < line.len())
        .and_then(|before| before.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the resumed build reused nothing: {line}"));
    assert!((24..400).contains(&cached), "{line}");
    let set = artifacts::load_embeddings(&art).unwrap();
    assert_eq!(set.ids.len(), 400);

    // Every vector, cached or not, is what the model gives for that document on its own.
    let embedder = cinevec::engine::Embedder::load(&common::minilm_dir(), &Default::default()).unwrap();
    let text = std::fs::read_to_string(&catalog).unwrap();
    let docs: std::collections::HashMap<String, String> = text
        .lines()
        .map(|l| {
            let r = cinevec::catalog::jsonl::CatalogRecord::parse_line(l).unwrap();
            (r.id.clone(), r.movie.render())
        })
        .collect();
    for row in (0..400).step_by(7) {
        let id = &set.ids[row];
        let single = embedder.embed(&[docs[id].as_str()]).unwrap();
        let cos = common::cosine(set.row(row), single.row(0));
        assert!(cos > 0.9999, "row {row} ({id}): cosine {cos} with a fresh embedding");
    }
}

#[test]
#[ignore = "needs the downloaded model: run scripts/test.sh"]
fn refuses_without_a_store_or_while_another_build_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let art = tmp.path().join("artifacts");
    let out = cinevec(&art).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no catalog store at") && err.contains("--demo"), "{err}");

    std::fs::create_dir_all(art.join(".build")).unwrap();
    let lock =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(art.join(".build/lock")).unwrap();
    lock.lock().unwrap();
    let out = cinevec(&art).arg("--catalog").arg(slice(tmp.path(), 0, 5)).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another `cinevec build` is running"), "{err}");
    assert!(!art.join("catalog.db").exists(), "a refused build wrote to the store");
}

/// `--artifacts DIR` alone: the store and the model are found and made under DIR (nothing in the
/// working folder's `artifacts/` or `models/`), the build names the one flag serve needs, and
/// `serve --artifacts DIR` loads the catalog from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the downloaded model and ../shared: run scripts/test.sh"]
async fn one_named_folder_holds_the_store_and_the_model_and_serve_finds_them() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let models = work.join("mine/models");
    std::fs::create_dir_all(&models).unwrap();
    std::os::unix::fs::symlink(common::minilm_dir(), models.join(common::minilm_dir().file_name().unwrap())).unwrap();
    let catalog = slice(tmp.path(), 0, 40);
    let clean = |cmd: &mut Command| {
        cmd.current_dir(&work)
            .env_remove("CINEVEC_DB")
            .env_remove("CINEVEC_ARTIFACTS")
            .env_remove("CINEVEC_MODELS_DIR")
            .env_remove("CINEVEC_CACHE_DIR")
            .env_remove("CINEVEC_MODEL")
            .env("CINEVEC_DTYPE", "f32");
    };
    let mut build = Command::new(env!("CARGO_BIN_EXE_cinevec"));
    clean(&mut build);
    build
        .env("CINEVEC_HEAD_MEMBERS", "1")
        .env("CINEVEC_HEAD_EPOCHS", "5")
        .env("CINEVEC_HEAD_WIDTH", "64")
        .args(["build", "--artifacts", "mine", "--catalog"])
        .arg(&catalog);
    let stdout = run(&mut build);
    let hint = stdout.lines().find_map(|l| l.split_once("serve it with: ")).map(|(_, cmd)| cmd.trim().to_string());
    assert_eq!(hint.as_deref(), Some("cinevec serve --artifacts mine"), "{stdout}");
    assert!(work.join("mine/catalog.db").is_file(), "the store is not under the named folder");
    assert!(!work.join("artifacts").exists(), "the build wrote to ./artifacts");
    assert!(!work.join("models").exists(), "the build fetched into ./models");
    assert_eq!(outcomes(&stdout).iter().find(|(s, _)| s == "model").map(|(_, o)| o.as_str()), Some("up"), "{stdout}");

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_cinevec"));
    clean(&mut serve);
    let mut child = serve
        .args(["serve", "--cpu", "--artifacts", "mine", "--bind", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let info: serde_json::Value = loop {
        assert!(child.try_wait().unwrap().is_none(), "serve --artifacts mine exited while loading");
        assert!(started.elapsed() < Duration::from_secs(120), "not ready in 120 s");
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                break client.get(format!("{base}/v1/info")).send().await.unwrap().json().await.unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(info.pointer("/counts/movies").and_then(|v| v.as_u64()), Some(40), "{info:#}");
    assert!(!work.join("artifacts").exists() && !work.join("models").exists(), "serve created default folders");
}

/// The whole output of `cinevec args...` (stdout, then stderr) and whether it succeeded.
fn output_of(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cinevec"));
    cmd.env("CINEVEC_MODELS_DIR", common::minilm_dir().parent().unwrap())
        .env("CINEVEC_DTYPE", "f32")
        .env("CINEVEC_HEAD_MEMBERS", "1")
        .env("CINEVEC_HEAD_EPOCHS", "5")
        .env("CINEVEC_HEAD_WIDTH", "64")
        .env("RUST_LOG", "info")
        .env_remove("CINEVEC_DB")
        .envs(env.iter().copied())
        .args(args);
    let out = cmd.output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
#[ignore = "needs the downloaded model, ../shared and PostgreSQL: run scripts/test.sh"]
fn a_postgres_password_is_never_shown() {
    const SECRET: &str = "hunter2-Zq7";
    let tmp = tempfile::tempdir().unwrap();
    let catalog = slice(tmp.path(), 0, 40);
    let catalog = catalog.to_str().unwrap();
    let art = tmp.path().join("artifacts");
    let art = art.to_str().unwrap();

    // Unreachable: one line naming host and port, not the password.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let nowhere = format!("postgres://cinevec:{SECRET}@127.0.0.1:{closed}/cinevec");
    for args in [
        vec!["build", "--catalog", catalog, "--artifacts", art, "--db", &nowhere],
        vec!["ingest", "--catalog", catalog, "--db", &nowhere],
        vec!["catalog", "info", "--db", &nowhere],
    ] {
        let (ok, out) = output_of(&args, &[]);
        assert!(!ok, "{args:?} succeeded without a database: {out}");
        assert!(out.contains(&format!("127.0.0.1:{closed}")), "{args:?}: {out}");
        assert!(!out.contains(SECRET), "{args:?} showed the password: {out}");
    }
    // --help shows where CINEVEC_DB comes from, never its value.
    for command in ["build", "serve", "ingest"] {
        let (ok, out) = output_of(&[command, "--help"], &[("CINEVEC_DB", &nowhere)]);
        assert!(ok && out.contains("CINEVEC_DB"), "{command} --help: {out}");
        assert!(!out.contains(SECRET), "{command} --help showed the password: {out}");
    }

    // Reachable (the throwaway cluster trusts local connections, so any password is let in): the
    // whole build, its progress and its "serve it with" line, then the other commands.
    let Some(pg) = pg_cluster::shared() else { return };
    pg.create_db("secret").unwrap();
    let url = format!("postgres://postgres:{SECRET}@127.0.0.1:{}/secret", pg.port());
    let shown = format!("postgres://postgres:***@127.0.0.1:{}/secret", pg.port());
    let (ok, out) = output_of(&["build", "--catalog", catalog, "--artifacts", art, "--db", &url], &[]);
    assert!(ok, "the build failed: {out}");
    assert!(out.contains(&format!("--db {shown}")), "the serve line must name the database: {out}");
    assert!(!out.contains(SECRET), "the build showed the password: {out}");
    for args in [vec!["ingest", "--catalog", catalog, "--db", &url], vec!["catalog", "info", "--db", &url]] {
        let (ok, out) = output_of(&args, &[]);
        assert!(ok, "{args:?}: {out}");
        assert!(out.contains(&shown), "{args:?} must name the database: {out}");
        assert!(!out.contains(SECRET), "{args:?} showed the password: {out}");
    }
}
