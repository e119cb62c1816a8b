//! The OpenAI-compatible routes, for the clients that already speak that protocol (the `openai`
//! packages, LangChain's `OpenAIEmbeddings`, LiteLLM, vector databases' embedders):
//! `POST /v1/embeddings` and `GET /v1/models` (`/v1/models/{model}`).
//!
//! The texts are embedded as given (no movie document around them) by [`Service::embed_texts`]: the
//! same queue, admission, document limit, body limit and deadline as `/v1/embed`, and, like every
//! read, no API key needed (a client's `Authorization` header is ignored). The model is named by
//! its folder (`all-MiniLM-L6-v2`), with or without an owner in front (`sentence-transformers/…`).
//! Errors on these routes are OpenAI's body, `{"error": {"message", "type", "param", "code"}}`
//! ([`errors`] rewrites the service's one error body there, whatever made it).
//!
//! [`Service::embed_texts`]: crate::service::Service::embed_texts

use super::api::{integer, present};
use super::error::ApiError;
use super::extract::Json;
use super::state::AppState;
use crate::service::results::ServedModel;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Who owns the served model, as `GET /v1/models` says.
const OWNER: &str = "cinevec";

/// `POST /v1/embeddings`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsRequest {
    /// A string or an array of strings (token arrays are refused by name, see [`texts`]).
    pub input: Value,
    pub model: String,
    #[serde(default, deserialize_with = "present")]
    pub encoding_format: Option<String>,
    #[serde(default, deserialize_with = "integer")]
    pub dimensions: Option<i64>,
    /// Accepted and ignored.
    #[serde(default, deserialize_with = "present")]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Float,
    Base64,
}

#[derive(Debug, Serialize)]
struct EmbeddingsResponse {
    object: &'static str,
    data: Vec<EmbeddingItem>,
    model: String,
    usage: Usage,
}

#[derive(Debug, Serialize)]
struct EmbeddingItem {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

/// A vector as numbers, or as the base64 of its little-endian `f32` bytes.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Vector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

#[derive(Debug, Serialize)]
struct ModelObject {
    id: String,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

impl ModelObject {
    fn of(model: &ServedModel) -> ModelObject {
        ModelObject { id: model.id.clone(), object: "model", created: model.created, owned_by: OWNER }
    }
}

/// The texts of `input`: a string, or a non-empty array of strings. The token forms (an array of
/// integers, an array of such arrays) are refused by name; anything else says what `input` takes.
fn texts(input: Value) -> Result<Vec<String>, ApiError> {
    const TAKES: &str = "input must be a string or an array of strings";
    let items = match input {
        Value::String(text) => return Ok(vec![text]),
        Value::Array(items) => items,
        _ => return Err(ApiError::invalid("input", TAKES)),
    };
    let tokens = "token arrays are not supported: send the texts as strings (cinevec tokenises them itself)";
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(text) => Ok(text),
            Value::Number(_) => Err(ApiError::invalid("input", format!("input[{i}] is a number: {tokens}"))),
            Value::Array(_) => Err(ApiError::invalid("input", format!("input[{i}] is an array: {tokens}"))),
            _ => Err(ApiError::invalid(&format!("input[{i}]"), format!("input[{i}] is not a string: {TAKES}"))),
        })
        .collect()
}

/// Whether `asked` names the served model: its name, or `owner/name`.
fn names(asked: &str, served: &str) -> bool {
    asked == served || asked.rsplit_once('/').is_some_and(|(owner, name)| !owner.is_empty() && name == served)
}

fn check_model(asked: &str, model: &ServedModel) -> Result<(), ApiError> {
    if names(asked, &model.id) {
        return Ok(());
    }
    Err(ApiError::NoSuchModel(format!(
        "the model `{asked}` is not served here: this server embeds with `{}` (see GET /v1/models)",
        model.id
    )))
}

impl EmbeddingsRequest {
    /// The request's texts and encoding, once its model, encoding and dimensions are checked.
    fn parse(self, model: &ServedModel) -> Result<(Vec<String>, Encoding), ApiError> {
        check_model(&self.model, model)?;
        let encoding = match self.encoding_format.as_deref() {
            None | Some("float") => Encoding::Float,
            Some("base64") => Encoding::Base64,
            Some(other) => {
                return Err(ApiError::invalid(
                    "encoding_format",
                    format!("encoding_format must be `float` or `base64`, got `{other}`"),
                ))
            }
        };
        if let Some(asked) = self.dimensions.filter(|&d| d != model.dim as i64) {
            return Err(ApiError::invalid(
                "dimensions",
                format!(
                    "`{}` gives {} dimensions and cannot shorten its vectors: leave dimensions out (or send {}), got {asked}",
                    model.id, model.dim, model.dim
                ),
            ));
        }
        Ok((texts(self.input)?, encoding))
    }
}

