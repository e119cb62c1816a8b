//! The people index: every director and actor of the catalog by folded full name and by surname (the
//! last word of the name), each an `fst` set searched with a Levenshtein DFA like title words
//! ([`super::titles`]), with their movies and how popular they are (the votes of their movies). Query
//! understanding (`service/ask/`) finds the people a request names with it: "stanley kubrick",
//! "kubrick", "kubrik", "kubrick's", "the wachowskis".
//!
//! Built from the rows present at start (on its own thread, like the title index); the movies of a
//! person also count the rows added since (their traits are read directly), people first seen in
//! those rows are not indexed.

use super::titles::{for_each_word, typo_budget};
use super::{fold, Entry, LiveCatalog};
use fst::{IntoStreamer, Map, MapBuilder, Streamer};
use levenshtein_automata::{Distance, LevenshteinAutomatonBuilder};
use std::sync::LazyLock;

static BUILDERS: LazyLock<[LevenshteinAutomatonBuilder; 3]> = LazyLock::new(|| {
    [
        LevenshteinAutomatonBuilder::new(0, true),
        LevenshteinAutomatonBuilder::new(1, true),
        LevenshteinAutomatonBuilder::new(2, true),
    ]
});

/// The role a person has in a movie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Director,
    Actor,
}

/// A person of the catalog.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PersonStats {
    /// The person's number in the catalog's names.
    pub id: u32,
    pub directed: u32,
    pub acted: u32,
    /// The votes of all their movies.
    pub votes: u64,
}

impl PersonStats {
    /// What the catalog mostly knows them as.
    pub fn main_role(&self) -> Role {
        if self.directed >= self.acted {
            Role::Director
        } else {
            Role::Actor
        }
    }
}

/// A name found for a query text, with its edit distance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NameMatch {
    pub person: PersonStats,
    pub distance: u8,
}

/// What [`PeopleIndex::build`] reads: per row its directors then actors (numbers of `names`), how many
/// are directors, and its votes (dead rows have no people).
#[derive(Default)]
pub struct PeopleRows {
    ids: Vec<u32>,
    ends: Vec<u32>,
    directors: Vec<u8>,
    votes: Vec<u64>,
    names: Vec<Box<str>>,
}

/// Directors and actors by full name and by surname.
pub struct PeopleIndex {
    /// Folded full name (words joined by one space) → its group in `groups`.
    full: Map<Vec<u8>>,
    /// Folded surname → its group.
    surnames: Map<Vec<u8>>,
    /// Group `g` is `members[group_starts[g]..group_starts[g + 1]]`, indexes into `people`.
    group_starts: Vec<u32>,
    members: Vec<u32>,
    people: Vec<PersonStats>,
    /// Person `i`'s movies: `movies[movie_starts[i]..movie_starts[i + 1]]`, each `row << 1 | directed`.
    movie_starts: Vec<u32>,
    movies: Vec<u32>,
    /// Rows `0..rows` are indexed.
    rows: usize,
}

/// The words of a folded name joined by single spaces (apostrophes dropped, like title words).
pub fn name_key(name: &str) -> String {
    let mut key = String::new();
    for_each_word(&fold(name), |w| {
        if !key.is_empty() {
            key.push(' ');
        }
        key.push_str(w);
    });
    key
}

/// Build an fst map of `keys` (any order, repeats allowed) to groups of `members`.
fn grouped(keys: Vec<(String, u32)>, starts: &mut Vec<u32>, members: &mut Vec<u32>) -> Map<Vec<u8>> {
    let mut keys = keys;
    keys.sort_unstable();
    keys.dedup();
    let mut builder = MapBuilder::memory();
    let mut i = 0;
    while i < keys.len() {
        let group = (starts.len() - 1) as u64;
        let key = keys[i].0.clone();
        while i < keys.len() && keys[i].0 == key {
            members.push(keys[i].1);
            i += 1;
        }
        starts.push(members.len() as u32);
        builder.insert(&key, group).expect("keys are inserted sorted and distinct");
    }
    Map::new(builder.into_inner().expect("an in-memory fst cannot fail")).expect("a freshly built fst")
}

