//! Title search as a person types: every query word is looked up on its own (word order free, title
//! words may be skipped), folded like the titles (case and accents), with typos allowed by word
//! length ([`typo_budget`]) and the last word matched as a prefix while it is being typed; a 4-digit
//! year may match the movie's year as well as a title word. Results are ranked by how well they match
//! (words matched, then exact > prefix > typo, then whether the query covers the whole title) and
//! then by popularity (votes).
//!
//! The rows present when the index is built are in a [`TitleIndex`]: an `fst` map from every title
//! word to its list of movies, searched with one Levenshtein DFA per query word
//! (`levenshtein_automata`), so a query visits only the words within its typo budget and their
//! movies. Movies are numbered by popularity, so a dense per-query score buffer read in that order
//! yields the best-ranked movies first, however long the lists of frequent words ("the", "of") are.
//! Rows added later are scored with the same DFAs one title at a time ([`score_title`]), and the
//! caller decides which rows may be returned (replaced rows may not).

use fst::{IntoStreamer, Map, MapBuilder, Streamer};
use levenshtein_automata::{Distance, LevenshteinAutomatonBuilder, DFA};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::LazyLock;

/// Most words of a query that are searched (the page's search box sends whole titles; none has more):
/// the words after them are ignored, which bounds a query's work without a rule the spec could not
/// state as a pattern.
pub const MAX_QUERY_WORDS: usize = 16;
/// Longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 200;

/// Quality of one query word's best match in a title (the sum over the words ranks titles that
/// match the same number of words).
const EXACT: u32 = 4;
const PREFIX: u32 = 3;
/// The query word is the movie's release year.
const YEAR: u32 = 3;
const ONE_TYPO: u32 = 2;
const TWO_TYPOS: u32 = 1;

/// A per-movie score: bits 0..16 say which query words matched, bits 16.. hold the sum of their
/// qualities.
const QUALITY_SHIFT: u32 = 16;

/// One DFA builder per typo budget (0, 1, 2), transpositions counting as one edit. Building the
/// 2-edit one takes a few milliseconds: once per process.
static BUILDERS: LazyLock<[LevenshteinAutomatonBuilder; 3]> = LazyLock::new(|| {
    [
        LevenshteinAutomatonBuilder::new(0, true),
        LevenshteinAutomatonBuilder::new(1, true),
        LevenshteinAutomatonBuilder::new(2, true),
    ]
});

/// Edits a query word may be away from a title word: none for words of up to 3 characters and for
/// numbers, 1 for 4 to 7 characters, 2 from 8 on.
pub fn typo_budget(word: &str) -> u8 {
    if word.chars().all(|c| c.is_ascii_digit()) {
        return 0;
    }
    match word.chars().count() {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    }
}

/// Calls `f` with each word of a folded text: runs of letters and digits, apostrophes inside a word
/// dropped ("schindler's" is one word, "schindlers").
pub fn for_each_word(folded: &str, mut f: impl FnMut(&str)) {
    let mut word = String::new();
    for c in folded.chars() {
        if c.is_alphanumeric() {
            word.push(c);
        } else if (c == '\'' || c == '’') && !word.is_empty() {
            continue;
        } else if !word.is_empty() {
            f(&word);
            word.clear();
        }
    }
    if !word.is_empty() {
        f(&word);
    }
}

/// A 4-digit number that can be a release year.
fn as_year(word: &str) -> Option<i32> {
    if word.len() != 4 || !word.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    word.parse().ok().filter(|y| (1870..=2100).contains(y))
}

/// One word of a query with its automaton.
struct QueryWord {
    text: String,
    /// Still being typed: title words starting with it match.
    prefix: bool,
    year: Option<i32>,
    /// A prefix DFA when the word is still being typed (title words starting with it match too).
    dfa: DFA,
}

impl QueryWord {
    fn new(text: String, prefix: bool) -> Self {
        let builder = &BUILDERS[usize::from(typo_budget(&text))];
        let dfa = if prefix { builder.build_prefix_dfa(&text) } else { builder.build_dfa(&text) };
        QueryWord { year: as_year(&text), text, prefix, dfa }
    }

    /// How well the title word `term` matches, given the DFA's distance to it (`None`: no match).
    fn quality(&self, term: &[u8], distance: Distance) -> Option<u32> {
        match distance {
            Distance::Exact(0) if term == self.text.as_bytes() => Some(EXACT),
            Distance::Exact(0) => Some(PREFIX),
            Distance::Exact(1) => Some(ONE_TYPO),
            Distance::Exact(_) => Some(TWO_TYPOS),
            Distance::AtLeast(_) => None,
        }
    }

