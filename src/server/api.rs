//! Request bodies and query strings of the HTTP API (the shapes `openapi.yaml` documents), turned into
//! the service's validated values. The response bodies are the service's results
//! ([`crate::service::results`]), serialised as they are.

use crate::service::query::{Controls, ControlsBody, FilterBody, TopK};
use crate::service::{Filter, ServiceError, Strategy};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Body fields the spec types as a plain (not nullable) value: absent is `None`, `null` is refused
/// (`#[serde(default, deserialize_with = "present")]`).
pub(super) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A JSON integer as JSON Schema defines one: `5` and `5.0` alike (a number with no fraction), within
/// the target type's range; fractions and anything beyond 64 bits are refused.
fn to_integer<T: TryFrom<i128>>(n: &serde_json::Number) -> Result<T, String> {
    let wide: Option<i128> = match (n.as_i64(), n.as_u64(), n.as_f64()) {
        (Some(i), _, _) => Some(i.into()),
        (_, Some(u), _) => Some(u.into()),
        // Integral floats within ±2^63 (beyond that a float is not an exact integer anyway).
        (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => Some(f as i128),
        _ => None,
    };
    let wide = wide.ok_or_else(|| format!("invalid value: {n}, expected an integer"))?;
    T::try_from(wide).map_err(|_| format!("invalid value: {n}, out of range"))
}

/// [`to_integer`] for a plain integer field: absent is `None`; `null`, strings and fractions are refused.
pub(super) fn integer<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D) -> Result<Option<T>, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    to_integer(&n).map(Some).map_err(serde::de::Error::custom)
}

/// [`to_integer`] for a `[integer, "null"]` field.
fn nullable_integer<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D) -> Result<Option<T>, D::Error> {
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => to_integer(&n).map(Some).map_err(serde::de::Error::custom),
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
    /// The strip controls ([`ControlsBody::from_query`]): `exclude` is a comma list.
    pub exclude: Option<String>,
    pub diversity: Option<f64>,
    pub offset: Option<i64>,
    pub min_score: Option<f64>,
    pub max_per: Option<String>,
    pub per_group: Option<i64>,
}

fn split_list(v: Option<String>) -> Vec<String> {
    v.map(|s| s.split(',').map(str::to_string).collect()).unwrap_or_default()
}

impl SimilarQuery {
    pub fn parse(self) -> Result<(TopK, Filter, bool, Controls), ServiceError> {
        let k = TopK::parse(self.k)?;
        let controls = ControlsBody::from_query(
            self.exclude.as_deref(),
            self.diversity,
            self.offset,
            self.min_score,
            self.max_per,
            self.per_group,
        )
        .parse()?;
        let filter = FilterBody {
            min_year: self.min_year,
            max_year: self.max_year,
            genres: split_list(self.genres),
            exclude_genres: split_list(self.exclude_genres),
            min_votes: self.min_votes,
            min_rating: self.min_rating,
        }
        .parse()?;
        Ok((k, filter, self.exact, controls))
    }
}

/// The filter fields and the strip controls of a JSON body (serde cannot combine `flatten` with
/// `deny_unknown_fields`, so each request lists them through this macro): `filter()` and `controls()`
/// validate them ([`FilterBody::parse`], [`ControlsBody::parse`]).
macro_rules! with_filter_fields {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            #[serde(default, deserialize_with = "integer")]
            pub min_year: Option<i64>,
            #[serde(default, deserialize_with = "integer")]
            pub max_year: Option<i64>,
            #[serde(default)]
            pub genres: Vec<String>,
            #[serde(default)]
            pub exclude_genres: Vec<String>,
            #[serde(default, deserialize_with = "integer")]
            pub min_votes: Option<u64>,
            #[serde(default, deserialize_with = "present")]
            pub min_rating: Option<f64>,
            #[serde(default)]
            pub exclude: Vec<String>,
            #[serde(default, deserialize_with = "present")]
            pub diversity: Option<f64>,
            #[serde(default, deserialize_with = "integer")]
            pub offset: Option<i64>,
            #[serde(default, deserialize_with = "present")]
            pub min_score: Option<f64>,
            #[serde(default, deserialize_with = "present")]
            pub max_per: Option<String>,
            #[serde(default, deserialize_with = "integer")]
            pub per_group: Option<i64>,
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

            pub fn controls(&mut self) -> Result<Controls, ServiceError> {
                ControlsBody {
                    exclude: std::mem::take(&mut self.exclude),
                    diversity: self.diversity,
                    offset: self.offset,
                    min_score: self.min_score,
                    max_per: self.max_per.take(),
                    per_group: self.per_group,
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
        #[serde(default, deserialize_with = "integer")]
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
        /// Liked examples: catalog ids (strings) or movie documents (objects).
        #[serde(default)]
        pub positive: Vec<Value>,
        #[serde(default)]
        pub negative: Vec<Value>,
        #[serde(default, deserialize_with = "integer")]
        pub k: Option<i64>,
        #[serde(default)]
        pub strategy: Strategy,
        #[serde(default)]
        pub exact: bool,
    }
}

/// Query string of `GET /v1/query`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskQuery {
    pub q: String,
    pub k: Option<i64>,
    /// The strip controls, as on `GET /v1/movies/{id}/similar` (`exclude` a comma list).
    pub exclude: Option<String>,
    pub diversity: Option<f64>,
    pub offset: Option<i64>,
    pub min_score: Option<f64>,
    pub max_per: Option<String>,
    pub per_group: Option<i64>,
}

