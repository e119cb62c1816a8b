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
//!
//! Each source owns its reading and joining in its own file (`from_imdb.rs`, `from_jsonl.rs`,
//! `from_demo.rs`); this file holds what they share: the batched store writer, malformed-row
//! bookkeeping and the report.

mod from_demo;
mod from_imdb;
mod from_jsonl;

use from_imdb::DumpPaths;

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
            Input::Imdb(paths) => from_imdb::ingest_imdb(&paths, opts, writer),
            Input::Catalog(path) => from_jsonl::ingest_catalog(path, opts, writer),
            Input::Demo(cache_dir) => from_demo::ingest_demo(cache_dir, opts, writer),
        })?;
        report.total = rt.block_on(store.count())?;
        report.new = report.total.saturating_sub(before);
        report.changed = written.counts.written.saturating_sub(report.new);
        report.unchanged = written.counts.unchanged;
        report.store_busy = written.busy;
        report.store = crate::catalog::store::redacted(db);
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
