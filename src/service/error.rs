//! The one error type of every operation. It says what went wrong in domain terms; a transport maps
//! it (the HTTP server: `server/error.rs`, one status code per variant).

/// Why an operation gave no result.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A value of the request is wrong; `field` names it when known (`movies[2].title`).
    #[error("{message}")]
    Invalid { message: String, field: Option<String> },
    /// A movie id (or another named thing) that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Refused up front: the model cannot take the work before its deadline. `retry_after` (whole
    /// seconds, at least 1) is the estimated time for the work queued now to drain.
    #[error(
        "the model is at capacity: this request would not be answered within its deadline; retry after {retry_after} s"
    )]
    QueueFull { retry_after: u64 },
    /// The service cannot answer now (loading, shutting down).
    #[error("{0}")]
    Unavailable(String),
    /// The store's disk is full: nothing of the write was kept; it may succeed once space is freed.
    #[error("{0}")]
    Full(String),
    /// Anything that is the service's fault. The message is for the log, not the caller.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ServiceError::Invalid { message: message.into(), field: Some(field.to_string()) }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        ServiceError::Internal(e.to_string())
    }

    pub fn no_movie(id: &str) -> Self {
        ServiceError::NotFound(format!("no movie with id `{id}`"))
    }
}

impl From<crate::engine::worker::QueueError> for ServiceError {
    fn from(e: crate::engine::worker::QueueError) -> Self {
        use crate::engine::worker::QueueError;
        match &e {
            QueueError::Full { retry_after } => ServiceError::QueueFull { retry_after: retry_after.as_secs().max(1) },
            QueueError::Expired => ServiceError::Unavailable(e.to_string()),
            QueueError::Closed => ServiceError::Unavailable("the embedding worker is shutting down".into()),
            QueueError::Model(m) => ServiceError::Internal(m.clone()),
        }
    }
}

impl From<crate::movie::DocError> for ServiceError {
    fn from(e: crate::movie::DocError) -> Self {
        ServiceError::Invalid { field: e.field().map(|f| format!("movie.{f}")), message: format!("movie: {e}") }
    }
}
