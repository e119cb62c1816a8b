//! Reading a free-text request into constraints, from the catalog itself: the words are folded and cut
//! like title words, then read in passes, each taking the words it understands so that the next pass
//! does not see them: years and eras, running time, rating, genres (the catalog's genre names, their
//! plurals and the synonyms of `genres.txt`), people (the people index: full names, surnames, typos,
//! possessives and plurals), a named film ("like the matrix"). What no pass took, less common words
//! ("movies", "with"), is the text ranked by meaning.
//!
//! Every constraint has a certainty ([`Certainty`]): when the constraints together leave nothing, the
//! least certain is dropped first (see `super::relax`).

use crate::service::live::people::{name_key, NameMatch, Role};
use crate::service::live::{fold, LiveCatalog, TitleQuery};
use std::sync::LazyLock;

/// Longest request, in characters (the title search's limit).
pub const MAX_CHARS: usize = 200;
/// Words of a request that are read (more are ignored).
pub const MAX_WORDS: usize = 32;

/// How sure a reading is, lowest first: the order constraints are dropped in when nothing meets them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Certainty {
    /// A vague word ("best", "short", "classic", "recent").
    Vague,
    /// A synonym, a typo or an ambiguous surname.
    Likely,
    /// Said in so many words ("1994", "under 100 minutes", "drama", "Stanley Kubrick").
    Explicit,
}

/// One word of the request: folded (apostrophes dropped) and where it is in the request (bytes).
#[derive(Debug, Clone)]
pub struct Word {
    pub text: String,
    pub start: usize,
    pub end: usize,
}

/// Cut `q` into words: runs of letters and digits, apostrophes inside or after a word dropped ("80's",
/// "kubrick's"), a decimal point between digits kept ("8.5").
pub fn words(q: &str) -> Vec<Word> {
    let mut out: Vec<Word> = Vec::new();
    let mut current: Option<Word> = None;
    let chars: Vec<(usize, char)> = q.char_indices().collect();
    for (i, &(at, c)) in chars.iter().enumerate() {
        let next_digit = chars.get(i + 1).is_some_and(|&(_, n)| n.is_ascii_digit());
        let in_number = current.as_ref().is_some_and(|w| w.text.bytes().all(|b| b.is_ascii_digit()));
        if c.is_alphanumeric() || (c == '.' && in_number && next_digit) {
            let w = current.get_or_insert(Word { text: String::new(), start: at, end: at });
            w.text.push_str(&fold(&c.to_string()));
            w.end = at + c.len_utf8();
        } else if (c == '\'' || c == '’') && current.is_some() {
            continue;
        } else if let Some(w) = current.take() {
            out.push(w);
        }
    }
    out.extend(current);
    out.truncate(MAX_WORDS);
    out
}

/// Words that carry no constraint and no meaning of their own.
const STOP: &[&str] = &[
    "a",
    "an",
    "the",
    "movie",
    "movies",
    "film",
    "films",
    "flick",
    "flicks",
    "picture",
    "pictures",
    "with",
    "from",
    "in",
    "of",
    "and",
    "or",
    "by",
    "about",
    "some",
    "me",
    "show",
    "find",
    "i",
    "want",
    "watch",
    "that",
    "which",
    "starring",
    "featuring",
    "directed",
    "director",
    "like",
    "similar",
    "to",
    "but",
    "for",
    "on",
    "at",
    "is",
    "are",
    "made",
    "any",
    "all",
    "one",
    "ones",
    "something",
    "where",
    "who",
    "set",
    "s",
    "its",
    "it",
    "this",
    "these",
    "those",
    "than",
    "more",
    "less",
    "good",
    "great",
    "stuff",
    "please",
    "give",
    "recommend",
    "what",
    "was",
    "were",
    "be",
    "been",
    "has",
    "have",
    "had",
    "as",
    "into",
];

pub fn is_stop(word: &str) -> bool {
    STOP.contains(&word)
}

/// An inclusive year range; either end may be open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Years {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// A running-time range in minutes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Runtime {
    pub min: Option<u32>,
    pub max: Option<u32>,
}

