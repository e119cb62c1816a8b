//! The canonical movie document: the one text rendering that both the batch pipeline and the request
//! path embed.
//!
//! A [`MovieDoc`] can only be built through [`MovieDoc::parse`], so one that exists is canonical: the
//! reference fields come first in the reference order (people lists last, so truncation cuts the least
//! important text), any other fields follow in input order, and every known field has its documented type.

use serde_json::{Map, Value};
use std::fmt;

/// Version of the rendering below. Stored in embedding manifests: change it whenever [`MovieDoc::render`]
/// would produce different text for the same input, so stale matrices are detected.
pub const DOC_FORMAT_VERSION: &str = "movie-doc/1";

/// The reference design's fields, in the order they are rendered.
pub const REFERENCE_FIELDS: [&str; 10] = [
    "title",
    "genres",
    "is_adult",
    "release_year",
    "runtime_minutes",
    "directors",
    "writers",
    "producers",
    "actors",
    "principals",
];

/// Why a JSON value is not a movie document. Every variant names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocError {
    #[error("a movie document must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    #[error("field `title` is required")]
    MissingTitle,
    #[error("field `title` must not be empty")]
    EmptyTitle,
    #[error("field `{field}` must be {expected}, got {got}")]
    WrongType { field: String, expected: &'static str, got: String },
}

impl DocError {
    /// The field the error is about, if any (for API error bodies).
    pub fn field(&self) -> Option<&str> {
        match self {
            DocError::NotAnObject(_) => None,
            DocError::MissingTitle | DocError::EmptyTitle => Some("title"),
            DocError::WrongType { field, .. } => Some(field),
        }
    }
}

/// A validated movie document in canonical field order.
#[derive(Debug, Clone, PartialEq)]
pub struct MovieDoc {
    fields: Map<String, Value>,
}

/// Name of a JSON value's type, for error messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong(field: &str, expected: &'static str, got: &Value) -> DocError {
    let got = match got {
        Value::Array(items) => items
            .iter()
            .find(|item| !item.is_string())
            .map(|item| format!("an array containing {}", kind(item)))
            .unwrap_or_else(|| kind(got).to_string()),
        other => kind(other).to_string(),
    };
    DocError::WrongType { field: field.to_string(), expected, got }
}

fn is_string_list(v: &Value) -> bool {
    matches!(v, Value::Array(items) if items.iter().all(Value::is_string))
}

/// A principal is a one-key object mapping a person's name to their category: `{"Name": "composer"}`.
fn is_principal(v: &Value) -> bool {
    matches!(v, Value::Object(m) if m.len() == 1 && m.values().all(Value::is_string))
}

/// A float with no fraction, within `i64` (JSON Schema counts `1999.0` as an integer).
fn integral_float(v: &Value) -> Option<i64> {
    let f = v.as_f64().filter(|_| !v.is_i64() && !v.is_u64())?;
    (f.fract() == 0.0 && f.abs() < 9.2e18).then_some(f as i64)
}

fn check_field(field: &str, v: &Value) -> Result<(), DocError> {
    let ok = match field {
        "title" => match v {
            Value::String(s) if s.trim().is_empty() => return Err(DocError::EmptyTitle),
            Value::String(_) => true,
            _ => return Err(wrong(field, "a string", v)),
        },
        "genres" => v.is_null() || is_string_list(v),
        "is_adult" => v.is_boolean(),
        "release_year" | "runtime_minutes" => v.is_null() || v.is_i64() || v.is_u64() || integral_float(v).is_some(),
        "directors" | "writers" | "producers" | "actors" => is_string_list(v),
        "principals" => matches!(v, Value::Array(items) if items.iter().all(is_principal)),
        _ => true,
    };
    if ok {
        return Ok(());
    }
    let expected = match field {
        "genres" => "an array of strings or null",
        "is_adult" => "a boolean",
        "release_year" | "runtime_minutes" => "an integer or null",
        "principals" => "an array of one-key objects like {\"Name\": \"category\"}",
        _ => "an array of strings",
    };
    if field == "principals" {
        let got = match v {
            Value::Array(items) => items
                .iter()
                .find(|i| !is_principal(i))
                .map(|i| match i {
                    Value::Object(_) => "an object that is not one name mapped to one category string".to_string(),
                    other => format!("an array containing {}", kind(other)),
                })
                .unwrap_or_default(),
            other => kind(other).to_string(),
        };
        return Err(DocError::WrongType { field: field.to_string(), expected, got });
    }
    Err(wrong(field, expected, v))
}