    fn matches(&self, term: &str) -> Option<u32> {
        self.quality(term.as_bytes(), self.dfa.eval(term))
    }
}

/// A parsed title query: its distinct words (at most [`MAX_QUERY_WORDS`]), each with its DFA.
pub struct TitleQuery {
    words: Vec<QueryWord>,
}

impl std::fmt::Debug for TitleQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.words.iter().map(|w| &w.text)).finish()
    }
}

impl TitleQuery {
    /// Parse what a person typed. The last word is a prefix unless the text ends with a space or a
    /// punctuation mark (the word is finished). Refused, with a message saying why: more than
    /// [`MAX_QUERY_CHARS`] characters, control characters. Only the first [`MAX_QUERY_WORDS`] words
    /// count. A query with no word (only punctuation) is valid and matches nothing.
    pub fn parse(text: &str) -> Result<TitleQuery, String> {
        let chars = text.chars().count();
        if chars > MAX_QUERY_CHARS {
            return Err(format!("q is {chars} characters long; the limit is {MAX_QUERY_CHARS}"));
        }
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return Err(format!("q must not contain control characters (found U+{:04X})", u32::from(c)));
        }
        let folded = super::fold(text);
        let mut words: Vec<String> = Vec::new();
        for_each_word(&folded, |w| words.push(w.to_string()));
        let typing = folded.chars().last().is_some_and(|c| c.is_alphanumeric()) && words.len() <= MAX_QUERY_WORDS;
        words.truncate(MAX_QUERY_WORDS);
        let last = words.len().saturating_sub(1);
        let mut seen = std::collections::HashSet::new();
        let words = words
            .into_iter()
            .enumerate()
            .filter(|(i, w)| seen.insert((w.clone(), *i == last)))
            .map(|(i, w)| QueryWord::new(w, typing && i == last))
            .collect();
        Ok(TitleQuery { words })
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// How many distinct words the query has (what [`matched_words`] counts against).
    pub fn len(&self) -> usize {
        self.words.len()
    }
}

/// How many of the query's words a title matched, read from its rank key ([`score_title`]).
pub fn matched_words(key: u32) -> usize {
    (key >> 12) as usize
}

/// A title's rank key for `query` (higher is better), `0` when no word matches: see [`rank_key`].
/// `folded`: the folded title.
pub fn score_title(query: &TitleQuery, folded: &str, year: Option<i64>) -> u32 {
    let mut best = vec![0u32; query.words.len()];
    let mut distinct: Vec<u64> = Vec::new();
    for_each_word(folded, |term| {
        let hash = std::hash::BuildHasher::hash_one(
            &std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default(),
            term,
        );
        if !distinct.contains(&hash) {
            distinct.push(hash);
        }
        for (b, w) in best.iter_mut().zip(&query.words) {
            if let Some(q) = w.matches(term) {
                *b = (*b).max(q);
            }
        }
    });
    for (b, w) in best.iter_mut().zip(&query.words) {
        if w.year.is_some() && w.year.map(i64::from) == year {
            *b = (*b).max(YEAR);
        }
    }
    let cell = best.iter().enumerate().fold(
        0u32,
        |cell, (i, &q)| {
            if q == 0 {
                cell
            } else {
                (cell | 1 << i) + (q << QUALITY_SHIFT)
            }
        },
    );
    rank_key(cell, distinct.len().min(255) as u8)
}

/// The rank key of a score cell, for a title of `title_words` distinct words: the number of query
/// words matched, then the sum of their qualities, then whether as many query words matched as the
/// title has words (the whole title was typed: "Love" before "Love Actually").
fn rank_key(cell: u32, title_words: u8) -> u32 {
    let matched = (cell & 0xFFFF).count_ones();
    (matched << 12) | ((cell >> QUALITY_SHIFT) << 1) | u32::from(matched >= u32::from(title_words))
}

/// What [`TitleIndex::build`] reads, per row: the folded title, the release year and the votes.
#[derive(Default)]
pub struct TitleRows {
    text: String,
    ends: Vec<u32>,
    years: Vec<Option<i32>>,
    votes: Vec<u64>,
}