/// A person the request names.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    /// Catalog names' numbers: the person, or for a plural ("the wachowskis") everyone of that name.
    pub ids: Vec<u32>,
    pub names: Vec<String>,
    /// The role the request gave ("directed by", "with"), else `None`: any role.
    pub role: Option<Role>,
    /// The role shown: the request's, else what the catalog mostly knows them as.
    pub shown_role: Role,
    /// Their movies must be the results (else they only rank higher).
    pub required: bool,
    pub certainty: Certainty,
    /// Other people the words could name (an ambiguous surname).
    pub others: usize,
}

/// A constraint with the words it was read from (`span`: indexes into the words).
#[derive(Debug, Clone)]
pub struct Read<T> {
    pub value: T,
    pub certainty: Certainty,
    pub span: (usize, usize),
}

/// What a request was read as.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// The request as given.
    pub q: String,
    pub words: Vec<Word>,
    pub years: Option<Read<Years>>,
    pub runtime: Option<Read<Runtime>>,
    pub min_rating: Option<Read<f64>>,
    /// Genres (catalog spellings); a movie must have every one.
    pub genres: Vec<Read<String>>,
    pub people: Vec<Read<Person>>,
    /// A film named as an example (its row).
    pub example: Option<Read<usize>>,
    /// Words no pass took (stop words left out).
    pub text: Vec<usize>,
    /// What was noticed on the way (a year range given backwards, words past the limit).
    pub notes: Vec<String>,
}

impl Reading {
    /// The words no pass took, as one text.
    pub fn text(&self) -> String {
        self.text.iter().map(|&i| self.words[i].text.as_str()).collect::<Vec<_>>().join(" ")
    }

    /// Whether anything at all was understood or left to rank by meaning.
    pub fn is_empty(&self) -> bool {
        self.years.is_none()
            && self.runtime.is_none()
            && self.min_rating.is_none()
            && self.genres.is_empty()
            && self.people.is_empty()
            && self.example.is_none()
            && self.text.is_empty()
    }
}

/// Decade words and the decade of the 1900s they name ("twenties": the 1920s).
const DECADE_WORDS: &[(&str, i64)] = &[
    ("twenties", 1920),
    ("thirties", 1930),
    ("forties", 1940),
    ("fifties", 1950),
    ("sixties", 1960),
    ("seventies", 1970),
    ("eighties", 1980),
    ("nineties", 1990),
];

const NUMBER_WORDS: &[(&str, f64)] = &[
    ("one", 1.0),
    ("an", 1.0),
    ("a", 1.0),
    ("two", 2.0),
    ("three", 3.0),
    ("four", 4.0),
    ("five", 5.0),
    ("six", 6.0),
    ("seven", 7.0),
    ("eight", 8.0),
    ("nine", 9.0),
    ("ten", 10.0),
];

fn year(word: &str) -> Option<i64> {
    (word.len() == 4 && word.bytes().all(|b| b.is_ascii_digit()))
        .then(|| word.parse().ok())
        .flatten()
        .filter(|y| (1870..=2100).contains(y))
}

/// A decade ("80s", "1980s", "eighties", "2000s") as its first year.
fn decade(word: &str) -> Option<i64> {
    if let Some(&(_, d)) = DECADE_WORDS.iter().find(|(w, _)| *w == word) {
        return Some(d);
    }
    let digits = word.strip_suffix('s')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !digits.ends_with('0') {
        return None;
    }
    match digits.len() {
        2 => {
            let d: i64 = digits.parse().ok()?;
            Some(if d < 20 { 2000 + d } else { 1900 + d })
        }
        4 => year(digits),
        _ => None,
    }
}

fn number(word: &str) -> Option<f64> {
    if let Some(&(_, n)) = NUMBER_WORDS.iter().find(|(w, _)| *w == word) {
        return Some(n);
    }
    word.parse::<f64>().ok().filter(|n| n.is_finite() && *n >= 0.0)
}

/// Minutes in `n` of `unit` ("minutes", "min", "hours", "hrs", "h").
fn minutes(n: f64, unit: &str) -> Option<f64> {
    match unit {
        "minute" | "minutes" | "min" | "mins" | "m" => Some(n),
        "hour" | "hours" | "hr" | "hrs" | "h" => Some(n * 60.0),
        _ => None,
    }
}

/// The catalog's words for genres: each genre's folded name (and plural), then the synonym table.
struct GenreWords {
    /// (folded phrase, genres) — longest phrases first.
    phrases: Vec<(String, Vec<String>)>,
}

