//! `cinevec ingest --catalog` and `cinevec catalog export`: catalog JSONL into the store and back.

mod support;

use cinevec::catalog::jsonl::CatalogRecord;
use std::collections::HashMap;
use std::path::Path;
use support::*;

fn catalog_fixture(path: &Path) {
    let mut bytes = Vec::new();
    for line in [
        r#"{"id": "a", "rating": 7.1, "votes": 100, "movie": {"title": "Alpha", "genres": ["Drama"], "release_year": 2001}}"#,
        r#"{"id": "b", "rating": null, "movie": {"actors": ["X"], "title": "Beta", "extra": {"k": 1}}}"#,
        r#"{"id": "broken", "movie": "#,
        r#"{"id": "t5", "movie": {"title": 5}}"#,
        r#"{"id": "a", "rating": 1.0, "votes": 1, "movie": {"title": "Alpha again"}}"#,
        "",
        r#"{"id": "c", "rating": 5.5, "votes": 31, "movie": {"title": "Gamma", "principals": [{"N": "composer"}]}}"#,
    ] {
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(b"{\"id\": \"bad-utf8\", \"movie\": {\"title\": \"\xff\"}}\n");
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn lines_are_validated_counted_and_deduplicated() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("catalog.jsonl");
    catalog_fixture(&file);
    let db = tmp.path().join("c.db");
    let (ok, out, stderr) = run(&mut ingest(&["--catalog"], &file, &db));
    assert!(ok, "{stderr}");
    assert_eq!(line(&out, "movies"), "movies   read 7, kept 3, skipped 4 (malformed 3, duplicate id 1)");
    assert!(stderr.contains("catalog.jsonl:3: skipped: not valid JSON"), "{stderr}");
    assert!(stderr.contains("catalog.jsonl:4: skipped: `movie`: field `title` must be a string"), "{stderr}");
    assert!(stderr.contains("catalog.jsonl:8: skipped: not valid UTF-8"), "{stderr}");

    let movies = stored(&db);
    let ids: Vec<&str> = movies.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    // The first line of a duplicated id wins, as in `cinevec embed`.
    assert_eq!(movies[0].movie.title(), "Alpha");
    assert_eq!((movies[0].rating, movies[0].votes), (Some(7.1), Some(100)));
    assert_eq!((movies[1].rating, movies[1].votes), (None, None));
    assert_eq!(movies[0].source, "catalog:catalog.jsonl");
    let keys: Vec<&str> = movies[1].movie.fields().keys().map(String::as_str).collect();
    assert_eq!(keys, ["title", "actors", "extra"], "canonical order, extras kept");
}

#[test]
fn strict_checks_every_line_before_writing_any() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("catalog.jsonl");
    catalog_fixture(&file);
    let db = tmp.path().join("c.db");
    let (ok, _, stderr) = run(&mut ingest(&["--strict", "--catalog"], &file, &db));
    assert!(!ok);
    assert!(stderr.contains("catalog.jsonl:3: not valid JSON"), "{stderr}");
    assert_eq!(count(&db), 0, "the good lines before the bad one must not be written either");
}

#[test]
fn export_writes_back_what_was_ingested() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("catalog.jsonl");
    catalog_fixture(&file);
    let db = tmp.path().join("c.db");
    run_ok(&mut ingest(&["--catalog"], &file, &db));
    let out = tmp.path().join("export/catalog.jsonl");
    let said = run_ok(cinevec().args(["catalog", "export", "--db"]).arg(&db).arg("--out").arg(&out));
    assert!(said.contains("exported 3 movies"), "{said}");
    let text = std::fs::read_to_string(&out).unwrap();
    let exported: Vec<CatalogRecord> = text.lines().map(|l| CatalogRecord::parse_line(l).unwrap()).collect();
    let originals: HashMap<String, CatalogRecord> = std::fs::read(&file)
        .unwrap()
        .split(|&b| b == b'\n')
        .filter_map(|l| std::str::from_utf8(l).ok())
        .filter_map(|l| CatalogRecord::parse_line(l).ok())
        .rev() // the first of a duplicated id wins
        .map(|r| (r.id.clone(), r))
        .collect();
    assert_eq!(exported.len(), 3);
    for record in &exported {
        assert_eq!(record, &originals[&record.id]);
    }

    let info = run_ok(cinevec().args(["catalog", "info", "--db"]).arg(&db));
    assert!(info.contains(": 3 movies") && info.contains("catalog:catalog.jsonl: 3"), "{info}");
}

#[test]
fn reading_commands_refuse_a_missing_store() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("nothing.db");
    let (ok, _, stderr) = run(cinevec().args(["catalog", "info", "--db"]).arg(&db));
    assert!(!ok);
    assert!(stderr.contains("no catalog store at") && stderr.contains("cinevec ingest"), "{stderr}");
    assert!(!db.exists());
}

/// The imdb5000 catalog: 4,890 movies in, the same 4,890 documents out.
#[test]
#[ignore = "needs ../shared: run scripts/test.sh"]
fn imdb5000_round_trip() {
    let source = shared().join("data/imdb5000/catalog.jsonl");
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("c.db");
    let out = run_ok(&mut ingest(&["--strict", "--catalog"], &source, &db));
    assert_eq!(line(&out, "movies"), "movies   read 4890, kept 4890, skipped 0");
    assert_eq!(count(&db), 4890);

    let exported = tmp.path().join("out.jsonl");
    run_ok(cinevec().args(["catalog", "export", "--db"]).arg(&db).arg("--out").arg(&exported));
    let text = std::fs::read_to_string(&exported).unwrap();
    let back: HashMap<String, CatalogRecord> =
        text.lines().map(|l| CatalogRecord::parse_line(l).unwrap()).map(|r| (r.id.clone(), r)).collect();
    assert_eq!(text.lines().count(), 4890);
    assert_eq!(back.len(), 4890);
    let input = std::fs::read_to_string(&source).unwrap();
    for l in input.lines() {
        let original = CatalogRecord::parse_line(l).unwrap();
        let exported = &back[&original.id];
        assert_eq!(exported, &original);
        assert_eq!(exported.movie.render(), original.movie.render());
    }
}
