//! `cinevec ingest --demo`: the vega-datasets movies through npm into the store.

mod support;

use cinevec::catalog::demo;
use serde_json::Value;
use support::*;

#[test]
#[ignore = "needs npm and the registry: run scripts/test.sh"]
fn demo_catalog_is_fetched_mapped_and_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let db = tmp.path().join("demo.db");
    let out = run_ok(cinevec().args(["ingest", "--demo", "--db"]).arg(&db).arg("--cache-dir").arg(&cache));

    // What to expect, counted straight from the package file: rated films with a title.
    let films = demo::parse_films(&demo::read_movies_json(&cache.join("vega-datasets-3.2.1.tgz")).unwrap()).unwrap();
    assert_eq!(films.len(), 3201);
    let rated = films.iter().filter(|f| !f["IMDB Rating"].is_null()).count() as u64;
    let untitled_rated = films.iter().filter(|f| !f["IMDB Rating"].is_null() && f["Title"].is_null()).count() as u64;
    assert_eq!(number(line(&out, "movies"), "read"), 3201);
    assert_eq!(number(line(&out, "movies"), "kept"), rated - untitled_rated);
    assert_eq!(number(line(&out, "movies"), "no rating"), 3201 - rated);

    let movies = stored(&db);
    assert_eq!(movies.len() as u64, rated - untitled_rated);
    assert!(movies.iter().all(|m| m.source == "vega-datasets@3.2.1" && m.id.starts_with("vega-movies-")));
    // The two-digit-year error is repaired: nothing after the data was compiled.
    let latest = movies.iter().filter_map(|m| m.movie.release_year()).max().unwrap();
    assert_eq!(latest, demo::DATA_YEAR);
    let by_title = |t: &str| movies.iter().filter(|m| m.movie.title() == t).collect::<Vec<_>>();
    let best_years = by_title("The Best Years of Our Lives");
    assert_eq!(best_years.len(), 1);
    let m = &best_years[0].movie;
    assert_eq!((m.release_year(), m.list("directors")), (Some(1946), vec!["William Wyler"]));
    assert_eq!(m.genres(), ["Drama"]);
    assert_eq!(m.fields()["release_date"], Value::from("1946-11-21"));
    assert_eq!(best_years[0].rating, Some(8.2));
    // Remakes share titles but not ids: 1925 and 1959 Ben-Hur are both there.
    let mut ben_hur: Vec<_> = by_title("Ben-Hur").iter().filter_map(|m| m.movie.release_year()).collect();
    ben_hur.sort();
    assert_eq!(ben_hur, [1925, 1959]);

    // The second run reads the cached package: no npm needed.
    let again =
        run_ok(cinevec().env("PATH", "").args(["ingest", "--demo", "--db"]).arg(&db).arg("--cache-dir").arg(&cache));
    assert!(line(&again, "store").contains(" 0 new, 0 changed,"), "{again}");
}

#[test]
fn without_npm_the_demo_says_to_install_nodejs() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = run(cinevec()
        .env("PATH", "")
        .args(["ingest", "--demo", "--db"])
        .arg(tmp.path().join("d.db"))
        .arg("--cache-dir")
        .arg(tmp.path().join("cache")));
    assert!(!ok);
    assert!(stderr.contains("npm not found: install Node.js"), "{stderr}");
}