static SYNONYMS: LazyLock<Vec<(Vec<String>, Vec<String>)>> = LazyLock::new(|| {
    include_str!("genres.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once("=>"))
        .map(|(words, genres)| {
            (
                words.split(',').map(name_key).filter(|w| !w.is_empty()).collect(),
                genres.split('+').map(|g| g.trim().to_string()).collect(),
            )
        })
        .collect()
});

fn plural(word: &str) -> String {
    if let Some(stem) = word.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{word}s")
    }
}

impl GenreWords {
    fn of(catalog: &LiveCatalog) -> GenreWords {
        let mut phrases: Vec<(String, Vec<String>)> = Vec::new();
        for g in catalog.genre_names() {
            let key = name_key(g);
            if key.is_empty() {
                continue;
            }
            // "Sci-Fi": "sci fi"; plural on the last word ("comedies", "westerns").
            let plural_key = match key.rsplit_once(' ') {
                Some((head, last)) => format!("{head} {}", plural(last)),
                None => plural(&key),
            };
            phrases.push((key, vec![g.to_string()]));
            phrases.push((plural_key, vec![g.to_string()]));
        }
        for (words, genres) in SYNONYMS.iter() {
            // Only lines whose every genre the catalog has, in the catalog's spelling.
            let found: Option<Vec<String>> = genres
                .iter()
                .map(|g| catalog.genre_id(g).map(|id| catalog.genre_names()[id as usize].to_string()))
                .collect();
            if let Some(found) = found {
                phrases.extend(words.iter().map(|w| (w.clone(), found.clone())));
            }
        }
        phrases.sort_by_key(|(p, _)| std::cmp::Reverse(p.matches(' ').count()));
        GenreWords { phrases }
    }
}

/// The words from `i` on, `n` of them, joined by spaces, if none is taken.
fn phrase(words: &[Word], taken: &[bool], i: usize, n: usize) -> Option<String> {
    if i + n > words.len() || taken[i..i + n].iter().any(|&t| t) {
        return None;
    }
    Some(words[i..i + n].iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join(" "))
}

/// Read `q` (already checked: not blank, not too long, no control characters) against `catalog`.
pub fn read(q: &str, catalog: &LiveCatalog) -> Reading {
    let words = words(q);
    let mut r = Reading { q: q.to_string(), words, ..Default::default() };
    let mut taken = vec![false; r.words.len()];
    read_years(&mut r, &mut taken, catalog);
    read_runtime(&mut r, &mut taken);
    read_rating(&mut r, &mut taken);
    read_genres(&mut r, &mut taken, catalog);
    read_example(&mut r, &mut taken, catalog);
    read_people(&mut r, &mut taken, catalog);
    // A person read from one uncertain word (a typo, a shared surname) only boosts, and the word is
    // ranked by meaning too: "mafia" may be the actor Roma Maffia, but is more likely the word.
    for p in r.people.iter().filter(|p| !p.value.required) {
        taken[p.span.0..p.span.1].iter_mut().for_each(|t| *t = false);
    }
    // Numbers that were not read as a year, a length or a rating carry no meaning either.
    let numeric = |w: &str| w.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    r.text =
        (0..r.words.len()).filter(|&i| !taken[i] && !is_stop(&r.words[i].text) && !numeric(&r.words[i].text)).collect();
    r
}

fn take(taken: &mut [bool], span: (usize, usize)) {
    taken[span.0..span.1].iter_mut().for_each(|t| *t = true);
}

/// The first index at or after `i`, within `words`, whose word is one of `options` (the words before
/// it that are stop words may be skipped: "from the 1950s").
fn word_is(words: &[Word], i: usize, options: &[&str]) -> bool {
    words.get(i).is_some_and(|w| options.contains(&w.text.as_str()))
}

/// A year or decade at `i` (after an optional "the", "early", "mid", "late"): the range and the index
/// after it.
fn era_at(words: &[Word], taken: &[bool], mut i: usize) -> Option<(Years, usize)> {
    if word_is(words, i, &["the"]) {
        i += 1;
    }
    let part = if word_is(words, i, &["early", "mid", "late"]) {
        i += 1;
        Some(words[i - 1].text.as_str())
    } else {
        None
    };
    let w = words.get(i).filter(|_| !taken[i])?;
    if let Some(y) = year(&w.text) {
        return part.is_none().then_some((Years { from: Some(y), to: Some(y) }, i + 1));
    }
    let d = decade(&w.text)?;
    let (from, to) = match part {
        Some("early") => (d, d + 3),
        Some("mid") => (d + 3, d + 6),
        Some("late") => (d + 6, d + 9),
        _ => (d, d + 9),
    };
    Some((Years { from: Some(from), to: Some(to) }, i + 1))
}

