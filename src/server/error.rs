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
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("the embedding queue is full, retry shortly")]
    QueueFull,
    #[error("{0}")]
    Unavailable(String),
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
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::QueueFull => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) | ApiError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Invalid { .. } => "invalid_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::QueueFull => "queue_full",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Timeout(_) => "timeout",
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
            ApiError::QueueFull | ApiError::Unavailable(_) => {
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

impl From<crate::service::ServiceError> for ApiError {
    fn from(e: crate::service::ServiceError) -> Self {
        use crate::service::ServiceError;
        match e {
            ServiceError::Invalid { message, field } => ApiError::Invalid { message, field },
            ServiceError::NotFound(m) => ApiError::NotFound(m),
            ServiceError::QueueFull => ApiError::QueueFull,
            ServiceError::Unavailable(m) => ApiError::Unavailable(m),
            ServiceError::Internal(m) => ApiError::Internal(m),
        }
    }
}
