//! The official IMDb non-commercial dumps (`title.basics`, `title.ratings`, `title.principals`,
//! `name.basics`; `.tsv` or `.tsv.gz`): tab separated, a header row, `\N` for null, no quoting (a field
//! may contain `"`).
//!
//! Reading is built for the real files (up to ~90 M rows, 700 MB gzipped) on two cores: one thread
//! reads and gunzips the file into large chunks of whole lines, the caller's thread splits and parses
//! them in place (no allocation per row). Rows are parsed into borrowed views ([`TitleRow`],
//! [`RatingRow`], [`PrincipalRow`], [`NameRow`]); ids are kept as their integer part (`tt0111161` →
//! 111161) so that sets and maps over millions of them stay small.

use crate::progress::ReadProgress;
use anyhow::{bail, Context, Result};
use flate2::read::MultiGzDecoder;
use indicatif::ProgressBar;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The null marker of the dumps.
pub const NULL: &[u8] = b"\\N";

/// One of the four dump files the ingest reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dump {
    TitleBasics,
    TitleRatings,
    TitlePrincipals,
    NameBasics,
}

impl Dump {
    pub const ALL: [Dump; 4] = [Dump::TitleBasics, Dump::TitleRatings, Dump::TitlePrincipals, Dump::NameBasics];

    /// File name without `.tsv` / `.tsv.gz`.
    pub fn stem(self) -> &'static str {
        match self {
            Dump::TitleBasics => "title.basics",
            Dump::TitleRatings => "title.ratings",
            Dump::TitlePrincipals => "title.principals",
            Dump::NameBasics => "name.basics",
        }
    }

    /// The columns read from this file, found by name in its header (other columns are allowed).
    fn columns(self) -> &'static [&'static str] {
        match self {
            Dump::TitleBasics => {
                &["tconst", "titleType", "primaryTitle", "isAdult", "startYear", "runtimeMinutes", "genres"]
            }
            Dump::TitleRatings => &["tconst", "averageRating", "numVotes"],
            Dump::TitlePrincipals => &["tconst", "ordering", "nconst", "category"],
            Dump::NameBasics => &["nconst", "primaryName"],
        }
    }
}

/// Find `<stem>.tsv` or `<stem>.tsv.gz` in `dir` (the plain file wins when both exist: it is faster).
pub fn locate(dir: &Path, dump: Dump) -> Result<PathBuf> {
    for ext in ["tsv", "tsv.gz"] {
        let path = dir.join(format!("{}.{ext}", dump.stem()));
        if path.is_file() {
            return Ok(path);
        }
    }
    bail!("{}: no {}.tsv or {}.tsv.gz there", dir.display(), dump.stem(), dump.stem())
}

/// Why one data row was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("expected {expected} tab-separated fields, found {found}")]
    FieldCount { expected: usize, found: usize },
    #[error("`{column}` is not {what}: {value:?}")]
    BadValue { column: &'static str, what: &'static str, value: String },
    #[error("`{column}` is not valid UTF-8")]
    NotUtf8 { column: &'static str },
    #[error("`{column}` is empty")]
    Empty { column: &'static str },
}

fn bad(column: &'static str, what: &'static str, value: &[u8]) -> RowError {
    let mut value = String::from_utf8_lossy(value).into_owned();
    if value.len() > 40 {
        let cut = (0..=40).rev().find(|&i| value.is_char_boundary(i)).unwrap_or(0);
        value.truncate(cut);
        value.push('…');
    }
    RowError::BadValue { column, what, value }
}

/// Where the columns a file is read for sit in its rows, from its header line.
#[derive(Debug, Clone)]
pub struct Header {
    width: usize,
    /// Position of each of [`Dump::columns`], in that order.
    pos: Vec<usize>,
}

/// Most columns a row may have (the widest official file has 9).
const MAX_FIELDS: usize = 32;

impl Header {
    /// Check a header line and locate the needed columns in it.
    pub fn parse(dump: Dump, line: &[u8]) -> Result<Header> {
        // A byte-order mark, as some editors write, is not part of the first column's name.
        let line = strip_cr(line);
        let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        let names: Vec<&[u8]> = line.split(|&b| b == b'\t').collect();
        if names.len() > MAX_FIELDS {
            bail!("header has {} columns, more than the {MAX_FIELDS} supported", names.len());
        }
        let mut pos = Vec::new();
        for &col in dump.columns() {
            match names.iter().position(|n| *n == col.as_bytes()) {
                Some(i) => pos.push(i),
                None => bail!(
                    "header {:?} lacks column `{col}`: is this the official {}.tsv? (expected columns {})",
                    String::from_utf8_lossy(line),
                    dump.stem(),
                    dump.columns().join(", ")
                ),
            }
        }
        Ok(Header { width: names.len(), pos })
    }

    /// Split a data row into its fields, requiring exactly the header's width. A plain byte loop:
    /// fields are short (~8 bytes), too short for a SIMD search per field to pay off.
    fn split<'a>(&self, line: &'a [u8]) -> Result<Fields<'a, '_>, RowError> {
        let mut fields = [&line[..0]; MAX_FIELDS];
        let mut n = 0;
        let mut start = 0;
        for (i, &b) in line.iter().enumerate() {
            if b == b'\t' {
                if n + 1 >= self.width {
                    let found = line.iter().filter(|&&c| c == b'\t').count() + 1;
                    return Err(RowError::FieldCount { expected: self.width, found });
                }
                fields[n] = &line[start..i];
                n += 1;
                start = i + 1;
            }
        }
        fields[n] = &line[start..];
        n += 1;
        if n != self.width {
            return Err(RowError::FieldCount { expected: self.width, found: n });
        }
        Ok(Fields { fields, header: self })
    }
}

