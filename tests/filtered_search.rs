//! Filtered more-like-this: every plan (neighbour table, graph walk with the filter inside, scan of the
//! rows the filter lets through) against the exact filtered answer (a scan of every row), on a catalog
//! with common and rare genres, decades, vote counts and ratings, some movies replaced and some added
//! at run time.

use cinevec::index::{IndexParams, VectorIndex};
use cinevec::service::live::{Facts, NewMovie, Plan};
use cinevec::service::{Filter, LiveCatalog};
use std::sync::Arc;

const GENRES: [(&str, u32); 6] =
    [("Drama", 40), ("Comedy", 25), ("Horror", 10), ("Western", 2), ("Film-Noir", 1), ("Music", 5)];

/// A deterministic stream of numbers in [0, 1).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Unit vectors whose structure follows the movie's genres and decade (as real embeddings do), plus noise.
fn vector(r: &mut Lcg, genres: &[usize], decade: usize, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dim).map(|_| r.next() - 0.5).collect();
    for &g in genres {
        v[g % dim] += 1.0;
    }
    v[(decade + 7) % dim] += 0.7;
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

struct Movie {
    genres: Vec<usize>,
    year: i64,
    votes: u64,
    rating: f64,
}

fn pick_genre(r: &mut Lcg) -> usize {
    let total: u32 = GENRES.iter().map(|g| g.1).sum();
    let mut x = (r.next() * total as f32) as u32;
    for (i, (_, w)) in GENRES.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    0
}

fn random_movie(r: &mut Lcg) -> Movie {
    let mut genres = vec![pick_genre(r)];
    if r.next() < 0.5 {
        let g = pick_genre(r);
        if !genres.contains(&g) {
            genres.push(g);
        }
    }
    let year = 1920 + (r.next() * 105.0) as i64;
    let votes = (30.0 * (1.0 / (r.next() + 0.001)).powf(1.5)) as u64;
    let rating = 1.0 + (r.next() * 90.0).round() as f64 / 10.0;
    Movie { genres, year, votes, rating }
}

fn new_movie(id: String, m: &Movie) -> NewMovie<'static> {
    let facts = Facts {
        title: format!("Title {id}").into(),
        genres: m.genres.iter().map(|&g| GENRES[g].0.into()).collect(),
        release_year: Some(m.year),
        ..Default::default()
    };
    NewMovie { id, rating: Some(m.rating), votes: Some(m.votes), facts, source: "test" }
}

/// `n` matrix rows, the first 20 replaced at run time (with other genres), 30 more added at run time.
fn catalog(n: usize, dim: usize) -> (LiveCatalog, VectorIndex) {
    let mut r = Lcg(11);
    let movies: Vec<Movie> = (0..n).map(|_| random_movie(&mut r)).collect();
    let matrix: Vec<f32> =
        movies.iter().flat_map(|m| vector(&mut r, &m.genres, ((m.year - 1900) / 10) as usize, dim)).collect();
    let matrix = Arc::new(matrix);
    let params = IndexParams { max_connections: 16, ef_construction: 100, ..Default::default() };
    let index = VectorIndex::build_shared(matrix.clone(), dim, params);
    let mut live = LiveCatalog::new(matrix, dim);
    for (i, m) in movies.iter().enumerate() {
        let entry = live.entry_for(new_movie(format!("m{i}"), m), format!("title m{i}"));
        live.push_matrix_row(entry);
    }
    assert_eq!(live.field_stats().map(|s| s.rows()), Some(n));
    for i in 0..50 {
        let m = random_movie(&mut r);
        let v = vector(&mut r, &m.genres, ((m.year - 1900) / 10) as usize, dim);
        let id = if i < 20 { format!("m{i}") } else { format!("added{i}") };
        live.push(new_movie(id, &m), &v);
    }
    (live, index)
}

fn filters() -> Vec<(&'static str, Filter)> {
    let g = |names: &[&str]| names.iter().map(|s| s.to_lowercase()).collect::<Vec<_>>();
    vec![
        ("common genre", Filter { genres: g(&["Drama"]), ..Default::default() }),
        ("rare genre", Filter { genres: g(&["Film-Noir"]), ..Default::default() }),
        ("two rare genres", Filter { genres: g(&["Western", "Film-Noir"]), ..Default::default() }),
        ("a decade", Filter { min_year: Some(1970), max_year: Some(1979), ..Default::default() }),
        ("a few years", Filter { min_year: Some(1953), max_year: Some(1955), ..Default::default() }),
        ("since 2000", Filter { min_year: Some(2000), ..Default::default() }),
        ("min_votes", Filter { min_votes: Some(1000), ..Default::default() }),
        ("min_rating", Filter { min_rating: Some(8.0), ..Default::default() }),
        (
            "genre and decade",
            Filter { genres: g(&["Horror"]), min_year: Some(1980), max_year: Some(1989), ..Default::default() },
        ),
        (
            "genres, years, votes, exclusion",
            Filter {
                genres: g(&["Comedy", "Music"]),
                exclude_genres: g(&["Drama"]),
                min_year: Some(1990),
                min_votes: Some(100),
                ..Default::default()
            },
        ),
        ("exclusion only", Filter { exclude_genres: g(&["Drama", "Comedy"]), ..Default::default() }),
        ("min_votes every movie has", Filter { min_votes: Some(1), ..Default::default() }),
        ("an unknown genre", Filter { genres: g(&["Space Opera"]), ..Default::default() }),
        ("nothing", Filter::default()),
    ]
}

