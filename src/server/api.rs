//! Request bodies and query strings of the HTTP API (the shapes `openapi.yaml` documents), turned into
//! the service's validated values. The response bodies are the service's results
//! ([`crate::service::results`]), serialised as they are.

use crate::service::query::{FilterBody, TopK};
use crate::service::{Filter, ServiceError, Strategy};
use serde::Deserialize;
use serde_json::Value;

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
    pub fn parse(self) -> Result<(TopK, Filter, bool), ServiceError> {
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
            pub fn filter(&self) -> Result<Filter, ServiceError> {
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

