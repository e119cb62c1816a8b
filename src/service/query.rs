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
        if let (Some(lo), Some(hi)) = (self.min_year, self.max_year) {
            if lo > hi {
                return Err(ServiceError::invalid("min_year", format!("min_year {lo} is after max_year {hi}")));
            }
        }
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