fn rows(hits: &[cinevec::index::Hit]) -> Vec<usize> {
    hits.iter().map(|h| h.row).collect()
}

/// Queries: more like this for spread-out rows (matrix rows, a replaced one's new row, an added one).
fn queries(live: &LiveCatalog, n: usize) -> Vec<usize> {
    let mut q: Vec<usize> = (0..n).step_by(n / 40).filter(|&r| live.keep(r, &Filter::default(), &[])).collect();
    q.extend([live.row_of("m3").unwrap(), live.row_of("added30").unwrap()]);
    q
}

#[test]
fn every_plan_gives_the_exact_filtered_answer() {
    let (n, dim, k) = (4000, 32, 10);
    let (live, index) = catalog(n, dim);
    // The same catalog's index without the int8 codes (the server's default: the sketch scan's kept
    // rows are re-scored in f32 directly, not first cut down on the codes).
    let plain = catalog(n, dim).1.without_quantized();
    let mut report = Vec::new();
    let (mut found_all, mut wanted_all) = ([0usize; 6], [0usize; 6]);
    // Queries whose filter let through more rows than a sketch scan re-scores (so it estimated).
    let mut estimated = 0;
    for (name, filter) in filters() {
        let (mut found, mut wanted) = ([0usize; 6], [0usize; 6]);
        let mut planned = std::collections::BTreeMap::<String, usize>::new();
        for &row in &queries(&live, n) {
            let q = live.vector(row).to_vec();
            let ask = |force| live.nearest_by(&index, &q, Some(row), k, &filter, &[row], force);
            let (exact, how) = ask(Some(Plan::Exhaustive));
            assert_eq!(how, Plan::Exhaustive);
            let expected: Vec<usize> = (0..live.rows()).filter(|&r| r != row && live.keep(r, &filter, &[])).collect();
            assert_eq!(exact.len(), k.min(expected.len()), "{name}: the exact answer has every passing movie up to k");
            assert!(exact.iter().all(|h| expected.contains(&h.row)), "{name}: only passing movies");

            // The scan is exact: the same rows, the same scores.
            let (scan, how) = ask(Some(Plan::Scan));
            assert_eq!(how, Plan::Scan);
            assert_eq!(rows(&scan), rows(&exact), "{name}: scan of the matching rows, query row {row}");
            assert!(scan.iter().zip(&exact).all(|(a, b)| (a.score - b.score).abs() < 1e-6));

            // Approximate plans: counted against the exact answer.
            let mut count = |slot: usize, hits: &[cinevec::index::Hit]| {
                found[slot] += hits.iter().filter(|h| exact.iter().any(|e| e.row == h.row)).count();
                wanted[slot] += exact.len();
                assert!(hits.iter().all(|h| live.keep(h.row, &filter, &[row])), "{name}: a result the filter rejects");
            };
            let (walk, how) = ask(Some(Plan::Walk));
            assert_eq!(how, Plan::Walk);
            count(0, &walk);
            let (table, how) = ask(Some(Plan::Table));
            if how == Plan::Table {
                count(1, &table);
            }
            let (auto, how) = ask(None);
            *planned.entry(format!("{how:?}")).or_default() += 1;
            count(2, &auto);
            assert_eq!(auto.len(), exact.len(), "{name}: the planned search returns k whenever k movies pass");
            count(3, &scan);
            let (sketched, how) = ask(Some(Plan::Sketch));
            assert_eq!(how, Plan::Sketch);
            assert_eq!(sketched.len(), exact.len(), "{name}: the sketch scan returns k whenever k movies pass");
            count(4, &sketched);
            let (sketched, how) = live.nearest_by(&plain, &q, Some(row), k, &filter, &[row], Some(Plan::Sketch));
            assert_eq!(how, Plan::Sketch);
            assert_eq!(sketched.len(), exact.len(), "{name}: the sketch scan without int8 codes returns k");
            count(5, &sketched);
            if expected.len() > cinevec::service::live::sketch_keeps(k) {
                estimated += 1;
            }
        }
        let recall = |i: usize| {
            if wanted[i] == 0 {
                "-".to_string()
            } else {
                format!("{:.4}", found[i] as f64 / wanted[i] as f64)
            }
        };
        report.push(format!(
            "{name:34} walk {} table {} planned {} ({planned:?}) scan {} sketch {} (f32 only {})",
            recall(0),
            recall(1),
            recall(2),
            recall(3),
            recall(4),
            recall(5)
        ));
        for i in 0..6 {
            found_all[i] += found[i];
            wanted_all[i] += wanted[i];
        }
    }
    println!("recall@{k} against the exact filtered answer ({n} movies):\n{}", report.join("\n"));
    let recall = |i: usize| found_all[i] as f64 / wanted_all[i].max(1) as f64;
    assert_eq!(recall(3), 1.0);
    assert!(estimated > 0, "no query let through enough rows for the sketch to estimate");
    assert!(recall(4) >= 0.99, "sketch scan recall {}", recall(4));
    assert!(recall(5) >= 0.99, "sketch scan recall without int8 codes {}", recall(5));
    assert!(recall(2) >= 0.99, "planned recall {}", recall(2));
    assert!(recall(1) >= 0.99, "table recall {}", recall(1));
    // The walk alone may come back short under a rare filter (the planner then scans); what it returns
    // is still mostly right.
    assert!(recall(0) >= 0.9, "walk recall {}", recall(0));
}

