//! Fuzzing on stable Rust, as ordinary tests (proptest): hostile input to every parser that takes
//! input from outside — the movie-document canonicaliser, the catalog JSONL reader, the IMDb TSV
//! readers and the HTTP request bodies. Each property first of all must not panic; where a parser
//! accepts, its output must round-trip.
//!
//! CI runs the default case count (256 per property, a few seconds). A long run, e.g. ~10 minutes:
//! `PROPTEST_CASES=2000000 cargo test --release --test fuzz_inputs` (see BENCHMARKS.md).

use cinevec::catalog::imdb::{self, Dump, Header, NameRow, PrincipalRow, RatingRow, TitleRow};
use cinevec::catalog::jsonl::CatalogRecord;
use cinevec::movie::MovieDoc;
use cinevec::server::api::{AddMovieRequest, MoviesRequest, RecommendRequest, SimilarQuery, SimilarRequest};
use cinevec::service::query::TopK;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const FIELDS: &[&str] = &[
    "title",
    "genres",
    "is_adult",
    "release_year",
    "runtime_minutes",
    "directors",
    "writers",
    "producers",
    "actors",
    "principals",
    "id",
    "rating",
    "votes",
    "movie",
    "movies",
    "k",
    "exact",
    "min_year",
    "max_year",
    "min_votes",
    "min_rating",
    "positive",
    "negative",
    "strategy",
    "exclude",
    "diversity",
    "offset",
    "min_score",
    "max_per",
    "per_group",
    "extra",
    "",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Any finite float: before serde_json's `float_roundtrip` feature was turned on, this found
        // -3935560340.1139836 parsed back as -3935560340.113984 (a canonical document not a fixed point).
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        (-1e9..1e9f64).prop_map(|f| Value::from(f.round())),
        (-5i64..200).prop_map(Value::from),
        prop_oneof![".*", "[ \t\n]*", "tt[0-9]{1,9}", "\\PC{0,12}", Just("linear".to_string())].prop_map(Value::String),
    ]
}

/// JSON values whose object keys are mostly the names the parsers look for.
fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(FIELDS).prop_map(str::to_string), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Objects with a title, so that more of them get past the first check.
fn movie_like() -> impl Strategy<Value = Value> {
    (json_value(), "\\PC{0,20}").prop_map(|(v, title)| {
        let mut obj = match v {
            Value::Object(o) => o,
            other => Map::from_iter([("extra".to_string(), other)]),
        };
        obj.entry("title").or_insert(Value::String(title));
        Value::Object(obj)
    })
}

fn tsv_field() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"\\N".to_vec()),
        Just(Vec::new()),
        "tt[0-9]{0,10}".prop_map(String::into_bytes),
        "nm[0-9]{0,10}".prop_map(String::into_bytes),
        "-?[0-9]{0,12}(\\.[0-9]{0,3})?".prop_map(String::into_bytes),
        "[A-Za-z,\r ]{0,12}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..12),
    ]
}

fn tsv_line() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(tsv_field(), 0..12).prop_map(|fields| fields.join(&b'\t'))
}

const HEADERS: [(Dump, &str); 4] = [
    (
        Dump::TitleBasics,
        "tconst\ttitleType\tprimaryTitle\toriginalTitle\tisAdult\tstartYear\tendYear\truntimeMinutes\tgenres",
    ),
    (Dump::TitleRatings, "tconst\taverageRating\tnumVotes"),
    (Dump::TitlePrincipals, "tconst\tordering\tnconst\tcategory\tjob\tcharacters"),
    (Dump::NameBasics, "nconst\tprimaryName\tbirthYear\tdeathYear\tprimaryProfession\tknownForTitles"),
];