impl PeopleIndex {
    /// Index the directors and actors of `rows` (see [`LiveCatalog::people_rows`]).
    pub fn build(input: &PeopleRows) -> PeopleIndex {
        let rows = input.votes.len();
        let names = input.names.len();
        let mut directed = vec![0u32; names];
        let mut acted = vec![0u32; names];
        let mut votes = vec![0u64; names];
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        for row in 0..rows {
            let start = if row == 0 { 0 } else { input.ends[row - 1] as usize };
            let people = &input.ids[start..input.ends[row] as usize];
            let v = input.votes[row];
            for (i, &p) in people.iter().enumerate() {
                let is_director = i < usize::from(input.directors[row]);
                let p = p as usize;
                if is_director {
                    directed[p] += 1;
                } else {
                    acted[p] += 1;
                }
                votes[p] += v;
                pairs.push((p as u32, (row as u32) << 1 | u32::from(is_director)));
            }
        }
        // People with a movie, numbered in the order of their names.
        let mut number = vec![u32::MAX; names];
        let mut people = Vec::new();
        for p in 0..names {
            if directed[p] + acted[p] > 0 {
                number[p] = people.len() as u32;
                people.push(PersonStats { id: p as u32, directed: directed[p], acted: acted[p], votes: votes[p] });
            }
        }
        pairs.sort_unstable_by_key(|&(p, m)| (number[p as usize], m));
        let mut movie_starts = vec![0u32; people.len() + 1];
        for &(p, _) in &pairs {
            movie_starts[number[p as usize] as usize + 1] += 1;
        }
        for i in 0..people.len() {
            movie_starts[i + 1] += movie_starts[i];
        }
        let movies = pairs.into_iter().map(|(_, m)| m).collect();
        let (mut full_keys, mut surname_keys) = (Vec::with_capacity(people.len()), Vec::with_capacity(people.len()));
        for (i, person) in people.iter().enumerate() {
            let key = name_key(&input.names[person.id as usize]);
            if key.is_empty() {
                continue;
            }
            if let Some(last) = key.rsplit(' ').next().filter(|last| last.len() < key.len()) {
                surname_keys.push((last.to_string(), i as u32));
            }
            full_keys.push((key, i as u32));
        }
        let (mut group_starts, mut members) = (vec![0u32], Vec::new());
        let full = grouped(full_keys, &mut group_starts, &mut members);
        let surnames = grouped(surname_keys, &mut group_starts, &mut members);
        PeopleIndex { full, surnames, group_starts, members, people, movie_starts, movies, rows }
    }

    /// Rows indexed.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// People indexed.
    pub fn len(&self) -> usize {
        self.people.len()
    }

    pub fn is_empty(&self) -> bool {
        self.people.is_empty()
    }

    fn lookup(&self, map: &Map<Vec<u8>>, key: &str, typos: bool) -> Vec<NameMatch> {
        let budget = if typos { typo_budget(key) } else { 0 };
        let dfa = BUILDERS[usize::from(budget)].build_dfa(key);
        let mut found = Vec::new();
        let mut stream = map.search_with_state(&dfa).into_stream();
        while let Some((_, group, state)) = stream.next() {
            let Distance::Exact(distance) = dfa.distance(state) else { continue };
            let g = group as usize;
            for &m in &self.members[self.group_starts[g] as usize..self.group_starts[g + 1] as usize] {
                found.push(NameMatch { person: self.people[m as usize], distance });
            }
        }
        found
    }

    /// People whose full name is `key` (folded words joined by single spaces), within the typo
    /// budget of its length when `typos`.
    pub fn by_full_name(&self, key: &str, typos: bool) -> Vec<NameMatch> {
        self.lookup(&self.full, key, typos)
    }

    /// People whose surname is `word`, within its typo budget when `typos`.
    pub fn by_surname(&self, word: &str, typos: bool) -> Vec<NameMatch> {
        self.lookup(&self.surnames, word, typos)
    }

    fn position(&self, person: u32) -> Option<usize> {
        self.people.binary_search_by_key(&person, |p| p.id).ok()
    }

    /// The indexed rows of `person` in `role` (any role: `None`), ascending.
    fn indexed_rows(&self, person: u32, role: Option<Role>) -> impl Iterator<Item = usize> + '_ {
        let range = match self.position(person) {
            Some(i) => self.movie_starts[i] as usize..self.movie_starts[i + 1] as usize,
            None => 0..0,
        };
        self.movies[range]
            .iter()
            .filter(move |&&m| match role {
                None => true,
                Some(Role::Director) => m & 1 == 1,
                Some(Role::Actor) => m & 1 == 0,
            })
            .map(|&m| (m >> 1) as usize)
    }
}

