//! Synthetic dumps in the exact official IMDb format, at any fraction of the real size, for the ingest
//! benchmark (`cinevec gen-imdb`, run by `scripts/bench-ingest.sh`) and for tests. The real files cannot
//! be brought onto the development machines; these have their shape instead:
//!
//! - 11.6 M titles at scale 1.0, mostly episodes (77 %) and shorts (9 %), 6 % movies, 1.3 % TV movies;
//!   tconsts increase with gaps up to ~35 M, as the real ones do;
//! - ~1.5 M ratings (45 % of movies and TV movies are rated, 10 % of other titles), heavy-tailed vote
//!   counts (62 % of rated titles have 30 or more), so ~240 k movies pass the reference filter;
//! - ~90 M principal rows, orderings 1..n (8–24 for movies, 4–10 for other titles), the categories,
//!   jobs and characters the real file has; a few credits point at people missing from `name.basics`;
//! - 14 M names with birth and death years, professions and known-for titles;
//! - realistic field lengths, some non-ASCII text and the odd `"` in titles; gzipped.
//!
//! Every title's properties come from its own seeded random stream, so the files can be written by
//! separate threads and still agree with one another, and the same seed gives the same bytes. The
//! generator also counts what a correct ingest must find (`expected.json`): a cross-check, not a
//! copy, of the ingest's filter and join.

use crate::rng::Rng;
use anyhow::{Context, Result};
use flate2::write::GzEncoder;
use serde::Serialize;
use std::io::Write;
use std::path::Path;

/// Rows at scale 1.0.
const TITLES: f64 = 11_600_000.0;
const NAMES: f64 = 14_000_000.0;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct SynthOptions {
    /// Fraction of the real size (1.0: 11.6 M titles, 14 M names).
    pub scale: f64,
    pub seed: u64,
    /// gzip level, 0–9 (6 is gzip's default).
    pub level: u32,
}

/// What was written, and what a correct ingest of it must report (written as `expected.json`).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct SynthSummary {
    pub titles: u64,
    pub ratings: u64,
    pub principals: u64,
    pub names: u64,
    /// Titles that pass the reference filter (movie or tvMovie, rated, >= 30 votes).
    pub kept_movies: u64,
    /// Principal rows of those movies whose person is in `name.basics`.
    pub kept_credits: u64,
    /// Principal rows of those movies whose person is not in `name.basics`.
    pub credits_missing_name: u64,
}

/// Helpers of the generator on top of the shared generator.
trait Draw {
    fn range(&mut self, lo: u64, hi_inclusive: u64) -> u64;
    fn chance(&mut self, p: f64) -> bool;
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str;
}

impl Draw for Rng {
    fn range(&mut self, lo: u64, hi_inclusive: u64) -> u64 {
        lo + self.below_u64(hi_inclusive - lo + 1)
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below_u64(items.len() as u64) as usize]
    }
}

const STREAM_CORE: u64 = 1;
const STREAM_TEXT: u64 = 2;
const STREAM_CREDITS: u64 = 3;
const STREAM_NAMES: u64 = 4;

/// Title types with their share of the real file.
const TYPES: [(&str, f64); 10] = [
    ("short", 0.090),
    ("movie", 0.062),
    ("video", 0.026),
    ("tvSeries", 0.024),
    ("tvMovie", 0.013),
    ("tvMiniSeries", 0.005),
    ("tvSpecial", 0.004),
    ("videoGame", 0.004),
    ("tvShort", 0.001),
    ("tvPilot", 0.0002),
];

/// The per-title facts every file must agree on.
struct TitleCore {
    tconst: u32,
    kind: &'static str,
    /// (rating in tenths, votes)
    rating: Option<(u32, u32)>,
    principals: u32,
}

