//! `cinevec ingest --imdb`: fixtures in the official format (written here), the official samples, and
//! the synthetic generator, through the real binary; the store read back through the library.

mod support;

use cinevec::catalog::imdb::{self, Dump, NameRow, PrincipalRow, RatingRow, TitleRow};
use cinevec::movie::{MovieDoc, REFERENCE_FIELDS};
use serde_json::json;
use std::path::Path;
use support::*;

const BASICS: &str = "\
tconst\ttitleType\tprimaryTitle\toriginalTitle\tisAdult\tstartYear\tendYear\truntimeMinutes\tgenres
tt0000001\tmovie\tThe \"Quoted\" Movie\tLe film\t0\t1999\t\\N\t\\N\t\\N
tt0000002\ttvMovie\tÉté à Paris\tÉté à Paris\t1\t\\N\t\\N\t88\tDrama,Romance
tt0000003\tshort\tA Short\tA Short\t0\t2001\t\\N\t12\tShort
tt0000004\ttvSeries\tA Series\tA Series\t0\t2005\t2009\t45\tComedy
tt0000005\tmovie\tFew Votes\tFew Votes\t0\t2010\t\\N\t90\tDrama
tt0000006\tmovie\tExactly Thirty\tExactly Thirty\t0\t2011\t\\N\t91\tComedy
tt0000007\tmovie\tUnrated\tUnrated\t0\t2012\t\\N\t100\tHorror
tt0000008\tmovie\tBroken\tBroken\t0\t2013\t\\N\t100
tt0000009\ttvEpisode\tAn Episode\tAn Episode\t0\t2014\t\\N\t22\tComedy
tt0000010\tmovie\tTen Crew\tTen Crew\t0\t1972\t\\N\t175\tCrime,Drama
";

/// tt0000007 has no rating; the last row is malformed (line 11).
const RATINGS: &str = "\
tconst\taverageRating\tnumVotes
tt0000001\t7.5\t1000
tt0000002\t6.1\t45
tt0000003\t8.0\t5000
tt0000004\t8.8\t100000
tt0000005\t5.0\t29
tt0000006\t4.2\t30
tt0000008\t6.0\t100
tt0000009\t7.0\t50
tt0000010\t9.2\t2000000
tt0000011\tx.y\t12
";

