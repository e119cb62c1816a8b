//! The HNSW index against brute force, filters, persistence and run-time inserts.

use cinevec::index::{search_exact, table, IndexParams, VectorIndex};
use std::sync::Arc;

/// Unit vectors with the structure of embeddings: a few shared directions plus noise.
fn vectors(rows: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    let basis: Vec<f32> = (0..8 * dim).map(|_| next()).collect();
    let mut out = Vec::with_capacity(rows * dim);
    for _ in 0..rows {
        let w: Vec<f32> = (0..8).map(|_| next()).collect();
        let mut v: Vec<f32> =
            (0..dim).map(|d| (0..8).map(|b| w[b] * basis[b * dim + d]).sum::<f32>() + 0.3 * next()).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        out.extend(v);
    }
    out
}

fn exact(matrix: &[f32], dim: usize, q: &[f32], k: usize, keep: &(dyn Fn(usize) -> bool + Sync)) -> Vec<usize> {
    let rows = |r: usize| matrix.get(r * dim..(r + 1) * dim);
    search_exact(&rows, matrix.len() / dim, q, k, keep).iter().map(|h| h.row).collect()
}

/// Live rows over the first `n` rows of `m` (each a movie `m{row}`), as the service keeps them: the
/// owner of the rows added at run time, which it searches beside the graph.
fn live_rows(m: &[f32], n: usize, dim: usize) -> (std::sync::Arc<Vec<f32>>, cinevec::service::LiveCatalog) {
    let matrix = std::sync::Arc::new(m[..n * dim].to_vec());
    let mut live = cinevec::service::LiveCatalog::new(matrix.clone(), dim);
    for i in 0..n {
        let entry = live.entry_for(movie(i), format!("m{i}"));
        live.push_matrix_row(entry);
    }
    (matrix, live)
}

fn movie(i: usize) -> cinevec::service::live::NewMovie<'static> {
    cinevec::service::live::NewMovie {
        id: format!("m{i}"),
        rating: None,
        votes: None,
        facts: cinevec::service::live::Facts { title: format!("M{i}").into(), ..Default::default() },
        source: "test",
    }
}

/// The service's search over live rows (graph or table, run-time rows beside it).
fn nearest(
    live: &cinevec::service::LiveCatalog,
    index: &VectorIndex,
    q: &[f32],
    start: Option<usize>,
    k: usize,
    exclude: &[usize],
) -> Vec<cinevec::index::Hit> {
    live.nearest(index, q, start, k, &Default::default(), exclude, false)
}

#[test]
fn hnsw_recall_at_10_against_brute_force() {
    let (n, dim) = (4000, 64);
    let m = vectors(n, dim, 7);
    let index = VectorIndex::build(&m, dim, IndexParams::default());
    assert_eq!(index.len(), n);
    let mut found = 0;
    let queries = 200;
    for q in 0..queries {
        let row = q * 17;
        let query = &m[row * dim..(row + 1) * dim];
        let not_self = |r: usize| r != row;
        let want = exact(&m, dim, query, 10, &not_self);
        let got: Vec<usize> = index.search(query, 10, &not_self).iter().map(|h| h.row).collect();
        assert!(!got.contains(&row), "the query row must be filtered out");
        found += want.iter().filter(|r| got.contains(r)).count();
    }
    let recall = found as f64 / (queries * 10) as f64;
    assert!(recall >= 0.98, "recall@10 {recall}");
}

#[test]
fn filters_apply_inside_the_search_and_scores_are_cosines() {
    let (n, dim) = (2000, 32);
    let m = vectors(n, dim, 11);
    let index = VectorIndex::build(&m, dim, IndexParams::default());
    let query = &m[0..dim];
    let even = |r: usize| r.is_multiple_of(2) && r != 0;
    let hits = index.search(query, 10, &even);
    assert_eq!(hits.len(), 10);
    for h in &hits {
        assert!(h.row.is_multiple_of(2) && h.row != 0);
        let cos = cinevec::index::dot(query, &m[h.row * dim..(h.row + 1) * dim]);
        assert!((cos - h.score).abs() < 1e-5);
    }
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "best first");
}

#[test]
fn exact_search_returns_everything_a_selective_filter_allows() {
    let (n, dim) = (500, 16);
    let m = vectors(n, dim, 3);
    let only = [3usize, 77, 123];
    let keep = |r: usize| only.contains(&r);
    let rows = |r: usize| m.get(r * dim..(r + 1) * dim);
    let hits = search_exact(&rows, n, &m[0..dim], 10, &keep);
    let mut got: Vec<usize> = hits.iter().map(|h| h.row).collect();
    got.sort();
    assert_eq!(got, only);
}

