//! Request and response bodies of the HTTP API (the shapes `openapi.yaml` documents), and the parsing
//! of request parameters into validated values.

use super::catalog::{Filter, Why};
use super::error::ApiError;
use crate::head::Prediction;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most neighbours one request may ask for.
pub const MAX_K: usize = 100;
pub const DEFAULT_K: usize = 10;

/// A validated neighbour count.
#[derive(Debug, Clone, Copy)]
pub struct TopK(pub usize);

impl TopK {
    pub fn parse(k: Option<i64>) -> Result<Self, ApiError> {
        match k {
            None => Ok(TopK(DEFAULT_K)),
            Some(k) if (1..=MAX_K as i64).contains(&k) => Ok(TopK(k as usize)),
            Some(k) => Err(ApiError::invalid("k", format!("k must be between 1 and {MAX_K}, got {k}"))),
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
    pub fn parse(self) -> Result<Filter, ApiError> {
        if let (Some(lo), Some(hi)) = (self.min_year, self.max_year) {
            if lo > hi {
                return Err(ApiError::invalid("min_year", format!("min_year {lo} is after max_year {hi}")));
            }
        }
        if let Some(r) = self.min_rating {
            if !(0.0..=10.0).contains(&r) {
                return Err(ApiError::invalid("min_rating", "min_rating must be between 0 and 10"));
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

/// Query string of `GET /v1/movies/{id}/similar`: lists are comma-separated.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimilarQuery {
    pub k: Option<i64>,
    pub min_year: Option<i64>,
    pub max_year: Option<i64>,
    pub genres: Option<String>,
    pub exclude_genres: Option<String>,
    pub min_votes: Option<u64>,
    pub min_rating: Option<f64>,
    #[serde(default)]
    pub exact: bool,
}

fn split_list(v: Option<String>) -> Vec<String> {
    v.map(|s| s.split(',').map(str::to_string).collect()).unwrap_or_default()
}

impl SimilarQuery {
    pub fn parse(self) -> Result<(TopK, Filter, bool), ApiError> {
        let k = TopK::parse(self.k)?;
        let filter = FilterBody {
            min_year: self.min_year,
            max_year: self.max_year,
            genres: split_list(self.genres),
            exclude_genres: split_list(self.exclude_genres),
            min_votes: self.min_votes,
            min_rating: self.min_rating,
        }
        .parse()?;
        Ok((k, filter, self.exact))
    }
}

/// The filter fields of a JSON body (serde cannot combine `flatten` with `deny_unknown_fields`, so each
/// request lists them through this macro).
macro_rules! with_filter_fields {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            pub min_year: Option<i64>,
            pub max_year: Option<i64>,
            #[serde(default)]
            pub genres: Vec<String>,
            #[serde(default)]
            pub exclude_genres: Vec<String>,
            pub min_votes: Option<u64>,
            pub min_rating: Option<f64>,
        }

        impl $name {
            pub fn filter(&self) -> Result<Filter, ApiError> {
                FilterBody {
                    min_year: self.min_year,
                    max_year: self.max_year,
                    genres: self.genres.clone(),
                    exclude_genres: self.exclude_genres.clone(),
                    min_votes: self.min_votes,
                    min_rating: self.min_rating,
                }
                .parse()
            }
        }
    };
}

with_filter_fields! {
    /// `POST /v1/similar`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct SimilarRequest {
        /// A movie document (new or partial); only `title` is required.
        pub movie: Value,
        pub k: Option<i64>,
        #[serde(default)]
        pub exact: bool,
    }
}

with_filter_fields! {
    /// `POST /v1/recommend`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RecommendRequest {
        #[serde(default)]
        pub positive: Vec<String>,
        #[serde(default)]
        pub negative: Vec<String>,
        pub k: Option<i64>,
        #[serde(default)]
        pub strategy: Strategy,
        #[serde(default)]
        pub exact: bool,
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Positives' mean minus negatives' mean, then a nearest-neighbour search.
    #[default]
    Average,
    /// A linear classifier fitted on the examples ranks the whole catalogue.
    Linear,
}

/// `POST /v1/predict` and `POST /v1/embed`: one or many movie documents.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoviesRequest {
    pub movies: Vec<Value>,
}

/// `POST /v1/movies`: a movie in the catalog interchange format.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMovieRequest {
    pub id: String,
    pub rating: Option<f64>,
    pub votes: Option<u64>,
    pub movie: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    pub q: String,
    pub limit: Option<i64>,
}

/// A movie as the API returns it.
#[derive(Debug, Serialize)]
pub struct MovieView {
    pub id: String,
    pub title: String,
    pub year: Option<i64>,
    pub rating: Option<f64>,
    pub votes: Option<u64>,
    pub document: Value,
    pub predicted: Prediction,
    pub source: String,
}

/// A movie in a result list.
#[derive(Debug, Serialize)]
pub struct MovieSummary {
    pub id: String,
    pub title: String,
    pub year: Option<i64>,
    pub rating: Option<f64>,
    pub votes: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Neighbour {
    pub id: String,
    pub title: String,
    pub year: Option<i64>,
    pub rating: Option<f64>,
    /// Cosine similarity with the query (for `linear` recommendations: the decision function).
    pub score: f32,
    pub why: Why,
}

#[derive(Debug, Serialize)]
pub struct SimilarResponse {
    /// The movie the neighbours are similar to (absent for a posted document).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<MovieSummary>,
    pub k: usize,
    pub exact: bool,
    pub results: Vec<Neighbour>,
    /// For a posted document: its token count and whether it was truncated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct RecommendResponse {
    pub strategy: Strategy,
    pub k: usize,
    pub results: Vec<Neighbour>,
}

#[derive(Debug, Serialize)]
pub struct PredictItem {
    pub title: String,
    pub rating: f64,
    pub low: f64,
    pub high: f64,
    pub tokens: usize,
    pub truncated: bool,
}

#[derive(Debug, Serialize)]
pub struct PredictResponse {
    /// Nominal coverage of `[low, high]` (from held-out residuals).
    pub interval: f64,
    pub predictions: Vec<PredictItem>,
}

#[derive(Debug, Serialize)]
pub struct EmbedItem {
    pub vector: Vec<f32>,
    pub tokens: usize,
    pub truncated: bool,
}

#[derive(Debug, Serialize)]
pub struct EmbedResponse {
    pub model: String,
    pub dim: usize,
    pub max_tokens: usize,
    pub embeddings: Vec<EmbedItem>,
}

#[derive(Debug, Serialize)]
pub struct AddMovieResponse {
    /// `true` when the id was new, `false` when an existing movie was replaced.
    pub created: bool,
    pub movie: MovieView,
    pub tokens: usize,
    pub truncated: bool,
}

#[derive(Debug, Serialize)]
pub struct SearchResponse {
    pub query: String,
    pub results: Vec<MovieSummary>,
}