/// Orderings shuffled (and 10 after 9, not after 1); several categories per title; nm0000199 is
/// missing from name.basics; the last row is malformed.
const PRINCIPALS: &str = "\
tconst\tordering\tnconst\tcategory\tjob\tcharacters
tt0000010\t3\tnm0000103\tactress\t\\N\t[\"Kay\"]
tt0000010\t1\tnm0000101\tactor\t\\N\t[\"Michael\"]
tt0000010\t10\tnm0000110\tcomposer\t\\N\t\\N
tt0000010\t2\tnm0000102\tdirector\t\\N\t\\N
tt0000010\t5\tnm0000105\twriter\tnovel\t\\N
tt0000010\t4\tnm0000104\tproducer\tproducer\t\\N
tt0000010\t6\tnm0000102\twriter\tscreenplay\t\\N
tt0000010\t7\tnm0000199\tactor\t\\N\t[\"Ghost\"]
tt0000010\t8\tnm0000108\tcinematographer\tdirector of photography\t\\N
tt0000010\t9\tnm0000109\tself\t\\N\t[\"Himself\"]
tt0000001\t2\tnm0000201\tactor\t\\N\t[\"A \"quoted\" role\"]
tt0000001\t1\tnm0000202\tdirector\t\\N\t\\N
tt0000003\t1\tnm0000301\tdirector\t\\N\t\\N
tt0000002\t1\tnm0000401\tactress\t\\N\t\\N
tt0000002\ttwo\tnm0000402\tactor\t\\N\t\\N
";

/// CRLF line ends, as in the official samples; one malformed row.
const NAMES: &str = "\
nconst\tprimaryName\tbirthYear\tdeathYear\tprimaryProfession\tknownForTitles\r
nm0000101\tAl Pacino\t1940\t\\N\tactor,producer\ttt0000010\r
nm0000102\tFrancis Ford Coppola\t1939\t\\N\tdirector,writer\ttt0000010\r
nm0000103\tDiane Keaton\t1946\t\\N\tactress\ttt0000010\r
nm0000104\tAlbert S. Ruddy\t1930\t2024\tproducer\ttt0000010\r
nm0000105\tMario Puzo\t1920\t1999\twriter\ttt0000010\r
nm0000108\tGordon Willis\t1931\t2014\tcinematographer\ttt0000010\r
nm0000109\tJimmy Self\t\\N\t\\N\t\\N\t\\N\r
nm0000110\tNino Rota\t1911\t1979\tcomposer\ttt0000010\r
nm0000201\tZoë \"Z\" Quote\t\\N\t\\N\tactress\t\\N\r
nm0000202\tJean-Luc Dïrector\t\\N\t\\N\tdirector\t\\N\r
nm0000301\tShort Director\t\\N\t\\N\tdirector\t\\N\r
nm0000401\tAmélie Actrice\t\\N\t\\N\tactress\t\\N\r
this row has no tabs\r
";

/// Write the fixture with the given extension per file (`tsv` or `tsv.gz`).
fn fixture(dir: &Path, exts: [&str; 4]) {
    std::fs::create_dir_all(dir).unwrap();
    for ((stem, text), ext) in
        [("title.basics", BASICS), ("title.ratings", RATINGS), ("title.principals", PRINCIPALS), ("name.basics", NAMES)]
            .into_iter()
            .zip(exts)
    {
        write(&dir.join(format!("{stem}.{ext}")), text);
    }
}

const MIXED: [&str; 4] = ["tsv", "tsv.gz", "tsv", "tsv.gz"];

fn doc(id: &str, movies: &[cinevec::catalog::StoredMovie]) -> MovieDoc {
    movies.iter().find(|m| m.id == id).unwrap_or_else(|| panic!("{id} not stored")).movie.clone()
}

#[test]
fn fixture_becomes_reference_documents() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("imdb");
    fixture(&dir, MIXED);
    let db = tmp.path().join("catalog.db");
    let out = run_ok(&mut ingest(&["--imdb"], &dir, &db));

    assert_eq!(
        line(&out, "movies"),
        "movies   read 10, kept 4, skipped 6 (malformed 1, not a movie or TV movie 3, no rating 1, fewer than 30 votes 1)"
    );
    for (file, malformed) in
        [("title.basics.tsv ", 1), ("title.ratings.tsv.gz", 1), ("title.principals.tsv ", 1), ("name.basics.tsv.gz", 1)]
    {
        let l = line(&out, &format!("file     {file}"));
        assert_eq!(number(l, "rows"), malformed, "{l}");
    }
    assert_eq!(number(line(&out, "credits"), "credits"), 12, "credit rows used");
    assert_eq!(number(line(&out, "credits"), "used ("), 12, "people");
    assert_eq!(number(line(&out, "credits"), "),"), 1, "credits left out for a missing name");
    assert!(line(&out, "store").ends_with("4 new, 0 changed, 0 unchanged; 4 movies in the store"), "{out}");

    let movies = stored(&db);
    let ids: Vec<&str> = movies.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["tt0000001", "tt0000002", "tt0000006", "tt0000010"]);
    for m in &movies {
        let keys: Vec<&str> = m.movie.fields().keys().map(String::as_str).collect();
        assert_eq!(keys, REFERENCE_FIELDS, "{}: every reference key, in order", m.id);
        assert_eq!(m.source, "imdb");
    }

    // People by numeric ordering; actor and actress together; other categories as {name: category};
    // the principal missing from name.basics is left out.
    assert_eq!(
        doc("tt0000010", &movies).into_value(),
        json!({
            "title": "Ten Crew", "genres": ["Crime", "Drama"], "is_adult": false, "release_year": 1972,
            "runtime_minutes": 175,
            "directors": ["Francis Ford Coppola"], "writers": ["Mario Puzo", "Francis Ford Coppola"],
            "producers": ["Albert S. Ruddy"], "actors": ["Al Pacino", "Diane Keaton"],
            "principals": [{"Gordon Willis": "cinematographer"}, {"Jimmy Self": "self"}, {"Nino Rota": "composer"}]
        })
    );
    // \N genres and runtime are null; quotes are plain characters.
    assert_eq!(
        doc("tt0000001", &movies).into_value(),
        json!({
            "title": "The \"Quoted\" Movie", "genres": null, "is_adult": false, "release_year": 1999,
            "runtime_minutes": null, "directors": ["Jean-Luc Dïrector"], "writers": [], "producers": [],
            "actors": ["Zoë \"Z\" Quote"], "principals": []
        })
    );
    // Non-ASCII kept; adult; \N start year is null; the malformed principal row is not there.
    let ete = doc("tt0000002", &movies);
    assert_eq!((ete.title(), ete.is_adult(), ete.release_year()), ("Été à Paris", Some(true), None));
    assert_eq!(ete.fields()["release_year"], serde_json::Value::Null);
    assert_eq!(ete.list("actors"), ["Amélie Actrice"]);
    assert!(ete.render().contains("Été à Paris"), "non-ASCII must be kept as is");
    // Exactly 30 votes passes; no principals gives empty lists.
    let thirty = movies.iter().find(|m| m.id == "tt0000006").unwrap();
    assert_eq!((thirty.rating, thirty.votes), (Some(4.2), Some(30)));
    assert!(thirty.movie.list("actors").is_empty() && thirty.movie.principals().is_empty());
    let ten = movies.iter().find(|m| m.id == "tt0000010").unwrap();
    assert_eq!((ten.rating, ten.votes), (Some(9.2), Some(2_000_000)));
}

#[test]
fn gzip_and_plain_give_the_same_documents() {
    let tmp = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    for (name, exts) in [("plain", ["tsv"; 4]), ("gz", ["tsv.gz"; 4])] {
        let dir = tmp.path().join(name);
        fixture(&dir, exts);
        let db = tmp.path().join(format!("{name}.db"));
        run_ok(&mut ingest(&["--imdb"], &dir, &db));
        let movies: Vec<_> =
            stored(&db).into_iter().map(|m| (m.id, m.rating, m.votes, m.movie.render(), m.doc_sha256)).collect();
        results.push(movies);
    }
    assert_eq!(results[0].len(), 4);
    assert_eq!(results[0], results[1]);
}

#[test]
fn strict_fails_on_the_first_malformed_row_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("imdb");
    fixture(&dir, MIXED);
    let db = tmp.path().join("catalog.db");
    let (ok, _, stderr) = run(&mut ingest(&["--strict", "--imdb"], &dir, &db));
    assert!(!ok, "--strict must fail on malformed rows");
    assert!(stderr.contains("title.ratings.tsv.gz:11: `averageRating` is not a rating from 1 to 10"), "{stderr}");
    assert_eq!(count(&db), 0);

    // Without the malformed rows, --strict passes.
    let clean = |text: &str, bad: &str| text.lines().filter(|l| !l.contains(bad)).collect::<Vec<_>>().join("\n");
    write(&dir.join("title.basics.tsv"), &clean(BASICS, "Broken"));
    write(&dir.join("title.ratings.tsv.gz"), &clean(RATINGS, "x.y"));
    write(&dir.join("title.principals.tsv"), &clean(PRINCIPALS, "\ttwo\t"));
    write(&dir.join("name.basics.tsv.gz"), &clean(NAMES, "no tabs"));
    let out = run_ok(&mut ingest(&["--strict", "--imdb"], &dir, &db));
    assert_eq!(number(line(&out, "movies"), "kept"), 4);
}

#[test]
fn malformed_rows_are_reported_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("imdb");
    fixture(&dir, MIXED);
    let (ok, _, stderr) = run(&mut ingest(&["--imdb"], &dir, &tmp.path().join("c.db")));
    assert!(ok);
    for expected in [
        "title.basics.tsv:9: skipped: expected 9 tab-separated fields, found 8",
        "title.ratings.tsv.gz:11: skipped: `averageRating`",
        "title.principals.tsv:16: skipped: `ordering` is not a whole number",
        "name.basics.tsv.gz:14: skipped: expected 6 tab-separated fields, found 1",
    ] {
        assert!(stderr.contains(expected), "{expected:?} not in:\n{stderr}");
    }
}

#[test]
fn reingest_is_idempotent_and_updates_only_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("imdb");
    fixture(&dir, MIXED);
    let db = tmp.path().join("catalog.db");
    run_ok(&mut ingest(&["--imdb"], &dir, &db));
    let first = stored(&db);

    let again = run_ok(&mut ingest(&["--imdb"], &dir, &db));
    assert!(line(&again, "store").ends_with("0 new, 0 changed, 4 unchanged; 4 movies in the store"), "{again}");
    assert_eq!(stored(&db), first, "an identical re-ingest must not touch any row");

    // One more vote for tt0000006: that movie changes, keeps its added_at; the others stay as they were.
    write(&dir.join("title.ratings.tsv.gz"), &RATINGS.replace("tt0000006\t4.2\t30", "tt0000006\t4.3\t31"));
    std::thread::sleep(std::time::Duration::from_millis(5));
    let third = run_ok(&mut ingest(&["--imdb"], &dir, &db));
    assert!(line(&third, "store").ends_with("0 new, 1 changed, 3 unchanged; 4 movies in the store"), "{third}");
    let now = stored(&db);
    for (before, after) in first.iter().zip(&now) {
        if after.id == "tt0000006" {
            assert_eq!((after.rating, after.votes), (Some(4.3), Some(31)));
            assert_eq!(after.added_at, before.added_at);
            assert!(after.updated_at > before.updated_at, "{} vs {}", after.updated_at, before.updated_at);
        } else {
            assert_eq!(after, before);
        }
    }
}