#[test]
fn a_saved_graph_loads_only_for_its_own_matrix() {
    let (n, dim) = (1500, 24);
    let m = vectors(n, dim, 5);
    let params = IndexParams::default();
    let index = VectorIndex::build(&m, dim, params);
    let dir = tempfile::tempdir().unwrap();
    index.save(dir.path(), "run-a", n).unwrap();

    let shared = Arc::new(m.clone());
    let load =
        |run: &str, matrix: Arc<Vec<f32>>, params| VectorIndex::load(dir.path(), run, matrix, dim, params).unwrap();
    let loaded = load("run-a", shared.clone(), params).expect("same run loads");
    let q = &m[40 * dim..41 * dim];
    let all = |_r: usize| true;
    let a: Vec<usize> = index.search(q, 10, &all).iter().map(|h| h.row).collect();
    let b: Vec<usize> = loaded.search(q, 10, &all).iter().map(|h| h.row).collect();
    assert_eq!(a, b);

    assert!(load("run-b", shared.clone(), params).is_none(), "another matrix");
    let longer = Arc::new(vectors(n + 1, dim, 5));
    assert!(load("run-a", longer, params).is_none(), "other row count");
    let other = IndexParams { max_connections: 8, ..params };
    assert!(load("run-a", shared.clone(), other).is_none(), "other parameters");

    // A damaged graph file means "rebuild", never a panic or a wrong graph.
    let graph = dir.path().join("index.graph");
    let bytes = std::fs::read(&graph).unwrap();
    std::fs::write(&graph, &bytes[..bytes.len() / 2]).unwrap();
    assert!(load("run-a", shared.clone(), params).is_none());
    std::fs::write(&graph, vec![7u8; bytes.len()]).unwrap();
    assert!(load("run-a", shared.clone(), params).is_none());
    // One flipped bit in a neighbour list, same length: caught too.
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x10;
    std::fs::write(&graph, &flipped).unwrap();
    assert!(load("run-a", shared.clone(), params).is_none());
    std::fs::write(&graph, &bytes).unwrap();
    assert!(load("run-a", shared, params).is_some(), "the intact file loads again");
}

/// Run-time rows belong to the live rows (one row space with the matrix rows), which search them
/// beside the graph.
/// Run-time rows belong to the live rows (one row space with the matrix rows), which search them
/// beside the graph.
#[test]
fn a_vector_inserted_at_run_time_is_found_at_once() {
    let (n, dim) = (1000, 32);
    let m = vectors(n + 1, dim, 9);
    let (matrix, mut live) = live_rows(&m, n, dim);
    let index = VectorIndex::build_shared(matrix, dim, IndexParams::default());
    let new = &m[n * dim..];
    live.push(movie(n), new);
    let hits = nearest(&live, &index, new, None, 1, &[]);
    assert_eq!(hits[0].row, n);
    assert!((hits[0].score - 1.0).abs() < 1e-5);
    assert_eq!(live.rows(), n + 1);
    // Filters apply to run-time rows too.
    let hits = nearest(&live, &index, new, None, 3, &[n]);
    assert!(hits.iter().all(|h| h.row != n) && hits.len() == 3);
}

#[test]
fn a_search_from_the_query_row_matches_brute_force() {
    // With a candidate list as large as the set, a search from the query's own node reaches every
    // row: the answer is exactly brute force's.
    let (n, dim) = (400, 16);
    let m = vectors(n, dim, 21);
    let index = VectorIndex::build(&m, dim, IndexParams::default());
    for row in (0..n).step_by(13) {
        let query = &m[row * dim..(row + 1) * dim];
        let not_self = |r: usize| r != row;
        let want = exact(&m, dim, query, 10, &not_self);
        let hits = index.search_from(query, Some(row), 10, n, &not_self);
        let got: Vec<usize> = hits.iter().map(|h| h.row).collect();
        assert_eq!(got, want, "row {row}");
        for h in &hits {
            let cos = cinevec::index::dot(query, &m[h.row * dim..(h.row + 1) * dim]);
            assert!((cos - h.score).abs() < 1e-5, "scores are the f32 cosines");
        }
    }
}

