//! Helpers for the ingest tests: run the real binary, read the store back through the library.
#![allow(dead_code)]

use cinevec::catalog::{Store, StoredMovie};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary, with no CINEVEC_* settings leaking in from the environment.
pub fn cinevec() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cinevec"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CINEVEC_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Run, returning (success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let Output { status, stdout, stderr } = cmd.output().expect("cannot run cinevec");
    (status.success(), String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned())
}

/// Run and require success; stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let (ok, stdout, stderr) = run(cmd);
    assert!(ok, "cinevec failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    stdout
}

pub fn ingest(args: &[&str], source: &Path, db: &Path) -> Command {
    let mut cmd = cinevec();
    cmd.arg("ingest").args(args).arg(source).arg("--db").arg(db);
    cmd
}

pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// Every movie of the store at `db`, in id order.
pub fn stored(db: &Path) -> Vec<StoredMovie> {
    block_on(async {
        let store = Store::open(db.to_str().unwrap()).await.unwrap();
        let mut all = Vec::new();
        loop {
            let page = store.movies_after(all.last().map(|m: &StoredMovie| m.id.as_str()), 1000).await.unwrap();
            if page.is_empty() {
                break;
            }
            all.extend(page);
        }
        store.close().await;
        all
    })
}

pub fn count(db: &Path) -> u64 {
    block_on(async {
        let store = Store::open(db.to_str().unwrap()).await.unwrap();
        let n = store.count().await.unwrap();
        store.close().await;
        n
    })
}

/// Write `text` to `path`, gzipped when the name ends in `.gz`.
pub fn write(path: &Path, text: &str) {
    if path.extension().is_some_and(|e| e == "gz") {
        let file = std::fs::File::create(path).unwrap();
        let mut enc = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap();
    } else {
        std::fs::write(path, text).unwrap();
    }
}

/// The number after `label` in a report, e.g. `number(out, "kept ")`.
pub fn number(report: &str, label: &str) -> u64 {
    let at = report.find(label).unwrap_or_else(|| panic!("{label:?} not in report:\n{report}")) + label.len();
    let digits: String = report[at..].trim_start().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| panic!("no number after {label:?} in report:\n{report}"))
}

/// The report line starting with `prefix`.
pub fn line<'a>(report: &'a str, prefix: &str) -> &'a str {
    report.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix:?} line in:\n{report}"))
}

pub fn shared() -> PathBuf {
    let dir = std::env::var_os("CINEVEC_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    assert!(dir.is_dir(), "{} not found: these tests need the shared data folder beside the repository", dir.display());
    dir
}