impl TitleRows {
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        TitleRows {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(rows),
            years: Vec::with_capacity(rows),
            votes: Vec::with_capacity(rows),
        }
    }

    /// The next row.
    pub fn push(&mut self, folded: &str, year: Option<i64>, votes: Option<u64>) {
        self.text.push_str(folded);
        self.ends.push(self.text.len() as u32);
        self.years.push(year.and_then(|y| i32::try_from(y).ok()));
        self.votes.push(votes.unwrap_or(0));
    }

    fn title(&self, row: usize) -> &str {
        let start = if row == 0 { 0 } else { self.ends[row - 1] as usize };
        &self.text[start..self.ends[row] as usize]
    }

    fn len(&self) -> usize {
        self.ends.len()
    }
}

/// The title words of the rows `0..rows()`, each with the movies that have it.
pub struct TitleIndex {
    /// Word → its number (words numbered in sorted order).
    words: Map<Vec<u8>>,
    /// Word `w`'s movies are `postings[starts[w]..starts[w + 1]]`, as popularity ranks, ascending.
    starts: Vec<u32>,
    postings: Vec<u32>,
    /// Release years present, ascending, and where their movies start in `year_postings`.
    years: Vec<(i32, u32)>,
    year_postings: Vec<u32>,
    /// Catalog row of each popularity rank (rank 0: the most votes; ties by row).
    row_of_rank: Vec<u32>,
    /// Distinct words of each rank's title (at most 255).
    title_words: Vec<u8>,
    /// The movies with a word starting with each prefix of 1 or 2 characters, precomputed (the first
    /// letters typed would otherwise visit thousands of words and their lists):
    /// `prefix_postings[range]`.
    short_prefixes: HashMap<String, (u32, u32)>,
    prefix_postings: Vec<u32>,
}

/// Prefixes of up to this many characters have their movies precomputed.
const SHORT_PREFIX: usize = 2;

/// The first `n` characters of `word` when it has more than `n` (else `None`).
fn first_chars(word: &str, n: usize) -> Option<&str> {
    word.char_indices().nth(n).map(|(end, _)| &word[..end])
}

