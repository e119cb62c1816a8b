//! `cinevec ingest`: turn the data users have (the official IMDb dumps, a catalog JSONL file, the demo
//! package) into canonical movie documents in the catalog store.
//!
//! Every source follows the same contract: malformed input is skipped and counted (the first few
//! reported with file and line), `--strict` turns the first one into a failure before anything is
//! written, movies are upserted by id in one transaction per batch (so a re-ingest is idempotent), and
//! the run ends with counts: read, kept, skipped by reason, and what the store did.
//!
//! The IMDb path is built for the real files (11.6 M titles, ~90 M principal rows) on two cores and a
//! few hundred MB: four streaming passes, each keeping only what the filter needs:
//! 1. `title.ratings`: tconst → (rating, votes), ~1.5 M small entries;
//! 2. `title.basics`: the titles that pass the filter (movie or tvMovie, rated, >= 30 votes), ~250 k;
//! 3. `title.principals`: the rows of kept titles only (~4 M), collecting the people they name;
//! 4. `name.basics`: the names of those people only;
//!
//! then credits are sorted by (tconst, ordering), grouped per movie and written. A principal whose
//! person is missing from `name.basics` is left out of the document, as the reference's inner join
//! left it out, and counted ("left out" in the report).

use crate::catalog::demo;
use crate::catalog::imdb::{self, Dump, FileStats, NameRow, PrincipalRow, RatingRow, TitleRow};
use crate::catalog::jsonl::{self, CatalogRecord};
use crate::catalog::store::{MovieRow, Store, UpsertCounts};
use crate::movie::MovieDoc;
use crate::progress;
use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The reference filter: titles of these types with at least this many votes.
pub const MOVIE_TYPES: [&str; 2] = ["movie", "tvMovie"];
pub const MIN_VOTES: u32 = 30;
/// `source` of movies from the IMDb dumps.
pub const IMDB_SOURCE: &str = "imdb";
/// How many malformed rows are reported one by one (per file); the rest are only counted.
const SHOWN_PER_FILE: u64 = 5;

/// What to ingest.
#[derive(Debug, Clone)]
pub enum IngestSource {
    /// A folder with `title.basics`, `title.ratings`, `title.principals`, `name.basics` (`.tsv[.gz]`).
    Imdb(PathBuf),
    /// A catalog JSONL file.
    Catalog(PathBuf),
    /// The demo package, fetched into (or read from) this cache folder.
    Demo { cache_dir: PathBuf },
}

#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Fail on the first malformed row instead of skipping it; nothing is written then.
    pub strict: bool,
    /// Movies per store transaction.
    pub batch_size: usize,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions { strict: false, batch_size: 5000 }
    }
}

/// Why an input movie did not make it into the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    Malformed,
    DuplicateId,
    NotAMovie,
    NoRating,
    TooFewVotes,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipReason::Malformed => "malformed",
            SkipReason::DuplicateId => "duplicate id",
            SkipReason::NotAMovie => "not a movie or TV movie",
            SkipReason::NoRating => "no rating",
            SkipReason::TooFewVotes => "fewer than 30 votes",
        })
    }
}

/// One input file: how much was read, how fast, how much was malformed.
#[derive(Debug, Clone)]
pub struct FileReport {
    pub stats: FileStats,
    pub malformed: u64,
}

/// People lists of the IMDb path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CreditReport {
    /// Principal rows of kept movies whose person has a name: they are in the documents.
    pub used: u64,
    /// Principal rows of kept movies whose person is missing from `name.basics`: left out, as the
    /// reference's inner join left them out.
    pub missing_name: u64,
    /// Distinct people those rows name.
    pub people: u64,
}

