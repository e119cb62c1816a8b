//! The service benchmark's two halves that live in the binary (`scripts/bench-service.sh` drives them
//! and the real server):
//!
//! - [`generate`] (`cinevec gen-service`): a complete artifact set at the reference scale (242,552
//!   movies): a catalog store of realistic movie documents, embedding-like unit vectors for each asked
//!   dimension (low-rank structure from the movies' genres, director, actors and decade, plus noise),
//!   and, for a dimension the local model has, a rating head trained on them by `cinevec train`'s code.
//! - [`bench_index`] (`cinevec bench-index`): loads an embedding set and its graph the way the server does
//!   and measures load or build time, recall@10 against brute force per `ef`, and peak memory. This is
//!   how the 768-d set is measured: there is no 768-d model here to serve it with.
//!
//! The vectors are synthetic on purpose: embedding 242k documents with the real model would take hours
//! on this machine. Their structure is what matters to the index (neighbours share a director, cast or
//! genres; every vector shares a common direction, as sentence embeddings do), and it is reported
//! ([`VectorStats`]) so that the choice can be judged.

use crate::artifacts::{self, Manifest, ModelRecord};
use crate::catalog::jsonl::CatalogRecord;
use crate::catalog::store::{MovieRow, Store};
use crate::engine::{Architecture, ModelSpec, Pooling};
use crate::head::fit::HeadTraining;
use crate::index::{search_exact, IndexParams, VectorIndex};
use crate::models::ModelOptions;
use crate::movie::{MovieDoc, DOC_FORMAT_VERSION};
use crate::pipeline::train::{self, RatingsSource, TrainOptions};
use crate::rng::Rng;
use anyhow::{Context, Result};
use rayon::prelude::*;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `cinevec gen-service`'s settings (see `crate::cli::GenServiceArgs` for each one's meaning).
#[derive(Debug, Clone)]
pub struct GenServiceOptions {
    pub out: PathBuf,
    pub rows: usize,
    pub dims: Vec<usize>,
    pub data_seed: u64,
    pub noise: f32,
    pub no_head: bool,
    pub model: ModelOptions,
    pub head: HeadTraining,
}

/// Where `cinevec bench-index`'s searches start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SearchStart {
    Entry,
    #[value(name = "self")]
    SelfRow,
}

/// Which copy of the vectors `cinevec bench-index`'s searches walk the graph on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Traversal {
    Int8,
    F32,
}

/// `cinevec bench-index`'s settings (see `crate::cli::BenchIndexArgs`).
#[derive(Debug, Clone)]
pub struct BenchIndexOptions {
    pub artifacts: PathBuf,
    pub rebuild: bool,
    pub queries: usize,
    pub k: usize,
    pub ef: Vec<usize>,
    pub start: SearchStart,
    pub traversal: Traversal,
    pub hnsw_m: usize,
    pub hnsw_ef_construction: usize,
    pub json: Option<PathBuf>,
}

/// Movies in the reference catalog (the IMDb movies with a rating and at least 30 votes).
pub const REFERENCE_ROWS: usize = 242_552;
/// Rank of the shared structure.
const LATENT: usize = 64;
pub const CATALOG_DB: &str = "catalog.db";
pub const CATALOG_JSONL: &str = "catalog.jsonl";

/// Draws of the generator on top of the shared generator.
trait Draw {
    fn skewed(&mut self, n: usize, power: f64) -> usize;
    fn gauss(&mut self) -> f32;
    fn gauss_vec(&mut self, n: usize) -> Vec<f32>;
}

impl Draw for Rng {
    /// A popularity-skewed pick in `0..n`: low indices are drawn far more often (a few prolific
    /// directors and stars, a long tail).
    fn skewed(&mut self, n: usize, power: f64) -> usize {
        ((self.unit().powf(power) * n as f64) as usize).min(n - 1)
    }
    fn gauss(&mut self) -> f32 {
        let (u, v) = (self.unit().max(1e-300), self.unit());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
    fn gauss_vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.gauss()).collect()
    }
}