thread_local! {
    /// The per-query score buffer (one cell per indexed movie), all zero between queries.
    static SCORES: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

impl TitleIndex {
    /// Index every row of `rows`.
    pub fn build(rows: &TitleRows) -> TitleIndex {
        let n = rows.len();
        let mut row_of_rank: Vec<u32> = (0..n as u32).collect();
        row_of_rank.sort_by_key(|&r| (std::cmp::Reverse(rows.votes[r as usize]), r));
        // (word number in order of first sight, rank) pairs, ranks ascending.
        let mut ids: HashMap<String, u32> = HashMap::new();
        let mut pairs: Vec<(u32, u32)> = Vec::with_capacity(n * 4);
        let mut in_title: Vec<u32> = Vec::new();
        let mut title_words = Vec::with_capacity(n);
        for (rank, &row) in row_of_rank.iter().enumerate() {
            in_title.clear();
            for_each_word(rows.title(row as usize), |w| {
                let next = ids.len() as u32;
                let id = match ids.get(w) {
                    Some(&id) => id,
                    None => {
                        ids.insert(w.to_string(), next);
                        next
                    }
                };
                if !in_title.contains(&id) {
                    in_title.push(id);
                    pairs.push((id, rank as u32));
                }
            });
            title_words.push(in_title.len().min(255) as u8);
        }
        // Number the words in sorted order (the fst is built in that order).
        let mut sorted: Vec<(String, u32)> = ids.into_iter().collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut renumber = vec![0u32; sorted.len()];
        let mut builder = MapBuilder::memory();
        for (final_id, (word, first)) in sorted.iter().enumerate() {
            renumber[*first as usize] = final_id as u32;
            builder.insert(word, final_id as u64).expect("words are inserted sorted and distinct");
        }
        let words = Map::new(builder.into_inner().expect("an in-memory fst cannot fail")).expect("a freshly built fst");
        let (starts, postings) = group(pairs.iter().map(|&(id, rank)| (renumber[id as usize], rank)), sorted.len());
        let (short_prefixes, prefix_postings) = short_prefix_lists(&sorted, &starts, &postings);
        // Years: the same grouping over (year, rank).
        let mut by_year: Vec<i32> = rows.years.iter().flatten().copied().collect();
        by_year.sort_unstable();
        by_year.dedup();
        let year_number = |y: i32| by_year.binary_search(&y).expect("every year was collected") as u32;
        let year_pairs = row_of_rank
            .iter()
            .enumerate()
            .filter_map(|(rank, &row)| rows.years[row as usize].map(|y| (year_number(y), rank as u32)));
        let (year_starts, year_postings) = group(year_pairs, by_year.len());
        let years = by_year.iter().zip(year_starts).map(|(&y, s)| (y, s)).collect();
        TitleIndex {
            words,
            starts,
            postings,
            years,
            year_postings,
            row_of_rank,
            title_words,
            short_prefixes,
            prefix_postings,
        }
    }

    /// Rows indexed (`0..rows()`).
    pub fn rows(&self) -> usize {
        self.row_of_rank.len()
    }

    /// Distinct title words.
    pub fn words(&self) -> usize {
        self.words.len()
    }

    /// Heap bytes the index holds (its score buffers, one per searching thread, are `4 * rows()` each).
    pub fn heap_bytes(&self) -> usize {
        self.words.as_fst().as_bytes().len()
            + 4 * (self.starts.capacity()
                + self.postings.capacity()
                + self.year_postings.capacity()
                + self.row_of_rank.capacity())
            + 8 * self.years.capacity()
            + self.title_words.capacity()
            + 4 * self.prefix_postings.capacity()
            + self.short_prefixes.keys().map(|k| k.len() + 32).sum::<usize>()
    }

    /// The indexed rows, most votes first.
    pub fn rows_by_votes(&self) -> &[u32] {
        &self.row_of_rank
    }

    /// How many indexed movies have the (folded) title word `word`: how common a word is in titles
    /// (query understanding weighs a surname against it).
    pub fn movies_with_word(&self, word: &str) -> usize {
        self.words.get(word).map_or(0, |id| (self.starts[id as usize + 1] - self.starts[id as usize]) as usize)
    }

    fn year_ranks(&self, year: i32) -> &[u32] {
        match self.years.binary_search_by_key(&year, |&(y, _)| y) {
            Ok(i) => {
                let end = self.years.get(i + 1).map_or(self.year_postings.len(), |&(_, s)| s as usize);
                &self.year_postings[self.years[i].1 as usize..end]
            }
            Err(_) => &[],
        }
    }

    /// The `limit` best-ranked indexed rows for `query` that `keep` accepts, best first, each with its
    /// rank key; ties in rank by popularity (most votes first, then lowest row).
    pub fn search(&self, query: &TitleQuery, limit: usize, keep: impl Fn(usize) -> bool) -> Vec<(u32, usize)> {
        if query.is_empty() || limit == 0 || self.rows() == 0 {
            return Vec::new();
        }
        SCORES.with_borrow_mut(|scores| {
            if scores.len() != self.rows() {
                scores.clear();
                scores.resize(self.rows(), 0);
            }
            // A query interrupted by a panic left its cells set: start from zero then. (Cells are
            // zeroed as they are read below, so a finished query leaves none.)
            let guard = Dirty(scores);
            for (i, w) in query.words.iter().enumerate() {
                self.score_word(i, w, guard.0);
            }
            let top = best_ranked(guard.0, &self.row_of_rank, &self.title_words, limit, &keep);
            std::mem::forget(guard);
            top
        })
    }

    /// Credit every movie with a title word matching `w` (query word `i`), with the best quality of
    /// its matches.
    fn score_word(&self, i: usize, w: &QueryWord, scores: &mut [u32]) {
        let mut lists: Vec<(u32, &[u32])> = Vec::new();
        let list = |id: u64| &self.postings[self.starts[id as usize] as usize..self.starts[id as usize + 1] as usize];
        match (w.prefix, self.short_prefixes.get(&w.text)) {
            // A short prefix (no typos at that length): the word itself, then every word it starts.
            (true, Some(&(start, end))) => {
                if let Some(id) = self.words.get(&w.text) {
                    lists.push((EXACT, list(id)));
                }
                lists.push((PREFIX, &self.prefix_postings[start as usize..end as usize]));
            }
            _ => {
                let mut stream = self.words.search_with_state(&w.dfa).into_stream();
                while let Some((term, id, state)) = stream.next() {
                    if let Some(q) = w.quality(term, w.dfa.distance(state)) {
                        lists.push((q, list(id)));
                    }
                }
            }
        }
        if let Some(y) = w.year {
            lists.push((YEAR, self.year_ranks(y)));
        }
        // Best matches first: a movie is credited once per query word, with its best quality.
        lists.sort_by_key(|&(q, _)| std::cmp::Reverse(q));
        let bit = 1u32 << i;
        for (q, ranks) in lists {
            let add = bit + (q << QUALITY_SHIFT);
            for &rank in ranks {
                let cell = &mut scores[rank as usize];
                if *cell & bit == 0 {
                    *cell += add;
                }
            }
        }
    }
}

/// Zeroes the score buffer when dropped, i.e. when a query was interrupted (a finished query forgets it).
struct Dirty<'a>(&'a mut Vec<u32>);