/// Everything `cinevec ingest` reports at the end.
#[derive(Debug, Clone, Default)]
pub struct IngestReport {
    /// `imdb`, `catalog:<file name>`, `vega-datasets@3.2.1`: the `source` of the rows written.
    pub source: String,
    pub files: Vec<FileReport>,
    /// Input movies (titles, catalog lines, films), malformed ones included: `read = kept + skipped`.
    pub read: u64,
    pub kept: u64,
    pub skipped: BTreeMap<SkipReason, u64>,
    pub credits: Option<CreditReport>,
    pub store: String,
    /// Movies that were not in the store before.
    pub new: u64,
    /// Movies that were there and changed.
    pub changed: u64,
    /// Movies that were there exactly like this.
    pub unchanged: u64,
    /// Movies in the store afterwards (all sources).
    pub total: u64,
    /// Named steps after reading (grouping, writing) and their wall time.
    pub phases: Vec<(&'static str, Duration)>,
    /// Time the store writer thread spent in the database (rendering, hashing, SQL), overlapping
    /// with the building of the next documents.
    pub store_busy: Duration,
    pub elapsed: Duration,
}

impl IngestReport {
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    fn skip(&mut self, reason: SkipReason) {
        *self.skipped.entry(reason).or_default() += 1;
    }
}

impl fmt::Display for IngestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.files {
            let s = &file.stats;
            write!(
                f,
                "file     {:<26} {:>10} rows {:>6} malformed {:>8.1} s {:>10.0} rows/s",
                s.file_name(),
                s.rows,
                file.malformed,
                s.wall.as_secs_f64(),
                s.rows_per_sec()
            )?;
            if s.text_bytes > 0 {
                write!(
                    f,
                    "  ({:.0} MB{}, read{} {:.1} s, parse {:.1} s)",
                    s.text_bytes as f64 / 1e6,
                    if s.gzipped { " unpacked" } else { "" },
                    if s.gzipped { "+gunzip" } else { "" },
                    s.decode_busy.as_secs_f64(),
                    s.parse_busy.as_secs_f64()
                )?;
            }
            writeln!(f)?;
        }
        write!(f, "movies   read {}, kept {}, skipped {}", self.read, self.kept, self.skipped_total())?;
        if !self.skipped.is_empty() {
            let reasons: Vec<String> = self.skipped.iter().map(|(r, n)| format!("{r} {n}")).collect();
            write!(f, " ({})", reasons.join(", "))?;
        }
        writeln!(f)?;
        if let Some(c) = &self.credits {
            writeln!(
                f,
                "credits  {} principal rows of kept movies used ({} people), {} left out (person missing from name.basics)",
                c.used, c.people, c.missing_name
            )?;
        }
        writeln!(
            f,
            "store    {}: {} new, {} changed, {} unchanged; {} movies in the store",
            self.store, self.new, self.changed, self.unchanged, self.total
        )?;
        let phases: Vec<String> =
            self.phases.iter().map(|(name, d)| format!("{name} {:.1} s", d.as_secs_f64())).collect();
        write!(f, "time     {:.1} s", self.elapsed.as_secs_f64())?;
        if !phases.is_empty() {
            write!(f, " (after reading: {})", phases.join(", "))?;
        }
        write!(f, "; store thread busy {:.1} s", self.store_busy.as_secs_f64())?;
        Ok(())
    }
}