const STREAM_MOVIE: u64 = 1;
const STREAM_GENRE: u64 = 2;
const STREAM_PERSON: u64 = 3;
const STREAM_DECADE: u64 = 4;
const STREAM_OWN: u64 = 5;
const STREAM_NOISE: u64 = 6;
const STREAM_BASIS: u64 = 7;
const STREAM_RATING: u64 = 8;

/// Genres with a rough share of IMDb movies (weights, not probabilities).
const GENRES: &[(&str, f64)] = &[
    ("Drama", 30.0),
    ("Comedy", 18.0),
    ("Thriller", 8.0),
    ("Romance", 8.0),
    ("Action", 8.0),
    ("Crime", 7.0),
    ("Horror", 7.0),
    ("Documentary", 7.0),
    ("Adventure", 5.0),
    ("Mystery", 4.0),
    ("Family", 3.5),
    ("Biography", 3.0),
    ("Fantasy", 3.0),
    ("Sci-Fi", 3.0),
    ("History", 2.5),
    ("Music", 2.5),
    ("Animation", 2.0),
    ("War", 2.0),
    ("Musical", 1.5),
    ("Western", 1.5),
    ("Sport", 1.5),
    ("Film-Noir", 0.5),
];

const TITLE_WORDS: &[&str] = &[
    "Night", "Love", "House", "Blood", "Last", "Dark", "Man", "Woman", "City", "Dead", "Life", "World", "Girl", "Boy",
    "Time", "Return", "Day", "Story", "Secret", "Home", "King", "Queen", "War", "Heart", "Summer", "Winter", "River",
    "Road", "Game", "Shadow", "Fire", "Stranger", "Dream", "Island", "Lost", "Murder", "Ghost", "Wild", "Silent",
    "Golden", "Red", "Black", "White", "Blue", "Sea", "Moon", "Sun", "Angel", "Devil", "Brother", "Sister", "Mother",
    "Father", "Kiss", "Escape", "Hunter", "Empire", "Journey", "Promise", "Storm", "Garden", "Train", "Letter",
    "Widow", "Thief", "Soldier", "Hotel", "Café", "Amélie", "Señor", "Élan", "Noël",
];
const FIRST_NAMES: &[&str] = &[
    "John", "Mary", "James", "Anna", "Robert", "Linda", "Michael", "Sofia", "David", "Elena", "William", "Claire",
    "Richard", "Marie", "Thomas", "Laura", "Charles", "Julia", "Daniel", "Nadia", "Paul", "Sarah", "Mark", "Emma",
    "George", "Alice", "Kenji", "Yuki", "Luis", "Carmen", "Pierre", "Chloé", "Hans", "Ingrid", "Raj", "Priya", "Ahmed",
    "Leila", "Ivan", "Olga", "Marco", "Giulia", "Seo-yeon", "Min-jun", "Kwame", "Ama", "Diego", "Lucía", "Lars",
    "Astrid", "Omar", "Zeynep", "Tomás", "Inês", "Pavel", "Ewa", "Wei", "Mei", "Jean", "Sanjay", "Aiko", "Björn",
    "Fatima", "Hugo",
];
const LAST_HEADS: &[&str] = &[
    "Ander", "Bal", "Car", "Dal", "Eber", "Fal", "Gar", "Hal", "Ing", "Jar", "Kel", "Lind", "Mar", "Nor", "Ols", "Pet",
    "Quin", "Ros", "Sal", "Tor", "Ul", "Van", "Wes", "Yor", "Zel", "Brand", "Crom", "Dun", "Fern", "Holm", "Kirk",
    "Mont",
];
const LAST_TAILS: &[&str] = &[
    "son", "berg", "ton", "ley", "man", "ez", "ini", "ova", "sky", "ford", "well", "wood", "stein", "ström", "ard",
    "ier", "elli", "oglu", "ski", "sen", "quist", "haus", "by", "worth", "dale", "more", "ridge", "field", "ano",
    "escu", "ić", "ura",
];