impl LiveCatalog {
    /// The people of every row, for [`PeopleIndex::build`].
    fn people_rows(&self) -> PeopleRows {
        let mut rows = PeopleRows { names: self.people.spelling.clone(), ..Default::default() };
        for (e, &alive) in self.entries.iter().zip(&self.alive) {
            let t = &e.traits;
            if alive {
                rows.ids.extend_from_slice(t.directors());
                rows.ids.extend_from_slice(t.actors());
            }
            rows.ends.push(rows.ids.len() as u32);
            rows.directors.push(if alive { t.directors } else { 0 });
            rows.votes.push(e.votes.unwrap_or(0));
        }
        rows
    }

    /// Build the people index over the rows present now. Does nothing when one was built already.
    pub fn index_people(&self) {
        if self.people_index.get().is_none() {
            let _ = self.people_index.set(PeopleIndex::build(&self.people_rows()));
        }
    }

    /// [`LiveCatalog::index_people`] on a thread of its own: until it is there, requests are read
    /// without people (and say so).
    pub fn index_people_in_background(&self) {
        if self.people_index.get().is_some() || self.entries.is_empty() {
            return;
        }
        let rows = self.people_rows();
        let slot = self.people_index.clone();
        let spawned = std::thread::Builder::new().name("people-index".into()).spawn(move || {
            let t = std::time::Instant::now();
            let index = PeopleIndex::build(&rows);
            tracing::info!("people index: {} people, built in {:.0} ms", index.len(), t.elapsed().as_secs_f64() * 1e3);
            let _ = slot.set(index);
        });
        if let Err(e) = spawned {
            tracing::warn!("could not start the people index thread ({e}); requests are read without people");
        }
    }

    /// The people index, once built.
    pub fn people_index(&self) -> Option<&PeopleIndex> {
        self.people_index.get()
    }

    /// The live rows of `person` (a number of the catalog's names) in `role` (any: `None`), ascending,
    /// each once: from the index for the rows it holds, read from the traits for every other row.
    pub fn rows_of_person(&self, person: u32, role: Option<Role>) -> Vec<usize> {
        let (mut rows, from): (Vec<usize>, usize) = match self.people_index.get() {
            Some(index) => (index.indexed_rows(person, role).collect(), index.rows()),
            None => (Vec::new(), 0),
        };
        rows.dedup();
        rows.retain(|&r| self.alive[r]);
        rows.extend((from..self.entries.len()).filter(|&r| self.alive[r] && self.has_person(r, person, role)));
        rows
    }

    /// The spelling of person `person` (a number of the catalog's names).
    pub fn person_name(&self, person: u32) -> &str {
        self.people.name(person)
    }

    /// Whether `row` has `person` in `role` (any: `None`).
    pub fn has_person(&self, row: usize, person: u32, role: Option<Role>) -> bool {
        let t = &self.entries[row].traits;
        match role {
            None => t.directors().contains(&person) || t.actors().contains(&person),
            Some(Role::Director) => t.directors().contains(&person),
            Some(Role::Actor) => t.actors().contains(&person),
        }
    }

    /// The catalog's genres (their first spellings), by number.
    pub fn genre_names(&self) -> &[Box<str>] {
        &self.genres.spelling
    }

    /// Whether a row may be returned under `filter` (resolved once, for testing many rows).
    pub fn passes<'f>(&'f self, filter: &'f super::Filter) -> impl Fn(usize) -> bool + 'f {
        let resolved = self.resolve(filter);
        move |row| self.keep_resolved(row, &resolved, &[])
    }

    /// The number of genre `name` (any case), if the catalog has it.
    pub fn genre_id(&self, name: &str) -> Option<u32> {
        Some(self.genres.find(name)).filter(|&g| g != super::UNKNOWN)
    }

    /// The genre numbers of `row`.
    pub fn row_genres(&self, row: usize) -> &[u32] {
        self.entries[row].traits.genres()
    }

    /// Whether `row` is its id's newest row.
    pub fn is_alive(&self, row: usize) -> bool {
        self.alive.get(row).is_some_and(|&a| a)
    }

