//! Asking in one's own words (`GET /v1/query`): a free-text request read into constraints
//! ([`parse`]), the movies that meet them ranked by a fusion of meaning and lexical evidence
//! ([`rank`]), and the reading itself, so that a page can show it as chips.
//!
//! What is read becomes hard constraints: years, genres (a movie must have every one), running time,
//! rating, and the people named exactly (their movies only). A person matched only by a typo or an
//! ambiguous surname, and the words no pass took, rank rather than restrict. When the constraints
//! leave nothing, the least certain one is dropped (a required person becomes a boost), again until
//! something is left, and the interpretation says what was relaxed.
//!
//! Candidates: the movies of the required people when there are any (all of them), else the nearest
//! movies by meaning under the filter ([`LiveCatalog::nearest`], [`CANDIDATES`] of them) and the most
//! voted movies that meet the constraints, and the titles holding more than half of the words left.
//! Lists fused ([`rank::fuse`]), weights [`WEIGHTS`].

pub mod parse;
pub mod rank;

use crate::index::{dot, Hit, VectorIndex};
use crate::service::live::people::Role;
use crate::service::live::{titles, Filter, LiveCatalog, TitleQuery};
use crate::service::query::Controls;
use parse::{Certainty, Person, Reading, Runtime, Years};
use rank::Ranked;
use serde::Serialize;
use std::collections::HashMap;

/// Candidates taken from each list.
pub const CANDIDATES: usize = 200;

/// Weights of the fused lists: meaning (the embedded text), the example film's neighbours, the
/// people the request boosts, title words, and popularity, which counts fully when the request
/// leaves no text to rank by meaning and half otherwise.
pub struct Weights {
    pub meaning: f32,
    pub example: f32,
    pub people: f32,
    pub title: f32,
    pub popular_alone: f32,
    pub popular: f32,
}

pub const WEIGHTS: Weights =
    Weights { meaning: 1.0, example: 1.0, people: 0.5, title: 0.5, popular_alone: 1.0, popular: 0.5 };

/// The reading of a request as answered.
#[derive(Debug, Serialize, Default)]
pub struct Interpretation {
    /// Inclusive years `[from, to]`, either `null` when open.
    pub years: Option<[Option<i64>; 2]>,
    pub genres: Vec<String>,
    pub people: Vec<PersonOut>,
    /// Running time in minutes.
    pub runtime: Option<RuntimeOut>,
    pub min_rating: Option<f64>,
    /// A film the request named as an example.
    pub example: Option<ExampleOut>,
    /// The words ranked by meaning (what no pass understood).
    pub text: String,
    /// Constraints dropped because, together, they left nothing.
    pub relaxed: Vec<String>,
    pub notes: Vec<String>,
    /// Each understood part: what to show, and the request without it (to ask again).
    pub chips: Vec<Chip>,
}

#[derive(Debug, Serialize)]
pub struct PersonOut {
    pub name: String,
    pub role: Role,
    /// Results must have them (else they only rank higher).
    pub required: bool,
    /// For a plural ("the wachowskis"): everyone it names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
    /// How many other people the words could name.
    pub others: usize,
}

#[derive(Debug, Serialize)]
pub struct RuntimeOut {
    pub min: Option<u32>,
    pub max: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct ExampleOut {
    pub id: String,
    pub title: String,
}

#[derive(Debug, Serialize)]
pub struct Chip {
    /// `years`, `genre`, `person`, `runtime`, `rating` or `example`.
    pub kind: &'static str,
    pub label: String,
    /// The words of the request it was read from.
    pub words: String,
    pub certainty: Certainty,
    /// The request without those words.
    pub without: String,
}

#[derive(Debug, Serialize)]
pub struct AskResult {
    pub id: String,
    pub title: String,
    pub year: Option<i64>,
    pub rating: Option<f64>,
    pub runtime: Option<u16>,
    /// The fused score (higher is better).
    pub score: f32,
    /// What matched, in words.
    pub why: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct AskResponse {
    pub q: String,
    pub k: usize,
    pub interpretation: Interpretation,
    pub results: Vec<AskResult>,
}

/// One constraint that may be relaxed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Part {
    Years,
    Runtime,
    Rating,
    Genre(usize),
    Person(usize),
}

/// The constraints in force.
#[derive(Debug, Clone)]
struct Active {
    years: bool,
    runtime: bool,
    rating: bool,
    genres: Vec<bool>,
    /// Per person: required (else a boost).
    required: Vec<bool>,
}

impl Active {
    fn of(r: &Reading) -> Active {
        Active {
            years: r.years.is_some(),
            runtime: r.runtime.is_some(),
            rating: r.min_rating.is_some(),
            genres: vec![true; r.genres.len()],
            required: r.people.iter().map(|p| p.value.required).collect(),
        }
    }