fn read_years(r: &mut Reading, taken: &mut [bool], catalog: &LiveCatalog) {
    let n = r.words.len();
    let mut i = 0;
    while i < n {
        if taken[i] {
            i += 1;
            continue;
        }
        let w = r.words[i].text.clone();
        // "between A and B", "from A to B", "A to B", "A - B".
        let range_start = if matches!(w.as_str(), "between" | "from") { i + 1 } else { i };
        if let Some((a, after)) = era_at(&r.words, taken, range_start) {
            if word_is(&r.words, after, &["and", "to", "until", "till", "through"]) || r.gap_is(after, '-') {
                let next = if r.gap_is(after, '-') { after } else { after + 1 };
                if let Some((b, end)) = era_at(&r.words, taken, next) {
                    let (mut from, mut to) = (a.from, b.to);
                    if from > to {
                        r.notes.push(format!(
                            "the years {} to {} were given backwards: read as {} to {}",
                            from.unwrap_or_default(),
                            to.unwrap_or_default(),
                            to.unwrap_or_default(),
                            from.unwrap_or_default()
                        ));
                        (from, to) = (b.from, a.to);
                    }
                    r.set_years(Years { from, to }, Certainty::Explicit, (i, end), taken);
                    i = end;
                    continue;
                }
            }
        }
        let bound = match w.as_str() {
            "since" | "after" | "post" => Some(true),
            "before" | "until" | "pre" | "till" => Some(false),
            _ => None,
        };
        if let Some(lower) = bound {
            if let Some((e, end)) = era_at(&r.words, taken, i + 1) {
                let strict = matches!(w.as_str(), "after" | "before" | "post" | "pre");
                let years = match (lower, strict) {
                    (true, false) => Years { from: e.from, to: None },
                    (true, true) => Years { from: e.to.map(|y| y + 1), to: None },
                    (false, true) => Years { from: None, to: e.from.map(|y| y - 1) },
                    (false, false) => Years { from: None, to: e.to },
                };
                r.set_years(years, Certainty::Explicit, (i, end), taken);
                i = end;
                continue;
            }
        }
        let start = if matches!(w.as_str(), "in" | "from" | "of") { i + 1 } else { i };
        if let Some((e, end)) = era_at(&r.words, taken, start) {
            r.set_years(e, Certainty::Explicit, (i, end), taken);
            i = end;
            continue;
        }
        let vague = match w.as_str() {
            "recent" | "new" | "newer" | "latest" | "modern" => {
                catalog.newest_year().map(|y| Years { from: Some(y - 5), to: None })
            }
            "classic" | "classics" | "old" | "older" | "vintage" => Some(Years { from: None, to: Some(1979) }),
            _ => None,
        };
        if let Some(years) = vague.filter(|_| r.years.is_none()) {
            r.set_years(years, Certainty::Vague, (i, i + 1), taken);
        }
        i += 1;
    }
}

impl Reading {
    /// Whether the text between word `i - 1` and word `i` is `c` ("1970-1985").
    fn gap_is(&self, i: usize, c: char) -> bool {
        i > 0 && i < self.words.len() && self.q[self.words[i - 1].end..self.words[i].start].trim() == c.to_string()
    }

    fn set_years(&mut self, years: Years, certainty: Certainty, span: (usize, usize), taken: &mut [bool]) {
        take(taken, span);
        // Two readings ("1990s ... 1995"): the narrower, i.e. both at once.
        let value = match &self.years {
            Some(old) => Years {
                from: old.value.from.max(years.from),
                to: match (old.value.to, years.to) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                },
            },
            None => years,
        };
        self.years = Some(Read { value, certainty, span });
    }
}