struct Fields<'a, 'h> {
    fields: [&'a [u8]; MAX_FIELDS],
    header: &'h Header,
}

impl<'a> Fields<'a, '_> {
    /// The `i`-th needed column (in [`Dump::columns`] order).
    fn get(&self, i: usize) -> &'a [u8] {
        self.fields[self.header.pos[i]]
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Digits only, no sign, at most 9 digits (fits `u32` with room).
pub fn parse_u32(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 9 {
        return None;
    }
    let mut n = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(c - b'0');
    }
    Some(n)
}

/// An IMDb id (`tt0111161`, `nm0000001`) to its integer part. Only canonical spellings are accepted
/// (at least 7 digits, no leading zero beyond that), so [`format_id`] gives back the same text.
pub fn parse_id(b: &[u8], prefix: &[u8; 2]) -> Option<u32> {
    let digits = b.strip_prefix(prefix.as_slice())?;
    if digits.len() < 7 || (digits.len() > 7 && digits[0] == b'0') {
        return None;
    }
    parse_u32(digits)
}

/// `tconst` text from its integer part: `format_id("tt", 111161)` is `tt0111161`.
pub fn format_id(prefix: &str, n: u32) -> String {
    format!("{prefix}{n:07}")
}

fn text<'a>(column: &'static str, b: &'a [u8]) -> Result<&'a str, RowError> {
    std::str::from_utf8(b).map_err(|_| RowError::NotUtf8 { column })
}

/// A required text field: not `\N`, not blank.
fn required_text<'a>(column: &'static str, b: &'a [u8]) -> Result<&'a str, RowError> {
    let s = text(column, b)?;
    if b == NULL || s.trim().is_empty() {
        return Err(RowError::Empty { column });
    }
    Ok(s)
}

fn optional_u32(column: &'static str, what: &'static str, b: &[u8]) -> Result<Option<u32>, RowError> {
    if b == NULL {
        return Ok(None);
    }
    parse_u32(b).map(Some).ok_or_else(|| bad(column, what, b))
}

fn id(column: &'static str, prefix: &[u8; 2], b: &[u8]) -> Result<u32, RowError> {
    parse_id(b, prefix).ok_or_else(|| bad(column, "an IMDb id", b))
}

/// A row of `title.basics`.
#[derive(Debug, Clone, PartialEq)]
pub struct TitleRow<'a> {
    pub tconst: u32,
    /// `movie`, `tvMovie`, `short`, `tvSeries`, `tvEpisode`, ...
    pub title_type: &'a str,
    pub primary_title: &'a str,
    pub is_adult: bool,
    pub start_year: Option<u32>,
    pub runtime_minutes: Option<u32>,
    /// Comma-separated genres; `None` for `\N`.
    pub genres: Option<&'a str>,
}

