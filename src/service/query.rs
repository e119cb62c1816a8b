//! Validated request values every transport shares: a neighbour count, a filter, and the controls
//! of a recommendation strip ([`Controls`]: exclude, diversity, paging, a score floor, one per group).

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

/// Most ids one request may exclude (a POST body's list, or a query string's comma list).
pub const MAX_EXCLUDE: usize = 1000;
/// Most results a page may skip (`offset`): an answer reaches at most `MAX_OFFSET + MAX_K` deep.
pub const MAX_OFFSET: usize = 100;
/// Most movies of one group (`per_group`).
pub const MAX_PER_GROUP: usize = 100;
/// Candidates `diversity` and `max_per` choose from: the best this many movies that pass the filter
/// and `exclude`, the same for every page (so pages of one strip never repeat a movie). A page that
/// reaches past what these candidates give is short (or empty): a normal answer.
pub const POOL: usize = 100;

/// What `max_per` limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// A movie counts once for each of its directors; a movie without directors is in no group.
    Director,
    /// Movies of one series (see [`crate::service::live::series_key`]).
    Series,
}

/// The controls of a recommendation strip, validated: every transport and every similarity route
/// (by id, by document, recommend) takes these, and the search core applies them
/// ([`crate::service::LiveCatalog::search`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Controls {
    /// Ids never returned (unknown ids exclude nothing); the answer still has `k` results when `k`
    /// others pass.
    pub exclude: Vec<String>,
    /// 0 to 1: 0 is relevance alone (exactly the answer without controls), more trades relevance
    /// for results unlike those already chosen (maximal marginal relevance over [`POOL`] candidates).
    pub diversity: f32,
    /// Results skipped before the page.
    pub offset: usize,
    /// Results scoring below this are left out (the answer may then be shorter than `k`, or empty).
    pub min_score: Option<f32>,
    /// At most this many results per group.
    pub max_per: Option<(GroupBy, usize)>,
}

impl Controls {
    /// Whether results are chosen among [`POOL`] candidates (diversity or one per group) rather than
    /// taken in order of relevance.
    pub fn chooses(&self) -> bool {
        self.diversity > 0.0 || self.max_per.is_some()
    }

    /// How many of the best candidates a search must find for a page of `k`.
    pub fn wanted(&self, k: usize) -> usize {
        if self.chooses() {
            POOL
        } else {
            self.offset + k
        }
    }
}

/// Strip controls before validation, in either form a transport receives them (a JSON body's
/// fields, or a query string's, whose `exclude` is a comma list: [`ControlsBody::from_query`]).
#[derive(Debug, Default, Clone)]
pub struct ControlsBody {
    pub exclude: Vec<String>,
    pub diversity: Option<f64>,
    pub offset: Option<i64>,
    pub min_score: Option<f64>,
    pub max_per: Option<String>,
    pub per_group: Option<i64>,
}