/// A person's name: a bijection of the index (up to ~1.7 M people), so two people never share a name.
fn person_name(p: usize) -> String {
    let (f, rest) = (p % FIRST_NAMES.len(), p / FIRST_NAMES.len());
    let (h, rest) = (rest % LAST_HEADS.len(), rest / LAST_HEADS.len());
    let (t, rest) = (rest % LAST_TAILS.len(), rest / LAST_TAILS.len());
    let last = format!("{}{}", LAST_HEADS[h], LAST_TAILS[t]);
    match rest {
        0 => format!("{} {last}", FIRST_NAMES[f]),
        n => format!("{} {}. {last}", FIRST_NAMES[f], (b'A' + ((n - 1) % 26) as u8) as char),
    }
}

/// One synthetic movie's facts: what its document says and what its vector is built from.
struct Facts {
    year: i64,
    runtime: i64,
    genres: Vec<usize>,
    director: usize,
    writers: Vec<usize>,
    actors: Vec<usize>,
    title: String,
}

/// How many distinct people play each role, for `rows` movies.
struct Population {
    directors: usize,
    actors: usize,
    writers: usize,
}

impl Population {
    fn for_rows(rows: usize) -> Self {
        Population { directors: (rows / 4).max(1), actors: (rows * 3 / 4).max(1), writers: (rows / 3).max(1) }
    }
    /// People are one name space: directors first, then actors (overlapping the last directors, who
    /// also act), then writers.
    fn actor_person(&self, a: usize) -> usize {
        self.directors - self.directors / 10 + a
    }
    fn writer_person(&self, w: usize) -> usize {
        self.directors + self.actors + w
    }
}

fn pick_genre(r: &mut Rng) -> usize {
    let total: f64 = GENRES.iter().map(|g| g.1).sum();
    let mut x = r.unit() * total;
    for (i, (_, w)) in GENRES.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    0
}

fn facts(seed: u64, i: usize, pop: &Population) -> Facts {
    let mut r = Rng::for_item(seed, STREAM_MOVIE, i as u64);
    let year = 2025 - (r.unit().powf(1.8) * 110.0) as i64;
    let runtime = 70 + r.below_u64(80) as i64 + if r.unit() < 0.1 { r.below_u64(60) as i64 } else { 0 };
    let mut genres = Vec::new();
    for _ in 0..1 + r.below_u64(3) {
        let g = pick_genre(&mut r);
        if !genres.contains(&g) {
            genres.push(g);
        }
    }
    let director = r.skewed(pop.directors, 1.6);
    let mut actors = Vec::new();
    for _ in 0..3 + r.below_u64(4) {
        let a = r.skewed(pop.actors, 2.2);
        if !actors.contains(&a) {
            actors.push(a);
        }
    }
    let writers = (0..r.below_u64(3)).map(|_| r.skewed(pop.writers, 1.5)).collect();
    let words = 1 + r.skewed(4, 1.5);
    let mut title = String::new();
    if r.unit() < 0.3 {
        title.push_str("The ");
    }
    for w in 0..words {
        if w > 0 {
            title.push(' ');
        }
        title.push_str(TITLE_WORDS[r.below_u64(TITLE_WORDS.len() as u64) as usize]);
    }
    if r.unit() < 0.05 {
        title.push_str(&format!(" {}", 2 + r.below_u64(3)));
    }
    Facts { year, runtime, genres, director, writers, actors, title }
}

fn document(f: &Facts, pop: &Population) -> MovieDoc {
    let mut doc = json!({
        "title": f.title,
        "genres": f.genres.iter().map(|&g| GENRES[g].0).collect::<Vec<_>>(),
        "release_year": f.year,
        "runtime_minutes": f.runtime,
        "directors": [person_name(f.director)],
    });
    if !f.writers.is_empty() {
        doc["writers"] = json!(f.writers.iter().map(|&w| person_name(pop.writer_person(w))).collect::<Vec<_>>());
    }
    doc["actors"] = json!(f.actors.iter().map(|&a| person_name(pop.actor_person(a))).collect::<Vec<_>>());
    MovieDoc::from_value(doc).expect("generated documents are valid")
}

/// A latent factor: the same for every movie that shares the thing it stands for.
fn factor(seed: u64, stream: u64, id: usize) -> Vec<f32> {
    Rng::for_item(seed, stream, id as u64).gauss_vec(LATENT)
}