/// Comparison words: `Some(true)` at most ("under"), `Some(false)` at least ("over").
fn comparison(words: &[Word], i: usize) -> Option<(bool, usize)> {
    let w = words.get(i)?.text.as_str();
    let next = words.get(i + 1).map(|w| w.text.as_str());
    match (w, next) {
        ("under" | "below" | "shorter" | "within", Some("than")) => Some((true, i + 2)),
        ("under" | "below" | "shorter" | "within" | "max", _) => Some((true, i + 1)),
        ("less" | "fewer", Some("than")) => Some((true, i + 2)),
        ("at", Some("most")) => Some((true, i + 2)),
        ("up", Some("to")) => Some((true, i + 2)),
        ("over" | "above" | "longer" | "more", Some("than")) => Some((false, i + 2)),
        ("over" | "above" | "longer" | "min" | "minimum", _) => Some((false, i + 1)),
        ("at", Some("least")) => Some((false, i + 2)),
        _ => None,
    }
}

/// A length at `i` ("100 minutes", "two hours", "an hour", "90min", "2h"): minutes and the index after.
fn length_at(words: &[Word], i: usize) -> Option<(f64, usize)> {
    let w = words.get(i)?.text.as_str();
    // "90min", "2h", "2hrs".
    let split = w.find(|c: char| !c.is_ascii_digit() && c != '.').filter(|&at| at > 0);
    if let Some(at) = split {
        if let (Ok(n), Some(m)) = (w[..at].parse::<f64>(), None.or_else(|| minutes(1.0, &w[at..]))) {
            return Some((n * m, i + 1));
        }
    }
    let n = number(w)?;
    let unit = words.get(i + 1)?.text.as_str();
    // "two and a half hours"
    if unit == "and" && word_is(words, i + 2, &["a"]) && word_is(words, i + 3, &["half"]) {
        let m = minutes(n + 0.5, words.get(i + 4)?.text.as_str())?;
        return Some((m, i + 5));
    }
    minutes(n, unit).map(|m| (m, i + 2))
}

fn read_runtime(r: &mut Reading, taken: &mut [bool]) {
    let n = r.words.len();
    let mut i = 0;
    while i < n {
        if taken[i] {
            i += 1;
            continue;
        }
        if let Some((at_most, after)) = comparison(&r.words, i) {
            if let Some((m, end)) = length_at(&r.words, after) {
                let m = m.round().clamp(1.0, 10_000.0) as u32;
                let value =
                    if at_most { Runtime { min: None, max: Some(m) } } else { Runtime { min: Some(m), max: None } };
                take(taken, (i, end));
                r.runtime = Some(Read { value, certainty: Certainty::Explicit, span: (i, end) });
                i = end;
                continue;
            }
        }
        // "100 minutes or less", "2 hours or more".
        if let Some((m, after)) = length_at(&r.words, i) {
            let m = m.round().clamp(1.0, 10_000.0) as u32;
            let or = word_is(&r.words, after, &["or"]);
            let value = match r.words.get(after + 1).map(|w| w.text.as_str()) {
                Some("less" | "shorter" | "under") if or => Some(Runtime { min: None, max: Some(m) }),
                Some("more" | "longer" | "over") if or => Some(Runtime { min: Some(m), max: None }),
                _ => None,
            };
            if let Some(value) = value {
                take(taken, (i, after + 2));
                r.runtime = Some(Read { value, certainty: Certainty::Explicit, span: (i, after + 2) });
                i = after + 2;
                continue;
            }
        }
        let vague = match r.words[i].text.as_str() {
            "short" | "quick" => Some(Runtime { min: None, max: Some(90) }),
            "long" | "epic" | "epics" => Some(Runtime { min: Some(150), max: None }),
            _ => None,
        };
        if let Some(value) = vague.filter(|_| r.runtime.is_none()) {
            take(taken, (i, i + 1));
            r.runtime = Some(Read { value, certainty: Certainty::Vague, span: (i, i + 1) });
        }
        i += 1;
    }
}

/// A rating between 1 and 10 at `i` ("8", "7.5", "8/10" is "8" then "10").
fn rating_at(words: &[Word], i: usize) -> Option<f64> {
    number(&words.get(i)?.text).filter(|n| (1.0..=10.0).contains(n))
}

