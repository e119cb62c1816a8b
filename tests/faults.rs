//! The fault campaign: writes under faults that production sees (a full filesystem under the store
//! and the server, a read-only artifacts folder, a journal with bad bytes in the middle, descriptor
//! exhaustion under a connection storm, a build into a full filesystem), each case asserting that
//! every write that was acknowledged is there after recovery and that every refusal says why (never
//! an internal error). The PostgreSQL cases (stopped, paused, a replica restarted under writes) are in
//! `tests/replicas.rs`.
//!
//! The filesystem cases mount a small tmpfs, so they need root (CI runs as root); elsewhere they
//! say so and pass without checking anything. `CINEVEC_FAULT_CYCLES` (default 3) sets how many
//! cycles they run (`storms()`: a third of it, at least one):
//! `CINEVEC_FAULT_CYCLES=30 cargo test --release --test faults --test replicas -- --include-ignored`
//! is the long version (BENCHMARKS.md, "Reliability").

mod common;
mod serving;

use cinevec::catalog::store::{MovieRow, Store};
use cinevec::movie::MovieDoc;
use reqwest::StatusCode;
use serde_json::json;
use serde_json::Value;
use serving::{free_port, spawn, wait_ready, KEY};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn cycles() -> usize {
    std::env::var("CINEVEC_FAULT_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

/// A tmpfs of `mb` MiB mounted on a fresh folder; unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (with a message saying why) where this process cannot mount one.
    fn mount(mb: u32, case: &str) -> Option<Tmpfs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED {case}: mounting a tmpfs needs root (CI runs as root)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED {case}: `mount -t tmpfs` failed (no CAP_SYS_ADMIN in this container?)");
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fill the filesystem up, then free `leave` bytes again (the first writes after it still fit).
    fn fill(&self, leave: usize) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.filler()).unwrap();
        let chunk = vec![0x5a; 16 << 10];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(leave as u64)).unwrap();
    }

    /// Free what [`Tmpfs::fill`] took.
    fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }

    fn filler(&self) -> PathBuf {
        self.path().join("filler")
    }
}