/// Run an ingest into the store at `db` (a path or a `sqlite:` URL).
pub fn ingest(source: &IngestSource, db: &str, opts: &IngestOptions) -> Result<IngestReport> {
    let started = Instant::now();
    // Check the input exists before creating a store for it; then open the store before reading, so
    // a bad --db fails in a second, not after minutes of parsing.
    let input = prepare(source)?;
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    let store = rt.block_on(Store::open(db))?;
    let result = (|| -> Result<IngestReport> {
        let before = rt.block_on(store.count())?;
        let (mut report, written) = with_writer(&rt, &store, opts.batch_size.max(1), |writer| match input {
            Input::Imdb(paths) => ingest_imdb(&paths, opts, writer),
            Input::Catalog(path) => ingest_catalog(path, opts, writer),
            Input::Demo(cache_dir) => ingest_demo(cache_dir, opts, writer),
        })?;
        report.total = rt.block_on(store.count())?;
        report.new = report.total.saturating_sub(before);
        report.changed = written.counts.written.saturating_sub(report.new);
        report.unchanged = written.counts.unchanged;
        report.store_busy = written.busy;
        report.store = db.to_string();
        Ok(report)
    })();
    rt.block_on(store.close());
    let mut report = result?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// A source whose files were found.
enum Input<'a> {
    Imdb(DumpPaths),
    Catalog(&'a Path),
    Demo(&'a Path),
}

fn prepare(source: &IngestSource) -> Result<Input<'_>> {
    Ok(match source {
        IngestSource::Imdb(dir) => {
            if !dir.is_dir() {
                bail!(
                    "{}: not a folder (expected the IMDb dumps title.basics, title.ratings, title.principals, name.basics)",
                    dir.display()
                );
            }
            Input::Imdb(DumpPaths {
                ratings: imdb::locate(dir, Dump::TitleRatings)?,
                basics: imdb::locate(dir, Dump::TitleBasics)?,
                principals: imdb::locate(dir, Dump::TitlePrincipals)?,
                names: imdb::locate(dir, Dump::NameBasics)?,
            })
        }
        IngestSource::Catalog(path) => {
            if !path.is_file() {
                bail!("{}: no such catalog file", path.display());
            }
            Input::Catalog(path)
        }
        IngestSource::Demo { cache_dir } => Input::Demo(cache_dir),
    })
}

/// Hands full batches of movies to the store writer thread.
struct Writer {
    batches: mpsc::SyncSender<Vec<MovieRow>>,
    batch: Vec<MovieRow>,
    size: usize,
}

impl Writer {
    fn push(&mut self, row: MovieRow) -> Result<()> {
        self.batch.push(row);
        if self.batch.len() >= self.size {
            self.flush()?;
        }
        Ok(())
    }

    /// Send what is pending (done at the end of a source; the writer thread writes it).
    fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(self.size));
        // Fails only when the writer thread stopped on an error, which is then reported instead.
        self.batches.send(batch).map_err(|_| anyhow::anyhow!("the store writer stopped"))
    }
}

/// What the writer thread did.
#[derive(Debug, Default)]
struct Written {
    counts: UpsertCounts,
    busy: Duration,
}

/// Run `produce` with a [`Writer`] whose batches a second thread writes to the store, one transaction
/// each, so that building documents and writing them overlap (rendering and hashing happen on the
/// writer side). At most two batches wait in between, which keeps memory flat.
fn with_writer<R>(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    size: usize,
    produce: impl FnOnce(&mut Writer) -> Result<R>,
) -> Result<(R, Written)> {
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<Vec<MovieRow>>(2);
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn_scoped(scope, move || -> Result<Written> {
                let mut written = Written::default();
                for batch in rx {
                    let t = Instant::now();
                    let c = rt.block_on(store.upsert_movies(&batch))?;
                    written.busy += t.elapsed();
                    written.counts.written += c.written;
                    written.counts.unchanged += c.unchanged;
                }
                Ok(written)
            })
            .context("cannot start the store writer thread")?;
        let mut writer = Writer { batches: tx, batch: Vec::with_capacity(size), size };
        let produced = produce(&mut writer).and_then(|r| writer.flush().map(|()| r));
        drop(writer); // closes the channel: the thread finishes the queue and returns
        let written = thread.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the store writer panicked")));
        match (produced, written) {
            // A store error is the root cause of a failed send: report it.
            (_, Err(e)) => Err(e),
            (Err(e), Ok(_)) => Err(e),
            (Ok(r), Ok(w)) => Ok((r, w)),
        }
    })
}

/// Malformed-row bookkeeping for one file: count, report the first few, or fail in strict mode.
struct Rejects<'a> {
    file: String,
    /// How a position is named: `None` for line numbers (`file:12`), else e.g. `film` (`file, film 12`).
    unit: Option<&'static str>,
    strict: bool,
    count: u64,
    bar: &'a ProgressBar,
}