#[test]
fn a_missing_dump_is_one_clear_error_before_any_store_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("imdb");
    fixture(&dir, MIXED);
    std::fs::remove_file(dir.join("name.basics.tsv.gz")).unwrap();
    let db = tmp.path().join("catalog.db");
    let (ok, _, stderr) = run(&mut ingest(&["--imdb"], &dir, &db));
    assert!(!ok);
    assert!(stderr.trim().starts_with("error: "), "{stderr}");
    assert!(stderr.contains("no name.basics.tsv or name.basics.tsv.gz there"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(!db.exists(), "no store for a failed start");
}

#[test]
fn a_wrong_header_names_the_missing_column() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("imdb");
    fixture(&dir, MIXED);
    write(&dir.join("title.ratings.tsv.gz"), &RATINGS.replacen("numVotes", "votes", 1));
    let (ok, _, stderr) = run(&mut ingest(&["--imdb"], &dir, &tmp.path().join("c.db")));
    assert!(!ok);
    assert!(
        stderr.contains("title.ratings.tsv.gz:1: header") && stderr.contains("lacks column `numVotes`"),
        "{stderr}"
    );
}

/// The generator decides, title by title, what passes the filter and which credits point at missing
/// people; a correct ingest must arrive at the same counts.
#[test]
fn synthetic_dumps_ingest_to_what_the_generator_expects() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gen");
    run_ok(cinevec().args(["gen-imdb", "--scale", "0.001", "--seed", "7", "--level", "1", "--out"]).arg(&dir));
    let expected: cinevec::bench::imdb_synth::SynthSummary =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    assert!(expected.kept_movies > 100 && expected.credits_missing_name > 0, "{expected:?}");

    let db = tmp.path().join("gen.db");
    let out = run_ok(&mut ingest(&["--strict", "--imdb"], &dir, &db));
    assert_eq!(number(line(&out, "movies"), "read"), expected.titles);
    assert_eq!(number(line(&out, "movies"), "kept"), expected.kept_movies);
    assert_eq!(number(line(&out, "file     title.principals.tsv.gz"), "tsv.gz"), expected.principals);
    assert_eq!(number(line(&out, "file     title.ratings.tsv.gz"), "tsv.gz"), expected.ratings);
    assert_eq!(number(line(&out, "file     name.basics.tsv.gz"), "tsv.gz"), expected.names);
    let credits = line(&out, "credits");
    assert_eq!(number(credits, "credits"), expected.kept_credits);
    assert_eq!(number(credits, "),"), expected.credits_missing_name);
    let movies = stored(&db);
    assert_eq!(movies.len() as u64, expected.kept_movies);
    let people: usize = movies
        .iter()
        .map(|m| {
            m.movie.list("directors").len()
                + m.movie.list("writers").len()
                + m.movie.list("producers").len()
                + m.movie.list("actors").len()
                + m.movie.principals().len()
        })
        .sum();
    assert_eq!(people as u64, expected.kept_credits, "every used credit is in exactly one document list");
}