fn read_rating(r: &mut Reading, taken: &mut [bool]) {
    let n = r.words.len();
    let mut i = 0;
    while i < n {
        if taken[i] {
            i += 1;
            continue;
        }
        let w = r.words[i].text.as_str();
        // "rated 8 or more", "rated above 7", "rating over 8", "rated at least 7.5", "8+ rated" is "8 rated".
        if matches!(w, "rated" | "rating" | "score" | "scored") {
            let mut j = i + 1;
            let lower = comparison(&r.words, j);
            if let Some((false, after)) = lower {
                j = after;
            }
            if let Some(m) = rating_at(&r.words, j) {
                let mut end = j + 1;
                if word_is(&r.words, end, &["or", "and"])
                    && word_is(&r.words, end + 1, &["more", "higher", "above", "better", "up"])
                {
                    end += 2;
                }
                if word_is(&r.words, end, &["stars", "star", "out"]) {
                    end += 1;
                }
                let m = if matches!(lower, Some((false, _))) && word_is(&r.words, i + 1, &["over", "above"]) {
                    m + 0.1
                } else {
                    m
                };
                take(taken, (i, end));
                r.min_rating = Some(Read { value: m, certainty: Certainty::Explicit, span: (i, end) });
                i = end;
                continue;
            }
        }
        // "best", "top rated", "highly rated", "acclaimed".
        let vague = match (w, r.words.get(i + 1).map(|w| w.text.as_str())) {
            ("top" | "highly" | "well" | "critically", Some("rated" | "acclaimed" | "reviewed")) => Some(2),
            ("best" | "acclaimed" | "masterpiece" | "masterpieces" | "greatest", _) => Some(1),
            _ => None,
        };
        if let Some(len) = vague.filter(|_| r.min_rating.is_none()) {
            take(taken, (i, i + len));
            r.min_rating = Some(Read { value: 7.5, certainty: Certainty::Vague, span: (i, i + len) });
            i += len;
            continue;
        }
        i += 1;
    }
}

fn read_genres(r: &mut Reading, taken: &mut [bool], catalog: &LiveCatalog) {
    let table = GenreWords::of(catalog);
    for (phrase_text, genres) in &table.phrases {
        let len = phrase_text.matches(' ').count() + 1;
        for i in 0..r.words.len() {
            if phrase(&r.words, taken, i, len).as_deref() == Some(phrase_text.as_str()) {
                take(taken, (i, i + len));
                let own_name = genres.len() == 1 && {
                    let key = name_key(&genres[0]);
                    *phrase_text == key || *phrase_text == plural(&key)
                };
                let certainty = if own_name { Certainty::Explicit } else { Certainty::Likely };
                for g in genres {
                    if !r.genres.iter().any(|x| x.value == *g) {
                        r.genres.push(Read { value: g.clone(), certainty, span: (i, i + len) });
                    }
                }
            }
        }
    }
}

/// "like the matrix", "similar to heat": a film whose whole title is the words after it (up to "but",
/// "with", a taken word or the end).
fn read_example(r: &mut Reading, taken: &mut [bool], catalog: &LiveCatalog) {
    let n = r.words.len();
    for i in 0..n {
        let start = match r.words[i].text.as_str() {
            "like" if !taken[i] => i + 1,
            "similar" if !taken[i] && word_is(&r.words, i + 1, &["to"]) => i + 2,
            _ => continue,
        };
        let mut end = start;
        while end < n && !taken[end] && !matches!(r.words[end].text.as_str(), "but" | "with" | "only" | "except") {
            end += 1;
        }
        // The longest run of words that is a whole title.
        for stop in (start + 1..=end).rev() {
            let text = r.words[start..stop].iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join(" ");
            let Ok(query) = TitleQuery::parse(&format!("{text} ")) else { continue };
            let whole = |row: usize| {
                let key = name_key(catalog.entry(row).title());
                key == text || key == format!("the {text}") || format!("the {key}") == text
            };
            if let Some(row) = catalog.find_titles(&query, 5).into_iter().find(|&row| whole(row)) {
                take(taken, (i, stop));
                r.example = Some(Read { value: row, certainty: Certainty::Explicit, span: (i, stop) });
                return;
            }
        }
    }
}

/// Whether a single word is taken for a name: the person is in more movies than there are titles with
/// the word (a surname like "kubrick" is, an everyday word like "time" is not), and a typo only for a
/// word of 5 letters or more that is no title word at all.
fn plausible(m: &NameMatch, word: &str, catalog: &LiveCatalog) -> bool {
    let movies = (m.person.directed + m.person.acted) as usize;
    let in_titles = catalog.title_word_movies(word);
    word.chars().count() >= 3
        && !is_stop(word)
        && movies > in_titles
        && (m.distance == 0 || (word.chars().count() >= 5 && in_titles == 0))
}