fn axpy(acc: &mut [f32], a: f32, x: &[f32]) {
    acc.iter_mut().zip(x).for_each(|(y, x)| *y += a * x);
}

/// The movie's position in the shared low-rank space: its genres, director, cast, decade and a part of
/// its own.
fn latent(seed: u64, i: usize, f: &Facts, pop: &Population) -> Vec<f32> {
    let mut z = vec![0f32; LATENT];
    let g = 1.0 / (f.genres.len() as f32).sqrt();
    for &genre in &f.genres {
        axpy(&mut z, 0.8 * g, &factor(seed, STREAM_GENRE, genre));
    }
    axpy(&mut z, 0.7, &factor(seed, STREAM_PERSON, f.director));
    let a = 1.0 / (f.actors.len() as f32).sqrt();
    for &actor in &f.actors {
        axpy(&mut z, 0.5 * a, &factor(seed, STREAM_PERSON, pop.actor_person(actor)));
    }
    axpy(&mut z, 0.4, &factor(seed, STREAM_DECADE, (f.year / 10) as usize));
    axpy(&mut z, 0.6, &factor(seed, STREAM_OWN, i));
    z
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

/// The projection of the latent space into `dim` dimensions, and the direction every embedding shares.
struct Projection {
    dim: usize,
    /// `[dim, LATENT]`, row-major.
    basis: Vec<f32>,
    common: Vec<f32>,
}

impl Projection {
    fn new(seed: u64, dim: usize) -> Self {
        let mut r = Rng::for_item(seed, STREAM_BASIS, dim as u64);
        let basis = r.gauss_vec(dim * LATENT);
        let mut common = r.gauss_vec(dim);
        normalize(&mut common);
        Projection { dim, basis, common }
    }

    /// Unit vector: common direction + projected structure + isotropic noise (relative norms
    /// 0.6 : 1 : `noise`).
    fn vector(&self, seed: u64, i: usize, z: &[f32], noise: f32) -> Vec<f32> {
        let mut v: Vec<f32> = self.basis.chunks_exact(LATENT).map(|row| crate::index::dot(row, z)).collect();
        normalize(&mut v);
        let mut r = Rng::for_item(seed, STREAM_NOISE, (i as u64) << 16 | self.dim as u64);
        let mut eps = r.gauss_vec(self.dim);
        normalize(&mut eps);
        for ((x, c), e) in v.iter_mut().zip(&self.common).zip(&eps) {
            *x += 0.6 * c + noise * e;
        }
        normalize(&mut v);
        v
    }
}

/// What the vectors look like, printed by the generator: cosine to the nearest neighbour and between
/// random pairs, on a sample (brute force).
#[derive(Debug, serde::Serialize)]
pub struct VectorStats {
    pub sample: usize,
    pub nearest_cosine_mean: f32,
    pub tenth_cosine_mean: f32,
    pub random_pair_cosine_mean: f32,
}

fn vector_stats(matrix: &[f32], dim: usize, sample: usize) -> VectorStats {
    let rows = matrix.len() / dim;
    let step = (rows / sample).max(1);
    let queries: Vec<usize> = (0..rows).step_by(step).take(sample).collect();
    let row = |r: usize| matrix.get(r * dim..(r + 1) * dim);
    let (mut first, mut tenth, mut random) = (0f32, 0f32, 0f32);
    for &q in &queries {
        let hits = search_exact(&row, rows, &matrix[q * dim..(q + 1) * dim], 10, &|r| r != q);
        first += hits[0].score;
        tenth += hits[9].score;
        let other = (q * 7919 + 13) % rows;
        random += crate::index::dot(&matrix[q * dim..(q + 1) * dim], &matrix[other * dim..(other + 1) * dim]);
    }
    let n = queries.len() as f32;
    VectorStats {
        sample: queries.len(),
        nearest_cosine_mean: first / n,
        tenth_cosine_mean: tenth / n,
        random_pair_cosine_mean: random / n,
    }
}

/// The movie id of row `i`: IMDb-like, increasing, with gaps.
fn movie_id(i: usize) -> String {
    format!("tt{:07}", 35_000 + i * 41 + (i * 7) % 23)
}

/// The model record for a set of dimension `dim`: the local model's when it has that dimension (the
/// server then serves the set with it), else a clearly synthetic one (the set can be indexed and
/// measured offline, not served).
fn model_record(args: &GenServiceOptions, dim: usize) -> Result<ModelRecord> {
    if let Ok(dir) = crate::models::locate(&args.model.source(), &args.model.models_dir) {
        let spec = ModelSpec::read(&dir)?;
        if spec.hidden_size == dim {
            let max_tokens = args.model.max_tokens.map_or(spec.max_tokens, |m| m.min(spec.max_tokens)).max(2);
            return Ok(ModelRecord {
                source: args.model.source().name(),
                architecture: spec.architecture,
                weights_sha256: crate::hash::sha256_file(&dir.join("model.safetensors"))?,
                pooling: args.model.pooling.unwrap_or(spec.pooling),
                max_tokens,
            });
        }
    }
    Ok(ModelRecord {
        source: format!("synthetic-{dim}d (no model: not servable)"),
        architecture: Architecture::Bert,
        weights_sha256: artifacts::sha256_hex(format!("cinevec synthetic embeddings, dim {dim}").as_bytes()),
        pooling: Pooling::Mean,
        max_tokens: 512,
    })
}

/// `cinevec gen-service`.
pub fn generate(args: &GenServiceOptions) -> Result<()> {
    let started = Instant::now();
    let (rows, seed) = (args.rows, args.data_seed);
    let pop = Population::for_rows(rows);
    std::fs::create_dir_all(&args.out)?;

    let t = Instant::now();
    let all: Vec<Facts> = (0..rows).into_par_iter().map(|i| facts(seed, i, &pop)).collect();
    let records: Vec<CatalogRecord> = all
        .par_iter()
        .enumerate()
        .map(|(i, f)| {
            let z = latent(seed, i, f, &pop);
            let mut r = Rng::for_item(seed, STREAM_RATING, i as u64);
            // The rating follows the latent position (what a head can learn) plus noise it cannot.
            let quality: f32 = z.iter().zip(factor(seed, STREAM_RATING, usize::MAX)).map(|(a, b)| a * b).sum();
            let rating = (6.3 + 0.35 * quality as f64 + 0.6 * r.gauss() as f64).clamp(1.2, 9.8);
            let votes = (30.0 + (6.0 + 1.7 * r.gauss() as f64).exp()).min(3.0e6) as u64;
            CatalogRecord {
                id: movie_id(i),
                rating: Some((rating * 10.0).round() / 10.0),
                votes: Some(votes),
                movie: document(f, &pop),
            }
        })
        .collect();
    tracing::info!("{rows} movie documents in {:.1}s", t.elapsed().as_secs_f64());

    let jsonl = args.out.join(CATALOG_JSONL);
    let mut text = Vec::with_capacity(rows * 400);
    for r in &records {
        text.extend_from_slice(r.to_line().as_bytes());
        text.push(b'\n');
    }
    artifacts::write_atomic(&jsonl, &text)?;
    drop(text);
    write_store(&args.out.join(CATALOG_DB), &records)?;
    let input_sha256 = crate::hash::sha256_file(&jsonl)?;
    let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    drop(records);

    let mut summary = Vec::new();
    for &dim in &args.dims {
        let t = Instant::now();
        let projection = Projection::new(seed, dim);
        let mut matrix = vec![0f32; rows * dim];
        matrix.par_chunks_mut(dim).enumerate().for_each(|(i, out)| {
            let z = latent(seed, i, &all[i], &pop);
            out.copy_from_slice(&projection.vector(seed, i, &z, args.noise));
        });
        let model = model_record(args, dim)?;
        let servable = !model.source.starts_with("synthetic-");
        let manifest = Manifest {
            format: artifacts::MANIFEST_FORMAT.to_string(),
            run_id: artifacts::new_run_id(),
            created_at: artifacts::now_rfc3339(),
            model,
            dim,
            rows,
            doc_format: DOC_FORMAT_VERSION.to_string(),
            truncated: 0,
            input: jsonl.display().to_string(),
            input_sha256: input_sha256.clone(),
            device: "synthetic (cinevec gen-service)".into(),
            dtype: "f32".into(),
            seconds: t.elapsed().as_secs_f64(),
        };
        let dir = args.out.join(format!("d{dim}"));
        // A new matrix makes any saved graph and head of the old one stale: remove them outright.
        let _ = std::fs::remove_dir_all(&dir);
        artifacts::write_embeddings(&dir, &manifest, &ids, &matrix)?;
        let stats = vector_stats(&matrix, dim, 200);
        drop(matrix);
        tracing::info!("dim {dim}: {rows} vectors in {:.1}s; {stats:?}", t.elapsed().as_secs_f64());
        let head = if servable && !args.no_head {
            let opts = TrainOptions {
                embeddings: dir.clone(),
                out: dir.clone(),
                ratings: RatingsSource::CatalogJsonl(jsonl.clone()),
                test_fraction: 0.1,
                val_fraction: 0.1,
                split_seed: seed,
                folds: 0,
                head: args.head.clone(),
            };
            let report = train::train(&opts).context("training the rating head")?;
            print!("{}", train::render_report(&report));
            Some(report.head_over_mean_test_mse)
        } else {
            None
        };
        summary.push(json!({
            "dim": dim,
            "dir": dir.display().to_string(),
            "model": manifest.model.source,
            "servable": servable,
            "head_over_mean_test_mse": head,
            "stats": stats,
        }));
    }
    let out = json!({"rows": rows, "seed": seed, "seconds": started.elapsed().as_secs_f64(), "sets": summary});
    // Written last: its presence means a complete set.
    artifacts::write_atomic(&args.out.join("generated.json"), &serde_json::to_vec_pretty(&out)?)?;
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}

fn write_store(path: &Path, records: &[CatalogRecord]) -> Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let t = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let store = Store::open(&path.display().to_string()).await?;
        for chunk in records.chunks(5000) {
            let rows: Vec<MovieRow> = chunk.iter().map(|r| MovieRow::from_record(r.clone(), "synthetic")).collect();
            store.upsert_movies(&rows).await?;
        }
        store.close().await;
        anyhow::Ok(())
    })?;
    tracing::info!("catalog store {} in {:.1}s", path.display(), t.elapsed().as_secs_f64());
    Ok(())
}

