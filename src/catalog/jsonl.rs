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
    #[error("not valid UTF-8")]
    NotUtf8,
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
    Ok(records(std::io::BufReader::with_capacity(1 << 20, file)))
}

/// [`read_records`] over any reader. A line that is not UTF-8 is a bad line, not a read error.
pub fn records<R: BufRead>(reader: R) -> impl Iterator<Item = std::io::Result<Result<CatalogRecord, BadLine>>> {
    reader.split(b'\n').enumerate().filter_map(|(i, line)| {
        let bytes = match line {
            Err(e) => return Some(Err(e)),
            Ok(bytes) => bytes,
        };
        let parsed = match std::str::from_utf8(&bytes) {
            Err(_) => Err(RecordError::NotUtf8),
            Ok(l) if l.trim().is_empty() => return None,
            Ok(l) => CatalogRecord::parse_line(l),
        };
        Some(Ok(parsed.map_err(|error| BadLine { line: i + 1, error })))
    })
}

impl CatalogRecord {
    /// The record as one catalog line (no newline): the inverse of [`CatalogRecord::parse_line`].
    pub fn to_line(&self) -> String {
        let mut obj = serde_json::Map::with_capacity(4);
        obj.insert("id".into(), Value::String(self.id.clone()));
        obj.insert("rating".into(), self.rating.map_or(Value::Null, Value::from));
        obj.insert("votes".into(), self.votes.map_or(Value::Null, Value::from));
        obj.insert("movie".into(), serde_json::to_value(&self.movie).expect("JSON values always serialise"));
        Value::Object(obj).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_round_trips() {
        let line =
            r#"{"id": "tt1", "rating": 7.9, "votes": 12, "movie": {"title": "Été", "genres": null, "extra": [1]}}"#;
        let rec = CatalogRecord::parse_line(line).unwrap();
        assert_eq!(CatalogRecord::parse_line(&rec.to_line()).unwrap(), rec);
        assert!(rec.to_line().contains("Été"), "non-ASCII is kept as is");
    }

    #[test]
    fn bad_utf8_and_crlf_lines_are_reported_not_fatal() {
        let text = b"{\"id\": \"a\", \"movie\": {\"title\": \"A\"}}\r\n\xff\xfe\n\n{\"id\": \"b\", \"movie\": {\"title\": \"B\"}}";
        let items: Vec<_> = records(&text[..]).map(|r| r.unwrap()).collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].as_ref().unwrap().id, "a");
        let bad = items[1].as_ref().unwrap_err();
        assert_eq!((bad.line, bad.error.to_string()), (2, "not valid UTF-8".to_string()));
        assert_eq!(items[2].as_ref().unwrap().id, "b");
    }
}