impl<'a> Rejects<'a> {
    fn new(file: &Path, strict: bool, bar: &'a ProgressBar) -> Self {
        Rejects { file: file.display().to_string(), unit: None, strict, count: 0, bar }
    }

    fn reject(&mut self, at: u64, error: impl fmt::Display) -> Result<()> {
        let place = match self.unit {
            None => format!("{}:{at}", self.file),
            Some(unit) => format!("{}, {unit} {at}", self.file),
        };
        if self.strict {
            bail!("{place}: {error} (--strict: nothing was written)");
        }
        self.count += 1;
        if self.count <= SHOWN_PER_FILE {
            self.bar.suspend(|| tracing::warn!("{place}: skipped: {error}"));
        }
        Ok(())
    }

    fn finish(self) {
        if self.count > SHOWN_PER_FILE {
            tracing::warn!("{}: {} malformed rows skipped in all", self.file, self.count);
        }
    }
}

/// A growable bit set over ids (tconst / nconst integer parts, at most ~10^9).
#[derive(Default)]
struct IdSet {
    words: Vec<u64>,
    len: u64,
}

impl IdSet {
    fn contains(&self, id: u32) -> bool {
        self.words.get((id >> 6) as usize).is_some_and(|w| w & (1 << (id & 63)) != 0)
    }

    /// Add `id`; false if it was there already.
    fn insert(&mut self, id: u32) -> bool {
        let word = (id >> 6) as usize;
        if word >= self.words.len() {
            self.words.resize((word + 1).next_power_of_two(), 0);
        }
        let bit = 1u64 << (id & 63);
        let fresh = self.words[word] & bit == 0;
        self.words[word] |= bit;
        self.len += u64::from(fresh);
        fresh
    }

    fn remove(&mut self, id: u32) -> bool {
        let Some(w) = self.words.get_mut((id >> 6) as usize) else { return false };
        let bit = 1u64 << (id & 63);
        let was = *w & bit != 0;
        *w &= !bit;
        self.len -= u64::from(was);
        was
    }
}

/// A title that passed the filter, with what its document needs.
struct KeptTitle {
    tconst: u32,
    title: Box<str>,
    is_adult: bool,
    start_year: Option<u32>,
    runtime_minutes: Option<u32>,
    genres: Option<Box<str>>,
    rating: f64,
    votes: u32,
}

/// One principal row of a kept title, in 16 bytes.
#[derive(Clone, Copy)]
struct Credit {
    tconst: u32,
    ordering: u32,
    nconst: u32,
    category: u32,
}

/// The four dump files of a folder, in reading order.
struct DumpPaths {
    ratings: PathBuf,
    basics: PathBuf,
    principals: PathBuf,
    names: PathBuf,
}