impl<'a> TitleRow<'a> {
    pub fn parse(header: &Header, line: &'a [u8]) -> Result<Self, RowError> {
        let f = header.split(line)?;
        let tconst = id("tconst", b"tt", f.get(0))?;
        let title_type = required_text("titleType", f.get(1))?;
        let primary_title = required_text("primaryTitle", f.get(2))?;
        let is_adult = match f.get(3) {
            b"0" => false,
            b"1" => true,
            other => return Err(bad("isAdult", "0 or 1", other)),
        };
        let start_year = optional_u32("startYear", "a year", f.get(4))?;
        let runtime_minutes = optional_u32("runtimeMinutes", "a whole number of minutes", f.get(5))?;
        let genres = match f.get(6) {
            g if g == NULL => None,
            g => {
                let s = text("genres", g)?;
                if s.split(',').any(|x| x.trim().is_empty()) {
                    return Err(bad("genres", "a comma-separated list of genres", g));
                }
                Some(s)
            }
        };
        Ok(TitleRow { tconst, title_type, primary_title, is_adult, start_year, runtime_minutes, genres })
    }
}

/// A row of `title.ratings`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatingRow {
    pub tconst: u32,
    /// 1.0–10.0, one decimal in the dumps.
    pub rating: f64,
    pub votes: u32,
}

impl RatingRow {
    pub fn parse(header: &Header, line: &[u8]) -> Result<Self, RowError> {
        let f = header.split(line)?;
        let tconst = id("tconst", b"tt", f.get(0))?;
        let raw = f.get(1);
        let rating = std::str::from_utf8(raw)
            .ok()
            .filter(|s| s.bytes().all(|c| c.is_ascii_digit() || c == b'.'))
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|r| (1.0..=10.0).contains(r))
            .ok_or_else(|| bad("averageRating", "a rating from 1 to 10", raw))?;
        let votes = parse_u32(f.get(2)).ok_or_else(|| bad("numVotes", "a vote count", f.get(2)))?;
        Ok(RatingRow { tconst, rating, votes })
    }
}

/// A row of `title.principals` (the `job` and `characters` columns are not read).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrincipalRow<'a> {
    pub tconst: u32,
    pub ordering: u32,
    pub nconst: u32,
    /// `director`, `writer`, `producer`, `actor`, `actress`, `composer`, `self`, ...
    pub category: &'a str,
}

impl<'a> PrincipalRow<'a> {
    pub fn parse(header: &Header, line: &'a [u8]) -> Result<Self, RowError> {
        let f = header.split(line)?;
        let tconst = id("tconst", b"tt", f.get(0))?;
        let ordering = parse_u32(f.get(1)).ok_or_else(|| bad("ordering", "a whole number", f.get(1)))?;
        let nconst = id("nconst", b"nm", f.get(2))?;
        let category = required_text("category", f.get(3))?;
        Ok(PrincipalRow { tconst, ordering, nconst, category })
    }
}

/// A row of `name.basics` (only the name is read).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NameRow<'a> {
    pub nconst: u32,
    pub primary_name: &'a str,
}

impl<'a> NameRow<'a> {
    pub fn parse(header: &Header, line: &'a [u8]) -> Result<Self, RowError> {
        let f = header.split(line)?;
        let nconst = id("nconst", b"nm", f.get(0))?;
        let primary_name = required_text("primaryName", f.get(1))?;
        Ok(NameRow { nconst, primary_name })
    }
}

/// What reading one file took.
#[derive(Debug, Clone)]
pub struct FileStats {
    pub path: PathBuf,
    /// Size on disk (compressed when gzipped).
    pub bytes: u64,
    /// Bytes of TSV text (after gunzip).
    pub text_bytes: u64,
    pub gzipped: bool,
    /// Data rows (the header and blank lines not counted).
    pub rows: u64,
    /// Wall time of the whole pass.
    pub wall: Duration,
    /// Time the reader thread spent reading and gunzipping.
    pub decode_busy: Duration,
    /// Time the caller's thread spent on rows (parsing, filtering, collecting).
    pub parse_busy: Duration,
}