impl Tmpfs {
    /// Mount it again read-only (`ro`) or read-write.
    fn remount(&self, read_only: bool) {
        let how = if read_only { "remount,ro" } else { "remount,rw" };
        let ok = Command::new("mount").args(["-o", how]).arg(self.path()).status().is_ok_and(|s| s.success());
        assert!(ok, "mount -o {how} {} failed", self.path().display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

fn row(id: &str) -> MovieRow {
    // 2 KB titles, as in the report that found the loss.
    let title = format!("{id} {}", "long title ".repeat(180));
    let movie = MovieDoc::parse(&json!({"title": title, "genres": ["Drama"], "release_year": 2001})).unwrap();
    MovieRow { id: id.into(), rating: Some(7.0), votes: Some(10), movie, source: "api".into() }
}

/// The SQLite store on a filesystem that fills up: every write it confirmed is there after the
/// store is closed and opened again, every write it refused was refused as "disk full" (no other
/// error, no lock wait), and writes succeed again by themselves once space is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_sqlite_store_loses_no_confirmed_write() {
    let Some(fs) = Tmpfs::mount(16, "the SQLite store on a full disk") else { return };
    let db = fs.path().join("catalog.db");
    let location = db.to_str().unwrap().to_string();
    let vector = vec![0.25f32; 384];
    let (mut confirmed, mut refused, mut slowest) = (Vec::new(), 0usize, Duration::ZERO);
    let mut other_errors = Vec::new();
    for cycle in 0..cycles() {
        let store = Store::open(&location).await.unwrap();
        fs.fill(256 << 10);
        let mut refused_here = 0;
        for n in 0..200 {
            let id = format!("full-{cycle}-{n}");
            let t = Instant::now();
            let written = store.put_movie_with_embedding(&row(&id), "model", &vector).await;
            slowest = slowest.max(t.elapsed());
            match written {
                Ok(_) => confirmed.push(id),
                Err(e) if e.is_full() => refused_here += 1,
                Err(e) => {
                    // Not "disk full" (a lock wait, an I/O error): reported below, after the loss check.
                    other_errors.push(format!("{id}: {e}"));
                    break;
                }
            }
        }
        assert!(refused_here > 0 || !other_errors.is_empty(), "cycle {cycle}: the disk never filled (nothing refused)");
        refused += refused_here;
        fs.free();
        // Space is back: the same store (no reopen) writes again.
        for n in 0..5 {
            let id = format!("after-{cycle}-{n}");
            match store.put_movie_with_embedding(&row(&id), "model", &vector).await {
                Ok(_) => confirmed.push(id),
                Err(e) => other_errors.push(format!("{id} (space freed): {e}")),
            }
        }
        store.close().await;
    }
    let store = Store::open(&location).await.unwrap();
    let mut missing = Vec::new();
    for id in &confirmed {
        if store.get(id).await.unwrap().is_none() {
            missing.push(id.clone());
        }
    }
    let embedded = store.movie_embeddings("model").await.unwrap().len();
    eprintln!(
        "sqlite store on a full tmpfs: {} cycles, {} writes confirmed, {refused} refused as disk full, \
         {} lost; slowest write {slowest:?}",
        cycles(),
        confirmed.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "confirmed but lost: {} of {}: {missing:?}", missing.len(), confirmed.len());
    assert_eq!(embedded, confirmed.len(), "every confirmed movie has its embedding");
    assert!(
        other_errors.is_empty(),
        "writes on a full disk failed with another error than disk full: {other_errors:?}"
    );
    // A refusal is at once: a lock wait (the 10 s busy timeout) would mean a transaction was left open.
    assert!(slowest < Duration::from_secs(5), "a write took {slowest:?}");
}

/// The real server with its artifacts and SQLite store on a filesystem that fills up under a stream
/// of adds: each is answered 201 or 507 (the JSON error body naming the full disk, at once), never
/// anything else; `/readyz` says writes are refused and why, reads keep answering, and writes are
/// taken again once space is freed. Then `kill -9`, the space freed, a restart: every add answered
/// 201 is served, with its vector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the downloaded model and ../shared (and root for the tmpfs): run scripts/test.sh"]
async fn a_full_disk_under_the_server_answers_507_and_loses_no_acknowledged_add() {
    let Some(fs) = Tmpfs::mount(64, "the server on a full disk") else { return };
    let dir = fs.path().join("artifacts");
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(serving::fixture()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let (mut acknowledged, mut answers) = (Vec::new(), std::collections::BTreeMap::<u16, usize>::new());
    let (mut slowest_refusal, mut refused_seen) = (Duration::ZERO, false);
    let add = |base: String, id: String| {
        let client = client.clone();
        async move {
            let title = format!("{id} {}", "a long title ".repeat(150));
            let body = json!({"id": id, "rating": 7.0, "votes": 10, "movie": {"title": title, "genres": ["Drama"]}});
            let t = Instant::now();
            let r = client.post(format!("{base}/v1/movies")).bearer_auth(KEY).json(&body).send().await.unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            (status, body, t.elapsed())
        }
    };
    for cycle in 0..cycles() {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut child = spawn(&dir, port);
        wait_ready(&client, &base, &mut child).await;
        fs.fill(256 << 10);
        for round in 0..2 {
            for n in 0..60 {
                let id = format!("disk-{cycle}-{round}-{n}");
                let (status, body, took) = add(base.clone(), id.clone()).await;
                *answers.entry(status.as_u16()).or_default() += 1;
                match status {
                    StatusCode::CREATED | StatusCode::OK => acknowledged.push(id),
                    StatusCode::INSUFFICIENT_STORAGE => {
                        assert_eq!(body["error"]["code"], "insufficient_storage", "{body}");
                        assert!(body["error"]["message"].as_str().unwrap().contains("disk is full"), "{body}");
                        slowest_refusal = slowest_refusal.max(took);
                        if !refused_seen {
                            refused_seen = true;
                            let ready: Value =
                                client.get(format!("{base}/readyz")).send().await.unwrap().json().await.unwrap();
                            assert_eq!(ready["store"]["writes"], "refused", "{ready}");
                            assert!(ready["store"]["writes_refused_because"].as_str().is_some(), "{ready}");
                        }
                    }
                    other => panic!("an add on a full disk answered {other}: {body}"),
                }
            }
            // Reads keep answering meanwhile.
            if let Some(id) = acknowledged.last() {
                let r = client.get(format!("{base}/v1/movies/{id}")).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::OK, "GET {id} while the disk is full");
            }
            if round == 0 {
                // Space back: the same server takes writes again by itself.
                fs.free();
                let id = format!("disk-{cycle}-resumed");
                let (status, body, _) = add(base.clone(), id.clone()).await;
                assert_eq!(status, StatusCode::CREATED, "after space was freed: {body}");
                acknowledged.push(id);
                let ready: Value = client.get(format!("{base}/readyz")).send().await.unwrap().json().await.unwrap();
                assert_eq!(ready["store"]["writes"], "accepted", "{ready}");
                fs.fill(256 << 10);
            }
        }
        child.kill().unwrap(); // SIGKILL, the disk still full
        child.wait().unwrap();
        fs.free();
    }
    assert!(refused_seen, "no add was ever refused: the disk never filled");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = spawn(&dir, port);
    wait_ready(&client, &base, &mut child).await;
    let mut missing = Vec::new();
    for id in &acknowledged {
        let movie = client.get(format!("{base}/v1/movies/{id}")).send().await.unwrap().status();
        let similar = client.get(format!("{base}/v1/movies/{id}/similar?k=3")).send().await.unwrap().status();
        if movie != StatusCode::OK || similar != StatusCode::OK {
            missing.push(id.clone());
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    eprintln!(
        "server on a full tmpfs: {} cycles, answers {answers:?}, {} acknowledged, {} lost after kill -9 and \
         restart; slowest 507 {slowest_refusal:?}",
        cycles(),
        acknowledged.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    // At once, not after a lock wait (the busy timeout is 10 s).
    assert!(slowest_refusal < Duration::from_secs(5), "a 507 took {slowest_refusal:?}");
}

// ---- the rest of the campaign: a read-only folder, a journal damaged in the middle, descriptor
// exhaustion, a build into a full disk ----

/// The real server binary on `dir` (artifacts and SQLite store), its log (`RUST_LOG=info`) written to
/// `log`; with `nofile`, under that descriptor limit (`ulimit -n`, set by a shell that then execs it).
fn spawn_logged(dir: &Path, port: u16, nofile: Option<u32>, log: &Path) -> std::process::Child {
    let limit = nofile.map(|n| format!("ulimit -n {n} && ")).unwrap_or_default();
    Command::new("sh")
        .arg("-c")
        .arg(format!("{limit}exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_cinevec"))
        .args(serving::serve_args(dir, port))
        .env("CINEVEC_API_KEY", KEY)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Stop `child` the way a service manager does (SIGTERM: a graceful stop) and wait for it.
fn terminate(child: &mut std::process::Child) {
    // SAFETY: kill(2) on a child this test started and has not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
}

/// Copy the fixture's files (artifacts and store) into `dir`.
fn copy_fixture(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(serving::fixture()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
}

fn add_body(id: &str, title: &str) -> Value {
    json!({"id": id, "rating": 7.0, "votes": 10, "movie": {"title": title, "genres": ["Drama"], "release_year": 2004}})
}

/// `POST /v1/movies` of `id`: the status and the JSON body.
async fn add(client: &reqwest::Client, base: &str, id: &str, title: &str) -> (StatusCode, Value) {
    let r = client.post(format!("{base}/v1/movies")).bearer_auth(KEY).json(&add_body(id, title)).send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The ids of `ids` that `base` does not serve (the movie and more like it, both 200).
async fn not_served(client: &reqwest::Client, base: &str, ids: &[String]) -> Vec<String> {
    let mut missing = Vec::new();
    for id in ids {
        let movie = client.get(format!("{base}/v1/movies/{id}")).send().await.unwrap().status();
        let similar = client.get(format!("{base}/v1/movies/{id}/similar?k=3")).send().await.unwrap().status();
        if movie != StatusCode::OK || similar != StatusCode::OK {
            missing.push(format!("{id} ({movie}, {similar})"));
        }
    }
    missing
}

/// The id of the fixture catalog's first movie (a matrix row, not a run-time add).
fn first_catalog_id(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("slice.jsonl")).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    first["id"].as_str().unwrap().to_string()
}

/// The artifacts folder (with the SQLite store in it) read-only at start: the server starts, serves
/// every movie (the catalog's and the run-time adds made before) and refuses each write with a clear
/// JSON error (503 with `Retry-After` naming the read-only store; never 500); `/readyz` says writes
/// are refused and why. Mounted read-write again, a restart takes writes and serves everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the downloaded model and ../shared (and root for the tmpfs): run scripts/test.sh"]
async fn a_read_only_artifacts_folder_serves_reads_and_refuses_writes_clearly() {
    let Some(fs) = Tmpfs::mount(64, "a read-only artifacts folder") else { return };
    let dir = fs.path().join("artifacts");
    copy_fixture(&dir);
    let log = tempfile::NamedTempFile::new().unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let (mut acknowledged, mut answers) = (Vec::new(), std::collections::BTreeMap::<u16, usize>::new());
    let base_id = first_catalog_id(&dir);
    for cycle in 0..cycles() {
        // Writable: adds, then a graceful stop.
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut child = spawn_logged(&dir, port, None, log.path());
        wait_ready(&client, &base, &mut child).await;
        for n in 0..3 {
            let id = format!("ro-{cycle}-{n}");
            let (status, body) = add(&client, &base, &id, &format!("Read Only Folder {cycle} {n}")).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            acknowledged.push(id);
        }
        terminate(&mut child);

        // Read-only: starts, reads answer, writes are refused clearly.
        fs.remount(true);
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut child = spawn_logged(&dir, port, None, log.path());
        let started = Instant::now();
        while client.get(format!("{base}/readyz")).send().await.map(|r| r.status() != StatusCode::OK).unwrap_or(true) {
            if let Some(exit) = child.try_wait().unwrap() {
                panic!(
                    "the server did not start on a read-only folder ({exit}): {}",
                    std::fs::read_to_string(log.path()).unwrap_or_default()
                );
            }
            assert!(started.elapsed() < Duration::from_secs(120), "not ready in 120 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut ids = acknowledged.clone();
        ids.push(base_id.clone());
        let missing = not_served(&client, &base, &ids).await;
        assert!(missing.is_empty(), "cycle {cycle}: not served from a read-only folder: {missing:?}");
        let found = client.get(format!("{base}/v1/search?q=read%20only%20folder")).send().await.unwrap();
        assert_eq!(found.status(), StatusCode::OK);
        let writes = [
            client.post(format!("{base}/v1/movies")).bearer_auth(KEY).json(&add_body("ro-refused", "Never Written")),
            client.delete(format!("{base}/v1/movies/{}", acknowledged[0])).bearer_auth(KEY),
        ];
        for (n, write) in writes.into_iter().enumerate() {
            let r = write.send().await.unwrap();
            let (status, retry) = (r.status(), r.headers().get("retry-after").is_some());
            let body: Value = r.json().await.unwrap();
            *answers.entry(status.as_u16()).or_default() += 1;
            assert!(
                status == StatusCode::SERVICE_UNAVAILABLE || status.is_client_error(),
                "cycle {cycle}: write {n} on a read-only folder answered {status}: {body}"
            );
            assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("read-only")), "{body}");
            if status == StatusCode::SERVICE_UNAVAILABLE {
                assert!(retry, "a 503 without Retry-After: {body}");
            }
        }
        let ready: Value = client.get(format!("{base}/readyz")).send().await.unwrap().json().await.unwrap();
        assert_eq!(ready["store"]["writes"], "refused", "{ready}");
        assert!(ready["store"]["writes_refused_because"].as_str().is_some_and(|m| m.contains("read-only")), "{ready}");
        // The refused delete changed nothing.
        let missing = not_served(&client, &base, &acknowledged[..1]).await;
        assert!(missing.is_empty(), "a refused delete took effect: {missing:?}");
        terminate(&mut child);
        fs.remount(false);
    }
    // Writable again: a write succeeds, and every acknowledged add is served.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = spawn_logged(&dir, port, None, log.path());
    wait_ready(&client, &base, &mut child).await;
    let (status, body) = add(&client, &base, "ro-after", "Writable Again").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    acknowledged.push("ro-after".into());
    let missing = not_served(&client, &base, &acknowledged).await;
    let served = client.get(format!("{base}/v1/movies/ro-refused")).send().await.unwrap().status();
    terminate(&mut child);
    eprintln!(
        "read-only artifacts folder: {} cycles, {} acknowledged, {} lost; writes while read-only answered {answers:?}",
        cycles(),
        acknowledged.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    assert_eq!(served, StatusCode::NOT_FOUND, "a refused add was served");
}

/// A journal with bad bytes in the middle of a record (not a torn tail: whole records follow it):
/// the start says so, does not use the journal and reads the store, so that every acknowledged add
/// is served, those journaled after the damage too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the downloaded model and ../shared: run scripts/test.sh"]
async fn a_journal_damaged_in_the_middle_is_refused_by_name_and_the_store_serves_every_add() {
    let dir = serving::fixture_copy();
    let log = tempfile::NamedTempFile::new().unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let journal = dir.path().join("catalog.journal");
    let mut acknowledged = Vec::new();
    // The first start reads the store and writes the snapshot and a new journal after it is ready.
    let port = free_port();
    let mut base = format!("http://127.0.0.1:{port}");
    let mut child = spawn_logged(dir.path(), port, None, log.path());
    wait_ready(&client, &base, &mut child).await;
    for cycle in 0..cycles() {
        let started = Instant::now();
        while !journal.exists() {
            assert!(started.elapsed() < Duration::from_secs(30), "no journal was started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = std::fs::metadata(&journal).unwrap().len();
        for n in 0..9 {
            let id = format!("jd-{cycle}-{n}");
            let (status, body) = add(&client, &base, &id, &format!("Journal Damage {cycle} {n} x")).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            acknowledged.push(id);
        }
        assert!(std::fs::metadata(&journal).unwrap().len() > before, "the adds were not journaled");
        child.kill().unwrap(); // SIGKILL: the journal stays as the adds left it
        child.wait().unwrap();
        // Bad bytes inside the fourth record's title: five whole records follow it.
        let mut bytes = std::fs::read(&journal).unwrap();
        let title = format!("Journal Damage {cycle} 3 x");
        let at = bytes.windows(title.len()).position(|w| w == title.as_bytes()).expect("the record's title");
        for b in &mut bytes[at + 3..at + 7] {
            *b ^= 0x5a;
        }
        std::fs::write(&journal, &bytes).unwrap();
        let port = free_port();
        let next = format!("http://127.0.0.1:{port}");
        child = spawn_logged(dir.path(), port, None, log.path());
        wait_ready(&client, &next, &mut child).await;
        let said = std::fs::read_to_string(log.path()).unwrap();
        assert!(
            said.contains("has a damaged record at byte") && said.contains("read from the store"),
            "cycle {cycle}: the start did not say why it did not use the journal: {said}"
        );
        assert!(dir.path().join("catalog.journal.damaged").exists(), "the damaged journal was not kept");
        let missing = not_served(&client, &next, &acknowledged).await;
        assert!(missing.is_empty(), "cycle {cycle}: acknowledged, journaled after the damage and lost: {missing:?}");
        // The damaged journal was moved aside: the next cycle waits for the new one this start writes
        // after it is ready (beside a new snapshot).
        base = next;
    }
    let _ = base;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    child.kill().unwrap();
    child.wait().unwrap();
    let mut child = spawn_logged(dir.path(), port, None, log.path());
    wait_ready(&client, &base, &mut child).await;
    let missing = not_served(&client, &base, &acknowledged).await;
    child.kill().unwrap();
    child.wait().unwrap();
    eprintln!(
        "journal damaged mid-record: {} cycles, {} acknowledged, {} lost; each start said so and read the store",
        cycles(),
        acknowledged.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
}

/// Storms the exhaustion case runs: one in the short version (a storm takes over a minute, its adds
/// waiting in the backlog behind the held connections), a third of `CINEVEC_FAULT_CYCLES` in the long.
fn storms() -> usize {
    (cycles() / 3).max(1)
}

/// The descriptor limit the exhaustion case runs the server under.
const LOW_NOFILE: u32 = 64;

/// Descriptor exhaustion: the server runs under `ulimit -n 64` and takes a storm of connections that
/// send nothing, or half a request head, far more than it has descriptors for, while adds and reads
/// go on beside them. It must not crash, must answer nothing 500, and serves again (every
/// acknowledged add included) once the storm is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the downloaded model and ../shared: run scripts/test.sh"]
async fn a_connection_storm_past_the_descriptor_limit_crashes_nothing_and_it_serves_after() {
    use tokio::io::AsyncWriteExt;
    let dir = serving::fixture_copy();
    let log = tempfile::NamedTempFile::new().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = spawn_logged(dir.path(), port, Some(LOW_NOFILE), log.path());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    wait_ready(&client, &base, &mut child).await;
    let (mut acknowledged, mut answers) = (Vec::new(), std::collections::BTreeMap::<String, usize>::new());
    let mut held_most = 0;
    for cycle in 0..storms() {
        // The storm: 400 connections, every other one with half a request head, held open.
        let mut storm = Vec::new();
        for n in 0..400 {
            let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
            if let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_millis(500), connect).await {
                if n % 2 == 1 {
                    let _ = stream.write_all(b"GET /v1/info HTTP/1.1\r\nHost: x\r\n").await;
                }
                storm.push(stream);
            }
        }
        held_most = held_most.max(storm.len());
        // Meanwhile, adds and reads on fresh connections: each answered (waiting in the backlog for a
        // slot is allowed), never 500.
        let mut during = Vec::new();
        for n in 0..4 {
            let id = format!("fd-{cycle}-{n}");
            let client = client.clone();
            let base = base.clone();
            during.push(tokio::spawn(async move {
                let sent = client
                    .post(format!("{base}/v1/movies"))
                    .bearer_auth(KEY)
                    .json(&add_body(&id, &format!("Descriptor Storm {cycle} {n}")))
                    .send()
                    .await;
                let read = client.get(format!("{base}/v1/search?q=storm")).send().await;
                (id, sent.map(|r| r.status()), read.map(|r| r.status()))
            }));
        }
        for task in during {
            let (id, sent, read) = task.await.unwrap();
            for (what, answer) in [("add", &sent), ("search", &read)] {
                let key = match answer {
                    Ok(status) => format!("{what} {}", status.as_u16()),
                    Err(_) => format!("{what} no answer"),
                };
                *answers.entry(key).or_default() += 1;
                if let Ok(status) = answer {
                    assert!(
                        !status.is_server_error() || *status == StatusCode::SERVICE_UNAVAILABLE,
                        "{what}: {status}"
                    );
                }
            }
            if matches!(sent, Ok(StatusCode::CREATED)) {
                acknowledged.push(id);
            }
        }
        drop(storm);
        assert!(
            child.try_wait().unwrap().is_none(),
            "cycle {cycle}: the server died in the storm: {}",
            tail(log.path())
        );
        // After it: ready, and a write succeeds.
        let started = Instant::now();
        loop {
            let ready = client.get(format!("{base}/readyz")).send().await.map(|r| r.status());
            if matches!(ready, Ok(StatusCode::OK)) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "cycle {cycle}: not serving 30 s after the storm");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let id = format!("fd-{cycle}-after");
        let (status, body) = add(&client, &base, &id, "After The Storm").await;
        assert_eq!(status, StatusCode::CREATED, "cycle {cycle}: a write after the storm: {body}");
        acknowledged.push(id);
    }
    let missing = not_served(&client, &base, &acknowledged).await;
    assert!(child.try_wait().unwrap().is_none(), "the server died: {}", tail(log.path()));
    child.kill().unwrap();
    child.wait().unwrap();
    eprintln!(
        "connection storm under ulimit -n {LOW_NOFILE}: {} cycles of 400 connections ({held_most} held open at \
         most), {} acknowledged, {} lost; answers during the storms {answers:?}",
        storms(),
        acknowledged.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "acknowledged but not served: {missing:?}");
}

/// The last lines of a log, for a failure message.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// `cinevec build` of the fixture's catalog slice with `artifacts` as its folder (the store in
/// `db`, elsewhere), a short head training: its exit status and its stderr.
fn build_into(artifacts: &Path, db: &Path) -> (std::process::ExitStatus, String) {
    let model = common::minilm_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_cinevec"))
        .arg("build")
        .arg("--catalog")
        .arg(serving::fixture().join("slice.jsonl"))
        .arg("--artifacts")
        .arg(artifacts)
        .arg("--db")
        .arg(db)
        .arg("--models-dir")
        .arg(model.parent().unwrap())
        .arg("--cpu")
        .env("CINEVEC_HEAD_EPOCHS", "5")
        .env("CINEVEC_HEAD_MEMBERS", "1")
        .output()
        .unwrap();
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Bytes of the files under `dir`, recursively.
fn size_of(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() { size_of(&entry.path()) } else { meta.len() };
    }
    total
}

/// Names of the temporary files (`.NAME.tmp-PID`, what an atomic write leaves when it is cut short)
/// under `dir`, recursively.
fn temporaries(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_dir() {
            found.extend(temporaries(&entry.path()));
        } else if name.contains(".tmp-") {
            found.push(entry.path().display().to_string());
        }
    }
    found
}

/// `cinevec build` into an artifacts folder on a full filesystem (filled to leave less room than its
/// outputs take, a different amount each cycle, so that a different step runs out): it fails with a
/// clear message (no space left, no panic), leaves no temporary file, and `serve` on that folder
/// (space freed) either refuses it, saying why, or serves the whole catalog; never a half-written set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the downloaded model and ../shared (and root for the tmpfs): run scripts/test.sh"]
async fn a_build_into_a_full_disk_fails_clearly_and_leaves_nothing_serve_accepts_half_written() {
    let Some(fs) = Tmpfs::mount(48, "a build into a full disk") else { return };
    let work = tempfile::tempdir().unwrap();
    // A whole build first, off the tmpfs: how much room its outputs take.
    let reference = work.path().join("reference");
    let (status, stderr) = build_into(&reference, &work.path().join("reference.db"));
    assert!(status.success(), "the reference build failed: {stderr}");
    let needed = size_of(&reference);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let (mut failed, mut refused, mut served) = (0, 0, 0);
    let mut messages = std::collections::BTreeSet::new();
    for cycle in 0..cycles() {
        let dir = fs.path().join(format!("artifacts-{cycle}"));
        let db = work.path().join(format!("catalog-{cycle}.db"));
        let leave = (needed as usize) * (cycle + 1) / (cycles() + 1);
        fs.fill(leave);
        let (status, stderr) = build_into(&dir, &db);
        fs.free();
        assert!(!stderr.contains("panicked"), "cycle {cycle}: the build panicked: {stderr}");
        if status.success() {
            // It fitted (the filesystem's own rounding): nothing to check but that it serves.
            eprintln!("cycle {cycle}: the build fitted in {leave} bytes");
        } else {
            failed += 1;
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_string();
            assert!(
                stderr.contains("No space left on device") || stderr.contains("disk is full"),
                "cycle {cycle}: a build on a full disk failed without saying so: {stderr}"
            );
            messages.insert(last);
        }
        let left = temporaries(&dir);
        assert!(left.is_empty(), "cycle {cycle}: temporary files left behind: {left:?}");
        // Serve what is there (space freed): a refusal that says why, or the whole catalog.
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let model = common::minilm_dir();
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_cinevec"))
            .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--cpu", "--model"])
            .arg(&model)
            .arg("--models-dir")
            .arg(model.parent().unwrap())
            .arg("--artifacts")
            .arg(&dir)
            .arg("--db")
            .arg(&db)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log.path()).unwrap())
            .spawn()
            .unwrap();
        let started = Instant::now();
        loop {
            if let Some(exit) = child.try_wait().unwrap() {
                let said = std::fs::read_to_string(log.path()).unwrap();
                assert!(
                    !exit.success() && said.contains("error"),
                    "cycle {cycle}: serve ended without saying why: {said}"
                );
                assert!(!said.contains("panicked"), "cycle {cycle}: serve panicked: {said}");
                refused += 1;
                break;
            }
            let ready = client.get(format!("{base}/readyz")).send().await.map(|r| r.status());
            if matches!(ready, Ok(StatusCode::OK)) {
                let info: Value = client.get(format!("{base}/v1/info")).send().await.unwrap().json().await.unwrap();
                let movies = info["counts"]["movies"].as_u64().unwrap_or(0) as usize;
                let first = first_catalog_id(serving::fixture());
                let similar = client.get(format!("{base}/v1/movies/{first}/similar?k=3")).send().await.unwrap();
                child.kill().unwrap();
                child.wait().unwrap();
                assert_eq!(movies, serving::SLICE, "cycle {cycle}: serve accepted a partial build: {info}");
                assert_eq!(similar.status(), StatusCode::OK, "cycle {cycle}");
                served += 1;
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "cycle {cycle}: serve neither refused nor started");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    eprintln!(
        "build into a full tmpfs: {} cycles ({needed} bytes of outputs), {failed} failed saying so, no temporary \
         file left; serve after it: {refused} refused, {served} served the whole catalog; last lines {messages:?}",
        cycles()
    );
    assert!(failed > 0, "no build ever ran out of space");
}