impl Drop for Dirty<'_> {
    fn drop(&mut self) {
        self.0.fill(0);
    }
}

/// The `limit` best cells (zeroing every cell on the way), read in popularity order so that the first
/// of equal rank is the more popular.
fn best_ranked(
    scores: &mut [u32],
    row_of_rank: &[u32],
    title_words: &[u8],
    limit: usize,
    keep: &impl Fn(usize) -> bool,
) -> Vec<(u32, usize)> {
    let mut top: Vec<(u32, usize)> = Vec::with_capacity(limit + 1);
    for (rank, cell) in scores.iter_mut().enumerate() {
        if *cell == 0 {
            continue;
        }
        let key = rank_key(*cell, title_words[rank]);
        *cell = 0;
        if top.len() == limit && key <= top[limit - 1].0 {
            continue;
        }
        let row = row_of_rank[rank] as usize;
        if !keep(row) {
            continue;
        }
        let at = top.partition_point(|&(k, _)| k >= key);
        top.insert(at, (key, row));
        top.truncate(limit);
    }
    top
}

/// For every prefix of 1 to [`SHORT_PREFIX`] characters of the (sorted) words, the movies having a
/// word that starts with it (ascending, each once).
fn short_prefix_lists(
    sorted: &[(String, u32)],
    starts: &[u32],
    postings: &[u32],
) -> (HashMap<String, (u32, u32)>, Vec<u32>) {
    let mut lists = HashMap::new();
    let mut all = Vec::new();
    for n in 1..=SHORT_PREFIX {
        let mut i = 0;
        while i < sorted.len() {
            // Sorted words sharing a prefix are consecutive.
            let Some(prefix) = first_chars(&sorted[i].0, n)
                .or_else(|| (sorted[i].0.chars().count() == n).then_some(sorted[i].0.as_str()))
            else {
                i += 1;
                continue;
            };
            let mut j = i;
            while j < sorted.len() && sorted[j].0.starts_with(prefix) {
                j += 1;
            }
            let mut union: Vec<u32> = postings[starts[i] as usize..starts[j] as usize].to_vec();
            union.sort_unstable();
            union.dedup();
            let start = all.len() as u32;
            all.extend_from_slice(&union);
            lists.insert(prefix.to_string(), (start, all.len() as u32));
            i = j;
        }
    }
    (lists, all)
}

/// Group `(group, item)` pairs (items ascending within each group) into offsets and items.
fn group(pairs: impl Iterator<Item = (u32, u32)> + Clone, groups: usize) -> (Vec<u32>, Vec<u32>) {
    let mut starts = vec![0u32; groups + 1];
    for (g, _) in pairs.clone() {
        starts[g as usize + 1] += 1;
    }
    for g in 0..groups {
        starts[g + 1] += starts[g];
    }
    let mut items = vec![0u32; starts[groups] as usize];
    let mut next = starts.clone();
    for (g, item) in pairs {
        items[next[g as usize] as usize] = item;
        next[g as usize] += 1;
    }
    (starts, items)
}

#[cfg(test)]
mod tests {
    use super::super::{fold, no_matrix, Facts, LiveCatalog, NewMovie};
    use super::*;
    use std::borrow::Cow;

