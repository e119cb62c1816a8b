//! The catalog JSONL interchange format: one movie per line,
//! `{"id": "tt0499549", "rating": 7.9, "votes": 886204, "movie": {...}}`.
//! Unknown top-level keys are ignored.

use crate::movie::{DocError, MovieDoc};
use serde_json::Value;
use std::io::BufRead;
use std::path::Path;

/// One catalog line, parsed and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogRecord {
    pub id: String,
    /// Average IMDb user rating, 1–10, when the source has one.
    pub rating: Option<f64>,
    pub votes: Option<u64>,
    pub movie: MovieDoc,
}

/// Why one catalog line was rejected.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("a catalog line must be a JSON object")]
    NotAnObject,
    #[error("`id` must be a non-empty string")]
    BadId,
    #[error("`rating` must be a number from 1 to 10 or null")]
    BadRating,
    #[error("`votes` must be a non-negative integer or null")]
    BadVotes,
    #[error("`movie` is required")]
    MissingMovie,
    #[error("`movie`: {0}")]
    Movie(#[from] DocError),
}

impl CatalogRecord {
    /// Parse one line of a catalog file.
    pub fn parse_line(line: &str) -> Result<Self, RecordError> {
        let value: Value = serde_json::from_str(line)?;
        let Value::Object(mut obj) = value else { return Err(RecordError::NotAnObject) };
        let id = match obj.get("id") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            _ => return Err(RecordError::BadId),
        };
        let rating = match obj.get("rating") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_f64() {
                Some(r) if (1.0..=10.0).contains(&r) => Some(r),
                _ => return Err(RecordError::BadRating),
            },
        };
        let votes = match obj.get("votes") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or(RecordError::BadVotes)?),
        };
        let movie = MovieDoc::from_value(obj.remove("movie").ok_or(RecordError::MissingMovie)?)?;
        Ok(CatalogRecord { id, rating, votes, movie })
    }
}

/// A line that could not be parsed, with where it was.
#[derive(Debug)]
pub struct BadLine {
    pub line: usize,
    pub error: RecordError,
}

/// Iterate over a catalog file's records: `Ok` for good lines, `Err(BadLine)` for bad ones, so callers
/// choose between skipping (and counting) and failing. Blank lines are ignored.
pub fn read_records(
    path: &Path,
) -> std::io::Result<impl Iterator<Item = std::io::Result<Result<CatalogRecord, BadLine>>>> {
    let file = std::fs::File::open(path)?;
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    Ok(reader.lines().enumerate().filter_map(|(i, line)| match line {
        Err(e) => Some(Err(e)),
        Ok(l) if l.trim().is_empty() => None,
        Ok(l) => Some(Ok(CatalogRecord::parse_line(&l).map_err(|error| BadLine { line: i + 1, error }))),
    }))
}