fn ingest_imdb(paths: &DumpPaths, opts: &IngestOptions, writer: &mut Writer) -> Result<IngestReport> {
    let mut report = IngestReport { source: IMDB_SOURCE.to_string(), ..Default::default() };

    // Pass 1: ratings of every rated title.
    let mut ratings: HashMap<u32, (f64, u32)> = HashMap::new();
    let file = read_pass(&paths.ratings, Dump::TitleRatings, "ratings", opts, |rejects, line, header, row| {
        match RatingRow::parse(header, row) {
            Ok(r) => {
                if ratings.insert(r.tconst, (r.rating, r.votes)).is_some() {
                    rejects.reject(line, format!("a second rating for {}", imdb::format_id("tt", r.tconst)))?;
                }
            }
            Err(e) => rejects.reject(line, e)?,
        }
        Ok(())
    })?;
    report.files.push(file);

    // Pass 2: the titles that pass the filter.
    let mut kept_ids = IdSet::default();
    let mut titles: Vec<KeptTitle> = Vec::new();
    let file = read_pass(&paths.basics, Dump::TitleBasics, "basics", opts, |rejects, line, header, row| {
        report.read += 1;
        let t = match TitleRow::parse(header, row) {
            Ok(t) => t,
            Err(e) => {
                report.skip(SkipReason::Malformed);
                return rejects.reject(line, e);
            }
        };
        if !MOVIE_TYPES.contains(&t.title_type) {
            report.skip(SkipReason::NotAMovie);
            return Ok(());
        }
        match ratings.get(&t.tconst) {
            None => report.skip(SkipReason::NoRating),
            Some(&(_, votes)) if votes < MIN_VOTES => report.skip(SkipReason::TooFewVotes),
            Some(_) if !kept_ids.insert(t.tconst) => report.skip(SkipReason::DuplicateId),
            Some(&(rating, votes)) => titles.push(KeptTitle {
                tconst: t.tconst,
                title: t.primary_title.into(),
                is_adult: t.is_adult,
                start_year: t.start_year,
                runtime_minutes: t.runtime_minutes,
                genres: t.genres.map(Into::into),
                rating,
                votes,
            }),
        }
        Ok(())
    })?;
    report.files.push(file);
    report.kept = titles.len() as u64;
    drop(ratings);

    // Pass 3: principals of kept titles; the people they name.
    let mut credits: Vec<Credit> = Vec::new();
    let mut categories: Vec<String> = Vec::new();
    let mut needed = IdSet::default();
    let file =
        read_pass(&paths.principals, Dump::TitlePrincipals, "principals", opts, |rejects, line, header, row| {
            match PrincipalRow::parse(header, row) {
                Ok(p) if kept_ids.contains(p.tconst) => {
                    let category = match categories.iter().position(|c| c == p.category) {
                        Some(i) => i,
                        None => {
                            categories.push(p.category.to_string());
                            categories.len() - 1
                        }
                    } as u32;
                    credits.push(Credit { tconst: p.tconst, ordering: p.ordering, nconst: p.nconst, category });
                    needed.insert(p.nconst);
                }
                Ok(_) => {}
                Err(e) => rejects.reject(line, e)?,
            }
            Ok(())
        })?;
    report.files.push(file);
    let people = needed.len;

    // Pass 4: names of those people only, in one string arena.
    let mut arena = String::new();
    let mut names: HashMap<u32, (u32, u32)> = HashMap::with_capacity(people as usize);
    let file = read_pass(&paths.names, Dump::NameBasics, "names", opts, |rejects, line, header, row| {
        match NameRow::parse(header, row) {
            // The first row of a person wins; removing it from `needed` ignores later duplicates.
            Ok(n) if needed.remove(n.nconst) => {
                let start = arena.len() as u32;
                arena.push_str(n.primary_name);
                names.insert(n.nconst, (start, n.primary_name.len() as u32));
            }
            Ok(_) => {}
            Err(e) => rejects.reject(line, e)?,
        }
        Ok(())
    })?;
    report.files.push(file);
    drop(needed);

    // Group: credits in (tconst, ordering) order; equal orderings keep file order (stable sort).
    let t = Instant::now();
    titles.sort_unstable_by_key(|t| t.tconst);
    credits.sort_by_key(|c| (c.tconst, c.ordering));
    report.phases.push(("group", t.elapsed()));

    let t = Instant::now();
    let bar = progress::bar(titles.len() as u64, "write", "movies");
    let name_of = |nconst: u32| names.get(&nconst).map(|&(start, len)| &arena[start as usize..(start + len) as usize]);
    let mut credit_report = CreditReport { people, ..Default::default() };
    let mut next = 0;
    for title in &titles {
        let start = next;
        while next < credits.len() && credits[next].tconst == title.tconst {
            next += 1;
        }
        let movie = imdb_document(title, &credits[start..next], &categories, &name_of, &mut credit_report)
            .with_context(|| format!("{}: cannot build its document", imdb::format_id("tt", title.tconst)))?;
        writer.push(MovieRow {
            id: imdb::format_id("tt", title.tconst),
            rating: Some(title.rating),
            votes: Some(u64::from(title.votes)),
            movie,
            source: IMDB_SOURCE.to_string(),
        })?;
        bar.inc(1);
    }
    writer.flush()?;
    bar.finish_and_clear();
    report.phases.push(("documents", t.elapsed()));
    report.credits = Some(credit_report);
    Ok(report)
}

