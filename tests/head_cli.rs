//! `cinevec train` end to end: an embedding set and a catalog in, a loadable head and a report out.

mod common;
mod head_support;

use cinevec::artifacts;
use cinevec::head::Head;
use std::io::Write;
use std::path::Path;
use std::process::Command;

/// A synthetic embedding set in `dir` whose manifest points at a catalog JSONL with the ratings (all
/// movies but the last three are rated; the catalog also rates a movie the set does not have).
fn fixture(dir: &Path, n: usize) -> artifacts::Manifest {
    let data = head_support::synthetic(n, 8, 21);
    let catalog = dir.join("catalog.jsonl");
    let mut f = std::fs::File::create(&catalog).unwrap();
    for (i, id) in data.ids.iter().enumerate() {
        let rating = if i < n - 3 { format!("{:.1}", data.y[i]) } else { "null".into() };
        writeln!(f, r#"{{"id": "{id}", "rating": {rating}, "votes": 100, "movie": {{"title": "Movie {i}"}}}}"#)
            .unwrap();
    }
    writeln!(f, r#"{{"id": "elsewhere", "rating": 7.0, "movie": {{"title": "Not embedded"}}}}"#).unwrap();
    let mut manifest = head_support::manifest(n, 8);
    manifest.input = catalog.display().to_string();
    artifacts::write_embeddings(dir, &manifest, &data.ids, &data.x).unwrap();
    manifest
}

fn train(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cinevec"));
    cmd.arg("train").arg("--artifacts").arg(dir);
    cmd
}

#[test]
fn train_writes_a_head_that_loads_and_a_report() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = fixture(tmp.path(), 600);
    let run = train(tmp.path())
        .args(["--width", "32", "--depth", "2", "--dropout", "0.1", "--batch-size", "64", "--members", "2"])
        .args(["--blend", "auto", "--target", "ridge-residual", "--lr", "0.003"])
        .env("CINEVEC_HEAD_EPOCHS", "25")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "train failed: {}", String::from_utf8_lossy(&run.stderr));
    for row in ["| mean |", "| ridge |", "| head |", "head ÷ mean", "samples/s", "80% interval"] {
        assert!(stdout.contains(row), "missing `{row}` in:\n{stdout}");
    }

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("train-report.json")).unwrap()).unwrap();
    assert_eq!(report["split"]["test"], 60, "10% of the 597 rated movies");
    assert_eq!(report["ratings"]["unrated_rows"], 3);
    assert_eq!(report["config"]["mlp"]["epochs"], 25, "the environment fallback was not used");
    assert_eq!(report["members"].as_array().unwrap().len(), 2);
    let test_mse = |model: &str| {
        report["models"].as_array().unwrap().iter().find(|m| m["model"] == model).unwrap()["test"]["mse"]
            .as_f64()
            .unwrap()
    };
    assert!(test_mse("head") < test_mse("ridge") && test_mse("ridge") < test_mse("mean"), "{report}");
    let ratio = report["head_over_mean_test_mse"].as_f64().unwrap();
    assert!((ratio - test_mse("head") / test_mse("mean")).abs() < 1e-12);

    let head = Head::load(tmp.path(), &manifest).unwrap();
    assert_eq!(head.spec().embeddings.run_id, manifest.run_id);
    assert_eq!(head.spec().mlp.hidden, vec![32, 32]);
    let set = artifacts::load_embeddings(tmp.path()).unwrap();
    let preds = head.predict(&set.matrix[..8 * 5], 8).unwrap();
    assert_eq!(preds.len(), 5);
    assert!(preds.iter().all(|p| p.low <= p.rating && p.rating <= p.high));
}

#[test]
fn cross_fitting_holds_every_movie_out_once() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = fixture(tmp.path(), 400);
    let run = train(tmp.path())
        .args([
            "--folds",
            "4",
            "--members",
            "2",
            "--width",
            "16",
            "--depth",
            "1",
            "--epochs",
            "6",
            "--batch-size",
            "64",
        ])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("train-report.json")).unwrap()).unwrap();
    // 397 rated: 40 for test, the other 357 each validated once and trained on by the other folds.
    assert_eq!(report["split"]["folds"], 4);
    assert_eq!(report["split"]["test"], 40);
    assert_eq!(report["split"]["val"], 357);
    assert_eq!(report["split"]["train"], 357);
    assert_eq!(report["interval"]["from_validation_residuals"], 357);
    assert_eq!(report["members"].as_array().unwrap().len(), 8);
    let head = Head::load(tmp.path(), &manifest).unwrap();
    assert_eq!(head.spec().members, 8);
}

#[test]
fn a_head_is_refused_once_the_set_is_re_embedded() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path(), 200);
    let run = train(tmp.path()).args(["--width", "8", "--depth", "1", "--epochs", "2"]).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    // A new `cinevec embed` run over the same folder.
    fixture(tmp.path(), 200);
    let manifest = artifacts::read_manifest(tmp.path()).unwrap();
    let err = Head::load(tmp.path(), &manifest).unwrap_err().to_string();
    assert!(err.contains("re-run `cinevec train`"), "{err}");
}

#[test]
fn bad_settings_are_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path(), 100);
    let run = train(tmp.path()).args(["--dropout", "1.0", "--epochs", "1"]).output().unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("dropout must be in [0, 1)"), "{stderr}");
    let run = train(tmp.path()).args(["--blend", "2"]).output().unwrap();
    assert!(String::from_utf8_lossy(&run.stderr).contains("expected `auto` or a weight from 0 to 1"));
    assert!(!tmp.path().join("head.json").exists());
}

/// The real thing, small: the default model embeds 600 imdb5000 movies, `cinevec train` fits a head.
#[test]
#[ignore = "needs the downloaded model and ../shared: run scripts/test.sh"]
fn trains_on_real_embeddings() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(common::shared().join("data/imdb5000/catalog.jsonl")).unwrap();
    let catalog = tmp.path().join("catalog.jsonl");
    std::fs::write(&catalog, text.lines().take(600).collect::<Vec<_>>().join("\n")).unwrap();
    let out = tmp.path().join("artifacts");
    let embed = Command::new(env!("CARGO_BIN_EXE_cinevec"))
        .env("CINEVEC_MODELS_DIR", common::minilm_dir().parent().unwrap())
        .args(["embed", "--catalog"])
        .arg(&catalog)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(embed.status.success(), "{}", String::from_utf8_lossy(&embed.stderr));
    let run = train(&out).args(["--epochs", "40", "--members", "1"]).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("train-report.json")).unwrap()).unwrap();
    let models = report["models"].as_array().unwrap();
    let val = |name: &str| models.iter().find(|m| m["model"] == name).unwrap()["val"]["mse"].as_f64().unwrap();
    assert!(val("ridge") < val("mean") && val("head") < val("mean"), "{report}");

    let manifest = artifacts::read_manifest(&out).unwrap();
    let head = Head::load(&out, &manifest).unwrap();
    assert_eq!(head.dim(), 384);
    let set = artifacts::load_embeddings(&out).unwrap();
    let preds = head.predict(&set.matrix, 384).unwrap();
    assert_eq!(preds.len(), set.ids.len());
    assert!(preds.iter().all(|p| (1.0..=10.0).contains(&p.rating)));
}
