//! Extractors that turn every rejection into the one JSON error shape.

use super::error::ApiError;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// `axum::Json`, with malformed bodies answered as [`ApiError`]s.
pub struct Json<T>(pub T);

/// States that know the request body limit (for the 413 message).
pub trait BodyLimit {
    fn body_limit(&self) -> usize;
}

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync + BodyLimit,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => Err(json_rejection(rejection, state.body_limit())),
        }
    }
}

fn json_rejection(rejection: JsonRejection, limit: usize) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            // "Failed to deserialize the JSON body into the target type: movies[0]: invalid type ..."
            let detail = e.body_text();
            let detail = detail.split_once(": ").map(|(_, rest)| rest.to_string()).unwrap_or(detail);
            let field = detail.split_once(": ").map(|(path, _)| path.to_string()).filter(|p| !p.contains(' '));
            ApiError::Invalid { message: format!("invalid request body: {detail}"), field }
        }
        JsonRejection::JsonSyntaxError(e) => {
            let detail = e.body_text();
            let detail = detail.split_once(": ").map(|(_, rest)| rest.to_string()).unwrap_or(detail);
            ApiError::BadRequest(format!("malformed JSON: {detail}"))
        }
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::UnsupportedMediaType("send the body as JSON with `Content-Type: application/json`".into())
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit },
        other => ApiError::BadRequest(other.body_text()),
    }
}

/// `axum::extract::Query`, with bad parameters answered as 422 [`ApiError`]s.
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                let detail = e.body_text();
                let detail = detail.split_once(": ").map(|(_, rest)| rest.to_string()).unwrap_or(detail);
                Err(ApiError::Invalid { message: format!("invalid query string: {detail}"), field: None })
            }
            Err(other) => Err(ApiError::BadRequest(other.body_text())),
        }
    }
}