impl ControlsBody {
    /// The query-string form: `exclude` a comma-separated list (empty items ignored).
    pub fn from_query(
        exclude: Option<&str>,
        diversity: Option<f64>,
        offset: Option<i64>,
        min_score: Option<f64>,
        max_per: Option<String>,
        per_group: Option<i64>,
    ) -> ControlsBody {
        let exclude = exclude
            .map(|s| s.split(',').filter(|id| !id.trim().is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        ControlsBody { exclude, diversity, offset, min_score, max_per, per_group }
    }

    /// The one validation of every form. `per_group` without `max_per` is ignored (the default group
    /// size of `max_per` is 1).
    pub fn parse(self) -> Result<Controls, ServiceError> {
        if self.exclude.len() > MAX_EXCLUDE {
            return Err(ServiceError::invalid(
                "exclude",
                format!("exclude holds at most {MAX_EXCLUDE} ids, got {}", self.exclude.len()),
            ));
        }
        let exclude = self
            .exclude
            .iter()
            .map(|id| {
                parse_movie_id(id).map_err(|_| ServiceError::invalid("exclude", format!("exclude: {}", bad_id(id))))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let diversity = match self.diversity {
            None => 0.0,
            Some(d) if (0.0..=1.0).contains(&d) => d as f32,
            Some(d) => {
                return Err(ServiceError::invalid("diversity", format!("diversity must be between 0 and 1, got {d}")))
            }
        };
        let offset = match self.offset {
            None => 0,
            Some(o) if (0..=MAX_OFFSET as i64).contains(&o) => o as usize,
            Some(o) => {
                return Err(ServiceError::invalid(
                    "offset",
                    format!("offset must be between 0 and {MAX_OFFSET}, got {o}"),
                ))
            }
        };
        let min_score = match self.min_score {
            None => None,
            Some(m) if (-1.0..=1.0).contains(&m) => Some(m as f32),
            Some(m) => {
                return Err(ServiceError::invalid("min_score", format!("min_score must be between -1 and 1, got {m}")))
            }
        };
        let group = match self.max_per.as_deref() {
            None => None,
            Some("director") => Some(GroupBy::Director),
            Some("series") => Some(GroupBy::Series),
            Some(other) => {
                return Err(ServiceError::invalid(
                    "max_per",
                    format!(
                        "max_per must be `director` or `series`, got `{}`",
                        other.chars().take(40).collect::<String>()
                    ),
                ))
            }
        };
        let per_group = match self.per_group {
            None => 1,
            Some(n) if (1..=MAX_PER_GROUP as i64).contains(&n) => n as usize,
            Some(n) => {
                return Err(ServiceError::invalid(
                    "per_group",
                    format!("per_group must be between 1 and {MAX_PER_GROUP}, got {n}"),
                ))
            }
        };
        Ok(Controls { exclude, diversity, offset, min_score, max_per: group.map(|g| (g, per_group)) })
    }
}

/// Why an id is refused, without echoing a long one whole.
fn bad_id(id: &str) -> String {
    let shown: String = id.chars().take(40).filter(|c| !c.is_control()).collect();
    format!("`{shown}` is not a movie id (1 to {MAX_ID_CHARS} printable characters)")
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

    fn controls(body: ControlsBody) -> Result<Controls, String> {
        body.parse().map_err(|e| e.to_string())
    }

    #[test]
    fn controls_default_to_none_and_state_their_bounds() {
        let plain = controls(ControlsBody::default()).unwrap();
        assert_eq!(plain, Controls::default());
        assert!(!plain.chooses() && plain.wanted(10) == 10);
        let paged = controls(ControlsBody { offset: Some(MAX_OFFSET as i64), ..Default::default() }).unwrap();
        assert_eq!(paged.wanted(7), MAX_OFFSET + 7);
        for (body, field) in [
            (ControlsBody { diversity: Some(1.01), ..Default::default() }, "diversity"),
            (ControlsBody { diversity: Some(-0.0001), ..Default::default() }, "diversity"),
            (ControlsBody { diversity: Some(f64::NAN), ..Default::default() }, "diversity"),
            (ControlsBody { offset: Some(-1), ..Default::default() }, "offset"),
            (ControlsBody { offset: Some(MAX_OFFSET as i64 + 1), ..Default::default() }, "offset"),
            (ControlsBody { min_score: Some(f64::INFINITY), ..Default::default() }, "min_score"),
            (ControlsBody { max_per: Some("actor".into()), ..Default::default() }, "max_per"),
            (ControlsBody { max_per: Some("director".into()), per_group: Some(0), ..Default::default() }, "per_group"),
            (ControlsBody { exclude: vec!["ok".into(), "a\u{7}b".into()], ..Default::default() }, "exclude"),
            (ControlsBody { exclude: vec!["x".into(); MAX_EXCLUDE + 1], ..Default::default() }, "exclude"),
        ] {
            let err = controls(body).expect_err(field);
            assert!(err.contains(field), "{field}: {err}");
        }
        let grouped =
            controls(ControlsBody { max_per: Some("series".into()), diversity: Some(1.0), ..Default::default() })
                .unwrap();
        assert_eq!((grouped.max_per, grouped.diversity), (Some((GroupBy::Series, 1)), 1.0));
        assert_eq!(grouped.wanted(3), POOL);
        assert!(controls(ControlsBody { exclude: vec!["x".into(); MAX_EXCLUDE], ..Default::default() }).is_ok());
    }

    #[test]
    fn a_query_string_excludes_a_comma_list() {
        let body = ControlsBody::from_query(Some("tt1, tt2,,tt3,"), None, None, None, None, None);
        assert_eq!(controls(body).unwrap().exclude, ["tt1", "tt2", "tt3"]);
        assert!(ControlsBody::from_query(Some(""), None, None, None, None, None).exclude.is_empty());
    }

    #[test]
    fn an_empty_year_range_is_no_error() {
        let f = FilterBody { min_year: Some(2001), max_year: Some(1999), ..Default::default() }.parse().unwrap();
        assert_eq!((f.min_year, f.max_year), (Some(2001), Some(1999)));
    }
}