fn encode(vector: &[f32], encoding: Encoding) -> Vector {
    match encoding {
        Encoding::Float => Vector::Float(vector.to_vec()),
        Encoding::Base64 => {
            let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
            Vector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

pub async fn embeddings(
    State(state): State<AppState>,
    Json(req): Json<EmbeddingsRequest>,
) -> Result<Response, ApiError> {
    let service = state.ready()?;
    let model = service.served_model();
    let (texts, encoding) = req.parse(&model)?;
    let embedded = service.embed_texts(texts, "input").await?;
    let data = (0..embedded.len())
        .map(|index| EmbeddingItem { object: "embedding", index, embedding: encode(embedded.row(index), encoding) })
        .collect();
    // The tokens the model read, its special tokens included (no text is cut: see embed_texts).
    let tokens = embedded.encoded.iter().map(|e| e.ids.len()).sum();
    let usage = Usage { prompt_tokens: tokens, total_tokens: tokens };
    Ok(axum::Json(EmbeddingsResponse { object: "list", data, model: model.id, usage }).into_response())
}

pub async fn models(State(state): State<AppState>) -> Result<Response, ApiError> {
    let model = state.ready()?.served_model();
    Ok(axum::Json(json!({"object": "list", "data": [ModelObject::of(&model)]})).into_response())
}

pub async fn model(State(state): State<AppState>, Path(asked): Path<String>) -> Result<Response, ApiError> {
    let model = state.ready()?.served_model();
    check_model(&asked, &model)?;
    Ok(axum::Json(ModelObject::of(&model)).into_response())
}

/// Whether a path is one of the OpenAI-compatible routes (whose errors take OpenAI's shape).
fn is_openai(path: &str) -> bool {
    path == "/v1/embeddings" || path == "/v1/models" || path.starts_with("/v1/models/")
}

/// OpenAI's `type` for an error status.
fn kind(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "authentication_error",
        StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
        s if s.is_server_error() => "server_error",
        _ => "invalid_request_error",
    }
}

/// Middleware: on the OpenAI-compatible routes, an error answer in the service's body
/// (`{"error": {"code", "message", "field"}}`, whichever layer made it) is rewritten into OpenAI's
/// (`{"error": {"message", "type", "param", "code"}}`); status and headers are kept.
pub async fn errors(req: Request, next: Next) -> Response {
    let openai = is_openai(req.uri().path());
    let response = next.run(req).await;
    let status = response.status();
    if !openai || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let ours: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let detail = &ours["error"];
    let message = detail["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_lowercase());
    let code = detail["code"].as_str().unwrap_or_else(|| super::error::code_of_status(status));
    let body = json!({"error": {"message": message, "type": kind(status), "param": detail["field"], "code": code}});
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served() -> ServedModel {
        ServedModel { id: "all-MiniLM-L6-v2".into(), dim: 384, max_tokens: 256, created: 0 }
    }

    fn request(body: Value) -> Result<(Vec<String>, Encoding), String> {
        let req: EmbeddingsRequest = serde_json::from_value(body).map_err(|e| e.to_string())?;
        req.parse(&served()).map_err(|e| format!("{} {}", e.status().as_u16(), e))
    }

    #[test]
    fn input_is_a_string_or_strings_and_the_token_forms_are_named() {
        let m = "all-MiniLM-L6-v2";
        assert_eq!(request(json!({"input": "a", "model": m})).unwrap(), (vec!["a".to_string()], Encoding::Float));
        let (texts, encoding) = request(json!({"input": ["a", "b"], "model": m, "encoding_format": "base64"})).unwrap();
        assert_eq!((texts.len(), encoding), (2, Encoding::Base64));
        for (input, says) in [
            (json!([1, 2, 3]), "token arrays"),
            (json!([[1, 2], [3]]), "token arrays"),
            (json!(5), "a string or an array of strings"),
            (json!({"text": "a"}), "a string or an array of strings"),
            (json!(["a", null]), "input[1] is not a string"),
        ] {
            let err = request(json!({"input": input, "model": m})).unwrap_err();
            assert!(err.starts_with("422") && err.contains(says), "{input}: {err}");
        }
    }

    #[test]
    fn model_encoding_and_dimensions_are_checked() {
        for name in ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"] {
            assert!(request(json!({"input": "a", "model": name})).is_ok(), "{name}");
        }
        for name in ["text-embedding-3-small", "/all-MiniLM-L6-v2", "all-MiniLM-L6-v2/x", ""] {
            let err = request(json!({"input": "a", "model": name})).unwrap_err();
            assert!(err.starts_with("404"), "{name}: {err}");
        }
        let err = request(json!({"input": "a", "model": "all-MiniLM-L6-v2", "encoding_format": "hex"})).unwrap_err();
        assert!(err.contains("`float` or `base64`"), "{err}");
        assert!(request(json!({"input": "a", "model": "all-MiniLM-L6-v2", "dimensions": 384})).is_ok());
        let err = request(json!({"input": "a", "model": "all-MiniLM-L6-v2", "dimensions": 128})).unwrap_err();
        assert!(err.starts_with("422") && err.contains("cannot shorten"), "{err}");
        // `user` is accepted and ignored; unknown fields and nulls are refused.
        assert!(request(json!({"input": "a", "model": "all-MiniLM-L6-v2", "user": "u-1"})).is_ok());
        assert!(request(json!({"input": "a", "model": "all-MiniLM-L6-v2", "truncate": true})).is_err());
        assert!(request(json!({"input": "a", "model": "all-MiniLM-L6-v2", "encoding_format": null})).is_err());
    }

    #[test]
    fn base64_is_the_little_endian_f32_bytes() {
        let Vector::Base64(text) = encode(&[1.0, -0.5], Encoding::Base64) else { panic!("not base64") };
        let bytes = base64::engine::general_purpose::STANDARD.decode(text).unwrap();
        let back: Vec<f32> = bytes.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(back, [1.0, -0.5]);
    }
}
