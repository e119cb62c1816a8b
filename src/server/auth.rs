//! API keys for writes: `Authorization: Bearer <key>` or `X-API-Key: <key>`, compared in constant time.

use super::error::ApiError;
use super::ServeConfig;
use axum::http::HeaderMap;

/// A secret that never prints.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: String) -> Option<Self> {
        let key = key.trim().to_string();
        (!key.is_empty()).then_some(ApiKey(key))
    }

    /// Constant time in the key's content: both sides are hashed, and the digests compared without an
    /// early exit, so neither the length nor a matching prefix shows in the timing.
    fn matches(&self, candidate: &str) -> bool {
        let a = crate::hash::sha256(self.0.as_bytes());
        let b = crate::hash::sha256(candidate.as_bytes());
        a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if let Some(token) = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")) {
            return Some(token.trim());
        }
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim)
}

/// Refuse a write without a valid key.
pub fn check(config: &ServeConfig, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &config.api_key else {
        return Err(ApiError::Unauthorized("writes are disabled: the server was started without an API key".into()));
    };
    match presented(headers) {
        None => Err(ApiError::Unauthorized("this route needs an API key (`Authorization: Bearer <key>`)".into())),
        Some(candidate) if key.matches(candidate) => Ok(()),
        Some(_) => Err(ApiError::Unauthorized("invalid API key".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_by_content_and_never_print() {
        let key = ApiKey::new(" s3cret ".into()).unwrap();
        assert!(key.matches("s3cret"));
        assert!(!key.matches("s3cre"));
        assert!(!key.matches("s3cret2"));
        assert!(!format!("{key:?}").contains("s3cret"));
        assert!(ApiKey::new("  ".into()).is_none());
    }
}