#[test]
fn few_matching_movies_are_scanned_and_many_sketched() {
    let (n, dim) = (4000, 32);
    let (live, index) = catalog(n, dim);
    let filters: std::collections::HashMap<_, _> = filters().into_iter().collect();
    // The query is a movie whose stored neighbours mostly fail both filters, so the table cannot answer.
    let plan = |name: &str| {
        let row = (0..n)
            .find(|&r| {
                let ok = |f: &Filter| (0..n).filter(|&o| o != r && live.keep(o, f, &[])).count() > 0;
                ok(&filters[name])
                    && index.neighbours_of(r, 10, &|o| o != r && live.keep(o, &filters[name], &[r])).is_none()
            })
            .expect("a movie the table cannot answer for");
        live.nearest_by(&index, live.vector(row), Some(row), 10, &filters[name], &[row], None).1
    };
    assert_eq!(plan("rare genre"), Plan::Scan);
    assert_eq!(plan("genre and decade"), Plan::Scan);
    // Half the movies: so many that their sketches are read first, and only the best re-scored.
    assert_eq!(plan("common genre"), Plan::Sketch, "half the movies: ranked by their sketches");
    // A filter every movie passes, for a posted document (no table): in a catalog this small, reading
    // 4,000 sketches costs less than a walk; no filter at all walks.
    let every = &filters["min_votes every movie has"];
    assert_eq!(live.nearest_by(&index, live.vector(7), None, 10, every, &[7], None).1, Plan::Sketch);
    assert_eq!(live.nearest_by(&index, live.vector(7), None, 10, &filters["nothing"], &[7], None).1, Plan::Walk);
}

/// The strip controls by id without `exact`: the candidate pool comes from the neighbour table (the
/// movie's kept neighbours and theirs). Pages of one strip still never repeat a movie and are one
/// answer of twice the size; excluded rows never come back and the page is still full.
#[test]
fn strip_controls_by_id_page_and_exclude_from_the_table_pool() {
    use cinevec::service::query::ControlsBody;
    let (n, dim) = (4000, 32);
    let (live, index) = catalog(n, dim);
    let every = Filter::default();
    for &row in queries(&live, n).iter().filter(|&&r| r < n) {
        let q = live.vector(row).to_vec();
        let controls = |offset: i64, exclude: Vec<String>| {
            ControlsBody { diversity: Some(0.5), max_per: None, offset: Some(offset), exclude, ..Default::default() }
                .parse()
                .unwrap()
        };
        let search = |k: usize, c: &cinevec::service::Controls| {
            let exclude = live.exclusion(&c.exclude, &[row]);
            rows(&live.search(&index, &q, Some(row), k, &every, &exclude, false, c))
        };
        let twice = search(10, &controls(0, vec![]));
        let paged: Vec<usize> =
            search(5, &controls(0, vec![])).into_iter().chain(search(5, &controls(5, vec![]))).collect();
        assert_eq!(paged, twice, "row {row}");
        let mut unique = twice.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 10, "row {row}: a movie twice in one strip");
        let plain = rows(&live.nearest(&index, &q, Some(row), 10, &every, &[row], false));
        assert_eq!(twice[0], plain[0], "row {row}: the first result changed with diversity");
        let excluded: Vec<String> = twice[..5].iter().map(|&r| live.entry(r).id().to_string()).collect();
        let without = search(10, &controls(0, excluded));
        assert_eq!(without.len(), 10, "row {row}");
        assert!(without.iter().all(|r| !twice[..5].contains(r)), "row {row}: an excluded movie came back");
    }
}