impl AskQuery {
    /// `k` and the strip controls, validated (the text is read by the service).
    pub fn parse(&mut self) -> Result<(TopK, Controls), ServiceError> {
        let controls = ControlsBody::from_query(
            self.exclude.as_deref(),
            self.diversity,
            self.offset,
            self.min_score,
            self.max_per.take(),
            self.per_group,
        )
        .parse()?;
        Ok((TopK::parse(self.k)?, controls))
    }
}

with_filter_fields! {
    /// `POST /v1/query`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct AskRequest {
        pub q: String,
        #[serde(default, deserialize_with = "integer")]
        pub k: Option<i64>,
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
    #[serde(default, deserialize_with = "nullable_integer")]
    pub votes: Option<u64>,
    pub movie: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    pub q: String,
    pub limit: Option<i64>,
}

/// Query string of `GET /v1/map.png`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapPngQuery {
    /// Pixels per side.
    pub size: Option<i64>,
    /// `rating` or `residual`.
    pub color: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn similar(body: Value) -> Result<SimilarRequest, String> {
        serde_json::from_value(body).map_err(|e| e.to_string())
    }

    #[test]
    fn plain_fields_refuse_null_and_integers_follow_json_schema() {
        assert!(similar(json!({"movie": {"title": "x"}})).unwrap().k.is_none());
        for field in ["k", "min_year", "max_year", "min_votes", "min_rating"] {
            let err = similar(json!({"movie": {"title": "x"}, field: null})).unwrap_err();
            assert!(err.contains("null") || err.contains("invalid"), "{field}: {err}");
        }
        // 5.0 is an integer in JSON Schema; 5.5, "5", 2^64 and -1 votes are not accepted.
        let r = similar(json!({"movie": {"title": "x"}, "k": 5.0, "min_votes": 3.0})).unwrap();
        assert_eq!((r.k, r.min_votes), (Some(5), Some(3)));
        assert!(similar(json!({"movie": {"title": "x"}, "k": 5.5})).is_err());
        assert!(similar(json!({"movie": {"title": "x"}, "k": "5"})).is_err());
        assert!(similar(json!({"movie": {"title": "x"}, "min_votes": -1})).is_err());
        let huge: Value =
            serde_json::from_str(r#"{"movie": {"title": "x"}, "min_year": 18446744073709551616}"#).unwrap();
        assert!(similar(huge).is_err());
        let big_u64: Value =
            serde_json::from_str(r#"{"movie": {"title": "x"}, "min_year": 18446744073709551615}"#).unwrap();
        assert!(similar(big_u64).unwrap_err().contains("out of range"));
    }

    #[test]
    fn votes_may_be_null_or_integral() {
        let add: AddMovieRequest =
            serde_json::from_value(json!({"id": "a", "votes": null, "movie": {"title": "x"}})).unwrap();
        assert_eq!(add.votes, None);
        let add: AddMovieRequest =
            serde_json::from_value(json!({"id": "a", "votes": 7.0, "movie": {"title": "x"}})).unwrap();
        assert_eq!(add.votes, Some(7));
    }
}