impl TitleCore {
    fn draw(seed: u64, i: u64) -> TitleCore {
        let mut r = Rng::for_item(seed, STREAM_CORE, i);
        // Increasing with gaps of 1-3, like the real ids (~35 M at 11.6 M titles).
        let tconst = (i * 3 + 1 + r.below_u64(3)) as u32;
        let u = r.unit();
        let mut acc = 0.0;
        let kind = TYPES.iter().find(|(_, p)| {
            acc += p;
            u < acc
        });
        let kind = kind.map_or("tvEpisode", |(k, _)| k);
        let is_movie = kind == "movie" || kind == "tvMovie";
        let rated = r.chance(if is_movie { 0.45 } else { 0.103 });
        let rating = rated.then(|| {
            // Votes: 5·e^X, X exponential with rate 0.267: P(votes >= 30) = 0.62, median ~67.
            let x = -r.unit().max(1e-12).ln() / 0.267;
            let votes = (5.0 * x.exp()).min(3_000_000.0) as u32;
            let mean: f64 = (0..4).map(|_| r.unit()).sum::<f64>() / 4.0; // bell-shaped
            let tenths = (10.0 + mean * 90.0).round().clamp(10.0, 100.0) as u32;
            (tenths, votes)
        });
        let principals = if is_movie { r.range(8, 24) } else { r.range(4, 10) } as u32;
        TitleCore { tconst, kind, rating, principals }
    }

    fn passes_filter(&self) -> bool {
        (self.kind == "movie" || self.kind == "tvMovie") && self.rating.is_some_and(|(_, v)| v >= 30)
    }
}

fn nconst_of(j: u64) -> u32 {
    (1 + j + j / 8) as u32
}

/// Write the four gzipped files into `out` (created if missing), and `expected.json`.
pub fn generate(out: &Path, opts: SynthOptions) -> Result<SynthSummary> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let titles = (TITLES * opts.scale).round().max(1.0) as u64;
    let names = (NAMES * opts.scale).round().max(1.0) as u64;
    let bars = indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
    let title_bar = |prefix: &str, n: u64| bars.add(crate::progress::bar(n, prefix, "rows"));
    let (pb_principals, pb_basics, pb_ratings, pb_names) = (
        title_bar("principals", titles),
        title_bar("basics", titles),
        title_bar("ratings", titles),
        title_bar("names", names),
    );
    let (principals, rest) = std::thread::scope(|s| {
        let principals = s.spawn(|| write_principals(out, opts, titles, names, &pb_principals));
        let rest = s.spawn(|| -> Result<(u64, u64)> {
            write_basics(out, opts, titles, &pb_basics)?;
            let ratings = write_ratings(out, opts, titles, &pb_ratings)?;
            let name_rows = write_names(out, opts, titles, names, &pb_names)?;
            Ok((ratings, name_rows))
        });
        (principals.join().expect("generator thread panicked"), rest.join().expect("generator thread panicked"))
    });
    let mut summary = principals?;
    let (ratings, name_rows) = rest?;
    summary.titles = titles;
    summary.ratings = ratings;
    summary.names = name_rows;
    summary.kept_movies = (0..titles).filter(|&i| TitleCore::draw(opts.seed, i).passes_filter()).count() as u64;
    std::fs::write(out.join("expected.json"), serde_json::to_string_pretty(&summary)?)?;
    Ok(summary)
}

fn create(out: &Path, name: &str, level: u32) -> Result<GzEncoder<std::io::BufWriter<std::fs::File>>> {
    let path = out.join(name);
    let file = std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(GzEncoder::new(std::io::BufWriter::with_capacity(1 << 20, file), flate2::Compression::new(level)))
}

fn finish(enc: GzEncoder<std::io::BufWriter<std::fs::File>>) -> Result<()> {
    enc.finish()?.flush()?;
    Ok(())
}

