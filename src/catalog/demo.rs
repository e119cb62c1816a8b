//! The demo catalog every fresh install can get: `data/movies.json` of the npm package
//! `vega-datasets@3.2.1` (3,201 US releases with IMDb rating and votes, director, major genre, MPAA
//! rating, running time, release date, distributor, source material, creative type, box office).
//!
//! The package is fetched with `npm pack` (no install, no global state) into a cache folder and read
//! from the tarball; the file's SHA-256 is pinned, so every install gets the same 2,987 movies.
//!
//! Mapping: reference fields where they fit (`title`, `genres` = [Major Genre], `release_year`,
//! `runtime_minutes`, `directors` = [Director]), the other columns as extra fields with snake_case
//! names (see [`map_film`]); unknown (null) values are left out. Ids are `vega-movies-<n>`, `n` the
//! 1-based position in the file (the file has no IMDb ids, and titles repeat: remakes). Films without
//! an IMDb rating are dropped.

use crate::catalog::jsonl::CatalogRecord;
use crate::movie::MovieDoc;
use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The npm package and version the demo comes from; also the `source` of its rows in the store.
pub const PACKAGE: &str = "vega-datasets@3.2.1";
const TARBALL: &str = "vega-datasets-3.2.1.tgz";
const MOVIES_PATH: &str = "package/data/movies.json";
/// SHA-256 of `data/movies.json` in that package.
pub const MOVIES_SHA256: &str = "e63c499759e3b07b49563e036f55290f87feb56def8703ec049ca305ab1523d3";

/// The year the data was compiled: its newest genuine release is *The Adventures of Tintin* (December
/// 2011). Release dates were stored with two-digit years, so films from before 1950 show up as
/// 2015–2046 (*Ben-Hur*, 1925, as "Dec 30 2025"): a year after this one belongs to the previous
/// century. (Comparing with today's date instead would leave 1915–1926 films in 2015–2026.)
pub const DATA_YEAR: i64 = 2011;

/// Get the package tarball into `cache_dir` with `npm pack` unless it is already there; its path.
pub fn fetch(cache_dir: &Path) -> Result<PathBuf> {
    let tarball = cache_dir.join(TARBALL);
    if tarball.is_file() {
        return Ok(tarball);
    }
    std::fs::create_dir_all(cache_dir).with_context(|| format!("cannot create {}", cache_dir.display()))?;
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let output = std::process::Command::new(npm)
        .args(["pack", PACKAGE, "--silent", "--pack-destination", "."])
        .current_dir(cache_dir)
        .output();
    let output = match output {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("npm not found: install Node.js (it includes npm) to fetch the demo catalog {PACKAGE}")
        }
        other => other.context("cannot run npm")?,
    };
    if !output.status.success() || !tarball.is_file() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = last[last.len().saturating_sub(3)..].join(" | ");
        bail!("`npm pack {PACKAGE}` failed ({}): {tail}", output.status);
    }
    Ok(tarball)
}

/// Read `data/movies.json` out of the package tarball and check it is the pinned file.
pub fn read_movies_json(tarball: &Path) -> Result<Vec<u8>> {
    let file = std::fs::File::open(tarball).with_context(|| format!("cannot open {}", tarball.display()))?;
    let mut tar = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
    let bytes = find_in_tar(&mut tar, MOVIES_PATH)
        .with_context(|| format!("cannot read {}", tarball.display()))?
        .with_context(|| format!("{} has no {MOVIES_PATH}", tarball.display()))?;
    let sha = crate::hash::sha256_hex(&bytes);
    if sha != MOVIES_SHA256 {
        bail!(
            "{MOVIES_PATH} in {} is not the expected file (sha256 {sha}); delete the file and run again",
            tarball.display()
        );
    }
    Ok(bytes)
}