impl FileStats {
    pub fn file_name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    pub fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// Size of the chunks of whole lines handed from the reader thread to the parser.
const CHUNK: usize = 4 << 20;
/// Chunks in flight: enough to absorb jitter, small enough to keep memory flat.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Stream the data rows of a dump file to `on_row(line_number, header, row)`, the header checked first.
/// `line_number` is 1-based and counts the header, as an editor would show it; the row has no line
/// terminator (`\n` or `\r\n`). Gzip is recognised by its magic bytes, whatever the file is called.
/// The first error `on_row` returns stops the pass and is returned.
pub fn read_dump(
    path: &Path,
    dump: Dump,
    bar: &ProgressBar,
    mut on_row: impl FnMut(u64, &Header, &[u8]) -> Result<()>,
) -> Result<FileStats> {
    let started = Instant::now();
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    bar.set_length(bytes);
    let mut raw = BufReader::with_capacity(1 << 20, ReadProgress::new(file, bar.clone()));
    let gzipped = raw.fill_buf().with_context(|| format!("cannot read {}", path.display()))?.starts_with(&[0x1f, 0x8b]);
    let input: Box<dyn Read + Send> = if gzipped { Box::new(MultiGzDecoder::new(raw)) } else { Box::new(raw) };

    let (full_tx, full_rx) = mpsc::sync_channel::<std::io::Result<Vec<u8>>>(CHUNKS_IN_FLIGHT);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    let mut stats = FileStats {
        path: path.to_path_buf(),
        bytes,
        text_bytes: 0,
        gzipped,
        rows: 0,
        wall: Duration::ZERO,
        decode_busy: Duration::ZERO,
        parse_busy: Duration::ZERO,
    };
    let mut header: Option<Header> = None;
    let mut line_no = 0u64;

    let outcome = std::thread::scope(|scope| -> Result<()> {
        let reader = std::thread::Builder::new()
            .name("tsv-reader".into())
            .spawn_scoped(scope, move || produce_chunks(input, full_tx, empty_rx))
            .context("cannot start the reader thread")?;
        let result = (|| -> Result<()> {
            for chunk in full_rx.iter() {
                let chunk = chunk.with_context(|| format!("cannot read {}", path.display()))?;
                let busy = Instant::now();
                stats.text_bytes += chunk.len() as u64;
                let mut start = 0;
                while start < chunk.len() {
                    let end = memchr::memchr(b'\n', &chunk[start..]).map_or(chunk.len(), |i| start + i);
                    let line = strip_cr(&chunk[start..end]);
                    start = end + 1;
                    line_no += 1;
                    if line.is_empty() {
                        continue;
                    }
                    match &header {
                        Some(h) => {
                            stats.rows += 1;
                            on_row(line_no, h, line)?;
                        }
                        None => {
                            header = Some(Header::parse(dump, line).with_context(|| format!("{}:1", path.display()))?)
                        }
                    }
                }
                stats.parse_busy += busy.elapsed();
                // The reader may have finished; then the buffer is simply dropped.
                let _ = empty_tx.send(chunk);
            }
            Ok(())
        })();
        // Unblock the reader if we stopped early, then collect its timing.
        drop(full_rx);
        stats.decode_busy = reader.join().unwrap_or_default();
        result
    });
    outcome?;
    if header.is_none() {
        bail!("{}: empty file (no header row)", path.display());
    }
    stats.wall = started.elapsed();
    Ok(stats)
}

/// Reader thread: fill chunks with whole lines and send them; returns the time spent reading.
fn produce_chunks(
    mut input: Box<dyn Read + Send>,
    full: mpsc::SyncSender<std::io::Result<Vec<u8>>>,
    empty: mpsc::Receiver<Vec<u8>>,
) -> Duration {
    let mut busy = Duration::ZERO;
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let mut buf = empty.try_recv().unwrap_or_else(|_| Vec::with_capacity(CHUNK + (64 << 10)));
        buf.clear();
        buf.append(&mut carry);
        let t = Instant::now();
        let eof = match fill(&mut input, &mut buf) {
            Ok(eof) => eof,
            Err(e) => {
                let _ = full.send(Err(e));
                return busy + t.elapsed();
            }
        };
        busy += t.elapsed();
        if !eof {
            // Keep the partial last line for the next chunk. A line longer than a chunk just makes
            // this chunk bigger.
            match memchr::memrchr(b'\n', &buf) {
                Some(i) => carry.extend_from_slice(&buf[i + 1..]),
                None => {
                    carry = buf;
                    continue;
                }
            }
            let keep = buf.len() - carry.len();
            buf.truncate(keep);
        }
        if !buf.is_empty() && full.send(Ok(buf)).is_err() {
            return busy; // the parser stopped early
        }
        if eof {
            return busy;
        }
    }
}