/// Append `n` in decimal.
fn push_num(buf: &mut Vec<u8>, n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let mut n = n;
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// Append an IMDb id: prefix and at least 7 digits.
fn push_id(buf: &mut Vec<u8>, prefix: &[u8], n: u32) {
    buf.extend_from_slice(prefix);
    let digits = if n == 0 { 1 } else { n.ilog10() + 1 };
    for _ in digits..7 {
        buf.push(b'0');
    }
    push_num(buf, u64::from(n));
}

const NULL: &[u8] = b"\\N";

/// Append `n` in decimal, or the null marker.
fn push_opt_num(buf: &mut Vec<u8>, n: Option<u64>) {
    match n {
        Some(n) => push_num(buf, n),
        None => buf.extend_from_slice(NULL),
    }
}

/// Append `count` items separated by commas, each written by `item`.
fn push_list(buf: &mut Vec<u8>, count: u64, mut item: impl FnMut(&mut Vec<u8>)) {
    for i in 0..count {
        if i > 0 {
            buf.push(b',');
        }
        item(buf);
    }
}

/// End of one row: flush the buffer when it is large, and move the progress bar now and then.
fn end_row(buf: &mut Vec<u8>, enc: &mut impl Write, bar: &indicatif::ProgressBar, row: u64) -> Result<()> {
    spill(buf, enc)?;
    if row.is_multiple_of(65536) {
        bar.set_position(row);
    }
    Ok(())
}

/// End of a file: the rest of the buffer, the gzip trailer, the bar.
fn end_file(
    buf: &[u8],
    mut enc: GzEncoder<std::io::BufWriter<std::fs::File>>,
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    enc.write_all(buf)?;
    finish(enc)?;
    bar.finish();
    Ok(())
}

/// Flush the line buffer into the encoder when it is large.
fn spill(buf: &mut Vec<u8>, enc: &mut impl Write) -> Result<()> {
    if buf.len() >= 1 << 20 {
        enc.write_all(buf)?;
        buf.clear();
    }
    Ok(())
}

const WORDS: &[&str] = &[
    "The",
    "Last",
    "Night",
    "Love",
    "Man",
    "Woman",
    "House",
    "Blood",
    "Girl",
    "Boy",
    "City",
    "King",
    "Queen",
    "Dark",
    "Day",
    "Dead",
    "Life",
    "Story",
    "Return",
    "Secret",
    "World",
    "War",
    "Heart",
    "Lost",
    "Time",
    "Home",
    "Summer",
    "Winter",
    "Road",
    "River",
    "Sea",
    "Sky",
    "Fire",
    "Ice",
    "Stone",
    "Moon",
    "Sun",
    "Star",
    "Ghost",
    "Shadow",
    "Dream",
    "Game",
    "Island",
    "Mountain",
    "Journey",
    "Storm",
    "Angel",
    "Devil",
    "Family",
    "Brother",
    "Sister",
    "Mother",
    "Father",
    "Children",
    "Wild",
    "Black",
    "White",
    "Red",
    "Blue",
    "Golden",
    "Silent",
    "Little",
    "Big",
    "New",
    "Old",
    "Young",
    "Lady",
    "Captain",
    "Doctor",
    "Detective",
    "Murder",
    "Mystery",
    "Escape",
    "Revenge",
    "Paradise",
    "Kingdom",
    "Empire",
    "Legend",
    "Hunter",
    "Soldier",
    "Stranger",
    "Friend",
    "Wedding",
    "Party",
    "School",
    "Street",
    "Train",
    "Ship",
    "Garden",
    "Window",
    "Mirror",
    "Letter",
    "Song",
    "Dance",
    "Circus",
    "Amélie",
    "Straße",
    "Mädchen",
    "Corazón",
    "Niño",
    "Liebe",
    "Été",
    "Noël",
    "Tōkyō",
    "Москва",
    "東京",
    "사랑",
    "of",
    "in",
    "and",
    "the",
    "a",
    "to",
    "on",
    "at",
    "from",
    "with",
    "2",
    "II",
    "III",
];

const GENRES: &[&str] = &[
    "Action",
    "Adult",
    "Adventure",
    "Animation",
    "Biography",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Family",
    "Fantasy",
    "Film-Noir",
    "Game-Show",
    "History",
    "Horror",
    "Music",
    "Musical",
    "Mystery",
    "News",
    "Reality-TV",
    "Romance",
    "Sci-Fi",
    "Short",
    "Sport",
    "Talk-Show",
    "Thriller",
    "War",
    "Western",
];

fn push_title(buf: &mut Vec<u8>, r: &mut Rng, kind: &str) {
    if kind == "tvEpisode" && r.chance(0.45) {
        buf.extend_from_slice(b"Episode #");
        push_num(buf, r.range(1, 30));
        buf.push(b'.');
        push_num(buf, r.range(1, 200));
        return;
    }
    let words = r.range(1, 5);
    for w in 0..words {
        if w > 0 {
            buf.push(b' ');
        }
        if r.chance(0.001) {
            buf.push(b'"'); // quotes are plain characters in these files
        }
        buf.extend_from_slice(r.pick(WORDS).as_bytes());
    }
}

fn write_basics(out: &Path, opts: SynthOptions, titles: u64, bar: &indicatif::ProgressBar) -> Result<()> {
    let mut enc = create(out, "title.basics.tsv.gz", opts.level)?;
    let mut buf = Vec::with_capacity(2 << 20);
    buf.extend_from_slice(
        b"tconst\ttitleType\tprimaryTitle\toriginalTitle\tisAdult\tstartYear\tendYear\truntimeMinutes\tgenres\n",
    );
    for i in 0..titles {
        let core = TitleCore::draw(opts.seed, i);
        let mut r = Rng::for_item(opts.seed, STREAM_TEXT, i);
        push_id(&mut buf, b"tt", core.tconst);
        buf.push(b'\t');
        buf.extend_from_slice(core.kind.as_bytes());
        buf.push(b'\t');
        let start = buf.len();
        push_title(&mut buf, &mut r, core.kind);
        let end = buf.len();
        buf.push(b'\t');
        if r.chance(0.9) {
            buf.extend_from_within(start..end);
        } else {
            push_title(&mut buf, &mut r, core.kind);
        }
        buf.push(b'\t');
        buf.push(if r.chance(0.02) { b'1' } else { b'0' });
        buf.push(b'\t');
        let start_year = r.range(1894, 2025);
        push_opt_num(&mut buf, (!r.chance(0.08)).then_some(start_year));
        buf.push(b'\t');
        if core.kind == "tvSeries" || core.kind == "tvMiniSeries" {
            push_num(&mut buf, (start_year + r.range(0, 12)).min(2025));
        } else {
            buf.extend_from_slice(NULL);
        }
        buf.push(b'\t');
        let runtime_known = if core.kind == "tvEpisode" { 0.3 } else { 0.75 };
        let minutes = r.chance(runtime_known).then(|| match core.kind {
            "movie" | "tvMovie" | "video" => r.range(45, 180),
            _ => r.range(1, 60),
        });
        push_opt_num(&mut buf, minutes);
        buf.push(b'\t');
        if r.chance(0.07) {
            buf.extend_from_slice(NULL);
        } else {
            push_list(&mut buf, r.range(1, 3), |b| b.extend_from_slice(r.pick(GENRES).as_bytes()));
        }
        buf.push(b'\n');
        end_row(&mut buf, &mut enc, bar, i)?;
    }
    end_file(&buf, enc, bar)?;
    Ok(())
}

fn write_ratings(out: &Path, opts: SynthOptions, titles: u64, bar: &indicatif::ProgressBar) -> Result<u64> {
    let mut enc = create(out, "title.ratings.tsv.gz", opts.level)?;
    let mut buf = Vec::with_capacity(2 << 20);
    buf.extend_from_slice(b"tconst\taverageRating\tnumVotes\n");
    let mut rows = 0;
    for i in 0..titles {
        let core = TitleCore::draw(opts.seed, i);
        if let Some((tenths, votes)) = core.rating {
            push_id(&mut buf, b"tt", core.tconst);
            buf.push(b'\t');
            push_num(&mut buf, u64::from(tenths / 10));
            buf.push(b'.');
            push_num(&mut buf, u64::from(tenths % 10));
            buf.push(b'\t');
            push_num(&mut buf, u64::from(votes));
            buf.push(b'\n');
            rows += 1;
            spill(&mut buf, &mut enc)?;
        }
        if i % 65536 == 0 {
            bar.set_position(i);
        }
    }
    end_file(&buf, enc, bar)?;
    Ok(rows)
}

/// Categories with their share of the real file, and the jobs each may carry.
const CATEGORIES: [(&str, f64, &[&str]); 12] = [
    ("actor", 0.27, &[]),
    ("actress", 0.18, &[]),
    ("self", 0.12, &[]),
    ("writer", 0.12, &["screenplay", "written by", "novel", "story", "teleplay", "creator"]),
    ("director", 0.08, &[]),
    ("producer", 0.08, &["producer", "executive producer", "co-producer", "line producer"]),
    ("composer", 0.04, &[]),
    ("cinematographer", 0.04, &["director of photography"]),
    ("editor", 0.03, &["film editor"]),
    ("production_designer", 0.015, &[]),
    ("casting_director", 0.01, &[]),
    ("archive_footage", 0.015, &[]),
];

const CHARACTERS: &[&str] = &[
    "Self",
    "Himself",
    "Herself",
    "Host",
    "Narrator",
    "John",
    "Mary",
    "The Detective",
    "Doctor",
    "Nurse",
    "Mother",
    "Father",
    "Police Officer",
    "Waitress",
    "Soldier",
    "Guest",
    "Contestant",
    "Jack",
    "Anna",
    "Victim",
    "Lawyer",
];

fn write_principals(
    out: &Path,
    opts: SynthOptions,
    titles: u64,
    names: u64,
    bar: &indicatif::ProgressBar,
) -> Result<SynthSummary> {
    let mut enc = create(out, "title.principals.tsv.gz", opts.level)?;
    let mut buf = Vec::with_capacity(2 << 20);
    buf.extend_from_slice(b"tconst\tordering\tnconst\tcategory\tjob\tcharacters\n");
    let mut summary = SynthSummary::default();
    // 0.05 % of credits point past the last name: people missing from name.basics.
    let person_space = names + (names / 2000).max(1);
    for i in 0..titles {
        let core = TitleCore::draw(opts.seed, i);
        let kept = core.passes_filter();
        let mut r = Rng::for_item(opts.seed, STREAM_CREDITS, i);
        for ordering in 1..=core.principals {
            // Half the credits go to a popular few (skewed towards low ids), half to anyone.
            let u = r.unit();
            let j = if r.chance(0.5) { (u * u * u * person_space as f64) as u64 } else { r.below_u64(person_space) };
            let u = r.unit();
            let mut acc = 0.0;
            let (category, _, jobs) = CATEGORIES
                .iter()
                .find(|(_, p, _)| {
                    acc += p;
                    u < acc
                })
                .unwrap_or(&CATEGORIES[0]);
            push_id(&mut buf, b"tt", core.tconst);
            buf.push(b'\t');
            push_num(&mut buf, u64::from(ordering));
            buf.push(b'\t');
            push_id(&mut buf, b"nm", nconst_of(j));
            buf.push(b'\t');
            buf.extend_from_slice(category.as_bytes());
            buf.push(b'\t');
            if !jobs.is_empty() && r.chance(0.7) {
                buf.extend_from_slice(r.pick(jobs).as_bytes());
            } else {
                buf.extend_from_slice(NULL);
            }
            buf.push(b'\t');
            if matches!(*category, "actor" | "actress" | "self" | "archive_footage") {
                buf.extend_from_slice(b"[\"");
                buf.extend_from_slice(r.pick(CHARACTERS).as_bytes());
                buf.extend_from_slice(b"\"]");
            } else {
                buf.extend_from_slice(NULL);
            }
            buf.push(b'\n');
            summary.principals += 1;
            if kept {
                if j < names {
                    summary.kept_credits += 1;
                } else {
                    summary.credits_missing_name += 1;
                }
            }
        }
        end_row(&mut buf, &mut enc, bar, i)?;
    }
    end_file(&buf, enc, bar)?;
    Ok(summary)
}

const FIRST: &[&str] = &[
    "John",
    "Mary",
    "James",
    "Patricia",
    "Robert",
    "Jennifer",
    "Michael",
    "Linda",
    "William",
    "Elizabeth",
    "David",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Maria",
    "José",
    "François",
    "Zoë",
    "Björn",
    "Søren",
    "Ángel",
    "Hiroshi",
    "Yuki",
    "Wei",
    "Priya",
    "Aarav",
    "Olga",
    "Dmitri",
    "Fatima",
    "Ahmed",
    "Chiara",
    "Luca",
    "Ingrid",
    "Lars",
    "Anna",
    "Peter",
    "Paul",
    "Laura",
    "Emma",
    "Noah",
];
const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Müller",
    "Schmidt",
    "Dubois",
    "Rossi",
    "Nakamura",
    "Tanaka",
    "Kim",
    "Park",
    "Chen",
    "Wang",
    "Singh",
    "Kumar",
    "Ivanov",
    "Petrov",
    "Nowak",
    "Kowalski",
    "Jensen",
    "Nielsen",
    "Andersson",
    "O'Brien",
    "MacLeod",
    "van der Berg",
    "de la Cruz",
    "Silva",
    "Santos",
    "Ferreira",
];
const PROFESSIONS: &[&str] = &[
    "actor",
    "actress",
    "producer",
    "writer",
    "director",
    "miscellaneous",
    "camera_department",
    "editor",
    "composer",
    "soundtrack",
    "art_department",
    "sound_department",
    "cinematographer",
    "casting_director",
    "music_department",
    "visual_effects",
    "stunts",
    "self",
    "archive_footage",
];