    /// Every row, most votes first for the rows the title index holds (in row order while it is being
    /// built), then the rows added since.
    pub fn rows_by_votes(&self) -> Box<dyn Iterator<Item = usize> + '_> {
        match self.titles.get() {
            Some(t) => Box::new(t.rows_by_votes().iter().map(|&r| r as usize).chain(t.rows()..self.entries.len())),
            None => Box::new(0..self.entries.len()),
        }
    }

    /// The newest release year of any row.
    pub fn newest_year(&self) -> Option<i64> {
        self.entries.iter().filter_map(Entry::year).max()
    }

    /// How many indexed titles have the folded word `word` (0 before the title index is built).
    pub fn title_word_movies(&self, word: &str) -> usize {
        self.titles.get().map_or(0, |t| t.movies_with_word(word))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{no_matrix, Facts, NewMovie};
    use super::*;
    use std::borrow::Cow;

    fn push(cat: &mut LiveCatalog, id: &str, votes: u64, directors: &[&'static str], actors: &[&'static str]) {
        let facts = Facts {
            title: Cow::Owned(format!("Movie {id}")),
            directors: directors.iter().map(|&d| Cow::Borrowed(d)).collect(),
            actors: actors.iter().map(|&a| Cow::Borrowed(a)).collect(),
            ..Default::default()
        };
        cat.push(NewMovie { id: id.into(), rating: Some(7.0), votes: Some(votes), facts, source: "test" }, &[1.0]);
    }

    fn catalog() -> LiveCatalog {
        let mut cat = LiveCatalog::new(no_matrix(), 1);
        push(&mut cat, "a", 100, &["Stanley Kubrick"], &["Malcolm McDowell"]);
        push(&mut cat, "b", 200, &["Stanley Kubrick"], &["Jack Nicholson"]);
        push(&mut cat, "c", 50, &["Wes Anderson"], &["Bill Murray"]);
        push(&mut cat, "d", 900, &["Paul Thomas Anderson"], &["Daniel Day-Lewis"]);
        push(&mut cat, "e", 10, &["Clint Eastwood"], &["Clint Eastwood"]);
        cat
    }

    #[test]
    fn names_are_found_whole_by_surname_and_with_typos() {
        let cat = catalog();
        cat.index_people();
        let index = cat.people_index().unwrap();
        let name = |m: &NameMatch| cat.person_name(m.person.id).to_string();
        assert_eq!(
            index.by_full_name("stanley kubrick", false).iter().map(name).collect::<Vec<_>>(),
            ["Stanley Kubrick"]
        );
        let typo = index.by_surname("kubrik", true);
        assert_eq!((typo.len(), typo[0].distance), (1, 1));
        assert!(index.by_surname("kubrik", false).is_empty(), "no typo allowed: nothing");
        let mut andersons: Vec<String> = index.by_surname("anderson", false).iter().map(name).collect();
        andersons.sort();
        assert_eq!(andersons, ["Paul Thomas Anderson", "Wes Anderson"]);
        assert_eq!(name_key("Daniel Day-Lewis"), "daniel day lewis");
        assert_eq!(index.by_surname("lewis", false).len(), 1);
        let kubrick = index.by_surname("kubrick", false)[0].person;
        assert_eq!((kubrick.directed, kubrick.acted, kubrick.votes, kubrick.main_role()), (2, 0, 300, Role::Director));
    }

    #[test]
    fn a_persons_movies_by_role_count_rows_added_after_the_index() {
        let mut cat = catalog();
        cat.index_people();
        let eastwood = cat.people_index().unwrap().by_surname("eastwood", false)[0].person.id;
        assert_eq!(cat.rows_of_person(eastwood, None), [4]);
        assert_eq!(cat.rows_of_person(eastwood, Some(Role::Actor)), [4]);
        push(&mut cat, "f", 5, &[], &["Clint Eastwood"]);
        assert_eq!(cat.rows_of_person(eastwood, Some(Role::Actor)), [4, 5]);
        assert_eq!(cat.rows_of_person(eastwood, Some(Role::Director)), [4]);
        // "e" replaced: its old row is dead and no longer returned.
        push(&mut cat, "e", 5, &["Someone Else"], &[]);
        assert_eq!(cat.rows_of_person(eastwood, None), [5]);
    }
}