/// Read into `buf` until it holds at least [`CHUNK`] bytes or the input ends (`Ok(true)`).
fn fill(input: &mut dyn Read, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    const STEP: usize = 256 << 10;
    while buf.len() < CHUNK {
        let len = buf.len();
        buf.resize(len + STEP, 0);
        let read = input.read(&mut buf[len..]);
        buf.truncate(len + *read.as_ref().unwrap_or(&0));
        match read {
            Ok(0) => return Ok(true),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(dump: Dump, line: &str) -> Header {
        Header::parse(dump, line.as_bytes()).unwrap()
    }

    const BASICS: &str =
        "tconst\ttitleType\tprimaryTitle\toriginalTitle\tisAdult\tstartYear\tendYear\truntimeMinutes\tgenres";

    #[test]
    fn ids_round_trip_only_in_canonical_form() {
        assert_eq!(parse_id(b"tt0111161", b"tt"), Some(111161));
        assert_eq!(parse_id(b"tt10872600", b"tt"), Some(10872600));
        assert_eq!(format_id("tt", 111161), "tt0111161");
        assert_eq!(format_id("tt", 10872600), "tt10872600");
        for bad in ["tt111161", "tt00111161", "nm0111161", "tt01111x1", "tt", "\\N", "tt1234567890"] {
            assert_eq!(parse_id(bad.as_bytes(), b"tt"), None, "{bad}");
        }
    }

    #[test]
    fn title_rows_map_nulls_and_keep_quotes() {
        let h = header(Dump::TitleBasics, BASICS);
        let row = TitleRow::parse(&h, b"tt0000009\tmovie\tMiss \"Jerry\"\tMiss Jerry\t0\t1894\t\\N\t\\N\t\\N").unwrap();
        assert_eq!(row.primary_title, "Miss \"Jerry\"");
        assert_eq!((row.start_year, row.runtime_minutes, row.genres), (Some(1894), None, None));
        let row = TitleRow::parse(&h, b"tt0000010\ttvMovie\tX\tX\t1\t\\N\t\\N\t95\tDrama,Crime").unwrap();
        assert_eq!(
            (row.is_adult, row.start_year, row.runtime_minutes, row.genres),
            (true, None, Some(95), Some("Drama,Crime"))
        );
    }

    #[test]
    fn malformed_title_rows_say_what_is_wrong() {
        let h = header(Dump::TitleBasics, BASICS);
        let cases: [(&[u8], &str); 6] = [
            (b"tt0000009\tmovie\tX\tX\t0\t1894\t\\N\t45", "expected 9 tab-separated fields, found 8"),
            (b"tt0000009\tmovie\tX\tX\t0\t1894\t\\N\t45\tDrama\textra", "expected 9 tab-separated fields, found 10"),
            (b"tt0000009\tmovie\tX\tX\t2014\t1894\t\\N\t45\tDrama", "`isAdult` is not 0 or 1"),
            (b"tt0000009\tmovie\tX\tX\t0\t1894\t\\N\tReality-TV\tDrama", "`runtimeMinutes` is not a whole number"),
            (b"tt0000009\tmovie\t\\N\tX\t0\t1894\t\\N\t45\tDrama", "`primaryTitle` is empty"),
            (b"tt0000009\tmovie\t\xff\tX\t0\t1894\t\\N\t45\tDrama", "`primaryTitle` is not valid UTF-8"),
        ];
        for (line, want) in cases {
            let err = TitleRow::parse(&h, line).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
    }

    #[test]
    fn header_columns_are_found_by_name() {
        let h = header(Dump::TitleRatings, "numVotes\ttconst\taverageRating");
        assert_eq!(
            RatingRow::parse(&h, b"42\ttt0000001\t5.7").unwrap(),
            RatingRow { tconst: 1, rating: 5.7, votes: 42 }
        );
        let h = Header::parse(Dump::TitleRatings, "\u{feff}tconst\taverageRating\tnumVotes\r".as_bytes()).unwrap();
        assert_eq!(
            RatingRow::parse(&h, b"tt0000002\t10.0\t7").unwrap(),
            RatingRow { tconst: 2, rating: 10.0, votes: 7 }
        );
        let err = Header::parse(Dump::TitleRatings, b"tconst\trating\tvotes").unwrap_err().to_string();
        assert!(err.contains("lacks column `averageRating`"), "{err}");
    }

    #[test]
    fn ratings_must_be_between_1_and_10() {
        let h = header(Dump::TitleRatings, "tconst\taverageRating\tnumVotes");
        for bad in ["0.5", "10.1", "NaN", "inf", "-3", "7,5", ""] {
            let line = format!("tt0000001\t{bad}\t10");
            assert!(RatingRow::parse(&h, line.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn principal_and_name_rows() {
        let h = header(Dump::TitlePrincipals, "tconst\tordering\tnconst\tcategory\tjob\tcharacters");
        let row = PrincipalRow::parse(&h, b"tt0000001\t10\tnm1588970\tself\t\\N\t[\"Self\"]").unwrap();
        assert_eq!(row, PrincipalRow { tconst: 1, ordering: 10, nconst: 1588970, category: "self" });
        assert!(PrincipalRow::parse(&h, b"tt0000001\t\\N\tnm1588970\tself\t\\N\t\\N").is_err());
        let h =
            header(Dump::NameBasics, "nconst\tprimaryName\tbirthYear\tdeathYear\tprimaryProfession\tknownForTitles");
        let row = NameRow::parse(&h, "nm0000001\tFred Astaire\t1899\t1987\tactor\ttt0050419".as_bytes()).unwrap();
        assert_eq!(row, NameRow { nconst: 1, primary_name: "Fred Astaire" });
    }

    /// Chunk boundaries, CRLF, a missing final newline and blank lines must not change what is read.
    #[test]
    fn reads_every_row_across_chunks_plain_and_gzipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("tconst\taverageRating\tnumVotes\r\n");
        let n = 500_000u32;
        for i in 1..=n {
            text.push_str(&format!("tt{i:07}\t{}.{}\t{}\r\n", 1 + i % 9, i % 10, i));
            if i == 5 {
                text.push_str("\r\n");
            }
        }
        text.pop();
        text.pop(); // no final line terminator
        assert!(text.len() > 2 * CHUNK, "the test must span several chunks");
        let plain = dir.path().join("r.tsv");
        std::fs::write(&plain, &text).unwrap();
        let gz = dir.path().join("r.tsv.gz");
        let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, text.as_bytes()).unwrap();
        enc.finish().unwrap();
        for path in [&plain, &gz] {
            let (mut sum, mut count, mut last_line) = (0u64, 0u32, 0u64);
            let stats = read_dump(path, Dump::TitleRatings, &ProgressBar::hidden(), |line_no, h, row| {
                let r = RatingRow::parse(h, row)?;
                count += 1;
                sum += u64::from(r.votes);
                assert_eq!(r.tconst, r.votes);
                last_line = line_no;
                Ok(())
            })
            .unwrap();
            assert_eq!(count, n);
            assert_eq!(stats.rows, u64::from(n));
            assert_eq!(sum, u64::from(n) * u64::from(n + 1) / 2);
            assert_eq!(last_line, u64::from(n) + 2, "line numbers count the header and the blank line");
            assert_eq!(stats.gzipped, path == &gz);
        }
    }

    #[test]
    fn truncated_gzip_is_an_error_not_a_short_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("tconst\taverageRating\tnumVotes\n");
        for i in 1..=50_000u32 {
            text.push_str(&format!("tt{i:07}\t5.0\t{i}\n"));
        }
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, text.as_bytes()).unwrap();
        let gz = enc.finish().unwrap();
        let path = dir.path().join("r.tsv.gz");
        std::fs::write(&path, &gz[..gz.len() / 2]).unwrap();
        let err = read_dump(&path, Dump::TitleRatings, &ProgressBar::hidden(), |_, _, _| Ok(())).unwrap_err();
        assert!(format!("{err:#}").contains("cannot read"), "{err:#}");
    }
}