    fn movie(id: &str, title: &str, year: i64, votes: u64) -> NewMovie<'static> {
        let facts = Facts {
            title: Cow::Owned(title.into()),
            genres: vec![],
            release_year: Some(year),
            directors: vec![],
            actors: vec![],
            runtime_minutes: None,
        };
        NewMovie { id: id.into(), rating: Some(7.0), votes: Some(votes), facts, source: "test" }
    }

    /// A catalog of `(title, year, votes)`, ids `m0`, `m1`, …, indexed when `indexed`.
    fn catalog(movies: &[(&str, i64, u64)], indexed: bool) -> LiveCatalog {
        let mut cat = LiveCatalog::new(no_matrix(), 1);
        for (i, &(t, y, v)) in movies.iter().enumerate() {
            cat.push(movie(&format!("m{i}"), t, y, v), &[1.0]);
        }
        if indexed {
            cat.index_titles();
        }
        cat
    }

    fn ids(cat: &LiveCatalog, q: &str) -> Vec<String> {
        cat.search_titles(q, 10).iter().map(|&r| cat.entry(r).id().to_string()).collect()
    }

    const FILMS: &[(&str, i64, u64)] = &[
        ("The Lord of the Rings: The Fellowship of the Ring", 2001, 2_000_000),
        ("The Godfather", 1972, 1_900_000),
        ("The Shawshank Redemption", 1994, 2_800_000),
        ("Amélie", 2001, 780_000),
        ("Dune", 2021, 900_000),
        ("Dune", 1984, 170_000),
        ("Dune: Part Two", 2024, 600_000),
        ("1917", 2019, 700_000),
        ("Intolerance", 1916, 16_000),
        ("The Immigrant", 1917, 6_000),
        ("Ring", 1998, 120_000),
        ("Rings", 2017, 60_000),
        ("Frozen", 2013, 650_000),
        ("The Frozen Ground", 2013, 90_000),
        ("Schindler's List", 1993, 1_400_000),
        ("Cab", 1999, 10),
    ];

    /// Both ways of answering (the index, and the row-by-row scan used before it is built or for rows
    /// added since) give the same answers.
    fn both(q: &str) -> Vec<String> {
        let (scan, index) = (catalog(FILMS, false), catalog(FILMS, true));
        assert!(scan.title_index().is_none() && index.title_index().is_some());
        let (a, b) = (ids(&scan, q), ids(&index, q));
        assert_eq!(a, b, "scan and index differ for {q:?}");
        b
    }

    fn first(q: &str) -> String {
        both(q).into_iter().next().unwrap_or_default()
    }

    #[test]
    fn word_order_is_free_and_title_words_may_be_skipped() {
        assert_eq!(first("lord rings"), "m0");
        assert_eq!(first("rings lord"), "m0");
        assert_eq!(first("fellowship ring"), "m0");
    }

    #[test]
    fn case_and_accents_are_folded() {
        for q in ["AMELIE", "amélie", "Amelie"] {
            assert_eq!(first(q), "m3", "{q}");
        }
        assert_eq!(first("schindlers"), "m14", "the apostrophe is not a word break");
    }

    #[test]
    fn the_last_word_is_a_prefix_while_typed() {
        assert_eq!(first("godf"), "m1");
        assert_eq!(first("the shaws"), "m2");
        // A finished word (trailing space) is not a prefix: "godf" is 1 edit from "god", not "godfather".
        assert!(!both("godf ").contains(&"m1".to_string()));
        // Only the last word: "godf" before another word must match a whole title word.
        assert_eq!(both("godf lord"), ["m0"]);
    }

    #[test]
    fn typos_are_allowed_by_word_length() {
        assert_eq!(first("godfater"), "m1", "8 letters: a deletion");
        assert_eq!(first("shawshenk"), "m2", "9 letters: a substitution");
        assert_eq!(first("shwashenk"), "m2", "a transposition and a substitution");
        assert_eq!(first("frozne "), "m12", "6 letters: a transposition");
        assert!(both("frizan ").is_empty(), "6 letters: 2 edits are too many");
        assert!(both("shwashenkk ").iter().all(|id| id != "m2"), "10 letters: 3 edits are too many");
        assert!(both("cap ").is_empty(), "3 letters: no typo");
        assert_eq!(both("cab "), ["m15"]);
        assert_eq!(typo_budget("1984"), 0, "numbers have no typos");
    }

    #[test]
    fn ranked_by_words_matched_then_exact_prefix_typo_then_votes() {
        // "ring": exact in m10 (the whole title) and m0 (2 M votes), a prefix of "rings" in m11.
        assert_eq!(&both("ring")[..3], ["m10", "m0", "m11"]);
        // Finished word: "rings" exact (m11, the whole title; m0) ranks before a 1-typo "ring" (m10).
        assert_eq!(&both("rings ")[..3], ["m11", "m0", "m10"]);
        // Equal matches, not the whole title: by votes.
        assert_eq!(both("the"), ["m2", "m0", "m1", "m13", "m9"]);
        // More words matched first, whatever the votes: "dune part" is m6 before the more popular Dune.
        assert_eq!(first("dune part"), "m6");
    }

    #[test]
    fn a_year_in_the_query_is_honoured() {
        assert_eq!(both("dune"), ["m4", "m5", "m6"], "the whole title first, then by votes");
        assert_eq!(first("dune 1984"), "m5");
        assert_eq!(first("1984 dune"), "m5");
        // "1917" is a title word of m8 (exact) and the year of m9 (ranked after the title word).
        assert_eq!(both("1917 "), ["m7", "m9"]);
    }

    #[test]
    fn movies_added_after_the_index_are_found_at_once_and_replaced_rows_never() {
        let mut cat = catalog(FILMS, true);
        assert_eq!(cat.title_index().unwrap().rows(), FILMS.len());
        cat.push(movie("new", "The Godfathers of Brooklyn", 2025, 5), &[1.0]);
        assert_eq!(ids(&cat, "godfathers brooklyn")[0], "new");
        assert!(ids(&cat, "godfater").contains(&"new".to_string()));
        // m1 replaced: its indexed row is dead, the new row (not in the index) answers for it.
        cat.push(movie("m1", "The Conversation", 1974, 1_900_000), &[1.0]);
        assert!(!ids(&cat, "godfather").contains(&"m1".to_string()));
        assert_eq!(ids(&cat, "conversation")[0], "m1");
        let dead: Vec<usize> = (0..cat.rows()).filter(|&r| !cat.keep(r, &Default::default(), &[])).collect();
        assert_eq!(dead.len(), 1);
        for q in ["the", "godfather", "conversation", "t"] {
            assert!(cat.search_titles(q, 50).iter().all(|r| !dead.contains(r)), "{q}");
        }
    }

    #[test]
    fn bad_queries_are_refused_or_find_nothing() {
        assert!(TitleQuery::parse(&"a".repeat(MAX_QUERY_CHARS + 1)).unwrap_err().contains("characters"));
        assert!(TitleQuery::parse("god\u{7}father").unwrap_err().contains("control"));
        // Words past the limit are ignored: the query is its first MAX_QUERY_WORDS words, and the
        // last of those is then a finished word, not a prefix.
        let words: Vec<String> = (0..MAX_QUERY_WORDS + 5).map(|i| format!("word{i}")).collect();
        let long = TitleQuery::parse(&words.join(" ")).unwrap();
        let kept = TitleQuery::parse(&(words[..MAX_QUERY_WORDS].join(" ") + " ")).unwrap();
        assert_eq!(format!("{long:?}"), format!("{kept:?}"));
        assert_eq!(format!("{long:?}").matches("word").count(), MAX_QUERY_WORDS);
        assert!(TitleQuery::parse("?!").unwrap().is_empty());
        assert!(both("?!").is_empty());
        assert!(both("").is_empty());
    }

    // ---- every answer against a plain reading of the rules ----

    /// Optimal-string-alignment distance (adjacent transpositions count as one edit), in characters.
    fn osa(a: &[char], b: &[char]) -> usize {
        let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
        for (i, row) in d.iter_mut().enumerate() {
            row[0] = i;
        }
        for (j, cell) in d[0].iter_mut().enumerate() {
            *cell = j;
        }
        for i in 1..=a.len() {
            for j in 1..=b.len() {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut v = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    v = v.min(d[i - 2][j - 2] + 1);
                }
                d[i][j] = v;
            }
        }
        d[a.len()][b.len()]
    }

    /// The rank key of a title by the rules, written plainly: (words matched, sum of qualities, as
    /// many words matched as the title has distinct words).
    fn by_the_rules(query: &str, title: &str, year: i64) -> (usize, usize, bool) {
        let split = |s: &str| -> Vec<String> {
            fold(s)
                .replace(['\'', '’'], "")
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(String::from)
                .collect()
        };
        let typing = fold(query).ends_with(char::is_alphanumeric);
        let words = split(query);
        let title_words = split(title);
        let mut seen = std::collections::HashSet::new();
        let (mut matched, mut quality) = (0, 0);
        for (i, w) in words.iter().enumerate() {
            let prefix = typing && i + 1 == words.len();
            if !seen.insert((w.clone(), i + 1 == words.len())) {
                continue;
            }
            let wc: Vec<char> = w.chars().collect();
            let budget = if wc.iter().all(|c| c.is_ascii_digit()) || wc.len() <= 3 {
                0
            } else if wc.len() <= 7 {
                1
            } else {
                2
            };
            let mut best = 0;
            for t in &title_words {
                let tc: Vec<char> = t.chars().collect();
                let d = if prefix { (0..=tc.len()).map(|n| osa(&wc, &tc[..n])).min().unwrap() } else { osa(&wc, &tc) };
                let q = match d {
                    _ if d > budget => 0,
                    0 if t == w => 4,
                    0 => 3,
                    1 => 2,
                    _ => 1,
                };
                best = best.max(q);
            }
            if wc.len() == 4
                && wc.iter().all(|c| c.is_ascii_digit())
                && w.parse::<i64>() == Ok(year)
                && (1870..=2100).contains(&year)
            {
                best = best.max(3);
            }
            if best > 0 {
                matched += 1;
                quality += best;
            }
        }
        let distinct: std::collections::HashSet<&String> = title_words.iter().collect();
        (matched, quality, matched >= distinct.len())
    }

    #[test]
    fn every_answer_is_the_best_by_the_rules() {
        let pool = [
            "the",
            "of",
            "a",
            "lord",
            "ring",
            "rings",
            "king",
            "kong",
            "night",
            "knight",
            "dark",
            "star",
            "stars",
            "wars",
            "godfather",
            "godmother",
            "shawshank",
            "redemption",
            "amélie",
            "ÉTÉ",
            "frozen",
            "dune",
            "1917",
            "1984",
            "love",
            "lover",
            "story",
            "toy",
            "part",
            "ii",
            "o'brien",
            "return",
            "returns",
            "city",
            "cité",
        ];
        let mut rng = crate::rng::Rng::new(18);
        let mut movies: Vec<(String, i64, u64)> = Vec::new();
        for _ in 0..400 {
            let n = 1 + rng.below(5);
            let title: Vec<&str> = (0..n).map(|_| pool[rng.below(pool.len())]).collect();
            movies.push((
                title.join(if rng.below(4) == 0 { ": " } else { " " }),
                1900 + rng.below(125) as i64,
                rng.below(40) as u64,
            ));
        }
        let refs: Vec<(&str, i64, u64)> = movies.iter().map(|(t, y, v)| (t.as_str(), *y, *v)).collect();
        // Half the movies in the index, half added after it, some of each replaced.
        let mut cat = catalog(&refs[..200], true);
        for (i, &(t, y, v)) in refs.iter().enumerate().skip(200) {
            cat.push(movie(&format!("m{i}"), t, y, v), &[1.0]);
        }
        for i in (0..400).step_by(7) {
            let (t, y, v) = refs[(i * 13) % 400];
            cat.push(movie(&format!("m{i}"), t, y, v), &[1.0]);
        }
        let mut queries: Vec<String> = Vec::new();
        for _ in 0..300 {
            let (t, y, _) = &movies[rng.below(movies.len())];
            let mut chars: Vec<char> = t.chars().collect();
            match rng.below(4) {
                0 => {
                    let i = rng.below(chars.len());
                    chars[i] = 'x';
                }
                1 if chars.len() > 2 => {
                    let i = rng.below(chars.len() - 1);
                    chars.swap(i, i + 1);
                }
                2 => chars.extend(format!(" {y}").chars()),
                _ => {}
            }
            let cut = 1 + rng.below(chars.len());
            queries.push(chars[..cut].iter().collect());
            queries.push(chars.iter().collect::<String>() + " ");
        }
        let alive: Vec<usize> = (0..cat.rows()).filter(|&r| cat.keep(r, &Default::default(), &[])).collect();
        let mut nonempty = 0;
        for q in &queries {
            let found = cat.search_titles(q, 10);
            let key = |row: usize| by_the_rules(q, cat.entry(row).title(), cat.entry(row).year().unwrap());
            let votes = |row: usize| cat.entry(row).votes.unwrap();
            let mut expected: Vec<usize> = alive.iter().copied().filter(|&r| key(r).0 > 0).collect();
            expected.sort_by(|&a, &b| key(b).cmp(&key(a)).then(votes(b).cmp(&votes(a))).then(a.cmp(&b)));
            expected.truncate(10);
            assert_eq!(found, expected, "query {q:?}");
            nonempty += usize::from(!found.is_empty());
        }
        assert!(nonempty > queries.len() * 3 / 4, "the queries find something: {nonempty} of {}", queries.len());
    }
}
