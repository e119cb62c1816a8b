//! One error type for every route, one JSON body for every error (a [`crate::service::ServiceError`]
//! maps onto it variant by variant):
//! `{"error": {"code": "...", "message": "...", "field": "..."}}`.
//!
//! 4xx say what was wrong with the request; a 5xx says nothing internal (the details are logged with
//! the request id instead).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON at all, or not the JSON the route takes.
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed JSON with a wrong value; `field` names it when known.
    #[error("{message}")]
    Invalid { message: String, field: Option<String> },
    #[error("{0}")]
    NotFound(String),
    /// A model name the server does not serve (the OpenAI-compatible routes).
    #[error("{0}")]
    NoSuchModel(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unauthorized(String),
    /// Refused up front: the model cannot take the work before its deadline. `retry_after` (whole
    /// seconds, at least 1) is the estimated time for the work queued now to drain.
    #[error(
        "the model is at capacity: this request would not be answered within its deadline; retry after {retry_after} s"
    )]
    QueueFull { retry_after: u64 },
    #[error("{0}")]
    Unavailable(String),
    /// Nothing of the write was kept: the store's disk is full (507).
    #[error("{0}")]
    InsufficientStorage(String),
    #[error("the request took longer than its deadline of {0} ms")]
    Timeout(u64),
    /// Anything that is the server's fault. The message is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid { message: message.into(), field: Some(field.to_string()) }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) | ApiError::NoSuchModel(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::QueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) | ApiError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Invalid { .. } => "invalid_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::NoSuchModel(_) => "model_not_found",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::QueueFull { .. } => "queue_full",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Timeout(_) => "timeout",
            ApiError::InsufficientStorage(_) => "insufficient_storage",
            ApiError::Internal(_) => "internal",
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!("internal error: {detail}");
                "internal server error".to_string()
            }
            other => other.to_string(),
        };
        let field = match &self {
            ApiError::Invalid { field, .. } => field.as_deref(),
            _ => None,
        };
        let body = Body { error: Detail { code: self.code(), message, field } };
        let mut response = (status, axum::Json(body)).into_response();
        match self {
            ApiError::QueueFull { retry_after } => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
            }
            ApiError::Unavailable(_) | ApiError::InsufficientStorage(_) => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::Unauthorized(_) => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

/// The `code` of an error answer that no [`ApiError`] made, by status.
pub fn code_of_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
        StatusCode::TOO_MANY_REQUESTS => "queue_full",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    }
}

/// The one error body, for answers made outside [`ApiError`].
pub fn body_for(status: StatusCode, message: &str) -> String {
    serde_json::to_string(&Body {
        error: Detail { code: code_of_status(status), message: message.to_string(), field: None },
    })
    .expect("an error body always serialises")
}

/// Middleware: an error answer that is not JSON (a rejection of an axum extractor the handlers use
/// directly, e.g. `Path` on a bad percent-encoding, or a layer's own answer) gets the one JSON error
/// body, its text kept as the message. Answers already in JSON pass untouched.
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match text.trim() {
        "" => status.canonical_reason().unwrap_or("error").to_lowercase(),
        t if status.is_server_error() => {
            tracing::error!("internal error: {t}");
            "internal server error".to_string()
        }
        t => t.to_string(),
    };
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body_for(status, &message)))
}

impl From<crate::service::ServiceError> for ApiError {
    fn from(e: crate::service::ServiceError) -> Self {
        use crate::service::ServiceError;
        match e {
            ServiceError::Invalid { message, field } => ApiError::Invalid { message, field },
            ServiceError::NotFound(m) => ApiError::NotFound(m),
            ServiceError::QueueFull { retry_after } => ApiError::QueueFull { retry_after },
            ServiceError::Unavailable(m) => ApiError::Unavailable(m),
            ServiceError::Full(m) => ApiError::InsufficientStorage(m),
            ServiceError::Internal(m) => ApiError::Internal(m),
        }
    }
}
