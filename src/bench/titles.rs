//! `cinevec bench-titles`: the title search as the web page's search box uses it, at the reference
//! catalog size. Real titles (catalog JSONL files) are repeated with a made-up word appended until
//! the catalog has `rows` movies (a word vocabulary and posting-list lengths like a real catalog's:
//! every copy keeps "the", "of", ...). Then every prefix of `titles` real titles, as typed and with
//! one typo, is searched, as the page does while a person types; the linear substring scan the
//! service used before the index (reimplemented here as it was) and the index-less scan by the same
//! rules are timed on a sample of the same queries in the same run, as the reference.

use crate::bench::service::memory;
use crate::rng::Rng;
use crate::service::live::{fold, no_matrix, Facts, LiveCatalog, NewMovie, TitleQuery};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::borrow::Cow;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

/// What `cinevec bench-titles` measures.
#[derive(Debug, Clone)]
pub struct TitleBenchOptions {
    /// Catalog JSONL files with the real titles.
    pub catalogs: Vec<PathBuf>,
    /// Movies in the searched catalog.
    pub rows: usize,
    /// Real titles whose every prefix is searched (as typed, and again with one typo).
    pub titles: usize,
    /// Results per search (the page asks for 8).
    pub limit: usize,
    /// Time the reference scans on every `sample`-th query.
    pub sample: usize,
    pub seed: u64,
    pub json: Option<PathBuf>,
}

struct Movie {
    title: String,
    year: Option<i64>,
    votes: u64,
}

fn read_catalog(path: &PathBuf, into: &mut Vec<Movie>) -> Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line).with_context(|| format!("a line of {}", path.display()))?;
        let Some(title) = v["movie"]["title"].as_str() else { continue };
        into.push(Movie {
            title: title.to_string(),
            year: v["movie"]["release_year"].as_i64(),
            votes: v["votes"].as_u64().unwrap_or(0),
        });
    }
    Ok(())
}