proptest! {
    #[test]
    fn canonicaliser_accepts_or_refuses_and_what_it_accepts_is_stable(v in prop_oneof![json_value(), movie_like()]) {
        if let Ok(doc) = MovieDoc::from_value(v.clone()) {
            prop_assert_eq!(MovieDoc::parse(&v).as_ref().map(MovieDoc::render).ok(), Some(doc.render()));
            prop_assert!(!doc.title().trim().is_empty());
            // Canonical form is a fixed point: parsing the rendered text gives the same text.
            let rendered = doc.render();
            let again = MovieDoc::from_value(serde_json::from_str(&rendered).unwrap()).unwrap();
            prop_assert_eq!(again.render(), rendered);
        }
    }

    #[test]
    fn catalog_lines_parse_or_fail_cleanly_and_accepted_records_round_trip(
        line in prop_oneof![
            ".*",
            json_value().prop_map(|v| v.to_string()),
            (movie_like(), json_value(), json_value()).prop_map(|(m, r, n)| json!({"id": "tt1", "rating": r, "votes": n, "movie": m}).to_string()),
        ]
    ) {
        if let Ok(record) = CatalogRecord::parse_line(&line) {
            let back = CatalogRecord::parse_line(&record.to_line()).unwrap();
            prop_assert_eq!(back.to_line(), record.to_line());
        }
    }

    #[test]
    fn tsv_headers_and_rows_never_panic(header in tsv_line(), lines in prop::collection::vec(tsv_line(), 1..8)) {
        for dump in Dump::ALL {
            let _ = Header::parse(dump, &header);
        }
        for (dump, text) in HEADERS {
            let h = Header::parse(dump, text.as_bytes()).unwrap();
            for line in &lines {
                match dump {
                    Dump::TitleBasics => { let _ = TitleRow::parse(&h, line); }
                    Dump::TitleRatings => { let _ = RatingRow::parse(&h, line); }
                    Dump::TitlePrincipals => { let _ = PrincipalRow::parse(&h, line); }
                    Dump::NameBasics => { let _ = NameRow::parse(&h, line); }
                }
            }
        }
    }

    #[test]
    fn imdb_ids_round_trip(n in 0u32..1_000_000_000, junk in prop::collection::vec(any::<u8>(), 0..14)) {
        let id = imdb::format_id("tt", n);
        prop_assert_eq!(imdb::parse_id(id.as_bytes(), b"tt"), Some(n));
        if let Some(m) = imdb::parse_id(&junk, b"tt") {
            prop_assert_eq!(imdb::format_id("tt", m).into_bytes(), junk);
        }
    }

    #[test]
    fn request_bodies_parse_or_fail_cleanly(v in prop_oneof![json_value(), movie_like()], text in ".*") {
        if let Ok(mut r) = serde_json::from_value::<SimilarRequest>(v.clone()) {
            let _ = r.filter();
            let (diversity, offset) = (r.diversity, r.offset);
            if let Ok(c) = r.controls() {
                prop_assert!((0.0..=1.0).contains(&c.diversity));
                prop_assert!(c.offset <= 100 && c.exclude.len() <= 1000);
                prop_assert!(diversity.is_none_or(|d| (0.0..=1.0).contains(&d)) && offset.is_none_or(|o| (0..=100).contains(&o)));
            }
            let k = TopK::parse(r.k);
            prop_assert_eq!(k.is_ok(), r.k.is_none_or(|k| (1..=100).contains(&k)));
        }
        if let Ok(mut r) = serde_json::from_value::<RecommendRequest>(v.clone()) {
            let _ = r.filter();
            let _ = r.controls();
        }
        let _ = serde_json::from_value::<MoviesRequest>(v.clone());
        let _ = serde_json::from_value::<AddMovieRequest>(v.clone());
        let _ = serde_json::from_str::<SimilarRequest>(&text);
        if let Ok(q) = serde_json::from_value::<SimilarQuery>(v) {
            let _ = q.parse();
        }
    }

    #[test]
    fn query_string_controls_parse_or_fail_cleanly(exclude in ".{0,300}", diversity in any::<f64>(), offset in any::<i64>(), group in ".{0,12}", per in any::<i64>()) {
        use cinevec::service::query::ControlsBody;
        let body = ControlsBody::from_query(Some(&exclude), Some(diversity), Some(offset), None, Some(group), Some(per));
        if let Ok(c) = body.parse() {
            prop_assert!(c.diversity.is_finite() && (0.0..=1.0).contains(&c.diversity) && c.offset <= 100);
            prop_assert!(c.exclude.iter().all(|id| !id.trim().is_empty() && !id.chars().any(char::is_control)));
        }
    }
}