fn write_names(out: &Path, opts: SynthOptions, titles: u64, names: u64, bar: &indicatif::ProgressBar) -> Result<u64> {
    let mut enc = create(out, "name.basics.tsv.gz", opts.level)?;
    let mut buf = Vec::with_capacity(2 << 20);
    buf.extend_from_slice(b"nconst\tprimaryName\tbirthYear\tdeathYear\tprimaryProfession\tknownForTitles\n");
    for j in 0..names {
        let mut r = Rng::for_item(opts.seed, STREAM_NAMES, j);
        push_id(&mut buf, b"nm", nconst_of(j));
        buf.push(b'\t');
        buf.extend_from_slice(r.pick(FIRST).as_bytes());
        if r.chance(0.15) {
            buf.extend_from_slice(b" ");
            buf.push(b'A' + r.below_u64(26) as u8);
            buf.push(b'.');
        }
        buf.push(b' ');
        buf.extend_from_slice(r.pick(LAST).as_bytes());
        buf.push(b'\t');
        let born = r.range(1850, 2010);
        let has_birth = r.chance(0.35);
        push_opt_num(&mut buf, has_birth.then_some(born));
        buf.push(b'\t');
        let died = (has_birth && born < 1950 && r.chance(0.6)).then(|| (born + r.range(30, 95)).min(2025));
        push_opt_num(&mut buf, died);
        buf.push(b'\t');
        if r.chance(0.1) {
            buf.extend_from_slice(NULL);
        } else {
            push_list(&mut buf, r.range(1, 3), |b| b.extend_from_slice(r.pick(PROFESSIONS).as_bytes()));
        }
        buf.push(b'\t');
        if r.chance(0.05) {
            buf.extend_from_slice(NULL);
        } else {
            push_list(&mut buf, r.range(1, 4), |b| push_id(b, b"tt", (r.below_u64(titles) * 3 + 1) as u32));
        }
        buf.push(b'\n');
        end_row(&mut buf, &mut enc, bar, j)?;
    }
    end_file(&buf, enc, bar)?;
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_padded_like_the_real_ones() {
        let mut buf = Vec::new();
        push_id(&mut buf, b"tt", 111161);
        buf.push(b' ');
        push_id(&mut buf, b"nm", 12345678);
        buf.push(b' ');
        push_id(&mut buf, b"tt", 0);
        assert_eq!(String::from_utf8(buf).unwrap(), "tt0111161 nm12345678 tt0000000");
    }

    #[test]
    fn title_facts_are_the_same_every_time_and_roughly_real() {
        let n = 200_000;
        let a: Vec<_> = (0..n).map(|i| TitleCore::draw(7, i)).collect();
        let b: Vec<_> = (0..n).map(|i| TitleCore::draw(7, i)).collect();
        assert!(a.iter().zip(&b).all(|(x, y)| x.tconst == y.tconst && x.rating == y.rating && x.kind == y.kind));
        assert!(a.windows(2).all(|w| w[0].tconst < w[1].tconst), "tconsts must increase");
        let share = |f: &dyn Fn(&TitleCore) -> bool| a.iter().filter(|c| f(c)).count() as f64 / n as f64;
        let kept = share(&|c| c.passes_filter());
        let rated = share(&|c| c.rating.is_some());
        let episodes = share(&|c| c.kind == "tvEpisode");
        // Real: 242,552 of 11.6 M titles kept (2.1 %), ~1.5 M rated (13 %), 77 % episodes.
        assert!((0.017..0.025).contains(&kept), "kept share {kept}");
        assert!((0.11..0.15).contains(&rated), "rated share {rated}");
        assert!((0.72..0.82).contains(&episodes), "episode share {episodes}");
        let mean_principals = a.iter().map(|c| f64::from(c.principals)).sum::<f64>() / n as f64;
        assert!((7.3..8.3).contains(&mean_principals), "principals per title {mean_principals}");
    }
}