/// A pronounceable made-up word ("Torvamel").
fn made_up_word(rng: &mut Rng) -> String {
    const SYLLABLES: [&str; 24] = [
        "ka", "lo", "mi", "ra", "ven", "tor", "sa", "del", "mar", "qui", "zo", "bel", "nu", "rik", "tha", "gor", "li",
        "an", "eph", "ul", "dra", "mo", "sin", "ce",
    ];
    let mut w = String::new();
    for _ in 0..2 + rng.below(3) {
        w.push_str(SYLLABLES[rng.below(SYLLABLES.len())]);
    }
    let mut c = w.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

/// `title` with one typo (substitution, deletion or transposition) in its longest word of 4 or more
/// letters; `None` when it has none.
fn with_typo(title: &str, rng: &mut Rng) -> Option<String> {
    let chars: Vec<char> = title.chars().collect();
    // The longest run of letters.
    let (mut best, mut start) = ((0, 0), None);
    for (i, c) in chars.iter().chain(std::iter::once(&' ')).enumerate() {
        match (c.is_alphabetic(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if i - s > best.1 - best.0 {
                    best = (s, i);
                }
                start = None;
            }
            _ => {}
        }
    }
    let (s, e) = best;
    if e - s < 4 {
        return None;
    }
    let mut out = chars.clone();
    let at = s + 1 + rng.below(e - s - 2);
    match rng.below(3) {
        0 => out[at] = if out[at] == 'e' { 'a' } else { 'e' },
        1 => {
            out.remove(at);
        }
        _ => out.swap(at, at + 1),
    }
    Some(out.into_iter().collect())
}

/// The title search before the index: exact title, then prefix, then a word starting with the
/// query, then anywhere in the title; ties by votes (as `LiveCatalog::search_titles` was).
fn substring_scan(folded: &[String], votes: &[u64], query: &str, limit: usize) -> Vec<usize> {
    let q = fold(query.trim());
    if q.is_empty() {
        return Vec::new();
    }
    let rank = |title: &str| -> Option<u8> {
        if title == q {
            Some(0)
        } else if title.starts_with(&q) {
            Some(1)
        } else if title.match_indices(&q).any(|(i, _)| !title[..i].ends_with(char::is_alphanumeric)) {
            Some(2)
        } else if title.contains(&q) {
            Some(3)
        } else {
            None
        }
    };
    let mut found: Vec<(u8, usize)> =
        folded.iter().enumerate().filter_map(|(row, t)| rank(t).map(|r| (r, row))).collect();
    found.sort_by(|a, b| a.0.cmp(&b.0).then(votes[b.1].cmp(&votes[a.1])));
    found.into_iter().take(limit).map(|(_, row)| row).collect()
}

struct Query {
    text: String,
    /// The row whose title it was typed from, and whether the whole title was typed.
    target: usize,
    complete: bool,
    typo: bool,
}

fn percentiles(mut ms: Vec<f64>) -> Value {
    if ms.is_empty() {
        return Value::Null;
    }
    ms.sort_by(f64::total_cmp);
    let at = |p: usize| ms[(ms.len() * p / 100).min(ms.len() - 1)];
    json!({"n": ms.len(), "p50_ms": at(50), "p90_ms": at(90), "p99_ms": at(99), "max_ms": ms[ms.len() - 1],
           "mean_ms": ms.iter().sum::<f64>() / ms.len() as f64})
}

/// Share of the complete queries (whole title typed) whose movie is among the results.
fn found_rate(queries: &[&Query], found: &[bool], typo: bool) -> Value {
    let (mut n, mut hit) = (0usize, 0usize);
    for (q, &f) in queries.iter().zip(found) {
        if q.complete && q.typo == typo {
            n += 1;
            hit += usize::from(f);
        }
    }
    json!({"complete_queries": n, "found": hit, "rate": if n == 0 { 0.0 } else { hit as f64 / n as f64 }})
}

/// `cinevec bench-titles`.
pub fn bench_titles(o: &TitleBenchOptions) -> Result<()> {
    let mut real = Vec::new();
    for path in &o.catalogs {
        read_catalog(path, &mut real)?;
    }
    if real.is_empty() {
        bail!("no titles in {:?}", o.catalogs);
    }
    let mut rng = Rng::new(o.seed);
    let real_count = real.len();
    let mut movies: Vec<Movie> = Vec::with_capacity(o.rows);
    for i in 0..o.rows {
        let m = &real[i % real_count];
        let copy = i / real_count;
        if copy == 0 {
            movies.push(Movie { title: m.title.clone(), year: m.year, votes: m.votes });
        } else {
            let title = format!("{} {}", m.title, made_up_word(&mut rng));
            movies.push(Movie {
                title,
                year: m.year.map(|y| y + rng.below(11) as i64 - 5),
                votes: m.votes / (copy as u64 + 1),
            });
        }
    }
    let mut catalog = LiveCatalog::new(no_matrix(), 1);
    catalog.reserve(movies.len());
    for (i, m) in movies.iter().enumerate() {
        let facts = Facts {
            title: Cow::Borrowed(&m.title),
            genres: vec![],
            release_year: m.year,
            directors: vec![],
            actors: vec![],
            runtime_minutes: None,
        };
        catalog
            .push(NewMovie { id: format!("t{i}"), rating: None, votes: Some(m.votes), facts, source: "bench" }, &[1.0]);
    }
    let folded: Vec<String> = movies.iter().map(|m| fold(&m.title)).collect();
    let votes: Vec<u64> = movies.iter().map(|m| m.votes).collect();

    // The queries: every prefix of `titles` real titles spread over the real ones, as typed and with a typo.
    let step = (real_count / o.titles.max(1)).max(1);
    let mut queries = Vec::new();
    for target in (0..real_count).step_by(step).take(o.titles) {
        let typed = real[target].title.clone();
        let typo = with_typo(&typed, &mut rng);
        for (text, is_typo) in std::iter::once((typed, false)).chain(typo.map(|t| (t, true))) {
            let chars: Vec<char> = text.chars().collect();
            for n in 1..=chars.len() {
                let prefix: String = chars[..n].iter().collect();
                if !prefix.trim().is_empty() {
                    queries.push(Query { text: prefix, target, complete: n == chars.len(), typo: is_typo });
                }
            }
        }
    }
    let sample: Vec<&Query> = queries.iter().step_by(o.sample.max(1)).collect();

    // The same rules without the index (what answers while it is being built): a sample.
    let mut rules_scan_ms = Vec::new();
    for q in &sample {
        let t = Instant::now();
        let parsed = TitleQuery::parse(&q.text).map_err(anyhow::Error::msg)?;
        std::hint::black_box(catalog.find_titles(&parsed, o.limit));
        rules_scan_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }

    let (_, rss_before) = memory();
    let t = Instant::now();
    catalog.index_titles();
    let build_ms = t.elapsed().as_secs_f64() * 1e3;
    let (_, rss_after) = memory();
    let index = catalog.title_index().context("the title index")?;

    let (mut index_ms, mut found) = (Vec::with_capacity(queries.len()), Vec::with_capacity(queries.len()));
    let (mut typed_ms, mut typo_ms, mut parse_ms) = (Vec::new(), Vec::new(), Vec::new());
    for q in &queries {
        let t = Instant::now();
        let parsed = TitleQuery::parse(&q.text).map_err(anyhow::Error::msg)?;
        parse_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let rows = catalog.find_titles(&parsed, o.limit);
        let ms = t.elapsed().as_secs_f64() * 1e3;
        index_ms.push(ms);
        if q.typo { &mut typo_ms } else { &mut typed_ms }.push(ms);
        found.push(rows.contains(&q.target));
    }
    let mut substring_ms = Vec::new();
    let mut substring_found = Vec::new();
    for q in &sample {
        let t = Instant::now();
        let rows = substring_scan(&folded, &votes, &q.text, o.limit);
        substring_ms.push(t.elapsed().as_secs_f64() * 1e3);
        substring_found.push(rows.contains(&q.target));
    }
    let mut slowest: Vec<(f64, &str)> = index_ms.iter().zip(&queries).map(|(&ms, q)| (ms, q.text.as_str())).collect();
    slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
    slowest.truncate(10);
    let sampled_found: Vec<bool> = (0..queries.len()).step_by(o.sample.max(1)).map(|i| found[i]).collect();
    let all: Vec<&Query> = queries.iter().collect();

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let out = json!({
        "catalogs": o.catalogs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "real_titles": real_count,
        "rows": catalog.rows(),
        "index": {"build_ms": build_ms, "heap_bytes": index.heap_bytes(), "words": index.words(),
                  "rss_growth_bytes": rss_after.saturating_sub(rss_before), "score_buffer_bytes_per_thread": 4 * index.rows()},
        "queries": queries.len(),
        "queried_titles": o.titles,
        "limit": o.limit,
        "index_search": percentiles(index_ms.clone()),
        "index_slowest": slowest.iter().map(|(ms, q)| json!({"q": q, "ms": ms})).collect::<Vec<_>>(),
        "index_search_typed": percentiles(typed_ms),
        "of_which_query_parsing_and_dfas": percentiles(parse_ms),
        "index_search_with_typo": percentiles(typo_ms),
        "index_found_whole_title": found_rate(&all, &found, false),
        "index_found_whole_title_with_typo": found_rate(&all, &found, true),
        "reference_sample_every": o.sample,
        "substring_scan": percentiles(substring_ms),
        "substring_scan_found_whole_title": found_rate(&sample, &substring_found, false),
        "substring_scan_found_whole_title_with_typo": found_rate(&sample, &substring_found, true),
        "index_found_on_that_sample": found_rate(&sample, &sampled_found, false),
        "index_found_on_that_sample_with_typo": found_rate(&sample, &sampled_found, true),
        "rules_scan_without_index": percentiles(rules_scan_ms),
        "loadavg": load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    });
    let p = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "title index over {} movies ({} real titles repeated): built in {:.0} ms, {:.1} MB, {} words",
        catalog.rows(),
        real_count,
        build_ms,
        index.heap_bytes() as f64 / 1e6,
        index.words()
    );
    println!(
        "type-ahead, {} queries (every prefix of {} titles, as typed and with a typo): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        queries.len(),
        o.titles,
        p(&out["index_search"], "p50_ms"),
        p(&out["index_search"], "p99_ms"),
        p(&out["index_search"], "max_ms")
    );
    println!(
        "reference on every {}th query: substring scan p50 {:.2} ms, p99 {:.2} ms; same rules without the index p50 {:.2} ms, p99 {:.2} ms",
        o.sample,
        p(&out["substring_scan"], "p50_ms"),
        p(&out["substring_scan"], "p99_ms"),
        p(&out["rules_scan_without_index"], "p50_ms"),
        p(&out["rules_scan_without_index"], "p99_ms")
    );
    println!("{}", serde_json::to_string(&out)?);
    if let Some(path) = &o.json {
        std::fs::File::create(path)?.write_all(serde_json::to_string_pretty(&out)?.as_bytes())?;
    }
    Ok(())
}
