//! Small, self-made fixtures for the rating-head tests: a learnable synthetic problem, a manifest, a
//! fast training configuration.
#![allow(dead_code)]

use cinevec::artifacts::{self, Manifest, ModelRecord};
use cinevec::engine::{Architecture, Pooling};
use cinevec::head::data::{Dataset, Rng};
use cinevec::head::fit::{Blend, HeadTraining};
use cinevec::head::train::MlpTraining;
use cinevec::head::TargetKind;

/// `rating = 5 + 1.5·tanh(2·x0·x1) + 0.8·x2 + small noise`: the interaction term is out of reach of a
/// linear model, easy for a small MLP.
pub fn synthetic(n: usize, dim: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let mut x = Vec::with_capacity(n * dim);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let row: Vec<f32> = (0..dim).map(|_| (rng.next_f32() * 2.0 - 1.0) * 3f32.sqrt()).collect();
        let noise = (rng.next_f32() as f64 - 0.5) * 0.2;
        let r = 5.0 + 1.5 * (2.0 * row[0] as f64 * row[1] as f64).tanh() + 0.8 * row[2] as f64 + noise;
        y.push(r.clamp(1.0, 10.0));
        x.extend(row);
    }
    Dataset { dim, ids: (0..n).map(|i| format!("m{i:05}")).collect(), x, y }
}

pub fn manifest(rows: usize, dim: usize) -> Manifest {
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

/// A small, fast configuration (seconds on a laptop core).
pub fn small_training(epochs: usize) -> HeadTraining {
    HeadTraining {
        mlp: MlpTraining {
            width: 32,
            depth: 2,
            dropout: 0.0,
            input_dropout: 0.0,
            epochs,
            batch_size: 64,
            learning_rate: 3e-3,
            min_lr_fraction: 0.0,
            weight_decay: 1e-3,
            restart_epochs: 0,
            restart_mult: 1,
            patience: 0,
            members: 1,
        },
        target: TargetKind::Rating,
        standardize: true,
        blend: Blend::Fixed(0.0),
        interval: 0.8,
        seed: 7,
    }
}
