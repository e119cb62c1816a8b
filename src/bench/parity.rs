//! `cinevec check-parity` (hidden): the engine against reference embeddings made by PyTorch, on
//! whatever device and dtype the engine runs. It is the test suite's parity check
//! (`tests/engine_parity.rs`) as a command, so that it can run where only the binary travels (a GPU
//! machine without a Rust toolchain: `scripts/gpu-bench.sh`).
//!
//! The reference file is `{"max_seq_length": N, "cases": [{"text", "embedding", "tokens_untruncated"}]}`
//! (`../shared/fixtures/minilm-reference.json`, or what `scripts/gpu_modernbert.py` writes). Three
//! checks: each text embedded alone against the reference, the whole set as one padded batch against
//! the reference, and the batch against the single embeddings (batch == single). Token counts must
//! match exactly.

use crate::models::ModelOptions;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::PathBuf;

/// `cinevec check-parity`'s settings.
#[derive(Debug, Clone)]
pub struct ParityOptions {
    /// Reference JSON (see the module's header).
    pub reference: PathBuf,
    /// Fail when any cosine similarity is below this.
    pub min_cosine: f64,
    pub model: ModelOptions,
    /// Write the results as JSON here too.
    pub json: Option<PathBuf>,
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

struct Worst {
    value: f64,
    case: usize,
}

impl Worst {
    fn new() -> Self {
        Worst { value: f64::INFINITY, case: 0 }
    }
    fn update(&mut self, value: f64, case: usize) {
        if value < self.value || value.is_nan() {
            *self = Worst { value, case };
        }
    }
}

pub fn run(args: &ParityOptions) -> Result<()> {
    let reference: Value = serde_json::from_slice(
        &std::fs::read(&args.reference).with_context(|| format!("cannot read {}", args.reference.display()))?,
    )
    .with_context(|| format!("{} is not JSON", args.reference.display()))?;
    let cases = reference["cases"].as_array().context("reference has no `cases` array")?;
    if cases.is_empty() {
        bail!("reference has no cases");
    }
    let mut texts = Vec::with_capacity(cases.len());
    let mut wanted = Vec::with_capacity(cases.len());
    for (i, case) in cases.iter().enumerate() {
        texts.push(case["text"].as_str().with_context(|| format!("case {i} has no text"))?);
        let v: Vec<f32> = case["embedding"]
            .as_array()
            .with_context(|| format!("case {i} has no embedding"))?
            .iter()
            .map(|x| x.as_f64().unwrap_or(f64::NAN) as f32)
            .collect();
        wanted.push(v);
    }

    // How different the reference vectors of different texts are: a check is only as sharp as this
    // (a random model whose outputs barely depend on the text passes whatever the engine computes).
    let mut pair_sum = 0f64;
    let mut pairs = 0usize;
    for i in 0..wanted.len() {
        for j in i + 1..wanted.len() {
            pair_sum += cosine(&wanted[i], &wanted[j]);
            pairs += 1;
        }
    }
    let spread = if pairs > 0 { pair_sum / pairs as f64 } else { f64::NAN };

    let embedder = args.model.load()?;
    let info = embedder.info().clone();
    if let Some(max) = reference["max_seq_length"].as_u64() {
        if max as usize != info.max_tokens {
            bail!("the reference was made with max {max} tokens, the engine truncates at {}", info.max_tokens);
        }
    }
    for (i, w) in wanted.iter().enumerate() {
        if w.len() != info.dim {
            bail!("case {i}: reference dimension {} but the model's is {}", w.len(), info.dim);
        }
    }

    let (mut single_ref, mut batch_ref, mut batch_single) = (Worst::new(), Worst::new(), Worst::new());
    let mut token_mismatches = Vec::new();
    let mut singles = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        let out = embedder.embed(&[text])?;
        single_ref.update(cosine(out.row(0), &wanted[i]), i);
        if let Some(tokens) = cases[i]["tokens_untruncated"].as_u64() {
            if out.encoded[0].untruncated_len != tokens as usize {
                token_mismatches.push((i, out.encoded[0].untruncated_len, tokens));
            }
        }
        singles.push(out.row(0).to_vec());
    }
    let batch = embedder.embed(&texts)?;
    for i in 0..texts.len() {
        batch_ref.update(cosine(batch.row(i), &wanted[i]), i);
        batch_single.update(cosine(batch.row(i), &singles[i]), i);
    }
    let lengths: Vec<usize> = batch.encoded.iter().map(|e| e.ids.len()).collect();

    println!(
        "parity: {} cases ({} to {} tokens) on {} in {}, threshold {}",
        texts.len(),
        lengths.iter().min().unwrap_or(&0),
        lengths.iter().max().unwrap_or(&0),
        info.device,
        info.dtype,
        args.min_cosine
    );
    println!("  reference vectors of different texts: mean cosine {spread:.4}");
    if spread > 0.99 {
        println!("  warning: the reference barely depends on the text, so this check cannot see much");
    }
    let rows =
        [("single vs reference", &single_ref), ("batch vs reference", &batch_ref), ("batch vs single", &batch_single)];
    let mut failed = !token_mismatches.is_empty();
    for (name, worst) in rows {
        let ok = worst.value >= args.min_cosine;
        failed |= !ok;
        println!(
            "  {name:<20} min cosine {:.8} (1 - cos = {:.1e}, case {}){}",
            worst.value,
            1.0 - worst.value,
            worst.case,
            if ok { "" } else { "  BELOW THRESHOLD" }
        );
    }
    for (i, got, want) in &token_mismatches {
        println!("  case {i}: {got} tokens, reference says {want}");
    }
    if let Some(path) = &args.json {
        let out = json!({
            "reference": args.reference,
            "model_dir": info.model_dir,
            "device": info.device,
            "dtype": info.dtype,
            "cases": texts.len(),
            "min_cosine_single_vs_reference": single_ref.value,
            "min_cosine_batch_vs_reference": batch_ref.value,
            "min_cosine_batch_vs_single": batch_single.value,
            "token_mismatches": token_mismatches.len(),
            "reference_mean_pairwise_cosine": spread,
            "threshold": args.min_cosine,
            "passed": !failed,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&out)?)?;
    }
    if failed {
        bail!("parity FAILED (threshold {})", args.min_cosine);
    }
    println!("parity: ok");
    Ok(())
}