    /// The constraints in force, least certain first (then: rating, years, runtime, genres, people).
    fn parts(&self, r: &Reading) -> Vec<(Certainty, Part)> {
        let mut parts = Vec::new();
        if self.rating {
            parts.extend(r.min_rating.as_ref().map(|m| (m.certainty, Part::Rating)));
        }
        if self.years {
            parts.extend(r.years.as_ref().map(|y| (y.certainty, Part::Years)));
        }
        if self.runtime {
            parts.extend(r.runtime.as_ref().map(|t| (t.certainty, Part::Runtime)));
        }
        parts.extend(
            r.genres.iter().enumerate().filter(|(i, _)| self.genres[*i]).map(|(i, g)| (g.certainty, Part::Genre(i))),
        );
        parts.extend(
            r.people.iter().enumerate().filter(|(i, _)| self.required[*i]).map(|(i, p)| (p.certainty, Part::Person(i))),
        );
        parts.sort_by_key(|(c, _)| *c);
        parts
    }

    fn drop(&mut self, part: Part, r: &Reading) -> String {
        match part {
            Part::Rating => {
                self.rating = false;
                format!("min_rating {}", r.min_rating.as_ref().map_or(0.0, |m| m.value))
            }
            Part::Years => {
                self.years = false;
                format!("years {}", years_label(&r.years.as_ref().expect("active years are read").value))
            }
            Part::Runtime => {
                self.runtime = false;
                format!("runtime {}", runtime_label(&r.runtime.as_ref().expect("active runtime is read").value))
            }
            Part::Genre(i) => {
                self.genres[i] = false;
                format!("genre {}", r.genres[i].value)
            }
            Part::Person(i) => {
                self.required[i] = false;
                format!("{} (now ranks higher instead of required)", r.people[i].value.names.join(" / "))
            }
        }
    }
}

fn years_label(y: &Years) -> String {
    match (y.from, y.to) {
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) => format!("{a}–{b}"),
        (Some(a), None) => format!("since {a}"),
        (None, Some(b)) => format!("until {b}"),
        (None, None) => "any year".into(),
    }
}

fn runtime_label(t: &Runtime) -> String {
    match (t.min, t.max) {
        (Some(a), Some(b)) => format!("{a}–{b} min"),
        (None, Some(b)) => format!("≤ {b} min"),
        (Some(a), None) => format!("≥ {a} min"),
        (None, None) => "any length".into(),
    }
}

fn role_word(role: Role) -> &'static str {
    match role {
        Role::Director => "director",
        Role::Actor => "actor",
    }
}

/// What to embed for the meaning list: the words left, with the genres and people read, as a movie
/// document like the catalog's (`None`: no words left to rank by meaning).
pub fn meaning_document(r: &Reading) -> Option<serde_json::Value> {
    let text = r.text();
    if text.is_empty() {
        return None;
    }
    let mut doc = serde_json::json!({"title": text});
    if !r.genres.is_empty() {
        doc["genres"] = r.genres.iter().map(|g| g.value.clone()).collect();
    }
    let names = |role: Role| -> Vec<String> {
        r.people.iter().filter(|p| p.value.shown_role == role).flat_map(|p| p.value.names.clone()).collect()
    };
    let (directors, actors) = (names(Role::Director), names(Role::Actor));
    if !directors.is_empty() {
        doc["directors"] = directors.into();
    }
    if !actors.is_empty() {
        doc["actors"] = actors.into();
    }
    Some(doc)
}

