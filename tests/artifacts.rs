//! Embedding sets on disk: a mix of files from two runs (an interrupted `cinevec embed`) never loads.

use cinevec::artifacts::{self, Manifest, ModelRecord};
use cinevec::engine::{Architecture, Pooling};

fn manifest(rows: usize, dim: usize) -> Manifest {
    Manifest {
        format: artifacts::MANIFEST_FORMAT.into(),
        run_id: artifacts::new_run_id(),
        created_at: artifacts::now_rfc3339(),
        model: ModelRecord {
            source: "test".into(),
            architecture: Architecture::Bert,
            weights_sha256: "00".into(),
            pooling: Pooling::Mean,
            max_tokens: 8,
        },
        dim,
        rows,
        doc_format: cinevec::movie::DOC_FORMAT_VERSION.into(),
        truncated: 0,
        input: "test.jsonl".into(),
        input_sha256: "11".into(),
        device: "cpu".into(),
        dtype: "f32".into(),
        seconds: 0.0,
    }
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("m{i}")).collect()
}

#[test]
fn a_written_set_loads_back_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manifest(3, 2);
    let matrix = vec![1.0, 0.0, 0.0, 1.0, 0.6, 0.8];
    artifacts::write_embeddings(tmp.path(), &m, &ids(3), &matrix).unwrap();
    let set = artifacts::load_embeddings(tmp.path()).unwrap();
    assert_eq!(set.manifest, m);
    assert_eq!(set.matrix, matrix);
    assert_eq!(set.row(2), &[0.6, 0.8]);
    assert_eq!(set.ids, ids(3));
}

#[test]
fn a_matrix_from_an_interrupted_run_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    artifacts::write_embeddings(tmp.path(), &manifest(2, 2), &ids(2), &[1.0, 0.0, 0.0, 1.0]).unwrap();
    // A second run that died after replacing the matrix but before its manifest.
    let newer = tempfile::tempdir().unwrap();
    artifacts::write_embeddings(newer.path(), &manifest(2, 2), &ids(2), &[0.0, 1.0, 1.0, 0.0]).unwrap();
    std::fs::copy(newer.path().join(artifacts::MATRIX_FILE), tmp.path().join(artifacts::MATRIX_FILE)).unwrap();
    let err = artifacts::load_embeddings(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("another run"), "{err}");
}

#[test]
fn ids_from_another_run_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    artifacts::write_embeddings(tmp.path(), &manifest(2, 2), &ids(2), &[1.0, 0.0, 0.0, 1.0]).unwrap();
    let newer = tempfile::tempdir().unwrap();
    artifacts::write_embeddings(newer.path(), &manifest(2, 2), &ids(2), &[1.0, 0.0, 0.0, 1.0]).unwrap();
    std::fs::copy(newer.path().join(artifacts::IDS_FILE), tmp.path().join(artifacts::IDS_FILE)).unwrap();
    assert!(artifacts::load_embeddings(tmp.path()).unwrap_err().to_string().contains("another run"));
}

#[test]
fn a_truncated_matrix_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    artifacts::write_embeddings(tmp.path(), &manifest(2, 2), &ids(2), &[1.0, 0.0, 0.0, 1.0]).unwrap();
    let path = tmp.path().join(artifacts::MATRIX_FILE);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
    assert!(artifacts::load_embeddings(tmp.path()).is_err());
}

#[test]
fn no_temporary_files_are_left_behind() {
    let tmp = tempfile::tempdir().unwrap();
    artifacts::write_embeddings(tmp.path(), &manifest(1, 2), &ids(1), &[1.0, 0.0]).unwrap();
    let mut names: Vec<_> =
        std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, [artifacts::IDS_FILE, artifacts::MANIFEST_FILE, artifacts::MATRIX_FILE]);
}
