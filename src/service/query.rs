//! Validated request values every transport shares: a neighbour count and a filter.

use super::live::Filter;
use super::ServiceError;

/// Most neighbours one request may ask for.
pub const MAX_K: usize = 100;
pub const DEFAULT_K: usize = 10;

/// A validated neighbour count.
#[derive(Debug, Clone, Copy)]
pub struct TopK(pub usize);

impl TopK {
    pub fn parse(k: Option<i64>) -> Result<Self, ServiceError> {
        match k {
            None => Ok(TopK(DEFAULT_K)),
            Some(k) if (1..=MAX_K as i64).contains(&k) => Ok(TopK(k as usize)),
            Some(k) => Err(ServiceError::invalid("k", format!("k must be between 1 and {MAX_K}, got {k}"))),
        }
    }
}

/// Most characters in a movie id.
pub const MAX_ID_CHARS: usize = 200;

/// A movie id as an add takes it: at most [`MAX_ID_CHARS`] characters, not blank, no control
/// characters (the spec's `maxLength` and `pattern`); stored trimmed.
pub fn parse_movie_id(id: &str) -> Result<String, ServiceError> {
    let too_long = id.chars().count() > MAX_ID_CHARS;
    let id = id.trim();
    if id.is_empty() || too_long || id.chars().any(char::is_control) {
        return Err(ServiceError::invalid("id", format!("id must be 1 to {MAX_ID_CHARS} printable characters")));
    }
    Ok(id.to_string())
}

/// Filter parameters before validation.
#[derive(Debug, Default)]
pub struct FilterBody {
    pub min_year: Option<i64>,
    pub max_year: Option<i64>,
    pub genres: Vec<String>,
    pub exclude_genres: Vec<String>,
    pub min_votes: Option<u64>,
    pub min_rating: Option<f64>,
}

impl FilterBody {
    pub fn parse(self) -> Result<Filter, ServiceError> {
        // `min_year` after `max_year` is an empty range (no results), not an error: the spec cannot
        // state a bound between two fields, and the server enforces nothing the spec does not state.
        if let Some(r) = self.min_rating {
            if !(0.0..=10.0).contains(&r) {
                return Err(ServiceError::invalid("min_rating", "min_rating must be between 0 and 10"));
            }
        }
        let lower = |v: Vec<String>| v.into_iter().map(|g| g.trim().to_lowercase()).filter(|g| !g.is_empty()).collect();
        Ok(Filter {
            min_year: self.min_year,
            max_year: self.max_year,
            genres: lower(self.genres),
            exclude_genres: lower(self.exclude_genres),
            min_votes: self.min_votes,
            min_rating: self.min_rating,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_by_characters() {
        assert_eq!(parse_movie_id("  tt1 ").unwrap(), "tt1");
        assert!(parse_movie_id(&"é".repeat(200)).is_ok(), "200 characters (400 bytes) are allowed");
        assert!(parse_movie_id(&"é".repeat(201)).is_err());
        assert!(parse_movie_id(&format!(" {}", "a".repeat(200))).is_err(), "the length counts before trimming");
        assert!(parse_movie_id("a\u{7}b").is_err());
        assert!(parse_movie_id("a\u{85}b").is_err());
        assert!(parse_movie_id(" \t ").is_err());
    }

    #[test]
    fn an_empty_year_range_is_no_error() {
        let f = FilterBody { min_year: Some(2001), max_year: Some(1999), ..Default::default() }.parse().unwrap();
        assert_eq!((f.min_year, f.max_year), (Some(2001), Some(1999)));
    }
}