/// The reference document of one movie: keys `title, genres, is_adult, release_year,
/// runtime_minutes, directors, writers, producers, actors, principals`, people in billing order.
fn imdb_document<'n>(
    title: &KeptTitle,
    credits: &[Credit],
    categories: &[String],
    name_of: &impl Fn(u32) -> Option<&'n str>,
    report: &mut CreditReport,
) -> Result<MovieDoc> {
    let (mut directors, mut writers, mut producers, mut actors, mut principals) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for c in credits {
        let Some(name) = name_of(c.nconst) else {
            report.missing_name += 1;
            continue;
        };
        report.used += 1;
        let name = Value::String(name.to_string());
        match categories[c.category as usize].as_str() {
            "director" => directors.push(name),
            "writer" => writers.push(name),
            "producer" => producers.push(name),
            "actor" | "actress" => actors.push(name),
            other => {
                let Value::String(name) = name else { unreachable!() };
                principals.push(Value::Object(Map::from_iter([(name, Value::String(other.to_string()))])));
            }
        }
    }
    let opt = |v: Option<u32>| v.map_or(Value::Null, Value::from);
    let genres = match &title.genres {
        None => Value::Null,
        Some(g) => Value::Array(g.split(',').map(|s| Value::String(s.to_string())).collect()),
    };
    let mut doc = Map::with_capacity(10);
    doc.insert("title".into(), Value::String(title.title.to_string()));
    doc.insert("genres".into(), genres);
    doc.insert("is_adult".into(), Value::Bool(title.is_adult));
    doc.insert("release_year".into(), opt(title.start_year));
    doc.insert("runtime_minutes".into(), opt(title.runtime_minutes));
    doc.insert("directors".into(), Value::Array(directors));
    doc.insert("writers".into(), Value::Array(writers));
    doc.insert("producers".into(), Value::Array(producers));
    doc.insert("actors".into(), Value::Array(actors));
    doc.insert("principals".into(), Value::Array(principals));
    Ok(MovieDoc::from_value(Value::Object(doc))?)
}

/// One streaming pass over a dump with a progress bar; `on_row` gets the file's reject counter.
fn read_pass(
    path: &Path,
    dump: Dump,
    label: &str,
    opts: &IngestOptions,
    mut on_row: impl FnMut(&mut Rejects, u64, &imdb::Header, &[u8]) -> Result<()>,
) -> Result<FileReport> {
    let bar = progress::bytes_bar(0, label);
    let mut rejects = Rejects::new(path, opts.strict, &bar);
    let stats = imdb::read_dump(path, dump, &bar, |line, header, row| on_row(&mut rejects, line, header, row))?;
    bar.finish_and_clear();
    let malformed = rejects.count;
    rejects.finish();
    tracing::debug!("{}: {} rows in {:.1} s", path.display(), stats.rows, stats.wall.as_secs_f64());
    Ok(FileReport { stats, malformed })
}

