//! `cinevec embed` end to end: real model, real catalog slice, artifacts written atomically.

mod common;

use cinevec::artifacts;
use cinevec::engine::{Embedder, EngineOptions};
use cinevec::movie::MovieDoc;
use std::process::Command;

fn cinevec() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cinevec"));
    // f32, so that the vectors equal the library's default engine's (`auto` may pick bf16 here).
    cmd.env("CINEVEC_MODELS_DIR", common::minilm_dir().parent().unwrap()).env("CINEVEC_DTYPE", "f32");
    cmd
}

/// The first `n` lines of the imdb5000 catalog plus one malformed line and one duplicate.
fn catalog_slice(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let text = std::fs::read_to_string(common::shared().join("data/imdb5000/catalog.jsonl")).unwrap();
    let mut lines: Vec<&str> = text.lines().take(n).collect();
    lines.insert(3, "{\"id\": \"broken\", \"movie\": {\"title\": 5}}");
    let dup = lines[0];
    lines.push(dup);
    let path = dir.join("slice.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

#[test]
#[ignore = "needs the downloaded model and ../shared: run scripts/test.sh"]
fn embeds_a_catalog_into_a_loadable_set() {
    let tmp = tempfile::tempdir().unwrap();
    let catalog = catalog_slice(tmp.path(), 40);
    let out = tmp.path().join("artifacts");
    let run = cinevec()
        .args(["embed", "--catalog"])
        .arg(&catalog)
        .arg("--out")
        .arg(&out)
        .args(["--batch-size", "7"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "embed failed: {}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("embedded 40 movies"), "{stdout}");
    assert!(stdout.contains("skipped 1 malformed lines and 1 duplicate ids"), "{stdout}");

    let set = artifacts::load_embeddings(&out).unwrap();
    assert_eq!(set.manifest.rows, 40);
    assert_eq!(set.manifest.dim, 384);
    assert_eq!(set.manifest.doc_format, cinevec::movie::DOC_FORMAT_VERSION);
    assert_eq!(set.manifest.model.weights_sha256, cinevec::models::DEFAULT_MODEL_SHA256);

    // Rows are in catalog order and equal the engine's own embedding of the canonical document.
    let embedder = Embedder::load(&common::minilm_dir(), &EngineOptions::default()).unwrap();
    let text = std::fs::read_to_string(&catalog).unwrap();
    let records: Vec<_> =
        text.lines().filter_map(|l| cinevec::catalog::jsonl::CatalogRecord::parse_line(l).ok()).take(40).collect();
    assert_eq!(set.ids, records.iter().map(|r| r.id.clone()).collect::<Vec<_>>());
    for i in [0usize, 17, 39] {
        let doc: &MovieDoc = &records[i].movie;
        let direct = embedder.embed(&[&doc.render()]).unwrap();
        let cos = common::cosine(set.row(i), direct.row(0));
        assert!(cos >= 0.9999, "row {i}: cosine {cos}");
    }
    for i in 0..set.manifest.rows {
        let norm: f32 = set.row(i).iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }
}

#[test]
#[ignore = "needs the downloaded model and ../shared: run scripts/test.sh"]
fn strict_mode_fails_on_the_first_bad_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let catalog = catalog_slice(tmp.path(), 10);
    let out = tmp.path().join("artifacts");
    let run = cinevec().args(["embed", "--strict", "--catalog"]).arg(&catalog).arg("--out").arg(&out).output().unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("slice.jsonl:4") && stderr.contains("`title`"), "{stderr}");
    assert!(!out.join(artifacts::MANIFEST_FILE).exists());
}

#[test]
fn a_missing_model_is_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_cinevec"))
        .env("CINEVEC_MODELS_DIR", tmp.path())
        .args(["embed", "--catalog", "nothing.jsonl"])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("run `cinevec model fetch` first"), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
}

#[test]
fn an_unreachable_hub_is_one_clear_sentence_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_cinevec"))
        // A closed local port: the hub is unreachable whatever network the test machine has.
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .args(["model", "fetch", "Alibaba-NLP/gte-modernbert-base", "--models-dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("cannot reach the Hugging Face hub"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.iter().all(|n| n.to_string_lossy().starts_with(".hf-cache")), "left behind: {left:?}");
}

#[test]
#[ignore = "needs ../shared: run scripts/test.sh"]
fn a_local_folder_is_checked_in_place() {
    let dir = common::shared().join("fixtures/tiny-modernbert");
    let run = Command::new(env!("CARGO_BIN_EXE_cinevec")).args(["model", "fetch"]).arg(&dir).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("ModernBert, dim 64, cls pooling, max 512 tokens"), "{stdout}");

    let empty = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_cinevec")).args(["model", "fetch"]).arg(empty.path()).output().unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("missing config.json, tokenizer.json, model.safetensors"), "{stderr}");
}