fn read_people(r: &mut Reading, taken: &mut [bool], catalog: &LiveCatalog) {
    let Some(index) = catalog.people_index() else {
        if !r.words.is_empty() {
            r.notes.push("people are not known yet (the people index is being built)".into());
        }
        return;
    };
    let n = r.words.len();
    for len in [3, 2, 1] {
        for i in 0..n {
            let Some(text) = phrase(&r.words, taken, i, len) else { continue };
            // Possessive or plural: "kubricks" (from "kubrick's"), "wachowskis".
            let stem = text.strip_suffix('s').filter(|s| s.len() >= 3).map(str::to_string);
            let mut found: Vec<(NameMatch, bool)> = Vec::new();
            for (key, is_stem) in std::iter::once((text.clone(), false)).chain(stem.map(|s| (s, true))) {
                let mut matches = index.by_full_name(&key, true);
                if len == 1 {
                    matches.extend(index.by_surname(&key, true));
                    matches.retain(|m| plausible(m, &key, catalog));
                }
                found.extend(matches.into_iter().map(|m| (m, is_stem)));
            }
            if found.is_empty() {
                continue;
            }
            // The closest spelling; among those, the most movies meeting the request's other
            // constraints, then the most votes.
            let best_distance = found.iter().map(|(m, _)| m.distance).min().unwrap_or(0);
            found.retain(|(m, _)| m.distance == best_distance);
            found.sort_by_key(|(m, _)| m.person.id);
            found.dedup_by_key(|(m, _)| m.person.id);
            let fit = |m: &NameMatch| co_occurrence(catalog, r, m.person.id);
            found.sort_by(|a, b| fit(&b.0).cmp(&fit(&a.0)).then(b.0.person.votes.cmp(&a.0.person.votes)));
            let before = i.checked_sub(1).map(|p| r.words[p].text.as_str());
            let role = match before {
                Some("by" | "director" | "directed" | "filmmaker") => Some(Role::Director),
                Some("with" | "starring" | "featuring" | "actor" | "actress") => Some(Role::Actor),
                _ => None,
            };
            let top = found[0].0;
            // A plural surname ("the wachowskis"): everyone of that name with a fair share of its votes.
            let plural = found[0].1 && len == 1 && found.len() > 1;
            let chosen: Vec<NameMatch> = if plural {
                found.iter().map(|(m, _)| *m).filter(|m| m.person.votes * 4 >= top.person.votes).collect()
            } else {
                vec![top]
            };
            let others = found.len() - chosen.len();
            let ambiguous =
                others > 0 && found.get(chosen.len()).is_some_and(|(m, _)| m.person.votes * 3 >= top.person.votes);
            let certainty = if best_distance > 0 || ambiguous { Certainty::Likely } else { Certainty::Explicit };
            let value = Person {
                ids: chosen.iter().map(|m| m.person.id).collect(),
                names: chosen.iter().map(|m| catalog.person_name(m.person.id).to_string()).collect(),
                role,
                shown_role: role.unwrap_or(top.person.main_role()),
                required: certainty == Certainty::Explicit || len > 1,
                certainty,
                others,
            };
            take(taken, (i, i + len));
            r.people.push(Read { value, certainty, span: (i, i + len) });
        }
    }
    r.people.sort_by_key(|p| p.span.0);
}

/// How many of `person`'s movies meet the years and genres read so far.
fn co_occurrence(catalog: &LiveCatalog, r: &Reading, person: u32) -> usize {
    let genres: Vec<u32> = r.genres.iter().filter_map(|g| catalog.genre_id(&g.value)).collect();
    catalog
        .rows_of_person(person, None)
        .into_iter()
        .filter(|&row| {
            let e = catalog.entry(row);
            let years_ok = r.years.as_ref().is_none_or(|y| {
                e.year().is_some_and(|yr| y.value.from.is_none_or(|f| yr >= f) && y.value.to.is_none_or(|t| yr <= t))
            });
            years_ok && genres.iter().all(|g| catalog.row_genres(row).contains(g))
        })
        .count()
}