fn ingest_catalog(path: &Path, opts: &IngestOptions, writer: &mut Writer) -> Result<IngestReport> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut report = IngestReport { source: format!("catalog:{name}"), ..Default::default() };
    let open = |bar: &ProgressBar| -> Result<_> {
        let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        bar.set_length(file.metadata().map(|m| m.len()).unwrap_or(0));
        Ok(jsonl::records(std::io::BufReader::with_capacity(1 << 20, progress::ReadProgress::new(file, bar.clone()))))
    };
    if opts.strict {
        // Check every line before writing any.
        let bar = progress::bytes_bar(0, "check");
        for item in open(&bar)? {
            if let Err(bad) = item.with_context(|| format!("cannot read {}", path.display()))? {
                bail!("{}:{}: {} (--strict: nothing was written)", path.display(), bad.line, bad.error);
            }
        }
        bar.finish_and_clear();
    }
    let started = Instant::now();
    let bar = progress::bytes_bar(0, "catalog");
    let mut rejects = Rejects::new(path, opts.strict, &bar);
    let mut seen = HashSet::new();
    let mut lines = 0;
    for item in open(&bar)? {
        let item = item.with_context(|| format!("cannot read {}", path.display()))?;
        report.read += 1;
        lines += 1;
        match item {
            Ok(record) => {
                if !seen.insert(record.id.clone()) {
                    report.skip(SkipReason::DuplicateId);
                    continue;
                }
                report.kept += 1;
                writer.push(MovieRow::from_record(record, &report.source))?;
            }
            Err(bad) => {
                report.skip(SkipReason::Malformed);
                rejects.reject(bad.line as u64, bad.error)?;
            }
        }
    }
    bar.finish_and_clear();
    let malformed = rejects.count;
    rejects.finish();
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    report.files.push(FileReport {
        stats: FileStats {
            path: path.to_path_buf(),
            bytes,
            text_bytes: 0,
            gzipped: false,
            rows: lines,
            wall: started.elapsed(),
            decode_busy: Duration::ZERO,
            parse_busy: Duration::ZERO,
        },
        malformed,
    });
    Ok(report)
}

fn ingest_demo(cache_dir: &Path, opts: &IngestOptions, writer: &mut Writer) -> Result<IngestReport> {
    let started = Instant::now();
    let spinner = progress::spinner("fetch");
    spinner.set_message(format!("{} with npm", demo::PACKAGE));
    let tarball = demo::fetch(cache_dir);
    spinner.finish_and_clear();
    let tarball = tarball?;
    let bytes = demo::read_movies_json(&tarball)?;
    let films = demo::parse_films(&bytes)?;
    let label = format!("{}!package/data/movies.json", tarball.display());
    let mut report = IngestReport { source: demo::PACKAGE.to_string(), ..Default::default() };

    // Map every film before writing any (the file is small), so --strict never half-writes.
    let bar = progress::bar(films.len() as u64, "demo", "films");
    let mut rejects = Rejects { unit: Some("film"), ..Rejects::new(Path::new(&label), opts.strict, &bar) };
    let mut records: Vec<CatalogRecord> = Vec::new();
    for (i, film) in films.iter().enumerate() {
        report.read += 1;
        bar.inc(1);
        match demo::map_film(i, film) {
            Ok(Some(record)) => records.push(record),
            Ok(None) => report.skip(SkipReason::NoRating),
            Err(e) => {
                report.skip(SkipReason::Malformed);
                rejects.reject(i as u64 + 1, e)?;
            }
        }
    }
    bar.finish_and_clear();
    let malformed = rejects.count;
    rejects.finish();
    report.kept = records.len() as u64;
    report.files.push(FileReport {
        stats: FileStats {
            path: PathBuf::from(label),
            bytes: bytes.len() as u64,
            text_bytes: 0,
            gzipped: false,
            rows: films.len() as u64,
            wall: started.elapsed(),
            decode_busy: Duration::ZERO,
            parse_busy: Duration::ZERO,
        },
        malformed,
    });
    for record in records {
        writer.push(MovieRow::from_record(record, demo::PACKAGE))?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_set_grows_and_forgets() {
        let mut s = IdSet::default();
        assert!(!s.contains(36_000_000));
        assert!(s.insert(36_000_000));
        assert!(!s.insert(36_000_000));
        assert!(s.insert(1));
        assert!(s.contains(1) && s.contains(36_000_000) && !s.contains(2));
        assert_eq!(s.len, 2);
        assert!(s.remove(1) && !s.remove(1) && !s.remove(4_000_000_000));
        assert_eq!(s.len, 1);
    }
}