type ParseRow = dyn Fn(&imdb::Header, &[u8]) -> Result<(), imdb::RowError>;

/// Every row of the official samples parses, with the values the files hold. (The sample files have
/// CRLF line ends and no final line end: 300 lines, a header and 299 rows.)
#[test]
#[ignore = "needs ../shared: run scripts/test.sh"]
fn official_samples_parse_every_row() {
    let dir = shared().join("data/imdb-official-samples");
    let bar = indicatif::ProgressBar::hidden();
    let mut errors = Vec::new();
    let mut check = |dump: Dump, expected_rows: u64, parse: &ParseRow| {
        let path = imdb::locate(&dir, dump).unwrap();
        let stats = imdb::read_dump(&path, dump, &bar, |line, header, row| {
            if let Err(e) = parse(header, row) {
                errors.push(format!("{}:{line}: {e}", path.display()));
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(stats.rows, expected_rows, "{}", path.display());
    };
    check(Dump::TitleBasics, 299, &|h, r| TitleRow::parse(h, r).map(drop));
    check(Dump::TitleRatings, 299, &|h, r| RatingRow::parse(h, r).map(drop));
    check(Dump::TitlePrincipals, 299, &|h, r| PrincipalRow::parse(h, r).map(drop));
    check(Dump::NameBasics, 199, &|h, r| NameRow::parse(h, r).map(drop));
    assert!(errors.is_empty(), "{errors:#?}");

    // Spot checks against the file's first rows.
    let basics = imdb::locate(&dir, Dump::TitleBasics).unwrap();
    let mut first = None;
    imdb::read_dump(&basics, Dump::TitleBasics, &bar, |_, h, row| {
        if first.is_none() {
            let t = TitleRow::parse(h, row).unwrap();
            first = Some((
                t.tconst,
                t.title_type.to_string(),
                t.primary_title.to_string(),
                t.start_year,
                t.runtime_minutes,
                t.genres.map(str::to_string),
            ));
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(
        first.unwrap(),
        (1, "short".to_string(), "Carmencita".to_string(), Some(1894), Some(1), Some("Documentary,Short".to_string()))
    );

    // And the whole ingest accepts them in strict mode.
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("samples.db");
    let out = run_ok(&mut ingest(&["--strict", "--imdb"], &dir, &db));
    assert_eq!(number(line(&out, "movies"), "read"), 299);
    let movies = stored(&db);
    assert_eq!(movies.len() as u64, number(line(&out, "movies"), "kept"));
    assert!(movies.iter().all(|m| m.votes.unwrap() >= 30));
}