/// The contents of the regular file `wanted` in a tar stream (ustar, with pax path records).
fn find_in_tar(tar: &mut impl Read, wanted: &str) -> std::io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 512];
    let mut pax_path: Option<String> = None;
    loop {
        if let Err(e) = tar.read_exact(&mut header) {
            return if e.kind() == std::io::ErrorKind::UnexpectedEof { Ok(None) } else { Err(e) };
        }
        if header.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let field = |range: std::ops::Range<usize>| {
            let raw = &header[range];
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            String::from_utf8_lossy(&raw[..end]).into_owned()
        };
        let size = u64::from_str_radix(field(124..136).trim(), 8)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad tar header"))?;
        let mut name = field(0..100);
        if &header[257..262] == b"ustar" {
            let prefix = field(345..500);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        if let Some(p) = pax_path.take() {
            name = p;
        }
        let mut body = Vec::new();
        let padded = size.div_ceil(512) * 512;
        let typeflag = header[156];
        let keep = typeflag == b'x' || ((typeflag == b'0' || typeflag == 0) && name == wanted);
        if keep {
            tar.take(size).read_to_end(&mut body)?;
            std::io::copy(&mut tar.take(padded - size), &mut std::io::sink())?;
        } else {
            std::io::copy(&mut tar.take(padded), &mut std::io::sink())?;
        }
        if typeflag == b'x' {
            // Records "<len> key=value\n"; only the path matters here.
            pax_path = String::from_utf8_lossy(&body)
                .lines()
                .filter_map(|l| l.split_once(' ').map(|(_, kv)| kv))
                .find_map(|kv| kv.strip_prefix("path=").map(str::to_string));
        } else if keep {
            return Ok(Some(body));
        }
    }
}

/// Why a film of the demo file was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilmError {
    #[error("a film must be a JSON object")]
    NotAnObject,
    #[error("no title")]
    NoTitle,
    #[error("`{0}` has an unexpected value")]
    BadField(&'static str),
    #[error("`Release Date` is not like \"Jun 12 1998\": {0:?}")]
    BadDate(String),
    #[error("movie document: {0}")]
    Doc(#[from] crate::movie::DocError),
}

/// The films of `movies.json`, in file order.
pub fn parse_films(bytes: &[u8]) -> Result<Vec<Value>> {
    match serde_json::from_slice(bytes).context("movies.json is not valid JSON")? {
        Value::Array(films) => Ok(films),
        _ => bail!("movies.json is not a JSON array"),
    }
}

/// Map one film (`index` 0-based in the file) to a catalog record; `Ok(None)` when it has no IMDb
/// rating (the demo keeps rated films only).
///
/// Extra fields, in this order: `release_date` (ISO 8601, year repaired), `mpaa_rating`,
/// `distributor`, `source_material` (the file's "Source": "Original Screenplay", "Based on
/// Book/Short Story", ...), `creative_type`, `production_budget_usd`, `us_gross_usd`,
/// `worldwide_gross_usd`, `us_dvd_sales_usd`, `rotten_tomatoes_rating`.
pub fn map_film(index: usize, film: &Value) -> Result<Option<CatalogRecord>, FilmError> {
    let film = film.as_object().ok_or(FilmError::NotAnObject)?;
    // A few titles are JSON numbers ("1941", "2012", "300"): they are still titles.
    let title = match film.get("Title") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(FilmError::NoTitle),
    };
    let rating = match film.get("IMDB Rating") {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v.as_f64().filter(|r| (1.0..=10.0).contains(r)).ok_or(FilmError::BadField("IMDB Rating"))?,
    };
    let votes = match film.get("IMDB Votes") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or(FilmError::BadField("IMDB Votes"))?),
    };

    let mut doc = Map::new();
    doc.insert("title".into(), Value::String(title));
    if let Some(genre) = string(film, "Major Genre")? {
        doc.insert("genres".into(), Value::Array(vec![genre]));
    }
    let date = match film.get("Release Date") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(parse_release_date(s)?),
        Some(_) => return Err(FilmError::BadField("Release Date")),
    };
    if let Some((year, _, _)) = date {
        doc.insert("release_year".into(), year.into());
    }
    if let Some(minutes) = number(film, "Running Time min")? {
        doc.insert("runtime_minutes".into(), minutes);
    }
    if let Some(director) = string(film, "Director")? {
        doc.insert("directors".into(), Value::Array(vec![director]));
    }
    if let Some((y, m, d)) = date {
        doc.insert("release_date".into(), Value::String(format!("{y:04}-{m:02}-{d:02}")));
    }
    for (from, to) in [
        ("MPAA Rating", "mpaa_rating"),
        ("Distributor", "distributor"),
        ("Source", "source_material"),
        ("Creative Type", "creative_type"),
    ] {
        if let Some(v) = string(film, from)? {
            doc.insert(to.into(), v);
        }
    }
    for (from, to) in [
        ("Production Budget", "production_budget_usd"),
        ("US Gross", "us_gross_usd"),
        ("Worldwide Gross", "worldwide_gross_usd"),
        ("US DVD Sales", "us_dvd_sales_usd"),
        ("Rotten Tomatoes Rating", "rotten_tomatoes_rating"),
    ] {
        if let Some(v) = number(film, from)? {
            doc.insert(to.into(), v);
        }
    }
    let movie = MovieDoc::from_value(Value::Object(doc))?;
    Ok(Some(CatalogRecord { id: format!("vega-movies-{}", index + 1), rating: Some(rating), votes, movie }))
}