/// Peak and current resident memory of this process, in bytes (`VmHWM`, `VmRSS`).
pub fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// `cinevec bench-index`.
pub fn bench_index(args: &BenchIndexOptions) -> Result<()> {
    let params = IndexParams {
        max_connections: args.hnsw_m,
        ef_construction: args.hnsw_ef_construction,
        ef_search: args.ef.first().copied().unwrap_or(96),
        ..IndexParams::default()
    };
    let from_self = args.start == SearchStart::SelfRow;
    if args.rebuild {
        crate::index::remove_saved(&args.artifacts)?;
    }
    let t = Instant::now();
    let set = artifacts::load_embeddings(&args.artifacts)?;
    let load_matrix_s = t.elapsed().as_secs_f64();
    let (rows, dim) = (set.manifest.rows, set.manifest.dim);
    let matrix = std::sync::Arc::new(set.matrix);
    let t = Instant::now();
    let (index, built) = match VectorIndex::load(&args.artifacts, &set.manifest.run_id, matrix.clone(), dim, params)? {
        Some(index) => (index, false),
        None => {
            let index = VectorIndex::build_shared(matrix.clone(), dim, params);
            index.save(&args.artifacts, &set.manifest.run_id, rows)?;
            (index, true)
        }
    };
    let index_s = t.elapsed().as_secs_f64();
    let index = if args.traversal == Traversal::F32 { index.without_quantized() } else { index };
    let (peak_after_load, _) = memory();

    let step = (rows / args.queries.max(1)).max(1);
    let queries: Vec<usize> = (0..rows).step_by(step).take(args.queries).collect();
    let row = |r: usize| matrix.get(r * dim..(r + 1) * dim);
    let truth: Vec<Vec<usize>> = queries
        .iter()
        .map(|&q| search_exact(&row, rows, row(q).unwrap(), args.k, &|r| r != q).iter().map(|h| h.row).collect())
        .collect();
    let mut per_ef = Vec::new();
    for &ef in &args.ef {
        let mut found = 0usize;
        let mut ms = Vec::with_capacity(queries.len());
        for (q, want) in queries.iter().zip(&truth) {
            let t = Instant::now();
            let got = index.search_from(row(*q).unwrap(), from_self.then_some(*q), args.k, ef, &|r| r != *q);
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            found += want.iter().filter(|w| got.iter().any(|h| h.row == **w)).count();
        }
        ms.sort_by(f64::total_cmp);
        let recall = found as f64 / (queries.len() * args.k) as f64;
        per_ef.push(json!({
            "ef": ef,
            "recall": recall,
            "search_p50_ms": ms[ms.len() / 2],
            "search_p99_ms": ms[(ms.len() * 99 / 100).min(ms.len() - 1)],
        }));
    }
    // The neighbour table (more like this by id for k up to its width, without a filter).
    let table = index.table().filter(|t| args.k <= t.width()).map(|t| {
        let (mut found, mut ms) = (0usize, Vec::with_capacity(queries.len()));
        for (q, want) in queries.iter().zip(&truth) {
            let t = Instant::now();
            let got = index.neighbours_of(*q, args.k, &|r| r != *q).unwrap_or_default();
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            found += want.iter().filter(|w| got.iter().any(|h| h.row == **w)).count();
        }
        ms.sort_by(f64::total_cmp);
        json!({
            "width": t.width(),
            "ef": t.ef(),
            "recall": found as f64 / (queries.len() * args.k) as f64,
            "lookup_p50_ms": ms[ms.len() / 2],
            "bytes": t.bytes(),
        })
    });
    let (peak, rss) = memory();
    let matrix_bytes = file_len(&args.artifacts.join(artifacts::MATRIX_FILE));
    let graph_bytes = crate::index::saved_graph_bytes(&args.artifacts);
    let out = json!({
        "artifacts": args.artifacts.display().to_string(),
        "rows": rows,
        "dim": dim,
        "params": params,
        "matrix_load_s": load_matrix_s,
        "graph": if built { "built" } else { "loaded" },
        "start": if from_self { "self" } else { "entry" },
        "traversal": if index.quantized_bytes() > 0 { "int8" } else { "f32" },
        "quantized_bytes": index.quantized_bytes(),
        "graph_s": index_s,
        "queries": queries.len(),
        "k": args.k,
        "per_ef": per_ef,
        "neighbour_table": table,
        "matrix_bytes": matrix_bytes,
        "graph_bytes": graph_bytes,
        "peak_rss_after_load": peak_after_load,
        "peak_rss": peak,
        "rss": rss,
    });
    println!("{}", serde_json::to_string(&out)?);
    if let Some(path) = &args.json {
        std::fs::File::create(path)?.write_all(serde_json::to_string_pretty(&out)?.as_bytes())?;
    }
    Ok(())
}

/// Default output folder of the generator.
pub fn default_out() -> PathBuf {
    PathBuf::from(".bench/service")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_ids_increase() {
        let names: std::collections::HashSet<String> = (0..200_000).map(person_name).collect();
        assert_eq!(names.len(), 200_000);
        assert!((1..1000).all(|i| movie_id(i) > movie_id(i - 1)));
    }

    #[test]
    fn the_same_seed_gives_the_same_movie_and_vector() {
        let pop = Population::for_rows(1000);
        let (a, b) = (facts(7, 12, &pop), facts(7, 12, &pop));
        assert_eq!(document(&a, &pop), document(&b, &pop));
        let p = Projection::new(7, 32);
        let v = p.vector(7, 12, &latent(7, 12, &a, &pop), 0.5);
        assert_eq!(v, p.vector(7, 12, &latent(7, 12, &b, &pop), 0.5));
        assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
    }
}