#[test]
fn from_the_query_row_recall_at_10_with_the_default_list() {
    let (n, dim) = (4000, 64);
    let m = vectors(n, dim, 7);
    let params = IndexParams::default();
    // Shared as the server shares it: a query that is a row of this matrix walks on that row's codes.
    let shared = Arc::new(m.clone());
    let index = VectorIndex::build_shared(shared.clone(), dim, params);
    let f32_index = VectorIndex::build(&m, dim, params).without_quantized();
    let (mut found, mut found_f32, queries) = (0, 0, 200);
    for q in 0..queries {
        let row = q * 19;
        let query = &shared[row * dim..(row + 1) * dim];
        let not_self = |r: usize| r != row;
        let want = exact(&m, dim, query, 10, &not_self);
        let got = index.search_from(query, Some(row), 10, params.ef_search_by_row, &not_self);
        assert!(got.iter().all(|h| h.row != row) && got.len() == 10);
        found += want.iter().filter(|r| got.iter().any(|h| h.row == **r)).count();
        let got = f32_index.search_from(query, Some(row), 10, params.ef_search_by_row, &not_self);
        found_f32 += want.iter().filter(|r| got.iter().any(|h| h.row == **r)).count();
    }
    let (recall, recall_f32) = (found as f64 / (queries * 10) as f64, found_f32 as f64 / (queries * 10) as f64);
    assert!(recall >= 0.98, "recall@10 walking the int8 codes {recall}");
    assert!(recall_f32 >= 0.98, "recall@10 walking the f32 vectors {recall_f32}");
}

#[test]
fn a_start_row_outside_the_graph_searches_from_the_entry_point() {
    let (n, dim) = (1000, 32);
    let m = vectors(n + 1, dim, 9);
    let (matrix, mut live) = live_rows(&m, n, dim);
    let index = VectorIndex::build_shared(matrix, dim, IndexParams::default());
    let new = &m[n * dim..];
    live.push(movie(n), new);
    let all = |_r: usize| true;
    // A run-time row (not in the graph) and rows far past the end: no panic, the same answer as a
    // search without a start.
    let plain: Vec<usize> = nearest(&live, &index, new, None, 5, &[]).iter().map(|h| h.row).collect();
    for start in [n, n + 7, usize::MAX] {
        let got: Vec<usize> = index.search_from(new, Some(start), 5, 96, &all).iter().map(|h| h.row).collect();
        assert_eq!(got, index.search(new, 5, &all).iter().map(|h| h.row).collect::<Vec<_>>());
        let got_live: Vec<usize> = nearest(&live, &index, new, Some(start), 5, &[]).iter().map(|h| h.row).collect();
        assert_eq!(got_live, plain);
        assert!(!got.contains(&n), "the graph holds no run-time row");
    }
    assert_eq!(plain[0], n);
    // k larger than the rows, k = 0, ef 0: no panic.
    assert_eq!(nearest(&live, &index, &m[..dim], Some(0), 5000, &[]).len(), n + 1);
    assert_eq!(index.search_from(&m[..dim], Some(0), 5000, 0, &all).len(), n);
    assert!(index.search_from(&m[..dim], Some(0), 0, 10, &all).is_empty());
    assert!(nearest(&live, &index, &m[..dim], Some(0), 0, &[]).is_empty());
}

#[test]
fn damaged_or_stale_quantized_vectors_are_rebuilt() {
    let (n, dim) = (1500, 24);
    let m = vectors(n, dim, 5);
    let params = IndexParams::default();
    let index = VectorIndex::build(&m, dim, params);
    let dir = tempfile::tempdir().unwrap();
    index.save(dir.path(), "run-a", n).unwrap();
    let q8 = dir.path().join("index.q8");
    let good = std::fs::read(&q8).unwrap();
    assert_eq!(good.len(), n * dim + 8 + 8 * 4 + "run-a".len() + 8);

    let shared = Arc::new(m.clone());
    let all = |_r: usize| true;
    let q = &m[40 * dim..41 * dim];
    let want: Vec<usize> = index.search_from(q, Some(40), 10, 48, &all).iter().map(|h| h.row).collect();
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x40;
    let mut header = good.clone();
    header[9] ^= 1; // the row count
    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("flipped bit", flipped),
        ("header", header),
        ("garbage", vec![0xffu8; good.len()]),
    ];
    for (what, bytes) in damaged {
        std::fs::write(&q8, &bytes).unwrap();
        let loaded =
            VectorIndex::load(dir.path(), "run-a", shared.clone(), dim, params).unwrap().expect("the graph loads");
        assert_eq!(loaded.quantized_bytes(), n * dim, "{what}");
        let got: Vec<usize> = loaded.search_from(q, Some(40), 10, 48, &all).iter().map(|h| h.row).collect();
        assert_eq!(got, want, "{what}");
        assert_eq!(std::fs::read(&q8).unwrap(), good, "{what}: rebuilt and saved again");
    }
    std::fs::remove_file(&q8).unwrap();
    VectorIndex::load(dir.path(), "run-a", shared.clone(), dim, params).unwrap().expect("the graph loads");
    assert_eq!(std::fs::read(&q8).unwrap(), good, "missing: built and saved");

    // Codes of another embedding set with the same shape (a graph saved for run-b beside them): stale.
    let other = vectors(n, dim, 6);
    let index_b = VectorIndex::build(&other, dim, params);
    index_b.save(dir.path(), "run-b", n).unwrap();
    let good_b = std::fs::read(&q8).unwrap();
    std::fs::write(&q8, &good).unwrap(); // run-a's codes under run-b's graph
    let loaded = VectorIndex::load(dir.path(), "run-b", Arc::new(other.clone()), dim, params).unwrap().unwrap();
    assert_eq!(std::fs::read(&q8).unwrap(), good_b, "stale codes replaced");
    let qb = &other[7 * dim..8 * dim];
    let a: Vec<usize> = index_b.search(qb, 10, &all).iter().map(|h| h.row).collect();
    let b: Vec<usize> = loaded.search(qb, 10, &all).iter().map(|h| h.row).collect();
    assert_eq!(a, b);
}