fn string(film: &Map<String, Value>, key: &'static str) -> Result<Option<Value>, FilmError> {
    match film.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(v @ Value::String(_)) => Ok(Some(v.clone())),
        Some(_) => Err(FilmError::BadField(key)),
    }
}

/// A non-negative whole number (money, minutes, percent).
fn number(film: &Map<String, Value>, key: &'static str) -> Result<Option<Value>, FilmError> {
    match film.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) if v.is_u64() => Ok(Some(v.clone())),
        Some(_) => Err(FilmError::BadField(key)),
    }
}

/// "Jun 12 1998" → (1998, 6, 12), with the two-digit-year error repaired (see [`DATA_YEAR`]).
pub fn parse_release_date(s: &str) -> Result<(i64, u32, u32), FilmError> {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let bad = || FilmError::BadDate(s.to_string());
    let mut parts = s.split(' ');
    let (Some(mon), Some(day), Some(year), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let month = MONTHS.iter().position(|m| *m == mon).ok_or_else(bad)? as u32 + 1;
    let day: u32 = day.parse().ok().filter(|d| (1..=31).contains(d)).ok_or_else(bad)?;
    let mut year: i64 = year.parse().ok().filter(|_| year.len() == 4).ok_or_else(bad)?;
    if year > DATA_YEAR {
        year -= 100;
    }
    Ok((year, month, day))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn future_years_belong_to_the_previous_century() {
        assert_eq!(parse_release_date("Dec 30 2025").unwrap(), (1925, 12, 30));
        assert_eq!(parse_release_date("Dec 23 2011").unwrap(), (2011, 12, 23));
        assert_eq!(parse_release_date("Jun 12 1998").unwrap(), (1998, 6, 12));
        for bad in ["12 Jun 1998", "Jun 12 98", "Jun 32 1998", "June 12 1998", ""] {
            assert!(parse_release_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn maps_reference_fields_first_and_the_rest_as_extras() {
        let film = json!({
            "Title": "The Best Years of Our Lives", "US Gross": 23650000, "Worldwide Gross": 23650000,
            "US DVD Sales": null, "Production Budget": 2100000, "Release Date": "Nov 21 2046",
            "MPAA Rating": null, "Running Time min": 172, "Distributor": "RKO Radio Pictures",
            "Source": "Based on Book/Short Story", "Major Genre": "Drama", "Creative Type": "Historical Fiction",
            "Director": "William Wyler", "Rotten Tomatoes Rating": 97, "IMDB Rating": 8.2, "IMDB Votes": 17338
        });
        let rec = map_film(41, &film).unwrap().unwrap();
        assert_eq!(rec.id, "vega-movies-42");
        assert_eq!((rec.rating, rec.votes), (Some(8.2), Some(17338)));
        let keys: Vec<&str> = rec.movie.fields().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "title",
                "genres",
                "release_year",
                "runtime_minutes",
                "directors",
                "release_date",
                "distributor",
                "source_material",
                "creative_type",
                "production_budget_usd",
                "us_gross_usd",
                "worldwide_gross_usd",
                "rotten_tomatoes_rating"
            ]
        );
        assert_eq!(rec.movie.release_year(), Some(1946));
        assert_eq!(rec.movie.fields()["release_date"], "1946-11-21");
        assert_eq!(rec.movie.list("directors"), ["William Wyler"]);
    }

    #[test]
    fn unrated_films_are_dropped_and_numeric_titles_kept() {
        assert_eq!(map_film(0, &json!({"Title": "X", "IMDB Rating": null})).unwrap(), None);
        let rec = map_film(0, &json!({"Title": 1941, "IMDB Rating": 5.8, "IMDB Votes": 14000})).unwrap().unwrap();
        assert_eq!(rec.movie.title(), "1941");
        assert_eq!(map_film(0, &json!({"Title": null, "IMDB Rating": 6.6})).unwrap_err(), FilmError::NoTitle);
    }
}