/// The request without words `span` (word indexes), spaces tidied.
fn without(r: &Reading, span: (usize, usize)) -> String {
    let (start, end) = (r.words[span.0].start, r.words[span.1 - 1].end);
    let text = format!("{}{}", &r.q[..start], &r.q[end..]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn words_of(r: &Reading, span: (usize, usize)) -> String {
    r.q[r.words[span.0].start..r.words[span.1 - 1].end].to_string()
}

/// The interpretation shown for `r` (before relaxation).
fn interpretation(r: &Reading, catalog: &LiveCatalog) -> Interpretation {
    let mut chips = Vec::new();
    let mut chip = |kind, label: String, certainty, span| {
        chips.push(Chip { kind, label, words: words_of(r, span), certainty, without: without(r, span) })
    };
    if let Some(y) = &r.years {
        chip("years", years_label(&y.value), y.certainty, y.span);
    }
    for g in &r.genres {
        chip("genre", g.value.clone(), g.certainty, g.span);
    }
    for p in &r.people {
        chip("person", format!("{}: {}", role_word(p.value.shown_role), p.value.names.join(", ")), p.certainty, p.span);
    }
    if let Some(t) = &r.runtime {
        chip("runtime", runtime_label(&t.value), t.certainty, t.span);
    }
    if let Some(m) = &r.min_rating {
        chip("rating", format!("rated ≥ {}", m.value), m.certainty, m.span);
    }
    let example = r.example.as_ref().filter(|e| e.value < catalog.rows());
    if let Some(e) = example {
        chip("example", format!("like {}", catalog.entry(e.value).title()), e.certainty, e.span);
    }
    Interpretation {
        years: r.years.as_ref().map(|y| [y.value.from, y.value.to]),
        genres: r.genres.iter().map(|g| g.value.clone()).collect(),
        people: r
            .people
            .iter()
            .map(|p| PersonOut {
                name: p.value.names[0].clone(),
                role: p.value.shown_role,
                required: p.value.required,
                also: p.value.names[1..].to_vec(),
                others: p.value.others,
            })
            .collect(),
        runtime: r.runtime.as_ref().map(|t| RuntimeOut { min: t.value.min, max: t.value.max }),
        min_rating: r.min_rating.as_ref().map(|m| m.value),
        example: example.map(|e| {
            let entry = catalog.entry(e.value);
            ExampleOut { id: entry.id().to_string(), title: entry.title().to_string() }
        }),
        text: r.text(),
        relaxed: Vec::new(),
        notes: r.notes.clone(),
        chips,
    }
}

/// The constraints of `active` as a filter (on top of the request's own `base`) and a test of what a
/// filter cannot say (every genre, running time, required people).
struct Test<'a> {
    filter: Filter,
    genres: Vec<u32>,
    runtime: Option<Runtime>,
    /// Groups of people: a movie needs one of each group.
    required: Vec<(&'a [u32], Option<Role>)>,
    boost: Vec<(&'a Person, Option<Role>)>,
}

impl<'a> Test<'a> {
    fn of(r: &'a Reading, active: &Active, base: &Filter, catalog: &LiveCatalog) -> Test<'a> {
        let mut filter = base.clone();
        if let Some(y) = r.years.as_ref().filter(|_| active.years) {
            filter.min_year = filter.min_year.max(y.value.from);
            filter.max_year = match (filter.max_year, y.value.to) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        if let Some(m) = r.min_rating.as_ref().filter(|_| active.rating) {
            filter.min_rating = Some(filter.min_rating.map_or(m.value, |f| f.max(m.value)));
        }
        let genres = r
            .genres
            .iter()
            .zip(&active.genres)
            .filter(|(_, &on)| on)
            .map(|(g, _)| catalog.genre_id(&g.value).unwrap_or(u32::MAX))
            .collect();
        let mut required = Vec::new();
        let mut boost = Vec::new();
        for (p, &req) in r.people.iter().zip(&active.required) {
            if req {
                required.push((p.value.ids.as_slice(), p.value.role));
            } else {
                boost.push((&p.value, p.value.role));
            }
        }
        Test {
            filter,
            genres,
            runtime: r.runtime.as_ref().filter(|_| active.runtime).map(|t| t.value),
            required,
            boost,
        }
    }

    /// What the filter cannot test.
    fn extra(&self, catalog: &LiveCatalog, row: usize) -> bool {
        let genres = catalog.row_genres(row);
        self.genres.iter().all(|g| genres.contains(g))
            && self.runtime.is_none_or(|t| {
                catalog.entry(row).runtime().is_some_and(|m| {
                    let m = u32::from(m);
                    t.min.is_none_or(|lo| m >= lo) && t.max.is_none_or(|hi| m <= hi)
                })
            })
            && self.required.iter().all(|(ids, role)| ids.iter().any(|&p| catalog.has_person(row, p, *role)))
    }
}

/// The rows of any of `ids` in `role`, ascending, each once.
fn rows_of_any(catalog: &LiveCatalog, ids: &[u32], role: Option<Role>) -> Vec<usize> {
    let mut rows: Vec<usize> = ids.iter().flat_map(|&p| catalog.rows_of_person(p, role)).collect();
    rows.sort_unstable();
    rows.dedup();
    rows
}

/// Rank by cosine with `query`, best first.
fn by_meaning(catalog: &LiveCatalog, rows: &[usize], query: &[f32]) -> Vec<usize> {
    let mut scored: Vec<(f32, usize)> = rows.iter().map(|&r| (dot(query, catalog.vector(r)), r)).collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, r)| r).collect()
}

fn by_votes(catalog: &LiveCatalog, rows: &mut [usize]) {
    rows.sort_by_key(|&r| (std::cmp::Reverse(catalog.entry(r).votes.unwrap_or(0)), r));
}

/// The lists for one set of constraints; empty when nothing meets them.
struct Lists {
    meaning: Vec<usize>,
    example: Vec<usize>,
    people: Vec<usize>,
    title: Vec<usize>,
    popular: Vec<usize>,
}

impl Lists {
    fn is_empty(&self) -> bool {
        self.meaning.is_empty()
            && self.example.is_empty()
            && self.people.is_empty()
            && self.title.is_empty()
            && self.popular.is_empty()
    }
}

fn lists(
    catalog: &LiveCatalog,
    index: &VectorIndex,
    r: &Reading,
    test: &Test,
    meaning: Option<&[f32]>,
    exact: bool,
    excluded: &[usize],
) -> Lists {
    let passes = catalog.passes(&test.filter);
    let ok = |row: usize| passes(row) && test.extra(catalog, row);
    let example = r.example.as_ref().map(|e| e.value).filter(|&row| row < catalog.rows());
    // The strip's `exclude` and the example film itself, sorted (what `nearest` takes).
    let mut exclude: Vec<usize> = example.into_iter().chain(excluded.iter().copied()).collect();
    exclude.sort_unstable();
    exclude.dedup();
    let ok = |row: usize| ok(row) && exclude.binary_search(&row).is_err();
    let near = |query: &[f32]| -> Vec<usize> {
        let hits = catalog.nearest(index, query, None, CANDIDATES, &test.filter, &exclude, exact);
        hits.into_iter().map(|h| h.row).filter(|&row| test.extra(catalog, row)).collect()
    };
    let mut out =
        Lists { meaning: Vec::new(), example: Vec::new(), people: Vec::new(), title: Vec::new(), popular: Vec::new() };
    match test.required.first() {
        Some((ids, role)) => {
            // Every movie of the first required person (or group) that meets the rest.
            let mut rows: Vec<usize> = rows_of_any(catalog, ids, *role).into_iter().filter(|&row| ok(row)).collect();
            if let Some(q) = meaning {
                out.meaning = by_meaning(catalog, &rows, q);
            }
            if let Some(row) = example {
                out.example = by_meaning(catalog, &rows, catalog.vector(row));
            }
            by_votes(catalog, &mut rows);
            out.popular = rows;
        }
        None => {
            if let Some(q) = meaning {
                out.meaning = near(q);
            }
            if let Some(row) = example {
                out.example = near(catalog.vector(row));
            }
            out.popular = catalog.rows_by_votes().filter(|&row| ok(row)).take(CANDIDATES).collect();
        }
    }
    for (person, role) in &test.boost {
        out.people.extend(rows_of_any(catalog, &person.ids, *role).into_iter().filter(|&row| ok(row)));
    }
    by_votes(catalog, &mut out.people);
    out.people.dedup();
    let text = r.text();
    if !text.is_empty() {
        if let Ok(q) = TitleQuery::parse(&format!("{text} ")) {
            // A title is lexical evidence when it holds more than half of the words left (all of one
            // or two): one shared word of a longer phrase ("Time" for "time travel", "Heist" for
            // "heist goes wrong") says little about the phrase's meaning.
            let most = |key: u32| 2 * titles::matched_words(key) > q.len();
            out.title = catalog
                .find_titles_keyed(&q, CANDIDATES)
                .into_iter()
                .filter(|&(key, row)| most(key) && ok(row))
                .map(|(_, row)| row)
                .collect();
        }
    }
    out
}

/// The page `controls` ask for from the fused ranking (best first, [`Controls::wanted`] of it):
/// `min_score` floors the fused score the answer shows; diversity and groups are chosen by the search
/// core's rule ([`LiveCatalog::page`]) with each candidate's relevance its fused score over the best
/// one's, so that `diversity` weighs relevance against likeness on the same 0-1 scale as on the
/// similarity routes; then `offset` is skipped.
fn choose(catalog: &LiveCatalog, mut fused: Vec<(usize, f32)>, k: usize, controls: &Controls) -> Vec<(usize, f32)> {
    if let Some(floor) = controls.min_score {
        fused.retain(|&(_, score)| score >= floor);
    }
    let top = fused.first().map_or(1.0, |&(_, score)| score).max(f32::MIN_POSITIVE);
    let hits = fused.iter().map(|&(row, score)| Hit { row, score: score / top }).collect();
    let rest = Controls { exclude: Vec::new(), min_score: None, ..controls.clone() };
    let scores: HashMap<usize, f32> = fused.into_iter().collect();
    catalog.page(hits, k, &rest).into_iter().map(|h| (h.row, scores[&h.row])).collect()
}

/// Why `row` is a result, in words.
fn why(catalog: &LiveCatalog, r: &Reading, test: &Test, lists: &Lists, row: usize) -> Vec<String> {
    let e = catalog.entry(row);
    let mut why = Vec::new();
    let mut person = |p: &Person, role: Option<Role>| {
        for (&id, name) in p.ids.iter().zip(&p.names) {
            for rl in [Role::Director, Role::Actor] {
                if role.is_none_or(|want| want == rl) && catalog.has_person(row, id, Some(rl)) {
                    why.push(format!("{}: {name}", role_word(rl)));
                }
            }
        }
    };
    for p in &r.people {
        person(&p.value, p.value.role);
    }
    let names = catalog.genre_names();
    let genres: Vec<&str> = test.genres.iter().filter_map(|&g| names.get(g as usize)).map(|g| &**g).collect();
    if !genres.is_empty() {
        why.push(format!("genre: {}", genres.join(", ")));
    }
    if test.filter.min_year.is_some() || test.filter.max_year.is_some() {
        why.extend(e.year().map(|y| format!("year: {y}")));
    }
    if test.runtime.is_some() {
        why.extend(e.runtime().map(|m| format!("runtime: {m} min")));
    }
    if test.filter.min_rating.is_some() {
        why.extend(e.rating.map(|m| format!("rating: {m}")));
    }
    let place = |list: &[usize]| list.iter().position(|&x| x == row).map(|i| i + 1);
    if let Some(i) = place(&lists.meaning) {
        why.push(format!("meaning of \"{}\": #{i}", r.text()));
    }
    if let (Some(i), Some(ex)) = (place(&lists.example), &r.example) {
        why.push(format!("like {}: #{i}", catalog.entry(ex.value).title()));
    }
    if place(&lists.title).is_some() {
        why.push(format!("title words: {}", r.text()));
    }
    why
}

/// Answer a reading (made by [`parse::read`]) with `meaning`, the embedding of
/// [`meaning_document`] (when there is one), under the request's own `base` filter.
pub fn answer(
    catalog: &LiveCatalog,
    index: &VectorIndex,
    r: &Reading,
    meaning: Option<&[f32]>,
    base: &Filter,
    k: usize,
    controls: &Controls,
) -> (Interpretation, Vec<AskResult>) {
    let excluded = catalog.exclusion(&controls.exclude, &[]);
    let mut shown = interpretation(r, catalog);
    let mut active = Active::of(r);
    let (test, found) = loop {
        let test = Test::of(r, &active, base, catalog);
        let found = lists(catalog, index, r, &test, meaning, false, &excluded);
        if !found.is_empty() {
            break (test, found);
        }
        match active.parts(r).first() {
            Some(&(_, part)) => {
                let what = active.drop(part, r);
                shown.relaxed.push(what);
            }
            None => break (test, found),
        }
    };
    if found.is_empty() {
        shown.notes.push("no movie meets the request, even with every constraint it was read with relaxed".into());
    }
    let popular = if r.text.is_empty() && r.example.is_none() { WEIGHTS.popular_alone } else { WEIGHTS.popular };
    let fused = rank::fuse(
        &[
            Ranked { rows: &found.meaning, weight: WEIGHTS.meaning },
            Ranked { rows: &found.example, weight: WEIGHTS.example },
            Ranked { rows: &found.people, weight: WEIGHTS.people },
            Ranked { rows: &found.title, weight: WEIGHTS.title },
            Ranked { rows: &found.popular, weight: popular },
        ],
        controls.wanted(k),
    );
    let results = choose(catalog, fused, k, controls)
        .into_iter()
        .map(|(row, score)| {
            let e = catalog.entry(row);
            AskResult {
                id: e.id().to_string(),
                title: e.title().to_string(),
                year: e.year(),
                rating: e.rating,
                runtime: e.runtime(),
                score,
                why: why(catalog, r, &test, &found, row),
            }
        })
        .collect();
    // Required flags as answered (a relaxed person is a boost).
    for (p, &req) in shown.people.iter_mut().zip(&active.required) {
        p.required = req;
    }
    (shown, results)
}