#[test]
fn the_neighbour_table_answers_by_id_like_brute_force() {
    let (n, dim) = (3000, 48);
    let m = vectors(n, dim, 11);
    let index = VectorIndex::build(&m, dim, IndexParams::default());
    let t = index.table().expect("a built index has a neighbour table");
    assert_eq!((t.rows(), t.width()), (n, table::WIDTH));
    let (mut found, mut wanted) = (0, 0);
    for row in (0..n).step_by(7) {
        let query = &m[row * dim..(row + 1) * dim];
        let not_self = |r: usize| r != row;
        let got = index.neighbours_of(row, 10, &not_self).expect("no filter: the table answers");
        assert_eq!(got.len(), 10);
        assert!(got.windows(2).all(|w| w[0].score >= w[1].score), "best first");
        for h in &got {
            assert_ne!(h.row, row, "never the movie itself");
            let cosine = cinevec::index::dot(query, &m[h.row * dim..(h.row + 1) * dim]);
            assert_eq!(h.score, cosine, "scores are the f32 cosines");
        }
        let want = exact(&m, dim, query, 10, &not_self);
        wanted += want.len();
        found += want.iter().filter(|r| got.iter().any(|h| h.row == **r)).count();
    }
    let recall = found as f64 / wanted as f64;
    assert!(recall >= 0.99, "table recall@10 {recall}");
}

#[test]
fn the_table_gives_way_to_the_graph_when_it_cannot_answer() {
    let (n, dim) = (2000, 32);
    let m = vectors(n, dim, 12);
    let index = VectorIndex::build(&m, dim, IndexParams::default());
    let row = 123;
    let not_self = |r: usize| r != row;
    assert!(index.neighbours_of(row, table::WIDTH + 1, &not_self).is_none(), "k over the width");
    assert!(index.neighbours_of(row, 0, &not_self).is_none());
    assert!(index.neighbours_of(n + 5, 5, &|_| true).is_none(), "not a matrix row");
    // A filter that lets a few rows through: too few of the row's neighbours pass.
    let rare = |r: usize| r != row && r.is_multiple_of(97);
    assert!(index.neighbours_of(row, 10, &rare).is_none());
    // A filter most rows pass: answered, and the answer is the filtered brute force's.
    let even = |r: usize| r != row && r.is_multiple_of(2);
    let query = &m[row * dim..(row + 1) * dim];
    let got = index.neighbours_of(row, 5, &even).expect("half of 16 neighbours pass");
    let rows: Vec<usize> = got.iter().map(|h| h.row).collect();
    assert!(rows.iter().all(|r| r.is_multiple_of(2)));
    assert_eq!(rows, exact(&m, dim, query, 5, &even));
    // A vector added at run time, nearer than every neighbour: it comes first.
    let mut near = query.to_vec();
    near[0] += 1e-3;
    let norm = near.iter().map(|x| x * x).sum::<f32>().sqrt();
    near.iter_mut().for_each(|x| *x /= norm);
    let (_, mut live) = live_rows(&m, n, dim);
    live.push(movie(n), &near);
    let got = nearest(&live, &index, query, Some(row), 5, &[row]);
    assert_eq!(got[0].row, n);
    assert_eq!(got.len(), 5);
    let was = index.neighbours_of(row, 5, &|r| r != row && r != n).unwrap();
    assert_eq!(&got[1..], &was[..4], "the rest as before");
}