impl MovieDoc {
    /// Validate any JSON value and put it in canonical order.
    pub fn parse(value: &Value) -> Result<Self, DocError> {
        let obj = value.as_object().ok_or_else(|| DocError::NotAnObject(kind(value)))?;
        Self::from_map(obj.clone())
    }

    /// Like [`MovieDoc::parse`] but takes ownership, avoiding a copy.
    pub fn from_value(value: Value) -> Result<Self, DocError> {
        match value {
            Value::Object(obj) => Self::from_map(obj),
            other => Err(DocError::NotAnObject(kind(&other))),
        }
    }

    fn from_map(mut obj: Map<String, Value>) -> Result<Self, DocError> {
        if !obj.contains_key("title") {
            return Err(DocError::MissingTitle);
        }
        let mut fields = Map::with_capacity(obj.len());
        for name in REFERENCE_FIELDS {
            if let Some(v) = obj.shift_remove(name) {
                check_field(name, &v)?;
                // `1999.0` is kept as `1999`: one spelling per value in the canonical document.
                let v = integral_float(&v).map(Value::from).unwrap_or(v);
                fields.insert(name.to_string(), v);
            }
        }
        // What is left are extra fields, still in input order.
        fields.extend(obj);
        Ok(MovieDoc { fields })
    }

    /// The exact text that is embedded: 2-space indented JSON, non-ASCII kept as is.
    pub fn render(&self) -> String {
        // Serialising a map of JSON values cannot fail.
        serde_json::to_string_pretty(&self.fields).expect("JSON values always serialise")
    }

    pub fn title(&self) -> &str {
        self.fields["title"].as_str().unwrap_or_default()
    }

    pub fn release_year(&self) -> Option<i64> {
        self.fields.get("release_year").and_then(Value::as_i64)
    }

    pub fn runtime_minutes(&self) -> Option<i64> {
        self.fields.get("runtime_minutes").and_then(Value::as_i64)
    }

    pub fn is_adult(&self) -> Option<bool> {
        self.fields.get("is_adult").and_then(Value::as_bool)
    }

    /// A string-list field (`genres`, `directors`, `writers`, `producers`, `actors`); empty when absent.
    pub fn list(&self, field: &str) -> Vec<&str> {
        match self.fields.get(field) {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    pub fn genres(&self) -> Vec<&str> {
        self.list("genres")
    }

    /// `(name, category)` pairs of the other principals, in billing order.
    pub fn principals(&self) -> Vec<(&str, &str)> {
        match self.fields.get("principals") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_object)
                .filter_map(|m| m.iter().next())
                .filter_map(|(k, v)| v.as_str().map(|c| (k.as_str(), c)))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The fields in canonical order.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    pub fn into_value(self) -> Value {
        Value::Object(self.fields)
    }
}

impl fmt::Display for MovieDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl serde::Serialize for MovieDoc {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.fields.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for MovieDoc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        MovieDoc::from_value(v).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reorders_reference_fields_and_keeps_extras_in_input_order() {
        let doc = MovieDoc::parse(&json!({
            "zeta": 1, "actors": ["A"], "title": "T", "alpha": 2, "genres": null
        }))
        .unwrap();
        let keys: Vec<_> = doc.fields().keys().cloned().collect();
        assert_eq!(keys, ["title", "genres", "actors", "zeta", "alpha"]);
    }

    #[test]
    fn integral_floats_are_integers_in_canonical_form() {
        let doc = MovieDoc::parse(&json!({"title": "x", "release_year": 1999.0, "runtime_minutes": -3.0})).unwrap();
        assert_eq!(doc.release_year(), Some(1999));
        assert!(doc.render().contains("\"release_year\": 1999,"), "{}", doc.render());
        assert!(MovieDoc::parse(&json!({"title": "x", "release_year": 1999.5})).is_err());
        assert!(MovieDoc::parse(&json!({"title": "x", "release_year": 1e300})).is_err());
    }

    #[test]
    fn whitespace_title_is_empty() {
        assert_eq!(MovieDoc::parse(&json!({"title": "  "})), Err(DocError::EmptyTitle));
    }
}