#[test]
fn the_neighbour_table_is_saved_loaded_and_rebuilt_when_unusable() {
    let (n, dim) = (1200, 24);
    let m = vectors(n, dim, 13);
    let params = IndexParams::default();
    let index = VectorIndex::build(&m, dim, params);
    let dir = tempfile::tempdir().unwrap();
    index.save(dir.path(), "run-a", n).unwrap();
    let knn = dir.path().join("index.knn");
    let good = std::fs::read(&knn).unwrap();
    assert_eq!(good.len(), n * table::WIDTH * 4 + 8 + 8 * 4 + "run-a".len() + 8);
    let shared = Arc::new(m.clone());
    let answers = |index: &VectorIndex| -> Vec<Vec<usize>> {
        (0..n)
            .step_by(50)
            .map(|r| index.neighbours_of(r, 10, &|x| x != r).unwrap().iter().map(|h| h.row).collect())
            .collect()
    };
    let want = answers(&index);
    let loaded = VectorIndex::load(dir.path(), "run-a", shared.clone(), dim, params).unwrap().unwrap();
    assert_eq!(answers(&loaded), want, "loaded as saved");
    let mut flipped = good.clone();
    flipped[good.len() / 3] ^= 0x10;
    for (what, bytes) in [("flipped bit", flipped), ("truncated", good[..good.len() - 9].to_vec()), ("missing", vec![])]
    {
        if bytes.is_empty() {
            std::fs::remove_file(&knn).unwrap();
        } else {
            std::fs::write(&knn, &bytes).unwrap();
        }
        let loaded = VectorIndex::load(dir.path(), "run-a", shared.clone(), dim, params).unwrap().unwrap();
        assert_eq!(answers(&loaded), want, "{what}");
        assert_eq!(std::fs::read(&knn).unwrap(), good, "{what}: rebuilt and saved again");
    }
}

#[test]
fn without_the_int8_walk_no_codes_are_held_and_searches_agree() {
    let (n, dim) = (1500, 32);
    let m = vectors(n, dim, 14);
    let params = IndexParams::default();
    let index = VectorIndex::build(&m, dim, params);
    let dir = tempfile::tempdir().unwrap();
    index.save(dir.path(), "run-a", n).unwrap();
    let f32_walk = IndexParams { int8_walk: false, ..params };
    let lean = VectorIndex::load(dir.path(), "run-a", Arc::new(m.clone()), dim, f32_walk).unwrap().unwrap();
    assert_eq!((lean.quantized_bytes(), index.quantized_bytes()), (0, n * dim));
    let (mut found, queries) = (0, 100);
    for q in 0..queries {
        let row = q * 13;
        let query = &m[row * dim..(row + 1) * dim];
        let not_self = |r: usize| r != row;
        let want = exact(&m, dim, query, 10, &not_self);
        let got: Vec<usize> = lean.search_from(query, Some(row), 10, 200, &not_self).iter().map(|h| h.row).collect();
        found += want.iter().filter(|r| got.contains(r)).count();
        let a = index.neighbours_of(row, 10, &not_self).unwrap();
        assert_eq!(lean.neighbours_of(row, 10, &not_self).unwrap(), a, "the same saved neighbour table");
    }
    assert!(found as f64 / (queries * 10) as f64 >= 0.99);
    // Built without it: the table was still found (on codes made for that), then the codes dropped.
    let built = VectorIndex::build(&m, dim, f32_walk);
    assert_eq!(built.quantized_bytes(), 0);
    assert_eq!(built.table().unwrap().rows(), n);
}

#[test]
fn the_parallel_best_k_is_the_best_k_of_everything() {
    use cinevec::index::{best_k, best_k_par, Hit};
    use rayon::prelude::*;
    // Scores with many ties (ties go to the lower row), more rows than any thread's short list.
    let hits: Vec<Hit> = (0..50_000).map(|row| Hit { row, score: ((row * 7919) % 1009) as f32 / 1009.0 }).collect();
    for k in [0, 1, 10, 100, 5000] {
        let want = best_k(hits.clone(), k);
        assert_eq!(best_k_par(hits.clone().into_par_iter(), k), want, "k = {k}");
        assert_eq!(want.len(), k);
    }
    assert_eq!(best_k_par(hits[..3].to_vec().into_par_iter(), 10), best_k(hits[..3].to_vec(), 10));
}
